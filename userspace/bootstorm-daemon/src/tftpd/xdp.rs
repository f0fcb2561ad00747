//! TFTP on the XDP fast path: the [`Side`] of each fast-path worker. The XDP program steers
//! port 69 and the data port of every live transfer to the queue's AF_XDP socket; this runs the
//! same TFTP core as the socket path ([`Server`]) over those datagrams and answers through the
//! worker's transmit queue, as whole frames to the client's MAC.
//!
//! A transfer's data port (its TID) names the worker that owns it: worker `i` of `n` hands out
//! the ports `base + 1 + i + k*n` of the range, so a datagram to a data port that lands on
//! another queue is handed to its owner; a request (port 69) belongs to the worker its client's
//! address and port hash to, so a repeated request meets the transfer it repeats. A TID is a
//! pair (RFC 1350 4): one data port serves many clients at once, a transfer is found by its port
//! and its client's address, so a storm of any size fits in the range. A port is marked in the
//! program while a transfer uses it; a datagram to it from anyone else is counted (`wrong_tid`)
//! and dropped. An ERROR answering a
//! request leaves from `base`, a port never steered (a new TID, as RFC 1350 has it).
//!
//! Blocks are capped to what fits one Ethernet frame (no IP fragmentation here). A window of
//! full blocks leaves through a kernel UDP socket bound to the data port, as one segmented send
//! (UDP GSO): a NIC (or a veth) without zero-copy AF_XDP moves one GSO buffer far cheaper than
//! one frame per block through the transmit ring (copy mode: an skb per frame, 32 frames a
//! kick). Everything else (OACKs, lockstep blocks, the last block, ERRORs) leaves as a frame.
//! The socket also holds the port in the kernel, so no other socket of this host gets it while
//! transfers use it; what it receives (nothing: the program steers the port) is not read.

use super::{FileHost, TftpSettings, TftpStats, log_finished, log_refusal, owner};
use crate::dhcp_worker::Side;
use crate::files::FileCache;
use bootstorm_io::{RxMeta, TxMeta, TxQueue};
use bootstorm_tftp::server::{Accepted, Config, Server, Source, TransferId};
use bootstorm_time::Instant;
use bootstorm_xdp::Steer;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// The largest block that fits one 1,500-byte frame: 1500 - IPv4 20 - UDP 8 - TFTP 4.
const FRAME_BLKSIZE: u16 = 1468;

/// The data ports when `[tftp] port_range` is not set: above Linux's default ephemeral range
/// (32768-60999), so no socket of the kernel's has its traffic steered away.
pub const DEFAULT_PORTS: (u16, u16) = (61000, 65535);

/// A transfer's port and where its datagrams go.
struct Peer {
    port: u16,
    local: Ipv4Addr,
    mac: Option<[u8; 6]>,
    /// Its client's VLAN tag.
    vlan: Option<u16>,
    /// Size of a full DATA packet when its windows may leave segmented (0: never).
    seg: usize,
}

/// The kernel socket of a data port, for segmented windows.
struct PortSocket {
    sock: std::net::UdpSocket,
    /// The segment size it is set to (0: GSO refused here).
    seg: u16,
}

/// One worker's TFTP on the fast path.
pub struct XdpTftp {
    core: Server,
    host: FileHost,
    steer: Arc<Mutex<Steer>>,
    tftp_port: u16,
    index: usize,
    workers: usize,
    ports: (u16, u16),
    cursor: u32,
    /// Transfers by (data port, client).
    by_port: HashMap<(u16, SocketAddrV4), TransferId>,
    /// Transfers per data port (marked in the program while above zero).
    users: HashMap<u16, u32>,
    peers: HashMap<TransferId, Peer>,
    stats: Arc<TftpStats>,
    /// Kernel sockets of the data ports in use, for segmented windows.
    sockets: HashMap<u16, PortSocket>,
    /// The MAC (and VLAN tag) of each recent requester, for an ERROR answering its request.
    requesters: HashMap<SocketAddrV4, ([u8; 6], Option<u16>)>,
    buf: Vec<u8>,
}

