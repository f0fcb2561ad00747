//! The iSCSI service: a target on kernel TCP (port 3260 by default) driving one
//! [`bootstorm_iscsi::Connection`] per connection, each on a thread of its own (its socket
//! non-blocking under a `mio::Poll`), with the block I/O done by the I/O threads of
//! [`bootstorm_blockio`] (io_uring with registered buffers, one per core; pread where io_uring
//! is unavailable, logged): a connection reads on while its commands' I/Os are in flight, as
//! many as the initiator's command window holds.
//!
//! A target is either a plain disk (its file or block device, LUN 0) or diskless: its file is
//! a golden image, opened read-only and shared, and each machine that logs in gets its own
//! copy-on-write overlay of it ([`crate::overlay`]), found by its initiator IQN or by the MAC
//! address the DHCP server leased its address to. The overlay is opened when the login
//! succeeds; if it cannot be (another golden image, a full disk, an unknown MAC) the login's
//! answer is not sent and the connection is closed, with the reason in the log.
//!
//! What a PDU or a login does is the core's business and does not change with the transport.

use crate::boots::Step;
use crate::overlay::{Overlay, Overlays, mac_key};
use crate::tftpd::{BootNote, MacLookup, neighbour_mac};
use bootstorm_blockio::{Engine, Mailbox, Op, Segment, Source, Submitter};
use bootstorm_iscsi::scsi::fnv64;
use bootstorm_iscsi::{Config, Connection, Disk, Event, IoKind, IoResult, Target};
use bootstorm_wire::iscsi::{BHS_LEN, Bhs};
use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use bootstorm_iscsi::Chap;

/// Block size of the units served (a file's size is a multiple of it, else its tail is not
/// served).
pub const BLOCK_SIZE: u32 = 512;
/// Connections served at once; past this a new one is closed at once (a storm of diskless
/// machines is a few thousand; each connection holds a thread and a command's buffers).
pub const MAX_CONNECTIONS: usize = 4096;
/// How often blocked reads and accepts look at the shutdown flag.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// One target of `[[iscsi.target]]` or `--iscsi-target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSettings {
    /// Its IQN.
    pub name: String,
    /// The backing file or block device of LUN 0.
    pub file: PathBuf,
    /// Writes refused.
    pub read_only: bool,
    /// CHAP required.
    pub chap: Option<Chap>,
    /// Initiator IQNs allowed (empty: any).
    pub initiators: Vec<String>,
    /// Diskless: `file` is a golden image, each machine writes to its own overlay.
    pub overlays: Option<OverlaySettings>,
    /// O_DIRECT (default: for block devices).
    pub direct: Option<bool>,
}

/// Where a diskless target keeps its machines' overlays, and what names a machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlaySettings {
    pub dir: PathBuf,
    pub key: OverlayKey,
}

/// What names a machine's overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlayKey {
    /// Its initiator IQN (as iPXE takes it from DHCP option 203).
    Initiator,
    /// The MAC address the DHCP server leased the connection's source address to (else the
    /// kernel's neighbour table).
    Mac,
}

/// `[iscsi]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IscsiSettings {
    /// Where to listen.
    pub listen: SocketAddrV4,
    /// The targets.
    pub targets: Vec<TargetSettings>,
    /// CHAP for discovery sessions.
    pub discovery_chap: Option<Chap>,
    /// How block I/O is done.
    pub io: IoEngine,
    /// Serve what the page cache holds on the connection's thread (RWF_NOWAIT) first.
    pub inline: bool,
    /// A connection not logged in after this is closed: a thousand idle connections must not
    /// hold the connection slots real machines need.
    pub login_timeout: Duration,
}

/// Default `[iscsi] login_timeout`.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// `[iscsi] io`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoEngine {
    /// io_uring, else (logged) pread.
    #[default]
    Uring,
    /// pread/pwrite on the I/O threads.
    Pread,
}

/// Default listen address.
pub const DEFAULT_LISTEN: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 3260);

/// Upper bounds of [`IscsiStats::io_us`], in microseconds (10 us to 1 s).
pub const IO_US_BOUNDS: [u64; 14] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 250_000, 1_000_000,
];

/// Microseconds of each SCSI command's I/O ([`IO_US_BOUNDS`]).
#[derive(Debug)]
pub struct IoLatency(pub bootstorm_time::Buckets);

impl Default for IoLatency {
    fn default() -> IoLatency {
        IoLatency(bootstorm_time::Buckets::new(&IO_US_BOUNDS))
    }
}

