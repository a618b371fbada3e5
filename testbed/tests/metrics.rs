//! Metrics through proxy-wasm `define_metric`, as an operator reads them in
//! Envoy's `/stats` (with Envoy's `wasmcustom.` prefix) and Prometheus output.

mod common;

use common::*;
use portcullis_testbed::client;
use portcullis_testbed::servers::EchoUpstream;
use portcullis_testbed::{Envoy, EnvoyConfig};
use serde_json::json;
use std::time::Duration;

#[test]
fn allowed_and_denied_requests_are_counted_per_filter_and_status() {
    let echo = EchoUpstream::start();
    let plugin = json!({
        "filters": [
            { "name": "jwt", "JWT": { "jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE } },
            { "name": "keys", "APIKey": { "keys": [ { "value": "k1" } ] } }
        ],
        "rules": [
            { "host": "*", "path": "/api/*", "filters": [ { "name": "jwt" } ] },
            { "host": "*", "path": "/keys/*", "filters": [ { "name": "keys" } ] }
        ]
    });
    let envoy = Envoy::start(&EnvoyConfig::new(echo.port()).plugin(plugin).build());
    let port = envoy.port("main");
    let good = token("RS256", serde_json::Value::Null);
    for _ in 0..3 {
        assert_eq!(get_with_token(port, "/api/x", &good, &[]).status, 200);
    }
    assert_eq!(client::get(port, "/api/x", &[]).status, 401);
    assert_eq!(
        client::get(port, "/keys/x", &[("x-api-key", "nope")]).status,
        403
    );
    assert_eq!(client::get(port, "/other", &[]).status, 200);

    // Counts reach Envoy on the VM's tick: each one is waited for (one tick
    // may carry the first requests' counts, the next the rest).
    let stat = |name: &str| envoy.stat(&format!("wasmcustom.portcullis.{name}"));
    for (name, want) in [
        ("filter.jwt.allowed", 3),
        ("filter.jwt.denied.401", 1),
        ("filter.keys.denied.403", 1),
        ("requests.no_rule", 1),
    ] {
        assert!(
            eventually(Duration::from_secs(5), || stat(name) == Some(want)),
            "{name}: {}",
            envoy.admin_get("/stats?filter=portcullis")
        );
    }
    let prometheus = envoy.admin_get("/stats/prometheus");
    assert!(
        prometheus.contains("portcullis_filter_jwt_allowed"),
        "Prometheus output names the counter"
    );
}
