//! Never a redirect loop. An IdP with a single sign-on session answers a login
//! at once, so anything that makes a fresh session fail again (a refused access
//! token, a cookie the browser does not keep) would send the browser round
//! between the application and the IdP until the browser gives up. Two guards:
//!
//! - **A login that has just completed and is refused again** (its session is
//!   younger than [`JUST_SIGNED_IN`] and still has the login's access token)
//!   gets an explained page (401): what was refused, and the setting to look
//!   at. A new login would end the same way.
//! - **A bounded count of logins per browser**: the cookie
//!   `portcullis_logins.<name>` counts the login redirects of a window of
//!   [`LOGIN_WINDOW`] seconds; past [`MAX_LOGINS_IN_WINDOW`] the browser gets
//!   an explained page (508 Loop Detected) instead of another redirect, whatever
//!   the cause. A browser sends one round of concurrent requests with the same
//!   count, so a page's many requests count once; the count ends with its
//!   window. The value is not sealed: a client that edits it only stops or
//!   allows its own logins.

use super::session::{CookieAttrs, CookieJar, SameSite};
use super::{error_page, OAuth2Filter, Origin};
use crate::response::Response;

/// A session younger than this (seconds) that is refused is a login that has
/// just completed: an explained page, not another login.
pub const JUST_SIGNED_IN: u64 = 60;
/// The window (seconds) over which logins of one browser are counted.
pub const LOGIN_WINDOW: u64 = 60;
/// The most login redirects per browser in a window; the next one gets the
/// loop page. A browser gives up a redirect chain at 20 hops (Chromium), and
/// a login takes three or four: the page comes first.
pub const MAX_LOGINS_IN_WINDOW: u32 = 4;

/// Counts a login redirect of this browser: the `Set-Cookie` carrying the new
/// count, or the loop page when the count is past its bound.
pub(super) fn count_login(
    f: &OAuth2Filter,
    origin: &Origin,
    jar: &CookieJar,
    now: f64,
) -> Result<String, Response> {
    let name = f.cookie_base("logins");
    let now_s = now.max(0.0) as u64;
    let (count, since) = jar
        .get(&name)
        .and_then(parse)
        .filter(|(_, since)| *since <= now_s && now_s - *since < LOGIN_WINDOW)
        .unwrap_or((0, now_s));
    if count >= MAX_LOGINS_IN_WINDOW {
        let detail = format!(
            "This browser was sent to the identity provider to sign in {count} times within {LOGIN_WINDOW} seconds, and each time the sign-in did not hold. Sending it again would loop, so this page stops it (HTTP 508). Usual causes: the browser does not keep the session cookie (an https site served to Envoy as http, so the Secure cookie is refused, or cookies blocked for this site), the session was refused right after sign-in (accessTokenValidation of OAuth2 filter {:?}), or the identity provider issues access tokens that expire at once. The Envoy log names the cause. Try again in a minute.",
            f.name
        );
        log::warn!(
            "OAuth2 filter {}: login loop stopped after {count} logins in {LOGIN_WINDOW} s",
            f.name
        );
        let mut page = error_page(508, "Sign-in loop stopped", &detail);
        let retry = LOGIN_WINDOW
            .saturating_sub(now_s.saturating_sub(since))
            .max(1);
        page.push_header("retry-after", retry.to_string());
        return Err(page);
    }
    let left = LOGIN_WINDOW
        .saturating_sub(now_s.saturating_sub(since))
        .max(1);
    let attrs = CookieAttrs {
        secure: origin.is_https(),
        same_site: SameSite::Lax,
        http_only: true,
        max_age: Some(left),
    };
    Ok(attrs.set(&name, &format!("{}.{since}", count + 1)))
}

/// `<count>.<window start>`.
fn parse(value: &str) -> Option<(u32, u64)> {
    let (count, since) = value.split_once('.')?;
    Some((count.parse().ok()?, since.parse().ok()?))
}
