//! UDP headers (RFC 768).
//!
//! ```text
//!  0      7 8     15 16    23 24    31
//! +--------+--------+--------+--------+
//! |   Source Port   |   Dest Port     |
//! +--------+--------+--------+--------+
//! |     Length      |    Checksum     |
//! +--------+--------+--------+--------+
//! ```

use crate::{Error, Result, checksum, get_u16, ipv4::PROTO_UDP};
use core::net::Ipv4Addr;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the length field against the buffer.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN {
            return Err(Error::Malformed("UDP length below 8"));
        }
        if len > b.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header + payload).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum field; zero means the sender computed none.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload, as far as the length field says.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// True if the checksum is right or absent (zero is allowed over IPv4).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let sum = checksum::pseudo_header(src, dst, PROTO_UDP, len);
        checksum::finish(checksum::accumulate(
            sum,
            &self.buffer.as_ref()[..usize::from(len)],
        )) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT..field::SRC_PORT + 2]
            .copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT..field::DST_PORT + 2]
            .copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the length field.
    pub fn set_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH..field::LENGTH + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// Computes and stores the checksum over pseudo-header, header and payload.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let len = self.len();
        let b = self.buffer.as_mut();
        b[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&[0, 0]);
        let sum = checksum::pseudo_header(src, dst, PROTO_UDP, len);
        let mut c = checksum::finish(checksum::accumulate(sum, &b[..usize::from(len)]));
        // RFC 768: a computed zero is sent as all ones, since zero means "no checksum".
        if c == 0 {
            c = 0xffff;
        }
        b[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..len]
    }
}

/// Writes a UDP header for a payload already in `buf[HEADER_LEN..HEADER_LEN + payload_len]` and
/// fills the checksum.
pub fn emit(
    buf: &mut [u8],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload_len: usize,
) -> Result<()> {
    let len = HEADER_LEN + payload_len;
    let len16 = u16::try_from(len).map_err(|_| Error::NoSpace)?;
    if buf.len() < len {
        return Err(Error::NoSpace);
    }
    let mut p = Packet::new_unchecked(&mut buf[..len]);
    p.set_src_port(src.1);
    p.set_dst_port(dst.1);
    p.set_len(len16);
    p.fill_checksum(src.0, dst.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_fields() {
        let buf = [0x00, 0x44, 0x00, 0x43, 0x00, 0x0a, 0x00, 0x00, 0xaa, 0xbb];
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.src_port(), 68);
        assert_eq!(p.dst_port(), 67);
        assert_eq!(p.len(), 10);
        assert_eq!(p.checksum(), 0);
        assert_eq!(p.payload(), &[0xaa, 0xbb]);
        assert!(p.verify_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
    }

    #[test]
    fn emit_fills_a_verifiable_checksum() {
        let src = (Ipv4Addr::new(198, 18, 0, 1), 67);
        let dst = (Ipv4Addr::new(198, 18, 1, 9), 68);
        let mut buf = [0u8; 13];
        buf[8..].copy_from_slice(b"hello");
        emit(&mut buf, src, dst, 5).unwrap();
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_ne!(p.checksum(), 0);
        assert!(p.verify_checksum(src.0, dst.0));
        buf[9] ^= 0x40;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(!p.verify_checksum(src.0, dst.0));
    }

    #[test]
    fn bad_length_fields() {
        let mut buf = [0x00, 0x44, 0x00, 0x43, 0x00, 0x07, 0x00, 0x00];
        assert!(matches!(
            Packet::new_checked(&buf[..]),
            Err(Error::Malformed(_))
        ));
        buf[5] = 9;
        assert_eq!(Packet::new_checked(&buf[..]).unwrap_err(), Error::Truncated);
        assert_eq!(
            Packet::new_checked(&buf[..5]).unwrap_err(),
            Error::Truncated
        );
    }
}
