//! The JWT filter end to end: every algorithm with inline and remote keys, the
//! forgeries it must refuse (RFC 6750 answers), claim and scope policy, injected
//! headers (and that clients can never supply them), and templated error responses.
//!
//! One Envoy for the whole file (its rules route each path prefix to a differently
//! configured JWT filter); tests only read shared state, so they run in parallel.

mod common;

use std::sync::OnceLock;

use common::*;
use portcullis_testbed::client;
use portcullis_testbed::servers::{EchoUpstream, Reply, ScriptedServer};
use portcullis_testbed::tokens::{self, ALL_ALGS};
use portcullis_testbed::{Envoy, EnvoyConfig};
use serde_json::{json, Value};

/// The errorResponse body template of the AES JWT Filter article.
const AES_BODY_TEMPLATE: &str = r#"{
  "errorMessage": {{ .message | json "  " }},
  {{- if .error.ValidationError }}
  "altErrorMessage": {{ if eq .error.ValidationError.Errors 16 }}"expired"{{ else }}"invalid"{{ end }},
  "errorCode": {{ .error.ValidationError.Errors | json "  "}},
  {{- end }}
  "httpStatus": "{{ .status_code }}",
  "requestId": {{ .request_id | json "  " }}
}"#;

struct Fixture {
    envoy: Envoy,
    jwks_server: ScriptedServer,
    _echo: EchoUpstream,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let echo = EchoUpstream::start();
        let jwks_server = ScriptedServer::start();
        jwks_server.set(
            "/jwks.json",
            Reply::new(200)
                .header("content-type", "application/json")
                .body(testdata("jwks.json")),
        );
        let keys = jwks();
        let base = |extra: Value| tokens::merge(json!({"jwks": keys.clone()}), extra);
        let plugin = json!({
            "clusters": { "jwks.test": "jwks" },
            "filters": [
                { "name": "jwt", "JWT": base(json!({
                    "issuer": ISSUER, "audience": AUDIENCE,
                    "injectRequestHeaders": [
                        { "name": "X-Sub", "value": "{{ .token.Claims.sub }}" },
                        { "name": "X-Alg", "value": "{{ .token.Header.alg }}" }
                    ]
                })) },
                { "name": "remote", "JWT": {
                    "jwksURI": "http://jwks.test/jwks.json",
                    "issuer": ISSUER, "audience": AUDIENCE,
                    "injectRequestHeaders": [
                        { "name": "X-Sub", "value": "{{ .token.Claims.sub }}" },
                        { "name": "X-Alg", "value": "{{ .token.Header.alg }}" }
                    ]
                } },
                { "name": "realm", "JWT": base(json!({
                    "issuer": ISSUER, "audience": AUDIENCE,
                    "errorResponse": { "realm": "my-realm" }
                })) },
                { "name": "strict", "JWT": base(json!({
                    "issuer": ISSUER, "requireIssuer": true,
                    "audience": AUDIENCE, "requireAudience": true,
                    "requireExpiresAt": true, "requireNotBefore": true, "requireIssuedAt": true
                })) },
                { "name": "leeway", "JWT": base(json!({
                    "issuer": ISSUER, "audience": AUDIENCE,
                    "leewayForExpiresAt": "1m", "leewayForNotBefore": "1m",
                    "leewayForIssuedAt": "1m"
                })) },
                { "name": "custom", "JWT": base(json!({
                    "issuer": ISSUER, "audience": AUDIENCE,
                    "errorResponse": {
                        "headers": [
                            { "name": "Content-Type", "value": "application/json" },
                            { "name": "X-Error-Status", "value": "{{ .status_code }}" },
                            { "name": "X-Error-UA", "value": "{{ .httpRequestHeader.Get \"User-Agent\" }}" }
                        ],
                        "bodyTemplate": AES_BODY_TEMPLATE
                    }
                })) }
            ],
            "rules": [
                { "host": "*", "path": "/inline/*", "filters": [ { "name": "jwt" } ] },
                { "host": "*", "path": "/remote/*", "filters": [ { "name": "remote" } ] },
                { "host": "*", "path": "/scoped/*",
                  "filters": [ { "name": "jwt", "arguments": { "scope": ["read", "write"] } } ] },
                { "host": "*", "path": "/continue/*",
                  "filters": [ { "name": "jwt", "onDeny": "continue" } ] },
                { "host": "*", "path": "/realm/*", "filters": [ { "name": "realm" } ] },
                { "host": "*", "path": "/strict/*", "filters": [ { "name": "strict" } ] },
                { "host": "*", "path": "/leeway/*", "filters": [ { "name": "leeway" } ] },
                { "host": "*", "path": "/custom/*", "filters": [ { "name": "custom" } ] }
            ]
        });
        let cfg = EnvoyConfig::new(echo.port())
            .plugin(plugin)
            .cluster("jwks", jwks_server.port())
            .build();
        Fixture {
            envoy: Envoy::start(&cfg),
            jwks_server,
            _echo: echo,
        }
    })
}

