//! A scripted OpenID Provider for the OpenID Foundation's Relying Party test
//! plans (Basic RP and Config RP, `response_type=code`), written from the
//! public test descriptions: each test ID is an issuer of its own,
//! `http://127.0.0.1:PORT/<test id>`, that behaves correctly or misbehaves in
//! the one way its test describes (an [`OpScript`]). One loopback server serves
//! every test ID, as the certification OP does ("it is all in the URL").
//!
//! Per issuer it serves, strictly (a client that errs gets the error a real
//! OP gives, never a lenient pass):
//! - `/.well-known/openid-configuration` (OIDC Discovery 1.0 §4), endpoints
//!   at the paths the script names;
//! - the JWK Set (`jwks_uri`);
//! - `authorize`: the client's authorization request must be the code flow
//!   (`response_type=code`, `openid` in `scope`, the registered `client_id` and
//!   `redirect_uri`, `state`, PKCE S256); the user is approved at once and the
//!   browser sent to `redirect_uri` with `code` and `state`;
//! - `token`: `client_secret_basic` only (RFC 6749 §2.3.1: both parts
//!   form-urlencoded before base64), the code once, the same `redirect_uri`, the
//!   PKCE verifier; answers the access token (opaque, or a JWT when the script
//!   says), the ID token shaped by the script, `expires_in`;
//! - `userinfo`: the access token in `Authorization: Bearer` only (OIDC Core
//!   §5.3.1), answering `sub` and the claims of the granted scopes.
//!
//! Every request is recorded ([`ConformanceOp::requests_to`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::browserless::{percent_decode, query_param};
use crate::idp::{random_bytes, REDIRECTION_ENDPOINT};
use crate::servers::{Reply, Request, ScriptedServer};
use crate::tokens::{
    b64, header, jwk, merge, now, sign_hmac_token, sign_token, tamper_signature, unsigned,
};

/// The client every test ID registers (static registration).
pub const CLIENT_ID: &str = "portcullis-rp";
/// Its secret: characters that must be form-urlencoded in Basic credentials.
pub const CLIENT_SECRET: &str = "s3cret:with/odd+chars";
/// The end user the OP approves.
pub const SUB: &str = "conformance-user";
/// The UserInfo answer's e-mail (scope `email`).
pub const EMAIL: &str = "user@conformance.example";

/// [`OpScript::signing_key`] for an HS256/384/512 ID token keyed with the
/// client secret (OIDC Core §10.1).
pub const CLIENT_SECRET_KEY: &str = "client-secret";

