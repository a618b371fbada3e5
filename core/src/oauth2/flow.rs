//! The authorization code flow: the login redirect, the callback and code
//! exchange, the ID token check, sessions on later requests (validation,
//! refresh, XSRF), and logout.

use super::encoding::{
    b64url, form_encode, html_escape, percent_encode, query_param, query_params, random_token,
    secrets_equal,
};
use super::id_token::{check_id_token, signing_algorithms, IdTokenError, ID_TOKEN_LEEWAY};
use super::session::{clear_chunked, write_chunked, CookieAttrs, CookieJar, SameSite, Session};
use super::{
    error_page, grants, loops, userinfo, IdpState, OAuth2Args, OAuth2Filter, OAuth2Pending,
    OAuth2Step, Origin, TokenValidation, ASSUMED_ACCESS_LIFETIME, CALLOUT_TIMEOUT,
    DEFAULT_ACCESS_LIFETIME, LOGIN_STATE_LIFETIME, MAX_LOGOUT_FORM_BYTES, MAX_PENDING_LOGINS,
    REFRESH_ON_REFUSAL_AFTER, REFRESH_SESSION_LIFETIME,
};
use crate::compile::url::CalloutTarget;
use crate::external::{Callout, CalloutAnswer, CalloutKind, MAX_ANSWER_BYTES};
use crate::inject::render_injected;
use crate::jwt::verify::{decode_unverified, verify_token, MAX_TOKEN_LEN};
use crate::jwt::{ClaimPolicy, KeySet, TokenError};
use crate::request::Request;
use crate::response::{HeaderChange, Response};
use crate::shared_callout::ShareKey;
use crate::template::{go_json_numbers, RenderData};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Length of the state id in the state cookie's name.
pub(super) const STATE_ID_LEN: usize = 12;
/// The longest refresh token kept.
const MAX_REFRESH_TOKEN_LEN: usize = 8 * 1024;

/// What a login in progress remembers (sealed in its state cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LoginState {
    #[serde(rename = "st")]
    state: String,
    #[serde(rename = "v")]
    verifier: String,
    #[serde(rename = "n")]
    nonce: String,
    /// The original URL (on the request's protected origin).
    #[serde(rename = "u")]
    url: String,
    /// The scopes requested (space-separated).
    #[serde(rename = "sc")]
    scope: String,
    #[serde(rename = "ss")]
    same_site: SameSite,
}

/// State carried across a callout.
#[derive(Debug)]
pub(super) enum Pending {
    CodeExchange {
        state_cookie: String,
        login: LoginState,
    },
    Refresh {
        session: Session,
    },
    Userinfo {
        session: Session,
        /// `Set-Cookie` values to send whatever the answer allows.
        set_cookies: Vec<String>,
    },
    /// The UserInfo claims of a login whose code was just exchanged.
    LoginUserinfo {
        state_cookie: String,
        login: LoginState,
        session: Session,
    },
    /// The UserInfo claims of a refreshed session.
    RefreshUserinfo {
        session: Session,
    },
    Grant,
    /// The token endpoint's answer at login, kept while fresh IdP keys are
    /// fetched for an ID token (or a JWT access token) naming an unknown `kid`.
    IdTokenKeys {
        state_cookie: String,
        login: LoginState,
        tokens: TokenAnswer,
    },
}

fn pending(kind: Pending) -> OAuth2Pending {
    OAuth2Pending {
        kind: Box::new(kind),
    }
}

