//! The iSCSI target against libiscsi's tools (package libiscsi-bin): discovery, INQUIRY and
//! READ CAPACITY (16) with and without CHAP, a wrong secret refused, the conformance suite
//! `iscsi-test-cu`, and malformed PDUs that close one connection while others go on. The
//! target listens in the lab's server namespace; the initiators run in the client namespace.

use bootstorm_tests::{Lab, ServerProc, TempDir, need_root, output_within, tool};
use std::process::Output;
use std::time::Duration;

const OPEN: &str = "iqn.2026-12.test.bootstorm:open";
const CHAP: &str = "iqn.2026-12.test.bootstorm:chap";
const DISKLESS: &str = "iqn.2026-12.test.bootstorm:diskless";
const SECRET: &str = "sixteen-byte-sec";
/// 8 MiB disks.
const SIZE: u64 = 8 << 20;

/// Three targets on 8 MiB sparse files in `dir`: an open one, one behind CHAP, and a diskless
/// one (a golden image, an overlay per initiator); the client side gets an address to connect
/// from.
fn start(lab: &Lab, dir: &TempDir) -> ServerProc {
    start_with(lab, dir, "io_uring")
}

/// [`start`] with block I/O by `io` ("io_uring" or "pread"), every I/O through the I/O threads
/// (none served inline from the page cache) unless `io` is "io_uring".
fn start_with(lab: &Lab, dir: &TempDir, io: &str) -> ServerProc {
    let inline = io == "io_uring";
    let io = io.trim_end_matches("-threads");
    lab.add_client_address("198.18.0.2/16");
    for name in ["open.img", "chap.img", "golden.img"] {
        let f = std::fs::File::create(dir.join(name)).unwrap();
        f.set_len(SIZE).unwrap();
    }
    let config = format!(
        r#"[server]
control_socket = "@CONTROL@"

[iscsi]
address = "198.18.0.1:3260"
io = "{io}"
inline = {inline}
login_timeout = "5s"

[[iscsi.target]]
name = "{OPEN}"
file = "{open}"

[[iscsi.target]]
name = "{CHAP}"
file = "{chap}"
chap_user = "alice"
chap_secret = "{SECRET}"

[[iscsi.target]]
name = "{DISKLESS}"
file = "{golden}"
overlays = "{overlays}"
"#,
        open = dir.join("open.img").display(),
        chap = dir.join("chap.img").display(),
        golden = dir.join("golden.img").display(),
        overlays = dir.join("overlays").display(),
    );
    ServerProc::start(lab, dir, &config)
}

