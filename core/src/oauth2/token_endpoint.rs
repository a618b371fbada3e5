//! The token endpoint client (RFC 6749 §4.1.3, §6): the token request as a callout, and its answer read into a `TokenAnswer` or a `TokenFailure`.

use super::client_assertion::ASSERTION_TYPE;
use super::encoding::{form_encode, percent_encode};
use super::id_token::{signing_algorithms, ID_TOKEN_LEEWAY};
use super::ASSUMED_ACCESS_LIFETIME;
use super::{OAuth2Filter, CALLOUT_TIMEOUT};
use crate::callout::{Callout, CalloutAnswer, CalloutKind, MAX_ANSWER_BYTES};
use crate::compile::url::CalloutTarget;
use crate::jwt::verify::decode_unverified;
use crate::jwt::verify::MAX_TOKEN_LEN;
use crate::jwt::ClaimPolicy;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

/// The longest refresh token kept.
pub(super) const MAX_REFRESH_TOKEN_LEN: usize = 8 * 1024;

pub(super) fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A POST to the token endpoint with the client's authentication. `client`
/// overrides the configured client id and secret (ClientCredentials). A
/// `JWTAssertion` client signs a fresh assertion (RFC 7523) at `now` (seconds
/// since the epoch), its `jti` from `random`.
pub(super) fn token_callout<'a>(
    f: &'a OAuth2Filter,
    target: &CalloutTarget,
    form: &mut Vec<(&'a str, &'a str)>,
    client: Option<(&'a str, &'a str)>,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
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
        (_, super::ClientAuth::Assertion) => {
            if f.client_assertion.as_ref().is_some_and(|a| a.set_client_id) {
                form.push(("client_id", id));
            }
        }
        (None, _) => form.push(("client_id", id)),
    }
    let mut body = form_encode(form.iter().copied());
    if let (super::ClientAuth::Assertion, Some(assertion)) = (f.client_auth, &f.client_assertion) {
        let endpoint = format!("{}://{}{}", target.scheme, target.authority, target.path);
        let jwt = assertion.sign(id, &endpoint, now, random);
        let fields = [
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", jwt.as_str()),
        ];
        if !body.is_empty() {
            body.push('&');
        }
        body.push_str(&form_encode(fields));
    }
    let body = body.into_bytes();
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

/// The verified-token cache scope of access tokens (JWT filters use their
/// index; an entry also belongs to one key set, and a hit re-checks the issuer).
pub(super) const ACCESS_TOKEN_SCOPE: u64 = 1 << 63;

/// What `jwt` (and `auto`, for a JWT signed by the IdP) checks of a session's
/// access token: a key of the IdP's current JWK Set signs it, and `exp`/`nbf`/
/// `iat` hold (60 s leeway). Not `iss` nor `aud`: the token came from the
/// IdP's token endpoint over the authenticated back channel and is sealed in
/// the session, so it is no forgery; a token the IdP issued for another API
/// (Azure AD v1 `iss` `https://sts.windows.net/<tenant>/`) is still its token.
pub(super) fn access_policy() -> ClaimPolicy {
    ClaimPolicy {
        valid_algorithms: signing_algorithms(),
        leeway_for_expires_at: ID_TOKEN_LEEWAY,
        leeway_for_not_before: ID_TOKEN_LEEWAY,
        leeway_for_issued_at: ID_TOKEN_LEEWAY,
        ..ClaimPolicy::default()
    }
}

/// When the access token of a token answer is due for a refresh (Unix s):
/// `expires_in` (RFC 6749 §5.1), else the token's own `exp` when it is a JWT.
/// With neither (an opaque token, and an IdP that leaves out the RECOMMENDED
/// `expires_in`) and a refresh token to refresh with, the token is assumed to
/// live [`ASSUMED_ACCESS_LIFETIME`]: the session refreshes then rather than
/// never (and earlier when UserInfo refuses the token; see `on_answer`).
/// `None` only when there is nothing to refresh with.
pub(super) fn access_expiry(tokens: &TokenAnswer, refreshable: bool, now_s: u64) -> Option<u64> {
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