fn port() -> u16 {
    fx().envoy.port("main")
}

fn call(path: &str, token: &str) -> client::Response {
    get_with_token(port(), path, token, &[])
}

// ---- 1. every algorithm ----------------------------------------------------

fn every_algorithm_passes(prefix: &str) {
    let f = fx();
    for alg in ALL_ALGS {
        let t = token(alg, Value::Null);
        let r = call(&format!("{prefix}/{alg}"), &t);
        let seen = passed(&f.envoy, &r, &format!("{prefix}: {alg} token"));
        assert_eq!(seen.path, format!("{prefix}/{alg}"));
        assert_eq!(seen.headers_all("x-sub"), vec!["user-1"], "{alg}");
        assert_eq!(seen.headers_all("x-alg"), vec![*alg], "{alg}");
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {t}").as_str()),
            "{alg}: the token goes on to the upstream"
        );
    }
}

#[test]
fn every_algorithm_is_accepted_with_inline_jwks() {
    every_algorithm_passes("/inline");
}

#[test]
fn every_algorithm_is_accepted_with_remote_jwks() {
    every_algorithm_passes("/remote");
    let f = fx();
    let fetches = f.jwks_server.requests_to("/jwks.json");
    assert!(!fetches.is_empty(), "the JWK Set was never fetched");
    assert_eq!(fetches[0].method, "GET");
    assert_eq!(
        fetches[0].header("host"),
        Some("jwks.test"),
        "the callout's authority is the URL's"
    );
}

#[test]
fn token_without_kid_passes_when_exactly_one_key_fits() {
    let f = fx();
    for alg in ["RS256", "ES256", "EdDSA", "HS256"] {
        let t = tokens::mint(alg, None, Value::Null, good_claims());
        passed(&f.envoy, &call("/inline/nokid", &t), alg);
    }
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    let f = fx();
    let t = token("ES256", Value::Null);
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let auth = format!("{scheme} {t}");
        let r = client::get(port(), "/inline/case", &[("Authorization", &auth)]);
        passed(&f.envoy, &r, scheme);
    }
}

// ---- 2. forgeries and RFC 6750 answers --------------------------------------

#[test]
fn missing_token_gets_401_with_bare_realm() {
    let r = client::get(port(), "/inline/x", &[]);
    assert_no_token(&r, "jwt", "no Authorization header");
    // Another scheme is no bearer token either.
    let r = client::get(
        port(),
        "/inline/x",
        &[("Authorization", "Basic dXNlcjpwYXNz")],
    );
    assert_no_token(&r, "jwt", "Basic credentials");
}

#[test]
fn bearer_without_token_gets_400_invalid_request() {
    let r = client::get(port(), "/inline/x", &[("Authorization", "Bearer")]);
    assert_eq!(r.status, 400, "{}", show(&r));
    assert_eq!(
        r.headers_all("www-authenticate"),
        vec![
            "Bearer error=\"invalid_request\", error_description=\"Authorization header has no bearer token\", realm=\"jwt\""
        ],
        "{}",
        show(&r)
    );
    assert_default_body(
        &r,
        "Authorization header has no bearer token",
        400,
        "Bearer",
    );
    let r = client::get(port(), "/inline/x", &[("Authorization", "Bearer a b")]);
    assert_eq!(r.status, 400, "{}", show(&r));
    assert!(
        r.header("www-authenticate").is_some_and(|w| w
            .starts_with("Bearer error=\"invalid_request\", error_description=")
            && w.ends_with(", realm=\"jwt\"")),
        "{}",
        show(&r)
    );
}

