use super::*;

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

fn check(text: &str) -> Result<Settings, String> {
    parse(Path::new("bootstorm.toml"), text).map_err(|e| e.to_string())
}

const GOOD: &str = r#"
[server]
port = 6767
workers = 2
offer_hold = "20s"

[[subnet]]
network = "198.18.0.0/16"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.1.254"]
lease_time = "2h"
routers = ["198.18.0.1"]
dns = ["198.18.0.53"]
domain_name = "lab.example"
routes = [{ network = "198.19.0.0/16", router = "198.18.0.2" }]
options = [{ code = 252, type = "string", value = "http://198.18.0.1/wpad.dat" }]

[[reservation]]
mac = "52:54:00:00:00:07"
address = "198.18.0.7"
hostname = "node7"

[[boot]]
match = { user_class = "iPXE" }
file = "http://198.18.0.1/boot.ipxe"

[[boot]]
match = { arch = ["efi-x64"] }
file = "ipxe.efi"
"#;

#[test]
fn good_config_parses() {
    let s = check(GOOD).unwrap();
    assert_eq!(s.listen.port(), 6767);
    assert_eq!(s.workers, 2);
    assert_eq!(s.dhcp.offer_hold, Duration::from_secs(20));
    let sub = &s.dhcp.subnets[0];
    assert_eq!(sub.lease_time, Duration::from_secs(7200));
    assert_eq!(
        sub.options.get(252).unwrap().data[..],
        b"http://198.18.0.1/wpad.dat"[..]
    );
    assert_eq!(
        sub.options.get(opt::CLASSLESS_ROUTES).unwrap().data[..],
        [16, 198, 19, 198, 18, 0, 2]
    );
    assert_eq!(s.dhcp.boot_rules[1].matcher.arch, [7, 9]);
    assert_eq!(
        s.dhcp.reservations[0].hwaddr,
        Some([0x52, 0x54, 0, 0, 0, 7])
    );
    assert!(s.warnings.is_empty());
}

