//! The DHCP service on the socket path: one socket per worker on the DHCP port (SO_REUSEPORT),
//! each a packet queue ([`bootstorm_io::udp`]) drained by its own thread running
//! [`crate::dhcp_worker`], all sharing one [`Server`] core and its lease table; and what the
//! running service offers (stats, reload, stop).

use crate::config::{IoMode, Settings};
use crate::dhcp_worker::{self, Commits, Inbox, IoStats, Published};
use anyhow::{Context, bail};
use bootstorm_dhcp::{Server, Stats};
use bootstorm_io::RxQueue;
use bootstorm_io::udp::{UdpRx, UdpTx};
use bootstorm_journal::{DirLock, Journal, WallClock};
use bootstorm_net::{SocketOptions, UdpSocket4, interface_index};
use bootstorm_time::Clock;
use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The counters each worker publishes after every batch; cheap to clone, so the control socket
/// can read them while the server runs.
#[derive(Clone, Default)]
pub struct WorkerStats(Vec<Arc<Mutex<Published>>>);

impl WorkerStats {
    fn snapshot(&self) -> Vec<Published> {
        self.0
            .iter()
            .map(|s| s.lock().map(|g| g.clone()).unwrap_or_default())
            .collect()
    }

    /// A snapshot of each worker's DHCP counters.
    pub fn per_worker(&self) -> Vec<Stats> {
        self.snapshot().into_iter().map(|p| p.core).collect()
    }

    /// All workers' DHCP counters added up.
    pub fn total(&self) -> Stats {
        let mut t = Stats::default();
        for s in self.per_worker() {
            t.add(&s);
        }
        t
    }

    /// All workers' I/O counters added up (hand-offs, replies held for the journal).
    pub fn io_total(&self) -> IoStats {
        let mut t = IoStats::default();
        for p in self.snapshot() {
            t.add(&p.io);
        }
        t
    }
}

/// The DHCP core the workers serve with, replaceable while they run (a reload). Workers take
/// the current one per batch (a read lock, uncontended but for a reload); a reload takes the
/// write lock while it moves every lease over, so no change is made to the old table after it
/// was copied.
pub struct ServerCell(std::sync::RwLock<Arc<Server>>);

impl ServerCell {
    /// A cell serving `server`.
    pub fn new(server: Arc<Server>) -> ServerCell {
        ServerCell(std::sync::RwLock::new(server))
    }

    /// The current core.
    pub fn get(&self) -> Arc<Server> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// What a reload did.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Leases and other client records carried over to the new table.
    pub records: usize,
    /// Bound leases among them.
    pub bound: usize,
    /// Records the new configuration cannot hold (their address became another client's
    /// reservation); those clients are NAKed at their next renewal.
    pub conflicts: usize,
    /// Settings that changed in the file but only take effect at a restart.
    pub need_restart: Vec<&'static str>,
}

/// A running server.
pub struct Running {
    cell: Arc<ServerCell>,
    /// Reservations added through the API.
    reservations: Arc<crate::reservations::Store>,
    sessions: Arc<crate::sessions::Sessions>,
    settings: Mutex<Settings>,
    shutdown: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    stats: WorkerStats,
    local: SocketAddrV4,
    clock: Clock,
    journal: Option<Arc<Journal>>,
    /// The XDP fast path, when DHCP runs on it (detached when this goes, after the workers).
    fast: Option<Arc<crate::xdp_path::FastPath>>,
    /// Held while running: one process owns a lease directory.
    _dir_lock: Option<DirLock>,
}

