//! `bootstorm lab`, run as a newcomer would (as root): it builds its namespaces, boots a storm,
//! reports, and leaves nothing behind, also when interrupted.

use bootstorm_tests::{Proc, bin, need_root, wait_until};
use std::process::{Command, Stdio};
use std::time::Duration;

fn namespaces() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `bootstorm lab` (PID `pid`) may leave behind: its namespaces and its directory.
fn leftovers(pid: u32) -> Vec<String> {
    let ns = namespaces();
    let mut left: Vec<String> = [format!("bslab{pid}S"), format!("bslab{pid}C")]
        .into_iter()
        .filter(|n| {
            ns.lines()
                .any(|l| l.split_whitespace().next() == Some(n.as_str()))
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("bootstorm-lab-{pid}"));
    if dir.exists() {
        left.push(dir.display().to_string());
    }
    left
}

/// Removes, by exact name, whatever the lab of `pid` left if a test failed before it cleaned up
/// (the assertions check it did; this keeps a failed run from leaving namespaces behind).
struct Sweep(u32);

impl Drop for Sweep {
    fn drop(&mut self) {
        for n in [format!("bslab{}S", self.0), format!("bslab{}C", self.0)] {
            let _ = Command::new("ip")
                .args(["netns", "del", &n])
                .stderr(Stdio::null())
                .status();
        }
        let _ =
            std::fs::remove_dir_all(std::env::temp_dir().join(format!("bootstorm-lab-{}", self.0)));
    }
}

#[test]
fn lab_boots_a_storm_and_removes_everything() {
    let _heavy = bootstorm_tests::heavy();
    if !need_root("lab_boots_a_storm_and_removes_everything") {
        return;
    }
    let mut cmd = Command::new(bin("bootstorm"));
    cmd.args([
        "lab",
        "--clients",
        "60",
        "--boot-file-kib",
        "128",
        "--json",
        "--limit",
        "60",
    ]);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _sweep = Sweep(pid);
    let out = output_within_child(child, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (r["completed"].as_u64(), r["failed"].as_u64()),
        (Some(60), Some(0)),
        "{r:#}"
    );
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["dhcp", "tftp", "ipxe-dhcp", "ipxe-http", "boot"]);
    assert!(stderr.contains(&format!("bslab{pid}S")), "{stderr}");
    assert!(
        leftovers(pid).is_empty(),
        "left behind: {:?}",
        leftovers(pid)
    );
}

#[test]
fn an_interrupted_lab_removes_everything() {
    if !need_root("an_interrupted_lab_removes_everything") {
        return;
    }
    let mut cmd = Command::new(bin("bootstorm"));
    cmd.args(["lab", "--clients", "20000", "--limit", "120"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut lab = Proc::spawn("bootstorm lab", &mut cmd);
    let pid = lab.pid();
    let _sweep = Sweep(pid);
    // Once its server namespace exists, the storm is about to start or running: interrupt.
    assert!(
        wait_until(Duration::from_secs(30), || namespaces()
            .contains(&format!("bslab{pid}S"))),
        "the lab never came up"
    );
    std::thread::sleep(Duration::from_millis(1500));
    lab.signal("INT");
    let status = lab
        .wait(Duration::from_secs(30))
        .expect("the lab did not stop on Ctrl-C");
    assert!(!status.success(), "an interrupted storm is not a success");
    assert!(
        leftovers(pid).is_empty(),
        "left behind: {:?}",
        leftovers(pid)
    );
}

/// `output_within` for a child already spawned with piped output.
fn output_within_child(child: std::process::Child, limit: Duration) -> std::process::Output {
    let (tx, rx) = std::sync::mpsc::channel();
    let id = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &id.to_string()])
                .status();
            panic!("bootstorm lab did not finish within {limit:?}");
        }
    }
}
