//! Scripted OpenID Providers with the quirks of the IdP families users have,
//! where `oidc-provider` (strict, [`crate::idp`]) cannot produce them. Each is a
//! [`ScriptedServer`] on loopback speaking just enough OIDC: discovery, JWKS
//! (`testdata/jwks.json`, tokens signed with `rsa1`), an authorization endpoint
//! that signs in at once (a single sign-on session: no login page), a token
//! endpoint (authorization code with PKCE S256, refresh), UserInfo and, where the
//! family has one, an end-session endpoint.
//!
//! | profile | quirks |
//! |---|---|
//! | [`Profile::Azure`] | access token with the v1 issuer `https://sts.windows.net/<tenant>/` and another API's audience; UserInfo refuses it (401); an ID token carrying ~10 KB of `groups` and a `login_hint` |
//! | [`Profile::Okta`] | refresh-token rotation (an old refresh token is refused); refresh answers without `id_token`; `expires_in` as a string |
//! | [`Profile::Google`] | opaque access tokens; no `end_session_endpoint`; a refresh token only on the first consent of a user and client |
//!
//! [`QuirkyIdp::expires_in`] sets the access token lifetime it announces (0: an
//! IdP whose tokens expire at once).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::browserless::{percent_encode, Url};
use crate::servers::{Reply, Request, ScriptedServer};
use crate::tokens;

/// The IdP family a [`QuirkyIdp`] behaves like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Azure,
    Okta,
    Google,
}

/// The Azure-like profile's tenant (in the v1 issuer of its access tokens).
pub const AZURE_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
/// The user every login signs in (a single sign-on session).
pub const QUIRKY_USER: &str = "alice";

#[derive(Debug, Default)]
struct State {
    /// code → (client_id, redirect_uri, nonce, code_challenge)
    codes: HashMap<String, (String, String, String, String)>,
    /// Refresh tokens that still work.
    refresh: HashSet<String>,
    /// Users and clients that consented once (Google: a refresh token only then).
    consented: HashSet<String>,
    counter: u64,
    expires_in: u64,
}

impl State {
    fn next(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("{what}-{}-{}", self.counter, tokens::now())
    }
}

/// A running scripted IdP.
pub struct QuirkyIdp {
    server: ScriptedServer,
    profile: Profile,
    state: Arc<Mutex<State>>,
}

impl QuirkyIdp {
    /// Starts an IdP of `profile` announcing `expires_in` seconds for access tokens.
    pub fn start(profile: Profile, expires_in: u64) -> QuirkyIdp {
        let server = ScriptedServer::start();
        let state = Arc::new(Mutex::new(State {
            expires_in,
            ..State::default()
        }));
        let issuer = format!("http://127.0.0.1:{}", server.port());
        let mut discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "jwks_uri": format!("{issuer}/jwks"),
            "end_session_endpoint": format!("{issuer}/logout"),
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        if profile == Profile::Google {
            if let Some(d) = discovery.as_object_mut() {
                d.remove("end_session_endpoint");
            }
        }
        server.set(
            "/.well-known/openid-configuration",
            Reply::json(200, &discovery),
        );
        let jwks: Value = serde_json::from_str(include_str!("../../testdata/jwks.json"))
            .unwrap_or_else(|e| panic!("testdata/jwks.json: {e}"));
        server.set("/jwks", Reply::json(200, &jwks));
        let s = state.clone();
        server.set_fn("/authorize", move |req| authorize(&s, req));
        let (s, iss) = (state.clone(), issuer.clone());
        server.set_fn("/token", move |req| token(&s, profile, &iss, req));
        server.set_fn("/userinfo", move |req| userinfo(profile, req));
        server.set_fn("/logout", |req| {
            let back = crate::browserless::query_param(&req.path, "post_logout_redirect_uri");
            match back {
                Some(uri) => Reply::new(302).header("location", &uri),
                None => Reply::text(200, "signed out"),
            }
        });
        QuirkyIdp {
            server,
            profile,
            state,
        }
    }

    /// From now on its discovery document names no `userinfo_endpoint` (as
    /// Azure AD B2C's; OpenID Connect Discovery makes it only RECOMMENDED), and
    /// `/userinfo` answers 404.
    pub fn without_userinfo(self) -> QuirkyIdp {
        let issuer = self.issuer();
        let mut discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        if self.profile != Profile::Google {
            if let Some(d) = discovery.as_object_mut() {
                d.insert(
                    "end_session_endpoint".into(),
                    json!(format!("{issuer}/logout")),
                );
            }
        }
        self.server.set(
            "/.well-known/openid-configuration",
            Reply::json(200, &discovery),
        );
        self.server
            .set("/userinfo", Reply::text(404, "no such endpoint"));
        self
    }

    /// `http://127.0.0.1:PORT` (also the issuer).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The plugin's `clusters` key for this IdP.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }

    /// Every request the IdP received.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// How many requests went to `path`.
    pub fn count(&self, path: &str) -> usize {
        self.server.count(path)
    }

    /// Changes the announced access token lifetime from now on.
    pub fn expires_in(&self, seconds: u64) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expires_in = seconds;
    }
}

fn form(body: &[u8]) -> Url {
    let text = String::from_utf8_lossy(body);
    Url::parse(&format!("http://form/?{text}")).unwrap_or_else(|| panic!("form {text:?}"))
}

fn client_id(req: &Request, form: &Url) -> String {
    if let Some(basic) = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&decoded).into_owned();
        let id = text.split(':').next().unwrap_or("");
        return crate::browserless::percent_decode(id);
    }
    form.query_param("client_id").unwrap_or_default()
}

