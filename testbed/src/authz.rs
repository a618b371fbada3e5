//! Test auth services for the External filter:
//!
//! - [`istio_ext_authz_http`]: the HTTP side of Istio's `ext-authz` sample (the
//!   service of the kgateway external auth guide), as a [`ScriptedServer`] reply.
//! - [`GrpcAuthServer`]: a real gRPC server (tonic, HTTP/2) implementing
//!   `envoy.service.auth.v3.Authorization/Check`, answering what the test scripts
//!   and recording every `CheckRequest` it decoded.
//! - [`native_ext_authz_http`]: Envoy's own `envoy.filters.http.ext_authz` filter
//!   configured the way Emissary configures it for an `AuthService`, for
//!   side-by-side tests on a further listener; [`native_ext_authz_grpc`] the
//!   same for a gRPC `AuthService`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::servers::{Reply, Request};

pub use portcullis_core::external::proto;
use proto::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderValue, HeaderValueOption, HttpStatus,
    OkHttpResponse, Status,
};

// ---- Istio's ext-authz sample (HTTP) ----------------------------------------

/// The header the Istio sample checks, and the value that allows.
pub const ISTIO_CHECK_HEADER: &str = "x-ext-authz";
pub const ISTIO_ALLOWED_VALUE: &str = "allow";
/// The header the Istio sample answers its decision in.
pub const ISTIO_RESULT_HEADER: &str = "x-ext-authz-check-result";
/// The body of the Istio sample's denial.
pub const ISTIO_DENY_BODY: &str =
    "denied by ext_authz for not found header `x-ext-authz: allow` in the request";

/// The Istio `ext-authz` sample's HTTP handler (samples/extauthz): `x-ext-authz:
/// allow` gets 200 with `x-ext-authz-check-result: allowed`; anything else 403
/// with `x-ext-authz-check-result: denied` and [`ISTIO_DENY_BODY`]. Both also
/// carry `x-ext-authz-check-received` (what the service saw) and echo
/// `x-ext-authz-additional-header-override`, as the sample does.
pub fn istio_ext_authz_http(req: &Request) -> Reply {
    let received = format!(
        "{} {}, headers: {:?}, body: [{}]",
        req.method,
        req.path,
        req.headers,
        req.body_str()
    );
    let over = req
        .header("x-ext-authz-additional-header-override")
        .unwrap_or("")
        .to_string();
    if req.header(ISTIO_CHECK_HEADER) == Some(ISTIO_ALLOWED_VALUE) {
        Reply::new(200)
            .header(ISTIO_RESULT_HEADER, "allowed")
            .header("x-ext-authz-additional-header-override", &over)
            .header("x-ext-authz-check-received", &received)
    } else {
        Reply::new(403)
            .header(ISTIO_RESULT_HEADER, "denied")
            .header("x-ext-authz-additional-header-override", &over)
            .header("x-ext-authz-check-received", &received)
            .header("content-type", "text/plain; charset=utf-8")
            .body(ISTIO_DENY_BODY)
    }
}

// ---- Envoy's native ext_authz, as Emissary configures it --------------------

/// Request headers Emissary always lets through to an HTTP auth service.
pub const EMISSARY_ALLOWED_REQUEST_HEADERS: &[&str] = &[
    "Authorization",
    "Cookie",
    "From",
    "Proxy-Authorization",
    "User-Agent",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
];

/// Answer headers Emissary always copies (upstream on 200, to the client
/// otherwise).
pub const EMISSARY_ALLOWED_AUTHORIZATION_HEADERS: &[&str] = &[
    "Authorization",
    "Location",
    "Proxy-Authenticate",
    "Set-cookie",
    "WWW-Authenticate",
];

/// An `AuthService` (HTTP) spec, as far as the native filter needs it.
#[derive(Debug, Clone, Default)]
pub struct NativeHttpAuth {
    /// The Envoy cluster of the auth service.
    pub cluster: String,
    /// `auth_service` as a URI, e.g. `http://auth.test:3000`.
    pub uri: String,
    pub timeout_ms: u64,
    pub path_prefix: String,
    pub allowed_request_headers: Vec<String>,
    pub allowed_authorization_headers: Vec<String>,
    pub add_auth_headers: Vec<(String, String)>,
    pub failure_mode_allow: bool,
    pub status_on_error: u16,
    /// `include_body`: `(max_bytes, allow_partial)`.
    pub include_body: Option<(u64, bool)>,
}

