//! What a run is: its configuration (servers, relays or an interface, machines, profiles,
//! limits), when machines power on, and each machine's MAC.

use super::*;

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
    /// L2 mode instead: the machines are on this interface, as firmware is (one worker, raw
    /// frames; `relays` unused).
    pub interface: Option<String>,
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
    /// HTTP port for boot files named without a URL (profiles that fetch over HTTP).
    pub http_port: u16,
    /// After the boot file, each machine does DHCP again as iPXE and fetches what that ACK
    /// names (the second round of a chainload).
    pub chainload: bool,
    /// A machine whose boot failed starts over this many times (firmware with "boot retry" on,
    /// as datacenter servers are set up), after `boot_retry_delay`.
    pub boot_retries: u32,
    /// See `boot_retries`.
    pub boot_retry_delay: Duration,
    /// Pin worker `w` to CPU `pin[w % len]` (none: the scheduler decides).
    pub pin: Vec<usize>,
    /// L2 mode on the fast path: the machines' frames go in and out through AF_XDP sockets,
    /// one worker per receive queue of `interface`.
    pub xdp: bool,
    /// After the (last) boot file, each machine logs in to its disk and reads (and writes).
    pub iscsi: Option<IscsiPhase>,
}

/// The diskless phase: where the disk is when the lease does not say (its root path), and what
/// each machine does with it.
#[derive(Clone, Debug)]
pub struct IscsiPhase {
    pub plan: crate::iscsi::Plan,
    /// Used when the lease has no iSCSI root path (or always, with `override_root_path`).
    pub disk: Option<crate::iscsi::Disk>,
    pub override_root_path: bool,
}

impl Config {
    /// Worker threads: one per relay address, one in L2 mode, one per receive queue of the
    /// interface in AF_XDP mode.
    pub fn workers(&self) -> usize {
        match &self.interface {
            Some(name) if self.xdp => bootstorm_xdp::LinkInfo::rx_queues(name) as usize,
            Some(_) => 1,
            None => self.relays.len(),
        }
    }
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
