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
use portcullis_core::external::proto::{BoolValue, HeaderValue, HeaderValueOption};
use portcullis_testbed::authz::{denied_response, ok_response, GrpcAuthServer};
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

/// Header values with obs-text an auth service answers with: a user name in
/// Latin-1, a challenge and a cookie with bytes that are not UTF-8.
const OBS_USER: &[u8] = b"Ren\xe9e M\xfcller";
const OBS_CHALLENGE: &[u8] = b"Basic realm=\"caf\xe9\"";
const OBS_COOKIE: &[u8] = b"who=Ren\xe9e; Path=/; HttpOnly";

/// A gRPC header option whose value only `raw_value` can carry.
fn raw_option(name: &str, value: &[u8], append: Option<bool>) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_string(),
            value: String::new(),
            raw_value: value.to_vec(),
        }),
        append: append.map(|value| BoolValue { value }),
        append_action: 0,
        keep_empty_value: false,
    }
}

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
        // Answers with obs-text in their header values.
        auth.set("/check/ext/obs-allow", Reply::new(200).header_bytes("X-User", OBS_USER));
        auth.set(
            "/check/ext/obs-deny",
            Reply::new(401)
                .header_bytes("WWW-Authenticate", OBS_CHALLENGE)
                .header_bytes("Set-Cookie", OBS_COOKIE)
                .header_bytes("Set-Cookie", b"plain=1; Path=/"),
        );
        auth.set("/check/extbody/trailers-deny", Reply::text(403, "no"));
        // Slow enough that a whole upload reaches Envoy while the check is out.
        auth.set(
            "/check/extpartial/upload",
            Reply::new(200).delay(std::time::Duration::from_millis(300)),
        );
        let grpc = GrpcAuthServer::start();
        grpc.set(
            "/grpc/obs-allow",
            ok_response(vec![raw_option("x-user", OBS_USER, None)], &[]),
        );
        grpc.set(
            "/grpc/obs-deny",
            denied_response(
                401,
                vec![
                    raw_option("www-authenticate", OBS_CHALLENGE, None),
                    // Not `append: true`: Envoy drops such a header of a denial.
                    raw_option("set-cookie", OBS_COOKIE, None),
                ],
                "",
            ),
        );
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
                                               "path_prefix": "/check", "timeout_ms": 2000,
                                               "allowed_authorization_headers": ["x-user"] } },
                { "name": "extbody", "External": { "auth_service": "http://auth.test:3000",
                                                   "path_prefix": "/check", "timeout_ms": 2000,
                                                   "include_body": { "max_bytes": 64, "allow_partial": false } } },
                { "name": "extpartial", "External": { "auth_service": "http://auth.test:3000",
                                                   "path_prefix": "/check", "timeout_ms": 5000,
                                                   "include_body": { "max_bytes": 4096, "allow_partial": true } } },
                { "name": "grpc", "External": { "auth_service": "grpc-auth.test:9000", "proto": "grpc",
                                                "protocol_version": "v3", "timeout_ms": 2000 } }
            ],
            "rules": [
                { "host": "*", "path": "/jwt/*", "filters": [ { "name": "jwt" } ] },
                { "host": "*", "path": "/ext/*", "filters": [ { "name": "ext" } ] },
                { "host": "*", "path": "/grpc/*", "filters": [ { "name": "grpc" } ] },
                { "host": "*", "path": "/chain/*", "filters": [ { "name": "jwt" }, { "name": "ext" } ] },
                { "host": "*", "path": "/both/*", "filters": [ { "name": "ext" }, { "name": "grpc" } ] },
                { "host": "app.test", "path": "/hosted/*", "filters": [ { "name": "jwt" } ] },
                { "host": "*", "path": "/extbody/*", "filters": [ { "name": "extbody" } ] },
                { "host": "*", "path": "/extpartial/*", "filters": [ { "name": "extpartial" } ] }
            ]
        });
        // A second instance with preflights checked like any request.
        let strict = json!({
            "bypassCorsPreflight": false,
            "filters": [ { "name": "strict", "JWT": { "jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE } } ],
            "rules": [ { "host": "*", "path": "/strict/*", "filters": [ { "name": "strict" } ] } ]
        });
        let cfg = EnvoyConfig::new(upstream.port())
            .plugin(plugin)
            .plugin_instance("portcullis-strict", "vm-strict", None, strict)
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
    raw_get_host("app.test", path, headers)
}

/// [`raw_get`] with this `Host`.
fn raw_get_host(host: &str, path: &str, headers: &[(&str, &[u8])]) -> Response {
    let mut bytes = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
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
fn after_an_obs_text_http_check_the_next_check_of_the_chain_is_sent_and_answered() {
    // The HTTP check carries bytes that are not UTF-8, so it is sent with the
    // host call itself and answered on the root context's tick; the gRPC
    // check after it must still reach its request.
    for i in 0..3 {
        let path = format!("/both/obs-{i}");
        let up = echoed(&raw_get(&path, &[("User-Agent", UA)]));
        assert_eq!(up.header_bytes("user-agent"), Some(UA));
        assert_eq!(fx().auth.requests_to(&format!("/check{path}")).len(), 1);
        assert_eq!(fx().grpc.checks_of(&path).len(), 1);
    }
}

#[test]
fn an_http_auth_services_obs_text_header_reaches_the_upstream_byte_for_byte() {
    let up = echoed(&raw_get("/ext/obs-allow", &[]));
    assert_eq!(up.header_bytes("x-user"), Some(OBS_USER));
}

#[test]
fn an_http_auth_services_obs_text_denial_headers_reach_the_client_byte_for_byte() {
    let r = raw_get("/ext/obs-deny", &[]);
    assert_eq!(r.status, 401, "{}", show(&r));
    assert_eq!(r.header_bytes("www-authenticate"), Some(OBS_CHALLENGE));
    assert_eq!(
        r.headers_all_bytes("set-cookie"),
        vec![OBS_COOKIE, b"plain=1; Path=/".as_slice()]
    );
}

#[test]
fn a_grpc_auth_services_obs_text_raw_values_reach_the_upstream_and_the_client() {
    let up = echoed(&raw_get("/grpc/obs-allow", &[]));
    assert_eq!(up.header_bytes("x-user"), Some(OBS_USER));
    let r = raw_get("/grpc/obs-deny", &[]);
    assert_eq!(r.status, 401, "{}", show(&r));
    assert_eq!(r.header_bytes("www-authenticate"), Some(OBS_CHALLENGE));
    assert_eq!(r.header_bytes("set-cookie"), Some(OBS_COOKIE));
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

// ---- the authority ----------------------------------------------------------

#[test]
fn a_host_rule_covers_the_authority_in_any_case_with_a_port_or_a_trailing_dot() {
    for host in [
        "app.test",
        "APP.Test",
        "app.test:10000",
        "app.test.",
        "App.Test.:443",
    ] {
        let r = raw_get_host(host, "/hosted/x", &[]);
        assert_eq!(r.status, 401, "Host {host}: {}", show(&r));
    }
    // Another site: no rule.
    echoed(&raw_get_host("other.test", "/hosted/x", &[]));
}

#[test]
fn an_absolute_form_request_target_is_matched_by_its_path_and_authority() {
    // `GET http://app.test/hosted/x` (absolute form, as sent to a proxy):
    // Envoy takes the path and authority from it; the host rule applies even
    // when the Host line names another site.
    for host in ["app.test", "other.test"] {
        let req = format!(
            "GET http://app.test/hosted/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        );
        let r = client::raw(port(), req.as_bytes());
        assert_eq!(r.status, 401, "Host {host}: {}", show(&r));
    }
}

// ---- HTTP/2 -------------------------------------------------------------------

/// `GET path` over HTTP/2 (cleartext, prior knowledge) with `headers`, by curl;
/// returns the status line's code and the body.
fn h2_get(path: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    curl(&["--http2-prior-knowledge"], path, headers, "2")
}

/// curl with `args` to `path` with `headers`; checks the HTTP version the
/// answer came with and returns its status and body.
fn curl(
    args: &[&str],
    path: &str,
    headers: &[(&str, &str)],
    version_wanted: &str,
) -> (u16, Vec<u8>) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code} %{http_version}"]);
    cmd.args(args);
    cmd.args(["-H", "Host: app.test"]);
    for (n, v) in headers {
        cmd.args(["-H", &format!("{n}: {v}")]);
    }
    cmd.arg(format!("http://127.0.0.1:{}{path}", port()));
    let out = cmd.output().expect("curl runs");
    let text = out.stdout;
    let at = text
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("curl's status line");
    let tail = String::from_utf8_lossy(&text[at + 1..]).to_string();
    let (code, version) = tail.split_once(' ').expect("code and version");
    assert_eq!(version, version_wanted, "the HTTP version of the answer");
    (code.parse().expect("status"), text[..at].to_vec())
}

#[test]
fn http2_crumbled_cookies_reach_the_auth_service_and_upstream_as_one_cookie_header() {
    // A browser on HTTP/2 may send each cookie as its own `cookie` field
    // (RFC 9113 §8.2.3); an auth service reading one Cookie line would miss
    // the session. Envoy's codec rejoins them with "; " before Portcullis.
    let (status, body) = h2_get(
        "/ext/h2-cookies",
        &[
            ("cookie", "a=1"),
            ("cookie", "session=s3cr3t"),
            ("cookie", "b=2"),
        ],
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let checks = fx().auth.requests_to("/check/ext/h2-cookies");
    assert_eq!(checks.len(), 1);
    assert_eq!(
        checks[0].headers_all("cookie"),
        vec!["a=1; session=s3cr3t; b=2"]
    );
    let up = Echoed::parse(&body);
    assert_eq!(up.headers_all("cookie"), vec!["a=1; session=s3cr3t; b=2"]);
}

// ---- bodies: Expect: 100-continue, chunked ---------------------------------

#[test]
fn a_chunked_body_sent_after_100_continue_reaches_the_auth_service_and_upstream() {
    // curl sends the headers with `Expect: 100-continue`, waits for Envoy's
    // `100 Continue`, then the body in chunks (no Content-Length).
    let body = "user=ren%C3%A9e&action=save";
    let (status, answer) = curl(
        &[
            "-X",
            "POST",
            "--data-binary",
            body,
            "--expect100-timeout",
            "30",
        ],
        "/extbody/form",
        &[
            ("Expect", "100-continue"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "1.1",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let checks = fx().auth.requests_to("/check/extbody/form");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].body, body.as_bytes());
    assert_eq!(checks[0].header("x-envoy-auth-partial-body"), Some("false"));
    assert_eq!(Echoed::parse(&answer).body, body);
}

#[test]
fn a_chunked_body_one_byte_past_max_bytes_is_refused_with_413() {
    let body = "x".repeat(65);
    let (status, _) = curl(
        &[
            "-X",
            "POST",
            "--data-binary",
            &body,
            "--expect100-timeout",
            "30",
        ],
        "/extbody/big",
        &[("Expect", "100-continue"), ("Transfer-Encoding", "chunked")],
        "1.1",
    );
    assert_eq!(status, 413);
    assert!(fx().auth.requests_to("/check/extbody/big").is_empty());
    // At the bound: passes.
    let body = "x".repeat(64);
    let (status, _) = curl(
        &["-X", "POST", "--data-binary", &body],
        "/extbody/at-bound",
        &[("Transfer-Encoding", "chunked")],
        "1.1",
    );
    assert_eq!(status, 200);
}

#[test]
fn a_head_request_is_checked_like_a_get_and_answered_without_a_body() {
    let head = |headers: &[(&str, &str)]| {
        let mut all = vec![("Host", "app.test"), ("Connection", "close")];
        all.extend_from_slice(headers);
        client::request(port(), "HEAD", "/jwt/head", &all, b"")
    };
    let r = head(&[]);
    assert_eq!(r.status, 401, "{}", show(&r));
    assert!(r.body.is_empty());
    let good = format!("Bearer {}", token("RS256", json!({ "sub": "head" })));
    let r = head(&[("Authorization", &good)]);
    assert_eq!(r.status, 200, "{}", show(&r));
    assert!(r.body.is_empty());
}

// ---- paths an upstream decodes ----------------------------------------------

#[test]
fn rules_match_the_path_decoded_merged_and_without_dot_segments() {
    // Without a token: every spelling of /jwt/... is the JWT rule's, so 401;
    // an upstream that decodes the path would otherwise serve /jwt/x unchecked.
    for path in [
        "/%6Awt/x",
        "/%6awt/x",
        "/public/..%2Fjwt/x",
        "/public/%2e%2e/jwt/x",
        "/public/../jwt/x",
        "//jwt/x",
        "/./jwt//x",
        // Path parameters (Servlet containers cut them: `..;/` is `../`).
        "/jwt;jsessionid=1/x",
        "/public/..;/jwt/x",
        "/public%3B/../jwt/x",
    ] {
        let r = raw_get(path, &[]);
        assert_eq!(r.status, 401, "{path}: {}", show(&r));
    }
    // A backslash (Windows servers take it as `/`): refused by Envoy or by
    // the rule, never passed unchecked.
    for path in ["/jwt\\x", "/public\\..\\jwt\\x", "/public%5C..%5Cjwt/x"] {
        let r = raw_get(path, &[]);
        assert!(matches!(r.status, 400 | 401), "{path}: {}", show(&r));
    }
    // The other way round: Envoy routes the path as sent (under /jwt/), a
    // decoding upstream would cut `;` and `..` (and see /public/x, no rule):
    // the check of the rule the path is sent under applies.
    for path in [
        "/jwt/..%3B/public/x",
        "/jwt/..;/public/x",
        "/jwt/.%2e;/public/x",
    ] {
        let r = raw_get(path, &[]);
        assert_eq!(r.status, 401, "{path}: {}", show(&r));
    }
    // Under two rules that both check (JWT as sent, External decoded): 400.
    let r = raw_get("/jwt/..;/ext/x", &[]);
    assert_eq!(r.status, 400, "{}", show(&r));
    assert!(r.body_str().contains("two rules"), "{}", show(&r));
    // With a good token the request goes on with its path as sent.
    let good = bearer(&token("RS256", json!({ "sub": "s" })));
    let up = echoed(&raw_get("/%6Awt/x?q=1", &[("Authorization", &good)]));
    assert_eq!(up.path, "/%6Awt/x?q=1");
    // Paths no rule covers, however spelled, pass.
    echoed(&raw_get("/public/%2e/x", &[]));
}

// ---- two Authorization lines ------------------------------------------------
// Envoy joins them with a comma. The rule, in every order: the Bearer
// credential is found among them (other schemes are skipped), and every Bearer
// present must verify (as Envoy's jwt_authn after envoy#32248).

const BASIC: &[u8] = b"Basic dXNlcjpwYXNz";

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

fn two_lines(first: &[u8], second: &[u8]) -> Response {
    raw_get(
        "/jwt/two-lines",
        &[("Authorization", first), ("Authorization", second)],
    )
}

#[test]
fn basic_and_bearer_lines_pass_in_either_order_and_reach_the_upstream_unchanged() {
    let good = bearer(&token("RS256", json!({ "sub": "from-bearer" })));
    for (first, second) in [(BASIC, good.as_slice()), (good.as_slice(), BASIC)] {
        let r = two_lines(first, second);
        let up = echoed(&r);
        assert_eq!(up.header("x-sub"), Some("from-bearer"));
        let mut joined = first.to_vec();
        joined.push(b',');
        joined.extend_from_slice(second);
        assert_eq!(up.header_bytes("authorization"), Some(joined.as_slice()));
    }
    // One line with both, joined by a comma and a space, either order.
    let both = format!("Basic dXNlcjpwYXNz, {}", String::from_utf8_lossy(&good));
    let r = raw_get("/jwt/one-line", &[("Authorization", both.as_bytes())]);
    assert_eq!(echoed(&r).header("x-sub"), Some("from-bearer"));
}

#[test]
fn the_bearer_scheme_is_read_in_any_case_and_with_extra_spaces() {
    let t = token("RS256", json!({ "sub": "spaced" }));
    for value in [
        format!("bearer {t}"),
        format!("BEARER {t}"),
        format!("Bearer    {t}"),
        format!("Bearer {t}   "),
    ] {
        let r = raw_get("/jwt/scheme", &[("Authorization", value.as_bytes())]);
        assert_eq!(echoed(&r).header("x-sub"), Some("spaced"), "{value:?}");
    }
    // A tab is not the space RFC 9110 §11.4 puts after the scheme: no
    // credential Portcullis can read, so no token.
    let tab = format!("Bearer\t{t}");
    let r = raw_get("/jwt/scheme", &[("Authorization", tab.as_bytes())]);
    assert_eq!(r.status, 401, "{}", show(&r));
}

#[test]
fn a_token_in_the_query_or_an_empty_authorization_is_no_token() {
    // The AES JWT filter reads `Authorization` only: an `access_token` query
    // parameter (RFC 6750 §2.3, which jwt_authn can be told to read) is not a
    // credential here; an empty `Authorization` is none either.
    let t = token("RS256", json!({ "sub": "q" }));
    for (path, headers) in [
        (format!("/jwt/q?access_token={t}"), vec![]),
        (
            "/jwt/q".to_string(),
            vec![("Authorization", b"".as_slice())],
        ),
        (
            "/jwt/q".to_string(),
            vec![("Authorization", b"   ".as_slice())],
        ),
    ] {
        let r = raw_get(&path, &headers);
        assert_eq!(r.status, 401, "{path} {headers:?}: {}", show(&r));
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"jwt\""),
            "{path}: no error: a request without a token"
        );
    }
}

#[test]
fn a_fragment_on_the_request_line_never_passes_unchecked() {
    // Clients never send one; a raw request can. Envoy refuses it (400) or
    // strips it; either way the JWT rule still applies.
    let r = raw_get("/jwt/frag#x", &[]);
    assert!(matches!(r.status, 400 | 401), "{}", show(&r));
}

#[test]
fn two_bearer_lines_pass_only_when_both_verify() {
    let good = bearer(&token("RS256", json!({ "sub": "first" })));
    let also_good = bearer(&token("ES256", json!({ "sub": "second" })));
    let expired = bearer(&token("RS256", json!({ "exp": now() - 600 })));
    let r = two_lines(&good, &also_good);
    assert_eq!(
        echoed(&r).header("x-sub"),
        Some("first"),
        "the first one's claims"
    );
    for (first, second) in [(&good, &expired), (&expired, &good)] {
        let r = two_lines(first, second);
        assert_invalid_token(
            &r,
            "jwt",
            "token is expired",
            "a bad Bearer beside a good one",
        );
    }
    let forged = bearer("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln");
    let r = two_lines(&forged, &good);
    assert_eq!(r.status, 401, "{}", show(&r));
}

#[test]
fn basic_alone_is_no_bearer_token_and_an_empty_bearer_is_malformed_in_any_order() {
    let r = two_lines(BASIC, b"Digest username=\"u\", realm=\"r\"");
    assert_no_token(&r, "jwt", "Basic and Digest");
    let good = bearer(&token("RS256", json!({})));
    for (first, second) in [
        (b"Bearer".as_slice(), good.as_slice()),
        (good.as_slice(), b"Bearer"),
    ] {
        let r = two_lines(first, second);
        assert_eq!(r.status, 400, "{}", show(&r));
        assert!(
            r.header("www-authenticate")
                .is_some_and(|w| w.contains("invalid_request")),
            "{}",
            show(&r)
        );
    }
}

// ---- CORS preflight -----------------------------------------------------------

fn preflight(path: &str) -> Response {
    client::request(
        port(),
        "OPTIONS",
        path,
        &[
            ("Origin", "https://app.example.com"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
        b"",
    )
}

#[test]
fn a_cors_preflight_skips_the_jwt_filter_by_default() {
    let up = echoed(&preflight("/jwt/preflight"));
    assert_eq!(up.method, "OPTIONS");
    assert_eq!(up.header("origin"), Some("https://app.example.com"));
    // An OPTIONS that is not a preflight is checked as any request.
    let r = client::request(
        port(),
        "OPTIONS",
        "/jwt/preflight",
        &[("Origin", "https://app.example.com")],
        b"",
    );
    assert_no_token(&r, "jwt", "OPTIONS without Access-Control-Request-Method");
    // So is a preflight with bypassCorsPreflight: false.
    assert_no_token(
        &preflight("/strict/preflight"),
        "strict",
        "bypassCorsPreflight: false",
    );
}

#[test]
fn a_cors_preflight_still_goes_to_an_external_auth_service() {
    fx().auth.set("/check/chain/preflight", Reply::new(403));
    let r = preflight("/chain/preflight");
    assert_eq!(r.status, 403, "{}", show(&r));
    let checks = fx().auth.requests_to("/check/chain/preflight");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].method, "OPTIONS");
}

#[test]
fn eight_credentials_are_read_and_a_ninth_is_malformed() {
    let good = String::from_utf8(bearer(&token("RS256", json!({})))).expect("ASCII");
    let with = |basics: usize| {
        let mut list = vec!["Basic dXNlcjpwYXNz"; basics];
        list.push(&good);
        list.join(", ")
    };
    let r = raw_get("/jwt/credentials", &[("Authorization", with(7).as_bytes())]);
    echoed(&r);
    let r = raw_get("/jwt/credentials", &[("Authorization", with(8).as_bytes())]);
    assert_eq!(r.status, 400, "{}", show(&r));
    assert!(
        r.header("www-authenticate")
            .is_some_and(|w| w.contains("too many credentials")),
        "{}",
        show(&r)
    );
}

// ---- a module not built by scripts/build ------------------------------------

#[test]
fn a_module_built_by_cargo_alone_sends_obs_text_converted_and_never_crashes() {
    // `scripts/build` puts Portcullis's own HTTP-callout callback in the SDK's
    // place; the module cargo builds (the test-crash one here) keeps the SDK's,
    // which would abort on an answer it did not ask for. Such a module sends a
    // callout header value that is not UTF-8 converted (U+FFFD), and goes on.
    let upstream = ScriptedServer::start();
    upstream.set_default_fn(|r| Reply::json(200, &echo_json(r)));
    let auth = ScriptedServer::start();
    auth.set_default(Reply::new(200));
    let plugin = json!({
        "clusters": { "auth.test:3000": "authsvc" },
        "filters": [ { "name": "ext", "External": { "auth_service": "http://auth.test:3000",
                                                    "path_prefix": "/check", "timeout_ms": 2000 } } ],
        "rules": [ { "host": "*", "path": "/ext/*", "filters": [ { "name": "ext" } ] } ]
    });
    let cfg = EnvoyConfig::new(upstream.port())
        .plugin(plugin)
        .cluster("authsvc", auth.port())
        .build();
    let wasm = portcullis_testbed::crash::crash_wasm_path();
    let envoy = Envoy::start_with(&cfg, &[("WASM", &wasm.to_string_lossy())]);
    for i in 0..3 {
        let path = format!("/ext/cargo-{i}");
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nUser-Agent: ").into_bytes();
        req.extend_from_slice(UA);
        req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        let r = client::raw(envoy.port("main"), &req);
        let up = echoed(&r);
        assert_eq!(
            up.header_bytes("user-agent"),
            Some(UA),
            "the upstream gets the bytes"
        );
        let checks = auth.requests_to(&format!("/check{path}"));
        assert_eq!(checks.len(), 1);
        assert_eq!(
            checks[0].header_bytes("user-agent"),
            Some(String::from_utf8_lossy(UA).as_bytes())
        );
    }
}

// ---- request trailers ----------------------------------------------------------

/// `POST path` over HTTP/2 with `body` in one DATA frame and then trailers
/// (the stream ends with the trailers, not with the body); status and body.
fn h2_post_with_trailers(path: &str, body: &'static [u8]) -> Result<(u16, Vec<u8>), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port()))
            .await
            .map_err(|e| e.to_string())?;
        let (client, conn) = h2::client::handshake(tcp)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://app.test{path}"))
            .header("content-type", "application/octet-stream")
            .body(())
            .map_err(|e| e.to_string())?;
        let (answer, mut stream) = client
            .send_request(request, false)
            .map_err(|e| e.to_string())?;
        stream
            .send_data(bytes::Bytes::from_static(body), false)
            .map_err(|e| e.to_string())?;
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", http::HeaderValue::from_static("c0ffee"));
        stream.send_trailers(trailers).map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), answer)
            .await
            .map_err(|_| "no answer within 10 s".to_string())?
            .map_err(|e| e.to_string())?;
        let (parts, mut recv) = answer.into_parts();
        let mut out = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        Ok((parts.status.as_u16(), out))
    })
}

