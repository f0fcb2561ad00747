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
//! Blocks are capped to what fits one Ethernet frame (no IP fragmentation here), windows leave
//! as frames one by one.

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
    /// The MAC of each recent requester, for an ERROR answering its request.
    requesters: HashMap<SocketAddrV4, [u8; 6]>,
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
    ) -> Shared {
        Shared {
            settings: settings.clone(),
            cache,
            mac_of,
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
        let host = FileHost {
            cache: sh.cache.clone(),
            max_file_size: s.max_file_size,
            unique_root: s.unique_root,
            mac_of: sh.mac_of.clone(),
            upload: s.upload.clone(),
            upload_seq: sh.upload_seq.clone(),
        };
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
            requesters: HashMap::new(),
            buf: vec![0u8; usize::from(FRAME_BLKSIZE) + 4],
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

    fn close_port(&mut self, port: u16, peer: SocketAddrV4) {
        self.by_port.remove(&(port, peer));
        let users = self.users.entry(port).or_insert(1);
        *users = users.saturating_sub(1);
        if *users == 0 {
            self.users.remove(&port);
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
            self.requesters.insert(meta.src, mac);
        }
        let Accepted::Transfer { id, local, .. } =
            self.core
                .handle_request(now, meta.src, meta.local, data, &mut self.host)
        else {
            return;
        };
        match self.open_port(meta.src) {
            Some(p) => {
                self.by_port.insert((p, meta.src), id);
                self.peers.insert(
                    id,
                    Peer {
                        port: p,
                        local,
                        mac: meta.l2_src,
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
        while let Some(t) = self.core.poll_transmit(now, &mut self.buf) {
            let (sport, src, mac) = match t.from {
                Source::Transfer(id) => match self.peers.get(&id) {
                    Some(p) => (p.port, p.local, p.mac),
                    None => continue,
                },
                Source::Fresh(local) => {
                    log_refusal(t.to, &self.buf[..t.len]);
                    (self.ports.0, local, self.requesters.get(&t.to).copied())
                }
            };
            let meta = TxMeta {
                src,
                sport,
                l2_dst: mac,
                ..TxMeta::to(t.to)
            };
            if !tx.push(&self.buf[..t.len], &meta) {
                let _ = tx.flush();
                let _ = tx.push(&self.buf[..t.len], &meta);
            }
        }
        while let Some(f) = self.core.poll_event() {
            if let Some(p) = self.peers.remove(&f.id) {
                self.close_port(p.port, f.peer);
            }
            log_finished(&f, now);
        }
        self.core.poll_timeout()
    }

    fn busy(&self) -> bool {
        !self.core.is_empty()
    }
}