#[test]
fn errors_name_file_line_and_reason() {
    let bad_ip = GOOD.replace(
        r#"server_id = "198.18.0.1""#,
        r#"server_id = "198.18.0.300""#,
    );
    let e = check(&bad_ip).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "bootstorm.toml:{}:",
            line_of(&bad_ip, "server_id")
        )),
        "{e}"
    );
    assert!(
        e.contains("198.18.0.300") || e.contains("invalid IPv4"),
        "{e}"
    );

    let outside = GOOD.replace("198.18.1.1-198.18.1.254", "198.18.1.1-198.20.0.1");
    let e = check(&outside).unwrap_err();
    let l = line_of(&outside, "pools");
    assert_eq!(
        e,
        format!(
            "bootstorm.toml:{l}:10: pool 198.18.1.1-198.20.0.1 is not inside subnet 198.18.0.0/16"
        )
    );

    let host_bits = GOOD.replace("198.18.0.0/16", "198.18.0.1/16");
    let e = check(&host_bits).unwrap_err();
    let l = line_of(&host_bits, "network");
    assert!(
        e.starts_with(&format!("bootstorm.toml:{l}:")) && e.contains("did you mean 198.18.0.0/16"),
        "{e}"
    );

    let unknown = GOOD.replace("workers = 2", "wrokers = 2");
    let e = check(&unknown).unwrap_err();
    let l = line_of(&unknown, "wrokers");
    assert!(
        e.starts_with(&format!("bootstorm.toml:{l}:1:")) && e.contains("wrokers"),
        "{e}"
    );

    let bad_dur = GOOD.replace(r#""20s""#, r#""20 parsecs""#);
    assert!(check(&bad_dur).unwrap_err().contains("unknown unit"));

    let bad_arch = GOOD.replace(r#"["efi-x64"]"#, r#"["efi-x65"]"#);
    let e = check(&bad_arch).unwrap_err();
    let l = line_of(&bad_arch, "efi-x65");
    assert!(
        e.starts_with(&format!("bootstorm.toml:{l}:"))
            && e.contains("unknown architecture 'efi-x65'"),
        "{e}"
    );

    let bad_opt = GOOD.replace(r#"type = "string""#, r#"type = "ip""#);
    let e = check(&bad_opt).unwrap_err();
    let l = line_of(&bad_opt, "code = 252");
    assert!(
        e.starts_with(&format!("bootstorm.toml:{l}:")) && e.contains("IPv4 address"),
        "{e}"
    );

    let managed = GOOD.replace("code = 252", "code = 54");
    assert!(
        check(&managed)
            .unwrap_err()
            .contains("managed by the server")
    );

    let orphan = GOOD.replace(r#"address = "198.18.0.7""#, r#"address = "10.0.0.7""#);
    let e = check(&orphan).unwrap_err();
    let l = line_of(&orphan, "[[reservation]]");
    assert!(
        e.starts_with(&format!("bootstorm.toml:{l}:")) && e.contains("in no configured subnet"),
        "{e}"
    );

    let toml_syntax = GOOD.replace("[server]", "[server");
    assert!(
        check(&toml_syntax)
            .unwrap_err()
            .starts_with("bootstorm.toml:2:")
    );
    // Durations: plain seconds, units, and compound forms.
    assert_eq!("90".parse::<Dur>().unwrap().0, Duration::from_secs(90));
    assert_eq!(
        "10h30m".parse::<Dur>().unwrap().0,
        Duration::from_secs(37800)
    );
    assert!(
        "10x".parse::<Dur>().is_err() && "h".parse::<Dur>().is_err() && "".parse::<Dur>().is_err()
    );

    assert!(check("").unwrap_err().contains("no [[subnet]]"));
}

#[test]
fn half_matched_uefi_architectures_warn() {
    let s = check(&GOOD.replace(r#"["efi-x64"]"#, "[7]")).unwrap();
    assert_eq!(s.warnings.len(), 1);
    assert!(
        s.warnings[0].contains("matches architecture 7 but not 9"),
        "{}",
        s.warnings[0]
    );
}

#[test]
fn overlapping_pools_are_refused() {
    let two = GOOD.replace(
        r#"pools = ["198.18.1.1-198.18.1.254"]"#,
        r#"pools = ["198.18.1.1-198.18.1.254", "198.18.1.200-198.18.2.10"]"#,
    );
    assert!(check(&two).unwrap_err().contains("overlaps"));
}

#[test]
fn example_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let s = load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert!(s.warnings.is_empty(), "{}: {:?}", p.display(), s.warnings);
            n += 1;
        }
    }
    assert!(n >= 2);
}

#[test]
fn tftp_uploads_and_unique_roots_are_checked() {
    let base = std::env::temp_dir().join(format!("bs-cfg-upload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("boot/up")).unwrap();
    std::fs::create_dir_all(base.join("uploads")).unwrap();
    let with = |extra: &str| {
        check(&format!(
            "{GOOD}\n[tftp]\nroot = \"{}\"\n{extra}\n",
            base.join("boot").display()
        ))
    };
    let s = with(&format!(
        "upload_dir = \"{}\"\nunique_root = \"mac\"\nmax_upload_size = 1000",
        base.join("uploads").display()
    ))
    .unwrap();
    let t = s.tftp.unwrap();
    let up = t.upload.unwrap();
    assert_eq!(up.dir, base.join("uploads").canonicalize().unwrap());
    assert_eq!((up.overwrite, up.max_size), (false, 1000));
    assert_eq!(t.unique_root, Some(crate::tftpd::UniqueRoot::Mac));
    // A subdirectory of the root is allowed (uploads then become downloadable).
    assert!(
        with(&format!(
            "upload_dir = \"{}\"",
            base.join("boot/up").display()
        ))
        .is_ok()
    );
    // The root itself, or a directory holding it, is not: uploads could replace boot files.
    for bad in [base.join("boot"), base.clone()] {
        let e = with(&format!("upload_dir = \"{}\"", bad.display())).unwrap_err();
        assert!(e.contains("separate directory"), "{e}");
    }
    let e = with("upload_dir = \"/nonexistent/bootstorm\"").unwrap_err();
    assert!(e.contains("is not a directory"), "{e}");
    let e = with("upload_overwrite = true").unwrap_err();
    assert!(e.contains("need upload_dir"), "{e}");
    let e = with("unique_root = \"hostname\"").unwrap_err();
    assert!(
        e.starts_with("bootstorm.toml:") && e.contains("expected \"ip\" or \"mac\""),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn rx_coalesce_is_checked() {
    let ms = std::time::Duration::from_millis;
    assert_eq!(check(GOOD).unwrap().rx_coalesce, ms(1));
    let with =
        |v: &str| check(&GOOD.replacen("[server]", &format!("[server]\nrx_coalesce = {v}"), 1));
    assert_eq!(with("0").unwrap().rx_coalesce, ms(0));
    assert_eq!(with("\"3ms\"").unwrap().rx_coalesce, ms(3));
    let text = GOOD.replacen("[server]", "[server]\nrx_coalesce = \"50ms\"", 1);
    let e = check(&text).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "bootstorm.toml:{}:",
            line_of(&text, "rx_coalesce")
        )) && e.contains("at most 10ms"),
        "{e}"
    );
}

#[test]
fn session_caps_are_read_and_checked() {
    let with = |extra: &str| check(&format!("{GOOD}\n[sessions]\n{extra}\n"));
    assert_eq!(check(GOOD).unwrap().sessions, SessionSettings::default());
    let s = with("enabled = false\nlive = 500\nrecent = 0\nidle = \"2m\"")
        .unwrap()
        .sessions;
    assert_eq!(
        s,
        SessionSettings {
            enabled: false,
            live: 500,
            recent: 0,
            idle: Duration::from_secs(120)
        }
    );
    let text = format!("{GOOD}\n[sessions]\nlive = 0\n");
    let e = check(&text).unwrap_err();
    let line = line_of(&text, "[sessions]");
    assert!(e.starts_with(&format!("bootstorm.toml:{line}:")), "{e}");
    assert!(e.contains("live = 0: expected 1-1000000"), "{e}");
    assert!(with("idle = \"0s\"").unwrap_err().contains("at least 1s"));
    assert!(with("recent = 2000000").unwrap_err().contains("recent"));
    assert!(with("lve = 5").unwrap_err().contains("unknown field"));
}

#[test]
fn lease_journal_settings_are_checked() {
    let with = |extra: &str| {
        check(&format!(
            "{GOOD}\n[leases]\ndir = \"/var/lib/bootstorm\"\n{extra}\n"
        ))
    };
    let l = with("").unwrap().leases.unwrap();
    assert_eq!(l.durability, bootstorm_journal::Durability::Fsync);
    assert_eq!(l.commit_delay, std::time::Duration::from_millis(5));
    let l = with("commit_delay = 0\ndurability = \"write\"")
        .unwrap()
        .leases
        .unwrap();
    assert_eq!(l.commit_delay, std::time::Duration::ZERO);
    assert_eq!(l.durability, bootstorm_journal::Durability::Write);
    let e = with("commit_delay = \"1s\"").unwrap_err();
    assert!(e.contains("at most 100ms"), "{e}");
    let e = with("durability = \"sometimes\"").unwrap_err();
    assert!(e.contains("bootstorm.toml:"), "{e}");
    let e = with("segment_size = 100").unwrap_err();
    assert!(e.contains("4096"), "{e}");
    let e = check(&format!("{GOOD}\n[leases]\ndurability = \"none\"\n")).unwrap_err();
    assert!(e.contains("needs dir"), "{e}");
}

#[test]
fn admission_limits_are_read_and_checked() {
    let s = check(GOOD).unwrap();
    assert_eq!(s.dhcp.admission, bootstorm_dhcp::AdmissionConfig::default());
    let s = check(&format!(
        "{GOOD}\n[admission]\nrelay_rate = 300\nrelay_burst = 900\ninterface_rate = 0\n"
    ))
    .unwrap();
    assert_eq!(
        s.dhcp.admission.relay,
        bootstorm_dhcp::Rate {
            per_sec: 300,
            burst: 900
        }
    );
    assert_eq!(s.dhcp.admission.interface.per_sec, 0);
    let text = format!("{GOOD}\n[admission]\nrelay_burst = 0\n");
    let e = check(&text).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "bootstorm.toml:{}:",
            line_of(&text, "[admission]")
        )),
        "{e}"
    );
    assert!(e.contains("relay_burst = 0"), "{e}");
    let e = check(&format!("{GOOD}\n[admission]\nrelay_rat = 1\n")).unwrap_err();
    assert!(e.contains("relay_rat"), "{e}");
}

