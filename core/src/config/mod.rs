//! The v1 configuration: parsed from the plugin's JSON once, validated completely,
//! and compiled into the structures requests are checked against (globs, templates,
//! keys, callout targets). Every fault names its JSON path.
//!
//! This module only assembles: each filter type owns its spec and its compile
//! step (`jwt::spec` and `JwtFilter::compile`, ...), on the shared building
//! blocks of `crate::compile`. The filters never import this module.

pub mod schema;

use crate::apikey::ApiKeyFilter;
use crate::authorization::AuthorizationFilter;
use crate::compile::{Compiler, ConfigError, JwksSource};
use crate::condition::HeaderCondition;
use crate::external::ExternalFilter;
use crate::jwt::filter::JwtFilter;
use crate::mtls::MtlsFilter;
use crate::oauth2::OAuth2Filter;
use crate::rules::{FilterArgs, FilterRef, OnAllow, OnDeny, Rule};
use schema::{ConfigSpec, FilterSpec};
use serde_json::Value;

/// A filter, compiled.
#[derive(Debug)]
pub struct Filter {
    pub name: String,
    pub kind: FilterKind,
}

#[derive(Debug)]
pub enum FilterKind {
    Jwt(Box<JwtFilter>),
    ApiKey(ApiKeyFilter),
    External(Box<ExternalFilter>),
    Mtls(MtlsFilter),
    OAuth2(Box<OAuth2Filter>),
    Authorization(Box<AuthorizationFilter>),
}

impl FilterKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            FilterKind::Jwt(_) => "JWT",
            FilterKind::ApiKey(_) => "APIKey",
            FilterKind::External(_) => "External",
            FilterKind::Mtls(_) => "MTLS",
            FilterKind::OAuth2(_) => "OAuth2",
            FilterKind::Authorization(_) => "Authorization",
        }
    }

    /// The headers this filter injects (lower case).
    pub fn injected_names(&self) -> Vec<&str> {
        match self {
            FilterKind::Jwt(jwt) => jwt.injected_names().collect(),
            FilterKind::Mtls(mtls) => mtls.injected_names().collect(),
            FilterKind::OAuth2(oauth2) => oauth2.injected_names().collect(),
            FilterKind::ApiKey(_) | FilterKind::External(_) | FilterKind::Authorization(_) => {
                Vec::new()
            }
        }
    }

    /// Whether this filter reads the client certificate (`.tls`, MTLS, binding).
    fn reads_tls(&self) -> bool {
        match self {
            FilterKind::Mtls(_) => true,
            FilterKind::Jwt(jwt) => {
                jwt.require_certificate_binding
                    || jwt
                        .inject
                        .iter()
                        .chain(jwt.error_headers.iter())
                        .any(|t| t.template.source().contains(".tls"))
            }
            FilterKind::OAuth2(oauth2) => oauth2
                .inject
                .iter()
                .any(|t| t.template.source().contains(".tls")),
            FilterKind::Authorization(authz) => authz.templates_read_tls(),
            FilterKind::ApiKey(_) | FilterKind::External(_) => false,
        }
    }
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub filters: Vec<Filter>,
    pub rules: Vec<Rule>,
    /// Remote JWK Sets, one per distinct `jwksURI`.
    pub jwks_sources: Vec<JwksSource>,
    /// Things to log once at configure time (ignored fields, `none` allowed, ...).
    pub notices: Vec<String>,
    /// Every header any filter injects (lower case, no duplicates): removed from
    /// every client request the plugin sees, so no client can supply one.
    pub injected_names: Vec<String>,
    /// Whether any filter needs the client certificate (the host then reads it).
    pub reads_tls: bool,
    /// The request headers the host needs to fetch, when fewer than all will do
    /// (see [`lean_headers`]); `None`: fetch them all.
    pub lean_headers: Option<Vec<String>>,
    /// `cacheBudget` in bytes: what the VM's caches together may hold (see
    /// [`Config::cache_shares`]).
    pub cache_budget: usize,
    /// `bypassCorsPreflight` (default true): a CORS preflight
    /// (`Request::is_cors_preflight`) skips JWT, OAuth2 and APIKey filters.
    pub bypass_cors_preflight: bool,
}

