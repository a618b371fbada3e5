//! The OAuth2 filter in a real browser: headless Chromium (WebDriver) opens a
//! protected page behind real Envoy, lands on the real IdP's login page
//! (oidc-provider), signs in, consents, and is back on the app with the upstream
//! seeing the identity; the session cookie is HttpOnly (invisible to
//! `document.cookie`) while the XSRF cookie is readable; logout is AES's POST form
//! to `/.ambassador/oauth2/logout` carrying `_xsrf` in its body, through the IdP's
//! end_session endpoint, after which the app asks
//! for a login again. Screenshots for humans: `target/portcullis-screenshots/`.

mod oauth2_common;

use oauth2_common::*;
use portcullis_testbed::browser::Browser;
use portcullis_testbed::browserless::Url;
use portcullis_testbed::idp::{Idp, IdpClient, IdpOptions};
use portcullis_testbed::{EchoUpstream, Echoed};
use serde_json::json;

const SECRET: &str = "browser-s3cret";

#[test]
fn browser_login_app_and_logout() {
    let echo = EchoUpstream::start();
    let (_envoy, idps, port) = start_envoy(echo.port(), |port| {
        let o = origin(port);
        let idp = Idp::start(IdpOptions {
            clients: vec![IdpClient::web(
                "portcullis",
                SECRET,
                std::slice::from_ref(&o),
            )],
            ..IdpOptions::default()
        });
        // The configuration of the issue, plus where to land after logout.
        let plugin = json!({
            "clusters": { (idp.authority()): "idp" },
            "filters": [ { "name": "login", "OAuth2": {
                "authorizationURL": idp.issuer(),
                "clientID": "portcullis",
                "secret": SECRET,
                "protectedOrigins": [ { "origin": o } ],
                "sessionKeys": [ session_key() ],
                "postLogoutRedirectURI": format!("{o}/logged-out"),
                "injectRequestHeaders": [ { "name": "X-User", "value": "{{ .idToken.Claims.sub }}" } ]
            } } ],
            "rules": [ { "host": "*", "path": "/app/*",
                         "filters": [ { "name": "login", "arguments": { "scope": ["profile"] } } ] } ]
        });
        Setup {
            clusters: vec![("idp".into(), idp.port())],
            idps: vec![idp],
            plugin,
        }
    });
    let idp = &idps[0];
    let o = origin(port);
    let b = Browser::start();

    // /app/ → the IdP's login page.
    b.goto(&format!("{o}/app/"));
    b.wait_url(
        "the IdP's login page",
        |u| u.starts_with(idp.issuer()) && u.contains("/interaction/"),
        WAIT,
    );
    b.login_at_idp(USER, Some("oauth2-browser"));

    // Back on the app, as the upstream sees it.
    b.wait_url("the app", |u| u == format!("{o}/app/"), WAIT);
    let text = b.wait_text("\"method\"", WAIT);
    b.screenshot_named("oauth2-browser-app");
    let e = Echoed::parse(text.trim().as_bytes());
    assert_eq!(e.path, "/app/");
    assert_eq!(e.header("x-user"), Some(USER));
    assert!(e
        .header("authorization")
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 10));
    assert_no_portcullis_cookies_upstream(&e);

    // Cookies: the session is HttpOnly and hidden from scripts; the XSRF one is not.
    let cookies = b.cookies();
    let session: Vec<_> = cookies
        .iter()
        .filter(|c| c.name.starts_with("portcullis_session.login"))
        .collect();
    assert!(!session.is_empty(), "no session cookie: {cookies:?}");
    assert!(session.iter().all(|c| c.http_only && c.path == "/"));
    let xsrf = cookies
        .iter()
        .find(|c| c.name == "portcullis_xsrf.login")
        .unwrap_or_else(|| panic!("no XSRF cookie: {cookies:?}"));
    assert!(!xsrf.http_only);
    let doc = b.document_cookie();
    assert!(
        !doc.contains("portcullis_session"),
        "document.cookie: {doc}"
    );
    assert!(
        doc.contains(&format!("portcullis_xsrf.login={}", xsrf.value)),
        "document.cookie: {doc}"
    );

    // A reload stays logged in without visiting the IdP.
    b.goto(&format!("{o}/app/again"));
    let text = b.wait_text("\"method\"", WAIT);
    assert_eq!(
        Echoed::parse(text.trim().as_bytes()).header("x-user"),
        Some(USER)
    );

    // Logout as AES documents it: a POST form to /.ambassador/oauth2/logout
    // with `realm` and `_xsrf` in its body only.
    b.post_form(
        &format!("{o}/.ambassador/oauth2/logout"),
        &[("realm", "login"), ("_xsrf", xsrf.value.as_str())],
    );
    b.wait_url(
        "the post-logout page",
        |u| u.starts_with(&format!("{o}/logged-out")),
        WAIT,
    );
    b.screenshot_named("oauth2-browser-logged-out");
    assert!(
        idp.log_count("/session/end") >= 1,
        "the IdP's end_session was not visited"
    );
    assert!(
        b.cookies()
            .iter()
            .all(|c| !c.name.starts_with("portcullis_session")),
        "session cookies left after logout"
    );

    // The app asks for a login again, at the IdP's login page.
    b.goto(&format!("{o}/app/"));
    let at = b.wait_url(
        "the IdP's login page again",
        |u| u.starts_with(idp.issuer()) && u.contains("/interaction/"),
        WAIT,
    );
    b.wait_for("input[name=login]", WAIT);
    assert!(Url::parse(&at).is_some());
}
