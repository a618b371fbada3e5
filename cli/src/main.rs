//! `portcullis`: the configuration checker and template renderer for users, built
//! from the same code the plugin runs.
//!
//! ```text
//! portcullis check CONFIG                  every error with its JSON path; exit 1 if any
//! portcullis render CONFIG --filter NAME --token JWT [--header 'Name: value']... [--no-verify] [--now UNIX]
//! portcullis schema                        the JSON Schema of the configuration, for editors
//! portcullis import FILE... [--out DIR]    AES/Emissary manifests → configuration (see `import`)
//! ```
//! CONFIG is the plugin's JSON, or the same document in YAML (`.yaml`/`.yml`).

mod import;

use portcullis_core::config::{Config, FilterKind};
use portcullis_core::jwt::filter::{token_data, JwtOutcome, KeySource};
use portcullis_core::jwt::verify::decode_unverified;
use portcullis_core::request::{unescape_opaque, Request};
use portcullis_core::template::{RenderData, Rendered};
use std::ffi::{OsStr, OsString};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage:
  portcullis check CONFIG
  portcullis schema
  portcullis render CONFIG --filter NAME --token JWT [--header 'Name: value']... [--no-verify] [--now UNIX_SECONDS]
  portcullis import MANIFEST.yaml... [--out DIR] [--ambassador-id ID]

import: AES/Emissary Kubernetes YAML (Filter, FilterPolicy, AuthService, Mapping,
Secret) to the configuration on standard output (secrets as fromEnv), or with
--out the configuration, secrets.env and Envoy, Istio and Envoy Gateway pieces in
DIR. Each changed or refused field is reported on standard error. Resources of
another Ambassador (spec.ambassador_id not naming ID, default `default`) are
left out.

CONFIG: the plugin configuration, JSON or YAML. `fromEnv` secrets are read from
this process's environment.";

fn main() -> ExitCode {
    // Arguments are OS strings: `--header` values are bytes (HTTP allows
    // obs-text), everything else must be UTF-8 and is refused cleanly if not.
    let raw: Vec<OsString> = std::env::args_os().skip(1).collect();
    let rest = raw.get(1..).unwrap_or_default();
    let result = match raw.first().map(|a| a.to_str()) {
        Some(Some("check")) => utf8_args(rest).and_then(|a| check(&a)),
        Some(Some("render")) => render(rest),
        Some(Some("import")) => utf8_args(rest).and_then(|a| import_command(&a)),
        Some(Some("schema")) => {
            println!("{}", schema());
            Ok(())
        }
        Some(Some("-h" | "--help" | "help")) => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// `arg` as text, or an error naming it (lossily shown) when it is not UTF-8.
fn utf8_arg(arg: &OsStr) -> Result<String, String> {
    arg.to_str().map(str::to_string).ok_or_else(|| {
        format!(
            "argument {:?} is not valid UTF-8 (only --header values may hold other bytes)",
            arg.to_string_lossy()
        )
    })
}

fn utf8_args(args: &[OsString]) -> Result<Vec<String>, String> {
    args.iter().map(|a| utf8_arg(a)).collect()
}

/// The bytes of an argument: exact on Unix; elsewhere it must be UTF-8.
fn arg_bytes(arg: &OsStr) -> Result<Vec<u8>, String> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        Ok(arg.as_bytes().to_vec())
    }
    #[cfg(not(unix))]
    {
        utf8_arg(arg).map(String::into_bytes)
    }
}

/// Parses `--header 'Name: value'`: the name must be an HTTP token, the value
/// is kept byte for byte (optional whitespace around it removed).
fn header_arg(arg: &OsStr) -> Result<(String, Vec<u8>), String> {
    const NEED: &str = "--header needs 'Name: value'";
    let bytes = arg_bytes(arg)?;
    let colon = bytes.iter().position(|b| *b == b':').ok_or(NEED)?;
    let (name, value) = bytes.split_at(colon);
    let name = std::str::from_utf8(name)
        .ok()
        .map(str::trim)
        .filter(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        })
        .ok_or_else(|| format!("{NEED}: the name must be an HTTP token"))?;
    let value = value.get(1..).unwrap_or_default();
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    Ok((
        name.to_ascii_lowercase(),
        value.get(start..end).unwrap_or_default().to_vec(),
    ))
}