/// The `http_filters` entry Emissary generates for an HTTP `AuthService`:
/// `envoy.filters.http.ext_authz` with `http_service` (`server_uri`,
/// `path_prefix`, `authorization_request.allowed_headers` = the always-sent
/// list + `allowed_request_headers` (exact, case-insensitive),
/// `authorization_request.headers_to_add` = `add_auth_headers`,
/// `authorization_response.allowed_upstream_headers` = `allowed_client_headers`
/// = the always-copied list + `allowed_authorization_headers`),
/// `failure_mode_allow` (with `failure_mode_allow_header_add`),
/// `status_on_error`, `with_request_body`, `clear_route_cache`.
pub fn native_ext_authz_http(spec: &NativeHttpAuth) -> Value {
    let patterns = |always: &[&str], extra: &[String]| -> Value {
        let mut names: Vec<String> = always.iter().map(|s| s.to_string()).collect();
        names.extend(extra.iter().cloned());
        Value::Array(
            names
                .iter()
                .map(|n| json!({ "exact": n, "ignore_case": true }))
                .collect(),
        )
    };
    let client_and_upstream = patterns(
        EMISSARY_ALLOWED_AUTHORIZATION_HEADERS,
        &spec.allowed_authorization_headers,
    );
    let mut typed = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "http_service": {
            "server_uri": {
                "uri": spec.uri,
                "cluster": spec.cluster,
                "timeout": format!("{:.3}s", spec.timeout_ms as f64 / 1000.0)
            },
            "path_prefix": spec.path_prefix,
            "authorization_request": {
                "allowed_headers": {
                    "patterns": patterns(EMISSARY_ALLOWED_REQUEST_HEADERS, &spec.allowed_request_headers)
                },
                "headers_to_add": spec.add_auth_headers.iter()
                    .map(|(k, v)| json!({ "key": k, "value": v }))
                    .collect::<Vec<_>>()
            },
            "authorization_response": {
                "allowed_upstream_headers": { "patterns": client_and_upstream.clone() },
                "allowed_client_headers": { "patterns": client_and_upstream }
            }
        },
        "clear_route_cache": true,
        "failure_mode_allow": spec.failure_mode_allow,
        "failure_mode_allow_header_add": spec.failure_mode_allow,
        "status_on_error": { "code": spec.status_on_error }
    });
    if let (Some((max_bytes, allow_partial)), Some(t)) = (spec.include_body, typed.as_object_mut())
    {
        t.insert(
            "with_request_body".to_string(),
            json!({ "max_request_bytes": max_bytes, "allow_partial_message": allow_partial, "pack_as_bytes": true }),
        );
    }
    json!({ "name": "envoy.filters.http.ext_authz", "typed_config": typed })
}

/// The `http_filters` entry Emissary generates for a gRPC `AuthService`
/// (`proto: grpc`, `protocol_version: v3`): `envoy.filters.http.ext_authz` with
/// `grpc_service.envoy_grpc` on `cluster`, `timeout_ms`, `clear_route_cache`
/// and `status_on_error` 403; with `include_body`, `with_request_body`.
pub fn native_ext_authz_grpc(
    cluster: &str,
    timeout_ms: u64,
    include_body: Option<(u64, bool)>,
) -> Value {
    let mut typed = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "grpc_service": {
            "envoy_grpc": { "cluster_name": cluster },
            "timeout": format!("{:.3}s", timeout_ms as f64 / 1000.0)
        },
        "clear_route_cache": true,
        "failure_mode_allow": false,
        "status_on_error": { "code": 403 }
    });
    if let (Some((max_bytes, allow_partial)), Some(t)) = (include_body, typed.as_object_mut()) {
        t.insert(
            "with_request_body".to_string(),
            json!({ "max_request_bytes": max_bytes, "allow_partial_message": allow_partial }),
        );
    }
    json!({ "name": "envoy.filters.http.ext_authz", "typed_config": typed })
}

/// A header for a `HeaderValueOption` with `append_action` (base.proto's
/// `HeaderAppendAction`, [`proto::append_action`]) and no `append`.
pub fn header_action(name: &str, value: &str, action: i32) -> HeaderValueOption {
    HeaderValueOption {
        append_action: action,
        ..header_option(name, value, None)
    }
}

/// `CheckResponse` OK with these upstream header changes and removals, and
/// `response_headers_to_add` for the client's response.
pub fn ok_response_with_response_headers(
    headers: Vec<HeaderValueOption>,
    headers_to_remove: &[&str],
    response_headers_to_add: Vec<HeaderValueOption>,
) -> GrpcReply {
    GrpcReply::Answer(CheckResponse {
        status: Some(Status {
            code: code::OK,
            message: String::new(),
        }),
        http_response: Some(proto::HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove: headers_to_remove.iter().map(|s| s.to_string()).collect(),
            response_headers_to_add,
        })),
    })
}

