//! The OAuth2 filter against the IdP families users have, through real Envoy:
//! each profile runs login → app → refresh → logout at the
//! browser level (a headless agent following redirects, counting them).
//!
//! - strict `oidc-provider` is the suite's main IdP (`oauth2_http.rs`, and in
//!   Chromium `oauth2_browser.rs`);
//! - Azure-like (`quirky_idp`): v1 issuer in the access token, UserInfo refusing
//!   it, single sign-on, a huge ID token with groups (chunked session, logout
//!   without `id_token_hint`);
//! - Okta/Keycloak-like: refresh-token rotation, refresh answers without
//!   `id_token`, `expires_in` as a string;
//! - Google-like: opaque access tokens, no `end_session_endpoint`, a refresh
//!   token only on the first consent.
//!
//! And what must never happen whatever the IdP answers: a redirect loop (an
//! explained page instead), and two OAuth2 filters on one origin getting in each
//! other's way.

mod oauth2_common;

use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use oauth2_common::*;
use portcullis_testbed::browserless::{Agent, Url};
use portcullis_testbed::client;
use portcullis_testbed::idp::jwt_claims;
use portcullis_testbed::quirky_idp::{Profile, QuirkyIdp, AZURE_TENANT, QUIRKY_USER};
use portcullis_testbed::{EchoUpstream, Envoy, EnvoyConfig};
use serde_json::{json, Value};

/// Access tokens live this long (s): a refresh is due after [`PAST_EXPIRY`].
const EXPIRES_IN: u64 = 5;
const PAST_EXPIRY: Duration = Duration::from_secs(EXPIRES_IN + 1);

struct Fixture {
    _envoy: Envoy,
    port: u16,
    azure: QuirkyIdp,
    okta: QuirkyIdp,
    google: QuirkyIdp,
    /// A Google-like IdP whose access tokens expire at once.
    instant: QuirkyIdp,
    /// Opaque access tokens and no UserInfo endpoint (Azure AD B2C).
    b2c: QuirkyIdp,
    _echo: EchoUpstream,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(start)
}

