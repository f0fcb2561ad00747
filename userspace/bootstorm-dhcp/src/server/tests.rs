use super::*;
use crate::config::{Route, encode_ips, encode_routes};
use bootstorm_lease::Change;
use bootstorm_wire::dhcp::{DhcpOption, MAGIC_COOKIE, c_str};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn ip(a: u8, b: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, a, b)
}

fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x00, 0x00, n]
}

fn subnet(ranges: Vec<(Ipv4Addr, Ipv4Addr)>) -> Subnet {
    let mut options = OptionSet::new();
    options.set(opt::ROUTER, encode_ips(&[SERVER]), false);
    options.set(opt::DNS_SERVERS, encode_ips(&[ip(0, 53), ip(0, 54)]), false);
    options.set(opt::DOMAIN_NAME, &b"lab.example"[..], false);
    options.set(opt::NTP_SERVERS, encode_ips(&[ip(0, 123)]), false);
    options.set(
        opt::CLASSLESS_ROUTES,
        encode_routes(&[
            Route {
                network: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
                router: SERVER,
            },
            Route {
                network: Ipv4Addr::new(198, 19, 0, 0),
                prefix: 16,
                router: ip(0, 2),
            },
        ]),
        false,
    );
    Subnet {
        network: ip(0, 0),
        prefix: 16,
        ranges,
        server_id: SERVER,
        interface: None,
        lease_time: Duration::from_secs(3600),
        renewal_time: None,
        rebinding_time: None,
        next_server: None,
        options,
    }
}

fn rule(name: &str, m: Match, file: &str) -> BootRule {
    BootRule {
        name: name.into(),
        matcher: m,
        boot: Boot {
            file: file.into(),
            ..Boot::default()
        },
        options: OptionSet::new(),
    }
}

fn pxe_config() -> ServerConfig {
    ServerConfig {
        subnets: vec![subnet(vec![(ip(1, 1), ip(1, 100))])],
        boot_rules: vec![
            rule(
                "ipxe",
                Match {
                    user_class: Some(b"iPXE"[..].into()),
                    ..Match::default()
                },
                "http://198.18.0.1/boot.ipxe",
            ),
            rule(
                "http",
                Match {
                    arch: vec![16],
                    ..Match::default()
                },
                "http://198.18.0.1/efi/shimx64.efi",
            ),
            rule(
                "bios",
                Match {
                    arch: vec![0],
                    ..Match::default()
                },
                "undionly.kpxe",
            ),
            rule(
                "efi",
                Match {
                    arch: vec![7, 9],
                    ..Match::default()
                },
                "ipxe.efi",
            ),
            rule(
                "arm",
                Match {
                    arch: vec![11],
                    ..Match::default()
                },
                "ipxe-arm64.efi",
            ),
        ],
        ..ServerConfig::default()
    }
}

fn course_config(compat: bool) -> ServerConfig {
    let mut s = subnet(vec![(ip(1, 1), ip(1, 4))]);
    s.server_id = ip(1, 0);
    ServerConfig {
        subnets: vec![s],
        compat_nak: compat,
        ..ServerConfig::default()
    }
}

/// A request as a test builds it.
#[derive(Clone, Default)]
struct Req {
    mt: u8,
    xid: u32,
    mac: [u8; 6],
    flags: u16,
    ciaddr: Option<Ipv4Addr>,
    giaddr: Option<Ipv4Addr>,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    client_id: Option<Vec<u8>>,
    arch: Option<u16>,
    user_class: Option<Vec<u8>>,
    vendor: Option<Vec<u8>>,
    prl: Option<Vec<u8>>,
    max_size: Option<u16>,
    uuid: Option<Vec<u8>>,
    relay_info: Option<Vec<u8>>,
    hostname: Option<Vec<u8>>,
    lease: Option<u32>,
}