// ---- a gRPC ext_authz server ------------------------------------------------

/// What the gRPC auth service answers one `Check`.
#[derive(Debug, Clone)]
pub enum GrpcReply {
    /// A `CheckResponse` with gRPC status OK.
    Answer(CheckResponse),
    /// A gRPC error status (`code`, `message`) instead of a `CheckResponse`.
    Error(i32, String),
    /// Answer after a delay.
    Delayed(Duration, Box<GrpcReply>),
}

/// `google.rpc.Code` values used by tests.
pub mod code {
    pub const OK: i32 = 0;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const UNAVAILABLE: i32 = 14;
    pub const INTERNAL: i32 = 13;
}

/// A header for a `HeaderValueOption`: set (the default), or appended with the
/// deprecated `append: true`.
pub fn header_option(name: &str, value: &str, append: Option<bool>) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_string(),
            value: value.to_string(),
            raw_value: Vec::new(),
        }),
        append: append.map(|value| proto::BoolValue { value }),
        append_action: 0,
        keep_empty_value: false,
    }
}

/// `CheckResponse` OK with these upstream header changes and removals.
pub fn ok_response(headers: Vec<HeaderValueOption>, headers_to_remove: &[&str]) -> GrpcReply {
    GrpcReply::Answer(CheckResponse {
        status: Some(Status {
            code: code::OK,
            message: String::new(),
        }),
        http_response: Some(proto::HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove: headers_to_remove.iter().map(|s| s.to_string()).collect(),
            response_headers_to_add: Vec::new(),
        })),
    })
}

/// `CheckResponse` PERMISSION_DENIED with this HTTP status, headers and body.
pub fn denied_response(http_status: i32, headers: Vec<HeaderValueOption>, body: &str) -> GrpcReply {
    GrpcReply::Answer(CheckResponse {
        status: Some(Status {
            code: code::PERMISSION_DENIED,
            message: String::new(),
        }),
        http_response: Some(proto::HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http_status }),
            headers,
            body: body.to_string(),
        })),
    })
}

/// The Istio `ext-authz` sample's gRPC `Check` (v3): `x-ext-authz: allow` is OK
/// with `x-ext-authz-check-result: allowed` added upstream; anything else
/// PERMISSION_DENIED, HTTP 403, `x-ext-authz-check-result: denied` and
/// [`ISTIO_DENY_BODY`].
pub fn istio_ext_authz_grpc(req: &CheckRequest) -> GrpcReply {
    let allowed = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .and_then(|h| h.headers.get(ISTIO_CHECK_HEADER))
        .is_some_and(|v| v == ISTIO_ALLOWED_VALUE);
    if allowed {
        ok_response(
            vec![header_option(ISTIO_RESULT_HEADER, "allowed", None)],
            &[],
        )
    } else {
        denied_response(
            403,
            vec![header_option(ISTIO_RESULT_HEADER, "denied", None)],
            ISTIO_DENY_BODY,
        )
    }
}

type GrpcHandler = Arc<dyn Fn(&CheckRequest) -> GrpcReply + Send + Sync>;

#[derive(Default)]
struct GrpcScript {
    /// Keyed by the checked request's path without query.
    by_path: HashMap<String, GrpcHandler>,
    default: Option<GrpcHandler>,
    /// Every `CheckRequest` decoded, with the gRPC request's metadata (lower-case
    /// names) and `:path`.
    log: Vec<ReceivedCheck>,
}

/// One `Check` call as the server received it.
#[derive(Debug, Clone)]
pub struct ReceivedCheck {
    /// The gRPC `:path` (`/envoy.service.auth.v3.Authorization/Check`).
    pub grpc_path: String,
    /// HTTP/2 request headers of the gRPC call (metadata), lower-case names.
    pub metadata: Vec<(String, String)>,
    pub check: CheckRequest,
}

impl ReceivedCheck {
    /// `attributes.request.http`.
    pub fn http(&self) -> &proto::HttpRequest {
        self.check
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .expect("CheckRequest.attributes.request.http is set")
    }

    pub fn attributes(&self) -> &proto::AttributeContext {
        self.check
            .attributes
            .as_ref()
            .expect("CheckRequest.attributes is set")
    }

    /// The checked request's path without query.
    pub fn path_only(&self) -> &str {
        let http = self.http();
        http.path.split('?').next().unwrap_or("")
    }
}

