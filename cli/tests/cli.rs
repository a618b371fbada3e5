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
