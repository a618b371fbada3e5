//! `docker-compose.yaml` runs the demo's topology: Docker cannot run here, so its
//! file is checked against what `scripts/demo` and `envoy.yaml` say: the services,
//! Envoy's mounts (envoy.yaml and the module where envoy.yaml looks for it), the
//! ports, and the testbed commands.

mod ship;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use portcullis_testbed::envoy::repo_root;
use serde_json::Value;
use ship::yaml_file;

fn compose() -> Value {
    yaml_file(&repo_root().join("docker-compose.yaml"))
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let s = &compose["services"][name];
    assert!(s.is_object(), "docker-compose.yaml has no service {name:?}");
    s
}

/// A service's `command` as a list of strings (list form or a plain string).
fn command(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        other => panic!("command should be a list or a string: {other}"),
    }
}

/// A service's bind mounts, container path → host path (short syntax
/// `SRC:TARGET[:ro]` or long syntax `{type: bind, source, target}`).
fn mounts(service: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for v in service["volumes"].as_array().into_iter().flatten() {
        match v {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                assert!(
                    parts.len() >= 2,
                    "volume {s:?} should be SOURCE:TARGET[:MODE]"
                );
                out.insert(parts[1].to_string(), parts[0].to_string());
            }
            Value::Object(_) => {
                out.insert(
                    v["target"].as_str().expect("volume target").to_string(),
                    v["source"].as_str().expect("volume source").to_string(),
                );
            }
            other => panic!("unexpected volume {other}"),
        }
    }
    out
}

/// `base` joined with `rel`, `.`/`..` resolved lexically.
fn resolve(base: &str, rel: &str) -> String {
    let mut out = PathBuf::from(base);
    for c in Path::new(rel).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            Component::RootDir => out = PathBuf::from("/"),
            Component::Normal(p) => out.push(p),
            Component::Prefix(_) => {}
        }
    }
    out.to_string_lossy().into_owned()
}

fn normalise_source(s: &str) -> String {
    s.trim_start_matches("./").to_string()
}

/// The Envoy demo configuration's facts: listener and admin ports, each cluster's
/// port, and the module file name.
struct EnvoyFacts {
    listener_ports: Vec<u64>,
    admin_port: u64,
    cluster_ports: BTreeMap<String, u64>,
    module: String,
}

fn envoy_facts() -> EnvoyFacts {
    let cfg = yaml_file(&repo_root().join("envoy.yaml"));
    let listeners = cfg["static_resources"]["listeners"]
        .as_array()
        .expect("listeners");
    let listener_ports = listeners
        .iter()
        .map(|l| {
            l["address"]["socket_address"]["port_value"]
                .as_u64()
                .expect("listener port")
        })
        .collect();
    let admin_port = cfg["admin"]["address"]["socket_address"]["port_value"]
        .as_u64()
        .expect("admin port");
    let mut cluster_ports = BTreeMap::new();
    for c in cfg["static_resources"]["clusters"]
        .as_array()
        .expect("clusters")
    {
        let name = c["name"].as_str().expect("cluster name").to_string();
        let endpoint = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
        let addr = &endpoint["address"]["socket_address"];
        assert_eq!(
            addr["address"], "127.0.0.1",
            "the demo's clusters are on 127.0.0.1 (so compose shares the host network)"
        );
        cluster_ports.insert(name, addr["port_value"].as_u64().expect("cluster port"));
    }
    let mut modules = Vec::new();
    find_key(&cfg, "filename", &mut modules);
    let module = modules
        .iter()
        .filter_map(|v| v.as_str())
        .find(|f| f.ends_with(".wasm"))
        .expect("envoy.yaml names the module with `filename:`")
        .to_string();
    EnvoyFacts {
        listener_ports,
        admin_port,
        cluster_ports,
        module,
    }
}

/// Every value under the key `key`, anywhere in `v`.
fn find_key<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == key {
                    out.push(child);
                }
                find_key(child, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|c| find_key(c, key, out)),
        _ => {}
    }
}

