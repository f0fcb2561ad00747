//! DHCPv4 messages (RFC 2131, options RFC 2132).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------+---------------+---------------+---------------+
//! |     op (1)    |   htype (1)   |   hlen (1)    |   hops (1)    |
//! +---------------+---------------+---------------+---------------+
//! |                            xid (4)                            |
//! +-------------------------------+-------------------------------+
//! |           secs (2)            |           flags (2)           |
//! +-------------------------------+-------------------------------+
//! |                          ciaddr  (4)                          |
//! |                          yiaddr  (4)                          |
//! |                          siaddr  (4)                          |
//! |                          giaddr  (4)                          |
//! +---------------------------------------------------------------+
//! |                          chaddr  (16)                         |
//! |                          sname   (64)                         |
//! |                          file    (128)                        |
//! +---------------------------------------------------------------+
//! |             magic cookie 99.130.83.99 (4)                     |
//! |                          options (variable)                   |
//! +---------------------------------------------------------------+
//! ```
//!
//! [`Packet`] is the view; [`OptionIter`] walks options without copying, including those moved
//! into `file` and `sname` by option overload (52); [`Repr`] lifts what the server needs into
//! validated fields that borrow from the buffer; [`OptionWriter`] writes options into a reply,
//! honouring a size limit (option 57) so that optional options are dropped, never required ones.

use crate::{Error, Result, get_ip, get_u16, get_u32};
use core::net::Ipv4Addr;

mod repr;
mod write;
pub use repr::*;
pub use write::*;

/// The DHCP magic cookie (RFC 2131 3).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Bytes before the options: fixed BOOTP header plus cookie.
pub const HEADER_LEN: usize = field::OPTIONS;
/// RFC 2131 2: a client must be able to receive options of at least 312 octets, so a message of
/// 548 octets (576 minus IP and UDP headers) is the size every client accepts.
pub const DEFAULT_MAX_MESSAGE: usize = 548;
/// Many BOOTP relays and old PXE ROMs drop replies shorter than the BOOTP minimum of 300 octets
/// (RFC 1542 2.1), so replies are padded to it.
pub const MIN_MESSAGE: usize = 300;
/// UDP port of servers (and relays).
pub const SERVER_PORT: u16 = 67;
/// UDP port of clients.
pub const CLIENT_PORT: u16 = 68;
/// The broadcast bit of `flags` (RFC 2131 2, figure 2).
pub const FLAG_BROADCAST: u16 = 0x8000;

mod field {
    use core::ops::Range;
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const HOPS: usize = 3;
    pub const XID: usize = 4;
    pub const SECS: usize = 8;
    pub const FLAGS: usize = 10;
    pub const CIADDR: usize = 12;
    pub const YIADDR: usize = 16;
    pub const SIADDR: usize = 20;
    pub const GIADDR: usize = 24;
    pub const CHADDR: Range<usize> = 28..44;
    pub const SNAME: Range<usize> = 44..108;
    pub const FILE: Range<usize> = 108..236;
    pub const COOKIE: Range<usize> = 236..240;
    pub const OPTIONS: usize = 240;
}

/// Option codes used by bootstorm, named as in RFC 2132 and later RFCs.
pub mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const TIME_OFFSET: u8 = 2;
    pub const ROUTER: u8 = 3;
    pub const DNS_SERVERS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const ROOT_PATH: u8 = 17;
    pub const INTERFACE_MTU: u8 = 26;
    pub const BROADCAST_ADDR: u8 = 28;
    pub const NTP_SERVERS: u8 = 42;
    pub const VENDOR_SPECIFIC: u8 = 43;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const VENDOR_CLASS_ID: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const TFTP_SERVER_NAME: u8 = 66;
    pub const BOOTFILE_NAME: u8 = 67;
    pub const USER_CLASS: u8 = 77;
    pub const RELAY_AGENT_INFO: u8 = 82;
    pub const CLIENT_ARCH: u8 = 93;
    pub const CLIENT_NDI: u8 = 94;
    pub const CLIENT_UUID: u8 = 97;
    pub const CLASSLESS_ROUTES: u8 = 121;
    /// iPXE's iSCSI options (its include/ipxe/dhcp.h): the target IQNs and the initiator's.
    pub const ISCSI_PRIMARY_TARGET_IQN: u8 = 201;
    pub const ISCSI_SECONDARY_TARGET_IQN: u8 = 202;
    pub const ISCSI_INITIATOR_IQN: u8 = 203;
    pub const END: u8 = 255;
}

/// BOOTP op code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// BOOTREQUEST (1): client to server.
    Request,
    /// BOOTREPLY (2): server to client.
    Reply,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for Op {
    fn from(v: u8) -> Op {
        match v {
            1 => Op::Request,
            2 => Op::Reply,
            x => Op::Unknown(x),
        }
    }
}

