//! `portcullis check`: loads each configuration as the plugin would and says
//! what it found. A file (or standard input, `-`) may hold the configuration
//! itself, or the deployment object that carries it:
//!
//! - an Istio `WasmPlugin` (`extensions.istio.io`): `spec.pluginConfig`, its
//!   VM environment from `spec.vmConfig.env`;
//! - an Envoy Gateway `EnvoyExtensionPolicy` (`gateway.envoyproxy.io`): each
//!   `spec.wasm[].config`, the environment from `spec.wasm[].env`;
//! - an Envoy bootstrap (JSON or YAML): each `envoy.extensions.filters.http.wasm.v3.Wasm`
//!   filter's `config.configuration` (a `google.protobuf.StringValue` holding
//!   the JSON), the environment from `vm_config.environment_variables`; its
//!   `static_resources.clusters` are the clusters callouts may use.
//!
//! Multi-document YAML and `kind: List` are read whole; other Kubernetes
//! objects beside these are skipped and named. An AES/Emissary manifest is
//! pointed to `portcullis import`.

use crate::Failure;
use portcullis_core::compile::url::CalloutUrl;
use portcullis_core::config::Config;
use serde::Deserialize as _;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;

/// Envoy's wasm HTTP filter, as its `typed_config` names it.
const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// The value `check` lends a `fromEnv` variable the wrapper declares but this
/// process has no value for: 32 zero bytes in base64, so it loads wherever a
/// secret or a session key is expected.
const DECLARED_PLACEHOLDER: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// The discovery path an OAuth2 filter appends to its issuer (OIDC Discovery §4).
const WELL_KNOWN_PATH: &str = "/.well-known/openid-configuration";

/// A configuration found in an input, with where it came from.
struct Found {
    /// `WasmPlugin istio-system/portcullis spec.pluginConfig`, or empty for a
    /// file that is the configuration itself.
    label: String,
    /// The configuration JSON.
    bytes: Vec<u8>,
    /// The VM environment the wrapper declares: a value given inline, or `None`
    /// when it comes from the host (the pod, a Kubernetes Secret).
    env: BTreeMap<String, Option<String>>,
    /// The clusters the Envoy that runs it defines, when the input says
    /// (a bootstrap with static clusters and no CDS).
    clusters: Option<BTreeSet<String>>,
}

/// What one input held.
#[derive(Default)]
struct Scan {
    found: Vec<Found>,
    /// Objects looked at and skipped (`Service default/idp`).
    skipped: Vec<String>,
    /// Refusals that are not a configuration's errors (an AES manifest, a
    /// wrapper without a configuration).
    refused: Vec<String>,
}

/// Reads a configuration file as JSON bytes (YAML is converted), for `render`.
pub fn read_config(path: &str) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let yaml = path.ends_with(".yaml") || path.ends_with(".yml");
    if !yaml {
        return Ok(text.into_bytes());
    }
    let value: Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{path}: not valid YAML: {e}"))?;
    serde_json::to_vec(&value).map_err(|e| format!("{path}: {e}"))
}

/// Reads an input: a file, or standard input for `-`.
fn read_input(name: &str) -> Result<String, String> {
    if name == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("standard input: {e}"))?;
        Ok(text)
    } else {
        std::fs::read_to_string(name).map_err(|e| format!("{name}: {e}"))
    }
}

/// The documents of an input: JSON when it is named `.json` or starts like
/// JSON, else (multi-document) YAML. `None` for plain JSON: its bytes are the
/// configuration's, handed to the plugin's parser as they are so a syntax
/// error is reported as the plugin reports it.
fn documents(name: &str, text: &str) -> Result<Option<Vec<Value>>, String> {
    let json_like = name.ends_with(".json")
        || (!name.ends_with(".yaml")
            && !name.ends_with(".yml")
            && text.trim_start().starts_with(['{', '[']));
    if json_like {
        return Ok(match serde_json::from_str::<Value>(text) {
            Ok(value) if is_wrapper(&value) => Some(vec![value]),
            _ => None,
        });
    }
    let mut docs = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| format!("not valid YAML: {e}"))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(Some(docs))
}

