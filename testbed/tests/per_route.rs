//! Per-route control (CONFIG.md "Per-route control"): Envoy's
//! `typed_per_filter_config` `FilterConfig {disabled: true}`, route metadata
//! `filter_metadata.portcullis.bypass_auth`, and two Portcullis instances in one
//! chain (gateway level and route level), which must both pass.
//!
//! One Envoy: chain `portcullis-gw` (JWT `gw` on every path) then
//! `portcullis-route` (JWT `route` requiring scope `admin` on `*/two/*`), each in
//! its own VM with its own root_id.

mod common;

use std::sync::OnceLock;

use common::*;
use portcullis_testbed::client;
use portcullis_testbed::servers::EchoUpstream;
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
        let gw = json!({
            "filters": [ { "name": "gw", "JWT": {
                "jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE,
                "injectRequestHeaders": [ { "name": "X-Gw-Sub", "value": "{{ .token.Claims.sub }}" } ]
            } } ],
            "rules": [ { "host": "*", "path": "*", "filters": [ { "name": "gw" } ] } ]
        });
        let route = json!({
            "filters": [ { "name": "route", "JWT": {
                "jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE,
                "injectRequestHeaders": [ { "name": "X-Route-Scope", "value": "{{ .token.Claims.scope }}" } ]
            } } ],
            "rules": [
                { "host": "*", "path": "*/two/*",
                  "filters": [ { "name": "route", "arguments": { "scope": ["admin"] } } ] },
                { "host": "*", "path": "*", "filters": [] }
            ]
        });
        let cfg = EnvoyConfig::new(echo.port())
            .plugin_instance("portcullis-gw", "vm-gw", Some("gw"), gw)
            .plugin_instance("portcullis-route", "vm-route", Some("route"), route)
            .bypass_route("/bypass/")
            .disabled_route("/disabled/", &["portcullis-gw", "portcullis-route"])
            .disabled_route("/gw-off/", &["portcullis-gw"])
            .build();
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
fn normal_route_needs_a_token() {
    let f = fx();
    assert_no_token(&client::get(port(), "/api/x", &[]), "gw", "no token");
    let seen = passed(
        &f.envoy,
        &get_with_token(port(), "/api/x", &token("ES256", Value::Null), &[]),
        "valid token",
    );
    assert_eq!(seen.headers_all("x-gw-sub"), vec!["user-1"]);
}

#[test]
fn typed_per_filter_config_disabled_route_passes_without_a_token() {
    let f = fx();
    let seen = passed(
        &f.envoy,
        &client::get(port(), "/disabled/x", &[]),
        "no token",
    );
    assert_eq!(seen.path, "/disabled/x");
    // Invalid tokens are not looked at either.
    let r = get_with_token(port(), "/disabled/two/x", "garbage", &[]);
    let seen = passed(&f.envoy, &r, "garbage token");
    assert_eq!(seen.header("authorization"), Some("Bearer garbage"));
}

#[test]
fn bypass_auth_route_metadata_passes_without_a_token() {
    let f = fx();
    let seen = passed(&f.envoy, &client::get(port(), "/bypass/x", &[]), "no token");
    assert_eq!(seen.path, "/bypass/x");
    let r = get_with_token(
        port(),
        "/bypass/two/x",
        &token("RS256", json!({"exp": now() - 3600})),
        &[],
    );
    passed(&f.envoy, &r, "expired token, bypass route");
    // The same paths without the prefix are protected.
    assert_no_token(
        &client::get(port(), "/x/bypass/x", &[]),
        "gw",
        "other route",
    );
}

