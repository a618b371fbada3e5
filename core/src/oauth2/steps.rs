use super::access::authenticated;
use super::awaiting::Awaiting;
use super::callback::{callback, check_login_tokens, code_tokens, finish_login};
use super::events::{idp_failed, note, IdpErrorKind, OAuth2Event};
use super::login::{state_attrs, unauthenticated};
use super::logout::logout;
use super::refresh::{finish_refresh, refresh, refresh_answer};
use super::session::CookieJar;
use super::session_store::open_session_cached;
use super::token_endpoint::describe;
use super::upstream::allow;
use super::FlowContext;
use super::{
    error_page, grants, userinfo, IdpState, OAuth2Args, OAuth2Filter, OAuth2Step, Origin,
    TokenValidation, REFRESH_ON_REFUSAL_AFTER,
};
use crate::callout::CalloutAnswer;
use crate::request::Request;
use crate::response::Response;

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
    if f.foreign_endpoint_request(request, &jar) {
        return OAuth2Step::Allow {
            request: Vec::new(),
            response: Vec::new(),
            identity: None,
        };
    }
    if f.is_callback_path(path) {
        let step = callback(f, request, &origin, &jar, idp, now, random);
        return login_ended(idp, step);
    }
    if super::is_logout_path(path) {
        return logout(f, request, &origin, &jar, idp, now);
    }
    match open_session_cached(f, &jar, now, idp.session_cache) {
        Some(session) => authenticated(
            &FlowContext {
                f,
                request,
                args,
                idp,
                now,
            },
            &origin,
            &jar,
            session,
            random,
        ),
        None => unauthenticated(
            &FlowContext {
                f,
                request,
                args,
                idp,
                now,
            },
            &origin,
            &jar,
            random,
        ),
    }
}

pub(super) fn on_answer(
    cx: &FlowContext<'_>,
    kind: Awaiting,
    answer: CalloutAnswer,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let (f, request, _, idp, now) = cx.parts();
    let jar = CookieJar::from_headers(&request.headers);
    let origin = f.origin_of(request);
    if !matches!(kind, Awaiting::IdTokenKeys { .. }) && idp_failed(&answer) {
        note(idp.events, OAuth2Event::IdpError(IdpErrorKind::Unavailable));
    }
    match kind {
        Awaiting::Grant => grants::on_answer(f, request, answer, idp.events),
        // Not a callout's state: nothing was sent for it.
        kind @ Awaiting::IdTokenKeys { .. } => resume(cx, Some(kind), random),
        Awaiting::CodeExchange {
            state_cookie,
            login,
        } => {
            let Some(origin) = origin else {
                return OAuth2Step::Respond(Response::json_error(403, "origin not protected"));
            };
            let step = match code_tokens(f, &origin, &state_cookie, answer, idp.events) {
                Ok(tokens) => {
                    check_login_tokens(cx, &origin, &jar, &state_cookie, login, tokens, random)
                }
                Err(page) => OAuth2Step::Respond(page),
            };
            login_ended(idp, step)
        }
        Awaiting::Refresh { session } => {
            let Some(origin) = origin else {
                return OAuth2Step::Respond(Response::json_error(403, "origin not protected"));
            };
            refresh_answer(cx, &origin, &jar, session, answer, random)
        }
        Awaiting::LoginUserinfo {
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
            if let (TokenValidation::Userinfo, userinfo::UserinfoOutcome::Refused(status)) =
                (f.validation, &outcome)
            {
                let detail = format!(
                    "The identity provider's UserInfo endpoint refused (HTTP {status}) the access token the identity provider has just issued, and OAuth2 filter {:?} validates access tokens with it (accessTokenValidation: userinfo): every request would be refused. Set accessTokenValidation to \"auto\" (or \"jwt\" when the access tokens are JWTs signed by the identity provider).",
                    f.name
                );
                log::warn!("OAuth2 filter {}: {detail}", f.name);
                let mut r = error_page(401, "Sign-in could not be completed", &detail);
                r.push_header(
                    "set-cookie",
                    state_attrs(f, &origin, 0).clear(&state_cookie),
                );
                return login_ended(idp, OAuth2Step::Respond(r));
            }
            userinfo::apply(f, &mut session, outcome);
            let step = finish_login(cx, &origin, &jar, &state_cookie, login, session, random);
            login_ended(idp, step)
        }
        Awaiting::RefreshUserinfo { mut session } => {
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
            finish_refresh(cx, &origin, &jar, session, random)
        }
        Awaiting::Userinfo {
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
                        if let Some(step) = refresh(f, &session, idp, now, random) {
                            log::info!(
                                "OAuth2 filter {}: userinfo refused the access token; refreshing it",
                                f.name
                            );
                            return step;
                        }
                    }
                    super::access::refused(
                        cx,
                        &origin,
                        &jar,
                        &session,
                        &format!("the UserInfo endpoint refused the access token (HTTP {status})"),
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
pub(super) fn resume(
    cx: &FlowContext<'_>,
    kind: Option<Awaiting>,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let (f, request, args, idp, now) = cx.parts();
    match kind {
        Some(Awaiting::IdTokenKeys {
            state_cookie,
            login,
            tokens,
        }) => {
            let Some(origin) = Origin::of(request).filter(|o| f.protects(o)) else {
                return OAuth2Step::Respond(Response::json_error(403, "origin not protected"));
            };
            let jar = CookieJar::from_headers(&request.headers);
            let step = check_login_tokens(cx, &origin, &jar, &state_cookie, login, tokens, random);
            login_ended(idp, step)
        }
        _ => check(f, request, args, idp, now, random),
    }
}

/// A step of a login's callback (the callback itself, the code exchange's
/// answer, the login's UserInfo answer, the ID token checked with fresh keys):
/// an answer that does not complete the login refuses it
/// ([`OAuth2Event::LoginRefused`]).
fn login_ended(idp: &IdpState<'_>, step: OAuth2Step) -> OAuth2Step {
    let completed = idp
        .events
        .is_some_and(|e| e.contains(OAuth2Event::LoginCompleted));
    if matches!(step, OAuth2Step::Respond(_)) && !completed {
        note(idp.events, OAuth2Event::LoginRefused);
    }
    step
}
