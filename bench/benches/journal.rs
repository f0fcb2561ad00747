//! The lease journal's record format: encoding a bind record (what every ACK costs before its
//! fsync) and splitting 10,000 of them back into records (what start-up replay costs per lease).

use bootstorm_journal::record::{Entry, frames};
use bootstorm_journal::{Kind, Record};
use bootstorm_lease::LeaseState;
use criterion::{Criterion, Throughput};
use std::hint::black_box;
use std::net::Ipv4Addr;

fn record(i: u32) -> Record {
    let mac = [0x52, 0x54, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
    let mut key = vec![1u8];
    key.extend_from_slice(&mac);
    Record {
        kind: Kind::Bind,
        at_ms: 1_795_000_000_000 + u64::from(i),
        key: key.into(),
        hwaddr: mac.to_vec().into(),
        addr: Ipv4Addr::from(0xc612_0000 + i),
        state: LeaseState::Bound,
        expires_ms: 1_795_003_600_000,
        until_ms: 0,
        hostname: Some(format!("node-{i:05}").into()),
        subnet: 0,
        reserved: false,
    }
}

pub fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal");
    g.throughput(Throughput::Elements(1));
    let r = record(7);
    let mut out = Vec::with_capacity(256);
    g.bench_function("encode_bind", |b| {
        b.iter(|| {
            out.clear();
            black_box(&r).encode(&mut out);
            black_box(out.len())
        })
    });
    let mut log = Vec::new();
    for i in 0..10_000 {
        record(i).encode(&mut log);
    }
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("replay_10000_binds", |b| {
        b.iter(|| {
            let (entries, _) = frames(black_box(&log));
            assert_eq!(entries.len(), 10_000);
            black_box(
                entries
                    .iter()
                    .filter(|(_, e)| matches!(e, Entry::Lease(_)))
                    .count(),
            )
        })
    });
    g.finish();
}