/// The `testbed` commands of scripts/demo, by subcommand, with repository paths
/// made relative (`"$ROOT/testdata/jwks.json"` → `testdata/jwks.json`) and the
/// shell's redirections dropped.
fn demo_testbed_commands() -> BTreeMap<String, Vec<String>> {
    let demo = fs::read_to_string(repo_root().join("scripts/demo")).expect("scripts/demo");
    let mut out = BTreeMap::new();
    for line in demo.lines() {
        let Some(rest) = line.trim().strip_prefix("\"$TESTBED\" ") else {
            continue;
        };
        let args: Vec<String> = rest
            .split_whitespace()
            .take_while(|w| !w.starts_with("2>") && !w.starts_with('>') && *w != "&")
            .map(|w| w.trim_matches('"').trim_start_matches("$ROOT/").to_string())
            .collect();
        if matches!(args.first().map(String::as_str), Some("echo" | "serve")) {
            out.insert(args[0].clone(), args);
        }
    }
    out
}

fn flag(args: &[String], name: &str) -> Option<String> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

#[test]
fn compose_has_the_demo_services_on_the_host_network() {
    let c = compose();
    let services = c["services"].as_object().expect("services");
    for name in ["envoy", "echo", "jwks", "idp", "authz"] {
        let s = service(&c, name);
        assert_eq!(
            s["network_mode"], "host",
            "{name}: envoy.yaml addresses 127.0.0.1, so every service uses the host network"
        );
        assert!(
            s.get("ports").is_none(),
            "{name}: `ports` has no effect with network_mode host"
        );
    }
    assert_eq!(services.len(), 5, "services: {:?}", services.keys());
}

#[test]
fn envoy_service_runs_envoy_1_40_with_envoy_yaml_and_the_module() {
    let c = compose();
    let envoy = service(&c, "envoy");
    let image = envoy["image"].as_str().expect("envoy image");
    assert!(
        image.starts_with("envoyproxy/envoy:") && image.contains("v1.40."),
        "Envoy 1.40 (as the suite runs): {image}"
    );
    let cmd = command(envoy);
    let config = flag(&cmd, "-c").expect("envoy -c CONFIG");
    let mounts = mounts(envoy);
    let workdir = envoy["working_dir"].as_str().unwrap_or("/");
    let config_abs = resolve(workdir, &config);
    assert_eq!(
        mounts.get(&config_abs).map(|s| normalise_source(s)),
        Some("envoy.yaml".to_string()),
        "the repository's envoy.yaml is mounted at {config_abs}: {mounts:?}"
    );
    // envoy.yaml names the module relative to Envoy's working directory.
    let facts = envoy_facts();
    let module_abs = resolve(workdir, &facts.module);
    assert_eq!(
        mounts.get(&module_abs).map(|s| normalise_source(s)),
        Some("dist/portcullis.wasm".to_string()),
        "envoy.yaml loads {:?}, so dist/portcullis.wasm is mounted at {module_abs}: {mounts:?}",
        facts.module
    );
    // The same Envoy flags as scripts/demo.
    let demo = fs::read_to_string(repo_root().join("scripts/demo")).expect("scripts/demo");
    let demo_line = demo
        .lines()
        .find(|l| l.trim_start().starts_with("\"$ENVOY\" -c"))
        .expect("scripts/demo runs \"$ENVOY\" -c");
    let continuation = demo
        .lines()
        .skip_while(|l| *l != demo_line)
        .nth(1)
        .unwrap_or("");
    let demo_flags: Vec<String> = format!("{} {}", demo_line.trim_end_matches('\\'), continuation)
        .split_whitespace()
        .skip(3) // "$ENVOY" -c "$ROOT/envoy.yaml"
        .take_while(|w| !w.starts_with("2>") && *w != "&")
        .map(str::to_string)
        .collect();
    let compose_flags: Vec<String> = cmd
        .iter()
        .skip_while(|a| *a != "-c")
        .skip(2)
        .cloned()
        .collect();
    assert_eq!(compose_flags, demo_flags, "Envoy's flags, compose vs demo");
}

