//! Validation of a parsed configuration into [`Settings`]: one function per section, each
//! checking the relations between its fields (a pool outside its subnet, a reservation in no
//! subnet, an upload directory holding the root) and answering with the span of its table.

use super::options::{check_boot_file, matcher, option_set};
use super::*;

/// The boot fields of a `[[boot]]` rule or a reservation's `boot` (two tables with the same
/// fields), borrowed from either.
macro_rules! boot_in {
    ($b:expr) => {
        BootIn {
            file: &$b.file,
            next_server: $b.next_server,
            server_name: &$b.server_name,
            root_path: &$b.root_path,
            iscsi_target: &$b.iscsi_target,
            initiator_iqn: &$b.initiator_iqn,
        }
    };
}

/// Validates a parsed file (or flags turned into one) into [`Settings`], one section at a time.
pub fn validate(src: &Source<'_>, file: FileConfig) -> Result<Settings, ConfigError> {
    let s = &file.server;
    let mut warnings = Vec::new();
    let (log_format, log_level) = logging(src, s)?;
    let (workers, rx_coalesce) = threads(src, s)?;
    let (io, xdp) = io_path(src, &file)?;
    let mut dhcp = dhcp_globals(src, &file)?;
    // Boot files alone (beside another DHCP server, as tftpd-hpa is used) need no subnet; then
    // no DHCP socket is opened at all.
    let dhcp_enabled = !file.subnets.is_empty();
    if !dhcp_enabled {
        without_dhcp(src, &file, &mut warnings)?;
    }
    let mut all_ranges: Vec<(IpRange, Range<usize>)> = Vec::new();
    for sp in &file.subnets {
        let sn = subnet(src, sp, &mut all_ranges, &dhcp.subnets)?;
        dhcp.subnets.push(sn);
    }
    let iscsi = match &file.iscsi {
        Some(sp) => Some(iscsi_settings(src, sp)?),
        None => None,
    };
    for sp in &file.reservations {
        let r = reservation(src, sp, &dhcp.subnets, &dhcp.reservations, iscsi.as_ref())?;
        dhcp.reservations.push(r);
    }
    for (i, sp) in file.boot.iter().enumerate() {
        let rule = boot_rule(src, i, sp, &dhcp.subnets, iscsi.as_ref(), &mut warnings)?;
        dhcp.boot_rules.push(rule);
    }
    for (i, sp) in file.classes.iter().enumerate() {
        let class = class(src, i, sp, &dhcp.subnets)?;
        dhcp.classes.push(class);
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
        Some(sp) => Some(http_settings(src, sp, s, tftp.as_ref())?),
        None => None,
    };
    let leases = match &file.leases {
        Some(sp) => Some(lease_settings(src, sp)?),
        None => None,
    };
    let sessions = match &file.sessions {
        Some(sp) => session_settings(src, sp)?,
        None => SessionSettings::default(),
    };
    let api = match &file.api {
        Some(sp) => api_settings(src, sp)?,
        None => crate::api::ApiSettings::default(),
    };
    Ok(Settings {
        dhcp_enabled,
        iscsi,
        sessions,
        api,
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
        io,
        xdp,
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

/// `[api]`: the TCP address is checked, the token file read (and its mode: a token others can
/// read is refused).
fn api_settings(
    src: &Source<'_>,
    sp: &Spanned<crate::config::ApiSection>,
) -> Result<crate::api::ApiSettings, ConfigError> {
    let (a, span) = (sp.get_ref(), sp.span());
    let address = match &a.address {
        Some(t) => Some(t.parse::<std::net::SocketAddr>().map_err(|_| {
            src.error(
                Some(span.clone()),
                format!("[api] address '{t}': expected ADDR:PORT (198.18.0.1:8067)"),
            )
        })?),
        None => None,
    };
    let token = match &a.token_file {
        Some(f) => {
            use std::os::unix::fs::PermissionsExt;
            let what = |e: String| {
                src.error(
                    Some(span.clone()),
                    format!("[api] token_file {}: {e}", f.display()),
                )
            };
            let meta = std::fs::metadata(f).map_err(|e| what(e.to_string()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(what(
                    "readable by others than its owner (chmod 600 it)".into(),
                ));
            }
            let text = std::fs::read_to_string(f).map_err(|e| what(e.to_string()))?;
            let t = text.trim();
            if t.len() < 16 || t.chars().any(char::is_whitespace) {
                return Err(what(
                    "expected one token of at least 16 characters, no spaces".into(),
                ));
            }
            Some(t.to_string())
        }
        None => None,
    };
    Ok(crate::api::ApiSettings {
        address,
        token,
        read_open: a.read_open.unwrap_or(false),
    })
}

/// `[sessions]`.
fn session_settings(
    src: &Source<'_>,
    sp: &Spanned<SessionsSection>,
) -> Result<SessionSettings, ConfigError> {
    let (s, span) = (sp.get_ref(), sp.span());
    let d = SessionSettings::default();
    let live = s.live.unwrap_or(d.live);
    let recent = s.recent.unwrap_or(d.recent);
    // Each session is a few hundred bytes with its timeline: a million is ~1 GiB.
    if live == 0 || live > 1_000_000 {
        return Err(src.error(
            Some(span),
            format!("[sessions] live = {live}: expected 1-1000000"),
        ));
    }
    if recent > 1_000_000 {
        return Err(src.error(
            Some(span),
            format!("[sessions] recent = {recent}: expected 0-1000000"),
        ));
    }
    let idle = s.idle.map_or(d.idle, |i| i.0);
    if idle < Duration::from_secs(1) {
        return Err(src.error(Some(span), "[sessions] idle must be at least 1s"));
    }
    Ok(SessionSettings {
        enabled: s.enabled.unwrap_or(true),
        live,
        recent,
        idle,
    })
}

/// `[server] log_format` and `log_level`.
fn logging(
    src: &Source<'_>,
    s: &ServerSection,
) -> Result<(LogFormat, Option<String>), ConfigError> {
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
    Ok((log_format, log_level))
}

/// `[server] workers` and `rx_coalesce`.
fn threads(
    src: &Source<'_>,
    s: &ServerSection,
) -> Result<(usize, std::time::Duration), ConfigError> {
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
    Ok((workers, rx_coalesce))
}

/// `[server] io` and `[xdp]`.
fn io_path(src: &Source<'_>, file: &FileConfig) -> Result<(IoMode, XdpSettings), ConfigError> {
    let io = match &file.server.io {
        Some(v) => v
            .get_ref()
            .parse()
            .map_err(|e: String| src.error(Some(v.span()), format!("[server] {e}")))?,
        None => IoMode::Socket,
    };
    let mut x = XdpSettings::default();
    if let Some(sp) = &file.xdp {
        let span = Some(sp.span());
        let t = sp.get_ref();
        x.mac_rate = (
            t.mac_rate.unwrap_or(x.mac_rate.0),
            t.mac_burst.unwrap_or(x.mac_rate.1),
        );
        x.relay_rate = (
            t.relay_rate.unwrap_or(x.relay_rate.0),
            t.relay_burst.unwrap_or(x.relay_rate.1),
        );
        for (what, (rate, burst)) in [("mac", x.mac_rate), ("relay", x.relay_rate)] {
            if rate > 0 && burst == 0 {
                return Err(src.error(
                    span,
                    format!("[xdp] {what}_burst = 0 with {what}_rate = {rate}: nothing would ever be admitted (a rate of 0 turns the limit off)"),
                ));
            }
        }
        if let Some(w) = t.retransmit_window {
            x.retransmit_window =
                (w.0.as_millis() > 0).then(|| std::time::Duration::from_millis(w.0.as_millis()));
        }
        if let Some(c) = t.check_destination {
            x.check_destination = c;
        }
        if let Some(n) = t.rx_frames {
            if !(2048..=65536).contains(&n) || !n.is_power_of_two() {
                return Err(src.error(
                    span,
                    format!("[xdp] rx_frames = {n}: a power of two from 2048 to 65536"),
                ));
            }
            x.rx_frames = n;
        }
        if io == IoMode::Socket {
            return Err(src.error(
                span,
                "[xdp] configures the fast path, but [server] io is \"socket\" (set io = \"auto\" or \"xdp\")",
            ));
        }
    }
    io.check_interfaces(&file.server.interfaces, !file.subnets.is_empty())
        .map_err(|e| {
            let span = file.server.io.as_ref().map(|v| v.span());
            src.error(span, format!("[server] io = \"auto\" or \"xdp\" {e}"))
        })?;
    Ok((io, x))
}

/// The DHCP core's settings from `[server]` and `[admission]`.
fn dhcp_globals(src: &Source<'_>, file: &FileConfig) -> Result<ServerConfig, ConfigError> {
    let s = &file.server;
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
    Ok(dhcp)
}

/// What needs DHCP when there is no `[[subnet]]`: refused, or warned about.
fn without_dhcp(
    src: &Source<'_>,
    file: &FileConfig,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    // Boot files alone (beside another DHCP server, as tftpd-hpa is used) need no subnet; then
    // no DHCP socket is opened at all.
    if file.tftp.is_none() && file.http.is_none() && file.iscsi.is_none() {
        return Err(src.error(
            None,
            "nothing to serve: no [[subnet]] (for DHCP), [tftp], [http] or [iscsi] section",
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
        warnings.push("[[boot]] rules do nothing without a [[subnet]]: DHCP is off".to_string());
    }

    Ok(())
}

/// One `[[subnet]]`: its pools (inside it, overlapping no other pool, not holding the server's
/// address), lease times and options; `configured` are the subnets before it.
fn subnet(
    src: &Source<'_>,
    sp: &Spanned<SubnetSection>,
    all_ranges: &mut Vec<(IpRange, Range<usize>)>,
    configured: &[core::Subnet],
) -> Result<core::Subnet, ConfigError> {
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
    core_net.options = subnet_options(src, sn)?;
    if let Some(dup) = configured
        .iter()
        .find(|s| s.network == core_net.network && s.prefix == core_net.prefix)
    {
        return Err(src.error(
            span,
            format!("subnet {}/{} is configured twice", dup.network, dup.prefix),
        ));
    }
    Ok(core_net)
}

/// A subnet's options: its named fields (routers, dns, ...) and its extra options.
fn subnet_options(src: &Source<'_>, sn: &SubnetSection) -> Result<OptionSet, ConfigError> {
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
    Ok(options)
}

/// One `[[reservation]]`, against the subnets and the reservations before it.
fn reservation(
    src: &Source<'_>,
    sp: &Spanned<ReservationSection>,
    subnets: &[core::Subnet],
    reservations: &[core::Reservation],
    iscsi: Option<&crate::iscsid::IscsiSettings>,
) -> Result<core::Reservation, ConfigError> {
    let span = Some(sp.span());
    let r = sp.get_ref();
    let addr = r
        .address
        .ok_or_else(|| src.error(span.clone(), "reservation needs address"))?;
    if r.mac.is_none() && r.client_id.is_none() {
        return Err(src.error(span, format!("reservation {addr} needs mac or client_id")));
    }
    if !subnets.iter().any(|s| s.contains(addr)) {
        return Err(src.error(
            span,
            format!("reservation {addr} is in no configured subnet"),
        ));
    }
    if reservations.iter().any(|o| o.addr == addr) {
        return Err(src.error(span, format!("address {addr} is reserved twice")));
    }
    if let Some(m) = r.mac
        && reservations.iter().any(|o| o.hwaddr == Some(m.0))
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
        Some(b) => Some(boot_settings(src, span.clone(), boot_in!(b), iscsi)?),
        None => None,
    };
    Ok(core::Reservation {
        hwaddr: r.mac.map(|m| m.0),
        client_id: r.client_id.as_ref().map(|h| h.0.clone().into()),
        addr,
        hostname: r.hostname.clone(),
        options: option_set(src, &r.options)?,
        boot,
    })
}

/// The boot fields of a `[[boot]]` rule or a reservation's `boot`.
struct BootIn<'a> {
    file: &'a str,
    next_server: Option<Ipv4Addr>,
    server_name: &'a Option<String>,
    root_path: &'a Option<String>,
    iscsi_target: &'a Option<String>,
    initiator_iqn: &'a Option<String>,
}

/// Checks boot fields and derives what they imply: `iscsi_target` names a target of this
/// server, whose RFC 4173 root path (`iscsi:SERVER::PORT::IQN`) becomes option 17 unless
/// `root_path` is given; `{mac}` and `{server}` are the only templates.
fn boot_settings(
    src: &Source<'_>,
    span: Option<Range<usize>>,
    b: BootIn<'_>,
    iscsi: Option<&crate::iscsid::IscsiSettings>,
) -> Result<core::Boot, ConfigError> {
    check_boot_file(b.file).map_err(|e| src.error(span.clone(), e))?;
    let templates = |what: &str, t: &str, allowed: &[&str]| -> Result<(), ConfigError> {
        let mut rest = t;
        while let Some(i) = rest.find('{') {
            let tail = &rest[i..];
            match allowed.iter().find(|a| tail.starts_with(*a)) {
                Some(a) => rest = &tail[a.len()..],
                None => {
                    return Err(src.error(
                        span.clone(),
                        format!(
                            "{what} = \"{t}\": only {} may be replaced",
                            allowed.join(" and ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    };
    if let Some(rp) = b.root_path {
        templates("root_path", rp, &["{server}", "{mac}"])?;
    }
    if let Some(iqn) = b.initiator_iqn {
        templates("initiator_iqn", iqn, &["{mac}"])?;
        if !valid_iqn(&iqn.replace("{mac}", "52-54-00-00-00-00")) {
            return Err(src.error(
                span.clone(),
                format!("initiator_iqn = \"{iqn}\": not an iSCSI name (iqn.YYYY-MM.domain:name, {{mac}} allowed)"),
            ));
        }
    }
    let mut root_path = b.root_path.clone();
    if let Some(t) = b.iscsi_target {
        let Some(target) =
            iscsi.and_then(|i| i.targets.iter().find(|x| x.name == *t).map(|x| (i, x)))
        else {
            return Err(src.error(
                span,
                format!(
                    "iscsi_target = \"{t}\": no [[iscsi.target]] of this server has that name (for a target elsewhere, set root_path = \"iscsi:SERVER::::IQN\")"
                ),
            ));
        };
        if root_path.is_none() {
            let (i, x) = target;
            // The address the target listens on, else the boot server's (as TFTP's is).
            let server = if i.listen.ip().is_unspecified() {
                "{server}".to_string()
            } else {
                i.listen.ip().to_string()
            };
            let port = if i.listen.port() == 3260 {
                String::new()
            } else {
                i.listen.port().to_string()
            };
            root_path = Some(format!("iscsi:{server}::{port}::{}", x.name));
        }
    }
    Ok(core::Boot {
        file: b.file.to_string(),
        next_server: b.next_server,
        server_name: b.server_name.clone(),
        root_path,
        iscsi_target: b.iscsi_target.clone(),
        initiator_iqn: b.initiator_iqn.clone(),
    })
}

/// The `i`th `[[boot]]` rule.
fn boot_rule(
    src: &Source<'_>,
    i: usize,
    sp: &Spanned<BootSection>,
    subnets: &[core::Subnet],
    iscsi: Option<&crate::iscsid::IscsiSettings>,
    warnings: &mut Vec<String>,
) -> Result<core::BootRule, ConfigError> {
    let span = Some(sp.span());
    let b = sp.get_ref();
    let boot = boot_settings(src, span.clone(), boot_in!(b), iscsi)?;
    let m = matcher(&b.matcher, subnets).map_err(|e| src.error(span.clone(), e))?;
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
    Ok(core::BootRule {
        name,
        matcher: m,
        boot,
        options: option_set(src, &b.options)?,
    })
}

/// The `i`th `[[class]]`.
fn class(
    src: &Source<'_>,
    i: usize,
    sp: &Spanned<ClassSection>,
    subnets: &[core::Subnet],
) -> Result<core::Class, ConfigError> {
    let span = Some(sp.span());
    let c = sp.get_ref();
    let m = matcher(&c.matcher, subnets).map_err(|e| src.error(span, e))?;
    Ok(core::Class {
        name: c.name.clone().unwrap_or_else(|| format!("class#{}", i + 1)),
        matcher: m,
        options: option_set(src, &c.options)?,
    })
}

/// `[http]`; its root defaults to the TFTP root.
fn http_settings(
    src: &Source<'_>,
    sp: &Spanned<HttpSection>,
    s: &ServerSection,
    tftp: Option<&crate::tftpd::TftpSettings>,
) -> Result<crate::httpd::HttpSettings, ConfigError> {
    let h = sp.get_ref();
    let root = h
        .root
        .clone()
        .or_else(|| tftp.map(|t| t.root.clone()))
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
    Ok(hs)
}

/// `[leases]`.
fn lease_settings(
    src: &Source<'_>,
    sp: &Spanned<LeasesSection>,
) -> Result<bootstorm_journal::Settings, ConfigError> {
    let l = sp.get_ref();
    let span = Some(sp.span());
    let dir = l
        .dir
        .clone()
        .ok_or_else(|| src.error(span.clone(), "[leases] needs dir = \"/var/lib/bootstorm\""))?;
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
    Ok(bootstorm_journal::Settings {
        dir,
        durability,
        segment_max,
        commit_delay,
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

/// `[iscsi]` and its targets.
fn iscsi_settings(
    src: &Source<'_>,
    sp: &Spanned<crate::config::IscsiSection>,
) -> Result<crate::iscsid::IscsiSettings, ConfigError> {
    use crate::iscsid::{
        Chap, DEFAULT_LISTEN, IscsiSettings, OverlayKey, OverlaySettings, TargetSettings,
    };
    let sec = sp.get_ref();
    let listen = match &sec.address {
        Some(a) => parse_listen(a).ok_or_else(|| {
            src.error(
                Some(sp.span()),
                format!("[iscsi] address = \"{a}\": ADDR:PORT or ADDR (port 3260), IPv4"),
            )
        })?,
        None => DEFAULT_LISTEN,
    };
    let chap = |what: &str,
                user: &Option<String>,
                secret: &Option<String>,
                span: std::ops::Range<usize>|
     -> Result<Option<(String, Vec<u8>)>, ConfigError> {
        match (user, secret) {
            (None, None) => Ok(None),
            (Some(u), Some(s)) => {
                // RFC 7143 12.1.3: secrets of at least 96 bits; 16 bytes is what initiators
                // such as open-iscsi take at most.
                if !(12..=16).contains(&s.len()) {
                    return Err(src.error(
                        Some(span),
                        format!("{what} secret: 12 to 16 characters (RFC 7143 12.1.3 asks at least 96 bits), not {}", s.len()),
                    ));
                }
                Ok(Some((u.clone(), s.as_bytes().to_vec())))
            }
            _ => Err(src.error(
                Some(span),
                format!("{what}: a user needs a secret and a secret a user"),
            )),
        }
    };
    let discovery_chap = chap(
        "[iscsi] discovery_chap",
        &sec.discovery_chap_user,
        &sec.discovery_chap_secret,
        sp.span(),
    )?
    .map(|(user, secret)| Chap {
        user,
        secret,
        mutual: None,
    });
    let mut targets: Vec<TargetSettings> = Vec::new();
    for t in &sec.targets {
        let span = t.span();
        let t = t.get_ref();
        if !valid_iqn(&t.name) {
            return Err(src.error(
                Some(span),
                format!("[[iscsi.target]] name = \"{}\": an iSCSI name (iqn.YYYY-MM.domain[:name] or eui.HEX16)", t.name),
            ));
        }
        if targets.iter().any(|x| x.name == t.name) {
            return Err(src.error(Some(span), format!("[[iscsi.target]] {} twice", t.name)));
        }
        if !t.file.exists() {
            return Err(src.error(
                Some(span),
                format!(
                    "[[iscsi.target]] {}: file {} does not exist",
                    t.name,
                    t.file.display()
                ),
            ));
        }
        let initiator = chap(
            "[[iscsi.target]] chap",
            &t.chap_user,
            &t.chap_secret,
            span.clone(),
        )?;
        let mutual = chap(
            "[[iscsi.target]] mutual",
            &t.mutual_user,
            &t.mutual_secret,
            span.clone(),
        )?;
        if mutual.is_some() && initiator.is_none() {
            return Err(src.error(
                Some(span),
                "[[iscsi.target]] mutual CHAP needs chap_user and chap_secret too",
            ));
        }
        let read_only = t.read_only.unwrap_or(false);
        let key = match t.overlay_key.as_deref() {
            None | Some("initiator") => OverlayKey::Initiator,
            Some("mac") => OverlayKey::Mac,
            Some(k) => {
                return Err(src.error(
                    Some(span),
                    format!(
                        "[[iscsi.target]] {}: overlay_key = \"{k}\": \"initiator\" or \"mac\"",
                        t.name
                    ),
                ));
            }
        };
        let overlays = match &t.overlays {
            None if t.overlay_key.is_some() => {
                return Err(src.error(
                    Some(span),
                    format!(
                        "[[iscsi.target]] {}: overlay_key needs overlays = DIR",
                        t.name
                    ),
                ));
            }
            None => None,
            Some(_) if read_only => {
                return Err(src.error(
                    Some(span),
                    format!(
                        "[[iscsi.target]] {}: read_only with overlays: a read-only disk writes nothing to overlay (drop one of them)",
                        t.name
                    ),
                ));
            }
            Some(dir) if dir.exists() && !dir.is_dir() => {
                return Err(src.error(
                    Some(span),
                    format!(
                        "[[iscsi.target]] {}: overlays = {}: not a directory",
                        t.name,
                        dir.display()
                    ),
                ));
            }
            Some(dir) => Some(OverlaySettings {
                dir: dir.clone(),
                key,
            }),
        };
        targets.push(TargetSettings {
            name: t.name.clone(),
            file: t.file.clone(),
            read_only,
            chap: initiator.map(|(user, secret)| Chap {
                user,
                secret,
                mutual,
            }),
            initiators: t.initiators.clone(),
            overlays,
            direct: t.direct,
        });
    }
    if targets.is_empty() {
        return Err(src.error(Some(sp.span()), "[iscsi] has no [[iscsi.target]]"));
    }
    let io = match sec.io.as_deref() {
        None | Some("io_uring") => crate::iscsid::IoEngine::Uring,
        Some("pread") => crate::iscsid::IoEngine::Pread,
        Some(x) => {
            return Err(src.error(
                Some(sp.span()),
                format!("[iscsi] io = \"{x}\": \"io_uring\" or \"pread\""),
            ));
        }
    };
    if let Some(t) = sec.targets.iter().find(|t| {
        let t = t.get_ref();
        t.direct == Some(true) && t.overlays.is_some()
    }) {
        return Err(src.error(
            Some(t.span()),
            format!(
                "[[iscsi.target]] {}: direct with overlays: a golden image is read by many machines and belongs in the page cache",
                t.get_ref().name
            ),
        ));
    }
    Ok(IscsiSettings {
        listen,
        targets,
        discovery_chap,
        io,
        inline: sec.inline.unwrap_or(true),
        login_timeout: match sec.login_timeout {
            None => crate::iscsid::DEFAULT_LOGIN_TIMEOUT,
            Some(d) if (1000..=600_000).contains(&d.0.as_millis()) => {
                std::time::Duration::from_millis(d.0.as_millis())
            }
            Some(_) => {
                return Err(src.error(Some(sp.span()), "[iscsi] login_timeout: 1s to 10m"));
            }
        },
    })
}

/// `ADDR:PORT` or `ADDR` (port 3260).
pub fn parse_listen(a: &str) -> Option<SocketAddrV4> {
    a.parse::<SocketAddrV4>().ok().or_else(|| {
        a.parse::<Ipv4Addr>()
            .ok()
            .map(|ip| SocketAddrV4::new(ip, 3260))
    })
}

/// An iSCSI name as RFC 7143 4.2.7 writes them: `iqn.YYYY-MM.` and a reversed domain, or
/// `eui.` and 16 hex digits, or `naa.` and 16 or 32 hex digits; at most 223 bytes, no spaces.
pub fn valid_iqn(name: &str) -> bool {
    if name.len() > 223 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let hex = |s: &str, lens: &[usize]| {
        lens.contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
    };
    if let Some(rest) = name.strip_prefix("iqn.") {
        let b = rest.as_bytes();
        return b.len() > 8
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[5..7].iter().all(u8::is_ascii_digit)
            && b[7] == b'.';
    }
    if let Some(h) = name.strip_prefix("eui.") {
        return hex(h, &[16]);
    }
    if let Some(h) = name.strip_prefix("naa.") {
        return hex(h, &[16, 32]);
    }
    false
}
