//! Conformance: one test per requirement that bootstorm once got wrong, against the real daemon
//! (the worker runtime in-process on loopback, or `bootstorm serve` in a namespace lab where a
//! real interface matters), grouped by RFC and named after the section they check. The sans-IO
//! cores carry more of the same, named the same way (`grep rfc2131_ userspace`).

use crate::msg::{Client, Msg, ReplyInfo, parse};
use bootstorm_daemon::{config, serve};
use bootstorm_tests::{Lab, ServerProc, TempDir, need_root};
use bootstorm_wire::dhcp::{MessageType, opt};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// An in-process server on loopback with a /24 pool of `pool_end` addresses.
fn loopback_server(workers: usize, pool_end: u8) -> serve::Running {
    let text = format!(
        r#"
[server]
address = "127.0.0.1"
port = 0
workers = {workers}

[[subnet]]
network = "198.18.1.0/24"
server_id = "198.18.1.0"
pools = ["198.18.1.1-198.18.1.{pool_end}"]
"#
    );
    let s = config::parse(Path::new("conformance.toml"), &text).unwrap();
    serve::start(&s).unwrap()
}

/// Every reply with `xid` that reaches `sock` within `window` (bounded: at most 64 datagrams).
fn replies_within(sock: &UdpSocket, xid: u32, window: Duration) -> Vec<ReplyInfo> {
    let end = Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = [0u8; 1500];
    for _ in 0..64 {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let r = parse(&buf[..n]);
                if r.xid == xid {
                    got.push(r);
                }
            }
            Err(_) => break,
        }
    }
    got
}

/// The concatenation of every instance of option `code` (RFC 3396).
fn joined(r: &ReplyInfo, code: u8) -> Vec<u8> {
    r.options
        .iter()
        .filter(|(c, _)| *c == code)
        .flat_map(|(_, d)| d.clone())
        .collect()
}

const LAB: &str = r#"
[server]
interfaces = ["@IF@"]
workers = 2
control_socket = "@CONTROL@"

[[subnet]]
network = "198.18.0.0/16"
interface = "@IF@"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.1.20"]
"#;

mod rfc2131 {
    use super::*;

    /// Issue 12.3: a DISCOVER or REQUEST sent to the subnet's broadcast address was answered
    /// once per worker (two OFFERs, two ACKs with two workers). RFC 2131 4.1: one server, one
    /// reply.
    #[test]
    fn rfc2131_4_1_subnet_directed_broadcast_is_answered_once() {
        if !need_root("rfc2131_4_1_subnet_directed_broadcast_is_answered_once") {
            return;
        }
        let lab = Lab::new();
        lab.add_client_address("198.18.0.2/16"); // a route to 198.18.255.255
        let dir = TempDir::new();
        let _srv = ServerProc::start(&lab, &dir, LAB);
        let sock = lab.client_udp("0.0.0.0:68");
        for (n, to) in [(1u8, "198.18.255.255:67"), (2, "255.255.255.255:67")] {
            let d = Msg::new(MessageType::Discover, n);
            sock.send_to(&d.bytes(), to).unwrap();
            let offers = replies_within(&sock, d.xid, Duration::from_millis(1500));
            assert_eq!(offers.len(), 1, "OFFERs to a DISCOVER sent to {to}");
            let r = Msg {
                requested: Some(offers[0].yiaddr),
                server_id: offers[0].server_id,
                ..Msg::new(MessageType::Request, n)
            };
            sock.send_to(&r.bytes(), to).unwrap();
            let acks = replies_within(&sock, r.xid, Duration::from_millis(1500));
            assert_eq!(acks.len(), 1, "ACKs to a REQUEST sent to {to}");
            assert_eq!(acks[0].mt, MessageType::Ack);
        }
    }

