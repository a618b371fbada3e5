//! RootContext: parses the configuration once, fetches background documents on
//! a tick (remote JWK Sets, OIDC discovery documents and the JWK Sets they
//! name; callouts from `on_configure` are unreliable), and wakes requests parked
//! until those documents arrive.

use super::http::Http;
use super::metrics::Metric;
use super::shared::{
    callout_answered, host_crypto_allowed, init_shared_slots, now, poll_shared, read_grpc_answer,
    read_http_answer, wake, HostVerifier, IdpSlot, Shared, Wait, TICK,
};
use portcullis_core::compile::url::CalloutTarget;
use portcullis_core::compile::DEFAULT_JWKS_REFRESH;
use portcullis_core::config::{Config, FilterKind};
use portcullis_core::fetch::{DocumentCache, FetchResult, FETCH_TIMEOUT};
use portcullis_core::jwt::cache::TokenCache;
use portcullis_core::jwt::host_crypto::probe;
use portcullis_core::jwt::jwks_cache::{JwksCache, MAX_JWKS_BYTES};
use portcullis_core::oauth2::discovery::MAX_DISCOVERY_BYTES;
use portcullis_core::oauth2::session::SessionCache;
use portcullis_core::shared_callout::SharedCallouts;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// How long a request waits for another request's shared callout.
const SHARED_CALLOUT_WAIT: Duration = Duration::from_secs(10);
/// How often a discovery document is fetched again.
const DISCOVERY_REFRESH: Duration = Duration::from_secs(300);

/// A background fetch in flight.
#[derive(Debug, Clone, Copy)]
enum Fetch {
    Jwks(usize),
    /// Index into `Shared::idps`.
    Discovery(usize),
}

pub struct Root {
    context_id: u32,
    shared: Option<Rc<Shared>>,
    /// Callout token → what it fetches.
    fetches: BTreeMap<u32, Fetch>,
}

impl Root {
    pub fn new(context_id: u32) -> Root {
        Root {
            context_id,
            shared: None,
            fetches: BTreeMap::new(),
        }
    }

    fn dispatch(&mut self, target: &CalloutTarget, fetch: Fetch) -> Result<(), String> {
        let headers = vec![
            (":method", "GET"),
            (":path", target.path.as_str()),
            (":authority", target.authority.as_str()),
            (":scheme", target.scheme.as_str()),
            ("accept", "application/json"),
        ];
        match hostcalls::dispatch_http_call(&target.cluster, headers, None, vec![], FETCH_TIMEOUT) {
            Ok(token) => {
                self.fetches.insert(token, fetch);
                Ok(())
            }
            Err(status) => Err(format!(
                "Envoy refused the callout to cluster {:?} ({status:?}): {}",
                target.cluster,
                super::shared::refusal_hint(status)
            )),
        }
    }

    fn start_fetches(&mut self, shared: &Shared) {
        let now = now();
        let due = shared.jwks.borrow_mut().due(now);
        for source in due {
            let Some((url, target)) = shared.jwks_target(source) else {
                continue;
            };
            if let Err(reason) = self.dispatch(&target, Fetch::Jwks(source)) {
                let result = shared.jwks.borrow_mut().on_failure(source, reason, now);
                log_fetch("JWK Set", &url, &result);
            }
        }
        let due = shared.discovery.borrow_mut().due(now);
        for source in due {
            let slot = shared
                .idps
                .borrow()
                .iter()
                .position(|s| s.discovery == source);
            let Some(slot) = slot else {
                continue;
            };
            let filter = shared.idps.borrow().get(slot).map(|s| s.filter);
            let Some(FilterKind::OAuth2(oauth2)) = filter
                .and_then(|f| shared.config.filters.get(f))
                .map(|f| &f.kind)
            else {
                continue;
            };
            let target = oauth2.discovery_target().clone();
            if let Err(reason) = self.dispatch(&target, Fetch::Discovery(slot)) {
                let result = shared
                    .discovery
                    .borrow_mut()
                    .on_failure(source, reason, now);
                log_fetch("discovery document", oauth2.authorization_url(), &result);
            }
        }
    }

