//! The allocator: claiming an address for an offer (the client's own, the one it asked for,
//! a never-used one, then one nobody remembers, then one remembered for someone else), giving
//! one back, and the scan of a full pool that finds the oldest unconfirmed offer to reclaim.
//! Every claim is one CAS on a slot word.

use super::*;

impl LeaseTable {
    /// Claims `addr` for an offer to the client with `tag` if it may have it. `is_previous` says
    /// the client's own record names `addr`, which is what makes a matching tag "mine".
    pub(super) fn claim_for_offer(
        &self,
        addr: Ipv4Addr,
        tag: u32,
        is_previous: bool,
        now: Instant,
        until: u64,
    ) -> Option<Ipv4Addr> {
        let (pool, i) = self.slot_of(addr)?;
        let now_s = now_secs(now);
        loop {
            let w = pool.load(i);
            let new = if w.held(now_s) {
                if !(is_previous && w.tag() == tag)
                    || w.state() == state::DECLINED
                    || w.state() == state::RESERVED
                {
                    return None;
                }
                if w.state() == state::BOUND {
                    return Some(addr); // already bound to this client: offer it as it is
                }
                Word::new(state::OFFERED, w.expiry().max(until), tag)
            } else {
                // Free or lapsed. An address remembered for another client is still granted when
                // asked for by name: stickiness steers the allocator, it does not hold addresses.
                Word::new(state::OFFERED, until, tag)
            };
            if pool.cas(i, w, new) {
                return Some(addr);
            }
        }
    }

    /// Frees `addr` if the client with `tag` holds it, offered or bound; returns the slot word
    /// it freed.
    pub(super) fn give_back(&self, addr: Ipv4Addr, tag: u32) -> Option<Word> {
        let (pool, i) = self.slot_of(addr)?;
        loop {
            let w = pool.load(i);
            if w.tag() != tag || !matches!(w.state(), state::OFFERED | state::BOUND) {
                return None;
            }
            if pool.cas(i, w, Word::new(state::FREE, 0, 0)) {
                pool.mark_freed();
                return Some(w);
            }
        }
    }

    pub(super) fn allocate(
        &self,
        now: Instant,
        subnet: u32,
        tag: u32,
        until: u64,
    ) -> Result<(Ipv4Addr, bool), AllocError> {
        let now_s = now_secs(now);
        for pool in self.pools.iter().filter(|p| p.subnet == subnet) {
            // Fast path: never-used slots, in order.
            loop {
                let i = pool.high_water.load(Ordering::Acquire);
                if i >= pool.len() {
                    break;
                }
                if pool
                    .high_water
                    .compare_exchange(i, i + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    continue;
                }
                let w = pool.load(i);
                if w == Word(0) && pool.cas(i, w, Word::new(state::OFFERED, until, tag)) {
                    return Ok((pool.addr(i), false));
                }
                // Taken out of order (a requested address or a reservation): try the next one.
            }
        }
        // Nothing free: an offer is a soft hold. The oldest one no REQUEST confirmed goes to
        // this client, so DISCOVERs alone (a flood from random MACs) cannot starve real clients;
        // a bound lease is never taken. Its first client, should it still REQUEST, is NAKed
        // and starts over. Another worker may take the same offer first: look again, a bounded
        // number of times.
        for _ in 0..RECLAIM_TRIES {
            let mut oldest: Option<(&Pool, usize, Word)> = None;
            for pool in self.pools.iter().filter(|p| p.subnet == subnet) {
                match self.scan(pool, now_s, tag, until) {
                    Scan::Got(a) => return Ok((a, false)),
                    Scan::Full(Some((i, w))) => {
                        if oldest.is_none_or(|(_, _, o)| w.expiry() < o.expiry()) {
                            oldest = Some((pool, i, w));
                        }
                    }
                    Scan::Full(None) => {}
                }
            }
            let Some((pool, i, w)) = oldest else {
                break;
            };
            if pool.cas(i, w, Word::new(state::OFFERED, until, tag)) {
                // Expiries have one-second resolution: moving the cursor past this slot makes
                // the next reclaim take the next offer of the same second, not this one again.
                pool.cursor.store(i + 1, Ordering::Relaxed);
                return Ok((pool.addr(i), true));
            }
        }
        Err(AllocError::Exhausted)
    }

    /// Looks for a reusable slot: free or expired, nobody remembered first, else the one remembered
    /// for someone else that the cursor reaches first. A full pool reports its oldest offer held
    /// for another client, if any.
    pub(super) fn scan(&self, pool: &Pool, now_s: u64, tag: u32, until: u64) -> Scan {
        let gen_now = pool.freed_gen.load(Ordering::Acquire);
        let ex = pool.exhausted.load(Ordering::Acquire);
        if ex != 0 && ex >> 29 == gen_now && now_s < (ex & EXPIRY_MAX) {
            return Scan::Full(None);
        }
        let n = pool.len();
        let start = pool.cursor.load(Ordering::Relaxed) % n;
        let mut fallback = None;
        let mut earliest = EXPIRY_MAX;
        let mut oldest_offer: Option<(usize, Word)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let w = pool.load(i);
            if w.held(now_s) {
                if w.state() != state::RESERVED {
                    earliest = earliest.min(w.expiry());
                }
                if w.state() == state::OFFERED
                    && w.tag() != tag
                    && oldest_offer.is_none_or(|(_, o)| w.expiry() < o.expiry())
                {
                    oldest_offer = Some((i, w));
                }
                continue;
            }
            let remembered = w.remembered();
            if remembered == 0 || remembered == tag {
                if pool.cas(i, w, Word::new(state::OFFERED, until, tag)) {
                    pool.cursor.store(i + 1, Ordering::Relaxed);
                    return Scan::Got(pool.addr(i));
                }
            } else if fallback.is_none() {
                fallback = Some((i, w));
            }
        }
        if let Some((i, w)) = fallback {
            if pool.cas(i, w, Word::new(state::OFFERED, until, tag)) {
                pool.cursor.store(i + 1, Ordering::Relaxed);
                return Scan::Got(pool.addr(i));
            }
            return Scan::Full(None); // lost a race; the next DISCOVER retransmit scans again
        }
        if oldest_offer.is_none() {
            // Only bound, reserved and quarantined addresses: remember the verdict until one
            // of them can change.
            pool.exhausted
                .store((gen_now << 29) | earliest.max(now_s + 1), Ordering::Release);
        }
        Scan::Full(oldest_offer)
    }
}

/// How often a full pool is scanned again when another thread took the offer this one was about
/// to reclaim. Each lost race means another client got an address, so a few tries suffice; a
/// DISCOVER that still finds nothing is retransmitted by its client.
const RECLAIM_TRIES: usize = 8;

/// What a scan of one pool found.
pub(super) enum Scan {
    /// A free address, now offered.
    Got(Ipv4Addr),
    /// Nothing free; the oldest offer held for another client, if any.
    Full(Option<(usize, Word)>),
}