pub(super) fn check(
    f: &OAuth2Filter,
    request: &Request,
    args: &OAuth2Args,
    idp: &IdpState<'_>,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let (Some(_), Some(_)) = (idp.discovery, idp.keys) else {
        return OAuth2Step::NeedIdp;
    };
    let Some(origin) = f.origin_of(request) else {
        return OAuth2Step::Respond(Response::json_error(
            403,
            &format!(
                "this origin is not in the protectedOrigins of OAuth2 filter {:?}",
                f.name
            ),
        ));
    };
    let jar = CookieJar::from_headers(&request.headers);
    let path = request.path_only();
    if f.is_callback_path(path) {
        return callback(f, request, &origin, &jar, idp, now);
    }
    if super::is_logout_path(path) {
        return logout(f, request, &origin, &jar, idp, now);
    }
    match open_session_cached(f, &jar, now, idp.session_cache) {
        Some(session) => authenticated(f, request, args, &origin, &jar, session, idp, now, random),
        None => unauthenticated(f, request, args, &origin, &jar, idp, now, random),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn on_answer(
    f: &OAuth2Filter,
    request: &Request,
    args: &OAuth2Args,
    kind: Pending,
    answer: CalloutAnswer,
    idp: &IdpState<'_>,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let jar = CookieJar::from_headers(&request.headers);
    let origin = f.origin_of(request);
    match kind {
        Pending::Grant => grants::on_answer(f, request, answer),
        // Not a callout's state: nothing was sent for it.
        kind @ Pending::IdTokenKeys { .. } => {
            resume(f, request, args, Some(kind), idp, now, random)
        }
        Pending::CodeExchange {
            state_cookie,
            login,
        } => {
            let Some(origin) = origin else {
                return OAuth2Step::Respond(Response::json_error(403, "origin not protected"));
            };
            match code_tokens(f, &origin, &state_cookie, answer) {
                Ok(tokens) => check_login_tokens(
                    f,
                    request,
                    &origin,
                    &jar,
                    &state_cookie,
                    login,
                    tokens,
                    idp,
                    now,
                    random,
                ),
                Err(page) => OAuth2Step::Respond(page),
            }
        }
        Pending::Refresh { session } => {
            let Some(origin) = origin else {
                return OAuth2Step::Respond(Response::json_error(403, "origin not protected"));
            };
            refresh_answer(
                f, request, args, &origin, &jar, session, answer, idp, now, random,
            )
        }
        Pending::LoginUserinfo {
            state_cookie,
            login,
            mut session,
        } => {
            let Some(origin) = origin else {
                return OAuth2Step::Respond(Response::json_error(403, "origin not protected"));
            };
            let outcome = userinfo::read(
                f,
                &answer,
                userinfo::id_token_sub(&session).as_deref(),
                idp.discovery.map_or("", |d| d.issuer.as_str()),
                idp.keys,
                now,
            );
            if let (TokenValidation::Userinfo, userinfo::Outcome::Refused(status)) =
                (f.validation, &outcome)
            {
                let detail = format!(
                    "The identity provider's UserInfo endpoint refused (HTTP {status}) the access token the identity provider has just issued, and OAuth2 filter {:?} validates access tokens with it (accessTokenValidation: userinfo): every request would be refused. Set accessTokenValidation to \"auto\" (or \"jwt\" when the access tokens are JWTs signed by the identity provider).",
                    f.name
                );
                log::warn!("OAuth2 filter {}: {detail}", f.name);
                let mut r = error_page(401, "Sign-in could not be completed", &detail);
                r.push_header("set-cookie", state_attrs(&origin, 0).clear(&state_cookie));
                return OAuth2Step::Respond(r);
            }
            userinfo::apply(f, &mut session, outcome);
            finish_login(
                f,
                request,
                &origin,
                &jar,
                &state_cookie,
                login,
                session,
                now,
                random,
            )
        }
        Pending::RefreshUserinfo { mut session } => {
            let Some(origin) = origin else {
                return OAuth2Step::Respond(Response::json_error(403, "origin not protected"));
            };
            let outcome = userinfo::read(
                f,
                &answer,
                userinfo::id_token_sub(&session).as_deref(),
                idp.discovery.map_or("", |d| d.issuer.as_str()),
                idp.keys,
                now,
            );
            userinfo::apply(f, &mut session, outcome);
            finish_refresh(f, request, args, &origin, &jar, session, now, random)
        }
        Pending::Userinfo {
            session,
            set_cookies,
        } => {
            let Some(origin) = origin else {
                return OAuth2Step::Respond(Response::json_error(403, "origin not protected"));
            };
            match answer {
                CalloutAnswer::Http { status: 200, .. } => {
                    allow(f, request, &jar, &session, set_cookies)
                }
                CalloutAnswer::Http {
                    status: status @ (401 | 403),
                    ..
                } => {
                    // The IdP stopped honouring a token it issued a while ago
                    // (an opaque token's lifetime is a guess): refresh it.
                    let stale = (now.max(0.0) as u64).saturating_sub(session.access_obtained)
                        >= REFRESH_ON_REFUSAL_AFTER;
                    if stale {
                        if let Some(step) = refresh(f, &session, idp) {
                            log::info!(
                                "OAuth2 filter {}: userinfo refused the access token; refreshing it",
                                f.name
                            );
                            return step;
                        }
                    }
                    loops::refused(
                        f,
                        request,
                        args,
                        &origin,
                        &jar,
                        &session,
                        &format!("the UserInfo endpoint refused the access token (HTTP {status})"),
                        idp,
                        now,
                        random,
                    )
                }
                other => {
                    log::warn!(
                        "OAuth2 filter {}: userinfo endpoint failed: {}",
                        f.name,
                        describe(&other)
                    );
                    OAuth2Step::Respond(f.idp_unavailable())
                }
            }
        }
    }
}

/// Goes on where [`OAuth2Step::UnknownKey`] left, once the host fetched the
/// IdP's JWK Set again: the login's ID token is checked with the fresh keys
/// (`kind` holds the token answer), or the request is checked again (an
/// access token, `kind` is `None`).
#[allow(clippy::too_many_arguments)]
pub(super) fn resume(
    f: &OAuth2Filter,
    request: &Request,
    args: &OAuth2Args,
    kind: Option<Pending>,
    idp: &IdpState<'_>,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    match kind {
        Some(Pending::IdTokenKeys {
            state_cookie,
            login,
            tokens,
        }) => {
            let Some(origin) = Origin::of(request).filter(|o| f.protects(o)) else {
                return OAuth2Step::Respond(Response::json_error(403, "origin not protected"));
            };
            let jar = CookieJar::from_headers(&request.headers);
            check_login_tokens(
                f,
                request,
                &origin,
                &jar,
                &state_cookie,
                login,
                tokens,
                idp,
                now,
                random,
            )
        }
        _ => check(f, request, args, idp, now, random),
    }
}

// ---------------------------------------------------------------------------
// Sessions on requests

fn open_session(f: &OAuth2Filter, jar: &CookieJar, now: f64) -> Option<Arc<Session>> {
    open_session_cached(f, jar, now, None)
}

