//! Boot sessions: one record per booting machine, keyed by MAC, with the time of each phase as
//! the services saw it (DHCP offer and ACK, each boot file and its completion, iSCSI login and
//! first read), its current phase, and its failures with their reasons. Per-phase latency
//! histograms (hdrhistogram) across all machines.
//!
//! Memory is bounded twice: at most `live` sessions in progress (the oldest-started one moves to
//! the recent ring when a new machine would exceed it) and a ring of at most `recent` ended
//! sessions. A session ends when its machine starts over after it booted (a new DISCOVER answered
//! after its first iSCSI read), when it was idle for `idle` ([`Boots::sweep`]), or by the cap.
//! Each session keeps at most [`MAX_STEPS`] steps of its timeline (later ones are counted).
//!
//! Written by hand: it is the product's own state (what a boot is, in which phase), fed from the
//! DHCP workers' hot path under one short lock per event. The hot path is kept cheap: MACs are a
//! fixed-size `Copy` key (no allocation per session), the maps hash with foldhash (seeded per
//! process) and are sized up front, and a large registry is split into shards by MAC, each with
//! its own lock, caps (the configured ones divided among them) and histograms, merged on read, so
//! the DHCP workers do not wait on each other. Eviction is by start order within a shard.

use bootstorm_time::{Duration, Instant};
use hdrhistogram::Histogram;
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A hardware address as a fixed-size key (DHCP's chaddr holds at most 16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac {
    len: u8,
    bytes: [u8; 16],
}

impl Mac {
    /// The key of `mac` (bytes beyond 16 are not kept: no client address is that long).
    pub fn new(mac: &[u8]) -> Mac {
        let n = mac.len().min(16);
        let mut bytes = [0; 16];
        bytes[..n].copy_from_slice(&mac[..n]);
        Mac {
            len: n as u8,
            bytes,
        }
    }
}

impl std::ops::Deref for Mac {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::serve::fmt_hw(self))
    }
}

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Steps kept per session.
pub const MAX_STEPS: usize = 48;

/// Steps a session holds in its slot, before it takes a buffer of its own: a DHCP exchange's
/// offer and ACK, so a storm of new machines writes no second allocation per machine (nor reads
/// one back when the slot is reused).
pub const INLINE_STEPS: usize = 2;

/// A session's timeline.
pub type Steps = smallvec::SmallVec<[(Instant, Step); INLINE_STEPS]>;

/// Where a machine is in its boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// DISCOVER answered, no ACK yet.
    Dhcp,
    /// Address bound, no boot file asked for yet.
    Bound,
    /// A TFTP transfer in progress.
    Tftp,
    /// An HTTP download served, its client not heard from since.
    Http,
    /// A boot file loaded; the machine has not gone further yet.
    Loaded,
    /// Logged in to iSCSI, no read yet.
    Iscsi,
    /// Its first iSCSI read: booted from its disk.
    Booted,
    /// The last step failed (the reason is in the session).
    Failed,
}

impl Phase {
    /// Every phase, in boot order.
    pub const ALL: [Phase; 8] = [
        Phase::Dhcp,
        Phase::Bound,
        Phase::Tftp,
        Phase::Http,
        Phase::Loaded,
        Phase::Iscsi,
        Phase::Booted,
        Phase::Failed,
    ];

    /// Its name in the API, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Dhcp => "dhcp",
            Phase::Bound => "bound",
            Phase::Tftp => "tftp",
            Phase::Http => "http",
            Phase::Loaded => "loaded",
            Phase::Iscsi => "iscsi",
            Phase::Booted => "booted",
            Phase::Failed => "failed",
        }
    }

    /// Its place in [`Phase::ALL`] (and in [`Counts::per_phase`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The latencies measured across machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lap {
    /// A round's first offer to its ACK.
    Dhcp,
    /// A TFTP download, request to last ACK.
    Tftp,
    /// The ACK to the iSCSI login.
    IscsiLogin,
    /// The login to the first read.
    IscsiRead,
    /// The session's first offer to its first iSCSI read.
    Boot,
}

impl Lap {
    /// Every lap.
    pub const ALL: [Lap; 5] = [
        Lap::Dhcp,
        Lap::Tftp,
        Lap::IscsiLogin,
        Lap::IscsiRead,
        Lap::Boot,
    ];

    /// Its name in the API and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Lap::Dhcp => "dhcp",
            Lap::Tftp => "tftp",
            Lap::IscsiLogin => "iscsi_login",
            Lap::IscsiRead => "iscsi_first_read",
            Lap::Boot => "boot",
        }
    }
}

/// What happened to a machine, as a service reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A DISCOVER answered with this address (`round` 1 is the firmware's, 2 an iPXE chain...).
    Offer {
        addr: Ipv4Addr,
        round: u32,
        /// The machine's UUID (option 97), if it sent one.
        uuid: Option<[u8; 16]>,
    },
    /// The address bound (ACK).
    Ack { addr: Ipv4Addr },
    /// A NAK, and why.
    Nak { reason: &'static str },
    /// The machine is boot firmware but no boot rule or reservation gave it a boot file.
    NoBootRule,
    /// It gave its address back.
    Release,
    /// It declined its address (in use by another).
    Decline,
    /// A boot file asked for.
    File { proto: &'static str, name: Box<str> },
    /// A boot file delivered.
    FileDone {
        proto: &'static str,
        name: Box<str>,
        bytes: u64,
        millis: u64,
        resent: u64,
    },
    /// A boot file refused or its transfer failed.
    FileFailed {
        proto: &'static str,
        name: Box<str>,
        reason: Box<str>,
    },
    /// Logged in to an iSCSI target.
    IscsiLogin {
        initiator: Box<str>,
        target: Box<str>,
    },
    /// An iSCSI login refused.
    IscsiRefused { reason: Box<str> },
    /// Its first iSCSI read.
    IscsiRead,
}

impl Step {
    /// Its kind's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Offer { .. } => "offer",
            Step::Ack { .. } => "ack",
            Step::Nak { .. } => "nak",
            Step::NoBootRule => "no-boot-rule",
            Step::Release => "release",
            Step::Decline => "decline",
            Step::File { .. } => "file",
            Step::FileDone { .. } => "file-done",
            Step::FileFailed { .. } => "file-failed",
            Step::IscsiLogin { .. } => "iscsi-login",
            Step::IscsiRefused { .. } => "iscsi-refused",
            Step::IscsiRead => "iscsi-read",
        }
    }

    /// The failure it reports, if it is one.
    pub fn failure(&self) -> Option<String> {
        Some(match self {
            Step::Nak { reason } => format!("DHCPNAK: {reason}"),
            Step::NoBootRule => {
                "no boot rule matched: the machine got an address and nothing to boot".into()
            }
            Step::FileFailed {
                proto,
                name,
                reason,
            } => format!("{proto} {name}: {reason}"),
            Step::IscsiRefused { reason } => format!("iSCSI login refused: {reason}"),
            _ => return None,
        })
    }

    /// The phase it leaves the machine in.
    fn phase(&self, before: Phase) -> Phase {
        match self {
            Step::Offer { .. } => Phase::Dhcp,
            Step::Ack { .. } => Phase::Bound,
            Step::File { proto, .. } if *proto == "tftp" => Phase::Tftp,
            Step::File { .. } => Phase::Http,
            Step::FileDone { .. } => Phase::Loaded,
            Step::IscsiLogin { .. } => Phase::Iscsi,
            Step::IscsiRead => Phase::Booted,
            Step::Release | Step::Decline => Phase::Dhcp,
            _ if self.failure().is_some() => Phase::Failed,
            _ => before,
        }
    }
}

