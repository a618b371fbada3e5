//! An upstream that answers before it has read the request body (an early 404,
//! a redirect, any fast service), for requests whose check reads the body:
//! External filters with `include_body`, and the OAuth2 logout form (`_xsrf` in
//! the body). A Wasm filter cannot read a body while it holds the headers, so
//! the headers go upstream first (docs/external.md). The upstream's answer must
//! still never reach the client unless the check allows the request:
//!
//! - the body arrived before the upstream answered (a request sent in one
//!   write, the usual case): the answer is held until the check decides, then
//!   passed (allowed) or replaced by the denial. The auth service here answers
//!   only once Envoy's log says the upstream's answer is held, so the order is
//!   the one under test;
//! - the body comes after the upstream's complete answer (the head, then the
//!   body once the answer is held): Envoy drops request body after a complete
//!   answer, so no check can be made and the request is refused
//!   (`status_on_error`; 403 for the logout form).
//!
//! HTTP/1.1 and HTTP/2 (h2c) downstream.

mod oauth2_common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use oauth2_common::{has_session, origin, session_key, xsrf};
use portcullis_testbed::authz::{denied_response, header_option, ok_response, GrpcAuthServer};
use portcullis_testbed::browserless::{Agent, Url};
use portcullis_testbed::client::{self, Response};
use portcullis_testbed::quirky_idp::{Profile, QuirkyIdp};
use portcullis_testbed::servers::{echo_json, Reply, Request, ScriptedServer};
use portcullis_testbed::{Envoy, EnvoyConfig};
use serde_json::json;

const EARLY_BODY: &str = "the upstream answered without reading the body";
const DENIED_BODY: &str = "denied by the auth service: the body asks for it";
/// What a request whose body came after the upstream's answer gets.
const BODY_LOST: &str = r#"{"message":"the request body could not be checked: the upstream answered before it arrived","status_code":403}"#;
/// How long to wait for Envoy to hold an upstream's answer (an event; long for
/// a loaded CI box).
const HOLD_WAIT: Duration = Duration::from_secs(10);

struct Fixture {
    envoy: Envoy,
    port: u16,
    upstream: ScriptedServer,
    auth: ScriptedServer,
    grpc_auth: GrpcAuthServer,
    idp: QuirkyIdp,
}

/// Envoy's log file, for the auth service that waits on it.
static ENVOY_LOG: OnceLock<PathBuf> = OnceLock::new();

/// Envoy's log line when Portcullis holds the upstream's answer to `path`.
fn hold_line(path: &str) -> String {
    format!("{path}: the upstream answered before the check decided; its answer is held")
}

/// Envoy's log line when the upstream answered `path` before the body came.
fn lost_line(path: &str) -> String {
    format!("{path}: the upstream answered before the request body the check needs arrived")
}

