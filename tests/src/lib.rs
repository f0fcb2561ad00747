//! Helpers for bootstorm's end-to-end tests, following ../shared/TESTING.md: traffic only over
//! loopback or between namespaces the test creates, addresses from 198.18.0.0/15, everything a
//! test creates named with a unique prefix and removed by exact name when it ends (a guard's
//! `Drop`, so also on failure), processes stopped by PID, every wait bounded.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// True if this process runs as root (namespaces, veths and captures need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// For privileged tests: true if root; otherwise prints why the test is skipped. When CI=true
/// and we are root, a skip would hide a failure, so there is no skip path as root.
/// One load at a time: a test that measures under load (perfdhcp's drop ratio, wake-ups per
/// lease) or makes one (storms, a thousand transfers) holds this while it runs, so two of them
/// never share the machine's two cores. Tests that only exchange a few datagrams run beside
/// them. A test that panicked leaves the lock usable.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn need_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    eprintln!("SKIP {test}: needs root for network namespaces (run as root, as CI does)");
    false
}

/// The path of `tool`, or a panic that says how to install it: as root a missing peer is a
/// failure, never a skip.
pub fn tool(tool: &str, package: &str) -> PathBuf {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("{tool} is missing: apt-get install -y {package} (scripts/test.sh installs every peer)");
}

/// A binary of this workspace, built next to the test binary.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/<name>
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .expect("target dir");
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        p.display()
    );
    p
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call: `bs<pid><n>`, short enough for interface names.
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("bs{}{}{}", std::process::id() % 100_000, tag, n)
}

/// The number after `key` on the line of a `/proc` file that starts with it (`syscw:` of
/// /proc/PID/io, `voluntary_ctxt_switches:` of a task's status); `None` if the file or the line
/// is missing.
pub fn proc_number(path: impl AsRef<Path>, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .parse()
        .ok()
}

/// Runs a command to completion with a time limit; panics with its output if it fails.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let out = output_within(cmd, limit);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command with a time limit and returns its output whatever the status. A command still
/// running at the limit is killed (by its PID).
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => {
            let _ = waiter.join();
            r.unwrap_or_else(|e| panic!("{e}"))
        }
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            let _ = waiter.join();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

/// Polls `f` every 50 ms until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("t"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Default for TempDir {
    fn default() -> TempDir {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process stopped by PID when dropped: SIGTERM, then SIGKILL after 3 s.
pub struct Proc {
    child: Option<Child>,
    name: String,
}

impl Proc {
    /// Spawns `cmd`.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Proc {
            child: Some(child),
            name: name.to_string(),
        }
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal by PID.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Waits up to `limit` for it to exit; returns its exit status if it did.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    return Some(st);
                }
            } else {
                return None;
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it gracefully (SIGTERM) and waits; SIGKILL if it does not go within 3 s.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_ref()?;
        self.signal("TERM");
        if let Some(st) = self.wait(Duration::from_secs(3)) {
            return Some(st);
        }
        eprintln!(
            "{} (pid {}) ignored SIGTERM; killing",
            self.name,
            self.pid()
        );
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            return c.wait().ok();
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port the kernel has just given out and taken back (UDP or TCP), for a server
/// started with a fixed port; bound and released at once, so it is free unless another
/// process takes it in between (ephemeral ports are handed out in turn, so that is rare).
pub fn free_port(tcp: bool) -> u16 {
    if tcp {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    } else {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .unwrap()
    }
}

/// Fetches `name` from a TFTP server on 127.0.0.1:`port` with tftp-hpa (binary mode) into
/// `out`; asserts that it succeeds and returns the bytes.
pub fn tftp_get(port: u16, name: &str, out: &Path) -> Vec<u8> {
    let o = output_within(
        Command::new(tool("tftp", "tftp-hpa"))
            .args([
                "127.0.0.1",
                &port.to_string(),
                "-m",
                "binary",
                "-c",
                "get",
                name,
            ])
            .arg(out),
        Duration::from_secs(30),
    );
    assert!(
        o.status.success(),
        "tftp get {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(out).unwrap()
}

/// `curl -sS -f URL`; asserts that it succeeds and returns the body.
pub fn curl_get(url: &str) -> Vec<u8> {
    let o = output_within(
        Command::new(tool("curl", "curl")).args(["-sS", "-f", url]),
        Duration::from_secs(30),
    );
    assert!(
        o.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Spawns `cmd` (a `bootstorm serve`) with its stderr into `log`, and waits until it logs
/// "ready" (bounded: 10 s); panics with the log if it does not.
pub fn spawn_ready(cmd: &mut Command, log: &Path) -> Proc {
    cmd.stderr(std::fs::File::create(log).unwrap());
    let p = Proc::spawn("bootstorm", cmd);
    let text = || std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || text().contains("ready")),
        "bootstorm did not start: {}",
        text()
    );
    p
}

/// Two namespaces joined by a veth pair, as in TESTING.md: the server side has 198.18.0.1/16.
/// Removed (both namespaces, which removes the veth) on drop.
pub struct Lab {
    /// Server namespace.
    pub server_ns: String,
    /// Client namespace.
    pub client_ns: String,
    /// Server-side interface.
    pub server_if: String,
    /// Client-side interface.
    pub client_if: String,
}

/// The server's address in every lab.
pub const SERVER_IP: &str = "198.18.0.1";

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args), Duration::from_secs(10));
}

