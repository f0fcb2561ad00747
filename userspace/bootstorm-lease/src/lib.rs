//! The lease table: which address belongs to which client, shared by all worker threads without a
//! global lock.
//!
//! It is written by hand because it is the product's core (ARCHITECTURE.md decision 5):
//!
//! - **Address ownership** is an array of `AtomicU64` per pool, one word per address, indexed by
//!   `ip - pool.start`. A word packs a state (free, offered, bound, reserved, declined), an expiry
//!   in seconds and a 32-bit owner tag (a hash of the client key). Claiming an address is one
//!   compare-and-swap, so two workers can never hand out the same address, whatever shards their
//!   clients live in.
//! - **Client records** (address, state, expiry, MAC, hostname) live in per-shard maps, a shard
//!   chosen by a hash of the client key and guarded by its own lock. All operations on one client
//!   are serialised by its shard lock; operations on different shards never wait for each other.
//!   "Mine" means: the slot's tag is my tag *and* my record names that address, so a 32-bit tag
//!   collision cannot make one client believe it holds another's address.
//! - **Finding a free address** takes O(1) in a boot storm: a per-pool high-water mark hands out
//!   never-used addresses in order; once the pool has been used through, a cursor scan looks for
//!   free or expired slots, preferring those that nobody held before, then the least-recently
//!   considered. A failed full scan is remembered until the next release or the earliest expiry,
//!   so an exhausted pool does not cost a scan per DISCOVER.
//! - **Expiry is lazy**: a slot whose expiry has passed is free to claim; [`LeaseTable::sweep`]
//!   only updates records for listing. A released or expired slot keeps its last owner's tag, so
//!   the same client gets the same address back (sticky re-offer) while others are steered to
//!   addresses nobody remembers.
//!
//! It deliberately knows nothing of DHCP messages, options or policy (that is `bootstorm-dhcp`),
//! and nothing of disks: every mutating call returns the [`Lease`] it produced, which is the record
//! the durable journal (a later layer) appends before the reply leaves.
#![forbid(unsafe_code)]

mod sync;
mod table;

pub use table::*;
