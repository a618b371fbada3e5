//! The `JWT` filter's configuration and rule `arguments` as users write them
//! (serde types, field names exactly as in `CONFIG.md`). Nothing here is checked
//! beyond its JSON shape; `JwtFilter::compile` turns them into the filter.

use crate::compile::spec::{GoDuration, HeaderTemplateSpec};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtSpec {
    #[serde(rename = "jwksURI")]
    pub jwks_uri: Option<String>,
    pub jwks: Option<Value>,
    pub valid_algorithms: Option<Vec<String>>,
    pub audience: Option<String>,
    #[serde(default)]
    pub require_audience: bool,
    pub issuer: Option<String>,
    #[serde(default)]
    pub require_issuer: bool,
    #[serde(default)]
    pub require_expires_at: bool,
    pub leeway_for_expires_at: Option<GoDuration>,
    #[serde(default)]
    pub require_not_before: bool,
    pub leeway_for_not_before: Option<GoDuration>,
    #[serde(default)]
    pub require_issued_at: bool,
    pub leeway_for_issued_at: Option<GoDuration>,
    #[serde(default)]
    pub inject_request_headers: Vec<HeaderTemplateSpec>,
    pub error_response: Option<ErrorResponseSpec>,
    #[serde(default)]
    pub require_certificate_binding: bool,
    /// Portcullis addition: how often a remote JWK Set is fetched again (default 5m).
    pub jwks_refresh_interval: Option<GoDuration>,
    /// Portcullis addition: where the token is read instead of
    /// `Authorization: Bearer` (Envoy Gateway's JWT `extractFrom`).
    pub extract_from: Option<super::extract::ExtractFromSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ErrorResponseSpec {
    pub realm: Option<String>,
    /// AES's deprecated form of a `Content-Type` entry in `headers`.
    pub content_type: Option<String>,
    #[serde(default)]
    pub headers: Vec<HeaderTemplateSpec>,
    pub body_template: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct JwtArgumentsSpec {
    /// AES 1.x documents this argument as `scopes`, later releases as `scope`:
    /// both load.
    #[serde(default, alias = "scopes")]
    pub scope: Vec<String>,
}
