//! The OAuth2 filter (AES `Filter.spec.OAuth2`): Portcullis as an identity-aware
//! proxy. A browser without a session is sent to the identity provider (OIDC
//! authorization code flow with PKCE); the callback exchanges the code, checks
//! the ID token and seals the session into cookies (no Redis: see
//! [`session`]); later requests go upstream with `Authorization: Bearer <access
//! token>`. API clients use the `ClientCredentials` or `Password` grants.
//!
//! Sans-IO: [`OAuth2Filter::check`] and [`OAuth2Filter::on_answer`] take the
//! request, the IdP's discovery document and keys (fetched by the host), the
//! time and a randomness source, and answer an [`OAuth2Step`].
//!
//! # Decisions (AES and oauth2-proxy users' expectations)
//! - **Origins.** A request whose `scheme://authority` no `protectedOrigins`
//!   entry covers (`includeSubdomains` covers `*.host`, same scheme and port) is
//!   answered 403: the login could not come back to it (its redirect URI is not
//!   registered) and its cookies would live on an unprotected host. The redirect
//!   URI is `<request origin>/.portcullis/oauth2/redirection-endpoint`.
//! - **Unauthenticated requests.** GET/HEAD navigations get a 303 to the IdP.
//!   When the rule's `insteadOfRedirect` applies (no `ifRequestHeader`, or it
//!   matches) the answer is its `httpStatusCode` (default 403, as AES). Other
//!   methods and `X-Requested-With: XMLHttpRequest` get that status too when
//!   `insteadOfRedirect` is set, else 401 (`{"message": ...}`): a redirect to an
//!   IdP page is of no use to a script, and a replayed POST would lose its body.
//! - **Login state.** One sealed cookie per login in progress,
//!   `portcullis_state.<name>.<first 12 characters of state>` (10 minutes,
//!   HttpOnly, SameSite=Lax, Path=/), holding the state, PKCE verifier, nonce,
//!   scopes and the original URL; at most [`MAX_PENDING_LOGINS`] at a time, so
//!   several tabs can log in at once. The original URL is always built from the
//!   request's own protected origin and checked again at the callback: never an
//!   open redirect.
//! - **Callback errors** are pages, never redirects, so a failure cannot loop:
//!   a stale, forged or replayed state is 400; `iss` (RFC 9207) that differs
//!   from the discovery issuer is 400; an IdP `error=` or a refused code
//!   exchange is 401; an unusable token answer is 502; an ID token that fails
//!   (signature, `iss`, `aud`, `exp`, `nonce`, `azp`) is 401; the IdP down is
//!   503. With `sameSite: Strict` the callback answers a 200 page that moves on
//!   with `<meta http-equiv="refresh">`, because a Strict cookie is not sent on
//!   a redirect chain that began at the IdP (which would otherwise loop).
//! - **Client authentication** (`clientAuthentication.method`, AES names):
//!   `HeaderPassword` (default, `client_secret_basic`: `Authorization: Basic
//!   base64(urlencode(id):urlencode(secret))`) or `BodyPassword`
//!   (`client_secret_post`). `JWTAssertion` is refused at configure time. With no
//!   `secret`, `client_id` goes in the body (a public client: PKCE protects it).
//! - **Session lifetime.** As AES: `clientSessionMaxIdle` when set (sliding:
//!   the session is re-sealed with a new idle deadline at most every
//!   a quarter of the idle time (at most 5 minutes)); otherwise 14 days when the IdP gave a refresh token,
//!   else the access token's lifetime (1 hour when the IdP gives none). The
//!   sealed expiry enforces this whatever the browser does with `Max-Age`.
//! - **Access token validation** (`accessTokenValidation`): `jwt` verifies it
//!   against the IdP's JWK Set with `iss` = discovery issuer; `userinfo` asks
//!   the userinfo endpoint (200 = valid), and answers are remembered in a
//!   [`UserinfoCache`] the host owns (bounded, at most
//!   [`USERINFO_CACHE_TTL`]); `auto` (default) verifies it as a JWT when it is one
//!   signed by a key of the IdP, else asks userinfo. Tokens fresh from the token
//!   endpoint (callback, refresh, grants) are trusted as they come.
//! - **Scopes.** The rule's `scope` (plus `openid`) is requested at login; a
//!   session whose granted scopes (the token answer's `scope`, else the ones
//!   requested) lack one of the rule's gets 403 (`offline_access` is never
//!   required, as AES).
//! - **XSRF.** Unsafe methods (not GET/HEAD/OPTIONS/TRACE) with a session must
//!   carry the `portcullis_xsrf.<name>` cookie's value in `X-XSRF-Token`, or in
//!   `_xsrf` in the **query string**: the plugin decides before the body goes
//!   upstream, so an HTML form puts `_xsrf` in its `action` URL.
//! - **Grants.** `ClientCredentials`: `X-Ambassador-Client-ID` and
//!   `X-Ambassador-Client-Secret` are the credentials sent to the token
//!   endpoint (AES); `Password`: `X-Ambassador-Username` and
//!   `X-Ambassador-Password` with the configured client. Missing headers: 401.
//!   These headers never reach the upstream. No token cache: each request
//!   is one token call, as the IdP must see credentials it can revoke.
//! - **Failures** of the IdP (no answer, 5xx) are 503 pages, never redirects.

