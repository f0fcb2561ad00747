//! The worker on the in-memory test network: the same loop the daemon runs on sockets.

use super::*;
use bootstorm_io::mem::{self, MemRx, MemTx, Side};
use bootstorm_lease::{Change, Lease, LeaseSink};
use bootstorm_wire::dhcp::{MAGIC_COOKIE, MessageType, Packet, Repr};
use std::path::Path;
use std::time::Instant as StdInstant;

pub(crate) const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const IFINDEX: u32 = 7;
/// Bounds every wait for something the worker must do.
const PATIENCE: Duration = Duration::from_secs(20);

fn server() -> Arc<Server> {
    let text = r#"
[[subnet]]
network = "198.18.0.0/16"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.1.254"]
lease_time = "1h"
"#;
    let s = crate::config::parse(Path::new("test.toml"), text).unwrap();
    Arc::new(Server::new(s.dhcp).unwrap())
}

fn mac(n: u16) -> [u8; 6] {
    [0x52, 0x54, 0, 0, (n >> 8) as u8, n as u8]
}

/// A client message: `mt` from client `n`, unicast replies wanted (broadcast flag clear).
pub(crate) fn message(mt: MessageType, n: u16, requested: Option<Ipv4Addr>) -> Vec<u8> {
    message_with(mt, n, requested, &[])
}

/// [`message`] with more options (code, value) before the end.
pub(crate) fn message_with(
    mt: MessageType,
    n: u16,
    requested: Option<Ipv4Addr>,
    extra: &[(u8, &[u8])],
) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&(0x7000_0000 | u32::from(n)).to_be_bytes());
    b[28..34].copy_from_slice(&mac(n));
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    b.extend_from_slice(&[53, 1, u8::from(mt)]);
    if let Some(r) = requested {
        b.extend_from_slice(&[50, 4]);
        b.extend_from_slice(&r.octets());
        b.extend_from_slice(&[54, 4]);
        b.extend_from_slice(&SERVER.octets());
    }
    for (code, value) in extra {
        b.push(*code);
        b.push(value.len() as u8);
        b.extend_from_slice(value);
    }
    b.push(255);
    b
}

/// A reply as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Got {
    pub(crate) mt: MessageType,
    pub(crate) client: u16,
    pub(crate) yiaddr: Ipv4Addr,
    pub(crate) meta: RxMeta,
    /// The boot file (`file`) and next server (`siaddr`).
    pub(crate) file: String,
    pub(crate) siaddr: Ipv4Addr,
}