impl Running {
    /// The lease journal, if leases are kept.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.as_ref()
    }

    /// The address the DHCP sockets are bound to (with the real port if 0 was configured).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// The core serving now.
    pub fn server(&self) -> Arc<Server> {
        self.cell.get()
    }

    /// The boot-session registry (who holds which address), fed by the workers.
    pub fn sessions(&self) -> Arc<crate::sessions::Sessions> {
        self.sessions.clone()
    }

    /// The handle through which the current core is found (for threads that outlive a reload).
    pub fn server_cell(&self) -> Arc<ServerCell> {
        self.cell.clone()
    }

    /// Applies a new configuration without a restart: the DHCP core (subnets, pools,
    /// reservations, boot rules, classes, options, timers) is rebuilt from `new` and every
    /// client record moves to its table, so no lease is dropped. What a running server cannot
    /// change (addresses, ports, interfaces, workers, TFTP, HTTP, the lease directory) is kept
    /// as it was and named in the result. An invalid core (overlapping pools) is refused and
    /// changes nothing.
    pub fn reload(&self, new: &Settings) -> anyhow::Result<Reloaded> {
        let mut current = self
            .settings
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        if new.dhcp_enabled != current.dhcp_enabled {
            anyhow::bail!(
                "turning DHCP on or off (adding the first or removing the last [[subnet]]) needs a restart"
            );
        }
        let mut r = Reloaded {
            need_restart: restart_only_changes(&current, new),
            ..Reloaded::default()
        };
        let (dhcp, warnings) = self.reservations.merged(&new.dhcp);
        for w in warnings {
            tracing::warn!("{w}");
        }
        let fresh = Arc::new(Server::new(dhcp).context("building the lease table")?);
        let mut cell = self
            .cell
            .0
            .write()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let now = self.clock.now();
        for l in cell.leases().leases(now) {
            r.records += 1;
            let bound = l.state == bootstorm_lease::LeaseState::Bound;
            let quarantine =
                (l.state == bootstorm_lease::LeaseState::Declined).then_some(l.expires);
            let (ip, mac) = (l.addr, fmt_hw(&l.hwaddr));
            match fresh.leases().restore(now, l, quarantine) {
                Ok(()) => r.bound += usize::from(bound),
                Err(e) => {
                    r.conflicts += 1;
                    tracing::warn!(%ip, %mac, error = %e, "lease not carried over by the reload: the client is NAKed at its next renewal");
                }
            }
        }
        if let Some(j) = &self.journal {
            fresh.leases().set_sink(j.clone());
        }
        *cell = fresh;
        drop(cell);
        // What changed live is the core's configuration (its table rebuilt, shards too) and the
        // log level; everything `restart_only_changes` names stays as it runs.
        current.dhcp = new.dhcp.clone();
        current.log_level = new.log_level.clone();
        current.warnings = new.warnings.clone();
        Ok(r)
    }

    /// The reservations added through the API.
    pub fn reservations(&self) -> Arc<crate::reservations::Store> {
        self.reservations.clone()
    }

    /// Rebuilds the core from the running settings (after the API's reservations changed),
    /// moving every lease over as a reload does.
    pub fn reapply(&self) -> anyhow::Result<Reloaded> {
        let current = self
            .settings
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        self.reload(&current)
    }

    /// The clock the workers use.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// A snapshot of each worker's counters (updated after every batch).
    pub fn worker_stats(&self) -> Vec<Stats> {
        self.stats.per_worker()
    }

    /// A handle to the workers' counters that outlives borrows of `self`.
    pub fn stats_handle(&self) -> WorkerStats {
        self.stats.clone()
    }

    /// All workers' counters added up.
    pub fn total_stats(&self) -> Stats {
        self.stats.total()
    }

    /// The XDP fast path, if DHCP runs on it.
    pub fn fast_path(&self) -> Option<Arc<crate::xdp_path::FastPath>> {
        self.fast.clone()
    }

    /// Stops the workers and waits for them; returns each worker's final counters.
    pub fn stop(self) -> Vec<Stats> {
        self.shutdown.store(true, Ordering::SeqCst);
        for w in self.workers {
            let _ = w.join();
        }
        if let Some(j) = &self.journal {
            j.shutdown();
        }
        self.stats.per_worker()
    }
}

/// Names of the settings that differ between `a` and `b` and need a restart to change.
fn restart_only_changes(a: &Settings, b: &Settings) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut check = |same: bool, name: &'static str| {
        if !same {
            v.push(name);
        }
    };
    check(a.listen == b.listen, "[server] address/port");
    check(a.interfaces == b.interfaces, "[server] interfaces");
    check(a.workers == b.workers, "[server] workers");
    check(a.rx_coalesce == b.rx_coalesce, "[server] rx_coalesce");
    check(a.io == b.io, "[server] io");
    check(a.xdp == b.xdp, "[xdp]");
    check(
        a.control_socket == b.control_socket,
        "[server] control_socket",
    );
    check(a.log_format == b.log_format, "[server] log_format");
    check(
        a.dhcp_enabled == b.dhcp_enabled,
        "DHCP on/off ([[subnet]] present or not)",
    );
    check(a.tftp == b.tftp, "[tftp]");
    check(a.http == b.http, "[http]");
    check(a.leases == b.leases, "[leases]");
    check(a.sessions == b.sessions, "[sessions]");
    check(a.api == b.api, "[api]");
    v
}

