//! Durable leases: perfdhcp drives the 4-way exchange while bootstorm is killed with SIGKILL at a
//! random moment, five times; after each restart on the same journal, every address a client
//! received an ACK for (read from a tshark capture on the client side, not from the server) is
//! still bound to that client, and no address was ever ACKed to two clients.

use bootstorm_tests::{Lab, Proc, ServerProc, TempDir, need_root, output_within, tool, wait_until};
use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

/// The perfdhcp lab server, with its leases journaled (fsync) in `leases`.
fn config(leases: &std::path::Path) -> String {
    format!(
        "{}\n[leases]\ndir = \"{}\"\ndurability = \"fsync\"\n",
        super::perfdhcp::CONFIG,
        leases.display()
    )
}

/// (client MAC, address) of every DHCPACK in a capture, in order.
fn acks_in(tshark: &std::path::Path, pcap: &std::path::Path) -> Vec<(String, String)> {
    let out = output_within(
        std::process::Command::new(tshark)
            .arg("-r")
            .arg(pcap)
            .args(["-Y", "dhcp.option.dhcp == 5", "-T", "fields"])
            .args(["-e", "dhcp.hw.mac_addr", "-e", "dhcp.ip.your"]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // The field can repeat (chaddr and a client id built from it): the first is chaddr.
            let (mac, ip) = l.split_once('\t')?;
            let mac = mac.split(',').next()?;
            Some((mac.trim().to_lowercase(), ip.trim().to_string()))
        })
        .collect()
}

/// A small deterministic-per-run random source (no crate needed for five numbers).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn acknowledged_leases_survive_sigkill_five_times() {
    let _heavy = bootstorm_tests::heavy();
    if !need_root("acknowledged_leases_survive_sigkill_five_times") {
        return;
    }
    let perfdhcp = tool("perfdhcp", "kea-admin");
    let tshark = tool("tshark", "tshark");
    let lab = Lab::new();
    lab.add_client_address("198.18.0.2/16");
    let dir = TempDir::new();
    let leases_dir = dir.join("leases");
    let cfg = config(&leases_dir);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    // Every ACK seen by the client side so far: address -> client.
    let mut acked: HashMap<String, String> = HashMap::new();
    let mut total_acks = 0usize;
    for round in 0..5 {
        let mut srv = ServerProc::start(&lab, &dir, &cfg);
        // What was acknowledged before the previous kill is bound to the same client now.
        if !acked.is_empty() {
            let bound: HashMap<String, String> = srv.bound_leases().into_iter().collect();
            let missing: Vec<_> = acked
                .iter()
                .filter(|(ip, mac)| bound.get(*ip) != Some(*mac))
                .take(5)
                .collect();
            assert!(
                missing.is_empty(),
                "round {round}: {} ACKed leases not bound to their client after the restart, e.g. {missing:?}\n{}",
                acked.len(),
                srv.log_text()
            );
        }
        let pcap = dir.join(&format!("round{round}.pcap"));
        let mut cap = Proc::spawn(
            "tshark",
            lab.client_cmd(&tshark)
                .args([
                    "-i",
                    &lab.client_if,
                    "-f",
                    "udp port 67 or udp port 68",
                    "-w",
                ])
                .arg(&pcap)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        assert!(
            wait_until(Duration::from_secs(10), || std::fs::metadata(&pcap)
                .is_ok_and(|m| m.len() > 0)),
            "tshark did not start"
        );
        std::thread::sleep(Duration::from_millis(500));
        let mut load = Proc::spawn(
            "perfdhcp",
            super::perfdhcp::perfdhcp_cmd(&lab, &perfdhcp, 1000, 50_000, 20)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        // Kill at a random moment 0-2.5 s after the server has sent its first 150 ACKs (on a
        // loaded machine perfdhcp may take a second or more to get going: a fixed delay from
        // its start can kill the server before anything was acknowledged).
        let acks_sent = || srv.stats()["sent"]["ack"].as_u64().unwrap_or(0);
        assert!(
            wait_until(Duration::from_secs(30), || acks_sent() >= 150),
            "round {round}: the server sent only {} ACKs in 30 s\n{}",
            acks_sent(),
            srv.log_text()
        );
        let wait_ms = next_random(&mut seed) % 2500;
        std::thread::sleep(Duration::from_millis(wait_ms));
        srv.proc.signal("KILL");
        assert!(
            srv.proc.wait(Duration::from_secs(10)).is_some(),
            "server did not die"
        );
        // Let replies in flight arrive, then stop the load and the capture (SIGINT flushes it).
        std::thread::sleep(Duration::from_millis(300));
        load.stop();
        cap.signal("INT");
        cap.wait(Duration::from_secs(10));
        let acks = acks_in(&tshark, &pcap);
        assert!(
            acks.len() > 100,
            "round {round}: only {} ACKs seen by the client ({wait_ms} ms after 150 were sent)",
            acks.len()
        );
        total_acks += acks.len();
        for (mac, ip) in acks {
            if let Some(prev) = acked.insert(ip.clone(), mac.clone()) {
                assert_eq!(prev, mac, "{ip} was ACKed to two clients");
            }
        }
        drop(srv);
    }
    // A last restart: everything from all five rounds is still there, once.
    let srv = ServerProc::start(&lab, &dir, &cfg);
    let bound = srv.bound_leases();
    let ips: HashSet<&str> = bound.iter().map(|b| b.0.as_str()).collect();
    assert_eq!(ips.len(), bound.len(), "an address bound twice");
    let by_ip: HashMap<String, String> = bound.into_iter().collect();
    for (ip, mac) in &acked {
        assert_eq!(by_ip.get(ip), Some(mac), "{ip}");
    }
    eprintln!(
        "{total_acks} ACKs over 5 kills, {} distinct leases, all bound after restart",
        acked.len()
    );
}

/// Issue 12.13: a reload replaces the lease table; its changes must still reach the journal
/// (the new table gets the journal as its sink) and a snapshot must list the new table. A lease
/// made before and one made after a reload both come back after a restart.
#[test]
fn leases_made_after_a_reload_are_journaled_too() {
    use crate::msg::Client;
    use bootstorm_daemon::{config, serve};
    let dir = bootstorm_tests::TempDir::new();
    let text = |end: u8| {
        format!(
            "[server]\naddress = \"127.0.0.1\"\nport = 0\nworkers = 1\n\n[[subnet]]\nnetwork = \"198.18.1.0/24\"\nserver_id = \"198.18.1.0\"\npools = [\"198.18.1.1-198.18.1.{end}\"]\n\n[leases]\ndir = \"{}\"\n",
            dir.join("leases").display()
        )
    };
    let settings = |end: u8| config::parse(std::path::Path::new("r.toml"), &text(end)).unwrap();
    let dora = |srv: &serve::Running, n: u8| Client::new(srv).dora(n).yiaddr;
    let srv = serve::start(&settings(1)).unwrap();
    let a = dora(&srv, 1);
    let r = srv.reload(&settings(5)).unwrap();
    assert_eq!((r.records, r.bound, r.conflicts), (1, 1, 0));
    let b = dora(&srv, 2);
    srv.stop();
    let srv = serve::start(&settings(5)).unwrap();
    let now = srv.clock().now();
    let bound: Vec<_> = srv
        .server()
        .leases()
        .leases(now)
        .into_iter()
        .filter(|l| l.state == bootstorm_lease::LeaseState::Bound)
        .map(|l| l.addr)
        .collect();
    assert_eq!(bound, vec![a, b], "both leases restored from the journal");
    srv.stop();
}
