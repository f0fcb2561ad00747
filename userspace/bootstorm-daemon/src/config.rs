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

mod values;
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
    /// Option 17.
    pub root_path: Option<String>,
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
    /// Option 17.
    pub root_path: Option<String>,
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

fn option_set(
    src: &Source<'_>,
    options: &[Spanned<OptionSection>],
) -> Result<OptionSet, ConfigError> {
    let mut set = OptionSet::new();
    for o in options {
        let data = encode_option(o.get_ref()).map_err(|e| src.error(Some(o.span()), e))?;
        set.set(o.get_ref().code, data, o.get_ref().always);
    }
    Ok(set)
}

/// Encodes an extra option's value by its declared type.
pub fn encode_option(o: &OptionSection) -> Result<Vec<u8>, String> {
    let code = o.code;
    match code {
        opt::PAD | opt::END => return Err(format!("option {code} is not an option")),
        opt::MESSAGE_TYPE
        | opt::SERVER_ID
        | opt::LEASE_TIME
        | opt::OVERLOAD
        | opt::MAX_MESSAGE_SIZE
        | opt::RELAY_AGENT_INFO
        | opt::CLIENT_ID
        | opt::RENEWAL_TIME
        | opt::REBINDING_TIME => {
            return Err(format!(
                "option {code} is managed by the server and cannot be set"
            ));
        }
        _ => {}
    }
    let v = &o.value;
    let bad = |want: &str| format!("option {code} of type {}: value must be {want}", o.kind);
    let int = |min: i64, max: i64| -> Result<i64, String> {
        v.as_integer()
            .filter(|i| (min..=max).contains(i))
            .ok_or_else(|| bad(&format!("an integer {min}..={max}")))
    };
    let ip = |v: &toml::Value| -> Result<Ipv4Addr, String> {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("an IPv4 address string"))
    };
    let data = match o.kind.as_str() {
        "ip" => ip(v)?.octets().to_vec(),
        "ips" => {
            let arr = v
                .as_array()
                .ok_or_else(|| bad("an array of IPv4 address strings"))?;
            encode_ips(&arr.iter().map(ip).collect::<Result<Vec<_>, _>>()?)
        }
        "u8" => vec![int(0, 255)? as u8],
        "u16" => (int(0, 65535)? as u16).to_be_bytes().to_vec(),
        "u32" => (int(0, u32::MAX.into())? as u32).to_be_bytes().to_vec(),
        "i32" => (int(i32::MIN.into(), i32::MAX.into())? as i32)
            .to_be_bytes()
            .to_vec(),
        "bool" => vec![u8::from(v.as_bool().ok_or_else(|| bad("true or false"))?)],
        "string" => v
            .as_str()
            .ok_or_else(|| bad("a string"))?
            .as_bytes()
            .to_vec(),
        "hex" => {
            v.as_str()
                .ok_or_else(|| bad("a hex string"))?
                .parse::<Hex>()?
                .0
        }
        k => {
            return Err(format!(
                "option {code}: unknown type '{k}' (use ip, ips, u8, u16, u32, i32, bool, string or hex)"
            ));
        }
    };
    if data.len() > 1200 {
        return Err(format!(
            "option {code}: value of {} bytes cannot fit in any DHCP message",
            data.len()
        ));
    }
    Ok(data)
}

fn matcher(m: &MatchSection, subnets: &[core::Subnet]) -> Result<core::Match, String> {
    let subnet = match m.subnet {
        Some(c) => Some(
            subnets
                .iter()
                .position(|s| s.network == c.network && s.prefix == c.prefix)
                .ok_or_else(|| format!("match.subnet {c} is not a configured subnet"))?
                as u32,
        ),
        None => None,
    };
    Ok(core::Match {
        arch: m.arch.iter().flat_map(|a| a.0.iter().copied()).collect(),
        user_class: m.user_class.as_ref().map(|s| s.as_bytes().into()),
        vendor_class_prefix: m.vendor_class_prefix.as_ref().map(|s| s.as_bytes().into()),
        mac_prefix: m.mac_prefix.as_ref().map(|h| h.0.clone().into()),
        reserved: m.reserved,
        subnet,
    })
}

