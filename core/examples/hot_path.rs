//! The per-request work of the core on a JWT cache hit, in a loop: build the
//! request from header pairs, select the rule, run the journey. For profiling
//! natively (`valgrind --tool=callgrind target/release/examples/hot_path`) what
//! the Wasm module does on every request; see docs/performance.md.
//!
//! Usage: hot_path <config.json> <token> [iterations]

use portcullis_core::config::Config;
use portcullis_core::jwt::cache::TokenCache;
use portcullis_core::jwt::KeySet;
use portcullis_core::pipeline::{Journey, KeyProvider, Step};
use portcullis_core::request::Request;
use std::cell::RefCell;
use std::sync::Arc;

struct Host {
    cache: RefCell<TokenCache>,
}

impl KeyProvider for Host {
    fn keys(&self, _source: usize) -> Option<Arc<KeySet>> {
        None
    }
    fn refresh_for_unknown_key(&self, _source: usize) -> bool {
        false
    }
    fn token_cache(&self) -> Option<&RefCell<TokenCache>> {
        Some(&self.cache)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(config), Some(token)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: hot_path <config.json> <token> [iterations]");
        std::process::exit(2);
    };
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let bytes = std::fs::read(config).unwrap_or_else(|e| {
        eprintln!("{config}: {e}");
        std::process::exit(2)
    });
    let config = Config::from_json(&bytes).unwrap_or_else(|e| {
        eprintln!("config: {e:?}");
        std::process::exit(2)
    });
    let host = Host {
        cache: RefCell::new(TokenCache::with_budget(config.cache_shares().tokens)),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let bearer = format!("Bearer {token}");
    let mut allowed = 0usize;
    let start = std::time::Instant::now();
    for _ in 0..n {
        let pairs = vec![
            (":authority".to_string(), "127.0.0.1:18005".to_string()),
            (":path".to_string(), "/".to_string()),
            (":method".to_string(), "GET".to_string()),
            (":scheme".to_string(), "http".to_string()),
            ("user-agent".to_string(), "wrk".to_string()),
            ("authorization".to_string(), bearer.clone()),
            ("x-request-id".to_string(), "3f2a".to_string()),
        ];
        let mut request = Request::from_header_pairs(pairs);
        let mut journey = Journey::new(&config, &request);
        if let Step::Continue(_) = journey.run(&config, &mut request, &host, now) {
            allowed += 1;
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{allowed}/{n} allowed, {:.2} us per request",
        elapsed.as_secs_f64() * 1e6 / n as f64
    );
}
