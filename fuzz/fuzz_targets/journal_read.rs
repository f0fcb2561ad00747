//! Any bytes as a journal segment or snapshot body: the frame reader never panics, never reports
//! an offset past the end, and every record it accepts encodes back to a frame that reads the same.
#![no_main]

use bootstorm_journal::record::{Entry, Tail, frames};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (entries, tail) = frames(data);
    let mut end = 0;
    for (offset, e) in &entries {
        assert!(*offset >= end && *offset < data.len());
        end = *offset;
        if let Entry::Lease(r) = e {
            let mut b = Vec::new();
            r.encode(&mut b);
            let (again, t) = frames(&b);
            assert_eq!(t, Tail::Clean);
            assert_eq!(&again[0].1, e);
        }
    }
    match tail {
        Tail::Clean => {}
        Tail::Torn { offset } | Tail::Corrupt { offset, .. } => assert!(offset <= data.len()),
    }
});
