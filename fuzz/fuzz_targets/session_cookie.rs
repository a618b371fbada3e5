//! Opening hostile session and state cookies: the sealed-value format, the
//! cookie jar (chunks, quoting, many cookies) and the OAuth2 filter reading a
//! request whose cookies are attacker-made. Never panics.
//!
//! Input: a selector byte, then text. Selector bit 0: the text is a whole
//! `Cookie` header; else it is the value of the session cookie (or of a state
//! cookie, bit 1). Bit 2: the text is instead a byte-mutation of a valid sealed
//! value (flip, truncate, extend), which must never open unless unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::config::{Config, FilterKind};
use portcullis_core::oauth2::session::{
    cookie_header_without, write_chunked, CookieAttrs, CookieJar, MAX_SEALED_LEN,
};
use portcullis_core::oauth2::{Discovery, IdpState, OAuth2Args, SameSite, Session, SessionKeys};
use portcullis_core::request::{Headers, Request};
use std::sync::OnceLock;

const NOW: f64 = 1_700_000_000.0;
const KEY1: [u8; 32] = [1; 32];
const KEY2: [u8; 32] = [2; 32];

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let json = br#"{"clusters": {"idp.example.com:443": "idp"},
          "filters": [{"name": "login", "OAuth2": {
            "authorizationURL": "https://idp.example.com", "clientID": "c", "secret": "s",
            "protectedOrigins": [{"origin": "https://app.example.com"}],
            "clientSessionMaxIdle": "1h",
            "injectRequestHeaders": [{"name": "X-User", "value": "{{ .idToken.Claims.sub }}"}],
            "sessionKeys": ["AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="]}}]}"#;
        Config::from_json_with_env(json, &|_| None).unwrap_or_else(|_| std::process::abort())
    })
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

fn rng() -> impl FnMut(&mut [u8]) {
    let mut counter: u8 = 0;
    move |buf: &mut [u8]| {
        for b in buf.iter_mut() {
            counter = counter.wrapping_add(37);
            *b = counter;
        }
    }
}

/// A valid sealed session for `portcullis_session.login`.
fn valid_sealed() -> &'static String {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let session = Session {
            access_token: "opaque-access".to_string(),
            refresh_token: Some("rt".to_string()),
            id_token: None,
            access_expires_at: Some(NOW as u64 + 600),
            access_obtained: NOW as u64,
            created: NOW as u64 - 10,
            last_seen: NOW as u64 - 10,
            deadline: NOW as u64 + 3600,
            xsrf: "x".to_string(),
            scope: "openid".to_string(),
            userinfo: None,
            userinfo_refused: false,
        };
        let plain = serde_json::to_vec(&session).unwrap_or_default();
        SessionKeys::new(&[KEY1])
            .seal(
                "portcullis_session.login",
                NOW as u64 + 3600,
                &plain,
                &mut rng(),
            )
            .unwrap_or_default()
    })
}

fn mutate(base: &str, ops: &[u8]) -> String {
    let mut bytes = base.as_bytes().to_vec();
    for pair in ops.chunks(2).take(16) {
        let (Some(&op), Some(&arg)) = (pair.first(), pair.get(1)) else {
            break;
        };
        let len = bytes.len().max(1);
        let at = usize::from(arg) * 7 % len;
        match op % 4 {
            0 => {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << (op % 7);
                }
            }
            1 => bytes.truncate(at),
            2 => bytes.insert(at.min(bytes.len()), arg),
            _ => bytes.extend(std::iter::repeat(arg).take(usize::from(op))),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    let keys = SessionKeys::new(&[KEY1, KEY2]);

    let (cookie_header, sealed) = if selector & 4 != 0 {
        let v = mutate(valid_sealed(), rest);
        let opened = keys.open("portcullis_session.login", &v, NOW);
        if v != *valid_sealed() && opened.is_some() {
            // A changed sealed value opened: the AEAD would be broken.
            std::process::abort();
        }
        (format!("portcullis_session.login={v}"), v)
    } else if selector & 1 != 0 {
        (text.clone(), text.clone())
    } else if selector & 2 != 0 {
        (format!("portcullis_state.login.abc={text}"), text.clone())
    } else {
        (
            format!("a=b; portcullis_session.login={text}; c"),
            text.clone(),
        )
    };

    // The sealed-value format on its own.
    for name in ["portcullis_session.login", "portcullis_state.login.abc", ""] {
        if let Some(plain) = keys.open(name, &sealed, NOW) {
            let _ = serde_json::from_slice::<Session>(&plain);
        }
    }
    let _ = keys.open("portcullis_session.login", &sealed, f64::NAN);
    let _ = keys.open("portcullis_session.login", &sealed, f64::INFINITY);

    // The cookie jar: parsing, chunks, rewriting.
    let headers = Headers::new(vec![("cookie".to_string(), cookie_header.clone())]);
    let jar = CookieJar::from_headers(&headers);
    if let Some(v) = jar.chunked("portcullis_session.login") {
        if v.len() > MAX_SEALED_LEN {
            let _ = keys.open("portcullis_session.login", &v, NOW);
        }
    }
    let _ = cookie_header_without(&headers, |n| n.starts_with("portcullis_"));
    let attrs = CookieAttrs {
        secure: true,
        same_site: SameSite::Lax,
        http_only: true,
        max_age: Some(60),
    };
    let _ = write_chunked("portcullis_session.login", &text, &attrs, &jar);

    // The filter reading the request: session open, XSRF, refresh, logout, callback.
    let Some(FilterKind::OAuth2(filter)) = config().filters.first().map(|f| &f.kind) else {
        return;
    };
    let idp = IdpState {
        discovery: Some(discovery()),
        keys: None,
        ..IdpState::default()
    };
    let args = OAuth2Args::default();
    for (method, path) in [
        ("GET", "/app/x"),
        ("POST", "/app/x"),
        (
            "GET",
            "/.portcullis/oauth2/redirection-endpoint?code=c&state=abc",
        ),
        ("POST", "/.portcullis/oauth2/logout"),
    ] {
        let request = Request::from_header_pairs(vec![
            (":method".to_string(), method.to_string()),
            (":scheme".to_string(), "https".to_string()),
            (":authority".to_string(), "app.example.com".to_string()),
            (":path".to_string(), path.to_string()),
            ("cookie".to_string(), cookie_header.clone()),
            ("x-xsrf-token".to_string(), "x".to_string()),
        ]);
        let _ = filter.check(&request, &args, &idp, NOW, &mut rng());
    }
});
