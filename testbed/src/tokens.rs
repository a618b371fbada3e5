//! Test key material and JWT minting for every algorithm Portcullis accepts.
//!
//! The private keys live in `testdata/keys/` (generated once with `openssl`, test use
//! only) and are compiled in, so the `testbed` binary works from any directory. The
//! public halves are in `testdata/jwks.json`; [`jwks`] derives the same set from the
//! private keys (a unit test keeps the two in step).
//!
//! | key name | type | kid in jwks.json | algorithms |
//! |---|---|---|---|
//! | `rsa1` | RSA 2048 | `rsa1` | RS256/384/512, PS256/384/512 |
//! | `rsa2` | RSA 2048 | (not in jwks.json) | a *different* RSA key, for "wrong key under a known kid" |
//! | `ec256` | P-256 | `ec256` | ES256 |
//! | `ec384` | P-384 | `ec384` | ES384 |
//! | `ec521` | P-521 | `ec521` | ES512 |
//! | `ed1` | Ed25519 | `ed1` | EdDSA |
//! | `hmac1` | 32-byte secret | `hmac1` (`kty: oct`) | HS256/384/512 |
//!
//! Tokens are assembled by hand (header JSON exactly as given, then
//! `base64url(header).base64url(claims).base64url(signature)`), so tests control every
//! header field; the signatures come from jwt-compact's algorithms (p384 for ES384
//! and p521 for ES512, which jwt-compact 0.8 lacks).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key, Rsa};
use jwt_compact::{Algorithm, AlgorithmSignature};
use serde_json::{json, Map, Value};

const RSA1_PEM: &str = include_str!("../../testdata/keys/rsa1.pem");
const RSA2_PEM: &str = include_str!("../../testdata/keys/rsa2.pem");
const EC256_PEM: &str = include_str!("../../testdata/keys/ec256.pem");
const EC384_PEM: &str = include_str!("../../testdata/keys/ec384.pem");
const EC521_PEM: &str = include_str!("../../testdata/keys/ec521.pem");
const ED1_PEM: &str = include_str!("../../testdata/keys/ed1.pem");
const HMAC1_HEX: &str = include_str!("../../testdata/keys/hmac1.hex");

/// Every algorithm Portcullis supports (besides `none`).
pub const ALL_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384", "HS512",
];

/// Names of the keys in `testdata/jwks.json`, in file order (also their kids).
pub const JWKS_KEYS: &[&str] = &["rsa1", "ec256", "ec384", "ec521", "ed1", "hmac1"];

/// The key `mint` uses for an algorithm (also its kid in `testdata/jwks.json`).
pub fn default_key_for(alg: &str) -> &'static str {
    match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => "rsa1",
        "ES256" => "ec256",
        "ES384" => "ec384",
        "ES512" => "ec521",
        "EdDSA" => "ed1",
        "HS256" | "HS384" | "HS512" => "hmac1",
        other => panic!("tokens: no test key for algorithm {other:?}"),
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs()
}

/// Claims a valid token usually carries: `sub`, `iat` = now, `exp` = now + 1 h.
pub fn default_claims() -> Value {
    let now = now();
    json!({ "sub": "user-1", "iat": now, "exp": now + 3600 })
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .unwrap_or_else(|e| panic!("tokens: bad base64url {text:?}: {e}"))
}

fn rsa_key(name: &str) -> rsa::RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey;
    let pem = match name {
        "rsa1" => RSA1_PEM,
        "rsa2" => RSA2_PEM,
        other => panic!("tokens: {other:?} is not an RSA key"),
    };
    rsa::RsaPrivateKey::from_pkcs8_pem(pem).expect("RSA test key parses")
}

fn ec256_key() -> p256::ecdsa::SigningKey {
    use p256::pkcs8::DecodePrivateKey;
    p256::ecdsa::SigningKey::from_pkcs8_pem(EC256_PEM).expect("P-256 test key parses")
}

fn ec384_key() -> p384::ecdsa::SigningKey {
    use p384::pkcs8::DecodePrivateKey;
    p384::ecdsa::SigningKey::from_pkcs8_pem(EC384_PEM).expect("P-384 test key parses")
}

fn ec521_key() -> p521::ecdsa::SigningKey {
    use p521::pkcs8::DecodePrivateKey;
    let secret = p521::SecretKey::from_pkcs8_pem(EC521_PEM).expect("P-521 test key parses");
    p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes()).expect("P-521 signing key")
}

fn ed1_key() -> ed25519_dalek::SigningKey {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    ed25519_dalek::SigningKey::from_pkcs8_pem(ED1_PEM).expect("Ed25519 test key parses")
}

/// The raw HMAC secret of `hmac1` (32 bytes).
pub fn hmac_secret() -> Vec<u8> {
    let hex = HMAC1_HEX.trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex HMAC secret"))
        .collect()
}

