//! AES `Filter`s (and the External spec an `AuthService` shares) into
//! Portcullis `filters[]` entries: secrets out of the configuration, AES's
//! callback path kept, the fields of older releases carried as AES reads them.

use super::documents::Object;
use super::{go_keys, Importer};
use serde_json::{json, Map, Value};

/// AES's filter types, as `Filter.spec` names them.
const FILTER_TYPES: &[&str] = &["JWT", "OAuth2", "External", "APIKey", "Plugin", "Internal"];

/// AuthService fields Emissary turns into settings of the auth service's
/// Envoy cluster (which the user's Envoy configuration now holds).
const CLUSTER_FIELDS: &[&str] = &[
    "cluster_idle_timeout_ms",
    "cluster_max_connection_lifetime_ms",
    "connect_timeout_ms",
    "host_rewrite",
    "cluster",
];

/// The `include_body` Emissary configures for `allow_request_body: true`
/// (Emissary's `v3httpfilter.py`: 4096 bytes, partial bodies allowed).
const ALLOW_REQUEST_BODY: (u64, bool) = (4096, true);

impl Importer {
    /// A `Filter` → its `filters[]` entry, or `None` (reported, and recorded
    /// as authentication that could not come) when it cannot be imported.
    pub(super) fn filter(&mut self, f: &Object) -> Option<Value> {
        let place = f.place();
        let Some(spec) = f.spec.as_object() else {
            self.refuse(format!(
                "{place}: spec: missing: the Filter declares no filter type"
            ));
            return None;
        };
        let mut entry = Map::new();
        entry.insert("name".to_string(), json!(f.qualified()));
        let mut typed = false;
        // The v1alpha1 shape names its type in `type`; otherwise AES (Go)
        // reads `oauth2` as `OAuth2`.
        let v1alpha1 = spec.contains_key("type");
        for (key, value) in spec {
            let key = match FILTER_TYPES.iter().find(|t| t.eq_ignore_ascii_case(key)) {
                Some(t) if !v1alpha1 && *t != key => {
                    self.report.push(format!(
                        "{place}: spec.{key}: changed: read as {t}, as AES reads field names in any case"
                    ));
                    t.to_string()
                }
                _ => key.clone(),
            };
            let mut value = value.clone();
            if FILTER_TYPES.contains(&key.as_str()) {
                go_keys::normalize(&mut value, &place, &format!("spec.{key}"), &mut self.report);
            }
            let value = &value;
            match key.as_str() {
                "ambassador_id" => self.report.push(format!(
                    "{place}: spec.ambassador_id: dropped: one Portcullis configuration serves its Envoy filter chain"
                )),
                "JWT" => {
                    typed = true;
                    entry.insert(key.clone(), value.clone());
                }
                "External" => {
                    typed = true;
                    let body = self.external(&place, "spec.External", value);
                    entry.insert(key.clone(), Value::Object(body));
                }
                "OAuth2" => {
                    typed = true;
                    let body = self.oauth2(f, value);
                    entry.insert(key.clone(), body);
                }
                "APIKey" => {
                    typed = true;
                    let body = self.apikey(f, value);
                    entry.insert(key.clone(), body);
                }
                "Internal" => {
                    self.report.push(format!(
                        "{place}: left out: spec.Internal is Ambassador Pro's guard of its own /.ambassador-internal/ endpoints, which Portcullis does not serve; FilterPolicy rules that run only it are left out too"
                    ));
                    self.internal.push(f.qualified());
                    return None;
                }
                "Plugin" => {
                    self.refuse(format!(
                        "{place}: spec.Plugin: refused: AES Go plugins run inside AES's own process and have no Portcullis equivalent; run the plugin's logic as an HTTP or gRPC authorization service and import it as an External filter (spec.External, the AuthService fields)"
                    ));
                    return None;
                }
                "type" | "jwt" | "oauth2" | "apikey" | "external" | "plugin" => {
                    self.refuse(format!(
                        "{place}: spec.{key}: refused: the gateway.getambassador.io/v1alpha1 shape (AES 4 preview); write the getambassador.io/v3alpha1 one (JWT, OAuth2, APIKey, External)"
                    ));
                    return None;
                }
                other => {
                    entry.insert(other.to_string(), value.clone());
                }
            }
        }
        if !typed {
            self.refuse(format!(
                "{place}: spec: refused: no filter type (JWT, OAuth2, APIKey, External) in it"
            ));
            return None;
        }
        Some(Value::Object(entry))
    }

