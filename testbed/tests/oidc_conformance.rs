//! The OpenID Foundation's Relying Party test plans, Basic RP and Config RP, for
//! `response_type=code`: one test per test ID, each against its own issuer of the
//! scripted conformance OP (`portcullis_testbed::conformance_op`), which behaves
//! as the test's description says, through a real Envoy with the built module.
//! Each test asserts what the user sees: a login accepted reaches the upstream
//! with the access token and the identity headers and a session cookie; a login
//! refused ends on the error page, with no session cookie and nothing upstream.
//! The table in docs/oauth2.md maps each test ID to its test here.
//!
//! One Envoy (two workers) for the file; each test ID has its own filter (its own
//! cookies), rule (`/<test id>/*`) and browser jar, so the tests run in parallel.

mod oauth2_common;

use std::sync::OnceLock;

use oauth2_common::*;
use portcullis_testbed::browserless::{Agent, Hop, Url};
use portcullis_testbed::conformance_op::{
    ConformanceOp, OpScript, CLIENT_ID, CLIENT_SECRET, CLIENT_SECRET_KEY, EMAIL, SUB,
};
use portcullis_testbed::tokens::{decode, jwk, jwk_with};
use portcullis_testbed::{EchoUpstream, Echoed, Envoy};
use serde_json::{json, Value};

/// Every test ID with the OP's script and the filter's extra fields.
fn test_ids() -> Vec<(&'static str, OpScript, Value)> {
    let ok = OpScript::default;
    let claims = |c: Value| OpScript {
        id_token_claims: c,
        ..OpScript::default()
    };
    let jwt_validation = json!({ "accessTokenValidation": "jwt" });
    vec![
        // Basic RP
        ("rp-response_type-code", ok(), Value::Null),
        ("rp-scope-userinfo-claims", ok(), Value::Null),
        (
            "rp-nonce-invalid",
            claims(json!({"nonce": "not-the-one-sent"})),
            Value::Null,
        ),
        (
            "rp-nonce-unless-code-flow",
            claims(json!({"nonce": null})),
            Value::Null,
        ),
        ("rp-token_endpoint-client_secret_basic", ok(), Value::Null),
        (
            "rp-id_token-aud",
            claims(json!({"aud": "another-client"})),
            Value::Null,
        ),
        (
            "rp-id_token-aud-missing",
            claims(json!({"aud": null})),
            Value::Null,
        ),
        (
            "rp-id_token-kid-absent-single-jwks",
            OpScript {
                jwks: vec![jwk_with("rsa1", json!({"kid": null}))],
                kid: None,
                ..OpScript::default()
            },
            Value::Null,
        ),
        (
            "rp-id_token-kid-absent-multiple-jwks",
            OpScript {
                jwks: vec![jwk("rsa1"), jwk("rsa2")],
                kid: None,
                ..OpScript::default()
            },
            Value::Null,
        ),
        (
            "rp-id_token-sig-none",
            OpScript {
                signing_key: None,
                kid: None,
                ..OpScript::default()
            },
            Value::Null,
        ),
        (
            "rp-id_token-issuer-mismatch",
            claims(json!({"iss": "https://example.org/not-the-issuer"})),
            Value::Null,
        ),
        (
            "rp-id_token-bad-sig-rs256",
            OpScript {
                bad_signature: true,
                ..OpScript::default()
            },
            Value::Null,
        ),
        ("rp-id_token-iat", claims(json!({"iat": null})), Value::Null),
        ("rp-id_token-sig-rs256", ok(), Value::Null),
        ("rp-id_token-sub", claims(json!({"sub": null})), Value::Null),
        ("rp-userinfo-bearer-header", ok(), Value::Null),
        (
            "rp-userinfo-bad-sub-claim",
            OpScript {
                userinfo_claims: json!({"sub": "someone-else"}),
                ..OpScript::default()
            },
            Value::Null,
        ),
        // Optional in the Basic plan
        (
            "rp-id_token-sig-es256",
            OpScript {
                jwks: vec![jwk("ec256")],
                signing_key: Some("ec256"),
                alg: "ES256",
                kid: Some("ec256".into()),
                ..OpScript::default()
            },
            Value::Null,
        ),
        (
            "rp-id_token-sig-hs256",
            OpScript {
                signing_key: Some(CLIENT_SECRET_KEY),
                alg: "HS256",
                kid: None,
                ..OpScript::default()
            },
            Value::Null,
        ),
        // Config RP
        (
            "rp-discovery-openid-configuration",
            OpScript {
                authorize_path: "/op/authz-a1".into(),
                token_path: "/op/token-b2".into(),
                userinfo_path: "/op/me-c3".into(),
                jwks_path: "/op/keys-d4".into(),
                ..OpScript::default()
            },
            Value::Null,
        ),
        (
            "rp-discovery-jwks_uri-keys",
            OpScript {
                jwks: vec![jwk("rsa2")],
                signing_key: Some("rsa2"),
                kid: Some("rsa2".into()),
                jwks_path: "/certs/published".into(),
                ..OpScript::default()
            },
            Value::Null,
        ),
        (
            "rp-discovery-issuer-not-matching-config",
            OpScript {
                discovery_issuer: Some("https://example.org/another-issuer".into()),
                ..OpScript::default()
            },
            Value::Null,
        ),
        ("rp-key-rotation-op-sign-key", ok(), Value::Null),
        // Portcullis: the same refetch for JWT access tokens, and its failure.
        (
            "jwt-access-token-key-rotation",
            OpScript {
                jwt_access_token: Some(("rsa1", "rsa1".into())),
                ..OpScript::default()
            },
            jwt_validation,
        ),
        ("key-rotation-refetch-fails", ok(), Value::Null),
        ("key-rotation-key-not-published", ok(), Value::Null),
    ]
}

