//! The MTLS filter: Envoy terminates TLS and validates the client certificate's
//! chain; this filter decides whether the certificate Envoy reports (subject, SANs,
//! SHA-256) is one the route accepts, and injects headers describing it.
//!
//! Decisions:
//! - `requireClientCertificate: true` (the default): no certificate, or one not
//!   verified by Envoy, is refused with 403.
//! - `requireClientCertificate: false`: a request without a certificate passes;
//!   `injectRequestHeaders` are rendered with `.tls` absent (so
//!   `{{ with .tls }}{{ .subject }}{{ else }}{{ doNotSet }}{{ end }}` leaves the
//!   header out, and a plain `{{ .tls.subject }}` renders Go's `<no value>`). A
//!   certificate that *is* presented must still be verified and, when any allowed*
//!   list is given, match it: an optional certificate is never a way around the lists.
//! - Matching: any glob of `allowedSubjects` matching the subject (as Envoy prints
//!   it, RFC 2253: `CN=api,O=Example`), or of `allowedDNSNames` matching any DNS
//!   SAN (case-insensitively), or of `allowedURIs` matching any URI SAN, passes.
//!   All lists empty: any verified certificate passes.

use crate::compile::spec::HeaderTemplateSpec;
use crate::compile::{Compiler, ConfigError};
use crate::glob::Glob;
use crate::inject::{render_injected, HeaderTemplate};
use crate::request::{Request, TlsInfo};
use crate::response::{HeaderChange, Response};
use crate::template::RenderData;
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MtlsSpec {
    pub require_client_certificate: Option<bool>,
    #[serde(default)]
    pub allowed_subjects: Vec<String>,
    #[serde(default, rename = "allowedDNSNames")]
    pub allowed_dns_names: Vec<String>,
    #[serde(default, rename = "allowedURIs")]
    pub allowed_uris: Vec<String>,
    #[serde(default)]
    pub inject_request_headers: Vec<HeaderTemplateSpec>,
}

/// The message of the 403 every refusal gets.
pub const DENIED_MESSAGE: &str = "client certificate required";

/// A compiled MTLS filter.
#[derive(Debug)]
pub struct MtlsFilter {
    pub require_client_certificate: bool,
    subjects: Vec<Glob>,
    /// Compiled lower-cased; matched against lower-cased DNS SANs.
    dns_names: Vec<Glob>,
    uris: Vec<Glob>,
    pub inject: Vec<HeaderTemplate>,
}

impl MtlsFilter {
    pub fn compile(c: &mut Compiler<'_>, path: &str, spec: &MtlsSpec) -> Option<MtlsFilter> {
        let errors_before = c.errors.len();
        let inject = HeaderTemplate::compile_list(
            c,
            &format!("{path}.injectRequestHeaders"),
            &spec.inject_request_headers,
        );
        let templates_ok = c.errors.len() == errors_before;
        compile_parts(path, spec, inject, &mut c.errors).filter(|_| templates_ok)
    }

    /// Names of the headers this filter injects (removed from client requests).
    pub fn injected_names(&self) -> impl Iterator<Item = &str> {
        self.inject.iter().map(|t| t.name.as_str())
    }

    /// `Ok` with the injected headers when the request's certificate is acceptable
    /// (or absent and optional); the 403 otherwise.
    pub fn check(&self, request: &Request) -> Result<Vec<HeaderChange>, Response> {
        let tls = request.tls.as_ref().filter(|t| presented(t));
        match tls {
            None if self.require_client_certificate => return Err(denied()),
            None => {}
            Some(t) if !t.verified || !self.allows(t) => return Err(denied()),
            Some(_) => {}
        }
        let root = tls_data(tls);
        let data = RenderData {
            root: &root,
            headers: request.headers_as_sent(),
        };
        Ok(render_injected(&self.inject, &data))
    }

    /// Whether a certificate matches the allowed lists (all empty: any matches).
    fn allows(&self, tls: &TlsInfo) -> bool {
        if self.subjects.is_empty() && self.dns_names.is_empty() && self.uris.is_empty() {
            return true;
        }
        self.subjects.iter().any(|g| g.is_match(&tls.subject))
            || tls.dns_sans.iter().any(|san| {
                let san = san.to_ascii_lowercase();
                self.dns_names.iter().any(|g| g.is_match(&san))
            })
            || tls
                .uri_sans
                .iter()
                .any(|san| self.uris.iter().any(|g| g.is_match(san)))
    }
}

