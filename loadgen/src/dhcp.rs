//! One simulated machine's DHCP client, sans-IO: DISCOVER, take the first OFFER, REQUEST it,
//! ACK (or NAK: start over), with the profile's retransmission schedule. Written by hand: it is
//! the product's own protocol, and the load generator must control every byte and every timer.
//! Time is microseconds from the start of the run, so tests drive it with simulated time.

use crate::profile::Profile;
use bootstorm_wire::dhcp::{
    self, MessageType, OptionWriter, Packet, Repr, c_str, emit_request_header, opt,
};
use std::net::Ipv4Addr;

/// Largest message the client writes.
pub const MAX_LEN: usize = 576;

/// What the client learned from its ACK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub addr: Ipv4Addr,
    /// The server (option 54).
    pub server_id: Ipv4Addr,
    /// Boot file (option 67, else the `file` field).
    pub boot_file: Option<String>,
    /// Where to fetch it: option 66 if it is an address, else siaddr, else the server id.
    pub next_server: Ipv4Addr,
    /// Option 17 (for a diskless machine, the RFC 4173 root path of its disk).
    pub root_path: Option<String>,
    /// iPXE's option 203: the IQN to log in as.
    pub initiator_iqn: Option<String>,
}

/// Why a DHCP phase failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// No OFFER after every retransmission of the DISCOVER.
    NoOffer,
    /// No ACK after every retransmission of the REQUEST.
    NoAck,
    /// NAKs every time.
    Naked,
}

impl Failure {
    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Failure::NoOffer => "dhcp: no offer",
            Failure::NoAck => "dhcp: no ack",
            Failure::Naked => "dhcp: nak",
        }
    }

    /// Name for reports, in iPXE's round after a chainload.
    pub fn ipxe_name(self) -> &'static str {
        match self {
            Failure::NoOffer => "ipxe dhcp: no offer",
            Failure::NoAck => "ipxe dhcp: no ack",
            Failure::Naked => "ipxe dhcp: nak",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Selecting,
    Requesting { addr: Ipv4Addr, server_id: Ipv4Addr },
    Bound(Lease),
    Failed(Failure),
}

/// The client.
#[derive(Debug)]
pub struct Client {
    mac: [u8; 6],
    xid: u32,
    giaddr: Ipv4Addr,
    state: State,
    /// Retransmissions of the current message so far.
    tries: usize,
    deadline: u64,
    started: u64,
    naks: u32,
}

/// NAKs tolerated before giving up (each restarts from DISCOVER).
const MAX_NAKS: u32 = 3;

impl Client {
    /// A client with this MAC; `giaddr` is set in every message (relay mode) unless unspecified.
    pub fn new(mac: [u8; 6], xid: u32, giaddr: Ipv4Addr) -> Client {
        Client {
            mac,
            xid,
            giaddr,
            state: State::Selecting,
            tries: 0,
            deadline: 0,
            started: 0,
            naks: 0,
        }
    }

