//! The External filter over HTTP (Emissary `AuthService` / AES `External`, `proto:
//! http`) end to end: what the auth service receives, how its answer is applied
//! (allow, deny, error), `include_body`, the Istio ext-authz sample of the kgateway
//! guide, chains, two instances, and routes that switch Portcullis off.
//!
//! One Envoy for the file. The auth service is a [`ScriptedServer`] answering 200
//! unless a test scripts its check path (`path_prefix` + the request's path), so
//! every test uses paths of its own and the tests run in parallel. The upstream is
//! a [`ScriptedServer`] echoing what reached it, so a test can also count the
//! requests that reached it (and see request heads whose body never arrived).

mod common;

use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::Duration;

use common::{default_body, show};
use portcullis_testbed::authz::{istio_ext_authz_http, ISTIO_DENY_BODY, ISTIO_RESULT_HEADER};
use portcullis_testbed::client::{self, Response};
use portcullis_testbed::config::WASM_FILTER_NAME;
use portcullis_testbed::servers::{echo_json, Reply, Request, ScriptedServer};
use portcullis_testbed::{Echoed, Envoy, EnvoyConfig};
use serde_json::{json, Value};

struct Fixture {
    envoy: Envoy,
    upstream: ScriptedServer,
    auth: ScriptedServer,
    _down: ScriptedServer,
    _istio: ScriptedServer,
}

/// A port nothing listens on (bound, then released).
fn unused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn ext(prefix: &str, extra: Value) -> Value {
    let mut spec = json!({ "auth_service": "http://auth.test:3000", "path_prefix": prefix, "timeout_ms": 1000 });
    if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
        s.extend(e);
    }
    spec
}

