//! `bootstorm`: the command line.
#![forbid(unsafe_code)]

use anyhow::{Context, bail};
use bootstorm_daemon::config::{self, Dur, LogFormat, Settings};
use bootstorm_daemon::control::{self, LeaseJson};
use bootstorm_daemon::daemon::Daemon;
use bootstorm_daemon::quick::{self, QuickFlags, ServerFlags};
use bootstorm_daemon::{leasefile, leaseio, serve};
use clap::{Parser, Subcommand};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// bootstorm: a network-boot engine (DHCP with PXE) for boot storms.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server, from a config file or from quick-mode flags.
    Serve(Box<ServeArgs>),
    /// Check a config file; print errors with file, line and reason, and warnings.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// List the leases of a running server; export them; import leases from bootstorm, Kea or
    /// dnsmasq files into a stopped server's lease directory.
    #[command(args_conflicts_with_subcommands = true)]
    Leases {
        #[command(subcommand)]
        action: Option<LeasesAction>,
        /// Config file of the server (to find its control socket).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Control socket path (instead of --config).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The demo: build a two-namespace lab here, serve a sample boot file, run a storm of
    /// simulated machines against it with the load generator, print the report, and remove
    /// everything it made (also on Ctrl-C). Needs root.
    #[command(disable_help_flag = true)]
    Lab {
        /// Arguments for `bootstorm-lab` (`bootstorm lab --help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// The copy-on-write overlays of diskless iSCSI targets: list them, reset one (the machine
    /// sees its golden image again) or delete one. Reset and delete are refused while a session
    /// of that machine is logged in.
    Overlay {
        #[command(subcommand)]
        action: OverlayAction,
    },
    /// The boot sessions of a running server: every booting machine with its phase, newest
    /// first; with --mac, one machine's timeline (DHCP, boot files, iSCSI) and its failure.
    Sessions {
        /// Config file of the server (to find its control socket).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Control socket path (instead of --config).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// One machine's session with its timeline.
        #[arg(long)]
        mac: Option<String>,
        /// Only sessions in this phase (dhcp, bound, tftp, http, loaded, iscsi, booted, failed).
        #[arg(long)]
        phase: Option<String>,
        /// Only sessions that saw a failure.
        #[arg(long)]
        failed: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Have a running server re-read its config file (as SIGHUP does) and say what changed or
    /// why the file was refused (the running config then stays). Needs the API token.
    Reload {
        #[command(flatten)]
        at: ApiClient,
    },
    /// Print a running server's counters as JSON.
    Stats {
        /// Config file of the server (to find its control socket).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Control socket path (instead of --config).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
}

/// How a command that changes something reaches the API.
#[derive(clap::Args)]
struct ApiClient {
    /// Config file of the server (its control socket and [api] token_file).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Control socket path (instead of --config).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The file holding the API token (default: the config's [api] token_file).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl ApiClient {
    /// `method path` on the server's API with its token; the answer's JSON, or its error.
    fn call(&self, method: &str, path: &str) -> anyhow::Result<serde_json::Value> {
        let settings = match (&self.socket, &self.config) {
            (None, Some(c)) => Some(config::load(c)?),
            _ => None,
        };
        let sock = socket_of(settings.as_ref(), self.socket.clone());
        let token = match &self.token_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("--token-file {}", f.display()))?
                    .trim()
                    .to_string(),
            ),
            None => settings.and_then(|s| s.api.token),
        };
        let (code, body) =
            bootstorm_daemon::api::call_unix(&sock, method, path, token.as_deref(), None)
                .with_context(|| {
                    format!("asking the server at {} (is it running?)", sock.display())
                })?;
        let v: serde_json::Value =
            serde_json::from_str(&body).context("reading the server's answer")?;
        if code != 200 {
            bail!("{}", v["error"].as_str().unwrap_or(&body));
        }
        Ok(v)
    }
}

