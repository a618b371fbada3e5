//! Logout: the session cleared (XSRF-checked form or GET) and the browser sent to the IdP's end_session_endpoint (OIDC RP-Initiated Logout) or a page.

use super::encoding::form_encode;
use super::events::{note, OAuth2Event};
use super::login::redirect;
use super::session::CookieJar;
use super::session_store::{clear_session, open_session};
use super::xsrf::{is_form, xsrf_ok};
use super::{IdpState, OAuth2Filter, OAuth2Step, Origin, MAX_LOGOUT_FORM_BYTES};
use crate::jwt::verify::decode_unverified;
use crate::request::Request;
use crate::response::Response;
use serde_json::Value;

pub(super) fn logout(
    f: &OAuth2Filter,
    request: &Request,
    origin: &Origin,
    jar: &CookieJar,
    idp: &IdpState<'_>,
    now: f64,
) -> OAuth2Step {
    if !request.method.eq_ignore_ascii_case("POST") {
        let mut r = Response::json_error(405, "log out with POST (and _xsrf)");
        r.set_header("allow", "POST");
        return OAuth2Step::Respond(r);
    }
    let session = open_session(f, jar, now);
    if let Some(s) = &session {
        if !xsrf_ok(request, s) && request.body.is_none() && is_form(request) {
            // AES's logout form carries `_xsrf` in its body: the host reads it
            // (bounded) and asks again.
            return OAuth2Step::NeedBody {
                max_bytes: MAX_LOGOUT_FORM_BYTES,
            };
        }
        if request
            .body
            .as_ref()
            .is_some_and(|b| b.len() > MAX_LOGOUT_FORM_BYTES)
        {
            return OAuth2Step::Respond(Response::json_error(
                413,
                "the logout form is larger than 4096 bytes",
            ));
        }
        if !xsrf_ok(request, s) {
            return OAuth2Step::Respond(Response::json_error(
                403,
                "XSRF check failed: log out with the portcullis_xsrf cookie's value in the form field _xsrf, the query or X-XSRF-Token",
            ));
        }
    }
    let after = f
        .post_logout_redirect
        .clone()
        .unwrap_or_else(|| format!("{}/", origin.url()));
    let location = match idp
        .discovery
        .and_then(|d| d.end_session_endpoint.as_deref())
    {
        Some(end_session) => logout_url(
            f,
            end_session,
            session.as_ref().and_then(|s| s.id_token.as_deref()),
        ),
        None => after,
    };
    let mut response = redirect(&location);
    for c in clear_session(f, origin, jar) {
        response.push_header("set-cookie", c);
    }
    note(idp.events, OAuth2Event::Logout);
    OAuth2Step::Respond(response)
}

/// The longest logout URL sent: past it (a large ID token, e.g. one carrying
/// many groups) the IdP may answer 414 and the user stays signed in there.
pub const MAX_LOGOUT_URL: usize = 4096;

/// The RP-Initiated Logout 1.0 request: `id_token_hint`,
/// `post_logout_redirect_uri` and `client_id`; when the hint would take the
/// URL past [`MAX_LOGOUT_URL`], no hint but `client_id`, and `logout_hint`
/// from the ID token's `login_hint` claim where the IdP puts one there (Azure
/// AD's optional claim). The IdP may then ask the user to confirm.
pub(super) fn logout_url(f: &OAuth2Filter, end_session: &str, id_token: Option<&str>) -> String {
    let separator = if end_session.contains('?') { '&' } else { '?' };
    let build = |hint: Option<(&str, &str)>| {
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(h) = hint {
            params.push(h);
        }
        if let Some(uri) = &f.post_logout_redirect {
            params.push(("post_logout_redirect_uri", uri));
        }
        params.push(("client_id", &f.client_id));
        format!("{end_session}{separator}{}", form_encode(params))
    };
    if let Some(token) = id_token {
        let url = build(Some(("id_token_hint", token)));
        if url.len() <= MAX_LOGOUT_URL {
            return url;
        }
        let login_hint = decode_unverified(token).ok().and_then(|t| {
            t.claims
                .get("login_hint")
                .and_then(Value::as_str)
                .filter(|h| h.len() <= 512)
                .map(str::to_string)
        });
        log::info!(
            "OAuth2 filter {}: the logout URL with id_token_hint would be {} bytes: sent without it",
            f.name,
            url.len()
        );
        if let Some(h) = login_hint {
            let url = build(Some(("logout_hint", &h)));
            if url.len() <= MAX_LOGOUT_URL {
                return url;
            }
        }
    }
    build(None)
}
