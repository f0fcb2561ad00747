//! Both engines against a file: reads of several segments and of more than all the buffers
//! hold at once, writes read back, syncs, a read past the end, many requests in flight.

use super::*;
use std::time::Duration;

fn file(name: &str, bytes: &[u8]) -> (std::path::PathBuf, Arc<Source>) {
    let p = std::env::temp_dir().join(format!("bootstorm-blockio-{name}-{}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    (p, Arc::new(Source::buffered(f)))
}

/// Waits (bounded) for `n` completions in `mb`.
fn wait(poll: &mut mio::Poll, mb: &Mailbox, n: usize) -> Vec<Completion> {
    let mut got = Vec::new();
    let mut events = mio::Events::with_capacity(8);
    for _ in 0..500 {
        got.extend(mb.take());
        if got.len() >= n {
            return got;
        }
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
    }
    panic!("{} of {n} completions", got.len());
}

fn exercise(force_pread: bool) {
    let engine = Engine::start(Settings {
        threads: 2,
        buffers: 4,
        buffer_size: 4096,
        force_pread,
    })
    .unwrap();
    if !force_pread {
        assert_eq!(engine.kind(), "io_uring", "{:?}", engine.why_pread());
    }
    let bytes: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 249) as u8).collect();
    let (a_path, a) = file(&format!("a{force_pread}"), &bytes);
    let (b_path, b) = file(&format!("b{force_pread}"), &vec![7u8; 64 * 1024]);
    let mut poll = mio::Poll::new().unwrap();
    let mb = Mailbox::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
    let mut s = engine.submitter(1, mb.clone());
    // Two segments of two files into one buffer, 100 KiB across 4 buffers of 4 KiB.
    s.submit(
        1,
        Op::Read(vec![
            Segment {
                src: a.clone(),
                offset: 1000 * 4,
                len: 100 * 1024,
            },
            Segment {
                src: b.clone(),
                offset: 512,
                len: 1536,
            },
        ]),
    );
    // A write, then (after it completes) a read of it.
    s.submit(
        2,
        Op::Write {
            src: b.clone(),
            offset: 4096,
            data: vec![9u8; 20_000],
        },
    );
    s.submit(
        3,
        Op::Read(vec![Segment {
            src: a.clone(),
            offset: bytes.len() as u64 - 10,
            len: 20,
        }]),
    );
    s.flush();
    let mut got = wait(&mut poll, &mb, 3);
    got.sort_by_key(|c| c.tag);
    let d = got[0].result.as_ref().unwrap();
    assert_eq!(&d[..100 * 1024], &bytes[4000..4000 + 100 * 1024]);
    assert!(d[100 * 1024..].iter().all(|&x| x == 7));
    assert!(got[1].result.as_ref().unwrap().is_empty());
    assert!(got[2].result.is_err(), "a read past the end fails");
    s.submit(
        4,
        Op::Read(vec![Segment {
            src: b.clone(),
            offset: 4096,
            len: 20_000,
        }]),
    );
    s.submit(5, Op::Sync(b.clone()));
    s.flush();
    let mut got = wait(&mut poll, &mb, 2);
    got.sort_by_key(|c| c.tag);
    assert!(got[0].result.as_ref().unwrap().iter().all(|&x| x == 9));
    assert!(got[1].result.is_ok());
    // 300 reads in flight at once, more than the buffers: all complete, each its own bytes.
    for i in 0..300u64 {
        s.submit(
            100 + i,
            Op::Read(vec![Segment {
                src: a.clone(),
                offset: i * 512,
                len: 512,
            }]),
        );
    }
    s.flush();
    let got = wait(&mut poll, &mb, 300);
    for c in got {
        let i = (c.tag - 100) as usize;
        assert_eq!(c.result.unwrap(), &bytes[i * 512..i * 512 + 512]);
    }
    drop(engine);
    let _ = std::fs::remove_file(a_path);
    let _ = std::fs::remove_file(b_path);
}

