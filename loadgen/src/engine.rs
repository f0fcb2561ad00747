//! The run: worker threads, each a DHCP relay agent with its own address, driving its share of
//! the simulated machines through DHCP and the boot file download (TFTP or HTTP), and, when
//! asked, the second round an iPXE chainload makes (iPXE's DHCP, then its script or kernel), with
//! mio over the relay's packet queue and one socket per download, a deadline heap with one entry
//! per machine, batched receives (`recvmmsg`) on the relay socket and UDP GRO on the downloads.
//! In L2 mode one worker drives every machine through the frame driver (`bootstorm_io::frame`,
//! one raw socket on an interface) instead: DHCP broadcast from 0.0.0.0:68 with each machine's
//! MAC, TFTP from each machine's leased address, ARP answered for the addresses they claim. The
//! DHCP traffic of both modes goes through the packet-queue seam the server's workers use.

use crate::body::Expect;
use crate::dhcp;
use crate::http;
use crate::profile::{Fetch, Profile};
use crate::report::{Outcome, Phase, WorkerResult};
use crate::tftp::{self, Action, Download};
use anyhow::Context;
use bootstorm_io::frame::FrameLink;
use bootstorm_io::udp::{UdpRx, UdpTx};
use bootstorm_io::{RxQueue, TxMeta, TxQueue};
use bootstorm_net::{GroBuf, SendBatch, SocketOptions, UdpSocket4};
use bootstorm_time::Timers;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod fetch;
use fetch::Fetcher;
mod plan;
mod progress;
mod xdp;
pub use plan::*;
pub use progress::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Waiting,
    Dhcp,
    Fetch,
    /// Failed; starts over at `retry_at`.
    Rebooting,
    Done,
}

struct Machine {
    index: usize,
    arrive: u64,
    step: Step,
    /// 0: the firmware's round; 1: iPXE's, after a chainload.
    stage: usize,
    dhcp: dhcp::Client,
    fetch: Option<Fetcher>,
    /// When the current phase began.
    mark: u64,
    /// Boots started over so far, and when the next one starts.
    attempts: u32,
    retry_at: u64,
}

impl Machine {
    fn deadline(&self) -> Option<u64> {
        match self.step {
            Step::Dhcp => self.dhcp.deadline(),
            Step::Fetch => self.fetch.as_ref().and_then(Fetcher::deadline),
            Step::Rebooting => Some(self.retry_at),
            _ => None,
        }
    }
}

const DHCP_TOKEN: Token = Token(usize::MAX);

/// How a worker reaches the server: packet queues (`bootstorm-io`), a UDP socket on port 67 of
/// the relay address (relay mode) or raw frames on an interface (L2 mode), the same seam the
/// server's workers use.
struct Net {
    rx: Option<Box<dyn RxQueue>>,
    tx: Box<dyn TxQueue>,
    /// L2 mode: the link, on which the machines claim their leased addresses.
    link: Option<FrameLink>,
    /// L2 mode: claimed address -> the machine holding it.
    claimed: HashMap<Ipv4Addr, usize>,
    /// AF_XDP mode (L2 mode on the fast path): hand-offs, neighbours, ARP.
    xdp: Option<xdp::XdpShare>,
}

impl Net {
    fn push(&mut self, payload: &[u8], to: &TxMeta) {
        if !self.tx.push(payload, to) {
            let _ = self.tx.flush();
            let _ = self.tx.push(payload, to);
        }
    }

    /// L2 mode: a datagram from machine `mac` at `src` to `dst` (sent at the next flush).
    fn send_udp(&mut self, mac: [u8; 6], src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
        let mut to = TxMeta {
            src: *src.ip(),
            sport: src.port(),
            l2_src: Some(mac),
            ..TxMeta::to(dst)
        };
        if let Some(x) = self.xdp.as_mut()
            && !dst.ip().is_broadcast()
        {
            match x.neighbour(dst.ip()) {
                Some(m) => to.l2_dst = Some(m),
                None => return x.push_unresolved(payload, &to),
            }
        }
        self.push(payload, &to);
    }

