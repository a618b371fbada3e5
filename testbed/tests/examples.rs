//! `examples/`: every YAML parses; the Portcullis configuration embedded in each
//! (Istio `WasmPlugin.spec.pluginConfig`, Envoy Gateway
//! `EnvoyExtensionPolicy.spec.wasm[].config`, an Envoy Wasm filter's
//! `configuration`) passes `portcullis check`; every plain Envoy configuration
//! passes `envoy --mode validate` with the built module (which runs the plugin's
//! configure step); and each callout's cluster is named the way its gateway names
//! clusters.

mod ship;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use portcullis_testbed::envoy::{envoy_bin, repo_root, wasm_path};
use serde_json::Value;
use ship::{run, run_ok, yaml_documents, TempDir};

/// Where the examples load the module from; the test points it at the built one.
const EXAMPLE_MODULE: &str = "/etc/envoy/portcullis.wasm";
/// The secrets the examples read with `fromEnv` (dummy values for the checks).
const ENV: &[(&str, &str)] = &[("PARTNER_KEY", "example-partner-key")];
const VERSION: &str = env!("CARGO_PKG_VERSION");
const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

fn examples_dir() -> PathBuf {
    repo_root().join("examples")
}

/// Every YAML file under examples/, sorted.
fn yaml_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&examples_dir(), &mut out);
    out.sort();
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo_root())
        .unwrap_or(p)
        .display()
        .to_string()
}

/// Every object anywhere in `v` (depth first), including `v`.
fn objects(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                out.push(v);
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}

/// A Portcullis configuration found in an example, and where.
struct Embedded {
    at: String,
    config: Value,
}

/// The Portcullis configurations embedded in one YAML document.
fn embedded_configs(doc: &Value, file: &str) -> Vec<Embedded> {
    let mut out = Vec::new();
    match doc["kind"].as_str() {
        Some("WasmPlugin") => out.push(Embedded {
            at: format!(
                "{file}: WasmPlugin {} spec.pluginConfig",
                doc["metadata"]["name"]
            ),
            config: doc["spec"]["pluginConfig"].clone(),
        }),
        Some("EnvoyExtensionPolicy") => {
            for (i, w) in doc["spec"]["wasm"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                out.push(Embedded {
                    at: format!(
                        "{file}: EnvoyExtensionPolicy {} spec.wasm[{i}].config",
                        doc["metadata"]["name"]
                    ),
                    config: w["config"].clone(),
                });
            }
        }
        _ => {}
    }
    for o in objects(doc) {
        if o["@type"] == WASM_FILTER {
            let text = o["config"]["configuration"]["value"]
                .as_str()
                .unwrap_or_else(|| {
                    panic!("{file}: a Wasm filter without a StringValue configuration")
                });
            let config = serde_json::from_str(text).unwrap_or_else(|e| {
                panic!("{file}: the Wasm filter's configuration is not JSON: {e}")
            });
            out.push(Embedded {
                at: format!("{file}: Wasm filter {} configuration", o["config"]["name"]),
                config,
            });
        }
    }
    out
}

/// The `portcullis` checker, built once (`cargo build -p portcullis-cli`).
fn portcullis_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(repo_root()).args([
            "build",
            "--quiet",
            "-p",
            "portcullis-cli",
            "--bin",
            "portcullis",
        ]);
        run_ok(cmd, Duration::from_secs(600));
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"));
        let bin = target.join("debug/portcullis");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// The value of the Portcullis `clusters` map for an authority, or the default
/// cluster name (the host without the port).
fn callout_cluster(config: &Value, url: &str) -> (String, String) {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("{url} has no scheme"));
    let authority = rest.split('/').next().unwrap().to_string();
    let cluster = config["clusters"][&authority]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| authority.split(':').next().unwrap().to_string());
    (authority, cluster)
}

