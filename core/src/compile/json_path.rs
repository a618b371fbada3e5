//! Deserializing a configuration value with the JSON path of a fault.
//!
//! With the `exact-paths` feature (`portcullis check`), `serde_path_to_error`
//! tracks the path while serde walks the value. Without it (the Wasm module,
//! where that crate costs ~120 KB of code for every configuration type), the
//! value is deserialized from its compact JSON text, and on a fault the path is
//! found by scanning that text up to the byte serde_json reports (its line and
//! column): the key or element being read when serde gave up. Both give paths in
//! the same form (`filters[0].JWT.leewayForExpiresAt`, `"."` for the root) and
//! the same message for the usual faults (unknown field, missing field, invalid
//! type or value, a field's own check such as a duration); the tests compare them.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Deserializes `value` as `T`. A fault gives `(path, message)`: the JSON path
/// of the field at fault (`"."`: the value itself) and serde's message without a
/// position.
pub fn deserialize<T: DeserializeOwned>(value: &Value) -> Result<T, (String, String)> {
    #[cfg(feature = "exact-paths")]
    {
        serde_path_to_error::deserialize::<_, T>(value)
            .map_err(|e| (e.path().to_string(), e.inner().to_string()))
    }
    #[cfg(not(feature = "exact-paths"))]
    {
        located(value)
    }
}

/// The module's way: deserialize from the compact text, locate a fault in it.
#[cfg_attr(feature = "exact-paths", allow(dead_code))]
pub(crate) fn located<T: DeserializeOwned>(value: &Value) -> Result<T, (String, String)> {
    let text = serde_json::to_vec(value).map_err(|e| (".".to_string(), e.to_string()))?;
    serde_json::from_slice::<T>(&text).map_err(|e| {
        let message = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = match message.strip_suffix(&suffix) {
            Some(m) if e.line() > 0 => m.to_string(),
            _ => message,
        };
        // Compact text is one line. serde_json's column is that of the byte it
        // looked at last: the one after the value at fault (a value's own
        // check, an invalid type), or the `}` of an object missing a field.
        let path = if e.line() == 1 {
            let missing = message.starts_with("missing field");
            path_at(&text, e.column().saturating_sub(1), missing)
        } else {
            ".".to_string()
        };
        (path, message)
    })
}

/// Where the scanner is inside a container.
enum Frame {
    /// In an object: the key last read (the value being read is its).
    Object(Option<String>),
    /// In an array: the index of the element being read, if one started.
    Array(Option<usize>),
}

/// The JSON path of the value being read after the first `end` bytes of `text`
/// (valid compact JSON, as `serde_json::to_vec` writes it); with `object`, of
/// the object being read rather than its member.
fn path_at(text: &[u8], end: usize, object: bool) -> String {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let end = end.min(text.len());
    while i < end {
        let Some(&b) = text.get(i) else { break };
        if !matches!(b, b']' | b'}' | b',' | b':') {
            // A value (or key) starts: an array's element begins with it.
            if let Some(Frame::Array(index)) = stack.last_mut() {
                if index.is_none() {
                    *index = Some(0);
                }
            }
        }
        match b {
            b'{' => stack.push(Frame::Object(None)),
            b'[' => stack.push(Frame::Array(None)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object(key)) => *key = None,
                Some(Frame::Array(Some(index))) => *index = index.saturating_add(1),
                _ => {}
            },
            b'"' => {
                let close = string_end(text, i);
                if let Some(Frame::Object(key @ None)) = stack.last_mut() {
                    let raw = text.get(i..close.saturating_add(1).min(text.len()));
                    *key = raw
                        .and_then(|r| serde_json::from_slice::<String>(r).ok())
                        .or(Some(String::new()));
                }
                i = close;
            }
            _ => {}
        }
        i = i.saturating_add(1);
    }
    if object {
        if let Some(Frame::Object(key)) = stack.last_mut() {
            *key = None;
        }
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object(Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Array(Some(index)) => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
            _ => {}
        }
    }
    if path.is_empty() {
        path.push('.');
    }
    path
}

/// The index of the quote closing the string whose opening quote is at `open`
/// (the last index when it is not closed).
fn string_end(text: &[u8], open: usize) -> usize {
    let mut j = open.saturating_add(1);
    while let Some(&c) = text.get(j) {
        match c {
            b'\\' => j = j.saturating_add(2),
            b'"' => return j,
            _ => j = j.saturating_add(1),
        }
    }
    text.len().saturating_sub(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    // The whole configuration type: what the module deserializes.
    use crate::config::schema::ConfigSpec;
    use serde_json::json;

    /// The module's report against `serde_path_to_error`'s, for one value.
    fn same_as_serde<T: DeserializeOwned + std::fmt::Debug>(value: Value) -> (String, String) {
        let exact = serde_path_to_error::deserialize::<_, T>(&value)
            .map_err(|e| (e.path().to_string(), e.inner().to_string()));
        let ours = located::<T>(&value);
        let exact = exact.expect_err("the value must be at fault");
        let ours = ours.expect_err("the value must be at fault");
        assert_eq!(ours, exact, "for {value}");
        ours
    }

    #[test]
    fn paths_match_serde_path_to_error() {
        let faults = [
            json!({"filters": [{"name": "j", "JWT": {"jwks": {"keys": []}, "leewayForExpiresAt": "5 sec"}}]}),
            json!({"filters": [{"name": "j", "JWT": {"jwks": {"keys": []}, "bogus": 1}}]}),
            json!({"filters": [{"name": "a", "JWT": {"jwks": {"keys": []}}},
                               {"name": "j", "JWT": {"jwks": {"keys": []}, "requireAudience": "yes"}}]}),
            json!({"filters": [{"name": "j", "JWT": {"jwksURI": 5}}]}),
            json!({"filters": [{"JWT": {}}]}),
            json!({"filters": {}}),
            json!({"rules": [{"host": "*", "path": "*", "filters": [{"name": "j", "onDeny": 3}]}]}),
            json!({"rules": [{}, {"host": "*", "path": "*", "filters": [{"name": "j"}, {"nam": "x"}]}]}),
            json!({"bypassCorsPreflight": [1]}),
            json!({"bogus": {"a": [1, 2]}}),
            json!({"filters": [{"name": "k", "APIKey": {"keys": [{"value": {"fromEnv": 1}}]}}]}),
            json!({"filters": [{"name": "e", "External": {"auth_service": "x", "timeout_ms": "1"}}]}),
            json!({"filters": [{"name": "e\"q", "JWT": {"jwks": {"keys": []}, "injectRequestHeaders": [{"name": "X", "value": "v"}, {"name": 1}]}}]}),
        ];
        for value in faults {
            same_as_serde::<ConfigSpec>(value);
        }
    }

    #[test]
    fn a_fault_in_an_escaped_key_is_named_by_the_key() {
        let (path, message) = same_as_serde::<ConfigSpec>(json!({"fil\"ters": []}));
        assert_eq!(path, "fil\"ters");
        assert!(
            message.starts_with("unknown field `fil\"ters`"),
            "{message}"
        );
    }

    #[test]
    fn the_message_carries_no_position() {
        let (path, message) =
            located::<ConfigSpec>(&json!({"filters": [{"name": 1}]})).unwrap_err();
        assert_eq!(path, "filters[0].name");
        assert!(!message.contains(" at line "), "{message}");
    }

    #[test]
    fn a_fault_of_the_whole_value_is_the_root() {
        let (path, _) = same_as_serde::<ConfigSpec>(json!("x"));
        assert_eq!(path, ".");
    }
}
