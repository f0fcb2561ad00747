//! Prometheus metrics (`GET /metrics` on the API's listeners), in the OpenMetrics text format
//! from the `prometheus-client` crate. Nothing is counted twice: at each scrape a collector reads
//! what `bootstorm stats` reads (the services' own counters, without its `boot` section), the
//! lease table's pools and the boot-session registry, so metrics cost nothing between scrapes.
//!
//! - DHCP: `bootstorm_dhcp_received_total{type}`, `_sent_total{type}`, `_dropped_total{reason}`,
//!   `_naks_total{reason}`, `_no_boot_rule_total`, ...
//! - pools: `bootstorm_pool_addresses{subnet,state}` (size, bound, offered, declined, free).
//! - boot sessions: `bootstorm_boot_sessions{phase}` (live), `_started_total`, `_booted_total`,
//!   `_failures_total`, `_evicted_total`, and `bootstorm_boot_lap_seconds{lap}` histograms
//!   (from the registry's hdrhistograms: DHCP round, TFTP download, iSCSI login, first read,
//!   whole boot).
//! - every other numeric counter of `bootstorm stats` (TFTP, HTTP, iSCSI, the journal, the fast
//!   path) as `bootstorm_<section>_<name>` (type unknown: the JSON does not say which are
//!   counters), and its fixed-bound histograms as histograms: `bootstorm_journal_commit_seconds`
//!   (a write's first record to its sync), `bootstorm_journal_group_records` (records per
//!   write), `bootstorm_iscsi_io_seconds` (a SCSI command's I/O, received to completed).

use crate::daemon::StatsSource;
use crate::serve::ServerCell;
use crate::sessions::Sessions;
use bootstorm_time::Clock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::sync::Arc;

/// Upper bounds of the boot-lap histograms' buckets, in seconds.
const LAP_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// What a scrape reads.
pub struct Sources {
    /// The services' counters (`bootstorm stats` but its `boot` section: that is read from
    /// `sessions` directly).
    pub stats: StatsSource,
    pub server: Arc<ServerCell>,
    pub sessions: Arc<Sessions>,
    pub clock: Clock,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metrics::Sources")
    }
}

/// The registry of one daemon.
pub fn registry(sources: Sources) -> Registry {
    let mut r = Registry::with_prefix("bootstorm");
    r.register_collector(Box::new(sources));
    r
}

/// Encodes `r` as OpenMetrics text.
pub fn render(r: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, r);
    out
}

/// A fixed-bound histogram in `bootstorm stats` (`{"count", "sum", "buckets": [[le, n]...]}`,
/// `n` cumulative, `le` and `sum` in base units), e.g. `journal.commit_seconds`.
pub fn histogram_json(s: &bootstorm_time::Snapshot, unit: f64) -> Value {
    serde_json::json!({
        "count": s.count,
        "sum": s.sum as f64 * unit,
        "buckets": s.cumulative.iter().map(|&(b, n)| serde_json::json!([b as f64 * unit, n])).collect::<Vec<_>>(),
    })
}

