//! RootContext: parses the configuration once, fetches remote JWK Sets on a tick
//! (callouts from `on_configure` are unreliable), and wakes requests parked until
//! keys arrive.

use super::http::Http;
use super::metrics::Metric;
use super::shared::{
    callout_answered, now, read_grpc_answer, read_http_answer, wake, Shared, Wait,
};
use portcullis_core::config::Config;
use portcullis_core::jwt::jwks_cache::{FetchResult, JwksCache, FETCH_TIMEOUT, MAX_JWKS_BYTES};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(100);

pub struct Root {
    context_id: u32,
    shared: Option<Rc<Shared>>,
    /// Callout token → JWK Set source.
    fetches: BTreeMap<u32, usize>,
}

impl Root {
    pub fn new(context_id: u32) -> Root {
        Root {
            context_id,
            shared: None,
            fetches: BTreeMap::new(),
        }
    }

    fn start_fetches(&mut self, shared: &Shared) {
        let now = now();
        let due = shared.jwks.borrow_mut().due(now);
        for source in due {
            let Some(src) = shared.config.jwks_sources.get(source) else {
                continue;
            };
            let t = &src.target;
            let headers = vec![
                (":method", "GET"),
                (":path", t.path.as_str()),
                (":authority", t.authority.as_str()),
                (":scheme", t.scheme.as_str()),
                ("accept", "application/json"),
            ];
            match hostcalls::dispatch_http_call(&t.cluster, headers, None, vec![], FETCH_TIMEOUT) {
                Ok(token) => {
                    self.fetches.insert(token, source);
                }
                Err(status) => {
                    let reason = format!(
                        "Envoy refused the callout to cluster {:?} ({status:?}): is the cluster defined?",
                        t.cluster
                    );
                    log_fetch(
                        &src.url,
                        &shared.jwks.borrow_mut().on_failure(source, reason, now),
                    );
                }
            }
        }
    }

    fn expire_parked(&self, shared: &Rc<Shared>) {
        let now = now();
        let expired: Vec<u32> = shared
            .pending
            .borrow()
            .iter()
            .filter(|(_, p)| matches!(p.wait, Wait::Keys { deadline, .. } if deadline <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            wake(shared, id, true);
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }
}

fn log_fetch(url: &str, result: &FetchResult) {
    match result {
        FetchResult::Loaded { summary, warnings } => {
            log::info!("JWK Set {url}: loaded {summary}");
            for w in warnings {
                log::warn!("JWK Set {url}: {w}");
            }
        }
        FetchResult::Failed {
            reason,
            kept_previous,
        } => {
            if *kept_previous {
                log::warn!("JWK Set {url}: fetch failed: {reason}; keeping the last good set");
            } else {
                log::error!("JWK Set {url}: fetch failed: {reason}; no keys yet");
            }
        }
    }
}

impl Context for Root {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if let Some(shared) = self.shared.clone() {
            callout_answered(&shared, self.context_id, token_id, || {
                read_grpc_answer(status_code, response_size)
            });
        }
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(source) = self.fetches.remove(&token_id) else {
            // An External check dispatched while a parked request was woken.
            callout_answered(&shared, self.context_id, token_id, || {
                read_http_answer(body_size)
            });
            return;
        };
        let now = now();
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|b| {
                std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.parse::<u16>().ok())
            });
        let result = match status {
            None => shared.jwks.borrow_mut().on_failure(
                source,
                "no answer (connection failed or timed out)".to_string(),
                now,
            ),
            Some(status) => {
                let take = body_size.min(MAX_JWKS_BYTES + 1);
                let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, take)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let body = if body_size > MAX_JWKS_BYTES {
                    vec![0u8; MAX_JWKS_BYTES + 1]
                } else {
                    body
                };
                shared
                    .jwks
                    .borrow_mut()
                    .on_response(source, status, &body, now)
            }
        };
        let url = shared
            .config
            .jwks_sources
            .get(source)
            .map(|s| s.url.clone())
            .unwrap_or_default();
        log_fetch(&url, &result);
        let metric = match result {
            FetchResult::Loaded { .. } => Metric::JwksFetched,
            FetchResult::Failed { .. } => Metric::JwksFetchFailed,
        };
        shared.metrics.count(&shared.config, metric);
        let waiting: Vec<u32> = shared
            .pending
            .borrow()
            .iter()
            .filter(|(_, p)| matches!(p.wait, Wait::Keys { source: s, .. } if s == source))
            .map(|(id, _)| *id)
            .collect();
        match result {
            FetchResult::Loaded { .. } => {
                for id in waiting {
                    wake(&shared, id, false);
                }
            }
            // Keys exist but the refresh an unknown kid asked for failed: answer now.
            FetchResult::Failed {
                kept_previous: true,
                ..
            } => {
                for id in waiting {
                    wake(&shared, id, true);
                }
            }
            // Never loaded: parked requests wait out their deadline (a retry may land).
            FetchResult::Failed {
                kept_previous: false,
                ..
            } => {}
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            _ => b"{}".to_vec(),
        };
        let config = match Config::from_json(&bytes) {
            Ok(c) => c,
            Err(errors) => {
                for e in &errors {
                    log::error!("configuration refused: {e}");
                }
                return false;
            }
        };
        for notice in &config.notices {
            log::warn!("{notice}");
        }
        let intervals: Vec<Duration> = config
            .jwks_sources
            .iter()
            .map(|s| s.refresh_interval)
            .collect();
        let has_remote = !intervals.is_empty();
        log::info!(
            "configured {} filters, {} rules, {} remote JWK Sets",
            config.filters.len(),
            config.rules.len(),
            intervals.len()
        );
        self.shared = Some(Rc::new(Shared {
            root_context_id: self.context_id,
            metrics: Default::default(),
            config: Rc::new(config),
            jwks: RefCell::new(JwksCache::new(&intervals)),
            pending: RefCell::new(BTreeMap::new()),
            callouts: RefCell::new(BTreeMap::new()),
        }));
        if has_remote {
            if let Err(status) = hostcalls::set_tick_period(TICK) {
                log::error!("could not start the tick: {status:?}");
            }
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        self.start_fetches(&shared);
        self.expire_parked(&shared);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(context_id, self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
