//! The gRPC variant of ext_authz: `envoy.service.auth.v3.Authorization/Check`,
//! a `CheckRequest` out and a `CheckResponse` back, read as Envoy's
//! `ext_authz` gRPC client reads it.

use super::proto::{
    append_action, Address, AttributeContext, AttributeRequest, CheckRequest, CheckResponse,
    HeaderMap, HeaderValue, HeaderValueOption, HttpRequest, HttpResponse, Peer, SocketAddress,
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

/// How a `HeaderValueOption` changes a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Set,
    Append,
    AddIfAbsent,
    OverwriteIfExists,
}

/// The action of one `HeaderValueOption`. The deprecated `append` wins when
/// present (true appends, false sets). Otherwise `append_action`, except that
/// its default `APPEND_IF_EXISTS_OR_ADD` (0) sets: proto3 cannot tell it from
/// "unset", the ext_authz proto documents `append` as defaulting to false in
/// these messages ("By leaving `append` as false, the filter will either add a
/// new header, or override an existing one"), and that is what Envoy did up to
/// 1.37 and what auth services written for Emissary expect. Unknown actions
/// set, as Envoy does.
fn action(option: &HeaderValueOption) -> Action {
    match &option.append {
        Some(b) if b.value => Action::Append,
        Some(_) => Action::Set,
        None => match option.append_action {
            append_action::ADD_IF_ABSENT => Action::AddIfAbsent,
            append_action::OVERWRITE_IF_EXISTS => Action::OverwriteIfExists,
            _ => Action::Set,
        },
    }
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

/// Reads a gRPC answer. `current` is the request's headers as they stand, for
/// the conditional actions (`ADD_IF_ABSENT`, `OVERWRITE_IF_EXISTS`); without
/// them those act as set.
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
            if !ok.response_headers_to_add.is_empty() {
                log::debug!(
                    "External: ignoring {} response_headers_to_add of an OK CheckResponse",
                    ok.response_headers_to_add.len()
                );
            }
            let mut changes = Vec::with_capacity(ok.headers.len() + ok.headers_to_remove.len());
            for option in &ok.headers {
                let Some((name, value)) = name_value(option) else {
                    continue;
                };
                let present = || current.is_some_and(|h| h.contains(name));
                match action(option) {
                    Action::Set => changes.push(HeaderChange::set(name, value)),
                    Action::Append => changes.push(HeaderChange::append(name, value)),
                    Action::AddIfAbsent if current.is_some() && present() => {}
                    Action::OverwriteIfExists if current.is_some() && !present() => {}
                    Action::AddIfAbsent | Action::OverwriteIfExists => {
                        changes.push(HeaderChange::set(name, value))
                    }
                }
            }
            for name in &ok.headers_to_remove {
                if removable_header(name) {
                    changes.push(HeaderChange::remove(name));
                }
            }
            Ok(ExternalOutcome::Allow(changes))
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
                // Envoy: on a local reply `append: true` adds, anything else sets.
                match action(option) {
                    Action::Append => response.push_header(name, value),
                    _ => response.set_header(name, value),
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