/// [`histogram_json`] read back, as the encoder wants it: per bucket, `+Inf` last.
struct Histogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl Histogram {
    fn of(v: &Value) -> Option<Histogram> {
        let count = v.get("count")?.as_u64()?;
        let sum = v.get("sum")?.as_f64()?;
        let mut below = 0;
        let mut buckets = Vec::new();
        for b in v.get("buckets")?.as_array()? {
            let (le, n) = (b.get(0)?.as_f64()?, b.get(1)?.as_u64()?);
            buckets.push((le, n.saturating_sub(below)));
            below = below.max(n);
        }
        buckets.push((f64::INFINITY, count.saturating_sub(below)));
        Some(Histogram {
            sum,
            count,
            buckets,
        })
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// One counter family with one label, from a JSON object of `label value -> count`.
fn counters_by(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    obj: &Value,
) -> std::fmt::Result {
    let Some(m) = obj.as_object() else {
        return Ok(());
    };
    let mut f = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (k, v) in m {
        let labels = [(label, k.as_str())];
        ConstCounter::new(u(v)).encode(f.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Sources {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let stats = (self.stats)();
        let e = &mut e;
        counters_by(
            e,
            "dhcp_received",
            "DHCP messages received, by type",
            "type",
            &stats["received"],
        )?;
        counters_by(
            e,
            "dhcp_sent",
            "DHCP messages sent, by type",
            "type",
            &stats["sent"],
        )?;
        counters_by(
            e,
            "dhcp_dropped",
            "DHCP packets dropped, by reason",
            "reason",
            &stats["dropped"],
        )?;
        counters_by(
            e,
            "dhcp_naks",
            "DHCPNAKs sent, by reason",
            "reason",
            &stats["naks"],
        )?;
        for (k, help) in [
            ("no_boot_rule", "boot firmware no boot rule gave a file"),
            ("bad_options", "options that did not parse"),
            ("options_dropped", "options left out of a full reply"),
            ("offers_reclaimed", "offers taken back for another client"),
        ] {
            counter(e, &format!("dhcp_{k}"), help, u(&stats[k]))?;
        }
        // Pools: walked at each scrape (every lease once).
        {
            let pools = crate::api::pools_json(&self.server.get(), &self.clock);
            let mut f = e.encode_descriptor(
                "pool_addresses",
                "addresses in each subnet's pools, by state (size is all of them)",
                None,
                MetricType::Gauge,
            )?;
            for p in pools.as_array().into_iter().flatten() {
                let subnet = p["subnet"].as_str().unwrap_or("");
                for state in ["size", "bound", "offered", "declined", "free"] {
                    let labels = [("subnet", subnet), ("state", state)];
                    ConstGauge::new(u(&p[state])).encode(f.encode_family(&labels)?)?;
                }
            }
        }
        // Boot sessions.
        let boots = &self.sessions.boots;
        let c = boots.counts();
        {
            let mut f = e.encode_descriptor(
                "boot_sessions",
                "boot sessions in progress, by phase",
                None,
                MetricType::Gauge,
            )?;
            for p in crate::boots::Phase::ALL {
                let labels = [("phase", p.name())];
                ConstGauge::new(c.per_phase[p.index()]).encode(f.encode_family(&labels)?)?;
            }
        }
        counter(
            e,
            "boot_sessions_started",
            "boot sessions started",
            c.started,
        )?;
        counter(
            e,
            "boot_sessions_booted",
            "boot sessions that reached their first iSCSI read",
            c.booted,
        )?;
        counter(e, "boot_failures", "failed boot steps", c.failures)?;
        counter(
            e,
            "boot_sessions_evicted",
            "boot sessions ended by the live cap",
            c.evicted,
        )?;
        {
            let mut f = e.encode_descriptor(
                "boot_lap_seconds",
                "time of each boot lap: dhcp (offer to ACK), tftp (a download), iscsi_login (ACK to login), iscsi_first_read (login to first read), boot (first offer to first read)",
                None,
                MetricType::Histogram,
            )?;
            for (lap, h) in crate::boots::Lap::ALL.iter().zip(boots.laps()) {
                // Histograms hold microseconds.
                let mut below = 0u64;
                let mut buckets: Vec<(f64, u64)> = LAP_BUCKETS
                    .iter()
                    .map(|&b| {
                        let upto = h.count_between(0, (b * 1e6) as u64);
                        let n = upto.saturating_sub(below);
                        below = upto;
                        (b, n)
                    })
                    .collect();
                buckets.push((f64::INFINITY, h.len().saturating_sub(below)));
                let sum = h.mean() * h.len() as f64 / 1e6;
                let labels = [("lap", lap.name())];
                f.encode_family(&labels)?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        sum,
                        h.len(),
                        &buckets,
                        None,
                    )?;
            }
        }
        // Everything else numeric, by section.
        for section in [
            "tftp", "http", "iscsi", "journal", "dhcp_io", "files", "xdp",
        ] {
            let Some(m) = stats.get(section).and_then(Value::as_object) else {
                continue;
            };
            for (k, v) in m {
                if let Some(h) = Histogram::of(v) {
                    let name = format!("{section}_{k}");
                    let mut d = e.encode_descriptor(
                        &name,
                        &format!("bootstorm stats: {section}.{k}"),
                        None,
                        MetricType::Histogram,
                    )?;
                    d.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        h.sum, h.count, &h.buckets, None,
                    )?;
                    continue;
                }
                let Some(n) = v.as_u64() else { continue };
                let name = format!("{section}_{k}");
                let g = ConstGauge::new(n);
                let d = e.encode_descriptor(
                    &name,
                    &format!("bootstorm stats: {section}.{k}"),
                    None,
                    MetricType::Unknown,
                )?;
                g.encode(d)?;
            }
        }
        Ok(())
    }
}
