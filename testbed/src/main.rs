//! `testbed`: the test parts as a command, for scripts/demo and manual runs.
//!
//! ```text
//! testbed echo  --port N                               echo upstream (foreground)
//! testbed serve --port N --file PATH [--path /jwks.json] [--content-type T]
//! testbed mint  --alg RS256 [--kid K | --no-kid] [--claims JSON] [--exp-in SECS]
//! testbed jwks                                         print the test JWK Set
//! testbed soak  [--requests N] [--markdown PATH]        the bounded soak (scripts/soak)
//! ```

use std::collections::HashMap;
use std::process::ExitCode;

use portcullis_testbed::servers::{serve_file_forever, EchoUpstream};
use portcullis_testbed::soak::SoakOptions;
use portcullis_testbed::tokens;
use serde_json::{json, Value};

const USAGE: &str = "usage:
  testbed echo  --port N
  testbed authz --port N                 (Istio ext-authz sample: allows `x-ext-authz: allow`)
  testbed serve --port N --file PATH [--path /jwks.json] [--content-type application/json]
  testbed mint  --alg ALG [--kid K | --no-kid] [--claims JSON] [--exp-in SECS]
  testbed jwks
  testbed soak  [--requests 1000000] [--markdown docs/reliability.md]
ALG: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA HS256 HS384 HS512";

fn parse_flags(args: &[String]) -> Result<HashMap<String, String>, String> {
    let mut flags = HashMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let name = a
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {a:?}"))?;
        if name == "no-kid" {
            flags.insert(name.to_string(), String::new());
            continue;
        }
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        flags.insert(name.to_string(), value.clone());
    }
    Ok(flags)
}

fn port(flags: &HashMap<String, String>) -> Result<u16, String> {
    flags
        .get("port")
        .ok_or("--port is required")?
        .parse()
        .map_err(|e| format!("--port: {e}"))
}

fn run(args: &[String]) -> Result<(), String> {
    let (cmd, rest) = args.split_first().ok_or(USAGE)?;
    let flags = parse_flags(rest)?;
    match cmd.as_str() {
        "echo" => {
            let echo =
                EchoUpstream::start_on(port(&flags)?).map_err(|e| format!("echo: bind: {e}"))?;
            eprintln!("testbed: echo upstream on 127.0.0.1:{}", echo.port());
            loop {
                std::thread::park();
            }
        }
        "authz" => {
            // Istio's ext-authz sample over HTTP: allows `x-ext-authz: allow`.
            let server = portcullis_testbed::servers::FnServer::start_on(
                port(&flags)?,
                portcullis_testbed::authz::istio_ext_authz_http,
            )
            .map_err(|e| format!("authz: bind: {e}"))?;
            eprintln!("testbed: ext-authz sample on 127.0.0.1:{}", server.port());
            loop {
                std::thread::park();
            }
        }
        "serve" => {
            let file = flags.get("file").ok_or("--file is required")?;
            let body = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
            let path = flags
                .get("path")
                .map(String::as_str)
                .unwrap_or("/jwks.json");
            let ct = flags
                .get("content-type")
                .map(String::as_str)
                .unwrap_or("application/json");
            serve_file_forever(port(&flags)?, path, body, ct)
        }
        "mint" => {
            let alg = flags.get("alg").ok_or("--alg is required")?;
            if !tokens::ALL_ALGS.contains(&alg.as_str()) {
                return Err(format!("unknown --alg {alg:?}\n{USAGE}"));
            }
            let default_kid = tokens::default_key_for(alg).to_string();
            let kid = if flags.contains_key("no-kid") {
                None
            } else {
                Some(flags.get("kid").cloned().unwrap_or(default_kid))
            };
            let mut claims = match flags.get("claims") {
                Some(c) => serde_json::from_str(c).map_err(|e| format!("--claims: {e}"))?,
                None => json!({"sub": "demo-user"}),
            };
            let exp_in: i64 = flags
                .get("exp-in")
                .map(|s| s.parse().map_err(|e| format!("--exp-in: {e}")))
                .transpose()?
                .unwrap_or(3600);
            let now = tokens::now() as i64;
            if let Some(obj) = claims.as_object_mut() {
                obj.entry("iat").or_insert(json!(now));
                obj.entry("exp").or_insert(json!(now + exp_in));
            }
            println!("{}", tokens::mint(alg, kid.as_deref(), Value::Null, claims));
            Ok(())
        }
        "jwks" => {
            let text = serde_json::to_string_pretty(&tokens::jwks()).map_err(|e| e.to_string())?;
            println!("{text}");
            Ok(())
        }
        "soak" => {
            let requests: u64 = flags
                .get("requests")
                .map(|s| s.parse().map_err(|e| format!("--requests: {e}")))
                .transpose()?
                .unwrap_or(1_000_000);
            let report = portcullis_testbed::soak::run(&SoakOptions::new(requests))?;
            print!("{}", report.summary());
            if let Some(path) = flags.get("markdown") {
                write_soak_figures(path, &report.markdown(&today()))?;
                println!("soak: figures written to {path}");
            }
            if report.problems.is_empty() {
                Ok(())
            } else {
                Err("the soak failed its checks".to_string())
            }
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

/// Replaces the text between `<!-- soak:begin -->` and `<!-- soak:end -->`.
fn write_soak_figures(path: &str, figures: &str) -> Result<(), String> {
    const BEGIN: &str = "<!-- soak:begin -->";
    const END: &str = "<!-- soak:end -->";
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let (head, rest) = text
        .split_once(BEGIN)
        .ok_or_else(|| format!("{path} has no {BEGIN} marker"))?;
    let (_, tail) = rest
        .split_once(END)
        .ok_or_else(|| format!("{path} has no {END} marker"))?;
    let out = format!("{head}{BEGIN}\n{figures}{END}{tail}");
    std::fs::write(path, out).map_err(|e| format!("{path}: {e}"))
}

/// Today's date (UTC), `YYYY-MM-DD`.
fn today() -> String {
    let days = (tokens::now() / 86_400) as i64;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testbed: {e}");
            ExitCode::from(2)
        }
    }
}
