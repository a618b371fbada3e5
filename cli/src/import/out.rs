//! `portcullis import --out DIR`: the configuration and the deployment pieces
//! (the VM environment for secrets, an Istio `WasmPlugin`, an Envoy Gateway
//! `EnvoyExtensionPolicy`).

use super::Imported;
use serde_json::{json, Value};
use std::path::Path;

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
