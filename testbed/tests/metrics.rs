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

/// The `stats_config` the shipped Envoy example carries (examples/envoy/envoy.yaml),
/// as a top-level YAML line.
fn shipped_stats_config() -> String {
    let text = std::fs::read_to_string(
        portcullis_testbed::envoy::repo_root().join("examples/envoy/envoy.yaml"),
    )
    .unwrap();
    let doc: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    format!("stats_config: {}\n", doc["stats_config"])
}

/// With the shipped `stats_config`, Envoy 1.40's Prometheus output names each
/// counter once, with the filter and the status as labels, and every counter
/// is there at zero before its first event.
#[test]
fn prometheus_labels_filter_and_status_and_every_counter_starts_at_zero() {
    let echo = EchoUpstream::start();
    let plugin = json!({
        "filters": [
            { "name": "jwt", "JWT": { "jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE } },
            { "name": "keys.team-a", "APIKey": { "keys": [ { "value": "k1" } ] } }
        ],
        "rules": [
            { "host": "*", "path": "/api/*", "filters": [ { "name": "jwt" } ] },
            { "host": "*", "path": "/keys/*", "filters": [ { "name": "keys.team-a" } ] }
        ]
    });
    let mut yaml = EnvoyConfig::new(echo.port()).plugin(plugin).build();
    yaml.push_str(&shipped_stats_config());
    let envoy = Envoy::start(&yaml);
    let port = envoy.port("main");
    // Before any request: present, at zero.
    let prometheus = || envoy.admin_get("/stats/prometheus");
    let zero = [
        r#"portcullis_filter_allowed{portcullis_filter="jwt"} 0"#,
        r#"portcullis_filter_denied{portcullis_filter="jwt",portcullis_status="401"} 0"#,
        r#"portcullis_filter_denied{portcullis_filter="keys.team-a",portcullis_status="403"} 0"#,
        "portcullis_requests_no_rule{} 0",
        "portcullis_callout_failed{} 0",
    ];
    let text = prometheus();
    for line in zero {
        assert!(text.contains(line), "{line}\n{}", grep(&text, "portcullis"));
    }
    assert_eq!(client::get(port, "/api/x", &[]).status, 401);
    assert_eq!(
        client::get(port, "/keys/x", &[("x-api-key", "nope")]).status,
        403
    );
    for line in [
        r#"portcullis_filter_denied{portcullis_filter="jwt",portcullis_status="401"} 1"#,
        r#"portcullis_filter_denied{portcullis_filter="keys.team-a",portcullis_status="403"} 1"#,
    ] {
        assert!(
            eventually(Duration::from_secs(5), || prometheus().contains(line)),
            "{line}\n{}",
            grep(&prometheus(), "portcullis")
        );
    }
    // One name per counter: the filter and status are not baked into it.
    let text = prometheus();
    assert!(
        !text.contains("portcullis_filter_jwt_"),
        "{}",
        grep(&text, "portcullis")
    );
}

fn grep(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}
