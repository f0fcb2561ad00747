use super::*;
use crate::WallClock;
use crate::journal::{Durability, Journal, Settings};
use crate::record::Kind;
use bootstorm_time::Clock;
use std::sync::atomic::Ordering;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bs-journal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rec(kind: Kind, n: u8, addr: u8, state: LeaseState) -> Record {
    Record {
        kind,
        at_ms: 1_000,
        key: vec![1, 0x52, 0x54, 0, 0, 0, n].into(),
        hwaddr: vec![0x52, 0x54, 0, 0, 0, n].into(),
        addr: Ipv4Addr::new(198, 18, 1, addr),
        state,
        expires_ms: 9_000_000_000_000,
        until_ms: 0,
        hostname: None,
        subnet: 0,
        reserved: false,
    }
}

fn start(dir: &Path, next: u64, initial: &[Record], max: u64) -> Journal {
    Journal::start(
        &Settings {
            dir: dir.to_path_buf(),
            durability: Durability::Fsync,
            segment_max: max,
            commit_delay: std::time::Duration::ZERO,
        },
        WallClock::new(Clock::new()),
        next,
        initial,
        Box::new(Vec::new),
    )
    .unwrap()
}

fn by_key(r: &Replayed) -> HashMap<u8, (Ipv4Addr, LeaseState)> {
    r.records
        .iter()
        .map(|x| (x.key[6], (x.addr, x.state)))
        .collect()
}

