//! The OAuth2 filter driven end to end against a fake IdP: discovery, keys and
//! token answers are made here; ID tokens are signed with a fixed RSA key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::encoding::{b64url, percent_decode, percent_encode, query_params};
use super::session::{write_chunked, CookieAttrs, CookieJar, CHUNK_SIZE};
use super::*;
use crate::external::CalloutKind;
use crate::jwt::verify::test_fixtures::{key_set, rsa_a, rsa_b, token, NOW};
use crate::request::TlsInfo;
use crate::template::Template;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;
use std::collections::HashMap;

const ISSUER: &str = "https://idp.example.com";
const KEY1: [u8; 32] = [1; 32];
const KEY2: [u8; 32] = [2; 32];

fn discovery() -> Discovery {
    Discovery {
        issuer: ISSUER.to_string(),
        authorization_endpoint: format!("{ISSUER}/authorize"),
        token_endpoint: format!("{ISSUER}/token"),
        userinfo_endpoint: Some(format!("{ISSUER}/userinfo")),
        end_session_endpoint: Some(format!("{ISSUER}/logout")),
        jwks_uri: format!("{ISSUER}/jwks"),
        iss_parameter_supported: false,
    }
}

fn keys() -> KeySet {
    key_set(vec![rsa_a().jwk_with_kid("k1")])
}

pub(super) fn filter() -> OAuth2Filter {
    let mut clusters = BTreeMap::new();
    clusters.insert("idp.example.com".to_string(), "idp".to_string());
    OAuth2Filter {
        name: "login".to_string(),
        authorization_url: ISSUER.to_string(),
        discovery: CalloutTarget {
            cluster: "idp".to_string(),
            authority: "idp.example.com".to_string(),
            path: WELL_KNOWN_PATH.to_string(),
            scheme: "https".to_string(),
        },
        client_id: "my client".to_string(),
        secret: Some("s3cr3t:&".to_string()),
        grant: GrantType::AuthorizationCode,
        validation: TokenValidation::Auto,
        client_auth: ClientAuth::Basic,
        client_assertion: None,
        origins: vec![ProtectedOrigin {
            scheme: "https".to_string(),
            host: "app.example.com".to_string(),
            port: None,
            include_subdomains: true,
            internal: Vec::new(),
        }],
        extra_parameters: vec![("prompt".to_string(), "login".to_string())],
        form_post: false,
        inject: vec![HeaderTemplate {
            name: "x-user".to_string(),
            template: Template::parse("{{ .idToken.Claims.sub }}").unwrap(),
        }],
        margin: 0,
        max_idle: None,
        session_cookies: None,
        post_logout_redirect: Some("https://app.example.com/bye".to_string()),
        keys: SessionKeys::new(&[KEY1]),
        clusters,
        callback_path: CALLBACK_PATH.to_string(),
        xsrf_on_requests: false,
    }
}

/// A deterministic randomness source (distinct bytes on every call).
pub(super) fn rng() -> impl FnMut(&mut [u8]) {
    let mut counter: u8 = 0;
    move |buf: &mut [u8]| {
        for b in buf.iter_mut() {
            counter = counter.wrapping_add(37);
            *b = counter;
        }
    }
}

pub(super) fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
    let mut pairs = vec![
        (":method".to_string(), method.to_string()),
        (":scheme".to_string(), "https".to_string()),
        (":authority".to_string(), "app.example.com".to_string()),
        (":path".to_string(), path.to_string()),
    ];
    for (n, v) in headers {
        pairs.push((n.to_string(), v.to_string()));
    }
    Request::from_header_pairs(pairs)
}

pub(super) struct Idp {
    discovery: Discovery,
    keys: KeySet,
}

impl Idp {
    pub(super) fn new() -> Idp {
        Idp {
            discovery: discovery(),
            keys: keys(),
        }
    }
    pub(super) fn state(&self) -> IdpState<'_> {
        IdpState {
            discovery: Some(&self.discovery),
            keys: Some(&self.keys),
            userinfo: None,
            token_cache: None,
            session_cache: None,
            events: None,
        }
    }
}

fn check(f: &OAuth2Filter, args: &OAuth2Args, req: &Request, now: f64) -> OAuth2Step {
    let idp = Idp::new();
    f.check(req, args, &idp.state(), now, &mut rng())
}

/// The answer to a callout; a UserInfo call that follows a code exchange or a
/// refresh is answered too, with [`userinfo_claims`].
fn answer(
    f: &OAuth2Filter,
    args: &OAuth2Args,
    req: &Request,
    pending: OAuth2Pending,
    a: CalloutAnswer,
    now: f64,
) -> OAuth2Step {
    let step = answer_only(f, args, req, pending, a, now);
    match step {
        OAuth2Step::Callout { pending, .. }
            if matches!(
                pending.kind.as_ref(),
                flow::Pending::LoginUserinfo { .. } | flow::Pending::RefreshUserinfo { .. }
            ) =>
        {
            answer_only(f, args, req, pending, http(200, userinfo_claims()), now)
        }
        other => other,
    }
}

/// The answer to one callout, whatever comes next.
fn answer_only(
    f: &OAuth2Filter,
    args: &OAuth2Args,
    req: &Request,
    pending: OAuth2Pending,
    a: CalloutAnswer,
    now: f64,
) -> OAuth2Step {
    let idp = Idp::new();
    f.on_answer(
        req,
        args,
        pending.answered(a),
        &idp.state(),
        now,
        &mut rng(),
    )
}

/// What the fake IdP's UserInfo endpoint answers for alice.
pub(super) fn userinfo_claims() -> serde_json::Value {
    json!({"sub": "alice", "email": "alice@example.test", "age": 42})
}

