//! The OAuth2 filter at the HTTP level, against a real OpenID Provider
//! (oidc-provider, `testbed/idp`) through real Envoy: the authorization request,
//! the callback (forged, foreign and replayed state; replayed code), sessions in
//! sealed cookies (tampered, forged, chunked for large tokens, never forwarded),
//! identity headers, refresh after expiry, unsafe methods passed to the app, logout through the
//! IdP's end_session endpoint, open-redirect attempts, `insteadOfRedirect`,
//! `client_secret_post`, the client-credentials grant, and an IdP that is down.
//!
//! One Envoy and two IdPs for the whole file; each scenario has its own filter and
//! client (its own cookies) and its own cookie jar, so the tests run in parallel.

mod oauth2_common;

use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use oauth2_common::*;
use portcullis_testbed::browserless::{percent_encode, Agent, Url};
use portcullis_testbed::client;
use portcullis_testbed::idp::{AuthMethod, Idp, IdpClient, IdpOptions};
use portcullis_testbed::{EchoUpstream, Envoy};
use serde_json::{json, Value};

const SECRET: &str = "portcullis-s3cret";

struct Fixture {
    envoy: Envoy,
    idp: Idp,
    /// The IdP of filter `fragile`, stopped by `idp_down_during_the_callback`.
    fragile: Mutex<Idp>,
    port: u16,
    _echo: EchoUpstream,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Result<Fixture, String>> = OnceLock::new();
    portcullis_testbed::shared_fixture(&FX, start, "the OAuth2 fixture")
}

fn start() -> Fixture {
    let echo = EchoUpstream::start();
    // Nothing listens here: the IdP of filter `nowhere`.
    let dead = portcullis_testbed::idp::free_port();
    let (envoy, mut idps, port) = start_envoy(echo.port(), |port| {
        let o = origin(port);
        let web = |id: &str| IdpClient::web(id, SECRET, std::slice::from_ref(&o));
        let idp = Idp::start(IdpOptions {
            clients: vec![
                web("portcullis"),
                web("portcullis-post").auth_method(AuthMethod::ClientSecretPost),
                web("portcullis-short").access_ttl(Duration::from_secs(5)),
                // Its own client: counted refreshes are this test's alone.
                web("portcullis-race").access_ttl(Duration::from_secs(5)),
                web("portcullis-big").large_tokens(true),
                IdpClient::service("service", SECRET),
            ],
            ..IdpOptions::default()
        });
        let fragile = Idp::start(IdpOptions {
            clients: vec![web("fragile")],
            ..IdpOptions::default()
        });
        let key = session_key();
        let filter = |name: &str, issuer: &str, client: &str, extra: Value| {
            let mut spec = json!({
                "authorizationURL": issuer,
                "clientID": client,
                "secret": SECRET,
                "protectedOrigins": [ { "origin": o } ],
                "sessionKeys": [ key ],
                "postLogoutRedirectURI": format!("{o}/logged-out"),
                "injectRequestHeaders": [
                    { "name": "X-User", "value": "{{ .idToken.Claims.sub }}" },
                    { "name": "X-Email", "value": "{{ .userinfo.email }}" },
                    { "name": "X-Id-Token-Email", "value": "{{ .idToken.Claims.email }}" }
                ]
            });
            if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
                s.extend(e);
            }
            json!({ "name": name, "OAuth2": spec })
        };
        let rule = |path: &str, name: &str, args: Value| json!({ "host": "*", "path": path, "filters": [ { "name": name, "arguments": args } ] });
        let profile = json!({ "scope": ["profile", "email"] });
        let mut svc = filter(
            "svc",
            idp.issuer(),
            "service",
            json!({ "grantType": "ClientCredentials" }),
        );
        if let Some(spec) = svc["OAuth2"].as_object_mut() {
            spec.remove("injectRequestHeaders");
        }
        let mut clusters = serde_json::Map::new();
        clusters.insert(idp.authority(), json!("idp"));
        clusters.insert(fragile.authority(), json!("fragile"));
        clusters.insert(format!("127.0.0.1:{dead}"), json!("dead"));
        let plugin = json!({
            "clusters": clusters,
            "filters": [
                filter("login", idp.issuer(), "portcullis", Value::Null),
                filter("post", idp.issuer(), "portcullis-post",
                    json!({ "clientAuthentication": { "method": "BodyPassword" } })),
                filter("short", idp.issuer(), "portcullis-short", Value::Null),
                filter("race", idp.issuer(), "portcullis-race", Value::Null),
                filter("big", idp.issuer(), "portcullis-big", Value::Null),
                filter("fragile", fragile.issuer(), "fragile", Value::Null),
                filter("nowhere", &format!("http://127.0.0.1:{dead}"), "nobody", Value::Null),
                svc,
            ],
            "rules": [
                rule("/app/*", "login", profile.clone()),
                rule("/api/*", "login", json!({
                    "scope": ["profile"],
                    "insteadOfRedirect": {
                        "ifRequestHeader": { "name": "Accept", "value": "application/json" },
                        "httpStatusCode": 401
                    }
                })),
                rule("/post/*", "post", profile.clone()),
                rule("/short/*", "short", profile.clone()),
                rule("/race/*", "race", profile.clone()),
                rule("/big/*", "big", profile.clone()),
                rule("/fragile/*", "fragile", profile.clone()),
                rule("/nowhere/*", "nowhere", profile),
                rule("/svc/*", "svc", json!({ "scope": ["api:read"] })),
            ]
        });
        Setup {
            clusters: vec![
                ("idp".into(), idp.port()),
                ("fragile".into(), fragile.port()),
                ("dead".into(), dead),
            ],
            idps: vec![idp, fragile],
            plugin,
        }
    });
    let fragile = idps.pop().expect("fragile IdP");
    let idp = idps.pop().expect("main IdP");
    Fixture {
        envoy,
        idp,
        fragile: Mutex::new(fragile),
        port,
        _echo: echo,
    }
}

