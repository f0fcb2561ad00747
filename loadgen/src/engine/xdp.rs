//! AF_XDP mode: L2 mode with the machines' frames in and out through AF_XDP sockets
//! (`bootstorm_xdp`), one worker per receive queue of the interface, so the load generator costs
//! a fraction of what a raw socket does and can offer more than a server answers.
//!
//! - One XDP program on the interface steers UDP to port 68 (DHCP replies) and to the machines'
//!   TFTP ports ([`tftp_port`]) to the queue's socket, whatever the destination address (the
//!   machines' leased addresses change all the time); everything else (ARP above all) passes to
//!   the kernel, where the frame driver's raw socket, read by worker 0, answers ARP for the
//!   addresses the machines claimed.
//! - The machines send from 0.0.0.0 (DHCP) or their leased address, from their own MACs: the
//!   driver's link is told of no address of its own.
//! - A reply arrives on the queue the server sent it to, not necessarily its machine's worker:
//!   a datagram for another worker's machine is handed to it (a lock-free queue and an eventfd
//!   its poll watches). The owner of a DHCP reply is named by its xid (the machine's index), of
//!   a TFTP datagram by its destination port.
//! - Unicasts go to the link-layer address the destination was last heard from (the server's
//!   replies teach it); one not heard from yet goes as a raw frame, which resolves it by ARP.

use super::*;
use bootstorm_io::RxMeta;
use bootstorm_io::frame::{FrameRx, FrameTx};
use bootstorm_net::wake::EventFd;
use bootstorm_xdp::{LinkInfo, QueueStats, Steer, SteerConfig};
use crossbeam_queue::ArrayQueue;

/// Datagrams a worker's hand-off queue holds; past that (the owner far behind) they are
/// dropped, as a full receive ring would drop them, and the machines retransmit.
const HANDOFF_CAPACITY: usize = 16_384;

/// The first TFTP port of the machines.
pub(super) const TFTP_PORT_BASE: u16 = 49152;
/// TFTP ports the machines use (49152-65151).
const TFTP_PORTS: u16 = 16_000;

/// The TFTP port of a machine of worker `w` of `workers` on its `attempt`-th download: port
/// minus base is `w` modulo the worker count, so the port names the worker that owns the
/// download (one worker: 49152 + attempt).
pub(super) fn tftp_port(w: usize, workers: usize, attempt: u32) -> u16 {
    let workers = workers.max(1) as u32;
    let slots = u32::from(TFTP_PORTS) / workers;
    TFTP_PORT_BASE + ((attempt % slots) * workers + w as u32) as u16
}

/// The worker that owns a datagram to `port` carrying `data`, of `workers`: a DHCP reply's by
/// its xid (machine `i` is worker `i % workers`'s), a TFTP datagram's by its port.
pub(super) fn owner(port: u16, data: &[u8], workers: usize) -> Option<usize> {
    if port == 68 {
        let xid = u32::from_be_bytes(data.get(4..8)?.try_into().ok()?);
        Some((xid & 0x00ff_ffff) as usize % workers)
    } else {
        let off = port.checked_sub(TFTP_PORT_BASE)?;
        (off < TFTP_PORTS).then_some(usize::from(off) % workers)
    }
}

/// A worker's inbox of datagrams other workers' queues received for its machines.
pub(super) struct Handoff {
    queue: ArrayQueue<(Vec<u8>, RxMeta)>,
    bell: EventFd,
    /// Datagrams dropped because the queue was full.
    dropped: AtomicU64,
}

/// A worker's part of AF_XDP mode.
pub(super) struct XdpShare {
    index: usize,
    inboxes: Arc<[Handoff]>,
    /// Link-layer addresses heard from on this worker's queue.
    neigh: HashMap<Ipv4Addr, [u8; 6]>,
    /// For unicasts to a neighbour not heard from: raw frames, which ARP first.
    frames: FrameTx,
    /// Worker 0: the raw socket that answers ARP.
    pub(super) arp: Option<FrameRx>,
    /// Owners handed something in this batch (their bells ring once, after it).
    to_ring: Vec<bool>,
}

/// The token of a worker's hand-off inbox, and of worker 0's ARP socket.
pub(super) const HANDOFF_TOKEN: Token = Token(usize::MAX - 1);
pub(super) const ARP_TOKEN: Token = Token(usize::MAX - 2);

