//! The test network: two sides of a wire, each with one or more queue pairs, all in memory.
//!
//! What one side's [`MemTx`] flushes arrives at the other side's queues, spread over them as a
//! NIC's receive-side scaling would (a hash of source and destination address and port, so
//! every DISCOVER from 0.0.0.0:68 lands on one queue). Each datagram arrives with the metadata a
//! frame driver would give it (the sender's MAC, broadcast or not). A filter on a transmit
//! queue decides what is lost on the way. Real threads and no timers: a test runs a worker on
//! its own thread and talks to it through the other side, in milliseconds.

use crate::{BATCH, Doorbell, Outbox, Ring, RxMeta, RxQueue, Sent, TxMeta, TxQueue};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One side of the wire.
#[derive(Clone, Copy, Debug)]
pub struct Side {
    /// This side's address (the source of what it sends unless a datagram names another).
    pub addr: Ipv4Addr,
    /// The port its queues send from.
    pub port: u16,
    /// Queue pairs (a multi-queue NIC has several).
    pub queues: usize,
    /// Its interface index, as its receivers see it.
    pub ifindex: u32,
    /// Its MAC, as the other side sees it.
    pub mac: [u8; 6],
}

#[derive(Default)]
struct InboxState {
    items: VecDeque<(Vec<u8>, RxMeta)>,
    rung: bool,
}

