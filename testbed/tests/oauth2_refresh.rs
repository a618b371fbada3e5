//! One refresh per session per Envoy, across worker VMs and over time, against
//! an IdP that rotates refresh tokens and revokes the grant when a spent one
//! comes back (`oidc-provider`, as Okta, Auth0, Keycloak and Azure AD B2C do).
//!
//! - Envoy runs four workers (`--concurrency 4`: four Wasm VMs). After the
//!   access token expires, eight parallel requests of one session, each on its
//!   own connection, then three more still carrying the pre-refresh cookie
//!   (0.3 s, 1 s and 2.5 s later): every one reaches the upstream with the one
//!   refreshed token, the IdP sees one refresh and refuses none, and the next
//!   expiry refreshes fine.
//! - A fleet: two Envoy processes with the same `sessionKeys` share no memory.
//!   Hit directly, a session's late request on the second refreshes with the
//!   spent token and the IdP ends the session (shown, so the docs' advice is
//!   backed). Behind a front Envoy with session affinity (`ring_hash` on the
//!   session's XSRF cookie, which a refresh keeps), the same burst refreshes once.

mod oauth2_common;

use std::thread;
use std::time::{Duration, Instant};

use oauth2_common::*;
use portcullis_testbed::browserless::{Agent, Url};
use portcullis_testbed::client;
use portcullis_testbed::idp::{free_port, Idp, IdpClient, IdpOptions};
use portcullis_testbed::{EchoUpstream, Envoy, EnvoyConfig};
use serde_json::{json, Value};

const SECRET: &str = "portcullis-s3cret";
/// The access token's lifetime at the IdP.
/// Long enough that the late requests (up to 2.5 s after the refresh) and
/// the checks after them come well before the refreshed token expires, on a
/// loaded machine too.
const ACCESS_TTL: Duration = Duration::from_secs(8);
const FILTER: &str = "app";

/// The plugin configuration: one OAuth2 filter on every path of `origin`.
fn plugin(origin: &str, idp: &Idp, client_id: &str, key: &str) -> Value {
    json!({
        "clusters": { idp.authority(): "idp" },
        "filters": [ { "name": FILTER, "OAuth2": {
            "authorizationURL": idp.issuer(),
            "clientID": client_id,
            "secret": SECRET,
            "protectedOrigins": [ { "origin": origin } ],
            "sessionKeys": [ key ],
            "injectRequestHeaders": [ { "name": "X-User", "value": "{{ .idToken.Claims.sub }}" } ]
        } } ],
        "rules": [ { "host": "*", "path": "/*", "filters": [ { "name": FILTER } ] } ]
    })
}

fn idp_for(origin: &str, client_id: &str) -> Idp {
    Idp::start(IdpOptions {
        clients: vec![
            IdpClient::web(client_id, SECRET, &[origin.to_string()]).access_ttl(ACCESS_TTL)
        ],
        ..IdpOptions::default()
    })
}

/// The IdP's count of token requests of `client_id` answered `status` (its log
/// has one line per token request; the login's code exchange is one), once at
/// least `expected` are logged: the IdP logs a request after answering it, so
/// its line may come a moment after Envoy has the answer.
fn token_calls(idp: &Idp, client_id: &str, status: u16, expected: usize) -> usize {
    let needle = format!("POST /token -> {status} auth=basic client={client_id}");
    idp.wait_for_log(&needle, expected, WAIT);
    idp.log_count(&needle)
}

/// Logs in at `origin` + `/start`: the agent, the access token the upstream
/// saw, and a time after it was issued.
fn login(idp: &Idp, origin: &str) -> (Agent, String, Instant) {
    let mut agent = Agent::new();
    let start = format!("{origin}/start");
    let done = idp.login_headless(&mut agent, &start, USER);
    assert_eq!(done.final_url, start, "the login came back to its URL");
    let token = bearer(&echoed(&done.response));
    (agent, token, Instant::now())
}

fn cookie_for(agent: &Agent, origin: &str) -> String {
    agent
        .cookie_header(&Url::parse(&format!("{origin}/")).expect("origin URL"))
        .expect("session cookies")
}

/// Sleeps until the access token issued at `issued` has expired (plus a margin
/// for the IdP's and Envoy's clocks): expiry is the event waited for.
fn until_expired(issued: Instant) {
    let at = issued + ACCESS_TTL + Duration::from_millis(1200);
    if let Some(left) = at.checked_duration_since(Instant::now()) {
        thread::sleep(left);
    }
}

