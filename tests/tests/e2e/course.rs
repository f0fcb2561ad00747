//! The university course assignment's scenarios, over loopback UDP against the real worker
//! runtime (in-process): pool 198.18.1.1-198.18.1.4, server identifier 198.18.1.0.

use crate::msg::{Client, Msg};
use bootstorm_daemon::{config, serve};
use bootstorm_wire::dhcp::MessageType;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

const SID: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 0);

fn server(compat: bool, workers: usize, pool_end: u8) -> serve::Running {
    let text = format!(
        r#"
[server]
address = "127.0.0.1"
port = 0
workers = {workers}
compat_nak = {compat}

[[subnet]]
network = "198.18.1.0/24"
server_id = "198.18.1.0"
pools = ["198.18.1.1-198.18.1.{pool_end}"]
"#
    );
    let s = config::parse(Path::new("course.toml"), &text).unwrap();
    serve::start(&s).unwrap()
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, n)
}

fn discover(n: u8) -> Msg {
    Msg::new(MessageType::Discover, n)
}

fn request(n: u8, addr: Ipv4Addr, sid: Ipv4Addr) -> Msg {
    Msg {
        requested: Some(addr),
        server_id: Some(sid),
        ..Msg::new(MessageType::Request, n)
    }
}

#[test]
fn a_offer_then_ack_and_request_for_another_server() {
    for compat in [false, true] {
        let srv = server(compat, 2, 4);
        let c = Client::new(&srv);
        let offer = c.ask(&discover(1)).expect("OFFER");
        assert_eq!(offer.mt, MessageType::Offer);
        assert_eq!(offer.yiaddr, ip(1));
        assert_eq!(offer.server_id, Some(SID));
        assert_eq!(offer.xid, discover(1).xid);
        let ack = c.ask(&request(1, ip(1), SID)).expect("ACK");
        assert_eq!((ack.mt, ack.yiaddr), (MessageType::Ack, ip(1)));

        // Client 2 is offered .2, then picks another server.
        let c2 = Client::new(&srv);
        assert_eq!(c2.ask(&discover(2)).expect("OFFER").yiaddr, ip(2));
        let other = c2.ask(&request(2, ip(2), Ipv4Addr::new(198, 18, 1, 250)));
        if compat {
            assert_eq!(
                other.expect("NAK in compatibility mode").mt,
                MessageType::Nak
            );
        } else {
            assert!(
                other.is_none(),
                "RFC 2131: no reply to a REQUEST for another server, got {other:?}"
            );
        }
        // The held offer was freed: nothing is offered any more.
        assert_eq!(srv.server().leases().usage(srv.clock().now()).offered, 0);
        srv.stop();
    }
}

#[test]
fn b_four_clients_in_order_and_a_fifth() {
    for compat in [false, true] {
        let srv = server(compat, 2, 4);
        for n in 1..=4 {
            let c = Client::new(&srv);
            let offer = c.ask(&discover(n)).expect("OFFER");
            assert_eq!(offer.yiaddr, ip(n), "client {n}");
            assert_eq!(
                c.ask(&request(n, offer.yiaddr, SID)).expect("ACK").mt,
                MessageType::Ack
            );
        }
        let c5 = Client::new(&srv);
        let r = c5.ask(&discover(5));
        if compat {
            assert_eq!(r.expect("NAK in compatibility mode").mt, MessageType::Nak);
        } else {
            assert!(
                r.is_none(),
                "RFC 2131: no reply when the pool is exhausted, got {r:?}"
            );
        }
        srv.stop();
    }
}

#[test]
fn c_interleaved_clients_get_what_was_offered() {
    let srv = server(false, 2, 4);
    let (c1, c2) = (Client::new(&srv), Client::new(&srv));
    let o1 = c1.ask(&discover(1)).expect("OFFER 1");
    let o2 = c2.ask(&discover(2)).expect("OFFER 2");
    assert_ne!(o1.yiaddr, o2.yiaddr);
    let a1 = c1.ask(&request(1, o1.yiaddr, SID)).expect("ACK 1");
    let a2 = c2.ask(&request(2, o2.yiaddr, SID)).expect("ACK 2");
    assert_eq!((a1.mt, a1.yiaddr), (MessageType::Ack, o1.yiaddr));
    assert_eq!((a2.mt, a2.yiaddr), (MessageType::Ack, o2.yiaddr));
    srv.stop();
}

#[test]
fn d_release_gets_no_reply_and_the_address_comes_back() {
    let srv = server(false, 2, 4);
    let c = Client::new(&srv);
    let offer = c.ask(&discover(1)).expect("OFFER");
    c.ask(&request(1, offer.yiaddr, SID)).expect("ACK");
    let release = Msg {
        ciaddr: Some(offer.yiaddr),
        server_id: Some(SID),
        ..Msg::new(MessageType::Release, 1)
    };
    assert!(c.ask(&release).is_none(), "RELEASE gets no reply");
    // Another client comes and goes; the same chaddr is then offered its old address.
    let c2 = Client::new(&srv);
    let o2 = c2.ask(&discover(2)).expect("OFFER 2");
    assert_ne!(o2.yiaddr, offer.yiaddr);
    assert_eq!(
        c.ask(&discover(1)).expect("OFFER again").yiaddr,
        offer.yiaddr
    );
    srv.stop();
}

#[test]
fn e_eight_discovers_at_once_are_answered_by_several_workers() {
    // Eight clients need eight addresses: this scenario gets a pool of 16.
    let srv = server(false, 4, 16);
    let clients: Vec<Client> = (0..8).map(|_| Client::new(&srv)).collect();
    for (i, c) in clients.iter().enumerate() {
        c.send(&discover(i as u8 + 1));
    }
    let mut got: Vec<Ipv4Addr> = clients
        .iter()
        .map(|c| c.recv().expect("OFFER").yiaddr)
        .collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 8, "distinct addresses: {got:?}");
    // The kernel spreads the eight source ports over the workers' SO_REUSEPORT sockets.
    let busy = || {
        srv.worker_stats()
            .iter()
            .filter(|s| s.received(MessageType::Discover) > 0)
            .count()
    };
    assert!(
        bootstorm_tests::wait_until(Duration::from_secs(2), || busy() >= 2),
        "only {} worker(s) answered",
        busy()
    );
    // A worker publishes its counters right after its send, so the last OFFER can arrive
    // before its count does: wait (bounded) for the counters to catch up.
    let total = || -> u64 {
        srv.worker_stats()
            .iter()
            .map(|s| s.sent(MessageType::Offer))
            .sum()
    };
    bootstorm_tests::wait_until(Duration::from_secs(2), || total() >= 8);
    assert_eq!(total(), 8);
    srv.stop();
}

#[test]
fn malformed_datagrams_are_counted_and_the_server_keeps_serving() {
    let srv = server(false, 2, 4);
    let c = Client::new(&srv);
    for junk in [&b""[..], b"\x01", &[0xffu8; 300][..], &[1u8; 240][..]] {
        c.sock.send_to(junk, c.to).unwrap();
    }
    let mut truncated = discover(1).bytes();
    truncated.truncate(250);
    truncated.extend_from_slice(&[61, 40, 1]);
    c.sock.send_to(&truncated, c.to).unwrap();
    assert_eq!(
        c.ask(&discover(2)).expect("still serving").mt,
        MessageType::Offer
    );
    let malformed = || {
        srv.total_stats()
            .drops(bootstorm_dhcp::DropReason::Malformed)
    };
    assert!(
        bootstorm_tests::wait_until(Duration::from_secs(2), || malformed() >= 4),
        "malformed count {}",
        malformed()
    );
    srv.stop();
}