/// How one test ID's OP behaves. [`OpScript::default`] is a correct OP.
#[derive(Debug, Clone)]
pub struct OpScript {
    /// The keys the JWK Set publishes (testbed key names, see [`crate::tokens`]).
    pub jwks: Vec<Value>,
    /// The key that signs ID tokens; `None`: unsigned (`alg: none`).
    pub signing_key: Option<&'static str>,
    pub alg: &'static str,
    /// The ID token header's `kid`; `None`: no `kid`.
    pub kid: Option<String>,
    /// Flip a bit of the ID token's signature.
    pub bad_signature: bool,
    /// Merged over the ID token's claims (`null` removes one).
    pub id_token_claims: Value,
    /// Merged over the UserInfo answer (`null` removes one).
    pub userinfo_claims: Value,
    /// The discovery document's `issuer`, when not the issuer URL itself.
    pub discovery_issuer: Option<String>,
    /// Endpoint paths under the issuer.
    pub authorize_path: String,
    pub token_path: String,
    pub userinfo_path: String,
    pub jwks_path: String,
    /// Status of the JWK Set endpoint (a failing refetch).
    pub jwks_status: u16,
    /// Sign the access token as a JWT with this key and `kid` (else opaque).
    pub jwt_access_token: Option<(&'static str, String)>,
}

impl Default for OpScript {
    fn default() -> OpScript {
        OpScript {
            jwks: vec![jwk("rsa1")],
            signing_key: Some("rsa1"),
            alg: "RS256",
            kid: Some("rsa1".to_string()),
            bad_signature: false,
            id_token_claims: Value::Null,
            userinfo_claims: Value::Null,
            discovery_issuer: None,
            authorize_path: "/authorize".to_string(),
            token_path: "/token".to_string(),
            userinfo_path: "/userinfo".to_string(),
            jwks_path: "/jwks".to_string(),
            jwks_status: 200,
            jwt_access_token: None,
        }
    }
}

/// A code the OP issued, waiting for its exchange.
#[derive(Debug, Clone)]
struct Grant {
    test: String,
    redirect_uri: String,
    nonce: Option<String>,
    challenge: String,
    scope: String,
}

#[derive(Default)]
struct State {
    /// The origins whose callback is a registered `redirect_uri`.
    origins: Vec<String>,
    scripts: HashMap<String, OpScript>,
    codes: HashMap<String, Grant>,
    /// Access token → (test ID, scope).
    access_tokens: HashMap<String, (String, String)>,
    /// Test ID → the tokens issued, in order.
    issued: HashMap<String, Vec<Value>>,
}

/// The scripted OP. Stops on Drop.
pub struct ConformanceOp {
    server: ScriptedServer,
    state: Arc<Mutex<State>>,
}

impl Default for ConformanceOp {
    fn default() -> Self {
        ConformanceOp::start()
    }
}

impl ConformanceOp {
    pub fn start() -> ConformanceOp {
        let server = ScriptedServer::start();
        let state = Arc::new(Mutex::new(State::default()));
        let port = server.port();
        let s = state.clone();
        server.set_default_fn(move |req| answer(&s, port, req));
        ConformanceOp { server, state }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `127.0.0.1:PORT`, for the plugin's `clusters`.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// The issuer URL of `test` (the filter's `authorizationURL`).
    pub fn issuer(&self, test: &str) -> String {
        format!("http://127.0.0.1:{}/{test}", self.port())
    }

    /// Registers `<origin>/.portcullis/oauth2/redirection-endpoint` as a redirect URI.
    pub fn register_origin(&self, origin: &str) {
        self.with(|s| s.origins.push(origin.to_string()));
    }

    /// Sets (or replaces: a key rotation) how `test` behaves.
    pub fn script(&self, test: &str, script: OpScript) {
        self.with(|s| s.scripts.insert(test.to_string(), script));
    }

    /// Changes `test`'s script in place.
    pub fn update(&self, test: &str, f: impl FnOnce(&mut OpScript)) {
        self.with(|s| {
            if let Some(script) = s.scripts.get_mut(test) {
                f(script)
            }
        });
    }

    /// Requests to `test`'s endpoint `path` (e.g. `/token`), in order.
    pub fn requests_to(&self, test: &str, path: &str) -> Vec<Request> {
        self.server.requests_to(&format!("/{test}{path}"))
    }

    /// Waits until `test`'s endpoint `path` got at least `n` requests.
    pub fn wait_for_requests(&self, test: &str, path: &str, n: usize, timeout: Duration) -> bool {
        self.server
            .wait_for_requests(&format!("/{test}{path}"), n, timeout)
    }

    /// The token answers `test` gave (`access_token`, `id_token`, ...), in order.
    pub fn issued(&self, test: &str) -> Vec<Value> {
        self.with(|s| s.issued.get(test).cloned().unwrap_or_default())
    }
}

fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(
        status,
        &json!({ "error": error, "error_description": description }),
    )
    .header("cache-control", "no-store")
}

fn random_token() -> String {
    b64(&random_bytes(24))
}

/// Form fields of an `application/x-www-form-urlencoded` body.
fn form_field(body: &str, name: &str) -> Option<String> {
    query_param(&format!("?{body}"), name)
}

