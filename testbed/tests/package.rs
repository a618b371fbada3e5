//! `scripts/package`: the OCI image layout of the module, in the Wasm artifact
//! format Istio and Envoy Gateway pull. Packed twice to show it is deterministic,
//! then pushed with `skopeo` to a real registry (`docker-registry`, Debian's build
//! of the CNCF distribution registry) on 127.0.0.1 and pulled back, both with
//! skopeo and with plain registry API requests (what the gateways' fetchers do).
//!
//! skopeo and docker-registry are prerequisites: a missing one fails the test.

mod ship;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use portcullis_testbed::client;
use portcullis_testbed::envoy::{repo_root, wasm_path};
use serde_json::Value;
use sha2::{Digest, Sha256};
use ship::{kill_group, require_tool, run_ok, TempDir};

/// The workspace version, which tags the image.
const VERSION: &str = env!("CARGO_PKG_VERSION");
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
const WASM_LAYER_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const TITLE: &str = "org.opencontainers.image.title";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

fn sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn module() -> (PathBuf, Vec<u8>) {
    let path = wasm_path().unwrap_or_else(|e| panic!("{e}"));
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, bytes)
}

/// Runs `scripts/package --skip-build` on the built module, writing `out`.
fn package(wasm: &Path, out: &Path) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("scripts/package"))
        .arg("--skip-build")
        .arg("--wasm")
        .arg(wasm)
        .arg("--out")
        .arg(out);
    run_ok(cmd, COMMAND_TIMEOUT).stdout_str()
}

fn json(bytes: &[u8], what: &str) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{what} is not JSON: {e}"))
}

/// Reads a blob of an OCI layout, checking its size and that its name is its digest.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().expect("descriptor digest");
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("digest {digest} is not sha256"));
    let path = layout.join("blobs/sha256").join(hex);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        sha256(&bytes),
        digest,
        "{} has another digest",
        path.display()
    );
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(bytes.len() as u64),
        "size of {digest}"
    );
    bytes
}

/// The manifest, as bytes, of the image tagged [`VERSION`] in an OCI layout.
fn tagged_manifest(layout: &Path) -> (Value, Vec<u8>) {
    let layout_file = fs::read(layout.join("oci-layout")).expect("oci-layout");
    assert_eq!(
        json(&layout_file, "oci-layout")["imageLayoutVersion"],
        "1.0.0"
    );
    let index = json(
        &fs::read(layout.join("index.json")).expect("index.json"),
        "index.json",
    );
    assert_eq!(index["schemaVersion"], 2, "{index}");
    let manifests = index["manifests"].as_array().expect("index manifests");
    let tagged: Vec<&Value> = manifests
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == VERSION)
        .collect();
    assert_eq!(tagged.len(), 1, "one manifest tagged {VERSION}: {index}");
    let descriptor = tagged[0];
    assert_eq!(descriptor["mediaType"], MANIFEST_TYPE, "{index}");
    let bytes = blob(layout, descriptor);
    (descriptor.clone(), bytes)
}

/// Checks a manifest is the Wasm artifact (solo.io Wasm image spec, *oci* variant,
/// as Istio's and Envoy Gateway's fetchers read it) and returns its wasm layer.
fn check_manifest(manifest: &Value) -> Value {
    assert_eq!(manifest["schemaVersion"], 2, "{manifest}");
    assert_eq!(manifest["mediaType"], MANIFEST_TYPE, "{manifest}");
    assert_eq!(manifest["config"]["mediaType"], CONFIG_TYPE, "{manifest}");
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        VERSION
    );
    let layers = manifest["layers"].as_array().expect("layers");
    // Istio and Envoy Gateway accept this variant only with exactly two layers: the
    // runtime config and the module.
    assert_eq!(layers.len(), 2, "{manifest}");
    let wasm: Vec<&Value> = layers
        .iter()
        .filter(|l| l["mediaType"] == WASM_LAYER_TYPE)
        .collect();
    assert_eq!(wasm.len(), 1, "one wasm layer: {manifest}");
    assert_eq!(wasm[0]["annotations"][TITLE], "portcullis.wasm");
    let config: Vec<&Value> = layers
        .iter()
        .filter(|l| l["mediaType"] == CONFIG_TYPE)
        .collect();
    assert_eq!(config.len(), 1, "one runtime config layer: {manifest}");
    assert_eq!(config[0]["annotations"][TITLE], "runtime-config.json");
    assert_eq!(
        config[0]["digest"], manifest["config"]["digest"],
        "the config layer is the config"
    );
    wasm[0].clone()
}

fn check_runtime_config(bytes: &[u8]) {
    let config = json(bytes, "runtime config");
    assert_eq!(config["type"], "envoy_proxy", "{config}");
    assert_eq!(
        config["abiVersions"],
        serde_json::json!(["proxy_abi_version_0_2_1"]),
        "{config}"
    );
    assert_eq!(
        config["config"]["rootIds"],
        serde_json::json!(["portcullis"]),
        "{config}"
    );
}

/// Checks a whole layout; returns the manifest digest and bytes.
fn check_layout(layout: &Path, module: &[u8]) -> (String, Vec<u8>) {
    let (descriptor, manifest_bytes) = tagged_manifest(layout);
    let manifest = json(&manifest_bytes, "manifest");
    let wasm_layer = check_manifest(&manifest);
    let layer = blob(layout, &wasm_layer);
    assert!(
        layer == module,
        "the wasm layer ({} bytes) is not the module ({} bytes)",
        layer.len(),
        module.len()
    );
    check_runtime_config(&blob(layout, &manifest["config"]));
    (
        descriptor["digest"].as_str().unwrap().to_string(),
        manifest_bytes,
    )
}