/// Opens the session cookie, through the VM's cache of opened sessions when
/// there is one; then the idle and lifetime checks.
fn open_session_cached(
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
fn session_expiry(f: &OAuth2Filter, session: &Session) -> u64 {
    match f.max_idle {
        Some(idle) => session.deadline.min(session.last_seen.saturating_add(idle)),
        None => session.deadline,
    }
}

fn cookie_attrs(
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
#[allow(clippy::too_many_arguments)]
fn write_session(
    f: &OAuth2Filter,
    request: &Request,
    origin: &Origin,
    jar: &CookieJar,
    session: &Session,
    same_site: SameSite,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<Vec<String>, Response> {
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

fn session_error() -> Response {
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

fn is_safe_method(method: &str) -> bool {
    matches!(
        method.to_ascii_uppercase().as_str(),
        "GET" | "HEAD" | "OPTIONS" | "TRACE"
    )
}

/// The XSRF token a request carries: `X-XSRF-Token`, else `_xsrf` in the
/// query, else `_xsrf` in an `application/x-www-form-urlencoded` body the host
/// read (logout only: see [`logout`]).
fn presented_xsrf(request: &Request) -> Option<String> {
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
fn is_form(request: &Request) -> bool {
    request.headers.get("content-type").is_some_and(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

fn xsrf_ok(request: &Request, session: &Session) -> bool {
    presented_xsrf(request).is_some_and(|t| secrets_equal(&t, &session.xsrf))
}

/// Scopes never required of a session (AES: `offline_access` may be refused).
fn optional_scope(scope: &str) -> bool {
    scope == "openid" || scope == "offline_access"
}

#[allow(clippy::too_many_arguments)]
fn authenticated(
    f: &OAuth2Filter,
    request: &Request,
    args: &OAuth2Args,
    origin: &Origin,
    jar: &CookieJar,
    mut session: Arc<Session>,
    idp: &IdpState<'_>,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
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
        return match refresh(f, &session, idp) {
            Some(step) => step,
            None => unauthenticated(f, request, args, origin, jar, idp, now, random),
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
            match write_session(f, request, origin, jar, &session, same_site, now, random) {
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
                    return loops::refused(
                        f,
                        request,
                        args,
                        origin,
                        jar,
                        &session,
                        &format!("the access token was refused as a JWT: {why}"),
                        idp,
                        now,
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
        let Some(keys) = idp.keys else {
            return OAuth2Step::NeedIdp;
        };
        return match verify_token(&session.access_token, keys, &access_policy(), now) {
            Ok(verified) => {
                if let Some(mut c) = idp.token_cache.and_then(|c| c.try_borrow_mut().ok()) {
                    c.insert(ACCESS_TOKEN_SCOPE, keys, std::sync::Arc::new(verified), now);
                }
                allow(f, request, jar, &session, set_cookies)
            }
            Err(TokenError::UnknownKey(Some(kid)))
                if f.validation == TokenValidation::Jwt && !keys.has_kid(&kid) =>
            {
                // The IdP may have rotated its signing key: fetch its JWK Set
                // again (rate-limited) and check the request once more; if
                // the key never comes, the refusal below.
                let why = format!("the access token was refused as a JWT: unknown key id {kid:?}");
                match loops::refused(
                    f, request, args, origin, jar, &session, &why, idp, now, random,
                ) {
                    OAuth2Step::Respond(response) => OAuth2Step::UnknownKey {
                        pending: None,
                        response,
                    },
                    other => other,
                }
            }
            Err(e) => {
                let why = e.description();
                loops::refused(
                    f,
                    request,
                    args,
                    origin,
                    jar,
                    &session,
                    &format!("the access token was refused as a JWT: {why}"),
                    idp,
                    now,
                    random,
                )
            }
        };
    }
    if f.validation == TokenValidation::Auto && session.userinfo_refused {
        // Not a JWT of the IdP's keys, and its UserInfo endpoint refused it
        // when it was issued (a token for another API): it came from the token
        // endpoint over the authenticated back channel and is sealed in the
        // session, so its lifetime (`expires_in`) is what is checked.
        return allow(f, request, jar, &session, set_cookies);
    }
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
        log::warn!(
            "OAuth2 filter {}: accessTokenValidation needs the userinfo endpoint, which the IdP does not publish",
            f.name
        );
        return OAuth2Step::Respond(f.idp_unavailable());
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
        pending: pending(Pending::Userinfo {
            session: Arc::unwrap_or_clone(session),
            set_cookies,
        }),
    }
}

/// Whether the session's access token is due for a refresh: expired, or within
/// `expirationSafetyMargin` of it.
fn access_due(f: &OAuth2Filter, session: &Session, now: f64) -> bool {
    session
        .access_expires_at
        .is_some_and(|exp| now + f.margin as f64 >= exp as f64)
}

/// The refresh of `session` (RFC 6749 §6), or `None` when it has no refresh
/// token. Every request of the session shares one refresh per Envoy, across
/// its worker VMs and for late requests that still carry the cookie from
/// before it: the callout's share key is the filter, the client, the refresh
/// token and the access token it replaces (see [`crate::shared_callout`]).
fn refresh(f: &OAuth2Filter, session: &Session, idp: &IdpState<'_>) -> Option<OAuth2Step> {
    let rt = session.refresh_token.as_deref()?;
    let d = idp.discovery?;
    let Some(target) = f.callout_target(&d.token_endpoint) else {
        return Some(OAuth2Step::Respond(f.idp_unavailable()));
    };
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", rt)];
    let mut callout = token_callout(f, &target, &mut form, None);
    // The refresh of this access token with this refresh token: an IdP that
    // does not rotate refresh tokens gets the same one again, and its next
    // refresh (of the next access token) is another callout.
    callout.share = Some(ShareKey::of(&[
        b"refresh",
        f.name.as_bytes(),
        f.client_id.as_bytes(),
        rt.as_bytes(),
        session.access_token.as_bytes(),
    ]));
    Some(OAuth2Step::Callout {
        callout,
        pending: pending(Pending::Refresh {
            session: session.clone(),
        }),
    })
}

/// `accessTokenValidation: auto`: a JWT whose signature a key of the IdP checks.
fn signed_by_idp(token: &str, keys: &KeySet) -> bool {
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

/// The verified-token cache scope of access tokens (JWT filters use their
/// index; an entry also belongs to one key set, and a hit re-checks the issuer).
const ACCESS_TOKEN_SCOPE: u64 = 1 << 63;

/// What `jwt` (and `auto`, for a JWT signed by the IdP) checks of a session's
/// access token: a key of the IdP's current JWK Set signs it, and `exp`/`nbf`/
/// `iat` hold (60 s leeway). Not `iss` nor `aud`: the token came from the
/// IdP's token endpoint over the authenticated back channel and is sealed in
/// the session, so it is no forgery; a token the IdP issued for another API
/// (Azure AD v1 `iss` `https://sts.windows.net/<tenant>/`) is still its token.
fn access_policy() -> ClaimPolicy {
    ClaimPolicy {
        valid_algorithms: signing_algorithms(),
        leeway_for_expires_at: ID_TOKEN_LEEWAY,
        leeway_for_not_before: ID_TOKEN_LEEWAY,
        leeway_for_issued_at: ID_TOKEN_LEEWAY,
        ..ClaimPolicy::default()
    }
}

/// The template dot: `.token` (the access token, when a JWT), `.idToken`,
/// `.userinfo` (a map, empty without UserInfo claims), `.tls`.
fn template_root(
    request: &Request,
    access_token: &str,
    id_token: Option<&str>,
    userinfo: Option<&Map<String, Value>>,
) -> Value {
    let mut root = Map::new();
    let decoded = |raw: &str| {
        decode_unverified(raw).ok().map(|t| {
            json!({
                "Raw": t.raw,
                "Header": go_json_numbers(&Value::Object(t.header)),
                "Claims": go_json_numbers(&Value::Object(t.claims)),
                "Signature": t.signature,
            })
        })
    };
    if let Some(t) = decoded(access_token) {
        root.insert("token".to_string(), t);
    }
    if let Some(t) = id_token.and_then(decoded) {
        root.insert("idToken".to_string(), t);
    }
    let claims = userinfo.map_or(Value::Object(Map::new()), |u| {
        go_json_numbers(&Value::Object(u.clone()))
    });
    root.insert("userinfo".to_string(), claims);
    if let Some(tls) = &request.tls {
        root.insert("tls".to_string(), crate::mtls::tls_value(tls));
    }
    Value::Object(root)
}

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
    let root = template_root(request, access_token, id_token, userinfo);
    let data = RenderData {
        root: &root,
        headers: request.headers_as_sent(),
    };
    changes.extend(render_injected(&f.inject, &data));
    changes
}

/// Allow with the session's token, the Portcullis cookies removed from `Cookie`.
fn allow(
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
    }
}

// ---------------------------------------------------------------------------
// Unauthenticated requests and the login redirect

#[allow(clippy::too_many_arguments)]
pub(super) fn unauthenticated(
    f: &OAuth2Filter,
    request: &Request,
    args: &OAuth2Args,
    origin: &Origin,
    jar: &CookieJar,
    idp: &IdpState<'_>,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
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
    let scripted = request
        .headers
        .get("x-requested-with")
        .is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"));
    let navigation = matches!(request.method.to_ascii_uppercase().as_str(), "GET" | "HEAD");
    let status = if let Some(i) = instead {
        Some(i.status)
    } else if !navigation || scripted {
        Some(args.instead_of_redirect.as_ref().map_or(401, |i| i.status))
    } else {
        None
    };
    let mut response = match status {
        Some(status) => Response::json_error(
            status,
            "authentication required: no valid session (log in with a browser first)",
        ),
        None => login_redirect(f, request, args, origin, jar, idp, now, random),
    };
    for c in stale {
        response.push_header("set-cookie", c);
    }
    OAuth2Step::Respond(response)
}

#[allow(clippy::too_many_arguments)]
fn login_redirect(
    f: &OAuth2Filter,
    request: &Request,
    args: &OAuth2Args,
    origin: &Origin,
    jar: &CookieJar,
    idp: &IdpState<'_>,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> Response {
    let Some(discovery) = idp.discovery else {
        return f.idp_unavailable();
    };
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
    let attrs = state_attrs(origin, LOGIN_STATE_LIFETIME);
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
    // Bound the logins in progress: past the limit, forget the older ones.
    let existing: Vec<&str> = jar.names().filter(|n| f.owns_state_cookie(n)).collect();
    if existing.len() >= MAX_PENDING_LOGINS {
        for n in existing {
            response.push_header("set-cookie", attrs.clear(n));
        }
    }
    response.push_header("set-cookie", attrs.set(&state_name, &sealed));
    response.push_header("set-cookie", counted);
    response
}

/// The longest path and query the state cookie keeps to return to after a
/// login: a longer one would take the cookie past the 4096 bytes a browser
/// keeps, and the callback would find no login.
pub const MAX_RETURN_PATH: usize = 2048;

/// Where a login returns: the request's own path and query (never another
/// origin); past [`MAX_RETURN_PATH`] its path alone, and past it too the
/// origin's root.
fn return_path(path: &str) -> &str {
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

fn state_attrs(origin: &Origin, max_age: u64) -> CookieAttrs {
    CookieAttrs {
        secure: origin.is_https(),
        same_site: SameSite::Lax,
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

// ---------------------------------------------------------------------------
// The callback

fn callback(
    f: &OAuth2Filter,
    request: &Request,
    origin: &Origin,
    jar: &CookieJar,
    idp: &IdpState<'_>,
    now: f64,
) -> OAuth2Step {
    let Some(discovery) = idp.discovery else {
        return OAuth2Step::NeedIdp;
    };
    let params = query_params(&request.path);
    let state = query_param(&params, "state").unwrap_or("");
    let state_base = f.cookie_base("state");
    let found = state.get(..STATE_ID_LEN).and_then(|id| {
        let name = format!("{state_base}.{id}");
        // Every cookie of the name (a duplicate at another path or domain).
        let login = jar.get_all(&name).find_map(|value| {
            let plain = f.keys.open(&name, value, now)?;
            let login: LoginState = serde_json::from_slice(&plain).ok()?;
            secrets_equal(&login.state, state).then_some(login)
        })?;
        Some((name, login))
    });
    let Some((state_cookie, login)) = found else {
        // A stale tab, a replayed or forged callback. With a session already
        // (the back button after a login), go home; else a page, not a loop.
        if open_session(f, jar, now).is_some() {
            return OAuth2Step::Respond(redirect(&format!("{}/", origin.url())));
        }
        return OAuth2Step::Respond(error_page(
            400,
            "Sign-in could not be completed",
            "This sign-in link has expired or was not started in this browser. Go back to the application to sign in again.",
        ));
    };
    let clear_state = state_attrs(origin, 0).clear(&state_cookie);
    let fail = |status: u16, detail: &str| {
        let mut r = error_page(status, "Sign-in could not be completed", detail);
        r.push_header("set-cookie", clear_state.clone());
        OAuth2Step::Respond(r)
    };
    if let Some(error) = query_param(&params, "error") {
        // The answer's words go to the log only (escaped, bounded): anyone can
        // craft this link (RFC 6749 §10.13); the page has fixed text.
        let description = query_param(&params, "error_description").unwrap_or("");
        log::info!(
            "OAuth2 filter {}: the IdP refused the login: error={:?} error_description={:?}",
            f.name,
            cut(error, 100),
            cut(description, 300)
        );
        let (text, code) = super::idp_error::refused_text(error);
        let detail = match code {
            Some(code) => format!("{text} ({code})"),
            None => text.to_string(),
        };
        return fail(401, &detail);
    }
    match query_param(&params, "iss") {
        Some(iss) if iss != discovery.issuer => {
            return fail(
                400,
                "The sign-in answer came from another identity provider (iss).",
            )
        }
        None if discovery.iss_parameter_supported => {
            return fail(
                400,
                "The sign-in answer lacks the identity provider's iss parameter.",
            )
        }
        _ => {}
    }
    let Some(code) = query_param(&params, "code").filter(|c| !c.is_empty() && c.len() <= 4096)
    else {
        return fail(400, "The sign-in answer has no authorization code.");
    };
    let Some(target) = f.callout_target(&discovery.token_endpoint) else {
        return fail(503, "The identity provider's token endpoint is not usable.");
    };
    let redirect_uri = format!("{}{}", origin.url(), f.callback_path);
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", login.verifier.as_str()),
    ];
    let callout = token_callout(f, &target, &mut form, None);
    OAuth2Step::Callout {
        callout,
        pending: pending(Pending::CodeExchange {
            state_cookie,
            login,
        }),
    }
}

fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A POST to the token endpoint with the client's authentication. `client`
/// overrides the configured client id and secret (ClientCredentials).
pub(super) fn token_callout<'a>(
    f: &'a OAuth2Filter,
    target: &CalloutTarget,
    form: &mut Vec<(&'a str, &'a str)>,
    client: Option<(&'a str, &'a str)>,
) -> Callout {
    let (id, secret) = match client {
        Some((id, secret)) => (id, Some(secret)),
        None => (f.client_id.as_str(), f.secret.as_deref()),
    };
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), target.path.clone()),
        (":authority".to_string(), target.authority.clone()),
        (":scheme".to_string(), target.scheme.clone()),
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("accept".to_string(), "application/json".to_string()),
    ];
    match (secret, f.client_auth) {
        (Some(secret), super::ClientAuth::Basic) => {
            // RFC 6749 §2.3.1: each part form-urlencoded before base64.
            let credentials = format!("{}:{}", percent_encode(id), percent_encode(secret));
            headers.push((
                "authorization".to_string(),
                format!("Basic {}", STANDARD.encode(credentials)),
            ));
        }
        (Some(secret), super::ClientAuth::Post) => {
            form.push(("client_id", id));
            form.push(("client_secret", secret));
        }
        (None, _) => form.push(("client_id", id)),
    }
    let body = form_encode(form.iter().copied()).into_bytes();
    headers.push(("content-length".to_string(), body.len().to_string()));
    Callout {
        cluster: target.cluster.clone(),
        kind: CalloutKind::http_text(headers, body),
        timeout: CALLOUT_TIMEOUT,
        share: None,
    }
}

/// A token endpoint's 200 answer.
#[derive(Debug)]
pub(super) struct TokenAnswer {
    pub access_token: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
    /// Seconds since the IdP answered (the `Age` of a refresh answer another
    /// request received and shared; 0 for an answer just received).
    pub age: u64,
}

/// Why a token call did not give tokens.
pub(super) enum TokenFailure {
    /// No answer or 5xx: the IdP is down.
    Unavailable(String),
    /// 4xx: the IdP refused (`invalid_grant`, bad credentials).
    Refused(String),
    /// A 200 that is not a usable token answer.
    Garbled(String),
}

pub(super) fn describe(answer: &CalloutAnswer) -> String {
    match answer {
        CalloutAnswer::Http { status, .. } => format!("HTTP {status}"),
        CalloutAnswer::Grpc { status_code, .. } => format!("gRPC status {status_code}"),
        CalloutAnswer::Failed { reason } => format!("no answer: {reason}"),
    }
}

pub(super) fn read_token_answer(answer: CalloutAnswer) -> Result<TokenAnswer, TokenFailure> {
    let (body, age) = match answer {
        CalloutAnswer::Http {
            status: 200,
            body,
            headers,
        } => {
            let age = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("age"))
                .and_then(|(_, v)| {
                    std::str::from_utf8(v.trim_ascii())
                        .ok()?
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0);
            (body, age)
        }
        CalloutAnswer::Http { status, body, .. } if (400..500).contains(&status) => {
            let error = serde_json::from_slice::<Map<String, Value>>(&body)
                .ok()
                .and_then(|m| m.get("error").and_then(Value::as_str).map(|e| cut(e, 100)))
                .unwrap_or_default();
            return Err(TokenFailure::Refused(format!("HTTP {status} {error}")));
        }
        other => return Err(TokenFailure::Unavailable(describe(&other))),
    };
    if body.len() > MAX_ANSWER_BYTES {
        return Err(TokenFailure::Garbled("token answer too large".to_string()));
    }
    let map: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|_| TokenFailure::Garbled("token answer is not a JSON object".to_string()))?;
    let text = |name: &str, max: usize| -> Result<Option<String>, TokenFailure> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s))
                if s.len() <= max && !s.bytes().any(|b| b.is_ascii_control() || b == b' ') =>
            {
                Ok(Some(s.clone()))
            }
            Some(_) => Err(TokenFailure::Garbled(format!(
                "token answer: bad \"{name}\""
            ))),
        }
    };
    let access_token = text("access_token", MAX_TOKEN_LEN)?
        .ok_or_else(|| TokenFailure::Garbled("token answer has no access_token".to_string()))?;
    if let Some(t) = map.get("token_type").and_then(Value::as_str) {
        if !t.eq_ignore_ascii_case("bearer") {
            return Err(TokenFailure::Garbled(format!(
                "token_type {:?} is not Bearer",
                cut(t, 40)
            )));
        }
    }
    let expires_in = match map.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64().filter(|v| *v >= 0.0).map(|v| v.min(1e9) as u64),
        // Some IdPs send it as a string.
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v.min(1e9) as u64),
        Some(_) => None,
    };
    let scope = match map.get("scope") {
        Some(Value::String(s)) if s.len() <= 4096 => Some(s.clone()),
        _ => None,
    };
    Ok(TokenAnswer {
        access_token,
        id_token: text("id_token", MAX_TOKEN_LEN)?,
        refresh_token: text("refresh_token", MAX_REFRESH_TOKEN_LEN)?,
        expires_in,
        scope,
        age,
    })
}

