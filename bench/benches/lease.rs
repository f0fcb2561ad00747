//! The lease table: offer + bind + release cycles from 1, 2 and 4 threads on one table, each
//! thread with its own clients (as workers are), so the figure shows how the table scales.

use bootstorm_lease::{Client, LeaseTable, PoolConfig};
use bootstorm_time::{Duration, Instant};
use criterion::{Criterion, Throughput};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant as StdInstant;

fn table() -> LeaseTable {
    LeaseTable::new(
        &[PoolConfig {
            subnet: 0,
            start: Ipv4Addr::new(198, 18, 0, 1),
            end: Ipv4Addr::new(198, 18, 255, 254),
        }],
        &[],
        64,
    )
    .unwrap()
}

const CLIENTS_PER_THREAD: u32 = 2048;

fn cycle(tb: &LeaseTable, thread: u32, i: u64) {
    let n = (i % u64::from(CLIENTS_PER_THREAD)) as u32;
    let key = [1, 0x52, 0x54, thread as u8, (n >> 8) as u8, n as u8, 0];
    let c = Client {
        key: &key,
        hwaddr: &key[1..],
        hostname: None,
    };
    let now = Instant::from_secs(1 + i / 1_000_000);
    let b = tb.offer(now, 0, &c, None, Duration::from_secs(30)).unwrap();
    tb.bind(now, &c, b.addr, Duration::from_secs(3600)).unwrap();
    tb.release(now, &key, b.addr).unwrap();
}

pub fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("lease_table");
    for threads in [1u32, 2, 4] {
        // One element = one offer+bind+release cycle; throughput is summed over threads.
        g.throughput(Throughput::Elements(u64::from(threads)));
        g.bench_function(format!("offer_bind_release/{threads}_threads"), |b| {
            let tb = Arc::new(table());
            b.iter_custom(|iters| {
                let start = StdInstant::now();
                let hs: Vec<_> = (0..threads)
                    .map(|t| {
                        let tb = tb.clone();
                        std::thread::spawn(move || {
                            for i in 0..iters {
                                cycle(&tb, t, i);
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}
