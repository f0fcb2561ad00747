//! SCSI block commands (SBC-3, SPC-4) as a disk target answers them: a CDB is decoded into what
//! the target must do (answer from memory, read, write, flush) or the sense data it fails with.
//! No I/O here: reads and writes are returned as byte ranges for the caller to perform.

/// SCSI status codes (SAM-5).
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
}

/// Sense keys (SPC-4 4.5.6).
pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const DATA_PROTECT: u8 = 0x7;
    pub const ABORTED_COMMAND: u8 = 0xb;
    pub const MISCOMPARE: u8 = 0xe;
}

/// Why a command failed: its sense key and additional sense code and qualifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    /// INVALID COMMAND OPERATION CODE.
    pub const BAD_OPCODE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x20, 0x00);
    /// LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x21, 0x00);
    /// INVALID FIELD IN CDB.
    pub const BAD_FIELD: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x24, 0x00);
    /// LOGICAL UNIT NOT SUPPORTED.
    pub const NO_SUCH_LUN: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x25, 0x00);
    /// WRITE PROTECTED.
    pub const WRITE_PROTECTED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x00);
    /// UNRECOVERED READ ERROR (a read of the backing store failed).
    pub const READ_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x11, 0x00);
    /// WRITE ERROR (a write or flush of the backing store failed).
    pub const WRITE_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x0c, 0x00);
    /// The data the initiator sent does not match the command (too much or too little).
    pub const DATA_PHASE_ERROR: Sense = Sense::new(key::ABORTED_COMMAND, 0x4b, 0x00);
    /// MISCOMPARE DURING VERIFY OPERATION.
    pub const MISCOMPARE: Sense = Sense::new(key::MISCOMPARE, 0x1d, 0x00);
    /// INVALID FIELD IN PARAMETER LIST.
    pub const BAD_PARAMETER: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x00);

    pub const fn new(key: u8, asc: u8, ascq: u8) -> Sense {
        Sense { key, asc, ascq }
    }

    /// Fixed-format sense data (SPC-4 4.5.3), 18 bytes.
    pub fn fixed(&self) -> [u8; 18] {
        let mut s = [0u8; 18];
        s[0] = 0x70; // current error, fixed format
        s[2] = self.key & 0x0f;
        s[7] = 10; // additional sense length
        s[12] = self.asc;
        s[13] = self.ascq;
        s
    }
}

/// A logical unit as the commands see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Logical blocks.
    pub blocks: u64,
    /// Bytes per block (512 or 4096).
    pub block_size: u32,
    /// Writes refused (DATA PROTECT).
    pub read_only: bool,
    /// The unit serial number (VPD page 0x80) and the base of its device identifier (0x83).
    pub serial: String,
    /// Thin provisioning: UNMAP (and WRITE SAME's UNMAP bit) hand blocks back.
    pub unmap: Unmap,
}

/// What UNMAP does on a unit (SBC-3 4.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unmap {
    /// Not offered (the unit is fully provisioned).
    #[default]
    No,
    /// Blocks handed back read as zeros (LBPRZ 1: a file's punched hole).
    Zeroes,
}

/// What a command asks of the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Data to return at once (INQUIRY, READ CAPACITY, MODE SENSE, ...), already cut to the
    /// CDB's allocation length.
    Data(Vec<u8>),
    /// Nothing to transfer; status GOOD (TEST UNIT READY, a zero-length read or write).
    Good,
    /// Read `len` bytes at byte `offset` of the unit and return them.
    Read { offset: u64, len: u64 },
    /// Take `len` bytes from the initiator and write them at byte `offset`; with `fua` the
    /// write is durable before it completes (FUA bit).
    Write { offset: u64, len: u64, fua: bool },
    /// VERIFY with BYTCHK: take `len` bytes from the initiator and compare them with the unit
    /// at byte `offset` (MISCOMPARE if they differ).
    Compare { offset: u64, len: u64 },
    /// WRITE SAME: take one block from the initiator and write it `len / block` times from
    /// byte `offset`; with `unmap` (and a block of zeros on a unit whose holes read as zeros)
    /// the range may be unmapped instead.
    WriteSame { offset: u64, len: u64, unmap: bool },
    /// UNMAP: take the `len`-byte parameter list (block descriptors) from the initiator.
    Unmap { len: u64 },
    /// GET LBA STATUS: the provisioning status of the run of blocks from byte `offset`,
    /// returned in at most `alloc` bytes.
    LbaStatus { offset: u64, alloc: u32 },
    /// Make written data durable (SYNCHRONIZE CACHE).
    Flush,
    /// Fail with CHECK CONDITION and this sense.
    Fail(Sense),
}

