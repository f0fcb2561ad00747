use super::*;
use crate::negotiate;
use bootstorm_wire::tftp::Options;

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 + i / 241) as u8).collect()
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// What the simulated client saw.
#[derive(Debug, Default)]
struct Seen {
    acks: Vec<u16>,
    oack: Option<Options>,
    error: Option<ErrorCode>,
    data_sent: u64,
}

/// Runs an upload of `file` with a simulated RFC 7440 client (sends a window, resends it from the
/// block after the last ACK on any ACK or on its own 3 s timeout). `lose_data(i)` / `lose_ack(i)`
/// drop the i-th DATA / ACK packet. Returns the bytes the server handed over, the transfer and
/// what the client saw.
fn upload(
    file: &[u8],
    req: Options,
    netascii: bool,
    max_size: u64,
    lose_data: impl Fn(u64) -> bool,
    lose_ack: impl Fn(u64) -> bool,
) -> (Vec<u8>, WriteTransfer, Seen) {
    let limits = Limits::default();
    let params = negotiate(&req, req.tsize.unwrap_or(0), &limits);
    let bs = usize::from(params.blksize);
    let ws = u64::from(params.windowsize);
    let last = (file.len() / bs) as u64 + 1;
    let mut w = WriteTransfer::new(params, netascii, max_size, &limits);
    let mut out = Vec::new();
    let mut seen = Seen::default();
    let mut now = 0u64;
    let mut buf = vec![0u8; 2048];
    // Client: highest block acknowledged (absolute), highest sent in this window round.
    let (mut acked, mut sent_upto): (Option<u64>, u64) = (None, 0);
    let mut client_deadline = 3000u64;
    let (mut n_data, mut n_ack) = (0u64, 0u64);
    for _round in 0..2_000_000 {
        let mut moved = false;
        while let Some(n) = w.poll_transmit(t(now), &mut buf) {
            moved = true;
            n_ack += 1;
            if lose_ack(n_ack) {
                continue;
            }
            match Repr::parse(&buf[..n]).unwrap() {
                Repr::Ack { block } => {
                    seen.acks.push(block);
                    let base = acked.unwrap_or(0);
                    let abs = base + u64::from(block.wrapping_sub(base as u16));
                    if abs <= base + ws && (acked.is_none() || abs >= base) {
                        acked = Some(abs);
                        sent_upto = abs;
                        client_deadline = now + 3000;
                    }
                }
                Repr::OAck { options } => {
                    seen.oack = Some(options);
                    if acked.is_none() {
                        acked = Some(0);
                        sent_upto = 0;
                        client_deadline = now + 3000;
                    }
                }
                Repr::Error { code, .. } => seen.error = Some(code),
                other => panic!("server sent {other:?}"),
            }
        }
        out.extend_from_slice(w.pending());
        w.clear_pending();
        if w.state() != State::Running {
            break;
        }
        if let Some(a) = acked.filter(|&a| a < last) {
            while sent_upto < (a + ws).min(last) {
                sent_upto += 1;
                let i = sent_upto;
                let start = (i as usize - 1) * bs;
                let chunk = &file[start.min(file.len())..(start + bs).min(file.len())];
                moved = true;
                n_data += 1;
                seen.data_sent += 1;
                if !lose_data(n_data) {
                    w.handle_data(t(now), i as u16, chunk);
                }
            }
        }
        if !moved {
            // Nothing in flight: time passes to the next deadline.
            let server = w.poll_timeout().map(|d| d.as_millis()).unwrap_or(u64::MAX);
            now = server.min(client_deadline).max(now + 1);
            w.handle_timeout(t(now));
            if now >= client_deadline {
                client_deadline = now + 3000;
                if let Some(a) = acked.filter(|&a| a < last) {
                    sent_upto = a;
                }
            }
        }
    }
    (out, w, seen)
}

fn opts(blksize: Option<u16>, windowsize: Option<u16>) -> Options {
    Options {
        blksize,
        windowsize,
        ..Options::default()
    }
}

