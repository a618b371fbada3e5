//! The `portcullis` command as a user runs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

const AES_TOKEN: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIiwiZXh0cmEiOiJzbyBtdWNoIn0.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.";

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_every_error_with_its_path_and_fails() {
    let path = write(
        "bad.json",
        r#"{"filters":[{"name":"j","JWT":{"validAlgorithms":["none"],"leewayForExpiresAt":"5 sec"}}]}"#,
    );
    let (ok, _, err) = run(&["check", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains(r#"filters[0].JWT.leewayForExpiresAt: invalid duration "5 sec""#),
        "{err}"
    );

    let path = write(
        "many.json",
        r#"{"filters":[{"name":"k","APIKey":{"keys":[]}}],"rules":[{"path":"[","filters":[{"name":"x"}]}]}"#,
    );
    let (ok, _, err) = run(&["check", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("filters[0].APIKey.keys: at least one key is required"),
        "{err}"
    );
    assert!(err.contains("rules[0].path: invalid glob"), "{err}");
    assert!(
        err.contains(r#"rules[0].filters[0].name: unknown filter "x""#),
        "{err}"
    );
}

#[test]
fn check_accepts_yaml_and_reports_notices() {
    let path = write(
        "ok.yaml",
        "filters:\n- name: j\n  JWT:\n    validAlgorithms: [none]\n    insecureTLS: true\nrules:\n- host: '*'\n  path: /api/*\n  filters: [{name: j}]\n",
    );
    let (ok, out, err) = run(&["check", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("ok: 1 filters, 1 rules"), "{out}");
    assert!(out.contains("filters[0].JWT.insecureTLS: ignored"), "{out}");
}

#[test]
fn render_shows_what_the_aes_example_injects() {
    let path = write(
        "aes.json",
        r#"{"filters":[{"name":"example-jwt-filter","JWT":{"validAlgorithms":["none"],"injectRequestHeaders":[
            {"name":"X-Token-C-Iat","value":"{{ .token.Claims.iat }}"},
            {"name":"X-Token-C-Optional-Unset","value":"{{ if hasKey .token.Claims \"optional\" | not }}{{ doNotSet }}{{ end }}{{ .token.Claims.optional }}"},
            {"name":"X-UA","value":"{{ .httpRequestHeader.Get \"User-Agent\" }}"}]}}]}"#,
    );
    let (ok, out, err) = run(&[
        "render",
        path.to_str().unwrap(),
        "--filter",
        "example-jwt-filter",
        "--token",
        AES_TOKEN,
        "--header",
        "User-Agent: curl/7.66.0",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("x-token-c-iat: 1.516239022e+09\n"), "{out}");
    assert!(out.contains("x-ua: curl/7.66.0\n"), "{out}");
    assert!(!out.contains("x-token-c-optional-unset"), "{out}");

    let (ok, out, _) = run(&[
        "render",
        path.to_str().unwrap(),
        "--filter",
        "example-jwt-filter",
        "--token",
        AES_TOKEN,
        "--no-verify",
    ]);
    assert!(ok);
    assert!(
        out.contains("x-token-c-optional-unset: (not set: doNotSet)"),
        "{out}"
    );
}

#[test]
fn render_reports_a_refused_token() {
    let path = write(
        "strict.json",
        r#"{"filters":[{"name":"j","JWT":{"jwks":{"keys":[]},"injectRequestHeaders":[{"name":"X-A","value":"a"}]}}]}"#,
    );
    let (ok, _, err) = run(&[
        "render",
        path.to_str().unwrap(),
        "--filter",
        "j",
        "--token",
        AES_TOKEN,
    ]);
    assert!(!ok);
    assert!(err.contains("the token is refused (401)"), "{err}");
}

#[test]
fn schema_describes_every_filter_type_and_accepts_ignored_fields() {
    let (ok, out, err) = run(&["schema"]);
    assert!(ok, "{err}");
    let schema: serde_json::Value = serde_json::from_str(&out).expect("the schema is JSON");
    for top in ["clusters", "filters", "rules"] {
        assert!(schema["properties"][top].is_object(), "{top}");
    }
    let defs = &schema["$defs"];
    assert!(defs["FilterSpec"]["properties"]["JWT"].is_object());
    assert!(defs["JwtSpec"]["properties"]["jwksURI"].is_object());
    assert!(defs["JwtSpec"]["properties"]["leewayForExpiresAt"].is_object());
    assert!(defs["ExternalSpec"]["properties"]["allowed_authorization_headers"].is_object());
    assert!(defs["OAuth2Spec"]["properties"]["protectedOrigins"].is_object());
    assert!(defs["ApiKeySpec"]["properties"]["httpHeader"].is_object());
    assert!(defs["MtlsSpec"]["properties"]["allowedDNSNames"].is_object());
    // Unknown fields are errors, but AES/Emissary fields Envoy handles are not.
    assert_eq!(
        defs["JwtSpec"]["additionalProperties"],
        serde_json::json!(false)
    );
    assert!(
        defs["ExternalSpec"]["properties"]["ambassador_id"]["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("accepted and ignored"))
    );
    assert_eq!(
        defs["ExternalSpec"]["required"],
        serde_json::json!(["auth_service"])
    );
}

fn manifests() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/aes-import");
    [
        "filters.yaml",
        "policies.yaml",
        "routing.yaml",
        "secrets.yaml",
    ]
    .iter()
    .map(|f| format!("{dir}/{f}"))
    .collect()
}

#[test]
fn import_writes_a_configuration_without_plaintext_secrets() {
    let files = manifests();
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    let (ok, out, err) = run(&args);
    assert!(ok, "{err}");
    for secret in ["web-app-secret", "acme-key-1", "globex-key-2"] {
        assert!(!out.contains(secret), "{secret} in the configuration");
    }
    let config: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = config["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "jwt.auth",
            "sso.web",
            "partner-keys.api",
            "ext-auth.default"
        ]
    );
    // bypass_auth first, then precedence 10, then the policies in order, then
    // the AuthService's catch-all.
    let paths: Vec<&str> = config["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/healthz/*", "/api/admin/*", "/api/*", "*", "*"]);
    assert_eq!(
        config["filters"][1]["OAuth2"]["callbackPath"],
        "/.ambassador/oauth2/redirection-endpoint"
    );
    assert_eq!(
        config["filters"][2]["APIKey"]["keys"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Each change with its place; the plugin's own notices too.
    for line in [
        "import: Filter web/sso: spec.OAuth2.secretName: changed",
        "import: Filter api/partner-keys: spec.APIKey.keys[0].secretName: changed",
        "import: Filter auth/jwt: spec.ambassador_id: dropped",
        "import: FilterPolicy api/api: spec.rules[1].precedence: applied",
        "import: Mapping default/health: spec.bypass_auth: changed",
        "import: note: AuthService default/ext-auth: spec.protocol_version: ignored",
    ] {
        assert!(err.contains(line), "{line}:\n{err}");
    }
}

#[test]
fn import_out_writes_the_deployment_pieces_and_check_accepts_them() {
    let dir = std::env::temp_dir().join(format!("portcullis-import-{}", std::process::id()));
    let files = manifests();
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--out", dir.to_str().unwrap()]);
    let (ok, out, err) = run(&args);
    assert!(ok, "{err}");
    assert!(out.is_empty(), "{out}");
    let env = std::fs::read_to_string(dir.join("secrets.env")).unwrap();
    assert!(
        env.contains("PORTCULLIS_API_PARTNER_KEYS_ACME=acme-key-1\n"),
        "{env}"
    );
    assert!(env.contains("PORTCULLIS_WEB_SSO_CLIENT_OAUTH2_CLIENT_SECRET=web-app-secret\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("secrets.env"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    for (file, needle) in [
        ("istio-wasmplugin.yaml", "valueFrom: HOST"),
        ("envoy-gateway-extensionpolicy.yaml", "hostKeys:"),
        ("envoy-vm-config.yaml", "host_env_keys:"),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.contains(needle), "{file}: {text}");
        assert!(
            text.contains("PORTCULLIS_API_PARTNER_KEYS_GLOBEX"),
            "{file}"
        );
        assert!(!text.contains("globex-key-2"), "{file}");
    }
    // `portcullis check` with the environment the VM would have.
    let mut check = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    check.arg("check").arg(dir.join("portcullis.json"));
    for line in env.lines().filter(|l| !l.starts_with('#')) {
        let (k, v) = line.split_once('=').unwrap();
        check.env(k, v);
    }
    let out = check.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok: 4 filters, 5 rules, 1 remote JWK Sets"),
        "{stdout}"
    );
}

