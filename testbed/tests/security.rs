//! Security claims of `docs/security.md` not already shown by the filter suites:
//! `jku`/`x5u`/`jwk` token headers are never followed (the attacker's server,
//! reachable through a configured cluster, sees nothing), tokens for another
//! audience are refused, injected headers cannot be spoofed through case variants
//! or duplicates, oversized and numerous cookies and huge tokens are answered
//! without harm, and truncated or extended session cookies mean a new login.
//!
//! One Envoy: a JWT filter, an OAuth2 filter (a scripted IdP serving discovery
//! and keys; sessions minted with the core's session API) and a rule without
//! filters.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use portcullis_testbed::client::{self, Response};
use portcullis_testbed::servers::{EchoUpstream, Reply, ScriptedServer};
use portcullis_testbed::soak::{scripted_idp, sealed_session};
use portcullis_testbed::tokens;
use portcullis_testbed::{Envoy, EnvoyConfig};
use serde_json::{json, Value};

const KEY: [u8; 32] = [9; 32];
const HOST: &str = "app.test";

struct Fixture {
    envoy: Envoy,
    attacker: ScriptedServer,
    _idp: ScriptedServer,
    /// A valid `portcullis_session.login` value.
    session: String,
    _echo: EchoUpstream,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let echo = EchoUpstream::start();
        let attacker = ScriptedServer::start();
        // Were `jku` followed, this set would verify the attacker's tokens.
        attacker.set("/jwks.json", Reply::json(200, &tokens::jwks_of(&["rsa2"])));
        attacker.set_default(Reply::new(200));
        let (idp, issuer) = scripted_idp();
        let key_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, KEY);
        let mut clusters = serde_json::Map::new();
        clusters.insert("attacker.test".into(), json!("attacker"));
        clusters.insert(format!("127.0.0.1:{}", idp.port()), json!("idp"));
        let plugin = json!({
            "clusters": clusters,
            "filters": [
                { "name": "jwt", "JWT": {
                    "jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE,
                    "injectRequestHeaders": [ { "name": "X-Sub", "value": "{{ .token.Claims.sub }}" } ] } },
                { "name": "login", "OAuth2": {
                    "authorizationURL": issuer, "clientID": "app", "secret": "s",
                    "protectedOrigins": [ { "origin": format!("http://{HOST}") } ],
                    "accessTokenValidation": "jwt",
                    "sessionKeys": [ key_b64 ],
                    "injectRequestHeaders": [ { "name": "X-User", "value": "{{ .idToken.Claims.sub }}" } ] } }
            ],
            "rules": [
                { "host": "*", "path": "/jwt/*", "filters": [ { "name": "jwt" } ] },
                { "host": "*", "path": "/app/*", "filters": [ { "name": "login" } ] },
                { "host": "*", "path": "/open/*", "filters": [] }
            ]
        });
        let cfg = EnvoyConfig::new(echo.port())
            .plugin(plugin)
            .cluster("attacker", attacker.port())
            .cluster("idp", idp.port())
            .build();
        let envoy = Envoy::start(&cfg);
        let session = sealed_session(&KEY, "login", &issuer, "app", tokens::now())
            .unwrap_or_else(|e| panic!("{e}"));
        let fx = Fixture {
            envoy,
            attacker,
            _idp: idp,
            session,
            _echo: echo,
        };
        // Ready once the IdP's discovery and keys loaded.
        assert!(
            eventually(Duration::from_secs(20), || app(&fx, &fx.session, &[]).status == 200),
            "sessions never opened; log:\n{}",
            fx.envoy.log_tail(30)
        );
        fx
    })
}

fn port() -> u16 {
    fx().envoy.port("main")
}

fn app(f: &Fixture, session: &str, extra: &[(&str, &str)]) -> Response {
    let cookie = format!("portcullis_session.login={session}");
    let mut headers: Vec<(&str, &str)> = vec![("Host", HOST), ("Cookie", cookie.as_str())];
    headers.extend_from_slice(extra);
    client::get(f.envoy.port("main"), "/app/x", &headers)
}

/// A 303 to the IdP's authorization endpoint (a new login), no session set.
fn assert_login(r: &Response, ctx: &str) {
    assert_eq!(r.status, 303, "{ctx}: {}", show(r));
    let loc = r.header("location").unwrap_or_default();
    assert!(loc.contains("/auth?"), "{ctx}: Location {loc}");
    assert!(
        !r.headers_all("set-cookie")
            .iter()
            .any(|c| c.starts_with("portcullis_session.login=") && !c.contains("Max-Age=0")),
        "{ctx}: no session may be set: {:?}",
        r.headers
    );
}

// ---- JWT: RFC 8725 -----------------------------------------------------------

