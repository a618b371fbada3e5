//! The HTTP variant of ext_authz, as Envoy's `ext_authz` `http_service` does it
//! with the configuration Emissary generates for an `AuthService`
//! (`allowed_headers` = the always-sent list + `allowed_request_headers`,
//! `headers_to_add` = `add_auth_headers`, `allowed_upstream_headers` =
//! `allowed_client_headers` = the always-copied list +
//! `allowed_authorization_headers`).

use super::{
    removable_header, settable_header, ExternalFilter, ExternalOutcome, SentBody,
    HEADERS_TO_REMOVE_HEADER, MAX_ANSWER_BYTES, MAX_ANSWER_HEADERS, PARTIAL_BODY_HEADER,
};
use crate::request::Request;
use crate::response::{HeaderChange, Response};

use super::CalloutKind;

/// The check request: the client's method and `:authority` (Host),
/// `path_prefix` and the path with its query, the
/// allowed client headers (every value, in order), `add_auth_headers`, and the
/// body with `include_body`. `content-length` is always sent (0 without a
/// body), as Envoy does.
pub(super) fn build(
    f: &ExternalFilter,
    request: &Request,
    body: Option<SentBody<'_>>,
) -> CalloutKind {
    let path = if request.path.is_empty() {
        "/"
    } else {
        request.path.as_str()
    };
    let body_bytes = body.map(|b| b.bytes).unwrap_or_default();
    let mut headers: Vec<(String, Vec<u8>)> =
        Vec::with_capacity(6 + f.request_headers.len() + f.added_headers.len());
    headers.push((":method".to_string(), request.method.clone().into_bytes()));
    headers.push((
        ":path".to_string(),
        format!("{}{path}", f.path_prefix).into_bytes(),
    ));
    // The client's authority, as Envoy's ext_authz sends it (CONFIG.md
    // "clusters"): an auth service that decides by site, or builds a login URL
    // from it, sees the site. The cluster still comes from `auth_service`.
    let authority = if request.authority.is_empty() {
        &f.target.authority
    } else {
        &request.authority
    };
    headers.push((":authority".to_string(), authority.clone().into_bytes()));
    headers.push((":scheme".to_string(), f.target.scheme.clone().into_bytes()));
    headers.push((
        "content-length".to_string(),
        body_bytes.len().to_string().into_bytes(),
    ));
    // `Headers` holds lower-case names; `request_headers` is lower-case. The
    // values go as the client sent their bytes.
    for (name, value) in request.headers.iter_bytes() {
        if f.request_headers.iter().any(|h| h == name) {
            headers.push((name.to_string(), value.to_vec()));
        }
    }
    headers.extend(
        f.added_headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone().into_bytes())),
    );
    if let Some(b) = body {
        headers.push((
            PARTIAL_BODY_HEADER.to_string(),
            if b.partial { "true" } else { "false" }.into(),
        ));
    }
    CalloutKind::Http {
        headers,
        body: body_bytes.to_vec(),
    }
}

/// The answer: exactly 200 allows, 5xx (and anything not an HTTP status) is an
/// error, anything else denies.
pub(super) fn read(
    f: &ExternalFilter,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
) -> Result<ExternalOutcome, String> {
    if !(100..=599).contains(&status) {
        return Err(format!("answered with invalid status {status}"));
    }
    if status >= 500 {
        return Err(format!("answered {status}"));
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err(format!("answer body larger than {MAX_ANSWER_BYTES} bytes"));
    }
    if headers.len() > MAX_ANSWER_HEADERS {
        return Err(format!("answer has more than {MAX_ANSWER_HEADERS} headers"));
    }
    let header_bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if header_bytes > MAX_ANSWER_BYTES {
        return Err(format!(
            "answer headers larger than {MAX_ANSWER_BYTES} bytes"
        ));
    }
    // Envoy also honours `x-envoy-auth-headers-to-remove: a, b` on an OK answer
    // (pseudo headers and `host` excepted).
    let removals = if status == 200 {
        headers_to_remove(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
    } else {
        Vec::new()
    };
    let copied = headers.into_iter().filter(|(name, value)| {
        f.authorization_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
            && settable_header(name, value)
    });

    if status == 200 {
        // Copied headers replace the request's; further values of one name are
        // appended after the first replaced it.
        let mut changes: Vec<HeaderChange> = Vec::new();
        for (name, value) in copied {
            if changes.iter().any(|c| c.name.eq_ignore_ascii_case(&name)) {
                changes.push(HeaderChange::append(&name, value));
            } else {
                changes.push(HeaderChange::set(&name, value));
            }
        }
        changes.extend(removals);
        return Ok(ExternalOutcome::Allow(changes));
    }

    // Denied: the answer's status, body and allowed headers go to the client.
    let mut response = Response {
        status,
        headers: copied.map(|(n, v)| (n.to_ascii_lowercase(), v)).collect(),
        body,
    };
    if !response.body.is_empty() && response.header_bytes("content-type").is_none() {
        // Envoy's local reply labels a body it was given without a type.
        response.push_header("content-type", "text/plain");
    }
    Ok(ExternalOutcome::Deny(response))
}

/// Names listed in `x-envoy-auth-headers-to-remove` values (a list item that
/// is not a header name, obs-text included, is skipped).
pub(super) fn headers_to_remove<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Vec<HeaderChange> {
    let mut out: Vec<HeaderChange> = Vec::new();
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case(HEADERS_TO_REMOVE_HEADER) {
            continue;
        }
        for item in value.split(|b| *b == b',') {
            let Ok(item) = std::str::from_utf8(item.trim_ascii()) else {
                continue;
            };
            if removable_header(item) && !out.iter().any(|c| c.name.eq_ignore_ascii_case(item)) {
                out.push(HeaderChange::remove(item));
            }
        }
    }
    out
}
