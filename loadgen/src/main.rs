//! The `bootstorm-loadgen` command line.
#![forbid(unsafe_code)]

use anyhow::Context;
use bootstorm_loadgen::engine::{self, Arrival, Config, Progress, Ticker};
use bootstorm_loadgen::profile::{Fetch, Profile};
use bootstorm_loadgen::report::Report;
use bootstorm_loadgen::tftp::Expect;
use clap::Parser;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Simulates a boot storm: N machines do DHCP (as relayed by the given relay addresses) and
/// fetch the boot file their ACK names over TFTP or HTTP (and with --chainload do it all again
/// as iPXE); prints per-phase latency.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The DHCP server.
    #[arg(long)]
    server: Ipv4Addr,
    /// Relay addresses (giaddr), comma-separated: one worker thread each, bound to port 67 on
    /// that address (it must be configured on an interface here).
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "interface",
        conflicts_with = "interface"
    )]
    relay: Vec<Ipv4Addr>,
    /// L2 mode: the machines are on this interface, as firmware is: DHCP broadcast from
    /// 0.0.0.0:68 with their own MACs, TFTP from their leased addresses, ARP answered for them
    /// (raw frames; needs CAP_NET_RAW; one worker; no HTTP).
    #[arg(long)]
    interface: Option<String>,
    /// With --interface: the machines' frames through AF_XDP sockets (an XDP program on the
    /// interface steers DHCP port 68 and the machines' TFTP ports 49152-65151 to them), one
    /// worker per receive queue, so the load generator can offer more than a server answers.
    /// Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW); the interface should carry nothing
    /// else on those ports. Workers hand each other the replies for their machines.
    #[arg(long, requires = "interface")]
    xdp: bool,
    /// Machines to simulate.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// When they power on: storm, ramp:SECONDS, poisson:PER_SECOND.
    #[arg(long, default_value = "storm")]
    arrival: Arrival,
    /// Machine profile: pxe-bios, uefi-x64, uefi-arm64, uefi-http, ipxe.
    #[arg(long, default_value = "uefi-x64")]
    profile: String,
    /// How the boot file is fetched: tftp (a URL still goes over HTTP, as iPXE does), http (a
    /// plain name from the next server's --http-port) or none (DHCP only). Default: the
    /// profile's (http for uefi-http, else tftp).
    #[arg(long)]
    fetch: Option<String>,
    /// After the boot file, DHCP again as iPXE (user class "iPXE") and fetch what that ACK
    /// names: the second round of a chainload.
    #[arg(long)]
    chainload: bool,
    /// A machine whose boot fails starts over, up to this many times (firmware with boot retry
    /// on, as datacenter servers usually are); each failure is reported under "started over".
    #[arg(long, default_value_t = 0)]
    boot_retries: u32,
    /// Pause before a machine starts over, in seconds.
    #[arg(long, default_value_t = 1.0)]
    boot_retry_delay: f64,
    /// Pin worker threads to these CPUs, comma-separated (worker w to the w-th, round robin).
    #[arg(long, value_delimiter = ',')]
    pin: Vec<usize>,
    /// HTTP port for boot files that are names rather than URLs (--fetch http).
    #[arg(long, default_value_t = 80)]
    http_port: u16,
    /// TFTP blksize to ask for (0: do not ask).
    #[arg(long)]
    blksize: Option<u16>,
    /// TFTP windowsize to ask for (0: do not ask).
    #[arg(long)]
    windowsize: Option<u16>,
    /// The boot file must be this many bytes.
    #[arg(long)]
    expect_size: Option<u64>,
    /// The boot file must have this sha256 (hex).
    #[arg(long)]
    expect_sha256: Option<String>,
    /// MAC of the first machine (the others count up from it).
    #[arg(long, default_value = "52:54:00:00:00:00")]
    mac_base: String,
    /// Stop after this many seconds, whatever is left (counted as failed).
    #[arg(long, default_value_t = 120)]
    limit: u64,
    /// DHCP server port.
    #[arg(long, default_value_t = 67)]
    server_port: u16,
    /// TFTP port of the boot server.
    #[arg(long, default_value_t = 69)]
    tftp_port: u16,
    /// Skip DHCP: every machine fetches this file over TFTP from --server straight away (to
    /// measure a TFTP server alone).
    #[arg(long)]
    tftp_only: Option<String>,
    /// The waits before each DHCP retransmission, in milliseconds, comma-separated, `NxMS` for
    /// N waits of MS (default: the profile's, 4, 8, 16, 32 s for PXE ROMs). `2000x1` makes
    /// every unanswered machine a flood of 1,000 retransmissions a second.
    #[arg(long)]
    retransmit: Option<String>,
    /// Diskless: after its (last) boot file each machine logs in to its iSCSI disk (the root
    /// path its lease names, `iscsi:SERVER::PORT:LUN:IQN`, else --iscsi-root-path) as iPXE's
    /// `sanboot` does, under the initiator IQN of option 203 (else one of its MAC), and reads
    /// the first MIB mebibytes of it (0: login and logout only).
    #[arg(long, value_name = "MIB")]
    iscsi_read: Option<u64>,
    /// With --iscsi-read: each machine also writes this many KiB of a pattern of its own at
    /// 1 MiB into its disk (its overlay), reads it back and checks it.
    #[arg(long, value_name = "KIB", default_value_t = 0, requires = "iscsi_read")]
    iscsi_write: u64,
    /// With --iscsi-read: the disk when the lease names none (an RFC 4173 root path).
    #[arg(long, requires = "iscsi_read")]
    iscsi_root_path: Option<String>,
    /// Use --iscsi-root-path even when the lease names a disk.
    #[arg(long, requires = "iscsi_root_path")]
    iscsi_override: bool,
    /// Bytes per READ (10), in KiB (default 128).
    #[arg(long, default_value_t = 128, requires = "iscsi_read")]
    iscsi_chunk: u32,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write an HTML report (latency distributions, completions over time) to this file.
    #[arg(long)]
    html: Option<std::path::PathBuf>,
}

fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("--mac-base {s}: not a MAC"))?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("--mac-base {s}: not 6 bytes"))
}

/// `--retransmit`: `MS` or `NxMS` items, comma-separated.
fn parse_retransmit(spec: &str) -> anyhow::Result<Vec<std::time::Duration>> {
    let mut v = Vec::new();
    for item in spec.split(',').map(str::trim) {
        let (n, ms) = match item.split_once('x') {
            Some((n, ms)) => (n.parse::<usize>()?, ms),
            None => (1, item),
        };
        let ms: u64 = ms
            .parse()
            .with_context(|| format!("--retransmit {item}: milliseconds expected"))?;
        anyhow::ensure!(ms > 0 && n <= 100_000, "--retransmit {item}: out of range");
        v.extend(std::iter::repeat_n(std::time::Duration::from_millis(ms), n));
    }
    anyhow::ensure!(!v.is_empty(), "--retransmit: no waits");
    Ok(v)
}

fn parse_hex32(s: &str) -> anyhow::Result<[u8; 32]> {
    anyhow::ensure!(s.len() == 64, "--expect-sha256: 64 hex digits expected");
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).context("--expect-sha256: not hex")?;
    }
    Ok(out)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bootstorm-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs; true if every machine booted.
fn run(cli: Cli) -> anyhow::Result<bool> {
    let mut profile = Profile::named(&cli.profile).with_context(|| {
        format!(
            "--profile {}: one of {}",
            cli.profile,
            Profile::NAMES.join(", ")
        )
    })?;
    if let Some(f) = &cli.fetch {
        profile.fetch = match f.as_str() {
            "tftp" => Fetch::Tftp,
            "http" => Fetch::Http,
            "none" => Fetch::None,
            f => anyhow::bail!("--fetch {f}: tftp, http or none"),
        };
    }
    anyhow::ensure!(
        !(cli.chainload && profile.fetch == Fetch::None),
        "--chainload needs a first boot file to chainload: not with --fetch none"
    );
    anyhow::ensure!(
        !(cli.chainload && cli.tftp_only.is_some()),
        "--chainload follows DHCP: not with --tftp-only"
    );
    if let Some(spec) = &cli.retransmit {
        profile.retransmit = parse_retransmit(spec)?;
    }
    if let Some(b) = cli.blksize {
        profile.tftp.blksize = (b != 0).then_some(b);
    }
    if let Some(w) = cli.windowsize {
        profile.tftp.windowsize = (w != 0).then_some(w);
    }
    let iscsi = match cli.iscsi_read {
        None => None,
        Some(mib) => {
            let disk = cli
                .iscsi_root_path
                .as_deref()
                .map(|rp| {
                    bootstorm_loadgen::iscsi::parse_root_path(rp).with_context(|| {
                        format!("--iscsi-root-path {rp}: iscsi:ADDR:PROTO:PORT:LUN:IQN")
                    })
                })
                .transpose()?;
            anyhow::ensure!(
                (1..=16384).contains(&cli.iscsi_chunk) && cli.iscsi_write <= 16384,
                "--iscsi-chunk: 1 to 16384 KiB; --iscsi-write: at most 16384 KiB"
            );
            Some(engine::IscsiPhase {
                plan: bootstorm_loadgen::iscsi::Plan {
                    read: mib << 20,
                    write: cli.iscsi_write << 10,
                    write_at: 1 << 20,
                    chunk: cli.iscsi_chunk << 10,
                    timeout_us: 10_000_000,
                },
                disk,
                override_root_path: cli.iscsi_override,
            })
        }
    };
    let cfg = Config {
        iscsi,
        server: cli.server,
        server_port: cli.server_port,
        relays: cli.relay.clone(),
        interface: cli.interface.clone(),
        clients: cli.clients,
        arrival: cli.arrival,
        profile,
        expect: Expect {
            size: cli.expect_size,
            sha256: cli.expect_sha256.as_deref().map(parse_hex32).transpose()?,
        },
        mac_base: parse_mac(&cli.mac_base)?,
        limit: Duration::from_secs(cli.limit),
        tftp_port: cli.tftp_port,
        tftp_only: cli.tftp_only.clone(),
        http_port: cli.http_port,
        chainload: cli.chainload,
        boot_retries: cli.boot_retries,
        pin: cli.pin.clone(),
        xdp: cli.xdp,
        boot_retry_delay: Duration::try_from_secs_f64(cli.boot_retry_delay)
            .ok()
            .filter(|d| *d <= Duration::from_secs(3600))
            .context("--boot-retry-delay: seconds, 0 to 3600")?,
    };
    // A socket per download: a storm of 10,000 needs more descriptors than the usual soft
    // limit of 1,024. Raised to the hard limit; if that is lower, downloads past it fail with
    // "tftp: socket" and say so.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("bootstorm-loadgen: cannot raise the open-file limit: {e}");
    }
    let progress = Arc::new(Progress::default());
    let all = {
        let _ticker = Ticker::start(progress.clone(), cfg.clients, "");
        engine::run(&cfg, &progress)?
    };
    let settings = serde_json::json!({
        "server": cfg.server.to_string(),
        "relays": cfg.relays.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "interface": cfg.interface,
        "xdp": cfg.xdp,
        "arrival": cfg.arrival,
        "profile": cfg.profile,
        "chainload": cfg.chainload.then(|| cfg.profile.ipxe_after()),
        "boot_retries": cfg.boot_retries,
        "boot_retry_delay_s": cfg.boot_retry_delay.as_secs_f64(),
        "clients": cfg.clients,
        "iscsi": cfg.iscsi.as_ref().map(|i| serde_json::json!({
            "read_bytes": i.plan.read, "write_bytes": i.plan.write,
            "chunk_bytes": i.plan.chunk,
            "root_path": cli.iscsi_root_path, "override": i.override_root_path,
        })),
    });
    let report = Report::new(cfg.clients, &all, settings);
    report.output(cli.html.as_deref(), cli.json)?;
    Ok(report.all_booted())
}
