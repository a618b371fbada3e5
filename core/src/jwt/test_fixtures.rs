//! Test keys and token builders for the `keys` and `verify` tests.
//!
//! Keys are fixed (no RNG needed): two 2048-bit RSA key pairs and a 1024-bit RSA
//! public key embedded as JWKs, and EC / Ed25519 / HMAC keys from constant bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::jwt::keys::{Algorithm, KeySet};
use crate::jwt::verify::ClaimPolicy;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_compact::alg::{
    Ed25519, Es256, Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key, Rsa, RsaPrivateKey,
    SigningKey as _,
};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm as JwsAlgorithm, AlgorithmSignature};
use p384::ecdsa::signature::Signer as _;
use serde_json::{json, Value};
use std::sync::OnceLock;

const RSA_A_JWK: &str = r#"{"kty": "RSA", "n": "179Ho18F5DK4oH0qNk5ac4YlVBmXY8RsVVDTjkontdtwwNfXR31QcfMQQnDO2EJnNvD5_2HIwvyXrwdtK9gCuVFKHriBBOmzMsQ8IH8fL3wsOC4unNVD4fgF1VMuF2R-XqAwAQJKt1c5KmlBGpejPRXLaKweErgUyp2IPraVKf54ESMqn2K_XNbmMy7-XOvdnEhfFwGmPLJ_xbriba_91srW_9ucjBwM_ytIBhIHQJ_mbm-qgdKTWbZB6SgRqfToUZEKQdIsiVa2vJfzNSBLiGSb777uUhG-aT5j0r6xRikGCE_TvVGJIhQWTknypRrUura0d8Wcz0dKmWW39svxlw", "e": "AQAB", "d": "Gu-odmQ_Fw5Mxh96bWH7obVw5FQhoPTS1cAL-cBBFE_RKbKJD_A8YqMHN6m1RC4zjBoqtvuIFkLKfrF9rDNW-7jYzocYofq6Qy9ZlnETUq69J_J-zVlEar-4SA8Pj8od4PCSWGiR2DF3_gHlfU12CwK1Qlyi5ea9FHhLR2aCWcX5ul8U7_nZBTXVqxLR1WiacxDQKDxOYL8Hzj3FifxMYM1T6wGkPakYRfnCnPcRRbdv8twKsIokSbSSvLnhhw1TJfc5ob29NKmgXBDW5OCIzrs75QpL2tY7WgkdHPAYQ3FeJuoWwX6Glt6viYFou2MFKIT40fo16_r6cm3YBBkOIQ", "p": "__dpqPfMu7Jra57PGjZKhJ-m8N4tGDPDP1GwMQnTJjdd30Fk7peGlBtGrL1iEPQTi1nBiXOYK9q90XjD16hNupkXMPCztBoHIMGlvwLQWrKmOOQzYCe688ARWaa5sLRKrst5nAI2dbVKAeTZTkfBWjHVrfY75tDBoEMPM7OVW7E", "q": "18aEjzCLxe9OyDc6hEUsaXbsRbbe7EJP--0qqiOdZuHmETt9TfqB6NfQsI6k-7_sMrYcTfHN1WllszzXtYeAyzBjFajzXoGZHq60PyKNFdQgO5gZ0fsX03cHgE9LVDQqUW4oheYNzBQSaaxVR4hFwuJrCCUa3_xYeURBZPzmG8c"}"#;