pub(super) fn respond(step: OAuth2Step) -> Response {
    match step {
        OAuth2Step::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

pub(super) fn callout(step: OAuth2Step) -> (Callout, OAuth2Pending) {
    match step {
        OAuth2Step::Callout { callout, pending } => (callout, pending),
        other => panic!("expected a callout, got {other:?}"),
    }
}

pub(super) fn allowed(step: OAuth2Step) -> (Vec<HeaderChange>, Vec<(String, String)>) {
    match step {
        OAuth2Step::Allow {
            request, response, ..
        } => (request, response),
        other => panic!("expected allow, got {other:?}"),
    }
}

fn set_cookies<V: AsRef<[u8]>>(headers: &[(String, V)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| String::from_utf8(v.as_ref().to_vec()).unwrap())
        .collect()
}

/// The cookies a browser would keep from these `Set-Cookie` values, applied to `jar`.
fn apply_cookies(jar: &mut HashMap<String, String>, set: &[String]) {
    for c in set {
        let first = c.split(';').next().unwrap();
        let (name, value) = first.split_once('=').unwrap();
        if c.contains("Max-Age=0") {
            jar.remove(name);
        } else {
            jar.insert(name.to_string(), value.to_string());
        }
    }
}

pub(super) fn cookie_header(jar: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
    pairs.sort();
    pairs.join("; ")
}

fn location_params(r: &Response) -> HashMap<String, String> {
    query_params(r.header("location").unwrap())
        .into_iter()
        .collect()
}

fn form(callout: &Callout) -> HashMap<String, String> {
    let CalloutKind::Http { body, .. } = &callout.kind else {
        panic!("not http")
    };
    let text = String::from_utf8(body.clone()).unwrap();
    query_params(&format!("/?{text}")).into_iter().collect()
}

fn header<'a>(callout: &'a Callout, name: &str) -> Option<&'a str> {
    let CalloutKind::Http { headers, .. } = &callout.kind else {
        panic!("not http")
    };
    headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

pub(super) fn id_token(claims: serde_json::Value) -> String {
    token(json!({"alg": "RS256", "kid": "k1"}), claims, &rsa_a())
}

pub(super) fn good_claims(nonce: &str) -> serde_json::Value {
    json!({
        "iss": ISSUER, "aud": "my client", "sub": "alice", "exp": NOW + 600.0,
        "iat": NOW, "nonce": nonce,
    })
}

pub(super) fn http(status: u16, body: serde_json::Value) -> CalloutAnswer {
    CalloutAnswer::Http {
        status,
        headers: vec![],
        body: body.to_string().into_bytes(),
    }
}

/// A started login: the redirect's parameters and the browser's cookies.
pub(super) struct Login {
    pub(super) params: HashMap<String, String>,
    pub(super) jar: HashMap<String, String>,
}

pub(super) fn start_login(f: &OAuth2Filter, args: &OAuth2Args, path: &str) -> Login {
    let r = respond(check(f, args, &request("GET", path, &[]), NOW));
    assert_eq!(r.status, 303);
    let mut jar = HashMap::new();
    apply_cookies(&mut jar, &set_cookies(&r.headers));
    Login {
        params: location_params(&r),
        jar,
    }
}

pub(super) fn callback_request(login: &Login, extra: &str) -> Request {
    let path = format!(
        "{CALLBACK_PATH}?code=the-code&state={}{extra}",
        login.params["state"]
    );
    request("GET", &path, &[("cookie", &cookie_header(&login.jar))])
}

/// Logs in with these token answer fields; returns the final response and jar.
fn finish_login(
    f: &OAuth2Filter,
    args: &OAuth2Args,
    login: &mut Login,
    tokens: serde_json::Value,
) -> Response {
    let req = callback_request(login, "");
    let (_, pending) = callout(check(f, args, &req, NOW));
    let r = respond(answer(f, args, &req, pending, http(200, tokens), NOW));
    apply_cookies(&mut login.jar, &set_cookies(&r.headers));
    r
}

pub(super) fn default_tokens(login: &Login) -> serde_json::Value {
    json!({
        "access_token": "opaque-access",
        "token_type": "Bearer",
        "id_token": id_token(good_claims(&login.params["nonce"])),
        "refresh_token": "the-refresh",
        "expires_in": 300,
    })
}

/// A logged-in browser's cookie jar.
pub(super) fn logged_in(
    f: &OAuth2Filter,
    tokens: impl Fn(&Login) -> serde_json::Value,
) -> HashMap<String, String> {
    let args = OAuth2Args::default();
    let mut login = start_login(f, &args, "/page?x=1");
    let t = tokens(&login);
    let r = finish_login(f, &args, &mut login, t);
    assert_eq!(r.status, 303, "{:?}", String::from_utf8_lossy(&r.body));
    login.jar
}

pub(super) fn jwt_access(exp: f64) -> String {
    token(
        json!({"alg": "RS256", "kid": "k1"}),
        json!({"iss": ISSUER, "sub": "alice", "exp": exp, "scope": "openid"}),
        &rsa_a(),
    )
}

// ---------------------------------------------------------------------------
// Login redirect

#[test]
fn login_redirect_carries_pkce_state_nonce_and_scopes() {
    let f = filter();
    let args = OAuth2Args {
        scopes: vec!["read".to_string(), "openid".to_string()],
        ..OAuth2Args::default()
    };
    let r = respond(check(&f, &args, &request("GET", "/page?x=1", &[]), NOW));
    assert_eq!(r.status, 303);
    assert!(r
        .header("location")
        .unwrap()
        .starts_with("https://idp.example.com/authorize?"));
    let p = location_params(&r);
    assert_eq!(p["response_type"], "code");
    assert_eq!(p["client_id"], "my client");
    assert_eq!(
        p["redirect_uri"],
        "https://app.example.com/.portcullis/oauth2/redirection-endpoint"
    );
    assert_eq!(p["scope"], "openid read");
    assert_eq!(p["code_challenge_method"], "S256");
    assert_eq!(p["prompt"], "login");
    assert!(p["state"].len() >= 43 && p["nonce"].len() >= 43);
    // The challenge is S256 of the verifier the callback sends.
    let mut login = Login {
        params: p.clone(),
        jar: HashMap::new(),
    };
    apply_cookies(&mut login.jar, &set_cookies(&r.headers));
    let (c, _) = callout(check(&f, &args, &callback_request(&login, ""), NOW));
    let verifier = form(&c)["code_verifier"].clone();
    assert!(verifier.len() >= 43);
    assert_eq!(
        p["code_challenge"],
        b64url(&sha2::Sha256::digest(verifier.as_bytes()))
    );
}

#[test]
fn state_cookie_is_sealed_short_lived_and_lax() {
    let r = respond(check(
        &filter(),
        &OAuth2Args::default(),
        &request("GET", "/", &[]),
        NOW,
    ));
    let cookies: Vec<String> = set_cookies(&r.headers)
        .into_iter()
        .filter(|c| c.starts_with("portcullis_state."))
        .collect();
    assert_eq!(cookies.len(), 1);
    let c = &cookies[0];
    assert!(c.starts_with("portcullis_state.login."), "{c}");
    for attr in [
        "Path=/",
        "Max-Age=600",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
    ] {
        assert!(c.contains(attr), "{c} lacks {attr}");
    }
    assert!(!c.contains("page"), "the URL is not readable in the cookie");
}

/// At the bound of logins in progress, a new one drops the oldest state
/// cookie (by the expiry its sealed value carries), and only it; just under
/// the bound, none.
#[test]
fn too_many_logins_in_progress_forget_the_oldest() {
    let f = filter();
    let max = super::MAX_PENDING_LOGINS;
    // `v1.<expires>.<body>`: id0 expires first, so it is the oldest.
    let cookies: Vec<String> = (0..max)
        .map(|i| format!("portcullis_state.login.id{i}=v1.{}.x", 1_000 + i))
        .collect();
    let req = request("GET", "/", &[("cookie", &cookies.join("; "))]);
    let r = respond(check(&f, &OAuth2Args::default(), &req, NOW));
    let set = set_cookies(&r.headers);
    let cleared: Vec<&String> = set.iter().filter(|c| c.contains("Max-Age=0")).collect();
    assert_eq!(cleared.len(), 1, "{set:?}");
    assert!(
        cleared[0].starts_with("portcullis_state.login.id0="),
        "{set:?}"
    );
    // The oldest cleared and the new login's state (no count: a login start).
    assert_eq!(set.len(), 2, "{set:?}");
    // One under the bound: nothing dropped.
    let req = request("GET", "/", &[("cookie", &cookies[1..].join("; "))]);
    let r = respond(check(&f, &OAuth2Args::default(), &req, NOW));
    let set = set_cookies(&r.headers);
    assert!(!set.iter().any(|c| c.contains("Max-Age=0")), "{set:?}");
}

/// Requests a browser cannot follow to an IdP: 401 with WWW-Authenticate and
/// no state cookie; a navigation is redirected.
#[test]
fn background_requests_get_401_not_a_login() {
    let f = filter();
    let args = OAuth2Args::default();
    for headers in [
        vec![
            ("accept", "application/json"),
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-dest", "empty"),
        ],
        vec![("sec-fetch-mode", "cors")],
        vec![("sec-fetch-dest", "empty")],
        vec![("x-requested-with", "XMLHttpRequest")],
        vec![("accept", "application/json")],
        vec![("upgrade", "websocket"), ("connection", "upgrade")],
    ] {
        let r = respond(check(
            &f,
            &args,
            &request("GET", "/app/api/data", &headers),
            NOW,
        ));
        assert_eq!(r.status, 401, "{headers:?}");
        assert!(r.header("location").is_none(), "{headers:?}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|w| w.contains("login_uri=")),
            "{headers:?}: {:?}",
            r.headers
        );
        assert!(
            set_cookies(&r.headers).is_empty(),
            "{headers:?}: no state cookie"
        );
    }
    for headers in [
        vec![
            ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ],
        vec![("accept", "*/*")],
        vec![],
        vec![("x-requested-with", "com.example.app")],
    ] {
        let r = respond(check(
            &f,
            &args,
            &request("GET", "/app/page", &headers),
            NOW,
        ));
        assert_eq!(r.status, 303, "{headers:?}");
    }
}

#[test]
fn unprotected_origin_is_refused() {
    let mut req = request("GET", "/", &[]);
    req.authority = "evil.example.net".to_string();
    assert_eq!(
        respond(check(&filter(), &OAuth2Args::default(), &req, NOW)).status,
        403
    );
    // includeSubdomains covers a subdomain, not a lookalike or another scheme.
    req.authority = "api.app.example.com".to_string();
    assert_eq!(
        respond(check(&filter(), &OAuth2Args::default(), &req, NOW)).status,
        303
    );
    req.authority = "evilapp.example.com".to_string();
    assert_eq!(
        respond(check(&filter(), &OAuth2Args::default(), &req, NOW)).status,
        403
    );
    req.authority = "app.example.com".to_string();
    req.scheme = "http".to_string();
    assert_eq!(
        respond(check(&filter(), &OAuth2Args::default(), &req, NOW)).status,
        403
    );
}

#[test]
fn api_requests_get_a_status_instead_of_a_redirect() {
    let f = filter();
    let none = OAuth2Args::default();
    assert_eq!(
        respond(check(&f, &none, &request("POST", "/api", &[]), NOW)).status,
        401
    );
    let xhr = request("GET", "/api", &[("x-requested-with", "XMLHttpRequest")]);
    assert_eq!(respond(check(&f, &none, &xhr, NOW)).status, 401);
    let instead = OAuth2Args {
        instead_of_redirect: Some(InsteadOfRedirect {
            condition: None,
            status: 403,
        }),
        ..OAuth2Args::default()
    };
    let r = respond(check(&f, &instead, &request("GET", "/page", &[]), NOW));
    assert_eq!(r.status, 403);
    assert!(r.header("location").is_none());
    let custom = OAuth2Args {
        instead_of_redirect: Some(InsteadOfRedirect {
            condition: None,
            status: 419,
        }),
        ..OAuth2Args::default()
    };
    assert_eq!(
        respond(check(&f, &custom, &request("POST", "/x", &[]), NOW)).status,
        419
    );
}

// ---------------------------------------------------------------------------
// Callback

#[test]
fn code_exchange_uses_client_secret_basic() {
    let f = filter();
    let args = OAuth2Args::default();
    let login = start_login(&f, &args, "/");
    let (c, _) = callout(check(&f, &args, &callback_request(&login, ""), NOW));
    assert_eq!(c.cluster, "idp");
    assert_eq!(header(&c, ":method"), Some("POST"));
    assert_eq!(header(&c, ":path"), Some("/token"));
    assert_eq!(header(&c, ":authority"), Some("idp.example.com"));
    assert_eq!(
        header(&c, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let basic = header(&c, "authorization")
        .unwrap()
        .strip_prefix("Basic ")
        .unwrap();
    let decoded = String::from_utf8(STANDARD.decode(basic).unwrap()).unwrap();
    assert_eq!(decoded, "my%20client:s3cr3t%3A%26");
    let body = form(&c);
    assert_eq!(body["grant_type"], "authorization_code");
    assert_eq!(body["code"], "the-code");
    assert_eq!(
        body["redirect_uri"],
        "https://app.example.com/.portcullis/oauth2/redirection-endpoint"
    );
    assert!(!body.contains_key("client_secret"));
}

#[test]
fn body_password_sends_client_secret_post() {
    let mut f = filter();
    f.client_auth = ClientAuth::Post;
    let args = OAuth2Args::default();
    let login = start_login(&f, &args, "/");
    let (c, _) = callout(check(&f, &args, &callback_request(&login, ""), NOW));
    assert!(header(&c, "authorization").is_none());
    let body = form(&c);
    assert_eq!(body["client_id"], "my client");
    assert_eq!(body["client_secret"], "s3cr3t:&");
}

#[test]
fn jwt_assertion_sends_a_signed_client_assertion_and_no_secret() {
    let mut f = filter();
    let env = |_: &str| None;
    let mut c = crate::compile::Compiler::new(std::collections::BTreeMap::new(), &env);
    let spec = super::client_assertion::JwtAssertionSpec {
        signing_method: Some("HS256".to_string()),
        ..Default::default()
    };
    f.client_assertion = super::client_assertion::ClientAssertion::compile(
        &mut c,
        "a",
        &spec,
        "s",
        Some("s3cr3t:&"),
    );
    f.client_auth = ClientAuth::Assertion;
    let args = OAuth2Args::default();
    let login = start_login(&f, &args, "/");
    let (c, _) = callout(check(&f, &args, &callback_request(&login, ""), NOW));
    assert!(header(&c, "authorization").is_none());
    let body = form(&c);
    assert!(!body.contains_key("client_secret"));
    assert!(!body.contains_key("client_id"));
    assert_eq!(body["grant_type"], "authorization_code");
    assert_eq!(
        body["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let parts: Vec<&str> = body["client_assertion"].split('.').collect();
    let claims: serde_json::Value =
        serde_json::from_slice(&super::encoding::b64url_decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], "my client");
    assert_eq!(claims["sub"], "my client");
    assert_eq!(claims["aud"], "https://idp.example.com/token");
    assert_eq!(claims["exp"], (NOW.floor() as u64) + 60);
}

#[test]
fn login_creates_a_session_and_returns_to_the_original_url() {
    let f = filter();
    let args = OAuth2Args::default();
    let mut login = start_login(&f, &args, "/page?x=1");
    let t = default_tokens(&login);
    let r = finish_login(&f, &args, &mut login, t);
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some("https://app.example.com/page?x=1")
    );
    let set = set_cookies(&r.headers);
    let session = set
        .iter()
        .find(|c| c.starts_with("portcullis_session.login="))
        .unwrap();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=1209600",
    ] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }
    let xsrf = set
        .iter()
        .find(|c| c.starts_with("portcullis_xsrf.login="))
        .unwrap();
    assert!(!xsrf.contains("HttpOnly"));
    assert!(set
        .iter()
        .any(|c| c.starts_with("portcullis_state.login.") && c.contains("Max-Age=0")));
    assert!(!login.jar.keys().any(|k| k.starts_with("portcullis_state")));

    // The next request goes upstream with the access token and identity.
    let cookie = format!("{}; theme=dark", cookie_header(&login.jar));
    let req = request(
        "GET",
        "/page",
        &[("cookie", &cookie), ("authorization", "Bearer forged")],
    );
    let mut idp = Idp::new();
    idp.keys = keys();
    let mut cache = UserinfoCache::new();
    let step = f.check(&req, &args, &idp.state(), NOW + 10.0, &mut rng());
    let (c, pending) = callout(step);
    assert_eq!(header(&c, "authorization"), Some("Bearer opaque-access"));
    let ok = http(200, json!({"sub": "alice"}));
    cache.remember(&pending, &ok, NOW + 10.0);
    let (changes, response) = allowed(f.on_answer(
        &req,
        &args,
        pending.answered(ok),
        &idp.state(),
        NOW + 10.0,
        &mut rng(),
    ));
    assert!(response.is_empty());
    assert!(changes.contains(&HeaderChange::set("authorization", "Bearer opaque-access")));
    assert!(changes.contains(&HeaderChange::set("x-user", "alice")));
    // Portcullis's session cookies are removed; the XSRF cookie stays for the
    // application (AES).
    let cookie = header_change(&changes, "cookie");
    assert!(cookie.contains("theme=dark"), "{cookie}");
    assert!(cookie.contains("portcullis_xsrf.login="), "{cookie}");
    assert!(!cookie.contains("portcullis_session"), "{cookie}");
    // The userinfo answer is remembered: no second callout.
    let state = IdpState {
        userinfo: Some(&cache),
        ..idp.state()
    };
    allowed(f.check(&req, &args, &state, NOW + 20.0, &mut rng()));
}

#[test]
fn forged_missing_and_replayed_state_never_create_a_session() {
    let f = filter();
    let args = OAuth2Args::default();
    let mut login = start_login(&f, &args, "/");
    // Forged: a state the browser never got (same id prefix, other value).
    let mut forged = login.params["state"].clone();
    forged.push('x');
    let req = request(
        "GET",
        &format!("{CALLBACK_PATH}?code=c&state={forged}"),
        &[("cookie", &cookie_header(&login.jar))],
    );
    let r = respond(check(&f, &args, &req, NOW));
    assert_eq!(r.status, 400);
    assert!(r.header("location").is_none());
    // Missing cookie (another browser).
    let req = request(
        "GET",
        &format!("{CALLBACK_PATH}?code=c&state={}", login.params["state"]),
        &[],
    );
    assert_eq!(respond(check(&f, &args, &req, NOW)).status, 400);
    // No state at all.
    let req = request("GET", &format!("{CALLBACK_PATH}?code=c"), &[]);
    assert_eq!(respond(check(&f, &args, &req, NOW)).status, 400);
    // Expired state cookie.
    let req = callback_request(&login, "");
    assert_eq!(respond(check(&f, &args, &req, NOW + 601.0)).status, 400);
    // Replayed: after a login, the state cookie is gone; with the session, home.
    let old_jar = login.jar.clone();
    let t = default_tokens(&login);
    finish_login(&f, &args, &mut login, t);
    let req = request(
        "GET",
        &format!(
            "{CALLBACK_PATH}?code=the-code&state={}",
            login.params["state"]
        ),
        &[("cookie", &cookie_header(&login.jar))],
    );
    let r = respond(check(&f, &args, &req, NOW));
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("https://app.example.com/"))
    );
    // A replay with the old state cookie but the IdP refusing the used code.
    let req = request(
        "GET",
        &format!(
            "{CALLBACK_PATH}?code=the-code&state={}",
            login.params["state"]
        ),
        &[("cookie", &cookie_header(&old_jar))],
    );
    let (_, pending) = callout(check(&f, &args, &req, NOW));
    let r = respond(answer(
        &f,
        &args,
        &req,
        pending,
        http(400, json!({"error": "invalid_grant"})),
        NOW,
    ));
    assert_eq!(r.status, 401);
    assert!(!set_cookies(&r.headers)
        .iter()
        .any(|c| c.starts_with("portcullis_session")));
}

#[test]
fn callback_iss_must_be_the_issuer() {
    let f = filter();
    let args = OAuth2Args::default();
    let login = start_login(&f, &args, "/");
    let req = callback_request(&login, "&iss=https%3A%2F%2Fevil.example.com");
    assert_eq!(respond(check(&f, &args, &req, NOW)).status, 400);
    let req = callback_request(&login, "&iss=https%3A%2F%2Fidp.example.com");
    callout(check(&f, &args, &req, NOW));
}

