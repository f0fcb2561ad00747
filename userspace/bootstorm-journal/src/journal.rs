//! The running journal: threads append records to a shared buffer; one writer thread takes
//! the whole buffer, writes it and syncs it once (group commit) and then wakes every thread
//! waiting for a record in it. A compactor thread writes snapshots when a segment grows past its
//! limit, so the journal stays bounded without stopping service.

use crate::WallClock;
use crate::record::{Kind, Record, encode_snapshot_end};
use crate::replay::{
    FILE_HEADER_LEN, SEGMENT_MAGIC, SNAPSHOT_MAGIC, list, segment_name, snapshot_name,
};
use bootstorm_lease::{Change, Lease, LeaseSink, LeaseState};
use bootstorm_time::Buckets;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How durable an acknowledged lease is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// On disk (fdatasync) before the ACK leaves: survives power loss. The default.
    Fsync,
    /// Written to the kernel before the ACK leaves: survives a crash of bootstorm, not of the
    /// machine.
    Write,
    /// Written in the background: the last moments before a crash may be lost.
    None,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Durability, String> {
        match s {
            "fsync" => Ok(Durability::Fsync),
            "write" => Ok(Durability::Write),
            "none" => Ok(Durability::None),
            x => Err(format!(
                "durability '{x}': expected \"fsync\", \"write\" or \"none\""
            )),
        }
    }
}

/// Journal settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Directory of segments and snapshots.
    pub dir: PathBuf,
    /// See [`Durability`].
    pub durability: Durability,
    /// A segment larger than this is closed and a snapshot taken, after which older segments
    /// are deleted.
    pub segment_max: u64,
    /// With durability "fsync": how long the writer lets records gather before a sync that
    /// would cover only a few (PostgreSQL's `commit_delay`). Zero syncs at once. A delay trades
    /// that much reply latency for fewer syncs when leases arrive one at a time.
    pub commit_delay: Duration,
}

/// The journal could not keep a record: nothing waiting on it may be acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("lease journal failed: {0}")]
pub struct Failed(pub String);

/// Upper bounds of [`JournalStats::commit_us`], in microseconds (100 us to 2.5 s).
pub const COMMIT_US_BOUNDS: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];
/// Upper bounds of [`JournalStats::group_records`].
pub const GROUP_BOUNDS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 4_096];

/// Counters.
#[derive(Debug)]
pub struct JournalStats {
    /// Per write: microseconds from its first record's append to the write (and, at
    /// durability fsync, the sync) done: how long the first acknowledgement of the group waited.
    pub commit_us: Buckets,
    /// Per write: the records it carried (the group commit's group).
    pub group_records: Buckets,
    /// Records appended.
    pub records: AtomicU64,
    /// Writes (each a group of records).
    pub writes: AtomicU64,
    /// fdatasync calls.
    pub syncs: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// Snapshots written.
    pub snapshots: AtomicU64,
    /// Segments started.
    pub segments: AtomicU64,
}

impl Default for JournalStats {
    fn default() -> JournalStats {
        JournalStats {
            commit_us: Buckets::new(&COMMIT_US_BOUNDS),
            group_records: Buckets::new(&GROUP_BOUNDS),
            records: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            segments: AtomicU64::new(0),
        }
    }
}

struct Pending {
    buf: Vec<u8>,
    /// Sequence number of the last record in `buf` (records are numbered from 1).
    last_seq: u64,
    shutdown: bool,
    /// When the first record now in `buf` was appended: with a commit delay the writer syncs
    /// at the latest `commit_delay` after it.
    first_at: Option<std::time::Instant>,
    /// The writer sleeps on `work` (and only then needs a notify: a wake-up costs a worker a
    /// system call and the writer a context switch).
    writer_waits: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signals the writer that `pending` has data (or shutdown).
    work: Condvar,
    /// Highest sequence number durable to the configured level.
    durable: Mutex<u64>,
    durable_cv: Condvar,
    durable_fast: AtomicU64,
    failed: Mutex<Option<String>>,
    failed_flag: AtomicBool,
    clock: WallClock,
    durability: Durability,
    stats: JournalStats,
    /// Told of every advance of the durable sequence (see [`Journal::on_durable`]).
    listeners: Mutex<Vec<Listener>>,
    /// The writer has stopped: nothing more becomes durable.
    closed: AtomicBool,
    commit_delay: Duration,
}

