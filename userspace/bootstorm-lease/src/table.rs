use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering, lock};
use bootstorm_time::{Duration, Instant};
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

/// A contiguous range of addresses that the table hands out, belonging to one subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// The subnet the range belongs to (an index chosen by the caller).
    pub subnet: u32,
    /// First address, inclusive.
    pub start: Ipv4Addr,
    /// Last address, inclusive.
    pub end: Ipv4Addr,
}

/// Why a table could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// A range ends before it starts.
    #[error("range {start}-{end} ends before it starts")]
    EmptyRange { start: Ipv4Addr, end: Ipv4Addr },
    /// Two ranges share addresses.
    #[error("ranges {a} and {b} overlap")]
    Overlap { a: String, b: String },
    /// A range is larger than the table supports.
    #[error("range {start}-{end} holds more than 16777216 addresses")]
    TooLarge { start: Ipv4Addr, end: Ipv4Addr },
}

/// Why no address could be offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// Every address of the subnet's pools is held.
    #[error("pool exhausted")]
    Exhausted,
}

/// Why a binding was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The address is in no pool of this table (and not reserved for the client).
    #[error("address not in any pool")]
    NotInPool,
    /// Another client holds the address (offered, bound) or it is reserved or quarantined.
    #[error("address held by another client")]
    Taken,
}

/// What a client record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseState {
    /// Offered, waiting for a REQUEST.
    Offered,
    /// Bound (ACKed).
    Bound,
    /// Released by the client; remembered for a sticky re-offer.
    Released,
    /// Expired; remembered for a sticky re-offer.
    Expired,
    /// Declined by the client (address in quarantine).
    Declined,
}

impl LeaseState {
    /// Lower-case name for logs, listings and the journal.
    pub fn name(self) -> &'static str {
        match self {
            LeaseState::Offered => "offered",
            LeaseState::Bound => "bound",
            LeaseState::Released => "released",
            LeaseState::Expired => "expired",
            LeaseState::Declined => "declined",
        }
    }
}

/// The record of one client: what the table returns from every mutation and what a listing shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Client key: option 61 if the client sent one, else htype + chaddr.
    pub key: Box<[u8]>,
    /// Hardware address (chaddr up to hlen).
    pub hwaddr: Box<[u8]>,
    /// Address.
    pub addr: Ipv4Addr,
    /// State.
    pub state: LeaseState,
    /// When the offer or lease ends (or ended).
    pub expires: Instant,
    /// Host name the client sent (option 12).
    pub hostname: Option<Box<str>>,
    /// Subnet index.
    pub subnet: u32,
    /// True if the address comes from a reservation.
    pub reserved: bool,
}

/// What a mutation produced: the part of a record that fits in registers, so the hot path never
/// clones keys or names. The caller already holds the key, MAC and host name it passed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Address.
    pub addr: Ipv4Addr,
    /// State.
    pub state: LeaseState,
    /// When the offer or lease ends.
    pub expires: Instant,
    /// Subnet index.
    pub subnet: u32,
    /// True if the address comes from a reservation.
    pub reserved: bool,
    /// True if the pool had no free address and this offer took the oldest offer another client
    /// never confirmed (a soft hold, RFC 2131 4.3.1 leaves it to the server).
    pub reclaimed: bool,
    /// The sink's sequence number of the last persistent change this call made (see
    /// [`LeaseSink::changed`]); 0 if it made none, or the sink needs nobody to wait. A reply
    /// that announces this binding must not leave before the sink holds that change.
    pub commit: u64,
}

impl Lease {
    /// The record without its key, MAC and name.
    pub fn binding(&self) -> Binding {
        Binding {
            addr: self.addr,
            state: self.state,
            expires: self.expires,
            subnet: self.subnet,
            reserved: self.reserved,
            reclaimed: false,
            commit: 0,
        }
    }
}

