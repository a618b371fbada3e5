//! Certificate-bound access tokens (RFC 8705 §3.1): the token's confirmation claim
//! `cnf` carries `x5t#S256`, the base64url (no padding) SHA-256 of the DER client
//! certificate the token was issued to; the request's TLS client certificate must
//! be that certificate.
//!
//! Envoy reports the certificate's digest as hex (`TlsInfo::sha256`), so the hex is
//! decoded and base64url-encoded, and the two thumbprints are compared in constant
//! time.

use crate::request::TlsInfo;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

/// The `cnf` member holding the certificate thumbprint.
pub const X5T_S256: &str = "x5t#S256";

/// `Ok` when the token is bound to the presented client certificate; otherwise the
/// description for the 401 `invalid_token`.
pub fn check_certificate_binding(
    claims: &Map<String, Value>,
    tls: Option<&TlsInfo>,
) -> Result<(), String> {
    let cnf = match claims.get("cnf") {
        None => return Err("token is not certificate-bound: no \"cnf\" claim".to_string()),
        Some(Value::Object(cnf)) => cnf,
        Some(_) => return Err("the \"cnf\" claim is not an object".to_string()),
    };
    let expected = match cnf.get(X5T_S256) {
        Some(Value::String(t)) if !t.is_empty() => t,
        Some(_) => {
            return Err(format!(
                "the \"cnf\" claim's {X5T_S256:?} is not a non-empty string"
            ))
        }
        None => {
            return Err(format!(
                "token is not certificate-bound: the \"cnf\" claim has no {X5T_S256:?}"
            ))
        }
    };
    let Some(tls) = tls.filter(|t| t.verified && !t.sha256.is_empty()) else {
        return Err(
            "token is certificate-bound but no verified client certificate was presented"
                .to_string(),
        );
    };
    let Some(digest) = decode_hex(&tls.sha256) else {
        return Err("the client certificate's digest is not readable".to_string());
    };
    let presented = URL_SAFE_NO_PAD.encode(digest);
    // Equal lengths are compared in constant time; a thumbprint of another length
    // (not a SHA-256) can never match.
    let same = presented.len() == expected.len()
        && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()));
    if same {
        Ok(())
    } else {
        Err(
            "token is bound to another client certificate (cnf x5t#S256 does not match)"
                .to_string(),
        )
    }
}

/// The base64url (no padding) `x5t#S256` thumbprint of a hex SHA-256 digest, as an
/// issuer would put it into `cnf` (`None` when `hex` is not 32 bytes of hex).
pub fn thumbprint_from_hex(hex: &str) -> Option<String> {
    decode_hex(hex).map(|d| URL_SAFE_NO_PAD.encode(d))
}

/// 64 hex digits (either case; Envoy may also separate bytes with `:`) → 32 bytes.
fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let digits: Vec<u8> = hex.trim().bytes().filter(|b| *b != b':').collect();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(digits.chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sha2::{Digest, Sha256};

    /// A stand-in for a certificate's DER bytes.
    const DER: &[u8] = b"0\x82\x01\x0a not really a certificate";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn tls_for(der: &[u8]) -> TlsInfo {
        TlsInfo {
            verified: true,
            subject: "CN=client".to_string(),
            sha256: hex(&Sha256::digest(der)),
            ..TlsInfo::default()
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn bound_to(der: &[u8]) -> Map<String, Value> {
        let x5t = URL_SAFE_NO_PAD.encode(Sha256::digest(der));
        claims(json!({"sub": "u", "cnf": {"x5t#S256": x5t}}))
    }

    #[test]
    fn binding_matches_presented_certificate() {
        let tls = tls_for(DER);
        assert_eq!(
            check_certificate_binding(&bound_to(DER), Some(&tls)),
            Ok(())
        );
        // Upper-case and colon-separated hex digests read the same.
        let mut upper = tls.clone();
        upper.sha256 = upper.sha256.to_ascii_uppercase();
        assert_eq!(
            check_certificate_binding(&bound_to(DER), Some(&upper)),
            Ok(())
        );
        let mut colons = tls.clone();
        colons.sha256 = tls
            .sha256
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            check_certificate_binding(&bound_to(DER), Some(&colons)),
            Ok(())
        );
    }

    #[test]
    fn binding_thumbprint_is_rfc8705_shape() {
        // 32 bytes → 43 base64url characters, no padding.
        let t = thumbprint_from_hex(&tls_for(DER).sha256).unwrap();
        assert_eq!(t.len(), 43);
        assert!(!t.contains('=') && !t.contains('+') && !t.contains('/'));
        assert_eq!(t, URL_SAFE_NO_PAD.encode(Sha256::digest(DER)));
        assert_eq!(thumbprint_from_hex("abc"), None);
    }

    #[test]
    fn binding_other_certificate_is_refused() {
        let err = check_certificate_binding(&bound_to(DER), Some(&tls_for(b"other"))).unwrap_err();
        assert!(err.contains("another client certificate"), "{err}");
    }

    #[test]
    fn binding_without_certificate_is_refused() {
        let err = check_certificate_binding(&bound_to(DER), None).unwrap_err();
        assert!(err.contains("no verified client certificate"), "{err}");
        let mut unverified = tls_for(DER);
        unverified.verified = false;
        assert!(check_certificate_binding(&bound_to(DER), Some(&unverified)).is_err());
        let empty = TlsInfo {
            verified: true,
            ..TlsInfo::default()
        };
        assert!(check_certificate_binding(&bound_to(DER), Some(&empty)).is_err());
    }

    #[test]
    fn binding_missing_or_malformed_cnf_is_refused() {
        let tls = tls_for(DER);
        for (c, needle) in [
            (json!({"sub": "u"}), "no \"cnf\" claim"),
            (json!({"cnf": "x"}), "not an object"),
            (json!({"cnf": {}}), "has no"),
            (json!({"cnf": {"jkt": "abc"}}), "has no"),
            (json!({"cnf": {"x5t#S256": 5}}), "not a non-empty string"),
            (json!({"cnf": {"x5t#S256": ""}}), "not a non-empty string"),
            // The right digest, padded or in standard base64: not the RFC form.
            (
                json!({"cnf": {"x5t#S256": format!("{}=", URL_SAFE_NO_PAD.encode(Sha256::digest(DER)))}}),
                "another client certificate",
            ),
            (
                json!({"cnf": {"x5t#S256": hex(&Sha256::digest(DER))}}),
                "another client certificate",
            ),
        ] {
            let err = check_certificate_binding(&claims(c.clone()), Some(&tls)).unwrap_err();
            assert!(err.contains(needle), "{c}: {err}");
        }
    }
}
