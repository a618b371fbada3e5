//! Two Portcullis filters in one Envoy chain, as kgateway and Envoy Gateway
//! users attach auth at the gateway and at the route: each has an OAuth2
//! filter for the same origin, with its own client at one IdP. A callback or
//! logout that belongs to the other filter is passed on untouched, so the
//! browser signs in at both levels, one after the other, and two tabs whose
//! logins are in progress at once both finish (the report: the first filter
//! answered the second's callback and the browser ended on the loop page).

mod oauth2_common;

use std::sync::OnceLock;

use oauth2_common::*;
use portcullis_testbed::browserless::{Agent, Url};
use portcullis_testbed::client;
use portcullis_testbed::quirky_idp::{Profile, QuirkyIdp};
use portcullis_testbed::{EchoUpstream, Envoy, EnvoyConfig};
use serde_json::json;

struct Fixture {
    _envoy: Envoy,
    port: u16,
    idp: QuirkyIdp,
    _echo: EchoUpstream,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(start)
}

fn start() -> Fixture {
    let echo = EchoUpstream::start();
    let idp = QuirkyIdp::start(Profile::Okta, 600);
    let mut last = String::new();
    for _ in 0..3 {
        let port = portcullis_testbed::idp::free_port();
        let o = origin(port);
        let level = |name: &str| {
            json!({
                "clusters": { idp.authority(): "idp" },
                "filters": [ { "name": name, "OAuth2": {
                    "authorizationURL": idp.issuer(),
                    "clientID": format!("client-{name}"),
                    "secret": "s3cret",
                    "protectedOrigins": [ { "origin": o } ],
                    "sessionKeys": [ session_key() ],
                    "injectRequestHeaders": [
                        { "name": format!("X-{name}-User"), "value": "{{ .idToken.Claims.sub }}" }
                    ]
                } } ],
                "rules": [ { "host": "*", "path": "*", "filters": [ { "name": name } ] } ]
            })
        };
        let cfg = EnvoyConfig::new(echo.port())
            .main_port(port)
            .plugin(level("gateway"))
            .plugin_instance("portcullis-route", "portcullis-route", None, level("route"))
            .cluster("idp", idp.port())
            .build();
        match Envoy::try_start(&cfg) {
            Ok(envoy) => {
                return Fixture {
                    _envoy: envoy,
                    port,
                    idp,
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

/// GET `start` and follow redirects (bounded): every response with its URL.
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

fn show(hops: &[(String, client::Response)]) -> Vec<String> {
    hops.iter()
        .map(|(u, r)| format!("{} {u}", r.status))
        .collect()
}

#[test]
fn a_browser_signs_in_at_both_levels_one_after_the_other() {
    let f = fx();
    let mut agent = Agent::new();
    let hops = browse(&mut agent, &url("/app/page"));
    let (last_url, last) = hops.last().expect("a hop");
    assert_eq!(last.status, 200, "{:?}", show(&hops));
    assert_eq!(last_url, &url("/app/page"));
    assert!(hops.iter().all(|(_, r)| r.status != 508 && r.status != 400));
    // Two logins, the gateway's then the route's: both identities upstream.
    assert!(f.idp.count("/authorize") >= 2, "{:?}", show(&hops));
    let e = echoed(last);
    assert_eq!(e.header("x-gateway-user"), Some("alice"));
    assert_eq!(e.header("x-route-user"), Some("alice"));
    assert!(has_session(&agent, "gateway") && has_session(&agent, "route"));
    // And the next request passes both at once.
    let r = agent.get(&url("/app/next"));
    assert_eq!(r.status, 200);
}

/// Two tabs: both gateway logins in progress, finished in the other order;
/// then each route login. Every callback reaches its own filter.
#[test]
fn two_tabs_sign_in_at_both_levels_at_once() {
    let mut agent = Agent::new();
    let to_idp = |agent: &mut Agent, path: &str| {
        let r = agent.get(&url(path));
        assert_eq!(r.status, 303, "{path}");
        r.header("location").expect("to the IdP").to_string()
    };
    let one = to_idp(&mut agent, "/tab/one");
    let two = to_idp(&mut agent, "/tab/two");
    let hops = browse(&mut agent, &two);
    assert_eq!(
        hops.last().map(|h| h.1.status),
        Some(200),
        "{:?}",
        show(&hops)
    );
    assert_eq!(hops.last().map(|h| h.0.clone()), Some(url("/tab/two")));
    let hops = browse(&mut agent, &one);
    assert_eq!(
        hops.last().map(|h| h.1.status),
        Some(200),
        "{:?}",
        show(&hops)
    );
    assert_eq!(hops.last().map(|h| h.0.clone()), Some(url("/tab/one")));
    assert!(has_session(&agent, "gateway") && has_session(&agent, "route"));
}