impl From<Op> for u8 {
    fn from(op: Op) -> u8 {
        match op {
            Op::Request => 1,
            Op::Reply => 2,
            Op::Unknown(x) => x,
        }
    }
}

/// DHCP message type, option 53 (RFC 2132 9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
    /// A type this crate has no name for (e.g. RFC 4388 lease queries).
    Unknown(u8),
}

impl From<u8> for MessageType {
    fn from(v: u8) -> MessageType {
        match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            x => MessageType::Unknown(x),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(t: MessageType) -> u8 {
        match t {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
            MessageType::Unknown(x) => x,
        }
    }
}

impl MessageType {
    /// Upper-case name as in the RFC.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Discover => "DISCOVER",
            MessageType::Offer => "OFFER",
            MessageType::Request => "REQUEST",
            MessageType::Decline => "DECLINE",
            MessageType::Ack => "ACK",
            MessageType::Nak => "NAK",
            MessageType::Release => "RELEASE",
            MessageType::Inform => "INFORM",
            MessageType::Unknown(_) => "UNKNOWN",
        }
    }
}

/// A view of a DHCP message (the UDP payload).
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

    /// Checks, once, everything accessors rely on: the fixed header and cookie are present and
    /// `hlen` fits `chaddr`. Options are checked as they are iterated.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::HLEN] > 16 {
            // A parser that trusts hlen > 16 reads past chaddr into sname (or panics).
            return Err(Error::Malformed("hlen above 16"));
        }
        if b[field::COOKIE] != MAGIC_COOKIE {
            return Err(Error::Malformed("no DHCP magic cookie"));
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// `op`.
    pub fn op(&self) -> Op {
        Op::from(self.buffer.as_ref()[field::OP])
    }

    /// `htype` (1 = Ethernet).
    pub fn htype(&self) -> u8 {
        self.buffer.as_ref()[field::HTYPE]
    }

    /// `hlen` (6 for Ethernet).
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// `hops`.
    pub fn hops(&self) -> u8 {
        self.buffer.as_ref()[field::HOPS]
    }

    /// `xid`.
    pub fn xid(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::XID)
    }

    /// `secs`.
    pub fn secs(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SECS)
    }

    /// `flags`.
    pub fn flags(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLAGS)
    }

    /// The broadcast bit of `flags`.
    pub fn broadcast(&self) -> bool {
        self.flags() & FLAG_BROADCAST != 0
    }

    /// `ciaddr`.
    pub fn ciaddr(&self) -> Ipv4Addr {
        get_ip(self.buffer.as_ref(), field::CIADDR)
    }

    /// `yiaddr`.
    pub fn yiaddr(&self) -> Ipv4Addr {
        get_ip(self.buffer.as_ref(), field::YIADDR)
    }

    /// `siaddr`.
    pub fn siaddr(&self) -> Ipv4Addr {
        get_ip(self.buffer.as_ref(), field::SIADDR)
    }

    /// `giaddr`.
    pub fn giaddr(&self) -> Ipv4Addr {
        get_ip(self.buffer.as_ref(), field::GIADDR)
    }

    /// The first `hlen` bytes of `chaddr`.
    pub fn chaddr(&self) -> &[u8] {
        let hlen = usize::from(self.hlen()).min(16);
        &self.buffer.as_ref()[field::CHADDR][..hlen]
    }

    /// All 16 bytes of `chaddr`.
    pub fn chaddr_raw(&self) -> &[u8] {
        &self.buffer.as_ref()[field::CHADDR]
    }

    /// The raw 64 bytes of `sname`.
    pub fn sname(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SNAME]
    }

    /// The raw 128 bytes of `file`.
    pub fn file(&self) -> &[u8] {
        &self.buffer.as_ref()[field::FILE]
    }

    /// The options area after the cookie.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..]
    }

    /// Every option: first the options field, then `file` and `sname` when option 52 says they
    /// carry options (RFC 2131 4.1 gives this order).
    pub fn all_options(&self) -> OptionIter<'_> {
        all_options_in(self.buffer.as_ref())
    }
}