#[test]
fn error_response_realm_overrides_the_filter_name() {
    let r = client::get(port(), "/realm/x", &[]);
    assert_no_token(&r, "my-realm", "no token");
    let expired = token("RS256", json!({"exp": now() - 600}));
    assert_invalid_token(
        &call("/realm/x", &expired),
        "my-realm",
        "token is expired",
        "expired",
    );
    let r = client::get(port(), "/realm/x", &[("Authorization", "Bearer")]);
    assert_eq!(r.status, 400);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|w| w.ends_with("realm=\"my-realm\"")),
        "{}",
        show(&r)
    );
}

#[test]
fn alg_none_is_refused_when_not_listed() {
    let claims = good_claims();
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "none", "typ": "JWT", "kid": "rsa1"}),
        json!({"alg": "none"}),
    ] {
        let t = tokens::unsigned(header.clone(), claims.clone());
        assert_invalid_token(
            &call("/inline/none", &t),
            "jwt",
            "signing method none is not allowed",
            &format!("unsigned token {header}"),
        );
    }
    // `alg: none` with a real signature attached does not pass either.
    let signed = token("RS256", Value::Null);
    let sig = signed.rsplit_once('.').expect("3 parts").1;
    let t = format!(
        "{}{sig}",
        tokens::unsigned(json!({"alg": "none", "typ": "JWT"}), claims)
    );
    assert_invalid_token(
        &call("/inline/none", &t),
        "jwt",
        "signing method none is not allowed",
        "alg none with a signature",
    );
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let claims = good_claims();
    for (label, secret) in tokens::rsa_public_encodings("rsa1") {
        for alg in ["HS256", "HS384", "HS512"] {
            // Under the RSA key's kid: no HMAC key is named rsa1.
            let header = tokens::header(alg, Some("rsa1"), &Value::Null);
            let t = tokens::sign_hmac_token(&secret, &header, &claims);
            assert_invalid_token(
                &call("/inline/confusion", &t),
                "jwt",
                "unknown key id \"rsa1\"",
                &format!("{alg} keyed with rsa1's {label}, kid rsa1"),
            );
            // Without a kid: the only HMAC key (hmac1) does not verify it.
            let header = tokens::header(alg, None, &Value::Null);
            let t = tokens::sign_hmac_token(&secret, &header, &claims);
            assert_invalid_token(
                &call("/inline/confusion", &t),
                "jwt",
                "signature is invalid",
                &format!("{alg} keyed with rsa1's {label}, no kid"),
            );
        }
    }
}

#[test]
fn tampered_and_stripped_tokens_are_refused() {
    for alg in ALL_ALGS {
        let t = token(alg, Value::Null);
        let mut evil = good_claims();
        evil["sub"] = json!("admin");
        assert_invalid_token(
            &call("/inline/t", &tokens::tamper_payload(&t, evil)),
            "jwt",
            "signature is invalid",
            &format!("{alg}: tampered payload"),
        );
        assert_invalid_token(
            &call("/inline/t", &tokens::tamper_signature(&t)),
            "jwt",
            "signature is invalid",
            &format!("{alg}: flipped signature bit"),
        );
        assert_invalid_token(
            &call("/inline/t", &tokens::strip_signature(&t)),
            "jwt",
            "signature is invalid",
            &format!("{alg}: stripped signature"),
        );
    }
}

#[test]
fn a_different_key_under_a_known_kid_is_refused() {
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        let t = tokens::mint_with_key("rsa2", alg, Some("rsa1"), Value::Null, good_claims());
        assert_invalid_token(
            &call("/inline/rsa2", &t),
            "jwt",
            "signature is invalid",
            &format!("{alg} signed by rsa2 as rsa1"),
        );
    }
    // And a key of the wrong type under another key's kid.
    let t = tokens::mint("ES256", Some("ec384"), Value::Null, good_claims());
    assert_invalid_token(
        &call("/inline/ec", &t),
        "jwt",
        "unknown key id \"ec384\"",
        "ES256 under the P-384 key's kid",
    );
}

