//! Any bytes as the stream an initiator sends: cut into PDUs by their own headers (as the
//! daemon reads them), fed to a target connection that has a CHAP target and an open one. No
//! panic; every PDU the target sends is a whole, padded PDU whose header parses; I/O requests
//! stay inside the unit; once closed, nothing more is sent.
#![no_main]

use bootstorm_iscsi::{Chap, Config, Connection, Disk, IoKind, IoResult, Limits, Target};
use bootstorm_wire::iscsi::{BHS_LEN, Bhs, pad4, text_pairs};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

const BLOCKS: u64 = 64;

fn config() -> Arc<Config> {
    let disk = Disk {
        blocks: BLOCKS,
        block_size: 512,
        read_only: false,
        serial: "f".into(),
        unmap: bootstorm_iscsi::scsi::Unmap::Zeroes,
    };
    Arc::new(Config {
        targets: vec![
            Target {
                name: "iqn.2026-12.fuzz:open".into(),
                luns: vec![(0, disk.clone())],
                chap: None,
                initiators: vec![],
            },
            Target {
                name: "iqn.2026-12.fuzz:chap".into(),
                luns: vec![(0, disk)],
                chap: Some(Chap {
                    user: "u".into(),
                    secret: b"twelve-bytes".to_vec(),
                    mutual: None,
                }),
                initiators: vec![],
            },
        ],
        portal: "198.18.0.1:3260".into(),
        discovery_chap: None,
        limits: Limits::default(),
    })
}

fuzz_target!(|data: &[u8]| {
    let mut c = Connection::new(config(), 1, [7; 16]);
    let mut rest = data;
    let mut steps = 0;
    while rest.len() >= BHS_LEN && steps < 256 {
        steps += 1;
        let (header, tail) = rest.split_at(BHS_LEN);
        let h = Bhs::new_checked(header).unwrap();
        let n = h.data_len();
        if n > c.data_limit() {
            c.handle_oversize(header);
        } else {
            let take = pad4(n).min(tail.len());
            let payload = &tail[..n.min(take)];
            // A header claiming more than the input holds is cut: what is there goes in.
            let mut hdr = header.to_vec();
            if payload.len() != n {
                let mut hv = Bhs::new_checked(&mut hdr[..]).unwrap();
                hv.set_data_len(payload.len());
            }
            c.handle_pdu(&hdr, payload);
            rest = &tail[take..];
        }
        while let Some(io) = c.poll_io() {
            let end = match &io.kind {
                IoKind::Read { offset, len } => offset + len,
                IoKind::Write { offset, data, .. } => offset + data.len() as u64,
                IoKind::Flush => 0,
                IoKind::Unmap { ranges } => ranges.iter().map(|r| r.0 + r.1).max().unwrap_or(0),
                IoKind::Extent { offset } => *offset,
            };
            assert!(end <= BLOCKS * 512, "I/O past the unit: {io:?}");
            let r = match io.kind {
                IoKind::Read { len, .. } => IoResult::Read(vec![0; len as usize]),
                IoKind::Extent { offset } => IoResult::Extent {
                    len: BLOCKS * 512 - offset,
                    mapped: offset % 2 == 0,
                },
                _ => IoResult::Done,
            };
            c.complete_io(io.id, r);
        }
        while let Some(p) = c.poll_transmit() {
            let h = Bhs::new_checked(&p[..]).expect("a whole header");
            assert_eq!(p.len(), BHS_LEN + pad4(h.data_len()), "padded PDU");
            for kv in text_pairs(&p[BHS_LEN..BHS_LEN + h.data_len()]) {
                let _ = kv;
            }
        }
        while c.poll_event().is_some() {}
        if c.is_closed() {
            c.handle_pdu(&[0u8; 48], &[]);
            assert!(c.poll_transmit().is_none(), "nothing after close");
            break;
        }
        if n > c.data_limit() {
            break;
        }
    }
});
