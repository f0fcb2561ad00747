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
use bootstorm_tftp::Limits;
use bootstorm_tftp::State;
use bootstorm_tftp::server::{
    Accepted, Config, Counters, Finished, Host, Refusal, Server, Source, TransferId, UploadSink,
};
use bootstorm_time::{Clock, Instant};
use bootstorm_wire::tftp::{DATA_HEADER_LEN as DATA_HEADER, ErrorCode, Mode, Repr};
use mio::net::UdpSocket as MioUdp;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
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
    start_shared(s, cache, clock, shutdown, mac_of)
}

/// A request datagram passed from the listener to the worker that owns its client.
struct Request {
    datagram: Vec<u8>,
    peer: SocketAddrV4,
    local: Ipv4Addr,
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
        let host = FileHost {
            cache: cache.clone(),
            max_file_size: s.max_file_size,
            unique_root: s.unique_root,
            mac_of: mac_of.clone(),
            upload: s.upload.clone(),
            upload_seq: upload_seq.clone(),
        };
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

/// The file source and upload storage the TFTP core asks for.
struct FileHost {
    cache: Arc<FileCache>,
    max_file_size: u64,
    unique_root: Option<UniqueRoot>,
    mac_of: Option<MacLookup>,
    upload: Option<UploadSettings>,
    /// Makes temporary upload names unique across workers.
    upload_seq: Arc<AtomicU64>,
}

impl Host for FileHost {
    fn read_file(
        &mut self,
        client: SocketAddrV4,
        name: &[u8],
        netascii: bool,
    ) -> Result<Arc<[u8]>, Refusal> {
        let mode = if netascii {
            Mode::Netascii
        } else {
            Mode::Octet
        };
        lookup(
            &self.cache,
            self.max_file_size,
            self.unique_root,
            SocketAddr::V4(client),
            self.mac_of.as_ref(),
            name,
            mode,
        )
        .map_err(|e| {
            let code = match e {
                FileError::NotFound | FileError::NotAFile => ErrorCode::FileNotFound,
                FileError::TooLarge(_) => ErrorCode::NotDefined,
                FileError::BadName(_) | FileError::OutsideRoot => ErrorCode::AccessViolation,
            };
            Refusal::new(code, format!("{}: {e}", String::from_utf8_lossy(name)))
        })
    }

    fn open_upload(
        &mut self,
        _client: SocketAddrV4,
        name: &[u8],
        size: Option<u64>,
    ) -> Result<(Box<dyn UploadSink>, u64), Refusal> {
        let Some(up) = &self.upload else {
            return Err(Refusal::new(
                ErrorCode::AccessViolation,
                "uploads are not enabled",
            ));
        };
        let shown = String::from_utf8_lossy(name);
        // RFC 2349: a WRQ's tsize states the size; refuse what will not fit before any data.
        if size.is_some_and(|n| n > up.max_size) {
            return Err(Refusal::new(
                ErrorCode::DiskFull,
                format!("{shown}: over the upload size limit"),
            ));
        }
        let seq = self.upload_seq.fetch_add(1, Ordering::Relaxed);
        let (file, tmp, dest) =
            open_upload(up, name, seq).map_err(|(code, msg)| Refusal::new(code, msg))?;
        let sink = FileSink {
            file: Some(file),
            tmp,
            dest,
            overwrite: up.overwrite,
            committed: false,
        };
        Ok((Box::new(sink), up.max_size))
    }
}

/// An upload's temporary file and where it goes once whole.
struct FileSink {
    file: Option<std::fs::File>,
    tmp: PathBuf,
    dest: PathBuf,
    overwrite: bool,
    committed: bool,
}

impl UploadSink for FileSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        let ok = self
            .file
            .as_mut()
            .is_some_and(|f| f.write_all(bytes).is_ok());
        if !ok {
            tracing::warn!(file = %self.tmp.display(), "cannot write an upload");
            return Err(Refusal::new(ErrorCode::DiskFull, "cannot write the file"));
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Refusal> {
        self.file = None; // closed
        let placed = if self.overwrite {
            std::fs::rename(&self.tmp, &self.dest)
        } else {
            // link() never replaces: a file created meanwhile is not overwritten.
            std::fs::hard_link(&self.tmp, &self.dest).and_then(|()| std::fs::remove_file(&self.tmp))
        };
        match placed {
            Ok(()) => {
                self.committed = true;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Refusal::new(ErrorCode::FileExists, "file already exists"))
            }
            Err(e) => {
                tracing::warn!(file = %self.dest.display(), error = %e, "cannot store an upload");
                Err(Refusal::new(
                    ErrorCode::AccessViolation,
                    "cannot store the file",
                ))
            }
        }
    }

