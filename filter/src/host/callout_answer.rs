//! Reading a callout's answer in its callback, bounded
//! (`MAX_ANSWER_HEADERS`, `MAX_ANSWER_BYTES`).

use portcullis_core::callout::{CalloutAnswer, MAX_ANSWER_BYTES, MAX_ANSWER_HEADERS};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

/// Reads the answer of an HTTP callout in its callback (bounded).
pub fn read_http_answer(body_size: usize) -> CalloutAnswer {
    let headers = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let status = headers
        .iter()
        .find(|(n, _)| n == ":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status else {
        return CalloutAnswer::Failed {
            reason: "no answer (connection failed, reset or timed out)".to_string(),
        };
    };
    if headers.len() > MAX_ANSWER_HEADERS.saturating_add(8) {
        return CalloutAnswer::Failed {
            reason: format!("answer has {} headers", headers.len()),
        };
    }
    // Values as the service sent their bytes.
    let headers = headers
        .into_iter()
        .filter(|(n, _)| !n.starts_with(':'))
        .collect();
    let body = read_buffer(BufferType::HttpCallResponseBody, body_size);
    CalloutAnswer::Http {
        status,
        headers,
        body,
    }
}

/// Reads the answer of a gRPC callout in its callback (bounded).
pub fn read_grpc_answer(status_code: u32, response_size: usize) -> CalloutAnswer {
    let message = if status_code == 0 {
        read_buffer(BufferType::GrpcReceiveBuffer, response_size)
    } else {
        Vec::new()
    };
    CalloutAnswer::Grpc {
        status_code,
        message,
    }
}

/// Reads at most `MAX_ANSWER_BYTES + 1` bytes of a buffer (one more than allowed,
/// so the core sees an oversized answer as such).
fn read_buffer(buffer: BufferType, size: usize) -> Vec<u8> {
    let take = size.min(MAX_ANSWER_BYTES.saturating_add(1));
    if take == 0 {
        return Vec::new();
    }
    let mut bytes = hostcalls::get_buffer(buffer, 0, take)
        .ok()
        .flatten()
        .unwrap_or_default();
    if size > take {
        bytes.resize(take, 0);
    }
    bytes
}
