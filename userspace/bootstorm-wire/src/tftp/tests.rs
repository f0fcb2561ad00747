use super::*;
use proptest::prelude::*;

/// Read requests captured on a loopback socket from the real clients.
#[test]
fn rrq_golden_from_real_clients() {
    let req = |b: &'static [u8]| match Repr::parse(b).unwrap() {
        Repr::Request {
            write: false,
            filename,
            mode,
            options,
            ignored: 0,
        } => (filename, mode, options),
        r => panic!("{r:?}"),
    };
    // tftp-hpa 5.2: `tftp HOST PORT -m binary -c get ipxe.efi`: plain RFC 1350, no options.
    let (name, mode, o) = req(b"\x00\x01ipxe.efi\x00octet\x00");
    assert_eq!(
        (name, mode, o),
        (&b"ipxe.efi"[..], Mode::Octet, Options::default())
    );
    // curl 7.88: `curl --tftp-blksize 1468 tftp://HOST:PORT/ipxe.efi`.
    let (name, _, o) =
        req(b"\x00\x01ipxe.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00timeout\x001\x00");
    assert_eq!(name, b"ipxe.efi");
    assert_eq!(
        o,
        Options {
            blksize: Some(1468),
            tsize: Some(0),
            timeout: Some(1),
            windowsize: None
        }
    );
    // atftp 0.8: `atftp --option "blksize 1468" --option "windowsize 16" --option tsize -g ...`.
    let (_, _, o) =
        req(b"\x00\x01ipxe.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00windowsize\x0016\x00");
    assert_eq!(
        o,
        Options {
            blksize: Some(1468),
            tsize: Some(0),
            windowsize: Some(16),
            timeout: None
        }
    );
}

#[test]
fn option_names_and_modes_are_case_insensitive_and_unknown_options_skipped() {
    let b = b"\x00\x01a\x00OcTeT\x00BLKSIZE\x008\x00multicast\x00\x00WindowSize\x0064\x00Timeout\x003\x00";
    match Repr::parse(b).unwrap() {
        Repr::Request { mode, options, .. } => {
            assert_eq!(mode, Mode::Octet);
            assert_eq!(
                options,
                Options {
                    blksize: Some(8),
                    windowsize: Some(64),
                    timeout: Some(3),
                    tsize: None
                }
            );
        }
        r => panic!("{r:?}"),
    }
}

/// Regression (issue 12.9): invalid option values in an RRQ refused the whole request with ERROR
/// 4. RFC 2347: the server may leave an option it does not accept out of the OACK; firmware with
/// odd values boots with the defaults. In an OACK (a server's grant) they stay errors.
#[test]
fn rfc2347_invalid_option_values_in_a_request_are_left_out() {
    for (opts, ignored) in [
        (&b"blksize\x007\x00"[..], 1),
        (b"blksize\x0065465\x00", 1),
        (b"blksize\x00abc\x00", 1),
        (b"timeout\x000\x00", 1),
        (b"timeout\x00256\x00", 1),
        (b"windowsize\x000\x00", 1),
        (b"windowsize\x0065536\x00", 1),
        (b"tsize\x00-1\x00", 1),
        (b"blksize\x007\x00timeout\x000\x00windowsize\x004\x00", 2),
    ] {
        let mut b = b"\x00\x01a\x00octet\x00".to_vec();
        b.extend_from_slice(opts);
        match Repr::parse(&b).unwrap() {
            Repr::Request {
                options,
                ignored: n,
                ..
            } => {
                assert_eq!(n, ignored, "{opts:?}");
                assert_eq!(options.blksize, None);
                assert_eq!(options.timeout, None);
                assert_eq!(options.tsize, None);
                let w = if ignored == 2 { Some(4) } else { None };
                assert_eq!(options.windowsize, w, "{opts:?}");
            }
            r => panic!("{r:?}"),
        }
        let mut oack = b"\x00\x06".to_vec();
        oack.extend_from_slice(opts);
        assert!(Repr::parse(&oack).is_err(), "OACK {opts:?}");
    }
}

