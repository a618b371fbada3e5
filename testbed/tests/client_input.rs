//! Every request handled as the client sent it (docs/reliability.md "Client
//! input"): header values that are not UTF-8 (obs-text) reach the upstream and
//! the auth service byte for byte, whether they pass untouched, through a
//! template, or into an External check (HTTP and gRPC); the HTTP check carries
//! the client's Host.
//!
//! One Envoy for the file; each test uses paths of its own. Requests are written
//! as raw bytes so the exact input is on the wire.

mod common;

use std::sync::OnceLock;

use common::*;
use portcullis_testbed::authz::GrpcAuthServer;
use portcullis_testbed::client::{self, Response};
use portcullis_testbed::servers::{echo_json, Reply, ScriptedServer};
use portcullis_testbed::{Echoed, Envoy, EnvoyConfig};
use serde_json::json;

struct Fixture {
    envoy: Envoy,
    auth: ScriptedServer,
    grpc: GrpcAuthServer,
    _upstream: ScriptedServer,
}

/// `User-Agent` with obs-text (GBK bytes a real crawler sent) and valid UTF-8.
const UA: &[u8] = b"Mozilla/5.0 (compatible; Spider/1.0; \xa1\xb1; caf\xc3\xa9)";
/// A `Cookie` whose value is Latin-1.
const COOKIE: &[u8] = b"theme=\xe9t\xe9; id=42";

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let upstream = ScriptedServer::start();
        upstream.set_default_fn(|r| Reply::json(200, &echo_json(r)));
        let auth = ScriptedServer::start();
        auth.set_default(Reply::new(200));
        // An auth service that sends users to a login page of the site they
        // asked for (Authelia, oauth2-proxy's /oauth2/auth behind a redirect).
        auth.set_fn("/check/ext/login", |r| {
            let site = r.header("host").unwrap_or("?").to_string();
            Reply::new(302).header("Location", &format!("https://{site}/sign-in?rd=/ext/login"))
        });
        let grpc = GrpcAuthServer::start();
        let plugin = json!({
            "clusters": { "auth.test:3000": "authsvc", "grpc-auth.test:9000": "grpcauth" },
            "filters": [
                { "name": "jwt", "JWT": {
                    "jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE,
                    "injectRequestHeaders": [
                        { "name": "X-Client-UA", "value": "{{ .httpRequestHeader.Get \"User-Agent\" }}" },
                        { "name": "X-Sub", "value": "{{ .token.Claims.sub }}" }
                    ]
                } },
                { "name": "ext", "External": { "auth_service": "http://auth.test:3000",
                                               "path_prefix": "/check", "timeout_ms": 2000 } },
                { "name": "grpc", "External": { "auth_service": "grpc-auth.test:9000", "proto": "grpc",
                                                "protocol_version": "v3", "timeout_ms": 2000 } }
            ],
            "rules": [
                { "host": "*", "path": "/jwt/*", "filters": [ { "name": "jwt" } ] },
                { "host": "*", "path": "/ext/*", "filters": [ { "name": "ext" } ] },
                { "host": "*", "path": "/grpc/*", "filters": [ { "name": "grpc" } ] }
            ]
        });
        let cfg = EnvoyConfig::new(upstream.port())
            .plugin(plugin)
            .cluster("authsvc", auth.port())
            .grpc_cluster("grpcauth", grpc.port())
            .build();
        Fixture {
            envoy: Envoy::start(&cfg),
            auth,
            grpc,
            _upstream: upstream,
        }
    })
}

fn port() -> u16 {
    fx().envoy.port("main")
}

/// Sends `GET path` with `headers` written byte for byte.
fn raw_get(path: &str, headers: &[(&str, &[u8])]) -> Response {
    let mut bytes = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n").into_bytes();
    for (name, value) in headers {
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"Connection: close\r\n\r\n");
    client::raw(port(), &bytes)
}

fn echoed(r: &Response) -> Echoed {
    assert_eq!(r.status, 200, "{}", show(r));
    Echoed::parse(&r.body)
}

