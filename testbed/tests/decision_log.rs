//! The decision log, as an operator reads Envoy's log: one `info` line per
//! denial (filter, status, the reason in words, the rule, `x-request-id`), a
//! `debug` line per allowed request, and never a token, a cookie or a key.

mod common;

use common::*;
use portcullis_testbed::client;
use portcullis_testbed::servers::EchoUpstream;
use portcullis_testbed::{Envoy, EnvoyConfig};
use serde_json::json;
use std::time::Duration;

/// The log lines holding `needle`.
fn lines_with(envoy: &Envoy, needle: &str) -> Vec<String> {
    envoy
        .log()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_denial_logs_one_info_line_with_filter_reason_and_request_id_and_no_credential() {
    let echo = EchoUpstream::start();
    const KEY: &str = "partner-key-0123456789abcdef";
    let plugin = json!({
        "filters": [
            { "name": "jwt", "JWT": { "jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE } },
            { "name": "keys", "APIKey": { "keys": [ { "value": KEY } ] } }
        ],
        "rules": [
            { "host": "*", "path": "/api/*", "filters": [ { "name": "jwt" } ] },
            { "host": "*", "path": "/keys/*", "filters": [ { "name": "keys" } ] }
        ]
    });
    let envoy = Envoy::start(&EnvoyConfig::new(echo.port()).plugin(plugin).build());
    let port = envoy.port("main");
    let expired = token("RS256", json!({ "exp": now() - 600 }));
    let cookie = "portcullis_session.login=c2Vzc2lvbi1jb29raWUtdmFsdWUtMTIzNDU2";
    let r = get_with_token(
        port,
        "/api/items?access_token=query-secret-value",
        &expired,
        &[("x-request-id", "req-expired-1"), ("cookie", cookie)],
    );
    assert_eq!(r.status, 401, "{}", show(&r));
    let r = client::get(
        port,
        "/keys/x",
        &[
            ("x-api-key", "wrong-key-0123456789abcdef"),
            ("x-request-id", "req-key-2"),
        ],
    );
    assert_eq!(r.status, 403, "{}", show(&r));
    let good = token("RS256", serde_json::Value::Null);
    let r = get_with_token(port, "/api/ok", &good, &[("x-request-id", "req-ok-3")]);
    assert_eq!(r.status, 200, "{}", show(&r));

    assert!(
        envoy.wait_for_log("request_id=req-ok-3", Duration::from_secs(10)),
        "{}",
        lines_with(&envoy, "wasm log").join("\n")
    );
    let denied = lines_with(&envoy, "request_id=req-expired-1");
    assert_eq!(denied.len(), 1, "{denied:#?}");
    let line = &denied[0];
    assert!(line.contains("[info]"), "{line}");
    for field in [
        "decision=deny",
        "filter=jwt",
        "status=401",
        "reason=\"token is expired\"",
        "rule=rules[0]",
        "method=GET",
    ] {
        assert!(line.contains(field), "{field}: {line}");
    }
    // The path without its query.
    assert!(line.ends_with(" path=/api/items"), "{line}");
    let denied = lines_with(&envoy, "request_id=req-key-2");
    assert_eq!(denied.len(), 1, "{denied:#?}");
    assert!(denied[0].contains("[info]"), "{}", denied[0]);
    assert!(
        denied[0].contains(
            "decision=deny filter=keys status=403 reason=\"API key not found\" rule=rules[1]"
        ),
        "{}",
        denied[0]
    );
    let allowed = lines_with(&envoy, "request_id=req-ok-3");
    assert_eq!(allowed.len(), 1, "{allowed:#?}");
    assert!(allowed[0].contains("[debug]"), "{}", allowed[0]);
    assert!(
        allowed[0].contains("decision=allow filter=jwt"),
        "{}",
        allowed[0]
    );

    // Nothing a client sent as a credential reaches the log, at any level.
    let log = envoy.log();
    let signature = expired.rsplit('.').next().unwrap();
    for secret in [
        expired.as_str(),
        signature,
        &good,
        "c2Vzc2lvbi1jb29raWUtdmFsdWUtMTIzNDU2",
        "wrong-key-0123456789abcdef",
        KEY,
        "query-secret-value",
    ] {
        assert!(!log.contains(secret), "the log holds {secret:?}");
    }
}

/// A callout to a cluster Envoy knows but that has no endpoint (its DNS name
/// does not resolve) is not logged with the hint meant for a cluster Envoy
/// does not know; the undefined one still is.
#[test]
fn a_defined_cluster_without_endpoints_is_not_called_undefined() {
    let echo = EchoUpstream::start();
    let plugin = json!({
        "filters": [
            { "name": "dns", "External": { "auth_service": "http://unresolvable:80", "timeout_ms": 2000 } },
            { "name": "none", "External": { "auth_service": "http://nocluster.test:80" } }
        ],
        "rules": [
            { "host": "*", "path": "/dns/*", "filters": [ { "name": "dns" } ] },
            { "host": "*", "path": "/none/*", "filters": [ { "name": "none" } ] }
        ]
    });
    let yaml = EnvoyConfig::new(echo.port()).plugin(plugin).build().replacen(
        "  clusters:\n",
        "  clusters:
  - name: unresolvable
    type: STRICT_DNS
    dns_lookup_family: V4_ONLY
    connect_timeout: 1s
    load_assignment:
      cluster_name: unresolvable
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: portcullis-no-such-host.invalid, port_value: 80 } } }
",
        1,
    );
    let envoy = Envoy::start(&yaml);
    let port = envoy.port("main");
    let r = client::get(port, "/dns/x", &[("x-request-id", "req-dns-1")]);
    assert_eq!(r.status, 403, "{}", show(&r));
    let r = client::get(port, "/none/x", &[("x-request-id", "req-none-2")]);
    assert_eq!(r.status, 403, "{}", show(&r));
    assert!(
        envoy.wait_for_log("request_id=req-none-2", Duration::from_secs(10)),
        "{}",
        envoy.log_tail(40)
    );
    let log = envoy.log();
    let undefined: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("is the cluster defined?"))
        .collect();
    assert_eq!(undefined.len(), 1, "{undefined:#?}");
    assert!(
        undefined[0].contains("\"nocluster.test\""),
        "{}",
        undefined[0]
    );
    assert!(lines_with(&envoy, "request_id=req-dns-1")[0]
        .contains("decision=deny filter=dns status=403"));
}

