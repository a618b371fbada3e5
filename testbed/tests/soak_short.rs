//! The soak (`scripts/soak`, one million requests) in short: at least fifty
//! thousand requests (at least 8 s of load after a 2 s warm-up) of mixed
//! valid, invalid, API-key and OAuth2-session traffic through one Envoy with
//! the plugin, driven by wrk. Every answer has the status its
//! kind expects, no socket error, memory flat after warm-up (within 10%), no
//! error in Envoy's log.

use std::time::Duration;

use portcullis_testbed::soak::{run, SoakOptions};

#[test]
fn fifty_thousand_mixed_requests_hold_steady() {
    let mut opts = SoakOptions::new(50_000);
    opts.warmup = Duration::from_secs(2);
    opts.min_load = Duration::from_secs(8);
    opts.max_load = Duration::from_secs(40);
    opts.sample_every = Duration::from_secs(1);
    let report = run(&opts).unwrap_or_else(|e| panic!("the soak could not run: {e}"));
    eprintln!("{}", report.summary());
    assert!(report.problems.is_empty(), "{}", report.summary());
}