#[test]
fn obs_text_passes_untouched_and_through_a_template_byte_for_byte() {
    let auth = format!("Bearer {}", token("RS256", json!({})));
    let r = raw_get(
        "/jwt/bytes",
        &[
            ("Authorization", auth.as_bytes()),
            ("User-Agent", UA),
            ("Cookie", COOKIE),
        ],
    );
    let up = echoed(&r);
    assert_eq!(up.header_bytes("user-agent"), Some(UA));
    assert_eq!(up.header_bytes("cookie"), Some(COOKIE));
    assert_eq!(
        up.header_bytes("x-client-ua"),
        Some(UA),
        "the template's output"
    );
    assert_eq!(up.header("x-sub"), Some("user-1"));
}

#[test]
fn obs_text_reaches_the_http_auth_service_and_the_upstream_byte_for_byte() {
    let authz: &[u8] = b"Basic \xc0\xff";
    let r = raw_get(
        "/ext/bytes",
        &[
            ("Authorization", authz),
            ("User-Agent", UA),
            ("Cookie", COOKIE),
        ],
    );
    let up = echoed(&r);
    let checks = fx().auth.requests_to("/check/ext/bytes");
    assert_eq!(checks.len(), 1, "{:?}", fx().auth.requests());
    let check = &checks[0];
    assert_eq!(check.header_bytes("user-agent"), Some(UA));
    assert_eq!(check.header_bytes("cookie"), Some(COOKIE));
    assert_eq!(check.header_bytes("authorization"), Some(authz));
    assert_eq!(up.header_bytes("user-agent"), Some(UA));
    assert_eq!(up.header_bytes("cookie"), Some(COOKIE));
    assert_eq!(up.header_bytes("authorization"), Some(authz));
}

#[test]
fn obs_text_reaches_the_grpc_auth_service_in_header_map_raw_values() {
    let r = raw_get(
        "/grpc/bytes",
        &[
            ("User-Agent", UA),
            ("Cookie", COOKIE),
            ("X-Plain", b"ascii"),
        ],
    );
    let up = echoed(&r);
    assert_eq!(up.header_bytes("user-agent"), Some(UA));
    let checks = fx().grpc.checks_of("/grpc/bytes");
    assert_eq!(checks.len(), 1);
    let http = checks[0].http();
    let map = http
        .header_map
        .as_ref()
        .expect("header_map is set when a value is not UTF-8");
    let raw = |name: &str| {
        map.headers
            .iter()
            .find(|h| h.key == name)
            .map(|h| h.raw_value.clone())
    };
    assert_eq!(raw("user-agent").as_deref(), Some(UA));
    assert_eq!(raw("cookie").as_deref(), Some(COOKIE));
    assert_eq!(raw("x-plain").as_deref(), Some(&b"ascii"[..]));
    assert_eq!(raw(":path").as_deref(), Some(&b"/grpc/bytes"[..]));
    // `headers` (proto strings) still names every header.
    assert_eq!(
        http.headers.get("x-plain").map(String::as_str),
        Some("ascii")
    );
    assert!(http.headers.contains_key("user-agent"));
}

#[test]
fn utf8_only_requests_send_no_header_map() {
    let r = raw_get("/grpc/plain", &[("User-Agent", "café".as_bytes())]);
    echoed(&r);
    let checks = fx().grpc.checks_of("/grpc/plain");
    assert_eq!(checks.len(), 1);
    let http = checks[0].http();
    assert!(http.header_map.is_none());
    assert_eq!(
        http.headers.get("user-agent").map(String::as_str),
        Some("café")
    );
}

#[test]
fn the_http_check_carries_the_clients_host_so_a_login_redirect_names_the_site() {
    let r = client::get(port(), "/ext/login", &[("Host", "shop.example.com")]);
    assert_eq!(r.status, 302, "{}", show(&r));
    assert_eq!(
        r.header("location"),
        Some("https://shop.example.com/sign-in?rd=/ext/login")
    );
    let checks = fx().auth.requests_to("/check/ext/login");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].header("host"), Some("shop.example.com"));
}