    fn expire_parked(&self, shared: &Rc<Shared>) {
        let now = now();
        let expired: Vec<u32> = shared
            .pending
            .borrow()
            .iter()
            .filter(|(_, p)| match p.wait {
                Wait::Keys { deadline, .. } | Wait::Idp { deadline, .. } => deadline <= now,
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            wake(shared, id, true);
        }
        super::shared::end_headers_pause_probes(shared);
        // Requests waiting for a shared callout (another VM's, or one whose
        // request went away): its answer, or a failure once it is overdue.
        poll_shared(shared, self.context_id, SHARED_CALLOUT_WAIT.as_secs_f64());
        let _ = hostcalls::set_effective_context(self.context_id);
    }

    /// A JWK Set answer: keep it, wake the requests waiting for it.
    fn jwks_answered(
        &self,
        shared: &Rc<Shared>,
        source: usize,
        answer: Result<(u16, Vec<u8>), String>,
    ) {
        let now = now();
        let result = match answer {
            Ok((status, body)) => shared
                .jwks
                .borrow_mut()
                .on_response(source, status, &body, now),
            Err(reason) => shared.jwks.borrow_mut().on_failure(source, reason, now),
        };
        let url = shared
            .jwks_target(source)
            .map(|(u, _)| u)
            .unwrap_or_default();
        log_fetch("JWK Set", &url, &result);
        let metric = match result {
            FetchResult::Loaded { .. } => Metric::JwksFetched,
            FetchResult::Failed { .. } => Metric::JwksFetchFailed,
        };
        shared.metrics.count(&shared.config, metric);
        match result {
            FetchResult::Loaded { .. } => {
                wake_all(
                    shared,
                    |w| matches!(w, Wait::Keys { source: s, .. } if s == source),
                    false,
                );
                for filter in shared.idps_using_jwks(source) {
                    if shared.idp_ready(filter) {
                        wake_all(
                            shared,
                            |w| matches!(w, Wait::Idp { filter: f, .. } if f == filter),
                            false,
                        );
                    }
                }
            }
            // Keys exist but the refresh an unknown kid asked for failed: answer now.
            FetchResult::Failed {
                kept_previous: true,
                ..
            } => wake_all(
                shared,
                |w| matches!(w, Wait::Keys { source: s, .. } if s == source),
                true,
            ),
            // Never loaded: the requests parked for this fetch are answered now
            // (503), not at their deadline; later ones are answered at once
            // until the retry starts (`Shared::keys_awaited`).
            FetchResult::Failed {
                kept_previous: false,
                ..
            } => {
                wake_all(
                    shared,
                    |w| matches!(w, Wait::Keys { source: s, .. } if s == source),
                    true,
                );
                for filter in shared.idps_using_jwks(source) {
                    wake_all(
                        shared,
                        |w| matches!(w, Wait::Idp { filter: f, .. } if f == filter),
                        true,
                    );
                }
            }
        }
    }

    /// A discovery answer: keep it, register the JWK Set it names, wake waiters.
    fn discovery_answered(
        &self,
        shared: &Rc<Shared>,
        slot: usize,
        answer: Result<(u16, Vec<u8>), String>,
    ) {
        let now = now();
        let Some(idp) = shared.idps.borrow().get(slot).cloned() else {
            return;
        };
        let Some(FilterKind::OAuth2(oauth2)) =
            shared.config.filters.get(idp.filter).map(|f| &f.kind)
        else {
            return;
        };
        let parsed = match answer {
            Ok((200, body)) => oauth2.parse_discovery(&body).map(|d| (d, Vec::new())),
            Ok((status, _)) => Err(format!("HTTP status {status}")),
            Err(reason) => Err(reason),
        };
        let result = shared
            .discovery
            .borrow_mut()
            .on_document(idp.discovery, parsed, now);
        log_fetch("discovery document", oauth2.authorization_url(), &result);
        if let FetchResult::Failed {
            kept_previous: false,
            ..
        } = result
        {
            // The requests parked for this fetch get the 503 page now.
            let filter = idp.filter;
            wake_all(
                shared,
                |w| matches!(w, Wait::Idp { filter: f, .. } if f == filter),
                true,
            );
        }
        if !matches!(result, FetchResult::Loaded { .. }) {
            return;
        }
        let Some(discovery) = shared.discovery.borrow().get(idp.discovery) else {
            return;
        };
        // A setting this IdP cannot serve: refused here, when the document
        // arrives (each login then gets the page naming it).
        if let Some(reason) = oauth2.unusable_with(&discovery) {
            log::error!("{reason}");
        }
        if oauth2.needs_keys() && discovery.jwks_uri != idp.jwks_url {
            match oauth2.callout_target(&discovery.jwks_uri) {
                Some(target) => {
                    let source = shared.jwks.borrow_mut().add_source(DEFAULT_JWKS_REFRESH);
                    shared
                        .discovered_jwks
                        .borrow_mut()
                        .push((discovery.jwks_uri.clone(), target));
                    if let Some(s) = shared.idps.borrow_mut().get_mut(slot) {
                        s.jwks = Some(source);
                        s.jwks_url = discovery.jwks_uri.clone();
                    }
                }
                None => log::error!(
                    "discovery document of {}: jwks_uri {:?} is not a usable URL",
                    oauth2.authorization_url(),
                    discovery.jwks_uri
                ),
            }
        }
        if shared.idp_ready(idp.filter) {
            let filter = idp.filter;
            wake_all(
                shared,
                |w| matches!(w, Wait::Idp { filter: f, .. } if f == filter),
                false,
            );
        }
    }
}

/// Wakes every parked request whose wait matches.
fn wake_all(shared: &Rc<Shared>, matches: impl Fn(Wait) -> bool, timed_out: bool) {
    let waiting: Vec<u32> = shared
        .pending
        .borrow()
        .iter()
        .filter(|(_, p)| matches(p.wait))
        .map(|(id, _)| *id)
        .collect();
    for id in waiting {
        wake(shared, id, timed_out);
    }
}

/// Status and (bounded) body of a background fetch's answer, in its callback.
fn read_fetch_answer(body_size: usize, max: usize) -> Result<(u16, Vec<u8>), String> {
    let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|b| {
            std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
        })
        .ok_or_else(|| "no answer (connection failed or timed out)".to_string())?;
    if body_size > max {
        return Err(format!("larger than {max} bytes"));
    }
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
        .ok()
        .flatten()
        .unwrap_or_default();
    Ok((status, body))
}

