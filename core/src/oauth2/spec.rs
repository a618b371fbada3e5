//! The `OAuth2` filter's configuration and rule `arguments` as users write them
//! (serde types, field names exactly as in `CONFIG.md`). Nothing here is checked
//! beyond its JSON shape; `OAuth2Filter::compile` and `OAuth2Args::compile` turn
//! them into the filter and its per-rule arguments.

use crate::compile::spec::{GoDuration, HeaderTemplateSpec, SecretSpec};
use crate::condition::HeaderConditionSpec;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

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
    /// AES `JWTAssertion` settings (RFC 7523 client assertions).
    #[serde(rename = "jwtAssertion")]
    pub jwt_assertion: Option<super::client_assertion::JwtAssertionSpec>,
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
    /// Ambassador Pro (and the Edge Stack article): sent to the IdP as the
    /// `audience` parameter of the authorization request.
    pub audience: Option<String>,
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