/// The DHCP workers on one side of an in-memory wire, a client queue on the other.
pub(crate) struct Net {
    client_rx: MemRx,
    client_tx: MemTx,
    published: Vec<Arc<Mutex<Published>>>,
    shutdown: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Net {
    /// `workers` workers on a server with that many queues, and one client queue.
    pub(crate) fn start(
        workers: usize,
        commits: Option<Arc<dyn Commits>>,
        srv: Arc<Server>,
    ) -> Net {
        Net::start_with(workers, commits, srv, |_| {})
    }

    /// As [`Net::start`], with each server transmit queue set up by `tx_setup` first.
    fn start_with(
        workers: usize,
        commits: Option<Arc<dyn Commits>>,
        srv: Arc<Server>,
        tx_setup: impl Fn(&mut MemTx),
    ) -> Net {
        let (server_side, mut client_side) = mem::wire(
            Side {
                addr: SERVER,
                port: 67,
                queues: workers,
                ifindex: IFINDEX,
                mac: [2, 0, 0, 0, 0, 1],
            },
            Side {
                addr: Ipv4Addr::UNSPECIFIED,
                port: 68,
                queues: 1,
                ifindex: 3,
                mac: [2, 0, 0, 0, 0, 2],
            },
        );
        let cell = Arc::new(ServerCell::new(srv));
        let shutdown = Arc::new(AtomicBool::new(false));
        let group: Group = server_side
            .iter()
            .map(|(rx, _)| Inbox::new(rx.doorbell()))
            .collect();
        let clock = bootstorm_time::Clock::new();
        let mut published = Vec::new();
        let mut threads = Vec::new();
        for (index, (rx, mut tx)) in server_side.into_iter().enumerate() {
            tx_setup(&mut tx);
            let p = Arc::new(Mutex::new(Published::default()));
            published.push(p.clone());
            let w = Worker {
                id: index,
                index,
                group: group.clone(),
                tx,
                cell: cell.clone(),
                sessions: Arc::new(Sessions::new()),
                now: Arc::new(move || clock.now()),
                shutdown: shutdown.clone(),
                hints: Arc::new(HashMap::from([(IFINDEX, 0)])),
                published: p,
                commits: commits.clone(),
                coalesce: Duration::ZERO,
                port: 67,
                side: None,
                busy_poll: Duration::ZERO,
            };
            threads.push(std::thread::spawn(move || run(w, rx)));
        }
        let (client_rx, client_tx) = client_side.remove(0);
        Net {
            client_rx,
            client_tx,
            published,
            shutdown,
            threads,
        }
    }

    pub(crate) fn send(&mut self, datagrams: &[Vec<u8>]) {
        let bcast = TxMeta::to(SocketAddrV4::new(Ipv4Addr::BROADCAST, 67));
        for d in datagrams {
            if !self.client_tx.push(d, &bcast) {
                self.client_tx.flush().unwrap();
                assert!(self.client_tx.push(d, &bcast));
            }
        }
        self.client_tx.flush().unwrap();
    }

    /// Replies until `n` arrived (or the patience ran out).
    pub(crate) fn replies(&mut self, n: usize) -> Vec<Got> {
        let mut got = Vec::new();
        let began = StdInstant::now();
        while got.len() < n && began.elapsed() < PATIENCE {
            let k = self.client_rx.recv(Duration::from_millis(50)).unwrap();
            for i in 0..k {
                let (d, meta) = self.client_rx.get(i);
                let p = Packet::new_checked(d).unwrap();
                let r = Repr::parse(&p).unwrap();
                got.push(Got {
                    mt: r.message_type.unwrap(),
                    client: u16::from_be_bytes([r.chaddr()[4], r.chaddr()[5]]),
                    yiaddr: r.yiaddr.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    meta: *meta,
                    file: String::from_utf8_lossy(bootstorm_wire::dhcp::c_str(r.file)).into_owned(),
                    siaddr: r.siaddr.unwrap_or(Ipv4Addr::UNSPECIFIED),
                });
            }
        }
        got
    }

    /// Nothing waiting at the client now.
    fn nothing_yet(&mut self) -> bool {
        self.client_rx.recv(Duration::ZERO).unwrap() == 0
    }

    fn totals(&self) -> Published {
        let mut t = Published::default();
        for p in &self.published {
            let g = p.lock().unwrap();
            t.core.add(&g.core);
            t.io.add(&g.io);
        }
        t
    }

    /// Waits until the workers' published counters satisfy `f` (bounded).
    fn until(&self, what: &str, f: impl Fn(&Published) -> bool) {
        let began = StdInstant::now();
        while !f(&self.totals()) {
            assert!(began.elapsed() < PATIENCE, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub(crate) fn stop(self) -> Published {
        self.shutdown.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let mut t = Published::default();
        for p in &self.published {
            let g = p.lock().unwrap();
            t.core.add(&g.core);
            t.io.add(&g.io);
        }
        t
    }
}

/// DORA for clients 1..=n through two worker queues: every DISCOVER lands on one queue (the
/// same 4-tuple, as RSS on a NIC), half are handed to the other worker, and each client gets
/// one OFFER and one ACK, at link unicast to its MAC (the broadcast flag is clear).
#[test]
fn dora_through_two_queues_each_client_answered_once_by_its_owner() {
    let n = 64u16;
    let mut net = Net::start(2, None, server());
    net.send(
        &(1..=n)
            .map(|c| message(MessageType::Discover, c, None))
            .collect::<Vec<_>>(),
    );
    let offers = net.replies(n as usize);
    assert_eq!(offers.len(), n as usize);
    let mut requests = Vec::new();
    for o in &offers {
        assert_eq!(o.mt, MessageType::Offer);
        assert!(!o.meta.broadcast, "link unicast: {o:?}");
        assert_eq!(o.meta.dst, SocketAddrV4::new(o.yiaddr, 68));
        assert_eq!(*o.meta.src.ip(), SERVER, "from the interface's address");
        requests.push(message(MessageType::Request, o.client, Some(o.yiaddr)));
    }
    net.send(&requests);
    let acks = net.replies(n as usize);
    let mut addrs: Vec<Ipv4Addr> = acks.iter().map(|a| a.yiaddr).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), n as usize, "one address each");
    for a in &acks {
        assert_eq!(a.mt, MessageType::Ack);
        let o = offers.iter().find(|o| o.client == a.client).unwrap();
        assert_eq!(a.yiaddr, o.yiaddr);
    }
    net.until("every request counted", |p| {
        p.core.received(MessageType::Request) == u64::from(n)
    });
    assert!(net.nothing_yet(), "no duplicate answers");
    let t = net.stop();
    assert_eq!(t.core.received(MessageType::Discover), u64::from(n));
    assert_eq!(t.core.sent(MessageType::Ack), u64::from(n));
    // Both workers served: whoever received a datagram passed on those it did not own.
    assert!(
        t.io.handed_off > 0 && t.io.handed_off < 2 * u64::from(n),
        "{t:?}"
    );
    assert_eq!(t.io.handoff_full, 0);
}

/// A fake journal: numbers changes, and makes them durable only when the test says so.
#[derive(Default)]
struct FakeJournal {
    appended: AtomicU64,
    durable: AtomicU64,
    failed: AtomicBool,
    listeners: Mutex<Vec<Listener>>,
}

impl FakeJournal {
    fn make_durable(&self, upto: u64) {
        self.durable.store(upto, Ordering::SeqCst);
        for f in self.listeners.lock().unwrap().iter() {
            f(upto);
        }
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        for f in self.listeners.lock().unwrap().iter() {
            f(u64::MAX);
        }
    }
}

impl LeaseSink for FakeJournal {
    fn changed(&self, _: Change, _: &Lease) -> u64 {
        self.appended.fetch_add(1, Ordering::SeqCst) + 1
    }
}

impl Commits for FakeJournal {
    fn durable(&self) -> Result<u64, Failed> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(Failed("disk on fire".into()));
        }
        Ok(self.durable.load(Ordering::SeqCst))
    }
    fn on_durable(&self, f: Listener) {
        self.listeners.lock().unwrap().push(f);
    }
    fn wait(&self, seq: u64) -> Result<(), Failed> {
        let began = StdInstant::now();
        while self.durable()? < seq {
            if began.elapsed() > PATIENCE {
                return Err(Failed("test journal never got there".into()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

/// Issue 13, the durability contract: an ACK whose lease is not yet durable is never sent
/// before the journal says it is; a reply built after it (an OFFER that waits for nothing)
/// does not overtake it; once durable both leave, in order; if the journal fails, what it held
/// is never sent.
#[test]
fn replies_wait_for_the_journal_and_keep_their_order() {
    let srv = server();
    let journal = Arc::new(FakeJournal::default());
    srv.leases().set_sink(journal.clone());
    let mut net = Net::start(1, Some(journal.clone()), srv);

    net.send(&[message(MessageType::Discover, 1, None)]);
    let offer = net.replies(1);
    assert_eq!(offer.len(), 1, "an OFFER journals nothing and goes at once");
    let a1 = offer[0].yiaddr;
    net.send(&[message(MessageType::Request, 1, Some(a1))]);
    net.until("the REQUEST served and its ACK held", |p| {
        p.core.received(MessageType::Request) == 1 && p.io.held == 1
    });
    assert_eq!(journal.appended.load(Ordering::SeqCst), 1);
    assert!(
        net.nothing_yet(),
        "the ACK left before its lease was durable"
    );
    // Another client's DISCOVER: its OFFER waits behind the held ACK.
    net.send(&[message(MessageType::Discover, 2, None)]);
    net.until("the second DISCOVER served", |p| {
        p.core.received(MessageType::Discover) == 2
    });
    assert!(net.nothing_yet(), "a later reply overtook a held one");

    journal.make_durable(1);
    let got = net.replies(2);
    let order: Vec<(MessageType, u16)> = got.iter().map(|g| (g.mt, g.client)).collect();
    assert_eq!(
        order,
        [(MessageType::Ack, 1), (MessageType::Offer, 2)],
        "in the order they were built"
    );

    // The journal fails while an ACK waits: it never goes out.
    net.send(&[message(MessageType::Request, 2, Some(got[1].yiaddr))]);
    net.until("the second ACK held", |p| p.io.held == 3);
    journal.fail();
    net.until("the held ACK dropped", |p| p.io.withheld == 1);
    assert!(net.nothing_yet());
    let t = net.stop();
    assert_eq!(t.core.sent(MessageType::Ack), 2, "built twice, sent once");
}

#[test]
fn coalescing_pauses_only_under_load() {
    let ms = Duration::from_millis;
    let c = ms(1);
    // Datagrams arrive faster than the interval: let the next batch gather.
    assert_eq!(
        coalesce_pause(c, 3, Duration::from_micros(200)),
        Some(ms(1))
    );
    assert_eq!(coalesce_pause(c, 1, Duration::ZERO), Some(ms(1)));
    // The receive waited longer than the interval: traffic is sparse, answer at once.
    assert_eq!(coalesce_pause(c, 1, ms(1)), None);
    assert_eq!(coalesce_pause(c, 1, ms(80)), None);
    // Nothing received (timeout), or a full batch: more may be queued, read on.
    assert_eq!(coalesce_pause(c, 0, Duration::ZERO), None);
    assert_eq!(coalesce_pause(c, bootstorm_io::BATCH, Duration::ZERO), None);
    // Off.
    assert_eq!(coalesce_pause(Duration::ZERO, 3, Duration::ZERO), None);
}

/// A transmit ring that moves only some of what it was given per kick (an AF_XDP ring in copy
/// mode finding the link busy): the worker kicks it again on its own, with no new traffic to
/// prompt it, until every reply is out. Before this was fixed, the frames left in the ring
/// waited for the next reply to be queued, which for the last client of a burst never came.
#[test]
fn frames_left_in_the_transmit_ring_go_out_without_new_traffic() {
    let n = 16u16;
    let mut net = Net::start_with(1, None, server(), |tx| tx.set_ring_limit(1));
    net.send(
        &(1..=n)
            .map(|c| message(MessageType::Discover, c, None))
            .collect::<Vec<_>>(),
    );
    let offers = net.replies(n as usize);
    let mut clients: Vec<u16> = offers.iter().map(|o| o.client).collect();
    clients.sort_unstable();
    assert_eq!(clients, (1..=n).collect::<Vec<_>>());
    assert!(offers.iter().all(|o| o.mt == MessageType::Offer));
    net.stop();
}