/// Whether a JSON document is something other than the configuration itself.
fn is_wrapper(value: &Value) -> bool {
    value.get("apiVersion").is_some() || is_bootstrap(value)
}

fn is_bootstrap(value: &Value) -> bool {
    ["static_resources", "dynamic_resources", "admin", "node"]
        .iter()
        .any(|k| value.get(k).is_some())
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    let mut v = value;
    for key in path {
        match v.get(key) {
            Some(next) => v = next,
            None => return "",
        }
    }
    v.as_str().unwrap_or_default()
}

fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

impl Scan {
    fn document(&mut self, doc: &Value) {
        let api_version = text(doc, &["apiVersion"]);
        let kind = text(doc, &["kind"]);
        let object = format!(
            "{kind} {}{}",
            match text(doc, &["metadata", "namespace"]) {
                "" => String::new(),
                ns => format!("{ns}/"),
            },
            text(doc, &["metadata", "name"])
        );
        let group = api_version.split('/').next().unwrap_or_default();
        if api_version.is_empty() {
            if is_bootstrap(doc) {
                self.bootstrap(doc);
            } else {
                self.found.push(Found {
                    label: String::new(),
                    bytes: to_bytes(doc),
                    env: BTreeMap::new(),
                    clusters: None,
                });
            }
        } else if kind == "List" {
            for item in doc
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.document(item);
            }
        } else if group.ends_with("getambassador.io") || api_version.starts_with("ambassador/") {
            self.refused.push(format!(
                "{object} ({api_version}): an AES/Emissary manifest, not a Portcullis configuration: run `portcullis import FILE` to turn it into one"
            ));
        } else if group == "extensions.istio.io" && kind == "WasmPlugin" {
            self.wasm_plugin(doc, &object);
        } else if group == "gateway.envoyproxy.io" && kind == "EnvoyExtensionPolicy" {
            self.extension_policy(doc, &object);
        } else {
            self.skipped.push(object);
        }
    }

    fn wasm_plugin(&mut self, doc: &Value, object: &str) {
        let Some(config) = doc.get("spec").and_then(|s| s.get("pluginConfig")) else {
            self.refused.push(format!(
                "{object}: no spec.pluginConfig: Portcullis would load no configuration"
            ));
            return;
        };
        let mut env = BTreeMap::new();
        let vars = doc
            .pointer("/spec/vmConfig/env")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for var in vars {
            let name = text(var, &["name"]);
            // `valueFrom: INLINE` (the default) gives `value`; `HOST` the pod's.
            let value = match text(var, &["valueFrom"]) {
                "HOST" => None,
                _ => Some(text(var, &["value"]).to_string()),
            };
            env.insert(name.to_string(), value);
        }
        self.found.push(Found {
            label: format!("{object} spec.pluginConfig"),
            bytes: to_bytes(config),
            env,
            clusters: None,
        });
    }

    fn extension_policy(&mut self, doc: &Value, object: &str) {
        let modules = doc
            .pointer("/spec/wasm")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if modules.is_empty() {
            self.skipped.push(format!("{object} (no spec.wasm)"));
        }
        for (i, module) in modules.iter().enumerate() {
            let label = format!(
                "{object} spec.wasm[{i}] ({}) config",
                text(module, &["name"])
            );
            let Some(config) = module.get("config") else {
                self.refused.push(format!(
                    "{label}: absent: Portcullis would load no configuration"
                ));
                continue;
            };
            let env = module
                .pointer("/env/hostKeys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|k| (k.to_string(), None))
                .collect();
            self.found.push(Found {
                label,
                bytes: to_bytes(config),
                env,
                clusters: None,
            });
        }
    }

    fn bootstrap(&mut self, doc: &Value) {
        let cds = doc.pointer("/dynamic_resources/cds_config").is_some();
        let clusters = (!cds).then(|| {
            doc.pointer("/static_resources/clusters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| text(c, &["name"]).to_string())
                .collect::<BTreeSet<_>>()
        });
        let mut filters = Vec::new();
        wasm_filters(doc, "", &mut filters);
        // Other Proxy-Wasm modules may share the chain: when any filter names
        // Portcullis (its name, root_id or module file), only those are checked.
        let named = |(_, f): &(String, &Value)| f.to_string().contains("portcullis");
        if filters.iter().any(named) {
            filters.retain(named);
        }
        if filters.is_empty() {
            self.refused.push(
                "an Envoy bootstrap without a wasm HTTP filter (envoy.extensions.filters.http.wasm.v3.Wasm): nothing to check".to_string(),
            );
        }
        for (name, wasm) in filters {
            let label = format!("Envoy bootstrap: http filter {name:?} configuration");
            let Some(config) = wasm.get("config") else {
                self.refused.push(format!("{label}: no config"));
                continue;
            };
            let configuration = config.get("configuration");
            let json = match configuration {
                Some(Value::Object(any)) => any.get("value").and_then(Value::as_str),
                Some(Value::String(s)) => Some(s.as_str()),
                _ => None,
            };
            let Some(json) = json else {
                self.refused.push(format!(
                    "{label}: absent (a google.protobuf.StringValue holding the JSON is needed)"
                ));
                continue;
            };
            let mut env = BTreeMap::new();
            if let Some(vars) = config.pointer("/vm_config/environment_variables") {
                for key in vars
                    .get("host_env_keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    env.insert(key.to_string(), None);
                }
                for (key, value) in vars
                    .get("key_values")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    env.insert(key.clone(), value.as_str().map(str::to_string));
                }
            }
            self.found.push(Found {
                label,
                bytes: json.as_bytes().to_vec(),
                env,
                clusters: clusters.clone(),
            });
        }
    }
}