/// The decision in Envoy's access log, through the filter state Portcullis sets.
#[test]
fn an_access_log_prints_the_decision_and_the_filter() {
    let echo = EchoUpstream::start();
    let plugin = json!({
        "filters": [ { "name": "keys", "APIKey": { "keys": [ { "value": "k1" } ] } } ],
        "rules": [ { "host": "*", "path": "/keys/*", "filters": [ { "name": "keys" } ] } ]
    });
    let access_log = r#"          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                text_format_source:
                  inline_string: "ACCESS %REQ(X-REQUEST-ID)% %RESPONSE_CODE% decision=%FILTER_STATE(wasm.portcullis.decision:PLAIN)% filter=%FILTER_STATE(wasm.portcullis.filter:PLAIN)%\n"
          stat_prefix: "main"
"#;
    let yaml = EnvoyConfig::new(echo.port())
        .plugin(plugin)
        .build()
        .replacen("          stat_prefix: \"main\"\n", access_log, 1);
    assert!(yaml.contains("access_log"), "{yaml}");
    let envoy = Envoy::start(&yaml);
    let port = envoy.port("main");
    let r = client::get(
        port,
        "/keys/x",
        &[("x-api-key", "nope"), ("x-request-id", "acc-1")],
    );
    assert_eq!(r.status, 403, "{}", show(&r));
    let r = client::get(
        port,
        "/keys/x",
        &[("x-api-key", "k1"), ("x-request-id", "acc-2")],
    );
    assert_eq!(r.status, 200, "{}", show(&r));
    let r = client::get(port, "/open", &[("x-request-id", "acc-3")]);
    assert_eq!(r.status, 200, "{}", show(&r));
    for line in [
        "ACCESS acc-1 403 decision=deny filter=keys",
        "ACCESS acc-2 200 decision=allow filter=keys",
        "ACCESS acc-3 200 decision=- filter=-",
    ] {
        assert!(
            envoy.wait_for_log(line, Duration::from_secs(10)),
            "{line}\n{}",
            lines_with(&envoy, "ACCESS").join("\n")
        );
    }
}
