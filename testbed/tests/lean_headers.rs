//! A configuration whose first rule takes every request to JWT filters fetches
//! only `Authorization` from Envoy (`Config::lean_headers`); a request that is
//! not a cached, valid token is run again with every header. What a client and
//! the upstream see must be the same as with the whole request: these tests
//! check the answers, the headers that reach the upstream, error templates that
//! read request headers, and that each request is counted once.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use portcullis_testbed::client;
use portcullis_testbed::servers::EchoUpstream;
use portcullis_testbed::tokens;
use portcullis_testbed::{Envoy, EnvoyConfig};
use serde_json::{json, Value};

struct Fixture {
    envoy: Envoy,
    _echo: EchoUpstream,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let echo = EchoUpstream::start();
        let plugin = json!({
            "filters": [
                { "name": "jwt", "JWT": {
                    "jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE,
                    "errorResponse": { "headers": [
                        { "name": "X-Error-UA", "value": "{{ .httpRequestHeader.Get \"User-Agent\" }}" }
                    ] }
                } }
            ],
            "rules": [ { "host": "*", "path": "*", "filters": [ { "name": "jwt" } ] } ]
        });
        // The configuration is a lean one.
        let parsed = portcullis_core::config::Config::from_json(plugin.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            parsed.lean_headers,
            Some(vec!["authorization".to_string()])
        );
        let cfg = EnvoyConfig::new(echo.port()).plugin(plugin).build();
        Fixture {
            envoy: Envoy::start(&cfg),
            _echo: echo,
        }
    })
}

fn port() -> u16 {
    fx().envoy.port("main")
}

#[test]
fn a_cached_token_passes_with_every_header_and_the_path_untouched() {
    let f = fx();
    let t = token("RS256", json!({ "sub": "lean-user" }));
    for i in 0..3 {
        let r = get_with_token(
            port(),
            "/any/where?q=1",
            &t,
            &[("X-Custom", "kept"), ("User-Agent", "lean-test")],
        );
        let seen = passed(&f.envoy, &r, &format!("request {i}"));
        assert_eq!(seen.path, "/any/where?q=1");
        assert_eq!(seen.header("x-custom"), Some("kept"));
        assert_eq!(seen.header("user-agent"), Some("lean-test"));
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {t}").as_str())
        );
    }
}

#[test]
fn denials_are_answered_from_the_whole_request() {
    let t = token("RS256", Value::Null);
    // Cached first, then variants that must not pass.
    assert_eq!(get_with_token(port(), "/x", &t, &[]).status, 200);
    let ua = [("User-Agent", "lean-denied")];
    let r = get_with_token(port(), "/x", &tokens::tamper_signature(&t), &ua);
    assert_invalid_token(&r, "jwt", "signature is invalid", "tampered");
    assert_eq!(r.header("x-error-ua"), Some("lean-denied"), "{}", show(&r));
    let r = client::get(port(), "/x", &ua);
    assert_no_token(&r, "jwt", "no token");
    assert_eq!(r.header("x-error-ua"), Some("lean-denied"), "{}", show(&r));
    let r = client::get(port(), "/x", &[("Authorization", &format!("Bearer {t} x"))]);
    assert_eq!(r.status, 400, "{}", show(&r));
    let expired = token("RS256", json!({ "exp": tokens::now() - 600 }));
    let r = get_with_token(port(), "/x", &expired, &ua);
    assert_eq!(r.status, 401, "{}", show(&r));
}

#[test]
fn each_request_is_counted_once() {
    // A separate Envoy: the counts of the shared one move with the other tests.
    let echo = EchoUpstream::start();
    let plugin = json!({
        "filters": [ { "name": "jwt", "JWT": { "jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE } } ],
        "rules": [ { "filters": [ { "name": "jwt" } ] } ]
    });
    let envoy = Envoy::start(&EnvoyConfig::new(echo.port()).plugin(plugin).build());
    let p = envoy.port("main");
    let t = token("ES256", Value::Null);
    for _ in 0..5 {
        assert_eq!(get_with_token(p, "/", &t, &[]).status, 200); // 1 verified, 4 cached
    }
    for _ in 0..3 {
        assert_eq!(client::get(p, "/", &[]).status, 401);
    }
    let stat = |name: &str| envoy.stat(&format!("wasmcustom.portcullis.{name}"));
    assert!(
        eventually(Duration::from_secs(5), || stat("filter.jwt.allowed")
            == Some(5)
            && stat("filter.jwt.denied.401") == Some(3)),
        "allowed {:?}, denied {:?}",
        stat("filter.jwt.allowed"),
        stat("filter.jwt.denied.401")
    );
}