pub mod discovery;
pub mod encoding;
mod flow;
mod grants;
mod id_token;
mod idp_error;
mod loops;
pub mod session;
pub mod spec;
#[cfg(test)]
mod tests;
mod userinfo;

pub use discovery::{Discovery, MAX_DISCOVERY_BYTES, WELL_KNOWN_PATH};
pub use session::{SameSite, Session, SessionKeys};

use crate::compile::url::{CalloutTarget, CalloutUrl};
use crate::compile::Compiler;
use crate::condition::HeaderCondition;
use crate::external::{Callout, CalloutAnswer};
use crate::inject::HeaderTemplate;
use crate::jwt::KeySet;
use crate::request::{Headers, Request};
use crate::response::{HeaderChange, Response};
use encoding::html_escape;
use serde_json::Value;
use sha2::{Digest, Sha256};
use spec::{OAuth2ArgumentsSpec, OAuth2Spec};
use std::collections::BTreeMap;
use std::time::Duration;

/// The default callback path (register `<origin>` + this with the IdP).
pub const CALLBACK_PATH: &str = "/.portcullis/oauth2/redirection-endpoint";
/// AES's callback path: `callbackPath` set to it keeps an AES client
/// registration; a callback arriving there is always answered.
pub const AES_CALLBACK_PATH: &str = "/.ambassador/oauth2/redirection-endpoint";
/// The logout path (POST with `_xsrf`).
pub const LOGOUT_PATH: &str = "/.portcullis/oauth2/logout";
/// AES's logout path, answered like [`LOGOUT_PATH`].
pub const AES_LOGOUT_PATH: &str = "/.ambassador/oauth2/logout";
/// The largest logout form body read for its `_xsrf` field (AES's form has
/// two short fields).
pub const MAX_LOGOUT_FORM_BYTES: usize = 4096;

/// Whether `path` (without query) is a logout path.
pub fn is_logout_path(path: &str) -> bool {
    path == LOGOUT_PATH || path == AES_LOGOUT_PATH
}
/// How long a login may take (the state cookie's lifetime).
pub const LOGIN_STATE_LIFETIME: u64 = 600;
/// The most logins in progress per browser (state cookies).
pub const MAX_PENDING_LOGINS: usize = 4;
/// How long token and userinfo callouts may take.
pub const CALLOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a userinfo answer is remembered.
pub const USERINFO_CACHE_TTL: f64 = 60.0;
/// The most userinfo answers remembered.
pub const USERINFO_CACHE_ENTRIES: usize = 1024;
/// Session lifetime with a refresh token and no `clientSessionMaxIdle` (AES).
pub const REFRESH_SESSION_LIFETIME: u64 = 14 * 24 * 3600;
/// Session lifetime when the IdP says nothing of the access token's lifetime.
pub const DEFAULT_ACCESS_LIFETIME: u64 = 3600;
/// The lifetime assumed for an access token the IdP gave no `expires_in` for
/// and that carries no `exp` (an opaque token), when a refresh token allows a
/// refresh (seconds): the shortest default of the common IdPs (Keycloak's).
pub const ASSUMED_ACCESS_LIFETIME: u64 = 300;
/// UserInfo refusing an access token obtained at least this long ago (seconds)
/// refreshes it instead of a new login (a younger token refused is not stale).
pub const REFRESH_ON_REFUSAL_AFTER: u64 = 30;

/// `grantType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
    Password,
}

/// `accessTokenValidation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenValidation {
    Auto,
    Jwt,
    Userinfo,
}

/// `clientAuthentication.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `HeaderPassword`: `client_secret_basic`.
    Basic,
    /// `BodyPassword`: `client_secret_post`.
    Post,
}

/// A `protectedOrigins` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedOrigin {
    /// `https` or `http`.
    pub scheme: String,
    /// Lower-case host, no port.
    pub host: String,
    /// The port, default ports removed.
    pub port: Option<u16>,
    pub include_subdomains: bool,
    /// `internalOrigin` / `allowedInternalOrigins`: how requests for this
    /// origin look behind a proxy that rewrites them.
    pub internal: Vec<InternalOrigin>,
}

/// An internal origin pattern: `None` parts are `*` (any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalOrigin {
    pub scheme: Option<String>,
    /// Lower-case `host[:port]` as Envoy sees `:authority`, default port removed.
    pub host: Option<(String, Option<u16>)>,
}

/// `useSessionCookies`.
#[derive(Debug)]
struct SessionCookiePolicy {
    value: bool,
    condition: Option<HeaderCondition>,
}

/// A compiled OAuth2 filter.
#[derive(Debug)]
pub struct OAuth2Filter {
    name: String,
    authorization_url: String,
    discovery: CalloutTarget,
    client_id: String,
    secret: Option<String>,
    grant: GrantType,
    validation: TokenValidation,
    client_auth: ClientAuth,
    origins: Vec<ProtectedOrigin>,
    extra_parameters: Vec<(String, String)>,
    pub(crate) inject: Vec<HeaderTemplate>,
    margin: u64,
    max_idle: Option<u64>,
    session_cookies: Option<SessionCookiePolicy>,
    post_logout_redirect: Option<String>,
    keys: SessionKeys,
    clusters: BTreeMap<String, String>,
    /// `callbackPath`: the path of the `redirect_uri`.
    callback_path: String,
    /// `xsrfProtection: unsafeMethods`: check the XSRF token on application
    /// requests too, not only at logout.
    xsrf_on_requests: bool,
}