/// Signs `message` with key `key` under algorithm `alg`. Panics when they do not fit.
pub fn sign(key: &str, alg: &str, message: &[u8]) -> Vec<u8> {
    fn bytes<S: AlgorithmSignature>(s: S) -> Vec<u8> {
        s.as_bytes().into_owned()
    }
    match (alg, key) {
        ("RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512", "rsa1" | "rsa2") => {
            bytes(Rsa::with_name(alg).sign(&rsa_key(key), message))
        }
        ("ES256", "ec256") => bytes(Es256.sign(&ec256_key(), message)),
        ("ES384", "ec384") => {
            use p384::ecdsa::signature::Signer;
            let sig: p384::ecdsa::Signature = ec384_key().sign(message);
            sig.to_bytes().to_vec()
        }
        ("ES512", "ec521") => {
            use p521::ecdsa::signature::Signer;
            let sig: p521::ecdsa::Signature = ec521_key().sign(message);
            sig.to_bytes().to_vec()
        }
        ("EdDSA", "ed1") => bytes(Ed25519.sign(&ed1_key(), message)),
        ("HS256", "hmac1") => bytes(Hs256.sign(&Hs256Key::new(hmac_secret()), message)),
        ("HS384", "hmac1") => bytes(Hs384.sign(&Hs384Key::new(hmac_secret()), message)),
        ("HS512", "hmac1") => bytes(Hs512.sign(&Hs512Key::new(hmac_secret()), message)),
        _ => panic!("tokens: key {key:?} cannot sign {alg:?}"),
    }
}

/// Signs `header.claims` with HMAC under the header's `alg` (HS256/384/512) using
/// an arbitrary `secret` (for key-confusion forgeries: an RSA public key as secret).
pub fn sign_hmac_token(secret: &[u8], header: &Value, claims: &Value) -> String {
    fn bytes<S: AlgorithmSignature>(s: S) -> Vec<u8> {
        s.as_bytes().into_owned()
    }
    let alg = header["alg"]
        .as_str()
        .expect("tokens: header needs a string alg");
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let m = signing_input.as_bytes();
    let sig = match alg {
        "HS256" => bytes(Hs256.sign(&Hs256Key::new(secret), m)),
        "HS384" => bytes(Hs384.sign(&Hs384Key::new(secret), m)),
        "HS512" => bytes(Hs512.sign(&Hs512Key::new(secret), m)),
        other => panic!("tokens: {other:?} is not an HMAC algorithm"),
    };
    format!("{signing_input}.{}", b64(&sig))
}

/// The public half of an RSA test key in the encodings a key-confusion attacker
/// would try as an HMAC secret: `(label, bytes)` for SPKI DER, SPKI PEM, PKCS#1 DER,
/// PKCS#1 PEM, the raw modulus `n`, and the JWK JSON text.
pub fn rsa_public_encodings(key: &str) -> Vec<(&'static str, Vec<u8>)> {
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let public = rsa_key(key).to_public_key();
    vec![
        (
            "SPKI DER",
            public
                .to_public_key_der()
                .expect("SPKI DER")
                .as_bytes()
                .to_vec(),
        ),
        (
            "SPKI PEM",
            public
                .to_public_key_pem(LineEnding::LF)
                .expect("SPKI PEM")
                .into_bytes(),
        ),
        (
            "PKCS#1 DER",
            public
                .to_pkcs1_der()
                .expect("PKCS#1 DER")
                .as_bytes()
                .to_vec(),
        ),
        (
            "PKCS#1 PEM",
            public
                .to_pkcs1_pem(LineEnding::LF)
                .expect("PKCS#1 PEM")
                .into_bytes(),
        ),
        ("JWK n", public.n().to_bytes_be()),
        ("JWK JSON", jwk(key).to_string().into_bytes()),
    ]
}

/// Builds the JOSE header: `{"alg", "typ": "JWT", "kid"?}` then `extra` merged over it
/// (an `extra` field set to `null` removes that field, e.g. `{"typ": null}`).
pub fn header(alg: &str, kid: Option<&str>, extra: &Value) -> Value {
    let mut h = Map::new();
    h.insert("alg".into(), json!(alg));
    h.insert("typ".into(), json!("JWT"));
    if let Some(kid) = kid {
        h.insert("kid".into(), json!(kid));
    }
    match extra {
        Value::Null => {}
        Value::Object(fields) => {
            for (k, v) in fields {
                if v.is_null() {
                    h.remove(k);
                } else {
                    h.insert(k.clone(), v.clone());
                }
            }
        }
        other => panic!("tokens: header extra must be an object or null, got {other}"),
    }
    Value::Object(h)
}

