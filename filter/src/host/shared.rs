//! State the root context and the HTTP contexts of one VM share (one thread, so
//! `Rc`/`RefCell`), and `advance`, which carries out a pipeline step for a
//! request, from whichever context is running.
//!
//! A request that must wait (for a JWK Set, its body, or a callout) is kept in
//! `Shared::pending` under its context id. Callouts are owned by the context
//! that dispatches them: the HTTP context itself when the step comes from one of
//! its callbacks, the root context when a parked request is woken from the root
//! (the SDK delivers an answer to the context that was active at dispatch).

use super::metrics::Metric;
use portcullis_core::compile::url::CalloutTarget;
use portcullis_core::config::Config;
use portcullis_core::external::{CalloutAnswer, CalloutKind, MAX_ANSWER_BYTES, MAX_ANSWER_HEADERS};
use portcullis_core::fetch::DocumentCache;
use portcullis_core::jwt::cache::TokenCache;
use portcullis_core::jwt::host_crypto::{
    decode_result, encode_arguments, probe, SignatureVerifier,
};
use portcullis_core::jwt::jwks_cache::JwksCache;
use portcullis_core::jwt::KeySet;
use portcullis_core::oauth2::{
    Discovery, IdpState, OAuth2Args, OAuth2Filter, OAuth2Pending, OAuth2Step, UserinfoCache,
};
use portcullis_core::pipeline::{Journey, KeyProvider, Step};
use portcullis_core::request::Request;
use portcullis_core::response::{HeaderChange, Response};
use portcullis_core::shared_callout::{Consult, ShareKey, SharedCallouts};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, MapType};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// How long a request waits for a JWK Set that has not loaded yet.
pub const KEY_WAIT: Duration = Duration::from_secs(3);
/// At most this many requests wait at once per VM (for keys, the IdP, a body or
/// a callout); one more waiting for keys or the IdP gets the timeout answer at
/// once. `PORTCULLIS_MAX_PENDING` in the VM's environment sets another bound.
pub const MAX_PENDING: usize = 4096;
/// The tick while requests wait on a shared callout another VM may answer: how
/// often the slot is read again.
pub const FAST_TICK: Duration = Duration::from_millis(10);
/// The tick otherwise.
pub const TICK: Duration = Duration::from_millis(100);
/// The most steps `advance` carries out for one request in one go.
const MAX_STEPS: usize = 32;
/// Compare-and-swap attempts on a shared slot before giving up on it.
const CAS_ATTEMPTS: usize = 16;

/// The bound on parked requests: `PORTCULLIS_MAX_PENDING` or [`MAX_PENDING`].
pub fn max_pending() -> usize {
    static BOUND: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BOUND.get_or_init(|| {
        std::env::var("PORTCULLIS_MAX_PENDING")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(MAX_PENDING)
    })
}

/// What a pending request waits for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wait {
    Keys {
        source: usize,
        deadline: f64,
    },
    /// An OAuth2 filter's IdP (discovery document and JWK Set).
    Idp {
        filter: usize,
        deadline: f64,
    },
    /// The body the check reads. `headers_held`: the request headers wait
    /// for the decision too (Envoy honours the pause, see [`HeadersPause`]);
    /// `probe_until`: while that is not known yet, the time (Unix seconds) by
    /// which a body callback proves it, else the headers go on as when it is
    /// not honoured.
    Body {
        max_bytes: usize,
        headers_held: bool,
        probe_until: Option<f64>,
    },
    /// Another request's shared callout (this VM's or another's), waited for
    /// since this time: its answer is shared (see `Callout::share`).
    Shared {
        key: ShareKey,
        since: f64,
    },
    /// A callout sent at this time (Unix seconds).
    Callout {
        since: f64,
    },
}

/// The body as captured so far (only for rules whose filters may need it).
#[derive(Debug, Default)]
pub struct BodyCapture {
    /// The first bytes (at most the largest `max_bytes` + 1), once captured.
    pub bytes: Option<Vec<u8>>,
    /// True when `bytes` is the whole body.
    pub complete: bool,
}

/// A request in the middle of its journey.
pub struct Pending {
    pub journey: Journey,
    pub request: Request,
    pub wait: Wait,
    pub body: BodyCapture,
}

/// One OAuth2 filter's IdP: its discovery document and the JWK Set it names.
#[derive(Debug, Clone)]
pub struct IdpSlot {
    /// Index of the OAuth2 filter in the configuration.
    pub filter: usize,
    /// Source index in `Shared::discovery`.
    pub discovery: usize,
    /// Source index in `Shared::jwks` of the set at `jwks_uri`, once known.
    pub jwks: Option<usize>,
    pub jwks_url: String,
}

/// Whether Envoy honours the module's pause of the request headers as a pause
/// of the headers only (the Wasm plugin's `allow_on_headers_stop_iteration:
/// true`, Envoy 1.35+), so the body callbacks still come while the headers
/// wait; otherwise Envoy turns the pause into StopAllIteration, which
/// withholds the body too. Learnt from the first request that needs its body
/// before the check: a body callback while its headers are paused proves it;
/// none within [`HEADERS_PAUSE_PROBE`] does not (that request's headers then
/// go on, as they always do then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadersPause {
    Unknown,
    Honoured,
    NotHonoured,
}

