//! Reading the table: a client's record and binding, who holds an address, the sweep of
//! expired leases, listings and address counts. Records are brought up to date for `now` as they
//! are read.

use super::*;

impl LeaseTable {
    /// The client's record, with its state brought up to date for `now`.
    pub fn lease_of(&self, now: Instant, key: &[u8]) -> Option<Lease> {
        let shard = lock(self.shard(key_hash(key)));
        let mut l = shard.clients.get(key)?.clone();
        self.refresh(now, &mut l);
        Some(l)
    }

    /// The client's binding without cloning its record (hot path), state up to date for `now`.
    pub fn binding_of(&self, now: Instant, key: &[u8]) -> Option<Binding> {
        let shard = lock(self.shard(key_hash(key)));
        let l = shard.clients.get(key)?;
        let mut b = l.binding();
        if matches!(b.state, LeaseState::Offered | LeaseState::Bound)
            && (b.expires <= now || self.lost(l))
        {
            b.state = LeaseState::Expired;
        }
        Some(b)
    }

    pub(super) fn lost(&self, l: &Lease) -> bool {
        !l.reserved
            && self.slot_of(l.addr).is_some_and(|(p, i)| {
                let w = p.load(i);
                w.tag() != tag_of(key_hash(&l.key))
                    || !matches!(w.state(), state::OFFERED | state::BOUND)
            })
    }

    /// Whether `addr` is held now, and by whom relative to `key`.
    pub fn holder(&self, now: Instant, key: &[u8], addr: Ipv4Addr) -> Holder {
        let Some((pool, i)) = self.slot_of(addr) else {
            return Holder::NotInPool;
        };
        let w = pool.load(i);
        if !w.held(now_secs(now)) {
            return Holder::Free;
        }
        let tag = tag_of(key_hash(key));
        let shard = lock(self.shard(key_hash(key)));
        let by_record = shard.clients.get(key).is_some_and(|l| l.addr == addr);
        if w.tag() == tag && by_record && matches!(w.state(), state::OFFERED | state::BOUND) {
            Holder::Me
        } else {
            Holder::Other
        }
    }

    /// Brings a record's state up to date with its slot and the clock.
    pub(super) fn refresh(&self, now: Instant, l: &mut Lease) {
        l.state = self.state_now(now, l);
    }

    /// A record's state as of `now` (its own, unless it lapsed or lost its slot).
    fn state_now(&self, now: Instant, l: &Lease) -> LeaseState {
        if matches!(l.state, LeaseState::Offered | LeaseState::Bound)
            && (l.expires <= now || self.lost(l))
        {
            LeaseState::Expired
        } else {
            l.state
        }
    }

    /// Hands `f` every client record with its state as of `now`, shard by shard under the
    /// shard's lock and without copying them: for counts over the whole table (the API's pools,
    /// the metrics' pool gauges), where [`LeaseTable::leases`] would clone and sort every record.
    /// `f` must not call back into the table.
    pub fn each_record(&self, now: Instant, mut f: impl FnMut(&Lease, LeaseState)) {
        for s in self.shards.iter() {
            let shard = lock(s);
            for l in shard.clients.values() {
                f(l, self.state_now(now, l));
            }
        }
    }

    /// Marks lapsed offers and leases as expired in the records and hands each record that
    /// changed to `on_expired` (for logs and, later, the journal); returns how many changed.
    /// Slots need no sweep (expiry is lazy); this keeps listings, counters and logs true. The
    /// callback runs under the shard's lock: it must not call back into the table.
    pub fn sweep(&self, now: Instant, mut on_expired: impl FnMut(&Lease)) -> usize {
        let mut changed = 0;
        for s in self.shards.iter() {
            let mut shard = lock(s);
            for l in shard.clients.values_mut() {
                let before = l.state;
                self.refresh(now, l);
                if before != l.state {
                    changed += 1;
                    on_expired(l);
                    if let Some(sink) = self.sink.get() {
                        // Nothing is announced to anyone: nobody waits for it.
                        let _ = sink.changed(Change::Expire, l);
                    }
                }
            }
        }
        changed
    }