impl Req {
    fn new(mt: MessageType, n: u8) -> Req {
        Req {
            mt: mt.into(),
            xid: 0x1000 + u32::from(n),
            mac: mac(n),
            ..Req::default()
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&self.xid.to_be_bytes());
        b[10..12].copy_from_slice(&self.flags.to_be_bytes());
        b[12..16].copy_from_slice(&self.ciaddr.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
        b[24..28].copy_from_slice(&self.giaddr.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
        b[28..34].copy_from_slice(&self.mac);
        b[236..240].copy_from_slice(&MAGIC_COOKIE);
        let mut o = |code: u8, d: &[u8]| {
            b.push(code);
            b.push(d.len() as u8);
            b.extend_from_slice(d);
        };
        o(53, &[self.mt]);
        if let Some(a) = self.requested {
            o(50, &a.octets());
        }
        if let Some(a) = self.server_id {
            o(54, &a.octets());
        }
        if let Some(c) = &self.client_id {
            o(61, c);
        }
        if let Some(a) = self.arch {
            o(93, &a.to_be_bytes());
        }
        if let Some(u) = &self.user_class {
            o(77, u);
        }
        if let Some(v) = &self.vendor {
            o(60, v);
        }
        if let Some(p) = &self.prl {
            o(55, p);
        }
        if let Some(m) = self.max_size {
            o(57, &m.to_be_bytes());
        }
        if let Some(u) = &self.uuid {
            o(97, u);
        }
        if let Some(h) = &self.hostname {
            o(12, h);
        }
        if let Some(l) = self.lease {
            o(51, &l.to_be_bytes());
        }
        if let Some(r) = &self.relay_info {
            o(82, r);
        }
        b.push(255);
        b
    }
}

fn meta() -> RxMeta {
    RxMeta {
        src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
        subnet_hint: None,
        ifindex: 0,
    }
}

fn loopback(port: u16) -> RxMeta {
    RxMeta {
        src: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        subnet_hint: None,
        ifindex: 0,
    }
}

struct Sent {
    outcome: Outcome,
    bytes: Vec<u8>,
}

impl Sent {
    fn repr(&self) -> Repr<'_> {
        Repr::parse(&Packet::new_checked(&self.bytes[..]).unwrap()).unwrap()
    }
    fn mt(&self) -> Option<MessageType> {
        self.outcome.reply.map(|r| r.message_type)
    }
    fn yiaddr(&self) -> Ipv4Addr {
        self.repr().yiaddr.unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
    fn option(&self, code: u8) -> Option<Vec<u8>> {
        let p = Packet::new_checked(&self.bytes[..]).unwrap();
        p.all_options()
            .map(Result::unwrap)
            .find(|o: &DhcpOption<'_>| o.code == code)
            .map(|o| o.data.to_vec())
    }
    fn codes(&self) -> Vec<u8> {
        let p = Packet::new_checked(&self.bytes[..]).unwrap();
        p.all_options().map(|o| o.unwrap().code).collect()
    }
    fn file(&self) -> Vec<u8> {
        c_str(Packet::new_checked(&self.bytes[..]).unwrap().file()).to_vec()
    }
}

fn send(srv: &Server, now: Instant, m: &RxMeta, req: &Req) -> Sent {
    let mut out = [0u8; 1500];
    let mut stats = Stats::default();
    let outcome = srv.handle(now, m, &req.bytes(), &mut out, &mut stats);
    let bytes = outcome
        .reply
        .map(|r| out[..r.len].to_vec())
        .unwrap_or_default();
    Sent { outcome, bytes }
}

fn t(s: u64) -> Instant {
    Instant::from_secs(s)
}

/// DISCOVER then REQUEST (SELECTING) for client `n`; returns the ACK.
fn dora(srv: &Server, now: Instant, n: u8) -> Sent {
    let offer = send(srv, now, &meta(), &Req::new(MessageType::Discover, n));
    assert_eq!(offer.mt(), Some(MessageType::Offer));
    let sid = offer.repr().server_id;
    let r = Req {
        requested: Some(offer.yiaddr()),
        server_id: sid,
        ..Req::new(MessageType::Request, n)
    };
    send(srv, now, &meta(), &r)
}

#[test]
fn full_dora_carries_lease_and_network_options() {
    let srv = Server::new(pxe_config()).unwrap();
    let prl = vec![1, 3, 6, 15, 28, 42, 51, 54, 58, 59, 121, 12];
    let d = Req {
        prl: Some(prl.clone()),
        client_id: Some(vec![1, 0x52, 0x54, 0, 0, 0, 1]),
        ..Req::new(MessageType::Discover, 1)
    };
    let offer = send(&srv, t(0), &meta(), &d);
    assert_eq!(offer.mt(), Some(MessageType::Offer));
    let r = offer.repr();
    assert_eq!(r.op, 2);
    assert_eq!(r.xid, 0x1001);
    assert_eq!(r.yiaddr, Some(ip(1, 1)));
    assert_eq!(r.server_id, Some(SERVER));
    assert_eq!(r.lease_time, Some(3600));
    assert_eq!(
        offer.option(opt::RENEWAL_TIME).unwrap(),
        1800u32.to_be_bytes()
    );
    assert_eq!(
        offer.option(opt::REBINDING_TIME).unwrap(),
        3150u32.to_be_bytes()
    );
    assert_eq!(offer.option(opt::SUBNET_MASK).unwrap(), [255, 255, 0, 0]);
    assert_eq!(offer.option(opt::ROUTER).unwrap(), SERVER.octets());
    assert_eq!(
        offer.option(opt::DNS_SERVERS).unwrap(),
        [198, 18, 0, 53, 198, 18, 0, 54]
    );
    assert_eq!(offer.option(opt::DOMAIN_NAME).unwrap(), b"lab.example");
    assert_eq!(
        offer.option(opt::BROADCAST_ADDR).unwrap(),
        [198, 18, 255, 255]
    );
    assert_eq!(offer.option(opt::NTP_SERVERS).unwrap(), [198, 18, 0, 123]);
    assert_eq!(
        offer.option(opt::CLASSLESS_ROUTES).unwrap(),
        [0, 198, 18, 0, 1, 16, 198, 19, 198, 18, 0, 2]
    );
    // RFC 6842: client id echoed.
    assert_eq!(
        offer.option(opt::CLIENT_ID).unwrap(),
        [1, 0x52, 0x54, 0, 0, 0, 1]
    );
    // Requested options come in the client's order after the fixed ones.
    let codes = offer.codes();
    let pos = |c: u8| codes.iter().position(|x| *x == c).unwrap();
    assert!(pos(1) < pos(3) && pos(3) < pos(6) && pos(6) < pos(15) && pos(42) < pos(121));
    assert!(offer.bytes.len() >= MIN_MESSAGE);
    let req = Req {
        requested: Some(ip(1, 1)),
        server_id: Some(SERVER),
        prl: Some(prl),
        ..Req::new(MessageType::Request, 1)
    };
    let req = Req {
        client_id: Some(vec![1, 0x52, 0x54, 0, 0, 0, 1]),
        ..req
    };
    let ack = send(&srv, t(1), &meta(), &req);
    assert_eq!(ack.mt(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), ip(1, 1));
    assert_eq!(ack.outcome.event.unwrap().kind, EventKind::Bind);
    let l = srv.leases().leases(t(1));
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].state, bootstorm_lease::LeaseState::Bound);
}

#[test]
fn renewing_rebinding_and_init_reboot() {
    let srv = Server::new(pxe_config()).unwrap();
    assert_eq!(dora(&srv, t(0), 1).mt(), Some(MessageType::Ack));
    // RENEWING: unicast from the client's address, ciaddr set, no server id, no option 50.
    let renew = Req {
        ciaddr: Some(ip(1, 1)),
        ..Req::new(MessageType::Request, 1)
    };
    let m = RxMeta {
        src: SocketAddrV4::new(ip(1, 1), 68),
        subnet_hint: None,
        ifindex: 0,
    };
    let ack = send(&srv, t(1800), &m, &renew);
    assert_eq!(ack.mt(), Some(MessageType::Ack));
    assert_eq!(ack.repr().ciaddr, Some(ip(1, 1)));
    assert_eq!(
        ack.outcome.reply.unwrap().dest,
        Destination::Unicast(SocketAddrV4::new(ip(1, 1), 68))
    );
    assert_eq!(
        srv.leases()
            .lease_of(t(1800), &[1, 0x52, 0x54, 0, 0, 0, 1])
            .unwrap()
            .expires,
        t(5400)
    );
    // REBINDING: the same, broadcast.
    let rebind = Req {
        flags: 0x8000,
        ..renew.clone()
    };
    assert_eq!(
        send(&srv, t(3200), &meta(), &rebind).mt(),
        Some(MessageType::Ack)
    );
    // INIT-REBOOT: option 50, no server id, no ciaddr.
    let reboot = Req {
        requested: Some(ip(1, 1)),
        ..Req::new(MessageType::Request, 1)
    };
    assert_eq!(
        send(&srv, t(3300), &meta(), &reboot).mt(),
        Some(MessageType::Ack)
    );
    // INIT-REBOOT for an address another client holds: NAK.
    assert_eq!(dora(&srv, t(3300), 2).yiaddr(), ip(1, 2));
    let wrong = Req {
        requested: Some(ip(1, 2)),
        ..Req::new(MessageType::Request, 1)
    };
    let nak = send(&srv, t(3301), &meta(), &wrong);
    assert_eq!(nak.mt(), Some(MessageType::Nak));
    assert_eq!(nak.outcome.reply.unwrap().dest, Destination::Broadcast);
    assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    // INIT-REBOOT on the wrong network: NAK.
    let moved = Req {
        requested: Some(Ipv4Addr::new(198, 19, 9, 9)),
        ..Req::new(MessageType::Request, 1)
    };
    assert_eq!(
        send(&srv, t(3302), &meta(), &moved).mt(),
        Some(MessageType::Nak)
    );
}

#[test]
fn init_reboot_of_unknown_client_is_silent_unless_authoritative() {
    let srv = Server::new(pxe_config()).unwrap();
    let reboot = Req {
        requested: Some(ip(1, 50)),
        ..Req::new(MessageType::Request, 9)
    };
    let s = send(&srv, t(0), &meta(), &reboot);
    assert_eq!(s.outcome.dropped, Some(DropReason::NoRecord));
    let srv = Server::new(ServerConfig {
        authoritative: true,
        ..pxe_config()
    })
    .unwrap();
    assert_eq!(
        send(&srv, t(0), &meta(), &reboot).mt(),
        Some(MessageType::Ack)
    );
    assert_eq!(dora(&srv, t(0), 1).yiaddr(), ip(1, 1));
    let other = Req {
        requested: Some(ip(1, 1)),
        ..Req::new(MessageType::Request, 8)
    };
    assert_eq!(
        send(&srv, t(0), &meta(), &other).mt(),
        Some(MessageType::Nak)
    );
}

#[test]
fn request_for_an_address_offered_to_another_client_is_nakked() {
    let srv = Server::new(pxe_config()).unwrap();
    let o1 = send(&srv, t(0), &meta(), &Req::new(MessageType::Discover, 1));
    let r = Req {
        requested: Some(o1.yiaddr()),
        server_id: Some(SERVER),
        ..Req::new(MessageType::Request, 2)
    };
    assert_eq!(send(&srv, t(0), &meta(), &r).mt(), Some(MessageType::Nak));
}

#[test]
fn release_frees_and_the_client_gets_its_address_back() {
    let srv = Server::new(pxe_config()).unwrap();
    assert_eq!(dora(&srv, t(0), 1).yiaddr(), ip(1, 1));
    let rel = Req {
        ciaddr: Some(ip(1, 1)),
        server_id: Some(SERVER),
        ..Req::new(MessageType::Release, 1)
    };
    let s = send(&srv, t(5), &meta(), &rel);
    assert!(s.outcome.reply.is_none());
    assert_eq!(s.outcome.event.unwrap().kind, EventKind::Release);
    assert_eq!(srv.leases().usage(t(5)).bound, 0);
    assert_eq!(dora(&srv, t(6), 2).yiaddr(), ip(1, 2));
    assert_eq!(dora(&srv, t(7), 1).yiaddr(), ip(1, 1));
}

#[test]
fn decline_quarantines_and_client_gets_another_address() {
    let srv = Server::new(pxe_config()).unwrap();
    assert_eq!(dora(&srv, t(0), 1).yiaddr(), ip(1, 1));
    let dec = Req {
        requested: Some(ip(1, 1)),
        server_id: Some(SERVER),
        ..Req::new(MessageType::Decline, 1)
    };
    let s = send(&srv, t(1), &meta(), &dec);
    assert!(s.outcome.reply.is_none());
    assert_eq!(s.outcome.event.unwrap().kind, EventKind::Decline);
    assert_eq!(dora(&srv, t(2), 1).yiaddr(), ip(1, 2));
    assert_eq!(srv.leases().usage(t(2)).declined, 1);
    assert_eq!(srv.leases().usage(t(3602)).declined, 0);
}

#[test]
fn inform_gets_options_without_a_lease() {
    let srv = Server::new(pxe_config()).unwrap();
    let inf = Req {
        ciaddr: Some(ip(5, 5)),
        prl: Some(vec![3, 6]),
        ..Req::new(MessageType::Inform, 3)
    };
    let m = RxMeta {
        src: SocketAddrV4::new(ip(5, 5), 68),
        subnet_hint: None,
        ifindex: 0,
    };
    let s = send(&srv, t(0), &m, &inf);
    assert_eq!(s.mt(), Some(MessageType::Ack));
    assert_eq!(s.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(s.option(opt::LEASE_TIME), None);
    assert_eq!(s.option(opt::ROUTER).unwrap(), SERVER.octets());
    assert_eq!(
        s.outcome.reply.unwrap().dest,
        Destination::Unicast(SocketAddrV4::new(ip(5, 5), 68))
    );
    assert!(srv.leases().leases(t(0)).is_empty());
}

#[test]
fn relayed_requests_use_giaddr_subnet_and_echo_option_82_last() {
    let mut cfg = pxe_config();
    let mut remote = subnet(vec![(
        Ipv4Addr::new(198, 19, 4, 10),
        Ipv4Addr::new(198, 19, 4, 20),
    )]);
    remote.network = Ipv4Addr::new(198, 19, 4, 0);
    remote.prefix = 24;
    cfg.subnets.push(remote);
    let srv = Server::new(cfg).unwrap();
    let relay = Ipv4Addr::new(198, 19, 4, 1);
    let info = vec![1, 4, b'e', b't', b'h', b'0', 2, 3, 1, 2, 3];
    let d = Req {
        giaddr: Some(relay),
        relay_info: Some(info.clone()),
        ..Req::new(MessageType::Discover, 1)
    };
    let m = RxMeta {
        src: SocketAddrV4::new(relay, 67),
        subnet_hint: None,
        ifindex: 0,
    };
    let offer = send(&srv, t(0), &m, &d);
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(198, 19, 4, 10));
    assert_eq!(offer.repr().giaddr, Some(relay));
    assert_eq!(
        offer.outcome.reply.unwrap().dest,
        Destination::Unicast(SocketAddrV4::new(relay, 67))
    );
    assert_eq!(offer.option(opt::RELAY_AGENT_INFO).unwrap(), info);
    assert_eq!(*offer.codes().last().unwrap(), opt::RELAY_AGENT_INFO);
    // An unknown relay network gets nothing.
    let d = Req {
        giaddr: Some(Ipv4Addr::new(198, 19, 99, 1)),
        ..Req::new(MessageType::Discover, 2)
    };
    assert_eq!(
        send(&srv, t(0), &m, &d).outcome.dropped,
        Some(DropReason::NoSubnet)
    );
}

#[test]
fn reservations_by_mac_and_client_id_are_never_given_to_others() {
    let mut cfg = pxe_config();
    cfg.reservations.push(Reservation {
        hwaddr: Some(mac(7)),
        client_id: None,
        addr: ip(1, 2),
        hostname: Some("node7".into()),
        options: OptionSet::new(),
        boot: None,
    });
    cfg.reservations.push(Reservation {
        hwaddr: None,
        client_id: Some(vec![0xff, 1, 2, 3, 4][..].into()),
        addr: ip(9, 9),
        hostname: None,
        options: OptionSet::new(),
        boot: None,
    });
    let srv = Server::new(cfg).unwrap();
    // Other clients get .1 and .3: .2 is reserved.
    assert_eq!(dora(&srv, t(0), 1).yiaddr(), ip(1, 1));
    assert_eq!(dora(&srv, t(0), 2).yiaddr(), ip(1, 3));
    let ack = dora(&srv, t(0), 7);
    assert_eq!(ack.yiaddr(), ip(1, 2));
    assert_eq!(ack.option(opt::HOSTNAME).unwrap(), b"node7");
    let by_id = Req {
        client_id: Some(vec![0xff, 1, 2, 3, 4]),
        ..Req::new(MessageType::Discover, 8)
    };
    assert_eq!(send(&srv, t(0), &meta(), &by_id).yiaddr(), ip(9, 9));
    let steal = Req {
        requested: Some(ip(9, 9)),
        server_id: Some(SERVER),
        ..Req::new(MessageType::Request, 3)
    };
    assert_eq!(
        send(&srv, t(0), &meta(), &steal).mt(),
        Some(MessageType::Nak)
    );
    let steal = Req {
        requested: Some(ip(1, 2)),
        ..Req::new(MessageType::Discover, 4)
    };
    assert_ne!(send(&srv, t(0), &meta(), &steal).yiaddr(), ip(1, 2));
}

fn pxe_discover(n: u8, arch: u16) -> Req {
    Req {
        arch: Some(arch),
        vendor: Some(format!("PXEClient:Arch:{arch:05}:UNDI:002001").into_bytes()),
        uuid: Some(vec![0; 17]),
        prl: Some(vec![1, 3, 6, 43, 60, 66, 67, 97]),
        ..Req::new(MessageType::Discover, n)
    }
}

#[test]
fn pxe_boot_file_by_architecture() {
    let srv = Server::new(pxe_config()).unwrap();
    for (n, arch, file) in [
        (1, 0, "undionly.kpxe"),
        (2, 7, "ipxe.efi"),
        (3, 9, "ipxe.efi"),
        (4, 11, "ipxe-arm64.efi"),
    ] {
        let o = send(&srv, t(0), &meta(), &pxe_discover(n, arch));
        assert_eq!(o.mt(), Some(MessageType::Offer), "arch {arch}");
        assert_eq!(o.file(), file.as_bytes(), "arch {arch}");
        assert_eq!(o.repr().siaddr, Some(SERVER), "arch {arch}");
        assert_eq!(o.option(opt::VENDOR_CLASS_ID).unwrap(), b"PXEClient");
        assert_eq!(o.option(opt::VENDOR_SPECIFIC).unwrap(), PXE_VENDOR_OPTIONS);
        assert_eq!(o.option(opt::TFTP_SERVER_NAME).unwrap(), b"198.18.0.1");
        assert_eq!(o.option(opt::BOOTFILE_NAME).unwrap(), file.as_bytes());
        assert_eq!(o.option(opt::CLIENT_UUID).unwrap(), vec![0; 17]);
    }
}

#[test]
fn http_boot_gets_httpclient_and_a_url() {
    let srv = Server::new(pxe_config()).unwrap();
    let d = Req {
        vendor: Some(b"HTTPClient:Arch:00016:UNDI:003001".to_vec()),
        ..pxe_discover(5, 16)
    };
    let o = send(&srv, t(0), &meta(), &d);
    assert_eq!(o.option(opt::VENDOR_CLASS_ID).unwrap(), b"HTTPClient");
    assert_eq!(o.file(), b"http://198.18.0.1/efi/shimx64.efi");
    assert_eq!(o.option(opt::VENDOR_SPECIFIC), None);
}

#[test]
fn ipxe_user_class_in_both_encodings_gets_the_script() {
    let srv = Server::new(pxe_config()).unwrap();
    for (n, uc) in [(1, b"iPXE".to_vec()), (2, b"\x04iPXE".to_vec())] {
        let d = Req {
            user_class: Some(uc),
            ..pxe_discover(n, 7)
        };
        let o = send(&srv, t(0), &meta(), &d);
        assert_eq!(o.file(), b"http://198.18.0.1/boot.ipxe");
    }
    // A user class that merely contains the word does not match.
    let d = Req {
        user_class: Some(b"\x05iPXEx".to_vec()),
        ..pxe_discover(3, 7)
    };
    assert_eq!(send(&srv, t(0), &meta(), &d).file(), b"ipxe.efi");
}

#[test]
fn plain_client_gets_no_boot_file_or_pxe_options() {
    let srv = Server::new(pxe_config()).unwrap();
    let o = send(
        &srv,
        t(0),
        &meta(),
        &Req {
            prl: Some(vec![1, 3, 43, 66, 67]),
            ..Req::new(MessageType::Discover, 1)
        },
    );
    assert_eq!(o.file(), b"");
    assert_eq!(o.option(opt::VENDOR_CLASS_ID), None);
    assert_eq!(o.option(opt::VENDOR_SPECIFIC), None);
    assert_eq!(o.option(opt::BOOTFILE_NAME), None);
    assert_eq!(o.repr().siaddr, None);
}

#[test]
fn max_message_size_drops_optional_options_only() {
    let mut cfg = pxe_config();
    let mut big = OptionSet::new();
    big.set(224, vec![0xaa; 250], true);
    big.set(225, vec![0xbb; 250], true);
    cfg.subnets[0].options.set(226, vec![0xcc; 200], true);
    cfg.classes.push(Class {
        name: "big".into(),
        matcher: Match::default(),
        options: big,
    });
    let srv = Server::new(cfg).unwrap();
    let d = Req {
        max_size: Some(576),
        client_id: Some(vec![1, 2, 3]),
        ..pxe_discover(1, 7)
    };
    let o = send(&srv, t(0), &meta(), &d);
    assert!(o.bytes.len() <= 548, "{}", o.bytes.len());
    assert!(o.option(opt::SERVER_ID).is_some());
    assert!(o.option(opt::LEASE_TIME).is_some());
    assert!(o.option(opt::CLIENT_ID).is_some());
    assert!(o.option(opt::VENDOR_CLASS_ID).is_some());
    assert_eq!(o.file(), b"ipxe.efi");
    assert!(o.codes().len() < 20);
    let d = Req {
        max_size: Some(1500),
        ..d
    };
    let o = send(&srv, t(0), &meta(), &d);
    assert!(o.option(224).is_some() && o.option(225).is_some() && o.option(226).is_some());
}

#[test]
fn destination_rules() {
    let srv = Server::new(pxe_config()).unwrap();
    let o = send(&srv, t(0), &meta(), &Req::new(MessageType::Discover, 1));
    assert_eq!(
        o.outcome.reply.unwrap().dest,
        Destination::Link {
            addr: ip(1, 1),
            hwaddr: mac(1)
        }
    );
    let o = send(
        &srv,
        t(0),
        &meta(),
        &Req {
            flags: 0x8000,
            ..Req::new(MessageType::Discover, 2)
        },
    );
    assert_eq!(o.outcome.reply.unwrap().dest, Destination::Broadcast);
    assert!(o.repr().broadcast());
    let o = send(
        &srv,
        t(0),
        &loopback(40000),
        &Req::new(MessageType::Discover, 3),
    );
    assert_eq!(
        o.outcome.reply.unwrap().dest,
        Destination::Unicast(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000))
    );
}

