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
