//! The JWT Filter example of the Ambassador Edge Stack documentation, run as is:
//! `testdata/aes-jwt-example.json` is the whole Portcullis configuration (filter
//! `example-jwt-filter`, `validAlgorithms: ["none"]`, the article's
//! `injectRequestHeaders` and `errorResponse`), and the article's token must give
//! the headers the article lists at the upstream.

mod common;

use std::sync::OnceLock;

use common::*;
use portcullis_testbed::client;
use portcullis_testbed::servers::EchoUpstream;
use portcullis_testbed::tokens;
use portcullis_testbed::{Echoed, Envoy, EnvoyConfig};
use serde_json::{json, Value};

/// The token of the article: `{"alg":"none","typ":"JWT","extra":"so much"}`
/// `{"sub":"1234567890","name":"John Doe","iat":1516239022}`, no signature.
const ARTICLE_TOKEN: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIiwiZXh0cmEiOiJzbyBtdWNoIn0.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.";

struct Fixture {
    envoy: Envoy,
    _echo: EchoUpstream,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let plugin: Value = serde_json::from_str(&testdata("aes-jwt-example.json"))
            .expect("testdata/aes-jwt-example.json is JSON");
        let echo = EchoUpstream::start();
        let envoy = Envoy::start(&EnvoyConfig::new(echo.port()).plugin(plugin).build());
        Fixture { envoy, _echo: echo }
    })
}

fn port() -> u16 {
    fx().envoy.port("main")
}

/// Exactly one value of `name` reached the upstream, and it is `value`.
fn one(seen: &Echoed, name: &str, value: &str) {
    assert_eq!(
        seen.headers_all(name),
        vec![value],
        "{name} at the upstream; all headers: {:?}",
        seen.headers
    );
}

#[test]
fn article_token_gives_the_article_headers_at_the_upstream() {
    let f = fx();
    let r = get_with_token(
        port(),
        "/backend/",
        ARTICLE_TOKEN,
        &[("User-Agent", "curl/7.66.0")],
    );
    let seen = passed(&f.envoy, &r, "the article's token");
    one(&seen, "X-Fixed-String", "Fixed String");
    one(&seen, "X-Token-String", ARTICLE_TOKEN);
    one(&seen, "X-Token-H-Alg", "none");
    one(&seen, "X-Token-H-Typ", "JWT");
    one(&seen, "X-Token-H-Extra", "so much");
    one(&seen, "X-Token-C-Sub", "1234567890");
    one(&seen, "X-Token-C-Name", "John Doe");
    // A missing map key renders Go's `<no value>`.
    one(&seen, "X-Token-C-Optional-Empty", "<no value>");
    // `doNotSet` leaves the header absent.
    assert!(
        seen.header("X-Token-C-Optional-Unset").is_none(),
        "{:?}",
        seen.headers
    );
    // A JSON number is a float64: Go prints it in %v as 1.516239022e+09.
    one(&seen, "X-Token-C-Iat", "1.516239022e+09");
    one(&seen, "X-Token-C-Iat-Decimal", "1516239022");
    // An empty rendered value: the plugin sets the header to "" and Envoy forwards
    // it over HTTP/1.1 as `x-token-s: ` (present, empty), as AES does.
    one(&seen, "X-Token-S", "");
    one(
        &seen,
        "X-Authorization",
        "Authenticated JWT; sub=1234567890; name=\"John Doe\"",
    );
    one(&seen, "X-UA", "curl/7.66.0");
    one(&seen, "Content-Type", "application/json");
    // No X-Correlation-ID sent: `.httpRequestHeader.Get` gives "" (present, empty).
    one(&seen, "X-Correlation-ID", "");
    // The user agent and the token itself go on unchanged.
    one(&seen, "User-Agent", "curl/7.66.0");
    one(&seen, "Authorization", &format!("Bearer {ARTICLE_TOKEN}"));
}