    fn flush(&mut self) {
        if !self.tx.is_empty() || self.tx.unsent() > 0 {
            let _ = self.tx.flush();
        }
        if let Some(x) = self.xdp.as_mut() {
            x.flush();
        }
    }

    /// At the end: what is still in a transmit ring (the machines' last ACKs) goes out before
    /// the socket closes (bounded: 100 ms).
    fn drain(&mut self) {
        for _ in 0..100 {
            self.flush();
            if self.tx.unsent() == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

struct Worker<'a> {
    cfg: &'a Config,
    /// Profile per stage: the firmware's, then iPXE's after a chainload.
    profiles: [Profile; 2],
    /// Relay mode: this worker's giaddr; L2 mode: unspecified.
    relay: Ipv4Addr,
    /// This worker's index, of `workers`.
    w: usize,
    workers: usize,
    epoch: Instant,
    poll: Poll,
    net: Net,
    machines: Vec<Machine>,
    /// Each machine's next deadline (microseconds since the epoch).
    timers: Timers<u64, usize>,
    tx: SendBatch,
    gro: GroBuf,
    buf: Vec<u8>,
    /// For HTTP reads.
    rbuf: Vec<u8>,
    result: WorkerResult,
    progress: &'a Progress,
    active: usize,
    /// Machine index -> its place in `machines`.
    by_index: Vec<Option<usize>>,
}

/// Runs worker `w` of [`Config::workers`]: the machines whose index modulo the worker count is
/// `w`, through `net` if it was opened for it (AF_XDP mode), else its own.
fn run_worker(
    cfg: &Config,
    w: usize,
    arrive: &[u64],
    epoch: Instant,
    progress: &Progress,
    net: Option<Net>,
) -> anyhow::Result<WorkerResult> {
    let workers = cfg.workers();
    let (relay, net) = match (net, &cfg.interface) {
        (Some(net), _) => (Ipv4Addr::UNSPECIFIED, net),
        (None, Some(ifname)) => {
            let (rx, tx, link) = bootstorm_io::frame::open(ifname)
                .map_err(|e| anyhow::anyhow!("opening a raw socket on {ifname}: {e}"))?;
            let net = Net {
                rx: Some(Box::new(rx)),
                tx: Box::new(tx),
                link: Some(link),
                claimed: HashMap::new(),
                xdp: None,
            };
            (Ipv4Addr::UNSPECIFIED, net)
        }
        (None, None) => {
            let relay = cfg.relays[w];
            let sock = UdpSocket4::bind(&SocketOptions {
                bind: SocketAddrV4::new(relay, 67),
                interface: None,
                reuse_port: false,
                recv_timeout: Duration::ZERO,
            })
            .map_err(|e| anyhow::anyhow!("binding the relay address {relay}:67: {e}"))?;
            let sock = Arc::new(sock);
            let net = Net {
                rx: Some(Box::new(UdpRx::new(sock.clone(), true)?)),
                tx: Box::new(UdpTx::new(sock)),
                link: None,
                claimed: HashMap::new(),
                xdp: None,
            };
            (relay, net)
        }
    };
    let poll = Poll::new()?;
    let fd = net
        .rx
        .as_ref()
        .and_then(|r| r.raw_fd())
        .context("the DHCP queue has no descriptor to poll")?;
    poll.registry()
        .register(&mut SourceFd(&fd), DHCP_TOKEN, Interest::READABLE)?;
    if let Some(x) = &net.xdp {
        x.register(&poll)?;
    }
    let mut machines: Vec<Machine> = (w..cfg.clients)
        .step_by(workers)
        .map(|i| Machine {
            index: i,
            arrive: arrive[i],
            step: Step::Waiting,
            stage: 0,
            dhcp: dhcp::Client::new(mac_of(cfg.mac_base, i), xid_of(i, 0), relay),
            fetch: None,
            mark: 0,
            attempts: 0,
            retry_at: 0,
        })
        .collect();
    machines.sort_by_key(|m| m.arrive);
    let mut by_index = vec![None; cfg.clients];
    for (k, m) in machines.iter().enumerate() {
        by_index[m.index] = Some(k);
    }
    let mut wk = Worker {
        by_index,
        cfg,
        profiles: [cfg.profile.clone(), cfg.profile.ipxe_after()],
        relay,
        w,
        workers,
        epoch,
        poll,
        net,
        timers: Timers::default(),
        tx: SendBatch::default(),
        gro: GroBuf::default(),
        buf: vec![0u8; 2048],
        rbuf: vec![0u8; 64 * 1024],
        result: WorkerResult::new(),
        progress,
        active: machines.len(),
        machines,
    };
    let ran = wk.run();
    wk.net.drain();
    ran?;
    Ok(wk.result)
}

/// Transaction id of machine `i` in round `stage`: its index in the low 24 bits, the round in
/// bit 24 (a NAK restart changes the top four bits).
fn xid_of(i: usize, stage: usize) -> u32 {
    ((i as u32) & 0x00ff_ffff) | ((stage as u32 & 1) << 24)
}

impl Worker<'_> {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn schedule(&mut self, k: usize) {
        if let Some(d) = self.machines[k].deadline() {
            self.timers.schedule(k, d);
        }
    }

