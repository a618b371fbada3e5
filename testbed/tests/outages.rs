//! Outages that fail fast (docs/reliability.md): with the JWK Set server or the
//! IdP down and its fetch already failed, a request is answered `503` at once,
//! not parked until the 3 s wait ends; requests wait only while a fetch is in
//! flight; and the requests parked per VM are bounded (`PORTCULLIS_MAX_PENDING`,
//! here 4): one more is answered at once.
//!
//! Two Envoys (one worker each, so one VM holds every parked request): one with
//! the servers down, one whose JWK Set fetch stays in flight 4 s and then fails
//! (for the bound, its requests alone counted by Envoy).

mod common;

use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use portcullis_testbed::client;
use portcullis_testbed::servers::{EchoUpstream, Reply, ScriptedServer};
use portcullis_testbed::{Envoy, EnvoyConfig};
use serde_json::{json, Value};

const UNAVAILABLE: &str = "JWT keys are not available yet: the JWK Set could not be fetched";
/// The bound on parked requests this Envoy's VM is given.
const BOUND: usize = 4;
/// Below the 3 s a parked request waits (with room for a loaded machine):
/// answered without parking.
const AT_ONCE: Duration = Duration::from_millis(2500);

struct Fixture {
    envoy: Envoy,
    _down: ScriptedServer,
    _echo: EchoUpstream,
}

struct Bounded {
    envoy: Envoy,
    /// /jwks.json answers 503 after 4 s (within the 5 s fetch timeout); the
    /// retry comes 1 s later.
    slow: ScriptedServer,
    _echo: EchoUpstream,
}

fn bounded() -> &'static Bounded {
    static FX: OnceLock<Bounded> = OnceLock::new();
    FX.get_or_init(|| {
        let echo = EchoUpstream::start();
        let slow = ScriptedServer::start();
        slow.set("/jwks.json", Reply::new(503).delay(Duration::from_secs(4)));
        let plugin = json!({
            "clusters": { "slow.test": "slow" },
            "filters": [ { "name": "keys-slow", "JWT": {
                "jwksURI": "http://slow.test/jwks.json", "jwksRefreshInterval": "1s",
                "issuer": ISSUER, "audience": AUDIENCE } } ],
            "rules": [ { "host": "*", "path": "*", "filters": [ { "name": "keys-slow" } ] } ]
        });
        let cfg = EnvoyConfig::new(echo.port())
            .plugin(plugin)
            .vm_env("PORTCULLIS_MAX_PENDING", &BOUND.to_string())
            .cluster("slow", slow.port())
            .build();
        Bounded {
            envoy: Envoy::start(&cfg),
            slow,
            _echo: echo,
        }
    })
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let echo = EchoUpstream::start();
        let down = ScriptedServer::start();
        down.set_down(true);
        let jwt = |name: &str, uri: &str| {
            json!({ "name": name, "JWT": { "jwksURI": uri, "issuer": ISSUER, "audience": AUDIENCE } })
        };
        let rule = |prefix: &str, name: &str| {
            json!({ "host": "*", "path": format!("/{prefix}/*"), "filters": [ { "name": name } ] })
        };
        let plugin = json!({
            "clusters": { "down.test": "down", "idp.test": "down" },
            "filters": [
                jwt("keys-down", "http://down.test/jwks.json"),
                { "name": "login", "OAuth2": {
                    "authorizationURL": "http://idp.test",
                    "clientID": "portcullis", "secret": "s3cr3t",
                    "protectedOrigins": [ { "origin": "http://app.test" } ],
                    "sessionKeys": [ "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" ]
                } }
            ],
            "rules": [
                rule("keys-down", "keys-down"), rule("login", "login")
            ]
        });
        let cfg = EnvoyConfig::new(echo.port())
            .plugin(plugin)
            .vm_env("PORTCULLIS_MAX_PENDING", &BOUND.to_string())
            .cluster("down", down.port())
            .build();
        let envoy = Envoy::start(&cfg);
        for line in [
            "JWK Set http://down.test/jwks.json: fetch failed",
            "discovery document http://idp.test: fetch failed",
        ] {
            assert!(
                envoy.wait_for_log(line, Duration::from_secs(15)),
                "no {line:?} in the log:\n{}",
                envoy.log()
            );
        }
        Fixture {
            envoy,
            _down: down,
            _echo: echo,
        }
    })
}

