//! Portcullis's JWT filter side by side with Envoy's native `jwt_authn` in the same
//! Envoy: listener `main` runs Portcullis, listener `native` runs `jwt_authn` with
//! the same keys (`local_jwks`), issuer and audience, `clock_skew_seconds: 0` and
//! `forward: true`. The whole token corpus goes through both; the allow/deny
//! decisions must agree, except where Portcullis differs on purpose (AES
//! semantics), and each such difference is asserted here explicitly (and listed in
//! docs/jwt.md).

mod common;

use std::sync::OnceLock;

use common::*;
use portcullis_testbed::client::{self, Response};
use portcullis_testbed::config::jwt_authn_filter;
use portcullis_testbed::servers::EchoUpstream;
use portcullis_testbed::tokens::{self, ALL_ALGS};
use portcullis_testbed::{Echoed, Envoy, EnvoyConfig};
use serde_json::{json, Value};

struct Fixture {
    envoy: Envoy,
    _echo: EchoUpstream,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let echo = EchoUpstream::start();
        let keys = jwks();
        let plugin = json!({
            "filters": [
                { "name": "jwt", "JWT": { "jwks": keys.clone(), "issuer": ISSUER, "audience": AUDIENCE } },
                { "name": "jwt-none", "JWT": {
                    "jwks": keys.clone(), "issuer": ISSUER, "audience": AUDIENCE,
                    "validAlgorithms": ["none", "RS256"] } }
            ],
            "rules": [
                { "host": "*", "path": "/none-listed/*", "filters": [ { "name": "jwt-none" } ] },
                { "host": "*", "path": "*", "filters": [ { "name": "jwt" } ] }
            ]
        });
        let native = jwt_authn_filter(json!({
            "providers": { "idp": {
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "local_jwks": { "inline_string": keys.to_string() },
                "forward": true,
                "clock_skew_seconds": 0
            } },
            "rules": [ { "match": { "prefix": "/" }, "requires": { "provider_name": "idp" } } ]
        }));
        let cfg = EnvoyConfig::new(echo.port())
            .plugin(plugin)
            .listener("native", vec![native])
            .build();
        Fixture {
            envoy: Envoy::start(&cfg),
            _echo: echo,
        }
    })
}

/// How a request is authenticated.
#[derive(Clone)]
enum Cred {
    None,
    Header(String),
    Bearer(String),
}

fn send(port: u16, path: &str, cred: &Cred) -> Response {
    match cred {
        Cred::None => client::get(port, path, &[]),
        Cred::Header(v) => client::get(port, path, &[("Authorization", v)]),
        Cred::Bearer(t) => get_with_token(port, path, t, &[]),
    }
}

fn allowed(status: u16) -> bool {
    status == 200
}

/// One corpus entry: the credential, the Portcullis path (`/cmp/x`: filter `jwt`;
/// `/none-listed/x`: filter `jwt-none` with `validAlgorithms: ["none", "RS256"]`),
/// the expected status from each side, and why they differ (when they do).
struct Case {
    label: String,
    path: &'static str,
    cred: Cred,
    portcullis: u16,
    native: u16,
    differs: Option<&'static str>,
}

fn agree(label: &str, cred: Cred, status: u16) -> Case {
    Case {
        label: label.to_string(),
        path: "/cmp/x",
        cred,
        portcullis: status,
        native: status,
        differs: None,
    }
}

fn differ(label: &str, cred: Cred, portcullis: u16, native: u16, why: &'static str) -> Case {
    Case {
        label: label.to_string(),
        path: "/cmp/x",
        cred,
        portcullis,
        native,
        differs: Some(why),
    }
}

fn bearer(t: String) -> Cred {
    Cred::Bearer(t)
}

