//! JWK Set parsing into verification keys, and key selection.
//!
//! Every usable JWK is converted once, at load time, into the form the signature
//! code needs (an RSA public key, a curve point, HMAC keys): nothing is parsed per
//! request. A key is bound to one algorithm family by its type (`RSA` → RS*/PS*,
//! `EC` P-256 → ES256, `EC` P-384 → ES384, `EC` P-521 → ES512, `OKP` Ed25519 → EdDSA, `oct` → HS*), so an
//! RSA public key can never be used as an HMAC secret (algorithm confusion).

use std::borrow::Cow;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use jwt_compact::alg::{
    Ed25519, Es256, Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key, Rsa, RsaPublicKey,
};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm as JwsAlgorithm, AlgorithmSignature};
#[cfg(feature = "ec-fallback")]
use p384::ecdsa::signature::Verifier as _;

use super::host_crypto::{
    ec_spki, ecdsa_der_signature, rsa_spki, SignatureVerifier, OID_P256, OID_P384, OID_P521,
};
use serde_json::{Map, Value};

/// Signature algorithms Portcullis knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
    HS256,
    HS384,
    HS512,
    None,
}

impl Algorithm {
    /// Every algorithm, in spec order (`none` last).
    pub const ALL: [Algorithm; 14] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::None,
    ];

    /// Parses a JOSE `alg` value (case-sensitive, `none` lower case).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.iter().copied().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::None => "none",
        }
    }
}

/// At most this many keys are kept from one JWK Set; the rest are skipped with a warning.
pub const MAX_KEYS: usize = 100;

/// Smallest RSA modulus accepted (RFC 7518 section 3.3).
const MIN_RSA_BITS: usize = 2048;

/// JWK members are base64url; tolerate padding, which some issuers emit.
const JWK_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// HMAC secrets, prepared for each hash size.
#[derive(Debug, Clone)]
pub(crate) struct OctKey {
    hs256: Hs256Key,
    hs384: Hs384Key,
    hs512: Hs512Key,
}

/// Verifier-ready key material. The variant decides which algorithms it can verify.
#[derive(Debug, Clone)]
pub(crate) enum Material {
    Rsa(Box<RsaPublicKey>),
    P256(Box<<Es256 as JwsAlgorithm>::VerifyingKey>),
    // Read by the pure-Rust check only (`ec-fallback`).
    P384(#[cfg_attr(not(feature = "ec-fallback"), allow(dead_code))] Box<P384Key>),
    P521(#[cfg_attr(not(feature = "ec-fallback"), allow(dead_code))] Box<P521Key>),
    Ed25519(Box<<Ed25519 as JwsAlgorithm>::VerifyingKey>),
    Oct(Box<OctKey>),
}

/// A P-384 public key, for the pure-Rust check (`ec-fallback`).
#[cfg(feature = "ec-fallback")]
pub(crate) type P384Key = p384::ecdsa::VerifyingKey;
/// Without `ec-fallback` a P-384 key is its DER form alone (`Jwk::spki`): only
/// the host's `verify_signature` checks ES384.
#[cfg(not(feature = "ec-fallback"))]
#[derive(Debug, Clone)]
pub(crate) struct P384Key;

/// A P-521 public key (its type has no `Debug`).
#[derive(Clone)]
pub(crate) struct P521Key(#[cfg(feature = "ec-fallback")] p521::ecdsa::VerifyingKey);

impl std::fmt::Debug for P521Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P521Key")
    }
}

/// Whether this build checks ES384 and ES512 itself when the host cannot
/// (the `ec-fallback` feature); without it those two need Envoy's
/// `verify_signature`.
pub const EC_FALLBACK: bool = cfg!(feature = "ec-fallback");

impl Material {
    /// Whether this key type belongs to `alg`'s family.
    fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm as A;
        matches!(
            (self, alg),
            (
                Material::Rsa(_),
                A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512
            ) | (Material::P256(_), A::ES256)
                | (Material::P384(_), A::ES384)
                | (Material::P521(_), A::ES512)
                | (Material::Ed25519(_), A::EdDSA)
                | (Material::Oct(_), A::HS256 | A::HS384 | A::HS512)
        )
    }

