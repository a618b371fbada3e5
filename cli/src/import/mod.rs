//! `portcullis import`: AES / Emissary manifests as their users hold them
//! (every API version and form, `kubectl get -o yaml` output, Helm output:
//! `documents.rs`, `unset.rs`) into a Portcullis configuration, as `CONFIG.md`
//! "Importing" describes.
//!
//! - A `Filter` becomes the `filters[]` entry `name.namespace` (AES's realm and
//!   reference name); `Plugin` filters cannot come (`filter.rs`).
//! - A Secret reference (`OAuth2.secretName`, `APIKey.keys[].secretName`) or a
//!   literal secret becomes `{"fromEnv": NAME}`: the value goes to the Envoy
//!   VM's environment, never into the configuration (`secrets.rs`).
//! - `FilterPolicy` rules from every policy are merged into one list, higher
//!   `precedence` first, equal ones in manifest order (`policy.rs`).
//! - A `Mapping` with `bypass_auth: true` becomes a rule with no filters, and
//!   its `auth_context_extensions` the External filter's `arguments`, only
//!   where host and path globs select exactly its requests (`mapping.rs`).
//! - The `AuthService`s become one External filter that a last catch-all rule
//!   runs; AES's own internal one is left out (`auth_service.rs`).
//! - One Ambassador at a time: resources whose `ambassador_id` does not name
//!   it (`default`, or `--ambassador-id`) are another install's, left out.
//!
//! Never a silent fail-open: authentication a manifest declares that cannot
//! be imported is refused (the command fails), and so is a result that runs
//! no filter where the manifests declare some. Every change and refusal names
//! its source document and field (`Filter default/sso: spec.OAuth2.secretName:
//! ...`), and so do the plugin's own errors and notices on the result
//! (`check.rs`).

mod auth_service;
mod check;
mod documents;
mod filter;
mod go_keys;
mod mapping;
mod out;
mod policy;
mod secrets;
mod unset;

pub use out::write_out;

use documents::Object;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What the import produced.
pub struct Imported {
    /// The Portcullis configuration (no plaintext secret).
    pub config: Value,
    /// Environment variable → secret value, for the Envoy VM.
    pub env: BTreeMap<String, String>,
    /// Environment variables the configuration reads whose value no given
    /// Secret held (the user supplies them).
    pub env_missing: Vec<String>,
    /// One line per changed or dropped field, with its place.
    pub report: Vec<String>,
    /// Authentication the manifests declare that could not be imported, one
    /// line each with its place and what to do: any makes the import fail.
    pub refused: Vec<String>,
    /// Where each `filters[]` entry came from.
    filter_sources: Vec<Provenance>,
    /// Where each `rules[]` entry came from.
    rule_sources: Vec<Provenance>,
}

/// The source of a result entry: its document (`Filter default/sso`) and the
/// field the entry stands for (`spec`, `spec.rules[1]`); `strip` is the part
/// of the result's path the source does not have (`External` for an
/// AuthService, whose spec is the External filter's body).
#[derive(Debug, Clone)]
struct Provenance {
    place: String,
    field: String,
    strip: Option<&'static str>,
}

impl Provenance {
    fn spec(o: &Object) -> Provenance {
        Provenance {
            place: o.place(),
            field: "spec".to_string(),
            strip: None,
        }
    }
}

struct Importer {
    secrets: Vec<Object>,
    /// Environment variable → the secret source it was given to, so that two
    /// sources never share a variable.
    var_sources: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    env_missing: Vec<String>,
    report: Vec<String>,
    refused: Vec<String>,
    /// Ambassador Pro `Internal` filters left out (`name.namespace`).
    internal: Vec<String>,
}

impl Importer {
    /// Records authentication that cannot be imported: the import fails.
    fn refuse(&mut self, line: String) {
        self.refused.push(line);
    }
}

