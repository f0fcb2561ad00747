//! The TFTP server on the socket path. A listener thread takes requests on port 69 and answers
//! errors itself; every accepted read gets its own UDP socket (its TID, RFC 1350) and goes to a
//! worker thread. A datagram on that socket from anyone but the transfer's client gets ERROR 5
//! ("unknown transfer ID", RFC 1350 4) and leaves the transfer undisturbed.
//! Workers poll their transfers' sockets with mio and keep a heap of retransmission deadlines
//! (at most one entry per transfer), so thousands of transfers run at once with memory bounded by
//! their number. File bytes come from the shared [`FileCache`]: one copy for every client.
//!
//! Uploads (WRQ) are refused unless an upload directory is configured, which is separate from the
//! root. An upload is written to a hidden temporary file next to its destination and moved into
//! place only when complete, before the final ACK leaves; a failed upload leaves nothing behind.
//! Existing files are not replaced unless the configuration says so.
//!
//! Per-client roots (as dnsmasq's `tftp-unique-root`): a request is looked up first under
//! `root/<client IP>/` or `root/<client MAC>/` (`01-02-03-04-aa-bb`), then under `root/`. The
//! MAC comes from the DHCP lease of the client's address, else from the kernel's neighbour table.

use crate::files::FileCache;
use crate::logbuf;
use anyhow::Context;
use bootstorm_net::{RecvBatch, SocketOptions, UdpSocket4};
use bootstorm_tftp::Limits;
use bootstorm_tftp::State;
use bootstorm_tftp::server::{
    Accepted, Config, Counters, Finished, Refusal, Server, Source, TransferId,
};
use bootstorm_time::{Clock, Instant};
use bootstorm_wire::tftp::{DATA_HEADER_LEN as DATA_HEADER, ErrorCode, Repr};
use mio::net::UdpSocket as MioUdp;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// TFTP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TftpSettings {
    /// Listen address (port 69 by default).
    pub listen: SocketAddrV4,
    /// Root directory.
    pub root: PathBuf,
    /// Negotiation limits and retransmission.
    pub limits: Limits,
    /// Worker threads.
    pub workers: usize,
    /// Largest file served.
    pub max_file_size: u64,
    /// Most transfers at once; more get "server busy".
    pub max_transfers: usize,
    /// Local ports for transfers (their TIDs), inclusive, for firewalls; `None`: any free port.
    pub port_range: Option<(u16, u16)>,
    /// Uploads; `None`: every WRQ is refused.
    pub upload: Option<UploadSettings>,
    /// Per-client subdirectories of the root, looked up first.
    pub unique_root: Option<UniqueRoot>,
    /// How long a worker with transfers running polls before it sleeps (0: never polls).
    pub busy_poll: Duration,
}

/// Where uploads go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadSettings {
    /// Directory for uploaded files (subdirectories must exist already).
    pub dir: PathBuf,
    /// Replace existing files (otherwise ERROR 6, "file already exists").
    pub overwrite: bool,
    /// Largest upload, in bytes.
    pub max_size: u64,
}

/// Which per-client subdirectory of the root a request looks in first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UniqueRoot {
    /// `root/198.18.0.10/`.
    Ip,
    /// `root/52-54-00-12-34-56/`.
    Mac,
}

/// Binds a transfer socket on `ip`: any free port, or the next free one in `range` after
/// `cursor` (which advances, so ports are reused as late as possible). `None` if all are busy.
fn bind_transfer_socket(
    ip: std::net::Ipv4Addr,
    range: Option<(u16, u16)>,
    cursor: &mut u32,
) -> std::io::Result<UdpSocket> {
    let Some((lo, hi)) = range else {
        return UdpSocket::bind(SocketAddrV4::new(ip, 0));
    };
    let n = u32::from(hi - lo) + 1;
    for _ in 0..n {
        let port = lo + (*cursor % n) as u16;
        *cursor = cursor.wrapping_add(1);
        match UdpSocket::bind(SocketAddrV4::new(ip, port)) {
            Ok(sock) => return Ok(sock),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "every port of the transfer range is in use",
    ))
}

/// Counters, shared by every worker's TFTP core (and read by the control socket).
pub type TftpStats = Counters;

/// A running TFTP server.
pub struct TftpRunning {
    threads: Vec<JoinHandle<()>>,
    shutdown: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
    local: SocketAddrV4,
    stats: Arc<TftpStats>,
}

