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
    let s = HttpSettings {
        listen: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        root: root.to_path_buf(),
        workers: 2,
        max_file_size: 1 << 30,
    };
    httpd::start(&s, Arc::new(AtomicBool::new(false))).unwrap()
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