    /// Issue 12.5: RFC 2131 4.1: "In all cases, when 'giaddr' is zero, the server broadcasts any
    /// DHCPNAK messages". A NAK went to the source address of a client on a real interface.
    #[test]
    fn rfc2131_4_1_nak_is_broadcast_when_giaddr_is_zero() {
        if !need_root("rfc2131_4_1_nak_is_broadcast_when_giaddr_is_zero") {
            return;
        }
        let lab = Lab::new();
        lab.add_client_address("198.18.0.2/16");
        let dir = TempDir::new();
        let _srv = ServerProc::start(&lab, &dir, LAB);
        // One socket hears only broadcasts to port 68; the other sends from 198.18.0.2:68 and
        // would hear a unicast to that address.
        let bcast = lab.client_udp("255.255.255.255:68");
        let uni = lab.client_udp("198.18.0.2:68");
        let r = Msg {
            requested: Some(Ipv4Addr::new(10, 1, 1, 1)), // wrong network
            ..Msg::new(MessageType::Request, 3)
        };
        uni.send_to(&r.bytes(), "198.18.0.1:67").unwrap();
        let naks = replies_within(&bcast, r.xid, Duration::from_millis(1500));
        assert_eq!(naks.len(), 1, "a broadcast NAK");
        assert_eq!(naks[0].mt, MessageType::Nak);
        assert!(
            replies_within(&uni, r.xid, Duration::from_millis(300)).is_empty(),
            "no NAK unicast to the source"
        );
    }

    /// Issue 12.2: RFC 2131 4.3.2: a client in INIT-REBOOT that asks for an address other than
    /// its lease gets a NAK ("requested address incorrect"); it was ACKed and moved, and its old
    /// address stayed bound with no record naming it, until the pool ran dry.
    #[test]
    fn rfc2131_4_3_2_init_reboot_for_another_address_is_nakked() {
        let srv = loopback_server(2, 4);
        let c = Client::new(&srv);
        c.dora(1);
        for last in 2..=4 {
            let other = Ipv4Addr::new(198, 18, 1, last);
            let nak = c
                .ask(&Msg {
                    requested: Some(other),
                    ..Msg::new(MessageType::Request, 1)
                })
                .expect("NAK");
            assert_eq!(nak.mt, MessageType::Nak, "INIT-REBOOT for {other}");
            assert_eq!(
                nak.option(opt::MESSAGE),
                Some(&b"requested address incorrect"[..])
            );
        }
        // Three other clients still get the other three addresses.
        for n in 2..=4 {
            c.dora(n);
        }
        let now = srv.clock().now();
        assert!(srv.server().leases().unnamed(now).is_empty());
        srv.stop();
    }

    /// Issue 12.1: about 1,000 DISCOVERs from random MACs (never a REQUEST) held every address of
    /// a /24 for `offer_hold` (30 s), and a real client got no OFFER at all (`pool_exhausted`).
    /// Offers are soft holds now: the real client is offered an address and binds it.
    #[test]
    fn rfc2131_4_3_1_a_discover_flood_leaves_a_real_client_its_lease() {
        let srv = loopback_server(2, 254);
        let c = Client::new(&srv);
        // The flood: 1,000 DISCOVERs, each from its own MAC; replies are read and thrown away.
        let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
        flood.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1500];
        for k in 0..1000u32 {
            let mut d = Msg::new(MessageType::Discover, 0);
            d.mac = [0x02, 0xf1, 0, (k >> 16) as u8, (k >> 8) as u8, k as u8];
            d.xid = 0x7000_0000 | k;
            flood.send_to(&d.bytes(), c.to).unwrap();
            while flood.recv_from(&mut buf).is_ok() {}
        }
        // Every DISCOVER of the flood was taken in before the real client asks.
        assert!(bootstorm_tests::wait_until(Duration::from_secs(10), || {
            srv.total_stats().received(MessageType::Discover) == 1000
        }));
        let o = c
            .ask(&Msg::new(MessageType::Discover, 1))
            .expect("an OFFER despite the flood");
        assert_eq!(o.mt, MessageType::Offer);
        let a = c
            .ask(&Msg {
                requested: Some(o.yiaddr),
                server_id: o.server_id,
                ..Msg::new(MessageType::Request, 1)
            })
            .expect("ACK");
        assert_eq!(a.mt, MessageType::Ack);
        let st = srv.total_stats();
        assert!(st.offers_reclaimed >= 1000 - 254, "{}", st.offers_reclaimed);
        assert_eq!(st.drops(bootstorm_dhcp::DropReason::PoolExhausted), 0);
        srv.stop();
    }

    /// Issue 12.6: RFC 2131 4.1 (option overload, optional options dropped first): with option 57
    /// = 576, a long client id and a long relay option 82, no reply was sent at all.
    #[test]
    fn rfc2131_4_1_a_576_byte_client_with_long_options_gets_a_reply() {
        if !need_root("rfc2131_4_1_a_576_byte_client_with_long_options_gets_a_reply") {
            return;
        }
        let lab = Lab::new();
        lab.add_client_address("198.18.0.2/16");
        let dir = TempDir::new();
        let _srv = ServerProc::start(&lab, &dir, LAB);
        let mut id = vec![0u8];
        id.extend(std::iter::repeat_n(0x5a, 169));
        let mut d = Msg::new(MessageType::Discover, 1);
        d.extra = vec![
            (opt::CLIENT_ID, id.clone()),
            (opt::MAX_MESSAGE_SIZE, 576u16.to_be_bytes().to_vec()),
            (opt::PARAMETER_REQUEST_LIST, vec![1, 3, 6, 15, 28, 42]),
        ];
        let mut bytes = d.bytes();
        // As a relay forwards it: giaddr set, option 82 (110 bytes) appended (RFC 3046 2.1).
        let end = bytes.iter().rposition(|b| *b == 255).unwrap();
        bytes.truncate(end);
        bytes.extend_from_slice(&[82, 110, 1, 108]);
        bytes.extend(std::iter::repeat_n(0x33, 108));
        bytes.push(255);
        bytes[24..28].copy_from_slice(&[198, 18, 0, 2]);
        let relay = lab.client_udp("198.18.0.2:67");
        relay.send_to(&bytes, "198.18.0.1:67").unwrap();
        let got = replies_within(&relay, d.xid, Duration::from_millis(1500));
        assert_eq!(got.len(), 1, "one OFFER");
        let r = &got[0];
        assert_eq!(r.mt, MessageType::Offer);
        assert_eq!(joined(r, opt::CLIENT_ID), id, "client id echoed whole");
        assert_eq!(
            joined(r, opt::RELAY_AGENT_INFO).len(),
            110,
            "option 82 echoed"
        );
    }
}

