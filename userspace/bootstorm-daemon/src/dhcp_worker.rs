//! The DHCP worker: one loop, generic over the packet queues ([`bootstorm_io`]), that the daemon
//! runs on sockets and the tests run on in-memory queues.
//!
//! Per batch a worker
//! 1. sends the replies it held that the journal has made durable since (in the order they were
//!    built: a reply that waits holds back every later one of this worker);
//! 2. serves what other workers handed it (see below);
//! 3. receives a batch: each broadcast whose client another worker owns
//!    ([`bootstorm_dhcp::shard::owner`]) goes to that worker's hand-off queue (a bounded
//!    lock-free `ArrayQueue`, and the owner's doorbell if it sleeps); the rest it serves (a
//!    unicast comes from one source, the client or its relay, which the kernel or the NIC always
//!    hashes to the same queue);
//! 4. sends what it built, except replies whose outcome names a journal sequence not yet durable
//!    (RFC 2131 4.3.1, commit before ACK): those wait in its own queue until the journal rings
//!    its doorbell. The journal never sends anything and knows nothing of sockets.
//!
//! With the socket driver only one socket of a `SO_REUSEPORT` group takes broadcasts, so each
//! datagram reaches exactly one worker first; on a multi-queue NIC every DISCOVER from
//! 0.0.0.0:68 lands on one queue. Both then share the same rule, taken from the parsed packet.

use crate::logbuf;
use crate::serve::{Hw, ServerCell};
use crate::sessions::Sessions;
use bootstorm_dhcp::{Destination, Event, EventKind, Server, Stats};
use bootstorm_io::{Doorbell, MAX_DATAGRAM, RxMeta, RxQueue, TxMeta, TxQueue};
use bootstorm_journal::{Failed, Journal, Listener};
use bootstorm_time::Instant;
use bootstorm_wire::dhcp::CLIENT_PORT;
use crossbeam_queue::ArrayQueue;
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a worker waits for a batch before it looks at the shutdown flag: shutdown takes
/// at most this long, and idle workers wake ten times a second, which costs nothing measurable.
pub const RECV_TIMEOUT: Duration = Duration::from_millis(100);

/// Datagrams a hand-off queue holds: a burst of DISCOVERs passed on while the owner is busy,
/// as much as another queue's receive ring holds (a fast-path ring of 8,192 frames, half of it
/// someone else's broadcasts, from each of two other queues: a hall powering on at once).
/// Beyond that the owner is overloaded and the datagram is dropped (counted); each held
/// datagram is a copy of at most a frame, so this bounds a worker's inbox to a few MiB.
pub const HANDOFF_CAPACITY: usize = 8192;

/// How soon a worker with frames left in its transmit ring (see [`TxQueue::unsent`]) wakes to
/// kick them on.
const UNSENT_RETRY: Duration = Duration::from_millis(1);

/// Replies a worker holds for the journal at most; beyond that it waits for the sync itself
/// (so memory stays bounded if the disk stalls).
pub const MAX_HELD: usize = 1024;

/// What a worker needs of the journal: how far it is durable, a doorbell when that advances,
/// and a blocking wait. The lease journal is one; a test's fake journal is another.
pub trait Commits: Send + Sync {
    /// The highest durable sequence, or why no more will become durable.
    fn durable(&self) -> Result<u64, Failed>;
    /// Calls `f` with the durable sequence after each advance ([`u64::MAX`] when no more will).
    fn on_durable(&self, f: Listener);
    /// Blocks until `seq` is durable.
    fn wait(&self, seq: u64) -> Result<(), Failed>;
}

impl Commits for Journal {
    fn durable(&self) -> Result<u64, Failed> {
        Journal::durable(self)
    }
    fn on_durable(&self, f: Listener) {
        Journal::on_durable(self, f)
    }
    fn wait(&self, seq: u64) -> Result<(), Failed> {
        Journal::wait(self, seq)
    }
}

/// Traffic beside DHCP on the same queue: on the fast path the XDP program steers TFTP to the
/// socket DHCP uses, so the queue's one worker serves both. A `Side` takes the datagrams that
/// are not for the DHCP port and answers through the worker's transmit queue.
pub trait Side: Send {
    /// The worker (of `n` in the group) that owns this datagram, or None to drop it.
    fn owner(&self, data: &[u8], meta: &RxMeta, n: usize) -> Option<usize>;
    /// Serves a datagram this worker owns.
    fn handle(&mut self, now: Instant, data: &[u8], meta: &RxMeta);
    /// Pushes what is due onto `tx` (flushing it when full); returns its next deadline.
    fn transmit(&mut self, now: Instant, tx: &mut dyn TxQueue) -> Option<Instant>;
    /// True while it has work in flight that wants quick answers (receive coalescing off).
    fn busy(&self) -> bool;
}

