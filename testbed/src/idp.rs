//! A real OpenID Provider for the OAuth2 tests: `node testbed/idp/idp.mjs`
//! (the npm package `oidc-provider`, installed by `scripts/setup` with `npm ci`),
//! started on `127.0.0.1` with the clients a test registers, killed on Drop (and
//! when the test process exits: it reads a pipe from this process and stops at EOF).
//!
//! Login is oidc-provider's development interaction: any login and password, the
//! login becomes `sub`. [`Idp::login_headless`] drives it with plain HTTP through an
//! [`Agent`] (cookie jar, redirects), [`crate::browser::Browser`] with Chromium.
//!
//! Node: `PORTCULLIS_NODE`, else `node` on `PATH`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::browserless::{forms, Agent, Hop, Url};
use crate::client::{self, Response};
use crate::envoy::repo_root;

/// How long the IdP may take to print its ready line (2 busy cores, Node start).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The callback path Portcullis serves on every protected origin.
pub const REDIRECTION_ENDPOINT: &str = "/.portcullis/oauth2/redirection-endpoint";
/// Portcullis's logout path.
pub const LOGOUT_ENDPOINT: &str = "/.portcullis/oauth2/logout";

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// RFC 7523 / OIDC Core §9 `private_key_jwt`: a JWT signed with the
    /// client's private key, whose public JWK Set is [`IdpClient::jwks`].
    PrivateKeyJwt,
    /// OIDC Core §9 `client_secret_jwt`: a JWT signed with HMAC and the secret.
    ClientSecretJwt,
}

/// A client registered at the IdP.
#[derive(Debug, Clone)]
pub struct IdpClient {
    pub id: String,
    pub secret: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub auth_method: AuthMethod,
    /// Default `authorization_code` + `refresh_token`.
    pub grant_types: Vec<String>,
    /// Overrides [`IdpOptions::access_ttl`] for this client.
    pub access_ttl: Option<Duration>,
    pub id_token_ttl: Option<Duration>,
    /// A `groups` claim of ~6 KB in this client's ID tokens (and userinfo).
    pub large_tokens: bool,
    /// The client's public JWK Set (`private_key_jwt`).
    pub jwks: Option<Value>,
}

impl IdpClient {
    /// A confidential web client (`client_secret_basic`) for these origins
    /// (`http://127.0.0.1:PORT`): redirect URI `<origin>/.portcullis/oauth2/redirection-endpoint`,
    /// post-logout URIs `<origin>/` and `<origin>/logged-out`.
    pub fn web(id: &str, secret: &str, origins: &[String]) -> IdpClient {
        IdpClient {
            id: id.into(),
            secret: secret.into(),
            redirect_uris: origins
                .iter()
                .map(|o| format!("{o}{REDIRECTION_ENDPOINT}"))
                .collect(),
            post_logout_redirect_uris: origins
                .iter()
                .flat_map(|o| [format!("{o}/"), format!("{o}/logged-out")])
                .collect(),
            auth_method: AuthMethod::ClientSecretBasic,
            jwks: None,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            access_ttl: None,
            id_token_ttl: None,
            large_tokens: false,
        }
    }

    /// A client for the `client_credentials` grant only.
    pub fn service(id: &str, secret: &str) -> IdpClient {
        IdpClient {
            grant_types: vec!["client_credentials".into()],
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            ..IdpClient::web(id, secret, &[])
        }
    }

    /// Registers these redirect URIs exactly (replacing the defaults).
    pub fn redirect_uris(mut self, uris: &[&str]) -> Self {
        self.redirect_uris = uris.iter().map(|u| u.to_string()).collect();
        self
    }

    pub fn post_logout_redirect_uris(mut self, uris: &[&str]) -> Self {
        self.post_logout_redirect_uris = uris.iter().map(|u| u.to_string()).collect();
        self
    }

    /// Requires `private_key_jwt` with a key of `jwks` (a public JWK Set).
    pub fn private_key_jwt(mut self, jwks: Value) -> Self {
        self.auth_method = AuthMethod::PrivateKeyJwt;
        self.jwks = Some(jwks);
        self
    }

    pub fn auth_method(mut self, m: AuthMethod) -> Self {
        self.auth_method = m;
        self
    }

    pub fn access_ttl(mut self, ttl: Duration) -> Self {
        self.access_ttl = Some(ttl);
        self
    }

    pub fn id_token_ttl(mut self, ttl: Duration) -> Self {
        self.id_token_ttl = Some(ttl);
        self
    }

