//! The server's configuration as the core sees it: validated values, options already encoded.
//! The daemon builds it from TOML or command-line flags; tests build it directly.

use bootstorm_time::Duration;
use std::net::Ipv4Addr;

/// One option's encoded data, ready to copy into a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionValue {
    /// Option code.
    pub code: u8,
    /// Encoded data (without code and length).
    pub data: Box<[u8]>,
    /// Send even when the client did not ask for it in option 55.
    pub always: bool,
}

/// A set of options, looked up by code. Later `set` calls replace earlier ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptionSet {
    values: Vec<OptionValue>,
}

impl OptionSet {
    /// An empty set.
    pub fn new() -> OptionSet {
        OptionSet::default()
    }

    /// Sets (or replaces) an option.
    pub fn set(&mut self, code: u8, data: impl Into<Box<[u8]>>, always: bool) {
        let v = OptionValue {
            code,
            data: data.into(),
            always,
        };
        match self.values.binary_search_by_key(&code, |o| o.code) {
            Ok(i) => self.values[i] = v,
            Err(i) => self.values.insert(i, v),
        }
    }

    /// The option with `code`, if set.
    pub fn get(&self, code: u8) -> Option<&OptionValue> {
        self.values
            .binary_search_by_key(&code, |o| o.code)
            .ok()
            .map(|i| &self.values[i])
    }

    /// Every option, by code.
    pub fn iter(&self) -> impl Iterator<Item = &OptionValue> {
        self.values.iter()
    }

    /// True if no option is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Encodes a list of addresses (options 3, 6, 42, ...).
pub fn encode_ips(ips: &[Ipv4Addr]) -> Vec<u8> {
    ips.iter().flat_map(|a| a.octets()).collect()
}

/// A classless static route (RFC 3442).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination network.
    pub network: Ipv4Addr,
    /// Prefix length 0..=32.
    pub prefix: u8,
    /// Next hop.
    pub router: Ipv4Addr,
}

/// Encodes option 121: per route, the prefix length, the significant octets of the destination
/// and the router (RFC 3442 section 3).
pub fn encode_routes(routes: &[Route]) -> Vec<u8> {
    let mut v = Vec::new();
    for r in routes {
        let n = usize::from(r.prefix.min(32)).div_ceil(8);
        v.push(r.prefix.min(32));
        v.extend_from_slice(&r.network.octets()[..n]);
        v.extend_from_slice(&r.router.octets());
    }
    v
}

/// A subnet the server hands out addresses in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// Network address.
    pub network: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// Dynamic ranges (inclusive); may be empty for a reservations-only subnet.
    pub ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Our address as the clients see it: option 54 and the default next-server.
    pub server_id: Ipv4Addr,
    /// Interface this subnet is served on directly; `None` means any interface (or relays only).
    pub interface: Option<String>,
    /// Lease time.
    pub lease_time: Duration,
    /// Renewal time T1 (option 58); `None` = half the lease.
    pub renewal_time: Option<Duration>,
    /// Rebinding time T2 (option 59); `None` = 7/8 of the lease.
    pub rebinding_time: Option<Duration>,
    /// next-server (siaddr) for boot files, if not the server id.
    pub next_server: Option<Ipv4Addr>,
    /// Options of this subnet (1, 3, 6, 15, 28, 42, 121 and any extra), encoded.
    pub options: OptionSet,
}

impl Subnet {
    /// The netmask.
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix))
    }

    /// True if `a` is in this subnet.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let m = prefix_mask(self.prefix);
        u32::from(a) & m == u32::from(self.network) & m
    }
}

/// The netmask of a prefix length.
pub fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// A fixed address for one client, by MAC or by client identifier (option 61).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// MAC address to match (chaddr).
    pub hwaddr: Option<[u8; 6]>,
    /// Client identifier to match (raw option 61 bytes, type byte included).
    pub client_id: Option<Box<[u8]>>,
    /// The address.
    pub addr: Ipv4Addr,
    /// Host name sent as option 12.
    pub hostname: Option<String>,
    /// Extra options for this client.
    pub options: OptionSet,
    /// Boot settings for this client, overriding boot rules.
    pub boot: Option<Boot>,
}

/// What a boot rule or class matches on. Every given condition must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Match {
    /// Client architectures (option 93); any listed matches.
    pub arch: Vec<u16>,
    /// A user class (option 77), in either encoding.
    pub user_class: Option<Box<[u8]>>,
    /// A prefix of the vendor class (option 60).
    pub vendor_class_prefix: Option<Box<[u8]>>,
    /// A prefix of the MAC address.
    pub mac_prefix: Option<Box<[u8]>>,
    /// Whether the client has a reservation.
    pub reserved: Option<bool>,
    /// Only in this subnet (index into `ServerConfig::subnets`).
    pub subnet: Option<u32>,
}