#[test]
fn idp_error_answer_is_a_page_not_a_redirect() {
    let f = filter();
    let args = OAuth2Args::default();
    let login = start_login(&f, &args, "/");
    let req = callback_request(
        &login,
        "&error=access_denied&error_description=%3Cb%3Eno%3C%2Fb%3E",
    );
    let r = respond(check(&f, &args, &req, NOW));
    assert_eq!(r.status, 401);
    assert!(r.header("location").is_none());
    let body = String::from_utf8(r.body).unwrap();
    // The known code with fixed words; the description never (log only).
    assert!(body.contains("(access_denied)"), "{body}");
    assert!(
        !body.contains("&lt;b&gt;") && !body.contains("no<"),
        "{body}"
    );
    assert!(body.contains("<a href=\"/\">"), "{body}");
}

#[test]
fn bad_id_tokens_are_refused() {
    let f = filter();
    let args = OAuth2Args::default();
    type MakeToken = Box<dyn Fn(&str) -> String>;
    let cases: Vec<(&str, MakeToken)> = vec![
        ("nonce", Box::new(|_| id_token(good_claims("other-nonce")))),
        (
            "aud",
            Box::new(|n| {
                let mut c = good_claims(n);
                c["aud"] = json!("someone-else");
                id_token(c)
            }),
        ),
        (
            "azp missing with several audiences",
            Box::new(|n| {
                let mut c = good_claims(n);
                c["aud"] = json!(["my client", "other"]);
                id_token(c)
            }),
        ),
        (
            "azp other",
            Box::new(|n| {
                let mut c = good_claims(n);
                c["azp"] = json!("other");
                id_token(c)
            }),
        ),
        (
            "exp",
            Box::new(|n| {
                let mut c = good_claims(n);
                c["exp"] = json!(NOW - 3600.0);
                id_token(c)
            }),
        ),
        (
            "iss",
            Box::new(|n| {
                let mut c = good_claims(n);
                c["iss"] = json!("https://evil.example.com");
                id_token(c)
            }),
        ),
        (
            "signature",
            Box::new(|n| {
                token(
                    json!({"alg": "RS256", "kid": "k1"}),
                    good_claims(n),
                    &rsa_b(),
                )
            }),
        ),
        (
            "sub missing (OIDC Core §2: REQUIRED)",
            Box::new(|n| {
                let mut c = good_claims(n);
                c.as_object_mut().unwrap().remove("sub");
                id_token(c)
            }),
        ),
        (
            "iat missing (OIDC Core §2: REQUIRED)",
            Box::new(|n| {
                let mut c = good_claims(n);
                c.as_object_mut().unwrap().remove("iat");
                id_token(c)
            }),
        ),
        (
            "none alg",
            Box::new(|n| {
                let claims = serde_json::to_vec(&good_claims(n)).unwrap();
                format!("{}.{}.", b64url(br#"{"alg":"none"}"#), b64url(&claims))
            }),
        ),
    ];
    for (what, make) in cases {
        let mut login = start_login(&f, &args, "/");
        let tokens = json!({
            "access_token": "a", "token_type": "Bearer",
            "id_token": make(&login.params["nonce"]),
        });
        let r = finish_login(&f, &args, &mut login, tokens);
        assert_eq!(r.status, 401, "{what}");
        assert!(
            !login
                .jar
                .keys()
                .any(|k| k.starts_with("portcullis_session")),
            "{what}"
        );
    }
    // A multi-audience token with the right azp passes.
    let mut login = start_login(&f, &args, "/");
    let mut c = good_claims(&login.params["nonce"]);
    c["aud"] = json!(["my client", "other"]);
    c["azp"] = json!("my client");
    let r = finish_login(
        &f,
        &args,
        &mut login,
        json!({"access_token": "a", "id_token": id_token(c)}),
    );
    assert_eq!(r.status, 303);
}

#[test]
fn an_id_token_signed_by_a_rotated_key_waits_for_fresh_keys() {
    let f = filter();
    let args = OAuth2Args::default();
    let mut login = start_login(&f, &args, "/page");
    let rotated = token(
        json!({"alg": "RS256", "kid": "k2"}),
        good_claims(&login.params["nonce"]),
        &rsa_b(),
    );
    let req = callback_request(&login, "");
    let (_, pending) = callout(check(&f, &args, &req, NOW));
    let tokens = json!({"access_token": "a", "token_type": "Bearer", "id_token": rotated});
    let step = answer(&f, &args, &req, pending, http(200, tokens), NOW);
    let OAuth2Step::UnknownKey {
        pending: Some(pending),
        response,
    } = step
    else {
        panic!("expected UnknownKey with the token answer kept: {step:?}");
    };
    // Without fresh keys: the 401 page, the state cookie cleared, no session.
    assert_eq!(response.status, 401);
    assert!(!set_cookies(&response.headers)
        .iter()
        .any(|c| c.starts_with("portcullis_session")));
    // The fresh set holds the new key: the login completes.
    let fresh = Idp {
        discovery: discovery(),
        keys: key_set(vec![rsa_b().jwk_with_kid("k2")]),
    };
    let (c, pending) = callout(f.resume(&req, &args, pending, &fresh.state(), NOW, &mut rng()));
    assert_eq!(header(&c, ":path"), Some("/userinfo"));
    let r = respond(answer(
        &f,
        &args,
        &req,
        pending,
        http(200, userinfo_claims()),
        NOW,
    ));
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    apply_cookies(&mut login.jar, &set_cookies(&r.headers));
    assert!(login.jar.contains_key("portcullis_session.login"));
}

#[test]
fn a_jwt_access_token_signed_by_a_rotated_key_waits_for_fresh_keys() {
    let mut f = filter();
    f.validation = TokenValidation::Jwt;
    let args = OAuth2Args::default();
    let access = token(
        json!({"alg": "RS256", "kid": "k2"}),
        json!({"iss": ISSUER, "sub": "alice", "exp": NOW + 600.0}),
        &rsa_b(),
    );
    let fresh = Idp {
        discovery: discovery(),
        keys: key_set(vec![rsa_a().jwk_with_kid("k1"), rsa_b().jwk_with_kid("k2")]),
    };
    // At login: the access token names a key the cached set lacks.
    let mut login = start_login(&f, &args, "/page");
    let req = callback_request(&login, "");
    let (_, pending) = callout(check(&f, &args, &req, NOW));
    let tokens = json!({"access_token": access, "token_type": "Bearer", "expires_in": 600,
                        "id_token": id_token(good_claims(&login.params["nonce"]))});
    let step = answer(&f, &args, &req, pending, http(200, tokens), NOW);
    let OAuth2Step::UnknownKey {
        pending: Some(pending),
        response,
    } = step
    else {
        panic!("expected UnknownKey with the token answer kept: {step:?}");
    };
    assert_eq!(response.status, 401);
    let (_, pending) = callout(f.resume(&req, &args, pending, &fresh.state(), NOW, &mut rng()));
    let userinfo = http(200, userinfo_claims());
    let r = respond(f.on_answer(
        &req,
        &args,
        pending.answered(userinfo),
        &fresh.state(),
        NOW,
        &mut rng(),
    ));
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    apply_cookies(&mut login.jar, &set_cookies(&r.headers));
    // On a request, checked against a set that lacks the key (another worker's
    // copy): fresh keys are asked for.
    let req = request("GET", "/page", &[("cookie", &cookie_header(&login.jar))]);
    let step = check(&f, &args, &req, NOW + 1.0);
    let OAuth2Step::UnknownKey {
        pending: None,
        response,
    } = step
    else {
        panic!("expected UnknownKey: {step:?}");
    };
    // If it never comes: a session this fresh gets the explained page.
    assert_eq!(response.status, 401);
    let step = f.check(&req, &args, &fresh.state(), NOW + 1.0, &mut rng());
    let (changes, _) = allowed(step);
    assert!(changes.iter().any(|c| c.name == "authorization"));
}

#[test]
fn failed_code_exchanges_answer_pages() {
    let f = filter();
    let args = OAuth2Args::default();
    let cases = [
        (http(500, json!({})), 503),
        (
            CalloutAnswer::Failed {
                reason: "timeout".into(),
            },
            503,
        ),
        (http(401, json!({"error": "invalid_client"})), 401),
        (
            CalloutAnswer::Http {
                status: 200,
                headers: vec![],
                body: b"<html>".to_vec(),
            },
            502,
        ),
        (http(200, json!({"token_type": "Bearer"})), 502),
        (
            http(
                200,
                json!({"access_token": "a", "token_type": "mac", "id_token": "x"}),
            ),
            502,
        ),
        (http(200, json!({"access_token": "a"})), 502),
    ];
    for (a, status) in cases {
        let login = start_login(&f, &args, "/");
        let req = callback_request(&login, "");
        let (_, pending) = callout(check(&f, &args, &req, NOW));
        let r = respond(answer(&f, &args, &req, pending, a.clone(), NOW));
        assert_eq!(r.status, status, "{a:?}");
        assert!(r.header("location").is_none());
        let set = set_cookies(&r.headers);
        assert!(set.iter().all(|c| !c.starts_with("portcullis_session")));
        assert!(set
            .iter()
            .any(|c| c.starts_with("portcullis_state") && c.contains("Max-Age=0")));
    }
}

#[test]
fn strict_same_site_continues_with_a_page() {
    let f = filter();
    let args = OAuth2Args {
        same_site: SameSite::Strict,
        ..OAuth2Args::default()
    };
    let mut login = start_login(&f, &args, "/page");
    let t = default_tokens(&login);
    let r = finish_login(&f, &args, &mut login, t);
    assert_eq!(r.status, 200);
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert!(body.contains("url=https://app.example.com/page"));
    assert!(set_cookies(&r.headers)
        .iter()
        .any(|c| c.starts_with("portcullis_session") && c.contains("SameSite=Strict")));
}

// ---------------------------------------------------------------------------
// Open redirects

#[test]
fn original_url_on_another_origin_is_never_followed() {
    let f = filter();
    let args = OAuth2Args::default();
    for evil in [
        "https://evil.com/x",
        "https://app.example.com.evil.com/",
        "https://app.example.com//evil.com",
    ] {
        let mut login = start_login(&f, &args, "/");
        // Re-seal the state cookie with a hostile URL (as if keys leaked).
        let (name, _) = login
            .jar
            .iter()
            .find(|(n, _)| n.starts_with("portcullis_state"))
            .map(|(n, v)| (n.clone(), v.clone()))
            .unwrap();
        let value = login.jar[&name].clone();
        let plain = f.keys.open(&name, &value, NOW).unwrap();
        let mut state: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        state["u"] = json!(evil);
        let sealed = f
            .keys
            .seal(
                &name,
                NOW as u64 + 600,
                &serde_json::to_vec(&state).unwrap(),
                &mut rng(),
            )
            .unwrap();
        login.jar.insert(name, sealed);
        let t = default_tokens(&login);
        let r = finish_login(&f, &args, &mut login, t);
        assert_eq!(
            r.header("location"),
            Some("https://app.example.com/"),
            "{evil}"
        );
    }
}

#[test]
fn scheme_relative_request_paths_return_home() {
    let f = filter();
    let args = OAuth2Args::default();
    let mut login = start_login(&f, &args, "//evil.com/x");
    let t = default_tokens(&login);
    let r = finish_login(&f, &args, &mut login, t);
    assert_eq!(r.header("location"), Some("https://app.example.com/"));
}

// ---------------------------------------------------------------------------
// Sessions

pub(super) fn jwt_session_request(
    jar: &HashMap<String, String>,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Request {
    let cookie = cookie_header(jar);
    let mut headers = vec![("cookie", cookie.as_str())];
    headers.extend_from_slice(extra);
    request(method, path, &headers)
}

pub(super) fn jwt_tokens(login: &Login) -> serde_json::Value {
    json!({
        "access_token": jwt_access(NOW + 300.0),
        "id_token": id_token(good_claims(&login.params["nonce"])),
        "refresh_token": "the-refresh",
        "expires_in": 300,
    })
}

#[test]
fn jwt_access_tokens_are_verified_locally() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let req = jwt_session_request(&jar, "GET", "/", &[]);
    let (changes, _) = allowed(check(&f, &OAuth2Args::default(), &req, NOW + 5.0));
    assert!(changes.iter().any(|c| c.name == "authorization"));
    let cookie = header_change(&changes, "cookie");
    assert!(cookie.starts_with("portcullis_xsrf.login="), "{cookie}");
    assert!(!cookie.contains("portcullis_session"), "{cookie}");
}

/// The value a `set` change gives `name`.
fn header_change(changes: &[HeaderChange], name: &str) -> String {
    changes
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.value.as_deref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| panic!("no change to {name}: {changes:?}"))
}

#[test]
fn rotated_keys_open_old_sessions_and_seal_with_the_first() {
    let old = filter();
    let jar = logged_in(&old, jwt_tokens);
    let mut rotated = filter();
    rotated.keys = SessionKeys::new(&[KEY2, KEY1]);
    let req = jwt_session_request(&jar, "GET", "/", &[]);
    allowed(check(&rotated, &OAuth2Args::default(), &req, NOW + 5.0));
    // A new session from the rotated filter opens without the old key.
    let new_jar = logged_in(&rotated, jwt_tokens);
    let mut only_new = filter();
    only_new.keys = SessionKeys::new(&[KEY2]);
    allowed(check(
        &only_new,
        &OAuth2Args::default(),
        &jwt_session_request(&new_jar, "GET", "/", &[]),
        NOW + 5.0,
    ));
    // And the old session does not open with the new key alone.
    let r = respond(check(&only_new, &OAuth2Args::default(), &req, NOW + 5.0));
    assert_eq!(r.status, 303);
}

#[test]
fn tampered_truncated_renamed_and_expired_sessions_are_refused() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let value = jar["portcullis_session.login"].clone();
    let mut flipped = value.clone().into_bytes();
    let last = flipped.len() - 5;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let extended = {
        let mut parts = value.splitn(3, '.');
        let (v, _, body) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        format!("{v}.{}.{body}", NOW as u64 + 999_999)
    };
    for bad in [
        String::from_utf8(flipped).unwrap(),
        value[..value.len() - 10].to_string(),
        extended,
        "garbage".to_string(),
    ] {
        let mut j = jar.clone();
        j.insert("portcullis_session.login".to_string(), bad.clone());
        let r = respond(check(
            &f,
            &OAuth2Args::default(),
            &jwt_session_request(&j, "GET", "/", &[]),
            NOW + 5.0,
        ));
        assert_eq!(r.status, 303, "{bad}");
        // The bad cookie is cleared along with the redirect.
        assert!(set_cookies(&r.headers)
            .iter()
            .any(|c| c.starts_with("portcullis_session.login=;") && c.contains("Max-Age=0")));
    }
    // Sealed for another cookie name: refused.
    let mut j = jar.clone();
    j.remove("portcullis_session.login");
    j.insert("portcullis_session.other".to_string(), value.clone());
    let mut other = filter();
    other.name = "other".to_string();
    assert_eq!(
        respond(check(
            &other,
            &OAuth2Args::default(),
            &jwt_session_request(&j, "GET", "/", &[]),
            NOW + 5.0
        ))
        .status,
        303
    );
    // Past the session's deadline (14 days with a refresh token).
    let late = NOW + REFRESH_SESSION_LIFETIME as f64 + 1.0;
    assert_eq!(
        respond(check(
            &f,
            &OAuth2Args::default(),
            &jwt_session_request(&jar, "GET", "/", &[]),
            late
        ))
        .status,
        303
    );
}

