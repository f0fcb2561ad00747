use super::*;

fn data(n: usize) -> Arc<[u8]> {
    (0..n)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

#[test]
fn oack_carries_only_what_was_asked() {
    let l = Limits::default();
    let n = negotiate(&Options::default(), 1000, &l);
    assert_eq!(
        n,
        Negotiated {
            blksize: 512,
            windowsize: 1,
            timeout: Duration::from_secs(1),
            oack: None
        }
    );
    let n = negotiate(
        &Options {
            tsize: Some(0),
            ..Options::default()
        },
        1000,
        &l,
    );
    assert_eq!(
        n.oack,
        Some(Options {
            tsize: Some(1000),
            ..Options::default()
        })
    );
    let n = negotiate(
        &Options {
            blksize: Some(65464),
            windowsize: Some(1000),
            timeout: Some(3),
            tsize: None,
        },
        9,
        &l,
    );
    assert_eq!(n.blksize, 1468);
    assert_eq!(n.windowsize, 64);
    assert_eq!(n.timeout, Duration::from_secs(3));
    assert_eq!(
        n.oack,
        Some(Options {
            blksize: Some(1468),
            windowsize: Some(64),
            timeout: Some(3),
            tsize: None
        })
    );
    let n = negotiate(
        &Options {
            blksize: Some(1024),
            ..Options::default()
        },
        9,
        &l,
    );
    assert_eq!(
        n.oack,
        Some(Options {
            blksize: Some(1024),
            ..Options::default()
        })
    );
}

/// A simulated client: acknowledges every `ack_every` blocks or at the end of a window,
/// drops packets whose sequence number `lose(seq)` says, and reassembles the file.
fn run(size: usize, req: Options, lose: impl Fn(u64) -> bool) -> (Vec<u8>, ReadTransfer, u64) {
    let limits = Limits {
        max_blksize: 1468,
        max_windowsize: 64,
        default_timeout: Duration::from_secs(1),
        max_retries: 50,
    };
    let file = data(size);
    let params = negotiate(&req, size as u64, &limits);
    let mut tr = ReadTransfer::new(file.clone(), params, &limits);
    let mut got: Vec<u8> = Vec::new();
    let mut now = 0u64;
    let mut buf = vec![0u8; 70000];
    let mut seq = 0u64;
    let mut expect: u16 = if params.oack.is_some() { 0 } else { 1 };
    let mut steps = 0;
    let window = u64::from(params.windowsize);
    while tr.state() == State::Running {
        steps += 1;
        assert!(steps < 10_000_000, "no progress");
        let mut in_window = 0;
        let mut ack: Option<u16> = None;
        while let Some(n) = tr.poll_transmit(t(now), &mut buf) {
            seq += 1;
            if lose(seq) {
                continue;
            }
            match Repr::parse(&buf[..n]).unwrap() {
                Repr::OAck { options } => {
                    assert_eq!(Some(options), params.oack);
                    ack = Some(0);
                    expect = 1;
                }
                Repr::Data { block, data } => {
                    if block == expect {
                        got.extend_from_slice(data);
                        expect = expect.wrapping_add(1);
                        in_window += 1;
                        if in_window == window || data.len() < usize::from(params.blksize) {
                            ack = Some(block);
                        }
                    } else {
                        // Out of order (an earlier block was lost): acknowledge what we have,
                        // as RFC 7440 clients do, to have the window resent from there.
                        ack = Some(expect.wrapping_sub(1));
                    }
                }
                r => panic!("{r:?}"),
            }
        }
        match ack {
            Some(b) if !lose(u64::MAX - seq) => tr.handle_ack(t(now), b),
            _ => {
                now = tr.poll_timeout().map_or(now + 1, |d| d.as_millis());
                tr.handle_timeout(t(now));
            }
        }
    }
    (got, tr, now)
}

#[test]
fn plain_rfc1350_transfers_of_edge_sizes() {
    for size in [0, 1, 511, 512, 513, 1024, 100_000] {
        let (got, tr, _) = run(size, Options::default(), |_| false);
        assert_eq!(tr.state(), State::Done, "{size}");
        assert_eq!(got[..], data(size)[..], "{size}");
        // A file of a multiple of 512 bytes ends with an empty block.
        assert_eq!(tr.counters().0, size as u64 / 512 + 1, "{size}");
    }
}

#[test]
fn windowed_transfer_with_big_blocks() {
    let opts = Options {
        blksize: Some(1468),
        windowsize: Some(16),
        tsize: Some(0),
        timeout: None,
    };
    let (got, tr, _) = run(1 << 20, opts, |_| false);
    assert_eq!(tr.state(), State::Done);
    assert_eq!(got[..], data(1 << 20)[..]);
    assert_eq!(tr.counters(), ((1 << 20) / 1468 + 1, 0));
}

#[test]
fn block_numbers_roll_over_past_65535() {
    // 40 MiB at 512 bytes: 81,921 blocks, past the 16-bit block number.
    let size = 40 << 20;
    let (got, tr, _) = run(
        size,
        Options {
            windowsize: Some(64),
            ..Options::default()
        },
        |_| false,
    );
    assert_eq!(tr.state(), State::Done);
    assert_eq!(got.len(), size);
    assert!(got[..] == data(size)[..]);
}

#[test]
fn lost_packets_and_acks_are_recovered_by_timeouts() {
    // Lose every 7th packet and every 5th ACK.
    let opts = Options {
        blksize: Some(1024),
        windowsize: Some(8),
        ..Options::default()
    };
    let (got, tr, now) = run(300_000, opts, |s| {
        if s > u64::MAX / 2 {
            (u64::MAX - s) % 5 == 0
        } else {
            s % 7 == 0
        }
    });
    assert_eq!(tr.state(), State::Done);
    assert_eq!(got[..], data(300_000)[..]);
    assert!(tr.counters().1 > 0, "something was resent");
    assert!(now > 0, "timeouts drove the recovery");
}

#[test]
fn duplicate_ack_does_not_retransmit() {
    let limits = Limits::default();
    let params = negotiate(&Options::default(), 5000, &limits);
    let mut tr = ReadTransfer::new(data(5000), params, &limits);
    let mut buf = [0u8; 600];
    assert!(tr.poll_transmit(t(0), &mut buf).is_some()); // block 1
    assert!(tr.poll_transmit(t(0), &mut buf).is_none()); // window of 1
    tr.handle_ack(t(10), 1);
    assert!(tr.poll_transmit(t(10), &mut buf).is_some()); // block 2
    tr.handle_ack(t(20), 1); // duplicate of the ACK for block 1
    assert!(
        tr.poll_transmit(t(20), &mut buf).is_none(),
        "no retransmission on a duplicate ACK"
    );
    tr.handle_ack(t(30), 7); // for a block never sent
    assert!(tr.poll_transmit(t(30), &mut buf).is_none());
    assert_eq!(tr.counters(), (2, 0));
}

#[test]
fn timeout_resends_the_window_from_the_first_unacknowledged_block() {
    let limits = Limits::default();
    let params = negotiate(
        &Options {
            windowsize: Some(4),
            ..Options::default()
        },
        10_000,
        &limits,
    );
    let mut tr = ReadTransfer::new(data(10_000), params, &limits);
    let mut buf = [0u8; 600];
    assert!(tr.poll_transmit(t(0), &mut buf).is_some()); // OACK
    tr.handle_ack(t(1), 0);
    let mut blocks = Vec::new();
    while let Some(n) = tr.poll_transmit(t(1), &mut buf) {
        if let Repr::Data { block, .. } = Repr::parse(&buf[..n]).unwrap() {
            blocks.push(block);
        }
    }
    assert_eq!(blocks, [1, 2, 3, 4]);
    tr.handle_ack(t(2), 2); // blocks 3 and 4 lost
    let mut again = Vec::new();
    tr.handle_timeout(t(500)); // not yet due
    while let Some(n) = tr.poll_transmit(t(2), &mut buf) {
        if let Repr::Data { block, .. } = Repr::parse(&buf[..n]).unwrap() {
            again.push(block);
        }
    }
    assert_eq!(again, [3, 4, 5, 6], "a partial ACK moves the window");
    tr.handle_timeout(t(1100));
    let mut resent = Vec::new();
    while let Some(n) = tr.poll_transmit(t(1100), &mut buf) {
        if let Repr::Data { block, .. } = Repr::parse(&buf[..n]).unwrap() {
            resent.push(block);
        }
    }
    assert_eq!(
        resent,
        [3, 4, 5, 6],
        "timeout resends from the first unacknowledged block"
    );
}

#[test]
fn silent_client_is_abandoned_with_an_error() {
    let limits = Limits {
        max_retries: 2,
        ..Limits::default()
    };
    let params = negotiate(&Options::default(), 100, &limits);
    let mut tr = ReadTransfer::new(data(100), params, &limits);
    let mut buf = [0u8; 600];
    let mut now = 0;
    let mut sent = 0;
    for _ in 0..10 {
        while let Some(n) = tr.poll_transmit(t(now), &mut buf) {
            sent += 1;
            if tr.state() != State::Running {
                assert!(matches!(
                    Repr::parse(&buf[..n]).unwrap(),
                    Repr::Error { .. }
                ));
            }
        }
        match tr.poll_timeout() {
            Some(d) => {
                now = d.as_millis();
                tr.handle_timeout(t(now));
            }
            None => break,
        }
    }
    assert_eq!(tr.state(), State::Failed(Failure::Timeout));
    assert_eq!(sent, 1 + 2 + 1, "first send, two retries, then an ERROR");
}

#[test]
fn retransmissions_back_off_exponentially_and_reset_on_progress() {
    let limits = Limits {
        max_retries: 8,
        default_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let params = negotiate(&Options::default(), 5000, &limits);
    let mut tr = ReadTransfer::new(data(5000), params, &limits);
    let mut buf = [0u8; 600];
    tr.poll_transmit(t(0), &mut buf).unwrap();
    let mut waits = Vec::new();
    let mut now = 0;
    for _ in 0..7 {
        let d = tr.poll_timeout().unwrap().as_millis();
        waits.push(d - now);
        now = d;
        tr.handle_timeout(t(now));
        tr.poll_transmit(t(now), &mut buf).unwrap();
    }
    assert_eq!(waits, [200, 400, 800, 1600, 3200, 6400, 10_000]);
    tr.handle_ack(t(now), 1);
    assert_eq!(
        tr.poll_timeout(),
        Some(t(now + 200)),
        "progress resets the backoff"
    );
}

#[test]
fn client_error_ends_the_transfer() {
    let limits = Limits::default();
    let params = negotiate(
        &Options {
            blksize: Some(9000),
            ..Options::default()
        },
        100,
        &limits,
    );
    let mut tr = ReadTransfer::new(data(100), params, &limits);
    let mut buf = [0u8; 600];
    tr.poll_transmit(t(0), &mut buf).unwrap();
    tr.handle_error(ErrorCode::OptionRefused);
    assert_eq!(tr.state(), State::Failed(Failure::OptionsRefused));
    assert!(tr.poll_transmit(t(0), &mut buf).is_none());
}