    /// Checks `signature` over `message` with this key under `alg`. A key type that
    /// does not fit `alg` never verifies. RS* and ES* go to `host` when there is
    /// one and the key has its DER form; otherwise (or when the host cannot
    /// tell) the pure-Rust code decides; without `ec-fallback`, ES384 and ES512
    /// then never verify.
    fn verify(
        &self,
        spki: Option<&[u8]>,
        host: Option<&dyn SignatureVerifier>,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        use Algorithm as A;
        if let (Some(host), Some(spki)) = (host, spki) {
            let answer = match (self, alg) {
                (Material::Rsa(_), A::RS256) => host.verify("sha256", spki, message, signature),
                (Material::Rsa(_), A::RS384) => host.verify("sha384", spki, message, signature),
                (Material::Rsa(_), A::RS512) => host.verify("sha512", spki, message, signature),
                (Material::P256(_), A::ES256) => ecdsa_der_signature(signature, 32)
                    .and_then(|der| host.verify("sha256", spki, message, &der)),
                (Material::P384(_), A::ES384) => ecdsa_der_signature(signature, 48)
                    .and_then(|der| host.verify("sha384", spki, message, &der)),
                (Material::P521(_), A::ES512) => ecdsa_der_signature(signature, 66)
                    .and_then(|der| host.verify("sha512", spki, message, &der)),
                _ => None,
            };
            if let Some(valid) = answer {
                return valid;
            }
        }
        match (self, alg) {
            (Material::Rsa(k), A::RS256) => check(&Rsa::rs256(), k, message, signature),
            (Material::Rsa(k), A::RS384) => check(&Rsa::rs384(), k, message, signature),
            (Material::Rsa(k), A::RS512) => check(&Rsa::rs512(), k, message, signature),
            (Material::Rsa(k), A::PS256) => check(&Rsa::ps256(), k, message, signature),
            (Material::Rsa(k), A::PS384) => check(&Rsa::ps384(), k, message, signature),
            (Material::Rsa(k), A::PS512) => check(&Rsa::ps512(), k, message, signature),
            (Material::P256(k), A::ES256) => check(&Es256, k, message, signature),
            #[cfg(feature = "ec-fallback")]
            (Material::P384(k), A::ES384) => {
                // JWS carries raw r||s (RFC 7518 section 3.4), 48 bytes each.
                if signature.len() != 96 {
                    return false;
                }
                match p384::ecdsa::Signature::from_slice(signature) {
                    Ok(sig) => k.verify(message, &sig).is_ok(),
                    Err(_) => false,
                }
            }
            #[cfg(feature = "ec-fallback")]
            (Material::P521(k), A::ES512) => {
                // r||s, 66 bytes each (RFC 7518 section 3.4).
                if signature.len() != 132 {
                    return false;
                }
                match p521::ecdsa::Signature::from_slice(signature) {
                    Ok(sig) => k.0.verify(message, &sig).is_ok(),
                    Err(_) => false,
                }
            }
            (Material::Ed25519(k), A::EdDSA) => check(&Ed25519, k, message, signature),
            (Material::Oct(k), A::HS256) => check(&Hs256, &k.hs256, message, signature),
            (Material::Oct(k), A::HS384) => check(&Hs384, &k.hs384, message, signature),
            (Material::Oct(k), A::HS512) => check(&Hs512, &k.hs512, message, signature),
            _ => false,
        }
    }
}

/// Runs one jwt-compact verifier. The fixed signature length is checked first:
/// some `try_from_slice` implementations (HMAC) panic on a wrong length.
fn check<A: JwsAlgorithm>(
    alg: &A,
    key: &A::VerifyingKey,
    message: &[u8],
    signature: &[u8],
) -> bool {
    if let Some(len) = <A::Signature as AlgorithmSignature>::LENGTH {
        if signature.len() != len.get() {
            return false;
        }
    }
    match <A::Signature as AlgorithmSignature>::try_from_slice(signature) {
        Ok(sig) => alg.verify_signature(&sig, key, message),
        Err(_) => false,
    }
}

/// One usable verification key.
#[derive(Debug, Clone)]
pub(crate) struct Jwk {
    kid: Option<String>,
    /// The JWK's `alg`: when set, the key verifies only this algorithm.
    alg: Option<Algorithm>,
    material: Material,
    /// DER SubjectPublicKeyInfo (RSA and EC keys), for host verification.
    spki: Option<Box<[u8]>>,
}

impl Jwk {
    fn usable_for(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|pinned| pinned == alg) && self.material.fits(alg)
    }
}

