//! Reading manifests as AES users hold them: multi-document YAML (Helm's `...`
//! document end markers too), `kubectl get -o yaml` output (`List`, `status`,
//! `metadata.managedFields`), Kubernetes objects of every `getambassador.io`
//! version, flat `ambassador/v0`/`v1` documents without `metadata`, and the
//! `getambassador.io/config` annotation of a Service (Ambassador 0.x and 1.x),
//! whose string holds such flat documents. Each becomes an [`Object`] that
//! knows its source document (kind, namespace/name).

use super::unset;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The annotation Ambassador 0.x and 1.x read their configuration from.
const CONFIG_ANNOTATION: &str = "getambassador.io/config";

/// Bounds on what one import reads: manifests larger than this are not
/// configuration (and a YAML alias bomb stops here).
const MAX_DOCUMENTS: usize = 10_000;

/// One Ambassador resource (or Secret), as far as the import reads it.
#[derive(Debug, Clone)]
pub struct Object {
    pub kind: String,
    pub name: String,
    pub namespace: String,
    /// The resource's settings: `spec`, or a flat document's own fields
    /// (without `apiVersion`, `kind`, `name`, `namespace`), unset fields removed.
    pub spec: Value,
    /// Secrets: data key → value (decoded).
    pub data: BTreeMap<String, String>,
}

impl Object {
    /// The source document as a report names it: `Filter default/sso`.
    pub fn place(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    /// Whether the Ambassador whose `AMBASSADOR_ID` is `id` reads this
    /// resource: its `ambassador_id` (a string or a list; none: `default`)
    /// names `id`. AES marks what it stores as v3alpha1 for one Ambassador
    /// `--apiVersion-v3alpha1-only--ID`.
    pub fn serves(&self, id: &str) -> bool {
        let named = |v: &str| v.trim_start_matches("--apiVersion-v3alpha1-only--") == id;
        match self.spec.get("ambassador_id") {
            None | Some(Value::Null) => id == "default",
            Some(Value::String(s)) => named(s),
            Some(Value::Array(ids)) => ids.iter().any(|i| i.as_str().is_some_and(named)),
            Some(_) => false,
        }
    }

    /// The Portcullis filter name AES's `name` + `namespace` become.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// Where a document came from, for reports about documents without a name.
struct Origin<'a> {
    path: &'a str,
    /// `document N` or `Service ns/name: metadata.annotations...: document N`.
    within: String,
}

/// Reads every document of every file in `paths`; what cannot be read or
/// carries nothing for the plugin is reported.
pub fn read_objects(paths: &[String], report: &mut Vec<String>) -> Result<Vec<Object>, String> {
    let mut objects = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let docs = yaml_documents(&text).map_err(|e| format!("{path}: {e}"))?;
        for (i, doc) in docs.into_iter().enumerate() {
            let origin = Origin {
                path,
                within: format!("document {}", i + 1),
            };
            read_document(doc, "default", &origin, &mut objects, report)?;
        }
    }
    Ok(objects)
}

