//! Remote JWK Sets (`jwksURI`): fetched in the background from the root context,
//! requests waiting (up to 3 s) for a set that has not loaded yet, refresh on an
//! unknown `kid` (at most once per 10 s), the last good set kept through an outage,
//! 503 without `WWW-Authenticate` while no set ever loaded, and answers that are
//! not a usable JWK Set (garbage, more than 256 KiB) refused.
//!
//! One shared Envoy with one JWT filter per scenario, each on its own `jwksURI`
//! (own cache entry), so the tests run in parallel without touching each other;
//! the "first request waits" test has its own Envoy, as it needs a fresh start.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use portcullis_testbed::client;
use portcullis_testbed::servers::{EchoUpstream, Reply, ScriptedServer};
use portcullis_testbed::tokens;
use portcullis_testbed::{Envoy, EnvoyConfig};
use serde_json::{json, Value};

/// The 503 body while a JWK Set has never loaded.
const UNAVAILABLE: &str = "JWT keys are not available yet: the JWK Set could not be fetched";

fn jwks_reply(set: &Value) -> Reply {
    Reply::json(200, set)
}

struct Fixture {
    envoy: Envoy,
    /// good.json, refresh.json, garbage.json, big.json
    s1: ScriptedServer,
    /// Down at start.
    s2: ScriptedServer,
    /// Goes down after the first load.
    s3: ScriptedServer,
    _echo: EchoUpstream,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let echo = EchoUpstream::start();
        let (s1, s2, s3) = (
            ScriptedServer::start(),
            ScriptedServer::start(),
            ScriptedServer::start(),
        );
        let full = jwks();
        s1.set("/good.json", jwks_reply(&full));
        s1.set(
            "/refresh.json",
            jwks_reply(&tokens::jwks_of(&["rsa1", "ec384", "ed1", "hmac1"])),
        );
        s1.set(
            "/garbage.json",
            Reply::text(200, "<html>this is not a JWK Set</html>"),
        );
        // Valid JSON holding a valid key, but over the 256 KiB limit.
        let mut big = full.clone();
        big["padding"] = json!("x".repeat(300 * 1024));
        s1.set("/big.json", jwks_reply(&big));
        s2.set("/jwks.json", jwks_reply(&full));
        s2.set_down(true);
        s3.set("/jwks.json", jwks_reply(&full));

        let filter = |name: &str, uri: &str, extra: Value| {
            json!({ "name": name, "JWT": tokens::merge(json!({
                "jwksURI": uri, "issuer": ISSUER, "audience": AUDIENCE,
                "injectRequestHeaders": [ { "name": "X-Sub", "value": "{{ .token.Claims.sub }}" } ]
            }), extra) })
        };
        let rule = |prefix: &str, name: &str| {
            json!({ "host": "*", "path": format!("/{prefix}/*"), "filters": [ { "name": name } ] })
        };
        let fast = json!({ "jwksRefreshInterval": "1s" });
        let plugin = json!({
            "clusters": { "s1.test": "s1", "s2.test": "s2", "s3.test": "s3" },
            "filters": [
                filter("good", "http://s1.test/good.json", Value::Null),
                filter("refresh", "http://s1.test/refresh.json", Value::Null),
                filter("garbage", "http://s1.test/garbage.json", Value::Null),
                filter("big", "http://s1.test/big.json", Value::Null),
                filter("down", "http://s2.test/jwks.json", fast.clone()),
                filter("outage", "http://s3.test/jwks.json", fast),
            ],
            "rules": [
                rule("good", "good"), rule("refresh", "refresh"), rule("garbage", "garbage"),
                rule("big", "big"), rule("down", "down"), rule("outage", "outage"),
            ]
        });
        let cfg = EnvoyConfig::new(echo.port())
            .plugin(plugin)
            .cluster("s1", s1.port())
            .cluster("s2", s2.port())
            .cluster("s3", s3.port())
            .build();
        Fixture {
            envoy: Envoy::start(&cfg),
            s1,
            s2,
            s3,
            _echo: echo,
        }
    })
}

fn port() -> u16 {
    fx().envoy.port("main")
}

fn call(path: &str, token: &str) -> client::Response {
    get_with_token(port(), path, token, &[])
}