/// Worker threads, each with its own Wasm VM and its own copy of every JWK Set
/// (a key rotation is seen by each on its own).
const WORKERS: usize = 2;

struct Fixture {
    envoy: Envoy,
    op: ConformanceOp,
    port: u16,
    _echo: EchoUpstream,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Result<Fixture, String>> = OnceLock::new();
    portcullis_testbed::shared_fixture(&FX, start, "the conformance fixture")
}

fn start() -> Fixture {
    let echo = EchoUpstream::start();
    let op = ConformanceOp::start();
    let ids = test_ids();
    for (id, script, _) in &ids {
        op.script(id, script.clone());
    }
    let (envoy, _, port) = start_envoy_workers(echo.port(), WORKERS, |port| {
        let o = origin(port);
        op.register_origin(&o);
        let key = session_key();
        let mut filters = Vec::new();
        let mut rules = Vec::new();
        for (id, _, extra) in &ids {
            let mut spec = json!({
                "authorizationURL": op.issuer(id),
                "clientID": CLIENT_ID,
                "secret": CLIENT_SECRET,
                "protectedOrigins": [ { "origin": o } ],
                "sessionKeys": [ key ],
                "injectRequestHeaders": [
                    { "name": "X-User", "value": "{{ .idToken.Claims.sub }}" },
                    { "name": "X-Id-Token-Alg", "value": "{{ .idToken.Header.alg }}" },
                    { "name": "X-Email", "value": "{{ .userinfo.email }}" }
                ]
            });
            if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra.clone()) {
                s.extend(e);
            }
            filters.push(json!({ "name": id, "OAuth2": spec }));
            rules.push(json!({
                "host": "*", "path": format!("/{id}/*"),
                "filters": [ { "name": id, "arguments": { "scope": ["profile", "email"] } } ]
            }));
        }
        let mut clusters = serde_json::Map::new();
        clusters.insert(op.authority(), json!("op"));
        Setup {
            idps: Vec::new(),
            plugin: json!({ "clusters": clusters, "filters": filters, "rules": rules }),
            clusters: vec![("op".into(), op.port())],
        }
    });
    Fixture {
        envoy,
        op,
        port,
        _echo: echo,
    }
}

fn page(id: &str) -> String {
    format!("{}/{id}/page?from=conformance", origin(fx().port))
}

/// A browser with its own cookie jar opens the test ID's page and follows every
/// redirect (to the OP and back); the hops.
fn login(id: &str) -> (Agent, Vec<Hop>) {
    let mut agent = Agent::new();
    let hops = agent.get_following(&page(id));
    (agent, hops)
}

fn describe(hops: &[Hop]) -> Vec<String> {
    hops.iter()
        .map(|h| format!("{} {}", h.response.status, h.url))
        .collect()
}