/// Where a machine boots from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Boot {
    /// Boot file name or URL (`file` field and option 67).
    pub file: String,
    /// next-server (siaddr); default: the subnet's next-server or server id.
    pub next_server: Option<Ipv4Addr>,
    /// TFTP server name (option 66 and `sname`).
    pub server_name: Option<String>,
    /// Root path (option 17), e.g. an iSCSI URI (RFC 4173); `{server}` stands for the boot
    /// server's address (next-server, else the subnet's server id), `{mac}` for the client's
    /// MAC (`52-54-00-12-34-56`).
    pub root_path: Option<String>,
    /// iPXE's option 201: the iSCSI target's IQN.
    pub iscsi_target: Option<String>,
    /// iPXE's option 203: the IQN the machine logs in as; `{mac}` as in `root_path`.
    pub initiator_iqn: Option<String>,
}

/// A boot rule: the first rule that matches a client decides its boot file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootRule {
    /// Name for logs.
    pub name: String,
    /// Conditions.
    pub matcher: Match,
    /// Boot settings.
    pub boot: Boot,
    /// Extra options for clients this rule matches.
    pub options: OptionSet,
}

/// A class: every class that matches a client adds its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    /// Name for logs.
    pub name: String,
    /// Conditions.
    pub matcher: Match,
    /// Options.
    pub options: OptionSet,
}

/// The whole server configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Subnets; their index is their id.
    pub subnets: Vec<Subnet>,
    /// Reservations.
    pub reservations: Vec<Reservation>,
    /// Boot rules, in order.
    pub boot_rules: Vec<BootRule>,
    /// Classes.
    pub classes: Vec<Class>,
    /// How long an OFFER holds its address.
    pub offer_hold: Duration,
    /// How long a DECLINEd address stays out of use.
    pub decline_quarantine: Duration,
    /// Answer REQUESTs of clients we have no record of (INIT-REBOOT after a server change):
    /// ACK if the address is free, NAK if not. Off: stay silent, as RFC 2131 4.3.2 asks.
    pub authoritative: bool,
    /// Compatibility mode of the course assignment: NAK where RFC 2131 says to stay silent
    /// (no free address for a DISCOVER; a REQUEST naming another server).
    pub compat_nak: bool,
    /// Lease-table shards.
    pub shards: usize,
    /// DISCOVERs admitted per source (relay or interface).
    pub admission: crate::AdmissionConfig,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            subnets: Vec::new(),
            reservations: Vec::new(),
            boot_rules: Vec::new(),
            classes: Vec::new(),
            offer_hold: Duration::from_secs(30),
            decline_quarantine: Duration::from_secs(3600),
            authoritative: false,
            compat_nak: false,
            shards: bootstorm_lease::DEFAULT_SHARDS,
            admission: crate::AdmissionConfig::default(),
        }
    }
}

/// Well-known client architecture types (RFC 4578 2.1 and the IANA registry).
pub mod arch {
    /// x86 BIOS.
    pub const BIOS: u16 = 0;
    /// EFI IA32.
    pub const EFI_IA32: u16 = 6;
    /// EFI BC, which every x86-64 UEFI firmware in the field means by it.
    pub const EFI_BC: u16 = 7;
    /// EFI x86-64. Firmware sends 7 or 9 for the same machine: match both.
    pub const EFI_X64: u16 = 9;
    /// ARM 64-bit UEFI.
    pub const EFI_ARM64: u16 = 11;
    /// x86-64 UEFI HTTP boot.
    pub const EFI_X64_HTTP: u16 = 16;
    /// ARM 64-bit UEFI HTTP boot.
    pub const EFI_ARM64_HTTP: u16 = 19;

    /// Architecture names accepted in configs, with the types each stands for. `efi-x64` is both
    /// 7 and 9 on purpose: matching only one of them is the classic cause of UEFI boot loops.
    pub const NAMES: &[(&str, &[u16])] = &[
        ("bios", &[BIOS]),
        ("efi-ia32", &[EFI_IA32]),
        ("efi-x64", &[EFI_BC, EFI_X64]),
        ("efi-arm64", &[EFI_ARM64]),
        ("arm64", &[EFI_ARM64]),
        ("efi-x64-http", &[EFI_X64_HTTP]),
        ("efi-arm64-http", &[EFI_ARM64_HTTP]),
    ];

    /// True for the HTTP boot architectures, which need option 60 "HTTPClient" in the reply.
    pub fn is_http(a: u16) -> bool {
        matches!(a, EFI_X64_HTTP | EFI_ARM64_HTTP | 15 | 18 | 20..=24)
    }
}
