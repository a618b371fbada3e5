//! `portcullis`: the configuration checker, template renderer, JSON Schema and
//! AES importer for users, built from the same code the plugin runs.
//!
//! ```text
//! portcullis check [FILE|-]...   the configuration, or the one inside an Istio WasmPlugin,
//!                                an Envoy Gateway EnvoyExtensionPolicy or an Envoy bootstrap
//! portcullis render CONFIG --filter NAME --token JWT [--header 'Name: value']... [--no-verify] [--now UNIX]
//! portcullis schema              the JSON Schema of the configuration, for editors
//! portcullis import FILE... [--out DIR]   AES/Emissary manifests → configuration
//! ```
//! Exit codes: 0 success; 1 refused (a configuration with errors, nothing to
//! check, a token refused); 2 the command line or an input cannot be read.

mod check;
mod import;
mod render;
mod schema;

use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes, as `--help` documents them.
const EXIT_CODES: &str = "Exit codes:
  0  success (warnings and notes may be printed)
  1  refused: a configuration with errors, nothing to check, a token refused,
     an import with no result
  2  usage: a wrong command line, or an input that cannot be read";

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Check, render and import Portcullis configurations (the Envoy Proxy-Wasm auth plugin)",
    after_help = EXIT_CODES,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check configurations as the plugin loads them: every error with its JSON path.
    ///
    /// A FILE may hold the plugin configuration (JSON or YAML), or the
    /// deployment that carries it: an Istio `WasmPlugin` (`spec.pluginConfig`),
    /// an Envoy Gateway `EnvoyExtensionPolicy` (`spec.wasm[].config`) or an Envoy
    /// bootstrap (JSON or YAML; each wasm filter's `configuration` StringValue).
    /// Each configuration found is checked and named. Every callout URL is listed
    /// with the Envoy cluster it will use; in a bootstrap, a cluster it does not
    /// define is an error. `fromEnv` secrets are read from this process's
    /// environment, or from the VM environment the wrapper declares.
    #[command(after_help = EXIT_CODES)]
    Check {
        /// Files to check; `-` reads standard input.
        #[arg(required = true, value_name = "FILE|-")]
        files: Vec<String>,
    },
    /// Print the headers a JWT filter's `injectRequestHeaders` gives for a token.
    #[command(after_help = EXIT_CODES)]
    Render {
        /// The plugin configuration (JSON, or YAML by its `.yaml`/`.yml` name).
        config: String,
        /// The JWT filter's `name`.
        #[arg(long)]
        filter: String,
        /// The token (compact JWS).
        #[arg(long)]
        token: String,
        /// A request header, `Name: value` (the value byte for byte); repeatable.
        #[arg(long = "header", value_name = "NAME: VALUE", value_parser = clap::value_parser!(OsString))]
        headers: Vec<OsString>,
        /// Render without verifying the token (keys, signature, claims).
        #[arg(long)]
        no_verify: bool,
        /// The time to check the claims at, Unix seconds (default: now).
        #[arg(long, value_name = "UNIX_SECONDS")]
        now: Option<f64>,
    },
    /// Print the JSON Schema of the configuration (for editors and CI).
    #[command(after_help = EXIT_CODES)]
    Schema,
    /// Turn AES/Emissary manifests into a Portcullis configuration.
    ///
    /// Reads Kubernetes YAML (Filter, FilterPolicy, AuthService, Mapping, and the
    /// Secrets they reference). Writes the configuration to standard output
    /// (secrets as `fromEnv`), or with --out the configuration, secrets.env and
    /// Envoy, Istio and Envoy Gateway pieces into DIR. Each changed or refused
    /// field is reported on standard error. Resources of another Ambassador
    /// (`spec.ambassador_id` not naming ID) are left out.
    #[command(after_help = EXIT_CODES)]
    Import {
        /// The manifests (multi-document YAML).
        #[arg(required = true, value_name = "MANIFEST")]
        files: Vec<String>,
        /// Write the configuration and deployment pieces into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The AMBASSADOR_ID of the Ambassador to import (one cluster may run
        /// several); its resources are those whose ambassador_id names it.
        #[arg(long, value_name = "ID", default_value = "default")]
        ambassador_id: String,
    },
}

/// What a subcommand failed with: refused (exit 1) or unusable input (exit 2).
pub enum Failure {
    Refused(String),
    Usage(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Refused(message)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { files } => check::run(&files),
        Command::Render {
            config,
            filter,
            token,
            headers,
            no_verify,
            now,
        } => render::run(&render::Args {
            config,
            filter,
            token,
            headers,
            verify: !no_verify,
            now,
        }),
        Command::Schema => {
            println!("{}", schema::schema());
            Ok(())
        }
        Command::Import {
            files,
            out,
            ambassador_id,
        } => import_command(&files, out.as_deref(), &ambassador_id),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(message)) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

fn import_command(
    files: &[String],
    out: Option<&std::path::Path>,
    ambassador_id: &str,
) -> Result<(), Failure> {
    let out =
        match out {
            Some(dir) => Some(dir.to_str().ok_or_else(|| {
                Failure::Usage("--out: the directory name is not UTF-8".to_string())
            })?),
            None => None,
        };
    Ok(import::run(files, out, ambassador_id)?)
}
