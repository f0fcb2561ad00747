//! The `bootstorm` command line, run as a user would.

use bootstorm_tests::{TempDir, bin, output_within};
use std::process::Command;
use std::time::Duration;

/// `bootstorm serve` in quick mode on an ephemeral loopback port, for `run_for`.
fn loopback_serve(control: &std::path::Path, run_for: &str) -> Command {
    let mut cmd = Command::new(bin("bootstorm"));
    cmd.args([
        "serve",
        "--server-ip",
        "198.18.1.0",
        "--pool",
        "198.18.1.1-198.18.1.4",
    ])
    .args([
        "--address",
        "127.0.0.1",
        "--port",
        "0",
        "--for",
        run_for,
        "--control-socket",
    ])
    .arg(control);
    cmd
}

#[test]
fn check_config_reports_file_line_and_reason() {
    let dir = TempDir::new();
    let f = dir.join("bad.toml");
    std::fs::write(&f, "[[subnet]]\nnetwork = \"198.18.0.0/16\"\nserver_id = \"198.18.0.1\"\npools = [\"198.18.1.1-198.19.0.1\"]\n").unwrap();
    let out = output_within(
        Command::new(bin("bootstorm")).arg("check-config").arg(&f),
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:4:10: pool 198.18.1.1-198.19.0.1 is not inside subnet 198.18.0.0/16",
            f.display()
        )),
        "{err}"
    );
}

#[test]
fn check_config_accepts_the_examples_and_warns_on_half_uefi_rules() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for name in ["lab.toml", "datacenter.toml"] {
        let out = output_within(
            Command::new(bin("bootstorm"))
                .arg("check-config")
                .arg(examples.join(name)),
            Duration::from_secs(10),
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    }
    let dir = TempDir::new();
    let f = dir.join("half.toml");
    std::fs::write(&f, "[[subnet]]\nnetwork = \"198.18.0.0/16\"\nserver_id = \"198.18.0.1\"\n[[boot]]\nmatch = { arch = [7] }\nfile = \"ipxe.efi\"\n").unwrap();
    let out = output_within(
        Command::new(bin("bootstorm")).arg("check-config").arg(&f),
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("warning: boot rule 'boot#1' (line 4) matches architecture 7 but not 9")
    );
}

#[test]
fn serve_for_a_bounded_time_then_exit_cleanly() {
    let dir = TempDir::new();
    let sock = dir.join("c.sock");
    let out = output_within(&mut loopback_serve(&sock, "1s"), Duration::from_secs(20));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("--for elapsed") && log.contains("stopped"),
        "{log}"
    );
    assert!(!sock.exists(), "control socket removed on exit");
}

#[test]
fn quick_mode_and_config_file_are_exclusive() {
    let out = output_within(
        Command::new(bin("bootstorm")).args([
            "serve",
            "--config",
            "x.toml",
            "--server-ip",
            "198.18.0.1",
        ]),
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("either --config or quick-mode flags"));
}

#[test]
fn sigterm_and_sigint_stop_the_server_cleanly() {
    for sig in ["TERM", "INT"] {
        let dir = TempDir::new();
        let sock = dir.join("c.sock");
        let log = dir.join("server.log");
        let mut cmd = loopback_serve(&sock, "60s");
        cmd.stderr(std::fs::File::create(&log).unwrap());
        let mut p = bootstorm_tests::Proc::spawn("bootstorm", &mut cmd);
        assert!(bootstorm_tests::wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("ready")
        }));
        p.signal(sig);
        let st = p
            .wait(Duration::from_secs(5))
            .expect("exits within 5 s of the signal");
        assert!(st.success(), "SIG{sig}: {st:?}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("stopped"), "SIG{sig}: {text}");
        assert!(!sock.exists(), "SIG{sig}: control socket removed");
    }
}

#[test]
fn serve_with_tftp_root_serves_files_and_reports_them() {
    let dir = TempDir::new();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("ipxe.efi"), b"not really ipxe").unwrap();
    // A free port for TFTP (the kernel's choice, released just before the server binds it).
    let port = bootstorm_tests::free_port(false);
    let http_port = bootstorm_tests::free_port(true);
    let sock = dir.join("c.sock");
    let log = dir.join("server.log");
    let mut cmd = loopback_serve(&sock, "60s");
    cmd.args(["--http-port", &http_port.to_string()]);
    cmd.arg("--tftp-root")
        .arg(&root)
        .args(["--tftp-port", &port.to_string()]);
    let _server = bootstorm_tests::spawn_ready(&mut cmd, &log);
    let out = dir.join("got");
    assert_eq!(
        bootstorm_tests::tftp_get(port, "ipxe.efi", &out),
        b"not really ipxe"
    );
    // The same root over HTTP.
    assert_eq!(
        bootstorm_tests::curl_get(&format!("http://127.0.0.1:{http_port}/ipxe.efi")),
        b"not really ipxe"
    );
    let stats = || {
        let o = output_within(
            Command::new(bin("bootstorm"))
                .args(["stats", "--socket"])
                .arg(&sock),
            Duration::from_secs(10),
        );
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    assert!(
        bootstorm_tests::wait_until(Duration::from_secs(5), || stats()["tftp"]["completed"] == 1),
        "{}",
        stats()
    );
    // Issue 13: one file cache for TFTP and HTTP from one root: the file was read from disk
    // once for both.
    let s = stats();
    assert_eq!(s["files"]["shared"], true, "{s}");
    assert_eq!(s["files"]["reads"], 1, "{s}");
}

