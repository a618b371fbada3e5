//! Client authentication with a JWT (AES `clientAuthentication: {method:
//! JWTAssertion, jwtAssertion: {...}}`): RFC 7523 §2.2 and §3, OpenID Connect
//! Core §9 `private_key_jwt` (RSA or ECDSA key) and `client_secret_jwt` (HMAC
//! with the client secret). The token request carries
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
//! and `client_assertion=<JWT>`, and `client_id` only with `setClientID`.
//!
//! The assertion's claims: `iss` and `sub` the client ID, `aud` the token
//! endpoint (or `audience`), `jti` 128 random bits (OIDC Core §9: the IdP may
//! refuse a reused one), `exp` now + `lifetime` (AES: 1 minute), `nbf` (now −
//! `nbfSafetyMargin`) with `setNBF`, `iat` with `setIAT`, then `otherClaims`
//! (which cannot replace those). Header: `alg`, `typ: JWT`, then
//! `otherHeaderParameters` (which cannot replace `alg`).
//!
//! The key is the filter's `secret`: a PEM private key (`RSA PRIVATE KEY`,
//! `EC PRIVATE KEY` or `PRIVATE KEY`) for RS256/RS384/RS512/ES256, the
//! secret's bytes for HS256/HS384/HS512. A PEM whose line breaks are written
//! as `\n` (as an environment variable often holds it) is read too.

use super::encoding::{b64url, random_token};
use crate::compile::spec::GoDuration;
use crate::compile::Compiler;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::rand_core::{CryptoRng, RngCore};
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};
use std::time::Duration;

/// `client_assertion_type` for a JWT (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// AES's default `lifetime`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// Bytes of randomness in `jti`.
const JTI_BYTES: usize = 16;

/// AES `jwtAssertion`, as users write it.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtAssertionSpec {
    /// Also send `client_id` as a form parameter (RFC 7521 §4.2 makes it optional).
    #[serde(rename = "setClientID", default)]
    pub set_client_id: bool,
    /// The assertion's `aud`; default: the token endpoint URL.
    pub audience: Option<String>,
    /// `RS256` (default), `RS384`, `RS512`, `ES256`, `HS256`, `HS384`, `HS512`.
    pub signing_method: Option<String>,
    /// How long the assertion is valid (default `1m`).
    pub lifetime: Option<GoDuration>,
    #[serde(rename = "setNBF", default)]
    pub set_nbf: bool,
    pub nbf_safety_margin: Option<GoDuration>,
    #[serde(rename = "setIAT", default)]
    pub set_iat: bool,
    #[serde(default)]
    pub other_claims: Map<String, Value>,
    #[serde(default)]
    pub other_header_parameters: Map<String, Value>,
}

/// The signing key, prepared once per configuration.
enum SigningKey {
    Rsa(Box<rsa::RsaPrivateKey>, RsaHash),
    Es256(p256::ecdsa::SigningKey),
    Hmac(Vec<u8>, HmacHash),
}

#[derive(Clone, Copy)]
enum RsaHash {
    S256,
    S384,
    S512,
}

#[derive(Clone, Copy)]
enum HmacHash {
    S256,
    S384,
    S512,
}

/// A compiled `jwtAssertion`: what signs each token request's assertion.
pub struct ClientAssertion {
    alg: &'static str,
    key: SigningKey,
    audience: Option<String>,
    lifetime: Duration,
    nbf_margin: Option<Duration>,
    set_iat: bool,
    /// Whether `client_id` is sent beside the assertion.
    pub set_client_id: bool,
    other_claims: Map<String, Value>,
    other_header: Map<String, Value>,
}

impl std::fmt::Debug for ClientAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClientAssertion")
            .field("alg", &self.alg)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// Claims the assertion sets itself.
const OWN_CLAIMS: &[&str] = &["iss", "sub", "aud", "jti", "exp", "nbf", "iat"];

