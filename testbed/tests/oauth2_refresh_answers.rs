//! What a refresh answer may say, end to end through Envoy, with a scripted
//! OpenID Provider for what `oidc-provider` cannot be made to do:
//!
//! - a refreshed ID token for another subject (OIDC Core §12.2): the session
//!   ends and the user logs in again; the upstream never sees the request;
//! - an opaque access token and no `expires_in` (RFC 6749 §5.1 only RECOMMENDS
//!   it): the session still refreshes, after the assumed lifetime
//!   (`expirationSafetyMargin` counts from it), instead of never;
//! - a refresh answer without `refresh_token` or `id_token`, with `expires_in`
//!   as a string: the session keeps its refresh token and ID token, and the
//!   next refresh sends the refresh token it had.
//!
//! The scripted OP logs in at once (an IdP's SSO session: `/authorize`
//! redirects back with a code), signs ID tokens with the testbed's RSA key, and
//! answers refresh grants as each test says.

mod oauth2_common;

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use oauth2_common::*;
use portcullis_testbed::browserless::{percent_decode, query_param, Agent};
use portcullis_testbed::idp::free_port;
use portcullis_testbed::servers::Request;
use portcullis_testbed::tokens;
use portcullis_testbed::{client, EchoUpstream, Envoy, EnvoyConfig, Reply, ScriptedServer};
use serde_json::{json, Value};

const CLIENT: &str = "scripted";

/// What the scripted OP answers to a refresh grant, given its issuer and the
/// refresh token.
type RefreshScript = dyn Fn(&str, &str) -> Value + Send + Sync;

struct Op {
    server: ScriptedServer,
    issuer: String,
}

