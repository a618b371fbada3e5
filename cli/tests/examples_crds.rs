//! Every Kubernetes object in `examples/` validates against the
//! `openAPIV3Schema` of its upstream CRD, at the version the examples name
//! (kept in `testdata/crds/<project>-<version>/`, each with its source URL),
//! as `kubectl apply` checks it: unknown fields refused (kubectl's default
//! strict field validation), required fields, enums, patterns. Objects of the
//! Kubernetes core API (Service, Deployment, Secret, ...) have no CRD and are
//! only parsed. Each wrapper's Portcullis configuration passes
//! `portcullis check` as the file is written.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde::Deserialize as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// API groups whose CRDs are not kept here, and why.
const NOT_KEPT: &[(&str, &str)] = &[(
    "gateway.kgateway.dev",
    "kgateway's GatewayExtension and TrafficPolicy CRDs of v2.4 (the first release with \
     extAuth.httpService.authorizationResponse.headersToClient) were not available to this \
     project's source snapshots when the others were added",
)];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn files_under(dir: &Path, ext: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if ext.iter().any(|e| p.extension().is_some_and(|x| x == *e)) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `additionalProperties: false` on every object schema that lists its
/// properties and does not keep unknown fields: what kubectl's strict field
/// validation refuses.
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let keeps_unknown =
                map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && !keeps_unknown
            {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// The CRDs kept in testdata: (group, version, kind) → (schema, where).
fn crds() -> BTreeMap<(String, String, String), (Value, String)> {
    let mut out = BTreeMap::new();
    for file in files_under(&repo().join("testdata/crds"), &["yaml"]) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# Source: https://"),
            "{}: must start with its source URL",
            file.display()
        );
        for crd in yaml_documents(&file) {
            assert_eq!(
                crd["kind"],
                "CustomResourceDefinition",
                "{}",
                file.display()
            );
            let group = crd["spec"]["group"].as_str().unwrap().to_string();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
            for version in crd["spec"]["versions"].as_array().unwrap() {
                let mut schema = version["schema"]["openAPIV3Schema"].clone();
                // Every object has these, whether its CRD lists them or not.
                let properties = schema["properties"].as_object_mut().unwrap();
                for field in ["apiVersion", "kind"] {
                    properties
                        .entry(field)
                        .or_insert(serde_json::json!({"type": "string"}));
                }
                properties
                    .entry("metadata")
                    .or_insert(serde_json::json!({"type": "object"}));
                close_objects(&mut schema);
                let name = version["name"].as_str().unwrap().to_string();
                let at = file.strip_prefix(repo()).unwrap().display().to_string();
                out.insert((group.clone(), name, kind.clone()), (schema, at));
            }
        }
    }
    out
}

/// (file, document index, apiVersion, kind, name) of every example object.
fn example_objects() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for file in files_under(&repo().join("examples"), &["yaml", "yml"]) {
        let rel = file.strip_prefix(repo()).unwrap().display().to_string();
        for doc in yaml_documents(&file) {
            if doc.get("apiVersion").is_some() {
                out.push((rel.clone(), doc));
            }
        }
    }
    out
}

#[test]
fn every_example_object_validates_against_its_upstream_crd() {
    let crds = crds();
    let mut validated = Vec::new();
    let mut failures = Vec::new();
    for (file, doc) in example_objects() {
        let api_version = doc["apiVersion"].as_str().unwrap();
        let kind = doc["kind"].as_str().unwrap();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        // The Kubernetes core and apps APIs: built in, no CRD.
        if !group.contains('.')
            || group.ends_with(".k8s.io") && !group.starts_with("gateway.networking")
        {
            continue;
        }
        let key = (group.to_string(), version.to_string(), kind.to_string());
        if let Some((_, why)) = NOT_KEPT.iter().find(|(g, _)| *g == group) {
            eprintln!("{file}: {kind} {name}: not validated: {why}");
            continue;
        }
        let Some((schema, at)) = crds.get(&key) else {
            failures.push(format!(
                "{file}: {kind} {name} ({api_version}): no CRD kept in testdata/crds"
            ));
            continue;
        };
        let validator = jsonschema::validator_for(schema)
            .unwrap_or_else(|e| panic!("{at}: not a usable schema: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("  {}: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            validated.push(format!("{file}: {kind} {name} against {at}"));
        } else {
            failures.push(format!(
                "{file}: {kind} {name} against {at}:\n{}",
                errors.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{}", validated.join("\n"));
    for kind in ["WasmPlugin", "EnvoyExtensionPolicy", "HTTPRoute"] {
        assert!(
            validated.iter().any(|v| v.contains(&format!(": {kind} "))),
            "no {kind} validated: {validated:#?}"
        );
    }
}

/// A CRD schema kept here refuses what the API server refuses: the test above
/// would catch a misspelt field, a wrong enum value, a missing required field.
#[test]
fn the_kept_crds_refuse_what_the_api_server_refuses() {
    let crds = crds();
    let (schema, _) = &crds[&(
        "extensions.istio.io".to_string(),
        "v1alpha1".to_string(),
        "WasmPlugin".to_string(),
    )];
    let validator = jsonschema::validator_for(schema).unwrap();
    let plugin = |spec: Value| {
        serde_json::json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": {"name": "p"}, "spec": spec})
    };
    assert!(validator.is_valid(&plugin(
        serde_json::json!({"url": "oci://r/p:1", "failStrategy": "FAIL_RELOAD"})
    )));
    assert!(!validator.is_valid(&plugin(
        serde_json::json!({"url": "oci://r/p:1", "failStrategy": "FAIL_LATER"})
    )));
    assert!(!validator.is_valid(&plugin(
        serde_json::json!({"url": "oci://r/p:1", "pluginConfg": {}})
    )));
}

#[test]
fn every_example_wrapper_passes_portcullis_check_as_written() {
    let mut checked = 0;
    for file in files_under(&repo().join("examples"), &["yaml", "yml"]) {
        let docs = yaml_documents(&file);
        let wraps = docs.iter().any(|d| {
            matches!(
                d["kind"].as_str(),
                Some("WasmPlugin" | "EnvoyExtensionPolicy")
            ) || d.get("static_resources").is_some()
        });
        if !wraps {
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("check")
            .arg(&file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}:\n{stdout}{stderr}",
            file.display()
        );
        assert!(stdout.contains(": ok: "), "{}:\n{stdout}", file.display());
        // Every callout has its cluster: no warning.
        assert!(!stderr.contains("warning"), "{}:\n{stderr}", file.display());
        checked += 1;
    }
    assert!(checked >= 4, "{checked}");
}
