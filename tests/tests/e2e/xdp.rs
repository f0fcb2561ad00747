//! The XDP program (`ebpf/steer.c`) judged frame by frame through `BPF_PROG_TEST_RUN`, and the
//! committed object checked against its source.

use super::msg::{Msg, mac};
use bootstorm_tests::need_root;
use bootstorm_wire::dhcp::MessageType;
use bootstorm_wire::ethernet::Address;
use bootstorm_wire::frame::{PAYLOAD_OFFSET, emit_udp_headers};
use bootstorm_xdp::{Counters, Steer, SteerConfig};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// A frame carrying `payload` over UDP from a client MAC to `dst`.
fn udp_frame(src_mac: [u8; 6], src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; PAYLOAD_OFFSET + payload.len()];
    buf[PAYLOAD_OFFSET..].copy_from_slice(payload);
    let n = emit_udp_headers(
        &mut buf,
        Address(src_mac),
        Address::BROADCAST,
        src,
        dst,
        payload.len(),
    )
    .unwrap();
    buf.truncate(n);
    buf
}

fn discover_frame(n: u8, giaddr: Option<Ipv4Addr>) -> Vec<u8> {
    let mut m = Msg::new(MessageType::Discover, n).bytes();
    if let Some(g) = giaddr {
        m[24..28].copy_from_slice(&g.octets());
    }
    udp_frame(
        mac(n),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 67),
        &m,
    )
}

/// `f` with an 802.1Q tag (VLAN 42) after the MACs.
fn vlan_tagged(f: &[u8]) -> Vec<u8> {
    let mut v = f[..12].to_vec();
    v.extend_from_slice(&[0x81, 0x00, 0x00, 42]);
    v.extend_from_slice(&f[12..]);
    v
}

