//! Quick mode: the common lab or rack setup from flags, as operators know it from dnsmasq and
//! pixiecore. The flags become the same [`FileConfig`] a file would, and go through the same
//! validation.

use crate::config::{
    ArchItem, BootSection, Cidr, ConfigError, Dur, FileConfig, HttpSection, IpRange, LeasesSection,
    MatchSection, ServerSection, Settings, Source, SubnetSection, TftpSection, validate,
};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use toml::Spanned;

/// The quick-mode flags (see `bootstorm serve --help`).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct QuickFlags {
    /// Serve on this interface only (SO_BINDTODEVICE); its subnet is the one configured here.
    #[arg(long)]
    pub interface: Option<String>,
    /// This server's address on the client network (option 54, default next-server).
    #[arg(long)]
    pub server_ip: Option<Ipv4Addr>,
    /// Dynamic range FIRST-LAST; repeat for several.
    #[arg(long = "pool")]
    pub pools: Vec<IpRange>,
    /// The client network; default: the /24 or /16 around --server-ip that holds the pools.
    #[arg(long)]
    pub subnet: Option<Cidr>,
    /// Default gateway (option 3).
    #[arg(long)]
    pub router: Option<Ipv4Addr>,
    /// DNS server (option 6); repeat for several.
    #[arg(long = "dns")]
    pub dns: Vec<Ipv4Addr>,
    /// Domain name (option 15).
    #[arg(long)]
    pub domain: Option<String>,
    /// Lease time, e.g. 1h.
    #[arg(long)]
    pub lease_time: Option<Dur>,
    /// Boot file for every client no more specific rule matches.
    #[arg(long)]
    pub boot_file: Option<String>,
    /// Boot file for x86-64 UEFI (architectures 7 and 9).
    #[arg(long)]
    pub boot_file_efi: Option<String>,
    /// Boot file for legacy BIOS (architecture 0).
    #[arg(long)]
    pub boot_file_bios: Option<String>,
    /// Boot file for ARM64 UEFI (architecture 11).
    #[arg(long)]
    pub boot_file_arm64: Option<String>,
    /// URL for UEFI HTTP boot (architectures 16 and 19).
    #[arg(long)]
    pub http_boot_url: Option<String>,
    /// iPXE script (file name or URL) for clients that are already iPXE (user class "iPXE").
    #[arg(long)]
    pub ipxe_script: Option<String>,
    /// next-server (siaddr) if not --server-ip.
    #[arg(long)]
    pub next_server: Option<Ipv4Addr>,
    /// Serve this directory over TFTP (port 69).
    #[arg(long)]
    pub tftp_root: Option<PathBuf>,
    /// TFTP port.
    #[arg(long)]
    pub tftp_port: Option<u16>,
    /// Accept TFTP uploads into this directory (not the root).
    #[arg(long)]
    pub tftp_upload_dir: Option<PathBuf>,
    /// Look in root/<client IP>/ or root/<client MAC>/ first: "ip" or "mac".
    #[arg(long)]
    pub tftp_unique_root: Option<String>,
    /// How long a TFTP worker with transfers running polls before it sleeps ("100us" default,
    /// at most "1ms"; "0" turns it off).
    #[arg(long)]
    pub tftp_busy_poll: Option<crate::config::Micros>,
    /// Serve this directory over HTTP (default with --http-port: the TFTP root).
    #[arg(long)]
    pub http_root: Option<PathBuf>,
    /// HTTP port (80 by default once HTTP is on).
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Keep leases across restarts in a journal in this directory.
    #[arg(long)]
    pub lease_dir: Option<PathBuf>,
    /// With --lease-dir: "fsync" (default), "write" or "none".
    #[arg(long)]
    pub durability: Option<String>,
    /// With --lease-dir: how long a small group of records waits for more before its fsync
    /// (default 5ms; 0 syncs at once).
    #[arg(long)]
    pub commit_delay: Option<Dur>,
    /// Serve FILE as LUN 0 of iSCSI target IQN (`IQN=FILE`); repeat for several targets.
    #[arg(long = "iscsi-target", value_name = "IQN=FILE")]
    pub iscsi_targets: Vec<String>,
    /// iSCSI listen address, ADDR:PORT or ADDR (default 0.0.0.0:3260).
    #[arg(long)]
    pub iscsi_address: Option<String>,
    /// Diskless: the --iscsi-target files are golden images, and each machine (by initiator
    /// IQN) writes to its own copy-on-write overlay in a subdirectory of DIR per target.
    #[arg(long, value_name = "DIR")]
    pub iscsi_overlays: Option<PathBuf>,
    /// Do not record boot sessions (`[sessions] enabled = false`).
    #[arg(long)]
    pub no_boot_sessions: bool,
    /// The HTTP API and the web dashboard on TCP too (`[api] address`), reads open and no
    /// token, so nothing can be changed through it (a config file's `[api] token_file` allows
    /// that).
    #[arg(long, value_name = "ADDR:PORT")]
    pub api: Option<String>,
}

