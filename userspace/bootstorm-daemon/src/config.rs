//! The configuration file (TOML) and the quick-mode flags, both validated by one function into
//! the core's [`ServerConfig`] plus the daemon's own settings.
//!
//! Every error names where it is: `FILE:LINE:COLUMN: reason` for the file, the flag for the
//! command line. Field syntax (addresses, ranges, durations, MACs) is checked while parsing, so
//! toml reports its exact position; relations between fields (a pool outside its subnet, a
//! reservation in no subnet) are checked afterwards against the span of the table they are in.

use bootstorm_dhcp::config::{
    self as core, OptionSet, ServerConfig, arch, encode_ips, encode_routes,
};
use bootstorm_time::Duration;
use bootstorm_wire::dhcp::opt;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use toml::Spanned;

/// An error in the configuration, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{reason}")]
pub struct ConfigError {
    /// `FILE:LINE:COLUMN: ` or `command line: `.
    pub origin: String,
    /// What is wrong and what was expected.
    pub reason: String,
}

/// Where a configuration came from, for error messages.
#[derive(Clone, Debug)]
pub enum Source<'a> {
    /// A file and its text.
    File { path: &'a Path, text: &'a str },
    /// Command-line flags.
    CommandLine,
}

impl Source<'_> {
    fn error(&self, span: Option<Range<usize>>, reason: impl Into<String>) -> ConfigError {
        let origin = match (self, span) {
            (Source::File { path, text }, Some(span)) => {
                let (line, col) = line_col(text, span.start);
                format!("{}:{}:{}: ", path.display(), line, col)
            }
            (Source::File { path, .. }, None) => format!("{}: ", path.display()),
            (Source::CommandLine, _) => "command line: ".to_string(),
        };
        ConfigError {
            origin,
            reason: reason.into(),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

macro_rules! from_str_deserialize {
    ($t:ty, $what:expr) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let s = String::deserialize(d)?;
                s.parse()
                    .map_err(|e: String| de::Error::custom(format!("{e} (expected {})", $what)))
            }
        }
    };
}

mod options;
mod validate;
mod values;

pub use options::encode_option;
pub use validate::validate;
pub use values::*;

/// The file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerSection,
    /// `[[subnet]]`.
    #[serde(default, rename = "subnet")]
    pub subnets: Vec<Spanned<SubnetSection>>,
    /// `[[reservation]]`.
    #[serde(default, rename = "reservation")]
    pub reservations: Vec<Spanned<ReservationSection>>,
    /// `[[boot]]`.
    #[serde(default, rename = "boot")]
    pub boot: Vec<Spanned<BootSection>>,
    /// `[[class]]`.
    #[serde(default, rename = "class")]
    pub classes: Vec<Spanned<ClassSection>>,
    /// `[tftp]`.
    pub tftp: Option<Spanned<TftpSection>>,
    /// `[http]`.
    pub http: Option<Spanned<HttpSection>>,
    /// `[leases]`.
    pub leases: Option<Spanned<LeasesSection>>,
    /// `[admission]`.
    pub admission: Option<Spanned<AdmissionSection>>,
    /// `[xdp]`.
    pub xdp: Option<Spanned<XdpSection>>,
    /// `[iscsi]` and its `[[iscsi.target]]`s.
    pub iscsi: Option<Spanned<IscsiSection>>,
    /// `[sessions]`.
    pub sessions: Option<Spanned<SessionsSection>>,
    /// `[api]`.
    pub api: Option<Spanned<ApiSection>>,
}

/// `[api]`: the HTTP API ([`crate::api`]), always on the control socket, optionally on TCP.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// `ADDR:PORT` to listen on TCP too (default: the control socket only).
    pub address: Option<String>,
    /// A file holding the bearer token that changes need (one line, at least 16 characters).
    pub token_file: Option<PathBuf>,
    /// Read-only endpoints answer on TCP without the token (default false).
    pub read_open: Option<bool>,
}

/// `[sessions]`: the boot-session registry ([`crate::boots`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsSection {
    /// Record boot sessions (default true). Off, only the address registry per-MAC roots need
    /// is kept.
    pub enabled: Option<bool>,
    /// Sessions in progress kept at most (default 16384).
    pub live: Option<usize>,
    /// Ended sessions kept at most (default 4096).
    pub recent: Option<usize>,
    /// A session with no step for this long ends (default 10m).
    pub idle: Option<Dur>,
}

