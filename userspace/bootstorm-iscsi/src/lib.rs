//! The iSCSI target core of bootstorm (RFC 7143), sans-IO: a connection is a state machine fed
//! whole PDUs and answering with PDUs to send and backing-store operations to perform. It holds
//! login and its negotiation ([`login`]: the operational keys, CHAP with MD5 and mutual CHAP),
//! the session's sequence numbers, and the SCSI block commands of a disk target ([`scsi`]).
//!
//! It deliberately holds no I/O: no socket, no file, no clock, no thread. The daemon's iSCSI
//! service owns the TCP connections and the backing files and drives a [`Connection`] per
//! connection; a test drives one with byte arrays. Written by hand because it is the product's
//! own protocol core (as the DHCP and TFTP ones are).
#![forbid(unsafe_code)]

pub mod conn;
pub mod login;
pub mod scsi;

pub use conn::{Chap, Config, Connection, Event, IoKind, IoRequest, IoResult, Target};
pub use login::{Limits, Params};
pub use scsi::{Disk, Sense};

#[cfg(test)]
mod tests;
