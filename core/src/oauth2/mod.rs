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
//!   matches) the answer is its `httpStatusCode` (default 403, as AES). A
//!   request a browser cannot follow to an IdP page (see
//!   [`login::background_request`]: other methods, `fetch`/XHR by their
//!   `Sec-Fetch-*` headers or `X-Requested-With`, an `Accept` without HTML, an
//!   `Upgrade`) gets that status too when `insteadOfRedirect` is set, else 401
//!   (`{"message": ...}`) with `WWW-Authenticate` naming the login, and no
//!   state cookie: a redirect is of no use to a script, and a replayed POST
//!   would lose its body (as oauth2-proxy, and Envoy's `deny_redirect_matcher`).
//! - **Login state.** One sealed cookie per login in progress,
//!   `portcullis_state.<name>.<first 12 characters of state>` (10 minutes,
//!   HttpOnly, SameSite=Lax, Path=/; `SameSite=None; Secure` with
//!   `response_mode=form_post`, whose answer is a cross-site POST), holding the state, PKCE verifier, nonce,
//!   scopes and the original URL; at most [`MAX_PENDING_LOGINS`] at a time
//!   (past it the oldest is dropped), so several tabs can log in at once. The original URL is always built from the
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

mod access;
mod awaiting;
mod callback;
pub mod client_assertion;
mod compile;
pub mod discovery;
pub mod encoding;
mod events;
mod grants;
mod id_token;
mod idp_error;
mod login;
mod logout;
mod loops;
mod origin;
mod refresh;
pub mod session;
mod session_store;
pub mod spec;
mod steps;
#[cfg(test)]
mod tests;
mod token_endpoint;
mod upstream;
mod userinfo;
mod xsrf;

pub use discovery::{Discovery, MAX_DISCOVERY_BYTES, WELL_KNOWN_PATH};
pub use events::{IdpErrorKind, OAuth2Event, OAuth2Events};
pub(crate) use origin::Origin;
pub use session::{SameSite, Session, SessionKeys};

use crate::callout::{Callout, CalloutAnswer};
use crate::compile::url::{CalloutTarget, CalloutUrl};
use crate::condition::HeaderCondition;
use crate::inject::HeaderTemplate;
use crate::jwt::KeySet;
use crate::request::{Headers, Request};
use crate::response::{HeaderChange, Response};
use encoding::html_escape;
use serde_json::Value;
use sha2::{Digest, Sha256};
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

/// The largest authorization response read from a POSTed form at the callback
/// (`response_mode=form_post`): `code` (at most 4096 bytes), `state`, `iss`,
/// `session_state` and an IdP's `error` fields fit well within it.
pub const MAX_CALLBACK_FORM_BYTES: usize = 16384;

/// Whether `path` (without query) is a logout path.
pub fn is_logout_path(path: &str) -> bool {
    path == LOGOUT_PATH || path == AES_LOGOUT_PATH
}
/// How long a login may take (the state cookie's lifetime).
pub const LOGIN_STATE_LIFETIME: u64 = 600;
/// The most logins in progress per browser (state cookies).
pub const MAX_PENDING_LOGINS: usize = 8;
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
    /// `JWTAssertion`: `private_key_jwt` / `client_secret_jwt` (RFC 7523),
    /// signed by [`OAuth2Filter::client_assertion`].
    Assertion,
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
    /// `clientAuthentication.jwtAssertion`, with `client_auth` `Assertion`.
    client_assertion: Option<client_assertion::ClientAssertion>,
    origins: Vec<ProtectedOrigin>,
    extra_parameters: Vec<(String, String)>,
    /// `response_mode=form_post` is asked: the callback takes a POSTed form,
    /// and the login's state (and loop count) cookies are `SameSite=None`.
    form_post: bool,
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
    /// Where the flow notes what it did for this request, for metrics (a
    /// login started, a refresh done, an IdP error: [`OAuth2Event`]); `None`:
    /// not counted.
    pub events: Option<&'a OAuth2Events>,
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
        /// The user, for an Authorization filter after this one and
        /// `portcullis.subject` (`None`: no user's tokens to read).
        identity: Option<crate::identity::Identity>,
    },
    /// Answer the client (redirects, denials, error pages, logout).
    Respond(Response),
    /// Read the request body (up to `max_bytes`) into `Request::body`, then
    /// call `check` again (the logout form's `_xsrf`).
    NeedBody { max_bytes: usize },
    /// Send this callout; its answer goes to [`OAuth2Filter::on_answer`] as
    /// `pending.answered(answer)`.
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
    /// set (rate-limited, as for a JWT filter's set: `Host::
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
    kind: Box<awaiting::Awaiting>,
}