/// The login reached the upstream: back on the original URL, with the access
/// token the OP issued, the ID token's `sub`, a session cookie, no Portcullis
/// cookie upstream. The upstream's echo.
fn assert_accepted(id: &str, agent: &Agent, hops: &[Hop]) -> Echoed {
    let f = fx();
    let last = hops.last().expect("a hop");
    assert_eq!(last.url, page(id), "{id}: hops {:?}", describe(hops));
    let e = echoed(&last.response);
    let issued = f.op.issued(id);
    let access = issued
        .last()
        .and_then(|t| t["access_token"].as_str())
        .unwrap_or_else(|| panic!("{id}: the OP issued no token"));
    assert_eq!(bearer(&e), access, "{id}: the upstream's Bearer token");
    assert_eq!(e.header("x-user"), Some(SUB), "{id}: X-User");
    assert!(has_session(agent, id), "{id}: no session cookie");
    assert_no_portcullis_cookies_upstream(&e);
    e
}

/// The login was refused after the token answer: the error page (`status`), no
/// session cookie, the upstream never reached.
fn assert_refused(id: &str, agent: &Agent, hops: &[Hop], status: u16) {
    let f = fx();
    let last = hops.last().expect("a hop");
    assert_eq!(
        last.response.status,
        status,
        "{id}: hops {:?} body {}",
        describe(hops),
        last.response.body_str()
    );
    assert!(
        last.url.contains(REDIRECTION_PATH),
        "{id}: refused elsewhere than the callback: {}",
        last.url
    );
    assert!(
        last.response
            .body_str()
            .contains("Sign-in could not be completed"),
        "{id}: not the error page: {}",
        last.response.body_str()
    );
    assert!(!has_session(agent, id), "{id}: a session cookie was set");
    assert!(
        !hops
            .iter()
            .any(|h| h.url.starts_with(&page(id)) && h.response.status == 200),
        "{id}: the upstream was reached"
    );
    // Refused after the token answer: every login's code was exchanged once.
    let exchanges = f.op.requests_to(id, "/token").len();
    assert!(exchanges >= 1, "{id}: the code was not exchanged");
    assert_eq!(
        exchanges,
        f.op.requests_to(id, "/authorize").len(),
        "{id}: codes exchanged"
    );
}

const REDIRECTION_PATH: &str = "/.portcullis/oauth2/redirection-endpoint";

/// The authorization request the OP received (the last one).
fn authorization_request(id: &str, path: &str) -> Url {
    let reqs = fx().op.requests_to(id, path);
    let r = reqs
        .last()
        .unwrap_or_else(|| panic!("{id}: no authorization request"));
    Url::parse(&format!("http://127.0.0.1:{}{}", fx().op.port(), r.path)).expect("URL")
}