/// What identifies a client to the table.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    /// Client key: option 61 if sent, else htype + chaddr.
    pub key: &'a [u8],
    /// Hardware address, for records and listings.
    pub hwaddr: &'a [u8],
    /// Host name, if the client sent one.
    pub hostname: Option<&'a [u8]>,
}

impl Client<'_> {
    fn hash(&self) -> u64 {
        key_hash(self.key)
    }
}

fn key_hash(key: &[u8]) -> u64 {
    // SipHash with fixed keys: stable across runs and processes, so a tag computed at replay
    // matches the one computed at bind time, and not steerable by crafted client ids the way a
    // non-keyed multiplicative hash would be.
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

fn tag_of(hash: u64) -> u32 {
    let t = (hash >> 32) as u32;
    if t == 0 { 1 } else { t }
}

/// Who holds an address right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: free, or its offer or lease expired.
    Free,
    /// Held by this client (offered or bound).
    Me,
    /// Held by another client, reserved for one, or in quarantine.
    Other,
    /// Not in any pool.
    NotInPool,
}

#[derive(Default)]
struct Shard {
    clients: HashMap<Box<[u8]>, Lease>,
}

/// A change worth keeping across a restart, as handed to a [`LeaseSink`]. Offers are not
/// changes in this sense: they live for seconds and a client whose offer is lost asks again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A lease was granted or renewed (the record is Bound).
    Bind,
    /// The client released its address.
    Release,
    /// The client declined its address; nobody gets it before `until`.
    Decline {
        /// End of the quarantine.
        until: Instant,
    },
    /// A lease lapsed (reported by [`LeaseTable::sweep`]).
    Expire,
}

/// Receives every persistent change, in order per client: called under the client's shard lock,
/// right after the change. Must not call back into the table.
///
/// This is the durability contract between the table and whoever keeps its changes (the lease
/// journal): the sink answers each change with a sequence number, the table hands it back in
/// the [`Binding`] of the call that made the change (`commit`), the DHCP core puts it in its
/// outcome, and the I/O loop holds the reply until the sink says that sequence is durable.
/// Nothing is passed behind the caller's back (no thread-local state).
pub trait LeaseSink: Send + Sync {
    /// `lease` is the client's record after the change. Returns the sequence number a reply
    /// announcing the change must wait for (increasing per sink), or 0 if none need wait.
    fn changed(&self, change: Change, lease: &Lease) -> u64;
}

/// Why a record could not be restored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    /// Another client holds the address (a bound lease restored earlier).
    #[error("{0} is held by another client")]
    Conflict(Ipv4Addr),
}

/// The lease table. See the crate documentation for the design.
pub struct LeaseTable {
    pools: Box<[Pool]>,
    shards: Box<[Mutex<Shard>]>,
    sink: std::sync::OnceLock<std::sync::Arc<dyn LeaseSink>>,
}

/// Number of shards when the caller does not choose: enough that workers rarely meet on one lock.
pub const DEFAULT_SHARDS: usize = 64;

impl LeaseTable {
    /// Builds a table over `pools`; `reserved` addresses inside a pool are never handed out by
    /// the allocator (they belong to reservations).
    pub fn new(
        pools: &[PoolConfig],
        reserved: &[Ipv4Addr],
        shards: usize,
    ) -> Result<LeaseTable, BuildError> {
        let mut sorted = pools.to_vec();
        sorted.sort_by_key(|p| u32::from(p.start));
        for w in sorted.windows(2) {
            if u32::from(w[1].start) <= u32::from(w[0].end) {
                return Err(BuildError::Overlap {
                    a: format!("{}-{}", w[0].start, w[0].end),
                    b: format!("{}-{}", w[1].start, w[1].end),
                });
            }
        }
        let mut built = Vec::with_capacity(pools.len());
        for p in &sorted {
            let (s, e) = (u32::from(p.start), u32::from(p.end));
            if e < s {
                return Err(BuildError::EmptyRange {
                    start: p.start,
                    end: p.end,
                });
            }
            let n = (e - s) as usize + 1;
            if n > 1 << 24 {
                return Err(BuildError::TooLarge {
                    start: p.start,
                    end: p.end,
                });
            }
            let slots: Box<[AtomicU64]> = (0..n).map(|_| AtomicU64::new(0)).collect();
            built.push(Pool {
                subnet: p.subnet,
                start: s,
                slots,
                high_water: AtomicUsize::new(0),
                cursor: AtomicUsize::new(0),
                freed_gen: AtomicU64::new(0),
                exhausted: AtomicU64::new(0),
            });
        }
        let table = LeaseTable {
            pools: built.into_boxed_slice(),
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            sink: std::sync::OnceLock::new(),
        };
        for &r in reserved {
            if let Some((pool, i)) = table.slot_of(r) {
                pool.slots[i].store(Word::new(state::RESERVED, 0, 0).0, Ordering::Release);
            }
        }
        Ok(table)
    }