#[test]
fn plain_uploads_of_edge_sizes_are_exact_and_acked_block_by_block() {
    for size in [0, 1, 511, 512, 513, 1024, 100_000] {
        let file = data(size);
        let (got, w, seen) = upload(
            &file,
            Options::default(),
            false,
            1 << 30,
            |_| false,
            |_| false,
        );
        assert_eq!(got, file, "size {size}");
        assert_eq!(w.state(), State::Done);
        assert!(w.is_complete());
        assert_eq!(w.size(), size as u64);
        let blocks = size / 512 + 1;
        // ACK 0, then one per block: lockstep.
        let want: Vec<u16> = (0..=blocks as u16).collect();
        assert_eq!(seen.acks, want, "size {size}");
        assert_eq!(seen.oack, None);
        assert_eq!(seen.data_sent, blocks as u64);
    }
}

#[test]
fn options_get_an_oack_and_windows_get_one_ack_each() {
    let file = data(1468 * 40 + 7);
    let (got, w, seen) = upload(
        &file,
        Options {
            tsize: Some(file.len() as u64),
            ..opts(Some(1468), Some(16))
        },
        false,
        1 << 30,
        |_| false,
        |_| false,
    );
    assert_eq!(got, file);
    assert_eq!(w.state(), State::Done);
    assert_eq!(
        seen.oack,
        Some(Options {
            blksize: Some(1468),
            windowsize: Some(16),
            tsize: Some(file.len() as u64),
            timeout: None,
        })
    );
    // 41 blocks in windows of 16: ACK 16, 32, then the short last block 41.
    assert_eq!(seen.acks, vec![16, 32, 41]);
}

#[test]
fn block_numbers_roll_over() {
    // 70,000 blocks of 8 bytes: past 65535.
    let file = data(8 * 70_000 + 3);
    let (got, w, _) = upload(
        &file,
        opts(Some(8), Some(64)),
        false,
        1 << 30,
        |_| false,
        |_| false,
    );
    assert_eq!(w.state(), State::Done);
    assert!(got == file, "rolled-over upload differs");
}

#[test]
fn losses_in_both_directions_are_recovered_without_duplicates() {
    for (ws, every_d, every_a) in [(1, 7, 5), (8, 11, 3), (64, 97, 2), (16, 13, 13)] {
        let file = data(1468 * 300 + 100);
        let (got, w, seen) = upload(
            &file,
            opts(Some(1468), Some(ws)),
            false,
            1 << 30,
            |i| i % every_d == 0,
            |i| i % every_a == 0,
        );
        assert_eq!(w.state(), State::Done, "ws {ws}: {seen:?}");
        assert!(got == file, "ws {ws}: upload differs");
    }
}

#[test]
fn a_resent_window_gets_one_ack_not_one_per_packet() {
    let limits = Limits::default();
    let params = negotiate(&opts(Some(512), Some(4)), 0, &limits);
    let mut w = WriteTransfer::new(params, false, 1 << 20, &limits);
    let mut buf = [0u8; 600];
    assert!(w.poll_transmit(t(0), &mut buf).is_some()); // OACK
    let block = [7u8; 512];
    for b in 1..=4 {
        w.handle_data(t(1), b, &block);
    }
    assert!(w.poll_transmit(t(1), &mut buf).is_some()); // ACK 4 (lost on the way, say)
    // The client resends the window: four old blocks, one ACK.
    for b in 1..=4 {
        w.handle_data(t(2), b, &block);
    }
    let n = w.poll_transmit(t(2), &mut buf).unwrap();
    assert_eq!(Repr::parse(&buf[..n]).unwrap(), Repr::Ack { block: 4 });
    assert!(w.poll_transmit(t(2), &mut buf).is_none());
    assert_eq!(
        w.pending().len(),
        4 * 512,
        "repeated blocks are not stored twice"
    );
    // A block ahead of a lost one: ACK of the last in-order block, so the client goes back.
    w.handle_data(t(200), 6, &block);
    let n = w.poll_transmit(t(200), &mut buf).unwrap();
    assert_eq!(Repr::parse(&buf[..n]).unwrap(), Repr::Ack { block: 4 });
    assert_eq!(w.pending().len(), 4 * 512);
}

