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

use crate::files::{FileCache, FileError};
use crate::logbuf;
use anyhow::Context;
use bootstorm_net::{RecvBatch, SocketOptions, UdpSocket4};
use bootstorm_tftp::{Limits, ReadTransfer, State, WriteTransfer, negotiate};
use bootstorm_time::{Clock, Instant};
use bootstorm_wire::tftp::{DATA_HEADER_LEN as DATA_HEADER, ErrorCode, Mode, Repr};
use mio::net::UdpSocket as MioUdp;
use mio::{Events, Interest, Poll, Token, Waker};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
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

/// Finds the hardware address the DHCP server leased `addr` to.
pub type MacLookup = Arc<dyn Fn(Ipv4Addr) -> Option<Vec<u8>> + Send + Sync>;

/// The hardware address of `addr` from the kernel's neighbour table (`/proc/net/arp`): a client
/// on the local link that just sent us a request has asked for our address, which left an entry.
pub fn neighbour_mac(addr: Ipv4Addr) -> Option<Vec<u8>> {
    let table = std::fs::read_to_string("/proc/net/arp").ok()?;
    parse_arp_table(&table, addr)
}

fn parse_arp_table(table: &str, addr: Ipv4Addr) -> Option<Vec<u8>> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // IP address, HW type, Flags, HW address, Mask, Device; flags 0x0 is an incomplete entry.
        if f.len() < 4 || f[0].parse::<Ipv4Addr>().ok()? != addr || f[2] == "0x0" {
            return None;
        }
        let mac: Option<Vec<u8>> = f[3]
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).ok())
            .collect();
        mac.filter(|m| m.len() == 6 && m.iter().any(|&b| b != 0))
    })
}

