//! The gRPC variant of ext_authz: `envoy.service.auth.v3.Authorization/Check`,
//! a `CheckRequest` out and a `CheckResponse` back, read as Envoy's
//! `ext_authz` gRPC client reads it.

use super::proto::{
    Address, AttributeContext, AttributeRequest, CheckRequest, CheckResponse, HeaderMap,
    HeaderValue, HeaderValueOption, HttpRequest, HttpResponse, OkHttpResponse, Peer, SocketAddress,
    Timestamp,
};
use super::{
    removable_header, settable_header, CalloutKind, ExternalOutcome, SentBody, GRPC_METHOD,
    GRPC_SERVICE, MAX_ANSWER_BYTES, MAX_ANSWER_HEADERS, PARTIAL_BODY_HEADER,
};
use crate::request::{Headers, Request};
use crate::response::{HeaderChange, Response};
use prost::Message;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The `CheckRequest` for `request`, encoded.
pub(super) fn build(
    request: &Request,
    body: Option<SentBody<'_>>,
    context_extensions: &BTreeMap<String, String>,
    now_unix: f64,
) -> CalloutKind {
    let message = check_request(request, body, context_extensions, now_unix).encode_to_vec();
    CalloutKind::Grpc {
        service: GRPC_SERVICE.to_string(),
        method: GRPC_METHOD.to_string(),
        message,
        initial_metadata: Vec::new(),
    }
}

/// The `CheckRequest` Envoy would send for `request`.
pub(super) fn check_request(
    request: &Request,
    body: Option<SentBody<'_>>,
    context_extensions: &BTreeMap<String, String>,
    now_unix: f64,
) -> CheckRequest {
    // Envoy sends every header, pseudo headers included, names lower-case,
    // duplicates joined with ","; a client's own partial-body header is dropped.
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in [
        (":authority", &request.authority),
        (":method", &request.method),
        (":path", &request.path),
        (":scheme", &request.scheme),
    ] {
        if !value.is_empty() {
            headers.insert(name.to_string(), value.clone());
        }
    }
    // A value that is not UTF-8 goes lossily into `headers` (proto strings) and
    // exactly into `header_map` (`raw_value`), which then has every header.
    let mut raw: Option<BTreeMap<String, Vec<u8>>> = request.headers.has_opaque().then(|| {
        headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
            .collect()
    });
    for (name, value) in request.headers.iter_bytes() {
        if name == PARTIAL_BODY_HEADER {
            continue;
        }
        if let Some(raw) = raw.as_mut() {
            let joined = raw.entry(name.to_string()).or_default();
            if !joined.is_empty() {
                joined.push(b',');
            }
            joined.extend_from_slice(value);
        }
        let value = String::from_utf8_lossy(value);
        match headers.get_mut(name) {
            Some(existing) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => {
                headers.insert(name.to_string(), value.to_string());
            }
        }
    }
    let (body_text, raw_body) = match body {
        Some(b) => {
            let partial = if b.partial { "true" } else { "false" };
            headers.insert(PARTIAL_BODY_HEADER.to_string(), partial.to_string());
            if let Some(raw) = raw.as_mut() {
                raw.insert(PARTIAL_BODY_HEADER.to_string(), partial.into());
            }
            (
                String::from_utf8_lossy(b.bytes).into_owned(),
                b.bytes.to_vec(),
            )
        }
        None => (String::new(), Vec::new()),
    };
    let size = request
        .headers
        .get("content-length")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(-1);
    let http = HttpRequest {
        id: request.request_id.clone(),
        method: request.method.clone(),
        headers,
        path: request.path.clone(),
        host: request.authority.clone(),
        scheme: request.scheme.clone(),
        // Envoy leaves `query` and `fragment` empty: the query is in `path`
        // (attribute_context.proto: "This field is always empty").
        query: String::new(),
        fragment: String::new(),
        size,
        protocol: request.protocol.clone(),
        body: body_text,
        raw_body,
        header_map: raw.map(|raw| HeaderMap {
            headers: raw
                .into_iter()
                .map(|(key, raw_value)| HeaderValue {
                    key,
                    value: String::new(),
                    raw_value,
                })
                .collect(),
        }),
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: peer(&request.source_address),
            destination: peer(&request.destination_address),
            request: Some(AttributeRequest {
                time: timestamp(now_unix),
                http: Some(http),
            }),
            context_extensions: context_extensions.clone(),
        }),
    }
}