#[derive(Subcommand)]
enum LeasesAction {
    /// Release a lease of the running server (as if its client sent DHCPRELEASE); done once the
    /// lease journal holds it. Needs the API token.
    Release {
        /// The leased address.
        ip: Ipv4Addr,
        #[command(flatten)]
        at: ApiClient,
    },
    /// Write every lease as JSON or CSV: asked of the running server, or read from the lease
    /// directory of a stopped one (--config).
    Export {
        /// Config file of the server (its control socket, else its [leases] dir).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Control socket path (ask a running server; instead of --config).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// json or csv.
        #[arg(long, default_value = "json")]
        format: ExportFormat,
        /// Write here instead of to standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Take over leases from files (bootstorm JSON or CSV, a Kea memfile, a dnsmasq leases
    /// file) into the [leases] dir of the configured server, which must be stopped. Clients
    /// then keep their addresses. Nothing is written unless every file reads cleanly.
    Import {
        /// Config file of the server (its subnets and [leases] dir).
        #[arg(long)]
        config: PathBuf,
        /// Format of the files: json, csv, kea (kea-leases4.csv) or dnsmasq.
        #[arg(long, value_parser = parse_format)]
        format: leasefile::Format,
        /// Check and report, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The files, oldest first (e.g. kea-leases4.csv.2 kea-leases4.csv).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Where `bootstorm overlay` looks: the config's diskless targets, or one directory.
#[derive(clap::Args)]
struct OverlayWhere {
    /// Config file of the server (its diskless `[[iscsi.target]]`s).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Only this target's overlays (its IQN).
    #[arg(long)]
    target: Option<String>,
    /// An overlay directory (instead of --config).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum OverlayAction {
    /// Every overlay: its machine, bytes written, space taken, when made and last written.
    List {
        #[command(flatten)]
        at: OverlayWhere,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Empty a machine's overlay: it reads its golden image again.
    Reset {
        /// The machine's key: its initiator IQN, or its MAC (52-54-00-12-34-56).
        key: String,
        #[command(flatten)]
        at: OverlayWhere,
    },
    /// Remove a machine's overlay (a new one is made at its next login).
    Delete {
        /// The machine's key.
        key: String,
        #[command(flatten)]
        at: OverlayWhere,
    },
}

/// `--format` of `leases import`.
fn parse_format(s: &str) -> Result<leasefile::Format, String> {
    s.parse()
}

/// What `leases export` writes.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Json,
    Csv,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML config file (see examples/).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Serve for this long, then exit (e.g. 30s, 5m): for tests and benchmarks.
    #[arg(long = "for")]
    run_for: Option<Dur>,
    /// Listen address (default 0.0.0.0).
    #[arg(long)]
    address: Option<Ipv4Addr>,
    /// UDP port (default 67).
    #[arg(long)]
    port: Option<u16>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Control socket path (default /run/bootstorm/control.sock).
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// NAK where RFC 2131 says to stay silent (exhausted pool, REQUEST for another server).
    #[arg(long)]
    compat_nak: bool,
    /// Start even if the lease journal is damaged: keep everything before the damage, set the
    /// rest aside as *.damaged, and log what was lost.
    #[arg(long)]
    repair_journal: bool,
    /// Answer REQUESTs of unknown clients (ACK if free, NAK if not) instead of staying silent.
    #[arg(long)]
    authoritative: bool,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
    /// Log level: error, warn, info (default), debug (every dropped request, every offer) or
    /// trace; or per target, e.g. "info,bootstorm::drop=debug". Overrides BOOTSTORM_LOG and
    /// [server] log_level.
    #[arg(long)]
    log_level: Option<String>,
    /// DHCP receive coalescing: under load a worker waits this long between batches (default
    /// 1ms, at most 10ms; 0 answers every datagram at once).
    #[arg(long)]
    rx_coalesce: Option<Dur>,
    /// DHCP's I/O path: auto (the XDP fast path if it can attach, else sockets; the log says
    /// why), xdp (fail if it cannot attach) or socket (default). XDP needs named interfaces.
    #[arg(long, value_parser = ["auto", "xdp", "socket"])]
    io: Option<String>,
    #[command(flatten)]
    quick: QuickFlags,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Serve(a) => serve_cmd(*a),
        Cmd::CheckConfig { file } => check_config(&file),
        Cmd::Leases {
            action: None,
            config,
            socket,
            json,
        } => leases_cmd(config, socket, json),
        Cmd::Leases {
            action:
                Some(LeasesAction::Export {
                    config,
                    socket,
                    format,
                    output,
                }),
            ..
        } => export_cmd(config, socket, format, output),
        Cmd::Leases {
            action:
                Some(LeasesAction::Import {
                    config,
                    format,
                    dry_run,
                    files,
                }),
            ..
        } => import_cmd(&config, format, &files, dry_run),
        Cmd::Leases {
            action: Some(LeasesAction::Release { ip, at }),
            ..
        } => at
            .call("DELETE", &format!("/api/v1/leases/{ip}"))
            .and_then(|v| {
                out(&format!(
                    "released {ip} (was {})\n",
                    v["mac"].as_str().unwrap_or("?")
                ))
            }),
        Cmd::Reload { at } => at
            .call("POST", "/api/v1/config/reload")
            .and_then(|v| out(&format!("{v}\n"))),
        Cmd::Lab { args } => lab_cmd(&args),
        Cmd::Overlay { action } => overlay_cmd(action),
        Cmd::Sessions {
            config,
            socket,
            mac,
            phase,
            failed,
            limit,
            json,
        } => sessions_cmd(config, socket, mac, phase, failed, limit, json),
        Cmd::Stats { config, socket } => socket_path(config, socket).and_then(|p| {
            out(&control::request(&p, "stats")
                .with_context(|| format!("asking {}", p.display()))?)
        }),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bootstorm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `bootstorm lab`: runs the demo, a program of its own (`bootstorm-lab`, next to this binary),
/// so the server binary does not carry the load generator. The lab takes this process's place
/// (`exec`: same PID, same signals), and starts this `bootstorm` as its server.
fn lab_cmd(args: &[std::ffi::OsString]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let me = std::env::current_exe().context("finding this bootstorm binary")?;
    let lab = me.with_file_name("bootstorm-lab");
    if !lab.exists() {
        bail!(
            "bootstorm lab needs {} (cargo build --release builds it beside bootstorm)",
            lab.display()
        );
    }
    let e = std::process::Command::new(&lab)
        .args(args)
        .env("BOOTSTORM_BIN", &me)
        .exec();
    Err(anyhow::Error::from(e).context(format!("running {}", lab.display())))
}

/// Writes `text` to standard output. A reader that went away (`bootstorm leases | head`) is not
/// an error: the output simply ends there (Rust's `print!` would panic on the broken pipe).
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to standard output"),
    }
}

/// The log filter: `--log-level`, else `BOOTSTORM_LOG`, else `[server] log_level`, else info.
/// Each is checked: a typo is an error that names it, not a silent log.
fn log_level(flag: Option<&str>, file: Option<&str>) -> anyhow::Result<String> {
    if let Some(f) = flag {
        return config::log_filter(f).map_err(|e| anyhow::anyhow!("--log-level: {e}"));
    }
    if let Ok(v) = std::env::var("BOOTSTORM_LOG") {
        return config::log_filter(&v).map_err(|e| anyhow::anyhow!("BOOTSTORM_LOG={v}: {e}"));
    }
    Ok(file.unwrap_or("info").to_string())
}

/// Changes the log filter of the running process (SIGHUP with a new `[server] log_level`).
type LogReload = Box<dyn Fn(&str) -> anyhow::Result<()>>;

fn init_logs(format: LogFormat, level: &str) -> LogReload {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::new(level);
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(bootstorm_daemon::logbuf::Stderr)
        .with_ansi(std::io::stderr().is_terminal());
    macro_rules! install {
        ($b:expr) => {{
            let b = $b.with_filter_reloading();
            let handle = b.reload_handle();
            b.init();
            Box::new(move |l: &str| {
                handle
                    .reload(tracing_subscriber::EnvFilter::new(l))
                    .map_err(|e| anyhow::anyhow!("changing the log level: {e}"))
            })
        }};
    }
    match format {
        LogFormat::Json => install!(b.json().flatten_event(true)),
        LogFormat::Text => install!(b),
    }
}

fn settings_for(a: &ServeArgs) -> anyhow::Result<Settings> {
    let flags = ServerFlags {
        address: a.address,
        port: a.port,
        workers: a.workers,
        control_socket: a.control_socket.clone(),
        compat_nak: a.compat_nak,
        authoritative: a.authoritative,
        log_format: a.log_format.clone(),
        rx_coalesce: a.rx_coalesce,
        io: a.io.clone(),
    };
    match &a.config {
        Some(path) => {
            if a.quick.any() {
                bail!(
                    "give either --config or quick-mode flags (--server-ip, --pool, ...), not both"
                );
            }
            let mut s = config::load(path)?;
            // Flags override the file's [server] settings.
            if let Some(v) = flags.address {
                s.listen.set_ip(v);
            }
            if let Some(v) = flags.port {
                s.listen.set_port(v);
            }
            if let Some(v) = flags.workers {
                s.workers = v.max(1);
            }
            if flags.rx_coalesce.is_some() {
                s.rx_coalesce = config::rx_coalesce(flags.rx_coalesce)
                    .map_err(|e| anyhow::anyhow!("--rx-coalesce: {e}"))?;
            }
            if let Some(v) = &flags.io {
                s.io = v
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("--io: {e}"))?;
                s.io.check_interfaces(&s.interfaces, s.dhcp_enabled)
                    .map_err(|e| anyhow::anyhow!("--io {v} {e}"))?;
            }
            if let Some(v) = flags.control_socket {
                s.control_socket = v;
            }
            s.dhcp.compat_nak |= flags.compat_nak;
            s.dhcp.authoritative |= flags.authoritative;
            match flags.log_format.as_deref() {
                Some("json") => s.log_format = LogFormat::Json,
                Some("text") => s.log_format = LogFormat::Text,
                Some(x) => bail!("--log-format {x}: expected text or json"),
                None => {}
            }
            Ok(s)
        }
        None => Ok(quick::settings(&a.quick, &flags)?),
    }
}

fn serve_cmd(a: ServeArgs) -> anyhow::Result<()> {
    let mut settings = settings_for(&a)?;
    settings.repair_journal = a.repair_journal;
    let level = log_level(a.log_level.as_deref(), settings.log_level.as_deref())?;
    let reload_logs = init_logs(settings.log_format, &level);
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, shutdown.clone()).context("installing signal handlers")?;
    }
    // SIGHUP (systemctl reload, logrotate) re-reads the config instead of killing the server.
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .context("installing signal handlers")?;
    let daemon = Daemon::start(&settings, shutdown.clone())?;
    daemon.set_config_view(config_view(&a));
    match daemon.api_addr() {
        Some(api) => tracing::info!(control = %settings.control_socket.display(), %api, "ready"),
        None => tracing::info!(control = %settings.control_socket.display(), "ready"),
    }
    let deadline = a
        .run_for
        .map(|d| Instant::now() + Duration::from_millis(d.0.as_millis()));
    let mut last_sweep = Instant::now();
    let mut drops = serve::DropSummary::default();
    let mut last_summary = Instant::now();
    while !shutdown.load(Ordering::Relaxed) {
        if hup.swap(false, Ordering::Relaxed) {
            let _ = reload(&a, &daemon, &reload_logs);
        }
        while let Some(r) = daemon.next_request() {
            if let Some(bootstorm_daemon::api::MainRequest::Reload(reply)) = daemon.answer(r) {
                tracing::info!("reload asked through the API");
                let _ = reply.send(reload(&a, &daemon, &reload_logs));
            }
        }
        if last_summary.elapsed() >= serve::DropSummary::INTERVAL {
            drops.log(&daemon.dhcp().total_stats());
            last_summary = Instant::now();
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::info!("--for elapsed, stopping");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if last_sweep.elapsed() >= Duration::from_secs(10) {
            daemon.sweep();
            last_sweep = Instant::now();
        }
    }
    shutdown.store(true, Ordering::SeqCst);
    let per_worker = daemon.stop();
    let mut total = bootstorm_dhcp::Stats::default();
    for (i, s) in per_worker.iter().enumerate() {
        tracing::info!(
            worker = i,
            received = s.rx.iter().sum::<u64>(),
            sent = s.tx.iter().sum::<u64>(),
            "worker done"
        );
        total.add(s);
    }
    tracing::info!(stats = %control::stats_json(&total), "stopped");
    Ok(())
}