fn start() -> Fixture {
    let echo = EchoUpstream::start();
    let azure = QuirkyIdp::start(Profile::Azure, EXPIRES_IN);
    let okta = QuirkyIdp::start(Profile::Okta, EXPIRES_IN);
    let google = QuirkyIdp::start(Profile::Google, EXPIRES_IN);
    let instant = QuirkyIdp::start(Profile::Google, 0);
    let b2c = QuirkyIdp::start(Profile::Google, 600).without_userinfo();
    let key = session_key();
    let mut last = String::new();
    for _ in 0..3 {
        let port = portcullis_testbed::idp::free_port();
        let o = origin(port);
        let filter = |name: &str, idp: &QuirkyIdp, extra: Value| {
            let mut spec = json!({
                "authorizationURL": idp.issuer(),
                "clientID": format!("client-{name}"),
                "secret": "s3cret",
                "protectedOrigins": [ { "origin": o } ],
                "sessionKeys": [ key ],
                "postLogoutRedirectURI": format!("{o}/logged-out"),
                "injectRequestHeaders": [
                    { "name": "X-User", "value": "{{ .idToken.Claims.sub }}" },
                    { "name": "X-Email", "value": "{{ .userinfo.email }}" }
                ]
            });
            if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
                s.extend(e);
            }
            json!({ "name": name, "OAuth2": spec })
        };
        let rule = |path: &str, name: &str| json!({ "host": "*", "path": path, "filters": [ { "name": name, "arguments": { "scope": ["profile", "email"] } } ] });
        let plugin = json!({
            "clusters": {
                azure.authority(): "azure", okta.authority(): "okta",
                google.authority(): "google", instant.authority(): "instant",
                b2c.authority(): "b2c",
            },
            "filters": [
                filter("azure", &azure, Value::Null),
                filter("azure-jwt", &azure, json!({ "accessTokenValidation": "jwt" })),
                filter("azure-userinfo", &azure, json!({ "accessTokenValidation": "userinfo" })),
                filter("okta", &okta, Value::Null),
                filter("google", &google, Value::Null),
                filter("instant", &instant, Value::Null),
                filter("b2c", &b2c, json!({ "injectRequestHeaders": [
                    { "name": "X-User", "value": "{{ .idToken.Claims.sub }}" } ] })),
                filter("b2c-userinfo", &b2c, json!({ "accessTokenValidation": "userinfo" })),
            ],
            "rules": [
                rule("/azure/*", "azure"),
                rule("/azure-jwt/*", "azure-jwt"),
                rule("/azure-userinfo/*", "azure-userinfo"),
                rule("/okta/*", "okta"),
                rule("/google/*", "google"),
                rule("/instant/*", "instant"),
                rule("/b2c/*", "b2c"),
                rule("/b2c-userinfo/*", "b2c-userinfo"),
            ]
        });
        let cfg = EnvoyConfig::new(echo.port())
            .main_port(port)
            .plugin(plugin)
            .cluster("azure", azure.port())
            .cluster("okta", okta.port())
            .cluster("google", google.port())
            .cluster("instant", instant.port())
            .cluster("b2c", b2c.port())
            .build();
        match Envoy::try_start(&cfg) {
            Ok(envoy) => {
                return Fixture {
                    _envoy: envoy,
                    port,
                    azure,
                    okta,
                    google,
                    instant,
                    b2c,
                    _echo: echo,
                }
            }
            Err(e) if e.contains("ddress already in use") => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("Envoy could not bind a picked port three times: {last}");
}

fn url(path: &str) -> String {
    format!("{}{path}", origin(fx().port))
}

/// GET `start` and follow redirects (at most 30 hops, more than a browser
/// takes): every response, in order, with its URL.
fn browse(agent: &mut Agent, start: &str) -> Vec<(String, client::Response)> {
    let mut hops = Vec::new();
    let mut next = start.to_string();
    for _ in 0..30 {
        let r = agent.get(&next);
        let location = matches!(r.status, 301 | 302 | 303 | 307 | 308)
            .then(|| r.header("location").map(str::to_string))
            .flatten();
        hops.push((next.clone(), r));
        match location {
            Some(loc) => next = Url::parse(&next).expect("hop URL").join(&loc),
            None => return hops,
        }
    }
    panic!(
        "a redirect loop: {:?}",
        hops.iter()
            .map(|(u, r)| format!("{} {u}", r.status))
            .collect::<Vec<_>>()
    );
}

/// Logs in at `path` and returns what the upstream saw, with the hop count.
fn login(agent: &mut Agent, path: &str) -> (portcullis_testbed::Echoed, usize) {
    let hops = browse(agent, &url(path));
    let (last_url, last) = hops.last().expect("a hop");
    assert_eq!(
        last_url,
        &url(path),
        "the login came back to the URL it began at"
    );
    (echoed(last), hops.len())
}

fn logout(agent: &mut Agent, name: &str) -> client::Response {
    let token = xsrf(agent, name);
    let r = agent.post_form(
        &logout_url(&origin(fx().port), &token),
        &[("_xsrf".into(), token.clone())],
        &[],
    );
    assert_eq!(r.status, 303, "{}", r.body_str());
    assert!(!has_session(agent, name), "session cookies cleared");
    r
}

/// login → app → refresh (twice: a rotated refresh token is used the second
/// time) → the tokens the upstream saw.
fn login_app_refresh(name: &str, idp: &QuirkyIdp) -> (Agent, Vec<String>, Vec<String>) {
    let mut agent = Agent::new();
    let (e, hops) = login(&mut agent, &format!("/{name}/start"));
    assert!(hops <= 5, "{hops} hops for a single sign-on login");
    assert_eq!(e.header("x-user"), Some(QUIRKY_USER));
    let mut tokens = vec![bearer(&e)];
    let mut emails = vec![e.header("x-email").unwrap_or_default().to_string()];
    // The app, with the session alone.
    let r = agent.get(&url(&format!("/{name}/app")));
    let e = echoed(&r);
    assert_eq!(e.header("x-user"), Some(QUIRKY_USER));
    assert_eq!(bearer(&e), tokens[0]);
    for round in 0..2 {
        let before = idp.count("/token");
        thread::sleep(PAST_EXPIRY);
        let r = agent.get(&url(&format!("/{name}/after-refresh-{round}")));
        let e = echoed(&r);
        assert_eq!(e.header("x-user"), Some(QUIRKY_USER), "the ID token kept");
        let t = bearer(&e);
        assert!(
            !tokens.contains(&t),
            "round {round}: a refreshed access token"
        );
        assert!(
            idp.count("/token") > before,
            "round {round}: a refresh call"
        );
        tokens.push(t);
        emails.push(e.header("x-email").unwrap_or_default().to_string());
    }
    (agent, tokens, emails)
}

#[test]
fn azure_like_v1_tokens_userinfo_refused_huge_id_token() {
    let f = fx();
    let (mut agent, tokens, emails) = login_app_refresh("azure", &f.azure);
    // The access token is for another API with the v1 issuer: not a forgery.
    let claims = jwt_claims(&tokens[0]);
    assert_eq!(
        claims["iss"],
        format!("https://sts.windows.net/{AZURE_TENANT}/")
    );
    // UserInfo refuses it: no claims, and no UserInfo call per request.
    assert!(emails.iter().all(|e| e == "<no value>"), "{emails:?}");
    let userinfo_calls = f.azure.count("/userinfo");
    echoed(&agent.get(&url("/azure/app")));
    assert_eq!(f.azure.count("/userinfo"), userinfo_calls);
    // The huge ID token: a chunked session, every cookie under 4 KiB.
    let chunks = agent.cookies_with_prefix("127.0.0.1", "portcullis_session.azure.");
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|c| c.raw.len() < 4096));
    // Logout: the hint would make the URL too long; client_id and logout_hint.
    let r = logout(&mut agent, "azure");
    let loc = Url::parse(r.header("location").expect("Location")).expect("a URL");
    assert_eq!(loc.origin(), f.azure.issuer());
    assert_eq!(loc.path_only(), "/logout");
    assert!(
        loc.to_string().len() <= 4096,
        "{} bytes",
        loc.to_string().len()
    );
    assert!(loc.query_param("id_token_hint").is_none());
    assert_eq!(
        loc.query_param("client_id").as_deref(),
        Some("client-azure")
    );
    assert!(loc.query_param("logout_hint").is_some());
    assert_eq!(
        loc.query_param("post_logout_redirect_uri"),
        Some(url("/logged-out"))
    );
}