/// A doorbell the writer rings after each sync with the sequence now durable, or with
/// [`u64::MAX`] when nothing more will become durable (the journal failed or was shut down;
/// [`Journal::durable`] then says which). It runs on the writer's thread between syncs, so it
/// must be quick: compare, and wake whoever waits (an I/O worker holding replies).
pub type Listener = Box<dyn Fn(u64) + Send + Sync>;

/// With durability "none": how often the writer writes what piled up, and how much wakes it early.
const BACKGROUND_FLUSH: Duration = Duration::from_millis(10);
const BACKGROUND_FLUSH_BYTES: usize = 256 << 10;

/// Why work is refused once the writer has stopped.
const SHUT_DOWN: &str = "the journal was shut down";

/// With a commit delay: batches smaller than this (a few dozen records) wait for company.
const LINGER_BELOW_BYTES: usize = 4 << 10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where snapshots come from: every client record, now (the lease table's listing).
pub type SnapshotSource = Box<dyn Fn() -> Vec<Lease> + Send>;

/// The journal. Install it as the lease table's [`LeaseSink`]: each change it is told of gets a
/// sequence number (the table hands it back to the DHCP core, which puts it in its outcome), and
/// a worker holds a reply until [`Journal::durable`] covers the reply's sequence, woken by a
/// [`Listener`] it registered. The journal never sends anything itself.
pub struct Journal {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Journal {
    /// Starts the writer on a new segment numbered `next_segment`, after writing a snapshot of
    /// `initial` (the replayed state, as records) numbered the same, and deleting what it
    /// replaces. `source` gives the live state for later snapshots.
    pub fn start(
        settings: &Settings,
        clock: WallClock,
        next_segment: u64,
        initial: &[Record],
        source: SnapshotSource,
    ) -> std::io::Result<Journal> {
        std::fs::create_dir_all(&settings.dir)?;
        write_snapshot(&settings.dir, next_segment, initial)?;
        remove_before(&settings.dir, next_segment)?;
        let file = new_segment(&settings.dir, next_segment)?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(64 << 10),
                last_seq: 0,
                shutdown: false,
                first_at: None,
                writer_waits: false,
            }),
            work: Condvar::new(),
            durable: Mutex::new(0),
            durable_cv: Condvar::new(),
            durable_fast: AtomicU64::new(0),
            failed: Mutex::new(None),
            failed_flag: AtomicBool::new(false),
            clock,
            durability: settings.durability,
            stats: JournalStats::default(),
            listeners: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            commit_delay: settings.commit_delay,
        });
        shared.stats.snapshots.fetch_add(1, Ordering::Relaxed);
        shared.stats.segments.fetch_add(1, Ordering::Relaxed);
        let (snap_tx, snap_rx) = std::sync::mpsc::channel::<u64>();
        let mut threads = Vec::new();
        {
            let shared = shared.clone();
            let dir = settings.dir.clone();
            let max = settings.segment_max.max(4096);
            threads.push(
                std::thread::Builder::new()
                    .name("journal-writer".into())
                    .spawn(move || writer(shared, dir, file, next_segment, max, snap_tx))?,
            );
        }
        {
            let shared = shared.clone();
            let dir = settings.dir.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("journal-compactor".into())
                    .spawn(move || compactor(shared, dir, snap_rx, source))?,
            );
        }
        Ok(Journal {
            shared,
            threads: Mutex::new(threads),
        })
    }

    /// The counters.
    pub fn stats(&self) -> &JournalStats {
        &self.shared.stats
    }

    /// Appends a record; returns its sequence number.
    pub fn append(&self, r: &Record) -> u64 {
        let mut p = lock(&self.shared.pending);
        let before = p.buf.len();
        if before == 0 {
            p.first_at = Some(std::time::Instant::now());
        }
        r.encode(&mut p.buf);
        p.last_seq += 1;
        let seq = p.last_seq;
        let after = p.buf.len();
        let wake = p.writer_waits
            && match self.shared.durability {
                // Nobody waits for the record: the writer comes by itself every few
                // milliseconds, or now if much piled up. A lease costs no wake-up at all.
                Durability::None => after >= BACKGROUND_FLUSH_BYTES,
                // Someone waits: the writer starts on a batch at its first record (with a
                // commit delay it then lingers on its own clock) or when the batch got big.
                _ => before == 0 || (before < LINGER_BELOW_BYTES && after >= LINGER_BELOW_BYTES),
            };
        drop(p);
        if wake {
            self.shared.work.notify_one();
        }
        self.shared.stats.records.fetch_add(1, Ordering::Relaxed);
        seq
    }

    /// Waits until record `seq` is as durable as configured (at once with durability "none").
    pub fn wait(&self, seq: u64) -> Result<(), Failed> {
        let s = &self.shared;
        if s.durability == Durability::None || seq == 0 {
            return Ok(());
        }
        loop {
            // Closed read first: once the writer closed, the durable sequence is final.
            let closed = s.closed.load(Ordering::Acquire);
            if self.durable()? >= seq {
                return Ok(());
            }
            if closed {
                return Err(Failed(SHUT_DOWN.into()));
            }
            let d = lock(&s.durable);
            if *d >= seq || s.failed_flag.load(Ordering::Acquire) {
                continue;
            }
            // Bounded wait: a missed wake-up costs at most this, never a hang.
            let _ = s.durable_cv.wait_timeout(d, Duration::from_millis(100));
        }
    }

    /// The highest sequence number durable to the configured level (every sequence with
    /// durability "none"), or why no more will become durable: the journal failed (its records
    /// may be lost: nothing announcing them may go out) or was shut down.
    pub fn durable(&self) -> Result<u64, Failed> {
        let s = &self.shared;
        if s.failed_flag.load(Ordering::Acquire) {
            return Err(Failed(lock(&s.failed).clone().unwrap_or_default()));
        }
        if s.durability == Durability::None {
            return Ok(u64::MAX);
        }
        let closed = s.closed.load(Ordering::Acquire);
        let d = s.durable_fast.load(Ordering::SeqCst);
        if closed && d < lock(&s.pending).last_seq {
            return Err(Failed(SHUT_DOWN.into()));
        }
        Ok(d)
    }

    /// Registers `f`, called after every sync with the durable sequence, and with [`u64::MAX`]
    /// once the journal fails or stops (see [`Listener`]). A worker that holds replies arms its
    /// own flag, checks [`Journal::durable`] again, then sleeps until `f` wakes it: the writer
    /// publishes the durable sequence before it calls the listeners, so no wake-up is lost.
    pub fn on_durable(&self, f: Listener) {
        let s = &self.shared;
        let mut l = lock(&s.listeners);
        let gone = s.failed_flag.load(Ordering::Acquire) || s.closed.load(Ordering::Acquire);
        l.push(f);
        if gone && let Some(f) = l.last() {
            f(u64::MAX);
        }
    }

    /// Writes out what is pending, syncs it and stops the threads.
    pub fn shutdown(&self) {
        lock(&self.shared.pending).shutdown = true;
        self.shared.work.notify_all();
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A lease table record as a journal record.
pub fn record_of(
    clock: &WallClock,
    kind: Kind,
    lease: &Lease,
    until: Option<bootstorm_time::Instant>,
) -> Record {
    Record {
        kind,
        at_ms: clock.unix_now_ms(),
        key: lease.key.clone(),
        hwaddr: lease.hwaddr.clone(),
        addr: lease.addr,
        state: lease.state,
        expires_ms: clock.to_unix_ms(lease.expires),
        until_ms: until.map_or(0, |u| clock.to_unix_ms(u)),
        hostname: lease.hostname.clone(),
        subnet: lease.subnet,
        reserved: lease.reserved,
    }
}

/// The lease table's records as the records of a snapshot.
pub fn snapshot_records(clock: &WallClock, leases: &[Lease]) -> Vec<Record> {
    leases
        .iter()
        .map(|l| {
            let (kind, until) = match l.state {
                LeaseState::Bound => (Kind::Bind, None),
                // A declined record's `expires` is the end of its quarantine.
                LeaseState::Declined => (Kind::Decline, Some(l.expires)),
                _ => (Kind::Expire, None),
            };
            record_of(clock, kind, l, until)
        })
        .collect()
}

impl LeaseSink for Journal {
    fn changed(&self, change: Change, lease: &Lease) -> u64 {
        let (kind, until) = match change {
            Change::Bind => (Kind::Bind, None),
            Change::Release => (Kind::Release, None),
            Change::Decline { until } => (Kind::Decline, Some(until)),
            Change::Expire => (Kind::Expire, None),
        };
        let r = record_of(&self.shared.clock, kind, lease, until);
        let seq = self.append(&r);
        // With durability "none" nothing waits for the record.
        if self.shared.durability == Durability::None {
            0
        } else {
            seq
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn new_segment(dir: &Path, n: u64) -> std::io::Result<File> {
    let path = dir.join(segment_name(n));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let mut header = [0u8; FILE_HEADER_LEN];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..].copy_from_slice(&n.to_le_bytes());
    f.write_all(&header)?;
    f.sync_all()?;
    sync_dir(dir)?;
    Ok(f)
}

/// Writes snapshot `n` atomically: a temporary file, synced, renamed, directory synced.
fn write_snapshot(dir: &Path, n: u64, records: &[Record]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(FILE_HEADER_LEN + records.len() * 64);
    buf.extend_from_slice(SNAPSHOT_MAGIC);
    buf.extend_from_slice(&n.to_le_bytes());
    for r in records {
        let mut r = r.clone();
        r.kind = Kind::Snapshot;
        r.encode(&mut buf);
    }
    encode_snapshot_end(records.len() as u64, &mut buf);
    write_file_atomically(&dir.join(snapshot_name(n)), &buf)
}

/// Replaces the file at `path` with `bytes` so that a crash leaves the old file or the new one,
/// never a part: written to `path` + `.tmp`, synced, renamed over `path`, its directory synced.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// Deletes segments and snapshots older than `n` (snapshot `n` covers them).
fn remove_before(dir: &Path, n: u64) -> std::io::Result<()> {
    let (segs, snaps) = list(dir)?;
    for (k, p) in segs.iter().chain(snaps.iter()) {
        if *k < n {
            std::fs::remove_file(p)?;
        }
    }
    sync_dir(dir)
}

fn fail(shared: &Shared, why: String) {
    tracing::error!(error = %why, "lease journal failed: no lease will be acknowledged");
    *lock(&shared.failed) = Some(why.clone());
    shared.failed_flag.store(true, Ordering::Release);
    {
        let _d = lock(&shared.durable);
        shared.durable_cv.notify_all();
    }
    tell_listeners(shared, u64::MAX);
}

/// Rings every listener with `durable` (after it was published).
fn tell_listeners(shared: &Shared, durable: u64) {
    for f in lock(&shared.listeners).iter() {
        f(durable);
    }
}

fn writer(
    shared: Arc<Shared>,
    dir: PathBuf,
    mut file: File,
    mut segment: u64,
    segment_max: u64,
    snapshots: std::sync::mpsc::Sender<u64>,
) {
    let mut spare: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut size = FILE_HEADER_LEN as u64;
    // The last record of the previous write: a write's group is what came after it.
    let mut grouped = lock(&shared.pending).last_seq;
    loop {
        let (last, stop, first) = {
            let mut p = lock(&shared.pending);
            if shared.durability == Durability::None && !p.shutdown {
                p = sleep_on(&shared, p, BACKGROUND_FLUSH);
            }
            while p.buf.is_empty() && !p.shutdown {
                p = sleep_on(&shared, p, Duration::from_millis(500));
            }
            // A few records only: let more gather for this sync, until `commit_delay` after
            // the first of them (under load the batch is large already and goes at once).
            // The clock runs from the first record, not from the writer's wake-up, so a batch
            // that gathered during the previous sync waits only for the rest of its delay.
            if shared.durability == Durability::Fsync && !shared.commit_delay.is_zero() {
                while !p.shutdown && p.buf.len() < LINGER_BELOW_BYTES {
                    let now = std::time::Instant::now();
                    match p.first_at.map(|t| t + shared.commit_delay) {
                        Some(due) if due > now => p = sleep_on(&shared, p, due - now),
                        _ => break,
                    }
                }
            }
            std::mem::swap(&mut p.buf, &mut spare);
            let first = p.first_at.take();
            (p.last_seq, p.shutdown, first)
        };
        if !spare.is_empty() && !shared.failed_flag.load(Ordering::Acquire) {
            let mut r = file.write_all(&spare);
            shared.stats.writes.fetch_add(1, Ordering::Relaxed);
            if r.is_ok() && (shared.durability == Durability::Fsync || stop) {
                r = file.sync_data();
                shared.stats.syncs.fetch_add(1, Ordering::Relaxed);
            }
            match r {
                Ok(()) => {
                    if let Some(t) = first {
                        let us = t.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
                        shared.stats.commit_us.observe(us);
                    }
                    shared.stats.group_records.observe(last - grouped);
                    grouped = last;
                    size += spare.len() as u64;
                    shared
                        .stats
                        .bytes
                        .fetch_add(spare.len() as u64, Ordering::Relaxed);
                    {
                        let mut d = lock(&shared.durable);
                        *d = last;
                        shared.durable_fast.store(last, Ordering::SeqCst);
                        shared.durable_cv.notify_all();
                    }
                    tell_listeners(&shared, last);
                }
                // A failed write or sync may have lost data the kernel had accepted (and a later
                // sync would not report it again): stop acknowledging rather than guess.
                Err(e) => fail(
                    &shared,
                    format!("{}: {e}", dir.join(segment_name(segment)).display()),
                ),
            }
            spare.clear();
        }
        if stop {
            break;
        }
        if size > segment_max && !shared.failed_flag.load(Ordering::Acquire) {
            // Close this segment (synced above, or now), start the next, ask for a snapshot.
            let next = segment + 1;
            match file.sync_data().and_then(|()| new_segment(&dir, next)) {
                Ok(f) => {
                    file = f;
                    segment = next;
                    size = FILE_HEADER_LEN as u64;
                    shared.stats.segments.fetch_add(1, Ordering::Relaxed);
                    let _ = snapshots.send(next);
                }
                Err(e) => fail(&shared, format!("starting segment {next}: {e}")),
            }
        }
    }
    // Whatever was appended after the last write will never be durable now.
    shared.closed.store(true, Ordering::Release);
    tell_listeners(&shared, u64::MAX);
}

/// The writer's wait for work: marked in `pending` so appends know to notify.
fn sleep_on<'a>(
    shared: &'a Shared,
    mut p: MutexGuard<'a, Pending>,
    timeout: Duration,
) -> MutexGuard<'a, Pending> {
    p.writer_waits = true;
    let mut p = shared
        .work
        .wait_timeout(p, timeout)
        .map(|(g, _)| g)
        .unwrap_or_else(|e| e.into_inner().0);
    p.writer_waits = false;
    p
}

fn compactor(
    shared: Arc<Shared>,
    dir: PathBuf,
    requests: std::sync::mpsc::Receiver<u64>,
    source: SnapshotSource,
) {
    while let Ok(mut n) = requests.recv() {
        // Several rotations while one snapshot was written: the newest covers them all.
        while let Ok(m) = requests.try_recv() {
            n = m;
        }
        // Taken after segment `n` started: every change the snapshot misses is in segment `n`
        // or later, and replaying those over it ends in the same state (records are whole states).
        let records = snapshot_records(&shared.clock, &source());
        let r = write_snapshot(&dir, n, &records).and_then(|()| remove_before(&dir, n));
        match r {
            Ok(()) => {
                shared.stats.snapshots.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    snapshot = n,
                    records = records.len(),
                    "lease journal compacted"
                );
            }
            Err(e) => {
                tracing::warn!(snapshot = n, error = %e, "lease snapshot failed; the journal is kept whole")
            }
        }
    }
}