#[test]
fn garbage_and_replies_are_counted_and_dropped() {
    let srv = Server::new(pxe_config()).unwrap();
    let mut out = [0u8; 1500];
    let mut stats = Stats::default();
    assert_eq!(
        srv.handle(t(0), &meta(), &[1, 2, 3], &mut out, &mut stats)
            .dropped,
        Some(DropReason::Malformed)
    );
    let mut reply = Req::new(MessageType::Offer, 1).bytes();
    reply[0] = 2;
    assert_eq!(
        srv.handle(t(0), &meta(), &reply, &mut out, &mut stats)
            .dropped,
        Some(DropReason::NotRequest)
    );
    let offer_from_client = Req::new(MessageType::Offer, 1).bytes();
    assert_eq!(
        srv.handle(t(0), &meta(), &offer_from_client, &mut out, &mut stats)
            .dropped,
        Some(DropReason::UnexpectedType)
    );
    let mut bootp = Req::new(MessageType::Discover, 1).bytes();
    bootp.truncate(HEADER_LEN);
    bootp.push(255);
    assert_eq!(
        srv.handle(t(0), &meta(), &bootp, &mut out, &mut stats)
            .dropped,
        Some(DropReason::NotDhcp)
    );
    let other = Req {
        requested: Some(ip(1, 1)),
        server_id: Some(ip(0, 99)),
        ..Req::new(MessageType::Request, 1)
    };
    assert_eq!(
        srv.handle(t(0), &meta(), &other.bytes(), &mut out, &mut stats)
            .dropped,
        Some(DropReason::NotForUs)
    );
    assert_eq!(stats.drops(DropReason::Malformed), 1);
    assert_eq!(stats.drops(DropReason::NotRequest), 1);
    assert_eq!(stats.drops(DropReason::NotForUs), 1);
}