/// Every remote callout URL of a configuration (JWT `jwksURI`).
fn callout_urls(config: &Value) -> Vec<String> {
    config["filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["JWT"]["jwksURI"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn every_example_yaml_parses_and_each_gateway_has_one() {
    let files = yaml_files();
    for f in &files {
        let docs = yaml_documents(f);
        assert!(!docs.is_empty(), "{} holds no YAML document", rel(f));
    }
    let names: Vec<String> = files.iter().map(|f| rel(f)).collect();
    for want in [
        "examples/istio/wasmplugin.yaml",
        "examples/envoy-gateway/envoyextensionpolicy.yaml",
        "examples/envoy/envoy.yaml",
        "examples/kgateway/kgateway.yaml",
        "examples/kgateway/authz-envoy.yaml",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    for dir in ["istio", "envoy-gateway", "kgateway", "envoy"] {
        let readme = examples_dir().join(dir).join("README.md");
        assert!(readme.is_file(), "{} missing", rel(&readme));
    }
}

#[test]
fn embedded_configs_pass_portcullis_check() {
    let tmp = TempDir::new("examples-check");
    let mut checked = Vec::new();
    for f in yaml_files() {
        let file = rel(&f);
        for doc in yaml_documents(&f) {
            for (i, e) in embedded_configs(&doc, &file).into_iter().enumerate() {
                assert!(e.config.is_object(), "{}: not an object", e.at);
                let path = tmp.join(&format!("{}-{i}.json", file.replace('/', "_")));
                fs::write(&path, serde_json::to_vec_pretty(&e.config).unwrap()).unwrap();
                let mut cmd = Command::new(portcullis_bin());
                cmd.arg("check").arg(&path).envs(ENV.iter().copied());
                let ran = run(cmd, Duration::from_secs(60));
                assert!(
                    ran.success,
                    "{}: portcullis check failed:\n{}{}",
                    e.at,
                    ran.stdout_str(),
                    ran.stderr
                );
                assert!(ran.stdout_str().contains(": ok:"), "{}", ran.stdout_str());
                checked.push(e.at);
            }
        }
    }
    // One per gateway: Istio, Envoy Gateway, plain Envoy, kgateway's authz Envoy.
    assert_eq!(checked.len(), 4, "{checked:#?}");
}

#[test]
fn plain_envoy_configs_pass_envoy_validate() {
    let envoy = envoy_bin().unwrap_or_else(|e| panic!("{e}"));
    let module = wasm_path().unwrap_or_else(|e| panic!("{e}"));
    let tmp = TempDir::new("examples-validate");
    let mut validated = Vec::new();
    for f in yaml_files() {
        let docs = yaml_documents(&f);
        if !docs.iter().any(|d| d.get("static_resources").is_some()) {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap();
        assert!(
            text.contains(EXAMPLE_MODULE),
            "{} should load the module from {EXAMPLE_MODULE}",
            rel(&f)
        );
        let cfg = tmp.join(&format!("{}.yaml", rel(&f).replace('/', "_")));
        fs::write(
            &cfg,
            text.replace(EXAMPLE_MODULE, &module.to_string_lossy()),
        )
        .unwrap();
        let mut cmd = Command::new(&envoy);
        cmd.args(["--mode", "validate", "--log-level", "warn", "-c"])
            .arg(&cfg)
            .envs(ENV.iter().copied());
        let ran = run(cmd, Duration::from_secs(120));
        assert!(
            ran.success,
            "{}: envoy --mode validate failed:\n{}{}",
            rel(&f),
            ran.stdout_str(),
            ran.stderr
        );
        // Every callout's cluster is defined in the same file, with TLS for https.
        let doc = &docs[0];
        let clusters = doc["static_resources"]["clusters"]
            .as_array()
            .expect("clusters");
        for e in embedded_configs(doc, &rel(&f)) {
            for url in callout_urls(&e.config) {
                let (_, name) = callout_cluster(&e.config, &url);
                let c = clusters
                    .iter()
                    .find(|c| c["name"] == name.as_str())
                    .unwrap_or_else(|| panic!("{}: no cluster {name:?} for {url}", e.at));
                if url.starts_with("https://") {
                    assert_eq!(
                        c["transport_socket"]["name"], "envoy.transport_sockets.tls",
                        "{}: cluster {name} serves {url}: TLS",
                        e.at
                    );
                }
            }
            // A crashed VM is replaced.
            let filter = objects(doc)
                .into_iter()
                .find(|o| o["@type"] == WASM_FILTER)
                .unwrap();
            assert_eq!(filter["config"]["failure_policy"], "FAIL_RELOAD");
        }
        validated.push(rel(&f));
    }
    assert_eq!(
        validated,
        vec![
            "examples/envoy/envoy.yaml".to_string(),
            "examples/kgateway/authz-envoy.yaml".to_string()
        ]
    );
}

#[test]
fn istio_example_pulls_the_image_and_names_clusters_the_istio_way() {
    let f = examples_dir().join("istio/wasmplugin.yaml");
    let docs = yaml_documents(&f);
    let plugin = docs
        .iter()
        .find(|d| d["kind"] == "WasmPlugin")
        .expect("a WasmPlugin");
    // A crashed VM is replaced (Istio 1.27+), not every request refused.
    assert_eq!(plugin["spec"]["failStrategy"], "FAIL_RELOAD");
    let url = plugin["spec"]["url"].as_str().expect("spec.url");
    assert!(
        url.starts_with("oci://") && url.ends_with(&format!("/portcullis:{VERSION}")),
        "{url}"
    );
    let config = &plugin["spec"]["pluginConfig"];
    let urls = callout_urls(config);
    assert!(!urls.is_empty());
    for u in urls {
        let (authority, cluster) = callout_cluster(config, &u);
        let host = authority.split(':').next().unwrap();
        let port = authority
            .split_once(':')
            .map(|(_, p)| p.to_string())
            .unwrap_or_else(|| {
                if u.starts_with("https://") {
                    "443"
                } else {
                    "80"
                }
                .into()
            });
        assert_eq!(cluster, format!("outbound|{port}||{host}"), "{u}");
        // The mesh knows the host, on that port.
        assert!(
            docs.iter().any(|d| d["kind"] == "ServiceEntry"
                && d["spec"]["hosts"]
                    .as_array()
                    .is_some_and(|h| h.iter().any(|x| x == host))
                && d["spec"]["ports"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["number"]
                        .as_u64()
                        .map(|n| n.to_string())
                        .as_deref()
                        == Some(port.as_str())))),
            "a ServiceEntry for {host}:{port}"
        );
    }
}

#[test]
fn envoy_gateway_example_pulls_the_image_and_names_clusters_the_eg_way() {
    let f = examples_dir().join("envoy-gateway/envoyextensionpolicy.yaml");
    let docs = yaml_documents(&f);
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "EnvoyExtensionPolicy")
        .expect("an EnvoyExtensionPolicy");
    let wasm = &policy["spec"]["wasm"][0];
    assert_eq!(wasm["code"]["type"], "Image");
    let url = wasm["code"]["image"]["url"].as_str().expect("image url");
    assert!(url.ends_with(&format!("/portcullis:{VERSION}")), "{url}");
    let config = &wasm["config"];
    for u in callout_urls(config) {
        let (_, cluster) = callout_cluster(config, &u);
        // httproute/NAMESPACE/NAME/rule/INDEX of a route in the same file.
        let parts: Vec<&str> = cluster.split('/').collect();
        assert!(
            parts.len() == 5 && parts[0] == "httproute" && parts[3] == "rule",
            "{cluster}"
        );
        let route = docs
            .iter()
            .find(|d| {
                d["kind"] == "HTTPRoute"
                    && d["metadata"]["namespace"] == parts[1]
                    && d["metadata"]["name"] == parts[2]
            })
            .unwrap_or_else(|| panic!("no HTTPRoute {}/{}", parts[1], parts[2]));
        let index: usize = parts[4].parse().expect("rule index");
        assert!(
            route["spec"]["rules"][index]["backendRefs"].is_array(),
            "rule {index} of {} routes to the IdP",
            parts[2]
        );
    }
}