/// Writes one `name: value` line, the value's bytes as they are.
fn print_header(name: &str, value: &[u8]) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(name.as_bytes())
        .and_then(|()| out.write_all(b": "))
        .and_then(|()| out.write_all(value))
        .and_then(|()| out.write_all(b"\n"));
}

/// Reads a configuration file as JSON bytes (YAML is converted).
fn read_config(path: &str) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let yaml = path.ends_with(".yaml") || path.ends_with(".yml");
    if !yaml {
        return Ok(text.into_bytes());
    }
    let value: serde_json::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{path}: not valid YAML: {e}"))?;
    serde_json::to_vec(&value).map_err(|e| format!("{path}: {e}"))
}

fn load(path: &str) -> Result<Config, String> {
    let bytes = read_config(path)?;
    Config::from_json(&bytes).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{path}: {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn check(args: &[String]) -> Result<(), String> {
    let [path] = args else {
        return Err(USAGE.to_string());
    };
    let config = load(path)?;
    for notice in &config.notices {
        println!("{path}: note: {notice}");
    }
    println!(
        "{path}: ok: {} filters, {} rules, {} remote JWK Sets",
        config.filters.len(),
        config.rules.len(),
        config.jwks_sources.len()
    );
    Ok(())
}

fn import_command(args: &[String]) -> Result<(), String> {
    let mut files = Vec::new();
    let mut out = None;
    let mut ambassador_id = "default".to_string();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out" => out = Some(it.next().ok_or("--out needs a directory")?.clone()),
            "--ambassador-id" => {
                ambassador_id = it
                    .next()
                    .ok_or("--ambassador-id needs the AMBASSADOR_ID of the Ambassador to import")?
                    .clone()
            }
            other if other.starts_with("--") => {
                return Err(format!("unknown argument {other:?}\n{USAGE}"))
            }
            other => files.push(other.to_string()),
        }
    }
    if files.is_empty() {
        return Err(USAGE.to_string());
    }
    import::run(&files, out.as_deref(), &ambassador_id)
}

