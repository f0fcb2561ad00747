//! Results: per-phase latency histograms (hdrhistogram, microseconds), failures by reason,
//! completions over time; the summary table, the JSON form and a self-contained HTML report
//! (inline SVG, drawn here: two plots do not justify a plotting library and its fonts).

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How one machine ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Booted (every phase done).
    Ok,
    /// Failed, with the reason.
    Failed(&'static str),
}

/// The phases a boot goes through, in order; a run reports those that happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// First DISCOVER to ACK.
    Dhcp,
    /// The boot file over TFTP: RRQ to the last block.
    Tftp,
    /// The boot file over HTTP: connect to the last byte.
    Http,
    /// After the chainload: iPXE's own DHCP.
    IpxeDhcp,
    /// iPXE's fetch of its script or kernel over TFTP.
    IpxeTftp,
    /// The same over HTTP.
    IpxeHttp,
    /// The diskless disk: connect to the end of the login.
    IscsiLogin,
    /// Its reads (and writes, read back), then the logout.
    IscsiIo,
    /// Power-on to done.
    Boot,
}

impl Phase {
    /// Every phase, in report order.
    pub const ALL: [Phase; 9] = [
        Phase::Dhcp,
        Phase::Tftp,
        Phase::Http,
        Phase::IpxeDhcp,
        Phase::IpxeTftp,
        Phase::IpxeHttp,
        Phase::IscsiLogin,
        Phase::IscsiIo,
        Phase::Boot,
    ];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Dhcp => "dhcp",
            Phase::Tftp => "tftp",
            Phase::Http => "http",
            Phase::IpxeDhcp => "ipxe-dhcp",
            Phase::IpxeTftp => "ipxe-tftp",
            Phase::IpxeHttp => "ipxe-http",
            Phase::IscsiLogin => "iscsi-login",
            Phase::IscsiIo => "iscsi-io",
            Phase::Boot => "boot",
        }
    }
}