impl QuickFlags {
    /// True if any quick-mode flag was given.
    pub fn any(&self) -> bool {
        self.interface.is_some()
            || self.server_ip.is_some()
            || !self.pools.is_empty()
            || self.subnet.is_some()
    }
}

/// Daemon settings that exist both as flags and in `[server]`.
#[derive(Debug, Default, Clone)]
pub struct ServerFlags {
    /// Listen address.
    pub address: Option<Ipv4Addr>,
    /// Port.
    pub port: Option<u16>,
    /// Workers.
    pub workers: Option<usize>,
    /// Control socket.
    pub control_socket: Option<PathBuf>,
    /// Compatibility NAKs.
    pub compat_nak: bool,
    /// Authoritative.
    pub authoritative: bool,
    /// Log format.
    pub log_format: Option<String>,
    /// Receive coalescing.
    pub rx_coalesce: Option<Dur>,
    /// The I/O path ("auto", "xdp", "socket").
    pub io: Option<String>,
}

fn spanned<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

fn guess_subnet(server: Ipv4Addr, pools: &[IpRange]) -> Option<Cidr> {
    for prefix in [24u8, 16] {
        let m = bootstorm_dhcp::config::prefix_mask(prefix);
        let net = u32::from(server) & m;
        if pools
            .iter()
            .all(|p| u32::from(p.start) & m == net && u32::from(p.end) & m == net)
        {
            return Some(Cidr {
                network: Ipv4Addr::from(net),
                prefix,
            });
        }
    }
    None
}

