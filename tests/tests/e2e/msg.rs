//! Building client requests and reading replies, for tests that play the client themselves.

use bootstorm_wire::dhcp::{
    self, MessageType, OptionWriter, Packet, Repr, emit_request_header, opt,
};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// A request as a test client sends it.
#[derive(Clone, Default)]
pub struct Msg {
    pub mt: u8,
    pub xid: u32,
    pub mac: [u8; 6],
    pub ciaddr: Option<Ipv4Addr>,
    pub requested: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
    pub extra: Vec<(u8, Vec<u8>)>,
}

/// A MAC for test client `n`.
pub fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0xbe, 0xef, n]
}

impl Msg {
    pub fn new(mt: MessageType, n: u8) -> Msg {
        Msg {
            mt: mt.into(),
            xid: 0x5000_0000 | u32::from(n),
            mac: mac(n),
            ..Msg::default()
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 600];
        let mut p = emit_request_header(
            &mut buf,
            self.xid,
            &self.mac,
            0,
            self.ciaddr.unwrap_or(Ipv4Addr::UNSPECIFIED),
            Ipv4Addr::UNSPECIFIED,
        )
        .unwrap();
        let mut w = OptionWriter::new(p.options_mut(), 600 - dhcp::HEADER_LEN);
        w.push(opt::MESSAGE_TYPE, &[self.mt]).unwrap();
        if let Some(a) = self.requested {
            w.push(opt::REQUESTED_IP, &a.octets()).unwrap();
        }
        if let Some(a) = self.server_id {
            w.push(opt::SERVER_ID, &a.octets()).unwrap();
        }
        for (c, d) in &self.extra {
            w.push(*c, d).unwrap();
        }
        let n = dhcp::HEADER_LEN + w.finish(dhcp::MIN_MESSAGE - dhcp::HEADER_LEN);
        buf.truncate(n);
        buf
    }
}

/// What a reply says.
#[derive(Debug, Clone)]
pub struct ReplyInfo {
    pub mt: MessageType,
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub server_id: Option<Ipv4Addr>,
    pub file: Vec<u8>,
    pub options: Vec<(u8, Vec<u8>)>,
}

impl ReplyInfo {
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| &d[..])
    }
}

pub fn parse(b: &[u8]) -> ReplyInfo {
    let p = Packet::new_checked(b).expect("reply parses");
    let r = Repr::parse(&p).expect("reply options parse");
    assert_eq!(r.op, 2, "a BOOTREPLY");
    ReplyInfo {
        mt: r.message_type.expect("option 53"),
        xid: r.xid,
        yiaddr: r.yiaddr.unwrap_or(Ipv4Addr::UNSPECIFIED),
        siaddr: r.siaddr.unwrap_or(Ipv4Addr::UNSPECIFIED),
        server_id: r.server_id,
        file: r.file.to_vec(),
        options: p
            .all_options()
            .map(|o| o.unwrap())
            .map(|o| (o.code, o.data.to_vec()))
            .collect(),
    }
}

/// A test client on loopback talking to an in-process server.
pub struct Client {
    pub sock: UdpSocket,
    pub to: SocketAddr,
}

impl Client {
    pub fn new(srv: &bootstorm_daemon::serve::Running) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        Client {
            sock,
            to: SocketAddr::V4(srv.local_addr()),
        }
    }

    pub fn send(&self, m: &Msg) {
        self.sock.send_to(&m.bytes(), self.to).unwrap();
    }

    /// The next reply's raw bytes, or None after the timeout.
    pub fn recv_raw(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 1500];
        self.sock
            .recv_from(&mut buf)
            .ok()
            .map(|(n, _)| buf[..n].to_vec())
    }

    /// The next reply, or None after the timeout.
    pub fn recv(&self) -> Option<ReplyInfo> {
        self.recv_raw().map(|b| parse(&b))
    }

    pub fn ask(&self, m: &Msg) -> Option<ReplyInfo> {
        self.send(m);
        self.recv()
    }

    /// DISCOVER, then REQUEST the offered address from the server that offered it, as test
    /// client `n`; asserts the ACK and returns it.
    pub fn dora(&self, n: u8) -> ReplyInfo {
        let o = self
            .ask(&Msg::new(MessageType::Discover, n))
            .unwrap_or_else(|| panic!("no OFFER for client {n}"));
        let a = self
            .ask(&Msg {
                requested: Some(o.yiaddr),
                server_id: o.server_id,
                ..Msg::new(MessageType::Request, n)
            })
            .unwrap_or_else(|| panic!("no ACK for client {n}"));
        assert_eq!(a.mt, MessageType::Ack, "client {n}");
        a
    }
}