const RSA_B_JWK: &str = r#"{"kty": "RSA", "n": "kk5DaMAIhhM_V-3R5igKVYT-OepWtbocE8NmyDy7-b9E4QDC6TxtJ-cpzzbWPmcLNdA4Kp7PWHR2jNVTn4qo7A8_eYdrUmrLQKqH5UvVBJWo7YGgdxbt8g8qlduRtshpQJ0CLkj5k9aVZM5B3I3iQjSJLEo2yuV5kyngyGP_2lmSGr0p74zSbnxbipYJFNTCTC7wPlvpLJ2lhEOPMMBksyjicgFQnljgmmBhqbAjBoTAPGzYM7rrShOY5C9_DVtG4RwbHhJNk3uty0SMAbG6wIIcV5U6d--zXi88XAzJ41t_Stmnsvl2eclnCgVyRPOk17L1xrPygQcR37p_5idPyQ", "e": "AQAB", "d": "PxyIopKX-rIp1HXP4i8qigqFGhmWzuyZ-QKE_2KHmevivAa2jaMV2S00EWFv2NpdcRjBac0410jh7M2HNZ68UJwhPvzmFFbiF6KYXZaxLLmcddvBiy22dgEJ1zwwpr7b_FXeX3X2R0o9Bo-cxJXl4LZF5_eZnDuSDqP1havxbdAnZ5ucA1qY9VvDlh91xBsoTZomyYRoqXpY447b3J_FQjaiL7cdVkKgEwlNIb_QIB6tdGsmRd-ogvpeH6xqbarFtQxFE07SVi1tcR4GV0Zg4x1SmOGy_bG77oSwwxi6IoBOAsPWXz82ThHambyXdeJnB2Ak4_1b54F8oAkSsDHCow", "p": "zIlKaZ_0uJvBRGSUHw8aHWPXlD3_e_DyhS6Rrreer-Y-LS8vcUxoxCHpQpES4W4ky62A-Evpyo5deaRE2PqoJ-mEyQ0Ki2W52Nb_p94B15WxOT4tIm9OCgAm4FwmUXlSGV_rFHkfu5ugoM5gsiSychrNTHs2BMkYgsZUDrRYSu8", "q": "tx4w-Mx2Vcd6PahQXKPkFkBZ0aSOTVT_Cy6npR6vdKSs-6Ux1zrwB_2JAkNsj-SkF4CKXn_dyKZ-6kCx659Ci7EwtoayYOtjTmU55fhsSsPtSGiwMs6Q_njTjzkoUtBwokHv9r-SCufdfa40tgiz8Iyz7UEYFW_EGy-Iw7kL8Mc"}"#;

/// A 1024-bit RSA public key (too weak: must be skipped).
pub(crate) const RSA_1024_PUBLIC_JWK: &str = r#"{"kty": "RSA", "n": "zDBylMecTWDasEStfv-3EcHgNwnEQ19OxK-FonFIte6y2trCcpjDM744r33HjCzxKbrJ8HHtCnK7_a7oQLa3w1_YfBb2Nc1dBHh8xTG0s3N9NVxS9C4zQ7L5oG7oamNFMyJVpqdS71jz4Pdc1MdboT24lN_hRokC1aTipvlYiEM", "e": "AQAB"}"#;

