//! `bootstorm lab`: the newcomer's demo. Builds a two-namespace lab on this machine (a server
//! namespace and a client namespace joined by a veth pair, addresses from 198.18.0.0/15), starts
//! this bootstorm in the server namespace with a sample boot file and iPXE script, runs a storm
//! of simulated machines with the bundled load generator from the client namespace, prints the
//! report, and removes everything it created: also on Ctrl-C, on an error, or a panic (a guard
//! undoes each step it made, by exact name).
//!
//! The namespaces and the link are made with iproute2 (`ip`), as an operator would by hand; the
//! load generator runs in this process, on a thread moved into the client namespace (`setns`).
//! A program of its own (`bootstorm lab` execs it), so the production `bootstorm` binary does
//! not depend on the load generator.

use anyhow::{Context, bail};
use bootstorm_loadgen::body::Expect;
use bootstorm_loadgen::engine::{self, Arrival, Config as LgConfig, Progress, Ticker};
use bootstorm_loadgen::profile::Profile;
use bootstorm_loadgen::report::Report;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The `bootstorm` to serve with: the one that started this lab (`BOOTSTORM_BIN`), else the one
/// next to this binary.
fn bootstorm_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("BOOTSTORM_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().context("finding this binary")?;
    let b = me.with_file_name("bootstorm");
    if !b.exists() {
        bail!("no bootstorm binary next to {}", me.display());
    }
    Ok(b)
}

/// What the lab runs.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Machines in the storm.
    pub clients: usize,
    /// Their profile (see `bootstorm-loadgen --profile`).
    pub profile: String,
    /// When they power on.
    pub arrival: Arrival,
    /// Size of the sample boot file.
    pub boot_file_size: usize,
    /// Chainload: after the boot file, iPXE's DHCP and its script over HTTP.
    pub chainload: bool,
    /// Bound on the storm.
    pub limit: Duration,
    /// Write the HTML report here.
    pub html: Option<PathBuf>,
    /// Print JSON rather than the table.
    pub json: bool,
    /// Server worker threads.
    pub workers: usize,
}

/// Everything the lab made, undone in reverse order when dropped.
struct Lab {
    server_ns: String,
    client_ns: String,
    made_server_ns: bool,
    made_client_ns: bool,
    dir: Option<PathBuf>,
    server: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            // SIGTERM first: the server stops cleanly; SIGKILL if it has not within 5 s.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting a namespace removes the veth end in it, and with it the pair.
        if self.made_client_ns {
            let _ = ip(&["netns", "del", &self.client_ns]);
        }
        if self.made_server_ns {
            let _ = ip(&["netns", "del", &self.server_ns]);
        }
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const RELAYS: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3)];
const HTTP_PORT: u16 = 8080;