/// The boot-session registry's settings, validated (see [`SessionsSection`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSettings {
    /// Record sessions at all.
    pub enabled: bool,
    /// Live sessions at most.
    pub live: usize,
    /// Ended sessions kept.
    pub recent: usize,
    /// Idle time that ends a session.
    pub idle: Duration,
}

impl Default for SessionSettings {
    fn default() -> SessionSettings {
        SessionSettings {
            enabled: true,
            live: crate::boots::DEFAULT_LIVE,
            recent: crate::boots::DEFAULT_RECENT,
            idle: crate::boots::DEFAULT_IDLE,
        }
    }
}

/// `[iscsi]`: an iSCSI target (RFC 7143) on kernel TCP.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IscsiSection {
    /// Listen address and port (default 0.0.0.0:3260).
    pub address: Option<String>,
    /// Block I/O: "io_uring" (the default; pread, logged, where it is unavailable) or "pread".
    pub io: Option<String>,
    /// Serve what the page cache holds on the connection's thread first (default true).
    pub inline: Option<bool>,
    /// A connection not logged in after this is closed (default 30s).
    pub login_timeout: Option<Dur>,
    /// CHAP user for discovery sessions (with `discovery_chap_secret`).
    pub discovery_chap_user: Option<String>,
    /// Its secret.
    pub discovery_chap_secret: Option<String>,
    /// `[[iscsi.target]]`.
    #[serde(default, rename = "target")]
    pub targets: Vec<Spanned<IscsiTargetSection>>,
}

/// `[[iscsi.target]]`: one target, its disk as LUN 0.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IscsiTargetSection {
    /// Its IQN (`iqn.YYYY-MM.reversed.domain:name`).
    pub name: String,
    /// The backing file or block device.
    pub file: PathBuf,
    /// Writes refused (default false).
    pub read_only: Option<bool>,
    /// CHAP: the user the initiator must name and its secret (12 to 16 bytes, RFC 7143 12.1.3
    /// asks at least 96 bits).
    pub chap_user: Option<String>,
    pub chap_secret: Option<String>,
    /// Mutual CHAP: the target's user and secret.
    pub mutual_user: Option<String>,
    pub mutual_secret: Option<String>,
    /// Initiator IQNs allowed (default: any).
    #[serde(default)]
    pub initiators: Vec<String>,
    /// Diskless: `file` is a golden image shared read-only, and each machine writes to its own
    /// copy-on-write overlay in this directory.
    pub overlays: Option<PathBuf>,
    /// What names a machine's overlay: "initiator" (its IQN, the default) or "mac" (the MAC
    /// the DHCP server leased its address to).
    pub overlay_key: Option<String>,
    /// O_DIRECT block I/O (default: for block devices; never for a golden image).
    pub direct: Option<bool>,
}

/// `[xdp]`: boot-storm control in the XDP program (with `[server] io = "xdp"` or `"auto"`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XdpSection {
    /// DISCOVERs per second per client MAC sent directly (giaddr 0); default 20, 0 = no limit.
    pub mac_rate: Option<u32>,
    /// Burst per client MAC; default 40.
    pub mac_burst: Option<u32>,
    /// DISCOVERs per second per relay agent (giaddr); default 5000, 0 = no limit.
    pub relay_rate: Option<u32>,
    /// Burst per relay agent; default 20000.
    pub relay_burst: Option<u32>,
    /// A DISCOVER repeating one of its client's still being answered (same MAC and xid) within
    /// this is dropped in the program (default 5s; 0 turns the filter off).
    pub retransmit_window: Option<Dur>,
    /// Steer only frames to this server's addresses on the interface or the limited broadcast
    /// (default true).
    pub check_destination: Option<bool>,
    /// Receive frames per queue (a power of two, 2048 to 65536; default 16384, 2 KiB each):
    /// the burst a queue holds while its worker is busy.
    pub rx_frames: Option<u32>,
}

/// Which I/O path DHCP is served on (`[server] io`, `--io`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// The XDP fast path if it can start, else sockets (the log says why).
    Auto,
    /// The XDP fast path or nothing (a start that cannot attach fails).
    Xdp,
    /// UDP sockets.
    Socket,
}

