//! `portcullis render`: the headers a JWT filter's `injectRequestHeaders` gives
//! for a token, verified as the plugin verifies it (or not, with `--no-verify`).

use crate::check::read_config;
use crate::Failure;
use portcullis_core::config::{Config, FilterKind};
use portcullis_core::jwt::filter::{token_data, JwtOutcome, KeySource};
use portcullis_core::jwt::verify::decode_unverified;
use portcullis_core::request::{unescape_opaque, Request};
use portcullis_core::template::{RenderData, Rendered};
use std::ffi::{OsStr, OsString};
use std::time::{SystemTime, UNIX_EPOCH};

/// The command line of `render`.
pub struct Args {
    pub config: String,
    pub filter: String,
    pub token: String,
    /// `Name: value`, as given (values are bytes: HTTP allows obs-text).
    pub headers: Vec<OsString>,
    pub verify: bool,
    /// Unix seconds; `None`: now.
    pub now: Option<f64>,
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
        arg.to_str()
            .map(|s| s.as_bytes().to_vec())
            .ok_or_else(|| format!("argument {:?} is not valid UTF-8", arg.to_string_lossy()))
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

/// Loads a configuration file as the plugin would (`fromEnv` from this
/// process's environment).
fn load(path: &str) -> Result<Config, Failure> {
    let bytes = read_config(path).map_err(Failure::Usage)?;
    Config::from_json(&bytes).map_err(|errors| {
        Failure::Refused(
            errors
                .iter()
                .map(|e| format!("{path}: {e}"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

pub fn run(args: &Args) -> Result<(), Failure> {
    let mut headers = args
        .headers
        .iter()
        .map(|h| header_arg(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::Usage)?;
    let now = args.now.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    });
    let config = load(&args.config)?;
    let filter_name = &args.filter;
    let token = &args.token;
    let filter = config
        .filters
        .iter()
        .find(|f| &f.name == filter_name)
        .ok_or_else(|| format!("no filter named {filter_name:?}"))?;
    let FilterKind::Jwt(jwt) = &filter.kind else {
        return Err(Failure::Refused(format!(
            "filter {filter_name:?} is {}: render shows a JWT filter's injectRequestHeaders",
            filter.kind.type_name()
        )));
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
    if args.verify {
        if let KeySource::Remote(_) = jwt.keys {
            return Err(Failure::Refused(
                "this filter's keys are remote (jwksURI): use --no-verify, or a copy of the config with the set inline (`jwks`)"
                    .to_string(),
            ));
        }
        return match jwt.check(&request, &[], None, now) {
            JwtOutcome::Allow(changes) => {
                for c in changes {
                    print_header(&c.name, c.value.as_deref().unwrap_or_default());
                }
                Ok(())
            }
            JwtOutcome::Deny(response) => Err(Failure::Refused(format!(
                "the token is refused ({}): {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ))),
            JwtOutcome::KeysUnavailable(_) | JwtOutcome::UnknownKey { .. } => {
                Err(Failure::Refused("no key for this token".to_string()))
            }
            // Only for a lean request, which this one is not.
            JwtOutcome::NeedFullRequest => {
                Err(Failure::Refused("could not check the token".to_string()))
            }
        };
    }
    let decoded = decode_unverified(token).map_err(|e| format!("token: {e}"))?;
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
