//! The daemon as services (issue 13): `Daemon::start`, as `bootstorm serve` runs it, in this
//! process on loopback: DHCP, TFTP and HTTP from one root with one file cache, the control
//! socket reporting every service's section, and a stop that closes them all.

use bootstorm_daemon::config;
use bootstorm_daemon::control;
use bootstorm_daemon::daemon::Daemon;
use bootstorm_tests::TempDir;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[test]
fn every_service_starts_reports_and_stops_the_same_way() {
    let dir = TempDir::new();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let file: Vec<u8> = (0..5000u32).map(|i| (i * 13) as u8).collect();
    std::fs::write(root.join("boot.efi"), &file).unwrap();
    let control_path = dir.join("control.sock");
    let text = format!(
        r#"
[server]
address = "127.0.0.1"
port = 0
workers = 2
control_socket = "{}"

[[subnet]]
network = "198.18.1.0/24"
server_id = "198.18.1.0"
pools = ["198.18.1.1-198.18.1.20"]

[tftp]
root = "{}"
address = "127.0.0.1"
port = 0

[http]
address = "127.0.0.1"
port = 0
"#,
        control_path.display(),
        root.display()
    );
    let settings = config::parse(Path::new("services.toml"), &text).unwrap();
    let daemon = Daemon::start(&settings, Arc::new(AtomicBool::new(false))).unwrap();

    // TFTP: a plain RRQ gets the first block.
    let tftp = daemon.tftp_addr().expect("TFTP runs");
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.send_to(b"\x00\x01boot.efi\x00octet\x00", tftp).unwrap();
    let mut buf = [0u8; 1024];
    let (n, tid) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..4], &[0, 3, 0, 1], "DATA block 1");
    assert_eq!(&buf[4..n], &file[..512]);
    // Abandon it politely: ERROR from the client ends the transfer.
    c.send_to(b"\x00\x05\x00\x00stop\x00", tid).unwrap();

    // HTTP: the same file from the same cache.
    let http = daemon.http_addr().expect("HTTP runs");
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /boot.efi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&resp[..40])
    );
    assert!(resp.ends_with(&file));

    // The control socket reports each service's section; the daemon's own view agrees.
    let v: serde_json::Value =
        serde_json::from_str(&control::request(&control_path, "stats").unwrap()).unwrap();
    for key in ["dropped", "dhcp_io", "tftp", "http", "files"] {
        assert!(v.get(key).is_some(), "no {key} in {v}");
    }
    assert_eq!(v["files"]["shared"], true, "one cache for TFTP and HTTP");
    assert_eq!(v["tftp"]["started"], 1);
    assert_eq!(daemon.stats_json()["http"], v["http"]);

    // Stop: every service goes, the control socket's file too, and the ports are free.
    let workers = daemon.stop();
    assert_eq!(workers.len(), 2);
    assert!(!control_path.exists(), "the control socket was removed");
    assert!(TcpStream::connect_timeout(&http.into(), Duration::from_secs(1)).is_err());
    UdpSocket::bind(tftp).expect("the TFTP port is free again");
}
