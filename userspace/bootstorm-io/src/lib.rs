//! The packet-queue seam: what a protocol worker needs from the network, and nothing more.
//!
//! A worker drains an [`RxQueue`] in batches and fills a [`TxQueue`]; how the datagrams move
//! (a batched UDP socket today, an AF_XDP ring in the fast path, an in-memory queue in tests) is
//! the driver's business. In the manner of s2n-quic's `io/rx.rs` and `io/tx.rs`, each datagram
//! comes with what the driver knows of it ([`RxMeta`]: receiving interface, L3/L4 source and
//! destination, whether it was a broadcast, the L2 source where the driver sees frames) and goes
//! out with where it must go ([`TxMeta`], including a link-layer destination that a frame driver
//! honours and a socket driver cannot).
//!
//! A queue that blocks gives out a [`Doorbell`]: other threads ring it to make a waiting
//! [`RxQueue::recv`] return early (a datagram handed over by another worker, replies the
//! journal made durable).
//!
//! Drivers here: [`udp`] (the socket path, over `bootstorm-net`), [`frame`] (whole Ethernet
//! frames through `AF_PACKET`, for hosts without an address: the load generator's L2 mode) and
//! [`mem`] (the test network). No unsafe code: the system calls live in `bootstorm-net`.
#![forbid(unsafe_code)]

pub mod frame;
pub mod mem;
pub mod udp;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

/// Datagrams taken per [`RxQueue::recv`] at most, and queued per [`TxQueue`] before a flush.
pub const BATCH: usize = bootstorm_net::BATCH;
/// The largest datagram a queue carries (an Ethernet MTU's payload).
pub const MAX_DATAGRAM: usize = bootstorm_net::BUF_LEN;

/// What the driver knows of a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxMeta {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port (the limited broadcast for most DHCP requests).
    pub dst: SocketAddrV4,
    /// The receiving interface's index (0 if unknown).
    pub ifindex: u32,
    /// The address to answer from: the destination for a datagram sent to one of ours, the
    /// interface's own for a broadcast (0.0.0.0 if it has none or the driver does not know).
    pub local: Ipv4Addr,
    /// Sent to many hosts: the limited broadcast, a subnet-directed broadcast, multicast.
    pub broadcast: bool,
    /// The sender's link-layer address, where the driver sees frames.
    pub l2_src: Option<[u8; 6]>,
    /// The datagram was longer than [`MAX_DATAGRAM`] and was cut.
    pub truncated: bool,
    /// The 802.1Q tag it came with (priority and VLAN id), where the driver sees frames.
    pub vlan: Option<u16>,
}

impl Default for RxMeta {
    fn default() -> RxMeta {
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        RxMeta {
            src: any,
            dst: any,
            ifindex: 0,
            local: Ipv4Addr::UNSPECIFIED,
            broadcast: false,
            l2_src: None,
            truncated: false,
            vlan: None,
        }
    }
}

/// Where a datagram must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxMeta {
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// Source address; unspecified: the driver's (by route).
    pub src: Ipv4Addr,
    /// Source port; 0: the queue's own. A socket always sends from its bound port (a caller
    /// with a port of its own per transfer opens a queue per port); a frame driver honours it.
    pub sport: u16,
    /// Out of this interface; 0: by route.
    pub ifindex: u32,
    /// Deliver to this link-layer address without ARP (a DHCP client that has no address yet
    /// and did not ask for broadcast, RFC 2131 4.1). A driver that cannot address a frame to a
    /// MAC (a socket) sends such a datagram to the limited broadcast, at `dst`'s port.
    pub l2_dst: Option<[u8; 6]>,
    /// Send from this link-layer address (a frame driver speaking for many machines, as the
    /// load generator does); None: the interface's own. A socket driver ignores it.
    pub l2_src: Option<[u8; 6]>,
    /// Send with this 802.1Q tag (the one the request came with); a socket driver ignores it
    /// (its VLAN device tags).
    pub vlan: Option<u16>,
}

impl TxMeta {
    /// To `dst`, by route.
    pub fn to(dst: SocketAddrV4) -> TxMeta {
        TxMeta {
            dst,
            src: Ipv4Addr::UNSPECIFIED,
            sport: 0,
            ifindex: 0,
            l2_dst: None,
            l2_src: None,
            vlan: None,
        }
    }
}

/// What a flush did.
#[derive(Debug, Default)]
pub struct Sent {
    /// Datagrams handed to the network.
    pub sent: usize,
    /// Datagrams refused (their error in `last_error`).
    pub failed: usize,
    /// The last refusal's reason.
    pub last_error: Option<std::io::Error>,
}

/// Datagrams queued for a driver that sends them one by one at a flush (frames, memory).
#[derive(Default)]
struct Outbox(Vec<(Vec<u8>, TxMeta)>);

impl Outbox {
    /// Queues a copy (cut to [`MAX_DATAGRAM`]); false when [`BATCH`] are queued already.
    fn push(&mut self, payload: &[u8], meta: &TxMeta) -> bool {
        if self.0.len() >= BATCH {
            return false;
        }
        let len = payload.len().min(MAX_DATAGRAM);
        self.0.push((payload[..len].to_vec(), *meta));
        true
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn drain(&mut self) -> std::vec::Drain<'_, (Vec<u8>, TxMeta)> {
        self.0.drain(..)
    }
}

/// Something a waiting queue listens to.
pub trait Ring: Send + Sync {
    /// Makes the owner's current or next wait return at once.
    fn ring(&self);
}

/// Wakes a thread waiting in [`RxQueue::recv`], from any thread. Cheap to clone.
#[derive(Clone)]
pub struct Doorbell(Arc<dyn Ring>);

impl Doorbell {
    /// A doorbell over `r`.
    pub fn new(r: Arc<dyn Ring>) -> Doorbell {
        Doorbell(r)
    }

    /// Wakes the queue's owner.
    pub fn ring(&self) {
        self.0.ring();
    }
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Doorbell")
    }
}

/// A receive queue: batches of datagrams in.
pub trait RxQueue: Send {
    /// Takes up to [`BATCH`] datagrams, waiting up to `timeout` for the first unless the
    /// doorbell rang; returns how many (0: the wait ended empty-handed). The previous batch is
    /// gone.
    fn recv(&mut self, timeout: Duration) -> std::io::Result<usize>;
    /// Datagram `i` of the current batch.
    fn get(&self, i: usize) -> (&[u8], &RxMeta);
    /// What wakes a waiting [`RxQueue::recv`].
    fn doorbell(&self) -> Doorbell;
    /// A descriptor that is readable while datagrams wait, for a caller that multiplexes many
    /// sources (mio) and calls [`RxQueue::recv`] with a zero timeout; None for a queue without
    /// one (in memory).
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

/// A transmit queue: batches of datagrams out.
pub trait TxQueue: Send {
    /// Queues a copy of `payload` for `meta`; false (nothing queued) when the queue is full:
    /// flush first. A payload over [`MAX_DATAGRAM`] is cut to that length.
    fn push(&mut self, payload: &[u8], meta: &TxMeta) -> bool;
    /// Datagrams queued.
    fn len(&self) -> usize;
    /// True if nothing is queued.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sends everything queued; the queue is empty afterwards.
    fn flush(&mut self) -> std::io::Result<Sent>;
    /// Datagrams already handed to the kernel that it has not sent yet (an AF_XDP TX ring in
    /// copy mode moves a bounded number per kick, and none while the link is busy): the owner
    /// flushes again, with nothing queued, before it sleeps for long. Zero for sockets.
    fn unsent(&self) -> usize {
        0
    }
}
