//! The fault matrix rows the filter-specific suites do not already cover
//! (`docs/reliability.md` lists every row and its test): a JWKS server slower
//! than the fetch timeout (before and after the first load) or slow but within
//! it, an auth service answering bytes that are not HTTP, and the IdP down when
//! an access token needs refreshing.
//!
//! One Envoy for the JWKS and auth-service rows; the OAuth2 row has its own
//! Envoy and a real IdP (oidc-provider), as it stops that IdP.

mod common;
mod oauth2_common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use oauth2_common::{echoed, origin, start_envoy, Setup, USER};
use portcullis_testbed::browserless::Agent;
use portcullis_testbed::client;
use portcullis_testbed::idp::{Idp, IdpClient, IdpOptions};
use portcullis_testbed::servers::{EchoUpstream, Reply, ScriptedServer};
use portcullis_testbed::{Envoy, EnvoyConfig};
use serde_json::{json, Value};

/// core::fetch::FETCH_TIMEOUT is 5 s: this is beyond it.
const BEYOND_FETCH_TIMEOUT: Duration = Duration::from_secs(7);
const UNAVAILABLE: &str = "JWT keys are not available yet: the JWK Set could not be fetched";

struct Fixture {
    envoy: Envoy,
    /// /jwks.json answers after 7 s.
    _slow: ScriptedServer,
    /// /jwks.json answers after 1.5 s.
    _lagging: ScriptedServer,
    /// Good at first; made slower than the fetch timeout by a test.
    degrading: ScriptedServer,
    _echo: EchoUpstream,
}

/// A loopback server that answers every connection with bytes that are not
/// HTTP, then closes it (at most 256 connections).
fn garbage_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for stream in listener.incoming().take(256) {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"\x00\x01\x02 this is not HTTP at all \xff\xfe\r\n\r\n");
        }
    });
    port
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let echo = EchoUpstream::start();
        let keys = jwks();
        let (slow, lagging, degrading) = (
            ScriptedServer::start(),
            ScriptedServer::start(),
            ScriptedServer::start(),
        );
        slow.set(
            "/jwks.json",
            Reply::json(200, &keys).delay(BEYOND_FETCH_TIMEOUT),
        );
        lagging.set(
            "/jwks.json",
            Reply::json(200, &keys).delay(Duration::from_millis(1500)),
        );
        degrading.set("/jwks.json", Reply::json(200, &keys));
        let garbage = garbage_server();
        let jwt = |name: &str, uri: &str, extra: Value| {
            json!({ "name": name, "JWT": portcullis_testbed::tokens::merge(json!({
                "jwksURI": uri, "issuer": ISSUER, "audience": AUDIENCE,
                "injectRequestHeaders": [ { "name": "X-Sub", "value": "{{ .token.Claims.sub }}" } ]
            }), extra) })
        };
        let rule = |prefix: &str, name: &str| {
            json!({ "host": "*", "path": format!("/{prefix}/*"), "filters": [ { "name": name } ] })
        };
        let plugin = json!({
            "clusters": { "slow.test": "slow", "lagging.test": "lagging",
                          "degrading.test": "degrading", "garbage.test": "garbage" },
            "filters": [
                jwt("slow", "http://slow.test/jwks.json", Value::Null),
                jwt("lagging", "http://lagging.test/jwks.json", Value::Null),
                jwt("degrading", "http://degrading.test/jwks.json", json!({ "jwksRefreshInterval": "1s" })),
                { "name": "garbage", "External": { "auth_service": "http://garbage.test", "status_on_error": { "code": 503 } } },
                { "name": "garbage-open", "External": { "auth_service": "http://garbage.test", "failure_mode_allow": true } }
            ],
            "rules": [
                rule("slow", "slow"), rule("lagging", "lagging"), rule("degrading", "degrading"),
                rule("garbage", "garbage"), rule("garbage-open", "garbage-open")
            ]
        });
        let cfg = EnvoyConfig::new(echo.port())
            .plugin(plugin)
            .cluster("slow", slow.port())
            .cluster("lagging", lagging.port())
            .cluster("degrading", degrading.port())
            .cluster("garbage", garbage)
            .build();
        Fixture {
            envoy: Envoy::start(&cfg),
            _slow: slow,
            _lagging: lagging,
            degrading,
            _echo: echo,
        }
    })
}

fn call(path: &str, token: &str) -> client::Response {
    get_with_token(fx().envoy.port("main"), path, token, &[])
}

#[test]
fn jwks_slower_than_the_fetch_timeout_gives_503_and_is_logged() {
    let f = fx();
    let started = Instant::now();
    let r = call("/slow/x", &token("RS256", Value::Null));
    let waited = started.elapsed();
    assert_eq!(r.status, 503, "{}", show(&r));
    assert!(r.header("www-authenticate").is_none(), "{}", show(&r));
    assert_default_body(&r, UNAVAILABLE, 503, "slow JWKS");
    assert!(
        waited < Duration::from_secs(6),
        "the request waits about 3 s, not the whole fetch (waited {waited:?})"
    );
    let line = "JWK Set http://slow.test/jwks.json: fetch failed: HTTP status 504; no keys yet";
    assert!(
        f.envoy.wait_for_log(line, Duration::from_secs(15)),
        "expected {line:?}; log:\n{}",
        f.envoy.log_tail(30)
    );
    // A token that needs no keys to be refused is still refused at once.
    let r = client::get(f.envoy.port("main"), "/slow/x", &[]);
    assert_no_token(&r, "slow", "no token");
}