fn o() -> String {
    origin(fx().port)
}

fn url(path: &str) -> String {
    format!("{}{path}", o())
}

/// A jar logged in through filter `name`'s IdP at `path`; the final response (the
/// upstream's 200).
fn logged_in(path: &str) -> (Agent, client::Response) {
    let f = fx();
    let mut agent = Agent::new();
    let login = f.idp.login_headless(&mut agent, &url(path), USER);
    assert_eq!(
        login.final_url,
        url(path),
        "the login did not come back to the original URL; hops: {:?}",
        login
            .hops
            .iter()
            .map(|h| format!("{} {} {}", h.method, h.response.status, h.url))
            .collect::<Vec<_>>()
    );
    (agent, login.response)
}

#[test]
fn unauthenticated_request_redirects_to_the_authorization_endpoint() {
    let f = fx();
    let r = client::get(
        f.port,
        "/app/page?x=1",
        &[("Host", &format!("127.0.0.1:{}", f.port))],
    );
    let loc = assert_login_redirect(&r, &f.idp);
    let q = |k: &str| loc.query_param(k);
    assert_eq!(q("response_type").as_deref(), Some("code"));
    assert_eq!(q("client_id").as_deref(), Some("portcullis"));
    assert_eq!(q("redirect_uri"), Some(redirect_uri(&o())));
    let scope = q("scope").expect("scope");
    let scopes: Vec<&str> = scope.split(' ').collect();
    assert!(
        scopes.contains(&"openid") && scopes.contains(&"profile"),
        "scope {scope:?}"
    );
    assert!(q("state").is_some_and(|s| s.len() >= 16), "state");
    assert!(q("nonce").is_some_and(|s| s.len() >= 16), "nonce");
    assert_eq!(q("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(
        q("code_challenge").map(|c| c.len()),
        Some(43),
        "an S256 challenge is 43 base64url characters"
    );
    // The state is bound to this browser by a cookie; the upstream was not reached.
    assert!(
        !r.headers_all("set-cookie").is_empty(),
        "no state cookie: {:?}",
        r.headers
    );
    assert!(cookies_set(&r, "portcullis_session").is_empty());
    // Each redirect carries a fresh state, nonce and verifier.
    let r2 = client::get(
        f.port,
        "/app/page?x=1",
        &[("Host", &format!("127.0.0.1:{}", f.port))],
    );
    let loc2 = assert_login_redirect(&r2, &f.idp);
    assert_ne!(loc2.query_param("state"), q("state"));
    assert_ne!(loc2.query_param("nonce"), q("nonce"));
    assert_ne!(loc2.query_param("code_challenge"), q("code_challenge"));
}

#[test]
fn login_reaches_the_upstream_with_identity_and_sealed_cookies() {
    let f = fx();
    let mut agent = Agent::new();
    let login = f
        .idp
        .login_headless(&mut agent, &url("/app/hello?a=b"), USER);
    assert_eq!(login.final_url, url("/app/hello?a=b"));
    let e = echoed(&login.response);
    assert_eq!(e.path, "/app/hello?a=b");
    assert_eq!(e.header("x-user"), Some(USER));
    // The strict IdP keeps the email claim out of the ID token (OpenID Connect
    // Core 5.4); the UserInfo endpoint has it, and templates see it there.
    assert_eq!(e.header("x-id-token-email"), Some("<no value>"));
    assert_eq!(e.header("x-email"), Some("alice@example.test"));
    let token = bearer(&e);
    assert!(!token.is_empty());
    assert_no_portcullis_cookies_upstream(&e);

    // The callback set the session (HttpOnly, SameSite=Lax, Path=/, not Secure on
    // http) and the XSRF cookie (readable by scripts) and redirected with 303.
    let cb = login
        .hops
        .iter()
        .find(|h| h.url.contains("/.portcullis/oauth2/redirection-endpoint"))
        .expect("the callback was visited");
    assert_eq!(cb.response.status, 303);
    assert_eq!(
        cb.response
            .header("location")
            .map(|l| Url::parse(&Url::parse(&cb.url).unwrap().join(l))
                .unwrap()
                .to_string()),
        Some(url("/app/hello?a=b"))
    );
    let session = session_cookies_in(&login.hops, "login");
    assert!(!session.is_empty(), "no session cookie set");
    for c in &session {
        assert!(c.has("httponly"), "session cookie not HttpOnly: {}", c.raw);
        assert_eq!(c.attr("path"), Some("/"), "{}", c.raw);
        assert!(
            c.attr("samesite")
                .is_some_and(|v| v.eq_ignore_ascii_case("lax")),
            "{}",
            c.raw
        );
        assert!(!c.has("secure"), "Secure on an http origin: {}", c.raw);
        assert!(
            c.raw.len() < 4096,
            "cookie over 4 KiB: {} bytes",
            c.raw.len()
        );
        assert!(
            !c.value.contains(&token),
            "the access token is visible in the session cookie"
        );
    }
    let x = cookies_set(&cb.response, "portcullis_xsrf.login");
    assert_eq!(x.len(), 1, "one XSRF cookie: {:?}", cb.response.headers);
    assert!(
        !x[0].has("httponly"),
        "XSRF cookie must be readable: {}",
        x[0].raw
    );

    // The session alone now passes, and client copies of injected headers and of
    // Authorization are replaced.
    let idp_requests = f.idp.log_count("IDP ");
    let r = agent.send(
        "GET",
        &url("/app/again"),
        &[("X-User", "mallory"), ("Authorization", "Bearer forged")],
        b"",
    );
    let e = echoed(&r);
    assert_eq!(e.headers_all("x-user"), vec![USER]);
    assert_eq!(
        e.headers_all("authorization"),
        vec![format!("Bearer {token}")]
    );
    assert_no_portcullis_cookies_upstream(&e);
    // No login round trip for it (a userinfo check at most).
    assert!(f.idp.log_count("GET /auth") <= idp_requests);
}

#[test]
fn forged_state_creates_no_session() {
    let f = fx();
    let mut agent = Agent::new();
    let a = f
        .idp
        .authorize_headless(&mut agent, &url("/app/forged"), USER);
    let cb = a.callback_url.expect("a callback URL");
    let u = Url::parse(&cb).unwrap();
    let state = u.query_param("state").unwrap();
    let mut forged_state = state.clone().into_bytes();
    let mid = forged_state.len() / 2;
    forged_state[mid] = if forged_state[mid] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let forged = cb.replace(
        &format!("state={}", percent_encode(&state)),
        &format!(
            "state={}",
            percent_encode(&String::from_utf8(forged_state).unwrap())
        ),
    );
    assert_ne!(forged, cb, "state not found in {cb}");
    let r = agent.get(&forged);
    assert!(
        (400..500).contains(&r.status),
        "a forged state gets an error page, got {} {:?}",
        r.status,
        r.headers
    );
    assert!(cookies_set(&r, "portcullis_session").is_empty());
    assert!(!has_session(&agent, "login"));
    // An entirely made-up state and code: the same.
    let r = agent.get(&format!(
        "{}?code=made-up&state=made-up",
        redirect_uri(&o())
    ));
    assert!((400..500).contains(&r.status), "got {}", r.status);
    assert!(cookies_set(&r, "portcullis_session").is_empty());
}

#[test]
fn state_is_bound_to_the_browser_that_started_the_login() {
    let f = fx();
    let mut alice = Agent::new();
    let a = f
        .idp
        .authorize_headless(&mut alice, &url("/app/bound"), USER);
    let cb = a.callback_url.expect("a callback URL");
    // Another browser (no state cookie) presenting alice's callback.
    let mut other = Agent::new();
    let r = other.get(&cb);
    assert!(
        (400..500).contains(&r.status),
        "got {} {:?}",
        r.status,
        r.headers
    );
    assert!(cookies_set(&r, "portcullis_session").is_empty());
}

#[test]
fn replayed_callback_creates_no_second_session() {
    let f = fx();
    let mut agent = Agent::new();
    let a = f
        .idp
        .authorize_headless(&mut agent, &url("/app/replay"), USER);
    let cb = a.callback_url.expect("a callback URL");
    let mut twin = agent.clone(); // the same browser state, before the callback
    let first = agent.get(&cb);
    assert_eq!(first.status, 303, "{:?}", first.headers);
    assert!(!cookies_set(&first, "portcullis_session.login").is_empty());
    // Replaying the same URL (same code, same state cookie) creates nothing.
    let again = twin.get(&cb);
    assert_ne!(again.status, 200);
    assert!(
        cookies_set(&again, "portcullis_session").is_empty(),
        "a replayed code created a session: {:?}",
        again.headers
    );
    assert!(!has_session(&twin, "login"));
}

#[test]
fn tampered_or_forged_session_cookie_means_login_again() {
    let f = fx();
    let (mut agent, _) = logged_in("/app/tamper");
    let name = "portcullis_session.login";
    let original = agent
        .cookie("127.0.0.1", name)
        .unwrap_or_else(|| panic!("no {name}: {:?}", agent.cookies))
        .value
        .clone();
    let mut bytes = original.clone().into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
    agent.set_cookie("127.0.0.1", name, &String::from_utf8(bytes).unwrap());
    let r = agent.get(&url("/app/tamper"));
    assert_login_redirect(&r, &f.idp);

    agent.set_cookie("127.0.0.1", name, "bm90IGEgc2VhbGVkIHNlc3Npb24");
    let r = agent.get(&url("/app/tamper"));
    assert_login_redirect(&r, &f.idp);

    // The untouched cookie still works.
    agent.set_cookie("127.0.0.1", name, &original);
    let r = agent.get(&url("/app/tamper"));
    assert_eq!(echoed(&r).header("x-user"), Some(USER));
}

#[test]
fn unsafe_methods_reach_the_application_with_body_and_xsrf_cookie() {
    // As AES: the application verifies the XSRF token; Portcullis passes the
    // request on unchanged (xsrfProtection defaults to "logout").
    let (mut agent, _) = logged_in("/app/form");
    let token = xsrf(&agent, "login");
    let r = agent.send(
        "POST",
        &url("/app/x"),
        &[("Content-Type", "text/plain")],
        b"data",
    );
    let e = echoed(&r);
    assert_eq!(e.method, "POST");
    assert_eq!(e.body, "data");
    let cookie = e.header("cookie").unwrap_or_default().to_string();
    assert!(
        cookie.contains(&format!("portcullis_xsrf.login={token}")),
        "{cookie}"
    );
    assert_no_portcullis_cookies_upstream(&e);
}

#[test]
fn logout_clears_the_session_and_ends_the_idp_session() {
    let f = fx();
    let (mut agent, _) = logged_in("/app/bye");
    let token = xsrf(&agent, "login");

    // A wrong _xsrf: 403, still logged in.
    let r = agent.post_form(
        &logout_url(&o(), "wrong"),
        &[("_xsrf".into(), "wrong".into())],
        &[],
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        echoed(&agent.get(&url("/app/bye"))).header("x-user"),
        Some(USER)
    );

    let r = agent.post_form(
        &logout_url(&o(), &token),
        &[("_xsrf".into(), token.clone())],
        &[],
    );
    assert_eq!(r.status, 303, "{:?} {}", r.headers, r.body_str());
    let loc = Url::parse(r.header("location").expect("Location")).expect("absolute Location");
    let end = f.idp.discovery()["end_session_endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(format!("{}{}", loc.origin(), loc.path_only()), end);
    assert!(loc
        .query_param("id_token_hint")
        .is_some_and(|t| t.split('.').count() == 3));
    assert_eq!(
        loc.query_param("post_logout_redirect_uri"),
        Some(url("/logged-out"))
    );
    assert!(
        !has_session(&agent, "login"),
        "session cookies not cleared: {:?}",
        agent.cookies
    );

    // Through the IdP's end_session (its page submits itself) back to the app.
    let out = f.idp.login_headless(&mut agent, &loc.to_string(), USER);
    assert!(
        out.final_url.starts_with(&url("/logged-out")),
        "ended at {}",
        out.final_url
    );
    assert_eq!(out.response.status, 200);

    // Logged out at Portcullis and at the IdP: the app asks for a login again, and
    // the IdP shows its login page (not a silent re-login).
    let r = agent.get(&url("/app/bye"));
    let auth = assert_login_redirect(&r, &f.idp);
    let r = agent.get(&auth.to_string());
    assert_eq!(r.status, 303);
    let page = agent.get(
        &Url::parse(&auth.to_string())
            .unwrap()
            .join(r.header("location").unwrap()),
    );
    assert!(
        page.body_str().contains("name=\"login\""),
        "no login form: {}",
        page.body_str()
    );
}

#[test]
fn expired_access_token_is_refreshed() {
    let f = fx();
    let (mut agent, first) = logged_in("/short/one");
    let t1 = bearer(&echoed(&first));
    let refreshes = f.idp.log_count("POST /token -> 200");
    thread::sleep(Duration::from_secs(7)); // the access token lives 5 s
    let r = agent.get(&url("/short/two"));
    let e = echoed(&r);
    let t2 = bearer(&e);
    assert_ne!(t1, t2, "the upstream got the expired access token");
    assert_eq!(e.header("x-user"), Some(USER));
    assert!(
        !cookies_set(&r, "portcullis_session.short").is_empty(),
        "the refreshed session cookie must go out with the response: {:?}",
        r.headers
    );
    // The IdP logs a request after answering it: wait for the line.
    assert!(f
        .idp
        .wait_for_log("POST /token -> 200", refreshes + 1, WAIT));
    // The new cookie serves the next request without another refresh (counted
    // for this test's client only: other tests share the IdP; the racing
    // refresh test uses this client too, so its lines are waited out).
    let mine = "auth=basic client=portcullis-short";
    let n = f.idp.log_count(mine);
    let r = agent.get(&url("/short/three"));
    assert_eq!(bearer(&echoed(&r)), t2);
    assert_eq!(f.idp.log_count(mine), n);
}

#[test]
fn large_tokens_are_split_into_cookie_chunks() {
    let (mut agent, first) = logged_in("/big/start");
    assert_eq!(echoed(&first).header("x-user"), Some(USER));
    let chunks = agent.cookies_with_prefix("127.0.0.1", "portcullis_session.big.");
    let names: Vec<&str> = chunks.iter().map(|c| c.name.as_str()).collect();
    assert!(
        names.contains(&"portcullis_session.big.0") && names.contains(&"portcullis_session.big.1"),
        "chunks: {names:?}"
    );
    for c in &chunks {
        assert!(c.raw.len() < 4096, "{}: {} bytes", c.name, c.raw.len());
        assert!(c.http_only);
    }
    let r = agent.get(&url("/big/again"));
    let e = echoed(&r);
    assert_eq!(e.header("x-user"), Some(USER));
    assert_no_portcullis_cookies_upstream(&e);
    // A missing chunk: no session.
    agent.remove_cookie("127.0.0.1", "portcullis_session.big.1");
    let r = agent.get(&url("/big/again"));
    assert_eq!(r.status, 303);
}

#[test]
fn client_secret_post_authenticates_in_the_body() {
    let f = fx();
    let before = f.idp.log_count("POST /token -> 200 auth=body");
    let (_agent, r) = logged_in("/post/x");
    assert_eq!(echoed(&r).header("x-user"), Some(USER));
    assert!(f
        .idp
        .wait_for_log("POST /token -> 200 auth=body", before + 1, WAIT));
}

#[test]
fn instead_of_redirect_for_api_clients() {
    let f = fx();
    let host = format!("127.0.0.1:{}", f.port);
    let r = client::get(
        f.port,
        "/api/data",
        &[("Host", &host), ("Accept", "application/json")],
    );
    assert_eq!(r.status, 401, "{:?} {}", r.headers, r.body_str());
    assert!(r.header("location").is_none());
    let r = client::get(
        f.port,
        "/api/data",
        &[("Host", &host), ("Accept", "text/html")],
    );
    assert_login_redirect(&r, &f.idp);
}

#[test]
fn never_redirects_off_the_protected_origin() {
    let f = fx();
    let ours = |u: &str| {
        u.starts_with(&format!("{}/", o())) || u.starts_with(&format!("{}/", f.idp.issuer()))
    };
    // Paths that a naive "redirect to the original path" turns into another origin.
    for path in [
        "/app//evil.example/x",
        "/app/..//evil.example",
        "/app/%2F%2Fevil.example",
        "/app/\\\\evil.example",
    ] {
        let mut agent = Agent::new();
        let login = f.idp.login_headless(&mut agent, &url(path), USER);
        for h in &login.hops {
            if let Some(loc) = h.response.header("location") {
                let abs = Url::parse(&h.url).unwrap().join(loc);
                assert!(
                    ours(&abs),
                    "{path}: {} redirected to {loc:?} ({abs})",
                    h.url
                );
                assert!(
                    !loc.starts_with("//") && !loc.starts_with("/\\"),
                    "{path}: Location {loc:?}"
                );
            }
        }
        assert!(
            ours(&login.final_url),
            "{path}: ended at {}",
            login.final_url
        );
    }
    // A request for another Host: the redirect URI stays on the protected origin.
    let r = client::get(f.port, "/app/", &[("Host", "evil.example")]);
    if r.status == 303 {
        let loc = Url::parse(r.header("location").unwrap()).unwrap();
        if let Some(ru) = loc.query_param("redirect_uri") {
            assert!(ru.starts_with(&format!("{}/", o())), "redirect_uri {ru}");
        }
        assert!(ours(&loc.to_string()), "Location {loc}");
    }
}

#[test]
fn idp_unreachable_gives_503_not_a_redirect_loop() {
    let f = fx();
    let host = format!("127.0.0.1:{}", f.port);
    for _ in 0..2 {
        let r = client::get(f.port, "/nowhere/x", &[("Host", &host)]);
        assert_eq!(r.status, 503, "{:?} {}", r.headers, r.body_str());
        assert!(r.header("location").is_none());
        assert!(!r.body.is_empty(), "a clear page");
    }
}

#[test]
fn idp_down_during_the_callback_gives_503_and_no_session() {
    let f = fx();
    let mut fragile = f.fragile.lock().unwrap_or_else(|e| e.into_inner());
    let mut agent = Agent::new();
    let a = fragile.authorize_headless(&mut agent, &url("/fragile/x"), USER);
    let cb = a.callback_url.expect("a callback URL");
    fragile.stop();
    let r = agent.get(&cb);
    assert_eq!(r.status, 503, "{:?} {}", r.headers, r.body_str());
    assert!(r.header("location").is_none(), "no redirect loop");
    assert!(cookies_set(&r, "portcullis_session").is_empty());
    let _ = &f.envoy;
}

#[test]
fn client_credentials_grant_with_aes_headers() {
    let f = fx();
    let host = format!("127.0.0.1:{}", f.port);
    let r = client::get(
        f.port,
        "/svc/data",
        &[
            ("Host", &host),
            ("X-Ambassador-Client-ID", "service"),
            ("X-Ambassador-Client-Secret", SECRET),
        ],
    );
    let e = echoed(&r);
    assert!(!bearer(&e).is_empty());
    assert!(
        e.header("x-ambassador-client-secret").is_none(),
        "the secret reached the upstream"
    );
    let r = client::get(
        f.port,
        "/svc/data",
        &[
            ("Host", &host),
            ("X-Ambassador-Client-ID", "service"),
            ("X-Ambassador-Client-Secret", "wrong"),
        ],
    );
    assert!(matches!(r.status, 401 | 403), "got {}", r.status);
}

#[test]
fn concurrent_requests_of_one_session_refresh_it_once() {
    // oidc-provider rotates refresh tokens and revokes the grant when an old
    // one is used again: two requests racing to refresh would end the session.
    let f = fx();
    let (agent, first) = logged_in("/race/start");
    let t1 = bearer(&echoed(&first));
    let cookie = agent
        .cookie_header(&portcullis_testbed::browserless::Url::parse(&url("/race/")).unwrap())
        .expect("session cookies");
    thread::sleep(Duration::from_secs(7)); // the access token lives 5 s
    let mine = "POST /token -> 200 auth=basic client=portcullis-race";
    let before = f.idp.log_count(mine);
    let port = f.port;
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let cookie = cookie.clone();
            let host = format!("127.0.0.1:{port}");
            thread::spawn(move || {
                client::request(
                    port,
                    "GET",
                    &format!("/race/{i}"),
                    &[("Host", host.as_str()), ("Cookie", cookie.as_str())],
                    b"",
                )
            })
        })
        .collect();
    let answers: Vec<client::Response> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let tokens: Vec<String> = answers.iter().map(|r| bearer(&echoed(r))).collect();
    for t in &tokens {
        assert_ne!(t, &t1, "a refreshed access token reached the upstream");
    }
    assert!(
        tokens.iter().all(|t| t == &tokens[0]),
        "every request got the one refresh's token: {tokens:?}"
    );
    // The IdP logs a request after answering it: wait for the line.
    f.idp.wait_for_log(mine, before + 1, WAIT);
    assert_eq!(
        f.idp.log_count(mine) - before,
        1,
        "one refresh for the session, not one per request"
    );
}

