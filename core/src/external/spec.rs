//! The `External` filter's configuration as users write it (serde types, field
//! names exactly as in `CONFIG.md`). Nothing here is checked beyond its JSON
//! shape; `ExternalFilter::compile` turns it into the filter.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct IncludeBodySpec {
    pub max_bytes: u64,
    pub allow_partial: bool,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StatusOnErrorSpec {
    pub code: u16,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ExternalSpec {
    pub auth_service: String,
    pub proto: Option<String>,
    pub timeout_ms: Option<u64>,
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub allowed_request_headers: Vec<String>,
    #[serde(default)]
    pub allowed_authorization_headers: Vec<String>,
    #[serde(default)]
    pub add_auth_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub add_linkerd_headers: bool,
    pub include_body: Option<IncludeBodySpec>,
    pub status_on_error: Option<StatusOnErrorSpec>,
    #[serde(default)]
    pub failure_mode_allow: bool,
    pub protocol_version: Option<String>,
    /// Emissary's deprecated boolean form of `include_body`: refused with advice.
    pub allow_request_body: Option<Value>,
}
