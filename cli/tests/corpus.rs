//! `portcullis import` over `testdata/aes-corpus/`: AES, Ambassador Pro and
//! Emissary manifests as they were published (documentation examples of
//! every release, reference architectures, issue reports), each kept with its
//! source URL. Every one must import and load (`portcullis check`), or be
//! refused for a reason the migration guide documents, with its advice; no
//! secret may reach standard output or the report; and what each yields
//! (filters and their types, the rules) is its `.expect.yaml`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The corpus must stay at least this large.
const MIN_MANIFESTS: usize = 60;

/// Refusals `docs/migrating-from-emissary.md` documents, each with the words
/// its advice must hold.
const DOCUMENTED_REFUSALS: &[(&str, &str)] = &[
    ("spec.Plugin: refused", "import it as an External filter"),
    (
        "Policy authenticated every request",
        "write an OAuth2 or JWT Filter for that IdP",
    ),
    (
        "spec.type: refused: the gateway.getambassador.io/v1alpha1 shape",
        "write the getambassador.io/v3alpha1 one",
    ),
];

/// What one manifest must yield.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `ok` (imports and loads) or `refused` (a documented refusal).
    exit: String,
    /// Filter name → type (`OAuth2`, `JWT`, `External`, `APIKey`).
    #[serde(default)]
    filters: BTreeMap<String, String>,
    /// `host path → filter names` of each rule, in order.
    #[serde(default)]
    rules: Vec<String>,
    /// Lines (parts) the report must hold.
    #[serde(default)]
    report: Vec<String>,
    /// The `AMBASSADOR_ID` the manifest's resources name (`--ambassador-id`):
    /// without it they are another Ambassador's, and the import refuses.
    #[serde(default)]
    ambassador_id: Option<String>,
}

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/aes-corpus"
    ));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !is_expect(p))
        .collect();
    files.sort();
    files
}

fn is_expect(p: &Path) -> bool {
    p.to_string_lossy().ends_with(".expect.yaml")
}

fn portcullis(args: &[&str], env: &[(String, String)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `secrets.env` as (variable, value) pairs; a variable to fill in gets a
/// placeholder, as the user would give it.
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            if let Some(rest) = l.strip_prefix("# ") {
                let var = rest.split('=').next()?;
                return var
                    .starts_with("PORTCULLIS_")
                    .then(|| (var.to_string(), "placeholder-value".to_string()));
            }
            let (k, v) = l.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// `text` without the `PORTCULLIS_...` variable names in it.
fn without_vars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("PORTCULLIS_") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.push(' ');
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn filter_types(config: &Value) -> BTreeMap<String, String> {
    config["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = f["name"].as_str().unwrap().to_string();
            let kind = [
                "OAuth2",
                "JWT",
                "External",
                "APIKey",
                "MTLS",
                "Authorization",
            ]
            .iter()
            .find(|k| f.get(**k).is_some())
            .unwrap();
            (name, kind.to_string())
        })
        .collect()
}

fn rule_lines(config: &Value) -> Vec<String> {
    config["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let names: Vec<&str> = r["filters"]
                .as_array()
                .map(|f| f.iter().map(|f| f["name"].as_str().unwrap()).collect())
                .unwrap_or_default();
            format!(
                "{} {} -> {}",
                r["host"].as_str().unwrap_or("*"),
                r["path"].as_str().unwrap_or("*"),
                names.join(", ")
            )
        })
        .collect()
}