/// Binds the sockets and starts the workers.
pub fn start(settings: &Settings) -> anyhow::Result<Running> {
    start_with(settings, None)
}

/// [`start`]; on the XDP fast path its workers also serve TFTP (`tftp`: the settings and the
/// file cache), beside the socket path's TFTP service for what the program does not steer.
pub fn start_with(
    settings: &Settings,
    tftp: Option<(crate::tftpd::TftpSettings, Arc<crate::files::FileCache>)>,
) -> anyhow::Result<Running> {
    // The API's reservations join the config's (kept in the lease directory).
    let reservations = Arc::new(crate::reservations::Store::open(
        settings.leases.as_ref().map(|l| l.dir.as_path()),
    )?);
    let (dhcp, warnings) = reservations.merged(&settings.dhcp);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let server = Arc::new(Server::new(dhcp).context("building the lease table")?);
    let cell = Arc::new(ServerCell(std::sync::RwLock::new(server.clone())));
    let clock = Clock::new();
    let sessions = Arc::new(crate::sessions::Sessions::with(settings.sessions));
    let journal = match &settings.leases {
        Some(l) => Some(open_journal(l, settings.repair_journal, &cell, clock)?),
        None => {
            tracing::warn!("no [leases] dir: leases live in memory only and are lost on restart");
            None
        }
    };
    let (journal, dir_lock) = journal.unzip();
    // Leases kept from before (the journal's) are sessions already.
    let now = clock.now();
    for l in server.leases().leases(now) {
        if l.state == bootstorm_lease::LeaseState::Bound {
            sessions.restore(l.addr, &l.hwaddr, l.expires);
        }
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    // Receiving interface -> the subnet served directly on it.
    let mut hints = HashMap::new();
    for (i, s) in settings.dhcp.subnets.iter().enumerate() {
        if let Some(name) = &s.interface {
            match interface_index(name) {
                Some(ix) => {
                    hints.insert(ix, i as u32);
                }
                None => {
                    tracing::warn!(interface = %name, "interface of subnet {}/{} does not exist (yet)", s.network, s.prefix)
                }
            }
        }
    }
    let hints = Arc::new(hints);
    let ifaces: Vec<Option<String>> = if !settings.dhcp_enabled {
        // No subnet: boot files only, beside another DHCP server. No socket on port 67.
        tracing::info!("no [[subnet]]: DHCP is off, serving the other services only");
        Vec::new()
    } else if settings.interfaces.is_empty() {
        vec![None]
    } else {
        settings.interfaces.iter().cloned().map(Some).collect()
    };
    // The fast path first when asked for; sockets when it cannot start and `auto` allows.
    let mut fast = None;
    let mut xdp_groups = Vec::new();
    if settings.dhcp_enabled && settings.io != IoMode::Socket {
        let tftp_port = tftp.as_ref().map(|(t, _)| t.listen.port());
        match crate::xdp_path::open(settings, tftp_port) {
            Ok((f, g)) => {
                fast = Some(f);
                xdp_groups = g;
            }
            Err(why) if settings.io == IoMode::Auto => {
                tracing::warn!(reason = %why, "the XDP fast path cannot start: serving DHCP on sockets");
            }
            Err(why) => bail!("io = \"xdp\": {why}"),
        }
    }
    let mut groups = Vec::new();
    let mut port = settings.listen.port();
    if fast.is_none() {
        for iface in &ifaces {
            groups.push(socket_group(settings, iface, &mut port)?);
        }
    }
    let local = SocketAddrV4::new(*settings.listen.ip(), port);
    let mut spawner = Spawner {
        cell: cell.clone(),
        sessions: sessions.clone(),
        now: Arc::new(move || clock.now()),
        shutdown: shutdown.clone(),
        hints: hints.clone(),
        commits: journal.clone().map(|j| j as Arc<dyn Commits>),
        coalesce: settings.rx_coalesce,
        port: local.port(),
        busy_poll: tftp.as_ref().map_or(Duration::ZERO, |(t, _)| t.busy_poll),
        workers: Vec::new(),
        stats: Vec::new(),
    };
    for queues in groups {
        spawner.group(queues, false)?;
    }
    // TFTP on the fast path: each worker a side of its own, over one file cache and counters.
    let side = match (&fast, tftp) {
        (Some(_), Some((t, cache))) => Some(crate::tftpd::xdp::Shared::new(
            &t,
            cache,
            Some(sessions.lookup(clock)),
            Some(sessions.notes(clock)),
        )),
        _ => None,
    };
    if let (Some(f), Some(sh)) = (fast.as_mut(), &side) {
        f.tftp = Some(sh.stats.clone());
    }
    for (queues, link) in xdp_groups
        .into_iter()
        .zip(fast.iter().flat_map(|f| f.links.iter()))
    {
        let n = queues.len();
        let sides = (0..n)
            .map(|i| {
                side.as_ref().map(|sh| {
                    Box::new(crate::tftpd::xdp::XdpTftp::new(
                        sh,
                        link.steer.clone(),
                        i,
                        n,
                    )) as Box<dyn dhcp_worker::Side>
                })
            })
            .collect();
        spawner.group_with(queues, true, sides)?;
    }
    let Spawner { workers, stats, .. } = spawner;
    let fast = fast.map(Arc::new);
    if let Some(f) = &fast {
        let names: Vec<_> = f.links.iter().map(|l| l.name.as_str()).collect();
        tracing::info!(interfaces = ?names, workers = workers.len(), subnets = settings.dhcp.subnets.len(), "serving DHCP on the XDP fast path");
    } else if settings.dhcp_enabled {
        tracing::info!(listen = %local, workers = workers.len(), subnets = settings.dhcp.subnets.len(), "serving DHCP on the socket path");
    }
    Ok(Running {
        cell,
        reservations,
        sessions,
        settings: Mutex::new(settings.clone()),
        shutdown,
        workers,
        stats: WorkerStats(stats),
        local,
        clock,
        journal,
        fast,
        _dir_lock: dir_lock,
    })
}

/// The sockets of one interface (or of all, `None`): one per worker, sharing the port.
fn socket_group(
    settings: &Settings,
    iface: &Option<String>,
    port: &mut u16,
) -> anyhow::Result<Vec<(UdpRx, UdpTx)>> {
    let mut group = Vec::new();
    for _ in 0..settings.workers {
        let opts = SocketOptions {
            bind: SocketAddrV4::new(*settings.listen.ip(), *port),
            interface: iface.clone(),
            reuse_port: true,
            recv_timeout: dhcp_worker::RECV_TIMEOUT,
        };
        let sock = UdpSocket4::bind(&opts).with_context(|| {
            format!(
                "binding UDP {}:{}{}",
                settings.listen.ip(),
                port,
                iface
                    .as_ref()
                    .map(|i| format!(" on {i}"))
                    .unwrap_or_default()
            )
        })?;
        // Port 0 asks the kernel for one; the other workers then share the port it chose.
        *port = sock.local_addr()?.port();
        let sock = Arc::new(sock);
        // Every socket of the group receives every broadcast: the first takes them (and
        // passes each to its client's owner), the others drop their copies.
        let takes_broadcasts = group.is_empty();
        let rx = UdpRx::new(sock.clone(), takes_broadcasts).context("a DHCP receive queue")?;
        group.push((rx, UdpTx::new(sock)));
    }
    Ok(group)
}

/// Starts DHCP workers, a group of queues at a time, over any queue driver.
struct Spawner {
    cell: Arc<ServerCell>,
    sessions: Arc<crate::sessions::Sessions>,
    now: Arc<dyn Fn() -> bootstorm_time::Instant + Send + Sync>,
    shutdown: Arc<AtomicBool>,
    hints: Arc<HashMap<u32, u32>>,
    commits: Option<Arc<dyn Commits>>,
    coalesce: Duration,
    port: u16,
    busy_poll: Duration,
    workers: Vec<JoinHandle<()>>,
    stats: Vec<Arc<Mutex<Published>>>,
}

impl Spawner {
    /// One worker per queue of `queues`, sharing their hand-off inboxes; `pin`: each worker on
    /// a CPU of its own (queue order), as the fast path wants.
    fn group<R, T>(&mut self, queues: Vec<(R, T)>, pin: bool) -> anyhow::Result<()>
    where
        R: RxQueue + 'static,
        T: bootstorm_io::TxQueue + 'static,
    {
        let sides = queues.iter().map(|_| None).collect();
        self.group_with(queues, pin, sides)
    }

    /// [`Spawner::group`] with a [`dhcp_worker::Side`] for each worker.
    fn group_with<R, T>(
        &mut self,
        queues: Vec<(R, T)>,
        pin: bool,
        sides: Vec<Option<Box<dyn dhcp_worker::Side>>>,
    ) -> anyhow::Result<()>
    where
        R: RxQueue + 'static,
        T: bootstorm_io::TxQueue + 'static,
    {
        let mut sides = sides.into_iter();
        let inboxes: dhcp_worker::Group = queues
            .iter()
            .map(|(rx, _)| Inbox::new(rx.doorbell()))
            .collect();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        for (index, (rx, tx)) in queues.into_iter().enumerate() {
            let id = self.workers.len();
            let published = Arc::new(Mutex::new(Published::default()));
            self.stats.push(published.clone());
            let w = dhcp_worker::Worker {
                id,
                index,
                group: inboxes.clone(),
                tx,
                cell: self.cell.clone(),
                sessions: self.sessions.clone(),
                now: self.now.clone(),
                shutdown: self.shutdown.clone(),
                hints: self.hints.clone(),
                published,
                commits: self.commits.clone(),
                coalesce: self.coalesce,
                port: self.port,
                side: sides.next().flatten(),
                busy_poll: self.busy_poll,
            };
            let t = std::thread::Builder::new()
                .name(format!("dhcp-worker-{id}"))
                .spawn(move || {
                    if pin && let Err(e) = bootstorm_xdp::pin_current_thread(index % cpus) {
                        tracing::warn!(worker = id, error = %e, "cannot pin the worker to a CPU");
                    }
                    dhcp_worker::run(w, rx)
                })
                .context("spawning a worker")?;
            self.workers.push(t);
        }
        Ok(())
    }
}

/// Locks the lease directory, replays the journal into the lease table, starts it and makes it
/// the table's sink.
fn open_journal(
    l: &bootstorm_journal::Settings,
    repair: bool,
    cell: &Arc<ServerCell>,
    clock: Clock,
) -> anyhow::Result<(Arc<Journal>, DirLock)> {
    let server = cell.get();
    std::fs::create_dir_all(&l.dir)
        .with_context(|| format!("creating the lease directory {}", l.dir.display()))?;
    let lock = bootstorm_journal::lock_dir(&l.dir)?;
    let wall = WallClock::new(clock);
    let replayed = bootstorm_journal::replay(&l.dir, repair)?;
    let table = server.leases();
    let (bound, conflicts) = crate::leaseio::restore_records(table, &wall, &replayed.records);
    tracing::info!(dir = %l.dir.display(), records = replayed.read, clients = replayed.records.len(),
        bound, conflicts, torn = replayed.torn.is_some(), durability = ?l.durability, "leases restored from the journal");
    if let Some(r) = &replayed.repaired {
        tracing::error!(file = %r.path.display(), offset = r.offset, bytes_cut = r.bytes_cut,
            records_lost = r.records_lost, segments_set_aside = r.segments_set_aside.len(),
            "journal was repaired: what follows the damage was set aside as *.damaged");
    }
    // Snapshots list the table serving now (a reload replaces it).
    let source = cell.clone();
    let journal = Arc::new(
        Journal::start(
            l,
            wall,
            replayed.next_segment,
            &replayed.records,
            Box::new(move || source.get().leases().leases(clock.now())),
        )
        .with_context(|| format!("starting the lease journal in {}", l.dir.display()))?,
    );
    table.set_sink(journal.clone());
    Ok((journal, lock))
}

/// Formats a hardware address as colon-separated hex.
pub fn fmt_hw(hw: &[u8]) -> String {
    Hw(hw).to_string()
}

/// A hardware address shown as colon-separated hex, without allocating (log lines).
pub struct Hw<'a>(pub &'a [u8]);