#[test]
fn large_sessions_are_chunked_and_round_trip() {
    let f = filter();
    let big = "a".repeat(6000);
    let jar = logged_in(&f, |login| {
        json!({
            "access_token": big,
            "id_token": id_token(good_claims(&login.params["nonce"])),
            "expires_in": 300,
        })
    });
    assert!(jar.contains_key("portcullis_session.login.0"));
    assert!(jar.contains_key("portcullis_session.login.1"));
    assert!(!jar.contains_key("portcullis_session.login"));
    assert!(jar.values().all(|v| v.len() <= CHUNK_SIZE));
    let req = jwt_session_request(&jar, "GET", "/", &[("cookie", "keep=1")]);
    let idp = Idp::new();
    let (c, _) = callout(f.check(
        &req,
        &OAuth2Args::default(),
        &idp.state(),
        NOW + 1.0,
        &mut rng(),
    ));
    assert_eq!(
        header(&c, "authorization"),
        Some(format!("Bearer {big}").as_str())
    );
}

#[test]
fn smaller_sessions_clear_stale_chunks() {
    let attrs = CookieAttrs {
        secure: true,
        same_site: SameSite::Lax,
        http_only: true,
        max_age: Some(60),
    };
    let headers = crate::request::Headers::new(vec![(
        "cookie".to_string(),
        "s.0=a; s.1=b; s.2=c; other=1".to_string(),
    )]);
    let jar = CookieJar::from_headers(&headers);
    let set = write_chunked("s", &"x".repeat(CHUNK_SIZE + 10), &attrs, &jar).unwrap();
    assert!(set[0].starts_with("s.0=") && set[1].starts_with("s.1="));
    assert!(set
        .iter()
        .any(|c| c.starts_with("s.2=;") && c.contains("Max-Age=0")));
    let set = write_chunked("s", "small", &attrs, &jar).unwrap();
    assert!(set[0].starts_with("s=small"));
    for n in ["s.0=;", "s.1=;", "s.2=;"] {
        assert!(
            set.iter()
                .any(|c| c.starts_with(n) && c.contains("Max-Age=0")),
            "{n}"
        );
    }
    assert!(write_chunked("s", &"x".repeat(CHUNK_SIZE * 9), &attrs, &jar).is_none());
}

#[test]
fn idle_sessions_need_a_new_login() {
    let mut f = filter();
    f.max_idle = Some(600);
    let jar = logged_in(&f, |login| {
        json!({
            "access_token": jwt_access(NOW + 3600.0),
            "id_token": id_token(good_claims(&login.params["nonce"])),
            "expires_in": 3600,
        })
    });
    // Used within the idle time: allowed, and re-sealed (sliding).
    let req = jwt_session_request(&jar, "GET", "/", &[]);
    let (_, response) = allowed(check(&f, &OAuth2Args::default(), &req, NOW + 200.0));
    let set = set_cookies(&response);
    assert!(
        set.iter()
            .any(|c| c.starts_with("portcullis_session.login=")),
        "{set:?}"
    );
    let mut slid = jar.clone();
    apply_cookies(&mut slid, &set);
    allowed(check(
        &f,
        &OAuth2Args::default(),
        &jwt_session_request(&slid, "GET", "/", &[]),
        NOW + 700.0,
    ));
    // Idle past the limit: login.
    assert_eq!(
        respond(check(&f, &OAuth2Args::default(), &req, NOW + 601.0)).status,
        303
    );
}

#[test]
fn expired_access_tokens_are_refreshed_and_the_cookie_renewed() {
    let mut f = filter();
    f.margin = 30;
    let jar = logged_in(&f, jwt_tokens);
    let req = jwt_session_request(&jar, "GET", "/", &[]);
    // Within the safety margin of expiry: refresh.
    let (c, pending) = callout(check(&f, &OAuth2Args::default(), &req, NOW + 280.0));
    let body = form(&c);
    assert_eq!(body["grant_type"], "refresh_token");
    assert_eq!(body["refresh_token"], "the-refresh");
    assert!(header(&c, "authorization").unwrap().starts_with("Basic "));
    let fresh = jwt_access(NOW + 900.0);
    let a = http(200, json!({"access_token": fresh, "expires_in": 600}));
    let (changes, response) = allowed(answer(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        a,
        NOW + 280.0,
    ));
    assert!(changes.contains(&HeaderChange::set(
        "authorization",
        format!("Bearer {fresh}")
    )));
    let set = set_cookies(&response);
    assert!(set
        .iter()
        .any(|c| c.starts_with("portcullis_session.login=")));
    let mut renewed = jar.clone();
    apply_cookies(&mut renewed, &set);
    // The refresh token and ID token were kept.
    let (changes, _) = allowed(check(
        &f,
        &OAuth2Args::default(),
        &jwt_session_request(&renewed, "GET", "/", &[]),
        NOW + 500.0,
    ));
    assert!(changes.contains(&HeaderChange::set("x-user", "alice")));
}

#[test]
fn failed_refresh_means_login_or_503() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let req = jwt_session_request(&jar, "GET", "/", &[]);
    let (_, pending) = callout(check(&f, &OAuth2Args::default(), &req, NOW + 400.0));
    let r = respond(answer(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        http(400, json!({"error": "invalid_grant"})),
        NOW + 400.0,
    ));
    assert_eq!(r.status, 303);
    let (_, pending) = callout(check(&f, &OAuth2Args::default(), &req, NOW + 400.0));
    let r = respond(answer(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        CalloutAnswer::Failed {
            reason: "reset".into(),
        },
        NOW + 400.0,
    ));
    assert_eq!(r.status, 503);
    assert!(r.header("location").is_none());
}

#[test]
fn jwt_validation_accepts_the_idps_tokens_for_another_api() {
    // Azure AD v1: the access token is signed by the IdP's keys but its `iss`
    // is `https://sts.windows.net/<tenant>/` and `aud` another API. It came
    // from the token endpoint: not a forgery (see `access_policy`).
    for validation in [TokenValidation::Jwt, TokenValidation::Auto] {
        let mut f = filter();
        f.validation = validation;
        let v1 = token(
            json!({"alg": "RS256", "kid": "k1"}),
            json!({"iss": "https://sts.windows.net/tenant/", "aud": "api://other", "exp": NOW + 300.0}),
            &rsa_a(),
        );
        let jar = logged_in(&f, |login| {
            json!({
                "access_token": v1,
                "id_token": id_token(good_claims(&login.params["nonce"])),
                "expires_in": 300,
            })
        });
        let req = jwt_session_request(&jar, "GET", "/", &[]);
        let (changes, _) = allowed(check(&f, &OAuth2Args::default(), &req, NOW + 5.0));
        assert!(changes.contains(&HeaderChange::set("authorization", format!("Bearer {v1}"))));
    }
}

#[test]
fn jwt_validation_of_a_token_no_idp_key_signs_stops_at_the_callback() {
    let mut f = filter();
    f.validation = TokenValidation::Jwt;
    let args = OAuth2Args::default();
    let mut login = start_login(&f, &args, "/");
    let foreign = token(
        json!({"alg": "RS256", "kid": "k1"}),
        json!({"iss": ISSUER, "exp": NOW + 300.0}),
        &rsa_b(),
    );
    let tokens = json!({
        "access_token": foreign,
        "id_token": id_token(good_claims(&login.params["nonce"])),
        "expires_in": 300,
    });
    let r = finish_login(&f, &args, &mut login, tokens);
    assert_eq!(r.status, 401);
    let page = String::from_utf8_lossy(&r.body);
    assert!(page.contains("accessTokenValidation"), "{page}");
    assert!(set_cookies(&r.headers)
        .iter()
        .all(|c| !c.starts_with("portcullis_session.login=") || c.contains("Max-Age=0")));
}

#[test]
fn a_session_refused_right_after_login_gets_a_page_not_a_loop() {
    // `auto`: the IdP signs an access token that is already expired (a clock
    // far off, a misconfigured lifetime) but says `expires_in: 300`.
    let f = filter();
    let expired = jwt_access(NOW - 600.0);
    let jar = logged_in(&f, |login| {
        json!({
            "access_token": expired,
            "id_token": id_token(good_claims(&login.params["nonce"])),
            "expires_in": 300,
        })
    });
    let req = jwt_session_request(&jar, "GET", "/app", &[]);
    let r = respond(check(&f, &OAuth2Args::default(), &req, NOW + 5.0));
    assert_eq!(r.status, 401, "just signed in: a page, not a redirect");
    assert!(r.header("location").is_none());
    let page = String::from_utf8_lossy(&r.body);
    assert!(page.contains("expired"), "what was refused: {page}");
    assert!(
        page.contains("accessTokenValidation"),
        "the setting: {page}"
    );
    assert!(set_cookies(&r.headers)
        .iter()
        .any(|c| c.starts_with("portcullis_session.login=;") && c.contains("Max-Age=0")));
    // An older session that is refused logs in again.
    let r = respond(check(
        &f,
        &OAuth2Args::default(),
        &req,
        NOW + loops::JUST_SIGNED_IN as f64,
    ));
    assert_eq!(r.status, 303);
}

/// A loop is a completed login refused again: the callback marks the login
/// completed (`portcullis_logins.<name>` ends in `.c`), the next login
/// redirect counts it. Login redirects alone never count.
#[test]
fn logins_past_the_bound_in_a_window_get_the_loop_page() {
    let f = filter();
    let args = OAuth2Args::default();
    let mut jar: HashMap<String, String> = HashMap::new();
    // Many login starts (tabs, a page reloaded): never the loop page.
    for i in 0..20 {
        let req = request("GET", "/", &[("cookie", &cookie_header(&jar))]);
        let r = respond(check(&f, &args, &req, NOW + f64::from(i) * 0.1));
        assert_eq!(r.status, 303, "login start {i}");
        apply_cookies(&mut jar, &set_cookies(&r.headers));
    }
    assert!(!jar.contains_key("portcullis_logins.login"), "{jar:?}");
    // Completed logins, each refused again (the callback's mark, then a
    // login redirect): the bound, then the page.
    let complete = |jar: &mut HashMap<String, String>, at: f64| {
        let (since, loops) = jar
            .get("portcullis_logins.login")
            .and_then(|v| {
                let mut p = v.split('.');
                Some((p.next()?.to_string(), p.next()?.to_string()))
            })
            .map_or((NOW as u64, 0), |(l, s)| {
                (s.parse().unwrap(), l.parse().unwrap())
            });
        let _ = at;
        jar.insert(
            "portcullis_logins.login".to_string(),
            format!("{loops}.{since}.c"),
        );
    };
    for i in 0..loops::MAX_LOOPS_IN_WINDOW {
        complete(&mut jar, NOW + f64::from(i));
        let req = request("GET", "/", &[("cookie", &cookie_header(&jar))]);
        let r = respond(check(&f, &args, &req, NOW + 2.0 + f64::from(i)));
        assert_eq!(r.status, 303, "loop {i}");
        apply_cookies(&mut jar, &set_cookies(&r.headers));
        assert_eq!(
            jar.get("portcullis_logins.login")
                .map(|v| v.split('.').next().unwrap_or("")),
            Some((i + 1).to_string().as_str())
        );
    }
    // One just past the bound: the loop page.
    complete(&mut jar, NOW + 9.0);
    let req = request("GET", "/", &[("cookie", &cookie_header(&jar))]);
    let r = respond(check(&f, &args, &req, NOW + 10.0));
    assert_eq!(r.status, 508);
    assert!(r.header("location").is_none());
    assert!(r.header("retry-after").is_some());
    let page = String::from_utf8_lossy(&r.body);
    assert!(page.contains("accessTokenValidation") && page.contains("Secure"));
    // The window over, logins go on.
    let r = respond(check(
        &f,
        &args,
        &req,
        NOW + loops::LOGIN_WINDOW as f64 + 1.0,
    ));
    assert_eq!(r.status, 303);
    // The count never reaches the upstream.
    let mut logged = logged_in(&f, jwt_tokens);
    logged.insert("portcullis_logins.login".to_string(), "1.0".to_string());
    let (changes, _) = allowed(check(
        &f,
        &args,
        &jwt_session_request(&logged, "GET", "/", &[]),
        NOW + 5.0,
    ));
    let cookie = changes
        .iter()
        .find(|c| c.name == "cookie")
        .and_then(|c| c.value.clone())
        .map(|v| String::from_utf8(v).unwrap())
        .unwrap_or_default();
    assert!(!cookie.contains("portcullis_logins"), "{cookie}");
    assert!(!cookie.contains("portcullis_session"), "{cookie}");
}