#[test]
fn jku_x5u_and_embedded_jwk_are_never_followed() {
    let f = fx();
    let header = json!({
        "jku": "http://attacker.test/jwks.json",
        "x5u": "http://attacker.test/cert.pem",
    });
    // The attacker's key, named by kid, announced by jku/x5u.
    let evil = tokens::mint_with_key("rsa2", "RS256", Some("rsa2"), header.clone(), good_claims());
    let r = get_with_token(port(), "/jwt/x", &evil, &[]);
    assert_eq!(r.status, 401, "{}", show(&r));
    // The attacker's key under our kid.
    let evil = tokens::mint_with_key("rsa2", "RS256", Some("rsa1"), header.clone(), good_claims());
    assert_eq!(get_with_token(port(), "/jwt/x", &evil, &[]).status, 401);
    // The attacker's public key embedded in the header (`jwk`), no kid.
    let embedded = json!({ "jwk": tokens::jwk("rsa2") });
    let evil = tokens::mint_with_key("rsa2", "RS256", None, embedded, good_claims());
    assert_eq!(get_with_token(port(), "/jwt/x", &evil, &[]).status, 401);
    // A genuine token carrying jku/x5u: the headers are ignored, the token is
    // verified against the configured keys only.
    let good = tokens::mint("RS256", Some("rsa1"), header, good_claims());
    passed(
        &f.envoy,
        &get_with_token(port(), "/jwt/x", &good, &[]),
        "jku ignored",
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        f.attacker.requests().is_empty(),
        "the attacker's server was contacted: {:?}",
        f.attacker.requests()
    );
}

#[test]
fn tokens_for_another_audience_or_issuer_are_refused() {
    // Cross-JWT confusion: a token minted for another service (an ID token for
    // a client, a token of another API) by the same issuer and keys.
    for (aud, ctx) in [
        (json!("app"), "an ID token for client app"),
        (json!("other-api"), "another API's token"),
        (json!(["other-api", "more"]), "several other audiences"),
    ] {
        let t = token("RS256", json!({ "aud": aud }));
        let r = get_with_token(port(), "/jwt/x", &t, &[]);
        assert_eq!(r.status, 401, "{ctx}: {}", show(&r));
        assert!(
            r.header("www-authenticate")
                .is_some_and(|w| w.contains("invalid_token")),
            "{ctx}: {}",
            show(&r)
        );
    }
    let t = token("ES256", json!({ "iss": "https://evil.example" }));
    assert_eq!(get_with_token(port(), "/jwt/x", &t, &[]).status, 401);
}

#[test]
fn oversized_tokens_are_refused_without_harm() {
    let f = fx();
    // Tokens over 16 KiB (core MAX_TOKEN_LEN) are refused before any decoding,
    // signed or not.
    let huge = format!(
        "{}.{}.{}",
        "e".repeat(20_000),
        "e".repeat(20_000),
        "e".repeat(5_000)
    );
    let signed = token("RS256", json!({ "padding": "p".repeat(20_000) }));
    for (t, ctx) in [
        (huge.as_str(), "45 KB of garbage"),
        (signed.as_str(), "a signed 27 KB token"),
    ] {
        assert_invalid_token(
            &get_with_token(port(), "/jwt/x", t, &[]),
            "jwt",
            "token is malformed: token is too long",
            ctx,
        );
    }
    // Under the limit, a token with large claims is just a token.
    let big = token("RS256", json!({ "padding": "p".repeat(10_000) }));
    passed(
        &f.envoy,
        &get_with_token(port(), "/jwt/x", &big, &[]),
        "10 KB of claims",
    );
}

// ---- injected headers --------------------------------------------------------

fn spoofs(name: &'static str) -> Vec<(&'static str, &'static str)> {
    let upper: &'static str = Box::leak(name.to_ascii_uppercase().into_boxed_str());
    let lower: &'static str = Box::leak(name.to_ascii_lowercase().into_boxed_str());
    vec![
        (name, "spoof-1"),
        (upper, "spoof-2"),
        (lower, "spoof-3"),
        (lower, ""),
        (name, "spoof-4, spoof-5"),
    ]
}

