//! Token parsing, signature verification against a `KeySet`, and claim checks.
//!
//! INTERFACE STUB: to be implemented.

use super::keys::{Algorithm, KeySet};
use serde_json::{Map, Value};
use std::time::Duration;

/// What a JWT filter requires of a token's header and claims.
#[derive(Debug, Clone, Default)]
pub struct ClaimPolicy {
    pub valid_algorithms: Vec<Algorithm>,
    pub audience: Option<String>,
    pub require_audience: bool,
    pub issuer: Option<String>,
    pub require_issuer: bool,
    pub require_expires_at: bool,
    pub leeway_for_expires_at: Duration,
    pub require_not_before: bool,
    pub leeway_for_not_before: Duration,
    pub require_issued_at: bool,
    pub leeway_for_issued_at: Duration,
}

/// A token whose signature and claims passed.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub raw: String,
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// The third segment, as sent (base64url).
    pub signature: String,
    pub algorithm: Algorithm,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url segments of JSON objects, bad `alg` value, non-numeric time claims.
    Malformed(String),
    DisallowedAlgorithm(String),
    /// No key fits (`kid` unknown, or no `kid` and not exactly one key for the `alg`).
    UnknownKey(Option<String>),
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    MissingClaim(&'static str),
    WrongIssuer,
    WrongAudience,
    UnsupportedCritical(String),
}

impl TokenError {
    /// jwt-go `ValidationError.Errors` bits: malformed 1, unverifiable 2, signature 4,
    /// audience 8, expired 16, issued-at 32, issuer 64, not-valid-yet 128.
    pub fn validation_bits(&self) -> u32 {
        0
    }

    /// Text for `error_description` and the default body's `message`.
    pub fn description(&self) -> String {
        String::new()
    }
}

/// Parses and verifies `token` against `keys` and `policy` at `now_unix` seconds.
pub fn verify_token(
    _token: &str,
    _keys: &KeySet,
    _policy: &ClaimPolicy,
    _now_unix: f64,
) -> Result<VerifiedToken, TokenError> {
    Err(TokenError::BadSignature)
}