fn rule(path: &str, filters: Value) -> Value {
    json!({ "host": "*", "path": path, "filters": filters })
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let upstream = ScriptedServer::start();
        upstream.set_default_fn(|r| Reply::json(200, &echo_json(r)));
        let auth = ScriptedServer::start();
        auth.set_default(Reply::new(200));
        let down = ScriptedServer::start();
        down.set_down(true);
        let istio = ScriptedServer::start();
        istio.set_default_fn(istio_ext_authz_http);
        let clusters = json!({
            "auth.test:3000": "authsvc", "down.test": "downsvc",
            "refused.test": "refused", "istio.test:8000": "istio"
        });
        let gateway = json!({
            "clusters": clusters,
            "filters": [
                { "name": "ext", "External": ext("/ext-check", json!({
                    "allowed_request_headers": ["X-Allowed-In", "X-EXT-AUTHZ"],
                    "allowed_authorization_headers": ["X-Auth-User"],
                    "add_auth_headers": { "X-Added": "by-portcullis" },
                    "add_linkerd_headers": true
                })) },
                { "name": "e503", "External": ext("/e503", json!({ "timeout_ms": 500, "status_on_error": { "code": 503 } })) },
                { "name": "edef", "External": ext("/edef", json!({ "timeout_ms": 500 })) },
                { "name": "eopen", "External": ext("/eopen", json!({ "timeout_ms": 500, "failure_mode_allow": true })) },
                { "name": "down", "External": { "auth_service": "http://down.test" } },
                { "name": "down-open", "External": { "auth_service": "http://down.test", "failure_mode_allow": true } },
                { "name": "refused", "External": { "auth_service": "http://refused.test", "status_on_error": { "code": 503 } } },
                { "name": "unknown", "External": { "auth_service": "http://nocluster.test", "status_on_error": { "code": 504 } } },
                { "name": "unknown-open", "External": { "auth_service": "http://nocluster.test", "failure_mode_allow": true } },
                { "name": "body", "External": ext("/ebody", json!({
                    "include_body": { "max_bytes": 16, "allow_partial": true },
                    "allowed_authorization_headers": ["X-Auth-User"]
                })) },
                { "name": "strict", "External": ext("/estrict", json!({
                    "include_body": { "max_bytes": 16, "allow_partial": false }
                })) },
                { "name": "istio", "External": {
                    "auth_service": "http://istio.test:8000",
                    "allowed_request_headers": ["x-ext-authz"],
                    "allowed_authorization_headers": ["x-ext-authz-check-result"]
                } },
                { "name": "first", "External": ext("/first", json!({ "allowed_authorization_headers": ["X-First"] })) },
                { "name": "second", "External": ext("/second", json!({ "allowed_authorization_headers": ["X-Second"] })) },
                { "name": "gw", "External": ext("/gw", json!({ "allowed_authorization_headers": ["X-Gw"] })) }
            ],
            "rules": [
                rule("/ext/*", json!([{ "name": "ext" }])),
                rule("/e503/*", json!([{ "name": "e503" }])),
                rule("/edef/*", json!([{ "name": "edef" }])),
                rule("/eopen/*", json!([{ "name": "eopen" }])),
                rule("/down/*", json!([{ "name": "down" }])),
                rule("/down-open/*", json!([{ "name": "down-open" }])),
                rule("/refused/*", json!([{ "name": "refused" }])),
                rule("/unknown/*", json!([{ "name": "unknown" }])),
                rule("/unknown-open/*", json!([{ "name": "unknown-open" }])),
                rule("/body/*", json!([{ "name": "body" }])),
                rule("/strict/*", json!([{ "name": "strict" }])),
                rule("/istio/*", json!([{ "name": "istio" }])),
                rule("/chain/*", json!([{ "name": "first" }, { "name": "second" }])),
                rule("/chain-continue/*", json!([{ "name": "first", "onDeny": "continue" }, { "name": "second" }])),
                rule("/chain-break/*", json!([{ "name": "first", "onAllow": "break" }, { "name": "second" }])),
                rule("/bypass/*", json!([{ "name": "ext" }])),
                rule("/disabled/*", json!([{ "name": "ext" }])),
                rule("/two/*", json!([{ "name": "gw" }]))
            ]
        });
        let route_level = json!({
            "clusters": clusters,
            "filters": [
                { "name": "route", "External": ext("/route", json!({ "allowed_authorization_headers": ["X-Route"] })) }
            ],
            "rules": [ rule("/two/*", json!([{ "name": "route" }])) ]
        });
        let cfg = EnvoyConfig::new(upstream.port())
            .plugin(gateway)
            .plugin_instance("portcullis-route", "vm-route", None, route_level)
            .bypass_route("/bypass/")
            .disabled_route("/disabled/", &[WASM_FILTER_NAME, "portcullis-route"])
            .cluster("authsvc", auth.port())
            .cluster("downsvc", down.port())
            .cluster("refused", unused_port())
            .cluster("istio", istio.port())
            .build();
        Fixture {
            envoy: Envoy::start(&cfg),
            upstream,
            auth,
            _down: down,
            _istio: istio,
        }
    })
}

fn port() -> u16 {
    fx().envoy.port("main")
}

/// The one check the auth service received for `auth_path`.
fn one_check(auth_path: &str) -> Request {
    let checks = fx().auth.requests_to(auth_path);
    assert_eq!(
        checks.len(),
        1,
        "checks of {auth_path}: {:?}",
        fx().auth.requests()
    );
    checks.into_iter().next().expect("one")
}

/// The request reached the upstream: what it saw.
fn passed(r: &Response, ctx: &str) -> Echoed {
    common::passed(&fx().envoy, r, ctx)
}

/// Complete requests the upstream received for `path`.
fn upstream_count(path: &str) -> usize {
    fx().upstream.count(path)
}

// ---- the check request ------------------------------------------------------

