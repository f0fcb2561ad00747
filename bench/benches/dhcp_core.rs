//! The server core: DISCOVER -> OFFER and REQUEST -> ACK, as a worker runs them.

use bootstorm_dhcp::config::{OptionSet, ServerConfig, Subnet, encode_ips};
use bootstorm_dhcp::{RxMeta, Server, Stats};
use bootstorm_time::{Duration, Instant};
use bootstorm_wire::dhcp::{self, MessageType, OptionWriter, emit_request_header, opt};
use criterion::{Criterion, Throughput};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn server() -> Server {
    let mut options = OptionSet::new();
    options.set(opt::ROUTER, encode_ips(&[SERVER]), false);
    options.set(
        opt::DNS_SERVERS,
        encode_ips(&[Ipv4Addr::new(198, 18, 0, 53)]),
        false,
    );
    options.set(opt::DOMAIN_NAME, &b"lab.bootstorm.test"[..], false);
    Server::new(ServerConfig {
        subnets: vec![Subnet {
            network: Ipv4Addr::new(198, 18, 0, 0),
            prefix: 16,
            ranges: vec![(
                Ipv4Addr::new(198, 18, 1, 0),
                Ipv4Addr::new(198, 18, 255, 254),
            )],
            server_id: SERVER,
            interface: None,
            lease_time: Duration::from_secs(3600),
            renewal_time: None,
            rebinding_time: None,
            next_server: None,
            options,
        }],
        // Admission runs (its lock and arithmetic are part of the cost measured) but never
        // limits: the benchmark's clock stands still while millions of DISCOVERs pass.
        admission: bootstorm_dhcp::AdmissionConfig {
            relay: bootstorm_dhcp::Rate {
                per_sec: u32::MAX,
                burst: u32::MAX,
            },
            interface: bootstorm_dhcp::Rate {
                per_sec: u32::MAX,
                burst: u32::MAX,
            },
        },
        ..ServerConfig::default()
    })
    .unwrap()
}

