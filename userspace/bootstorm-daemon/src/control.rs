//! What the control socket answers, as JSON: leases, counters, boot sessions (the HTTP API of
//! [`crate::api`] serves them on the socket), and the CLI's way of asking ([`request`]).

use crate::serve::fmt_hw;
use bootstorm_dhcp::{DropReason, Server, Stats};
use bootstorm_time::Clock;
use percent_encoding::utf8_percent_encode;
use std::path::Path;

pub use bootstorm_leasefile::LeaseJson;

/// What a lease listing keeps (`GET /api/v1/leases?state=&subnet=&mac=&hostname=`): every
/// condition given (a key given twice must hold both ways).
#[derive(Clone, Debug, Default)]
pub struct LeaseFilter(Vec<LeaseCond>);

#[derive(Clone, Debug)]
enum LeaseCond {
    State(String),
    Subnet(String),
    Mac(Vec<u8>),
    Hostname(String),
}

impl LeaseFilter {
    /// The filter of a query's pairs, or why it is refused (an unknown key, a malformed MAC).
    pub fn parse(pairs: &[(String, String)]) -> Result<LeaseFilter, String> {
        pairs
            .iter()
            .map(|(k, v)| {
                Ok(match k.as_str() {
                    "state" => LeaseCond::State(v.clone()),
                    "subnet" => LeaseCond::Subnet(v.clone()),
                    "hostname" => LeaseCond::Hostname(v.clone()),
                    "mac" => LeaseCond::Mac(parse_mac(v).map_err(|e| format!("mac: {e}"))?),
                    _ => {
                        return Err(format!(
                            "unknown filter '{k}' (state, subnet, mac, hostname)"
                        ));
                    }
                })
            })
            .collect::<Result<_, _>>()
            .map(LeaseFilter)
    }

    /// Whether `l`, in `state` now, passes; `subnets` names the server's subnets as a listing
    /// shows them.
    fn keeps(
        &self,
        subnets: &[String],
        l: &bootstorm_lease::Lease,
        state: bootstorm_lease::LeaseState,
    ) -> bool {
        self.0.iter().all(|c| match c {
            LeaseCond::State(v) => state.name() == v,
            LeaseCond::Subnet(v) => subnets.get(l.subnet as usize) == Some(v),
            LeaseCond::Mac(m) => *l.hwaddr == **m,
            LeaseCond::Hostname(v) => l.hostname.as_deref() == Some(v.as_str()),
        })
    }
}

/// The leases of `server` at the clock's now that `filter` keeps, as the API's JSON array (in
/// the order of [`bootstorm_lease::LeaseTable::leases`]): the records are filtered in the table
/// ([`bootstorm_lease::LeaseTable::leases_where`]), only those kept are copied and formatted,
/// and they are serialized straight into the answer.
pub fn leases_body(server: &Server, clock: &Clock, filter: &LeaseFilter) -> String {
    let now = clock.now();
    let wall = bootstorm_journal::WallClock::new(*clock);
    let subnets: Vec<String> = server
        .config()
        .subnets
        .iter()
        .map(|s| format!("{}/{}", s.network, s.prefix))
        .collect();
    let kept: Vec<LeaseJson> = server
        .leases()
        .leases_where(now, |l, state| filter.keeps(&subnets, l, state))
        .into_iter()
        .map(|l| lease_json(server, &wall, now, l))
        .collect();
    serde_json::to_string(&kept).unwrap_or_else(|_| "[]".into())
}

/// Every lease of `server` at the clock's now.
pub fn leases_json(server: &Server, clock: &Clock) -> Vec<LeaseJson> {
    let now = clock.now();
    let wall = bootstorm_journal::WallClock::new(*clock);
    server
        .leases()
        .leases(now)
        .into_iter()
        .map(|l| lease_json(server, &wall, now, l))
        .collect()
}