fn render(args: &[OsString]) -> Result<(), String> {
    let mut config_path = None;
    let mut filter_name = None;
    let mut token = None;
    let mut headers = Vec::new();
    let mut verify = true;
    let mut now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut it = args.iter();
    let next_text = |it: &mut std::slice::Iter<'_, OsString>| -> Result<Option<String>, String> {
        it.next().map(|a| utf8_arg(a)).transpose()
    };
    while let Some(arg) = it.next() {
        let arg = utf8_arg(arg)?;
        match arg.as_str() {
            "--filter" => filter_name = next_text(&mut it)?,
            "--token" => token = next_text(&mut it)?,
            "--header" => {
                let h = it.next().ok_or("--header needs 'Name: value'")?;
                headers.push(header_arg(h)?);
            }
            "--no-verify" => verify = false,
            "--now" => {
                now = next_text(&mut it)?
                    .and_then(|s| s.parse().ok())
                    .ok_or("--now needs Unix seconds")?
            }
            other if config_path.is_none() && !other.starts_with("--") => {
                config_path = Some(other.to_string())
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let (Some(config_path), Some(filter_name), Some(token)) = (config_path, filter_name, token)
    else {
        return Err(USAGE.to_string());
    };
    let config = load(&config_path)?;
    let filter = config
        .filters
        .iter()
        .find(|f| f.name == filter_name)
        .ok_or_else(|| format!("no filter named {filter_name:?}"))?;
    let FilterKind::Jwt(jwt) = &filter.kind else {
        return Err(format!(
            "filter {filter_name:?} is {}: render shows a JWT filter's injectRequestHeaders",
            filter.kind.type_name()
        ));
    };
    headers.push((
        "authorization".to_string(),
        format!("Bearer {token}").into_bytes(),
    ));
    let mut request = Request {
        headers: portcullis_core::request::Headers::from_bytes(headers),
        ..Request::default()
    };
    for name in jwt.injected_names() {
        request.headers.remove(name);
    }
    if verify {
        if let KeySource::Remote(_) = jwt.keys {
            return Err(
                "this filter's keys are remote (jwksURI): use --no-verify, or a copy of the config with the set inline (`jwks`)"
                    .to_string(),
            );
        }
        match jwt.check(&request, &[], None, now) {
            JwtOutcome::Allow(changes) => {
                for c in changes {
                    print_header(&c.name, c.value.as_deref().unwrap_or_default());
                }
                return Ok(());
            }
            JwtOutcome::Deny(response) => {
                return Err(format!(
                    "the token is refused ({}): {}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                ))
            }
            JwtOutcome::KeysUnavailable(_) | JwtOutcome::UnknownKey { .. } => {
                return Err("no key for this token".to_string())
            }
            // Only for a lean request, which this one is not.
            JwtOutcome::NeedFullRequest => return Err("could not check the token".to_string()),
        }
    }
    let decoded = decode_unverified(&token).map_err(|e| format!("token: {e}"))?;
    let root = token_data(&decoded, &request);
    let data = RenderData {
        root: &root,
        headers: &request.headers,
    };
    for t in &jwt.inject {
        match t.template.render(&data) {
            Ok(Rendered::Text(v)) => print_header(&t.name, &unescape_opaque(&v)),
            Ok(Rendered::DoNotSet) => println!("{}: (not set: doNotSet)", t.name),
            Err(e) => println!("{}: (not set: {e})", t.name),
        }
    }
    Ok(())
}

/// The JSON Schema of the configuration, generated from the serde types the
/// plugin parses, with the AES/Emissary fields it accepts and ignores added to
/// each filter type (so a pasted spec validates in an editor too).
fn schema() -> String {
    let mut schema = serde_json::to_value(schemars::schema_for!(
        portcullis_core::config::schema::ConfigSpec
    ))
    .unwrap_or_default();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "title".to_string(),
            serde_json::Value::String("Portcullis plugin configuration (v1)".to_string()),
        );
    }
    // AES puts `ambassador_id` beside the filter type, in the entry.
    if let Some(properties) = schema
        .get_mut("$defs")
        .and_then(|d| d.get_mut("FilterSpec"))
        .and_then(|d| d.get_mut("properties"))
        .and_then(serde_json::Value::as_object_mut)
    {
        for (field, advice) in portcullis_core::config::IGNORED_ENTRY_FIELDS {
            properties.insert(
                (*field).to_string(),
                serde_json::json!({ "description": format!("accepted and ignored: {advice}") }),
            );
        }
    }
    for (definition, type_name) in [
        ("JwtSpec", "JWT"),
        ("ExternalSpec", "External"),
        ("OAuth2Spec", "OAuth2"),
        ("ApiKeySpec", "APIKey"),
        ("MtlsSpec", "MTLS"),
    ] {
        let properties = schema
            .get_mut("$defs")
            .and_then(|d| d.get_mut(definition))
            .and_then(|d| d.get_mut("properties"))
            .and_then(serde_json::Value::as_object_mut);
        if let Some(properties) = properties {
            for (field, advice) in portcullis_core::config::IGNORED_FIELDS {
                properties.insert(
                    (*field).to_string(),
                    serde_json::json!({ "description": format!("accepted and ignored: {advice}") }),
                );
            }
            for (t, field, advice) in portcullis_core::config::IGNORED_TYPE_FIELDS {
                if *t == type_name {
                    properties.insert(
                        (*field).to_string(),
                        serde_json::json!({ "description": format!("accepted and ignored: {advice}") }),
                    );
                }
            }
        }
    }
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