    pub fn large_tokens(mut self, yes: bool) -> Self {
        self.large_tokens = yes;
        self
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "client_id": self.id,
            "client_secret": self.secret,
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
            "token_endpoint_auth_method": match self.auth_method {
                AuthMethod::ClientSecretBasic => "client_secret_basic",
                AuthMethod::ClientSecretPost => "client_secret_post",
                AuthMethod::PrivateKeyJwt => "private_key_jwt",
                AuthMethod::ClientSecretJwt => "client_secret_jwt",
            },
            "grant_types": self.grant_types,
            "large_tokens": self.large_tokens,
        });
        if let Some(jwks) = &self.jwks {
            v["jwks"] = jwks.clone();
        }
        if let Some(t) = self.access_ttl {
            v["access_ttl"] = json!(t.as_secs().max(1));
        }
        if let Some(t) = self.id_token_ttl {
            v["id_token_ttl"] = json!(t.as_secs().max(1));
        }
        v
    }
}

/// What [`Idp::start`] runs.
#[derive(Debug, Clone, Default)]
pub struct IdpOptions {
    pub clients: Vec<IdpClient>,
    /// Access token lifetime (default 1 h).
    pub access_ttl: Option<Duration>,
    /// ID token lifetime (default 1 h).
    pub id_token_ttl: Option<Duration>,
    /// A `groups` claim of ~6 KB in every client's ID tokens (and userinfo).
    pub large_tokens: bool,
    /// Grants the requested scopes at login (no consent page).
    pub skip_consent: bool,
    /// 0 (default): any free port.
    pub port: u16,
}

/// A running oidc-provider.
pub struct Idp {
    child: Option<Child>,
    /// Held open: the IdP exits when it closes (this process ended).
    _stdin: Option<ChildStdin>,
    issuer: String,
    port: u16,
    log: Arc<Mutex<String>>,
}

/// `testbed/idp`, where `idp.mjs` and its `node_modules` live.
pub fn idp_dir() -> PathBuf {
    repo_root().join("testbed/idp")
}

