//! The target core driven by a simulated initiator: logins (none, CHAP, mutual CHAP, refused),
//! discovery, reads and writes through R2T against an in-memory disk, task management, and the
//! protocol errors that close a connection.

use super::*;
use bootstorm_wire::iscsi::{Bhs, Opcode, RESERVED_TAG, push_text, text_pairs};
use std::sync::Arc;

const TARGET: &str = "iqn.2026-12.test.bootstorm:disk0";
const INITIATOR: &str = "iqn.2026-12.test:initiator";

fn disk(blocks: u64) -> Disk {
    Disk {
        blocks,
        block_size: 512,
        read_only: false,
        serial: "0001".into(),
        unmap: crate::scsi::Unmap::Zeroes,
    }
}

fn config(chap: Option<Chap>) -> Arc<Config> {
    Arc::new(Config {
        targets: vec![Target {
            name: TARGET.into(),
            luns: vec![(0, disk(2048))],
            chap,
            initiators: vec![],
        }],
        portal: "198.18.0.1:3260".into(),
        discovery_chap: None,
        limits: Limits::default(),
    })
}

/// A PDU an initiator sends.
struct Req {
    bhs: [u8; 48],
    data: Vec<u8>,
}

impl Req {
    fn new(op: Opcode, immediate: bool, flags: u8) -> Req {
        let mut bhs = [0u8; 48];
        let mut h = Bhs::new_checked(&mut bhs[..]).unwrap();
        h.clear(op, immediate);
        h.set_flags(flags);
        Req {
            bhs,
            data: Vec::new(),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Bhs<&mut [u8]>)) -> Req {
        f(&mut Bhs::new_checked(&mut self.bhs[..]).unwrap());
        self
    }

    fn data(mut self, d: Vec<u8>) -> Req {
        Bhs::new_checked(&mut self.bhs[..])
            .unwrap()
            .set_data_len(d.len());
        self.data = d;
        self
    }
}

/// A PDU the target sent: its header and data.
#[derive(Debug)]
struct Resp {
    bhs: Vec<u8>,
    data: Vec<u8>,
}

impl Resp {
    fn h(&self) -> Bhs<&[u8]> {
        Bhs::new_checked(&self.bhs[..]).unwrap()
    }

