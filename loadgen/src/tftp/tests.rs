//! The download against bootstorm's own TFTP read core in memory, with simulated time and loss.

use super::*;
use crate::profile::{Profile, TftpOptions};
use bootstorm_tftp::{Limits, ReadTransfer, State, negotiate};
use bootstorm_time::Instant;
use sha2::Digest;
use std::net::Ipv4Addr;
use std::sync::Arc;

const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 69);
const TID: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40000);

fn file(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Runs one download of `data` with options `o`; `lose(n)` drops the n-th datagram (either
/// way). Returns the download's result and the server's.
fn simulate(
    data: &[u8],
    o: TftpOptions,
    expect: Expect,
    mut lose: impl FnMut(usize) -> bool,
) -> (Option<Result<u64, Failure>>, State) {
    let mut p = Profile::named("uefi-x64").unwrap();
    p.tftp = o;
    let mut dl = Download::new("boot.efi", SERVER, &p, expect);
    let mut buf = vec![0u8; 2048];
    let mut now = 0u64;
    let Action::Send(to, n) = dl.start(now, &p, &mut buf) else {
        panic!("no RRQ")
    };
    assert_eq!(to, SERVER);
    let Ok(bootstorm_wire::tftp::Repr::Request { options, .. }) =
        bootstorm_wire::tftp::Repr::parse(&buf[..n])
    else {
        panic!("not an RRQ")
    };
    let limits = Limits::default();
    let mut srv = ReadTransfer::new(
        Arc::from(data),
        negotiate(&options, data.len() as u64, &limits),
        &limits,
    );
    let ms = |us: u64| Instant::from_millis(us / 1000);
    let mut sent = 1usize;
    let mut out = vec![0u8; 2048];
    for _ in 0..200_000 {
        if dl.result().is_some() && srv.state() != State::Running {
            break;
        }
        let mut moved = false;
        while let Some(len) = srv.poll_transmit(ms(now), &mut out) {
            moved = true;
            sent += 1;
            if lose(sent) {
                continue;
            }
            if let Action::Send(to, n) = dl.on_packet(now, TID, &out[..len], &mut buf) {
                assert_eq!(to, TID, "answers go to the transfer's port");
                sent += 1;
                if lose(sent) {
                    continue;
                }
                if let Ok(bootstorm_wire::tftp::Repr::Ack { block }) =
                    bootstorm_wire::tftp::Repr::parse(&buf[..n])
                {
                    srv.handle_ack(ms(now), block);
                }
            }
        }
        if moved {
            continue;
        }
        // Quiet: time moves to the next deadline of either side.
        let next = [
            dl.deadline(),
            srv.poll_timeout().map(|t| t.as_millis() * 1000),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        now = now.max(next);
        srv.handle_timeout(ms(now));
        if let Action::Send(_, n) = dl.on_timer(now, &mut buf) {
            sent += 1;
            if !lose(sent) {
                match bootstorm_wire::tftp::Repr::parse(&buf[..n]) {
                    Ok(bootstorm_wire::tftp::Repr::Ack { block }) => srv.handle_ack(ms(now), block),
                    Ok(bootstorm_wire::tftp::Repr::Request { .. }) => {}
                    other => panic!("{other:?}"),
                }
            }
        }
    }
    (dl.result(), srv.state())
}

fn hashed(data: &[u8]) -> Expect {
    Expect {
        size: Some(data.len() as u64),
        sha256: Some(sha2::Sha256::digest(data).into()),
    }
}

#[test]
fn downloads_are_byte_exact_with_every_option_set() {
    for size in [0, 511, 512, 513, 1468, 100_000] {
        for o in [
            TftpOptions::default(),
            TftpOptions {
                blksize: Some(1468),
                windowsize: None,
                tsize: true,
            },
            TftpOptions {
                blksize: Some(1468),
                windowsize: Some(16),
                tsize: true,
            },
            TftpOptions {
                blksize: Some(512),
                windowsize: Some(64),
                tsize: false,
            },
        ] {
            let data = file(size);
            let (r, s) = simulate(&data, o, hashed(&data), |_| false);
            assert_eq!(r, Some(Ok(size as u64)), "{size} {o:?}");
            assert_eq!(s, State::Done, "{size} {o:?}");
        }
    }
}

#[test]
fn block_numbers_roll_over() {
    // 65536 blocks of 512 and a bit: block 0 follows 65535.
    let data = file(512 * 65_536 + 100);
    let o = TftpOptions {
        blksize: None,
        windowsize: Some(64),
        tsize: false,
    };
    let (r, _) = simulate(&data, o, hashed(&data), |_| false);
    assert_eq!(r, Some(Ok(data.len() as u64)));
}

#[test]
fn loss_both_ways_is_recovered() {
    let data = file(300_000);
    for (w, every) in [(None, 7), (Some(16), 13), (Some(64), 29)] {
        let o = TftpOptions {
            blksize: Some(1468),
            windowsize: w,
            tsize: true,
        };
        let (r, s) = simulate(&data, o, hashed(&data), |n| n % every == 0);
        assert_eq!(r, Some(Ok(data.len() as u64)), "window {w:?}");
        assert_eq!(s, State::Done, "window {w:?}");
    }
}

#[test]
fn wrong_content_and_silence_are_failures() {
    let data = file(5000);
    let o = TftpOptions {
        blksize: Some(1468),
        windowsize: None,
        tsize: true,
    };
    let mut e = hashed(&data);
    e.sha256 = Some([0; 32]);
    assert_eq!(
        simulate(&data, o, e, |_| false).0,
        Some(Err(Failure::WrongHash))
    );
    let e = Expect {
        size: Some(4999),
        sha256: None,
    };
    // tsize in the OACK already says it is the wrong size.
    assert_eq!(
        simulate(&data, o, e, |_| false).0,
        Some(Err(Failure::WrongSize))
    );
    assert_eq!(
        simulate(&data, o, Expect::default(), |_| true).0,
        Some(Err(Failure::Timeout))
    );
}