/// The settings every worker's [`XdpTftp`] shares.
#[derive(Clone)]
pub struct Shared {
    /// `[tftp]`.
    pub settings: TftpSettings,
    /// The file cache.
    pub cache: Arc<FileCache>,
    /// The MAC of a client address (the DHCP leases).
    pub mac_of: Option<super::MacLookup>,
    /// See [`super::BootNote`].
    pub note: Option<super::BootNote>,
    /// The counters of every fast-path worker's TFTP.
    pub stats: Arc<TftpStats>,
    /// Uploads' sequence numbers.
    pub upload_seq: Arc<AtomicU64>,
}

impl Shared {
    /// For `[tftp]` settings and the file cache.
    pub fn new(
        settings: &TftpSettings,
        cache: Arc<FileCache>,
        mac_of: Option<super::MacLookup>,
        note: Option<super::BootNote>,
    ) -> Shared {
        Shared {
            settings: settings.clone(),
            cache,
            mac_of,
            note,
            stats: Arc::new(TftpStats::default()),
            upload_seq: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl XdpTftp {
    /// Worker `index` of `workers` on one interface, whose program is `steer`.
    pub fn new(sh: &Shared, steer: Arc<Mutex<Steer>>, index: usize, workers: usize) -> XdpTftp {
        let s = &sh.settings;
        let mut limits = s.limits;
        limits.max_blksize = limits.max_blksize.min(FRAME_BLKSIZE);
        let core = Server::new(
            Config {
                limits,
                max_transfers: s.max_transfers,
            },
            sh.stats.clone(),
        );
        let host = FileHost::new(
            s,
            sh.cache.clone(),
            sh.mac_of.clone(),
            sh.note.clone(),
            sh.upload_seq.clone(),
        );
        XdpTftp {
            core,
            host,
            steer,
            tftp_port: s.listen.port(),
            index,
            workers: workers.max(1),
            ports: s.port_range.unwrap_or(DEFAULT_PORTS),
            cursor: 0,
            by_port: HashMap::new(),
            users: HashMap::new(),
            peers: HashMap::new(),
            stats: sh.stats.clone(),
            sockets: HashMap::new(),
            requesters: HashMap::new(),
            buf: vec![0u8; bootstorm_net::GSO_MAX_BYTES + usize::from(FRAME_BLKSIZE) + 4],
        }
    }

    /// The port of this worker's `k`th slot in the range, if the range has one.
    fn port_at(&self, k: u32) -> Option<u16> {
        let p = u32::from(self.ports.0) + 1 + self.index as u32 + k * self.workers as u32;
        (p <= u32::from(self.ports.1)).then_some(p as u16)
    }

    /// A data port of this worker's for a transfer with `peer` (the next in turn that `peer`
    /// has no transfer on), marked in the program if it was not.
    fn open_port(&mut self, peer: SocketAddrV4) -> Option<u16> {
        let slots = ((u32::from(self.ports.1).saturating_sub(u32::from(self.ports.0)))
            / self.workers as u32)
            .max(1);
        for _ in 0..slots.min(64) {
            let k = self.cursor % slots;
            self.cursor = self.cursor.wrapping_add(1);
            let Some(p) = self.port_at(k) else { continue };
            if self.by_port.contains_key(&(p, peer)) {
                continue;
            }
            let users = self.users.entry(p).or_insert(0);
            if *users == 0 {
                let marked = self
                    .steer
                    .lock()
                    .map_err(|_| ())
                    .and_then(|mut s| s.set_port(p, true).map_err(|_| ()));
                if marked.is_err() {
                    return None;
                }
            }
            *users += 1;
            return Some(p);
        }
        None
    }

    /// Sends `buf[at..at + len]` as one frame from `from` to `to`.
    fn send_frame(
        &mut self,
        from: Source,
        to: SocketAddrV4,
        at: usize,
        len: usize,
        tx: &mut dyn TxQueue,
    ) {
        let (sport, src, mac, vlan) = match from {
            Source::Transfer(id) => match self.peers.get(&id) {
                Some(p) => (p.port, p.local, p.mac, p.vlan),
                None => return,
            },
            Source::Fresh(local) => {
                log_refusal(to, &self.buf[at..at + len]);
                let r = self.requesters.get(&to).copied();
                (self.ports.0, local, r.map(|r| r.0), r.and_then(|r| r.1))
            }
        };
        let meta = TxMeta {
            src,
            sport,
            l2_dst: mac,
            vlan,
            ..TxMeta::to(to)
        };
        let bytes = &self.buf[at..at + len];
        if !tx.push(bytes, &meta) {
            let _ = tx.flush();
            let _ = tx.push(bytes, &meta);
        }
    }

    /// Sends a gathered run of `count` full-size packets (`len` bytes at the start of `buf`):
    /// one segmented send through the data port's kernel socket, or frame by frame if that
    /// cannot be had. True if it went through the kernel socket.
    fn send_run(
        &mut self,
        run: Option<(TransferId, SocketAddrV4, usize)>,
        len: usize,
        count: usize,
        tx: &mut dyn TxQueue,
    ) -> bool {
        let Some((id, to, seg)) = run else {
            return false;
        };
        // Frames queued before the run leave first: nothing overtakes what was built before it.
        if count > 1 && !tx.is_empty() {
            let _ = tx.flush();
        }
        if count > 1 && self.send_segmented(id, to, seg, len) {
            return true;
        }
        for k in 0..count {
            self.send_frame(Source::Transfer(id), to, k * seg, seg, tx);
        }
        false
    }

    /// One segmented send of `buf[..len]` in `seg`-byte datagrams; false if it did not go.
    fn send_segmented(&mut self, id: TransferId, to: SocketAddrV4, seg: usize, len: usize) -> bool {
        let Some((port, local)) = self.peers.get(&id).map(|p| (p.port, p.local)) else {
            return false;
        };
        if let std::collections::hash_map::Entry::Vacant(e) = self.sockets.entry(port) {
            let Ok(sock) = std::net::UdpSocket::bind(SocketAddrV4::new(local, port)) else {
                return false;
            };
            e.insert(PortSocket { sock, seg: 0 });
        }
        let Some(ps) = self.sockets.get_mut(&port) else {
            return false;
        };
        if usize::from(ps.seg) != seg {
            if bootstorm_net::set_udp_segment(&ps.sock, seg as u16).is_err() {
                return false;
            }
            ps.seg = seg as u16;
        }
        match ps.sock.send_to(&self.buf[..len], to) {
            Ok(_) => true,
            Err(e) if bootstorm_net::gso_unsupported(&e) => {
                let _ = bootstorm_net::set_udp_segment(&ps.sock, 0);
                ps.seg = 0;
                false
            }
            // A full send buffer loses the window like the network would; the timer resends.
            Err(_) => true,
        }
    }

    fn close_port(&mut self, port: u16, peer: SocketAddrV4) {
        self.by_port.remove(&(port, peer));
        let users = self.users.entry(port).or_insert(1);
        *users = users.saturating_sub(1);
        if *users == 0 {
            self.users.remove(&port);
            self.sockets.remove(&port);
            if let Ok(mut s) = self.steer.lock() {
                let _ = s.set_port(port, false);
            }
        }
    }
}

impl Side for XdpTftp {
    fn owner(&self, _data: &[u8], meta: &RxMeta, n: usize) -> Option<usize> {
        let port = meta.dst.port();
        if port == self.tftp_port {
            return Some(owner(meta.src, n));
        }
        let (lo, hi) = self.ports;
        (port > lo && port <= hi).then(|| usize::from(port - lo - 1) % n.max(1))
    }

    fn handle(&mut self, now: Instant, data: &[u8], meta: &RxMeta) {
        let port = meta.dst.port();
        if port != self.tftp_port {
            match self.by_port.get(&(port, meta.src)) {
                Some(&id) => self.core.handle_datagram(now, id, meta.src, data),
                None => {
                    self.stats
                        .wrong_tid
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            return;
        }
        if let Some(mac) = meta.l2_src {
            if self.requesters.len() >= 4096 {
                self.requesters.clear();
            }
            self.requesters.insert(meta.src, (mac, meta.vlan));
        }
        let Accepted::Transfer {
            id,
            local,
            params,
            read,
        } = self
            .core
            .handle_request(now, meta.src, meta.local, data, &mut self.host)
        else {
            return;
        };
        match self.open_port(meta.src) {
            Some(p) => {
                self.by_port.insert((p, meta.src), id);
                let seg = super::window_segment(read, &params).unwrap_or(0);
                self.peers.insert(
                    id,
                    Peer {
                        port: p,
                        local,
                        mac: meta.l2_src,
                        vlan: meta.vlan,
                        seg,
                    },
                );
            }
            None => self.core.abandon(
                id,
                local,
                &bootstorm_tftp::server::Refusal::new(
                    bootstorm_wire::tftp::ErrorCode::NotDefined,
                    "server out of ports",
                ),
            ),
        }
    }

    fn transmit(&mut self, now: Instant, tx: &mut dyn TxQueue) -> Option<Instant> {
        self.core.handle_timeout(now);
        // The run of full-size packets of one transfer gathered at the start of `buf`.
        let mut run: Option<(TransferId, SocketAddrV4, usize)> = None;
        let (mut len, mut count) = (0usize, 0usize);
        while let Some(t) = self.core.poll_transmit(now, &mut self.buf[len..]) {
            let seg = match t.from {
                Source::Transfer(id) => self.peers.get(&id).map_or(0, |p| p.seg),
                Source::Fresh(_) => 0,
            };
            let joins = matches!(t.from, Source::Transfer(id) if run.is_some_and(|r| r.0 == id && r.1 == t.to))
                && seg > 0
                && t.len == seg;
            if !joins {
                // What was gathered goes first; then this one starts a run or goes alone.
                let prev = run.take();
                let via_kernel = self.send_run(prev, len, count, tx);
                if len > 0 {
                    self.buf.copy_within(len..len + t.len, 0);
                }
                (len, count) = (0, 0);
                // The short last block of a window whose run just left through the kernel
                // socket follows it that way: a frame put straight on the ring could overtake
                // the run (a NIC's qdisc holds the run, not the frame; a veth may carry the two
                // on different queues), and a client that sees the last block first takes the
                // run for a repeat and waits for a resend.
                match t.from {
                    Source::Transfer(id) if seg > 0 && t.len == seg => run = Some((id, t.to, seg)),
                    Source::Transfer(id)
                        if via_kernel
                            && prev.is_some_and(|r| r.0 == id && r.1 == t.to)
                            && self.send_segmented(id, t.to, seg, t.len) =>
                    {
                        continue;
                    }
                    _ => {
                        self.send_frame(t.from, t.to, 0, t.len, tx);
                        continue;
                    }
                }
            }
            len += t.len;
            count += 1;
            if len + seg > bootstorm_net::GSO_MAX_BYTES || count == bootstorm_net::GSO_MAX_SEGMENTS
            {
                self.send_run(run.take(), len, count, tx);
                (len, count) = (0, 0);
            }
        }
        self.send_run(run, len, count, tx);
        while let Some(f) = self.core.poll_event() {
            if let Some(p) = self.peers.remove(&f.id) {
                self.close_port(p.port, f.peer);
            }
            log_finished(&f, now, self.host.note.as_ref());
        }
        self.core.poll_timeout()
    }

    fn busy(&self) -> bool {
        !self.core.is_empty()
    }
}