    fn slot_of(&self, addr: Ipv4Addr) -> Option<(&Pool, usize)> {
        let a = u32::from(addr);
        let k = self.pools.partition_point(|p| p.start <= a);
        let pool = self.pools.get(k.checked_sub(1)?)?;
        Some((pool, pool.index(addr)?))
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        &self.shards[(hash % self.shards.len() as u64) as usize]
    }

    /// Sends every later persistent change to `sink` (once; a second call is refused and returns
    /// false).
    pub fn set_sink(&self, sink: std::sync::Arc<dyn LeaseSink>) -> bool {
        self.sink.set(sink).is_ok()
    }

    /// Reports a change to the sink; returns the sequence number its announcement waits for.
    fn notify(&self, shard: &Shard, key: &[u8], change: Change) -> u64 {
        if let (Some(sink), Some(l)) = (self.sink.get(), shard.clients.get(key)) {
            return sink.changed(change, l);
        }
        0
    }

    /// Puts back a record kept from before a restart (journal replay, import): a bound lease that
    /// has not expired claims its address again; a quarantine (`quarantine_until`, for a declined
    /// address) holds it again; anything else is remembered for a sticky re-offer if the address
    /// is free. Call before serving, for the latest record of each client. Not reported to the
    /// sink.
    pub fn restore(
        &self,
        now: Instant,
        mut lease: Lease,
        quarantine_until: Option<Instant>,
    ) -> Result<(), RestoreError> {
        let hash = key_hash(&lease.key);
        let tag = tag_of(hash);
        let now_s = now_secs(now);
        if matches!(lease.state, LeaseState::Offered | LeaseState::Bound) && lease.expires <= now {
            lease.state = LeaseState::Expired;
        }
        if lease.state == LeaseState::Offered {
            lease.state = LeaseState::Expired; // offers do not survive a restart
        }
        let mut shard = lock(self.shard(hash));
        if !lease.reserved
            && let Some((pool, i)) = self.slot_of(lease.addr)
        {
            let w = pool.load(i);
            let held_by_other = w.held(now_s) && w.tag() != tag;
            let new = match lease.state {
                LeaseState::Bound => {
                    if held_by_other {
                        return Err(RestoreError::Conflict(lease.addr));
                    }
                    Some(Word::new(state::BOUND, secs_ceil(lease.expires), tag))
                }
                LeaseState::Declined => quarantine_until
                    .filter(|u| *u > now && !held_by_other)
                    .map(|u| Word::new(state::DECLINED, secs_ceil(u), 0)),
                _ if !w.held(now_s) && w.state() != state::RESERVED => {
                    Some(Word::new(state::FREE, 0, tag))
                }
                _ => None,
            };
            if let Some(new) = new {
                pool.slots[i].store(new.0, Ordering::Release);
            }
        }
        shard.clients.insert(lease.key.clone(), lease);
        Ok(())
    }

