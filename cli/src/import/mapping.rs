//! Emissary `Mapping`s where they touch authentication: `bypass_auth` becomes
//! a rule with no filters, `auth_context_extensions` the External filter's
//! `arguments` in a rule, only where a rule's host and path globs select
//! exactly the requests Emissary routes to the Mapping (a bypass is never
//! widened).

use super::documents::Object;
use super::Importer;
use serde_json::{json, Map, Value};

impl Importer {
    /// A `Mapping` with `bypass_auth: true` → a rule without filters, when a
    /// rule's `host` and `path` globs select exactly the requests Emissary
    /// would route to that Mapping, or fewer. Anything a rule cannot express
    /// (method, headers, query parameters, regexes, case-insensitive matching,
    /// another Mapping taking part of the prefix) imports no bypass: auth
    /// still applies (fail closed) and the report names the field.
    pub(super) fn bypass_rule(&mut self, m: &Object, mappings: &[&Object]) -> Option<Value> {
        if m.spec.get("bypass_auth").and_then(Value::as_bool) != Some(true) {
            return None;
        }
        let place = m.place();
        match mapping_globs(m, mappings) {
            Err(refused) => {
                for why in refused {
                    self.report.push(format!(
                        "{place}: {why}: refused: no bypass imported, auth still applies to it; set route metadata filter_metadata.portcullis.bypass_auth: true on the Envoy route that matches exactly these requests instead"
                    ));
                }
                None
            }
            Ok((host, path)) => {
                self.report.push(format!(
                    "{place}: spec.bypass_auth: changed: a rule with no filters for host {host:?} path {path:?} (or set route metadata filter_metadata.portcullis.bypass_auth: true on the Envoy route)"
                ));
                Some(json!({ "host": host, "path": path, "filters": [] }))
            }
        }
    }

    /// A `Mapping`'s `auth_context_extensions` → a rule running the
    /// AuthService's External filter `auth` with them as `arguments` (the gRPC
    /// check's `context_extensions`), for the Mapping's host and path; `None`
    /// (reported) when a rule cannot select exactly the Mapping's requests,
    /// which then meet the catch-all rule without them.
    pub(super) fn context_rule(
        &mut self,
        m: &Object,
        mappings: &[&Object],
        auth: Option<&str>,
    ) -> Option<Value> {
        let extensions = m.spec.get("auth_context_extensions")?;
        let place = m.place();
        if m.spec.get("bypass_auth").and_then(Value::as_bool) == Some(true) {
            self.report.push(format!(
                "{place}: spec.auth_context_extensions: ignored: bypass_auth skips the check"
            ));
            return None;
        }
        let Some(auth) = auth else {
            self.report.push(format!(
                "{place}: spec.auth_context_extensions: ignored: no AuthService given"
            ));
            return None;
        };
        let strings: Option<Map<String, Value>> = extensions.as_object().and_then(|map| {
            map.iter()
                .map(|(k, v)| v.as_str().map(|s| (k.clone(), json!(s))))
                .collect()
        });
        let Some(strings) = strings else {
            self.report.push(format!(
                "{place}: spec.auth_context_extensions: refused: not a map of strings"
            ));
            return None;
        };
        match mapping_globs(m, mappings) {
            Err(refused) => {
                for why in refused {
                    self.report.push(format!(
                        "{place}: spec.auth_context_extensions: {why}: refused: not imported, its requests are checked without them; add a rule for exactly these requests whose {auth:?} filter reference has them as arguments"
                    ));
                }
                None
            }
            Ok((host, path)) => {
                self.report.push(format!(
                    "{place}: spec.auth_context_extensions: changed: a rule for host {host:?} path {path:?} running {auth:?} with them as arguments (the gRPC check's context_extensions; an HTTP check, like Envoy's, does not send them)"
                ));
                Some(json!({ "host": host, "path": path,
                    "filters": [ { "name": auth, "arguments": strings } ] }))
            }
        }
    }
}
/// The rule globs (`host`, `path`) selecting exactly the requests Emissary
/// routes to Mapping `m`, or why there are none (one line per field, with its
/// place): a rule matches host and path globs only, and Emissary routes to the
/// most specific (or higher-precedence) Mapping, so another Mapping inside this
/// one's prefix takes part of its requests.
fn mapping_globs(m: &Object, mappings: &[&Object]) -> Result<(String, String), Vec<String>> {
    let mut refused = Vec::new();
    for field in BYPASS_UNEXPRESSIBLE {
        if m.spec.get(*field).is_some_and(|v| !v.is_null()) {
            refused.push(format!("spec.{field}: a rule matches host and path only"));
        }
    }
    if m.spec.get("host_regex").and_then(Value::as_bool) == Some(true) {
        refused.push("spec.host_regex: a rule's host is a glob, not a regex".to_string());
    }
    if m.spec.get("prefix_regex").and_then(Value::as_bool) == Some(true) {
        refused.push("spec.prefix_regex: a rule's path is a glob, not a regex".to_string());
    }
    if m.spec.get("case_sensitive").and_then(Value::as_bool) == Some(false) {
        refused.push("spec.case_sensitive: rule paths match case-sensitively".to_string());
    }
    let host_field = if m.spec.get("hostname").is_some() {
        "hostname"
    } else {
        "host"
    };
    let host = m
        .spec
        .get(host_field)
        .and_then(Value::as_str)
        .unwrap_or("*");
    if host_field == "host" && m.spec.get("host").is_some() && host.contains('*') {
        // Emissary matches `host` exactly (`hostname` is the glob): a `*` in
        // it matches no request, the Mapping takes none.
        refused.push(format!(
            "spec.host: {host:?} is an exact match (Emissary 2.x and 3.x refuse a `*` in it: the Mapping takes no request; `hostname` is the glob), not the glob a rule would make of it"
        ));
    } else if host.contains(['?', '[', ']', '{', '}']) {
        refused.push(format!(
            "spec.{host_field}: {host:?} would be read as a glob"
        ));
    }
    let prefix = m.spec.get("prefix").and_then(Value::as_str).unwrap_or("/");
    if prefix.contains(['*', '?', '[', ']', '{', '}']) {
        refused.push(format!("spec.prefix: {prefix:?} would be read as a glob"));
    }
    let exact = m.spec.get("prefix_exact").and_then(Value::as_bool) == Some(true);
    let bypass = |o: &Object| o.spec.get("bypass_auth").and_then(Value::as_bool) == Some(true);
    if refused.is_empty() {
        for other in mappings {
            // Bypass Mappings come first as their own rules.
            if std::ptr::eq(*other, m) || (bypass(other) && !bypass(m)) {
                continue;
            }
            if bypass(m) && bypass(other) {
                continue;
            }
            if shadows(other, host, prefix, exact, precedence(m)) {
                refused.push(format!(
                    "spec.prefix: {} (as specific or of higher precedence{}) takes part of its requests",
                    other.place(),
                    if bypass(m) { ", without bypass_auth" } else { "" }
                ));
            }
        }
    }
    if !refused.is_empty() {
        return Err(refused);
    }
    let path = if exact {
        prefix.to_string()
    } else {
        format!("{prefix}*")
    };
    Ok((host.to_string(), path))
}

