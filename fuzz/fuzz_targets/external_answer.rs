//! Reading an auth service's answer (HTTP headers and body, gRPC CheckResponse):
//! nothing a broken auth service sends may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::config::{Config, FilterKind};
use portcullis_core::external::CalloutAnswer;
use portcullis_core::request::Request;
use std::sync::OnceLock;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let json = br#"{"filters": [
            {"name": "http", "External": {"auth_service": "http://auth:3000", "allowed_authorization_headers": ["x-user"]}},
            {"name": "grpc", "External": {"auth_service": "auth:9000", "proto": "grpc"}}]}"#;
        Config::from_json_with_env(json, &|_| None).unwrap_or_else(|_| std::process::abort())
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let request = Request::default();
    for filter in &config().filters {
        let FilterKind::External(ext) = &filter.kind else {
            continue;
        };
        let answer = if selector % 2 == 0 {
            CalloutAnswer::Grpc {
                status_code: u32::from(selector % 3 == 0),
                message: rest.to_vec(),
            }
        } else {
            // Header values are bytes (obs-text included), as the host hands
            // them over.
            let mut lines = rest.split(|b| *b == b'\n');
            let status = lines
                .next()
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(200);
            let headers = lines
                .by_ref()
                .take(200)
                .map(|l| {
                    let colon = l.iter().position(|b| *b == b':').unwrap_or(l.len());
                    let (n, v) = l.split_at(colon);
                    (
                        String::from_utf8_lossy(n).into_owned(),
                        v.get(1..).unwrap_or_default().to_vec(),
                    )
                })
                .collect();
            CalloutAnswer::Http {
                status,
                headers,
                body: rest.to_vec(),
            }
        };
        let _ = ext.read_answer_for(&request, answer);
    }
});