impl std::str::FromStr for IoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<IoMode, String> {
        match s {
            "auto" => Ok(IoMode::Auto),
            "xdp" => Ok(IoMode::Xdp),
            "socket" => Ok(IoMode::Socket),
            x => Err(format!(
                "io '{x}': expected \"auto\", \"xdp\" or \"socket\""
            )),
        }
    }
}

impl IoMode {
    /// The fast path attaches to named interfaces: with DHCP on, `auto` and `xdp` need
    /// `[server] interfaces`. The one rule for the file and for `--io`.
    pub fn check_interfaces(self, interfaces: &[String], dhcp_enabled: bool) -> Result<(), String> {
        if self != IoMode::Socket && interfaces.is_empty() && dhcp_enabled {
            return Err("needs [server] interfaces: XDP attaches to named interfaces".into());
        }
        Ok(())
    }
}

/// The fast path's storm control, validated (see [`XdpSection`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpSettings {
    /// Per client MAC: DISCOVERs per second (0: off) and burst.
    pub mac_rate: (u32, u32),
    /// Per relay: DISCOVERs per second (0: off) and burst.
    pub relay_rate: (u32, u32),
    /// The retransmission filter's window (None: off).
    pub retransmit_window: Option<std::time::Duration>,
    /// Steer only frames to our addresses or the limited broadcast.
    pub check_destination: bool,
    /// Receive frames per queue.
    pub rx_frames: u32,
}

impl Default for XdpSettings {
    fn default() -> XdpSettings {
        XdpSettings {
            mac_rate: (20, 40),
            relay_rate: (5000, 20000),
            retransmit_window: Some(std::time::Duration::from_secs(5)),
            check_destination: true,
            rx_frames: bootstorm_xdp::RX_FRAMES,
        }
    }
}

/// `[admission]`: DISCOVERs admitted per source (see `bootstorm_dhcp::admission`). A rate of 0
/// turns that limit off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionSection {
    /// DISCOVERs per second per relay agent (giaddr); default 5000.
    pub relay_rate: Option<u32>,
    /// Burst per relay agent; default 20000.
    pub relay_burst: Option<u32>,
    /// DISCOVERs per second per receiving interface (clients on the wire); default 5000.
    pub interface_rate: Option<u32>,
    /// Burst per interface; default 20000.
    pub interface_burst: Option<u32>,
}

/// `[leases]`: keep leases across restarts in a journal.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeasesSection {
    /// Directory of the journal (required; created if missing).
    pub dir: Option<PathBuf>,
    /// "fsync" (default), "write" or "none".
    pub durability: Option<String>,
    /// Journal segment size before a snapshot compacts it, in bytes (default 64 MiB).
    pub segment_size: Option<u64>,
    /// How long a small group of records waits for more before its fsync (default 5 ms).
    pub commit_delay: Option<Dur>,
}

/// Default `[leases] commit_delay`: on this project's 2-core test VM a sync costs ~60 us of CPU;
/// leases arriving one at a time each paid one, which capped the fsync rate at ~5,000/s. Waiting
/// 2 ms let ~5 leases share a sync at 2,000/s and lifted the cap to ~9,000/s (bench/RESULTS.md);
/// 5 ms lets ~10 share one and takes a further ~15% off the CPU per lease at that rate, for at
/// most 5 ms more per ACK, which no DHCP client notices (they retransmit after 4 s). The delay
/// runs from the first record of a group, so it bounds the wait.
pub const DEFAULT_COMMIT_DELAY_MS: u64 = 5;

/// Default `[tftp] max_transfers`. Generous on purpose: in a storm every transfer that runs keeps
/// moving (the workers share the link fairly), while a request past the limit waits for a free
/// slot, and firmware gives up on a silent server after ~28 s (EDK2: 6 tries, 4 s apart). With
/// 10,000, a 20,000-machine storm of 1 MiB files here left 5,900 machines timed out; every
/// transfer's socket counts against the open-file limit, which caps this at start-up.
pub const DEFAULT_MAX_TRANSFERS: usize = 50_000;

/// `[http]`: serve boot files over HTTP (GET, HEAD, Range).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Directory served (default: the [tftp] root).
    pub root: Option<PathBuf>,
    /// Listen address (default: [server] address).
    pub address: Option<Ipv4Addr>,
    /// Port (default 80).
    pub port: Option<u16>,
    /// Runtime threads (default 2).
    pub workers: Option<usize>,
    /// Largest file served, in bytes (default 4 GiB).
    pub max_file_size: Option<u64>,
    /// A request head must arrive within this of connecting or of the last response (10s).
    pub header_timeout: Option<Dur>,
    /// A client that takes nothing of its response this long is dropped (30s).
    pub send_timeout: Option<Dur>,
    /// Connections at once (16384, capped by the open-file budget).
    pub max_connections: Option<usize>,
    /// Connections at once from one client address (256).
    pub max_connections_per_client: Option<usize>,
}