// The course assignment's scenarios, at the core (the daemon repeats them over loopback UDP).

#[test]
fn course_a_request_naming_another_server_frees_the_offer() {
    for compat in [false, true] {
        let srv = Server::new(course_config(compat)).unwrap();
        let o = send(
            &srv,
            t(0),
            &loopback(5001),
            &Req::new(MessageType::Discover, 1),
        );
        assert_eq!(o.yiaddr(), ip(1, 1));
        assert_eq!(o.repr().server_id, Some(ip(1, 0)));
        let other = Req {
            requested: Some(ip(1, 1)),
            server_id: Some(ip(1, 200)),
            ..Req::new(MessageType::Request, 1)
        };
        let s = send(&srv, t(0), &loopback(5001), &other);
        if compat {
            assert_eq!(s.mt(), Some(MessageType::Nak));
        } else {
            assert!(s.outcome.reply.is_none());
        }
        // The offer was freed: nothing is held, and four other clients get all four addresses.
        assert_eq!(srv.leases().usage(t(0)).offered, 0);
        let mut got: Vec<_> = (2..=5).map(|n| dora(&srv, t(0), n).yiaddr()).collect();
        got.sort();
        assert_eq!(got, [ip(1, 1), ip(1, 2), ip(1, 3), ip(1, 4)]);
    }
}

