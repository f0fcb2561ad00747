//! Login sequences: the input chooses, PDU by PDU, the stage flags (T, C, CSG, NSG), the ISID and
//! TSIH, and key=value pairs from the keys a login uses (with values from a list or raw bytes),
//! and may answer the target's CHAP challenge correctly or not. No panic; every answer before
//! the full feature phase is a Login Response; and the CHAP target is never entered (a
//! LoggedIn event for it) unless this initiator proved the secret.
#![no_main]

use bootstorm_iscsi::{Chap, Config, Connection, Disk, Event, Limits, Target, login};
use bootstorm_wire::iscsi::{Bhs, Opcode, push_text, text_pairs};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

const SECRET: &[u8] = b"twelve-bytes";

fn config() -> Arc<Config> {
    let disk = Disk {
        blocks: 8,
        block_size: 512,
        read_only: false,
        serial: "f".into(),
        unmap: Default::default(),
    };
    let target = |name: &str, chap: Option<Chap>| Target {
        name: name.into(),
        luns: vec![(0, disk.clone())],
        chap,
        initiators: vec![],
    };
    Arc::new(Config {
        targets: vec![
            target("iqn.2026-12.fuzz:open", None),
            target(
                "iqn.2026-12.fuzz:chap",
                Some(Chap {
                    user: "u".into(),
                    secret: SECRET.to_vec(),
                    mutual: Some(("t".into(), b"another-12by".to_vec())),
                }),
            ),
        ],
        portal: "198.18.0.1:3260".into(),
        discovery_chap: None,
        limits: Limits::default(),
    })
}

const KEYS: &[&str] = &[
    "InitiatorName",
    "TargetName",
    "SessionType",
    "AuthMethod",
    "CHAP_A",
    "CHAP_N",
    "CHAP_R",
    "CHAP_I",
    "CHAP_C",
    "HeaderDigest",
    "DataDigest",
    "MaxConnections",
    "InitialR2T",
    "ImmediateData",
    "MaxRecvDataSegmentLength",
    "MaxBurstLength",
    "FirstBurstLength",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "MaxOutstandingR2T",
    "DataPDUInOrder",
    "DataSequenceInOrder",
    "ErrorRecoveryLevel",
    "IFMarker",
    "X-unknown",
];
const VALUES: &[&str] = &[
    "iqn.2026-12.fuzz:i",
    "iqn.2026-12.fuzz:open",
    "iqn.2026-12.fuzz:chap",
    "Normal",
    "Discovery",
    "None",
    "CHAP",
    "CHAP,None",
    "5",
    "7,5",
    "u",
    "0x00",
    "0xffff",
    "CRC32C",
    "CRC32C,None",
    "Yes",
    "No",
    "0",
    "1",
    "512",
    "8192",
    "262144",
    "16777215",
    "16777216",
    "",
];

fuzz_target!(|data: &[u8]| {
    let mut c = Connection::new(config(), 1, [3; 16]);
    let mut i = 0;
    let next = |i: &mut usize| -> u8 {
        let b = data.get(*i).copied().unwrap_or(0);
        *i += 1;
        b
    };
    let mut challenge: Option<(u8, Vec<u8>)> = None;
    let mut proved = false;
    let mut cmd_sn = 1u32;
    let mut in_ffp = false;
    for _ in 0..16 {
        if i >= data.len() {
            break;
        }
        let flags = next(&mut i);
        let nkeys = next(&mut i) % 8;
        let mut text = Vec::new();
        for _ in 0..nkeys {
            let k = KEYS[usize::from(next(&mut i)) % KEYS.len()];
            let sel = next(&mut i);
            if sel == 0xff {
                // Raw bytes as the value (up to 16).
                let n = usize::from(next(&mut i) % 16);
                let raw: String = (0..n).map(|_| char::from(next(&mut i) % 0x7f)).collect();
                push_text(&mut text, k, &raw);
            } else {
                push_text(&mut text, k, VALUES[usize::from(sel) % VALUES.len()]);
            }
        }
        // Answer the last challenge: correctly, or with a wrong secret.
        if let Some((id, ch)) = &challenge
            && next(&mut i) % 2 == 1
        {
            let right = next(&mut i) % 4 != 0;
            let secret: &[u8] = if right { SECRET } else { b"not-the-secr" };
            push_text(&mut text, "CHAP_N", "u");
            push_text(
                &mut text,
                "CHAP_R",
                &login::to_hex(&login::chap_response(*id, secret, ch)),
            );
            push_text(&mut text, "CHAP_I", "9");
            push_text(&mut text, "CHAP_C", "0x0102030405060708090a0b0c0d0e0f10");
            if right {
                proved = true;
            }
        }
        if text.len() > 8192 {
            break;
        }
        let mut pdu = vec![0u8; 48];
        {
            let mut h = Bhs::new_checked(&mut pdu[..]).unwrap();
            h.clear(Opcode::LoginRequest, true);
            h.set_flags(flags);
            let isid = if next(&mut i) < 250 {
                [0x80, 0, 0, 0, 0, 1]
            } else {
                [next(&mut i); 6]
            };
            let tsih = if next(&mut i) < 250 { 0 } else { 5 };
            h.set_isid_tsih(isid, tsih);
            h.set_word24(cmd_sn);
            h.set_data_len(text.len());
        }
        if next(&mut i) % 8 == 0 {
            cmd_sn = cmd_sn.wrapping_add(1);
        }
        // A Login Request once in the full feature phase (of a normal or a discovery session)
        // is rejected and the connection ends: only until then must every answer be a Login
        // Response.
        c.handle_pdu(&pdu, &text);
        while let Some(p) = c.poll_transmit() {
            let h = Bhs::new_checked(&p[..]).unwrap();
            if !in_ffp {
                assert_eq!(h.opcode(), Opcode::LoginResponse);
            }
            let n = h.data_len().min(p.len() - 48);
            for kv in text_pairs(&p[48..48 + n]).flatten() {
                if kv.0 == "CHAP_I" {
                    let id = kv.1.parse().unwrap_or(0);
                    challenge = Some((id, challenge.map(|c| c.1).unwrap_or_default()));
                }
                if kv.0 == "CHAP_C" {
                    let ch = login::from_hex(kv.1).unwrap_or_default();
                    let id = challenge.as_ref().map_or(0, |c| c.0);
                    challenge = Some((id, ch));
                }
            }
        }
        while let Some(e) = c.poll_event() {
            if let Event::LoggedIn { target, .. } = &e {
                in_ffp = true;
                if target.as_deref() == Some("iqn.2026-12.fuzz:chap") {
                    assert!(proved, "logged in to the CHAP target without the secret");
                }
            }
        }
        if c.is_closed() {
            break;
        }
    }
});
