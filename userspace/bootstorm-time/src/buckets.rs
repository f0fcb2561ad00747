//! [`Buckets`]: a histogram with fixed upper bounds, counted with relaxed atomics so the thread
//! that observes never waits on the one that reads (a metrics scrape). For what Prometheus
//! wants as a histogram (the journal's commit latency and group size, iSCSI I/O latency), where
//! an hdrhistogram behind a lock would make each observation pay for the reader.

use core::sync::atomic::{AtomicU64, Ordering};

/// Counts per upper bound (`value <= bound`), one more for values past the last, and the sum.
#[derive(Debug)]
pub struct Buckets {
    bounds: &'static [u64],
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// What [`Buckets::snapshot`] read: cumulative counts per bound, as Prometheus exposes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// `(bound, observations <= bound)`, bounds ascending.
    pub cumulative: Vec<(u64, u64)>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// Their sum.
    pub sum: u64,
}

impl Buckets {
    /// Buckets with these upper bounds (ascending).
    pub fn new(bounds: &'static [u64]) -> Buckets {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts `v`.
    pub fn observe(&self, v: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    /// The counts now (each read once; observations in flight may be in the sum and not yet in
    /// a bucket, or the other way round).
    pub fn snapshot(&self) -> Snapshot {
        let mut run = 0;
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        for (b, c) in self.bounds.iter().zip(self.counts.iter()) {
            run += c.load(Ordering::Relaxed);
            cumulative.push((*b, run));
        }
        let count = run + self.counts[self.bounds.len()].load(Ordering::Relaxed);
        Snapshot {
            cumulative,
            count,
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_under_the_first_bound_not_below_them() {
        static B: [u64; 3] = [1, 10, 100];
        let h = Buckets::new(&B);
        for v in [0, 1, 2, 10, 11, 100, 101, 5_000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, [(1, 2), (10, 4), (100, 6)]);
        assert_eq!((s.count, s.sum), (8, 5_225));
    }

    #[test]
    fn observers_on_many_threads_lose_nothing() {
        static B: [u64; 2] = [5, 50];
        let h = std::sync::Arc::new(Buckets::new(&B));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || (0..10_000u64).for_each(|i| h.observe((i + t) % 100)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let s = h.snapshot();
        assert_eq!(s.count, 40_000);
        // 0..=5 is 6 of each 100, 0..=50 is 51.
        assert_eq!(s.cumulative, [(5, 2_400), (50, 20_400)]);
    }
}