/// Regression (issue 12.14): `bootstorm leases | head` (and `leases export | head`) panicked on
/// the broken pipe ("failed printing to stdout"). The output now just ends there, exit 0.
#[test]
fn leases_into_a_closed_pipe_end_quietly() {
    let dir = TempDir::new();
    let sock = dir.join("c.sock");
    let log = dir.join("server.log");
    let port = bootstorm_tests::free_port(false);
    let mut cmd = Command::new(bin("bootstorm"));
    cmd.args([
        "serve",
        "--server-ip",
        "198.18.0.1",
        "--pool",
        "198.18.1.1-198.18.4.254",
        "--address",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--for",
        "60s",
        "--control-socket",
    ])
    .arg(&sock);
    let _server = bootstorm_tests::spawn_ready(&mut cmd, &log);
    // 600 leases: the table and the export are both far larger than a pipe's 64 KiB.
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let to = ("127.0.0.1", port);
    let mut buf = [0u8; 1500];
    for n in 0..600u32 {
        let mut m = crate::msg::Msg::new(bootstorm_wire::dhcp::MessageType::Discover, 0);
        m.mac = [0x52, 0x54, 0, 0x11, (n >> 8) as u8, n as u8];
        m.xid = n;
        c.send_to(&m.bytes(), to).unwrap();
        let (k, _) = c.recv_from(&mut buf).expect("OFFER");
        let o = crate::msg::parse(&buf[..k]);
        m.mt = bootstorm_wire::dhcp::MessageType::Request.into();
        m.requested = Some(o.yiaddr);
        m.server_id = o.server_id;
        c.send_to(&m.bytes(), to).unwrap();
        c.recv_from(&mut buf).expect("ACK");
    }
    for args in [&["leases"][..], &["leases", "export"]] {
        let script = format!(
            "'{}' {} --socket '{}' | head -n 1 >/dev/null; exit ${{PIPESTATUS[0]}}",
            bin("bootstorm").display(),
            args.join(" "),
            sock.display()
        );
        let o = output_within(
            Command::new("bash").args(["-c", &script]),
            Duration::from_secs(20),
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {:?} {err}", o.status);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Regression (issue 12.12): boot files alone, beside an existing DHCP server (as tftpd-hpa is
/// used): `serve --tftp-root` without `--pool` was refused. Now TFTP and HTTP serve, and no
/// socket is opened on the DHCP port.
#[test]
fn tftp_and_http_alone_serve_without_dhcp() {
    let dir = TempDir::new();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("undionly.kpxe"), b"pxe loader").unwrap();
    let port = bootstorm_tests::free_port(false);
    let http_port = bootstorm_tests::free_port(true);
    let sock = dir.join("c.sock");
    let log = dir.join("server.log");
    let mut cmd = Command::new(bin("bootstorm"));
    cmd.args(["serve", "--address", "127.0.0.1", "--for", "60s"])
        .arg("--tftp-root")
        .arg(&root)
        .args(["--tftp-port", &port.to_string()])
        .args(["--http-port", &http_port.to_string()])
        .arg("--control-socket")
        .arg(&sock);
    let _server = bootstorm_tests::spawn_ready(&mut cmd, &log);
    let out = dir.join("got");
    assert_eq!(
        bootstorm_tests::tftp_get(port, "undionly.kpxe", &out),
        b"pxe loader"
    );
    assert_eq!(
        bootstorm_tests::curl_get(&format!("http://127.0.0.1:{http_port}/undionly.kpxe")),
        b"pxe loader"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("DHCP is off"), "{text}");
    if bootstorm_tests::is_root() {
        // Port 67 is free: nothing of ours listens there.
        std::net::UdpSocket::bind("127.0.0.1:67").expect("the DHCP port is free");
    }
}

/// Regression (issue 12.15): a dropped request (here: pool exhausted) appeared in no log at any
/// level, a NAK's reason nowhere, and the bind line named neither the boot file nor its rule.
/// With `--log-level debug` each drop is a line with client, xid and reason. A typo in
/// BOOTSTORM_LOG (which silenced every line) is refused, naming it.
#[test]
fn drops_naks_and_boot_rules_are_logged() {
    let dir = TempDir::new();
    let sock = dir.join("c.sock");
    let log = dir.join("server.log");
    let port = bootstorm_tests::free_port(false);
    let mut cmd = Command::new(bin("bootstorm"));
    cmd.args([
        "serve",
        "--server-ip",
        "198.18.1.0",
        "--pool",
        "198.18.1.1-198.18.1.1",
        "--boot-file-efi",
        "ipxe.efi",
        "--address",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--for",
        "60s",
        "--log-level",
        "debug",
        "--control-socket",
    ])
    .arg(&sock)
    .env_remove("BOOTSTORM_LOG");
    let _server = bootstorm_tests::spawn_ready(&mut cmd, &log);
    use bootstorm_wire::dhcp::{MessageType, opt};
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let to = ("127.0.0.1", port);
    let mut buf = [0u8; 1500];
    // A UEFI client binds the only address, and its bind line names rule and file.
    let mut m = crate::msg::Msg::new(MessageType::Discover, 1);
    m.extra = vec![(opt::CLIENT_ARCH, vec![0, 7])];
    c.send_to(&m.bytes(), to).unwrap();
    let (k, _) = c.recv_from(&mut buf).expect("OFFER");
    let o = crate::msg::parse(&buf[..k]);
    m.mt = MessageType::Request.into();
    m.requested = Some(o.yiaddr);
    m.server_id = o.server_id;
    c.send_to(&m.bytes(), to).unwrap();
    c.recv_from(&mut buf).expect("ACK");
    // A second client finds the pool exhausted: no answer, one debug line.
    let d = crate::msg::Msg::new(MessageType::Discover, 2);
    c.send_to(&d.bytes(), to).unwrap();
    assert!(
        c.recv_from(&mut buf).is_err(),
        "no OFFER from an exhausted pool"
    );
    // The first client asks for another address: a NAK with its reason.
    let r = crate::msg::Msg {
        requested: Some("198.18.1.77".parse().unwrap()),
        ..crate::msg::Msg::new(MessageType::Request, 1)
    };
    c.send_to(&r.bytes(), to).unwrap();
    let _ = c.recv_from(&mut buf);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        bootstorm_tests::wait_until(Duration::from_secs(10), || {
            text().contains("pool_exhausted") && text().contains("event=\"nak\"")
        }),
        "{}",
        text()
    );
    let t = text();
    let drop_line = t.lines().find(|l| l.contains("pool_exhausted")).unwrap();
    assert!(drop_line.contains("dropped"), "{drop_line}");
    assert!(drop_line.contains("52:54:00:be:ef:02"), "{drop_line}");
    assert!(
        drop_line.contains(&format!("{:#010x}", d.xid)),
        "{drop_line}"
    );
    let bind = t
        .lines()
        .find(|l| l.contains("event=\"bind\""))
        .expect("bind line");
    assert!(
        bind.contains("rule=\"efi-x64\"") && bind.contains("file=\"ipxe.efi\""),
        "{bind}"
    );
    let nak = t
        .lines()
        .find(|l| l.contains("event=\"nak\""))
        .expect("NAK line");
    assert!(nak.contains("requested address incorrect"), "{nak}");
    // A typo in BOOTSTORM_LOG: refused at start, named.
    let o = output_within(
        Command::new(bin("bootstorm"))
            .args([
                "serve",
                "--server-ip",
                "198.18.1.0",
                "--pool",
                "198.18.1.1-198.18.1.1",
            ])
            .args(["--address", "127.0.0.1", "--port", "0", "--for", "1s"])
            .env("BOOTSTORM_LOG", "dbug"),
        Duration::from_secs(20),
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("BOOTSTORM_LOG=dbug"), "{err}");
}

/// A config for the reload test: `pool_end` addresses, a boot file, and extra lines.
fn reload_config(
    port: u16,
    sock: &std::path::Path,
    pool_end: u8,
    file: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[server]
address = "127.0.0.1"
port = {port}
control_socket = "{}"

[[subnet]]
network = "198.18.1.0/24"
server_id = "198.18.1.0"
pools = ["198.18.1.1-198.18.1.{pool_end}"]

[[boot]]
file = "{file}"
{extra}
"#,
        sock.display()
    )
}