/// Whether the host reported a client certificate at all: verified, or carrying a
/// subject or digest (a presented certificate that is not verified).
fn presented(tls: &TlsInfo) -> bool {
    tls.verified || !tls.sha256.is_empty() || !tls.subject.is_empty()
}

fn denied() -> Response {
    Response::json_error(403, DENIED_MESSAGE)
}

/// The compilation after `injectRequestHeaders`, on the part of a [`Compiler`] it
/// uses (so that it can be tested without one). `None` when it added an error.
fn compile_parts(
    path: &str,
    spec: &MtlsSpec,
    inject: Vec<HeaderTemplate>,
    errors: &mut Vec<ConfigError>,
) -> Option<MtlsFilter> {
    let errors_before = errors.len();
    let subjects = compile_globs(
        errors,
        &format!("{path}.allowedSubjects"),
        &spec.allowed_subjects,
        false,
    );
    let dns_names = compile_globs(
        errors,
        &format!("{path}.allowedDNSNames"),
        &spec.allowed_dns_names,
        true,
    );
    let uris = compile_globs(
        errors,
        &format!("{path}.allowedURIs"),
        &spec.allowed_uris,
        false,
    );
    if errors.len() != errors_before {
        return None;
    }
    Some(MtlsFilter {
        require_client_certificate: spec.require_client_certificate.unwrap_or(true),
        subjects,
        dns_names,
        uris,
        inject,
    })
}

/// Globs at `path[i]` (the message `Compiler::glob` gives); DNS names lower-cased.
fn compile_globs(
    errors: &mut Vec<ConfigError>,
    path: &str,
    patterns: &[String],
    lower: bool,
) -> Vec<Glob> {
    let mut out = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if pattern.is_empty() {
            errors.push(ConfigError {
                path: at,
                message: "must not be empty".to_string(),
            });
            continue;
        }
        let pattern = if lower {
            pattern.to_ascii_lowercase()
        } else {
            pattern.clone()
        };
        match Glob::new(&pattern) {
            Ok(g) => out.push(g),
            Err(e) => errors.push(ConfigError {
                path: at,
                message: format!("invalid glob {pattern:?}: {e}"),
            }),
        }
    }
    out
}

/// The template dot of an MTLS filter: `{"tls": {...}}` (the shape JWT templates
/// get, see `jwt::filter::token_data`), or `{}` without a certificate.
pub fn tls_data(tls: Option<&TlsInfo>) -> Value {
    let mut root = Map::new();
    if let Some(tls) = tls {
        root.insert("tls".to_string(), tls_value(tls));
    }
    Value::Object(root)
}

/// `.tls`: subject, dnsSans, uriSans, sha256 (hex), verified.
pub fn tls_value(tls: &TlsInfo) -> Value {
    json!({
        "subject": tls.subject,
        "dnsSans": tls.dns_sans,
        "uriSans": tls.uri_sans,
        "sha256": tls.sha256,
        "verified": tls.verified,
    })
}

