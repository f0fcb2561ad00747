//! What the control socket answers, as JSON: leases, counters, boot sessions (the HTTP API of
//! [`crate::api`] serves them on the socket), and the CLI's way of asking ([`request`]).

use crate::serve::fmt_hw;
use bootstorm_dhcp::{DropReason, Server, Stats};
use bootstorm_time::Clock;
use percent_encoding::utf8_percent_encode;
use std::path::Path;

pub use bootstorm_leasefile::LeaseJson;

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
    // `q=`: a part of the MAC, address, IQN or UUID (as the API writes them).
    let found = |s: &crate::boots::Session, q: &str| {
        fmt_hw(&s.mac).contains(q)
            || s.addr.is_some_and(|a| a.to_string().contains(q))
            || s.iqn
                .as_deref()
                .is_some_and(|i| i.to_lowercase().contains(q))
            || s.uuid
                .is_some_and(|u| crate::boots::fmt_uuid(&u).contains(q))
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