pub(crate) const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// A private key of any supported type.
pub(crate) enum Priv {
    Rsa(&'static RsaPrivateKey),
    P256(<Es256 as JwsAlgorithm>::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
    Ed(<Ed25519 as JwsAlgorithm>::SigningKey),
    Hmac(Vec<u8>),
}

fn rsa_from_jwk(text: &str) -> RsaPrivateKey {
    let jwk: JsonWebKey<'_> = serde_json::from_str(text).unwrap();
    RsaPrivateKey::try_from(&jwk).unwrap()
}

pub(crate) fn rsa_a() -> Priv {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    Priv::Rsa(KEY.get_or_init(|| rsa_from_jwk(RSA_A_JWK)))
}

pub(crate) fn rsa_b() -> Priv {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    Priv::Rsa(KEY.get_or_init(|| rsa_from_jwk(RSA_B_JWK)))
}

pub(crate) fn p256() -> Priv {
    Priv::P256(<Es256 as JwsAlgorithm>::SigningKey::from_slice(&[0x11; 32]).unwrap())
}

pub(crate) fn p256_other() -> Priv {
    Priv::P256(<Es256 as JwsAlgorithm>::SigningKey::from_slice(&[0x12; 32]).unwrap())
}

pub(crate) fn p384() -> Priv {
    Priv::P384(p384::ecdsa::SigningKey::from_slice(&[0x22; 48]).unwrap())
}

pub(crate) fn p521() -> Priv {
    // A P-521 scalar is 521 bits: the first byte is 0 or 1.
    let mut secret = [0x44; 66];
    secret[0] = 0x01;
    Priv::P521(p521::ecdsa::SigningKey::from_slice(&secret).unwrap())
}

pub(crate) fn ed25519() -> Priv {
    Priv::Ed(<Ed25519 as JwsAlgorithm>::SigningKey::from_slice(&[0x33; 32]).unwrap())
}

pub(crate) fn hmac() -> Priv {
    Priv::Hmac(HMAC_SECRET.to_vec())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Priv {
    /// The public JWK (no `kid`/`alg`), as a JSON object.
    pub(crate) fn public_jwk(&self) -> Value {
        match self {
            Priv::Rsa(k) => serde_json::to_value(JsonWebKey::from(&k.to_public_key())).unwrap(),
            Priv::P256(k) => serde_json::to_value(JsonWebKey::from(&k.to_verifying_key())).unwrap(),
            Priv::P384(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                json!({
                    "kty": "EC",
                    "crv": "P-384",
                    "x": b64(point.x().unwrap()),
                    "y": b64(point.y().unwrap()),
                })
            }
            Priv::P521(k) => {
                let point = p521::ecdsa::VerifyingKey::from(k).to_encoded_point(false);
                json!({
                    "kty": "EC",
                    "crv": "P-521",
                    "x": b64(point.x().unwrap()),
                    "y": b64(point.y().unwrap()),
                })
            }
            Priv::Ed(k) => serde_json::to_value(JsonWebKey::from(&k.to_verifying_key())).unwrap(),
            Priv::Hmac(secret) => json!({"kty": "oct", "k": b64(secret)}),
        }
    }

    /// The public JWK with a `kid`.
    pub(crate) fn jwk_with_kid(&self, kid: &str) -> Value {
        let mut jwk = self.public_jwk();
        jwk["kid"] = json!(kid);
        jwk
    }

    /// Signs `message` with `alg` (which must fit the key).
    pub(crate) fn sign(&self, alg: Algorithm, message: &[u8]) -> Vec<u8> {
        use Algorithm as A;
        fn bytes<S: AlgorithmSignature>(sig: S) -> Vec<u8> {
            sig.as_bytes().into_owned()
        }
        match (self, alg) {
            (Priv::Rsa(k), A::RS256) => bytes(Rsa::rs256().sign(k, message)),
            (Priv::Rsa(k), A::RS384) => bytes(Rsa::rs384().sign(k, message)),
            (Priv::Rsa(k), A::RS512) => bytes(Rsa::rs512().sign(k, message)),
            (Priv::Rsa(k), A::PS256) => bytes(Rsa::ps256().sign(k, message)),
            (Priv::Rsa(k), A::PS384) => bytes(Rsa::ps384().sign(k, message)),
            (Priv::Rsa(k), A::PS512) => bytes(Rsa::ps512().sign(k, message)),
            (Priv::P256(k), A::ES256) => bytes(Es256.sign(k, message)),
            (Priv::P384(k), A::ES384) => {
                let sig: p384::ecdsa::Signature = k.sign(message);
                sig.to_bytes().to_vec()
            }
            (Priv::P521(k), A::ES512) => {
                let sig: p521::ecdsa::Signature = k.sign(message);
                sig.to_bytes().to_vec()
            }
            (Priv::Ed(k), A::EdDSA) => bytes(Ed25519.sign(k, message)),
            (Priv::Hmac(s), A::HS256) => bytes(Hs256.sign(&Hs256Key::new(s), message)),
            (Priv::Hmac(s), A::HS384) => bytes(Hs384.sign(&Hs384Key::new(s), message)),
            (Priv::Hmac(s), A::HS512) => bytes(Hs512.sign(&Hs512Key::new(s), message)),
            (_, alg) => panic!("test key cannot sign {}", alg.name()),
        }
    }
}

/// `header.payload` in base64url.
pub(crate) fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    )
}

/// A token with these header and claims, signed by `key` with the header's `alg`.
pub(crate) fn token(header: Value, claims: Value, key: &Priv) -> String {
    let alg = Algorithm::from_name(header["alg"].as_str().unwrap()).unwrap();
    let input = signing_input(&header, &claims);
    let signature = key.sign(alg, input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

/// A token whose signature segment is `signature` (raw bytes, base64url-encoded here).
pub(crate) fn token_with_signature(header: Value, claims: Value, signature: &[u8]) -> String {
    format!("{}.{}", signing_input(&header, &claims), b64(signature))
}

/// A key set from these JWKs; panics if any is skipped.
pub(crate) fn key_set(keys: Vec<Value>) -> KeySet {
    let (set, warnings) =
        KeySet::from_json(&serde_json::to_vec(&json!({ "keys": keys })).unwrap()).unwrap();
    assert!(warnings.is_empty(), "unexpected warnings: {warnings:?}");
    set
}

/// The filter default: every algorithm except `none`, nothing required.
pub(crate) fn default_policy() -> ClaimPolicy {
    ClaimPolicy {
        valid_algorithms: Algorithm::ALL
            .iter()
            .copied()
            .filter(|a| *a != Algorithm::None)
            .collect(),
        ..ClaimPolicy::default()
    }
}

/// A fixed "now" for claim tests.
pub(crate) const NOW: f64 = 1_700_000_000.0;