fn checked_path(req: &CheckRequest) -> String {
    req.attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .map(|h| h.path.split('?').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// A gRPC `envoy.service.auth.v3.Authorization` server on `127.0.0.1:0` (h2c),
/// answering per checked path what the test scripts (default: OK without
/// changes), recording every call. Runs on its own Tokio runtime thread; stops
/// on Drop.
pub struct GrpcAuthServer {
    port: u16,
    script: Arc<Mutex<GrpcScript>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

#[derive(Clone)]
struct AuthorizationService {
    script: Arc<Mutex<GrpcScript>>,
}

impl tonic::server::NamedService for AuthorizationService {
    const NAME: &'static str = "envoy.service.auth.v3.Authorization";
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

struct CheckCall {
    script: Arc<Mutex<GrpcScript>>,
    grpc_path: String,
    metadata: Vec<(String, String)>,
}

impl tonic::server::UnaryService<CheckRequest> for CheckCall {
    type Response = CheckResponse;
    type Future = BoxFuture<tonic::Response<CheckResponse>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<CheckRequest>) -> Self::Future {
        let check = request.into_inner();
        let handler = {
            let mut s = self.script.lock().unwrap_or_else(|e| e.into_inner());
            s.log.push(ReceivedCheck {
                grpc_path: self.grpc_path.clone(),
                metadata: self.metadata.clone(),
                check: check.clone(),
            });
            s.by_path
                .get(&checked_path(&check))
                .or(s.default.as_ref())
                .cloned()
        };
        let reply = match handler {
            Some(h) => h(&check),
            None => ok_response(Vec::new(), &[]),
        };
        Box::pin(async move {
            let mut reply = reply;
            loop {
                match reply {
                    GrpcReply::Delayed(d, inner) => {
                        tokio::time::sleep(d).await;
                        reply = *inner;
                    }
                    GrpcReply::Answer(r) => return Ok(tonic::Response::new(r)),
                    GrpcReply::Error(c, m) => {
                        return Err(tonic::Status::new(tonic::Code::from_i32(c), m))
                    }
                }
            }
        })
    }
}

impl tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>>
    for AuthorizationService
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        let path = req.uri().path().to_string();
        if path != "/envoy.service.auth.v3.Authorization/Check" {
            return Box::pin(async move {
                Ok(tonic::Status::unimplemented(format!("no method {path}")).into_http())
            });
        }
        let metadata = req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let call = CheckCall {
            script: self.script.clone(),
            grpc_path: path,
            metadata,
        };
        Box::pin(async move {
            let codec: tonic_prost::ProstCodec<CheckResponse, CheckRequest> =
                tonic_prost::ProstCodec::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(grpc.unary(call, req).await)
        })
    }
}

impl GrpcAuthServer {
    pub fn start() -> GrpcAuthServer {
        let script = Arc::new(Mutex::new(GrpcScript::default()));
        let std_listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap_or_else(|e| panic!("gRPC auth server: bind: {e}"));
        std_listener
            .set_nonblocking(true)
            .expect("gRPC auth server: nonblocking");
        let port = std_listener.local_addr().expect("local addr").port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let service = AuthorizationService {
            script: script.clone(),
        };
        let thread = thread::Builder::new()
            .name(format!("testbed-grpc-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
                    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                    let _ = tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_incoming_shutdown(incoming, async {
                            let _ = rx.await;
                        })
                        .await;
                });
            })
            .expect("spawn gRPC server thread");
        GrpcAuthServer {
            port,
            script,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn with<R>(&self, f: impl FnOnce(&mut GrpcScript) -> R) -> R {
        f(&mut self.script.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Answers checks of requests to `path` (without query) with `reply`.
    pub fn set(&self, path: &str, reply: GrpcReply) {
        self.set_fn(path, move |_| reply.clone());
    }

    /// Answers checks of requests to `path` by calling `f`.
    pub fn set_fn(
        &self,
        path: &str,
        f: impl Fn(&CheckRequest) -> GrpcReply + Send + Sync + 'static,
    ) {
        self.with(|s| s.by_path.insert(path.to_string(), Arc::new(f)));
    }

    /// Answers checks of unscripted paths by calling `f` (default: OK).
    pub fn set_default_fn(&self, f: impl Fn(&CheckRequest) -> GrpcReply + Send + Sync + 'static) {
        self.with(|s| s.default = Some(Arc::new(f)));
    }

    /// Every check received so far, in order.
    pub fn checks(&self) -> Vec<ReceivedCheck> {
        self.with(|s| s.log.clone())
    }

    /// Checks of requests whose path (without query) is `path`.
    pub fn checks_of(&self, path: &str) -> Vec<ReceivedCheck> {
        self.checks()
            .into_iter()
            .filter(|c| c.path_only() == path)
            .collect()
    }

    /// Waits until at least `n` checks of `path` arrived; false on timeout.
    pub fn wait_for_checks(&self, path: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.checks_of(path).len() >= n {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for GrpcAuthServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