/// Regression (issue 12.12): TFTP or HTTP alone, beside an existing DHCP server as tftpd-hpa is
/// used, was refused ("no [[subnet]]"). Now DHCP is simply off.
#[test]
fn boot_files_alone_need_no_subnet() {
    let root = std::env::temp_dir();
    let text = format!("[tftp]\nroot = \"{}\"\n", root.display());
    let s = check(&text).unwrap();
    assert!(!s.dhcp_enabled);
    assert!(s.tftp.is_some());
    let text = format!("[http]\nroot = \"{}\"\nport = 8080\n", root.display());
    assert!(!check(&text).unwrap().dhcp_enabled);
    assert!(check(GOOD).unwrap().dhcp_enabled);
    // Nothing at all to serve, or leases without DHCP: refused with the reason.
    let e = check("[server]\nworkers = 1\n").unwrap_err();
    assert!(e.contains("nothing to serve"), "{e}");
    let text = format!(
        "[tftp]\nroot = \"{}\"\n\n[leases]\ndir = \"/tmp/x\"\n",
        root.display()
    );
    let e = check(&text).unwrap_err();
    assert!(e.starts_with("bootstorm.toml:4:"), "{e}");
    assert!(e.contains("DHCP is off"), "{e}");
}

/// Issue 12.15: a typo in a log level (BOOTSTORM_LOG=dbug silenced every line) is refused.
#[test]
fn log_levels_are_checked() {
    assert_eq!(log_filter("debug").unwrap(), "debug");
    assert_eq!(
        log_filter("info, bootstorm::drop=DEBUG").unwrap(),
        "info,bootstorm::drop=debug"
    );
    for bad in [
        "dbug",
        "",
        "info,bootstorm::drop=loud",
        "=debug",
        "a b=info",
    ] {
        assert!(log_filter(bad).is_err(), "{bad:?}");
    }
    let text = GOOD.replace("workers = 2", "workers = 2\nlog_level = \"verbose\"");
    let e = check(&text).unwrap_err();
    assert!(
        e.starts_with(&format!("bootstorm.toml:{}:", line_of(&text, "log_level"))),
        "{e}"
    );
    assert!(e.contains("'verbose'"), "{e}");
}

