//! The iSCSI service: a target on kernel TCP (port 3260 by default) driving one
//! [`bootstorm_iscsi::Connection`] per connection, each on a thread of its own, with the
//! backing files read and written by `pread`/`pwrite` (`FileExt`) from that thread.
//!
//! A target is either a plain disk (its file or block device, LUN 0) or diskless: its file is
//! a golden image, opened read-only and shared, and each machine that logs in gets its own
//! copy-on-write overlay of it ([`crate::overlay`]), found by its initiator IQN or by the MAC
//! address the DHCP server leased its address to. The overlay is opened when the login
//! succeeds; if it cannot be (another golden image, a full disk, an unknown MAC) the login's
//! answer is not sent and the connection is closed, with the reason in the log.
//!
//! What a PDU or a login does is the core's business and does not change with the transport.

use crate::overlay::{Overlay, Overlays, mac_key};
use crate::tftpd::{MacLookup, neighbour_mac};
use bootstorm_iscsi::scsi::fnv64;
use bootstorm_iscsi::{Config, Connection, Disk, Event, IoKind, IoResult, Target};
use bootstorm_wire::iscsi::{BHS_LEN, Bhs};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
}

/// Default listen address.
pub const DEFAULT_LISTEN: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 3260);

/// Counters of the service.
#[derive(Debug, Default)]
pub struct IscsiStats {
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
    File(File),
    Diskless { overlays: Overlays, key: OverlayKey },
}

/// The backing stores, by target index, and how to find a machine's MAC.
struct Store {
    units: Vec<Unit>,
    mac_of: Option<MacLookup>,
}