/// How long the first request that needs its body keeps its headers paused
/// waiting for a body callback, while [`HeadersPause`] is not known (checked
/// on the tick, so up to one tick more).
pub const HEADERS_PAUSE_PROBE: Duration = Duration::from_millis(50);

/// What the VM's contexts share.
pub struct Shared {
    pub metrics: super::metrics::Metrics,
    /// OAuth2 sessions already opened (skips AES-GCM on repeat requests).
    pub session_cache: RefCell<portcullis_core::oauth2::session::SessionCache>,
    pub discovery: RefCell<DocumentCache<Discovery>>,
    pub idps: RefCell<Vec<IdpSlot>>,
    /// JWK Sets named by discovery documents (source index minus the number of
    /// configured ones): URL and callout target.
    pub discovered_jwks: RefCell<Vec<(String, CalloutTarget)>>,
    /// Userinfo answers, per OAuth2 filter.
    pub userinfo: RefCell<BTreeMap<usize, UserinfoCache>>,
    /// Headers to add to the upstream's response, per request (context id).
    pub response_headers: RefCell<BTreeMap<u32, Vec<HeaderChange>>>,
    pub root_context_id: u32,
    pub config: Rc<Config>,
    pub jwks: RefCell<JwksCache>,
    pub pending: RefCell<BTreeMap<u32, Pending>>,
    /// Callout token → the request (context id) it belongs to, and its share
    /// key.
    pub callouts: RefCell<BTreeMap<u32, (u32, Option<ShareKey>)>>,
    /// The slots of the callouts shared by the VMs of this Envoy (in the host's
    /// shared data).
    pub shared_callouts: SharedCallouts,
    /// Whether the tick runs at `FAST_TICK` (requests wait on a shared callout).
    pub fast_tick: std::cell::Cell<bool>,
    /// Verified tokens (JWT filters, OAuth2 access tokens), within `cacheBudget`.
    pub token_cache: RefCell<TokenCache>,
    /// Whether Envoy's `verify_signature` answered the probe right (probed
    /// at configure time; `None`: not probed yet, probed on first use).
    pub host_crypto: std::cell::Cell<Option<bool>>,
    /// Whether Envoy lets the headers wait while the body comes.
    pub headers_pause: std::cell::Cell<HeadersPause>,
}

/// Envoy's `verify_signature` foreign function (BoringSSL in the proxy).
pub struct HostVerifier;

impl SignatureVerifier for HostVerifier {
    fn verify(&self, hash: &str, spki: &[u8], message: &[u8], signature: &[u8]) -> Option<bool> {
        let args = encode_arguments(hash, spki, message, signature);
        match hostcalls::call_foreign_function("verify_signature", Some(&args)) {
            Ok(Some(bytes)) => decode_result(&bytes).map(|r| r.result),
            // An empty answer is the default message: `result: false`.
            Ok(None) => Some(false),
            Err(_) => None,
        }
    }
}

/// `PORTCULLIS_HOST_CRYPTO=off` in the VM's environment keeps every signature
/// check in Wasm (the pure-Rust path).
pub(crate) fn host_crypto_allowed() -> bool {
    !matches!(
        std::env::var("PORTCULLIS_HOST_CRYPTO").as_deref(),
        Ok("off" | "0" | "false")
    )
}

impl Shared {
    /// URL and callout target of a JWK Set source (configured or discovered).
    pub fn jwks_target(&self, source: usize) -> Option<(String, CalloutTarget)> {
        match self.config.jwks_sources.get(source) {
            Some(s) => Some((s.url.clone(), s.target.clone())),
            None => self
                .discovered_jwks
                .borrow()
                .get(source.checked_sub(self.config.jwks_sources.len())?)
                .cloned(),
        }
    }

    /// The IdP slot of OAuth2 filter `index`.
    fn idp_slot(&self, index: usize) -> Option<IdpSlot> {
        self.idps
            .borrow()
            .iter()
            .find(|s| s.filter == index)
            .cloned()
    }

    /// The OAuth2 filters whose IdP's keys are JWK Set `source`.
    pub fn idps_using_jwks(&self, source: usize) -> Vec<usize> {
        self.idps
            .borrow()
            .iter()
            .filter(|s| s.jwks == Some(source))
            .map(|s| s.filter)
            .collect()
    }

    fn idp_documents(&self, index: usize) -> (Option<Arc<Discovery>>, Option<Arc<KeySet>>) {
        let slot = self.idp_slot(index);
        let Some(slot) = slot else {
            return (None, None);
        };
        let discovery = self.discovery.borrow().get(slot.discovery);
        let keys = slot.jwks.and_then(|j| self.jwks.borrow().get(j));
        (discovery, keys)
    }