/// `f` with 4 bytes of IP options (IHL 6: a router alert), lengths and checksum fixed.
fn with_ip_options(f: &[u8]) -> Vec<u8> {
    let mut v = f[..34].to_vec();
    v.extend_from_slice(&[0x94, 0x04, 0x00, 0x00]);
    v.extend_from_slice(&f[34..]);
    v[14] = 0x46;
    let tot = u16::from_be_bytes([v[16], v[17]]) + 4;
    v[16..18].copy_from_slice(&tot.to_be_bytes());
    v[24] = 0;
    v[25] = 0;
    let sum = ip_checksum(&v[14..38]);
    v[24..26].copy_from_slice(&sum.to_be_bytes());
    v
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn delta(a: Counters, b: Counters) -> Counters {
    Counters {
        redirected: b.redirected - a.redirected,
        passed: b.passed - a.passed,
        malformed: b.malformed - a.malformed,
        rate_limited: b.rate_limited - a.rate_limited,
        retransmits: b.retransmits - a.retransmits,
        no_socket: b.no_socket - a.no_socket,
    }
}

/// What one run did: the verdict and which counter moved.
fn judge(s: &Steer, frame: &[u8]) -> (u32, &'static str) {
    let before = s.counters();
    let verdict = s.test_run(frame).unwrap();
    let d = delta(before, s.counters());
    let moved = [
        (d.redirected, "redirected"),
        (d.passed, "passed"),
        (d.malformed, "malformed"),
        (d.rate_limited, "rate_limited"),
        (d.retransmits, "retransmits"),
        (d.no_socket, "steered"),
    ];
    let which: Vec<_> = moved.iter().filter(|(n, _)| *n > 0).collect();
    assert_eq!(which.len(), 1, "one counter per frame: {d:?}");
    (verdict, which[0].1)
}

/// Golden frames: what is ours is steered (with no socket bound in a test run, the program
/// counts it as steered and passes it: `bpf_redirect_map` falls back to XDP_PASS); VLAN tags
/// (with `vlan` on; by default tagged frames go to the kernel) and IP options are understood;
/// fragments, other protocols and ports pass; broken headers are counted as malformed and
/// passed. (A frame shorter than an Ethernet header never reaches the program: the kernel
/// refuses it, in a test run too.)
#[test]
fn golden_frames_are_steered_passed_or_counted_malformed() {
    if !need_root("golden_frames_are_steered_passed_or_counted_malformed") {
        return;
    }
    let vlan = SteerConfig {
        vlan: true,
        ..SteerConfig::default()
    };
    let mut s = Steer::load(&vlan).unwrap();
    for p in [67, 69] {
        s.set_port(p, true).unwrap();
    }
    let discover = discover_frame(1, None);
    let tftp_rrq = udp_frame(
        mac(2),
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 40000),
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 69),
        b"\x00\x01pxelinux.0\x00octet\x00",
    );
    let other_port = udp_frame(
        mac(3),
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 40000),
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 53),
        b"dns",
    );
    let mut fragment = discover.clone();
    fragment[20] = 0x20; // more fragments
    let mut later_fragment = discover.clone();
    later_fragment[21] = 0x10; // offset 16 (x8 bytes)
    let mut tcp = tftp_rrq.clone();
    tcp[23] = 6;
    let mut arp = discover[..42].to_vec();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let mut bad_ihl = discover.clone();
    bad_ihl[14] = 0x44;
    let mut long_udp = discover.clone();
    long_udp[38..40].copy_from_slice(&2000u16.to_be_bytes());
    let mut long_ip = discover.clone();
    long_ip[16..18].copy_from_slice(&3000u16.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, (u32, &str))> = vec![
        ("DHCP DISCOVER", discover.clone(), (XDP_PASS, "steered")),
        ("TFTP RRQ", tftp_rrq.clone(), (XDP_PASS, "steered")),
        (
            "VLAN-tagged DISCOVER",
            vlan_tagged(&discover),
            (XDP_PASS, "steered"),
        ),
        (
            "DISCOVER with IP options",
            with_ip_options(&discover),
            (XDP_PASS, "steered"),
        ),
        (
            "VLAN + IP options",
            vlan_tagged(&with_ip_options(&tftp_rrq)),
            (XDP_PASS, "steered"),
        ),
        ("first fragment", fragment, (XDP_PASS, "passed")),
        ("later fragment", later_fragment, (XDP_PASS, "passed")),
        ("other UDP port", other_port, (XDP_PASS, "passed")),
        ("TCP", tcp, (XDP_PASS, "passed")),
        ("ARP", arp, (XDP_PASS, "passed")),
        (
            "IPv6 ethertype",
            {
                let mut v = discover.clone();
                v[12..14].copy_from_slice(&[0x86, 0xdd]);
                v
            },
            (XDP_PASS, "passed"),
        ),
        (
            "truncated IP header",
            discover[..30].to_vec(),
            (XDP_PASS, "malformed"),
        ),
        (
            "truncated UDP header",
            discover[..38].to_vec(),
            (XDP_PASS, "malformed"),
        ),
        (
            "truncated VLAN tag",
            vlan_tagged(&discover)[..16].to_vec(),
            (XDP_PASS, "malformed"),
        ),
        ("IHL below 5", bad_ihl, (XDP_PASS, "malformed")),
        (
            "UDP length past the IP packet",
            long_udp,
            (XDP_PASS, "malformed"),
        ),
        ("IP length past the frame", long_ip, (XDP_PASS, "malformed")),
    ];
    let mut failures = Vec::new();
    for (name, frame, want) in &cases {
        let got = judge(&s, frame);
        if got != *want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    // Without `vlan` (the daemon's setting) tagged frames go to the kernel.
    let mut plain = Steer::load(&SteerConfig::default()).unwrap();
    plain.set_port(67, true).unwrap();
    let got = judge(&plain, &vlan_tagged(&discover));
    if got != (XDP_PASS, "passed") {
        failures.push(format!("VLAN-tagged DISCOVER without vlan: {got:?}"));
    }
    // A port no longer marked passes.
    s.set_port(69, false).unwrap();
    let got = judge(&s, &tftp_rrq);
    if got != (XDP_PASS, "passed") {
        failures.push(format!("TFTP RRQ after unmarking 69: {got:?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `check_dst`: only frames to our addresses or the limited broadcast are steered.
#[test]
fn only_frames_to_our_addresses_are_steered_when_asked() {
    if !need_root("only_frames_to_our_addresses_are_steered_when_asked") {
        return;
    }
    let cfg = SteerConfig {
        addresses: Some(vec![Ipv4Addr::new(198, 18, 0, 1)]),
        ..SteerConfig::default()
    };
    let mut s = Steer::load(&cfg).unwrap();
    s.set_port(69, true).unwrap();
    let to = |ip: Ipv4Addr| {
        udp_frame(
            mac(2),
            SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 40000),
            SocketAddrV4::new(ip, 69),
            b"\x00\x01f\x00octet\x00",
        )
    };
    assert_eq!(
        judge(&s, &to(Ipv4Addr::new(198, 18, 0, 1))),
        (XDP_PASS, "steered")
    );
    assert_eq!(judge(&s, &to(Ipv4Addr::BROADCAST)), (XDP_PASS, "steered"));
    assert_eq!(
        judge(&s, &to(Ipv4Addr::new(198, 18, 0, 9))),
        (XDP_PASS, "passed")
    );
}

/// The per-source token bucket: DISCOVERs beyond the burst from one MAC (or one relay) are
/// dropped and counted; another source has its own bucket; REQUESTs are never limited.
#[test]
fn discovers_beyond_a_sources_burst_are_dropped_in_the_program() {
    if !need_root("discovers_beyond_a_sources_burst_are_dropped_in_the_program") {
        return;
    }
    let cfg = SteerConfig {
        mac_rate: 1,
        mac_burst: 3,
        relay_rate: 1,
        relay_burst: 3,
        ..SteerConfig::default()
    };
    let mut s = Steer::load(&cfg).unwrap();
    s.set_port(67, true).unwrap();
    let flood = discover_frame(7, None);
    let verdicts: Vec<_> = (0..6).map(|_| judge(&s, &flood)).collect();
    assert_eq!(&verdicts[..3], &[(XDP_PASS, "steered"); 3], "{verdicts:?}");
    assert_eq!(
        &verdicts[3..],
        &[(XDP_DROP, "rate_limited"); 3],
        "{verdicts:?}"
    );
    // Another machine is not held back by the first one's flood.
    assert_eq!(judge(&s, &discover_frame(8, None)), (XDP_PASS, "steered"));
    // A relay is one source, whatever MACs it relays for.
    let relay = Ipv4Addr::new(198, 18, 5, 1);
    let relayed: Vec<_> = (20..25)
        .map(|n| judge(&s, &discover_frame(n, Some(relay))))
        .collect();
    assert_eq!(
        relayed.iter().filter(|v| v.1 == "rate_limited").count(),
        2,
        "{relayed:?}"
    );
    // The flooding MAC's REQUEST still goes through.
    let req = udp_frame(
        mac(7),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 67),
        &Msg::new(MessageType::Request, 7).bytes(),
    );
    assert_eq!(judge(&s, &req), (XDP_PASS, "steered"));
    // The bucket refills at its rate (1/s): after a second, one more DISCOVER, and no more than
    // the seconds that passed allow (however slow this machine is today).
    let began = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(1100));
    let passed = (0..5)
        .filter(|_| judge(&s, &flood) == (XDP_PASS, "steered"))
        .count();
    let allowed = (began.elapsed().as_secs_f64().ceil() as usize).clamp(1, 3);
    assert!(
        (1..=allowed).contains(&passed),
        "{passed} passed after the refill, {allowed} allowed"
    );
}

/// The committed object is what the source compiles to (with the flags of `build.rs` and
/// `ebpf/build.sh`): a change to `steer.c` must come with `ebpf/build.sh`'s output.
#[test]
fn the_committed_xdp_object_matches_its_source() {
    let clang = Command::new("clang").arg("--version").output();
    if clang.is_err() || !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        // scripts/test.sh installs both; a machine without them cannot rebuild the object.
        eprintln!("SKIP the_committed_xdp_object_matches_its_source: clang or libbpf-dev missing");
        return;
    }
    let ebpf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ebpf")
        .canonicalize()
        .unwrap();
    let out = bootstorm_tests::TempDir::new();
    let built = out.join("steer.o");
    let st = Command::new("clang")
        .current_dir(&ebpf)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg(format!("-fdebug-prefix-map={}=.", ebpf.display()))
        .arg("-fdebug-compilation-dir=.")
        .args(["-c", "steer.c", "-o"])
        .arg(&built)
        .status()
        .unwrap();
    assert!(st.success(), "clang failed on ebpf/steer.c");
    let committed = std::fs::read(ebpf.join("steer.o")).unwrap();
    assert!(
        std::fs::read(&built).unwrap() == committed,
        "ebpf/steer.o is stale against ebpf/steer.c: run ebpf/build.sh and commit steer.o"
    );
}