fn corpus() -> Vec<Case> {
    let n = now();
    let mut cases = Vec::new();
    // Valid tokens, every algorithm, with and without the optional claims.
    for alg in ALL_ALGS {
        cases.push(agree(
            &format!("valid {alg}"),
            bearer(token(alg, Value::Null)),
            200,
        ));
    }
    for alg in ["RS256", "PS512", "ES256", "ES384", "EdDSA"] {
        cases.push(agree(
            &format!("{alg} without kid"),
            bearer(tokens::mint(alg, None, Value::Null, good_claims())),
            200,
        ));
    }
    cases.push(differ(
        "HS256 without kid",
        bearer(tokens::mint("HS256", None, Value::Null, good_claims())),
        200,
        401,
        "a token without kid: Portcullis uses the single key that fits its alg (hmac1); jwt_authn refuses it",
    ));
    cases.push(agree(
        "no exp claim",
        bearer(token("RS256", json!({"exp": null}))),
        200,
    ));
    cases.push(agree(
        "fractional exp",
        bearer(token("RS256", json!({"exp": (n + 3600) as f64 + 0.5}))),
        200,
    ));
    cases.push(agree(
        "aud array holding the audience",
        bearer(token("RS256", json!({"aud": ["other", AUDIENCE]}))),
        200,
    ));
    cases.push(agree(
        "typ at+jwt",
        bearer(tokens::mint(
            "RS256",
            Some("rsa1"),
            json!({"typ": "at+jwt"}),
            good_claims(),
        )),
        200,
    ));

    // Forgeries.
    let unsigned = tokens::unsigned(json!({"alg": "none", "typ": "JWT"}), good_claims());
    cases.push(agree("alg none", bearer(unsigned.clone()), 401));
    cases.push(Case {
        path: "/none-listed/x",
        ..differ(
            "alg none, listed in validAlgorithms",
            bearer(unsigned),
            200,
            401,
            "`none` in validAlgorithms accepts unsigned tokens (AES); jwt_authn never does",
        )
    });
    for (label, secret) in tokens::rsa_public_encodings("rsa1") {
        for kid in [Some("rsa1"), None] {
            let h = tokens::header("HS256", kid, &Value::Null);
            cases.push(agree(
                &format!("HS256 keyed with rsa1's {label}, kid {kid:?}"),
                bearer(tokens::sign_hmac_token(&secret, &h, &good_claims())),
                401,
            ));
        }
    }
    for alg in ["RS256", "ES384", "EdDSA", "HS512"] {
        let t = token(alg, Value::Null);
        let mut evil = good_claims();
        evil["sub"] = json!("admin");
        cases.push(agree(
            &format!("{alg} tampered payload"),
            bearer(tokens::tamper_payload(&t, evil)),
            401,
        ));
        cases.push(agree(
            &format!("{alg} flipped signature bit"),
            bearer(tokens::tamper_signature(&t)),
            401,
        ));
        cases.push(agree(
            &format!("{alg} stripped signature"),
            bearer(tokens::strip_signature(&t)),
            401,
        ));
    }
    cases.push(agree(
        "rsa2 signing as rsa1",
        bearer(tokens::mint_with_key(
            "rsa2",
            "RS256",
            Some("rsa1"),
            Value::Null,
            good_claims(),
        )),
        401,
    ));
    cases.push(agree(
        "ES256 under the P-384 key's kid",
        bearer(tokens::mint(
            "ES256",
            Some("ec384"),
            Value::Null,
            good_claims(),
        )),
        401,
    ));
    cases.push(agree(
        "unknown kid",
        bearer(tokens::mint(
            "RS256",
            Some("nope"),
            Value::Null,
            good_claims(),
        )),
        401,
    ));
    cases.push(agree("not a JWT", bearer("abc".to_string()), 401));
    cases.push(agree(
        "exp is a string",
        bearer(token("RS256", json!({"exp": (n + 3600).to_string()}))),
        401,
    ));
    cases.push(differ(
        "crit header",
        bearer(tokens::mint(
            "ES256",
            Some("ec256"),
            json!({"crit": ["exp"], "exp": 1}),
            good_claims(),
        )),
        401,
        200,
        "Portcullis rejects a crit extension it does not implement (RFC 7515 4.1.11); jwt_authn ignores crit",
    ));

    // Time claims. jwt_authn's clock_skew_seconds: 0 is proto3's "unset": 60 s.
    cases.push(agree(
        "expired 10 min ago",
        bearer(token("RS256", json!({"exp": n - 600}))),
        401,
    ));
    cases.push(agree(
        "nbf in 10 min",
        bearer(token("RS256", json!({"nbf": n + 600}))),
        401,
    ));
    cases.push(differ(
        "expired 30 s ago",
        bearer(token("RS256", json!({"exp": n - 30}))),
        401,
        200,
        "jwt_authn clock_skew_seconds: 0 means the default 60 s skew; Portcullis leeways default to 0",
    ));
    cases.push(differ(
        "nbf in 30 s",
        bearer(token("RS256", json!({"nbf": n + 30}))),
        401,
        200,
        "jwt_authn clock_skew_seconds: 0 means the default 60 s skew; Portcullis leeways default to 0",
    ));
    cases.push(differ(
        "iat in 10 min",
        bearer(token("RS256", json!({"iat": n + 600}))),
        401,
        200,
        "Portcullis rejects iat in the future (AES, jwt-go); jwt_authn does not check iat",
    ));

    // Issuer and audience.
    cases.push(agree(
        "wrong iss",
        bearer(token("RS256", json!({"iss": "https://evil.example"}))),
        401,
    ));
    cases.push(differ(
        "wrong aud",
        bearer(token("RS256", json!({"aud": "other"}))),
        401,
        403,
        "both deny; jwt_authn answers 403 for audiences, Portcullis 401 invalid_token (AES)",
    ));
    for (label, extra) in [
        ("no iss", json!({"iss": null})),
        ("empty iss", json!({"iss": ""})),
    ] {
        cases.push(differ(
            label,
            bearer(token("RS256", extra)),
            200,
            401,
            "a missing iss fails in Portcullis only with requireIssuer (AES); jwt_authn requires it",
        ));
    }
    for (label, extra) in [
        ("no aud", json!({"aud": null})),
        ("empty aud", json!({"aud": ""})),
        ("aud []", json!({"aud": []})),
    ] {
        cases.push(differ(
            label,
            bearer(token("RS256", extra)),
            200,
            403,
            "a missing aud fails in Portcullis only with requireAudience (AES); jwt_authn requires it (403)",
        ));
    }

    // No or malformed credentials.
    cases.push(agree("no Authorization header", Cred::None, 401));
    cases.push(agree(
        "Basic credentials",
        Cred::Header("Basic dXNlcjpwYXNz".to_string()),
        401,
    ));
    cases.push(differ(
        "Authorization: Bearer (no token)",
        Cred::Header("Bearer".to_string()),
        400,
        401,
        "both deny; Portcullis answers 400 invalid_request (RFC 6750, AES), jwt_authn 401 Jwt is missing",
    ));
    cases
}