/// `n` requests in parallel, each on its own connection, with `cookie`.
fn burst(port: u16, authority: &str, cookie: &str, n: usize) -> Vec<client::Response> {
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (cookie, host) = (cookie.to_string(), authority.to_string());
            thread::spawn(move || {
                client::request(
                    port,
                    "GET",
                    &format!("/burst/{i}"),
                    &[("Host", host.as_str()), ("Cookie", cookie.as_str())],
                    b"",
                )
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("request thread"))
        .collect()
}

/// One request with `cookie`, `after` the instant given.
fn late(
    port: u16,
    authority: &str,
    cookie: &str,
    since: Instant,
    after: Duration,
) -> client::Response {
    if let Some(left) = (since + after).checked_duration_since(Instant::now()) {
        thread::sleep(left);
    }
    client::request(
        port,
        "GET",
        "/late",
        &[("Host", authority), ("Cookie", cookie)],
        b"",
    )
}

/// The issue's traffic after expiry: 8 parallel requests on separate
/// connections, then 3 still carrying the pre-refresh `cookie`, 0.3 s, 1 s and
/// 2.5 s later. The answers, and when the burst began.
fn burst_then_late(port: u16, authority: &str, cookie: &str) -> (Vec<client::Response>, Instant) {
    let began = Instant::now();
    let mut answers = burst(port, authority, cookie, 8);
    for after in [300, 1000, 2500] {
        answers.push(late(
            port,
            authority,
            cookie,
            began,
            Duration::from_millis(after),
        ));
    }
    (answers, began)
}

/// Asserts every response reached the upstream as `alice` with one refreshed
/// token (not `old`) and renewed the session cookie; returns that token.
fn one_fresh_token(responses: &[client::Response], old: &str) -> String {
    let tokens: Vec<String> = responses
        .iter()
        .map(|r| {
            let e = echoed(r);
            assert_eq!(e.header("x-user"), Some("alice"));
            assert!(
                !session_cookies_set(r).is_empty(),
                "a refreshed session cookie comes with the answer"
            );
            bearer(&e)
        })
        .collect();
    let first = tokens.first().expect("responses").clone();
    assert_ne!(first, old, "the expired token reached the upstream");
    assert!(
        tokens.iter().all(|t| *t == first),
        "every request got the one refresh's token: {tokens:?}"
    );
    first
}

fn session_cookies_set(r: &client::Response) -> Vec<portcullis_testbed::browserless::SetCookie> {
    cookies_set(r, &format!("portcullis_session.{FILTER}"))
}

/// The agent's jar after `r`'s cookies.
fn after(agent: &Agent, origin: &str, r: &client::Response) -> Agent {
    let mut next = agent.clone();
    next.store(&Url::parse(&format!("{origin}/")).expect("origin URL"), r);
    next
}

/// Waits (bounded) until Envoy's counter `name` (summed over its workers) is
/// at least `n`; its value. Wasm counters reach Envoy on each VM's tick.
fn counter_at_least(envoy: &Envoy, name: &str, n: u64) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = envoy.stat(name).unwrap_or(0);
        if v >= n || Instant::now() > deadline {
            return v;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// How many of Envoy's workers accepted a connection on the main listener.
fn workers_used(envoy: &Envoy) -> usize {
    envoy
        .admin_get("/stats?filter=worker_.*downstream_cx_total")
        .lines()
        .filter(|l| l.starts_with("listener.") && !l.ends_with(": 0"))
        .count()
}

#[test]
fn a_burst_across_four_workers_refreshes_once_and_late_requests_share_it() {
    let echo = EchoUpstream::start();
    let client_id = "burst";
    let mut started = None;
    for _ in 0..3 {
        let port = free_port();
        let origin = origin(port);
        let idp = idp_for(&origin, client_id);
        let cfg = EnvoyConfig::new(echo.port())
            .main_port(port)
            .plugin(plugin(&origin, &idp, client_id, &session_key()))
            .cluster("idp", idp.port())
            .build();
        match Envoy::try_start_workers(&cfg, &[], 4) {
            Ok(envoy) => {
                started = Some((envoy, idp, port));
                break;
            }
            Err(e) if e.contains("ddress already in use") => continue,
            Err(e) => panic!("{e}"),
        }
    }
    let (envoy, idp, port) = started.expect("Envoy could not bind a picked port three times");
    let origin = origin(port);
    let authority = format!("127.0.0.1:{port}");

    let (agent, old, issued) = login(&idp, &origin);
    let cookie = cookie_for(&agent, &origin);
    assert_eq!(
        token_calls(&idp, client_id, 200, 1),
        1,
        "the login's code exchange"
    );

    until_expired(issued);
    let (answers, refreshed_at) = burst_then_late(port, &authority, &cookie);
    let fresh = one_fresh_token(&answers, &old);
    assert_eq!(
        token_calls(&idp, client_id, 200, 2),
        2,
        "one refresh for the session's eleven requests"
    );
    assert_eq!(
        token_calls(&idp, client_id, 400, 0),
        0,
        "no spent refresh token reached the IdP"
    );
    assert!(
        workers_used(&envoy) >= 2,
        "the requests landed on one worker only; the test proves nothing: {}",
        envoy.admin_get("/stats?filter=worker_.*downstream_cx_total")
    );
    // Ten requests used the one refresh's answer (the first made it); the
    // UserInfo call each then makes for the new access token is shared too
    // (up to ten more).
    let shared = counter_at_least(&envoy, "wasmcustom.portcullis.callout.shared", 10);
    assert!((10..=20).contains(&shared), "{shared} shared answers");
    // One refresh counted: by the request that sent it, not again by each
    // request that used its answer.
    let refreshes = "wasmcustom.portcullis.oauth2.app.refresh.done";
    assert_eq!(counter_at_least(&envoy, refreshes, 1), 1);

    // The next expiry refreshes with the rotated refresh token.
    let agent = after(&agent, &origin, answers.last().expect("answers"));
    let cookie = cookie_for(&agent, &origin);
    until_expired(refreshed_at);
    let next = client::request(
        port,
        "GET",
        "/next-expiry",
        &[("Host", authority.as_str()), ("Cookie", cookie.as_str())],
        b"",
    );
    let third = bearer(&echoed(&next));
    assert_ne!(third, fresh);
    assert_eq!(
        token_calls(&idp, client_id, 200, 3),
        3,
        "one refresh per expiry"
    );
    assert_eq!(token_calls(&idp, client_id, 400, 0), 0);
    assert_eq!(counter_at_least(&envoy, refreshes, 2), 2);
    eprintln!(
        "shared wait (ms): {}",
        envoy
            .admin_get("/stats?filter=shared_wait_ms")
            .lines()
            .filter(|l| l.contains("P50") || l.contains("P99") || l.contains("P0,"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

/// Two Portcullis Envoys with one configuration (the origin is the front's)
/// behind a front Envoy that balances them with `ring_hash` on the session's
/// XSRF cookie (`affinity`), or round robin.
struct Fleet {
    members: Vec<Envoy>,
    _front: Envoy,
    idp: Idp,
    port: u16,
    _echo: EchoUpstream,
}

fn fleet(client_id: &str, affinity: bool) -> Fleet {
    let echo = EchoUpstream::start();
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let origin = origin(port);
        let idp = idp_for(&origin, client_id);
        let key = session_key();
        let member = || {
            let cfg = EnvoyConfig::new(echo.port())
                .plugin(plugin(&origin, &idp, client_id, &key))
                .cluster("idp", idp.port())
                .build();
            Envoy::try_start_workers(&cfg, &[], 2).unwrap_or_else(|e| panic!("{e}"))
        };
        let members = vec![member(), member()];
        let endpoints: Vec<u16> = members.iter().map(|m| m.port("main")).collect();
        // One worker: round robin then alternates strictly.
        match Envoy::try_start_workers(&front_yaml(port, &endpoints, affinity), &[], 1) {
            Ok(front) => {
                return Fleet {
                    members,
                    _front: front,
                    idp,
                    port,
                    _echo: echo,
                }
            }
            Err(e) if e.contains("ddress already in use") => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the front Envoy could not bind a picked port three times: {last}");
}

/// The front tier of docs/deploy.md "A fleet": session affinity by the
/// `portcullis_xsrf.<filter>` cookie (set at login, kept by every refresh);
/// without `affinity`, round robin.
fn front_yaml(port: u16, members: &[u16], affinity: bool) -> String {
    let (lb, hash) = if affinity {
        (
            "RING_HASH",
            format!("\n                  hash_policy:\n                  - cookie: {{ name: \"portcullis_xsrf.{FILTER}\" }}"),
        )
    } else {
        ("ROUND_ROBIN", String::new())
    };
    let endpoints: String = members
        .iter()
        .map(|p| {
            format!(
                "        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {p} }} }} }}\n"
            )
        })
        .collect();
    format!(
        r#"static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    # A port picked beforehand: taken meanwhile, the bind fails (and is
    # retried) instead of sharing the port with another process.
    enable_reuse_port: false
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route:
                  cluster: portcullis{hash}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: portcullis
    type: STATIC
    lb_policy: {lb}
    load_assignment:
      cluster_name: portcullis
      endpoints:
      - lb_endpoints:
{endpoints}"#
    )
}

#[test]
fn two_envoys_without_affinity_refresh_twice_and_the_idp_ends_the_session() {
    let client_id = "fleet-bare";
    let f = fleet(client_id, false);
    let origin = origin(f.port);
    let authority = format!("127.0.0.1:{}", f.port);
    let (agent, _, issued) = login(&f.idp, &origin);
    let cookie = cookie_for(&agent, &origin);
    until_expired(issued);
    let get = |cookie: &str| {
        client::request(
            f.port,
            "GET",
            "/page",
            &[("Host", authority.as_str()), ("Cookie", cookie)],
            b"",
        )
    };
    // Round robin: the first member refreshes; the second, with the same
    // pre-refresh cookie, knows nothing of it and sends the spent token.
    let first = get(&cookie);
    echoed(&first);
    let second = get(&cookie);
    assert_eq!(
        second.status, 303,
        "the second member's session is gone: a new login"
    );
    assert_eq!(
        token_calls(&f.idp, client_id, 200, 2),
        2,
        "the code and one refresh"
    );
    assert_eq!(
        token_calls(&f.idp, client_id, 400, 1),
        1,
        "the spent token refused"
    );
    // And the IdP revoked the grant: the refreshed session cannot refresh at
    // its next expiry either.
    let agent = after(&agent, &origin, &first);
    until_expired(Instant::now());
    let r = get(&cookie_for(&agent, &origin));
    assert_eq!(
        r.status,
        303,
        "the grant was revoked: the user logs in again; got {} {}; IdP log:\n{}",
        r.status,
        r.body_str(),
        f.idp.log()
    );
    assert_eq!(token_calls(&f.idp, client_id, 400, 2), 2);
}

#[test]
fn two_envoys_behind_a_cookie_hash_front_refresh_once() {
    let client_id = "fleet-front";
    let f = fleet(client_id, true);
    let origin = origin(f.port);
    let authority = format!("127.0.0.1:{}", f.port);
    let (agent, old, issued) = login(&f.idp, &origin);
    let cookie = cookie_for(&agent, &origin);
    let served = || -> Vec<u64> {
        f.members
            .iter()
            .map(|m| m.stat("http.main.downstream_rq_completed").unwrap_or(0))
            .collect()
    };
    let before = served();
    until_expired(issued);
    let (answers, refreshed_at) = burst_then_late(f.port, &authority, &cookie);
    let fresh = one_fresh_token(&answers, &old);
    assert_eq!(
        token_calls(&f.idp, client_id, 200, 2),
        2,
        "the code and one refresh"
    );
    assert_eq!(token_calls(&f.idp, client_id, 400, 0), 0);
    // Every request of the session went to one member.
    let grew: Vec<u64> = served()
        .iter()
        .zip(&before)
        .map(|(now, then)| now - then)
        .collect();
    assert!(
        grew.contains(&11) && grew.contains(&0),
        "the session's 11 requests went to one member: {grew:?}"
    );
    // The next expiry refreshes fine through the front.
    let agent = after(&agent, &origin, answers.last().expect("answers"));
    until_expired(refreshed_at);
    let next = client::request(
        f.port,
        "GET",
        "/next-expiry",
        &[
            ("Host", authority.as_str()),
            ("Cookie", cookie_for(&agent, &origin).as_str()),
        ],
        b"",
    );
    assert_ne!(bearer(&echoed(&next)), fresh);
    assert_eq!(
        token_calls(&f.idp, client_id, 200, 3),
        3,
        "one refresh per expiry"
    );
    assert_eq!(token_calls(&f.idp, client_id, 400, 0), 0);
}