/// Counters of the service.
#[derive(Debug, Default)]
pub struct IscsiStats {
    /// Per SCSI command with I/O (read, write, flush, unmap, extent query): received to
    /// completed, whether served from the page cache or on the I/O threads.
    pub io_us: IoLatency,
    pub connections: AtomicU64,
    pub active: AtomicU64,
    pub refused: AtomicU64,
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub logouts: AtomicU64,
    pub read_bytes: AtomicU64,
    pub written_bytes: AtomicU64,
    pub io_errors: AtomicU64,
    pub overlay_errors: AtomicU64,
    /// I/Os the page cache served on the connection's thread without waiting.
    pub inline_ios: AtomicU64,
    /// I/Os handed to the I/O threads.
    pub ring_ios: AtomicU64,
    /// Sessions closed because their initiator logged in again with the same ISID.
    pub reinstated: AtomicU64,
    /// Connections closed for not logging in within `login_timeout`.
    pub login_timeouts: AtomicU64,
}

/// The counters as `bootstorm stats` shows them.
pub fn stats_json(s: &IscsiStats) -> serde_json::Value {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    serde_json::json!({
        "connections": g(&s.connections), "active": g(&s.active), "refused": g(&s.refused),
        "logins": g(&s.logins), "login_failures": g(&s.login_failures),
        "protocol_errors": g(&s.protocol_errors), "logouts": g(&s.logouts),
        "read_bytes": g(&s.read_bytes), "written_bytes": g(&s.written_bytes),
        "io_errors": g(&s.io_errors), "overlay_errors": g(&s.overlay_errors),
        "inline_ios": g(&s.inline_ios), "ring_ios": g(&s.ring_ios),
        "reinstated": g(&s.reinstated), "login_timeouts": g(&s.login_timeouts),
        "io_seconds": crate::metrics::histogram_json(&s.io_us.0.snapshot(), 1e-6),
    })
}

/// The running service.
pub struct IscsiRunning {
    thread: Option<JoinHandle<()>>,
    shutdown: Arc<AtomicBool>,
    local: SocketAddrV4,
    stats: Arc<IscsiStats>,
}

impl IscsiRunning {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<IscsiStats> {
        &self.stats
    }

