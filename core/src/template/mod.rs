//! AES-compatible Go `text/template` subset: parsed once at configure time,
//! rendered per request (header values, error bodies).
//!
//! INTERFACE STUB: the implementation lands in this module; the signatures below
//! are the contract the rest of the core uses.

use serde_json::Value;

/// A parse error, with Go-like position text (`template: 1:7: unexpected "}"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub message: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What rendering produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    Text(String),
    /// The template called `doNotSet`: the header is not set.
    DoNotSet,
}

/// Case-insensitive request-header lookup behind `.httpRequestHeader.Get "Name"`.
pub trait HeaderLookup {
    /// First value of the header, if present.
    fn get_header(&self, name: &str) -> Option<&str>;
}

/// The data a template sees: `root` is the dot (an object with `token`, `idToken`,
/// `tls`, `status_code`, `message`, ...); `headers` answers `.httpRequestHeader`.
/// Numbers: a JSON number stored as f64 renders as Go float64 (`1.516239022e+09`);
/// one stored as an integer renders as a Go integer (`16`).
pub struct RenderData<'a> {
    pub root: &'a Value,
    pub headers: &'a dyn HeaderLookup,
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        Ok(Template {
            source: source.to_string(),
        })
    }

    pub fn render(&self, _data: &RenderData<'_>) -> Result<Rendered, TemplateError> {
        Ok(Rendered::Text(self.source.clone()))
    }
}

/// Converts every number in a decoded JWT header or claims object to f64, as Go's
/// `encoding/json` does when it decodes into `interface{}`.
pub fn go_json_numbers(value: &Value) -> Value {
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Value::Array(items) => Value::Array(items.iter().map(go_json_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), go_json_numbers(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}
