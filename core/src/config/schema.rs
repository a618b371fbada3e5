//! The v1 configuration as users write it (serde types, field names exactly as in
//! `CONFIG.md`): the top level and the filter entry, which holds one filter
//! type's own spec (`JwtSpec` in `jwt::spec`, `ExternalSpec` in
//! `external::spec`, ...). Nothing here is checked beyond its JSON shape;
//! `Config::from_json` turns these into the validated runtime configuration.

use crate::apikey::ApiKeySpec;
use crate::authorization::spec::AuthorizationSpec;
use crate::external::spec::ExternalSpec;
use crate::jwt::spec::JwtSpec;
use crate::mtls::MtlsSpec;
use crate::oauth2::spec::OAuth2Spec;
use crate::rules::RuleSpec;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    #[serde(default)]
    pub clusters: BTreeMap<String, String>,
    #[serde(default)]
    pub filters: Vec<FilterSpec>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Memory budget of the VM's caches: bytes (a number) or a string with a
    /// `Ki`/`Mi`/`Gi` suffix (`"16Mi"`). Default 16 MiB; 0 turns the caches off.
    #[serde(default, rename = "cacheBudget")]
    pub cache_budget: Option<serde_json::Value>,
    /// Whether a CORS preflight skips the filters that check a credential a
    /// browser never sends on one (JWT, OAuth2, APIKey), as Envoy's jwt_authn
    /// `bypass_cors_preflight`. Default true.
    #[serde(default, rename = "bypassCorsPreflight")]
    pub bypass_cors_preflight: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    pub name: String,
    #[serde(rename = "JWT")]
    pub jwt: Option<JwtSpec>,
    #[serde(rename = "External")]
    pub external: Option<ExternalSpec>,
    #[serde(rename = "OAuth2")]
    pub oauth2: Option<OAuth2Spec>,
    #[serde(rename = "APIKey")]
    pub apikey: Option<ApiKeySpec>,
    #[serde(rename = "MTLS")]
    pub mtls: Option<MtlsSpec>,
    #[serde(rename = "Authorization")]
    pub authorization: Option<AuthorizationSpec>,
    /// AES Go plugins: refused with advice.
    #[serde(rename = "Plugin")]
    pub plugin: Option<Value>,
    /// The `gateway.getambassador.io/v1alpha1` shape (`type` and a lower-case
    /// body): refused with advice.
    #[serde(rename = "type")]
    pub v1alpha1_type: Option<Value>,
    #[serde(rename = "jwt")]
    pub v1alpha1_jwt: Option<Value>,
    #[serde(rename = "oauth2")]
    pub v1alpha1_oauth2: Option<Value>,
    #[serde(rename = "apikey")]
    pub v1alpha1_apikey: Option<Value>,
    #[serde(rename = "external")]
    pub v1alpha1_external: Option<Value>,
}