fn answer(state: &Mutex<State>, port: u16, req: &Request) -> Reply {
    let path = req.path_only().to_string();
    let Some((test, rest)) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .map(|(t, r)| (t.to_string(), format!("/{r}")))
    else {
        return Reply::json(404, &json!({"error": "no test ID in the path"}));
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let Some(script) = s.scripts.get(&test).cloned() else {
        return Reply::json(404, &json!({"error": "unknown test ID", "test": test}));
    };
    let issuer = format!("http://127.0.0.1:{port}/{test}");
    if rest == "/.well-known/openid-configuration" {
        return discovery(&issuer, &script);
    }
    if rest == script.jwks_path {
        if script.jwks_status != 200 {
            return Reply::json(script.jwks_status, &json!({"error": "scripted failure"}));
        }
        return Reply::json(200, &json!({ "keys": script.jwks }));
    }
    if rest == script.authorize_path {
        return authorize(&mut s, &test, req);
    }
    if rest == script.token_path {
        return token(&mut s, &test, &issuer, &script, req);
    }
    if rest == script.userinfo_path {
        return userinfo(&s, &test, &script, req);
    }
    Reply::json(
        404,
        &json!({"error": "not an endpoint of this OP", "path": path}),
    )
}

fn discovery(issuer: &str, script: &OpScript) -> Reply {
    Reply::json(
        200,
        &json!({
            "issuer": script.discovery_issuer.clone().unwrap_or_else(|| issuer.to_string()),
            "authorization_endpoint": format!("{issuer}{}", script.authorize_path),
            "token_endpoint": format!("{issuer}{}", script.token_path),
            "userinfo_endpoint": format!("{issuer}{}", script.userinfo_path),
            "jwks_uri": format!("{issuer}{}", script.jwks_path),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [script.alg],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "name", "email", "email_verified"],
        }),
    )
}

/// OIDC Core §3.1.2: the code flow's authorization request, approved at once.
fn authorize(s: &mut State, test: &str, req: &Request) -> Reply {
    let q = |name: &str| query_param(&req.path, name);
    let redirect_uri = q("redirect_uri").unwrap_or_default();
    let registered = s
        .origins
        .iter()
        .any(|o| format!("{o}{REDIRECTION_ENDPOINT}") == redirect_uri);
    // Never redirect to an unregistered URI (RFC 6749 §4.1.2.1): a page.
    if q("client_id").as_deref() != Some(CLIENT_ID) || !registered {
        return Reply::text(400, "unknown client_id or unregistered redirect_uri");
    }
    let state = q("state").unwrap_or_default();
    let back = |params: &[(&str, &str)]| {
        let mut query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::browserless::percent_encode(v)))
            .collect();
        if !state.is_empty() {
            query.push(format!(
                "state={}",
                crate::browserless::percent_encode(&state)
            ));
        }
        Reply::new(302).header("location", &format!("{redirect_uri}?{}", query.join("&")))
    };
    if q("response_type").as_deref() != Some("code") {
        return back(&[("error", "unsupported_response_type")]);
    }
    let scope = q("scope").unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return back(&[
            ("error", "invalid_scope"),
            ("error_description", "no openid"),
        ]);
    }
    if state.is_empty() {
        return back(&[
            ("error", "invalid_request"),
            ("error_description", "no state"),
        ]);
    }
    let challenge = q("code_challenge").unwrap_or_default();
    if q("code_challenge_method").as_deref() != Some("S256") || challenge.len() < 43 {
        return back(&[
            ("error", "invalid_request"),
            ("error_description", "PKCE S256 required"),
        ]);
    }
    let code = random_token();
    s.codes.insert(
        code.clone(),
        Grant {
            test: test.to_string(),
            redirect_uri: redirect_uri.clone(),
            nonce: q("nonce"),
            challenge,
            scope,
        },
    );
    back(&[("code", &code)])
}

/// RFC 6749 §2.3.1 `client_secret_basic`: `Basic base64(urlencode(id):urlencode(secret))`.
fn client_authenticated(req: &Request) -> bool {
    let Some(encoded) = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let text = String::from_utf8_lossy(&decoded).into_owned();
    let Some((id, secret)) = text.split_once(':') else {
        return false;
    };
    percent_decode(id) == CLIENT_ID && percent_decode(secret) == CLIENT_SECRET
}