/// Every file of a directory tree, relative path → bytes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.push((rel, fs::read(&p).expect("read")));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn package_writes_the_wasm_artifact_layout_deterministically() {
    let (wasm, module) = module();
    let tmp = TempDir::new("package");
    let printed = package(&wasm, &tmp.join("a/oci"));
    let (digest, _) = check_layout(&tmp.join("a/oci"), &module);
    assert!(
        printed.contains(&digest) && printed.contains(&format!("{} bytes", module.len())),
        "scripts/package should print the manifest digest and the module size:\n{printed}"
    );
    // Packed again: the same files, byte for byte, so the same digests.
    package(&wasm, &tmp.join("b/oci"));
    let a = tree(&tmp.join("a/oci"));
    let b = tree(&tmp.join("b/oci"));
    assert_eq!(
        a.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        b.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>()
    );
    assert!(a == b, "two packings of one module differ");
    assert_eq!(a.len(), 5, "oci-layout, index.json and three blobs");
}

/// A `docker-registry` on 127.0.0.1 with its storage in a temp dir; killed on Drop.
struct Registry {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let bin = require_tool("docker-registry", "docker-registry");
        let mut last_error = String::new();
        for attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let dir = dir.join(format!("registry-{attempt}"));
            fs::create_dir_all(dir.join("storage")).expect("registry dir");
            let config = dir.join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                     http:\n  addr: 127.0.0.1:{port}\n  secret: portcullis-test\n",
                    dir.join("storage").display()
                ),
            )
            .expect("write registry config");
            let log = fs::File::create(dir.join("registry.log")).expect("registry log");
            let child = {
                use std::os::unix::process::CommandExt;
                Command::new(&bin)
                    .arg("serve")
                    .arg(&config)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("log"))
                    .stderr(log)
                    .process_group(0)
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
            };
            let mut registry = Registry { child, port, dir };
            match registry.wait_ready(Duration::from_secs(20)) {
                Ok(()) => return registry,
                Err(e) => last_error = e, // port taken meanwhile, or a slow start: retry
            }
        }
        panic!("docker-registry did not start: {last_error}")
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status}); log:\n{}", self.log()));
            }
            if let Ok(r) = client::try_request(self.port, "GET", "/v2/", &[], b"") {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after {timeout:?}; log:\n{}", self.log()));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        if thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- docker-registry log, last lines ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

fn skopeo(skopeo: &Path, args: &[&str]) -> Vec<u8> {
    let mut cmd = Command::new(skopeo);
    // The test's own trust policy: accept anything (nothing here is signed).
    cmd.arg("--insecure-policy").args(args);
    run_ok(cmd, COMMAND_TIMEOUT).stdout
}

#[test]
fn skopeo_pushes_to_a_registry_and_pulls_back_the_same_module() {
    let skopeo_bin = require_tool("skopeo", "skopeo");
    let (wasm, module) = module();
    let tmp = TempDir::new("registry");
    let layout = tmp.join("oci");
    package(&wasm, &layout);
    let (digest, manifest_bytes) = check_layout(&layout, &module);

    let registry = Registry::start(tmp.path());
    let remote = format!("docker://127.0.0.1:{}/portcullis:{VERSION}", registry.port);
    let local = format!("oci:{}:{VERSION}", layout.display());
    skopeo(
        &skopeo_bin,
        &["copy", "--dest-tls-verify=false", &local, &remote],
    );

    // The registry serves the very manifest that was packed (so the same digest).
    let raw = skopeo(
        &skopeo_bin,
        &["inspect", "--raw", "--tls-verify=false", &remote],
    );
    assert_eq!(sha256(&raw), digest, "the registry's manifest digest");
    assert!(raw == manifest_bytes, "the registry's manifest differs");
    let wasm_layer = check_manifest(&json(&raw, "pushed manifest"));

    // What a gateway's fetcher does: the manifest by tag, then the layer by digest.
    let m = client::get(
        registry.port,
        &format!("/v2/portcullis/manifests/{VERSION}"),
        &[("Accept", MANIFEST_TYPE)],
    );
    assert_eq!(m.status, 200, "{}", m.body_str());
    assert_eq!(m.header("content-type"), Some(MANIFEST_TYPE));
    assert_eq!(m.header("docker-content-digest"), Some(digest.as_str()));
    let layer_digest = wasm_layer["digest"].as_str().unwrap();
    let b = client::get(
        registry.port,
        &format!("/v2/portcullis/blobs/{layer_digest}"),
        &[],
    );
    assert_eq!(b.status, 200, "{}", b.body_str());
    assert!(
        b.body == module,
        "the layer served is not the module byte for byte"
    );

    // And pulled back into a new layout with skopeo.
    let pulled = tmp.join("pulled");
    let out = format!("oci:{}:{VERSION}", pulled.display());
    skopeo(
        &skopeo_bin,
        &["copy", "--src-tls-verify=false", &remote, &out],
    );
    let (pulled_digest, _) = check_layout(&pulled, &module);
    assert_eq!(pulled_digest, digest);
    drop(registry);
}
