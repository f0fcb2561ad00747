//! Ethernet II frames (IEEE 802.3, DIX framing).
//!
//! ```text
//!  0                   6                   12      14
//! +-------------------+-------------------+-------+----------
//! | destination MAC   | source MAC        | type  | payload
//! +-------------------+-------------------+-------+----------
//! ```

use crate::{Error, Result, get_u16};
use core::fmt;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(pub [u8; 6]);

impl Address {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Address = Address([0xff; 6]);

    /// The address in `b`, which must be 6 bytes long.
    pub fn from_bytes(b: &[u8]) -> Option<Address> {
        <[u8; 6]>::try_from(b).ok().map(Address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of an IEEE 802.1Q VLAN tag (then 2 bytes of TCI and the inner EtherType).
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of an IEEE 802.1ad (QinQ service) tag, read like 802.1Q's.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Bytes a VLAN tag adds to the header.
pub const VLAN_TAG_LEN: usize = 4;

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking it; accessors may panic until [`Frame::check_len`] passes.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps `buffer` after checking that it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let f = Frame::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks that the buffer holds a whole header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC.
    pub fn dst_addr(&self) -> Address {
        Address(
            self.buffer.as_ref()[field::DST]
                .try_into()
                .unwrap_or([0; 6]),
        )
    }

    /// Source MAC.
    pub fn src_addr(&self) -> Address {
        Address(
            self.buffer.as_ref()[field::SRC]
                .try_into()
                .unwrap_or([0; 6]),
        )
    }

    /// EtherType.
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC.
    pub fn set_dst_addr(&mut self, a: Address) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0);
    }

    /// Sets the source MAC.
    pub fn set_src_addr(&mut self, a: Address) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, t: u16) {
        self.buffer.as_mut()[field::ETHERTYPE..field::ETHERTYPE + 2]
            .copy_from_slice(&t.to_be_bytes());
    }

    /// The bytes after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // src
        0x08, 0x00, // IPv4
        0xde, 0xad,
    ];

    #[test]
    fn golden_fields() {
        let f = Frame::new_checked(&GOLDEN[..]).unwrap();
        assert_eq!(f.dst_addr(), Address::BROADCAST);
        assert_eq!(f.src_addr(), Address([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        assert_eq!(f.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(f.payload(), &[0xde, 0xad]);
        assert_eq!(f.src_addr().to_string(), "52:54:00:12:34:56");
    }

    #[test]
    fn emit_matches_golden() {
        let mut buf = [0u8; 16];
        let mut f = Frame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(Address::BROADCAST);
        f.set_src_addr(Address([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        f.set_ethertype(ETHERTYPE_IPV4);
        f.payload_mut().copy_from_slice(&[0xde, 0xad]);
        assert_eq!(buf, GOLDEN);
    }

    #[test]
    fn short_frame_is_truncated() {
        assert_eq!(
            Frame::new_checked(&GOLDEN[..13]).unwrap_err(),
            Error::Truncated
        );
    }
}