/// The sample boot file: deterministic bytes, so every run checks the same sha256.
fn sample_boot_file(size: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn config_text(dir: &Path, sif: &str, workers: usize) -> String {
    format!(
        r#"# Written by `bootstorm lab`.
[server]
interfaces = ["{sif}"]
workers = {workers}
control_socket = "{dir}/control.sock"

[[subnet]]
network = "198.18.0.0/16"
server_id = "{SERVER_IP}"
pools = ["198.18.1.0-198.18.255.254"]
lease_time = "1h"

[[boot]]
name = "ipxe-script"
match = {{ user_class = "iPXE" }}
file = "http://{SERVER_IP}:{HTTP_PORT}/boot.ipxe"

[[boot]]
name = "uefi-http"
match = {{ arch = ["efi-x64-http"] }}
file = "http://{SERVER_IP}:{HTTP_PORT}/ipxe.efi"

[[boot]]
name = "firmware"
file = "ipxe.efi"

[tftp]
root = "{dir}/root"

[http]
port = {HTTP_PORT}
# Every simulated machine fetches from the load generator's one address.
max_connections_per_client = 1000000
"#,
        dir = dir.display()
    )
}

/// Runs the lab. `stop` is set by Ctrl-C (SIGINT) or SIGTERM: the storm ends, everything is
/// removed. Returns true if every machine booted.
pub fn run(opts: &LabOptions, stop: Arc<AtomicBool>) -> anyhow::Result<bool> {
    if !nix::unistd::geteuid().is_root() {
        bail!("bootstorm lab makes network namespaces and a veth pair: run it as root");
    }
    let profile = Profile::named(&opts.profile).with_context(|| {
        format!(
            "--profile {}: one of {}",
            opts.profile,
            Profile::NAMES.join(", ")
        )
    })?;
    // A machine that is iPXE already has nothing to chainload.
    let chainload = opts.chainload && profile.user_class.is_none();
    let tag = std::process::id();
    let mut lab = Lab {
        server_ns: format!("bslab{tag}S"),
        client_ns: format!("bslab{tag}C"),
        made_server_ns: false,
        made_client_ns: false,
        dir: None,
        server: None,
    };
    let (sif, cif) = (format!("bsl{tag}s"), format!("bsl{tag}c"));
    let dir = std::env::temp_dir().join(format!("bootstorm-lab-{tag}"));
    std::fs::create_dir_all(dir.join("root"))
        .with_context(|| format!("creating {}", dir.display()))?;
    lab.dir = Some(dir.clone());
    let check = |what: &str| -> anyhow::Result<()> {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted while {what}");
        }
        Ok(())
    };

    eprintln!(
        "lab: namespaces {} (server, {SERVER_IP}) and {} (clients, {} and {}), veth {sif}/{cif}",
        lab.server_ns, lab.client_ns, RELAYS[0], RELAYS[1]
    );
    ip(&["netns", "add", &lab.server_ns])?;
    lab.made_server_ns = true;
    ip(&["netns", "add", &lab.client_ns])?;
    lab.made_client_ns = true;
    ip(&[
        "link",
        "add",
        &sif,
        "netns",
        &lab.server_ns,
        "type",
        "veth",
        "peer",
        "name",
        &cif,
        "netns",
        &lab.client_ns,
    ])?;
    let (s, c) = (lab.server_ns.clone(), lab.client_ns.clone());
    ip(&["-n", &s, "addr", "add", "198.18.0.1/16", "dev", &sif])?;
    for r in RELAYS {
        ip(&["-n", &c, "addr", "add", &format!("{r}/16"), "dev", &cif])?;
    }
    for (ns, dev) in [(&s, &sif), (&c, &cif)] {
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
    }
    check("building the lab")?;

    let boot = sample_boot_file(opts.boot_file_size);
    std::fs::write(dir.join("root/ipxe.efi"), &boot)?;
    std::fs::write(
        dir.join("root/boot.ipxe"),
        format!(
            "#!ipxe\n# The storm's iPXE script (a real one would boot a kernel).\necho booted by bootstorm lab\nchain http://{SERVER_IP}:{HTTP_PORT}/ipxe.efi\n"
        ),
    )?;
    let cfg_path = dir.join("bootstorm.toml");
    std::fs::write(&cfg_path, config_text(&dir, &sif, opts.workers))?;
    let log_path = dir.join("bootstorm.log");
    let log = std::fs::File::create(&log_path)?;
    let exe = bootstorm_binary()?;
    let mut server = Command::new("ip");
    server
        .args(["netns", "exec", &s])
        .arg(&exe)
        .arg("serve")
        .arg("--config")
        .arg(&cfg_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
        // which is async-signal-safe; it allocates nothing. The server then gets SIGTERM if
        // this process dies without its clean-up (SIGKILL), instead of running on unowned.
        unsafe {
            server.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
    }
    lab.server = Some(server.spawn().context("starting the server")?);
    // Ready once its control socket answers (bounded: 10 s).
    let sock = dir.join("control.sock");
    let t = Instant::now();
    loop {
        if bootstorm_daemon::control::request(&sock, "stats").is_ok() {
            break;
        }
        if let Some(Ok(Some(st))) = lab.server.as_mut().map(Child::try_wait) {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("the server exited ({st}):\n{log}");
        }
        if t.elapsed() > Duration::from_secs(10) {
            bail!(
                "the server did not answer on {} within 10 s",
                sock.display()
            );
        }
        check("starting the server")?;
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "lab: bootstorm serving DHCP, TFTP and HTTP (:{HTTP_PORT}) from {}; storm of {} {} machines{}",
        dir.join("root").display(),
        opts.clients,
        profile.name,
        if chainload {
            ", each chainloading iPXE"
        } else {
            ""
        }
    );

    let sha: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(&boot).into()
    };
    let lg = LgConfig {
        server: SERVER_IP,
        server_port: 67,
        relays: RELAYS.to_vec(),
        interface: None,
        clients: opts.clients,
        arrival: opts.arrival,
        profile,
        expect: Expect {
            size: Some(boot.len() as u64),
            sha256: Some(sha),
        },
        mac_base: [0x52, 0x54, 0x00, 0x00, 0x00, 0x00],
        limit: opts.limit,
        tftp_port: 69,
        tftp_only: None,
        http_port: HTTP_PORT,
        chainload,
        boot_retries: 0,
        pin: Vec::new(),
        xdp: false,
        iscsi: None,
        boot_retry_delay: Duration::from_secs(1),
    };
    // Ctrl-C ends the storm too: the signal handler's flag is the run's stop flag.
    let progress = Arc::new(Progress::stopped_by(stop.clone()));
    let netns = std::fs::File::open(format!("/run/netns/{c}"))
        .with_context(|| format!("opening namespace {c}"))?;
    let all = {
        let _ticker = Ticker::start(progress.clone(), opts.clients, "lab: ");
        std::thread::scope(|sc| {
            sc.spawn(|| {
                // This thread, and the load generator's workers it starts, live in the client
                // namespace from here on; the rest of the process stays where it was.
                nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .context("entering the client namespace")?;
                engine::run(&lg, &progress)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the load generator panicked"))?
        })?
    };
    let report = Report::new(
        opts.clients,
        &all,
        serde_json::json!({ "lab": true, "profile": lg.profile, "chainload": chainload,
            "arrival": lg.arrival, "boot_file_bytes": boot.len() }),
    );
    report.output(opts.html.as_deref(), opts.json)?;
    if let Ok(stats) = bootstorm_daemon::control::request(&sock, "stats")
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&stats)
        && !opts.json
    {
        println!(
            "server: {} TFTP transfers done, {} failed",
            v["tftp"]["completed"], v["tftp"]["failed"]
        );
    }
    if stop.load(Ordering::Relaxed) {
        eprintln!("lab: interrupted; removing the lab");
    }
    drop(lab);
    eprintln!(
        "lab: removed the namespaces, the veth pair and {}",
        dir.display()
    );
    Ok(report.all_booted())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_it_writes_is_valid() {
        let dir = std::env::temp_dir().join(format!("bootstorm-lab-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("root")).unwrap();
        let path = dir.join("b.toml");
        std::fs::write(&path, config_text(&dir, "veth0", 2)).unwrap();
        let r = bootstorm_daemon::config::load(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        let s = r.unwrap();
        assert!(s.http.is_some() && s.tftp.is_some());
    }

    #[test]
    fn the_sample_file_is_the_same_every_time() {
        assert_eq!(sample_boot_file(4096), sample_boot_file(4096));
        assert_eq!(sample_boot_file(10).len(), 10);
        assert_ne!(sample_boot_file(64)[..32], sample_boot_file(64)[32..]);
    }
}