/// A new session from a token answer.
fn new_session(
    f: &OAuth2Filter,
    tokens: TokenAnswer,
    requested_scope: &str,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> Session {
    let now_s = now.max(0.0) as u64;
    let refreshable = tokens.refresh_token.is_some();
    let access_expires_at = access_expiry(&tokens, refreshable, now_s);
    let deadline = if refreshable {
        now_s.saturating_add(REFRESH_SESSION_LIFETIME)
    } else {
        access_expires_at.unwrap_or(now_s.saturating_add(DEFAULT_ACCESS_LIFETIME))
    };
    let _ = f;
    Session {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        id_token: tokens.id_token,
        access_expires_at,
        access_obtained: now_s,
        created: now_s,
        last_seen: now_s,
        deadline,
        xsrf: random_token(random, 32),
        scope: tokens.scope.unwrap_or_else(|| requested_scope.to_string()),
        userinfo: None,
        userinfo_refused: false,
    }
}

/// When the access token of a token answer is due for a refresh (Unix s):
/// `expires_in` (RFC 6749 §5.1), else the token's own `exp` when it is a JWT.
/// With neither (an opaque token, and an IdP that leaves out the RECOMMENDED
/// `expires_in`) and a refresh token to refresh with, the token is assumed to
/// live [`ASSUMED_ACCESS_LIFETIME`]: the session refreshes then rather than
/// never (and earlier when UserInfo refuses the token; see `on_answer`).
/// `None` only when there is nothing to refresh with.
fn access_expiry(tokens: &TokenAnswer, refreshable: bool, now_s: u64) -> Option<u64> {
    // As of when the IdP answered.
    let now_s = now_s.saturating_sub(tokens.age);
    let known = match tokens.expires_in {
        Some(secs) => Some(now_s.saturating_add(secs)),
        None => decode_unverified(&tokens.access_token)
            .ok()
            .and_then(|t| t.claims.get("exp").and_then(Value::as_f64))
            .filter(|e| *e > 0.0)
            .map(|e| e.min(1e12) as u64),
    };
    known.or_else(|| refreshable.then(|| now_s.saturating_add(ASSUMED_ACCESS_LIFETIME)))
}

/// The tokens of the code exchange's answer (RFC 6749 §4.1.4), or the error
/// page a failed exchange answers (clearing the state cookie).
fn code_tokens(
    f: &OAuth2Filter,
    origin: &Origin,
    state_cookie: &str,
    answer: CalloutAnswer,
) -> Result<TokenAnswer, Response> {
    let clear_state = state_attrs(origin, 0).clear(state_cookie);
    let fail = |status: u16, detail: &str| {
        let mut r = error_page(status, "Sign-in could not be completed", detail);
        r.push_header("set-cookie", clear_state.clone());
        Err(r)
    };
    let tokens = match read_token_answer(answer) {
        Ok(t) => t,
        Err(TokenFailure::Unavailable(why)) => {
            log::warn!("OAuth2 filter {}: code exchange failed: {why}", f.name);
            return fail(
                503,
                "The identity provider cannot be reached right now. Please try again in a moment.",
            );
        }
        Err(TokenFailure::Refused(why)) => {
            log::info!("OAuth2 filter {}: code exchange refused: {why}", f.name);
            return fail(401, "The identity provider refused the sign-in code (it may have been used already). Go back to the application to sign in again.");
        }
        Err(TokenFailure::Garbled(why)) => {
            log::warn!("OAuth2 filter {}: code exchange: {why}", f.name);
            return fail(502, "The identity provider's answer could not be used.");
        }
    };
    Ok(tokens)
}

/// The tokens the token endpoint gave at login: the ID token check (and with
/// `accessTokenValidation: jwt` the access token's), then the session. A token
/// naming a `kid` the IdP's JWK Set lacks asks for fresh keys
/// ([`OAuth2Step::UnknownKey`]); the host calls [`resume`] with the tokens
/// when they come, and they are checked again.
#[allow(clippy::too_many_arguments)]
fn check_login_tokens(
    f: &OAuth2Filter,
    request: &Request,
    origin: &Origin,
    jar: &CookieJar,
    state_cookie: &str,
    login: LoginState,
    tokens: TokenAnswer,
    idp: &IdpState<'_>,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let clear_state = state_attrs(origin, 0).clear(state_cookie);
    let fail_page = |status: u16, detail: &str| {
        let mut r = error_page(status, "Sign-in could not be completed", detail);
        r.push_header("set-cookie", clear_state.clone());
        r
    };
    let fail = |status: u16, detail: &str| OAuth2Step::Respond(fail_page(status, detail));
    let (Some(discovery), Some(keys)) = (idp.discovery, idp.keys) else {
        return fail(
            503,
            "The identity provider's keys are not available right now.",
        );
    };
    let Some(id_token) = tokens.id_token.as_deref() else {
        return fail(502, "The identity provider did not issue an ID token.");
    };
    const ID_TOKEN_REFUSED: &str = "The identity provider's ID token could not be verified.";
    match check_id_token(
        &f.client_id,
        id_token,
        &discovery.issuer,
        keys,
        Some(&login.nonce),
        now,
    ) {
        Ok(_) => {}
        Err(IdTokenError::UnknownKid(kid)) => {
            log::info!(
                "OAuth2 filter {}: the ID token names key {kid:?}, which the IdP's JWK Set lacks",
                f.name
            );
            let response = fail_page(401, ID_TOKEN_REFUSED);
            return OAuth2Step::UnknownKey {
                pending: Some(pending(Pending::IdTokenKeys {
                    state_cookie: state_cookie.to_string(),
                    login,
                    tokens,
                })),
                response,
            };
        }
        Err(why) => {
            log::info!(
                "OAuth2 filter {}: ID token refused: {}",
                f.name,
                why.describe()
            );
            return fail(401, ID_TOKEN_REFUSED);
        }
    }
    if f.validation == TokenValidation::Jwt {
        let checked = verify_token(&tokens.access_token, keys, &access_policy(), now);
        if let Err(TokenError::UnknownKey(Some(kid))) = &checked {
            if !keys.has_kid(kid) {
                log::info!(
                    "OAuth2 filter {}: the access token names key {kid:?}, which the IdP's JWK Set lacks",
                    f.name
                );
                let response = fail_page(
                    401,
                    "The identity provider's access token could not be verified.",
                );
                return OAuth2Step::UnknownKey {
                    pending: Some(pending(Pending::IdTokenKeys {
                        state_cookie: state_cookie.to_string(),
                        login,
                        tokens,
                    })),
                    response,
                };
            }
        }
        if let Err(e) = checked {
            let detail = format!(
                "OAuth2 filter {:?} validates access tokens as JWTs signed by the identity provider (accessTokenValidation: jwt), and the access token the identity provider has just issued is refused: {}. Every request would be refused. Set accessTokenValidation to \"auto\".",
                f.name,
                e.description()
            );
            log::warn!("OAuth2 filter {}: {detail}", f.name);
            return fail(401, &detail);
        }
    }
    let session = new_session(f, tokens, &login.scope, now, random);
    match userinfo::callout(
        f,
        discovery.userinfo_endpoint.as_deref(),
        &session.access_token,
    ) {
        Some(callout) => OAuth2Step::Callout {
            callout,
            pending: pending(Pending::LoginUserinfo {
                state_cookie: state_cookie.to_string(),
                login,
                session,
            }),
        },
        None => finish_login(
            f,
            request,
            origin,
            jar,
            state_cookie,
            login,
            session,
            now,
            random,
        ),
    }
}

/// The end of a login: the session cookies, and the way back to the URL the
/// login started from.
#[allow(clippy::too_many_arguments)]
fn finish_login(
    f: &OAuth2Filter,
    request: &Request,
    origin: &Origin,
    jar: &CookieJar,
    state_cookie: &str,
    login: LoginState,
    session: Session,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let clear_state = state_attrs(origin, 0).clear(state_cookie);
    let mut cookies = match write_session(
        f,
        request,
        origin,
        jar,
        &session,
        login.same_site,
        now,
        random,
    ) {
        Ok(c) => c,
        Err(r) => return OAuth2Step::Respond(r),
    };
    cookies.push(clear_state);
    // Never an open redirect: the URL must be on this request's protected origin.
    let home = format!("{}/", origin.url());
    let target = login
        .url
        .strip_prefix(&origin.url())
        .filter(|rest| rest.starts_with('/') && !rest.starts_with("//"))
        .map_or(home, |_| login.url.clone());
    let mut response = if login.same_site == SameSite::Strict {
        continue_page(&target)
    } else {
        redirect(&target)
    };
    for c in cookies {
        response.push_header("set-cookie", c);
    }
    OAuth2Step::Respond(response)
}

/// A 200 page that moves on to `target` by itself: a same-site navigation, so
/// `SameSite=Strict` cookies set here are sent with it.
fn continue_page(target: &str) -> Response {
    let t = html_escape(target);
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={t}\"><title>Signed in</title></head><body><p>Signed in. <a href=\"{t}\">Continue</a></p></body></html>\n"
    );
    Response {
        status: 200,
        headers: vec![
            (
                "content-type".to_string(),
                "text/html; charset=utf-8".into(),
            ),
            ("cache-control".to_string(), "no-store".into()),
        ],
        body: body.into_bytes(),
    }
}

