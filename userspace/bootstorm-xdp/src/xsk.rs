//! AF_XDP sockets as the packet-queue seam's receive and transmit queues.
//!
//! One socket per receive queue of an interface, with a UMEM of its own split in two: the
//! receive frames cycle between the fill ring and the receive ring (a batch's frames go back to
//! the fill ring when the next batch is taken, so [`XdpRx::get`] lends the frame's bytes with no
//! copy); the transmit frames cycle between a free list, the transmit ring and the completion
//! ring. Both halves are driven by the one worker that owns the queue.
//!
//! Received frames are parsed down to their UDP payload (the IPv4 header checksum checked; the
//! UDP checksum not, since a veth peer leaves it partial). Replies are written as whole frames,
//! Ethernet + IPv4 + UDP with both checksums complete: to the link-layer address the
//! [`TxMeta`] names (a DHCP client without an address, a relay, a TFTP client), or to the
//! broadcast address for the limited broadcast. A unicast with no link-layer address is counted
//! (`unresolved`) and not sent: the fast path does no ARP.
//!
//! In copy mode (veth, most virtual NICs) the kernel moves at most 32 frames per kick of the
//! transmit ring, so a flush kicks until the ring has drained (bounded).

use crate::program::{Pending, Steer, XdpError};
use bootstorm_io::{BATCH, Doorbell, MAX_DATAGRAM, RxMeta, RxQueue, Sent, TxMeta, TxQueue};
use bootstorm_net::wake::EventFd;
use bootstorm_wire::ethernet::Address;
use bootstorm_wire::frame;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, Socket, Umem};

/// Receive frames of a UMEM by default (see [`open`]): the fill ring holds them all, so a burst
/// of this many datagrams (a hall's DISCOVERs at power-on, which a NIC's RSS puts on one queue:
/// they share one 4-tuple) waits in the ring instead of being dropped for want of a frame while
/// the worker is busy. 32 MiB of UMEM per queue.
pub const RX_FRAMES: u32 = 16384;
/// Transmit frames: a few batches in flight.
const TX_FRAMES: u32 = 2048;
/// Size of one frame (a 1,500-byte MTU frame with the kernel's headroom fits).
const FRAME_SIZE: u32 = 2048;

/// An interface as the fast path needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Its name.
    pub name: String,
    /// Its index.
    pub ifindex: u32,
    /// Its MAC.
    pub mac: [u8; 6],
    /// Its IPv4 addresses with their netmasks.
    pub addresses: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Its VLAN devices (the kernel's, as `ip link add link IF name IF.42 type vlan id 42`):
    /// tagged frames are served as if they came in on them.
    pub vlans: Vec<VlanLink>,
}

/// A VLAN device on top of a fast-path interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VlanLink {
    /// Its VLAN id.
    pub id: u16,
    /// Its index: the receiving interface of its datagrams (a subnet names it).
    pub ifindex: u32,
    /// Its IPv4 addresses with their netmasks.
    pub addresses: Vec<(Ipv4Addr, Ipv4Addr)>,
}

/// The address to answer a datagram to `dst` from among `addresses`: `dst` itself when it is
/// one of them, else the first (0.0.0.0 without one).
fn local_among(addresses: &[(Ipv4Addr, Ipv4Addr)], dst: Ipv4Addr) -> Ipv4Addr {
    if addresses.iter().any(|(a, _)| *a == dst) {
        return dst;
    }
    addresses.first().map_or(Ipv4Addr::UNSPECIFIED, |(a, _)| *a)
}

/// A broadcast among `addresses`' subnets, or the limited one.
fn broadcast_among(addresses: &[(Ipv4Addr, Ipv4Addr)], dst: Ipv4Addr) -> bool {
    dst.is_broadcast()
        || addresses
            .iter()
            .any(|(a, m)| subnet_broadcast(*a, *m) == Some(dst))
}

/// The broadcast address of `addr`'s subnet with netmask `mask` (none for a /32).
pub fn subnet_broadcast(addr: Ipv4Addr, mask: Ipv4Addr) -> Option<Ipv4Addr> {
    let (a, m) = (u32::from(addr), u32::from(mask));
    (m != u32::MAX).then(|| Ipv4Addr::from((a & m) | !m))
}

