//! The Edge Stack article's OAuth2 example ("Modern Advanced Authentication
//! for Kubernetes API Gateways": a `Filter` with `authorizationURL`,
//! `audience: my-app`, `clientID`, `secret`, `protectedOrigins`, and a
//! `FilterPolicy` for `/protected-path/*` with `host: ""`), as a user pastes
//! it, imported by `portcullis import` and run through real Envoy (two
//! workers) against a real IdP (oidc-provider): the login goes through the
//! IdP with `audience=my-app` in its authorization request, and comes back to
//! the protected page; other paths need no login.

mod oauth2_common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use oauth2_common::*;
use portcullis_testbed::browserless::Agent;
use portcullis_testbed::envoy::repo_root;
use portcullis_testbed::idp::{Idp, IdpClient, IdpOptions};
use portcullis_testbed::{EchoUpstream, Envoy, EnvoyConfig};
use serde_json::{json, Value};

const CLIENT_ID: &str = "my-app-client";
const CLIENT_SECRET: &str = "my-app-client-secret";
const AES_CALLBACK: &str = "/.ambassador/oauth2/redirection-endpoint";

struct Fixture {
    _envoy: Envoy,
    idp: Idp,
    port: u16,
    _echo: EchoUpstream,
}

/// The `portcullis` command, built once per test run.
fn portcullis_bin() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "portcullis-cli"])
            .current_dir(repo_root())
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the portcullis command failed");
    });
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("debug/portcullis")
}

/// The article's manifests, its placeholders (`https://<idp-domain>/oauth2/default`,
/// `<your-client-id>`, `<your-client-secret>`, the origin) filled in.
fn manifests(issuer: &str, origin: &str) -> String {
    format!(
        r#"apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata:
  name: oauth-filter
  namespace: default
spec:
  OAuth2:
    authorizationURL: {issuer}
    audience: my-app
    clientID: {CLIENT_ID}
    secret: {CLIENT_SECRET}
    protectedOrigins:
    - origin: {origin}
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata:
  name: oauth-policy
  namespace: default
spec:
  rules:
  - host: ""
    path: /protected-path/*
    filters:
    - name: oauth-filter
"#
    )
}

/// `portcullis import --out`: the configuration, the VM environment and the report.
fn import(issuer: &str, origin: &str) -> (Value, Vec<(String, String)>, String) {
    let dir = std::env::temp_dir().join(format!("portcullis-aes-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("seed.yaml");
    std::fs::write(&manifest, manifests(issuer, origin)).unwrap();
    let out_dir = dir.join("out");
    let out = Command::new(portcullis_bin())
        .arg("import")
        .arg(&manifest)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "import failed: {stderr}");
    let config_text = std::fs::read_to_string(out_dir.join("portcullis.json")).unwrap();
    assert!(!config_text.contains(CLIENT_SECRET), "{config_text}");
    let env = std::fs::read_to_string(out_dir.join("secrets.env")).unwrap();
    let vars = env
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (serde_json::from_str(&config_text).unwrap(), vars, stderr)
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let echo = EchoUpstream::start();
        let port = portcullis_testbed::idp::free_port();
        let o = origin(port);
        let callback = format!("{o}{AES_CALLBACK}");
        let idp = Idp::start(IdpOptions {
            clients: vec![
                IdpClient::web(CLIENT_ID, CLIENT_SECRET, std::slice::from_ref(&o))
                    .redirect_uris(&[callback.as_str()]),
            ],
            ..IdpOptions::default()
        });
        let (mut plugin, vars, report) = import(idp.issuer(), &o);
        assert!(
            report.contains(
                "FilterPolicy default/oauth-policy: spec.rules[0].host: empty: read as unset"
            ),
            "{report}"
        );
        plugin["clusters"] = json!({ idp.authority(): "idp" });
        let mut cfg = EnvoyConfig::new(echo.port())
            .main_port(port)
            .plugin(plugin)
            .cluster("idp", idp.port());
        for (k, v) in &vars {
            cfg = cfg.vm_env(k, v);
        }
        let envoy = Envoy::try_start_workers(&cfg.build(), &[], 2).expect("Envoy starts");
        Fixture {
            _envoy: envoy,
            idp,
            port,
            _echo: echo,
        }
    })
}

fn url(path: &str) -> String {
    format!("{}{path}", origin(fx().port))
}

#[test]
fn the_login_asks_the_idp_for_the_articles_audience() {
    let f = fx();
    let mut agent = Agent::new();
    let r = agent.get(&url("/protected-path/page"));
    let loc = assert_login_redirect(&r, &f.idp);
    assert_eq!(loc.query_param("audience").as_deref(), Some("my-app"));
    assert_eq!(loc.query_param("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(loc.query_param("redirect_uri"), Some(url(AES_CALLBACK)));
}

#[test]
fn a_login_through_the_idp_reaches_the_protected_page() {
    let f = fx();
    let mut agent = Agent::new();
    let page = url("/protected-path/page");
    let login = f.idp.login_headless(&mut agent, &page, USER);
    assert_eq!(
        login.final_url,
        page,
        "hops: {:?}",
        login
            .hops
            .iter()
            .map(|h| format!("{} {} {}", h.method, h.response.status, h.url))
            .collect::<Vec<_>>()
    );
    let e = echoed(&agent.get(&page));
    assert!(e
        .header("authorization")
        .is_some_and(|v| v.starts_with("Bearer ")));
}

#[test]
fn a_path_the_policy_does_not_name_needs_no_login() {
    let mut agent = Agent::new();
    let r = agent.get(&url("/public/page"));
    assert_eq!(r.status, 200);
}
