//! The frame driver: whole Ethernet frames on one interface through an `AF_PACKET` socket
//! (`bootstorm_net::packet`), as UDP datagram queues. It is what a host without an address needs
//! (firmware, or the load generator's simulated machines): DHCP from 0.0.0.0:68 with any MAC,
//! link-unicast replies, and ARP answered for the addresses its users claim.
//!
//! - Receive: every UDP datagram to port 68 (DHCP replies) or to a claimed address, with the
//!   sender's MAC; a UDP GSO burst (veth passes one on whole) is split into its datagrams. ARP
//!   requests for a claimed address are answered with its MAC; every sender is learnt as a
//!   neighbour. Anything else is counted in [`FrameLink::ignored`] and dropped.
//! - Transmit: to [`TxMeta::l2_dst`] if given, to the broadcast MAC for a broadcast, else to the
//!   neighbour learnt for the destination; an unknown neighbour gets an ARP request instead and
//!   the datagram is dropped (counted in [`FrameLink::unresolved`]; the caller's retransmission
//!   finds the answer in). From [`TxMeta::l2_src`] or the interface's own MAC.
//!
//! The two halves share the link state behind one (uncontended) lock: they are meant for one
//! thread, as an interface queue is.

use crate::{BATCH, Doorbell, MAX_DATAGRAM, Outbox, RxMeta, RxQueue, Sent, TxMeta, TxQueue};
use bootstorm_net::packet::{FrameInfo, PacketSocket};
use bootstorm_net::wake::EventFd;
use bootstorm_wire::arp::{self, Arp};
use bootstorm_wire::ethernet::{self, Address, ETHERTYPE_ARP};
use bootstorm_wire::frame;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The port whose datagrams are taken without a claim: the DHCP client port.
const CLIENT_PORT: u16 = 68;

/// Frames read per [`RxQueue::recv`] once they carried a datagram (a GSO burst may hold many
/// datagrams).
const FRAMES_PER_RECV: usize = BATCH;
/// Frames read per [`RxQueue::recv`] at most, datagrams or not: frames with none (ARP, which
/// is answered as it is read, and what is not ours) do not end a receive, so that an
/// edge-triggered poller is not left with a socket full of ARP requests and no wake-up (a
/// storm's worth of them stalled the load generator's machines for seconds).
const MAX_FRAMES_PER_RECV: usize = 8192;

struct State {
    sock: PacketSocket,
    ifindex: u32,
    /// Addresses heard from: IPv4 -> MAC.
    neighbours: HashMap<Ipv4Addr, Address>,
    /// Claimed addresses -> the MAC that answers ARP for them.
    claimed: HashMap<Ipv4Addr, Address>,
    out: Vec<u8>,
    ignored: u64,
    unresolved: u64,
}

/// The link both halves share; cheap to clone. Claims addresses.
#[derive(Clone)]
pub struct FrameLink(Arc<Mutex<State>>);

impl FrameLink {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `ip` is held by `mac` now: answer ARP for it, deliver its datagrams.
    pub fn claim(&self, ip: Ipv4Addr, mac: [u8; 6]) {
        self.lock().claimed.insert(ip, Address(mac));
    }

    /// `ip` was let go.
    pub fn release(&self, ip: Ipv4Addr) {
        self.lock().claimed.remove(&ip);
    }

    /// Another transmit half on this link (for a second thread: they share the socket behind
    /// the link's lock).
    pub fn tx(&self) -> FrameTx {
        FrameTx {
            link: self.clone(),
            pending: Outbox::default(),
        }
    }

    /// Frames that were not for us or did not parse.
    pub fn ignored(&self) -> u64 {
        self.lock().ignored
    }

    /// Datagrams dropped because their destination's MAC was not known yet (an ARP request
    /// went out instead).
    pub fn unresolved(&self) -> u64 {
        self.lock().unresolved
    }
}

/// Opens the frame queues on `interface` (needs CAP_NET_RAW).
pub fn open(interface: &str) -> std::io::Result<(FrameRx, FrameTx, FrameLink)> {
    let sock = PacketSocket::open(interface)?;
    let ifindex = bootstorm_net::interface_index(interface).unwrap_or(0);
    let link = FrameLink(Arc::new(Mutex::new(State {
        sock,
        ifindex,
        neighbours: HashMap::new(),
        claimed: HashMap::new(),
        out: vec![0u8; frame::payload_offset(Some(0)) + MAX_DATAGRAM],
        ignored: 0,
        unresolved: 0,
    })));
    let fd = link.lock().sock.as_raw_fd();
    Ok((
        FrameRx {
            link: link.clone(),
            fd,
            bell: Arc::new(EventFd::new()?),
            rbuf: vec![0u8; 65_536 + 64],
            batch: Vec::new(),
        },
        link.tx(),
        link,
    ))
}

