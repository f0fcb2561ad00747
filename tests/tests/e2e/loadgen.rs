//! Small boot storms from the bundled load generator against bootstorm in namespaces: 200
//! machines, two relay agents, DHCP then a 256 KiB boot file over TFTP checked by size and
//! sha256; then a chainload (TFTP, then iPXE's DHCP and its script over HTTP) and UEFI HTTP boot,
//! with the HTML report. Every boot must complete and the reports must hold together.

use bootstorm_tests::{
    Lab, ServerProc, TempDir, bin, need_root, output_within, proc_number, wait_until,
};
use std::process::Command;
use std::time::Duration;

const CLIENTS: u64 = 200;

/// The server and subnet every storm here runs against; tests add their boot rules, [tftp] and
/// [http] after it.
pub(crate) const SERVER: &str = r#"
[server]
interfaces = ["@IF@"]
workers = 2
control_socket = "@CONTROL@"

[[subnet]]
network = "198.18.0.0/16"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.3.254"]
"#;

#[test]
fn a_storm_of_200_machines_boots() {
    let _heavy = bootstorm_tests::heavy();
    if !need_root("a_storm_of_200_machines_boots") {
        return;
    }
    let (lab, dir, root) = bootstorm_tests::lab_with_root();
    let data: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i * 31 + i / 977) as u8)
        .collect();
    std::fs::write(root.join("boot.efi"), &data).unwrap();
    let out = Command::new("sha256sum")
        .arg(root.join("boot.efi"))
        .output()
        .unwrap();
    let sha = String::from_utf8(out.stdout).unwrap();
    let sha = sha.split_whitespace().next().unwrap().to_string();
    let config = format!(
        r#"{SERVER}
[[boot]]
file = "boot.efi"

[tftp]
root = "{}"
"#,
        root.display()
    );
    let srv = ServerProc::start(&lab, &dir, &config);
    lab.add_client_address("198.18.0.2/16");
    lab.add_client_address("198.18.0.3/16");
    let r = loadgen(
        &lab,
        &[
            "--clients",
            &CLIENTS.to_string(),
            "--windowsize",
            "8",
            "--expect-size",
            &data.len().to_string(),
            "--expect-sha256",
            &sha,
        ],
    );
    assert_eq!(r["clients"], CLIENTS);
    assert_eq!(r["completed"], CLIENTS, "{r:#}");
    assert_eq!(r["failed"], 0, "{r:#}");
    let phases = r["phases"].as_array().unwrap();
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dhcp", "tftp", "boot"]);
    for p in phases {
        assert_eq!(p["count"], CLIENTS, "{p}");
        let v = |k: &str| p[k].as_f64().unwrap();
        assert!(
            0.0 < v("p50_ms")
                && v("p50_ms") <= v("p90_ms")
                && v("p90_ms") <= v("p99_ms")
                && v("p99_ms") <= v("max_ms"),
            "{p}"
        );
    }
    let per_100ms: u64 = r["completions_per_100ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(per_100ms, CLIENTS);
    assert!(r["boots_per_s"].as_f64().unwrap() > 0.0);
    // The server agrees: 200 bound leases, 200 transfers.
    assert_eq!(srv.bound_leases().len() as u64, CLIENTS);
    assert_eq!(srv.stats()["tftp"]["completed"], CLIENTS);
}

/// Runs the load generator in the client namespace against 198.18.0.1 with `args`; returns its
/// exit code and its JSON report.
pub(crate) fn run_loadgen(lab: &Lab, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut cmd = lab.client_cmd(bin("bootstorm-loadgen"));
    cmd.args(["--server", "198.18.0.1", "--json"]).args(args);
    let out = output_within(&mut cmd, Duration::from_secs(90));
    let r = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: {}, no report ({e})\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), r)
}

/// Runs the load generator through both relay addresses, bounded to 60 s; every machine must
/// boot. Returns the report.
fn loadgen(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let relayed = ["--relay", "198.18.0.2,198.18.0.3", "--limit", "60"];
    let (code, r) = run_loadgen(lab, &[&relayed[..], args].concat());
    assert_eq!(code, Some(0), "{args:?}: {r:#}");
    r
}