/// The worker's own counters (the DHCP core counts the protocol in [`Stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Datagrams passed to the worker that owns their client.
    pub handed_off: u64,
    /// Datagrams dropped because the owner's hand-off queue was full (it is overloaded).
    pub handoff_full: u64,
    /// Replies held until the journal made their lease changes durable.
    pub held: u64,
    /// Replies never sent because the journal failed before they became durable.
    pub withheld: u64,
    /// Replies the transmit queue refused.
    pub send_failed: u64,
}

impl IoStats {
    /// Adds another worker's counters to these.
    pub fn add(&mut self, o: &IoStats) {
        self.handed_off += o.handed_off;
        self.handoff_full += o.handoff_full;
        self.held += o.held;
        self.withheld += o.withheld;
        self.send_failed += o.send_failed;
    }
}

/// A worker's counters as published after every batch.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// The DHCP core's.
    pub core: Stats,
    /// The I/O loop's.
    pub io: IoStats,
}

/// A datagram handed from the worker that received it to the one that owns its client.
struct Handed {
    data: Vec<u8>,
    meta: RxMeta,
}

/// A worker's hand-off queue and how to wake it.
pub struct Inbox {
    queue: ArrayQueue<Handed>,
    /// Datagrams pushed since the owner last looked: the pusher that finds it 0 rings.
    pending: AtomicUsize,
    bell: Doorbell,
}

impl Inbox {
    /// An inbox for the worker whose receive queue gave `bell`.
    pub fn new(bell: Doorbell) -> Arc<Inbox> {
        Arc::new(Inbox {
            queue: ArrayQueue::new(HANDOFF_CAPACITY),
            pending: AtomicUsize::new(0),
            bell,
        })
    }

    fn push(&self, h: Handed) -> bool {
        if self.queue.push(h).is_err() {
            return false;
        }
        if self.pending.fetch_add(1, Ordering::AcqRel) == 0 {
            self.bell.ring();
        }
        true
    }
}

/// The workers that share one set of clients (one interface): their inboxes, by index.
pub type Group = Arc<[Arc<Inbox>]>;

/// Everything a worker owns and shares, but its receive queue (given to [`run`] beside it, so
/// the loop borrows it on its own and serves a received datagram in place).
pub struct Worker<T> {
    /// For log lines.
    pub id: usize,
    /// Its place in `group`.
    pub index: usize,
    /// The workers serving the same clients.
    pub group: Group,
    /// Its transmit queue.
    pub tx: T,
    /// The DHCP core (replaced by a reload).
    pub cell: Arc<ServerCell>,
    /// The boot-session registry.
    pub sessions: Arc<Sessions>,
    /// The time now (a real clock, or a test's).
    pub now: Arc<dyn Fn() -> Instant + Send + Sync>,
    /// Set to stop.
    pub shutdown: Arc<AtomicBool>,
    /// Receiving interface -> the subnet served directly on it.
    pub hints: Arc<HashMap<u32, u32>>,
    /// Where its counters are published.
    pub published: Arc<Mutex<Published>>,
    /// The journal, if leases are kept.
    pub commits: Option<Arc<dyn Commits>>,
    /// Receive coalescing (`[server] rx_coalesce`).
    pub coalesce: Duration,
    /// The DHCP port: datagrams to any other go to `side`.
    pub port: u16,
    /// What serves the traffic beside DHCP (the fast path's TFTP), if any.
    pub side: Option<Box<dyn Side>>,
    /// While the side is busy, poll the queue this long before sleeping (`[tftp] busy_poll`:
    /// a lockstep client's next ACK is microseconds away).
    pub busy_poll: Duration,
}

/// A reply waiting for the journal.
struct HeldReply {
    seq: u64,
    data: Vec<u8>,
    meta: TxMeta,
}

/// The loop's state: the worker without its receive queue (which the loop borrows on its own,
/// so a received datagram is served in place), and what it keeps between batches.
struct Loop<T> {
    w: Worker<T>,
    stats: Stats,
    io: IoStats,
    held: VecDeque<HeldReply>,
    spare: Vec<Vec<u8>>,
    /// The sequence the journal's doorbell should ring for (0: none).
    wants: Arc<AtomicU64>,
    out: Box<[u8; MAX_DATAGRAM]>,
}