#[test]
fn client_copies_of_injected_headers_never_reach_the_upstream() {
    let f = fx();
    let r = get_with_token(
        port(),
        "/backend/",
        ARTICLE_TOKEN,
        &[
            ("User-Agent", "curl/7.66.0"),
            ("X-Fixed-String", "spoofed"),
            ("x-token-c-sub", "0"),
            ("X-Token-C-Sub", "00"),
            ("X-Token-C-Optional-Unset", "spoofed"),
            ("X-Token-S", "spoofed"),
            ("Content-Type", "text/plain"),
            ("X-Correlation-ID", "abc-123"),
        ],
    );
    let seen = passed(&f.envoy, &r, "spoofed headers");
    one(&seen, "X-Fixed-String", "Fixed String");
    one(&seen, "X-Token-C-Sub", "1234567890");
    assert!(
        seen.header("X-Token-C-Optional-Unset").is_none(),
        "{:?}",
        seen.headers
    );
    one(&seen, "X-Token-S", "");
    one(&seen, "Content-Type", "application/json");
    // X-Correlation-ID's template reads the request as the client sent it (as in
    // AES), so the article's pass-through works: the value the upstream gets is
    // the one the template rendered, not a second client copy.
    one(&seen, "X-Correlation-ID", "abc-123");
}

#[test]
fn expired_token_renders_the_article_error_body() {
    let claims =
        json!({"sub": "1234567890", "name": "John Doe", "iat": 1516239022, "exp": 1516239022 + 60});
    let t = tokens::unsigned(
        json!({"alg": "none", "typ": "JWT", "extra": "so much"}),
        claims,
    );
    let r = client::get(
        port(),
        "/backend/",
        &[("Authorization", &format!("Bearer {t}"))],
    );
    assert_eq!(r.status, 401, "{}", show(&r));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\", error_description=\"token is expired\", realm=\"example-jwt-filter\"")
    );
    let body = r.json();
    let id = body["requestId"].as_str().unwrap_or_default().to_string();
    assert_eq!(id.len(), 36, "Envoy's x-request-id: {body}");
    assert_eq!(
        r.body_str(),
        format!(
            "{{\n  \"errorMessage\": \"Token validation error: token is expired\",\n  \"altErrorMessage\": \"expired\",\n  \"errorCode\": 16,\n  \"httpStatus\": \"401\",\n  \"requestId\": \"{id}\"\n}}"
        )
    );
}

#[test]
fn signed_tokens_wrong_audience_and_no_token_get_the_article_error_body() {
    let f = fx();
    // Only `none` is listed: a properly signed token is refused.
    let r = get_with_token(
        port(),
        "/backend/",
        &tokens::valid("RS256", Value::Null),
        &[],
    );
    assert_eq!(r.status, 401, "{}", show(&r));
    let body = r.json();
    assert_eq!(
        body["errorMessage"],
        "Token validation error: signing method RS256 is not allowed"
    );
    assert_eq!(body["altErrorMessage"], "invalid");
    assert_eq!(body["errorCode"], 2);
    assert_eq!(body["httpStatus"], "401");

    // audience "myapp" (not required): a present aud must match.
    let wrong = tokens::unsigned(json!({"alg": "none"}), json!({"sub": "x", "aud": "other"}));
    let r = get_with_token(port(), "/backend/", &wrong, &[]);
    assert_eq!(r.status, 401, "{}", show(&r));
    assert_eq!(r.json()["errorCode"], 8);
    assert_eq!(
        r.json()["errorMessage"],
        "Token validation error: invalid audience"
    );
    let right = tokens::unsigned(
        json!({"alg": "none"}),
        json!({"sub": "x", "aud": ["myapp"]}),
    );
    let seen = passed(
        &f.envoy,
        &get_with_token(port(), "/backend/", &right, &[]),
        "aud myapp",
    );
    one(&seen, "X-Token-C-Sub", "x");
    // An unsigned token must have an empty signature segment.
    let r = get_with_token(port(), "/backend/", &format!("{right}c2ln"), &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["errorMessage"],
        "Token validation error: signature is invalid"
    );

    let r = client::get(port(), "/backend/", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"example-jwt-filter\"")
    );
    let body = r.json();
    assert_eq!(
        body,
        json!({
            "errorMessage": "Token validation error: no bearer token in the Authorization header",
            "httpStatus": "401",
            "requestId": body["requestId"].clone()
        })
    );
}