/// The Node.js binary: `PORTCULLIS_NODE`, else `node`.
pub fn node_bin() -> String {
    std::env::var("PORTCULLIS_NODE")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// A free loopback port, for a listener that must be known before it starts (an
/// Envoy whose origin the IdP registers). Bound and released: a caller retries on
/// the rare "address in use".
pub fn free_port() -> u16 {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"))
}

/// A PKCE pair `(code_verifier, S256 code_challenge)`, fresh per call.
pub fn pkce_pair() -> (String, String) {
    let verifier = b64url(&random_bytes(32));
    let challenge = b64url(&Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Unpredictable enough for test states, nonces and keys: SHA-256 over the time, a
/// counter, the process id and a stack address.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CTR: AtomicU64 = AtomicU64::new(0);
    let mut out = Vec::new();
    while out.len() < n {
        let mut h = Sha256::new();
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let local = 0u8;
        h.update(t.to_le_bytes());
        h.update(CTR.fetch_add(1, Ordering::SeqCst).to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        h.update((&local as *const u8 as usize).to_le_bytes());
        out.extend_from_slice(&h.finalize());
    }
    out.truncate(n);
    out
}

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A `sessionKeys` entry: 32 random bytes, standard base64.
pub fn session_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(random_bytes(32))
}

/// The claims of a JWT (no signature check), or Null.
pub fn jwt_claims(token: &str) -> Value {
    token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// What [`Idp::login_headless`] went through.
#[derive(Debug, Clone)]
pub struct HeadlessLogin {
    /// Every request, in order (forms posted included).
    pub hops: Vec<Hop>,
    /// The redirect back to the client (`...?code=...&state=...`), when one came.
    pub callback_url: Option<String>,
    /// The URL of the last response (or of the redirect not followed).
    pub final_url: String,
    /// The last response.
    pub response: Response,
}

impl HeadlessLogin {
    /// The authorization request (the first redirect to the IdP's `/auth`), if any.
    pub fn authorization_url(&self) -> Option<&str> {
        self.hops
            .iter()
            .map(|h| h.url.as_str())
            .find(|u| Url::parse(u).is_some_and(|u| u.path_only() == "/auth"))
    }
}

impl Idp {
    /// Starts the IdP; panics (with its output) when it is not ready in time.
    pub fn start(options: IdpOptions) -> Idp {
        let script = idp_dir().join("idp.mjs");
        assert!(
            idp_dir().join("node_modules/oidc-provider").is_dir(),
            "{} has no node_modules/oidc-provider: run scripts/setup (npm ci in testbed/idp)",
            idp_dir().display()
        );
        let mut cfg = json!({
            "clients": options.clients.iter().map(IdpClient::to_json).collect::<Vec<_>>(),
            "large_tokens": options.large_tokens,
            "skip_consent": options.skip_consent,
        });
        if let Some(t) = options.access_ttl {
            cfg["access_ttl"] = json!(t.as_secs().max(1));
        }
        if let Some(t) = options.id_token_ttl {
            cfg["id_token_ttl"] = json!(t.as_secs().max(1));
        }
        let mut child = Command::new(node_bin())
            .arg(&script)
            .arg(options.port.to_string())
            .current_dir(idp_dir())
            .env("IDP_CONFIG", cfg.to_string())
            .env("IDP_EXIT_ON_STDIN_EOF", "1")
            .env("NODE_ENV", "development")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} {}: {e} (Node.js 20+ is needed)",
                    node_bin(),
                    script.display()
                )
            });
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for (stream, ready) in [
            (Box::new(stdout) as Box<dyn std::io::Read + Send>, Some(tx)),
            (Box::new(stderr), None),
        ] {
            let log = log.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let (Some(tx), Some(issuer)) = (&ready, line.strip_prefix("IDP READY ")) {
                        let _ = tx.send(issuer.trim().to_string());
                    }
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let stdin = child.stdin.take();
        let mut idp = Idp {
            child: Some(child),
            _stdin: stdin,
            issuer: String::new(),
            port: 0,
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(issuer) => {
                    idp.port = Url::parse(&issuer)
                        .map(|u| u.port)
                        .unwrap_or_else(|| panic!("bad issuer {issuer:?}"));
                    idp.issuer = issuer;
                    return idp;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(Duration::from_millis(200));
                    panic!("the IdP exited before it was ready:\n{}", idp.log());
                }
            }
            if let Some(Ok(Some(status))) = idp.child.as_mut().map(|c| c.try_wait()) {
                thread::sleep(Duration::from_millis(200));
                panic!(
                    "the IdP exited before it was ready ({status}):\n{}",
                    idp.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "the IdP was not ready after {START_TIMEOUT:?}:\n{}",
                    idp.log()
                );
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The plugin's `clusters` key for the IdP: `127.0.0.1:PORT`.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The discovery document.
    pub fn discovery(&self) -> Value {
        client::get(
            self.port,
            "/.well-known/openid-configuration",
            &[("Host", &self.authority())],
        )
        .json()
    }

    /// Everything the IdP printed: one line per request (`IDP POST /token -> 200`).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many lines of the log contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits (bounded) until the log has at least `n` lines containing `needle`.
    pub fn wait_for_log(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.log_count(needle) < n {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Stops the IdP now (a test of the IdP being down); the port then refuses
    /// connections.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self._stdin = None;
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// An endpoint from discovery, as a path on this IdP (e.g. `/token`).
    fn endpoint_path(&self, key: &str) -> String {
        let url = self.discovery()[key]
            .as_str()
            .unwrap_or_else(|| panic!("discovery has no {key}"))
            .to_string();
        Url::parse(&url)
            .map(|u| u.path)
            .unwrap_or_else(|| panic!("{key} {url:?} is not an http URL"))
    }

    /// GETs the UserInfo endpoint with `access_token` as a Bearer token.
    pub fn userinfo(&self, access_token: &str) -> Response {
        let bearer = format!("Bearer {access_token}");
        client::get(
            self.port,
            &self.endpoint_path("userinfo_endpoint"),
            &[("Host", &self.authority()), ("Authorization", &bearer)],
        )
    }

    /// POSTs a form to the token endpoint with HTTP Basic client authentication (or
    /// the credentials in the body with `post_auth`); the JSON answer and status.
    pub fn token_request(
        &self,
        client_id: &str,
        secret: &str,
        post_auth: bool,
        fields: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut f: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let basic;
        let mut headers = vec![
            ("Host", self.authority()),
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_string(),
            ),
        ];
        if post_auth {
            f.push(("client_id".into(), client_id.into()));
            f.push(("client_secret".into(), secret.into()));
        } else {
            use crate::browserless::percent_encode;
            basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                percent_encode(client_id),
                percent_encode(secret)
            ));
            headers.push(("Authorization", format!("Basic {basic}")));
        }
        let body = crate::browserless::form_encode(&f);
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = client::request(
            self.port,
            "POST",
            &self.endpoint_path("token_endpoint"),
            &h,
            body.as_bytes(),
        );
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    }

    /// Follows `start_url` (e.g. a protected app URL behind Portcullis, or an
    /// authorization request) through the IdP's login (`user`, any password) and
    /// consent pages and back to the client's redirect URI, which is requested too,
    /// and on through any further redirects. Panics when the IdP shows an error page.
    pub fn login_headless(&self, agent: &mut Agent, start_url: &str, user: &str) -> HeadlessLogin {
        self.drive(agent, start_url, user, false)
    }

    /// Like [`Idp::login_headless`], but stops before requesting the client's
    /// redirect URI: `callback_url` is the URL carrying `code` and `state`, not yet
    /// visited (for replay and forgery tests).
    pub fn authorize_headless(
        &self,
        agent: &mut Agent,
        start_url: &str,
        user: &str,
    ) -> HeadlessLogin {
        self.drive(agent, start_url, user, true)
    }

    fn is_callback(&self, u: &Url) -> bool {
        u.origin() != self.issuer
            && (u.query_param("code").is_some() || u.query_param("error").is_some())
            && u.query_param("state").is_some()
    }

    fn drive(
        &self,
        agent: &mut Agent,
        start_url: &str,
        user: &str,
        stop_at_callback: bool,
    ) -> HeadlessLogin {
        let mut all: Vec<Hop> = Vec::new();
        let mut callback_url = None;
        let mut url = start_url.to_string();
        let mut response = agent.get(&url);
        for _ in 0..8 {
            let stop = |u: &Url| stop_at_callback && self.is_callback(u);
            let (hops, next) = agent.follow_until(&url, response.clone(), &stop);
            for h in &hops {
                if let Some(u) = Url::parse(&h.url).filter(|u| self.is_callback(u)) {
                    callback_url = Some(u.to_string());
                }
            }
            let last = hops.last().cloned().expect("a hop");
            all.extend(hops);
            if let Some(next) = next {
                if Url::parse(&next).is_some_and(|u| self.is_callback(&u)) {
                    callback_url = Some(next.clone());
                }
                return HeadlessLogin {
                    hops: all,
                    callback_url,
                    final_url: next,
                    response: last.response,
                };
            }
            let on_idp = Url::parse(&last.url).is_some_and(|u| u.origin() == self.issuer);
            let html = last.response.body_str();
            if on_idp && html.contains("IdP error") {
                panic!("the IdP answered an error page at {}: {html}", last.url);
            }
            let form = forms(&html).into_iter().find(|f| {
                f.method == "post"
                    && (f.has_input("prompt") || f.hidden().iter().any(|(n, _)| n == "xsrf"))
            });
            let Some(form) = form.filter(|_| on_idp && last.response.status == 200) else {
                return HeadlessLogin {
                    hops: all,
                    callback_url,
                    final_url: last.url,
                    response: last.response,
                };
            };
            let mut fields = form.hidden();
            if form.has_input("login") {
                fields.push(("login".into(), user.into()));
                fields.push(("password".into(), "any-password".into()));
            }
            let base = Url::parse(&last.url).expect("hop URL");
            url = base.join(&form.action);
            response = agent.post_form(&url, &fields, &[]);
            all.push(Hop {
                method: "POST".into(),
                url: url.clone(),
                response: response.clone(),
            });
        }
        panic!(
            "headless login did not finish after 8 forms: {:?}",
            all.iter()
                .map(|h| format!("{} {} {}", h.method, h.response.status, h.url))
                .collect::<Vec<_>>()
        );
    }

    /// An authorization request URL for `client_id` (code flow, PKCE S256), with the
    /// PKCE verifier, state and nonce used.
    pub fn authorization_request(
        &self,
        client_id: &str,
        redirect_uri: &str,
        scope: &str,
    ) -> AuthorizationRequest {
        let (verifier, challenge) = pkce_pair();
        let state = b64url(&random_bytes(16));
        let nonce = b64url(&random_bytes(16));
        let fields = [
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("scope", scope),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let url = format!(
            "{}{}?{}",
            self.issuer,
            self.endpoint_path("authorization_endpoint"),
            crate::browserless::form_encode(&fields)
        );
        AuthorizationRequest {
            url,
            verifier,
            state,
            nonce,
        }
    }
}

/// See [`Idp::authorization_request`].
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub url: String,
    pub verifier: String,
    pub state: String,
    pub nonce: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- IdP log ({}), last 60 lines ---\n{}\n--- end of IdP log ---",
                self.issuer,
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}