/// The config file as the API shows it (none in quick mode).
fn config_view(a: &ServeArgs) -> bootstorm_daemon::api::ConfigView {
    bootstorm_daemon::api::ConfigView {
        path: a.config.clone(),
        text: a
            .config
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok()),
    }
}

/// SIGHUP or the API: re-reads the config file, validates it, and applies what can change live;
/// a refused config changes nothing and says why (also in the answer).
fn reload(
    a: &ServeArgs,
    daemon: &Daemon,
    reload_logs: &LogReload,
) -> Result<serde_json::Value, String> {
    let running = daemon.dhcp();
    let refused = |e: anyhow::Error| {
        tracing::error!("config refused, the running config stays: {e:#}");
        Err(format!("config refused, the running config stays: {e:#}"))
    };
    let Some(path) = &a.config else {
        tracing::warn!("reload: quick mode has no config file to re-read; nothing changed");
        return Err("quick mode has no config file to re-read; nothing changed".into());
    };
    tracing::info!(config = %path.display(), "reload: re-reading the config");
    let new = match settings_for(a) {
        Ok(s) => s,
        Err(e) => return refused(e),
    };
    for w in &new.warnings {
        tracing::warn!("{w}");
    }
    match running.reload(&new) {
        Ok(r) => {
            match log_level(a.log_level.as_deref(), new.log_level.as_deref())
                .and_then(|l| reload_logs(&l).map(|()| l))
            {
                Ok(l) => tracing::info!(level = %l, "log level"),
                Err(e) => tracing::error!("log level unchanged: {e:#}"),
            }
            for name in &r.need_restart {
                tracing::warn!(
                    setting = name,
                    "changed in the config, but only a restart applies it; kept as it was"
                );
            }
            tracing::info!(
                records = r.records,
                bound = r.bound,
                conflicts = r.conflicts,
                subnets = new.dhcp.subnets.len(),
                reservations = new.dhcp.reservations.len(),
                boot_rules = new.dhcp.boot_rules.len(),
                "config reloaded"
            );
            daemon.set_config_view(config_view(a));
            Ok(serde_json::json!({
                "reloaded": true,
                "records": r.records,
                "bound": r.bound,
                "conflicts": r.conflicts,
                "need_restart": r.need_restart,
                "warnings": new.warnings,
            }))
        }
        Err(e) => refused(e),
    }
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let s = config::load(file)?;
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    let pools: usize = s.dhcp.subnets.iter().map(|s| s.ranges.len()).sum();
    out(&format!(
        "{}: OK ({} subnets, {} pools, {} reservations, {} boot rules, {} classes)\n",
        file.display(),
        s.dhcp.subnets.len(),
        pools,
        s.dhcp.reservations.len(),
        s.dhcp.boot_rules.len(),
        s.dhcp.classes.len()
    ))
}

