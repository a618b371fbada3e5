//! The OAuth2 filter's compile step: its serde spec (`spec.rs`) checked and
//! turned into an [`OAuth2Filter`], every fault reported with its JSON path;
//! and a rule's `arguments` into [`OAuth2Args`].

use super::client_assertion::{ClientAssertion, JwtAssertionSpec};
use super::origin::{normalize_port, parse_origin, split_authority};
use super::spec::{OAuth2ArgumentsSpec, OAuth2Spec};
use super::*;
use crate::compile::url::CalloutUrl;
use crate::compile::Compiler;
use crate::condition::HeaderCondition;
use crate::inject::HeaderTemplate;

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
        check_names(c, path, name, spec);
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
        let (validation, client_auth, client_assertion) =
            compile_token_use(c, path, spec, grant, secret.as_deref());
        let origins = compile_origins(c, path, spec, grant);
        let extra_parameters = compile_extra_parameters(c, path, spec);
        let form_post = compile_response_mode(c, path, spec, &origins);
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
        let raw_keys = compile_session_keys(c, path, name, spec, grant, secret.as_ref());
        let (callback_path, xsrf_on_requests) = compile_paths(c, path, spec);
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
            client_assertion,
            origins,
            extra_parameters,
            form_post,
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

/// `secretName`/`secretNamespace` (never read by the plugin) and a name that cannot be part of a cookie name.
fn check_names(c: &mut Compiler<'_>, path: &str, name: &str, spec: &OAuth2Spec) {
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
}

/// `accessTokenValidation` and `clientAuthentication`, with the AES fields Portcullis refuses or ignores.
fn compile_token_use(
    c: &mut Compiler<'_>,
    path: &str,
    spec: &OAuth2Spec,
    grant: GrantType,
    secret: Option<&str>,
) -> (TokenValidation, ClientAuth, Option<ClientAssertion>) {
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
    let (client_auth, assertion) = compile_client_auth(c, path, spec, grant, secret);
    (validation, client_auth, assertion)
}

/// `clientAuthentication`: the method, and for `JWTAssertion` what signs
/// the assertions (its key is `secret`).
fn compile_client_auth(
    c: &mut Compiler<'_>,
    path: &str,
    spec: &OAuth2Spec,
    grant: GrantType,
    secret: Option<&str>,
) -> (ClientAuth, Option<ClientAssertion>) {
    let auth = spec.client_authentication.as_ref();
    let at = format!("{path}.clientAuthentication");
    match auth.and_then(|a| a.method.as_deref()) {
        None | Some("") | Some("HeaderPassword") | Some("BodyPassword")
            if auth.is_some_and(|a| a.jwt_assertion.is_some()) =>
        {
            c.error(
                format!("{at}.jwtAssertion"),
                "only with method \"JWTAssertion\"",
            );
            (ClientAuth::Basic, None)
        }
        None | Some("") | Some("HeaderPassword") => (ClientAuth::Basic, None),
        Some("BodyPassword") => (ClientAuth::Post, None),
        Some("JWTAssertion") if grant == GrantType::ClientCredentials => {
            c.error(
                format!("{at}.method"),
                "\"JWTAssertion\" with grantType ClientCredentials (the client's own assertion in X-Ambassador-Client-Assertion) is not supported: use grantType Password or AuthorizationCode, or HeaderPassword/BodyPassword",
            );
            (ClientAuth::Basic, None)
        }
        Some("JWTAssertion") => {
            let default = JwtAssertionSpec::default();
            let settings = auth
                .and_then(|a| a.jwt_assertion.as_ref())
                .unwrap_or(&default);
            let assertion = ClientAssertion::compile(
                c,
                &format!("{at}.jwtAssertion"),
                settings,
                &format!("{path}.secret"),
                secret,
            );
            (ClientAuth::Assertion, assertion)
        }
        Some(other) => {
            c.error(
                format!("{at}.method"),
                format!("must be \"HeaderPassword\", \"BodyPassword\" or \"JWTAssertion\", not {other:?}"),
            );
            (ClientAuth::Basic, None)
        }
    }
}