#[test]
fn ports_match_envoy_yaml() {
    let facts = envoy_facts();
    // scripts/demo's topology: Envoy on 10000 (admin 9901), echo 8081, JWKS 8082.
    assert_eq!(facts.listener_ports, vec![10000]);
    assert_eq!(facts.admin_port, 9901);
    let c = compose();
    // Each testbed service listens on the port of the envoy.yaml cluster of its name.
    for name in ["echo", "jwks", "authz"] {
        let port: u64 = flag(&command(service(&c, name)), "--port")
            .unwrap_or_else(|| panic!("{name}: --port"))
            .parse()
            .expect("port number");
        assert_eq!(
            Some(&port),
            facts.cluster_ports.get(name),
            "{name} listens where envoy.yaml's cluster {name:?} points"
        );
    }
    // The IdP takes its port as the last argument, as scripts/demo runs it.
    let idp_port: u64 = command(service(&c, "idp"))
        .last()
        .and_then(|p| p.parse().ok())
        .expect("idp port");
    assert_eq!(Some(&idp_port), facts.cluster_ports.get("idp"));
    let demo = fs::read_to_string(repo_root().join("scripts/demo")).unwrap();
    assert!(
        demo.contains(&format!("testbed/idp/idp.mjs\" {idp_port}")),
        "scripts/demo runs the IdP on {idp_port}"
    );
    let mut clusters: Vec<&String> = facts.cluster_ports.keys().collect();
    clusters.sort();
    assert_eq!(
        clusters,
        vec!["authz", "echo", "idp", "jwks"],
        "every envoy.yaml cluster has its service"
    );
    // The compose header names the same ports.
    let text = fs::read_to_string(repo_root().join("docker-compose.yaml")).unwrap();
    for p in [10000, 9901, 8081, 8082, 8083, 8084] {
        assert!(text.contains(&format!("127.0.0.1:{p}")), "header names {p}");
    }
}

#[test]
fn testbed_services_run_the_demo_commands() {
    let c = compose();
    let demo = demo_testbed_commands();
    assert_eq!(
        demo.get("echo"),
        Some(&vec!["echo".to_string(), "--port".into(), "8081".into()])
    );
    assert_eq!(
        demo.get("serve"),
        Some(
            &[
                "serve",
                "--port",
                "8082",
                "--file",
                "testdata/jwks.json",
                "--path",
                "/jwks.json"
            ]
            .map(String::from)
            .to_vec()
        )
    );
    assert_eq!(Some(&command(service(&c, "echo"))), demo.get("echo"));
    let jwks = service(&c, "jwks");
    assert_eq!(Some(&command(jwks)), demo.get("serve"));
    // The JWK Set file the command names is the repository's, where it looks.
    let workdir = jwks["working_dir"].as_str().expect("jwks working_dir");
    let file = flag(&command(jwks), "--file").unwrap();
    assert_eq!(
        mounts(jwks)
            .get(&resolve(workdir, &file))
            .map(|s| normalise_source(s)),
        Some("testdata/jwks.json".to_string())
    );
    // Both run the testbed image built from docker/testbed.Dockerfile.
    for name in ["echo", "jwks"] {
        let s = service(&c, name);
        let dockerfile = s["build"]["dockerfile"].as_str().expect("build.dockerfile");
        let context = s["build"]["context"].as_str().expect("build.context");
        assert_eq!(context, ".");
        let text = fs::read_to_string(repo_root().join(dockerfile))
            .unwrap_or_else(|e| panic!("{dockerfile}: {e}"));
        assert!(
            text.contains("-p portcullis-testbed --bin testbed"),
            "{text}"
        );
        assert!(text.contains("ENTRYPOINT [\"testbed\"]"), "{text}");
        assert!(
            text.contains("WORKDIR /portcullis") && workdir == "/portcullis",
            "the image's working dir is the service's"
        );
    }
}