#[test]
fn the_last_ack_is_repeated_while_dallying_then_the_transfer_ends() {
    let limits = Limits::default();
    let params = negotiate(&Options::default(), 0, &limits);
    let mut w = WriteTransfer::new(params, false, 1 << 20, &limits);
    let mut buf = [0u8; 600];
    w.poll_transmit(t(0), &mut buf).unwrap();
    w.handle_data(t(10), 1, b"short");
    assert!(w.is_complete());
    assert_eq!(w.state(), State::Running, "dallying");
    w.poll_transmit(t(10), &mut buf).unwrap();
    // The ACK was lost: the client sends block 1 again and gets ACK 1 again.
    w.handle_data(t(500), 1, b"short");
    let n = w.poll_transmit(t(500), &mut buf).unwrap();
    assert_eq!(Repr::parse(&buf[..n]).unwrap(), Repr::Ack { block: 1 });
    assert_eq!(w.pending(), b"short");
    let d = w.poll_timeout().unwrap();
    w.handle_timeout(d);
    assert_eq!(w.state(), State::Done);
    assert!(w.poll_transmit(d, &mut buf).is_none());
}

#[test]
fn uploads_over_the_limit_are_refused_with_disk_full() {
    let file = data(5000);
    let (got, w, seen) = upload(&file, Options::default(), false, 4096, |_| false, |_| false);
    assert_eq!(w.state(), State::Failed(Failure::TooLarge));
    assert_eq!(seen.error, Some(ErrorCode::DiskFull));
    assert!(got.len() <= 4096);
}

#[test]
fn a_silent_client_is_abandoned_after_backed_off_retries() {
    let limits = Limits::default();
    let params = negotiate(&Options::default(), 0, &limits);
    let mut w = WriteTransfer::new(params, false, 1 << 20, &limits);
    let mut buf = [0u8; 600];
    let mut sent_at = Vec::new();
    let mut now = t(0);
    for _ in 0..20 {
        while let Some(n) = w.poll_transmit(now, &mut buf) {
            sent_at.push((
                now.as_millis(),
                Repr::parse(&buf[..n]).unwrap().buffer_len(),
            ));
        }
        match w.poll_timeout() {
            Some(d) => {
                now = d;
                w.handle_timeout(now);
            }
            None => break,
        }
    }
    assert_eq!(w.state(), State::Failed(Failure::Timeout));
    // ACK 0 and 5 retries at 1, 2, 4, 8 s gaps (then the cap of 10 s), then an ERROR.
    let times: Vec<u64> = sent_at.iter().map(|s| s.0).collect();
    assert_eq!(times, vec![0, 1000, 3000, 7000, 15000, 25000, 35000]);
}

#[test]
fn bad_data_and_client_errors_end_the_transfer() {
    let limits = Limits::default();
    let params = negotiate(&Options::default(), 0, &limits);
    let mut w = WriteTransfer::new(params, false, 1 << 20, &limits);
    let mut buf = [0u8; 600];
    w.poll_transmit(t(0), &mut buf).unwrap();
    w.handle_data(t(1), 1, &[0u8; 513]);
    assert_eq!(w.state(), State::Failed(Failure::Protocol));
    let n = w.poll_transmit(t(1), &mut buf).unwrap();
    assert!(matches!(
        Repr::parse(&buf[..n]).unwrap(),
        Repr::Error {
            code: ErrorCode::IllegalOperation,
            ..
        }
    ));
    let mut w = WriteTransfer::new(params, false, 1 << 20, &limits);
    w.handle_error(ErrorCode::NotDefined);
    assert_eq!(
        w.state(),
        State::Failed(Failure::ClientError(ErrorCode::NotDefined))
    );
    assert!(w.poll_transmit(t(1), &mut buf).is_none());
}

#[test]
fn netascii_uploads_are_decoded_across_block_boundaries() {
    // A CR LF split by the block boundary at 512, a CR NUL, and a trailing lone CR.
    let mut wire = vec![b'x'; 511];
    wire.extend_from_slice(b"\r\nline\r\0two\r\n\r");
    let (got, w, _) = upload(
        &wire,
        Options::default(),
        true,
        1 << 20,
        |_| false,
        |_| false,
    );
    assert_eq!(w.state(), State::Done);
    let mut want = vec![b'x'; 511];
    want.extend_from_slice(b"\nline\rtwo\n\r");
    assert_eq!(got, want);
    assert_eq!(w.size(), want.len() as u64);
    // And round trip with the encoder.
    let text = b"a\nb\rc\r\n\n".to_vec();
    let mut d = NetasciiDecoder::default();
    let mut out = Vec::new();
    d.decode(&crate::to_netascii(&text), &mut out);
    d.finish(&mut out);
    assert_eq!(out, text);
}