/// Form fields of a token request.
fn form(req: &Request) -> Vec<(String, String)> {
    req.body_str()
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn field(form: &[(String, String)], name: &str) -> String {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn id_token(issuer: &str, sub: &str, nonce: Option<&str>) -> String {
    let now = tokens::now();
    let mut claims =
        json!({ "iss": issuer, "sub": sub, "aud": CLIENT, "iat": now, "exp": now + 600 });
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    tokens::mint("RS256", Some("rsa1"), Value::Null, claims)
}

impl Op {
    /// `login_tokens`: the code grant's answer fields besides `id_token`.
    fn start(login_tokens: Value, refresh: Box<RefreshScript>) -> Op {
        let server = ScriptedServer::start();
        let issuer = format!("http://127.0.0.1:{}", server.port());
        server.set(
            "/.well-known/openid-configuration",
            Reply::json(
                200,
                &json!({
                    "issuer": issuer,
                    "authorization_endpoint": format!("{issuer}/authorize"),
                    "token_endpoint": format!("{issuer}/token"),
                    "userinfo_endpoint": format!("{issuer}/userinfo"),
                    "jwks_uri": format!("{issuer}/jwks"),
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }),
            ),
        );
        server.set("/jwks", Reply::json(200, &tokens::jwks_of(&["rsa1"])));
        server.set("/userinfo", Reply::json(200, &json!({ "sub": USER })));
        // SSO: back at once with a code; the code remembers the nonce.
        let nonces: Arc<Mutex<Vec<String>>> = Arc::default();
        let n2 = nonces.clone();
        server.set_fn("/authorize", move |req| {
            let q = |k: &str| query_param(&req.path, k).unwrap_or_default();
            let mut n = n2.lock().unwrap_or_else(|e| e.into_inner());
            n.push(q("nonce"));
            let loc = format!(
                "{}?code=code-{}&state={}",
                q("redirect_uri"),
                n.len() - 1,
                portcullis_testbed::browserless::percent_encode(&q("state"))
            );
            Reply::new(302).header("location", &loc)
        });
        let iss = issuer.clone();
        server.set_fn("/token", move |req| {
            let f = form(req);
            let answer = match field(&f, "grant_type").as_str() {
                "authorization_code" => {
                    let i: usize = field(&f, "code")
                        .trim_start_matches("code-")
                        .parse()
                        .unwrap_or(usize::MAX);
                    let nonce = nonces
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(i)
                        .cloned();
                    let mut a = login_tokens.clone();
                    a["id_token"] = json!(id_token(&iss, USER, nonce.as_deref()));
                    a
                }
                "refresh_token" => refresh(&iss, &field(&f, "refresh_token")),
                _ => json!({ "error": "unsupported_grant_type" }),
            };
            let status = if answer.get("error").is_some() {
                400
            } else {
                200
            };
            Reply::json(status, &answer)
        });
        Op { server, issuer }
    }

    fn refreshes(&self) -> Vec<String> {
        self.server
            .requests_to("/token")
            .iter()
            .map(form)
            .filter(|f| field(f, "grant_type") == "refresh_token")
            .map(|f| field(&f, "refresh_token"))
            .collect()
    }
}

struct Site {
    envoy: Envoy,
    port: u16,
    _echo: EchoUpstream,
}

/// Envoy with one OAuth2 filter for the OP on every path.
fn site(op: &Op, extra: Value) -> Site {
    let echo = EchoUpstream::start();
    for _ in 0..3 {
        let port = free_port();
        let mut spec = json!({
            "authorizationURL": op.issuer,
            "clientID": CLIENT,
            "secret": "s3cret",
            "protectedOrigins": [ { "origin": origin(port) } ],
            "sessionKeys": [ session_key() ],
            "injectRequestHeaders": [ { "name": "X-User", "value": "{{ .idToken.Claims.sub }}" } ]
        });
        if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra.clone()) {
            s.extend(e);
        }
        let plugin = json!({
            "clusters": { format!("127.0.0.1:{}", op.server.port()): "op" },
            "filters": [ { "name": "app", "OAuth2": spec } ],
            "rules": [ { "host": "*", "path": "/*", "filters": [ { "name": "app" } ] } ]
        });
        let cfg = EnvoyConfig::new(echo.port())
            .main_port(port)
            .plugin(plugin)
            .cluster("op", op.server.port())
            .build();
        match Envoy::try_start(&cfg) {
            Ok(envoy) => {
                return Site {
                    envoy,
                    port,
                    _echo: echo,
                }
            }
            Err(e) if e.contains("ddress already in use") => continue,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("Envoy could not bind a picked port three times");
}

impl Site {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", origin(self.port))
    }

    /// Logs in (the OP's SSO answers at once); the agent and the upstream's echo.
    fn login(&self) -> (Agent, client::Response) {
        let mut agent = Agent::new();
        let hops = agent.get_following(&self.url("/start"));
        let last = hops.last().expect("hops").response.clone();
        assert_eq!(
            hops.iter().filter(|h| h.response.status == 302).count(),
            1,
            "one trip to the IdP"
        );
        echoed(&last);
        (agent, last)
    }

    fn get(&self, agent: &mut Agent, path: &str) -> client::Response {
        agent.get(&self.url(path))
    }
}

/// Sleeps until `secs` after `since` (an access token's lifetime: its expiry
/// is the event waited for), plus a margin for the clocks.
fn until(since: Instant, secs: f64) {
    let at = since + Duration::from_secs_f64(secs + 1.2);
    if let Some(left) = at.checked_duration_since(Instant::now()) {
        thread::sleep(left);
    }
}

#[test]
fn a_refreshed_id_token_for_another_subject_ends_the_session() {
    let op = Op::start(
        json!({ "access_token": "at-1", "token_type": "Bearer", "expires_in": 3, "refresh_token": "rt-1" }),
        Box::new(|issuer, _| {
            json!({ "access_token": "at-2", "token_type": "Bearer", "expires_in": 600,
                    "refresh_token": "rt-2", "id_token": id_token(issuer, "mallory", None) })
        }),
    );
    let s = site(&op, Value::Null);
    let (mut agent, first) = s.login();
    let issued = Instant::now();
    assert_eq!(echoed(&first).header("x-user"), Some(USER));
    until(issued, 3.0);
    let r = s.get(&mut agent, "/after-refresh");
    assert_eq!(
        r.status,
        303,
        "a new login, not the upstream: {}",
        r.body_str()
    );
    let loc = r.header("location").unwrap_or_default();
    assert!(
        loc.starts_with(&format!("{}/authorize?", op.issuer)),
        "{loc}"
    );
    assert_eq!(op.refreshes(), vec!["rt-1".to_string()]);
    assert!(
        s.envoy
            .log()
            .contains("refreshed ID token refused: its sub is not the session's"),
        "the log says why"
    );
}

#[test]
fn an_opaque_token_without_expires_in_is_refreshed() {
    // No `expires_in`, an opaque token: assumed to live 300 s; the margin
    // makes that 3 s here.
    let op = Op::start(
        json!({ "access_token": "opaque-1", "token_type": "Bearer", "refresh_token": "rt-1" }),
        Box::new(|_, rt| {
            let n = rt.trim_start_matches("rt-").parse::<u32>().unwrap_or(0) + 1;
            json!({ "access_token": format!("opaque-{n}"), "token_type": "Bearer", "refresh_token": format!("rt-{n}") })
        }),
    );
    let s = site(&op, json!({ "expirationSafetyMargin": "297s" }));
    let (mut agent, first) = s.login();
    let issued = Instant::now();
    assert_eq!(bearer(&echoed(&first)), "opaque-1");
    until(issued, 3.0);
    let r = s.get(&mut agent, "/later");
    assert_eq!(
        bearer(&echoed(&r)),
        "opaque-2",
        "refreshed, not sent to log in"
    );
    let refreshed = Instant::now();
    assert_eq!(op.refreshes(), vec!["rt-1".to_string()]);
    until(refreshed, 3.0);
    let r = s.get(&mut agent, "/later-still");
    assert_eq!(bearer(&echoed(&r)), "opaque-3");
    assert_eq!(op.refreshes(), vec!["rt-1".to_string(), "rt-2".to_string()]);
}

#[test]
fn a_refresh_answer_without_refresh_or_id_token_keeps_the_session_s() {
    let op = Op::start(
        json!({ "access_token": "at-1", "token_type": "Bearer", "expires_in": 3, "refresh_token": "rt-1" }),
        // Okta/Keycloak-like: no rotation, no ID token, `expires_in` a string.
        Box::new(
            |_, rt| json!({ "access_token": format!("at-after-{rt}-{}", tokens::now()), "token_type": "Bearer", "expires_in": "3" }),
        ),
    );
    let s = site(&op, Value::Null);
    let (mut agent, _) = s.login();
    let issued = Instant::now();
    until(issued, 3.0);
    let r = s.get(&mut agent, "/one");
    let e = echoed(&r);
    assert!(bearer(&e).starts_with("at-after-rt-1-"));
    assert_eq!(e.header("x-user"), Some(USER), "the ID token was kept");
    let refreshed = Instant::now();
    until(refreshed, 3.0);
    let e = echoed(&s.get(&mut agent, "/two"));
    assert_eq!(e.header("x-user"), Some(USER));
    assert_eq!(
        op.refreshes(),
        vec!["rt-1".to_string(), "rt-1".to_string()],
        "the refresh token was kept and used again"
    );
}
