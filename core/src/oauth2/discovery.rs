//! The identity provider's OpenID Connect Discovery document
//! (`<authorizationURL>/.well-known/openid-configuration`): the endpoints the
//! flow talks to and the JWK Set that signs its ID tokens.

use crate::compile::url::CalloutUrl;
use serde_json::{Map, Value};

/// The largest discovery document read; a larger one is refused.
pub const MAX_DISCOVERY_BYTES: usize = 256 * 1024;

/// The path appended to `authorizationURL` (OIDC Discovery 1.0 §4).
pub const WELL_KNOWN_PATH: &str = "/.well-known/openid-configuration";

/// The parts of a discovery document Portcullis uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: Option<String>,
    pub end_session_endpoint: Option<String>,
    pub jwks_uri: String,
    /// `authorization_response_iss_parameter_supported` (RFC 9207): the IdP
    /// always sends `iss` on the callback, so a callback without it is refused.
    pub iss_parameter_supported: bool,
}

impl Discovery {
    /// Parses a discovery document and checks its shape: every endpoint an
    /// absolute http(s) URL. Does not check the issuer: see
    /// [`Discovery::parse_for`].
    pub fn parse(bytes: &[u8]) -> Result<Discovery, String> {
        if bytes.len() > MAX_DISCOVERY_BYTES {
            return Err(format!(
                "discovery document is larger than {MAX_DISCOVERY_BYTES} bytes"
            ));
        }
        let doc: Map<String, Value> = serde_json::from_slice(bytes)
            .map_err(|e| format!("discovery document is not a JSON object: {e}"))?;
        let required = |name: &str| -> Result<String, String> {
            match doc.get(name) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => Err(format!("discovery document: \"{name}\" is not a string")),
                None => Err(format!("discovery document has no \"{name}\"")),
            }
        };
        let optional = |name: &str| -> Result<Option<String>, String> {
            match doc.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("discovery document: \"{name}\" is not a string")),
            }
        };
        let discovery = Discovery {
            issuer: required("issuer")?,
            authorization_endpoint: required("authorization_endpoint")?,
            token_endpoint: required("token_endpoint")?,
            userinfo_endpoint: optional("userinfo_endpoint")?,
            end_session_endpoint: optional("end_session_endpoint")?,
            jwks_uri: required("jwks_uri")?,
            iss_parameter_supported: doc
                .get("authorization_response_iss_parameter_supported")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        for (name, url) in [
            (
                "authorization_endpoint",
                Some(&discovery.authorization_endpoint),
            ),
            ("token_endpoint", Some(&discovery.token_endpoint)),
            ("jwks_uri", Some(&discovery.jwks_uri)),
            ("userinfo_endpoint", discovery.userinfo_endpoint.as_ref()),
            (
                "end_session_endpoint",
                discovery.end_session_endpoint.as_ref(),
            ),
        ] {
            if let Some(url) = url {
                if url.contains(['#', ' ', '\r', '\n']) {
                    return Err(format!("discovery document: \"{name}\" is not a URL"));
                }
                CalloutUrl::parse(url, None)
                    .map_err(|e| format!("discovery document: \"{name}\": {e}"))?;
            }
        }
        Ok(discovery)
    }

    /// Parses and checks that `issuer` is the configured `authorizationURL`
    /// (OIDC Discovery 1.0 §4.3). One trailing `/` on either side is not a
    /// difference (Auth0 and others publish `https://tenant/` as issuer).
    pub fn parse_for(bytes: &[u8], authorization_url: &str) -> Result<Discovery, String> {
        let discovery = Discovery::parse(bytes)?;
        if discovery.issuer.trim_end_matches('/') != authorization_url.trim_end_matches('/') {
            return Err(format!(
                "discovery document issuer {:?} is not the configured authorizationURL {:?}",
                discovery.issuer, authorization_url
            ));
        }
        Ok(discovery)
    }
}

impl crate::fetch::Document for Discovery {
    const MAX_BYTES: usize = MAX_DISCOVERY_BYTES;

    /// Shape only: the host checks the issuer with `OAuth2Filter::parse_discovery`
    /// and hands the result to `DocumentCache::on_document`.
    fn parse(bytes: &[u8]) -> Result<(Self, Vec<String>), String> {
        Discovery::parse(bytes).map(|d| (d, Vec::new()))
    }

    fn summary(&self) -> String {
        format!("discovery document of {}", self.issuer)
    }
}