/// Every wasm HTTP filter config in a bootstrap, with the name of the filter
/// entry that holds it.
fn wasm_filters<'a>(value: &'a Value, name: &str, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(map) => {
            if map.get("@type").and_then(Value::as_str) == Some(WASM_FILTER_TYPE) {
                out.push((name.to_string(), value));
                return;
            }
            let name = map.get("name").and_then(Value::as_str).unwrap_or(name);
            map.values().for_each(|v| wasm_filters(v, name, out));
        }
        Value::Array(items) => items.iter().for_each(|v| wasm_filters(v, name, out)),
        _ => {}
    }
}

/// A callout URL of the configuration: where it is written and the URL.
struct Callout {
    path: String,
    url: String,
    /// `None` for a URL the configuration names; for an OAuth2 issuer, what
    /// the discovery document will add.
    also: Option<&'static str>,
}

/// The callout URLs a configuration names, with their JSON paths.
fn callouts(config: &Value) -> Vec<Callout> {
    let mut out = Vec::new();
    let filters = config
        .get("filters")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, filter) in filters.iter().enumerate() {
        let jwks = text(filter, &["JWT", "jwksURI"]).trim();
        if !jwks.is_empty() {
            out.push(Callout {
                path: format!("filters[{i}].JWT.jwksURI"),
                url: jwks.to_string(),
                also: None,
            });
        }
        let issuer = text(filter, &["OAuth2", "authorizationURL"]).trim();
        if !issuer.is_empty() {
            out.push(Callout {
                path: format!("filters[{i}].OAuth2.authorizationURL"),
                url: format!("{}{WELL_KNOWN_PATH}", issuer.trim_end_matches('/')),
                also: Some("and the token, userinfo and JWKS endpoints its discovery document names, each by its own authority"),
            });
        }
        let auth_service = text(filter, &["External", "auth_service"]).trim();
        if !auth_service.is_empty() {
            let url = if auth_service.contains("://") {
                auth_service.to_string()
            } else {
                format!("http://{auth_service}")
            };
            out.push(Callout {
                path: format!("filters[{i}].External.auth_service"),
                url,
                also: None,
            });
        }
    }
    out
}

