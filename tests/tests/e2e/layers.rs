//! The architecture's dependency direction, read from `cargo metadata` (no network: workspace
//! packages only, their declared dependencies): wire <- protocol cores <- adapters <- daemon.
//! Issue 13 locks these in.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Each workspace package and the names of its normal (not dev, not build) dependencies.
fn deps() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let names = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), names)
        })
        .collect()
}

/// What a package must never depend on.
fn violations(deps: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    // Anything that touches the OS, a runtime, or I/O adapters.
    const IO: &[&str] = &[
        "libc",
        "nix",
        "tokio",
        "mio",
        "socket2",
        "aya",
        "io-uring",
        "xsk-rs",
        "axum",
        "hyper",
        "bootstorm-net",
        "bootstorm-io",
        "bootstorm-xdp",
        "bootstorm-journal",
        "bootstorm-daemon",
        "bootstorm-loadgen",
    ];
    let mut rules: Vec<(&str, Vec<&str>)> = Vec::new();
    // The wire formats and the clock depend on nothing of ours.
    for leaf in ["bootstorm-wire", "bootstorm-time"] {
        let mut forbidden: Vec<&str> = IO.to_vec();
        forbidden.extend([
            "bootstorm-lease",
            "bootstorm-dhcp",
            "bootstorm-tftp",
            "bootstorm-iscsi",
        ]);
        rules.push((leaf, forbidden));
    }
    // The sans-IO cores never touch I/O; the lease table knows nothing of DHCP or TFTP.
    for core in [
        "bootstorm-lease",
        "bootstorm-dhcp",
        "bootstorm-tftp",
        "bootstorm-iscsi",
    ] {
        rules.push((core, IO.to_vec()));
    }
    rules.push((
        "bootstorm-lease",
        vec!["bootstorm-wire", "bootstorm-dhcp", "bootstorm-tftp"],
    ));
    // Adapters: the socket layer knows no protocol; the journal no socket.
    rules.push((
        "bootstorm-net",
        vec![
            "bootstorm-dhcp",
            "bootstorm-tftp",
            "bootstorm-lease",
            "bootstorm-journal",
            "tokio",
        ],
    ));
    // The packet queues carry datagrams for any protocol: no protocol core, no journal.
    rules.push((
        "bootstorm-io",
        vec![
            "bootstorm-dhcp",
            "bootstorm-tftp",
            "bootstorm-lease",
            "bootstorm-journal",
            "bootstorm-daemon",
            "tokio",
        ],
    ));
    // The fast path is one more driver of the queues: no protocol core, no journal, no daemon.
    rules.push((
        "bootstorm-xdp",
        vec![
            "bootstorm-dhcp",
            "bootstorm-tftp",
            "bootstorm-iscsi",
            "bootstorm-lease",
            "bootstorm-journal",
            "bootstorm-daemon",
            "tokio",
        ],
    ));
    rules.push((
        "bootstorm-journal",
        vec![
            "bootstorm-net",
            "bootstorm-io",
            "bootstorm-dhcp",
            "libc",
            "tokio",
        ],
    ));
    // The load generator drives any server: it never links bootstorm's server code (its
    // protocol cores, lease table, journal or daemon). The queue drivers are not server code:
    // it sends through `bootstorm-io` and, in its AF_XDP mode, `bootstorm-xdp`, whose program
    // only steers ports.
    rules.push((
        "bootstorm-loadgen",
        vec![
            "bootstorm-dhcp",
            "bootstorm-tftp",
            "bootstorm-iscsi",
            "bootstorm-lease",
            "bootstorm-journal",
            "bootstorm-daemon",
        ],
    ));
    // Lease files are formats: no command line, no runtime, no sockets (the fuzz target links
    // them without the daemon).
    let mut leasefile: Vec<&str> = IO.to_vec();
    leasefile.extend(["clap", "bootstorm-dhcp", "bootstorm-tftp", "bootstorm-io"]);
    rules.push(("bootstorm-leasefile", leasefile));
    // The production binary never carries its own test tools: the lab (which runs the load
    // generator) is a program of its own that `bootstorm lab` execs.
    rules.push((
        "bootstorm-daemon",
        vec!["bootstorm-loadgen", "bootstorm-lab"],
    ));
    let mut v = Vec::new();
    for (pkg, forbidden) in rules {
        let Some(have) = deps.get(pkg) else {
            v.push(format!("{pkg}: not in the workspace"));
            continue;
        };
        for f in forbidden {
            if have.contains(f) {
                v.push(format!("{pkg} depends on {f}"));
            }
        }
    }
    v
}

#[test]
fn dependencies_point_inward() {
    let d = deps();
    assert_eq!(violations(&d), Vec::<String>::new());
    // The check itself bites: a core that took a socket crate is reported.
    let mut bad = d.clone();
    bad.get_mut("bootstorm-dhcp").unwrap().insert("libc".into());
    bad.get_mut("bootstorm-wire")
        .unwrap()
        .insert("bootstorm-lease".into());
    assert_eq!(
        violations(&bad),
        [
            "bootstorm-wire depends on bootstorm-lease",
            "bootstorm-dhcp depends on libc"
        ]
    );
}