#[test]
fn journal_round_trips_and_later_records_win() {
    let dir = tmp("roundtrip");
    let j = start(&dir, 1, &[], 1 << 20);
    j.append(&rec(Kind::Bind, 1, 10, LeaseState::Bound));
    j.append(&rec(Kind::Bind, 2, 11, LeaseState::Bound));
    j.append(&rec(Kind::Release, 1, 10, LeaseState::Released));
    // Client 3 takes .10 after 1 released it; then 2 moves to .12.
    j.append(&rec(Kind::Bind, 3, 10, LeaseState::Bound));
    let s = j.append(&rec(Kind::Bind, 2, 12, LeaseState::Bound));
    j.wait(s).unwrap();
    assert!(j.durable().unwrap() >= s);
    drop(j);
    let r = replay(&dir, false).unwrap();
    assert_eq!(r.read, 5);
    let m = by_key(&r);
    assert_eq!(m[&1], (Ipv4Addr::new(198, 18, 1, 10), LeaseState::Released));
    assert_eq!(m[&2], (Ipv4Addr::new(198, 18, 1, 12), LeaseState::Bound));
    assert_eq!(m[&3], (Ipv4Addr::new(198, 18, 1, 10), LeaseState::Bound));
    assert_eq!(r.next_segment, 2);
    assert!(r.torn.is_none() && r.repaired.is_none());
    // Restart: a snapshot of the replayed state replaces the old files; same state again.
    let j = start(&dir, r.next_segment, &r.records, 1 << 20);
    drop(j);
    let (segs, snaps) = list(&dir).unwrap();
    assert_eq!(segs.iter().map(|s| s.0).collect::<Vec<_>>(), [2]);
    assert_eq!(snaps.iter().map(|s| s.0).collect::<Vec<_>>(), [2]);
    let r2 = replay(&dir, false).unwrap();
    assert_eq!(by_key(&r2), m);
    assert_eq!(r2.next_segment, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_release_racing_the_next_bind_of_its_address_is_harmless() {
    let mut f = Fold::default();
    f.apply(rec(Kind::Bind, 1, 10, LeaseState::Bound));
    // 2 binds .10 before 1's release record is appended.
    f.apply(rec(Kind::Bind, 2, 10, LeaseState::Bound));
    f.apply(rec(Kind::Release, 1, 10, LeaseState::Released));
    assert_eq!(
        f.owner.get(&Ipv4Addr::new(198, 18, 1, 10)).map(|k| k[6]),
        Some(2)
    );
    let two = rec(Kind::Bind, 2, 0, LeaseState::Bound).key;
    assert_eq!(f.clients[&two].state, LeaseState::Bound);
}

#[test]
fn a_bind_displaces_an_older_holder_of_the_address() {
    let mut f = Fold::default();
    f.apply(rec(Kind::Bind, 1, 10, LeaseState::Bound));
    f.apply(rec(Kind::Bind, 2, 10, LeaseState::Bound));
    let one = rec(Kind::Bind, 1, 0, LeaseState::Bound).key;
    assert_eq!(f.clients[&one].state, LeaseState::Expired);
    assert_eq!(f.owner.len(), 1);
    // A client moving to another address gives up the first.
    f.apply(rec(Kind::Bind, 2, 11, LeaseState::Bound));
    assert_eq!(f.owner.len(), 1);
    assert!(f.owner.contains_key(&Ipv4Addr::new(198, 18, 1, 11)));
}

#[test]
fn torn_tails_at_every_offset_lose_at_most_the_torn_record() {
    let dir = tmp("torn");
    let j = start(&dir, 1, &[], 1 << 20);
    let mut last = 0;
    for n in 0..6 {
        last = j.append(&rec(Kind::Bind, n, 10 + n, LeaseState::Bound));
    }
    j.wait(last).unwrap();
    drop(j);
    let seg = dir.join(segment_name(1));
    let whole = std::fs::read(&seg).unwrap();
    let (all, _) = frames(&whole[FILE_HEADER_LEN..]);
    let last_two = all[all.len() - 2].0 + FILE_HEADER_LEN;
    for cut in last_two..=whole.len() {
        std::fs::write(&seg, &whole[..cut]).unwrap();
        // A read-only replay (an export) sees the same records and leaves the file alone.
        let ro = read_only(&dir).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), cut as u64);
        let r = replay(&dir, false).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let (complete, tail) = frames(&whole[FILE_HEADER_LEN..cut]);
        assert!(complete.len() >= 4, "cut {cut}");
        assert_eq!(r.records.len(), complete.len(), "cut {cut}");
        assert_eq!(ro.records.len(), complete.len(), "cut {cut}");
        assert_eq!(r.torn.is_some(), tail != Tail::Clean, "cut {cut}");
        // The torn part was cut off: the file ends at a record boundary now.
        let now = std::fs::read(&seg).unwrap();
        assert_eq!(frames(&now[FILE_HEADER_LEN..]).1, Tail::Clean, "cut {cut}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damage_in_the_middle_stops_startup_with_file_and_offset_unless_repaired() {
    let dir = tmp("damage");
    let j = start(&dir, 1, &[], 1 << 20);
    let mut last = 0;
    for n in 0..10 {
        last = j.append(&rec(Kind::Bind, n, 10 + n, LeaseState::Bound));
    }
    j.wait(last).unwrap();
    drop(j);
    let seg = dir.join(segment_name(1));
    let mut bytes = std::fs::read(&seg).unwrap();
    let (fr, _) = frames(&bytes[FILE_HEADER_LEN..]);
    let at = fr[4].0 + FILE_HEADER_LEN;
    bytes[at + 20] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let e = replay(&dir, false).unwrap_err().to_string();
    assert!(
        e.contains(&seg.display().to_string()) && e.contains(&format!("offset {at}")),
        "{e}"
    );
    assert!(e.contains("--repair-journal"), "{e}");
    // Nothing was changed by the failed start.
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
    let r = replay(&dir, true).unwrap();
    let rep = r.repaired.clone().unwrap();
    assert_eq!(rep.offset, at as u64);
    assert_eq!(
        rep.records_lost, 5,
        "the five records after the damaged one"
    );
    assert_eq!(r.records.len(), 4);
    assert!(dir.join(format!("{}.damaged", segment_name(1))).exists());
    // And now it starts cleanly.
    let again = replay(&dir, false).unwrap();
    assert_eq!(again.records.len(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compaction_keeps_the_journal_bounded_and_loses_nothing() {
    let dir = tmp("compact");
    // The snapshot source is the state this test keeps itself, as the lease table would.
    let state: std::sync::Arc<std::sync::Mutex<HashMap<u8, Record>>> = Default::default();
    let st = state.clone();
    let clock = WallClock::anchored(Clock::new(), bootstorm_time::Instant::ZERO, 0);
    let j = Journal::start(
        &Settings {
            dir: dir.clone(),
            durability: Durability::Fsync,
            segment_max: 8192,
            commit_delay: std::time::Duration::from_millis(1),
        },
        clock,
        1,
        &[],
        Box::new(move || {
            st.lock()
                .unwrap()
                .values()
                .map(|r| bootstorm_lease::Lease {
                    key: r.key.clone(),
                    hwaddr: r.hwaddr.clone(),
                    addr: r.addr,
                    state: r.state,
                    expires: bootstorm_time::Instant::from_millis(r.expires_ms),
                    hostname: None,
                    subnet: 0,
                    reserved: false,
                })
                .collect()
        }),
    )
    .unwrap();
    // A declined address: its quarantine end must outlive the compaction of its record (the
    // table keeps a declined record's quarantine end in `expires`).
    let mut d = rec(Kind::Decline, 200, 200, LeaseState::Declined);
    (d.expires_ms, d.until_ms) = (5_000_000, 5_000_000);
    state.lock().unwrap().insert(200, d.clone());
    let s = j.append(&d);
    j.wait(s).unwrap();
    for round in 0..40u32 {
        for n in 0..50u8 {
            let mut r = rec(Kind::Bind, n, n, LeaseState::Bound);
            r.expires_ms = 1_000_000 + u64::from(round);
            state.lock().unwrap().insert(n, r.clone());
            let s = j.append(&r);
            j.wait(s).unwrap();
        }
    }
    assert!(j.stats().snapshots.load(Ordering::Relaxed) > 2);
    drop(j);
    let total: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    // 2000 records of ~60 bytes were written; what is left is bounded by the segment limit
    // plus a snapshot of 50 records.
    assert!(total < 3 * 8192 + 50 * 80, "{total} bytes left");
    let r = replay(&dir, false).unwrap();
    assert_eq!(r.records.len(), 51);
    for x in &r.records {
        if x.key[6] == 200 {
            assert_eq!((x.state, x.until_ms), (LeaseState::Declined, 5_000_000));
        } else {
            assert_eq!(x.expires_ms, 1_000_039, "latest renewal of every client");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_lease_directory_has_one_owner_at_a_time() {
    let dir = tmp("lock");
    let held = lock_dir(&dir).unwrap();
    let e = lock_dir(&dir).unwrap_err();
    assert!(matches!(e, LockError::Busy(_)), "{e}");
    assert!(e.to_string().contains("in use"), "{e}");
    drop(held);
    lock_dir(&dir).expect("free again once dropped");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn listeners_hear_each_durable_sequence_once_it_is_on_disk_and_in_order() {
    let dir = tmp("listen");
    let j = std::sync::Arc::new(start(&dir, 1, &[], 1 << 20));
    let (tx, rx) = std::sync::mpsc::channel::<(u64, usize)>();
    let tx = std::sync::Mutex::new(tx);
    let listen_dir = dir.clone();
    j.on_durable(Box::new(move |d| {
        // The records up to `d` are in the file by now: count what is readable.
        let on_disk = if d == u64::MAX {
            0
        } else {
            let b = std::fs::read(listen_dir.join(segment_name(1))).unwrap();
            frames(&b[FILE_HEADER_LEN..]).0.len()
        };
        let _ = tx.lock().unwrap().send((d, on_disk));
    }));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let j = j.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                for n in 0..50u8 {
                    let seq = j.append(&rec(Kind::Bind, n, n, LeaseState::Bound));
                    assert!(seq > last, "sequence numbers increase per thread");
                    last = seq;
                }
                last
            })
        })
        .collect();
    let lasts: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let want = lasts.into_iter().max().unwrap();
    assert_eq!(want, 100);
    let mut prev = 0;
    loop {
        let (d, on_disk) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the journal reports progress");
        assert!(d > prev, "durable went from {prev} to {d}");
        assert!(
            on_disk as u64 >= d,
            "reported {d} durable with {on_disk} on disk"
        );
        assert!(j.durable().unwrap() >= d);
        prev = d;
        if d == want {
            break;
        }
    }
    j.shutdown();
    // Stopped: the listener hears that nothing more will come, and a record appended now is
    // never reported durable (waiting for it is refused, not a hang).
    assert_eq!(
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .map(|x| x.0),
        Ok(u64::MAX)
    );
    let seq = j.append(&rec(Kind::Bind, 99, 99, LeaseState::Bound));
    assert!(j.durable().is_err());
    assert!(j.wait(seq).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

fn start_lingering(dir: &Path, commit_delay: std::time::Duration) -> Journal {
    Journal::start(
        &Settings {
            dir: dir.to_path_buf(),
            durability: Durability::Fsync,
            segment_max: 1 << 20,
            commit_delay,
        },
        WallClock::new(Clock::new()),
        1,
        &[],
        Box::new(Vec::new),
    )
    .unwrap()
}

#[test]
fn a_commit_delay_groups_records_and_a_big_batch_does_not_wait_for_it() {
    use std::time::{Duration, Instant};
    let dir = tmp("linger");
    // Two records 100 ms apart share one sync, which comes the delay after the first.
    let j = start_lingering(&dir, Duration::from_millis(300));
    let t0 = Instant::now();
    j.append(&rec(Kind::Bind, 1, 1, LeaseState::Bound));
    std::thread::sleep(Duration::from_millis(100));
    let second = j.append(&rec(Kind::Bind, 2, 2, LeaseState::Bound));
    j.wait(second).unwrap();
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "synced after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "synced after {waited:?}");
    assert_eq!(j.stats().syncs.load(Ordering::Relaxed), 1);
    j.shutdown();
    let _ = std::fs::remove_dir_all(&dir);

    // A batch past the linger size is synced at once, long before a (huge) delay ends: the
    // append that makes it big wakes the lingering writer.
    let dir = tmp("linger-big");
    let j = start_lingering(&dir, Duration::from_secs(30));
    // One record first, so the writer is lingering when the rest come.
    j.append(&rec(Kind::Bind, 0, 0, LeaseState::Bound));
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    while j.stats().bytes.load(Ordering::Relaxed) == 0 && t0.elapsed() < Duration::from_secs(10) {
        for n in 0..=255u8 {
            j.append(&rec(Kind::Bind, n, n, LeaseState::Bound));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        j.stats().syncs.load(Ordering::Relaxed) >= 1,
        "nothing synced in {:?}",
        t0.elapsed()
    );
    j.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_atomic_write_replaces_the_file_whole_and_leaves_no_temporary() {
    let d = tmp("atomic");
    let f = d.join("reservations.json");
    crate::write_file_atomically(&f, b"old\n").unwrap();
    crate::write_file_atomically(&f, b"new\n").unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), b"new\n");
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["reservations.json"]);
    // A file in a directory that does not exist: the error, nothing written.
    let err = crate::write_file_atomically(&d.join("missing").join("x"), b"y").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let _ = std::fs::remove_dir_all(&d);
}
