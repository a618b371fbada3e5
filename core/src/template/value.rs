//! Runtime values: borrowed views into the JSON data plus the scalars that
//! literals and functions produce, typed the way Go's `reflect` would see them.
//! A leaf below `fmt`, `json` and `exec`.

use serde_json::{Map, Value};
use std::borrow::Cow;
use std::rc::Rc;

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

    /// Every header as (name, value), in the order they came: what
    /// `.httpRequestHeader` holds as Go's `http.Header` (canonical names,
    /// each with its values).
    fn header_pairs(&self) -> Vec<(&str, &str)> {
        Vec::new()
    }
}

/// Rendered output (and any single string a function builds) is capped here.
pub(super) const MAX_OUTPUT: usize = 64 * 1024;

/// Go's `http.Header` as AES builds it from the request: canonical names
/// (`textproto.CanonicalMIMEHeaderKey`) in sorted order, each with its values
/// in the order they came.
pub(super) type HeaderMap<'a> = Rc<Vec<(String, Vec<&'a str>)>>;

#[derive(Debug, Clone)]
pub(super) enum Val<'a> {
    /// Go's invalid `reflect.Value`: a missing map key. Prints `<no value>`.
    NoValue,
    /// A nil `interface{}` (JSON null).
    Nil,
    Bool(bool),
    /// Go `int`.
    Int(i64),
    /// Go `uint8` (`index` of a string).
    Byte(u8),
    /// Go `uint64`.
    Uint(u64),
    /// Go `float64`.
    Float(f64),
    /// Go `complex128` (imaginary literals).
    Complex(f64, f64),
    Str(Cow<'a, str>),
    Arr(&'a [Value]),
    /// `map[string]interface {}`; `true` for the data's root, which also
    /// holds `httpRequestHeader`.
    Map(&'a Map<String, Value>, bool),
    /// `.httpRequestHeader` before it is read (methods are called on the
    /// request's headers directly).
    Headers,
    /// `http.Header`.
    HeaderMap(HeaderMap<'a>),
    /// `[]string` (a header's values); `None` is a nil slice.
    Strings(Option<Vec<&'a str>>),
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
            Value::Object(m) => Val::Map(m, false),
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
            Val::Byte(_) => "uint8",
            Val::Uint(_) => "uint64",
            Val::Float(_) => "float64",
            Val::Complex(..) => "complex128",
            Val::Str(_) => "string",
            Val::Arr(_) => "[]interface {}",
            Val::Map(..) => "map[string]interface {}",
            Val::Headers | Val::HeaderMap(_) => "http.Header",
            Val::Strings(_) => "[]string",
        }
    }

    /// Go's `template.IsTrue`.
    pub(super) fn truth(&self) -> bool {
        match self {
            Val::NoValue | Val::Nil => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Byte(b) => *b != 0,
            Val::Uint(u) => *u != 0,
            Val::Float(f) => *f != 0.0,
            Val::Complex(r, i) => *r != 0.0 || *i != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::Arr(a) => !a.is_empty(),
            Val::Map(m, root) => *root || !m.is_empty(),
            Val::Headers => true,
            Val::HeaderMap(h) => !h.is_empty(),
            Val::Strings(s) => s.as_ref().is_some_and(|s| !s.is_empty()),
        }
    }
}

/// A map holding this key (an array of key names) is a Go struct to `json`:
/// only those keys are marshalled, in that order (fields tagged `json:"-"`
/// stay readable by name). Templates cannot name it (`.` needs an identifier),
/// and ranging or printing never shows it.
pub const JSON_FIELDS_KEY: &str = "\u{0}json";

/// The key under which the data's root holds the request's headers.
pub(super) const HEADERS_KEY: &str = "httpRequestHeader";

/// One entry of a map as templates see it.
pub(super) enum Entry<'a> {
    Json(&'a Value),
    Headers,
}

/// Map entries in Go's sorted key order; the root also holds
/// `httpRequestHeader` (unless its JSON has that key).
pub(super) fn sorted_entries<'a>(
    m: &'a Map<String, Value>,
    root: bool,
) -> Vec<(&'a str, Entry<'a>)> {
    let mut v: Vec<(&str, Entry<'a>)> = m
        .iter()
        .filter(|(k, _)| *k != JSON_FIELDS_KEY)
        .map(|(k, v)| (k.as_str(), Entry::Json(v)))
        .collect();
    if shows_headers(m, root) {
        v.push((HEADERS_KEY, Entry::Headers));
    }
    v.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    v
}

/// Whether the root shows `httpRequestHeader` among its keys: not when its
/// JSON has that key, nor in AES's error data (a map with
/// [`JSON_FIELDS_KEY`]), which has no such key: there it is only readable by
/// name, a Portcullis addition.
pub(super) fn shows_headers(m: &Map<String, Value>, root: bool) -> bool {
    root && !m.contains_key(HEADERS_KEY) && !m.contains_key(JSON_FIELDS_KEY)
}

/// The number of keys a map shows.
pub(super) fn map_len(m: &Map<String, Value>, root: bool) -> usize {
    let hidden = usize::from(m.contains_key(JSON_FIELDS_KEY));
    let extra = usize::from(shows_headers(m, root));
    m.len().saturating_sub(hidden).saturating_add(extra)
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `x-forwarded-for` is
/// `X-Forwarded-For`; a name with a byte that is no token character is left as is.
pub(super) fn canonical_header_key(name: &str) -> Cow<'_, str> {
    let is_token = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
    };
    if !name.bytes().all(is_token) {
        return Cow::Borrowed(name);
    }
    let mut upper = true;
    let mut canonical = true;
    for b in name.bytes() {
        if (upper && b.is_ascii_lowercase()) || (!upper && b.is_ascii_uppercase()) {
            canonical = false;
            break;
        }
        upper = b == b'-';
    }
    if canonical {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for b in name.bytes() {
        let c = if upper {
            b.to_ascii_uppercase()
        } else {
            b.to_ascii_lowercase()
        };
        out.push(char::from(c));
        upper = b == b'-';
    }
    Cow::Owned(out)
}

/// Builds Go's `http.Header` from (name, value) pairs: `Header.Add` of each.
pub(super) fn header_map<'a>(pairs: Vec<(&'a str, &'a str)>) -> HeaderMap<'a> {
    let mut map: Vec<(String, Vec<&'a str>)> = Vec::new();
    for (name, value) in pairs {
        let key = canonical_header_key(name);
        match map.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(value),
            None => map.push((key.into_owned(), vec![value])),
        }
    }
    map.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Rc::new(map)
}