#[test]
fn io_uring_engine_reads_writes_and_syncs() {
    exercise(false);
}

#[test]
fn pread_fallback_does_the_same() {
    exercise(true);
}

#[test]
fn o_direct_where_the_file_system_allows_it() {
    // /var/tmp is usually a disk file system (tmpfs refuses O_DIRECT: the open says why).
    let p =
        std::path::Path::new("/var/tmp").join(format!("bootstorm-direct-{}", std::process::id()));
    std::fs::write(&p, vec![3u8; 64 * 1024]).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    let (src, why) = Source::open(f, &p, true, true);
    let src = Arc::new(src);
    eprintln!("O_DIRECT: {}", why.as_deref().unwrap_or("on"));
    let engine = Engine::start(Settings {
        threads: 1,
        buffers: 2,
        buffer_size: 8192,
        force_pread: false,
    })
    .unwrap();
    let mut poll = mio::Poll::new().unwrap();
    let mb = Mailbox::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
    let mut s = engine.submitter(0, mb.clone());
    // Aligned (direct if allowed) and unaligned (buffered) pieces alike.
    s.submit(
        1,
        Op::Write {
            src: src.clone(),
            offset: 8192,
            data: vec![5u8; 8192],
        },
    );
    s.submit(
        2,
        Op::Read(vec![Segment {
            src: src.clone(),
            offset: 512,
            len: 1024,
        }]),
    );
    s.flush();
    let got = wait(&mut poll, &mb, 2);
    assert!(got.iter().all(|c| c.result.is_ok()), "{got:?}");
    s.submit(
        3,
        Op::Read(vec![Segment {
            src: src.clone(),
            offset: 8192,
            len: 8192,
        }]),
    );
    s.flush();
    let got = wait(&mut poll, &mb, 1);
    assert!(got[0].result.as_ref().unwrap().iter().all(|&x| x == 5));
    let _ = std::fs::remove_file(&p);
}

#[test]
fn page_cache_reads_and_writes_go_inline() {
    let bytes: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 241) as u8).collect();
    let (p, src) = file("nowait", &bytes);
    // Just written: in the page cache.
    let mut buf = vec![0u8; 8192];
    match src.read_nowait(&mut buf, 4096) {
        Nowait::Done => assert_eq!(buf, &bytes[4096..4096 + 8192]),
        other => panic!("{other:?}"),
    }
    // Past the end: not all of it, so not done here.
    let mut tail = vec![0u8; 8192];
    assert!(matches!(
        src.read_nowait(&mut tail, 60 * 1024),
        Nowait::WouldBlock
    ));
    // Done with RWF_NOWAIT, or (ext4: no RWF_NOWAIT for buffered writes) a plain pwrite.
    for round in 0..2 {
        match src.write_nowait(&[round + 1; 4096], 0) {
            Nowait::Done => {
                let mut b = vec![0u8; 4096];
                src.file().read_exact_at(&mut b, 0).unwrap();
                assert!(b.iter().all(|&x| x == round + 1));
            }
            other => panic!("{other:?}"),
        }
    }
    let _ = std::fs::remove_file(p);
}

#[test]
fn holes_and_data_are_told_apart() {
    let p =
        std::path::Path::new("/var/tmp").join(format!("bootstorm-holes-{}", std::process::id()));
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(1 << 20).unwrap();
    f.write_all_at(&[1u8; 65536], 256 * 1024).unwrap();
    drop(f);
    let src = Source::buffered(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap(),
    );
    assert_eq!(src.extent(0).unwrap(), (256 * 1024, false));
    assert_eq!(src.extent(256 * 1024).unwrap(), (65536, true));
    src.punch_hole(256 * 1024, 65536).unwrap();
    assert_eq!(src.extent(0).unwrap(), (1 << 20, false));
    let _ = std::fs::remove_file(&p);
}
