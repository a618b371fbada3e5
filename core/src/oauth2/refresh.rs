//! A session refreshed with its refresh token (RFC 6749 §6): when it is due, the token request, its answer and the refreshed session.

use super::awaiting::{pending, Awaiting};
use super::events::{note, IdpErrorKind, OAuth2Event};
use super::id_token::check_id_token;
use super::login::unauthenticated;
use super::session::{CookieJar, Session};
use super::session_store::write_session;
use super::token_endpoint::access_expiry;
use super::token_endpoint::{read_token_answer, token_callout, TokenFailure};
use super::upstream::allow;
use super::FlowContext;
use super::{userinfo, IdpState, OAuth2Filter, OAuth2Step, Origin};
use crate::callout::{CalloutAnswer, ShareKey};
use crate::jwt::verify::decode_unverified;

/// Whether the session's access token is due for a refresh: expired, or within
/// `expirationSafetyMargin` of it.
pub(super) fn access_due(f: &OAuth2Filter, session: &Session, now: f64) -> bool {
    session
        .access_expires_at
        .is_some_and(|exp| now + f.margin as f64 >= exp as f64)
}

/// The refresh of `session` (RFC 6749 §6), or `None` when it has no refresh
/// token. Every request of the session shares one refresh per Envoy, across
/// its worker VMs and for late requests that still carry the cookie from
/// before it: the callout's share key is the filter, the client, the refresh
/// token and the access token it replaces (see [`crate::shared_callout`]).
pub(super) fn refresh(
    f: &OAuth2Filter,
    session: &Session,
    idp: &IdpState<'_>,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> Option<OAuth2Step> {
    let rt = session.refresh_token.as_deref()?;
    let d = idp.discovery?;
    let Some(target) = f.callout_target(&d.token_endpoint) else {
        note(idp.events, OAuth2Event::RefreshFailed);
        return Some(OAuth2Step::Respond(f.idp_unavailable()));
    };
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", rt)];
    let mut callout = token_callout(f, &target, &mut form, None, now, random);
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
        pending: pending(Awaiting::Refresh {
            session: session.clone(),
        }),
    })
}

pub(super) fn refresh_answer(
    cx: &FlowContext<'_>,
    origin: &Origin,
    jar: &CookieJar,
    old: Session,
    answer: CalloutAnswer,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let (f, _, _, idp, now) = cx.parts();
    let tokens = match read_token_answer(answer) {
        Ok(t) => t,
        Err(failure @ (TokenFailure::Refused(_) | TokenFailure::Garbled(_))) => {
            note(idp.events, OAuth2Event::RefreshFailed);
            let why = match failure {
                TokenFailure::Garbled(why) => {
                    note(
                        idp.events,
                        OAuth2Event::IdpError(IdpErrorKind::InvalidAnswer),
                    );
                    why
                }
                TokenFailure::Refused(why) | TokenFailure::Unavailable(why) => why,
            };
            log::info!("OAuth2 filter {}: refresh failed: {why}; new login", f.name);
            return unauthenticated(cx, origin, jar, random);
        }
        Err(TokenFailure::Unavailable(why)) => {
            log::warn!("OAuth2 filter {}: refresh failed: {why}", f.name);
            note(idp.events, OAuth2Event::RefreshFailed);
            return OAuth2Step::Respond(f.idp_unavailable());
        }
    };
    if let Some(id_token) = tokens.id_token.as_deref() {
        let (Some(discovery), Some(keys)) = (idp.discovery, idp.keys) else {
            note(idp.events, OAuth2Event::RefreshFailed);
            note(idp.events, OAuth2Event::IdpError(IdpErrorKind::NotLoaded));
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
            note(idp.events, OAuth2Event::RefreshFailed);
            return unauthenticated(cx, origin, jar, random);
        }
    }
    note(idp.events, OAuth2Event::RefreshDone);
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
        if let Some(step) = refresh(f, &session, idp, now, random) {
            return step;
        }
    }
    // The claims of the new access token's UserInfo answer.
    let endpoint = idp.discovery.and_then(|d| d.userinfo_endpoint.as_deref());
    match userinfo::callout(f, endpoint, &session.access_token) {
        Some(callout) => OAuth2Step::Callout {
            callout,
            pending: pending(Awaiting::RefreshUserinfo { session }),
        },
        None => finish_refresh(cx, origin, jar, session, random),
    }
}

/// The end of a refresh: the new session cookie goes out with the upstream's
/// response.
pub(super) fn finish_refresh(
    cx: &FlowContext<'_>,
    origin: &Origin,
    jar: &CookieJar,
    session: Session,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let (f, request, args, _, _) = cx.parts();
    match write_session(cx, origin, jar, &session, args.same_site, random) {
        Ok(cookies) => allow(f, request, jar, &session, cookies),
        Err(r) => OAuth2Step::Respond(r),
    }
}

/// OIDC Core §12.2: a refreshed ID token names the `iss` and `sub` of the
/// session's ID token (when the session has one).
pub(super) fn same_subject(old: Option<&str>, new: &str) -> Result<(), String> {
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