/// Outcome of checking a signature against a key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureCheck {
    Valid,
    /// No key fits (see `KeySet::check_signature`).
    NoKey,
    Invalid,
}

/// A parsed JWK Set: the usable verification keys.
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    keys: Vec<Jwk>,
    /// Unique per parsed set (0 for the empty default): what the verified-token
    /// cache ties its entries to.
    id: u64,
}

static NEXT_KEY_SET_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_key_set_id() -> u64 {
    NEXT_KEY_SET_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl KeySet {
    /// Parses a JWK Set document. Keys of unknown type, malformed keys and RSA keys
    /// under 2048 bits are skipped; each skip is described in the returned warnings.
    /// Only a document that is not a JWK Set at all is an error.
    ///
    /// Also skipped (with a warning): keys whose `use` is not `sig`, whose `key_ops`
    /// lacks `verify`, whose `alg` Portcullis does not support or that does not fit the
    /// key type, and every key after the first [`MAX_KEYS`] usable ones.
    pub fn from_json(bytes: &[u8]) -> Result<(KeySet, Vec<String>), String> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("JWK Set is not valid JSON: {e}"))?;
        let Value::Object(doc) = doc else {
            return Err("JWK Set is not a JSON object".to_owned());
        };
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err("JWK Set has no \"keys\" array".to_owned());
        };
        let mut keys = Vec::with_capacity(entries.len().min(MAX_KEYS));
        let mut warnings = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let label = key_label(index, entry);
            if keys.len() >= MAX_KEYS {
                warnings.push(format!(
                    "{label}: skipped, a JWK Set may hold at most {MAX_KEYS} usable keys"
                ));
                continue;
            }
            match parse_jwk(entry) {
                Ok(key) => keys.push(key),
                Err(reason) => warnings.push(format!("{label}: skipped, {reason}")),
            }
        }
        Ok((
            KeySet {
                keys,
                id: next_key_set_id(),
            },
            warnings,
        ))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// This set's identity (a refreshed JWK Set is a new set).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The same keys under a new identity (tests).
    #[cfg(test)]
    pub(crate) fn clone_with_new_id(&self) -> KeySet {
        KeySet {
            keys: self.keys.clone(),
            id: next_key_set_id(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a key with this `kid` is in the set.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Checks `signature` over `message` for `alg`.
    ///
    /// With a `kid`, every key carrying that `kid` and usable for `alg` is tried
    /// (`NoKey` when there is none). Without one, the token is checked only when
    /// exactly one key in the set is usable for `alg`; otherwise `NoKey`.
    pub(crate) fn check_signature(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
        host: Option<&dyn SignatureVerifier>,
    ) -> SignatureCheck {
        match kid {
            Some(kid) => {
                let mut found = false;
                for key in self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid) && k.usable_for(alg))
                {
                    found = true;
                    if key
                        .material
                        .verify(key.spki.as_deref(), host, alg, message, signature)
                    {
                        return SignatureCheck::Valid;
                    }
                }
                if found {
                    SignatureCheck::Invalid
                } else {
                    SignatureCheck::NoKey
                }
            }
            None => {
                let mut usable = self.keys.iter().filter(|k| k.usable_for(alg));
                match (usable.next(), usable.next()) {
                    (Some(key), None) => {
                        if key
                            .material
                            .verify(key.spki.as_deref(), host, alg, message, signature)
                        {
                            SignatureCheck::Valid
                        } else {
                            SignatureCheck::Invalid
                        }
                    }
                    _ => SignatureCheck::NoKey,
                }
            }
        }
    }
}

/// `key #3 (kid "abc")`, for warnings.
fn key_label(index: usize, entry: &Value) -> String {
    match entry.get("kid").and_then(Value::as_str) {
        Some(kid) => format!("JWK Set key #{index} (kid \"{}\")", printable(kid, 64)),
        None => format!("JWK Set key #{index}"),
    }
}

/// `s` cut to `max` characters, with anything but printable ASCII (and `"`, `\`)
/// replaced by `?`: safe to put in a log line or a quoted header parameter.
pub(crate) fn printable(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max.saturating_add(3)));
    for (count, c) in s.chars().enumerate() {
        if count >= max {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
            out.push(c);
        } else {
            out.push('?');
        }
    }
    out
}