fn histogram() -> Histogram<u64> {
    // 1 us to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// What one worker saw.
#[derive(Clone, Debug)]
pub struct WorkerResult {
    /// Latency per phase, microseconds.
    pub phases: BTreeMap<Phase, Histogram<u64>>,
    /// Failures by reason.
    pub failures: BTreeMap<&'static str, u64>,
    /// Boot attempts that failed and were started over, by reason.
    pub retries: BTreeMap<&'static str, u64>,
    /// When each boot completed (us from the start).
    pub completions: Vec<u64>,
    /// Per phase, per [`BUCKET_US`]: machines that entered it (+1) and left it (-1); the
    /// running sum is the machines in it. [`Phase::Boot`] is "booting" (power-on to done).
    pub entered: BTreeMap<Phase, Vec<i32>>,
    /// Retransmissions per bucket, by protocol (`dhcp`, `tftp`).
    pub resent: BTreeMap<&'static str, Vec<u32>>,
    /// Machines that failed for good, per bucket.
    pub failed_at: Vec<u32>,
    /// Boot attempts that failed and started over, per bucket.
    pub retried_at: Vec<u32>,
}

/// The width of the report's time buckets: 100 ms.
pub const BUCKET_US: u64 = 100_000;

/// Adds `d` to bucket `at_us / BUCKET_US` of `v`, growing it (bounded by the run's limit: at
/// most an hour of buckets).
fn bump<T: Copy + Default + std::ops::Add<Output = T>>(v: &mut Vec<T>, at_us: u64, d: T) {
    let i = ((at_us / BUCKET_US) as usize).min(36_000);
    if v.len() <= i {
        v.resize(i + 1, T::default());
    }
    v[i] = v[i] + d;
}

/// `b` added into `a` element by element.
fn add_into<T: Copy + Default + std::ops::Add<Output = T>>(a: &mut Vec<T>, b: &[T]) {
    if a.len() < b.len() {
        a.resize(b.len(), T::default());
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x = *x + *y;
    }
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
            phases: BTreeMap::new(),
            failures: BTreeMap::new(),
            retries: BTreeMap::new(),
            completions: Vec::new(),
            entered: BTreeMap::new(),
            resent: BTreeMap::new(),
            failed_at: Vec::new(),
            retried_at: Vec::new(),
        }
    }

    /// Phase `p` took `us` and ended at `at` (us from the start).
    pub fn record(&mut self, p: Phase, us: u64, at: u64) {
        self.phases
            .entry(p)
            .or_insert_with(histogram)
            .saturating_record(us.max(1));
        self.span(p, at.saturating_sub(us), at);
    }

    /// A machine was in phase `p` from `from` to `to` (a phase it finished, or one it failed
    /// in: in flight either way).
    pub fn span(&mut self, p: Phase, from: u64, to: u64) {
        let v = self.entered.entry(p).or_default();
        bump(v, from, 1);
        bump(v, to, -1);
    }

    /// A retransmission of `proto` at `at`.
    pub fn resend(&mut self, proto: &'static str, at: u64) {
        bump(self.resent.entry(proto).or_default(), at, 1);
    }

    /// A boot took `us` and ended at `at`.
    pub fn boot(&mut self, us: u64, at: u64) {
        self.record(Phase::Boot, us, at);
        self.completions.push(at);
    }

    /// Machines that booted.
    pub fn booted(&self) -> u64 {
        self.phases.get(&Phase::Boot).map_or(0, |h| h.len())
    }

    /// A machine failed at `at`.
    pub fn fail(&mut self, why: &'static str, at: u64) {
        *self.failures.entry(why).or_default() += 1;
        bump(&mut self.failed_at, at, 1);
    }

    /// A boot attempt failed at `at` and the machine starts over.
    pub fn retry(&mut self, why: &'static str, at: u64) {
        *self.retries.entry(why).or_default() += 1;
        bump(&mut self.retried_at, at, 1);
    }

    /// Adds `o` into this one.
    pub fn merge(&mut self, o: &WorkerResult) {
        for (p, h) in &o.phases {
            // Same bounds on both sides: adding cannot fail.
            let _ = self.phases.entry(*p).or_insert_with(histogram).add(h);
        }
        for (k, v) in &o.failures {
            *self.failures.entry(k).or_default() += v;
        }
        for (k, v) in &o.retries {
            *self.retries.entry(k).or_default() += v;
        }
        self.completions.extend_from_slice(&o.completions);
        for (p, v) in &o.entered {
            add_into(self.entered.entry(*p).or_default(), v);
        }
        for (k, v) in &o.resent {
            add_into(self.resent.entry(k).or_default(), v);
        }
        add_into(&mut self.failed_at, &o.failed_at);
        add_into(&mut self.retried_at, &o.retried_at);
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
    /// The latency distribution: `[percentile, ms]` at 0, 50, 75, 87.5, ... 99.999 and 100,
    /// for plots.
    pub distribution: Vec<[f64; 2]>,
}

fn ms(us: u64) -> f64 {
    (us as f64).round() / 1000.0
}