/// Opcodes decoded here.
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0a;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const START_STOP_UNIT: u8 = 0x1b;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1e;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const VERIFY_10: u8 = 0x2f;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const READ_16: u8 = 0x88;
    pub const WRITE_16: u8 = 0x8a;
    pub const VERIFY_16: u8 = 0x8f;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const REPORT_LUNS: u8 = 0xa0;
    pub const READ_12: u8 = 0xa8;
    pub const WRITE_12: u8 = 0xaa;
    /// SERVICE ACTION IN (16)'s READ CAPACITY (16).
    pub const SA_READ_CAPACITY_16: u8 = 0x10;
    /// SERVICE ACTION IN (16)'s GET LBA STATUS.
    pub const SA_GET_LBA_STATUS: u8 = 0x12;
}

/// The product's name in INQUIRY (8-byte vendor, 16-byte product, 4-byte revision).
const VENDOR: &[u8; 8] = b"BOOTSTRM";
const PRODUCT: &[u8; 16] = b"bootstorm disk  ";
const REVISION: &[u8; 4] = b"0001";
/// Largest transfer a command may ask for, in blocks (VPD 0xB0 says so): 32 MiB of 512-byte
/// blocks. A single command's data is held in memory while it runs.
pub const MAX_TRANSFER_BLOCKS: u32 = 65536;
/// UNMAP limits (VPD 0xB0): blocks per command and block descriptors per parameter list.
pub const MAX_UNMAP_BLOCKS: u32 = 1 << 20;
pub const MAX_UNMAP_DESCRIPTORS: u32 = 256;

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Cuts `data` to `alloc` bytes (the CDB's allocation length).
fn cut(mut data: Vec<u8>, alloc: usize) -> Action {
    data.truncate(alloc);
    Action::Data(data)
}

/// Decodes `cdb` for `disk` (None: no unit at this LUN). `luns` lists the target's LUNs for
/// REPORT LUNS.
pub fn decode(cdb: &[u8], disk: Option<&Disk>, luns: &[u64]) -> Action {
    let Some(&opcode) = cdb.first() else {
        return Action::Fail(Sense::BAD_OPCODE);
    };
    // Commands a missing unit still answers (SPC-4 6.6.2: INQUIRY to an absent LUN reports
    // peripheral qualifier 3; REPORT LUNS goes to any LUN).
    match (opcode, disk) {
        (op::INQUIRY, None) => {
            let mut d = standard_inquiry();
            d[0] = 0x7f;
            return cut(d, usize::from(be16(&cdb[3..5])));
        }
        (op::REPORT_LUNS, _) => return report_luns(cdb, luns),
        (op::REQUEST_SENSE, _) => {
            let alloc = usize::from(cdb[4]);
            return cut(Sense::new(key::NO_SENSE, 0, 0).fixed().to_vec(), alloc);
        }
        (_, None) => return Action::Fail(Sense::NO_SUCH_LUN),
        _ => {}
    }
    let Some(disk) = disk else {
        return Action::Fail(Sense::NO_SUCH_LUN);
    };
    match opcode {
        op::TEST_UNIT_READY | op::START_STOP_UNIT | op::PREVENT_ALLOW_MEDIUM_REMOVAL => {
            Action::Good
        }
        op::VERIFY_10 | op::VERIFY_16 => verify(cdb, disk),
        op::INQUIRY => inquiry(cdb, disk),
        op::READ_CAPACITY_10 => {
            let last = disk.blocks.saturating_sub(1);
            let mut d = Vec::with_capacity(8);
            d.extend_from_slice(&(u32::try_from(last).unwrap_or(u32::MAX)).to_be_bytes());
            d.extend_from_slice(&disk.block_size.to_be_bytes());
            Action::Data(d)
        }
        op::SERVICE_ACTION_IN_16 if cdb.len() >= 16 && cdb[1] & 0x1f == op::SA_READ_CAPACITY_16 => {
            let mut d = vec![0u8; 32];
            d[0..8].copy_from_slice(&disk.blocks.saturating_sub(1).to_be_bytes());
            d[8..12].copy_from_slice(&disk.block_size.to_be_bytes());
            // LBPME (thin provisioning), LBPRZ (unmapped blocks read as zeros).
            d[14] = match disk.unmap {
                Unmap::No => 0,
                Unmap::Zeroes => 0xc0,
            };
            cut(d, be32(&cdb[10..14]) as usize)
        }
        op::SERVICE_ACTION_IN_16
            if cdb.len() >= 16
                && cdb[1] & 0x1f == op::SA_GET_LBA_STATUS
                && disk.unmap != Unmap::No =>
        {
            let lba = be64(&cdb[2..10]);
            if lba >= disk.blocks {
                return Action::Fail(Sense::LBA_OUT_OF_RANGE);
            }
            match be32(&cdb[10..14]) {
                0 => Action::Good,
                alloc => Action::LbaStatus {
                    offset: lba * u64::from(disk.block_size),
                    alloc,
                },
            }
        }
        op::MODE_SENSE_6 | op::MODE_SENSE_10 => mode_sense(cdb, disk),
        op::SYNCHRONIZE_CACHE_10 | op::SYNCHRONIZE_CACHE_16 => Action::Flush,
        op::READ_6 | op::READ_10 | op::READ_12 | op::READ_16 => rw(cdb, disk, false),
        op::WRITE_6 | op::WRITE_10 | op::WRITE_12 | op::WRITE_16 => rw(cdb, disk, true),
        op::WRITE_SAME_10 | op::WRITE_SAME_16 => write_same(cdb, disk),
        op::UNMAP if disk.unmap != Unmap::No && cdb.len() >= 10 => {
            // SBC-3 5.28: ANCHOR is not offered.
            if cdb[1] & 0x01 != 0 {
                return Action::Fail(Sense::BAD_FIELD);
            }
            if disk.read_only {
                return Action::Fail(Sense::WRITE_PROTECTED);
            }
            match be16(&cdb[7..9]) {
                0 => Action::Good,
                n => Action::Unmap { len: u64::from(n) },
            }
        }
        _ => Action::Fail(Sense::BAD_OPCODE),
    }
}

/// WRITE SAME (10)/(16), SBC-3 5.41/5.42.
fn write_same(cdb: &[u8], disk: &Disk) -> Action {
    let (lba, count) = match cdb[0] {
        op::WRITE_SAME_10 if cdb.len() >= 10 => {
            (u64::from(be32(&cdb[2..6])), u32::from(be16(&cdb[7..9])))
        }
        op::WRITE_SAME_16 if cdb.len() >= 16 => (be64(&cdb[2..10]), be32(&cdb[10..14])),
        _ => return Action::Fail(Sense::BAD_FIELD),
    };
    let (wrprotect, anchor, unmap, ndob) = (
        cdb[1] & 0xe0,
        cdb[1] & 0x10 != 0,
        cdb[1] & 0x08 != 0,
        cdb[0] == op::WRITE_SAME_16 && cdb[1] & 0x01 != 0,
    );
    // No protection information, no anchored blocks, PBDATA/LBDATA (byte 1 bits 1-2 of the
    // 10-byte CDB) obsolete and refused; NDOB (no data-out buffer) not offered; UNMAP only
    // where the unit unmaps.
    if wrprotect != 0 || anchor || ndob || cdb[1] & 0x06 != 0 || (unmap && disk.unmap == Unmap::No)
    {
        return Action::Fail(Sense::BAD_FIELD);
    }
    // A count of 0 would mean "to the end of the unit": refused (WSNZ in VPD 0xB0).
    if count == 0 {
        return Action::Fail(Sense::BAD_FIELD);
    }
    if let Err(sense) = check_range(lba, count, disk) {
        return Action::Fail(sense);
    }
    if disk.read_only {
        return Action::Fail(Sense::WRITE_PROTECTED);
    }
    let bs = u64::from(disk.block_size);
    Action::WriteSame {
        offset: lba * bs,
        len: u64::from(count) * bs,
        unmap,
    }
}

/// GET LBA STATUS parameter data (SBC-3 5.6.2) for one descriptor: `len` bytes from
/// `offset`, mapped or deallocated.
pub fn lba_status(disk: &Disk, offset: u64, len: u64, mapped: bool) -> Vec<u8> {
    let bs = u64::from(disk.block_size);
    let lba = offset / bs;
    let count = (len / bs)
        .clamp(1, u64::from(u32::MAX))
        .min(disk.blocks - lba);
    let mut d = vec![0u8; 24];
    d[0..4].copy_from_slice(&20u32.to_be_bytes());
    d[8..16].copy_from_slice(&lba.to_be_bytes());
    d[16..20].copy_from_slice(&(count as u32).to_be_bytes());
    d[20] = if mapped { 0 } else { 1 };
    d
}

/// The byte ranges of an UNMAP parameter list (SBC-3 5.28.2), checked against `disk`: None for
/// a list whose lengths do not hold together (INVALID FIELD IN PARAMETER LIST).
pub fn unmap_ranges(list: &[u8], disk: &Disk) -> Result<Vec<(u64, u64)>, Sense> {
    if list.len() < 8 {
        return if list.is_empty() {
            Ok(Vec::new())
        } else {
            Err(Sense::BAD_PARAMETER)
        };
    }
    let desc_len = usize::from(be16(&list[2..4]));
    if desc_len % 16 != 0 || 8 + desc_len > list.len() {
        return Err(Sense::BAD_PARAMETER);
    }
    if desc_len / 16 > MAX_UNMAP_DESCRIPTORS as usize {
        return Err(Sense::BAD_PARAMETER);
    }
    let bs = u64::from(disk.block_size);
    let mut out = Vec::new();
    let mut total = 0u64;
    for d in list[8..8 + desc_len].chunks_exact(16) {
        let (lba, count) = (be64(&d[0..8]), u64::from(be32(&d[8..12])));
        if lba.checked_add(count).is_none_or(|e| e > disk.blocks) {
            return Err(Sense::LBA_OUT_OF_RANGE);
        }
        total += count;
        if count > 0 {
            out.push((lba * bs, count * bs));
        }
    }
    if total > u64::from(MAX_UNMAP_BLOCKS) {
        return Err(Sense::BAD_PARAMETER);
    }
    Ok(out)
}

/// The LBA and block count of a READ or WRITE CDB, or None if the CDB is too short.
pub fn lba_and_count(cdb: &[u8]) -> Option<(u64, u32)> {
    match cdb.first()? {
        &op::READ_6 | &op::WRITE_6 if cdb.len() >= 6 => {
            let lba =
                (u64::from(cdb[1] & 0x1f) << 16) | (u64::from(cdb[2]) << 8) | u64::from(cdb[3]);
            // SBC-3 5.x: a transfer length of 0 in a 6-byte CDB means 256 blocks.
            let n = if cdb[4] == 0 { 256 } else { u32::from(cdb[4]) };
            Some((lba, n))
        }
        &op::READ_10 | &op::WRITE_10 if cdb.len() >= 10 => {
            Some((u64::from(be32(&cdb[2..6])), u32::from(be16(&cdb[7..9]))))
        }
        &op::READ_12 | &op::WRITE_12 if cdb.len() >= 12 => {
            Some((u64::from(be32(&cdb[2..6])), be32(&cdb[6..10])))
        }
        &op::READ_16 | &op::WRITE_16 if cdb.len() >= 16 => {
            Some((be64(&cdb[2..10]), be32(&cdb[10..14])))
        }
        _ => None,
    }
}

/// SBC-3: an LBA range past the capacity fails before any data moves; a transfer longer than
/// the unit's limit (VPD 0xB0) is an invalid field.
fn check_range(lba: u64, count: u32, disk: &Disk) -> Result<(), Sense> {
    if lba
        .checked_add(u64::from(count))
        .is_none_or(|end| end > disk.blocks)
    {
        return Err(Sense::LBA_OUT_OF_RANGE);
    }
    if count > MAX_TRANSFER_BLOCKS {
        return Err(Sense::BAD_FIELD);
    }
    Ok(())
}

/// The LBA and block count of a VERIFY (10) or (16) CDB.
fn verify_range(cdb: &[u8]) -> Option<(u64, u32)> {
    match *cdb.first()? {
        op::VERIFY_10 if cdb.len() >= 10 => {
            Some((u64::from(be32(&cdb[2..6])), u32::from(be16(&cdb[7..9]))))
        }
        op::VERIFY_16 if cdb.len() >= 16 => Some((be64(&cdb[2..10]), be32(&cdb[10..14]))),
        _ => None,
    }
}

/// VERIFY (SBC-3 5.31): without BYTCHK the medium is checked (a file has nothing to check
/// beyond the range); BYTCHK 01 compares the initiator's data with the medium.
fn verify(cdb: &[u8], disk: &Disk) -> Action {
    let Some((lba, count)) = verify_range(cdb) else {
        return Action::Fail(Sense::BAD_FIELD);
    };
    // VRPROTECT (bits 5-7): no protection information here.
    if cdb[1] & 0xe0 != 0 {
        return Action::Fail(Sense::BAD_FIELD);
    }
    if let Err(sense) = check_range(lba, count, disk) {
        return Action::Fail(sense);
    }
    match (cdb[1] >> 1) & 0x03 {
        0 => Action::Good,
        1 if count == 0 => Action::Good,
        1 => Action::Compare {
            offset: lba * u64::from(disk.block_size),
            len: u64::from(count) * u64::from(disk.block_size),
        },
        // BYTCHK 11 (one block compared with each) is not offered; 10 is reserved.
        _ => Action::Fail(Sense::BAD_FIELD),
    }
}

fn rw(cdb: &[u8], disk: &Disk, write: bool) -> Action {
    let Some((lba, count)) = lba_and_count(cdb) else {
        return Action::Fail(Sense::BAD_FIELD);
    };
    // RDPROTECT / WRPROTECT (byte 1, bits 5-7) in the 10-, 12- and 16-byte CDBs: this unit
    // has no protection information (SBC-3 5.x: a nonzero value is an invalid field).
    if cdb[0] != op::READ_6 && cdb[0] != op::WRITE_6 && cdb[1] & 0xe0 != 0 {
        return Action::Fail(Sense::BAD_FIELD);
    }
    let fua = cdb[0] != op::WRITE_6 && cdb[1] & 0x08 != 0;
    if let Err(sense) = check_range(lba, count, disk) {
        return Action::Fail(sense);
    }
    if write && disk.read_only {
        return Action::Fail(Sense::WRITE_PROTECTED);
    }
    if count == 0 {
        return Action::Good;
    }
    let offset = lba * u64::from(disk.block_size);
    let len = u64::from(count) * u64::from(disk.block_size);
    if write {
        Action::Write { offset, len, fua }
    } else {
        Action::Read { offset, len }
    }
}

fn standard_inquiry() -> Vec<u8> {
    let mut d = vec![0u8; 74];
    d[0] = 0x00; // connected direct-access block device
    d[2] = 0x06; // SPC-4
    d[3] = 0x02; // response data format 2
    d[4] = (d.len() - 5) as u8; // additional length
    d[7] = 0x02; // CmdQue
    d[8..16].copy_from_slice(VENDOR);
    d[16..32].copy_from_slice(PRODUCT);
    d[32..36].copy_from_slice(REVISION);
    // Version descriptors (SPC-4 6.6.2, bytes 58-73): SAM-5, iSCSI, SPC-4, SBC-3.
    for (i, v) in [0x00a0u16, 0x0960, 0x0460, 0x04c0].iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    d
}

fn inquiry(cdb: &[u8], disk: &Disk) -> Action {
    let evpd = cdb[1] & 0x01 != 0;
    let page = cdb[2];
    let alloc = usize::from(be16(&cdb[3..5]));
    if !evpd {
        // SPC-4 6.6.1: PAGE CODE set without EVPD is an invalid field.
        if page != 0 {
            return Action::Fail(Sense::BAD_FIELD);
        }
        return cut(standard_inquiry(), alloc);
    }
    let body: Vec<u8> = match page {
        // Supported VPD pages.
        0x00 if disk.unmap == Unmap::No => vec![0x00, 0x80, 0x83, 0xb0, 0xb1],
        0x00 => vec![0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2],
        // Unit serial number.
        0x80 => disk.serial.as_bytes().to_vec(),
        // Device identification: a T10 vendor ID designator (vendor + serial) and an NAA
        // locally assigned one derived from the serial.
        0x83 => {
            let mut v = Vec::new();
            let t10: Vec<u8> = VENDOR.iter().copied().chain(disk.serial.bytes()).collect();
            v.extend_from_slice(&[0x02, 0x01, 0x00, t10.len() as u8]);
            v.extend_from_slice(&t10);
            let mut naa = [0u8; 8];
            naa[0] = 0x30; // NAA 3: locally assigned
            let h = fnv64(disk.serial.as_bytes());
            naa[1..8].copy_from_slice(&h.to_be_bytes()[1..8]);
            v.extend_from_slice(&[0x01, 0x03, 0x00, 0x08]);
            v.extend_from_slice(&naa);
            v
        }
        // Block limits: the largest transfer and its optimal size.
        0xb0 => {
            let mut v = vec![0u8; 0x3c];
            v[4..8].copy_from_slice(&MAX_TRANSFER_BLOCKS.to_be_bytes());
            v[8..12].copy_from_slice(&MAX_TRANSFER_BLOCKS.to_be_bytes());
            if disk.unmap != Unmap::No {
                v[16..20].copy_from_slice(&MAX_UNMAP_BLOCKS.to_be_bytes());
                v[20..24].copy_from_slice(&MAX_UNMAP_DESCRIPTORS.to_be_bytes());
                // Optimal granularity: 8 blocks (4 KiB, an overlay's chunk, a file system's
                // block).
                v[24..28].copy_from_slice(&8u32.to_be_bytes());
            }
            // WSNZ: WRITE SAME with no block count is refused. MAXIMUM WRITE SAME LENGTH.
            v[0] = 0x01;
            v[32..40].copy_from_slice(&u64::from(MAX_TRANSFER_BLOCKS).to_be_bytes());
            v
        }
        // Logical block provisioning (SBC-3 6.6.4): UNMAP and WRITE SAME with UNMAP, LBPRZ,
        // thin.
        0xb2 if disk.unmap != Unmap::No => {
            vec![0x00, 0x80 | 0x40 | 0x20 | 0x04, 0x02, 0x00]
        }
        // Block device characteristics: non-rotating medium.
        0xb1 => {
            let mut v = vec![0u8; 0x3c];
            v[0..2].copy_from_slice(&1u16.to_be_bytes());
            v
        }
        _ => return Action::Fail(Sense::BAD_FIELD),
    };
    let mut d = vec![0x00, page];
    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
    d.extend_from_slice(&body);
    cut(d, alloc)
}

/// A small stable hash (FNV-1a) for identifiers: the same serial gives the same NAA ID (and
/// the daemon derives a target's serial from its name with it).
pub fn fnv64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn mode_sense(cdb: &[u8], disk: &Disk) -> Action {
    let ten = cdb[0] == op::MODE_SENSE_10;
    let page = cdb[2] & 0x3f;
    let pc = cdb[2] >> 6;
    let alloc = if ten {
        usize::from(be16(&cdb[7..9]))
    } else {
        usize::from(cdb[4])
    };
    // Saved values are not supported (SPC-4 6.11: PC 3 fails with SAVING PARAMETERS NOT
    // SUPPORTED).
    if pc == 3 {
        return Action::Fail(Sense::new(key::ILLEGAL_REQUEST, 0x39, 0x00));
    }
    let changeable = pc == 1;
    // Caching page (0x08): write cache enabled (writes are durable only after SYNCHRONIZE
    // CACHE); control page (0x0a).
    let caching = {
        let mut p = vec![0u8; 20];
        p[0] = 0x08;
        p[1] = 18;
        if !changeable {
            p[2] = 0x04; // WCE
        }
        p
    };
    let control = {
        let mut p = vec![0u8; 12];
        p[0] = 0x0a;
        p[1] = 10;
        p
    };
    let pages: Vec<u8> = match page {
        0x08 => caching,
        0x0a => control,
        0x3f => [caching, control].concat(),
        _ => return Action::Fail(Sense::BAD_FIELD),
    };
    // Device-specific parameter: WP when the unit is read-only; DPOFUA: DPO and FUA are
    // taken (FUA writes are durable before they complete).
    let dsp = if disk.read_only { 0x80 } else { 0x00 } | 0x10;
    let mut d = Vec::new();
    if ten {
        let len = (6 + pages.len()) as u16;
        d.extend_from_slice(&len.to_be_bytes());
        d.extend_from_slice(&[0, dsp, 0, 0, 0, 0]);
    } else {
        d.extend_from_slice(&[(3 + pages.len()) as u8, 0, dsp, 0]);
    }
    d.extend_from_slice(&pages);
    cut(d, alloc)
}

fn report_luns(cdb: &[u8], luns: &[u64]) -> Action {
    if cdb.len() < 12 {
        return Action::Fail(Sense::BAD_FIELD);
    }
    let alloc = be32(&cdb[6..10]) as usize;
    // SPC-4 6.33: an allocation length under 16 is an invalid field.
    if alloc < 16 {
        return Action::Fail(Sense::BAD_FIELD);
    }
    let mut d = Vec::with_capacity(8 + 8 * luns.len());
    d.extend_from_slice(&((8 * luns.len()) as u32).to_be_bytes());
    d.extend_from_slice(&[0; 4]);
    for &l in luns {
        d.extend_from_slice(&encode_lun(l).to_be_bytes());
    }
    cut(d, alloc)
}

/// A LUN number as the 8-byte LUN field carries it (SAM-5 4.7: peripheral addressing below
/// 256, flat space addressing up to 16383).
pub fn encode_lun(n: u64) -> u64 {
    if n < 256 {
        n << 48
    } else {
        ((0x4000 | (n & 0x3fff)) << 48) & 0xffff_0000_0000_0000
    }
}

/// The LUN number of an 8-byte LUN field (the inverse of [`encode_lun`]).
pub fn decode_lun(field: u64) -> u64 {
    let top = (field >> 48) as u16;
    match top >> 14 {
        0 => u64::from(top & 0xff),
        1 => u64::from(top & 0x3fff),
        _ => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> Disk {
        Disk {
            blocks: 2048,
            block_size: 512,
            read_only: false,
            serial: "beef0001".into(),
            unmap: Default::default(),
        }
    }

    #[test]
    fn reads_and_writes_decode_their_lba_and_length() {
        let d = disk();
        let r10 = [op::READ_10, 0, 0, 0, 0, 10, 0, 0, 4, 0];
        assert_eq!(
            decode(&r10, Some(&d), &[0]),
            Action::Read {
                offset: 5120,
                len: 2048
            }
        );
        let w16 = [op::WRITE_16, 0, 0, 0, 0, 0, 0, 0, 7, 0xff, 0, 0, 0, 1, 0, 0];
        assert_eq!(
            decode(&w16, Some(&d), &[0]),
            Action::Write {
                offset: 2047 * 512,
                len: 512,
                fua: false
            }
        );
        // FUA, and the protection field that must be zero.
        let fua = [op::WRITE_10, 0x08, 0, 0, 0, 1, 0, 0, 1, 0];
        assert!(matches!(
            decode(&fua, Some(&d), &[0]),
            Action::Write { fua: true, .. }
        ));
        let prot = [op::READ_10, 0x20, 0, 0, 0, 1, 0, 0, 1, 0];
        assert_eq!(
            decode(&prot, Some(&d), &[0]),
            Action::Fail(Sense::BAD_FIELD)
        );
        // VERIFY: a range check, or a compare with BYTCHK.
        let v = [op::VERIFY_10, 0x02, 0, 0, 0, 1, 0, 0, 2, 0];
        assert_eq!(
            decode(&v, Some(&d), &[0]),
            Action::Compare {
                offset: 512,
                len: 1024
            }
        );
        let v = [op::VERIFY_10, 0, 0, 0, 0x08, 0, 0, 0, 1, 0];
        assert_eq!(
            decode(&v, Some(&d), &[0]),
            Action::Fail(Sense::LBA_OUT_OF_RANGE)
        );
        // READ (6) with length 0 is 256 blocks.
        assert_eq!(
            lba_and_count(&[op::READ_6, 0, 1, 0, 0, 0]),
            Some((256, 256))
        );
        assert_eq!(
            decode(&[op::READ_10, 0, 0, 0, 0, 0, 0, 0, 0, 0], Some(&d), &[0]),
            Action::Good
        );
    }

    #[test]
    fn errors_carry_the_sense_the_standard_names() {
        let d = disk();
        // One block past the end.
        let past = [op::READ_10, 0, 0, 0, 0x08, 0x00, 0, 0, 1, 0];
        assert_eq!(
            decode(&past, Some(&d), &[0]),
            Action::Fail(Sense::LBA_OUT_OF_RANGE)
        );
        // An LBA that overflows with its length.
        let mut huge = [0u8; 16];
        huge[0] = op::READ_16;
        huge[2..10].copy_from_slice(&u64::MAX.to_be_bytes());
        huge[13] = 2;
        assert_eq!(
            decode(&huge, Some(&d), &[0]),
            Action::Fail(Sense::LBA_OUT_OF_RANGE)
        );
        assert_eq!(
            decode(&[0xc7, 0, 0, 0, 0, 0], Some(&d), &[0]),
            Action::Fail(Sense::BAD_OPCODE)
        );
        assert_eq!(
            decode(&[op::TEST_UNIT_READY, 0, 0, 0, 0, 0], None, &[0]),
            Action::Fail(Sense::NO_SUCH_LUN)
        );
        let ro = Disk {
            read_only: true,
            ..disk()
        };
        let w10 = [op::WRITE_10, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(
            decode(&w10, Some(&ro), &[0]),
            Action::Fail(Sense::WRITE_PROTECTED)
        );
        // Page code without EVPD.
        assert_eq!(
            decode(&[op::INQUIRY, 0, 0x80, 0, 36, 0], Some(&d), &[0]),
            Action::Fail(Sense::BAD_FIELD)
        );
        let s = Sense::LBA_OUT_OF_RANGE.fixed();
        assert_eq!((s[0], s[2], s[7], s[12], s[13]), (0x70, 5, 10, 0x21, 0));
    }

    #[test]
    fn inquiry_and_capacity_answer_what_initiators_read() {
        let d = disk();
        let Action::Data(std) = decode(&[op::INQUIRY, 0, 0, 0, 96, 0], Some(&d), &[0]) else {
            panic!()
        };
        assert_eq!(std.len(), 74);
        assert_eq!(
            &std[58..66],
            &[0x00, 0xa0, 0x09, 0x60, 0x04, 0x60, 0x04, 0xc0]
        );
        assert_eq!(&std[8..16], b"BOOTSTRM");
        // Cut to the allocation length.
        let Action::Data(short) = decode(&[op::INQUIRY, 0, 0, 0, 5, 0], Some(&d), &[0]) else {
            panic!()
        };
        assert_eq!(short.len(), 5);
        let Action::Data(pages) = decode(&[op::INQUIRY, 1, 0, 0, 255, 0], Some(&d), &[0]) else {
            panic!()
        };
        assert_eq!(pages, [0, 0, 0, 5, 0x00, 0x80, 0x83, 0xb0, 0xb1]);
        let Action::Data(serial) = decode(&[op::INQUIRY, 1, 0x80, 0, 255, 0], Some(&d), &[0])
        else {
            panic!()
        };
        assert_eq!(&serial[4..], b"beef0001");
        let Action::Data(cap) = decode(
            &[op::READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            Some(&d),
            &[0],
        ) else {
            panic!()
        };
        assert_eq!(cap, [0, 0, 7, 0xff, 0, 0, 2, 0]);
        let mut rc16 = [0u8; 16];
        rc16[0] = op::SERVICE_ACTION_IN_16;
        rc16[1] = op::SA_READ_CAPACITY_16;
        rc16[13] = 32;
        let Action::Data(cap) = decode(&rc16, Some(&d), &[0]) else {
            panic!()
        };
        assert_eq!(&cap[..12], &[0, 0, 0, 0, 0, 0, 7, 0xff, 0, 0, 2, 0]);
        // An absent LUN still answers INQUIRY, with peripheral qualifier 3.
        let Action::Data(none) = decode(&[op::INQUIRY, 0, 0, 0, 36, 0], None, &[0]) else {
            panic!()
        };
        assert_eq!(none[0], 0x7f);
    }

    #[test]
    fn report_luns_and_mode_sense() {
        let d = disk();
        let mut rl = [0u8; 12];
        rl[0] = op::REPORT_LUNS;
        rl[9] = 64;
        let Action::Data(l) = decode(&rl, None, &[0, 1, 300]) else {
            panic!()
        };
        assert_eq!(&l[..4], &24u32.to_be_bytes());
        assert_eq!(&l[8..16], &0u64.to_be_bytes());
        assert_eq!(&l[16..18], &[0, 1]);
        assert_eq!(&l[24..26], &[0x41, 0x2c]);
        assert_eq!(decode_lun(encode_lun(300)), 300);
        assert_eq!(decode_lun(encode_lun(7)), 7);
        let Action::Data(ms) = decode(&[op::MODE_SENSE_6, 0, 0x3f, 0, 255, 0], Some(&d), &[0])
        else {
            panic!()
        };
        assert_eq!(usize::from(ms[0]) + 1, ms.len());
        assert_eq!(ms[2], 0x10, "DPOFUA");
        let ro = Disk {
            read_only: true,
            ..disk()
        };
        let Action::Data(ms) = decode(
            &[op::MODE_SENSE_10, 0, 0x08, 0, 0, 0, 0, 0, 255, 0],
            Some(&ro),
            &[0],
        ) else {
            panic!()
        };
        assert_eq!(ms[3], 0x90, "WP and DPOFUA");
        assert_eq!(ms[8], 0x08);
    }
}