/// The documents of a YAML stream. A line `...` (a document end marker, as
/// Helm and Ambassador Cloud write) ends a document; the next one may start
/// without `---`, as `kubectl` reads it.
pub fn yaml_documents(text: &str) -> Result<Vec<Value>, String> {
    // A UTF-8 byte order mark (as Windows editors and PowerShell write) is
    // not content, as `kubectl` reads it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut normalized = String::with_capacity(text.len());
    for line in text.lines() {
        let bare = line.split(" #").next().unwrap_or(line).trim_end();
        if bare == "..." {
            normalized.push_str("---\n");
        } else {
            normalized.push_str(line);
            normalized.push('\n');
        }
    }
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(&normalized).enumerate() {
        if i >= MAX_DOCUMENTS {
            return Err(format!("more than {MAX_DOCUMENTS} documents"));
        }
        let invalid = |e: serde_yaml_ng::Error| format!("document {}: not valid YAML: {e}", i + 1);
        // Merge keys (`<<: *base`, as Helm charts and hand-written manifests
        // share settings) are applied, as `kubectl` applies them.
        let mut yaml = serde_yaml_ng::Value::deserialize(doc).map_err(invalid)?;
        yaml.apply_merge().map_err(invalid)?;
        let value = Value::deserialize(yaml).map_err(invalid)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn read_document(
    doc: Value,
    default_namespace: &str,
    origin: &Origin,
    objects: &mut Vec<Object>,
    report: &mut Vec<String>,
) -> Result<(), String> {
    // A YAML sequence of objects (as some tools and test fixtures write
    // them) reads like a `List`.
    if let Value::Array(items) = doc {
        for (j, item) in items.into_iter().enumerate() {
            let inner = Origin {
                path: origin.path,
                within: format!("{}: [{j}]", origin.within),
            };
            read_document(item, default_namespace, &inner, objects, report)?;
        }
        return Ok(());
    }
    let Value::Object(mut doc) = doc else {
        report.push(format!(
            "{}: {}: not a mapping: skipped",
            origin.path, origin.within
        ));
        return Ok(());
    };
    let kind = str_field(&doc, "kind");
    // `List` as kubectl prints it; `FilterList`, `MappingList`, ... as the
    // API server answers a list request (client libraries, curl, Lens).
    if kind == "List" || (kind.ends_with("List") && doc.get("items").is_some_and(Value::is_array)) {
        let items = match doc.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        for (j, item) in items.into_iter().enumerate() {
            let inner = Origin {
                path: origin.path,
                within: format!("{}: items[{j}]", origin.within),
            };
            read_document(item, default_namespace, &inner, objects, report)?;
        }
        return Ok(());
    }
    let api_version = str_field(&doc, "apiVersion");
    let metadata = doc.get("metadata").and_then(Value::as_object).cloned();
    let (name, namespace, flat) = match &metadata {
        Some(meta) => (
            str_field(meta, "name"),
            non_empty(str_field(meta, "namespace")).unwrap_or_else(|| default_namespace.into()),
            false,
        ),
        // Ambassador 0.x/1.x flat documents: `name` (and `namespace`) beside the settings.
        None => (
            str_field(&doc, "name"),
            non_empty(str_field(&doc, "namespace")).unwrap_or_else(|| default_namespace.into()),
            true,
        ),
    };
    if let Some(meta) = &metadata {
        read_annotation(meta, &kind, &name, &namespace, origin, objects, report)?;
    }
    if name.is_empty() {
        if is_auth_kind(&kind) {
            return Err(format!(
                "{}: {}: a {kind} without a name: its authentication cannot be imported (give metadata.name)",
                origin.path, origin.within
            ));
        }
        report.push(format!(
            "{}: {}: {} without a name: skipped",
            origin.path,
            origin.within,
            if kind.is_empty() { "a document" } else { &kind }
        ));
        return Ok(());
    }
    let place = format!("{kind} {namespace}/{name}");
    if is_ambassador_kind(&kind) && !is_ambassador_api(&api_version) {
        report.push(format!(
            "{place}: skipped: apiVersion {api_version:?} is not Ambassador's (getambassador.io, ambassador/v0, ambassador/v1)"
        ));
        return Ok(());
    }
    let written_by_cluster: Vec<&str> = [
        ("status", doc.contains_key("status")),
        (
            "metadata.managedFields",
            metadata
                .as_ref()
                .is_some_and(|m| m.contains_key("managedFields")),
        ),
    ]
    .into_iter()
    .filter_map(|(field, present)| present.then_some(field))
    .collect();
    if !written_by_cluster.is_empty() && is_ambassador_kind(&kind) {
        report.push(format!(
            "{place}: {}: dropped: written by the cluster, not configuration",
            written_by_cluster.join(", ")
        ));
    }
    let mut data = BTreeMap::new();
    if kind == "Secret" {
        read_secret_data(&doc, &place, &mut data, report);
    }
    let mut spec = if flat {
        let mut spec = doc.clone();
        for key in ["apiVersion", "kind", "name", "namespace", "metadata_labels"] {
            spec.remove(key);
        }
        Value::Object(spec)
    } else {
        doc.remove("spec").unwrap_or(Value::Null)
    };
    // Ambassador 0.x: authentication was the `Module` named `authentication`.
    let mut kind = kind;
    if kind == "Module" && name == "authentication" {
        spec = spec.get("config").cloned().unwrap_or(Value::Null);
        report.push(format!(
            "{place}: read as an AuthService (Ambassador 0.x configured authentication in this Module's config)"
        ));
        kind = "AuthService".to_string();
    }
    // Ambassador 0.x documented a flat AuthService with its settings under `config`.
    if kind == "AuthService" && spec.get("auth_service").is_none() {
        if let Some(config) = spec.get("config").filter(|c| c.is_object()).cloned() {
            report.push(format!(
                "{place}: config: read as the AuthService's settings (Ambassador 0.x's form)"
            ));
            spec = config;
        }
    }
    if is_ambassador_kind(&kind) {
        let place = format!("{kind} {namespace}/{name}");
        unset::prune(&mut spec, &place, report);
    }
    objects.push(Object {
        kind,
        name,
        namespace,
        spec,
        data,
    });
    Ok(())
}

/// The flat documents in an object's `getambassador.io/config` annotation.
fn read_annotation(
    meta: &Map<String, Value>,
    kind: &str,
    name: &str,
    namespace: &str,
    origin: &Origin,
    objects: &mut Vec<Object>,
    report: &mut Vec<String>,
) -> Result<(), String> {
    let Some(text) = meta
        .get("annotations")
        .and_then(|a| a.get(CONFIG_ANNOTATION))
        .and_then(Value::as_str)
    else {
        return Ok(());
    };
    let carrier = format!("{kind} {namespace}/{name}: metadata.annotations.{CONFIG_ANNOTATION}");
    let docs = yaml_documents(text).map_err(|e| format!("{}: {carrier}: {e}", origin.path))?;
    let before = objects.len();
    for (i, doc) in docs.into_iter().enumerate() {
        let inner = Origin {
            path: origin.path,
            within: format!("{carrier}: document {}", i + 1),
        };
        read_document(doc, namespace, &inner, objects, report)?;
    }
    let found: Vec<String> = objects
        .get(before..)
        .unwrap_or_default()
        .iter()
        .map(Object::place)
        .collect();
    report.push(format!(
        "{carrier}: read: {}",
        if found.is_empty() {
            "nothing".to_string()
        } else {
            found.join(", ")
        }
    ));
    Ok(())
}

fn read_secret_data(
    doc: &Map<String, Value>,
    place: &str,
    data: &mut BTreeMap<String, String>,
    report: &mut Vec<String>,
) {
    if let Some(d) = doc.get("data").and_then(Value::as_object) {
        for (k, v) in d {
            let decoded = v
                .as_str()
                .and_then(|s| STANDARD.decode(s.trim()).ok())
                .and_then(|b| String::from_utf8(b).ok());
            match decoded {
                Some(text) => {
                    data.insert(k.clone(), text);
                }
                None => report.push(format!("{place}: data.{k}: not base64 UTF-8 text: skipped")),
            }
        }
    }
    if let Some(d) = doc.get("stringData").and_then(Value::as_object) {
        for (k, v) in d {
            if let Some(s) = v.as_str() {
                data.insert(k.clone(), s.to_string());
            }
        }
    }
}

/// Kinds that declare authentication: a manifest holding one must yield some.
pub fn is_auth_kind(kind: &str) -> bool {
    matches!(kind, "Filter" | "FilterPolicy" | "AuthService" | "Policy")
}

/// Whether `api_version` is one Ambassador, Emissary, AES or Ambassador Pro
/// read (`getambassador.io/v3alpha1`, `v2`, `v1`, `v1beta2`, `v1beta1`, `v0`;
/// `ambassador/v0`, `ambassador/v1`; Pro's `stable.datawire.io`).
fn is_ambassador_api(api_version: &str) -> bool {
    let group = api_version.split('/').next().unwrap_or_default();
    group == "getambassador.io"
        || group.ends_with(".getambassador.io")
        || group == "ambassador"
        || group == "stable.datawire.io"
}

/// Kinds the import reads the settings of.
fn is_ambassador_kind(kind: &str) -> bool {
    is_auth_kind(kind) || kind == "Mapping"
}

fn str_field(map: &Map<String, Value>, key: &str) -> String {
    map.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_end_marker_ends_a_document() {
        let docs = yaml_documents("a: 1\n...\nb: 2\n...\n---\nc: 3\n").unwrap();
        assert_eq!(docs.len(), 3);
    }

    #[test]
    fn merge_keys_are_applied_and_a_byte_order_mark_is_not_content() {
        let docs = yaml_documents("\u{feff}a: &base\r\n  x: 1\r\nb:\r\n  <<: *base\r\n  y: 2\r\n")
            .unwrap();
        assert_eq!(
            docs,
            vec![serde_json::json!({"a": {"x": 1}, "b": {"x": 1, "y": 2}})]
        );
    }

    #[test]
    fn a_typed_list_reads_item_by_item() {
        let mut objects = Vec::new();
        let origin = Origin {
            path: "x.yaml",
            within: "document 1".into(),
        };
        let doc = serde_json::json!({"apiVersion": "getambassador.io/v3alpha1", "kind": "FilterList",
            "metadata": {"resourceVersion": ""}, "items": [{"apiVersion": "getambassador.io/v3alpha1",
            "kind": "Filter", "metadata": {"name": "jwt", "namespace": "web"},
            "spec": {"JWT": {"jwksURI": "https://idp/jwks"}}}]});
        read_document(doc, "default", &origin, &mut objects, &mut Vec::new()).unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].place(), "Filter web/jwt");
    }

    #[test]
    fn a_flat_document_keeps_its_settings_as_spec() {
        let mut objects = Vec::new();
        let mut report = Vec::new();
        let origin = Origin {
            path: "x.yaml",
            within: "document 1".into(),
        };
        let doc = serde_json::json!({"apiVersion": "ambassador/v1", "kind": "AuthService",
            "name": "authentication", "auth_service": "auth:3000", "path_prefix": ""});
        read_document(doc, "web", &origin, &mut objects, &mut report).unwrap();
        assert_eq!(objects[0].place(), "AuthService web/authentication");
        assert_eq!(
            objects[0].spec,
            serde_json::json!({"auth_service": "auth:3000"})
        );
    }
}
