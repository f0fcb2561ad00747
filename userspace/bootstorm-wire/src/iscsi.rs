//! iSCSI PDUs (RFC 7143 section 11): the 48-byte Basic Header Segment, the lengths of what follows
//! it, and the text key=value data of Login and Text PDUs.
//!
//! ```text
//! Byte/     0       |       1       |       2       |       3       |
//!    +---------------+---------------+---------------+---------------+
//!   0|.|I| Opcode    |F|  Opcode-specific fields                     |
//!    +---------------+---------------+---------------+---------------+
//!   4|TotalAHSLength | DataSegmentLength                             |
//!    +---------------+---------------+---------------+---------------+
//!   8| LUN or Opcode-specific fields                                 |
//!    +                                                               +
//!  12|                                                               |
//!    +---------------+---------------+---------------+---------------+
//!  16| Initiator Task Tag                                            |
//!    +---------------+---------------+---------------+---------------+
//!  20/ Opcode-specific fields                                        /
//!  +/                                                               /
//!    +---------------+---------------+---------------+---------------+
//!  48
//! ```
//!
//! A PDU is this header, `TotalAHSLength` 4-byte words of additional headers, an optional
//! header digest, `DataSegmentLength` bytes of data padded to a multiple of 4, and an optional
//! data digest. [`Bhs`] is a view of the header: once `new_checked` took 48 bytes, every
//! accessor is a fixed offset and cannot panic; [`Bhs::total_len`] says how long the whole PDU is
//! (the digests are negotiated, so the caller says whether they are there). Opcode-specific
//! fields keep the RFC's names (`itt`, `ttt`, `cmd_sn`, `exp_stat_sn`, `data_sn`, ...); which of
//! them a given opcode carries is in its doc.

use crate::Error;

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;
/// Length of a header or data digest (CRC32C).
pub const DIGEST_LEN: usize = 4;
/// The reserved tag value (RFC 7143 11.2.1.8: "0xffffffff is reserved").
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// The opcodes of RFC 7143 11.2.1.2 (initiator) and 11.2.1.3 (target); unknown ones are values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    NopOut,
    ScsiCommand,
    TaskManagementRequest,
    LoginRequest,
    TextRequest,
    DataOut,
    LogoutRequest,
    Snack,
    NopIn,
    ScsiResponse,
    TaskManagementResponse,
    LoginResponse,
    TextResponse,
    DataIn,
    LogoutResponse,
    ReadyToTransfer,
    AsyncMessage,
    Reject,
    Unknown(u8),
}

impl From<u8> for Opcode {
    fn from(v: u8) -> Opcode {
        match v & 0x3f {
            0x00 => Opcode::NopOut,
            0x01 => Opcode::ScsiCommand,
            0x02 => Opcode::TaskManagementRequest,
            0x03 => Opcode::LoginRequest,
            0x04 => Opcode::TextRequest,
            0x05 => Opcode::DataOut,
            0x06 => Opcode::LogoutRequest,
            0x10 => Opcode::Snack,
            0x20 => Opcode::NopIn,
            0x21 => Opcode::ScsiResponse,
            0x22 => Opcode::TaskManagementResponse,
            0x23 => Opcode::LoginResponse,
            0x24 => Opcode::TextResponse,
            0x25 => Opcode::DataIn,
            0x26 => Opcode::LogoutResponse,
            0x31 => Opcode::ReadyToTransfer,
            0x32 => Opcode::AsyncMessage,
            0x3f => Opcode::Reject,
            other => Opcode::Unknown(other),
        }
    }
}

impl From<Opcode> for u8 {
    fn from(o: Opcode) -> u8 {
        match o {
            Opcode::NopOut => 0x00,
            Opcode::ScsiCommand => 0x01,
            Opcode::TaskManagementRequest => 0x02,
            Opcode::LoginRequest => 0x03,
            Opcode::TextRequest => 0x04,
            Opcode::DataOut => 0x05,
            Opcode::LogoutRequest => 0x06,
            Opcode::Snack => 0x10,
            Opcode::NopIn => 0x20,
            Opcode::ScsiResponse => 0x21,
            Opcode::TaskManagementResponse => 0x22,
            Opcode::LoginResponse => 0x23,
            Opcode::TextResponse => 0x24,
            Opcode::DataIn => 0x25,
            Opcode::LogoutResponse => 0x26,
            Opcode::ReadyToTransfer => 0x31,
            Opcode::AsyncMessage => 0x32,
            Opcode::Reject => 0x3f,
            Opcode::Unknown(v) => v & 0x3f,
        }
    }
}

