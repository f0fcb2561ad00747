//! Results: per-phase latency histograms (hdrhistogram, microseconds), failures by reason,
//! completions over time; the summary table and the JSON form.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// How one machine ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Booted (every phase done).
    Ok,
    /// Failed, with the reason.
    Failed(&'static str),
}

fn histogram() -> Histogram<u64> {
    // 1 us to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// What one worker saw.
#[derive(Clone, Debug)]
pub struct WorkerResult {
    /// DHCP: first DISCOVER to ACK.
    pub dhcp: Histogram<u64>,
    /// Boot file: RRQ to the last block.
    pub tftp: Histogram<u64>,
    /// Whole boot: power-on to done.
    pub boot: Histogram<u64>,
    /// Failures by reason.
    pub failures: BTreeMap<&'static str, u64>,
    /// When each boot completed (us from the start).
    pub completions: Vec<u64>,
}

impl Default for WorkerResult {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerResult {
    /// Empty.
    pub fn new() -> WorkerResult {
        WorkerResult {
            dhcp: histogram(),
            tftp: histogram(),
            boot: histogram(),
            failures: BTreeMap::new(),
            completions: Vec::new(),
        }
    }

    /// A DHCP phase took `us`.
    pub fn dhcp(&mut self, us: u64) {
        self.dhcp.saturating_record(us.max(1));
    }

    /// A download took `us`.
    pub fn tftp(&mut self, us: u64) {
        self.tftp.saturating_record(us.max(1));
    }

    /// A boot took `us` and ended at `at`.
    pub fn boot(&mut self, us: u64, at: u64) {
        self.boot.saturating_record(us.max(1));
        self.completions.push(at);
    }

    /// A machine failed.
    pub fn fail(&mut self, why: &'static str) {
        *self.failures.entry(why).or_default() += 1;
    }

    /// Adds `o` into this one.
    pub fn merge(&mut self, o: &WorkerResult) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.dhcp.add(&o.dhcp);
        let _ = self.tftp.add(&o.tftp);
        let _ = self.boot.add(&o.boot);
        for (k, v) in &o.failures {
            *self.failures.entry(k).or_default() += v;
        }
        self.completions.extend_from_slice(&o.completions);
    }
}

/// Latency figures of one phase, in milliseconds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PhaseStats {
    /// Phase name.
    pub phase: &'static str,
    /// Machines that finished it.
    pub count: u64,
    /// Percentiles and maximum, ms.
    pub p50_ms: f64,
    /// p90.
    pub p90_ms: f64,
    /// p99.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

fn phase(name: &'static str, h: &Histogram<u64>) -> PhaseStats {
    let ms = |v: u64| (v as f64 / 1000.0 * 1000.0).round() / 1000.0;
    PhaseStats {
        phase: name,
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
    }
}

/// The whole run's report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// Machines simulated.
    pub clients: usize,
    /// Machines that booted.
    pub completed: u64,
    /// Machines that failed.
    pub failed: u64,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// First power-on to the last completion, seconds.
    pub duration_s: f64,
    /// Completed boots per second over that time.
    pub boots_per_s: f64,
    /// Per-phase latency.
    pub phases: Vec<PhaseStats>,
    /// Completions per 100 ms from the start (for plots).
    pub completions_per_100ms: Vec<u64>,
    /// The run's settings, for the record.
    pub settings: serde_json::Value,
}

impl Report {
    /// Builds the report from the merged result.
    pub fn new(clients: usize, r: &WorkerResult, settings: serde_json::Value) -> Report {
        let completed = r.boot.len();
        let failed: u64 = r.failures.values().sum();
        let last = r.completions.iter().copied().max().unwrap_or(0);
        let duration_s = last as f64 / 1e6;
        let mut buckets = vec![0u64; (last / 100_000) as usize + usize::from(completed > 0)];
        for c in &r.completions {
            buckets[(c / 100_000) as usize] += 1;
        }
        let mut phases = Vec::new();
        if !r.dhcp.is_empty() {
            phases.push(phase("dhcp", &r.dhcp));
        }
        if !r.tftp.is_empty() {
            phases.push(phase("tftp", &r.tftp));
        }
        phases.push(phase("boot", &r.boot));
        Report {
            clients,
            completed,
            failed,
            failures: r
                .failures
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            duration_s,
            boots_per_s: if duration_s > 0.0 {
                completed as f64 / duration_s
            } else {
                0.0
            },
            phases,
            completions_per_100ms: buckets,
            settings,
        }
    }

    /// The summary table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "clients {}  completed {}  failed {}  in {:.3} s  ({:.1} boots/s)\n",
            self.clients, self.completed, self.failed, self.duration_s, self.boots_per_s
        );
        s += &format!(
            "{:<6} {:>8} {:>10} {:>10} {:>10} {:>10}\n",
            "phase", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for p in &self.phases {
            s += &format!(
                "{:<6} {:>8} {:>10.3} {:>10.3} {:>10.3} {:>10.3}\n",
                p.phase, p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
            );
        }
        for (why, n) in &self.failures {
            s += &format!("failed: {why}: {n}\n");
        }
        s
    }
}
