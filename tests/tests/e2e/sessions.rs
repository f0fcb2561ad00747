//! Boot sessions (issue 16): a storm of machines from the load generator, each machine's session
//! followed through DHCP and its boot file, asked of the running server with `bootstorm
//! sessions`; machines that fail (a boot file missing, no boot rule at all) show the failing
//! phase and the reason.

use crate::loadgen::{SERVER, run_loadgen};
use bootstorm_tests::{ServerProc, bin, need_root, run};
use std::process::Command;
use std::time::Duration;

/// `bootstorm sessions --socket S ARGS`: its stdout, which must succeed.
fn sessions(srv: &ServerProc, args: &[&str]) -> String {
    let out = run(
        Command::new(bin("bootstorm"))
            .arg("sessions")
            .arg("--socket")
            .arg(&srv.control)
            .args(args),
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sessions_json(srv: &ServerProc, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&sessions(srv, &a)).unwrap()
}

#[test]
fn a_storm_s_machines_each_have_a_session_through_dhcp_and_tftp() {
    let _heavy = bootstorm_tests::heavy();
    if !need_root("a_storm_s_machines_each_have_a_session_through_dhcp_and_tftp") {
        return;
    }
    let (lab, dir, root) = bootstorm_tests::lab_with_root();
    let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(root.join("boot.efi"), &data).unwrap();
    let config = format!(
        "{SERVER}\n[[boot]]\nfile = \"boot.efi\"\n\n[tftp]\nroot = \"{}\"\n",
        root.display()
    );
    let srv = ServerProc::start(&lab, &dir, &config);
    let (code, r) = run_loadgen(
        &lab,
        &[
            "--interface",
            &lab.client_if,
            "--clients",
            "50",
            "--limit",
            "60",
        ],
    );
    assert_eq!(code, Some(0), "{r:#}");
    assert_eq!(r["completed"], 50, "{r:#}");

    // Every machine has a session, and each went as far as its boot file.
    let v = sessions_json(&srv, &[]);
    assert_eq!(v["total"], 50, "{v:#}");
    let list = v["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 50);
    let leases = srv.bound_leases();
    for s in list {
        assert_eq!(s["phase"], "loaded", "{s}");
        assert_eq!(s["rounds"], 1, "{s}");
        assert!(s["failure"].is_null(), "{s}");
        let ip = s["address"].as_str().unwrap();
        let mac = s["mac"].as_str().unwrap();
        assert!(
            leases.contains(&(ip.to_string(), mac.to_string())),
            "{s} not in {leases:?}"
        );
    }
    // One machine's timeline: offer, ack, the file asked for and delivered whole.
    let mac = list[7]["mac"].as_str().unwrap();
    let one = sessions_json(&srv, &["--mac", mac]);
    let steps: Vec<&str> = one["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["offer", "ack", "file", "file-done"], "{one:#}");
    let done = &one["timeline"][3];
    assert_eq!(done["file"], "boot.efi");
    assert_eq!(done["bytes"], data.len() as u64);
    assert_eq!(done["protocol"], "tftp");
    let after = |i: usize| one["timeline"][i]["after_ms"].as_u64().unwrap();
    assert!(
        after(0) <= after(1) && after(1) <= after(2) && after(2) <= after(3),
        "{one:#}"
    );
    // The human forms: a table of all, one machine's timeline.
    let table = sessions(&srv, &[]);
    assert!(table.starts_with("MAC "), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains(" loaded ")).count(),
        50,
        "{table}"
    );
    let human = sessions(&srv, &["--mac", mac]);
    assert!(
        human.contains("PHASE    loaded") && human.contains("file=boot.efi"),
        "{human}"
    );
    // The filters.
    assert_eq!(
        sessions_json(&srv, &["--phase", "loaded", "--limit", "5"])["sessions"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(sessions_json(&srv, &["--phase", "booted"])["total"], 0);
    assert_eq!(sessions_json(&srv, &["--failed"])["total"], 0);
    // Counters and latency histograms in `bootstorm stats`.
    let st = srv.stats();
    let b = &st["boot"];
    assert_eq!(b["started"], 50, "{b:#}");
    assert_eq!(b["live"], 50, "{b:#}");
    assert_eq!(b["phases"]["loaded"], 50, "{b:#}");
    assert_eq!(b["latency"]["dhcp"]["count"], 50, "{b:#}");
    assert_eq!(b["latency"]["tftp"]["count"], 50, "{b:#}");
    // Bad input is refused with the reason.
    let bad = Command::new(bin("bootstorm"))
        .args(["sessions", "--phase", "nowhere", "--socket"])
        .arg(&srv.control)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("phase 'nowhere'"));
    let unknown = Command::new(bin("bootstorm"))
        .args(["sessions", "--mac", "02:00:00:00:00:99", "--socket"])
        .arg(&srv.control)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no session of 02:00:00:00:00:99"));
}

/// Serves `config`, boots 5 machines that must fail, and returns the server with the sessions
/// `filter` lists (all 5 of them).
fn failed_storm(
    lab: &bootstorm_tests::Lab,
    dir: &bootstorm_tests::TempDir,
    config: &str,
    filter: &[&str],
) -> (ServerProc, Vec<serde_json::Value>) {
    let srv = ServerProc::start(lab, dir, config);
    let args = [
        "--interface",
        &lab.client_if,
        "--clients",
        "5",
        "--limit",
        "20",
    ];
    let (code, r) = run_loadgen(lab, &args);
    assert_ne!(code, Some(0), "{r:#}");
    let v = sessions_json(&srv, filter);
    assert_eq!(v["total"], 5, "{v:#}");
    let list = v["sessions"].as_array().unwrap().clone();
    for s in &list {
        assert_eq!(s["phase"], "failed", "{s}");
    }
    (srv, list)
}

#[test]
fn a_failed_boot_shows_its_phase_and_reason() {
    let _heavy = bootstorm_tests::heavy();
    if !need_root("a_failed_boot_shows_its_phase_and_reason") {
        return;
    }
    let (lab, dir, root) = bootstorm_tests::lab_with_root();
    // The boot rule names a file the root does not have.
    let config = format!(
        "{SERVER}\n[[boot]]\nfile = \"missing.efi\"\n\n[tftp]\nroot = \"{}\"\n",
        root.display()
    );
    let (srv, list) = failed_storm(&lab, &dir, &config, &["--failed"]);
    for s in &list {
        let f = s["failure"].as_str().unwrap();
        assert!(
            f.starts_with("tftp missing.efi:") && f.contains("not found"),
            "{f}"
        );
    }
    let table = sessions(&srv, &["--failed"]);
    assert_eq!(
        table.lines().filter(|l| l.contains(" failed ")).count(),
        5,
        "{table}"
    );
    drop(srv);

    // No boot rule at all: the firmware gets an address and nothing to boot.
    let (srv, list) = failed_storm(&lab, &dir, SERVER, &["--phase", "failed"]);
    for s in &list {
        let f = s["failure"].as_str().unwrap();
        assert!(f.starts_with("no boot rule matched"), "{f}");
    }
    assert!(srv.stats()["boot"]["failures"].as_u64().unwrap() >= 5);
}