fn socket_path(config: Option<PathBuf>, socket: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if socket.is_some() {
        // The config is not even read then.
        return Ok(socket_of(None, socket));
    }
    let settings = config.map(|c| config::load(&c)).transpose()?;
    Ok(socket_of(settings.as_ref(), None))
}

/// The control socket: `--socket`, else the config's, else the default.
fn socket_of(settings: Option<&Settings>, socket: Option<PathBuf>) -> PathBuf {
    match (settings, socket) {
        (_, Some(s)) => s,
        (Some(s), None) => s.control_socket.clone(),
        (None, None) => PathBuf::from(config::DEFAULT_CONTROL_SOCKET),
    }
}

fn leases_cmd(config: Option<PathBuf>, socket: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let path = socket_path(config, socket)?;
    let answer = control::request(&path, "leases")
        .with_context(|| format!("asking the server at {} (is it running?)", path.display()))?;
    if json {
        return out(&answer);
    }
    let leases: Vec<LeaseJson> =
        serde_json::from_str(&answer).context("reading the server's answer")?;
    use std::fmt::Write;
    let mut t = format!(
        "{:<16} {:<18} {:<9} {:>8}  {:<18} HOSTNAME\n",
        "IP", "MAC", "STATE", "EXPIRES", "SUBNET"
    );
    for l in leases {
        let _ = writeln!(
            t,
            "{:<16} {:<18} {:<9} {:>8}  {:<18} {}",
            l.ip,
            l.mac,
            l.state,
            l.expires_in,
            l.subnet,
            l.hostname.unwrap_or_default()
        );
    }
    out(&t)
}

