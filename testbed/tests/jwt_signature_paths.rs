//! The two signature paths on the same corpus: Envoy's `verify_signature`
//! (BoringSSL in the host) for RS*/ES*, and the pure-Rust path in Wasm
//! (`PORTCULLIS_HOST_CRYPTO=off` in the VM's environment, and always for PS*,
//! EdDSA and HS*). Both must accept every good token and refuse every forgery.
//! The shipped module has no pure-Rust ES384/ES512 check (the filter crate's
//! `ec-fallback` feature): on the Wasm path it refuses those tokens, and a
//! filter listing them in `validAlgorithms` is refused at configure; the test
//! module, built with the feature, checks them in Wasm.

mod common;

use common::*;
use portcullis_testbed::crash::crash_wasm_path;
use portcullis_testbed::servers::EchoUpstream;
use portcullis_testbed::tokens::{self, ALL_ALGS};
use portcullis_testbed::{Envoy, EnvoyConfig};
use serde_json::{json, Value};
use std::time::Duration;

/// The algorithms the shipped module checks only through the host.
const HOST_ONLY: &[&str] = &["ES384", "ES512"];

fn config(host_crypto: bool, jwt: Value, echo: &EchoUpstream) -> String {
    let plugin = json!({
        "filters": [ { "name": "jwt", "JWT": jwt } ],
        "rules": [ { "host": "*", "path": "*", "filters": [ { "name": "jwt" } ] } ]
    });
    let mut cfg = EnvoyConfig::new(echo.port()).plugin(plugin);
    if !host_crypto {
        cfg = cfg.vm_env("PORTCULLIS_HOST_CRYPTO", "off");
    }
    cfg.build()
}

fn default_jwt() -> Value {
    json!({ "jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE })
}

fn start(host_crypto: bool) -> (Envoy, EchoUpstream) {
    let echo = EchoUpstream::start();
    let envoy = Envoy::start(&config(host_crypto, default_jwt(), &echo));
    (envoy, echo)
}

fn corpus_holds(envoy: &Envoy, path_name: &str, algs: &[&str]) {
    let port = envoy.port("main");
    for alg in algs {
        let good = token(alg, Value::Null);
        assert_eq!(
            get_with_token(port, "/x", &good, &[]).status,
            200,
            "{path_name}: a good {alg} token"
        );
        let forged = tokens::tamper_signature(&good);
        let r = get_with_token(port, "/x", &forged, &[]);
        assert_eq!(r.status, 401, "{path_name}: a forged {alg} signature");
        let tampered = tokens::tamper_payload(&good, json!({"sub": "mallory"}));
        assert_eq!(
            get_with_token(port, "/x", &tampered, &[]).status,
            401,
            "{path_name}: a tampered {alg} payload"
        );
    }
    // A different RSA key under the same kid.
    let other = tokens::mint_with_key(
        "rsa2",
        "RS256",
        Some("rsa1"),
        Value::Null,
        tokens::merge(good_claims(), Value::Null),
    );
    assert_eq!(
        get_with_token(port, "/x", &other, &[]).status,
        401,
        "{path_name}: rsa2 as rsa1"
    );
}

#[test]
fn host_verify_signature_path_accepts_good_tokens_and_refuses_forgeries() {
    let (envoy, _echo) = start(true);
    // The probe runs at configure time, before Envoy is ready.
    assert!(
        envoy.wait_for_log(
            "signatures (RS*, ES*) are checked by Envoy's verify_signature",
            Duration::from_secs(5)
        ),
        "{}",
        envoy.log_tail(30)
    );
    corpus_holds(&envoy, "host path", ALL_ALGS);
}

#[test]
fn wasm_signature_path_accepts_good_tokens_and_refuses_forgeries() {
    let (envoy, _echo) = start(false);
    assert!(
        envoy.wait_for_log("signatures are checked in Wasm", Duration::from_secs(5)),
        "{}",
        envoy.log_tail(30)
    );
    assert!(
        envoy.wait_for_log(
            "filters[0].JWT: ES384 and ES512 tokens are refused",
            Duration::from_secs(5)
        ),
        "{}",
        envoy.log_tail(30)
    );
    let others: Vec<&str> = ALL_ALGS
        .iter()
        .copied()
        .filter(|a| !HOST_ONLY.contains(a))
        .collect();
    corpus_holds(&envoy, "Wasm path", &others);
    // Without the host nothing in this module checks ES384/ES512: good tokens
    // are refused like forgeries.
    for alg in HOST_ONLY {
        let r = get_with_token(envoy.port("main"), "/x", &token(alg, Value::Null), &[]);
        assert_eq!(r.status, 401, "Wasm path: a good {alg} token");
    }
}

#[test]
fn listing_es384_without_host_signatures_refuses_the_configuration() {
    let echo = EchoUpstream::start();
    let mut jwt = default_jwt();
    jwt["validAlgorithms"] = json!(["RS256", "ES384"]);
    let log = match Envoy::try_start(&config(false, jwt, &echo)) {
        Ok(envoy) => panic!(
            "Envoy started with ES384 listed and no host signature checks; log:\n{}",
            envoy.log_tail(40)
        ),
        Err(log) => log,
    };
    assert!(
        log.contains("configuration refused: filters[0].JWT.validAlgorithms: ES384 and ES512 are checked only by Envoy's verify_signature"),
        "{log}"
    );
}

#[test]
fn ec_fallback_module_checks_every_algorithm_in_wasm() {
    let echo = EchoUpstream::start();
    let wasm = crash_wasm_path();
    let envoy = Envoy::start_with(
        &config(false, default_jwt(), &echo),
        &[("WASM", &wasm.to_string_lossy())],
    );
    assert!(
        envoy.wait_for_log("signatures are checked in Wasm", Duration::from_secs(5)),
        "{}",
        envoy.log_tail(30)
    );
    corpus_holds(&envoy, "Wasm path with ec-fallback", ALL_ALGS);
}
