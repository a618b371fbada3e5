//! Field names as AES reads them. AES decodes `Filter` and `FilterPolicy`
//! specs with Go's `encoding/json`, which takes a key matching a field's name
//! in any case (`clientId` is `clientID`, `authorizationUrl` is
//! `authorizationURL`), so published manifests carry such spellings and AES
//! runs them. The import writes each such key with the name the configuration
//! knows (every property name of the configuration's JSON Schema), and
//! reports it. Emissary's own resources (`AuthService`, `Mapping`) are read by
//! Python, which matches exactly: they are left as they are.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Maps whose keys are the user's (parameters, headers, claims), not fields.
const FREE_FORM: &[&str] = &[
    "extraAuthorizationParameters",
    "add_auth_headers",
    "otherClaims",
    "otherHeaderParameters",
    "jwks",
];

/// Lower-cased property name → the property names of that spelling.
fn known() -> &'static BTreeMap<String, Vec<String>> {
    static KNOWN: OnceLock<BTreeMap<String, Vec<String>>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let schema = serde_json::to_value(schemars::schema_for!(
            portcullis_core::config::schema::ConfigSpec
        ))
        .unwrap_or_default();
        let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
        collect(&schema, &mut names);
        names
    })
}

fn collect(schema: &Value, names: &mut BTreeMap<String, Vec<String>>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                for key in props.keys() {
                    let spellings = names.entry(key.to_ascii_lowercase()).or_default();
                    if !spellings.contains(key) {
                        spellings.push(key.clone());
                    }
                }
            }
            for v in map.values() {
                collect(v, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, names)),
        _ => {}
    }
}

/// Renames, throughout `value` (at `path`), each key that is no known field
/// but matches exactly one known field in another case; one report line per
/// renamed key, under `place`.
pub fn normalize(value: &mut Value, place: &str, path: &str, report: &mut Vec<String>) {
    match value {
        Value::Object(map) => normalize_map(map, place, path, report),
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                normalize(item, place, &format!("{path}[{i}]"), report);
            }
        }
        _ => {}
    }
}

fn normalize_map(map: &mut Map<String, Value>, place: &str, path: &str, report: &mut Vec<String>) {
    let known = known();
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let mut name = key.clone();
        let exact = known
            .get(&key.to_ascii_lowercase())
            .is_some_and(|s| s.contains(&key));
        if !exact {
            if let Some([only]) = known.get(&key.to_ascii_lowercase()).map(Vec::as_slice) {
                if !map.contains_key(only) {
                    if let Some(v) = map.remove(&key) {
                        map.insert(only.clone(), v);
                        report.push(format!(
                            "{place}: {path}.{key}: changed: read as {only}, as AES reads field names in any case"
                        ));
                        name = only.clone();
                    }
                }
            }
        }
        if FREE_FORM.contains(&name.as_str()) {
            continue;
        }
        if let Some(inner) = map.get_mut(&name) {
            normalize(inner, place, &format!("{path}.{name}"), report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_field_in_another_case_is_read_as_aes_reads_it() {
        let mut v = json!({"clientId": "x", "authorizationUrl": "https://idp",
            "extraAuthorizationParameters": {"Audience": "a"}});
        let mut report = Vec::new();
        normalize(&mut v, "Filter default/f", "spec.OAuth2", &mut report);
        assert_eq!(
            v,
            json!({"clientID": "x", "authorizationURL": "https://idp",
                "extraAuthorizationParameters": {"Audience": "a"}})
        );
        assert_eq!(report.len(), 2);
    }
}
