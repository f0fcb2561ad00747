use super::*;
use proptest::prelude::*;

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// Builds a request in the shape iPXE 1.21 sends (src/net/udp/dhcp.c): option 53, 57 = 1472,
/// 93 = 7, 94, 60 "PXEClient:Arch:00007:UNDI:003010", 77 "iPXE" as a plain string, 175 (iPXE
/// encapsulated features), 61, 97 and 55.
fn ipxe_discover() -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    b[10] = 0x80; // iPXE sets the broadcast flag
    b[28..34].copy_from_slice(&MAC);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    let opts: &[&[u8]] = &[
        &[53, 1, 1],
        &[57, 2, 0x05, 0xc0],
        &[93, 2, 0, 7],
        &[94, 3, 1, 3, 16],
        b"\x3c\x20PXEClient:Arch:00007:UNDI:003016",
        b"\x4d\x04iPXE",
        &[175, 6, 0x13, 1, 1, 0x17, 1, 1],
        &[61, 7, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
        &[
            97, 17, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        ],
        &[55, 9, 1, 3, 6, 12, 15, 17, 43, 60, 66],
        &[255],
    ];
    for o in opts {
        b.extend_from_slice(o);
    }
    b
}

#[test]
fn dhclient_discover_golden() {
    let buf = unhex(include_str!("../../testdata/discover-dhclient.hex"));
    let p = Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(p.op(), Op::Request);
    assert_eq!(p.htype(), 1);
    assert_eq!(p.hlen(), 6);
    assert_eq!(p.hops(), 0);
    assert_eq!(p.xid(), 0xf070_a83a);
    assert_eq!(p.secs(), 0);
    assert_eq!(p.flags(), 0);
    assert!(!p.broadcast());
    assert_eq!(p.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(p.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(p.siaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(p.giaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(p.chaddr(), &MAC);
    assert_eq!(&p.chaddr_raw()[6..], &[0u8; 10]);
    assert_eq!(c_str(p.sname()), b"");
    assert_eq!(c_str(p.file()), b"");
    let r = Repr::parse(&p).unwrap();
    assert_eq!(r.message_type, Some(MessageType::Discover));
    assert_eq!(r.hostname, Some(&b"vm"[..]));
    assert_eq!(
        r.parameter_request_list,
        Some(&[1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42][..])
    );
    assert_eq!(r.client_id, None);
    assert_eq!(r.max_message_size, None);
    assert!(r.requested(121));
    assert!(!r.requested(66));
}

#[test]
fn udhcpc_discover_golden() {
    let buf = unhex(include_str!("../../testdata/discover-udhcpc.hex"));
    let p = Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(p.xid(), 0xf5b8_1116);
    let r = Repr::parse(&p).unwrap();
    assert_eq!(r.message_type, Some(MessageType::Discover));
    assert_eq!(r.max_message_size, Some(576));
    assert_eq!(r.vendor_class, Some(&b"udhcp 1.35.0"[..]));
    assert_eq!(
        r.client_id,
        Some(&[1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56][..])
    );
    assert_eq!(
        r.parameter_request_list,
        Some(&[1, 3, 6, 12, 15, 28, 42][..])
    );
    assert_eq!(r.chaddr(), &MAC);
}

#[test]
fn dhcpcd_discover_golden() {
    let buf = unhex(include_str!("../../testdata/discover-dhcpcd.hex"));
    let p = Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(p.xid(), 0x84c3_6bd8);
    let r = Repr::parse(&p).unwrap();
    assert_eq!(r.message_type, Some(MessageType::Discover));
    assert_eq!(r.max_message_size, Some(1472));
    // dhcpcd sends an RFC 4361 client identifier: type 255, IAID, DUID.
    assert_eq!(r.client_id.unwrap()[0], 255);
    let codes: Vec<u8> = p.all_options().map(|o| o.unwrap().code).collect();
    assert_eq!(codes, [53, 55, 57, 61, 80, 116, 145]);
}

#[test]
fn ipxe_discover_golden() {
    // Captured from Debian's iPXE 1.21 BIOS ROM (pxe-e1000.rom) booting in qemu on a tap device.
    let buf = unhex(include_str!("../../testdata/discover-ipxe.hex"));
    let p = Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(p.xid(), 0x938f_796e);
    assert!(!p.broadcast());
    assert_eq!(p.chaddr(), &MAC);
    let r = Repr::parse(&p).unwrap();
    assert_eq!(r.message_type, Some(MessageType::Discover));
    assert_eq!(r.max_message_size, Some(1472));
    assert_eq!(r.client_arches().collect::<Vec<_>>(), [0]);
    assert_eq!(
        r.vendor_class,
        Some(&b"PXEClient:Arch:00000:UNDI:002001"[..])
    );
    // iPXE sends its user class as a plain string, not RFC 3004-encoded.
    assert_eq!(r.user_class, Some(&b"iPXE"[..]));
    assert_eq!(
        user_classes(r.user_class.unwrap()).collect::<Vec<_>>(),
        [&b"iPXE"[..]]
    );
    assert_eq!(r.client_uuid, Some(&[0u8; 17][..]));
    assert_eq!(
        r.client_id,
        Some(&[1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56][..])
    );
    let codes: Vec<u8> = p.all_options().map(|o| o.unwrap().code).collect();
    assert_eq!(codes, [53, 57, 93, 94, 60, 77, 55, 175, 61, 97]);
}

#[test]
fn ipxe_discover_fields() {
    let buf = ipxe_discover();
    let p = Packet::new_checked(&buf[..]).unwrap();
    let r = Repr::parse(&p).unwrap();
    assert!(r.broadcast());
    assert_eq!(r.client_arches().collect::<Vec<_>>(), [7]);
    assert_eq!(r.user_class, Some(&b"iPXE"[..]));
    assert_eq!(
        user_classes(r.user_class.unwrap()).collect::<Vec<_>>(),
        [&b"iPXE"[..]]
    );
    assert_eq!(r.vendor_class.unwrap(), b"PXEClient:Arch:00007:UNDI:003016");
    assert_eq!(r.client_uuid.unwrap().len(), 17);
    assert_eq!(r.client_ndi, Some(&[1, 3, 16][..]));
    assert_eq!(r.max_message_size, Some(1472));
}

#[test]
fn user_class_both_encodings() {
    // RFC 3004: length-prefixed instances.
    let v: Vec<&[u8]> = user_classes(b"\x04iPXE\x03foo").collect();
    assert_eq!(v, [&b"iPXE"[..], &b"foo"[..]]);
    // iPXE's raw string: 'i' = 105 is not a valid length here, so the whole is one class.
    let v: Vec<&[u8]> = user_classes(b"iPXE").collect();
    assert_eq!(v, [&b"iPXE"[..]]);
    assert_eq!(user_classes(b"").count(), 0);
}

#[test]
fn overload_moves_options_into_file_and_sname() {
    let mut buf = ipxe_discover();
    // Replace the options with: 53, 52 = 3, End; then put 12 in file and 60 in sname.
    buf.truncate(HEADER_LEN);
    buf.extend_from_slice(&[53, 1, 3, 52, 1, 3, 255]);
    buf[108..114].copy_from_slice(&[12, 4, b'n', b'o', b'd', b'e']);
    buf[114] = 255;
    buf[44..49].copy_from_slice(&[60, 3, b'a', b'b', b'c']);
    let p = Packet::new_checked(&buf[..]).unwrap();
    let codes: Vec<u8> = p.all_options().map(|o| o.unwrap().code).collect();
    assert_eq!(codes, [53, 52, 12, 60]);
    let r = Repr::parse(&p).unwrap();
    assert_eq!(r.overload, 3);
    assert_eq!(r.hostname, Some(&b"node"[..]));
    assert_eq!(r.vendor_class, Some(&b"abc"[..]));
    assert_eq!(r.file, b"");
    assert_eq!(r.sname, b"");
}

#[test]
fn hlen_above_16_is_refused() {
    let mut buf = ipxe_discover();
    buf[2] = 17;
    assert_eq!(
        Packet::new_checked(&buf[..]).unwrap_err(),
        Error::Malformed("hlen above 16")
    );
    buf[2] = 16;
    let p = Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(p.chaddr().len(), 16);
}

#[test]
fn missing_cookie_and_short_buffers() {
    let mut buf = ipxe_discover();
    assert_eq!(
        Packet::new_checked(&buf[..239]).unwrap_err(),
        Error::Truncated
    );
    buf[236] = 0;
    assert!(matches!(
        Packet::new_checked(&buf[..]),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn truncated_option_is_an_error() {
    let mut buf = ipxe_discover();
    buf.truncate(HEADER_LEN);
    buf.extend_from_slice(&[53, 1, 1, 61, 9, 1, 2]);
    let p = Packet::new_checked(&buf[..]).unwrap();
    let items: Vec<_> = p.all_options().collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1], Err(Error::Truncated));
    assert_eq!(Repr::parse(&p).unwrap_err(), Error::Truncated);
}

#[test]
fn wrong_fixed_lengths_are_malformed() {
    for bad in [
        &[53u8, 2, 1, 1][..],
        &[50, 3, 1, 2, 3],
        &[54, 5, 1, 2, 3, 4, 5],
        &[57, 1, 2],
        &[61, 1, 1],
        &[52, 1, 4],
    ] {
        let mut buf = ipxe_discover();
        buf.truncate(HEADER_LEN);
        buf.extend_from_slice(bad);
        buf.push(255);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(
            matches!(Repr::parse(&p), Err(Error::Malformed(_))),
            "{bad:?}"
        );
    }
}

/// Regression: a DISCOVER with an empty host name (12) or vendor class (60) was dropped whole as
/// malformed; the client got no answer. RFC 2132 gives both a minimum length of 1: the bad option
/// is left out and counted, and the message stands.
#[test]
fn empty_informational_options_are_ignored_and_counted() {
    for (bad, count) in [
        (&[12u8, 0][..], 1),
        (&[60, 0], 1),
        (&[77, 0], 1),
        (&[93, 3, 0, 0, 7], 1),
        (&[12, 0, 60, 0], 2),
    ] {
        let mut buf = ipxe_discover();
        buf.truncate(HEADER_LEN);
        buf.extend_from_slice(&[53, 1, 1]);
        buf.extend_from_slice(bad);
        buf.push(255);
        let p = Packet::new_checked(&buf[..]).unwrap();
        let r = Repr::parse(&p).unwrap_or_else(|e| panic!("{bad:?}: {e}"));
        assert_eq!(r.message_type, Some(MessageType::Discover), "{bad:?}");
        assert_eq!(r.bad_options, count, "{bad:?}");
        assert_eq!(
            (r.hostname, r.vendor_class, r.user_class),
            (None, None, None)
        );
        assert_eq!(r.client_arch, None);
    }
}

/// A DISCOVER whose options are `parts` (each already code, length, data).
fn with_options(parts: &[&[u8]]) -> Vec<u8> {
    let mut buf = ipxe_discover();
    buf.truncate(HEADER_LEN);
    buf.extend_from_slice(&[53, 1, 1]);
    for p in parts {
        buf.extend_from_slice(p);
    }
    buf.push(255);
    buf
}

/// Regression: RFC 3396 7: an option sent as several instances is their concatenation. Only the
/// first part counted, so a client id split in two was echoed cut short and a long parameter
/// request list lost its tail.
#[test]
fn rfc3396_split_options_are_concatenated() {
    let id: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8 + 1).collect();
    let mut id1 = vec![61, 255];
    id1.extend_from_slice(&id[..255]);
    let mut id2 = vec![61, 45];
    id2.extend_from_slice(&id[255..]);
    // The parameter request list in three pieces, with another option between them.
    let buf = with_options(&[
        &[55, 2, 1, 3],
        &[12, 4, b'h', b'o', b's', b't'],
        &[55, 1, 6],
        &id1,
        &[55, 2, 15, 66],
        &id2,
    ]);
    let p = Packet::new_checked(&buf[..]).unwrap();
    let mut scratch = [0u8; SCRATCH_LEN];
    let r = Repr::parse_with(&p, &mut scratch).unwrap();
    assert_eq!(r.client_id, Some(&id[..]));
    assert_eq!(r.parameter_request_list, Some(&[1, 3, 6, 15, 66][..]));
    assert_eq!(r.hostname, Some(&b"host"[..]));
    // Without scratch space the first instance counts (tools that never meet split options).
    let r = Repr::parse(&p).unwrap();
    assert_eq!(r.client_id, Some(&id[..255]));
    assert_eq!(r.parameter_request_list, Some(&[1, 3][..]));
    // Split pieces in `file` (option overload) come after the options field, in order.
    let mut buf = with_options(&[&[52, 1, 1], &[55, 2, 1, 3]]);
    buf[108..113].copy_from_slice(&[55, 2, 42, 66, 255]);
    let p = Packet::new_checked(&buf[..]).unwrap();
    let r = Repr::parse_with(&p, &mut scratch).unwrap();
    assert_eq!(r.parameter_request_list, Some(&[1, 3, 42, 66][..]));
    // Two instances of a fixed-size option are not concatenated: the first counts.
    let buf = with_options(&[&[51, 4, 0, 0, 0, 60], &[51, 4, 0, 0, 1, 0]]);
    let p = Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(
        Repr::parse_with(&p, &mut scratch).unwrap().lease_time,
        Some(60)
    );
}

#[test]
fn missing_end_is_tolerated_and_pad_skipped() {
    let mut buf = ipxe_discover();
    buf.truncate(HEADER_LEN);
    buf.extend_from_slice(&[0, 0, 53, 1, 1, 0]);
    let p = Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(
        Repr::parse(&p).unwrap().message_type,
        Some(MessageType::Discover)
    );
}

#[test]
fn reply_header_and_options_emit_and_parse_back() {
    let req_buf = ipxe_discover();
    let req_p = Packet::new_checked(&req_buf[..]).unwrap();
    let req = Repr::parse(&req_p).unwrap();
    let mut out = [0u8; 1500];
    let mut p = emit_reply_header(
        &mut out,
        &req,
        Ipv4Addr::new(198, 18, 1, 5),
        Ipv4Addr::new(198, 18, 0, 1),
    )
    .unwrap();
    p.set_file(b"ipxe.efi");
    p.set_sname(b"boot");
    let mut w = OptionWriter::new(p.options_mut(), DEFAULT_MAX_MESSAGE - HEADER_LEN);
    w.push(opt::MESSAGE_TYPE, &[2]).unwrap();
    w.push(opt::SERVER_ID, &[198, 18, 0, 1]).unwrap();
    w.push(opt::LEASE_TIME, &3600u32.to_be_bytes()).unwrap();
    let n = HEADER_LEN + w.finish(MIN_MESSAGE - HEADER_LEN);
    assert_eq!(n, MIN_MESSAGE);
    let back = Packet::new_checked(&out[..n]).unwrap();
    assert_eq!(back.op(), Op::Reply);
    assert_eq!(back.xid(), 0x1234_5678);
    assert!(back.broadcast());
    assert_eq!(back.yiaddr(), Ipv4Addr::new(198, 18, 1, 5));
    assert_eq!(back.siaddr(), Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(back.chaddr(), &MAC);
    assert_eq!(c_str(back.file()), b"ipxe.efi");
    assert_eq!(c_str(back.sname()), b"boot");
    let r = Repr::parse(&back).unwrap();
    assert_eq!(r.message_type, Some(MessageType::Offer));
    assert_eq!(r.server_id, Some(Ipv4Addr::new(198, 18, 0, 1)));
    assert_eq!(r.lease_time, Some(3600));
}

#[test]
fn option_writer_respects_limit_and_keeps_room_for_end() {
    let mut buf = [0u8; 20];
    let mut w = OptionWriter::new(&mut buf, 10);
    w.push(1, &[1, 2, 3, 4]).unwrap(); // 6 bytes
    assert_eq!(w.push(3, &[1, 2, 3, 4]), Err(Error::NoSpace)); // would need 6 + 6 + 1 > 10
    assert!(w.push_optional(12, b"a")); // 6 + 3 + 1 = 10 fits exactly
    assert!(!w.push_optional(12, &[]));
    assert_eq!(w.dropped(), 1);
    let n = w.finish(0);
    assert_eq!(n, 10);
    assert_eq!(buf[9], opt::END);
}

#[test]
fn long_option_is_split_rfc3396() {
    let mut buf = [0u8; 600];
    let data = [7u8; 300];
    let mut w = OptionWriter::new(&mut buf, 600);
    w.push(43, &data).unwrap();
    assert_eq!(w.len(), OptionWriter::encoded_len(300));
    assert_eq!(w.len(), 304);
    assert_eq!((buf[0], buf[1]), (43, 255));
    assert_eq!((buf[257], buf[258]), (43, 45));
}

proptest! {
    #[test]
    fn any_bytes_parse_or_error_never_panic(data in proptest::collection::vec(any::<u8>(), 0..700)) {
        if let Ok(p) = Packet::new_checked(&data[..]) {
            let _ = Repr::parse(&p);
            for o in p.all_options().take(1000) { let _ = o; }
            let _ = p.chaddr();
        }
    }

    /// RFC 3396: a client id and a request list cut into pieces of any sizes, interleaved with
    /// other options, parse back whole; any bytes at all never panic `parse_with`, whatever the
    /// scratch (none, small, enough).
    #[test]
    fn rfc3396_pieces_of_any_size_are_joined(
        id in proptest::collection::vec(any::<u8>(), 2..600),
        prl in proptest::collection::vec(1u8..=254, 1..300),
        cuts in proptest::collection::vec(1usize..=255, 1..40),
    ) {
        let mut opts = Vec::new();
        let pieces = |code: u8, data: &[u8], opts: &mut Vec<u8>| {
            let mut at = 0;
            let mut k = 0;
            while at < data.len() {
                let n = cuts[k % cuts.len()].min(data.len() - at);
                opts.push(code);
                opts.push(n as u8);
                opts.extend_from_slice(&data[at..at + n]);
                at += n;
                k += 1;
                // Something else between the pieces (a fixed-size option: never joined).
                opts.extend_from_slice(&[51, 4, 0, 0, 0, 60]);
            }
        };
        pieces(61, &id, &mut opts);
        pieces(55, &prl, &mut opts);
        let buf = with_options(&[&opts]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        let mut scratch = [0u8; SCRATCH_LEN];
        let r = Repr::parse_with(&p, &mut scratch).unwrap();
        prop_assert_eq!(r.client_id, Some(&id[..]));
        prop_assert_eq!(r.parameter_request_list, Some(&prl[..]));
        prop_assert_eq!(r.lease_time, Some(60));
        // Too little scratch for both: whatever fits is joined, the rest counts its first piece.
        // (A first piece shorter than 2 bytes is then a bad client id: an error, not a panic.)
        let mut small = [0u8; 100];
        let first = cuts[0].min(id.len());
        match Repr::parse_with(&p, &mut small) {
            Ok(r) => prop_assert!(r.client_id == Some(&id[..]) || r.client_id == Some(&id[..first])),
            Err(e) => prop_assert!(first < 2, "{e:?}"),
        }
    }

    #[test]
    fn parse_with_any_bytes_never_panics(opts in proptest::collection::vec(any::<u8>(), 0..1200), scratch_len in 0usize..1600) {
        let mut buf = ipxe_discover();
        buf.truncate(HEADER_LEN);
        buf.extend_from_slice(&opts);
        let p = Packet::new_checked(&buf[..]).unwrap();
        let mut scratch = vec![0u8; scratch_len];
        let _ = Repr::parse_with(&p, &mut scratch);
    }

    #[test]
    fn any_options_after_a_valid_header_never_panic(opts in proptest::collection::vec(any::<u8>(), 0..400), hlen in 0u8..=16) {
        let mut buf = ipxe_discover();
        buf.truncate(HEADER_LEN);
        buf[2] = hlen;
        buf.extend_from_slice(&opts);
        let p = Packet::new_checked(&buf[..]).unwrap();
        let _ = Repr::parse(&p);
    }

    #[test]
    fn writer_then_iterator_round_trips(options in proptest::collection::vec((1u8..=254, proptest::collection::vec(any::<u8>(), 0..255)), 0..12)) {
        let mut buf = vec![0u8; 4096];
        let mut w = OptionWriter::new(&mut buf, 4096);
        for (code, data) in &options {
            w.push(*code, data).unwrap();
        }
        let n = w.finish(0);
        let back: Vec<(u8, Vec<u8>)> = OptionIter::new(&buf[..n]).map(|o| { let o = o.unwrap(); (o.code, o.data.to_vec()) }).collect();
        prop_assert_eq!(back, options);
    }
}

#[test]
fn request_header_emits_what_the_parser_reads() {
    let mut buf = [0u8; 600];
    let mut p = emit_request_header(
        &mut buf,
        0xabcd,
        &MAC,
        FLAG_BROADCAST,
        Ipv4Addr::new(198, 18, 1, 2),
        Ipv4Addr::new(198, 19, 0, 1),
    )
    .unwrap();
    let mut w = OptionWriter::new(p.options_mut(), 300);
    w.push(opt::MESSAGE_TYPE, &[3]).unwrap();
    let n = HEADER_LEN + w.finish(0);
    let r = Repr::parse(&Packet::new_checked(&buf[..n]).unwrap()).unwrap();
    assert_eq!((r.op, r.htype, r.hlen, r.xid), (1, 1, 6, 0xabcd));
    assert!(r.broadcast());
    assert_eq!(r.ciaddr, Some(Ipv4Addr::new(198, 18, 1, 2)));
    assert_eq!(r.giaddr, Some(Ipv4Addr::new(198, 19, 0, 1)));
    assert_eq!(r.chaddr(), &MAC);
    assert_eq!(r.message_type, Some(MessageType::Request));
}

#[test]
fn overload_writer_spills_optional_options_into_file_then_sname() {
    let req_buf = ipxe_discover();
    let req = Repr::parse(&Packet::new_checked(&req_buf[..]).unwrap()).unwrap();
    let mut out = [0u8; 600];
    emit_reply_header(
        &mut out,
        &req,
        Ipv4Addr::new(198, 18, 1, 5),
        Ipv4Addr::UNSPECIFIED,
    )
    .unwrap();
    // A 100-byte options field (97 while option 52 is kept back): 9 bytes of required options,
    // then 52-byte optional ones: 224 in the options field, 225 and 226 in file (128 bytes),
    // 227 in sname (64 bytes), and 228 nowhere.
    let mut w = OverloadWriter::new(&mut out, 100, true, true).unwrap();
    w.push(opt::MESSAGE_TYPE, &[2]).unwrap();
    w.push(opt::SERVER_ID, &[198, 18, 0, 1]).unwrap();
    for code in 224..228u8 {
        assert!(w.push_optional(code, &[code; 50]), "option {code}");
    }
    assert!(!w.push_optional(228, &[0; 50]), "no room left anywhere");
    assert_eq!(w.dropped(), 1);
    w.seal();
    w.extend_limit(10);
    w.push(opt::RELAY_AGENT_INFO, &[1, 2, 9, 9]).unwrap();
    let n = HEADER_LEN + w.finish(0);
    let p = Packet::new_checked(&out[..n]).unwrap();
    let codes: Vec<u8> = p.all_options().map(|o| o.unwrap().code).collect();
    // Options field first, then file, then sname (RFC 2131 4.1).
    assert_eq!(
        codes,
        [
            opt::MESSAGE_TYPE,
            opt::SERVER_ID,
            224,
            opt::OVERLOAD,
            opt::RELAY_AGENT_INFO,
            225,
            226,
            227
        ]
    );
    // Option 82 is the last option of the options field (RFC 3046 2.2): the field is read first.
    let main: Vec<u8> = OptionIter::new(p.options())
        .map(|o| o.unwrap().code)
        .collect();
    assert_eq!(main.last(), Some(&opt::RELAY_AGENT_INFO));
    let r = Repr::parse(&p).unwrap();
    assert_eq!(r.overload, 3);
    assert_eq!(r.file, b"");
}

#[test]
fn overload_writer_without_free_fields_is_a_plain_writer() {
    let mut out = [0u8; 600];
    let mut w = OverloadWriter::new(&mut out, 20, false, false).unwrap();
    w.push(opt::MESSAGE_TYPE, &[2]).unwrap();
    assert!(w.push_optional(224, &[1; 10]));
    assert!(!w.push_optional(225, &[1; 10]));
    let n = w.finish(0);
    assert_eq!(n, 3 + 12 + 1);
    assert!(
        OptionIter::new(&out[HEADER_LEN..HEADER_LEN + n]).all(|o| o.unwrap().code != opt::OVERLOAD)
    );
}