    /// The subnet of the pool holding `addr`, if any.
    pub fn subnet_of(&self, addr: Ipv4Addr) -> Option<u32> {
        self.slot_of(addr).map(|(p, _)| p.subnet)
    }

    /// Offers an address to `client` in `subnet`, holding it until `now + hold`. Preference:
    /// the client's current or remembered address, then `requested` (option 50) if free, then a
    /// never-used address, then a free one nobody remembers, then one remembered for someone else.
    pub fn offer(
        &self,
        now: Instant,
        subnet: u32,
        client: &Client<'_>,
        requested: Option<Ipv4Addr>,
        hold: Duration,
    ) -> Result<Binding, AllocError> {
        let hash = client.hash();
        let tag = tag_of(hash);
        let mut shard = lock(self.shard(hash));
        let until = secs_after(now, hold);
        let previous = shard.clients.get(client.key).map(|l| l.addr);
        let mut got = None;
        if let Some(prev) = previous
            && self.subnet_of(prev) == Some(subnet)
        {
            got = self.claim_for_offer(prev, tag, true, now, until);
        }
        if got.is_none()
            && let Some(req) = requested.filter(|r| Some(*r) != previous)
            && self.subnet_of(req) == Some(subnet)
        {
            got = self.claim_for_offer(req, tag, false, now, until);
        }
        let (addr, reclaimed) = match got {
            Some(a) => (a, false),
            None => self.allocate(now, subnet, tag, until)?,
        };
        let mut commit = 0;
        if let Some(prev) = previous.filter(|p| *p != addr) {
            // The client moves on (another subnet, or its address was taken while it was away):
            // its old address goes back, so the table never holds an address no record names.
            commit = self.leave(now, &mut shard, client.key, prev, tag);
        }
        let bound_already = self
            .slot_of(addr)
            .is_some_and(|(p, i)| p.load(i).state() == state::BOUND);
        let expires = if bound_already {
            shard
                .clients
                .get(client.key)
                .map(|l| l.expires)
                .unwrap_or(now + hold)
        } else {
            now + hold
        };
        let state = if bound_already {
            LeaseState::Bound
        } else {
            LeaseState::Offered
        };
        let mut b = Self::record(&mut shard, client, addr, state, expires, subnet, false);
        b.reclaimed = reclaimed;
        b.commit = commit;
        Ok(b)
    }

    /// The client's record moves away from `prev`: an offer of it is given back, and a lease on
    /// it is released (reported to the sink as a release, so a restart does not bring back an
    /// address the running table let go). Called under the client's shard lock.
    /// Returns the sink's sequence number of the release (0 if none was reported).
    fn leave(&self, now: Instant, shard: &mut Shard, key: &[u8], prev: Ipv4Addr, tag: u32) -> u64 {
        // A reserved address is outside the allocator: nothing to give back.
        let Some(l) = shard
            .clients
            .get_mut(key)
            .filter(|l| l.addr == prev && !l.reserved)
        else {
            return 0;
        };
        if let Some(w) = self.give_back(prev, tag)
            && w.state() == state::BOUND
            && w.held(now_secs(now))
        {
            l.state = LeaseState::Released;
            l.expires = now;
            return self.notify(shard, key, Change::Release);
        }
        0
    }

    /// Records an offer of a reserved address (the allocator never hands these out).
    pub fn offer_reserved(
        &self,
        now: Instant,
        subnet: u32,
        client: &Client<'_>,
        addr: Ipv4Addr,
        hold: Duration,
    ) -> Binding {
        let hash = client.hash();
        let mut shard = lock(self.shard(hash));
        if let Some(l) = shard.clients.get(client.key)
            && l.addr == addr
            && l.state == LeaseState::Bound
            && l.expires > now
        {
            return l.binding();
        }
        let mut commit = 0;
        if let Some(prev) = shard.clients.get(client.key).map(|l| l.addr)
            && prev != addr
        {
            commit = self.leave(now, &mut shard, client.key, prev, tag_of(hash));
        }
        let mut b = Self::record(
            &mut shard,
            client,
            addr,
            LeaseState::Offered,
            now + hold,
            subnet,
            true,
        );
        b.commit = commit;
        b
    }