mod field {
    pub const OPCODE: usize = 0;
    pub const FLAGS: usize = 1;
    pub const B2: usize = 2;
    pub const B3: usize = 3;
    pub const AHS_LEN: usize = 4;
    pub const DATA_LEN: core::ops::Range<usize> = 5..8;
    pub const LUN: core::ops::Range<usize> = 8..16;
    pub const ITT: usize = 16;
    pub const W20: usize = 20;
    pub const W24: usize = 24;
    pub const W28: usize = 28;
    pub const W32: usize = 32;
    pub const W36: usize = 36;
    pub const W40: usize = 40;
    pub const W44: usize = 44;
    pub const CDB: core::ops::Range<usize> = 32..48;
}

/// A view of a Basic Header Segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bhs<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Bhs<T> {
    /// A view of the first [`BHS_LEN`] bytes of `buf` (more are ignored).
    pub fn new_checked(buf: T) -> Result<Bhs<T>, Error> {
        if buf.as_ref().len() < BHS_LEN {
            return Err(Error::Truncated);
        }
        Ok(Bhs { buf })
    }

    /// The bytes viewed.
    pub fn into_inner(self) -> T {
        self.buf
    }

    fn b(&self, at: usize) -> u8 {
        self.buf.as_ref()[at]
    }

    fn w16(&self, at: usize) -> u16 {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    fn w32(&self, at: usize) -> u32 {
        let b = self.buf.as_ref();
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// The opcode.
    pub fn opcode(&self) -> Opcode {
        Opcode::from(self.b(field::OPCODE))
    }

    /// The immediate-delivery bit (`I`) of a request.
    pub fn immediate(&self) -> bool {
        self.b(field::OPCODE) & 0x40 != 0
    }

    /// Byte 1 whole: the final bit (`F`, 0x80) and the opcode's own flags.
    pub fn flags(&self) -> u8 {
        self.b(field::FLAGS)
    }

    /// The final bit (`F`).
    pub fn final_bit(&self) -> bool {
        self.flags() & 0x80 != 0
    }

    /// Byte 2 (Login: Version-max; SCSI Response: Response; Logout and Task Management
    /// Response: Response; Reject: Reason).
    pub fn byte2(&self) -> u8 {
        self.b(field::B2)
    }

    /// Byte 3 (Login Request: Version-min; Login Response: Version-active; SCSI Response and
    /// Data-In: Status).
    pub fn byte3(&self) -> u8 {
        self.b(field::B3)
    }

    /// TotalAHSLength, in 4-byte words.
    pub fn total_ahs_len(&self) -> usize {
        usize::from(self.b(field::AHS_LEN))
    }

    /// DataSegmentLength, in bytes (without padding).
    pub fn data_len(&self) -> usize {
        let b = &self.buf.as_ref()[field::DATA_LEN];
        (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
    }

    /// The whole PDU's length: header, additional headers, data padded to 4 bytes and the
    /// digests that were negotiated.
    pub fn total_len(&self, header_digest: bool, data_digest: bool) -> usize {
        let data = self.data_len();
        let mut n = BHS_LEN + 4 * self.total_ahs_len() + pad4(data);
        if header_digest {
            n += DIGEST_LEN;
        }
        if data_digest && data > 0 {
            n += DIGEST_LEN;
        }
        n
    }

    /// Bytes 8-15: the LUN (SCSI Command, Data, NOP, Task Management, R2T), or Login's ISID
    /// (8-13) and TSIH (14-15).
    pub fn lun(&self) -> u64 {
        let b = &self.buf.as_ref()[field::LUN];
        u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))
    }

    /// Login: the ISID (bytes 8-13).
    pub fn isid(&self) -> [u8; 6] {
        let b = self.buf.as_ref();
        [b[8], b[9], b[10], b[11], b[12], b[13]]
    }

    /// Login: the TSIH (bytes 14-15).
    pub fn tsih(&self) -> u16 {
        self.w16(14)
    }

    /// The Initiator Task Tag.
    pub fn itt(&self) -> u32 {
        self.w32(field::ITT)
    }

    /// Bytes 20-23: Target Transfer Tag (NOP, Data-Out, Text, R2T, Data-In), Expected Data
    /// Transfer Length (SCSI Command), Referenced Task Tag (Task Management Request); Login
    /// and Logout Requests carry their CID in bytes 20-21 ([`Bhs::cid`]).
    pub fn word20(&self) -> u32 {
        self.w32(field::W20)
    }

    /// The Target Transfer Tag (bytes 20-23).
    pub fn ttt(&self) -> u32 {
        self.word20()
    }

    /// SCSI Command: Expected Data Transfer Length (bytes 20-23).
    pub fn expected_data_len(&self) -> u32 {
        self.word20()
    }

    /// Login and Logout Requests: the CID (bytes 20-21).
    pub fn cid(&self) -> u16 {
        self.w16(field::W20)
    }

    /// Bytes 24-27: CmdSN of a request, StatSN of a response.
    pub fn cmd_sn(&self) -> u32 {
        self.w32(field::W24)
    }

    /// The StatSN of a response (bytes 24-27).
    pub fn stat_sn(&self) -> u32 {
        self.w32(field::W24)
    }

    /// Bytes 28-31: ExpStatSN of a request, ExpCmdSN of a response.
    pub fn exp_stat_sn(&self) -> u32 {
        self.w32(field::W28)
    }

    /// Bytes 32-35: MaxCmdSN of a response; Task Management Request: RefCmdSN.
    pub fn word32(&self) -> u32 {
        self.w32(field::W32)
    }

    /// Bytes 36-39: DataSN (Data-In, Data-Out), R2TSN, ExpDataSN.
    pub fn data_sn(&self) -> u32 {
        self.w32(field::W36)
    }

    /// Login Response: Status-Class (byte 36) and Status-Detail (byte 37) as one number
    /// (0x0201: authentication failure).
    pub fn login_status(&self) -> u16 {
        self.w16(field::W36)
    }

    /// Bytes 40-43: Buffer Offset (Data-In, Data-Out, R2T).
    pub fn buffer_offset(&self) -> u32 {
        self.w32(field::W40)
    }

    /// Bytes 44-47: Residual Count (SCSI Response, Data-In), Desired Data Transfer Length (R2T).
    pub fn word44(&self) -> u32 {
        self.w32(field::W44)
    }

    /// SCSI Command: the CDB (bytes 32-47; a longer CDB would be in an AHS).
    pub fn cdb(&self) -> &[u8] {
        &self.buf.as_ref()[field::CDB]
    }

    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf.as_ref()[..BHS_LEN]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Bhs<T> {
    fn set_b(&mut self, at: usize, v: u8) {
        self.buf.as_mut()[at] = v;
    }

    fn set_w16(&mut self, at: usize, v: u16) {
        self.buf.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    fn set_w32(&mut self, at: usize, v: u32) {
        self.buf.as_mut()[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Zeroes the header and sets its opcode (and the immediate bit).
    pub fn clear(&mut self, opcode: Opcode, immediate: bool) {
        self.buf.as_mut()[..BHS_LEN].fill(0);
        let mut b = u8::from(opcode);
        if immediate {
            b |= 0x40;
        }
        self.set_b(field::OPCODE, b);
    }

    /// Sets byte 1.
    pub fn set_flags(&mut self, v: u8) {
        self.set_b(field::FLAGS, v);
    }

    /// Sets byte 2.
    pub fn set_byte2(&mut self, v: u8) {
        self.set_b(field::B2, v);
    }

    /// Sets byte 3.
    pub fn set_byte3(&mut self, v: u8) {
        self.set_b(field::B3, v);
    }

    /// Sets DataSegmentLength (at most 2^24 - 1).
    pub fn set_data_len(&mut self, n: usize) {
        let n = n.min(0x00ff_ffff);
        let b = &mut self.buf.as_mut()[field::DATA_LEN];
        b[0] = (n >> 16) as u8;
        b[1] = (n >> 8) as u8;
        b[2] = n as u8;
    }

    /// Sets bytes 8-15 (the LUN).
    pub fn set_lun(&mut self, v: u64) {
        self.buf.as_mut()[field::LUN].copy_from_slice(&v.to_be_bytes());
    }

    /// Login: sets the ISID and TSIH.
    pub fn set_isid_tsih(&mut self, isid: [u8; 6], tsih: u16) {
        self.buf.as_mut()[8..14].copy_from_slice(&isid);
        self.set_w16(14, tsih);
    }

    /// Sets the Initiator Task Tag.
    pub fn set_itt(&mut self, v: u32) {
        self.set_w32(field::ITT, v);
    }

    /// Sets bytes 20-23 (Target Transfer Tag and the like).
    pub fn set_word20(&mut self, v: u32) {
        self.set_w32(field::W20, v);
    }

    /// Sets bytes 20-21 (a request's CID).
    pub fn set_cid(&mut self, v: u16) {
        self.set_w16(field::W20, v);
    }

    /// Sets bytes 24-27 (CmdSN or StatSN).
    pub fn set_word24(&mut self, v: u32) {
        self.set_w32(field::W24, v);
    }

    /// Sets bytes 28-31 (ExpStatSN or ExpCmdSN).
    pub fn set_word28(&mut self, v: u32) {
        self.set_w32(field::W28, v);
    }

    /// Sets bytes 32-35 (MaxCmdSN).
    pub fn set_word32(&mut self, v: u32) {
        self.set_w32(field::W32, v);
    }

    /// Sets bytes 36-39 (DataSN, R2TSN, ExpDataSN; Login Response: Status-Class and -Detail in
    /// bytes 36 and 37).
    pub fn set_word36(&mut self, v: u32) {
        self.set_w32(field::W36, v);
    }

    /// Sets bytes 40-43 (Buffer Offset; Logout Response: Time2Wait and Time2Retain).
    pub fn set_word40(&mut self, v: u32) {
        self.set_w32(field::W40, v);
    }

    /// Sets bytes 44-47 (Residual Count, Desired Data Transfer Length).
    pub fn set_word44(&mut self, v: u32) {
        self.set_w32(field::W44, v);
    }

    /// Sets the CDB (up to 16 bytes).
    pub fn set_cdb(&mut self, cdb: &[u8]) {
        let n = cdb.len().min(16);
        let b = &mut self.buf.as_mut()[field::CDB];
        b.fill(0);
        b[..n].copy_from_slice(&cdb[..n]);
    }
}

/// `n` rounded up to a multiple of 4 (data segments are padded so).
pub fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// The key=value pairs of a text data segment (RFC 7143 6.1: each pair ends in a NUL; keys
/// and values are not empty keys), in order. A pair without `=` is malformed; the iterator
/// stops with an error there.
pub fn text_pairs(data: &[u8]) -> impl Iterator<Item = Result<(&str, &str), Error>> {
    data.split(|b| *b == 0).filter(|p| !p.is_empty()).map(|p| {
        let s = core::str::from_utf8(p).map_err(|_| Error::Malformed("text key not UTF-8"))?;
        let (k, v) = s
            .split_once('=')
            .ok_or(Error::Malformed("text pair without ="))?;
        if k.is_empty() {
            return Err(Error::Malformed("empty text key"));
        }
        Ok((k, v))
    })
}

/// Appends `key=value` and its NUL to a text data segment.
pub fn push_text(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Login Request as open-iscsi's first PDU carries it (captured layout): immediate,
    /// T=1, CSG=0 (security), NSG=1, version 0/0, ISID 00023d000001, TSIH 0, ITT 0, CID 0,
    /// CmdSN 1, ExpStatSN 0, 0x47 bytes of text.
    #[test]
    fn a_login_request_reads_field_by_field() {
        let mut b = [0u8; 48];
        b[0] = 0x43;
        b[1] = 0x81;
        b[5..8].copy_from_slice(&[0, 0, 0x47]);
        b[8..14].copy_from_slice(&[0x00, 0x02, 0x3d, 0x00, 0x00, 0x01]);
        b[16..20].copy_from_slice(&7u32.to_be_bytes());
        b[20..22].copy_from_slice(&3u16.to_be_bytes());
        b[24..28].copy_from_slice(&1u32.to_be_bytes());
        b[28..32].copy_from_slice(&9u32.to_be_bytes());
        let h = Bhs::new_checked(&b[..]).unwrap();
        assert_eq!(h.opcode(), Opcode::LoginRequest);
        assert!(h.immediate());
        assert!(h.final_bit());
        assert_eq!(h.flags() & 0x0f, 0x01);
        assert_eq!(h.data_len(), 0x47);
        assert_eq!(h.isid(), [0x00, 0x02, 0x3d, 0x00, 0x00, 0x01]);
        assert_eq!(h.tsih(), 0);
        assert_eq!(h.itt(), 7);
        assert_eq!(h.cid(), 3);
        assert_eq!(h.cmd_sn(), 1);
        assert_eq!(h.exp_stat_sn(), 9);
        // 48 + 0x47 padded to 0x48; a header digest adds 4, a data digest 4 more.
        assert_eq!(h.total_len(false, false), 48 + 0x48);
        assert_eq!(h.total_len(true, true), 48 + 0x48 + 8);
        assert_eq!(Bhs::new_checked(&b[..47]), Err(Error::Truncated));
    }

    #[test]
    fn a_scsi_command_and_its_cdb() {
        let mut b = [0u8; 48];
        b[0] = 0x01;
        b[1] = 0xc1; // F, R, simple task attribute
        b[8..16].copy_from_slice(&0x0001_0000_0000_0000u64.to_be_bytes());
        b[20..24].copy_from_slice(&4096u32.to_be_bytes());
        b[32] = 0x28; // READ (10)
        b[37] = 8;
        let h = Bhs::new_checked(b).unwrap();
        assert_eq!(h.opcode(), Opcode::ScsiCommand);
        assert!(!h.immediate());
        assert_eq!(h.lun(), 0x0001_0000_0000_0000);
        assert_eq!(h.expected_data_len(), 4096);
        assert_eq!(h.cdb()[0], 0x28);
        assert_eq!(h.cdb().len(), 16);
    }

    #[test]
    fn a_header_built_reads_back() {
        let mut b = [0xaau8; 48];
        let mut h = Bhs::new_checked(&mut b[..]).unwrap();
        h.clear(Opcode::DataIn, false);
        h.set_flags(0x81);
        h.set_byte3(0x02);
        h.set_data_len(0x01_2345);
        h.set_lun(5);
        h.set_itt(0xdead_beef);
        h.set_word20(RESERVED_TAG);
        h.set_word24(11);
        h.set_word28(12);
        h.set_word32(13);
        h.set_word36(14);
        h.set_word40(15);
        h.set_word44(16);
        let h = Bhs::new_checked(&b[..]).unwrap();
        assert_eq!(h.opcode(), Opcode::DataIn);
        assert_eq!((h.flags(), h.byte3(), h.data_len()), (0x81, 2, 0x01_2345));
        assert_eq!((h.lun(), h.itt(), h.ttt()), (5, 0xdead_beef, RESERVED_TAG));
        assert_eq!((h.stat_sn(), h.exp_stat_sn(), h.word32()), (11, 12, 13));
        assert_eq!((h.data_sn(), h.buffer_offset(), h.word44()), (14, 15, 16));
        assert_eq!(b[0], 0x25);
    }

    #[test]
    fn every_opcode_round_trips_and_unknown_ones_are_values() {
        for v in 0..=0x3fu8 {
            let o = Opcode::from(v);
            assert_eq!(u8::from(o), v, "{o:?}");
        }
        assert_eq!(Opcode::from(0x0b), Opcode::Unknown(0x0b));
        // The two top bits are not the opcode's.
        assert_eq!(Opcode::from(0xc1), Opcode::ScsiCommand);
    }

    #[test]
    fn text_pairs_split_on_nul_and_refuse_what_is_not_a_pair() {
        let mut t = Vec::new();
        push_text(&mut t, "InitiatorName", "iqn.2004-10.com.ubuntu:01:x");
        push_text(&mut t, "SessionType", "Normal");
        push_text(&mut t, "Empty", "");
        let got: Vec<_> = text_pairs(&t).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            got,
            [
                ("InitiatorName", "iqn.2004-10.com.ubuntu:01:x"),
                ("SessionType", "Normal"),
                ("Empty", "")
            ]
        );
        // Padding NULs after the last pair are not pairs.
        t.extend_from_slice(&[0, 0, 0]);
        assert_eq!(text_pairs(&t).count(), 3);
        assert!(text_pairs(b"NoEquals\0").next().unwrap().is_err());
        assert!(text_pairs(b"=v\0").next().unwrap().is_err());
        assert!(text_pairs(&[0xff, b'=', b'v', 0]).next().unwrap().is_err());
    }

    #[test]
    fn padding_rounds_up_to_four() {
        assert_eq!([0, 1, 2, 3, 4, 5, 8].map(pad4), [0, 4, 4, 4, 4, 8, 8]);
    }
}
