//! JWK Set parsing with hostile documents: never panics, never fatal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::jwt::KeySet;

fuzz_target!(|data: &[u8]| {
    let _ = KeySet::from_json(data);
});