/// `portcullis import FILE... [--out DIR]`: imports, reports on standard
/// error (each line `import: ...`), loads the result as the plugin would,
/// and writes it to standard output or, with `out`, into that folder.
/// Fails (with every reason) when authentication the manifests declare
/// cannot come or the result does not load.
pub fn run(files: &[String], out: Option<&str>, ambassador_id: &str) -> Result<(), String> {
    let imported = import(files, ambassador_id)?;
    for line in &imported.report {
        eprintln!("import: {line}");
    }
    for var in &imported.env_missing {
        eprintln!("import: environment variable {var}: no value in the given Secrets: set it in the Envoy VM's environment");
    }
    if !imported.refused.is_empty() {
        let mut lines: Vec<String> = imported
            .refused
            .iter()
            .map(|l| format!("import: {l}"))
            .collect();
        lines.push(format!(
            "import: nothing written: {} piece(s) of the authentication these manifests declare cannot be imported (above); a partial import would leave requests unchecked",
            imported.refused.len()
        ));
        return Err(lines.join("\n"));
    }
    match check::load(&imported) {
        Ok(notices) => {
            for notice in notices {
                eprintln!("import: note: {notice}");
            }
        }
        Err(errors) => {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| format!("import: the result does not load: {e}"))
                .collect();
            return Err(lines.join("\n"));
        }
    }
    match out {
        Some(dir) => {
            for path in write_out(&imported, std::path::Path::new(dir))? {
                eprintln!("import: wrote {path}");
            }
        }
        None => println!(
            "{}",
            serde_json::to_string_pretty(&imported.config).map_err(|e| e.to_string())?
        ),
    }
    Ok(())
}

/// Imports the manifests in `paths` for the Ambassador whose
/// `AMBASSADOR_ID` is `ambassador_id` (`default` unless one was set).
pub fn import(paths: &[String], ambassador_id: &str) -> Result<Imported, String> {
    let mut report = Vec::new();
    let objects = documents::read_objects(paths, &mut report)?;
    let objects = of_ambassador(objects, ambassador_id, &mut report);
    // No AES resource at all is a wrong file (a Helm values file, an empty
    // `kubectl get` of another namespace), never "no authentication": an
    // empty configuration would let every request through.
    if !objects
        .iter()
        .any(|o| documents::is_auth_kind(&o.kind) || o.kind == "Mapping")
    {
        let mut lines: Vec<String> = report.iter().map(|l| format!("import: {l}")).collect();
        lines.push(format!(
            "import: nothing written: {} hold(s) no Filter, FilterPolicy, AuthService or Mapping (of any getambassador.io or ambassador version) for the Ambassador {ambassador_id:?}: an empty configuration would check no request; give the manifests that configure authentication (`kubectl get filters,filterpolicies,authservices,mappings -A -o yaml`)",
            paths.join(", "),
        ));
        return Err(lines.join("\n"));
    }
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
        refused: Vec::new(),
        internal: Vec::new(),
    };
    for kind in [
        "Secret",
        "Filter",
        "FilterPolicy",
        "Policy",
        "AuthService",
        "Mapping",
    ] {
        importer.report_repeated(kind, &objects);
    }
    // Of two with one kind, name and namespace, the later, as `kubectl apply`
    // leaves it (and as Emissary keys its resources).
    let mut seen = std::collections::BTreeSet::new();
    let mut objects: Vec<Object> = objects
        .into_iter()
        .rev()
        .filter(|o| seen.insert((o.kind.clone(), o.namespace.clone(), o.name.clone())))
        .collect();
    objects.reverse();
    let mappings: Vec<&Object> = objects.iter().filter(|o| o.kind == "Mapping").collect();
    let mut filters: Vec<(Value, Provenance)> = Vec::new();
    let mut policy_rules = Vec::new();
    let mut bypass: Vec<(Value, Provenance)> = Vec::new();
    let mut auth_services = Vec::new();
    // Filters first: a policy rule needs to know which were left out.
    for o in objects.iter().filter(|o| o.kind == "Filter") {
        if let Some(f) = importer.filter(o) {
            filters.push((f, Provenance::spec(o)));
        }
    }
    for o in &objects {
        match o.kind.as_str() {
            "Filter" => {}
            "FilterPolicy" | "Policy" => policy_rules.extend(importer.policy_rules(o)),
            "Mapping" => bypass.extend(
                importer
                    .bypass_rule(o, &mappings)
                    .map(|r| (r, Provenance::spec(o))),
            ),
            "AuthService" => auth_services.push(o),
            "Secret" => {}
            other => importer.report.push(format!(
                "{}: skipped: a {other} has nothing for the plugin",
                o.place()
            )),
        }
    }
    let taken: Vec<String> = filters
        .iter()
        .filter_map(|(f, _)| f.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let auth = importer.auth_filter(&auth_services, &taken);
    let mut tail: Vec<(Value, Provenance)> = Vec::new();
    for m in &mappings {
        let rule = importer.context_rule(m, &mappings, auth.as_ref().map(|a| a.name.as_str()));
        tail.extend(rule.map(|r| (r, Provenance::spec(m))));
    }
    if let Some(a) = auth {
        filters.push((a.entry, a.provenance.clone()));
        tail.push((
            json!({ "host": "*", "path": "*", "filters": [ { "name": a.name } ] }),
            a.provenance,
        ));
    }
    // Higher precedence first; a stable sort keeps manifest order for ties.
    policy_rules.sort_by_key(|(p, _, _)| std::cmp::Reverse(*p));
    let rules: Vec<(Value, Provenance)> = bypass
        .into_iter()
        .chain(policy_rules.into_iter().map(|(_, r, s)| (r, s)))
        .chain(tail)
        .collect();
    if filters.is_empty()
        && importer.refused.is_empty()
        && rules.iter().any(|(r, _)| runs_filters(r))
    {
        let places: Vec<String> = rules
            .iter()
            .filter(|(r, _)| runs_filters(r))
            .map(|(_, p)| format!("{}: {}", p.place, p.field))
            .collect();
        importer.refuse(format!(
            "{}: runs filters, but no Filter or AuthService was given: give their manifests too",
            places.join(", ")
        ));
    }
    if !filters.is_empty() && !rules.iter().any(|(r, _)| runs_filters(r)) {
        importer.report.push(
            "no rule runs a filter: as in AES, where a Filter runs only where a FilterPolicy names it, the result checks no request; give the FilterPolicy manifests too".to_string(),
        );
    }
    let (filters, filter_sources): (Vec<Value>, Vec<Provenance>) = filters.into_iter().unzip();
    let (rules, rule_sources): (Vec<Value>, Vec<Provenance>) = rules.into_iter().unzip();
    Ok(Imported {
        config: json!({ "filters": filters, "rules": rules }),
        env: importer.env,
        env_missing: importer.env_missing,
        report: importer.report,
        refused: importer.refused,
        filter_sources,
        rule_sources,
    })
}