    /// Runs `f` with what is known of OAuth2 filter `index`'s IdP.
    fn with_idp<R>(&self, index: usize, f: impl FnOnce(&IdpState<'_>) -> R) -> R {
        let (discovery, keys) = self.idp_documents(index);
        let userinfo = self.userinfo.borrow();
        let idp = IdpState {
            discovery: discovery.as_deref(),
            keys: keys.as_deref(),
            userinfo: userinfo.get(&index),
            token_cache: Some(&self.token_cache),
            session_cache: Some(&self.session_cache),
        };
        f(&idp)
    }

    /// Whether a request waiting for JWK Set `source` may get it soon: a fetch
    /// is in flight or due. False right after a failed fetch (answer at once).
    pub fn keys_awaited(&self, source: usize) -> bool {
        self.jwks.borrow().awaiting(source, now())
    }

    /// [`Shared::keys_awaited`] for an OAuth2 filter's IdP: its discovery
    /// document, then the JWK Set that names.
    pub fn idp_awaited(&self, index: usize) -> bool {
        let slot = self.idp_slot(index);
        let Some(slot) = slot else {
            return false;
        };
        let now = now();
        if !self.discovery.borrow().has(slot.discovery) {
            return self.discovery.borrow().awaiting(slot.discovery, now);
        }
        match slot.jwks {
            Some(source) => self.jwks.borrow().awaiting(source, now),
            None => false,
        }
    }

    /// Whether an OAuth2 filter's IdP is ready for its requests.
    pub fn idp_ready(&self, index: usize) -> bool {
        let (discovery, keys) = self.idp_documents(index);
        let needs_keys = match self.config.filters.get(index).map(|f| &f.kind) {
            Some(portcullis_core::config::FilterKind::OAuth2(o)) => o.needs_keys(),
            _ => false,
        };
        discovery.is_some() && (keys.is_some() || !needs_keys)
    }
}

/// Cryptographic randomness from the host (WASI `random_get`).
pub fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::getrandom(buf) {
        // Never hand out predictable state: fall back to a hash chain seeded
        // with the time and a counter, and say so.
        log::error!("random source failed ({e}); using a time-seeded fallback");
        thread_local!(static COUNTER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
        let counter = COUNTER.with(|c| {
            c.set(c.get().wrapping_add(1));
            c.get()
        });
        let mut block = [0u8; 32];
        for (i, chunk) in buf.chunks_mut(32).enumerate() {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(block);
            h.update(now().to_le_bytes());
            h.update(counter.to_le_bytes());
            h.update((i as u64).to_le_bytes());
            block = h.finalize().into();
            for (b, r) in chunk.iter_mut().zip(block.iter()) {
                *b = *r;
            }
        }
    }
}

impl KeyProvider for Shared {
    fn keys(&self, source: usize) -> Option<Arc<KeySet>> {
        self.jwks.borrow().get(source)
    }

    fn refresh_for_unknown_key(&self, source: usize) -> bool {
        self.jwks.borrow_mut().request_refresh(source, now())
    }

    fn token_cache(&self) -> Option<&RefCell<TokenCache>> {
        Some(&self.token_cache)
    }

    fn signature_verifier(&self) -> Option<&dyn SignatureVerifier> {
        let usable = match self.host_crypto.get() {
            Some(known) => known,
            None => {
                let usable = host_crypto_allowed() && probe(&HostVerifier);
                if usable {
                    log::info!("signatures (RS*, ES*) are checked by Envoy's verify_signature");
                } else {
                    log::info!("signatures are checked in Wasm (host verify_signature unavailable or switched off)");
                }
                self.host_crypto.set(Some(usable));
                usable
            }
        };
        usable.then_some(&HostVerifier as &dyn SignatureVerifier)
    }

    fn oauth2_check(
        &self,
        filter: &OAuth2Filter,
        index: usize,
        request: &Request,
        args: &OAuth2Args,
        now_unix: f64,
    ) -> OAuth2Step {
        self.with_idp(index, |idp| {
            filter.check(request, args, idp, now_unix, &mut fill_random)
        })
    }

    fn idp_keys_source(&self, index: usize) -> Option<usize> {
        self.idp_slot(index).and_then(|s| s.jwks)
    }

    fn oauth2_resume(
        &self,
        filter: &OAuth2Filter,
        index: usize,
        request: &Request,
        args: &OAuth2Args,
        pending: OAuth2Pending,
        now_unix: f64,
    ) -> OAuth2Step {
        self.with_idp(index, |idp| {
            filter.resume(request, args, pending, idp, now_unix, &mut fill_random)
        })
    }

