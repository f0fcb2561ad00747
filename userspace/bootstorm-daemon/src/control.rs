//! The control socket: a Unix stream socket where `bootstorm leases`, `stats` and `sessions`
//! (and operators' scripts) ask a running server for its leases, counters and boot sessions.
//! One request line, one JSON answer, then close.

use crate::serve::fmt_hw;
use bootstorm_dhcp::{DropReason, Server, Stats};
use bootstorm_time::Clock;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub use bootstorm_leasefile::LeaseJson;

/// Every lease of `server` at the clock's now.
pub fn leases_json(server: &Server, clock: &Clock) -> Vec<LeaseJson> {
    let now = clock.now();
    let wall = bootstorm_journal::WallClock::new(*clock);
    server
        .leases()
        .leases(now)
        .into_iter()
        .map(|l| {
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
        })
        .collect()
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

/// `sessions [mac=M] [phase=P] [failed] [limit=N] [offset=N]`: the boot sessions that match
/// (live first, newest first), at most `limit` (default 100, at most 10,000); with `mac=` the
/// one machine's session with its timeline.
pub fn sessions_json(
    sessions: &crate::sessions::Sessions,
    clock: &Clock,
    args: &[&str],
) -> serde_json::Value {
    let wall = bootstorm_journal::WallClock::new(*clock);
    let to_ms = |i| wall.to_unix_ms(i);
    let (mut mac, mut phase, mut failed, mut limit, mut offset) = (None, None, false, 100, 0);
    for a in args {
        let parsed = match a.split_once('=') {
            Some(("mac", m)) => parse_mac(m).map(|m| mac = Some(m)),
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
            _ => Err(format!("'{a}': expected mac=, phase=, failed, limit= or offset=")),
        };
        if let Err(e) = parsed {
            return serde_json::json!({ "error": e });
        }
    }
    if let Some(m) = mac {
        return match sessions.boots.get(&m) {
            Some(s) => s.json(&to_ms, true),
            None => serde_json::json!({ "error": format!("no session of {}", fmt_hw(&m)) }),
        };
    }
    let (list, total) = sessions.boots.list(
        |s| phase.is_none_or(|p| s.phase == p) && (!failed || s.failure.is_some()),
        offset,
        limit,
    );
    serde_json::json!({
        "total": total,
        "sessions": list.iter().map(|s| s.json(&to_ms, false)).collect::<Vec<_>>(),
    })
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

/// The listening control socket.
pub struct Control {
    path: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl Control {
    /// Binds `path` (replacing a stale socket file) and answers requests until `shutdown`.
    pub fn start(
        path: &Path,
        server: Arc<crate::serve::ServerCell>,
        sessions: Arc<crate::sessions::Sessions>,
        clock: Clock,
        stats: impl Fn() -> serde_json::Value + Send + 'static,
        shutdown: Arc<AtomicBool>,
    ) -> std::io::Result<Control> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running server", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                let mut last_warning: Option<std::time::Instant> = None;
                while !shutdown.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let _ = answer(conn, &server.get(), &sessions, &clock, &stats);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        Err(e) => {
                            // Once a minute at most (out of descriptors, it used to say so
                            // every 50 ms).
                            if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                                tracing::warn!(error = %e, "control socket accept failed");
                                last_warning = Some(std::time::Instant::now());
                            }
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })?;
        Ok(Control {
            path: path.to_path_buf(),
            thread: Some(thread),
        })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn answer(
    conn: UnixStream,
    server: &Server,
    sessions: &crate::sessions::Sessions,
    clock: &Clock,
    stats: &dyn Fn() -> serde_json::Value,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    // At most 256 bytes: requests are one word.
    BufReader::new(std::io::Read::take(&conn, 256)).read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let body = match (words.next().unwrap_or(""), words.collect::<Vec<_>>()) {
        ("leases", _) => serde_json::to_string(&leases_json(server, clock))?,
        ("stats", _) => stats().to_string(),
        ("sessions", args) => sessions_json(sessions, clock, &args).to_string(),
        (other, _) => serde_json::json!({
            "error": format!("unknown request '{other}' (leases, stats, sessions)")
        })
        .to_string(),
    };
    let mut w = &conn;
    w.write_all(body.as_bytes())?;
    w.write_all(b"\n")
}

/// Sends one request to a control socket and returns the answer.
pub fn request(path: &Path, what: &str) -> std::io::Result<String> {
    let mut conn = UnixStream::connect(path)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(format!("{what}\n").as_bytes())?;
    let mut s = String::new();
    std::io::Read::read_to_string(&mut conn, &mut s)?;
    Ok(s)
}