#[test]
fn a_body_followed_by_trailers_reaches_the_auth_service_and_upstream() {
    // Over HTTP/2 the stream may end with trailers after the body: the body
    // is whole then, though no body callback said "end of stream".
    let (status, body) =
        h2_post_with_trailers("/extbody/trailers", b"a small body").expect("an answer");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let checks = fx().auth.requests_to("/check/extbody/trailers");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].body, b"a small body");
    assert_eq!(checks[0].header("x-envoy-auth-partial-body"), Some("false"));
    assert_eq!(Echoed::parse(&body).body, "a small body");
}

#[test]
fn a_body_followed_by_trailers_is_held_when_the_check_denies() {
    // Before, the trailers released the held body to the upstream without a
    // check at all.
    let (status, body) =
        h2_post_with_trailers("/extbody/trailers-deny", b"a small body").expect("an answer");
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, b"no");
    let checks = fx().auth.requests_to("/check/extbody/trailers-deny");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].body, b"a small body");
}

#[test]
fn a_request_with_trailers_is_still_checked_by_an_external_filter_without_include_body() {
    let (status, body) = h2_post_with_trailers("/ext/obs-deny", b"x").expect("an answer");
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    // Allowed: the request goes on, body and all, once the check answers.
    let (status, body) = h2_post_with_trailers("/ext/trailers-ok", b"y").expect("an answer");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(Echoed::parse(&body).body, "y");
}