impl TftpRunning {
    /// The listener's address.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<TftpStats> {
        &self.stats
    }

    /// Stops and joins every thread.
    pub fn stop(self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            let _ = w.wake();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Binds the listener and starts the threads. `shutdown` stops them too.
/// `mac_of` resolves client addresses to MACs for `unique_root = "mac"` (the DHCP lease table);
/// the kernel's neighbour table is asked when it has no answer.
pub fn start(
    s: &TftpSettings,
    clock: Clock,
    shutdown: Arc<AtomicBool>,
    mac_of: Option<MacLookup>,
) -> anyhow::Result<TftpRunning> {
    let cache = Arc::new(
        FileCache::new(&s.root, s.max_file_size)
            .with_context(|| format!("TFTP root {}", s.root.display()))?,
    );
    start_shared(s, cache, clock, shutdown, mac_of, None)
}

/// A request datagram passed from the listener to the worker that owns its client.
struct Request {
    datagram: Vec<u8>,
    peer: SocketAddrV4,
    local: Ipv4Addr,
}

/// [`start`] with a file cache shared with another service (HTTP from the same root); files
/// over `s.max_file_size` are refused here whatever the cache allows; `note` hears of each
/// download (the boot-session registry).
pub fn start_shared(
    s: &TftpSettings,
    cache: Arc<FileCache>,
    clock: Clock,
    shutdown: Arc<AtomicBool>,
    mac_of: Option<MacLookup>,
    note: Option<BootNote>,
) -> anyhow::Result<TftpRunning> {
    // The batched socket: a 4 MiB receive buffer holds a boot storm's worth of requests, and
    // IP_PKTINFO tells which local address each was sent to, so its transfer answers from it.
    let listener = UdpSocket4::bind(&SocketOptions {
        bind: s.listen,
        interface: None,
        reuse_port: false,
        recv_timeout: Duration::from_millis(100),
    })
    .with_context(|| format!("binding TFTP {}", s.listen))?;
    let local = listener.local_addr()?;
    let stats = Arc::new(TftpStats::default());
    let upload_seq = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let mut queues = Vec::new();
    let mut wakers = Vec::new();
    for id in 0..s.workers.max(1) {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = channel::<Request>();
        queues.push((tx, waker.clone()));
        wakers.push(waker);
        let core = Server::new(
            Config {
                limits: s.limits,
                max_transfers: s.max_transfers,
            },
            stats.clone(),
        );
        let host = FileHost::new(
            s,
            cache.clone(),
            mac_of.clone(),
            note.clone(),
            upload_seq.clone(),
        );
        let w = Worker {
            poll,
            requests: rx,
            core,
            host,
            clock,
            shutdown: shutdown.clone(),
            busy_poll: s.busy_poll,
            port_range: s.port_range,
            max_blksize: s.limits.max_blksize,
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("tftp-worker-{id}"))
                .spawn(move || w.run())?,
        );
    }
    let (shutdown2, listen_ip) = (shutdown.clone(), *s.listen.ip());
    threads.push(
        std::thread::Builder::new()
            .name("tftp-listener".into())
            .spawn(move || listen(listener, listen_ip, queues, shutdown2))?,
    );
    tracing::info!(listen = %local, root = %s.root.display(), workers = s.workers, "serving TFTP");
    Ok(TftpRunning {
        threads,
        shutdown,
        wakers,
        local,
        stats,
    })
}

/// Sends an ERROR from a fresh port (a new TID, as RFC 1350 has servers answer requests).
fn send_fresh(bind_ip: Ipv4Addr, to: SocketAddrV4, bytes: &[u8]) {
    if let Ok(s) = UdpSocket::bind(SocketAddrV4::new(bind_ip, 0)) {
        let _ = s.send_to(bytes, to);
    }
}

