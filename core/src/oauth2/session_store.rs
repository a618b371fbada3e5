//! Where a session lives: the sealed, chunked session cookie opened (through the VM cache of opened sessions), written and cleared.

use super::session::{clear_chunked, write_chunked, CookieAttrs, CookieJar, SameSite, Session};
use super::FlowContext;
use super::{error_page, OAuth2Filter, Origin};
use crate::request::Request;
use crate::response::Response;
use std::sync::Arc;

pub(super) fn open_session(f: &OAuth2Filter, jar: &CookieJar, now: f64) -> Option<Arc<Session>> {
    open_session_cached(f, jar, now, None)
}

/// Opens the session cookie, through the VM's cache of opened sessions when
/// there is one; then the idle and lifetime checks.
pub(super) fn open_session_cached(
    f: &OAuth2Filter,
    jar: &CookieJar,
    now: f64,
    cache: Option<&std::cell::RefCell<super::session::SessionCache>>,
) -> Option<Arc<Session>> {
    let name = f.cookie_base("session");
    let open = |sealed: &str| -> Option<Arc<Session>> {
        let cached = cache.and_then(|c| c.try_borrow().ok()?.get(&name, sealed, now));
        match cached {
            Some(session) => Some(session),
            None => {
                let plain = f.keys.open(&name, sealed, now)?;
                let session: Arc<Session> = Arc::new(serde_json::from_slice(&plain).ok()?);
                if let Some(mut c) = cache.and_then(|c| c.try_borrow_mut().ok()) {
                    c.insert(&name, sealed, &session);
                }
                Some(session)
            }
        }
    };
    // Several cookies of the name (one left at another path or domain): the
    // first that opens, so a stale one never hides the session (a login loop).
    let mut values = jar.get_all(&name);
    let session = match (values.next(), values.next()) {
        (Some(only), None) => open(only)?,
        (Some(first), Some(second)) => open(first)
            .or_else(|| open(second))
            .or_else(|| values.find_map(&open))?,
        (None, _) => open(&jar.chunked(&name)?)?,
    };
    if let Some(idle) = f.max_idle {
        if now >= session.last_seen.saturating_add(idle) as f64 {
            return None;
        }
    }
    (now < session.deadline as f64).then_some(session)
}

/// How often a sliding (`clientSessionMaxIdle`) session is re-sealed with a new
/// idle deadline: a quarter of the idle time, at most 5 minutes, at least 1 s.
pub(super) fn touch_interval(idle: u64) -> u64 {
    (idle / 4).clamp(1, 300)
}

/// When the sealed session ends.
pub(super) fn session_expiry(f: &OAuth2Filter, session: &Session) -> u64 {
    match f.max_idle {
        Some(idle) => session.deadline.min(session.last_seen.saturating_add(idle)),
        None => session.deadline,
    }
}

pub(super) fn cookie_attrs(
    f: &OAuth2Filter,
    request: &Request,
    origin: &Origin,
    same_site: SameSite,
    http_only: bool,
    expires: Option<u64>,
    now: f64,
) -> CookieAttrs {
    let max_age = if f.browser_session_cookies(&request.headers) {
        None
    } else {
        expires.map(|e| e.saturating_sub(now.max(0.0) as u64))
    };
    CookieAttrs {
        secure: origin.is_https(),
        same_site,
        http_only,
        max_age,
    }
}

/// `Set-Cookie` values writing the session and its XSRF cookie.
pub(super) fn write_session(
    cx: &FlowContext<'_>,
    origin: &Origin,
    jar: &CookieJar,
    session: &Session,
    same_site: SameSite,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<Vec<String>, Response> {
    let (f, request, _, _, now) = cx.parts();
    let name = f.cookie_base("session");
    let expires = session_expiry(f, session);
    let plain = serde_json::to_vec(session).map_err(|_| session_error())?;
    let sealed = f
        .keys
        .seal(&name, expires, &plain, random)
        .ok_or_else(session_error)?;
    let attrs = cookie_attrs(f, request, origin, same_site, true, Some(expires), now);
    let mut cookies = write_chunked(&name, &sealed, &attrs, jar).ok_or_else(|| {
        log::warn!(
            "OAuth2 filter {}: the session ({} bytes sealed) does not fit in {} cookies",
            f.name,
            sealed.len(),
            super::session::MAX_CHUNKS
        );
        error_page(
            502,
            "Sign-in failed",
            "The identity provider issued tokens too large to keep in cookies.",
        )
    })?;
    let xsrf_attrs = cookie_attrs(f, request, origin, same_site, false, Some(expires), now);
    cookies.push(xsrf_attrs.set(&f.cookie_base("xsrf"), &session.xsrf));
    Ok(cookies)
}

pub(super) fn session_error() -> Response {
    error_page(500, "Sign-in failed", "The session could not be sealed.")
}

/// `Set-Cookie` values deleting the session (all chunks) and XSRF cookies.
pub(super) fn clear_session(f: &OAuth2Filter, origin: &Origin, jar: &CookieJar) -> Vec<String> {
    let attrs = CookieAttrs {
        secure: origin.is_https(),
        same_site: SameSite::Lax,
        http_only: true,
        max_age: None,
    };
    let mut out = clear_chunked(&f.cookie_base("session"), &attrs, jar);
    out.push(
        CookieAttrs {
            http_only: false,
            ..attrs
        }
        .clear(&f.cookie_base("xsrf")),
    );
    out
}
