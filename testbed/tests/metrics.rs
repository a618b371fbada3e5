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
/// counter once, with the filter, the status and the Authorization rule as
/// labels, and every counter is there at zero before its first event.
#[test]
fn prometheus_labels_filter_and_status_and_every_counter_starts_at_zero() {
    let echo = EchoUpstream::start();
    let plugin = json!({
        "filters": [
            { "name": "jwt", "JWT": { "jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE } },
            { "name": "keys.team-a", "APIKey": { "keys": [ { "value": "k1" } ] } },
            { "name": "staff", "Authorization": {
                "rules": [ { "name": "admins.eu", "action": "Allow",
                             "claims": [ { "path": "sub", "equals": "admin-1" } ] } ],
                "defaultAction": "Deny" } }
        ],
        "rules": [
            { "host": "*", "path": "/api/*", "filters": [ { "name": "jwt" } ] },
            { "host": "*", "path": "/keys/*", "filters": [ { "name": "keys.team-a" } ] },
            { "host": "*", "path": "/staff/*", "filters": [ { "name": "jwt" }, { "name": "staff" } ] }
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
        // A rule's dot is written `_` (the label takes one name part).
        r#"portcullis_authorization_allow{portcullis_filter="staff",portcullis_rule="admins_eu"} 0"#,
        r#"portcullis_authorization_deny{portcullis_filter="staff",portcullis_rule="default"} 0"#,
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
    let admin = token("RS256", json!({ "sub": "admin-1" }));
    assert_eq!(get_with_token(port, "/staff/x", &admin, &[]).status, 200);
    let user = token("RS256", serde_json::Value::Null);
    for _ in 0..2 {
        assert_eq!(get_with_token(port, "/staff/x", &user, &[]).status, 403);
    }
    for line in [
        r#"portcullis_filter_denied{portcullis_filter="jwt",portcullis_status="401"} 1"#,
        r#"portcullis_filter_denied{portcullis_filter="keys.team-a",portcullis_status="403"} 1"#,
        r#"portcullis_authorization_allow{portcullis_filter="staff",portcullis_rule="admins_eu"} 1"#,
        r#"portcullis_authorization_deny{portcullis_filter="staff",portcullis_rule="default"} 2"#,
        r#"portcullis_filter_denied{portcullis_filter="staff",portcullis_status="403"} 2"#,
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

/// One login, one refresh and one logout through a real Envoy with the
/// shipped `stats_config`, at oidc-provider: each is counted once under its
/// own name, as Envoy 1.40 prints it for Prometheus, and nothing under
/// `denied`. The refresh is the login's last hop: the filter's
/// `expirationSafetyMargin` is longer than the IdP's access tokens live, so
/// the first request of the session refreshes (no waiting for an expiry).
/// The callouts' latency is measured (its sum is not 0), and a filter whose
/// IdP never answers counts an IdP error of its kind.
#[test]
fn a_login_a_refresh_and_a_logout_are_each_counted_once_under_their_own_names() {
    use portcullis_testbed::browserless::Agent;
    use portcullis_testbed::idp::{free_port, Idp, IdpClient, IdpOptions, LOGOUT_ENDPOINT};
    const SECRET: &str = "portcullis-s3cret";
    let echo = EchoUpstream::start();
    let dead = free_port();
    let mut started = None;
    for _ in 0..3 {
        let port = free_port();
        let origin = format!("http://127.0.0.1:{port}");
        let idp = Idp::start(IdpOptions {
            clients: vec![
                IdpClient::web("metrics", SECRET, std::slice::from_ref(&origin))
                    .access_ttl(Duration::from_secs(60)),
            ],
            ..IdpOptions::default()
        });
        let oauth2 = |name: &str, issuer: &str| {
            json!({ "name": name, "OAuth2": {
                "authorizationURL": issuer, "clientID": "metrics", "secret": SECRET,
                "protectedOrigins": [ { "origin": origin } ],
                "sessionKeys": [ portcullis_testbed::idp::session_key() ],
                "postLogoutRedirectURI": format!("{origin}/logged-out"),
                "expirationSafetyMargin": "120s"
            } })
        };
        let mut clusters = serde_json::Map::new();
        clusters.insert(idp.authority(), json!("idp"));
        clusters.insert(format!("127.0.0.1:{dead}"), json!("dead"));
        let plugin = json!({
            "clusters": clusters,
            "filters": [ oauth2("app", idp.issuer()), oauth2("down", &format!("http://127.0.0.1:{dead}")) ],
            "rules": [
                { "host": "*", "path": "/app/*", "filters": [ { "name": "app" } ] },
                { "host": "*", "path": "/down/*", "filters": [ { "name": "down" } ] }
            ]
        });
        let mut yaml = EnvoyConfig::new(echo.port())
            .main_port(port)
            .plugin(plugin)
            .cluster("idp", idp.port())
            .cluster("dead", dead)
            .build();
        yaml.push_str(&shipped_stats_config());
        // Histograms reach /stats at each flush (5 s by default).
        yaml.push_str("stats_flush_interval: 0.5s\n");
        match Envoy::try_start(&yaml) {
            Ok(envoy) => {
                started = Some((envoy, idp, origin));
                break;
            }
            Err(e) if e.contains("ddress already in use") => continue,
            Err(e) => panic!("{e}"),
        }
    }
    let (envoy, idp, origin) = started.expect("Envoy bound a picked port");
    let prometheus = || envoy.admin_get("/stats/prometheus");
    let events = [
        "login_started",
        "login_completed",
        "login_refused",
        "refresh_done",
        "refresh_failed",
        "logout",
    ];
    let text = prometheus();
    for event in events {
        let zero = format!(r#"portcullis_oauth2_{event}{{portcullis_filter="app"}} 0"#);
        assert!(
            text.contains(&zero),
            "{zero}\n{}",
            grep(&text, "portcullis")
        );
    }
    let zero = r#"portcullis_oauth2_idp_error{portcullis_filter="app",portcullis_idp_error="unavailable"} 0"#;
    assert!(text.contains(zero), "{zero}\n{}", grep(&text, "portcullis"));

    // The login (its last hop refreshes), then the logout.
    let mut agent = Agent::new();
    let login = idp.login_headless(&mut agent, &format!("{origin}/app/x"), "alice");
    assert_eq!(login.response.status, 200, "{}", login.response.body_str());
    let xsrf = agent
        .cookie("127.0.0.1", "portcullis_xsrf.app")
        .expect("the XSRF cookie")
        .value
        .clone();
    let logout = agent.post_form(
        &format!(
            "{origin}{LOGOUT_ENDPOINT}?_xsrf={}",
            portcullis_testbed::browserless::percent_encode(&xsrf)
        ),
        &[("_xsrf".into(), xsrf.clone())],
        &[],
    );
    assert_eq!(logout.status, 303, "{}", logout.body_str());
    // A filter whose IdP never answered: its discovery document is not loaded.
    assert_eq!(client::get(envoy.port("main"), "/down/x", &[]).status, 503);

    let once = |event: &str| format!(r#"portcullis_oauth2_{event}{{portcullis_filter="app"}} 1"#);
    for line in [
        once("login_started"),
        once("login_completed"),
        once("refresh_done"),
        once("logout"),
        r#"portcullis_filter_allowed{portcullis_filter="app"} 1"#.to_string(),
        r#"portcullis_oauth2_idp_error{portcullis_filter="down",portcullis_idp_error="not_loaded"} 1"#.to_string(),
    ] {
        assert!(
            eventually(Duration::from_secs(10), || prometheus().contains(&line)),
            "{line}\n{}",
            grep(&prometheus(), "portcullis")
        );
    }
    let text = prometheus();
    for event in ["login_refused", "refresh_failed"] {
        let zero = format!(r#"portcullis_oauth2_{event}{{portcullis_filter="app"}} 0"#);
        assert!(
            text.contains(&zero),
            "{zero}\n{}",
            grep(&text, "portcullis")
        );
    }
    // Nothing of the app's login, refresh or logout counted as denied.
    let denied: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(r#"portcullis_filter_denied{portcullis_filter="app""#))
        .collect();
    assert!(!denied.is_empty(), "{}", grep(&text, "portcullis"));
    for line in denied {
        assert!(line.ends_with(" 0"), "{line}");
    }
    // The callouts (discovery is the host's; the code exchange, UserInfo and
    // the refresh are the filter's) took time.
    assert!(
        eventually(Duration::from_secs(10), || {
            let text = prometheus();
            let sum = text
                .lines()
                .find_map(|l| l.strip_prefix("portcullis_callout_latency_us_sum{} "))
                .and_then(|v| v.trim().parse::<f64>().ok());
            let count = text
                .lines()
                .find_map(|l| l.strip_prefix("portcullis_callout_latency_us_count{} "))
                .and_then(|v| v.trim().parse::<u64>().ok());
            matches!((sum, count), (Some(s), Some(n)) if s > 0.0 && n >= 3)
        }),
        "{}",
        grep(&prometheus(), "latency")
    );
}

fn grep(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}
