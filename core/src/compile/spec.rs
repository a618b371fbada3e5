//! Configuration pieces several filter types share, as users write them (serde
//! types): Go durations, secrets, `{name, value}` header templates. Nothing here
//! is checked beyond its JSON shape.

use super::duration::parse_go_duration;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::time::Duration;

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
