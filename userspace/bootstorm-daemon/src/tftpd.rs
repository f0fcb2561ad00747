//! The TFTP server on the socket path. A listener thread takes requests on port 69 and answers
//! errors itself; every accepted read gets its own UDP socket (its TID, RFC 1350: the kernel then
//! drops packets from anyone but the client it is connected to) and goes to a worker thread.
//! Workers poll their transfers' sockets with mio and keep a heap of retransmission deadlines
//! (at most one entry per transfer), so thousands of transfers run at once with memory bounded by
//! their number. File bytes come from the shared [`FileCache`]: one copy for every client.

use crate::files::{FileCache, FileError};
use crate::logbuf;
use anyhow::Context;
use bootstorm_net::{RecvBatch, SocketOptions, UdpSocket4};
use bootstorm_tftp::{Limits, ReadTransfer, State, negotiate};
use bootstorm_time::{Clock, Instant};
use bootstorm_wire::tftp::{ErrorCode, Mode, Repr};
use mio::net::UdpSocket as MioUdp;
use mio::{Events, Interest, Poll, Token, Waker};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// TFTP settings.
#[derive(Clone, Debug)]
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

/// Counters, shared by the listener and the workers.
#[derive(Debug, Default)]
pub struct TftpStats {
    /// Read requests accepted.
    pub started: AtomicU64,
    /// Transfers completed.
    pub completed: AtomicU64,
    /// Transfers abandoned (timeout or client error).
    pub failed: AtomicU64,
    /// Requests answered with an ERROR (not found, refused, malformed).
    pub refused: AtomicU64,
    /// DATA packets sent, and of those retransmitted.
    pub data_sent: AtomicU64,
    /// See `data_sent`.
    pub data_resent: AtomicU64,
    /// Transfers running now.
    pub active: AtomicU64,
    /// Repeated requests from a client whose transfer already runs (its OACK or first block was
    /// lost; the transfer's own retransmission answers it).
    pub duplicates: AtomicU64,
}

/// Clients with a transfer running, so a repeated request does not start a second one.
type Active = Arc<std::sync::Mutex<std::collections::HashSet<SocketAddr>>>;

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

struct NewTransfer {
    socket: MioUdp,
    transfer: ReadTransfer,
    peer: SocketAddr,
    file: String,
    started: Instant,
}

