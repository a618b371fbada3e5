//! The JWT filter applied to one request: find the bearer token, verify it with
//! the filter's keys and claim policy, check the rule's scopes, and either render
//! the injected headers or build the RFC 6750 error response.

use super::cache::{lookup_cached, remember_failure, verify_and_keep, TokenCache};
use super::extract::ExtractFrom;
use super::host_crypto::SignatureVerifier;
use super::keys::{Algorithm, KeySet};
use super::spec::JwtSpec;
use super::verify::{check_scopes, ClaimPolicy, TokenError, VerifiedToken};
use crate::compile::{Compiler, ConfigError};
use crate::inject::{render_injected, HeaderTemplate};
use crate::request::Request;
use crate::response::{auth_param_text, HeaderChange, Response};
use crate::template::{go_json_numbers, RenderData, Rendered, Template};
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

/// Where a JWT filter's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `jwks` given inline: parsed at configure time.
    Inline(Arc<KeySet>),
    /// `jwksURI`: index into `Config::jwks_sources`, fetched by the host.
    Remote(usize),
}

/// A compiled JWT filter.
#[derive(Debug)]
pub struct JwtFilter {
    pub realm: String,
    pub policy: ClaimPolicy,
    pub keys: KeySource,
    pub inject: Vec<HeaderTemplate>,
    pub error_headers: Vec<HeaderTemplate>,
    pub body_template: Option<Template>,
    /// RFC 8705: the token must be bound to the client certificate.
    pub require_certificate_binding: bool,
    /// Whether `validAlgorithms` was given (else the default list applies).
    pub algorithms_listed: bool,
    /// `extractFrom`: the places the token is read from instead of
    /// `Authorization: Bearer`.
    pub extract_from: Option<ExtractFrom>,
}

/// What a JWT check verifies tokens with, besides the filter's own keys and
/// claim policy: what the host lends for one request.
#[derive(Clone, Copy)]
pub struct VerifyWith<'a> {
    /// The current set of a `Remote` source (`None` when it has never loaded).
    pub remote_keys: Option<&'a KeySet>,
    /// The current time, Unix seconds (claims `exp`, `nbf`, `iat`).
    pub now_unix: f64,
    /// The VM's verified-token cache (`None`: every token is verified in full).
    pub cache: Option<&'a RefCell<TokenCache>>,
    /// Checks signatures with the host's crypto where it can (`None`: in the
    /// module).
    pub host: Option<&'a dyn SignatureVerifier>,
    /// Tells this filter's cache entries from those of filters with other
    /// claim policies.
    pub scope: u64,
}

/// What the JWT filter decided.
#[derive(Debug)]
pub enum JwtOutcome {
    /// Valid: the header changes to make, and the request's token (the
    /// identity an Authorization filter reads).
    Allow(Vec<HeaderChange>, Arc<VerifiedToken>),
    Deny(Response),
    /// The remote JWK Set has never loaded: wait for it (or answer 503).
    KeysUnavailable(usize),
    /// The token names a key the remote set lacks: a refresh may bring it; if not,
    /// send the response.
    UnknownKey {
        source: usize,
        response: Response,
    },
    /// A lean request (`Request::lean`) whose token is not in the cache: the
    /// host must build the whole request and check again.
    NeedFullRequest,
}

/// The algorithms this build checks only through the host's
/// `verify_signature`: ES384 and ES512 without the `ec-fallback` feature.
pub const HOST_ONLY_ALGORITHMS: &[Algorithm] = if super::keys::EC_FALLBACK {
    &[]
} else {
    &[Algorithm::ES384, Algorithm::ES512]
};

/// [`HOST_ONLY_ALGORITHMS`] for a message: `ES384 and ES512`.
pub fn host_only_names() -> String {
    let names: Vec<&str> = HOST_ONLY_ALGORITHMS.iter().map(|a| a.name()).collect();
    names.join(" and ")
}

/// The status the "JWKS never fetched" case answers with.
pub const KEYS_UNAVAILABLE_STATUS: u16 = 503;

