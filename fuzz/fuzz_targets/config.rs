//! Configuration parsing and validation with hostile documents: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::config::Config;

fuzz_target!(|data: &[u8]| {
    let _ = Config::from_json_with_env(data, &|_| Some("value".to_string()));
});