/// A test ID whose OP misbehaves so that the login must be refused (401 page,
/// no session): one test per ID, named after it.
macro_rules! refused {
    ($(#[$doc:meta])* $test:ident, $id:literal) => {
        $(#[$doc])*
        #[test]
        fn $test() {
            let (agent, hops) = login($id);
            assert_refused($id, &agent, &hops, 401);
        }
    };
}

// ---------------------------------------------------------------------------
// Basic RP

/// rp-response_type-code: the code flow, end to end.
#[test]
fn rp_response_type_code() {
    let id = "rp-response_type-code";
    let (agent, hops) = login(id);
    assert_accepted(id, &agent, &hops);
    let a = authorization_request(id, "/authorize");
    assert_eq!(a.query_param("response_type").as_deref(), Some("code"));
    assert_eq!(a.query_param("client_id").as_deref(), Some(CLIENT_ID));
    let scope = a.query_param("scope").unwrap_or_default();
    assert!(scope.split(' ').any(|s| s == "openid"), "scope {scope:?}");
    assert_eq!(
        a.query_param("code_challenge_method").as_deref(),
        Some("S256")
    );
    // Browser → page → OP → callback → page: three redirects, no loop.
    assert_eq!(hops.len(), 4, "{:?}", describe(&hops));
}

/// rp-nonce-invalid: the ID token's nonce is not the one sent: refused.
#[test]
fn rp_nonce_invalid() {
    let id = "rp-nonce-invalid";
    let (agent, hops) = login(id);
    assert_refused(id, &agent, &hops, 401);
    assert!(authorization_request(id, "/authorize")
        .query_param("nonce")
        .is_some_and(|n| n.len() >= 32));
}

/// rp-nonce-unless-code-flow (optional): Portcullis always sends a nonce in the
/// code flow, so an ID token without one is refused (OIDC Core §3.1.3.7 item 11).
#[test]
fn rp_nonce_unless_code_flow() {
    let id = "rp-nonce-unless-code-flow";
    let (agent, hops) = login(id);
    assert!(authorization_request(id, "/authorize")
        .query_param("nonce")
        .is_some());
    assert_refused(id, &agent, &hops, 401);
}

/// rp-token_endpoint-client_secret_basic: the OP accepts only HTTP Basic
/// (RFC 6749 §2.3.1) and refuses a secret in the body.
#[test]
fn rp_token_endpoint_client_secret_basic() {
    let id = "rp-token_endpoint-client_secret_basic";
    let (agent, hops) = login(id);
    assert_accepted(id, &agent, &hops);
    let token = fx().op.requests_to(id, "/token");
    let t = token.last().expect("a token request");
    assert!(t
        .header("authorization")
        .is_some_and(|v| v.starts_with("Basic ")));
    assert!(!t.body_str().contains("client_secret"), "{}", t.body_str());
}

refused! {
    /// rp-id_token-aud: the ID token is for another client: refused.
    rp_id_token_aud,
    "rp-id_token-aud"
}

refused! {
    /// oidcc-client-test-missing-aud: no `aud` at all: refused.
    rp_id_token_aud_missing,
    "rp-id_token-aud-missing"
}

/// rp-id_token-kid-absent-single-jwks: no `kid`, one key in the set: accepted.
#[test]
fn rp_id_token_kid_absent_single_jwks() {
    let id = "rp-id_token-kid-absent-single-jwks";
    let (agent, hops) = login(id);
    assert_accepted(id, &agent, &hops);
    let issued = fx().op.issued(id);
    let (header, _) = decode(issued[0]["id_token"].as_str().expect("id_token"));
    assert!(header.get("kid").is_none(), "{header}");
}

refused! {
    /// rp-id_token-kid-absent-multiple-jwks: no `kid`, two keys for RS256: which
    /// one signed is unknown, refused.
    rp_id_token_kid_absent_multiple_jwks,
    "rp-id_token-kid-absent-multiple-jwks"
}

refused! {
    /// rp-id_token-sig-none: an unsigned ID token is refused (Portcullis registers
    /// no `id_token_signed_response_alg: none`; docs/oauth2.md says why).
    rp_id_token_sig_none,
    "rp-id_token-sig-none"
}

refused! {
    /// rp-id_token-issuer-mismatch: `iss` is not the issuer: refused.
    rp_id_token_issuer_mismatch,
    "rp-id_token-issuer-mismatch"
}

refused! {
    /// rp-id_token-bad-sig-rs256: a signature that does not verify: refused.
    rp_id_token_bad_sig_rs256,
    "rp-id_token-bad-sig-rs256"
}

refused! {
    /// rp-id_token-iat: no `iat` (REQUIRED, OIDC Core §2): refused.
    rp_id_token_iat,
    "rp-id_token-iat"
}

/// rp-id_token-sig-rs256: an RS256 ID token: accepted.
#[test]
fn rp_id_token_sig_rs256() {
    let id = "rp-id_token-sig-rs256";
    let (agent, hops) = login(id);
    let e = assert_accepted(id, &agent, &hops);
    assert_eq!(e.header("x-id-token-alg"), Some("RS256"));
}

refused! {
    /// rp-id_token-sub: no `sub` (REQUIRED, OIDC Core §2): refused.
    rp_id_token_sub,
    "rp-id_token-sub"
}

/// rp-userinfo-bearer-header: the access token goes to UserInfo in
/// `Authorization: Bearer`, never in the query or body.
#[test]
fn rp_userinfo_bearer_header() {
    let id = "rp-userinfo-bearer-header";
    let (agent, hops) = login(id);
    assert_accepted(id, &agent, &hops);
    let access = fx().op.issued(id)[0]["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let calls = fx().op.requests_to(id, "/userinfo");
    assert!(!calls.is_empty(), "UserInfo was not called");
    for c in calls {
        assert_eq!(c.method, "GET");
        assert_eq!(
            c.header("authorization"),
            Some(format!("Bearer {access}").as_str())
        );
        assert!(!c.path.contains("access_token"), "{}", c.path);
        assert!(c.body.is_empty());
    }
}

/// rp-scope-userinfo-claims: the scope `email` is asked for; the OP returns the
/// e-mail only from UserInfo (not in the ID token): it reaches the upstream
/// through `{{ .userinfo.email }}`.
#[test]
fn rp_scope_userinfo_claims() {
    let id = "rp-scope-userinfo-claims";
    let (agent, hops) = login(id);
    let e = assert_accepted(id, &agent, &hops);
    let scope = authorization_request(id, "/authorize")
        .query_param("scope")
        .unwrap_or_default();
    assert!(scope.split(' ').any(|s| s == "email"), "scope {scope:?}");
    let (_, id_claims) = decode(
        fx().op.issued(id)[0]["id_token"]
            .as_str()
            .expect("id_token"),
    );
    assert!(id_claims.get("email").is_none(), "{id_claims}");
    assert_eq!(e.header("x-email"), Some(EMAIL));
}

/// rp-userinfo-bad-sub-claim: UserInfo answers another `sub` than the ID
/// token's: its claims are not used (OIDC Core §5.3.2); the login, proven by
/// the ID token, stands.
#[test]
fn rp_userinfo_bad_sub_claim() {
    let id = "rp-userinfo-bad-sub-claim";
    let (agent, hops) = login(id);
    let e = assert_accepted(id, &agent, &hops);
    assert!(!fx().op.requests_to(id, "/userinfo").is_empty());
    assert_ne!(
        e.header("x-email"),
        Some(EMAIL),
        "another subject's claim was used"
    );
}

/// rp-id_token-sig-es256 (optional): an ES256 ID token: accepted.
#[test]
fn rp_id_token_sig_es256() {
    let id = "rp-id_token-sig-es256";
    let (agent, hops) = login(id);
    let e = assert_accepted(id, &agent, &hops);
    assert_eq!(e.header("x-id-token-alg"), Some("ES256"));
}

refused! {
    /// rp-id_token-sig-hs256 (optional): an ID token MACed with the client secret is
    /// refused: Portcullis verifies ID tokens with the IdP's published keys only.
    rp_id_token_sig_hs256,
    "rp-id_token-sig-hs256"
}

// ---------------------------------------------------------------------------
// Config RP

/// rp-discovery-openid-configuration: every endpoint is where discovery says
/// (paths no client would guess).
#[test]
fn rp_discovery_openid_configuration() {
    let id = "rp-discovery-openid-configuration";
    let (agent, hops) = login(id);
    assert_accepted(id, &agent, &hops);
    let op = &fx().op;
    assert!(!op
        .requests_to(id, "/.well-known/openid-configuration")
        .is_empty());
    for path in ["/op/authz-a1", "/op/token-b2", "/op/keys-d4", "/op/me-c3"] {
        assert!(
            !op.requests_to(id, path).is_empty(),
            "nothing asked at {path}"
        );
    }
    for path in ["/authorize", "/token", "/jwks", "/userinfo"] {
        assert!(op.requests_to(id, path).is_empty(), "a guessed path {path}");
    }
}

/// rp-discovery-jwks_uri-keys: the signing key is only in the set at
/// `jwks_uri`: accepted.
#[test]
fn rp_discovery_jwks_uri_keys() {
    let id = "rp-discovery-jwks_uri-keys";
    let (agent, hops) = login(id);
    assert_accepted(id, &agent, &hops);
    assert!(!fx().op.requests_to(id, "/certs/published").is_empty());
}

/// rp-discovery-issuer-not-matching-config: the discovery document's issuer is
/// not the configured one (OIDC Discovery §4.3): the document is refused, no
/// login starts, the page says sign-in is unavailable.
#[test]
fn rp_discovery_issuer_not_matching_config() {
    let id = "rp-discovery-issuer-not-matching-config";
    let f = fx();
    assert!(f.envoy.wait_for_log(
        &format!("discovery document {}: fetch failed", f.op.issuer(id)),
        WAIT
    ));
    assert!(f
        .envoy
        .log()
        .contains("is not the configured authorizationURL"));
    let (agent, hops) = login(id);
    assert_eq!(hops.len(), 1, "{:?}", describe(&hops));
    let r = &hops[0].response;
    assert_eq!(r.status, 503, "{}", r.body_str());
    assert!(r.body_str().contains("Sign-in is unavailable"));
    assert!(!has_session(&agent, id));
    assert!(f.op.requests_to(id, "/authorize").is_empty());
    assert!(
        f.op.requests_to(id, "/jwks").is_empty(),
        "keys of a refused issuer"
    );
}

/// rp-key-rotation-op-sign-key: the OP rotates its signing key (new `kid`, new
/// set); the next login fetches the set again and is accepted.
#[test]
fn rp_key_rotation_op_sign_key() {
    let id = "rp-key-rotation-op-sign-key";
    let f = fx();
    let (agent, hops) = login(id);
    assert_accepted(id, &agent, &hops);
    let fetched = f.op.requests_to(id, "/jwks").len();
    f.op.update(id, |s| {
        s.jwks = vec![jwk("rsa2")];
        s.signing_key = Some("rsa2");
        s.kid = Some("rsa2".into());
    });
    let (agent, hops) = login(id);
    assert_accepted(id, &agent, &hops);
    let (header, _) = decode(f.op.issued(id)[1]["id_token"].as_str().expect("id_token"));
    assert_eq!(header["kid"], "rsa2");
    assert!(
        f.op.requests_to(id, "/jwks").len() > fetched,
        "the set was not fetched again"
    );
}

// ---------------------------------------------------------------------------
// Portcullis: the same refetch for JWT access tokens; a refetch that fails

/// `accessTokenValidation: jwt`: the access token names a key the cached set
/// lacks (the OP published it after the set was fetched): the set is fetched
/// again and the request reaches the upstream.
#[test]
fn jwt_access_token_signed_by_a_new_key_fetches_the_set_again() {
    let id = "jwt-access-token-key-rotation";
    let f = fx();
    // A first login: this worker holds the set of one key.
    let (agent, hops) = login(id);
    assert_accepted(id, &agent, &hops);
    f.op.update(id, |s| {
        s.jwks = vec![jwk("rsa1"), jwk("rsa2")];
        s.jwt_access_token = Some(("rsa2", "rsa2".into()));
    });
    let fetched = f.op.requests_to(id, "/jwks").len();
    let (agent, hops) = login(id);
    let e = assert_accepted(id, &agent, &hops);
    let (header, _) = decode(&bearer(&e));
    assert_eq!(header["kid"], "rsa2");
    assert!(f.op.requests_to(id, "/jwks").len() > fetched);
}

/// The ID token names a new key and the set cannot be fetched again (HTTP 500):
/// the login is refused with the page, without waiting out the bound.
#[test]
fn an_unknown_kid_whose_refetch_fails_is_refused() {
    let id = "key-rotation-refetch-fails";
    let f = fx();
    let (agent, hops) = login(id);
    assert_accepted(id, &agent, &hops);
    let fetched = f.op.requests_to(id, "/jwks").len();
    f.op.update(id, |s| {
        s.jwks = vec![jwk("rsa2")];
        s.signing_key = Some("rsa2");
        s.kid = Some("rsa2".into());
        s.jwks_status = 500;
    });
    let (agent, hops) = login(id);
    assert_refused(id, &agent, &hops, 401);
    assert!(f.op.requests_to(id, "/jwks").len() > fetched);
}

/// The ID token names a key the OP never publishes: the set is fetched again
/// (it does not bring the key) and the login is refused; more logins at once are
/// refused without fetching again: at most one refetch per 10 s per worker.
#[test]
fn an_unknown_kid_the_refetch_does_not_bring_is_refused_and_rate_limited() {
    let id = "key-rotation-key-not-published";
    let f = fx();
    let (agent, hops) = login(id);
    assert_accepted(id, &agent, &hops);
    let before = f.op.requests_to(id, "/jwks").len();
    f.op.update(id, |s| {
        s.signing_key = Some("rsa2");
        s.kid = Some("rsa2".into());
    });
    let (agent, hops) = login(id);
    assert_refused(id, &agent, &hops, 401);
    assert!(
        f.op.requests_to(id, "/jwks").len() > before,
        "the set was not fetched again"
    );
    for _ in 0..4 {
        let (agent, hops) = login(id);
        assert_refused(id, &agent, &hops, 401);
    }
    let refetches = f.op.requests_to(id, "/jwks").len() - before;
    assert!(
        refetches <= WORKERS,
        "{refetches} refetches for 5 logins on {WORKERS} workers"
    );
}
