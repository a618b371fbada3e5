//! The External filter's compile step: `Filter.spec.External` (or an Emissary
//! `AuthService`) checked field by field as Emissary reads it and turned into
//! an [`ExternalFilter`]; every fault is a [`ConfigError`] naming the field's
//! JSON path, every field Emissary ignores a notice.

use super::spec::ExternalSpec;
use super::{
    BodyPolicy, ExternalFilter, Protocol, ALWAYS_COPIED_AUTHORIZATION_HEADERS,
    ALWAYS_SENT_REQUEST_HEADERS, DEFAULT_STATUS_ON_ERROR, DEFAULT_TIMEOUT_MS,
};
use crate::compile::url::{CalloutTarget, CalloutUrl};
use crate::compile::ConfigError;
use crate::response::{is_header_name, is_header_value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The compilation itself, on the parts of a [`Compiler`](crate::compile::Compiler)
/// it uses (so that it can be tested without one): `clusters` maps an
/// authority to its Envoy cluster, `path` is the spec's JSON path
/// (`filters[1].External`). `None` when any field is refused (each one in
/// `errors`).
pub(super) fn compile_parts(
    clusters: &BTreeMap<String, String>,
    path: &str,
    spec: &ExternalSpec,
    errors: &mut Vec<ConfigError>,
    notices: &mut Vec<String>,
) -> Option<ExternalFilter> {
    let errors_before = errors.len();
    let mut error = |field: &str, message: String| {
        errors.push(ConfigError {
            path: format!("{path}.{field}"),
            message,
        })
    };

    let url = auth_service_url(spec, &mut error);
    let protocol = protocol(spec, &mut error);
    if spec.allow_request_body.is_some() {
        error(
            "allow_request_body",
            "Emissary's deprecated form: write include_body: {max_bytes: 4096, allow_partial: true} instead".to_string(),
        );
    }
    if let Some(notice) = protocol_version(spec, protocol, &mut error) {
        notices.push(format!("{path}.protocol_version: {notice}"));
    }
    let timeout_ms = spec.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms == 0 {
        error("timeout_ms", "must be greater than 0".to_string());
    }
    let path_prefix = path_prefix(spec, &mut error);
    let status_on_error = status_on_error(spec, &mut error);
    let body = body_policy(spec, &mut error);
    let added_headers = added_headers(spec, url.as_ref(), &mut error);
    let request_headers = request_headers(spec, &added_headers, &mut error);
    let authorization_headers = authorization_headers(spec, &mut error);
    if protocol == Protocol::Grpc {
        for field in http_only_fields_set(spec) {
            notices.push(format!(
                "{path}.{field}: ignored: only used with proto http (Emissary does the same)"
            ));
        }
    }

    if errors.len() != errors_before {
        return None;
    }
    let url = url?;
    Some(ExternalFilter {
        target: CalloutTarget::new(&url, clusters),
        protocol,
        timeout: Duration::from_millis(timeout_ms),
        path_prefix,
        request_headers,
        added_headers,
        authorization_headers,
        body,
        status_on_error,
        failure_mode_allow: spec.failure_mode_allow,
    })
}

/// `auth_service`: `[http://|https://]host[:port]`, without a path.
fn auth_service_url(
    spec: &ExternalSpec,
    error: &mut impl FnMut(&str, String),
) -> Option<CalloutUrl> {
    match CalloutUrl::parse(spec.auth_service.trim(), Some("http")) {
        Ok(url) if url.path != "/" => {
            error(
                "auth_service",
                format!(
                    "invalid auth_service {:?}: give [http://|https://]host[:port] without a path (use path_prefix)",
                    spec.auth_service
                ),
            );
            None
        }
        Ok(url) => Some(url),
        Err(e) => {
            error("auth_service", e);
            None
        }
    }
}

/// `proto`: `http` (the default) or `grpc`.
fn protocol(spec: &ExternalSpec, error: &mut impl FnMut(&str, String)) -> Protocol {
    match spec.proto.as_deref() {
        None | Some("http") => Protocol::Http,
        Some("grpc") => Protocol::Grpc,
        Some(other) => {
            error(
                "proto",
                format!("must be \"http\" or \"grpc\", not {other:?}"),
            );
            Protocol::Http
        }
    }
}

/// `protocol_version`: `v3`; `v2` is refused with gRPC and ignored with HTTP
/// (the notice, without the field's path, is returned).
fn protocol_version(
    spec: &ExternalSpec,
    protocol: Protocol,
    error: &mut impl FnMut(&str, String),
) -> Option<&'static str> {
    match spec.protocol_version.as_deref() {
        None | Some("v3") => None,
        // Emissary reads protocol_version only for gRPC: an HTTP check has no
        // protocol version.
        Some("v2") if protocol == Protocol::Http => {
            Some("ignored: \"v2\" has no meaning with proto http (as in Emissary)")
        }
        // gRPC v2 is gone from Envoy: the service must speak v3.
        Some("v2") => {
            error(
                "protocol_version",
                "v2 is not supported with proto grpc (Envoy removed the v2 API): move the auth service to v3 (envoy.service.auth.v3.Authorization)"
                    .to_string(),
            );
            None
        }
        Some(other) => {
            error("protocol_version", format!("must be \"v3\", not {other:?}"));
            None
        }
    }
}