impl ClientAssertion {
    /// Compiles `spec` (at `path`, `...clientAuthentication.jwtAssertion`) with
    /// the client's `secret` (at `secret_path`); errors go to `c`.
    pub fn compile(
        c: &mut Compiler,
        path: &str,
        spec: &JwtAssertionSpec,
        secret_path: &str,
        secret: Option<&str>,
    ) -> Option<ClientAssertion> {
        let alg = spec.signing_method.as_deref().unwrap_or("RS256");
        let Some(secret) = secret else {
            c.error(
                secret_path,
                format!("required with clientAuthentication JWTAssertion: the {alg} key (a PEM private key, or the shared secret for HS*)"),
            );
            return None;
        };
        let key = match alg {
            "RS256" | "RS384" | "RS512" => {
                let hash = match alg {
                    "RS384" => RsaHash::S384,
                    "RS512" => RsaHash::S512,
                    _ => RsaHash::S256,
                };
                match rsa_key(secret) {
                    Ok(k) => SigningKey::Rsa(Box::new(k), hash),
                    Err(why) => {
                        c.error(
                            secret_path,
                            format!("not an RSA private key for {alg}: {why}"),
                        );
                        return None;
                    }
                }
            }
            "ES256" => match ec_key(secret) {
                Ok(k) => SigningKey::Es256(k),
                Err(why) => {
                    c.error(
                        secret_path,
                        format!("not a P-256 private key for ES256: {why}"),
                    );
                    return None;
                }
            },
            "HS256" | "HS384" | "HS512" => {
                let hash = match alg {
                    "HS384" => HmacHash::S384,
                    "HS512" => HmacHash::S512,
                    _ => HmacHash::S256,
                };
                SigningKey::Hmac(secret.as_bytes().to_vec(), hash)
            }
            other => {
                c.error(
                    format!("{path}.signingMethod"),
                    format!("{other:?} is not supported: use RS256, RS384, RS512, ES256, HS256, HS384 or HS512"),
                );
                return None;
            }
        };
        let alg: &'static str = match alg {
            "RS384" => "RS384",
            "RS512" => "RS512",
            "ES256" => "ES256",
            "HS256" => "HS256",
            "HS384" => "HS384",
            "HS512" => "HS512",
            _ => "RS256",
        };
        for claim in spec.other_claims.keys() {
            if OWN_CLAIMS.contains(&claim.as_str()) {
                c.error(
                    format!("{path}.otherClaims.{claim}"),
                    "set by the assertion itself (RFC 7523 §3); use audience, lifetime, setNBF or setIAT",
                );
            }
        }
        if spec.other_header_parameters.contains_key("alg") {
            c.error(
                format!("{path}.otherHeaderParameters.alg"),
                "set by signingMethod",
            );
        }
        let lifetime = spec.lifetime.as_ref().map_or(DEFAULT_LIFETIME, |d| d.0);
        if lifetime.is_zero() {
            c.error(format!("{path}.lifetime"), "must be more than 0s");
        }
        Some(ClientAssertion {
            alg,
            key,
            audience: spec.audience.clone().filter(|a| !a.is_empty()),
            lifetime,
            nbf_margin: spec.set_nbf.then(|| {
                spec.nbf_safety_margin
                    .as_ref()
                    .map_or(Duration::ZERO, |d| d.0)
            }),
            set_iat: spec.set_iat,
            set_client_id: spec.set_client_id,
            other_claims: spec.other_claims.clone(),
            other_header: spec.other_header_parameters.clone(),
        })
    }

    /// The signed assertion for `client_id` at `token_endpoint` (the URL the
    /// request goes to: the default `aud`), at `now` (seconds since the epoch).
    pub fn sign(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now: f64,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> String {
        let now_s = now.floor().max(0.0);
        let mut header = Map::new();
        header.insert("alg".to_string(), Value::from(self.alg));
        header.insert("typ".to_string(), Value::from("JWT"));
        for (k, v) in &self.other_header {
            if k != "alg" {
                header.insert(k.clone(), v.clone());
            }
        }
        let mut claims = Map::new();
        claims.insert("iss".to_string(), Value::from(client_id));
        claims.insert("sub".to_string(), Value::from(client_id));
        claims.insert(
            "aud".to_string(),
            Value::from(self.audience.as_deref().unwrap_or(token_endpoint)),
        );
        claims.insert(
            "jti".to_string(),
            Value::from(random_token(random, JTI_BYTES)),
        );
        claims.insert(
            "exp".to_string(),
            Value::from((now_s + self.lifetime.as_secs_f64().ceil()) as u64),
        );
        if let Some(margin) = self.nbf_margin {
            let nbf = (now_s - margin.as_secs_f64().ceil()).max(0.0);
            claims.insert("nbf".to_string(), Value::from(nbf as u64));
        }
        if self.set_iat {
            claims.insert("iat".to_string(), Value::from(now_s as u64));
        }
        for (k, v) in &self.other_claims {
            if !OWN_CLAIMS.contains(&k.as_str()) {
                claims.insert(k.clone(), v.clone());
            }
        }
        let signing_input = format!(
            "{}.{}",
            b64url(Value::Object(header).to_string().as_bytes()),
            b64url(Value::Object(claims).to_string().as_bytes())
        );
        let signature = self.signature(signing_input.as_bytes(), random);
        format!("{signing_input}.{}", b64url(&signature))
    }

    fn signature(&self, input: &[u8], random: &mut dyn FnMut(&mut [u8])) -> Vec<u8> {
        let mut rng = HostRng(random);
        match &self.key {
            SigningKey::Rsa(key, hash) => {
                let key = key.as_ref().clone();
                match hash {
                    RsaHash::S256 => rsa::pkcs1v15::SigningKey::<Sha256>::new(key)
                        .sign_with_rng(&mut rng, input)
                        .to_vec(),
                    RsaHash::S384 => rsa::pkcs1v15::SigningKey::<Sha384>::new(key)
                        .sign_with_rng(&mut rng, input)
                        .to_vec(),
                    RsaHash::S512 => rsa::pkcs1v15::SigningKey::<Sha512>::new(key)
                        .sign_with_rng(&mut rng, input)
                        .to_vec(),
                }
            }
            SigningKey::Es256(key) => {
                // RFC 7518 §3.4: R || S, 32 bytes each (RFC 6979 nonces).
                let signature: p256::ecdsa::Signature = key.sign(input);
                signature.to_bytes().to_vec()
            }
            SigningKey::Hmac(secret, hash) => match hash {
                HmacHash::S256 => hmac_tag::<Hmac<Sha256>>(secret, input),
                HmacHash::S384 => hmac_tag::<Hmac<Sha384>>(secret, input),
                HmacHash::S512 => hmac_tag::<Hmac<Sha512>>(secret, input),
            },
        }
    }
}