/// Signs `header.claims` (both serialized as compact JSON) with `key` under the
/// header's `alg`.
pub fn sign_token(key: &str, header: &Value, claims: &Value) -> String {
    let alg = header["alg"]
        .as_str()
        .expect("tokens: header needs a string alg")
        .to_string();
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(key, &alg, signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&sig))
}

/// Mints a token signed with the default key for `alg` (see the table above).
/// `kid`: `Some("rsa1")` etc., or `None` for a token without `kid`.
/// `header_extra`: `Value::Null` or an object merged into the header.
pub fn mint(alg: &str, kid: Option<&str>, header_extra: Value, claims: Value) -> String {
    mint_with_key(default_key_for(alg), alg, kid, header_extra, claims)
}

/// Mints with a named key (`rsa2` for "a different key under kid rsa1").
pub fn mint_with_key(
    key: &str,
    alg: &str,
    kid: Option<&str>,
    header_extra: Value,
    claims: Value,
) -> String {
    sign_token(key, &header(alg, kid, &header_extra), &claims)
}

/// The common case: `alg` with its default key and kid, and [`default_claims`] with
/// `claims_extra` merged in (`null` values remove a claim).
pub fn valid(alg: &str, claims_extra: Value) -> String {
    let key = default_key_for(alg);
    mint(
        alg,
        Some(key),
        Value::Null,
        merge(default_claims(), claims_extra),
    )
}

/// Object merge: fields of `extra` replace those of `base`; `null` removes.
pub fn merge(mut base: Value, extra: Value) -> Value {
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

/// An unsigned token `base64url(header).base64url(claims).` (for `alg: none` tests).
pub fn unsigned(header: Value, claims: Value) -> String {
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// Replaces the payload of a signed token, keeping its header and signature.
pub fn tamper_payload(token: &str, claims: Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "tokens: not a compact JWS: {token}");
    format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    )
}

/// Flips one bit in the signature (still valid base64url, same length).
pub fn tamper_signature(token: &str) -> String {
    let (rest, sig) = token.rsplit_once('.').expect("tokens: not a compact JWS");
    let mut bytes = unb64(sig);
    let last = bytes.len() - 1;
    bytes[last / 2] ^= 0x01;
    format!("{rest}.{}", b64(&bytes))
}

/// Drops the signature: `header.payload.` .
pub fn strip_signature(token: &str) -> String {
    let (rest, _) = token.rsplit_once('.').expect("tokens: not a compact JWS");
    format!("{rest}.")
}

/// Decodes a token's header and claims (no verification) for assertions.
pub fn decode(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert!(parts.len() >= 2, "tokens: not a JWT: {token}");
    let h = serde_json::from_slice(&unb64(parts[0])).expect("header JSON");
    let c = serde_json::from_slice(&unb64(parts[1])).expect("claims JSON");
    (h, c)
}

/// The public JWK of a named key, with `kid` = `key` and `use: sig`, no `alg`
/// (so `rsa1` serves all RS/PS algorithms). `hmac1` is `kty: oct` with `k`.
pub fn jwk(key: &str) -> Value {
    match key {
        "rsa1" | "rsa2" => {
            use rsa::traits::PublicKeyParts;
            let k = rsa_key(key);
            json!({ "kty": "RSA", "kid": key, "use": "sig",
                    "n": b64(&k.n().to_bytes_be()), "e": b64(&k.e().to_bytes_be()) })
        }
        "ec256" => {
            let point = ec256_key().verifying_key().to_encoded_point(false);
            json!({ "kty": "EC", "kid": key, "use": "sig", "crv": "P-256",
                    "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y")) })
        }
        "ec384" => {
            let point = ec384_key().verifying_key().to_encoded_point(false);
            json!({ "kty": "EC", "kid": key, "use": "sig", "crv": "P-384",
                    "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y")) })
        }
        "ec521" => {
            let point = p521::ecdsa::VerifyingKey::from(&ec521_key()).to_encoded_point(false);
            json!({ "kty": "EC", "kid": key, "use": "sig", "crv": "P-521",
                    "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y")) })
        }
        "ed1" => {
            let public = ed1_key().verifying_key().to_bytes();
            json!({ "kty": "OKP", "kid": key, "use": "sig", "crv": "Ed25519", "x": b64(&public) })
        }
        "hmac1" => json!({ "kty": "oct", "kid": key, "use": "sig", "k": b64(&hmac_secret()) }),
        other => panic!("tokens: unknown key {other:?}"),
    }
}

/// A JWK with fields replaced/added (`null` removes), e.g. `jwk_with("rsa2", json!({"kid":"rsa1"}))`
/// or `jwk_with("ec256", json!({"alg":"ES256"}))`.
pub fn jwk_with(key: &str, extra: Value) -> Value {
    merge(jwk(key), extra)
}