#[test]
fn injected_headers_cannot_be_spoofed_with_case_variants_or_duplicates() {
    let f = fx();
    let extra = spoofs("X-Sub");
    // The filter passes: exactly its own value.
    let t = token("RS256", json!({ "sub": "alice" }));
    let seen = passed(
        &f.envoy,
        &get_with_token(port(), "/jwt/x", &t, &extra),
        "jwt",
    );
    assert_eq!(
        seen.headers_all("x-sub"),
        vec!["alice"],
        "{:?}",
        seen.headers
    );
    // A rule without filters: none of the client's copies.
    let seen = passed(&f.envoy, &client::get(port(), "/open/x", &extra), "open");
    assert!(seen.headers_all("x-sub").is_empty(), "{:?}", seen.headers);
    // No rule at all matches: still none.
    let seen = passed(
        &f.envoy,
        &client::get(port(), "/elsewhere", &extra),
        "no rule",
    );
    assert!(seen.headers_all("x-sub").is_empty(), "{:?}", seen.headers);
    // The OAuth2 filter's header, and the Authorization it sets.
    let mut extra = spoofs("X-User");
    extra.push(("authorization", "Bearer spoofed"));
    extra.push(("AUTHORIZATION", "Basic c3Bvb2Y6c3Bvb2Y="));
    let r = app(f, &f.session, &extra);
    let seen = passed(&f.envoy, &r, "oauth2");
    assert_eq!(
        seen.headers_all("x-user"),
        vec!["soak-user"],
        "{:?}",
        seen.headers
    );
    let auth = seen.headers_all("authorization");
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert!(
        auth.first().is_some_and(|a| a.starts_with("Bearer ey")),
        "{auth:?}"
    );
}

// ---- cookies -----------------------------------------------------------------

#[test]
fn truncated_or_extended_session_cookies_mean_a_new_login() {
    let f = fx();
    let s = &f.session;
    for cut in [1, 3, 10, s.len() / 2, s.len() - 2, s.len() - 1] {
        let truncated = s.get(..cut).unwrap_or_default();
        assert_login(&app(f, truncated, &[]), &format!("truncated to {cut}"));
    }
    assert_login(&app(f, &format!("{s}A"), &[]), "one character more");
    assert_login(&app(f, &format!("{s}.x"), &[]), "a part more");
    // The same value split into chunks that do not add up.
    let half = s.len() / 2;
    let chunks = format!(
        "portcullis_session.login.0={}; portcullis_session.login.2={}",
        s.get(..half).unwrap_or_default(),
        s.get(half..).unwrap_or_default()
    );
    let r = client::get(port(), "/app/x", &[("Host", HOST), ("Cookie", &chunks)]);
    assert_login(&r, "a chunk missing");
    // And the genuine value still opens.
    passed(&f.envoy, &app(f, s, &[]), "the genuine session");
}

#[test]
fn oversized_and_numerous_cookies_are_answered_without_harm() {
    let f = fx();
    // 50 KB in one cookie (under Envoy's 60 KiB header limit): not a session.
    let big = "A".repeat(50_000);
    assert_login(&app(f, &big, &[]), "a 50 KB session cookie");
    // 400 cookies before the session: only the first 256 are read.
    let many: Vec<String> = (0..400).map(|i| format!("c{i}=v{i}")).collect();
    let cookie = format!(
        "{}; portcullis_session.login={}",
        many.join("; "),
        f.session
    );
    let r = client::get(port(), "/app/x", &[("Host", HOST), ("Cookie", &cookie)]);
    assert_login(&r, "the session after 400 cookies");
    // The session first, then 400 cookies: it opens.
    let cookie = format!(
        "portcullis_session.login={}; {}",
        f.session,
        many.join("; ")
    );
    let r = client::get(port(), "/app/x", &[("Host", HOST), ("Cookie", &cookie)]);
    passed(&f.envoy, &r, "the session before 400 cookies");
    // Many chunk cookies of garbage.
    let chunks: Vec<String> = (0..40)
        .map(|i| format!("portcullis_session.login.{i}={}", "Z".repeat(1000)))
        .collect();
    let r = client::get(
        port(),
        "/app/x",
        &[("Host", HOST), ("Cookie", &chunks.join("; "))],
    );
    assert_login(&r, "40 garbage chunks");
    // Several Cookie headers.
    let split = [
        ("Host", HOST),
        ("Cookie", "a=1"),
        ("Cookie", "portcullis_session.login=garbage"),
        ("Cookie", "b=2"),
    ];
    assert_login(
        &client::get(port(), "/app/x", &split),
        "several Cookie headers",
    );
    // Over Envoy's header limit: Envoy answers 431 before the plugin runs.
    let r = app(f, &"A".repeat(70_000), &[]);
    assert_eq!(r.status, 431, "{}", show(&r));
    // The VM is alive and well after all that.
    passed(
        &f.envoy,
        &app(f, &f.session, &[]),
        "after the hostile cookies",
    );
    let t = token("EdDSA", Value::Null);
    passed(
        &f.envoy,
        &get_with_token(port(), "/jwt/x", &t, &[]),
        "jwt after",
    );
    assert!(
        !f.envoy.log().contains("][critical]["),
        "{}",
        f.envoy.log_tail(30)
    );
}