/// `Mapping` fields that narrow which requests it takes but that a rule (host
/// and path globs) cannot express.
const BYPASS_UNEXPRESSIBLE: &[&str] = &[
    "method",
    "method_regex",
    "headers",
    "regex_headers",
    "query_parameters",
    "regex_query_parameters",
];

fn precedence(m: &Object) -> i64 {
    m.spec
        .get("precedence")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Whether Mapping `other` may take requests of the bypass (host glob `host`,
/// path `prefix`, exact or not, at precedence `prec`): their hosts may overlap
/// and `other` is at least as specific or of higher precedence. Regexes count
/// as overlapping.
fn shadows(other: &Object, host: &str, prefix: &str, exact: bool, prec: i64) -> bool {
    let other_host = other
        .spec
        .get("hostname")
        .or_else(|| other.spec.get("host"))
        .and_then(Value::as_str)
        .unwrap_or("*");
    let host_regex = other.spec.get("host_regex").and_then(Value::as_bool) == Some(true);
    let literal = |h: &str| !h.contains(['*', '?', '[', '{']);
    if !host_regex && literal(host) && literal(other_host) && !host.eq_ignore_ascii_case(other_host)
    {
        return false;
    }
    if other.spec.get("prefix_regex").and_then(Value::as_bool) == Some(true) {
        return true;
    }
    let other_prefix = other
        .spec
        .get("prefix")
        .and_then(Value::as_str)
        .unwrap_or("/");
    let other_exact = other.spec.get("prefix_exact").and_then(Value::as_bool) == Some(true);
    let higher = precedence(other) > prec;
    match (exact, other_exact) {
        (false, false) => {
            other_prefix.starts_with(prefix) || (higher && prefix.starts_with(other_prefix))
        }
        (false, true) => other_prefix.starts_with(prefix),
        (true, false) => prefix.starts_with(other_prefix) && (higher || other_prefix == prefix),
        (true, true) => other_prefix == prefix,
    }
}
