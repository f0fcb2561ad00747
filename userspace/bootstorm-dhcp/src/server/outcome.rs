//! What the server decides about one datagram, in the types a worker reads: where it came from
//! ([`RxMeta`]), the [`Reply`] and where it goes, the [`Event`] to log, and the [`Outcome`]
//! that carries them with the journal sequence the reply waits for.

use crate::stats::DropReason;
use bootstorm_time::Instant;
use bootstorm_wire::dhcp::MessageType;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Where a datagram came from, as the driver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxMeta {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// The subnet served on the receiving interface, if the driver knows one.
    pub subnet_hint: Option<u32>,
    /// The receiving interface's index (0 if the driver does not know it): the admission source
    /// of clients on the wire.
    pub ifindex: u32,
}

/// Where a reply must be sent (RFC 2131 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// To 255.255.255.255:68 on the interface the request came in on.
    Broadcast,
    /// To this address and port (a relay at giaddr:67, a client at ciaddr:68, or a test client
    /// on loopback at its source).
    Unicast(SocketAddrV4),
    /// To `addr` at the link layer address `hwaddr`, without ARP: the client has no address yet
    /// and did not ask for broadcast. A frame-level driver sends it so; a socket driver, which
    /// cannot address a frame to a MAC, broadcasts it instead.
    Link {
        /// The offered address.
        addr: Ipv4Addr,
        /// The client's MAC.
        hwaddr: [u8; 6],
    },
}

/// A reply written into the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Bytes of the DHCP message at the start of the output buffer.
    pub len: usize,
    /// Where it goes.
    pub dest: Destination,
    /// OFFER, ACK or NAK.
    pub message_type: MessageType,
    /// The server identifier in it: the source address a driver should use.
    pub server_id: Ipv4Addr,
}

/// What happened to a lease, for logs, metrics and (later) the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// An address was offered.
    Offer,
    /// A lease was granted or renewed (ACK).
    Bind,
    /// A REQUEST was refused (NAK).
    Nak,
    /// The client released its lease.
    Release,
    /// The client declined its address.
    Decline,
    /// An INFORM was answered.
    Inform,
    /// The client chose another server; its offer was given back.
    OfferWithdrawn,
}

impl EventKind {
    /// Lower-case name for logs.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Offer => "offer",
            EventKind::Bind => "bind",
            EventKind::Nak => "nak",
            EventKind::Release => "release",
            EventKind::Decline => "decline",
            EventKind::Inform => "inform",
            EventKind::OfferWithdrawn => "offer_withdrawn",
        }
    }
}

/// Why a REQUEST was refused: the text of option 56 in the NAK, and what logs say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NakReason {
    /// RFC 2131 4.3.2: the requested address is not on the client's network.
    WrongNetwork,
    /// RFC 2131 4.3.2: the client has a lease on another address (INIT-REBOOT, RENEWING).
    NotItsAddress,
    /// Another client holds the address, or it is quarantined.
    Taken,
    /// The address is reserved for another client, or the client's reservation is another.
    Reserved,
    /// The address is in no pool of the subnet.
    NotInPool,
    /// Compatibility mode: the client chose another server.
    OtherServer,
    /// Compatibility mode: no address left for a DISCOVER.
    Exhausted,
}

impl NakReason {
    /// Every reason, in a fixed order (for counters).
    pub const ALL: [NakReason; 7] = [
        NakReason::WrongNetwork,
        NakReason::NotItsAddress,
        NakReason::Taken,
        NakReason::Reserved,
        NakReason::NotInPool,
        NakReason::OtherServer,
        NakReason::Exhausted,
    ];

    /// Snake-case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            NakReason::WrongNetwork => "wrong_network",
            NakReason::NotItsAddress => "not_its_address",
            NakReason::Taken => "taken",
            NakReason::Reserved => "reserved",
            NakReason::NotInPool => "not_in_pool",
            NakReason::OtherServer => "other_server",
            NakReason::Exhausted => "exhausted",
        }
    }

    /// Position in [`NakReason::ALL`].
    pub fn index(self) -> usize {
        NakReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// The text sent in option 56 and logged.
    pub fn text(self) -> &'static str {
        match self {
            NakReason::WrongNetwork => "requested address not on this network",
            NakReason::NotItsAddress => "requested address incorrect",
            NakReason::Taken => "address not available",
            NakReason::Reserved => "address reserved for another client",
            NakReason::NotInPool => "address not in any pool",
            NakReason::OtherServer => "client chose another server",
            NakReason::Exhausted => "no address available",
        }
    }
}

/// A lease event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The address concerned.
    pub addr: Ipv4Addr,
    /// The lease end, for offers and binds.
    pub expires: Option<Instant>,
    /// chaddr (first `hlen` bytes meaningful).
    pub hwaddr: [u8; 16],
    /// hlen.
    pub hlen: u8,
    /// Transaction id.
    pub xid: u32,
    /// Subnet index.
    pub subnet: u32,
    /// For a NAK, why.
    pub nak: Option<NakReason>,
    /// For an offer: the address was taken from another client's unconfirmed offer.
    pub reclaimed: bool,
    /// Where the boot file in the reply came from, if it carries one.
    pub boot: Option<BootFrom>,
    /// The client is boot firmware (PXE or HTTP boot) but no boot rule or reservation gave it
    /// a boot file: it gets an address and nothing to boot.
    pub no_boot_rule: bool,
    /// The machine's UUID from option 97 (RFC 4578; its type byte 0 dropped), if it sent one.
    pub uuid: Option<[u8; 16]>,
}

/// What chose a reply's boot file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootFrom {
    /// The boot rule at this index of [`ServerConfig::boot_rules`].
    Rule(u16),
    /// The reservation at this index of [`ServerConfig::reservations`].
    Reservation(u16),
}

/// Who sent a datagram that was dropped, when it parsed that far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Who {
    /// chaddr (first `hlen` bytes meaningful).
    pub hwaddr: [u8; 16],
    /// hlen.
    pub hlen: u8,
    /// Transaction id.
    pub xid: u32,
    /// giaddr, if relayed.
    pub giaddr: Option<Ipv4Addr>,
}

impl Who {
    /// The hardware address.
    pub fn hwaddr(&self) -> &[u8] {
        &self.hwaddr[..usize::from(self.hlen).min(16)]
    }
}

impl Event {
    /// The hardware address.
    pub fn hwaddr(&self) -> &[u8] {
        &self.hwaddr[..usize::from(self.hlen).min(16)]
    }
}

/// The result of handling one datagram: at most one reply, at most one event, or a drop reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The reply, if one is due.
    pub reply: Option<Reply>,
    /// What happened to a lease.
    pub event: Option<Event>,
    /// Why nothing was sent, if the message was dropped.
    pub dropped: Option<DropReason>,
    /// For a drop: who sent the message (if its header was readable), for the log.
    pub who: Option<Who>,
    /// The lease sink's sequence number the reply depends on (RFC 2131 4.3.1: the server
    /// commits a binding to persistent storage before it sends the DHCPACK): the I/O loop holds
    /// the reply until the sink (the journal) reports this sequence durable. 0: send at once.
    pub commit: u64,
}

impl Outcome {
    pub(super) fn drop(r: DropReason) -> Outcome {
        Outcome {
            dropped: Some(r),
            ..Outcome::default()
        }
    }
}