    /// Sends the DHCP message of `len` bytes in `buf` for machine `k`.
    fn send_dhcp(&mut self, k: usize, len: usize) {
        if len == 0 {
            return;
        }
        let to = if self.net.link.is_some() {
            // On the wire, as firmware: a broadcast from 0.0.0.0:68 with the machine's MAC.
            TxMeta {
                sport: 68,
                l2_src: Some(self.machines[k].dhcp.mac()),
                ..TxMeta::to(SocketAddrV4::new(Ipv4Addr::BROADCAST, 67))
            }
        } else {
            TxMeta::to(SocketAddrV4::new(self.cfg.server, self.cfg.server_port))
        };
        self.net.push(&self.buf[..len], &to);
    }

    fn flush_dhcp(&mut self) {
        self.net.flush();
    }

    /// Machine `k`'s download is over: its socket or connection is closed.
    fn end_fetch(&mut self, k: usize) {
        if let Some(mut f) = self.machines[k].fetch.take() {
            f.deregister(self.poll.registry());
        }
    }

    /// Machine `k` stops (done, or about to start over): its download ends and it lets go of
    /// its leased address (L2 mode: no more ARP answers for it).
    fn release(&mut self, k: usize) {
        self.end_fetch(k);
        if let Some(link) = &self.net.link
            && let Some(l) = self.machines[k].dhcp.lease()
        {
            link.release(l.addr);
            self.net.claimed.remove(&l.addr);
        }
    }

    /// The phase machine `k` is in, if any.
    fn phase_now(&self, k: usize) -> Option<Phase> {
        let m = &self.machines[k];
        let ipxe = m.stage > 0;
        Some(match (&m.step, &m.fetch) {
            (Step::Dhcp, _) if ipxe => Phase::IpxeDhcp,
            (Step::Dhcp, _) => Phase::Dhcp,
            (Step::Fetch, Some(Fetcher::Tftp(..) | Fetcher::TftpL2(..))) if ipxe => Phase::IpxeTftp,
            (Step::Fetch, Some(Fetcher::Tftp(..) | Fetcher::TftpL2(..))) => Phase::Tftp,
            (Step::Fetch, Some(Fetcher::Http { .. })) if ipxe => Phase::IpxeHttp,
            (Step::Fetch, Some(Fetcher::Http { .. })) => Phase::Http,
            (Step::Fetch, Some(Fetcher::Iscsi { sess, .. })) if sess.login_latency().is_some() => {
                Phase::IscsiIo
            }
            (Step::Fetch, Some(Fetcher::Iscsi { .. })) => Phase::IscsiLogin,
            _ => return None,
        })
    }

    /// Machine `k` leaves the phase it is in at `now` without finishing it (it failed): the
    /// report still counts it in flight until then.
    fn abandon_phase(&mut self, k: usize, now: u64) {
        if let Some(p) = self.phase_now(k) {
            let mark = self.machines[k].mark;
            self.result.span(p, mark, now);
        }
    }

