//! Token parsing, signature verification against a `KeySet`, and claim checks.
//!
//! `verify_token` runs, in order (the first failure is returned):
//! 1. size (at most [`MAX_TOKEN_LEN`] bytes) and shape: three base64url segments
//!    without padding, the first a JSON object;
//! 2. header: `alg` a string naming a known algorithm listed in
//!    `valid_algorithms` (`DisallowedAlgorithm` otherwise), `kid` a string if present,
//!    `crit` absent (a well-formed `crit` is `UnsupportedCritical`, a malformed one
//!    `Malformed`);
//! 3. signature over `header.payload` (`alg: none` needs an empty signature
//!    segment; otherwise the key selected by `kid`/`alg`, see
//!    [`KeySet`](super::keys::KeySet));
//! 4. payload: a JSON object; `exp`, `nbf`, `iat` numbers when present;
//! 5. claims: `exp`, `nbf`, `iat`, `iss`, `aud`, in that order.
//!
//! Claim semantics follow AES / jwt-go: a claim that is present must pass; a missing
//! claim fails only when the matching `require*` is set. As in jwt-go, an empty
//! `iss` string and an empty `aud` (string or array) count as missing.

use super::host_crypto::SignatureVerifier;
use super::keys::{printable, Algorithm, KeySet, SignatureCheck};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};
use std::time::Duration;

/// Longer tokens are refused as malformed before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Largest decoded signature accepted (RSA 4096 is 512 bytes).
const MAX_SIGNATURE_LEN: usize = 640;

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
///
/// Strings carried here never hold token contents other than an `alg` or `kid`
/// value, and those are cut to 64 characters with anything but printable ASCII
/// (and `"`, `\`) replaced by `?`.
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
    /// RFC 8705: the token's `cnf.x5t#S256` does not match the client certificate.
    CertificateBinding(String),
}

/// jwt-go `ValidationError` bits.
const BIT_MALFORMED: u32 = 1;
const BIT_UNVERIFIABLE: u32 = 2;
const BIT_SIGNATURE: u32 = 4;
const BIT_AUDIENCE: u32 = 8;
const BIT_EXPIRED: u32 = 16;
const BIT_ISSUED_AT: u32 = 32;
const BIT_ISSUER: u32 = 64;
const BIT_NOT_VALID_YET: u32 = 128;
/// jwt-go `ValidationErrorClaimsInvalid`: a claim failed a check of the application.
const BIT_CLAIMS_INVALID: u32 = 256;

impl TokenError {
    /// jwt-go `ValidationError.Errors` bits: malformed 1, unverifiable 2, signature 4,
    /// audience 8, expired 16, issued-at 32, issuer 64, not-valid-yet 128.
    pub fn validation_bits(&self) -> u32 {
        match self {
            TokenError::Malformed(_) => BIT_MALFORMED,
            TokenError::DisallowedAlgorithm(_)
            | TokenError::UnknownKey(_)
            | TokenError::UnsupportedCritical(_) => BIT_UNVERIFIABLE,
            TokenError::BadSignature => BIT_SIGNATURE,
            TokenError::Expired => BIT_EXPIRED,
            TokenError::NotYetValid => BIT_NOT_VALID_YET,
            TokenError::IssuedInFuture => BIT_ISSUED_AT,
            TokenError::WrongIssuer => BIT_ISSUER,
            TokenError::WrongAudience => BIT_AUDIENCE,
            TokenError::CertificateBinding(_) => BIT_CLAIMS_INVALID,
            TokenError::MissingClaim(claim) => match *claim {
                "exp" => BIT_EXPIRED,
                "nbf" => BIT_NOT_VALID_YET,
                "iat" => BIT_ISSUED_AT,
                "iss" => BIT_ISSUER,
                "aud" => BIT_AUDIENCE,
                _ => BIT_MALFORMED,
            },
        }
    }

    /// Text for `error_description` and the default body's `message`.
    pub fn description(&self) -> String {
        match self {
            TokenError::Malformed(why) => format!("token is malformed: {why}"),
            TokenError::DisallowedAlgorithm(alg) => {
                format!("signing method {alg} is not allowed")
            }
            TokenError::UnknownKey(Some(kid)) => format!("unknown key id \"{kid}\""),
            TokenError::UnknownKey(None) => {
                "token has no key id and no single key fits its signing method".to_owned()
            }
            TokenError::BadSignature => "signature is invalid".to_owned(),
            TokenError::Expired => "token is expired".to_owned(),
            TokenError::NotYetValid => "token is not valid yet".to_owned(),
            TokenError::IssuedInFuture => "token used before issued".to_owned(),
            TokenError::MissingClaim(claim) => format!("token has no \"{claim}\" claim"),
            TokenError::WrongIssuer => "invalid issuer".to_owned(),
            TokenError::WrongAudience => "invalid audience".to_owned(),
            TokenError::UnsupportedCritical(name) => {
                format!("unsupported critical header parameter \"{name}\"")
            }
            TokenError::CertificateBinding(why) => why.clone(),
        }
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description())
    }
}

impl std::error::Error for TokenError {}

fn malformed(why: &str) -> TokenError {
    TokenError::Malformed(why.to_owned())
}

/// Decodes one base64url segment holding a JSON object.
fn json_segment(segment: &str, what: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed(format!("{what} is not base64url")))?;
    // As jwt-go (Go's encoding/json): a lone surrogate escape is U+FFFD.
    crate::template::go_json_object(&bytes)
        .ok_or_else(|| TokenError::Malformed(format!("{what} is not a JSON object")))
}

/// Parses and verifies `token` against `keys` and `policy` at `now_unix` seconds.
pub fn verify_token(
    token: &str,
    keys: &KeySet,
    policy: &ClaimPolicy,
    now_unix: f64,
) -> Result<VerifiedToken, TokenError> {
    verify_token_with(token, keys, policy, now_unix, None)
}