/// The number of requests to `path` once it has stopped growing for 500 ms.
fn settled_count(server: &ScriptedServer, path: &str) -> usize {
    let mut last = server.count(path);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = server.count(path);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Asserts the "never loaded" answer: 503, default body, no `WWW-Authenticate`.
fn assert_unavailable(r: &client::Response, ctx: &str) {
    assert_eq!(r.status, 503, "{ctx}: {}", show(r));
    assert!(
        r.header("www-authenticate").is_none(),
        "{ctx}: no WWW-Authenticate on 503: {}",
        show(r)
    );
    assert_default_body(r, UNAVAILABLE, 503, ctx);
}

#[test]
fn jwks_is_fetched_in_the_background_before_any_request() {
    let f = fx();
    // No request has gone to /good/: the root context fetched the set on its own.
    assert!(
        f.s1.wait_for_requests("/good.json", 1, Duration::from_secs(10)),
        "no background fetch of good.json; log:\n{}",
        f.envoy.log_tail(30)
    );
    let fetch = &f.s1.requests_to("/good.json")[0];
    assert_eq!(fetch.method, "GET");
    assert_eq!(fetch.header("host"), Some("s1.test"));
    assert!(
        f.envoy.wait_for_log(
            "JWK Set http://s1.test/good.json: loaded 6 keys",
            Duration::from_secs(5)
        ),
        "{}",
        f.envoy.log_tail(30)
    );
    for alg in tokens::ALL_ALGS {
        let seen = passed(&f.envoy, &call("/good/x", &token(alg, Value::Null)), alg);
        assert_eq!(seen.headers_all("x-sub"), vec!["user-1"]);
    }
    // Still refused what must be refused.
    assert_invalid_token(
        &call(
            "/good/x",
            &tokens::tamper_signature(&token("PS384", Value::Null)),
        ),
        "good",
        "signature is invalid",
        "tampered",
    );
    // The default refresh interval is 5 minutes: no further fetch meanwhile. (Each
    // Envoy thread's VM fetches its own copy at start: main thread and worker.)
    let fetched = settled_count(&f.s1, "/good.json");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        f.s1.count("/good.json"),
        fetched,
        "no refetch within the interval"
    );
}

#[test]
fn first_request_after_start_waits_for_the_set() {
    let echo = EchoUpstream::start();
    let server = ScriptedServer::start();
    let gate = Arc::new(AtomicBool::new(false));
    let g = gate.clone();
    let set = jwks();
    server.set_fn("/jwks.json", move |_| {
        // Hold the answer until the test opens the gate (bounded).
        let until = Instant::now() + Duration::from_secs(15);
        while !g.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        Reply::json(200, &set)
    });
    let plugin = json!({
        "clusters": { "idp.test": "idp" },
        "filters": [ { "name": "jwt", "JWT": {
            "jwksURI": "http://idp.test/jwks.json", "issuer": ISSUER, "audience": AUDIENCE
        } } ],
        "rules": [ { "host": "*", "path": "*", "filters": [ { "name": "jwt" } ] } ]
    });
    let envoy = Envoy::start(
        &EnvoyConfig::new(echo.port())
            .plugin(plugin)
            .cluster("idp", server.port())
            .build(),
    );
    let p = envoy.port("main");
    let (tx, rx) = mpsc::channel();
    let t = token("ES256", Value::Null);
    std::thread::spawn(move || {
        let _ = tx.send(get_with_token(p, "/first", &t, &[]));
    });
    // The request is held while the set is being fetched...
    assert!(
        rx.recv_timeout(Duration::from_millis(700)).is_err(),
        "the first request was answered before the JWK Set arrived"
    );
    assert!(server.count("/jwks.json") >= 1, "no fetch under way");
    // ...and goes through once it arrives.
    gate.store(true, Ordering::SeqCst);
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the waiting request was answered");
    let seen = passed(&envoy, &r, "first request");
    assert_eq!(seen.path, "/first");
}

#[test]
fn unknown_kid_refreshes_the_set_at_most_once_per_10s() {
    let f = fx();
    // Loaded without ec256.
    passed(
        &f.envoy,
        &call("/refresh/x", &token("RS256", Value::Null)),
        "rsa1",
    );
    assert!(f.envoy.wait_for_log(
        "JWK Set http://s1.test/refresh.json: loaded 4 keys",
        Duration::from_secs(5)
    ));
    // One fetch per Envoy thread's VM (main thread and the one worker) so far:
    // wait until no more arrive.
    let before = settled_count(&f.s1, "/refresh.json");
    assert!(before >= 1, "fetched at start");
    // The IdP rotates in ec256: a token naming it pulls a refresh and passes.
    f.s1.set("/refresh.json", jwks_reply(&jwks()));
    let seen = passed(
        &f.envoy,
        &call("/refresh/x", &token("ES256", Value::Null)),
        "ec256 after rotation",
    );
    assert_eq!(seen.headers_all("x-sub"), vec!["user-1"]);
    assert_eq!(f.s1.count("/refresh.json"), before + 1, "one refresh");
    assert!(f.envoy.wait_for_log(
        "JWK Set http://s1.test/refresh.json: loaded 6 keys",
        Duration::from_secs(5)
    ));
    // Another unknown kid within 10 s: refused at once, no new fetch.
    let started = Instant::now();
    let ghost = tokens::mint("ES256", Some("ghost"), Value::Null, good_claims());
    assert_invalid_token(
        &call("/refresh/x", &ghost),
        "refresh",
        "unknown key id \"ghost\"",
        "kid ghost",
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a rate-limited unknown kid is answered without waiting ({:?})",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        f.s1.count("/refresh.json"),
        before + 1,
        "rate-limited: no fetch for kid ghost"
    );
}

