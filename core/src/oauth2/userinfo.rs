//! The UserInfo endpoint at login and refresh (OpenID Connect Core 5.3): in the
//! code flow a conformant IdP returns the claims of the `profile`, `email`, ...
//! scopes there, not in the ID token (5.4). Portcullis asks for them once per
//! access token (after the code exchange, after each refresh: `GET` with
//! `Authorization: Bearer <access token>`), keeps them bounded in the sealed
//! session, and templates read them as `.userinfo`.
//!
//! # Decisions
//! - **`sub`.** A UserInfo answer whose `sub` is not the ID token's is not used
//!   (5.3.2): the session keeps no claims from it (it is logged).
//! - **Bounds.** At most [`MAX_USERINFO_BYTES`] of claims (serialized JSON) are
//!   kept, each at most [`MAX_USERINFO_CLAIM_BYTES`]; a claim past either bound
//!   is left out (logged once per login), the others kept in the IdP's order.
//!   An answer larger than [`MAX_USERINFO_ANSWER_BYTES`] is not read.
//! - **Refusals.** An IdP may refuse its own access token at UserInfo (Azure AD
//!   issues tokens for another API, whose audience UserInfo refuses). The login
//!   goes on without claims, and the session remembers the refusal: under
//!   `accessTokenValidation: auto` its token is then not asked of UserInfo on
//!   every request (it would be refused there too, a login loop). Under
//!   `userinfo`, such a login can never work: an explained page at once.
//! - **Failures** (no answer, 5xx, not JSON): the login goes on without claims
//!   (the last known claims are kept on a refresh), and the next refresh asks
//!   again.
//! - **Signed answers** (`application/jwt`, 5.3.2): the signature must be a key
//!   of the IdP's, `iss` (when present) the issuer and `aud` (when present)
//!   the client.

use super::session::Session;
use super::token_endpoint::describe;
use super::{OAuth2Filter, CALLOUT_TIMEOUT};
use crate::callout::ShareKey;
use crate::callout::{Callout, CalloutAnswer, CalloutKind};
use crate::jwt::verify::{decode_unverified, verify_token};
use crate::jwt::{Algorithm, ClaimPolicy, KeySet};
use serde_json::{Map, Value};

/// The most bytes of UserInfo claims (serialized JSON) a session keeps.
pub const MAX_USERINFO_BYTES: usize = 4096;
/// The largest single claim (serialized name and value) a session keeps.
pub const MAX_USERINFO_CLAIM_BYTES: usize = 1024;
/// The largest UserInfo answer read.
pub const MAX_USERINFO_ANSWER_BYTES: usize = 64 * 1024;

/// What a UserInfo answer gave.
#[derive(Debug, PartialEq)]
pub(super) enum UserinfoOutcome {
    /// The claims, bounded.
    Claims(Map<String, Value>),
    /// 401/403: the endpoint refuses this access token.
    Refused(u16),
    /// The answer's `sub` is not the ID token's (5.3.2): not used.
    OtherSubject,
    /// No usable answer (down, 5xx, not a JSON object, bad signature).
    Failed(String),
}

/// The `GET` to the UserInfo endpoint with the access token, when the IdP
/// publishes one.
pub(super) fn callout(
    f: &OAuth2Filter,
    endpoint: Option<&str>,
    access_token: &str,
) -> Option<Callout> {
    let target = f.callout_target(endpoint?)?;
    let headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), target.path.clone()),
        (":authority".to_string(), target.authority.clone()),
        (":scheme".to_string(), target.scheme.clone()),
        (
            "authorization".to_string(),
            format!("Bearer {access_token}"),
        ),
        ("accept".to_string(), "application/json".to_string()),
    ];
    Some(Callout {
        cluster: target.cluster.clone(),
        kind: CalloutKind::http_text(headers, Vec::new()),
        timeout: CALLOUT_TIMEOUT,
        // The requests of a session refreshed together (on any worker) ask
        // once for the new token's claims.
        share: Some(ShareKey::of(&[
            b"userinfo",
            f.name.as_bytes(),
            access_token.as_bytes(),
        ])),
    })
}

/// Reads a UserInfo answer for the session whose ID token says `sub`.
pub(super) fn read(
    f: &OAuth2Filter,
    answer: &CalloutAnswer,
    sub: Option<&str>,
    issuer: &str,
    keys: Option<&KeySet>,
    now: f64,
) -> UserinfoOutcome {
    let (headers, body) = match answer {
        CalloutAnswer::Http {
            status: 200,
            headers,
            body,
        } => (headers, body),
        CalloutAnswer::Http {
            status: status @ (401 | 403),
            ..
        } => return UserinfoOutcome::Refused(*status),
        other => return UserinfoOutcome::Failed(describe(other)),
    };
    if body.len() > MAX_USERINFO_ANSWER_BYTES {
        return UserinfoOutcome::Failed(format!(
            "answer larger than {MAX_USERINFO_ANSWER_BYTES} bytes"
        ));
    }
    // `application/jwt`; a shared answer keeps no headers, so a body that is
    // a JWT counts too.
    let signed = body.starts_with(b"eyJ")
        || headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("content-type")
                && v.split(|b| *b == b';')
                    .next()
                    .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"application/jwt"))
        });
    let claims = if signed {
        match signed_claims(f, body, issuer, keys, now) {
            Ok(c) => c,
            Err(why) => return UserinfoOutcome::Failed(why),
        }
    } else {
        match serde_json::from_slice::<Map<String, Value>>(body) {
            Ok(c) => c,
            Err(_) => return UserinfoOutcome::Failed("not a JSON object".to_string()),
        }
    };
    match (claims.get("sub").and_then(Value::as_str), sub) {
        (Some(a), Some(b)) if a == b => {}
        _ => return UserinfoOutcome::OtherSubject,
    }
    UserinfoOutcome::Claims(bounded(&f.name, claims))
}

