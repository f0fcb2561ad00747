//! The daemon as services: [`Daemon::start`] turns validated [`Settings`] into running DHCP,
//! TFTP, HTTP and control services, as `bootstorm serve` runs them and as tests start them.
//!
//! Each service implements [`Service`]: it has a name, hands out the source of its section of
//! `bootstorm stats` (a closure over its shared counters, which the control socket calls from
//! its own thread), and stops the same way (threads joined, sockets closed). The daemon shares
//! the open-file limit out (256 descriptors kept for DHCP, the journal and the control socket;
//! HTTP at most a quarter of the rest beside TFTP), gives TFTP and HTTP one file cache when they
//! serve one root, and hands TFTP the boot-session registry the DHCP workers feed (per-MAC
//! roots). A later service (iSCSI) is one more [`Service`].

use crate::api::{Api, ApiState, ConfigView, MainRequest};
use crate::config::Settings;
use crate::control;
use crate::files::FileCache;
use crate::httpd::{self, HttpRunning, HttpSettings};
use crate::iscsid::{self, IscsiRunning};
use crate::serve::{self, Running};
use crate::tftpd::{self, TftpRunning, TftpSettings};
use anyhow::Context;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A service's section of `bootstorm stats`, callable from any thread.
pub type StatsSource = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What every service of the daemon offers.
pub trait Service: Send {
    /// Its name (and its key in `bootstorm stats`, but for DHCP's, which is the top level).
    fn name(&self) -> &'static str;
    /// The source of its stats; `None` for a service without counters (the control socket).
    fn stats(&self) -> Option<StatsSource>;
    /// Stops it: threads joined, sockets closed.
    fn stop(self: Box<Self>);
}

impl Service for Running {
    fn name(&self) -> &'static str {
        "dhcp"
    }

    fn stats(&self) -> Option<StatsSource> {
        let workers = self.stats_handle();
        let journal = self.journal().cloned();
        let fast = self.fast_path();
        Some(Arc::new(move || {
            let mut v = control::stats_json(&workers.total());
            v["dhcp_path"] = serde_json::json!(if fast.is_some() { "xdp" } else { "socket" });
            if let Some(f) = &fast {
                v["xdp"] = f.stats_json();
            }
            let io = workers.io_total();
            v["dhcp_io"] = serde_json::json!({
                "handed_off": io.handed_off, "handoff_full": io.handoff_full,
                "held": io.held, "withheld": io.withheld, "send_failed": io.send_failed,
            });
            if let Some(j) = &journal {
                let s = j.stats();
                let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
                v["journal"] = serde_json::json!({
                    "records": g(&s.records), "writes": g(&s.writes), "syncs": g(&s.syncs),
                    "bytes": g(&s.bytes), "snapshots": g(&s.snapshots), "segments": g(&s.segments),
                    "commit_seconds": crate::metrics::histogram_json(&s.commit_us.snapshot(), 1e-6),
                    "group_records": crate::metrics::histogram_json(&s.group_records.snapshot(), 1.0),
                });
            }
            v
        }))
    }

    fn stop(self: Box<Self>) {
        let _ = Running::stop(*self);
    }
}

impl Service for TftpRunning {
    fn name(&self) -> &'static str {
        "tftp"
    }

    fn stats(&self) -> Option<StatsSource> {
        let s = self.stats().clone();
        Some(Arc::new(move || tftpd::stats_json(&s)))
    }

    fn stop(self: Box<Self>) {
        TftpRunning::stop(*self);
    }
}

impl Service for HttpRunning {
    fn name(&self) -> &'static str {
        "http"
    }

    fn stats(&self) -> Option<StatsSource> {
        let s = self.stats().clone();
        Some(Arc::new(move || httpd::stats_json(&s)))
    }

    fn stop(self: Box<Self>) {
        HttpRunning::stop(*self);
    }
}

impl Service for IscsiRunning {
    fn name(&self) -> &'static str {
        "iscsi"
    }

    fn stats(&self) -> Option<StatsSource> {
        let s = self.stats().clone();
        Some(Arc::new(move || iscsid::stats_json(&s)))
    }

    fn stop(self: Box<Self>) {
        IscsiRunning::stop(*self);
    }
}

impl Service for Api {
    fn name(&self) -> &'static str {
        "api"
    }

    fn stats(&self) -> Option<StatsSource> {
        None
    }

    fn stop(self: Box<Self>) {
        drop(self);
    }
}

