//! `portcullis import`: AES / Emissary Kubernetes manifests (multi-document
//! YAML: `Filter`, `FilterPolicy`, `AuthService`, `Mapping`, `Secret`) into a
//! Portcullis configuration, as `CONFIG.md` "Importing" describes.
//!
//! - A `Filter` becomes the `filters[]` entry `name.namespace` (AES's realm and
//!   reference name); `ambassador_id` goes; `Plugin` filters cannot come.
//! - A Secret reference (`OAuth2.secretName`, `APIKey.keys[].secretName`)
//!   becomes `{"fromEnv": NAME}`: the value goes to the Envoy VM's environment,
//!   never into the configuration.
//! - OAuth2 filters keep AES's callback path (`callbackPath`), so the
//!   registration at the IdP keeps working.
//! - `FilterPolicy` rules from every policy are merged into one list, higher
//!   `precedence` first, equal ones in manifest order (policy by policy).
//! - A `Mapping` with `bypass_auth: true` becomes a rule with no filters for its
//!   host and prefix (`prefix_exact`: the exact path), ahead of every policy
//!   rule, only when those globs select exactly its requests: a bypass is never
//!   widened. Match fields a rule cannot express (method, headers, query
//!   parameters, regexes, ...) or a more specific Mapping inside the prefix
//!   import no bypass (auth still applies) and are reported.
//! - An `AuthService` becomes an External filter that a last catch-all rule runs
//!   (Emissary checks every request that no `bypass_auth` exempts); a
//!   `Mapping`'s `auth_context_extensions` become that filter's `arguments` in
//!   a rule for the Mapping, under the same condition.
//! - Each Secret value gets its own environment variable: names that would
//!   coincide are told apart by a hash suffix.
//!
//! Every change and every field that cannot come is reported with where it was
//! (`Filter default/sso: spec.OAuth2.secretName: ...`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// What the import produced.
pub struct Imported {
    /// The Portcullis configuration (no plaintext secret).
    pub config: Value,
    /// Environment variable → secret value, for the Envoy VM.
    pub env: BTreeMap<String, String>,
    /// Environment variables the configuration reads whose value no given
    /// Secret held (the user supplies them).
    pub env_missing: Vec<String>,
    /// One line per changed or refused field, with its place.
    pub report: Vec<String>,
}

/// One Kubernetes object, as far as the import reads it.
#[derive(Debug, Clone)]
struct Object {
    kind: String,
    name: String,
    namespace: String,
    spec: Value,
    /// Secrets: data key → value (decoded).
    data: BTreeMap<String, String>,
}