/// The listener thread: takes requests on the TFTP port in batches and passes each to the
/// worker that owns its client (by its address and port), so one client's repeated requests
/// meet the transfer they repeat.
fn listen(
    sock: UdpSocket4,
    listen_ip: Ipv4Addr,
    queues: Vec<(Sender<Request>, Arc<Waker>)>,
    shutdown: Arc<AtomicBool>,
) {
    let mut batch = RecvBatch::default();
    let mut woken = vec![false; queues.len()];
    while !shutdown.load(Ordering::Relaxed) {
        let n = sock.recv_batch(&mut batch).unwrap_or(0);
        woken.iter_mut().for_each(|w| *w = false);
        for i in 0..n {
            let (datagram, info) = batch.get(i);
            // Answer from the address the request was sent to (the listen address if that was
            // a broadcast or unknown).
            let local = if info.dst.is_unspecified() || info.is_broadcast() {
                listen_ip
            } else {
                info.dst
            };
            let k = owner(info.src, queues.len());
            let r = Request {
                datagram: datagram.to_vec(),
                peer: info.src,
                local,
            };
            if queues[k].0.send(r).is_ok() {
                woken[k] = true;
            }
        }
        for (k, w) in woken.iter().enumerate() {
            if *w {
                let _ = queues[k].1.wake();
            }
        }
    }
}

/// The size of a full DATA packet of a transfer whose windows may leave as one segmented send
/// (UDP GSO): a download with windows, blocks big enough that no OACK or ERROR could be taken
/// for more than one segment. None: packet by packet.
fn window_segment(read: bool, params: &bootstorm_tftp::Negotiated) -> Option<usize> {
    (read && params.windowsize > 1 && params.blksize >= 508)
        .then(|| usize::from(params.blksize) + DATA_HEADER)
}

/// The worker of `n` that owns client `peer`.
fn owner(peer: SocketAddrV4, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in peer
        .ip()
        .octets()
        .into_iter()
        .chain(peer.port().to_be_bytes())
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % n.max(1) as u64) as usize
}

const WAKER: Token = Token(usize::MAX);