/// `[tftp]`: serve boot files over TFTP.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TftpSection {
    /// Directory served (required).
    pub root: Option<PathBuf>,
    /// Listen address (default: [server] address).
    pub address: Option<Ipv4Addr>,
    /// Port (default 69).
    pub port: Option<u16>,
    /// Largest block size granted (default 1468, and never more than the interface MTU allows).
    pub max_blksize: Option<u16>,
    /// Largest window granted (default 64).
    pub max_windowsize: Option<u16>,
    /// Retransmission timeout when the client asks for none (default 1s).
    pub timeout: Option<Dur>,
    /// Retransmissions before a transfer is abandoned (default 5).
    pub retries: Option<u8>,
    /// Worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Largest file served, in bytes (default 1 GiB).
    pub max_file_size: Option<u64>,
    /// Most transfers at once (default 10000).
    pub max_transfers: Option<usize>,
    /// Local ports for transfers, "first-last" (default: any free port).
    pub port_range: Option<PortRange>,
    /// Accept uploads (WRQ) into this directory, which must not be the root (default: refused).
    pub upload_dir: Option<PathBuf>,
    /// Let uploads replace existing files (default false: ERROR 6).
    pub upload_overwrite: Option<bool>,
    /// Largest upload in bytes (default 64 MiB).
    pub max_upload_size: Option<u64>,
    /// Look in a per-client subdirectory of the root first: "ip" or "mac" (default: none).
    pub unique_root: Option<String>,
    /// How long a worker with transfers running keeps polling before it sleeps (default
    /// 100us, at most 1ms; "0" turns it off).
    pub busy_poll: Option<Micros>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on (default 0.0.0.0, needed to receive broadcasts).
    pub address: Option<Ipv4Addr>,
    /// UDP port (default 67).
    pub port: Option<u16>,
    /// Interfaces to serve on; empty = all.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Worker threads (default: one per core).
    pub workers: Option<usize>,
    /// Control socket path for `bootstorm leases` (default /run/bootstorm/control.sock).
    pub control_socket: Option<PathBuf>,
    /// See [`ServerConfig::authoritative`].
    pub authoritative: Option<bool>,
    /// See [`ServerConfig::compat_nak`].
    pub compat_nak: Option<bool>,
    /// How long an OFFER holds its address (default 30s).
    pub offer_hold: Option<Dur>,
    /// How long a declined address is kept out of use (default 1h).
    pub decline_quarantine: Option<Dur>,
    /// Lease-table shards (default 64).
    pub shards: Option<usize>,
    /// "text" or "json".
    pub log_format: Option<String>,
    /// "error", "warn", "info" (default), "debug" or "trace", or per target
    /// ("info,bootstorm::drop=debug"); `BOOTSTORM_LOG` and `--log-level` override it.
    pub log_level: Option<Spanned<String>>,
    /// Receive coalescing of the DHCP workers (default 1ms; 0 turns it off). See
    /// [`DEFAULT_RX_COALESCE_MS`].
    pub rx_coalesce: Option<Spanned<Dur>>,
    /// The I/O path: "auto", "xdp" or "socket" (default "socket"). See [`IoMode`].
    pub io: Option<Spanned<String>>,
}

/// Default `[server] rx_coalesce`. When requests come faster than this, a worker that served a
/// batch waits this long before it reads the next, so the datagrams that arrive meanwhile are
/// read, answered and sent together: one wake-up of the worker (and of each client socket) per
/// batch instead of one per datagram, as a NIC's interrupt moderation does. An isolated request
/// is answered at once; under load a request waits at most this long. Measured with perfdhcp at
/// 2,000 leases/s (bench/RESULTS.md): the server's CPU per lease fell by about a third.
pub const DEFAULT_RX_COALESCE_MS: u64 = 1;

/// Largest `[server] rx_coalesce`.
pub const MAX_RX_COALESCE_MS: u64 = 10;

