//! The callback (redirection endpoint): the state checked, the code exchanged (RFC 6749 §4.1.3), the ID token checked, the session made and the browser sent on.

use super::awaiting::{pending, Awaiting};
use super::encoding::{html_escape, query_param, query_params, random_token, secrets_equal};
use super::events::{note, IdpErrorKind, OAuth2Event, OAuth2Events};
use super::id_token::{check_id_token, IdTokenError};
use super::login::{redirect, state_attrs, LoginState, STATE_ID_LEN};
use super::session::{CookieJar, SameSite, Session};
use super::session_store::{open_session, write_session};
use super::token_endpoint::{access_expiry, access_policy};
use super::token_endpoint::{cut, read_token_answer, token_callout, TokenAnswer, TokenFailure};
use super::xsrf::is_form;
use super::FlowContext;
use super::{
    error_page, userinfo, IdpState, OAuth2Filter, OAuth2Step, Origin, TokenValidation,
    DEFAULT_ACCESS_LIFETIME, MAX_CALLBACK_FORM_BYTES, REFRESH_SESSION_LIFETIME,
};
use crate::callout::CalloutAnswer;
use crate::jwt::verify::verify_token;
use crate::jwt::TokenError;
use crate::request::Request;
use crate::response::Response;

pub(super) fn callback(
    f: &OAuth2Filter,
    request: &Request,
    origin: &Origin,
    jar: &CookieJar,
    idp: &IdpState<'_>,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let Some(discovery) = idp.discovery else {
        return OAuth2Step::NeedIdp;
    };
    let params = match answer_params(request) {
        Ok(params) => params,
        Err(step) => return step,
    };
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
        if request.method.eq_ignore_ascii_case("POST") && !f.form_post {
            log::info!(
                "OAuth2 filter {}: the identity provider posted the sign-in answer (response_mode form_post), and no login state cookie came with it: a SameSite=Lax cookie is not sent on a cross-site POST. Set extraAuthorizationParameters.response_mode to \"form_post\" (https origins)",
                f.name
            );
        }
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
    let clear_state = state_attrs(f, origin, 0).clear(&state_cookie);
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
    let callout = token_callout(f, &target, &mut form, None, now, random);
    OAuth2Step::Callout {
        callout,
        pending: pending(Awaiting::CodeExchange {
            state_cookie,
            login,
        }),
    }
}

/// The authorization response's parameters (RFC 6749 §4.1.2): a GET's query,
/// or a POST's `application/x-www-form-urlencoded` body (OAuth 2.0 Form Post
/// Response Mode §2), at most [`MAX_CALLBACK_FORM_BYTES`]. `Err` with the
/// step to take instead: read the body first, or a page (not a form: 415;
/// too large: 413).
#[allow(clippy::result_large_err)] // once per callback
fn answer_params(request: &Request) -> Result<Vec<(String, String)>, OAuth2Step> {
    if !request.method.eq_ignore_ascii_case("POST") {
        return Ok(query_params(&request.path));
    }
    if !is_form(request) {
        return Err(OAuth2Step::Respond(error_page(
            415,
            "Sign-in could not be completed",
            "The sign-in answer was posted in a form this site does not read (application/x-www-form-urlencoded expected).",
        )));
    }
    let Some(body) = &request.body else {
        return Err(OAuth2Step::NeedBody {
            max_bytes: MAX_CALLBACK_FORM_BYTES,
        });
    };
    if body.len() > MAX_CALLBACK_FORM_BYTES {
        return Err(OAuth2Step::Respond(error_page(
            413,
            "Sign-in could not be completed",
            &format!("The sign-in answer is larger than the {MAX_CALLBACK_FORM_BYTES} bytes this site reads."),
        )));
    }
    Ok(form_params(body))
}

/// The fields of an `application/x-www-form-urlencoded` body.
fn form_params(body: &[u8]) -> Vec<(String, String)> {
    query_params(&format!("?{}", String::from_utf8_lossy(body)))
}

/// Whether the request is a posted answer whose body the host has not read yet.
pub(super) fn awaits_form(request: &Request) -> bool {
    request.method.eq_ignore_ascii_case("POST") && request.body.is_none() && is_form(request)
}