fn parse_jwk(entry: &Value) -> Result<Jwk, String> {
    let Value::Object(jwk) = entry else {
        return Err("not a JSON object".to_owned());
    };
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("\"kid\" is not a string".to_owned()),
    };
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(Value::String(u)) => {
            return Err(format!("\"use\" is \"{}\", not \"sig\"", printable(u, 16)))
        }
        Some(_) => return Err("\"use\" is not a string".to_owned()),
    }
    match jwk.get("key_ops") {
        None => {}
        Some(Value::Array(ops)) if ops.iter().any(|op| op.as_str() == Some("verify")) => {}
        Some(Value::Array(_)) => return Err("\"key_ops\" does not include \"verify\"".to_owned()),
        Some(_) => return Err("\"key_ops\" is not an array".to_owned()),
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => match Algorithm::from_name(name) {
            Some(Algorithm::None) | None => {
                return Err(format!(
                    "\"alg\" \"{}\" is not a supported signature algorithm",
                    printable(name, 16)
                ))
            }
            Some(alg) => Some(alg),
        },
        Some(_) => return Err("\"alg\" is not a string".to_owned()),
    };
    let (material, spki) = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => rsa_key(jwk)?,
        Some("EC") => ec_key(jwk)?,
        Some("OKP") => (okp_key(jwk)?, None),
        Some("oct") => (oct_key(jwk)?, None),
        Some(other) => return Err(format!("unknown key type \"{}\"", printable(other, 16))),
        None => return Err("no \"kty\" string".to_owned()),
    };
    if let Some(alg) = alg {
        if !material.fits(alg) {
            return Err(format!("\"alg\" {} does not fit the key type", alg.name()));
        }
    }
    Ok(Jwk {
        kid,
        alg,
        material,
        spki: spki.map(Vec::into_boxed_slice),
    })
}

/// Decodes a base64url member.
fn member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let Some(value) = jwk.get(name) else {
        return Err(format!("no \"{name}\""));
    };
    let Some(text) = value.as_str() else {
        return Err(format!("\"{name}\" is not a string"));
    };
    JWK_B64
        .decode(text)
        .map_err(|_| format!("\"{name}\" is not base64url"))
}

/// Bit length of a big-endian unsigned integer.
fn bit_length(bytes: &[u8]) -> usize {
    let mut significant = bytes.iter().skip_while(|b| **b == 0);
    match significant.next() {
        None => 0,
        Some(first) => {
            let rest = significant.count();
            let first_bits = 8_usize.saturating_sub(first.leading_zeros() as usize);
            rest.saturating_mul(8).saturating_add(first_bits)
        }
    }
}

fn rsa_key(jwk: &Map<String, Value>) -> Result<(Material, Option<Vec<u8>>), String> {
    let n = member(jwk, "n")?;
    let e = member(jwk, "e")?;
    let bits = bit_length(&n);
    if bits < MIN_RSA_BITS {
        return Err(format!("RSA modulus is {bits} bits, under {MIN_RSA_BITS}"));
    }
    let parsed = JsonWebKey::Rsa {
        modulus: Cow::Borrowed(&n),
        public_exponent: Cow::Borrowed(&e),
        private_parts: None,
    };
    let key = RsaPublicKey::try_from(&parsed).map_err(|e| format!("invalid RSA key: {e}"))?;
    Ok((Material::Rsa(Box::new(key)), Some(rsa_spki(&n, &e))))
}

fn ec_key(jwk: &Map<String, Value>) -> Result<(Material, Option<Vec<u8>>), String> {
    match jwk.get("crv").and_then(Value::as_str) {
        Some("P-256") => {
            let x = member(jwk, "x")?;
            let y = member(jwk, "y")?;
            let parsed = JsonWebKey::EllipticCurve {
                curve: Cow::Borrowed("P-256"),
                x: Cow::Borrowed(&x),
                y: Cow::Borrowed(&y),
                secret: None,
            };
            let key = <Es256 as JwsAlgorithm>::VerifyingKey::try_from(&parsed)
                .map_err(|e| format!("invalid P-256 key: {e}"))?;
            Ok((
                Material::P256(Box::new(key)),
                Some(ec_spki(OID_P256, &x, &y)),
            ))
        }
        Some("P-384") => {
            let x = member(jwk, "x")?;
            let y = member(jwk, "y")?;
            if x.len() != 48 || y.len() != 48 {
                return Err("invalid P-384 key: coordinates must be 48 bytes".to_owned());
            }
            let key = p384_key(&x, &y)?;
            Ok((
                Material::P384(Box::new(key)),
                Some(ec_spki(OID_P384, &x, &y)),
            ))
        }
        Some("P-521") => {
            let x = member(jwk, "x")?;
            let y = member(jwk, "y")?;
            if x.len() != 66 || y.len() != 66 {
                return Err("invalid P-521 key: coordinates must be 66 bytes".to_owned());
            }
            let key = p521_key(&x, &y)?;
            Ok((
                Material::P521(Box::new(key)),
                Some(ec_spki(OID_P521, &x, &y)),
            ))
        }
        Some(other) => Err(format!("unsupported EC curve \"{}\"", printable(other, 16))),
        None => Err("EC key has no \"crv\" string".to_owned()),
    }
}