/// One record as the API and `bootstorm leases` show it.
pub fn lease_json(
    server: &Server,
    wall: &bootstorm_journal::WallClock,
    now: bootstorm_time::Instant,
    l: bootstorm_lease::Lease,
) -> LeaseJson {
    let subnet = server
        .config()
        .subnets
        .get(l.subnet as usize)
        .map(|s| format!("{}/{}", s.network, s.prefix))
        .unwrap_or_default();
    LeaseJson {
        ip: l.addr.to_string(),
        mac: fmt_hw(&l.hwaddr),
        client_id: fmt_hw(&l.key),
        state: l.state.name().to_string(),
        expires: wall.to_unix_ms(l.expires).div_ceil(1000),
        expires_in: l.expires.saturating_since(now).as_secs(),
        hostname: l.hostname.map(String::from),
        subnet,
        reserved: l.reserved,
    }
}

/// Counters as JSON.
pub fn stats_json(stats: &Stats) -> serde_json::Value {
    let names = [
        "other", "discover", "offer", "request", "decline", "ack", "nak", "release", "inform",
    ];
    let by_type = |v: &[u64; 9]| -> serde_json::Map<String, serde_json::Value> {
        names
            .iter()
            .zip(v)
            .map(|(n, c)| (n.to_string(), (*c).into()))
            .collect()
    };
    let dropped: serde_json::Map<String, serde_json::Value> = DropReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), stats.drops(*r).into()))
        .collect();
    let naks: serde_json::Map<String, serde_json::Value> = bootstorm_dhcp::NakReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), stats.naks[r.index()].into()))
        .collect();
    serde_json::json!({
        "received": by_type(&stats.rx),
        "sent": by_type(&stats.tx),
        "dropped": dropped,
        "naks": naks,
        "options_dropped": stats.options_dropped,
        "bad_options": stats.bad_options,
        "offers_reclaimed": stats.offers_reclaimed,
        "no_boot_rule": stats.no_boot_rule,
    })
}

/// `sessions [mac=M] [q=TEXT] [phase=P] [failed] [limit=N] [offset=N]`: the boot sessions that match
/// (live first, newest first), at most `limit` (default 100, at most 10,000); with `mac=` the
/// one machine's session with its timeline.
pub fn sessions_json(
    sessions: &crate::sessions::Sessions,
    clock: &Clock,
    args: &[&str],
) -> SessionsAnswer {
    let wall = bootstorm_journal::WallClock::new(*clock);
    let to_ms = |i| wall.to_unix_ms(i);
    let (mut mac, mut phase, mut failed, mut limit, mut offset) = (None, None, false, 100, 0);
    let mut search: Option<String> = None;
    for a in args {
        let parsed = match a.split_once('=') {
            Some(("mac", m)) => parse_mac(m).map(|m| mac = Some(m)),
            Some(("q", q)) => {
                search = Some(q.to_lowercase());
                Ok(())
            }
            Some(("phase", p)) => crate::boots::Phase::ALL
                .iter()
                .find(|x| x.name() == p)
                .map(|x| phase = Some(*x))
                .ok_or(format!("phase '{p}': expected one of dhcp, bound, tftp, http, loaded, iscsi, booted, failed")),
            Some(("limit", n)) => n.parse().map(|n: usize| limit = n.min(10_000)).map_err(|_| format!("limit '{n}': expected a number")),
            Some(("offset", n)) => n.parse().map(|n| offset = n).map_err(|_| format!("offset '{n}': expected a number")),
            None if *a == "failed" => {
                failed = true;
                Ok(())
            }
            _ => Err(format!("'{a}': expected mac=, q=, phase=, failed, limit= or offset=")),
        };
        if let Err(e) = parsed {
            return SessionsAnswer::Bad(e);
        }
    }
    // Strings, numbers and values only: serializing cannot fail.
    fn body<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }
    if let Some(m) = mac {
        return match sessions.boots.get(&m) {
            Some(s) => SessionsAnswer::Body(body(&s.view(&to_ms, true))),
            None => SessionsAnswer::NotFound(format!("no session of {}", fmt_hw(&m))),
        };
    }
    // `q=`: a part of the MAC, address, IQN or UUID (as the API writes them). It runs under
    // each shard's lock, which the DHCP workers take too: each is formatted on the stack.
    let found = |s: &crate::boots::Session, q: &str| {
        shown_contains(crate::serve::Hw(&s.mac), q)
            || s.addr.is_some_and(|a| shown_contains(a, q))
            || s.iqn
                .as_deref()
                .is_some_and(|i| contains_ignoring_case(i, q))
            || s.uuid
                .is_some_and(|u| shown_contains(crate::boots::Uuid(&u), q))
    };
    // Unfiltered (the dashboard's first page, `bootstorm sessions`): read from the newest end.
    let (list, total) = if phase.is_none() && !failed && search.is_none() {
        sessions.boots.page(offset, limit)
    } else {
        sessions.boots.list(
            |s| {
                phase.is_none_or(|p| s.phase == p)
                    && (!failed || s.failure.is_some())
                    && search.as_deref().is_none_or(|q| found(s, q))
            },
            offset,
            limit,
        )
    };
    // Serialized as it is read, no tree of JSON values made per session.
    #[derive(serde::Serialize)]
    struct Page<'a> {
        total: usize,
        sessions: Vec<crate::boots::View<'a>>,
    }
    let sessions = list.iter().map(|s| s.view(&to_ms, false)).collect();
    SessionsAnswer::Body(body(&Page { total, sessions }))
}