/// A rule's `arguments` for an OAuth2 filter.
#[derive(Debug, Default)]
pub struct OAuth2Args {
    pub scopes: Vec<String>,
    pub instead_of_redirect: Option<InsteadOfRedirect>,
    pub same_site: SameSite,
}

/// `insteadOfRedirect`.
#[derive(Debug)]
pub struct InsteadOfRedirect {
    pub condition: Option<HeaderCondition>,
    pub status: u16,
}

/// What the host knows of the IdP. `None`: not loaded yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdpState<'a> {
    pub discovery: Option<&'a Discovery>,
    /// The JWK Set at `discovery.jwks_uri`.
    pub keys: Option<&'a KeySet>,
    /// The host's userinfo answers (see [`UserinfoCache`]).
    pub userinfo: Option<&'a UserinfoCache>,
    /// The VM's verified-token cache (JWT access tokens), if any.
    pub token_cache: Option<&'a std::cell::RefCell<crate::jwt::cache::TokenCache>>,
    /// The VM's opened sessions (see [`session::SessionCache`]), if any.
    pub session_cache: Option<&'a std::cell::RefCell<session::SessionCache>>,
}

/// What the filter decided.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum OAuth2Step {
    /// Forward upstream with these request header changes; add `response`
    /// headers (`set-cookie`, one entry each) to the upstream's response.
    Allow {
        request: Vec<HeaderChange>,
        response: Vec<(String, String)>,
    },
    /// Answer the client (redirects, denials, error pages, logout).
    Respond(Response),
    /// Read the request body (up to `max_bytes`) into `Request::body`, then
    /// call `check` again (the logout form's `_xsrf`).
    NeedBody { max_bytes: usize },
    /// Send this callout; its answer goes to [`OAuth2Filter::on_answer`] with
    /// `pending`.
    Callout {
        callout: Callout,
        pending: OAuth2Pending,
    },
    /// The discovery document or the IdP's JWK Set is not loaded: wait for it
    /// (bounded), then call `check` again; still missing, answer
    /// [`OAuth2Filter::idp_unavailable`].
    NeedIdp,
    /// A token (the login's ID token, or a JWT access token with
    /// `accessTokenValidation: jwt`) names a `kid` the IdP's JWK Set lacks:
    /// the IdP may have rotated its signing key. Ask for a fresh copy of the
    /// set (rate-limited, as for a JWT filter's set: `KeyProvider::
    /// refresh_for_unknown_key`); when it loads, call
    /// [`OAuth2Filter::resume`] with `pending` (`None`: call `check` again).
    /// When no refresh may start, or it fails or times out, send `response`.
    UnknownKey {
        pending: Option<OAuth2Pending>,
        response: Response,
    },
}

/// State carried across a callout (opaque to the host).
#[derive(Debug)]
pub struct OAuth2Pending {
    kind: Box<flow::Pending>,
}

impl OAuth2Pending {
    /// For a userinfo check, the key its answer is remembered under.
    pub fn userinfo_key(&self) -> Option<[u8; 32]> {
        match self.kind.as_ref() {
            flow::Pending::Userinfo { session, .. } => Some(token_key(&session.access_token)),
            _ => None,
        }
    }
}

/// Userinfo answers the host remembers (owned by the host, per worker):
/// SHA-256 of an access token → until when it counts as valid. Bounded to
/// [`USERINFO_CACHE_ENTRIES`]; expired entries go first, then the soonest to
/// expire.
#[derive(Debug, Default, Clone)]
pub struct UserinfoCache {
    entries: BTreeMap<[u8; 32], f64>,
}

impl UserinfoCache {
    pub fn new() -> UserinfoCache {
        UserinfoCache::default()
    }

    /// Whether the token's userinfo answer is remembered at `now`.
    pub fn is_valid(&self, access_token: &str, now: f64) -> bool {
        self.entries
            .get(&token_key(access_token))
            .is_some_and(|until| *until > now)
    }

    /// Call with the pending state and the answer before handing them to
    /// `on_answer`: remembers a userinfo 200 for [`USERINFO_CACHE_TTL`] (or
    /// until the access token expires, if sooner).
    pub fn remember(&mut self, pending: &OAuth2Pending, answer: &CalloutAnswer, now: f64) {
        // A validation call, or the UserInfo call of a login or refresh: either
        // 200 says the access token is good now.
        let session = match pending.kind.as_ref() {
            flow::Pending::Userinfo { session, .. }
            | flow::Pending::LoginUserinfo { session, .. }
            | flow::Pending::RefreshUserinfo { session } => session,
            _ => return,
        };
        if !matches!(answer, CalloutAnswer::Http { status: 200, .. }) {
            return;
        }
        let mut until = now + USERINFO_CACHE_TTL;
        if let Some(exp) = session.access_expires_at {
            until = until.min(exp as f64);
        }
        self.insert(token_key(&session.access_token), until, now);
    }