/// [`verify_token`], with RS* and ES* signatures checked by `host` when given
/// (see [`host_crypto`](super::host_crypto)).
pub fn verify_token_with(
    token: &str,
    keys: &KeySet,
    policy: &ClaimPolicy,
    now_unix: f64,
    host: Option<&dyn SignatureVerifier>,
) -> Result<VerifiedToken, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed("token is too long"));
    }
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(malformed("token must have three segments"));
    };
    // The signed message is `header.payload`, as sent.
    let signing_input = token
        .get(
            ..header_b64
                .len()
                .saturating_add(1)
                .saturating_add(payload_b64.len()),
        )
        .ok_or_else(|| malformed("token must have three segments"))?;

    // Header.
    let header = json_segment(header_b64, "header")?;
    let algorithm = match header.get("alg") {
        Some(Value::String(name)) => match Algorithm::from_name(name) {
            Some(alg) if policy.valid_algorithms.contains(&alg) => alg,
            _ => return Err(TokenError::DisallowedAlgorithm(printable(name, 64))),
        },
        Some(_) => return Err(malformed("\"alg\" is not a string")),
        None => return Err(malformed("header has no \"alg\"")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(malformed("\"kid\" is not a string")),
    };
    if let Some(crit) = header.get("crit") {
        // RFC 7515 section 4.1.11: a non-empty array of names, each of which the
        // recipient must understand. Portcullis implements no extension.
        let Some(names) = crit.as_array().filter(|names| !names.is_empty()) else {
            return Err(malformed("\"crit\" must be a non-empty array of strings"));
        };
        let mut first = None;
        for name in names {
            match name.as_str() {
                Some(name) => {
                    first.get_or_insert(name);
                }
                None => return Err(malformed("\"crit\" must be a non-empty array of strings")),
            }
        }
        return Err(TokenError::UnsupportedCritical(printable(
            first.unwrap_or_default(),
            64,
        )));
    }

    // Signature.
    if algorithm == Algorithm::None {
        if !signature_b64.is_empty() {
            return Err(TokenError::BadSignature);
        }
    } else {
        let mut buffer = [0_u8; MAX_SIGNATURE_LEN];
        let len = URL_SAFE_NO_PAD
            .decode_slice(signature_b64, &mut buffer)
            .map_err(|_| TokenError::BadSignature)?;
        let signature = buffer.get(..len).ok_or(TokenError::BadSignature)?;
        match keys.check_signature(kid, algorithm, signing_input.as_bytes(), signature, host) {
            SignatureCheck::Valid => {}
            SignatureCheck::Invalid => return Err(TokenError::BadSignature),
            SignatureCheck::NoKey => {
                return Err(TokenError::UnknownKey(kid.map(|k| printable(k, 64))))
            }
        }
    }

    // Claims.
    let claims = json_segment(payload_b64, "payload")?;
    check_claims(&claims, policy, now_unix)?;

    Ok(VerifiedToken {
        raw: token.to_owned(),
        header,
        claims,
        signature: signature_b64.to_owned(),
        algorithm,
    })
}

/// A time claim: `Ok(None)` when absent, `Malformed` when not a number.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| TokenError::Malformed(format!("\"{name}\" is not a number"))),
        Some(_) => Err(TokenError::Malformed(format!("\"{name}\" is not a number"))),
    }
}

/// Whether a claim value counts as absent (missing, or jwt-go's empty value).
fn is_empty_claim(value: Option<&Value>) -> bool {
    match value {
        None => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    policy: &ClaimPolicy,
    now: f64,
) -> Result<(), TokenError> {
    let exp = time_claim(claims, "exp")?;
    let nbf = time_claim(claims, "nbf")?;
    let iat = time_claim(claims, "iat")?;

    match exp {
        Some(exp) if now > exp + policy.leeway_for_expires_at.as_secs_f64() => {
            return Err(TokenError::Expired)
        }
        None if policy.require_expires_at => return Err(TokenError::MissingClaim("exp")),
        _ => {}
    }
    match nbf {
        Some(nbf) if now + policy.leeway_for_not_before.as_secs_f64() < nbf => {
            return Err(TokenError::NotYetValid)
        }
        None if policy.require_not_before => return Err(TokenError::MissingClaim("nbf")),
        _ => {}
    }
    match iat {
        Some(iat) if iat > now + policy.leeway_for_issued_at.as_secs_f64() => {
            return Err(TokenError::IssuedInFuture)
        }
        None if policy.require_issued_at => return Err(TokenError::MissingClaim("iat")),
        _ => {}
    }

    let iss = claims.get("iss");
    if is_empty_claim(iss) {
        if policy.require_issuer {
            return Err(TokenError::MissingClaim("iss"));
        }
    } else if let Some(issuer) = &policy.issuer {
        if iss.and_then(Value::as_str) != Some(issuer.as_str()) {
            return Err(TokenError::WrongIssuer);
        }
    }

    let aud = claims.get("aud");
    if is_empty_claim(aud) {
        if policy.require_audience {
            return Err(TokenError::MissingClaim("aud"));
        }
    } else if let Some(audience) = &policy.audience {
        let matches = match aud {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !matches {
            return Err(TokenError::WrongAudience);
        }
    }
    Ok(())
}

/// The token's scopes: the `scope` claim (a space-separated string, or an array of
/// strings), or `scp` when `scope` is absent. Other value types give no scopes.
fn token_scopes(claims: &Map<String, Value>) -> impl Iterator<Item = &str> {
    let value = claims.get("scope").or_else(|| claims.get("scp"));
    let (text, list) = match value {
        Some(Value::String(s)) => (Some(s.as_str()), None),
        Some(Value::Array(a)) => (None, Some(a)),
        _ => (None, None),
    };
    text.into_iter()
        .flat_map(|s| s.split([' ', '\t', '\n', '\r']).filter(|s| !s.is_empty()))
        .chain(list.into_iter().flatten().filter_map(Value::as_str))
}

/// Checks that the token grants every `required` scope (exact, case-sensitive).
/// Returns the missing ones, in `required` order.
pub fn check_scopes<I, S>(claims: &Map<String, Value>, required: I) -> Result<(), Vec<String>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut missing = Vec::new();
    for scope in required {
        let scope = scope.as_ref();
        if !token_scopes(claims).any(|s| s == scope) {
            missing.push(scope.to_owned());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// Decodes a token WITHOUT checking its signature or claims: for tools that show
/// what templates render (`portcullis render --no-verify`), never for requests.
pub fn decode_unverified(token: &str) -> Result<VerifiedToken, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed("token is too long"));
    }
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(malformed("token must have three segments"));
    };
    let header = json_segment(header_b64, "header")?;
    let algorithm = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Algorithm::from_name)
        .ok_or_else(|| malformed("header has no known \"alg\""))?;
    let claims = json_segment(payload_b64, "payload")?;
    Ok(VerifiedToken {
        raw: token.to_owned(),
        header,
        claims,
        signature: signature_b64.to_owned(),
        algorithm,
    })
}

