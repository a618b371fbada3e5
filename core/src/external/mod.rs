//! The External filter (AES `Filter.spec.External` = Emissary `AuthService`):
//! ask an auth service, over HTTP or Envoy's ext_authz gRPC protocol, whether a
//! request may pass, exactly as Envoy's `ext_authz` filter does with the
//! configuration Emissary generates for an `AuthService`.
//!
//! Sans-IO: [`ExternalFilter::build_check`] turns a request into a [`Callout`]
//! the host dispatches; [`ExternalFilter::read_answer`] turns what came back into
//! an [`ExternalOutcome`].

mod compile;
mod grpc;
mod http;
pub mod proto;
pub mod spec;
#[cfg(test)]
mod tests;

pub use crate::callout::{
    Callout, CalloutAnswer, CalloutKind, MAX_ANSWER_BYTES, MAX_ANSWER_HEADERS,
};
use crate::compile::url::CalloutTarget;
use crate::compile::Compiler;
#[cfg(test)]
use crate::compile::ConfigError; // what the tests' `compile_parts` reports
use crate::request::{Headers, Request};
use crate::response::{is_header_name, is_header_value, HeaderChange, Response};
use compile::compile_parts;
use spec::ExternalSpec;
use std::collections::BTreeMap;
use std::time::Duration;

/// Default `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// Default `status_on_error.code`.
pub const DEFAULT_STATUS_ON_ERROR: u16 = 403;

/// The header Envoy sets upstream when `failure_mode_allow` let a request pass.
pub const FAILURE_MODE_ALLOWED_HEADER: &str = "x-envoy-auth-failure-mode-allowed";
/// The header telling the auth service whether the body it got is truncated.
pub const PARTIAL_BODY_HEADER: &str = "x-envoy-auth-partial-body";
/// The header an HTTP auth service lists headers to remove upstream in (Envoy).
pub const HEADERS_TO_REMOVE_HEADER: &str = "x-envoy-auth-headers-to-remove";

/// Request headers always sent to an HTTP auth service (Emissary
/// `AllowedRequestHeaders`), lower-case.
pub const ALWAYS_SENT_REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "from",
    "proxy-authorization",
    "user-agent",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// Answer headers always copied (upstream on 200, to the client otherwise)
/// (Emissary `AllowedAuthorizationHeaders`), lower-case.
pub const ALWAYS_COPIED_AUTHORIZATION_HEADERS: &[&str] = &[
    "authorization",
    "location",
    "proxy-authenticate",
    "set-cookie",
    "www-authenticate",
];

/// The ext_authz gRPC service and method.
pub const GRPC_SERVICE: &str = "envoy.service.auth.v3.Authorization";
pub const GRPC_METHOD: &str = "Check";

/// `proto`: which ext_authz variant the auth service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

/// `include_body`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPolicy {
    pub max_bytes: usize,
    pub allow_partial: bool,
}

/// The request body as far as the host buffered it.
#[derive(Debug, Clone, Copy)]
pub struct RequestBody<'a> {
    pub bytes: &'a [u8],
    /// True when `bytes` is the whole body.
    pub complete: bool,
}

/// The filter's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalOutcome {
    /// Let the request through with these changes to its headers.
    Allow(Vec<HeaderChange>),
    /// Let the request through with these changes to its headers, and make
    /// `response`'s to the upstream's response on its way to the client
    /// (gRPC `response_headers_to_add` of an OK answer).
    AllowWithResponseHeaders {
        request: Vec<HeaderChange>,
        response: Vec<HeaderChange>,
    },
    /// Answer the client with this response.
    Deny(Response),
}

/// A compiled External filter.
#[derive(Debug, Clone)]
pub struct ExternalFilter {
    target: CalloutTarget,
    protocol: Protocol,
    timeout: Duration,
    path_prefix: String,
    /// Lower-case names of client headers sent to an HTTP auth service (the
    /// always-sent list plus `allowed_request_headers`, minus `add_auth_headers`,
    /// which replace them).
    request_headers: Vec<String>,
    /// `add_auth_headers` (lower-case names) and `l5d-dst-override`.
    added_headers: Vec<(String, String)>,
    /// Lower-case names of answer headers copied upstream (200) or to the client.
    authorization_headers: Vec<String>,
    body: Option<BodyPolicy>,
    status_on_error: u16,
    failure_mode_allow: bool,
}