    fn keys(&self) -> Vec<(String, String)> {
        text_pairs(&self.data)
            .map(|p| {
                let (k, v) = p.unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn key(&self, k: &str) -> Option<String> {
        self.keys()
            .into_iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v)
    }
}

/// A connection, an in-memory disk behind it, and the initiator's sequence numbers.
struct Sim {
    c: Connection,
    disk: Vec<u8>,
    cmd_sn: u32,
    itt: u32,
}

impl Sim {
    fn new(cfg: Arc<Config>) -> Sim {
        Sim {
            c: Connection::new(cfg, 7, [9; 16]),
            disk: (0..2048 * 512).map(|i| (i % 251) as u8).collect(),
            cmd_sn: 1,
            itt: 1,
        }
    }

    /// Sends `r` and returns what came back, performing every I/O against the disk.
    fn send(&mut self, r: Req) -> Vec<Resp> {
        assert!(r.data.len() <= self.c.data_limit());
        self.c.handle_pdu(&r.bhs, &r.data);
        while let Some(io) = self.c.poll_io() {
            let res = match io.kind {
                IoKind::Read { offset, len } => {
                    IoResult::Read(self.disk[offset as usize..(offset + len) as usize].to_vec())
                }
                IoKind::Write { offset, data, .. } => {
                    self.disk[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                    IoResult::Done
                }
                IoKind::Flush => IoResult::Done,
                IoKind::Unmap { ranges } => {
                    for (off, len) in ranges {
                        self.disk[off as usize..(off + len) as usize].fill(0);
                    }
                    IoResult::Done
                }
                // A disk of data to its end.
                IoKind::Extent { offset } => IoResult::Extent {
                    len: self.disk.len() as u64 - offset,
                    mapped: true,
                },
            };
            self.c.complete_io(io.id, res);
        }
        let mut out = Vec::new();
        while let Some(p) = self.c.poll_transmit() {
            let h = Bhs::new_checked(&p[..]).unwrap();
            let n = h.data_len();
            assert_eq!(p.len(), 48 + bootstorm_wire::iscsi::pad4(n), "padded");
            out.push(Resp {
                bhs: p[..48].to_vec(),
                data: p[48..48 + n].to_vec(),
            });
        }
        out
    }

    fn login_pdu(&self, csg: u8, nsg: u8, transit: bool, keys: &[(&str, &str)]) -> Req {
        let mut t = Vec::new();
        for (k, v) in keys {
            push_text(&mut t, k, v);
        }
        let flags = (csg << 2) | if transit { 0x80 | nsg } else { 0 };
        let cmd_sn = self.cmd_sn;
        Req::new(Opcode::LoginRequest, true, flags)
            .with(|h| {
                h.set_isid_tsih([0x80, 0, 0, 0, 0, 1], 0);
                h.set_itt(0);
                h.set_word24(cmd_sn);
            })
            .data(t)
    }

    /// A login with no authentication, straight through the operational stage.
    fn login(&mut self) {
        let r = self.login_pdu(
            0,
            1,
            true,
            &[
                ("InitiatorName", INITIATOR),
                ("TargetName", TARGET),
                ("SessionType", "Normal"),
                ("AuthMethod", "None"),
            ],
        );
        let got = self.send(r);
        assert_eq!(got.len(), 1);
        let h = got[0].h();
        assert_eq!(h.opcode(), Opcode::LoginResponse);
        assert_eq!(h.flags(), 0x81, "T, CSG 0, NSG 1");
        assert_eq!(got[0].key("AuthMethod").as_deref(), Some("None"));
        assert_eq!(got[0].key("TargetPortalGroupTag").as_deref(), Some("1"));
        let r = self.login_pdu(
            1,
            3,
            true,
            &[
                ("HeaderDigest", "None"),
                ("DataDigest", "None"),
                ("MaxRecvDataSegmentLength", "65536"),
                ("MaxBurstLength", "262144"),
                ("FirstBurstLength", "65536"),
                ("InitialR2T", "Yes"),
                ("ImmediateData", "Yes"),
            ],
        );
        let got = self.send(r);
        let h = got[0].h();
        assert_eq!(h.flags(), 0x87, "T, CSG 1, NSG 3");
        assert_eq!(h.tsih(), 7);
        assert_eq!(h.login_status(), 0, "success");
        assert_eq!(
            got[0].key("MaxRecvDataSegmentLength").as_deref(),
            Some("262144")
        );
        assert_eq!(got[0].key("InitialR2T").as_deref(), Some("Yes"));
        assert!(matches!(self.c.poll_event(), Some(Event::LoggedIn { .. })));
    }

    fn command(&mut self, cdb: &[u8], flags: u8, expected: u32, data: Vec<u8>) -> Vec<Resp> {
        let (itt, sn) = (self.itt, self.cmd_sn);
        self.itt += 1;
        self.cmd_sn += 1;
        let r = Req::new(Opcode::ScsiCommand, false, 0x80 | flags)
            .with(|h| {
                h.set_itt(itt);
                h.set_word20(expected);
                h.set_word24(sn);
                h.set_cdb(cdb);
            })
            .data(data);
        self.send(r)
    }
}

fn read10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![0x28, 0];
    c.extend_from_slice(&lba.to_be_bytes());
    c.push(0);
    c.extend_from_slice(&blocks.to_be_bytes());
    c.push(0);
    c
}

fn write10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

#[test]
fn login_then_inquiry_read_and_status() {
    let mut s = Sim::new(config(None));
    s.login();
    // INQUIRY: one Data-In with status.
    let got = s.command(&[0x12, 0, 0, 0, 96, 0], 0x40, 96, vec![]);
    assert_eq!(got.len(), 1);
    let h = got[0].h();
    assert_eq!(h.opcode(), Opcode::DataIn);
    assert_eq!(h.flags() & 0x81, 0x81, "F and S");
    assert_eq!(h.flags() & 0x02, 0x02, "underflow: 74 of 96 bytes");
    assert_eq!(h.word44(), 22);
    assert_eq!(&got[0].data[8..16], b"BOOTSTRM");
    // A read of 64 KiB arrives in order, cut into PDUs of the initiator's 64 KiB limit.
    let got = s.command(&read10(10, 256), 0x40, 256 * 512, vec![]);
    let mut all = Vec::new();
    for (i, r) in got.iter().enumerate() {
        let h = r.h();
        assert_eq!(h.opcode(), Opcode::DataIn);
        assert_eq!(h.data_sn(), i as u32);
        assert_eq!(h.buffer_offset() as usize, all.len());
        all.extend_from_slice(&r.data);
    }
    assert_eq!(all, s.disk[10 * 512..266 * 512]);
    assert_eq!(got.len(), 2);
    assert_eq!(got.last().unwrap().h().flags() & 0x01, 0x01);
    // Past the end: CHECK CONDITION with sense LBA OUT OF RANGE.
    let got = s.command(&read10(2047, 2), 0x40, 1024, vec![]);
    let h = got[0].h();
    assert_eq!(h.opcode(), Opcode::ScsiResponse);
    assert_eq!(h.byte3(), 0x02);
    assert_eq!(&got[0].data[..2], &[0, 18]);
    assert_eq!((got[0].data[2 + 2], got[0].data[2 + 12]), (0x05, 0x21));
    // StatSN counts every status: login 2, then 1 per command.
    assert_eq!(h.stat_sn(), 2 + 3);
    assert_eq!(h.exp_stat_sn(), s.cmd_sn, "ExpCmdSN follows the commands");
}

#[test]
fn a_write_takes_immediate_data_then_asks_for_the_rest() {
    let mut s = Sim::new(config(None));
    s.login();
    let len = 1200 * 512usize; // 600 KiB: immediate 64 KiB, then R2Ts of at most 256 KiB
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
    let got = s.command(
        &write10(100, 1200),
        0x20,
        len as u32,
        payload[..65536].to_vec(),
    );
    assert_eq!(got.len(), 1);
    let r2t = got[0].h();
    assert_eq!(r2t.opcode(), Opcode::ReadyToTransfer);
    assert_eq!(r2t.buffer_offset(), 65536);
    assert_eq!(r2t.word44(), 262_144, "MaxBurstLength");
    let (itt, ttt) = (r2t.itt(), r2t.ttt());
    let mut off = 65536usize;
    let mut last = Vec::new();
    while off < len {
        let want = (len - off).min(262_144);
        // The burst in Data-Out PDUs of 64 KiB, DataSN from 0 in each R2T's sequence.
        let mut sent = 0;
        let mut sn = 0;
        while sent < want {
            let n = (want - sent).min(65536);
            let at = off + sent;
            let r = Req::new(
                Opcode::DataOut,
                false,
                if sent + n == want { 0x80 } else { 0 },
            )
            .with(|h| {
                h.set_itt(itt);
                h.set_word20(ttt);
                h.set_word36(sn);
                h.set_word40(at as u32);
            })
            .data(payload[at..at + n].to_vec());
            last = s.send(r);
            sn += 1;
            sent += n;
        }
        off += want;
        if off < len {
            let h = last[0].h();
            assert_eq!(h.opcode(), Opcode::ReadyToTransfer);
            assert_eq!(h.buffer_offset() as usize, off);
            assert!(h.data_sn() >= 1, "R2TSN counts up");
        }
    }
    let h = last[0].h();
    assert_eq!(h.opcode(), Opcode::ScsiResponse);
    assert_eq!(h.byte3(), 0);
    assert_eq!(&s.disk[100 * 512..1300 * 512], &payload[..]);
}

#[test]
fn chap_proves_the_initiator_and_mutual_chap_the_target() {
    let chap = Chap {
        user: "alice".into(),
        secret: b"sixteen-byte-sec".to_vec(),
        mutual: Some(("target".into(), b"another-secret!!".to_vec())),
    };
    for wrong in [false, true] {
        let mut s = Sim::new(config(Some(chap.clone())));
        let r = s.login_pdu(
            0,
            1,
            true,
            &[
                ("InitiatorName", INITIATOR),
                ("TargetName", TARGET),
                ("AuthMethod", "CHAP,None"),
            ],
        );
        let got = s.send(r);
        assert_eq!(got[0].key("AuthMethod").as_deref(), Some("CHAP"));
        assert_eq!(got[0].h().flags() & 0x80, 0, "no transit before CHAP");
        let got = s.send(s.login_pdu(0, 1, false, &[("CHAP_A", "7,5")]));
        let id: u8 = got[0].key("CHAP_I").unwrap().parse().unwrap();
        let c = login::from_hex(&got[0].key("CHAP_C").unwrap()).unwrap();
        let secret: &[u8] = if wrong {
            b"not-the-secret!!"
        } else {
            &chap.secret
        };
        let resp = login::to_hex(&login::chap_response(id, secret, &c));
        let mine = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
        let got = s.send(s.login_pdu(
            0,
            1,
            true,
            &[
                ("CHAP_N", "alice"),
                ("CHAP_R", &resp),
                ("CHAP_I", "77"),
                ("CHAP_C", &login::to_hex(&mine)),
            ],
        ));
        let h = got[0].h();
        if wrong {
            assert_eq!(h.login_status(), 0x0201, "authentication failure");
            assert!(s.c.is_closed());
            assert!(matches!(s.c.poll_event(), Some(Event::LoginFailed { .. })));
            continue;
        }
        assert_eq!(h.login_status(), 0);
        assert_eq!(h.flags(), 0x81);
        assert_eq!(got[0].key("CHAP_N").as_deref(), Some("target"));
        let want = login::chap_response(77, b"another-secret!!", &mine);
        assert_eq!(got[0].key("CHAP_R"), Some(login::to_hex(&want)));
    }
    // Skipping the security stage when CHAP is required fails.
    let mut s = Sim::new(config(Some(chap)));
    let got = s.send(s.login_pdu(
        1,
        3,
        true,
        &[("InitiatorName", INITIATOR), ("TargetName", TARGET)],
    ));
    assert_eq!(got[0].h().login_status(), 0x0201);
}

#[test]
fn discovery_lists_the_targets_and_logins_that_cannot_be_fail_with_their_status() {
    let mut s = Sim::new(config(None));
    let got = s.send(s.login_pdu(
        1,
        3,
        true,
        &[("InitiatorName", INITIATOR), ("SessionType", "Discovery")],
    ));
    assert_eq!(got[0].h().flags(), 0x87);
    let mut t = Vec::new();
    push_text(&mut t, "SendTargets", "All");
    let sn = s.cmd_sn;
    let got = s.send(
        Req::new(Opcode::TextRequest, false, 0x80)
            .with(|h| {
                h.set_itt(5);
                h.set_word20(RESERVED_TAG);
                h.set_word24(sn);
            })
            .data(t),
    );
    assert_eq!(got[0].h().opcode(), Opcode::TextResponse);
    assert_eq!(
        got[0].keys(),
        [
            ("TargetName".to_string(), TARGET.to_string()),
            ("TargetAddress".to_string(), "198.18.0.1:3260,1".to_string())
        ]
    );
    // A discovery session may not send SCSI commands.
    let got = s.command(&[0, 0, 0, 0, 0, 0], 0, 0, vec![]);
    assert_eq!(got[0].h().opcode(), Opcode::Reject);
    for (keys, status) in [
        (vec![("TargetName", TARGET)], 0x0207),
        (
            vec![("InitiatorName", INITIATOR), ("TargetName", "iqn.nope")],
            0x0203,
        ),
        (vec![("InitiatorName", INITIATOR)], 0x0207),
    ] {
        let mut s = Sim::new(config(None));
        let got = s.send(s.login_pdu(0, 1, true, &keys));
        assert_eq!(got[0].h().login_status(), status, "{keys:?}");
        assert_eq!(got[0].h().tsih(), 0);
        assert!(s.c.is_closed());
    }
}

#[test]
fn protocol_errors_close_the_connection() {
    // A SCSI command before login.
    let mut s = Sim::new(config(None));
    let _ = s.command(&[0, 0, 0, 0, 0, 0], 0, 0, vec![]);
    assert!(s.c.is_closed());
    assert!(matches!(s.c.poll_event(), Some(Event::ProtocolError(_))));
    // Data-Out at the wrong offset, or with the wrong DataSN: rejected, and its command fails
    // with CHECK CONDITION; the connection goes on.
    let mut s = Sim::new(config(None));
    s.login();
    for (offset, data_sn) in [(512, 0), (0, 5)] {
        let got = s.command(&write10(0, 4), 0x20, 2048, vec![]);
        let (itt, ttt) = (got[0].h().itt(), got[0].h().ttt());
        let got = s.send(
            Req::new(Opcode::DataOut, false, 0x80)
                .with(|h| {
                    h.set_itt(itt);
                    h.set_word20(ttt);
                    h.set_word36(data_sn);
                    h.set_word40(offset);
                })
                .data(vec![0; 512]),
        );
        assert_eq!(got[0].h().opcode(), Opcode::Reject);
        assert_eq!(got[1].h().opcode(), Opcode::ScsiResponse);
        assert_eq!((got[1].h().itt(), got[1].h().byte3()), (itt, 0x02));
        assert!(!s.c.is_closed());
    }
    let got = s.command(&[0, 0, 0, 0, 0, 0], 0, 0, vec![]);
    assert_eq!(got[0].h().byte3(), 0, "the next command is served");
    // A header whose data length lies about the data given.
    let mut s = Sim::new(config(None));
    let mut r = s.login_pdu(0, 1, true, &[("InitiatorName", INITIATOR)]);
    r.bhs[7] = r.bhs[7].wrapping_add(4);
    s.c.handle_pdu(&r.bhs, &r.data);
    assert!(s.c.is_closed());
    // More data than allowed: rejected unread.
    let mut s = Sim::new(config(None));
    s.login();
    let mut big = [0u8; 48];
    Bhs::new_checked(&mut big[..])
        .unwrap()
        .clear(Opcode::ScsiCommand, false);
    s.c.handle_oversize(&big);
    assert_eq!(
        Bhs::new_checked(&s.c.poll_transmit().unwrap()[..])
            .unwrap()
            .opcode(),
        Opcode::Reject
    );
    assert!(s.c.is_closed());
}

#[test]
fn nop_task_management_and_logout() {
    let mut s = Sim::new(config(None));
    s.login();
    let sn = s.cmd_sn;
    let got = s.send(
        Req::new(Opcode::NopOut, true, 0x80)
            .with(|h| {
                h.set_itt(42);
                h.set_word20(RESERVED_TAG);
                h.set_word24(sn);
            })
            .data(b"ping".to_vec()),
    );
    assert_eq!(got[0].h().opcode(), Opcode::NopIn);
    assert_eq!((got[0].h().itt(), &got[0].data[..]), (42, &b"ping"[..]));
    // A write waiting for data is aborted; its late data is dropped; ABORT of an unknown task
    // says it does not exist.
    let got = s.command(&write10(0, 4), 0x20, 2048, vec![]);
    let itt = got[0].h().itt();
    for (tag, response) in [(itt, 0u8), (999, 1)] {
        let sn = s.cmd_sn;
        let got = s.send(
            Req::new(Opcode::TaskManagementRequest, true, 0x80 | 1).with(|h| {
                h.set_itt(500 + tag);
                h.set_word20(tag);
                h.set_word24(sn);
            }),
        );
        assert_eq!(got[0].h().opcode(), Opcode::TaskManagementResponse);
        assert_eq!(got[0].h().byte2(), response);
    }
    let sn = s.cmd_sn;
    let got = s.send(Req::new(Opcode::LogoutRequest, true, 0x80).with(|h| {
        h.set_itt(77);
        h.set_word24(sn);
    }));
    assert_eq!(got[0].h().opcode(), Opcode::LogoutResponse);
    assert_eq!(got[0].h().byte2(), 0);
    assert!(s.c.is_closed());
}

/// CRC32C digests (RFC 7143 12.1): negotiated in the operational stage, carried from the full
/// feature phase on, least significant byte first (RFC 3720 B.4's vector: 32 zero bytes give
/// aa 36 91 8a on the wire); a wrong data digest rejects the PDU, a wrong header digest closes.
#[test]
fn crc32c_digests_are_checked_and_sent() {
    assert_eq!(
        crc32c::crc32c(&[0u8; 32]).to_le_bytes(),
        [0xaa, 0x36, 0x91, 0x8a]
    );
    let mut s = Sim::new(config(None));
    let got = s.send(s.login_pdu(
        1,
        3,
        true,
        &[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("HeaderDigest", "CRC32C,None"),
            ("DataDigest", "CRC32C,None"),
        ],
    ));
    assert_eq!(got[0].key("HeaderDigest").as_deref(), Some("CRC32C"));
    assert_eq!(got[0].key("DataDigest").as_deref(), Some("CRC32C"));
    assert_eq!(s.c.digests(), (true, true));
    let wire = |bhs: &[u8], data: &[u8]| {
        let mut p = bhs.to_vec();
        p.extend_from_slice(&crc32c::crc32c(bhs).to_le_bytes());
        let at = p.len();
        p.extend_from_slice(data);
        p.resize(at + bootstorm_wire::iscsi::pad4(data.len()), 0);
        if !data.is_empty() {
            let c = crc32c::crc32c(&p[at..]);
            p.extend_from_slice(&c.to_le_bytes());
        }
        p
    };
    let nop = Req::new(Opcode::NopOut, true, 0x80)
        .with(|h| {
            h.set_itt(9);
            h.set_word20(RESERVED_TAG);
        })
        .data(b"ping!".to_vec());
    s.c.handle_wire(&wire(&nop.bhs, &nop.data));
    let p = s.c.poll_transmit().expect("a NOP-In");
    let h = Bhs::new_checked(&p[..]).unwrap();
    assert_eq!(h.opcode(), Opcode::NopIn);
    assert_eq!(p.len(), h.total_len(true, true));
    assert_eq!(&p[48..52], &crc32c::crc32c(&p[..48]).to_le_bytes());
    assert_eq!(&p[52..57], b"ping!");
    assert_eq!(&p[60..64], &crc32c::crc32c(&p[52..60]).to_le_bytes());
    // A wrong data digest: rejected, reason 0x02; the connection goes on.
    let mut bad = wire(&nop.bhs, &nop.data);
    let n = bad.len();
    bad[n - 1] ^= 1;
    s.c.handle_wire(&bad);
    let p = s.c.poll_transmit().expect("a Reject");
    let h = Bhs::new_checked(&p[..]).unwrap();
    assert_eq!((h.opcode(), h.byte2()), (Opcode::Reject, 0x02));
    assert!(!s.c.is_closed());
    // A wrong header digest: closed.
    let mut bad = wire(&nop.bhs, &nop.data);
    bad[50] ^= 1;
    s.c.handle_wire(&bad);
    assert!(s.c.is_closed());
}

/// WRITE SAME repeats its one block over the range (with UNMAP and a block of zeros, the range
/// is unmapped instead); UNMAP hands its descriptors' ranges back; bad fields and ranges fail
/// with their sense; VPD 0xB2 and READ CAPACITY (16) say the unit is thin with LBPRZ.
#[test]
fn write_same_and_unmap() {
    let mut s = Sim::new(config(None));
    s.login();
    let status = |got: &[Resp]| {
        let h = got.last().unwrap().h();
        (h.opcode(), h.byte3())
    };
    // WRITE SAME (10): LBA 100, 20 blocks of one 512-byte block.
    let mut ws = vec![0x41, 0, 0, 0, 0, 100, 0, 0, 20, 0];
    let block: Vec<u8> = (0..512).map(|i| (i % 7) as u8 + 1).collect();
    let got = s.command(&ws, 0x20, 512, block.clone());
    assert_eq!(status(&got), (Opcode::ScsiResponse, 0));
    for b in 100..120 {
        assert_eq!(&s.disk[b * 512..(b + 1) * 512], &block[..], "block {b}");
    }
    assert_ne!(&s.disk[120 * 512..121 * 512], &block[..]);
    // With UNMAP and zeros: unmapped (reads as zeros here).
    ws[1] = 0x08;
    let got = s.command(&ws, 0x20, 512, vec![0; 512]);
    assert_eq!(status(&got), (Opcode::ScsiResponse, 0));
    assert!(s.disk[100 * 512..120 * 512].iter().all(|&b| b == 0));
    // No block count, past the end, protection bits: refused.
    for cdb in [
        vec![0x41, 0, 0, 0, 0, 100, 0, 0, 0, 0],
        vec![0x41, 0, 0, 0, 0x07, 0xff, 0, 0, 2, 0],
        vec![0x41, 0x20, 0, 0, 0, 1, 0, 0, 1, 0],
    ] {
        let got = s.command(&cdb, 0x20, 512, block.clone());
        assert_eq!(status(&got), (Opcode::ScsiResponse, 2), "{cdb:?}");
    }
    // UNMAP two ranges: blocks 10..12 and 500..501 read as zeros; others stay.
    let mut list = vec![0u8; 8 + 32];
    list[0..2].copy_from_slice(&(6u16 + 32).to_be_bytes());
    list[2..4].copy_from_slice(&32u16.to_be_bytes());
    list[8..16].copy_from_slice(&10u64.to_be_bytes());
    list[16..20].copy_from_slice(&2u32.to_be_bytes());
    list[24..32].copy_from_slice(&500u64.to_be_bytes());
    list[32..36].copy_from_slice(&1u32.to_be_bytes());
    let before = s.disk[12 * 512];
    let unmap = [0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0];
    let got = s.command(&unmap, 0x20, 40, list.clone());
    assert_eq!(status(&got), (Opcode::ScsiResponse, 0));
    assert!(s.disk[10 * 512..12 * 512].iter().all(|&b| b == 0));
    assert!(s.disk[500 * 512..501 * 512].iter().all(|&b| b == 0));
    assert_eq!(s.disk[12 * 512], before);
    // A descriptor past the end: LBA OUT OF RANGE.
    list[24..32].copy_from_slice(&2048u64.to_be_bytes());
    let got = s.command(&unmap, 0x20, 40, list);
    assert_eq!(status(&got), (Opcode::ScsiResponse, 2));
    assert_eq!(got.last().unwrap().data[2 + 12], 0x21);
    // Thin, LBPRZ: VPD 0xB2 and READ CAPACITY (16).
    let got = s.command(&[0x12, 1, 0xb2, 0, 8, 0], 0x40, 8, vec![]);
    assert_eq!(&got[0].data[..], &[0, 0xb2, 0, 4, 0, 0xe4, 2, 0]);
    let rc16 = [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
    let got = s.command(&rc16, 0x40, 32, vec![]);
    assert_eq!(got[0].data[14], 0xc0);
    // GET LBA STATUS from LBA 2000: one descriptor, mapped to the end (48 blocks).
    let gls = [0x9e, 0x12, 0, 0, 0, 0, 0, 0, 0x07, 0xd0, 0, 0, 0, 24, 0, 0];
    let got = s.command(&gls, 0x40, 24, vec![]);
    let d = &got[0].data;
    assert_eq!(&d[0..4], &20u32.to_be_bytes());
    assert_eq!(&d[8..16], &2000u64.to_be_bytes());
    assert_eq!(&d[16..20], &48u32.to_be_bytes());
    assert_eq!(d[20], 0);
}