    fn discard(&mut self) {
        self.file = None;
        let _ = std::fs::remove_file(&self.tmp);
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
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
                log_finished(&f, now);
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
        // Windows of full blocks leave as one segmented send each (UDP GSO) when blocks are big
        // enough that no OACK or ERROR could be mistaken for more than one segment.
        let want_gso = read && params.windowsize > 1 && params.blksize >= 508;
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
        let Some(slot) = slots.get_mut(&id) else {
            continue;
        };
        let seg = usize::from(slot.gso);
        let joins = run == Some((id, t.to)) && seg > 0 && t.len == seg;
        if !joins {
            // Another transfer or packet kind: what was gathered goes first.
            if let Some((rid, rto)) = run.take()
                && let Some(rs) = slots.get_mut(&rid)
            {
                send_segmented(rs, rto, &buf[..len]);
            }
            if len > 0 {
                buf.copy_within(len..len + t.len, 0);
            }
            (len, count) = (0, 0);
            let Some(slot) = slots.get_mut(&id) else {
                continue;
            };
            if seg == 0 || t.len != seg {
                // Not part of a segmented run: on its own.
                let _ = slot.socket.send_to(&buf[..t.len], SocketAddr::V4(t.to));
                continue;
            }
            run = Some((id, t.to));
        }
        len += t.len;
        count += 1;
        if len + seg > bootstorm_net::GSO_MAX_BYTES || count == bootstorm_net::GSO_MAX_SEGMENTS {
            if let Some(rs) = slots.get_mut(&id) {
                send_segmented(rs, t.to, &buf[..len]);
            }
            run = None;
            (len, count) = (0, 0);
        }
    }
    if let Some((rid, rto)) = run
        && len > 0
        && let Some(rs) = slots.get_mut(&rid)
    {
        send_segmented(rs, rto, &buf[..len]);
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

fn log_finished(f: &Finished, now: Instant) {
    let millis = now.saturating_since(f.started).as_millis();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: a whole PXE flow through the in-memory packet queues, in milliseconds: DORA
    /// with the DHCP worker the daemon runs (its boot rule for UEFI x64 names `boot.efi`), then
    /// that file over TFTP from the server core the daemon's TFTP workers run, with the
    /// daemon's file source over a real root: windowsize 8, every 9th datagram after the
    /// request lost in each direction, on made-up time (the retransmission timeouts pass in no
    /// real time at all).
    #[test]
    fn a_pxe_flow_through_memory_queues_with_loss_both_ways() {
        use crate::dhcp_worker::tests::{Net, SERVER, message_with};
        use bootstorm_io::mem::{self, Side};
        use bootstorm_io::{RxQueue, TxMeta, TxQueue};
        use bootstorm_wire::dhcp::MessageType;
        let root = std::env::temp_dir().join(format!("bs-pxe-flow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let image: Vec<u8> = (0..300_000u32).map(|i| (i * 31 + i / 977) as u8).collect();
        std::fs::write(root.join("boot.efi"), &image).unwrap();
        let text = format!(
            r#"
[[subnet]]
network = "198.18.0.0/16"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.1.254"]

[[boot]]
name = "uefi-x64"
match = {{ arch = [7] }}
file = "boot.efi"

[tftp]
root = "{}"
"#,
            root.display()
        );
        let settings = crate::config::parse(std::path::Path::new("pxe.toml"), &text).unwrap();
        let dhcp = Arc::new(bootstorm_dhcp::Server::new(settings.dhcp.clone()).unwrap());

        // DHCP: DISCOVER and REQUEST as EDK2 sends them (arch 7, PXEClient).
        let mut net = Net::start(2, None, dhcp);
        let pxe: [(u8, &[u8]); 2] = [(93, &[0, 7]), (60, b"PXEClient:Arch:00007:UNDI:003016")];
        net.send(&[message_with(MessageType::Discover, 1, None, &pxe)]);
        let offer = net.replies(1).remove(0);
        assert_eq!(
            (offer.mt, offer.file.as_str()),
            (MessageType::Offer, "boot.efi")
        );
        net.send(&[message_with(
            MessageType::Request,
            1,
            Some(offer.yiaddr),
            &pxe,
        )]);
        let ack = net.replies(1).remove(0);
        assert_eq!(ack.mt, MessageType::Ack);
        assert_eq!((ack.file.as_str(), ack.siaddr), ("boot.efi", SERVER));
        net.stop();

        // TFTP: the machine at its leased address fetches the file from siaddr.
        let (mut server_side, mut client_side) = mem::wire(
            Side {
                addr: SERVER,
                port: 69,
                queues: 1,
                ifindex: 7,
                mac: [2, 0, 0, 0, 0, 1],
            },
            Side {
                addr: ack.yiaddr,
                port: 3001,
                queues: 1,
                ifindex: 3,
                mac: [0x52, 0x54, 0, 0, 0, 1],
            },
        );
        let (mut srx, mut stx) = server_side.remove(0);
        let (mut crx, mut ctx) = client_side.remove(0);
        let lossy = || {
            let mut n = 0u64;
            Box::new(move |_: &[u8], _: &bootstorm_io::RxMeta| {
                n += 1;
                n == 1 || !n.is_multiple_of(9)
            }) as bootstorm_io::mem::Filter
        };
        stx.set_filter(lossy());
        ctx.set_filter(lossy());
        let t = settings.tftp.clone().unwrap();
        let mut core = Server::new(
            Config {
                limits: t.limits,
                max_transfers: 10,
            },
            Arc::new(Counters::default()),
        );
        let mut host = FileHost {
            cache: Arc::new(FileCache::new(&t.root, t.max_file_size).unwrap()),
            max_file_size: t.max_file_size,
            unique_root: None,
            mac_of: None,
            upload: None,
            upload_seq: Arc::default(),
        };
        let mut rrq = vec![0, 1];
        rrq.extend_from_slice(b"boot.efi\x00octet\x00blksize\x001468\x00windowsize\x008\x00");
        let to_server = |port: u16| TxMeta::to(SocketAddrV4::new(ack.siaddr, port));
        ctx.push(&rrq, &to_server(69));
        ctx.flush().unwrap();
        let mut now = Instant::from_millis(1_000);
        let (mut got, mut expected, mut in_window) = (Vec::new(), 1u16, 0u16);
        let mut buf = vec![0u8; 2048];
        let mut finished = None;
        for _ in 0..200_000 {
            let mut moved = false;
            // The server side: requests to port 69, the rest to a transfer's port (40000+id).
            let n = srx.recv(Duration::ZERO).unwrap();
            for i in 0..n {
                let (d, m) = srx.get(i);
                moved = true;
                if m.dst.port() == 69 {
                    let a = core.handle_request(now, m.src, *m.dst.ip(), d, &mut host);
                    assert!(matches!(a, Accepted::Transfer { read: true, .. }), "{a:?}");
                } else {
                    let id = TransferId(u32::from(m.dst.port() - 40_000));
                    core.handle_datagram(now, id, m.src, d);
                }
            }
            while let Some(tx) = core.poll_transmit(now, &mut buf) {
                let Source::Transfer(id) = tx.from else {
                    panic!("a refusal: {:?}", Repr::parse(&buf[..tx.len]))
                };
                let meta = TxMeta {
                    sport: 40_000 + id.0 as u16,
                    ..TxMeta::to(tx.to)
                };
                stx.push(&buf[..tx.len], &meta);
            }
            stx.flush().unwrap();
            if let Some(f) = core.poll_event() {
                finished = Some(f);
                break;
            }
            // The client: ACK the end of each window, or the last block in order after a gap.
            let n = crx.recv(Duration::ZERO).unwrap();
            for i in 0..n {
                let (d, m) = crx.get(i);
                let tid_port = m.src.port();
                let block = match Repr::parse(d).unwrap() {
                    Repr::OAck { .. } => Some(0),
                    Repr::Data { block, data } if block == expected => {
                        got.extend_from_slice(data);
                        in_window += 1;
                        expected = expected.wrapping_add(1);
                        (data.len() < 1468 || in_window == 8).then(|| {
                            in_window = 0;
                            block
                        })
                    }
                    Repr::Data { .. } => {
                        in_window = 0;
                        Some(expected.wrapping_sub(1))
                    }
                    other => panic!("{other:?}"),
                };
                if let Some(b) = block {
                    let mut a = vec![0, 4];
                    a.extend_from_slice(&b.to_be_bytes());
                    ctx.push(&a, &to_server(tid_port));
                    moved = true;
                }
            }
            ctx.flush().unwrap();
            if !moved {
                // Nothing in flight either way: time jumps to the server's next deadline.
                now = core.poll_timeout().expect("the transfer has a deadline");
                core.handle_timeout(now);
            }
        }
        let f = finished.expect("the transfer ended");
        assert_eq!(f.state, State::Done, "{f:?}");
        assert!(got == image, "the boot file arrived byte-exact");
        assert!(
            stx.lost > 5 && ctx.lost > 2,
            "lost {} / {}",
            stx.lost,
            ctx.lost
        );
        assert!(f.resent > 0);
        let simulated = now.saturating_since(Instant::from_millis(1_000));
        assert!(
            simulated.as_millis() >= 1_000,
            "timeouts passed: {simulated:?}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

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