/// Waits until Envoy's log has one of `needles`; which, or None on timeout.
fn wait_for_log_line(needles: &[String]) -> Option<usize> {
    let deadline = Instant::now() + HOLD_WAIT;
    loop {
        let log = ENVOY_LOG
            .get()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        if let Some(i) = needles.iter().position(|n| log.contains(n)) {
            return Some(i);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until Envoy's log says it holds the upstream's answer to `path`.
fn wait_for_hold(path: &str) -> bool {
    wait_for_log_line(&[hold_line(path)]).is_some()
}

/// Waits until the upstream's answer to `path` reached Portcullis (held, or
/// refused for the body it lacks).
fn wait_for_upstream_answer(path: &str) -> bool {
    wait_for_log_line(&[hold_line(path), lost_line(path)]).is_some()
}

/// The auth service: denies a body containing "deny", allows any other. It
/// answers only once the upstream's answer to the request is held (the request
/// came whole, so nothing else orders them).
fn auth_decides(req: &Request) -> Reply {
    if let Some(path) = req.path_only().strip_prefix("/auth") {
        wait_for_hold(path);
    }
    if req.body_str().contains("deny") {
        Reply::text(403, DENIED_BODY).header("x-denied-by", "auth")
    } else {
        Reply::new(200)
    }
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Result<Fixture, String>> = OnceLock::new();
    portcullis_testbed::shared_fixture(&FX, start, "the early-answer fixture")
}

fn start() -> Fixture {
    let upstream = ScriptedServer::start();
    upstream.set_default_fn(|r| Reply::json(200, &echo_json(r)));
    let auth = ScriptedServer::start();
    auth.set_default_fn(auth_decides);
    // The same decisions over gRPC (the checked request's path, once held).
    let grpc_auth = GrpcAuthServer::start();
    grpc_auth.set_default_fn(|check| {
        let http = check
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .cloned()
            .unwrap_or_default();
        wait_for_hold(http.path.split('?').next().unwrap_or(""));
        if http.body.contains("deny") {
            denied_response(
                403,
                vec![header_option("x-denied-by", "auth", None)],
                DENIED_BODY,
            )
        } else {
            ok_response(Vec::new(), &[])
        }
    });
    let idp = QuirkyIdp::start(Profile::Okta, 600);
    let mut last = String::new();
    for _ in 0..3 {
        let port = portcullis_testbed::idp::free_port();
        let o = origin(port);
        let external = |max: usize, partial: bool| {
            json!({
                "auth_service": "http://auth.test", "path_prefix": "/auth", "timeout_ms": 15000,
                "include_body": { "max_bytes": max, "allow_partial": partial },
                "allowed_authorization_headers": ["X-Denied-By"]
            })
        };
        let plugin = json!({
            "clusters": { "auth.test": "authsvc", "grpc-auth.test:9000": "grpcauth", idp.authority(): "idp" },
            "filters": [
                { "name": "body", "External": external(64, true) },
                { "name": "strict", "External": external(16, false) },
                { "name": "grpc", "External": {
                    "auth_service": "grpc-auth.test:9000", "proto": "grpc", "timeout_ms": 15000,
                    "include_body": { "max_bytes": 64, "allow_partial": true }
                } },
                { "name": "sso", "OAuth2": {
                    "authorizationURL": idp.issuer(),
                    "clientID": "early",
                    "secret": "s3cret",
                    "protectedOrigins": [ { "origin": o } ],
                    "sessionKeys": [ session_key() ],
                    "postLogoutRedirectURI": format!("{o}/logged-out")
                } }
            ],
            "rules": [
                { "host": "*", "path": "/body/*", "filters": [ { "name": "body" } ] },
                { "host": "*", "path": "/strict/*", "filters": [ { "name": "strict" } ] },
                { "host": "*", "path": "/grpc-body/*", "filters": [ { "name": "grpc" } ] },
                { "host": "*", "path": "/app/*", "filters": [ { "name": "sso" } ] }
            ]
        });
        let cfg = EnvoyConfig::new(upstream.port())
            .main_port(port)
            .plugin(plugin)
            .cluster("authsvc", auth.port())
            .grpc_cluster("grpcauth", grpc_auth.port())
            .cluster("idp", idp.port())
            .build();
        match Envoy::try_start(&cfg) {
            Ok(envoy) => {
                let _ = ENVOY_LOG.set(envoy.dir().join("envoy.log"));
                return Fixture {
                    envoy,
                    port,
                    upstream,
                    auth,
                    grpc_auth,
                    idp,
                };
            }
            Err(e) if e.contains("ddress already in use") => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("Envoy could not bind a picked port three times: {last}");
}

/// The upstream answers `path` as soon as it has its head.
fn early(path: &str) {
    fx().upstream.set_early(
        path,
        Reply::text(404, EARLY_BODY).header("x-upstream", "early"),
    );
}

fn show(r: &Response) -> String {
    format!("{} {:?} {}", r.status, r.headers, r.body_str())
}

fn assert_denied(r: &Response, what: &str) {
    assert_eq!(
        r.status,
        403,
        "{what}: the client gets the denial, never the upstream's early answer: {}",
        show(r)
    );
    assert_eq!(r.body_str(), DENIED_BODY, "{what}");
    assert_eq!(r.header("x-denied-by"), Some("auth"), "{what}");
    assert!(r.header("x-upstream").is_none(), "{what}: {}", show(r));
}

fn assert_upstream_answer(r: &Response, what: &str) {
    assert_eq!(r.status, 404, "{what}: the upstream's answer: {}", show(r));
    assert_eq!(r.body_str(), EARLY_BODY, "{what}");
    assert_eq!(r.header("x-upstream"), Some("early"), "{what}");
}

/// The refusal for a body that came after the upstream's answer.
fn assert_body_lost(r: &Response, what: &str) {
    assert_eq!(
        r.status,
        403,
        "{what}: refused, never the upstream's early answer: {}",
        show(r)
    );
    assert_eq!(r.body_str(), BODY_LOST, "{what}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    assert!(r.header("x-upstream").is_none(), "{what}: {}", show(r));
}

/// The checks the auth service got for `path`.
fn checks_for(path: &str) -> Vec<Request> {
    fx().auth.requests_to(&format!("/auth{path}"))
}

/// The one check the auth service got for `path`.
fn check_for(path: &str) -> Request {
    let checks = checks_for(path);
    assert_eq!(checks.len(), 1, "one check for {path}: {checks:?}");
    checks.into_iter().next().expect("one check")
}

/// Asserts Envoy held the upstream's answer to `path`.
fn assert_held(path: &str) {
    assert!(
        fx().envoy.log().contains(&hold_line(path)),
        "{path}: the upstream's answer was held"
    );
}

// ---- External include_body, HTTP/1.1 -----------------------------------------

/// The usual case: the whole request in one write. The check is made from the
/// body while the upstream's answer waits.
#[test]
fn http1_an_early_answer_waits_for_the_check() {
    for (path, body, denied) in [
        ("/body/h1-denied", "please deny this", true),
        ("/body/h1-allowed", "a harmless body", false),
    ] {
        early(path);
        let r = client::request(fx().port, "POST", path, &[], body.as_bytes());
        if denied {
            assert_denied(&r, path);
        } else {
            assert_upstream_answer(&r, path);
        }
        assert_held(path);
        assert_eq!(check_for(path).body_str(), body);
        assert_eq!(
            fx().upstream.heads_to(path).len(),
            1,
            "{path}: the upstream had the head"
        );
    }
}

/// The head, then the body once the upstream's answer reached Portcullis:
/// Envoy drops a body after a complete answer, so no check can be made and
/// the request is refused, whatever its body.
#[test]
fn http1_a_body_after_an_early_answer_is_refused() {
    for (path, body) in [
        ("/body/h1-late-denied", "deny"),
        ("/body/h1-late-allowed", "would be allowed"),
    ] {
        early(path);
        let mut answered = false;
        let r = client::request_split(
            fx().port,
            "POST",
            path,
            &[("Content-Type", "text/plain")],
            body.as_bytes(),
            || answered = wait_for_upstream_answer(path),
        );
        assert_body_lost(&r, path);
        assert!(answered, "{path}: the upstream's answer reached Portcullis");
        assert!(
            checks_for(path).is_empty(),
            "{path}: no check without the body"
        );
    }
}

/// An early answer larger than Envoy's buffer (1 MiB by default): held under
/// Envoy's flow control (the upstream is paused, not refused), then passed
/// whole on allow; replaced by the denial otherwise.
#[test]
fn a_held_answer_past_envoys_buffer_is_passed_whole_on_allow() {
    let big = "x".repeat(2 * 1024 * 1024 + 1);
    for (path, body) in [
        ("/body/large-answer-allowed", "allowed"),
        ("/body/large-answer-denied", "deny"),
    ] {
        fx().upstream
            .set_early(path, Reply::text(200, &big).header("x-upstream", "early"));
        let r = client::request(fx().port, "POST", path, &[], body.as_bytes());
        if body == "deny" {
            assert_denied(&r, path);
        } else {
            assert_eq!(r.status, 200, "{} {:?}", r.status, r.headers);
            assert_eq!(r.body.len(), big.len(), "the whole answer");
            assert_eq!(r.header("x-upstream"), Some("early"));
        }
        assert_held(path);
    }
}

/// An upstream that starts its answer at once but reads the body before
/// finishing it (no complete answer, so nothing is lost): held until the check
/// decides; allowed, the answer's head goes to the client, then the body to the
/// upstream, which finishes its answer with it; denied, the denial.
#[test]
fn an_answer_begun_before_the_body_is_held_then_finished_on_allow() {
    for (path, body, denied) in [
        ("/body/streaming-allowed", "echo me back", false),
        ("/body/streaming-denied", "deny the stream", true),
    ] {
        fx().upstream.set_head_then_echo(path, 201);
        let r = client::request(fx().port, "POST", path, &[], body.as_bytes());
        if denied {
            assert_denied(&r, path);
        } else {
            assert_eq!(r.status, 201, "{}", show(&r));
            assert_eq!(r.header("x-upstream"), Some("streaming"), "{}", show(&r));
            assert_eq!(
                r.body_str(),
                body,
                "the upstream had the body after the check"
            );
        }
        assert_held(path);
        assert_eq!(check_for(path).body_str(), body);
    }
}

/// A body past `max_bytes` with `allow_partial: false` is refused (413) as it
/// arrives, before any upstream answer.
#[test]
fn a_body_past_max_bytes_gets_413_not_the_early_answer() {
    let path = "/strict/too-large";
    early(path);
    let r = client::request(fx().port, "POST", path, &[], b"seventeen bytes!!");
    assert_eq!(r.status, 413, "{}", show(&r));
    assert!(r.header("x-upstream").is_none(), "{}", show(&r));
    assert!(checks_for(path).is_empty(), "no check is made");
    // Exactly max_bytes: checked (the answer held meanwhile), allowed.
    let path = "/strict/just-fits";
    early(path);
    let r = client::request(fx().port, "POST", path, &[], b"sixteen bytes!!!");
    assert_upstream_answer(&r, "16 bytes");
    assert_held(path);
    assert_eq!(check_for(path).body_str(), "sixteen bytes!!!");
}

/// The same with a gRPC auth service (`proto: grpc`): the held answer waits
/// for its `CheckResponse`.
#[test]
fn grpc_an_early_answer_waits_for_the_check() {
    for (path, body, denied) in [
        ("/grpc-body/denied", "deny over gRPC", true),
        ("/grpc-body/allowed", "fine over gRPC", false),
    ] {
        early(path);
        let r = client::request(fx().port, "POST", path, &[], body.as_bytes());
        if denied {
            assert_denied(&r, path);
        } else {
            assert_upstream_answer(&r, path);
        }
        assert_held(path);
        let checks = fx().grpc_auth.checks_of(path);
        assert_eq!(checks.len(), 1, "{path}: one check");
        assert_eq!(checks[0].http().body, body);
    }
}

// ---- External include_body, HTTP/2 -------------------------------------------

/// POSTs `body` to `path` over HTTP/2 (h2c, prior knowledge). HEADERS and
/// DATA are queued before the connection task runs, so they leave together;
/// with `late`, the DATA goes only once the upstream's answer reached
/// Portcullis.
fn h2_post(path: &str, body: &str, late: bool) -> Response {
    let port = fx().port;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let (mut h2, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{path}"))
            .header("content-type", "text/plain")
            .header("content-length", body.len())
            .body(())
            .expect("request");
        let (response, mut stream) = h2.send_request(request, false).expect("send HEADERS");
        if late {
            // The connection task sends the HEADERS while this waits.
            let p = path.to_string();
            let answered = tokio::task::spawn_blocking(move || wait_for_upstream_answer(&p))
                .await
                .expect("the wait");
            assert!(answered, "{path}: the upstream's answer reached Portcullis");
        }
        let _ = stream.send_data(bytes::Bytes::from(body.to_string()), true);
        let response = tokio::time::timeout(Duration::from_secs(20), response)
            .await
            .expect("a response in time")
            .expect("a response");
        let status = response.status().as_u16();
        let raw_values = response
            .headers()
            .values()
            .map(|v| v.as_bytes().to_vec())
            .collect();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut recv = response.into_body();
        let mut data = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.expect("response DATA");
            let _ = recv.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        Response {
            status,
            headers,
            raw_values,
            body: data,
        }
    })
}

#[test]
fn http2_an_early_answer_waits_for_the_check() {
    for (path, body, denied) in [
        ("/body/h2-denied", "deny, over HTTP/2", true),
        ("/body/h2-allowed", "fine over HTTP/2", false),
    ] {
        early(path);
        let r = h2_post(path, body, false);
        if denied {
            assert_denied(&r, path);
        } else {
            assert_upstream_answer(&r, path);
        }
        assert_held(path);
        assert_eq!(check_for(path).body_str(), body);
    }
}

#[test]
fn http2_a_body_after_an_early_answer_is_refused() {
    let path = "/body/h2-late";
    early(path);
    let r = h2_post(path, "would be allowed", true);
    assert_body_lost(&r, "HTTP/2");
    assert!(checks_for(path).is_empty(), "no check without the body");
}

// ---- the OAuth2 logout form --------------------------------------------------

const AES_LOGOUT: &str = "/.ambassador/oauth2/logout";

/// Logs in through the scripted IdP (single sign-on: one trip).
fn logged_in() -> Agent {
    let base = origin(fx().port);
    let mut agent = Agent::new();
    let mut next = format!("{base}/app/start");
    for _ in 0..10 {
        let r = agent.get(&next);
        match r.header("location") {
            Some(loc) if matches!(r.status, 302 | 303) => {
                next = Url::parse(&next).expect("URL").join(loc);
            }
            _ => {
                assert_eq!(r.status, 200, "logged in: {}", show(&r));
                assert!(has_session(&agent, "sso"), "{:?}", agent.cookies);
                return agent;
            }
        }
    }
    panic!("no end to the login redirects");
}

/// AES's logout form, in one write; with `late`, its body goes only once the
/// upstream's answer reached Portcullis.
fn logout(agent: &Agent, xsrf_field: &str, late: bool) -> Response {
    let url = Url::parse(&format!("{}{AES_LOGOUT}", origin(fx().port))).expect("URL");
    let cookie = agent.cookie_header(&url).expect("cookies");
    let host = format!("127.0.0.1:{}", fx().port);
    let body = format!("_xsrf={xsrf_field}");
    let headers = [
        ("Host", host.as_str()),
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    if !late {
        return client::request(fx().port, "POST", AES_LOGOUT, &headers, body.as_bytes());
    }
    client::request_split(
        fx().port,
        "POST",
        AES_LOGOUT,
        &headers,
        body.as_bytes(),
        || {
            assert!(
                wait_for_upstream_answer(AES_LOGOUT),
                "the upstream's answer reached Portcullis"
            );
        },
    )
}

/// The logout form is answered by Portcullis, never by the upstream: from its
/// body when it came before the upstream's answer (the usual case), and with a
/// 403 (still logged in) when it came after it.
#[test]
fn the_logout_form_never_gets_the_upstreams_early_answer() {
    let f = fx();
    early(AES_LOGOUT);
    let agent = logged_in();
    let token = xsrf(&agent, "sso");
    // The body after the upstream's answer: 403, the session stays.
    let r = logout(&agent, &token, true);
    assert_eq!(r.status, 403, "{}", show(&r));
    assert!(r.header("x-upstream").is_none(), "{}", show(&r));
    assert!(
        r.body_str()
            .contains("the logout form's body did not arrive"),
        "{}",
        show(&r)
    );
    assert!(r.headers_all("set-cookie").is_empty(), "{}", show(&r));
    // In one write, a wrong _xsrf: 403 from the form.
    let r = logout(&agent, "wrong", false);
    assert_eq!(r.status, 403, "{}", show(&r));
    assert!(r.header("x-upstream").is_none(), "{}", show(&r));
    assert!(r.body_str().contains("XSRF check failed"), "{}", show(&r));
    // The right one: logged out, on to the IdP's end_session endpoint.
    let r = logout(&agent, &token, false);
    assert_eq!(r.status, 303, "{}", show(&r));
    assert!(r.header("x-upstream").is_none(), "{}", show(&r));
    let loc = r.header("location").unwrap_or_default();
    assert!(
        loc.starts_with(&format!("{}/logout?", f.idp.issuer())),
        "{loc}"
    );
    let cleared = r
        .headers_all("set-cookie")
        .iter()
        .filter(|c| c.starts_with("portcullis_session.sso=") && c.contains("Max-Age=0"))
        .count();
    assert!(cleared >= 1, "the session cookie is cleared: {}", show(&r));
}