#[test]
fn other_cookies_reach_the_upstream_byte_for_byte_when_the_session_cookies_are_removed() {
    let f = fx();
    let mut agent = Agent::new();
    let login = f.idp.login_headless(&mut agent, &url("/app/obs"), USER);
    echoed(&login.response);
    let ours = agent
        .cookie_header(&Url::parse(&url("/app/obs")).expect("url"))
        .expect("the session cookies");
    // A Latin-1 cookie (obs-text) before and after Portcullis's own.
    let mut cookie = b"theme=\xe9t\xe9; ".to_vec();
    cookie.extend_from_slice(ours.as_bytes());
    cookie.extend_from_slice(b"; lang=fran\xe7ais");
    let mut req = format!(
        "GET /app/obs HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: ",
        f.port
    )
    .into_bytes();
    req.extend_from_slice(&cookie);
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let e = echoed(&client::raw(f.port, &req));
    assert_eq!(e.header("x-user"), Some(USER));
    // The agent also holds the IdP's cookies (same host): those stay too, and
    // so does the XSRF cookie (the application reads it, as in AES).
    let mut want = b"theme=\xe9t\xe9".to_vec();
    for c in ours
        .split("; ")
        .filter(|c| !c.starts_with("portcullis_") || c.starts_with("portcullis_xsrf."))
    {
        want.extend_from_slice(b"; ");
        want.extend_from_slice(c.as_bytes());
    }
    want.extend_from_slice(b"; lang=fran\xe7ais");
    assert!(ours.contains("portcullis_session.login"), "{ours}");
    assert_eq!(
        e.header_bytes("cookie"),
        Some(want.as_slice()),
        "{:?}",
        e.headers
    );
}