/// Binds the listener and starts the threads. `shutdown` stops them too.
pub fn start(
    s: &TftpSettings,
    clock: Clock,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<TftpRunning> {
    let cache = Arc::new(
        FileCache::new(&s.root, s.max_file_size)
            .with_context(|| format!("TFTP root {}", s.root.display()))?,
    );
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
    let active: Active = Arc::default();
    let mut threads = Vec::new();
    let mut queues = Vec::new();
    let mut wakers = Vec::new();
    for id in 0..s.workers.max(1) {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = channel::<NewTransfer>();
        queues.push((tx, waker.clone()));
        wakers.push(waker);
        let (stats, shutdown, limits, active) =
            (stats.clone(), shutdown.clone(), s.limits, active.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("tftp-worker-{id}"))
                .spawn(move || worker(poll, rx, clock, shutdown, stats, limits, active))?,
        );
    }
    let (stats2, shutdown2, settings) = (stats.clone(), shutdown.clone(), s.clone());
    threads.push(
        std::thread::Builder::new()
            .name("tftp-listener".into())
            .spawn(move || {
                Listener {
                    sock: listener,
                    s: settings,
                    cache,
                    queues,
                    clock,
                    shutdown: shutdown2,
                    stats: stats2,
                    active,
                }
                .run()
            })?,
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
fn send_error(bind_ip: std::net::Ipv4Addr, to: SocketAddr, code: ErrorCode, msg: &str) {
    let mut buf = [0u8; 600];
    let Ok(n) = (Repr::Error {
        code,
        message: msg.as_bytes(),
    })
    .emit(&mut buf) else {
        return;
    };
    if let Ok(s) = UdpSocket::bind(SocketAddrV4::new(bind_ip, 0)) {
        let _ = s.send_to(&buf[..n], to);
    }
}

/// The listener thread's state.
struct Listener {
    sock: UdpSocket4,
    s: TftpSettings,
    cache: Arc<FileCache>,
    queues: Vec<(Sender<NewTransfer>, Arc<Waker>)>,
    clock: Clock,
    shutdown: Arc<AtomicBool>,
    stats: Arc<TftpStats>,
    active: Active,
}

impl Listener {
    fn run(self) {
        let Listener {
            sock,
            s,
            cache,
            queues,
            clock,
            shutdown,
            stats,
            active,
        } = self;
        let mut batch = RecvBatch::default();
        let mut next_worker = 0usize;
        let mut port_cursor = 0u32;
        let ctx = AcceptCtx {
            s: &s,
            cache: &cache,
            clock,
            stats: &stats,
        };
        while !shutdown.load(Ordering::Relaxed) {
            let n = sock.recv_batch(&mut batch).unwrap_or(0);
            for i in 0..n {
                let (datagram, info) = batch.get(i);
                // Answer from the address the request was sent to (the listen address if that was a
                // broadcast or unknown).
                let local_ip = if info.dst.is_unspecified() || info.dst.is_broadcast() {
                    *s.listen.ip()
                } else {
                    info.dst
                };
                let peer = SocketAddr::V4(info.src);
                if active.lock().is_ok_and(|a| a.contains(&peer)) {
                    stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if let Some(t) = accept(datagram, peer, local_ip, &ctx, &mut port_cursor) {
                    if let Ok(mut a) = active.lock() {
                        a.insert(peer);
                    }
                    let (tx, waker) = &queues[next_worker % queues.len()];
                    next_worker += 1;
                    if tx.send(t).is_ok() {
                        let _ = waker.wake();
                    }
                }
            }
        }
    }
}

/// What the listener shares with [`accept`].
#[derive(Clone, Copy)]
struct AcceptCtx<'a> {
    s: &'a TftpSettings,
    cache: &'a FileCache,
    clock: Clock,
    stats: &'a TftpStats,
}

/// Handles one datagram on the listener: a transfer to start, or an ERROR already sent, or
/// nothing (not a request).
fn accept(
    datagram: &[u8],
    peer: SocketAddr,
    ip: std::net::Ipv4Addr,
    ctx: &AcceptCtx<'_>,
    port_cursor: &mut u32,
) -> Option<NewTransfer> {
    let AcceptCtx {
        s,
        cache,
        clock,
        stats,
    } = *ctx;
    let refuse = |code: ErrorCode, msg: &str| {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "bootstorm::tftp", event = "refused", client = %peer, reason = msg);
        send_error(ip, peer, code, msg);
    };
    let (filename, mode, options) = match Repr::parse(datagram) {
        Ok(Repr::Request {
            write: false,
            filename,
            mode,
            options,
        }) => (filename, mode, options),
        Ok(Repr::Request { write: true, .. }) => {
            refuse(ErrorCode::AccessViolation, "writes are not allowed");
            return None;
        }
        Ok(_) => return None, // DATA/ACK/ERROR to port 69 belong to no transfer: dropped
        Err(e) => {
            // Only requests get an answer; anything else on port 69 is dropped.
            if datagram.len() >= 2
                && matches!(u16::from_be_bytes([datagram[0], datagram[1]]), 1 | 2)
            {
                refuse(ErrorCode::IllegalOperation, &format!("bad request: {e}"));
            }
            return None;
        }
    };
    let name = String::from_utf8_lossy(filename).into_owned();
    let data = match cache.get(filename, mode == Mode::Netascii) {
        Ok(d) => d,
        Err(e) => {
            let code = match e {
                FileError::NotFound | FileError::NotAFile => ErrorCode::FileNotFound,
                FileError::TooLarge(_) => ErrorCode::NotDefined,
                FileError::BadName(_) | FileError::OutsideRoot => ErrorCode::AccessViolation,
            };
            refuse(code, &format!("{name}: {e}"));
            return None;
        }
    };
    if stats.active.load(Ordering::Relaxed) as usize >= s.max_transfers {
        refuse(ErrorCode::NotDefined, "server busy, try again");
        return None;
    }
    let params = negotiate(&options, data.len() as u64, &s.limits);
    let socket = match bind_transfer_socket(ip, s.port_range, port_cursor).and_then(|u| {
        u.connect(peer)?;
        u.set_nonblocking(true)?;
        Ok(MioUdp::from_std(u))
    }) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a transfer socket");
            refuse(ErrorCode::NotDefined, "server out of sockets");
            return None;
        }
    };
    stats.started.fetch_add(1, Ordering::Relaxed);
    stats.active.fetch_add(1, Ordering::Relaxed);
    Some(NewTransfer {
        socket,
        transfer: ReadTransfer::new(data, params, &s.limits),
        peer,
        file: name,
        started: clock.now(),
    })
}

const WAKER: Token = Token(usize::MAX);

struct Slot {
    socket: MioUdp,
    transfer: ReadTransfer,
    peer: SocketAddr,
    file: String,
    started: Instant,
    /// The deadline this transfer has in the heap, if any.
    scheduled: Option<Instant>,
}