#[test]
fn expired_not_yet_valid_and_future_iat_are_refused() {
    let n = now();
    for (extra, description) in [
        (json!({"exp": n - 30}), "token is expired"),
        (json!({"exp": n - 86400}), "token is expired"),
        (json!({"nbf": n + 600}), "token is not valid yet"),
        (json!({"iat": n + 600}), "token used before issued"),
    ] {
        for alg in ["RS256", "ES256", "HS256"] {
            assert_invalid_token(
                &call("/inline/time", &token(alg, extra.clone())),
                "jwt",
                description,
                &format!("{alg} {extra}"),
            );
        }
    }
}

#[test]
fn wrong_issuer_and_audience_are_refused() {
    for (extra, description) in [
        (json!({"iss": "https://evil.example"}), "invalid issuer"),
        (json!({"iss": "https://issuer.example/"}), "invalid issuer"),
        (json!({"aud": "other"}), "invalid audience"),
        (json!({"aud": ["other", "more"]}), "invalid audience"),
        (json!({"aud": "API"}), "invalid audience"),
    ] {
        assert_invalid_token(
            &call("/inline/claims", &token("RS256", extra.clone())),
            "jwt",
            description,
            &extra.to_string(),
        );
    }
}

#[test]
fn unknown_kid_is_refused() {
    let t = tokens::mint("RS256", Some("nope"), Value::Null, good_claims());
    assert_invalid_token(
        &call("/inline/kid", &t),
        "jwt",
        "unknown key id \"nope\"",
        "kid nope",
    );
}

#[test]
fn crit_header_is_refused() {
    for (crit, name) in [
        (json!({"crit": ["exp"], "exp": 1}), "exp"),
        (
            json!({"crit": ["http://ext.example/x"], "http://ext.example/x": true}),
            "http://ext.example/x",
        ),
        (json!({"crit": ["b64"], "b64": false}), "b64"),
    ] {
        let t = tokens::mint("ES256", Some("ec256"), crit.clone(), good_claims());
        assert_invalid_token(
            &call("/inline/crit", &t),
            "jwt",
            &format!("unsupported critical header parameter \"{name}\""),
            &crit.to_string(),
        );
    }
}

#[test]
fn garbage_tokens_are_refused_as_malformed() {
    for (t, why) in [
        ("abc", "token must have three segments"),
        ("a.b.c.d", "token must have three segments"),
        ("!!!.e30.", "header is not base64url"),
    ] {
        assert_invalid_token(
            &call("/inline/garbage", t),
            "jwt",
            &format!("token is malformed: {why}"),
            t,
        );
    }
}

// ---- 3. claims configuration -------------------------------------------------

#[test]
fn audience_and_issuer_are_checked_only_when_present_unless_required() {
    let f = fx();
    // Filter `jwt`: audience and issuer set, not required.
    for extra in [
        json!({"aud": null}),
        json!({"iss": null}),
        json!({"aud": null, "iss": null, "exp": null, "iat": null}),
        json!({"aud": ["other", "api"]}),
        json!({"aud": ""}),
    ] {
        passed(
            &f.envoy,
            &call("/inline/opt", &token("ES256", extra.clone())),
            &format!("not required: {extra}"),
        );
    }
    // Filter `strict`: every require* set.
    let full = json!({"nbf": now() - 10});
    passed(
        &f.envoy,
        &call("/strict/ok", &token("ES256", full.clone())),
        "strict, all claims present",
    );
    for (missing, claim) in [
        ("exp", "exp"),
        ("nbf", "nbf"),
        ("iat", "iat"),
        ("iss", "iss"),
        ("aud", "aud"),
    ] {
        let mut extra = full.clone();
        extra[missing] = Value::Null;
        assert_invalid_token(
            &call("/strict/missing", &token("ES256", extra)),
            "strict",
            &format!("token has no \"{claim}\" claim"),
            &format!("strict without {missing}"),
        );
    }
    // An empty aud counts as missing (jwt-go).
    assert_invalid_token(
        &call(
            "/strict/empty",
            &token("ES256", json!({"nbf": now() - 10, "aud": []})),
        ),
        "strict",
        "token has no \"aud\" claim",
        "strict with aud []",
    );
    assert_invalid_token(
        &call(
            "/strict/wrong",
            &token("ES256", json!({"nbf": now() - 10, "aud": "x"})),
        ),
        "strict",
        "invalid audience",
        "strict with aud x",
    );
}

