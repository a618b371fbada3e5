//! The `Authorization` filter's configuration as users write it (serde types,
//! field names exactly as in `CONFIG.md`). Nothing here is checked beyond its
//! JSON shape; `AuthorizationFilter::compile` turns it into the filter.

use crate::condition::HeaderConditionSpec;
use crate::jwt::spec::ErrorResponseSpec;
use serde::Deserialize;
use serde_json::Value;

/// `filters[].Authorization`.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizationSpec {
    /// `Allow` or `Deny` (default `Deny`): what happens when no rule holds.
    pub default_action: Option<String>,
    /// Tried in order; the first whose conditions all hold decides.
    #[serde(default)]
    pub rules: Vec<AuthorizationRuleSpec>,
    /// The 403's body and headers, as the JWT filter's `errorResponse`
    /// (`realm` has no meaning here: a 403 carries no `WWW-Authenticate`).
    pub error_response: Option<ErrorResponseSpec>,
}

/// One rule: a name, an action and conditions (all must hold; none: always).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizationRuleSpec {
    /// Unique within the filter; what `portcullis.rule` reports.
    pub name: String,
    /// `Allow` or `Deny`.
    pub action: String,
    /// Any of these request methods (`GET`, `POST`, ...; compared exactly).
    pub methods: Option<Vec<String>>,
    /// Any of these networks (`10.0.0.0/8`, `2001:db8::/32`, or one address),
    /// against Envoy's `source.address`.
    #[serde(rename = "clientCIDRs")]
    pub client_cidrs: Option<Vec<String>>,
    /// Each must hold, as a rule's `ifRequestHeader`.
    pub headers: Option<Vec<HeaderConditionSpec>>,
    /// Each must be among the `scope` and `scp` claims' values.
    pub scopes: Option<Vec<String>>,
    /// Each must hold on the identity's claims.
    pub claims: Option<Vec<ClaimConditionSpec>>,
}

/// One condition on a claim: `path` and exactly one of `equals`, `anyOf`,
/// `allOf`, `matches`, `exists`.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimConditionSpec {
    /// One claim name, taken whole (`"https://example.com/roles"`), or a list
    /// of names into nested objects (`["realm_access", "roles"]`).
    pub path: ClaimPathSpec,
    /// The claim equals this JSON value (numbers compare as numbers);
    /// `null` is a value here, not an absent field.
    #[serde(default, deserialize_with = "present")]
    pub equals: Option<Value>,
    /// At least one of these strings is among the claim's values.
    pub any_of: Option<Vec<String>>,
    /// Every one of these strings is among the claim's values.
    pub all_of: Option<Vec<String>>,
    /// A regular expression that one of the claim's values matches whole.
    pub matches: Option<String>,
    /// Whether the claim is present.
    pub exists: Option<bool>,
}

// Deserialized by hand: serde's `untagged` buffers the input, and cost the
// module 3.6 KB more than this visitor.
/// A claim path: one name, or a list of names.
#[derive(Debug)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", serde(untagged))]
pub enum ClaimPathSpec {
    Name(String),
    Nested(Vec<String>),
}

impl<'de> Deserialize<'de> for ClaimPathSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PathVisitor;
        impl<'de> serde::de::Visitor<'de> for PathVisitor {
            type Value = ClaimPathSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a claim name or a list of claim names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ClaimPathSpec, E> {
                Ok(ClaimPathSpec::Name(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ClaimPathSpec, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(ClaimPathSpec::Nested(names))
            }
        }
        deserializer.deserialize_any(PathVisitor)
    }
}

impl Default for ClaimPathSpec {
    fn default() -> Self {
        ClaimPathSpec::Name(String::new())
    }
}

/// `Some` for a field that is present, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}
