//! Drives the DHCP server core with arbitrary request sequences. Each step is built from the input:
//! a client (one of 8 MACs), a message type, addresses near the pool, a server id, flags, a time
//! step, then raw option bytes the fuzzer controls (or, in one mode, a whole raw datagram). After
//! every step: no panic, every reply parses, and no address is held by two clients.
#![no_main]

use bootstorm_dhcp::config::{Boot, BootRule, Match, OptionSet, Reservation, ServerConfig, Subnet};
use bootstorm_dhcp::{RxMeta, Server, Stats};
use bootstorm_lease::LeaseState;
use bootstorm_time::{Duration, Instant};
use bootstorm_wire::dhcp::{self, OptionWriter, Packet, Repr, emit_request_header, opt};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

fn server() -> Server {
    let mut options = OptionSet::new();
    options.set(opt::ROUTER, vec![198, 18, 0, 1], false);
    let subnet = |net: [u8; 4], prefix, start: [u8; 4], end: [u8; 4], iface: Option<&str>| Subnet {
        network: Ipv4Addr::from(net),
        prefix,
        ranges: vec![(Ipv4Addr::from(start), Ipv4Addr::from(end))],
        server_id: Ipv4Addr::new(198, 18, 0, 1),
        interface: iface.map(String::from),
        lease_time: Duration::from_secs(120),
        renewal_time: None,
        rebinding_time: None,
        next_server: None,
        options: options.clone(),
    };
    let cfg = ServerConfig {
        subnets: vec![
            subnet([198, 18, 0, 0], 16, [198, 18, 1, 1], [198, 18, 1, 4], None),
            subnet([198, 19, 0, 0], 24, [198, 19, 0, 10], [198, 19, 0, 12], None),
        ],
        reservations: vec![Reservation {
            hwaddr: Some([2, 0, 0, 0, 0, 7]),
            client_id: None,
            addr: Ipv4Addr::new(198, 18, 1, 3),
            hostname: Some("seven".into()),
            options: OptionSet::new(),
            boot: None,
        }],
        boot_rules: vec![
            BootRule {
                name: "ipxe".into(),
                matcher: Match { user_class: Some(b"iPXE"[..].into()), ..Match::default() },
                boot: Boot { file: "boot.ipxe".into(), ..Boot::default() },
                options: OptionSet::new(),
            },
            BootRule {
                name: "efi".into(),
                matcher: Match { arch: vec![7, 9], ..Match::default() },
                boot: Boot { file: "x".repeat(200), ..Boot::default() },
                options: OptionSet::new(),
            },
        ],
        offer_hold: Duration::from_secs(5),
        decline_quarantine: Duration::from_secs(20),
        shards: 4,
        ..ServerConfig::default()
    };
    Server::new(cfg).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let srv = server();
    let mut stats = Stats::default();
    let mut now = Instant::ZERO;
    let mut rest = data;
    let mut out = [0u8; 1500];
    for _ in 0..64 {
        if rest.len() < 8 {
            break;
        }
        let (h, tail) = rest.split_at(8);
        let olen = usize::from(h[7]).min(tail.len());
        let (raw_opts, tail) = tail.split_at(olen);
        rest = tail;
        now = now + Duration::from_secs(u64::from(h[6] & 0x1f));
        let client = h[0] & 7;
        let mac = [2, 0, 0, 0, 0, client];
        let near = |b: u8| match b & 3 {
            0 => Ipv4Addr::UNSPECIFIED,
            1 => Ipv4Addr::new(198, 18, 1, b >> 2),
            2 => Ipv4Addr::new(198, 19, 0, 8 + (b >> 5)),
            _ => Ipv4Addr::new(10, 0, 0, b),
        };
        let datagram: Vec<u8> = if h[1] == 0xff {
            raw_opts.to_vec()
        } else {
            let mut b = [0u8; 1200];
            let flags = if h[5] & 1 != 0 { dhcp::FLAG_BROADCAST } else { 0 };
            let giaddr = if h[5] & 2 != 0 { near(h[4]) } else { Ipv4Addr::UNSPECIFIED };
            let mut p = emit_request_header(&mut b, u32::from(h[0]), &mac, flags, near(h[2]), giaddr).unwrap();
            let mut w = OptionWriter::new(p.options_mut(), 900);
            w.push(opt::MESSAGE_TYPE, &[h[1] % 10]).unwrap();
            if h[5] & 4 != 0 {
                w.push(opt::REQUESTED_IP, &near(h[3]).octets()).unwrap();
            }
            if h[5] & 8 != 0 {
                let sid = if h[5] & 16 != 0 { Ipv4Addr::new(198, 18, 0, 1) } else { Ipv4Addr::new(198, 18, 0, 9) };
                w.push(opt::SERVER_ID, &sid.octets()).unwrap();
            }
            let n = dhcp::HEADER_LEN + w.len();
            let k = raw_opts.len().min(b.len() - n);
            b[n..n + k].copy_from_slice(&raw_opts[..k]);
            b[..n + k].to_vec()
        };
        let src = if h[5] & 32 != 0 { SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000) } else { SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68) };
        let meta = RxMeta {
            src,
            subnet_hint: None,
            ifindex: 0,
        };
        let o = srv.handle(now, &meta, &datagram, &mut out, &mut stats);
        if let Some(r) = o.reply {
            assert!(r.len <= out.len());
            let p = Packet::new_checked(&out[..r.len]).expect("reply is a valid DHCP packet");
            let rep = Repr::parse(&p).expect("reply options parse");
            assert_eq!(rep.message_type, Some(r.message_type));
        }
        // No address held by two clients.
        let mut holders: HashMap<Ipv4Addr, Box<[u8]>> = HashMap::new();
        for l in srv.leases().leases(now) {
            if matches!(l.state, LeaseState::Offered | LeaseState::Bound) {
                if let Some(other) = holders.insert(l.addr, l.key.clone()) {
                    panic!("{} held by {:?} and {:?}", l.addr, other, l.key);
                }
            }
        }
    }
});