/// The report went through exactly these phases, each `n` times.
fn assert_phases(r: &serde_json::Value, phases: &[&str], n: u64) {
    let got: Vec<(&str, u64)> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["phase"].as_str().unwrap(), p["count"].as_u64().unwrap()))
        .collect();
    let want: Vec<(&str, u64)> = phases.iter().map(|p| (*p, n)).collect();
    assert_eq!(got, want, "{r:#}");
}

/// `server` with the boot rules of a chainload (firmware gets `ipxe.efi`, iPXE `boot.ipxe`) and
/// TFTP from `root`.
fn chainload_config(server: &str, root: &std::path::Path) -> String {
    format!(
        r#"{server}
[[boot]]
name = "ipxe-script"
match = {{ user_class = "iPXE" }}
file = "boot.ipxe"

[[boot]]
name = "uefi"
match = {{ arch = ["efi-x64"] }}
file = "ipxe.efi"

[tftp]
root = "{}"
"#,
        root.display()
    )
}

/// A boot root in `dir` for a chainload: `ipxe.efi` of `size` bytes (returned) and the iPXE
/// script `boot.ipxe`.
fn ipxe_root(dir: &TempDir, size: u32, script: &str) -> (std::path::PathBuf, Vec<u8>) {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 1000) as u8).collect();
    std::fs::write(root.join("ipxe.efi"), &data).unwrap();
    std::fs::write(root.join("boot.ipxe"), script).unwrap();
    (root, data)
}