impl Lab {
    /// Creates the namespaces, the veth pair and the addresses.
    pub fn new() -> Lab {
        Lab::with_queues(1)
    }

    /// [`Lab::new`] with `queues` receive and transmit queues on each end of the veth (a
    /// multi-queue NIC, for the XDP fast path: one AF_XDP socket and worker per queue).
    pub fn with_queues(queues: u32) -> Lab {
        let base = unique("");
        let lab = Lab {
            server_ns: format!("{base}S"),
            client_ns: format!("{base}C"),
            server_if: format!("{base}s"),
            client_if: format!("{base}c"),
        };
        assert!(lab.server_if.len() <= 15);
        ip(&["netns", "add", &lab.server_ns]);
        // From here on, Drop cleans up whatever exists.
        ip(&["netns", "add", &lab.client_ns]);
        let q = queues.to_string();
        let qs = ["numrxqueues", q.as_str(), "numtxqueues", q.as_str()];
        let mut args = vec!["link", "add", &lab.server_if, "netns", &lab.server_ns];
        args.extend(qs);
        args.extend([
            "type",
            "veth",
            "peer",
            "name",
            &lab.client_if,
            "netns",
            &lab.client_ns,
        ]);
        args.extend(qs);
        ip(&args);
        ip(&[
            "-n",
            &lab.server_ns,
            "addr",
            "add",
            &format!("{SERVER_IP}/16"),
            "dev",
            &lab.server_if,
        ]);
        for (ns, dev) in [
            (&lab.server_ns, &lab.server_if),
            (&lab.client_ns, &lab.client_if),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    /// Gives the client side an address (e.g. "198.18.0.2/16"), for peers that need one, such as
    /// perfdhcp, which sends as a relay from it.
    pub fn add_client_address(&self, cidr: &str) {
        ip(&[
            "-n",
            &self.client_ns,
            "addr",
            "add",
            cidr,
            "dev",
            &self.client_if,
        ]);
    }

    /// Drops `percent` % of the UDP datagrams arriving in each namespace, at random: loss in both
    /// directions of the veth. This kernel is built without netem (`CONFIG_NET_SCH_NETEM` is not
    /// set), so nftables' `numgen random` does it; the table goes away with the namespace.
    pub fn udp_loss(&self, percent: u8) {
        let nft = tool("nft", "nftables");
        let chain = [
            "{", "type", "filter", "hook", "input", "priority", "0", ";", "policy", "accept", ";",
            "}",
        ];
        for ns in [&self.server_ns, &self.client_ns] {
            let cmd = |args: &[&str]| {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&nft).args(args);
                run(&mut c, Duration::from_secs(10));
            };
            cmd(&["add", "table", "inet", "bsloss"]);
            let mut add_chain = vec!["add", "chain", "inet", "bsloss", "input"];
            add_chain.extend(chain);
            cmd(&add_chain);
            let p = percent.to_string();
            cmd(&[
                "add", "rule", "inet", "bsloss", "input", "meta", "l4proto", "udp", "numgen",
                "random", "mod", "100", "<", &p, "counter", "drop",
            ]);
        }
    }

    /// Adds a bridge and a tap device on the client side, with the client veth in the bridge, so
    /// a virtual machine on the tap sits on the lab's network; returns the tap's name. Both go
    /// away with the namespace.
    pub fn client_tap(&self) -> String {
        let base = self.client_if.trim_end_matches('c');
        let (bridge, tap) = (format!("{base}b"), format!("{base}t"));
        let ns = &self.client_ns;
        ip(&["-n", ns, "link", "add", &bridge, "type", "bridge"]);
        ip(&["-n", ns, "tuntap", "add", "dev", &tap, "mode", "tap"]);
        ip(&["-n", ns, "link", "set", &self.client_if, "master", &bridge]);
        ip(&["-n", ns, "link", "set", &tap, "master", &bridge]);
        for dev in [&bridge, &tap] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        tap
    }

    /// A command run inside the server namespace.
    pub fn server_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.server_ns]).arg(program);
        c
    }

    /// A UDP socket in the client namespace, bound to `bind` (e.g. "0.0.0.0:68") and to the
    /// client's interface, with SO_BROADCAST on: for tests that play a client on the wire themselves. The socket is made
    /// on a thread moved into the namespace (a socket stays in the namespace it was made in).
    pub fn client_udp(&self, bind: &str) -> std::net::UdpSocket {
        let path = format!("/var/run/netns/{}", self.client_ns);
        let bind = bind.to_string();
        let dev = std::ffi::OsString::from(&self.client_if);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let s = std::net::UdpSocket::bind(&bind).unwrap();
            s.set_broadcast(true).unwrap();
            // On the client's link, as a client on the wire is (255.255.255.255 has no route
            // otherwise).
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::BindToDevice, &dev)
                .unwrap();
            s
        })
        .join()
        .unwrap()
    }

    /// A command run inside the client namespace.
    pub fn client_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.client_ns]).arg(program);
        c
    }
}

