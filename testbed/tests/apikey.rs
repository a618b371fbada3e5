//! The APIKey filter (AES `Filter.spec.APIKey`) end to end: the header named by
//! `httpHeader` (any case), keys given as `value`, `sha256` and `fromEnv`, and the
//! 403 every refusal gets. One Envoy for the file.

mod common;

use std::sync::OnceLock;

use common::{assert_default_body, passed, show};
use portcullis_testbed::client::{self, Response};
use portcullis_testbed::servers::EchoUpstream;
use portcullis_testbed::{Envoy, EnvoyConfig};
use serde_json::json;
use sha2::{Digest, Sha256};

struct Fixture {
    envoy: Envoy,
    _echo: EchoUpstream,
}

fn hex_sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let echo = EchoUpstream::start();
        let plugin = json!({
            "filters": [
                { "name": "keys", "APIKey": {
                    "httpHeader": "X-My-Key",
                    "keys": [
                        { "value": "s3cr3t" },
                        { "sha256": hex_sha256("hashed-key") },
                        { "value": { "fromEnv": "PARTNER_KEY" } }
                    ] } },
                { "name": "default-header", "APIKey": { "keys": [ { "value": "dflt" } ] } }
            ],
            "rules": [
                { "host": "*", "path": "/keys/*", "filters": [ { "name": "keys" } ] },
                { "host": "*", "path": "/default/*", "filters": [ { "name": "default-header" } ] }
            ]
        });
        let cfg = EnvoyConfig::new(echo.port())
            .plugin(plugin)
            .vm_env("PARTNER_KEY", "partner-123")
            .build();
        Fixture {
            envoy: Envoy::start(&cfg),
            _echo: echo,
        }
    })
}

fn get(path: &str, headers: &[(&str, &str)]) -> Response {
    client::get(fx().envoy.port("main"), path, headers)
}

fn assert_refused(r: &Response, ctx: &str) {
    assert_eq!(r.status, 403, "{ctx}: {}", show(r));
    assert_default_body(r, "API key not found", 403, ctx);
}

#[test]
fn every_kind_of_key_passes_and_the_key_goes_upstream() {
    for (key, kind) in [
        ("s3cr3t", "value"),
        ("hashed-key", "sha256"),
        ("partner-123", "fromEnv"),
    ] {
        let seen = passed(&fx().envoy, &get("/keys/x", &[("X-My-Key", key)]), kind);
        assert_eq!(seen.headers_all("x-my-key"), vec![key], "{kind}");
    }
}

#[test]
fn the_header_name_is_case_insensitive() {
    for name in ["x-my-key", "X-MY-KEY", "X-My-Key"] {
        passed(&fx().envoy, &get("/keys/case", &[(name, "s3cr3t")]), name);
    }
}

#[test]
fn default_header_is_x_api_key() {
    passed(
        &fx().envoy,
        &get("/default/x", &[("x-api-key", "dflt")]),
        "X-API-Key",
    );
    assert_refused(&get("/default/x", &[("X-My-Key", "dflt")]), "other header");
}

#[test]
fn missing_wrong_and_empty_keys_are_refused() {
    assert_refused(&get("/keys/x", &[]), "missing header");
    assert_refused(
        &get("/keys/x", &[("X-My-Key", "s3cr3")]),
        "wrong key (prefix)",
    );
    // (Trailing spaces are not part of an HTTP header value.)
    assert_refused(
        &get("/keys/x", &[("X-My-Key", "s3cr3tt")]),
        "wrong key (suffix)",
    );
    assert_refused(&get("/keys/x", &[("X-My-Key", "S3CR3T")]), "wrong case");
    assert_refused(&get("/keys/x", &[("X-My-Key", "")]), "empty value");
    // The digest itself is not a key, nor is the environment variable's name.
    assert_refused(
        &get("/keys/x", &[("X-My-Key", &hex_sha256("hashed-key"))]),
        "the digest",
    );
    assert_refused(
        &get("/keys/x", &[("X-My-Key", "PARTNER_KEY")]),
        "the env name",
    );
    // Outside the rule nothing is asked.
    passed(&fx().envoy, &get("/elsewhere", &[]), "no rule");
}
