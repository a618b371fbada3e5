//! Unset fields as AES and `kubectl get -o yaml` write them: AES reads an
//! empty string as "unset" (Go's zero value), and its stored resources carry
//! every field written out empty (`onDeny: ""`, `ifRequestHeader: {name: ""}`,
//! `clientAuthentication: {method: ""}`, `secretName: ""`), plus fields AES and
//! Emissary write themselves when they convert a resource between API versions
//! (`v2ExplicitTLS`, `v2BoolHeaders`, `v3postLogoutRedirectURI`, ...: a `v`,
//! a version digit, then the field). Both are removed before anything is read:
//! the first silently as one line per document, the second with a notice.

use serde_json::Value;

/// How many field names one report line lists before "and N more".
const LISTED: usize = 6;

/// Removes the unset and AES-written fields of `spec` (a resource's settings),
/// reporting them under `place` (`Filter default/sso`).
pub fn prune(spec: &mut Value, place: &str, report: &mut Vec<String>) {
    let mut empty = Vec::new();
    let mut written = Vec::new();
    prune_value(spec, "spec", &mut empty, &mut written);
    if !empty.is_empty() {
        report.push(format!(
            "{place}: {}: empty: read as unset, as AES reads them",
            listed(&empty)
        ));
    }
    for field in written {
        report.push(format!(
            "{place}: {field}: dropped: a field AES/Emissary writes itself when it converts a resource between API versions, not configuration"
        ));
    }
}

/// Objects AES reads as absent when their identifying field is unset: a
/// header condition without a header `name` is no condition (its `negate:
/// false` and empty value are Go's zero values, as `kubectl get` prints them).
const ABSENT_WITHOUT: &[(&str, &str)] = &[("ifRequestHeader", "name")];

/// Filter types: `Internal: {}` (Ambassador Pro) is that type with its
/// defaults, never unset.
const FILTER_TYPES: &[&str] = &["JWT", "OAuth2", "External", "APIKey", "Plugin", "Internal"];

/// Numeric fields whose zero AES reads as unset.
const ZERO_IS_UNSET: &[&str] = &["httpStatusCode"];

/// Whether `key` is one AES or Emissary writes when converting versions.
fn is_conversion_field(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next() == Some('v')
        && chars.next().is_some_and(|c| c.is_ascii_digit())
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
}

/// Whether a value is unset: `""`, `null`, `[]`, `{}` (Go's zero values:
/// AES tests a list or map by its length, so `validAlgorithms: []` is the
/// default set and a Mapping's `headers: {}` matches every request, as
/// `kubectl get` prints them), or an object whose every field is.
fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

fn prune_value(value: &mut Value, path: &str, empty: &mut Vec<String>, written: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let here = format!("{path}.{key}");
                if is_conversion_field(&key) {
                    map.remove(&key);
                    written.push(here);
                    continue;
                }
                let Some(inner) = map.get_mut(&key) else {
                    continue;
                };
                let was_object = inner.as_object().is_some_and(|m| !m.is_empty());
                prune_value(inner, &here, empty, written);
                let emptied = was_object && inner.as_object().is_some_and(|m| m.is_empty());
                if let Some((_, required)) = ABSENT_WITHOUT.iter().find(|(k, _)| *k == key) {
                    if inner
                        .as_object()
                        .is_some_and(|m| !m.contains_key(*required))
                    {
                        empty.push(here.clone());
                        map.remove(&key);
                        continue;
                    }
                }
                if ZERO_IS_UNSET.contains(&key.as_str()) && inner.as_u64() == Some(0) {
                    empty.push(here);
                    map.remove(&key);
                    continue;
                }
                if (is_unset(inner) && !FILTER_TYPES.contains(&key.as_str())) || emptied {
                    map.remove(&key);
                    if !emptied {
                        empty.push(here);
                    }
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                prune_value(item, &format!("{path}[{i}]"), empty, written);
            }
        }
        _ => {}
    }
}

fn listed(fields: &[String]) -> String {
    let shown: Vec<&str> = fields.iter().take(LISTED).map(String::as_str).collect();
    let more = fields.len().saturating_sub(LISTED);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_strings_and_the_objects_they_empty_are_unset() {
        let mut spec = json!({"rules": [{"host": "*", "path": "/*", "filters": [
            {"name": "sso", "onDeny": "", "ifRequestHeader": {"name": "", "value": ""}}]}],
            "OAuth2": {"clientAuthentication": {"method": ""}, "secretName": "", "scope": ["openid"]},
            "v3postLogoutRedirectURI": "https://x"});
        let mut report = Vec::new();
        prune(&mut spec, "Filter default/sso", &mut report);
        assert_eq!(
            spec,
            json!({"rules": [{"host": "*", "path": "/*", "filters": [{"name": "sso"}]}],
                "OAuth2": {"scope": ["openid"]}})
        );
        assert!(report[1].contains("spec.v3postLogoutRedirectURI: dropped"));
    }

    #[test]
    fn a_header_condition_without_a_name_is_no_condition() {
        let mut spec = json!({"rules": [{"filters": [{"name": "f",
            "ifRequestHeader": {"name": "", "negate": false, "value": "", "valueRegex": ""}}]}]});
        prune(&mut spec, "FilterPolicy default/p", &mut Vec::new());
        assert_eq!(spec, json!({"rules": [{"filters": [{"name": "f"}]}]}));
    }

    #[test]
    fn empty_lists_and_maps_are_unset_as_go_reads_them() {
        let mut spec = json!({"ambassador_id": [], "headers": {}, "prefix": "/health/",
            "JWT": {"validAlgorithms": [], "errorResponse": {"headers": []}}});
        let mut report = Vec::new();
        prune(&mut spec, "Mapping default/health", &mut report);
        assert_eq!(spec, json!({"prefix": "/health/"}));
        assert!(report[0].contains("spec.ambassador_id"), "{report:?}");
    }

    #[test]
    fn a_null_filter_list_is_unset() {
        let mut spec = json!({"rules": [{"host": "*", "path": "/ip", "filters": null}]});
        prune(&mut spec, "FilterPolicy default/p", &mut Vec::new());
        assert_eq!(spec, json!({"rules": [{"host": "*", "path": "/ip"}]}));
    }
}