impl Default for Lab {
    fn default() -> Lab {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A lab, a temporary directory, and a `root` directory in it (for boot files).
pub fn lab_with_root() -> (Lab, TempDir, PathBuf) {
    let lab = Lab::new();
    let dir = TempDir::new();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    (lab, dir, root)
}

/// A `bootstorm serve` process in a lab's server namespace, with its log and control socket.
pub struct ServerProc {
    /// The process.
    pub proc: Proc,
    /// Its stderr (JSON logs).
    pub log: PathBuf,
    /// Its control socket.
    pub control: PathBuf,
}

impl ServerProc {
    /// Starts `bootstorm serve --config <config>` in the lab's server namespace and waits until
    /// its control socket answers.
    pub fn start(lab: &Lab, dir: &TempDir, config_text: &str) -> ServerProc {
        ServerProc::start_wrapped(lab, dir, config_text, &[])
    }

    /// [`ServerProc::start`] with `bootstorm` run under `wrapper` (a command and its arguments
    /// that run the rest, such as `setpriv --bounding-set -bpf`).
    pub fn start_wrapped(
        lab: &Lab,
        dir: &TempDir,
        config_text: &str,
        wrapper: &[&str],
    ) -> ServerProc {
        let config = dir.join("bootstorm.toml");
        let control = dir.join("control.sock");
        let text = config_text
            .replace("@IF@", &lab.server_if)
            .replace("@CONTROL@", &control.display().to_string());
        std::fs::write(&config, text).unwrap();
        let log = dir.join("server.log");
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = lab.server_cmd(first);
                c.args(rest).arg(bin("bootstorm"));
                c
            }
            None => lab.server_cmd(bin("bootstorm")),
        };
        cmd.args(["serve", "--config"])
            .arg(&config)
            .args(["--for", "300s", "--log-format", "json"])
            .stderr(logf)
            .stdout(Stdio::null());
        let proc = Proc::spawn("bootstorm", &mut cmd);
        let s = ServerProc { proc, log, control };
        let ok = wait_until(Duration::from_secs(10), || s.leases_json().is_some());
        assert!(
            ok,
            "bootstorm did not start: {}",
            std::fs::read_to_string(&s.log).unwrap_or_default()
        );
        s
    }

    /// The server's leases as JSON, if it answers.
    pub fn leases_json(&self) -> Option<serde_json::Value> {
        let out = Command::new(bin("bootstorm"))
            .args(["leases", "--json", "--socket"])
            .arg(&self.control)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The bound leases, as (address, MAC) pairs (panics if the server does not answer).
    pub fn bound_leases(&self) -> Vec<(String, String)> {
        let leases = self.leases_json().expect("lease list");
        leases
            .as_array()
            .expect("a JSON array of leases")
            .iter()
            .filter(|l| l["state"] == "bound")
            .map(|l| {
                let s = |k: &str| {
                    l[k].as_str()
                        .unwrap_or_else(|| panic!("a lease without {k}: {l}"))
                        .to_string()
                };
                (s("ip"), s("mac"))
            })
            .collect()
    }

    /// The server's counters.
    pub fn stats(&self) -> serde_json::Value {
        let out = run(
            Command::new(bin("bootstorm"))
                .args(["stats", "--socket"])
                .arg(&self.control),
            Duration::from_secs(10),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
