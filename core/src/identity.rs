//! The identity a filter chain established: what an `Authorization` filter
//! decides on (claims) and what `portcullis.subject` reports. Set by the
//! identity filters (JWT, OAuth2, APIKey, MTLS) as they allow a request; the
//! nearest one before an `Authorization` filter is the one it reads.
//! Sits after the filter modules it reads (`jwt/`), before `authorization/`.

use crate::jwt::verify::VerifiedToken;
use crate::request::Request;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Who the request is, as the filter that allowed it established.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A JWT filter's verified token (its claims; `sub` is the subject).
    Token(Arc<VerifiedToken>),
    /// An OAuth2 filter's user: the claims conditions read (the ID token's,
    /// UserInfo's for names the ID token lacks, the access token's under
    /// `accessToken`) and the template data (`.idToken`, `.userinfo`, ...).
    Login {
        claims: Arc<Map<String, Value>>,
        data: Arc<Value>,
    },
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
            Identity::Login { claims, .. } => Some(claims),
            Identity::ApiKey { .. } | Identity::Certificate { .. } => None,
        }
    }

    /// What `portcullis.subject` reports: the `sub` claim (RFC 7519 §4.1.2),
    /// an API key's `name`, or the certificate's subject.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Identity::Token(_) | Identity::Login { .. } => self.claims()?.get("sub")?.as_str(),
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
            Identity::Login { data, .. } => data.as_object().cloned().unwrap_or_default(),
            Identity::ApiKey { .. } | Identity::Certificate { .. } => Map::new(),
        };
        if let Some(tls) = &request.tls {
            root.entry("tls")
                .or_insert_with(|| crate::mtls::tls_value(tls));
        }
        root
    }
}