fn phase(name: &'static str, h: &Histogram<u64>) -> PhaseStats {
    // Halving the remaining tail each step, as HdrHistogram's percentile plots do.
    let mut distribution = Vec::new();
    let mut q = 0.0f64;
    while q < 0.99999 {
        distribution.push([q * 100.0, ms(h.value_at_quantile(q))]);
        q += (1.0 - q) / 2.0;
    }
    distribution.push([100.0, ms(h.max())]);
    PhaseStats {
        phase: name,
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
        distribution,
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
    /// Failed boot attempts that were started over (`--boot-retries`), by reason.
    pub retried: BTreeMap<String, u64>,
    /// First power-on to the last completion, seconds.
    pub duration_s: f64,
    /// Completed boots per second over that time.
    pub boots_per_s: f64,
    /// Per-phase latency.
    pub phases: Vec<PhaseStats>,
    /// Completions per 100 ms from the start (for plots).
    pub completions_per_100ms: Vec<u64>,
    /// Machines in each phase at the end of every 100 ms (`boot`: booting at all).
    pub in_flight_per_100ms: BTreeMap<String, Vec<u64>>,
    /// Retransmissions per 100 ms, by protocol.
    pub retransmissions_per_100ms: BTreeMap<String, Vec<u64>>,
    /// Machines that failed for good, per 100 ms.
    pub failures_per_100ms: Vec<u64>,
    /// Boot attempts started over, per 100 ms.
    pub retried_per_100ms: Vec<u64>,
    /// The run's settings, for the record.
    pub settings: serde_json::Value,
}

impl Report {
    /// Builds the report from the merged result.
    pub fn new(clients: usize, r: &WorkerResult, settings: serde_json::Value) -> Report {
        let completed = r.booted();
        let failed: u64 = r.failures.values().sum();
        let last = r.completions.iter().copied().max().unwrap_or(0);
        let duration_s = last as f64 / 1e6;
        let mut buckets = vec![0u64; (last / 100_000) as usize + usize::from(completed > 0)];
        for c in &r.completions {
            buckets[(c / 100_000) as usize] += 1;
        }
        let phases = Phase::ALL
            .iter()
            .filter_map(|p| Some(phase(p.name(), r.phases.get(p)?)))
            .collect();
        Report {
            clients,
            completed,
            failed,
            failures: r
                .failures
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            retried: r.retries.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            duration_s,
            boots_per_s: if duration_s > 0.0 {
                completed as f64 / duration_s
            } else {
                0.0
            },
            phases,
            completions_per_100ms: buckets,
            in_flight_per_100ms: r
                .entered
                .iter()
                .map(|(p, v)| {
                    let mut n = 0i64;
                    let run = v
                        .iter()
                        .map(|d| {
                            n += i64::from(*d);
                            n.max(0) as u64
                        })
                        .collect();
                    (p.name().to_string(), run)
                })
                .collect(),
            retransmissions_per_100ms: r
                .resent
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|&x| u64::from(x)).collect()))
                .collect(),
            failures_per_100ms: r.failed_at.iter().map(|&x| u64::from(x)).collect(),
            retried_per_100ms: r.retried_at.iter().map(|&x| u64::from(x)).collect(),
            settings,
        }
    }

    /// True if every machine booted.
    pub fn all_booted(&self) -> bool {
        self.failed == 0 && self.completed as usize == self.clients
    }

    /// Writes the HTML report to `html` if given, then prints the JSON form or the table.
    pub fn output(&self, html: Option<&std::path::Path>, json: bool) -> anyhow::Result<()> {
        if let Some(path) = html {
            std::fs::write(path, self.html())
                .map_err(|e| anyhow::anyhow!("writing the HTML report {}: {e}", path.display()))?;
        }
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
        } else {
            print!("{}", self.table());
        }
        Ok(())
    }

    /// The summary table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "clients {}  completed {}  failed {}  in {:.3} s  ({:.1} boots/s)\n",
            self.clients, self.completed, self.failed, self.duration_s, self.boots_per_s
        );
        s += &format!(
            "{:<9} {:>8} {:>10} {:>10} {:>10} {:>10}\n",
            "phase", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for p in &self.phases {
            s += &format!(
                "{:<9} {:>8} {:>10.3} {:>10.3} {:>10.3} {:>10.3}\n",
                p.phase, p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
            );
        }
        for (why, n) in &self.failures {
            s += &format!("failed: {why}: {n}\n");
        }
        for (why, n) in &self.retried {
            s += &format!("started over after: {why}: {n}\n");
        }
        s
    }

    /// A self-contained HTML page: the summary, the latency distribution of every phase
    /// (milliseconds on a logarithmic axis against percentile, the tail stretched as in
    /// HdrHistogram's plots), completions over time (per 100 ms, and the running total),
    /// machines in flight per phase over time, retransmissions, failures and restarts over
    /// time, and the settings as a table.
    pub fn html(&self) -> String {
        let mut s = String::from(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>bootstorm-loadgen report</title>\n\
             <style>body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}\
             td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}th{background:#eee}\
             svg{border:1px solid #ccc;margin:.5em 0}pre{background:#f6f6f6;padding:.5em}</style>\n\
             </head><body>\n<h1>Boot storm report</h1>\n",
        );
        let _ = writeln!(
            s,
            "<p>{} machines: <b>{} booted</b>, <b>{} failed</b>, in {:.3} s ({:.1} boots/s).</p>",
            self.clients, self.completed, self.failed, self.duration_s, self.boots_per_s
        );
        s += "<table><tr><th>phase</th><th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th></tr>\n";
        for p in &self.phases {
            let _ = writeln!(
                s,
                "<tr><td style=\"text-align:left\">{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                p.phase, p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
            );
        }
        s += "</table>\n";
        for (title, map) in [
            ("Failures", &self.failures),
            ("Boots started over after", &self.retried),
        ] {
            if map.is_empty() {
                continue;
            }
            let _ = writeln!(s, "<h2>{title}</h2><ul>");
            for (why, n) in map {
                let _ = writeln!(s, "<li>{}: {n}</li>", escape(why));
            }
            s += "</ul>\n";
        }
        s += "<h2>Latency by percentile</h2>\n";
        s += &latency_svg(&self.phases);
        s += "<h2>Completions over time</h2>\n";
        s += &completions_svg(&self.completions_per_100ms, self.clients);
        s += "<h2>Machines in flight per phase</h2>\n";
        let in_flight: Vec<(&str, &[u64])> = Phase::ALL
            .iter()
            .filter_map(|p| {
                let v = self.in_flight_per_100ms.get(p.name())?;
                let name = if *p == Phase::Boot {
                    "booting"
                } else {
                    p.name()
                };
                Some((name, v.as_slice()))
            })
            .collect();
        // Every time plot spans the whole run.
        let run = self
            .in_flight_per_100ms
            .values()
            .map(Vec::len)
            .chain([self.completions_per_100ms.len()])
            .max()
            .unwrap_or(0);
        s += &series_svg("machines in flight per phase", &in_flight, run, 1.0, "");
        s += "<h2>Retransmissions and failures over time</h2>\n";
        let mut trouble: Vec<(String, &[u64])> = self
            .retransmissions_per_100ms
            .iter()
            .map(|(k, v)| (format!("{k} retransmissions"), v.as_slice()))
            .collect();
        trouble.push(("failed".into(), &self.failures_per_100ms));
        trouble.push(("started over".into(), &self.retried_per_100ms));
        let trouble: Vec<(&str, &[u64])> = trouble.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        s += &series_svg(
            "retransmissions and failures per second",
            &trouble,
            run,
            10.0,
            "/s",
        );
        s += "<h2>Settings</h2>\n<table>\n";
        for (k, v) in settings_rows(&self.settings) {
            let _ = writeln!(
                s,
                "<tr><th style=\"text-align:left\">{}</th><td style=\"text-align:left\">{}</td></tr>",
                escape(&k),
                escape(&v)
            );
        }
        s += "</table>\n</body></html>\n";
        s
    }
}