    fn insert(&mut self, key: [u8; 32], until: f64, now: f64) {
        if self.entries.len() >= USERINFO_CACHE_ENTRIES {
            self.entries.retain(|_, u| *u > now);
        }
        while self.entries.len() >= USERINFO_CACHE_ENTRIES {
            let soonest = self
                .entries
                .iter()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(k, _)| *k);
            match soonest {
                Some(k) => {
                    self.entries.remove(&k);
                }
                None => break,
            }
        }
        self.entries.insert(key, until);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Reserved authorization parameters `extraAuthorizationParameters` may not set.
const RESERVED_PARAMETERS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

impl OAuth2Filter {
    /// Compiles `spec` found at `path` (`filters[2].OAuth2`); `name` is the
    /// filter's name (cookie names).
    pub fn compile(
        c: &mut Compiler<'_>,
        path: &str,
        name: &str,
        spec: &OAuth2Spec,
    ) -> Option<OAuth2Filter> {
        let errors_before = c.errors.len();
        for (field, present) in [
            ("secretName", spec.secret_name.is_some()),
            ("secretNamespace", spec.secret_namespace.is_some()),
        ] {
            if present {
                c.error(
                    format!("{path}.{field}"),
                    "Kubernetes Secrets are not read by the plugin: give `secret` as {\"fromEnv\": \"NAME\"} and set the variable in Envoy's vm_config.environment_variables (which can come from the Secret's `oauth2-client-secret`); `portcullis import` does this from the manifests",
                );
            }
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            c.error(
                path.to_string(),
                format!("an OAuth2 filter's name is part of its cookie names: use letters, digits, '-', '_' or '.' (not {name:?})"),
            );
        }
        let authorization_url = spec.authorization_url.trim().to_string();
        let discovery = match CalloutUrl::parse(&authorization_url, None) {
            Ok(url) if url.path.contains(['?', '#']) => {
                c.error(
                    format!("{path}.authorizationURL"),
                    "the issuer URL has no query or fragment",
                );
                None
            }
            Ok(_) => c.callout(
                &format!("{path}.authorizationURL"),
                &format!(
                    "{}{WELL_KNOWN_PATH}",
                    authorization_url.trim_end_matches('/')
                ),
                None,
            ),
            Err(e) => {
                c.error(format!("{path}.authorizationURL"), e);
                None
            }
        };
        let secret = spec
            .secret
            .as_ref()
            .and_then(|s| c.secret(&format!("{path}.secret"), s))
            .filter(|s| !s.is_empty());
        let grant = match spec.grant_type.as_deref() {
            None | Some("AuthorizationCode") => GrantType::AuthorizationCode,
            Some("ClientCredentials") => GrantType::ClientCredentials,
            Some("Password") | Some("ResourceOwner") => GrantType::Password,
            Some(other) => {
                c.error(
                    format!("{path}.grantType"),
                    format!("must be \"AuthorizationCode\", \"ClientCredentials\" or \"Password\", not {other:?}"),
                );
                GrantType::AuthorizationCode
            }
        };
        let client_id = spec.client_id.clone().unwrap_or_default();
        if client_id.is_empty() && grant != GrantType::ClientCredentials {
            c.error(
                format!("{path}.clientID"),
                "required (not empty) with grantType AuthorizationCode or Password",
            );
        }
        let validation = match spec.access_token_validation.as_deref() {
            None | Some("") | Some("auto") => TokenValidation::Auto,
            Some("jwt") => TokenValidation::Jwt,
            Some("userinfo") => TokenValidation::Userinfo,
            Some(other) => {
                c.error(
                    format!("{path}.accessTokenValidation"),
                    format!("must be \"auto\", \"jwt\" or \"userinfo\", not {other:?}"),
                );
                TokenValidation::Auto
            }
        };
        if spec
            .client_authentication
            .as_ref()
            .is_some_and(|a| a.jwt_assertion.is_some())
        {
            c.error(
                format!("{path}.clientAuthentication.jwtAssertion"),
                "JWT client assertions (RFC 7523) are not supported: register the client at the IdP with a client secret and use method \"HeaderPassword\" (client_secret_basic) or \"BodyPassword\" (client_secret_post)",
            );
        }
        if spec.access_token_jwt_filter.is_some() {
            c.error(
                format!("{path}.accessTokenJWTFilter"),
                "not supported: set accessTokenValidation \"jwt\" (the access token is verified with the IdP's JWK Set and issuer), and put a JWT filter after this OAuth2 filter in the rule for audience or scope checks beyond that",
            );
        }
        if let Some(allow) = spec.allow_malformed_access_token {
            c.notices.push(format!(
                "{path}.allowMalformedAccessToken: ignored ({allow}): Portcullis accepts any access token that fits in an Authorization header, RFC 6750 b64token or not"
            ));
        }
        let client_auth = match spec
            .client_authentication
            .as_ref()
            .and_then(|a| a.method.as_deref())
        {
            None | Some("HeaderPassword") => ClientAuth::Basic,
            Some("BodyPassword") => ClientAuth::Post,
            Some("JWTAssertion") => {
                c.error(
                    format!("{path}.clientAuthentication.method"),
                    "\"JWTAssertion\" is not supported: use \"HeaderPassword\" (client_secret_basic) or \"BodyPassword\" (client_secret_post)",
                );
                ClientAuth::Basic
            }
            Some(other) => {
                c.error(
                    format!("{path}.clientAuthentication.method"),
                    format!("must be \"HeaderPassword\" or \"BodyPassword\", not {other:?}"),
                );
                ClientAuth::Basic
            }
        };
        let mut origins = Vec::new();
        for (i, o) in spec.protected_origins.iter().enumerate() {
            let at = format!("{path}.protectedOrigins[{i}]");
            let internal: Vec<&str> = o
                .internal_origin
                .iter()
                .map(String::as_str)
                .chain(o.allowed_internal_origins.iter().map(String::as_str))
                .collect();
            if let Some(origin) = compile_origin(c, &at, &o.origin, o.include_subdomains, &internal)
            {
                origins.push(origin);
            }
        }
        if let Some(url) = &spec.client_url {
            c.notices.push(format!(
                "{path}.clientURL: deprecated in AES: read as protectedOrigins [{{origin: {url:?}, internalOrigin: \"*://*\"}}]"
            ));
            if !spec.protected_origins.is_empty() {
                c.error(
                    format!("{path}.clientURL"),
                    "give clientURL or protectedOrigins, not both",
                );
            } else if let Some(origin) =
                compile_origin(c, &format!("{path}.clientURL"), url, false, &["*://*"])
            {
                origins.push(origin);
            }
        }
        if grant == GrantType::AuthorizationCode && origins.is_empty() && spec.client_url.is_none()
        {
            c.error(
                format!("{path}.protectedOrigins"),
                "at least one origin is required with grantType AuthorizationCode",
            );
        }
        let mut extra_parameters = Vec::new();
        for (k, v) in &spec.extra_authorization_parameters {
            if RESERVED_PARAMETERS.contains(&k.as_str()) {
                c.error(
                    format!("{path}.extraAuthorizationParameters.{k}"),
                    format!("{k:?} is set by the OAuth2 flow itself and cannot be overridden"),
                );
            } else {
                extra_parameters.push((k.clone(), v.clone()));
            }
        }
        let inject = HeaderTemplate::compile_list(
            c,
            &format!("{path}.injectRequestHeaders"),
            &spec.inject_request_headers,
        );
        for (i, t) in inject.iter().enumerate() {
            if t.name == "authorization" || t.name == "cookie" {
                c.error(
                    format!("{path}.injectRequestHeaders[{i}].name"),
                    format!("{:?} is set by the OAuth2 filter itself", t.name),
                );
            }
        }
        let session_cookies = spec
            .use_session_cookies
            .as_ref()
            .map(|u| SessionCookiePolicy {
                value: u.value.unwrap_or(true),
                condition: u.if_request_header.as_ref().and_then(|h| {
                    HeaderCondition::compile(
                        c,
                        &format!("{path}.useSessionCookies.ifRequestHeader"),
                        h,
                    )
                }),
            });
        let post_logout_redirect = match spec.post_logout_redirect_uri.as_deref() {
            None | Some("") => None,
            Some(uri) => match CalloutUrl::parse(uri, None) {
                Ok(_) if !uri.contains(['\r', '\n', ' ']) => Some(uri.to_string()),
                Ok(_) => {
                    c.error(format!("{path}.postLogoutRedirectURI"), "not a URL");
                    None
                }
                Err(e) => {
                    c.error(format!("{path}.postLogoutRedirectURI"), e);
                    None
                }
            },
        };
        let mut raw_keys = Vec::new();
        for (i, k) in spec.session_keys.iter().enumerate() {
            let at = format!("{path}.sessionKeys[{i}]");
            if let Some(text) = c.secret(&at, k) {
                match SessionKeys::decode_key(&text) {
                    Ok(key) => raw_keys.push(key),
                    Err(e) => c.error(at, e),
                }
            }
        }
        if grant == GrantType::AuthorizationCode && spec.session_keys.is_empty() {
            match &secret {
                Some(secret) => {
                    raw_keys.push(SessionKeys::derive_from_secret(secret, name));
                    c.notices.push(format!(
                        "{path}.sessionKeys: none given: the session key is derived from `secret` (HKDF-SHA256, bound to the filter name {name:?}); explicit sessionKeys allow rotating it without logging everyone out"
                    ));
                }
                None => c.error(
                    format!("{path}.sessionKeys"),
                    "a filter without `secret` needs at least one 32-byte base64 key with grantType AuthorizationCode (sessions are sealed into cookies; e.g. `openssl rand -base64 32`)",
                ),
            }
        }
        let callback_path = match spec.callback_path.as_deref() {
            None => CALLBACK_PATH.to_string(),
            Some(p) => {
                if !p.starts_with('/')
                    || p.starts_with("//")
                    || p.bytes()
                        .any(|b| b.is_ascii_control() || matches!(b, b'?' | b'#' | b' ' | b'%'))
                {
                    c.error(
                        format!("{path}.callbackPath"),
                        format!("must be a path starting with '/', without query, fragment or escapes (not {p:?})"),
                    );
                } else if is_logout_path(p) {
                    c.error(format!("{path}.callbackPath"), "is the logout path");
                }
                p.to_string()
            }
        };
        let xsrf_on_requests = match spec.xsrf_protection.as_deref() {
            None | Some("logout") => false,
            Some("unsafeMethods") => true,
            Some(other) => {
                c.error(
                    format!("{path}.xsrfProtection"),
                    format!("must be \"logout\" or \"unsafeMethods\", not {other:?}"),
                );
                false
            }
        };
        let dur = |d: Option<crate::compile::spec::GoDuration>| d.map(|d| d.0.as_secs());
        if c.errors.len() != errors_before {
            return None;
        }
        Some(OAuth2Filter {
            name: name.to_string(),
            authorization_url,
            discovery: discovery?,
            client_id,
            secret,
            grant,
            validation,
            client_auth,
            origins,
            extra_parameters,
            inject,
            margin: dur(spec.expiration_safety_margin).unwrap_or(0),
            max_idle: dur(spec.client_session_max_idle).filter(|s| *s > 0),
            session_cookies,
            post_logout_redirect,
            keys: SessionKeys::new(&raw_keys),
            clusters: c.clusters.clone(),
            callback_path,
            xsrf_on_requests,
        })
    }

