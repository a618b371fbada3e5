//! FilterPolicy semantics: rule selection, conditions, onDeny/onAllow, header
//! changes accumulating along the chain.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis_core::config::Config;
use portcullis_core::jwt::KeySet;
use portcullis_core::pipeline::{Host, Journey, Step};
use portcullis_core::request::Request;
use portcullis_core::response::HeaderChange;
use std::cell::Cell;
use std::sync::Arc;

struct NoRemoteKeys {
    refresh_asked: Cell<u32>,
}

impl Host for NoRemoteKeys {
    fn keys(&self, _source: usize) -> Option<Arc<KeySet>> {
        None
    }
    fn refresh_for_unknown_key(&self, _source: usize) -> bool {
        self.refresh_asked.set(self.refresh_asked.get() + 1);
        false
    }
}

fn no_keys() -> NoRemoteKeys {
    NoRemoteKeys {
        refresh_asked: Cell::new(0),
    }
}

fn config(json: &str) -> Config {
    Config::from_json_with_env(json.as_bytes(), &|_| None).unwrap_or_else(|e| panic!("{e:?}"))
}

fn request(authority: &str, path: &str, headers: &[(&str, &str)]) -> Request {
    let mut pairs = vec![
        (":method".to_string(), "GET".to_string()),
        (":authority".to_string(), authority.to_string()),
        (":path".to_string(), path.to_string()),
        (":scheme".to_string(), "http".to_string()),
    ];
    pairs.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    Request::from_header_pairs(pairs)
}

fn run(config: &Config, mut req: Request) -> Step {
    let mut journey = Journey::new(config, &req);
    journey.run(config, &mut req, &no_keys(), 1_700_000_000.0)
}

fn status(step: &Step) -> u16 {
    match step {
        Step::Respond(r) => r.status,
        Step::Continue(_) => 200,
        other => panic!("unexpected step {other:?}"),
    }
}

/// An unsigned token (alg none) with the given claims.
fn none_token(claims: &str) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

const KEYS_A_B: &str = r#"
  {"name":"a","APIKey":{"httpHeader":"X-Key-A","keys":[{"value":"A"}]}},
  {"name":"b","APIKey":{"httpHeader":"X-Key-B","keys":[{"value":"B"}]}}"#;

#[test]
fn first_matching_rule_wins() {
    let c = config(&format!(
        r#"{{"filters":[{KEYS_A_B}],"rules":[
            {{"host":"*","path":"/public/*","filters":[]}},
            {{"host":"*","path":"/public/secret","filters":[{{"name":"a"}}]}},
            {{"host":"*","path":"*","filters":[{{"name":"b"}}]}}]}}"#
    ));
    assert_eq!(status(&run(&c, request("x", "/public/secret", &[]))), 200);
    assert_eq!(status(&run(&c, request("x", "/other", &[]))), 403);
    assert_eq!(
        status(&run(&c, request("x", "/other", &[("x-key-b", "B")]))),
        200
    );
}

#[test]
fn no_matching_rule_lets_the_request_through() {
    let c = config(&format!(
        r#"{{"filters":[{KEYS_A_B}],"rules":[{{"host":"*","path":"/api/*","filters":[{{"name":"a"}}]}}]}}"#
    ));
    assert_eq!(status(&run(&c, request("x", "/web", &[]))), 200);
}

#[test]
fn path_is_matched_without_query() {
    let c = config(&format!(
        r#"{{"filters":[{KEYS_A_B}],"rules":[{{"host":"*","path":"/api/x","filters":[{{"name":"a"}}]}}]}}"#
    ));
    assert_eq!(status(&run(&c, request("x", "/api/x?y=1", &[]))), 403);
}

