//! mTLS end to end: Envoy terminates TLS on listener `main` and validates client
//! certificates against the test CA; the MTLS filter checks subject and SANs and
//! injects headers; a JWT filter with `requireCertificateBinding` checks the
//! token's `cnf` `x5t#S256` against the presented certificate.
//!
//! The handshake tests need no plugin support (Envoy refuses the connection); the
//! rest need the MTLS filter wired into the pipeline and the host reading the
//! `connection.*` properties.

use portcullis_testbed::client::Response;
use portcullis_testbed::config::EnvoyConfig;
use portcullis_testbed::envoy::Envoy;
use portcullis_testbed::servers::{EchoUpstream, Echoed};
use portcullis_testbed::tls::{self, ClientSpec, Issued, Pki};
use portcullis_testbed::tokens;
use serde_json::{json, Value};

const API_URI: &str = "spiffe://example.org/ns/prod/sa/api";

struct Setup {
    pki: Pki,
    /// `CN=api,O=Example`, DNS `api.prod.example.com` + `api.example.com`, URI
    /// [`API_URI`] + `urn:example:api`.
    api: Issued,
    /// `CN=web,O=Example`, DNS `web.example.com`, URI `spiffe://example.org/ns/dev/sa/web`.
    web: Issued,
    /// `CN=api,O=Example` from the untrusted CA.
    foreign: Issued,
}

fn setup() -> Setup {
    let pki = Pki::new();
    let api = pki.client(&ClientSpec {
        common_name: "api",
        organization: Some("Example"),
        dns_sans: &["api.prod.example.com", "api.example.com"],
        uri_sans: &[API_URI, "urn:example:api"],
    });
    let web = pki.client(&ClientSpec {
        common_name: "web",
        organization: Some("Example"),
        dns_sans: &["web.example.com"],
        uri_sans: &["spiffe://example.org/ns/dev/sa/web"],
    });
    let foreign = pki.foreign_client(&ClientSpec {
        common_name: "api",
        organization: Some("Example"),
        dns_sans: &["api.prod.example.com"],
        uri_sans: &[API_URI],
    });
    Setup {
        pki,
        api,
        web,
        foreign,
    }
}

/// Envoy with a TLS listener `main` (client certificates required or optional),
/// the plugin configured with `plugin` when given.
fn start(s: &Setup, echo: &EchoUpstream, require: bool, plugin: Option<Value>) -> Envoy {
    let mut config = EnvoyConfig::new(echo.port());
    if let Some(p) = plugin {
        config = config.plugin(p);
    }
    Envoy::start(&tls::with_downstream_tls(
        &config.build(),
        "main",
        &s.pki,
        require,
    ))
}

fn get(
    envoy: &Envoy,
    s: &Setup,
    cert: Option<&Issued>,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    tls::request(
        envoy.port("main"),
        tls::client_config(&s.pki, cert),
        "GET",
        path,
        headers,
    )
}

fn try_get(envoy: &Envoy, s: &Setup, cert: Option<&Issued>) -> Result<Response, String> {
    let config = tls::client_config(&s.pki, cert);
    tls::try_request(envoy.port("main"), config, "GET", "/", &[], b"")
}

fn assert_denied_403(r: &Response) {
    assert_eq!(r.status, 403, "{}", r.body_str());
    assert_eq!(
        r.json(),
        json!({"message": "client certificate required", "status_code": 403})
    );
}

/// The plugin configuration of the rule-chain tests.
fn chain_config() -> Value {
    json!({
        "filters": [
            { "name": "mtls", "MTLS": {
                "allowedSubjects": ["CN=api,*"],
                "allowedURIs": ["spiffe://example.org/ns/prod/*"],
                "injectRequestHeaders": [
                    { "name": "X-Client-Subject", "value": "{{ .tls.subject }}" },
                    { "name": "X-Client-Sha256", "value": "{{ .tls.sha256 }}" },
                    { "name": "X-Client-Dns", "value": "{{ range $i, $d := .tls.dnsSans }}{{ if $i }},{{ end }}{{ $d }}{{ end }}" },
                    { "name": "X-Client-Uri", "value": "{{ index .tls.uriSans 0 }}" },
                ],
            }},
            { "name": "mtls-dns", "MTLS": { "allowedDNSNames": ["*.prod.example.com"] } },
            { "name": "jwt", "JWT": { "jwks": tokens::jwks() } },
            { "name": "bound", "JWT": {
                "jwks": tokens::jwks(),
                "requireCertificateBinding": true,
                "injectRequestHeaders": [
                    { "name": "X-Bound-Sub", "value": "{{ .token.Claims.sub }}" },
                    { "name": "X-Bound-Cert", "value": "{{ .tls.sha256 }}" },
                ],
            }},
        ],
        "rules": [
            { "path": "/internal/*", "filters": [{ "name": "mtls" }] },
            { "path": "/dns/*", "filters": [{ "name": "mtls-dns" }] },
            { "path": "/api/*", "filters": [{ "name": "jwt" }] },
            { "path": "/admin/*", "filters": [{ "name": "mtls" }, { "name": "jwt" }] },
            { "path": "/bound/*", "filters": [{ "name": "bound" }] },
        ],
    })
}