/// The VLAN devices on `parent`, from `/proc/net/vlan/config` (the file is missing when no
/// VLAN device exists, or the kernel has no 802.1Q support).
fn vlans_of(parent: &str) -> Vec<VlanLink> {
    let Ok(text) = std::fs::read_to_string("/proc/net/vlan/config") else {
        return Vec::new();
    };
    vlan_devices(&text, parent)
        .into_iter()
        .filter_map(|(name, id)| {
            Some(VlanLink {
                id,
                ifindex: bootstorm_net::interface_index(name)?,
                addresses: ipv4_addresses(name).ok()?,
            })
        })
        .collect()
}

/// The `(name, VLAN id)` of each device on `parent` in the text of `/proc/net/vlan/config`
/// (`NAME | ID | PARENT` lines after two header lines).
fn vlan_devices<'t>(text: &'t str, parent: &str) -> Vec<(&'t str, u16)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            let (name, id, lower) = (*f.first()?, f.get(1)?.parse().ok()?, *f.get(2)?);
            (lower == parent).then_some((name, id))
        })
        .collect()
}

impl LinkInfo {
    /// Reads `name`'s index, MAC and addresses.
    pub fn of(name: &str) -> std::io::Result<LinkInfo> {
        let ifindex = bootstorm_net::interface_index(name).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("no interface {name}"))
        })?;
        let mac = bootstorm_net::packet::interface_mac(name)?;
        Ok(LinkInfo {
            name: name.to_string(),
            ifindex,
            mac,
            addresses: ipv4_addresses(name)?,
            vlans: vlans_of(name),
        })
    }

    /// The VLAN device of tag `tci` (its low 12 bits), if there is one.
    fn vlan(&self, tci: u16) -> Option<&VlanLink> {
        self.vlans.iter().find(|v| v.id == tci & 0x0fff)
    }

    /// Every address frames may be sent to: the interface's and its VLAN devices'.
    pub fn all_addresses(&self) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        let mut v = self.addresses.clone();
        for l in &self.vlans {
            v.extend(l.addresses.iter().copied());
        }
        v
    }

    /// Receive queues of the interface (from sysfs; 1 if it says nothing).
    pub fn rx_queues(name: &str) -> u32 {
        std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                    .count() as u32
            })
            .unwrap_or(1)
            .max(1)
    }

    /// The address to answer a datagram to `dst` from (on VLAN `vlan`'s device when tagged).
    fn local_for(&self, dst: Ipv4Addr, vlan: Option<u16>) -> Ipv4Addr {
        match vlan.and_then(|t| self.vlan(t)) {
            Some(v) => local_among(&v.addresses, dst),
            None => local_among(&self.addresses, dst),
        }
    }

    /// A broadcast on this link (or on VLAN `vlan`'s device).
    fn is_broadcast(&self, dst: Ipv4Addr, vlan: Option<u16>) -> bool {
        match vlan.and_then(|t| self.vlan(t)) {
            Some(v) => broadcast_among(&v.addresses, dst),
            None => broadcast_among(&self.addresses, dst),
        }
    }

    /// The receiving interface of a datagram with tag `vlan`.
    fn ifindex_for(&self, vlan: Option<u16>) -> u32 {
        vlan.and_then(|t| self.vlan(t))
            .map_or(self.ifindex, |v| v.ifindex)
    }
}

/// The IPv4 addresses of interface `name`, with netmasks.
fn ipv4_addresses(name: &str) -> std::io::Result<Vec<(Ipv4Addr, Ipv4Addr)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list it allocated, which is freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: `ifa_name` is a NUL-terminated string owned by the list.
        let n = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: `ifa_addr` is non-null and points at a sockaddr of the list.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if n.to_bytes() != name.as_bytes() || i32::from(family) != libc::AF_INET {
            continue;
        }
        let v4 = |p: *const libc::sockaddr| {
            if p.is_null() {
                return Ipv4Addr::UNSPECIFIED;
            }
            // SAFETY: for AF_INET entries the address and netmask are sockaddr_in.
            let sin = unsafe { &*p.cast::<libc::sockaddr_in>() };
            Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))
        };
        out.push((v4(ifa.ifa_addr), v4(ifa.ifa_netmask)));
    }
    // SAFETY: frees the list getifaddrs allocated; no reference into it outlives this.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// A queue's counters, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// The receive queue's index.
    pub queue: u32,
    /// Datagrams received.
    pub rx_packets: AtomicU64,
    /// Frames received that were no UDP datagram over IPv4 (or failed its IP checksum).
    pub rx_malformed: AtomicU64,
    /// Frames sent.
    pub tx_packets: AtomicU64,
    /// Sends refused because every transmit frame was in flight.
    pub tx_full: AtomicU64,
    /// Unicasts with no link-layer address (not sent).
    pub tx_unresolved: AtomicU64,
    /// Flushes that gave up with frames still queued (the ring did not drain).
    pub tx_stalled: AtomicU64,
    /// The socket's descriptor, for the kernel's own counters.
    fd: AtomicU64,
    /// Zero-copy (else copy mode).
    pub zero_copy: std::sync::atomic::AtomicBool,
}