#[test]
fn an_upload_past_envoys_buffer_limit_waits_for_the_check_under_flow_control() {
    // 3 MiB, past Envoy's 1 MiB buffer limit; the check reads the first 4096
    // bytes (allow_partial) and answers after 300 ms. Buffered, the rest met
    // Envoy's own 413; under flow control Envoy stops reading the client
    // until the check decides, then the whole body goes upstream.
    let size = 3 * 1024 * 1024;
    let file = std::env::temp_dir().join(format!("portcullis-upload-{}", std::process::id()));
    std::fs::write(&file, vec![b'u'; size]).expect("the upload file");
    let data = format!("@{}", file.display());
    let (status, answer) = curl(
        &["-X", "POST", "--data-binary", &data],
        "/extpartial/upload",
        &[("Expect", ""), ("Content-Type", "application/octet-stream")],
        "1.1",
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(
        status,
        200,
        "{}",
        String::from_utf8_lossy(&answer[..answer.len().min(300)])
    );
    let checks = fx().auth.requests_to("/check/extpartial/upload");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].body.len(), 4096);
    assert_eq!(checks[0].header("x-envoy-auth-partial-body"), Some("true"));
    let up = Echoed::parse(&answer);
    assert_eq!(up.body.len(), size, "the upstream got every byte");
}
