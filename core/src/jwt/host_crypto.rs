//! Signature checks by the host: Envoy's `verify_signature` foreign function
//! (BoringSSL in the proxy) is an order of magnitude faster than RSA in Wasm.
//!
//! The core stays sans-IO: it asks a [`SignatureVerifier`] (the shell implements
//! it with `proxy_wasm::hostcalls::call_foreign_function`; tests natively) and
//! falls back to its own pure-Rust code when there is none or it cannot answer.
//! Keys are DER `SubjectPublicKeyInfo` made once when a JWK Set loads
//! ([`rsa_spki`], [`ec_spki`]); a JWS ECDSA signature (`r || s`) becomes DER
//! ([`ecdsa_der_signature`]). RS256/384/512 and ES256/384/512 go to the host;
//! PS*, EdDSA and HS* never do. Without the `ec-fallback` feature (the shipped
//! module) nothing else checks ES384/ES512.
//!
//! The wire format is Envoy's `VerifySignatureArguments {1: hash_function,
//! 2: public_key, 3: signature, 4: text}` and `VerifySignatureResult {1: result,
//! 2: error}`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// What checks a signature on the core's behalf.
pub trait SignatureVerifier {
    /// Whether `signature` (DER for ECDSA, raw for RSA PKCS#1 v1.5) over
    /// `message` verifies with `spki` (DER SubjectPublicKeyInfo) under `hash`
    /// (`sha256`, `sha384`, `sha512`). `None`: the verifier cannot tell (the
    /// caller checks it itself).
    fn verify(&self, hash: &str, spki: &[u8], message: &[u8], signature: &[u8]) -> Option<bool>;
}

/// `envoy.source.extensions.common.wasm.VerifySignatureArguments`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VerifySignatureArguments {
    #[prost(string, tag = "1")]
    pub hash_function: String,
    #[prost(bytes = "vec", tag = "2")]
    pub public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub text: Vec<u8>,
}

/// `envoy.source.extensions.common.wasm.VerifySignatureResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VerifySignatureResult {
    #[prost(bool, tag = "1")]
    pub result: bool,
    #[prost(string, tag = "2")]
    pub error: String,
}

/// The foreign function's argument bytes.
pub fn encode_arguments(hash: &str, spki: &[u8], message: &[u8], signature: &[u8]) -> Vec<u8> {
    use prost::Message as _;
    VerifySignatureArguments {
        hash_function: hash.to_string(),
        public_key: spki.to_vec(),
        signature: signature.to_vec(),
        text: message.to_vec(),
    }
    .encode_to_vec()
}

/// The foreign function's answer: `Some(result)`, `None` when it is not one.
pub fn decode_result(bytes: &[u8]) -> Option<VerifySignatureResult> {
    use prost::Message as _;
    VerifySignatureResult::decode(bytes).ok()
}

/// A known-good RS256 signature (testdata key `rsa1`): the shell verifies it,
/// and a tampered copy, once before trusting the host.
pub const PROBE_MESSAGE: &[u8] = b"portcullis host signature probe";
const PROBE_KEY_B64: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuBAmqrW5fqoMTM8uUBNhfkCDoIjaRgeygW5v9IVG+0QbuR7n8NgUUSvPEt9HFbtlSK337A/lIYHtGvWiIO5hgeQbHoMJsNSlTBprruIztvnu4wcx8VVoiRnzAZ+k+4GrPvfk3hKmiDqNLK5c0EFQwIMnH8kSdBdYGmc5pcidq4CPKE8658u1oVnXwwZTvN8x8gCUa2CZ6auw7sByxa9QgRUjtCu+R7dJBzaf7KtIIiH9pqXFt24ywCAb0BdEaHCz8AE1s8lmtf3G/an5ftwThW2ks9S5rGvN9XHYet/Tdt59n3BsT07+4uAK+swSjRWbWlKtzwQ/D7CHiMEBWNQ/PwIDAQAB";
const PROBE_SIGNATURE_B64: &str = "XAJngbEv+U5CSOwPx5A5ejJ80yuUHmw9gcY+wVSWnq5dys2AXo4vYG/Cr1mWXNwhnXD8lZCW518uHC+CAbh2IaDPNMSdRWRW7bpGxp6g3+UotUKtw8huC+QGoPPMSeXf9wK5+2xVWiCbc1IuTFv9J3uNBPcqEsfXrDuWGwcL77vAcCXboT36MdSiKTiQfsOeXknXJpTTwm5RZe/z9MvJEwwcfV+iYERDE46oPxFQhLYBM5p7DOXyHZzJ9z5X1eByCFCbBbMayKj/X0hClsN38UNcCQawCUZm7/DK65f+YMXaP0EZ0yyldtkyn0RggVj91v5IWHHG3I8ZM7sKafNNjA==";