/// The running daemon.
pub struct Daemon {
    dhcp: Running,
    /// TFTP, HTTP and the control socket, in the order they started.
    services: Vec<Box<dyn Service>>,
    stats: StatsSource,
    tftp_local: Option<SocketAddrV4>,
    http_local: Option<SocketAddrV4>,
    api_local: Option<std::net::SocketAddr>,
    shutdown: Arc<AtomicBool>,
    /// What the API asks of the main loop (reloads).
    requests: std::sync::Mutex<std::sync::mpsc::Receiver<MainRequest>>,
    config: Arc<std::sync::Mutex<ConfigView>>,
}

impl Daemon {
    /// Starts every service `settings` ask for; `shutdown` stops them too (set by signals).
    pub fn start(settings: &Settings, shutdown: Arc<AtomicBool>) -> anyhow::Result<Daemon> {
        // Every TFTP transfer has a socket of its own (its TID) and every HTTP client a
        // connection: a storm needs far more descriptors than the usual soft limit of 1,024.
        let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
        let (http_settings, tftp_budget) =
            fd_budget(nofile, settings.http.clone(), settings.tftp.is_some());
        // TFTP and HTTP from one root read each file once and hold one copy: one cache for both.
        let (tftp_cache, http_cache) = file_caches(settings.tftp.as_ref(), http_settings.as_ref())?;
        let shared_cache = match (&tftp_cache, &http_cache) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => Some(a.clone()),
            _ => None,
        };
        // On the fast path the DHCP workers serve TFTP too (from the same cache).
        let fast_tftp = match (&settings.tftp, &tftp_cache) {
            (Some(t), Some(c)) => Some((
                tftp_limits(t, tftp_budget, nofile, &settings.interfaces),
                c.clone(),
            )),
            _ => None,
        };
        let dhcp = serve::start_with(settings, fast_tftp)?;
        let mut services: Vec<Box<dyn Service>> = Vec::new();
        let mut sections: Vec<(&'static str, StatsSource)> = Vec::new();
        let (mut tftp_local, mut http_local) = (None, None);
        if let Some(t) = &settings.tftp {
            let t = tftp_limits(t, tftp_budget, nofile, &settings.interfaces);
            // Who holds an address: the boot-session registry the DHCP workers feed.
            let (sessions, clock) = (dhcp.sessions(), dhcp.clock());
            let cache = tftp_cache.clone().context("a TFTP file cache")?;
            let tftp = tftpd::start_shared(
                &t,
                cache,
                dhcp.clock(),
                shutdown.clone(),
                Some(sessions.lookup(clock)),
                Some(sessions.notes(clock)),
            )?;
            tftp_local = Some(tftp.local_addr());
            services.push(Box::new(tftp));
        }
        if let Some(h) = &http_settings {
            let cache = http_cache.clone().context("an HTTP file cache")?;
            let note = dhcp.sessions().notes(dhcp.clock());
            let http = httpd::start_shared(h, cache, shutdown.clone(), Some(note))?;
            http_local = Some(http.local_addr());
            services.push(Box::new(http));
        }
        if let Some(i) = &settings.iscsi {
            // Diskless targets keyed by MAC ask the boot-session registry who holds an address.
            let (sessions, clock) = (dhcp.sessions(), dhcp.clock());
            services.push(Box::new(iscsid::start(
                i,
                shutdown.clone(),
                Some(sessions.lookup(clock)),
                Some(sessions.notes(clock)),
            )?));
        }
        for s in &services {
            if let Some(src) = s.stats() {
                sections.push((s.name(), src));
            }
        }
        let top = Service::stats(&dhcp).context("DHCP stats")?;
        // The services' counters; `bootstorm stats` adds the boot sessions' section, which the
        // metrics read from the registry itself.
        let counters: StatsSource = Arc::new(move || {
            let mut v = top();
            for (name, src) in &sections {
                v[*name] = src();
            }
            if let Some(c) = &shared_cache {
                let (reads, held) = c.counters();
                v["files"] = serde_json::json!({ "shared": true, "reads": reads, "held": held });
            }
            v
        });
        let registry = dhcp.sessions();
        let stats: StatsSource = {
            let counters = counters.clone();
            Arc::new(move || {
                let mut v = counters();
                v["boot"] = registry.boots.stats_json();
                v
            })
        };
        let (tx, requests) = std::sync::mpsc::channel();
        let config = Arc::new(std::sync::Mutex::new(ConfigView::default()));
        let mut names: Vec<&'static str> = vec!["dhcp"];
        names.extend(services.iter().map(|s| s.name()));
        names.push("api");
        let state = ApiState {
            server: dhcp.server_cell(),
            sessions: dhcp.sessions(),
            clock: dhcp.clock(),
            stats: stats.clone(),
            journal: dhcp.journal().cloned(),
            services: names,
            settings: settings.api.clone(),
            main: std::sync::Mutex::new(tx),
            config: config.clone(),
            reservations: dhcp.reservations(),
            storm: crate::storm::Storm::new(),
            metrics: crate::metrics::registry(crate::metrics::Sources {
                stats: counters,
                server: dhcp.server_cell(),
                sessions: dhcp.sessions(),
                clock: dhcp.clock(),
            }),
        };
        let control =
            Api::start(&settings.control_socket, state, shutdown.clone()).with_context(|| {
                format!(
                    "opening control socket {}",
                    settings.control_socket.display()
                )
            })?;
        let api_local = control.tcp_addr();
        services.push(Box::new(control));
        Ok(Daemon {
            dhcp,
            services,
            stats,
            tftp_local,
            http_local,
            api_local,
            shutdown,
            requests: std::sync::Mutex::new(requests),
            config,
        })
    }