/// The kernel's counters of an AF_XDP socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames dropped for want of room (receive ring full and others).
    pub rx_dropped: u64,
    /// Receive ring full.
    pub rx_ring_full: u64,
    /// The fill ring was empty when a frame came (starvation).
    pub fill_ring_empty: u64,
    /// Invalid descriptors on the transmit ring.
    pub tx_invalid: u64,
}

#[repr(C)]
#[derive(Default)]
struct RawXdpStatistics {
    rx_dropped: u64,
    rx_invalid_descs: u64,
    tx_invalid_descs: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty_descs: u64,
    tx_ring_empty_descs: u64,
}

const SOL_XDP: libc::c_int = 283;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;

impl QueueStats {
    /// The kernel's counters of the queue's socket (zero if they cannot be read).
    pub fn kernel(&self) -> KernelStats {
        let fd = self.fd.load(Ordering::Relaxed) as RawFd;
        let mut s = RawXdpStatistics::default();
        let mut len = size_of::<RawXdpStatistics>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `s`, a live repr(C) struct of
        // that size; a stale descriptor only makes the call fail.
        let r = unsafe {
            libc::getsockopt(
                fd,
                SOL_XDP,
                XDP_STATISTICS,
                (&mut s as *mut RawXdpStatistics).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return KernelStats::default();
        }
        KernelStats {
            rx_dropped: s.rx_dropped,
            rx_ring_full: s.rx_ring_full,
            fill_ring_empty: s.rx_fill_ring_empty_descs,
            tx_invalid: s.tx_invalid_descs,
        }
    }
}

/// Whether the socket `fd` runs in zero-copy mode.
fn zero_copy(fd: RawFd) -> bool {
    let mut flags: u32 = 0;
    let mut len = size_of::<u32>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most 4 bytes into `flags`, a live u32.
    let r = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            (&mut flags as *mut u32).cast(),
            &mut len,
        )
    };
    r == 0 && flags & XDP_OPTIONS_ZEROCOPY != 0
}

/// The receive half of an AF_XDP socket.
pub struct XdpRx {
    umem: Umem,
    fill: FillQueue,
    rx: xsk_rs::RxQueue,
    fd: RawFd,
    bell: Arc<EventFd>,
    link: Arc<LinkInfo>,
    stats: Arc<QueueStats>,
    /// Descriptors of the current batch (the first `taken` are in use).
    descs: Vec<FrameDesc>,
    taken: usize,
    /// Per datagram given out: its descriptor's index, payload offset and length, metadata.
    kept: Vec<(usize, usize, usize, RxMeta)>,
    /// The retransmission filter: each DISCOVER taken is marked held.
    pending: Option<Arc<Pending>>,
}

/// The transmit half.
pub struct XdpTx {
    umem: Umem,
    tx: xsk_rs::TxQueue,
    comp: CompQueue,
    link: Arc<LinkInfo>,
    stats: Arc<QueueStats>,
    port: u16,
    pending: Option<Arc<Pending>>,
    free: Vec<FrameDesc>,
    queued: Vec<FrameDesc>,
    /// Frames on the ring not yet completed.
    in_flight: usize,
    done: Vec<FrameDesc>,
    scratch: Box<[u8]>,
}

fn sock_err(what: &str, e: impl std::fmt::Display) -> XdpError {
    XdpError::Socket(format!("{what}: {e}"))
}

