//! A small boot storm from the bundled load generator against bootstorm in namespaces: 200
//! machines, two relay agents, DHCP then a 256 KiB boot file over TFTP checked by size and
//! sha256. Every boot must complete and the JSON report must hold together.

use bootstorm_tests::{Lab, ServerProc, TempDir, bin, need_root, output_within};
use std::process::Command;
use std::time::Duration;

const CLIENTS: u64 = 200;

#[test]
fn a_storm_of_200_machines_boots() {
    if !need_root("a_storm_of_200_machines_boots") {
        return;
    }
    let lab = Lab::new();
    let dir = TempDir::new();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
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
        r#"
[server]
interfaces = ["@IF@"]
workers = 2
control_socket = "@CONTROL@"

[[subnet]]
network = "198.18.0.0/16"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.3.254"]

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
    let mut cmd = lab.client_cmd(bin("bootstorm-loadgen"));
    cmd.args([
        "--server",
        "198.18.0.1",
        "--relay",
        "198.18.0.2,198.18.0.3",
        "--clients",
        &CLIENTS.to_string(),
        "--windowsize",
        "8",
        "--expect-size",
        &data.len().to_string(),
        "--expect-sha256",
        &sha,
        "--limit",
        "60",
        "--json",
    ]);
    let out = output_within(&mut cmd, Duration::from_secs(90));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
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
    let leases = srv.leases_json().unwrap();
    let bound = leases
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["state"] == "bound")
        .count();
    assert_eq!(bound as u64, CLIENTS);
    assert_eq!(srv.stats()["tftp"]["completed"], CLIENTS);
}