fn hmac_tag<M: Mac + hmac::digest::KeyInit>(secret: &[u8], input: &[u8]) -> Vec<u8> {
    match <M as hmac::digest::KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes a key of any length.
        Err(_) => Vec::new(),
    }
}

/// The host's randomness as the `rand_core` generator RSA blinding wants.
struct HostRng<'a>(&'a mut dyn FnMut(&mut [u8]));

impl RngCore for HostRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        (self.0)(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        (self.0)(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        (self.0)(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        (self.0)(dest);
        Ok(())
    }
}

impl CryptoRng for HostRng<'_> {}

/// The DER of the first PEM block in `text` and its label.
fn pem(text: &str) -> Result<(String, Vec<u8>), String> {
    let text = text.replace("\\n", "\n");
    let begin = text
        .find("-----BEGIN ")
        .ok_or("no -----BEGIN line (a PEM private key is expected)")?;
    let rest = text.get(begin + "-----BEGIN ".len()..).unwrap_or_default();
    let (label, rest) = rest.split_once("-----").ok_or("a broken BEGIN line")?;
    let end = rest.find("-----END ").ok_or("no -----END line")?;
    let body: String = rest
        .get(..end)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD
        .decode(body)
        .map_err(|_| "the PEM body is not base64".to_string())?;
    Ok((label.to_string(), der))
}

fn rsa_key(text: &str) -> Result<rsa::RsaPrivateKey, String> {
    let (label, der) = pem(text)?;
    match label.as_str() {
        "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| e.to_string()),
        "PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| e.to_string()),
        other => Err(format!(
            "a {other:?} PEM block, not RSA PRIVATE KEY or PRIVATE KEY"
        )),
    }
}

fn ec_key(text: &str) -> Result<p256::ecdsa::SigningKey, String> {
    use p256::pkcs8::DecodePrivateKey as _;
    let (label, der) = pem(text)?;
    match label.as_str() {
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
            .map(p256::ecdsa::SigningKey::from)
            .map_err(|e| e.to_string()),
        "PRIVATE KEY" => p256::ecdsa::SigningKey::from_pkcs8_der(&der).map_err(|e| e.to_string()),
        other => Err(format!(
            "a {other:?} PEM block, not EC PRIVATE KEY or PRIVATE KEY"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::oauth2::encoding::b64url_decode;

    const RSA_PEM: &str = include_str!("../../../testdata/keys/rsa1.pem");
    const EC_PEM: &str = include_str!("../../../testdata/keys/ec256.pem");

    fn compile(spec: JwtAssertionSpec, secret: &str) -> ClientAssertion {
        let env = |_: &str| None;
        let mut c = Compiler::new(std::collections::BTreeMap::new(), &env);
        let a = ClientAssertion::compile(&mut c, "a", &spec, "s", Some(secret));
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        a.unwrap()
    }

    fn counter() -> impl FnMut(&mut [u8]) {
        let mut n = 0u8;
        move |b: &mut [u8]| {
            for x in b {
                n = n.wrapping_add(1);
                *x = n;
            }
        }
    }

    fn parts(jwt: &str) -> (Value, Value, Vec<u8>) {
        let p: Vec<&str> = jwt.split('.').collect();
        (
            serde_json::from_slice(&b64url_decode(p[0]).unwrap()).unwrap(),
            serde_json::from_slice(&b64url_decode(p[1]).unwrap()).unwrap(),
            b64url_decode(p[2]).unwrap(),
        )
    }

    #[test]
    fn an_rs256_assertion_carries_rfc_7523_claims_and_verifies() {
        let a = compile(
            JwtAssertionSpec {
                set_iat: true,
                ..Default::default()
            },
            RSA_PEM,
        );
        let jwt = a.sign("app", "https://idp/token", 1_700_000_000.4, &mut counter());
        let (header, claims, signature) = parts(&jwt);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(claims["iss"], "app");
        assert_eq!(claims["sub"], "app");
        assert_eq!(claims["aud"], "https://idp/token");
        assert_eq!(claims["exp"], 1_700_000_060u64);
        assert_eq!(claims["iat"], 1_700_000_000u64);
        assert!(claims.get("nbf").is_none());
        assert!(claims["jti"].as_str().unwrap().len() >= 20);
        let key = rsa_key(RSA_PEM).unwrap();
        let public = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.to_public_key());
        let input = jwt.rsplit_once('.').unwrap().0;
        use rsa::signature::Verifier as _;
        public
            .verify(
                input.as_bytes(),
                &rsa::pkcs1v15::Signature::try_from(signature.as_slice()).unwrap(),
            )
            .unwrap();
    }

    #[test]
    fn an_es256_assertion_is_r_and_s_and_verifies() {
        let a = compile(
            JwtAssertionSpec {
                signing_method: Some("ES256".into()),
                audience: Some("https://idp".into()),
                set_nbf: true,
                nbf_safety_margin: Some(GoDuration(Duration::from_secs(5))),
                ..Default::default()
            },
            EC_PEM,
        );
        let jwt = a.sign("app", "https://idp/token", 1_700_000_000.0, &mut counter());
        let (_, claims, signature) = parts(&jwt);
        assert_eq!(claims["aud"], "https://idp");
        assert_eq!(claims["nbf"], 1_699_999_995u64);
        assert_eq!(signature.len(), 64);
        use p256::ecdsa::signature::Verifier as _;
        let key = ec_key(EC_PEM).unwrap();
        key.verifying_key()
            .verify(
                jwt.rsplit_once('.').unwrap().0.as_bytes(),
                &p256::ecdsa::Signature::from_slice(&signature).unwrap(),
            )
            .unwrap();
    }

    #[test]
    fn an_hs256_assertion_is_keyed_with_the_client_secret() {
        let a = compile(
            JwtAssertionSpec {
                signing_method: Some("HS256".into()),
                ..Default::default()
            },
            "s3cret",
        );
        let jwt = a.sign("app", "https://idp/token", 1.0, &mut counter());
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        assert_eq!(
            b64url_decode(sig).unwrap(),
            hmac_tag::<Hmac<Sha256>>(b"s3cret", input.as_bytes())
        );
    }

    #[test]
    fn a_pem_with_escaped_line_breaks_is_read() {
        let escaped = RSA_PEM.replace('\n', "\\n");
        assert!(rsa_key(&escaped).is_ok());
    }

    #[test]
    fn a_wrong_key_or_method_is_a_config_error() {
        let env = |_: &str| None;
        let mut c = Compiler::new(std::collections::BTreeMap::new(), &env);
        let spec = JwtAssertionSpec {
            signing_method: Some("PS256".into()),
            ..Default::default()
        };
        assert!(ClientAssertion::compile(&mut c, "a", &spec, "s", Some(RSA_PEM)).is_none());
        assert!(ClientAssertion::compile(
            &mut c,
            "a",
            &JwtAssertionSpec::default(),
            "s",
            Some("not a key")
        )
        .is_none());
        assert_eq!(c.errors.len(), 2, "{:?}", c.errors);
    }
}