fn initiator(lab: &Lab, program: &str, args: &[&str]) -> Output {
    let p = tool(program, "libiscsi-bin");
    // iscsi-test-cu takes about 20 s on an idle machine (most of it its own waits): a loaded
    // CI machine gets room.
    let limit = if program == "iscsi-test-cu" { 240 } else { 60 };
    output_within(lab.client_cmd(&p).args(args), Duration::from_secs(limit))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn libiscsi_tools_discover_inquire_and_read_capacity_with_and_without_chap() {
    if !need_root("libiscsi_tools_discover_inquire_and_read_capacity_with_and_without_chap") {
        return;
    }
    let lab = Lab::new();
    let dir = TempDir::new();
    let srv = start(&lab, &dir);
    // Discovery (SendTargets) lists both; it needs no CHAP here.
    let ls = initiator(&lab, "iscsi-ls", &["iscsi://198.18.0.1"]);
    let out = text(&ls);
    assert!(ls.status.success(), "{out}\n{}", srv.log_text());
    for t in [OPEN, CHAP] {
        assert!(
            out.contains(&format!("Target:{t} Portal:198.18.0.1:3260,1")),
            "{out}"
        );
    }
    let open = format!("iscsi://198.18.0.1/{OPEN}/0");
    let inq = initiator(&lab, "iscsi-inq", &[&open]);
    assert!(inq.status.success(), "{}", text(&inq));
    assert!(text(&inq).contains("Vendor:BOOTSTRM"), "{}", text(&inq));
    let cap = initiator(&lab, "iscsi-readcapacity16", &[&open]);
    assert!(cap.status.success(), "{}", text(&cap));
    assert!(
        text(&cap).contains(&format!("Total size:{SIZE}")),
        "{}",
        text(&cap)
    );
    // CHAP: the right secret logs in, none or a wrong one is refused.
    let good = format!("iscsi://alice%{SECRET}@198.18.0.1/{CHAP}/0");
    let inq = initiator(&lab, "iscsi-inq", &[&good]);
    assert!(inq.status.success(), "{}\n{}", text(&inq), srv.log_text());
    let cap = initiator(&lab, "iscsi-readcapacity16", &[&good]);
    assert!(
        text(&cap).contains(&format!("Total size:{SIZE}")),
        "{}",
        text(&cap)
    );
    let before = srv.stats()["iscsi"]["login_failures"].as_u64().unwrap();
    for url in [
        format!("iscsi://198.18.0.1/{CHAP}/0"),
        format!("iscsi://alice%not-the-secret!@198.18.0.1/{CHAP}/0"),
        format!("iscsi://mallory%{SECRET}@198.18.0.1/{CHAP}/0"),
    ] {
        let o = initiator(&lab, "iscsi-inq", &[&url]);
        assert!(!o.status.success(), "{url} logged in: {}", text(&o));
    }
    let st = srv.stats();
    assert_eq!(
        st["iscsi"]["login_failures"].as_u64().unwrap() - before,
        3,
        "{st}"
    );
    // The secret is never in the log.
    assert!(!srv.log_text().contains(SECRET));
}

/// libiscsi's conformance suite: every test it runs against this target passes (those for
/// commands the target does not implement report themselves skipped, and pass), with block
/// I/O through the io_uring threads, through the pread fallback's, and on a diskless target
/// (through an overlay).
#[test]
fn iscsi_test_cu_runs_without_a_failure() {
    let _heavy = bootstorm_tests::heavy();
    if !need_root("iscsi_test_cu_runs_without_a_failure") {
        return;
    }
    // io_uring and pread with every I/O through the I/O threads (the other tests serve most
    // reads from the page cache on the connection's thread).
    for (io, target) in [
        ("io_uring-threads", OPEN),
        ("pread", OPEN),
        ("io_uring", DISKLESS),
    ] {
        conformance(io, target);
    }
}

fn conformance(io: &str, target: &str) {
    let lab = Lab::new();
    let dir = TempDir::new();
    let srv = start_with(&lab, &dir, io);
    let engine = io.trim_end_matches("-threads");
    assert!(
        srv.log_text().contains(&format!("\"engine\":\"{engine}\"")),
        "{}",
        srv.log_text()
    );
    let url = format!("iscsi://198.18.0.1/{target}/0");
    let o = initiator(&lab, "iscsi-test-cu", &["--dataloss", &url]);
    let out = text(&o);
    let summary = out
        .lines()
        .find(|l| l.trim_start().starts_with("tests "))
        .unwrap_or_else(|| panic!("no run summary:\n{out}"));
    let n: Vec<u64> = summary
        .split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect();
    // Total, ran, passed, failed, inactive.
    assert!(n.len() >= 4, "{summary}");
    assert!(n[1] >= 600, "only {} tests ran: {summary}", n[1]);
    // WRITE SAME, UNMAP and GET LBA STATUS run on the plain target (115,000 asserts more or
    // less; 83,600 when they were skipped); a diskless target offers no UNMAP.
    let floor = if target == DISKLESS { 80_000 } else { 110_000 };
    let asserts = out
        .lines()
        .find(|l| l.trim_start().starts_with("asserts "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(asserts > floor, "{io} {target}: {asserts} asserts");
    assert_eq!(n[3], 0, "{io}: failures:\n{out}");
    assert_eq!(n[1], n[2], "{io}: {summary}");
    // Every I/O went through the I/O threads (unless served inline).
    let st = srv.stats();
    // And each SCSI command's I/O was timed: a histogram of what the tests ran.
    let h = &st["iscsi"]["io_seconds"];
    let count = h["count"].as_u64().unwrap();
    assert!(count > 1000 && h["sum"].as_f64().unwrap() > 0.0, "{h}");
    let cum: Vec<u64> = h["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[1].as_u64().unwrap())
        .collect();
    assert!(
        cum.windows(2).all(|w| w[0] <= w[1]) && cum.last() <= Some(&count),
        "{h}"
    );
    if io.ends_with("-threads") || io == "pread" {
        assert!(st["iscsi"]["ring_ios"].as_u64().unwrap() > 1000, "{st}");
        assert_eq!(st["iscsi"]["inline_ios"], 0, "{st}");
    }
    assert!(o.status.success(), "{out}");
}

/// A malformed PDU (a SCSI command before login, a header whose data length runs past what
/// login allows) closes its connection; a login on another connection meanwhile still works;
/// a connection that never logs in is closed after the login timeout.
#[test]
fn malformed_pdus_close_their_connection_and_leave_others_running() {
    if !need_root("malformed_pdus_close_their_connection_and_leave_others_running") {
        return;
    }
    let lab = Lab::new();
    let dir = TempDir::new();
    let srv = start(&lab, &dir);
    // Each bad connection is bash's /dev/tcp in the client namespace: it writes the PDU and
    // reads until the target closes.
    let cases: [(&str, Vec<u8>); 3] = [
        ("a SCSI command before login", {
            let mut b = vec![0u8; 48];
            b[0] = 0x01;
            b
        }),
        ("a login PDU claiming 1 MiB of text", {
            let mut b = vec![0u8; 48];
            b[0] = 0x43;
            b[5] = 0x10;
            b
        }),
        ("an unknown opcode", {
            let mut b = vec![0u8; 48];
            b[0] = 0x1f;
            b
        }),
    ];
    for (what, pdu) in cases {
        let hex: String = pdu.iter().map(|b| format!("\\x{b:02x}")).collect();
        // Send the PDU, then read what comes back until the target closes (bounded).
        let script = format!(
            "exec 3<>/dev/tcp/198.18.0.1/3260; printf '{hex}' >&3; timeout 10 cat <&3 | wc -c; echo closed"
        );
        let o = output_within(
            lab.client_cmd("bash").args(["-c", &script]),
            Duration::from_secs(30),
        );
        let out = text(&o);
        assert!(out.contains("closed"), "{what}: {out}");
        let inq = initiator(
            &lab,
            "iscsi-inq",
            &[&format!("iscsi://198.18.0.1/{OPEN}/0")],
        );
        assert!(inq.status.success(), "after {what}: {}", text(&inq));
    }
    let st = srv.stats();
    assert!(
        st["iscsi"]["protocol_errors"].as_u64().unwrap() >= 2,
        "{st}\n{}",
        srv.log_text()
    );
    // A connection that never logs in is closed after login_timeout (5 s here), so idle
    // connections cannot hold the slots machines need.
    let script = "exec 3<>/dev/tcp/198.18.0.1/3260; timeout 30 cat <&3 | wc -c; echo closed";
    let t0 = std::time::Instant::now();
    let o = output_within(
        lab.client_cmd("bash").args(["-c", script]),
        Duration::from_secs(60),
    );
    assert!(text(&o).contains("closed"), "{}", text(&o));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(29),
        "closed after {took:?}"
    );
    assert_eq!(srv.stats()["iscsi"]["login_timeouts"], 1);
}

/// A TCP connection to the target from the client namespace.
fn connect_from_client(lab: &Lab) -> std::net::TcpStream {
    let path = format!("/var/run/netns/{}", lab.client_ns);
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let s = std::net::TcpStream::connect("198.18.0.1:3260").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    })
    .join()
    .unwrap()
}

/// Reads one PDU (header and data, no digests).
fn read_pdu(s: &mut std::net::TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    use std::io::Read;
    let mut bhs = vec![0u8; 48];
    s.read_exact(&mut bhs)?;
    let h = bootstorm_wire::iscsi::Bhs::new_checked(&bhs[..]).unwrap();
    let mut rest = vec![0u8; h.total_len(false, false) - 48];
    s.read_exact(&mut rest)?;
    let data = rest[h.total_ahs_len()..h.total_ahs_len() + h.data_len()].to_vec();
    Ok((bhs, data))
}

/// Logs in to OPEN as `initiator` with `isid` (security stage, then operational), to the full
/// feature phase.
fn login(s: &mut std::net::TcpStream, initiator: &str, isid: [u8; 6]) {
    use bootstorm_wire::iscsi::{Bhs, Opcode, push_text};
    use std::io::Write;
    let stages: [(u8, Vec<(&str, &str)>); 2] = [
        (
            0x81,
            vec![
                ("InitiatorName", initiator),
                ("TargetName", OPEN),
                ("SessionType", "Normal"),
                ("AuthMethod", "None"),
            ],
        ),
        (0x87, vec![("HeaderDigest", "None"), ("DataDigest", "None")]),
    ];
    for (flags, keys) in stages {
        let mut text = Vec::new();
        for (k, v) in keys {
            push_text(&mut text, k, v);
        }
        let mut pdu = vec![0u8; 48];
        {
            let mut h = Bhs::new_checked(&mut pdu[..]).unwrap();
            h.clear(Opcode::LoginRequest, true);
            h.set_flags(flags);
            h.set_isid_tsih(isid, 0);
            h.set_word24(1);
            h.set_data_len(text.len());
        }
        pdu.extend_from_slice(&text);
        pdu.resize(48 + text.len().div_ceil(4) * 4, 0);
        s.write_all(&pdu).unwrap();
        let (bhs, _) = read_pdu(s).unwrap();
        let h = Bhs::new_checked(&bhs[..]).unwrap();
        assert_eq!(h.opcode(), Opcode::LoginResponse);
        assert_eq!(h.login_status(), 0, "login refused");
    }
}

/// A second login with the same initiator name and ISID (and TSIH 0) reinstates the session
/// (RFC 7143 6.3.5): the target closes the first connection, the second goes on; another ISID
/// is another session, untouched.
#[test]
fn a_login_with_the_same_isid_reinstates_the_session() {
    use bootstorm_wire::iscsi::{Bhs, Opcode};
    use std::io::Write;
    if !need_root("a_login_with_the_same_isid_reinstates_the_session") {
        return;
    }
    let lab = Lab::new();
    let dir = TempDir::new();
    let srv = start(&lab, &dir);
    let me = "iqn.2026-12.test:reinstating";
    let isid = [0x80, 1, 2, 3, 4, 5];
    let mut first = connect_from_client(&lab);
    login(&mut first, me, isid);
    let mut other = connect_from_client(&lab);
    login(&mut other, me, [0x80, 9, 9, 9, 9, 9]);
    let mut second = connect_from_client(&lab);
    login(&mut second, me, isid);
    // The first connection is closed by the target (EOF, or a reset).
    let closed = match read_pdu(&mut first) {
        Err(e) => {
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut
        }
        Ok(_) => false,
    };
    assert!(
        closed,
        "the old connection is still open\n{}",
        srv.log_text()
    );
    // The new one and the other session answer a NOP-Out.
    for s in [&mut second, &mut other] {
        let mut nop = vec![0u8; 48];
        {
            let mut h = Bhs::new_checked(&mut nop[..]).unwrap();
            h.clear(Opcode::NopOut, true);
            h.set_flags(0x80);
            h.set_itt(7);
            h.set_word20(0xffff_ffff);
            h.set_word24(1);
        }
        s.write_all(&nop).unwrap();
        let (bhs, _) = read_pdu(s).unwrap();
        let h = Bhs::new_checked(&bhs[..]).unwrap();
        assert_eq!((h.opcode(), h.itt()), (Opcode::NopIn, 7));
    }
    assert_eq!(srv.stats()["iscsi"]["reinstated"], 1);
    assert!(srv.log_text().contains("iscsi_session_reinstated"));
}
