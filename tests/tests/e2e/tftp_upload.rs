//! TFTP uploads (WRQ) from tftp-hpa, curl and atftp into the upload directory, byte-exact;
//! refused uploads leave nothing behind; per-client roots by IP and by MAC.

use super::tftp::{Server, ask, content, fetch, rrq};
use bootstorm_daemon::tftpd::{MacLookup, UniqueRoot, UploadSettings};
use bootstorm_tests::{TempDir, output_within, tool, wait_until};
use bootstorm_wire::tftp::{ErrorCode, Repr};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A server whose uploads go to a directory of their own (returned, kept alive by the caller).
fn upload_server(overwrite: bool, max_size: u64) -> (Server, TempDir) {
    let up = TempDir::new();
    let dir = up.path().to_path_buf();
    let srv = Server::start_with(
        move |s| {
            s.upload = Some(UploadSettings {
                dir,
                overwrite,
                max_size,
            })
        },
        None,
    );
    (srv, up)
}

fn wrq(name: &[u8], options: &[(&str, &str)]) -> Vec<u8> {
    let mut v = rrq(name, options);
    v[1] = 2;
    v
}

fn error_code(reply: Option<(Vec<u8>, std::net::SocketAddr)>, what: &str) -> ErrorCode {
    let (b, _) = reply.unwrap_or_else(|| panic!("{what}: no answer"));
    match Repr::parse(&b) {
        Ok(Repr::Error { code, .. }) => code,
        other => panic!("{what}: expected an ERROR, got {other:?}"),
    }
}

/// Names in `dir` (not recursive), sorted.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn run_ok(cmd: &mut Command, what: &str) {
    let o = output_within(cmd, Duration::from_secs(120));
    assert!(
        o.status.success(),
        "{what}: {:?}\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn uploads_from_tftp_hpa_curl_and_atftp_are_byte_exact() {
    let (tftp, curl, atftp) = (
        tool("tftp", "tftp-hpa"),
        tool("curl", "curl"),
        tool("atftp", "atftp"),
    );
    let (srv, up) = upload_server(false, 64 << 20);
    let port = srv.port().to_string();
    let local = TempDir::new();
    let mut want = Vec::new();
    let sizes: &[(&str, usize)] = &[
        ("empty", 0),
        ("s511", 511),
        ("s512", 512),
        ("s513", 513),
        ("one-mib", 1 << 20),
        ("forty-mib", 40 << 20),
    ];
    for (i, (name, size)) in sizes.iter().enumerate() {
        let data = content(*size, 100 + i as u32);
        let src = local.join(&format!("{name}.bin"));
        std::fs::write(&src, &data).unwrap();
        // tftp-hpa: plain RFC 1350, lockstep at 512; 40 MiB rolls the block number over.
        let remote = format!("hpa-{name}.bin");
        run_ok(
            Command::new(&tftp)
                .args(["127.0.0.1", &port, "-m", "binary", "-c", "put"])
                .arg(&src)
                .arg(&remote),
            "tftp-hpa put",
        );
        want.push((remote, data.clone()));
        if *size > 40_000_000 {
            continue; // one client is enough for the big one
        }
        // curl -T with blksize 1468 (curl 7.88 cannot do 0-byte TFTP files at all).
        if *size > 0 {
            let remote = format!("curl-{name}.bin");
            run_ok(
                Command::new(&curl)
                    .args(["-sS", "--tftp-blksize", "1468", "-T"])
                    .arg(&src)
                    .arg(format!("tftp://127.0.0.1:{port}/{remote}")),
                "curl -T",
            );
            want.push((remote, data.clone()));
        }
        // atftp with blksize 1468 and windowsize 16 (RFC 7440: one ACK per window).
        let remote = format!("atftp-{name}.bin");
        run_ok(
            Command::new(&atftp)
                .args(["--option", "blksize 1468", "--option", "windowsize 16"])
                .args(["-p", "-r", &remote, "-l"])
                .arg(&src)
                .args(["127.0.0.1", &port]),
            "atftp -p",
        );
        want.push((remote, data));
    }
    // The final ACK leaves after the file is in place, so the files are there now.
    for (remote, data) in &want {
        let got = std::fs::read(up.join(remote)).unwrap_or_else(|e| panic!("{remote}: {e}"));
        assert!(
            got == *data,
            "{remote}: {} bytes, want {}",
            got.len(),
            data.len()
        );
    }
    let mut names: Vec<String> = want.iter().map(|w| w.0.clone()).collect();
    names.sort();
    assert_eq!(listing(up.path()), names, "no temporary files left");
    // Each transfer lingers a second for a repeated last block before it counts as done.
    let s = srv.running.as_ref().unwrap().stats();
    wait_until(Duration::from_secs(10), || {
        s.uploaded.load(Ordering::Relaxed) == want.len() as u64
    });
    assert_eq!(s.uploaded.load(Ordering::Relaxed), want.len() as u64);
    assert_eq!(s.failed.load(Ordering::Relaxed), 0);
    // An uploaded file is not in the boot root: nothing there to fetch.
    let (code, _) = (
        error_code(
            ask(srv.port(), &rrq(b"hpa-s511.bin", &[])),
            "fetch an upload",
        ),
        (),
    );
    assert_eq!(code, ErrorCode::FileNotFound);
}

