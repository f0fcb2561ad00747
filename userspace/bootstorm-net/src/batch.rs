//! The buffers of one `recvmmsg` and of `sendmmsg` calls, and what a received datagram came
//! with.

use crate::cmsg::{CMSG_LEN, CmsgBuf};
use crate::{BATCH, BUF_LEN};
use std::mem::zeroed;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Where a received datagram came from and where it went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxInfo {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Bytes received.
    pub len: usize,
    /// Receiving interface index (from IP_PKTINFO).
    pub ifindex: u32,
    /// Destination address of the datagram (e.g. 255.255.255.255 for a broadcast).
    pub dst: Ipv4Addr,
    /// The local address the kernel would answer from (`ipi_spec_dst`). For a datagram sent to
    /// one of our addresses it is that address; for a broadcast (limited or subnet-directed) or
    /// multicast it is the interface's own, or 0.0.0.0 if it has none.
    pub local: Ipv4Addr,
    /// True if the datagram was longer than the buffer and cut.
    pub truncated: bool,
}

impl RxInfo {
    /// True if the datagram was not sent to one of our addresses but to many hosts: the limited
    /// broadcast, a subnet-directed broadcast such as 198.18.255.255, or a multicast group. Every
    /// socket of a SO_REUSEPORT group receives such a datagram. The kernel's own verdict is used
    /// (for a local unicast `ipi_spec_dst` equals the destination; for anything else it is the
    /// interface's address), so no list of our broadcast addresses has to be kept.
    pub fn is_broadcast(&self) -> bool {
        self.dst.is_broadcast() || self.dst.is_multicast() || self.dst != self.local
    }
}

/// Buffers for one `recvmmsg`.
pub struct RecvBatch {
    pub(crate) bufs: Box<[[u8; BUF_LEN]; BATCH]>,
    pub(crate) addrs: Box<[libc::sockaddr_in; BATCH]>,
    pub(crate) cmsgs: Box<[CmsgBuf; BATCH]>,
    pub(crate) info: [RxInfo; BATCH],
    pub(crate) len: usize,
}

impl Default for RecvBatch {
    fn default() -> RecvBatch {
        RecvBatch {
            bufs: Box::new([[0; BUF_LEN]; BATCH]),
            // SAFETY: all-zero is a valid sockaddr_in.
            addrs: Box::new(unsafe { zeroed() }),
            cmsgs: Box::new([CmsgBuf([0; CMSG_LEN]); BATCH]),
            info: [RxInfo {
                src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                len: 0,
                ifindex: 0,
                dst: Ipv4Addr::UNSPECIFIED,
                local: Ipv4Addr::UNSPECIFIED,
                truncated: false,
            }; BATCH],
            len: 0,
        }
    }
}

impl RecvBatch {
    /// Datagrams in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the batch holds no datagram.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Datagram `i`: its bytes and where it came from.
    pub fn get(&self, i: usize) -> (&[u8], RxInfo) {
        let info = self.info[i];
        (&self.bufs[i][..info.len], info)
    }
}

/// One queued datagram.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SendEntry {
    pub(crate) dst: SocketAddrV4,
    pub(crate) len: usize,
    pub(crate) ifindex: u32,
    pub(crate) src: Ipv4Addr,
}

/// Buffers for one or more `sendmmsg` calls.
pub struct SendBatch {
    pub(crate) bufs: Box<[[u8; BUF_LEN]; BATCH]>,
    pub(crate) cmsgs: Box<[CmsgBuf; BATCH]>,
    pub(crate) entries: [SendEntry; BATCH],
    pub(crate) len: usize,
}

impl Default for SendBatch {
    fn default() -> SendBatch {
        SendBatch {
            bufs: Box::new([[0; BUF_LEN]; BATCH]),
            cmsgs: Box::new([CmsgBuf([0; CMSG_LEN]); BATCH]),
            entries: [SendEntry {
                dst: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                len: 0,
                ifindex: 0,
                src: Ipv4Addr::UNSPECIFIED,
            }; BATCH],
            len: 0,
        }
    }
}

impl SendBatch {
    /// True if no more datagrams fit.
    pub fn is_full(&self) -> bool {
        self.len == BATCH
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The buffer the next datagram is written into.
    pub fn next_buf(&mut self) -> &mut [u8; BUF_LEN] {
        &mut self.bufs[self.len]
    }

    /// Queues the datagram written into [`SendBatch::next_buf`]: `len` bytes to `dst`, out of
    /// interface `ifindex` (0 = by route) with source address `src` (unspecified = by route).
    pub fn commit(&mut self, len: usize, dst: SocketAddrV4, ifindex: u32, src: Ipv4Addr) {
        debug_assert!(!self.is_full());
        self.entries[self.len] = SendEntry {
            dst,
            len: len.min(BUF_LEN),
            ifindex,
            src,
        };
        self.len += 1;
    }
}