#[test]
fn course_b_fifth_client_gets_silence_or_nak_in_compat_mode() {
    for compat in [false, true] {
        let srv = Server::new(course_config(compat)).unwrap();
        for n in 1..=4 {
            assert_eq!(dora(&srv, t(0), n).yiaddr(), ip(1, n));
        }
        let s = send(
            &srv,
            t(0),
            &loopback(5005),
            &Req::new(MessageType::Discover, 5),
        );
        if compat {
            assert_eq!(s.mt(), Some(MessageType::Nak));
        } else {
            assert_eq!(s.outcome.dropped, Some(DropReason::PoolExhausted));
        }
    }
}

#[test]
fn course_c_interleaved_clients() {
    let srv = Server::new(course_config(false)).unwrap();
    let o1 = send(
        &srv,
        t(0),
        &loopback(1),
        &Req::new(MessageType::Discover, 1),
    );
    let o2 = send(
        &srv,
        t(0),
        &loopback(2),
        &Req::new(MessageType::Discover, 2),
    );
    assert_ne!(o1.yiaddr(), o2.yiaddr());
    let r1 = Req {
        requested: Some(o1.yiaddr()),
        server_id: Some(ip(1, 0)),
        ..Req::new(MessageType::Request, 1)
    };
    let r2 = Req {
        requested: Some(o2.yiaddr()),
        server_id: Some(ip(1, 0)),
        ..Req::new(MessageType::Request, 2)
    };
    assert_eq!(send(&srv, t(0), &loopback(1), &r1).yiaddr(), o1.yiaddr());
    assert_eq!(send(&srv, t(0), &loopback(2), &r2).yiaddr(), o2.yiaddr());
}

#[test]
fn course_d_release_then_same_address() {
    let srv = Server::new(course_config(false)).unwrap();
    assert_eq!(dora(&srv, t(0), 1).yiaddr(), ip(1, 1));
    let rel = Req {
        ciaddr: Some(ip(1, 1)),
        server_id: Some(ip(1, 0)),
        ..Req::new(MessageType::Release, 1)
    };
    assert!(send(&srv, t(1), &loopback(1), &rel).outcome.reply.is_none());
    assert_eq!(
        send(
            &srv,
            t(2),
            &loopback(1),
            &Req::new(MessageType::Discover, 1)
        )
        .yiaddr(),
        ip(1, 1)
    );
}

