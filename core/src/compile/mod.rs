//! The building blocks every filter type's compile step shares, below the
//! filters and `config/` (which assembles them): the compile context
//! ([`Compiler`]: errors with their JSON path, notices, clusters, environment,
//! remote JWK Sets), [`ConfigError`], and the shared spec pieces (`spec.rs`: Go
//! durations, secrets, header templates), `duration.rs` (Go durations) and
//! `url.rs` (callout URLs and their Envoy cluster), `json_path.rs` (the JSON
//! path of a deserialization fault). Nothing here imports a filter module or
//! `config/` (but `json_path`'s tests, which check it on the whole
//! configuration type).

pub mod duration;
pub mod json_path;
pub mod spec;
pub mod url;

use crate::glob::Glob;
use serde_json::Value;
use spec::SecretSpec;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use url::{CalloutTarget, CalloutUrl};

/// One configuration fault: where (`filters[0].JWT.leewayForExpiresAt`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A remote JWK Set that the root context fetches in the background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSource {
    pub url: String,
    pub target: CalloutTarget,
    /// The shortest `jwksRefreshInterval` of the filters using it.
    pub refresh_interval: Duration,
}

/// Default `jwksRefreshInterval`.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);

/// Shared state while compiling: errors, notices, clusters, environment.
pub struct Compiler<'e> {
    pub errors: Vec<ConfigError>,
    pub notices: Vec<String>,
    pub clusters: BTreeMap<String, String>,
    pub jwks_sources: Vec<JwksSource>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

impl<'e> Compiler<'e> {
    /// A compiler for a configuration naming these `clusters`, reading `fromEnv`
    /// secrets through `env`.
    pub fn new(
        clusters: BTreeMap<String, String>,
        env: &'e dyn Fn(&str) -> Option<String>,
    ) -> Self {
        Compiler {
            errors: Vec::new(),
            notices: Vec::new(),
            clusters,
            jwks_sources: Vec::new(),
            env,
        }
    }
}

impl Compiler<'_> {
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Resolves a secret; a missing environment variable is a config error.
    pub fn secret(&mut self, path: &str, secret: &SecretSpec) -> Option<String> {
        match secret {
            SecretSpec::Literal(s) => Some(s.clone()),
            SecretSpec::FromEnv(name) => match (self.env)(name) {
                Some(v) => Some(v),
                None => {
                    self.error(
                        path,
                        format!("environment variable {name:?} is not set in the Wasm VM (vm_config.environment_variables)"),
                    );
                    None
                }
            },
        }
    }

    /// Parses a callout URL and resolves its cluster.
    pub fn callout(
        &mut self,
        path: &str,
        text: &str,
        default_scheme: Option<&str>,
    ) -> Option<CalloutTarget> {
        match CalloutUrl::parse(text, default_scheme) {
            Ok(url) => Some(CalloutTarget::new(&url, &self.clusters)),
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    /// Registers a remote JWK Set and returns its index (shared by equal URLs).
    pub fn jwks_source(
        &mut self,
        path: &str,
        url: &str,
        refresh_interval: Duration,
    ) -> Option<usize> {
        let target = self.callout(path, url, None)?;
        if let Some(i) = self.jwks_sources.iter().position(|s| s.url == url) {
            if let Some(s) = self.jwks_sources.get_mut(i) {
                s.refresh_interval = s.refresh_interval.min(refresh_interval);
            }
            return Some(i);
        }
        self.jwks_sources.push(JwksSource {
            url: url.to_string(),
            target,
            refresh_interval,
        });
        Some(self.jwks_sources.len() - 1)
    }

    /// Deserializes a JSON value found at `path` (rule `arguments`), reporting
    /// a fault with the full path of the field at fault.
    pub fn deserialize_at<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        value: Value,
    ) -> Option<T> {
        match json_path::deserialize::<T>(&value) {
            Ok(v) => Some(v),
            Err((sub, message)) => {
                let at = if sub == "." {
                    path.to_string()
                } else {
                    format!("{path}.{sub}")
                };
                self.error(at, message);
                None
            }
        }
    }

    pub fn glob(&mut self, path: &str, pattern: &str) -> Option<Glob> {
        match Glob::new(pattern) {
            Ok(g) => Some(g),
            Err(e) => {
                self.error(path, format!("invalid glob {pattern:?}: {e}"));
                None
            }
        }
    }
}
