//! The External filter over gRPC (`proto: grpc`): a real gRPC server (tonic over
//! HTTP/2) implementing `envoy.service.auth.v3.Authorization/Check`. What the
//! `CheckRequest` carries, how OK / Denied answers and gRPC errors are applied.
//!
//! One Envoy for the file; the server answers per checked path, so every test
//! uses paths of its own.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{default_body, show};
use portcullis_testbed::authz::{
    code, denied_response, header_option, istio_ext_authz_grpc, ok_response, GrpcAuthServer,
    GrpcReply, ReceivedCheck, ISTIO_DENY_BODY, ISTIO_RESULT_HEADER,
};
use portcullis_testbed::client::{self, Response};
use portcullis_testbed::servers::{echo_json, Reply, ScriptedServer};
use portcullis_testbed::{Echoed, Envoy, EnvoyConfig};
use serde_json::json;

struct Fixture {
    envoy: Envoy,
    upstream: ScriptedServer,
    auth: GrpcAuthServer,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let upstream = ScriptedServer::start();
        upstream.set_default_fn(|r| Reply::json(200, &echo_json(r)));
        let auth = GrpcAuthServer::start();
        let grpc = |extra: serde_json::Value| {
            let mut spec = json!({ "auth_service": "grpc-auth.test:9000", "proto": "grpc",
                                   "protocol_version": "v3", "timeout_ms": 1000 });
            if let (Some(s), serde_json::Value::Object(e)) = (spec.as_object_mut(), extra) {
                s.extend(e);
            }
            spec
        };
        let plugin = json!({
            "clusters": { "grpc-auth.test:9000": "grpcauth" },
            "filters": [
                { "name": "g", "External": grpc(json!({})) },
                { "name": "gbody", "External": grpc(json!({ "include_body": { "max_bytes": 8, "allow_partial": true } })) },
                { "name": "gerr", "External": grpc(json!({ "timeout_ms": 500, "status_on_error": { "code": 503 } })) },
                { "name": "gopen", "External": grpc(json!({ "timeout_ms": 500, "failure_mode_allow": true })) }
            ],
            "rules": [
                { "host": "*", "path": "/g/*",
                  "filters": [ { "name": "g", "arguments": { "tenant": "acme", "route": "g" } } ] },
                { "host": "*", "path": "/gbody/*", "filters": [ { "name": "gbody" } ] },
                { "host": "*", "path": "/gerr/*", "filters": [ { "name": "gerr" } ] },
                { "host": "*", "path": "/gopen/*", "filters": [ { "name": "gopen" } ] }
            ]
        });
        let cfg = EnvoyConfig::new(upstream.port())
            .plugin(plugin)
            .grpc_cluster("grpcauth", auth.port())
            .build();
        Fixture {
            envoy: Envoy::start(&cfg),
            upstream,
            auth,
        }
    })
}

fn port() -> u16 {
    fx().envoy.port("main")
}

fn passed(r: &Response, ctx: &str) -> Echoed {
    common::passed(&fx().envoy, r, ctx)
}

fn one_check(path: &str) -> ReceivedCheck {
    let checks = fx().auth.checks_of(path);
    assert_eq!(checks.len(), 1, "checks of {path}: {checks:?}");
    checks.into_iter().next().expect("one")
}

