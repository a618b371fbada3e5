//! Runtime values: borrowed views into the JSON data plus the scalars that
//! literals and functions produce, typed the way Go's `reflect` would see them.

use serde_json::{Map, Value};
use std::borrow::Cow;

#[derive(Debug, Clone)]
pub(super) enum Val<'a> {
    /// Go's invalid `reflect.Value`: a missing map key. Prints `<no value>`.
    NoValue,
    /// A nil `interface{}` (JSON null).
    Nil,
    Bool(bool),
    /// Go `int`.
    Int(i64),
    /// Go `uint64` (JSON integers above `i64::MAX`).
    Uint(u64),
    /// Go `float64`.
    Float(f64),
    Str(Cow<'a, str>),
    Arr(&'a [Value]),
    Map(&'a Map<String, Value>),
    /// The `http.Header` behind `.httpRequestHeader`.
    Headers,
}

impl<'a> Val<'a> {
    pub(super) fn from_json(v: &'a Value) -> Val<'a> {
        match v {
            Value::Null => Val::Nil,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => {
                if n.is_f64() {
                    Val::Float(n.as_f64().unwrap_or(0.0))
                } else if let Some(i) = n.as_i64() {
                    Val::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Val::Uint(u)
                } else {
                    Val::Float(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => Val::Str(Cow::Borrowed(s.as_str())),
            Value::Array(a) => Val::Arr(a.as_slice()),
            Value::Object(m) => Val::Map(m),
        }
    }

    /// Nil or missing: Go's untyped nil once it reaches a function.
    pub(super) fn is_nil(&self) -> bool {
        matches!(self, Val::NoValue | Val::Nil)
    }

    /// Go's `reflect.Type.String()` for the value.
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Val::NoValue | Val::Nil => "<nil>",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Uint(_) => "uint64",
            Val::Float(_) => "float64",
            Val::Str(_) => "string",
            Val::Arr(_) => "[]interface {}",
            Val::Map(_) => "map[string]interface {}",
            Val::Headers => "http.Header",
        }
    }

    /// Go's `template.IsTrue`.
    pub(super) fn truth(&self) -> bool {
        match self {
            Val::NoValue | Val::Nil => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Uint(u) => *u != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::Arr(a) => !a.is_empty(),
            Val::Map(m) => !m.is_empty(),
            Val::Headers => true,
        }
    }
}

/// A map holding this key (an array of key names) is a Go struct to `json`:
/// only those keys are marshalled, in that order (fields tagged `json:"-"`
/// stay readable by name). Templates cannot name it (`.` needs an identifier),
/// and ranging or printing never shows it.
pub const JSON_FIELDS_KEY: &str = "\u{0}json";

/// Map entries in Go's sorted key order.
pub(super) fn sorted_entries(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut v: Vec<(&String, &Value)> = m.iter().filter(|(k, _)| *k != JSON_FIELDS_KEY).collect();
    v.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    v
}