#[test]
fn leeways_accept_slightly_stale_tokens() {
    let f = fx();
    let n = now();
    for (extra, description) in [
        (json!({"exp": n - 30}), "token is expired"),
        (json!({"nbf": n + 30}), "token is not valid yet"),
        (json!({"iat": n + 30}), "token used before issued"),
    ] {
        let t = token("RS256", extra.clone());
        passed(
            &f.envoy,
            &call("/leeway/x", &t),
            &format!("1m leeway: {extra}"),
        );
        assert_invalid_token(
            &call("/inline/x", &t),
            "jwt",
            description,
            &format!("no leeway: {extra}"),
        );
    }
    // Beyond the leeway, refused.
    assert_invalid_token(
        &call("/leeway/x", &token("RS256", json!({"exp": n - 120}))),
        "leeway",
        "token is expired",
        "expired 2m ago, 1m leeway",
    );
    assert_invalid_token(
        &call("/leeway/x", &token("RS256", json!({"nbf": n + 120}))),
        "leeway",
        "token is not valid yet",
        "nbf in 2m, 1m leeway",
    );
}

// ---- 4. scopes ----------------------------------------------------------------

#[test]
fn rule_scopes_are_required() {
    let f = fx();
    for scope in [
        json!("read write"),
        json!("write read admin"),
        json!(["read", "write"]),
        json!(["write", "x", "read"]),
    ] {
        passed(
            &f.envoy,
            &call(
                "/scoped/x",
                &token("RS256", json!({"scope": scope.clone()})),
            ),
            &format!("scope {scope}"),
        );
    }
    for (scope, lacking) in [
        (json!("read"), "write"),
        (json!(["read"]), "write"),
        (json!("write"), "read"),
        (json!("readwrite"), "read write"),
        (json!("READ WRITE"), "read write"),
        (Value::Null, "read write"),
    ] {
        let r = call(
            "/scoped/x",
            &token("RS256", json!({"scope": scope.clone()})),
        );
        let message = format!("insufficient scope: token lacks {lacking}");
        assert_eq!(r.status, 403, "scope {scope}: {}", show(&r));
        assert_eq!(
            r.headers_all("www-authenticate"),
            vec![format!(
                "Bearer error=\"insufficient_scope\", error_description=\"{message}\", scope=\"read write\", realm=\"jwt\""
            )],
            "scope {scope}"
        );
        assert_default_body(&r, &message, 403, &format!("scope {scope}"));
    }
    // The token is still checked first.
    let expired = token("RS256", json!({"scope": "read write", "exp": now() - 60}));
    assert_invalid_token(
        &call("/scoped/x", &expired),
        "jwt",
        "token is expired",
        "expired, scopes fine",
    );
}

// ---- 5. injected headers --------------------------------------------------------

/// Client copies of the injected headers, in several cases and repeated.
const SPOOFED: &[(&str, &str)] = &[
    ("X-Sub", "evil"),
    ("x-sub", "evil-2"),
    ("X-SUB", "evil-3"),
    ("x-alg", "none"),
    ("X-Other", "kept"),
];

#[test]
fn injected_headers_reach_the_upstream_and_client_copies_never_do() {
    let f = fx();
    for alg in ["RS256", "EdDSA", "HS512"] {
        let r = get_with_token(
            port(),
            "/inline/inject",
            &token(alg, json!({"sub": "alice"})),
            SPOOFED,
        );
        let seen = passed(&f.envoy, &r, alg);
        assert_eq!(seen.headers_all("x-sub"), vec!["alice"], "{alg}");
        assert_eq!(seen.headers_all("x-alg"), vec![alg], "{alg}");
        assert_eq!(seen.headers_all("x-other"), vec!["kept"], "{alg}");
    }
}

