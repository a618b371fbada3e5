//! Emissary `AuthService`s (every version and form) into one External filter
//! that a last catch-all rule runs, as Emissary checks every request no
//! `bypass_auth` exempts. Emissary configures one `ext_authz` filter from all
//! of them: the settings of one, the header lists of all, and their services
//! as endpoints of one cluster it round-robins. AES's own internal
//! AuthService (its filter engine on `127.0.0.1:8500`) is what Portcullis
//! replaces: it is left out.

use super::documents::Object;
use super::{Importer, Provenance};
use serde_json::{json, Value};

/// Where AES's Helm chart points its own AuthService: the `amb-sidecar`
/// process that runs AES's Filters and FilterPolicies (8500), and where
/// Ambassador Pro's sidecar listened (8082).
const ENGINE_PORTS: &[&str] = &["8500", "8082"];
const LOOPBACK_HOSTS: &[&str] = &["127.0.0.1", "localhost", "[::1]", "::1"];
/// The Service names Ambassador Pro's manifests gave its engine.
const PRO_ENGINE_SERVICES: &[&str] = &["ambassador-pro", "ambassador-pro-auth"];

/// Header lists Emissary unions over every AuthService.
const UNIONED: &[&str] = &["allowed_request_headers", "allowed_authorization_headers"];

/// Fields whose value Emissary takes from one AuthService only.
const SINGLE: &[&str] = &[
    "path_prefix",
    "timeout_ms",
    "proto",
    "include_body",
    "status_on_error",
    "failure_mode_allow",
    "add_auth_headers",
    "add_linkerd_headers",
    "protocol_version",
];

/// The External filter made from the AuthServices.
pub(super) struct AuthFilter {
    pub name: String,
    pub entry: Value,
    pub provenance: Provenance,
}

/// Whether `spec` points at AES's (or Ambassador Pro's) own filter engine:
/// a loopback address on its port, or the Service Pro's manifests named it.
pub(super) fn is_aes_engine(spec: &Value) -> bool {
    let Some(service) = spec.get("auth_service").and_then(Value::as_str) else {
        return false;
    };
    let authority = service
        .split_once("://")
        .map_or(service, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, ""));
    if LOOPBACK_HOSTS.contains(&host) {
        return ENGINE_PORTS.contains(&port);
    }
    let service_name = host.split('.').next().unwrap_or_default();
    PRO_ENGINE_SERVICES.contains(&service_name)
}

impl Importer {
    /// One External filter from `services` (in manifest order), named so that
    /// it meets none of `taken` (the Filters' names).
    pub(super) fn auth_filter(
        &mut self,
        services: &[&Object],
        taken: &[String],
    ) -> Option<AuthFilter> {
        let mut external = Vec::new();
        for a in services {
            if is_aes_engine(&a.spec) {
                self.report.push(format!(
                    "{}: left out: auth_service {} is AES's (Ambassador Pro's) own filter engine, which runs its Filters and FilterPolicies; those are imported themselves, and nothing will answer there once Portcullis replaces it",
                    a.place(),
                    a.spec.get("auth_service").and_then(Value::as_str).unwrap_or_default()
                ));
            } else {
                external.push(*a);
            }
        }
        let (first, others) = external.split_first()?;
        let place = first.place();
        if first
            .spec
            .get("auth_service")
            .and_then(Value::as_str)
            .is_none()
        {
            self.refuse(format!("{place}: spec.auth_service: missing"));
            return None;
        }
        let mut spec = self.external(&place, "spec", &first.spec);
        for other in others {
            let other_place = other.place();
            let other_spec = self.external(&other_place, "spec", &other.spec);
            for field in UNIONED {
                let theirs = other_spec.get(*field).and_then(Value::as_array);
                let Some(theirs) = theirs else { continue };
                let list = spec.entry(field.to_string()).or_insert_with(|| json!([]));
                if let Value::Array(list) = list {
                    for h in theirs {
                        let known = list.iter().any(|l| {
                            l.as_str().map(str::to_ascii_lowercase)
                                == h.as_str().map(str::to_ascii_lowercase)
                        });
                        if !known {
                            list.push(h.clone());
                        }
                    }
                }
            }
            for field in SINGLE {
                if other_spec.get(*field).is_some() && other_spec.get(*field) != spec.get(*field) {
                    self.report.push(format!(
                        "{other_place}: spec.{field}: differs from {place}'s: Emissary applies one AuthService's value to every check; {place}'s is imported"
                    ));
                }
            }
        }
        if !others.is_empty() {
            let endpoints: Vec<&str> = external
                .iter()
                .filter_map(|a| a.spec.get("auth_service").and_then(Value::as_str))
                .collect();
            self.report.push(format!(
                "AuthService: {} given: Emissary makes one check from them, sending each request to one of their services in turn ({}); imported as one External filter from {place} (header lists of all): give its Envoy cluster one endpoint per service",
                external.len(),
                endpoints.join(", ")
            ));
        }
        let mut name = first.qualified();
        if taken.contains(&name) {
            name = format!("{name}.AuthService");
            self.report.push(format!(
                "{place}: named {name:?}: a Filter is already {:?}",
                first.qualified()
            ));
        }
        self.report.push(format!(
            "{place}: changed: External filter {name:?}, run by a last catch-all rule (requests a FilterPolicy rule or bypass_auth takes do not reach it)"
        ));
        Some(AuthFilter {
            entry: json!({ "name": name, "External": spec }),
            name,
            provenance: Provenance {
                place,
                field: "spec".to_string(),
                strip: Some("External"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aes_engine_is_loopback_port_8500() {
        for s in ["127.0.0.1:8500", "http://localhost:8500", "127.0.0.1:8500/"] {
            assert!(is_aes_engine(&json!({ "auth_service": s })), "{s}");
        }
        for s in [
            "ambassador-pro",
            "ambassador-pro-auth.default:80",
            "127.0.0.1:8082",
        ] {
            assert!(is_aes_engine(&json!({ "auth_service": s })), "{s}");
        }
        for s in [
            "auth:8500",
            "127.0.0.1:3000",
            "example-auth:3000",
            "ambassador:8500",
        ] {
            assert!(!is_aes_engine(&json!({ "auth_service": s })), "{s}");
        }
    }
}