/// Imports one manifest and checks it against its expectations; the
/// failures, one line each.
fn check_one(path: &Path, counts: &mut BTreeMap<String, usize>) -> Vec<String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut failures = Vec::new();
    let mut fail = |why: String| failures.push(format!("{name}: {why}"));
    let text = std::fs::read_to_string(path).unwrap();
    // A byte order mark (a Windows editor's) comes before the header.
    if !text
        .trim_start_matches('\u{feff}')
        .starts_with("# Source: https://github.com/")
    {
        fail("no `# Source: https://github.com/...` first line".into());
    }
    let expect_path = path.with_extension("expect.yaml");
    let Ok(expect_text) = std::fs::read_to_string(&expect_path) else {
        fail("no .expect.yaml".into());
        return failures;
    };
    let expect: Expect = serde_yaml_ng::from_str(&expect_text).unwrap();
    let out =
        std::env::temp_dir().join(format!("portcullis-corpus-{}-{}", std::process::id(), name));
    let file = path.to_str().unwrap();
    let mut id_args: Vec<&str> = Vec::new();
    if let Some(id) = &expect.ambassador_id {
        let (ok, stdout, stderr) = portcullis(&["import", file], &[]);
        if ok || !stdout.is_empty() || !stderr.contains("left out: spec.ambassador_id is") {
            fail(format!(
                "without --ambassador-id {id}, its resources were not left out:\n{stderr}"
            ));
        }
        id_args = vec!["--ambassador-id", id];
    }
    let (ok, stdout, stderr) = portcullis(&[&["import", file][..], &id_args].concat(), &[]);
    let (ok_out, _, _) = portcullis(
        &[
            &["import", file, "--out", out.to_str().unwrap()][..],
            &id_args,
        ]
        .concat(),
        &[],
    );
    *counts.entry(expect.exit.clone()).or_default() += 1;
    for line in &expect.report {
        if !stderr.contains(line.as_str()) {
            fail(format!("report lacks {line:?}:\n{stderr}"));
        }
    }
    match expect.exit.as_str() {
        "ok" => {
            if !ok || !ok_out {
                fail(format!("import failed:\n{stderr}"));
                return failures;
            }
            let env = env_file(&std::fs::read_to_string(out.join("secrets.env")).unwrap());
            // The variables' own names (`..._CLIENT_SECRET`) are not values:
            // a documentation example's secret `CLIENT_SECRET` is in them.
            let (stdout_values, stderr_values) = (without_vars(&stdout), without_vars(&stderr));
            for (var, value) in &env {
                if value.len() >= 4
                    && (stdout_values.contains(value) || stderr_values.contains(value))
                {
                    fail(format!("the value of {var} reaches the output"));
                }
            }
            let config: Value = serde_json::from_str(&stdout).unwrap();
            let written: Value = serde_json::from_str(
                &std::fs::read_to_string(out.join("portcullis.json")).unwrap(),
            )
            .unwrap();
            if written != config {
                fail("--out wrote another configuration than standard output".into());
            }
            let (checked, check_out, check_err) = portcullis(
                &["check", out.join("portcullis.json").to_str().unwrap()],
                &env,
            );
            if !checked || !check_out.contains(": ok: ") {
                fail(format!(
                    "portcullis check refuses it:\n{check_err}{check_out}"
                ));
            }
            if filter_types(&config) != expect.filters {
                fail(format!("filters {:?}", filter_types(&config)));
            }
            if rule_lines(&config) != expect.rules {
                fail(format!("rules {:#?}", rule_lines(&config)));
            }
        }
        "refused" => {
            if ok || ok_out || !stdout.is_empty() {
                fail(format!("expected a refusal:\n{stdout}{stderr}"));
            }
            let documented = DOCUMENTED_REFUSALS
                .iter()
                .any(|(what, advice)| stderr.contains(what) && stderr.contains(advice));
            if !documented {
                fail(format!(
                    "not a documented refusal with its advice:\n{stderr}"
                ));
            }
            if !stderr.contains("import: nothing written") {
                fail(format!(
                    "the refusal does not say nothing was written:\n{stderr}"
                ));
            }
        }
        other => fail(format!("exit {other:?} is neither ok nor refused")),
    }
    let _ = std::fs::remove_dir_all(&out);
    failures
}