#[test]
fn jwks_slow_within_the_fetch_timeout_is_waited_for() {
    let f = fx();
    let seen = passed(
        &f.envoy,
        &call("/lagging/x", &token("ES256", json!({ "sub": "lag" }))),
        "JWKS answering in 1.5 s",
    );
    assert_eq!(seen.headers_all("x-sub"), vec!["lag"]);
    assert!(f.envoy.wait_for_log(
        "JWK Set http://lagging.test/jwks.json: loaded",
        Duration::from_secs(10)
    ));
}

#[test]
fn jwks_turning_slow_after_start_keeps_the_last_good_set() {
    let f = fx();
    passed(
        &f.envoy,
        &call("/degrading/x", &token("RS256", Value::Null)),
        "before",
    );
    f.degrading.set(
        "/jwks.json",
        Reply::json(200, &jwks()).delay(BEYOND_FETCH_TIMEOUT),
    );
    let line = "JWK Set http://degrading.test/jwks.json: fetch failed: HTTP status 504; keeping the last good set";
    assert!(
        f.envoy.wait_for_log(line, Duration::from_secs(20)),
        "expected {line:?}; log:\n{}",
        f.envoy.log_tail(30)
    );
    passed(
        &f.envoy,
        &call("/degrading/x", &token("EdDSA", Value::Null)),
        "while the JWKS server is too slow",
    );
    let expired = token("RS256", json!({ "exp": now() - 60 }));
    assert_invalid_token(
        &call("/degrading/x", &expired),
        "degrading",
        "token is expired",
        "still checked",
    );
}

#[test]
fn auth_service_answering_garbage_is_an_error() {
    let f = fx();
    let r = client::get(f.envoy.port("main"), "/garbage/x", &[]);
    assert_eq!(r.status, 503, "{}", show(&r));
    assert_default_body(
        &r,
        "the authorization service could not be reached",
        503,
        "garbage",
    );
    let line = "External auth service garbage.test (cluster garbage): ";
    assert!(
        f.envoy.wait_for_log(line, Duration::from_secs(5)),
        "log:\n{}",
        f.envoy.log_tail(30)
    );
    let log = f.envoy.log();
    let logged = log.lines().find(|l| l.contains(line)).unwrap_or_default();
    assert!(logged.ends_with("; answering 503"), "{logged}");
    let r = client::get(f.envoy.port("main"), "/garbage-open/x", &[]);
    let seen = passed(&f.envoy, &r, "failure_mode_allow");
    assert_eq!(
        seen.headers_all("x-envoy-auth-failure-mode-allowed"),
        vec!["true"]
    );
}

// ---- the IdP down when a refresh is due --------------------------------------

const SECRET: &str = "portcullis-s3cret";

#[test]
fn idp_down_during_refresh_gives_503_and_forwards_nothing() {
    let echo = EchoUpstream::start();
    let (envoy, mut idps, port) = start_envoy(echo.port(), |port| {
        let o = origin(port);
        let idp = Idp::start(IdpOptions {
            clients: vec![IdpClient::web("short", SECRET, std::slice::from_ref(&o))
                .access_ttl(Duration::from_secs(3))],
            ..IdpOptions::default()
        });
        let mut clusters = serde_json::Map::new();
        clusters.insert(idp.authority(), json!("idp"));
        let plugin = json!({
            "clusters": clusters,
            "filters": [ { "name": "short", "OAuth2": {
                "authorizationURL": idp.issuer(), "clientID": "short", "secret": SECRET,
                "protectedOrigins": [ { "origin": o } ],
                "sessionKeys": [ oauth2_common::session_key() ],
                "injectRequestHeaders": [ { "name": "X-User", "value": "{{ .idToken.Claims.sub }}" } ]
            } } ],
            "rules": [ { "host": "*", "path": "/app/*", "filters": [ { "name": "short" } ] } ]
        });
        Setup {
            clusters: vec![("idp".into(), idp.port())],
            idps: vec![idp],
            plugin,
        }
    });
    let mut idp = idps.pop().expect("the IdP");
    let url = |p: &str| format!("{}{p}", origin(port));
    let mut agent = Agent::new();
    let login = idp.login_headless(&mut agent, &url("/app/one"), USER);
    assert_eq!(login.final_url, url("/app/one"));
    assert_eq!(echoed(&login.response).header("x-user"), Some(USER));
    idp.stop();
    thread::sleep(Duration::from_secs(5)); // the access token lives 3 s
    let r = agent.get(&url("/app/two"));
    assert_eq!(r.status, 503, "{:?} {}", r.headers, r.body_str());
    assert!(r.header("location").is_none(), "no redirect loop");
    assert!(
        r.body_str().contains("Sign-in is unavailable"),
        "{}",
        r.body_str()
    );
    let line = "OAuth2 filter short: refresh failed: HTTP 503";
    assert!(
        envoy.wait_for_log(line, Duration::from_secs(5)),
        "log:\n{}",
        envoy.log_tail(30)
    );
    // Nothing was forwarded with the expired token, again on a retry.
    let r = agent.get(&url("/app/three"));
    assert_eq!(r.status, 503, "{}", r.body_str());
}
