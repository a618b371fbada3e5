//! Token parsing and verification with hostile tokens: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::jwt::keys::Algorithm;
use portcullis_core::jwt::verify::{decode_unverified, verify_token, ClaimPolicy};
use portcullis_core::jwt::KeySet;
use std::sync::OnceLock;

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let jwks = include_bytes!("../../testdata/jwks.json");
        KeySet::from_json(jwks).map(|(k, _)| k).unwrap_or_default()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let policy = ClaimPolicy {
        valid_algorithms: Algorithm::ALL.to_vec(),
        audience: Some("api".to_string()),
        issuer: Some("https://issuer".to_string()),
        require_expires_at: true,
        ..ClaimPolicy::default()
    };
    let _ = verify_token(token, keys(), &policy, 1_700_000_000.0);
    let _ = decode_unverified(token);
});