mod rfc2132 {
    use super::*;

    /// Issue 12.7: RFC 2132 3.14 and 9.13 give host name (12) and vendor class (60) a minimum
    /// length of 1; a zero-length one made the whole DISCOVER dropped. Now the option is
    /// ignored (counted in `bad_options`) and the client is served.
    #[test]
    fn rfc2132_3_14_and_9_13_zero_length_options_are_ignored() {
        let srv = loopback_server(1, 4);
        let c = Client::new(&srv);
        for (n, code) in [(1u8, opt::HOSTNAME), (2, opt::VENDOR_CLASS_ID)] {
            let mut d = Msg::new(MessageType::Discover, n);
            d.extra = vec![(code, Vec::new())];
            let o = c
                .ask(&d)
                .unwrap_or_else(|| panic!("no OFFER with an empty option {code}"));
            assert_eq!(o.mt, MessageType::Offer);
        }
        let stats = srv.total_stats();
        assert_eq!(stats.bad_options, 2);
        srv.stop();
    }
}

mod rfc3396 {
    use super::*;

    /// Issue 12.4: RFC 3396 7: an option that comes in several instances is their
    /// concatenation. A client id of 300 bytes (two instances) counted with its first 255 and
    /// was echoed cut short.
    #[test]
    fn rfc3396_7_split_client_id_is_joined_and_echoed_whole() {
        let srv = loopback_server(1, 4);
        let c = Client::new(&srv);
        let mut id = vec![0u8];
        id.extend((0..299).map(|i| (i % 250) as u8 + 1));
        let mut d = Msg::new(MessageType::Discover, 1);
        // Written as 255 + 45 bytes. Echoing it takes room: the client says it takes 1500.
        d.extra = vec![
            (opt::CLIENT_ID, id.clone()),
            (opt::MAX_MESSAGE_SIZE, 1500u16.to_be_bytes().to_vec()),
        ];
        let o = c.ask(&d).expect("OFFER");
        assert_eq!(joined(&o, opt::CLIENT_ID), id);
        let now = srv.clock().now();
        assert!(
            srv.server().leases().lease_of(now, &id).is_some(),
            "keyed by the whole id"
        );
        srv.stop();
    }
}

mod rfc1350 {
    use super::*;
    use crate::tftp::{Server, ask_from, content, rrq};
    use bootstorm_wire::tftp::{ErrorCode, Repr};