/// A peer from `ip:port` or `[v6]:port`; `None` when it is not one.
fn peer(address: &str) -> Option<Peer> {
    let parsed: SocketAddr = address.parse().ok()?;
    Some(Peer {
        address: Some(Address {
            socket_address: Some(SocketAddress {
                protocol: 0,
                address: parsed.ip().to_string(),
                port_value: Some(u32::from(parsed.port())),
            }),
        }),
        service: String::new(),
        principal: String::new(),
    })
}

fn timestamp(now_unix: f64) -> Option<Timestamp> {
    if !now_unix.is_finite() || now_unix < 0.0 || now_unix > i64::MAX as f64 {
        return None;
    }
    let seconds = now_unix.floor();
    let nanos = ((now_unix - seconds) * 1e9) as i32;
    Some(Timestamp {
        seconds: seconds as i64,
        nanos: nanos.clamp(0, 999_999_999),
    })
}

/// Whether a `HeaderValueOption` appends (the deprecated `append: true`) or
/// sets (anything else). Envoy 1.40's `ext_authz` reads only `append`:
/// `append_action` (`ADD_IF_ABSENT`, `OVERWRITE_IF_EXISTS`, ...) is not
/// looked at, so every option without `append: true` sets, as there (checked
/// against it in testbed/tests/external_grpc_vs_native.rs).
fn appends(option: &HeaderValueOption) -> bool {
    option.append.as_ref().is_some_and(|b| b.value)
}

/// The name and value of a `HeaderValueOption` that can be applied: `value`,
/// or the bytes of `raw_value` when `value` is empty (a value with obs-text
/// only `raw_value` can carry), copied as they are.
fn name_value(option: &HeaderValueOption) -> Option<(&str, &[u8])> {
    let header = option.header.as_ref()?;
    let value = if header.value.is_empty() && !header.raw_value.is_empty() {
        header.raw_value.as_slice()
    } else {
        header.value.as_bytes()
    };
    let name = header.key.as_str();
    settable_header(name, value).then_some((name, value))
}

/// The changes an OK answer makes to the upstream request, in Envoy 1.40's
/// order: every set (`append` unset or false; a later one of the same name
/// wins), then every `append: true`, which joins its value to the header's
/// first value with `,` and is dropped when the header is absent, then
/// `headers_to_remove` (not pseudo-headers or `host`). `current` is the
/// request's headers as they stand (none: an empty request).
fn upstream_changes(ok: &OkHttpResponse, current: Option<&Headers>) -> Vec<HeaderChange> {
    let mut work = current.cloned().unwrap_or_default();
    let mut touched_names: Vec<String> = Vec::new();
    let touch = |name: &str, touched: &mut Vec<String>| {
        if !touched.iter().any(|t| t.eq_ignore_ascii_case(name)) {
            touched.push(name.to_ascii_lowercase());
        }
    };
    for option in ok.headers.iter().filter(|o| !appends(o)) {
        if let Some((name, value)) = name_value(option) {
            work.set_bytes(name, value);
            touch(name, &mut touched_names);
        }
    }
    for option in ok.headers.iter().filter(|o| appends(o)) {
        let Some((name, value)) = name_value(option) else {
            continue;
        };
        let mut values: Vec<Vec<u8>> = work.get_all_bytes(name).map(<[u8]>::to_vec).collect();
        let Some(first) = values.first_mut() else {
            log::debug!("External: append: true for {name}, which the request lacks: dropped, as Envoy's ext_authz drops it");
            continue;
        };
        first.push(b',');
        first.extend_from_slice(value);
        work.remove(name);
        for v in &values {
            work.append_bytes(name, v);
        }
        touch(name, &mut touched_names);
    }
    let mut changes = Vec::new();
    for name in &touched_names {
        let mut values = work.get_all_bytes(name);
        match values.next() {
            Some(first) => {
                changes.push(HeaderChange::set(name, first));
                changes.extend(values.map(|v| HeaderChange::append(name, v)));
            }
            None => changes.push(HeaderChange::remove(name)),
        }
    }
    for name in &ok.headers_to_remove {
        if removable_header(name) {
            changes.push(HeaderChange::remove(name));
        }
    }
    changes
}

