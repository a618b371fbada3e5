//! The ID token check (OpenID Connect Core 1.0 §2 and §3.1.3.7), for the ID
//! tokens the token endpoint issues in the authorization code flow.
//!
//! What is checked, in this order (each item names its rule):
//! - `alg` is a signing algorithm Portcullis implements, never `none`
//!   (§3.1.3.7 item 6–8: Portcullis registers no `id_token_signed_response_alg`,
//!   so the default, a signed token, applies; an unsigned token is refused);
//! - the signature, by the key of the IdP's JWK Set that `kid` names, or, with
//!   no `kid`, by the one key that fits `alg` (several fit: refused, as the
//!   JWT filter does; OIDC Core §10.1);
//! - `iss` is the discovery document's issuer (item 2), `aud` contains the
//!   client id (item 3), `azp` is the client id when present, and present
//!   when `aud` has several entries (items 4–5);
//! - `exp` is present and not past (item 9, with [`ID_TOKEN_LEEWAY`]);
//! - `iat` is present and not in the future beyond the leeway (§2 REQUIRED,
//!   item 10);
//! - `sub` is present: a non-empty string of at most 255 characters (§2);
//! - `nonce` equals the login's when one was sent (item 11).

use super::encoding::secrets_equal;
use crate::jwt::verify::verify_token;
use crate::jwt::{Algorithm, ClaimPolicy, KeySet, TokenError};
use serde_json::{Map, Value};
use std::time::Duration;

/// Leeway for the ID token's `exp`, `nbf` and `iat` (clock skew with the IdP).
pub(super) const ID_TOKEN_LEEWAY: Duration = Duration::from_secs(60);

/// The longest `sub` (OIDC Core §2: "MUST NOT exceed 255 ASCII characters").
pub(super) const MAX_SUB_LEN: usize = 255;

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IdTokenError {
    /// The token names a `kid` the IdP's JWK Set lacks: a fresh copy of the
    /// set may hold it (the IdP rotated its signing key).
    UnknownKid(String),
    /// Anything else (the text is for the log; it holds no token content but
    /// an `alg` or `kid`, cut short).
    Refused(String),
}

impl IdTokenError {
    pub(super) fn describe(&self) -> String {
        match self {
            IdTokenError::UnknownKid(kid) => format!("unknown key id {kid:?}"),
            IdTokenError::Refused(why) => why.clone(),
        }
    }
}

/// Every signing algorithm Portcullis implements (`none` excluded).
pub(super) fn signing_algorithms() -> Vec<Algorithm> {
    Algorithm::ALL
        .iter()
        .copied()
        .filter(|a| *a != Algorithm::None)
        .collect()
}