    /// Stops accepting and joins the acceptor (connections end at their next read).
    pub fn stop(mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The backing store of a target's LUN 0.
enum Unit {
    File(Arc<Source>),
    Diskless { overlays: Overlays, key: OverlayKey },
}

/// The backing stores, by target index, and how to find a machine's MAC.
struct Store {
    units: Vec<Unit>,
    mac_of: Option<MacLookup>,
    /// Tells the boot-session registry of logins and first reads.
    note: Option<BootNote>,
    engine: Engine,
    inline: bool,
    login_timeout: Duration,
    /// Normal sessions by (initiator, ISID, target): a login with the same three reinstates
    /// the session (RFC 7143 6.3.5): the old connection is told to close.
    sessions: Mutex<HashMap<SessionKey, LiveSession>>,
}

type SessionKey = (String, [u8; 6], String);

/// A logged-in connection, as the registry knows it.
struct LiveSession {
    conn: u64,
    close: Arc<AtomicBool>,
    mailbox: Arc<Mailbox>,
}

/// Opens the backing files and starts listening. `mac_of` names the machine at an address
/// (the DHCP server's boot-session registry) for overlays keyed by MAC.
pub fn start(
    s: &IscsiSettings,
    shutdown: Arc<AtomicBool>,
    mac_of: Option<MacLookup>,
    note: Option<BootNote>,
) -> anyhow::Result<IscsiRunning> {
    use anyhow::Context;
    let mut targets = Vec::new();
    let mut units = Vec::new();
    for t in &s.targets {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!t.read_only && t.overlays.is_none())
            .open(&t.file)
            .with_context(|| format!("iSCSI target {}: {}", t.name, t.file.display()))?;
        let size = device_size(&file)?;
        let blocks = size / u64::from(BLOCK_SIZE);
        anyhow::ensure!(
            blocks > 0,
            "iSCSI target {}: {} is smaller than one {BLOCK_SIZE}-byte block",
            t.name,
            t.file.display()
        );
        let serial = format!("{:08x}", fnv64(t.name.as_bytes()) as u32);
        targets.push(Target {
            name: t.name.clone(),
            luns: vec![(
                0,
                Disk {
                    blocks,
                    block_size: BLOCK_SIZE,
                    read_only: t.read_only,
                    serial,
                    // UNMAP where a range can become a hole that reads as zeros: a plain,
                    // writable file or device. Not a diskless target: an overlay's chunk
                    // handed back would read as the golden image, which an initiator told
                    // "deallocated" (GET LBA STATUS) may skip copying.
                    unmap: if t.read_only || t.overlays.is_some() {
                        bootstorm_iscsi::scsi::Unmap::No
                    } else {
                        bootstorm_iscsi::scsi::Unmap::Zeroes
                    },
                },
            )],
            chap: t.chap.clone(),
            initiators: t.initiators.clone(),
        });
        // O_DIRECT for block devices (the initiator caches; a second cache here is waste),
        // unless the config says otherwise; never for a golden image, which many machines read
        // and the page cache should hold once.
        let direct = t.overlays.is_none()
            && t.direct.unwrap_or_else(|| {
                use std::os::unix::fs::FileTypeExt;
                file.metadata()
                    .is_ok_and(|m| m.file_type().is_block_device())
            });
        let (src, note) = Source::open(file, &t.file, !t.read_only && t.overlays.is_none(), direct);
        if let Some(why) = note {
            tracing::warn!(target = %t.name, file = %t.file.display(), "{why}");
        }
        let direct = src.is_direct();
        units.push(match &t.overlays {
            None => Unit::File(Arc::new(src)),
            Some(o) => Unit::Diskless {
                overlays: Overlays::new(
                    o.dir.clone(),
                    Arc::new(src),
                    blocks * u64::from(BLOCK_SIZE),
                )
                .with_context(|| format!("iSCSI target {}: {}", t.name, t.file.display()))?,
                key: o.key,
            },
        });
        tracing::info!(target = %t.name, file = %t.file.display(), blocks, read_only = t.read_only,
            chap = t.chap.is_some(), direct,
            overlays = t.overlays.as_ref().map(|o| o.dir.display().to_string()).unwrap_or_default(),
            "iSCSI target");
    }
    let listener =
        TcpListener::bind(s.listen).with_context(|| format!("binding iSCSI {}", s.listen))?;
    let local = match listener.local_addr()? {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => anyhow::bail!("iSCSI listens on IPv4"),
    };
    listener.set_nonblocking(true)?;
    let portal = if s.listen.ip().is_unspecified() {
        // SendTargets names an address the initiator can reach: the one it connected to is
        // filled in per connection below.
        String::new()
    } else {
        local.to_string()
    };
    let cfg = Config {
        targets,
        portal,
        discovery_chap: s.discovery_chap.clone(),
        limits: bootstorm_iscsi::Limits::default(),
    };
    let engine = Engine::start(bootstorm_blockio::Settings {
        force_pread: s.io == IoEngine::Pread,
        ..bootstorm_blockio::Settings::default()
    })
    .context("starting the iSCSI block I/O threads")?;
    match engine.why_pread() {
        Some(why) if s.io != IoEngine::Pread => {
            tracing::warn!(reason = why, "iSCSI block I/O: pread fallback")
        }
        _ => tracing::info!(engine = engine.kind(), inline = s.inline, "iSCSI block I/O"),
    }
    let store = Arc::new(Store {
        units,
        mac_of,
        note,
        engine,
        inline: s.inline,
        login_timeout: s.login_timeout,
        sessions: Mutex::new(HashMap::new()),
    });
    let stats = Arc::new(IscsiStats::default());
    let (flag, stats2) = (shutdown.clone(), stats.clone());
    let thread = std::thread::Builder::new()
        .name("iscsi-accept".into())
        .spawn(move || accept_loop(listener, cfg, store, flag, stats2))?;
    tracing::info!(listen = %local, targets = s.targets.len(), "serving iSCSI");
    Ok(IscsiRunning {
        thread: Some(thread),
        shutdown,
        local,
        stats,
    })
}

/// The size of a regular file or a block device.
fn device_size(f: &File) -> std::io::Result<u64> {
    use std::io::Seek;
    let mut f = f;
    let end = f.seek(std::io::SeekFrom::End(0))?;
    f.seek(std::io::SeekFrom::Start(0))?;
    Ok(end)
}

fn accept_loop(
    listener: TcpListener,
    cfg: Config,
    store: Arc<Store>,
    shutdown: Arc<AtomicBool>,
    stats: Arc<IscsiStats>,
) {
    let mut tsih: u16 = 0;
    let mut conn_no: u64 = 0;
    // Configs per local address (the portal SendTargets names), built once per address.
    let mut configs: Vec<(SocketAddrV4, Arc<Config>)> = Vec::new();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    while !shutdown.load(Ordering::Relaxed) {
        let (sock, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                threads.retain(|t| !t.is_finished());
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "iSCSI accept failed");
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
        };
        threads.retain(|t| !t.is_finished());
        stats.connections.fetch_add(1, Ordering::Relaxed);
        if threads.len() >= MAX_CONNECTIONS {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %peer, "iSCSI connection refused: too many connections");
            continue;
        }
        let local = match sock.local_addr() {
            Ok(std::net::SocketAddr::V4(a)) => a,
            _ => continue,
        };
        let cfg = match configs.iter().find(|(a, _)| *a == local) {
            Some((_, c)) => c.clone(),
            None => {
                let mut c = cfg.clone();
                if c.portal.is_empty() {
                    c.portal = local.to_string();
                }
                let c = Arc::new(c);
                configs.push((local, c.clone()));
                c
            }
        };
        tsih = tsih.wrapping_add(1).max(1);
        let seed = seed(peer, tsih);
        let conn = Connection::new(cfg, tsih, seed);
        let (store, stats, flag) = (store.clone(), stats.clone(), shutdown.clone());
        conn_no += 1;
        let key = conn_no as usize;
        match std::thread::Builder::new()
            .name("iscsi-conn".into())
            .spawn(move || {
                if let Err(e) = serve_connection(sock, conn, &store, &stats, &flag, key) {
                    tracing::debug!(error = %e, "iSCSI connection ended");
                }
            }) {
            Ok(t) => threads.push(t),
            Err(e) => tracing::warn!(error = %e, "iSCSI: no thread for a connection"),
        }
    }
    for t in threads {
        let _ = t.join();
    }
}