/// [`Packet::all_options`] over a buffer that passed [`Packet::check_len`], with the buffer's
/// own lifetime.
fn all_options_in(b: &[u8]) -> OptionIter<'_> {
    let options = &b[field::OPTIONS..];
    let mut overload = 0;
    for o in OptionIter::new(options) {
        match o {
            Ok(o) if o.code == opt::OVERLOAD => {
                overload = o.data.first().copied().unwrap_or(0);
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let file: &[u8] = if overload & 1 != 0 {
        &b[field::FILE]
    } else {
        &[]
    };
    let sname: &[u8] = if overload & 2 != 0 {
        &b[field::SNAME]
    } else {
        &[]
    };
    OptionIter {
        areas: [options, file, sname],
        area: 0,
        pos: 0,
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn put(&mut self, at: usize, v: &[u8]) {
        self.buffer.as_mut()[at..at + v.len()].copy_from_slice(v);
    }

    /// Sets `op`.
    pub fn set_op(&mut self, op: Op) {
        self.buffer.as_mut()[field::OP] = op.into();
    }

    /// Sets `htype`.
    pub fn set_htype(&mut self, v: u8) {
        self.buffer.as_mut()[field::HTYPE] = v;
    }

    /// Sets `hlen`.
    pub fn set_hlen(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    /// Sets `hops`.
    pub fn set_hops(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOPS] = v;
    }

    /// Sets `xid`.
    pub fn set_xid(&mut self, v: u32) {
        self.put(field::XID, &v.to_be_bytes());
    }

    /// Sets `secs`.
    pub fn set_secs(&mut self, v: u16) {
        self.put(field::SECS, &v.to_be_bytes());
    }

    /// Sets `flags`.
    pub fn set_flags(&mut self, v: u16) {
        self.put(field::FLAGS, &v.to_be_bytes());
    }

    /// Sets `ciaddr`.
    pub fn set_ciaddr(&mut self, a: Ipv4Addr) {
        self.put(field::CIADDR, &a.octets());
    }

    /// Sets `yiaddr`.
    pub fn set_yiaddr(&mut self, a: Ipv4Addr) {
        self.put(field::YIADDR, &a.octets());
    }

    /// Sets `siaddr`.
    pub fn set_siaddr(&mut self, a: Ipv4Addr) {
        self.put(field::SIADDR, &a.octets());
    }

    /// Sets `giaddr`.
    pub fn set_giaddr(&mut self, a: Ipv4Addr) {
        self.put(field::GIADDR, &a.octets());
    }

    /// Sets all 16 bytes of `chaddr` (shorter input is zero-padded, longer truncated).
    pub fn set_chaddr(&mut self, v: &[u8]) {
        let b = &mut self.buffer.as_mut()[field::CHADDR];
        b.fill(0);
        let n = v.len().min(16);
        b[..n].copy_from_slice(&v[..n]);
    }

    /// Sets `sname` to a NUL-padded string (truncated to 63 bytes so a NUL always ends it).
    pub fn set_sname(&mut self, v: &[u8]) {
        let b = &mut self.buffer.as_mut()[field::SNAME];
        b.fill(0);
        let n = v.len().min(63);
        b[..n].copy_from_slice(&v[..n]);
    }

    /// Sets `file` to a NUL-padded string (truncated to 127 bytes so a NUL always ends it).
    pub fn set_file(&mut self, v: &[u8]) {
        let b = &mut self.buffer.as_mut()[field::FILE];
        b.fill(0);
        let n = v.len().min(127);
        b[..n].copy_from_slice(&v[..n]);
    }

    /// Writes the magic cookie.
    pub fn set_magic_cookie(&mut self) {
        self.put(field::COOKIE.start, &MAGIC_COOKIE);
    }

    /// The options area, writable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::OPTIONS..]
    }
}

/// The bytes of a NUL-terminated (or NUL-padded) field up to the first NUL.
pub fn c_str(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

/// One option: a code and its data, borrowed from the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpOption<'a> {
    /// Option code.
    pub code: u8,
    /// Option data (without code and length bytes).
    pub data: &'a [u8],
}

/// A zero-copy iterator over options, across up to three areas (options, file, sname). Pad is
/// skipped; End ends an area. An option whose length runs past its area yields one
/// `Err(Truncated)`, then the iteration stops.
#[derive(Clone, Debug)]
pub struct OptionIter<'a> {
    areas: [&'a [u8]; 3],
    area: usize,
    pos: usize,
}

impl<'a> OptionIter<'a> {
    /// Iterates the options in one area.
    pub fn new(buf: &'a [u8]) -> OptionIter<'a> {
        OptionIter {
            areas: [buf, &[], &[]],
            area: 0,
            pos: 0,
        }
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<DhcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let buf = *self.areas.get(self.area)?;
            let Some(&code) = buf.get(self.pos) else {
                // An area that ends without End is tolerated: many clients omit it in file/sname.
                self.area += 1;
                self.pos = 0;
                continue;
            };
            match code {
                opt::PAD => self.pos += 1,
                opt::END => {
                    self.area += 1;
                    self.pos = 0;
                }
                _ => {
                    let Some(&len) = buf.get(self.pos + 1) else {
                        self.area = self.areas.len();
                        return Some(Err(Error::Truncated));
                    };
                    let start = self.pos + 2;
                    let end = start + usize::from(len);
                    let Some(data) = buf.get(start..end) else {
                        self.area = self.areas.len();
                        return Some(Err(Error::Truncated));
                    };
                    self.pos = end;
                    return Some(Ok(DhcpOption { code, data }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
