//! An AES set-up moved to Portcullis with `portcullis import`, behaving as AES
//! documents it, through real Envoy (two workers) and a real IdP (oidc-provider):
//!
//! - the manifests (Filters in three namespaces, FilterPolicies with
//!   `precedence`, a `Mapping` with `bypass_auth`, the `Secret`s) are imported
//!   by the `portcullis` command; the configuration Envoy loads holds no secret,
//!   the VM environment does;
//! - login through AES's callback path, the only redirect URI the IdP knows;
//! - an application form POST carrying `_xsrf` reaches the upstream with its
//!   body and the XSRF cookie intact;
//! - logout by AES's form (POST `/.ambassador/oauth2/logout`, `_xsrf` in the
//!   body only), refused with a wrong `_xsrf`;
//! - APIKey keys from a Secret, `precedence` across policies, the JWT realm
//!   `name.namespace`, `bypass_auth`.

mod oauth2_common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use oauth2_common::*;
use portcullis_testbed::browserless::{Agent, Url};
use portcullis_testbed::client;
use portcullis_testbed::envoy::repo_root;
use portcullis_testbed::idp::{Idp, IdpClient, IdpOptions};
use portcullis_testbed::{EchoUpstream, Envoy, EnvoyConfig};
use serde_json::{json, Value};

const CLIENT_SECRET: &str = "web-app-secret";
const AES_CALLBACK: &str = "/.ambassador/oauth2/redirection-endpoint";
const AES_LOGOUT: &str = "/.ambassador/oauth2/logout";

struct Fixture {
    _envoy: Envoy,
    idp: Idp,
    port: u16,
    _echo: EchoUpstream,
}

/// The `portcullis` command, built once per test run (cargo does nothing when it
/// is up to date; a binary left from an older checkout is never used as is).
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

/// The AES manifests of this set-up, for an IdP at `issuer` and the site at `origin`.
fn manifests(issuer: &str, origin: &str) -> String {
    format!(
        r#"---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{ name: sso, namespace: web }}
spec:
  ambassador_id: ["default"]
  OAuth2:
    authorizationURL: "{issuer}"
    clientID: aes-web
    secretName: sso-client
    protectedOrigins:
    - origin: "{origin}"
    injectRequestHeaders:
    - name: X-User
      value: "{{{{ .idToken.Claims.sub }}}}"
---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{ name: partner-keys, namespace: api }}
spec:
  APIKey:
    httpHeader: X-API-Key
    keys:
    - secretName: partner-keys
---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{ name: jwt, namespace: auth }}
spec:
  ambassador_id: ["default"]
  JWT:
    jwksURI: "{issuer}/jwks"
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{ name: api, namespace: api }}
spec:
  rules:
  - host: "*"
    path: "/api/*"
    filters:
    - name: partner-keys
  - host: "*"
    path: "/api/admin/*"
    precedence: 10
    filters:
    - name: jwt
      namespace: auth
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{ name: web, namespace: web }}
spec:
  rules:
  - host: "*"
    path: "/app/*"
    filters:
    - name: sso
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{ name: health, namespace: default }}
spec:
  hostname: "*"
  prefix: /api/health/
  service: health:8080
  bypass_auth: true
---
# A GET-only bypass: a rule cannot say "GET only", so it is not imported and
# /api/catalog/ keeps the API key of /api/* for every method.
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{ name: catalog, namespace: api }}
spec:
  hostname: "*"
  prefix: /api/catalog/
  method: GET
  service: catalog:8080
  bypass_auth: true
---
apiVersion: v1
kind: Secret
metadata: {{ name: sso-client, namespace: web }}
stringData:
  oauth2-client-secret: {CLIENT_SECRET}
---
apiVersion: v1
kind: Secret
metadata: {{ name: partner-keys, namespace: api }}
data:
  acme: YWNtZS1rZXktMQ==
  globex: Z2xvYmV4LWtleS0y
"#
    )
}