    /// Where the discovery document is fetched (`<authorizationURL>/.well-known/openid-configuration`).
    pub fn discovery_target(&self) -> &CalloutTarget {
        &self.discovery
    }

    /// The configured `authorizationURL` (the issuer).
    pub fn authorization_url(&self) -> &str {
        &self.authorization_url
    }

    /// Parses a fetched discovery document and checks its issuer.
    pub fn parse_discovery(&self, bytes: &[u8]) -> Result<Discovery, String> {
        Discovery::parse_for(bytes, &self.authorization_url)
    }

    /// The callout target of a URL the discovery document named (token,
    /// userinfo, JWKS), its cluster from the configuration's `clusters`.
    pub fn callout_target(&self, url: &str) -> Option<CalloutTarget> {
        CalloutUrl::parse(url, None)
            .ok()
            .map(|u| CalloutTarget::new(&u, &self.clusters))
    }

    pub fn grant_type(&self) -> GrantType {
        self.grant
    }

    /// Whether `check` needs the IdP's JWK Set (not only discovery).
    pub fn needs_keys(&self) -> bool {
        self.grant == GrantType::AuthorizationCode
    }

    /// Header names this filter injects (removed from client requests).
    pub fn injected_names(&self) -> impl Iterator<Item = &str> {
        self.inject.iter().map(|t| t.name.as_str())
    }