/// How `cacheBudget` is shared between a VM's caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheShares {
    /// The verified-token cache.
    pub tokens: usize,
    /// The opened-session cache (OAuth2 only).
    pub sessions: usize,
    /// The refresh answers shared by the VMs of one Envoy, in its shared data
    /// (OAuth2 only; see `shared_callout`). Counted in every VM's budget,
    /// though the VMs of one Envoy hold one copy.
    pub shared_callouts: usize,
}

/// Fields AES and Emissary define that belong to Envoy's own configuration here,
/// with where to configure them instead.
pub const IGNORED_FIELDS: &[(&str, &str)] = &[
    (
        "ambassador_id",
        "Portcullis has no Ambassador ID; one plugin config serves its filter chain",
    ),
    ("stats_name", "Envoy names the callout cluster's stats"),
    (
        "circuit_breakers",
        "configure circuit breakers on the Envoy cluster",
    ),
    (
        "tls",
        "configure TLS on the Envoy cluster (transport_socket)",
    ),
    (
        "tlsConfig",
        "configure TLS on the Envoy cluster (transport_socket)",
    ),
    (
        "insecureTLS",
        "configure TLS validation on the Envoy cluster (transport_socket)",
    ),
    (
        "renegotiateTLS",
        "configure TLS on the Envoy cluster (transport_socket)",
    ),
    (
        "maxStale",
        "Portcullis keeps the last good JWKS and discovery document itself",
    ),
    (
        "v2ExplicitTLS",
        "configure TLS on the Envoy cluster (transport_socket)",
    ),
];

/// Fields of one filter type that AES (or its predecessors) documented and
/// that have no place here: `(type, field, advice)`, ignored with a notice.
pub const IGNORED_TYPE_FIELDS: &[(&str, &str, &str)] = &[(
    "OAuth2",
    "stateTTL",
    "an Ambassador Pro field (how long a login may take) that AES 1.x dropped; Portcullis's login state cookie has its own fixed lifetime",
)];

/// Fields of one filter type, or of a rule's filter reference (type `rules`),
/// that AES documented but that are refused here, with what to write
/// instead: `(type, field, advice)`.
pub const REFUSED_TYPE_FIELDS: &[(&str, &str, &str)] = &[
    (
        "rules",
        "type",
        "this is the gateway.getambassador.io/v1alpha1 FilterPolicy shape: write the getambassador.io/v3alpha1 one: a filter reference is `name` (+ `namespace`), `ifRequestHeader`, `onDeny`, `onAllow`, `arguments`, with no `type`",
    ),
    (
        "rules",
        "jwtArguments",
        "this is the gateway.getambassador.io/v1alpha1 FilterPolicy shape: write the getambassador.io/v3alpha1 one, with these arguments under `arguments`",
    ),
    (
        "rules",
        "oauth2Arguments",
        "this is the gateway.getambassador.io/v1alpha1 FilterPolicy shape: write the getambassador.io/v3alpha1 one, with these arguments under `arguments`",
    ),
    (
        "rules",
        "apiKeyArguments",
        "this is the gateway.getambassador.io/v1alpha1 FilterPolicy shape: write the getambassador.io/v3alpha1 one, with these arguments under `arguments`",
    ),
    (
        "rules",
        "externalArguments",
        "this is the gateway.getambassador.io/v1alpha1 FilterPolicy shape: write the getambassador.io/v3alpha1 one, with these arguments under `arguments`",
    ),
];

/// Fields AES puts beside `JWT`/`OAuth2`/... in a `Filter` spec (the entry
/// level here) that have no meaning inside Envoy.
pub const IGNORED_ENTRY_FIELDS: &[(&str, &str)] = &[(
    "ambassador_id",
    "Portcullis has no Ambassador ID; one plugin config serves its filter chain",
)];

const FILTER_TYPES: &[&str] = &[
    "JWT",
    "External",
    "OAuth2",
    "APIKey",
    "MTLS",
    "Authorization",
];

