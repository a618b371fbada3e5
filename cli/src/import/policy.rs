//! `FilterPolicy` rules (every version, and Ambassador Pro's `Policy`) into
//! Portcullis `rules[]`: filter references qualified `name.namespace`,
//! Ambassador Pro's `public` read as AES read it.

use super::documents::Object;
use super::{go_keys, Importer, Provenance};
use serde_json::{json, Map, Value};

/// One imported rule: its `precedence`, the rule, and where it came from.
pub(super) type PolicyRule = (i64, Value, Provenance);

impl Importer {
    /// A `FilterPolicy`'s (or Pro `Policy`'s) rules, filter references qualified.
    pub(super) fn policy_rules(&mut self, p: &Object) -> Vec<PolicyRule> {
        let place = p.place();
        let mut rules = Vec::new();
        if p.kind == "Policy" {
            self.refuse(format!(
                "{place}: refused: Ambassador Pro 0.1's Policy authenticated every request its rules do not make public: true with the IdP its deployment named (AUTH_PROVIDER_URL, Tenants), which no document here gives; write an OAuth2 or JWT Filter for that IdP and a FilterPolicy naming it (public: true rules become rules with no filters)"
            ));
        }
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
                self.refuse(format!("{place}: spec.rules[{i}]: not a mapping"));
                continue;
            };
            let field = format!("spec.rules[{i}]");
            let mut rule = Value::Object(obj.clone());
            go_keys::normalize(&mut rule, &place, &field, &mut self.report);
            let Some(obj) = rule.as_object() else {
                continue;
            };
            if let Some(out) = self.policy_rule(p, &field, obj) {
                let precedence = obj.get("precedence").and_then(Value::as_i64).unwrap_or(0);
                if precedence != 0 {
                    self.report.push(format!(
                        "{place}: {field}.precedence: applied: rules ordered by it ({precedence})"
                    ));
                }
                let provenance = Provenance {
                    place: place.clone(),
                    field,
                    strip: None,
                };
                rules.push((precedence, Value::Object(out), provenance));
            }
        }
        rules
    }

    fn policy_rule(
        &mut self,
        p: &Object,
        field: &str,
        obj: &Map<String, Value>,
    ) -> Option<Map<String, Value>> {
        let place = p.place();
        let mut out = Map::new();
        let public = obj.get("public").and_then(Value::as_bool);
        let has_filters = obj
            .get("filters")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        for (k, v) in obj {
            match k.as_str() {
                "precedence" => {}
                "public" => {}
                // Ambassador Pro's `Policy`: the scope the IdP's token must carry.
                "scope" | "scopes" if !has_filters => {
                    if public != Some(true) {
                        self.report.push(format!(
                            "{place}: {field}.{k}: dropped with the rule's authentication (below)"
                        ));
                    }
                }
                "filters" => {
                    let refs = self.filter_refs(p, field, v);
                    let (internal, refs): (Vec<Value>, Vec<Value>) =
                        refs.into_iter().partition(|r| {
                            r.get("name")
                                .and_then(Value::as_str)
                                .is_some_and(|n| self.internal.iter().any(|i| i == n))
                        });
                    if !internal.is_empty() {
                        if refs.is_empty() {
                            self.report.push(format!(
                                "{place}: {field}: left out: it runs only Ambassador Pro's Internal filter"
                            ));
                            return None;
                        }
                        self.report.push(format!(
                            "{place}: {field}.filters: Ambassador Pro's Internal filter left out"
                        ));
                    }
                    out.insert("filters".to_string(), Value::Array(refs));
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        match (public, has_filters) {
            (Some(true), true) => {
                self.refuse(format!(
                    "{place}: {field}.public: refused: true (no authentication) beside filters that authenticate: say which it is, public: true without filters or the filters without public"
                ));
                return None;
            }
            (Some(true), false) => {
                out.insert("filters".to_string(), json!([]));
                self.report.push(format!(
                    "{place}: {field}.public: changed: true is a rule with no filters (the requests it matches pass unauthenticated)"
                ));
            }
            (Some(false), false) => {
                self.refuse(format!(
                    "{place}: {field}.public: refused: false asks for authentication by the IdP Ambassador Pro's deployment named (AUTH_PROVIDER_URL, a Tenant), which no document here gives; write an OAuth2 or JWT Filter for that IdP and name it in this rule's filters"
                ));
                return None;
            }
            (Some(false), true) => self.report.push(format!(
                "{place}: {field}.public: dropped: false, the filters authenticate"
            )),
            (None, _) => {}
        }
        Some(out)
    }

    /// A rule's filter references with `name.namespace` names (a missing
    /// `namespace` is the policy's); refused v1alpha1 fields are reported.
    fn filter_refs(&mut self, p: &Object, field: &str, v: &Value) -> Vec<Value> {
        let place = p.place();
        let refs = v.as_array().map(Vec::as_slice).unwrap_or_default();
        let mut out = Vec::new();
        for (j, r) in refs.iter().enumerate() {
            let mut r = r.as_object().cloned().unwrap_or_default();
            for (t, name, advice) in portcullis_core::config::REFUSED_TYPE_FIELDS {
                if *t == "rules" && r.contains_key(*name) {
                    self.refuse(format!(
                        "{place}: {field}.filters[{j}].{name}: refused: {advice}"
                    ));
                }
            }
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
            out.push(Value::Object(r));
        }
        out
    }
}
