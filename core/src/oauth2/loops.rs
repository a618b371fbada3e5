//! Never a redirect loop. An IdP with a single sign-on session answers a login
//! at once, so anything that makes a fresh session fail again (a refused access
//! token, a cookie the browser does not keep) would send the browser round
//! between the application and the IdP until the browser gives up. Two guards:
//!
//! - **A login that has just completed and is refused again** (its session is
//!   younger than [`JUST_SIGNED_IN`] and still has the login's access token)
//!   gets an explained page (401): what was refused, and the setting to look
//!   at. A new login would end the same way.
//! - **A bounded count of loops per browser**: a loop is a login that
//!   completed (the callback made a session) and was refused again (the next
//!   login redirect of the same browser). The cookie `portcullis_logins.<name>`
//!   counts them over a window of [`LOGIN_WINDOW`] seconds: the callback marks
//!   a completed login, the next login redirect counts it; past
//!   [`MAX_LOOPS_IN_WINDOW`] the browser gets an explained page (508 Loop
//!   Detected) instead of another redirect, whatever the cause. Login
//!   redirects alone never count: many tabs opened at once, or a page polling
//!   after its session ended, start many logins and complete few or none. The
//!   value is not sealed: a client that edits it only stops or allows its own
//!   logins.

use super::session::{CookieAttrs, CookieJar};
use super::{error_page, OAuth2Filter, Origin};
use crate::response::Response;

/// A session younger than this (seconds) that is refused is a login that has
/// just completed: an explained page, not another login.
pub const JUST_SIGNED_IN: u64 = 60;
/// The window (seconds) over which the loops of one browser are counted.
pub const LOGIN_WINDOW: u64 = 60;
/// The most loops (a completed login refused again) per browser in a window;
/// the next login redirect gets the loop page. A browser gives up a redirect
/// chain at 20 hops (Chromium), and a login takes three or four: the page
/// comes after four logins.
pub const MAX_LOOPS_IN_WINDOW: u32 = 3;

/// The count cookie's value: `<loops>.<window start>`, and `.c` while a
/// completed login waits to be counted by the next login redirect.
struct Count {
    loops: u32,
    since: u64,
    completed: bool,
}

fn read_count(jar: &CookieJar, name: &str, now_s: u64) -> Count {
    jar.get(name)
        .and_then(parse)
        .filter(|c| c.since <= now_s && now_s - c.since < LOGIN_WINDOW)
        .unwrap_or(Count {
            loops: 0,
            since: now_s,
            completed: false,
        })
}

fn count_cookie(
    f: &OAuth2Filter,
    origin: &Origin,
    name: &str,
    count: &Count,
    now_s: u64,
) -> String {
    let left = LOGIN_WINDOW
        .saturating_sub(now_s.saturating_sub(count.since))
        .max(1);
    let attrs = CookieAttrs {
        secure: origin.is_https(),
        // Read at the callback: a form_post callback is a cross-site POST.
        same_site: f.callback_same_site(),
        http_only: true,
        max_age: Some(left),
    };
    let mark = if count.completed { ".c" } else { "" };
    attrs.set(name, &format!("{}.{}{mark}", count.loops, count.since))
}

/// The callback made a session: marks the login completed, for the next
/// login redirect of this browser to count as a loop. The `Set-Cookie`.
pub(super) fn completed_login(
    f: &OAuth2Filter,
    origin: &Origin,
    jar: &CookieJar,
    now: f64,
) -> String {
    let name = f.cookie_base("logins");
    let now_s = now.max(0.0) as u64;
    let mut count = read_count(jar, &name, now_s);
    count.completed = true;
    count_cookie(f, origin, &name, &count, now_s)
}

/// A login redirect of this browser: after a completed login it is a loop,
/// counted; past the bound, the loop page instead. `Ok(Some(cookie))` with the
/// new count, `Ok(None)` when nothing changes (a login start is not counted).
pub(super) fn count_login(
    f: &OAuth2Filter,
    origin: &Origin,
    jar: &CookieJar,
    now: f64,
) -> Result<Option<String>, Response> {
    let name = f.cookie_base("logins");
    let now_s = now.max(0.0) as u64;
    let mut count = read_count(jar, &name, now_s);
    if !count.completed {
        return Ok(None);
    }
    count.loops = count.loops.saturating_add(1);
    count.completed = false;
    if count.loops > MAX_LOOPS_IN_WINDOW {
        let detail = format!(
            "This browser signed in at the identity provider {} times within {LOGIN_WINDOW} seconds, and each time the session did not hold: the next request needed a sign-in again. Sending it again would loop, so this page stops it (HTTP 508). Usual causes: the browser does not keep the session cookie (an https site served to Envoy as http, so the Secure cookie is refused, or cookies blocked for this site), the session was refused right after sign-in (accessTokenValidation of OAuth2 filter {:?}), or the identity provider issues access tokens that expire at once. The Envoy log names the cause. Try again in a minute.",
            count.loops,
            f.name
        );
        log::warn!(
            "OAuth2 filter {}: login loop stopped after {} completed logins refused again in {LOGIN_WINDOW} s",
            f.name,
            count.loops
        );
        let mut page = error_page(508, "Sign-in loop stopped", &detail);
        let retry = LOGIN_WINDOW
            .saturating_sub(now_s.saturating_sub(count.since))
            .max(1);
        page.push_header("retry-after", retry.to_string());
        return Err(page);
    }
    Ok(Some(count_cookie(f, origin, &name, &count, now_s)))
}

/// `<loops>.<window start>[.c]`.
fn parse(value: &str) -> Option<Count> {
    let mut parts = value.split('.');
    let loops = parts.next()?.parse().ok()?;
    let since = parts.next()?.parse().ok()?;
    let completed = match parts.next() {
        None => false,
        Some("c") => true,
        Some(_) => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Count {
        loops,
        since,
        completed,
    })
}