impl Config {
    /// Adapts the configuration to a host that cannot check signatures, in a
    /// build without the pure-Rust ES384/ES512 checks
    /// ([`crate::jwt::filter::HOST_ONLY_ALGORITHMS`]; a no-op with them): see
    /// [`JwtFilter::without_host_only_algorithms`]. An OAuth2 filter gets a
    /// notice (its identity provider's tokens in those algorithms will not
    /// verify). The notices to log, or the faults.
    pub fn without_host_signatures(&mut self) -> Result<Vec<String>, Vec<ConfigError>> {
        let mut notices = Vec::new();
        let mut errors = Vec::new();
        if crate::jwt::filter::HOST_ONLY_ALGORITHMS.is_empty() {
            return Ok(notices);
        }
        let names = crate::jwt::filter::host_only_names();
        for (i, filter) in self.filters.iter_mut().enumerate() {
            match &mut filter.kind {
                FilterKind::Jwt(jwt) => {
                    match jwt.without_host_only_algorithms(&format!("filters[{i}].JWT")) {
                        Ok(notice) => notices.extend(notice),
                        Err(e) => errors.push(e),
                    }
                }
                FilterKind::OAuth2(_) => notices.push(format!(
                    "filters[{i}].OAuth2: tokens the identity provider signs with {names} will not verify: Envoy's verify_signature is unavailable and this module has no pure-Rust check for them"
                )),
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(notices)
        } else {
            Err(errors)
        }
    }

    /// The budget split between the caches: with an OAuth2 filter, a quarter
    /// for opened sessions and the rest for verified tokens; otherwise all of
    /// it for tokens. The two shares never add up to more than `cacheBudget`.
    pub fn cache_shares(&self) -> CacheShares {
        let oauth2 = self
            .filters
            .iter()
            .any(|f| matches!(f.kind, FilterKind::OAuth2(_)));
        let sessions = if oauth2 { self.cache_budget / 4 } else { 0 };
        let shared_callouts = if oauth2 { self.cache_budget / 8 } else { 0 };
        CacheShares {
            tokens: self
                .cache_budget
                .saturating_sub(sessions)
                .saturating_sub(shared_callouts),
            sessions,
            shared_callouts,
        }
    }

    /// Parses and validates the plugin configuration, reading `fromEnv` secrets
    /// from the process environment.
    pub fn from_json(bytes: &[u8]) -> Result<Config, Vec<ConfigError>> {
        Config::from_json_with_env(bytes, &|name| std::env::var(name).ok())
    }

    /// As `from_json`, with the environment given (tests, the checker).
    pub fn from_json_with_env(
        bytes: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<ConfigError>> {
        let mut value: Value = serde_json::from_slice(bytes).map_err(|e| {
            vec![ConfigError {
                path: String::new(),
                message: format!("configuration is not valid JSON: {e}"),
            }]
        })?;
        if !value.is_object() {
            return Err(vec![ConfigError {
                path: String::new(),
                message: "configuration must be a JSON object".to_string(),
            }]);
        }
        let mut notices = strip_ignored_fields(&mut value);
        let refused = refused_fields(&value);
        if !refused.is_empty() {
            return Err(refused);
        }
        let spec: ConfigSpec = crate::compile::json_path::deserialize(&value)
            .map_err(|(path, message)| vec![ConfigError { path, message }])?;
        let mut compiler = Compiler::new(spec.clusters.clone(), env);
        let cache_budget = match &spec.cache_budget {
            None => crate::jwt::cache::DEFAULT_BUDGET,
            Some(v) => parse_byte_size(v).unwrap_or_else(|why| {
                compiler.error("cacheBudget", why);
                0
            }),
        };
        let filters = compile_filters(&mut compiler, &spec.filters);
        let rules = compile_rules(&mut compiler, &spec, &filters);
        if !compiler.errors.is_empty() {
            return Err(compiler.errors);
        }
        notices.append(&mut compiler.notices);
        notices.extend(crate::compile::url::unused_cluster_notices(
            &value,
            &spec.clusters,
        ));
        let mut injected_names: Vec<String> = Vec::new();
        for filter in &filters {
            for name in filter.kind.injected_names() {
                if !injected_names.iter().any(|n| n == name) {
                    injected_names.push(name.to_string());
                }
            }
        }
        let reads_tls = filters.iter().any(|f| f.kind.reads_tls());
        let lean_headers = lean_headers(&filters, &rules, &injected_names);
        Ok(Config {
            lean_headers,
            filters,
            rules,
            jwks_sources: compiler.jwks_sources,
            notices,
            injected_names,
            reads_tls,
            cache_budget,
            bypass_cors_preflight: spec.bypass_cors_preflight.unwrap_or(true),
        })
    }

    /// Whether `path` is an OAuth2 filter's own endpoint (callback, logout),
    /// which the filter answers whatever rule covers it.
    pub fn oauth2_endpoint(&self, path: &str) -> bool {
        self.filters.iter().any(|f| match &f.kind {
            FilterKind::OAuth2(o) => o.handles_path(path),
            _ => false,
        })
    }

    pub fn filter_index(&self, name: &str) -> Option<usize> {
        self.filters.iter().position(|f| f.name == name)
    }
}

/// The request headers a configuration needs to decide an allowed request, when
/// that is a few named ones: every request is in the first rule (host and path
/// `*`), whose filters are JWT and MTLS filters without conditions, and no
/// filter injects a header (nothing to strip from client requests) or is an
/// OAuth2 filter (whose endpoints are chosen by path). The JWT filters need
/// `Authorization`; MTLS reads the connection. Each header fetched from Envoy
/// is a host call that copies into the module, and fetching all of them on every
/// request cost more than the check of a cached token.
///
/// A request built from these (`Request::lean`) only ever passes: anything
/// else, a token not in the cache included, makes the journey answer
/// [`crate::pipeline::Step::NeedFullRequest`], and the host runs it again with
/// every header, so denials, templates and logs see the request as it came.
pub fn lean_headers(
    filters: &[Filter],
    rules: &[crate::rules::Rule],
    injected_names: &[String],
) -> Option<Vec<String>> {
    if !injected_names.is_empty()
        || filters
            .iter()
            .any(|f| matches!(f.kind, FilterKind::OAuth2(_)))
    {
        return None;
    }
    let rule = rules.first()?;
    if !(rule.host.matches_all() && rule.path.matches_all()) {
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    for fref in &rule.filters {
        if fref.condition.is_some() {
            return None;
        }
        match filters.get(fref.filter).map(|f| &f.kind) {
            Some(FilterKind::Jwt(jwt)) => {
                let wanted: Vec<&str> = match &jwt.extract_from {
                    Some(places) => places.header_names().collect(),
                    None => vec!["authorization"],
                };
                for name in wanted {
                    if !names.iter().any(|n| n == name) {
                        names.push(name.to_string());
                    }
                }
            }
            Some(FilterKind::Mtls(_)) => {}
            // Decided from the claims, the method and the client address
            // (read apart): a denial redoes the request whole.
            Some(FilterKind::Authorization(authz)) if !authz.reads_headers() => {
                if authz.reads_method() && !names.iter().any(|n| n == ":method") {
                    names.push(":method".to_string());
                }
            }
            _ => return None,
        }
    }
    Some(names)
}

/// Largest `cacheBudget` accepted (the Wasm VM's memory is at most 4 GiB).
const MAX_CACHE_BUDGET: u64 = 1 << 30;

/// `cacheBudget`: a number of bytes, or a string `N`, `NKi`, `NMi`, `NGi`.
fn parse_byte_size(value: &Value) -> Result<usize, String> {
    let bytes = match value {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| "must be a whole number of bytes".to_string())?,
        Value::String(s) => {
            let t = s.trim();
            let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
                Some(i) => (t.get(..i).unwrap_or(""), t.get(i..).unwrap_or("")),
                None => (t, ""),
            };
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("{s:?} is not a size (e.g. 16Mi, 1048576)"))?;
            let scale: u64 = match unit {
                "" => 1,
                "Ki" => 1 << 10,
                "Mi" => 1 << 20,
                "Gi" => 1 << 30,
                _ => return Err(format!("{s:?}: the unit is Ki, Mi or Gi")),
            };
            n.checked_mul(scale)
                .ok_or_else(|| format!("{s:?} is too large"))?
        }
        _ => return Err("must be a number of bytes or a string like \"16Mi\"".to_string()),
    };
    if bytes > MAX_CACHE_BUDGET {
        return Err(format!("at most 1Gi ({MAX_CACHE_BUDGET} bytes)"));
    }
    usize::try_from(bytes).map_err(|_| "too large".to_string())
}