/// The receive half.
pub struct FrameRx {
    link: FrameLink,
    fd: RawFd,
    bell: Arc<EventFd>,
    rbuf: Vec<u8>,
    batch: Vec<(Vec<u8>, RxMeta)>,
}

impl FrameRx {
    fn take(&mut self) {
        self.batch.clear();
        let mut st = self.link.lock();
        let mut with_datagrams = 0;
        for _ in 0..MAX_FRAMES_PER_RECV {
            if with_datagrams >= FRAMES_PER_RECV {
                break;
            }
            let before = self.batch.len();
            let info = match st.sock.recv(&mut self.rbuf) {
                Ok(Some(i)) => i,
                _ => break,
            };
            st.frame(&self.rbuf[..info.len], info, &mut self.batch);
            if self.batch.len() > before {
                with_datagrams += 1;
            }
        }
    }
}

impl State {
    fn send_arp(&mut self, a: &Arp) {
        if let Ok(n) = a.emit_frame(&mut self.out) {
            let _ = self.sock.send(&self.out[..n]);
        }
    }

    fn frame(&mut self, f: &[u8], info: FrameInfo, got: &mut Vec<(Vec<u8>, RxMeta)>) {
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
                && let Some(&mac) = self.claimed.get(&a.target_ip)
            {
                self.send_arp(&Arp {
                    op: arp::REPLY,
                    sender_mac: mac,
                    sender_ip: a.target_ip,
                    target_mac: a.sender_mac,
                    target_ip: a.sender_ip,
                });
            }
            return;
        }
        let Ok(u) = frame::parse_udp_with(f, !info.partial_checksum) else {
            self.ignored += 1;
            return;
        };
        let ours = u.dst.port() == CLIENT_PORT || self.claimed.contains_key(u.dst.ip());
        if !ours {
            self.ignored += 1;
            return;
        }
        if !u.src.ip().is_unspecified() {
            self.neighbours.insert(*u.src.ip(), u.src_mac);
        }
        let seg = if info.udp_segment > 0 {
            info.udp_segment
        } else {
            u.payload.len().max(1)
        };
        let meta = RxMeta {
            src: u.src,
            dst: u.dst,
            ifindex: self.ifindex,
            local: *u.dst.ip(),
            broadcast: u.dst.ip().is_broadcast(),
            l2_src: Some(u.src_mac.0),
            truncated: false,
            vlan: u.vlan,
        };
        got.extend(u.payload.chunks(seg).map(|d| (d.to_vec(), meta)));
    }

    fn send(&mut self, payload: &[u8], m: &TxMeta, own_port: u16) {
        let from = Address(m.l2_src.unwrap_or(self.sock.mac()));
        let src = SocketAddrV4::new(m.src, if m.sport == 0 { own_port } else { m.sport });
        let to = match m.l2_dst {
            Some(mac) => Address(mac),
            None if m.dst.ip().is_broadcast() => Address::BROADCAST,
            None => match self.neighbours.get(m.dst.ip()).copied() {
                Some(mac) => mac,
                None => {
                    self.unresolved += 1;
                    self.send_arp(&Arp {
                        op: arp::REQUEST,
                        sender_mac: from,
                        sender_ip: m.src,
                        target_mac: Address([0; 6]),
                        target_ip: *m.dst.ip(),
                    });
                    return;
                }
            },
        };
        let len = payload.len().min(MAX_DATAGRAM);
        let at = frame::payload_offset(m.vlan);
        self.out[at..at + len].copy_from_slice(&payload[..len]);
        if let Ok(n) =
            frame::emit_udp_headers_tagged(&mut self.out, from, to, m.vlan, src, m.dst, len)
        {
            let _ = self.sock.send(&self.out[..n]);
        }
    }
}

impl RxQueue for FrameRx {
    fn recv(&mut self, timeout: Duration) -> std::io::Result<usize> {
        self.take();
        if self.batch.is_empty() && !timeout.is_zero() && self.bell.wait_with(self.fd, timeout)? {
            self.take();
        }
        Ok(self.batch.len())
    }

    fn get(&self, i: usize) -> (&[u8], &RxMeta) {
        let (d, m) = &self.batch[i];
        (d, m)
    }

    fn doorbell(&self) -> Doorbell {
        Doorbell::new(self.bell.clone())
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd)
    }
}

/// The transmit half. Its own port (for [`TxMeta::sport`] 0) is the DHCP client port.
pub struct FrameTx {
    link: FrameLink,
    pending: Outbox,
}

impl TxQueue for FrameTx {
    fn push(&mut self, payload: &[u8], meta: &TxMeta) -> bool {
        self.pending.push(payload, meta)
    }

    fn len(&self) -> usize {
        self.pending.len()
    }

    fn flush(&mut self) -> std::io::Result<Sent> {
        let mut st = self.link.lock();
        let n = self.pending.len();
        for (p, m) in self.pending.drain() {
            st.send(&p, &m, CLIENT_PORT);
        }
        Ok(Sent {
            sent: n,
            ..Sent::default()
        })
    }
}
