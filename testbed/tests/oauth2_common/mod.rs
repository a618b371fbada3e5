//! Shared by the OAuth2 end-to-end tests (`oauth2_http.rs`, `oauth2_browser.rs`):
//! starting real IdPs and one Envoy whose listener port is known before its plugin
//! configuration is written (the origin goes into `protectedOrigins` and into the
//! redirect URIs registered at the IdP), and the assertions on cookies.
#![allow(dead_code)]

use std::time::Duration;

use portcullis_testbed::browserless::{set_cookies, Agent, SetCookie, Url};
use portcullis_testbed::client::Response;
use portcullis_testbed::idp::{free_port, Idp, LOGOUT_ENDPOINT, REDIRECTION_ENDPOINT};
use portcullis_testbed::{Echoed, Envoy, EnvoyConfig};
use serde_json::Value;

#[allow(unused_imports)]
pub use portcullis_testbed::idp::session_key;

pub const USER: &str = "alice";

/// What the test's setup returns for a chosen Envoy port: the IdPs it started, the
/// plugin configuration, and the extra Envoy clusters `(name, port)`.
pub struct Setup {
    pub idps: Vec<Idp>,
    pub plugin: Value,
    pub clusters: Vec<(String, u16)>,
}

/// Starts Envoy on a port picked beforehand; `setup(port)` starts the IdPs
/// registered for `http://127.0.0.1:<port>` and returns the plugin configuration.
/// Retried (with everything restarted) when the port was taken meanwhile.
pub fn start_envoy(upstream_port: u16, setup: impl Fn(u16) -> Setup) -> (Envoy, Vec<Idp>, u16) {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let s = setup(port);
        let mut cfg = EnvoyConfig::new(upstream_port)
            .main_port(port)
            .plugin(s.plugin.clone());
        for (name, p) in &s.clusters {
            cfg = cfg.cluster(name, *p);
        }
        match Envoy::try_start(&cfg.build()) {
            Ok(envoy) => return (envoy, s.idps, port),
            Err(e) if e.contains("ddress already in use") => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("Envoy could not bind a picked port three times: {last}");
}

pub fn origin(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The `Set-Cookie`s of a response whose name starts with `prefix` and that set a
/// value (not deletions).
pub fn cookies_set(r: &Response, prefix: &str) -> Vec<SetCookie> {
    set_cookies(r)
        .into_iter()
        .filter(|c| c.name.starts_with(prefix) && !c.value.is_empty() && !c.deletes())
        .collect()
}

/// Every `Set-Cookie` across the hops of a flow that set a session cookie of
/// filter `name` (`portcullis_session.<name>` or a chunk of it).
pub fn session_cookies_in(
    hops: &[portcullis_testbed::browserless::Hop],
    name: &str,
) -> Vec<SetCookie> {
    let prefix = format!("portcullis_session.{name}");
    hops.iter()
        .flat_map(|h| cookies_set(&h.response, &prefix))
        .collect()
}

/// True when the jar holds a session (whole or chunked) for filter `name`.
pub fn has_session(agent: &Agent, name: &str) -> bool {
    !agent
        .cookies_with_prefix("127.0.0.1", &format!("portcullis_session.{name}"))
        .is_empty()
}

/// The XSRF cookie value for filter `name`.
pub fn xsrf(agent: &Agent, name: &str) -> String {
    agent
        .cookie("127.0.0.1", &format!("portcullis_xsrf.{name}"))
        .unwrap_or_else(|| panic!("no portcullis_xsrf.{name} cookie in {:?}", agent.cookies))
        .value
        .clone()
}

/// The echo of a 200 from the upstream (panics with the response otherwise).
pub fn echoed(r: &Response) -> Echoed {
    assert_eq!(
        r.status,
        200,
        "expected the upstream's 200: {}",
        r.body_str()
    );
    Echoed::parse(&r.body)
}

/// Asserts a 303 to the IdP's authorization endpoint; the parsed Location.
pub fn assert_login_redirect(r: &Response, idp: &Idp) -> Url {
    assert_eq!(
        r.status,
        303,
        "expected a 303 to the IdP; got {} {:?} {}",
        r.status,
        r.headers,
        r.body_str()
    );
    let loc = r.header("location").expect("Location");
    let u =
        Url::parse(loc).unwrap_or_else(|| panic!("Location {loc:?} is not an absolute http URL"));
    let auth = idp.discovery()["authorization_endpoint"]
        .as_str()
        .expect("authorization_endpoint")
        .to_string();
    assert!(
        loc.starts_with(&format!("{auth}?")),
        "Location {loc} is not the authorization endpoint {auth}"
    );
    u
}

/// The callback URL for an origin.
pub fn redirect_uri(origin: &str) -> String {
    format!("{origin}{REDIRECTION_ENDPOINT}")
}

pub fn logout_url(origin: &str, xsrf: &str) -> String {
    format!(
        "{origin}{LOGOUT_ENDPOINT}?_xsrf={}",
        portcullis_testbed::browserless::percent_encode(xsrf)
    )
}

/// The bearer token the upstream saw.
pub fn bearer(e: &Echoed) -> String {
    e.header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_else(|| panic!("no Bearer at the upstream: {:?}", e.headers))
        .to_string()
}

/// No Portcullis session (whole or chunk) or state cookie reaches the
/// upstream. The XSRF cookie does: the application puts its value in its forms
/// and checks what comes back (AES).
pub fn assert_no_portcullis_cookies_upstream(e: &Echoed) {
    for c in e.headers_all("cookie") {
        for part in c.split(';').map(str::trim) {
            assert!(
                !part.starts_with("portcullis_") || part.starts_with("portcullis_xsrf."),
                "a Portcullis session or state cookie reached the upstream: {c}"
            );
        }
    }
}

pub const WAIT: Duration = Duration::from_secs(20);