/// The `state` of an authorization response (query, or the posted form once
/// read); `None` when there is none, or the form is not read yet.
pub(super) fn answer_state(request: &Request) -> Option<String> {
    let params = if request.method.eq_ignore_ascii_case("POST") {
        form_params(request.body.as_ref().filter(|_| is_form(request))?)
    } else {
        query_params(&request.path)
    };
    query_param(&params, "state").map(str::to_string)
}

/// A new session from a token answer.
pub(super) fn new_session(
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

/// The tokens of the code exchange's answer (RFC 6749 §4.1.4), or the error
/// page a failed exchange answers (clearing the state cookie). An answer
/// that is no token answer is noted in `events`.
pub(super) fn code_tokens(
    f: &OAuth2Filter,
    origin: &Origin,
    state_cookie: &str,
    answer: CalloutAnswer,
    events: Option<&OAuth2Events>,
) -> Result<TokenAnswer, Response> {
    let clear_state = state_attrs(f, origin, 0).clear(state_cookie);
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
            note(events, OAuth2Event::IdpError(IdpErrorKind::InvalidAnswer));
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
pub(super) fn check_login_tokens(
    cx: &FlowContext<'_>,
    origin: &Origin,
    jar: &CookieJar,
    state_cookie: &str,
    login: LoginState,
    tokens: TokenAnswer,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let (f, _, _, idp, now) = cx.parts();
    let clear_state = state_attrs(f, origin, 0).clear(state_cookie);
    let fail_page = |status: u16, detail: &str| {
        let mut r = error_page(status, "Sign-in could not be completed", detail);
        r.push_header("set-cookie", clear_state.clone());
        r
    };
    let fail = |status: u16, detail: &str| OAuth2Step::Respond(fail_page(status, detail));
    let (Some(discovery), Some(keys)) = (idp.discovery, idp.keys) else {
        note(idp.events, OAuth2Event::IdpError(IdpErrorKind::NotLoaded));
        return fail(
            503,
            "The identity provider's keys are not available right now.",
        );
    };
    let Some(id_token) = tokens.id_token.as_deref() else {
        note(
            idp.events,
            OAuth2Event::IdpError(IdpErrorKind::InvalidAnswer),
        );
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
                pending: Some(pending(Awaiting::IdTokenKeys {
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
                    pending: Some(pending(Awaiting::IdTokenKeys {
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
            pending: pending(Awaiting::LoginUserinfo {
                state_cookie: state_cookie.to_string(),
                login,
                session,
            }),
        },
        None => finish_login(cx, origin, jar, state_cookie, login, session, random),
    }
}

/// The end of a login: the session cookies, and the way back to the URL the
/// login started from.
pub(super) fn finish_login(
    cx: &FlowContext<'_>,
    origin: &Origin,
    jar: &CookieJar,
    state_cookie: &str,
    login: LoginState,
    session: Session,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let (f, request, _, _, now) = cx.parts();
    let clear_state = state_attrs(f, origin, 0).clear(state_cookie);
    // A posted answer (form_post) came cross-site, without the browser's
    // SameSite=Lax session cookies: clear every form a previous session may
    // have left, or a stale chunk would spoil the new session.
    let every_form;
    let session_jar = if request.method.eq_ignore_ascii_case("POST") {
        every_form = CookieJar::every_form(&f.cookie_base("session"));
        &every_form
    } else {
        jar
    };
    let mut cookies =
        match write_session(cx, origin, session_jar, &session, login.same_site, random) {
            Ok(c) => c,
            Err(r) => return OAuth2Step::Respond(r),
        };
    cookies.push(clear_state);
    cookies.push(super::loops::completed_login(f, origin, jar, now));
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
    note(cx.idp.events, OAuth2Event::LoginCompleted);
    OAuth2Step::Respond(response)
}

/// A 200 page that moves on to `target` by itself: a same-site navigation, so
/// `SameSite=Strict` cookies set here are sent with it.
pub(super) fn continue_page(target: &str) -> Response {
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
