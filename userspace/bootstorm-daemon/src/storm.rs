//! The storm view's history (`GET /api/v1/storm`): once a second the API thread samples the
//! boot-session registry: live machines per phase, the running totals (started, files loaded,
//! booted, failures) and, per lap, the percentiles of the laps completed in that second (the
//! registry's cumulative histograms minus the previous sample's). The last [`KEEP`] samples are
//! kept, so a dashboard opened in the middle of a storm sees its start, and every open dashboard
//! reads the same history instead of each one polling the registry.
//!
//! The boot paths pay nothing for it: the sampler reads the registry the way a `stats` request
//! does, once a second, on the API's own thread.

use crate::boots::{Boots, Lap, Phase};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Mutex;

/// Samples kept (ten minutes at one a second).
pub const KEEP: usize = 600;

/// One second of the storm.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    /// Wall time, Unix milliseconds.
    at_ms: u64,
    per_phase: [u64; 8],
    started: u64,
    loaded: u64,
    booted: u64,
    failures: u64,
    /// Per lap (in [`Lap::ALL`] order): laps completed since the previous sample, and their
    /// p50, p90 and p99 in milliseconds.
    laps: [(u64, [f64; 3]); 5],
}

struct Inner {
    samples: VecDeque<Sample>,
    /// The cumulative histograms at the last sample.
    prev: Option<Vec<Histogram<u64>>>,
}

/// The sampled history.
pub struct Storm {
    inner: Mutex<Inner>,
}

impl Default for Storm {
    fn default() -> Self {
        Storm::new()
    }
}

impl Storm {
    /// An empty history.
    pub fn new() -> Storm {
        Storm {
            inner: Mutex::new(Inner {
                samples: VecDeque::with_capacity(KEEP),
                prev: None,
            }),
        }
    }

    /// Takes one sample of `boots` at wall time `at_ms`.
    pub fn sample(&self, boots: &Boots, at_ms: u64) {
        let c = boots.counts();
        let now = boots.laps();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut laps = [(0u64, [0.0; 3]); 5];
        for (i, h) in now.iter().enumerate() {
            let mut window = h.clone();
            if let Some(p) = g.prev.as_ref().and_then(|p| p.get(i)) {
                // The cumulative histogram only grows and both have the same bounds; a failed
                // subtraction (it cannot, short of a reset) leaves the cumulative one.
                if window.subtract(p).is_err() {
                    window = h.clone();
                }
            }
            let q = |q: f64| window.value_at_quantile(q) as f64 / 1000.0;
            laps[i] = (window.len(), [q(0.5), q(0.9), q(0.99)]);
        }
        g.prev = Some(now);
        if g.samples.len() == KEEP {
            g.samples.pop_front();
        }
        g.samples.push_back(Sample {
            at_ms,
            per_phase: c.per_phase,
            started: c.started,
            loaded: c.loaded,
            booted: c.booted,
            failures: c.failures,
            laps,
        });
    }

    /// The samples taken after `since_ms` (all with `None`), oldest first, as columns: one
    /// array per series, so a plot takes them as they come.
    pub fn json(&self, since_ms: Option<u64>) -> Value {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let s: Vec<&Sample> = g
            .samples
            .iter()
            .filter(|s| since_ms.is_none_or(|t| s.at_ms > t))
            .collect();
        let col = |f: &dyn Fn(&Sample) -> Value| Value::Array(s.iter().map(|x| f(x)).collect());
        let phases: serde_json::Map<String, Value> = Phase::ALL
            .iter()
            .map(|p| {
                (
                    p.name().to_string(),
                    col(&|x| x.per_phase[p.index()].into()),
                )
            })
            .collect();
        let laps: serde_json::Map<String, Value> = Lap::ALL
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let pct = |k: usize| col(&|x| json!(x.laps[i].1[k]));
                (
                    l.name().to_string(),
                    json!({ "count": col(&|x| x.laps[i].0.into()), "p50_ms": pct(0), "p90_ms": pct(1), "p99_ms": pct(2) }),
                )
            })
            .collect();
        json!({
            "interval_ms": 1000,
            "at_ms": col(&|x| x.at_ms.into()),
            "phases": phases,
            "started": col(&|x| x.started.into()),
            "loaded": col(&|x| x.loaded.into()),
            "booted": col(&|x| x.booted.into()),
            "failures": col(&|x| x.failures.into()),
            "laps": laps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boots::Step;
    use bootstorm_time::Instant;
    use std::net::Ipv4Addr;

    fn dora(b: &Boots, start_ms: u64, took_ms: u64, n: u8) {
        let addr = Ipv4Addr::new(198, 18, 0, n);
        let mac = [2, 0, 0, 0, 0, n];
        let step = Step::Offer {
            addr,
            round: 0,
            uuid: None,
        };
        b.step(Instant::from_millis(start_ms), &mac, step);
        b.step(
            Instant::from_millis(start_ms + took_ms),
            &mac,
            Step::Ack { addr },
        );
    }

    #[test]
    fn each_sample_holds_the_laps_of_its_own_second() {
        let b = Boots::new(100, 100, bootstorm_time::Duration::from_secs(600));
        let storm = Storm::new();
        // First second: two slow DHCP rounds (800 ms); second: three fast ones (2 ms).
        dora(&b, 0, 800, 1);
        dora(&b, 0, 800, 2);
        storm.sample(&b, 1_000);
        for n in 3..6 {
            dora(&b, 1_000, 2, n);
        }
        storm.sample(&b, 2_000);
        storm.sample(&b, 3_000);
        let v = storm.json(None);
        assert_eq!(v["at_ms"], json!([1000, 2000, 3000]));
        assert_eq!(v["started"], json!([2, 5, 5]));
        assert_eq!(v["phases"]["bound"], json!([2, 5, 5]));
        let dhcp = &v["laps"]["dhcp"];
        assert_eq!(dhcp["count"], json!([2, 3, 0]));
        let p50: Vec<f64> = serde_json::from_value(dhcp["p50_ms"].clone()).unwrap();
        assert!((795.0..=805.0).contains(&p50[0]), "{p50:?}");
        assert!(
            (1.9..=2.1).contains(&p50[1]),
            "{p50:?}: the slow ones are not in it"
        );
        assert_eq!(p50[2], 0.0, "nothing completed in the third second");
        // Only newer samples after `since`.
        assert_eq!(storm.json(Some(2_000))["at_ms"], json!([3000]));
    }

    #[test]
    fn the_history_is_bounded() {
        let b = Boots::new(10, 10, bootstorm_time::Duration::from_secs(600));
        let storm = Storm::new();
        for i in 0..(KEEP as u64 + 50) {
            storm.sample(&b, i * 1000);
        }
        let v = storm.json(None);
        let at = v["at_ms"].as_array().unwrap();
        assert_eq!(at.len(), KEEP);
        assert_eq!(at[0], 50_000);
    }
}