#[test]
fn azure_like_under_jwt_works_and_under_userinfo_explains_itself() {
    let f = fx();
    let mut agent = Agent::new();
    let (e, _) = login(&mut agent, "/azure-jwt/x");
    assert_eq!(e.header("x-user"), Some(QUIRKY_USER));
    let iss = jwt_claims(&bearer(&e))["iss"].clone();
    assert_eq!(iss, format!("https://sts.windows.net/{AZURE_TENANT}/"));
    assert_ne!(
        iss,
        json!(f.azure.issuer()),
        "another issuer than discovery's"
    );
    // `userinfo` validation can never pass a token UserInfo refuses: the
    // callback says so, once, instead of a loop.
    let mut agent = Agent::new();
    let hops = browse(&mut agent, &url("/azure-userinfo/x"));
    let (_, last) = hops.last().expect("a hop");
    assert_eq!(last.status, 401, "{}", last.body_str());
    assert!(hops.len() <= 4, "{} hops", hops.len());
    let page = last.body_str();
    assert!(page.contains("UserInfo endpoint refused"), "{page}");
    assert!(page.contains("accessTokenValidation"), "{page}");
    assert!(!has_session(&agent, "azure-userinfo"));
}

#[test]
fn okta_like_rotation_no_id_token_on_refresh_string_expires_in() {
    let f = fx();
    let (mut agent, _tokens, emails) = login_app_refresh("okta", &f.okta);
    // UserInfo claims at login and after each refresh.
    assert!(
        emails.iter().all(|e| e == "alice@example.test"),
        "{emails:?}"
    );
    let r = logout(&mut agent, "okta");
    let loc = Url::parse(r.header("location").expect("Location")).expect("a URL");
    assert_eq!(loc.path_only(), "/logout");
    let hint = loc.query_param("id_token_hint").expect("id_token_hint");
    assert_eq!(jwt_claims(&hint)["sub"], QUIRKY_USER);
}

#[test]
fn google_like_no_end_session_refresh_token_on_first_consent_only() {
    let f = fx();
    let (mut agent, tokens, emails) = login_app_refresh("google", &f.google);
    assert!(
        tokens.iter().all(|t| t.starts_with("ya29.")),
        "opaque tokens"
    );
    assert!(
        emails.iter().all(|e| e == "alice@example.test"),
        "{emails:?}"
    );
    // No end_session_endpoint: logout goes to postLogoutRedirectURI.
    let r = logout(&mut agent, "google");
    assert_eq!(r.header("location"), Some(url("/logged-out").as_str()));
    // A second consent brings no refresh token: past expiry, a new (silent)
    // login, which lands back on the page.
    let mut again = Agent::new();
    let (e, _) = login(&mut again, "/google/second");
    let first = bearer(&e);
    thread::sleep(PAST_EXPIRY);
    let (e, hops) = login(&mut again, "/google/second");
    assert!(hops >= 3, "a login round trip");
    assert_ne!(bearer(&e), first);
}