#[test]
fn every_published_manifest_imports_or_is_refused_as_documented() {
    let files = corpus();
    assert!(
        files.len() >= MIN_MANIFESTS,
        "{} manifests, fewer than {MIN_MANIFESTS}",
        files.len()
    );
    let mut counts = BTreeMap::new();
    let failures: Vec<String> = files
        .iter()
        .flat_map(|f| check_one(f, &mut counts))
        .collect();
    eprintln!("corpus: {} manifests, {counts:?}", files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `testdata/aes-corpus/<name>` imported to its configuration.
fn import(name: &str) -> Value {
    let path = format!(
        "{}/../testdata/aes-corpus/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let (ok, stdout, stderr) = portcullis(&["import", &path], &[]);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn an_ambassador_1x_annotation_auth_service_is_the_catch_all_external_filter() {
    let config = import("emissary-demo-auth-enable.yaml");
    let ext = &config["filters"][0]["External"];
    assert_eq!(ext["auth_service"], "example-auth:3000");
    assert_eq!(ext["path_prefix"], "/extauth");
    assert_eq!(ext["allowed_request_headers"][0], "x-qotm-session");
    assert_eq!(ext["allowed_authorization_headers"][0], "x-qotm-session");
    let last = config["rules"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last,
        serde_json::json!({"host": "*", "path": "*", "filters": [{"name": "authentication.default"}]})
    );
}

#[test]
fn aes_own_auth_service_from_its_install_manifest_is_left_out() {
    let path = format!(
        "{}/../testdata/aes-corpus/emissary-aes-install.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let (ok, stdout, stderr) = portcullis(&["import", &path], &[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("AuthService ambassador/ambassador-edge-stack-auth: left out: auth_service 127.0.0.1:8500 is AES's"),
        "{stderr}"
    );
    let config: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(config["filters"], serde_json::json!([]));
}

#[test]
fn a_kubectl_export_from_an_issue_keeps_only_what_the_user_set() {
    let config = import("emissary-issue-4239-keycloak.yaml");
    // Every empty field of the export is gone; the AES 1.x `scopes` argument stays for the core.
    assert_eq!(
        config["rules"],
        serde_json::json!([{"host": "*", "path": "/*", "filters": [
            {"name": "keycloak-filter.ambassador", "arguments": {"scopes": ["offline_access"]}}]}])
    );
    let oauth2 = &config["filters"][0]["OAuth2"];
    assert_eq!(oauth2["audience"], "ambassador-dev");
    assert_eq!(
        oauth2["secret"]["fromEnv"],
        "PORTCULLIS_AMBASSADOR_KEYCLOAK_FILTER_OAUTH2_CLIENT_SECRET"
    );
    assert_eq!(
        oauth2["callbackPath"],
        "/.ambassador/oauth2/redirection-endpoint"
    );
}

#[test]
fn an_ambassador_pro_null_filter_list_makes_a_public_rule_after_the_jwt_rule() {
    let config = import("pro-ref-arch-jwt-01-jwt-filter-3.yaml");
    let rules = config["rules"].as_array().unwrap();
    assert_eq!(rules[0]["filters"][0]["name"], "jwt-filter.default");
    assert_eq!(rules[1]["path"], "/httpbin/*");
    assert!(rules[1].get("filters").is_none(), "{}", rules[1]);
}

#[test]
fn a_grpc_auth_service_in_a_service_annotation_keeps_its_protocol() {
    let config = import("hmac-auth-example-grpc-example-ambassador.yaml");
    let ext = &config["filters"][0]["External"];
    assert_eq!(ext["proto"], "grpc");
    assert!(ext["auth_service"].as_str().unwrap().contains(':'), "{ext}");
}

#[test]
fn emissarys_allow_request_body_is_the_body_it_configured() {
    let path = format!(
        "{}/../testdata/aes-corpus/emissary-apitest-v2-authsvc.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let (ok, stdout, stderr) = portcullis(&["import", &path], &[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(
            "spec.allow_request_body: changed: include_body {max_bytes: 4096, allow_partial: true}"
        ) || stderr.contains("spec.allow_request_body: dropped"),
        "{stderr}"
    );
    let config: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(config["filters"].as_array().unwrap().len(), 1);
}

#[test]
fn a_file_without_any_aes_resource_is_refused_not_an_empty_configuration() {
    let dir = std::env::temp_dir().join(format!("portcullis-corpus-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let values = dir.join("values.yaml");
    // A Helm values file given by mistake, and an empty export.
    std::fs::write(&values, "replicaCount: 2\nimage:\n  tag: 3.9.1\n").unwrap();
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "apiVersion: v1\nitems: []\nkind: List\n").unwrap();
    for file in [&values, &empty] {
        let (ok, stdout, stderr) = portcullis(&["import", file.to_str().unwrap()], &[]);
        assert!(!ok && stdout.is_empty(), "{stdout}{stderr}");
        assert!(
            stderr.contains("no Filter, FilterPolicy, AuthService or Mapping")
                && stderr.contains("import: nothing written"),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