#[test]
fn token_corpus_decisions_agree_with_jwt_authn_except_documented_differences() {
    let f = fx();
    let (main, native) = (f.envoy.port("main"), f.envoy.port("native"));
    let mut failures = Vec::new();
    for c in corpus() {
        // The table itself: rows that "agree" must agree on the decision, rows that
        // differ must really differ.
        match c.differs {
            None => assert_eq!(
                allowed(c.portcullis),
                allowed(c.native),
                "table row {}",
                c.label
            ),
            Some(_) => assert!(c.portcullis != c.native, "table row {}", c.label),
        }
        let p = send(main, c.path, &c.cred);
        let n = send(native, c.path, &c.cred);
        if p.status != c.portcullis || n.status != c.native {
            failures.push(format!(
                "{}: expected Portcullis {} / jwt_authn {}{}, got {} / {} (jwt_authn said {:?})",
                c.label,
                c.portcullis,
                c.native,
                c.differs.map(|w| format!(" ({w})")).unwrap_or_default(),
                p.status,
                n.status,
                n.body_str()
            ));
            continue;
        }
        // Allowed on either side: the token went on to the upstream (forward: true).
        for (side, r) in [("Portcullis", &p), ("jwt_authn", &n)] {
            if allowed(r.status) {
                let seen = Echoed::parse(&r.body);
                let expected = match &c.cred {
                    Cred::Bearer(t) => format!("Bearer {t}"),
                    Cred::Header(h) => h.clone(),
                    Cred::None => String::new(),
                };
                assert_eq!(
                    seen.header("authorization"),
                    Some(expected.as_str()),
                    "{}: {side} forwards the token",
                    c.label
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus entries behaved differently:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn denials_differ_in_shape_from_jwt_authn() {
    let f = fx();
    let expired = token("ES256", json!({"exp": now() - 600}));
    // Portcullis: RFC 6750 with error_description, realm = filter name, JSON body.
    let p = get_with_token(f.envoy.port("main"), "/cmp/x", &expired, &[]);
    assert_invalid_token(&p, "jwt", "token is expired", "Portcullis");
    // jwt_authn: realm = the request URL, no error_description, text/plain body.
    let n = get_with_token(f.envoy.port("native"), "/cmp/x", &expired, &[]);
    assert_eq!(n.status, 401);
    assert_eq!(
        n.header("www-authenticate"),
        Some("Bearer realm=\"http://localhost/cmp/x\", error=\"invalid_token\"")
    );
    assert_eq!(n.header("content-type"), Some("text/plain"));
    assert_eq!(n.body_str(), "Jwt is expired");
    // No token.
    let p = client::get(f.envoy.port("main"), "/cmp/x", &[]);
    assert_no_token(&p, "jwt", "Portcullis, no token");
    let n = client::get(f.envoy.port("native"), "/cmp/x", &[]);
    assert_eq!(n.status, 401);
    assert_eq!(
        n.header("www-authenticate"),
        Some("Bearer realm=\"http://localhost/cmp/x\"")
    );
    assert_eq!(n.body_str(), "Jwt is missing");
}