    /// Its MAC.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Its transaction id.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// The lease, once bound.
    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            State::Bound(l) => Some(l),
            _ => None,
        }
    }

    /// The failure, if it gave up.
    pub fn failure(&self) -> Option<Failure> {
        match self.state {
            State::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// When it next needs [`Client::on_timer`], if it waits for anything.
    pub fn deadline(&self) -> Option<u64> {
        matches!(self.state, State::Selecting | State::Requesting { .. }).then_some(self.deadline)
    }

    /// Starts: writes the DISCOVER into `buf`, returns its length.
    pub fn start(&mut self, now: u64, p: &Profile, buf: &mut [u8]) -> usize {
        self.started = now;
        self.state = State::Selecting;
        self.tries = 0;
        self.arm(now, p);
        self.write(now, p, buf)
    }

    fn arm(&mut self, now: u64, p: &Profile) {
        let wait = p
            .retransmit
            .get(self.tries)
            .map_or(0, |d| d.as_micros() as u64);
        self.deadline = now + wait;
    }

    /// A timer fired: retransmits (returns the message's length) or gives up (returns 0).
    pub fn on_timer(&mut self, now: u64, p: &Profile, buf: &mut [u8]) -> usize {
        if self.deadline().is_none_or(|d| now < d) {
            return 0;
        }
        self.tries += 1;
        if self.tries >= p.retransmit.len() {
            self.state = State::Failed(match self.state {
                State::Selecting => Failure::NoOffer,
                _ => Failure::NoAck,
            });
            return 0;
        }
        self.arm(now, p);
        self.write(now, p, buf)
    }

    /// A datagram arrived for this client: returns the length of the message to send in reply
    /// (a REQUEST after an OFFER, a DISCOVER after a NAK), 0 if none. Anything not for this
    /// client, or not making sense now, is ignored.
    pub fn on_reply(&mut self, now: u64, p: &Profile, data: &[u8], buf: &mut [u8]) -> usize {
        let Ok(pkt) = Packet::new_checked(data) else {
            return 0;
        };
        let Ok(r) = Repr::parse(&pkt) else {
            return 0;
        };
        if r.op != 2 || r.xid != self.xid || r.chaddr[..6] != self.mac {
            return 0;
        }
        match (&self.state, r.message_type) {
            (State::Selecting, Some(MessageType::Offer)) => {
                let (Some(addr), Some(server_id)) = (r.yiaddr, r.server_id) else {
                    return 0;
                };
                self.state = State::Requesting { addr, server_id };
                self.tries = 0;
                self.arm(now, p);
                self.write(now, p, buf)
            }
            (State::Requesting { addr, server_id }, Some(MessageType::Ack))
                if r.yiaddr == Some(*addr) =>
            {
                let server_id = r.server_id.unwrap_or(*server_id);
                let file = options_of(&pkt, opt::BOOTFILE_NAME)
                    .or_else(|| (!r.file.is_empty()).then_some(r.file));
                let tftp_server = options_of(&pkt, opt::TFTP_SERVER_NAME)
                    .and_then(|s| std::str::from_utf8(c_str(s)).ok()?.parse().ok());
                let text = |code| {
                    options_of(&pkt, code).map(|v| String::from_utf8_lossy(c_str(v)).into_owned())
                };
                self.state = State::Bound(Lease {
                    addr: *addr,
                    server_id,
                    boot_file: file.map(|f| String::from_utf8_lossy(c_str(f)).into_owned()),
                    next_server: tftp_server.or(r.siaddr).unwrap_or(server_id),
                    root_path: text(opt::ROOT_PATH),
                    initiator_iqn: text(opt::ISCSI_INITIATOR_IQN),
                });
                0
            }
            (State::Requesting { .. }, Some(MessageType::Nak)) => {
                self.naks += 1;
                if self.naks > MAX_NAKS {
                    self.state = State::Failed(Failure::Naked);
                    return 0;
                }
                self.xid = self.xid.wrapping_add(0x1000_0000);
                self.start(now, p, buf)
            }
            _ => 0,
        }
    }

    /// Microseconds from the first DISCOVER to now.
    pub fn elapsed(&self, now: u64) -> u64 {
        now.saturating_sub(self.started)
    }

    fn write(&self, now: u64, p: &Profile, buf: &mut [u8]) -> usize {
        let (mt, req) = match &self.state {
            State::Selecting => (MessageType::Discover, None),
            State::Requesting { addr, server_id } => {
                (MessageType::Request, Some((*addr, *server_id)))
            }
            _ => return 0,
        };
        // Without a relay the client has no address to take a unicast reply at: it asks for
        // broadcast replies, as EDK2's and iPXE's DHCP do.
        let flags = if self.giaddr.is_unspecified() {
            0x8000
        } else {
            0
        };
        let Ok(mut pkt) = emit_request_header(
            buf,
            self.xid,
            &self.mac,
            flags,
            Ipv4Addr::UNSPECIFIED,
            self.giaddr,
        ) else {
            return 0;
        };
        if !self.giaddr.is_unspecified() {
            pkt.set_hops(1);
        }
        let secs = (self.elapsed(now) / 1_000_000).min(u64::from(u16::MAX)) as u16;
        pkt.set_secs(secs);
        let limit = buf.len().min(MAX_LEN) - dhcp::HEADER_LEN;
        let mut w = OptionWriter::new(&mut buf[dhcp::HEADER_LEN..], limit);
        let mut ok = w.push(opt::MESSAGE_TYPE, &[u8::from(mt)]).is_ok();
        if let Some((addr, sid)) = req {
            ok &= w.push(opt::REQUESTED_IP, &addr.octets()).is_ok();
            ok &= w.push(opt::SERVER_ID, &sid.octets()).is_ok();
        }
        ok &= w
            .push(opt::MAX_MESSAGE_SIZE, &(MAX_LEN as u16).to_be_bytes())
            .is_ok();
        ok &= w
            .push(
                opt::PARAMETER_REQUEST_LIST,
                &[
                    opt::SUBNET_MASK,
                    opt::ROUTER,
                    opt::DNS_SERVERS,
                    opt::VENDOR_SPECIFIC,
                    opt::TFTP_SERVER_NAME,
                    opt::BOOTFILE_NAME,
                    opt::ROOT_PATH,
                    opt::ISCSI_INITIATOR_IQN,
                ],
            )
            .is_ok();
        ok &= w.push(opt::CLIENT_ARCH, &p.arch.to_be_bytes()).is_ok();
        ok &= w.push(opt::CLIENT_NDI, &[1, 3, 16]).is_ok();
        if p.uuid {
            let mut u = [0u8; 17];
            u[11..17].copy_from_slice(&self.mac);
            ok &= w.push(opt::CLIENT_UUID, &u).is_ok();
        }
        ok &= w
            .push(opt::VENDOR_CLASS_ID, p.vendor_class.as_bytes())
            .is_ok();
        if let Some(uc) = &p.user_class {
            ok &= w.push(opt::USER_CLASS, uc.as_bytes()).is_ok();
        }
        if !ok {
            return 0;
        }
        dhcp::HEADER_LEN + w.finish(dhcp::MIN_MESSAGE - dhcp::HEADER_LEN)
    }
}

/// The data of option `code` in a reply, if present.
fn options_of<'p>(pkt: &'p Packet<&[u8]>, code: u8) -> Option<&'p [u8]> {
    pkt.all_options()
        .filter_map(Result::ok)
        .find(|o| o.code == code)
        .map(|o| o.data)
}

#[cfg(test)]
mod tests;
