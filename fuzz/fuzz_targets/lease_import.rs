//! Any text as a lease file of any format (`bootstorm leases import`): the parsers never panic,
//! a refusal names a line that exists, and every lease they accept has a client key and comes
//! from a line of the file, with one lease per address.
#![no_main]

use bootstorm_leasefile::{Format, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let format = [Format::Json, Format::Csv, Format::Kea, Format::Dnsmasq][usize::from(pick % 4)];
    let text = String::from_utf8_lossy(rest);
    let lines = text.lines().count().max(1);
    match parse(format, &text) {
        Ok(p) => {
            let mut seen = std::collections::HashSet::new();
            for l in &p.leases {
                assert!(!l.key.is_empty());
                assert!(l.line >= 1 && (format == Format::Json || l.line <= lines));
                assert!(seen.insert(l.ip), "one lease per address");
            }
        }
        Err(e) => assert!(e.line <= lines + 1, "{e}"),
    }
});