/// Opens the AF_XDP socket of `link`'s receive queue `queue`, puts it in the program's XSKMAP
/// and returns its two halves. `port` is the UDP source port of what it sends (unless a
/// [`TxMeta`] names one); `rx_frames` (a power of two, at least [`BATCH`]) the receive frames
/// of its UMEM ([`RX_FRAMES`] unless configured).
pub fn open(
    link: Arc<LinkInfo>,
    queue: u32,
    steer: &mut Steer,
    port: u16,
    rx_frames: u32,
) -> Result<(XdpRx, XdpTx, Arc<QueueStats>), XdpError> {
    let rx_frames = rx_frames.max(BATCH as u32);
    let q = |n: u32| QueueSize::new(n).map_err(|e| sock_err("queue size", e));
    let umem_cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(FRAME_SIZE).map_err(|e| sock_err("frame size", e))?)
        // Twice the receive frames: the kernel publishes how far it has consumed the fill ring
        // only when its cached batch runs out, so frames it already moved to the receive ring
        // may still count as occupying the fill ring; with room for every frame twice, giving a
        // batch back always fits.
        .fill_queue_size(q(rx_frames * 2)?)
        .comp_queue_size(q(TX_FRAMES)?)
        .build()
        .map_err(|e| sock_err("UMEM config", e))?;
    let total = NonZeroU32::new(rx_frames + TX_FRAMES).unwrap();
    let (umem, mut frames) = Umem::new(umem_cfg, total, false)
        .map_err(|e| sock_err("UMEM (RLIMIT_MEMLOCK without CAP_IPC_LOCK?)", e))?;
    let sock_cfg = SocketConfig::builder()
        .rx_queue_size(q(rx_frames)?)
        .tx_queue_size(q(TX_FRAMES)?)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
        .build();
    let ifname = Interface::new(
        std::ffi::CString::new(link.name.as_str()).map_err(|e| sock_err("interface name", e))?,
    );
    // SAFETY: the UMEM is new and not shared, and this (interface, queue) pair is bound once.
    let (tx, rx, rings) = unsafe { Socket::new(sock_cfg, &umem, &ifname, queue) }
        .map_err(|e| sock_err(&format!("{} queue {queue}", link.name), e))?;
    let (mut fill, comp) =
        rings.ok_or_else(|| sock_err("rings", "no fill and completion ring for a new UMEM"))?;
    let fd = rx.fd().as_raw_fd();
    steer.set_socket(queue, fd)?;
    let tx_frames = frames.split_off(rx_frames as usize);
    // SAFETY: the receive frames belong to this UMEM and are handed to the kernel once; they
    // are read only after the receive ring gives them back.
    let filled = unsafe { fill.produce(&frames) };
    if filled != frames.len() {
        return Err(sock_err(
            "fill ring",
            format!("took {filled} of {} frames", frames.len()),
        ));
    }
    let stats = Arc::new(QueueStats {
        queue,
        fd: AtomicU64::new(fd as u64),
        zero_copy: zero_copy(fd).into(),
        ..QueueStats::default()
    });
    let bell = Arc::new(EventFd::new().map_err(|e| sock_err("eventfd", e))?);
    let rxq = XdpRx {
        umem: umem.clone(),
        fill,
        rx,
        fd,
        bell,
        link: link.clone(),
        stats: stats.clone(),
        descs: frames[..BATCH].to_vec(),
        taken: 0,
        kept: Vec::with_capacity(BATCH),
        pending: steer.pending(),
    };
    let txq = XdpTx {
        umem,
        tx,
        comp,
        link,
        stats: stats.clone(),
        port,
        pending: steer.pending(),
        free: tx_frames,
        queued: Vec::with_capacity(BATCH),
        in_flight: 0,
        done: frames[..BATCH].to_vec(),
        scratch: vec![0u8; FRAME_SIZE as usize].into_boxed_slice(),
    };
    Ok((rxq, txq, stats))
}

impl XdpRx {
    /// Gives the frames of the last batch back to the kernel.
    fn give_back(&mut self) {
        if self.taken == 0 {
            return;
        }
        self.kept.clear();
        // SAFETY: these descriptors came from this socket's receive ring and nothing borrows
        // their bytes any more (the batch that lent them is over: `kept` is cleared).
        let n = unsafe { self.fill.produce(&self.descs[..self.taken]) };
        // The fill ring has room for every receive frame twice (see `open`), so these fit even
        // while the kernel has not yet published what it consumed.
        debug_assert_eq!(n, self.taken);
        self.taken = 0;
    }