#[test]
fn check_request_carries_the_request_and_the_rule_arguments() {
    let r = client::request(
        port(),
        "POST",
        "/g/attrs?q=1&r=2",
        &[
            ("Host", "shop.example.com"),
            ("X-Custom", "c1"),
            ("Authorization", "Bearer abc"),
        ],
        b"not sent",
    );
    let seen = passed(&r, "default OK");
    assert_eq!(seen.body, "not sent");
    let check = one_check("/g/attrs");
    assert_eq!(
        check.grpc_path,
        "/envoy.service.auth.v3.Authorization/Check"
    );
    // The gRPC call's own headers: Envoy's gRPC client, HTTP/2.
    let meta = |n: &str| {
        check
            .metadata
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(meta("content-type"), Some("application/grpc"));
    assert_eq!(meta("te"), Some("trailers"));
    assert_eq!(meta("grpc-timeout"), Some("1000m"), "timeout_ms");
    let http = check.http();
    assert_eq!(http.method, "POST");
    assert_eq!(http.path, "/g/attrs?q=1&r=2");
    assert_eq!(http.host, "shop.example.com");
    assert_eq!(http.scheme, "http");
    assert_eq!(http.protocol, "HTTP/1.1");
    assert_eq!(http.size, 8, "size is the Content-Length");
    assert!(
        http.body.is_empty() && http.raw_body.is_empty(),
        "no body without include_body"
    );
    assert!(!http.id.is_empty(), "the request id");
    for (name, value) in [
        (":method", "POST"),
        (":path", "/g/attrs?q=1&r=2"),
        (":authority", "shop.example.com"),
        ("x-custom", "c1"),
        ("authorization", "Bearer abc"),
    ] {
        assert_eq!(
            http.headers.get(name).map(String::as_str),
            Some(value),
            "{name}: {:?}",
            http.headers
        );
    }
    assert!(!http.headers.contains_key("x-envoy-auth-partial-body"));
    let attrs = check.attributes();
    assert_eq!(
        attrs.context_extensions,
        [("route", "g"), ("tenant", "acme")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        "the rule's arguments are the context_extensions"
    );
    let addr = |p: &Option<portcullis_core::external::proto::Peer>| {
        p.as_ref()
            .and_then(|p| p.address.as_ref())
            .and_then(|a| a.socket_address.as_ref())
            .map(|s| (s.address.clone(), s.port_value.unwrap_or(0)))
            .expect("a socket address")
    };
    let (src, src_port) = addr(&attrs.source);
    assert_eq!(src, "127.0.0.1");
    assert_ne!(src_port, 0);
    assert_eq!(
        addr(&attrs.destination),
        ("127.0.0.1".to_string(), u32::from(port()))
    );
    let time = attrs
        .request
        .as_ref()
        .and_then(|r| r.time.as_ref())
        .expect("request time");
    let now = portcullis_testbed::tokens::now() as i64;
    assert!((time.seconds - now).abs() < 30, "time {time:?}");
}

#[test]
fn include_body_puts_the_body_in_the_check() {
    let f = fx();
    let r = client::request(port(), "POST", "/gbody/small", &[], b"abc");
    assert_eq!(passed(&r, "small").body, "abc");
    let check = one_check("/gbody/small");
    let http = check.http();
    assert_eq!(http.body, "abc");
    assert_eq!(http.raw_body, b"abc");
    assert_eq!(
        http.headers
            .get("x-envoy-auth-partial-body")
            .map(String::as_str),
        Some("false")
    );

    let body = b"0123456789abcdefghij";
    let r = client::request(port(), "POST", "/gbody/big", &[], body);
    assert_eq!(
        passed(&r, "big").body.as_bytes(),
        body,
        "the upstream gets it all"
    );
    let check = one_check("/gbody/big");
    let http = check.http();
    assert_eq!(http.body, "01234567");
    assert_eq!(
        http.headers
            .get("x-envoy-auth-partial-body")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(f.upstream.count("/gbody/big"), 1);
}

#[test]
fn ok_headers_are_set_appended_and_removed_upstream() {
    let f = fx();
    f.auth.set(
        "/g/ok",
        ok_response(
            vec![
                header_option("x-set", "from-auth", None),
                header_option("x-app", "b", Some(true)),
                header_option("x-new", "n", Some(false)),
            ],
            &["x-remove-me"],
        ),
    );
    let r = client::get(
        port(),
        "/g/ok",
        &[
            ("X-Set", "from-client"),
            ("X-App", "a"),
            ("X-Remove-Me", "gone"),
            ("X-Keep", "k"),
        ],
    );
    let seen = passed(&r, "OK with header changes");
    assert_eq!(seen.headers_all("x-set"), vec!["from-auth"]);
    // `append: true` joins to the present value with `,`, as Envoy's
    // ext_authz does (external_grpc_vs_native.rs).
    assert_eq!(seen.headers_all("x-app"), vec!["a,b"]);
    assert_eq!(seen.headers_all("x-new"), vec!["n"]);
    assert!(seen.header("x-remove-me").is_none(), "{:?}", seen.headers);
    assert_eq!(seen.headers_all("x-keep"), vec!["k"]);
    assert_eq!(f.upstream.count("/g/ok"), 1);
}

#[test]
fn denied_status_headers_and_body_reach_the_client() {
    let f = fx();
    f.auth.set(
        "/g/denied",
        denied_response(
            401,
            vec![
                header_option("www-authenticate", "Bearer realm=\"g\"", None),
                header_option("x-deny", "d", None),
            ],
            "go away",
        ),
    );
    let r = client::get(port(), "/g/denied", &[]);
    assert_eq!(r.status, 401, "{}", show(&r));
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"g\""));
    assert_eq!(r.header("x-deny"), Some("d"));
    assert_eq!(r.body_str(), "go away");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(f.upstream.count("/g/denied"), 0);

    // PERMISSION_DENIED without an HTTP status: 403, no body.
    f.auth.set(
        "/g/denied-bare",
        GrpcReply::Answer(portcullis_core::external::proto::CheckResponse {
            status: Some(portcullis_core::external::proto::Status {
                code: code::PERMISSION_DENIED,
                message: String::new(),
            }),
            http_response: None,
        }),
    );
    let r = client::get(port(), "/g/denied-bare", &[]);
    assert_eq!(r.status, 403, "{}", show(&r));
    assert_eq!(r.body_str(), "");
    assert_eq!(f.upstream.count("/g/denied-bare"), 0);
}

#[test]
fn grpc_errors_and_timeouts_answer_status_on_error_or_fail_open() {
    let f = fx();
    for path in ["/gerr/unavailable", "/gopen/unavailable"] {
        f.auth.set(
            path,
            GrpcReply::Error(code::UNAVAILABLE, "down".to_string()),
        );
    }
    f.auth.set(
        "/gerr/internal",
        GrpcReply::Error(code::INTERNAL, "broke".to_string()),
    );
    for path in ["/gerr/slow", "/gopen/slow"] {
        f.auth.set(
            path,
            GrpcReply::Delayed(
                Duration::from_millis(1500),
                Box::new(ok_response(Vec::new(), &[])),
            ),
        );
    }
    for path in ["/gerr/unavailable", "/gerr/internal", "/gerr/slow"] {
        let r = client::get(port(), path, &[]);
        assert_eq!(r.status, 503, "{path}: {}", show(&r));
        assert_eq!(
            r.body_str(),
            default_body("the authorization service could not be reached", 503),
            "{path}"
        );
        assert_eq!(f.upstream.count(path), 0, "{path}");
    }
    for path in ["/gopen/unavailable", "/gopen/slow"] {
        let seen = passed(&client::get(port(), path, &[]), path);
        assert_eq!(
            seen.headers_all("x-envoy-auth-failure-mode-allowed"),
            vec!["true"],
            "{path}"
        );
    }
}

#[test]
fn istio_sample_over_grpc() {
    let f = fx();
    for path in ["/g/istio-deny", "/g/istio-allow"] {
        f.auth.set_fn(path, istio_ext_authz_grpc);
    }
    let r = client::get(port(), "/g/istio-deny", &[]);
    assert_eq!(r.status, 403, "{}", show(&r));
    assert_eq!(r.header(ISTIO_RESULT_HEADER), Some("denied"));
    assert_eq!(r.body_str(), ISTIO_DENY_BODY);
    let seen = passed(
        &client::get(port(), "/g/istio-allow", &[("x-ext-authz", "allow")]),
        "x-ext-authz: allow",
    );
    assert_eq!(seen.headers_all(ISTIO_RESULT_HEADER), vec!["allowed"]);
    assert_eq!(f.upstream.count("/g/istio-deny"), 0);
}