#[test]
fn client_copies_are_removed_when_the_filter_denies_with_on_deny_continue() {
    let f = fx();
    // No token, a bad token, an expired token: the filter denies, the chain goes on.
    let no_token = client::get(port(), "/continue/x", SPOOFED);
    let bad = get_with_token(
        port(),
        "/continue/x",
        &tokens::tamper_signature(&token("ES256", Value::Null)),
        SPOOFED,
    );
    let expired = get_with_token(
        port(),
        "/continue/x",
        &token("ES256", json!({"exp": now() - 60})),
        SPOOFED,
    );
    for (label, r) in [("no token", no_token), ("bad", bad), ("expired", expired)] {
        let seen = passed(&f.envoy, &r, label);
        assert_eq!(seen.headers_all("x-sub"), Vec::<&str>::new(), "{label}");
        assert_eq!(seen.headers_all("x-alg"), Vec::<&str>::new(), "{label}");
        assert_eq!(seen.headers_all("x-other"), vec!["kept"], "{label}");
    }
    // A valid token on the same rule: injected as usual.
    let r = get_with_token(port(), "/continue/x", &token("ES256", Value::Null), SPOOFED);
    let seen = passed(&f.envoy, &r, "valid on onDeny: continue");
    assert_eq!(seen.headers_all("x-sub"), vec!["user-1"]);
    assert_eq!(seen.headers_all("x-alg"), vec!["ES256"]);
}

#[test]
fn client_copies_are_removed_when_the_filter_denies_and_breaks() {
    // Nothing reaches the upstream at all: the client gets the 401 itself.
    let r = client::get(port(), "/inline/x", SPOOFED);
    assert_no_token(&r, "jwt", "spoofed headers, no token");
}

// ---- 6. templated error responses --------------------------------------------------

fn request_id_of(body: &Value) -> String {
    let id = body["requestId"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        id.len(),
        36,
        "requestId is Envoy's x-request-id UUID: {body}"
    );
    id
}

#[test]
fn error_response_headers_and_body_template_render_on_401() {
    let expired = token("RS256", json!({"exp": now() - 60}));
    let r = get_with_token(port(), "/custom/x", &expired, &[("User-Agent", "probe/1")]);
    assert_eq!(r.status, 401, "{}", show(&r));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-error-status"), Some("401"), "{}", show(&r));
    assert_eq!(r.header("x-error-ua"), Some("probe/1"), "{}", show(&r));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\", error_description=\"token is expired\", realm=\"custom\"")
    );
    let body = r.json();
    let id = request_id_of(&body);
    assert_eq!(
        r.body_str(),
        format!(
            "{{\n  \"errorMessage\": \"Token validation error: token is expired\",\n  \"altErrorMessage\": \"expired\",\n  \"errorCode\": 16,\n  \"httpStatus\": \"401\",\n  \"requestId\": \"{id}\"\n}}"
        ),
        "the AES body template, rendered"
    );

    // Any other validation error: "invalid" with its jwt-go bit.
    for (t, bits, message) in [
        (
            tokens::tamper_signature(&token("ES256", Value::Null)),
            4,
            "signature is invalid",
        ),
        (token("ES256", json!({"aud": "x"})), 8, "invalid audience"),
        (token("ES256", json!({"iss": "x"})), 64, "invalid issuer"),
        (
            token("ES256", json!({"nbf": now() + 600})),
            128,
            "token is not valid yet",
        ),
        (
            token("ES256", json!({"iat": now() + 600})),
            32,
            "token used before issued",
        ),
        (
            tokens::mint("ES256", Some("zz"), Value::Null, good_claims()),
            2,
            "unknown key id \"zz\"",
        ),
        (
            "a.b".to_string(),
            1,
            "token is malformed: token must have three segments",
        ),
    ] {
        let r = call("/custom/x", &t);
        assert_eq!(r.status, 401, "{message}: {}", show(&r));
        let body = r.json();
        let id = request_id_of(&body);
        assert_eq!(
            body,
            json!({
                "errorMessage": format!("Token validation error: {message}"),
                "altErrorMessage": "invalid",
                "errorCode": bits,
                "httpStatus": "401",
                "requestId": id
            }),
            "{message}"
        );
    }

    // No token: no ValidationError, so no altErrorMessage/errorCode.
    let r = client::get(port(), "/custom/x", &[("User-Agent", "probe/2")]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"custom\"")
    );
    assert_eq!(r.header("x-error-ua"), Some("probe/2"));
    let body = r.json();
    let id = request_id_of(&body);
    assert_eq!(
        body,
        json!({
            "errorMessage": "Token validation error: no bearer token in the Authorization header",
            "httpStatus": "401",
            "requestId": id
        })
    );
}