/// `path_prefix`: empty, or a path starting with `/` with no query, fragment,
/// spaces or control characters.
fn path_prefix(spec: &ExternalSpec, error: &mut impl FnMut(&str, String)) -> String {
    let path_prefix = spec.path_prefix.clone().unwrap_or_default();
    if !path_prefix.is_empty()
        && (!path_prefix.starts_with('/')
            || path_prefix
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'?' || b == b'#'))
    {
        error(
            "path_prefix",
            format!("must be empty or a path starting with \"/\" (no query, spaces or control characters), not {path_prefix:?}"),
        );
    }
    path_prefix
}

/// `status_on_error.code`: an HTTP status, 100 to 599 (403 by default).
fn status_on_error(spec: &ExternalSpec, error: &mut impl FnMut(&str, String)) -> u16 {
    match &spec.status_on_error {
        None => DEFAULT_STATUS_ON_ERROR,
        Some(s) if (100..=599).contains(&s.code) => s.code,
        Some(s) => {
            error(
                "status_on_error.code",
                format!("must be an HTTP status between 100 and 599, not {}", s.code),
            );
            DEFAULT_STATUS_ON_ERROR
        }
    }
}

/// `include_body`: `max_bytes` must fit the platform's `usize`.
fn body_policy(spec: &ExternalSpec, error: &mut impl FnMut(&str, String)) -> Option<BodyPolicy> {
    let b = spec.include_body.as_ref()?;
    match usize::try_from(b.max_bytes) {
        Ok(max_bytes) => Some(BodyPolicy {
            max_bytes,
            allow_partial: b.allow_partial,
        }),
        Err(_) => {
            error(
                "include_body.max_bytes",
                format!("{} is too large", b.max_bytes),
            );
            None
        }
    }
}

/// `add_auth_headers` (names lower-cased, the last of a name kept) and, with
/// `add_linkerd_headers`, `l5d-dst-override` naming the auth service.
fn added_headers(
    spec: &ExternalSpec,
    url: Option<&CalloutUrl>,
    error: &mut impl FnMut(&str, String),
) -> Vec<(String, String)> {
    let mut added: Vec<(String, String)> = Vec::new();
    for (name, value) in &spec.add_auth_headers {
        if !is_header_name(name) {
            error(
                &format!("add_auth_headers.{name}"),
                format!("invalid header name {name:?}"),
            );
        } else if !is_header_value(value) {
            error(
                &format!("add_auth_headers.{name}"),
                "header values may not contain CR, LF or NUL".to_string(),
            );
        } else {
            let lower = name.to_ascii_lowercase();
            added.retain(|(n, _)| *n != lower);
            added.push((lower, value.clone()));
        }
    }
    if spec.add_linkerd_headers {
        if let Some(url) = url {
            added.retain(|(n, _)| n != "l5d-dst-override");
            added.push(("l5d-dst-override".to_string(), host_and_port(url)));
        }
    }
    added
}

/// The client headers sent to an HTTP auth service: the always-sent list and
/// `allowed_request_headers`, once each, without those `added` replaces.
fn request_headers(
    spec: &ExternalSpec,
    added: &[(String, String)],
    error: &mut impl FnMut(&str, String),
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let always = ALWAYS_SENT_REQUEST_HEADERS.iter().map(|h| h.to_string());
    let allowed = checked_names(
        error,
        "allowed_request_headers",
        &spec.allowed_request_headers,
    );
    for name in always.chain(allowed) {
        if !names.contains(&name) && !added.iter().any(|(n, _)| *n == name) {
            names.push(name);
        }
    }
    names
}

/// The answer headers copied upstream or to the client: the always-copied
/// list and `allowed_authorization_headers`, once each.
fn authorization_headers(spec: &ExternalSpec, error: &mut impl FnMut(&str, String)) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let always = ALWAYS_COPIED_AUTHORIZATION_HEADERS
        .iter()
        .map(|h| h.to_string());
    let allowed = checked_names(
        error,
        "allowed_authorization_headers",
        &spec.allowed_authorization_headers,
    );
    for name in always.chain(allowed) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The fields given that only an HTTP check uses (a gRPC filter ignores
/// them, as Emissary does).
fn http_only_fields_set(spec: &ExternalSpec) -> impl Iterator<Item = &'static str> {
    [
        (
            "path_prefix",
            spec.path_prefix.as_deref().is_some_and(|p| !p.is_empty()),
        ),
        (
            "allowed_request_headers",
            !spec.allowed_request_headers.is_empty(),
        ),
        (
            "allowed_authorization_headers",
            !spec.allowed_authorization_headers.is_empty(),
        ),
        ("add_auth_headers", !spec.add_auth_headers.is_empty()),
        ("add_linkerd_headers", spec.add_linkerd_headers),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
}

/// Validates a list of header names and lower-cases them.
fn checked_names(
    error: &mut impl FnMut(&str, String),
    field: &str,
    names: &[String],
) -> Vec<String> {
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if is_header_name(name) {
            out.push(name.to_ascii_lowercase());
        } else {
            error(
                &format!("{field}[{i}]"),
                format!("invalid header name {name:?}"),
            );
        }
    }
    out
}

/// `host:port` of the auth service, the port defaulted from the scheme
/// (Emissary's `l5d-dst-override` value).
fn host_and_port(url: &CalloutUrl) -> String {
    if url.authority.len() > url.host.len() {
        url.authority.clone()
    } else {
        let port = if url.scheme == "https" { 443 } else { 80 };
        format!("{}:{port}", url.host)
    }
}
