//! The floor: what any Proxy-Wasm filter pays in Envoy before doing anything.
//!
//! Exports `proxy_on_request_headers` (answers Continue), the ABI version marker
//! and the allocator the host needs; every other callback is left unexported, so
//! Envoy calls nothing else. Features add one host call each (see Cargo.toml), to
//! measure what that call costs on its own (`scripts/bench-instructions`).
#![no_std]

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// Where the host copies what a call returns: one static buffer, reused (the
/// module never keeps a value past the call that asked for it).
const BUFFER_BYTES: usize = 64 * 1024;
static mut BUFFER: [u8; BUFFER_BYTES] = [0; BUFFER_BYTES];

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    if size > BUFFER_BYTES {
        return core::ptr::null_mut();
    }
    core::ptr::addr_of_mut!(BUFFER).cast::<u8>()
}

#[allow(dead_code)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
}

/// Keeps a value alive so the call is not optimised away.
#[allow(dead_code)]
static mut SINK: usize = 0;

#[allow(dead_code)]
fn property(path: &[u8]) {
    let mut data: *mut u8 = core::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer it got from proxy_on_memory_allocate and a size.
    unsafe {
        proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size);
        SINK = SINK.wrapping_add(size);
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _headers: u32, _eos: u32) -> u32 {
    #[cfg(feature = "header")]
    {
        let name = b"authorization";
        let mut data: *mut u8 = core::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: as in `property`; map 0 is the request headers.
        unsafe {
            proxy_get_header_map_value(0, name.as_ptr(), name.len(), &mut data, &mut size);
            SINK = SINK.wrapping_add(size);
        }
    }
    #[cfg(feature = "property")]
    property(b"xds\0route_metadata\0filter_metadata\0portcullis\0bypass_auth");
    #[cfg(feature = "route_name")]
    property(b"xds\0route_name");
    #[cfg(feature = "time")]
    {
        let mut t: u64 = 0;
        // SAFETY: the host writes one u64.
        unsafe {
            proxy_get_current_time_nanoseconds(&mut t);
            SINK = SINK.wrapping_add(t as usize);
        }
    }
    0 // Continue
}

#[cfg(feature = "callbacks")]
mod callbacks {
    #[no_mangle]
    pub extern "C" fn proxy_on_context_create(_context_id: u32, _parent: u32) {}

    #[no_mangle]
    pub extern "C" fn proxy_on_response_headers(_context_id: u32, _headers: u32, _eos: u32) -> u32 {
        0
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_delete(_context_id: u32) {}
}