/// A diskless rule: iPXE gets its root path (option 17, with the boot server's address put in),
/// the target's IQN (201) and an initiator IQN of its own MAC (203), asked or not.
#[test]
fn a_san_boot_rule_hands_out_root_path_and_ipxe_iscsi_options_per_machine() {
    let mut cfg = pxe_config();
    cfg.boot_rules.insert(
        0,
        BootRule {
            name: "san".into(),
            matcher: Match::default(),
            boot: Boot {
                file: "undionly.kpxe".into(),
                root_path: Some("iscsi:{server}::::iqn.2026-12.test:golden".into()),
                iscsi_target: Some("iqn.2026-12.test:golden".into()),
                initiator_iqn: Some("iqn.2026-12.test.machine:{mac}".into()),
                ..Boot::default()
            },
            options: OptionSet::new(),
        },
    );
    let srv = Server::new(cfg).unwrap();
    for (n, prl) in [(1u8, vec![1, 3, 17, 203]), (2, vec![1, 3])] {
        let d = Req {
            vendor: Some(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
            prl: Some(prl),
            ..Req::new(MessageType::Discover, n)
        };
        let offer = send(&srv, t(0), &meta(), &d);
        let m = mac(n);
        let want_iqn = format!(
            "iqn.2026-12.test.machine:{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        );
        assert_eq!(
            offer.option(opt::ROOT_PATH).unwrap(),
            format!("iscsi:{SERVER}::::iqn.2026-12.test:golden").as_bytes()
        );
        assert_eq!(
            offer.option(opt::ISCSI_INITIATOR_IQN).unwrap(),
            want_iqn.as_bytes()
        );
        assert_eq!(
            offer.option(opt::ISCSI_PRIMARY_TARGET_IQN).unwrap(),
            b"iqn.2026-12.test:golden"
        );
    }
}

#[test]
fn templates_expand_and_refuse_what_does_not_fit() {
    let mut b = [0u8; 256];
    let m = [0x52, 0x54, 0, 0xab, 1, 2];
    let n = super::reply::expand(
        "a{mac}b{server}{x}",
        &m,
        Ipv4Addr::new(198, 18, 0, 1),
        &mut b,
    )
    .unwrap();
    assert_eq!(&b[..n], b"a52-54-00-ab-01-02b198.18.0.1{x}");
    let long = "{mac}".repeat(16); // 272 bytes: more than an option holds
    assert!(super::reply::expand(&long, &m, SERVER, &mut b).is_none());
}

#[test]
fn write_ip_formats_dotted_quads() {
    let mut b = [0u8; 16];
    let n = write_ip(Ipv4Addr::new(255, 0, 10, 7), &mut b);
    assert_eq!(&b[..n], b"255.0.10.7");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever bytes arrive, the server answers or drops; it never panics and never writes
        /// a reply larger than the client's limit.
        #[test]
        fn any_datagram_is_handled(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let srv = Server::new(pxe_config()).unwrap();
            let mut out = [0u8; 1500];
            let mut stats = Stats::default();
            let o = srv.handle(t(0), &meta(), &data, &mut out, &mut stats);
            if let Some(r) = o.reply {
                prop_assert!(r.len <= 1500 - 28);
                prop_assert!(Packet::new_checked(&out[..r.len]).is_ok());
            }
        }
    }
}

#[test]
fn options_overflow_into_file_and_sname_for_small_clients() {
    let mut cfg = pxe_config();
    for code in 224..230u8 {
        cfg.subnets[0].options.set(code, vec![code; 40], true);
    }
    let srv = Server::new(cfg).unwrap();
    let info = vec![1, 2, 9, 9];
    let relay = Ipv4Addr::new(198, 18, 0, 254);
    let d = Req {
        max_size: Some(576),
        giaddr: Some(relay),
        relay_info: Some(info.clone()),
        ..Req::new(MessageType::Discover, 1)
    };
    let o = send(
        &srv,
        t(0),
        &RxMeta {
            src: SocketAddrV4::new(relay, 67),
            subnet_hint: None,
            ifindex: 0,
        },
        &d,
    );
    assert!(o.bytes.len() <= 548);
    let r = o.repr();
    assert_ne!(r.overload, 0, "overload used");
    for code in 224..230u8 {
        assert_eq!(o.option(code), Some(vec![code; 40]), "option {code}");
    }
    // Option 82 ends the options field, which a client reads first.
    let p = Packet::new_checked(&o.bytes[..]).unwrap();
    let main: Vec<u8> = bootstorm_wire::dhcp::OptionIter::new(p.options())
        .map(|x| x.unwrap().code)
        .collect();
    assert_eq!(main.last(), Some(&opt::RELAY_AGENT_INFO));
    // PXE firmware never gets overload: its boot file keeps the file field, sname stays empty.
    let d = Req {
        max_size: Some(576),
        ..pxe_discover(2, 7)
    };
    let o = send(&srv, t(0), &meta(), &d);
    assert_eq!(o.file(), b"ipxe.efi");
    assert_eq!(o.repr().overload, 0);
    assert!(o.codes().len() < 30);
}

#[test]
fn direct_clients_get_the_subnet_of_their_interface() {
    let mut cfg = pxe_config();
    cfg.subnets[0].interface = Some("rack1".into());
    let mut other = subnet(vec![(
        Ipv4Addr::new(198, 19, 7, 10),
        Ipv4Addr::new(198, 19, 7, 20),
    )]);
    other.network = Ipv4Addr::new(198, 19, 7, 0);
    other.prefix = 24;
    other.interface = Some("rack2".into());
    cfg.subnets.push(other);
    let srv = Server::new(cfg).unwrap();
    assert_eq!(srv.subnet_for_interface("rack2"), Some(1));
    assert_eq!(srv.subnet_for_interface("rack9"), None);
    let on = |hint| RxMeta {
        src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
        subnet_hint: hint,
        ifindex: 0,
    };
    let o = send(
        &srv,
        t(0),
        &on(Some(1)),
        &Req::new(MessageType::Discover, 1),
    );
    assert_eq!(o.yiaddr(), Ipv4Addr::new(198, 19, 7, 10));
    let o = send(
        &srv,
        t(0),
        &on(Some(0)),
        &Req::new(MessageType::Discover, 2),
    );
    assert_eq!(o.yiaddr(), ip(1, 1));
    // Both subnets are tied to interfaces: a direct client from elsewhere has no subnet.
    let o = send(&srv, t(0), &on(None), &Req::new(MessageType::Discover, 3));
    assert_eq!(o.outcome.dropped, Some(DropReason::NoSubnet));
}

fn small_pool(n: u8) -> Server {
    Server::new(ServerConfig {
        subnets: vec![subnet(vec![(ip(1, 1), ip(1, n))])],
        ..ServerConfig::default()
    })
    .unwrap()
}

/// Regression (issue 12.1): DISCOVERs alone from random MACs held every address for
/// `offer_hold`; a real client then got no OFFER (`pool_exhausted`). Offers are soft holds now:
/// the real client takes the oldest unconfirmed offer and binds it; bound leases are untouched.
#[test]
fn discover_flood_cannot_starve_a_real_client() {
    let srv = small_pool(20);
    // Two real clients bound first.
    for n in [1, 2] {
        assert_eq!(dora(&srv, t(0), n).mt(), Some(MessageType::Ack));
    }
    // 200 DISCOVERs from random MACs that never REQUEST.
    let mut stats = Stats::default();
    let mut out = [0u8; 1500];
    for k in 0..200u32 {
        let mut r = Req::new(MessageType::Discover, 0);
        r.mac = [0x02, 0xee, (k >> 16) as u8, (k >> 8) as u8, k as u8, 0x77];
        r.xid = k;
        let o = srv.handle(t(1), &meta(), &r.bytes(), &mut out, &mut stats);
        assert_eq!(o.reply.map(|r| r.message_type), Some(MessageType::Offer));
    }
    assert_eq!(stats.offers_reclaimed, 200 - 18);
    // A real client is still offered an address and binds it.
    let ack = dora(&srv, t(2), 3);
    assert_eq!(ack.mt(), Some(MessageType::Ack));
    // The bound ones kept theirs.
    let bound: Vec<_> = srv
        .leases()
        .leases(t(2))
        .into_iter()
        .filter(|l| l.state == bootstorm_lease::LeaseState::Bound)
        .map(|l| l.addr)
        .collect();
    assert_eq!(bound.len(), 3);
    assert!(bound.contains(&ip(1, 1)) && bound.contains(&ip(1, 2)));
    // A flooder whose offer was taken and who REQUESTs after all is NAKed.
    let mut r = Req::new(MessageType::Request, 0);
    r.mac = [0x02, 0xee, 0, 0, 0, 0x77];
    r.xid = 0;
    r.server_id = Some(SERVER);
    r.requested = Some(ip(1, 3));
    let s = send(&srv, t(2), &meta(), &r);
    assert_eq!(s.mt(), Some(MessageType::Nak));
}

/// Regression (issue 12.2): a bound client that asked (INIT-REBOOT) for another address was
/// ACKed and moved; its old address stayed bound with no record naming it, and three clients
/// exhausted a four-address pool. RFC 2131 4.3.2: NAK, "requested address incorrect".
#[test]
fn rfc2131_4_3_2_init_reboot_for_another_address_is_nakked() {
    let srv = small_pool(4);
    let first = dora(&srv, t(0), 1).yiaddr();
    assert_eq!(first, ip(1, 1));
    for other in [ip(1, 2), ip(1, 3), ip(1, 4)] {
        let r = Req {
            requested: Some(other),
            ..Req::new(MessageType::Request, 1)
        };
        let s = send(&srv, t(1), &meta(), &r);
        assert_eq!(s.mt(), Some(MessageType::Nak), "{other}");
        assert_eq!(
            s.option(opt::MESSAGE).unwrap(),
            b"requested address incorrect"
        );
        assert_eq!(s.outcome.event.unwrap().nak, Some(NakReason::NotItsAddress));
        // RENEWING another address from ciaddr is refused the same way.
        let r = Req {
            ciaddr: Some(other),
            ..Req::new(MessageType::Request, 1)
        };
        assert_eq!(send(&srv, t(1), &meta(), &r).mt(), Some(MessageType::Nak));
    }
    // Its own address is still ACKed, and the table holds only what records name.
    let r = Req {
        requested: Some(first),
        ..Req::new(MessageType::Request, 1)
    };
    assert_eq!(send(&srv, t(2), &meta(), &r).mt(), Some(MessageType::Ack));
    assert!(srv.leases().unnamed(t(2)).is_empty());
    // Three more clients get the other three addresses.
    for n in 2..=4 {
        assert_eq!(dora(&srv, t(3), n).mt(), Some(MessageType::Ack));
    }
    assert_eq!(srv.leases().usage(t(3)).bound, 4);
}

/// Regression (issue 12.4): RFC 3396 7: a split client id counted with its first part only and
/// was echoed cut short; a split parameter request list lost its tail.
#[test]
fn rfc3396_split_client_id_and_request_list_are_joined() {
    let srv = Server::new(pxe_config()).unwrap();
    let id: Vec<u8> = std::iter::once(0u8)
        .chain((0..299).map(|i| (i % 200) as u8 + 1))
        .collect();
    let mut bytes = Req::new(MessageType::Discover, 1).bytes();
    bytes.pop(); // End
    bytes.extend_from_slice(&[61, 255]);
    bytes.extend_from_slice(&id[..255]);
    bytes.extend_from_slice(&[55, 2, 1, 3]);
    bytes.extend_from_slice(&[61, (id.len() - 255) as u8]);
    bytes.extend_from_slice(&id[255..]);
    bytes.extend_from_slice(&[55, 1, 42, 57, 2, 0x05, 0xdc, 255]);
    let mut out = [0u8; 1500];
    let mut stats = Stats::default();
    let o = srv.handle(t(0), &meta(), &bytes, &mut out, &mut stats);
    let reply = o.reply.expect("an offer");
    let p = Packet::new_checked(&out[..reply.len]).unwrap();
    let mut scratch = [0u8; bootstorm_wire::dhcp::SCRATCH_LEN];
    let r = Repr::parse_with(&p, &mut scratch).unwrap();
    assert_eq!(
        r.client_id,
        Some(&id[..]),
        "echoed whole (RFC 6842), in two pieces"
    );
    // 42 came in the second piece of option 55 and is answered.
    assert_eq!(
        p.all_options()
            .map(Result::unwrap)
            .find(|o| o.code == opt::NTP_SERVERS)
            .map(|o| o.data.to_vec()),
        Some(vec![198, 18, 0, 123])
    );
    // The lease is keyed by the whole id.
    assert!(srv.leases().lease_of(t(0), &id).is_some());
}

/// Regression (issue 12.5): RFC 2131 4.1: with giaddr zero a NAK is broadcast "in all cases";
/// it went to the source address of a client on a real interface. Only loopback gets the
/// answer-at-source rule.
#[test]
fn rfc2131_4_1_nak_is_broadcast_unless_on_loopback() {
    let srv = small_pool(4);
    let from = |a: Ipv4Addr| RxMeta {
        src: SocketAddrV4::new(a, 68),
        subnet_hint: None,
        ifindex: 0,
    };
    let bad = Req {
        requested: Some(Ipv4Addr::new(10, 9, 9, 9)),
        ..Req::new(MessageType::Request, 1)
    };
    let s = send(&srv, t(0), &from(ip(7, 7)), &bad);
    assert_eq!(s.mt(), Some(MessageType::Nak));
    assert_eq!(s.outcome.reply.unwrap().dest, Destination::Broadcast);
    // A DISCOVER from a non-zero source on a real interface is not answered at the source.
    let s = send(
        &srv,
        t(0),
        &from(ip(7, 8)),
        &Req::new(MessageType::Discover, 2),
    );
    assert!(matches!(
        s.outcome.reply.unwrap().dest,
        Destination::Link { .. }
    ));
    // On loopback (a tool on this host), at the source.
    let s = send(&srv, t(0), &loopback(4011), &bad);
    assert_eq!(
        s.outcome.reply.unwrap().dest,
        Destination::Unicast(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4011))
    );
}