fn token(s: &mut State, test: &str, issuer: &str, script: &OpScript, req: &Request) -> Reply {
    if req.method != "POST"
        || !req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        return oauth_error(400, "invalid_request", "POST a form");
    }
    let body = req.body_str();
    if !client_authenticated(req) || form_field(&body, "client_secret").is_some() {
        return oauth_error(401, "invalid_client", "client_secret_basic only")
            .header("www-authenticate", "Basic realm=\"conformance\"");
    }
    if form_field(&body, "grant_type").as_deref() != Some("authorization_code") {
        return oauth_error(400, "unsupported_grant_type", "code flow only");
    }
    let code = form_field(&body, "code").unwrap_or_default();
    // A code is good once (RFC 6749 §4.1.2).
    let Some(grant) = s.codes.remove(&code).filter(|g| g.test == test) else {
        return oauth_error(400, "invalid_grant", "unknown or used code");
    };
    if form_field(&body, "redirect_uri").as_deref() != Some(grant.redirect_uri.as_str()) {
        return oauth_error(400, "invalid_grant", "redirect_uri differs");
    }
    let verifier = form_field(&body, "code_verifier").unwrap_or_default();
    if b64(&Sha256::digest(verifier.as_bytes())) != grant.challenge {
        return oauth_error(400, "invalid_grant", "PKCE verifier does not match");
    }
    let now = now();
    let mut claims = json!({
        "iss": issuer, "sub": SUB, "aud": CLIENT_ID,
        "iat": now, "exp": now + 300, "auth_time": now,
    });
    if let Some(nonce) = &grant.nonce {
        claims["nonce"] = json!(nonce);
    }
    let claims = merge(claims, script.id_token_claims.clone());
    let id_token = match script.signing_key {
        None => unsigned(json!({"alg": "none"}), claims),
        // OIDC Core §10.1: an HMAC alg is keyed with the client secret.
        Some(CLIENT_SECRET_KEY) => sign_hmac_token(
            CLIENT_SECRET.as_bytes(),
            &header(script.alg, script.kid.as_deref(), &Value::Null),
            &claims,
        ),
        Some(key) => {
            let signed = sign_token(
                key,
                &header(script.alg, script.kid.as_deref(), &Value::Null),
                &claims,
            );
            if script.bad_signature {
                tamper_signature(&signed)
            } else {
                signed
            }
        }
    };
    let access_token = match &script.jwt_access_token {
        None => random_token(),
        Some((key, kid)) => sign_token(
            key,
            &header("RS256", Some(kid), &Value::Null),
            &json!({ "iss": issuer, "sub": SUB, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                     "scope": grant.scope, "jti": random_token() }),
        ),
    };
    s.access_tokens.insert(
        access_token.clone(),
        (test.to_string(), grant.scope.clone()),
    );
    let answer = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
        "scope": grant.scope,
    });
    s.issued
        .entry(test.to_string())
        .or_default()
        .push(answer.clone());
    Reply::json(200, &answer)
        .header("cache-control", "no-store")
        .header("pragma", "no-cache")
}

/// OIDC Core §5.3: the claims of the granted scopes, for a Bearer header only.
fn userinfo(s: &State, test: &str, script: &OpScript, req: &Request) -> Reply {
    let refuse = || {
        Reply::json(401, &json!({"error": "invalid_token"})).header(
            "www-authenticate",
            "Bearer error=\"invalid_token\", realm=\"conformance\"",
        )
    };
    let Some(token) = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return refuse();
    };
    let Some((owner, scope)) = s.access_tokens.get(token.trim()) else {
        return refuse();
    };
    if owner != test {
        return refuse();
    }
    let mut claims = json!({ "sub": SUB });
    let scopes: Vec<&str> = scope.split(' ').collect();
    if scopes.contains(&"profile") {
        claims["name"] = json!("Conformance User");
    }
    if scopes.contains(&"email") {
        claims["email"] = json!(EMAIL);
        claims["email_verified"] = json!(true);
    }
    Reply::json(200, &merge(claims, script.userinfo_claims.clone()))
}