/// Opens the backing files and starts listening. `mac_of` names the machine at an address
/// (the DHCP server's boot-session registry) for overlays keyed by MAC.
pub fn start(
    s: &IscsiSettings,
    shutdown: Arc<AtomicBool>,
    mac_of: Option<MacLookup>,
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
                },
            )],
            chap: t.chap.clone(),
            initiators: t.initiators.clone(),
        });
        units.push(match &t.overlays {
            None => Unit::File(file),
            Some(o) => Unit::Diskless {
                overlays: Overlays::new(
                    o.dir.clone(),
                    Arc::new(file),
                    blocks * u64::from(BLOCK_SIZE),
                )
                .with_context(|| format!("iSCSI target {}: {}", t.name, t.file.display()))?,
                key: o.key,
            },
        });
        tracing::info!(target = %t.name, file = %t.file.display(), blocks, read_only = t.read_only,
            chap = t.chap.is_some(),
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
    let store = Arc::new(Store { units, mac_of });
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
        match std::thread::Builder::new()
            .name("iscsi-conn".into())
            .spawn(move || serve_connection(sock, conn, &store, &stats, &flag))
        {
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

/// Reads exactly `buf.len()` bytes; false on EOF, error or shutdown.
fn read_full(sock: &mut TcpStream, buf: &mut [u8], shutdown: &AtomicBool) -> bool {
    let mut got = 0;
    while got < buf.len() {
        match sock.read(&mut buf[got..]) {
            Ok(0) => return false,
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if shutdown.load(Ordering::Relaxed) {
                    return false;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn serve_connection(
    mut sock: TcpStream,
    mut conn: Connection,
    store: &Store,
    stats: &IscsiStats,
    shutdown: &AtomicBool,
) {
    stats.active.fetch_add(1, Ordering::Relaxed);
    let peer = sock.peer_addr().ok();
    let _ = sock.set_nodelay(true);
    let _ = sock.set_read_timeout(Some(POLL_INTERVAL));
    let mut header = [0u8; BHS_LEN];
    let mut pdu = Vec::new();
    let mut out = Vec::new();
    let mut overlay: Option<Arc<Overlay>> = None;
    loop {
        if !read_full(&mut sock, &mut header, shutdown) {
            break;
        }
        let Ok(h) = Bhs::new_checked(&header[..]) else {
            break;
        };
        let (hd, dd) = conn.digests();
        let total = h.total_len(hd, dd);
        let data_len = h.data_len();
        if data_len > conn.data_limit() {
            conn.handle_oversize(&header);
        } else {
            // Additional headers, digests, the data and its padding: the core checks the
            // digests and takes the PDU whole.
            pdu.clear();
            pdu.extend_from_slice(&header);
            pdu.resize(total, 0);
            if !read_full(&mut sock, &mut pdu[BHS_LEN..], shutdown) {
                break;
            }
            conn.handle_wire(&pdu);
        }
        // Events first: a login to a diskless target opens the machine's overlay before its
        // answer goes out (and instead of it, if the overlay cannot be opened).
        let mut refused = false;
        while let Some(e) = conn.poll_event() {
            log_event(&e, peer, stats);
            if let Event::LoggedIn {
                initiator,
                target: Some(name),
                ..
            } = &e
            {
                match open_overlay(store, conn.session().map(|(_, i)| i), initiator, peer) {
                    Ok(o) => overlay = o,
                    Err(why) => {
                        stats.overlay_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %peer.map(|p| p.to_string()).unwrap_or_default(),
                            initiator, target = name, reason = %why, event = "iscsi_overlay_failed",
                            "iSCSI login dropped: no overlay");
                        refused = true;
                    }
                }
            }
        }
        if refused {
            break;
        }
        while let Some(io) = conn.poll_io() {
            let result = perform(&store.units[io.target], overlay.as_deref(), io.kind, stats);
            if result == IoResult::Failed {
                stats.io_errors.fetch_add(1, Ordering::Relaxed);
            }
            conn.complete_io(io.id, result);
        }
        out.clear();
        while let Some(p) = conn.poll_transmit() {
            out.extend_from_slice(&p);
        }
        if !out.is_empty() && sock.write_all(&out).is_err() {
            break;
        }
        if conn.is_closed() {
            break;
        }
    }
    let _ = sock.shutdown(std::net::Shutdown::Both);
    stats.active.fetch_sub(1, Ordering::Relaxed);
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

/// One backing-store operation, on the unit's file or the machine's overlay.
fn perform(unit: &Unit, overlay: Option<&Overlay>, kind: IoKind, stats: &IscsiStats) -> IoResult {
    let wrote = match &kind {
        IoKind::Write { data, .. } => data.len() as u64,
        _ => 0,
    };
    let r = match (unit, overlay) {
        (Unit::File(f), _) => match kind {
            IoKind::Read { offset, len } => {
                let mut buf = vec![0u8; len as usize];
                f.read_exact_at(&mut buf, offset)
                    .map(|()| buf)
                    .map(IoResult::Read)
            }
            IoKind::Write { offset, data, fua } => f
                .write_all_at(&data, offset)
                .and_then(|()| if fua { f.sync_data() } else { Ok(()) })
                .map(|()| IoResult::Done),
            IoKind::Flush => f.sync_data().map(|()| IoResult::Done),
        },
        (Unit::Diskless { .. }, Some(o)) => match kind {
            IoKind::Read { offset, len } => {
                let mut buf = vec![0u8; len as usize];
                o.read_at(&mut buf, offset)
                    .map(|()| buf)
                    .map(IoResult::Read)
            }
            IoKind::Write { offset, data, fua } => o
                .write_at(&data, offset)
                .and_then(|()| if fua { o.sync() } else { Ok(()) })
                .map(|()| IoResult::Done),
            IoKind::Flush => o.sync().map(|()| IoResult::Done),
        },
        (Unit::Diskless { .. }, None) => return IoResult::Failed,
    };
    match r {
        Ok(IoResult::Read(buf)) => {
            stats
                .read_bytes
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
            IoResult::Read(buf)
        }
        Ok(r) => {
            stats.written_bytes.fetch_add(wrote, Ordering::Relaxed);
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "iSCSI backing-store I/O failed");
            IoResult::Failed
        }
    }
}

fn log_event(e: &Event, peer: Option<std::net::SocketAddr>, stats: &IscsiStats) {
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    match e {
        Event::LoggedIn {
            initiator, target, ..
        } => {
            stats.logins.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                peer,
                initiator,
                target = target.as_deref().unwrap_or("(discovery)"),
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
