//! What the upstream receives for a request with a session: the injected headers rendered from the session's tokens and claims.

use super::session::{CookieJar, Session};
use super::{OAuth2Filter, OAuth2Step};
use crate::identity::{Identity, Login};
use crate::inject::render_injected;
use crate::request::Request;
use crate::response::HeaderChange;
use crate::template::RenderData;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The header changes for an upstream request carrying `access_token`.
pub(super) fn upstream_changes(
    f: &OAuth2Filter,
    request: &Request,
    access_token: &str,
    id_token: Option<&str>,
    userinfo: Option<&Map<String, Value>>,
) -> Vec<HeaderChange> {
    let mut changes = vec![HeaderChange::set(
        "authorization",
        format!("Bearer {access_token}"),
    )];
    if f.inject.is_empty() {
        // No template to render: the tokens are not decoded for nothing (two
        // base64 and JSON parses per request showed up first in profiles).
        return changes;
    }
    let root = crate::identity::login_template_root(request, access_token, id_token, userinfo);
    let data = RenderData {
        root: &root,
        headers: request.headers_as_sent(),
    };
    changes.extend(render_injected(&f.inject, &data));
    changes
}

/// Allow with the session's token, the Portcullis cookies removed from `Cookie`.
pub(super) fn allow(
    f: &OAuth2Filter,
    request: &Request,
    jar: &CookieJar,
    session: &Session,
    set_cookies: Vec<String>,
) -> OAuth2Step {
    let mut changes = upstream_changes(
        f,
        request,
        &session.access_token,
        session.id_token.as_deref(),
        session.userinfo.as_ref(),
    );
    if request.headers.contains("cookie") {
        // The XSRF cookie stays: the application reads it to put in its forms
        // and compares it with what they send back (AES). The filter's other
        // cookies (session and chunks, login states, login count) go, exactly
        // its own (`owns_cookie`).
        let ours = |n: &str| f.owns_cookie(n) && !n.starts_with("portcullis_xsrf.");
        // Only when one of ours is there; every other cookie byte for byte.
        if jar.any(ours) {
            match super::session::cookie_header_without(&request.headers, ours) {
                Some(Some(v)) => changes.push(HeaderChange::set("cookie", v)),
                Some(None) => changes.push(HeaderChange::remove("cookie")),
                None => {}
            }
        }
    }
    OAuth2Step::Allow {
        request: changes,
        response: set_cookies
            .into_iter()
            .map(|c| ("set-cookie".to_string(), c))
            .collect(),
        identity: Some(Identity::Login(Arc::new(Login::new(
            session.access_token.clone(),
            session.id_token.clone(),
            session.userinfo.clone(),
        )))),
    }
}
