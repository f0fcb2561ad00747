//! The boot-session registry on the DHCP hot path: each lease of a new machine is an offer and
//! an ACK step, against a registry at its default caps (16,384 live, 4,096 recent), so every
//! new machine also ends the oldest one (the steady state of a storm bigger than the cap, as
//! perfdhcp's unique MACs are). A diskless machine's TFTP steps are the second case.

use bootstorm_daemon::boots::{Boots, DEFAULT_IDLE, DEFAULT_LIVE, DEFAULT_RECENT, Step};
use bootstorm_time::Instant;
use criterion::{Criterion, Throughput};
use std::net::Ipv4Addr;

fn mac(i: u64) -> [u8; 6] {
    [
        0x52,
        0x54,
        (i >> 24) as u8,
        (i >> 16) as u8,
        (i >> 8) as u8,
        i as u8,
    ]
}

pub fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("sessions");
    g.throughput(Throughput::Elements(1));
    let b = Boots::new(DEFAULT_LIVE, DEFAULT_RECENT, DEFAULT_IDLE);
    let addr = Ipv4Addr::new(198, 18, 1, 1);
    let mut i = 0u64;
    // Fill past the cap first: the figure is the evicting steady state.
    let lease = |i: u64| {
        let now = Instant::from_millis(1 + i);
        let m = mac(i);
        b.step(
            now,
            &m,
            Step::Offer {
                addr,
                round: 0,
                uuid: None,
            },
        );
        b.step(now, &m, Step::Ack { addr });
    };
    for _ in 0..2 * DEFAULT_LIVE as u64 {
        lease(i);
        i += 1;
    }
    g.bench_function("new_machine_offer_ack_at_cap", |bn| {
        bn.iter(|| {
            lease(i);
            i += 1;
        })
    });
    let sessions = bootstorm_daemon::sessions::Sessions::new();
    let b = &sessions.boots;
    for j in 0..DEFAULT_LIVE as u64 {
        b.step(
            Instant::from_millis(1),
            &mac(j),
            Step::Offer {
                addr,
                round: 0,
                uuid: None,
            },
        );
        b.step(Instant::from_millis(2), &mac(j), Step::Ack { addr });
    }
    let mut j = 0u64;
    g.bench_function("known_machine_file_and_done", |bn| {
        bn.iter(|| {
            let m = mac(j % DEFAULT_LIVE as u64);
            let now = Instant::from_millis(3 + j);
            b.step(
                now,
                &m,
                Step::File {
                    proto: "tftp",
                    name: "undionly.kpxe".into(),
                },
            );
            b.step(
                now,
                &m,
                Step::FileDone {
                    proto: "tftp",
                    name: "undionly.kpxe".into(),
                    bytes: 70_000,
                    millis: 12,
                    resent: 0,
                },
            );
            j += 1;
        })
    });
    // The storm view's sampler, once a second on the API thread: the registry's counts and
    // every lap's histogram merged across its shards, the second's window and percentiles.
    let storm = bootstorm_daemon::storm::Storm::new();
    let mut at = 0u64;
    g.bench_function("storm_sample_16384_live", |bn| {
        bn.iter(|| {
            at += 1000;
            storm.sample(b, at);
        })
    });
    // The dashboard's session list, first page (the newest 100 of 16,384 live), as the API
    // answers it: taken from the shards and serialized.
    let clock = bootstorm_time::Clock::new();
    g.bench_function("first_page_100_of_16384_json", |bn| {
        bn.iter(|| bootstorm_daemon::control::sessions_json(&sessions, &clock, &[]))
    });
    // The dashboard's search box (`q=`, every second while it holds text): every session's MAC,
    // address, IQN and UUID matched under its shard's lock.
    g.bench_function("search_q_of_16384_json", |bn| {
        bn.iter(|| bootstorm_daemon::control::sessions_json(&sessions, &clock, &["q=00:3f:f"]))
    });
    g.finish();
}