/// Regression (issue 12.13): SIGHUP (what `systemctl reload` and logrotate send) killed the
/// server (exit 129, control socket left behind). It re-reads the config now: pools, boot
/// rules and reservations change without dropping a lease; a refused config keeps the running
/// one and says why; what cannot change live (the port) is named.
#[test]
fn sighup_reloads_the_config_and_keeps_every_lease() {
    use bootstorm_wire::dhcp::{MessageType, opt};
    let dir = TempDir::new();
    let sock = dir.join("c.sock");
    let log = dir.join("server.log");
    let config = dir.join("bootstorm.toml");
    let port = bootstorm_tests::free_port(false);
    std::fs::write(&config, reload_config(port, &sock, 2, "a.efi", "")).unwrap();
    let mut cmd = Command::new(bin("bootstorm"));
    cmd.args(["serve", "--for", "120s", "--config"])
        .arg(&config);
    let mut server = bootstorm_tests::spawn_ready(&mut cmd, &log);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let to = ("127.0.0.1", port);
    let ask = |m: &crate::msg::Msg| {
        let mut buf = [0u8; 1500];
        c.send_to(&m.bytes(), to).unwrap();
        c.recv_from(&mut buf)
            .ok()
            .map(|(k, _)| crate::msg::parse(&buf[..k]))
    };
    let dora = |n: u8| {
        let o = ask(&crate::msg::Msg::new(MessageType::Discover, n)).expect("OFFER");
        let a = ask(&crate::msg::Msg {
            requested: Some(o.yiaddr),
            server_id: o.server_id,
            ..crate::msg::Msg::new(MessageType::Request, n)
        })
        .expect("ACK");
        assert_eq!(a.mt, MessageType::Ack, "client {n}");
        a
    };
    let first = dora(1);
    assert_eq!(first.file, b"a.efi");
    let second = dora(2);
    // The pool is full: a third client gets nothing.
    assert!(ask(&crate::msg::Msg::new(MessageType::Discover, 3)).is_none());
    let reloads = || text().matches("config reloaded").count();
    // A bigger pool, another boot file, a reservation: applied on SIGHUP.
    let extra = "[[reservation]]\nmac = \"52:54:00:be:ef:04\"\naddress = \"198.18.1.40\"\n";
    std::fs::write(&config, reload_config(port, &sock, 20, "b.efi", extra)).unwrap();
    server.signal("HUP");
    assert!(
        bootstorm_tests::wait_until(Duration::from_secs(10), || reloads() == 1),
        "{}",
        text()
    );
    // Both leases survived: a client rebooting (INIT-REBOOT: its address in option 50) is
    // ACKed with it; without its record the server would stay silent (RFC 2131 4.3.2), and a
    // moved address would be NAKed. (A renewal from ciaddr would be answered at ciaddr:68,
    // which is not this loopback socket.)
    for (n, had) in [(1u8, &first), (2, &second)] {
        let renew = ask(&crate::msg::Msg {
            requested: Some(had.yiaddr),
            ..crate::msg::Msg::new(MessageType::Request, n)
        })
        .expect("ACK to a reboot after the reload");
        assert_eq!(
            (renew.mt, renew.yiaddr),
            (MessageType::Ack, had.yiaddr),
            "client {n}"
        );
    }
    let third = dora(3);
    assert_eq!(third.file, b"b.efi", "the new boot rule");
    assert_eq!(
        dora(4).yiaddr,
        "198.18.1.40".parse::<std::net::Ipv4Addr>().unwrap()
    );
    // A broken config is refused with file, line and reason; the running one stays.
    std::fs::write(&config, "[[subnet]]\nnetwork = \"nonsense\"\n").unwrap();
    server.signal("HUP");
    assert!(
        bootstorm_tests::wait_until(Duration::from_secs(10), || text()
            .contains("config refused")),
        "{}",
        text()
    );
    let refused = text();
    let line = refused
        .lines()
        .find(|l| l.contains("config refused"))
        .unwrap();
    assert!(line.contains("bootstorm.toml:2"), "{line}");
    assert_eq!(dora(5).file, b"b.efi", "still serving the last good config");
    // A change that needs a restart is named, and the rest applies.
    std::fs::write(&config, reload_config(port + 1, &sock, 20, "c.efi", extra)).unwrap();
    server.signal("HUP");
    assert!(
        bootstorm_tests::wait_until(Duration::from_secs(10), || reloads() == 2),
        "{}",
        text()
    );
    assert!(text().contains("only a restart applies it"), "{}", text());
    assert!(text().contains("[server] address/port"), "{}", text());
    let o = ask(&crate::msg::Msg::new(MessageType::Discover, 6)).expect("still on the old port");
    assert_eq!(o.option(opt::MESSAGE_TYPE), Some(&[2u8][..]));
    assert_eq!(o.file, b"c.efi");
    // Still a clean stop afterwards.
    server.signal("TERM");
    let st = server.wait(Duration::from_secs(10)).expect("exits");
    assert!(st.success(), "{st:?}");
    assert!(!sock.exists(), "control socket removed");
}