/// A request as dhclient sends it (option 55 with its usual list), for client `n`.
fn request(n: u32, mt: MessageType, requested: Option<Ipv4Addr>, server_id: bool) -> Vec<u8> {
    let mut b = vec![0u8; 600];
    let mac = [
        0x52,
        0x54,
        (n >> 24) as u8,
        (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ];
    let mut p = emit_request_header(
        &mut b,
        n,
        &mac,
        0,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
    )
    .unwrap();
    let mut w = OptionWriter::new(p.options_mut(), 300);
    w.push(opt::MESSAGE_TYPE, &[mt.into()]).unwrap();
    if let Some(a) = requested {
        w.push(opt::REQUESTED_IP, &a.octets()).unwrap();
    }
    if server_id {
        w.push(opt::SERVER_ID, &SERVER.octets()).unwrap();
    }
    w.push(opt::HOSTNAME, b"node").unwrap();
    w.push(
        opt::PARAMETER_REQUEST_LIST,
        &[1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42],
    )
    .unwrap();
    let n = dhcp::HEADER_LEN + w.finish(0);
    b.truncate(n);
    b
}

const CLIENTS: u32 = 4096;

/// Client `n` through DISCOVER and REQUEST at 1 s: its bound address.
fn bind(srv: &Server, meta: &RxMeta, n: u32) -> Ipv4Addr {
    let (mut out, mut stats) = ([0u8; 1500], Stats::default());
    let discover = request(n, MessageType::Discover, None, false);
    let o = srv.handle(Instant::from_secs(1), meta, &discover, &mut out, &mut stats);
    let yiaddr = dhcp::Packet::new_checked(&out[..o.reply.unwrap().len])
        .unwrap()
        .yiaddr();
    let req = request(n, MessageType::Request, Some(yiaddr), true);
    srv.handle(Instant::from_secs(1), meta, &req, &mut out, &mut stats);
    yiaddr
}

pub fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("dhcp_core");
    g.throughput(Throughput::Elements(1));
    let meta = RxMeta {
        src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
        subnet_hint: None,
        ifindex: 0,
    };
    let mut out = [0u8; 1500];
    let mut stats = Stats::default();

    // DISCOVER -> OFFER for clients the server has seen (a retransmitting boot storm).
    let srv = server();
    let discovers: Vec<Vec<u8>> = (0..CLIENTS)
        .map(|n| request(n, MessageType::Discover, None, false))
        .collect();
    let mut i = 0;
    g.bench_function("discover_to_offer", |b| {
        b.iter(|| {
            let o = srv.handle(
                Instant::from_secs(1),
                &meta,
                black_box(&discovers[i % discovers.len()]),
                &mut out,
                &mut stats,
            );
            assert!(o.reply.is_some());
            i += 1;
        })
    });

    // REQUEST -> ACK (renewal via INIT-REBOOT) for bound clients.
    let srv = server();
    let mut addrs = Vec::new();
    for n in 0..CLIENTS {
        addrs.push(bind(&srv, &meta, n));
    }
    let renewals: Vec<Vec<u8>> = (0..CLIENTS)
        .map(|n| request(n, MessageType::Request, Some(addrs[n as usize]), false))
        .collect();
    let mut i = 0;
    g.bench_function("request_to_ack", |b| {
        b.iter(|| {
            let o = srv.handle(
                Instant::from_secs(2),
                &meta,
                black_box(&renewals[i % renewals.len()]),
                &mut out,
                &mut stats,
            );
            assert_eq!(o.reply.map(|r| r.message_type), Some(MessageType::Ack));
            i += 1;
        })
    });

    // A whole DORA for clients never seen before (allocation, record creation), counted as one
    // element per lease; the table is rebuilt before the pool runs out.
    let mut srv = server();
    let mut n = 0u32;
    g.bench_function("dora_new_client", |b| {
        b.iter(|| {
            if n % 60_000 == 59_999 {
                srv = server();
            }
            n += 1;
            let id = 0x0100_0000 + n;
            let o = srv.handle(
                Instant::from_secs(1),
                &meta,
                &request(id, MessageType::Discover, None, false),
                &mut out,
                &mut stats,
            );
            let yiaddr = dhcp::Packet::new_checked(&out[..o.reply.unwrap().len])
                .unwrap()
                .yiaddr();
            let o = srv.handle(
                Instant::from_secs(1),
                &meta,
                &request(id, MessageType::Request, Some(yiaddr), true),
                &mut out,
                &mut stats,
            );
            assert_eq!(o.reply.map(|r| r.message_type), Some(MessageType::Ack));
        })
    });
    g.finish();

    // The API's lease listing (`GET /api/v1/leases`, as its handler builds the answer) over
    // 16,384 bound leases: every one, and one machine's by `?mac=` (filtered before formatting).
    let mut g = c.benchmark_group("api");
    let srv = server();
    for n in 0..16_384u32 {
        bind(&srv, &meta, n);
    }
    let clock = bootstorm_time::Clock::new();
    let filter = |q: &[(&str, &str)]| {
        let pairs: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        bootstorm_daemon::control::LeaseFilter::parse(&pairs).unwrap()
    };
    let (all, one) = (filter(&[]), filter(&[("mac", "52:54:00:00:20:00")]));
    assert_eq!(
        bootstorm_daemon::control::leases_body(&srv, &clock, &one)
            .matches("\"ip\"")
            .count(),
        1
    );
    g.bench_function("leases_all_16384_json", |b| {
        b.iter(|| bootstorm_daemon::control::leases_body(&srv, &clock, &all))
    });
    g.bench_function("leases_one_mac_of_16384_json", |b| {
        b.iter(|| bootstorm_daemon::control::leases_body(&srv, &clock, &one))
    });
    g.finish();
}