#[test]
fn a_login_link_just_past_the_bound_comes_back_to_its_path() {
    // The state cookie keeps at most 2048 bytes of path and query (a longer
    // one took the cookie past the 4096 bytes a browser keeps, and the login
    // was "not started in this browser").
    let f = fx();
    let at_bound = format!("/app/long?q={}", "a".repeat(2048 - "/app/long?q=".len()));
    assert_eq!(at_bound.len(), 2048);
    let past = format!("{at_bound}b");
    for (path, back) in [
        (at_bound.as_str(), at_bound.as_str()),
        (past.as_str(), "/app/long"),
    ] {
        let mut agent = Agent::new();
        let login = f.idp.login_headless(&mut agent, &url(path), USER);
        for h in &login.hops {
            for c in portcullis_testbed::browserless::set_cookies(&h.response) {
                assert!(c.raw.len() < 4096, "a cookie of {} bytes", c.raw.len());
            }
        }
        assert_eq!(login.final_url, url(back), "{} bytes", path.len());
        assert_eq!(echoed(&login.response).header("x-user"), Some(USER));
    }
}

#[test]
fn a_stale_session_cookie_of_the_same_name_sent_first_does_not_hide_the_session() {
    // A browser sends two cookies of one name when they differ in Path or
    // Domain, the longer path first: a stale session cookie left at /app by an
    // older deployment comes before the good one (oauth2-proxy #2606,
    // cognito-at-edge #69: a login loop).
    let f = fx();
    let (agent, _) = logged_in("/app/dup");
    let ours = agent
        .cookie_header(&Url::parse(&url("/app/dup")).expect("url"))
        .expect("the session cookies");
    for stale in [
        "portcullis_session.login=bm90IGEgc2VhbGVkIHNlc3Npb24",
        "portcullis_session.login=",
    ] {
        let cookie = format!("{stale}; {ours}");
        let r = client::get(
            f.port,
            "/app/dup",
            &[
                ("Host", &format!("127.0.0.1:{}", f.port)),
                ("Cookie", &cookie),
            ],
        );
        assert_eq!(echoed(&r).header("x-user"), Some(USER), "{stale}");
    }
}

