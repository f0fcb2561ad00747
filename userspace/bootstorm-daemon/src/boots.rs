//! Boot sessions: one record per booting machine, keyed by MAC, with the time of each phase as
//! the services saw it (DHCP offer and ACK, each boot file and its completion, iSCSI login and
//! first read), its current phase, and its failures with their reasons. Per-phase latency
//! histograms (hdrhistogram) across all machines.
//!
//! Memory is bounded twice: at most `live` sessions in progress (the oldest-started one moves to
//! the recent ring when a new machine would exceed it) and a ring of at most `recent` ended
//! sessions. A session ends when its machine starts over after it booted (a new DISCOVER answered
//! after its first iSCSI read), when it was idle for `idle` ([`Boots::sweep`]), or by the cap.
//! Each session keeps at most [`MAX_STEPS`] steps of its timeline (later ones are counted).
//!
//! Written by hand: it is the product's own state (what a boot is, in which phase), fed from the
//! DHCP workers' hot path under one short lock per event.

use bootstorm_time::{Duration, Instant};
use hdrhistogram::Histogram;
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// Steps kept per session.
pub const MAX_STEPS: usize = 48;

/// Where a machine is in its boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// DISCOVER answered, no ACK yet.
    Dhcp,
    /// Address bound, no boot file asked for yet.
    Bound,
    /// A TFTP transfer in progress.
    Tftp,
    /// An HTTP download served, its client not heard from since.
    Http,
    /// A boot file loaded; the machine has not gone further yet.
    Loaded,
    /// Logged in to iSCSI, no read yet.
    Iscsi,
    /// Its first iSCSI read: booted from its disk.
    Booted,
    /// The last step failed (the reason is in the session).
    Failed,
}

impl Phase {
    /// Every phase, in boot order.
    pub const ALL: [Phase; 8] = [
        Phase::Dhcp,
        Phase::Bound,
        Phase::Tftp,
        Phase::Http,
        Phase::Loaded,
        Phase::Iscsi,
        Phase::Booted,
        Phase::Failed,
    ];

    /// Its name in the API, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Dhcp => "dhcp",
            Phase::Bound => "bound",
            Phase::Tftp => "tftp",
            Phase::Http => "http",
            Phase::Loaded => "loaded",
            Phase::Iscsi => "iscsi",
            Phase::Booted => "booted",
            Phase::Failed => "failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The latencies measured across machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lap {
    /// A round's first offer to its ACK.
    Dhcp,
    /// A TFTP download, request to last ACK.
    Tftp,
    /// The ACK to the iSCSI login.
    IscsiLogin,
    /// The login to the first read.
    IscsiRead,
    /// The session's first offer to its first iSCSI read.
    Boot,
}

impl Lap {
    /// Every lap.
    pub const ALL: [Lap; 5] = [
        Lap::Dhcp,
        Lap::Tftp,
        Lap::IscsiLogin,
        Lap::IscsiRead,
        Lap::Boot,
    ];

    /// Its name in the API and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Lap::Dhcp => "dhcp",
            Lap::Tftp => "tftp",
            Lap::IscsiLogin => "iscsi_login",
            Lap::IscsiRead => "iscsi_first_read",
            Lap::Boot => "boot",
        }
    }
}