#[test]
fn userinfo_refusal_of_a_fresh_session_is_a_page_later_a_login_and_failure_503() {
    let f = filter();
    let jar = logged_in(&f, default_tokens);
    let req = jwt_session_request(&jar, "GET", "/", &[]);
    let (c, pending) = callout(check(&f, &OAuth2Args::default(), &req, NOW + 5.0));
    assert_eq!(header(&c, ":method"), Some("GET"));
    assert_eq!(header(&c, ":path"), Some("/userinfo"));
    let r = respond(answer(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        http(401, json!({})),
        NOW + 5.0,
    ));
    assert_eq!(r.status, 401);
    assert!(String::from_utf8_lossy(&r.body).contains("UserInfo endpoint refused"));
    // Later, the same refusal refreshes the token (see
    // `userinfo_refusing_an_older_token_refreshes_it_a_fresh_one_logs_in`).
    let later = NOW + 120.0;
    let (_, pending) = callout(check(&f, &OAuth2Args::default(), &req, later));
    let (c, _) = callout(answer_only(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        http(401, json!({})),
        later,
    ));
    assert_eq!(form(&c)["grant_type"], "refresh_token");
    let (_, pending) = callout(check(&f, &OAuth2Args::default(), &req, later));
    assert_eq!(
        respond(answer(
            &f,
            &OAuth2Args::default(),
            &req,
            pending,
            http(502, json!({})),
            later
        ))
        .status,
        503
    );
}

// ---------------------------------------------------------------------------
// UserInfo at login and refresh

/// A login whose UserInfo call gets `userinfo`: the final response and jar.
fn login_with_userinfo(
    f: &OAuth2Filter,
    userinfo: CalloutAnswer,
) -> (Response, HashMap<String, String>) {
    let args = OAuth2Args::default();
    let mut login = start_login(f, &args, "/page");
    let req = callback_request(&login, "");
    let (_, pending) = callout(check(f, &args, &req, NOW));
    let tokens = default_tokens(&login);
    let (c, pending) = callout(answer_only(f, &args, &req, pending, http(200, tokens), NOW));
    assert_eq!(header(&c, ":path"), Some("/userinfo"));
    assert_eq!(header(&c, "authorization"), Some("Bearer opaque-access"));
    let r = respond(answer_only(f, &args, &req, pending, userinfo, NOW));
    apply_cookies(&mut login.jar, &set_cookies(&r.headers));
    (r, login.jar)
}

fn email_filter() -> OAuth2Filter {
    let mut f = filter();
    f.inject = vec![HeaderTemplate {
        name: "x-email".to_string(),
        template: Template::parse("{{ .userinfo.email }}|{{ .userinfo.age }}").unwrap(),
    }];
    f
}

/// What `x-email` the upstream gets with this jar, the UserInfo validation
/// answered 200.
fn injected_email(f: &OAuth2Filter, jar: &HashMap<String, String>, now: f64) -> String {
    let req = jwt_session_request(jar, "GET", "/", &[]);
    let step = match check(f, &OAuth2Args::default(), &req, now) {
        OAuth2Step::Callout { pending, .. } => answer_only(
            f,
            &OAuth2Args::default(),
            &req,
            pending,
            http(200, json!({"sub": "alice"})),
            now,
        ),
        other => other,
    };
    let (changes, _) = allowed(step);
    changes
        .iter()
        .find(|c| c.name == "x-email")
        .and_then(|c| c.value.clone())
        .map(|v| String::from_utf8(v).unwrap())
        .unwrap_or_default()
}

#[test]
fn userinfo_claims_reach_templates() {
    let f = email_filter();
    let (r, jar) = login_with_userinfo(&f, http(200, userinfo_claims()));
    assert_eq!(r.status, 303);
    assert_eq!(injected_email(&f, &jar, NOW + 5.0), "alice@example.test|42");
}

#[test]
fn userinfo_of_another_subject_is_not_used() {
    let f = email_filter();
    let other = json!({"sub": "mallory", "email": "mallory@example.test"});
    let (r, jar) = login_with_userinfo(&f, http(200, other));
    assert_eq!(r.status, 303, "the login completes");
    assert_eq!(injected_email(&f, &jar, NOW + 5.0), "<no value>|<no value>");
    // No sub at all: not used either.
    let (_, jar) = login_with_userinfo(&f, http(200, json!({"email": "x@example.test"})));
    assert_eq!(injected_email(&f, &jar, NOW + 5.0), "<no value>|<no value>");
}

#[test]
fn userinfo_failure_or_refusal_at_login_completes_it_without_claims() {
    let f = email_filter();
    let (r, jar) = login_with_userinfo(&f, http(503, json!({})));
    assert_eq!(r.status, 303);
    assert_eq!(injected_email(&f, &jar, NOW + 5.0), "<no value>|<no value>");
    // Refused (a token for another API): `auto` then trusts the sealed
    // session's expiry, with no UserInfo call per request.
    let (r, jar) = login_with_userinfo(&f, http(401, json!({})));
    assert_eq!(r.status, 303);
    let req = jwt_session_request(&jar, "GET", "/", &[]);
    let (changes, _) = allowed(check(&f, &OAuth2Args::default(), &req, NOW + 5.0));
    assert!(changes.contains(&HeaderChange::set("authorization", "Bearer opaque-access")));
    // `userinfo` validation can never pass such a token: a page at once.
    let mut strict = email_filter();
    strict.validation = TokenValidation::Userinfo;
    let (r, _) = login_with_userinfo(&strict, http(401, json!({})));
    assert_eq!(r.status, 401);
    let page = String::from_utf8_lossy(&r.body);
    assert!(page.contains("accessTokenValidation"), "{page}");
}

#[test]
fn userinfo_is_asked_again_on_refresh() {
    let f = email_filter();
    let (_, jar) = login_with_userinfo(&f, http(200, userinfo_claims()));
    let req = jwt_session_request(&jar, "GET", "/", &[]);
    let at = NOW + 400.0; // past expires_in 300
    let (c, pending) = callout(check(&f, &OAuth2Args::default(), &req, at));
    assert_eq!(form(&c)["grant_type"], "refresh_token");
    let refreshed = http(200, json!({"access_token": "opaque-2", "expires_in": 300}));
    let (c, pending) = callout(answer_only(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        refreshed,
        at,
    ));
    assert_eq!(header(&c, "authorization"), Some("Bearer opaque-2"));
    let claims = json!({"sub": "alice", "email": "new@example.test", "age": 43});
    let (changes, response) = allowed(answer_only(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        http(200, claims),
        at,
    ));
    assert!(changes.contains(&HeaderChange::set("x-email", "new@example.test|43")));
    let mut renewed = jar.clone();
    apply_cookies(&mut renewed, &set_cookies(&response));
    assert_eq!(
        injected_email(&f, &renewed, at + 5.0),
        "new@example.test|43"
    );
}

#[test]
fn signed_userinfo_answers_are_verified() {
    let f = email_filter();
    let signed = |key: &crate::jwt::verify::test_fixtures::Priv| {
        CalloutAnswer::Http {
        status: 200,
        headers: vec![(
            "content-type".to_string(),
            b"application/jwt; charset=utf-8".to_vec(),
        )],
        body: token(
            json!({"alg": "RS256", "kid": "k1"}),
            json!({"sub": "alice", "email": "signed@example.test", "iss": ISSUER, "aud": "my client"}),
            key,
        )
        .into_bytes(),
    }
    };
    let (_, jar) = login_with_userinfo(&f, signed(&rsa_a()));
    assert_eq!(
        injected_email(&f, &jar, NOW + 5.0),
        "signed@example.test|<no value>"
    );
    let (_, jar) = login_with_userinfo(&f, signed(&rsa_b()));
    assert_eq!(injected_email(&f, &jar, NOW + 5.0), "<no value>|<no value>");
}

// ---------------------------------------------------------------------------
// Bounds: an input just past each

#[test]
fn a_return_url_past_its_bound_keeps_its_path_or_the_root() {
    let f = filter();
    let args = OAuth2Args::default();
    let at_bound = format!("/p?q={}", "a".repeat(flow::MAX_RETURN_PATH - 5));
    assert_eq!(at_bound.len(), flow::MAX_RETURN_PATH);
    let past = format!("{at_bound}b");
    let long_path = format!("/{}", "c".repeat(flow::MAX_RETURN_PATH));
    for (path, back) in [
        (at_bound.as_str(), at_bound.as_str()),
        (past.as_str(), "/p"),
        (long_path.as_str(), "/"),
    ] {
        let r = respond(check(&f, &args, &request("GET", path, &[]), NOW));
        for c in set_cookies(&r.headers) {
            assert!(c.len() < 4096, "a cookie of {} bytes", c.len());
        }
        let mut login = Login {
            params: location_params(&r),
            jar: HashMap::new(),
        };
        apply_cookies(&mut login.jar, &set_cookies(&r.headers));
        let tokens = default_tokens(&login);
        let done = finish_login(&f, &args, &mut login, tokens);
        assert_eq!(
            done.header("location"),
            Some(format!("https://app.example.com{back}").as_str())
        );
    }
}

#[test]
fn a_logout_url_past_its_bound_leaves_out_the_id_token_hint() {
    let f = filter();
    let args = OAuth2Args::default();
    let logout = |groups: usize, login_hint: bool| {
        let jar = logged_in(&f, |login| {
            let mut claims = good_claims(&login.params["nonce"]);
            claims["groups"] = json!("g".repeat(groups));
            if login_hint {
                claims["login_hint"] = json!("O.hint");
            }
            json!({"access_token": "opaque-access", "id_token": id_token(claims), "expires_in": 300})
        });
        let xsrf = jar["portcullis_xsrf.login"].clone();
        let req = jwt_session_request(&jar, "POST", &format!("{LOGOUT_PATH}?_xsrf={xsrf}"), &[]);
        respond(check(&f, &args, &req, NOW + 5.0))
    };
    // The largest claim that keeps the hint (a binary search), then a few
    // bytes more.
    let keeps = |n: usize| {
        logout(n, false)
            .header("location")
            .is_some_and(|l| l.len() <= flow::MAX_LOGOUT_URL && l.contains("id_token_hint"))
    };
    let (mut fits, mut over) = (0usize, 4096usize);
    assert!(keeps(fits) && !keeps(over));
    while over - fits > 1 {
        let mid = (fits + over) / 2;
        if keeps(mid) {
            fits = mid;
        } else {
            over = mid;
        }
    }
    let at = logout(fits, false);
    assert!(location_params(&at).contains_key("id_token_hint"));
    // One byte more passes the bound.
    let past = logout(over, false);
    let loc = past.header("location").unwrap();
    assert!(loc.len() <= flow::MAX_LOGOUT_URL, "{}", loc.len());
    let p = location_params(&past);
    assert!(!p.contains_key("id_token_hint"));
    assert_eq!(p["client_id"], "my client");
    assert_eq!(p["post_logout_redirect_uri"], "https://app.example.com/bye");
    let with_hint = logout(over, true);
    assert_eq!(location_params(&with_hint)["logout_hint"], "O.hint");
}

#[test]
fn rule_scopes_must_be_granted() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let args = OAuth2Args {
        scopes: vec!["admin".to_string(), "offline_access".to_string()],
        ..OAuth2Args::default()
    };
    let r = respond(check(
        &f,
        &args,
        &jwt_session_request(&jar, "GET", "/", &[]),
        NOW + 5.0,
    ));
    assert_eq!(r.status, 403);
}

// ---------------------------------------------------------------------------
// XSRF and logout