    fn take(&mut self) -> usize {
        // SAFETY: fills our own descriptor buffer from this socket's receive ring; the frames
        // are ours until given back.
        let n = unsafe { self.rx.consume(&mut self.descs) };
        self.taken = n;
        for i in 0..n {
            // SAFETY: descriptor `i` names a frame of this UMEM that the kernel handed us and
            // that we do not write.
            let data = unsafe { self.umem.data(&self.descs[i]) };
            let bytes = data.contents();
            match frame::parse_udp_with(bytes, false) {
                Ok(u) if u.payload.len() <= MAX_DATAGRAM => {
                    let off = u.payload.as_ptr() as usize - bytes.as_ptr() as usize;
                    let dst = *u.dst.ip();
                    let meta = RxMeta {
                        src: u.src,
                        dst: u.dst,
                        ifindex: self.link.ifindex_for(u.vlan),
                        local: self.link.local_for(dst, u.vlan),
                        broadcast: self.link.is_broadcast(dst, u.vlan),
                        l2_src: Some(u.src_mac.0),
                        truncated: false,
                        vlan: u.vlan,
                    };
                    if let Some(p) = &self.pending
                        && u.dst.port() == bootstorm_wire::dhcp::SERVER_PORT
                        && let Some((mac, xid)) = discover_of(u.payload)
                    {
                        p.holding(&mac, xid);
                    }
                    self.kept.push((i, off, u.payload.len(), meta));
                }
                _ => {
                    self.stats.rx_malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.stats
            .rx_packets
            .fetch_add(self.kept.len() as u64, Ordering::Relaxed);
        self.kept.len()
    }
}

/// The client MAC and xid of a DHCPDISCOVER.
fn discover_of(payload: &[u8]) -> Option<([u8; 6], u32)> {
    use bootstorm_wire::dhcp::{Op, Packet, opt};
    let p = Packet::new_checked(payload).ok()?;
    if p.op() != Op::Request || p.hlen() != 6 {
        return None;
    }
    let discover = p
        .all_options()
        .flatten()
        .any(|o| o.code == opt::MESSAGE_TYPE && o.data == [1]);
    discover
        .then(|| (p.chaddr().try_into().ok(), p.xid()))
        .and_then(|(m, x)| Some((m?, x)))
}

impl RxQueue for XdpRx {
    fn recv(&mut self, timeout: Duration) -> std::io::Result<usize> {
        self.give_back();
        let n = self.take();
        if n > 0 || self.taken > 0 || timeout.is_zero() {
            return Ok(n);
        }
        if self.bell.wait_with(self.fd, timeout)? {
            return Ok(self.take());
        }
        Ok(0)
    }

    fn get(&self, i: usize) -> (&[u8], &RxMeta) {
        let (d, off, len, ref meta) = self.kept[i];
        // SAFETY: the frame is ours until the next `recv` (which clears `kept` before giving it
        // back), and the returned borrow of `self` ends before that call.
        let data = unsafe { self.umem.data(&self.descs[d]) };
        (&data.contents()[off..off + len], meta)
    }

    fn doorbell(&self) -> Doorbell {
        Doorbell::new(self.bell.clone())
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd)
    }
}

impl XdpTx {
    /// Takes back the frames the kernel has finished sending.
    fn reclaim(&mut self) {
        loop {
            // SAFETY: fills our scratch descriptors from this UMEM's completion ring.
            let n = unsafe { self.comp.consume(&mut self.done) };
            if n == 0 {
                return;
            }
            self.in_flight = self.in_flight.saturating_sub(n);
            self.free.extend_from_slice(&self.done[..n]);
        }
    }

    fn write_frame(&mut self, payload: &[u8], m: &TxMeta, sport: u16) -> Option<usize> {
        let dst_mac = match m.l2_dst {
            Some(mac) => Address(mac),
            None if m.dst.ip().is_broadcast() => Address::BROADCAST,
            None => {
                self.stats.tx_unresolved.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let src_ip = if m.src.is_unspecified() {
            self.link.local_for(*m.dst.ip(), m.vlan)
        } else {
            m.src
        };
        let len = payload.len().min(MAX_DATAGRAM);
        let at = frame::payload_offset(m.vlan);
        self.scratch[at..at + len].copy_from_slice(&payload[..len]);
        frame::emit_udp_headers_tagged(
            &mut self.scratch,
            // The interface's own, unless the sender is a machine of its own (the load
            // generator's).
            Address(m.l2_src.unwrap_or(self.link.mac)),
            dst_mac,
            m.vlan,
            SocketAddrV4::new(src_ip, sport),
            m.dst,
            len,
        )
        .ok()
    }

    /// A DHCP reply to a client: the program may hear that client's DISCOVERs again.
    fn note_answered(&self, payload: &[u8], sport: u16) {
        if let Some(p) = &self.pending
            && sport == bootstorm_wire::dhcp::SERVER_PORT
            && payload.len() >= 34
            && payload[0] == 2
        {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&payload[28..34]);
            p.answered(&mac);
        }
    }
}

impl TxQueue for XdpTx {
    fn push(&mut self, payload: &[u8], meta: &TxMeta) -> bool {
        if self.queued.len() >= BATCH {
            return false;
        }
        if self.free.is_empty() {
            self.reclaim();
        }
        let Some(mut desc) = self.free.pop() else {
            self.stats.tx_full.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let sport = if meta.sport == 0 {
            self.port
        } else {
            meta.sport
        };
        let Some(n) = self.write_frame(payload, meta, sport) else {
            // Not sendable (counted): nothing queued, the frame stays free.
            self.free.push(desc);
            return true;
        };
        {
            // SAFETY: `desc` is a free transmit frame of this UMEM: neither the kernel nor
            // another descriptor uses it until it is queued below.
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let mut c = data.cursor();
            c.set_pos(0);
            if c.write_all(&self.scratch[..n]).is_err() {
                self.free.push(desc);
                return true;
            }
        }
        self.note_answered(payload, sport);
        self.queued.push(desc);
        true
    }

    fn len(&self) -> usize {
        self.queued.len()
    }

    fn unsent(&self) -> usize {
        self.in_flight
    }

    fn flush(&mut self) -> std::io::Result<Sent> {
        let total = self.queued.len();
        let mut sent = 0;
        // Copy mode moves at most 32 frames per kick: kick until the ring drains, bounded.
        let mut kicks = total / 32 + 4;
        while sent < total || (self.in_flight > 0 && kicks > 0) {
            if sent < total {
                // SAFETY: the queued descriptors are frames of this UMEM that we wrote and do
                // not touch again until the completion ring returns them.
                let n = unsafe { self.tx.produce(&self.queued[sent..]) };
                sent += n;
                self.in_flight += n;
            }
            if kicks == 0 {
                break;
            }
            kicks -= 1;
            if self.tx.needs_wakeup() {
                self.tx.wakeup()?;
            }
            self.reclaim();
            if sent == total && !self.tx.needs_wakeup() {
                break;
            }
        }
        let failed = total - sent;
        if failed > 0 {
            self.stats.tx_stalled.fetch_add(1, Ordering::Relaxed);
            self.free.extend(self.queued.drain(sent..));
        }
        self.queued.clear();
        self.stats
            .tx_packets
            .fetch_add(sent as u64, Ordering::Relaxed);
        Ok(Sent {
            sent,
            failed,
            last_error: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_devices_are_read_from_the_kernels_table() {
        let text = "VLAN Dev name    | VLAN ID\nName-Type: VLAN_NAME_TYPE_RAW_PLUS_VID_NO_PAD\n\
                    eth0.42        | 42  | eth0\neth1.7         | 7  | eth1\neth0.100       | 100  | eth0\n";
        assert_eq!(
            vlan_devices(text, "eth0"),
            vec![("eth0.42", 42), ("eth0.100", 100)]
        );
        assert_eq!(vlan_devices(text, "eth2"), Vec::<(&str, u16)>::new());
        assert_eq!(vlan_devices("", "eth0"), Vec::<(&str, u16)>::new());
    }

    #[test]
    fn a_tagged_datagram_is_answered_from_its_vlan_device() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let link = LinkInfo {
            name: "eth0".into(),
            ifindex: 2,
            mac: [2, 0, 0, 0, 0, 1],
            addresses: vec![(a("198.18.0.1"), a("255.255.0.0"))],
            vlans: vec![VlanLink {
                id: 42,
                ifindex: 7,
                addresses: vec![(a("198.19.42.1"), a("255.255.255.0"))],
            }],
        };
        let bc = Ipv4Addr::BROADCAST;
        // Untagged: the interface itself.
        assert_eq!(link.ifindex_for(None), 2);
        assert_eq!(link.local_for(bc, None), a("198.18.0.1"));
        // VLAN 42 (priority bits ignored): its device's index and address.
        assert_eq!(link.ifindex_for(Some(0x2000 | 42)), 7);
        assert_eq!(link.local_for(bc, Some(42)), a("198.19.42.1"));
        assert!(link.is_broadcast(a("198.19.42.255"), Some(42)));
        assert!(!link.is_broadcast(a("198.19.42.255"), None));
        // A VLAN with no device falls back to the interface.
        assert_eq!(link.ifindex_for(Some(9)), 2);
        assert_eq!(link.all_addresses().len(), 2);
    }
}