/// A short text formatted on the stack (a hardware address, an IPv4 address, a UUID).
struct Short {
    buf: [u8; 64],
    len: usize,
}

impl std::fmt::Write for Short {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Whether `v` as it is shown contains `q` (false if it is longer than 64 bytes).
fn shown_contains(v: impl std::fmt::Display, q: &str) -> bool {
    use std::fmt::Write;
    let mut s = Short {
        buf: [0; 64],
        len: 0,
    };
    write!(s, "{v}").is_ok() && contains(&s.buf[..s.len], q.as_bytes(), |a, b| a == b)
}

/// Whether `hay` holds `q`, bytes compared by `eq`.
fn contains(hay: &[u8], q: &[u8], eq: impl Fn(&[u8], &[u8]) -> bool) -> bool {
    q.is_empty() || hay.windows(q.len()).any(|w| eq(w, q))
}

/// Whether `hay` contains `q` (lowercase), ASCII letters compared in either case.
fn contains_ignoring_case(hay: &str, q: &str) -> bool {
    contains(hay.as_bytes(), q.as_bytes(), <[u8]>::eq_ignore_ascii_case)
}

/// What a sessions request answers ([`sessions_json`]).
#[derive(Debug, PartialEq, Eq)]
pub enum SessionsAnswer {
    /// The answer, JSON.
    Body(String),
    /// No session of that MAC.
    NotFound(String),
    /// A filter that does not parse, and why.
    Bad(String),
}

/// A hardware address as the config file writes one (`52:54:00:12:34:56`, [`crate::config::Hex`]),
/// at most 16 bytes (chaddr).
pub fn parse_mac(s: &str) -> Result<Vec<u8>, String> {
    match s.parse::<crate::config::Hex>() {
        Ok(h) if h.0.len() <= 16 => Ok(h.0),
        _ => Err(format!(
            "'{s}' is not a MAC address (expected 52:54:00:12:34:56)"
        )),
    }
}

/// Asks a running server over its control socket, as the CLI's words name it: `leases`,
/// `stats`, `sessions [mac=M] [phase=P] [failed] [limit=N] [offset=N]` (the API's
/// `/api/v1/...` behind them) and returns the JSON answer; an error answer of the API is
/// returned as it came (`{"error": ...}`).
pub fn request(path: &Path, what: &str) -> std::io::Result<String> {
    let mut words = what.split_whitespace();
    let target = match words.next().unwrap_or("") {
        "leases" => "/api/v1/leases".to_string(),
        "stats" => "/api/v1/stats".to_string(),
        "sessions" => {
            let q: Vec<String> = words
                .map(|w| utf8_percent_encode(w, QUERY).to_string())
                .collect();
            if q.is_empty() {
                "/api/v1/sessions".to_string()
            } else {
                format!("/api/v1/sessions?{}", q.join("&"))
            }
        }
        other => {
            return Ok(serde_json::json!({
                "error": format!("unknown request '{other}' (leases, stats, sessions)")
            })
            .to_string());
        }
    };
    crate::api::call_unix(path, "GET", &target, None, None).map(|(_, body)| body)
}

/// What a query value may hold unescaped (`=` separates key and value, so it stays).
const QUERY: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'&')
    .add(b'#')
    .add(b'+')
    .add(b'%');