/// Regression (issue 12.6): with option 57 = 576, a long client id and a long option 82, no
/// reply was sent at all. T1/T2 give way and optional options overflow into `file`/`sname`
/// (RFC 2131 4.1); only when even the required options cannot fit is the reply dropped, counted
/// as `no_space`.
#[test]
fn rfc2131_4_1_a_small_client_with_long_ids_still_gets_its_reply() {
    let srv = small_pool(4);
    let mut relay = vec![1, 118];
    relay.extend(std::iter::repeat_n(0xab, 118)); // 120 bytes of sub-options
    let mut id = vec![0u8];
    id.extend(std::iter::repeat_n(0x11, 159)); // 160 bytes
    let d = Req {
        giaddr: Some(ip(0, 2)),
        client_id: Some(id.clone()),
        relay_info: Some(relay.clone()),
        max_size: Some(576),
        prl: Some(vec![1, 3, 6, 15]),
        ..Req::new(MessageType::Discover, 1)
    };
    let s = send(&srv, t(0), &meta(), &d);
    assert_eq!(s.mt(), Some(MessageType::Offer), "{:?}", s.outcome.dropped);
    assert!(s.bytes.len() <= 548);
    assert_eq!(s.option(opt::CLIENT_ID).unwrap(), id);
    assert_eq!(s.option(opt::RELAY_AGENT_INFO).unwrap(), relay);
    // 82 last in the options field (RFC 3046 2.2); the overflow follows in file/sname.
    let p = Packet::new_checked(&s.bytes[..]).unwrap();
    let main: Vec<u8> = bootstorm_wire::dhcp::OptionIter::new(p.options())
        .map(|o| o.unwrap().code)
        .collect();
    assert_eq!(*main.last().unwrap(), opt::RELAY_AGENT_INFO);
    assert!(
        s.repr().overload != 0,
        "T1/T2 and the rest overflowed: {:?}",
        s.codes()
    );
    assert_eq!(s.repr().lease_time, Some(3600));
    // Required options that cannot fit: no reply, counted as no_space.
    let mut id = vec![0u8];
    id.extend(std::iter::repeat_n(0x22, 250));
    let mut relay = vec![1, 198];
    relay.extend(std::iter::repeat_n(0xcd, 198));
    let d = Req {
        client_id: Some(id),
        relay_info: Some(relay),
        ..d
    };
    let mut out = [0u8; 1500];
    let mut stats = Stats::default();
    let o = srv.handle(t(0), &meta(), &d.bytes(), &mut out, &mut stats);
    assert_eq!(o.dropped, Some(DropReason::NoSpace));
    assert_eq!(stats.drops(DropReason::NoSpace), 1);
}

/// Regression (issue 12.7): a zero-length host name (12) or vendor class (60) made the whole
/// message dropped as malformed. The bad option is ignored and counted; the client is served.
#[test]
fn rfc2132_zero_length_host_name_or_vendor_class_is_ignored() {
    let srv = small_pool(4);
    let mut stats = Stats::default();
    let mut out = [0u8; 1500];
    for (n, field) in [(1u8, 12u8), (2, 60)] {
        let r = Req {
            hostname: (field == 12).then(Vec::new),
            vendor: (field == 60).then(Vec::new),
            ..Req::new(MessageType::Discover, n)
        };
        let o = srv.handle(t(0), &meta(), &r.bytes(), &mut out, &mut stats);
        assert_eq!(
            o.reply.map(|r| r.message_type),
            Some(MessageType::Offer),
            "option {field}"
        );
    }
    assert_eq!(stats.bad_options, 2);
    assert_eq!(stats.drops(DropReason::Malformed), 0);
}