fn port() -> u16 {
    fx().envoy.port("main")
}

#[test]
fn with_the_jwks_server_down_and_its_fetch_failed_requests_get_503_at_once() {
    fx();
    let token = token("RS256", Value::Null);
    // Across the retries (1 s, 2 s, 4 s apart): none waits out the 3 s.
    for i in 0..10 {
        let started = Instant::now();
        let r = get_with_token(port(), "/keys-down/x", &token, &[]);
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{}", show(&r));
        assert_default_body(&r, UNAVAILABLE, 503, "JWKS down");
        assert!(took < AT_ONCE, "request {i} took {took:?}");
    }
    // No token: the 401 as always.
    let r = client::get(port(), "/keys-down/x", &[]);
    assert_eq!(r.status, 401, "{}", show(&r));
}

#[test]
fn with_the_idp_down_and_discovery_failed_sign_in_is_unavailable_at_once() {
    fx();
    for i in 0..5 {
        let started = Instant::now();
        let r = client::get(port(), "/login/x", &[("Host", "app.test")]);
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{:?} {}", r.headers, r.body_str());
        assert!(r.header("location").is_none(), "no redirect to a dead IdP");
        assert!(r.body_str().contains("unavailable"), "{}", r.body_str());
        assert!(took < AT_ONCE, "request {i} took {took:?}");
    }
}

/// Sends `BOUND` requests while a fetch is in flight and waits until Envoy
/// counts them all active (parked). `None` when the fetch ended first (a
/// loaded machine): the caller tries again with the next fetch.
fn park_bound_requests(f: &Bounded, token: &str) -> Option<Vec<thread::JoinHandle<u16>>> {
    let port = f.envoy.port("main");
    let seen = f.slow.heads().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.slow.heads().len() == seen {
        assert!(Instant::now() < deadline, "no JWK Set fetch started");
        thread::sleep(Duration::from_millis(10));
    }
    // The fetch now stays in flight for 4 s, and requests wait for it.
    let fetch_started = Instant::now();
    let parked: Vec<_> = (0..BOUND)
        .map(|_| {
            let token = token.to_string();
            thread::spawn(move || get_with_token(port, "/x", &token, &[]).status)
        })
        .collect();
    while f.envoy.stat("http.main.downstream_rq_active").unwrap_or(0) < BOUND as u64 {
        if fetch_started.elapsed() > Duration::from_millis(3500) {
            for p in parked {
                let _ = p.join();
            }
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
    Some(parked)
}

#[test]
fn parked_requests_are_bounded_per_vm_and_one_past_the_bound_is_answered_at_once() {
    let f = bounded();
    let port = f.envoy.port("main");
    let token = token("RS256", Value::Null);
    let parked = (0..5)
        .find_map(|_| park_bound_requests(f, &token))
        .expect("the requests parked for one of five fetches");
    // One past the bound: answered at once, as a timed-out wait, while the
    // others are still parked.
    let r = get_with_token(port, "/x", &token, &[]);
    let still_parked = f.envoy.stat("http.main.downstream_rq_active").unwrap_or(0);
    assert_eq!(r.status, 503, "{}", show(&r));
    assert_default_body(&r, UNAVAILABLE, 503, "past the bound");
    assert!(
        still_parked >= BOUND as u64,
        "answered only after the parked ones ({still_parked} still active)"
    );
    // The parked ones get their 503 when the fetch fails (or their 3 s end).
    for p in parked {
        assert_eq!(p.join().expect("client thread"), 503, "a parked request");
    }
}