/// `{"keys": [...]}` of the named keys.
pub fn jwks_of(keys: &[&str]) -> Value {
    json!({ "keys": keys.iter().map(|k| jwk(k)).collect::<Vec<_>>() })
}

/// The JWK Set of `testdata/jwks.json` (derived from the private keys).
pub fn jwks() -> Value {
    jwks_of(JWKS_KEYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_json_matches_private_keys() {
        let committed: Value =
            serde_json::from_str(include_str!("../../testdata/jwks.json")).expect("jwks.json");
        assert_eq!(
            committed,
            jwks(),
            "regenerate with `testbed jwks > testdata/jwks.json`"
        );
    }

    #[test]
    fn every_alg_mints_with_expected_header() {
        for alg in ALL_ALGS {
            let kid = default_key_for(alg);
            let t = mint(alg, Some(kid), Value::Null, json!({"sub": "x"}));
            assert_eq!(t.split('.').count(), 3);
            let (h, c) = decode(&t);
            assert_eq!(h, json!({"alg": alg, "typ": "JWT", "kid": kid}));
            assert_eq!(c, json!({"sub": "x"}));
            assert!(!t.ends_with('.'), "{alg}: empty signature");
        }
    }

    #[test]
    fn header_extra_merges_and_removes() {
        let t = mint(
            "ES256",
            None,
            json!({"typ": null, "crit": ["exp"], "exp": 1}),
            json!({}),
        );
        let (h, _) = decode(&t);
        assert_eq!(h, json!({"alg": "ES256", "crit": ["exp"], "exp": 1}));
    }

    #[test]
    fn signatures_verify_with_jwt_compact() {
        use jwt_compact::alg::StrongKey;
        use jwt_compact::{AlgorithmExt, UntrustedToken};
        let rsa_pub = StrongKey::try_from(rsa_key("rsa1").to_public_key()).expect("2048 bits");
        for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
            let t = valid(alg, Value::Null);
            let ut = UntrustedToken::new(&t).expect("parses");
            let a = jwt_compact::alg::StrongAlg(Rsa::with_name(alg));
            a.validator::<Value>(&rsa_pub)
                .validate(&ut)
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
            let bad = mint_with_key("rsa2", alg, Some("rsa1"), Value::Null, default_claims());
            let ut = UntrustedToken::new(&bad).expect("parses");
            assert!(a.validator::<Value>(&rsa_pub).validate(&ut).is_err());
        }
        let t = valid("ES256", Value::Null);
        let ut = UntrustedToken::new(&t).expect("parses");
        Es256
            .validator::<Value>(ec256_key().verifying_key())
            .validate(&ut)
            .expect("ES256 verifies");
        let t = valid("EdDSA", Value::Null);
        let ut = UntrustedToken::new(&t).expect("parses");
        Ed25519
            .validator::<Value>(&ed1_key().verifying_key())
            .validate(&ut)
            .expect("EdDSA verifies");
        let t = valid("HS512", Value::Null);
        let ut = UntrustedToken::new(&t).expect("parses");
        Hs512
            .validator::<Value>(&Hs512Key::new(hmac_secret()))
            .validate(&ut)
            .expect("HS512 verifies");
        assert!(Hs512
            .validator::<Value>(&Hs512Key::new(hmac_secret()))
            .validate(&UntrustedToken::new(&tamper_signature(&t)).expect("parses"))
            .is_err());
    }

    #[test]
    fn es384_verifies_with_p384() {
        use p384::ecdsa::signature::Verifier;
        let t = valid("ES384", Value::Null);
        let (input, sig) = t.rsplit_once('.').expect("3 parts");
        let sig = p384::ecdsa::Signature::from_slice(&unb64(sig)).expect("96-byte signature");
        assert_eq!(unb64(t.rsplit_once('.').expect("x").1).len(), 96);
        ec384_key()
            .verifying_key()
            .verify(input.as_bytes(), &sig)
            .expect("ES384 verifies");
    }

    #[test]
    fn helpers_shape_tokens() {
        let t = valid("RS256", json!({"scope": "read"}));
        let (_, c) = decode(&t);
        assert_eq!(c["scope"], "read");
        assert!(c["exp"].as_u64().expect("exp") > now());
        assert!(strip_signature(&t).ends_with('.'));
        let (_, c2) = decode(&tamper_payload(&t, json!({"sub": "admin"})));
        assert_eq!(c2, json!({"sub": "admin"}));
        let u = unsigned(json!({"alg": "none"}), json!({"sub": "x"}));
        assert!(u.ends_with('.'));
        assert_eq!(decode(&u).0, json!({"alg": "none"}));
        assert_eq!(hmac_secret().len(), 32);
    }
}