impl JwtFilter {
    /// For a host that cannot check signatures (no `verify_signature`, or
    /// `PORTCULLIS_HOST_CRYPTO=off`) in a build without the pure-Rust
    /// ES384/ES512 checks ([`HOST_ONLY_ALGORITHMS`]): a filter at `path`
    /// (`filters[i].JWT`) whose `validAlgorithms` lists one of them is a fault
    /// (`Err`, at `{path}.validAlgorithms`); one on the default list stops
    /// accepting them (`Ok(Some(notice))`). `Ok(None)`: nothing to change.
    pub fn without_host_only_algorithms(
        &mut self,
        path: &str,
    ) -> Result<Option<String>, ConfigError> {
        let algs = &mut self.policy.valid_algorithms;
        if !algs.iter().any(|a| HOST_ONLY_ALGORITHMS.contains(a)) {
            return Ok(None);
        }
        let names = host_only_names();
        if self.algorithms_listed {
            return Err(ConfigError {
                path: format!("{path}.validAlgorithms"),
                message: format!(
                    "{names} are checked only by Envoy's verify_signature, which this host does not offer (or PORTCULLIS_HOST_CRYPTO=off), and this module has no pure-Rust check for them (the filter crate's `ec-fallback` feature adds it)"
                ),
            });
        }
        algs.retain(|a| !HOST_ONLY_ALGORITHMS.contains(a));
        Ok(Some(format!(
            "{path}: {names} tokens are refused: Envoy's verify_signature is unavailable and this module has no pure-Rust check for them"
        )))
    }

