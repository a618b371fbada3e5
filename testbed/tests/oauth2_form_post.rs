//! OAuth 2.0 Form Post Response Mode (`extraAuthorizationParameters:
//! {response_mode: form_post}`, as Entra ID recommends and Apple requires with
//! name/email scopes), end to end: headless Chromium opens a protected page of
//! `https://localhost:<port>` (Envoy terminates TLS, two workers), signs in at
//! the real IdP (oidc-provider, `http://127.0.0.1:<port>`: another site), whose
//! page posts the answer back cross-site; the callback reads the posted form,
//! and the browser lands on the page with the upstream seeing the identity.
//! The report: every such login ended in 400 "This sign-in link has expired"
//! (the callback read only the query, and the SameSite=Lax state cookie was
//! not sent on the IdP's POST). On an http origin the configuration is refused
//! with the reason.

mod oauth2_common;

use oauth2_common::*;
use portcullis_testbed::browser::Browser;
use portcullis_testbed::idp::{free_port, Idp, IdpClient, IdpOptions};
use portcullis_testbed::tls::{self, Pki};
use portcullis_testbed::{EchoUpstream, Echoed, Envoy, EnvoyConfig};
use serde_json::{json, Value};

const SECRET: &str = "form-post-s3cret";

/// The plugin configuration of the report: an OAuth2 filter asking for
/// `response_mode: form_post`, on `origin`.
fn plugin(idp: &Idp, origin: &str) -> Value {
    json!({
        "clusters": { (idp.authority()): "idp" },
        "filters": [ { "name": "login", "OAuth2": {
            "authorizationURL": idp.issuer(),
            "clientID": "portcullis",
            "secret": SECRET,
            "protectedOrigins": [ { "origin": origin } ],
            "sessionKeys": [ session_key() ],
            "extraAuthorizationParameters": { "response_mode": "form_post" },
            "injectRequestHeaders": [ { "name": "X-User", "value": "{{ .idToken.Claims.sub }}" } ]
        } } ],
        "rules": [ { "host": "*", "path": "/app/*",
                     "filters": [ { "name": "login", "arguments": { "scope": ["profile"] } } ] } ]
    })
}

/// Envoy with TLS on its main listener (two workers), its origin
/// `https://localhost:<port>`, and the IdP with that origin's client.
fn start(echo: &EchoUpstream, pki: &Pki) -> (Envoy, Idp, String, u16) {
    start_with(echo, pki, &["portcullis"], false, |cfg, idp, o| {
        cfg.plugin(plugin(idp, o))
    })
}

