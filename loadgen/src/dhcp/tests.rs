//! The client against bootstorm's own DHCP core in memory, with simulated time and loss.

use super::*;
use bootstorm_dhcp::config::{Boot, BootRule, Match, OptionSet, ServerConfig, Subnet};
use bootstorm_dhcp::{RxMeta, Server, Stats};
use std::net::SocketAddrV4;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn server(pool_end: u8) -> Server {
    Server::new(ServerConfig {
        subnets: vec![Subnet {
            network: Ipv4Addr::new(198, 18, 0, 0),
            prefix: 16,
            ranges: vec![(
                Ipv4Addr::new(198, 18, 1, 1),
                Ipv4Addr::new(198, 18, 1, pool_end),
            )],
            server_id: SERVER,
            interface: None,
            lease_time: bootstorm_time::Duration::from_secs(3600),
            renewal_time: None,
            rebinding_time: None,
            next_server: None,
            options: OptionSet::new(),
        }],
        boot_rules: vec![BootRule {
            name: "uefi".into(),
            matcher: Match {
                arch: vec![7],
                ..Match::default()
            },
            boot: Boot {
                file: "ipxe.efi".into(),
                next_server: Some(Ipv4Addr::new(198, 18, 0, 9)),
                server_name: None,
                ..Boot::default()
            },
            options: OptionSet::new(),
        }],
        ..ServerConfig::default()
    })
    .unwrap()
}

/// Runs `clients` through `srv` with simulated time; `lose(n)` drops the n-th datagram (either
/// way). Returns each client's end and the simulated time it took.
fn simulate(
    srv: &Server,
    clients: &mut [Client],
    p: &Profile,
    mut lose: impl FnMut(usize) -> bool,
) -> u64 {
    let mut now = 0u64;
    let mut sent = 0usize;
    let mut stats = Stats::default();
    let mut queue: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut buf = vec![0u8; MAX_LEN];
    for (i, c) in clients.iter_mut().enumerate() {
        let n = c.start(now, p, &mut buf);
        queue.push((i, buf[..n].to_vec()));
    }
    for _ in 0..10_000 {
        // Deliver everything queued, both ways, until quiet.
        while let Some((i, req)) = queue.pop() {
            sent += 1;
            if lose(sent) {
                continue;
            }
            let mut out = vec![0u8; 1500];
            let o = srv.handle(
                bootstorm_time::Instant::from_millis(now / 1000),
                &RxMeta {
                    src: SocketAddrV4::new(RELAY, 67),
                    subnet_hint: None,
                    ifindex: 0,
                },
                &req,
                &mut out,
                &mut stats,
            );
            let Some(r) = o.reply else { continue };
            sent += 1;
            if lose(sent) {
                continue;
            }
            let n = clients[i].on_reply(now, p, &out[..r.len], &mut buf);
            if n > 0 {
                queue.push((i, buf[..n].to_vec()));
            }
        }
        // Then time moves to the next deadline.
        let Some(next) = clients.iter().filter_map(Client::deadline).min() else {
            return now;
        };
        now = next;
        for (i, c) in clients.iter_mut().enumerate() {
            let n = c.on_timer(now, p, &mut buf);
            if n > 0 {
                queue.push((i, buf[..n].to_vec()));
            }
        }
    }
    panic!("did not settle");
}

fn clients(n: usize) -> Vec<Client> {
    (0..n)
        .map(|i| Client::new([0x52, 0x54, 0, 0, 0, i as u8], i as u32, RELAY))
        .collect()
}

#[test]
fn every_client_gets_its_own_address_and_the_boot_file() {
    let srv = server(200);
    let p = Profile::named("uefi-x64").unwrap();
    let mut cs = clients(50);
    let took = simulate(&srv, &mut cs, &p, |_| false);
    assert_eq!(took, 0, "no retransmission without loss");
    let mut addrs: Vec<Ipv4Addr> = cs.iter().map(|c| c.lease().unwrap().addr).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 50);
    let l = cs[0].lease().unwrap();
    assert_eq!(l.boot_file.as_deref(), Some("ipxe.efi"));
    assert_eq!(l.next_server, Ipv4Addr::new(198, 18, 0, 9));
    assert_eq!(l.server_id, SERVER);
}

#[test]
fn lost_messages_are_retransmitted_on_the_profile_schedule() {
    let srv = server(200);
    let p = Profile::named("uefi-x64").unwrap();
    // The first DISCOVER and the first REQUEST are lost: 4 s, then 4 s again (each message
    // starts the schedule over).
    let mut cs = clients(1);
    let took = simulate(&srv, &mut cs, &p, |n| n == 1 || n == 4);
    assert!(cs[0].lease().is_some());
    assert_eq!(took, 8_000_000);
}

#[test]
fn a_client_gives_up_after_its_last_retransmission() {
    let srv = server(200);
    let p = Profile::named("ipxe").unwrap();
    let mut cs = clients(1);
    let took = simulate(&srv, &mut cs, &p, |_| true);
    assert_eq!(cs[0].failure(), Some(Failure::NoOffer));
    // iPXE's schedule: 1 + 2 + 3 + 4 + 8 s.
    assert_eq!(took, 18_000_000);
    // A full pool is as silent as a lost DISCOVER (RFC 2131): no offer.
    let srv = server(2);
    let mut cs = clients(3);
    simulate(&srv, &mut cs, &p, |_| false);
    assert_eq!(cs.iter().filter(|c| c.lease().is_some()).count(), 2);
    let failed: Vec<_> = cs.iter().filter_map(Client::failure).collect();
    assert_eq!(failed, [Failure::NoOffer]);
}

#[test]
fn replies_for_someone_else_are_ignored() {
    let srv = server(200);
    let p = Profile::named("pxe-bios").unwrap();
    let mut a = Client::new([0x52, 0x54, 0, 0, 0, 1], 1, RELAY);
    let mut b = Client::new([0x52, 0x54, 0, 0, 0, 2], 2, RELAY);
    let mut buf = vec![0u8; MAX_LEN];
    let n = a.start(0, &p, &mut buf);
    b.start(0, &p, &mut buf.clone());
    let mut out = vec![0u8; 1500];
    let o = srv.handle(
        bootstorm_time::Instant::ZERO,
        &RxMeta {
            src: SocketAddrV4::new(RELAY, 67),
            subnet_hint: None,
            ifindex: 0,
        },
        &buf[..n],
        &mut out,
        &mut Stats::default(),
    );
    let offer = &out[..o.reply.unwrap().len];
    assert_eq!(b.on_reply(0, &p, offer, &mut buf), 0, "not b's xid or MAC");
    assert_eq!(b.deadline(), Some(4_000_000));
    assert!(a.on_reply(0, &p, offer, &mut buf) > 0, "a requests");
    for junk in [&[][..], &[1, 2, 3][..], &offer[..100]] {
        assert_eq!(a.on_reply(0, &p, junk, &mut buf), 0);
    }
}