#[test]
fn unsafe_methods_reach_the_application_with_the_xsrf_cookie() {
    // As AES: the application checks `_xsrf` against the cookie itself.
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let xsrf = jar["portcullis_xsrf.login"].clone();
    let mut req = jwt_session_request(
        &jar,
        "POST",
        "/form",
        &[("content-type", "application/x-www-form-urlencoded")],
    );
    req.body = None;
    let (changes, _) = allowed(check(&f, &OAuth2Args::default(), &req, NOW + 5.0));
    let cookie = header_change(&changes, "cookie");
    assert!(
        cookie.contains(&format!("portcullis_xsrf.login={xsrf}")),
        "{cookie}"
    );
    // The body is never asked for: it goes upstream untouched.
    assert!(!changes
        .iter()
        .any(|c| c.name == "content-type" || c.name == "content-length"));
}

#[test]
fn unsafe_methods_need_the_xsrf_token_when_opted_in() {
    let mut f = filter();
    f.xsrf_on_requests = true;
    let jar = logged_in(&f, jwt_tokens);
    let xsrf = jar["portcullis_xsrf.login"].clone();
    let args = OAuth2Args::default();
    assert_eq!(
        respond(check(
            &f,
            &args,
            &jwt_session_request(&jar, "POST", "/form", &[]),
            NOW + 5.0
        ))
        .status,
        403
    );
    assert_eq!(
        respond(check(
            &f,
            &args,
            &jwt_session_request(&jar, "DELETE", "/x", &[("x-xsrf-token", "wrong")]),
            NOW + 5.0
        ))
        .status,
        403
    );
    allowed(check(
        &f,
        &args,
        &jwt_session_request(&jar, "POST", "/form", &[("x-xsrf-token", &xsrf)]),
        NOW + 5.0,
    ));
    allowed(check(
        &f,
        &args,
        &jwt_session_request(&jar, "POST", &format!("/form?_xsrf={xsrf}"), &[]),
        NOW + 5.0,
    ));
    allowed(check(
        &f,
        &args,
        &jwt_session_request(&jar, "OPTIONS", "/form", &[]),
        NOW + 5.0,
    ));
}

#[test]
fn logout_clears_cookies_and_ends_the_idp_session() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let xsrf = jar["portcullis_xsrf.login"].clone();
    let args = OAuth2Args::default();
    let req = jwt_session_request(&jar, "POST", &format!("{LOGOUT_PATH}?_xsrf={xsrf}"), &[]);
    let r = respond(check(&f, &args, &req, NOW + 5.0));
    assert_eq!(r.status, 303);
    assert!(r
        .header("location")
        .unwrap()
        .starts_with("https://idp.example.com/logout?"));
    let p = location_params(&r);
    assert!(p["id_token_hint"].starts_with("eyJ"));
    assert_eq!(p["post_logout_redirect_uri"], "https://app.example.com/bye");
    let set = set_cookies(&r.headers);
    for name in ["portcullis_session.login=;", "portcullis_xsrf.login=;"] {
        assert!(
            set.iter()
                .any(|c| c.starts_with(name) && c.contains("Max-Age=0")),
            "{name}"
        );
    }
    // Wrong or missing _xsrf: 403, nothing cleared.
    let req = jwt_session_request(&jar, "POST", &format!("{LOGOUT_PATH}?_xsrf=nope"), &[]);
    assert_eq!(respond(check(&f, &args, &req, NOW + 5.0)).status, 403);
    let req = jwt_session_request(&jar, "POST", LOGOUT_PATH, &[]);
    assert_eq!(respond(check(&f, &args, &req, NOW + 5.0)).status, 403);
    let req = jwt_session_request(&jar, "GET", LOGOUT_PATH, &[]);
    assert_eq!(respond(check(&f, &args, &req, NOW + 5.0)).status, 405);
}

#[test]
fn aes_logout_form_reads_xsrf_from_the_body() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let xsrf = jar["portcullis_xsrf.login"].clone();
    let args = OAuth2Args::default();
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let mut req = jwt_session_request(
        &jar,
        "POST",
        "/.ambassador/oauth2/logout?realm=login.default",
        &form,
    );
    // No token in the query or a header: the body is asked for, bounded.
    match check(&f, &args, &req, NOW + 5.0) {
        OAuth2Step::NeedBody { max_bytes } => assert_eq!(max_bytes, MAX_LOGOUT_FORM_BYTES),
        other => panic!("expected NeedBody, got {other:?}"),
    }
    req.body = Some(format!("realm=login.default&_xsrf={}", percent_encode(&xsrf)).into_bytes());
    let r = respond(check(&f, &args, &req, NOW + 5.0));
    assert_eq!(r.status, 303);
    assert!(set_cookies(&r.headers)
        .iter()
        .any(|c| c.starts_with("portcullis_session.login=;")));
    // A wrong one, or none, in the body: 403.
    req.body = Some(b"realm=login.default&_xsrf=nope".to_vec());
    assert_eq!(respond(check(&f, &args, &req, NOW + 5.0)).status, 403);
    req.body = Some(Vec::new());
    assert_eq!(respond(check(&f, &args, &req, NOW + 5.0)).status, 403);
    // The form is bounded: 4096 bytes pass, one more is refused.
    let padded = |len: usize| {
        let mut body = format!("_xsrf={}&pad=", percent_encode(&xsrf)).into_bytes();
        body.resize(len, b'x');
        body
    };
    req.body = Some(padded(MAX_LOGOUT_FORM_BYTES));
    assert_eq!(respond(check(&f, &args, &req, NOW + 5.0)).status, 303);
    req.body = Some(padded(MAX_LOGOUT_FORM_BYTES + 1));
    assert_eq!(respond(check(&f, &args, &req, NOW + 5.0)).status, 413);
    // A body that is not a form is never read for it.
    let mut json_req = jwt_session_request(
        &jar,
        "POST",
        LOGOUT_PATH,
        &[("content-type", "application/json")],
    );
    assert_eq!(respond(check(&f, &args, &json_req, NOW + 5.0)).status, 403);
    json_req.body = Some(format!("_xsrf={xsrf}").into_bytes());
    assert_eq!(respond(check(&f, &args, &json_req, NOW + 5.0)).status, 403);
}

#[test]
fn callbacks_arrive_at_the_configured_and_the_aes_paths() {
    let mut f = filter();
    f.callback_path = AES_CALLBACK_PATH.to_string();
    let r = respond(check(
        &f,
        &OAuth2Args::default(),
        &request("GET", "/app", &[]),
        NOW,
    ));
    let p = location_params(&r);
    assert_eq!(
        p["redirect_uri"],
        "https://app.example.com/.ambassador/oauth2/redirection-endpoint"
    );
    for path in [AES_CALLBACK_PATH, CALLBACK_PATH] {
        assert!(f.handles_path(&format!("{path}?code=x&state=y")), "{path}");
    }
    assert!(f.handles_path(AES_LOGOUT_PATH));
    assert!(!f.handles_path("/.ambassador/oauth2/other"));
}

#[test]
fn internal_origins_map_to_the_protected_origin() {
    let mut f = filter();
    f.origins[0].include_subdomains = false;
    f.origins[0].internal = vec![InternalOrigin {
        scheme: None,
        host: None,
    }];
    // Envoy sees http://backend:8080 behind a TLS-terminating proxy.
    let mut req = request("GET", "/app", &[]);
    req.scheme = "http".to_string();
    req.authority = "backend:8080".to_string();
    let r = respond(check(&f, &OAuth2Args::default(), &req, NOW));
    assert_eq!(r.status, 303);
    let p = location_params(&r);
    assert_eq!(
        p["redirect_uri"],
        "https://app.example.com/.portcullis/oauth2/redirection-endpoint"
    );
    // Without the pattern: not protected, 403.
    f.origins[0].internal.clear();
    assert_eq!(
        respond(check(&f, &OAuth2Args::default(), &req, NOW)).status,
        403
    );
}

#[test]
fn derived_session_keys_depend_on_secret_and_filter_name() {
    let a = SessionKeys::derive_from_secret("client-secret", "sso.default");
    assert_eq!(
        a,
        SessionKeys::derive_from_secret("client-secret", "sso.default")
    );
    assert_ne!(
        a,
        SessionKeys::derive_from_secret("client-secret", "sso.other")
    );
    assert_ne!(
        a,
        SessionKeys::derive_from_secret("client-secreT", "sso.default")
    );
}

#[test]
fn logout_without_end_session_endpoint_goes_to_post_logout_uri() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let xsrf = jar["portcullis_xsrf.login"].clone();
    let mut idp = Idp::new();
    idp.discovery.end_session_endpoint = None;
    let req = jwt_session_request(&jar, "POST", LOGOUT_PATH, &[("x-xsrf-token", &xsrf)]);
    let r = respond(f.check(
        &req,
        &OAuth2Args::default(),
        &idp.state(),
        NOW + 5.0,
        &mut rng(),
    ));
    assert_eq!(r.header("location"), Some("https://app.example.com/bye"));
}

// ---------------------------------------------------------------------------
// Grants

#[test]
fn client_credentials_grant_uses_the_request_credentials() {
    let mut f = filter();
    f.grant = GrantType::ClientCredentials;
    let args = OAuth2Args {
        scopes: vec!["read".to_string()],
        ..OAuth2Args::default()
    };
    let req = request(
        "GET",
        "/api",
        &[
            ("x-ambassador-client-id", "svc"),
            ("x-ambassador-client-secret", "pw"),
        ],
    );
    let (c, pending) = callout(check(&f, &args, &req, NOW));
    let basic = header(&c, "authorization")
        .unwrap()
        .strip_prefix("Basic ")
        .unwrap();
    assert_eq!(STANDARD.decode(basic).unwrap(), b"svc:pw");
    let body = form(&c);
    assert_eq!(
        (body["grant_type"].as_str(), body["scope"].as_str()),
        ("client_credentials", "read")
    );
    let (changes, _) = allowed(answer(
        &f,
        &args,
        &req,
        pending,
        http(
            200,
            json!({"access_token": "cc-token", "token_type": "bearer"}),
        ),
        NOW,
    ));
    assert!(changes.contains(&HeaderChange::set("authorization", "Bearer cc-token")));
    assert!(changes.contains(&HeaderChange::remove("x-ambassador-client-secret")));
    // Missing credentials: 401; refused: 401; IdP down: 503.
    assert_eq!(
        respond(check(&f, &args, &request("GET", "/api", &[]), NOW)).status,
        401
    );
    let (_, pending) = callout(check(&f, &args, &req, NOW));
    assert_eq!(
        respond(answer(
            &f,
            &args,
            &req,
            pending,
            http(401, json!({"error": "invalid_client"})),
            NOW
        ))
        .status,
        401
    );
    let (_, pending) = callout(check(&f, &args, &req, NOW));
    assert_eq!(
        respond(answer(
            &f,
            &args,
            &req,
            pending,
            CalloutAnswer::Failed { reason: "x".into() },
            NOW
        ))
        .status,
        503
    );
}

#[test]
fn password_grant_sends_the_user_credentials() {
    let mut f = filter();
    f.grant = GrantType::Password;
    let args = OAuth2Args::default();
    let req = request(
        "GET",
        "/api",
        &[
            ("x-ambassador-username", "alice"),
            ("x-ambassador-password", "p w"),
        ],
    );
    let (c, pending) = callout(check(&f, &args, &req, NOW));
    let body = form(&c);
    assert_eq!(
        (
            body["grant_type"].as_str(),
            body["username"].as_str(),
            body["password"].as_str()
        ),
        ("password", "alice", "p w")
    );
    assert!(header(&c, "authorization").is_some());
    let (changes, _) = allowed(answer(
        &f,
        &args,
        &req,
        pending,
        http(200, json!({"access_token": "pw-token"})),
        NOW,
    ));
    assert!(changes.contains(&HeaderChange::remove("x-ambassador-password")));
    assert_eq!(
        respond(check(
            &f,
            &args,
            &request("GET", "/api", &[("x-ambassador-username", "alice")]),
            NOW
        ))
        .status,
        401
    );
}

// ---------------------------------------------------------------------------
// The IdP not loaded, discovery

#[test]
fn missing_discovery_or_keys_waits_for_the_idp() {
    let f = filter();
    let d = discovery();
    let states = [
        IdpState::default(),
        IdpState {
            discovery: Some(&d),
            ..IdpState::default()
        },
    ];
    for s in states {
        assert!(matches!(
            f.check(
                &request("GET", "/", &[]),
                &OAuth2Args::default(),
                &s,
                NOW,
                &mut rng()
            ),
            OAuth2Step::NeedIdp
        ));
    }
    assert_eq!(f.idp_unavailable().status, 503);
}