/// A signed UserInfo answer (a JWT) → its claims.
fn signed_claims(
    f: &OAuth2Filter,
    body: &[u8],
    issuer: &str,
    keys: Option<&KeySet>,
    now: f64,
) -> Result<Map<String, Value>, String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| "signed answer is not text".to_string())?
        .trim();
    let keys = keys.ok_or_else(|| "no IdP keys for a signed answer".to_string())?;
    let policy = ClaimPolicy {
        valid_algorithms: Algorithm::ALL
            .iter()
            .copied()
            .filter(|a| *a != Algorithm::None)
            .collect(),
        issuer: Some(issuer.to_string()),
        audience: Some(f.client_id.clone()),
        ..ClaimPolicy::default()
    };
    verify_token(text, keys, &policy, now)
        .map(|t| t.claims)
        .map_err(|e| format!("signed answer refused: {}", e.description()))
}

/// The claims a session keeps: in the IdP's order, each claim at most
/// [`MAX_USERINFO_CLAIM_BYTES`], all at most [`MAX_USERINFO_BYTES`].
pub(super) fn bounded(filter: &str, claims: Map<String, Value>) -> Map<String, Value> {
    let mut kept = Map::new();
    let mut total = 2usize;
    let mut left_out: Vec<String> = Vec::new();
    for (name, value) in claims {
        let size = name.len() + serde_json::to_string(&value).map_or(usize::MAX, |s| s.len()) + 4;
        if size > MAX_USERINFO_CLAIM_BYTES || total.saturating_add(size) > MAX_USERINFO_BYTES {
            left_out.push(name.chars().take(64).collect());
            continue;
        }
        total += size;
        kept.insert(name, value);
    }
    if !left_out.is_empty() {
        log::info!(
            "OAuth2 filter {filter}: UserInfo claims left out of the session (over {MAX_USERINFO_CLAIM_BYTES} bytes each or {MAX_USERINFO_BYTES} in all): {}",
            left_out.join(", ")
        );
    }
    kept
}

/// The `sub` of the session's ID token (verified when it was received).
pub(super) fn id_token_sub(session: &Session) -> Option<String> {
    let token = session.id_token.as_deref()?;
    decode_unverified(token)
        .ok()?
        .claims
        .get("sub")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Applies a UserInfo outcome to a session: new claims replace the old; a
/// refusal is remembered; another subject's claims drop the old ones; a
/// failure keeps what the session had.
pub(super) fn apply(f: &OAuth2Filter, session: &mut Session, outcome: UserinfoOutcome) {
    match outcome {
        UserinfoOutcome::Claims(claims) => {
            session.userinfo = Some(claims);
            session.userinfo_refused = false;
        }
        UserinfoOutcome::Refused(status) => {
            log::info!(
                "OAuth2 filter {}: the UserInfo endpoint refused the access token (HTTP {status}): no UserInfo claims",
                f.name
            );
            session.userinfo_refused = true;
        }
        UserinfoOutcome::OtherSubject => {
            log::warn!(
                "OAuth2 filter {}: the UserInfo answer's sub is not the ID token's: its claims are not used (OpenID Connect Core 5.3.2)",
                f.name
            );
            session.userinfo = None;
        }
        UserinfoOutcome::Failed(why) => {
            log::warn!("OAuth2 filter {}: UserInfo failed: {why}", f.name);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_are_bounded_each_and_in_all() {
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("alice"));
        claims.insert("email".into(), json!("alice@example.test"));
        // One claim just past the per-claim bound.
        let name = "big";
        let just_past = MAX_USERINFO_CLAIM_BYTES - name.len() - 4 - 2 + 1;
        claims.insert(name.into(), json!("x".repeat(just_past)));
        let just_at = MAX_USERINFO_CLAIM_BYTES - "fits".len() - 4 - 2;
        claims.insert("fits".into(), json!("y".repeat(just_at)));
        let kept = bounded("t", claims);
        assert!(kept.contains_key("sub") && kept.contains_key("email"));
        assert!(!kept.contains_key("big"), "a claim just past the bound");
        assert!(kept.contains_key("fits"), "a claim at the bound");
        // In all: claims of ~1000 bytes until the total bound.
        let mut many = Map::new();
        for i in 0..10 {
            many.insert(format!("c{i}"), json!("z".repeat(990)));
        }
        let kept = bounded("t", many);
        let size = serde_json::to_string(&kept).unwrap().len();
        assert!(size <= MAX_USERINFO_BYTES, "{size}");
        assert_eq!(kept.len(), 4);
    }
}