/// One machine's boot.
///
/// Laid out by hand (`repr(C)`, a slot per 64-byte line boundary): what a step reads of a
/// session it did not touch lately (the oldest one, when a new machine ends it at the live cap,
/// and a reused slot) is in the first line, so a storm's new machine costs fewer cache misses.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub struct Session {
    // The first line: what ending and reusing a slot read, and what every step writes.
    seq: u64,
    end_seq: u64,
    /// When its first step came.
    pub started: Instant,
    /// When its last step came.
    pub updated: Instant,
    /// Its hardware address.
    pub mac: Mac,
    /// Where it is.
    pub phase: Phase,
    /// True once ended (in the recent ring).
    pub ended: bool,
    loaded: bool,
    /// DHCP rounds so far (a chain-loaded iPXE starts the second).
    pub rounds: u32,
    /// Its address, once offered.
    pub addr: Option<Ipv4Addr>,
    // The rest.
    /// Steps beyond [`MAX_STEPS`], not kept.
    pub steps_dropped: u32,
    /// Its timeline: when, what (the first [`INLINE_STEPS`] in the slot itself).
    pub steps: Steps,
    round_start: Option<Instant>,
    bound_at: Option<Instant>,
    login_at: Option<Instant>,
    /// Its UUID (DHCP option 97), once it sent one.
    pub uuid: Option<[u8; 16]>,
    /// Its iSCSI initiator name, once it logged in.
    pub iqn: Option<Box<str>>,
    /// The last failure, if any (kept when the machine retries).
    pub failure: Option<String>,
}

/// Counts for the storm view and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Live sessions per phase (in [`Phase::ALL`] order).
    pub per_phase: [u64; 8],
    /// Sessions started.
    pub started: u64,
    /// Boot files delivered (TFTP or HTTP).
    pub loaded: u64,
    /// Sessions that reached their first iSCSI read.
    pub booted: u64,
    /// Failures seen (steps that failed).
    pub failures: u64,
    /// Sessions ended by the live cap (not by their machine or by idling).
    pub evicted: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        for (a, b) in self.per_phase.iter_mut().zip(o.per_phase) {
            *a += b;
        }
        self.started += o.started;
        self.loaded += o.loaded;
        self.booted += o.booted;
        self.failures += o.failures;
        self.evicted += o.evicted;
    }
}

/// One shard: the sessions of the MACs that hash to it. Sessions stay in their slot from start
/// to the end of their time in the recent ring; then the slot (and its steps' buffer) serves the
/// next new machine, so a storm neither moves sessions nor allocates per machine, and the map
/// holds small entries.
struct Inner {
    /// Live sessions' slots by MAC.
    index: Map<Mac, u32>,
    /// Every session held, live or ended.
    slots: Vec<Session>,
    /// Slots free for the next new session.
    free: Vec<u32>,
    /// Live slots by start order (`(seq, slot)`; entries of ended sessions are skipped lazily).
    order: VecDeque<(u64, u32)>,
    /// Ended sessions' slots, oldest first.
    recent: VecDeque<u32>,
    counts: Counts,
    laps: Vec<Histogram<u64>>,
    live_cap: usize,
    recent_cap: usize,
}

/// The registry of boot sessions.
pub struct Boots {
    shards: Box<[Mutex<Inner>]>,
    /// Start and end order across shards.
    seq: AtomicU64,
    live_cap: usize,
    recent_cap: usize,
    idle: Duration,
}

impl std::fmt::Debug for Boots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Boots")
            .field("live_cap", &self.live_cap)
            .field("recent_cap", &self.recent_cap)
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// Defaults: 16,384 live sessions (a hall's worth of machines booting at once), 4,096 recent.
pub const DEFAULT_LIVE: usize = 16_384;
/// See [`DEFAULT_LIVE`].
pub const DEFAULT_RECENT: usize = 4_096;
/// Slots made when the registry is (the default caps' worth: 7.5 MiB); beyond that they
/// are made as machines come.
const PREPARED: usize = DEFAULT_LIVE + DEFAULT_RECENT;
/// A session with no step for this long ends.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(600);
/// Shards of a registry of at least [`SHARD_FROM`] live sessions (one below that, where the caps
/// are small enough that dividing them would change which sessions stay).
const SHARDS: usize = 8;
/// See [`SHARDS`].
const SHARD_FROM: usize = 4_096;
const _: () = assert!(SHARDS.is_power_of_two());

impl Default for Boots {
    fn default() -> Boots {
        Boots::new(DEFAULT_LIVE, DEFAULT_RECENT, DEFAULT_IDLE)
    }
}