/// What happened to a machine, as a service reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A DISCOVER answered with this address (`round` 1 is the firmware's, 2 an iPXE chain...).
    Offer { addr: Ipv4Addr, round: u32 },
    /// The address bound (ACK).
    Ack { addr: Ipv4Addr },
    /// A NAK, and why.
    Nak { reason: &'static str },
    /// The machine is boot firmware but no boot rule or reservation gave it a boot file.
    NoBootRule,
    /// It gave its address back.
    Release,
    /// It declined its address (in use by another).
    Decline,
    /// A boot file asked for.
    File { proto: &'static str, name: Box<str> },
    /// A boot file delivered.
    FileDone {
        proto: &'static str,
        name: Box<str>,
        bytes: u64,
        millis: u64,
        resent: u64,
    },
    /// A boot file refused or its transfer failed.
    FileFailed {
        proto: &'static str,
        name: Box<str>,
        reason: Box<str>,
    },
    /// Logged in to an iSCSI target.
    IscsiLogin {
        initiator: Box<str>,
        target: Box<str>,
    },
    /// An iSCSI login refused.
    IscsiRefused { reason: Box<str> },
    /// Its first iSCSI read.
    IscsiRead,
}

impl Step {
    /// Its kind's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Offer { .. } => "offer",
            Step::Ack { .. } => "ack",
            Step::Nak { .. } => "nak",
            Step::NoBootRule => "no-boot-rule",
            Step::Release => "release",
            Step::Decline => "decline",
            Step::File { .. } => "file",
            Step::FileDone { .. } => "file-done",
            Step::FileFailed { .. } => "file-failed",
            Step::IscsiLogin { .. } => "iscsi-login",
            Step::IscsiRefused { .. } => "iscsi-refused",
            Step::IscsiRead => "iscsi-read",
        }
    }

    /// The failure it reports, if it is one.
    pub fn failure(&self) -> Option<String> {
        Some(match self {
            Step::Nak { reason } => format!("DHCPNAK: {reason}"),
            Step::NoBootRule => {
                "no boot rule matched: the machine got an address and nothing to boot".into()
            }
            Step::FileFailed {
                proto,
                name,
                reason,
            } => format!("{proto} {name}: {reason}"),
            Step::IscsiRefused { reason } => format!("iSCSI login refused: {reason}"),
            _ => return None,
        })
    }

    /// The phase it leaves the machine in.
    fn phase(&self, before: Phase) -> Phase {
        match self {
            Step::Offer { .. } => Phase::Dhcp,
            Step::Ack { .. } => Phase::Bound,
            Step::File { proto, .. } if *proto == "tftp" => Phase::Tftp,
            Step::File { .. } => Phase::Http,
            Step::FileDone { .. } => Phase::Loaded,
            Step::IscsiLogin { .. } => Phase::Iscsi,
            Step::IscsiRead => Phase::Booted,
            Step::Release | Step::Decline => Phase::Dhcp,
            _ if self.failure().is_some() => Phase::Failed,
            _ => before,
        }
    }
}

/// One machine's boot.
#[derive(Clone, Debug)]
pub struct Session {
    /// Its hardware address.
    pub mac: Box<[u8]>,
    /// Its address, once offered.
    pub addr: Option<Ipv4Addr>,
    /// Its iSCSI initiator name, once it logged in.
    pub iqn: Option<Box<str>>,
    /// When its first step came.
    pub started: Instant,
    /// When its last step came.
    pub updated: Instant,
    /// Where it is.
    pub phase: Phase,
    /// DHCP rounds so far (a chain-loaded iPXE starts the second).
    pub rounds: u32,
    /// The last failure, if any (kept when the machine retries).
    pub failure: Option<String>,
    /// Its timeline: when, what.
    pub steps: Vec<(Instant, Step)>,
    /// Steps beyond [`MAX_STEPS`], not kept.
    pub steps_dropped: u32,
    /// True once ended (in the recent ring).
    pub ended: bool,
    round_start: Option<Instant>,
    bound_at: Option<Instant>,
    login_at: Option<Instant>,
    loaded: bool,
    seq: u64,
}

/// Counts for the storm view and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Live sessions per phase (in [`Phase::ALL`] order).
    pub per_phase: [u64; 8],
    /// Sessions started.
    pub started: u64,
    /// Sessions that reached their first iSCSI read.
    pub booted: u64,
    /// Failures seen (steps that failed).
    pub failures: u64,
    /// Sessions ended by the live cap (not by their machine or by idling).
    pub evicted: u64,
}

struct Inner {
    live: HashMap<Box<[u8]>, Session>,
    /// Live keys by start order (entries of ended sessions are skipped lazily).
    order: VecDeque<(u64, Box<[u8]>)>,
    recent: VecDeque<Session>,
    counts: Counts,
    laps: Vec<Histogram<u64>>,
    seq: u64,
}

/// The registry of boot sessions.
pub struct Boots {
    inner: Mutex<Inner>,
    live_cap: usize,
    recent_cap: usize,
    idle: Duration,
}

impl std::fmt::Debug for Boots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Boots")
            .field("live_cap", &self.live_cap)
            .field("recent_cap", &self.recent_cap)
            .finish()
    }
}

/// Defaults: 16,384 live sessions (a hall's worth of machines booting at once), 4,096 recent.
pub const DEFAULT_LIVE: usize = 16_384;
/// See [`DEFAULT_LIVE`].
pub const DEFAULT_RECENT: usize = 4_096;
/// A session with no step for this long ends.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(600);

impl Default for Boots {
    fn default() -> Boots {
        Boots::new(DEFAULT_LIVE, DEFAULT_RECENT, DEFAULT_IDLE)
    }
}