#[test]
fn check_request_has_the_method_prefixed_path_and_only_allowed_headers() {
    fx();
    let r = client::request(
        port(),
        "POST",
        "/ext/shape/a%20b?x=1&y=two",
        &[
            ("Authorization", "Bearer t0k3n"),
            ("Cookie", "session=abc"),
            ("From", "user@example.com"),
            ("Proxy-Authorization", "Basic cHJveHk="),
            ("User-Agent", "portcullis-test/1"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Host", "shop.example.com"),
            ("X-Forwarded-Proto", "http"),
            ("x-allowed-in", "yes"),
            ("X-Ext-Authz", "allow"),
            ("X-Secret", "do-not-send"),
            ("X-Added", "client-value"),
            ("Accept", "text/html"),
        ],
        b"the body",
    );
    let seen = passed(&r, "allowed by default");
    assert_eq!(seen.body, "the body", "the upstream gets the body");
    let check = one_check("/ext-check/ext/shape/a%20b");
    assert_eq!(check.method, "POST");
    assert_eq!(check.path, "/ext-check/ext/shape/a%20b?x=1&y=two");
    assert!(check.body.is_empty(), "no body without include_body");
    assert_eq!(check.header("content-length"), Some("0"));
    for (name, value) in [
        ("authorization", "Bearer t0k3n"),
        ("cookie", "session=abc"),
        ("from", "user@example.com"),
        ("proxy-authorization", "Basic cHJveHk="),
        ("user-agent", "portcullis-test/1"),
        ("x-forwarded-host", "shop.example.com"),
        ("x-forwarded-proto", "http"),
        ("x-allowed-in", "yes"),
        ("x-ext-authz", "allow"),
        // add_auth_headers replaces the client's value.
        ("x-added", "by-portcullis"),
        // add_linkerd_headers: the auth service's host and port.
        ("l5d-dst-override", "auth.test:3000"),
        // The callout's :authority is the client's, as Envoy's ext_authz.
        ("host", "localhost"),
    ] {
        assert_eq!(
            check.headers_all(name),
            vec![value],
            "{name}: {:?}",
            check.headers
        );
    }
    // X-Forwarded-For: the client's value (Envoy may append the peer address).
    let xff = check.header("x-forwarded-for").unwrap_or_default();
    assert!(xff.starts_with("203.0.113.7"), "{:?}", check.headers);
    for absent in ["x-secret", "accept", "transfer-encoding"] {
        assert!(
            check.header(absent).is_none(),
            "{absent} must not reach the auth service: {:?}",
            check.headers
        );
    }
    // Nothing else of the client's: whatever else is there, Envoy added.
    let expected = [
        "authorization",
        "cookie",
        "from",
        "proxy-authorization",
        "user-agent",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-allowed-in",
        "x-ext-authz",
        "x-added",
        "l5d-dst-override",
        "host",
        "content-length",
    ];
    let extra: Vec<&(String, String)> = check
        .headers
        .iter()
        .filter(|(n, _)| !expected.contains(&n.as_str()) && !n.starts_with("x-envoy-"))
        .collect();
    assert!(
        extra.is_empty(),
        "unexpected headers at the auth service: {extra:?}"
    );
}

#[test]
fn a_get_without_query_is_checked_as_is() {
    let f = fx();
    let r = client::get(port(), "/ext/plain", &[]);
    passed(&r, "allowed by default");
    let check = one_check("/ext-check/ext/plain");
    assert_eq!(check.method, "GET");
    assert_eq!(check.path, "/ext-check/ext/plain");
    assert!(f.auth.count("/ext-check/ext/plain") == 1);
}

// ---- 200 allows -------------------------------------------------------------

#[test]
fn ok_copies_the_authorization_headers_upstream_replacing_the_clients() {
    let f = fx();
    f.auth.set(
        "/ext-check/ext/allow-copy",
        Reply::new(200)
            .header("Authorization", "Bearer from-auth")
            .header("Location", "/somewhere")
            .header("Proxy-Authenticate", "Basic realm=p")
            .header("Set-Cookie", "a=1")
            .header("WWW-Authenticate", "Bearer realm=w")
            .header("X-Auth-User", "alice")
            .header("X-Other", "not-copied")
            .header("content-type", "text/plain")
            .body("ignored body"),
    );
    let r = client::get(
        port(),
        "/ext/allow-copy",
        &[
            ("Authorization", "Bearer from-client"),
            ("X-Auth-User", "mallory"),
            ("X-Keep", "kept"),
        ],
    );
    let seen = passed(&r, "auth service answered 200");
    for (name, value) in [
        ("authorization", "Bearer from-auth"),
        ("location", "/somewhere"),
        ("proxy-authenticate", "Basic realm=p"),
        ("set-cookie", "a=1"),
        ("www-authenticate", "Bearer realm=w"),
        ("x-auth-user", "alice"),
        ("x-keep", "kept"),
    ] {
        assert_eq!(
            seen.headers_all(name),
            vec![value],
            "{name} upstream: {:?}",
            seen.headers
        );
    }
    assert!(seen.header("x-other").is_none(), "{:?}", seen.headers);
    assert_eq!(seen.body, "", "the auth service's body goes nowhere");
    // Nothing of the auth service's answer reaches the client on a 200.
    for name in ["x-other", "set-cookie", "x-auth-user", "www-authenticate"] {
        assert!(
            r.header(name).is_none(),
            "{name} at the client: {}",
            show(&r)
        );
    }
}

// ---- other statuses deny ----------------------------------------------------

#[test]
fn any_other_status_denies_with_its_status_body_and_allowed_headers() {
    let f = fx();
    for status in [201u16, 302, 401, 403] {
        let path = format!("/ext/deny-{status}");
        f.auth.set(
            &format!("/ext-check{path}"),
            Reply::new(status)
                .header("Location", "https://login.example.com/")
                .header("WWW-Authenticate", "Bearer realm=\"x\"")
                .header("Set-Cookie", "tried=1")
                .header("X-Auth-User", "nobody")
                .header("X-Other", "not-copied")
                .header("content-type", "text/html")
                .body(format!("<p>denied {status}</p>")),
        );
        let r = client::get(port(), &path, &[]);
        assert_eq!(r.status, status, "{path}: {}", show(&r));
        assert_eq!(r.body_str(), format!("<p>denied {status}</p>"), "{path}");
        assert_eq!(r.header("location"), Some("https://login.example.com/"));
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"x\""));
        assert_eq!(r.header("set-cookie"), Some("tried=1"));
        assert_eq!(r.header("x-auth-user"), Some("nobody"));
        assert!(r.header("x-other").is_none(), "{path}: {}", show(&r));
        assert_eq!(upstream_count(&path), 0, "{path}: the upstream was called");
    }
}