/// Builds settings from quick-mode flags.
pub fn settings(q: &QuickFlags, s: &ServerFlags) -> Result<Settings, ConfigError> {
    let src = Source::CommandLine;
    let err = |m: &str| ConfigError {
        origin: "command line: ".into(),
        reason: m.into(),
    };
    let serves_files = q.tftp_root.is_some()
        || q.http_root.is_some()
        || q.http_port.is_some()
        || !q.iscsi_targets.is_empty();
    // Boot files alone (beside another DHCP server): no DHCP flag at all means DHCP is off.
    let dhcp = q.server_ip.is_some() || !q.pools.is_empty() || q.subnet.is_some();
    if !dhcp && !serves_files {
        return Err(err(
            "quick mode needs --server-ip and --pool for DHCP, or --tftp-root / --http-root / --iscsi-target to serve without DHCP (or use --config FILE)",
        ));
    }
    let mut file = FileConfig {
        server: ServerSection {
            address: s.address,
            port: s.port,
            interfaces: q.interface.iter().cloned().collect(),
            workers: s.workers,
            control_socket: s.control_socket.clone(),
            authoritative: Some(s.authoritative),
            compat_nak: Some(s.compat_nak),
            log_format: s.log_format.clone(),
            rx_coalesce: s.rx_coalesce.map(spanned),
            io: s.io.clone().map(spanned),
            ..ServerSection::default()
        },
        api: q.api.clone().map(|a| {
            spanned(crate::config::ApiSection {
                address: Some(a),
                token_file: None,
                read_open: Some(true),
            })
        }),
        sessions: q.no_boot_sessions.then(|| {
            spanned(crate::config::SessionsSection {
                enabled: Some(false),
                ..Default::default()
            })
        }),
        ..FileConfig::default()
    };
    if dhcp {
        let server_ip = q
            .server_ip
            .ok_or_else(|| err("quick mode needs --server-ip (or use --config FILE)"))?;
        if q.pools.is_empty() {
            return Err(err("quick mode needs at least one --pool FIRST-LAST"));
        }
        let subnet = match q.subnet {
            Some(c) => c,
            None => guess_subnet(server_ip, &q.pools).ok_or_else(|| {
                err("--pool is not in the /24 or /16 of --server-ip; give the network with --subnet")
            })?,
        };
        file.subnets.push(spanned(SubnetSection {
            network: Some(subnet),
            interface: q.interface.clone(),
            server_id: Some(server_ip),
            pools: q.pools.iter().copied().map(spanned).collect(),
            lease_time: q.lease_time,
            routers: q.router.into_iter().collect(),
            dns: q.dns.clone(),
            domain_name: q.domain.clone(),
            next_server: q.next_server,
            ..SubnetSection::default()
        }));
    }
    let mut rule = |name: &str, matcher: MatchSection, file_name: &Option<String>| {
        if let Some(f) = file_name {
            file.boot.push(spanned(BootSection {
                name: Some(name.into()),
                matcher,
                file: f.clone(),
                next_server: q.next_server,
                ..BootSection::default()
            }));
        }
    };
    // Most specific first: iPXE itself must get the script, or it chainloads itself forever.
    rule(
        "ipxe-script",
        MatchSection {
            user_class: Some("iPXE".into()),
            ..MatchSection::default()
        },
        &q.ipxe_script,
    );
    rule(
        "http-boot",
        MatchSection {
            arch: vec![ArchItem(vec![16, 19])],
            ..MatchSection::default()
        },
        &q.http_boot_url,
    );
    rule(
        "efi-x64",
        MatchSection {
            arch: vec![ArchItem(vec![7, 9])],
            ..MatchSection::default()
        },
        &q.boot_file_efi,
    );
    rule(
        "bios",
        MatchSection {
            arch: vec![ArchItem(vec![0])],
            ..MatchSection::default()
        },
        &q.boot_file_bios,
    );
    rule(
        "arm64",
        MatchSection {
            arch: vec![ArchItem(vec![11])],
            ..MatchSection::default()
        },
        &q.boot_file_arm64,
    );
    rule("default", MatchSection::default(), &q.boot_file);
    if q.tftp_root.is_some()
        || q.tftp_port.is_some()
        || q.tftp_upload_dir.is_some()
        || q.tftp_unique_root.is_some()
        || q.tftp_busy_poll.is_some()
    {
        file.tftp = Some(spanned(TftpSection {
            root: q.tftp_root.clone(),
            port: q.tftp_port,
            upload_dir: q.tftp_upload_dir.clone(),
            unique_root: q.tftp_unique_root.clone(),
            busy_poll: q.tftp_busy_poll,
            ..TftpSection::default()
        }));
    }
    if q.http_root.is_some() || q.http_port.is_some() {
        file.http = Some(spanned(HttpSection {
            root: q.http_root.clone(),
            port: q.http_port,
            ..HttpSection::default()
        }));
    }
    if q.lease_dir.is_some() || q.durability.is_some() || q.commit_delay.is_some() {
        file.leases = Some(spanned(LeasesSection {
            dir: q.lease_dir.clone(),
            durability: q.durability.clone(),
            commit_delay: q.commit_delay,
            ..LeasesSection::default()
        }));
    }
    if !q.iscsi_targets.is_empty() || q.iscsi_address.is_some() || q.iscsi_overlays.is_some() {
        let mut targets = Vec::new();
        for t in &q.iscsi_targets {
            let (name, path) = t
                .split_once('=')
                .ok_or_else(|| err(&format!("--iscsi-target {t}: IQN=FILE")))?;
            targets.push(spanned(crate::config::IscsiTargetSection {
                name: name.to_string(),
                file: PathBuf::from(path),
                overlays: q
                    .iscsi_overlays
                    .as_ref()
                    .map(|d| d.join(crate::overlay::file_stem(name))),
                ..Default::default()
            }));
        }
        if targets.is_empty() {
            return Err(err(
                "--iscsi-address and --iscsi-overlays need at least one --iscsi-target IQN=FILE",
            ));
        }
        file.iscsi = Some(spanned(crate::config::IscsiSection {
            address: q.iscsi_address.clone(),
            targets,
            ..Default::default()
        }));
    }
    validate(&src, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_example_flags_make_a_working_config() {
        let q = QuickFlags {
            interface: Some("bsS0".into()),
            server_ip: Some("198.18.0.1".parse().unwrap()),
            pools: vec!["198.18.1.1-198.18.1.254".parse().unwrap()],
            router: Some("198.18.0.1".parse().unwrap()),
            boot_file: Some("ipxe.efi".into()),
            ..QuickFlags::default()
        };
        let s = settings(&q, &ServerFlags::default()).unwrap();
        let sub = &s.dhcp.subnets[0];
        assert_eq!(
            (sub.network, sub.prefix),
            ("198.18.0.0".parse().unwrap(), 16)
        );
        assert_eq!(sub.interface.as_deref(), Some("bsS0"));
        assert_eq!(s.interfaces, ["bsS0"]);
        assert_eq!(s.dhcp.boot_rules.len(), 1);
        assert_eq!(s.dhcp.boot_rules[0].boot.file, "ipxe.efi");
    }

    #[test]
    fn flags_get_the_same_validation_as_files() {
        let q = QuickFlags {
            server_ip: Some("198.18.0.1".parse().unwrap()),
            pools: vec!["198.18.0.1-198.18.0.9".parse().unwrap()],
            ..QuickFlags::default()
        };
        let e = settings(&q, &ServerFlags::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line: pool 198.18.0.1-198.18.0.9 contains the server's own address 198.18.0.1"
        );
        let q = QuickFlags {
            pools: vec!["10.9.0.1-10.9.0.9".parse().unwrap()],
            ..q
        };
        assert!(
            settings(&q, &ServerFlags::default())
                .unwrap_err()
                .reason
                .contains("--subnet")
        );
    }

    #[test]
    fn api_and_session_flags_reach_the_settings() {
        let q = QuickFlags {
            tftp_root: Some(std::env::temp_dir()),
            api: Some("127.0.0.1:8080".into()),
            no_boot_sessions: true,
            ..QuickFlags::default()
        };
        let s = settings(&q, &ServerFlags::default()).unwrap();
        assert_eq!(s.api.address, Some("127.0.0.1:8080".parse().unwrap()));
        assert!(s.api.read_open && s.api.token.is_none());
        assert!(!s.sessions.enabled);
        // Without the flags: no TCP listener, sessions recorded.
        let q = QuickFlags {
            tftp_root: Some(std::env::temp_dir()),
            ..QuickFlags::default()
        };
        let s = settings(&q, &ServerFlags::default()).unwrap();
        assert!(s.api.address.is_none() && s.sessions.enabled);
        // A bad address is refused as a config file's would be.
        let q = QuickFlags {
            api: Some("localhost".into()),
            ..q
        };
        let e = settings(&q, &ServerFlags::default()).unwrap_err();
        assert!(e.reason.contains("localhost"), "{e}");
    }

    #[test]
    fn tftp_alone_needs_no_pool() {
        let q = QuickFlags {
            tftp_root: Some(std::env::temp_dir()),
            ..QuickFlags::default()
        };
        let s = settings(&q, &ServerFlags::default()).unwrap();
        assert!(!s.dhcp_enabled && s.tftp.is_some());
        // Half the DHCP flags is still an error.
        let q = QuickFlags {
            server_ip: Some("198.18.0.1".parse().unwrap()),
            ..q
        };
        assert!(
            settings(&q, &ServerFlags::default())
                .unwrap_err()
                .reason
                .contains("--pool")
        );
        assert!(
            settings(&QuickFlags::default(), &ServerFlags::default())
                .unwrap_err()
                .reason
                .contains("--tftp-root")
        );
    }
}
