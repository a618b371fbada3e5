//! The OAuth2 callback with hostile query strings, and hostile token-endpoint
//! answers, through the filter's sans-IO API: never panics.
//!
//! A login is started once (deterministic randomness) to get a genuine state
//! cookie and `state`. Input: a selector byte, then `query \n answer-body`.
//! Selector bit 0: the genuine `state=` is put first in the query (so the code
//! exchange is reached); bits 1-2: the token endpoint's status (200, 400, 500,
//! or a failed callout); bit 3: the answer is JSON built around the body as an
//! `id_token` / `access_token`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::config::{Config, FilterKind};
use portcullis_core::external::CalloutAnswer;
use portcullis_core::jwt::KeySet;
use portcullis_core::oauth2::{Discovery, IdpState, OAuth2Args, OAuth2Filter, OAuth2Step};
use portcullis_core::request::Request;
use std::sync::OnceLock;

const NOW: f64 = 1_700_000_000.0;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let json = br#"{"clusters": {"idp.example.com:443": "idp"},
          "filters": [{"name": "login", "OAuth2": {
            "authorizationURL": "https://idp.example.com", "clientID": "c", "secret": "s",
            "protectedOrigins": [{"origin": "https://app.example.com", "includeSubdomains": true}],
            "injectRequestHeaders": [{"name": "X-User", "value": "{{ .idToken.Claims.sub }}"}],
            "sessionKeys": ["AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="]}}]}"#;
        Config::from_json_with_env(json, &|_| None).unwrap_or_else(|_| std::process::abort())
    })
}

fn filter() -> Option<&'static OAuth2Filter> {
    match config().filters.first().map(|f| &f.kind) {
        Some(FilterKind::OAuth2(f)) => Some(f),
        _ => None,
    }
}

fn discovery() -> &'static Discovery {
    static D: OnceLock<Discovery> = OnceLock::new();
    D.get_or_init(|| Discovery {
        issuer: "https://idp.example.com".to_string(),
        authorization_endpoint: "https://idp.example.com/authorize".to_string(),
        token_endpoint: "https://idp.example.com/token".to_string(),
        userinfo_endpoint: Some("https://idp.example.com/userinfo".to_string()),
        end_session_endpoint: None,
        jwks_uri: "https://idp.example.com/jwks".to_string(),
        iss_parameter_supported: false,
    })
}

fn keys() -> &'static KeySet {
    static K: OnceLock<KeySet> = OnceLock::new();
    K.get_or_init(|| {
        KeySet::from_json(include_bytes!("../../testdata/jwks.json"))
            .map(|(k, _)| k)
            .unwrap_or_default()
    })
}

fn rng() -> impl FnMut(&mut [u8]) {
    let mut counter: u8 = 0;
    move |buf: &mut [u8]| {
        for b in buf.iter_mut() {
            counter = counter.wrapping_add(37);
            *b = counter;
        }
    }
}

fn request(path: &str, cookie: &str) -> Request {
    Request::from_header_pairs(vec![
        (":method".to_string(), "GET".to_string()),
        (":scheme".to_string(), "https".to_string()),
        (":authority".to_string(), "app.example.com".to_string()),
        (":path".to_string(), path.to_string()),
        ("cookie".to_string(), cookie.to_string()),
    ])
}

fn idp() -> IdpState<'static> {
    IdpState {
        discovery: Some(discovery()),
        keys: Some(keys()),
        ..IdpState::default()
    }
}

/// (state cookie `name=value`, state) of one started login.
fn login() -> &'static (String, String) {
    static L: OnceLock<(String, String)> = OnceLock::new();
    L.get_or_init(|| {
        let mut out = (String::new(), String::new());
        let Some(f) = filter() else { return out };
        let step = f.check(
            &request("/app/x", ""),
            &OAuth2Args::default(),
            &idp(),
            NOW,
            &mut rng(),
        );
        if let OAuth2Step::Respond(r) = step {
            for (n, v) in &r.headers {
                let v = String::from_utf8_lossy(v);
                if n.eq_ignore_ascii_case("set-cookie") && v.starts_with("portcullis_state.") {
                    out.0 = v.split(';').next().unwrap_or_default().to_string();
                }
                if n.eq_ignore_ascii_case("location") {
                    if let Some(q) = v.split_once('?').map(|(_, q)| q) {
                        for p in q.split('&') {
                            if let Some(s) = p.strip_prefix("state=") {
                                out.1 = s.to_string();
                            }
                        }
                    }
                }
            }
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some(f) = filter() else { return };
    let text = String::from_utf8_lossy(rest);
    let (query, body) = text.split_once('\n').unwrap_or((&text, ""));
    let (cookie, state) = login();
    let query = if selector & 1 != 0 {
        format!("state={state}&{query}")
    } else {
        query.to_string()
    };
    let req = request(
        &format!("/.portcullis/oauth2/redirection-endpoint?{query}"),
        cookie,
    );
    let args = OAuth2Args::default();
    let mut step = f.check(&req, &args, &idp(), NOW, &mut rng());
    // Code exchange, then possibly userinfo: bounded.
    for _ in 0..3 {
        let OAuth2Step::Callout { pending, .. } = step else {
            return;
        };
        let body_bytes = if selector & 8 != 0 {
            serde_json::json!({"access_token": body, "id_token": body, "token_type": "Bearer",
                "expires_in": selector, "refresh_token": body, "scope": body})
            .to_string()
            .into_bytes()
        } else {
            body.as_bytes().to_vec()
        };
        let answer = match (selector >> 1) & 3 {
            0 => CalloutAnswer::Http {
                status: 200,
                headers: vec![("content-type".to_string(), b"application/json".to_vec())],
                body: body_bytes,
            },
            1 => CalloutAnswer::Http {
                status: 400,
                headers: vec![],
                body: body_bytes,
            },
            2 => CalloutAnswer::Http {
                status: 500,
                headers: vec![("content-type".to_string(), body.as_bytes().to_vec())],
                body: body_bytes,
            },
            _ => CalloutAnswer::Failed {
                reason: body.to_string(),
            },
        };
        step = f.on_answer(
            &req,
            &args,
            pending.answered(answer),
            &idp(),
            NOW,
            &mut rng(),
        );
    }
});