impl Object {
    fn place(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    fn qualified(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// Reads every document of every file.
fn read_objects(paths: &[String], report: &mut Vec<String>) -> Result<Vec<Object>, String> {
    let mut objects = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let value = Value::deserialize(doc)
                .map_err(|e| format!("{path}: document {}: not valid YAML: {e}", i + 1))?;
            if value.is_null() {
                continue;
            }
            let items = match value.get("kind").and_then(Value::as_str) {
                Some("List") => value
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                _ => vec![value],
            };
            for item in items {
                let kind = item.get("kind").and_then(Value::as_str).unwrap_or("");
                let meta = item.get("metadata").cloned().unwrap_or(Value::Null);
                let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
                let namespace = meta
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                if name.is_empty() {
                    report.push(format!(
                        "{path}: document {}: {kind} without metadata.name: skipped",
                        i + 1
                    ));
                    continue;
                }
                let mut data = BTreeMap::new();
                if kind == "Secret" {
                    if let Some(d) = item.get("data").and_then(Value::as_object) {
                        for (k, v) in d {
                            let decoded = v
                                .as_str()
                                .and_then(|s| STANDARD.decode(s.trim()).ok())
                                .and_then(|b| String::from_utf8(b).ok());
                            match decoded {
                                Some(text) => {
                                    data.insert(k.clone(), text);
                                }
                                None => report.push(format!(
                                    "Secret {namespace}/{name}: data.{k}: not base64 UTF-8 text: skipped"
                                )),
                            }
                        }
                    }
                    if let Some(d) = item.get("stringData").and_then(Value::as_object) {
                        for (k, v) in d {
                            if let Some(s) = v.as_str() {
                                data.insert(k.clone(), s.to_string());
                            }
                        }
                    }
                }
                let spec = item.get("spec").cloned().unwrap_or(Value::Null);
                objects.push(Object {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    namespace: namespace.to_string(),
                    spec,
                    data,
                });
            }
        }
    }
    Ok(objects)
}

/// An environment variable name for a Secret's key: `PORTCULLIS_<NS>_<NAME>_<KEY>`.
fn env_name(namespace: &str, name: &str, key: &str) -> String {
    format!("PORTCULLIS_{namespace}_{name}_{key}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

struct Importer {
    secrets: Vec<Object>,
    /// Environment variable → the secret source it was given to, so that two
    /// sources never share a variable.
    var_sources: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    env_missing: Vec<String>,
    report: Vec<String>,
}

impl Importer {
    fn secret(&self, namespace: &str, name: &str) -> Option<&Object> {
        // The later of two with one name, as `kubectl apply` leaves it.
        self.secrets
            .iter()
            .rev()
            .find(|s| s.name == name && s.namespace == namespace)
    }

    /// The environment variable for key `key` of `source` (`"Secret"` for a
    /// Kubernetes Secret `namespace/name`, `"Filter"` for a literal in that
    /// Filter): `PORTCULLIS_<NS>_<NAME>_<KEY>`, upper-cased, every other
    /// character `_`. Distinct sources always get distinct variables: when
    /// that name is already another source's (`api.keys` and `api-keys`,
    /// `team-a`/`keys` and `team`/`a-keys`), `_` and the first hex digits of
    /// the SHA-256 of the source's identity are appended (and the collision
    /// reported), so the first in manifest order keeps the plain name.
    fn var(&mut self, source: &str, namespace: &str, name: &str, key: &str) -> String {
        use sha2::Digest as _;
        let base = env_name(namespace, name, key);
        // Kubernetes names and Secret keys hold no space or `/`: one string per source.
        let id = format!("{source} {namespace}/{name} key {key}");
        let digest = sha2::Sha256::digest(id.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02X}")).collect();
        let mut var = base.clone();
        // 8 hex digits, more should those collide too.
        let mut len = 8;
        loop {
            match self.var_sources.get(&var) {
                None => {
                    self.var_sources.insert(var.clone(), id);
                    break;
                }
                Some(owner) if *owner == id => break,
                Some(owner) => {
                    if var == base {
                        self.report.push(format!(
                            "{id}: environment variable {base} is already {owner}'s: this one gets a suffix"
                        ));
                    }
                    var = format!("{base}_{}", hex.get(..len).unwrap_or(&hex));
                    len = (len + 8).min(hex.len());
                }
            }
        }
        var
    }

    /// Records that `var` holds `value` (or that its value is missing). A
    /// value with a line break or NUL cannot be written as one line of
    /// `secrets.env` (an env file: `KEY=value` per line; a break would cut the
    /// value and start another variable): it is left out and reported, and the
    /// variable listed for the user to fill in.
    fn bind(&mut self, var: &str, value: Option<&String>) {
        match value {
            Some(v) if v.contains(['\n', '\r', '\0']) => {
                self.report.push(format!(
                    "environment variable {var}: its Secret value holds a line break or NUL, which an env file cannot carry: not written to secrets.env; set {var} in the VM environment yourself"
                ));
                if !self.env_missing.iter().any(|m| m == var) {
                    self.env_missing.push(var.to_string());
                }
            }
            Some(v) => {
                self.env.insert(var.to_string(), v.clone());
            }
            None => {
                if !self.env_missing.iter().any(|m| m == var) {
                    self.env_missing.push(var.to_string());
                }
            }
        }
    }

    fn filter(&mut self, f: &Object) -> Option<Value> {
        let place = f.place();
        let Some(spec) = f.spec.as_object() else {
            self.report
                .push(format!("{place}: spec: missing: the Filter is skipped"));
            return None;
        };
        let mut entry = Map::new();
        entry.insert("name".to_string(), json!(f.qualified()));
        for (key, value) in spec {
            match key.as_str() {
                "ambassador_id" => self.report.push(format!(
                    "{place}: spec.ambassador_id: dropped: one Portcullis configuration serves its Envoy filter chain"
                )),
                "JWT" | "External" => {
                    entry.insert(key.clone(), value.clone());
                }
                "OAuth2" => {
                    let body = self.oauth2(f, value);
                    entry.insert(key.clone(), body);
                }
                "APIKey" => {
                    let body = self.apikey(f, value);
                    entry.insert(key.clone(), body);
                }
                "Plugin" => {
                    self.report.push(format!(
                        "{place}: spec.Plugin: refused: Go plugins have no Portcullis equivalent (an External filter calling a service that does the plugin's work can replace it); the Filter is skipped"
                    ));
                    return None;
                }
                "type" | "jwt" | "oauth2" | "apikey" | "external" | "plugin" => {
                    self.report.push(format!(
                        "{place}: spec.{key}: refused: the gateway.getambassador.io/v1alpha1 shape; write the getambassador.io/v3alpha1 one (JWT, OAuth2, APIKey, External); the Filter is skipped"
                    ));
                    return None;
                }
                other => {
                    entry.insert(other.to_string(), value.clone());
                }
            }
        }
        Some(Value::Object(entry))
    }

    fn oauth2(&mut self, f: &Object, value: &Value) -> Value {
        let place = f.place();
        let mut body = value.as_object().cloned().unwrap_or_default();
        if let Some(secret_name) = body.remove("secretName") {
            let namespace = body
                .remove("secretNamespace")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| f.namespace.clone());
            let secret_name = secret_name.as_str().unwrap_or("").to_string();
            let var = self.var("Secret", &namespace, &secret_name, "oauth2-client-secret");
            let value = self
                .secret(&namespace, &secret_name)
                .and_then(|s| s.data.get("oauth2-client-secret"))
                .cloned();
            self.bind(&var, value.as_ref());
            body.insert("secret".to_string(), json!({ "fromEnv": var }));
            self.report.push(format!(
                "{place}: spec.OAuth2.secretName: changed: secret {{\"fromEnv\": \"{var}\"}} (Secret {namespace}/{secret_name}, key oauth2-client-secret{})",
                if value.is_some() { "" } else { ": not given, supply the variable" }
            ));
        }
        if let Some(Value::String(s)) = body.get("secret") {
            let var = self.var("Filter", &f.namespace, &f.name, "oauth2-client-secret");
            let literal = s.clone();
            self.bind(&var, Some(&literal));
            body.insert("secret".to_string(), json!({ "fromEnv": var }));
            self.report.push(format!(
                "{place}: spec.OAuth2.secret: changed: {{\"fromEnv\": \"{var}\"}} (no plaintext secret in the configuration)"
            ));
        }
        if body.remove("accessTokenJWTFilter").is_some() {
            if !body.contains_key("accessTokenValidation") {
                body.insert("accessTokenValidation".to_string(), json!("jwt"));
            }
            self.report.push(format!(
                "{place}: spec.OAuth2.accessTokenJWTFilter: refused: dropped, accessTokenValidation \"jwt\" verifies the token with the IdP's keys; chain the JWT filter after this one in the FilterPolicy for its other checks"
            ));
        }
        let grant = body
            .get("grantType")
            .and_then(Value::as_str)
            .unwrap_or("AuthorizationCode");
        if grant == "AuthorizationCode" && !body.contains_key("callbackPath") {
            body.insert(
                "callbackPath".to_string(),
                json!("/.ambassador/oauth2/redirection-endpoint"),
            );
            self.report.push(format!(
                "{place}: spec.OAuth2.callbackPath: added: \"/.ambassador/oauth2/redirection-endpoint\" (the redirect URI registered at the IdP for AES)"
            ));
        }
        Value::Object(body)
    }

    fn apikey(&mut self, f: &Object, value: &Value) -> Value {
        let place = f.place();
        let mut body = value.as_object().cloned().unwrap_or_default();
        let keys = body
            .get("keys")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let Some(secret_name) = key.get("secretName").and_then(Value::as_str) else {
                if let Some(Value::String(literal)) = key.get("value") {
                    let var = self.var("Filter", &f.namespace, &f.name, &format!("key-{i}"));
                    self.bind(&var, Some(literal));
                    out.push(json!({ "value": { "fromEnv": var } }));
                    self.report.push(format!(
                        "{place}: spec.APIKey.keys[{i}].value: changed: {{\"fromEnv\": \"{var}\"}}"
                    ));
                } else {
                    out.push(key.clone());
                }
                continue;
            };
            // AES: every value of the Secret (in the Filter's namespace) is a key.
            match self.secret(&f.namespace, secret_name).cloned() {
                Some(secret) if !secret.data.is_empty() => {
                    for (k, v) in &secret.data {
                        let var = self.var("Secret", &f.namespace, secret_name, k);
                        self.bind(&var, Some(v));
                        out.push(json!({ "value": { "fromEnv": var } }));
                    }
                    self.report.push(format!(
                        "{place}: spec.APIKey.keys[{i}].secretName: changed: one {{\"value\": {{\"fromEnv\": ...}}}} per value of Secret {}/{secret_name} ({} keys)",
                        f.namespace,
                        secret.data.len()
                    ));
                }
                _ => {
                    let var = self.var("Secret", &f.namespace, secret_name, "key");
                    self.bind(&var, None);
                    out.push(json!({ "value": { "fromEnv": var } }));
                    self.report.push(format!(
                        "{place}: spec.APIKey.keys[{i}].secretName: changed: Secret {}/{secret_name} not given: one key read from {var} (add one entry per key the Secret holds)",
                        f.namespace
                    ));
                }
            }
        }
        body.insert("keys".to_string(), Value::Array(out));
        Value::Object(body)
    }

    /// A `FilterPolicy`'s rules, filter references qualified.
    fn policy_rules(&mut self, p: &Object) -> Vec<(i64, Value)> {
        let place = p.place();
        let mut rules = Vec::new();
        if p.spec.get("ambassador_id").is_some() {
            self.report
                .push(format!("{place}: spec.ambassador_id: dropped"));
        }
        let Some(list) = p.spec.get("rules").and_then(Value::as_array) else {
            self.report
                .push(format!("{place}: spec.rules: missing: nothing imported"));
            return rules;
        };
        for (i, rule) in list.iter().enumerate() {
            let Some(obj) = rule.as_object() else {
                continue;
            };
            let mut out = Map::new();
            let mut precedence = 0;
            for (k, v) in obj {
                match k.as_str() {
                    "precedence" => precedence = v.as_i64().unwrap_or(0),
                    "filters" => {
                        let refs: Vec<Value> = v
                            .as_array()
                            .map(|refs| {
                                refs.iter()
                                    .map(|r| {
                                        let mut r = r.as_object().cloned().unwrap_or_default();
                                        let ns = r
                                            .remove("namespace")
                                            .and_then(|n| n.as_str().map(str::to_string))
                                            .unwrap_or_else(|| p.namespace.clone());
                                        let name = r
                                            .get("name")
                                            .and_then(Value::as_str)
                                            .unwrap_or("")
                                            .to_string();
                                        r.insert("name".to_string(), json!(format!("{name}.{ns}")));
                                        Value::Object(r)
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        out.insert("filters".to_string(), Value::Array(refs));
                    }
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            for (j, fref) in obj
                .get("filters")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                for (t, field, advice) in portcullis_core::config::REFUSED_TYPE_FIELDS {
                    if *t == "rules" && fref.get(*field).is_some() {
                        self.report.push(format!(
                            "{place}: spec.rules[{i}].filters[{j}].{field}: refused: {advice}"
                        ));
                    }
                }
            }
            if precedence != 0 {
                self.report.push(format!(
                    "{place}: spec.rules[{i}].precedence: applied: rules ordered by it ({precedence})"
                ));
            }
            rules.push((precedence, Value::Object(out)));
        }
        rules
    }

    /// A `Mapping` with `bypass_auth: true` → a rule without filters, when a
    /// rule's `host` and `path` globs select exactly the requests Emissary
    /// would route to that Mapping, or fewer. Anything a rule cannot express
    /// (method, headers, query parameters, regexes, case-insensitive matching,
    /// another Mapping taking part of the prefix) imports no bypass: auth
    /// still applies (fail closed) and the report names the field.
    fn bypass_rule(&mut self, m: &Object, mappings: &[&Object]) -> Option<Value> {
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
    fn context_rule(
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
    if !default_ambassador_id(m) {
        refused
            .push("spec.ambassador_id: the Mapping may belong to another Ambassador".to_string());
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
    if host.contains(['?', '[', ']', '{', '}']) {
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

fn default_ambassador_id(m: &Object) -> bool {
    match m.spec.get("ambassador_id") {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s == "default",
        Some(Value::Array(ids)) => ids.iter().any(|i| i.as_str() == Some("default")),
        Some(_) => false,
    }
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

/// Imports the manifests in `paths`.
pub fn import(paths: &[String]) -> Result<Imported, String> {
    let mut report = Vec::new();
    let objects = read_objects(paths, &mut report)?;
    let mut importer = Importer {
        secrets: objects
            .iter()
            .filter(|o| o.kind == "Secret")
            .cloned()
            .collect(),
        var_sources: BTreeMap::new(),
        env: BTreeMap::new(),
        env_missing: Vec::new(),
        report,
    };
    for (i, s) in importer.secrets.iter().enumerate() {
        let later = importer.secrets.iter().skip(i + 1);
        if later
            .into_iter()
            .any(|t| t.name == s.name && t.namespace == s.namespace)
        {
            importer.report.push(format!(
                "{}: given more than once: the last one is used, as `kubectl apply` would leave it",
                s.place()
            ));
        }
    }
    let mut filters = Vec::new();
    let mut policy_rules: Vec<(i64, Value)> = Vec::new();
    let mut bypass = Vec::new();
    let mut auth_services = Vec::new();
    let mappings: Vec<&Object> = objects.iter().filter(|o| o.kind == "Mapping").collect();
    for o in &objects {
        match o.kind.as_str() {
            "Filter" => {
                if let Some(f) = importer.filter(o) {
                    filters.push(f);
                }
            }
            "FilterPolicy" => policy_rules.extend(importer.policy_rules(o)),
            "Mapping" => bypass.extend(importer.bypass_rule(o, &mappings)),
            "AuthService" => auth_services.push(o),
            "Secret" => {}
            other => importer.report.push(format!(
                "{}: skipped: a {other} has nothing for the plugin",
                o.place()
            )),
        }
    }
    if auth_services.len() > 1 {
        importer.report.push(
            "AuthService: several given: only the first is imported (Emissary round-robins between them; give its Envoy cluster several endpoints instead)".to_string(),
        );
    }
    let mut tail = Vec::new();
    let auth_name = auth_services.first().map(|a| a.qualified());
    for m in &mappings {
        tail.extend(importer.context_rule(m, &mappings, auth_name.as_deref()));
    }
    if let Some(a) = auth_services.first() {
        let mut spec = a.spec.as_object().cloned().unwrap_or_default();
        if spec.remove("ambassador_id").is_some() {
            importer
                .report
                .push(format!("{}: spec.ambassador_id: dropped", a.place()));
        }
        filters.push(json!({ "name": a.qualified(), "External": spec }));
        tail.push(json!({ "host": "*", "path": "*", "filters": [ { "name": a.qualified() } ] }));
        importer.report.push(format!(
            "{}: changed: External filter {:?}, run by a last catch-all rule (requests a FilterPolicy rule or bypass_auth takes do not reach it)",
            a.place(),
            a.qualified()
        ));
    }
    // Higher precedence first; a stable sort keeps manifest order for ties.
    policy_rules.sort_by_key(|(p, _)| std::cmp::Reverse(*p));
    let rules: Vec<Value> = bypass
        .into_iter()
        .chain(policy_rules.into_iter().map(|(_, r)| r))
        .chain(tail)
        .collect();
    Ok(Imported {
        config: json!({ "filters": filters, "rules": rules }),
        env: importer.env,
        env_missing: importer.env_missing,
        report: importer.report,
    })
}

/// Writes the configuration and the deployment pieces into `dir`.
pub fn write_out(imported: &Imported, dir: &Path) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config_text = serde_json::to_string_pretty(&imported.config).unwrap_or_default();
    let vars: Vec<&String> = imported
        .env
        .keys()
        .chain(imported.env_missing.iter())
        .collect();
    let mut written = Vec::new();
    let mut write = |name: &str, text: String, private: bool| -> Result<(), String> {
        let path = dir.join(name);
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        if private {
            // Created 0600, never readable by others even for a moment: a file
            // left from an earlier run (perhaps with a wider mode) is replaced.
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
                _ => {}
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            use std::io::Write as _;
            options
                .open(&path)
                .and_then(|mut file| file.write_all(text.as_bytes()))
                .map_err(fail)?;
        } else {
            std::fs::write(&path, text).map_err(fail)?;
        }
        written.push(path.display().to_string());
        Ok(())
    };
    write("portcullis.json", format!("{config_text}\n"), false)?;
    // The secret values: into the gateway's environment (e.g. `kubectl create
    // secret generic portcullis-env --from-env-file=secrets.env`).
    let mut env_file =
        String::from("# The Envoy VM environment Portcullis reads (fromEnv). Keep private.\n");
    for (k, v) in &imported.env {
        env_file.push_str(&format!("{k}={v}\n"));
    }
    for k in &imported.env_missing {
        env_file.push_str(&format!("# {k}=  (not in the given Secrets: fill in)\n"));
    }
    write("secrets.env", env_file, true)?;
    let host_keys: Vec<Value> = vars.iter().map(|v| json!(v)).collect();
    let envoy_vm = json!({
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "environment_variables": { "host_env_keys": host_keys },
        }
    });
    write(
        "envoy-vm-config.yaml",
        format!(
            "# Plain Envoy: merge into the wasm filter's plugin config; Envoy's own\n# environment must hold these variables (secrets.env).\n{}",
            serde_yaml_ng::to_string(&envoy_vm).map_err(|e| e.to_string())?
        ),
        false,
    )?;
    let istio_env: Vec<Value> = vars
        .iter()
        .map(|v| json!({ "name": v, "valueFrom": "HOST" }))
        .collect();
    let wasm_plugin = json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": { "name": "portcullis", "namespace": "istio-system" },
        "spec": {
            "selector": { "matchLabels": { "istio": "ingressgateway" } },
            "url": "oci://registry.example.com/portcullis:0.1.0",
            "phase": "AUTHN",
            "failStrategy": "FAIL_CLOSE",
            "vmConfig": { "env": istio_env },
            "pluginConfig": imported.config,
        }
    });
    write(
        "istio-wasmplugin.yaml",
        format!(
            "# Istio: the gateway pod's environment must hold the variables (secrets.env).\n# Each callout host needs its cluster: add `clusters` entries (outbound|PORT||HOST).\n{}",
            serde_yaml_ng::to_string(&wasm_plugin).map_err(|e| e.to_string())?
        ),
        false,
    )?;
    let policy = json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyExtensionPolicy",
        "metadata": { "name": "portcullis", "namespace": "default" },
        "spec": {
            "targetRefs": [ { "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "eg" } ],
            "wasm": [ {
                "name": "portcullis",
                "rootID": "portcullis",
                "code": { "type": "Image", "image": { "url": "registry.example.com/portcullis:0.1.0" } },
                "failOpen": false,
                "env": { "hostKeys": vars },
                "config": imported.config,
            } ]
        }
    });
    write(
        "envoy-gateway-extensionpolicy.yaml",
        format!(
            "# Envoy Gateway: the Envoy pods' environment must hold the variables (secrets.env).\n# Each callout host needs its cluster: add `clusters` entries (httproute/NS/NAME/rule/N).\n{}",
            serde_yaml_ng::to_string(&policy).map_err(|e| e.to_string())?
        ),
        false,
    )?;
    Ok(written)
}