// --- Handshake: Envoy alone (pass without plugin support) ---------------------

#[test]
fn handshake_refuses_certificate_from_untrusted_ca() {
    let s = setup();
    let echo = EchoUpstream::start();
    let envoy = start(&s, &echo, true, None);
    let err = try_get(&envoy, &s, Some(&s.foreign)).expect_err("untrusted certificate accepted");
    assert!(!err.is_empty());
    // The trusted one goes through on the same listener.
    assert_eq!(try_get(&envoy, &s, Some(&s.api)).map(|r| r.status), Ok(200));
}

#[test]
fn handshake_refuses_missing_certificate_when_required() {
    let s = setup();
    let echo = EchoUpstream::start();
    let envoy = start(&s, &echo, true, None);
    let err = try_get(&envoy, &s, None).expect_err("no certificate accepted");
    assert!(!err.is_empty());
}

#[test]
fn optional_listener_accepts_no_certificate_but_validates_presented_ones() {
    let s = setup();
    let echo = EchoUpstream::start();
    let envoy = start(&s, &echo, false, None);
    assert_eq!(try_get(&envoy, &s, None).map(|r| r.status), Ok(200));
    assert_eq!(try_get(&envoy, &s, Some(&s.api)).map(|r| r.status), Ok(200));
    assert!(try_get(&envoy, &s, Some(&s.foreign)).is_err());
}

/// Envoy's own view of the certificate (XFCC, built from the same
/// `Ssl::ConnectionInfo` the `connection.*` properties read): the subject format
/// the MTLS filter's `allowedSubjects` globs are written against.
#[test]
fn envoy_reports_subject_in_cn_first_form() {
    let s = setup();
    let echo = EchoUpstream::start();
    let yaml = tls::with_downstream_tls(
        &EnvoyConfig::new(echo.port()).build(),
        "main",
        &s.pki,
        true,
    )
    .replacen(
        "          stat_prefix: \"main\"\n",
        "          stat_prefix: \"main\"\n          forward_client_cert_details: SANITIZE_SET\n          set_current_client_cert_details: { subject: true, dns: true, uri: true }\n",
        1,
    );
    let envoy = Envoy::start(&yaml);
    let r = get(&envoy, &s, Some(&s.api), "/xfcc", &[]);
    assert_eq!(r.status, 200, "{}", r.body_str());
    let seen = Echoed::parse(&r.body);
    let xfcc = seen.header("x-forwarded-client-cert").unwrap_or_default();
    assert!(
        xfcc.contains("Subject=\"CN=api,O=Example\""),
        "XFCC: {xfcc}"
    );
    assert!(
        xfcc.contains(&format!("Hash={}", s.api.sha256_hex())),
        "XFCC: {xfcc}"
    );
    assert!(xfcc.contains(&format!("URI={API_URI}")), "XFCC: {xfcc}");
    assert!(xfcc.contains("DNS=api.prod.example.com"), "XFCC: {xfcc}");
}

// --- The MTLS filter (need the filter wired and the host reading properties) --

