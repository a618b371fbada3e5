//! The built module (dist/portcullis.wasm) loads in Envoy and, with no rules, lets
//! requests through untouched; a config the plugin refuses stops Envoy.

use portcullis_testbed::{client, EchoUpstream, Echoed, Envoy, EnvoyConfig};
use serde_json::json;

#[test]
fn module_loads_and_passes_requests_without_rules() {
    let echo = EchoUpstream::start();
    let cfg = EnvoyConfig::new(echo.port())
        .plugin(json!({"filters": [], "rules": []}))
        .build();
    let envoy = Envoy::start(&cfg);
    let r = client::get(envoy.port("main"), "/anything", &[("x-probe", "1")]);
    assert_eq!(r.status, 200, "{}", r.body_str());
    let seen = Echoed::parse(&r.body);
    assert_eq!(seen.path, "/anything");
    assert_eq!(seen.header("x-probe"), Some("1"));
}

#[test]
fn refused_plugin_config_stops_envoy() {
    let echo = EchoUpstream::start();
    let cfg = EnvoyConfig::new(echo.port())
        .plugin(json!({"filters": [], "rules": [], "noSuchField": true}))
        .build();
    match Envoy::try_start(&cfg) {
        Ok(envoy) => panic!(
            "Envoy started with a config the plugin must refuse; log:\n{}",
            envoy.log_tail(40)
        ),
        Err(e) => assert!(e.contains("noSuchField"), "{e}"),
    }
}

/// The export names of a WebAssembly module (its export section).
fn exports(module: &[u8]) -> Vec<String> {
    fn leb(data: &[u8], pos: &mut usize) -> usize {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = data[*pos];
            *pos += 1;
            value |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                return value;
            }
        }
    }
    let mut names = Vec::new();
    let mut pos = 8;
    while pos < module.len() {
        let id = module[pos];
        pos += 1;
        let size = leb(module, &mut pos);
        let end = pos + size;
        if id == 7 {
            let mut p = pos;
            for _ in 0..leb(module, &mut p) {
                let len = leb(module, &mut p);
                names.push(String::from_utf8_lossy(&module[p..p + len]).into_owned());
                p += len + 1; // the name, then the kind byte
                leb(module, &mut p); // the index
            }
        }
        pos = end;
    }
    names
}

/// Envoy calls a callback only when the module exports it: the shipped module
/// exports those Portcullis implements and none of the SDK's others
/// (scripts/build, scripts/unexport.py).
#[test]
fn shipped_module_exports_only_the_callbacks_it_implements() {
    let path = portcullis_testbed::envoy::wasm_path().unwrap_or_else(|e| panic!("{e}"));
    let names = exports(&std::fs::read(&path).unwrap_or_else(|e| panic!("{e}")));
    for needed in [
        "proxy_on_context_create",
        "proxy_on_request_headers",
        "proxy_on_request_body",
        // A stream that ends with trailers ends the body (include_body).
        "proxy_on_request_trailers",
        "proxy_on_response_headers",
        "proxy_on_http_call_response",
        "proxy_on_grpc_receive",
        "proxy_on_grpc_close",
        "proxy_on_delete",
        "proxy_on_tick",
        "proxy_on_configure",
        "proxy_on_memory_allocate",
    ] {
        assert!(
            names.iter().any(|n| n == needed),
            "{needed} missing: {names:?}"
        );
    }
    for dropped in [
        "proxy_on_log",
        "proxy_on_done",
        "proxy_on_response_body",
        "proxy_on_response_trailers",
        // Renamed to proxy_on_http_call_response (filter/src/host/abi.rs).
        "portcullis_on_http_call_response",
    ] {
        assert!(
            !names.iter().any(|n| n == dropped),
            "{dropped} still exported"
        );
    }
}