/// The objects that serve the Ambassador `ambassador_id`; the others are left
/// out and reported. A cluster's export holds the resources of every
/// Ambassador in it; the others' would widen or narrow this one's
/// authentication (a public rule of an internal gateway's FilterPolicy would
/// open this one).
fn of_ambassador(
    objects: Vec<Object>,
    ambassador_id: &str,
    report: &mut Vec<String>,
) -> Vec<Object> {
    let mut others: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let objects: Vec<Object> = objects
        .into_iter()
        .filter(|o| {
            let ambassador = documents::is_auth_kind(&o.kind) || o.kind == "Mapping";
            if ambassador && !o.serves(ambassador_id) {
                let ids = match o.spec.get("ambassador_id") {
                    Some(Value::String(id)) => id.clone(),
                    Some(Value::Array(ids)) => ids
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => "default".to_string(),
                };
                others.entry(ids).or_default().push(o.place());
                return false;
            }
            true
        })
        .collect();
    for (ids, places) in &others {
        report.push(format!(
            "{}: left out: spec.ambassador_id is {ids:?}, not {ambassador_id:?}, the Ambassador being imported: another Ambassador's resources (`--ambassador-id ID` imports those of the Ambassador whose AMBASSADOR_ID is ID, for its own Envoy)",
            places.join(", ")
        ));
    }
    objects
}

/// Whether a rule runs at least one filter.
fn runs_filters(rule: &Value) -> bool {
    rule.get("filters")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

impl Importer {
    /// Reports each `kind` object given more than once (same name and
    /// namespace): the last one is used, as `kubectl apply` would leave it.
    fn report_repeated(&mut self, kind: &str, objects: &[Object]) {
        let of_kind: Vec<&Object> = objects.iter().filter(|o| o.kind == kind).collect();
        for (i, s) in of_kind.iter().enumerate() {
            let later = of_kind.iter().skip(i + 1);
            if later
                .into_iter()
                .any(|t| t.name == s.name && t.namespace == s.namespace)
            {
                self.report.push(format!(
                    "{}: given more than once: the last one is used, as `kubectl apply` would leave it",
                    s.place()
                ));
            }
        }
    }
}
