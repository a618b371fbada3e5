//! `failure_policy: FAIL_RELOAD`: after the Wasm VM crashes, Envoy replaces it
//! and authentication comes back, correctly enforced; with `FAIL_CLOSED` every
//! later request is refused instead.
//!
//! Production code cannot be made to panic by a request (clippy denies unwrap,
//! expect, panic and indexing; `fuzz/` hunts for the rest), so the crash is
//! triggered with the test-crash module (filter feature `test-crash`, built
//! apart into `target/test-crash`): `x-portcullis-test-crash: now` aborts the VM.

mod common;

use std::time::Duration;

use common::*;
use portcullis_testbed::crash::{crash_wasm_path, CRASH_HEADER};
use portcullis_testbed::servers::{EchoUpstream, Reply, ScriptedServer};
use portcullis_testbed::{client, Envoy, EnvoyConfig};
use serde_json::{json, Value};

struct Setup {
    envoy: Envoy,
    jwks: ScriptedServer,
    _echo: EchoUpstream,
}

fn start(policy: &str) -> Setup {
    let echo = EchoUpstream::start();
    let jwks_server = ScriptedServer::start();
    jwks_server.set("/jwks.json", Reply::json(200, &jwks()));
    let plugin = json!({
        "clusters": { "jwks.test": "jwks" },
        "filters": [ { "name": "jwt", "JWT": {
            "jwksURI": "http://jwks.test/jwks.json", "issuer": ISSUER, "audience": AUDIENCE,
            "injectRequestHeaders": [ { "name": "X-Sub", "value": "{{ .token.Claims.sub }}" } ]
        } } ],
        "rules": [ { "host": "*", "path": "/api/*", "filters": [ { "name": "jwt" } ] } ]
    });
    let cfg = EnvoyConfig::new(echo.port())
        .plugin(plugin)
        .cluster("jwks", jwks_server.port())
        .failure_policy(policy)
        .build();
    let wasm = crash_wasm_path();
    let envoy = Envoy::start_with(&cfg, &[("WASM", &wasm.to_string_lossy())]);
    Setup {
        envoy,
        jwks: jwks_server,
        _echo: echo,
    }
}

/// A valid token passes with its identity injected (and a client copy of the
/// injected header removed); a forged one and none are refused.
fn assert_enforced(s: &Setup, ctx: &str) {
    let good = token("RS256", json!({ "sub": "alice" }));
    let r = get_with_token(
        s.envoy.port("main"),
        "/api/x",
        &good,
        &[("X-Sub", "mallory")],
    );
    let seen = passed(&s.envoy, &r, ctx);
    assert_eq!(seen.headers_all("x-sub"), vec!["alice"], "{ctx}");
    let forged = portcullis_testbed::tokens::tamper_payload(&good, json!({ "sub": "mallory" }));
    let r = get_with_token(s.envoy.port("main"), "/api/x", &forged, &[]);
    assert_eq!(r.status, 401, "{ctx}: forged token: {}", show(&r));
    let r = client::get(s.envoy.port("main"), "/api/x", &[]);
    assert_no_token(&r, "jwt", &format!("{ctx}: no token"));
}

fn crash(s: &Setup) -> client::Response {
    let good = token("RS256", Value::Null);
    get_with_token(s.envoy.port("main"), "/api/x", &good, &[CRASH_HEADER])
}

#[test]
fn fail_reload_recovers_after_a_vm_crash() {
    let s = start("FAIL_RELOAD");
    assert_enforced(&s, "before any crash");
    let fetches_before = s.jwks.count("/jwks.json");
    for round in 1..=3 {
        let r = crash(&s);
        assert_eq!(
            r.status,
            503,
            "round {round}: the crashing request gets Envoy's 503: {}",
            show(&r)
        );
        // Envoy reloads the VM on a later request (after a backoff of about a
        // second, during which requests get 503); from then on requests are
        // served by a fresh VM, enforcing as before.
        assert!(
            eventually(Duration::from_secs(15), || {
                let good = token("RS256", Value::Null);
                get_with_token(s.envoy.port("main"), "/api/x", &good, &[]).status == 200
            }),
            "round {round}: no recovery after the crash; log:\n{}",
            s.envoy.log_tail(40)
        );
        assert_enforced(&s, &format!("after crash {round}"));
    }
    // Each reloaded VM fetched the JWK Set again (it starts empty).
    assert!(
        s.jwks.count("/jwks.json") > fetches_before,
        "the reloaded VM fetched the JWK Set"
    );
    let log = s.envoy.log();
    assert!(
        log.contains(
            "Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable"
        ),
        "the crash is logged by Envoy; log:\n{}",
        s.envoy.log_tail(40)
    );
}

#[test]
fn fail_closed_refuses_every_request_after_a_vm_crash() {
    let s = start("FAIL_CLOSED");
    assert_enforced(&s, "before the crash");
    let r = crash(&s);
    assert!((500..600).contains(&r.status), "{}", show(&r));
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        let r = get_with_token(
            s.envoy.port("main"),
            "/api/x",
            &token("RS256", Value::Null),
            &[],
        );
        assert_eq!(
            r.status,
            503,
            "FAIL_CLOSED: no VM, no service: {}",
            show(&r)
        );
    }
}

#[test]
fn the_shipped_module_ignores_the_crash_header() {
    let echo = EchoUpstream::start();
    let plugin = json!({
        "filters": [ { "name": "jwt", "JWT": { "jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE } } ],
        "rules": [ { "host": "*", "path": "/api/*", "filters": [ { "name": "jwt" } ] } ]
    });
    let cfg = EnvoyConfig::new(echo.port())
        .plugin(plugin)
        .failure_policy("FAIL_CLOSED")
        .build();
    let envoy = Envoy::start(&cfg);
    for _ in 0..3 {
        let r = get_with_token(
            envoy.port("main"),
            "/api/x",
            &token("RS256", Value::Null),
            &[CRASH_HEADER],
        );
        passed(&envoy, &r, "dist/portcullis.wasm has no crash path");
    }
}
