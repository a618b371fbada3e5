//! XSRF protection for requests with a session: the `_xsrf` token a form or header presents, checked against the session's on unsafe methods.

use super::encoding::{query_param, query_params, secrets_equal};
use super::session::Session;
use crate::request::Request;

pub(super) fn is_safe_method(method: &str) -> bool {
    matches!(
        method.to_ascii_uppercase().as_str(),
        "GET" | "HEAD" | "OPTIONS" | "TRACE"
    )
}

/// The XSRF token a request carries: `X-XSRF-Token`, else `_xsrf` in the
/// query, else `_xsrf` in an `application/x-www-form-urlencoded` body the host
/// read (logout only: see [`logout`]).
pub(super) fn presented_xsrf(request: &Request) -> Option<String> {
    if let Some(h) = request.headers.get("x-xsrf-token") {
        return Some(h.trim().to_string());
    }
    let params = query_params(&request.path);
    if let Some(v) = query_param(&params, "_xsrf") {
        return Some(v.to_string());
    }
    let body = request.body.as_ref().filter(|_| is_form(request))?;
    let form = query_params(&format!("?{}", String::from_utf8_lossy(body)));
    query_param(&form, "_xsrf").map(str::to_string)
}

/// Whether the request body is an HTML form (`application/x-www-form-urlencoded`).
pub(super) fn is_form(request: &Request) -> bool {
    request.headers.get("content-type").is_some_and(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

pub(super) fn xsrf_ok(request: &Request, session: &Session) -> bool {
    presented_xsrf(request).is_some_and(|t| secrets_equal(&t, &session.xsrf))
}