#[test]
fn allowed_subject_passes_with_injected_headers() {
    let s = setup();
    let echo = EchoUpstream::start();
    let envoy = start(&s, &echo, true, Some(chain_config()));
    let r = get(
        &envoy,
        &s,
        Some(&s.api),
        "/internal/x",
        &[("X-Client-Subject", "CN=forged")],
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let seen = Echoed::parse(&r.body);
    assert_eq!(
        seen.headers_all("x-client-subject"),
        vec!["CN=api,O=Example"]
    );
    let sha = s.api.sha256_hex();
    assert_eq!(seen.header("x-client-sha256"), Some(sha.as_str()));
    // Every DNS SAN (Envoy's `dns_san_peer_certificate` holds only the first; the
    // host reads them all from `connection.peer_certificate`).
    assert_eq!(
        seen.header("x-client-dns"),
        Some("api.prod.example.com,api.example.com")
    );
    assert_eq!(seen.header("x-client-uri"), Some(API_URI));
}

#[test]
fn disallowed_subject_and_sans_get_403() {
    let s = setup();
    let echo = EchoUpstream::start();
    let envoy = start(&s, &echo, true, Some(chain_config()));
    // `web`: subject CN=web, URI in ns/dev: neither list matches.
    assert_denied_403(&get(&envoy, &s, Some(&s.web), "/internal/x", &[]));
    // DNS list: api.prod.example.com matches, web.example.com does not.
    assert_eq!(get(&envoy, &s, Some(&s.api), "/dns/x", &[]).status, 200);
    assert_denied_403(&get(&envoy, &s, Some(&s.web), "/dns/x", &[]));
}

#[test]
fn rule_chains_mtls_jwt_and_both() {
    let s = setup();
    let echo = EchoUpstream::start();
    let envoy = start(&s, &echo, true, Some(chain_config()));
    let token = tokens::valid("RS256", json!({}));
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];

    // /internal/*: the certificate alone.
    assert_eq!(
        get(&envoy, &s, Some(&s.api), "/internal/a", &[]).status,
        200
    );
    // /api/*: JWT only; any verified certificate gets through the handshake.
    assert_eq!(get(&envoy, &s, Some(&s.web), "/api/a", &auth).status, 200);
    assert_eq!(get(&envoy, &s, Some(&s.web), "/api/a", &[]).status, 401);
    // /admin/*: both.
    assert_eq!(get(&envoy, &s, Some(&s.api), "/admin/a", &auth).status, 200);
    assert_eq!(get(&envoy, &s, Some(&s.api), "/admin/a", &[]).status, 401);
    assert_denied_403(&get(&envoy, &s, Some(&s.web), "/admin/a", &auth));
}

#[test]
fn certificate_bound_token() {
    let s = setup();
    let echo = EchoUpstream::start();
    let envoy = start(&s, &echo, true, Some(chain_config()));
    let token = tokens::valid("RS256", json!({ "sub": "bound-user", "cnf": s.api.cnf() }));
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];

    let r = get(&envoy, &s, Some(&s.api), "/bound/a", &auth);
    assert_eq!(r.status, 200, "{}", r.body_str());
    let seen = Echoed::parse(&r.body);
    assert_eq!(seen.header("x-bound-sub"), Some("bound-user"));
    let sha = s.api.sha256_hex();
    assert_eq!(seen.header("x-bound-cert"), Some(sha.as_str()));

    // The same token over another (trusted) certificate.
    let r = get(&envoy, &s, Some(&s.web), "/bound/a", &auth);
    assert_eq!(r.status, 401, "{}", r.body_str());
    let www = r.header("www-authenticate").unwrap_or_default();
    assert!(www.contains("error=\"invalid_token\""), "{www}");

    // A token with no `cnf`.
    let plain = format!("Bearer {}", tokens::valid("RS256", json!({})));
    let r = get(
        &envoy,
        &s,
        Some(&s.api),
        "/bound/a",
        &[("Authorization", &plain)],
    );
    assert_eq!(r.status, 401, "{}", r.body_str());
}

#[test]
fn optional_listener_without_certificate() {
    let s = setup();
    let echo = EchoUpstream::start();
    let envoy = start(&s, &echo, false, Some(chain_config()));
    // MTLS routes (requireClientCertificate defaults to true): 403.
    assert_denied_403(&get(&envoy, &s, None, "/internal/a", &[]));
    // With a certificate: as on the required listener.
    assert_eq!(
        get(&envoy, &s, Some(&s.api), "/internal/a", &[]).status,
        200
    );
    // JWT-only routes do not care.
    let bearer = format!("Bearer {}", tokens::valid("RS256", json!({})));
    assert_eq!(
        get(&envoy, &s, None, "/api/a", &[("Authorization", &bearer)]).status,
        200
    );
    // A bound token without any certificate: 401.
    let bound = format!(
        "Bearer {}",
        tokens::valid("RS256", json!({ "cnf": s.api.cnf() }))
    );
    assert_eq!(
        get(&envoy, &s, None, "/bound/a", &[("Authorization", &bound)]).status,
        401
    );
}