#[cfg(test)]
mod search {
    use super::{contains_ignoring_case, shown_contains};
    use crate::{boots::Uuid, serve::Hw};

    #[test]
    fn a_search_matches_what_the_api_shows() {
        // The hex written from a table is what formatting each byte wrote, for every byte.
        let all: Vec<u8> = (0..=255).collect();
        let by_byte = |sep: &dyn Fn(usize) -> Option<char>| {
            let mut s = String::new();
            for (i, b) in all.iter().enumerate() {
                s.extend(sep(i));
                s.push_str(&format!("{b:02x}"));
            }
            s
        };
        assert_eq!(Hw(&all).to_string(), by_byte(&|i| (i > 0).then_some(':')));
        let u: [u8; 16] = std::array::from_fn(|i| (i * 17) as u8);
        assert_eq!(Uuid(&u).to_string(), "00112233-4455-6677-8899-aabbccddeeff");
        let mac = [0x52, 0x54, 0, 0xbe, 0xef, 1];
        assert!(shown_contains(Hw(&mac), "be:ef:01"));
        assert!(shown_contains(Hw(&mac), ""));
        assert!(!shown_contains(Hw(&mac), "be:ef:02"));
        // The longest hardware address (16 bytes, 47 characters) still fits.
        assert!(shown_contains(Hw(&[0xab; 16]), "ab:ab:ab"));
        assert!(shown_contains(Uuid(&u), "4455-6677-88"));
        let ip = std::net::Ipv4Addr::new(198, 18, 1, 200);
        assert!(shown_contains(ip, "18.1.2"));
        assert!(contains_ignoring_case(
            "iqn.2026-12.Test:Node7",
            "test:node7"
        ));
        assert!(!contains_ignoring_case("iqn.x:a", "iqn.x:ab"));
        assert!(
            !shown_contains("x".repeat(65), "x"),
            "too long: no match, no panic"
        );
    }
}

#[cfg(test)]
mod lease_filter {
    use super::LeaseFilter;
    use bootstorm_lease::{Lease, LeaseState};
    use bootstorm_time::Instant;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn lease(mac: u8, state: LeaseState, subnet: u32, host: Option<&str>) -> Lease {
        Lease {
            key: Box::new([1, 0x52, 0x54, 0, 0, 0, mac]),
            hwaddr: Box::new([0x52, 0x54, 0, 0, 0, mac]),
            addr: std::net::Ipv4Addr::new(198, 18, 1, mac),
            state,
            expires: Instant::from_secs(60),
            hostname: host.map(Box::from),
            subnet,
            reserved: false,
        }
    }

    #[test]
    fn each_condition_holds_and_a_bad_one_is_refused_with_why() {
        let subnets = ["198.18.0.0/16".to_string(), "198.19.0.0/24".to_string()];
        let all = [
            lease(1, LeaseState::Bound, 0, Some("node1")),
            lease(2, LeaseState::Offered, 0, None),
            lease(3, LeaseState::Bound, 1, Some("node3")),
        ];
        let kept = |q: &[(&str, &str)]| -> Vec<u8> {
            let f = LeaseFilter::parse(&pairs(q)).unwrap();
            all.iter()
                .filter(|l| f.keeps(&subnets, l, l.state))
                .map(|l| l.hwaddr[5])
                .collect()
        };
        assert_eq!(kept(&[]), [1, 2, 3]);
        assert_eq!(kept(&[("state", "bound")]), [1, 3]);
        assert_eq!(kept(&[("subnet", "198.19.0.0/24")]), [3]);
        assert_eq!(kept(&[("mac", "52-54-00-00-00-02")]), [2]);
        assert_eq!(kept(&[("hostname", "node1")]), [1]);
        assert_eq!(
            kept(&[("state", "bound"), ("subnet", "198.18.0.0/16")]),
            [1]
        );
        assert!(kept(&[("state", "bound"), ("state", "offered")]).is_empty());
        let e = LeaseFilter::parse(&pairs(&[("colour", "red")])).unwrap_err();
        assert_eq!(e, "unknown filter 'colour' (state, subnet, mac, hostname)");
        let e = LeaseFilter::parse(&pairs(&[("mac", "zz")])).unwrap_err();
        assert!(e.starts_with("mac: "), "{e}");
    }
}