#[test]
fn outage_after_start_keeps_the_last_good_set() {
    let f = fx();
    passed(
        &f.envoy,
        &call("/outage/x", &token("EdDSA", Value::Null)),
        "before the outage",
    );
    f.s3.set_down(true);
    assert!(
        f.envoy.wait_for_log(
            "JWK Set http://s3.test/jwks.json: fetch failed:",
            Duration::from_secs(10)
        ),
        "no failed refresh logged; log:\n{}",
        f.envoy.log_tail(30)
    );
    let log = f.envoy.log();
    let line = log
        .lines()
        .find(|l| l.contains("JWK Set http://s3.test/jwks.json: fetch failed:"))
        .expect("line");
    assert!(
        line.contains("; keeping the last good set"),
        "the failure keeps the last good set: {line}"
    );
    assert!(line.contains("[warning]"), "a warning: {line}");
    // Tokens are still accepted (and still checked) during the outage.
    for alg in ["EdDSA", "RS512", "HS384"] {
        passed(
            &f.envoy,
            &call("/outage/x", &token(alg, Value::Null)),
            &format!("{alg} during the outage"),
        );
    }
    assert_invalid_token(
        &call("/outage/x", &token("ES256", json!({"exp": now() - 60}))),
        "outage",
        "token is expired",
        "expired during the outage",
    );
    let failed_before = f
        .envoy
        .log_count("JWK Set http://s3.test/jwks.json: fetch failed:");
    assert!(
        eventually(Duration::from_secs(10), || f
            .envoy
            .log_count("JWK Set http://s3.test/jwks.json: fetch failed:")
            > failed_before),
        "refreshes go on during the outage"
    );
    passed(
        &f.envoy,
        &call("/outage/x", &token("ES384", Value::Null)),
        "still during the outage",
    );
}

#[test]
fn jwks_down_at_start_gives_503_then_recovers() {
    let f = fx();
    // No token needs no keys: 401 at once.
    assert_no_token(&client::get(port(), "/down/x", &[]), "down", "no token");
    let started = Instant::now();
    let r = call("/down/x", &token("RS256", Value::Null));
    let waited = started.elapsed();
    assert_unavailable(&r, "set never loaded");
    // It waits only for a fetch in flight, which fails at once against a
    // server that closes the connection: never the whole 3 s.
    assert!(
        waited < Duration::from_millis(2500),
        "the 503 comes when the fetch fails, not after 3 s (waited {waited:?})"
    );
    let log = f.envoy.log();
    let line = log
        .lines()
        .find(|l| l.contains("JWK Set http://s2.test/jwks.json: fetch failed:"))
        .unwrap_or_else(|| panic!("no failure logged; log:\n{}", f.envoy.log_tail(30)));
    assert!(line.ends_with("; no keys yet"), "{line}");
    // The IdP comes up: the next fetch loads the set and tokens pass.
    f.s2.set_down(false);
    assert!(
        eventually(Duration::from_secs(15), || {
            call("/down/x", &token("RS256", Value::Null)).status == 200
        }),
        "tokens never passed after the JWKS server came up; log:\n{}",
        f.envoy.log_tail(30)
    );
    assert!(f
        .envoy
        .log()
        .contains("JWK Set http://s2.test/jwks.json: loaded 6 keys"));
    passed(
        &f.envoy,
        &call("/down/x", &token("HS256", Value::Null)),
        "after recovery",
    );
}

#[test]
fn garbage_jwks_is_refused() {
    let f = fx();
    assert_unavailable(
        &call("/garbage/x", &token("RS256", Value::Null)),
        "garbage JWKS",
    );
    assert!(
        f.envoy.wait_for_log(
            "JWK Set http://s1.test/garbage.json: fetch failed: not a JWK Set: JWK Set is not valid JSON",
            Duration::from_secs(5)
        ),
        "{}",
        f.envoy.log_tail(30)
    );
}

#[test]
fn oversized_jwks_is_refused() {
    let f = fx();
    assert_unavailable(
        &call("/big/x", &token("RS256", Value::Null)),
        "JWKS over 256 KiB",
    );
    assert!(f.s1.count("/big.json") >= 1, "the big set was fetched");
    assert!(
        f.envoy.wait_for_log(
            "JWK Set http://s1.test/big.json: fetch failed: larger than 262144 bytes; no keys yet",
            Duration::from_secs(5)
        ),
        "{}",
        f.envoy.log_tail(30)
    );
}