#[test]
fn a_denial_without_content_type_is_labelled_text_plain() {
    let f = fx();
    f.auth
        .set("/ext-check/ext/deny-plain", Reply::new(403).body("no"));
    let r = client::get(port(), "/ext/deny-plain", &[]);
    assert_eq!(r.status, 403, "{}", show(&r));
    assert_eq!(r.body_str(), "no");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(upstream_count("/ext/deny-plain"), 0);
}

// ---- errors -----------------------------------------------------------------

fn assert_status_on_error(r: &Response, status: u16, path: &str) {
    assert_eq!(r.status, status, "{path}: {}", show(r));
    assert_eq!(
        r.body_str(),
        default_body("the authorization service could not be reached", status),
        "{path}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
    assert_eq!(upstream_count(path), 0, "{path}: the upstream was called");
}

fn assert_failure_mode_allowed(r: &Response, path: &str) {
    let seen = passed(r, path);
    assert_eq!(
        seen.headers_all("x-envoy-auth-failure-mode-allowed"),
        vec!["true"],
        "{path}: {:?}",
        seen.headers
    );
}

#[test]
fn a_5xx_answer_is_an_error() {
    let f = fx();
    for (prefix, status) in [("/e503", 500u16), ("/edef", 502), ("/eopen", 503)] {
        let path = format!("{prefix}/5xx");
        f.auth.set(
            &format!("{prefix}{path}"),
            Reply::new(status)
                .header("WWW-Authenticate", "Bearer realm=\"err\"")
                .body("upstream auth broke"),
        );
    }
    assert_status_on_error(&client::get(port(), "/e503/5xx", &[]), 503, "/e503/5xx");
    // status_on_error defaults to 403.
    assert_status_on_error(&client::get(port(), "/edef/5xx", &[]), 403, "/edef/5xx");
    assert_failure_mode_allowed(&client::get(port(), "/eopen/5xx", &[]), "/eopen/5xx");
}

#[test]
fn a_slow_auth_service_times_out() {
    let f = fx();
    for prefix in ["/e503", "/eopen"] {
        f.auth.set(
            &format!("{prefix}{prefix}/slow"),
            Reply::new(200).delay(Duration::from_millis(1500)),
        );
    }
    let started = std::time::Instant::now();
    assert_status_on_error(&client::get(port(), "/e503/slow", &[]), 503, "/e503/slow");
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "timeout_ms 500 not honoured: {:?}",
        started.elapsed()
    );
    assert_failure_mode_allowed(&client::get(port(), "/eopen/slow", &[]), "/eopen/slow");
}

