//! Wire formats: parse a real DISCOVER, build an OFFER.

use bootstorm_wire::dhcp::{self, OptionWriter, Packet, Repr, emit_reply_header, opt};
use criterion::{Criterion, Throughput};
use std::hint::black_box;
use std::net::Ipv4Addr;

pub fn discover_bytes() -> Vec<u8> {
    let hex = include_str!("../../userspace/bootstorm-wire/testdata/discover-dhclient.hex").trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

pub fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    let d = discover_bytes();
    g.bench_function("parse_discover", |b| {
        b.iter(|| {
            let p = Packet::new_checked(black_box(&d[..])).unwrap();
            black_box(Repr::parse(&p).unwrap());
        })
    });
    let p = Packet::new_checked(&d[..]).unwrap();
    let req = Repr::parse(&p).unwrap();
    let mut out = [0u8; 1500];
    g.bench_function("build_offer", |b| {
        b.iter(|| {
            let mut q = emit_reply_header(
                &mut out,
                black_box(&req),
                Ipv4Addr::new(198, 18, 1, 7),
                Ipv4Addr::new(198, 18, 0, 1),
            )
            .unwrap();
            q.set_file(b"ipxe.efi");
            let mut w = OptionWriter::new(
                q.options_mut(),
                dhcp::DEFAULT_MAX_MESSAGE - dhcp::HEADER_LEN,
            );
            w.push(opt::MESSAGE_TYPE, &[2]).unwrap();
            w.push(opt::SERVER_ID, &[198, 18, 0, 1]).unwrap();
            w.push(opt::LEASE_TIME, &3600u32.to_be_bytes()).unwrap();
            w.push(opt::RENEWAL_TIME, &1800u32.to_be_bytes()).unwrap();
            w.push(opt::REBINDING_TIME, &3150u32.to_be_bytes()).unwrap();
            w.push(opt::SUBNET_MASK, &[255, 255, 0, 0]).unwrap();
            w.push(opt::ROUTER, &[198, 18, 0, 1]).unwrap();
            w.push(opt::DNS_SERVERS, &[198, 18, 0, 53]).unwrap();
            black_box(dhcp::HEADER_LEN + w.finish(dhcp::MIN_MESSAGE - dhcp::HEADER_LEN));
        })
    });
    g.finish();
}
