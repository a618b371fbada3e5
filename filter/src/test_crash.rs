//! Test-only (feature `test-crash`): crash the VM on request, to prove that
//! `failure_policy: FAIL_RELOAD` brings authentication back. The shipped module
//! is built without this feature and has no such path.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

/// The request header that crashes a test-crash build when its value is `now`.
pub const HEADER: &str = "x-portcullis-test-crash";

/// Aborts the VM (a Wasm trap) when the request asks for it.
pub fn on_request_headers() {
    if let Ok(Some(value)) = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, HEADER) {
        if value == b"now" {
            std::process::abort();
        }
    }
}