#[test]
fn a_closed_connection_or_refused_port_is_an_error() {
    // down.test accepts and closes at once.
    assert_status_on_error(&client::get(port(), "/down/x", &[]), 403, "/down/x");
    assert_failure_mode_allowed(&client::get(port(), "/down-open/x", &[]), "/down-open/x");
    // refused.test: nothing listens on the cluster's port.
    assert_status_on_error(&client::get(port(), "/refused/x", &[]), 503, "/refused/x");
}

#[test]
fn an_undefined_cluster_is_an_error_and_logged() {
    let f = fx();
    assert_status_on_error(&client::get(port(), "/unknown/x", &[]), 504, "/unknown/x");
    assert!(
        f.envoy.wait_for_log(
            "Envoy refused the callout to cluster \"nocluster.test\"",
            Duration::from_secs(5)
        ),
        "log:\n{}",
        f.envoy.log_tail(30)
    );
    assert_failure_mode_allowed(
        &client::get(port(), "/unknown-open/x", &[]),
        "/unknown-open/x",
    );
}

#[test]
fn an_oversized_answer_is_an_error() {
    let f = fx();
    // A body over 64 KiB.
    f.auth.set(
        "/e503/e503/huge-body",
        Reply::new(403).body(vec![b'x'; 70 * 1024]),
    );
    assert_status_on_error(
        &client::get(port(), "/e503/huge-body", &[]),
        503,
        "/e503/huge-body",
    );
    // More than 128 headers.
    let mut many = Reply::new(200);
    for i in 0..150 {
        many = many.header(&format!("x-h{i}"), "v");
    }
    f.auth.set("/e503/e503/many-headers", many);
    assert_status_on_error(
        &client::get(port(), "/e503/many-headers", &[]),
        503,
        "/e503/many-headers",
    );
    // An answer that is not HTTP at all is the closed-connection case above.
}

// ---- include_body -----------------------------------------------------------

#[test]
fn include_body_sends_the_whole_small_body() {
    let f = fx();
    let r = client::request(
        port(),
        "POST",
        "/body/small",
        &[("Content-Type", "text/plain")],
        b"hello",
    );
    let seen = passed(&r, "small body");
    assert_eq!(seen.body, "hello", "the upstream gets the whole body");
    let check = one_check("/ebody/body/small");
    assert_eq!(check.body_str(), "hello");
    assert_eq!(check.header("x-envoy-auth-partial-body"), Some("false"));
    assert_eq!(check.header("content-length"), Some("5"));
    assert_eq!(f.auth.count("/ebody/body/small"), 1);
}