impl std::fmt::Display for Hw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_hex(f, self.0, |i| (i > 0).then_some(b':'))
    }
}

/// Writes `bytes` as lowercase hex, `sep(i)` before byte `i`, a few dozen characters at a time
/// from a buffer on the stack rather than a formatting call per byte: MACs are formatted for
/// every lease logged and, by the session search, for every session under its shard's lock.
pub fn write_hex(
    f: &mut impl std::fmt::Write,
    bytes: &[u8],
    sep: impl Fn(usize) -> Option<u8>,
) -> std::fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 48];
    let mut n = 0;
    for (i, b) in bytes.iter().enumerate() {
        if n + 3 > buf.len() {
            f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| std::fmt::Error)?)?;
            n = 0;
        }
        if let Some(c) = sep(i) {
            buf[n] = c;
            n += 1;
        }
        buf[n] = HEX[usize::from(b >> 4)];
        buf[n + 1] = HEX[usize::from(b & 15)];
        n += 2;
    }
    f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| std::fmt::Error)?)
}

/// Once a minute, at info level, one line per reason of what went unanswered (and NAKs by
/// reason, offers without a boot file): counts since the last line, from the workers' totals.
#[derive(Default)]
pub struct DropSummary {
    last: Stats,
}

impl DropSummary {
    /// How often it speaks.
    pub const INTERVAL: Duration = Duration::from_secs(60);

