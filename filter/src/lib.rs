//! Portcullis as a Proxy-Wasm plugin. This crate is the thin host shell: it reads
//! what Envoy knows, hands it to `portcullis-core`, and carries out the answer.
//! Only the modules under `host/` touch `proxy-wasm`.

pub mod host;
#[cfg(feature = "test-crash")]
pub mod test_crash;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(host::root::Root::new(context_id))
    });
}}
