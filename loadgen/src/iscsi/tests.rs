//! The initiator against the product's own target core, over an in-memory disk: login, reads
//! through the first bytes, a write through immediate data and R2Ts read back, logout; and a
//! refused login, a short connection, a timeout.

use super::*;
use bootstorm_iscsi::{Config, Connection, IoKind, IoResult, Limits, Target};
use std::sync::Arc;

const TARGET: &str = "iqn.2026-12.test:disk";

fn connection() -> Connection {
    let cfg = Arc::new(Config {
        targets: vec![Target {
            name: TARGET.into(),
            luns: vec![(
                0,
                bootstorm_iscsi::Disk {
                    blocks: 8192,
                    block_size: 512,
                    read_only: false,
                    serial: "1".into(),
                    unmap: Default::default(),
                },
            )],
            chap: None,
            initiators: vec!["iqn.2026-12.test:m1".into()],
        }],
        portal: "198.18.0.1:3260".into(),
        discovery_chap: None,
        limits: Limits::default(),
    });
    Connection::new(cfg, 1, [3; 16])
}

fn disk() -> Disk {
    parse_root_path(&format!("iscsi:198.18.0.1::::{TARGET}")).unwrap()
}

/// Runs `s` against `c` and `mem` until it ends (bounded), returning the bytes it read.
fn run(s: &mut Session, c: &mut Connection, mem: &mut [u8]) {
    for step in 0..10_000u64 {
        if s.result().is_some() {
            return;
        }
        let out = s.output().to_vec();
        s.sent(out.len());
        let mut at = 0;
        while at + BHS_LEN <= out.len() {
            let h = Bhs::new_checked(&out[at..at + BHS_LEN]).unwrap();
            let end = at + h.total_len(false, false);
            c.handle_wire(&out[at..end]);
            at = end;
        }
        while let Some(io) = c.poll_io() {
            let r = match io.kind {
                IoKind::Read { offset, len } => {
                    IoResult::Read(mem[offset as usize..(offset + len) as usize].to_vec())
                }
                IoKind::Write { offset, data, .. } => {
                    mem[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                    IoResult::Done
                }
                IoKind::Flush | IoKind::Unmap { .. } | IoKind::Extent { .. } => IoResult::Done,
            };
            c.complete_io(io.id, r);
        }
        let mut back = Vec::new();
        while let Some(p) = c.poll_transmit() {
            back.extend_from_slice(&p);
        }
        if back.is_empty() && s.output().is_empty() {
            if c.is_closed() {
                s.on_eof();
            }
            if s.result().is_none() {
                s.on_timer(step * 1_000_000 + 10_000_000_000);
            }
            continue;
        }
        // In two pieces: a PDU split across reads is put back together.
        let half = back.len() / 2;
        s.on_data(step, &back[..half]);
        s.on_data(step, &back[half..]);
    }
    panic!("the session did not end");
}

fn plan(read: u64, write: u64) -> Plan {
    Plan {
        read,
        write,
        write_at: 1 << 20,
        chunk: 128 << 10,
        timeout_us: 1_000_000,
    }
}

#[test]
fn logs_in_reads_writes_through_immediate_data_and_r2t_and_reads_back() {
    let mut c = connection();
    let mut mem: Vec<u8> = (0..8192 * 512).map(|i| (i % 251) as u8).collect();
    let pattern = *b"machine1";
    let mut s = Session::new(
        disk(),
        "iqn.2026-12.test:m1".into(),
        plan(2 << 20, 600 << 10),
        pattern,
        0,
    );
    run(&mut s, &mut c, &mut mem);
    assert_eq!(s.result(), Some(Ok(())));
    assert!(s.login_latency().is_some());
    assert_eq!(s.read_done, 2 << 20);
    let w = &mem[1 << 20..(1 << 20) + (600 << 10)];
    assert!(w.iter().enumerate().all(|(i, b)| *b == pattern[i % 8]));
    // Outside the write, the disk is as it was.
    assert_eq!(mem[(1 << 20) - 1], (((1 << 20) - 1) % 251) as u8);
}

#[test]
fn a_refused_login_a_closed_connection_and_silence_fail() {
    let mut c = connection();
    let mut mem = vec![0u8; 8192 * 512];
    let mut s = Session::new(
        disk(),
        "iqn.2026-12.test:intruder".into(),
        plan(4096, 0),
        [0; 8],
        0,
    );
    run(&mut s, &mut c, &mut mem);
    assert_eq!(s.result(), Some(Err(Failure::LoginRefused)));
    let mut s = Session::new(
        disk(),
        "iqn.2026-12.test:m1".into(),
        plan(4096, 0),
        [0; 8],
        0,
    );
    s.on_eof();
    assert_eq!(s.result(), Some(Err(Failure::Closed)));
    let mut s = Session::new(
        disk(),
        "iqn.2026-12.test:m1".into(),
        plan(4096, 0),
        [0; 8],
        5,
    );
    assert_eq!(s.deadline(), Some(1_000_005));
    s.on_timer(1_000_005);
    assert_eq!(s.result(), Some(Err(Failure::Timeout)));
}

#[test]
fn root_paths_parse_as_rfc_4173_writes_them() {
    let d = parse_root_path("iscsi:198.18.0.1:6:3261:2:iqn.2026-12.x:a:b").unwrap();
    assert_eq!(d.portal, "198.18.0.1:3261".parse().unwrap());
    assert_eq!((d.lun, d.target.as_str()), (2, "iqn.2026-12.x:a:b"));
    assert_eq!(disk().portal.port(), 3260);
    for bad in [
        "nfs:1.2.3.4:/x",
        "iscsi:name.example::::iqn.x",
        "iscsi:1.2.3.4::::",
    ] {
        assert!(parse_root_path(bad).is_none(), "{bad}");
    }
}
