use super::*;
use proptest::prelude::*;

/// A hardware address as colon-separated hex, as the daemon prints it.
fn hex_colons(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

const KEA_HEADER: &str = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context";

fn mac(n: u8) -> Vec<u8> {
    vec![0x52, 0x54, 0, 0xaa, 0, n]
}

#[test]
fn kea_memfile_is_a_log_later_lines_win_and_lifetime_zero_deletes() {
    let text = format!(
        "{KEA_HEADER}\n\
         198.18.1.50,52:54:00:aa:00:01,01:52:54:00:aa:00:01,3600,1900000000,1,0,0,pxe-1,0,\n\
         198.18.1.51,52:54:00:aa:00:02,,3600,1900000000,1,0,0,,0,\n\
         198.18.1.52,52:54:00:aa:00:03,,3600,1900000000,1,0,0,a&#x2cb,0,{{ \"ISC\": 1 }}\n\
         198.18.1.50,52:54:00:aa:00:01,01:52:54:00:aa:00:01,3600,1900001000,1,0,0,pxe-1,0,\n\
         198.18.1.51,52:54:00:aa:00:02,,0,1900000000,1,0,0,,0,\n\
         198.18.1.53,,,3600,1900000000,1,0,0,,1,\n\
         198.18.1.54,52:54:00:aa:00:05,,3600,1800000000,1,0,0,,2,\n"
    );
    let p = parse(Format::Kea, &text).unwrap();
    let got: Vec<(Ipv4Addr, u64, LeaseState, usize)> = p
        .leases
        .iter()
        .map(|l| (l.ip, l.expires, l.state, l.line))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "198.18.1.52".parse().unwrap(),
                1_900_000_000,
                LeaseState::Bound,
                4
            ),
            (
                "198.18.1.50".parse().unwrap(),
                1_900_001_000,
                LeaseState::Bound,
                5
            ),
            (
                "198.18.1.54".parse().unwrap(),
                1_800_000_000,
                LeaseState::Expired,
                8
            ),
        ]
    );
    // Option 61 is the key when the client sent one; else htype 1 + MAC, as bootstorm keys it.
    assert_eq!(p.leases[1].key, [&[1u8][..], &mac(1)].concat());
    assert_eq!(p.leases[0].key, [&[1u8][..], &mac(3)].concat());
    assert_eq!(p.leases[0].hostname.as_deref(), Some("a,b"));
    assert_eq!(p.leases[1].hostname.as_deref(), Some("pxe-1"));
    // The declined address without a client is skipped, and said so.
    assert_eq!(p.skipped.len(), 1);
    assert_eq!(p.skipped[0].0, 7);
}

#[test]
fn kea_columns_are_found_by_name() {
    // Kea 2.5 and later append pool_id; the order is taken from the header.
    let text = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n\
                198.18.1.9,52:54:00:aa:00:09,,60,1900000000,1,0,0,,0,,0\n";
    let p = parse(Format::Kea, text).unwrap();
    assert_eq!(p.leases.len(), 1);
    assert_eq!(p.leases[0].hwaddr, mac(9));
}

#[test]
fn bad_kea_lines_are_refused_with_their_line() {
    let cases = [
        ("", 1, "empty file"),
        ("address,hwaddr\n", 1, "client_id"),
        (
            &*format!("{KEA_HEADER}\n198.18.1.300,52:54:00:aa:00:01,,60,1,1,0,0,,0,\n"),
            2,
            "not an IPv4",
        ),
        (
            &*format!("{KEA_HEADER}\n198.18.1.3,52:54:zz:aa:00:01,,60,1,1,0,0,,0,\n"),
            2,
            "hwaddr",
        ),
        (
            &*format!("{KEA_HEADER}\n\n198.18.1.3,52:54:00:aa:00:01,,sixty,1,1,0,0,,0,\n"),
            3,
            "valid_lifetime",
        ),
        (
            &*format!("{KEA_HEADER}\n198.18.1.3,52:54:00:aa:00:01,,60,1\n"),
            2,
            "fields",
        ),
        (
            &*format!("{KEA_HEADER}\n198.18.1.3,52:54:00:aa:00:01,,60,1,1,0,0,,9,\n"),
            2,
            "state 9",
        ),
    ];
    for (text, line, what) in cases {
        let e = parse(Format::Kea, text).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(e.to_string().contains(what), "{text:?}: {e}");
    }
}