#[test]
fn discovery_issuer_must_be_the_authorization_url() {
    let doc = |issuer: &str| {
        json!({
            "issuer": issuer,
            "authorization_endpoint": "https://idp.example.com/authorize",
            "token_endpoint": "https://idp.example.com/token",
            "jwks_uri": "https://idp.example.com/jwks",
        })
        .to_string()
    };
    let f = filter();
    let d = f
        .parse_discovery(doc("https://idp.example.com/").as_bytes())
        .unwrap();
    assert_eq!(d.userinfo_endpoint, None);
    assert!(f
        .parse_discovery(doc("https://evil.example.com").as_bytes())
        .is_err());
    assert!(Discovery::parse(br#"{"issuer": "x"}"#).is_err());
    let bad_url = doc(ISSUER).replace("https://idp.example.com/token", "ftp://x");
    assert!(Discovery::parse(bad_url.as_bytes()).is_err());
    assert_eq!(
        f.callout_target("https://idp.example.com/token")
            .unwrap()
            .cluster,
        "idp"
    );
}

#[test]
fn templates_see_tls_and_request_headers() {
    let mut f = filter();
    f.inject = vec![HeaderTemplate {
        name: "x-info".to_string(),
        template: Template::parse(
            "{{ .token.Claims.sub }}/{{ .httpRequestHeader.Get \"X-Trace\" }}/{{ .tls.subject }}",
        )
        .unwrap(),
    }];
    let jar = logged_in(&f, jwt_tokens);
    let mut req = jwt_session_request(&jar, "GET", "/", &[("x-trace", "t1")]);
    req.tls = Some(TlsInfo {
        subject: "CN=c".to_string(),
        ..TlsInfo::default()
    });
    let (changes, _) = allowed(check(&f, &OAuth2Args::default(), &req, NOW + 5.0));
    assert!(changes.contains(&HeaderChange::set("x-info", "alice/t1/CN=c")));
}

#[test]
fn encoding_round_trips() {
    assert_eq!(percent_decode("a%20b+c%zz", true), "a b c%zz");
    let p = query_params("/x?a=1&b=%2F&&c");
    assert_eq!(
        p,
        vec![
            ("a".into(), "1".into()),
            ("b".into(), "/".into()),
            ("c".into(), "".into())
        ]
    );
}

#[test]
fn opened_sessions_are_cached_transparently() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let idp = Idp::new();
    let cache = std::cell::RefCell::new(super::session::SessionCache::default());
    let state = IdpState {
        session_cache: Some(&cache),
        ..idp.state()
    };
    let req = jwt_session_request(&jar, "GET", "/", &[]);
    let first = allowed(f.check(&req, &OAuth2Args::default(), &state, NOW + 5.0, &mut rng()));
    assert_eq!(cache.borrow().len(), 1, "the opened session is remembered");
    let second = allowed(f.check(&req, &OAuth2Args::default(), &state, NOW + 6.0, &mut rng()));
    assert_eq!(
        first.0, second.0,
        "a cache hit gives the same upstream request"
    );
    // A tampered cookie is another key: it is opened (and refused) as ever.
    let mut tampered = jar.clone();
    if let Some(v) = tampered.get_mut("portcullis_session.login") {
        v.push('A');
    }
    let r = respond(f.check(
        &jwt_session_request(&tampered, "GET", "/", &[]),
        &OAuth2Args::default(),
        &state,
        NOW + 7.0,
        &mut rng(),
    ));
    assert_eq!(r.status, 303);
    // Past the cookie's sealed expiry, the cached entry no longer serves.
    let late = f.check(
        &req,
        &OAuth2Args::default(),
        &state,
        NOW + 1.0e9,
        &mut rng(),
    );
    assert!(!matches!(late, OAuth2Step::Allow { .. }));
}

#[test]
fn filters_sharing_a_name_prefix_keep_to_their_own_cookies() {
    let app = filter(); // "login"
    let mut other = filter();
    other.name = "login.default".to_string();
    for name in [
        "portcullis_session.login",
        "portcullis_session.login.0",
        "portcullis_session.login.7",
        "portcullis_xsrf.login",
        "portcullis_logins.login",
        "portcullis_state.login.AbCdEf012345",
    ] {
        assert!(app.owns_cookie(name), "{name}");
        assert!(!other.owns_cookie(name), "{name}");
    }
    for name in [
        "portcullis_session.login.default",
        "portcullis_session.login.default.1",
        "portcullis_xsrf.login.default",
        "portcullis_state.login.default.AbCdEf012345",
        "portcullis_logins.login.default",
    ] {
        assert!(other.owns_cookie(name), "{name}");
        assert!(!app.owns_cookie(name), "{name}");
    }
    // Four logins of the other filter in progress: this one's login clears none.
    let cookies: Vec<String> = (0..4)
        .map(|i| format!("portcullis_state.login.default.id{i}=x"))
        .collect();
    let req = request("GET", "/", &[("cookie", &cookies.join("; "))]);
    let r = respond(check(&app, &OAuth2Args::default(), &req, NOW));
    assert!(set_cookies(&r.headers)
        .iter()
        .all(|c| !c.contains("Max-Age=0")));
    // Names whose cookies would collide are refused at configure time.
    assert!(cookie_names_collide("app", "app.1"));
    assert!(cookie_names_collide("app.1", "app"));
    assert!(!cookie_names_collide("app", "app.default"));
    assert!(!cookie_names_collide("app", "app"));
}

#[test]
fn a_session_just_past_its_chunk_bound_is_refused_with_a_page() {
    use super::session::{MAX_CHUNKS, MAX_SEALED_LEN};
    let attrs = CookieAttrs {
        secure: true,
        same_site: SameSite::Lax,
        http_only: true,
        max_age: Some(60),
    };
    let jar = CookieJar::default();
    let at = "a".repeat(MAX_SEALED_LEN);
    let set = write_chunked("s", &at, &attrs, &jar).expect("at the bound: chunked");
    assert_eq!(set.len(), MAX_CHUNKS);
    assert!(set.iter().all(|c| c.len() < 4096));
    let past = "a".repeat(MAX_SEALED_LEN + 1);
    assert!(write_chunked("s", &past, &attrs, &jar).is_none());
    // At login: tokens too large for the session's cookies get a 502 page,
    // no cookie, no redirect.
    let f = filter();
    let args = OAuth2Args::default();
    let mut login = start_login(&f, &args, "/");
    let mut claims = good_claims(&login.params["nonce"]);
    claims["groups"] = json!("g".repeat(11_000));
    let mut big_access = claims.clone();
    big_access["groups"] = json!("h".repeat(11_000));
    let tokens = json!({
        "access_token": id_token(big_access),
        "id_token": id_token(claims),
        "refresh_token": "r".repeat(8 * 1024),
        "expires_in": 300,
    });
    let r = finish_login(&f, &args, &mut login, tokens);
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("too large to keep in cookies"));
    assert!(r.header("location").is_none());
    assert!(set_cookies(&r.headers)
        .iter()
        .all(|c| !c.starts_with("portcullis_session.login")));
}

// ---------------------------------------------------------------------------
// Refresh answers (OIDC Core §12.2, RFC 6749 §6) and the shared refresh

/// The refresh callout of a session at `now`, and its request.
fn refresh_of(
    f: &OAuth2Filter,
    jar: &HashMap<String, String>,
    now: f64,
) -> (Request, Callout, OAuth2Pending) {
    let req = jwt_session_request(jar, "GET", "/", &[]);
    let (c, pending) = callout(check(f, &OAuth2Args::default(), &req, now));
    assert_eq!(form(&c)["grant_type"], "refresh_token");
    (req, c, pending)
}

#[test]
fn a_refresh_is_shared_by_the_session_s_requests_and_only_theirs() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let (_, a, _) = refresh_of(&f, &jar, NOW + 400.0);
    let (_, b, _) = refresh_of(&f, &jar, NOW + 401.0);
    assert!(a.share.is_some());
    assert_eq!(
        a.share, b.share,
        "two requests of one session share one refresh"
    );
    let other = logged_in(&f, |login| {
        let mut t = jwt_tokens(login);
        t["refresh_token"] = json!("another-refresh");
        t
    });
    let (_, c, _) = refresh_of(&f, &other, NOW + 400.0);
    assert_ne!(a.share, c.share, "another session refreshes on its own");
    // An IdP that does not rotate: the same refresh token, the next access
    // token: the next refresh is another callout.
    let next = logged_in(&f, |login| {
        let mut t = jwt_tokens(login);
        t["access_token"] = json!(jwt_access(NOW + 301.0));
        t
    });
    let (_, d, _) = refresh_of(&f, &next, NOW + 400.0);
    assert_eq!(form(&d)["refresh_token"], "the-refresh");
    assert_ne!(a.share, d.share, "the refresh of another access token");
}

#[test]
fn a_refreshed_id_token_for_another_subject_ends_the_session() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let (req, _, pending) = refresh_of(&f, &jar, NOW + 400.0);
    let mallory = id_token(json!({
        "iss": ISSUER, "aud": "my client", "sub": "mallory", "exp": NOW + 900.0, "iat": NOW + 400.0,
    }));
    let a = http(
        200,
        json!({"access_token": jwt_access(NOW + 900.0), "id_token": mallory, "expires_in": 600}),
    );
    let r = respond(answer(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        a,
        NOW + 400.0,
    ));
    assert_eq!(r.status, 303, "a new login");
    assert!(r
        .header("location")
        .is_some_and(|l| l.contains("/authorize?")));
    // The same subject is fine, and keeps the session.
    let (req, _, pending) = refresh_of(&f, &jar, NOW + 400.0);
    let alice = id_token(json!({
        "iss": ISSUER, "aud": "my client", "sub": "alice", "exp": NOW + 900.0, "iat": NOW + 400.0,
    }));
    let a = http(
        200,
        json!({"access_token": jwt_access(NOW + 900.0), "id_token": alice, "expires_in": 600}),
    );
    allowed(answer(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        a,
        NOW + 400.0,
    ));
}

#[test]
fn a_refresh_answer_without_refresh_or_id_token_keeps_the_session_s() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let (req, _, pending) = refresh_of(&f, &jar, NOW + 400.0);
    // `expires_in` as a string, as some IdPs send it.
    let a = http(
        200,
        json!({"access_token": jwt_access(NOW + 1300.0), "expires_in": "900"}),
    );
    let (_, response) = allowed(answer(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        a,
        NOW + 400.0,
    ));
    let mut renewed = jar.clone();
    apply_cookies(&mut renewed, &set_cookies(&response));
    // Still the ID token's subject, and not due before 900 s later.
    let (changes, _) = allowed(check(
        &f,
        &OAuth2Args::default(),
        &jwt_session_request(&renewed, "GET", "/", &[]),
        NOW + 1200.0,
    ));
    assert!(changes.contains(&HeaderChange::set("x-user", "alice")));
    // Then it refreshes with the refresh token it had.
    let (_, c, _) = refresh_of(&f, &renewed, NOW + 1301.0);
    assert_eq!(form(&c)["refresh_token"], "the-refresh");
}

#[test]
fn an_opaque_token_without_expires_in_is_refreshed_after_the_assumed_lifetime() {
    let f = filter();
    let jar = logged_in(&f, |login| {
        json!({
            "access_token": "opaque-access",
            "token_type": "Bearer",
            "id_token": id_token(good_claims(&login.params["nonce"])),
            "refresh_token": "the-refresh",
        })
    });
    let req = jwt_session_request(&jar, "GET", "/", &[]);
    // Before: checked at UserInfo.
    let (c, _) = callout(check(&f, &OAuth2Args::default(), &req, NOW + 5.0));
    assert_eq!(header(&c, ":path"), Some("/userinfo"));
    // After the assumed lifetime: refreshed.
    let now = NOW + super::ASSUMED_ACCESS_LIFETIME as f64;
    let (_, c, _) = refresh_of(&f, &jar, now);
    assert_eq!(form(&c)["refresh_token"], "the-refresh");
}

#[test]
fn userinfo_refusing_an_older_token_refreshes_it_a_fresh_one_logs_in() {
    let f = filter();
    let jar = logged_in(&f, default_tokens);
    let req = jwt_session_request(&jar, "GET", "/", &[]);
    let later = NOW + super::REFRESH_ON_REFUSAL_AFTER as f64;
    let (_, pending) = callout(check(&f, &OAuth2Args::default(), &req, later));
    let (c, pending) = callout(answer(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        http(401, json!({})),
        later,
    ));
    assert_eq!(form(&c)["grant_type"], "refresh_token");
    let a = http(200, json!({"access_token": "opaque-2", "expires_in": 300}));
    let (changes, set) = allowed(answer(&f, &OAuth2Args::default(), &req, pending, a, later));
    assert!(changes.contains(&HeaderChange::set("authorization", "Bearer opaque-2")));
    // The refreshed token refused at once, within a minute of the login: not
    // the login's token (the grant was revoked meanwhile): a new login.
    let mut renewed = jar.clone();
    apply_cookies(&mut renewed, &set_cookies(&set));
    let req2 = jwt_session_request(&renewed, "GET", "/", &[]);
    let (_, pending) = callout(check(&f, &OAuth2Args::default(), &req2, later + 1.0));
    let r = respond(answer(
        &f,
        &OAuth2Args::default(),
        &req2,
        pending,
        http(401, json!({})),
        later + 1.0,
    ));
    assert_eq!(r.status, 303);
    // A token refused right after it was obtained: no refresh loop, and as
    // the login has just completed, no login loop either: the explained page
    // (`loops::refused`).
    let (_, pending) = callout(check(&f, &OAuth2Args::default(), &req, NOW + 1.0));
    let r = respond(answer(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        http(401, json!({})),
        NOW + 1.0,
    ));
    assert_eq!(r.status, 401);
    assert!(r.header("location").is_none());
}

