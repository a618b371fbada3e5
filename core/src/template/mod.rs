//! Go's `text/template` as AES (Ambassador Edge Stack) runs it: parsed once
//! at configure time, rendered per request (header values, error bodies), byte
//! for byte as Go renders it (proven against real Go by
//! `core/tests/go_template.rs`).
//!
//! The language of Go 1.19's text/template (and `{{else with}}`, `range` over
//! an int of later Go): text, `{{ }}` actions with `{{-`/`-}}` trimming,
//! comments, fields, variables (`$`, `$x :=`, `$x =`), every literal Go has
//! (hex floats, imaginary numbers, characters, raw strings), parenthesised
//! pipelines, pipes (a trailing `|` too), `if`/`with`/`range` with `else`,
//! `break`/`continue`, `define`/`block`/`template`. Functions: Go's builtins
//! (`and or not len index slice print printf println html js urlquery call
//! eq ne lt le gt ge`), Sprig's `hasKey`, AES's `doNotSet`, and AES's `json`.
//! Values print as Go's `fmt` prints them; `.httpRequestHeader` is Go's
//! `http.Header`.
//!
//! Files, each importing only those before it: `strconv.rs` (quoting, float
//! formatting), `value.rs` (values, data, errors) and `literal.rs` (Go's
//! literal syntax) are leaves; `gofmt.rs` (Go's fmt), `json.rs`
//! (encoding/json), `escape.rs` (`html`, `js`, `urlquery`) and `funcs.rs`
//! (comparisons, `index`, `slice`); `lex.rs`, `parse.rs`; `exec.rs`; `mod.rs`,
//! the API.
//!
//! Bounds (hostile data must not hurt the VM): parse nesting is limited to
//! [`parse::MAX_PARSE_DEPTH`], `{{template}}` nesting to 100, rendered output to
//! 64 KiB, evaluation to a fixed step budget, printed/encoded data nesting to
//! 200 levels. No panics.

mod escape;
mod exec;
mod funcs;
mod gofmt;
mod json;
mod lex;
mod literal;
mod parse;
mod strconv;
mod value;
pub use value::{HeaderLookup, Rendered, TemplateError, JSON_FIELDS_KEY};

#[cfg(test)]
mod tests;

use serde_json::Value;

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
    /// Templates the text defines (`define`, `block`).
    defines: parse::Defines,
}

impl Template {
    /// The template's text, as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Parses `source`; syntax errors and unknown functions are errors here.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        match parse::parse(source) {
            Ok((nodes, defines)) => Ok(Template {
                source: source.to_string(),
                nodes,
                defines,
            }),
            Err(e) => Err(exec::error_at(source, e.pos, &e.msg)),
        }
    }

    /// Executes the template against `data`.
    pub fn render(&self, data: &RenderData<'_>) -> Result<Rendered, TemplateError> {
        let dot = match data.root {
            Value::Object(m) => value::Val::Map(m, true),
            other => value::Val::from_json(other),
        };
        let mut state = exec::State::new(&self.source, dot.clone(), data.headers, &self.defines);
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

/// Decodes a JSON object as Go's `encoding/json` does for jwt-go: a lone
/// UTF-16 surrogate escape (`"\ud800x"`) becomes U+FFFD (`"\u{FFFD}x"`) where
/// serde_json would refuse the whole text, and bytes that are not UTF-8
/// become U+FFFD. `None` when the text is not a JSON object.
pub fn go_json_object(text: &[u8]) -> Option<serde_json::Map<String, Value>> {
    if let Ok(map) = serde_json::from_slice(text) {
        return Some(map);
    }
    let lossy = String::from_utf8_lossy(text);
    let fixed = replace_lone_surrogates(&lossy);
    serde_json::from_str(&fixed).ok()
}

/// `\uD800`–`\uDFFF` escapes that are not a high surrogate followed by a low
/// one are rewritten to `\ufffd` (what Go decodes them to).
fn replace_lone_surrogates(text: &str) -> String {
    fn escape_at(b: &[u8], i: usize) -> Option<u32> {
        let hex = b.get(i..i.checked_add(6)?)?;
        if hex.first() != Some(&b'\\') || hex.get(1) != Some(&b'u') {
            return None;
        }
        let digits = std::str::from_utf8(hex.get(2..)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0usize;
    let mut start = 0usize;
    while i < b.len() {
        if b.get(i) == Some(&b'\\') {
            match escape_at(b, i) {
                Some(hi @ 0xD800..=0xDBFF) => {
                    let next = i.saturating_add(6);
                    if matches!(escape_at(b, next), Some(0xDC00..=0xDFFF)) {
                        i = next.saturating_add(6);
                    } else {
                        let _ = hi;
                        out.push_str(text.get(start..i).unwrap_or(""));
                        out.push_str("\\ufffd");
                        i = next;
                        start = i;
                    }
                    continue;
                }
                Some(0xDC00..=0xDFFF) => {
                    out.push_str(text.get(start..i).unwrap_or(""));
                    out.push_str("\\ufffd");
                    i = i.saturating_add(6);
                    start = i;
                    continue;
                }
                // Any other escape (`\\` included) is skipped whole.
                _ => i = i.saturating_add(2),
            }
        } else {
            i = i.saturating_add(1);
        }
    }
    out.push_str(text.get(start..).unwrap_or(""));
    out
}
