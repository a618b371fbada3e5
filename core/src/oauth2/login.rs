//! The login: an unauthenticated request answered with a redirect to the IdP's authorization endpoint (state, PKCE, nonce in a sealed state cookie) or a 401.

use super::encoding::{b64url, form_encode, random_token};
use super::events::{note, OAuth2Event};
use super::session::{CookieAttrs, CookieJar, SameSite};
use super::session_store::{clear_session, session_error};
use super::FlowContext;
use super::{loops, OAuth2Filter, OAuth2Step, Origin, LOGIN_STATE_LIFETIME, MAX_PENDING_LOGINS};
use crate::response::Response;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Length of the state id in the state cookie's name.
pub(super) const STATE_ID_LEN: usize = 12;

/// What a login in progress remembers (sealed in its state cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LoginState {
    #[serde(rename = "st")]
    pub(super) state: String,
    #[serde(rename = "v")]
    pub(super) verifier: String,
    #[serde(rename = "n")]
    pub(super) nonce: String,
    /// The original URL (on the request's protected origin).
    #[serde(rename = "u")]
    pub(super) url: String,
    /// The scopes requested (space-separated).
    #[serde(rename = "sc")]
    pub(super) scope: String,
    #[serde(rename = "ss")]
    pub(super) same_site: SameSite,
}

/// Scopes never required of a session (AES: `offline_access` may be refused).
pub(super) fn optional_scope(scope: &str) -> bool {
    scope == "openid" || scope == "offline_access"
}

pub(super) fn unauthenticated(
    cx: &FlowContext<'_>,
    origin: &Origin,
    jar: &CookieJar,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let (f, request, args, _, _) = cx.parts();
    let had_session = jar.chunked(&f.cookie_base("session")).is_some();
    let stale = if had_session {
        clear_session(f, origin, jar)
    } else {
        Vec::new()
    };
    let instead = args.instead_of_redirect.as_ref().filter(|i| {
        i.condition
            .as_ref()
            .is_none_or(|c| c.matches(&request.headers))
    });
    let status = if let Some(i) = instead {
        Some(i.status)
    } else if background_request(&request.method, &request.headers) {
        Some(args.instead_of_redirect.as_ref().map_or(401, |i| i.status))
    } else {
        None
    };
    let mut response = match status {
        Some(status) => {
            let mut r = Response::json_error(
                status,
                "authentication required: no valid session (log in with a browser first)",
            );
            if status == 401 {
                // RFC 9110 §11.6.1: a 401 names its scheme; this one says
                // where a browser signs in (the origin, navigated to).
                r.push_header(
                    "www-authenticate",
                    format!(
                        "OAuth2 realm=\"{}\", login_uri=\"{}/\"",
                        f.name.replace(['"', '\\'], ""),
                        origin.url()
                    ),
                );
            }
            r
        }
        None => login_redirect(cx, origin, jar, random),
    };
    for c in stale {
        response.push_header("set-cookie", c);
    }
    OAuth2Step::Respond(response)
}

/// Whether a request is one a browser cannot follow to an IdP's page: a
/// method other than GET/HEAD (a replayed POST would lose its body); `fetch`
/// or XHR (`Sec-Fetch-Mode` other than `navigate`, `Sec-Fetch-Dest: empty`,
/// `X-Requested-With: XMLHttpRequest`; Android WebViews send an app id there
/// on navigations); an `Accept` that names neither HTML nor `*/*` (an
/// API client; `*/*` alone is what curl and many navigating clients send);
/// a protocol `Upgrade` (WebSocket). Such a request gets a 401 (or
/// `insteadOfRedirect`'s status), never a login redirect or a state cookie,
/// as oauth2-proxy answers them and Envoy's `deny_redirect_matcher` allows.
pub(super) fn background_request(method: &str, headers: &crate::request::Headers) -> bool {
    let is = |name: &str, f: &dyn Fn(&str) -> bool| headers.get(name).is_some_and(|v| f(v.trim()));
    let navigation = matches!(method.to_ascii_uppercase().as_str(), "GET" | "HEAD");
    let accepts_html = |v: &str| {
        v.split(',').any(|range| {
            let media = range.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("text/html")
                || media.eq_ignore_ascii_case("application/xhtml+xml")
                || media == "*/*"
                || media.eq_ignore_ascii_case("text/*")
        })
    };
    !navigation
        || is("sec-fetch-mode", &|v| !v.eq_ignore_ascii_case("navigate"))
        || is("sec-fetch-dest", &|v| v.eq_ignore_ascii_case("empty"))
        || is("x-requested-with", &|v| {
            v.eq_ignore_ascii_case("xmlhttprequest")
        })
        || is("accept", &|v| !v.is_empty() && !accepts_html(v))
        || headers.contains("upgrade")
}

