//! Criterion benchmarks of the hot paths, one module per area. Run: `cargo bench -p bootstorm-bench`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Duration;

mod dhcp_core;
mod journal;
mod lease;
mod sessions;
mod tftp;
mod wire;

fn config() -> Criterion {
    // Short runs: the whole suite stays under a minute on the 2-core machine.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = wire::benches, dhcp_core::benches, lease::benches, sessions::benches, tftp::benches, journal::benches
}
criterion_main!(benches);
