//! The request's side of the host: reading the request's headers, applying
//! header changes, sending a local reply, adding headers to the upstream's
//! response, and sending an HTTP callout with header values as bytes.

use portcullis_core::request::Request;
use portcullis_core::response::{HeaderChange, Response};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;
use std::time::Duration;

/// Applies header changes to the current request, as bytes (a value passed
/// through from the client keeps the bytes it was sent with).
pub fn apply_changes(changes: &[HeaderChange]) {
    for change in changes {
        let result = match (&change.value, change.append) {
            (Some(value), true) => {
                hostcalls::add_map_value_bytes(MapType::HttpRequestHeaders, &change.name, value)
            }
            (value, _) => hostcalls::set_map_value_bytes(
                MapType::HttpRequestHeaders,
                &change.name,
                value.as_deref(),
            ),
        };
        if let Err(status) = result {
            log::warn!(
                "could not change request header {}: {status:?}",
                change.name
            );
        }
    }
}

/// Sends `response` as a local reply, header values as bytes (an auth
/// service's obs-text `Set-Cookie` reaches the client as it was sent).
pub(super) fn send(response: &Response) {
    if let Err(status) = super::abi::send_local_response(
        u32::from(response.status),
        &response.headers,
        &response.body,
    ) {
        log::warn!("could not send response: {status:?}");
    }
}

/// The request with every header, pseudo-headers included, values as bytes
/// (see `portcullis_core::request::Headers`; the SDK's string accessor would
/// panic on a value that is not UTF-8, which a client can send).
pub fn read_request() -> Request {
    let pairs = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
    Request::from_header_bytes(pairs)
}

/// A request of only the headers `names` (`Config::lean_headers`): one host
/// call per name instead of a copy of every header.
pub fn read_lean_request(names: &[String]) -> Request {
    let pairs = names
        .iter()
        .filter_map(|name| {
            let value = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
                .ok()
                .flatten()?;
            Some((name.clone(), value))
        })
        .collect();
    Request::lean_bytes(pairs)
}

/// Sends an HTTP callout with header values as bytes. Values that are all
/// UTF-8 (nearly every callout) go through the SDK's `dispatch_http_call`,
/// which takes `&str`; a callout with a value that is not (a client's obs-text
/// header passed to an auth service) through the host call itself
/// (`abi::dispatch_http_call`; its answer comes back on the root context's
/// tick). In a module not built by `scripts/build` (`abi::bytes_callouts`
/// false) such a value is sent converted lossily, and that is logged.
pub(super) fn dispatch_http_call_bytes(
    cluster: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    timeout: Duration,
) -> Result<u32, proxy_wasm::types::Status> {
    let text: Option<Vec<(&str, &str)>> = headers
        .iter()
        .map(|(n, v)| Some((n.as_str(), std::str::from_utf8(v).ok()?)))
        .collect();
    if let Some(text) = text {
        return hostcalls::dispatch_http_call(cluster, text, Some(body), vec![], timeout);
    }
    if super::abi::bytes_callouts() {
        return super::abi::dispatch_http_call(cluster, headers, body, timeout);
    }
    log::warn!(
        "a callout header value is not UTF-8 and this module was not built by scripts/build: sent converted (U+FFFD)"
    );
    let lossy: Vec<(&str, std::borrow::Cow<'_, str>)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v)))
        .collect();
    let text = lossy.iter().map(|(n, v)| (*n, v.as_ref())).collect();
    hostcalls::dispatch_http_call(cluster, text, Some(body), vec![], timeout)
}

/// Makes a filter's changes to the upstream's response (added beside its
/// headers, or set over them) (in its response-headers callback,
/// or while that response is held).
pub fn add_response_headers(headers: Vec<HeaderChange>) {
    for change in headers {
        let name = change.name.as_str();
        let result = match &change.value {
            Some(v) if change.append => {
                hostcalls::add_map_value_bytes(MapType::HttpResponseHeaders, name, v)
            }
            value => {
                hostcalls::set_map_value_bytes(MapType::HttpResponseHeaders, name, value.as_deref())
            }
        };
        if let Err(status) = result {
            log::warn!("could not change response header {name}: {status:?}");
        }
    }
}