    /// An Emissary `AuthService` spec (or AES `External` filter) as the
    /// External filter reads it: `allow_request_body` (deprecated) becomes
    /// what Emissary made of it; the 0.x `allowed_headers` goes.
    pub(super) fn external(
        &mut self,
        place: &str,
        field: &str,
        value: &Value,
    ) -> Map<String, Value> {
        let mut body = value.as_object().cloned().unwrap_or_default();
        if let Some(allow) = body.remove("allow_request_body") {
            let allow = allow.as_bool() == Some(true);
            if allow && body.contains_key("include_body") {
                self.report.push(format!(
                    "{place}: {field}.allow_request_body: dropped: include_body is given, and Emissary ignores allow_request_body then"
                ));
            } else if allow {
                let (max_bytes, allow_partial) = ALLOW_REQUEST_BODY;
                body.insert(
                    "include_body".to_string(),
                    json!({ "max_bytes": max_bytes, "allow_partial": allow_partial }),
                );
                self.report.push(format!(
                    "{place}: {field}.allow_request_body: changed: include_body {{max_bytes: {max_bytes}, allow_partial: {allow_partial}}}, what Emissary configures for it"
                ));
            } else {
                self.report.push(format!(
                    "{place}: {field}.allow_request_body: dropped: false sends no body, the default"
                ));
            }
        }
        if let Some(Value::Array(headers)) = body.remove("allowed_headers") {
            let list = body
                .entry("allowed_authorization_headers".to_string())
                .or_insert_with(|| json!([]));
            if let Value::Array(list) = list {
                for h in headers {
                    if !list.contains(&h) {
                        list.push(h);
                    }
                }
            }
            self.report.push(format!(
                "{place}: {field}.allowed_headers: changed: added to allowed_authorization_headers (Ambassador 0.x's name: headers of the auth service's answer that reach the upstream request)"
            ));
        }
        if body.remove("ambassador_id").is_some() {
            self.report
                .push(format!("{place}: {field}.ambassador_id: dropped"));
        }
        if let Some(code) = body.get("status_on_error").and_then(Value::as_u64) {
            body.insert("status_on_error".to_string(), json!({ "code": code }));
            self.report.push(format!(
                "{place}: {field}.status_on_error: changed: {{code: {code}}} (Ambassador 0.x documented the bare status)"
            ));
        }
        if body.remove("retry_policy").is_some() {
            self.report.push(format!(
                "{place}: {field}.retry_policy: dropped: Portcullis makes one check per request; a failed check answers status_on_error (or passes with failure_mode_allow)"
            ));
        }
        for key in CLUSTER_FIELDS {
            if body.remove(*key).is_some() {
                self.report.push(format!(
                    "{place}: {field}.{key}: dropped: a setting of the Envoy cluster Emissary generated; set it on the auth service's Envoy cluster"
                ));
            }
        }
        body
    }

    fn oauth2(&mut self, f: &Object, value: &Value) -> Value {
        let place = f.place();
        let mut body = value.as_object().cloned().unwrap_or_default();
        // A JWTAssertion key is a PEM: its line breaks go to the environment
        // as `\n`, which the plugin reads back (an env file holds one line).
        let assertion = body
            .get("clientAuthentication")
            .and_then(|a| a.get("method"))
            .and_then(Value::as_str)
            == Some("JWTAssertion");
        let one_line = |v: Option<String>| {
            v.map(|v| {
                if assertion {
                    v.replace("\r\n", "\n").replace('\n', "\\n")
                } else {
                    v
                }
            })
        };
        if let Some(secret_name) = body.remove("secretName") {
            let namespace = body
                .remove("secretNamespace")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| f.namespace.clone());
            let secret_name = secret_name.as_str().unwrap_or("").to_string();
            let var = self.var("Secret", &namespace, &secret_name, "oauth2-client-secret");
            let value = one_line(
                self.secret(&namespace, &secret_name)
                    .and_then(|s| s.data.get("oauth2-client-secret"))
                    .cloned(),
            );
            self.bind(&var, value.as_ref());
            body.insert("secret".to_string(), json!({ "fromEnv": var }));
            self.report.push(format!(
                "{place}: spec.OAuth2.secretName: changed: secret {{\"fromEnv\": \"{var}\"}} (Secret {namespace}/{secret_name}, key oauth2-client-secret{})",
                if value.is_some() { "" } else { ": not given, supply the variable" }
            ));
        } else if body.remove("secretNamespace").is_some() {
            self.report.push(format!(
                "{place}: spec.OAuth2.secretNamespace: dropped: no secretName names a Secret"
            ));
        }
        if let Some(Value::String(s)) = body.get("secret") {
            let var = self.var("Filter", &f.namespace, &f.name, "oauth2-client-secret");
            let literal = one_line(Some(s.clone()));
            self.bind(&var, literal.as_ref());
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
}
