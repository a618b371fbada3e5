//! The identity a filter chain established: what an `Authorization` filter
//! decides on (claims) and what `portcullis.subject` reports. Set by the
//! identity filters (JWT, OAuth2, APIKey, MTLS) as they allow a request; the
//! nearest one before an `Authorization` filter is the one it reads.
//! Sits after `jwt/` (whose tokens it reads), before `oauth2/` and
//! `authorization/` (which make and read identities).

use crate::jwt::verify::{decode_unverified, VerifiedToken};
use crate::request::Request;
use crate::template::go_json_numbers;
use serde_json::{json, Map, Value};
use std::sync::{Arc, OnceLock};

/// Who the request is, as the filter that allowed it established.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A JWT filter's verified token (its claims; `sub` is the subject).
    Token(Arc<VerifiedToken>),
    /// An OAuth2 filter's user (its session's tokens).
    Login(Arc<Login>),
    /// An APIKey filter's key: its `name`, when one is given.
    ApiKey { name: Option<Arc<str>> },
    /// An MTLS filter's client certificate: its subject (RFC 4514 text, as
    /// Envoy gives it).
    Certificate { subject: String },
}

impl Identity {
    /// The claims `claims` and `scopes` conditions read; `None` for an
    /// identity without claims (an API key, a certificate).
    pub fn claims(&self) -> Option<&Map<String, Value>> {
        match self {
            Identity::Token(token) => Some(&token.claims),
            Identity::Login(login) => Some(login.claims()),
            Identity::ApiKey { .. } | Identity::Certificate { .. } => None,
        }
    }

    /// What `portcullis.subject` reports: the `sub` claim (RFC 7519 §4.1.2),
    /// an API key's `name`, or the certificate's subject.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Identity::Token(_) | Identity::Login(_) => self.claims()?.get("sub")?.as_str(),
            Identity::ApiKey { name } => name.as_deref(),
            Identity::Certificate { subject } => Some(subject),
        }
    }

    /// The template data of the filter that established it (`.token` for a
    /// JWT, `.idToken`/`.userinfo` for OAuth2; `.tls` where a certificate
    /// came), as an object to add fields to.
    pub fn template_data(&self, request: &Request) -> Map<String, Value> {
        let mut root = match self {
            Identity::Token(token) => match crate::jwt::filter::token_data(token, request) {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            Identity::Login(login) => match login_template_root(
                request,
                &login.access_token,
                login.id_token.as_deref(),
                login.userinfo.as_ref(),
            ) {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            Identity::ApiKey { .. } | Identity::Certificate { .. } => Map::new(),
        };
        if let Some(tls) = &request.tls {
            root.entry("tls")
                .or_insert_with(|| crate::mtls::tls_value(tls));
        }
        root
    }
}

/// An OAuth2 session's tokens, as the OAuth2 filter allowed the request with
/// them (already verified there). Its claims are read once, when first asked.
#[derive(Debug, Default)]
pub struct Login {
    pub access_token: String,
    pub id_token: Option<String>,
    /// The UserInfo answer's claims (OIDC Core §5.3), when asked for.
    pub userinfo: Option<Map<String, Value>>,
    claims: OnceLock<Map<String, Value>>,
}

impl Login {
    pub fn new(
        access_token: String,
        id_token: Option<String>,
        userinfo: Option<Map<String, Value>>,
    ) -> Login {
        Login {
            access_token,
            id_token,
            userinfo,
            claims: OnceLock::new(),
        }
    }

    /// The ID token's claims, the UserInfo claims for names the ID token
    /// lacks, and a JWT access token's claims under `accessToken` (an opaque
    /// access token adds nothing).
    pub fn claims(&self) -> &Map<String, Value> {
        self.claims.get_or_init(|| {
            let mut claims = self
                .id_token
                .as_deref()
                .and_then(|t| decode_unverified(t).ok())
                .map(|t| t.claims)
                .unwrap_or_default();
            for (name, value) in self.userinfo.iter().flatten() {
                claims.entry(name.clone()).or_insert_with(|| value.clone());
            }
            if let Ok(token) = decode_unverified(&self.access_token) {
                claims.insert("accessToken".to_string(), Value::Object(token.claims));
            }
            claims
        })
    }
}

/// The OAuth2 template dot: `.token` (the access token, when a JWT),
/// `.idToken`, `.userinfo` (a map, empty without UserInfo claims), `.tls`.
pub fn login_template_root(
    request: &Request,
    access_token: &str,
    id_token: Option<&str>,
    userinfo: Option<&Map<String, Value>>,
) -> Value {
    let mut root = Map::new();
    let decoded = |raw: &str| {
        decode_unverified(raw).ok().map(|t| {
            json!({
                "Raw": t.raw,
                "Header": go_json_numbers(&Value::Object(t.header)),
                "Claims": go_json_numbers(&Value::Object(t.claims)),
                "Signature": t.signature,
            })
        })
    };
    if let Some(t) = decoded(access_token) {
        root.insert("token".to_string(), t);
    }
    if let Some(t) = id_token.and_then(decoded) {
        root.insert("idToken".to_string(), t);
    }
    let claims = userinfo.map_or(Value::Object(Map::new()), |u| {
        go_json_numbers(&Value::Object(u.clone()))
    });
    root.insert("userinfo".to_string(), claims);
    if let Some(tls) = &request.tls {
        root.insert("tls".to_string(), crate::mtls::tls_value(tls));
    }
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn jwt(claims: Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn a_login_reads_the_id_token_then_userinfo_then_the_access_token() {
        let userinfo = json!({"sub": "other", "email": "u@example.com", "groups": ["a"]});
        let login = Login::new(
            jwt(json!({"sub": "x", "groups": ["from-access-token"]})),
            Some(jwt(json!({"sub": "user-7", "email_verified": true}))),
            userinfo.as_object().cloned(),
        );
        let identity = Identity::Login(Arc::new(login));
        let claims = identity.claims().cloned().unwrap_or_default();
        assert_eq!(
            Value::Object(claims),
            json!({
                "sub": "user-7", "email_verified": true,
                "email": "u@example.com", "groups": ["a"],
                "accessToken": {"sub": "x", "groups": ["from-access-token"]}
            })
        );
        assert_eq!(identity.subject(), Some("user-7"));
    }

    #[test]
    fn an_opaque_access_token_adds_no_claims() {
        let login = Login::new("opaque-token".to_string(), None, None);
        assert_eq!(login.claims().len(), 0);
        assert_eq!(Identity::Login(Arc::new(login)).subject(), None);
    }

    #[test]
    fn api_keys_and_certificates_have_subjects_but_no_claims() {
        let key = Identity::ApiKey {
            name: Some(Arc::from("batch")),
        };
        assert_eq!(
            (key.subject(), key.claims().is_none()),
            (Some("batch"), true)
        );
        let cert = Identity::Certificate {
            subject: "CN=client".to_string(),
        };
        assert_eq!(cert.subject(), Some("CN=client"));
    }
}