/// The uncompressed SEC1 point `04 || x || y`.
#[cfg(feature = "ec-fallback")]
fn sec1_point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut sec1 = Vec::with_capacity(x.len().saturating_add(y.len()).saturating_add(1));
    sec1.push(4_u8);
    sec1.extend_from_slice(x);
    sec1.extend_from_slice(y);
    sec1
}

/// A P-384 key for the pure-Rust check; refused when not a curve point.
#[cfg(feature = "ec-fallback")]
fn p384_key(x: &[u8], y: &[u8]) -> Result<P384Key, String> {
    p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1_point(x, y))
        .map_err(|_| "invalid P-384 key: not a curve point".to_owned())
}

/// Without `ec-fallback`: nothing to build; the host's `verify_signature`
/// checks the point (a point off the curve never verifies).
#[cfg(not(feature = "ec-fallback"))]
fn p384_key(_x: &[u8], _y: &[u8]) -> Result<P384Key, String> {
    Ok(P384Key)
}

/// A P-521 key for the pure-Rust check; refused when not a curve point.
#[cfg(feature = "ec-fallback")]
fn p521_key(x: &[u8], y: &[u8]) -> Result<P521Key, String> {
    p521::ecdsa::VerifyingKey::from_sec1_bytes(&sec1_point(x, y))
        .map(P521Key)
        .map_err(|_| "invalid P-521 key: not a curve point".to_owned())
}

/// Without `ec-fallback`: as [`p384_key`].
#[cfg(not(feature = "ec-fallback"))]
fn p521_key(_x: &[u8], _y: &[u8]) -> Result<P521Key, String> {
    Ok(P521Key())
}

fn okp_key(jwk: &Map<String, Value>) -> Result<Material, String> {
    match jwk.get("crv").and_then(Value::as_str) {
        Some("Ed25519") => {
            let x = member(jwk, "x")?;
            let parsed = JsonWebKey::KeyPair {
                curve: Cow::Borrowed("Ed25519"),
                x: Cow::Borrowed(&x),
                secret: None,
            };
            let key = <Ed25519 as JwsAlgorithm>::VerifyingKey::try_from(&parsed)
                .map_err(|e| format!("invalid Ed25519 key: {e}"))?;
            Ok(Material::Ed25519(Box::new(key)))
        }
        Some(other) => Err(format!(
            "unsupported OKP curve \"{}\"",
            printable(other, 16)
        )),
        None => Err("OKP key has no \"crv\" string".to_owned()),
    }
}