/// Removes the AES/Emissary fields that Envoy handles here, noting each once.
fn strip_ignored_fields(root: &mut Value) -> Vec<String> {
    let mut notices = Vec::new();
    let Some(filters) = root.get_mut("filters").and_then(Value::as_array_mut) else {
        return notices;
    };
    for (i, filter) in filters.iter_mut().enumerate() {
        let Some(filter) = filter.as_object_mut() else {
            continue;
        };
        for (field, advice) in IGNORED_ENTRY_FIELDS {
            if filter.remove(*field).is_some() {
                notices.push(format!("filters[{i}].{field}: ignored: {advice}"));
            }
        }
        for type_name in FILTER_TYPES {
            let Some(body) = filter.get_mut(*type_name).and_then(Value::as_object_mut) else {
                continue;
            };
            for (field, advice) in IGNORED_FIELDS {
                if body.remove(*field).is_some() {
                    notices.push(format!(
                        "filters[{i}].{type_name}.{field}: ignored: {advice}"
                    ));
                }
            }
            for (t, field, advice) in IGNORED_TYPE_FIELDS {
                if t == type_name && body.remove(*field).is_some() {
                    notices.push(format!(
                        "filters[{i}].{type_name}.{field}: ignored: {advice}"
                    ));
                }
            }
        }
    }
    notices
}