/// The overlay directories `at` names, with their targets.
fn overlay_dirs(at: &OverlayWhere) -> anyhow::Result<Vec<(String, PathBuf)>> {
    match (&at.config, &at.dir) {
        (Some(_), Some(_)) => bail!("give --config or --dir, not both"),
        (None, None) => bail!("which overlays? give --config FILE or --dir DIR"),
        (None, Some(d)) => Ok(vec![(
            at.target.clone().unwrap_or_else(|| "-".into()),
            d.clone(),
        )]),
        (Some(c), None) => {
            let s = config::load(c)?;
            let dirs: Vec<(String, PathBuf)> = s
                .iscsi
                .iter()
                .flat_map(|i| &i.targets)
                .filter(|t| at.target.as_ref().is_none_or(|n| *n == t.name))
                .filter_map(|t| t.overlays.as_ref().map(|o| (t.name.clone(), o.dir.clone())))
                .collect();
            if dirs.is_empty() {
                bail!(
                    "{} has no diskless [[iscsi.target]] (with overlays = DIR){}",
                    c.display(),
                    at.target
                        .as_ref()
                        .map(|t| format!(" named {t}"))
                        .unwrap_or_default()
                );
            }
            Ok(dirs)
        }
    }
}

fn overlay_cmd(action: OverlayAction) -> anyhow::Result<()> {
    use bootstorm_daemon::overlay::{self, Action};
    let (key, at, what) = match action {
        OverlayAction::List { at, json } => {
            let mut rows = Vec::new();
            for (target, dir) in overlay_dirs(&at)? {
                let listed =
                    overlay::list(&dir).with_context(|| format!("reading {}", dir.display()))?;
                rows.extend(listed.into_iter().map(|l| (target.clone(), l)));
            }
            if json {
                let v: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(t, l)| {
                        let mut v = serde_json::to_value(l).unwrap_or_default();
                        v["target"] = t.clone().into();
                        v
                    })
                    .collect();
                return out(&format!("{}\n", serde_json::Value::from(v)));
            }
            use std::fmt::Write;
            let mut t = format!(
                "{:<40} {:<34} {:>10} {:>10}  {:<20} {:<20} STATE\n",
                "TARGET", "MACHINE", "WRITTEN", "ON DISK", "CREATED", "WRITTEN AT"
            );
            for (target, l) in rows {
                let state = match (&l.error, l.in_use) {
                    (Some(e), _) => format!("damaged: {e}"),
                    (None, true) => "in use".into(),
                    (None, false) => "idle".into(),
                };
                let _ = writeln!(
                    t,
                    "{:<40} {:<34} {:>10} {:>10}  {:<20} {:<20} {state}",
                    target,
                    l.key,
                    human_bytes(l.written),
                    human_bytes(l.allocated),
                    utc(l.created),
                    utc(l.modified),
                );
            }
            return out(&t);
        }
        OverlayAction::Reset { key, at } => (key, at, Action::Reset),
        OverlayAction::Delete { key, at } => (key, at, Action::Delete),
    };
    let dirs = overlay_dirs(&at)?;
    if dirs.len() > 1 {
        bail!(
            "several diskless targets ({}): name one with --target",
            dirs.iter()
                .map(|d| d.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (target, dir) = &dirs[0];
    overlay::act(dir, &key, what).map_err(|e| match e {
        overlay::OpenError::Busy { .. } => anyhow::anyhow!(
            "{e}: a session of {key} is logged in; log it out (or stop the machine) first"
        ),
        e => anyhow::anyhow!(e),
    })?;
    let verb = if what == Action::Reset {
        "reset"
    } else {
        "deleted"
    };
    let of = if target == "-" {
        String::new()
    } else {
        format!(" of target {target}")
    };
    out(&format!("{verb} the overlay of {key}{of}\n"))
}

/// `1.5 GiB`.
#[allow(clippy::too_many_arguments)]
fn sessions_cmd(
    config: Option<PathBuf>,
    socket: Option<PathBuf>,
    mac: Option<String>,
    phase: Option<String>,
    failed: bool,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let path = socket_path(config, socket)?;
    let mut ask = String::from("sessions");
    if let Some(m) = &mac {
        control::parse_mac(m).map_err(|e| anyhow::anyhow!("--mac: {e}"))?;
        ask += &format!(" mac={m}");
    }
    if let Some(p) = &phase {
        ask += &format!(" phase={p}");
    }
    if failed {
        ask += " failed";
    }
    ask += &format!(" limit={limit}");
    let answer = control::request(&path, &ask)
        .with_context(|| format!("asking the server at {} (is it running?)", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&answer).context("reading the server's answer")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("{e}");
    }
    if json {
        return out(&answer);
    }
    let s = |v: &serde_json::Value, k: &str| {
        v.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string()
    };
    let ms = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    use std::fmt::Write;
    let mut t = String::new();
    if mac.is_some() {
        let _ = writeln!(t, "MAC      {}", s(&v, "mac"));
        let _ = writeln!(t, "ADDRESS  {}", s(&v, "address"));
        let _ = writeln!(t, "IQN      {}", s(&v, "iqn"));
        let _ = writeln!(
            t,
            "PHASE    {}{}",
            s(&v, "phase"),
            if v["ended"] == true { " (ended)" } else { "" }
        );
        let _ = writeln!(t, "STARTED  {}", utc(ms(&v, "started_ms") / 1000));
        let _ = writeln!(t, "ELAPSED  {}", human_ms(ms(&v, "elapsed_ms")));
        if let Some(f) = v["failure"].as_str() {
            let _ = writeln!(t, "FAILURE  {f}");
        }
        let _ = writeln!(t, "\n{:>9}  {:<14} DETAIL", "AFTER", "STEP");
        for st in v["timeline"].as_array().into_iter().flatten() {
            let detail: Vec<String> = st
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !matches!(k.as_str(), "step" | "at_ms" | "after_ms"))
                .map(|(k, x)| format!("{k}={}", x.as_str().map_or(x.to_string(), str::to_string)))
                .collect();
            let _ = writeln!(
                t,
                "{:>9}  {:<14} {}",
                human_ms(ms(st, "after_ms")),
                s(st, "step"),
                detail.join(" ")
            );
        }
        return out(&t);
    }
    let _ = writeln!(
        t,
        "{:<18} {:<16} {:<7} {:>9} {:>6}  FAILURE",
        "MAC", "ADDRESS", "PHASE", "ELAPSED", "ROUNDS"
    );
    for x in v["sessions"].as_array().into_iter().flatten() {
        let _ = writeln!(
            t,
            "{:<18} {:<16} {:<7} {:>9} {:>6}  {}",
            s(x, "mac"),
            s(x, "address"),
            s(x, "phase"),
            human_ms(ms(x, "elapsed_ms")),
            ms(x, "rounds"),
            x["failure"].as_str().unwrap_or("")
        );
    }
    let shown = v["sessions"].as_array().map_or(0, Vec::len);
    let total = ms(&v, "total");
    if total as usize > shown {
        let _ = writeln!(t, "({shown} of {total}; --limit for more)");
    }
    out(&t)
}

/// Milliseconds as a person writes them: `850ms`, `4.2s`, `59m43s`, `3h05m`.
fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Seconds since the epoch as `2026-12-02 15:04:05` (UTC).
fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn export_cmd(
    config: Option<PathBuf>,
    socket: Option<PathBuf>,
    format: ExportFormat,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let loaded = config
        .map(|c| config::load(&c).map(|s| (s, c)))
        .transpose()?;
    let explicit_socket = socket.is_some();
    let sock = socket_of(loaded.as_ref().map(|(s, _)| s), socket);
    let leases: Vec<LeaseJson> = match control::request(&sock, "leases") {
        Ok(answer) => serde_json::from_str(&answer).context("reading the server's answer")?,
        // No server answers: read a stopped server's lease directory, if we know it.
        Err(e) => match &loaded {
            Some((s, path)) if !explicit_socket => leaseio::export_offline(s, path)
                .with_context(|| format!("no server answers at {} ({e}), and", sock.display()))?,
            _ => {
                return Err(anyhow::Error::from(e).context(format!(
                    "asking the server at {} (is it running? --config reads a stopped server's lease directory)",
                    sock.display()
                )));
            }
        },
    };
    let text = match format {
        ExportFormat::Json => serde_json::to_string_pretty(&leases)? + "\n",
        ExportFormat::Csv => leasefile::to_csv(&leases)?,
    };
    match output {
        Some(p) => std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?,
        None => out(&text)?,
    }
    Ok(())
}

fn import_cmd(
    config: &std::path::Path,
    format: leasefile::Format,
    files: &[PathBuf],
    dry_run: bool,
) -> anyhow::Result<()> {
    let settings = config::load(config)?;
    let r = leaseio::import(&settings, config, format, files, dry_run)?;
    for (at, why) in &r.skipped {
        eprintln!("skipped {at}: {why}");
    }
    out(&format!(
        "{} {} leases ({} bound, {} remembered for their clients), skipped {}\n",
        if dry_run { "would import" } else { "imported" },
        r.imported,
        r.bound,
        r.imported - r.bound,
        r.skipped.len()
    ))
}