impl Boots {
    /// A registry with these caps.
    pub fn new(live: usize, recent: usize, idle: Duration) -> Boots {
        let laps = Lap::ALL
            .iter()
            // 1 µs to 1 hour, 2 significant figures: a few KiB each.
            .map(|_| Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds"))
            .collect();
        Boots {
            inner: Mutex::new(Inner {
                live: HashMap::new(),
                order: VecDeque::new(),
                recent: VecDeque::new(),
                counts: Counts::default(),
                laps,
                seq: 0,
            }),
            live_cap: live.max(1),
            recent_cap: recent,
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `step` of the machine `mac` at `now`.
    pub fn step(&self, now: Instant, mac: &[u8], step: Step) {
        let mut g = self.lock();
        let inner = &mut *g;
        // A machine that booted and asks again starts a new session.
        let restart = matches!(step, Step::Offer { .. })
            && inner
                .live
                .get(mac)
                .is_some_and(|s| s.phase == Phase::Booted);
        if restart {
            self.end(inner, mac);
        }
        if !inner.live.contains_key(mac) {
            if matches!(step, Step::Release | Step::Decline) {
                return; // nothing to say about a machine that is not booting
            }
            while inner.live.len() >= self.live_cap {
                let Some((seq, key)) = inner.order.pop_front() else {
                    break;
                };
                if inner.live.get(&key).is_some_and(|s| s.seq == seq) {
                    self.end(inner, &key);
                    inner.counts.evicted += 1;
                }
            }
            inner.seq += 1;
            let seq = inner.seq;
            inner.order.push_back((seq, mac.into()));
            inner.live.insert(
                mac.into(),
                Session {
                    mac: mac.into(),
                    addr: None,
                    iqn: None,
                    started: now,
                    updated: now,
                    phase: Phase::Dhcp,
                    rounds: 0,
                    failure: None,
                    steps: Vec::new(),
                    steps_dropped: 0,
                    ended: false,
                    round_start: None,
                    bound_at: None,
                    login_at: None,
                    loaded: false,
                    seq,
                },
            );
            inner.counts.started += 1;
            inner.counts.per_phase[Phase::Dhcp.index()] += 1;
            // Ended sessions leave their entries behind: drop them once they are half.
            if inner.order.len() > 2 * self.live_cap {
                let live = &inner.live;
                inner
                    .order
                    .retain(|(s, k)| live.get(k).is_some_and(|x| x.seq == *s));
            }
        }
        let Some(s) = inner.live.get_mut(mac) else {
            return;
        };
        let before = s.phase;
        // The clock counts milliseconds; histograms hold microseconds (1 for "under 1 ms").
        let laps = &mut inner.laps;
        let mut lap = |l: Lap, from: Option<Instant>| {
            if let Some(f) = from {
                let us = (now.saturating_since(f).as_millis() * 1000).max(1);
                let _ = laps[l as usize].record(us);
            }
        };
        let step = match step {
            Step::Offer { addr, .. } => {
                // A new round: the first, or one after a boot file was loaded (iPXE).
                if s.rounds == 0 || s.loaded || s.round_start.is_none() {
                    s.rounds += 1;
                    s.loaded = false;
                    s.round_start = Some(now);
                }
                s.addr = Some(addr);
                Step::Offer {
                    addr,
                    round: s.rounds,
                }
            }
            other => other,
        };
        match &step {
            Step::Ack { addr } => {
                lap(Lap::Dhcp, s.round_start.take());
                s.addr = Some(*addr);
                s.bound_at = Some(now);
            }
            Step::FileDone { proto, millis, .. } => {
                if *proto == "tftp" {
                    let began = now.as_millis().saturating_sub(*millis);
                    lap(Lap::Tftp, Some(Instant::from_millis(began)));
                }
                s.loaded = true;
            }
            Step::IscsiLogin { initiator, .. } => {
                lap(Lap::IscsiLogin, s.bound_at);
                s.login_at = Some(now);
                s.iqn = Some(initiator.clone());
            }
            Step::IscsiRead => {
                if s.phase == Phase::Booted {
                    return; // only the first read is a step
                }
                lap(Lap::IscsiRead, s.login_at);
                lap(Lap::Boot, Some(s.started));
                inner.counts.booted += 1;
            }
            _ => {}
        }
        if let Some(f) = step.failure() {
            s.failure = Some(f);
            inner.counts.failures += 1;
        }
        s.phase = step.phase(before);
        s.updated = now;
        if s.steps.len() < MAX_STEPS {
            s.steps.push((now, step));
        } else {
            s.steps_dropped += 1;
        }
        if s.phase != before {
            inner.counts.per_phase[before.index()] -= 1;
            inner.counts.per_phase[s.phase.index()] += 1;
        }
    }

    /// Moves a live session to the recent ring.
    fn end(&self, inner: &mut Inner, mac: &[u8]) {
        let Some(mut s) = inner.live.remove(mac) else {
            return;
        };
        inner.counts.per_phase[s.phase.index()] -= 1;
        s.ended = true;
        if self.recent_cap == 0 {
            return;
        }
        if inner.recent.len() >= self.recent_cap {
            inner.recent.pop_front();
        }
        inner.recent.push_back(s);
    }

    /// Ends the sessions idle since before `now - idle`; returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut g = self.lock();
        let idle: Vec<Box<[u8]>> = g
            .live
            .values()
            .filter(|s| now.saturating_since(s.updated) >= self.idle)
            .map(|s| s.mac.clone())
            .collect();
        for m in &idle {
            self.end(&mut g, m);
        }
        idle.len()
    }

    /// The session of `mac`: the live one, else the latest ended one.
    pub fn get(&self, mac: &[u8]) -> Option<Session> {
        let g = self.lock();
        g.live
            .get(mac)
            .or_else(|| g.recent.iter().rev().find(|s| &*s.mac == mac))
            .cloned()
    }

    /// Sessions (live first, newest first; then ended ones, newest first) for which `keep`
    /// holds, skipping `offset` and returning at most `limit`, with how many matched in all.
    pub fn list(
        &self,
        keep: impl Fn(&Session) -> bool,
        offset: usize,
        limit: usize,
    ) -> (Vec<Session>, usize) {
        let g = self.lock();
        let mut live: Vec<&Session> = g.live.values().filter(|s| keep(s)).collect();
        live.sort_unstable_by_key(|s| std::cmp::Reverse(s.seq));
        let recent = g.recent.iter().rev().filter(|s| keep(s));
        let mut total = 0;
        let mut out = Vec::new();
        for s in live.into_iter().chain(recent) {
            if total >= offset && out.len() < limit {
                out.push(s.clone());
            }
            total += 1;
        }
        (out, total)
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        self.lock().counts.clone()
    }

    /// Live and ended sessions held.
    pub fn held(&self) -> (usize, usize) {
        let g = self.lock();
        (g.live.len(), g.recent.len())
    }

    /// A copy of each lap's histogram (microseconds), in [`Lap::ALL`] order.
    pub fn laps(&self) -> Vec<Histogram<u64>> {
        self.lock().laps.clone()
    }
}

impl Step {
    /// Its details as JSON (beside its kind and time).
    fn detail_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Step::Offer { addr, round } => json!({ "address": addr.to_string(), "round": round }),
            Step::Ack { addr } => json!({ "address": addr.to_string() }),
            Step::Nak { reason } => json!({ "reason": reason }),
            Step::File { proto, name } => json!({ "protocol": proto, "file": name }),
            Step::FileDone {
                proto,
                name,
                bytes,
                millis,
                resent,
            } => json!({
                "protocol": proto, "file": name, "bytes": bytes, "millis": millis, "retransmissions": resent,
            }),
            Step::FileFailed {
                proto,
                name,
                reason,
            } => {
                json!({ "protocol": proto, "file": name, "reason": reason })
            }
            Step::IscsiLogin { initiator, target } => {
                json!({ "initiator": initiator, "target": target })
            }
            Step::IscsiRefused { reason } => json!({ "reason": reason }),
            Step::NoBootRule | Step::Release | Step::Decline | Step::IscsiRead => json!({}),
        }
    }
}

