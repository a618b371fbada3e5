//! AES's `json PREFIX VALUE`: Go's `json.MarshalIndent(VALUE, PREFIX, "\t")`
//! (encoding/json as of Go 1.19: sorted map keys, `<>&` U+2028 U+2029
//! escaped, `\u0008`-style escapes for other controls). Below `exec`, above
//! `value` and `strconv`.

use super::strconv::json_float;
use super::value::{sorted_entries, Entry, HeaderMap, Val, JSON_FIELDS_KEY, MAX_OUTPUT};
use std::fmt::Write as _;

/// Nesting beyond this in data being encoded is an error.
const MAX_DEPTH: usize = 200;

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' => {
                let _ = write!(out, "\\u00{:02x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u00{:02x}", u32::from(c));
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Encoder<'p, 'h> {
    out: String,
    prefix: &'p str,
    headers: Option<&'p HeaderMap<'h>>,
}

impl Encoder<'_, '_> {
    fn newline(&mut self, level: usize) {
        self.out.push('\n');
        self.out.push_str(self.prefix);
        for _ in 0..level {
            self.out.push('\t');
        }
    }

    fn list<'v>(
        &mut self,
        items: impl ExactSizeIterator<Item = Val<'v>>,
        level: usize,
    ) -> Result<(), String> {
        self.out.push('[');
        let empty = items.len() == 0;
        for (i, e) in items.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.newline(level.saturating_add(1));
            self.value(&e, level.saturating_add(1))?;
        }
        if !empty {
            self.newline(level);
        }
        self.out.push(']');
        Ok(())
    }

    fn object<'v>(&mut self, entries: Vec<(&str, Val<'v>)>, level: usize) -> Result<(), String> {
        self.out.push('{');
        let empty = entries.is_empty();
        for (i, (k, e)) in entries.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.newline(level.saturating_add(1));
            json_string(&mut self.out, k);
            self.out.push_str(": ");
            self.value(&e, level.saturating_add(1))?;
        }
        if !empty {
            self.newline(level);
        }
        self.out.push('}');
        Ok(())
    }

    fn header_object(&mut self, h: &HeaderMap<'_>, level: usize) -> Result<(), String> {
        let entries: Vec<(&str, Val<'_>)> = h
            .iter()
            .map(|(k, v)| (k.as_str(), Val::Strings(Some(v.clone()))))
            .collect();
        self.object(entries, level)
    }

    fn value(&mut self, v: &Val<'_>, level: usize) -> Result<(), String> {
        if level > MAX_DEPTH {
            return Err(format!("value nested deeper than {MAX_DEPTH} levels"));
        }
        if self.out.len() > MAX_OUTPUT {
            return Err(format!("output exceeds {MAX_OUTPUT} bytes"));
        }
        match v {
            Val::NoValue | Val::Nil => self.out.push_str("null"),
            Val::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Val::Int(i) => {
                let _ = write!(self.out, "{i}");
            }
            Val::Byte(b) => {
                let _ = write!(self.out, "{b}");
            }
            Val::Uint(u) => {
                let _ = write!(self.out, "{u}");
            }
            Val::Float(f) => self.out.push_str(&json_float(*f)?),
            Val::Complex(..) => return Err("json: unsupported type: complex128".to_string()),
            Val::Str(s) => json_string(&mut self.out, s),
            Val::Arr(a) => self.list(a.iter().map(Val::from_json), level)?,
            Val::Strings(None) => self.out.push_str("null"),
            Val::Strings(Some(s)) => self.list(s.iter().map(|x| Val::Str((*x).into())), level)?,
            Val::Map(m, root) => {
                let entries: Vec<(&str, Val<'_>)> =
                    match m.get(JSON_FIELDS_KEY).and_then(|f| f.as_array()) {
                        // A Go struct: its JSON fields in declaration order.
                        Some(fields) => fields
                            .iter()
                            .filter_map(|f| f.as_str())
                            .filter_map(|f| m.get_key_value(f))
                            .map(|(k, v)| (k.as_str(), Val::from_json(v)))
                            .collect(),
                        None => sorted_entries(m, *root)
                            .into_iter()
                            .map(|(k, e)| {
                                let v = match (e, self.headers) {
                                    (Entry::Json(j), _) => Val::from_json(j),
                                    (Entry::Headers, Some(h)) => Val::HeaderMap(h.clone()),
                                    (Entry::Headers, None) => Val::Headers,
                                };
                                (k, v)
                            })
                            .collect(),
                    };
                self.object(entries, level)?;
            }
            Val::HeaderMap(h) => self.header_object(h, level)?,
            Val::Headers => match self.headers {
                Some(h) => {
                    let h = h.clone();
                    self.header_object(&h, level)?;
                }
                None => self.out.push_str("{}"),
            },
        }
        Ok(())
    }
}

/// `json.MarshalIndent(v, prefix, "\t")`; `headers` is what the root's
/// `httpRequestHeader` holds.
pub(super) fn marshal_indent(
    v: &Val<'_>,
    prefix: &str,
    headers: Option<&HeaderMap<'_>>,
) -> Result<String, String> {
    let mut e = Encoder {
        out: String::new(),
        prefix,
        headers,
    };
    e.value(v, 0)?;
    if e.out.len() > MAX_OUTPUT {
        return Err(format!("output exceeds {MAX_OUTPUT} bytes"));
    }
    Ok(e.out)
}