#[test]
fn bad_requests_are_errors() {
    let cases: &[&[u8]] = &[
        b"\x00\x01ipxe.efi",                // no NUL after the name
        b"\x00\x01ipxe.efi\x00octet",       // no NUL after the mode
        b"\x00\x01\x00octet\x00",           // empty name
        b"\x00\x01a\x00mail\x00",           // mode mail: obsolete, refused
        b"\x00\x01a\x00binary\x00",         // unknown mode
        b"\x00\x01a\x00octet\x00tsize\x00", // option without value
        b"\x00\x07",                        // unknown opcode
        b"\x00",
        b"\x00\x03\x00",
    ];
    for c in cases {
        assert!(Repr::parse(c).is_err(), "{c:?}");
    }
    let mut long = b"\x00\x01".to_vec();
    long.extend(std::iter::repeat_n(b'a', 600));
    long.extend_from_slice(b"\x00octet\x00");
    assert_eq!(
        Repr::parse(&long),
        Err(Error::Malformed("file name too long"))
    );
}

#[test]
fn data_ack_error_oack_golden() {
    assert_eq!(
        Repr::parse(b"\x00\x03\x00\x01abc").unwrap(),
        Repr::Data {
            block: 1,
            data: b"abc"
        }
    );
    assert_eq!(
        Repr::parse(b"\x00\x03\xff\xff").unwrap(),
        Repr::Data {
            block: 65535,
            data: b""
        }
    );
    assert_eq!(
        Repr::parse(b"\x00\x04\x01\x00").unwrap(),
        Repr::Ack { block: 256 }
    );
    assert_eq!(
        Repr::parse(b"\x00\x05\x00\x01File not found\x00").unwrap(),
        Repr::Error {
            code: ErrorCode::FileNotFound,
            message: b"File not found"
        }
    );
    assert_eq!(
        Repr::parse(b"\x00\x05\x00\x08no NUL").unwrap(),
        Repr::Error {
            code: ErrorCode::OptionRefused,
            message: b"no NUL"
        }
    );
    assert_eq!(
        Repr::parse(b"\x00\x06blksize\x001428\x00tsize\x001048576\x00").unwrap(),
        Repr::OAck {
            options: Options {
                blksize: Some(1428),
                tsize: Some(1 << 20),
                ..Options::default()
            }
        }
    );
}

#[test]
fn emit_golden() {
    let mut buf = [0u8; 100];
    let n = Repr::OAck {
        options: Options {
            blksize: Some(1468),
            tsize: Some(1048576),
            windowsize: Some(16),
            timeout: None,
        },
    }
    .emit(&mut buf)
    .unwrap();
    assert_eq!(
        &buf[..n],
        b"\x00\x06blksize\x001468\x00tsize\x001048576\x00windowsize\x0016\x00"
    );
    let n = Repr::Error {
        code: ErrorCode::AccessViolation,
        message: b"outside the root",
    }
    .emit(&mut buf)
    .unwrap();
    assert_eq!(&buf[..n], b"\x00\x05\x00\x02outside the root\x00");
    let n = Repr::Ack { block: 0 }.emit(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"\x00\x04\x00\x00");
    assert_eq!(
        Repr::Data {
            block: 1,
            data: &[0; 200]
        }
        .emit(&mut buf[..50]),
        Err(Error::NoSpace)
    );
    let mut d = [0u8; 8];
    d[4..].copy_from_slice(b"boot");
    emit_data_header(&mut d, 7).unwrap();
    assert_eq!(
        Repr::parse(&d).unwrap(),
        Repr::Data {
            block: 7,
            data: b"boot"
        }
    );
}

fn options() -> impl Strategy<Value = Options> {
    (
        proptest::option::of(BLKSIZE_MIN..=BLKSIZE_MAX),
        proptest::option::of(1u8..=255),
        proptest::option::of(any::<u64>().prop_map(|v| v % 10_000_000_000_000_000_000)),
        proptest::option::of(1u16..=65535),
    )
        .prop_map(|(blksize, timeout, tsize, windowsize)| Options {
            blksize,
            timeout,
            tsize,
            windowsize,
        })
}

proptest! {
    #[test]
    fn any_bytes_parse_or_error(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Repr::parse(&data);
    }

    #[test]
    fn request_and_oack_round_trip(name in "[a-zA-Z0-9/._-]{1,100}", write in any::<bool>(), o in options()) {
        let r = Repr::Request { write, filename: name.as_bytes(), mode: Mode::Octet, options: o, ignored: 0 };
        let mut buf = vec![0u8; r.buffer_len()];
        let n = r.emit(&mut buf).unwrap();
        prop_assert_eq!(n, buf.len());
        prop_assert_eq!(Repr::parse(&buf).unwrap(), r);
        let a = Repr::OAck { options: o };
        let mut buf = vec![0u8; a.buffer_len()];
        a.emit(&mut buf).unwrap();
        prop_assert_eq!(Repr::parse(&buf).unwrap(), a);
    }
}