/// The fields of `REFUSED_TYPE_FIELDS` present in the configuration, each an
/// error at its path with its advice.
fn refused_fields(root: &Value) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut check = |path: String, body: Option<&Value>, type_name: &str| {
        let Some(body) = body.and_then(Value::as_object) else {
            return;
        };
        for (t, field, advice) in REFUSED_TYPE_FIELDS {
            if *t == type_name && body.contains_key(*field) {
                errors.push(ConfigError {
                    path: format!("{path}.{field}"),
                    message: format!("refused: {advice}"),
                });
            }
        }
    };
    let list = |key: &str| {
        root.get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    for (i, filter) in list("filters").iter().enumerate() {
        for type_name in FILTER_TYPES {
            check(
                format!("filters[{i}].{type_name}"),
                filter.get(*type_name),
                type_name,
            );
        }
    }
    for (i, rule) in list("rules").iter().enumerate() {
        let refs = rule
            .get("filters")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (j, fref) in refs.iter().enumerate() {
            check(format!("rules[{i}].filters[{j}]"), Some(fref), "rules");
        }
    }
    errors
}

fn compile_filters(c: &mut Compiler<'_>, specs: &[FilterSpec]) -> Vec<Filter> {
    let mut filters = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let path = format!("filters[{i}]");
        if spec.name.is_empty() {
            c.error(format!("{path}.name"), "must not be empty");
        }
        if specs.iter().take(i).any(|s| s.name == spec.name) {
            c.error(
                format!("{path}.name"),
                format!("duplicate filter name {:?}", spec.name),
            );
        }
        if spec.plugin.is_some() {
            c.error(
                format!("{path}.Plugin"),
                "AES Go plugins cannot run inside a Wasm module: run the plugin's logic as a service and call it with an External filter",
            );
            continue;
        }
        if spec.v1alpha1_type.is_some()
            || spec.v1alpha1_jwt.is_some()
            || spec.v1alpha1_oauth2.is_some()
            || spec.v1alpha1_apikey.is_some()
            || spec.v1alpha1_external.is_some()
        {
            c.error(
                format!("{path}.type"),
                "this is the gateway.getambassador.io/v1alpha1 Filter shape: write the getambassador.io/v3alpha1 one, with `JWT`, `OAuth2`, `APIKey` or `External` beside `name`",
            );
            continue;
        }
        if spec.oauth2.is_some() {
            if let Some(other) = specs.iter().take(i).find(|s| {
                s.oauth2.is_some() && crate::oauth2::cookie_names_collide(&s.name, &spec.name)
            }) {
                c.error(
                    format!("{path}.name"),
                    format!(
                        "OAuth2 filters {:?} and {:?} would share cookie names (a session chunk is `portcullis_session.<name>.<n>`): rename one",
                        other.name, spec.name
                    ),
                );
            }
        }
        let present: Vec<&str> = [
            ("JWT", spec.jwt.is_some()),
            ("External", spec.external.is_some()),
            ("OAuth2", spec.oauth2.is_some()),
            ("APIKey", spec.apikey.is_some()),
            ("MTLS", spec.mtls.is_some()),
            ("Authorization", spec.authorization.is_some()),
        ]
        .iter()
        .filter(|(_, p)| *p)
        .map(|(n, _)| *n)
        .collect();
        if present.len() != 1 {
            c.error(
                path.clone(),
                format!(
                    "a filter has exactly one of JWT, External, OAuth2, APIKey, MTLS, Authorization (found {})",
                    if present.is_empty() {
                        "none".to_string()
                    } else {
                        present.join(", ")
                    }
                ),
            );
            continue;
        }
        let kind = if let Some(jwt) = &spec.jwt {
            JwtFilter::compile(c, &format!("{path}.JWT"), &spec.name, jwt)
                .map(|f| FilterKind::Jwt(Box::new(f)))
        } else if let Some(apikey) = &spec.apikey {
            ApiKeyFilter::compile(c, &format!("{path}.APIKey"), apikey).map(FilterKind::ApiKey)
        } else if let Some(mtls) = &spec.mtls {
            MtlsFilter::compile(c, &format!("{path}.MTLS"), mtls).map(FilterKind::Mtls)
        } else if let Some(external) = &spec.external {
            ExternalFilter::compile(c, &format!("{path}.External"), external)
                .map(|f| FilterKind::External(Box::new(f)))
        } else if let Some(authz) = &spec.authorization {
            AuthorizationFilter::compile(c, &format!("{path}.Authorization"), authz)
                .map(|f| FilterKind::Authorization(Box::new(f)))
        } else if let Some(oauth2) = &spec.oauth2 {
            OAuth2Filter::compile(c, &format!("{path}.OAuth2"), &spec.name, oauth2)
                .map(|f| FilterKind::OAuth2(Box::new(f)))
        } else {
            None
        };
        if let Some(kind) = kind {
            filters.push(Filter {
                name: spec.name.clone(),
                kind,
            });
        }
    }
    filters
}

