//! HTTP boot files with curl: GET, HEAD and Range, byte-exact; refusals.

use bootstorm_daemon::httpd::{self, HttpRunning, HttpSettings};
use bootstorm_tests::{TempDir, output_within, tool};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 977) as u8).collect()
}

fn start(root: &std::path::Path) -> HttpRunning {
    start_with(root, |_| {})
}

fn start_with(root: &std::path::Path, tweak: impl FnOnce(&mut HttpSettings)) -> HttpRunning {
    let mut s = HttpSettings::new(
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        root.to_path_buf(),
    );
    s.max_file_size = 1 << 30;
    tweak(&mut s);
    httpd::start(&s, Arc::new(AtomicBool::new(false))).unwrap()
}

/// True once the server has closed `c` (a read sees end of file or a reset), within `limit`.
fn closed_within(c: &mut std::net::TcpStream, limit: Duration) -> bool {
    use std::io::Read;
    c.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let end = std::time::Instant::now() + limit;
    // Bounded: a response, if any, is read through first.
    for _ in 0..1000 {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // timed out: still open
        }
        if std::time::Instant::now() >= end {
            return false;
        }
    }
    false
}

fn raw(port: u16) -> std::net::TcpStream {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(5),
    )
    .unwrap()
}

/// Runs curl; returns (HTTP status, headers, body).
fn curl(args: &[&str]) -> (u16, String, Vec<u8>) {
    let dir = TempDir::new();
    let (body, hdrs) = (dir.join("body"), dir.join("headers"));
    let o = output_within(
        Command::new(tool("curl", "curl"))
            .args(["-sS", "-o"])
            .arg(&body)
            .arg("-D")
            .arg(&hdrs)
            .args(["-w", "%{http_code}"])
            .args(args),
        Duration::from_secs(60),
    );
    assert!(
        o.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let status = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    (
        status,
        std::fs::read_to_string(&hdrs)
            .unwrap_or_default()
            .to_lowercase(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

#[test]
fn curl_get_head_and_range_are_byte_exact() {
    let root = TempDir::new();
    let data = content(3 << 20);
    std::fs::create_dir_all(root.join("efi")).unwrap();
    std::fs::write(root.join("efi/vmlinuz"), &data).unwrap();
    let srv = start(root.path());
    let url = format!("http://{}/efi/vmlinuz", srv.local_addr());

    let (status, headers, body) = curl(&[&url]);
    assert_eq!(status, 200);
    assert!(body == data, "GET: {} bytes", body.len());
    assert!(
        headers.contains(&format!("content-length: {}", data.len())),
        "{headers}"
    );
    assert!(headers.contains("accept-ranges: bytes"), "{headers}");

    let (status, headers, body) = curl(&["-I", &url]);
    assert_eq!(status, 200);
    // With -I curl writes the response headers as its output: no file content came back.
    assert!(body.len() < 1024, "HEAD returned {} bytes", body.len());
    assert!(
        headers.contains(&format!("content-length: {}", data.len())),
        "{headers}"
    );

    for (range, start, end) in [
        ("100-199", 100, 200),
        ("3145000-", 3145000, data.len()),
        ("-1000", data.len() - 1000, data.len()),
    ] {
        let (status, headers, body) = curl(&["-r", range, &url]);
        assert_eq!(status, 206, "{range}");
        assert!(body[..] == data[start..end], "{range}");
        assert!(
            headers.contains(&format!(
                "content-range: bytes {}-{}/{}",
                start,
                end - 1,
                data.len()
            )),
            "{range}: {headers}"
        );
    }
    let (status, headers, _) = curl(&["-r", "99999999-", &url]);
    assert_eq!(status, 416);
    assert!(
        headers.contains(&format!("content-range: bytes */{}", data.len())),
        "{headers}"
    );
    srv.stop();
}

#[test]
fn missing_files_and_escapes_are_refused() {
    let root = TempDir::new();
    std::fs::write(root.join("ok"), b"ok").unwrap();
    let outside = TempDir::new();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), root.join("escape")).unwrap();
    let srv = start(root.path());
    let base = format!("http://{}", srv.local_addr());
    assert_eq!(curl(&[&format!("{base}/nothing")]).0, 404);
    assert_eq!(
        curl(&["--path-as-is", &format!("{base}/../../etc/passwd")]).0,
        403
    );
    assert_eq!(
        curl(&["--path-as-is", &format!("{base}/%2e%2e/%2e%2e/etc/passwd")]).0,
        403
    );
    assert_eq!(curl(&[&format!("{base}/escape")]).0, 403);
    assert_eq!(curl(&["-X", "POST", &format!("{base}/ok")]).0, 405);
    let (status, _, body) = curl(&[&format!("{base}/ok")]);
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    srv.stop();
}

/// Regression (issue 12.8): HTTP connections that stayed idle or sent half a request were never
/// closed; 20,000 of them took every descriptor. A request head must now arrive within the
/// header timeout, on a new connection and between requests on a kept-alive one.
#[test]
fn idle_and_half_requests_are_closed_after_the_header_timeout() {
    use std::io::Write;
    let root = TempDir::new();
    std::fs::write(root.join("f"), b"hello").unwrap();
    let srv = start_with(root.path(), |s| s.header_timeout = Duration::from_secs(1));
    let port = srv.local_addr().port();
    let mut idle = raw(port);
    let mut half = raw(port);
    half.write_all(b"GET /f HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut kept = raw(port);
    kept.write_all(b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Each is closed within a few header timeouts (bounded for a loaded machine).
    for (what, c) in [
        ("idle", &mut idle),
        ("half", &mut half),
        ("kept-alive", &mut kept),
    ] {
        assert!(
            closed_within(c, Duration::from_secs(10)),
            "{what} connection still open"
        );
    }
    let s = srv.stats();
    // The server's task lets go of its place just after the close the client saw.
    assert!(bootstorm_tests::wait_until(Duration::from_secs(10), || {
        s.open.load(std::sync::atomic::Ordering::Relaxed) == 0
    }));
    assert_eq!(s.requests.load(std::sync::atomic::Ordering::Relaxed), 1);
    // A normal client is served as before.
    let (status, _, body) = curl(&[&format!("http://127.0.0.1:{port}/f")]);
    assert_eq!((status, &body[..]), (200, &b"hello"[..]));
    srv.stop();
}

/// Issue 12.8: a cap per client address and in total; a connection over one is closed at once
/// and counted, and a place freed is taken by the next client.
#[test]
fn connections_over_the_caps_are_closed_at_once() {
    let root = TempDir::new();
    std::fs::write(root.join("f"), b"hello").unwrap();
    let srv = start_with(root.path(), |s| {
        s.max_per_client = 4;
        s.header_timeout = Duration::from_secs(60);
    });
    let port = srv.local_addr().port();
    let mut held: Vec<_> = (0..4).map(|_| raw(port)).collect();
    let s = srv.stats().clone();
    let open = || s.open.load(std::sync::atomic::Ordering::Relaxed);
    assert!(bootstorm_tests::wait_until(
        Duration::from_secs(10),
        || open() == 4
    ));
    let mut fifth = raw(port);
    assert!(
        closed_within(&mut fifth, Duration::from_secs(10)),
        "over the per-client cap"
    );
    assert_eq!(
        s.refused_per_client
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    drop(held.pop());
    assert!(bootstorm_tests::wait_until(
        Duration::from_secs(10),
        || open() == 3
    ));
    let (status, _, _) = curl(&[&format!("http://127.0.0.1:{port}/f")]);
    assert_eq!(status, 200, "a freed place is taken");
    srv.stop();
    // The total cap.
    let srv = start_with(root.path(), |s| {
        s.max_connections = 2;
        s.header_timeout = Duration::from_secs(60);
    });
    let port = srv.local_addr().port();
    let _held: Vec<_> = (0..2).map(|_| raw(port)).collect();
    let s = srv.stats().clone();
    assert!(bootstorm_tests::wait_until(Duration::from_secs(10), || {
        s.open.load(std::sync::atomic::Ordering::Relaxed) == 2
    }));
    let mut third = raw(port);
    assert!(
        closed_within(&mut third, Duration::from_secs(10)),
        "over the total cap"
    );
    assert_eq!(
        s.refused_total.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    srv.stop();
}

/// Regression (issue 12.11): RFC 9112 3.2: an HTTP/1.1 request without Host gets 400 (it got
/// 200). HTTP/1.0 has no Host requirement.
#[test]
fn rfc9112_3_2_http11_without_host_is_400() {
    use std::io::{Read, Write};
    let root = TempDir::new();
    std::fs::write(root.join("f"), b"hello").unwrap();
    let srv = start(root.path());
    let port = srv.local_addr().port();
    for (req, want) in [
        (
            &b"GET /f HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
            "HTTP/1.1 400",
        ),
        (
            b"GET /f HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200",
        ),
        (b"GET /f HTTP/1.0\r\n\r\n", "HTTP/1.0 200"),
    ] {
        let mut c = raw(port);
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(req).unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with(want),
            "{}: {text}",
            String::from_utf8_lossy(req)
        );
    }
    srv.stop();
}

/// Regression (issue 12.8), against the daemon: with the open-file limit at 1,200, 1,000 idle
/// HTTP connections used to take every descriptor (TFTP requests got no answer, the control socket
/// failed with "Too many open files"). HTTP's share is capped now, so TFTP and the control
/// socket keep working, and the idle connections go after the header timeout.
#[test]
fn idle_http_connections_cannot_starve_tftp_or_the_control_socket() {
    let dir = TempDir::new();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("ipxe.efi"), content(20_000)).unwrap();
    let (tftp_port, http_port) = (
        bootstorm_tests::free_port(false),
        bootstorm_tests::free_port(true),
    );
    let sock = dir.join("c.sock");
    let config = dir.join("bootstorm.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
address = "127.0.0.1"
port = 0
control_socket = "{}"

[[subnet]]
network = "198.18.0.0/16"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.1.10"]

[tftp]
root = "{}"
port = {tftp_port}

[http]
port = {http_port}
header_timeout = "3s"
max_connections_per_client = 100000
"#,
            sock.display(),
            root.display()
        ),
    )
    .unwrap();
    let log = dir.join("server.log");
    let script = format!(
        "ulimit -n 1200 && exec '{}' serve --config '{}' --for 120s",
        bootstorm_tests::bin("bootstorm").display(),
        config.display()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script]);
    let _server = bootstorm_tests::spawn_ready(&mut cmd, &log);
    // 1,000 idle connections: more than all 1,200 - 256 = 944 descriptors the server has left,
    // and far more than HTTP's share of them (236). This process needs room for them too.
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < 4096 {
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(4096), hard).unwrap();
    }
    let held: Vec<_> = (0..1000).map(|_| raw(http_port)).collect();
    let stats = || {
        let o = output_within(
            Command::new(bootstorm_tests::bin("bootstorm"))
                .args(["stats", "--socket"])
                .arg(&sock),
            Duration::from_secs(10),
        );
        assert!(
            o.status.success(),
            "control socket: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    assert!(bootstorm_tests::wait_until(Duration::from_secs(10), || {
        stats()["http"]["refused_total"].as_u64().unwrap_or(0) >= 1000 - 236
    }));
    assert!(stats()["http"]["open"].as_u64().unwrap() <= 236);
    // TFTP still serves, byte-exact.
    let out = dir.join("got");
    assert_eq!(
        bootstorm_tests::tftp_get(tftp_port, "ipxe.efi", &out),
        content(20_000)
    );
    // The idle ones are closed after the header timeout; HTTP serves again.
    assert!(bootstorm_tests::wait_until(Duration::from_secs(20), || {
        stats()["http"]["open"].as_u64() == Some(0)
    }));
    drop(held);
    let (status, _, body) = curl(&[&format!("http://127.0.0.1:{http_port}/ipxe.efi")]);
    assert_eq!((status, body.len()), (200, 20_000));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("Too many open files"), "{text}");
}

/// Issue 12.8: a client that asks for a file and then reads nothing holds its connection (and
/// the response's progress) only until the send timeout.
#[test]
fn a_client_that_stops_reading_is_dropped_after_the_send_timeout() {
    use std::io::Write;
    let root = TempDir::new();
    std::fs::write(root.join("big"), content(64 << 20)).unwrap();
    let srv = start_with(root.path(), |s| s.send_timeout = Duration::from_secs(1));
    let port = srv.local_addr().port();
    let mut c = raw(port);
    c.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let s = srv.stats().clone();
    assert!(bootstorm_tests::wait_until(Duration::from_secs(10), || {
        s.requests.load(std::sync::atomic::Ordering::Relaxed) == 1
    }));
    // The socket buffers fill within moments; a second later the server gives up.
    assert!(
        bootstorm_tests::wait_until(Duration::from_secs(20), || {
            s.open.load(std::sync::atomic::Ordering::Relaxed) == 0
        }),
        "a stalled client still holds its connection"
    );
    assert_eq!(s.timed_out.load(std::sync::atomic::Ordering::Relaxed), 1);
    drop(c);
    srv.stop();
}
