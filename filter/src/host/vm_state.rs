//! The state one VM keeps for all its contexts (one thread, so `Rc`/`RefCell`):
//! the configuration, the JWK Sets and IdP documents it fetched, its caches,
//! and the requests parked in the middle of their journey (`VmState::pending`,
//! under their context id). What the VMs of one Envoy share is `cross_vm`'s.

use portcullis_core::compile::url::CalloutTarget;
use portcullis_core::config::Config;
use portcullis_core::fetch::DocumentCache;
use portcullis_core::jwt::cache::TokenCache;
use portcullis_core::jwt::host_crypto::{decode_result, encode_arguments, SignatureVerifier};
use portcullis_core::jwt::jwks_cache::JwksCache;
use portcullis_core::jwt::KeySet;
use portcullis_core::oauth2::{Discovery, UserinfoCache};
use portcullis_core::pipeline::Journey;
use portcullis_core::request::Request;
use portcullis_core::response::HeaderChange;
use portcullis_core::shared_callout::{ShareKey, SharedCallouts};
use proxy_wasm::hostcalls;
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
    /// Source index in `VmState::discovery`.
    pub discovery: usize,
    /// Source index in `VmState::jwks` of the set at `jwks_uri`, once known.
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
pub struct VmState {
    pub metrics: super::metrics::Metrics,
    /// OAuth2 sessions already opened (skips AES-GCM on repeat requests).
    pub session_cache: RefCell<portcullis_core::oauth2::session::SessionCache>,
    pub discovery: RefCell<DocumentCache<Discovery>>,
    pub idps: RefCell<Vec<IdpSlot>>,
    /// JWK Sets named by discovery documents (source index minus the number of
    /// configured ones): URL and callout target.
    pub discovered_jwks: RefCell<Vec<(String, CalloutTarget)>>,
    /// Userinfo answers, per OAuth2 filter (index in the configuration).
    pub userinfo: BTreeMap<usize, RefCell<UserinfoCache>>,
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

impl VmState {
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
    pub(super) fn idp_slot(&self, index: usize) -> Option<IdpSlot> {
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

    pub(super) fn idp_documents(
        &self,
        slot: Option<&IdpSlot>,
    ) -> (Option<Arc<Discovery>>, Option<Arc<KeySet>>) {
        let Some(slot) = slot else {
            return (None, None);
        };
        let discovery = self.discovery.borrow().get(slot.discovery);
        let keys = slot.jwks.and_then(|j| self.jwks.borrow().get(j));
        (discovery, keys)
    }

    /// Whether a request waiting for JWK Set `source` may get it soon: a fetch
    /// is in flight or due. False right after a failed fetch (answer at once).
    pub fn keys_awaited(&self, source: usize) -> bool {
        self.jwks.borrow().awaiting(source, now())
    }

    /// [`VmState::keys_awaited`] for an OAuth2 filter's IdP: its discovery
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
        let (discovery, keys) = self.idp_documents(self.idp_slot(index).as_ref());
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

/// The host's clock as Unix seconds.
pub fn now() -> f64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
