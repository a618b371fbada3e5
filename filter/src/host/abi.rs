//! Host calls with header values as bytes, where the SDK (proxy-wasm 0.2.5)
//! takes them only as `&str` (proxy-wasm-rust-sdk issue #26): a local reply.
//!
//! HTTP header values are bytes (RFC 9110 §5.5: obs-text, 0x80–0xFF, is
//! allowed); a value an auth service sent with obs-text must reach the client
//! as it was sent, which a `&str` cannot carry.

use proxy_wasm::types::Status;

#[link(wasm_import_module = "env")]
extern "C" {
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
    match status {
        0 => Ok(()),
        1 => Err(Status::NotFound),
        2 => Err(Status::BadArgument),
        3 => Err(Status::SerializationFailure),
        4 => Err(Status::ParseFailure),
        7 => Err(Status::Empty),
        _ => Err(Status::InternalFailure),
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