/// Checks an ID token from the token endpoint (see the module doc); the
/// claims when it passes. `nonce`: the one the login sent, `None` for a
/// refreshed ID token (OIDC Core §12.2: no nonce then).
pub(super) fn check_id_token(
    client_id: &str,
    token: &str,
    issuer: &str,
    keys: &KeySet,
    nonce: Option<&str>,
    now: f64,
) -> Result<Map<String, Value>, IdTokenError> {
    let policy = ClaimPolicy {
        valid_algorithms: signing_algorithms(),
        audience: Some(client_id.to_string()),
        require_audience: true,
        issuer: Some(issuer.to_string()),
        require_issuer: true,
        require_expires_at: true,
        require_issued_at: true,
        leeway_for_expires_at: ID_TOKEN_LEEWAY,
        leeway_for_not_before: ID_TOKEN_LEEWAY,
        leeway_for_issued_at: ID_TOKEN_LEEWAY,
        ..ClaimPolicy::default()
    };
    let verified = verify_token(token, keys, &policy, now).map_err(|e| match e {
        // A refresh may bring a key id the set lacks (not one it has for
        // another algorithm): the JWT filter's rule.
        TokenError::UnknownKey(Some(kid)) if !keys.has_kid(&kid) => IdTokenError::UnknownKid(kid),
        other => IdTokenError::Refused(other.description()),
    })?;
    let claims = verified.claims;
    let refused = |why: &str| Err(IdTokenError::Refused(why.to_string()));
    match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() && sub.chars().count() <= MAX_SUB_LEN => {}
        Some(Value::String(sub)) if sub.is_empty() => return refused("sub is empty"),
        Some(Value::String(_)) => return refused("sub is longer than 255 characters"),
        Some(_) => return refused("sub is not a string"),
        None => return refused("no sub"),
    }
    let several_audiences = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == client_id => {}
        Some(_) => return refused("azp is not this client"),
        None if several_audiences => return refused("several audiences and no azp"),
        None => {}
    }
    if let Some(expected) = nonce {
        match claims.get("nonce").and_then(Value::as_str) {
            Some(n) if secrets_equal(n, expected) => {}
            Some(_) => return refused("nonce does not match the login"),
            None => return refused("no nonce"),
        }
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::verify::test_fixtures as fx;
    use serde_json::json;

    const ISSUER: &str = "https://idp.example";
    const CLIENT: &str = "app";
    const NOW: f64 = 1_700_000_000.0;

    fn claims(extra: Value) -> Value {
        let mut base = json!({
            "iss": ISSUER, "aud": CLIENT, "sub": "alice",
            "iat": NOW as u64, "exp": NOW as u64 + 300, "nonce": "n1"
        });
        if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
            for (k, v) in e {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    b.insert(k, v);
                }
            }
        }
        base
    }

    fn rs256(kid: Option<&str>, claims: &Value) -> String {
        let header = match kid {
            Some(kid) => json!({"alg": "RS256", "kid": kid}),
            None => json!({"alg": "RS256"}),
        };
        fx::token(header, claims.clone(), &fx::rsa_a())
    }

    fn keys() -> KeySet {
        fx::key_set(vec![fx::rsa_a().jwk_with_kid("rsa1")])
    }

    fn check(token: &str) -> Result<Map<String, Value>, IdTokenError> {
        check_id_token(CLIENT, token, ISSUER, &keys(), Some("n1"), NOW)
    }

    fn refused(token: &str) -> String {
        match check(token) {
            Err(IdTokenError::Refused(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_token_passes() {
        let passed = check(&rs256(Some("rsa1"), &claims(Value::Null))).unwrap();
        assert_eq!(passed["sub"], "alice");
        // No kid: the one key that fits RS256.
        assert!(check(&rs256(None, &claims(Value::Null))).is_ok());
    }

    #[test]
    fn sub_and_iat_are_required() {
        let t = |extra: Value| rs256(Some("rsa1"), &claims(extra));
        assert_eq!(refused(&t(json!({"sub": null}))), "no sub");
        assert_eq!(refused(&t(json!({"sub": ""}))), "sub is empty");
        assert_eq!(refused(&t(json!({"sub": 7}))), "sub is not a string");
        let long = "x".repeat(MAX_SUB_LEN + 1);
        assert!(refused(&t(json!({ "sub": long }))).contains("255"));
        let longest = "x".repeat(MAX_SUB_LEN);
        assert!(check(&t(json!({ "sub": longest }))).is_ok());
        assert!(refused(&t(json!({"iat": null}))).contains("\"iat\""));
    }

    #[test]
    fn issuer_audience_azp_nonce_and_times() {
        for (extra, want) in [
            (json!({"iss": "https://other"}), "issuer"),
            (json!({"iss": null}), "\"iss\""),
            (json!({"aud": "someone-else"}), "audience"),
            (json!({"aud": null}), "\"aud\""),
            (json!({"aud": [CLIENT, "other"]}), "several audiences"),
            (json!({"azp": "other"}), "azp"),
            (json!({"nonce": "forged"}), "nonce does not match"),
            (json!({"nonce": null}), "no nonce"),
            (json!({"exp": NOW as u64 - 120}), "expired"),
            (json!({"exp": null}), "\"exp\""),
            (json!({"iat": NOW as u64 + 120}), "before issued"),
        ] {
            let why = refused(&rs256(Some("rsa1"), &claims(extra.clone())));
            assert!(why.contains(want), "{extra}: {why}");
        }
        let ok = claims(json!({"aud": [CLIENT, "other"], "azp": CLIENT}));
        assert!(check(&rs256(Some("rsa1"), &ok)).is_ok());
        // A refreshed ID token carries no nonce (OIDC Core §12.2).
        let refreshed = rs256(Some("rsa1"), &claims(json!({"nonce": null})));
        assert!(check_id_token(CLIENT, &refreshed, ISSUER, &keys(), None, NOW).is_ok());
    }

    #[test]
    fn unsigned_badly_signed_and_ambiguous_tokens_are_refused() {
        let c = claims(Value::Null);
        let none = format!("{}.", fx::signing_input(&json!({"alg": "none"}), &c));
        assert!(refused(&none).contains("none"), "{}", refused(&none));
        let other_key = fx::token(
            json!({"alg": "RS256", "kid": "rsa1"}),
            c.clone(),
            &fx::rsa_b(),
        );
        assert!(refused(&other_key).contains("signature"));
        // No kid and two RSA keys: which one is meant is unknown.
        let two = fx::key_set(vec![
            fx::rsa_a().jwk_with_kid("rsa1"),
            fx::rsa_b().jwk_with_kid("rsa2"),
        ]);
        let err = check_id_token(CLIENT, &rs256(None, &c), ISSUER, &two, Some("n1"), NOW);
        assert!(
            matches!(&err, Err(IdTokenError::Refused(why)) if why.contains("no key id")),
            "{err:?}"
        );
    }

    #[test]
    fn an_unknown_kid_asks_for_fresh_keys() {
        let t = rs256(Some("rotated"), &claims(Value::Null));
        assert_eq!(check(&t), Err(IdTokenError::UnknownKid("rotated".into())));
    }
}
