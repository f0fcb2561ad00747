//! The server core with made-up time: whole transfers, loss both ways, policy.

use super::*;
use bootstorm_time::Duration;
use std::net::Ipv4Addr;
use std::sync::Mutex;

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn client(n: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, n), 2000 + u16::from(n))
}

fn limits() -> Limits {
    Limits {
        max_blksize: 1468,
        max_windowsize: 64,
        default_timeout: Duration::from_secs(1),
        max_retries: 5,
    }
}

fn core(max_transfers: usize) -> Server {
    Server::new(
        Config {
            limits: limits(),
            max_transfers,
        },
        Arc::new(Counters::default()),
    )
}

/// Uploads as they ended: name, bytes, stored (false: discarded).
type Ended = Arc<Mutex<Vec<(String, Vec<u8>, bool)>>>;

/// Files from memory; uploads into shared vectors.
#[derive(Default)]
struct Mem {
    files: HashMap<Vec<u8>, Arc<[u8]>>,
    uploads: Ended,
}

struct VecSink {
    name: String,
    bytes: Vec<u8>,
    done: Ended,
}

impl UploadSink for VecSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }
    fn commit(&mut self) -> Result<(), Refusal> {
        let b = std::mem::take(&mut self.bytes);
        self.done.lock().unwrap().push((self.name.clone(), b, true));
        Ok(())
    }
    fn discard(&mut self) {
        self.done
            .lock()
            .unwrap()
            .push((self.name.clone(), Vec::new(), false));
    }
}

impl Host for Mem {
    fn read_file(&mut self, _: SocketAddrV4, name: &[u8], _: bool) -> Result<Arc<[u8]>, Refusal> {
        self.files
            .get(name)
            .cloned()
            .ok_or_else(|| Refusal::new(ErrorCode::FileNotFound, "no such file"))
    }
    fn open_upload(
        &mut self,
        _: SocketAddrV4,
        name: &[u8],
        _: Option<u64>,
    ) -> Result<(Box<dyn UploadSink>, u64), Refusal> {
        Ok((
            Box::new(VecSink {
                name: String::from_utf8_lossy(name).into_owned(),
                bytes: Vec::new(),
                done: self.uploads.clone(),
            }),
            1 << 20,
        ))
    }
}

fn rrq(name: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    let mut b = vec![0, 1];
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"\0octet\0");
    for (k, v) in opts {
        b.extend_from_slice(k.as_bytes());
        b.push(0);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
    }
    b
}

fn ack(block: u16) -> Vec<u8> {
    let mut b = vec![0, 4];
    b.extend_from_slice(&block.to_be_bytes());
    b
}

/// Everything due now.
fn drain(s: &mut Server, now: Instant) -> Vec<(Transmit, Vec<u8>)> {
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit(now, &mut buf) {
        out.push((t, buf[..t.len].to_vec()));
    }
    out
}