    /// The DHCP service (reload, sessions, its counters).
    pub fn dhcp(&self) -> &Running {
        &self.dhcp
    }

    /// The TFTP listener's address, if TFTP runs.
    pub fn tftp_addr(&self) -> Option<SocketAddrV4> {
        self.tftp_local
    }

    /// The HTTP listener's address, if HTTP runs.
    pub fn http_addr(&self) -> Option<SocketAddrV4> {
        self.http_local
    }

    /// The API's TCP listener, if `[api] address` is set.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.api_local
    }

    /// The next thing the API asks of the main loop, if any.
    pub fn next_request(&self) -> Option<MainRequest> {
        self.requests.lock().ok()?.try_recv().ok()
    }

    /// Answers what the API asks of the main loop but a reload (which needs the config file's
    /// path and the command line: `bootstorm serve` answers that one).
    pub fn answer(&self, r: MainRequest) -> Option<MainRequest> {
        match r {
            MainRequest::AddReservation(res, reply) => {
                let _ = reply.send(self.add_reservation(res));
                None
            }
            MainRequest::RemoveReservation(addr, reply) => {
                let _ = reply.send(self.remove_reservation(addr));
                None
            }
            other => Some(other),
        }
    }

    fn add_reservation(
        &self,
        r: crate::reservations::ApiReservation,
    ) -> Result<serde_json::Value, String> {
        let store = self.dhcp.reservations();
        let addr = r.address;
        store.add(self.dhcp.server().config(), r.clone())?;
        match self.dhcp.reapply() {
            Ok(done) => {
                tracing::info!(%addr, mac = r.mac.as_deref().unwrap_or(""), "reservation added through the API");
                Ok(serde_json::json!({ "added": r, "conflicts": done.conflicts }))
            }
            Err(e) => {
                let _ = store.remove(addr);
                Err(format!("not applied, nothing kept: {e:#}"))
            }
        }
    }

    fn remove_reservation(&self, addr: std::net::Ipv4Addr) -> Result<serde_json::Value, String> {
        let store = self.dhcp.reservations();
        let gone = store.remove(addr)?;
        self.dhcp
            .reapply()
            .map_err(|e| format!("removed from the list, but the rebuild failed: {e:#}"))?;
        tracing::info!(%addr, "reservation removed through the API");
        Ok(serde_json::json!({ "removed": gone }))
    }

    /// What the API shows as the running config (after a start or a reload from a file).
    pub fn set_config_view(&self, view: ConfigView) {
        if let Ok(mut v) = self.config.lock() {
            *v = view;
        }
    }

    /// What `bootstorm stats` answers now.
    pub fn stats_json(&self) -> serde_json::Value {
        (self.stats)()
    }

    /// Lapsed leases leave the table, the registry forgets them, and the log says so (the
    /// daemon's main loop calls this every few seconds).
    pub fn sweep(&self) {
        // Collected first and logged after: the sweep's callback runs under a shard lock.
        let mut expired = Vec::new();
        let now = self.dhcp.clock().now();
        self.dhcp
            .server()
            .leases()
            .sweep(now, |l| expired.push((l.addr, l.hwaddr.clone(), l.subnet)));
        let sessions = self.dhcp.sessions();
        sessions.boots.sweep(now);
        for (ip, hw, subnet) in expired {
            sessions.forget(ip, &hw);
            let mac = serve::fmt_hw(&hw);
            tracing::info!(target: "bootstorm::lease", event = "expire", %ip, %mac, subnet, "lease");
        }
    }

    /// Stops every service (the control socket first, DHCP and its journal last); returns each
    /// DHCP worker's final counters.
    pub fn stop(self) -> Vec<bootstorm_dhcp::Stats> {
        // The flag every service's threads watch (signals set it too).
        self.shutdown.store(true, Ordering::SeqCst);
        for s in self.services.into_iter().rev() {
            s.stop();
        }
        self.dhcp.stop()
    }
}

