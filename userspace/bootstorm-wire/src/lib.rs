//! Wire formats of bootstorm (Ethernet, IPv4, UDP, DHCPv4, TFTP, iSCSI PDUs): typed, zero-copy views over byte buffers and builders that write
//! into caller-provided buffers, in the manner of smoltcp.
//!
//! Each format is a view `Packet<T: AsRef<[u8]>>`: `new_checked` validates every length that comes
//! off the wire exactly once (`check_len`), after which no accessor can panic, whatever the bytes.
//! Setters exist where `T: AsMut<[u8]>`. Protocol content is then lifted into a validated `Repr`
//! (borrowing from the buffer, never allocating) with `parse`, and written back with `emit`.
//!
//! This crate is written by hand, not taken from a general packet crate, because it is the product's
//! own core: the hot path parses and builds millions of these per second without allocating, and
//! every field must be exactly the RFC's (golden tests per field guard that). It deliberately holds
//! no protocol policy: an unknown DHCP option or message type is a value, not an error, and what to
//! do about it is decided in `bootstorm-dhcp`. It depends on nothing.
#![forbid(unsafe_code)]

pub mod arp;
pub mod checksum;
pub mod dhcp;
pub mod ethernet;
pub mod frame;
pub mod ipv4;
pub mod iscsi;
pub mod tftp;
pub mod udp;

use core::fmt;

/// Why bytes could not be read as a packet. Tiny and `Copy`: it is returned on the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer ends before a field or a length it declares.
    Truncated,
    /// A field holds a value the format forbids; the text names it.
    Malformed(&'static str),
    /// A checksum does not match.
    Checksum,
    /// A builder ran out of room in the output buffer.
    NoSpace,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::Malformed(what) => write!(f, "malformed packet: {what}"),
            Error::Checksum => f.write_str("bad checksum"),
            Error::NoSpace => f.write_str("no space left in output buffer"),
        }
    }
}

impl std::error::Error for Error {}

/// Result alias of this crate.
pub type Result<T> = core::result::Result<T, Error>;

pub(crate) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn get_ip(b: &[u8], at: usize) -> core::net::Ipv4Addr {
    core::net::Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}