#[test]
fn an_idp_whose_sessions_never_hold_gets_the_loop_page() {
    // Access tokens that expire at once and (a second consent) no refresh
    // token: each login ends in a session that is already over.
    let f = fx();
    let mut burn = Agent::new();
    let _ = browse(&mut burn, &url("/instant/first-consent"));
    let mut agent = Agent::new();
    let hops = browse(&mut agent, &url("/instant/app"));
    let (_, last) = hops.last().expect("a hop");
    assert_eq!(last.status, 508, "{}", last.body_str());
    assert!(
        hops.len() < 20,
        "the page comes before a browser gives up: {} hops",
        hops.len()
    );
    assert!(last.header("location").is_none());
    assert!(last.body_str().contains("Secure"));
    let logins = f.instant.count("/authorize");
    assert!((4..=6).contains(&logins), "{logins} logins");
}

#[test]
fn two_oauth2_filters_on_one_origin_side_by_side() {
    let f = fx();
    let mut agent = Agent::new();
    // Two logins in progress at once, finished in the other order: each
    // callback reaches the filter that started it.
    let stop_at_idp = |agent: &mut Agent, path: &str| {
        let r = agent.get(&url(path));
        assert_eq!(r.status, 303);
        r.header("location").expect("to the IdP").to_string()
    };
    let to_okta = stop_at_idp(&mut agent, "/okta/one");
    let to_azure = stop_at_idp(&mut agent, "/azure/two");
    let hops = browse(&mut agent, &to_azure);
    assert_eq!(hops.last().map(|h| h.0.clone()), Some(url("/azure/two")));
    let hops = browse(&mut agent, &to_okta);
    assert_eq!(hops.last().map(|h| h.0.clone()), Some(url("/okta/one")));
    // Both sessions live side by side, each with its own IdP's token.
    let okta = bearer(&echoed(&agent.get(&url("/okta/x"))));
    let azure = bearer(&echoed(&agent.get(&url("/azure/x"))));
    assert_eq!(jwt_claims(&okta)["iss"], f.okta.issuer());
    assert_eq!(
        jwt_claims(&azure)["iss"],
        format!("https://sts.windows.net/{AZURE_TENANT}/")
    );
    assert!(has_session(&agent, "okta") && has_session(&agent, "azure"));
}

/// An IdP without a UserInfo endpoint and with opaque access tokens (Azure
/// AD B2C): under the default `auto` the login holds and requests pass on the
/// token's lifetime (the report: 503 on every request after the login).
#[test]
fn an_idp_without_userinfo_works_under_auto() {
    let f = fx();
    let mut agent = Agent::new();
    let hops = browse(&mut agent, &url("/b2c/app"));
    let (_, last) = hops.last().expect("a hop");
    assert_eq!(last.status, 200, "{}", last.body_str());
    let e = echoed(last);
    assert!(bearer(&e).starts_with("ya29."), "the opaque token upstream");
    assert_eq!(e.header("x-user"), Some(QUIRKY_USER));
    // A later request passes without another login or a UserInfo call.
    let r = agent.get(&url("/b2c/again"));
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(f.b2c.count("/userinfo"), 0);
}

/// `accessTokenValidation: userinfo` against that IdP: refused when the
/// discovery document arrives (the log names the setting), and a request gets
/// a 503 page that names it, not a login.
#[test]
fn userinfo_validation_against_an_idp_without_userinfo_is_refused_with_the_setting() {
    let f = fx();
    let host = format!("127.0.0.1:{}", f.port);
    let r = client::get(f.port, "/b2c-userinfo/app", &[("Host", &host)]);
    assert_eq!(r.status, 503, "{}", r.body_str());
    assert!(r.header("location").is_none());
    let body = r.body_str();
    assert!(
        body.contains("accessTokenValidation") && body.contains("userinfo_endpoint"),
        "{body}"
    );
    assert!(f
        ._envoy
        .log()
        .contains("(accessTokenValidation: userinfo), and the identity provider's discovery document names none"));
}