impl ExternalFilter {
    /// Compiles `spec`; every fault is reported on `c` under `path`
    /// (`filters[1].External`).
    pub fn compile(
        c: &mut Compiler<'_>,
        path: &str,
        spec: &ExternalSpec,
    ) -> Option<ExternalFilter> {
        compile_parts(&c.clusters, path, spec, &mut c.errors, &mut c.notices)
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Lower-case names of the headers an allowing answer copies onto the
    /// upstream request (the fixed list and `allowed_authorization_headers`).
    pub fn upstream_header_names(&self) -> impl Iterator<Item = &str> {
        self.authorization_headers.iter().map(String::as_str)
    }

    /// The Envoy cluster of the auth service.
    pub fn cluster(&self) -> &str {
        &self.target.cluster
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `Some` when `include_body` is set: the host buffers up to `max_bytes` of
    /// the body before calling [`ExternalFilter::build_check`].
    pub fn body_policy(&self) -> Option<BodyPolicy> {
        self.body
    }

    /// Builds the check. `Err` holds a 413 response when `include_body` is set
    /// without `allow_partial` and the body is larger than `max_bytes`.
    pub fn build_check(
        &self,
        request: &Request,
        body: Option<RequestBody<'_>>,
        context_extensions: &BTreeMap<String, String>,
        now_unix: f64,
    ) -> Result<Callout, Response> {
        let body = self.body_to_send(body)?;
        let kind = match self.protocol {
            Protocol::Http => http::build(self, request, body),
            Protocol::Grpc => grpc::build(request, body, context_extensions, now_unix),
        };
        Ok(Callout {
            cluster: self.target.cluster.clone(),
            kind,
            timeout: self.timeout,
            share: None,
        })
    }

    /// Reads the answer. Errors (5xx, no answer, a garbled or oversized answer, a
    /// gRPC transport error) let the request through when `failure_mode_allow`
    /// is set, marked with `x-envoy-auth-failure-mode-allowed: true` upstream, and
    /// otherwise answer `status_on_error`.
    ///
    /// The gRPC header actions `ADD_IF_ABSENT` and `OVERWRITE_IF_EXISTS` depend
    /// on the request's headers; without them they act as set: prefer
    /// [`ExternalFilter::read_answer_for`].
    pub fn read_answer(&self, answer: CalloutAnswer) -> ExternalOutcome {
        self.read(answer, None)
    }

    /// As [`ExternalFilter::read_answer`], with the request's headers as they
    /// stand now (after earlier filters' changes), for the conditional gRPC
    /// header actions.
    pub fn read_answer_for(&self, request: &Request, answer: CalloutAnswer) -> ExternalOutcome {
        self.read(answer, Some(&request.headers))
    }

    fn read(&self, answer: CalloutAnswer, current: Option<&Headers>) -> ExternalOutcome {
        let result = match answer {
            CalloutAnswer::Failed { reason } => Err(format!("no answer: {reason}")),
            CalloutAnswer::Http {
                status,
                headers,
                body,
            } => http::read(self, status, headers, body),
            CalloutAnswer::Grpc {
                status_code,
                message,
            } => grpc::read(status_code, &message, current),
        };
        match result {
            Ok(outcome) => outcome,
            Err(reason) => self.error_outcome(&reason),
        }
    }

    /// The error path: `failure_mode_allow` or `status_on_error`.
    fn error_outcome(&self, reason: &str) -> ExternalOutcome {
        if self.failure_mode_allow {
            log::warn!(
                "External auth service {} (cluster {}): {reason}; allowing the request (failure_mode_allow)",
                self.target.authority,
                self.target.cluster
            );
            ExternalOutcome::Allow(vec![HeaderChange::set(FAILURE_MODE_ALLOWED_HEADER, "true")])
        } else {
            log::warn!(
                "External auth service {} (cluster {}): {reason}; answering {}",
                self.target.authority,
                self.target.cluster,
                self.status_on_error
            );
            ExternalOutcome::Deny(Response::json_error(
                self.status_on_error,
                "the authorization service could not be reached",
            ))
        }
    }

    /// The answer when the request body this filter checks never reached it:
    /// the upstream answered the request first (its headers went before the
    /// body, see `Journey::release_headers`), and Envoy drops request body that
    /// comes after a complete answer. The check cannot be made, so the request
    /// is refused with `status_on_error` (403 by default), even with
    /// `failure_mode_allow` (the auth service did not fail; the request could not
    /// be checked). JSON `{"message": ..., "status_code": N}`.
    pub fn body_lost(&self) -> Response {
        log::warn!(
            "External auth service {} (cluster {}): the upstream answered before the request body arrived, so it cannot be checked; answering {}",
            self.target.authority,
            self.target.cluster,
            self.status_on_error
        );
        Response::json_error(
            self.status_on_error,
            "the request body could not be checked: the upstream answered before it arrived",
        )
    }

    /// Applies `include_body` to what the host buffered.
    fn body_to_send<'a>(
        &self,
        body: Option<RequestBody<'a>>,
    ) -> Result<Option<SentBody<'a>>, Response> {
        let Some(policy) = self.body else {
            return Ok(None);
        };
        let body = body.unwrap_or(RequestBody {
            bytes: &[],
            complete: true,
        });
        let truncated = !body.complete || body.bytes.len() > policy.max_bytes;
        if truncated && !policy.allow_partial {
            return Err(Response::json_error(413, "Payload Too Large"));
        }
        let bytes = body
            .bytes
            .get(..policy.max_bytes.min(body.bytes.len()))
            .unwrap_or(body.bytes);
        Ok(Some(SentBody {
            bytes,
            partial: truncated,
        }))
    }
}

/// The body that goes to the auth service with `include_body`.
#[derive(Debug, Clone, Copy)]
struct SentBody<'a> {
    bytes: &'a [u8],
    /// True when it is not the whole request body.
    partial: bool,
}

/// A header an auth service names can be set on a request or response.
fn settable_header(name: &str, value: &[u8]) -> bool {
    is_header_name(name) && is_header_value(value)
}

/// Headers an auth service may not remove (Envoy `isRemovableHeader`): pseudo
/// headers and `host`.
fn removable_header(name: &str) -> bool {
    is_header_name(name) && !name.eq_ignore_ascii_case("host")
}