    fn oauth2_answer(
        &self,
        filter: &OAuth2Filter,
        index: usize,
        request: &Request,
        args: &OAuth2Args,
        pending: OAuth2Pending,
        answer: CalloutAnswer,
        now_unix: f64,
    ) -> OAuth2Step {
        self.userinfo
            .borrow_mut()
            .entry(index)
            .or_default()
            .remember(&pending, &answer, now_unix);
        self.with_idp(index, |idp| {
            filter.on_answer(
                request,
                args,
                pending,
                answer,
                idp,
                now_unix,
                &mut fill_random,
            )
        })
    }
}

/// The host's clock as Unix seconds.
pub fn now() -> f64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Applies header changes to the current request, as bytes (a value passed
/// through from the client keeps the bytes it was sent with).
pub fn apply_changes(changes: &[HeaderChange]) {
    for change in changes {
        let result = match (&change.value, change.append) {
            (Some(value), true) => {
                hostcalls::add_map_value_bytes(MapType::HttpRequestHeaders, &change.name, value)
            }
            (value, _) => hostcalls::set_map_value_bytes(
                MapType::HttpRequestHeaders,
                &change.name,
                value.as_deref(),
            ),
        };
        if let Err(status) = result {
            log::warn!(
                "could not change request header {}: {status:?}",
                change.name
            );
        }
    }
}

/// Sends `response` as a local reply, header values as bytes (an auth
/// service's obs-text `Set-Cookie` reaches the client as it was sent).
fn send(response: &Response) {
    if let Err(status) = super::abi::send_local_response(
        u32::from(response.status),
        &response.headers,
        &response.body,
    ) {
        log::warn!("could not send response: {status:?}");
    }
}

/// Where `advance` runs.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    /// The request's context.
    pub context_id: u32,
    /// The context whose callback is running (owns callouts dispatched now).
    pub running: u32,
    /// Envoy is paused on this request outside the running callback, so going on
    /// needs `resume_http_request` (false inside the request's own header/body
    /// callback, whose return value continues it).
    pub resume: bool,
}

/// The request with every header, pseudo-headers included, values as bytes
/// (see `portcullis_core::request::Headers`; the SDK's string accessor would
/// panic on a value that is not UTF-8, which a client can send).
pub fn read_request() -> Request {
    let pairs = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
    Request::from_header_bytes(pairs)
}

/// A request of only the headers `names` (`Config::lean_headers`): one host
/// call per name instead of a copy of every header.
pub fn read_lean_request(names: &[String]) -> Request {
    let pairs = names
        .iter()
        .filter_map(|name| {
            let value = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
                .ok()
                .flatten()?;
            Some((name.clone(), value))
        })
        .collect();
    Request::lean_bytes(pairs)
}

/// Sends an HTTP callout with header values as bytes. Values that are all
/// UTF-8 (nearly every callout) go through the SDK's `dispatch_http_call`,
/// which takes `&str`; a callout with a value that is not (a client's obs-text
/// header passed to an auth service) through the host call itself
/// (`abi::dispatch_http_call`; its answer comes back on the root context's
/// tick). In a module not built by `scripts/build` (`abi::bytes_callouts`
/// false) such a value is sent converted lossily, and that is logged.
fn dispatch_http_call_bytes(
    cluster: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    timeout: Duration,
) -> Result<u32, proxy_wasm::types::Status> {
    let text: Option<Vec<(&str, &str)>> = headers
        .iter()
        .map(|(n, v)| Some((n.as_str(), std::str::from_utf8(v).ok()?)))
        .collect();
    if let Some(text) = text {
        return hostcalls::dispatch_http_call(cluster, text, Some(body), vec![], timeout);
    }
    if super::abi::bytes_callouts() {
        return super::abi::dispatch_http_call(cluster, headers, body, timeout);
    }
    log::warn!(
        "a callout header value is not UTF-8 and this module was not built by scripts/build: sent converted (U+FFFD)"
    );
    let lossy: Vec<(&str, std::borrow::Cow<'_, str>)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v)))
        .collect();
    let text = lossy.iter().map(|(n, v)| (*n, v.as_ref())).collect();
    hostcalls::dispatch_http_call(cluster, text, Some(body), vec![], timeout)
}

/// Why Envoy refused to send a callout, for the log: `BadArgument` is its
/// answer for a cluster it does not know; a known cluster that cannot take the
/// request now (its DNS name not resolved yet, no healthy endpoint) fails the
/// call inline, which Envoy reports as `InternalFailure`.
pub fn refusal_hint(status: proxy_wasm::types::Status) -> &'static str {
    match status {
        proxy_wasm::types::Status::BadArgument => "is the cluster defined?",
        proxy_wasm::types::Status::InternalFailure => {
            "the cluster has no endpoint to send it to now (its name not resolved yet, or no healthy host)"
        }
        _ => "Envoy could not send it",
    }
}

/// Carries out `step` for a request and keeps going until it forwards, answers
/// or must wait. The effective context must be the request's.
pub fn advance(shared: &Shared, site: Site, mut pending: Pending, mut step: Step) -> Action {
    let mut steps = 0usize;
    loop {
        steps = steps.saturating_add(1);
        if steps > MAX_STEPS {
            // Answers that keep asking for more (an IdP answering each refresh
            // with a token that is due already): never spin the VM.
            log::error!(
                "a request took more than {MAX_STEPS} steps without an answer; answering 503"
            );
            step = Step::Respond(Response::json_error(
                503,
                "the request could not be completed",
            ));
        }
        match step {
            Step::Continue(changes) => {
                let outcomes = pending.journey.take_outcomes();
                super::decision_log::log_decision(
                    &shared.config,
                    &pending.request,
                    pending.journey.rule_index(),
                    &outcomes,
                    None,
                );
                shared.metrics.outcomes(&shared.config, &outcomes);
                apply_changes(&changes);
                if pending.journey.response_held() {
                    return release_held_response(site, &mut pending.journey);
                }
                keep_response_headers(shared, site.context_id, &mut pending.journey);
                if site.resume {
                    if let Err(status) = hostcalls::resume_http_request() {
                        log::warn!("could not resume request: {status:?}");
                    }
                }
                return Action::Continue;
            }
            Step::Respond(response) => {
                let outcomes = pending.journey.take_outcomes();
                super::decision_log::log_decision(
                    &shared.config,
                    &pending.request,
                    pending.journey.rule_index(),
                    &outcomes,
                    Some(&response),
                );
                shared.metrics.outcomes(&shared.config, &outcomes);
                send(&response);
                return Action::Pause;
            }
            Step::WaitForKeys { .. } | Step::WaitForIdp { .. } => {
                // Wait only for a fetch in flight (or due): after a failed one,
                // answer at once, as when the wait times out. Too many waiting
                // already: the same.
                let awaited = match step {
                    Step::WaitForKeys { source } => shared.keys_awaited(source),
                    Step::WaitForIdp { filter } => shared.idp_awaited(filter),
                    _ => false,
                };
                if !awaited || shared.pending.borrow().len() >= max_pending() {
                    step = pending.journey.keys_timed_out(
                        &shared.config,
                        &mut pending.request,
                        shared,
                        now(),
                    );
                    if matches!(step, Step::WaitForKeys { .. } | Step::WaitForIdp { .. }) {
                        step =
                            Step::Respond(Response::json_error(503, "too many requests waiting"));
                    }
                    continue;
                }
                let deadline = now() + KEY_WAIT.as_secs_f64();
                pending.wait = match step {
                    Step::WaitForIdp { filter } => Wait::Idp { filter, deadline },
                    Step::WaitForKeys { source } => Wait::Keys { source, deadline },
                    _ => pending.wait,
                };
                return park(shared, site, pending);
            }
            Step::NeedFullRequest => {
                // A lean request the journey could not just pass: again, whole.
                let tls = pending.request.tls.take();
                pending.request = read_request();
                pending.request.tls = tls;
                pending.journey = Journey::new(&shared.config, &pending.request);
                step = pending
                    .journey
                    .run(&shared.config, &mut pending.request, shared, now());
            }
            Step::NeedBody { max_bytes } => {
                if let Some(bytes) = pending.body.bytes.take() {
                    pending.journey.provide_body(bytes, pending.body.complete);
                    step = pending
                        .journey
                        .run(&shared.config, &mut pending.request, shared, now());
                    continue;
                }
                // Where Envoy lets the headers wait while the body comes
                // (`allow_on_headers_stop_iteration`), they wait for the check,
                // as with native ext_authz: the upstream sees nothing before it
                // decides. While that is not known, this request finds out.
                let mode = shared.headers_pause.get();
                if mode != HeadersPause::NotHonoured {
                    pending.wait = Wait::Body {
                        max_bytes,
                        headers_held: true,
                        probe_until: (mode == HeadersPause::Unknown)
                            .then(|| now() + HEADERS_PAUSE_PROBE.as_secs_f64()),
                    };
                    return park(shared, site, pending);
                }
                // Otherwise a Wasm filter cannot read the body while it holds the
                // headers (Envoy turns a pause into StopAllIteration, which
                // withholds the body callbacks too): the headers go on now, with
                // the changes made so far, and the body is held until the check
                // has decided.
                let changes = pending
                    .journey
                    .release_headers(&shared.config, &mut pending.request);
                apply_changes(&changes);
                pending.wait = Wait::Body {
                    max_bytes,
                    headers_held: false,
                    probe_until: None,
                };
                park(shared, site, pending);
                if site.resume {
                    if let Err(status) = hostcalls::resume_http_request() {
                        log::warn!("could not resume request: {status:?}");
                    }
                }
                return Action::Continue;
            }
            Step::Callout(callout) => {
                // A shared callout: another request's answer, or its callout in
                // flight (in this VM or another), or this request's to send.
                if let Some(key) = callout.share {
                    match claim_shared(shared, &key) {
                        SharedTurn::Answered(answer) => {
                            shared
                                .metrics
                                .count(&shared.config, Metric::SharedCalloutReused);
                            step = pending.journey.on_callout_answer(
                                &shared.config,
                                &mut pending.request,
                                answer,
                                shared,
                                now(),
                            );
                            continue;
                        }
                        SharedTurn::Wait => {
                            pending.wait = Wait::Shared { key, since: now() };
                            set_fast_tick(shared, true);
                            return park(shared, site, pending);
                        }
                        SharedTurn::Mine => {}
                    }
                }
                // The callout belongs to the running context.
                let _ = hostcalls::set_effective_context(site.running);
                let dispatched = match &callout.kind {
                    CalloutKind::Http { headers, body } => {
                        dispatch_http_call_bytes(&callout.cluster, headers, body, callout.timeout)
                    }
                    CalloutKind::Grpc {
                        service,
                        method,
                        message,
                        initial_metadata,
                    } => {
                        let metadata: Vec<(&str, &[u8])> = initial_metadata
                            .iter()
                            .map(|(n, v)| (n.as_str(), v.as_slice()))
                            .collect();
                        hostcalls::dispatch_grpc_call(
                            &callout.cluster,
                            service,
                            method,
                            metadata,
                            Some(message),
                            callout.timeout,
                        )
                    }
                };
                let _ = hostcalls::set_effective_context(site.context_id);
                match dispatched {
                    Ok(token) => {
                        shared
                            .callouts
                            .borrow_mut()
                            .insert(token, (site.context_id, callout.share));
                        pending.wait = Wait::Callout { since: now() };
                        return park(shared, site, pending);
                    }
                    Err(status) => {
                        log::error!(
                            "Envoy refused the callout to cluster {:?} ({status:?}): {}",
                            callout.cluster,
                            refusal_hint(status)
                        );
                        shared.metrics.count(&shared.config, Metric::CalloutFailed);
                        let answer = CalloutAnswer::Failed {
                            reason: format!(
                                "Envoy refused the callout to cluster {:?}",
                                callout.cluster
                            ),
                        };
                        if let Some(key) = callout.share {
                            settle_shared(shared, &key, &answer);
                        }
                        step = pending.journey.on_callout_answer(
                            &shared.config,
                            &mut pending.request,
                            answer,
                            shared,
                            now(),
                        );
                    }
                }
            }
        }
    }
}

/// The check allowed a request whose upstream answered before it decided
/// (`Journey::on_response_headers`): the held response goes on, with the headers
/// a filter adds to it, then the request body.
///
/// The response first, so it goes whatever becomes of the request: once the
/// upstream's answer is complete, Envoy counts the stream as answered and
/// continuing the request does nothing; an upstream still answering (it waits
/// for the body) gets the body. Both resumptions run when the callback returns,
/// in this order. (A response is held only once the body was read, so the
/// decision comes from a later callback; were it the request's own, Envoy
/// could not continue the request from within it: the body would stay held and
/// the upstream's answer go on.)
fn release_held_response(site: Site, journey: &mut Journey) -> Action {
    add_response_headers(journey.take_response_headers());
    if let Err(status) = hostcalls::resume_http_response() {
        log::warn!("could not resume the response: {status:?}");
    }
    if !site.resume {
        return Action::Pause;
    }
    if let Err(status) = hostcalls::resume_http_request() {
        log::warn!("could not resume request: {status:?}");
    }
    Action::Continue
}

/// Makes a filter's changes to the upstream's response (added beside its
/// headers, or set over them) (in its response-headers callback,
/// or while that response is held).
pub fn add_response_headers(headers: Vec<HeaderChange>) {
    for change in headers {
        let name = change.name.as_str();
        let result = match &change.value {
            Some(v) if change.append => {
                hostcalls::add_map_value_bytes(MapType::HttpResponseHeaders, name, v)
            }
            value => {
                hostcalls::set_map_value_bytes(MapType::HttpResponseHeaders, name, value.as_deref())
            }
        };
        if let Err(status) = result {
            log::warn!("could not change response header {name}: {status:?}");
        }
    }
}

/// Keeps the headers a filter wants on the upstream's response (a refreshed
/// session cookie) until the response comes.
pub fn keep_response_headers(shared: &Shared, context_id: u32, journey: &mut Journey) {
    let headers = journey.take_response_headers();
    if !headers.is_empty() {
        shared
            .response_headers
            .borrow_mut()
            .insert(context_id, headers);
    }
}

fn park(shared: &Shared, site: Site, pending: Pending) -> Action {
    shared.pending.borrow_mut().insert(site.context_id, pending);
    Action::Pause
}

/// A body callback came while the request's headers were paused for its
/// body: Envoy honours the pause (learnt once per VM, logged).
pub fn headers_pause_honoured(shared: &Shared, pending: &mut Pending) {
    if let Wait::Body {
        headers_held: true,
        probe_until,
        ..
    } = &mut pending.wait
    {
        *probe_until = None;
        if shared.headers_pause.get() != HeadersPause::Honoured {
            shared.headers_pause.set(HeadersPause::Honoured);
            log::info!(
                "Envoy holds the request headers while the body comes (allow_on_headers_stop_iteration): a body check decides before anything goes upstream"
            );
        }
    }
}

/// From the root context's tick: requests whose headers were paused to learn
/// whether Envoy honours that ([`HeadersPause`]) and got no body callback
/// within [`HEADERS_PAUSE_PROBE`]. Unless another request proved it meanwhile,
/// it does not: their headers go on now, as they always do then.
pub fn end_headers_pause_probes(shared: &Shared) {
    let now = now();
    let due: Vec<u32> = shared
        .pending
        .borrow()
        .iter()
        .filter(|(_, p)| matches!(p.wait, Wait::Body { probe_until: Some(t), .. } if t <= now))
        .map(|(id, _)| *id)
        .collect();
    for id in due {
        let Some(mut pending) = shared.pending.borrow_mut().remove(&id) else {
            continue;
        };
        if shared.headers_pause.get() == HeadersPause::Honoured {
            // Proved by another request: this body is only slow.
            if let Wait::Body { probe_until, .. } = &mut pending.wait {
                *probe_until = None;
            }
            shared.pending.borrow_mut().insert(id, pending);
            continue;
        }
        if hostcalls::set_effective_context(id).is_err() {
            continue; // the request is gone
        }
        if shared.headers_pause.get() == HeadersPause::Unknown {
            shared.headers_pause.set(HeadersPause::NotHonoured);
            log::info!(
                "Envoy withholds the request body while the headers are paused (no allow_on_headers_stop_iteration): with include_body the headers go upstream before the check decides (docs/external.md)"
            );
        }
        let changes = pending
            .journey
            .release_headers(&shared.config, &mut pending.request);
        apply_changes(&changes);
        if let Wait::Body { max_bytes, .. } = pending.wait {
            pending.wait = Wait::Body {
                max_bytes,
                headers_held: false,
                probe_until: None,
            };
        }
        shared.pending.borrow_mut().insert(id, pending);
        if let Err(status) = hostcalls::resume_http_request() {
            log::warn!("could not resume request: {status:?}");
        }
    }
}

/// Runs a request parked for keys again, from the root context (keys arrived, or
/// its wait ended).
pub fn wake(shared: &Shared, context_id: u32, timed_out: bool) {
    let Some(mut pending) = shared.pending.borrow_mut().remove(&context_id) else {
        return;
    };
    if hostcalls::set_effective_context(context_id).is_err() {
        return; // the request is gone
    }
    let now = now();
    let step = if timed_out {
        pending
            .journey
            .keys_timed_out(&shared.config, &mut pending.request, shared, now)
    } else {
        pending
            .journey
            .run(&shared.config, &mut pending.request, shared, now)
    };
    let site = Site {
        context_id,
        running: shared.root_context_id,
        resume: true,
    };
    advance(shared, site, pending, step);
    let _ = hostcalls::set_effective_context(shared.root_context_id);
}

/// Reads the answer of an HTTP callout in its callback (bounded).
pub fn read_http_answer(body_size: usize) -> CalloutAnswer {
    let headers = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let status = headers
        .iter()
        .find(|(n, _)| n == ":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status else {
        return CalloutAnswer::Failed {
            reason: "no answer (connection failed, reset or timed out)".to_string(),
        };
    };
    if headers.len() > MAX_ANSWER_HEADERS.saturating_add(8) {
        return CalloutAnswer::Failed {
            reason: format!("answer has {} headers", headers.len()),
        };
    }
    // Values as the service sent their bytes.
    let headers = headers
        .into_iter()
        .filter(|(n, _)| !n.starts_with(':'))
        .collect();
    let body = read_buffer(BufferType::HttpCallResponseBody, body_size);
    CalloutAnswer::Http {
        status,
        headers,
        body,
    }
}

/// Reads the answer of a gRPC callout in its callback (bounded).
pub fn read_grpc_answer(status_code: u32, response_size: usize) -> CalloutAnswer {
    let message = if status_code == 0 {
        read_buffer(BufferType::GrpcReceiveBuffer, response_size)
    } else {
        Vec::new()
    };
    CalloutAnswer::Grpc {
        status_code,
        message,
    }
}

/// Reads at most `MAX_ANSWER_BYTES + 1` bytes of a buffer (one more than allowed,
/// so the core sees an oversized answer as such).
fn read_buffer(buffer: BufferType, size: usize) -> Vec<u8> {
    let take = size.min(MAX_ANSWER_BYTES.saturating_add(1));
    if take == 0 {
        return Vec::new();
    }
    let mut bytes = hostcalls::get_buffer(buffer, 0, take)
        .ok()
        .flatten()
        .unwrap_or_default();
    if size > take {
        bytes.resize(take, 0);
    }
    bytes
}

/// A callout answered: the request it belongs to goes on. `running` is the
/// context whose callback this is. Returns false when the token is not an
/// External check's.
pub fn callout_answered(
    shared: &Shared,
    running: u32,
    token: u32,
    answer: impl FnOnce() -> CalloutAnswer,
) -> bool {
    let Some((context_id, key)) = shared.callouts.borrow_mut().remove(&token) else {
        return false;
    };
    let answer = answer();
    let failed = match &answer {
        CalloutAnswer::Failed { .. } => true,
        CalloutAnswer::Http { status, .. } => *status >= 500,
        CalloutAnswer::Grpc { status_code, .. } => *status_code != 0,
    };
    if failed {
        shared.metrics.count(&shared.config, Metric::CalloutFailed);
    }
    // A shared callout: kept in its slot for every request waiting on it, in
    // this VM or another, and for late requests. This VM's waiters read it on
    // the next tick (`poll_shared`), like the other VMs': they go on from the
    // root context, so a callout one of them sends next (UserInfo after a
    // refresh) belongs to a context that outlives this request. (The SDK
    // routes an answer to the context whose callback sent the call.) Only
    // when the slot could not be written are they given the answer here.
    let waiters = match key {
        Some(key) if !settle_shared(shared, &key, &answer) => shared_waiters(shared, |k| k == key),
        _ => Vec::new(),
    };
    for waiter in waiters {
        shared
            .metrics
            .count(&shared.config, Metric::SharedCalloutReused);
        deliver(shared, running, waiter, answer.clone());
    }
    deliver(shared, running, context_id, answer);
    true
}

/// What a request does with a shared callout.
enum SharedTurn {
    /// Another request's answer.
    Answered(CalloutAnswer),
    /// Another request's callout is in flight.
    Wait,
    /// This request sends it (its claim is written, or shared data failed).
    Mine,
}

/// Reads the key's slot in the host's shared data and claims the callout when
/// nobody has it (compare-and-swap; read again on a mismatch).
fn claim_shared(shared: &Shared, key: &ShareKey) -> SharedTurn {
    let name = shared.shared_callouts.slot_name(key);
    for _ in 0..CAS_ATTEMPTS {
        let (bytes, cas) = match hostcalls::get_shared_data(&name) {
            Ok(found) => found,
            Err(status) => {
                log::warn!("shared data {name} unreadable ({status:?}): calling out alone");
                return SharedTurn::Mine;
            }
        };
        match shared.shared_callouts.consult(bytes.as_deref(), key, now()) {
            Consult::Answered(answer) => return SharedTurn::Answered(answer),
            Consult::InFlight => return SharedTurn::Wait,
            Consult::Claim(claimed) => {
                match hostcalls::set_shared_data(&name, Some(&claimed), cas) {
                    Ok(()) => return SharedTurn::Mine,
                    Err(proxy_wasm::types::Status::CasMismatch) => continue,
                    Err(status) => {
                        log::warn!("shared data {name} unwritable ({status:?}): calling out alone");
                        return SharedTurn::Mine;
                    }
                }
            }
        }
    }
    // Other VMs keep writing the slot: wait, and read it again on the tick.
    SharedTurn::Wait
}

/// Writes every slot that does not exist yet, empty. Envoy's shared data has
/// no compare-and-swap on a key it has not seen (a write to a missing key
/// always succeeds), so two VMs could both claim a callout in a never-written
/// slot; written at configure time, every later claim is a real CAS.
pub fn init_shared_slots(shared: &Shared) {
    if !shared
        .config
        .filters
        .iter()
        .any(|f| matches!(f.kind, portcullis_core::config::FilterKind::OAuth2(_)))
    {
        return;
    }
    for slot in 0..shared.shared_callouts.slots() {
        let name = shared.shared_callouts.slot_name_of(slot);
        if let Ok((None, _)) = hostcalls::get_shared_data(&name) {
            let _ = hostcalls::set_shared_data(&name, Some(b""), None);
        }
    }
}

/// Keeps a shared callout's answer in its slot for the requests waiting on it
/// (this VM's and the others'); false when the slot could not be written.
fn settle_shared(shared: &Shared, key: &ShareKey, answer: &CalloutAnswer) -> bool {
    let name = shared.shared_callouts.slot_name(key);
    for _ in 0..CAS_ATTEMPTS {
        let Ok((bytes, cas)) = hostcalls::get_shared_data(&name) else {
            break;
        };
        let settled = shared
            .shared_callouts
            .settle(bytes.as_deref(), key, answer, now());
        match hostcalls::set_shared_data(&name, Some(&settled), cas) {
            Ok(()) => return true,
            Err(proxy_wasm::types::Status::CasMismatch) => continue,
            Err(_) => break,
        }
    }
    log::warn!("shared data {name}: could not keep a shared answer; other workers wait for it until it is stale");
    false
}

/// The requests of this VM waiting on a shared callout whose key matches.
fn shared_waiters(shared: &Shared, matches: impl Fn(ShareKey) -> bool) -> Vec<u32> {
    shared
        .pending
        .borrow()
        .iter()
        .filter_map(|(id, p)| match p.wait {
            Wait::Shared { key, .. } if matches(key) => Some(*id),
            _ => None,
        })
        .collect()
}

/// On the tick: the requests waiting on another VM's shared callout read its
/// slot again; those answered go on, and those waiting longer than `max_wait`
/// seconds (its VM went away) fail as an unanswered callout would.
pub fn poll_shared(shared: &Shared, running: u32, max_wait: f64) {
    let waiting: Vec<(u32, ShareKey, f64)> = shared
        .pending
        .borrow()
        .iter()
        .filter_map(|(id, p)| match p.wait {
            Wait::Shared { key, since } => Some((*id, key, since)),
            _ => None,
        })
        .collect();
    if waiting.is_empty() {
        set_fast_tick(shared, false);
        return;
    }
    let now = now();
    // One read per slot, however many requests wait on it.
    let mut slots: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for (id, key, since) in waiting {
        let name = shared.shared_callouts.slot_name(&key);
        let bytes = slots.entry(name).or_insert_with_key(|name| {
            hostcalls::get_shared_data(name)
                .ok()
                .and_then(|(bytes, _)| bytes)
        });
        match shared.shared_callouts.consult(bytes.as_deref(), &key, now) {
            Consult::Answered(answer) => {
                shared
                    .metrics
                    .count(&shared.config, Metric::SharedCalloutReused);
                deliver(shared, running, id, answer);
            }
            // Still in flight.
            Consult::InFlight if now - since <= max_wait => {}
            // Its VM went away without answering; or the answer is gone from
            // the slot (evicted) before this VM read it.
            _ => {
                let answer = CalloutAnswer::Failed {
                    reason: "the shared callout got no answer".to_string(),
                };
                deliver(shared, running, id, answer);
            }
        }
    }
}

/// Runs the tick at `FAST_TICK` while requests wait on a shared callout.
pub fn set_fast_tick(shared: &Shared, fast: bool) {
    if shared.fast_tick.get() == fast {
        return;
    }
    let period = if fast { FAST_TICK } else { TICK };
    if hostcalls::set_tick_period(period).is_ok() {
        shared.fast_tick.set(fast);
    }
}

/// Gives a callout's answer to the request of `context_id`, which goes on.
pub fn deliver(shared: &Shared, running: u32, context_id: u32, answer: CalloutAnswer) {
    let Some(mut pending) = shared.pending.borrow_mut().remove(&context_id) else {
        return; // the request is gone
    };
    let waited = match pending.wait {
        Wait::Callout { since } => Some((Metric::CalloutLatency, since)),
        Wait::Shared { since, .. } => Some((Metric::SharedCalloutWait, since)),
        _ => None,
    };
    if let Some((metric, since)) = waited {
        let ms = ((now() - since) * 1000.0).max(0.0) as u64;
        shared.metrics.record(&shared.config, metric, ms);
    }
    if running != context_id && hostcalls::set_effective_context(context_id).is_err() {
        return;
    }
    let step = pending.journey.on_callout_answer(
        &shared.config,
        &mut pending.request,
        answer,
        shared,
        now(),
    );
    let site = Site {
        context_id,
        running,
        resume: true,
    };
    advance(shared, site, pending, step);
    if running != context_id {
        let _ = hostcalls::set_effective_context(running);
    }
}
