//! A request with a session: the access token checked (as a JWT, by the UserInfo endpoint, or trusted), refreshed when due, XSRF checked, the upstream headers added.

use super::awaiting::{pending, Awaiting};
use super::error_page;
use super::id_token::signing_algorithms;
use super::login::{optional_scope, unauthenticated};
use super::loops::JUST_SIGNED_IN;
use super::refresh::{access_due, refresh};
use super::session::{CookieJar, Session};
use super::session_store::clear_session;
use super::session_store::{touch_interval, write_session};
use super::token_endpoint::{access_policy, ACCESS_TOKEN_SCOPE};
use super::upstream::allow;
use super::xsrf::{is_safe_method, xsrf_ok};
use super::FlowContext;
use super::{OAuth2Step, Origin, TokenValidation, CALLOUT_TIMEOUT};
use crate::callout::{Callout, CalloutKind};
use crate::jwt::verify::verify_token;
use crate::jwt::{ClaimPolicy, KeySet, TokenError};
use crate::response::Response;
use std::sync::Arc;

pub(super) fn authenticated(
    cx: &FlowContext<'_>,
    origin: &Origin,
    jar: &CookieJar,
    mut session: Arc<Session>,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let (f, request, args, idp, now) = cx.parts();
    // As AES: the application checks the XSRF token (the cookie reaches it);
    // Portcullis does only when `xsrfProtection: unsafeMethods` asks.
    if f.xsrf_on_requests && !is_safe_method(&request.method) && !xsrf_ok(request, &session) {
        return OAuth2Step::Respond(Response::json_error(
            403,
            "XSRF check failed: send the portcullis_xsrf cookie's value in X-XSRF-Token (or _xsrf in the query)",
        ));
    }
    let granted: Vec<&str> = session.scope.split_whitespace().collect();
    let missing: Vec<&str> = args
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !optional_scope(s) && !granted.contains(s))
        .collect();
    if !missing.is_empty() {
        return OAuth2Step::Respond(Response::json_error(
            403,
            &format!(
                "insufficient scope: the session lacks {}",
                missing.join(" ")
            ),
        ));
    }
    if access_due(f, &session, now) {
        return match refresh(f, &session, idp, now, random) {
            Some(step) => step,
            None => unauthenticated(cx, origin, jar, random),
        };
    }
    // Sliding idle deadline.
    let mut set_cookies = Vec::new();
    if let Some(idle) = f.max_idle {
        let now_s = now.max(0.0) as u64;
        if now_s.saturating_sub(session.last_seen) >= touch_interval(idle) {
            // Copied only here: a cached session is shared.
            Arc::make_mut(&mut session).last_seen = now_s;
            let same_site = args.same_site;
            match write_session(cx, origin, jar, &session, same_site, random) {
                Ok(c) => set_cookies = c,
                Err(r) => return OAuth2Step::Respond(r),
            }
        }
    }
    // A JWT access token this VM verified already (see `jwt::cache`): its
    // claims are checked again, the signature is not.
    if f.validation != TokenValidation::Userinfo {
        if let (Some(cache), Some(keys)) = (idp.token_cache, idp.keys) {
            let hit = cache.try_borrow_mut().ok().and_then(|mut c| {
                c.get(
                    ACCESS_TOKEN_SCOPE,
                    &session.access_token,
                    keys,
                    &access_policy(),
                    now,
                )
            });
            match hit {
                Some(Ok(_)) => return allow(f, request, jar, &session, set_cookies),
                Some(Err(e)) => {
                    let why = e.description();
                    return refused(
                        cx,
                        origin,
                        jar,
                        &session,
                        &format!("the access token was refused as a JWT: {why}"),
                        random,
                    );
                }
                None => {}
            }
        }
    }
    let use_jwt = match f.validation {
        TokenValidation::Jwt => true,
        TokenValidation::Userinfo => false,
        TokenValidation::Auto => idp
            .keys
            .is_some_and(|keys| signed_by_idp(&session.access_token, keys)),
    };
    if use_jwt {
        return by_jwt(cx, origin, jar, &session, set_cookies, random);
    }
    let no_userinfo = idp.discovery.is_some_and(|d| d.userinfo_endpoint.is_none());
    if f.validation == TokenValidation::Auto && (session.userinfo_refused || no_userinfo) {
        // Not a JWT of the IdP's keys, and its UserInfo endpoint refused it
        // when it was issued (a token for another API), or the IdP has none
        // (Azure AD B2C): it came from the token endpoint over the
        // authenticated back channel and is sealed in the session, so its
        // lifetime (`expires_in`) is what is checked.
        return allow(f, request, jar, &session, set_cookies);
    }
    ask_userinfo(cx, jar, session, set_cookies)
}

/// `accessTokenValidation: auto`: a JWT whose signature a key of the IdP checks.
pub(super) fn signed_by_idp(token: &str, keys: &KeySet) -> bool {
    let policy = ClaimPolicy {
        valid_algorithms: signing_algorithms(),
        ..ClaimPolicy::default()
    };
    // Claims are not checked here (the policy requires nothing, and `exp` is
    // checked by the real verification that follows).
    !matches!(
        verify_token(token, keys, &policy, 0.0),
        Err(TokenError::Malformed(_)
            | TokenError::DisallowedAlgorithm(_)
            | TokenError::UnknownKey(_)
            | TokenError::BadSignature
            | TokenError::UnsupportedCritical(_))
    )
}

