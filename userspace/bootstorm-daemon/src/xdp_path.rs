//! DHCP on the XDP fast path: per configured interface the XDP program is loaded and attached
//! (`bootstorm_xdp::Steer`), port 67 is steered, and one AF_XDP socket per receive queue is
//! opened; each queue then gets a DHCP worker (the same `dhcp_worker::run` as on sockets),
//! pinned to a CPU. The queues of one interface form one group: a broadcast that lands on one
//! queue is handed to the worker that owns its client, as on the socket path.
//!
//! `io = "auto"` tries this first and falls back to sockets with the reason in the log;
//! `io = "xdp"` fails to start instead.

use crate::config::Settings;
use bootstorm_xdp::{Counters, LinkInfo, Mode, QueueStats, Steer, SteerConfig, XdpRx, XdpTx};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// One interface on the fast path.
pub struct FastLink {
    /// The interface.
    pub name: String,
    /// How the program is attached.
    pub mode: Mode,
    /// The program (its link goes when the last holder lets go).
    pub steer: Arc<Mutex<Steer>>,
    /// Its queues' counters.
    pub queues: Vec<Arc<QueueStats>>,
}

/// The fast path's interfaces.
pub struct FastPath {
    /// One per interface.
    pub links: Vec<FastLink>,
    /// The counters of TFTP on the fast path, when it serves TFTP.
    pub tftp: Option<Arc<crate::tftpd::TftpStats>>,
}

/// The queues opened, per interface.
pub type Groups = Vec<Vec<(XdpRx, XdpTx)>>;

/// What the program is told to steer for an interface: our addresses on it, their subnets'
/// broadcasts, the listen address and the subnets' server identifiers.
fn our_addresses(link: &LinkInfo, settings: &Settings) -> Vec<Ipv4Addr> {
    let mut v = Vec::new();
    for (a, m) in link.all_addresses() {
        v.push(a);
        v.extend(bootstorm_xdp::subnet_broadcast(a, m));
    }
    if !settings.listen.ip().is_unspecified() {
        v.push(*settings.listen.ip());
    }
    v.extend(settings.dhcp.subnets.iter().map(|s| s.server_id));
    v.sort();
    v.dedup();
    v
}

/// Attaches to every interface of `[server] interfaces` and opens its queues; the first
/// failure says why (and what is already attached is detached again).
pub fn open(settings: &Settings, tftp_port: Option<u16>) -> Result<(FastPath, Groups), String> {
    if settings.interfaces.is_empty() {
        return Err("XDP needs [server] interfaces (it attaches to named interfaces)".into());
    }
    let port = settings.listen.port();
    let mut links = Vec::new();
    let mut groups = Vec::new();
    for name in &settings.interfaces {
        let link = Arc::new(LinkInfo::of(name).map_err(|e| format!("interface {name}: {e}"))?);
        let x = &settings.xdp;
        let cfg = SteerConfig {
            addresses: x.check_destination.then(|| our_addresses(&link, settings)),
            mac_rate: x.mac_rate.0,
            mac_burst: x.mac_rate.1,
            relay_rate: x.relay_rate.0,
            relay_burst: x.relay_rate.1,
            retransmit_window: x.retransmit_window,
            // Tagged frames are ours to answer when a VLAN device of the kernel's stands for
            // their VLAN on this interface (its subnet and addresses).
            vlan: !link.vlans.is_empty(),
        };
        let mut steer = Steer::load(&cfg).map_err(|e| e.to_string())?;
        steer.set_port(port, true).map_err(|e| e.to_string())?;
        if let Some(p) = tftp_port {
            steer.set_port(p, true).map_err(|e| e.to_string())?;
        }
        let mode = steer.attach(name).map_err(|e| e.to_string())?;
        let mut queues = Vec::new();
        let mut group = Vec::new();
        for q in 0..LinkInfo::rx_queues(name) {
            let (rx, tx, stats) =
                bootstorm_xdp::open(link.clone(), q, &mut steer, port, x.rx_frames)
                    .map_err(|e| e.to_string())?;
            queues.push(stats);
            group.push((rx, tx));
        }
        let vlans: Vec<u16> = link.vlans.iter().map(|v| v.id).collect();
        tracing::info!(interface = %name, mode = mode.name(), queues = queues.len(), vlans = ?vlans,
            zero_copy = queues.iter().all(|q| q.zero_copy.load(Ordering::Relaxed)),
            "XDP program attached, DHCP steered to AF_XDP sockets");
        links.push(FastLink {
            name: name.clone(),
            mode,
            steer: Arc::new(Mutex::new(steer)),
            queues,
        });
        groups.push(group);
    }
    Ok((FastPath { links, tftp: None }, groups))
}

impl FastPath {
    /// The fast path's part of `bootstorm stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        let links: Vec<_> = self
            .links
            .iter()
            .map(|l| {
                let c: Counters = l.steer.lock().map(|s| s.counters()).unwrap_or_default();
                let queues: Vec<_> = l
                    .queues
                    .iter()
                    .map(|q| {
                        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                        let k = q.kernel();
                        serde_json::json!({
                            "queue": q.queue,
                            "zero_copy": q.zero_copy.load(Ordering::Relaxed),
                            "rx_packets": g(&q.rx_packets), "rx_malformed": g(&q.rx_malformed),
                            "tx_packets": g(&q.tx_packets), "tx_ring_full": g(&q.tx_full),
                            "tx_unresolved": g(&q.tx_unresolved), "tx_stalled": g(&q.tx_stalled),
                            "rx_dropped": k.rx_dropped, "rx_ring_full": k.rx_ring_full,
                            "fill_ring_empty": k.fill_ring_empty, "tx_invalid": k.tx_invalid,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "interface": l.name,
                    "mode": l.mode.name(),
                    "program": {
                        "redirected": c.redirected, "passed": c.passed,
                        "malformed": c.malformed, "rate_limited": c.rate_limited,
                        "retransmits": c.retransmits, "no_socket": c.no_socket,
                    },
                    "queues": queues,
                })
            })
            .collect();
        let mut v = serde_json::json!({ "links": links });
        if let Some(t) = &self.tftp {
            v["tftp"] = crate::tftpd::stats_json(t);
        }
        v
    }
}