/// The subdirectory name for a client, dnsmasq style.
fn client_dir(kind: UniqueRoot, ip: Ipv4Addr, mac_of: Option<&MacLookup>) -> Option<String> {
    match kind {
        UniqueRoot::Ip => Some(ip.to_string()),
        UniqueRoot::Mac => {
            let mac = mac_of.and_then(|f| f(ip)).or_else(|| neighbour_mac(ip))?;
            Some(
                mac.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join("-"),
            )
        }
    }
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
    /// Requests left unanswered because `max_transfers` were running (the client asks again).
    pub deferred: AtomicU64,
    /// Datagrams from a wrong TID (not the transfer's client) answered with ERROR 5.
    pub wrong_tid: AtomicU64,
    /// Request options left out of the OACK because their value was invalid (RFC 2347).
    pub bad_options: AtomicU64,
    /// Uploads stored, and their bytes.
    pub uploaded: AtomicU64,
    /// See `uploaded`.
    pub upload_bytes: AtomicU64,
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

/// A transfer in either direction.
enum Job {
    Read(ReadTransfer),
    Write(Upload),
}

/// An upload and the file it goes to.
struct Upload {
    t: WriteTransfer,
    file: Option<std::fs::File>,
    tmp: PathBuf,
    dest: PathBuf,
    overwrite: bool,
    committed: bool,
}

impl Upload {
    /// Writes what arrived; moves the file into place once it is whole; removes it once the
    /// transfer failed (before the ERROR leaves, so a client never sees a half file after it).
    fn store(&mut self) {
        self.write_and_commit();
        if matches!(self.t.state(), State::Failed(_)) && !self.committed && self.file.is_some() {
            self.file = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }

    fn write_and_commit(&mut self) {
        if !self.t.pending().is_empty() {
            let ok = self
                .file
                .as_mut()
                .is_some_and(|f| f.write_all(self.t.pending()).is_ok());
            self.t.clear_pending();
            if !ok {
                tracing::warn!(file = %self.tmp.display(), "cannot write an upload");
                self.t.abort(ErrorCode::DiskFull, "cannot write the file");
                return;
            }
        }
        if self.t.is_complete() && !self.committed {
            self.file = None; // closed
            let placed = if self.overwrite {
                std::fs::rename(&self.tmp, &self.dest)
            } else {
                // link() never replaces: a file created meanwhile is not overwritten.
                std::fs::hard_link(&self.tmp, &self.dest)
                    .and_then(|()| std::fs::remove_file(&self.tmp))
            };
            match placed {
                Ok(()) => self.committed = true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    self.t.abort(ErrorCode::FileExists, "file already exists")
                }
                Err(e) => {
                    tracing::warn!(file = %self.dest.display(), error = %e, "cannot store an upload");
                    self.t
                        .abort(ErrorCode::AccessViolation, "cannot store the file");
                }
            }
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl Job {
    fn handle(&mut self, now: Instant, packet: Repr<'_>) {
        match (self, packet) {
            (Job::Read(t), Repr::Ack { block }) => t.handle_ack(now, block),
            (Job::Write(u), Repr::Data { block, data }) => u.t.handle_data(now, block, data),
            (Job::Read(t), Repr::Error { code, .. }) => t.handle_error(code),
            (Job::Write(u), Repr::Error { code, .. }) => u.t.handle_error(code),
            _ => {}
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        match self {
            Job::Read(t) => t.poll_transmit(now, buf),
            Job::Write(u) => {
                u.store();
                u.t.poll_transmit(now, buf)
            }
        }
    }

    fn state(&self) -> State {
        match self {
            Job::Read(t) => t.state(),
            Job::Write(u) => u.t.state(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Job::Read(t) => t.poll_timeout(),
            Job::Write(u) => u.t.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Job::Read(t) => t.handle_timeout(now),
            Job::Write(u) => u.t.handle_timeout(now),
        }
    }
}

struct NewTransfer {
    socket: MioUdp,
    transfer: Job,
    peer: SocketAddr,
    file: String,
    started: Instant,
    /// Segment size if the socket sends windows segmented (UDP GSO); 0 if not.
    gso: u16,
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
    start_shared(s, cache, clock, shutdown, mac_of)
}

/// [`start`] with a file cache shared with another service (HTTP from the same root); files
/// over `s.max_file_size` are refused here whatever the cache allows.
pub fn start_shared(
    s: &TftpSettings,
    cache: Arc<FileCache>,
    clock: Clock,
    shutdown: Arc<AtomicBool>,
    mac_of: Option<MacLookup>,
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
        let shared = WorkerShared {
            clock,
            shutdown: shutdown.clone(),
            stats: stats.clone(),
            limits: s.limits,
            active: active.clone(),
            busy_poll: s.busy_poll,
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("tftp-worker-{id}"))
                .spawn(move || worker(poll, rx, shared))?,
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
                    mac_of,
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
    mac_of: Option<MacLookup>,
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
            mac_of,
        } = self;
        let mut batch = RecvBatch::default();
        let mut next_worker = 0usize;
        let mut port_cursor = 0u32;
        let ctx = AcceptCtx {
            s: &s,
            cache: &cache,
            clock,
            stats: &stats,
            mac_of: mac_of.as_ref(),
            upload_seq: std::cell::Cell::new(0),
        };
        while !shutdown.load(Ordering::Relaxed) {
            let n = sock.recv_batch(&mut batch).unwrap_or(0);
            for i in 0..n {
                let (datagram, info) = batch.get(i);
                // Answer from the address the request was sent to (the listen address if that was a
                // broadcast or unknown).
                let local_ip = if info.dst.is_unspecified() || info.is_broadcast() {
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
struct AcceptCtx<'a> {
    s: &'a TftpSettings,
    cache: &'a FileCache,
    clock: Clock,
    stats: &'a TftpStats,
    mac_of: Option<&'a MacLookup>,
    /// Makes temporary upload names unique.
    upload_seq: std::cell::Cell<u64>,
}

/// Opens the temporary file for an upload of `name` into `up.dir`; the ERROR to send if not.
fn open_upload(
    up: &UploadSettings,
    name: &[u8],
    seq: u64,
) -> Result<(std::fs::File, PathBuf, PathBuf), (ErrorCode, String)> {
    let shown = String::from_utf8_lossy(name).into_owned();
    let rel = bootstorm_tftp::normalize(name)
        .map_err(|e| (ErrorCode::AccessViolation, format!("{shown}: {e}")))?;
    let dir = up.dir.canonicalize().map_err(|_| {
        (
            ErrorCode::AccessViolation,
            "upload directory missing".into(),
        )
    })?;
    let dest = dir.join(&rel);
    let parent = dest.parent().unwrap_or(&dir);
    // The parent, symlinks resolved, must be inside the upload directory (no escape through a
    // linked subdirectory); the name itself must not be a symlink or anything but a file.
    let real_parent = parent.canonicalize().map_err(|_| {
        (
            ErrorCode::FileNotFound,
            format!("{shown}: no such directory"),
        )
    })?;
    if !real_parent.starts_with(&dir) || !real_parent.is_dir() {
        return Err((
            ErrorCode::AccessViolation,
            format!("{shown}: path leaves the upload directory"),
        ));
    }
    let file_name = dest.file_name().unwrap_or_default().to_owned();
    let dest = real_parent.join(&file_name);
    match std::fs::symlink_metadata(&dest) {
        Ok(m) if !m.file_type().is_file() => {
            return Err((
                ErrorCode::AccessViolation,
                format!("{shown}: not a regular file"),
            ));
        }
        Ok(_) if !up.overwrite => {
            return Err((
                ErrorCode::FileExists,
                format!("{shown}: file already exists"),
            ));
        }
        _ => {}
    }
    let tmp = real_parent.join(format!(
        ".{}.{}-{seq}.upload",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| {
            (
                ErrorCode::AccessViolation,
                format!("{shown}: cannot create: {e}"),
            )
        })?;
    Ok((file, tmp, dest))
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
        mac_of,
        ..
    } = *ctx;
    let refuse = |code: ErrorCode, msg: &str| {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "bootstorm::tftp", event = "refused", client = %peer, reason = msg);
        send_error(ip, peer, code, msg);
    };
    let (write, filename, mode, options) = match Repr::parse(datagram) {
        Ok(Repr::Request {
            write,
            filename,
            mode,
            options,
            ignored,
        }) => {
            if ignored > 0 {
                // RFC 2347: an option the server does not accept is left out of the OACK; the
                // transfer runs with the default, and the client boots.
                stats
                    .bad_options
                    .fetch_add(u64::from(ignored), Ordering::Relaxed);
                tracing::debug!(target: "bootstorm::tftp", event = "options-ignored", client = %peer, count = ignored);
            }
            (write, filename, mode, options)
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
    if stats.active.load(Ordering::Relaxed) as usize >= s.max_transfers {
        // Full: no ERROR, which would end the client's boot; silence, so it sends its request
        // again after its timeout and gets a transfer once one has ended (a storm spreads out
        // instead of failing).
        stats.deferred.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "bootstorm::tftp", event = "deferred", client = %peer, file = %name);
        return None;
    }
    let (job, params) = if write {
        let Some(up) = &s.upload else {
            refuse(ErrorCode::AccessViolation, "uploads are not enabled");
            return None;
        };
        // RFC 2349: a WRQ's tsize states the size; refuse what will not fit before any data.
        if options.tsize.is_some_and(|n| n > up.max_size) {
            refuse(
                ErrorCode::DiskFull,
                &format!("{name}: over the upload size limit"),
            );
            return None;
        }
        let seq = ctx.upload_seq.get();
        ctx.upload_seq.set(seq + 1);
        let (file, tmp, dest) = match open_upload(up, filename, seq) {
            Ok(x) => x,
            Err((code, msg)) => {
                refuse(code, &msg);
                return None;
            }
        };
        let params = negotiate(&options, options.tsize.unwrap_or(0), &s.limits);
        let t = WriteTransfer::new(params, mode == Mode::Netascii, up.max_size, &s.limits);
        let job = Job::Write(Upload {
            t,
            file: Some(file),
            tmp,
            dest,
            overwrite: up.overwrite,
            committed: false,
        });
        (job, params)
    } else {
        let data = match lookup(
            cache,
            s.max_file_size,
            s.unique_root,
            peer,
            mac_of,
            filename,
            mode,
        ) {
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
        let params = negotiate(&options, data.len() as u64, &s.limits);
        (
            Job::Read(ReadTransfer::new(data, params, &s.limits)),
            params,
        )
    };
    // Windows of full blocks leave as one segmented send each (UDP GSO) when blocks are big
    // enough that no OACK or ERROR could be mistaken for more than one segment.
    let want_gso = matches!(job, Job::Read(_)) && params.windowsize > 1 && params.blksize >= 508;
    // Not connected: a connected socket would let the kernel drop a stranger's datagram with no
    // word, where RFC 1350 4 wants it answered with ERROR 5.
    let socket = match bind_transfer_socket(ip, s.port_range, port_cursor).and_then(|u| {
        u.set_nonblocking(true)?;
        let gso = if want_gso
            && bootstorm_net::set_udp_segment(&u, params.blksize + DATA_HEADER as u16).is_ok()
        {
            params.blksize + DATA_HEADER as u16
        } else {
            0
        };
        Ok((MioUdp::from_std(u), gso))
    }) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a transfer socket");
            refuse(ErrorCode::NotDefined, "server out of sockets");
            return None;
        }
    };
    let (socket, gso) = socket;
    stats.started.fetch_add(1, Ordering::Relaxed);
    stats.active.fetch_add(1, Ordering::Relaxed);
    Some(NewTransfer {
        socket,
        gso,
        transfer: job,
        peer,
        file: name,
        started: clock.now(),
    })
}

/// A file for a read request: from the client's own subdirectory if there is one and it holds
/// the file, else from the root.
fn lookup(
    cache: &FileCache,
    limit: u64,
    unique: Option<UniqueRoot>,
    peer: SocketAddr,
    mac_of: Option<&MacLookup>,
    filename: &[u8],
    mode: Mode,
) -> Result<Arc<[u8]>, FileError> {
    let netascii = mode == Mode::Netascii;
    if let (Some(kind), SocketAddr::V4(p)) = (unique, peer)
        && let Some(dir) = client_dir(kind, *p.ip(), mac_of)
        && cache.has_dir(&dir)
    {
        // Check the name first, so a refused name is refused as such.
        bootstorm_tftp::normalize(filename).map_err(FileError::BadName)?;
        let mut own = dir.into_bytes();
        own.push(b'/');
        own.extend_from_slice(filename);
        match cache.get_within(&own, netascii, limit) {
            Err(FileError::NotFound) => {}
            other => return other,
        }
    }
    cache.get_within(filename, netascii, limit)
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

struct Slot {
    socket: MioUdp,
    transfer: Job,
    /// See [`NewTransfer::gso`].
    gso: u16,
    peer: SocketAddr,
    file: String,
    started: Instant,
    /// The deadline this transfer has in the heap, if any.
    scheduled: Option<Instant>,
}

/// What a TFTP worker thread shares with the others.
struct WorkerShared {
    clock: Clock,
    shutdown: Arc<AtomicBool>,
    stats: Arc<TftpStats>,
    limits: Limits,
    active: Active,
    busy_poll: Duration,
}

fn worker(mut poll: Poll, rx: Receiver<NewTransfer>, shared: WorkerShared) {
    let WorkerShared {
        clock,
        shutdown,
        stats,
        limits,
        active,
        busy_poll,
    } = shared;
    logbuf::buffer_this_thread();
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Option<Slot>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    // Room for a segmented send of full blocks plus one packet more (the largest the limits
    // allow), so a window is written in place packet after packet.
    let mut buf = vec![0u8; bootstorm_net::GSO_MAX_BYTES + usize::from(limits.max_blksize) + 4];
    // Room for the largest DATA packet an upload may send.
    let mut rbuf = vec![0u8; usize::from(limits.max_blksize) + 4];
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
        // Transfers running: their clients' next ACKs are probably microseconds away. Poll for
        // them a while (busy_poll) before sleeping, so a lockstep transfer pays no wake-up per
        // block; never past the next deadline.
        let running = slots.len() - free.len();
        let got = running > 0
            && !busy_poll.is_zero()
            && busy_wait(&mut poll, &mut events, busy_poll.min(wait));
        if !got && poll.poll(&mut events, Some(wait)).is_err() {
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
                        gso: t.gso,
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
                match slot.socket.recv_from(&mut rbuf) {
                    Ok((n, from)) if from != slot.peer => {
                        // RFC 1350 4: a packet from a wrong TID gets ERROR 5, "without
                        // disturbing the source of the transfer". An ERROR is never answered.
                        let is_error = rbuf[..n].starts_with(&[0, 5]);
                        if !is_error {
                            stats.wrong_tid.fetch_add(1, Ordering::Relaxed);
                            wrong_tid(&slot.socket, from);
                        }
                    }
                    Ok((n, _)) => {
                        if let Ok(p) = Repr::parse(&rbuf[..n]) {
                            slot.transfer.handle(now, p);
                        }
                    }
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
            if let Some(slot) = slots.get_mut(idx).and_then(Option::as_mut)
                && slot.scheduled == Some(d)
            {
                slot.scheduled = None;
                slot.transfer.handle_timeout(now);
                touched.push(idx);
            }
        }
        for &idx in &touched {
            let Some(slot) = slots.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            transmit(slot, now, &mut buf);
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

/// Sends everything the transfer has due. With GSO on, consecutive full-size packets are written
/// one after another into `buf` and leave in one send (split by the kernel); any shorter packet
/// (the last block, an OACK, an ERROR) ends the run. A full socket buffer loses packets like the
/// network would, and the retransmission timer recovers them.
fn transmit(slot: &mut Slot, now: Instant, buf: &mut [u8]) {
    let seg = usize::from(slot.gso);
    let (mut len, mut count) = (0usize, 0usize);
    while let Some(n) = slot.transfer.poll_transmit(now, &mut buf[len..]) {
        if seg == 0 {
            let _ = slot.socket.send_to(&buf[..n], slot.peer);
            continue;
        }
        len += n;
        count += 1;
        if n != seg
            || len + seg > bootstorm_net::GSO_MAX_BYTES
            || count == bootstorm_net::GSO_MAX_SEGMENTS
        {
            send_segmented(slot, &buf[..len]);
            (len, count) = (0, 0);
        }
    }
    if len > 0 {
        send_segmented(slot, &buf[..len]);
    }
}

/// One segmented send; if the device cannot segment (EIO: no checksum offload), GSO goes off
/// for this transfer and the packets leave one by one.
fn send_segmented(slot: &mut Slot, bytes: &[u8]) {
    let seg = usize::from(slot.gso);
    match slot.socket.send_to(bytes, slot.peer) {
        Err(e) if bytes.len() > seg && bootstorm_net::gso_unsupported(&e) => {
            tracing::debug!(client = %slot.peer, "UDP segmentation refused; sending per datagram");
            slot.gso = 0;
            let _ = bootstorm_net::set_udp_segment(&slot.socket, 0);
            for p in bytes.chunks(seg) {
                let _ = slot.socket.send_to(p, slot.peer);
            }
        }
        _ => {}
    }
}

/// ERROR 5 to a stranger, from the transfer's own port (its TID).
fn wrong_tid(socket: &MioUdp, to: SocketAddr) {
    let mut buf = [0u8; 64];
    if let Ok(n) = (Repr::Error {
        code: ErrorCode::UnknownTid,
        message: b"unknown transfer ID",
    })
    .emit(&mut buf)
    {
        let _ = socket.send_to(&buf[..n], to);
    }
}

fn finish(mut slot: Slot, state: State, now: Instant, stats: &TftpStats, poll: &mut Poll) {
    let _ = poll.registry().deregister(&mut slot.socket);
    stats.active.fetch_sub(1, Ordering::Relaxed);
    let millis = now.saturating_since(slot.started).as_millis();
    let (peer, file) = (&slot.peer, &slot.file);
    match (&slot.transfer, state) {
        (Job::Read(t), _) => {
            let (sent, resent) = t.counters();
            stats.data_sent.fetch_add(sent, Ordering::Relaxed);
            stats.data_resent.fetch_add(resent, Ordering::Relaxed);
            let p = t.params();
            if let State::Failed(f) = state {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(target: "bootstorm::tftp", event = "failed", client = %peer, file = %file,
                    reason = ?f, bytes = t.bytes_acked(), millis, "transfer");
            } else {
                stats.completed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(target: "bootstorm::tftp", event = "done", client = %peer, file = %file,
                    bytes = t.bytes_acked(), blksize = p.blksize, windowsize = p.windowsize, millis, resent, "transfer");
            }
        }
        (Job::Write(u), _) if u.committed => {
            // Stored: a client error while dallying changes nothing.
            stats.completed.fetch_add(1, Ordering::Relaxed);
            stats.uploaded.fetch_add(1, Ordering::Relaxed);
            stats.upload_bytes.fetch_add(u.t.size(), Ordering::Relaxed);
            let p = u.t.params();
            tracing::info!(target: "bootstorm::tftp", event = "uploaded", client = %peer, file = %file,
                path = %u.dest.display(), bytes = u.t.size(), blksize = p.blksize, windowsize = p.windowsize, millis, "transfer");
        }
        (Job::Write(u), _) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "bootstorm::tftp", event = "upload-failed", client = %peer, file = %file,
                reason = ?state, bytes = u.t.size(), millis, "transfer");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbour_table_lines_give_macs() {
        let table = "IP address       HW type     Flags       HW address            Mask     Device\n\
            198.18.1.7       0x1         0x2         52:54:00:12:34:56     *        veth-s\n\
            198.18.1.8       0x1         0x0         00:00:00:00:00:00     *        veth-s\n";
        assert_eq!(
            parse_arp_table(table, Ipv4Addr::new(198, 18, 1, 7)),
            Some(vec![0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(
            parse_arp_table(table, Ipv4Addr::new(198, 18, 1, 8)),
            None,
            "incomplete"
        );
        assert_eq!(parse_arp_table(table, Ipv4Addr::new(198, 18, 1, 9)), None);
        assert_eq!(parse_arp_table("", Ipv4Addr::new(198, 18, 1, 7)), None);
    }

    #[test]
    fn client_directories_are_named_like_dnsmasq() {
        let ip = Ipv4Addr::new(198, 18, 1, 7);
        assert_eq!(client_dir(UniqueRoot::Ip, ip, None).unwrap(), "198.18.1.7");
        let f: MacLookup = Arc::new(|_| Some(vec![0x52, 0x54, 0, 0xab, 0x04, 0xff]));
        assert_eq!(
            client_dir(UniqueRoot::Mac, ip, Some(&f)).unwrap(),
            "52-54-00-ab-04-ff"
        );
    }
}
