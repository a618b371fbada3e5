//! Secrets out of the configuration: each Secret value (or literal secret in
//! a Filter) gets an environment variable of the Envoy VM, read with
//! `{"fromEnv": NAME}`; the values go to `secrets.env`, never to the
//! configuration or standard output.

use super::documents::Object;
use super::Importer;

/// An environment variable name for a Secret's key: `PORTCULLIS_<NS>_<NAME>_<KEY>`.
fn env_name(namespace: &str, name: &str, key: &str) -> String {
    format!("PORTCULLIS_{namespace}_{name}_{key}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

impl Importer {
    pub(super) fn secret(&self, namespace: &str, name: &str) -> Option<&Object> {
        // The later of two with one name, as `kubectl apply` leaves it.
        self.secrets
            .iter()
            .rev()
            .find(|s| s.name == name && s.namespace == namespace)
    }

    /// The environment variable for key `key` of `source` (`"Secret"` for a
    /// Kubernetes Secret `namespace/name`, `"Filter"` for a literal in that
    /// Filter): `PORTCULLIS_<NS>_<NAME>_<KEY>`, upper-cased, every other
    /// character `_`. Distinct sources always get distinct variables: when
    /// that name is already another source's (`api.keys` and `api-keys`,
    /// `team-a`/`keys` and `team`/`a-keys`), `_` and the first hex digits of
    /// the SHA-256 of the source's identity are appended (and the collision
    /// reported), so the first in manifest order keeps the plain name.
    pub(super) fn var(&mut self, source: &str, namespace: &str, name: &str, key: &str) -> String {
        use sha2::Digest as _;
        let base = env_name(namespace, name, key);
        // Kubernetes names and Secret keys hold no space or `/`: one string per source.
        let id = format!("{source} {namespace}/{name} key {key}");
        let digest = sha2::Sha256::digest(id.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02X}")).collect();
        let mut var = base.clone();
        // 8 hex digits, more should those collide too.
        let mut len = 8;
        loop {
            match self.var_sources.get(&var) {
                None => {
                    self.var_sources.insert(var.clone(), id);
                    break;
                }
                Some(owner) if *owner == id => break,
                Some(owner) => {
                    if var == base {
                        self.report.push(format!(
                            "{id}: environment variable {base} is already {owner}'s: this one gets a suffix"
                        ));
                    }
                    var = format!("{base}_{}", hex.get(..len).unwrap_or(&hex));
                    len = (len + 8).min(hex.len());
                }
            }
        }
        var
    }

    /// Records that `var` holds `value` (or that its value is missing). A
    /// value with a line break or NUL cannot be written as one line of
    /// `secrets.env` (an env file: `KEY=value` per line; a break would cut the
    /// value and start another variable): it is left out and reported, and the
    /// variable listed for the user to fill in.
    pub(super) fn bind(&mut self, var: &str, value: Option<&String>) {
        match value {
            Some(v) if v.contains(['\n', '\r', '\0']) => {
                self.report.push(format!(
                    "environment variable {var}: its Secret value holds a line break or NUL, which an env file cannot carry: not written to secrets.env; set {var} in the VM environment yourself"
                ));
                if !self.env_missing.iter().any(|m| m == var) {
                    self.env_missing.push(var.to_string());
                }
            }
            Some(v) => {
                self.env.insert(var.to_string(), v.clone());
            }
            None => {
                if !self.env_missing.iter().any(|m| m == var) {
                    self.env_missing.push(var.to_string());
                }
            }
        }
    }
}