    fn finish(&mut self, k: usize, now: u64, outcome: Outcome) {
        let m = &mut self.machines[k];
        if m.step == Step::Done {
            return;
        }
        let arrive = m.arrive;
        if matches!(outcome, Outcome::Failed(_)) && m.step != Step::Waiting {
            self.abandon_phase(k, now);
            self.result.span(Phase::Boot, arrive, now);
        }
        self.machines[k].step = Step::Done;
        self.release(k);
        self.active -= 1;
        match outcome {
            Outcome::Ok => {
                self.result.boot(now.saturating_sub(arrive), now);
                self.progress.completed.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed(why) => {
                self.result.fail(why, now);
                self.progress.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Machine `k`'s boot failed: it starts over after a pause if it has retries left, else it
    /// is done, failed.
    fn fail(&mut self, k: usize, now: u64, why: &'static str) {
        let m = &mut self.machines[k];
        if m.attempts >= self.cfg.boot_retries || m.step == Step::Done {
            return self.finish(k, now, Outcome::Failed(why));
        }
        m.attempts += 1;
        self.abandon_phase(k, now);
        self.release(k);
        let m = &mut self.machines[k];
        m.step = Step::Rebooting;
        m.retry_at = now + self.cfg.boot_retry_delay.as_micros() as u64;
        self.result.retry(why, now);
        self.schedule(k);
    }

    /// Starts round `stage` of DHCP for machine `k` (round 1: iPXE's, after the chainload).
    fn start_dhcp(&mut self, k: usize, stage: usize, now: u64) {
        let m = &mut self.machines[k];
        if stage != m.stage || m.step == Step::Rebooting {
            m.stage = stage;
            // A new transaction id per boot attempt (bits 25-27), so a late reply to an
            // earlier attempt is ignored.
            let xid = xid_of(m.index, stage) ^ ((m.attempts & 7) << 25);
            m.dhcp = dhcp::Client::new(m.dhcp.mac(), xid, self.relay);
        }
        m.step = Step::Dhcp;
        m.mark = now;
        let len = m.dhcp.start(now, &self.profiles[stage], &mut self.buf);
        self.send_dhcp(k, len);
        self.schedule(k);
    }

    /// The DHCP queue is readable: DHCP replies, and in L2 mode the machines' TFTP datagrams.
    fn on_dhcp_readable(&mut self) {
        // Taken out while its datagrams are handled (they borrow it), put back after.
        let Some(mut rx) = self.net.rx.take() else {
            return;
        };
        while let Ok(n) = rx.recv(Duration::ZERO) {
            if n == 0 {
                break;
            }
            let now = self.now();
            for i in 0..n {
                let (data, meta) = rx.get(i);
                // AF_XDP mode: another worker's machine's datagram goes to that worker.
                if let Some(x) = self.net.xdp.as_mut()
                    && !x.route(data, meta)
                {
                    continue;
                }
                self.on_datagram(now, data, meta);
            }
        }
        self.net.rx = Some(rx);
        if let Some(x) = self.net.xdp.as_mut() {
            x.ring();
        }
        self.flush_dhcp();
    }

    /// A datagram for this worker's machines: a DHCP reply, or in L2 mode a TFTP datagram to
    /// a claimed address.
    fn on_datagram(&mut self, now: u64, data: &[u8], meta: &bootstorm_io::RxMeta) {
        if self.net.link.is_none() || meta.dst.port() == 68 {
            self.on_dhcp_reply(now, data);
        } else if let Some(&k) = self.net.claimed.get(meta.dst.ip()) {
            self.on_machine_datagram(k, now, meta.src, meta.dst.port(), data);
        }
    }

    /// AF_XDP mode: what other workers' queues received for this worker's machines (all of
    /// it: the bell is edge-triggered).
    fn on_handed(&mut self) {
        let mut first = true;
        while let Some((data, meta)) = self.net.xdp.as_mut().and_then(|x| x.take_handed(first)) {
            first = false;
            if let Some(x) = self.net.xdp.as_mut() {
                x.learn(&meta);
            }
            // The clock read per datagram: this loop drains what arrives while it runs, so a
            // machine's next round may start (its mark set by a fresh reading, in after_fetch)
            // and its replies come in within one pass.
            let now = self.now();
            self.on_datagram(now, &data, &meta);
        }
        self.flush_dhcp();
    }

    /// L2 mode: a datagram for machine `k`'s TFTP download, sent to its port `to_port`.
    fn on_machine_datagram(
        &mut self,
        k: usize,
        now: u64,
        from: SocketAddrV4,
        to_port: u16,
        data: &[u8],
    ) {
        let Worker {
            machines, buf, net, ..
        } = self;
        let m = &mut machines[k];
        let mac = m.dhcp.mac();
        if let Some(Fetcher::TftpL2(dl, local)) = m.fetch.as_mut()
            && local.port() == to_port
        {
            if let Action::Send(to, n) = dl.on_packet(now, from, data, buf) {
                net.send_udp(mac, *local, to, &buf[..n]);
            }
            self.after_fetch(k);
        }
    }

    /// A DHCP reply: to the machine its xid names, if it is waiting for one.
    fn on_dhcp_reply(&mut self, now: u64, data: &[u8]) {
        if data.len() < 8 {
            return;
        }
        let xid = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let index = (xid & 0x00ff_ffff) as usize;
        let Some(k) = self.by_index.get(index).copied().flatten() else {
            return;
        };
        if self.machines[k].step != Step::Dhcp {
            return;
        }
        let stage = self.machines[k].stage;
        let len = self.machines[k]
            .dhcp
            .on_reply(now, &self.profiles[stage], data, &mut self.buf);
        self.send_dhcp(k, len);
        if self.machines[k].dhcp.lease().is_some() {
            self.start_fetch(k, now);
        } else {
            self.schedule(k);
        }
    }

    fn on_timer(&mut self, k: usize, now: u64) {
        match self.machines[k].step {
            Step::Dhcp => {
                let stage = self.machines[k].stage;
                let len = self.machines[k]
                    .dhcp
                    .on_timer(now, &self.profiles[stage], &mut self.buf);
                if let Some(f) = self.machines[k].dhcp.failure() {
                    let why = if stage == 0 { f.name() } else { f.ipxe_name() };
                    return self.fail(k, now, why);
                }
                if len > 0 {
                    self.result.resend("dhcp", now);
                }
                self.send_dhcp(k, len);
                self.schedule(k);
            }
            Step::Fetch => {
                let Worker {
                    machines,
                    buf,
                    tx,
                    net,
                    ..
                } = self;
                let mac = machines[k].dhcp.mac();
                match machines[k].fetch.as_mut() {
                    Some(Fetcher::Tftp(dl, sock)) => {
                        let a = dl.on_timer(now, buf);
                        if matches!(a, Action::Send(..)) {
                            self.result.resend("tftp", now);
                        }
                        send_one(sock, tx, buf, a);
                    }
                    Some(Fetcher::TftpL2(dl, local)) => {
                        if let Action::Send(to, n) = dl.on_timer(now, buf) {
                            self.result.resend("tftp", now);
                            net.send_udp(mac, *local, to, &buf[..n]);
                        }
                    }
                    Some(Fetcher::Http { get, .. }) => get.on_timer(now),
                    Some(Fetcher::Iscsi { sess, .. }) => sess.on_timer(now),
                    None => {}
                }
                self.after_fetch(k);
            }
            Step::Rebooting if self.cfg.tftp_only.is_some() => self.start_fetch(k, now),
            Step::Rebooting => self.start_dhcp(k, 0, now),
            _ => {}
        }
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next = 0usize;
        let limit = self.cfg.limit.as_micros() as u64;
        // AF_XDP mode: a worker whose machines are all done still drains its queue and hands
        // on what it receives for the others' until every machine is done (its socket closing
        // would leave its queue with none, and their replies would go nowhere).
        let all_done = |p: &Progress| {
            p.completed.load(Ordering::Relaxed) + p.failed.load(Ordering::Relaxed)
                >= self.cfg.clients as u64
        };
        while self.active > 0 || (self.net.xdp.is_some() && !all_done(self.progress)) {
            let now = self.now();
            let stopped = self.progress.stop.load(Ordering::Relaxed);
            if now >= limit || stopped {
                let why = if stopped {
                    "run stopped"
                } else {
                    "run time limit reached"
                };
                for k in 0..self.machines.len() {
                    self.finish(k, now, Outcome::Failed(why));
                }
                break;
            }
            while next < self.machines.len() && self.machines[next].arrive <= now {
                let k = next;
                next += 1;
                if self.cfg.tftp_only.is_some() {
                    self.start_fetch(k, now);
                } else {
                    self.start_dhcp(k, 0, now);
                }
            }
            self.flush_dhcp();
            while let Some(k) = self.timers.expired(now) {
                // Puts the machine's next deadline (moved later, or a retransmission's) back.
                self.on_timer(k, now);
            }
            self.flush_dhcp();
            let wake = [
                self.timers.next(),
                self.machines.get(next).map(|m| m.arrive),
                Some(limit),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(limit);
            let mut timeout = Duration::from_micros(wake.saturating_sub(self.now()).min(100_000));
            if self.net.tx.unsent() > 0 {
                // Frames still in an AF_XDP transmit ring: kicked on within a millisecond.
                timeout = timeout.min(Duration::from_millis(1));
            }
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            for ev in events.iter() {
                match ev.token() {
                    DHCP_TOKEN => self.on_dhcp_readable(),
                    xdp::HANDOFF_TOKEN => self.on_handed(),
                    xdp::ARP_TOKEN => {
                        if let Some(x) = self.net.xdp.as_mut() {
                            x.serve_arp();
                        }
                    }
                    Token(k) => self.on_fetch_event(k, ev.is_writable()),
                }
            }
        }
        Ok(())
    }
}

fn send_one(sock: &UdpSocket4, tx: &mut SendBatch, buf: &[u8], a: Action) {
    if let Action::Send(to, len) = a {
        tx.next_buf()[..len].copy_from_slice(&buf[..len]);
        tx.commit(len, to, 0, Ipv4Addr::UNSPECIFIED);
        let _ = sock.send_batch(tx);
    }
}

/// Pins the calling thread to one CPU.
fn pin_to(cpu: usize) -> anyhow::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)
        .map_err(|e| anyhow::anyhow!("--pin {cpu}: {e}"))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| anyhow::anyhow!("pinning a worker to CPU {cpu}: {e}"))
}

/// Runs the whole storm; returns the workers' results merged.
pub fn run(cfg: &Config, progress: &Progress) -> anyhow::Result<WorkerResult> {
    anyhow::ensure!(
        cfg.interface.is_some() || !cfg.relays.is_empty(),
        "no relay address and no interface"
    );
    for (i, r) in cfg.relays.iter().enumerate() {
        // Two workers on one address would each get the other's replies.
        anyhow::ensure!(
            !cfg.relays[..i].contains(r),
            "relay address {r} given twice"
        );
    }
    anyhow::ensure!(cfg.clients < 1 << 24, "at most 16,777,215 machines");
    anyhow::ensure!(
        !cfg.xdp || cfg.interface.is_some(),
        "AF_XDP mode needs an interface"
    );
    // AF_XDP mode: the program and every queue's socket before any worker starts (the
    // program is detached when `opened` goes, after the workers).
    let mut opened = if cfg.xdp { Some(xdp::open(cfg)?) } else { None };
    let mut nets: Vec<Option<Net>> = match opened.as_mut() {
        Some(o) => o.nets.drain(..).map(Some).collect(),
        None => (0..cfg.workers()).map(|_| None).collect(),
    };
    let arrive = arrivals(cfg.arrival, cfg.clients, 0x5eed_b007);
    let epoch = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..nets.len())
            .map(|w| {
                let arrive = &arrive;
                let cpu = (!cfg.pin.is_empty()).then(|| cfg.pin[w % cfg.pin.len()]);
                let net = nets[w].take();
                std::thread::Builder::new()
                    .name(format!("loadgen-{w}"))
                    .spawn_scoped(s, move || {
                        if let Some(cpu) = cpu {
                            pin_to(cpu)?;
                        }
                        run_worker(cfg, w, arrive, epoch, progress, net)
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut all = WorkerResult::new();
        for h in handles {
            all.merge(
                &h.join()
                    .map_err(|_| anyhow::anyhow!("a worker panicked"))??,
            );
        }
        if let Some(o) = &opened {
            eprintln!("{}", o.summary());
        }
        Ok(all)
    })
}
