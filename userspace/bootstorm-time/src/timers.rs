//! One deadline per key, in a heap: the timer structure of a worker that drives many transfers
//! (the TFTP server core) or many simulated machines (the load generator).
//!
//! A key has at most one live entry. [`Timers::schedule`] pushes only when the new deadline is
//! earlier than the one in the heap; when a deadline moved later, the old entry pops first,
//! [`Timers::expired`] reports the key, and the caller, finding nothing due, schedules the
//! later deadline again. So the heap stays at one entry per key (plus at most one stale entry
//! each) without ever searching it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

/// Deadlines of type `D` (an instant) for keys of type `K`.
#[derive(Debug)]
pub struct Timers<D: Ord + Copy, K: Ord + Copy + Hash> {
    heap: BinaryHeap<Reverse<(D, K)>>,
    /// The deadline each key has in the heap.
    scheduled: HashMap<K, D>,
}

impl<D: Ord + Copy, K: Ord + Copy + Hash> Default for Timers<D, K> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            scheduled: HashMap::new(),
        }
    }
}

impl<D: Ord + Copy, K: Ord + Copy + Hash> Timers<D, K> {
    /// Wants `key` woken at `at` (or earlier, if it has an earlier deadline already).
    pub fn schedule(&mut self, key: K, at: D) {
        match self.scheduled.get(&key) {
            Some(d) if *d <= at => {}
            _ => {
                self.scheduled.insert(key, at);
                self.heap.push(Reverse((at, key)));
            }
        }
    }

    /// Forgets `key` (its heap entry, if any, is skipped when it pops).
    pub fn cancel(&mut self, key: K) {
        self.scheduled.remove(&key);
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<D> {
        self.heap.peek().map(|Reverse((d, _))| *d)
    }

    /// The next key whose deadline is at or before `now`, if any; it is no longer scheduled.
    pub fn expired(&mut self, now: D) -> Option<K> {
        while let Some(Reverse((d, k))) = self.heap.peek().copied() {
            if d > now {
                return None;
            }
            self.heap.pop();
            if self.scheduled.get(&k) == Some(&d) {
                self.scheduled.remove(&k);
                return Some(k);
            }
        }
        None
    }

    /// Keys scheduled.
    pub fn len(&self) -> usize {
        self.scheduled.len()
    }

    /// True if nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.scheduled.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_key_earliest_wins_and_later_is_rescheduled_by_the_caller() {
        let mut t: Timers<u64, u32> = Timers::default();
        t.schedule(1, 50);
        t.schedule(1, 80); // later: the entry at 50 stays
        t.schedule(2, 30);
        t.schedule(2, 10); // earlier: a new entry
        assert_eq!(t.next(), Some(10));
        assert_eq!(t.expired(9), None);
        assert_eq!(t.expired(40), Some(2));
        assert_eq!(t.expired(40), None, "the stale entry at 30 is skipped");
        assert_eq!(t.expired(60), Some(1));
        assert!(t.is_empty());
        t.schedule(3, 5);
        t.cancel(3);
        assert_eq!(t.expired(100), None);
        // Bounded: rescheduling later never grows the heap past one stale entry per key.
        for i in 0..1000u64 {
            t.schedule(7, 1000 + i);
        }
        assert!(t.heap.len() <= 2, "{}", t.heap.len());
    }
}