/// A windowed download of `size` bytes with every `nth` datagram lost in each direction: the
/// client acknowledges the last block of a window in order (RFC 7440), or the last in-order
/// block when one is missing; time advances only to the server's next deadline when nothing is
/// in flight. Returns the file as received and the simulated time it took.
fn download(size: usize, window: u16, nth_lost: usize) -> (Vec<u8>, u64, u64) {
    let mut s = core(10);
    let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut host = Mem::default();
    host.files.insert(b"boot.efi".to_vec(), data.clone().into());
    let peer = client(1);
    let mut now = Instant::from_millis(1_000);
    let w = window.to_string();
    let a = s.handle_request(
        now,
        peer,
        LOCAL,
        &rrq("boot.efi", &[("blksize", "512"), ("windowsize", &w)]),
        &mut host,
    );
    let Accepted::Transfer { id, .. } = a else {
        panic!("{a:?}")
    };
    let mut got = Vec::new();
    let (mut expected, mut sent_count, mut lost) = (1u16, 0usize, 0u64);
    let mut in_window = 0u16;
    let mut done = false;
    for _ in 0..100_000 {
        let out = drain(&mut s, now);
        let mut acks = Vec::new();
        for (t, bytes) in out {
            assert_eq!(t.from, Source::Transfer(id));
            sent_count += 1;
            if nth_lost > 0 && sent_count % nth_lost == 0 {
                lost += 1;
                continue; // lost on the way to the client
            }
            match Repr::parse(&bytes).unwrap() {
                Repr::OAck { .. } => acks.push(0),
                Repr::Data { block, data } if block == expected => {
                    got.extend_from_slice(data);
                    in_window += 1;
                    let last = data.len() < 512;
                    if last || in_window == window {
                        acks.push(block);
                        in_window = 0;
                    }
                    expected = expected.wrapping_add(1);
                    done |= last;
                }
                Repr::Data { .. } => {
                    // A gap: acknowledge what arrived in order (RFC 7440 4).
                    acks.push(expected.wrapping_sub(1));
                    in_window = 0;
                }
                other => panic!("{other:?}"),
            }
        }
        let fed = !acks.is_empty();
        for b in acks {
            sent_count += 1;
            if nth_lost > 0 && sent_count % nth_lost == 0 {
                lost += 1;
                continue; // lost on the way to the server
            }
            s.handle_datagram(now, id, peer, &ack(b));
        }
        if let Some(f) = s.poll_event() {
            assert_eq!(f.state, State::Done, "{f:?}");
            assert!(done);
            return (
                got,
                now.saturating_since(Instant::from_millis(1_000))
                    .as_millis(),
                lost,
            );
        }
        if !fed {
            // Nothing in flight: the next thing to happen is the server's deadline.
            now = s.poll_timeout().expect("a running transfer has a deadline");
            s.handle_timeout(now);
        }
    }
    panic!("the transfer never ended");
}

#[test]
fn windowed_download_survives_loss_both_ways() {
    let (got, ms, lost) = download(300_000, 8, 0);
    assert_eq!(got.len(), 300_000);
    assert_eq!(ms, 0, "no loss: no timeouts, no simulated time passes");
    assert_eq!(lost, 0);
    // Every 13th datagram lost, either way: the file still arrives whole, by retransmission.
    let (got, ms, lost) = download(300_000, 8, 13);
    let want: Vec<u8> = (0..300_000)
        .map(|i: usize| (i * 7 + i / 251) as u8)
        .collect();
    assert!(got == want, "byte-exact despite loss");
    assert!(lost > 20, "{lost}");
    assert!(
        ms >= 1_000,
        "recovering took retransmission timeouts: {ms} ms"
    );
    // Lockstep (windowsize 1) with loss too.
    let (got, _, _) = download(20_000, 1, 7);
    assert_eq!(got.len(), 20_000);
}