/// TFTP settings as this machine allows: transfers capped by the descriptors left, blocks by
/// the MTU of a single interface (RFC 2348: blocks must fit the path MTU).
fn tftp_limits(
    t: &TftpSettings,
    budget: usize,
    nofile: u64,
    interfaces: &[String],
) -> TftpSettings {
    let mut t = t.clone();
    if t.max_transfers > budget {
        tracing::warn!(
            max_transfers = t.max_transfers,
            open_file_limit = nofile,
            "the open-file limit caps concurrent TFTP transfers at {}; raise it (ulimit -n, LimitNOFILE=) for more",
            budget.max(1)
        );
        t.max_transfers = budget.max(1);
    }
    if let [ifname] = interfaces
        && let Some(mtu) = std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))
            .ok()
            .and_then(|m| m.trim().parse::<u32>().ok())
    {
        let cap = u16::try_from(mtu.saturating_sub(32))
            .unwrap_or(u16::MAX)
            .max(512);
        if cap < t.limits.max_blksize {
            tracing::info!(interface = %ifname, mtu, max_blksize = cap, "TFTP block size capped by the interface MTU");
            t.limits.max_blksize = cap;
        }
    }
    t
}

/// The file caches of TFTP and HTTP: one for both when they serve the same root (canonical
/// paths), with the larger of their size limits (each service still applies its own).
pub type Caches = (Option<Arc<FileCache>>, Option<Arc<FileCache>>);

pub fn file_caches(
    tftp: Option<&TftpSettings>,
    http: Option<&HttpSettings>,
) -> anyhow::Result<Caches> {
    let cache = |root: &std::path::Path, max: u64, what: &str| {
        FileCache::new(root, max)
            .map(Arc::new)
            .with_context(|| format!("{what} root {}", root.display()))
    };
    let same = |a: &std::path::Path, b: &std::path::Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    Ok(match (tftp, http) {
        (Some(t), Some(h)) if same(&t.root, &h.root) => {
            let c = cache(&t.root, t.max_file_size.max(h.max_file_size), "TFTP/HTTP")?;
            (Some(c.clone()), Some(c))
        }
        (t, h) => (
            t.map(|t| cache(&t.root, t.max_file_size, "TFTP"))
                .transpose()?,
            h.map(|h| cache(&h.root, h.max_file_size, "HTTP"))
                .transpose()?,
        ),
    })
}

/// Descriptors kept for everything but TFTP transfers and HTTP connections: the DHCP sockets,
/// the journal, the control socket and its clients, logs, the file cache's reads.
pub const RESERVED_FDS: u64 = 256;

/// Shares the open-file limit out: `RESERVED_FDS` stay free whatever clients do; HTTP gets at
/// most a quarter of the rest when TFTP runs too (a TFTP transfer is a boot in progress, an HTTP
/// connection may be idle), TFTP what HTTP does not take. Returns the HTTP settings with their
/// cap and TFTP's budget.
pub fn fd_budget(
    nofile: u64,
    http: Option<HttpSettings>,
    tftp: bool,
) -> (Option<HttpSettings>, usize) {
    let budget = usize::try_from(nofile.saturating_sub(RESERVED_FDS))
        .unwrap_or(usize::MAX)
        .max(2);
    let Some(mut h) = http else {
        return (None, budget);
    };
    let share = if tftp { budget / 4 } else { budget }.max(1);
    if h.max_connections > share {
        tracing::info!(
            max_connections = h.max_connections,
            open_file_limit = nofile,
            "the open-file limit caps HTTP connections at {share}; raise it (ulimit -n, LimitNOFILE=) for more"
        );
        h.max_connections = share;
    }
    let rest = budget.saturating_sub(h.max_connections).max(1);
    (Some(h), rest)
}
