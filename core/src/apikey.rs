//! The APIKey filter: a key in a request header, compared in constant time
//! against configured keys (plaintext or SHA-256 digests).

use crate::compile::spec::SecretSpec;
use crate::compile::Compiler;
use crate::request::Request;
use crate::response::{is_header_name, Response};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::{ConditionallySelectable, ConstantTimeEq};

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntrySpec {
    pub value: Option<SecretSpec>,
    pub sha256: Option<String>,
    /// AES: every value of a Kubernetes Secret (refused with advice).
    #[serde(rename = "secretName")]
    pub secret_name: Option<Value>,
    /// Portcullis: who holds the key; what `portcullis.subject` reports for
    /// a request that presents it.
    pub name: Option<String>,
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
    /// Each key's `name`, by the index of its digest.
    names: Vec<Option<Arc<str>>>,
}

/// The most keys one APIKey filter holds.
pub const MAX_KEYS: usize = 4096;

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
        if spec.keys.len() > MAX_KEYS {
            c.error(format!("{path}.keys"), format!("at most {MAX_KEYS} keys"));
        }
        let mut digests = Vec::new();
        let mut names = Vec::new();
        for (i, key) in spec.keys.iter().enumerate().take(MAX_KEYS) {
            let at = format!("{path}.keys[{i}]");
            if key.secret_name.is_some() {
                c.error(
                    format!("{at}.secretName"),
                    "Kubernetes Secrets are not read by the plugin: give each key as {\"value\": {\"fromEnv\": \"NAME\"}} (the variable set in Envoy's vm_config.environment_variables, which can come from the Secret) or {\"sha256\": \"<hex digest>\"}; `portcullis import` does this from the Secret",
                );
                continue;
            }
            if key.name.as_ref().is_some_and(String::is_empty) {
                c.error(format!("{at}.name"), "must not be empty");
            }
            names.push(key.name.as_deref().map(Arc::from));
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
            names,
        })
    }

    /// `Ok` with the key's `name` (if it has one) when the request carries a
    /// configured key; the 403 otherwise.
    pub fn check(&self, request: &Request) -> Result<Option<Arc<str>>, Response> {
        let presented = request.headers.get(&self.header).unwrap_or("");
        if !presented.is_empty() {
            let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            // Compare against every key, without stopping early; which key
            // matched is chosen without a branch too.
            let mut found = subtle::Choice::from(0u8);
            let mut which = 0u32;
            for (i, d) in self.digests.iter().enumerate() {
                let hit = d.ct_eq(&digest);
                found |= hit;
                which.conditional_assign(&u32::try_from(i).unwrap_or(u32::MAX), hit);
            }
            if bool::from(found) {
                let index = usize::try_from(which).unwrap_or(usize::MAX);
                return Ok(self.names.get(index).cloned().flatten());
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