/// Random bytes for a connection's CHAP challenges: the kernel's, mixed with the peer.
fn seed(peer: std::net::SocketAddr, tsih: u16) -> [u8; 16] {
    let mut s = [0u8; 16];
    if let Ok(mut f) = File::open("/dev/urandom") {
        let _ = f.read_exact(&mut s);
    }
    let extra = fnv64(format!("{peer}{tsih}{:?}", std::time::SystemTime::now()).as_bytes());
    for (i, b) in extra.to_be_bytes().iter().enumerate() {
        s[i] ^= b;
    }
    s
}

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 256 << 10;
/// Past this much unsent output, no more PDUs are taken in until the initiator reads.
const OUTPUT_LIMIT: usize = 8 << 20;
/// At the end, how long in-flight I/Os are waited for.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

const SOCK: mio::Token = mio::Token(0);
const WAKE: mio::Token = mio::Token(1);

/// What a request handed to the I/O threads stands for.
enum Pending {
    Read {
        id: u64,
    },
    /// A write; with FUA, a sync of `src` follows before it completes.
    Write {
        id: u64,
        len: u64,
        fua: Option<Arc<Source>>,
    },
    Sync {
        id: u64,
        len: u64,
    },
}

/// One connection's state around its [`Connection`].
struct Served<'a> {
    conn: Connection,
    store: &'a Store,
    stats: &'a IscsiStats,
    sub: Submitter,
    pending: std::collections::HashMap<u64, Pending>,
    /// When each I/O in progress was dispatched, by its id.
    io_started: std::collections::HashMap<u64, std::time::Instant>,
    next_tag: u64,
    overlay: Option<Arc<Overlay>>,
    peer: Option<std::net::SocketAddr>,
    out: Vec<u8>,
    sent: usize,
    /// This connection's number, the flag another login of its session sets, its mailbox.
    id: u64,
    close: Arc<AtomicBool>,
    mailbox: Arc<Mailbox>,
    /// Its key in the session registry, once logged in.
    session: Option<SessionKey>,
    /// Its first read was told to the boot-session registry.
    read_noted: bool,
}