/// Checks one configuration; prints what it found. `Err` holds its errors.
fn check_one(source: &str, found: &Found, warnings: &mut usize) -> Result<(), Vec<String>> {
    let label = match (source, found.label.as_str()) {
        (s, "") => s.to_string(),
        (s, l) => format!("{s}: {l}"),
    };
    let declared_unset: Vec<&String> = found
        .env
        .iter()
        .filter(|(name, value)| value.is_none() && std::env::var(name).is_err())
        .map(|(name, _)| name)
        .collect();
    let env = |name: &str| match found.env.get(name) {
        Some(Some(value)) => Some(value.clone()),
        Some(None) => {
            Some(std::env::var(name).unwrap_or_else(|_| DECLARED_PLACEHOLDER.to_string()))
        }
        None => std::env::var(name).ok(),
    };
    let config = Config::from_json_with_env(&found.bytes, &env).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{label}: {e}"))
            .collect::<Vec<_>>()
    })?;
    for notice in &config.notices {
        println!("{label}: note: {notice}");
    }
    for name in declared_unset {
        println!("{label}: note: environment variable {name}: declared for the VM, not set here: its value was not checked");
    }
    let mut errors = Vec::new();
    let value: Value = serde_json::from_slice(&found.bytes).unwrap_or_default();
    let clusters: BTreeMap<String, String> = value
        .get("clusters")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    for callout in callouts(&value) {
        let Ok(url) = CalloutUrl::parse(&callout.url, None) else {
            continue;
        };
        let cluster = url.cluster(&clusters);
        let how = if clusters.contains_key(&url.authority) {
            format!("clusters[{:?}]", url.authority)
        } else {
            "no clusters entry: the URL's host".to_string()
        };
        let also = callout.also.map(|a| format!(" ({a})")).unwrap_or_default();
        println!(
            "{label}: callout {}: {} → cluster {cluster:?} ({how}){also}",
            callout.path, callout.url
        );
        match &found.clusters {
            Some(defined) if !defined.contains(&cluster) => errors.push(format!(
                "{label}: {}: cluster {cluster:?} is not defined in this bootstrap's static_resources.clusters: the callout to {} would fail",
                callout.path, callout.url
            )),
            None if !clusters.contains_key(&url.authority) => {
                *warnings += 1;
                eprintln!(
                    "{label}: warning: {}: Envoy needs a cluster named {cluster:?} for {}, or a `clusters` entry for {:?}",
                    callout.path, callout.url, url.authority
                );
            }
            _ => {}
        }
    }
    if config.filters.is_empty() || config.rules.is_empty() {
        *warnings += 1;
        eprintln!(
            "{label}: warning: nothing is enforced: {}: every request passes",
            if config.filters.is_empty() && config.rules.is_empty() {
                "no filters and no rules"
            } else if config.rules.is_empty() {
                "no rules, so no filter runs"
            } else {
                "no filters"
            }
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    println!(
        "{label}: ok: {} filters, {} rules, {} remote JWK Sets",
        config.filters.len(),
        config.rules.len(),
        config.jwks_sources.len()
    );
    Ok(())
}

/// `portcullis check FILE...`: exit 1 when any configuration is refused or
/// an input holds none; 2 when an input cannot be read.
pub fn run(inputs: &[String]) -> Result<(), Failure> {
    let mut refused = Vec::new();
    let mut warnings = 0;
    for input in inputs {
        let source = if input == "-" { "(stdin)" } else { input };
        let text = read_input(input).map_err(Failure::Usage)?;
        let scan =
            match documents(input, &text).map_err(|e| Failure::Usage(format!("{source}: {e}")))? {
                None => Scan {
                    found: vec![Found {
                        label: String::new(),
                        bytes: text.into_bytes(),
                        env: BTreeMap::new(),
                        clusters: None,
                    }],
                    ..Scan::default()
                },
                Some(docs) => {
                    let mut scan = Scan::default();
                    docs.iter().for_each(|d| scan.document(d));
                    scan
                }
            };
        for object in &scan.skipped {
            println!("{source}: skipped {object}: not a Portcullis configuration");
        }
        refused.extend(scan.refused.iter().map(|r| format!("{source}: {r}")));
        if scan.found.is_empty() && scan.refused.is_empty() {
            refused.push(format!(
                "{source}: no Portcullis configuration found (looked for the configuration, an Istio WasmPlugin, an Envoy Gateway EnvoyExtensionPolicy, an Envoy bootstrap)"
            ));
        }
        for found in &scan.found {
            if let Err(errors) = check_one(source, found, &mut warnings) {
                refused.extend(errors);
            }
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Failure::Refused(refused.join("\n")))
    }
}