#[test]
fn chainload_and_uefi_http_storms_boot() {
    let _heavy = bootstorm_tests::heavy();
    if !need_root("chainload_and_uefi_http_storms_boot") {
        return;
    }
    let lab = Lab::new();
    let dir = TempDir::new();
    let (root, data) = ipxe_root(
        &dir,
        300_000,
        "#!ipxe\nkernel http://198.18.0.1:8080/vmlinuz\nboot\n",
    );
    let config = format!(
        r#"{SERVER}
[[boot]]
name = "ipxe-script"
match = {{ user_class = "iPXE" }}
file = "http://198.18.0.1:8080/boot.ipxe"

[[boot]]
name = "uefi-http"
match = {{ arch = ["efi-x64-http"] }}
file = "http://198.18.0.1:8080/ipxe.efi"

[[boot]]
name = "uefi"
match = {{ arch = ["efi-x64"] }}
file = "ipxe.efi"

[tftp]
root = "{root}"

[http]
port = 8080
"#,
        root = root.display()
    );
    let srv = ServerProc::start(&lab, &dir, &config);
    lab.add_client_address("198.18.0.2/16");
    lab.add_client_address("198.18.0.3/16");
    let size = data.len().to_string();
    let html = dir.join("report.html");

    // UEFI firmware over TFTP, then iPXE: its own DHCP (user class iPXE) and its script by URL.
    let r = loadgen(
        &lab,
        &[
            "--clients",
            "100",
            "--profile",
            "uefi-x64",
            "--chainload",
            "--expect-size",
            &size,
            "--html",
            html.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (r["completed"].as_u64(), r["failed"].as_u64()),
        (Some(100), Some(0)),
        "{r:#}"
    );
    assert_phases(&r, &["dhcp", "tftp", "ipxe-dhcp", "ipxe-http", "boot"], 100);
    let page = std::fs::read_to_string(&html).unwrap();
    // Four plots: latency, completions, machines in flight, retransmissions and failures.
    assert!(page.contains("100 booted"), "{page}");
    assert_eq!(page.matches("</svg>").count(), 4, "{page}");
    for p in [
        "ipxe-dhcp",
        "ipxe-http",
        "Machines in flight per phase",
        "Retransmissions and failures over time",
        "Settings",
    ] {
        assert!(page.contains(p), "{p} missing from the HTML report");
    }

    // UEFI HTTP boot: architecture 16, the boot file is a URL.
    let r = loadgen(
        &lab,
        &[
            "--clients",
            "100",
            "--profile",
            "uefi-http",
            "--expect-size",
            &size,
            "--mac-base",
            "52:54:00:01:00:00",
        ],
    );
    assert_eq!(
        (r["completed"].as_u64(), r["failed"].as_u64()),
        (Some(100), Some(0)),
        "{r:#}"
    );
    assert_phases(&r, &["dhcp", "http", "boot"], 100);

    // A wrong size is caught over HTTP too, and reported by reason.
    let (code, r) = run_loadgen(
        &lab,
        &[
            "--relay",
            "198.18.0.2",
            "--clients",
            "5",
            "--profile",
            "uefi-http",
            "--expect-size",
            "1",
            "--limit",
            "30",
            "--mac-base",
            "52:54:00:02:00:00",
        ],
    );
    assert_eq!(code, Some(1));
    assert_eq!(r["failures"]["http: wrong size"], 5, "{r:#}");

    // No rule for ARM64: each boot fails and, with boot retries, starts over twice first.
    let (code, r) = run_loadgen(
        &lab,
        &[
            "--relay",
            "198.18.0.2",
            "--clients",
            "4",
            "--profile",
            "uefi-arm64",
            "--boot-retries",
            "2",
            "--boot-retry-delay",
            "0.2",
            "--limit",
            "30",
            "--mac-base",
            "52:54:00:03:00:00",
        ],
    );
    assert_eq!(code, Some(1));
    let why = "tftp: no boot file in the ack";
    assert_eq!(r["failures"][why], 4, "{r:#}");
    assert_eq!(r["retried"][why], 8, "{r:#}");
    assert_eq!(r["phases"][0]["phase"], "dhcp");
    assert_eq!(
        r["phases"][0]["count"], 12,
        "three DHCP rounds per machine: {r:#}"
    );

    // The server agrees: 100 TFTP transfers (the firmware round only), 209 machines bound.
    assert_eq!(srv.stats()["tftp"]["completed"], 100);
    assert_eq!(srv.bound_leases().len(), 209);
}

#[test]
fn l2_mode_boots_from_0_0_0_0_on_the_wire() {
    let _heavy = bootstorm_tests::heavy();
    if !need_root("l2_mode_boots_from_0_0_0_0_on_the_wire") {
        return;
    }
    // The client side of the veth has no address at all: only raw frames (DHCP from 0.0.0.0,
    // broadcast replies, TFTP from the leased addresses with ARP answered by the load
    // generator) can boot these machines.
    let lab = Lab::new();
    let dir = TempDir::new();
    let (root, data) = ipxe_root(&dir, 200_000, "#!ipxe\nsanboot iscsi:198.18.0.1::::iqn.x\n");
    let srv = ServerProc::start(&lab, &dir, &chainload_config(SERVER, &root));
    let addrs = Command::new("ip")
        .args([
            "-n",
            &lab.client_ns,
            "-4",
            "addr",
            "show",
            "dev",
            &lab.client_if,
        ])
        .output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(
        !addrs.contains("inet "),
        "the client side has an address: {addrs}"
    );
    let (code, r) = run_loadgen(
        &lab,
        &[
            "--interface",
            &lab.client_if,
            "--clients",
            "150",
            "--profile",
            "uefi-x64",
            "--chainload",
            "--expect-size",
            &data.len().to_string(),
            "--limit",
            "60",
        ],
    );
    assert_eq!(code, Some(0), "{r:#}");
    assert_phases(&r, &["dhcp", "tftp", "ipxe-dhcp", "ipxe-tftp", "boot"], 150);
    // Every machine is bound under its own MAC, and the server saw no relay: the requests came
    // from the wire.
    let mut macs: Vec<String> = srv.bound_leases().into_iter().map(|l| l.1).collect();
    macs.sort();
    macs.dedup();
    assert_eq!(macs.len(), 150);
    assert!(
        macs.iter().all(|m| m.starts_with("52:54:00:00:")),
        "{macs:?}"
    );
    assert_eq!(srv.stats()["tftp"]["completed"], 300);
}

/// Write-type system calls the process has made so far (`syscw` of /proc/PID/io).
fn write_calls(pid: u32) -> u64 {
    proc_number(format!("/proc/{pid}/io"), "syscw:").unwrap()
}

#[test]
fn worker_log_lines_leave_in_batches() {
    if !need_root("worker_log_lines_leave_in_batches") {
        return;
    }
    // 300 leases log 300 lines; the workers buffer them and write every 100 ms at most (a
    // write per line cost ~14 us of CPU per lease; the buffer was built but, until session 4,
    // never installed as the log writer).
    let lab = Lab::new();
    let dir = TempDir::new();
    let srv = ServerProc::start(&lab, &dir, SERVER);
    lab.add_client_address("198.18.0.2/16");
    lab.add_client_address("198.18.0.3/16");
    let before = write_calls(srv.proc.pid());
    let r = loadgen(
        &lab,
        &["--clients", "300", "--fetch", "none", "--arrival", "ramp:1"],
    );
    assert_eq!(r["completed"], 300, "{r:#}");
    std::thread::sleep(Duration::from_millis(300));
    let writes = write_calls(srv.proc.pid()) - before;
    let log = srv.log_text();
    assert!(
        log.matches("event=\"bind\"").count() >= 300 || log.matches("bind").count() >= 300,
        "the lines are all there"
    );
    assert!(writes < 60, "{writes} write calls for 300 lease lines");
}

/// The load generator's AF_XDP mode on a veth pair with two queues: one worker per queue, the
/// machines' frames through AF_XDP sockets (DHCP from 0.0.0.0 with their own MACs, TFTP from
/// their leased addresses, ARP answered through the raw socket beside the program), against
/// the server on sockets and on its own fast path. Every machine boots through a chainload;
/// both queues carried traffic, and the replies that came in on another worker's queue were
/// handed to it (none lost: no failed boot, nothing passed to the kernel unsteered).
#[test]
fn xdp_mode_boots_a_chainload_storm_through_two_queues() {
    let _heavy = bootstorm_tests::heavy();
    if !need_root("xdp_mode_boots_a_chainload_storm_through_two_queues") {
        return;
    }
    for io in ["socket", "xdp"] {
        let lab = Lab::with_queues(2);
        let dir = TempDir::new();
        let (root, data) = ipxe_root(&dir, 150_000, "#!ipxe\nsanboot iscsi:198.18.0.1::::iqn.x\n");
        let server = SERVER.replacen("[server]", &format!("[server]\nio = \"{io}\""), 1);
        let srv = ServerProc::start(&lab, &dir, &chainload_config(&server, &root));
        assert_eq!(srv.stats()["dhcp_path"], io, "{}", srv.log_text());
        let mut cmd = lab.client_cmd(bin("bootstorm-loadgen"));
        cmd.args([
            "--server",
            "198.18.0.1",
            "--json",
            "--interface",
            &lab.client_if,
            "--xdp",
            "--clients",
            "300",
            "--profile",
            "uefi-x64",
            "--chainload",
            "--expect-size",
            &data.len().to_string(),
            "--limit",
            "60",
        ]);
        let out = output_within(&mut cmd, Duration::from_secs(90));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let r: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{io}: {}, no report ({e})\n{stderr}", out.status));
        assert_eq!(out.status.code(), Some(0), "{io}: {r:#}\n{stderr}");
        assert_phases(&r, &["dhcp", "tftp", "ipxe-dhcp", "ipxe-tftp", "boot"], 300);
        let mut macs: Vec<String> = srv.bound_leases().into_iter().map(|l| l.1).collect();
        macs.sort();
        macs.dedup();
        assert_eq!(macs.len(), 300, "{io}");
        // On the fast path its TFTP service counts the transfers, else the socket path's; a
        // transfer is complete once the last ACK came in, which may be after the machine left.
        let completed = || {
            let st = srv.stats();
            let tftp = if io == "xdp" {
                &st["xdp"]["tftp"]
            } else {
                &st["tftp"]
            };
            tftp["completed"].as_u64()
        };
        wait_until(Duration::from_secs(10), || completed() == Some(600));
        assert_eq!(completed(), Some(600), "{io}: {}", srv.stats());
        // The summary line: both queues received and sent, nothing dropped on the way.
        let summary = stderr
            .lines()
            .find(|l| l.starts_with("AF_XDP"))
            .unwrap_or_else(|| panic!("{io}: no AF_XDP summary\n{stderr}"));
        assert!(summary.contains("no-socket 0"), "{io}: {summary}");
        for q in 0..2 {
            let part = summary
                .split("; ")
                .find(|p| p.starts_with(&format!("queue {q}:")))
                .unwrap_or_else(|| panic!("{io}: queue {q} missing: {summary}"));
            let field = |name: &str| -> u64 {
                let at = part.find(&format!(" {name} ")).unwrap() + name.len() + 2;
                part[at..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            assert!(field("rx") > 0 && field("tx") > 0, "{io}: {part}");
            assert_eq!(field("hand-off-dropped"), 0, "{io}: {part}");
            assert_eq!(field("rx-dropped"), 0, "{io}: {part}");
        }
    }
}

/// A storm of 200 diskless machines: DHCP (whose ACK names the boot file, the root path of a
/// golden image's target and an initiator IQN of each machine's MAC), the boot file over TFTP,
/// then each machine's iSCSI login, a read of the first 8 MiB of its disk, a write of 16 KiB of
/// a pattern of its own, read back and checked, and a logout. All complete; 200 overlays exist,
/// each holding exactly what its machine wrote; the golden image is never written.
#[test]
fn a_storm_of_200_diskless_machines_boots_from_their_overlays() {
    let _heavy = bootstorm_tests::heavy();
    if !need_root("a_storm_of_200_diskless_machines_boots_from_their_overlays") {
        return;
    }
    let (lab, dir, root) = bootstorm_tests::lab_with_root();
    std::fs::write(root.join("boot.efi"), vec![0x42u8; 64 * 1024]).unwrap();
    let golden: Vec<u8> = (0..16u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("golden.img"), &golden).unwrap();
    let config = format!(
        r#"{SERVER}
[[boot]]
file = "boot.efi"
iscsi_target = "iqn.2026-12.test.bootstorm:golden"
initiator_iqn = "iqn.2026-12.test.machine:{{mac}}"

[tftp]
root = "{root}"

[iscsi]
address = "198.18.0.1:3260"

[[iscsi.target]]
name = "iqn.2026-12.test.bootstorm:golden"
file = "{golden}"
overlays = "{overlays}"
"#,
        root = root.display(),
        golden = dir.join("golden.img").display(),
        overlays = dir.join("overlays").display(),
    );
    let srv = ServerProc::start(&lab, &dir, &config);
    lab.add_client_address("198.18.0.2/16");
    lab.add_client_address("198.18.0.3/16");
    let r = loadgen(
        &lab,
        &[
            "--clients",
            &CLIENTS.to_string(),
            "--iscsi-read",
            "8",
            "--iscsi-write",
            "16",
        ],
    );
    assert_eq!(r["completed"], CLIENTS, "{r:#}\n{}", srv.log_text());
    assert_eq!(r["failed"], 0, "{r:#}");
    assert_phases(
        &r,
        &["dhcp", "tftp", "iscsi-login", "iscsi-io", "boot"],
        CLIENTS,
    );
    let st = srv.stats();
    assert_eq!(st["iscsi"]["logins"], CLIENTS, "{st}");
    assert_eq!(st["iscsi"]["overlay_errors"], 0, "{st}");
    assert!(
        st["iscsi"]["read_bytes"].as_u64().unwrap() >= CLIENTS * ((8 << 20) + (16 << 10)),
        "{st}"
    );
    // 200 overlays, one per machine (named by the IQN DHCP gave it), each with its 16 KiB.
    let out = output_within(
        Command::new(bin("bootstorm"))
            .args(["overlay", "list", "--json", "--config"])
            .arg(dir.join("bootstorm.toml")),
        Duration::from_secs(30),
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len() as u64, CLIENTS);
    for l in listed {
        assert!(
            l["key"]
                .as_str()
                .unwrap()
                .starts_with("iqn.2026-12.test.machine:52-54-00-"),
            "{l}"
        );
        assert_eq!(l["written"], 16 << 10, "{l}");
    }
    assert!(
        std::fs::read(dir.join("golden.img")).unwrap() == golden,
        "the golden image changed"
    );
}
