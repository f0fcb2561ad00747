//! TFTP: the server's transfer core sending a 1 MiB file (blksize 1468) at windowsize 1, 4 and
//! 64 against instant ACKs, and the load generator's client taking the same blocks in (count,
//! sha256, ACK per window): the per-block cost of each side without the kernel.

use bootstorm_loadgen::body::Expect;
use bootstorm_loadgen::profile::Profile;
use bootstorm_loadgen::tftp::{Action, Download};
use bootstorm_tftp::{Limits, ReadTransfer, State, negotiate};
use bootstorm_time::Instant;
use bootstorm_wire::tftp::{Options, Repr};
use criterion::{Criterion, Throughput};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

const SIZE: usize = 1 << 20;

fn file() -> Arc<[u8]> {
    (0..SIZE as u32)
        .map(|i| (i * 31 + i / 977) as u8)
        .collect::<Vec<_>>()
        .into()
}

fn options(window: u16) -> Options {
    Options {
        blksize: Some(1468),
        timeout: None,
        tsize: Some(0),
        windowsize: Some(window),
    }
}

/// Runs one whole transfer through the server core, acknowledging each window at once; hands
/// every packet it sends to `sent`.
fn serve_once(
    data: &Arc<[u8]>,
    window: u16,
    limits: &Limits,
    out: &mut [u8],
    mut sent: impl FnMut(&[u8]),
) {
    let mut t = ReadTransfer::new(
        data.clone(),
        negotiate(&options(window), data.len() as u64, limits),
        limits,
    );
    let now = Instant::from_millis(1);
    while t.state() == State::Running {
        let mut last = None;
        while let Some(n) = t.poll_transmit(now, out) {
            sent(&out[..n]);
            last = Some(match Repr::parse(&out[..n]) {
                Ok(Repr::Data { block, .. }) => block,
                _ => 0,
            });
        }
        match last {
            Some(b) => t.handle_ack(now, b),
            None => break,
        }
    }
}

pub fn benches(c: &mut Criterion) {
    let data = file();
    let limits = Limits::default();
    let mut g = c.benchmark_group("tftp");
    g.throughput(Throughput::Bytes(SIZE as u64));
    let mut out = vec![0u8; 2048];
    for window in [1u16, 4, 64] {
        g.bench_function(format!("server_1MiB/windowsize_{window}"), |b| {
            b.iter(|| {
                let mut packets = 0u64;
                serve_once(&data, window, &limits, &mut out, |_| packets += 1);
                black_box(packets)
            })
        });
    }

    // The client side: the packets of one transfer, recorded once, fed to a fresh Download.
    let mut packets: Vec<Vec<u8>> = Vec::new();
    serve_once(&data, 64, &limits, &mut out, |pkt| {
        packets.push(pkt.to_vec())
    });
    let mut p = Profile::named("uefi-x64").unwrap();
    p.tftp.windowsize = Some(64);
    let server = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 69);
    let tid = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40000);
    let sha: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(&data[..]).into()
    };
    for (name, expect) in [
        (
            "count",
            Expect {
                size: Some(SIZE as u64),
                sha256: None,
            },
        ),
        (
            "sha256",
            Expect {
                size: Some(SIZE as u64),
                sha256: Some(sha),
            },
        ),
    ] {
        g.bench_function(format!("loadgen_client_1MiB_ws64/{name}"), |b| {
            let mut buf = vec![0u8; 2048];
            b.iter(|| {
                let mut dl = Download::new("boot.efi", server, &p, expect.clone());
                let _ = dl.start(0, &p, &mut buf);
                let mut acks = 0u32;
                for pkt in &packets {
                    if let Action::Send(..) = dl.on_packet(1, tid, pkt, &mut buf) {
                        acks += 1;
                    }
                }
                assert_eq!(dl.result(), Some(Ok(SIZE as u64)));
                black_box(acks)
            })
        });
    }
    g.finish();
}