    pub fn compile(
        c: &mut Compiler<'_>,
        path: &str,
        name: &str,
        spec: &JwtSpec,
    ) -> Option<JwtFilter> {
        let errors_before = c.errors.len();
        let valid_algorithms = match &spec.valid_algorithms {
            None => Algorithm::ALL
                .iter()
                .copied()
                .filter(|a| *a != Algorithm::None)
                .collect(),
            Some(names) => {
                let mut algs = Vec::new();
                for (i, n) in names.iter().enumerate() {
                    match Algorithm::from_name(n) {
                        Some(a) => algs.push(a),
                        None => c.error(
                            format!("{path}.validAlgorithms[{i}]"),
                            format!("unsupported algorithm {n:?} (supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, HS256, HS384, HS512, none)"),
                        ),
                    }
                }
                if names.is_empty() {
                    c.error(
                        format!("{path}.validAlgorithms"),
                        "must list at least one algorithm",
                    );
                }
                algs
            }
        };
        if valid_algorithms.contains(&Algorithm::None) {
            c.notices.push(format!(
                "{path}.validAlgorithms: \"none\" is allowed: unsigned tokens are accepted by filter {name:?}"
            ));
        }
        let only_none = valid_algorithms.iter().all(|a| *a == Algorithm::None);
        let keys = match (&spec.jwks_uri, &spec.jwks) {
            (Some(_), Some(_)) => {
                c.error(path.to_string(), "give `jwksURI` or `jwks`, not both");
                None
            }
            (Some(uri), None) if uri.is_empty() && only_none => {
                Some(KeySource::Inline(Arc::new(KeySet::default())))
            }
            (Some(uri), None) => {
                let interval = spec
                    .jwks_refresh_interval
                    .map(|d| d.0)
                    .unwrap_or(crate::compile::DEFAULT_JWKS_REFRESH);
                c.jwks_source(&format!("{path}.jwksURI"), uri, interval)
                    .map(KeySource::Remote)
            }
            (None, Some(jwks)) => match serde_json::to_vec(jwks)
                .map_err(|e| e.to_string())
                .and_then(|bytes| KeySet::from_json(&bytes))
            {
                Ok((set, warnings)) => {
                    for w in warnings {
                        c.notices.push(format!("{path}.jwks: {w}"));
                    }
                    Some(KeySource::Inline(Arc::new(set)))
                }
                Err(e) => {
                    c.error(format!("{path}.jwks"), format!("invalid JWK Set: {e}"));
                    None
                }
            },
            (None, None) if only_none => Some(KeySource::Inline(Arc::new(KeySet::default()))),
            (None, None) => {
                c.error(path.to_string(), "one of `jwksURI` or `jwks` is required");
                None
            }
        };
        let leeway =
            |d: Option<crate::compile::spec::GoDuration>| d.map(|d| d.0).unwrap_or(Duration::ZERO);
        let policy = ClaimPolicy {
            valid_algorithms,
            audience: spec.audience.clone().filter(|a| !a.is_empty()),
            require_audience: spec.require_audience,
            issuer: spec.issuer.clone().filter(|i| !i.is_empty()),
            require_issuer: spec.require_issuer,
            require_expires_at: spec.require_expires_at,
            leeway_for_expires_at: leeway(spec.leeway_for_expires_at),
            require_not_before: spec.require_not_before,
            leeway_for_not_before: leeway(spec.leeway_for_not_before),
            require_issued_at: spec.require_issued_at,
            leeway_for_issued_at: leeway(spec.leeway_for_issued_at),
        };
        let inject = HeaderTemplate::compile_list(
            c,
            &format!("{path}.injectRequestHeaders"),
            &spec.inject_request_headers,
        );
        let mut realm = name.to_string();
        let mut error_headers = Vec::new();
        let mut body_template = None;
        if let Some(er) = &spec.error_response {
            let er_path = format!("{path}.errorResponse");
            if let Some(r) = er.realm.as_ref().filter(|r| !r.is_empty()) {
                realm = r.clone();
            }
            let mut header_specs = er.headers.clone();
            if let Some(ct) = &er.content_type {
                if !header_specs
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case("content-type"))
                {
                    header_specs.push(crate::compile::spec::HeaderTemplateSpec {
                        name: "Content-Type".to_string(),
                        value: ct.clone(),
                    });
                }
            }
            error_headers =
                HeaderTemplate::compile_list(c, &format!("{er_path}.headers"), &header_specs);
            if let Some(body) = &er.body_template {
                match Template::parse(body) {
                    Ok(t) => body_template = Some(t),
                    Err(e) => c.error(
                        format!("{er_path}.bodyTemplate"),
                        format!("invalid template: {e}"),
                    ),
                }
            }
        }
        let extract_from = spec
            .extract_from
            .as_ref()
            .and_then(|e| ExtractFrom::compile(c, &format!("{path}.extractFrom"), e));
        if c.errors.len() != errors_before {
            return None;
        }
        Some(JwtFilter {
            extract_from,
            realm,
            policy,
            keys: keys?,
            inject,
            error_headers,
            body_template,
            require_certificate_binding: spec.require_certificate_binding,
            algorithms_listed: spec.valid_algorithms.is_some(),
        })
    }

    /// Names of the headers this filter injects (removed from client requests).
    pub fn injected_names(&self) -> impl Iterator<Item = &str> {
        self.inject.iter().map(|t| t.name.as_str())
    }

    fn invalid_request(&self, request: &Request, why: &'static str) -> JwtOutcome {
        JwtOutcome::Deny(self.error_response(request, ErrorCase::InvalidRequest(why), why))
    }

    /// The 400 for a bearer token with whitespace in it (`extract_bearer` leaves
    /// this check to the caller, to run only where the cache does not answer).
    fn malformed(&self, request: &Request, token: &str) -> Option<JwtOutcome> {
        if self.extract_from.is_some() {
            // Not an Authorization header: a token with spaces fails to parse (401).
            return None;
        }
        token
            .contains(char::is_whitespace)
            .then(|| self.invalid_request(request, TOKEN_WITH_SPACES))
    }

    /// Checks one request. `remote_keys` is the current set of a `Remote` source
    /// (`None` when it has never loaded).
    pub fn check(
        &self,
        request: &Request,
        scopes: &[String],
        remote_keys: Option<&KeySet>,
        now_unix: f64,
    ) -> JwtOutcome {
        let verify = VerifyWith {
            remote_keys,
            now_unix,
            cache: None,
            host: None,
            scope: 0,
        };
        self.check_with_cache(request, scopes, &verify)
    }

    /// [`check`](Self::check) with what the VM lends for verifying tokens
    /// ([`VerifyWith`]: the remote key set, the verified-token cache, the host's
    /// signature checks).
    pub fn check_with_cache(
        &self,
        request: &Request,
        scopes: &[String],
        verify: &VerifyWith<'_>,
    ) -> JwtOutcome {
        if let Some(places) = &self.extract_from {
            let Some((token, _place)) = places.find(request) else {
                return JwtOutcome::Deny(self.error_response(
                    request,
                    ErrorCase::NoToken,
                    "Token validation error: no token in the places extractFrom names",
                ));
            };
            return match self.verify_one(request, &token, verify) {
                Ok(verified) => self.allow(request, scopes, verified),
                Err(outcome) => outcome,
            };
        }
        let tokens = match extract_bearers(request) {
            Extracted::Missing => {
                return JwtOutcome::Deny(self.error_response(
                    request,
                    ErrorCase::NoToken,
                    "Token validation error: no bearer token in the Authorization header",
                ))
            }
            Extracted::Malformed(why) => return self.invalid_request(request, why),
            Extracted::Tokens(t) => t,
        };
        // The first Bearer credential is the request's token (claims, scopes,
        // injected headers); every other one present must verify too, as
        // Envoy's jwt_authn verifies every token it extracts.
        let mut verified: Option<Arc<VerifiedToken>> = None;
        for token in tokens {
            let v = match self.verify_one(request, token, verify) {
                Ok(v) => v,
                Err(outcome) => return outcome,
            };
            verified.get_or_insert(v);
        }
        let Some(verified) = verified else {
            return self.invalid_request(request, "Authorization header has no bearer token");
        };
        self.allow(request, scopes, verified)
    }

    /// A verified token: the certificate binding, the rule's scopes, then
    /// the injected headers.
    fn allow(
        &self,
        request: &Request,
        scopes: &[String],
        verified: Arc<VerifiedToken>,
    ) -> JwtOutcome {
        if self.require_certificate_binding {
            if let Err(why) =
                super::binding::check_certificate_binding(&verified.claims, request.tls.as_ref())
            {
                let err = TokenError::CertificateBinding(why);
                let message = format!("Token validation error: {}", err.description());
                return JwtOutcome::Deny(self.error_response(
                    request,
                    ErrorCase::InvalidToken(&err),
                    &message,
                ));
            }
        }
        if let Err(missing) = check_scopes(&verified.claims, scopes) {
            let message = format!("insufficient scope: token lacks {}", missing.join(" "));
            return JwtOutcome::Deny(self.error_response(
                request,
                ErrorCase::InsufficientScope(scopes),
                &message,
            ));
        }
        if self.inject.is_empty() {
            return JwtOutcome::Allow(Vec::new(), verified);
        }
        let root = token_data(&verified, request);
        let data = RenderData {
            root: &root,
            headers: request.headers_as_sent(),
        };
        let changes = render_injected(&self.inject, &data);
        JwtOutcome::Allow(changes, verified)
    }

    /// Verifies one bearer token (through the cache); the denial or wait
    /// otherwise.
    #[allow(clippy::result_large_err)]
    fn verify_one(
        &self,
        request: &Request,
        token: &str,
        verify: &VerifyWith<'_>,
    ) -> Result<Arc<VerifiedToken>, JwtOutcome> {
        let VerifyWith {
            remote_keys,
            now_unix,
            cache,
            host,
            scope,
        } = *verify;
        let keys: &KeySet = match (&self.keys, remote_keys) {
            (KeySource::Inline(set), _) => set,
            (KeySource::Remote(_), Some(set)) => set,
            (KeySource::Remote(source), None) => {
                if let Some(denial) = self.malformed(request, token) {
                    return Err(denial);
                }
                return Err(JwtOutcome::KeysUnavailable(*source));
            }
        };
        // A cached token was verified, so it has no whitespace: the check for a
        // malformed header (a scan of the whole token) runs on a miss only.
        let result = match lookup_cached(cache, scope, token, keys, &self.policy, now_unix) {
            Some(found) => found,
            None => {
                if let Some(denial) = self.malformed(request, token) {
                    return Err(denial); // on a lean request, the pipeline redoes it whole
                }
                match verify_and_keep(cache, scope, token, keys, &self.policy, now_unix, host) {
                    // A lean request is answered from the whole request, which
                    // finds the refusal kept here (a bad token is verified once).
                    Err(e) if request.lean => {
                        remember_failure(cache, scope, token, keys, e, now_unix);
                        return Err(JwtOutcome::NeedFullRequest);
                    }
                    other => other,
                }
            }
        };
        result.map_err(|err| {
            let message = format!("Token validation error: {}", err.description());
            let response = self.error_response(request, ErrorCase::InvalidToken(&err), &message);
            match (&err, &self.keys) {
                // A refresh may bring a key id the set lacks (not one it has
                // for another algorithm).
                (TokenError::UnknownKey(Some(kid)), KeySource::Remote(source))
                    if !keys.has_kid(kid) =>
                {
                    JwtOutcome::UnknownKey {
                        source: *source,
                        response,
                    }
                }
                _ => JwtOutcome::Deny(response),
            }
        })
    }

    /// The 503 sent when the remote JWK Set never loaded in time.
    pub fn keys_unavailable_response(&self, request: &Request) -> Response {
        self.error_response(
            request,
            ErrorCase::KeysUnavailable,
            "JWT keys are not available yet: the JWK Set could not be fetched",
        )
    }

    fn error_response(&self, request: &Request, case: ErrorCase<'_>, message: &str) -> Response {
        let realm = auth_param_text(&self.realm);
        let (status, www_authenticate, bits) = match case {
            ErrorCase::NoToken => (401, Some(format!("Bearer realm=\"{realm}\"")), None),
            ErrorCase::InvalidRequest(why) => (
                400,
                Some(format!(
                    "Bearer error=\"invalid_request\", error_description=\"{}\", realm=\"{realm}\"",
                    auth_param_text(why)
                )),
                // As AES: no token was parsed, so `.error.ValidationError` is nil.
                None,
            ),
            ErrorCase::InvalidToken(err) => (
                401,
                Some(format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\", realm=\"{realm}\"",
                    auth_param_text(&err.description())
                )),
                Some(err.validation_bits()),
            ),
            ErrorCase::InsufficientScope(scopes) => (
                403,
                Some(format!(
                    "Bearer error=\"insufficient_scope\", error_description=\"{}\", scope=\"{}\", realm=\"{realm}\"",
                    auth_param_text(message),
                    auth_param_text(&scopes.join(" "))
                )),
                None,
            ),
            ErrorCase::KeysUnavailable => (KEYS_UNAVAILABLE_STATUS, None, None),
        };
        let mut response = Response::json_error(status, message);
        let root = error_data(status, message, &request.request_id, bits);
        let data = RenderData {
            root: &root,
            headers: request.headers_as_sent(),
        };
        if let Some(t) = &self.body_template {
            match t.render(&data) {
                Ok(Rendered::Text(body)) => response.body = body.into_bytes(),
                Ok(Rendered::DoNotSet) => response.body.clear(),
                Err(e) => log::warn!("errorResponse.bodyTemplate failed: {e}; default body sent"),
            }
        }
        for h in &self.error_headers {
            if let Some(value) = h.render(&data) {
                if data.headers.has_opaque() {
                    // A request header with obs-text went in escaped: its bytes
                    // come back out (as for injected headers).
                    response.set_header(&h.name, crate::request::unescape_opaque(&value));
                } else {
                    response.set_header(&h.name, &value);
                }
            }
        }
        if let Some(w) = www_authenticate {
            response.set_header("www-authenticate", &w);
        }
        response
    }
}

