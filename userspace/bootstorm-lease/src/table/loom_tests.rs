//! Model-checked races (run with `RUSTFLAGS="--cfg loom" cargo test -p bootstorm-lease --release`).
use super::*;
use loom::sync::Arc;
use loom::thread;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, last)
}

const A: [u8; 3] = [1, 0, 1];
const B: [u8; 3] = [1, 0, 2];

fn c(k: &[u8; 3]) -> Client<'_> {
    Client {
        key: k,
        hwaddr: &k[1..],
        hostname: None,
    }
}

/// One address: A holds it and releases it while B asks for an address. B may get it or not, but
/// never while A still holds it, and afterwards exactly one of them (or nobody) holds it.
#[test]
fn allocate_vs_release() {
    loom::model(|| {
        let tb = Arc::new(
            LeaseTable::new(
                &[PoolConfig {
                    subnet: 0,
                    start: ip(1),
                    end: ip(1),
                }],
                &[],
                2,
            )
            .unwrap(),
        );
        let now = Instant::from_secs(1);
        tb.offer(now, 0, &c(&A), None, Duration::from_secs(30))
            .unwrap();
        tb.bind(now, &c(&A), ip(1), Duration::from_secs(100))
            .unwrap();
        let t1 = {
            let tb = tb.clone();
            thread::spawn(move || tb.release(now, &A, ip(1)).is_some())
        };
        let got_b = tb
            .offer(now, 0, &c(&B), None, Duration::from_secs(30))
            .is_ok();
        let released = t1.join().unwrap();
        assert!(released);
        let a = tb.holder(now, &A, ip(1));
        let b = tb.holder(now, &B, ip(1));
        assert!(!(a == Holder::Me && b == Holder::Me));
        if got_b {
            assert_eq!(b, Holder::Me);
        }
    });
}

/// A renews exactly as its lease expires while B tries to take the address: exactly one wins.
#[test]
fn renew_vs_expire() {
    loom::model(|| {
        let tb = Arc::new(
            LeaseTable::new(
                &[PoolConfig {
                    subnet: 0,
                    start: ip(1),
                    end: ip(1),
                }],
                &[],
                2,
            )
            .unwrap(),
        );
        let t0 = Instant::from_secs(1);
        tb.offer(t0, 0, &c(&A), None, Duration::from_secs(30))
            .unwrap();
        tb.bind(t0, &c(&A), ip(1), Duration::from_secs(10)).unwrap();
        let later = Instant::from_secs(11);
        let t1 = {
            let tb = tb.clone();
            thread::spawn(move || {
                tb.bind(later, &c(&A), ip(1), Duration::from_secs(10))
                    .is_ok()
            })
        };
        let b_got = tb
            .offer(later, 0, &c(&B), None, Duration::from_secs(30))
            .is_ok();
        let a_renewed = t1.join().unwrap();
        assert!(a_renewed != b_got, "renewed={a_renewed} b_got={b_got}");
    });
}