    /// The hardware address of the client that holds `addr` (offered or bound) now. Walks every
    /// shard: meant for rare lookups (a TFTP per-client root), not for the DHCP hot path.
    pub fn hwaddr_of(&self, now: Instant, addr: Ipv4Addr) -> Option<Box<[u8]>> {
        for s in self.shards.iter() {
            let shard = lock(s);
            for l in shard.clients.values().filter(|l| l.addr == addr) {
                let mut l = l.clone();
                self.refresh(now, &mut l);
                if matches!(l.state, LeaseState::Offered | LeaseState::Bound) {
                    return Some(l.hwaddr);
                }
            }
        }
        None
    }

    /// Every client record, states up to date, sorted by address (then client key).
    pub fn leases(&self, now: Instant) -> Vec<Lease> {
        self.leases_where(now, |_, _| true)
    }

    /// The client records `keep` takes (handed each with its state as of `now`, under its
    /// shard's lock: it must not call back into the table), states up to date, in the order of
    /// [`LeaseTable::leases`]: only the kept ones are copied (an API listing with a filter).
    pub fn leases_where(
        &self,
        now: Instant,
        mut keep: impl FnMut(&Lease, LeaseState) -> bool,
    ) -> Vec<Lease> {
        let mut out = Vec::new();
        self.each_record(now, |l, state| {
            if keep(l, state) {
                let mut l = l.clone();
                l.state = state;
                out.push(l);
            }
        });
        // By reference: a key cloned per comparison allocated O(n log n) times.
        out.sort_by(|a, b| (u32::from(a.addr), &a.key).cmp(&(u32::from(b.addr), &b.key)));
        out
    }

    /// The client records that name `addr` (one holds it at most; others remember it), states
    /// up to date, sorted by client key: as [`LeaseTable::leases`] lists them, but only those
    /// are copied.
    pub fn records_at(&self, now: Instant, addr: Ipv4Addr) -> Vec<Lease> {
        self.leases_where(now, |l, _| l.addr == addr)
    }

    /// Addresses held (offered or bound) that no client's record names: always empty. A
    /// consistency check for tests and for an operator's `leases check`; walks everything.
    pub fn unnamed(&self, now: Instant) -> Vec<Ipv4Addr> {
        let mut named = std::collections::HashSet::new();
        for s in self.shards.iter() {
            let shard = lock(s);
            for l in shard.clients.values() {
                let mut l = l.clone();
                self.refresh(now, &mut l);
                if !l.reserved && matches!(l.state, LeaseState::Offered | LeaseState::Bound) {
                    named.insert((l.addr, tag_of(key_hash(&l.key))));
                }
            }
        }
        let now_s = now_secs(now);
        let mut out = Vec::new();
        for p in self.pools.iter() {
            for i in 0..p.len() {
                let w = p.load(i);
                if w.held(now_s)
                    && matches!(w.state(), state::OFFERED | state::BOUND)
                    && !named.contains(&(p.addr(i), w.tag()))
                {
                    out.push(p.addr(i));
                }
            }
        }
        out
    }

    /// Counts of addresses per slot state, for metrics: (free, offered, bound, other).
    pub fn usage(&self, now: Instant) -> Usage {
        let now_s = now_secs(now);
        let mut u = Usage::default();
        for p in self.pools.iter() {
            for i in 0..p.len() {
                let w = p.load(i);
                u.total += 1;
                if !w.held(now_s) {
                    u.free += 1;
                } else {
                    match w.state() {
                        state::OFFERED => u.offered += 1,
                        state::BOUND => u.bound += 1,
                        state::RESERVED => u.reserved += 1,
                        _ => u.declined += 1,
                    }
                }
            }
        }
        u
    }
}