enum ErrorCase<'a> {
    NoToken,
    InvalidRequest(&'a str),
    InvalidToken(&'a TokenError),
    InsufficientScope(&'a [String]),
    KeysUnavailable,
}

enum Extracted<'a> {
    Missing,
    Malformed(&'static str),
    /// Every Bearer credential, in order (at least one).
    Tokens(Vec<&'a str>),
}

const TOKEN_WITH_SPACES: &str = "Authorization header is not \"Bearer <token>\"";

/// At most this many credentials are read from `Authorization` (a request with
/// more is malformed).
pub const MAX_CREDENTIALS: usize = 8;

/// The Bearer credentials of `Authorization` (RFC 6750 §2.1; scheme
/// case-insensitive). Several `Authorization` lines reach the filter joined
/// with commas (Envoy joins them) or as separate values; each credential is
/// `scheme [token68 | auth-params]`, and a comma starts a new one unless what
/// follows is an auth-param (`name=value`) of the one before (Digest). Other
/// schemes (a sidecar's `Basic`) are skipped, in any order: no Bearer at all
/// counts as no token; `Bearer` with no token is malformed. A token with
/// spaces is malformed too, but that is checked by the caller
/// (`JwtFilter::malformed`).
fn extract_bearers(request: &Request) -> Extracted<'_> {
    let mut tokens = Vec::new();
    let mut credentials = 0usize;
    for header in request.headers.get_all("authorization") {
        for item in header.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (scheme, rest) = match item.split_once(' ') {
                Some((s, r)) => (s, r.trim()),
                None => (item, ""),
            };
            if scheme.contains('=') {
                continue; // an auth-param of the credential before
            }
            credentials += 1;
            if credentials > MAX_CREDENTIALS {
                return Extracted::Malformed("Authorization header has too many credentials");
            }
            if !scheme.eq_ignore_ascii_case("bearer") {
                continue;
            }
            if rest.is_empty() {
                return Extracted::Malformed("Authorization header has no bearer token");
            }
            tokens.push(rest);
        }
    }
    if tokens.is_empty() {
        Extracted::Missing
    } else {
        Extracted::Tokens(tokens)
    }
}

/// AES's error data, the dot of `errorResponse` templates: `.status_code`
/// (alias `.httpStatus`), `.message`, `.request_id` (alias `.requestId`),
/// `.error.ValidationError.Errors` (jwt-go's bits; `.error` is empty when no
/// token was parsed). Its JSON form (`{{ . | json "" }}`) shows `message`,
/// `status_code` and, on a 5xx, `request_id`, in that order; the aliases and
/// `error` are for templates only.
pub fn error_data(status: u16, message: &str, request_id: &str, bits: Option<u32>) -> Value {
    let error = match bits {
        Some(b) => json!({ "ValidationError": { "Errors": b } }),
        None => json!({}),
    };
    let json_fields: &[&str] = if status >= 500 {
        &["message", "status_code", "request_id"]
    } else {
        &["message", "status_code"]
    };
    json!({
        "status_code": status,
        "httpStatus": status,
        "message": message,
        "request_id": request_id,
        "requestId": request_id,
        "error": error,
        (crate::template::JSON_FIELDS_KEY): json_fields,
    })
}

/// The template dot for a verified token: `.token.{Raw,Header,Claims,Signature}`.
pub fn token_data(token: &VerifiedToken, request: &Request) -> Value {
    let mut root = Map::new();
    root.insert(
        "token".to_string(),
        json!({
            "Raw": token.raw,
            "Header": go_json_numbers(&Value::Object(token.header.clone())),
            "Claims": go_json_numbers(&Value::Object(token.claims.clone())),
            "Signature": token.signature,
        }),
    );
    if let Some(tls) = &request.tls {
        root.insert("tls".to_string(), crate::mtls::tls_value(tls));
    }
    Value::Object(root)
}
