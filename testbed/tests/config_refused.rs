//! A JWT filter configuration the plugin refuses makes Envoy refuse to start, and
//! the log names the JSON path of the fault (CONFIG.md "filters[]").

mod common;

use common::*;
use portcullis_testbed::servers::EchoUpstream;
use portcullis_testbed::{Envoy, EnvoyConfig};
use serde_json::{json, Value};

/// Starts Envoy with `jwt` as filter 0's `JWT` block (rule on every path); returns
/// Envoy's log when it refuses to start, panics when it starts.
fn refused(jwt: Value) -> String {
    let echo = EchoUpstream::start();
    let plugin = json!({
        "filters": [ { "name": "jwt", "JWT": jwt } ],
        "rules": [ { "host": "*", "path": "*", "filters": [ { "name": "jwt" } ] } ]
    });
    match Envoy::try_start(&EnvoyConfig::new(echo.port()).plugin(plugin).build()) {
        Ok(envoy) => panic!(
            "Envoy started with a JWT config the plugin must refuse; log:\n{}",
            envoy.log_tail(40)
        ),
        Err(log) => log,
    }
}

fn assert_logged(log: &str, line: &str) {
    assert!(
        log.contains(&format!("configuration refused: {line}")),
        "expected the log to say `configuration refused: {line}`; log tail:\n{log}"
    );
}

#[test]
fn bad_duration_is_refused_with_its_json_path() {
    let log = refused(json!({ "jwks": jwks(), "leewayForExpiresAt": "5 sec" }));
    assert_logged(
        &log,
        r#"filters[0].JWT.leewayForExpiresAt: invalid duration "5 sec""#,
    );
}

#[test]
fn bad_template_and_unknown_algorithm_are_refused() {
    let log = refused(json!({
        "jwks": jwks(),
        "validAlgorithms": ["RS256", "RS1024"],
        "injectRequestHeaders": [ { "name": "X-Sub", "value": "{{ .token.Claims.sub " } ]
    }));
    assert_logged(
        &log,
        r#"filters[0].JWT.validAlgorithms[1]: unsupported algorithm "RS1024""#,
    );
    assert!(
        log.contains(
            "configuration refused: filters[0].JWT.injectRequestHeaders[0].value: invalid template"
        ),
        "{log}"
    );
}

#[test]
fn both_key_sources_or_none_are_refused() {
    let log = refused(json!({ "jwks": jwks(), "jwksURI": "http://idp/jwks.json" }));
    assert_logged(&log, "filters[0].JWT: give `jwksURI` or `jwks`, not both");
    let log = refused(json!({ "issuer": ISSUER }));
    assert_logged(
        &log,
        "filters[0].JWT: one of `jwksURI` or `jwks` is required",
    );
}

#[test]
fn unknown_field_in_the_jwt_block_is_refused() {
    let log = refused(json!({ "jwks": jwks(), "leewayForExpiry": "5s" }));
    assert!(
        log.contains("configuration refused: filters[0].JWT") && log.contains("leewayForExpiry"),
        "{log}"
    );
}