    /// Whether `path` is one the filter answers itself (callback, logout): the
    /// host should send these to the filter whatever rule covers them.
    pub fn handles_path(&self, path: &str) -> bool {
        let path = path.split(['?', '#']).next().unwrap_or("");
        self.is_callback_path(path) || is_logout_path(path)
    }

    /// Whether `path` (without query) is where this filter takes callbacks:
    /// its `callbackPath`, and the Portcullis and AES defaults (the state
    /// cookie decides whether a callback is genuine).
    pub(crate) fn is_callback_path(&self, path: &str) -> bool {
        path == self.callback_path || path == CALLBACK_PATH || path == AES_CALLBACK_PATH
    }

    /// The `callbackPath`.
    pub fn callback_path(&self) -> &str {
        &self.callback_path
    }

    /// Whether a callback or logout request belongs to this filter (several
    /// OAuth2 filters may share a host): its state cookie (callback) or its
    /// session or XSRF cookie (logout) came with the request.
    pub fn claims_endpoint_request(&self, request: &Request) -> bool {
        let path = request.path.split(['?', '#']).next().unwrap_or("");
        let names = request
            .headers
            .get_all("cookie")
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.split('=').next())
            .map(str::trim);
        if self.is_callback_path(path) {
            let state = request
                .path
                .split_once('?')
                .map(|(_, q)| q)
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("state="))
                .unwrap_or("");
            let id = state.get(..12).unwrap_or(state);
            let wanted = format!("{}.{id}", self.cookie_base("state"));
            names.into_iter().any(|n| n == wanted)
        } else {
            let xsrf = self.cookie_base("xsrf");
            names
                .into_iter()
                .any(|n| n == xsrf || (n.starts_with("portcullis_session.") && self.owns_cookie(n)))
        }
    }

    /// Checks one request.
    pub fn check(
        &self,
        request: &Request,
        args: &OAuth2Args,
        idp: &IdpState<'_>,
        now_unix: f64,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> OAuth2Step {
        match self.grant {
            GrantType::AuthorizationCode => flow::check(self, request, args, idp, now_unix, random),
            GrantType::ClientCredentials | GrantType::Password => {
                grants::check(self, request, args, idp)
            }
        }
    }

    /// The answer to the callout the last `OAuth2Step::Callout` asked for.
    #[allow(clippy::too_many_arguments)]
    pub fn on_answer(
        &self,
        request: &Request,
        args: &OAuth2Args,
        pending: OAuth2Pending,
        answer: CalloutAnswer,
        idp: &IdpState<'_>,
        now_unix: f64,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> OAuth2Step {
        flow::on_answer(
            self,
            request,
            args,
            *pending.kind,
            answer,
            idp,
            now_unix,
            random,
        )
    }

    /// Goes on after [`OAuth2Step::UnknownKey`] once the IdP's JWK Set was
    /// fetched again (`idp` holds the fresh keys).
    pub fn resume(
        &self,
        request: &Request,
        args: &OAuth2Args,
        pending: OAuth2Pending,
        idp: &IdpState<'_>,
        now_unix: f64,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> OAuth2Step {
        flow::resume(
            self,
            request,
            args,
            Some(*pending.kind),
            idp,
            now_unix,
            random,
        )
    }

    /// The 403 for a logout form whose body (its `_xsrf`) never reached the
    /// filter: the upstream answered the request first, and Envoy drops request
    /// body that comes after a complete answer. The user stays logged in.
    pub fn logout_form_lost(&self) -> Response {
        Response::json_error(
            403,
            "XSRF check failed: the logout form's body did not arrive before the upstream answered; send _xsrf in the query or X-XSRF-Token",
        )
    }

    /// The 503 page when the IdP's discovery document or keys never loaded.
    pub fn idp_unavailable(&self) -> Response {
        error_page(
            503,
            "Sign-in is unavailable",
            "The identity provider cannot be reached right now. Please try again in a moment.",
        )
    }

    /// Whether `useSessionCookies` makes this request's cookies browser-session
    /// cookies.
    fn browser_session_cookies(&self, headers: &Headers) -> bool {
        match &self.session_cookies {
            None => false,
            Some(p) => match &p.condition {
                None => p.value,
                Some(cond) => cond.matches(headers) == p.value,
            },
        }
    }

    fn cookie_base(&self, kind: &str) -> String {
        format!("portcullis_{kind}.{}", self.name)
    }

    /// Whether the cookie `name` is one of this filter's: its session (whole or
    /// a chunk `.<n>`), XSRF cookie, login count, or a login's state
    /// (`.<state id>`). Exact, so filters `app` and `app.default` on one origin
    /// never take (clear, count, strip) each other's cookies.
    pub(crate) fn owns_cookie(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix("portcullis_") else {
            return false;
        };
        let Some((kind, rest)) = rest.split_once('.') else {
            return false;
        };
        let Some(rest) = rest.strip_prefix(self.name.as_str()) else {
            return false;
        };
        match kind {
            "xsrf" | "logins" => rest.is_empty(),
            "session" => rest.is_empty() || is_chunk_suffix(rest),
            "state" => self.is_state_suffix(rest),
            _ => false,
        }
    }

    /// Whether `name` is one of this filter's login state cookies.
    pub(crate) fn owns_state_cookie(&self, name: &str) -> bool {
        name.strip_prefix(self.cookie_base("state").as_str())
            .is_some_and(|rest| self.is_state_suffix(rest))
    }

    fn is_state_suffix(&self, rest: &str) -> bool {
        rest.strip_prefix('.').is_some_and(|id| {
            !id.is_empty()
                && id.len() <= flow::STATE_ID_LEN
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    }
}

/// `.<n>`: a session chunk's suffix.
fn is_chunk_suffix(rest: &str) -> bool {
    rest.strip_prefix('.')
        .is_some_and(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether OAuth2 filters named `a` and `b` would share a cookie name: one is
/// the other plus a chunk suffix (`app` and `app.1`: `portcullis_session.app.1`
/// is both a chunk of one and the session of the other).
pub fn cookie_names_collide(a: &str, b: &str) -> bool {
    let suffix = |long: &str, short: &str| long.strip_prefix(short).is_some_and(is_chunk_suffix);
    a != b && (suffix(a, b) || suffix(b, a))
}

impl OAuth2Args {
    /// Compiles a rule's `arguments` found at `path`.
    pub fn compile(
        c: &mut Compiler<'_>,
        path: &str,
        arguments: Option<&Value>,
    ) -> Option<OAuth2Args> {
        let spec = match arguments {
            None | Some(Value::Null) => OAuth2ArgumentsSpec::default(),
            Some(v) => c.deserialize_at::<OAuth2ArgumentsSpec>(path, v.clone())?,
        };
        let errors_before = c.errors.len();
        let mut scopes: Vec<String> = Vec::new();
        for (i, s) in spec.scope.iter().enumerate() {
            if s.is_empty() || s.contains(|ch: char| ch.is_whitespace() || ch == '"' || ch == '\\')
            {
                c.error(format!("{path}.scope[{i}]"), format!("invalid scope {s:?}"));
            } else if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        if spec
            .instead_of_redirect
            .as_ref()
            .is_some_and(|i| i.filters.is_some())
        {
            c.error(
                format!("{path}.insteadOfRedirect.filters"),
                "not supported (deprecated in AES): give the rule this OAuth2 filter with onDeny \"continue\" followed by the other filters, or set insteadOfRedirect.httpStatusCode",
            );
        }
        let instead_of_redirect = spec.instead_of_redirect.as_ref().map(|i| {
            let status = i.http_status_code.unwrap_or(403);
            if !(300..=599).contains(&status) {
                c.error(
                    format!("{path}.insteadOfRedirect.httpStatusCode"),
                    format!("must be an HTTP status between 300 and 599, not {status}"),
                );
            }
            InsteadOfRedirect {
                condition: i.if_request_header.as_ref().and_then(|h| {
                    HeaderCondition::compile(
                        c,
                        &format!("{path}.insteadOfRedirect.ifRequestHeader"),
                        h,
                    )
                }),
                status,
            }
        });
        let same_site = match spec
            .same_site
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("lax") => SameSite::Lax,
            Some("strict") => SameSite::Strict,
            Some("none") => SameSite::None,
            Some(_) => {
                c.error(
                    format!("{path}.sameSite"),
                    format!(
                        "must be \"Lax\", \"Strict\" or \"None\", not {:?}",
                        spec.same_site.as_deref().unwrap_or("")
                    ),
                );
                SameSite::Lax
            }
        };
        if c.errors.len() != errors_before {
            return None;
        }
        Some(OAuth2Args {
            scopes,
            instead_of_redirect,
            same_site,
        })
    }
}

/// `scheme://host[:port]` (any path ignored, as AES) → lower-case parts, default
/// port removed.
fn parse_origin(text: &str) -> Option<(String, String, Option<u16>)> {
    let url = CalloutUrl::parse(text.trim(), None).ok()?;
    let (host, port) = split_authority(&url.authority)?;
    Some((url.scheme.clone(), host, normalize_port(&url.scheme, port)))
}

/// `host[:port]` → lower-case host and port.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.to_ascii_lowercase();
    if authority.is_empty() || authority.contains(['/', '@', ' ', '?', '#']) {
        return None;
    }
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let host = authority.get(..=end)?.to_string();
        let rest = authority.get(end + 1..)?;
        return match rest.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if rest.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), Some(p.parse().ok()?))),
        None => Some((authority, None)),
    }
}

fn normalize_port(scheme: &str, port: Option<u16>) -> Option<u16> {
    match (scheme, port) {
        ("https", Some(443)) | ("http", Some(80)) => None,
        (_, p) => p,
    }
}

/// A request's origin, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    pub(crate) fn of(request: &Request) -> Option<Origin> {
        let scheme = request.scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let (host, port) = split_authority(&request.authority)?;
        let port = normalize_port(&scheme, port);
        Some(Origin { scheme, host, port })
    }

    pub(crate) fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// `scheme://host[:port]`.
    pub(crate) fn url(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{p}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }

    fn matches_internal(&self, i: &InternalOrigin) -> bool {
        i.scheme.as_ref().is_none_or(|s| *s == self.scheme)
            && i.host.as_ref().is_none_or(|(h, p)| {
                *h == self.host && normalize_port(&self.scheme, *p) == self.port
            })
    }

    fn covered_by(&self, o: &ProtectedOrigin) -> bool {
        if self.scheme != o.scheme || self.port != o.port {
            return false;
        }
        self.host == o.host
            || (o.include_subdomains
                && self
                    .host
                    .strip_suffix(&o.host)
                    .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1))
    }
}

