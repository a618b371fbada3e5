//! The per-request work of the core on a repeat request, in a loop: build the
//! request from header pairs, select the rule, run the journey. For profiling
//! natively (`valgrind --tool=callgrind target/release/examples/hot_path ...`)
//! what the Wasm module does on every request; see docs/performance.md.
//!
//! Usage:
//!   hot_path jwt <config.json> <token> [iterations]
//!   hot_path oidc <config.json> <cookie> <discovery.json> <jwks.json> <authority> [iterations]
//!
//! (`scripts/bench` writes such fixtures: target/bench/.)

use portcullis_core::config::Config;
use portcullis_core::jwt::cache::TokenCache;
use portcullis_core::jwt::KeySet;
use portcullis_core::oauth2::discovery::Discovery;
use portcullis_core::oauth2::session::SessionCache;
use portcullis_core::pipeline::{Host, IdpView, Journey, Step};
use portcullis_core::request::Request;
use std::cell::RefCell;
use std::sync::Arc;

struct Bench {
    tokens: RefCell<TokenCache>,
    sessions: RefCell<SessionCache>,
    idp: Option<(Arc<Discovery>, Arc<KeySet>)>,
}

impl Host for Bench {
    fn keys(&self, _source: usize) -> Option<Arc<KeySet>> {
        None
    }
    fn refresh_for_unknown_key(&self, _source: usize) -> bool {
        false
    }
    fn token_cache(&self) -> Option<&RefCell<TokenCache>> {
        Some(&self.tokens)
    }
    fn fill_random(&self, buf: &mut [u8]) -> bool {
        buf.fill(7);
        true
    }
    fn idp(&self, _filter: usize) -> Option<IdpView<'_>> {
        Some(IdpView {
            discovery: self.idp.as_ref().map(|(d, _)| d.clone()),
            keys: self.idp.as_ref().map(|(_, k)| k.clone()),
            keys_source: None,
            userinfo: None,
            session_cache: Some(&self.sessions),
        })
    }
}

fn fail(message: String) -> ! {
    eprintln!("hot_path: {message}");
    std::process::exit(2)
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| fail(format!("{path}: {e}")))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| fail("usage: see the header of core/examples/hot_path.rs".into()))
    };
    let oidc = arg(0) == "oidc";
    let config = Config::from_json(&read(&arg(1))).unwrap_or_else(|e| fail(format!("{e:?}")));
    let (header, authority, n_at) = if oidc {
        (("cookie".to_string(), arg(2)), arg(5), 6)
    } else {
        (
            ("authorization".to_string(), format!("Bearer {}", arg(2))),
            "127.0.0.1".into(),
            3,
        )
    };
    let idp = oidc.then(|| {
        let discovery = Discovery::parse(&read(&arg(3))).unwrap_or_else(|e| fail(e));
        let (keys, _) = KeySet::from_json(&read(&arg(4))).unwrap_or_else(|e| fail(e));
        (Arc::new(discovery), Arc::new(keys))
    });
    let n: usize = args
        .get(n_at)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let shares = config.cache_shares();
    let host = Bench {
        tokens: RefCell::new(TokenCache::with_budget(shares.tokens)),
        sessions: RefCell::new(SessionCache::with_budget(shares.sessions.max(1 << 20))),
        idp,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut allowed = 0usize;
    let start = std::time::Instant::now();
    for _ in 0..n {
        let pairs = vec![
            (":authority".to_string(), authority.clone()),
            (":path".to_string(), "/".to_string()),
            (":method".to_string(), "GET".to_string()),
            (":scheme".to_string(), "http".to_string()),
            ("user-agent".to_string(), "wrk".to_string()),
            header.clone(),
            ("x-request-id".to_string(), "3f2a".to_string()),
        ];
        let mut request = Request::from_header_pairs(pairs);
        let mut journey = Journey::new(&config, &request);
        match journey.run(&config, &mut request, &host, now) {
            Step::Continue(_) => allowed += 1,
            other if allowed == 0 => fail(format!("not allowed: {other:?}")),
            _ => {}
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{allowed}/{n} allowed, {:.2} us per request",
        elapsed.as_secs_f64() * 1e6 / n as f64
    );
}