/// Checks an `rx_coalesce` value.
pub fn rx_coalesce(d: Option<Dur>) -> Result<std::time::Duration, String> {
    let ms = d.map_or(DEFAULT_RX_COALESCE_MS, |d| d.0.as_millis());
    let d = std::time::Duration::from_millis(ms);
    if ms > MAX_RX_COALESCE_MS {
        return Err(format!(
            "rx_coalesce is at most {MAX_RX_COALESCE_MS}ms: under load every request waits that long"
        ));
    }
    Ok(d)
}

/// `[[subnet]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetSection {
    /// The network, e.g. "198.18.0.0/16".
    pub network: Option<Cidr>,
    /// Interface whose clients this subnet serves directly.
    pub interface: Option<String>,
    /// Our address on this network (option 54).
    pub server_id: Option<Ipv4Addr>,
    /// Dynamic ranges.
    #[serde(default)]
    pub pools: Vec<Spanned<IpRange>>,
    /// Lease time (default 1h).
    pub lease_time: Option<Dur>,
    /// T1 (default half the lease).
    pub renewal_time: Option<Dur>,
    /// T2 (default 7/8 of the lease).
    pub rebinding_time: Option<Dur>,
    /// Option 3.
    #[serde(default)]
    pub routers: Vec<Ipv4Addr>,
    /// Option 6.
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Option 15.
    pub domain_name: Option<String>,
    /// Option 42.
    #[serde(default)]
    pub ntp: Vec<Ipv4Addr>,
    /// Option 121.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// siaddr for boot files (default: server_id).
    pub next_server: Option<Ipv4Addr>,
    /// Extra options.
    #[serde(default)]
    pub options: Vec<Spanned<OptionSection>>,
}

/// One classless static route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Destination.
    pub network: Cidr,
    /// Next hop.
    pub router: Ipv4Addr,
}

/// An extra option: code, type and value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionSection {
    /// Option code 1-254.
    pub code: u8,
    /// ip, ips, u8, u16, u32, i32, bool, string or hex.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value, of that type.
    pub value: toml::Value,
    /// Send even if the client did not ask.
    #[serde(default)]
    pub always: bool,
}

/// The conditions of a boot rule or class.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSection {
    /// Architectures (numbers or names).
    #[serde(default)]
    pub arch: Vec<ArchItem>,
    /// User class (option 77).
    pub user_class: Option<String>,
    /// Vendor class prefix (option 60).
    pub vendor_class_prefix: Option<String>,
    /// MAC prefix, e.g. "52:54:00".
    pub mac_prefix: Option<Hex>,
    /// Only clients with (true) or without (false) a reservation.
    pub reserved: Option<bool>,
    /// Only clients of this subnet.
    pub subnet: Option<Cidr>,
}

/// Boot settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootFields {
    /// Boot file name or URL.
    pub file: String,
    /// siaddr.
    pub next_server: Option<Ipv4Addr>,
    /// Option 66 and sname.
    pub server_name: Option<String>,
    /// Option 17 (`{server}` and `{mac}` are replaced per reply).
    pub root_path: Option<String>,
    /// An `[[iscsi.target]]` of this server to boot from (`sanboot`): option 17 (unless
    /// `root_path` is set) and iPXE's option 201 name it.
    pub iscsi_target: Option<String>,
    /// iPXE's option 203: the IQN the machine logs in as; `{mac}` is its MAC.
    pub initiator_iqn: Option<String>,
}

/// `[[boot]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSection {
    /// Name for logs.
    pub name: Option<String>,
    /// Conditions.
    #[serde(default, rename = "match")]
    pub matcher: MatchSection,
    /// Boot file name or URL.
    pub file: String,
    /// siaddr.
    pub next_server: Option<Ipv4Addr>,
    /// Option 66 and sname.
    pub server_name: Option<String>,
    /// Option 17 (`{server}` and `{mac}` are replaced per reply).
    pub root_path: Option<String>,
    /// An `[[iscsi.target]]` of this server to boot from; see [`BootFields::iscsi_target`].
    pub iscsi_target: Option<String>,
    /// iPXE's option 203; see [`BootFields::initiator_iqn`].
    pub initiator_iqn: Option<String>,
    /// Extra options.
    #[serde(default)]
    pub options: Vec<Spanned<OptionSection>>,
}