#[test]
fn import_refuses_what_has_no_equivalent_and_names_it() {
    let path = write(
        "plugin.yaml",
        "apiVersion: getambassador.io/v3alpha1\nkind: Filter\nmetadata: {name: param, namespace: shop}\nspec:\n  Plugin: {name: param-filter}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Filter\nmetadata: {name: keys, namespace: shop}\nspec:\n  APIKey:\n    keys: [{secretName: missing}]\n",
    );
    let (ok, out, err) = run(&["import", path.to_str().unwrap()]);
    // Dropping the Plugin filter would drop authentication: nothing is written.
    assert!(!ok, "{out}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("import: Filter shop/param: spec.Plugin: refused: AES Go plugins run inside AES's own process"),
        "{err}"
    );
    assert!(err.contains("import it as an External filter"), "{err}");
    assert!(err.contains("Secret shop/missing not given"), "{err}");
    assert!(
        err.contains("environment variable PORTCULLIS_SHOP_MISSING_KEY: no value"),
        "{err}"
    );
}

#[test]
fn import_never_widens_a_bypass() {
    let (config, err) = import_testdata("bypass-conditions.yaml");
    // Only the Mappings a host + path glob selects exactly become bypass
    // rules; everything else still meets the AuthService's catch-all.
    assert_eq!(
        config["rules"],
        serde_json::json!([
            { "host": "*", "path": "/ping", "filters": [] },
            { "host": "docs.example.com", "path": "/docs/*", "filters": [] },
            { "host": "*", "path": "*", "filters": [ { "name": "auth.default" } ] }
        ])
    );
    for line in [
        "import: Mapping default/api-read: spec.method: a rule matches host and path only: refused: no bypass imported, auth still applies",
        "import: Mapping web/canary: spec.headers: a rule matches host and path only: refused",
        "import: Mapping web/debug: spec.query_parameters: a rule matches host and path only: refused",
        "import: Mapping web/open: spec.host_regex: a rule's host is a glob, not a regex: refused",
        "import: Mapping web/static: spec.prefix: Mapping web/static-private (as specific or of higher precedence, without bypass_auth) takes part of its requests: refused",
        "filter_metadata.portcullis.bypass_auth: true on the Envoy route",
        "import: Mapping web/ping: spec.bypass_auth: changed: a rule with no filters for host \"*\" path \"/ping\"",
    ] {
        assert!(err.contains(line), "{line}:\n{err}");
    }
}