    /// Logs what changed since the last call.
    pub fn log(&mut self, now: &Stats) {
        use bootstorm_dhcp::{DropReason, NakReason};
        for r in DropReason::ALL {
            let n = now.drops(r) - self.last.drops(r);
            if n > 0 && r != DropReason::NoReplyExpected {
                tracing::info!(target: "bootstorm::drop", reason = r.name(), count = n,
                    "requests dropped in the last minute (--log-level debug shows each)");
            }
        }
        for r in NakReason::ALL {
            let n = now.naks[r.index()] - self.last.naks[r.index()];
            if n > 0 {
                tracing::info!(target: "bootstorm::drop", reason = r.name(), count = n, text = r.text(),
                    "NAKs sent in the last minute");
            }
        }
        let n = now.no_boot_rule - self.last.no_boot_rule;
        if n > 0 {
            tracing::info!(target: "bootstorm::drop", reason = "no_boot_rule", count = n,
                "boot firmware offered no boot file in the last minute: no [[boot]] rule matched");
        }
        self.last = now.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer for a test subscriber: everything into one shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Issue 12.15: at info, one line per drop reason per minute with its count (and NAKs by
    /// reason, and boot firmware that matched no rule); reasons without drops say nothing.
    #[test]
    fn drop_summary_speaks_once_per_reason_with_counts() {
        use bootstorm_dhcp::{DropReason, NakReason};
        let cap = Captured::default();
        let w = cap.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        let mut sum = DropSummary::default();
        let mut st = Stats::default();
        st.dropped[DropReason::ALL
            .iter()
            .position(|r| *r == DropReason::PoolExhausted)
            .unwrap()] = 7;
        st.dropped[DropReason::ALL
            .iter()
            .position(|r| *r == DropReason::NoReplyExpected)
            .unwrap()] = 3;
        st.naks[NakReason::NotItsAddress.index()] = 2;
        st.no_boot_rule = 4;
        tracing::subscriber::with_default(sub, || {
            sum.log(&st);
            sum.log(&st); // nothing new: nothing said
        });
        let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains("reason=\"pool_exhausted\"") && lines[0].contains("count=7"),
            "{text}"
        );
        assert!(
            lines[1].contains("not_its_address") && lines[1].contains("count=2"),
            "{text}"
        );
        assert!(
            lines[2].contains("no_boot_rule") && lines[2].contains("count=4"),
            "{text}"
        );
    }
}