fn oct_key(jwk: &Map<String, Value>) -> Result<Material, String> {
    let k = member(jwk, "k")?;
    if k.is_empty() {
        return Err("\"k\" is empty".to_owned());
    }
    Ok(Material::Oct(Box::new(OctKey {
        hs256: Hs256Key::new(&k),
        hs384: Hs384Key::new(&k),
        hs512: Hs512Key::new(&k),
    })))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use crate::jwt::verify::test_fixtures::*;
    use serde_json::json;

    fn parse(doc: Value) -> (KeySet, Vec<String>) {
        KeySet::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap()
    }

    /// Parses a set of one key, expecting it skipped; returns the warning.
    fn skipped(jwk: Value) -> String {
        let (set, warnings) = parse(json!({ "keys": [jwk] }));
        assert_eq!(set.len(), 0);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        warnings.into_iter().next().unwrap()
    }

    #[test]
    fn parses_every_supported_key_type() {
        let (set, warnings) = parse(json!({"keys": [
            rsa_a().jwk_with_kid("rsa"),
            p256().jwk_with_kid("p256"),
            p384().jwk_with_kid("p384"),
            ed25519().jwk_with_kid("ed"),
            hmac().jwk_with_kid("oct"),
        ]}));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(set.len(), 5);
        assert!(!set.is_empty());
        for kid in ["rsa", "p256", "p384", "ed", "oct"] {
            assert!(set.has_kid(kid), "{kid}");
        }
        assert!(!set.has_kid("other"));
    }

    #[test]
    fn extra_members_and_padding_are_tolerated() {
        let mut jwk = p256().jwk_with_kid("k");
        jwk["use"] = json!("sig");
        jwk["alg"] = json!("ES256");
        jwk["key_ops"] = json!(["verify"]);
        jwk["x5t"] = json!("whatever");
        let padded = format!("{}=", jwk["x"].as_str().unwrap());
        jwk["x"] = json!(padded);
        let (set, warnings) = parse(json!({"keys": [jwk], "extra": 1}));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn unknown_key_type_skipped_with_warning() {
        let warning = skipped(json!({"kty": "XYZ", "kid": "k1"}));
        assert!(warning.contains("unknown key type \"XYZ\""), "{warning}");
        assert!(warning.contains("kid \"k1\""), "{warning}");
    }

    #[test]
    fn missing_kty_skipped_with_warning() {
        let warning = skipped(json!({"n": "AQAB", "e": "AQAB"}));
        assert!(warning.contains("kty"), "{warning}");
    }

    #[test]
    fn rsa_key_under_2048_bits_skipped_with_warning() {
        let jwk: Value = serde_json::from_str(RSA_1024_PUBLIC_JWK).unwrap();
        let warning = skipped(jwk);
        assert!(warning.contains("1024 bits"), "{warning}");
    }

    #[test]
    fn encryption_key_skipped_with_warning() {
        let mut jwk = rsa_a().public_jwk();
        jwk["use"] = json!("enc");
        let warning = skipped(jwk);
        assert!(warning.contains("\"use\" is \"enc\""), "{warning}");
    }

    #[test]
    fn key_ops_without_verify_skipped_with_warning() {
        let mut jwk = hmac().public_jwk();
        jwk["key_ops"] = json!(["encrypt"]);
        assert!(skipped(jwk).contains("key_ops"));
    }

    #[test]
    fn malformed_base64_skipped_with_warning() {
        let mut jwk = rsa_a().public_jwk();
        jwk["n"] = json!("not*base64!");
        let warning = skipped(jwk);
        assert!(warning.contains("\"n\" is not base64url"), "{warning}");
    }

    #[test]
    fn missing_key_member_skipped_with_warning() {
        let warning = skipped(json!({"kty": "OKP", "crv": "Ed25519"}));
        assert!(warning.contains("no \"x\""), "{warning}");
    }

    #[test]
    fn unsupported_curves_skipped_with_warning() {
        let w = skipped(json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}));
        assert!(w.contains("unsupported EC curve \"secp256k1\""), "{w}");
        let w = skipped(json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}));
        assert!(w.contains("coordinates must be 66 bytes"), "{w}");
        let w = skipped(json!({"kty": "OKP", "crv": "X25519", "x": "AA"}));
        assert!(w.contains("unsupported OKP curve \"X25519\""), "{w}");
    }

    #[test]
    fn ec_point_not_on_curve_skipped_with_warning() {
        // Without `ec-fallback` a P-384 point is checked by the host only.
        let keys = if EC_FALLBACK {
            vec![p256(), p384()]
        } else {
            vec![p256()]
        };
        for key in keys {
            let mut jwk = key.public_jwk();
            let y = jwk["y"].as_str().unwrap();
            let flipped = if y.starts_with('A') { "B" } else { "A" };
            jwk["y"] = json!(format!("{flipped}{}", &y[1..]));
            assert!(skipped(jwk).contains("invalid P-"));
        }
    }

    #[test]
    fn ec_coordinates_of_wrong_length_skipped_with_warning() {
        let mut jwk = p384().public_jwk();
        jwk["x"] = jwk["x"].as_str().unwrap()[4..].into();
        assert!(skipped(jwk).contains("invalid P-384 key"));
    }

    #[test]
    fn empty_hmac_secret_skipped_with_warning() {
        assert!(skipped(json!({"kty": "oct", "k": ""})).contains("empty"));
    }

    #[test]
    fn unsupported_jwk_alg_skipped_with_warning() {
        let mut jwk = rsa_a().public_jwk();
        jwk["alg"] = json!("RSA-OAEP");
        assert!(skipped(jwk).contains("not a supported signature algorithm"));
        let mut jwk = hmac().public_jwk();
        jwk["alg"] = json!("none");
        assert!(skipped(jwk).contains("not a supported signature algorithm"));
    }

    #[test]
    fn jwk_alg_not_fitting_key_type_skipped_with_warning() {
        let mut jwk = rsa_a().public_jwk();
        jwk["alg"] = json!("HS256");
        let warning = skipped(jwk);
        assert!(
            warning.contains("HS256 does not fit the key type"),
            "{warning}"
        );
    }

    #[test]
    fn non_string_kid_skipped_with_warning() {
        let mut jwk = hmac().public_jwk();
        jwk["kid"] = json!(5);
        assert!(skipped(jwk).contains("\"kid\" is not a string"));
    }

    #[test]
    fn non_object_key_skipped_with_warning() {
        assert!(skipped(json!("key")).contains("not a JSON object"));
    }

    #[test]
    fn skipped_keys_do_not_stop_the_rest() {
        let (set, warnings) = parse(json!({"keys": [
            {"kty": "XYZ"},
            hmac().jwk_with_kid("a"),
            {"kty": "RSA"},
            p256().jwk_with_kid("b"),
        ]}));
        assert_eq!(set.len(), 2);
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].starts_with("JWK Set key #0"), "{warnings:?}");
        assert!(warnings[1].starts_with("JWK Set key #2"), "{warnings:?}");
    }

    #[test]
    fn at_most_max_keys_kept() {
        let keys: Vec<Value> = (0..MAX_KEYS + 20)
            .map(|i| Priv::Hmac(format!("secret {i}").into_bytes()).jwk_with_kid(&i.to_string()))
            .collect();
        let (set, warnings) = parse(json!({ "keys": keys }));
        assert_eq!(set.len(), MAX_KEYS);
        assert_eq!(warnings.len(), 20);
        assert!(set.has_kid("99") && !set.has_kid("100"));
    }

    #[test]
    fn document_that_is_not_a_jwk_set_is_an_error() {
        for doc in [
            &b"not json"[..],
            b"[]",
            b"{}",
            b"{\"keys\": {}}",
            b"{\"keys\": null}",
            b"",
        ] {
            assert!(
                KeySet::from_json(doc).is_err(),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
    }

    #[test]
    fn empty_key_array_is_an_empty_set() {
        let (set, warnings) = KeySet::from_json(br#"{"keys": []}"#).unwrap();
        assert!(set.is_empty());
        assert!(warnings.is_empty());
    }

    #[test]
    fn hostile_key_material_never_panics() {
        let junk = [
            json!(null),
            json!(1),
            json!(""),
            json!("AA"),
            json!("A"),
            json!("_-_-"),
            json!("A".repeat(3000)),
            json!("/".repeat(8)),
            json!([1]),
        ];
        for kty in ["RSA", "EC", "OKP", "oct"] {
            for crv in ["P-256", "P-384", "Ed25519"] {
                for value in &junk {
                    let jwk = json!({"kty": kty, "crv": crv, "n": value, "e": value,
                                     "x": value, "y": value, "k": value});
                    let _ =
                        KeySet::from_json(&serde_json::to_vec(&json!({"keys": [jwk]})).unwrap());
                }
            }
        }
        // RSA exponent of zero / modulus over 4096 bits.
        let mut jwk = rsa_a().public_jwk();
        jwk["e"] = json!("AA");
        assert!(skipped(jwk).contains("invalid RSA key"));
        let mut jwk = rsa_a().public_jwk();
        jwk["n"] = json!("_".repeat(1400));
        assert!(skipped(jwk).contains("invalid RSA key"));
    }

    #[test]
    fn printable_replaces_unsafe_characters_and_cuts() {
        assert_eq!(printable("ab c", 10), "ab c");
        assert_eq!(printable("a\"b\\c\n\u{e9}", 10), "a?b?c??");
        assert_eq!(printable("abcdef", 3), "abc...");
    }
}
