//! IPv4 headers (RFC 791).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |Type of Service|          Total Length         |
//! |         Identification        |Flags|      Fragment Offset    |
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! |                       Source Address                          |
//! |                    Destination Address                        |
//! |                    Options                    |    Padding    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use crate::{Error, Result, checksum, get_ip, get_u16};
use core::net::Ipv4Addr;

/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// A view of an IPv4 packet.
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

    /// Checks version, header length and total length against the buffer, once; after it passes,
    /// no accessor can panic.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(Error::Malformed("IP version is not 4"));
        }
        let ihl = self.header_len();
        if ihl < HEADER_LEN {
            return Err(Error::Malformed("IPv4 header length below 20"));
        }
        let total = usize::from(self.total_len());
        if total < ihl {
            return Err(Error::Malformed("IPv4 total length below header length"));
        }
        if ihl > b.len() || total > b.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Type of service / DSCP+ECN byte.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Total length field.
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// True if more fragments follow or the fragment offset is not zero.
    pub fn is_fragment(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & 0x3fff != 0
    }

    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & 0x4000 != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol number.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        get_ip(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        get_ip(self.buffer.as_ref(), field::DST)
    }

    /// True if the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    /// The payload, as far as the total length says (link padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        let ihl = self.header_len();
        let b = self.buffer.as_mut();
        b[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&b[..ihl]);
        b[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (ihl, total) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[ihl..total]
    }
}

/// A validated IPv4 header without options: what a builder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol number.
    pub protocol: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
}

impl Repr {
    /// Reads the header of a checked packet, refusing fragments (no DHCP or TFTP datagram we serve
    /// needs reassembly) and bad checksums.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        if !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        if p.is_fragment() {
            return Err(Error::Malformed("IPv4 fragment"));
        }
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            ttl: p.ttl(),
        })
    }

    /// Bytes the header takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header (with checksum) at the start of `buf`, which must have room for the header.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let total = HEADER_LEN + self.payload_len;
        let total = u16::try_from(total).map_err(|_| Error::NoSpace)?;
        if buf.len() < HEADER_LEN {
            return Err(Error::NoSpace);
        }
        let b = &mut buf[..HEADER_LEN];
        b[field::VER_IHL] = 0x45;
        b[field::TOS] = 0;
        b[field::LENGTH..field::LENGTH + 2].copy_from_slice(&total.to_be_bytes());
        b[field::IDENT..field::IDENT + 2].copy_from_slice(&[0, 0]);
        // DF set: nothing we send should be fragmented on the way.
        b[field::FLAGS_FRAG..field::FLAGS_FRAG + 2].copy_from_slice(&0x4000u16.to_be_bytes());
        b[field::TTL] = self.ttl;
        b[field::PROTOCOL] = self.protocol;
        b[field::SRC..field::SRC + 4].copy_from_slice(&self.src_addr.octets());
        b[field::DST..field::DST + 4].copy_from_slice(&self.dst_addr.octets());
        let mut p = Packet::new_unchecked(b);
        p.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A header taken from a real capture (a DHCP DISCOVER, 0.0.0.0 -> 255.255.255.255, 328 bytes).
    const GOLDEN: [u8; 20] = [
        0x45, 0x10, 0x01, 0x48, 0x00, 0x00, 0x00, 0x00, 0x80, 0x11, 0x39, 0x96, 0x00, 0x00, 0x00,
        0x00, 0xff, 0xff, 0xff, 0xff,
    ];

    fn golden_packet() -> Vec<u8> {
        let mut v = GOLDEN.to_vec();
        v.resize(328, 0);
        v
    }

    #[test]
    fn golden_fields() {
        let buf = golden_packet();
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.tos(), 0x10);
        assert_eq!(p.total_len(), 328);
        assert_eq!(p.ident(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 128);
        assert_eq!(p.protocol(), PROTO_UDP);
        assert_eq!(p.checksum(), 0x3996);
        assert_eq!(p.src_addr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(p.dst_addr(), Ipv4Addr::BROADCAST);
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 308);
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let repr = Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 1),
            dst_addr: Ipv4Addr::new(198, 18, 1, 7),
            protocol: PROTO_UDP,
            payload_len: 300,
            ttl: 64,
        };
        let mut buf = vec![0u8; 320];
        repr.emit(&mut buf).unwrap();
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn bad_lengths_are_errors_not_panics() {
        let mut buf = golden_packet();
        buf[0] = 0x44; // IHL 4
        assert!(matches!(
            Packet::new_checked(&buf[..]),
            Err(Error::Malformed(_))
        ));
        buf[0] = 0x4f; // IHL 15 = 60 bytes, fine
        assert!(Packet::new_checked(&buf[..]).is_ok());
        buf[0] = 0x45;
        buf[2..4].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&buf[..]).unwrap_err(), Error::Truncated);
        buf[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert!(matches!(
            Packet::new_checked(&buf[..]),
            Err(Error::Malformed(_))
        ));
        buf[0] = 0x65;
        assert!(matches!(
            Packet::new_checked(&buf[..]),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn flipped_bit_fails_checksum() {
        let mut buf = golden_packet();
        buf[8] ^= 1;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::Checksum);
    }
}