#[test]
fn host_glob_matches_authority_with_or_without_port() {
    let c = config(&format!(
        r#"{{"filters":[{KEYS_A_B}],"rules":[{{"host":"*.example.com","path":"*","filters":[{{"name":"a"}}]}}]}}"#
    ));
    assert_eq!(status(&run(&c, request("api.example.com", "/", &[]))), 403);
    assert_eq!(
        status(&run(&c, request("api.example.com:8443", "/", &[]))),
        403
    );
    assert_eq!(status(&run(&c, request("API.Example.COM", "/", &[]))), 403);
    // A fully qualified name's trailing dot, with or without a port.
    assert_eq!(status(&run(&c, request("api.example.com.", "/", &[]))), 403);
    assert_eq!(
        status(&run(&c, request("API.example.com.:8443", "/", &[]))),
        403
    );
    assert_eq!(status(&run(&c, request("example.org", "/", &[]))), 200);
    let with_port = config(&format!(
        r#"{{"filters":[{KEYS_A_B}],"rules":[{{"host":"*:8443","path":"*","filters":[{{"name":"a"}}]}}]}}"#
    ));
    assert_eq!(status(&run(&with_port, request("h:8443", "/", &[]))), 403);
    assert_eq!(status(&run(&with_port, request("h:80", "/", &[]))), 200);
    assert_eq!(status(&run(&with_port, request("h.:8443", "/", &[]))), 403);
}

#[test]
fn on_deny_break_answers_with_the_denial() {
    let c = config(&format!(
        r#"{{"filters":[{KEYS_A_B}],"rules":[{{"filters":[{{"name":"a"}},{{"name":"b"}}]}}]}}"#
    ));
    match run(&c, request("x", "/", &[("x-key-b", "B")])) {
        Step::Respond(r) => {
            assert_eq!(r.status, 403);
            assert_eq!(
                r.body,
                br#"{"message":"API key not found","status_code":403}"#
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn on_deny_continue_goes_on_to_the_next_filter() {
    let c = config(&format!(
        r#"{{"filters":[{KEYS_A_B}],"rules":[{{"filters":[{{"name":"a","onDeny":"continue"}},{{"name":"b"}}]}}]}}"#
    ));
    assert_eq!(
        status(&run(&c, request("x", "/", &[("x-key-b", "B")]))),
        200
    );
    assert_eq!(status(&run(&c, request("x", "/", &[]))), 403);
}

#[test]
fn on_allow_break_skips_the_rest() {
    let c = config(&format!(
        r#"{{"filters":[{KEYS_A_B}],"rules":[{{"filters":[{{"name":"a","onAllow":"break","onDeny":"continue"}},{{"name":"b"}}]}}]}}"#
    ));
    assert_eq!(
        status(&run(&c, request("x", "/", &[("x-key-a", "A")]))),
        200
    );
    assert_eq!(status(&run(&c, request("x", "/", &[]))), 403);
}

#[test]
fn if_request_header_presence_value_regex_and_negate() {
    let c = config(&format!(
        r#"{{"filters":[{KEYS_A_B}],"rules":[
          {{"path":"/present","filters":[{{"name":"a","ifRequestHeader":{{"name":"X-Check"}}}}]}},
          {{"path":"/value","filters":[{{"name":"a","ifRequestHeader":{{"name":"X-Check","value":"yes"}}}}]}},
          {{"path":"/regex","filters":[{{"name":"a","ifRequestHeader":{{"name":"X-Check","valueRegex":"y.s"}}}}]}},
          {{"path":"/negate","filters":[{{"name":"a","ifRequestHeader":{{"name":"X-Check","value":"yes","negate":true}}}}]}}]}}"#
    ));
    let s = |path: &str, h: &[(&str, &str)]| status(&run(&c, request("x", path, h)));
    assert_eq!(s("/present", &[]), 200, "condition false: filter skipped");
    assert_eq!(s("/present", &[("x-check", "")]), 403);
    assert_eq!(s("/value", &[("x-check", "no")]), 200);
    assert_eq!(s("/value", &[("x-check", "yes")]), 403);
    assert_eq!(s("/regex", &[("x-check", "yes")]), 403);
    assert_eq!(
        s("/regex", &[("x-check", "yesss")]),
        200,
        "regex matches the whole value"
    );
    assert_eq!(s("/negate", &[("x-check", "yes")]), 200);
    assert_eq!(s("/negate", &[]), 403);
}

const NONE_JWT: &str = r#"{"name":"jwt","JWT":{"validAlgorithms":["none"],
   "injectRequestHeaders":[{"name":"X-Sub","value":"{{ .token.Claims.sub }}"},
                           {"name":"X-Seen-Sub","value":"{{ .httpRequestHeader.Get \"X-Sub\" }}"}]}}"#;

