//! The slot layer under the table: one atomic word per address (state, expiry and the tag of
//! its client, changed only by CAS) and the pools that hold them.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};
use bootstorm_time::{Duration, Instant};
use std::net::Ipv4Addr;

/// Slot states, in the low 3 bits of a slot word.
pub(super) mod state {
    pub const FREE: u64 = 0;
    pub const OFFERED: u64 = 1;
    pub const BOUND: u64 = 2;
    pub const RESERVED: u64 = 3;
    pub const DECLINED: u64 = 4;
}

/// A slot word: `tag << 32 | expiry_secs << 3 | state`. 29 bits of seconds cover 17 years of
/// uptime; the tag is a 32-bit hash of the client key (0 = nobody).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Word(pub(super) u64);

pub(super) const EXPIRY_MAX: u64 = (1 << 29) - 1;

impl Word {
    pub(super) fn new(state: u64, expiry_secs: u64, tag: u32) -> Word {
        Word((u64::from(tag) << 32) | (expiry_secs.min(EXPIRY_MAX) << 3) | state)
    }
    pub(super) fn state(self) -> u64 {
        self.0 & 7
    }
    pub(super) fn expiry(self) -> u64 {
        (self.0 >> 3) & EXPIRY_MAX
    }
    pub(super) fn tag(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// Held right now by the tag's owner (offered, bound or declined and not yet expired).
    pub(super) fn held(self, now_s: u64) -> bool {
        match self.state() {
            state::OFFERED | state::BOUND | state::DECLINED => self.expiry() > now_s,
            state::RESERVED => true,
            _ => false,
        }
    }
    /// The tag of the client this slot remembers, if nobody holds it now. An offer that lapsed
    /// is not remembered: only a lease makes an address sticky.
    pub(super) fn remembered(self) -> u32 {
        match self.state() {
            state::FREE | state::BOUND => self.tag(),
            _ => 0,
        }
    }
}

/// Seconds on the table clock at which something lasting `d` from `now` ends (rounded up, so a
/// lease never ends early).
pub(super) fn secs_after(now: Instant, d: Duration) -> u64 {
    secs_ceil(now + d)
}

/// Seconds on the table clock of `i`, rounded up.
pub(super) fn secs_ceil(i: Instant) -> u64 {
    i.as_millis().div_ceil(1000)
}

pub(super) fn now_secs(now: Instant) -> u64 {
    now.as_secs()
}

pub(super) struct Pool {
    pub(super) subnet: u32,
    pub(super) start: u32,
    pub(super) slots: Box<[AtomicU64]>,
    /// Slots at or above this index were never handed out by the sequential path.
    pub(super) high_water: AtomicUsize,
    /// Where the reuse scan resumes.
    pub(super) cursor: AtomicUsize,
    /// Bumped whenever a slot becomes free early (release, lapsed offer given back), so a
    /// remembered "exhausted" verdict is dropped.
    pub(super) freed_gen: AtomicU64,
    /// `freed_gen << 29 | earliest_expiry_secs` when the last full scan found nothing; 0 if none.
    pub(super) exhausted: AtomicU64,
}

impl Pool {
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn index(&self, addr: Ipv4Addr) -> Option<usize> {
        let i = u32::from(addr).checked_sub(self.start)? as usize;
        (i < self.slots.len()).then_some(i)
    }

    pub(super) fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::from(self.start + i as u32)
    }

    pub(super) fn load(&self, i: usize) -> Word {
        Word(self.slots[i].load(Ordering::Acquire))
    }

    pub(super) fn cas(&self, i: usize, old: Word, new: Word) -> bool {
        self.slots[i]
            .compare_exchange(old.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(super) fn mark_freed(&self) {
        self.freed_gen.fetch_add(1, Ordering::AcqRel);
        self.exhausted.store(0, Ordering::Release);
    }
}