/// `total` divided among `n` shards, the first ones taking the remainder.
fn share(total: usize, n: usize, i: usize) -> usize {
    total / n + usize::from(i < total % n)
}

impl Boots {
    /// A registry with these caps, its slots made (see [`PREPARED`]).
    pub fn new(live: usize, recent: usize, idle: Duration) -> Boots {
        Boots::with_slots(live, recent, idle, true)
    }

    /// A registry that will not be written to (`[sessions] enabled = false`): nothing made.
    pub fn unused(live: usize, recent: usize, idle: Duration) -> Boots {
        Boots::with_slots(live, recent, idle, false)
    }

    fn with_slots(live: usize, recent: usize, idle: Duration, prepare: bool) -> Boots {
        let live = live.max(1);
        let n = if live >= SHARD_FROM { SHARDS } else { 1 };
        let shards = (0..n)
            .map(|i| {
                let (live_cap, recent_cap) = (share(live, n, i), share(recent, n, i));
                // The slots (and their step buffers) are made now, up to PREPARED: a storm's
                // new machines then take a made slot instead of growing the registry, which in
                // place (a worker waking per packet, its caches cold) costs a third of a step.
                let ready = if prepare {
                    (live_cap + recent_cap).min(share(PREPARED, n, i))
                } else {
                    0
                };
                let slots: Vec<Session> = (0..ready)
                    .map(|_| Session::fresh(Mac::new(&[]), Instant::ZERO, 0))
                    .collect();
                let free: Vec<u32> = (0..ready as u32).rev().collect();
                let laps = Lap::ALL
                    .iter()
                    // 1 µs to 1 hour, 2 significant figures: a few KiB each.
                    .map(|_| Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds"))
                    .collect();
                Mutex::new(Inner {
                    // Sized for its cap up to a point: no rehash while a storm fills it.
                    index: Map::with_capacity_and_hasher(
                        live_cap.min(1 << 16),
                        foldhash::fast::RandomState::default(),
                    ),
                    slots,
                    free,
                    order: VecDeque::new(),
                    recent: VecDeque::new(),
                    counts: Counts::default(),
                    laps,
                    live_cap,
                    recent_cap,
                })
            })
            .collect();
        Boots {
            shards,
            seq: AtomicU64::new(0),
            live_cap: live,
            recent_cap: recent,
            idle,
        }
    }

    fn shard(&self, mac: &Mac) -> std::sync::MutexGuard<'_, Inner> {
        let i = if self.shards.len() == 1 {
            0
        } else {
            // FNV-1a: cheap, and a machine always lands in the same shard.
            let h = mac.iter().fold(0x811c_9dc5u32, |h, b| {
                (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
            });
            // A power of two of shards: a mask, not a division.
            h as usize & (self.shards.len() - 1)
        };
        lock(&self.shards[i])
    }

    fn each(&self) -> impl Iterator<Item = std::sync::MutexGuard<'_, Inner>> {
        self.shards.iter().map(lock)
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records `step` of the machine `mac` at `now`.
    pub fn step(&self, now: Instant, mac: &[u8], step: Step) {
        let mac = Mac::new(mac);
        let mut g = self.shard(&mac);
        let inner = &mut *g;
        // A machine that booted and asks again starts a new session.
        let mut slot = inner.index.get(&mac).copied();
        if let Some(i) = slot
            && matches!(step, Step::Offer { .. })
            && inner.at(i).phase == Phase::Booted
        {
            self.end(inner, &mac);
            slot = None;
        }
        let slot = match slot {
            Some(i) => i,
            None => {
                if matches!(step, Step::Release | Step::Decline) {
                    return; // nothing to say about a machine that is not booting
                }
                while inner.index.len() >= inner.live_cap {
                    let Some((seq, i)) = inner.order.pop_front() else {
                        break;
                    };
                    let old = inner.at(i);
                    if old.is_live_start(seq) {
                        let key = old.mac;
                        self.end(inner, &key);
                        inner.counts.evicted += 1;
                    }
                }
                let seq = self.next_seq();
                let i = inner.take_slot(mac, now, seq);
                inner.order.push_back((seq, i));
                inner.index.insert(mac, i);
                inner.counts.started += 1;
                inner.counts.per_phase[Phase::Dhcp.index()] += 1;
                // Ended sessions leave their entries behind: drop them once they are half.
                if inner.order.len() > 2 * inner.live_cap {
                    let slots = &inner.slots;
                    inner
                        .order
                        .retain(|&(seq, i)| slots[i as usize].is_live_start(seq));
                }
                i
            }
        };
        let s = &mut inner.slots[slot as usize];
        let before = s.phase;
        // The clock counts milliseconds; histograms hold microseconds (1 for "under 1 ms").
        let laps = &mut inner.laps;
        let mut lap = |l: Lap, from: Option<Instant>| {
            if let Some(f) = from {
                let us = (now.saturating_since(f).as_millis() * 1000).max(1);
                let _ = laps[l as usize].record(us);
            }
        };
        let step = match step {
            Step::Offer { addr, uuid, .. } => {
                if uuid.is_some() {
                    s.uuid = uuid;
                }
                // A new round: the first, or one after a boot file was loaded (iPXE).
                if s.rounds == 0 || s.loaded || s.round_start.is_none() {
                    s.rounds += 1;
                    s.loaded = false;
                    s.round_start = Some(now);
                }
                s.addr = Some(addr);
                Step::Offer {
                    addr,
                    round: s.rounds,
                    uuid,
                }
            }
            other => other,
        };
        match &step {
            Step::Ack { addr } => {
                lap(Lap::Dhcp, s.round_start.take());
                s.addr = Some(*addr);
                s.bound_at = Some(now);
            }
            Step::FileDone { proto, millis, .. } => {
                if *proto == "tftp" {
                    let began = now.as_millis().saturating_sub(*millis);
                    lap(Lap::Tftp, Some(Instant::from_millis(began)));
                }
                s.loaded = true;
                inner.counts.loaded += 1;
            }
            Step::IscsiLogin { initiator, .. } => {
                lap(Lap::IscsiLogin, s.bound_at);
                s.login_at = Some(now);
                s.iqn = Some(initiator.clone());
            }
            Step::IscsiRead => {
                if s.phase == Phase::Booted {
                    return; // only the first read is a step
                }
                lap(Lap::IscsiRead, s.login_at);
                lap(Lap::Boot, Some(s.started));
                inner.counts.booted += 1;
            }
            _ => {}
        }
        // The ACK after an offer with no boot rule says it again: the machine stays failed, but
        // that is one failure (one step), as the DHCP counters count it once per offer.
        let repeated = step == Step::NoBootRule
            && s.steps
                .iter()
                .rev()
                .take_while(|(_, st)| !matches!(st, Step::Offer { .. }))
                .any(|(_, st)| *st == Step::NoBootRule);
        if !repeated && let Some(f) = step.failure() {
            s.failure = Some(f);
            inner.counts.failures += 1;
        }
        s.phase = step.phase(before);
        s.updated = now;
        if !repeated {
            if s.steps.len() < MAX_STEPS {
                s.steps.push((now, step));
            } else {
                s.steps_dropped += 1;
            }
        }
        if s.phase != before {
            inner.counts.per_phase[before.index()] -= 1;
            inner.counts.per_phase[s.phase.index()] += 1;
        }
    }

    /// Moves a live session to the recent ring (the ring's oldest slot is freed).
    fn end(&self, inner: &mut Inner, mac: &Mac) {
        let Some(i) = inner.index.remove(mac) else {
            return;
        };
        let s = &mut inner.slots[i as usize];
        inner.counts.per_phase[s.phase.index()] -= 1;
        s.ended = true;
        s.end_seq = self.next_seq();
        inner.recent.push_back(i);
        while inner.recent.len() > inner.recent_cap {
            if let Some(old) = inner.recent.pop_front() {
                inner.free.push(old);
            }
        }
    }

    /// Ends the sessions idle since before `now - idle`; returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut n = 0;
        for mut g in self.each() {
            let idle: Vec<Mac> = g
                .index
                .values()
                .map(|&i| g.at(i))
                .filter(|s| now.saturating_since(s.updated) >= self.idle)
                .map(|s| s.mac)
                .collect();
            for m in &idle {
                self.end(&mut g, m);
            }
            n += idle.len();
        }
        n
    }