#[test]
fn include_body_with_allow_partial_sends_the_first_max_bytes() {
    let body = b"0123456789abcdefghijklmnopqrstuvwxyzABCD"; // 40 bytes
    let r = client::request(port(), "POST", "/body/big", &[], body);
    let seen = passed(&r, "big body, allow_partial");
    assert_eq!(
        seen.body.as_bytes(),
        body,
        "the upstream gets the whole body"
    );
    let check = one_check("/ebody/body/big");
    assert_eq!(check.body_str(), "0123456789abcdef");
    assert_eq!(check.header("x-envoy-auth-partial-body"), Some("true"));
}

#[test]
fn include_body_without_allow_partial_refuses_a_larger_body_with_413() {
    let f = fx();
    let r = client::request(port(), "POST", "/strict/big", &[], &[b'z'; 40]);
    assert_eq!(r.status, 413, "{}", show(&r));
    assert_eq!(r.body_str(), default_body("Payload Too Large", 413));
    assert_eq!(f.auth.count("/estrict/strict/big"), 0, "no check is made");
    assert_eq!(
        upstream_count("/strict/big"),
        0,
        "no complete request upstream"
    );
    // A body within max_bytes passes.
    let r = client::request(port(), "POST", "/strict/small", &[], b"0123456789abcdef");
    let seen = passed(&r, "16 bytes, max_bytes 16");
    assert_eq!(seen.body, "0123456789abcdef");
    let check = one_check("/estrict/strict/small");
    assert_eq!(check.body_str(), "0123456789abcdef");
    assert_eq!(check.header("x-envoy-auth-partial-body"), Some("false"));
}

#[test]
fn include_body_without_a_body_still_marks_it_complete() {
    let f = fx();
    f.auth.set(
        "/ebody/body/get",
        Reply::new(200).header("X-Auth-User", "carol"),
    );
    let r = client::get(port(), "/body/get", &[]);
    let seen = passed(&r, "GET, no body");
    // Without a body nothing waits, so the answer's headers reach the upstream.
    assert_eq!(seen.headers_all("x-auth-user"), vec!["carol"]);
    let check = one_check("/ebody/body/get");
    assert_eq!(check.header("x-envoy-auth-partial-body"), Some("false"));
    assert_eq!(check.header("content-length"), Some("0"));
    assert!(f.auth.count("/ebody/body/get") == 1);
}

/// The Proxy-Wasm limitation (see docs/external.md): with a body, the headers go
/// upstream before the check decides, so a denial resets a request the upstream
/// already started.
#[test]
fn include_body_denial_resets_a_request_the_upstream_already_started() {
    let f = fx();
    f.auth.set(
        "/ebody/body/denied",
        Reply::new(403).body("no").delay(Duration::from_millis(300)),
    );
    let r = client::request(port(), "POST", "/body/denied", &[], b"secret payload");
    assert_eq!(r.status, 403, "{}", show(&r));
    assert_eq!(r.body_str(), "no");
    assert_eq!(
        upstream_count("/body/denied"),
        0,
        "no complete request upstream"
    );
    std::thread::sleep(Duration::from_millis(200));
    let heads = f.upstream.heads_to("/body/denied");
    assert_eq!(
        heads.len(),
        1,
        "the upstream received the request head before the denial: {heads:?}"
    );
    assert_eq!(heads[0].header("content-length"), Some("14"));
}