/// `[[class]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassSection {
    /// Name for logs.
    pub name: Option<String>,
    /// Conditions.
    #[serde(default, rename = "match")]
    pub matcher: MatchSection,
    /// Options.
    #[serde(default)]
    pub options: Vec<Spanned<OptionSection>>,
}

/// `[[reservation]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationSection {
    /// MAC to match.
    pub mac: Option<Mac>,
    /// Client identifier (option 61) to match, in hex.
    pub client_id: Option<Hex>,
    /// The address.
    pub address: Option<Ipv4Addr>,
    /// Option 12.
    pub hostname: Option<String>,
    /// Boot settings for this machine.
    pub boot: Option<BootFields>,
    /// Extra options.
    #[serde(default)]
    pub options: Vec<Spanned<OptionSection>>,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything the daemon needs: its own settings and the core's configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddrV4,
    /// Interfaces to serve on (one socket set each); empty = all.
    pub interfaces: Vec<String>,
    /// Worker threads.
    pub workers: usize,
    /// See [`DEFAULT_RX_COALESCE_MS`] (zero: off).
    pub rx_coalesce: std::time::Duration,
    /// The I/O path of DHCP.
    pub io: IoMode,
    /// The fast path's storm control.
    pub xdp: XdpSettings,
    /// Control socket path.
    pub control_socket: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter from `[server] log_level`, checked ([`log_filter`]).
    pub log_level: Option<String>,
    /// DHCP is served (there is at least one subnet). Off, only boot files are served.
    pub dhcp_enabled: bool,
    /// The DHCP core's configuration.
    pub dhcp: ServerConfig,
    /// TFTP, if configured.
    pub tftp: Option<crate::tftpd::TftpSettings>,
    /// HTTP, if configured.
    pub http: Option<crate::httpd::HttpSettings>,
    /// The lease journal, if configured.
    pub leases: Option<bootstorm_journal::Settings>,
    /// The iSCSI target, if configured.
    pub iscsi: Option<crate::iscsid::IscsiSettings>,
    /// The boot-session registry.
    pub sessions: SessionSettings,
    /// The HTTP API.
    pub api: crate::api::ApiSettings,
    /// Start even if the journal is damaged, keeping what precedes the damage (a command-line
    /// choice, never from the file).
    pub repair_journal: bool,
    /// Things that are allowed but probably wrong.
    pub warnings: Vec<String>,
}

/// Checks a log filter: comma-separated levels (`error`, `warn`, `info`, `debug`, `trace`,
/// `off`) or `target=level` pairs. A word that is neither is refused: tracing's own parser would
/// take it for a target name and silence every other line (`BOOTSTORM_LOG=dbug` did).
pub fn log_filter(text: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let level = |w: &str| LEVELS.contains(&w.trim().to_ascii_lowercase().as_str());
    let mut out = Vec::new();
    for d in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let ok = match d.split_once('=') {
            Some((target, l)) => {
                !target.trim().is_empty()
                    && target
                        .trim()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-')
                    && level(l)
            }
            None => level(d),
        };
        if !ok {
            return Err(format!(
                "log level '{d}': expected error, warn, info, debug, trace or off, or target=level"
            ));
        }
        out.push(d.to_ascii_lowercase());
    }
    if out.is_empty() {
        return Err("empty log level".into());
    }
    Ok(out.join(","))
}

/// Default control socket path.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/bootstorm/control.sock";

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: format!("{}: ", path.display()),
        reason: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// Parses and validates config text read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    let src = Source::File { path, text };
    let file: FileConfig =
        toml::from_str(text).map_err(|e| src.error(e.span(), e.message().to_string()))?;
    validate(&src, file)
}

/// Default `[tftp] busy_poll`. A lockstep client (every legacy PXE ROM, much UEFI firmware)
/// answers each block within tens of microseconds on a LAN; a worker that sleeps in between
/// pays a wake-up per block (on a VM, waking an idle vCPU costs more than the block). Polling
/// this long before sleeping made one lockstep curl 20-40% faster than tftpd-hpa here; the cost
/// is CPU only while transfers run and their ACKs come this fast.
pub const DEFAULT_TFTP_BUSY_POLL: std::time::Duration = std::time::Duration::from_micros(100);
/// Largest `[tftp] busy_poll`.
pub const MAX_TFTP_BUSY_POLL: std::time::Duration = std::time::Duration::from_millis(1);

#[cfg(test)]
mod tests;