fn log_fetch(what: &str, url: &str, result: &FetchResult) {
    match result {
        FetchResult::Loaded { summary, warnings } => {
            log::info!("{what} {url}: loaded {summary}");
            for w in warnings {
                log::warn!("{what} {url}: {w}");
            }
        }
        FetchResult::Failed {
            reason,
            kept_previous,
        } => {
            let (kept, none) = if what == "JWK Set" {
                ("the last good set", "no keys yet")
            } else {
                ("the last good document", "none loaded yet")
            };
            if *kept_previous {
                log::warn!("{what} {url}: fetch failed: {reason}; keeping {kept}");
            } else {
                log::error!("{what} {url}: fetch failed: {reason}; {none}");
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
        match self.fetches.remove(&token_id) {
            Some(Fetch::Jwks(source)) => self.jwks_answered(
                &shared,
                source,
                read_fetch_answer(body_size, MAX_JWKS_BYTES),
            ),
            Some(Fetch::Discovery(slot)) => self.discovery_answered(
                &shared,
                slot,
                read_fetch_answer(body_size, MAX_DISCOVERY_BYTES),
            ),
            // A check dispatched while a parked request was woken.
            None => {
                callout_answered(&shared, self.context_id, token_id, || {
                    read_http_answer(body_size)
                });
            }
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        // Log at Envoy's level for the wasm component: debug lines cost nothing
        // unless asked for.
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            _ => b"{}".to_vec(),
        };
        let mut config = match Config::from_json(&bytes) {
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
        // Whether Envoy checks signatures decides which algorithms this module
        // can accept (ES384/ES512 need it unless built with `ec-fallback`).
        let host_crypto = host_crypto_allowed() && probe(&HostVerifier);
        if host_crypto {
            log::info!("signatures (RS*, ES*) are checked by Envoy's verify_signature");
        } else {
            log::info!("signatures are checked in Wasm (host verify_signature unavailable or switched off)");
            match config.without_host_signatures() {
                Ok(notices) => notices.iter().for_each(|n| log::warn!("{n}")),
                Err(errors) => {
                    for e in &errors {
                        log::error!("configuration refused: {e}");
                    }
                    return false;
                }
            }
        }
        let intervals: Vec<Duration> = config
            .jwks_sources
            .iter()
            .map(|s| s.refresh_interval)
            .collect();
        let mut discovery = DocumentCache::default();
        let mut idps = Vec::new();
        for (filter, f) in config.filters.iter().enumerate() {
            if let FilterKind::OAuth2(_) = f.kind {
                idps.push(IdpSlot {
                    filter,
                    discovery: discovery.add_source(DISCOVERY_REFRESH),
                    jwks: None,
                    jwks_url: String::new(),
                });
            }
        }
        log::info!(
            "configured {} filters, {} rules, {} remote JWK Sets, {} identity providers",
            config.filters.len(),
            config.rules.len(),
            intervals.len(),
            idps.len()
        );
        let shares = config.cache_shares();
        self.shared = Some(Rc::new(Shared {
            root_context_id: self.context_id,
            metrics: Default::default(),
            session_cache: RefCell::new(SessionCache::with_budget(shares.sessions)),
            config: Rc::new(config),
            jwks: RefCell::new(JwksCache::new(&intervals)),
            discovery: RefCell::new(discovery),
            idps: RefCell::new(idps),
            discovered_jwks: RefCell::new(Vec::new()),
            userinfo: RefCell::new(BTreeMap::new()),
            response_headers: RefCell::new(BTreeMap::new()),
            pending: RefCell::new(BTreeMap::new()),
            callouts: RefCell::new(BTreeMap::new()),
            shared_callouts: SharedCallouts::with_budget(shares.shared_callouts),
            fast_tick: std::cell::Cell::new(false),
            token_cache: RefCell::new(TokenCache::with_budget(shares.tokens)),
            host_crypto: std::cell::Cell::new(Some(host_crypto)),
            headers_pause: std::cell::Cell::new(super::shared::HeadersPause::Unknown),
        }));
        // Every counter at zero from now on, not from its first event.
        if let Some(shared) = &self.shared {
            shared.metrics.define_all(&shared.config);
        }
        if let Some(shared) = &self.shared {
            init_shared_slots(shared);
        }
        // The tick fetches background documents, expires waits, and hands the
        // metric counts to Envoy.
        if let Err(status) = hostcalls::set_tick_period(TICK) {
            log::error!("could not start the tick: {status:?}");
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        shared.metrics.flush(&shared.config);
        // Answers of callouts sent with header values as bytes (`abi`): their
        // requests go on from here. The callback sped the tick up; the shared
        // waiters' poll below slows it down again when nobody waits.
        let answers =
            super::abi::take_answers(|token| shared.callouts.borrow().contains_key(&token));
        if !answers.is_empty() {
            shared.fast_tick.set(true);
            for (token, answer) in answers {
                callout_answered(&shared, self.context_id, token, || answer);
            }
            let _ = hostcalls::set_effective_context(self.context_id);
        }
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
