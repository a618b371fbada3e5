//! TLS for mTLS tests: certificates made at test time ([`Pki`]), a downstream TLS
//! listener for Envoy ([`with_downstream_tls`]) and an HTTPS/1.1 client that can
//! present a client certificate ([`request`]).
//!
//! [`Pki::new`] makes a CA, a server certificate for `localhost`/`127.0.0.1` and a
//! second, untrusted CA, and writes their PEMs into its own temp dir (removed on
//! Drop); [`Pki::client`] issues client certificates with chosen subject and SANs.

use std::fs;
use std::io::{BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::client::{Response, TIMEOUT};
use crate::http::{read_body, read_head};

/// A certificate and its key.
pub struct Issued {
    pub cert: Certificate,
    pub key: KeyPair,
}

impl Issued {
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The DER certificate.
    pub fn der(&self) -> &[u8] {
        self.cert.der()
    }

    /// Lower-case hex SHA-256 of the DER certificate (Envoy's
    /// `connection.sha256_peer_certificate_digest`).
    pub fn sha256_hex(&self) -> String {
        Sha256::digest(self.der())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// RFC 8705 `x5t#S256`: base64url (no padding) SHA-256 of the DER certificate.
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.der()))
    }

    /// The `cnf` claim binding a token to this certificate.
    pub fn cnf(&self) -> Value {
        json!({ "x5t#S256": self.x5t_s256() })
    }
}

/// What a client certificate says about its holder.
#[derive(Debug, Clone, Default)]
pub struct ClientSpec<'a> {
    pub common_name: &'a str,
    pub organization: Option<&'a str>,
    pub dns_sans: &'a [&'a str],
    pub uri_sans: &'a [&'a str],
}

