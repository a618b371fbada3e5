//! Helpers shared by the JWT end-to-end tests: test data, requests, and the
//! assertions on what a client sees (status, `WWW-Authenticate`, body).
//!
//! Each test file compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::fs;
use std::time::Duration;

use portcullis_testbed::client::{self, Response};
use portcullis_testbed::envoy::repo_root;
use portcullis_testbed::{Echoed, Envoy};
use serde_json::{json, Value};

/// The issuer and audience every JWT test filter is configured with.
pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "api";

/// `testdata/<name>` as text (panics with the path when missing).
pub fn testdata(name: &str) -> String {
    let p = repo_root().join("testdata").join(name);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// `testdata/jwks.json` parsed.
pub fn jwks() -> Value {
    serde_json::from_str(&testdata("jwks.json")).expect("testdata/jwks.json is JSON")
}

/// Claims of a valid token for the JWT test filters: `sub`, `iss`, `aud`, `iat`, `exp`.
pub fn good_claims() -> Value {
    let now = portcullis_testbed::tokens::now();
    json!({ "sub": "user-1", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600 })
}

/// A valid token (default key and kid of `alg`) with `extra` merged over
/// [`good_claims`] (`null` removes a claim).
pub fn token(alg: &str, extra: Value) -> String {
    let key = portcullis_testbed::tokens::default_key_for(alg);
    portcullis_testbed::tokens::mint(
        alg,
        Some(key),
        Value::Null,
        portcullis_testbed::tokens::merge(good_claims(), extra),
    )
}

/// Seconds since the epoch, signed (for claims in the past or future).
pub fn now() -> i64 {
    portcullis_testbed::tokens::now() as i64
}

/// GET `path` with `Authorization: Bearer <token>` and `extra` headers.
pub fn get_with_token(port: u16, path: &str, token: &str, extra: &[(&str, &str)]) -> Response {
    let auth = format!("Bearer {token}");
    let mut headers: Vec<(&str, &str)> = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    client::get(port, path, &headers)
}

/// Text as it appears inside a `WWW-Authenticate` quoted-string (the plugin turns
/// `"` into `'` and `\` into `/`).
pub fn auth_param(text: &str) -> String {
    text.replace('"', "'").replace('\\', "/")
}

/// A short description of a response for assertion messages.
pub fn show(r: &Response) -> String {
    format!(
        "status {} headers {:?} body {:?}",
        r.status,
        r.headers,
        r.body_str()
    )
}

/// The request reached the upstream: 200 from the echo upstream; what it saw.
pub fn passed(envoy: &Envoy, r: &Response, ctx: &str) -> Echoed {
    assert_eq!(
        r.status,
        200,
        "{ctx}: expected the upstream to answer; got {}\nEnvoy log tail:\n{}",
        show(r),
        envoy.log_tail(30)
    );
    Echoed::parse(&r.body)
}

/// The default Portcullis error body, byte for byte.
pub fn default_body(message: &str, status: u16) -> String {
    format!(
        "{{\"message\":{},\"status_code\":{status}}}",
        Value::String(message.to_string())
    )
}

/// Asserts the default JSON error body and its content type.
pub fn assert_default_body(r: &Response, message: &str, status: u16, ctx: &str) {
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{ctx}: {}",
        show(r)
    );
    assert_eq!(
        r.body_str(),
        default_body(message, status),
        "{ctx}: {}",
        show(r)
    );
}

/// 401 `Bearer error="invalid_token", error_description="<description>", realm="<realm>"`
/// with the default body `Token validation error: <description>`.
pub fn assert_invalid_token(r: &Response, realm: &str, description: &str, ctx: &str) {
    assert_eq!(r.status, 401, "{ctx}: {}", show(r));
    assert_eq!(
        r.headers_all("www-authenticate"),
        vec![format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\", realm=\"{realm}\"",
            auth_param(description)
        )],
        "{ctx}: {}",
        show(r)
    );
    assert_default_body(
        r,
        &format!("Token validation error: {description}"),
        401,
        ctx,
    );
}

/// 401 `Bearer realm="<realm>"` exactly, default body.
pub fn assert_no_token(r: &Response, realm: &str, ctx: &str) {
    assert_eq!(r.status, 401, "{ctx}: {}", show(r));
    assert_eq!(
        r.headers_all("www-authenticate"),
        vec![format!("Bearer realm=\"{realm}\"")],
        "{ctx}: {}",
        show(r)
    );
    assert_default_body(
        r,
        "Token validation error: no bearer token in the Authorization header",
        401,
        ctx,
    );
}

/// Polls `f` until it returns true; false after `timeout`.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