    /// The session of `mac`: the live one, else the latest ended one.
    pub fn get(&self, mac: &[u8]) -> Option<Session> {
        let mac = Mac::new(mac);
        let g = self.shard(&mac);
        g.live(&mac)
            .or_else(|| g.recent().rev().find(|s| s.mac == mac))
            .cloned()
    }

    /// Sessions (live first, newest first; then ended ones, newest first) for which `keep`
    /// holds, skipping `offset` and returning at most `limit`, with how many matched in all;
    /// without their steps (a listing shows none; [`Boots::get`] gives a machine's timeline).
    /// Walks every session; [`Boots::page`] answers the unfiltered list without.
    pub fn list(
        &self,
        keep: impl Fn(&Session) -> bool,
        offset: usize,
        limit: usize,
    ) -> (Vec<Session>, usize) {
        // Under each shard's lock only the keys that match are taken; the page is cloned after.
        let mut live: Vec<(u64, usize, u32)> = Vec::new();
        let mut recent: Vec<(u64, usize, u32)> = Vec::new();
        for (i, g) in self.each().enumerate() {
            live.extend(
                g.index
                    .values()
                    .filter(|&&slot| keep(g.at(slot)))
                    .map(|&slot| (g.at(slot).seq, i, slot)),
            );
            recent.extend(
                g.recent
                    .iter()
                    .filter(|&&slot| keep(g.at(slot)))
                    .map(|&slot| (g.at(slot).end_seq, i, slot)),
            );
        }
        let (n_live, n_recent) = (live.len(), recent.len());
        self.gather(live, n_live, recent, n_recent, offset, limit)
    }

    /// `list(|_| true, offset, limit)` without a walk of every session: each shard's start
    /// order and ring of ended sessions are read from their newest end, `offset + limit`
    /// entries at most, so the dashboard's first page costs the same with 16,384 sessions as
    /// with 100.
    pub fn page(&self, offset: usize, limit: usize) -> (Vec<Session>, usize) {
        let want = offset.saturating_add(limit);
        let mut live: Vec<(u64, usize, u32)> = Vec::new();
        let mut recent: Vec<(u64, usize, u32)> = Vec::new();
        let (mut n_live, mut n_recent) = (0, 0);
        for (i, g) in self.each().enumerate() {
            n_live += g.index.len();
            n_recent += g.recent.len();
            // Entries of sessions that ended (or whose slot moved on) are skipped.
            live.extend(
                g.order
                    .iter()
                    .rev()
                    .filter(|&&(seq, slot)| g.at(slot).is_live_start(seq))
                    .take(want)
                    .map(|&(seq, slot)| (seq, i, slot)),
            );
            recent.extend(
                g.recent
                    .iter()
                    .rev()
                    .take(want)
                    .map(|&slot| (g.at(slot).end_seq, i, slot)),
            );
        }
        self.gather(live, n_live, recent, n_recent, offset, limit)
    }

    /// The page of `offset`, `limit` from candidates (`(seq, shard, slot)`) that hold at least
    /// the newest `offset + limit` of the `n_live` live and `n_recent` ended matches, cloned.
    fn gather(
        &self,
        mut live: Vec<(u64, usize, u32)>,
        n_live: usize,
        mut recent: Vec<(u64, usize, u32)>,
        n_recent: usize,
        offset: usize,
        limit: usize,
    ) -> (Vec<Session>, usize) {
        let page = |v: &mut Vec<(u64, usize, u32)>, skip: usize, take: usize| {
            if take > 0 && skip < v.len() {
                let k = (skip + take).min(v.len());
                if k < v.len() {
                    v.select_nth_unstable_by_key(k, |e| std::cmp::Reverse(e.0));
                    v.truncate(k);
                }
                v.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
                v.drain(..skip);
                v.truncate(take);
            } else {
                v.clear();
            }
        };
        let skip_recent = offset.saturating_sub(n_live);
        page(&mut live, offset, limit);
        page(&mut recent, skip_recent, limit - live.len());
        let mut out = Vec::with_capacity(live.len() + recent.len());
        // A slot may have moved on between the locks: the sequence numbers say.
        for (seq, i, slot) in live {
            let g = lock(&self.shards[i]);
            let s = g.at(slot);
            if s.is_live_start(seq) {
                out.push(s.without_steps());
            }
        }
        for (seq, i, slot) in recent {
            let g = lock(&self.shards[i]);
            let s = g.at(slot);
            if s.ended && s.end_seq == seq {
                out.push(s.without_steps());
            }
        }
        (out, n_live + n_recent)
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for g in self.each() {
            c.add(&g.counts);
        }
        c
    }