/// Runs `portcullis import --out`; the configuration and the VM environment.
fn import(issuer: &str, origin: &str) -> (Value, Vec<(String, String)>) {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-aes-migration-{}-{}",
        std::process::id(),
        origin.rsplit(':').next().unwrap_or("")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("aes.yaml");
    std::fs::write(&manifest, manifests(issuer, origin)).unwrap();
    let out_dir = dir.join("out");
    let out = Command::new(portcullis_bin())
        .arg("import")
        .arg(&manifest)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "import failed: {stderr}");
    let config_text = std::fs::read_to_string(out_dir.join("portcullis.json")).unwrap();
    for secret in [CLIENT_SECRET, "acme-key-1", "globex-key-2"] {
        assert!(
            !config_text.contains(secret),
            "{secret} in the configuration"
        );
    }
    let env = std::fs::read_to_string(out_dir.join("secrets.env")).unwrap();
    let vars = env
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (serde_json::from_str(&config_text).unwrap(), vars)
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let echo = EchoUpstream::start();
        let port = portcullis_testbed::idp::free_port();
        let o = origin(port);
        // The IdP knows only AES's redirect URI, as an AES client registration does.
        let aes_callback = format!("{o}{AES_CALLBACK}");
        let idp = Idp::start(IdpOptions {
            clients: vec![
                IdpClient::web("aes-web", CLIENT_SECRET, std::slice::from_ref(&o))
                    .redirect_uris(&[aes_callback.as_str()]),
            ],
            ..IdpOptions::default()
        });
        let (mut plugin, vars) = import(idp.issuer(), &o);
        let mut clusters = serde_json::Map::new();
        clusters.insert(idp.authority(), json!("idp"));
        plugin["clusters"] = Value::Object(clusters);
        let mut cfg = EnvoyConfig::new(echo.port())
            .main_port(port)
            .plugin(plugin)
            .cluster("idp", idp.port());
        for (k, v) in &vars {
            cfg = cfg.vm_env(k, v);
        }
        let envoy = Envoy::start(&cfg.build());
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

fn logged_in(path: &str) -> Agent {
    let f = fx();
    let mut agent = Agent::new();
    let login = f.idp.login_headless(&mut agent, &url(path), USER);
    assert_eq!(
        login.final_url,
        url(path),
        "the login did not come back; hops: {:?}",
        login
            .hops
            .iter()
            .map(|h| format!("{} {} {}", h.method, h.response.status, h.url))
            .collect::<Vec<_>>()
    );
    // The callback was AES's path.
    assert!(
        login
            .hops
            .iter()
            .any(|h| h.url.starts_with(&url(AES_CALLBACK))),
        "no hop through {AES_CALLBACK}"
    );
    agent
}

/// The XSRF cookie of the imported filter `sso.web`.
fn xsrf_token(agent: &Agent) -> String {
    xsrf(agent, "sso.web")
}

#[test]
fn login_goes_through_the_aes_callback_path() {
    let f = fx();
    let mut agent = Agent::new();
    let r = agent.get(&url("/app/home"));
    let loc = assert_login_redirect(&r, &f.idp);
    assert_eq!(loc.query_param("redirect_uri"), Some(url(AES_CALLBACK)));
    let mut agent = logged_in("/app/home");
    let e = echoed(&agent.get(&url("/app/home")));
    assert_eq!(e.header("x-user"), Some(USER));
    assert!(e
        .header("authorization")
        .is_some_and(|v| v.starts_with("Bearer ")));
}

