//! AES-compatible Go `text/template` subset: parsed once at configure time,
//! rendered per request (header values, error bodies).
//!
//! Supported: text and `{{ }}` actions with `{{-`/`-}}` trimming, comments, field
//! chains, variables (`$`, `$x :=`, `$x =`), string/raw-string/number/char/bool/nil
//! literals, parenthesised pipelines, pipes, `if`/`else if`/`else`, `range`
//! (arrays, maps in sorted key order, ints; `break`/`continue`), `with`/`else with`,
//! the method `.httpRequestHeader.Get "Name"`, and the functions `and or not eq ne
//! lt le gt ge index len hasKey doNotSet json print printf println urlquery html js`.
//! Values print as Go's `fmt` would (`1.516239022e+09`, `<no value>`, `map[a:1]`).
//!
//! Bounds (hostile data must not hurt the VM): parse nesting is limited to
//! [`parse::MAX_PARSE_DEPTH`], rendered output to 64 KiB, evaluation to a fixed
//! step budget, printed/encoded data nesting to 200 levels. No panics.

mod exec;
mod gofmt;
mod lex;
mod parse;
mod value;
pub use value::JSON_FIELDS_KEY;

#[cfg(test)]
mod tests;

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

    /// Whether some value is escaped text standing for bytes that are not
    /// UTF-8 (`request::escape_opaque`): a rendered header value is then
    /// turned back into those bytes.
    fn has_opaque(&self) -> bool {
        false
    }
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
    nodes: Vec<parse::Node>,
}

impl Template {
    /// The template's text, as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Parses `source`; syntax errors and unknown functions are errors here.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        match parse::parse(source) {
            Ok(nodes) => Ok(Template {
                source: source.to_string(),
                nodes,
            }),
            Err(e) => Err(exec::error_at(source, e.pos, &e.msg)),
        }
    }

    /// Executes the template against `data`.
    pub fn render(&self, data: &RenderData<'_>) -> Result<Rendered, TemplateError> {
        let mut state = exec::State::new(&self.source, data.root, data.headers);
        let dot = value::Val::from_json(data.root);
        match state.walk(&dot, &self.nodes) {
            Ok(()) => Ok(Rendered::Text(state.out)),
            Err(exec::Flow::DoNotSet) => Ok(Rendered::DoNotSet),
            Err(exec::Flow::Err(e)) => Err(e),
            // The parser only accepts break/continue inside range.
            Err(exec::Flow::Break | exec::Flow::Continue) => Ok(Rendered::Text(state.out)),
        }
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