    /// Live and ended sessions held.
    pub fn held(&self) -> (usize, usize) {
        self.each()
            .fold((0, 0), |(l, r), g| (l + g.index.len(), r + g.recent.len()))
    }

    /// A copy of each lap's histogram (microseconds), in [`Lap::ALL`] order.
    pub fn laps(&self) -> Vec<Histogram<u64>> {
        let mut out: Vec<Histogram<u64>> = Vec::new();
        for g in self.each() {
            if out.is_empty() {
                out = g.laps.clone();
            } else {
                for (a, b) in out.iter_mut().zip(&g.laps) {
                    // Same bounds on both sides: adding cannot fail.
                    let _ = a.add(b);
                }
            }
        }
        out
    }
}

impl Inner {
    fn at(&self, slot: u32) -> &Session {
        &self.slots[slot as usize]
    }

    fn live(&self, mac: &Mac) -> Option<&Session> {
        self.index.get(mac).map(|&i| self.at(i))
    }

    fn recent(&self) -> impl DoubleEndedIterator<Item = &Session> {
        self.recent.iter().map(|&i| self.at(i))
    }

    /// A slot for a new session: a free one (reset in place, a steps' buffer it grew kept),
    /// else a new one.
    fn take_slot(&mut self, mac: Mac, now: Instant, seq: u64) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].reset(mac, now, seq);
                i
            }
            None => {
                self.slots.push(Session::fresh(mac, now, seq));
                (self.slots.len() - 1) as u32
            }
        }
    }
}

impl Session {
    /// A copy for a listing: everything but the timeline ([`Boots::get`] has it), so a page
    /// copies no step buffers.
    fn without_steps(&self) -> Session {
        Session {
            iqn: self.iqn.clone(),
            failure: self.failure.clone(),
            steps: Steps::new(),
            ..*self
        }
    }

    /// Whether a start-order entry of sequence `seq` still names this session, live.
    fn is_live_start(&self, seq: u64) -> bool {
        self.seq == seq && !self.ended
    }

    /// Makes this slot the new session of `mac`: [`Session::fresh`], keeping the buffer its
    /// steps grew, if any.
    fn reset(&mut self, mac: Mac, now: Instant, seq: u64) {
        let mut steps = std::mem::take(&mut self.steps);
        steps.clear();
        *self = Session {
            steps,
            ..Session::fresh(mac, now, seq)
        };
    }

    fn fresh(mac: Mac, now: Instant, seq: u64) -> Session {
        Session {
            mac,
            addr: None,
            iqn: None,
            uuid: None,
            started: now,
            updated: now,
            phase: Phase::Dhcp,
            rounds: 0,
            failure: None,
            steps: Steps::new(),
            steps_dropped: 0,
            ended: false,
            round_start: None,
            bound_at: None,
            login_at: None,
            loaded: false,
            seq,
            end_seq: 0,
        }
    }
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Step {
    /// Its details as JSON (beside its kind and time).
    fn detail_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Step::Offer { addr, round, .. } => {
                json!({ "address": addr.to_string(), "round": round })
            }
            Step::Ack { addr } => json!({ "address": addr.to_string() }),
            Step::Nak { reason } => json!({ "reason": reason }),
            Step::File { proto, name } => json!({ "protocol": proto, "file": name }),
            Step::FileDone {
                proto,
                name,
                bytes,
                millis,
                resent,
            } => json!({
                "protocol": proto, "file": name, "bytes": bytes, "millis": millis, "retransmissions": resent,
            }),
            Step::FileFailed {
                proto,
                name,
                reason,
            } => {
                json!({ "protocol": proto, "file": name, "reason": reason })
            }
            Step::IscsiLogin { initiator, target } => {
                json!({ "initiator": initiator, "target": target })
            }
            Step::IscsiRefused { reason } => json!({ "reason": reason }),
            Step::NoBootRule | Step::Release | Step::Decline | Step::IscsiRead => json!({}),
        }
    }
}

impl Session {
    /// The session as the API shows it, borrowed (`to_unix_ms` turns the clock's instants into
    /// wall time): a listing serializes these straight into its answer, no tree of JSON values
    /// made per session (the dashboard's first page each second).
    pub fn view<'a>(&'a self, to_unix_ms: &dyn Fn(Instant) -> u64, timeline: bool) -> View<'a> {
        let steps = timeline.then(|| {
            self.steps
                .iter()
                .map(|(at, st)| {
                    let mut d = st.detail_json();
                    d["step"] = st.kind().into();
                    d["at_ms"] = to_unix_ms(*at).into();
                    d["after_ms"] = at.saturating_since(self.started).as_millis().into();
                    d
                })
                .collect()
        });
        View {
            mac: Shown(crate::serve::Hw(&self.mac)),
            address: self.addr.map(Shown),
            iqn: self.iqn.as_deref(),
            uuid: self.uuid.as_ref().map(|u| Shown(Uuid(u))),
            phase: self.phase.name(),
            started_ms: to_unix_ms(self.started),
            updated_ms: to_unix_ms(self.updated),
            elapsed_ms: self.updated.saturating_since(self.started).as_millis(),
            rounds: self.rounds,
            failure: self.failure.as_deref(),
            ended: self.ended,
            steps_dropped: timeline.then_some(self.steps_dropped),
            timeline: steps,
        }
    }
}