#[test]
fn policy_refuses_defers_and_ignores_duplicates() {
    let mut s = core(1);
    let mut host = Mem::default();
    host.files.insert(b"a".to_vec(), vec![1u8; 100].into());
    let now = Instant::from_millis(5);
    // Not found: ERROR 1 from a fresh port, counted.
    assert_eq!(
        s.handle_request(now, client(1), LOCAL, &rrq("nope", &[]), &mut host),
        Accepted::Nothing
    );
    let out = drain(&mut s, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.from, Source::Fresh(LOCAL));
    assert_eq!(out[0].0.to, client(1));
    assert!(matches!(
        Repr::parse(&out[0].1).unwrap(),
        Repr::Error {
            code: ErrorCode::FileNotFound,
            ..
        }
    ));
    // A malformed request: ERROR 4. A stray ACK to the listener: nothing.
    s.handle_request(now, client(2), LOCAL, &[0, 1, b'x'], &mut host);
    s.handle_request(now, client(2), LOCAL, &ack(3), &mut host);
    let out = drain(&mut s, now);
    assert_eq!(out.len(), 1);
    assert!(matches!(
        Repr::parse(&out[0].1).unwrap(),
        Repr::Error {
            code: ErrorCode::IllegalOperation,
            ..
        }
    ));
    // One transfer; the same client again is a duplicate; another client is deferred (full).
    let a = s.handle_request(
        now,
        client(3),
        LOCAL,
        &rrq("a", &[("blksize", "7")]),
        &mut host,
    );
    assert!(matches!(a, Accepted::Transfer { read: true, .. }));
    assert_eq!(s.counters().bad_options.load(Ordering::Relaxed), 1);
    assert_eq!(
        s.handle_request(now, client(3), LOCAL, &rrq("a", &[]), &mut host),
        Accepted::Nothing
    );
    assert_eq!(
        s.handle_request(now, client(4), LOCAL, &rrq("a", &[]), &mut host),
        Accepted::Nothing
    );
    let c = s.counters().clone();
    assert_eq!(c.duplicates.load(Ordering::Relaxed), 1);
    assert_eq!(c.deferred.load(Ordering::Relaxed), 1);
    assert_eq!(c.refused.load(Ordering::Relaxed), 2);
    assert_eq!(c.active.load(Ordering::Relaxed), 1);
    // A stranger at the transfer's port: ERROR 5 from that port; the transfer goes on.
    let Accepted::Transfer { id, .. } = a else {
        unreachable!()
    };
    let first = drain(&mut s, now);
    assert_eq!(
        first.len(),
        1,
        "one DATA block (100 bytes, no options granted)"
    );
    s.handle_datagram(now, id, client(9), &ack(1));
    let out = drain(&mut s, now);
    assert_eq!(out[0].0.from, Source::Transfer(id));
    assert_eq!(out[0].0.to, client(9));
    assert_eq!(c.wrong_tid.load(Ordering::Relaxed), 1);
    s.handle_datagram(now, id, client(3), &ack(1));
    assert!(drain(&mut s, now).is_empty());
    let f = s.poll_event().expect("finished");
    assert_eq!((f.state, f.bytes, f.read), (State::Done, 100, true));
    assert_eq!(c.active.load(Ordering::Relaxed), 0);
    assert_eq!(c.completed.load(Ordering::Relaxed), 1);
    // The port could not be had: the client gets an ERROR, and the budget is given back.
    let a = s.handle_request(now, client(5), LOCAL, &rrq("a", &[]), &mut host);
    let Accepted::Transfer { id, .. } = a else {
        panic!("{a:?}")
    };
    s.abandon(
        id,
        LOCAL,
        &Refusal::new(ErrorCode::NotDefined, "server out of sockets"),
    );
    let out = drain(&mut s, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.from, Source::Fresh(LOCAL));
    assert_eq!(c.active.load(Ordering::Relaxed), 0);
    assert!(s.is_empty());
}

#[test]
fn an_upload_is_committed_before_its_final_ack() {
    let mut s = core(4);
    let mut host = Mem::default();
    let uploads = host.uploads.clone();
    let now = Instant::from_millis(1);
    let mut wrq = rrq("log.txt", &[]);
    wrq[1] = 2;
    let a = s.handle_request(now, client(1), LOCAL, &wrq, &mut host);
    let Accepted::Transfer {
        id, read: false, ..
    } = a
    else {
        panic!("{a:?}")
    };
    let out = drain(&mut s, now);
    assert!(matches!(
        Repr::parse(&out[0].1).unwrap(),
        Repr::Ack { block: 0 }
    ));
    let body: Vec<u8> = (0..700u32).map(|i| i as u8).collect();
    for (i, chunk) in body.chunks(512).enumerate() {
        let mut d = vec![0, 3];
        d.extend_from_slice(&(i as u16 + 1).to_be_bytes());
        d.extend_from_slice(chunk);
        s.handle_datagram(now, id, client(1), &d);
        let out = drain(&mut s, now);
        let last = chunk.len() < 512;
        // The final ACK leaves only once the file was committed.
        assert_eq!(uploads.lock().unwrap().len(), usize::from(last));
        assert!(matches!(
            Repr::parse(&out.last().unwrap().1).unwrap(),
            Repr::Ack { block } if block == i as u16 + 1
        ));
    }
    let done = uploads.lock().unwrap().clone();
    assert_eq!(done, vec![("log.txt".to_string(), body, true)]);
}
