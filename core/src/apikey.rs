//! The APIKey filter: a key in a request header, compared in constant time
//! against configured keys (plaintext or SHA-256 digests).

use crate::compile::spec::SecretSpec;
use crate::compile::Compiler;
use crate::request::Request;
use crate::response::{is_header_name, Response};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntrySpec {
    pub value: Option<SecretSpec>,
    pub sha256: Option<String>,
    /// AES: every value of a Kubernetes Secret (refused with advice).
    #[serde(rename = "secretName")]
    pub secret_name: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiKeySpec {
    pub http_header: Option<String>,
    #[serde(default)]
    pub keys: Vec<ApiKeyEntrySpec>,
}

/// The message of the 403 every refusal gets.
pub const DENIED_MESSAGE: &str = "API key not found";

/// A compiled APIKey filter. Every key is kept as its SHA-256 digest, so the
/// comparison has a fixed length and runs in constant time.
#[derive(Debug)]
pub struct ApiKeyFilter {
    pub header: String,
    digests: Vec<[u8; 32]>,
}

impl ApiKeyFilter {
    pub fn compile(c: &mut Compiler<'_>, path: &str, spec: &ApiKeySpec) -> Option<ApiKeyFilter> {
        let errors_before = c.errors.len();
        let header = spec
            .http_header
            .clone()
            .unwrap_or_else(|| "X-API-Key".to_string());
        if !is_header_name(&header) {
            c.error(
                format!("{path}.httpHeader"),
                format!("invalid header name {header:?}"),
            );
        }
        if spec.keys.is_empty() {
            c.error(format!("{path}.keys"), "at least one key is required");
        }
        let mut digests = Vec::new();
        for (i, key) in spec.keys.iter().enumerate() {
            let at = format!("{path}.keys[{i}]");
            if key.secret_name.is_some() {
                c.error(
                    format!("{at}.secretName"),
                    "Kubernetes Secrets are not read by the plugin: give each key as {\"value\": {\"fromEnv\": \"NAME\"}} (the variable set in Envoy's vm_config.environment_variables, which can come from the Secret) or {\"sha256\": \"<hex digest>\"}; `portcullis import` does this from the Secret",
                );
                continue;
            }
            match (&key.value, &key.sha256) {
                (Some(value), None) => {
                    if let Some(v) = c.secret(&format!("{at}.value"), value) {
                        if v.is_empty() {
                            c.error(format!("{at}.value"), "must not be empty");
                        }
                        digests.push(Sha256::digest(v.as_bytes()).into());
                    }
                }
                (None, Some(hex)) => match decode_hex32(hex) {
                    Some(d) => digests.push(d),
                    None => c.error(
                        format!("{at}.sha256"),
                        "must be a SHA-256 digest in hex (64 characters)",
                    ),
                },
                _ => c.error(at, "give exactly one of `value` or `sha256`"),
            }
        }
        if c.errors.len() != errors_before {
            return None;
        }
        Some(ApiKeyFilter {
            header: header.to_ascii_lowercase(),
            digests,
        })
    }

    /// `Ok` when the request carries a configured key; the 403 otherwise.
    pub fn check(&self, request: &Request) -> Result<(), Response> {
        let presented = request.headers.get(&self.header).unwrap_or("");
        if !presented.is_empty() {
            let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            // Compare against every key, without stopping early.
            let mut found = subtle::Choice::from(0u8);
            for d in &self.digests {
                found |= d.ct_eq(&digest);
            }
            if bool::from(found) {
                return Ok(());
            }
        }
        Err(Response::json_error(403, DENIED_MESSAGE))
    }
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}