#[test]
fn import_gives_each_secret_its_own_variable_in_a_private_file() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/aes-import/env-collisions.yaml"
    );
    let dir = std::env::temp_dir().join(format!("portcullis-collide-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // An earlier, world-readable secrets.env is replaced, not reused.
    std::fs::write(dir.join("secrets.env"), "OLD=1\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.join("secrets.env"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let (ok, _, err) = run(&["import", path, "--out", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        err.contains("Secret default/api-keys key k1: environment variable PORTCULLIS_DEFAULT_API_KEYS_K1 is already Secret default/api.keys key k1's"),
        "{err}"
    );
    let env = std::fs::read_to_string(dir.join("secrets.env")).unwrap();
    assert!(!env.contains("OLD=1"), "{env}");
    let vars: std::collections::BTreeMap<&str, &str> = env
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_once('=').unwrap())
        .collect();
    // Four secrets, four variables, each with its own value.
    let mut values: Vec<&str> = vars.values().copied().collect();
    values.sort_unstable();
    assert_eq!(
        values,
        [
            "internal-secret-1",
            "partner-secret-1",
            "team-a-key",
            "team-key"
        ],
        "{env}"
    );
    // Each filter reads the variable holding its own Secret's value.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("portcullis.json")).unwrap())
            .unwrap();
    let key_of = |filter: &str| {
        let f = config["filters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == filter)
            .unwrap();
        let var = f["APIKey"]["keys"][0]["value"]["fromEnv"].as_str().unwrap();
        vars[var]
    };
    assert_eq!(key_of("partners.default"), "partner-secret-1");
    assert_eq!(key_of("internal.default"), "internal-secret-1");
    assert_eq!(key_of("a.team-a"), "team-a-key");
    assert_eq!(key_of("b.team"), "team-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("secrets.env"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn import_turns_auth_context_extensions_into_external_arguments() {
    let (config, err) = import_testdata("context-extensions.yaml");
    assert_eq!(
        config["rules"],
        serde_json::json!([
            { "host": "shop.example.com", "path": "/billing/*",
              "filters": [ { "name": "authz.infra", "arguments": { "tenant": "shop", "tier": "gold" } } ] },
            { "host": "*", "path": "*", "filters": [ { "name": "authz.infra" } ] }
        ])
    );
    for line in [
        "import: Mapping shop/billing: spec.auth_context_extensions: changed: a rule for host \"shop.example.com\" path \"/billing/*\"",
        "import: Mapping shop/reports: spec.auth_context_extensions: spec.method: a rule matches host and path only: refused",
    ] {
        assert!(err.contains(line), "{line}:\n{err}");
    }
}

#[test]
fn check_refuses_old_aes_fields_with_what_to_write_instead() {
    let path = write(
        "old-aes.yaml",
        "filters:
- name: uaa
  OAuth2:
    authorizationURL: https://uaa.example.com
    clientID: ambassador
    secret: s
    protectedOrigins: [{origin: https://app.example.com}]
- name: jwt1
  JWT: {jwksURI: https://idp.example.com/jwks.json}
rules:
- host: '*'
  path: /api/*
  filters:
  - name: jwt1
    type: jwt
    jwtArguments: {scope: [read]}
",
    );
    let (ok, out, err) = run(&["check", path.to_str().unwrap()]);
    assert!(!ok, "{out}");
    for line in [
        "rules[0].filters[0].type: refused: this is the gateway.getambassador.io/v1alpha1 FilterPolicy shape",
        "rules[0].filters[0].jwtArguments: refused: this is the gateway.getambassador.io/v1alpha1 FilterPolicy shape: write the getambassador.io/v3alpha1 one, with these arguments under `arguments`",
    ] {
        assert!(err.contains(line), "{line}:\n{err}");
    }
    assert!(!err.contains("unknown field"), "{err}");
}

#[test]
fn check_ignores_ambassador_pro_state_ttl_with_a_notice() {
    let path = write(
        "state-ttl.yaml",
        "filters:
- name: login
  OAuth2:
    authorizationURL: https://idp.example.com
    stateTTL: 5m
    clientID: c
    secret: s
    protectedOrigins: [{origin: https://app.example.com}]
",
    );
    let (ok, out, err) = run(&["check", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("filters[0].OAuth2.stateTTL: ignored: an Ambassador Pro field"),
        "{out}"
    );
}

#[test]
fn check_notices_a_clusters_key_no_url_uses() {
    let path = write(
        "clusters.json",
        r#"{ "clusters": { "idp.example.com:443": "idp" },
             "filters": [ { "name": "jwt", "JWT": { "jwksURI": "https://idp.example.com/jwks.json" } } ] }"#,
    );
    let (ok, out, err) = run(&["check", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("note: clusters.\"idp.example.com:443\": no URL of the configuration has this authority (keys are matched exactly as the URL writes it: host, or host:port); a URL uses \"idp.example.com\""),
        "{out}"
    );
}

/// The first configuration README.md shows loads without a notice about its
/// `clusters`.
#[test]
fn the_readme_configuration_maps_the_cluster_its_urls_use() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find("```json\n").unwrap() + "```json\n".len();
    let end = start + readme[start..].find("```").unwrap();
    // Its placeholder digest filled in.
    let text = readme[start..end].replace("<hex digest>", &"0".repeat(64));
    let path = write("readme.json", &text);
    let (ok, out, err) = run(&["check", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("ok: 2 filters, 3 rules"), "{out}");
    assert!(!out.contains("clusters."), "{out}");
}

/// Runs the command with raw argument bytes; the outputs as bytes.
#[cfg(unix)]
fn run_bytes(args: &[&[u8]]) -> (bool, Vec<u8>, String) {
    use std::os::unix::ffi::OsStrExt as _;
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args.iter().map(|a| std::ffi::OsStr::from_bytes(a)))
        .output()
        .unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(unix)]
#[test]
fn render_keeps_a_non_utf8_header_value_byte_for_byte() {
    let path = write(
        "ua.json",
        r#"{"filters":[{"name":"j","JWT":{"validAlgorithms":["none"],"injectRequestHeaders":[
            {"name":"X-UA","value":"{{ .httpRequestHeader.Get \"User-Agent\" }}"}]}}]}"#,
    );
    let path = path.to_str().unwrap().as_bytes().to_vec();
    let (ok, out, err) = run_bytes(&[
        b"render",
        &path,
        b"--filter",
        b"j",
        b"--token",
        AES_TOKEN.as_bytes(),
        b"--header",
        b"User-Agent: caf\xe9",
    ]);
    assert!(ok, "{err}");
    // Latin-1 "café" as sent: 0xE9, not U+FFFD.
    let line: &[u8] = b"x-ua: caf\xe9\n";
    assert!(
        out.windows(line.len()).any(|w| w == line),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

#[cfg(unix)]
#[test]
fn a_non_utf8_argument_elsewhere_is_refused_without_a_panic() {
    for args in [
        vec![&b"check"[..], b"conf\xff.json"],
        vec![
            &b"render"[..],
            b"c.json",
            b"--filter",
            b"j\xff",
            b"--token",
            b"t",
        ],
        vec![&b"import"[..], b"m\xff.yaml"],
    ] {
        let (ok, _, err) = run_bytes(&args);
        assert!(!ok);
        assert!(err.contains("invalid UTF-8"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn import_names_a_v1alpha1_filter_policy_and_does_not_load_it() {
    let path = write(
        "v1alpha1.yaml",
        "apiVersion: gateway.getambassador.io/v1alpha1
kind: FilterPolicy
metadata: {name: p1, namespace: default}
spec:
  rules:
  - host: '*'
    path: /api/*
    filters:
    - name: jwt1
      type: jwt
      jwtArguments: {scope: [read]}
",
    );
    let (ok, out, err) = run(&["import", path.to_str().unwrap()]);
    // Dropping the rule would leave /api/* open: the import fails instead.
    assert!(!ok, "{out}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("import: FilterPolicy default/p1: spec.rules[0].filters[0].jwtArguments: refused: this is the gateway.getambassador.io/v1alpha1 FilterPolicy shape"),
        "{err}"
    );
}

/// Imports `manifest` (YAML text) with `--out` into a fresh folder named after
/// `name`: whether it succeeded, its report (stderr) and the `secrets.env` written.
fn import_to_folder(name: &str, manifest: &str) -> (bool, String, String) {
    let dir = std::env::temp_dir().join(format!("portcullis-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("in.yaml");
    std::fs::write(&path, manifest).unwrap();
    let (ok, _, err) = run(&[
        "import",
        path.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    let env = std::fs::read_to_string(dir.join("secrets.env")).unwrap_or_default();
    (ok, err, env)
}

/// A Filter `a/keys` whose keys come from Secret `a/b`, and then `secrets`.
fn api_key_filter_and(secrets: &str) -> String {
    format!(
        "apiVersion: getambassador.io/v3alpha1\nkind: Filter\nmetadata: {{name: keys, namespace: a}}\nspec:\n  APIKey:\n    httpHeader: x-api-key\n    keys: [{{secretName: b}}]\n{secrets}"
    )
}

#[test]
fn import_never_writes_a_secret_value_with_a_line_break_into_secrets_env() {
    let (ok, err, env) = import_to_folder(
        "multiline",
        &api_key_filter_and("---\napiVersion: v1\nkind: Secret\nmetadata: {name: b, namespace: a}\nstringData:\n  multi: \"line1\\nPORTCULLIS_EVIL=1\"\n  cr: \"v\\rPORTCULLIS_CR=1\"\n  good: plain-key\n"),
    );
    assert!(ok, "{err}");
    assert!(err.contains("holds a line break or NUL"), "{err}");
    assert!(!env.contains("PORTCULLIS_EVIL"), "{env}");
    assert!(!env.contains("PORTCULLIS_CR"), "{env}");
    assert!(!env.contains('\r'), "{env:?}");
    assert!(env.contains("=plain-key\n"), "{env}");
    // The left-out variables are listed for the user to fill in.
    assert_eq!(
        env.lines().filter(|l| l.contains("fill in")).count(),
        2,
        "{env}"
    );
}

#[test]
fn import_uses_the_last_of_two_secrets_with_one_name_and_says_so() {
    let secret = |v: &str| {
        format!("---\napiVersion: v1\nkind: Secret\nmetadata: {{name: b, namespace: a}}\nstringData: {{key: {v}}}\n")
    };
    let (ok, err, env) = import_to_folder(
        "twice",
        &api_key_filter_and(&format!("{}{}", secret("first"), secret("second"))),
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("given more than once: the last one is used"),
        "{err}"
    );
    assert!(
        env.contains("=second\n") && !env.contains("=first"),
        "{env}"
    );
}

/// `portcullis import` of `testdata/aes-import/<file>`, which must succeed: the
/// configuration written and the report (stderr).
fn import_testdata(file: &str) -> (serde_json::Value, String) {
    let path = format!(
        "{}/../testdata/aes-import/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let (ok, out, err) = run(&["import", &path]);
    assert!(ok, "{err}");
    (serde_json::from_str(&out).unwrap(), err)
}

/// Runs the command with `input` on its standard input: exit code, stdout, stderr.
fn run_stdin(args: &[&str], input: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn code(args: &[&str]) -> (i32, String, String) {
    run_stdin(args, "")
}

#[test]
fn every_subcommand_answers_help_and_the_exit_codes() {
    for sub in ["check", "render", "schema", "import"] {
        let (status, out, err) = code(&[sub, "--help"]);
        assert_eq!(status, 0, "{sub} --help: {err}");
        assert!(
            out.contains(&format!("Usage: portcullis {sub}")),
            "{sub}: {out}"
        );
        assert!(out.contains("Exit codes:"), "{sub}: {out}");
        // `schema --help` is help, not the schema.
        assert!(!out.contains("$schema"), "{sub}: {out}");
    }
    let (status, out, _) = code(&["--help"]);
    assert_eq!(status, 0);
    for sub in ["check", "render", "schema", "import"] {
        assert!(out.contains(sub), "{out}");
    }
    let (status, out, _) = code(&["help", "check"]);
    assert_eq!(status, 0);
    assert!(out.contains("Usage: portcullis check"), "{out}");
}

#[test]
fn version_prints_the_version_and_succeeds() {
    for args in [&["--version"][..], &["-V"], &["check", "--version"]] {
        let (status, out, err) = code(args);
        assert_eq!(status, 0, "{args:?}: {err}");
        assert!(out.starts_with("portcullis"), "{out}");
        assert!(
            out.trim()
                .ends_with(&format!(" {}", env!("CARGO_PKG_VERSION"))),
            "{out}"
        );
    }
}

#[test]
fn a_wrong_command_line_exits_2_and_a_refused_configuration_1() {
    assert_eq!(code(&["nope"]).0, 2);
    assert_eq!(code(&["check"]).0, 2);
    assert_eq!(code(&["render", "c.json"]).0, 2);
    assert_eq!(code(&["import", "--bogus", "x.yaml"]).0, 2);
    let (status, _, err) = code(&["check", "/nonexistent/portcullis.json"]);
    assert_eq!(status, 2, "{err}");
    let (status, _, err) = run_stdin(&["check", "-"], r#"{"filters":[{"name":"j","Jwt":{}}]}"#);
    assert_eq!(status, 1, "{err}");
}

#[test]
fn check_reads_standard_input_as_json_or_yaml() {
    let (status, out, err) = run_stdin(
        &["check", "-"],
        r#"{"filters":[{"name":"k","APIKey":{"keys":[{"sha256":"00"}]}}]}"#,
    );
    assert_eq!(status, 1, "{out}");
    assert!(
        err.contains("(stdin): filters[0].APIKey.keys[0].sha256"),
        "{err}"
    );

    let (status, out, err) = run_stdin(
        &["check", "-"],
        "filters:\n- name: j\n  JWT: {validAlgorithms: [none]}\nrules:\n- {host: '*', path: '/api/*', filters: [{name: j}]}\n",
    );
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("(stdin): ok: 1 filters, 1 rules"), "{out}");
}

#[test]
fn check_warns_that_an_empty_configuration_enforces_nothing() {
    let (status, out, err) = run_stdin(&["check", "-"], "{}");
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("ok: 0 filters, 0 rules"), "{out}");
    assert!(
        err.contains("warning: nothing is enforced: no filters and no rules: every request passes"),
        "{err}"
    );
    let (_, _, err) = run_stdin(
        &["check", "-"],
        r#"{"filters":[{"name":"j","JWT":{"validAlgorithms":["none"]}}]}"#,
    );
    assert!(
        err.contains("warning: nothing is enforced: no rules, so no filter runs"),
        "{err}"
    );
}

const CONFIG_JSON: &str = r#"{"clusters":{"idp.example.com":"idp"},
  "filters":[{"name":"jwt","JWT":{"jwksURI":"https://idp.example.com/jwks.json"}},
             {"name":"ext","External":{"auth_service":"auth:3000"}},
             {"name":"login","OAuth2":{"authorizationURL":"https://sso.example.com/realms/a/","clientID":"c","secret":{"fromEnv":"SSO_SECRET"},
                "protectedOrigins":[{"origin":"https://app.example.com"}]}}],
  "rules":[{"host":"*","path":"/api/*","filters":[{"name":"jwt"},{"name":"ext"}]},
           {"host":"*","path":"/app/*","filters":[{"name":"login"}]}]}"#;

#[test]
fn check_lists_each_callout_with_its_cluster_and_flags_those_without_an_entry() {
    let (status, out, err) = run_stdin(&["check", "-"], CONFIG_JSON);
    // SSO_SECRET is not set and nothing declares it: refused, as the plugin would.
    assert_eq!(status, 1, "{out}{err}");
    assert!(err.contains("SSO_SECRET"), "{err}");

    let config = CONFIG_JSON.replace(r#"{"fromEnv":"SSO_SECRET"}"#, r#""s3cret""#);
    let (status, out, err) = run_stdin(&["check", "-"], &config);
    assert_eq!(status, 0, "{err}");
    for line in [
        r#"callout filters[0].JWT.jwksURI: https://idp.example.com/jwks.json → cluster "idp" (clusters["idp.example.com"])"#,
        r#"callout filters[1].External.auth_service: http://auth:3000 → cluster "auth" (no clusters entry: the URL's host)"#,
        r#"callout filters[2].OAuth2.authorizationURL: https://sso.example.com/realms/a/.well-known/openid-configuration → cluster "sso.example.com" (no clusters entry: the URL's host) (and the token, userinfo and JWKS endpoints"#,
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    for line in [
        r#"warning: filters[1].External.auth_service: Envoy needs a cluster named "auth" for http://auth:3000, or a `clusters` entry for "auth:3000""#,
        r#"warning: filters[2].OAuth2.authorizationURL: Envoy needs a cluster named "sso.example.com""#,
    ] {
        assert!(err.contains(line), "{line}\n{err}");
    }
    assert!(!err.contains("filters[0]"), "{err}");
}

/// `config` as an Envoy bootstrap's wasm filter configuration, with `clusters`
/// defined statically.
fn bootstrap(config: &str, clusters: &[&str], yaml: bool) -> String {
    let value: serde_json::Value = serde_json::from_str(config).unwrap();
    let bootstrap = serde_json::json!({
      "static_resources": {
        "listeners": [{ "name": "main", "filter_chains": [{ "filters": [{
          "name": "envoy.filters.network.http_connection_manager",
          "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "main",
            "http_filters": [
              { "name": "portcullis", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": { "root_id": "portcullis",
                  "vm_config": { "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": "portcullis.wasm" } },
                    "environment_variables": { "host_env_keys": ["SSO_SECRET"] } },
                  "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": value.to_string() } } } },
              { "name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } } ] } }] }] }],
        "clusters": clusters.iter().map(|c| serde_json::json!({"name": c})).collect::<Vec<_>>()
      }
    });
    if yaml {
        serde_yaml_ng::to_string(&bootstrap).unwrap()
    } else {
        bootstrap.to_string()
    }
}

#[test]
fn check_reads_the_configuration_inside_an_envoy_bootstrap_against_its_clusters() {
    for yaml in [false, true] {
        let text = bootstrap(CONFIG_JSON, &["idp", "auth", "sso.example.com"], yaml);
        let (status, out, err) = run_stdin(&["check", "-"], &text);
        assert_eq!(status, 0, "yaml={yaml}: {out}{err}");
        assert!(
            out.contains(r#"(stdin): Envoy bootstrap: http filter "portcullis" configuration: ok: 3 filters, 2 rules"#),
            "{out}"
        );
        // Declared for the VM (host_env_keys), not set here: noted, not refused.
        assert!(
            out.contains("environment variable SSO_SECRET: declared for the VM"),
            "{out}"
        );
        assert!(!err.contains("warning"), "{err}");

        let text = bootstrap(CONFIG_JSON, &["idp", "sso.example.com"], yaml);
        let (status, _, err) = run_stdin(&["check", "-"], &text);
        assert_eq!(status, 1);
        assert!(
            err.contains(r#"filters[1].External.auth_service: cluster "auth" is not defined in this bootstrap's static_resources.clusters"#),
            "{err}"
        );
    }
}

#[test]
fn check_reads_an_istio_wasm_plugin_and_an_envoy_gateway_policy() {
    let plugin = "apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: auth, namespace: istio-system}
spec:
  url: oci://registry.example.com/portcullis:0.1.0
  vmConfig:
    env:
    - {name: KEY, value: inline-key}
  pluginConfig:
    filters:
    - name: keys
      APIKey: {keys: [{value: {fromEnv: KEY}}]}
    rules:
    - {host: '*', path: '/*', filters: [{name: keys}]}
---
apiVersion: v1
kind: Service
metadata: {name: other}
";
    let (status, out, err) = run_stdin(&["check", "-"], plugin);
    assert_eq!(status, 0, "{err}");
    assert!(
        out.contains(
            "(stdin): WasmPlugin istio-system/auth spec.pluginConfig: ok: 1 filters, 1 rules"
        ),
        "{out}"
    );
    assert!(out.contains("(stdin): skipped Service other"), "{out}");

    let bad = plugin.replace("APIKey", "ApiKey");
    let (status, _, err) = run_stdin(&["check", "-"], &bad);
    assert_eq!(status, 1);
    assert!(
        err.contains("(stdin): WasmPlugin istio-system/auth spec.pluginConfig: filters[0]"),
        "{err}"
    );

    let policy = "apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyExtensionPolicy
metadata: {name: auth, namespace: default}
spec:
  wasm:
  - name: first
    code: {type: Image, image: {url: registry.example.com/portcullis:0.1.0}}
    env: {hostKeys: [KEY]}
    config:
      filters:
      - name: keys
        APIKey: {keys: [{value: {fromEnv: KEY}}]}
      rules:
      - {host: '*', path: '/*', filters: [{name: keys}]}
  - name: second
    code: {type: Image, image: {url: registry.example.com/portcullis:0.1.0}}
    config: {filters: [{name: j, JWT: {}}]}
";
    let (status, out, err) = run_stdin(&["check", "-"], policy);
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains(
            "EnvoyExtensionPolicy default/auth spec.wasm[0] (first) config: ok: 1 filters, 1 rules"
        ),
        "{out}"
    );
    assert!(
        err.contains(
            "EnvoyExtensionPolicy default/auth spec.wasm[1] (second) config: filters[0].JWT"
        ),
        "{err}"
    );
}

#[test]
fn check_points_an_aes_manifest_to_import() {
    let path = format!(
        "{}/../testdata/aes-import/filters.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let path = if std::path::Path::new(&path).exists() {
        path
    } else {
        write(
            "aes.yaml",
            "apiVersion: getambassador.io/v3alpha1\nkind: Filter\nmetadata: {name: f}\nspec:\n  JWT: {jwksURI: https://idp/jwks}\n",
        )
        .to_str()
        .unwrap()
        .to_string()
    };
    let (status, _, err) = code(&["check", &path]);
    assert_eq!(status, 1, "{err}");
    assert!(err.contains("an AES/Emissary manifest, not a Portcullis configuration: run `portcullis import FILE`"), "{err}");
    assert!(!err.contains("unknown field"), "{err}");
}

/// What `check` refuses, the JSON Schema refuses too, where JSON Schema can say it.
#[test]
fn the_schema_refuses_what_check_refuses() {
    let (_, schema, _) = code(&["schema"]);
    let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let accepted = [
        r#"{}"#,
        r#"{"filters":[{"name":"j","JWT":{"jwksURI":"https://idp/jwks","insecureTLS":true},"ambassador_id":["a"]}],
            "rules":[{"host":"*","path":"/*","filters":[{"name":"j","arguments":{"scope":["read"]}}]}]}"#,
    ];
    for text in accepted {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{text}: {errors:?}");
        assert_eq!(run_stdin(&["check", "-"], text).0, 0, "{text}");
    }
    let refused = [
        // The v1alpha1 lower-case shape.
        r#"{"filters":[{"name":"j","jwt":{"jwksURI":"https://idp/jwks"}}]}"#,
        r#"{"filters":[{"name":"j","type":"jwt"}]}"#,
        // An unknown filter type, two types, none.
        r#"{"filters":[{"name":"j","Jwt":{}}]}"#,
        r#"{"filters":[{"name":"j","JWT":{},"MTLS":{}}]}"#,
        r#"{"filters":[{"name":"j"}]}"#,
        // Unknown fields at every level.
        r#"{"filter":[]}"#,
        r#"{"filters":[{"name":"j","JWT":{"jwksUri":"https://idp/jwks"}}]}"#,
        r#"{"rules":[{"host":"*","path":"/*","filters":[{"name":"j","onDenied":"break"}]}]}"#,
    ];
    for text in refused {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(!validator.is_valid(&value), "the schema accepts {text}");
        assert_eq!(
            run_stdin(&["check", "-"], text).0,
            1,
            "check accepts {text}"
        );
    }
}

#[test]
fn import_carries_a_jwt_assertion_key_from_a_secret_on_one_line_and_it_loads() {
    let pem = include_str!("../../testdata/keys/rsa1.pem");
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    let manifest = format!(
        "apiVersion: getambassador.io/v3alpha1\nkind: Filter\nmetadata: {{name: sso, namespace: web}}\nspec:\n  OAuth2:\n    authorizationURL: https://idp.example.com\n    clientID: web-app\n    secretName: sso-key\n    protectedOrigins: [{{origin: https://app.example.com}}]\n    clientAuthentication:\n      method: JWTAssertion\n      jwtAssertion: {{signingMethod: RS256, setIAT: true}}\n---\napiVersion: getambassador.io/v3alpha1\nkind: FilterPolicy\nmetadata: {{name: p, namespace: web}}\nspec:\n  rules: [{{host: '*', path: '*', filters: [{{name: sso}}]}}]\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: sso-key, namespace: web}}\nstringData:\n  oauth2-client-secret: |\n{indented}"
    );
    let (ok, err, env) = import_to_folder("jwt-assertion", &manifest);
    assert!(ok, "{err}");
    let line = env
        .lines()
        .find(|l| l.starts_with("PORTCULLIS_WEB_SSO_KEY_OAUTH2_CLIENT_SECRET="))
        .unwrap_or_else(|| panic!("{env}"));
    let value = line.split_once('=').unwrap().1;
    assert!(
        value.starts_with("-----BEGIN PRIVATE KEY-----\\n"),
        "{value}"
    );
    assert!(!err.contains("MIIE"), "the key reached the report: {err}");
    // The plugin reads it back: `portcullis check` with that environment.
    let dir = std::env::temp_dir().join(format!("portcullis-jwt-assertion-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", dir.join("portcullis.json").to_str().unwrap()])
        .env("PORTCULLIS_WEB_SSO_KEY_OAUTH2_CLIENT_SECRET", value)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
