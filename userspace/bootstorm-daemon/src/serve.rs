//! The runtime: one socket per worker on the DHCP port (SO_REUSEPORT), each drained by its own
//! thread in batches, all sharing one [`Server`] core and its lease table.

use crate::config::Settings;
use crate::logbuf;
use anyhow::Context;
use bootstorm_dhcp::{Destination, Event, EventKind, RxMeta, Server, Stats};
use bootstorm_journal::{DirLock, Failed, Journal, WallClock};
use bootstorm_net::{RecvBatch, SendBatch, SocketOptions, UdpSocket4, interface_index};
use bootstorm_time::Clock;
use bootstorm_wire::dhcp::CLIENT_PORT;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a worker blocks in a receive before it looks at the shutdown flag: shutdown takes
/// at most this long, and idle workers wake ten times a second, which costs nothing measurable.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);

/// The counters each worker publishes after every batch; cheap to clone, so the control socket
/// can read them while the server runs.
#[derive(Clone, Default)]
pub struct WorkerStats(Vec<Arc<Mutex<Stats>>>);

impl WorkerStats {
    /// A snapshot of each worker's counters.
    pub fn per_worker(&self) -> Vec<Stats> {
        self.0
            .iter()
            .map(|s| s.lock().map(|g| g.clone()).unwrap_or_default())
            .collect()
    }