#[allow(clippy::too_many_arguments)]
fn refresh_answer(
    f: &OAuth2Filter,
    request: &Request,
    args: &OAuth2Args,
    origin: &Origin,
    jar: &CookieJar,
    old: Session,
    answer: CalloutAnswer,
    idp: &IdpState<'_>,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let tokens = match read_token_answer(answer) {
        Ok(t) => t,
        Err(TokenFailure::Refused(why)) | Err(TokenFailure::Garbled(why)) => {
            log::info!("OAuth2 filter {}: refresh failed: {why}; new login", f.name);
            return unauthenticated(f, request, args, origin, jar, idp, now, random);
        }
        Err(TokenFailure::Unavailable(why)) => {
            log::warn!("OAuth2 filter {}: refresh failed: {why}", f.name);
            return OAuth2Step::Respond(f.idp_unavailable());
        }
    };
    if let Some(id_token) = tokens.id_token.as_deref() {
        let (Some(discovery), Some(keys)) = (idp.discovery, idp.keys) else {
            return OAuth2Step::Respond(f.idp_unavailable());
        };
        // OIDC Core §12.2: no nonce on a refreshed ID token, and its `iss` and
        // `sub` are the session's (another subject ends the session).
        let checked = check_id_token(&f.client_id, id_token, &discovery.issuer, keys, None, now)
            .map_err(|e| e.describe())
            .and_then(|_| same_subject(old.id_token.as_deref(), id_token));
        if let Err(why) = checked {
            log::info!(
                "OAuth2 filter {}: refreshed ID token refused: {why}; new login",
                f.name
            );
            return unauthenticated(f, request, args, origin, jar, idp, now, random);
        }
    }
    let now_s = now.max(0.0) as u64;
    // RFC 6749 §6: no `refresh_token` in the answer keeps the one used; no
    // `id_token` keeps the session's.
    let refresh_token = tokens.refresh_token.clone().or(old.refresh_token);
    let session = Session {
        access_expires_at: access_expiry(&tokens, refresh_token.is_some(), now_s),
        access_obtained: now_s,
        access_token: tokens.access_token,
        refresh_token,
        id_token: tokens.id_token.or(old.id_token),
        created: old.created,
        last_seen: now_s,
        deadline: old.deadline,
        xsrf: old.xsrf,
        scope: tokens.scope.unwrap_or(old.scope),
        userinfo: old.userinfo,
        userinfo_refused: false,
    };
    // A shared answer that came long enough ago that its access token is due
    // already (a short-lived token and a late request): refresh again, with
    // the refresh token it gave.
    if tokens.age > 0 && access_due(f, &session, now) {
        if let Some(step) = refresh(f, &session, idp) {
            return step;
        }
    }
    // The claims of the new access token's UserInfo answer.
    let endpoint = idp.discovery.and_then(|d| d.userinfo_endpoint.as_deref());
    match userinfo::callout(f, endpoint, &session.access_token) {
        Some(callout) => OAuth2Step::Callout {
            callout,
            pending: pending(Pending::RefreshUserinfo { session }),
        },
        None => finish_refresh(f, request, args, origin, jar, session, now, random),
    }
}

/// The end of a refresh: the new session cookie goes out with the upstream's
/// response.
#[allow(clippy::too_many_arguments)]
fn finish_refresh(
    f: &OAuth2Filter,
    request: &Request,
    args: &OAuth2Args,
    origin: &Origin,
    jar: &CookieJar,
    session: Session,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    match write_session(
        f,
        request,
        origin,
        jar,
        &session,
        args.same_site,
        now,
        random,
    ) {
        Ok(cookies) => allow(f, request, jar, &session, cookies),
        Err(r) => OAuth2Step::Respond(r),
    }
}

/// OIDC Core §12.2: a refreshed ID token names the `iss` and `sub` of the
/// session's ID token (when the session has one).
fn same_subject(old: Option<&str>, new: &str) -> Result<(), String> {
    let Some(old) = old.and_then(|t| decode_unverified(t).ok()) else {
        return Ok(());
    };
    let new = decode_unverified(new).map_err(|e| e.description())?;
    for claim in ["iss", "sub"] {
        if old.claims.get(claim) != new.claims.get(claim) {
            return Err(format!("its {claim} is not the session's"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Logout

fn logout(
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
fn logout_url(f: &OAuth2Filter, end_session: &str, id_token: Option<&str>) -> String {
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