impl OAuth2Pending {
    /// The callout's `answer`, with this state, for [`OAuth2Filter::on_answer`].
    pub fn answered(self, answer: CalloutAnswer) -> OAuth2Answer {
        OAuth2Answer {
            pending: self,
            answer,
        }
    }

    /// Whether a login waits on it (the code exchange, the login's UserInfo
    /// answer, fresh keys for its ID token): a refusal from here refuses the
    /// login.
    pub fn is_login(&self) -> bool {
        matches!(
            self.kind.as_ref(),
            awaiting::Awaiting::CodeExchange { .. }
                | awaiting::Awaiting::LoginUserinfo { .. }
                | awaiting::Awaiting::IdTokenKeys { .. }
        )
    }

    /// For a userinfo check, the key its answer is remembered under.
    pub fn userinfo_key(&self) -> Option<[u8; 32]> {
        match self.kind.as_ref() {
            awaiting::Awaiting::Userinfo { session, .. } => Some(token_key(&session.access_token)),
            _ => None,
        }
    }
}

/// What came back for an [`OAuth2Step::Callout`], with the state that sent it
/// ([`OAuth2Pending::answered`]).
#[derive(Debug)]
pub struct OAuth2Answer {
    pending: OAuth2Pending,
    answer: CalloutAnswer,
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
            awaiting::Awaiting::Userinfo { session, .. }
            | awaiting::Awaiting::LoginUserinfo { session, .. }
            | awaiting::Awaiting::RefreshUserinfo { session } => session,
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

impl OAuth2Filter {
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

    /// The most body bytes this filter reads of a request to one of its
    /// endpoints: a logout form's (`_xsrf`), a posted callback's (the
    /// authorization response, `response_mode=form_post`); `None` for others.
    pub fn endpoint_body_limit(&self, request: &Request) -> Option<usize> {
        let path = request.path_only();
        if is_logout_path(path) {
            Some(MAX_LOGOUT_FORM_BYTES)
        } else if self.is_callback_path(path) && request.method.eq_ignore_ascii_case("POST") {
            Some(MAX_CALLBACK_FORM_BYTES)
        } else {
            None
        }
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
            match callback::answer_state(request) {
                Some(state) => {
                    let id = state.get(..login::STATE_ID_LEN).unwrap_or(&state);
                    let wanted = format!("{}.{id}", self.cookie_base("state"));
                    names.into_iter().any(|n| n == wanted)
                }
                // A posted answer whose body is not read yet: a login of this
                // filter is in progress (the journey looks again once the
                // body is read).
                None if callback::awaits_form(request) => {
                    names.into_iter().any(|n| self.owns_state_cookie(n))
                }
                None => false,
            }
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
            GrantType::AuthorizationCode => {
                steps::check(self, request, args, idp, now_unix, random)
            }
            GrantType::ClientCredentials | GrantType::Password => {
                grants::check(self, request, args, idp, now_unix, random)
            }
        }
    }

