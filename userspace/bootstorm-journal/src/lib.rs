//! The durable lease journal: nothing acknowledged is lost across a crash.
//!
//! Written by hand because it is the product's core promise (RFC 2131 4.3.1: a server commits a
//! binding to persistent storage before it sends the ACK), and because its format, its group
//! commit and its recovery rules are exactly what must be reasoned about:
//!
//! - **Records** ([`record`]): every persistent change of the lease table (bind, release,
//!   decline, expire) becomes one self-contained frame, `len | crc32 | body`, holding the
//!   client's whole record with wall-clock times, so replay needs no ordering beyond "later wins"
//!   per client.
//! - **Group commit** ([`Journal`]): worker threads append frames to one buffer under a short lock
//!   (the journal is the lease table's [`bootstorm_lease::LeaseSink`], called where the change
//!   happens) and get a sequence number back, which the lease table and the DHCP core pass on
//!   to the worker with the reply (`Outcome::commit`); a writer thread swaps the buffer out,
//!   writes it, calls fdatasync once for all of it, publishes the durable sequence
//!   ([`Journal::durable`]) and rings the workers' doorbells ([`Journal::on_durable`]). Each
//!   worker sends the replies it held for those records from its own thread: the ACKs leave only
//!   then, the workers never sleep through a sync, and the journal never touches a socket.
//!   Under load a sync covers hundreds of leases. `durability = "write"` skips the sync
//!   (survives a crash of the process, not of the machine); `"none"` does not wait at all.
//! - **Segments and snapshots**: records go to `journal-N.log`; past a size limit the writer
//!   starts segment N+1 and a compactor thread writes `snapshot-(N+1).snap` (temporary file,
//!   fsync, rename) from the live table, then deletes what it covers. Service never stops.
//! - **Replay** ([`replay()`]): the newest complete snapshot, then the segments after it. A torn
//!   last record (a write cut short) is dropped and cut off: its sync never finished, so it was
//!   never acknowledged. Any other damage stops start-up with the file and byte offset, unless
//!   repair is asked for, which keeps everything before the damage and sets the rest aside.
//!
//! What it deliberately is not: a database. There are no reads at run time; the table in memory
//! is the truth while running, and the journal only rebuilds it at start-up.
#![forbid(unsafe_code)]

pub mod journal;
pub mod record;
pub mod replay;

pub use journal::{
    Durability, Failed, Journal, JournalStats, Listener, Settings, SnapshotSource, record_of,
    snapshot_records, write_file_atomically,
};
pub use record::{Kind, Record};
pub use replay::{
    DirLock, LockError, Repaired, ReplayError, Replayed, lock_dir, read_only, replay,
};

use bootstorm_time::{Clock, Instant};

/// Maps the table's monotonic instants to wall-clock milliseconds and back, anchored once at
/// start-up (so a wall-clock step while running does not shorten or stretch leases).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    clock: Clock,
    mono_at: Instant,
    unix_at_ms: u64,
}

impl WallClock {
    /// Anchors `clock` to the system time now.
    pub fn new(clock: Clock) -> WallClock {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        WallClock::anchored(clock, clock.now(), unix)
    }

    /// Anchors `clock`: `mono` on it is `unix_ms` on the wall (for tests).
    pub fn anchored(clock: Clock, mono: Instant, unix_ms: u64) -> WallClock {
        WallClock {
            clock,
            mono_at: mono,
            unix_at_ms: unix_ms,
        }
    }

    /// The underlying clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Now, in ms since the UNIX epoch.
    pub fn unix_now_ms(&self) -> u64 {
        self.to_unix_ms(self.clock.now())
    }

    /// `i` in ms since the UNIX epoch.
    pub fn to_unix_ms(&self, i: Instant) -> u64 {
        let d = i128::from(i.as_millis()) - i128::from(self.mono_at.as_millis());
        (i128::from(self.unix_at_ms) + d).clamp(0, i128::from(u64::MAX)) as u64
    }

    /// Wall-clock ms as an instant (the epoch if that is earlier).
    pub fn from_unix_ms(&self, ms: u64) -> Instant {
        let d = i128::from(ms) - i128::from(self.unix_at_ms);
        let m = i128::from(self.mono_at.as_millis()) + d;
        Instant::from_millis(m.clamp(0, i128::from(u64::MAX)) as u64)
    }
}