#[test]
fn a_late_request_reads_a_shared_answer_as_of_its_age() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let aged = |age: &str, rt: &str| CalloutAnswer::Http {
        status: 200,
        headers: vec![("age".into(), age.into())],
        body: json!({"access_token": "opaque-2", "refresh_token": rt, "expires_in": 60})
            .to_string()
            .into_bytes(),
    };
    // 20 s old: the token has 40 s left; the request goes on with it.
    let (req, _, pending) = refresh_of(&f, &jar, NOW + 400.0);
    let (changes, _) = allowed(answer(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        aged("20", "rt-2"),
        NOW + 400.0,
    ));
    assert!(changes.contains(&HeaderChange::set("authorization", "Bearer opaque-2")));
    // 61 s old: that token has expired already; refreshed again with the
    // refresh token the answer gave.
    let (req, _, pending) = refresh_of(&f, &jar, NOW + 400.0);
    let (c, _) = callout(answer(
        &f,
        &OAuth2Args::default(),
        &req,
        pending,
        aged("61", "rt-2"),
        NOW + 400.0,
    ));
    assert_eq!(form(&c)["refresh_token"], "rt-2");
}

#[test]
fn a_stale_session_cookie_of_the_same_name_does_not_hide_the_good_one() {
    // A browser sends two cookies of one name when they differ in Path or
    // Domain (a longer path first): the session opens from whichever is good.
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let good = jar["portcullis_session.login"].clone();
    let others = cookie_header(&jar).replace(&format!("portcullis_session.login={good}"), "");
    for cookie in [
        format!("portcullis_session.login=garbage; portcullis_session.login={good}; {others}"),
        format!("portcullis_session.login={good}; portcullis_session.login=garbage; {others}"),
        format!("portcullis_session.login=a; portcullis_session.login=b; portcullis_session.login={good}; {others}"),
    ] {
        let req = request("GET", "/", &[("cookie", cookie.as_str())]);
        let (changes, _) = allowed(check(&f, &OAuth2Args::default(), &req, NOW + 5.0));
        assert!(changes.iter().any(|c| c.name == "authorization"), "{cookie}");
    }
    // Only stale ones: a new login.
    let req = request(
        "GET",
        "/",
        &[(
            "cookie",
            "portcullis_session.login=a; portcullis_session.login=b",
        )],
    );
    assert_eq!(
        respond(check(&f, &OAuth2Args::default(), &req, NOW + 5.0)).status,
        303
    );
}

/// An IdP without a UserInfo endpoint (Azure AD B2C; OIDC Discovery makes it
/// only RECOMMENDED) and opaque access tokens: `auto` does what it does when
/// UserInfo refuses such a token (the token's lifetime counts), never a 503.
#[test]
fn auto_without_a_userinfo_endpoint_passes_an_opaque_token_on_its_lifetime() {
    let f = filter();
    let args = OAuth2Args::default();
    let jar = logged_in(&f, default_tokens);
    let mut idp = Idp::new();
    idp.discovery.userinfo_endpoint = None;
    let req = jwt_session_request(&jar, "GET", "/page", &[]);
    let (changes, _) = allowed(f.check(&req, &args, &idp.state(), NOW + 10.0, &mut rng()));
    assert!(changes.contains(&HeaderChange::set("authorization", "Bearer opaque-access")));
    // Past its lifetime: a refresh, not a pass.
    let step = f.check(&req, &args, &idp.state(), NOW + 400.0, &mut rng());
    assert!(!matches!(step, OAuth2Step::Allow { .. }));
}

/// `accessTokenValidation: userinfo` against such an IdP can never check a
/// token: no login is started; a 503 page and the log name the setting.
#[test]
fn userinfo_validation_without_a_userinfo_endpoint_is_refused_with_the_setting() {
    let mut f = filter();
    f.validation = TokenValidation::Userinfo;
    let mut idp = Idp::new();
    idp.discovery.userinfo_endpoint = None;
    assert!(f
        .unusable_with(&idp.discovery)
        .is_some_and(|r| r.contains("accessTokenValidation")));
    let r = respond(f.check(
        &request("GET", "/page", &[]),
        &OAuth2Args::default(),
        &idp.state(),
        NOW,
        &mut rng(),
    ));
    assert_eq!(r.status, 503);
    assert!(r.header("location").is_none());
    let page = String::from_utf8_lossy(&r.body);
    assert!(
        page.contains("accessTokenValidation") && page.contains("userinfo_endpoint"),
        "{page}"
    );
    // With the endpoint, nothing to say.
    assert!(f.unusable_with(&discovery()).is_none());
}

/// Two Portcullis filters in one chain (a gateway level and a route level),
/// each with an OAuth2 filter for the origin: a callback whose state cookie,
/// or a logout whose session, belongs to another filter is passed on
/// untouched; one with no filter's cookie is answered here.
#[test]
fn another_filters_callback_or_logout_is_passed_on_untouched() {
    let f = filter();
    let args = OAuth2Args::default();
    let state = "abcdefghijklmnopqrstuvwxyz012345";
    let callback = |cookie: &str| {
        request(
            "GET",
            &format!("{}?code=c&state={state}", super::CALLBACK_PATH),
            &[("cookie", cookie)],
        )
    };
    let foreign = callback("portcullis_state.route.abcdefghijkl=v1.9999999999.x");
    match check(&f, &args, &foreign, NOW) {
        OAuth2Step::Allow {
            request, response, ..
        } => {
            assert!(request.is_empty() && response.is_empty());
        }
        other => panic!("expected the callback passed on, got {other:?}"),
    }
    // No filter's state cookie: this filter answers (the 400 page).
    let r = respond(check(&f, &args, &callback("theme=dark"), NOW));
    assert_eq!(r.status, 400);
    // A logout carrying only another filter's session: passed on.
    let logout = request(
        "POST",
        super::LOGOUT_PATH,
        &[(
            "cookie",
            "portcullis_session.route=x; portcullis_xsrf.route=y",
        )],
    );
    assert!(matches!(
        check(&f, &args, &logout, NOW),
        OAuth2Step::Allow { .. }
    ));
}

// ---------------------------------------------------------------------------
// Form Post Response Mode (`response_mode=form_post`)

fn form_post_filter() -> OAuth2Filter {
    let mut f = filter();
    f.extra_parameters
        .push(("response_mode".to_string(), "form_post".to_string()));
    f.form_post = true;
    f
}

/// The IdP's auto-submitted form: a cross-site POST, so without the
/// browser's `SameSite=Lax` cookies (here: only the state and loop count
/// cookies, which are `SameSite=None`).
fn posted_callback(jar: &HashMap<String, String>, body: Option<&str>) -> Request {
    let sent: HashMap<String, String> = jar
        .iter()
        .filter(|(n, _)| n.starts_with("portcullis_state.") || n.starts_with("portcullis_logins."))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let mut req = request(
        "POST",
        CALLBACK_PATH,
        &[
            ("cookie", &cookie_header(&sent)),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
    );
    req.body = body.map(|b| b.as_bytes().to_vec());
    req
}

#[test]
fn form_post_state_cookie_is_same_site_none_and_secure() {
    let f = form_post_filter();
    let r = respond(check(
        &f,
        &OAuth2Args::default(),
        &request("GET", "/", &[]),
        NOW,
    ));
    assert_eq!(location_params(&r)["response_mode"], "form_post");
    let set = set_cookies(&r.headers);
    let state = set
        .iter()
        .find(|c| c.starts_with("portcullis_state.login."))
        .unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=None", "Max-Age=600"] {
        assert!(state.contains(attr), "{state} lacks {attr}");
    }
}

/// The callback reads code and state from the posted form (after asking the
/// host for the body), exchanges the code and makes the session; the
/// session cookies stay Lax, and every stale form of a session the
/// cross-site POST could not show is cleared.
#[test]
fn form_post_callback_reads_the_posted_form() {
    let f = form_post_filter();
    let args = OAuth2Args::default();
    let mut login = start_login(&f, &args, "/page?x=1");
    // Without the body: read it first, bounded.
    match check(&f, &args, &posted_callback(&login.jar, None), NOW) {
        OAuth2Step::NeedBody { max_bytes } => assert_eq!(max_bytes, MAX_CALLBACK_FORM_BYTES),
        other => panic!("expected NeedBody, got {other:?}"),
    }
    let body = format!(
        "code=the-code&state={}&session_state=abc",
        percent_encode(&login.params["state"])
    );
    let req = posted_callback(&login.jar, Some(&body));
    let (c, pending) = callout(check(&f, &args, &req, NOW));
    assert_eq!(form(&c)["code"], "the-code");
    let r = respond(answer(
        &f,
        &args,
        &req,
        pending,
        http(200, default_tokens(&login)),
        NOW,
    ));
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("location"),
        Some("https://app.example.com/page?x=1")
    );
    let set = set_cookies(&r.headers);
    let session = set
        .iter()
        .find(|c| c.starts_with("portcullis_session.login=") && !c.contains("Max-Age=0"))
        .unwrap();
    assert!(session.contains("SameSite=Lax"), "{session}");
    for i in 0..super::session::MAX_CHUNKS {
        let chunk = format!("portcullis_session.login.{i}=;");
        assert!(
            set.iter()
                .any(|c| c.starts_with(&chunk) && c.contains("Max-Age=0")),
            "chunk {i} not cleared: {set:?}"
        );
    }
    assert!(set
        .iter()
        .any(|c| c.starts_with("portcullis_state.login.") && c.contains("Max-Age=0")));
    apply_cookies(&mut login.jar, &set);
    assert!(login.jar.contains_key("portcullis_session.login"));
}

/// A posted answer just past the bound is refused (413), at it is read; a
/// posted body that is not a form is 415; an IdP's error posted is mapped to
/// fixed text, its description never shown.
#[test]
fn form_post_callback_bounds_and_errors() {
    let f = form_post_filter();
    let args = OAuth2Args::default();
    let login = start_login(&f, &args, "/");
    let state = percent_encode(&login.params["state"]);
    let head = format!("code=the-code&state={state}&pad=");
    let at_bound = format!("{head}{}", "x".repeat(MAX_CALLBACK_FORM_BYTES - head.len()));
    assert_eq!(at_bound.len(), MAX_CALLBACK_FORM_BYTES);
    callout(check(
        &f,
        &args,
        &posted_callback(&login.jar, Some(&at_bound)),
        NOW,
    ));
    let past = format!("{at_bound}x");
    let r = respond(check(
        &f,
        &args,
        &posted_callback(&login.jar, Some(&past)),
        NOW,
    ));
    assert_eq!(r.status, 413);

    let mut json_post = posted_callback(&login.jar, Some("{}"));
    json_post.headers.set("content-type", "application/json");
    assert_eq!(respond(check(&f, &args, &json_post, NOW)).status, 415);

    let body = format!("error=access_denied&error_description=Call%20%2B1-555-0100&state={state}");
    let r = respond(check(
        &f,
        &args,
        &posted_callback(&login.jar, Some(&body)),
        NOW,
    ));
    assert_eq!(r.status, 401);
    let page = String::from_utf8_lossy(&r.body);
    assert!(!page.contains("555"), "{page}");
}

/// Without form_post configured, the state cookie is Lax: an IdP posting the
/// answer anyway meets the stale-link page (and the log says what to set).
#[test]
fn a_posted_answer_without_form_post_configured_finds_no_login() {
    let f = filter();
    let args = OAuth2Args::default();
    let login = start_login(&f, &args, "/");
    let body = format!("code=c&state={}", percent_encode(&login.params["state"]));
    // A cross-site POST carries no Lax cookie.
    let mut req = request(
        "POST",
        CALLBACK_PATH,
        &[("content-type", "application/x-www-form-urlencoded")],
    );
    req.body = Some(body.into_bytes());
    assert_eq!(respond(check(&f, &args, &req, NOW)).status, 400);
}

/// The loop count survives a form_post login (its cookie is SameSite=None,
/// so the cross-site POST carries it): a real loop still ends on the page.
#[test]
fn form_post_logins_that_loop_are_still_counted() {
    let f = form_post_filter();
    let args = OAuth2Args::default();
    let mut jar: HashMap<String, String> = HashMap::new();
    let mut stopped = false;
    for _ in 0..=super::loops::MAX_LOOPS_IN_WINDOW + 1 {
        let req = request("GET", "/", &[("cookie", &cookie_header(&jar))]);
        let r = respond(check(&f, &args, &req, NOW));
        if r.status == 508 {
            stopped = true;
            break;
        }
        assert_eq!(r.status, 303);
        apply_cookies(&mut jar, &set_cookies(&r.headers));
        let params = location_params(&r);
        let body = format!("code=c&state={}", percent_encode(&params["state"]));
        let req = posted_callback(&jar, Some(&body));
        let (_, pending) = callout(check(&f, &args, &req, NOW));
        let login = Login {
            params,
            jar: HashMap::new(),
        };
        let r = respond(answer(
            &f,
            &args,
            &req,
            pending,
            http(200, default_tokens(&login)),
            NOW,
        ));
        assert_eq!(r.status, 303);
        apply_cookies(&mut jar, &set_cookies(&r.headers));
        // The session does not hold (as a browser that refuses it).
        jar.retain(|n, _| !n.starts_with("portcullis_session."));
    }
    assert!(stopped, "a form_post login loop was never stopped");
}