    /// The answer to the callout the last `OAuth2Step::Callout` asked for
    /// (`pending.answered(answer)`).
    pub fn on_answer(
        &self,
        request: &Request,
        args: &OAuth2Args,
        answered: OAuth2Answer,
        idp: &IdpState<'_>,
        now_unix: f64,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> OAuth2Step {
        let cx = FlowContext {
            f: self,
            request,
            args,
            idp,
            now: now_unix,
        };
        let OAuth2Answer { pending, answer } = answered;
        steps::on_answer(&cx, *pending.kind, answer, random)
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
        let cx = FlowContext {
            f: self,
            request,
            args,
            idp,
            now: now_unix,
        };
        steps::resume(&cx, Some(*pending.kind), random)
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

    /// The page for a posted callback (`response_mode=form_post`) whose body
    /// never reached the filter: the upstream answered the request first (Envoy
    /// without `allow_on_headers_stop_iteration` lets the headers go on before
    /// the body is read, and drops request body that comes after a complete
    /// answer).
    pub fn callback_form_lost(&self) -> Response {
        error_page(
            502,
            "Sign-in could not be completed",
            "The sign-in answer did not arrive before the application answered. Set allow_on_headers_stop_iteration on the Wasm filter in envoy.yaml (docs/oauth2.md), then sign in again.",
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

    /// `accessTokenValidation: userinfo` against an IdP whose discovery
    /// document publishes no `userinfo_endpoint` (OIDC Discovery makes it only
    /// RECOMMENDED; Azure AD B2C has none): no access token can ever be
    /// checked. The reason, naming the setting (for the log and the page);
    /// `None` when the filter can work with `discovery`.
    pub fn unusable_with(&self, discovery: &Discovery) -> Option<String> {
        (self.validation == TokenValidation::Userinfo && discovery.userinfo_endpoint.is_none())
            .then(|| {
                format!(
                    "OAuth2 filter {:?} checks access tokens at the identity provider's UserInfo endpoint (accessTokenValidation: userinfo), and the identity provider's discovery document names none (no userinfo_endpoint). Set accessTokenValidation to \"auto\" (or \"jwt\" when its access tokens are JWTs it signs).",
                    self.name
                )
            })
    }

    /// The 503 page for [`OAuth2Filter::unusable_with`]: what is wrong, in
    /// words an operator can act on.
    pub(super) fn unusable_page(&self, reason: &str) -> Response {
        error_page(
            503,
            "Sign-in is not configured for this identity provider",
            reason,
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

    /// The `SameSite` of the cookies the callback reads (the login's state,
    /// the loop count): `None` when the IdP posts the answer cross-site
    /// (`response_mode=form_post`; the origins are https, so they are
    /// `Secure`), else `Lax`.
    pub(super) fn callback_same_site(&self) -> SameSite {
        if self.form_post {
            SameSite::None
        } else {
            SameSite::Lax
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

    /// A callback or logout that belongs to another OAuth2 filter, of this
    /// Portcullis or of another one further down Envoy's chain (a gateway
    /// level and a route level): the request carries none of this filter's
    /// cookies for it, and another filter's (the state cookie of the callback's
    /// state id; a session or XSRF cookie for a logout). Such a request is
    /// passed on untouched, for its own filter to answer.
    pub(crate) fn foreign_endpoint_request(
        &self,
        request: &Request,
        jar: &session::CookieJar,
    ) -> bool {
        if self.claims_endpoint_request(request) {
            return false;
        }
        let path = request.path.split(['?', '#']).next().unwrap_or("");
        if self.is_callback_path(path) {
            // A posted answer whose body is not read yet is not known to be
            // another's: the callback reads the body, and this runs again.
            let state = callback::answer_state(request).unwrap_or_default();
            let Some(id) = state.get(..login::STATE_ID_LEN) else {
                return false;
            };
            let suffix = format!(".{id}");
            return jar
                .names()
                .any(|n| n.starts_with("portcullis_state.") && n.ends_with(&suffix));
        }
        is_logout_path(path)
            && jar
                .names()
                .any(|n| n.starts_with("portcullis_session.") || n.starts_with("portcullis_xsrf."))
    }

    /// Whether `name` is one of this filter's login state cookies.
    pub(crate) fn owns_state_cookie(&self, name: &str) -> bool {
        name.strip_prefix(self.cookie_base("state").as_str())
            .is_some_and(|rest| self.is_state_suffix(rest))
    }

    fn is_state_suffix(&self, rest: &str) -> bool {
        rest.strip_prefix('.').is_some_and(|id| {
            !id.is_empty()
                && id.len() <= login::STATE_ID_LEN
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

/// What every step of the authorization code flow reads about one request: the
/// filter, the request and its rule's `arguments`, what the host holds of the
/// IdP, and the time (Unix seconds). A step takes it with what is its own
/// (the origin, the cookies, the session, randomness for new secrets).
#[derive(Clone, Copy)]
struct FlowContext<'a> {
    f: &'a OAuth2Filter,
    request: &'a Request,
    args: &'a OAuth2Args,
    idp: &'a IdpState<'a>,
    now: f64,
}

impl<'a> FlowContext<'a> {
    /// Its fields, to bind at the top of a step: `(f, request, args, idp, now)`.
    fn parts(
        &self,
    ) -> (
        &'a OAuth2Filter,
        &'a Request,
        &'a OAuth2Args,
        &'a IdpState<'a>,
        f64,
    ) {
        (self.f, self.request, self.args, self.idp, self.now)
    }
}

/// The names the tests know the flow's items by (from before the flow was a file
/// per step).
#[cfg(test)]
mod flow {
    pub(super) use super::awaiting::Awaiting as Pending;
    pub(super) use super::login::MAX_RETURN_PATH;
    pub(super) use super::logout::MAX_LOGOUT_URL;
}