/// A session as the API shows it ([`Session::view`]).
#[derive(serde::Serialize)]
pub struct View<'a> {
    mac: Shown<crate::serve::Hw<'a>>,
    address: Option<Shown<Ipv4Addr>>,
    iqn: Option<&'a str>,
    uuid: Option<Shown<Uuid<'a>>>,
    phase: &'static str,
    started_ms: u64,
    updated_ms: u64,
    elapsed_ms: u64,
    rounds: u32,
    failure: Option<&'a str>,
    ended: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<Vec<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps_dropped: Option<u32>,
}

/// A value serialized as the string its `Display` writes (no `String` made for it).
struct Shown<T>(T);

impl<T: std::fmt::Display> serde::Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A UUID as RFC 4122 writes it (`8-4-4-4-12` hex digits), as SMBIOS and `dmidecode` show it.
pub(crate) struct Uuid<'a>(pub(crate) &'a [u8; 16]);

impl std::fmt::Display for Uuid<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::serve::write_hex(f, self.0, |i| matches!(i, 4 | 6 | 8 | 10).then_some(b'-'))
    }
}

impl Boots {
    /// The registry's counters and per-lap percentiles (milliseconds) as JSON, for
    /// `bootstorm stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        let c = self.counts();
        let (live, recent) = self.held();
        let phases: serde_json::Map<String, serde_json::Value> = Phase::ALL
            .iter()
            .map(|p| (p.name().to_string(), c.per_phase[p.index()].into()))
            .collect();
        let laps: serde_json::Map<String, serde_json::Value> = Lap::ALL
            .iter()
            .zip(self.laps())
            .map(|(l, h)| {
                let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                (
                    l.name().to_string(),
                    serde_json::json!({
                        "count": h.len(), "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "max_ms": h.max() as f64 / 1000.0,
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "live": live, "recent": recent, "live_cap": self.live_cap, "recent_cap": self.recent_cap,
            "started": c.started, "booted": c.booted, "failures": c.failures, "evicted": c.evicted,
            "phases": phases, "latency": laps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, n)
    }

    /// `mac` is offered 198.18.0.1 at `ms`.
    fn offer(b: &Boots, ms: u64, mac: &[u8]) {
        let step = Step::Offer {
            addr: ip(1),
            round: 0,
            uuid: None,
        };
        b.step(t(ms), mac, step);
    }

    #[test]
    fn a_diskless_boot_goes_through_every_phase_with_its_laps() {
        let b = Boots::default();
        let mac = [0x52, 0x54, 0, 0, 0, 1];
        b.step(
            t(0),
            &mac,
            Step::Offer {
                addr: ip(10),
                round: 0,
                uuid: None,
            },
        );
        assert_eq!(b.get(&mac).unwrap().phase, Phase::Dhcp);
        b.step(t(4), &mac, Step::Ack { addr: ip(10) });
        b.step(
            t(5),
            &mac,
            Step::File {
                proto: "tftp",
                name: "undionly.kpxe".into(),
            },
        );
        assert_eq!(b.counts().per_phase[Phase::Tftp.index()], 1);
        b.step(
            t(55),
            &mac,
            Step::FileDone {
                proto: "tftp",
                name: "undionly.kpxe".into(),
                bytes: 70_000,
                millis: 50,
                resent: 2,
            },
        );
        // iPXE asks again: a second round.
        b.step(
            t(60),
            &mac,
            Step::Offer {
                addr: ip(10),
                round: 0,
                uuid: None,
            },
        );
        b.step(t(62), &mac, Step::Ack { addr: ip(10) });
        b.step(
            t(70),
            &mac,
            Step::IscsiLogin {
                initiator: "iqn.x:m1".into(),
                target: "iqn.t".into(),
            },
        );
        b.step(t(75), &mac, Step::IscsiRead);
        b.step(t(76), &mac, Step::IscsiRead);
        let s = b.get(&mac).unwrap();
        assert_eq!(s.phase, Phase::Booted);
        assert_eq!(s.rounds, 2);
        assert_eq!(s.iqn.as_deref(), Some("iqn.x:m1"));
        assert_eq!(s.failure, None);
        let kinds: Vec<_> = s.steps.iter().map(|(_, st)| st.kind()).collect();
        assert_eq!(
            kinds,
            [
                "offer",
                "ack",
                "file",
                "file-done",
                "offer",
                "ack",
                "iscsi-login",
                "iscsi-read"
            ]
        );
        assert_eq!(
            s.steps[4].1,
            Step::Offer {
                addr: ip(10),
                round: 2,
                uuid: None
            }
        );
        let c = b.counts();
        assert_eq!((c.started, c.booted, c.failures), (1, 1, 0));
        assert_eq!(c.per_phase[Phase::Booted.index()], 1);
        assert_eq!(c.per_phase.iter().sum::<u64>(), 1);
        let laps = b.laps();
        assert_eq!(laps[Lap::Dhcp as usize].len(), 2);
        // 4 ms and 2 ms, within the histogram's precision.
        assert!((3900..=4100).contains(&laps[Lap::Dhcp as usize].max()));
        assert_eq!(laps[Lap::Tftp as usize].len(), 1);
        assert!((7900..=8100).contains(&laps[Lap::IscsiLogin as usize].max()));
        assert!((74_000..=76_000).contains(&laps[Lap::Boot as usize].max()));
        // It boots again later: a new session, the old one in the ring.
        b.step(
            t(10_000),
            &mac,
            Step::Offer {
                addr: ip(10),
                round: 0,
                uuid: None,
            },
        );
        let (all, n) = b.list(|_| true, 0, 10);
        assert_eq!(n, 2);
        assert!(!all[0].ended && all[1].ended);
        assert_eq!(all[1].phase, Phase::Booted);
        assert_eq!(b.counts().per_phase[Phase::Dhcp.index()], 1);
    }

    #[test]
    fn failures_name_the_phase_and_the_reason() {
        let b = Boots::default();
        let (m1, m2) = ([1u8, 0, 0, 0, 0, 1], [1u8, 0, 0, 0, 0, 2]);
        b.step(
            t(0),
            &m1,
            Step::Offer {
                addr: ip(1),
                round: 0,
                uuid: None,
            },
        );
        b.step(t(1), &m1, Step::NoBootRule);
        let s = b.get(&m1).unwrap();
        assert_eq!(s.phase, Phase::Failed);
        assert!(
            s.failure
                .as_deref()
                .unwrap()
                .starts_with("no boot rule matched")
        );
        b.step(
            t(0),
            &m2,
            Step::Offer {
                addr: ip(2),
                round: 0,
                uuid: None,
            },
        );
        b.step(t(1), &m2, Step::Ack { addr: ip(2) });
        b.step(
            t(2),
            &m2,
            Step::File {
                proto: "tftp",
                name: "missing.efi".into(),
            },
        );
        b.step(
            t(3),
            &m2,
            Step::FileFailed {
                proto: "tftp",
                name: "missing.efi".into(),
                reason: "file not found".into(),
            },
        );
        let s = b.get(&m2).unwrap();
        assert_eq!(s.phase, Phase::Failed);
        assert_eq!(
            s.failure.as_deref(),
            Some("tftp missing.efi: file not found")
        );
        let (failed, n) = b.list(|s| s.phase == Phase::Failed, 0, 10);
        assert_eq!((failed.len(), n), (2, 2));
        assert_eq!(b.counts().failures, 2);
        // A retry moves it on and keeps the last failure for the operator.
        b.step(
            t(4),
            &m2,
            Step::Offer {
                addr: ip(2),
                round: 0,
                uuid: None,
            },
        );
        let s = b.get(&m2).unwrap();
        assert_eq!(s.phase, Phase::Dhcp);
        assert!(s.failure.is_some());
    }

    #[test]
    fn memory_is_bounded_by_both_caps() {
        let b = Boots::new(100, 50, Duration::from_secs(60));
        for i in 0..10_000u32 {
            let mac = i.to_be_bytes();
            offer(&b, u64::from(i), &mac);
            b.step(t(u64::from(i)), &mac, Step::Ack { addr: ip(1) });
        }
        assert_eq!(b.held(), (100, 50));
        let c = b.counts();
        assert_eq!(c.started, 10_000);
        assert_eq!(c.evicted, 9_900);
        assert_eq!(c.per_phase.iter().sum::<u64>(), 100);
        assert_eq!(c.per_phase[Phase::Bound.index()], 100);
        // The newest stayed live; the oldest are gone entirely.
        assert!(!b.get(&9_999u32.to_be_bytes()).unwrap().ended);
        assert!(b.get(&9_899u32.to_be_bytes()).unwrap().ended);
        assert!(b.get(&0u32.to_be_bytes()).is_none());
        // Steps per session are capped too.
        let mac = 9_999u32.to_be_bytes();
        for i in 0..200 {
            b.step(
                t(20_000 + i),
                &mac,
                Step::File {
                    proto: "http",
                    name: "x".into(),
                },
            );
        }
        let s = b.get(&mac).unwrap();
        assert_eq!(s.steps.len(), MAX_STEPS);
        assert_eq!(s.steps_dropped, 202 - MAX_STEPS as u32);
        // Idle sessions end.
        assert_eq!(b.sweep(t(75_000)), 99);
        assert_eq!(b.held().0, 1);
        assert_eq!(b.counts().per_phase.iter().sum::<u64>(), 1);
        // A release from a machine with no session records nothing.
        b.step(t(75_000), &[9, 9], Step::Release);
        assert!(b.get(&[9, 9]).is_none());
    }

    #[test]
    fn no_boot_rule_is_one_failure_per_offer_and_the_ack_keeps_it_failed() {
        let b = Boots::default();
        let m = [0x52, 0x54, 0, 0, 0, 7];
        for round in 0..2u64 {
            // The DHCP worker reports it on the offer and again on the ACK.
            offer(&b, 10 * round, &m);
            b.step(t(10 * round + 1), &m, Step::NoBootRule);
            b.step(t(10 * round + 2), &m, Step::Ack { addr: ip(1) });
            b.step(t(10 * round + 3), &m, Step::NoBootRule);
            let s = b.get(&m).unwrap();
            assert_eq!(s.phase, Phase::Failed, "round {round}");
            assert!(
                s.failure
                    .as_deref()
                    .unwrap()
                    .starts_with("no boot rule matched")
            );
            assert_eq!(b.counts().failures, round + 1, "one failure per offer");
            assert_eq!(b.counts().per_phase[Phase::Failed.index()], 1);
        }
        let kinds: Vec<_> = b
            .get(&m)
            .unwrap()
            .steps
            .iter()
            .map(|(_, st)| st.kind())
            .collect();
        assert_eq!(
            kinds,
            [
                "offer",
                "no-boot-rule",
                "ack",
                "offer",
                "no-boot-rule",
                "ack"
            ]
        );
    }

    #[test]
    fn a_reused_slot_keeps_nothing_of_the_machine_before() {
        // One live, one recent: the third machine takes the first one's slot.
        let b = Boots::new(1, 1, Duration::from_secs(60));
        let first = [0x52, 0x54, 0, 0, 0, 1];
        b.step(
            t(1),
            &first,
            Step::Offer {
                addr: ip(9),
                round: 0,
                uuid: Some([7; 16]),
            },
        );
        b.step(t(2), &first, Step::Ack { addr: ip(9) });
        for i in 0..5 {
            let name = format!("f{i}").into_boxed_str();
            b.step(
                t(3),
                &first,
                Step::File {
                    proto: "tftp",
                    name,
                },
            );
        }
        b.step(
            t(4),
            &first,
            Step::IscsiLogin {
                initiator: "iqn.x:a".into(),
                target: "iqn.y:b".into(),
            },
        );
        b.step(
            t(5),
            &first,
            Step::Nak {
                reason: "wrong subnet",
            },
        );
        offer(&b, 10, &[0x52, 0x54, 0, 0, 0, 2]);
        let third = [0x52, 0x54, 0, 0, 0, 3];
        offer(&b, 20, &third);
        assert!(b.get(&first).is_none(), "the first session's slot moved on");
        let s = b.get(&third).unwrap();
        let fresh = Session::fresh(Mac::new(&third), t(20), s.seq);
        assert_eq!(
            (s.addr, s.uuid, s.iqn, s.failure, s.rounds, s.phase),
            (Some(ip(1)), None, None, None, 1, Phase::Dhcp)
        );
        assert_eq!(
            (s.started, s.updated, s.ended),
            (fresh.started, t(20), false)
        );
        assert_eq!((s.bound_at, s.login_at, s.loaded), (None, None, false));
        assert_eq!((s.steps.len(), s.steps_dropped, s.end_seq), (1, 0, 0));
        assert_eq!(s.steps[0].1.kind(), "offer");
    }

    /// What a page says of its sessions: who, which start, ended or not.
    fn ids(v: &[Session]) -> Vec<(Mac, u64, bool, u64)> {
        v.iter()
            .map(|s| (s.mac, s.seq, s.ended, s.end_seq))
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// The unfiltered page read from each shard's newest end is the page a walk of every
        /// session gives, through starts, boots, restarts, evictions and idle ends, in a single
        /// shard and in eight.
        #[test]
        fn the_newest_first_page_is_the_full_walk_s_page(
            sharded: bool,
            ops in proptest::collection::vec((0u16..600, 0u8..4), 1..1500),
            pages in proptest::collection::vec((0usize..700, 0usize..120), 1..8),
        ) {
            let (live, recent) = if sharded { (SHARD_FROM, 64) } else { (40, 16) };
            let b = Boots::new(live, recent, Duration::from_secs(5));
            for (n, (m, op)) in ops.iter().enumerate() {
                let mac = [2, 0, 0, 0, (m >> 8) as u8, *m as u8];
                let at = n as u64 * 20;
                match op {
                    0 => offer(&b, at, &mac),
                    1 => b.step(t(at), &mac, Step::Ack { addr: ip(1) }),
                    2 => b.step(t(at), &mac, Step::IscsiRead),
                    _ => {
                        b.sweep(t(at));
                    }
                }
            }
            for (offset, limit) in pages {
                let (want, n) = b.list(|_| true, offset, limit);
                let (got, m) = b.page(offset, limit);
                proptest::prop_assert_eq!(n, m);
                proptest::prop_assert_eq!(ids(&got), ids(&want), "offset {} limit {}", offset, limit);
            }
        }
    }

    #[test]
    fn a_sharded_registry_keeps_its_caps_and_merges_what_it_reports() {
        let b = Boots::new(SHARD_FROM, 1_000, Duration::from_secs(60));
        assert_eq!(b.shards.len(), SHARDS);
        let n = 3 * SHARD_FROM as u32;
        for i in 0..n {
            let mac = [2, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 7];
            offer(&b, u64::from(i), &mac);
            b.step(t(u64::from(i) + 2), &mac, Step::Ack { addr: ip(1) });
        }
        let (live, recent) = b.held();
        assert_eq!(live, SHARD_FROM, "every shard fills to its share");
        assert_eq!(recent, 1_000);
        let c = b.counts();
        assert_eq!(c.started, u64::from(n));
        assert_eq!(c.evicted, u64::from(n) - SHARD_FROM as u64);
        assert_eq!(c.per_phase[Phase::Bound.index()], SHARD_FROM as u64);
        let dhcp = &b.laps()[Lap::Dhcp as usize];
        assert_eq!(dhcp.len(), u64::from(n));
        assert!(dhcp.equivalent(dhcp.value_at_quantile(0.5), 2_000));
        assert_eq!(dhcp.min(), 2_000);
        // Pages are in start order across shards, newest first, then the ended ones.
        let (first, total) = b.list(|_| true, 0, 10);
        assert_eq!(total, SHARD_FROM + 1_000);
        let seqs: Vec<u64> = first.iter().map(|s| s.seq).collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(seqs, sorted);
        let newest = n - 1;
        assert_eq!(
            &*first[0].mac,
            &[
                2,
                0,
                (newest >> 16) as u8,
                (newest >> 8) as u8,
                newest as u8,
                7
            ]
        );
        let (across, _) = b.list(|_| true, SHARD_FROM - 2, 4);
        assert_eq!(
            across.iter().map(|s| s.ended).collect::<Vec<_>>(),
            [false, false, true, true]
        );
        let (tail, _) = b.list(|_| true, SHARD_FROM + 995, 10);
        assert_eq!(tail.len(), 5);
        for (o, l) in [
            (0, 10),
            (SHARD_FROM - 2, 4),
            (SHARD_FROM + 995, 10),
            (3_000, 100),
        ] {
            assert_eq!(
                ids(&b.page(o, l).0),
                ids(&b.list(|_| true, o, l).0),
                "{o} {l}"
            );
        }
        assert!(tail.windows(2).all(|w| w[0].end_seq > w[1].end_seq));
        // Every machine is found in its own shard.
        assert!(
            b.get(&[
                2,
                0,
                (newest >> 16) as u8,
                (newest >> 8) as u8,
                newest as u8,
                7
            ])
            .is_some()
        );
        assert_eq!(b.sweep(t(u64::from(n) + 70_000)), SHARD_FROM);
        assert_eq!(b.held().0, 0);
    }
}

#[cfg(test)]
mod layout {
    #[test]
    fn first_line_holds_what_ending_and_reuse_read() {
        use super::Session;
        use std::mem::offset_of;
        assert_eq!(std::mem::align_of::<Session>(), 64);
        // At most six lines with its first two steps: the slots made up front (PREPARED) are
        // then at most 20,480 x 384 B = 7.5 MiB, as README says.
        let size = std::mem::size_of::<Session>();
        assert!(size <= 384, "a session slot is {size} B");
        for (name, end) in [
            ("seq", offset_of!(Session, seq) + 8),
            (
                "mac",
                offset_of!(Session, mac) + std::mem::size_of::<super::Mac>(),
            ),
            ("phase", offset_of!(Session, phase) + 1),
            ("ended", offset_of!(Session, ended) + 1),
            ("updated", offset_of!(Session, updated) + 8),
            ("addr", offset_of!(Session, addr) + 8),
        ] {
            assert!(end <= 64, "{name} ends at byte {end}, past the first line");
        }
    }
}