/// Envoy with TLS on its main listener (two workers) for
/// `https://localhost:<port>`, the IdP with a client of each id for that
/// origin, the plugins `plugins` adds to the configuration.
fn start_with(
    echo: &EchoUpstream,
    pki: &Pki,
    client_ids: &[&str],
    skip_consent: bool,
    plugins: impl Fn(EnvoyConfig, &Idp, &str) -> EnvoyConfig,
) -> (Envoy, Idp, String, u16) {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let o = format!("https://localhost:{port}");
        let idp = Idp::start(IdpOptions {
            clients: client_ids
                .iter()
                .map(|id| IdpClient::web(id, SECRET, std::slice::from_ref(&o)))
                .collect(),
            skip_consent,
            ..IdpOptions::default()
        });
        let cfg = EnvoyConfig::new(echo.port())
            .main_port(port)
            .cluster("idp", idp.port());
        let yaml = plugins(cfg, &idp, &o).build();
        let yaml = tls::with_downstream_tls(&yaml, "main", pki, false);
        match Envoy::try_start_workers(&yaml, &[], 2) {
            Ok(envoy) => return (envoy, idp, o, port),
            Err(e) if e.contains("ddress already in use") => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("Envoy could not bind a picked port three times: {last}");
}

/// An OAuth2 filter `name` with form_post and its own client
/// (`client-<name>`), injecting `X-<name>-User`.
fn form_post_filter(idp: &Idp, origin: &str, name: &str) -> Value {
    json!({ "name": name, "OAuth2": {
        "authorizationURL": idp.issuer(),
        "clientID": format!("client-{name}"),
        "secret": SECRET,
        "protectedOrigins": [ { "origin": origin } ],
        "sessionKeys": [ session_key() ],
        "extraAuthorizationParameters": { "response_mode": "form_post" },
        "injectRequestHeaders": [
            { "name": format!("X-{name}-User"), "value": "{{ .idToken.Claims.sub }}" }
        ]
    } })
}

#[test]
fn form_post_login_in_chromium() {
    let echo = EchoUpstream::start();
    let pki = Pki::new();
    let (_envoy, idp, o, _) = start(&echo, &pki);
    let b = Browser::start();

    b.goto(&format!("{o}/app/page?x=1"));
    b.wait_url(
        "the IdP's login page",
        |u| u.starts_with(idp.issuer()) && u.contains("/interaction/"),
        WAIT,
    );
    b.login_at_idp(USER, Some("oauth2-form-post"));

    // The IdP's page posts the answer; the callback takes it and goes on.
    b.wait_url("the app", |u| u == format!("{o}/app/page?x=1"), WAIT);
    let text = b.wait_text("\"method\"", WAIT);
    b.screenshot_named("oauth2-form-post-app");
    let e = Echoed::parse(text.trim().as_bytes());
    assert_eq!(e.path, "/app/page?x=1");
    assert_eq!(e.header("x-user"), Some(USER));
    assert_no_portcullis_cookies_upstream(&e);
    // The IdP was asked for form_post, and answered with its form (no
    // redirect carried the code).
    let log = idp.log();
    assert!(
        log.lines()
            .any(|l| l.contains("/auth?") && l.contains("response_mode=form_post")),
        "the authorization request did not ask for form_post:\n{log}"
    );
    let cookies = b.cookies();
    let session: Vec<_> = cookies
        .iter()
        .filter(|c| c.name.starts_with("portcullis_session.login"))
        .collect();
    assert!(!session.is_empty(), "no session cookie: {cookies:?}");
    assert!(
        session
            .iter()
            .all(|c| c.secure && c.http_only && c.same_site.as_deref() == Some("Lax")),
        "{session:?}"
    );
    assert!(
        !cookies
            .iter()
            .any(|c| c.name.starts_with("portcullis_state.")),
        "the state cookie outlived the login: {cookies:?}"
    );
    let logins = cookies
        .iter()
        .find(|c| c.name == "portcullis_logins.login")
        .unwrap_or_else(|| panic!("no loop count cookie: {cookies:?}"));
    assert_eq!(logins.same_site.as_deref(), Some("None"), "{logins:?}");
    assert!(logins.secure, "{logins:?}");

    // The session holds: the next pages need no IdP.
    let auth_requests = idp.log_count("/auth?");
    for i in 0..3 {
        b.goto(&format!("{o}/app/again{i}"));
        let text = b.wait_text("\"method\"", WAIT);
        assert_eq!(
            Echoed::parse(text.trim().as_bytes()).header("x-user"),
            Some(USER)
        );
    }
    assert_eq!(idp.log_count("/auth?"), auth_requests);
}

/// Two OAuth2 filters of one Portcullis on one origin (`/a/*` and `/b/*`,
/// two clients), both with form_post, and a login of each in progress at
/// once: the posted answer carries its state in the body only, so the filter
/// that answers it is known once the body is read; each login lands on its
/// own page.
#[test]
fn two_filters_with_form_post_each_take_their_own_posted_answer() {
    let echo = EchoUpstream::start();
    let pki = Pki::new();
    let (_envoy, idp, o, _) = start_with(
        &echo,
        &pki,
        &["client-a", "client-b"],
        true,
        |cfg, idp, o| {
            cfg.plugin(json!({
                "clusters": { (idp.authority()): "idp" },
                "filters": [ form_post_filter(idp, o, "a"), form_post_filter(idp, o, "b") ],
                "rules": [
                    { "host": "*", "path": "/a/*", "filters": [ { "name": "a" } ] },
                    { "host": "*", "path": "/b/*", "filters": [ { "name": "b" } ] }
                ]
            }))
        },
    );
    let b = Browser::start();
    let at_idp = |u: &str| u.starts_with(idp.issuer()) && u.contains("/interaction/");

    // Both logins started: the browser holds a state cookie of each filter.
    b.goto(&format!("{o}/a/first"));
    b.wait_url("the IdP's login page for a", at_idp, WAIT);
    b.goto(&format!("{o}/b/second"));
    b.wait_url("the IdP's login page for b", at_idp, WAIT);
    // b's login finishes first: its posted answer reaches filter b.
    b.login_at_idp(USER, None);
    b.wait_url("b's page", |u| u == format!("{o}/b/second"), WAIT);
    let e = Echoed::parse(b.wait_text("\"method\"", WAIT).trim().as_bytes());
    assert_eq!(e.header("x-b-user"), Some(USER));
    // a's page: a login again (its first state is still there), answered at
    // once by the IdP's single sign-on, and posted to filter a.
    b.goto(&format!("{o}/a/first"));
    b.wait_url("a's page", |u| u == format!("{o}/a/first"), WAIT);
    let e = Echoed::parse(b.wait_text("\"method\"", WAIT).trim().as_bytes());
    assert_eq!(e.header("x-a-user"), Some(USER));
    let names: Vec<String> = b.cookies().into_iter().map(|c| c.name).collect();
    assert!(
        names.iter().any(|n| n == "portcullis_session.a")
            && names.iter().any(|n| n == "portcullis_session.b"),
        "{names:?}"
    );
}

/// Two Portcullis filters in one Envoy chain (gateway and route level), each
/// with a form_post OAuth2 filter for the origin: the gateway reads the route
/// login's posted answer, finds it is not its own, and passes it on, body
/// and all, to the route's filter. The browser signs in at both levels.
#[test]
fn two_levels_with_form_post_both_sign_in() {
    let echo = EchoUpstream::start();
    let pki = Pki::new();
    let (_envoy, idp, o, _) = start_with(
        &echo,
        &pki,
        &["client-gateway", "client-route"],
        true,
        |cfg, idp, o| {
            let level = |name: &str| {
                json!({
                    "clusters": { (idp.authority()): "idp" },
                    "filters": [ form_post_filter(idp, o, name) ],
                    "rules": [ { "host": "*", "path": "*", "filters": [ { "name": name } ] } ]
                })
            };
            cfg.plugin(level("gateway")).plugin_instance(
                "portcullis-route",
                "portcullis-route",
                None,
                level("route"),
            )
        },
    );
    let b = Browser::start();
    b.goto(&format!("{o}/app/page"));
    b.wait_url(
        "the IdP's login page",
        |u| u.starts_with(idp.issuer()) && u.contains("/interaction/"),
        WAIT,
    );
    b.login_at_idp(USER, None);
    // The gateway's login, then the route's (answered at once: single sign-on).
    b.wait_url("the app", |u| u == format!("{o}/app/page"), WAIT);
    let e = Echoed::parse(b.wait_text("\"method\"", WAIT).trim().as_bytes());
    assert_eq!(e.header("x-gateway-user"), Some(USER));
    assert_eq!(e.header("x-route-user"), Some(USER));
    assert_eq!(idp.log_count("response_mode=form_post"), 2);
}

/// The posted answer as the IdP's page sends it, read by the callback: a
/// state cookie sent with a POST whose form is not this browser's login is
/// the stale-link page; a form past the bound is 413: Portcullis's pages,
/// never the upstream's.
#[test]
fn posted_callbacks_that_are_not_a_login_get_pages() {
    let echo = EchoUpstream::start();
    let pki = Pki::new();
    let (_envoy, _idp, _o, port) = start(&echo, &pki);
    let config = tls::client_config(&pki, None);
    let post = |body: &str| {
        tls::try_request(
            port,
            config.clone(),
            "POST",
            "/.portcullis/oauth2/redirection-endpoint",
            &[
                ("Host", &format!("localhost:{port}")),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Accept", "text/html"),
            ],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("POST callback: {e}"))
    };
    let r = post("code=forged&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(r.status, 400, "{}", r.body_str());
    assert!(r.body_str().contains("expired"), "{}", r.body_str());
    let r = post(&format!("code=c&state=s&pad={}", "x".repeat(16384)));
    assert_eq!(r.status, 413, "{}", r.body_str());
    assert!(r.body_str().contains("16384 bytes"), "{}", r.body_str());
}

#[test]
fn form_post_on_an_http_origin_is_refused_with_the_reason() {
    let echo = EchoUpstream::start();
    let idp = Idp::start(IdpOptions::default());
    let o = "http://127.0.0.1:8080";
    let yaml = EnvoyConfig::new(echo.port())
        .plugin(plugin(&idp, o))
        .cluster("idp", idp.port())
        .build();
    let log = match Envoy::try_start(&yaml) {
        Ok(envoy) => panic!(
            "Envoy started with form_post on an http origin; log:\n{}",
            envoy.log_tail(40)
        ),
        Err(log) => log,
    };
    assert!(
        log.contains(
            "configuration refused: filters[0].OAuth2.extraAuthorizationParameters.response_mode: form_post needs https protected origins, and http://127.0.0.1:8080 is http"
        ),
        "{log}"
    );
    assert!(log.contains("SameSite=None"), "{log}");
}
