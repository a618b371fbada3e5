//! The v1 configuration as users write it (serde types, field names exactly as in
//! `CONFIG.md`). Nothing here is checked beyond its JSON shape; `super::compile`
//! turns these into the validated runtime configuration.

use super::duration::parse_go_duration;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

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

/// A Go duration string (`"300ms"`, `"1m30s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_go_duration(&text)
            .map(GoDuration)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {text:?}")))
    }
}

/// A secret: a literal string or `{"fromEnv": "NAME"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSpec {
    Literal(String),
    FromEnv(String),
}

impl<'de> Deserialize<'de> for SecretSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(SecretSpec::Literal(s)),
            Value::Object(map) => {
                let mut name = None;
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("fromEnv", Value::String(n)) if !n.is_empty() => name = Some(n),
                        ("fromEnv", _) => {
                            return Err(serde::de::Error::custom(
                                "fromEnv must name an environment variable",
                            ))
                        }
                        (other, _) => {
                            return Err(serde::de::Error::custom(format!(
                                "unknown field `{other}` in secret, expected `fromEnv`"
                            )))
                        }
                    }
                }
                name.map(SecretSpec::FromEnv)
                    .ok_or_else(|| serde::de::Error::custom("missing field `fromEnv`"))
            }
            _ => Err(serde::de::Error::custom(
                "a secret is a string or {\"fromEnv\": \"NAME\"}",
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HeaderTemplateSpec {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

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

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProtectedOriginSpec {
    pub origin: String,
    #[serde(default)]
    pub include_subdomains: bool,
    /// AES usage docs: the origin as Envoy sees it behind a proxy that rewrites
    /// the Host (`*` for any scheme or authority).
    pub internal_origin: Option<String>,
    /// AES 3.9 reference: several of `internalOrigin`.
    #[serde(default)]
    pub allowed_internal_origins: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UseSessionCookiesSpec {
    pub value: Option<bool>,
    #[serde(rename = "ifRequestHeader")]
    pub if_request_header: Option<HeaderConditionSpec>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClientAuthenticationSpec {
    #[serde(default)]
    pub method: Option<String>,
    /// AES `JWTAssertion` settings: refused with advice.
    #[serde(rename = "jwtAssertion")]
    pub jwt_assertion: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OAuth2Spec {
    #[serde(rename = "authorizationURL")]
    pub authorization_url: String,
    /// Required for `AuthorizationCode` and `Password`; a `ClientCredentials`
    /// filter takes the client from each request.
    #[serde(rename = "clientID", default)]
    pub client_id: Option<String>,
    pub secret: Option<SecretSpec>,
    pub secret_name: Option<Value>,
    pub secret_namespace: Option<Value>,
    #[serde(default)]
    pub protected_origins: Vec<ProtectedOriginSpec>,
    pub grant_type: Option<String>,
    pub access_token_validation: Option<String>,
    #[serde(default)]
    pub extra_authorization_parameters: BTreeMap<String, String>,
    #[serde(default)]
    pub inject_request_headers: Vec<HeaderTemplateSpec>,
    pub expiration_safety_margin: Option<GoDuration>,
    pub client_session_max_idle: Option<GoDuration>,
    pub use_session_cookies: Option<UseSessionCookiesSpec>,
    #[serde(rename = "postLogoutRedirectURI")]
    pub post_logout_redirect_uri: Option<String>,
    pub client_authentication: Option<ClientAuthenticationSpec>,
    #[serde(default)]
    pub session_keys: Vec<SecretSpec>,
    /// Deprecated AES form of one protected origin with `internalOrigin: "*://*"`.
    #[serde(rename = "clientURL")]
    pub client_url: Option<String>,
    /// AES: accept access tokens that are not RFC 6750 `b64token`s.
    pub allow_malformed_access_token: Option<bool>,
    /// AES: delegate access-token checks to a JWT filter (refused with advice).
    #[serde(rename = "accessTokenJWTFilter")]
    pub access_token_jwt_filter: Option<Value>,
    /// Portcullis: the callback path (the `redirect_uri` path registered at the IdP).
    pub callback_path: Option<String>,
    /// Portcullis: where the XSRF token is checked: `"logout"` (default, as AES)
    /// or `"unsafeMethods"` (also every non-GET/HEAD/OPTIONS/TRACE request with a session).
    #[serde(rename = "xsrfProtection")]
    pub xsrf_protection: Option<String>,
}

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

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MtlsSpec {
    pub require_client_certificate: Option<bool>,
    #[serde(default)]
    pub allowed_subjects: Vec<String>,
    #[serde(default, rename = "allowedDNSNames")]
    pub allowed_dns_names: Vec<String>,
    #[serde(default, rename = "allowedURIs")]
    pub allowed_uris: Vec<String>,
    #[serde(default)]
    pub inject_request_headers: Vec<HeaderTemplateSpec>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub host: Option<String>,
    pub path: Option<String>,
    /// AES: rules with a higher `precedence` are tried first; equal ones keep
    /// their order (default 0).
    pub precedence: Option<i64>,
    pub filters: Option<Vec<FilterRefSpec>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FilterRefSpec {
    pub name: String,
    /// AES filter references carry a Kubernetes namespace; names are global here.
    pub namespace: Option<String>,
    pub if_request_header: Option<HeaderConditionSpec>,
    pub on_deny: Option<String>,
    pub on_allow: Option<String>,
    pub arguments: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderConditionSpec {
    pub name: String,
    pub value: Option<String>,
    pub value_regex: Option<String>,
    #[serde(default)]
    pub negate: bool,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct JwtArgumentsSpec {
    #[serde(default)]
    pub scope: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InsteadOfRedirectSpec {
    #[serde(rename = "ifRequestHeader")]
    pub if_request_header: Option<HeaderConditionSpec>,
    #[serde(rename = "httpStatusCode")]
    pub http_status_code: Option<u16>,
    /// AES's deprecated `filters` (run other filters instead): refused with advice.
    pub filters: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OAuth2ArgumentsSpec {
    /// AES v2 documents this argument as `scopes`, v3 as `scope`: both load.
    #[serde(default, alias = "scopes")]
    pub scope: Vec<String>,
    pub instead_of_redirect: Option<InsteadOfRedirectSpec>,
    pub same_site: Option<String>,
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for GoDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GoDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A Go duration: \"300ms\", \"1m30s\", \"1.5h\" (units ns, us, ms, s, m, h)",
            "pattern": "^(0|([0-9]+(\\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+)$"
        })
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for SecretSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A secret: literally, or read from the Wasm VM's environment (Envoy vm_config.environment_variables)",
            "oneOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "properties": { "fromEnv": { "type": "string", "minLength": 1 } },
                    "required": ["fromEnv"],
                    "additionalProperties": false
                }
            ]
        })
    }
}