fn compile_rules(c: &mut Compiler<'_>, spec: &ConfigSpec, filters: &[Filter]) -> Vec<Rule> {
    let mut rules = Vec::new();
    // AES `precedence`: higher first; a stable sort keeps equal ones in order.
    let mut ordered: Vec<(usize, &crate::rules::RuleSpec)> =
        spec.rules.iter().enumerate().collect();
    ordered.sort_by_key(|(_, r)| std::cmp::Reverse(r.precedence.unwrap_or(0)));
    for (i, rule) in ordered {
        let path = format!("rules[{i}]");
        let host = c.glob(&format!("{path}.host"), rule.host.as_deref().unwrap_or("*"));
        let path_glob = c.glob(&format!("{path}.path"), rule.path.as_deref().unwrap_or("*"));
        let mut refs = Vec::new();
        for (j, fref) in rule.filters.iter().flatten().enumerate() {
            let rpath = format!("{path}.filters[{j}]");
            if let Some(r) = compile_filter_ref(c, &rpath, fref, spec, filters) {
                refs.push(r);
            }
        }
        if let (Some(host), Some(path_glob)) = (host, path_glob) {
            rules.push(Rule {
                host,
                path: path_glob,
                filters: refs,
            });
        }
    }
    rules
}

fn compile_filter_ref(
    c: &mut Compiler<'_>,
    path: &str,
    fref: &crate::rules::FilterRefSpec,
    spec: &ConfigSpec,
    filters: &[Filter],
) -> Option<FilterRef> {
    if fref.namespace.is_some() {
        c.notices.push(format!(
            "{path}.namespace: ignored: filter names are global in a Portcullis configuration"
        ));
    }
    let on_deny = match fref.on_deny.as_deref() {
        None | Some("break") => OnDeny::Break,
        Some("continue") => OnDeny::Continue,
        Some(other) => {
            c.error(
                format!("{path}.onDeny"),
                format!("must be \"break\" or \"continue\", not {other:?}"),
            );
            OnDeny::Break
        }
    };
    let on_allow = match fref.on_allow.as_deref() {
        None | Some("continue") => OnAllow::Continue,
        Some("break") => OnAllow::Break,
        Some(other) => {
            c.error(
                format!("{path}.onAllow"),
                format!("must be \"continue\" or \"break\", not {other:?}"),
            );
            OnAllow::Continue
        }
    };
    let condition = fref
        .if_request_header
        .as_ref()
        .and_then(|h| HeaderCondition::compile(c, &format!("{path}.ifRequestHeader"), h));
    let Some(index) = filters.iter().position(|f| f.name == fref.name) else {
        // A filter that failed to compile has already been reported.
        if !spec.filters.iter().any(|f| f.name == fref.name) {
            c.error(
                format!("{path}.name"),
                format!("unknown filter {:?}", fref.name),
            );
        }
        return None;
    };
    let kind = &filters.get(index)?.kind;
    let args = compile_filter_args(
        c,
        &format!("{path}.arguments"),
        kind,
        fref.arguments.as_ref(),
    )?;
    Some(FilterRef {
        filter: index,
        condition,
        on_deny,
        on_allow,
        args,
    })
}