/// Serves one connection to its end (counted as active meanwhile).
fn serve_connection(
    sock: TcpStream,
    conn: Connection,
    store: &Store,
    stats: &IscsiStats,
    shutdown: &AtomicBool,
    key: usize,
) -> std::io::Result<()> {
    let _active = Active::new(&stats.active);
    let peer = sock.peer_addr().ok();
    let _ = sock.set_nodelay(true);
    sock.set_nonblocking(true)?;
    let mut sock = mio::net::TcpStream::from_std(sock);
    let mut poll = mio::Poll::new()?;
    poll.registry()
        .register(&mut sock, SOCK, mio::Interest::READABLE)?;
    let mailbox = Mailbox::new(mio::Waker::new(poll.registry(), WAKE)?);
    let mut s = Served {
        conn,
        store,
        stats,
        sub: store.engine.submitter(key, mailbox.clone()),
        pending: std::collections::HashMap::new(),
        io_started: std::collections::HashMap::new(),
        next_tag: 0,
        overlay: None,
        peer,
        out: Vec::new(),
        sent: 0,
        id: key as u64,
        close: Arc::new(AtomicBool::new(false)),
        mailbox: mailbox.clone(),
        session: None,
        read_noted: false,
    };
    // Received bytes are rbuf[rstart..rend]; the buffer is zeroed once and grows (doubling)
    // only for a PDU larger than it.
    let mut rbuf: Vec<u8> = vec![0u8; 2 * READ_CHUNK];
    let (mut rstart, mut rend) = (0usize, 0usize);
    let mut events = mio::Events::with_capacity(16);
    let mut eof = false;
    let mut writable_armed = false;
    let mut closing = false;
    let mut drain_end: Option<std::time::Instant> = None;
    let accepted = std::time::Instant::now();
    loop {
        // Take in what came, unless the initiator is not reading what we send.
        if !eof && !closing && s.out.len() - s.sent < OUTPUT_LIMIT {
            loop {
                if rbuf.len() - rend < READ_CHUNK / 4 {
                    rbuf.copy_within(rstart..rend, 0);
                    (rstart, rend) = (0, rend - rstart);
                    if rbuf.len() - rend < READ_CHUNK / 4 {
                        if rbuf.len() >= 64 << 20 {
                            break;
                        }
                        let n = rbuf.len() * 2;
                        rbuf.resize(n, 0);
                    }
                }
                match sock.read(&mut rbuf[rend..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => rend += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        eof = true;
                        break;
                    }
                }
            }
            // Whole PDUs to the core.
            while !closing && rend - rstart >= BHS_LEN {
                let Ok(h) = Bhs::new_checked(&rbuf[rstart..rstart + BHS_LEN]) else {
                    closing = true;
                    break;
                };
                let (hd, dd) = s.conn.digests();
                let total = h.total_len(hd, dd);
                if h.data_len() > s.conn.data_limit() {
                    let header: [u8; BHS_LEN] = rbuf[rstart..rstart + BHS_LEN].try_into().unwrap();
                    s.conn.handle_oversize(&header);
                    rstart += BHS_LEN;
                } else if rend - rstart >= total {
                    s.conn.handle_wire(&rbuf[rstart..rstart + total]);
                    rstart += total;
                } else {
                    break;
                }
                if !s.after_input() {
                    closing = true;
                }
            }
            if rstart == rend {
                (rstart, rend) = (0, 0);
            }
        }
        s.sub.flush();
        for c in mailbox.take() {
            s.completed(c);
        }
        s.sub.flush();
        s.collect_output();
        // Send what we can; the rest when the socket is writable again.
        while s.sent < s.out.len() {
            match sock.write(&s.out[s.sent..]) {
                Ok(n) => s.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    eof = true;
                    s.out.clear();
                    s.sent = 0;
                    break;
                }
            }
        }
        if s.sent == s.out.len() {
            s.out.clear();
            s.sent = 0;
        }
        let want_write = !s.out.is_empty();
        if want_write != writable_armed {
            let interest = if want_write {
                mio::Interest::READABLE | mio::Interest::WRITABLE
            } else {
                mio::Interest::READABLE
            };
            poll.registry().reregister(&mut sock, SOCK, interest)?;
            writable_armed = want_write;
        }
        if !s.conn.logged_in() && !closing && accepted.elapsed() > store.login_timeout {
            stats.login_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %peer.map(|p| p.to_string()).unwrap_or_default(),
                    event = "iscsi_login_timeout", "iSCSI connection closed: no login in time");
            closing = true;
        }
        let done = s.conn.is_closed()
            || closing
            || eof
            || shutdown.load(Ordering::Relaxed)
            || s.close.load(Ordering::Relaxed);
        if done && (s.out.is_empty() || eof) {
            // In-flight I/O finishes first (its buffers and the overlay stay ours until then).
            if s.pending.is_empty() {
                break;
            }
            let end = *drain_end.get_or_insert_with(|| std::time::Instant::now() + DRAIN_LIMIT);
            if std::time::Instant::now() >= end {
                tracing::warn!(
                    pending = s.pending.len(),
                    "iSCSI connection closed with I/O still in flight"
                );
                break;
            }
        }
        match poll.poll(&mut events, Some(POLL_INTERVAL)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let _ = sock.shutdown(std::net::Shutdown::Both);
    Ok(())
}