#[test]
fn two_instances_in_one_chain_must_both_pass() {
    let f = fx();
    // Both pass: each injects its header.
    let r = get_with_token(
        port(),
        "/two/x",
        &token("EdDSA", json!({"scope": "read admin"})),
        &[("X-Gw-Sub", "spoof"), ("X-Route-Scope", "spoof")],
    );
    let seen = passed(&f.envoy, &r, "token with scope admin");
    assert_eq!(seen.headers_all("x-gw-sub"), vec!["user-1"]);
    assert_eq!(seen.headers_all("x-route-scope"), vec!["read admin"]);

    // The gateway instance passes, the route instance denies.
    let r = get_with_token(
        port(),
        "/two/x",
        &token("EdDSA", json!({"scope": "read"})),
        &[],
    );
    assert_eq!(r.status, 403, "{}", show(&r));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\", error_description=\"insufficient scope: token lacks admin\", scope=\"admin\", realm=\"route\"")
    );

    // The gateway instance denies first.
    assert_no_token(&client::get(port(), "/two/x", &[]), "gw", "no token");
    assert_invalid_token(
        &get_with_token(
            port(),
            "/two/x",
            &token("EdDSA", json!({"scope": "admin", "aud": "x"})),
            &[],
        ),
        "gw",
        "invalid audience",
        "wrong audience",
    );

    // Outside */two/* only the gateway instance has a rule.
    let seen = passed(
        &f.envoy,
        &get_with_token(port(), "/one/x", &token("EdDSA", Value::Null), &[]),
        "no scope needed",
    );
    assert_eq!(seen.headers_all("x-gw-sub"), vec!["user-1"]);
    assert!(seen.header("x-route-scope").is_none());
}

#[test]
fn disabling_one_instance_leaves_the_other_in_force() {
    let f = fx();
    // portcullis-gw is off on /gw-off/: the route instance alone decides.
    assert_no_token(
        &client::get(port(), "/gw-off/two/x", &[]),
        "route",
        "route instance, no token",
    );
    let r = get_with_token(
        port(),
        "/gw-off/two/x",
        &token("ES384", json!({"scope": "admin"})),
        &[],
    );
    let seen = passed(&f.envoy, &r, "route instance satisfied");
    assert!(seen.header("x-gw-sub").is_none(), "{:?}", seen.headers);
    assert_eq!(seen.headers_all("x-route-scope"), vec!["admin"]);
    // And where the route instance has no rule, nothing is required.
    passed(
        &f.envoy,
        &client::get(port(), "/gw-off/one/x", &[]),
        "no rule in the route instance",
    );
}

#[test]
fn injected_headers_are_stripped_where_no_filter_runs() {
    let f = fx();
    // A bypass_auth route (the plugin runs, no filter does) and a rule with empty
    // `filters` in the route-level instance: a client's X-Gw-Sub / X-Route-Scope
    // never reaches the upstream.
    let seen = passed(
        &f.envoy,
        &client::get(
            port(),
            "/bypass/x",
            &[("X-Gw-Sub", "spoof"), ("X-Route-Scope", "admin")],
        ),
        "bypass route",
    );
    assert!(seen.header("x-gw-sub").is_none(), "{:?}", seen.headers);
    assert!(seen.header("x-route-scope").is_none(), "{:?}", seen.headers);
    let seen = passed(
        &f.envoy,
        &get_with_token(
            port(),
            "/api/x",
            &token("ES256", Value::Null),
            &[("X-Route-Scope", "admin")],
        ),
        "rule without filters in the route-level instance",
    );
    assert!(seen.header("x-route-scope").is_none(), "{:?}", seen.headers);
}

#[test]
fn a_disabled_route_passes_a_clients_injected_headers_untouched() {
    let f = fx();
    // Envoy's FilterConfig {disabled: true}: the plugin never runs, so a
    // header a filter would inject reaches the upstream as the client sent it
    // (docs/configuration.md, per-route control). On a bypass_auth route it
    // is stripped (injected_headers_are_stripped_where_no_filter_runs).
    let seen = passed(
        &f.envoy,
        &client::get(port(), "/disabled/x", &[("X-Gw-Sub", "spoof")]),
        "disabled route",
    );
    assert_eq!(seen.headers_all("x-gw-sub"), vec!["spoof"]);
}
