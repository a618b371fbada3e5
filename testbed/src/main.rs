//! `testbed`: the test parts as a command, for scripts/demo and manual runs.
//!
//! ```text
//! testbed echo  --port N                               echo upstream (foreground)
//! testbed serve --port N --file PATH [--path /jwks.json] [--content-type T]
//! testbed mint  --alg RS256 [--kid K | --no-kid] [--claims JSON] [--exp-in SECS]
//! testbed jwks                                         print the test JWK Set
//! ```

use std::collections::HashMap;
use std::process::ExitCode;

use portcullis_testbed::servers::{serve_file_forever, EchoUpstream};
use portcullis_testbed::tokens;
use serde_json::{json, Value};

const USAGE: &str = "usage:
  testbed echo  --port N
  testbed serve --port N --file PATH [--path /jwks.json] [--content-type application/json]
  testbed mint  --alg ALG [--kid K | --no-kid] [--claims JSON] [--exp-in SECS]
  testbed jwks
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
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
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