    fn record(
        shard: &mut Shard,
        client: &Client<'_>,
        addr: Ipv4Addr,
        state: LeaseState,
        expires: Instant,
        subnet: u32,
        reserved: bool,
    ) -> Binding {
        let name = |h: &[u8]| String::from_utf8_lossy(h).into_owned().into_boxed_str();
        match shard.clients.get_mut(client.key) {
            Some(l) => {
                l.addr = addr;
                l.state = state;
                l.expires = expires;
                l.subnet = subnet;
                l.reserved = reserved;
                if let Some(h) = client.hostname
                    && l.hostname.as_deref().map(str::as_bytes) != Some(h)
                {
                    l.hostname = Some(name(h));
                }
                if *l.hwaddr != *client.hwaddr {
                    l.hwaddr = client.hwaddr.into();
                }
                l.binding()
            }
            None => {
                let l = Lease {
                    key: client.key.into(),
                    hwaddr: client.hwaddr.into(),
                    addr,
                    state,
                    expires,
                    hostname: client.hostname.map(name),
                    subnet,
                    reserved,
                };
                let b = l.binding();
                shard.clients.insert(client.key.into(), l);
                b
            }
        }
    }

    /// Binds `addr` to `client` until `now + lease` (REQUEST -> ACK, or a renewal). Succeeds if the
    /// client holds the address, or if nobody holds it now.
    pub fn bind(
        &self,
        now: Instant,
        client: &Client<'_>,
        addr: Ipv4Addr,
        lease: Duration,
    ) -> Result<Binding, BindError> {
        let hash = client.hash();
        let tag = tag_of(hash);
        let (pool, i) = self.slot_of(addr).ok_or(BindError::NotInPool)?;
        let mut shard = lock(self.shard(hash));
        let previous = shard.clients.get(client.key).map(|l| l.addr);
        let mine_by_record = previous == Some(addr);
        let now_s = now_secs(now);
        let until = secs_after(now, lease);
        loop {
            let w = pool.load(i);
            if w.held(now_s) {
                let mine = w.tag() == tag
                    && mine_by_record
                    && matches!(w.state(), state::OFFERED | state::BOUND);
                if !mine {
                    return Err(BindError::Taken);
                }
            }
            if pool.cas(i, w, Word::new(state::BOUND, until, tag)) {
                break;
            }
        }
        if let Some(prev) = previous.filter(|p| *p != addr) {
            // The record moves to `addr`; the Bind below names the new address, so the release
            // of the old one need not be journaled on its own (replay keeps the latest record).
            let _ = self.give_back(prev, tag);
        }
        let expires = Instant::from_millis(until * 1000);
        let mut b = Self::record(
            &mut shard,
            client,
            addr,
            LeaseState::Bound,
            expires,
            pool.subnet,
            false,
        );
        b.commit = self.notify(&shard, client.key, Change::Bind);
        Ok(b)
    }

    /// Binds a reserved address (outside the allocator's reach) to its client.
    pub fn bind_reserved(
        &self,
        now: Instant,
        subnet: u32,
        client: &Client<'_>,
        addr: Ipv4Addr,
        lease: Duration,
    ) -> Binding {
        let hash = client.hash();
        let mut shard = lock(self.shard(hash));
        if let Some(prev) = shard.clients.get(client.key).map(|l| l.addr)
            && prev != addr
        {
            // The Bind below comes later from the same sink: its sequence covers this release.
            let _ = self.leave(now, &mut shard, client.key, prev, tag_of(hash));
        }
        let expires = Instant::from_millis(secs_after(now, lease) * 1000);
        let mut b = Self::record(
            &mut shard,
            client,
            addr,
            LeaseState::Bound,
            expires,
            subnet,
            true,
        );
        b.commit = self.notify(&shard, client.key, Change::Bind);
        b
    }

