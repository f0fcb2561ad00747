//! Admission control: a token bucket per source of DISCOVERs, so that a flood from one relay or
//! one interface cannot take the server's time and addresses from the others.
//!
//! A source is the relay a message came through (giaddr) or, for a client on the wire, the
//! interface it came in on. Only DISCOVERs are limited: they start new work (an address to
//! find and hold), while a REQUEST finishes an exchange already begun and a RENEW keeps a lease
//! alive. A DISCOVER over the limit is dropped and counted (`rate_limited`); its client
//! retransmits, as every DHCP client does.
//!
//! Written here rather than taken from a crate: it is a dozen lines of arithmetic on the core's
//! own clock (`bootstorm_time::Instant`), and the cores never read a clock themselves.

use bootstorm_time::Instant;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// One limit: a sustained rate and the burst allowed above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// DISCOVERs per second; 0 = unlimited.
    pub per_sec: u32,
    /// Bucket size: how many may come at once.
    pub burst: u32,
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate {
        per_sec: 0,
        burst: 0,
    };
}

/// The limits of [`crate::ServerConfig::admission`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Per relay agent (giaddr).
    pub relay: Rate,
    /// Per receiving interface, for clients on the wire (giaddr zero).
    pub interface: Rate,
}

/// Default sustained rate per source. A boot storm is a burst (the bucket below takes 20,000
/// DISCOVERs from one relay at once, twice the 10,000-machine storm of bench/RESULTS.md through
/// two relays); only a source that keeps sending past 5,000 new clients a second, which no
/// rack of real machines does, is held to it. The server itself answers ~60,000 leases/s on
/// two cores, so one flooding source leaves most of it to the others.
pub const DEFAULT_RATE: u32 = 5_000;
/// Default burst per source.
pub const DEFAULT_BURST: u32 = 20_000;

impl Default for AdmissionConfig {
    fn default() -> AdmissionConfig {
        let r = Rate {
            per_sec: DEFAULT_RATE,
            burst: DEFAULT_BURST,
        };
        AdmissionConfig {
            relay: r,
            interface: r,
        }
    }
}

/// Where DISCOVERs come from, for admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// Through a relay agent.
    Relay(Ipv4Addr),
    /// On the wire, on this interface index (0 if the driver does not know it).
    Interface(u32),
}

/// Most sources tracked at once. Relays and interfaces are few; a forged giaddr is dropped
/// before admission unless it lies in a configured subnet, so this bounds what forged ones can
/// make the table hold. Beyond it, full (idle) buckets are forgotten; if none is, newcomers share
/// one bucket.
const MAX_SOURCES: usize = 4096;

/// Tokens are counted in thousandths so that a rate below 1,000/s still refills between
/// millisecond ticks.
const MILLI: u64 = 1000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u64,
    at: Instant,
}

/// The buckets. Shared by all workers (one lock taken per DISCOVER: a few tens of nanoseconds
/// beside the tens of microseconds a lease costs).
#[derive(Debug)]
pub struct Admission {
    cfg: AdmissionConfig,
    buckets: Mutex<HashMap<Source, Bucket>>,
}

impl Admission {
    /// Buckets for these limits.
    pub fn new(cfg: AdmissionConfig) -> Admission {
        Admission {
            cfg,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `source`'s bucket at `now`; false if it is empty.
    pub fn admit(&self, now: Instant, source: Source) -> bool {
        let rate = match source {
            Source::Relay(_) => self.cfg.relay,
            Source::Interface(_) => self.cfg.interface,
        };
        if rate.per_sec == 0 {
            return true;
        }
        let cap = u64::from(rate.burst.max(1)) * MILLI;
        let Ok(mut map) = self.buckets.lock() else {
            return true; // a worker panicked holding it: admit rather than starve everyone
        };
        if map.len() >= MAX_SOURCES && !map.contains_key(&source) {
            map.retain(|_, b| refill(b, now, rate, cap) < cap);
        }
        let key = if map.len() >= MAX_SOURCES && !map.contains_key(&source) {
            Source::Interface(u32::MAX) // the shared bucket of sources beyond the cap
        } else {
            source
        };
        let b = map.entry(key).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let t = refill(b, now, rate, cap);
        b.tokens = t;
        b.at = now;
        if t >= MILLI {
            b.tokens -= MILLI;
            true
        } else {
            false
        }
    }
}

/// The bucket's tokens at `now` (not stored).
fn refill(b: &Bucket, now: Instant, rate: Rate, cap: u64) -> u64 {
    let ms = now.saturating_since(b.at).as_millis();
    // per_sec tokens a second = per_sec thousandths of a token a millisecond.
    b.tokens
        .saturating_add(ms.saturating_mul(u64::from(rate.per_sec)))
        .min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adm(per_sec: u32, burst: u32) -> Admission {
        let r = Rate { per_sec, burst };
        Admission::new(AdmissionConfig {
            relay: r,
            interface: r,
        })
    }

    #[test]
    fn burst_then_rate() {
        let a = adm(100, 10);
        let s = Source::Relay(Ipv4Addr::new(198, 18, 0, 2));
        let t0 = Instant::from_millis(1000);
        assert_eq!((0..20).filter(|_| a.admit(t0, s)).count(), 10);
        // 100/s: one more every 10 ms.
        assert!(!a.admit(t0 + bootstorm_time::Duration::from_millis(5), s));
        assert!(a.admit(t0 + bootstorm_time::Duration::from_millis(10), s));
        let t1 = t0 + bootstorm_time::Duration::from_millis(510);
        assert_eq!(
            (0..100).filter(|_| a.admit(t1, s)).count(),
            10,
            "refill capped at burst"
        );
    }

    #[test]
    fn sources_do_not_share_buckets() {
        let a = adm(1, 3);
        let t = Instant::from_millis(0);
        let (r1, r2, i) = (
            Source::Relay(Ipv4Addr::new(198, 18, 0, 2)),
            Source::Relay(Ipv4Addr::new(198, 19, 0, 2)),
            Source::Interface(4),
        );
        assert_eq!((0..10).filter(|_| a.admit(t, r1)).count(), 3);
        assert_eq!((0..10).filter(|_| a.admit(t, r2)).count(), 3);
        assert_eq!((0..10).filter(|_| a.admit(t, i)).count(), 3);
    }

    #[test]
    fn unlimited_admits_everything_and_sources_are_bounded() {
        let a = Admission::new(AdmissionConfig {
            relay: Rate::UNLIMITED,
            interface: Rate::UNLIMITED,
        });
        assert!((0..10_000).all(|_| a.admit(Instant::from_millis(0), Source::Interface(1))));
        let a = adm(1, 1);
        let t = Instant::from_millis(0);
        for n in 0..(MAX_SOURCES as u32 + 100) {
            a.admit(t, Source::Relay(Ipv4Addr::from(0xc612_0000 + n)));
        }
        assert!(a.buckets.lock().unwrap().len() <= MAX_SOURCES + 1);
    }
}