/// The test PKI: a trusted CA with its server certificate, and an untrusted CA.
pub struct Pki {
    dir: PathBuf,
    pub ca: Issued,
    pub server: Issued,
    pub other_ca: Issued,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn key() -> KeyPair {
    KeyPair::generate().expect("generate key pair")
}

fn make_ca(name: &str) -> Issued {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Portcullis Tests");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = key();
    let cert = params.self_signed(&key).expect("self-sign CA");
    Issued { cert, key }
}

fn issue(issuer: &Issued, params: CertificateParams) -> Issued {
    let key = key();
    let cert = params
        .signed_by(&key, &issuer.cert, &issuer.key)
        .expect("sign certificate");
    Issued { cert, key }
}

fn ia5(s: &str) -> rcgen::Ia5String {
    s.try_into()
        .unwrap_or_else(|e| panic!("{s:?} is not IA5: {e}"))
}

impl Pki {
    pub fn new() -> Pki {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("portcullis-pki-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let ca = make_ca("Portcullis Test CA");
        let other_ca = make_ca("Untrusted Test CA");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = issue(&ca, params);
        let pki = Pki {
            dir,
            ca,
            server,
            other_ca,
        };
        pki.write("ca.pem", &pki.ca.cert_pem());
        pki.write("server.pem", &pki.server.cert_pem());
        pki.write("server.key", &pki.server.key_pem());
        pki
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        fs::write(&p, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// A client certificate from the trusted CA (written as `<cn>.pem`/`.key`).
    pub fn client(&self, spec: &ClientSpec<'_>) -> Issued {
        let issued = issue(&self.ca, client_params(spec));
        self.write(&format!("{}.pem", spec.common_name), &issued.cert_pem());
        self.write(&format!("{}.key", spec.common_name), &issued.key_pem());
        issued
    }

    /// A client certificate from the untrusted CA.
    pub fn foreign_client(&self, spec: &ClientSpec<'_>) -> Issued {
        issue(&self.other_ca, client_params(spec))
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn client_params(spec: &ClientSpec<'_>) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    // Envoy (connection.subject_peer_certificate, XFCC) prints the subject as RFC
    // 2253 does, last RDN first: written O then CN, it reads `CN=<cn>,O=<org>`.
    // (rcgen's default params already hold a CN, which would come first.)
    params.distinguished_name = DistinguishedName::new();
    if let Some(o) = spec.organization {
        params.distinguished_name.push(DnType::OrganizationName, o);
    }
    params
        .distinguished_name
        .push(DnType::CommonName, spec.common_name);
    for d in spec.dns_sans {
        params.subject_alt_names.push(SanType::DnsName(ia5(d)));
    }
    for u in spec.uri_sans {
        params.subject_alt_names.push(SanType::URI(ia5(u)));
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params
}

/// The `transport_socket` of a downstream TLS listener: Envoy's server certificate,
/// client certificates validated against the trusted CA, and required or optional
/// (`require_client_certificate`; a presented certificate is validated either way).
pub fn downstream_tls_socket(pki: &Pki, require_client_certificate: bool) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": require_client_certificate,
            "common_tls_context": {
                "tls_certificates": [{
                    "certificate_chain": { "filename": pki.server_cert_path().to_string_lossy() },
                    "private_key": { "filename": pki.server_key_path().to_string_lossy() },
                }],
                "validation_context": {
                    "trusted_ca": { "filename": pki.ca_path().to_string_lossy() },
                },
            },
        },
    })
}

/// Puts a downstream TLS `transport_socket` on the first filter chain of listener
/// `listener` in a YAML built by [`crate::EnvoyConfig::build`] (its
/// `    filter_chains:\n    - filters:` layout). Panics when the listener is not
/// found.
pub fn with_downstream_tls(
    yaml: &str,
    listener: &str,
    pki: &Pki,
    require_client_certificate: bool,
) -> String {
    let name_line = format!("  - name: {}\n", crate::config::yaml_str(listener));
    let start = yaml
        .find(&name_line)
        .unwrap_or_else(|| panic!("no listener {listener:?} in:\n{yaml}"));
    let chain = "    filter_chains:\n    - filters:\n";
    let at = yaml[start..]
        .find(chain)
        .map(|i| i + start)
        .unwrap_or_else(|| panic!("listener {listener:?} has no filter_chains in:\n{yaml}"));
    let socket = downstream_tls_socket(pki, require_client_certificate);
    let mut out = String::with_capacity(yaml.len() + 512);
    out.push_str(&yaml[..at]);
    // A YAML flow mapping: JSON is valid YAML.
    out.push_str(&format!(
        "    filter_chains:\n    - transport_socket: {socket}\n      filters:\n"
    ));
    out.push_str(&yaml[at + chain.len()..]);
    out
}

/// A rustls client configuration trusting the test CA, presenting `client` if given.
pub fn client_config(pki: &Pki, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.ca.der().to_vec()))
        .expect("add CA root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match client {
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(c.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key.serialize_der())),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// One HTTPS/1.1 request to `127.0.0.1:port` (SNI `localhost`), presenting
/// `client` when given. Headers as in [`crate::client::try_request`]. Err on a
/// refused handshake or a protocol error.
pub fn try_request(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);

    let mut msg = format!("{method} {path} HTTP/1.1\r\n");
    let has = |n: &str| headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
    if !has("host") {
        msg.push_str("Host: localhost\r\n");
    }
    for (n, v) in headers {
        msg.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() && !has("content-length") {
        msg.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    msg.push_str("Connection: close\r\n\r\n");
    let mut bytes = msg.into_bytes();
    bytes.extend_from_slice(body);
    stream
        .write_all(&bytes)
        .and_then(|()| stream.flush())
        .map_err(|e| format!("TLS write: {e}"))?;
    let mut reader = BufReader::new(stream);
    loop {
        let head = read_head(&mut reader)
            .map_err(|e| format!("reading response head: {e}"))?
            .ok_or("connection closed before a response")?;
        let status: u16 = head
            .start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {:?}", head.start))?;
        if (100..200).contains(&status) {
            continue;
        }
        let body = if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 {
            Vec::new()
        } else {
            read_body(&mut reader, &head, true).map_err(|e| format!("reading body: {e}"))?
        };
        return Ok(Response {
            status,
            headers: head.headers,
            raw_values: head.raw_values,
            body,
        });
    }
}

/// [`try_request`] that panics on failure.
pub fn request(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    try_request(port, config, method, path, headers, b"")
        .unwrap_or_else(|e| panic!("HTTPS {method} 127.0.0.1:{port}{path} failed: {e}"))
}