#[test]
fn an_application_form_with_xsrf_reaches_the_upstream_intact() {
    let mut agent = logged_in("/app/orders");
    let token = xsrf_token(&agent);
    let body = format!(
        "_xsrf={}&item=42&note=hello+world",
        portcullis_testbed::browserless::percent_encode(&token)
    );
    let r = agent.send(
        "POST",
        &url("/app/orders"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    let e = echoed(&r);
    assert_eq!(e.method, "POST");
    assert_eq!(e.body, body, "the form body changed on the way");
    // The application can compare the form's _xsrf with the cookie.
    let cookie = e.header("cookie").unwrap_or_default().to_string();
    assert!(
        cookie.contains(&format!("portcullis_xsrf.sso.web={token}")),
        "{cookie}"
    );
    assert_no_portcullis_cookies_upstream(&e);
}

#[test]
fn logout_by_the_aes_form_with_xsrf_in_the_body() {
    let f = fx();
    let mut agent = logged_in("/app/bye");
    let token = xsrf_token(&agent);
    let form = |xsrf: &str| {
        vec![
            ("realm".to_string(), "sso.web".to_string()),
            ("_xsrf".to_string(), xsrf.to_string()),
        ]
    };
    // A wrong _xsrf in the body: 403, still logged in.
    let r = agent.post_form(&url(AES_LOGOUT), &form("wrong"), &[]);
    assert_eq!(r.status, 403, "{}", r.body_str());
    assert_eq!(
        echoed(&agent.get(&url("/app/bye"))).header("x-user"),
        Some(USER)
    );
    // None at all: 403 too.
    let r = agent.post_form(&url(AES_LOGOUT), &[("realm".into(), "sso.web".into())], &[]);
    assert_eq!(r.status, 403, "{}", r.body_str());
    // The right one: cleared, and on to the IdP's end_session endpoint.
    let r = agent.post_form(&url(AES_LOGOUT), &form(&token), &[]);
    assert_eq!(r.status, 303, "{:?} {}", r.headers, r.body_str());
    let loc = Url::parse(r.header("location").expect("Location")).expect("absolute Location");
    let end = f.idp.discovery()["end_session_endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(format!("{}{}", loc.origin(), loc.path_only()), end);
    assert!(!has_session(&agent, "sso.web"), "{:?}", agent.cookies);
    let r = agent.get(&url("/app/bye"));
    assert_login_redirect(&r, &f.idp);
}

#[test]
fn apikey_keys_come_from_the_imported_secret() {
    let port = fx().port;
    for key in ["acme-key-1", "globex-key-2"] {
        let r = client::get(port, "/api/orders", &[("X-API-Key", key)]);
        assert_eq!(r.status, 200, "{key}: {}", r.body_str());
    }
    let r = client::get(port, "/api/orders", &[("X-API-Key", "acme-key-2")]);
    assert_eq!(r.status, 403);
    let r = client::get(port, "/api/orders", &[]);
    assert_eq!(r.status, 403);
}

#[test]
fn precedence_puts_the_admin_rule_first_and_the_realm_is_name_namespace() {
    let port = fx().port;
    // /api/admin/* (precedence 10) is written after /api/* but wins: the API
    // key alone does not open it.
    let r = client::get(port, "/api/admin/users", &[("X-API-Key", "acme-key-1")]);
    assert_eq!(r.status, 401, "{}", r.body_str());
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"jwt.auth\"")
    );
}

#[test]
fn bypass_auth_mappings_skip_every_filter() {
    let r = client::get(fx().port, "/api/health/ready", &[]);
    let e = echoed(&r);
    assert_eq!(e.path, "/api/health/ready");
}

#[test]
fn a_method_scoped_bypass_is_not_widened_to_every_method() {
    let port = fx().port;
    for method in ["GET", "POST", "DELETE"] {
        let r = client::request(port, method, "/api/catalog/items", &[], b"");
        assert_eq!(r.status, 403, "{method}: {}", r.body_str());
    }
    let r = client::get(port, "/api/catalog/items", &[("X-API-Key", "acme-key-1")]);
    assert_eq!(echoed(&r).path, "/api/catalog/items");
}

/// The realistic manifests in `testdata/aes-import` (three namespaces, Secrets,
/// precedence, an AuthService) imported, then loaded by `envoy --mode validate`,
/// which runs the plugin's configure step with the VM environment the import
/// wrote.
#[test]
fn imported_testdata_passes_envoy_validate() {
    use portcullis_testbed::envoy::{envoy_bin, wasm_path};
    let dir = std::env::temp_dir().join(format!("portcullis-aes-validate-{}", std::process::id()));
    let data = repo_root().join("testdata/aes-import");
    let mut cmd = Command::new(portcullis_bin());
    cmd.arg("import");
    for f in [
        "filters.yaml",
        "policies.yaml",
        "routing.yaml",
        "secrets.yaml",
    ] {
        cmd.arg(data.join(f));
    }
    let out = cmd.arg("--out").arg(dir.join("out")).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/portcullis.json")).unwrap())
            .unwrap();
    let env = std::fs::read_to_string(dir.join("out/secrets.env")).unwrap();
    // The callout hosts' clusters (the URL hosts, as without a `clusters` map).
    let mut cfg = EnvoyConfig::new(9)
        .plugin(config)
        .cluster("idp.example.com", 9)
        .cluster("auth.default", 9);
    for (k, v) in env
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
    {
        cfg = cfg.vm_env(k, v);
    }
    let yaml = cfg
        .build()
        .replace("{{WASM}}", &wasm_path().unwrap().to_string_lossy());
    let file = dir.join("envoy.yaml");
    std::fs::write(&file, yaml).unwrap();
    let ran = Command::new(envoy_bin().unwrap())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "envoy --mode validate failed:\n{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
}