/// The DNS and URI SANs of the first certificate in `pem`, which may be
/// percent-encoded (Envoy's `connection.peer_certificate` is documented as
/// "URL-encoded PEM"; Envoy 1.40 hands the Wasm host plain PEM). `None` when it
/// is not a readable X.509 certificate. Envoy's `connection.dns_san_peer_certificate`
/// and `connection.uri_san_peer_certificate` hold only the first of each; this gives
/// them all. Only the structure down to the SAN extension is read (the chain was
/// already validated by Envoy).
pub fn peer_certificate_sans(pem: &str) -> Option<(Vec<String>, Vec<String>)> {
    let der = pem_to_der(pem)?;
    let (tag, cert, _) = der_tlv(&der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = der_tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let mut dns = Vec::new();
    let mut uris = Vec::new();
    while !tbs.is_empty() {
        let (tag, content, rest) = der_tlv(tbs)?;
        tbs = rest;
        if tag != 0xa3 {
            continue; // version, serial, algorithms, names, validity, key, unique ids
        }
        let (tag, mut extensions, _) = der_tlv(content)?;
        if tag != 0x30 {
            return None;
        }
        while !extensions.is_empty() {
            let (_, extension, rest) = der_tlv(extensions)?;
            extensions = rest;
            let (tag, oid, mut fields) = der_tlv(extension)?;
            // subjectAltName, 2.5.29.17
            if tag != 0x06 || oid != [0x55, 0x1d, 0x11] {
                continue;
            }
            let mut value = None;
            while !fields.is_empty() {
                let (tag, content, rest) = der_tlv(fields)?;
                fields = rest;
                if tag == 0x04 {
                    value = Some(content);
                }
            }
            let (tag, mut names, _) = der_tlv(value?)?;
            if tag != 0x30 {
                return None;
            }
            while !names.is_empty() {
                let (tag, content, rest) = der_tlv(names)?;
                names = rest;
                let text = || String::from_utf8_lossy(content).into_owned();
                match tag {
                    0x82 => dns.push(text()),  // [2] dNSName
                    0x86 => uris.push(text()), // [6] uniformResourceIdentifier
                    _ => {}
                }
            }
        }
    }
    Some((dns, uris))
}

/// One DER element: (tag, content, rest). Single-byte tags; definite lengths.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let mut len = 0usize;
        for _ in 0..count {
            let (&b, r) = rest.split_first()?;
            len = (len << 8) | usize::from(b);
            rest = r;
        }
        len
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

/// The first `CERTIFICATE` block of a (possibly percent-encoded) PEM, as DER.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let decoded;
    let pem = if pem.contains('%') {
        decoded = percent_decode(pem)?;
        decoded.as_str()
    } else {
        pem
    };
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin)? + begin.len();
    let body = pem.get(start..)?;
    let end = body.find("-----END CERTIFICATE-----")?;
    let b64: String = body
        .get(..end)?
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(b64).ok()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Headers;
    use crate::template::Template;

    fn spec(json: Value) -> MtlsSpec {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("spec: {e}"))
    }

    /// What `HeaderTemplate::compile_list` makes of valid specs.
    fn templates(specs: &[HeaderTemplateSpec]) -> Vec<HeaderTemplate> {
        specs
            .iter()
            .map(|h| HeaderTemplate {
                name: h.name.to_ascii_lowercase(),
                template: Template::parse(&h.value).unwrap_or_else(|e| panic!("template: {e}")),
            })
            .collect()
    }

    fn compile(json: Value) -> Result<MtlsFilter, Vec<ConfigError>> {
        let s = spec(json);
        let mut errors = Vec::new();
        let inject = templates(&s.inject_request_headers);
        compile_parts("filters[0].MTLS", &s, inject, &mut errors).ok_or(errors)
    }

    fn filter(json: Value) -> MtlsFilter {
        compile(json).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn cert() -> TlsInfo {
        TlsInfo {
            verified: true,
            subject: "CN=api,OU=payments,O=Example".to_string(),
            dns_sans: vec![
                "api.prod.example.com".to_string(),
                "API.example.com".to_string(),
            ],
            uri_sans: vec!["spiffe://example.org/ns/prod/sa/api".to_string()],
            sha256: "ab".repeat(32),
        }
    }

    fn request(tls: Option<TlsInfo>) -> Request {
        Request {
            tls,
            headers: Headers::new(vec![("x-trace".to_string(), "t1".to_string())]),
            ..Request::default()
        }
    }

    fn is_denied(r: Result<Vec<HeaderChange>, Response>) -> bool {
        match r {
            Err(resp) => {
                assert_eq!(resp.status, 403);
                let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
                assert_eq!(
                    body,
                    json!({"message": "client certificate required", "status_code": 403})
                );
                true
            }
            Ok(_) => false,
        }
    }

    #[test]
    fn mtls_no_certificate_is_denied_by_default() {
        let f = filter(json!({}));
        assert!(f.require_client_certificate);
        assert!(is_denied(f.check(&request(None))));
        // TLS without a peer certificate, reported as an empty TlsInfo.
        assert!(is_denied(f.check(&request(Some(TlsInfo::default())))));
    }

    #[test]
    fn mtls_unverified_certificate_is_denied() {
        let f = filter(json!({"requireClientCertificate": false}));
        let mut c = cert();
        c.verified = false;
        assert!(is_denied(f.check(&request(Some(c)))));
    }

    #[test]
    fn mtls_any_verified_certificate_passes_without_lists() {
        let f = filter(json!({}));
        assert_eq!(f.check(&request(Some(cert()))).ok(), Some(vec![]));
    }

    #[test]
    fn mtls_subject_glob() {
        let f = filter(json!({"allowedSubjects": ["CN=web,*", "CN=api,*O=Example"]}));
        assert!(f.check(&request(Some(cert()))).is_ok());
        let f = filter(json!({"allowedSubjects": ["CN=web,*"]}));
        assert!(is_denied(f.check(&request(Some(cert())))));
    }

    #[test]
    fn mtls_dns_glob_matches_any_san_case_insensitively() {
        let f = filter(json!({"allowedDNSNames": ["*.PROD.example.com"]}));
        assert!(f.check(&request(Some(cert()))).is_ok());
        let f = filter(json!({"allowedDNSNames": ["api.example.com"]}));
        assert!(
            f.check(&request(Some(cert()))).is_ok(),
            "second SAN, other case"
        );
        let f = filter(json!({"allowedDNSNames": ["*.staging.example.com"]}));
        assert!(is_denied(f.check(&request(Some(cert())))));
    }

    #[test]
    fn mtls_uri_glob() {
        let f = filter(json!({"allowedURIs": ["spiffe://example.org/ns/prod/*"]}));
        assert!(f.check(&request(Some(cert()))).is_ok());
        let f = filter(json!({"allowedURIs": ["spiffe://example.org/ns/dev/*"]}));
        assert!(is_denied(f.check(&request(Some(cert())))));
    }

    #[test]
    fn mtls_any_list_matching_passes() {
        let f = filter(json!({
            "allowedSubjects": ["CN=nobody"],
            "allowedDNSNames": ["nothing.example"],
            "allowedURIs": ["spiffe://example.org/ns/prod/sa/api"],
        }));
        assert!(f.check(&request(Some(cert()))).is_ok());
    }

    #[test]
    fn mtls_optional_certificate() {
        let f = filter(json!({
            "requireClientCertificate": false,
            "allowedSubjects": ["CN=web,*"],
            "injectRequestHeaders": [
                {"name": "X-Client-Subject", "value": "{{ with .tls }}{{ .subject }}{{ else }}{{ doNotSet }}{{ end }}"},
                {"name": "X-Has-Cert", "value": "{{ if .tls }}yes{{ else }}no{{ end }}"},
            ],
        }));
        // No certificate: passes, `.tls` absent.
        let changes = f.check(&request(None)).unwrap_or_else(|_| panic!("denied"));
        assert_eq!(
            changes,
            vec![HeaderChange::set("x-has-cert", "no".to_string())]
        );
        // A presented certificate must still match.
        assert!(is_denied(f.check(&request(Some(cert())))));
        let mut web = cert();
        web.subject = "CN=web,O=Example".to_string();
        let changes = f
            .check(&request(Some(web)))
            .unwrap_or_else(|_| panic!("denied"));
        assert_eq!(
            changes,
            vec![
                HeaderChange::set("x-client-subject", "CN=web,O=Example".to_string()),
                HeaderChange::set("x-has-cert", "yes".to_string()),
            ]
        );
    }

    #[test]
    fn mtls_injects_tls_data_and_request_headers() {
        let f = filter(json!({
            "injectRequestHeaders": [
                {"name": "X-Client-Subject", "value": "{{ .tls.subject }}"},
                {"name": "X-Client-Sha256", "value": "{{ .tls.sha256 }}"},
                {"name": "X-Client-Dns", "value": "{{ index .tls.dnsSans 0 }}"},
                {"name": "X-Client-Uri", "value": "{{ range .tls.uriSans }}{{ . }};{{ end }}"},
                {"name": "X-Verified", "value": "{{ .tls.verified }}"},
                {"name": "X-Trace-Copy", "value": "{{ .httpRequestHeader.Get \"X-Trace\" }}"},
            ],
        }));
        let names: Vec<&str> = f.injected_names().collect();
        assert_eq!(names.first(), Some(&"x-client-subject"));
        assert_eq!(names.len(), 6);
        let changes = f
            .check(&request(Some(cert())))
            .unwrap_or_else(|_| panic!("denied"));
        let got: Vec<(String, String)> = changes
            .into_iter()
            .map(|c| {
                (
                    c.name,
                    String::from_utf8(c.value.unwrap_or_default()).unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = [
            (
                "x-client-subject",
                "CN=api,OU=payments,O=Example".to_string(),
            ),
            ("x-client-sha256", "ab".repeat(32)),
            ("x-client-dns", "api.prod.example.com".to_string()),
            (
                "x-client-uri",
                "spiffe://example.org/ns/prod/sa/api;".to_string(),
            ),
            ("x-verified", "true".to_string()),
            ("x-trace-copy", "t1".to_string()),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn mtls_compile_errors_name_json_paths() {
        let errors = match compile(json!({
            "allowedSubjects": ["CN=ok", "CN={unclosed"],
            "allowedDNSNames": [""],
            "allowedURIs": ["spiffe://[z-a"],
        })) {
            Ok(_) => panic!("compiled"),
            Err(e) => e,
        };
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "filters[0].MTLS.allowedSubjects[1]",
                "filters[0].MTLS.allowedDNSNames[0]",
                "filters[0].MTLS.allowedURIs[0]",
            ]
        );
        assert!(errors[0].message.starts_with("invalid glob"), "{errors:?}");
    }

    #[test]
    fn mtls_tls_data_shape() {
        assert_eq!(tls_data(None), json!({}));
        let v = tls_data(Some(&cert()));
        assert_eq!(v["tls"]["dnsSans"][1], "API.example.com");
        assert_eq!(v["tls"]["verified"], true);
    }
    /// openssl-made: subject O=Example/CN=api; SANs DNS api.prod.example.com,
    /// DNS api.example.com, URI spiffe://example.org/ns/prod/sa/api,
    /// URI urn:example:api, IP 10.0.0.1, email a@example.com.
    const SAN_CERT: &str = "-----BEGIN CERTIFICATE-----
MIICFjCCAbygAwIBAgIUYvFn3eB1wIi10CDG4t0cijrrRI8wCgYIKoZIzj0EAwIw
IDEQMA4GA1UECgwHRXhhbXBsZTEMMAoGA1UEAwwDYXBpMCAXDTI2MTEyMjA4NDUw
MloYDzIxMjYxMDI5MDg0NTAyWjAgMRAwDgYDVQQKDAdFeGFtcGxlMQwwCgYDVQQD
DANhcGkwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQjdAzmqOXfy4uLzJL3ylR6
8YfuMxXEKRg0VyOaRSzZpA8lRJlc8sGtIrOdseCd//VTJ2qeUBexMXlrd1cEMRvi
o4HRMIHOMB0GA1UdDgQWBBQo+FakLje6RmzGq15+l78zzez4IzAfBgNVHSMEGDAW
gBQo+FakLje6RmzGq15+l78zzez4IzAPBgNVHRMBAf8EBTADAQH/MHsGA1UdEQR0
MHKCFGFwaS5wcm9kLmV4YW1wbGUuY29tgg9hcGkuZXhhbXBsZS5jb22GI3NwaWZm
ZTovL2V4YW1wbGUub3JnL25zL3Byb2Qvc2EvYXBphg91cm46ZXhhbXBsZTphcGmH
BAoAAAGBDWFAZXhhbXBsZS5jb20wCgYIKoZIzj0EAwIDSAAwRQIhAOwbi0/uKyhb
li4A40muvVjHNob5iujl0YKqdknwUQO6AiBJbtOFXCopP9NR5babmbz7OIRqDxWa
cMjsI//E7wVqIg==
-----END CERTIFICATE-----
";

    #[test]
    fn mtls_peer_certificate_sans_reads_every_dns_and_uri() {
        let want = (
            vec![
                "api.prod.example.com".to_string(),
                "api.example.com".to_string(),
            ],
            vec![
                "spiffe://example.org/ns/prod/sa/api".to_string(),
                "urn:example:api".to_string(),
            ],
        );
        assert_eq!(peer_certificate_sans(SAN_CERT), Some(want.clone()));
        // Percent-encoded, as the attribute is documented.
        let encoded = SAN_CERT
            .replace('\n', "%0A")
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
            .replace(' ', "%20");
        assert_eq!(peer_certificate_sans(&encoded), Some(want));
    }

    #[test]
    fn mtls_peer_certificate_sans_rejects_garbage() {
        assert_eq!(peer_certificate_sans(""), None);
        assert_eq!(peer_certificate_sans("not a pem"), None);
        let truncated = SAN_CERT.replace("cMjsI//E7wVqIg==", "");
        assert_eq!(peer_certificate_sans(&truncated), None);
        // An empty SEQUENCE is no certificate; SEQUENCE { SEQUENCE {} } has no SANs.
        let pem =
            |b64: &str| format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----");
        assert_eq!(peer_certificate_sans(&pem("MAA=")), None);
        assert_eq!(
            peer_certificate_sans(&pem("MAIwAA==")),
            Some((vec![], vec![]))
        );
    }
}