impl Drop for Served<'_> {
    /// However the connection ends (an I/O error included), its session leaves the registry.
    fn drop(&mut self) {
        self.leave();
    }
}

/// Counts a connection as active while it lives (whichever way it ends).
struct Active<'a>(&'a AtomicU64);

impl<'a> Active<'a> {
    fn new(n: &'a AtomicU64) -> Active<'a> {
        n.fetch_add(1, Ordering::Relaxed);
        Active(n)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Served<'_> {
    /// Logged in: the registry names this connection for its session; a connection of the
    /// same session (initiator, ISID, target) is closed (reinstatement).
    fn join(&mut self, initiator: &str, isid: [u8; 6], target: &str) {
        let key = (initiator.to_string(), isid, target.to_string());
        let live = LiveSession {
            conn: self.id,
            close: self.close.clone(),
            mailbox: self.mailbox.clone(),
        };
        let old = self
            .store
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), live);
        if let Some(old) = old.filter(|o| o.conn != self.id) {
            old.close.store(true, Ordering::SeqCst);
            old.mailbox.wake();
            self.stats.reinstated.fetch_add(1, Ordering::Relaxed);
            let isid: String = isid.iter().map(|b| format!("{b:02x}")).collect();
            tracing::info!(
                initiator,
                isid,
                target,
                event = "iscsi_session_reinstated",
                "iSCSI session reinstated: the old connection is closed"
            );
        }
        self.session = Some(key);
    }

    /// The connection ends: out of the registry, unless another connection took its place.
    fn leave(&mut self) {
        if let Some(key) = self.session.take() {
            let mut m = self
                .store
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if m.get(&key).is_some_and(|l| l.conn == self.id) {
                m.remove(&key);
            }
        }
    }