impl Session {
    /// The session as the API shows it; `to_unix_ms` turns the clock's instants into wall time.
    pub fn json(&self, to_unix_ms: &dyn Fn(Instant) -> u64, timeline: bool) -> serde_json::Value {
        let mut v = serde_json::json!({
            "mac": crate::serve::fmt_hw(&self.mac),
            "address": self.addr.map(|a| a.to_string()),
            "iqn": self.iqn.as_deref(),
            "phase": self.phase.name(),
            "started_ms": to_unix_ms(self.started),
            "updated_ms": to_unix_ms(self.updated),
            "elapsed_ms": self.updated.saturating_since(self.started).as_millis(),
            "rounds": self.rounds,
            "failure": self.failure.as_deref(),
            "ended": self.ended,
        });
        if timeline {
            let steps: Vec<serde_json::Value> = self
                .steps
                .iter()
                .map(|(at, st)| {
                    let mut d = st.detail_json();
                    d["step"] = st.kind().into();
                    d["at_ms"] = to_unix_ms(*at).into();
                    d["after_ms"] = at.saturating_since(self.started).as_millis().into();
                    d
                })
                .collect();
            v["timeline"] = steps.into();
            v["steps_dropped"] = self.steps_dropped.into();
        }
        v
    }
}

impl Boots {
    /// The registry's counters and per-lap percentiles (milliseconds) as JSON, for
    /// `bootstorm stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        let c = self.counts();
        let (live, recent) = self.held();
        let phases: serde_json::Map<String, serde_json::Value> = Phase::ALL
            .iter()
            .map(|p| (p.name().to_string(), c.per_phase[p.index()].into()))
            .collect();
        let laps: serde_json::Map<String, serde_json::Value> = Lap::ALL
            .iter()
            .zip(self.laps())
            .map(|(l, h)| {
                let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                (
                    l.name().to_string(),
                    serde_json::json!({
                        "count": h.len(), "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "max_ms": h.max() as f64 / 1000.0,
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "live": live, "recent": recent, "live_cap": self.live_cap, "recent_cap": self.recent_cap,
            "started": c.started, "booted": c.booted, "failures": c.failures, "evicted": c.evicted,
            "phases": phases, "latency": laps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, n)
    }

    #[test]
    fn a_diskless_boot_goes_through_every_phase_with_its_laps() {
        let b = Boots::default();
        let mac = [0x52, 0x54, 0, 0, 0, 1];
        b.step(
            t(0),
            &mac,
            Step::Offer {
                addr: ip(10),
                round: 0,
            },
        );
        assert_eq!(b.get(&mac).unwrap().phase, Phase::Dhcp);
        b.step(t(4), &mac, Step::Ack { addr: ip(10) });
        b.step(
            t(5),
            &mac,
            Step::File {
                proto: "tftp",
                name: "undionly.kpxe".into(),
            },
        );
        assert_eq!(b.counts().per_phase[Phase::Tftp.index()], 1);
        b.step(
            t(55),
            &mac,
            Step::FileDone {
                proto: "tftp",
                name: "undionly.kpxe".into(),
                bytes: 70_000,
                millis: 50,
                resent: 2,
            },
        );
        // iPXE asks again: a second round.
        b.step(
            t(60),
            &mac,
            Step::Offer {
                addr: ip(10),
                round: 0,
            },
        );
        b.step(t(62), &mac, Step::Ack { addr: ip(10) });
        b.step(
            t(70),
            &mac,
            Step::IscsiLogin {
                initiator: "iqn.x:m1".into(),
                target: "iqn.t".into(),
            },
        );
        b.step(t(75), &mac, Step::IscsiRead);
        b.step(t(76), &mac, Step::IscsiRead);
        let s = b.get(&mac).unwrap();
        assert_eq!(s.phase, Phase::Booted);
        assert_eq!(s.rounds, 2);
        assert_eq!(s.iqn.as_deref(), Some("iqn.x:m1"));
        assert_eq!(s.failure, None);
        let kinds: Vec<_> = s.steps.iter().map(|(_, st)| st.kind()).collect();
        assert_eq!(
            kinds,
            [
                "offer",
                "ack",
                "file",
                "file-done",
                "offer",
                "ack",
                "iscsi-login",
                "iscsi-read"
            ]
        );
        assert_eq!(
            s.steps[4].1,
            Step::Offer {
                addr: ip(10),
                round: 2
            }
        );
        let c = b.counts();
        assert_eq!((c.started, c.booted, c.failures), (1, 1, 0));
        assert_eq!(c.per_phase[Phase::Booted.index()], 1);
        assert_eq!(c.per_phase.iter().sum::<u64>(), 1);
        let laps = b.laps();
        assert_eq!(laps[Lap::Dhcp as usize].len(), 2);
        // 4 ms and 2 ms, within the histogram's precision.
        assert!((3900..=4100).contains(&laps[Lap::Dhcp as usize].max()));
        assert_eq!(laps[Lap::Tftp as usize].len(), 1);
        assert!((7900..=8100).contains(&laps[Lap::IscsiLogin as usize].max()));
        assert!((74_000..=76_000).contains(&laps[Lap::Boot as usize].max()));
        // It boots again later: a new session, the old one in the ring.
        b.step(
            t(10_000),
            &mac,
            Step::Offer {
                addr: ip(10),
                round: 0,
            },
        );
        let (all, n) = b.list(|_| true, 0, 10);
        assert_eq!(n, 2);
        assert!(!all[0].ended && all[1].ended);
        assert_eq!(all[1].phase, Phase::Booted);
        assert_eq!(b.counts().per_phase[Phase::Dhcp.index()], 1);
    }

    #[test]
    fn failures_name_the_phase_and_the_reason() {
        let b = Boots::default();
        let (m1, m2) = ([1u8, 0, 0, 0, 0, 1], [1u8, 0, 0, 0, 0, 2]);
        b.step(
            t(0),
            &m1,
            Step::Offer {
                addr: ip(1),
                round: 0,
            },
        );
        b.step(t(1), &m1, Step::NoBootRule);
        let s = b.get(&m1).unwrap();
        assert_eq!(s.phase, Phase::Failed);
        assert!(
            s.failure
                .as_deref()
                .unwrap()
                .starts_with("no boot rule matched")
        );
        b.step(
            t(0),
            &m2,
            Step::Offer {
                addr: ip(2),
                round: 0,
            },
        );
        b.step(t(1), &m2, Step::Ack { addr: ip(2) });
        b.step(
            t(2),
            &m2,
            Step::File {
                proto: "tftp",
                name: "missing.efi".into(),
            },
        );
        b.step(
            t(3),
            &m2,
            Step::FileFailed {
                proto: "tftp",
                name: "missing.efi".into(),
                reason: "file not found".into(),
            },
        );
        let s = b.get(&m2).unwrap();
        assert_eq!(s.phase, Phase::Failed);
        assert_eq!(
            s.failure.as_deref(),
            Some("tftp missing.efi: file not found")
        );
        let (failed, n) = b.list(|s| s.phase == Phase::Failed, 0, 10);
        assert_eq!((failed.len(), n), (2, 2));
        assert_eq!(b.counts().failures, 2);
        // A retry moves it on and keeps the last failure for the operator.
        b.step(
            t(4),
            &m2,
            Step::Offer {
                addr: ip(2),
                round: 0,
            },
        );
        let s = b.get(&m2).unwrap();
        assert_eq!(s.phase, Phase::Dhcp);
        assert!(s.failure.is_some());
    }

    #[test]
    fn memory_is_bounded_by_both_caps() {
        let b = Boots::new(100, 50, Duration::from_secs(60));
        for i in 0..10_000u32 {
            let mac = i.to_be_bytes();
            b.step(
                t(u64::from(i)),
                &mac,
                Step::Offer {
                    addr: ip(1),
                    round: 0,
                },
            );
            b.step(t(u64::from(i)), &mac, Step::Ack { addr: ip(1) });
        }
        assert_eq!(b.held(), (100, 50));
        let c = b.counts();
        assert_eq!(c.started, 10_000);
        assert_eq!(c.evicted, 9_900);
        assert_eq!(c.per_phase.iter().sum::<u64>(), 100);
        assert_eq!(c.per_phase[Phase::Bound.index()], 100);
        // The newest stayed live; the oldest are gone entirely.
        assert!(!b.get(&9_999u32.to_be_bytes()).unwrap().ended);
        assert!(b.get(&9_899u32.to_be_bytes()).unwrap().ended);
        assert!(b.get(&0u32.to_be_bytes()).is_none());
        // Steps per session are capped too.
        let mac = 9_999u32.to_be_bytes();
        for i in 0..200 {
            b.step(
                t(20_000 + i),
                &mac,
                Step::File {
                    proto: "http",
                    name: "x".into(),
                },
            );
        }
        let s = b.get(&mac).unwrap();
        assert_eq!(s.steps.len(), MAX_STEPS);
        assert_eq!(s.steps_dropped, 202 - MAX_STEPS as u32);
        // Idle sessions end.
        assert_eq!(b.sweep(t(75_000)), 99);
        assert_eq!(b.held().0, 1);
        assert_eq!(b.counts().per_phase.iter().sum::<u64>(), 1);
        // A release from a machine with no session records nothing.
        b.step(t(75_000), &[9, 9], Step::Release);
        assert!(b.get(&[9, 9]).is_none());
    }
}
