//! TFTP against real clients (tftp-hpa, curl, atftp) over loopback, byte-exact; every option
//! combination against the OACK; path attacks.

use bootstorm_daemon::tftpd::{self, TftpRunning, TftpSettings};
use bootstorm_tests::{TempDir, output_within, tool};
use bootstorm_tftp::Limits;
use bootstorm_time::{Clock, Duration as BsDuration};
use bootstorm_wire::tftp::{ErrorCode, Options, Repr};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Deterministic, incompressible-looking content.
pub(crate) fn content(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub(crate) struct Server {
    pub(crate) running: Option<TftpRunning>,
    pub(crate) root: TempDir,
}

impl Server {
    pub(crate) fn start() -> Server {
        Server::start_with(|_| {}, None)
    }

    /// A server on loopback with the test defaults, changed by `tweak`.
    pub(crate) fn start_with(
        tweak: impl FnOnce(&mut TftpSettings),
        mac_of: Option<tftpd::MacLookup>,
    ) -> Server {
        let root = TempDir::new();
        let mut settings = TftpSettings {
            listen: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            root: root.path().to_path_buf(),
            limits: Limits {
                max_blksize: 1468,
                max_windowsize: 64,
                default_timeout: BsDuration::from_secs(1),
                max_retries: 5,
            },
            workers: 2,
            max_file_size: 64 << 20,
            max_transfers: 2000,
            port_range: None,
            upload: None,
            unique_root: None,
            busy_poll: std::time::Duration::from_micros(100),
        };
        tweak(&mut settings);
        let running = tftpd::start(
            &settings,
            Clock::new(),
            Arc::new(AtomicBool::new(false)),
            mac_of,
        )
        .unwrap();
        Server {
            running: Some(running),
            root,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.running.as_ref().unwrap().local_addr().port()
    }

    pub(crate) fn put(&self, name: &str, data: &[u8]) {
        let p = self.root.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(p, data).unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}

const SIZES: &[(&str, usize)] = &[
    ("empty", 0),
    ("s511", 511),
    ("s512", 512),
    ("s513", 513),
    ("one-mib", 1 << 20),
    ("forty-mib", 40 << 20),
];

pub(crate) fn fetch(cmd: &mut Command, out: &std::path::Path, what: &str) -> Vec<u8> {
    let o = output_within(cmd, Duration::from_secs(120));
    assert!(
        o.status.success(),
        "{what}: {:?}\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(out).unwrap_or_else(|e| panic!("{what}: no output file: {e}"))
}

#[test]
fn byte_exact_downloads_with_tftp_hpa_curl_and_atftp() {
    let srv = Server::start();
    let dir = TempDir::new();
    for (i, (name, size)) in SIZES.iter().enumerate() {
        let data = content(*size, i as u32);
        srv.put(&format!("boot/{name}.bin"), &data);
        let remote = format!("boot/{name}.bin");
        each_client_fetches(
            &|p| Command::new(p),
            "127.0.0.1",
            srv.port(),
            &remote,
            &dir,
            &data,
        );
    }
    let s = srv.running.as_ref().unwrap().stats();
    assert_eq!(s.failed.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// Fetches `remote` from `host:port` with tftp-hpa (plain RFC 1350, 512-byte blocks, lockstep;
/// 40 MiB rolls the block number over), curl (blksize 1468, with its tsize and timeout options)
/// and atftp (blksize 1468, windowsize 16, RFC 7440), each run through `cmd` (a command in the
/// right namespace), and checks each copy byte for byte against `data`. curl 7.88 fails on every
/// 0-byte TFTP file ("getpeername() failed with errno 107"), against tftpd-hpa too, so an empty
/// file is left to the other two clients.
pub(crate) fn each_client_fetches(
    cmd: &dyn Fn(&std::path::Path) -> Command,
    host: &str,
    port: u16,
    remote: &str,
    dir: &TempDir,
    data: &[u8],
) {
    let (tftp, curl, atftp) = (
        tool("tftp", "tftp-hpa"),
        tool("curl", "curl"),
        tool("atftp", "atftp"),
    );
    let port = port.to_string();
    let name = remote.replace('/', "_");
    let check = |what: &str, got: Vec<u8>| {
        assert!(
            got == data,
            "{what} {remote}: {} bytes, want {}",
            got.len(),
            data.len()
        );
    };
    let out = dir.join(&format!("{name}.hpa"));
    let got = fetch(
        cmd(&tftp)
            .args([host, &port, "-m", "binary", "-c", "get", remote])
            .arg(&out),
        &out,
        "tftp-hpa",
    );
    check("tftp-hpa", got);
    if !data.is_empty() {
        let out = dir.join(&format!("{name}.curl"));
        let got = fetch(
            cmd(&curl)
                .args([
                    "-sS",
                    "--tftp-blksize",
                    "1468",
                    &format!("tftp://{host}:{port}/{remote}"),
                    "-o",
                ])
                .arg(&out),
            &out,
            "curl",
        );
        check("curl", got);
    }
    let out = dir.join(&format!("{name}.atftp"));
    let got = fetch(
        cmd(&atftp)
            .args([
                "--option",
                "blksize 1468",
                "--option",
                "windowsize 16",
                "--option",
                "tsize",
                "-g",
                "-r",
                remote,
                "-l",
            ])
            .arg(&out)
            .args([host, &port]),
        &out,
        "atftp",
    );
    check("atftp", got);
}

/// Sends one datagram to the listener and returns the first reply and where it came from.
pub(crate) fn ask(port: u16, pkt: &[u8]) -> Option<(Vec<u8>, std::net::SocketAddr)> {
    ask_from(&UdpSocket::bind("127.0.0.1:0").unwrap(), port, pkt)
}

/// [`ask`] from a given socket. A transfer the reply started is ended at once with an ERROR,
/// as a client that gives up does (RFC 1350 7). Regression (issue 12.16): without that the
/// transfer went on retransmitting to this port after the socket was gone, and when the kernel
/// gave the port to the next test socket, that socket's first "reply" was the old transfer's
/// OACK (`every_option_combination_is_answered_exactly` failed so on a loaded machine).
pub(crate) fn ask_from(
    s: &UdpSocket,
    port: u16,
    pkt: &[u8],
) -> Option<(Vec<u8>, std::net::SocketAddr)> {
    // The server answers at once; the margin is for a loaded CI machine.
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send_to(pkt, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 2000];
    let (n, from) = s.recv_from(&mut buf).ok()?;
    if !buf[..n].starts_with(&[0, 5]) {
        let mut err = [0u8; 64];
        let e = Repr::Error {
            code: ErrorCode::NotDefined,
            message: b"test client done",
        };
        let k = e.emit(&mut err).unwrap();
        let _ = s.send_to(&err[..k], from);
    }
    Some((buf[..n].to_vec(), from))
}

pub(crate) fn rrq(name: &[u8], options: &[(&str, &str)]) -> Vec<u8> {
    let mut v = vec![0, 1];
    v.extend_from_slice(name);
    v.extend_from_slice(b"\0octet\0");
    for (k, val) in options {
        v.extend_from_slice(k.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

#[test]
fn every_option_combination_is_answered_exactly() {
    let srv = Server::start();
    srv.put("f", &content(5000, 9));
    let all: [(&str, &str); 5] = [
        ("blksize", "65464"),
        ("tsize", "0"),
        ("timeout", "3"),
        ("windowsize", "500"),
        ("unknownopt", "1"),
    ];
    for mask in 0u32..32 {
        let asked: Vec<(&str, &str)> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, o)| *o)
            .collect();
        let (reply, from) = ask(srv.port(), &rrq(b"f", &asked)).expect("a reply");
        assert_ne!(
            from.port(),
            srv.port(),
            "the transfer answers from its own port (TID)"
        );
        let want = Options {
            blksize: (mask & 1 != 0).then_some(1468),
            tsize: (mask & 2 != 0).then_some(5000),
            timeout: (mask & 4 != 0).then_some(3),
            windowsize: (mask & 8 != 0).then_some(64),
        };
        match Repr::parse(&reply).unwrap() {
            Repr::OAck { options } => assert_eq!(options, want, "asked {asked:?}"),
            Repr::Data { block: 1, data } => {
                assert!(want.is_empty(), "asked {asked:?} but got DATA");
                assert_eq!(data.len(), 512);
            }
            r => panic!("asked {asked:?}: {r:?}"),
        }
    }
}

#[test]
fn path_attacks_get_errors_and_the_server_keeps_serving() {
    let srv = Server::start();
    srv.put("ok.bin", b"fine");
    let outside = TempDir::new();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), srv.root.join("escape")).unwrap();
    let long = vec![b'a'; 600];
    let mut no_nul = vec![0, 1];
    no_nul.extend_from_slice(b"ok.bin");
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        (
            "dot-dot",
            rrq(b"../etc/passwd", &[]),
            ErrorCode::AccessViolation,
        ),
        (
            "deep dot-dot",
            rrq(b"a/../../../etc/passwd", &[]),
            ErrorCode::AccessViolation,
        ),
        (
            "absolute",
            rrq(b"/etc/passwd", &[]),
            ErrorCode::FileNotFound,
        ),
        (
            "symlink out",
            rrq(b"escape", &[]),
            ErrorCode::AccessViolation,
        ),
        (
            "600-byte name",
            rrq(&long, &[]),
            ErrorCode::IllegalOperation,
        ),
        ("missing NUL", no_nul, ErrorCode::IllegalOperation),
        (
            "bad mode",
            b"\x00\x01ok.bin\x00mail\x00".to_vec(),
            ErrorCode::IllegalOperation,
        ),
        (
            "WRQ",
            b"\x00\x02ok.bin\x00octet\x00".to_vec(),
            ErrorCode::AccessViolation,
        ),
        ("directory", rrq(b"/", &[]), ErrorCode::AccessViolation),
    ];
    for (what, pkt, code) in cases {
        let (reply, _) = ask(srv.port(), &pkt).unwrap_or_else(|| panic!("{what}: no reply"));
        match Repr::parse(&reply).unwrap() {
            Repr::Error { code: c, .. } => assert_eq!(c, code, "{what}"),
            r => panic!("{what}: {r:?}"),
        }
    }
    // Still serving.
    let (reply, _) = ask(srv.port(), &rrq(b"ok.bin", &[])).unwrap();
    assert_eq!(
        Repr::parse(&reply).unwrap(),
        Repr::Data {
            block: 1,
            data: b"fine"
        }
    );
}

/// One simulated client of the concurrency test: an RFC 7440 client that acknowledges each full
/// window (or a gap, to have the window resent), checks every block against the file as it
/// arrives, and retries its last packet when nothing came for a while.
struct Sim {
    sock: mio::net::UdpSocket,
    peer: Option<std::net::SocketAddr>,
    next: u16,
    offset: usize,
    in_window: u16,
    done: bool,
    last_progress: std::time::Instant,
    last_sent: Vec<u8>,
}

#[test]
fn a_thousand_concurrent_transfers_of_one_mib() {
    let _heavy = bootstorm_tests::heavy();
    use mio::{Events, Interest, Poll, Token};
    const CLIENTS: usize = 1000;
    const BLK: usize = 1468;
    const WINDOW: u16 = 16;
    let srv = Server::start();
    let data = content(1 << 20, 77);
    srv.put("storm.bin", &data);
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], srv.port()));
    let mut poll = Poll::new().unwrap();
    let req = rrq(b"storm.bin", &[("blksize", "1468"), ("windowsize", "16")]);
    let mut sims: Vec<Sim> = (0..CLIENTS)
        .map(|i| {
            let mut sock = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            poll.registry()
                .register(&mut sock, Token(i), Interest::READABLE)
                .unwrap();
            sock.send_to(&req, server).unwrap();
            Sim {
                sock,
                peer: None,
                next: 1,
                offset: 0,
                in_window: 0,
                done: false,
                last_progress: std::time::Instant::now(),
                last_sent: req.clone(),
            }
        })
        .collect();
    let ack = |b: u16| vec![0, 4, (b >> 8) as u8, b as u8];
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 2000];
    let started = std::time::Instant::now();
    let mut done = 0;
    while done < CLIENTS {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {done} of {CLIENTS} transfers finished in 120 s"
        );
        poll.poll(&mut events, Some(Duration::from_millis(200)))
            .unwrap();
        for ev in events.iter() {
            let sim = &mut sims[ev.token().0];
            while let Ok((n, from)) = sim.sock.recv_from(&mut buf) {
                if sim.peer.is_some_and(|p| p != from) {
                    continue;
                }
                if sim.done {
                    // Dally (RFC 1350 6): a repeated final block means our last ACK was lost.
                    let _ = sim.sock.send_to(&sim.last_sent, from);
                    continue;
                }
                sim.peer = Some(from);
                let reply = match Repr::parse(&buf[..n]).unwrap() {
                    Repr::OAck { options } => {
                        assert_eq!(options.blksize, Some(BLK as u16));
                        assert_eq!(options.windowsize, Some(WINDOW));
                        Some(ack(0))
                    }
                    Repr::Data { block, data: d } if block == sim.next => {
                        assert!(
                            d == &data[sim.offset..sim.offset + d.len()],
                            "bytes differ at {}",
                            sim.offset
                        );
                        sim.offset += d.len();
                        sim.next = sim.next.wrapping_add(1);
                        sim.in_window += 1;
                        sim.last_progress = std::time::Instant::now();
                        if d.len() < BLK {
                            assert_eq!(sim.offset, data.len());
                            sim.done = true;
                            done += 1;
                            Some(ack(block))
                        } else if sim.in_window == WINDOW {
                            sim.in_window = 0;
                            Some(ack(block))
                        } else {
                            None
                        }
                    }
                    Repr::Data { .. } => {
                        // A gap: acknowledge what arrived so the window is resent from there.
                        sim.in_window = 0;
                        Some(ack(sim.next.wrapping_sub(1)))
                    }
                    r => panic!("unexpected {r:?}"),
                };
                if let Some(r) = reply {
                    let _ = sim.sock.send_to(&r, from);
                    sim.last_sent = r;
                }
            }
        }
        // Clients that heard nothing for a second send their last packet again.
        for sim in sims
            .iter_mut()
            .filter(|s| !s.done && s.last_progress.elapsed() > Duration::from_secs(1))
        {
            let _ = sim.sock.send_to(&sim.last_sent, sim.peer.unwrap_or(server));
            sim.last_progress = std::time::Instant::now();
        }
    }
    eprintln!(
        "{CLIENTS} concurrent 1 MiB transfers in {:?}",
        started.elapsed()
    );
    // The server counts a transfer when the final ACK arrives, which may still be in flight.
    let s = srv.running.as_ref().unwrap().stats();
    let completed = || s.completed.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        bootstorm_tests::wait_until(Duration::from_secs(10), || completed() == CLIENTS as u64),
        "server completed {}",
        completed()
    );
    assert_eq!(s.failed.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn transfers_complete_byte_exact_with_five_percent_loss() {
    use bootstorm_tests::{Lab, ServerProc, need_root};
    if !need_root("transfers_complete_byte_exact_with_five_percent_loss") {
        return;
    }
    let atftp = tool("atftp", "atftp");
    let lab = Lab::new();
    let dir = TempDir::new();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let files = [
        ("one.bin", content(1 << 20, 5), "16"),
        ("forty.bin", content(40 << 20, 6), "64"),
    ];
    for (name, data, _) in &files {
        std::fs::write(root.join(name), data).unwrap();
    }
    let config = format!(
        r#"
[server]
interfaces = ["@IF@"]
control_socket = "@CONTROL@"

[[subnet]]
network = "198.18.0.0/16"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.1.9"]

[tftp]
root = "{}"
timeout = "200ms"
retries = 10
"#,
        root.display()
    );
    let srv = ServerProc::start(&lab, &dir, &config);
    lab.add_client_address("198.18.0.2/16");
    lab.udp_loss(5);
    // atftp aborts with "unexpected OACK" when its ACK of our OACK is lost and the OACK comes
    // again (a client should acknowledge it again; atftp gives up instead). That is atftp's flaw,
    // hit in about 5% of runs here, so such a run is repeated, at most twice per file.
    let mut repeated = 0;
    for (name, data, window) in &files {
        let out = dir.join(&format!("{name}.got"));
        let mut attempt = 0;
        let o = loop {
            attempt += 1;
            // atftp ignores repeated blocks without acknowledging them, so a lost ACK costs its
            // own retransmission timer; 1 s keeps the 40 MiB run near a minute (default 5 s: ~3).
            let mut cmd = lab.client_cmd(&atftp);
            cmd.args([
                "--tftp-timeout",
                "1",
                "--option",
                "blksize 1468",
                "--option",
                &format!("windowsize {window}"),
                "-g",
                "-r",
                name,
                "-l",
            ])
            .arg(&out)
            .arg("198.18.0.1");
            let o = output_within(&mut cmd, Duration::from_secs(240));
            let oack_flaw = String::from_utf8_lossy(&o.stderr).contains("unexpected OACK")
                || String::from_utf8_lossy(&o.stdout).contains("unexpected OACK");
            if o.status.success() || !oack_flaw || attempt == 3 {
                break o;
            }
            repeated += 1;
        };
        assert!(
            o.status.success(),
            "{name}: {}\n{}\nserver: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            srv.log_text()
                .lines()
                .filter(|l| l.contains("tftp"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let got = std::fs::read(&out).unwrap();
        assert!(
            &got == data,
            "{name}: {} bytes, want {}",
            got.len(),
            data.len()
        );
    }
    // Counters are added when a transfer ends; one whose last ACK was lost ends only after its
    // retransmissions (about half a minute), so wait for all to end (bounded) before reading them.
    // (This read raced the transfers' ends under a loaded run: data_resent 0 with 2 active.)
    let idle = bootstorm_tests::wait_until(Duration::from_secs(120), || {
        srv.stats()["tftp"]["active"].as_u64() == Some(0)
    });
    let stats = srv.stats();
    assert!(idle, "transfers still running after 120 s: {stats}");
    // One transfer per file, however often a lost OACK made the client repeat its request. The
    // server may not have seen the last ACK (atftp exits right after sending it; 5% are lost),
    // so what counts is what the client received, checked above.
    assert_eq!(stats["tftp"]["started"], 2 + repeated, "{stats}");
    assert!(
        stats["tftp"]["data_resent"].as_u64().unwrap() > 0,
        "the loss was real: {stats}"
    );
}

#[test]
fn transfers_answer_from_the_configured_port_range() {
    // A range of 4 ports: four transfers get one each; a fifth, while they run, gets an ERROR.
    // Below the kernel's ephemeral range (32768-60999), so no client socket takes one by chance.
    let (lo, hi) = (31_000u16, 31_003u16);
    let srv = Server::start_with(|s| s.port_range = Some((lo, hi)), None);
    srv.put("f", &content(100_000, 3));
    let mut ports = Vec::new();
    // The clients stay (their transfers run) until the end of the test.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.send_to(&rrq(b"f", &[]), ("127.0.0.1", srv.port()))
            .unwrap();
        let mut buf = [0u8; 2000];
        let (n, from) = c.recv_from(&mut buf).expect("a reply");
        let reply = buf[..n].to_vec();
        clients.push(c);
        assert!(matches!(
            Repr::parse(&reply).unwrap(),
            Repr::Data { block: 1, .. }
        ));
        assert!(
            (lo..=hi).contains(&from.port()),
            "TID {} outside {lo}-{hi}",
            from.port()
        );
        ports.push(from.port());
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 4, "each running transfer has its own port");
    let (reply, _) = ask(srv.port(), &rrq(b"f", &[])).expect("a reply");
    match Repr::parse(&reply).unwrap() {
        Repr::Error { code, message } => {
            assert_eq!(code, ErrorCode::NotDefined);
            assert!(
                String::from_utf8_lossy(message).contains("out of sockets"),
                "{}",
                String::from_utf8_lossy(message)
            );
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn a_full_server_defers_requests_without_an_error() {
    // max_transfers 1: a second request while the first transfer runs gets no answer at all
    // (an ERROR would end that machine's boot); asked again once the first is done, it is
    // served.
    let srv = Server::start_with(|s| s.max_transfers = 1, None);
    srv.put("f.bin", &content(3000, 9));
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, srv.port());
    let rrq = Repr::Request {
        write: false,
        filename: b"f.bin",
        mode: bootstorm_wire::tftp::Mode::Octet,
        options: Options::default(),
        ignored: 0,
    };
    let mut req = [0u8; 64];
    let n = rrq.emit(&mut req).unwrap();
    let client = || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s
    };
    let (a, b) = (client(), client());
    a.send_to(&req[..n], to).unwrap();
    let mut buf = [0u8; 1024];
    let (len, a_peer) = a.recv_from(&mut buf).unwrap();
    assert!(matches!(
        Repr::parse(&buf[..len]),
        Ok(Repr::Data { block: 1, .. })
    ));
    // The server is full: b hears nothing.
    b.send_to(&req[..n], to).unwrap();
    assert!(b.recv_from(&mut buf).is_err(), "a full server answered");
    let stats = srv.running.as_ref().unwrap().stats();
    assert_eq!(stats.deferred.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stats.refused.load(std::sync::atomic::Ordering::Relaxed), 0);
    // a finishes (3000 bytes: blocks 1-6, the last short)...
    let mut got = Vec::new();
    let mut len = len;
    for block in 1..=6u16 {
        let Ok(Repr::Data { block: blk, data }) = Repr::parse(&buf[..len]) else {
            panic!("expected DATA {block}");
        };
        assert_eq!(blk, block);
        got.extend_from_slice(data);
        let mut ack = [0u8; 4];
        let k = Repr::Ack { block }.emit(&mut ack).unwrap();
        a.send_to(&ack[..k], a_peer).unwrap();
        if block < 6 {
            len = a.recv_from(&mut buf).unwrap().0;
        }
    }
    assert_eq!(got, content(3000, 9));
    // ...and b, asking again as a client does after its timeout, is served.
    let served = (0..20).any(|_| {
        b.send_to(&req[..n], to).unwrap();
        matches!(b.recv_from(&mut buf), Ok((l, _)) if matches!(Repr::parse(&buf[..l]), Ok(Repr::Data { block: 1, .. })))
    });
    assert!(served, "the deferred client was never served");
}