/// `(spki, message, good signature, bad signature)` for the probe.
pub fn probe_vector() -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let key = STANDARD.decode(PROBE_KEY_B64).ok()?;
    let good = STANDARD.decode(PROBE_SIGNATURE_B64).ok()?;
    let mut bad = good.clone();
    if let Some(last) = bad.last_mut() {
        *last ^= 1;
    }
    Some((key, good, bad))
}

/// Whether `verifier` answers the probe right: the good signature verifies and
/// the tampered one does not.
pub fn probe(verifier: &dyn SignatureVerifier) -> bool {
    let Some((key, good, bad)) = probe_vector() else {
        return false;
    };
    verifier.verify("sha256", &key, PROBE_MESSAGE, &good) == Some(true)
        && verifier.verify("sha256", &key, PROBE_MESSAGE, &bad) == Some(false)
}

// ---- DER -------------------------------------------------------------------

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len().saturating_add(4));
    out.push(tag);
    der_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER from a big-endian unsigned value.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = match bytes.iter().position(|b| *b != 0) {
        Some(i) => bytes.get(i..).unwrap_or(&[]),
        None => &[0],
    };
    let mut content = Vec::with_capacity(trimmed.len().saturating_add(1));
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    der(0x02, &content)
}

fn bit_string(content: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(content.len().saturating_add(1));
    c.push(0); // no unused bits
    c.extend_from_slice(content);
    der(0x03, &c)
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1
pub const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1
pub const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// secp521r1
pub const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

/// DER SubjectPublicKeyInfo of an RSA key (modulus and exponent big-endian).
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut alg = der(0x06, OID_RSA);
    alg.extend_from_slice(&[0x05, 0x00]);
    let mut key = der_uint(n);
    key.extend_from_slice(&der_uint(e));
    let mut spki = der(0x30, &alg);
    spki.extend_from_slice(&bit_string(&der(0x30, &key)));
    der(0x30, &spki)
}

/// DER SubjectPublicKeyInfo of an EC key (uncompressed point `x`, `y`).
pub fn ec_spki(curve: &[u8], x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut alg = der(0x06, OID_EC);
    alg.extend_from_slice(&der(0x06, curve));
    let mut point = Vec::with_capacity(x.len().saturating_add(y.len()).saturating_add(1));
    point.push(4);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    let mut spki = der(0x30, &alg);
    spki.extend_from_slice(&bit_string(&point));
    der(0x30, &spki)
}