/// Runs a worker on receive queue `rx` until its shutdown flag is set; then sends what it still
/// holds once durable.
pub fn run<R: RxQueue, T: TxQueue>(w: Worker<T>, mut rx: R) {
    let wants = Arc::new(AtomicU64::new(0));
    if let Some(c) = &w.commits {
        let (wants, bell) = (wants.clone(), rx.doorbell());
        c.on_durable(Box::new(move |durable| {
            let want = wants.load(Ordering::SeqCst);
            if want != 0
                && durable >= want
                && wants
                    .compare_exchange(want, 0, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                bell.ring();
            }
        }));
    }
    let mut l = Loop {
        w,
        stats: Stats::default(),
        io: IoStats::default(),
        held: VecDeque::new(),
        spare: Vec::new(),
        wants,
        out: Box::new([0; MAX_DATAGRAM]),
    };
    l.run(&mut rx);
}

impl<T: TxQueue> Loop<T> {
    fn run<R: RxQueue>(&mut self, rx: &mut R) {
        logbuf::buffer_this_thread();
        let mut last_flush = std::time::Instant::now();
        let inbox = self.w.group[self.w.index].clone();
        while !self.w.shutdown.load(Ordering::Relaxed) {
            if last_flush.elapsed() >= logbuf::FLUSH_INTERVAL {
                logbuf::flush_thread();
                last_flush = std::time::Instant::now();
            }
            self.release();
            // What other workers passed on: this worker owns those clients.
            inbox.pending.store(0, Ordering::Release);
            let mut handed = 0;
            if !inbox.queue.is_empty() {
                let server = self.w.cell.get();
                let now = (self.w.now)();
                while handed < HANDOFF_CAPACITY
                    && let Some(h) = inbox.queue.pop()
                {
                    match self.w.side.as_mut() {
                        Some(side) if h.meta.dst.port() != self.w.port => {
                            side.handle(now, &h.data, &h.meta)
                        }
                        _ => self.serve(&server, now, &h.data, &h.meta),
                    }
                    handed += 1;
                }
                self.flush();
            }
            let side_due = self.side_transmit();
            // Before a wait, so what was just done (hand-offs, held replies sent or withheld)
            // is visible while the worker sleeps.
            self.publish();
            let timeout = if !inbox.queue.is_empty() {
                Duration::ZERO
            } else {
                let mut t = self.arm();
                if self.w.tx.unsent() > 0 {
                    // Frames still in the transmit ring: wake soon to kick them on.
                    t = t.min(UNSENT_RETRY);
                }
                match side_due {
                    Some(due) => {
                        let left = due.saturating_since((self.w.now)()).as_millis();
                        t.min(Duration::from_millis(left))
                    }
                    None => t,
                }
            };
            let receive_began = std::time::Instant::now();
            let got = self
                .busy_wait(rx, timeout)
                .unwrap_or_else(|| rx.recv(timeout));
            // Awake now: the journal need not ring (the next loop looks for itself).
            self.wants.store(0, Ordering::SeqCst);
            let n = match got {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(worker = self.w.id, error = %e, "receive failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if n == 0 {
                self.flush();
                if handed == 0 {
                    // Idle: a good moment to write the log lines out.
                    logbuf::flush_thread();
                    last_flush = std::time::Instant::now();
                }
                continue;
            }
            // The core for this batch: a reload between batches takes effect at the next one.
            let server = self.w.cell.get();
            let now = (self.w.now)();
            let size = self.w.group.len();
            let mut side_seen = false;
            for i in 0..n {
                let (data, meta) = rx.get(i);
                if meta.dst.port() != self.w.port
                    && let Some(side) = self.w.side.as_mut()
                {
                    side_seen = true;
                    match side.owner(data, meta, size) {
                        Some(o) if o == self.w.index => side.handle(now, data, meta),
                        Some(o) => self.hand_off(o, data, meta),
                        None => {}
                    }
                    continue;
                }
                // A broadcast reached this worker only (one socket of a group takes them, an
                // RSS queue gets them all): its client's owner serves it. A unicast comes from
                // one source (the client at its address, or its relay) to whichever queue the
                // kernel or NIC hashes that source to, always the same: it is served here.
                let owner = if meta.broadcast {
                    bootstorm_dhcp::shard::owner(data, size)
                } else {
                    self.w.index
                };
                if owner != self.w.index {
                    self.hand_off(owner, data, meta);
                    continue;
                }
                self.serve(&server, now, data, meta);
            }
            self.flush();
            self.side_transmit();
            self.publish();
            // A side with work in flight (TFTP blocks in lockstep) wants its answers at once, and
            // so does another worker's side whose datagrams came here.
            let side_busy = side_seen || self.w.side.as_ref().is_some_and(|s| s.busy());
            if !side_busy
                && let Some(pause) = coalesce_pause(self.w.coalesce, n, receive_began.elapsed())
            {
                std::thread::sleep(pause);
            }
        }
        // At shutdown: what is held goes out once durable (or is dropped if it never will be).
        self.wait_for_held();
        self.publish();
        logbuf::flush_thread();
    }

    /// While the side is busy: polls `rx` without sleeping for up to `busy_poll` (yielding in
    /// between, so a client sharing the core runs at once); the receive, if one came.
    fn busy_wait<R: RxQueue>(
        &mut self,
        rx: &mut R,
        timeout: Duration,
    ) -> Option<std::io::Result<usize>> {
        let busy = self.w.side.as_ref().is_some_and(|s| s.busy());
        if !busy || self.w.busy_poll.is_zero() || timeout.is_zero() {
            return None;
        }
        let until = std::time::Instant::now() + self.w.busy_poll.min(timeout);
        let inbox = &self.w.group[self.w.index];
        loop {
            match rx.recv(Duration::ZERO) {
                // Something handed over (a transfer's ACK that landed on another queue): the
                // loop serves it at once.
                Ok(0) if !inbox.queue.is_empty() => return Some(Ok(0)),
                Ok(0) if std::time::Instant::now() < until => std::thread::yield_now(),
                Ok(0) => return None,
                r => return Some(r),
            }
        }
    }

    /// Passes a datagram to the worker of the group that owns it.
    fn hand_off(&mut self, owner: usize, data: &[u8], meta: &RxMeta) {
        let h = Handed {
            data: data.to_vec(),
            meta: *meta,
        };
        if self.w.group[owner].push(h) {
            self.io.handed_off += 1;
        } else {
            self.io.handoff_full += 1;
        }
    }

    /// Lets the side send what is due; returns its next deadline.
    fn side_transmit(&mut self) -> Option<Instant> {
        let side = self.w.side.as_mut()?;
        let due = side.transmit((self.w.now)(), &mut self.w.tx);
        self.flush();
        due
    }

    /// Serves one datagram: the reply goes to the transmit queue, or waits for the journal.
    fn serve(&mut self, server: &Server, now: Instant, data: &[u8], meta: &RxMeta) {
        let dmeta = bootstorm_dhcp::RxMeta {
            src: meta.src,
            subnet_hint: self.w.hints.get(&meta.ifindex).copied(),
            ifindex: meta.ifindex,
        };
        let outcome = server.handle(now, &dmeta, data, &mut self.out[..], &mut self.stats);
        if let Some(reply) = outcome.reply {
            let to = tx_meta(reply.dest, meta);
            let len = reply.len.min(MAX_DATAGRAM);
            if outcome.commit > 0 || !self.held.is_empty() {
                self.hold(outcome.commit, len, to);
            } else {
                self.push(len, &to);
            }
        }
        if let Some(ev) = outcome.event {
            self.w.sessions.seen(now, &ev);
            log_event(self.w.id, now, &ev, server);
        }
        if let Some(r) = outcome.dropped
            && r != bootstorm_dhcp::DropReason::NoReplyExpected
        {
            log_drop(self.w.id, r, outcome.who.as_ref(), meta.src);
        }
    }

    /// Queues the reply in `out` for sending now.
    fn push(&mut self, len: usize, to: &TxMeta) {
        if !self.w.tx.push(&self.out[..len], to) {
            self.flush();
            if !self.w.tx.push(&self.out[..len], to) {
                self.io.send_failed += 1;
            }
        }
    }

    /// Keeps the reply in `out` until `seq` is durable (and every reply held before it is sent).
    fn hold(&mut self, seq: u64, len: usize, to: TxMeta) {
        let seq = seq.max(self.held.back().map_or(0, |h| h.seq));
        let mut data = self.spare.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(&self.out[..len]);
        self.held.push_back(HeldReply {
            seq,
            data,
            meta: to,
        });
        self.io.held += 1;
        if self.held.len() >= MAX_HELD {
            // The disk is slower than the clients: wait for it here rather than grow.
            self.flush();
            self.wait_for_held();
        }
    }

    /// Waits until everything held is durable (or will never be), then sends it (or drops it).
    fn wait_for_held(&mut self) {
        if let (Some(c), Some(back)) = (&self.w.commits, self.held.back()) {
            let _ = c.wait(back.seq);
        }
        self.release();
    }

    /// Sends the held replies the journal made durable; drops them all if it failed.
    fn release(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let durable = match self.w.commits.as_ref().map(|c| c.durable()) {
            None => u64::MAX,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::error!(worker = self.w.id, dropped = self.held.len(), error = %e, "replies withheld");
                self.io.withheld += self.held.len() as u64;
                self.spare.extend(self.held.drain(..).map(|h| h.data));
                return;
            }
        };
        while let Some(h) = self.held.front() {
            if h.seq > durable {
                break;
            }
            let h = self.held.pop_front().expect("front exists");
            if !self.w.tx.push(&h.data, &h.meta) {
                self.flush();
                if !self.w.tx.push(&h.data, &h.meta) {
                    self.io.send_failed += 1;
                }
            }
            self.spare.push(h.data);
        }
        self.flush();
    }