pub(super) fn login_redirect(
    cx: &FlowContext<'_>,
    origin: &Origin,
    jar: &CookieJar,
    random: &mut dyn FnMut(&mut [u8]),
) -> Response {
    let (f, request, args, idp, now) = cx.parts();
    let Some(discovery) = idp.discovery else {
        return f.idp_unavailable();
    };
    // No login that could never hold: say what is wrong instead.
    if let Some(reason) = f.unusable_with(discovery) {
        log::warn!("{reason}");
        return f.unusable_page(&reason);
    }
    let counted = match loops::count_login(f, origin, jar, now) {
        Ok(cookie) => cookie,
        Err(page) => return page,
    };
    let state = random_token(random, 32);
    let verifier = random_token(random, 32);
    let nonce = random_token(random, 32);
    let challenge = b64url(&Sha256::digest(verifier.as_bytes()));
    let mut scopes: Vec<&str> = vec!["openid"];
    for s in &args.scopes {
        if !scopes.contains(&s.as_str()) {
            scopes.push(s);
        }
    }
    let scope = scopes.join(" ");
    let redirect_uri = format!("{}{}", origin.url(), f.callback_path);
    let login = LoginState {
        state: state.clone(),
        verifier,
        nonce: nonce.clone(),
        url: format!("{}{}", origin.url(), return_path(&request.path)),
        scope: scope.clone(),
        same_site: args.same_site,
    };
    let state_base = f.cookie_base("state");
    let state_name = format!(
        "{state_base}.{}",
        state.get(..STATE_ID_LEN).unwrap_or(&state)
    );
    let expires = (now.max(0.0) as u64).saturating_add(LOGIN_STATE_LIFETIME);
    let Some(sealed) = serde_json::to_vec(&login)
        .ok()
        .and_then(|plain| f.keys.seal(&state_name, expires, &plain, random))
    else {
        return session_error();
    };
    let attrs = state_attrs(f, origin, LOGIN_STATE_LIFETIME);
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &f.client_id),
        ("redirect_uri", &redirect_uri),
        ("scope", &scope),
        ("state", &state),
        ("nonce", &nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in &f.extra_parameters {
        params.push((k, v));
    }
    let endpoint = &discovery.authorization_endpoint;
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    let location = format!("{endpoint}{separator}{}", form_encode(params));
    let mut response = redirect(&location);
    // Bound the logins in progress: past the limit, forget the oldest (the
    // sealed value carries its expiry in clear, and all have one lifetime).
    let mut existing: Vec<(u64, &str)> = jar
        .names()
        .filter(|n| f.owns_state_cookie(n))
        .map(|n| (jar.get(n).map_or(0, sealed_expiry), n))
        .collect();
    if existing.len() >= MAX_PENDING_LOGINS {
        existing.sort_unstable();
        let drop = existing.len() + 1 - MAX_PENDING_LOGINS;
        for (_, n) in existing.into_iter().take(drop) {
            response.push_header("set-cookie", attrs.clear(n));
        }
    }
    response.push_header("set-cookie", attrs.set(&state_name, &sealed));
    if let Some(counted) = counted {
        response.push_header("set-cookie", counted);
    }
    note(idp.events, OAuth2Event::LoginStarted);
    response
}

/// The expiry (Unix seconds) a sealed value carries in clear
/// (`<version>.<expires>.<body>`); 0 when it is not one (dropped first).
fn sealed_expiry(value: &str) -> u64 {
    value
        .split('.')
        .nth(1)
        .and_then(|e| e.parse().ok())
        .unwrap_or(0)
}

/// The longest path and query the state cookie keeps to return to after a
/// login: a longer one would take the cookie past the 4096 bytes a browser
/// keeps, and the callback would find no login.
pub const MAX_RETURN_PATH: usize = 2048;

/// Where a login returns: the request's own path and query (never another
/// origin); past [`MAX_RETURN_PATH`] its path alone, and past it too the
/// origin's root.
pub(super) fn return_path(path: &str) -> &str {
    if !path.starts_with('/') || path.starts_with("//") {
        return "/";
    }
    if path.len() <= MAX_RETURN_PATH {
        return path;
    }
    match path.split(['?', '#']).next() {
        Some(p) if p.len() <= MAX_RETURN_PATH => p,
        _ => "/",
    }
}

/// The login state cookie's attributes: `SameSite=Lax` (sent on the IdP's
/// redirect back, a top-level GET), or `SameSite=None; Secure` when the
/// answer comes as a cross-site POST (`response_mode=form_post`).
pub(super) fn state_attrs(f: &OAuth2Filter, origin: &Origin, max_age: u64) -> CookieAttrs {
    CookieAttrs {
        secure: origin.is_https(),
        same_site: f.callback_same_site(),
        http_only: true,
        max_age: Some(max_age),
    }
}

/// A 303 to `location`, not cached.
pub(super) fn redirect(location: &str) -> Response {
    Response {
        status: 303,
        headers: vec![
            ("location".to_string(), location.into()),
            ("cache-control".to_string(), "no-store".into()),
        ],
        body: Vec::new(),
    }
}