/// A rule's `arguments` for a filter of this kind, each filter type's
/// arguments spec compiled (`filters[i].arguments` absent: its defaults).
fn compile_filter_args(
    c: &mut Compiler<'_>,
    path: &str,
    kind: &FilterKind,
    arguments: Option<&Value>,
) -> Option<FilterArgs> {
    let arguments = match arguments {
        None | Some(Value::Null) => return Some(default_filter_args(kind)),
        Some(v) => v.clone(),
    };
    match kind {
        FilterKind::Jwt(_) => c
            .deserialize_at::<crate::jwt::spec::JwtArgumentsSpec>(path, arguments)
            .map(|spec| FilterArgs::Jwt { scopes: spec.scope }),
        // The arguments, a map of strings, are the gRPC check's context_extensions.
        FilterKind::External(_) => c
            .deserialize_at::<std::collections::BTreeMap<String, String>>(path, arguments)
            .map(|context_extensions| FilterArgs::External { context_extensions }),
        FilterKind::OAuth2(_) => crate::oauth2::OAuth2Args::compile(c, path, Some(&arguments))
            .map(|a| FilterArgs::OAuth2(Box::new(a))),
        FilterKind::ApiKey(_) | FilterKind::Mtls(_) | FilterKind::Authorization(_) => {
            if arguments.as_object().is_some_and(|m| m.is_empty()) {
                Some(FilterArgs::None)
            } else {
                c.error(
                    path,
                    format!("{} filters take no arguments", kind.type_name()),
                );
                None
            }
        }
    }
}

fn default_filter_args(kind: &FilterKind) -> FilterArgs {
    match kind {
        FilterKind::Jwt(_) => FilterArgs::Jwt { scopes: Vec::new() },
        FilterKind::ApiKey(_) | FilterKind::Mtls(_) | FilterKind::Authorization(_) => {
            FilterArgs::None
        }
        FilterKind::OAuth2(_) => FilterArgs::OAuth2(Box::default()),
        FilterKind::External(_) => FilterArgs::External {
            context_extensions: std::collections::BTreeMap::new(),
        },
    }
}
