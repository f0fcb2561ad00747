//! The run: worker threads, each a DHCP relay agent with its own address, driving its share of
//! the simulated machines through DHCP and the boot file download, with mio over the relay's
//! socket and one socket per download, a deadline heap with one entry per machine, batched
//! receives (`recvmmsg`) on the relay socket and UDP GRO on the downloads.

use crate::dhcp;
use crate::profile::{Fetch, Profile};
use crate::report::{Outcome, Phase, WorkerResult};
use crate::tftp::{self, Action, Download, Expect};
use bootstorm_net::{GroBuf, RecvBatch, SendBatch, SocketOptions, UdpSocket4};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When machines power on.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// All at once.
    Storm,
    /// Evenly over this long.
    Ramp(#[serde(serialize_with = "secs")] Duration),
    /// A Poisson process of this many machines per second.
    Poisson(f64),
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl std::str::FromStr for Arrival {
    type Err = String;
    fn from_str(s: &str) -> Result<Arrival, String> {
        let bad = || format!("{s:?}: expected storm, ramp:SECONDS or poisson:PER_SECOND");
        match s.split_once(':') {
            None if s == "storm" => Ok(Arrival::Storm),
            Some(("ramp", v)) => v
                .trim_end_matches('s')
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0 && *v < 86_400.0)
                .map(|v| Arrival::Ramp(Duration::from_secs_f64(v)))
                .ok_or_else(bad),
            Some(("poisson", v)) => v
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .map(Arrival::Poisson)
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

/// A run's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The DHCP server (relayed to, port `server_port`).
    pub server: Ipv4Addr,
    /// Its port (67).
    pub server_port: u16,
    /// One worker per address: each is a relay agent (giaddr) bound to port 67 there.
    pub relays: Vec<Ipv4Addr>,
    /// Machines.
    pub clients: usize,
    /// When they power on.
    pub arrival: Arrival,
    /// What they are.
    pub profile: Profile,
    /// What the boot file must be.
    pub expect: Expect,
    /// MAC of machine 0; machine i has this plus i.
    pub mac_base: [u8; 6],
    /// The whole run ends after this, whatever is still running (counted as failed).
    pub limit: Duration,
    /// TFTP port of the boot server (69).
    pub tftp_port: u16,
    /// Skip DHCP: every machine fetches this file from `server` at once (to measure TFTP
    /// servers alone, such as tftpd-hpa).
    pub tftp_only: Option<String>,
}

/// Arrival times in microseconds from the start, one per machine, for `n` machines.
pub fn arrivals(a: Arrival, n: usize, seed: u64) -> Vec<u64> {
    match a {
        Arrival::Storm => vec![0; n],
        Arrival::Ramp(d) => (0..n)
            .map(|i| (d.as_micros() as u64).saturating_mul(i as u64) / n.max(1) as u64)
            .collect(),
        Arrival::Poisson(rate) => {
            // xorshift64*: reproducible, no dependency, plenty for inter-arrival times.
            let mut x = seed | 1;
            let mut t = 0f64;
            (0..n)
                .map(|_| {
                    x ^= x >> 12;
                    x ^= x << 25;
                    x ^= x >> 27;
                    let u =
                        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
                    t += -(1.0 - u).ln() / rate;
                    (t * 1e6) as u64
                })
                .collect()
        }
    }
}

/// The MAC of machine `i`.
pub fn mac_of(base: [u8; 6], i: usize) -> [u8; 6] {
    let b = u64::from_be_bytes([0, 0, base[0], base[1], base[2], base[3], base[4], base[5]]);
    let v = (b + i as u64).to_be_bytes();
    [v[2], v[3], v[4], v[5], v[6], v[7]]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Waiting,
    Dhcp,
    Tftp,
    Done,
}

struct Machine {
    index: usize,
    arrive: u64,
    phase: Step,
    dhcp: dhcp::Client,
    dl: Option<(Download, UdpSocket4)>,
    dhcp_done: u64,
    /// The deadline the heap holds for this machine, if any.
    scheduled: Option<u64>,
}

impl Machine {
    fn deadline(&self) -> Option<u64> {
        match self.phase {
            Step::Dhcp => self.dhcp.deadline(),
            Step::Tftp => self.dl.as_ref().and_then(|(d, _)| d.deadline()),
            _ => None,
        }
    }
}

/// Progress counters shared with the progress line.
#[derive(Default, Debug)]
pub struct Progress {
    /// Machines done.
    pub completed: AtomicU64,
    /// Machines that failed.
    pub failed: AtomicU64,
}

const DHCP_TOKEN: Token = Token(usize::MAX);

struct Worker<'a> {
    cfg: &'a Config,
    relay: Ipv4Addr,
    epoch: Instant,
    poll: Poll,
    dhcp_sock: UdpSocket4,
    machines: Vec<Machine>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    tx: SendBatch,
    gro: GroBuf,
    buf: Vec<u8>,
    result: WorkerResult,
    progress: &'a Progress,
    active: usize,
    /// Machine index -> its place in `machines`.
    by_index: Vec<Option<usize>>,
}

/// Runs worker `w` of `cfg.relays.len()`: the machines whose index modulo the worker count is
/// `w`.
pub fn run_worker(
    cfg: &Config,
    w: usize,
    arrive: &[u64],
    epoch: Instant,
    progress: &Progress,
) -> anyhow::Result<WorkerResult> {
    let relay = cfg.relays[w];
    let workers = cfg.relays.len();
    let dhcp_sock = UdpSocket4::bind(&SocketOptions {
        bind: SocketAddrV4::new(relay, 67),
        interface: None,
        reuse_port: false,
        recv_timeout: Duration::ZERO,
    })
    .map_err(|e| anyhow::anyhow!("binding the relay address {relay}:67: {e}"))?;
    dhcp_sock.set_nonblocking(true)?;
    let poll = Poll::new()?;
    poll.registry().register(
        &mut SourceFd(&dhcp_sock.as_raw_fd()),
        DHCP_TOKEN,
        Interest::READABLE,
    )?;
    let mut machines: Vec<Machine> = (w..cfg.clients)
        .step_by(workers)
        .map(|i| Machine {
            index: i,
            arrive: arrive[i],
            phase: Step::Waiting,
            dhcp: dhcp::Client::new(mac_of(cfg.mac_base, i), xid_of(i), relay),
            dl: None,
            dhcp_done: 0,
            scheduled: None,
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
        relay,
        epoch,
        poll,
        dhcp_sock,
        heap: BinaryHeap::new(),
        tx: SendBatch::default(),
        gro: GroBuf::default(),
        buf: vec![0u8; 2048],
        result: WorkerResult::new(),
        progress,
        active: machines.len(),
        machines,
    };
    wk.run()?;
    Ok(wk.result)
}

/// Transaction id of machine `i` (its index in the low 24 bits; a NAK restart changes the top).
fn xid_of(i: usize) -> u32 {
    (i as u32) & 0x00ff_ffff
}

impl Worker<'_> {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn schedule(&mut self, k: usize) {
        let m = &mut self.machines[k];
        if let Some(d) = m.deadline()
            && m.scheduled.is_none_or(|s| d < s)
        {
            m.scheduled = Some(d);
            self.heap.push(Reverse((d, k)));
        }
    }

    fn send_dhcp(&mut self, len: usize) {
        if len == 0 {
            return;
        }
        let dst = SocketAddrV4::new(self.cfg.server, self.cfg.server_port);
        self.tx.next_buf()[..len].copy_from_slice(&self.buf[..len]);
        self.tx.commit(len, dst, 0, Ipv4Addr::UNSPECIFIED);
        if self.tx.is_full() {
            let _ = self.dhcp_sock.send_batch(&mut self.tx);
        }
    }

    fn flush_dhcp(&mut self) {
        if !self.tx.is_empty() {
            let _ = self.dhcp_sock.send_batch(&mut self.tx);
        }
    }

    fn finish(&mut self, k: usize, now: u64, outcome: Outcome) {
        let m = &mut self.machines[k];
        if m.phase == Step::Done {
            return;
        }
        m.phase = Step::Done;
        if let Some((_, sock)) = m.dl.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&sock.as_raw_fd()));
        }
        self.active -= 1;
        match outcome {
            Outcome::Ok => {
                self.result.boot(now - m.arrive, now);
                self.progress.completed.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed(why) => {
                self.result.fail(why);
                self.progress.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn start_download(&mut self, k: usize, now: u64) {
        let (file, next_server) = match &self.cfg.tftp_only {
            Some(file) => (Some(file.clone()), self.cfg.server),
            None => {
                let lease = self.machines[k].dhcp.lease().cloned();
                let Some(lease) = lease else { return };
                self.result
                    .record(Phase::Dhcp, now - self.machines[k].arrive);
                (lease.boot_file, lease.next_server)
            }
        };
        self.machines[k].dhcp_done = now;
        if self.cfg.profile.fetch == Fetch::None {
            return self.finish(k, now, Outcome::Ok);
        }
        let Some(file) = file.filter(|f| !f.is_empty()) else {
            return self.finish(k, now, Outcome::Failed(tftp::Failure::NoBootFile.name()));
        };
        let sock = match UdpSocket4::bind(&SocketOptions {
            bind: SocketAddrV4::new(self.relay, 0),
            interface: None,
            reuse_port: false,
            recv_timeout: Duration::ZERO,
        }) {
            Ok(s) if s.set_nonblocking(true).is_ok() => {
                // Optional: without it (kernels before 5.0) datagrams come one by one.
                let _ = bootstorm_net::set_udp_gro(&s, true);
                s
            }
            _ => return self.finish(k, now, Outcome::Failed(tftp::Failure::Socket.name())),
        };
        if self
            .poll
            .registry()
            .register(
                &mut SourceFd(&sock.as_raw_fd()),
                Token(k),
                Interest::READABLE,
            )
            .is_err()
        {
            return self.finish(k, now, Outcome::Failed(tftp::Failure::Socket.name()));
        }
        let server = SocketAddrV4::new(next_server, self.cfg.tftp_port);
        let mut dl = Download::new(&file, server, &self.cfg.profile, self.cfg.expect.clone());
        let a = dl.start(now, &self.cfg.profile, &mut self.buf);
        send_one(&sock, &mut self.tx, &self.buf, a);
        let m = &mut self.machines[k];
        m.phase = Step::Tftp;
        m.dl = Some((dl, sock));
        self.schedule(k);
    }

    fn on_dhcp_readable(&mut self, rx: &mut RecvBatch) {
        loop {
            let n = self.dhcp_sock.recv_batch(rx).unwrap_or(0);
            if n == 0 {
                break;
            }
            let now = self.now();
            for i in 0..n {
                let (data, _) = rx.get(i);
                if data.len() < 8 {
                    continue;
                }
                let xid = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                let index = (xid & 0x00ff_ffff) as usize;
                let Some(k) = self.by_index.get(index).copied().flatten() else {
                    continue;
                };
                if self.machines[k].phase != Step::Dhcp {
                    continue;
                }
                let len =
                    self.machines[k]
                        .dhcp
                        .on_reply(now, &self.cfg.profile, data, &mut self.buf);
                self.send_dhcp(len);
                if self.machines[k].dhcp.lease().is_some() {
                    self.start_download(k, now);
                } else {
                    self.schedule(k);
                }
            }
        }
        self.flush_dhcp();
    }

    fn on_tftp_readable(&mut self, k: usize) {
        let Worker {
            machines,
            buf,
            tx,
            gro,
            ..
        } = self;
        let m = &mut machines[k];
        let Some((dl, sock)) = m.dl.as_mut() else {
            return;
        };
        // With UDP GRO a whole window sent as one GSO burst arrives in one receive.
        while let Ok(Some(r)) = sock.recv_gro(gro) {
            let now = self.epoch.elapsed().as_micros() as u64;
            for d in gro.datagrams(&r) {
                let a = dl.on_packet(now, r.src, d, buf);
                send_one(sock, tx, buf, a);
            }
            if dl.result().is_some() {
                break;
            }
        }
        self.after_tftp(k);
    }

    fn after_tftp(&mut self, k: usize) {
        let now = self.now();
        let r = self.machines[k].dl.as_ref().and_then(|(d, _)| d.result());
        match r {
            Some(Ok(_)) => {
                self.result
                    .record(Phase::Tftp, now - self.machines[k].dhcp_done);
                self.finish(k, now, Outcome::Ok);
            }
            Some(Err(f)) => self.finish(k, now, Outcome::Failed(f.name())),
            None => self.schedule(k),
        }
    }

    fn on_timer(&mut self, k: usize, now: u64) {
        match self.machines[k].phase {
            Step::Dhcp => {
                let len = self.machines[k]
                    .dhcp
                    .on_timer(now, &self.cfg.profile, &mut self.buf);
                if let Some(f) = self.machines[k].dhcp.failure() {
                    return self.finish(k, now, Outcome::Failed(f.name()));
                }
                self.send_dhcp(len);
                self.schedule(k);
            }
            Step::Tftp => {
                let Worker {
                    machines, buf, tx, ..
                } = self;
                if let Some((dl, sock)) = machines[k].dl.as_mut() {
                    let a = dl.on_timer(now, buf);
                    send_one(sock, tx, buf, a);
                }
                self.after_tftp(k);
            }
            _ => {}
        }
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut rx = RecvBatch::default();
        let mut next = 0usize;
        let limit = self.cfg.limit.as_micros() as u64;
        while self.active > 0 {
            let now = self.now();
            if now >= limit {
                for k in 0..self.machines.len() {
                    self.finish(k, now, Outcome::Failed("run time limit reached"));
                }
                break;
            }
            while next < self.machines.len() && self.machines[next].arrive <= now {
                let k = next;
                next += 1;
                if self.cfg.tftp_only.is_some() {
                    self.start_download(k, now);
                    continue;
                }
                self.machines[k].phase = Step::Dhcp;
                let len = self.machines[k]
                    .dhcp
                    .start(now, &self.cfg.profile, &mut self.buf);
                self.send_dhcp(len);
                self.schedule(k);
            }
            self.flush_dhcp();
            while let Some(&Reverse((d, k))) = self.heap.peek() {
                if d > now {
                    break;
                }
                self.heap.pop();
                self.machines[k].scheduled = None;
                // Puts the machine's next deadline (moved later, or a retransmission's) back
                // on the heap.
                self.on_timer(k, now);
            }
            self.flush_dhcp();
            let wake = [
                self.heap.peek().map(|r| r.0.0),
                self.machines.get(next).map(|m| m.arrive),
                Some(limit),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(limit);
            let timeout = Duration::from_micros(wake.saturating_sub(self.now()).min(100_000));
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            for ev in events.iter() {
                match ev.token() {
                    DHCP_TOKEN => self.on_dhcp_readable(&mut rx),
                    Token(k) => self.on_tftp_readable(k),
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

/// Runs the whole storm; returns each worker's result.
pub fn run(cfg: &Config, progress: Arc<Progress>) -> anyhow::Result<Vec<WorkerResult>> {
    anyhow::ensure!(!cfg.relays.is_empty(), "no relay address");
    for (i, r) in cfg.relays.iter().enumerate() {
        // Two workers on one address would each get the other's replies.
        anyhow::ensure!(
            !cfg.relays[..i].contains(r),
            "relay address {r} given twice"
        );
    }
    anyhow::ensure!(cfg.clients < 1 << 24, "at most 16,777,215 machines");
    let arrive = arrivals(cfg.arrival, cfg.clients, 0x5eed_b007);
    let epoch = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.relays.len())
            .map(|w| {
                let (arrive, progress) = (&arrive, &*progress);
                std::thread::Builder::new()
                    .name(format!("loadgen-{w}"))
                    .spawn_scoped(s, move || run_worker(cfg, w, arrive, epoch, progress))
            })
            .collect::<Result<_, _>>()?;
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?)
            .collect()
    })
}