    /// After a PDU: its events (a login to a diskless target opens the machine's overlay, or
    /// the connection closes without the login's answer), then its I/O to the threads. False
    /// if the connection must close now.
    fn after_input(&mut self) -> bool {
        while let Some(e) = self.conn.poll_event() {
            log_event(&e, self.peer, self.stats, self.conn.digests());
            let step = match &e {
                Event::LoggedIn {
                    initiator,
                    target: Some(t),
                    ..
                } => Some(Step::IscsiLogin {
                    initiator: initiator.as_str().into(),
                    target: t.as_str().into(),
                }),
                Event::LoginFailed { reason, .. } => Some(Step::IscsiRefused {
                    reason: (*reason).into(),
                }),
                _ => None,
            };
            if let Some(step) = step {
                self.note(step);
            }
            if let Event::LoggedIn {
                initiator,
                target: Some(name),
                isid,
            } = &e
            {
                self.join(initiator, *isid, name);
                let index = self.conn.session().map(|(_, i)| i);
                match open_overlay(self.store, index, initiator, self.peer) {
                    Ok(o) => self.overlay = o,
                    Err(why) => {
                        self.stats.overlay_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %self.peer.map(|p| p.to_string()).unwrap_or_default(),
                            initiator, target = name, reason = %why, event = "iscsi_overlay_failed",
                            "iSCSI login dropped: no overlay");
                        // Not even the login's answer goes out.
                        while self.conn.poll_transmit().is_some() {}
                        return false;
                    }
                }
            }
        }
        while let Some(io) = self.conn.poll_io() {
            self.dispatch(io.id, io.target, io.kind);
        }
        self.collect_output();
        true
    }

    fn collect_output(&mut self) {
        while let Some(p) = self.conn.poll_transmit() {
            self.out.extend_from_slice(&p);
        }
    }

    /// Tells the boot-session registry `step` of this connection's machine.
    fn note(&self, step: Step) {
        if let (Some(note), Some(std::net::SocketAddr::V4(p))) = (&self.store.note, self.peer) {
            note(*p.ip(), step);
        }
    }

    fn tag(&mut self, p: Pending) -> u64 {
        self.next_tag += 1;
        self.pending.insert(self.next_tag, p);
        self.next_tag
    }

    /// Hands an I/O to the threads, after trying it here without waiting (what the page cache
    /// holds); an overlay's first writes (copy-up and the map's update) and its syncs are done
    /// here too: they are the overlay's, and rare.
    fn dispatch(&mut self, id: u64, target: usize, kind: IoKind) {
        self.io_started.insert(id, std::time::Instant::now());
        if !self.read_noted && matches!(kind, IoKind::Read { .. }) {
            self.read_noted = true;
            self.note(Step::IscsiRead);
        }
        let overlay = self.overlay.clone();
        match (&self.store.units[target], overlay, kind) {
            (Unit::File(src), _, IoKind::Read { offset, len }) => {
                let seg = Segment {
                    src: src.clone(),
                    offset,
                    len: len as usize,
                };
                self.read(id, vec![seg]);
            }
            (Unit::File(src), _, IoKind::Write { offset, data, fua }) => {
                let fua = fua.then(|| src.clone());
                self.write(id, src.clone(), offset, data, fua);
            }
            (Unit::File(src), _, IoKind::Unmap { ranges }) => {
                match ranges.iter().try_for_each(|&(o, l)| src.punch_hole(o, l)) {
                    Ok(()) => self.complete(id, IoResult::Done),
                    Err(e) => self.failed(id, &e),
                }
            }
            (Unit::File(src), _, IoKind::Extent { offset }) => match src.extent(offset) {
                Ok((len, mapped)) => self.complete(id, IoResult::Extent { len, mapped }),
                Err(e) => self.failed(id, &e),
            },
            (Unit::File(src), _, IoKind::Flush) => {
                let t = self.tag(Pending::Sync { id, len: 0 });
                self.ring(t, Op::Sync(src.clone()));
            }
            (Unit::Diskless { .. }, Some(o), IoKind::Read { offset, len }) => {
                match o.read_segments(offset, len) {
                    Ok(segs) => self.read(id, segs),
                    Err(e) => self.failed(id, &e),
                }
            }
            (Unit::Diskless { .. }, Some(o), IoKind::Write { offset, data, fua })
                if !fua && o.all_written(offset, data.len() as u64) =>
            {
                self.write(id, o.data_source().clone(), offset, data, None);
            }
            (Unit::Diskless { .. }, Some(o), IoKind::Write { offset, data, fua }) => {
                let r = o
                    .write_at(&data, offset)
                    .and_then(|()| if fua { o.sync() } else { Ok(()) });
                match r {
                    Ok(()) => {
                        self.stats
                            .written_bytes
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                        self.stats.inline_ios.fetch_add(1, Ordering::Relaxed);
                        self.complete(id, IoResult::Done);
                    }
                    Err(e) => self.failed(id, &e),
                }
            }
            (Unit::Diskless { .. }, Some(o), IoKind::Flush) => match o.sync() {
                Ok(()) => self.complete(id, IoResult::Done),
                Err(e) => self.failed(id, &e),
            },
            // No overlay (cannot happen after a login), or what a diskless unit does not offer.
            (Unit::Diskless { .. }, None, _)
            | (Unit::Diskless { .. }, _, IoKind::Unmap { .. } | IoKind::Extent { .. }) => {
                self.stats.io_errors.fetch_add(1, Ordering::Relaxed);
                self.complete(id, IoResult::Failed);
            }
        }
    }

    /// An I/O is done: its answer to the connection, its time to the histogram.
    fn complete(&mut self, id: u64, r: IoResult) {
        if let Some(t) = self.io_started.remove(&id) {
            let us = t.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
            self.stats.io_us.0.observe(us);
        }
        self.conn.complete_io(id, r);
    }

    fn ring(&mut self, tag: u64, op: Op) {
        self.stats.ring_ios.fetch_add(1, Ordering::Relaxed);
        self.sub.submit(tag, op);
    }

    /// A read: from the page cache here if every run is there, else on the ring.
    fn read(&mut self, id: u64, segs: Vec<Segment>) {
        if self.store.inline {
            let total: usize = segs.iter().map(|s| s.len).sum();
            let mut data = vec![0u8; total];
            let mut at = 0;
            let mut whole = true;
            for s in &segs {
                match s.src.read_nowait(&mut data[at..at + s.len], s.offset) {
                    bootstorm_blockio::Nowait::Done => at += s.len,
                    bootstorm_blockio::Nowait::WouldBlock => {
                        whole = false;
                        break;
                    }
                    bootstorm_blockio::Nowait::Failed(e) => return self.failed(id, &e),
                }
            }
            if whole {
                self.stats.inline_ios.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .read_bytes
                    .fetch_add(total as u64, Ordering::Relaxed);
                return self.complete(id, IoResult::Read(data));
            }
        }
        let t = self.tag(Pending::Read { id });
        self.ring(t, Op::Read(segs));
    }

    /// A write: through the page cache here if it need not wait (and is not FUA), else on the
    /// ring (FUA: a sync follows there).
    fn write(
        &mut self,
        id: u64,
        src: Arc<Source>,
        offset: u64,
        data: Vec<u8>,
        fua: Option<Arc<Source>>,
    ) {
        let len = data.len() as u64;
        if fua.is_none() && self.store.inline {
            match src.write_nowait(&data, offset) {
                bootstorm_blockio::Nowait::Done => {
                    self.stats.inline_ios.fetch_add(1, Ordering::Relaxed);
                    self.stats.written_bytes.fetch_add(len, Ordering::Relaxed);
                    return self.complete(id, IoResult::Done);
                }
                bootstorm_blockio::Nowait::WouldBlock => {}
                bootstorm_blockio::Nowait::Failed(e) => return self.failed(id, &e),
            }
        }
        let t = self.tag(Pending::Write { id, len, fua });
        self.ring(t, Op::Write { src, offset, data });
    }

    fn failed(&mut self, id: u64, e: &std::io::Error) {
        tracing::warn!(error = %e, "iSCSI backing-store I/O failed");
        self.stats.io_errors.fetch_add(1, Ordering::Relaxed);
        self.complete(id, IoResult::Failed);
    }

    /// A request came back from the I/O threads.
    fn completed(&mut self, c: bootstorm_blockio::Completion) {
        let Some(p) = self.pending.remove(&c.tag) else {
            return;
        };
        match (p, c.result) {
            (Pending::Read { id }, Ok(data)) => {
                self.stats
                    .read_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                self.complete(id, IoResult::Read(data));
            }
            (
                Pending::Write {
                    id,
                    len,
                    fua: Some(src),
                },
                Ok(_),
            ) => {
                // FUA: durable before it completes.
                let t = self.tag(Pending::Sync { id, len });
                self.ring(t, Op::Sync(src));
            }
            (Pending::Write { id, len, fua: None }, Ok(_)) | (Pending::Sync { id, len }, Ok(_)) => {
                self.stats.written_bytes.fetch_add(len, Ordering::Relaxed);
                self.complete(id, IoResult::Done);
            }
            (
                Pending::Read { id } | Pending::Write { id, .. } | Pending::Sync { id, .. },
                Err(e),
            ) => self.failed(id, &e),
        }
        self.collect_output();
    }
}