fn worker(
    mut poll: Poll,
    rx: Receiver<NewTransfer>,
    clock: Clock,
    shutdown: Arc<AtomicBool>,
    stats: Arc<TftpStats>,
    limits: Limits,
    active: Active,
) {
    logbuf::buffer_this_thread();
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Option<Slot>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    // Room for the largest DATA packet the limits allow.
    let mut buf = vec![0u8; usize::from(limits.max_blksize) + 4];
    let mut rbuf = [0u8; 1500];
    let mut last_flush = std::time::Instant::now();
    // Transfers with something to do this round; reused, so a wakeup allocates nothing.
    let mut touched: Vec<usize> = Vec::new();
    while !shutdown.load(Ordering::Relaxed) {
        let now = clock.now();
        let wait = heap
            .peek()
            .map_or(Duration::from_millis(100), |Reverse((d, _))| {
                Duration::from_millis(d.saturating_since(now).as_millis())
            })
            .min(Duration::from_millis(100));
        if poll.poll(&mut events, Some(wait)).is_err() {
            continue;
        }
        let now = clock.now();
        touched.clear();
        for ev in events.iter() {
            if ev.token() == WAKER {
                while let Ok(t) = rx.try_recv() {
                    let idx = free.pop().unwrap_or_else(|| {
                        slots.push(None);
                        slots.len() - 1
                    });
                    let mut slot = Slot {
                        socket: t.socket,
                        transfer: t.transfer,
                        peer: t.peer,
                        file: t.file,
                        started: t.started,
                        scheduled: None,
                    };
                    if poll
                        .registry()
                        .register(&mut slot.socket, Token(idx), Interest::READABLE)
                        .is_err()
                    {
                        stats.active.fetch_sub(1, Ordering::Relaxed);
                        if let Ok(mut a) = active.lock() {
                            a.remove(&slot.peer);
                        }
                        free.push(idx);
                        continue;
                    }
                    slots[idx] = Some(slot);
                    touched.push(idx);
                }
                continue;
            }
            let idx = ev.token().0;
            let Some(slot) = slots.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            // Drain the socket: ACKs move the window, an ERROR ends the transfer.
            loop {
                match slot.socket.recv(&mut rbuf) {
                    Ok(n) => match Repr::parse(&rbuf[..n]) {
                        Ok(Repr::Ack { block }) => slot.transfer.handle_ack(now, block),
                        Ok(Repr::Error { code, .. }) => slot.transfer.handle_error(code),
                        _ => {}
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => break, // ICMP port unreachable and the like: timeouts decide
                }
            }
            touched.push(idx);
        }
        // Deadlines that have passed.
        while let Some(Reverse((d, idx))) = heap.peek().copied() {
            if d > now {
                break;
            }
            heap.pop();
            if let Some(slot) = slots.get_mut(idx).and_then(Option::as_mut) {
                if slot.scheduled == Some(d) {
                    slot.scheduled = None;
                    slot.transfer.handle_timeout(now);
                    touched.push(idx);
                }
            }
        }
        for &idx in &touched {
            let Some(slot) = slots.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            while let Some(n) = slot.transfer.poll_transmit(now, &mut buf) {
                // A full socket buffer loses the packet like the network would; the
                // retransmission timer recovers it.
                let _ = slot.socket.send(&buf[..n]);
            }
            let state = slot.transfer.state();
            if state != State::Running {
                let slot = slots[idx].take().expect("slot present");
                if let Ok(mut a) = active.lock() {
                    a.remove(&slot.peer);
                }
                finish(slot, state, now, &stats, &mut poll);
                free.push(idx);
                continue;
            }
            if let Some(d) = slot.transfer.poll_timeout() {
                // One heap entry per transfer: only an earlier deadline needs a new entry. When a
                // deadline moved later, the old entry pops first, finds nothing due, clears
                // `scheduled` and marks the transfer touched, which re-arms it here.
                if slot.scheduled.is_none_or(|s| d < s) {
                    slot.scheduled = Some(d);
                    heap.push(Reverse((d, idx)));
                }
            }
        }
        if last_flush.elapsed() >= logbuf::FLUSH_INTERVAL || events.is_empty() {
            logbuf::flush_thread();
            last_flush = std::time::Instant::now();
        }
    }
    logbuf::flush_thread();
}

fn finish(mut slot: Slot, state: State, now: Instant, stats: &TftpStats, poll: &mut Poll) {
    let _ = poll.registry().deregister(&mut slot.socket);
    stats.active.fetch_sub(1, Ordering::Relaxed);
    let (sent, resent) = slot.transfer.counters();
    stats.data_sent.fetch_add(sent, Ordering::Relaxed);
    stats.data_resent.fetch_add(resent, Ordering::Relaxed);
    let p = slot.transfer.params();
    let millis = now.saturating_since(slot.started).as_millis();
    match state {
        State::Done => {
            stats.completed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "bootstorm::tftp", event = "done", client = %slot.peer, file = %slot.file,
                bytes = slot.transfer.bytes_acked(), blksize = p.blksize, windowsize = p.windowsize, millis, resent, "transfer");
        }
        State::Failed(f) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "bootstorm::tftp", event = "failed", client = %slot.peer, file = %slot.file,
                reason = ?f, bytes = slot.transfer.bytes_acked(), millis, "transfer");
        }
        State::Running => {}
    }
}

/// Shared counters as JSON, for the control socket.
pub fn stats_json(s: &TftpStats) -> serde_json::Value {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    serde_json::json!({
        "started": g(&s.started), "completed": g(&s.completed), "failed": g(&s.failed),
        "refused": g(&s.refused), "active": g(&s.active), "duplicates": g(&s.duplicates),
        "data_sent": g(&s.data_sent), "data_resent": g(&s.data_resent),
    })
}