/// The run's settings as rows a person reads: nested keys joined by dots, durations (serde's
/// `{"secs": S, "nanos": N}`) as `1.5s`, lists joined by commas, nulls left out.
fn settings_rows(v: &serde_json::Value) -> Vec<(String, String)> {
    fn duration(v: &serde_json::Value) -> Option<String> {
        let o = v.as_object()?;
        if o.len() != 2 {
            return None;
        }
        let (secs, nanos) = (o.get("secs")?.as_u64()?, o.get("nanos")?.as_u64()?);
        Some(human_duration(secs as f64 + nanos as f64 / 1e9))
    }
    fn text(v: &serde_json::Value) -> String {
        if let Some(d) = duration(v) {
            return d;
        }
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(", "),
            other => other.to_string(),
        }
    }
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::Object(o) if duration(v).is_none() => {
                for (k, x) in o {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, out);
                }
            }
            _ => out.push((prefix.to_string(), text(v))),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

/// Seconds as a person writes them: `850us`, `12ms`, `1.5s`, `59m43s`.
fn human_duration(secs: f64) -> String {
    if secs < 1e-3 {
        format!("{}us", trim(secs * 1e6))
    } else if secs < 1.0 {
        format!("{}ms", trim(secs * 1e3))
    } else if secs < 60.0 {
        format!("{}s", trim(secs))
    } else {
        let whole = secs.round() as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: [&str; 9] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#333333",
];
const W: f64 = 720.0;
const H: f64 = 320.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 40.0;
/// Room right of the plot for the last axis label.
const RIGHT: f64 = 40.0;

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten, at least `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&x| x >= v)
        .unwrap_or(10.0 * p)
}

fn svg_open(s: &mut String, label: &str) {
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-size=\"11\" role=\"img\" aria-label=\"{label}\">"
    );
}

fn y_axis(s: &mut String, max: f64, unit: &str) {
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = H - BOTTOM - (H - BOTTOM - 10.0) * f64::from(i) / 4.0;
        grid_line(s, y, &format!("{} {unit}", trim(v)));
    }
}

/// A horizontal grid line at `y`, labelled left of the plot.
fn grid_line(s: &mut String, y: f64, label: &str) {
    let _ = writeln!(
        s,
        "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
         <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
        W - RIGHT,
        LEFT - 4.0,
        y + 4.0,
    );
}

fn trim(v: f64) -> String {
    let t = format!("{v:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Latency against percentile, the latency axis logarithmic (a storm's phases span microseconds
/// to seconds: on a linear axis all but the slowest lie flat on the floor), one decade a line.
fn latency_svg(phases: &[PhaseStats]) -> String {
    let mut s = String::new();
    svg_open(&mut s, "latency by percentile");
    let positive = |v: f64| v > 0.0 && v.is_finite();
    let top = phases
        .iter()
        .map(|p| p.max_ms)
        .filter(|v| positive(*v))
        .fold(0.0, f64::max);
    let bottom = phases
        .iter()
        .flat_map(|p| p.distribution.iter().map(|d| d[1]))
        .filter(|v| positive(*v))
        .fold(f64::INFINITY, f64::min);
    // Whole decades around the data, 1 us at the least.
    let hi = if top > 0.0 { top.log10().ceil() } else { 0.0 };
    let lo = if bottom.is_finite() {
        bottom.log10().floor().max(-3.0).min(hi - 1.0)
    } else {
        hi - 1.0
    };
    let plot_h = H - BOTTOM - 10.0;
    let y_of = |v: f64| {
        let l = if positive(v) { v.log10() } else { lo };
        H - BOTTOM - plot_h * ((l - lo) / (hi - lo)).clamp(0.0, 1.0)
    };
    let mut d = lo;
    while d <= hi + 1e-9 {
        grid_line(
            &mut s,
            y_of(10f64.powf(d)),
            &human_duration(10f64.powf(d) / 1e3),
        );
        d += 1.0;
    }
    // x: log10(1 / (1 - q)), 0 (p0) to 5 (p99.999); p100 drawn at 5.
    let x_of = |pct: f64| {
        let tail = (1.0 - pct / 100.0).max(1e-5);
        LEFT + (W - LEFT - RIGHT) * (-tail.log10()) / 5.0
    };
    for (pct, label) in [
        (0.0, "0%"),
        (90.0, "90%"),
        (99.0, "99%"),
        (99.9, "99.9%"),
        (99.99, "99.99%"),
        (99.999, "99.999%"),
    ] {
        let x = x_of(pct);
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"10\" y2=\"{}\" stroke=\"#eee\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            H - BOTTOM,
            H - BOTTOM + 16.0
        );
    }
    for (i, p) in phases.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = p
            .distribution
            .iter()
            .map(|[pct, v]| format!("{:.1},{:.1}", x_of(*pct), y_of(*v)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" fill=\"{color}\">{}</text>",
            pts.join(" "),
            LEFT + 10.0,
            22.0 + 14.0 * i as f64,
            p.phase
        );
    }
    s += "</svg>\n";
    s
}

fn completions_svg(per_100ms: &[u64], clients: usize) -> String {
    let mut s = String::new();
    svg_open(&mut s, "completions over time");
    let n = per_100ms.len().max(1);
    let secs = n as f64 / 10.0;
    let peak = nice_max(per_100ms.iter().copied().max().unwrap_or(0) as f64 * 10.0);
    y_axis(&mut s, peak, "/s");
    let x_of = |i: f64| LEFT + (W - LEFT - RIGHT) * i / n as f64;
    let span = nice_max(secs) / 5.0;
    let mut t = 0.0;
    while t <= secs + 1e-9 {
        let x = x_of(t * 10.0);
        let _ = writeln!(
            s,
            "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{} s</text>",
            H - BOTTOM + 16.0,
            trim(t)
        );
        t += span;
    }
    let bw = ((W - LEFT - RIGHT) / n as f64).max(0.5);
    for (i, &c) in per_100ms.iter().enumerate() {
        let h = (H - BOTTOM - 10.0) * (c as f64 * 10.0 / peak).min(1.0);
        let _ = write!(
            s,
            "<rect x=\"{:.2}\" y=\"{:.1}\" width=\"{bw:.2}\" height=\"{h:.1}\" fill=\"#1f77b4\"/>",
            x_of(i as f64),
            H - BOTTOM - h
        );
    }
    // Running total, scaled to the machine count.
    let mut total = 0u64;
    let mut pts = vec![format!("{LEFT:.1},{:.1}", H - BOTTOM)];
    for (i, &c) in per_100ms.iter().enumerate() {
        total += c;
        let y = H - BOTTOM - (H - BOTTOM - 10.0) * total as f64 / clients.max(1) as f64;
        pts.push(format!("{:.1},{y:.1}", x_of(i as f64 + 1.0)));
    }
    let _ = writeln!(
        s,
        "\n<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"{}\"/>\
         <text x=\"{}\" y=\"22\" fill=\"#1f77b4\">boots/s (per 100 ms)</text>\
         <text x=\"{}\" y=\"36\" fill=\"#d62728\">booted so far (top = {clients})</text>",
        pts.join(" "),
        LEFT + 10.0,
        LEFT + 10.0
    );
    s += "</svg>\n";
    s
}

/// Lines over time, one per series of 100 ms buckets, each value times `scale` (10: per
/// second), with a legend; an x axis in seconds, at least `buckets` long (the run's).
fn series_svg(
    label: &str,
    series: &[(&str, &[u64])],
    buckets: usize,
    scale: f64,
    unit: &str,
) -> String {
    let mut s = String::new();
    svg_open(&mut s, label);
    let n = series
        .iter()
        .map(|(_, v)| v.len())
        .max()
        .unwrap_or(0)
        .max(buckets)
        .max(1);
    let peak = series
        .iter()
        .flat_map(|(_, v)| v.iter())
        .copied()
        .max()
        .unwrap_or(0) as f64
        * scale;
    let top = nice_max(peak);
    y_axis(&mut s, top, unit);
    let x_of = |i: f64| LEFT + (W - LEFT - RIGHT) * i / n as f64;
    let secs = n as f64 / 10.0;
    let span = nice_max(secs) / 5.0;
    let mut t = 0.0;
    while t <= secs + 1e-9 {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{} s</text>",
            x_of(t * 10.0),
            H - BOTTOM + 16.0,
            trim(t)
        );
        t += span;
    }
    let y_of = |v: f64| H - BOTTOM - (H - BOTTOM - 10.0) * (v * scale / top).min(1.0);
    for (i, (name, v)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        // Steps: each bucket's value held across its 100 ms; a series ends at zero.
        let mut pts = Vec::with_capacity(2 * v.len() + 2);
        for (j, &c) in v.iter().enumerate() {
            let y = y_of(c as f64);
            pts.push(format!("{:.1},{y:.1}", x_of(j as f64)));
            pts.push(format!("{:.1},{y:.1}", x_of(j as f64 + 1.0)));
        }
        if pts.is_empty() {
            pts.push(format!("{LEFT:.1},{:.1}", y_of(0.0)));
        }
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" fill=\"{color}\">{} (peak {})</text>",
            pts.join(" "),
            W - RIGHT - 190.0,
            22.0 + 14.0 * i as f64,
            escape(name),
            trim(v.iter().copied().max().unwrap_or(0) as f64 * scale)
        );
    }
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = WorkerResult::new();
        for i in 1..=1000u64 {
            r.record(Phase::Dhcp, i * 100, i * 100 + 100);
            r.record(Phase::Tftp, i * 1000, i * 1100 + 100);
            r.boot(i * 1100, i * 1200);
        }
        r.fail("tftp: timeout", 500_000);
        Report::new(1001, &r, serde_json::json!({"server": "198.18.0.1"}))
    }

    #[test]
    fn figures_follow_the_histograms() {
        let rep = sample();
        assert_eq!((rep.completed, rep.failed), (1000, 1));
        let names: Vec<_> = rep.phases.iter().map(|p| p.phase).collect();
        assert_eq!(names, ["dhcp", "tftp", "boot"]);
        let d = &rep.phases[0];
        assert!((d.p50_ms - 50.0).abs() < 0.1, "{d:?}");
        assert!((d.max_ms - 100.0).abs() < 0.1, "{d:?}");
        // The distribution rises and ends at the maximum.
        assert!(
            d.distribution
                .windows(2)
                .all(|w| w[0][0] < w[1][0] && w[0][1] <= w[1][1])
        );
        assert_eq!(d.distribution.last().unwrap(), &[100.0, d.max_ms]);
        assert_eq!(rep.completions_per_100ms.iter().sum::<u64>(), 1000);
        assert!((rep.duration_s - 1.2).abs() < 1e-9);
    }

    #[test]
    fn html_has_both_plots_and_escapes_text() {
        let mut rep = sample();
        rep.failures.insert("<script>".into(), 1);
        let h = rep.html();
        assert!(h.starts_with("<!doctype html>") && h.trim_end().ends_with("</html>"));
        assert_eq!(h.matches("<svg").count(), 4);
        assert_eq!(h.matches("</svg>").count(), 4);
        // One line per phase in the latency plot, one for the running total, one per phase in
        // flight, and failed and started over (no retransmissions in this run).
        assert_eq!(h.matches("<polyline").count(), 3 + 1 + 3 + 2);
        assert!(!h.contains("<script>") && h.contains("&lt;script&gt;"));
        assert_eq!(h.matches("<rect").count(), rep.completions_per_100ms.len());
    }

    #[test]
    fn an_empty_run_still_renders() {
        let rep = Report::new(10, &WorkerResult::new(), serde_json::Value::Null);
        assert_eq!(rep.completed, 0);
        let h = rep.html();
        assert_eq!(h.matches("</svg>").count(), 4);
        assert!(!h.contains("NaN") && !h.contains("inf"));
    }

    #[test]
    fn settings_read_as_a_table_with_durations_a_person_writes() {
        let v = serde_json::json!({
            "server": "198.18.0.1",
            "profile": {"retransmit": [{"secs": 4, "nanos": 0}, {"secs": 8, "nanos": 0}],
                        "tftp_timeout": {"secs": 0, "nanos": 500_000_000}, "blksize": 1468},
            "chainload": null,
            "iscsi": {"read_bytes": 8_388_608},
        });
        let rows = settings_rows(&v);
        let get = |k: &str| rows.iter().find(|r| r.0 == k).map(|r| r.1.as_str());
        assert_eq!(get("server"), Some("198.18.0.1"));
        assert_eq!(get("profile.retransmit"), Some("4s, 8s"));
        assert_eq!(get("profile.tftp_timeout"), Some("500ms"));
        assert_eq!(get("profile.blksize"), Some("1468"));
        assert_eq!(get("iscsi.read_bytes"), Some("8388608"));
        assert_eq!(get("chainload"), None);
        let h = sample().html();
        assert!(
            !h.contains("<pre>") && !h.contains("\"secs\""),
            "settings as raw JSON"
        );
        assert_eq!(
            [0.00085, 0.012, 1.5, 3583.0].map(human_duration),
            ["850us", "12ms", "1.5s", "59m43s"]
        );
    }

    /// In flight is the running sum of phases entered and left; retransmissions, failures and
    /// restarts land in the bucket of their time; workers' series add up.
    #[test]
    fn in_flight_and_trouble_over_time() {
        let mut a = WorkerResult::new();
        // Three machines in DHCP: 0-250 ms, 50-150 ms, 120-330 ms.
        a.record(Phase::Dhcp, 250_000, 250_000);
        a.record(Phase::Dhcp, 100_000, 150_000);
        a.resend("dhcp", 110_000);
        let mut b = WorkerResult::new();
        b.span(Phase::Dhcp, 120_000, 330_000); // failed in DHCP
        b.fail("dhcp: no offer", 330_000);
        b.retry("dhcp: no ack", 40_000);
        b.resend("dhcp", 150_000);
        b.resend("tftp", 10_000);
        a.merge(&b);
        let rep = Report::new(3, &a, serde_json::Value::Null);
        // Buckets (end of each 100 ms): [0,100) 2, [100,200) 2 (one left at 150, one came at
        // 120), [200,300) 1, [300,400) 0.
        assert_eq!(rep.in_flight_per_100ms["dhcp"], [2, 2, 1, 0]);
        assert_eq!(rep.retransmissions_per_100ms["dhcp"], [0, 2]);
        assert_eq!(rep.retransmissions_per_100ms["tftp"], [1]);
        assert_eq!(rep.failures_per_100ms, [0, 0, 0, 1]);
        assert_eq!(rep.retried_per_100ms, [1]);
        let h = rep.html();
        assert!(
            h.contains("dhcp retransmissions (peak 20)"),
            "per second: {h}"
        );
        assert!(h.contains(">dhcp (peak 2)<"), "{h}");
    }

    /// The latency axis is logarithmic: phases a hundred times apart both rise off the floor, and
    /// every decade between is labelled.
    #[test]
    fn latency_axis_is_logarithmic() {
        let rep = sample(); // dhcp up to 100 ms, tftp up to 1 s
        let svg = latency_svg(&rep.phases);
        for label in ["100us", "1ms", "10ms", "100ms", "1s"] {
            assert!(svg.contains(&format!(">{label}</text>")), "{label}: {svg}");
        }
        // dhcp's line (the first; 0.1 to 100 ms) rises far off the floor: its median point is in
        // the upper half of the plot (on a linear axis up to 1 s it would be in the bottom 5%).
        let pts = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let ys: Vec<f64> = pts
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        let median = ys[ys.len() / 2];
        assert!(
            median < (H - BOTTOM) / 2.0 + 10.0,
            "median y {median} of {ys:?}"
        );
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn axis_bounds_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(1000.0), 1000.0);
        assert_eq!(nice_max(1001.0), 2000.0);
    }
}