#[test]
fn injected_headers_are_set_and_client_copies_removed() {
    let c = config(&format!(
        r#"{{"filters":[{NONE_JWT}],"rules":[{{"filters":[{{"name":"jwt"}}]}}]}}"#
    ));
    let token = none_token(r#"{"sub":"alice"}"#);
    let auth = format!("Bearer {token}");
    match run(
        &c,
        request("x", "/", &[("authorization", &auth), ("X-Sub", "mallory")]),
    ) {
        Step::Continue(changes) => {
            assert_eq!(
                changes.first(),
                Some(&HeaderChange::remove("x-sub")),
                "client copy removed first"
            );
            assert!(changes.contains(&HeaderChange::set("x-sub", "alice")));
            // Templates read the request as the client sent it (as in AES), so
            // a template may pass a client value on on purpose.
            assert!(changes.contains(&HeaderChange::set("x-seen-sub", "mallory")));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_copies_are_removed_even_when_the_filter_denies_and_the_chain_goes_on() {
    let c = config(&format!(
        r#"{{"filters":[{NONE_JWT},{KEYS_A_B}],"rules":[{{"filters":[{{"name":"jwt","onDeny":"continue"}},{{"name":"a"}}]}}]}}"#
    ));
    match run(
        &c,
        request("x", "/", &[("x-sub", "mallory"), ("x-key-a", "A")]),
    ) {
        Step::Continue(changes) => assert_eq!(changes, vec![HeaderChange::remove("x-sub")]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn header_changes_accumulate_along_the_chain() {
    // The second filter's condition sees the header the first one injected.
    let c = config(&format!(
        r#"{{"filters":[{NONE_JWT},{KEYS_A_B}],"rules":[{{"filters":[{{"name":"jwt"}},{{"name":"a","ifRequestHeader":{{"name":"X-Sub","value":"alice"}}}}]}}]}}"#
    ));
    let alice = format!("Bearer {}", none_token(r#"{"sub":"alice"}"#));
    let bob = format!("Bearer {}", none_token(r#"{"sub":"bob"}"#));
    assert_eq!(
        status(&run(&c, request("x", "/", &[("authorization", &alice)]))),
        403
    );
    assert_eq!(
        status(&run(&c, request("x", "/", &[("authorization", &bob)]))),
        200
    );
}

#[test]
fn remote_keys_not_loaded_makes_the_request_wait_then_503() {
    let c = config(
        r#"{"filters":[{"name":"jwt","JWT":{"jwksURI":"http://idp/jwks"}}],"rules":[{"filters":[{"name":"jwt"}]}]}"#,
    );
    let token = none_token(r#"{"sub":"alice"}"#);
    let auth = format!("Bearer {token}");
    let mut req = request("x", "/", &[("authorization", &auth)]);
    let mut journey = Journey::new(&c, &req);
    assert_eq!(
        journey.run(&c, &mut req, &no_keys(), 0.0),
        Step::WaitForKeys { source: 0 }
    );
    match journey.keys_timed_out(&c, &mut req, &no_keys(), 3.0) {
        Step::Respond(r) => {
            assert_eq!(r.status, 503);
            assert_eq!(r.header("www-authenticate"), None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_token_with_spaces_is_400_before_keys_and_whatever_the_cache_holds() {
    use portcullis_core::jwt::cache::TokenCache;
    use std::cell::RefCell;
    struct Cached(RefCell<TokenCache>);
    impl Host for Cached {
        fn keys(&self, _source: usize) -> Option<Arc<KeySet>> {
            None
        }
        fn refresh_for_unknown_key(&self, _source: usize) -> bool {
            false
        }
        fn token_cache(&self) -> Option<&RefCell<TokenCache>> {
            Some(&self.0)
        }
    }
    // Remote keys never loaded: the malformed header still answers 400.
    let remote = config(
        r#"{"filters":[{"name":"jwt","JWT":{"jwksURI":"http://idp/jwks"}}],"rules":[{"filters":[{"name":"jwt"}]}]}"#,
    );
    let token = none_token(r#"{"sub":"alice"}"#);
    let spaced = format!("Bearer {token} x");
    assert_eq!(
        status(&run(
            &remote,
            request("x", "/", &[("authorization", &spaced)])
        )),
        400
    );
    // A cached token followed by more text is not a cache hit: 400.
    let inline = config(&format!(
        r#"{{"filters":[{NONE_JWT}],"rules":[{{"filters":[{{"name":"jwt"}}]}}]}}"#
    ));
    let host = Cached(RefCell::new(TokenCache::with_budget(1 << 20)));
    let go = |auth: &str| {
        let mut req = request("x", "/", &[("authorization", auth)]);
        let mut journey = Journey::new(&inline, &req);
        status(&journey.run(&inline, &mut req, &host, 1_700_000_000.0))
    };
    let plain = format!("Bearer {token}");
    assert_eq!(go(&plain), 200);
    assert_eq!(go(&plain), 200);
    assert_eq!(host.0.borrow().stats.hits, 1);
    assert_eq!(go(&spaced), 400);
    assert_eq!(go(&format!("Bearer {token}\u{2003}x")), 400);
}

// ---- lean requests: a few headers fetched, the whole request for anything else

#[test]
fn lean_headers_only_for_a_catch_all_first_rule_of_jwt_and_mtls_filters() {
    let lean = |json: &str| config(json).lean_headers;
    let jwt = r#"{"name":"jwt","JWT":{"validAlgorithms":["none"]}}"#;
    assert_eq!(
        lean(&format!(
            r#"{{"filters":[{jwt}],"rules":[{{"host":"*","path":"*","filters":[{{"name":"jwt"}}]}}]}}"#
        )),
        Some(vec!["authorization".to_string()])
    );
    // Host and path default to `*`.
    assert_eq!(
        lean(&format!(
            r#"{{"filters":[{jwt}],"rules":[{{"filters":[{{"name":"jwt","arguments":{{"scope":["a"]}}}}]}}]}}"#
        )),
        Some(vec!["authorization".to_string()])
    );
    for not_lean in [
        // the rule depends on the path or host
        format!(r#"{{"filters":[{jwt}],"rules":[{{"path":"/api/*","filters":[{{"name":"jwt"}}]}}]}}"#),
        format!(r#"{{"filters":[{jwt}],"rules":[{{"host":"a.example","filters":[{{"name":"jwt"}}]}}]}}"#),
        // a condition reads a header
        format!(r#"{{"filters":[{jwt}],"rules":[{{"filters":[{{"name":"jwt","ifRequestHeader":{{"name":"x"}}}}]}}]}}"#),
        // an injected header must be stripped from every client request
        format!(r#"{{"filters":[{NONE_JWT}],"rules":[{{"filters":[{{"name":"jwt"}}]}}]}}"#),
        // an API key filter reads its own header
        r#"{"filters":[{"name":"k","APIKey":{"keys":[{"value":"s"}]}}],"rules":[{"filters":[{"name":"k"}]}]}"#.to_string(),
        // no rules
        r#"{}"#.to_string(),
    ] {
        assert_eq!(lean(&not_lean), None, "{not_lean}");
    }
}

#[test]
fn a_lean_request_passes_on_a_cache_hit_and_is_redone_whole_otherwise() {
    use portcullis_core::jwt::cache::TokenCache;
    use std::cell::RefCell;
    struct Cached(RefCell<TokenCache>);
    impl Host for Cached {
        fn keys(&self, _source: usize) -> Option<Arc<KeySet>> {
            None
        }
        fn refresh_for_unknown_key(&self, _source: usize) -> bool {
            panic!("a lean request never asks for a refresh")
        }
        fn token_cache(&self) -> Option<&RefCell<TokenCache>> {
            Some(&self.0)
        }
    }
    let c = config(
        r#"{"filters":[{"name":"jwt","JWT":{"validAlgorithms":["none"]}}],
            "rules":[{"filters":[{"name":"jwt","arguments":{"scope":["read"]}}]}]}"#,
    );
    assert!(c.lean_headers.is_some());
    let host = Cached(RefCell::new(TokenCache::with_budget(1 << 20)));
    let now = 1_700_000_000.0;
    let lean = |auth: Option<&str>| {
        let pairs = auth
            .map(|a| vec![("authorization".to_string(), a.to_string())])
            .unwrap_or_default();
        let mut req = Request::lean(pairs);
        let mut journey = Journey::new(&c, &req);
        journey.run(&c, &mut req, &host, now)
    };
    let full = |auth: &str| {
        let mut req = request(
            "x",
            "/",
            &[("authorization", auth), ("x-request-id", "rid-1")],
        );
        let mut journey = Journey::new(&c, &req);
        journey.run(&c, &mut req, &host, now)
    };
    let good = format!("Bearer {}", none_token(r#"{"scope":"read write"}"#));
    // Not cached yet: verified in the lean run, passed and kept.
    assert_eq!(lean(Some(&good)), Step::Continue(vec![]));
    assert_eq!(host.0.borrow().len(), 1);
    assert_eq!(lean(Some(&good)), Step::Continue(vec![]));
    assert_eq!(host.0.borrow().stats.hits, 1);
    // No token, a malformed header, a token lacking the scope, a token the
    // policy refuses: each is answered from the whole request (templates and
    // logs see all of it).
    assert_eq!(lean(None), Step::NeedFullRequest);
    assert_eq!(lean(Some("Bearer a b")), Step::NeedFullRequest);
    let unscoped = format!("Bearer {}", none_token(r#"{"scope":"write"}"#));
    assert_eq!(lean(Some(&unscoped)), Step::NeedFullRequest);
    let expired = format!("Bearer {}", none_token(r#"{"exp":1000}"#));
    assert_eq!(lean(Some(&expired)), Step::NeedFullRequest);
    assert_eq!(status(&full(&expired)), 401);
    match full(&unscoped) {
        Step::Respond(r) => {
            assert_eq!(r.status, 403);
            assert!(String::from_utf8_lossy(&r.body).contains("insufficient scope"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lean_request_for_remote_keys_not_loaded_is_redone_whole_without_waiting() {
    let c = config(
        r#"{"filters":[{"name":"jwt","JWT":{"jwksURI":"http://idp/jwks"}}],"rules":[{"filters":[{"name":"jwt"}]}]}"#,
    );
    assert!(c.lean_headers.is_some());
    let auth = format!("Bearer {}", none_token(r#"{"sub":"alice"}"#));
    let mut req = Request::lean(vec![("authorization".to_string(), auth)]);
    let mut journey = Journey::new(&c, &req);
    assert_eq!(
        journey.run(&c, &mut req, &no_keys(), 0.0),
        Step::NeedFullRequest
    );
}

/// An OAuth2 filter whose token names a `kid` the IdP's set lacks: one
/// rate-limited refresh of the IdP's set, waited for once (the JWT filter's
/// mechanism); the filter's own refusal when no refresh may start, when it
/// times out, or when the fresh set still lacks the key. The journey runs the
/// filter itself with what the host holds of the IdP (`Host::idp`).
#[test]
fn an_oauth2_unknown_key_waits_once_for_the_idps_keys() {
    use portcullis_core::callout::CalloutAnswer;
    use portcullis_core::oauth2::{Discovery, OAuth2Event};
    use portcullis_core::pipeline::{IdpView, Outcome};
    struct Idp {
        refresh_allowed: bool,
        refresh_asked: Cell<u32>,
        discovery: Arc<Discovery>,
        keys: Arc<KeySet>,
    }
    impl Host for Idp {
        fn keys(&self, _source: usize) -> Option<Arc<KeySet>> {
            None
        }
        fn refresh_for_unknown_key(&self, source: usize) -> bool {
            assert_eq!(source, 7, "the IdP's set");
            self.refresh_asked.set(self.refresh_asked.get() + 1);
            self.refresh_allowed
        }
        fn fill_random(&self, buf: &mut [u8]) -> bool {
            buf.fill(9);
            true
        }
        fn idp(&self, filter: usize) -> Option<IdpView<'_>> {
            assert_eq!(filter, 0);
            Some(IdpView {
                discovery: Some(self.discovery.clone()),
                keys: Some(self.keys.clone()),
                keys_source: Some(7),
                userinfo: None,
                session_cache: None,
            })
        }
    }
    let c = config(
        r#"{"filters":[{"name":"login","OAuth2":{"authorizationURL":"https://idp.example",
            "clientID":"app","secret":"s","protectedOrigins":[{"origin":"http://x"}],
            "sessionKeys":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]}}],
           "rules":[{"filters":[{"name":"login"}]}]}"#,
    );
    let discovery = Discovery::parse_for(
        br#"{"issuer":"https://idp.example","authorization_endpoint":"https://idp.example/auth",
            "token_endpoint":"https://idp.example/token","jwks_uri":"https://idp.example/jwks",
            "response_types_supported":["code"],"subject_types_supported":["public"],
            "id_token_signing_alg_values_supported":["RS256"]}"#,
        "https://idp.example",
    )
    .unwrap();
    let (keys, _) = KeySet::from_json(
        br#"{"keys":[{"kty":"RSA","kid":"k1","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}]}"#,
    )
    .unwrap();
    let idp = |refresh_allowed| Idp {
        refresh_allowed,
        refresh_asked: Cell::new(0),
        discovery: Arc::new(discovery.clone()),
        keys: Arc::new(keys.clone()),
    };
    // The login: the state cookie and parameter the callback comes with.
    let host = idp(true);
    let mut req = request("x", "/", &[]);
    let mut journey = Journey::new(&c, &req);
    let Step::Respond(login) = journey.run(&c, &mut req, &host, 0.0) else {
        panic!("a login redirect")
    };
    // For metrics: a login started, and the redirect is no denial.
    assert_eq!(
        journey.take_outcomes(),
        [
            (0, Outcome::OAuth2(OAuth2Event::LoginStarted)),
            (0, Outcome::Answered)
        ]
    );
    let location = login.header("location").expect("a login redirect");
    let param = |name: &str| {
        location
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .map(|v| v.replace("%2F", "/").replace("%3A", ":"))
            .unwrap()
    };
    let (state, redirect_uri) = (param("state"), param("redirect_uri"));
    let callback_path = redirect_uri.strip_prefix("http://x").unwrap().to_string();
    let cookies: Vec<String> = login
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .filter_map(|(_, v)| {
            std::str::from_utf8(v)
                .ok()?
                .split(';')
                .next()
                .map(String::from)
        })
        .collect();
    let cookie = cookies.join("; ");
    // The token endpoint answers an ID token signed with a key the set lacks.
    let id_token = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k2"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"iss":"https://idp.example","aud":"app","sub":"alice"}"#),
        URL_SAFE_NO_PAD.encode("signature")
    );
    let tokens = format!(r#"{{"access_token":"a","token_type":"Bearer","id_token":"{id_token}"}}"#);
    let answer = || CalloutAnswer::Http {
        status: 200,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: tokens.clone().into_bytes(),
    };
    let callback = |host: &Idp| {
        let path = format!("{callback_path}?code=c&state={state}");
        let mut req = request("x", &path, &[("cookie", &cookie)]);
        let mut journey = Journey::new(&c, &req);
        let Step::Callout(_) = journey.run(&c, &mut req, host, 0.0) else {
            panic!("the code exchange")
        };
        let step = journey.on_callout_answer(&c, &mut req, answer(), host, 0.0);
        (journey, req, step)
    };
    // A refresh starts: wait for the set; run again when it loads; the key is
    // still missing: the filter's refusal, no second wait.
    let (mut journey, mut req, step) = callback(&host);
    assert_eq!(step, Step::WaitForKeys { source: 7 });
    assert_eq!(status(&journey.run(&c, &mut req, &host, 0.5)), 401);
    assert_eq!(host.refresh_asked.get(), 1);
    // The wait ends (timed out, or the refresh failed): the refusal at once.
    let (mut journey, mut req, step) = callback(&host);
    assert_eq!(step, Step::WaitForKeys { source: 7 });
    assert_eq!(
        status(&journey.keys_timed_out(&c, &mut req, &host, 3.0)),
        401
    );
    let refused = [
        (0, Outcome::OAuth2(OAuth2Event::LoginRefused)),
        (0, Outcome::Denied(401)),
    ];
    assert_eq!(journey.take_outcomes(), refused);
    // Rate-limited: no wait at all.
    let host = idp(false);
    let (mut journey, _, step) = callback(&host);
    assert_eq!(status(&step), 401);
    assert_eq!(host.refresh_asked.get(), 1);
    assert_eq!(journey.take_outcomes(), refused);
}

/// AES's default `bodyTemplate`, `{{ . | json "" }}`, marshals AES's error
/// struct: `message` and `status_code` only (`request_id` on a 5xx), never the
/// template-only aliases; `.error.ValidationError` is nil when no token parsed.
#[test]
fn jwt_error_body_json_shows_what_aes_shows() {
    let c = config(
        r#"{"filters":[
          {"name":"j","JWT":{"validAlgorithms":["none"],"errorResponse":{"bodyTemplate":"{{ . | json \"\" }}"}}},
          {"name":"v","JWT":{"validAlgorithms":["none"],"errorResponse":{"bodyTemplate":"{{ if .error.ValidationError }}{{ .error.ValidationError.Errors }}{{ else }}nil{{ end }}"}}}],
          "rules":[{"path":"/j","filters":[{"name":"j"}]},{"path":"/v","filters":[{"name":"v"}]}]}"#,
    );
    let body = |step: Step| match step {
        Step::Respond(r) => String::from_utf8(r.body).unwrap(),
        other => panic!("unexpected step {other:?}"),
    };
    let no_token = body(run(&c, request("h", "/j", &[("x-request-id", "r1")])));
    // json "" is json.MarshalIndent(VALUE, "", "\t"), as AES calls it.
    assert!(
        no_token.starts_with("{\n\t\"message\": \"")
            && no_token.ends_with("\",\n\t\"status_code\": 401\n}"),
        "{no_token}"
    );
    for hidden in ["httpStatus", "requestId", "request_id", "error"] {
        let key = format!("\"{hidden}\":");
        assert!(!no_token.contains(&key), "{hidden} in {no_token}");
    }
    // A malformed header and a missing token: nil; a bad token: its bits.
    assert_eq!(body(run(&c, request("h", "/v", &[]))), "nil");
    assert_eq!(
        body(run(
            &c,
            request("h", "/v", &[("authorization", "Bearer a b")])
        )),
        "nil"
    );
    assert_eq!(
        body(run(
            &c,
            request("h", "/v", &[("authorization", "Bearer x.y")])
        )),
        "1"
    );
}

/// With `include_body`, the headers go upstream before the body is read, so an
/// upstream can answer an undecided journey: held while the check is under
/// way; refused when the body has not arrived (Envoy drops request body after
/// a complete answer: the check can never be made); passed when the headers
/// never went (a response Envoy made itself).
#[test]
fn an_upstream_answer_before_the_body_check_decides_is_held_or_refused() {
    use portcullis_core::pipeline::ResponseStep;
    let c = config(
        r#"{"clusters": {"auth:3000": "auth"},
            "filters": [{"name": "body", "External": {"auth_service": "http://auth:3000",
                "include_body": {"max_bytes": 16, "allow_partial": true},
                "status_on_error": {"code": 503}}}],
            "rules": [{"host": "*", "path": "*", "filters": [{"name": "body"}]}]}"#,
    );
    let start = |req: &mut Request| {
        let mut journey = Journey::new(&c, req);
        let step = journey.run(&c, req, &no_keys(), 1_700_000_000.0);
        assert_eq!(step, Step::NeedBody { max_bytes: 16 });
        journey
    };
    // Before the headers go, nothing of this request reached the upstream.
    let mut req = request("example.com", "/upload", &[]);
    let mut journey = start(&mut req);
    assert_eq!(journey.on_response_headers(&c), ResponseStep::Pass);
    assert!(!journey.response_held());
    // The headers went, the body has not come: refused with status_on_error.
    journey.release_headers(&c, &mut req);
    match journey.on_response_headers(&c) {
        ResponseStep::Respond(r) => {
            assert_eq!(r.status, 503);
            assert_eq!(
                String::from_utf8_lossy(&r.body),
                r#"{"message":"the request body could not be checked: the upstream answered before it arrived","status_code":503}"#
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!journey.response_held());
    assert_eq!(
        journey.take_outcomes(),
        vec![(0, portcullis_core::pipeline::Outcome::Denied(503))]
    );
    // The body came, the check is under way: held until it decides.
    let mut req = request("example.com", "/upload", &[]);
    let mut journey = start(&mut req);
    journey.release_headers(&c, &mut req);
    journey.provide_body(b"payload".to_vec(), true);
    let step = journey.run(&c, &mut req, &no_keys(), 1_700_000_000.0);
    assert!(matches!(step, Step::Callout(_)), "{step:?}");
    assert_eq!(journey.on_response_headers(&c), ResponseStep::Hold);
    assert!(journey.response_held());
}

#[test]
fn a_path_read_as_sent_and_decoded_never_escapes_a_check() {
    let c = config(&format!(
        r#"{{"filters":[{KEYS_A_B}],"rules":[
            {{"host":"*","path":"/public/*","filters":[]}},
            {{"host":"*","path":"/api/*","filters":[{{"name":"a"}}]}},
            {{"host":"*","path":"/admin/*","filters":[{{"name":"b"}}]}}]}}"#
    ));
    let code = |path: &str, headers: &[(&str, &str)]| status(&run(&c, request("x", path, headers)));
    // Envoy routes the path as sent (under /api/); a decoding upstream cuts
    // `;` parameters and dot segments (under /public/): the check applies.
    for path in [
        "/api/..%3B/public/x",
        "/api/..;/public/x",
        "/api/.%2e;/public/x",
        "/public/..;/api/x",
        "/public/..%2Fapi/x",
        "/public/%2e%2e/api/x",
    ] {
        assert_eq!(code(path, &[]), 403, "{path}");
        assert_eq!(code(path, &[("x-key-a", "A")]), 200, "{path}");
    }
    // Two rules that both check: which one the upstream serves is unknown.
    for path in ["/api/..;/admin/x", "/admin/..%2Fapi/x"] {
        assert_eq!(
            code(path, &[("x-key-a", "A"), ("x-key-b", "B")]),
            400,
            "{path}"
        );
    }
    // Encodings that stay under one rule are that rule's.
    assert_eq!(code("/api/v4/group%2Fproject", &[("x-key-a", "A")]), 200);
    assert_eq!(code("/api/caf%C3%A9", &[]), 403);
    assert_eq!(code("/public/a%20b", &[]), 200);
    assert_eq!(code("/public/./x", &[]), 200);
}