/// An IdP error answer at the callback, with the genuine state (a link anyone
/// can craft on the site's own domain, RFC 6749 §10.13): the page says what
/// the `error` code means in fixed words, never the `error_description`
/// (which goes to the log only) nor an unknown code, and links back to the
/// site.
#[test]
fn a_crafted_error_description_never_reaches_the_page() {
    let f = fx();
    let description = "Your account is locked, call +1-555-0100";
    for (error, fixed) in [
        ("access_denied", "The sign-in was refused"),
        (
            "call_us_at_555_0100",
            "The identity provider could not sign you in",
        ),
    ] {
        let mut agent = Agent::new();
        let r = agent.get(&url(&format!("/app/idp-error-{error}")));
        let loc = assert_login_redirect(&r, &f.idp);
        let state = loc.query_param("state").expect("state");
        let r = agent.get(&format!(
            "{}?error={error}&error_description={}&state={}",
            redirect_uri(&o()),
            percent_encode(description),
            percent_encode(&state)
        ));
        let body = r.body_str();
        assert_eq!(r.status, 401, "{error}: {:?} {body}", r.headers);
        assert!(body.contains(fixed), "{error}: fixed text: {body}");
        assert!(
            !body.contains("555") && !body.contains("locked"),
            "{error}: the IdP's (or a forger's) words never reach the page: {body}"
        );
        assert!(
            body.contains("href=\"/\""),
            "{error}: a link back to the site: {body}"
        );
        assert!(cookies_set(&r, "portcullis_session").is_empty());
    }
    assert!(
        f.envoy.log().contains(description),
        "the description is logged for the operator"
    );
}