/// `[tftp] busy_poll`: microseconds or milliseconds, "0" or 0 for off, at most 1ms; default
/// 100us.
#[test]
fn tftp_busy_poll_is_checked() {
    let root = std::env::temp_dir();
    let with = |extra: &str| {
        check(&format!(
            "{GOOD}\n[tftp]\nroot = \"{}\"\n{extra}\n",
            root.display()
        ))
    };
    let bp = |extra: &str| with(extra).map(|s| s.tftp.unwrap().busy_poll);
    use std::time::Duration as D;
    assert_eq!(bp(""), Ok(DEFAULT_TFTP_BUSY_POLL));
    assert_eq!(DEFAULT_TFTP_BUSY_POLL, D::from_micros(100));
    assert_eq!(bp("busy_poll = \"250us\""), Ok(D::from_micros(250)));
    assert_eq!(bp("busy_poll = \"1ms\""), Ok(D::from_millis(1)));
    assert_eq!(bp("busy_poll = \"0\""), Ok(D::ZERO));
    assert_eq!(bp("busy_poll = 0"), Ok(D::ZERO));
    let e = with("busy_poll = \"2ms\"").unwrap_err();
    assert!(e.contains("at most 1ms"), "{e}");
    let text = format!(
        "{GOOD}\n[tftp]\nroot = \"{}\"\nbusy_poll = \"2ms\"\n",
        root.display()
    );
    assert!(
        e.contains(&format!("bootstorm.toml:{}", line_of(&text, "[tftp]"))),
        "{e}"
    );
    let e = with("busy_poll = 5").unwrap_err();
    assert!(e.contains("give a unit"), "{e}");
    let e = with("busy_poll = \"fast\"").unwrap_err();
    assert!(e.contains("microseconds"), "{e}");
}

#[test]
fn xdp_rx_frames_is_checked() {
    let with = |extra: &str| {
        GOOD.replacen(
            "[server]",
            "[server]\nio = \"xdp\"\ninterfaces = [\"eth0\"]",
            1,
        ) + "\n[xdp]\n"
            + extra
    };
    assert_eq!(
        check(&with("")).unwrap().xdp.rx_frames,
        bootstorm_xdp::RX_FRAMES
    );
    assert_eq!(
        check(&with("rx_frames = 4096")).unwrap().xdp.rx_frames,
        4096
    );
    for bad in ["rx_frames = 3000", "rx_frames = 1024", "rx_frames = 131072"] {
        let text = with(bad);
        let e = check(&text).unwrap_err();
        assert!(
            e.starts_with(&format!("bootstorm.toml:{}:", line_of(&text, "[xdp]")))
                && e.contains("a power of two from 2048 to 65536"),
            "{bad}: {e}"
        );
    }
}

