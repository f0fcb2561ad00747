//! TFTP on the XDP fast path: the [`Side`] of each fast-path worker. The XDP program steers
//! port 69 and the data port of every live transfer to the queue's AF_XDP socket; this runs the
//! same TFTP core as the socket path ([`Server`]) over those datagrams and answers through the
//! worker's transmit queue, as whole frames to the client's MAC.
//!
//! A transfer's data port (its TID) names the worker that owns it: worker `i` of `n` hands out
//! the ports `base + 1 + i + k*n` of the range, so a datagram to a data port that lands on
//! another queue is handed to its owner; a request (port 69) belongs to the worker its client's
//! address and port hash to, so a repeated request meets the transfer it repeats. Ports are
//! marked in the program when a transfer starts and cleared when it ends. An ERROR answering a
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
    by_port: HashMap<u16, TransferId>,
    peers: HashMap<TransferId, Peer>,
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
            peers: HashMap::new(),
            requesters: HashMap::new(),
            buf: vec![0u8; usize::from(FRAME_BLKSIZE) + 4],
        }
    }

    /// The port of this worker's `k`th slot in the range, if the range has one.
    fn port_at(&self, k: u32) -> Option<u16> {
        let p = u32::from(self.ports.0) + 1 + self.index as u32 + k * self.workers as u32;
        (p <= u32::from(self.ports.1)).then_some(p as u16)
    }

    /// A free data port of this worker's, marked in the program.
    fn open_port(&mut self) -> Option<u16> {
        let slots =
            (u32::from(self.ports.1).saturating_sub(u32::from(self.ports.0))) / self.workers as u32;
        for _ in 0..slots.max(1) {
            let k = self.cursor % slots.max(1);
            self.cursor = self.cursor.wrapping_add(1);
            let Some(p) = self.port_at(k) else { continue };
            if self.by_port.contains_key(&p) {
                continue;
            }
            let marked = self
                .steer
                .lock()
                .map_err(|_| ())
                .and_then(|mut s| s.set_port(p, true).map_err(|_| ()));
            return marked.is_ok().then_some(p);
        }
        None
    }

    fn close_port(&mut self, port: u16) {
        self.by_port.remove(&port);
        if let Ok(mut s) = self.steer.lock() {
            let _ = s.set_port(port, false);
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
            if let Some(&id) = self.by_port.get(&port) {
                self.core.handle_datagram(now, id, meta.src, data);
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
        match self.open_port() {
            Some(p) => {
                self.by_port.insert(p, id);
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
                self.close_port(p.port);
            }
            log_finished(&f, now);
        }
        self.core.poll_timeout()
    }

    fn busy(&self) -> bool {
        !self.core.is_empty()
    }
}