    /// All workers' counters added up.
    pub fn total(&self) -> Stats {
        let mut t = Stats::default();
        for s in self.per_worker() {
            t.add(&s);
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
    sessions: Arc<crate::sessions::Sessions>,
    settings: Mutex<Settings>,
    shutdown: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    stats: WorkerStats,
    local: SocketAddrV4,
    clock: Clock,
    journal: Option<Arc<Journal>>,
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
        let fresh = Arc::new(Server::new(new.dhcp.clone()).context("building the lease table")?);
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
    v
}

/// Binds the sockets and starts the workers.
pub fn start(settings: &Settings) -> anyhow::Result<Running> {
    let server = Arc::new(Server::new(settings.dhcp.clone()).context("building the lease table")?);
    let cell = Arc::new(ServerCell(std::sync::RwLock::new(server.clone())));
    let clock = Clock::new();
    let sessions = Arc::new(crate::sessions::Sessions::new());
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
        tracing::info!("no [[subnet]]: DHCP is off, serving boot files only");
        Vec::new()
    } else if settings.interfaces.is_empty() {
        vec![None]
    } else {
        settings.interfaces.iter().cloned().map(Some).collect()
    };
    let mut sockets = Vec::new();
    let mut port = settings.listen.port();
    for iface in &ifaces {
        for _ in 0..settings.workers {
            let opts = SocketOptions {
                bind: SocketAddrV4::new(*settings.listen.ip(), port),
                interface: iface.clone(),
                reuse_port: true,
                recv_timeout: RECV_TIMEOUT,
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
            port = sock.local_addr()?.port();
            sockets.push(sock);
        }
    }
    let local = SocketAddrV4::new(*settings.listen.ip(), port);
    let mut workers = Vec::new();
    let mut stats = Vec::new();
    for (id, sock) in sockets.into_iter().enumerate() {
        let shared = Arc::new(Mutex::new(Stats::default()));
        stats.push(shared.clone());
        let (cell, shutdown, hints) = (cell.clone(), shutdown.clone(), hints.clone());
        let sessions = sessions.clone();
        let journal = journal.clone();
        // Workers of one interface share broadcasts by shard; index within the group.
        let group = Group {
            index: id % settings.workers,
            size: settings.workers,
        };
        let coalesce = Coalesce(settings.rx_coalesce);
        let w = std::thread::Builder::new()
            .name(format!("dhcp-worker-{id}"))
            .spawn(move || {
                worker(Worker {
                    id,
                    group,
                    sock,
                    cell,
                    sessions,
                    clock,
                    shutdown,
                    hints,
                    shared,
                    journal,
                    coalesce,
                })
            })
            .context("spawning a worker")?;
        workers.push(w);
    }
    if settings.dhcp_enabled {
        tracing::info!(listen = %local, workers = workers.len(), subnets = settings.dhcp.subnets.len(), "serving DHCP on the socket path");
    }
    Ok(Running {
        cell,
        sessions,
        settings: Mutex::new(settings.clone()),
        shutdown,
        workers,
        stats: WorkerStats(stats),
        local,
        clock,
        journal,
        _dir_lock: dir_lock,
    })
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

/// A worker's place among the workers sharing one port on one interface.
#[derive(Clone, Copy, Debug)]
struct Group {
    index: usize,
    size: usize,
}

/// Which worker of a group serves a broadcast datagram. Linux delivers a broadcast to every
/// socket of a SO_REUSEPORT group, so without this every worker would answer it. Sharding by
/// chaddr keeps one client's retransmissions on one worker and spreads a broadcast storm (which
/// the kernel cannot spread: every DISCOVER comes from 0.0.0.0:68) over all of them.
fn broadcast_owner(datagram: &[u8], size: usize) -> usize {
    if size <= 1 {
        return 0;
    }
    // chaddr is bytes 28..44 of a DHCP message; anything shorter is malformed and goes to worker
    // 0, which counts the drop once.
    let Some(chaddr) = datagram.get(28..44) else {
        return 0;
    };
    // FNV-1a: a few nanoseconds, and good enough to spread MACs that differ in any byte.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in chaddr {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % size as u64) as usize
}

/// What a DHCP worker thread owns and shares.
struct Worker {
    id: usize,
    group: Group,
    sock: UdpSocket4,
    cell: Arc<ServerCell>,
    sessions: Arc<crate::sessions::Sessions>,
    clock: Clock,
    shutdown: Arc<AtomicBool>,
    hints: Arc<HashMap<u32, u32>>,
    shared: Arc<Mutex<Stats>>,
    journal: Option<Arc<Journal>>,
    coalesce: Coalesce,
}

fn worker(w: Worker) {
    let Worker {
        id,
        group,
        sock,
        cell,
        sessions,
        clock,
        shutdown,
        hints,
        shared,
        journal,
        coalesce,
    } = w;
    let sock = Arc::new(sock);
    let pool = Arc::new(BatchPool::default());
    let mut rx = RecvBatch::default();
    let mut tx = SendBatch::default();
    let mut stats = Stats::default();
    logbuf::buffer_this_thread();
    let mut last_flush = std::time::Instant::now();
    while !shutdown.load(Ordering::Relaxed) {
        if last_flush.elapsed() >= logbuf::FLUSH_INTERVAL {
            logbuf::flush_thread();
            last_flush = std::time::Instant::now();
        }
        let receive_began = std::time::Instant::now();
        let n = match sock.recv_batch(&mut rx) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(worker = id, error = %e, "receive failed");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if n == 0 {
            // Idle: a good moment to write the log lines out.
            logbuf::flush_thread();
            last_flush = std::time::Instant::now();
            continue;
        }
        let now = clock.now();
        // The core for this batch: a reload between batches takes effect at the next one.
        let server = cell.get();
        for i in 0..n {
            let (data, info) = rx.get(i);
            if info.is_broadcast() && broadcast_owner(data, group.size) != group.index {
                continue; // another worker of the group serves this client
            }
            let meta = RxMeta {
                src: info.src,
                subnet_hint: hints.get(&info.ifindex).copied(),
                ifindex: info.ifindex,
            };
            let outcome = server.handle(now, &meta, data, tx.next_buf(), &mut stats);
            if let Some(reply) = outcome.reply {
                let (dst, ifindex, src) = match reply.dest {
                    // A socket cannot address a frame to a MAC, so link unicast becomes broadcast,
                    // out of the interface the request came in on, from the address it was sent to
                    // (or the interface's own if it was a broadcast).
                    Destination::Broadcast | Destination::Link { .. } => {
                        let src = if info.is_broadcast() || info.dst.is_unspecified() {
                            Ipv4Addr::UNSPECIFIED
                        } else {
                            info.dst
                        };
                        (
                            SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
                            info.ifindex,
                            src,
                        )
                    }
                    Destination::Unicast(a) => (a, 0, Ipv4Addr::UNSPECIFIED),
                };
                tx.commit(reply.len, dst, ifindex, src);
            }
            if let Some(ev) = outcome.event {
                sessions.seen(&ev);
                log_event(id, now, &ev, &server);
            }
            if let Some(r) = outcome.dropped
                && r != bootstorm_dhcp::DropReason::NoReplyExpected
            {
                log_drop(id, r, outcome.who.as_ref(), info.src);
            }
            if tx.is_full() {
                flush(id, &sock, &mut tx, journal.as_deref(), &pool);
            }
        }
        flush(id, &sock, &mut tx, journal.as_deref(), &pool);
        if let Ok(mut g) = shared.lock() {
            g.clone_from(&stats);
        }
        if let Some(pause) = coalesce.pause(n, receive_began.elapsed()) {
            std::thread::sleep(pause);
        }
    }
    if let Ok(mut g) = shared.lock() {
        g.clone_from(&stats);
    }
    logbuf::flush_thread();
}

/// Receive coalescing (`[server] rx_coalesce`, see [`crate::config::DEFAULT_RX_COALESCE_MS`]).
#[derive(Clone, Copy, Debug)]
struct Coalesce(Duration);

impl Coalesce {
    /// After serving a batch of `n` datagrams whose receive waited `waited` for the first: how
    /// long to let the next batch gather. Only while datagrams come faster than the interval
    /// (the receive hardly waited), so an isolated request is never held back, and never after a
    /// full batch (more are queued already).
    fn pause(self, n: usize, waited: Duration) -> Option<Duration> {
        (!self.0.is_zero() && n > 0 && n < bootstorm_net::BATCH && waited < self.0)
            .then_some(self.0)
    }
}

/// Send batches handed to the journal and given back once sent; at most [`BatchPool::MAX`] are
/// out at a time (beyond that the worker waits for the sync itself, which bounds memory if the
/// disk stalls).
#[derive(Default)]
struct BatchPool {
    free: Mutex<Vec<SendBatch>>,
    out: std::sync::atomic::AtomicUsize,
}

impl BatchPool {
    const MAX: usize = 32;
}

fn send(id: usize, sock: &UdpSocket4, tx: &mut SendBatch) {
    if tx.is_empty() {
        return;
    }
    match sock.send_batch(tx) {
        Ok(r) if r.failed > 0 => {
            tracing::warn!(worker = id, failed = r.failed, error = ?r.last_error, "some replies could not be sent");
        }
        Ok(_) => {}
        Err(e) => tracing::error!(worker = id, error = %e, "send failed"),
    }
    tx.clear();
}

/// Sends `tx` if the journal kept what it announces, else drops it; empties it either way.
fn deliver(id: usize, sock: &UdpSocket4, tx: &mut SendBatch, durable: Result<(), Failed>) {
    match durable {
        Ok(()) => send(id, sock, tx),
        Err(e) => {
            tracing::error!(worker = id, dropped = tx.len(), error = %e, "replies withheld");
            tx.clear();
        }
    }
}

/// Sends the queued replies once the journal holds every lease change they announce (RFC 2131
/// 4.3.1: commit before the ACK). While a sync is under way the batch is handed to the journal,
/// whose writer sends it right after the sync, and the worker goes on receiving: it never sleeps
/// through a sync. If the journal failed, nothing is sent: a client without an ACK asks again,
/// a client with an ACK the server forgets is a duplicate address.
fn flush(
    id: usize,
    sock: &Arc<UdpSocket4>,
    tx: &mut SendBatch,
    journal: Option<&Journal>,
    pool: &Arc<BatchPool>,
) {
    let Some(j) = journal.filter(|j| j.this_thread_has_pending()) else {
        return send(id, sock, tx);
    };
    if tx.is_empty() {
        // Nothing announces these records (a RELEASE, a DECLINE): no need to wait for them.
        return j.after_this_thread(Box::new(|_| {}));
    }
    if pool.out.load(Ordering::Acquire) >= BatchPool::MAX {
        return deliver(id, sock, tx, j.wait_for_this_thread());
    }
    let spare = pool
        .free
        .lock()
        .ok()
        .and_then(|mut f| f.pop())
        .unwrap_or_default();
    let mut batch = std::mem::replace(tx, spare);
    pool.out.fetch_add(1, Ordering::AcqRel);
    let (sock, pool) = (sock.clone(), pool.clone());
    j.after_this_thread(Box::new(move |r| {
        deliver(id, &sock, &mut batch, r);
        if let Ok(mut f) = pool.free.lock() {
            f.push(batch);
        }
        pool.out.fetch_sub(1, Ordering::AcqRel);
    }));
}

/// Formats a hardware address as colon-separated hex.
pub fn fmt_hw(hw: &[u8]) -> String {
    Hw(hw).to_string()
}

/// A hardware address shown as colon-separated hex, without allocating (log lines).
pub struct Hw<'a>(pub &'a [u8]);

impl std::fmt::Display for Hw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// One line per dropped request, at debug level (`--log-level debug`): who, and why. At info,
/// [`DropSummary`] says once a minute how many went per reason.
fn log_drop(
    worker: usize,
    reason: bootstorm_dhcp::DropReason,
    who: Option<&bootstorm_dhcp::Who>,
    src: SocketAddrV4,
) {
    match who {
        Some(w) => tracing::debug!(target: "bootstorm::drop", worker, reason = reason.name(),
            mac = %Hw(w.hwaddr()), xid = %format_args!("{:#010x}", w.xid),
            giaddr = %w.giaddr.unwrap_or(Ipv4Addr::UNSPECIFIED), %src, "dropped"),
        None => {
            tracing::debug!(target: "bootstorm::drop", worker, reason = reason.name(), %src, "dropped")
        }
    }
}

fn log_event(worker: usize, now: bootstorm_time::Instant, ev: &Event, server: &Server) {
    let lease_secs = ev.expires.map(|e| e.saturating_since(now).as_secs());
    // What gave the client its boot file: the rule's name (or the reservation), and the file.
    let cfg = server.config();
    let (rule, file) = match ev.boot {
        Some(bootstorm_dhcp::BootFrom::Rule(i)) => cfg
            .boot_rules
            .get(usize::from(i))
            .map_or(("?", ""), |r| (r.name.as_str(), r.boot.file.as_str())),
        Some(bootstorm_dhcp::BootFrom::Reservation(i)) => (
            "reservation",
            cfg.reservations
                .get(usize::from(i))
                .and_then(|r| r.boot.as_ref())
                .map_or("", |b| b.file.as_str()),
        ),
        None if ev.no_boot_rule => ("none matched", ""),
        None => ("", ""),
    };
    let nak_reason = ev.nak.map(|n| n.text()).unwrap_or("");
    // An OFFER only holds an address for a moment; what an operator follows is bind, NAK,
    // release, decline and inform. Offers are there at debug level (--log-level debug).
    macro_rules! lease_line {
        ($level:ident) => {
            tracing::$level!(
                target: "bootstorm::lease",
                worker,
                event = ev.kind.name(),
                ip = %ev.addr,
                mac = %Hw(ev.hwaddr()),
                xid = %format_args!("{:#010x}", ev.xid),
                subnet = ev.subnet,
                lease_secs,
                rule,
                file,
                reason = nak_reason,
                reclaimed = ev.reclaimed,
                "lease"
            )
        };
    }
    match ev.kind {
        EventKind::Offer => lease_line!(debug),
        _ => lease_line!(info),
    }
    if ev.no_boot_rule && ev.kind == EventKind::Offer {
        tracing::debug!(target: "bootstorm::drop", worker, reason = "no_boot_rule",
            mac = %Hw(ev.hwaddr()), xid = %format_args!("{:#010x}", ev.xid),
            "boot firmware matched no boot rule: offered an address without a boot file");
    }
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

    #[test]
    fn coalescing_pauses_only_under_load() {
        let ms = Duration::from_millis;
        let c = Coalesce(ms(1));
        // Datagrams arrive faster than the interval: let the next batch gather.
        assert_eq!(c.pause(3, Duration::from_micros(200)), Some(ms(1)));
        assert_eq!(c.pause(1, Duration::ZERO), Some(ms(1)));
        // The receive waited longer than the interval: traffic is sparse, answer at once.
        assert_eq!(c.pause(1, ms(1)), None);
        assert_eq!(c.pause(1, ms(80)), None);
        // Nothing received (timeout), or a full batch: more may be queued, read on.
        assert_eq!(c.pause(0, Duration::ZERO), None);
        assert_eq!(c.pause(bootstorm_net::BATCH, Duration::ZERO), None);
        // Off.
        assert_eq!(Coalesce(Duration::ZERO).pause(3, Duration::ZERO), None);
    }

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

    #[test]
    fn broadcasts_are_shared_out_by_chaddr() {
        let mut counts = [0usize; 4];
        for n in 0..4000u32 {
            let mut d = [0u8; 300];
            d[28..34].copy_from_slice(&[0x52, 0x54, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
            let o = broadcast_owner(&d, 4);
            assert_eq!(o, broadcast_owner(&d, 4), "stable");
            counts[o] += 1;
        }
        assert!(counts.iter().all(|c| *c > 800), "{counts:?}");
        assert_eq!(broadcast_owner(&[1, 2, 3], 4), 0);
        assert_eq!(broadcast_owner(&[0; 300], 1), 0);
    }
}