/// A diskless boot: `iscsi_target` names a target of this server and becomes its RFC 4173 root
/// path; templates other than `{mac}`/`{server}`, an unknown target, and overlays on a
/// read-only target are refused with the line.
#[test]
fn san_boot_rules_and_diskless_targets_are_checked() {
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let base = format!(
        r#"
[[subnet]]
network = "198.18.0.0/16"
server_id = "198.18.0.1"
pools = ["198.18.1.1-198.18.1.254"]

[iscsi]
address = "@ADDR@"

[[iscsi.target]]
name = "iqn.2026-12.test:golden"
file = "{golden}"
overlays = "/tmp/bootstorm-config-test-overlays"
overlay_key = "mac"

[[boot]]
file = "undionly.kpxe"
iscsi_target = "@TARGET@"
initiator_iqn = "@IQN@"
"#
    );
    let cfg = |addr: &str, target: &str, iqn: &str| {
        base.replace("@ADDR@", addr)
            .replace("@TARGET@", target)
            .replace("@IQN@", iqn)
    };
    let s = check(&cfg(
        "0.0.0.0",
        "iqn.2026-12.test:golden",
        "iqn.2026-12.test.m:{mac}",
    ))
    .unwrap();
    let b = &s.dhcp.boot_rules[0].boot;
    assert_eq!(
        b.root_path.as_deref(),
        Some("iscsi:{server}::::iqn.2026-12.test:golden")
    );
    assert_eq!(b.initiator_iqn.as_deref(), Some("iqn.2026-12.test.m:{mac}"));
    let t = &s.iscsi.as_ref().unwrap().targets[0];
    assert_eq!(
        t.overlays.as_ref().unwrap().key,
        crate::iscsid::OverlayKey::Mac
    );
    let s = check(&cfg(
        "198.18.0.9:3261",
        "iqn.2026-12.test:golden",
        "iqn.2026-12.test.m:x",
    ))
    .unwrap();
    assert_eq!(
        s.dhcp.boot_rules[0].boot.root_path.as_deref(),
        Some("iscsi:198.18.0.9::3261::iqn.2026-12.test:golden")
    );
    let text = cfg("0.0.0.0", "iqn.2026-12.test:other", "iqn.2026-12.test.m:x");
    let e = check(&text).unwrap_err();
    assert!(e.contains("no [[iscsi.target]] of this server"), "{e}");
    assert!(
        e.contains(&format!(":{}", line_of(&text, "[[boot]]"))),
        "{e}"
    );
    let e = check(&cfg(
        "0.0.0.0",
        "iqn.2026-12.test:golden",
        "iqn.2026-12.test.m:{ip}",
    ))
    .unwrap_err();
    assert!(e.contains("only {mac} may be replaced"), "{e}");
    let e = check(&cfg(
        "0.0.0.0",
        "iqn.2026-12.test:golden",
        "not an iqn {mac}",
    ))
    .unwrap_err();
    assert!(e.contains("not an iSCSI name"), "{e}");
    let text = cfg("0.0.0.0", "iqn.2026-12.test:golden", "iqn.2026-12.test.m:x")
        .replace("overlay_key = \"mac\"", "read_only = true");
    let e = check(&text).unwrap_err();
    assert!(e.contains("read_only with overlays"), "{e}");
    let text = cfg("0.0.0.0", "iqn.2026-12.test:golden", "iqn.2026-12.test.m:x")
        .replace("overlay_key = \"mac\"", "overlay_key = \"uuid\"");
    assert!(
        check(&text)
            .unwrap_err()
            .contains("\"initiator\" or \"mac\"")
    );
}

#[test]
fn api_settings_are_read_and_checked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("bootstorm-api-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    let write = |text: &str, mode: u32| {
        std::fs::write(&token, text).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let with = |extra: &str| check(&format!("{GOOD}\n[api]\n{extra}\n"));
    write("0123456789abcdef0123\n", 0o600);
    let a = with(&format!(
        "address = \"127.0.0.1:8067\"\ntoken_file = \"{}\"\nread_open = true",
        token.display()
    ))
    .unwrap()
    .api;
    assert_eq!(a.address, Some("127.0.0.1:8067".parse().unwrap()));
    assert_eq!(a.token.as_deref(), Some("0123456789abcdef0123"));
    assert!(a.read_open);
    assert_eq!(check(GOOD).unwrap().api, crate::api::ApiSettings::default());
    let text = format!("{GOOD}\n[api]\naddress = \"everywhere\"\n");
    let e = check(&text).unwrap_err();
    assert!(
        e.starts_with(&format!("bootstorm.toml:{}:", line_of(&text, "[api]"))),
        "{e}"
    );
    assert!(e.contains("expected ADDR:PORT"), "{e}");
    let tf = format!("token_file = \"{}\"", token.display());
    write("0123456789abcdef0123\n", 0o644);
    assert!(with(&tf).unwrap_err().contains("chmod 600"));
    write("short\n", 0o600);
    assert!(with(&tf).unwrap_err().contains("at least 16"));
    assert!(
        with("token_file = \"/nonexistent/token\"")
            .unwrap_err()
            .contains("/nonexistent/token")
    );
    assert!(
        with("tokenfile = \"x\"")
            .unwrap_err()
            .contains("unknown field")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