/// What AF_XDP mode holds for the whole run: the program (detached when this is dropped) and
/// one net per worker.
pub(super) struct Opened {
    steer: Steer,
    pub(super) nets: Vec<Net>,
    queues: Vec<Arc<QueueStats>>,
    inboxes: Arc<[Handoff]>,
}

impl Opened {
    /// The fast path's counters after a run, one line (printed to stderr): what the program
    /// steered, and per queue what was received, sent and dropped.
    pub(super) fn summary(&self) -> String {
        let c = self.steer.counters();
        let mode = self.steer.mode().map_or("detached", |m| m.name());
        let mut s = format!(
            "AF_XDP ({mode}): program redirected {} passed {} malformed {} no-socket {}",
            c.redirected, c.passed, c.malformed, c.no_socket
        );
        for (q, inbox) in self.queues.iter().zip(self.inboxes.iter()) {
            let k = q.kernel();
            let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
            s += &format!(
                "; queue {}: rx {} tx {} rx-malformed {} rx-dropped {} rx-ring-full {} fill-empty {} \
                 tx-full {} tx-unresolved {} tx-stalled {} hand-off-dropped {}",
                q.queue,
                n(&q.rx_packets),
                n(&q.tx_packets),
                n(&q.rx_malformed),
                k.rx_dropped,
                k.rx_ring_full,
                k.fill_ring_empty,
                n(&q.tx_full),
                n(&q.tx_unresolved),
                n(&q.tx_stalled),
                n(&inbox.dropped),
            );
        }
        s
    }
}

/// Loads and attaches the program on `cfg.interface`, and opens a queue pair per worker.
pub(super) fn open(cfg: &Config) -> anyhow::Result<Opened> {
    let name = cfg
        .interface
        .as_deref()
        .context("AF_XDP mode needs --interface")?;
    let workers = cfg.workers();
    let mut info = LinkInfo::of(name).with_context(|| format!("interface {name}"))?;
    // The machines have addresses of their own (or none yet), never the interface's.
    info.addresses.clear();
    info.vlans.clear();
    let link = Arc::new(info);
    let mut steer = Steer::load(&SteerConfig::default())
        .map_err(|e| anyhow::anyhow!("loading the XDP program: {e}"))?;
    let ports = std::iter::once(68).chain(TFTP_PORT_BASE..TFTP_PORT_BASE + TFTP_PORTS);
    for p in ports {
        steer
            .set_port(p, true)
            .map_err(|e| anyhow::anyhow!("steering port {p}: {e}"))?;
    }
    steer
        .attach(name)
        .map_err(|e| anyhow::anyhow!("attaching the XDP program to {name}: {e}"))?;
    let (arp_rx, _, frames) = bootstorm_io::frame::open(name)
        .map_err(|e| anyhow::anyhow!("opening a raw socket on {name}: {e}"))?;
    let mut arp_rx = Some(arp_rx);
    let inboxes: Arc<[Handoff]> = (0..workers)
        .map(|_| {
            Ok(Handoff {
                queue: ArrayQueue::new(HANDOFF_CAPACITY),
                bell: EventFd::new()?,
                dropped: AtomicU64::new(0),
            })
        })
        .collect::<std::io::Result<Vec<_>>>()?
        .into();
    let mut nets = Vec::with_capacity(workers);
    let mut queues = Vec::with_capacity(workers);
    for q in 0..workers {
        let (rx, tx, stats) = bootstorm_xdp::open(
            link.clone(),
            q as u32,
            &mut steer,
            68,
            bootstorm_xdp::RX_FRAMES,
        )
        .map_err(|e| anyhow::anyhow!("AF_XDP socket on {name} queue {q}: {e}"))?;
        nets.push(Net {
            rx: Some(Box::new(rx)),
            tx: Box::new(tx),
            link: Some(frames.clone()),
            claimed: HashMap::new(),
            xdp: Some(XdpShare {
                index: q,
                inboxes: inboxes.clone(),
                neigh: HashMap::new(),
                frames: frames.tx(),
                arp: if q == 0 { arp_rx.take() } else { None },
                to_ring: vec![false; workers],
            }),
        });
        queues.push(stats);
    }
    Ok(Opened {
        steer,
        nets,
        queues,
        inboxes,
    })
}