/// Polls without sleeping for up to `limit`; true if events came. Between polls it yields, so
/// a client (or anything else) that shares this core runs at once rather than waiting for the
/// poll to end.
fn busy_wait(poll: &mut Poll, events: &mut Events, limit: Duration) -> bool {
    let until = std::time::Instant::now() + limit;
    loop {
        if poll.poll(events, Some(Duration::ZERO)).is_ok() && !events.is_empty() {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::yield_now();
    }
}

/// A transfer's own port (its TID).
struct Slot {
    socket: MioUdp,
    /// Segment size if the socket sends windows segmented (UDP GSO); 0 if not.
    gso: u16,
}

/// A TFTP worker thread: its core, its transfers' sockets, the file source.
struct Worker {
    poll: Poll,
    requests: Receiver<Request>,
    core: Server,
    host: FileHost,
    clock: Clock,
    shutdown: Arc<AtomicBool>,
    busy_poll: Duration,
    port_range: Option<(u16, u16)>,
    max_blksize: u16,
}

impl Worker {
    fn run(mut self) {
        logbuf::buffer_this_thread();
        let mut events = Events::with_capacity(1024);
        let mut slots: HashMap<TransferId, Slot> = HashMap::new();
        // Room for a segmented send of full blocks plus one packet more (the largest the
        // limits allow), so a window is written in place packet after packet.
        let mut buf = vec![0u8; bootstorm_net::GSO_MAX_BYTES + usize::from(self.max_blksize) + 4];
        // Room for the largest DATA packet an upload may send.
        let mut rbuf = vec![0u8; usize::from(self.max_blksize) + 4];
        let mut port_cursor = 0u32;
        let mut last_flush = std::time::Instant::now();
        while !self.shutdown.load(Ordering::Relaxed) {
            let now = self.clock.now();
            let wait = self
                .core
                .poll_timeout()
                .map_or(Duration::from_millis(100), |d| {
                    Duration::from_millis(d.saturating_since(now).as_millis())
                })
                .min(Duration::from_millis(100));
            // Transfers running: their clients' next ACKs are probably microseconds away.
            // Poll for them a while (busy_poll) before sleeping, so a lockstep transfer pays
            // no wake-up per block; never past the next deadline.
            let got = !self.core.is_empty()
                && !self.busy_poll.is_zero()
                && busy_wait(&mut self.poll, &mut events, self.busy_poll.min(wait));
            if !got && self.poll.poll(&mut events, Some(wait)).is_err() {
                continue;
            }
            let now = self.clock.now();
            for ev in events.iter() {
                if ev.token() == WAKER {
                    while let Ok(r) = self.requests.try_recv() {
                        self.request(now, r, &mut slots, &mut port_cursor);
                    }
                    continue;
                }
                let id = TransferId(ev.token().0 as u32);
                let Some(slot) = slots.get(&id) else {
                    continue;
                };
                // Drain the socket: ACKs move the window, an ERROR ends the transfer.
                loop {
                    match slot.socket.recv_from(&mut rbuf) {
                        Ok((n, SocketAddr::V4(from))) => {
                            self.core.handle_datagram(now, id, from, &rbuf[..n])
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => break, // ICMP port unreachable and the like: timeouts decide
                    }
                }
            }
            self.core.handle_timeout(now);
            transmit(&mut self.core, &mut slots, now, &mut buf);
            while let Some(f) = self.core.poll_event() {
                if let Some(mut slot) = slots.remove(&f.id) {
                    let _ = self.poll.registry().deregister(&mut slot.socket);
                }
                log_finished(&f, now, self.host.note.as_ref());
            }
            if last_flush.elapsed() >= logbuf::FLUSH_INTERVAL || events.is_empty() {
                logbuf::flush_thread();
                last_flush = std::time::Instant::now();
            }
        }
        logbuf::flush_thread();
    }

    /// A request the listener passed on: the core decides; an accepted transfer gets its port.
    fn request(
        &mut self,
        now: Instant,
        r: Request,
        slots: &mut HashMap<TransferId, Slot>,
        port_cursor: &mut u32,
    ) {
        let Accepted::Transfer {
            id,
            local,
            params,
            read,
        } = self
            .core
            .handle_request(now, r.peer, r.local, &r.datagram, &mut self.host)
        else {
            return;
        };
        let want_gso = window_segment(read, &params).is_some();
        // Not connected: a connected socket would let the kernel drop a stranger's datagram
        // with no word, where RFC 1350 4 wants it answered with ERROR 5.
        let opened = bind_transfer_socket(local, self.port_range, port_cursor).and_then(|u| {
            u.set_nonblocking(true)?;
            let seg = params.blksize + DATA_HEADER as u16;
            let gso = if want_gso && bootstorm_net::set_udp_segment(&u, seg).is_ok() {
                seg
            } else {
                0
            };
            let mut socket = MioUdp::from_std(u);
            self.poll
                .registry()
                .register(&mut socket, Token(id.0 as usize), Interest::READABLE)?;
            Ok((socket, gso))
        });
        match opened {
            Ok((socket, gso)) => {
                slots.insert(id, Slot { socket, gso });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a transfer socket");
                self.core.abandon(
                    id,
                    local,
                    &Refusal::new(ErrorCode::NotDefined, "server out of sockets"),
                );
            }
        }
    }
}

/// Sends everything the core has due. With GSO on for a transfer, its consecutive full-size
/// packets are written one after another into `buf` and leave in one send (split by the
/// kernel); any shorter packet (the last block, an OACK, an ERROR) or another transfer's
/// packet ends the run. A full socket buffer loses packets like the network would, and the
/// retransmission timer recovers them.
fn transmit(
    core: &mut Server,
    slots: &mut HashMap<TransferId, Slot>,
    now: Instant,
    buf: &mut [u8],
) {
    // The run being gathered: its transfer, bytes and packets so far.
    let mut run: Option<(TransferId, SocketAddrV4)> = None;
    let (mut len, mut count) = (0usize, 0usize);
    while let Some(t) = core.poll_transmit(now, &mut buf[len..]) {
        let id = match t.from {
            Source::Fresh(local) => {
                log_refusal(t.to, &buf[len..len + t.len]);
                send_fresh(local, t.to, &buf[len..len + t.len]);
                continue;
            }
            Source::Transfer(id) => id,
        };
        let Some(seg) = slots.get(&id).map(|s| usize::from(s.gso)) else {
            continue;
        };
        if run != Some((id, t.to)) || seg == 0 || t.len != seg {
            // Another transfer or packet kind: what was gathered goes first.
            send_run(slots, run.take(), &buf[..len]);
            if len > 0 {
                buf.copy_within(len..len + t.len, 0);
            }
            (len, count) = (0, 0);
            if seg == 0 || t.len != seg {
                // Not part of a segmented run: on its own.
                if let Some(slot) = slots.get(&id) {
                    let _ = slot.socket.send_to(&buf[..t.len], SocketAddr::V4(t.to));
                }
                continue;
            }
            run = Some((id, t.to));
        }
        len += t.len;
        count += 1;
        if len + seg > bootstorm_net::GSO_MAX_BYTES || count == bootstorm_net::GSO_MAX_SEGMENTS {
            send_run(slots, run.take(), &buf[..len]);
            (len, count) = (0, 0);
        }
    }
    send_run(slots, run, &buf[..len]);
}

/// Sends a gathered run of full-size packets of one transfer as one segmented write.
fn send_run(
    slots: &mut HashMap<TransferId, Slot>,
    run: Option<(TransferId, SocketAddrV4)>,
    bytes: &[u8],
) {
    if let Some((id, to)) = run
        && !bytes.is_empty()
        && let Some(slot) = slots.get_mut(&id)
    {
        send_segmented(slot, to, bytes);
    }
}

/// One segmented send; if the device cannot segment (EIO: no checksum offload), GSO goes off
/// for this transfer and the packets leave one by one.
fn send_segmented(slot: &mut Slot, to: SocketAddrV4, bytes: &[u8]) {
    let seg = usize::from(slot.gso).max(1);
    match slot.socket.send_to(bytes, SocketAddr::V4(to)) {
        Err(e) if bytes.len() > seg && bootstorm_net::gso_unsupported(&e) => {
            tracing::debug!(client = %to, "UDP segmentation refused; sending per datagram");
            slot.gso = 0;
            let _ = bootstorm_net::set_udp_segment(&slot.socket, 0);
            for p in bytes.chunks(seg) {
                let _ = slot.socket.send_to(p, SocketAddr::V4(to));
            }
        }
        _ => {}
    }
}

/// The log line of a refusal (an ERROR answering a request), read back from the datagram.
fn log_refusal(client: SocketAddrV4, bytes: &[u8]) {
    if let Ok(Repr::Error { message, .. }) = Repr::parse(bytes) {
        let reason = String::from_utf8_lossy(message);
        tracing::info!(target: "bootstorm::tftp", event = "refused", client = %client, reason = %reason);
    }
}

fn log_finished(f: &Finished, now: Instant, note: Option<&BootNote>) {
    let millis = now.saturating_since(f.started).as_millis();
    if let Some(note) = note
        && f.read
    {
        let (proto, name) = ("tftp", f.file.as_str().into());
        note(
            *f.peer.ip(),
            match f.state {
                State::Failed(reason) => Step::FileFailed {
                    proto,
                    name,
                    reason: format!("{reason:?}").into(),
                },
                _ => Step::FileDone {
                    proto,
                    name,
                    bytes: f.bytes,
                    millis,
                    resent: f.resent,
                },
            },
        );
    }
    let (peer, file, p) = (&f.peer, &f.file, &f.params);
    match (f.read, f.state) {
        (true, State::Failed(reason)) => {
            tracing::info!(target: "bootstorm::tftp", event = "failed", client = %peer, file = %file,
                reason = ?reason, bytes = f.bytes, millis, "transfer");
        }
        (true, _) => {
            tracing::info!(target: "bootstorm::tftp", event = "done", client = %peer, file = %file,
                bytes = f.bytes, blksize = p.blksize, windowsize = p.windowsize, millis, resent = f.resent, "transfer");
        }
        (false, _) if f.stored => {
            tracing::info!(target: "bootstorm::tftp", event = "uploaded", client = %peer, file = %file,
                bytes = f.bytes, blksize = p.blksize, windowsize = p.windowsize, millis, "transfer");
        }
        (false, state) => {
            tracing::info!(target: "bootstorm::tftp", event = "upload-failed", client = %peer, file = %file,
                reason = ?state, bytes = f.bytes, millis, "transfer");
        }
    }
}

/// Shared counters as JSON, for the control socket.
pub fn stats_json(s: &TftpStats) -> serde_json::Value {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    serde_json::json!({
        "started": g(&s.started), "completed": g(&s.completed), "failed": g(&s.failed),
        "refused": g(&s.refused), "active": g(&s.active), "duplicates": g(&s.duplicates), "deferred": g(&s.deferred),
        "data_sent": g(&s.data_sent), "data_resent": g(&s.data_resent),
        "wrong_tid": g(&s.wrong_tid), "bad_options": g(&s.bad_options),
        "uploaded": g(&s.uploaded), "upload_bytes": g(&s.upload_bytes),
    })
}

mod source;
pub mod xdp;
use crate::boots::Step;
use source::FileHost;
pub use source::{BootNote, MacLookup, neighbour_mac};

#[cfg(test)]
mod tests;