fn check_boot_file(file: &str) -> Result<(), String> {
    if file.is_empty() {
        return Err("boot file must not be empty".into());
    }
    if file.len() > 255 {
        return Err(format!(
            "boot file of {} bytes is longer than option 67 allows (255)",
            file.len()
        ));
    }
    Ok(())
}

/// Validates a parsed file (or flags turned into one) into [`Settings`].
pub fn validate(src: &Source<'_>, file: FileConfig) -> Result<Settings, ConfigError> {
    let s = &file.server;
    let mut warnings = Vec::new();
    let log_format = match s.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(x) => {
            return Err(src.error(
                None,
                format!("[server] log_format '{x}': expected \"text\" or \"json\""),
            ));
        }
    };
    let log_level = match &s.log_level {
        Some(l) => Some(
            log_filter(l.get_ref())
                .map_err(|e| src.error(Some(l.span()), format!("[server] {e}")))?,
        ),
        None => None,
    };
    let workers = s
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 0 || workers > 256 {
        return Err(src.error(
            None,
            format!("[server] workers = {workers}: expected 1-256"),
        ));
    }
    let rx_coalesce = rx_coalesce(s.rx_coalesce.as_ref().map(|d| *d.get_ref())).map_err(|e| {
        src.error(
            s.rx_coalesce.as_ref().map(|d| d.span()),
            format!("[server] {e}"),
        )
    })?;
    let mut dhcp = ServerConfig::default();
    if let Some(v) = s.authoritative {
        dhcp.authoritative = v;
    }
    if let Some(v) = s.compat_nak {
        dhcp.compat_nak = v;
    }
    if let Some(v) = s.offer_hold {
        dhcp.offer_hold = v.0;
    }
    if let Some(v) = s.decline_quarantine {
        dhcp.decline_quarantine = v.0;
    }
    if let Some(v) = s.shards {
        if v == 0 || v > 4096 {
            return Err(src.error(None, format!("[server] shards = {v}: expected 1-4096")));
        }
        dhcp.shards = v;
    }
    if let Some(a) = &file.admission {
        let span = Some(a.span());
        let a = a.get_ref();
        let rate = |r: Option<u32>, b: Option<u32>, what: &str, d: bootstorm_dhcp::Rate| {
            let per_sec = r.unwrap_or(d.per_sec);
            let burst = b.unwrap_or(d.burst);
            if per_sec > 0 && burst == 0 {
                return Err(src.error(
                    span.clone(),
                    format!("[admission] {what}_burst = 0 with {what}_rate = {per_sec}: nothing would ever be admitted (a rate of 0 turns the limit off)"),
                ));
            }
            Ok(bootstorm_dhcp::Rate { per_sec, burst })
        };
        let d = bootstorm_dhcp::AdmissionConfig::default();
        dhcp.admission.relay = rate(a.relay_rate, a.relay_burst, "relay", d.relay)?;
        dhcp.admission.interface = rate(
            a.interface_rate,
            a.interface_burst,
            "interface",
            d.interface,
        )?;
    }
    // Boot files alone (beside another DHCP server, as tftpd-hpa is used) need no subnet; then
    // no DHCP socket is opened at all.
    let dhcp_enabled = !file.subnets.is_empty();
    if !dhcp_enabled {
        if file.tftp.is_none() && file.http.is_none() {
            return Err(src.error(
                None,
                "nothing to serve: no [[subnet]] (for DHCP), [tftp] or [http] section",
            ));
        }
        if let Some(l) = &file.leases {
            return Err(src.error(
                Some(l.span()),
                "[leases] keeps DHCP leases, but there is no [[subnet]]: DHCP is off",
            ));
        }
        if let Some(r) = file.reservations.first() {
            return Err(src.error(
                Some(r.span()),
                "a [[reservation]] needs the [[subnet]] it belongs to: DHCP is off without one",
            ));
        }
        if !file.boot.is_empty() {
            warnings
                .push("[[boot]] rules do nothing without a [[subnet]]: DHCP is off".to_string());
        }
    }
    let mut all_ranges: Vec<(IpRange, Range<usize>)> = Vec::new();
    for sp in &file.subnets {
        let span = Some(sp.span());
        let sn = sp.get_ref();
        let net = sn
            .network
            .ok_or_else(|| src.error(span.clone(), "subnet needs network = \"a.b.c.d/prefix\""))?;
        let server_id = sn.server_id.ok_or_else(|| {
            src.error(
                span.clone(),
                format!("subnet {net} needs server_id (this server's address on it)"),
            )
        })?;
        let core_net = core::Subnet {
            network: net.network,
            prefix: net.prefix,
            ranges: Vec::new(),
            server_id,
            interface: sn.interface.clone(),
            lease_time: Duration::from_secs(3600),
            renewal_time: None,
            rebinding_time: None,
            next_server: sn.next_server,
            options: OptionSet::new(),
        };
        let mut core_net = core_net;
        for p in &sn.pools {
            let r = *p.get_ref();
            if !core_net.contains(r.start) || !core_net.contains(r.end) {
                return Err(src.error(
                    Some(p.span()),
                    format!("pool {r} is not inside subnet {net}"),
                ));
            }
            if let Some((other, _)) = all_ranges.iter().find(|(o, _)| {
                u32::from(o.start) <= u32::from(r.end) && u32::from(r.start) <= u32::from(o.end)
            }) {
                return Err(src.error(Some(p.span()), format!("pool {r} overlaps pool {other}")));
            }
            if (r.start..=r.end).contains(&server_id) {
                return Err(src.error(
                    Some(p.span()),
                    format!("pool {r} contains the server's own address {server_id}"),
                ));
            }
            all_ranges.push((r, p.span()));
            core_net.ranges.push((r.start, r.end));
        }
        if let Some(l) = sn.lease_time {
            if l.0.as_secs() < 60 {
                return Err(src.error(
                    span.clone(),
                    format!("subnet {net}: lease_time below 60 seconds"),
                ));
            }
            core_net.lease_time = l.0;
        }
        core_net.renewal_time = sn.renewal_time.map(|d| d.0);
        core_net.rebinding_time = sn.rebinding_time.map(|d| d.0);
        if let (Some(t1), Some(t2)) = (core_net.renewal_time, core_net.rebinding_time)
            && t1 >= t2
        {
            return Err(src.error(
                span.clone(),
                format!("subnet {net}: renewal_time must be below rebinding_time"),
            ));
        }
        let mut options = OptionSet::new();
        if !sn.routers.is_empty() {
            options.set(opt::ROUTER, encode_ips(&sn.routers), false);
        }
        if !sn.dns.is_empty() {
            options.set(opt::DNS_SERVERS, encode_ips(&sn.dns), false);
        }
        if let Some(d) = &sn.domain_name {
            options.set(opt::DOMAIN_NAME, d.as_bytes(), false);
        }
        if !sn.ntp.is_empty() {
            options.set(opt::NTP_SERVERS, encode_ips(&sn.ntp), false);
        }
        if !sn.routes.is_empty() {
            let routes: Vec<core::Route> = sn
                .routes
                .iter()
                .map(|r| core::Route {
                    network: r.network.network,
                    prefix: r.network.prefix,
                    router: r.router,
                })
                .collect();
            options.set(opt::CLASSLESS_ROUTES, encode_routes(&routes), false);
        }
        for o in &sn.options {
            let data = encode_option(o.get_ref()).map_err(|e| src.error(Some(o.span()), e))?;
            options.set(o.get_ref().code, data, o.get_ref().always);
        }
        core_net.options = options;
        if let Some(dup) = dhcp
            .subnets
            .iter()
            .find(|s| s.network == core_net.network && s.prefix == core_net.prefix)
        {
            return Err(src.error(
                span,
                format!("subnet {}/{} is configured twice", dup.network, dup.prefix),
            ));
        }
        dhcp.subnets.push(core_net);
    }
    for sp in &file.reservations {
        let span = Some(sp.span());
        let r = sp.get_ref();
        let addr = r
            .address
            .ok_or_else(|| src.error(span.clone(), "reservation needs address"))?;
        if r.mac.is_none() && r.client_id.is_none() {
            return Err(src.error(span, format!("reservation {addr} needs mac or client_id")));
        }
        if !dhcp.subnets.iter().any(|s| s.contains(addr)) {
            return Err(src.error(
                span,
                format!("reservation {addr} is in no configured subnet"),
            ));
        }
        if dhcp.reservations.iter().any(|o| o.addr == addr) {
            return Err(src.error(span, format!("address {addr} is reserved twice")));
        }
        if let Some(m) = r.mac
            && dhcp.reservations.iter().any(|o| o.hwaddr == Some(m.0))
        {
            return Err(src.error(
                span,
                format!(
                    "MAC {} has two reservations",
                    bootstorm_wire::ethernet::Address(m.0)
                ),
            ));
        }
        let boot = match &r.boot {
            Some(b) => {
                check_boot_file(&b.file).map_err(|e| src.error(span.clone(), e))?;
                Some(core::Boot {
                    file: b.file.clone(),
                    next_server: b.next_server,
                    server_name: b.server_name.clone(),
                    root_path: b.root_path.clone(),
                })
            }
            None => None,
        };
        dhcp.reservations.push(core::Reservation {
            hwaddr: r.mac.map(|m| m.0),
            client_id: r.client_id.as_ref().map(|h| h.0.clone().into()),
            addr,
            hostname: r.hostname.clone(),
            options: option_set(src, &r.options)?,
            boot,
        });
    }
    for (i, sp) in file.boot.iter().enumerate() {
        let span = Some(sp.span());
        let b = sp.get_ref();
        check_boot_file(&b.file).map_err(|e| src.error(span.clone(), e))?;
        let m = matcher(&b.matcher, &dhcp.subnets).map_err(|e| src.error(span.clone(), e))?;
        let name = b.name.clone().unwrap_or_else(|| format!("boot#{}", i + 1));
        let (has7, has9) = (
            m.arch.contains(&arch::EFI_BC),
            m.arch.contains(&arch::EFI_X64),
        );
        if has7 != has9 {
            let (line, _) = match src {
                Source::File { text, .. } => line_col(text, sp.span().start),
                Source::CommandLine => (0, 0),
            };
            warnings.push(format!(
                "boot rule '{name}' (line {line}) matches architecture {} but not {}: x86-64 UEFI firmware sends either, so some machines will miss this rule and may loop; use arch = [\"efi-x64\"] for both",
                if has7 { 7 } else { 9 },
                if has7 { 9 } else { 7 }
            ));
        }
        dhcp.boot_rules.push(core::BootRule {
            name,
            matcher: m,
            boot: core::Boot {
                file: b.file.clone(),
                next_server: b.next_server,
                server_name: b.server_name.clone(),
                root_path: b.root_path.clone(),
            },
            options: option_set(src, &b.options)?,
        });
    }
    for (i, sp) in file.classes.iter().enumerate() {
        let span = Some(sp.span());
        let c = sp.get_ref();
        let m = matcher(&c.matcher, &dhcp.subnets).map_err(|e| src.error(span, e))?;
        dhcp.classes.push(core::Class {
            name: c.name.clone().unwrap_or_else(|| format!("class#{}", i + 1)),
            matcher: m,
            options: option_set(src, &c.options)?,
        });
    }
    for sub in &dhcp.subnets {
        if let Some(ifname) = &sub.interface
            && !s.interfaces.is_empty()
            && !s.interfaces.contains(ifname)
        {
            warnings.push(format!(
                "subnet {}/{} is on interface {ifname}, which [server] interfaces does not list",
                sub.network, sub.prefix
            ));
        }
    }
    let tftp = match &file.tftp {
        Some(sp) => Some(tftp_settings(
            src,
            sp,
            s.address.unwrap_or(Ipv4Addr::UNSPECIFIED),
            workers,
        )?),
        None => None,
    };
    let http = match &file.http {
        Some(sp) => {
            let h = sp.get_ref();
            let root = h
                .root
                .clone()
                .or_else(|| tftp.as_ref().map(|t| t.root.clone()))
                .ok_or_else(|| {
                    src.error(
                        Some(sp.span()),
                        "[http] needs root = \"/path/to/boot/files\" (or a [tftp] root to share)",
                    )
                })?;
            if !root.is_dir() {
                return Err(src.error(
                    Some(sp.span()),
                    format!("[http] root {} is not a directory", root.display()),
                ));
            }
            let mut hs = crate::httpd::HttpSettings::new(
                SocketAddrV4::new(
                    h.address.or(s.address).unwrap_or(Ipv4Addr::UNSPECIFIED),
                    h.port.unwrap_or(80),
                ),
                root,
            );
            hs.workers = h.workers.unwrap_or(2).max(1);
            hs.max_file_size = h.max_file_size.unwrap_or(hs.max_file_size);
            let secs = |d: Option<Dur>, dflt: std::time::Duration, what: &str| match d {
                Some(d) if d.0.as_millis() == 0 => Err(src.error(
                    Some(sp.span()),
                    format!("[http] {what} = 0: a connection would be closed before its request"),
                )),
                Some(d) => Ok(std::time::Duration::from_millis(d.0.as_millis())),
                None => Ok(dflt),
            };
            hs.header_timeout = secs(h.header_timeout, hs.header_timeout, "header_timeout")?;
            hs.send_timeout = secs(h.send_timeout, hs.send_timeout, "send_timeout")?;
            for (v, what) in [
                (h.max_connections, "max_connections"),
                (h.max_connections_per_client, "max_connections_per_client"),
            ] {
                if v == Some(0) {
                    return Err(src.error(
                        Some(sp.span()),
                        format!("[http] {what} = 0: no client could connect"),
                    ));
                }
            }
            hs.max_connections = h.max_connections.unwrap_or(hs.max_connections);
            hs.max_per_client = h.max_connections_per_client.unwrap_or(hs.max_per_client);
            Some(hs)
        }
        None => None,
    };
    let leases = match &file.leases {
        Some(sp) => {
            let l = sp.get_ref();
            let span = Some(sp.span());
            let dir = l.dir.clone().ok_or_else(|| {
                src.error(span.clone(), "[leases] needs dir = \"/var/lib/bootstorm\"")
            })?;
            let durability = match l.durability.as_deref() {
                None => bootstorm_journal::Durability::Fsync,
                Some(d) => d
                    .parse()
                    .map_err(|e: String| src.error(span.clone(), format!("[leases] {e}")))?,
            };
            let segment_max = l.segment_size.unwrap_or(64 << 20);
            if segment_max < 4096 {
                return Err(src.error(span, "[leases] segment_size must be at least 4096 bytes"));
            }
            let commit_delay = std::time::Duration::from_millis(
                l.commit_delay
                    .map_or(DEFAULT_COMMIT_DELAY_MS, |d| d.0.as_millis()),
            );
            if commit_delay > std::time::Duration::from_millis(100) {
                return Err(src.error(
                    span,
                    "[leases] commit_delay is at most 100ms: every ACK waits that long",
                ));
            }
            Some(bootstorm_journal::Settings {
                dir,
                durability,
                segment_max,
                commit_delay,
            })
        }
        None => None,
    };
    Ok(Settings {
        dhcp_enabled,
        tftp,
        http,
        leases,
        repair_journal: false,
        listen: SocketAddrV4::new(
            s.address.unwrap_or(Ipv4Addr::UNSPECIFIED),
            s.port.unwrap_or(67),
        ),
        interfaces: s.interfaces.clone(),
        workers,
        rx_coalesce,
        control_socket: s
            .control_socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET)),
        log_format,
        log_level,
        dhcp,
        warnings,
    })
}