/// `protectedOrigins` (or the deprecated `clientURL`).
fn compile_origins(
    c: &mut Compiler<'_>,
    path: &str,
    spec: &OAuth2Spec,
    grant: GrantType,
) -> Vec<ProtectedOrigin> {
    let mut origins = Vec::new();
    for (i, o) in spec.protected_origins.iter().enumerate() {
        let at = format!("{path}.protectedOrigins[{i}]");
        let internal: Vec<&str> = o
            .internal_origin
            .iter()
            .map(String::as_str)
            .chain(o.allowed_internal_origins.iter().map(String::as_str))
            .collect();
        if let Some(origin) = compile_origin(c, &at, &o.origin, o.include_subdomains, &internal) {
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
    if grant == GrantType::AuthorizationCode && origins.is_empty() && spec.client_url.is_none() {
        c.error(
            format!("{path}.protectedOrigins"),
            "at least one origin is required with grantType AuthorizationCode",
        );
    }
    origins
}

/// `sessionKeys`, or the key derived from `secret` when none is given.
fn compile_session_keys(
    c: &mut Compiler<'_>,
    path: &str,
    name: &str,
    spec: &OAuth2Spec,
    grant: GrantType,
    secret: Option<&String>,
) -> Vec<[u8; 32]> {
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
    raw_keys
}

/// `callbackPath` and `xsrfProtection` (`true`: XSRF checked on every unsafe method).
fn compile_paths(c: &mut Compiler<'_>, path: &str, spec: &OAuth2Spec) -> (String, bool) {
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
    (callback_path, xsrf_on_requests)
}

/// `extraAuthorizationParameters.response_mode`: whether the authorization
/// response comes as a POSTed form (OAuth 2.0 Form Post Response Mode), which
/// the callback reads from the request body. `query` (the code flow's
/// default, RFC 6749 §4.1.2) and `form_post` work; `fragment` (the browser
/// keeps the code: the callback never sees it) and the JWT modes (JARM) are
/// refused. `form_post` needs every protected origin on `https`: the IdP's
/// page posts the form cross-site, a browser sends the state cookie with it
/// only when that cookie is `SameSite=None`, and it keeps such a cookie only
/// when it is `Secure`.
fn compile_response_mode(
    c: &mut Compiler,
    path: &str,
    spec: &OAuth2Spec,
    origins: &[ProtectedOrigin],
) -> bool {
    let at = format!("{path}.extraAuthorizationParameters.response_mode");
    match spec
        .extra_authorization_parameters
        .get("response_mode")
        .map(String::as_str)
    {
        None | Some("query") => false,
        Some("form_post") => {
            for o in origins.iter().filter(|o| o.scheme != "https") {
                c.error(
                    at.clone(),
                    format!(
                        "form_post needs https protected origins, and {}://{}{} is http: the identity provider's page posts the sign-in answer to the callback from its own site, a browser sends the login's state cookie with that cross-site POST only when the cookie is SameSite=None, and keeps a SameSite=None cookie only when it is Secure (https). Serve the origin over https, or leave response_mode out (the answer then comes in the query)",
                        o.scheme,
                        o.host,
                        o.port.map(|p| format!(":{p}")).unwrap_or_default()
                    ),
                );
            }
            true
        }
        Some("fragment") => {
            c.error(
                at,
                "fragment cannot work: the browser keeps a URL's fragment to itself, so the callback would never see the authorization code. Give \"form_post\", \"query\" or leave response_mode out",
            );
            false
        }
        Some(other) => {
            c.error(
                at,
                format!("{other:?} is not supported: give \"form_post\" or \"query\" (or leave response_mode out)"),
            );
            false
        }
    }
}

/// The authorization request's extra parameters: `extraAuthorizationParameters`
/// (none the flow sets itself) and Ambassador Pro's `audience`.
fn compile_extra_parameters(
    c: &mut Compiler,
    path: &str,
    spec: &OAuth2Spec,
) -> Vec<(String, String)> {
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
    if let Some(audience) = spec.audience.as_deref().filter(|a| !a.is_empty()) {
        if spec.extra_authorization_parameters.contains_key("audience") {
            c.error(
                format!("{path}.audience"),
                "also given in extraAuthorizationParameters: give it once",
            );
        } else {
            extra_parameters.push(("audience".to_string(), audience.to_string()));
        }
    }
    extra_parameters
}