    /// The client gives its address back (DHCPRELEASE). Returns the updated record if the client
    /// held `addr`. The slot keeps the client's tag so the client gets the address back.
    pub fn release(&self, now: Instant, key: &[u8], addr: Ipv4Addr) -> Option<Binding> {
        let hash = key_hash(key);
        let tag = tag_of(hash);
        let mut shard = lock(self.shard(hash));
        let l = shard.clients.get_mut(key).filter(|l| {
            l.addr == addr && matches!(l.state, LeaseState::Bound | LeaseState::Offered)
        })?;
        if !l.reserved {
            let (pool, i) = self.slot_of(addr)?;
            loop {
                let w = pool.load(i);
                if w.tag() != tag || !matches!(w.state(), state::OFFERED | state::BOUND) {
                    return None;
                }
                if pool.cas(i, w, Word::new(state::FREE, 0, tag)) {
                    pool.mark_freed();
                    break;
                }
            }
        }
        l.state = LeaseState::Released;
        l.expires = now;
        let mut b = l.binding();
        b.commit = self.notify(&shard, key, Change::Release);
        Some(b)
    }

    /// The client says the address is in use by someone else (DHCPDECLINE): it is quarantined
    /// for `quarantine` and offered to nobody meanwhile.
    pub fn decline(
        &self,
        now: Instant,
        key: &[u8],
        addr: Ipv4Addr,
        quarantine: Duration,
    ) -> Option<Binding> {
        let hash = key_hash(key);
        let tag = tag_of(hash);
        let mut shard = lock(self.shard(hash));
        let l = shard
            .clients
            .get_mut(key)
            .filter(|l| l.addr == addr && !l.reserved)?;
        let (pool, i) = self.slot_of(addr)?;
        loop {
            let w = pool.load(i);
            if w.tag() != tag || !matches!(w.state(), state::OFFERED | state::BOUND) {
                return None;
            }
            if pool.cas(
                i,
                w,
                Word::new(state::DECLINED, secs_after(now, quarantine), 0),
            ) {
                break;
            }
        }
        // A declined record's `expires` is the end of its quarantine: listings show it, and a
        // snapshot keeps it.
        let until = Instant::from_millis(secs_after(now, quarantine) * 1000);
        l.state = LeaseState::Declined;
        l.expires = until;
        let mut b = l.binding();
        b.commit = self.notify(&shard, key, Change::Decline { until });
        Some(b)
    }

    /// The client chose another server (a REQUEST naming another server id): its offer is given
    /// back at once. Returns the address that was freed.
    pub fn cancel_offer(&self, now: Instant, key: &[u8]) -> Option<Ipv4Addr> {
        let hash = key_hash(key);
        let tag = tag_of(hash);
        let mut shard = lock(self.shard(hash));
        let l = shard
            .clients
            .get(key)
            .filter(|l| l.state == LeaseState::Offered && l.expires > now)?;
        // An offer reclaimed by another client is not this client's to give back.
        let lost = self.lost(l);
        let l = shard.clients.get_mut(key)?;
        let addr = l.addr;
        if !l.reserved && !lost {
            let _ = self.give_back(addr, tag);
        }
        l.state = LeaseState::Expired;
        l.expires = now;
        (!lost).then_some(addr)
    }
}

/// Address counts over all pools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Addresses in pools.
    pub total: u64,
    /// Free (including expired).
    pub free: u64,
    /// Held by an offer.
    pub offered: u64,
    /// Bound.
    pub bound: u64,
    /// Reserved.
    pub reserved: u64,
    /// In quarantine after DECLINE.
    pub declined: u64,
}

mod alloc;
mod query;
mod slot;

use slot::{EXPIRY_MAX, Pool, Word, now_secs, secs_after, secs_ceil, state};

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;