/// Issue 12.1, admission: a DISCOVER flood through one relay is held to that relay's bucket,
/// counted as `rate_limited`, and another relay's clients are served all the while.
#[test]
fn a_flooding_relay_is_rate_limited_and_others_are_served() {
    let mut cfg = ServerConfig {
        subnets: vec![
            subnet(vec![(ip(1, 1), ip(1, 250))]),
            Subnet {
                network: Ipv4Addr::new(198, 19, 0, 0),
                ranges: vec![(Ipv4Addr::new(198, 19, 1, 1), Ipv4Addr::new(198, 19, 1, 50))],
                ..subnet(vec![])
            },
        ],
        ..ServerConfig::default()
    };
    cfg.admission.relay = crate::Rate {
        per_sec: 100,
        burst: 50,
    };
    let srv = Server::new(cfg).unwrap();
    let mut stats = Stats::default();
    let mut out = [0u8; 1500];
    let mut offers = [0u32; 2];
    // One second: the flooding relay sends 2,000 DISCOVERs, the quiet one 20, interleaved.
    for k in 0..2000u32 {
        let now = Instant::from_millis(u64::from(k) / 2);
        let mut r = Req::new(MessageType::Discover, 0);
        r.mac = [0x02, 0xee, 0, (k >> 8) as u8, k as u8, 1];
        r.giaddr = Some(ip(0, 2));
        let o = srv.handle(now, &meta(), &r.bytes(), &mut out, &mut stats);
        offers[0] += u32::from(o.reply.is_some());
        if k % 100 == 0 {
            let mut q = Req::new(MessageType::Discover, (k / 100) as u8);
            q.giaddr = Some(Ipv4Addr::new(198, 19, 0, 2));
            let o = srv.handle(now, &meta(), &q.bytes(), &mut out, &mut stats);
            offers[1] += u32::from(o.reply.is_some());
        }
    }
    // Burst 50 plus ~100/s over one second.
    assert!((140..=160).contains(&offers[0]), "{offers:?}");
    assert_eq!(offers[1], 20);
    assert_eq!(
        stats.drops(DropReason::RateLimited),
        2000 - u64::from(offers[0])
    );
    // REQUESTs are never limited: the flooding relay's clients still finish their exchanges.
    let mut r = Req::new(MessageType::Request, 0);
    r.mac = [0x02, 0xee, 0, 0, 0, 1];
    r.giaddr = Some(ip(0, 2));
    r.server_id = Some(SERVER);
    r.requested = Some(ip(1, 1));
    let o = srv.handle(
        Instant::from_millis(1000),
        &meta(),
        &r.bytes(),
        &mut out,
        &mut stats,
    );
    assert_eq!(o.reply.map(|r| r.message_type), Some(MessageType::Ack));
}

/// Regression (found by the `dhcp_server` fuzz target): one machine matched by a MAC
/// reservation, once with a client id (option 61) and once without (firmware and OS), made two
/// records that both held the reserved address. The reservation's client is one record.
#[test]
fn a_reserved_machine_is_one_client_with_or_without_option_61() {
    let mut cfg = pxe_config();
    cfg.reservations.push(Reservation {
        hwaddr: Some(mac(7)),
        client_id: None,
        addr: ip(1, 50),
        hostname: None,
        options: OptionSet::new(),
        boot: None,
    });
    let srv = Server::new(cfg).unwrap();
    let with_id = Req {
        client_id: Some(vec![0, 9, 9, 9]),
        ..Req::new(MessageType::Discover, 7)
    };
    assert_eq!(send(&srv, t(0), &meta(), &with_id).yiaddr(), ip(1, 50));
    assert_eq!(dora(&srv, t(1), 7).yiaddr(), ip(1, 50));
    let holding: Vec<_> = srv
        .leases()
        .leases(t(1))
        .into_iter()
        .filter(|l| {
            l.addr == ip(1, 50)
                && matches!(
                    l.state,
                    bootstorm_lease::LeaseState::Offered | bootstorm_lease::LeaseState::Bound
                )
        })
        .collect();
    assert_eq!(holding.len(), 1, "{holding:?}");
    // The client id is still echoed (RFC 6842).
    let s = send(&srv, t(2), &meta(), &with_id);
    assert_eq!(s.option(opt::CLIENT_ID).unwrap(), [0, 9, 9, 9]);
}

/// A client whose lease just expired and that renews it (RENEWING/REBINDING, ciaddr set) is
/// still known by its record and gets the address back while nobody else took it; only a lease
/// held on another address makes such a renewal a NAK.
#[test]
fn renewing_a_just_expired_lease_is_acked_while_the_address_is_free() {
    let srv = small_pool(4);
    let a = dora(&srv, t(0), 1).yiaddr();
    let r = Req {
        ciaddr: Some(a),
        ..Req::new(MessageType::Request, 1)
    };
    // The lease (1h) has run out.
    let s = send(&srv, t(3700), &meta(), &r);
    assert_eq!(s.mt(), Some(MessageType::Ack));
    assert_eq!(s.yiaddr(), a);
}

/// What a fake journal saw: the last number, and each change with its client's MAC and number.
type Journaled = (u64, Vec<(Change, Vec<u8>, u64)>);

/// A fake journal: numbers each change, remembers which client's Bind got which number.
#[derive(Default)]
struct FakeSink {
    seq: std::sync::Mutex<Journaled>,
}

impl bootstorm_lease::LeaseSink for FakeSink {
    fn changed(&self, change: Change, lease: &bootstorm_lease::Lease) -> u64 {
        let mut g = self.seq.lock().unwrap();
        g.0 += 1;
        let n = g.0;
        g.1.push((change, lease.hwaddr.to_vec(), n));
        n
    }
}

/// Issue 13, durability in the core's contract: every ACK names a journal sequence at least
/// that of the Bind it announces (so an I/O loop that waits for it commits before the ACK,
/// RFC 2131 4.3.1); an OFFER that changed nothing persistent waits for nothing; a client that
/// moves releases its old lease and its OFFER waits for that release.
#[test]
fn every_ack_names_the_journal_sequence_of_its_bind() {
    let srv = Server::new(pxe_config()).unwrap();
    let sink = std::sync::Arc::new(FakeSink::default());
    srv.leases().set_sink(sink.clone());
    for n in 1..=20u8 {
        let offer = send(&srv, t(10), &meta(), &Req::new(MessageType::Discover, n));
        assert_eq!(offer.outcome.commit, 0, "an offer keeps nothing");
        let ack = dora(&srv, t(10), n);
        assert_eq!(ack.mt(), Some(MessageType::Ack));
        let g = sink.seq.lock().unwrap();
        let bind =
            g.1.iter()
                .rev()
                .find(|(c, hw, _)| *c == Change::Bind && hw[..] == mac(n))
                .map(|x| x.2)
                .expect("the bind was journaled");
        assert!(
            ack.outcome.commit >= bind,
            "ACK {} < bind {bind}",
            ack.outcome.commit
        );
        assert_eq!(ack.outcome.commit, g.0, "nothing later was journaled");
    }
    // A renewal is a new Bind: its ACK waits for the new record, not the old one.
    let before = sink.seq.lock().unwrap().0;
    let ack = dora(&srv, t(20), 3);
    assert_eq!(ack.mt(), Some(MessageType::Ack));
    assert!(ack.outcome.commit > before);
    // A RELEASE sends nothing but names its record.
    let rel = Req {
        ciaddr: Some(ack.yiaddr()),
        server_id: Some(SERVER),
        ..Req::new(MessageType::Release, 3)
    };
    let r = send(&srv, t(21), &meta(), &rel);
    assert!(r.outcome.reply.is_none());
    assert_eq!(r.outcome.commit, sink.seq.lock().unwrap().0);
}