/// With `include_body` and a body, the 200's headers cannot be added to request
/// headers that already went upstream. Its own Envoy: applying them used to
/// panic the plugin (`set_map_value` on a map already sent), taking every later
/// request of the VM down with it.
#[test]
fn include_body_ok_headers_cannot_reach_the_upstream() {
    let upstream = ScriptedServer::start();
    upstream.set_default_fn(|r| Reply::json(200, &echo_json(r)));
    let auth = ScriptedServer::start();
    auth.set(
        "/body/allow-with-header",
        Reply::new(200).header("X-Auth-User", "dave"),
    );
    let plugin = json!({
        "clusters": { "auth.test": "authsvc" },
        "filters": [ { "name": "body", "External": {
            "auth_service": "http://auth.test",
            "include_body": { "max_bytes": 16, "allow_partial": true },
            "allowed_authorization_headers": ["X-Auth-User"]
        } } ],
        "rules": [ rule("/body/*", json!([{ "name": "body" }])) ]
    });
    let envoy = Envoy::start(
        &EnvoyConfig::new(upstream.port())
            .plugin(plugin)
            .cluster("authsvc", auth.port())
            .build(),
    );
    let port = envoy.port("main");
    // Twice: the plugin must survive the first.
    for round in 0..2 {
        // A client copy of a header the answer would set never passes either.
        let r = client::request(
            port,
            "POST",
            "/body/allow-with-header",
            &[("X-Auth-User", "spoof")],
            b"payload",
        );
        let seen = common::passed(&envoy, &r, &format!("allowed with a body, round {round}"));
        assert_eq!(seen.body, "payload");
        assert!(
            seen.header("x-auth-user").is_none(),
            "with include_body and a body, the 200's headers cannot reach the upstream \
             (docs/external.md); if this changed, update the docs: {:?}",
            seen.headers
        );
    }
}

// ---- the Istio ext-authz sample (kgateway guide) -----------------------------

#[test]
fn istio_sample_denies_without_the_header() {
    let r = client::get(port(), "/istio/headers", &[("Host", "www.example.com")]);
    assert_eq!(r.status, 403, "{}", show(&r));
    assert_eq!(r.header(ISTIO_RESULT_HEADER), Some("denied"));
    assert_eq!(r.body_str(), ISTIO_DENY_BODY);
    // Its own Content-Type is not an allowed header: the local reply labels the
    // body text/plain, as in the kgateway guide's output (and as native ext_authz).
    assert_eq!(r.header("content-type"), Some("text/plain"));
    // Not in allowed_authorization_headers (kgateway's gRPC setup passes it on).
    assert!(
        r.header("x-ext-authz-check-received").is_none(),
        "{}",
        show(&r)
    );
    assert_eq!(upstream_count("/istio/headers"), 0);
}

#[test]
fn istio_sample_allows_with_the_header() {
    let r = client::get(
        port(),
        "/istio/allowed",
        &[("Host", "www.example.com"), ("x-ext-authz", "allow")],
    );
    let seen = passed(&r, "x-ext-authz: allow");
    assert_eq!(seen.headers_all(ISTIO_RESULT_HEADER), vec!["allowed"]);
    assert_eq!(seen.headers_all("x-ext-authz"), vec!["allow"]);
    assert!(seen.header("x-ext-authz-check-received").is_none());
    // Any other value is refused.
    let r = client::get(port(), "/istio/other", &[("x-ext-authz", "deny")]);
    assert_eq!(r.status, 403, "{}", show(&r));
}

// ---- composition ------------------------------------------------------------

#[test]
fn chained_filters_both_pass_and_their_headers_accumulate() {
    let f = fx();
    f.auth
        .set("/first/chain/ok", Reply::new(200).header("X-First", "1"));
    f.auth
        .set("/second/chain/ok", Reply::new(200).header("X-Second", "2"));
    let seen = passed(&client::get(port(), "/chain/ok", &[]), "both allow");
    assert_eq!(seen.headers_all("x-first"), vec!["1"]);
    assert_eq!(seen.headers_all("x-second"), vec!["2"]);
    // The second filter's check already carries the first's changes? Only
    // allowed request headers are sent, and X-First is not one.
    assert_eq!(f.auth.count("/second/chain/ok"), 1);

    // The first denies (onDeny break): the second is never asked.
    f.auth
        .set("/first/chain/deny", Reply::new(401).body("first says no"));
    let r = client::get(port(), "/chain/deny", &[]);
    assert_eq!(r.status, 401, "{}", show(&r));
    assert_eq!(r.body_str(), "first says no");
    assert_eq!(f.auth.count("/second/chain/deny"), 0);
    assert_eq!(upstream_count("/chain/deny"), 0);
}