/// The changes an OK answer's `response_headers_to_add` make to the response
/// the client gets, in Envoy 1.40's order: every `append: true` added, then
/// every other set (replacing the upstream's value).
fn client_changes(options: &[HeaderValueOption]) -> Vec<HeaderChange> {
    let adds = options.iter().filter(|o| appends(o));
    let sets = options.iter().filter(|o| !appends(o));
    adds.filter_map(|o| name_value(o).map(|(n, v)| HeaderChange::append(n, v)))
        .chain(sets.filter_map(|o| name_value(o).map(|(n, v)| HeaderChange::set(n, v))))
        .collect()
}

/// Reads a gRPC answer. `current` is the request's headers as they stand, for
/// `append: true` (which joins to a present header and is dropped otherwise).
pub(super) fn read(
    status_code: u32,
    message: &[u8],
    current: Option<&Headers>,
) -> Result<ExternalOutcome, String> {
    if status_code != 0 {
        return Err(format!("gRPC status {status_code}"));
    }
    if message.len() > MAX_ANSWER_BYTES {
        return Err(format!(
            "CheckResponse larger than {MAX_ANSWER_BYTES} bytes"
        ));
    }
    let response =
        CheckResponse::decode(message).map_err(|e| format!("undecodable CheckResponse: {e}"))?;
    let code = response.status.as_ref().map(|s| s.code).unwrap_or(0);
    match response.http_response {
        Some(HttpResponse::ErrorResponse(_)) if code != 0 => {
            Err(format!("CheckResponse error_response (status {code})"))
        }
        _ if code == 0 => {
            let ok = match response.http_response {
                Some(HttpResponse::OkResponse(ok)) => ok,
                _ => return Ok(ExternalOutcome::Allow(Vec::new())),
            };
            if ok.headers.len() + ok.headers_to_remove.len() > MAX_ANSWER_HEADERS {
                return Err(format!(
                    "CheckResponse has more than {MAX_ANSWER_HEADERS} headers"
                ));
            }
            if ok.response_headers_to_add.len() > MAX_ANSWER_HEADERS {
                return Err(format!(
                    "CheckResponse has more than {MAX_ANSWER_HEADERS} response headers"
                ));
            }
            let changes = upstream_changes(&ok, current);
            let response = client_changes(&ok.response_headers_to_add);
            if response.is_empty() {
                return Ok(ExternalOutcome::Allow(changes));
            }
            Ok(ExternalOutcome::AllowWithResponseHeaders {
                request: changes,
                response,
            })
        }
        Some(HttpResponse::DeniedResponse(denied)) => {
            if denied.headers.len() > MAX_ANSWER_HEADERS {
                return Err(format!(
                    "CheckResponse has more than {MAX_ANSWER_HEADERS} headers"
                ));
            }
            let status = match denied.status.map(|s| s.code).unwrap_or(0) {
                0 => 403,
                n => match u16::try_from(n) {
                    Ok(s) if (100..=599).contains(&s) => s,
                    _ => return Err(format!("denied with invalid HTTP status {n}")),
                },
            };
            let mut response = Response {
                status,
                headers: Vec::new(),
                body: denied.body.into_bytes(),
            };
            for option in &denied.headers {
                let Some((name, value)) = name_value(option) else {
                    continue;
                };
                // Envoy 1.40 adds every header of a denial but those with
                // `append: true`, which it drops (Set-Cookie included).
                if appends(option) {
                    log::debug!(
                        "External: a denial's {name} with append: true is dropped, as Envoy's ext_authz drops it"
                    );
                } else {
                    response.push_header(name, value);
                }
            }
            if !response.body.is_empty() && response.header_bytes("content-type").is_none() {
                response.push_header("content-type", "text/plain");
            }
            Ok(ExternalOutcome::Deny(response))
        }
        // Denied without details: 403, no body (Envoy's default).
        _ => Ok(ExternalOutcome::Deny(Response {
            status: 403,
            headers: Vec::new(),
            body: Vec::new(),
        })),
    }
}