#[test]
fn refused_uploads_change_nothing_and_leave_nothing_behind() {
    let tftp = tool("tftp", "tftp-hpa");
    // Uploads off: every WRQ is refused.
    let plain = Server::start();
    assert_eq!(
        error_code(ask(plain.port(), &wrq(b"x.bin", &[])), "uploads off"),
        ErrorCode::AccessViolation
    );
    assert!(listing(plain.root.path()).is_empty());
    drop(plain);

    let (srv, up) = upload_server(false, 4096);
    let port = srv.port();
    std::fs::write(up.join("exists.bin"), b"original").unwrap();
    std::fs::create_dir(up.join("sub")).unwrap();
    let outside = TempDir::new();
    std::os::unix::fs::symlink(outside.path(), up.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.join("target"), up.join("dangling")).unwrap();
    let cases: &[(&str, Vec<u8>, ErrorCode)] = &[
        (
            "existing file",
            wrq(b"exists.bin", &[]),
            ErrorCode::FileExists,
        ),
        (
            "dot-dot",
            wrq(b"../escape.bin", &[]),
            ErrorCode::AccessViolation,
        ),
        (
            "directory missing",
            wrq(b"/etc/passwd", &[]),
            ErrorCode::FileNotFound,
        ),
        (
            "symlinked directory out",
            wrq(b"out/x.bin", &[]),
            ErrorCode::AccessViolation,
        ),
        (
            "symlink as the name",
            wrq(b"dangling", &[]),
            ErrorCode::AccessViolation,
        ),
        (
            "a directory as the name",
            wrq(b"sub", &[]),
            ErrorCode::AccessViolation,
        ),
        (
            "tsize over the limit",
            wrq(b"big.bin", &[("tsize", "5000")]),
            ErrorCode::DiskFull,
        ),
    ];
    for (what, pkt, want) in cases {
        assert_eq!(error_code(ask(port, pkt), what), *want, "{what}");
    }
    // Over the limit without tsize: the transfer starts and is cut off with ERROR 3.
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.send_to(&wrq(b"big.bin", &[]), ("127.0.0.1", port))
        .unwrap();
    let mut buf = [0u8; 600];
    let (n, tid) = c.recv_from(&mut buf).unwrap();
    assert_eq!(Repr::parse(&buf[..n]).unwrap(), Repr::Ack { block: 0 });
    let block = [0x5au8; 512];
    let mut answer = None;
    for b in 1..=10u16 {
        let mut p = vec![0, 3];
        p.extend_from_slice(&b.to_be_bytes());
        p.extend_from_slice(&block);
        c.send_to(&p, tid).unwrap();
        let (n, _) = c.recv_from(&mut buf).unwrap();
        match Repr::parse(&buf[..n]).unwrap() {
            Repr::Ack { block } => assert_eq!(block, b),
            Repr::Error { code, .. } => {
                answer = Some((b, code));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        answer,
        Some((9, ErrorCode::DiskFull)),
        "block 9 passes 4096 bytes"
    );
    std::fs::write(outside.join("marker"), b"").unwrap();
    // Nothing changed and nothing was left behind, inside or outside.
    assert_eq!(std::fs::read(up.join("exists.bin")).unwrap(), b"original");
    assert_eq!(listing(up.path()), ["dangling", "exists.bin", "out", "sub"]);
    assert_eq!(listing(outside.path()), ["marker"]);
    assert!(listing(&up.join("sub")).is_empty());
    // And the server keeps taking uploads.
    let src = TempDir::new();
    std::fs::write(src.join("f"), b"after the attacks").unwrap();
    run_ok(
        Command::new(&tftp)
            .args(["127.0.0.1", &port.to_string(), "-m", "binary", "-c", "put"])
            .arg(src.join("f"))
            .arg("sub/after.bin"),
        "tftp-hpa put",
    );
    assert_eq!(
        std::fs::read(up.join("sub/after.bin")).unwrap(),
        b"after the attacks"
    );
    drop(srv);

    // With overwrite on, an existing file is replaced (atomically, by rename).
    let (srv, up) = upload_server(true, 4096);
    std::fs::write(up.join("exists.bin"), b"original").unwrap();
    run_ok(
        Command::new(&tftp)
            .args([
                "127.0.0.1",
                &srv.port().to_string(),
                "-m",
                "binary",
                "-c",
                "put",
            ])
            .arg(src.join("f"))
            .arg("exists.bin"),
        "tftp-hpa put over",
    );
    assert_eq!(
        std::fs::read(up.join("exists.bin")).unwrap(),
        b"after the attacks"
    );
    assert_eq!(listing(up.path()), ["exists.bin"]);
}

/// The first DATA block a request from `src` gets (no options, so the file starts at once).
fn first_block(src: Ipv4Addr, port: u16, name: &[u8]) -> Vec<u8> {
    let c = UdpSocket::bind((src, 0)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.send_to(&rrq(name, &[]), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 600];
    let (n, _) = c.recv_from(&mut buf).unwrap();
    match Repr::parse(&buf[..n]).unwrap() {
        Repr::Data { block: 1, data } => data.to_vec(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn per_client_roots_by_ip_and_by_mac_fall_back_to_the_root() {
    let tftp = tool("tftp", "tftp-hpa");
    let one = Ipv4Addr::new(127, 0, 0, 1);
    let two = Ipv4Addr::new(127, 0, 0, 2);
    let srv = Server::start_with(|s| s.unique_root = Some(UniqueRoot::Ip), None);
    srv.put("127.0.0.1/host.cfg", b"for 127.0.0.1");
    srv.put("host.cfg", b"shared");
    srv.put("common.bin", b"common");
    assert_eq!(first_block(one, srv.port(), b"host.cfg"), b"for 127.0.0.1");
    assert_eq!(first_block(two, srv.port(), b"host.cfg"), b"shared");
    assert_eq!(first_block(one, srv.port(), b"common.bin"), b"common");
    // A real client too (tftp-hpa sends from 127.0.0.1).
    let out = TempDir::new();
    let got = fetch(
        Command::new(&tftp)
            .args([
                "127.0.0.1",
                &srv.port().to_string(),
                "-c",
                "get",
                "host.cfg",
            ])
            .arg(out.join("h")),
        &out.join("h"),
        "tftp-hpa",
    );
    assert_eq!(got, b"for 127.0.0.1");
    // The client's directory is no way out of the root.
    assert_eq!(
        error_code(
            ask(srv.port(), &rrq(b"../host.cfg", &[])),
            "dot-dot from a client dir"
        ),
        ErrorCode::AccessViolation
    );
    drop(srv);

    // By MAC: the lookup (the DHCP lease table in the daemon) names 127.0.0.1's MAC; 127.0.0.2
    // has none (and no neighbour entry on loopback), so it gets the shared file.
    let mac_of: MacLookup =
        Arc::new(move |ip| (ip == one).then(|| vec![0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01]));
    let srv = Server::start_with(|s| s.unique_root = Some(UniqueRoot::Mac), Some(mac_of));
    srv.put("52-54-00-aa-bb-01/host.cfg", b"for 52:54:00:aa:bb:01");
    srv.put("host.cfg", b"shared");
    srv.put("common.bin", b"common");
    assert_eq!(
        first_block(one, srv.port(), b"host.cfg"),
        b"for 52:54:00:aa:bb:01"
    );
    assert_eq!(first_block(two, srv.port(), b"host.cfg"), b"shared");
    assert_eq!(first_block(one, srv.port(), b"common.bin"), b"common");
}