#[test]
fn on_deny_continue_and_on_allow_break() {
    let f = fx();
    // onDeny continue: the first's denial is passed over, the second decides.
    f.auth
        .set("/first/chain-continue/a", Reply::new(403).body("first"));
    f.auth.set(
        "/second/chain-continue/a",
        Reply::new(200).header("X-Second", "ok"),
    );
    let seen = passed(
        &client::get(port(), "/chain-continue/a", &[]),
        "first denies, continue, second allows",
    );
    assert_eq!(seen.headers_all("x-second"), vec!["ok"]);
    f.auth
        .set("/first/chain-continue/b", Reply::new(403).body("first"));
    f.auth
        .set("/second/chain-continue/b", Reply::new(401).body("second"));
    let r = client::get(port(), "/chain-continue/b", &[]);
    assert_eq!(r.status, 401, "the second's denial: {}", show(&r));
    assert_eq!(r.body_str(), "second");

    // onAllow break: the first's allow ends the chain.
    f.auth.set(
        "/first/chain-break/a",
        Reply::new(200).header("X-First", "done"),
    );
    f.auth.set("/second/chain-break/a", Reply::new(403));
    let seen = passed(
        &client::get(port(), "/chain-break/a", &[]),
        "first allows, break",
    );
    assert_eq!(seen.headers_all("x-first"), vec!["done"]);
    assert_eq!(f.auth.count("/second/chain-break/a"), 0);
}

#[test]
fn gateway_and_route_instances_must_both_pass() {
    let f = fx();
    f.auth
        .set("/gw/two/ok", Reply::new(200).header("X-Gw", "g"));
    f.auth
        .set("/route/two/ok", Reply::new(200).header("X-Route", "r"));
    let seen = passed(&client::get(port(), "/two/ok", &[]), "both instances allow");
    assert_eq!(seen.headers_all("x-gw"), vec!["g"]);
    assert_eq!(seen.headers_all("x-route"), vec!["r"]);

    f.auth
        .set("/route/two/route-denies", Reply::new(403).body("route"));
    let r = client::get(port(), "/two/route-denies", &[]);
    assert_eq!(r.status, 403, "{}", show(&r));
    assert_eq!(r.body_str(), "route");
    assert_eq!(f.auth.count("/gw/two/route-denies"), 1);

    f.auth.set("/gw/two/gw-denies", Reply::new(401).body("gw"));
    let r = client::get(port(), "/two/gw-denies", &[]);
    assert_eq!(r.status, 401, "{}", show(&r));
    assert_eq!(r.body_str(), "gw");
    assert_eq!(
        f.auth.count("/route/two/gw-denies"),
        0,
        "route instance not reached"
    );
    assert_eq!(upstream_count("/two/gw-denies"), 0);
}

#[test]
fn bypass_auth_and_disabled_routes_make_no_callout() {
    let f = fx();
    f.auth.set("/ext-check/bypass/x", Reply::new(403));
    f.auth.set("/ext-check/disabled/x", Reply::new(403));
    let seen = passed(&client::get(port(), "/bypass/x", &[]), "bypass_auth route");
    assert_eq!(seen.path, "/bypass/x");
    let seen = passed(
        &client::get(port(), "/disabled/x", &[]),
        "FilterConfig disabled",
    );
    assert_eq!(seen.path, "/disabled/x");
    assert_eq!(f.auth.count("/ext-check/bypass/x"), 0);
    assert_eq!(f.auth.count("/ext-check/disabled/x"), 0);
    // The same rule on a normal route calls out.
    let r = client::get(port(), "/ext/bypass/x", &[]);
    passed(&r, "normal route, allowed by default");
    assert_eq!(f.auth.count("/ext-check/ext/bypass/x"), 1);
}
