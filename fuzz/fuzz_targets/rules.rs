//! Rule selection and the pipeline on hostile requests: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::config::Config;
use portcullis_core::jwt::KeySet;
use portcullis_core::pipeline::{Host, Journey};
use portcullis_core::request::Request;
use std::sync::{Arc, OnceLock};

struct NoKeys;
impl Host for NoKeys {
    fn keys(&self, _: usize) -> Option<Arc<KeySet>> {
        None
    }
    fn refresh_for_unknown_key(&self, _: usize) -> bool {
        false
    }
}

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let json = br#"{
          "filters": [
            {"name": "jwt", "JWT": {"validAlgorithms": ["none", "HS256"], "jwks": {"keys": []},
              "injectRequestHeaders": [{"name": "X-Sub", "value": "{{ .token.Claims.sub }}"}]}},
            {"name": "keys", "APIKey": {"keys": [{"value": "k"}]}},
            {"name": "mtls", "MTLS": {"allowedSubjects": ["CN=*"], "requireClientCertificate": false}}
          ],
          "rules": [
            {"host": "{a,b}.example.*", "path": "/api/[a-z]*/?*", "filters": [{"name": "jwt", "onDeny": "continue"}, {"name": "keys", "ifRequestHeader": {"name": "x-k", "valueRegex": "a.*b"}}]},
            {"host": "*", "path": "/m/*", "filters": [{"name": "mtls"}]},
            {"host": "*", "path": "*", "filters": [{"name": "jwt", "arguments": {"scope": ["read"]}}]}
          ]}"#;
        Config::from_json_with_env(json, &|_| None).unwrap_or_else(|_| std::process::abort())
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut pairs = Vec::new();
    for line in text.split('\n').take(64) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        pairs.push((name.to_ascii_lowercase(), value.to_string()));
    }
    let mut request = Request::from_header_pairs(pairs);
    let config = config();
    let mut journey = Journey::new(config, &request);
    let _ = journey.run(config, &mut request, &NoKeys, 1_700_000_000.0);
});