/// A JWS ECDSA signature (`r || s`, each `half` bytes) as DER; `None` when the
/// length is not `2 * half`.
pub fn ecdsa_der_signature(rs: &[u8], half: usize) -> Option<Vec<u8>> {
    if rs.len() != half.checked_mul(2)? {
        return None;
    }
    let (r, s) = rs.split_at(half);
    let mut seq = der_uint(r);
    seq.extend_from_slice(&der_uint(s));
    Some(der(0x30, &seq))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn rsa_spki_matches_openssl() {
        let (key, _, _) = probe_vector().unwrap();
        assert_eq!(key.len(), 294);
        assert_eq!(rsa_spki(&key[33..289], &key[291..294]), key);
    }

    use crate::jwt::keys::Algorithm;
    use crate::jwt::verify::test_fixtures::*;
    use crate::jwt::verify::{verify_token_with, ClaimPolicy};
    use serde_json::json;
    use std::cell::RefCell;

    /// Answers `answer` and records the hash functions asked for.
    struct Scripted {
        answer: Option<bool>,
        asked: RefCell<Vec<String>>,
    }

    impl SignatureVerifier for Scripted {
        fn verify(&self, hash: &str, spki: &[u8], _m: &[u8], sig: &[u8]) -> Option<bool> {
            assert_eq!(spki[0], 0x30);
            assert!(!sig.is_empty());
            self.asked.borrow_mut().push(hash.to_string());
            self.answer
        }
    }

    #[test]
    fn rs_and_es_go_to_the_host_others_never() {
        let keys = key_set(vec![
            rsa_a().jwk_with_kid("r"),
            p256().jwk_with_kid("e256"),
            p384().jwk_with_kid("e384"),
            p521().jwk_with_kid("e521"),
            ed25519().jwk_with_kid("ed"),
            hmac().jwk_with_kid("h"),
        ]);
        let policy = ClaimPolicy {
            valid_algorithms: Algorithm::ALL.to_vec(),
            ..ClaimPolicy::default()
        };
        let cases = [
            (Algorithm::RS256, "r", rsa_a(), Some("sha256")),
            (Algorithm::RS512, "r", rsa_a(), Some("sha512")),
            (Algorithm::PS256, "r", rsa_a(), None),
            (Algorithm::ES256, "e256", p256(), Some("sha256")),
            (Algorithm::ES384, "e384", p384(), Some("sha384")),
            (Algorithm::ES512, "e521", p521(), Some("sha512")),
            (Algorithm::EdDSA, "ed", ed25519(), None),
            (Algorithm::HS256, "h", hmac(), None),
        ];
        for (alg, kid, key, hash) in cases {
            let t = token(json!({"alg": alg.name(), "kid": kid}), json!({}), &key);
            // The host's "no" is final; its "cannot tell" falls back to Rust.
            let no = Scripted {
                answer: Some(false),
                asked: RefCell::new(vec![]),
            };
            let result = verify_token_with(&t, &keys, &policy, 0.0, Some(&no));
            let unknown = Scripted {
                answer: None,
                asked: RefCell::new(vec![]),
            };
            // Without `ec-fallback` nothing checks ES384/ES512 in Wasm.
            let checked_in_wasm = crate::jwt::keys::EC_FALLBACK
                || !matches!(alg, Algorithm::ES384 | Algorithm::ES512);
            assert_eq!(
                verify_token_with(&t, &keys, &policy, 0.0, Some(&unknown)).is_ok(),
                checked_in_wasm,
                "{alg:?}"
            );
            match hash {
                Some(h) => {
                    assert!(result.is_err(), "{alg:?}");
                    assert_eq!(*no.asked.borrow(), vec![h.to_string()]);
                }
                None => {
                    assert!(result.is_ok(), "{alg:?}");
                    assert!(no.asked.borrow().is_empty(), "{alg:?}");
                }
            }
        }
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(der_uint(&[0, 0, 1]), vec![2, 1, 1]);
        assert_eq!(der_uint(&[0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(der_uint(&[0, 0]), vec![2, 1, 0]);
        assert_eq!(der_uint(&[]), vec![2, 1, 0]);
    }

    #[test]
    fn ecdsa_signature_length_checked() {
        assert!(ecdsa_der_signature(&[1; 63], 32).is_none());
        let der = ecdsa_der_signature(&[0xff; 64], 32).unwrap();
        assert_eq!(der[0], 0x30);
        assert_eq!(der.len(), 2 + 2 * (2 + 33));
    }

    #[test]
    fn probe_round_trips_through_the_wire_format() {
        let (key, good, _) = probe_vector().unwrap();
        let bytes = encode_arguments("sha256", &key, PROBE_MESSAGE, &good);
        use prost::Message as _;
        let back = VerifySignatureArguments::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.hash_function, "sha256");
        assert_eq!(back.public_key, key);
        assert_eq!(back.signature, good);
        assert_eq!(back.text, PROBE_MESSAGE);
        assert!(decode_result(&[0x08, 0x01]).unwrap().result);
    }
}