fn tftp_settings(
    src: &Source<'_>,
    sp: &Spanned<TftpSection>,
    default_ip: Ipv4Addr,
    workers: usize,
) -> Result<crate::tftpd::TftpSettings, ConfigError> {
    let t = sp.get_ref();
    let span = Some(sp.span());
    let root = t
        .root
        .clone()
        .ok_or_else(|| src.error(span.clone(), "[tftp] needs root = \"/path/to/boot/files\""))?;
    if !root.is_dir() {
        return Err(src.error(
            span,
            format!("[tftp] root {} is not a directory", root.display()),
        ));
    }
    let mut limits = bootstorm_tftp::Limits::default();
    if let Some(b) = t.max_blksize {
        if !(bootstorm_wire::tftp::BLKSIZE_MIN..=bootstorm_wire::tftp::BLKSIZE_MAX).contains(&b) {
            return Err(src.error(span, format!("[tftp] max_blksize = {b}: expected 8-65464")));
        }
        limits.max_blksize = b;
    }
    if let Some(w) = t.max_windowsize {
        if w == 0 {
            return Err(src.error(span, "[tftp] max_windowsize must be at least 1"));
        }
        limits.max_windowsize = w;
    }
    if let Some(d) = t.timeout {
        if d.0.as_millis() == 0 {
            return Err(src.error(span, "[tftp] timeout must be above zero"));
        }
        limits.default_timeout = d.0;
    }
    if let Some(r) = t.retries {
        limits.max_retries = r;
    }
    let busy_poll = t.busy_poll.map_or(DEFAULT_TFTP_BUSY_POLL, |d| d.0);
    if busy_poll > MAX_TFTP_BUSY_POLL {
        return Err(src.error(
            span,
            "[tftp] busy_poll is at most 1ms: longer only burns CPU while clients think",
        ));
    }
    let unique_root = match t.unique_root.as_deref() {
        None => None,
        Some("ip") => Some(crate::tftpd::UniqueRoot::Ip),
        Some("mac") => Some(crate::tftpd::UniqueRoot::Mac),
        Some(x) => {
            return Err(src.error(
                span,
                format!("[tftp] unique_root '{x}': expected \"ip\" or \"mac\""),
            ));
        }
    };
    let upload = match &t.upload_dir {
        None => {
            if t.upload_overwrite.is_some() || t.max_upload_size.is_some() {
                return Err(src.error(
                    span,
                    "[tftp] upload_overwrite and max_upload_size need upload_dir",
                ));
            }
            None
        }
        Some(dir) => {
            let (Ok(d), Ok(r)) = (dir.canonicalize(), root.canonicalize()) else {
                return Err(src.error(
                    span,
                    format!("[tftp] upload_dir {} is not a directory", dir.display()),
                ));
            };
            if !d.is_dir() {
                return Err(src.error(
                    span,
                    format!("[tftp] upload_dir {} is not a directory", dir.display()),
                ));
            }
            // Uploads must never replace the boot files themselves.
            if r.starts_with(&d) {
                return Err(src.error(
                    span,
                    format!(
                        "[tftp] upload_dir {} holds the root {}: uploads need a separate directory",
                        dir.display(),
                        root.display()
                    ),
                ));
            }
            Some(crate::tftpd::UploadSettings {
                dir: d,
                overwrite: t.upload_overwrite.unwrap_or(false),
                max_size: t.max_upload_size.unwrap_or(64 << 20),
            })
        }
    };
    Ok(crate::tftpd::TftpSettings {
        listen: SocketAddrV4::new(t.address.unwrap_or(default_ip), t.port.unwrap_or(69)),
        root,
        limits,
        workers: t.workers.unwrap_or(workers).max(1),
        max_file_size: t.max_file_size.unwrap_or(1 << 30),
        max_transfers: t.max_transfers.unwrap_or(DEFAULT_MAX_TRANSFERS).max(1),
        port_range: t.port_range.map(|r| (r.0, r.1)),
        upload,
        unique_root,
        busy_poll,
    })
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