fn oauth_error(status: u16, error: &str) -> Reply {
    Reply::json(status, &json!({ "error": error }))
}

/// Signs in at once (single sign-on) and sends the browser back with a code.
fn authorize(state: &Mutex<State>, req: &Request) -> Reply {
    let q = |k: &str| crate::browserless::query_param(&req.path, k);
    let (Some(client), Some(redirect), Some(st), Some(challenge)) = (
        q("client_id"),
        q("redirect_uri"),
        q("state"),
        q("code_challenge"),
    ) else {
        return Reply::text(
            400,
            "client_id, redirect_uri, state and code_challenge are required",
        );
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let code = s.next("code");
    s.codes.insert(
        code.clone(),
        (
            client,
            redirect.clone(),
            q("nonce").unwrap_or_default(),
            challenge,
        ),
    );
    let sep = if redirect.contains('?') { '&' } else { '?' };
    Reply::new(302).header(
        "location",
        &format!(
            "{redirect}{sep}code={}&state={}",
            percent_encode(&code),
            percent_encode(&st)
        ),
    )
}

fn token(state: &Mutex<State>, profile: Profile, issuer: &str, req: &Request) -> Reply {
    let f = form(&req.body);
    let client = client_id(req, &f);
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let now = tokens::now();
    let expires_in = s.expires_in;
    let (nonce, first) = match f.query_param("grant_type").as_deref() {
        Some("authorization_code") => {
            let code = f.query_param("code").unwrap_or_default();
            let Some((c, redirect, nonce, challenge)) = s.codes.remove(&code) else {
                return oauth_error(400, "invalid_grant");
            };
            let verifier = f.query_param("code_verifier").unwrap_or_default();
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()));
            if c != client
                || f.query_param("redirect_uri").as_deref() != Some(redirect.as_str())
                || computed != challenge
            {
                return oauth_error(400, "invalid_grant");
            }
            let first = s.consented.insert(format!("{QUIRKY_USER}|{client}"));
            (Some(nonce), first)
        }
        Some("refresh_token") => {
            let rt = f.query_param("refresh_token").unwrap_or_default();
            let known = if profile == Profile::Okta {
                // Rotation: a refresh token works once.
                s.refresh.remove(&rt)
            } else {
                s.refresh.contains(&rt)
            };
            if !known {
                return oauth_error(400, "invalid_grant");
            }
            (None, false)
        }
        _ => return oauth_error(400, "unsupported_grant_type"),
    };
    let refreshing = nonce.is_none();
    let access = match profile {
        Profile::Azure => tokens::mint(
            "RS256",
            Some("rsa1"),
            Value::Null,
            json!({
                "iss": format!("https://sts.windows.net/{AZURE_TENANT}/"),
                "aud": "api://portcullis-backend",
                "sub": QUIRKY_USER, "iat": now, "nbf": now, "exp": now + 3600,
                "ver": "1.0",
            }),
        ),
        Profile::Okta => tokens::mint(
            "RS256",
            Some("rsa1"),
            Value::Null,
            json!({
                "iss": issuer, "aud": "api://default", "sub": QUIRKY_USER,
                "iat": now, "exp": now + 3600, "cid": client, "n": s.counter,
            }),
        ),
        Profile::Google => s.next("ya29.opaque"),
    };
    let mut answer = json!({
        "access_token": access,
        "token_type": "Bearer",
        "scope": "openid profile email",
    });
    answer["expires_in"] = match profile {
        Profile::Okta => json!(expires_in.to_string()),
        _ => json!(expires_in),
    };
    let id_token_now = !(refreshing && profile == Profile::Okta);
    if id_token_now {
        let mut claims = json!({
            "iss": issuer, "aud": client, "sub": QUIRKY_USER,
            "iat": now, "exp": now + 3600,
        });
        if let Some(n) = nonce.filter(|n| !n.is_empty()) {
            claims["nonce"] = json!(n);
        }
        if profile == Profile::Azure {
            claims["groups"] = json!((0..180)
                .map(|i| format!("{i:04}c8a1-3e5f-4b7d-9a2c-1f6e8d4b{i:04}"))
                .collect::<Vec<_>>());
            claims["login_hint"] = json!("O.CiQ4YWQ1ZjYwZC1hbGljZQ");
        }
        answer["id_token"] = json!(tokens::mint("RS256", Some("rsa1"), Value::Null, claims));
    }
    let refresh = match profile {
        Profile::Google => (first && !refreshing).then(|| s.next("google-refresh")),
        Profile::Okta => Some(s.next("okta-refresh")),
        Profile::Azure => Some(s.next("azure-refresh")),
    };
    if let Some(rt) = refresh {
        s.refresh.insert(rt.clone());
        answer["refresh_token"] = json!(rt);
    }
    Reply::json(200, &answer)
}

fn userinfo(profile: Profile, req: &Request) -> Reply {
    let Some(token) = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return Reply::json(401, &json!({"error": "invalid_token"}));
    };
    if profile == Profile::Azure {
        // Microsoft Graph's UserInfo accepts Graph tokens only: this access
        // token is for another API.
        return Reply::json(401, &json!({"error": "InvalidAuthenticationToken"}));
    }
    if token.is_empty() {
        return Reply::json(401, &json!({"error": "invalid_token"}));
    }
    Reply::json(
        200,
        &json!({
            "sub": QUIRKY_USER,
            "email": format!("{QUIRKY_USER}@example.test"),
            "email_verified": true,
            "name": "Alice Quirk",
        }),
    )
}
