//! L2 mode's link: the simulated machines on one Ethernet interface, as firmware is. DHCP goes
//! out as broadcast frames from 0.0.0.0:68 with each machine's own MAC (the broadcast flag set,
//! as EDK2 and iPXE set it, so replies come back broadcast); once a machine has its lease, its
//! TFTP datagrams go from its address, and "who has" for that address is answered with its MAC
//! (the server's kernel asks before it sends the first DATA). Frames are built and parsed with
//! bootstorm-wire; the socket is bootstorm-net's `PacketSocket`.
//!
//! The server's MAC is learned from its DHCP replies (and from any ARP); a TFTP server never
//! heard from is asked for with an ARP request from the machine, and the download's own
//! retransmission sends the request once the answer is in.

use bootstorm_net::packet::PacketSocket;
use bootstorm_wire::arp::{self, Arp};
use bootstorm_wire::ethernet::{self, Address, ETHERTYPE_ARP};
use bootstorm_wire::frame::{self, PAYLOAD_OFFSET};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

/// A datagram for a machine, copied out of its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// To port 68: a DHCP reply (matched to its machine by xid).
    Dhcp(Vec<u8>),
    /// To a machine's leased address: TFTP for machine `k`.
    Udp {
        /// The machine's place in the worker.
        k: usize,
        /// Sender.
        from: SocketAddrV4,
        /// Port it was sent to.
        to_port: u16,
        /// Payload.
        data: Vec<u8>,
    },
}

/// The link.
pub struct Link {
    sock: PacketSocket,
    /// Addresses heard from: IPv4 -> MAC.
    neighbours: HashMap<Ipv4Addr, Address>,
    /// Leased addresses of our machines: IPv4 -> (machine, its MAC).
    machines: HashMap<Ipv4Addr, (usize, Address)>,
    out: Vec<u8>,
    rbuf: Vec<u8>,
    /// Frames that were not for us or did not parse (counted, dropped).
    pub ignored: u64,
}

/// Frames handled per [`Link::receive`] before the caller gets to run timers.
const BURST: usize = 256;

impl Link {
    /// Opens the link on `interface` (needs CAP_NET_RAW).
    pub fn open(interface: &str) -> std::io::Result<Link> {
        Ok(Link {
            sock: PacketSocket::open(interface)?,
            neighbours: HashMap::new(),
            machines: HashMap::new(),
            out: vec![0u8; 2048],
            rbuf: vec![0u8; 65_536 + 64],
            ignored: 0,
        })
    }

    /// Machine `k` (MAC `mac`) now holds `ip`: answer ARP for it, deliver its datagrams.
    pub fn bind(&mut self, k: usize, mac: [u8; 6], ip: Ipv4Addr) {
        self.machines.insert(ip, (k, Address(mac)));
    }

    /// The machine let `ip` go.
    pub fn unbind(&mut self, ip: Ipv4Addr) {
        self.machines.remove(&ip);
    }

    /// Broadcasts a DHCP message from `mac`, 0.0.0.0:68 to 255.255.255.255:67.
    pub fn send_dhcp(&mut self, mac: [u8; 6], payload: &[u8]) {
        self.send_frame(
            Address(mac),
            Address::BROADCAST,
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
            SocketAddrV4::new(Ipv4Addr::BROADCAST, 67),
            payload,
        );
    }

    /// Sends a datagram from machine `mac` at `src` to `dst`; if `dst`'s MAC is not known yet,
    /// sends an ARP request for it instead (the caller's retransmission sends the datagram).
    pub fn send_udp(&mut self, mac: [u8; 6], src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
        match self.neighbours.get(dst.ip()).copied() {
            Some(to) => self.send_frame(Address(mac), to, src, dst, payload),
            None => {
                let req = Arp {
                    op: arp::REQUEST,
                    sender_mac: Address(mac),
                    sender_ip: *src.ip(),
                    target_mac: Address([0; 6]),
                    target_ip: *dst.ip(),
                };
                if let Ok(n) = req.emit_frame(&mut self.out) {
                    let _ = self.sock.send(&self.out[..n]);
                }
            }
        }
    }

    fn send_frame(
        &mut self,
        from: Address,
        to: Address,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &[u8],
    ) {
        let need = PAYLOAD_OFFSET + payload.len();
        if self.out.len() < need {
            self.out.resize(need, 0);
        }
        self.out[PAYLOAD_OFFSET..need].copy_from_slice(payload);
        if let Ok(n) = frame::emit_udp_headers(&mut self.out, from, to, src, dst, payload.len()) {
            let _ = self.sock.send(&self.out[..n]);
        }
    }

    /// Reads up to a burst of frames: answers ARP for our machines, learns neighbours, and
    /// returns the datagrams for our machines (a GSO burst split into its datagrams).
    pub fn receive(&mut self) -> Vec<Incoming> {
        let mut got = Vec::new();
        for _ in 0..BURST {
            let info = match self.sock.recv(&mut self.rbuf) {
                Ok(Some(i)) => i,
                _ => break,
            };
            self.frame(info, &mut got);
        }
        got
    }

    fn frame(&mut self, info: bootstorm_net::packet::FrameInfo, got: &mut Vec<Incoming>) {
        let f = &self.rbuf[..info.len];
        let Ok(eth) = ethernet::Frame::new_checked(f) else {
            self.ignored += 1;
            return;
        };
        if eth.ethertype() == ETHERTYPE_ARP {
            let Ok(a) = Arp::parse(eth.payload()) else {
                self.ignored += 1;
                return;
            };
            if !a.sender_ip.is_unspecified() {
                self.neighbours.insert(a.sender_ip, a.sender_mac);
            }
            if a.op == arp::REQUEST
                && let Some(&(_, mac)) = self.machines.get(&a.target_ip)
            {
                let reply = Arp {
                    op: arp::REPLY,
                    sender_mac: mac,
                    sender_ip: a.target_ip,
                    target_mac: a.sender_mac,
                    target_ip: a.sender_ip,
                };
                if let Ok(n) = reply.emit_frame(&mut self.out) {
                    let _ = self.sock.send(&self.out[..n]);
                }
            }
            return;
        }
        let Ok(u) = frame::parse_udp_with(f, !info.partial_checksum) else {
            self.ignored += 1;
            return;
        };
        let seg = if info.udp_segment > 0 {
            info.udp_segment
        } else {
            u.payload.len().max(1)
        };
        if u.dst.port() == 68 && u.src.port() == 67 {
            if !u.src.ip().is_unspecified() {
                self.neighbours.insert(*u.src.ip(), u.src_mac);
            }
            got.extend(u.payload.chunks(seg).map(|d| Incoming::Dhcp(d.to_vec())));
            return;
        }
        match self.machines.get(u.dst.ip()) {
            Some(&(k, _)) => {
                self.neighbours.entry(*u.src.ip()).or_insert(u.src_mac);
                got.extend(u.payload.chunks(seg).map(|d| Incoming::Udp {
                    k,
                    from: u.src,
                    to_port: u.dst.port(),
                    data: d.to_vec(),
                }));
            }
            None => self.ignored += 1,
        }
    }
}

impl AsRawFd for Link {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}