impl XdpShare {
    /// Registers the inbox's bell (and worker 0's ARP socket) with `poll`.
    pub(super) fn register(&self, poll: &Poll) -> std::io::Result<()> {
        let bell = self.inboxes[self.index].bell.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&bell), HANDOFF_TOKEN, Interest::READABLE)?;
        if let Some(fd) = self.arp.as_ref().and_then(|a| a.raw_fd()) {
            poll.registry()
                .register(&mut SourceFd(&fd), ARP_TOKEN, Interest::READABLE)?;
        }
        Ok(())
    }

    /// Where a datagram's sender is on the link.
    pub(super) fn learn(&mut self, meta: &RxMeta) {
        if let Some(mac) = meta.l2_src
            && !meta.src.ip().is_unspecified()
        {
            self.neigh.insert(*meta.src.ip(), mac);
        }
    }

    /// True if a received datagram is for this worker (learning where its sender is); else it
    /// is another worker's (handed to it) or nobody's.
    pub(super) fn route(&mut self, data: &[u8], meta: &RxMeta) -> bool {
        self.learn(meta);
        let Some(o) = owner(meta.dst.port(), data, self.inboxes.len()) else {
            return false;
        };
        if o == self.index {
            return true;
        }
        if self.inboxes[o].queue.push((data.to_vec(), *meta)).is_err() {
            self.inboxes[o].dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.to_ring[o] = true;
        }
        false
    }

    /// After a batch: the owners handed something learn of it.
    pub(super) fn ring(&mut self) {
        for (o, r) in self.to_ring.iter_mut().enumerate() {
            if std::mem::take(r) {
                self.inboxes[o].bell.notify();
            }
        }
    }

    /// The next datagram handed to this worker (its bell is drained first, so one handed after
    /// the inbox looked empty rings again).
    pub(super) fn take_handed(&self, first: bool) -> Option<(Vec<u8>, RxMeta)> {
        let me = &self.inboxes[self.index];
        if first {
            me.bell.drain();
        }
        me.queue.pop()
    }

    /// The link-layer address of `ip` if it was heard from on this queue.
    pub(super) fn neighbour(&self, ip: &Ipv4Addr) -> Option<[u8; 6]> {
        self.neigh.get(ip).copied()
    }

    /// Sends a unicast to a neighbour not heard from (the raw socket ARPs for it first).
    pub(super) fn push_unresolved(&mut self, payload: &[u8], to: &TxMeta) {
        if !self.frames.push(payload, to) {
            let _ = self.frames.flush();
            let _ = self.frames.push(payload, to);
        }
    }

    pub(super) fn flush(&mut self) {
        if !self.frames.is_empty() {
            let _ = self.frames.flush();
        }
    }

    /// Worker 0: reads the raw socket, which answers ARP for the claimed addresses as it reads
    /// (what else it hears was steered past it or is not the machines').
    pub(super) fn serve_arp(&mut self) {
        if let Some(a) = self.arp.as_mut() {
            while matches!(a.recv(Duration::ZERO), Ok(n) if n > 0) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tftp_port_names_its_worker_and_a_dhcp_xid_its_machine() {
        for workers in 1..=4 {
            for w in 0..workers {
                for attempt in [0, 1, 7, 7999, 8000, 15_999, 16_000, u32::MAX] {
                    let p = tftp_port(w, workers, attempt);
                    assert!(
                        (TFTP_PORT_BASE..TFTP_PORT_BASE + TFTP_PORTS).contains(&p),
                        "{p}"
                    );
                    assert_eq!(owner(p, &[], workers), Some(w), "port {p}");
                }
            }
        }
        // One worker: the ports of before (49152 + attempt).
        assert_eq!(tftp_port(0, 1, 3), 49155);
        let mut reply = vec![0u8; 240];
        reply[4..8].copy_from_slice(&(0x0100_0000u32 | 7).to_be_bytes());
        assert_eq!(owner(68, &reply, 2), Some(1));
        assert_eq!(owner(68, &reply, 7), Some(0));
        assert_eq!(owner(68, &reply[..6], 2), None);
        assert_eq!(owner(69, &reply, 2), None);
        assert_eq!(owner(65_200, &reply, 2), None);
    }
}