#[test]
fn dnsmasq_leases_file() {
    let text = "1900000000 52:54:00:aa:00:01 198.18.1.150 pxe-1 01:52:54:00:aa:00:01\n\
                0 52:54:00:aa:00:02 198.18.1.151 * *\n\
                1900000000 20-00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33 198.18.1.152 * *\n\
                duid 00:01:00:01:2c:00:00:01:52:54:00:aa:00:01\n\
                1900000000 1234 2001:db8::5 * 00:01:00:01\n";
    let p = parse(Format::Dnsmasq, text).unwrap();
    assert_eq!(p.leases.len(), 3);
    assert_eq!(p.leases[0].key, [&[1u8][..], &mac(1)].concat());
    assert_eq!(p.leases[0].hostname.as_deref(), Some("pxe-1"));
    assert_eq!(
        p.leases[1].expires, NEVER_UNIX,
        "0 is a lease that never ends"
    );
    assert_eq!(p.leases[1].hostname, None);
    assert_eq!(p.leases[1].key, [&[1u8][..], &mac(2)].concat());
    assert_eq!(
        p.leases[2].key[0], 0x20,
        "InfiniBand keeps its hardware type"
    );
    assert_eq!(p.leases[2].hwaddr.len(), 20);
    assert_eq!(p.skipped.len(), 1, "the DHCPv6 lease");
    let e = parse(Format::Dnsmasq, "1900000000 52:54:00:aa:00:01\n").unwrap_err();
    assert_eq!(e.line, 1);
    let e = parse(Format::Dnsmasq, "\nsoon 52:54:00:aa:00:01 198.18.1.1 * *\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("expiry"), "{e}");
}

fn lease(ip: u8, n: u8, state: &str, host: Option<&str>, reserved: bool) -> LeaseJson {
    LeaseJson {
        ip: format!("198.18.1.{ip}"),
        mac: hex_colons(&mac(n)),
        client_id: hex_colons(&[&[1u8][..], &mac(n)].concat()),
        state: state.into(),
        expires: 1_900_000_000 + u64::from(n),
        expires_in: 60,
        hostname: host.map(String::from),
        subnet: "198.18.0.0/16".into(),
        reserved,
    }
}

#[test]
fn own_formats_skip_reservations_and_refuse_unknown_states() {
    let leases = vec![
        lease(1, 1, "bound", Some("a,b \"c\""), false),
        lease(2, 2, "bound", None, true),
    ];
    for (format, text) in [
        (Format::Json, serde_json::to_string(&leases).unwrap()),
        (Format::Csv, to_csv(&leases).unwrap()),
    ] {
        let p = parse(format, &text).unwrap();
        assert_eq!(p.leases.len(), 1, "{format:?}");
        assert_eq!(p.leases[0].hostname.as_deref(), Some("a,b \"c\""));
        assert_eq!(p.skipped.len(), 1, "{format:?}");
    }
    let bad = vec![lease(1, 1, "lost", None, false)];
    let e = parse(Format::Json, &serde_json::to_string(&bad).unwrap()).unwrap_err();
    assert!(e.reason.contains("unknown state"), "{e}");
    let e = parse(Format::Csv, &to_csv(&bad).unwrap()).unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    let e = parse(Format::Csv, "ip,mac\n198.18.1.1,52:54:00:aa:00:01\n").unwrap_err();
    assert!(e.reason.contains("not a bootstorm lease line"), "{e}");
}

#[test]
fn an_empty_export_still_says_what_it_is() {
    let one = to_csv(&[lease(1, 1, "bound", None, false)]).unwrap();
    let none = to_csv(&[]).unwrap();
    assert_eq!(none.lines().next(), one.lines().next());
    assert!(parse(Format::Csv, &none).unwrap().leases.is_empty());
}

proptest! {
    /// Whatever bootstorm exports, it imports back as the same leases.
    #[test]
    fn exports_import_back(rows in proptest::collection::vec(
        (1u8..255, 1u8..255, 0usize..5, proptest::option::of("[ -~]{0,20}"), 0u64..4_000_000_000),
        0..20,
    )) {
        let states = ["offered", "bound", "released", "expired", "declined"];
        let leases: Vec<LeaseJson> = rows
            .iter()
            .map(|(ip, n, s, h, exp)| LeaseJson {
                expires: *exp,
                ..lease(*ip, *n, states[*s], h.as_deref(), false)
            })
            .collect();
        let json = serde_json::to_string(&leases).unwrap();
        let csv = to_csv(&leases).unwrap();
        let a = parse(Format::Json, &json).unwrap();
        let b = parse(Format::Csv, &csv).unwrap();
        // One lease per address: the last line for it.
        let mut want: Vec<&LeaseJson> = Vec::new();
        for l in &leases {
            want.retain(|w| w.ip != l.ip);
            want.push(l);
        }
        prop_assert_eq!(a.leases.len(), want.len());
        for (x, y) in a.leases.iter().zip(&b.leases) {
            prop_assert_eq!(&x.ip, &y.ip);
            prop_assert_eq!(&x.key, &y.key);
            prop_assert_eq!(x.expires, y.expires);
            prop_assert_eq!(x.state, y.state);
            // Blank names are no names.
            prop_assert_eq!(&x.hostname, &y.hostname);
        }
        for (x, w) in a.leases.iter().zip(want) {
            prop_assert_eq!(x.ip.to_string(), w.ip.clone());
            prop_assert_eq!(x.expires, w.expires);
            prop_assert_eq!(x.hostname.as_deref(), w.hostname.as_deref().map(str::trim).filter(|h| !h.is_empty()));
        }
    }

    /// No input makes a parser panic.
    #[test]
    fn parsers_never_panic(text in "[ -~\n]{0,300}") {
        for f in [Format::Json, Format::Csv, Format::Kea, Format::Dnsmasq] {
            let _ = parse(f, &text);
        }
    }
}