#[derive(Default)]
struct Inbox {
    state: Mutex<InboxState>,
    cv: Condvar,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Ring for Inbox {
    fn ring(&self) {
        self.lock().rung = true;
        self.cv.notify_all();
    }
}

/// Decides per datagram whether it arrives (true) or is lost.
pub type Filter = Box<dyn FnMut(&[u8], &RxMeta) -> bool + Send>;

/// A receive queue on one side.
pub struct MemRx {
    inbox: Arc<Inbox>,
    batch: Vec<(Vec<u8>, RxMeta)>,
}

/// A transmit queue on one side.
pub struct MemTx {
    me: Side,
    to: Side,
    peers: Arc<[Arc<Inbox>]>,
    pending: Outbox,
    filter: Option<Filter>,
    /// Datagrams the filter dropped so far.
    pub lost: u64,
    /// Flushed but not yet moved, when a ring limit is set (see [`MemTx::set_ring_limit`]).
    ring: VecDeque<(Vec<u8>, TxMeta)>,
    ring_limit: Option<usize>,
}

/// One side's queue pairs, in order.
pub type Queues = Vec<(MemRx, MemTx)>;

/// A wire between `a` and `b`: each side's queue pairs.
pub fn wire(a: Side, b: Side) -> (Queues, Queues) {
    let inboxes = |s: &Side| -> Arc<[Arc<Inbox>]> {
        (0..s.queues.max(1))
            .map(|_| Arc::new(Inbox::default()))
            .collect()
    };
    let (ia, ib) = (inboxes(&a), inboxes(&b));
    let side = |me: Side, to: Side, mine: &Arc<[Arc<Inbox>]>, peers: &Arc<[Arc<Inbox>]>| {
        mine.iter()
            .map(|inbox| {
                (
                    MemRx {
                        inbox: inbox.clone(),
                        batch: Vec::with_capacity(BATCH),
                    },
                    MemTx {
                        me,
                        to,
                        peers: peers.clone(),
                        pending: Outbox::default(),
                        filter: None,
                        lost: 0,
                        ring: VecDeque::new(),
                        ring_limit: None,
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    (side(a, b, &ia, &ib), side(b, a, &ib, &ia))
}

impl MemTx {
    /// Loses what `f` returns false for (from now on).
    pub fn set_filter(&mut self, f: Filter) {
        self.filter = Some(f);
    }

    /// Behaves like an AF_XDP transmit ring in copy mode from now on: each flush moves at most
    /// `n` datagrams to the peer and leaves the rest in the ring ([`TxQueue::unsent`]) until
    /// the next flush.
    pub fn set_ring_limit(&mut self, n: usize) {
        self.ring_limit = Some(n.max(1));
    }

    fn deliver(&mut self, payload: Vec<u8>, meta: TxMeta) -> bool {
        let src_ip = if meta.src.is_unspecified() {
            self.me.addr
        } else {
            meta.src
        };
        // Like a frame driver, it honours a datagram's own source port.
        let sport = if meta.sport == 0 {
            self.me.port
        } else {
            meta.sport
        };
        let src = SocketAddrV4::new(src_ip, sport);
        let broadcast = meta.dst.ip().is_broadcast() && meta.l2_dst.is_none();
        let rx = RxMeta {
            src,
            dst: meta.dst,
            ifindex: self.to.ifindex,
            local: if broadcast {
                self.to.addr
            } else {
                *meta.dst.ip()
            },
            broadcast,
            l2_src: Some(self.me.mac),
            truncated: false,
            vlan: meta.vlan,
        };
        if let Some(f) = &mut self.filter
            && !f(&payload, &rx)
        {
            self.lost += 1;
            return false;
        }
        let q = &self.peers[rss(&rx) % self.peers.len()];
        q.lock().items.push_back((payload, rx));
        q.cv.notify_all();
        true
    }
}

/// Receive-side scaling: which queue a datagram lands on (as a NIC hashes the 4-tuple).
fn rss(m: &RxMeta) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = [
        m.src.ip().octets(),
        m.dst.ip().octets(),
        [
            (m.src.port() >> 8) as u8,
            m.src.port() as u8,
            (m.dst.port() >> 8) as u8,
            m.dst.port() as u8,
        ],
    ];
    for b in bytes.iter().flatten() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h as usize
}

impl RxQueue for MemRx {
    fn recv(&mut self, timeout: Duration) -> std::io::Result<usize> {
        self.batch.clear();
        let deadline = Instant::now() + timeout;
        let mut st = self.inbox.lock();
        while st.items.is_empty() && !st.rung {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .inbox
                .cv
                .wait_timeout(st, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        st.rung = false;
        let n = st.items.len().min(BATCH);
        self.batch.extend(st.items.drain(..n));
        Ok(n)
    }

    fn get(&self, i: usize) -> (&[u8], &RxMeta) {
        let (d, m) = &self.batch[i];
        (d, m)
    }

    fn doorbell(&self) -> Doorbell {
        Doorbell::new(self.inbox.clone())
    }
}

impl TxQueue for MemTx {
    fn push(&mut self, payload: &[u8], meta: &TxMeta) -> bool {
        self.pending.push(payload, meta)
    }

    fn len(&self) -> usize {
        self.pending.len()
    }

    fn flush(&mut self) -> std::io::Result<Sent> {
        let mut sent = Sent::default();
        let queued = std::mem::take(&mut self.pending).0;
        sent.sent = queued.len();
        self.ring.extend(queued);
        let moves = self.ring_limit.unwrap_or(usize::MAX).min(self.ring.len());
        for (p, m) in self.ring.drain(..moves).collect::<Vec<_>>() {
            // A lost datagram was sent as far as the sender can tell.
            self.deliver(p, m);
        }
        Ok(sent)
    }

    fn unsent(&self) -> usize {
        self.ring.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(last: u8, port: u16, queues: usize) -> Side {
        Side {
            addr: Ipv4Addr::new(198, 18, 0, last),
            port,
            queues,
            ifindex: u32::from(last),
            mac: [2, 0, 0, 0, 0, last],
        }
    }

    #[test]
    fn datagrams_cross_the_wire_with_what_a_frame_driver_sees() {
        let (mut a, mut b) = wire(side(1, 67, 2), side(2, 68, 1));
        let (brx, btx) = &mut b[0];
        let bcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
        for i in 0..10u8 {
            assert!(btx.push(&[i], &TxMeta::to(bcast)));
        }
        assert_eq!(btx.flush().unwrap().sent, 10);
        // Same 4-tuple: all on one queue, in order.
        let counts: Vec<usize> = a
            .iter_mut()
            .map(|(rx, _)| rx.recv(Duration::ZERO).unwrap())
            .collect();
        assert_eq!(counts.iter().sum::<usize>(), 10);
        assert!(counts.contains(&10), "{counts:?}");
        let (_, tx) = &mut a[0];
        // An answer to the client's MAC arrives as link unicast, not as a broadcast.
        let to = TxMeta {
            l2_dst: Some([2, 0, 0, 0, 0, 2]),
            ..TxMeta::to(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 68))
        };
        assert!(tx.push(b"offer", &to));
        tx.flush().unwrap();
        assert_eq!(brx.recv(Duration::from_secs(5)).unwrap(), 1);
        let (d, m) = brx.get(0);
        assert_eq!(d, b"offer");
        assert!(!m.broadcast);
        assert_eq!(m.l2_src, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(m.src, SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 67));
        assert_eq!(m.ifindex, 2);
    }

    #[test]
    fn a_filter_loses_datagrams_and_a_doorbell_ends_a_wait() {
        let (mut a, mut b) = wire(side(1, 67, 1), side(2, 68, 1));
        let (_, btx) = &mut b[0];
        let mut n = 0;
        btx.set_filter(Box::new(move |_, _| {
            n += 1;
            n % 2 == 0
        }));
        let dst = TxMeta::to(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 67));
        for i in 0..4u8 {
            btx.push(&[i], &dst);
        }
        btx.flush().unwrap();
        assert_eq!(btx.lost, 2);
        let (arx, _) = &mut a[0];
        assert_eq!(arx.recv(Duration::ZERO).unwrap(), 2);
        assert_eq!(arx.get(0).0, &[1]);
        let bell = arx.doorbell();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            bell.ring();
        });
        let began = Instant::now();
        assert_eq!(arx.recv(Duration::from_secs(30)).unwrap(), 0);
        assert!(began.elapsed() < Duration::from_secs(20));
        t.join().unwrap();
    }
}