/// A session's access token was refused (`what`): a login that has just
/// completed gets the explained page; an older session logs in again.
pub(super) fn refused(
    cx: &FlowContext<'_>,
    origin: &Origin,
    jar: &CookieJar,
    session: &Session,
    what: &str,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let (f, _, _, _, now) = cx.parts();
    let age = (now.max(0.0) as u64).saturating_sub(session.created);
    // The login's own access token: one refreshed since is another matter (a
    // grant the IdP revoked meanwhile), for a new login.
    let logins_token = session.access_obtained <= session.created;
    if age >= JUST_SIGNED_IN || !logins_token {
        log::info!("OAuth2 filter {}: {what}; new login", f.name);
        return unauthenticated(cx, origin, jar, random);
    }
    let detail = format!(
        "The identity provider signed you in {age} s ago, but {what}. Signing in again would end the same way, so it is not tried. The setting to look at: accessTokenValidation of OAuth2 filter {:?} (\"auto\" accepts what the identity provider issues to this client; see the OAuth2 documentation for your identity provider).",
        f.name
    );
    log::warn!("OAuth2 filter {}: {detail}", f.name);
    let mut page = error_page(401, "Signed in, but the session was refused", &detail);
    for c in clear_session(f, origin, jar) {
        page.push_header("set-cookie", c);
    }
    OAuth2Step::Respond(page)
}

/// The access token checked as a JWT signed by the IdP (its JWK Set, issuer
/// and lifetime): passed, refused, or [`OAuth2Step::UnknownKey`] for a `kid`
/// the IdP's set lacks.
fn by_jwt(
    cx: &FlowContext<'_>,
    origin: &Origin,
    jar: &CookieJar,
    session: &Session,
    set_cookies: Vec<String>,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let (f, request, _, idp, now) = cx.parts();
    let Some(keys) = idp.keys else {
        return OAuth2Step::NeedIdp;
    };
    match verify_token(&session.access_token, keys, &access_policy(), now) {
        Ok(verified) => {
            if let Some(mut c) = idp.token_cache.and_then(|c| c.try_borrow_mut().ok()) {
                c.insert(ACCESS_TOKEN_SCOPE, keys, std::sync::Arc::new(verified), now);
            }
            allow(f, request, jar, session, set_cookies)
        }
        Err(TokenError::UnknownKey(Some(kid)))
            if f.validation == TokenValidation::Jwt && !keys.has_kid(&kid) =>
        {
            // The IdP may have rotated its signing key: fetch its JWK Set
            // again (rate-limited) and check the request once more; if
            // the key never comes, the refusal below.
            let why = format!("the access token was refused as a JWT: unknown key id {kid:?}");
            match refused(cx, origin, jar, session, &why, random) {
                OAuth2Step::Respond(response) => OAuth2Step::UnknownKey {
                    pending: None,
                    response,
                },
                other => other,
            }
        }
        Err(e) => {
            let why = e.description();
            refused(
                cx,
                origin,
                jar,
                session,
                &format!("the access token was refused as a JWT: {why}"),
                random,
            )
        }
    }
}

/// The access token checked by the IdP's UserInfo endpoint (OIDC Core §5.3):
/// passed when this VM saw it accepted within the cache's lifetime, otherwise
/// the callout whose answer `on_answer` reads.
fn ask_userinfo(
    cx: &FlowContext<'_>,
    jar: &CookieJar,
    session: Arc<Session>,
    set_cookies: Vec<String>,
) -> OAuth2Step {
    let (f, request, _, idp, now) = cx.parts();
    if idp
        .userinfo
        .is_some_and(|c| c.is_valid(&session.access_token, now))
    {
        return allow(f, request, jar, &session, set_cookies);
    }
    let Some(target) = idp
        .discovery
        .and_then(|d| d.userinfo_endpoint.as_deref())
        .and_then(|u| f.callout_target(u))
    else {
        let reason = idp
            .discovery
            .and_then(|d| f.unusable_with(d))
            .unwrap_or_else(|| format!("OAuth2 filter {:?}: the identity provider's UserInfo endpoint has no Envoy cluster (see `clusters`).", f.name));
        log::warn!("{reason}");
        return OAuth2Step::Respond(f.unusable_page(&reason));
    };
    let headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), target.path.clone()),
        (":authority".to_string(), target.authority.clone()),
        (":scheme".to_string(), target.scheme.clone()),
        (
            "authorization".to_string(),
            format!("Bearer {}", session.access_token),
        ),
        ("accept".to_string(), "application/json".to_string()),
    ];
    OAuth2Step::Callout {
        callout: Callout {
            cluster: target.cluster.clone(),
            kind: CalloutKind::http_text(headers, Vec::new()),
            timeout: CALLOUT_TIMEOUT,
            share: None,
        },
        pending: pending(Awaiting::Userinfo {
            session: Arc::unwrap_or_clone(session),
            set_cookies,
        }),
    }
}