/// The overlay of the machine that just logged in to target `index`, if it is diskless.
fn open_overlay(
    store: &Store,
    index: Option<usize>,
    initiator: &str,
    peer: Option<std::net::SocketAddr>,
) -> Result<Option<Arc<Overlay>>, String> {
    let Some(Unit::Diskless { overlays, key }) = index.and_then(|i| store.units.get(i)) else {
        return Ok(None);
    };
    let key = match key {
        OverlayKey::Initiator => initiator.to_string(),
        OverlayKey::Mac => {
            let ip = match peer {
                Some(std::net::SocketAddr::V4(a)) => *a.ip(),
                _ => return Err("no IPv4 peer address to find its MAC by".into()),
            };
            let mac = store
                .mac_of
                .as_ref()
                .and_then(|f| f(ip))
                .or_else(|| neighbour_mac(ip))
                .ok_or_else(|| format!("no lease or neighbour entry names the MAC of {ip}"))?;
            mac_key(&mac)
        }
    };
    overlays.get(&key).map(Some).map_err(|e| e.to_string())
}

/// Logs `e`; `digests` are the connection's header and data digests (CRC32C or not).
fn log_event(
    e: &Event,
    peer: Option<std::net::SocketAddr>,
    stats: &IscsiStats,
    digests: (bool, bool),
) {
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    let name = |on: bool| if on { "CRC32C" } else { "None" };
    match e {
        Event::LoggedIn {
            initiator, target, ..
        } => {
            stats.logins.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                peer,
                initiator,
                target = target.as_deref().unwrap_or("(discovery)"),
                header_digest = name(digests.0),
                data_digest = name(digests.1),
                event = "iscsi_login",
                "iSCSI login"
            );
        }
        Event::LoginFailed { initiator, reason } => {
            stats.login_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                peer,
                initiator = initiator.as_deref().unwrap_or("?"),
                reason,
                event = "iscsi_login_failed",
                "iSCSI login refused"
            );
        }
        Event::LoggedOut => {
            stats.logouts.fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer, event = "iscsi_logout", "iSCSI logout");
        }
        Event::ProtocolError(why) => {
            stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                peer,
                reason = why,
                event = "iscsi_protocol_error",
                "iSCSI connection closed: protocol error"
            );
        }
    }
}