    fn recv(s: &UdpSocket, limit: Duration) -> Option<(Vec<u8>, std::net::SocketAddr)> {
        s.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 2000];
        s.recv_from(&mut buf)
            .ok()
            .map(|(n, a)| (buf[..n].to_vec(), a))
    }

    fn ack(block: u16) -> Vec<u8> {
        let mut b = [0u8; 4];
        let n = Repr::Ack { block }.emit(&mut b).unwrap();
        b[..n].to_vec()
    }

    /// Issue 12.10: RFC 1350 4: "If a source TID does not match, the packet should be discarded
    /// as erroneously sent from somewhere else. An error packet should be sent to the source of
    /// the incorrect packet, while not disturbing the transfer." No ERROR 5 was sent (the
    /// transfer socket was connected, so the kernel dropped the stranger's datagram).
    #[test]
    fn rfc1350_4_a_wrong_tid_gets_error_5_and_the_transfer_goes_on() {
        let srv = Server::start();
        let data = content(5000, 3);
        srv.put("f.bin", &data);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .send_to(&rrq(b"f.bin", &[]), ("127.0.0.1", srv.port()))
            .unwrap();
        let mut got = Vec::new();
        let mut tid = None;
        for block in 1u16..=20 {
            let (pkt, from) = recv(&client, Duration::from_secs(3)).expect("DATA");
            assert_eq!(
                *tid.get_or_insert(from),
                from,
                "one TID for the whole transfer"
            );
            let Repr::Data { block: b, data: d } = Repr::parse(&pkt).unwrap() else {
                panic!("{pkt:?}");
            };
            assert_eq!(b, block);
            got.extend_from_slice(d);
            if block == 2 {
                // A stranger sends to the transfer's port: it gets ERROR 5 from that port.
                let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
                stranger.send_to(&ack(2), from).unwrap();
                let (e, efrom) = recv(&stranger, Duration::from_secs(3)).expect("an ERROR 5");
                assert_eq!(efrom, from);
                match Repr::parse(&e).unwrap() {
                    Repr::Error { code, .. } => assert_eq!(code, ErrorCode::UnknownTid),
                    r => panic!("{r:?}"),
                }
            }
            client.send_to(&ack(block), from).unwrap();
            if d.len() < 512 {
                break;
            }
        }
        assert_eq!(got, data, "the transfer finished byte-exact, undisturbed");
        let s = srv.running.as_ref().unwrap().stats();
        assert_eq!(s.wrong_tid.load(std::sync::atomic::Ordering::Relaxed), 1);
        let done = || s.completed.load(std::sync::atomic::Ordering::Relaxed) == 1;
        assert!(bootstorm_tests::wait_until(Duration::from_secs(10), done));
        assert_eq!(s.failed.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    /// Issue 12.16: a test client's port, given to the next test socket, must not receive a
    /// reply of a transfer begun from it before (see `tftp::ask_from`).
    #[test]
    fn rfc1350_7_a_port_reused_by_the_next_client_hears_nothing_of_the_last_transfer() {
        let srv = Server::start();
        srv.put("f", &content(5000, 9));
        let first = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        let (reply, _) = ask_from(&first, srv.port(), &rrq(b"f", &[("blksize", "1468")])).unwrap();
        assert!(matches!(Repr::parse(&reply), Ok(Repr::OAck { .. })));
        drop(first);
        // The next socket on the same port, as the kernel may hand it out.
        let next = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        // Longer than the server's retransmission timeout (1 s here), twice.
        assert!(
            recv(&next, Duration::from_millis(2500)).is_none(),
            "a stale retransmission reached the next socket"
        );
    }
}

mod rfc2347 {
    use crate::tftp::{Server, ask, content, rrq};
    use bootstorm_wire::tftp::{Options, Repr};

    /// Issue 12.9: RFC 2347: invalid option values (blksize 7, 65465 or "abc", timeout 0 or
    /// 256, windowsize 0 or 65536) refused the whole request with ERROR 4. The server leaves
    /// such an option out of its OACK, and the transfer runs with the default.
    #[test]
    fn rfc2347_invalid_option_values_are_left_out_of_the_oack() {
        let srv = Server::start();
        srv.put("f", &content(5000, 9));
        for bad in [
            ("blksize", "7"),
            ("blksize", "65465"),
            ("blksize", "abc"),
            ("timeout", "0"),
            ("timeout", "256"),
            ("windowsize", "0"),
            ("windowsize", "65536"),
        ] {
            // Alone: no valid option left, so plain RFC 1350: DATA 1 of 512 bytes.
            let (reply, _) = ask(srv.port(), &rrq(b"f", &[bad])).expect("a reply");
            match Repr::parse(&reply).unwrap() {
                Repr::Data { block: 1, data } => assert_eq!(data.len(), 512, "{bad:?}"),
                r => panic!("{bad:?}: {r:?}"),
            }
            // Beside a valid one: the OACK carries only the valid one.
            let (reply, _) = ask(srv.port(), &rrq(b"f", &[bad, ("tsize", "0")])).expect("a reply");
            match Repr::parse(&reply).unwrap() {
                Repr::OAck { options } => assert_eq!(
                    options,
                    Options {
                        tsize: Some(5000),
                        ..Options::default()
                    },
                    "{bad:?}"
                ),
                r => panic!("{bad:?}: {r:?}"),
            }
        }
        let s = srv.running.as_ref().unwrap().stats();
        assert_eq!(s.bad_options.load(std::sync::atomic::Ordering::Relaxed), 14);
        assert_eq!(s.refused.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}

mod sessions {
    use super::*;

    /// Issue 13 (boot sessions): a per-MAC TFTP root is found from the DHCP lease of the
    /// client's address through the boot-session registry the workers feed, not from the
    /// kernel's neighbour table: here the DHCP client's chaddr (02:aa:00:00:00:01) is not the
    /// MAC its TFTP request arrives from (the veth's), and the chaddr's directory is served.
    #[test]
    fn per_mac_roots_follow_the_dhcp_lease_not_the_neighbour_table() {
        if !need_root("per_mac_roots_follow_the_dhcp_lease_not_the_neighbour_table") {
            return;
        }
        let lab = Lab::new();
        lab.add_client_address("198.18.0.2/16");
        let dir = TempDir::new();
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("02-aa-00-00-00-01")).unwrap();
        std::fs::write(root.join("boot.ipxe"), b"shared").unwrap();
        std::fs::write(root.join("02-aa-00-00-00-01/boot.ipxe"), b"mine").unwrap();
        let config = format!(
            "{LAB}\n[tftp]\nroot = \"{}\"\nunique_root = \"mac\"\n",
            root.display()
        );
        let _srv = ServerProc::start(&lab, &dir, &config);
        // DHCP as 02:aa:00:00:00:01 through a relay socket (giaddr 198.18.0.2), so the lease is
        // 198.18.1.x for that chaddr.
        let relay = lab.client_udp("198.18.0.2:67");
        let mut d = Msg::new(MessageType::Discover, 1);
        d.mac = [0x02, 0xaa, 0, 0, 0, 1];
        let giaddr = |mut b: Vec<u8>| {
            b[24..28].copy_from_slice(&[198, 18, 0, 2]);
            b
        };
        relay.send_to(&giaddr(d.bytes()), "198.18.0.1:67").unwrap();
        let o = replies_within(&relay, d.xid, Duration::from_millis(2000));
        assert_eq!(o.len(), 1, "OFFER");
        let r = Msg {
            mt: MessageType::Request.into(),
            requested: Some(o[0].yiaddr),
            server_id: o[0].server_id,
            ..d.clone()
        };
        relay.send_to(&giaddr(r.bytes()), "198.18.0.1:67").unwrap();
        let a = replies_within(&relay, r.xid, Duration::from_millis(2000));
        assert_eq!(a.len(), 1, "ACK");
        let leased = a[0].yiaddr;
        // The client takes its address and asks for boot.ipxe from it.
        lab.add_client_address(&format!("{leased}/16"));
        let c = lab.client_udp(&format!("{leased}:0"));
        c.send_to(b"\x00\x01boot.ipxe\x00octet\x00", "198.18.0.1:69")
            .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = c.recv_from(&mut buf).expect("DATA");
        assert_eq!(&buf[..2], &[0, 3], "DATA: {:?}", &buf[..n]);
        assert_eq!(
            &buf[4..n],
            b"mine",
            "the lease's MAC directory, not the veth's"
        );
    }
}