#[cfg(test)]
#[path = "test_fixtures.rs"]
pub(crate) mod test_fixtures;

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::test_fixtures::*;
    use super::*;
    use serde_json::json;

    fn hs_token(claims: Value) -> String {
        token(json!({"alg": "HS256", "typ": "JWT"}), claims, &hmac())
    }

    fn hs_keys() -> KeySet {
        key_set(vec![hmac().public_jwk()])
    }

    fn verify_hs(claims: Value, policy: &ClaimPolicy) -> Result<VerifiedToken, TokenError> {
        verify_token(&hs_token(claims), &hs_keys(), policy, NOW)
    }

    fn accepts(key: &Priv, alg: Algorithm) {
        let keys = key_set(vec![key.jwk_with_kid("k1")]);
        let t = token(
            json!({"alg": alg.name(), "kid": "k1"}),
            json!({"sub": "x"}),
            key,
        );
        let verified = verify_token(&t, &keys, &default_policy(), NOW)
            .unwrap_or_else(|e| panic!("{} refused: {e:?}", alg.name()));
        assert_eq!(verified.algorithm, alg);
    }

    fn corrupt_signature(t: &str) -> String {
        let (input, sig) = t.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
        bytes[0] ^= 1;
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    // ---- every algorithm with the right key ----

    #[test]
    fn accepts_rsa_pkcs1_algorithms() {
        for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
            accepts(&rsa_a(), alg);
        }
    }

    #[test]
    fn accepts_rsa_pss_algorithms() {
        for alg in [Algorithm::PS256, Algorithm::PS384, Algorithm::PS512] {
            accepts(&rsa_a(), alg);
        }
    }

    #[test]
    fn accepts_es256() {
        accepts(&p256(), Algorithm::ES256);
    }

    #[cfg(feature = "ec-fallback")]
    #[test]
    fn accepts_es384() {
        accepts(&p384(), Algorithm::ES384);
    }

    #[cfg(feature = "ec-fallback")]
    #[test]
    fn accepts_es512() {
        accepts(&p521(), Algorithm::ES512);
    }

    /// Without `ec-fallback` (the module), ES384 and ES512 verify only through
    /// the host: with none, a good token is refused as a bad signature.
    #[cfg(not(feature = "ec-fallback"))]
    #[test]
    fn es384_and_es512_need_the_host_without_the_fallback() {
        for (key, alg) in [(p384(), Algorithm::ES384), (p521(), Algorithm::ES512)] {
            let keys = key_set(vec![key.jwk_with_kid("k1")]);
            let t = token(json!({"alg": alg.name(), "kid": "k1"}), json!({}), &key);
            let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
            assert_eq!(err, TokenError::BadSignature, "{alg:?}");
        }
    }

    #[test]
    fn es512_signature_of_wrong_length_refused() {
        let key = p521();
        let keys = key_set(vec![key.public_jwk()]);
        let header = json!({"alg": "ES512"});
        let good = key.sign(
            Algorithm::ES512,
            signing_input(&header, &json!({})).as_bytes(),
        );
        assert_eq!(good.len(), 132);
        for sig in [&good[..130], &good[..131], &[0_u8; 133][..]] {
            let t = token_with_signature(header.clone(), json!({}), sig);
            let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
            assert_eq!(err, TokenError::BadSignature, "length {}", sig.len());
        }
    }

    #[test]
    fn accepts_eddsa() {
        accepts(&ed25519(), Algorithm::EdDSA);
    }

    #[test]
    fn accepts_hmac_algorithms() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            accepts(&hmac(), alg);
        }
    }

    #[test]
    fn verified_token_keeps_raw_header_claims_and_signature() {
        let t = token(
            json!({"alg": "HS256", "typ": "JWT", "x-custom": [1, 2]}),
            json!({"sub": "alice", "iat": 1516239022, "nested": {"a": true}}),
            &hmac(),
        );
        let v = verify_token(&t, &hs_keys(), &default_policy(), NOW).unwrap();
        assert_eq!(v.raw, t);
        assert_eq!(v.signature, t.rsplit('.').next().unwrap());
        assert_eq!(v.header["x-custom"], json!([1, 2]));
        assert_eq!(v.header["typ"], json!("JWT"));
        assert_eq!(v.claims["sub"], json!("alice"));
        assert_eq!(v.claims["iat"], json!(1516239022));
        assert_eq!(v.claims["nested"], json!({"a": true}));
        assert_eq!(v.algorithm, Algorithm::HS256);
    }

    /// A claim with a lone UTF-16 surrogate is U+FFFD, as Go's
    /// encoding/json (jwt-go) decodes it: the token stays readable.
    #[test]
    fn lone_surrogate_claim_decodes_as_go() {
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let t = format!(
            "{}.{}.",
            b64(r#"{"alg":"none"}"#),
            b64(r#"{"s":"\ud800x","t":"a\udc00\ud83d\ude00"}"#)
        );
        let v = decode_unverified(&t).unwrap();
        assert_eq!(v.claims["s"], json!("\u{FFFD}x"));
        assert_eq!(v.claims["t"], json!("a\u{FFFD}\u{1F600}"));
    }

    // ---- alg: none and the algorithm allow-list ----

    fn none_token(signature: &str) -> String {
        format!(
            "{}.{signature}",
            signing_input(&json!({"alg": "none"}), &json!({"sub": "x"}))
        )
    }

    #[test]
    fn alg_none_refused_when_not_listed() {
        let err = verify_token(&none_token(""), &hs_keys(), &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::DisallowedAlgorithm("none".into()));
        assert_eq!(err.validation_bits(), 2);
    }

    #[test]
    fn alg_none_accepted_when_listed_without_any_key() {
        let mut policy = default_policy();
        policy.valid_algorithms.push(Algorithm::None);
        let v = verify_token(&none_token(""), &KeySet::default(), &policy, NOW).unwrap();
        assert_eq!(v.algorithm, Algorithm::None);
        assert_eq!(v.signature, "");
    }

    #[test]
    fn alg_none_with_signature_refused() {
        let mut policy = default_policy();
        policy.valid_algorithms.push(Algorithm::None);
        let err = verify_token(&none_token("AAAA"), &hs_keys(), &policy, NOW).unwrap_err();
        assert_eq!(err, TokenError::BadSignature);
    }

    #[test]
    fn algorithm_not_in_valid_algorithms_refused() {
        let policy = ClaimPolicy {
            valid_algorithms: vec![Algorithm::RS256],
            ..ClaimPolicy::default()
        };
        let err = verify_token(&hs_token(json!({})), &hs_keys(), &policy, NOW).unwrap_err();
        assert_eq!(err, TokenError::DisallowedAlgorithm("HS256".into()));
        assert_eq!(err.description(), "signing method HS256 is not allowed");
    }

    #[test]
    fn unknown_algorithm_name_refused_as_disallowed() {
        let t = token_with_signature(json!({"alg": "ES256K"}), json!({}), &[1; 64]);
        let err = verify_token(&t, &hs_keys(), &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::DisallowedAlgorithm("ES256K".into()));
    }

    #[test]
    fn algorithm_names_are_case_sensitive() {
        let t = token_with_signature(json!({"alg": "NONE"}), json!({}), &[]);
        let mut policy = default_policy();
        policy.valid_algorithms.push(Algorithm::None);
        let err = verify_token(&t, &hs_keys(), &policy, NOW).unwrap_err();
        assert_eq!(err, TokenError::DisallowedAlgorithm("NONE".into()));
    }

    #[test]
    fn missing_alg_is_malformed() {
        let t = token_with_signature(json!({"typ": "JWT"}), json!({}), &[1; 32]);
        let err = verify_token(&t, &hs_keys(), &default_policy(), NOW).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{err:?}");
        assert_eq!(err.validation_bits(), 1);
    }

    #[test]
    fn non_string_alg_is_malformed() {
        let t = token_with_signature(json!({"alg": 256}), json!({}), &[1; 32]);
        let err = verify_token(&t, &hs_keys(), &default_policy(), NOW).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{err:?}");
    }

    // ---- forgeries ----

    #[test]
    fn hs256_keyed_with_rsa_public_key_material_refused() {
        let rsa = rsa_a();
        let jwk = rsa.jwk_with_kid("k1");
        let keys = key_set(vec![jwk.clone()]);
        let n_text = jwk["n"].as_str().unwrap().to_owned();
        let n_bytes = URL_SAFE_NO_PAD.decode(&n_text).unwrap();
        let jwk_text = serde_json::to_vec(&jwk).unwrap();
        for secret in [n_bytes, n_text.into_bytes(), jwk_text] {
            let forger = Priv::Hmac(secret);
            for header in [
                json!({"alg": "HS256", "kid": "k1"}),
                json!({"alg": "HS256"}),
            ] {
                let t = token(header, json!({"sub": "admin"}), &forger);
                let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
                assert!(matches!(err, TokenError::UnknownKey(_)), "{err:?}");
            }
        }
    }

    #[test]
    fn tampered_payload_refused() {
        let keys = key_set(vec![rsa_a().jwk_with_kid("k1")]);
        let t = token(
            json!({"alg": "RS256", "kid": "k1"}),
            json!({"sub": "bob"}),
            &rsa_a(),
        );
        let parts: Vec<&str> = t.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#);
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        let err = verify_token(&forged, &keys, &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::BadSignature);
        assert_eq!(err.validation_bits(), 4);
        assert_eq!(err.description(), "signature is invalid");
    }

    #[test]
    fn flipped_signature_bit_refused() {
        let keys = key_set(vec![p256().jwk_with_kid("k1")]);
        let t = token(json!({"alg": "ES256", "kid": "k1"}), json!({}), &p256());
        let err = verify_token(&corrupt_signature(&t), &keys, &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::BadSignature);
    }

    #[test]
    fn stripped_signature_refused() {
        for (key, alg) in [(hmac(), "HS256"), (p256(), "ES256"), (ed25519(), "EdDSA")] {
            let keys = key_set(vec![key.public_jwk()]);
            let t = token(json!({"alg": alg}), json!({"sub": "x"}), &key);
            let stripped = format!("{}.", t.rsplit_once('.').unwrap().0);
            let err = verify_token(&stripped, &keys, &default_policy(), NOW).unwrap_err();
            assert_eq!(err, TokenError::BadSignature, "{alg}");
        }
    }

    #[test]
    fn different_rsa_key_under_same_kid_refused() {
        let keys = key_set(vec![rsa_a().jwk_with_kid("k1")]);
        let t = token(json!({"alg": "RS256", "kid": "k1"}), json!({}), &rsa_b());
        let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::BadSignature);
    }

    #[test]
    fn different_ec_key_under_same_kid_refused() {
        let keys = key_set(vec![p256().jwk_with_kid("k1")]);
        let t = token(
            json!({"alg": "ES256", "kid": "k1"}),
            json!({}),
            &p256_other(),
        );
        let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::BadSignature);
    }

    #[test]
    fn different_hmac_secret_refused() {
        let t = token(
            json!({"alg": "HS256"}),
            json!({}),
            &Priv::Hmac(b"another secret".to_vec()),
        );
        let err = verify_token(&t, &hs_keys(), &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::BadSignature);
    }

    #[test]
    fn es256_signature_of_wrong_length_refused() {
        let key = p256();
        let keys = key_set(vec![key.public_jwk()]);
        let header = json!({"alg": "ES256"});
        let good = key.sign(
            Algorithm::ES256,
            signing_input(&header, &json!({})).as_bytes(),
        );
        assert_eq!(good.len(), 64);
        let mut long = good.clone();
        long.push(0);
        // A DER-encoded signature is what a confused signer would send.
        for sig in [&good[..63], &long[..], &[0_u8; 72][..], &[][..]] {
            let t = token_with_signature(header.clone(), json!({}), sig);
            let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
            assert_eq!(err, TokenError::BadSignature, "length {}", sig.len());
        }
    }

    #[test]
    fn es384_signature_of_wrong_length_refused() {
        let key = p384();
        let keys = key_set(vec![key.public_jwk()]);
        let header = json!({"alg": "ES384"});
        let good = key.sign(
            Algorithm::ES384,
            signing_input(&header, &json!({})).as_bytes(),
        );
        assert_eq!(good.len(), 96);
        for sig in [&good[..64], &good[..95], &[0_u8; 97][..]] {
            let t = token_with_signature(header.clone(), json!({}), sig);
            let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
            assert_eq!(err, TokenError::BadSignature, "length {}", sig.len());
        }
    }

    #[test]
    fn ecdsa_signature_of_zeros_refused() {
        let keys = key_set(vec![
            p256().public_jwk(),
            p384().public_jwk(),
            p521().public_jwk(),
        ]);
        for (alg, len) in [("ES256", 64), ("ES384", 96), ("ES512", 132)] {
            let t = token_with_signature(json!({"alg": alg}), json!({}), &vec![0; len]);
            let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
            assert_eq!(err, TokenError::BadSignature, "{alg}");
        }
    }

    #[test]
    fn hmac_signature_of_wrong_length_refused() {
        for len in [0, 1, 31, 33, 48, 64, 600] {
            let t = token_with_signature(json!({"alg": "HS256"}), json!({}), &vec![7; len]);
            let err = verify_token(&t, &hs_keys(), &default_policy(), NOW).unwrap_err();
            assert_eq!(err, TokenError::BadSignature, "length {len}");
        }
    }

    #[test]
    fn signature_not_base64url_refused() {
        let t = hs_token(json!({}));
        let (input, _) = t.rsplit_once('.').unwrap();
        for sig in ["a+b/", "abc=", "!!!!", "a"] {
            let err = verify_token(
                &format!("{input}.{sig}"),
                &hs_keys(),
                &default_policy(),
                NOW,
            )
            .unwrap_err();
            assert_eq!(err, TokenError::BadSignature, "{sig}");
        }
    }

    #[test]
    fn oversized_signature_refused() {
        let t = token_with_signature(json!({"alg": "RS256"}), json!({}), &[1; 4096]);
        let keys = key_set(vec![rsa_a().public_jwk()]);
        let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::BadSignature);
    }

    #[test]
    fn signature_checked_before_claims() {
        let t = hs_token(json!({"exp": NOW - 100.0, "iss": "evil"}));
        let policy = ClaimPolicy {
            issuer: Some("good".into()),
            ..default_policy()
        };
        let err = verify_token(&corrupt_signature(&t), &hs_keys(), &policy, NOW).unwrap_err();
        assert_eq!(err, TokenError::BadSignature);
    }

    // ---- key selection ----

    #[test]
    fn kid_selects_the_matching_key() {
        let keys = key_set(vec![
            p256().jwk_with_kid("a"),
            p256_other().jwk_with_kid("b"),
        ]);
        let t = token(
            json!({"alg": "ES256", "kid": "b"}),
            json!({}),
            &p256_other(),
        );
        assert!(verify_token(&t, &keys, &default_policy(), NOW).is_ok());
    }

    #[test]
    fn several_keys_with_the_same_kid_are_each_tried() {
        let keys = key_set(vec![
            p256().jwk_with_kid("a"),
            p256_other().jwk_with_kid("a"),
        ]);
        let t = token(
            json!({"alg": "ES256", "kid": "a"}),
            json!({}),
            &p256_other(),
        );
        assert!(verify_token(&t, &keys, &default_policy(), NOW).is_ok());
    }

    #[test]
    fn unknown_kid_refused_naming_it() {
        let keys = key_set(vec![p256().jwk_with_kid("a")]);
        let t = token(json!({"alg": "ES256", "kid": "nope"}), json!({}), &p256());
        let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::UnknownKey(Some("nope".into())));
        assert_eq!(err.validation_bits(), 2);
        assert_eq!(err.description(), "unknown key id \"nope\"");
    }

    #[test]
    fn kid_in_token_does_not_match_keys_without_kid() {
        let keys = key_set(vec![p256().public_jwk()]);
        let t = token(json!({"alg": "ES256", "kid": "a"}), json!({}), &p256());
        let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::UnknownKey(Some("a".into())));
    }

    #[test]
    fn kid_of_key_for_another_algorithm_is_unknown_key() {
        let keys = key_set(vec![p256().jwk_with_kid("a")]);
        let t = token(json!({"alg": "HS256", "kid": "a"}), json!({}), &hmac());
        let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::UnknownKey(Some("a".into())));
    }

    #[test]
    fn hostile_kid_is_sanitized_in_error() {
        let kid = format!("a\"b\\c\nd\u{e9}{}", "x".repeat(500));
        let keys = key_set(vec![p256().jwk_with_kid("a")]);
        let t = token(json!({"alg": "ES256", "kid": kid}), json!({}), &p256());
        let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
        let TokenError::UnknownKey(Some(shown)) = &err else {
            panic!("{err:?}")
        };
        assert!(shown.starts_with("a?b?c?d?x"), "{shown}");
        assert!(shown.len() <= 70, "{}", shown.len());
        assert!(err
            .description()
            .chars()
            .all(|c| c.is_ascii_graphic() || c == ' '));
    }

    #[test]
    fn non_string_kid_is_malformed() {
        let t = token(json!({"alg": "HS256", "kid": 7}), json!({}), &hmac());
        let err = verify_token(&t, &hs_keys(), &default_policy(), NOW).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn no_kid_with_one_fitting_key_accepted() {
        let keys = key_set(vec![p256().jwk_with_kid("a")]);
        let t = token(json!({"alg": "ES256"}), json!({}), &p256());
        assert!(verify_token(&t, &keys, &default_policy(), NOW).is_ok());
    }

    #[test]
    fn no_kid_with_two_fitting_keys_refused() {
        let keys = key_set(vec![
            p256().jwk_with_kid("a"),
            p256_other().jwk_with_kid("b"),
        ]);
        let t = token(json!({"alg": "ES256"}), json!({}), &p256());
        let err = verify_token(&t, &keys, &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::UnknownKey(None));
        assert_eq!(err.validation_bits(), 2);
    }

    #[cfg(feature = "ec-fallback")]
    #[test]
    fn no_kid_counts_only_keys_fitting_the_algorithm() {
        let keys = key_set(vec![
            p256().public_jwk(),
            p384().public_jwk(),
            ed25519().public_jwk(),
            hmac().public_jwk(),
        ]);
        let t = token(json!({"alg": "ES384"}), json!({}), &p384());
        assert!(verify_token(&t, &keys, &default_policy(), NOW).is_ok());
    }

    #[test]
    fn no_kid_with_empty_key_set_refused() {
        let t = hs_token(json!({}));
        let err = verify_token(&t, &KeySet::default(), &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::UnknownKey(None));
    }

    #[test]
    fn jwk_alg_pins_the_key_to_one_algorithm() {
        let mut jwk = hmac().jwk_with_kid("k");
        jwk["alg"] = json!("HS256");
        let keys = key_set(vec![jwk]);
        let ok = token(json!({"alg": "HS256", "kid": "k"}), json!({}), &hmac());
        assert!(verify_token(&ok, &keys, &default_policy(), NOW).is_ok());
        let other = token(json!({"alg": "HS512", "kid": "k"}), json!({}), &hmac());
        let err = verify_token(&other, &keys, &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::UnknownKey(Some("k".into())));
    }

    #[test]
    fn jwk_alg_pinning_picks_the_key_without_kid() {
        let mut pinned256 = hmac().public_jwk();
        pinned256["alg"] = json!("HS256");
        let mut pinned512 = Priv::Hmac(b"other".to_vec()).public_jwk();
        pinned512["alg"] = json!("HS512");
        let keys = key_set(vec![pinned256, pinned512]);
        assert!(verify_token(&hs_token(json!({})), &keys, &default_policy(), NOW).is_ok());
    }

    // ---- crit ----

    #[test]
    fn crit_naming_an_extension_refused() {
        let t = token(
            json!({"alg": "HS256", "crit": ["b64"], "b64": false}),
            json!({}),
            &hmac(),
        );
        let err = verify_token(&t, &hs_keys(), &default_policy(), NOW).unwrap_err();
        assert_eq!(err, TokenError::UnsupportedCritical("b64".into()));
        assert_eq!(err.validation_bits(), 2);
    }

    #[test]
    fn malformed_crit_is_malformed() {
        for crit in [
            json!([]),
            json!("b64"),
            json!([1]),
            json!(["a", null]),
            json!(null),
        ] {
            let t = token(json!({"alg": "HS256", "crit": crit}), json!({}), &hmac());
            let err = verify_token(&t, &hs_keys(), &default_policy(), NOW).unwrap_err();
            assert!(matches!(err, TokenError::Malformed(_)), "{crit}: {err:?}");
        }
    }

    // ---- exp ----

    #[test]
    fn expired_token_refused() {
        let err = verify_hs(json!({"exp": NOW - 1.0}), &default_policy()).unwrap_err();
        assert_eq!(err, TokenError::Expired);
        assert_eq!(err.validation_bits(), 16);
        assert_eq!(err.description(), "token is expired");
    }

    #[test]
    fn token_at_exp_second_accepted() {
        assert!(verify_hs(json!({"exp": NOW}), &default_policy()).is_ok());
    }

    #[test]
    fn expired_token_within_leeway_accepted() {
        let policy = ClaimPolicy {
            leeway_for_expires_at: secs(60),
            ..default_policy()
        };
        assert!(verify_hs(json!({"exp": NOW - 30.0}), &policy).is_ok());
        assert_eq!(
            verify_hs(json!({"exp": NOW - 61.0}), &policy).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn missing_exp_accepted_unless_required() {
        assert!(verify_hs(json!({}), &default_policy()).is_ok());
        let policy = ClaimPolicy {
            require_expires_at: true,
            ..default_policy()
        };
        let err = verify_hs(json!({}), &policy).unwrap_err();
        assert_eq!(err, TokenError::MissingClaim("exp"));
        assert_eq!(err.validation_bits(), 16);
    }

    #[test]
    fn fractional_exp_accepted() {
        assert!(verify_hs(json!({"exp": NOW + 0.5}), &default_policy()).is_ok());
    }

    #[test]
    fn exp_as_string_is_malformed() {
        let err = verify_hs(json!({"exp": "9999999999"}), &default_policy()).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{err:?}");
        assert_eq!(err.validation_bits(), 1);
    }

    // ---- nbf ----

    #[test]
    fn token_not_valid_yet_refused() {
        let err = verify_hs(json!({"nbf": NOW + 10.0}), &default_policy()).unwrap_err();
        assert_eq!(err, TokenError::NotYetValid);
        assert_eq!(err.validation_bits(), 128);
        assert_eq!(err.description(), "token is not valid yet");
    }

    #[test]
    fn token_not_valid_yet_within_leeway_accepted() {
        let policy = ClaimPolicy {
            leeway_for_not_before: secs(30),
            ..default_policy()
        };
        assert!(verify_hs(json!({"nbf": NOW + 10.0}), &policy).is_ok());
        assert_eq!(
            verify_hs(json!({"nbf": NOW + 31.0}), &policy).unwrap_err(),
            TokenError::NotYetValid
        );
    }

    #[test]
    fn missing_nbf_accepted_unless_required() {
        assert!(verify_hs(json!({}), &default_policy()).is_ok());
        let policy = ClaimPolicy {
            require_not_before: true,
            ..default_policy()
        };
        let err = verify_hs(json!({}), &policy).unwrap_err();
        assert_eq!(err, TokenError::MissingClaim("nbf"));
        assert_eq!(err.validation_bits(), 128);
    }

    #[test]
    fn nbf_as_string_is_malformed() {
        let err = verify_hs(json!({"nbf": "0"}), &default_policy()).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{err:?}");
    }

    // ---- iat ----

    #[test]
    fn token_issued_in_future_refused() {
        let err = verify_hs(json!({"iat": NOW + 10.0}), &default_policy()).unwrap_err();
        assert_eq!(err, TokenError::IssuedInFuture);
        assert_eq!(err.validation_bits(), 32);
        assert_eq!(err.description(), "token used before issued");
    }

    #[test]
    fn token_issued_in_future_within_leeway_accepted() {
        let policy = ClaimPolicy {
            leeway_for_issued_at: secs(30),
            ..default_policy()
        };
        assert!(verify_hs(json!({"iat": NOW + 10.0}), &policy).is_ok());
        assert_eq!(
            verify_hs(json!({"iat": NOW + 31.0}), &policy).unwrap_err(),
            TokenError::IssuedInFuture
        );
    }

    #[test]
    fn missing_iat_accepted_unless_required() {
        assert!(verify_hs(json!({}), &default_policy()).is_ok());
        let policy = ClaimPolicy {
            require_issued_at: true,
            ..default_policy()
        };
        let err = verify_hs(json!({}), &policy).unwrap_err();
        assert_eq!(err, TokenError::MissingClaim("iat"));
        assert_eq!(err.validation_bits(), 32);
    }

    #[test]
    fn iat_as_bool_is_malformed() {
        let err = verify_hs(json!({"iat": true}), &default_policy()).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{err:?}");
    }

    // ---- iss ----

    fn issuer_policy(require: bool) -> ClaimPolicy {
        ClaimPolicy {
            issuer: Some("https://idp.example.com".into()),
            require_issuer: require,
            ..default_policy()
        }
    }

    #[test]
    fn matching_issuer_accepted() {
        let claims = json!({"iss": "https://idp.example.com"});
        assert!(verify_hs(claims, &issuer_policy(true)).is_ok());
    }

    #[test]
    fn wrong_issuer_refused() {
        let err = verify_hs(
            json!({"iss": "https://evil.example.com"}),
            &issuer_policy(false),
        )
        .unwrap_err();
        assert_eq!(err, TokenError::WrongIssuer);
        assert_eq!(err.validation_bits(), 64);
        assert_eq!(err.description(), "invalid issuer");
    }

    #[test]
    fn non_string_issuer_refused() {
        let err = verify_hs(
            json!({"iss": ["https://idp.example.com"]}),
            &issuer_policy(false),
        )
        .unwrap_err();
        assert_eq!(err, TokenError::WrongIssuer);
    }

    #[test]
    fn missing_issuer_accepted_unless_required() {
        assert!(verify_hs(json!({}), &issuer_policy(false)).is_ok());
        let err = verify_hs(json!({}), &issuer_policy(true)).unwrap_err();
        assert_eq!(err, TokenError::MissingClaim("iss"));
        assert_eq!(err.validation_bits(), 64);
    }

    #[test]
    fn empty_issuer_counts_as_missing() {
        assert!(verify_hs(json!({"iss": ""}), &issuer_policy(false)).is_ok());
        let err = verify_hs(json!({"iss": ""}), &issuer_policy(true)).unwrap_err();
        assert_eq!(err, TokenError::MissingClaim("iss"));
    }

    #[test]
    fn any_issuer_accepted_when_none_configured() {
        assert!(verify_hs(json!({"iss": "whoever"}), &default_policy()).is_ok());
    }

    // ---- aud ----

    fn audience_policy(require: bool) -> ClaimPolicy {
        ClaimPolicy {
            audience: Some("api".into()),
            require_audience: require,
            ..default_policy()
        }
    }

    #[test]
    fn matching_audience_string_accepted() {
        assert!(verify_hs(json!({"aud": "api"}), &audience_policy(true)).is_ok());
    }

    #[test]
    fn audience_array_containing_it_accepted() {
        assert!(verify_hs(json!({"aud": ["web", 3, "api"]}), &audience_policy(true)).is_ok());
    }

    #[test]
    fn audience_array_without_it_refused() {
        let err = verify_hs(json!({"aud": ["web", "admin"]}), &audience_policy(false)).unwrap_err();
        assert_eq!(err, TokenError::WrongAudience);
        assert_eq!(err.validation_bits(), 8);
        assert_eq!(err.description(), "invalid audience");
    }

    #[test]
    fn wrong_audience_string_refused() {
        let err = verify_hs(json!({"aud": "apix"}), &audience_policy(false)).unwrap_err();
        assert_eq!(err, TokenError::WrongAudience);
    }

    #[test]
    fn missing_audience_accepted_unless_required() {
        assert!(verify_hs(json!({}), &audience_policy(false)).is_ok());
        let err = verify_hs(json!({}), &audience_policy(true)).unwrap_err();
        assert_eq!(err, TokenError::MissingClaim("aud"));
        assert_eq!(err.validation_bits(), 8);
    }

    #[test]
    fn empty_audience_array_counts_as_missing() {
        assert!(verify_hs(json!({"aud": []}), &audience_policy(false)).is_ok());
        let err = verify_hs(json!({"aud": []}), &audience_policy(true)).unwrap_err();
        assert_eq!(err, TokenError::MissingClaim("aud"));
    }

    #[test]
    fn any_audience_accepted_when_none_configured() {
        assert!(verify_hs(json!({"aud": ["x", "y"]}), &default_policy()).is_ok());
    }

    // ---- scopes ----

    #[test]
    fn scopes_from_space_separated_string() {
        let claims = json!({"scope": "read  write\tadmin"});
        let claims = claims.as_object().unwrap();
        assert_eq!(check_scopes(claims, ["read", "admin"]), Ok(()));
        assert_eq!(check_scopes(claims, ["rea"]), Err(vec!["rea".to_owned()]));
    }

    #[test]
    fn scopes_from_array() {
        let claims = json!({"scope": ["read", "write", 5]});
        let claims = claims.as_object().unwrap();
        assert_eq!(check_scopes(claims, &["write".to_owned()]), Ok(()));
    }

    #[test]
    fn missing_scopes_returned_in_required_order() {
        let claims = json!({"scope": "b"});
        let claims = claims.as_object().unwrap();
        assert_eq!(
            check_scopes(claims, ["c", "b", "a"]),
            Err(vec!["c".to_owned(), "a".to_owned()])
        );
    }

    #[test]
    fn scopes_fall_back_to_scp() {
        let claims = json!({"scp": ["read"]});
        assert_eq!(check_scopes(claims.as_object().unwrap(), ["read"]), Ok(()));
        let claims = json!({"scp": "read write"});
        assert_eq!(check_scopes(claims.as_object().unwrap(), ["write"]), Ok(()));
    }

    #[test]
    fn scope_claim_takes_precedence_over_scp() {
        let claims = json!({"scope": "read", "scp": ["admin"]});
        assert_eq!(
            check_scopes(claims.as_object().unwrap(), ["admin"]),
            Err(vec!["admin".to_owned()])
        );
    }

    #[test]
    fn no_scope_claim_misses_every_scope() {
        let claims = json!({"scope": 42});
        assert_eq!(
            check_scopes(claims.as_object().unwrap(), ["read"]),
            Err(vec!["read".to_owned()])
        );
        assert_eq!(check_scopes(&Map::new(), Vec::<String>::new()), Ok(()));
    }

    // ---- hostile input ----

    fn assert_malformed(t: &str) {
        let err = verify_token(t, &hs_keys(), &default_policy(), NOW).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn token_over_16_kib_is_malformed() {
        let t = hs_token(json!({"pad": "x".repeat(MAX_TOKEN_LEN)}));
        assert_malformed(&t);
    }

    #[test]
    fn token_without_three_segments_is_malformed() {
        for t in [
            "",
            ".",
            "..",
            "...",
            "abc",
            "a.b",
            "a.b.c.d",
            "eyJhbGciOiJIUzI1NiJ9.e30",
        ] {
            assert_malformed(t);
        }
    }

    #[test]
    fn non_json_header_is_malformed() {
        let header = URL_SAFE_NO_PAD.encode(b"not json");
        assert_malformed(&format!("{header}.e30.AAAA"));
    }

    #[test]
    fn non_object_header_is_malformed() {
        for header in [&b"[]"[..], b"\"HS256\"", b"null", b"\xff\xfe"] {
            let header = URL_SAFE_NO_PAD.encode(header);
            assert_malformed(&format!("{header}.e30.AAAA"));
        }
    }

    #[test]
    fn padded_or_non_url_base64_header_is_malformed() {
        let header = base64::engine::general_purpose::URL_SAFE.encode(br#"{"alg": "HS256"}"#);
        assert!(header.ends_with('='));
        assert_malformed(&format!("{header}.e30.AAAA"));
        let header =
            base64::engine::general_purpose::STANDARD.encode(br#"{"alg":"HS256","x":"???"}"#);
        assert!(header.contains('/'));
        assert_malformed(&format!("{header}.e30.AAAA"));
    }

    #[test]
    fn non_object_payload_is_malformed() {
        let header = json!({"alg": "HS256"});
        let payload = URL_SAFE_NO_PAD.encode(b"[1,2]");
        let input = format!(
            "{}.{payload}",
            signing_input(&header, &json!({}))
                .split('.')
                .next()
                .unwrap()
        );
        let sig = hmac().sign(Algorithm::HS256, input.as_bytes());
        assert_malformed(&format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)));
    }

    #[test]
    fn deeply_nested_json_is_malformed_without_overflow() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
        // In the header (parsed before the signature).
        assert_malformed(&format!("{}.e30.AAAA", URL_SAFE_NO_PAD.encode(&deep)));
        // In a correctly signed payload.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(&deep));
        let sig = hmac().sign(Algorithm::HS256, input.as_bytes());
        assert_malformed(&format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)));
    }

    #[test]
    fn out_of_range_number_is_malformed() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(br#"{"exp":1e400}"#));
        let sig = hmac().sign(Algorithm::HS256, input.as_bytes());
        assert_malformed(&format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)));
    }

    #[test]
    fn huge_numbers_do_not_panic() {
        for exp in [
            json!(u64::MAX),
            json!(i64::MIN),
            json!(f64::MAX),
            json!(-0.0),
        ] {
            let _ = verify_hs(
                json!({"exp": exp, "nbf": exp, "iat": exp}),
                &default_policy(),
            );
        }
        assert!(verify_hs(json!({"exp": f64::MAX}), &default_policy()).is_ok());
        assert_eq!(
            verify_hs(json!({"exp": i64::MIN}), &default_policy()).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn arbitrary_inputs_never_panic() {
        let keys = key_set(vec![
            rsa_a().jwk_with_kid("r"),
            p256().jwk_with_kid("e"),
            p384().public_jwk(),
            ed25519().public_jwk(),
            hmac().public_jwk(),
        ]);
        let mut policy = default_policy();
        policy.valid_algorithms.push(Algorithm::None);
        let alphabet: Vec<char> = "eyJhbGciOiJ9.._-+/=AZaz09\u{e9}\"{}[]:,".chars().collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let len = (next() % 120) as usize;
            let t: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = verify_token(&t, &keys, &policy, NOW);
        }
        // Structured garbage: valid headers for every alg with random signatures.
        for alg in Algorithm::ALL {
            for len in [0_usize, 1, 32, 48, 64, 96, 255, 256, 512, 513] {
                let sig: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                for header in [
                    json!({"alg": alg.name()}),
                    json!({"alg": alg.name(), "kid": "r"}),
                ] {
                    let t = token_with_signature(header, json!({"exp": "x"}), &sig);
                    assert!(verify_token(&t, &keys, &policy, NOW).is_err());
                }
            }
        }
    }

    #[test]
    fn validation_bits_follow_jwt_go() {
        let cases = [
            (TokenError::Malformed("x".into()), 1),
            (TokenError::DisallowedAlgorithm("none".into()), 2),
            (TokenError::UnknownKey(None), 2),
            (TokenError::UnsupportedCritical("b64".into()), 2),
            (TokenError::BadSignature, 4),
            (TokenError::WrongAudience, 8),
            (TokenError::Expired, 16),
            (TokenError::IssuedInFuture, 32),
            (TokenError::WrongIssuer, 64),
            (TokenError::NotYetValid, 128),
            (TokenError::MissingClaim("exp"), 16),
            (TokenError::MissingClaim("nbf"), 128),
            (TokenError::MissingClaim("iat"), 32),
            (TokenError::MissingClaim("iss"), 64),
            (TokenError::MissingClaim("aud"), 8),
        ];
        for (err, bits) in cases {
            assert_eq!(err.validation_bits(), bits, "{err:?}");
        }
    }

    #[test]
    fn malformed_description_does_not_echo_the_token() {
        let secret_claim = "SENSITIVE-CLAIM-VALUE";
        let err = verify_hs(json!({"exp": secret_claim}), &default_policy()).unwrap_err();
        let text = err.description();
        assert!(text.starts_with("token is malformed: "), "{text}");
        assert!(!text.contains(secret_claim), "{text}");
    }
}