impl OAuth2Filter {
    pub(crate) fn protects(&self, origin: &Origin) -> bool {
        self.origins.iter().any(|o| origin.covered_by(o))
    }

    /// The protected origin a request belongs to: its own when listed, else
    /// the `origin` of the first entry whose `internalOrigin` /
    /// `allowedInternalOrigins` it matches (a proxy in front rewrote it: the
    /// redirect URI and cookies use the origin the browser sees).
    pub(crate) fn origin_of(&self, request: &Request) -> Option<Origin> {
        let origin = Origin::of(request)?;
        if self.protects(&origin) {
            return Some(origin);
        }
        self.origins
            .iter()
            .find(|o| o.internal.iter().any(|i| origin.matches_internal(i)))
            .map(|o| Origin {
                scheme: o.scheme.clone(),
                host: o.host.clone(),
                port: o.port,
            })
    }
}

/// Compiles one protected origin and its internal origins found at `at`.
fn compile_origin(
    c: &mut Compiler<'_>,
    at: &str,
    text: &str,
    include_subdomains: bool,
    internal: &[&str],
) -> Option<ProtectedOrigin> {
    let Some((scheme, host, port)) = parse_origin(text) else {
        c.error(
            format!("{at}.origin"),
            format!("invalid origin {text:?}: give scheme://host[:port]"),
        );
        return None;
    };
    let mut patterns = Vec::new();
    for i in internal {
        let Some((s, a)) = i.trim().split_once("://") else {
            c.error(
                format!("{at}.allowedInternalOrigins"),
                format!(
                    "invalid internal origin {i:?}: give scheme://host[:port], `*` for any part"
                ),
            );
            continue;
        };
        let scheme_pat = match s.to_ascii_lowercase().as_str() {
            "*" => None,
            s @ ("http" | "https") => Some(s.to_string()),
            _ => {
                c.error(
                    format!("{at}.allowedInternalOrigins"),
                    format!("invalid scheme in internal origin {i:?}"),
                );
                continue;
            }
        };
        let a = a.trim_end_matches('/');
        let host_pat = if a == "*" {
            if include_subdomains {
                c.error(
                    format!("{at}.allowedInternalOrigins"),
                    "`*` as the authority is invalid with includeSubdomains (as AES)",
                );
            }
            None
        } else {
            match split_authority(a) {
                Some((h, p)) => Some((h, normalize_port(scheme_pat.as_deref().unwrap_or(""), p))),
                None => {
                    c.error(
                        format!("{at}.allowedInternalOrigins"),
                        format!("invalid authority in internal origin {i:?}"),
                    );
                    continue;
                }
            }
        };
        patterns.push(InternalOrigin {
            scheme: scheme_pat,
            host: host_pat,
        });
    }
    Some(ProtectedOrigin {
        scheme,
        host,
        port,
        include_subdomains,
        internal: patterns,
    })
}

/// An HTML page (error pages, the Strict-cookie continue page), with a link
/// back to the origin's root. `detail` is Portcullis's own words: never text
/// a request or an IdP's answer carried (escaped all the same).
pub(crate) fn error_page(status: u16, title: &str, detail: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1><p>{d}</p><p><a href=\"/\">Go back to the application</a></p></body></html>\n",
        t = html_escape(title),
        d = html_escape(detail)
    );
    Response {
        status,
        headers: vec![
            (
                "content-type".to_string(),
                "text/html; charset=utf-8".into(),
            ),
            ("cache-control".to_string(), "no-store".into()),
        ],
        body: body.into_bytes(),
    }
}