    /// Asks the journal's doorbell for the oldest held reply; returns how long to wait.
    fn arm(&mut self) -> Duration {
        let Some(front) = self.held.front().map(|h| h.seq) else {
            return RECV_TIMEOUT;
        };
        self.wants.store(front, Ordering::SeqCst);
        // Checked after arming: a sync that finished just before is not missed.
        match self.w.commits.as_ref().map(|c| c.durable()) {
            Some(Ok(d)) if d < front => RECV_TIMEOUT,
            _ => {
                self.wants.store(0, Ordering::SeqCst);
                Duration::ZERO
            }
        }
    }

    fn flush(&mut self) {
        // Frames the kernel has not moved yet (the ring's last kick found the link busy) are
        // flushed again too, not only when the next reply happens to be queued.
        if self.w.tx.is_empty() && self.w.tx.unsent() == 0 {
            return;
        }
        // Counters first: whoever sees a reply sees the counters that include it.
        self.publish();
        match self.w.tx.flush() {
            Ok(r) if r.failed > 0 => {
                self.io.send_failed += r.failed as u64;
                tracing::warn!(worker = self.w.id, failed = r.failed, error = ?r.last_error, "some replies could not be sent");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(worker = self.w.id, error = %e, "send failed"),
        }
    }

    fn publish(&self) {
        if let Ok(mut g) = self.w.published.lock() {
            g.core.clone_from(&self.stats);
            g.io.clone_from(&self.io);
        }
    }
}

/// Where a reply goes, as the transmit queue takes it: a broadcast or link unicast leaves the
/// interface the request came in on, from the address it was sent to (the interface's own if
/// it was a broadcast).
fn tx_meta(dest: Destination, rx: &RxMeta) -> TxMeta {
    let (dst, l2_dst) = match dest {
        // A frame driver sends a unicast to the link-layer address its request came from (the
        // relay, the renewing client, or the router in front of it), from our address it was
        // sent to: it does no ARP. A socket driver (no `l2_src`) routes it.
        Destination::Unicast(a) if rx.l2_src.is_some() => (a, rx.l2_src),
        Destination::Unicast(a) => return TxMeta::to(a),
        Destination::Broadcast => (SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT), None),
        Destination::Link { addr, hwaddr } => (SocketAddrV4::new(addr, CLIENT_PORT), Some(hwaddr)),
    };
    // On the VLAN the request came on (a frame driver tags; a socket's VLAN device does).
    TxMeta {
        src: rx.local,
        ifindex: rx.ifindex,
        l2_dst,
        vlan: rx.vlan,
        ..TxMeta::to(dst)
    }
}

/// Receive coalescing (`[server] rx_coalesce`, see [`crate::config::DEFAULT_RX_COALESCE_MS`]):
/// after serving a batch of `n` datagrams whose receive waited `waited` for the first, how long
/// to let the next batch gather. Only while datagrams come faster than the interval (the
/// receive hardly waited), so an isolated request is never held back, and never after a full
/// batch (more are queued already).
pub fn coalesce_pause(interval: Duration, n: usize, waited: Duration) -> Option<Duration> {
    (!interval.is_zero() && n > 0 && n < bootstorm_io::BATCH && waited < interval)
        .then_some(interval)
}

/// One line per dropped request, at debug level (`--log-level debug`): who, and why. At info,
/// [`crate::serve::DropSummary`] says once a minute how many went per reason.
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

fn log_event(worker: usize, now: Instant, ev: &Event, server: &Server) {
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

#[cfg(test)]
pub(crate) mod tests;
