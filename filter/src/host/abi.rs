//! Host calls with header values as bytes, where the SDK (proxy-wasm 0.2.5)
//! takes them only as `&str` (proxy-wasm-rust-sdk issue #26): a local reply,
//! and an HTTP callout.
//!
//! HTTP header values are bytes (RFC 9110 §5.5: obs-text, 0x80–0xFF, is
//! allowed); a value an auth service sent with obs-text must reach the client
//! as it was sent, and a client's must reach the auth service, which a `&str`
//! cannot carry.
//!
//! The SDK routes a callout's answer by the token its own `dispatch_http_call`
//! registered, and panics (`invalid token_id`) on any other: a callout sent
//! here must have its answer taken before the SDK sees it. This module exports
//! `portcullis_on_http_call_response`, which `scripts/build` makes the
//! module's `proxy_on_http_call_response` (the SDK's export is dropped) and
//! marks as done by rewriting [`CALLBACK_MARKER`]'s bytes. It reads the answer
//! of a callout sent here and keeps it for the root context's next tick
//! ([`take_answers`]: 10 ms later, the tick is sped up), where the request goes
//! on as a woken one does; every other answer goes to the SDK's dispatcher as
//! before. A module built without `scripts/build` keeps the SDK's export, and
//! [`bytes_callouts`] says no: the caller then sends text.
//!
//! The same way, `portcullis_on_request_body` becomes the module's
//! `proxy_on_request_body`: the SDK's, whose pause the callback may turn into
//! `StopIterationAndWatermark` ([`hold_under_flow_control`]), which the SDK's
//! `Action` cannot express.

use portcullis_core::external::CalloutAnswer;
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;
use std::cell::{Cell, RefCell};
use std::time::Duration;

/// Rewritten by `scripts/build` (same length) once
/// `portcullis_on_http_call_response` is the module's
/// `proxy_on_http_call_response`.
#[used]
static CALLBACK_MARKER: [u8; 36] = *b"portcullis-http-call-callback:sdk---";
/// What `scripts/build` writes.
const OWN_CALLBACK: [u8; 36] = *b"portcullis-http-call-callback:own---";

/// Whether this module takes the answers of callouts sent with
/// [`dispatch_http_call`] (see the module's documentation).
pub fn bytes_callouts() -> bool {
    // SAFETY: a read of an initialised static; volatile, so that the compiler
    // reads the bytes the build step may have rewritten.
    let marker = unsafe { std::ptr::read_volatile(&CALLBACK_MARKER) };
    marker == OWN_CALLBACK
}

thread_local! {
    /// Tokens of callouts sent with [`dispatch_http_call`], not answered yet.
    static SENT: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Their answers, for the root context's tick.
    static ANSWERS: RefCell<Vec<(u32, CalloutAnswer)>> = const { RefCell::new(Vec::new()) };
}