/// The single-page app of the report: its session gone, it polls
/// `GET /app/api/data` with `fetch()` (`Accept: application/json`,
/// `Sec-Fetch-Mode: cors`, `Sec-Fetch-Dest: empty`). Each poll gets a 401
/// naming the login, never a redirect or a state cookie; then the user
/// reloads the page (a navigation) and is sent to sign in, not to the loop
/// page, and signs in.
#[test]
fn a_polling_app_gets_401_and_its_user_signs_in_on_reload() {
    let f = fx();
    let mut agent = Agent::new();
    let poll = [
        ("Accept", "application/json"),
        ("Sec-Fetch-Mode", "cors"),
        ("Sec-Fetch-Dest", "empty"),
    ];
    for i in 0..10 {
        let r = agent.send("GET", &url("/app/api/data"), &poll, b"");
        assert_eq!(r.status, 401, "poll {i}: {:?}", r.headers);
        assert!(r.header("location").is_none(), "poll {i}");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains(&format!("login_uri=\"{}/\"", o())),
            "poll {i}: {challenge}"
        );
        assert!(
            r.headers_all("set-cookie").is_empty(),
            "poll {i}: no state cookie, no count: {:?}",
            r.headers
        );
    }
    // (A WebSocket upgrade gets the same 401 from the filter, core
    // `background_requests_get_401_not_a_login`; this fixture's Envoy has no
    // `upgrade_configs`, so Envoy itself refuses the upgrade before any filter.)
    // The reload: a navigation, sent to the IdP and signed in.
    let login = f
        .idp
        .login_headless(&mut agent, &url("/app/reloaded"), USER);
    assert_eq!(login.final_url, url("/app/reloaded"));
    assert_eq!(login.response.status, 200);
    assert!(login.hops.iter().all(|h| h.response.status != 508));
}

/// Ten tabs opened before any login finishes (a restored session): each is
/// sent to sign in, none gets the loop page; the browser keeps at most
/// `MAX_PENDING_LOGINS` (8) state cookies, the oldest dropped; the last tab
/// signs in.
#[test]
fn ten_tabs_never_get_the_loop_page() {
    let f = fx();
    let mut agent = Agent::new();
    let host = "127.0.0.1";
    for i in 0..10 {
        let r = agent.get(&url(&format!("/app/tab-{i}")));
        assert_eq!(r.status, 303, "tab {i}: {:?} {}", r.headers, r.body_str());
        let states = agent
            .cookies_with_prefix(host, "portcullis_state.login.")
            .len();
        assert!(states <= 8, "tab {i}: {states} state cookies");
    }
    assert_eq!(
        agent
            .cookies_with_prefix(host, "portcullis_state.login.")
            .len(),
        8,
        "the bound, the oldest dropped"
    );
    let login = f
        .idp
        .login_headless(&mut agent, &url("/app/tab-last"), USER);
    assert_eq!(login.final_url, url("/app/tab-last"));
    assert!(login.hops.iter().all(|h| h.response.status != 508));
}