#[link(wasm_import_module = "env")]
extern "C" {
    /// Proxy-Wasm ABI 0.2.1 `proxy_http_call`, with a `u32` status.
    #[link_name = "proxy_http_call"]
    fn host_http_call(
        upstream_data: *const u8,
        upstream_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        body_data: *const u8,
        body_size: usize,
        trailers_data: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        return_token: *mut u32,
    ) -> u32;

    /// Proxy-Wasm ABI 0.2.1 `proxy_send_local_response`. Declared here with a
    /// `u32` status (any value the host returns is a valid `u32`).
    #[link_name = "proxy_send_local_response"]
    fn host_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// A header map in the Proxy-Wasm ABI 0.2.1 encoding: the number of pairs
/// (u32, little-endian), then per pair the name's and the value's lengths
/// (u32 each), then per pair the name, a NUL, the value, a NUL. Values are
/// copied as bytes. `None` when a count or length does not fit in a u32.
pub fn encode_header_map<'a>(
    pairs: impl ExactSizeIterator<Item = (&'a str, &'a [u8])> + Clone,
) -> Option<Vec<u8>> {
    let mut size = 4usize;
    for (name, value) in pairs.clone() {
        size = size
            .checked_add(10)?
            .checked_add(name.len())?
            .checked_add(value.len())?;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&u32::try_from(pairs.len()).ok()?.to_le_bytes());
    for (name, value) in pairs.clone() {
        out.extend_from_slice(&u32::try_from(name.len()).ok()?.to_le_bytes());
        out.extend_from_slice(&u32::try_from(value.len()).ok()?.to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    Some(out)
}

extern "C" {
    /// The SDK's `proxy_on_http_call_response` (its dispatcher), which the
    /// module no longer exports once built: answers of its own callouts go on
    /// to it.
    #[link_name = "proxy_on_http_call_response"]
    fn sdk_on_http_call_response(
        context_id: u32,
        token: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    );
}

fn status_of(code: u32) -> Status {
    match code {
        0 => Status::Ok,
        1 => Status::NotFound,
        2 => Status::BadArgument,
        3 => Status::SerializationFailure,
        4 => Status::ParseFailure,
        7 => Status::Empty,
        8 => Status::CasMismatch,
        _ => Status::InternalFailure,
    }
}

/// Sends an HTTP callout to `cluster` with these headers (pseudo-headers
/// included; values as bytes) and `body`; its answer is kept for
/// [`take_answers`]. Use only when [`bytes_callouts`] says so. Returns the
/// token; `Err` when Envoy refuses (an unknown cluster: `BadArgument`).
pub fn dispatch_http_call(
    cluster: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    timeout: Duration,
) -> Result<u32, Status> {
    let map = encode_header_map(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
        .ok_or(Status::BadArgument)?;
    let trailers = encode_header_map(std::iter::empty()).ok_or(Status::BadArgument)?;
    let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let mut token = 0u32;
    // SAFETY: every pointer is valid for its length during the call (the host
    // copies what it reads), and `token` is a valid place for the host to write.
    let code = unsafe {
        host_http_call(
            cluster.as_ptr(),
            cluster.len(),
            map.as_ptr(),
            map.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    };
    match status_of(code) {
        Status::Ok => {
            SENT.with(|sent| sent.borrow_mut().push(token));
            Ok(token)
        }
        status => Err(status),
    }
}

/// The answers of callouts sent with [`dispatch_http_call`] that `mine`
/// claims (by token), for the root context's tick. Others stay for their own
/// root context (two plugins may share one VM).
pub fn take_answers(mine: impl Fn(u32) -> bool) -> Vec<(u32, CalloutAnswer)> {
    ANSWERS.with(|answers| {
        let mut answers = answers.borrow_mut();
        if answers.is_empty() {
            return Vec::new();
        }
        let (taken, kept) = std::mem::take(&mut *answers)
            .into_iter()
            .partition(|(token, _)| mine(*token));
        *answers = kept;
        taken
    })
}

/// The module's `proxy_on_http_call_response` once built (see the module's
/// documentation): an answer to a callout sent with [`dispatch_http_call`] is
/// read now (its headers and body exist only during this call) and kept for
/// the tick, which is sped up to deliver it; any other goes to the SDK.
#[no_mangle]
pub extern "C" fn portcullis_on_http_call_response(
    context_id: u32,
    token: u32,
    num_headers: usize,
    body_size: usize,
    num_trailers: usize,
) {
    let ours = SENT.with(|sent| {
        let mut sent = sent.borrow_mut();
        let at = sent.iter().position(|t| *t == token);
        at.map(|at| sent.swap_remove(at)).is_some()
    });
    if ours {
        let answer = super::callout_answer::read_http_answer(body_size);
        ANSWERS.with(|answers| answers.borrow_mut().push((token, answer)));
        // The host calls this in the root context, whose tick delivers it.
        let _ = hostcalls::set_tick_period(super::vm_state::FAST_TICK);
        return;
    }
    // SAFETY: the SDK's own exported callback, called as the host would.
    unsafe { sdk_on_http_call_response(context_id, token, num_headers, body_size, num_trailers) }
}

/// Sends a local reply: `status`, these headers (values as bytes), `body`.
/// Unlike the SDK's `send_http_response`, an unexpected host status is an
/// `Err`, not a panic.
pub fn send_local_response(
    status: u32,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<(), Status> {
    let map = encode_header_map(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
        .ok_or(Status::BadArgument)?;
    // SAFETY: every pointer is valid for its length for the duration of the
    // call (the host copies what it reads); a null details pointer with size 0
    // is what the SDK passes too.
    let status = unsafe {
        host_send_local_response(
            status,
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    };
    match status_of(status) {
        Status::Ok => Ok(()),
        status => Err(status),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn header_map_encoding_is_the_abi_layout_with_bytes_untouched() {
        let value: &[u8] = b"caf\xe9";
        let pairs = [("set-cookie", value), ("x", b"".as_slice())];
        let map = encode_header_map(pairs.iter().copied()).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&2u32.to_le_bytes());
        expected.extend_from_slice(&10u32.to_le_bytes());
        expected.extend_from_slice(&4u32.to_le_bytes());
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&0u32.to_le_bytes());
        expected.extend_from_slice(b"set-cookie\0caf\xe9\0x\0\0");
        assert_eq!(map, expected);
        assert_eq!(map.capacity(), map.len());
        assert_eq!(
            encode_header_map(std::iter::empty()).unwrap(),
            0u32.to_le_bytes()
        );
    }
}

thread_local! {
    /// Set by the request-body callback when the rest of the body is only
    /// held for the upstream (the check has what it reads):
    /// [`portcullis_on_request_body`] then asks Envoy for flow control.
    static HOLD_UNDER_FLOW_CONTROL: Cell<bool> = const { Cell::new(false) };
}

/// Asks that this body callback's pause be `StopIterationAndWatermark`:
/// Envoy keeps the body under flow control (past its buffer limit it stops
/// reading the client) instead of buffering it (past the limit: its own 413).
/// Only for body no check reads any more: a check still waiting for
/// `max_bytes` must see them arrive. Effective in a module built by
/// `scripts/build` (see [`portcullis_on_request_body`]).
pub fn hold_under_flow_control() {
    HOLD_UNDER_FLOW_CONTROL.with(|h| h.set(true));
}

extern "C" {
    /// The SDK's `proxy_on_request_body` (its dispatcher; `end_of_stream` is
    /// a wasm `i32` either way), which the module no longer exports once
    /// built: [`portcullis_on_request_body`] calls it.
    #[link_name = "proxy_on_request_body"]
    fn sdk_on_request_body(context_id: u32, body_size: usize, end_of_stream: u32) -> u32;
}

/// The module's `proxy_on_request_body` once built (`scripts/build` renames
/// it; the SDK's export is dropped): the SDK's dispatcher, whose `Pause`
/// (the ABI's 1, `StopIterationAndBuffer`) becomes 2,
/// `StopIterationAndWatermark`, when the callback asked for it
/// ([`hold_under_flow_control`]). The Rust SDK 0.2.5 cannot return 2.
#[no_mangle]
pub extern "C" fn portcullis_on_request_body(
    context_id: u32,
    body_size: usize,
    end_of_stream: u32,
) -> u32 {
    HOLD_UNDER_FLOW_CONTROL.with(|h| h.set(false));
    // SAFETY: the SDK's own exported callback, called as the host would.
    let action = unsafe { sdk_on_request_body(context_id, body_size, end_of_stream) };
    if action == 1 && HOLD_UNDER_FLOW_CONTROL.with(|h| h.replace(false)) {
        2
    } else {
        action
    }
}
