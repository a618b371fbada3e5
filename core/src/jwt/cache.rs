//! The verified-token cache: a token whose signature and claims passed is kept,
//! parsed, so that its next request costs a hash and a few claim comparisons
//! instead of a signature check and two JSON parses.
//!
//! - Keyed by a 64-bit SipHash (random keys per cache) of the *scope* (which
//!   filter, with which claim policy) and the token; the full token is kept and
//!   compared on a hit, so a hash collision is only a miss.
//! - An entry belongs to the key set that verified it ([`KeySet::id`]): after a
//!   JWK Set refresh, tokens are verified again with the new set (a key rotated
//!   out stops verifying at once).
//! - No entry outlives its token's `exp`, nor [`MAX_TTL`]; a hit checks the
//!   claims again at the current time (`exp`, `nbf`, `iat` with their leeways,
//!   `iss`, `aud`). Only successes are cached.
//! - Bounded in entries and in (estimated) bytes; when full, expired entries go
//!   first, then the oldest.
//!
//! Sans-IO: the host owns one per VM (per worker) and lends it to the pipeline.

use super::host_crypto::SignatureVerifier;
use super::keys::KeySet;
use super::verify::{check_claims, verify_token_with, ClaimPolicy, TokenError, VerifiedToken};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// How many bytes at the end of a token its cache key hashes (see `hash`).
const HASHED_TAIL: usize = 48;
/// The longest an entry lives, whatever its `exp` (or without one).
pub const MAX_TTL: f64 = 600.0;
/// Default budget of a VM's caches (`cacheBudget`).
pub const DEFAULT_BUDGET: usize = 16 * 1024 * 1024;
/// Fixed per-entry overhead counted on top of the token-sized parts.
const ENTRY_OVERHEAD: usize = 320;
/// A full cache looks for expired entries at most this often (seconds): the
/// scan visits every entry, so running it on every insertion into a full cache
/// made each miss cost O(entries). In between, the oldest entry makes room.
const PURGE_INTERVAL: f64 = 1.0;

#[derive(Debug)]
struct Entry {
    scope: u64,
    keys: u64,
    token: Arc<VerifiedToken>,
    /// Unix seconds after which the entry is dropped.
    until: f64,
    bytes: usize,
    serial: u64,
}

/// Hit and miss counts, for tests and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

/// A bounded cache of verified tokens.
#[derive(Debug)]
pub struct TokenCache {
    hasher: RandomState,
    entries: HashMap<u64, Entry>,
    /// Insertion order: (hash, serial); stale pairs are skipped.
    order: VecDeque<(u64, u64)>,
    serial: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    /// No expiry scan before this time (see [`PURGE_INTERVAL`]).
    next_purge: f64,
    /// What a lean request's check found wrong with a token, for the
    /// whole-request run that follows at once (see [`remember_failure`]).
    failure: Option<Failure>,
    pub stats: CacheStats,
}

/// A token's refusal, kept for the next look-up of the same token.
#[derive(Debug)]
struct Failure {
    scope: u64,
    keys: u64,
    token: String,
    error: TokenError,
    at: f64,
}

/// How long a remembered refusal stays usable (seconds): the whole-request run
/// comes within the same callback, microseconds later.
const FAILURE_TTL: f64 = 1.0;

impl TokenCache {
    /// A cache of at most `max_bytes` (estimated) and `max_entries` entries;
    /// `max_bytes == 0` turns it off.
    pub fn new(max_bytes: usize, max_entries: usize) -> TokenCache {
        TokenCache {
            hasher: RandomState::new(),
            entries: HashMap::new(),
            order: VecDeque::new(),
            serial: 0,
            bytes: 0,
            max_entries,
            max_bytes,
            next_purge: f64::NEG_INFINITY,
            failure: None,
            stats: CacheStats::default(),
        }
    }

    /// A cache within `budget` bytes: one entry per KiB of budget at most.
    pub fn with_budget(budget: usize) -> TokenCache {
        TokenCache::new(budget, (budget / 1024).clamp(0, 1 << 20))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Estimated bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The key of `(scope, token)`: SipHash (random keys) of the scope, the
    /// token's length and its last [`HASHED_TAIL`] bytes, the end of the
    /// signature, which tells any two tokens of an issuer apart. Hashing a whole
    /// ~1 KB token on every request cost more than the rest of a hit. A shared
    /// tail is only a shared slot: the token is compared in full on a hit.
    fn hash(&self, scope: u64, token: &str) -> u64 {
        let bytes = token.as_bytes();
        let tail = bytes
            .get(bytes.len().saturating_sub(HASHED_TAIL)..)
            .unwrap_or(bytes);
        let mut h = self.hasher.build_hasher();
        h.write_u64(scope);
        h.write_usize(bytes.len());
        h.write(tail);
        h.finish()
    }

    /// The cached token for `(scope, token)` verified with `keys`, if its entry
    /// is still live at `now` and its claims still pass `policy`. A claim that
    /// no longer passes (expired) drops the entry and returns the error.
    pub fn get(
        &mut self,
        scope: u64,
        token: &str,
        keys: &KeySet,
        policy: &ClaimPolicy,
        now: f64,
    ) -> Option<Result<Arc<VerifiedToken>, TokenError>> {
        if self.max_bytes == 0 {
            return None;
        }
        let hash = self.hash(scope, token);
        let entry = self.entries.get(&hash)?;
        if entry.scope != scope
            || entry.keys != keys.id()
            || !crate::bytes::same_bytes(entry.token.raw.as_bytes(), token.as_bytes())
        {
            return None;
        }
        if now >= entry.until {
            self.remove(hash);
            return None;
        }
        match check_claims(&entry.token.claims, policy, now) {
            Ok(()) => {
                self.stats.hits = self.stats.hits.saturating_add(1);
                Some(Ok(Arc::clone(&entry.token)))
            }
            Err(e) => {
                self.remove(hash);
                Some(Err(e))
            }
        }
    }

    /// Keeps a token that `keys` verified under `scope`'s policy at `now`.
    pub fn insert(&mut self, scope: u64, keys: &KeySet, token: Arc<VerifiedToken>, now: f64) {
        if self.max_bytes == 0 || self.max_entries == 0 {
            return;
        }
        let exp = match token.claims.get("exp").and_then(serde_json::Value::as_f64) {
            Some(exp) if exp.is_finite() => exp,
            Some(_) | None => f64::INFINITY,
        };
        let until = exp.min(now + MAX_TTL);
        if until <= now {
            return;
        }
        let bytes = entry_bytes(&token);
        if bytes > self.max_bytes / 4 {
            return; // one huge token never flushes the cache
        }
        let hash = self.hash(scope, &token.raw);
        self.remove(hash);
        if (self.entries.len() >= self.max_entries
            || self.bytes.saturating_add(bytes) > self.max_bytes)
            && now >= self.next_purge
        {
            self.next_purge = now + PURGE_INTERVAL;
            self.purge_expired(now);
        }
        while self.entries.len() >= self.max_entries
            || self.bytes.saturating_add(bytes) > self.max_bytes
        {
            let Some((old, serial)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|e| e.serial == serial) {
                self.remove(old);
                self.stats.evictions = self.stats.evictions.saturating_add(1);
            }
        }
        self.serial = self.serial.wrapping_add(1);
        self.bytes = self.bytes.saturating_add(bytes);
        // Replaced entries leave stale pairs behind: drop them once they
        // outnumber the live ones (amortised O(1) per insertion).
        if self.order.len() > self.entries.len().saturating_mul(2).saturating_add(64) {
            let entries = &self.entries;
            self.order
                .retain(|(h, s)| entries.get(h).is_some_and(|e| e.serial == *s));
        }
        self.order.push_back((hash, self.serial));
        self.entries.insert(
            hash,
            Entry {
                scope,
                keys: keys.id(),
                token,
                until,
                bytes,
                serial: self.serial,
            },
        );
    }

    fn remove(&mut self, hash: u64) {
        if let Some(e) = self.entries.remove(&hash) {
            self.bytes = self.bytes.saturating_sub(e.bytes);
        }
    }

    fn purge_expired(&mut self, now: f64) {
        let before = self.entries.len();
        let mut freed = 0;
        self.entries.retain(|_, e| {
            let keep = now < e.until;
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
        if self.entries.len() != before {
            let entries = &self.entries;
            self.order
                .retain(|(h, s)| entries.get(h).is_some_and(|e| e.serial == *s));
        }
    }
}

/// Estimated heap bytes of one entry: the token text is held three times over
/// (raw, signature, the parsed header and claims), plus maps and bookkeeping.
fn entry_bytes(token: &VerifiedToken) -> usize {
    token
        .raw
        .len()
        .saturating_mul(3)
        .saturating_add(ENTRY_OVERHEAD)
}

/// Verifies `token` through `cache` when there is one: a hit re-checks the
/// claims only; a miss verifies fully and keeps a success.
pub fn verify_cached(
    cache: Option<&std::cell::RefCell<TokenCache>>,
    scope: u64,
    token: &str,
    keys: &KeySet,
    policy: &ClaimPolicy,
    now: f64,
    host: Option<&dyn SignatureVerifier>,
) -> Result<Arc<VerifiedToken>, TokenError> {
    match lookup_cached(cache, scope, token, keys, policy, now) {
        Some(found) => found,
        None => verify_and_keep(cache, scope, token, keys, policy, now, host),
    }
}

/// The cache's answer for `token`, if it has one (see [`TokenCache::get`]); a
/// miss is counted.
pub fn lookup_cached(
    cache: Option<&std::cell::RefCell<TokenCache>>,
    scope: u64,
    token: &str,
    keys: &KeySet,
    policy: &ClaimPolicy,
    now: f64,
) -> Option<Result<Arc<VerifiedToken>, TokenError>> {
    let mut c = cache?.try_borrow_mut().ok()?;
    if let Some(f) = c.failure.take() {
        if f.scope == scope && f.keys == keys.id() && f.token == token && now - f.at < FAILURE_TTL {
            return Some(Err(f.error));
        }
    }
    let found = c.get(scope, token, keys, policy, now);
    if found.is_none() {
        c.stats.misses = c.stats.misses.saturating_add(1);
    }
    found
}

/// Keeps a lean request's refusal of `token` for the whole-request run of the
/// same request, which the host starts at once: the token is then checked once,
/// not twice. One slot, taken by the next look-up; an unknown key is not kept
/// (the whole run may refresh the key set for it).
pub fn remember_failure(
    cache: Option<&std::cell::RefCell<TokenCache>>,
    scope: u64,
    token: &str,
    keys: &KeySet,
    error: TokenError,
    now: f64,
) {
    if matches!(error, TokenError::UnknownKey(_)) {
        return;
    }
    if let Some(Ok(mut c)) = cache.map(|c| c.try_borrow_mut()) {
        c.failure = Some(Failure {
            scope,
            keys: keys.id(),
            token: token.to_string(),
            error,
            at: now,
        });
    }
}

/// Verifies `token` fully and keeps a success in `cache`.
pub fn verify_and_keep(
    cache: Option<&std::cell::RefCell<TokenCache>>,
    scope: u64,
    token: &str,
    keys: &KeySet,
    policy: &ClaimPolicy,
    now: f64,
    host: Option<&dyn SignatureVerifier>,
) -> Result<Arc<VerifiedToken>, TokenError> {
    let verified = Arc::new(verify_token_with(token, keys, policy, now, host)?);
    if let Some(Ok(mut c)) = cache.map(|c| c.try_borrow_mut()) {
        c.insert(scope, keys, Arc::clone(&verified), now);
    }
    Ok(verified)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use crate::jwt::keys::Algorithm;
    use crate::jwt::verify::test_fixtures::*;
    use crate::jwt::verify::verify_token;
    use serde_json::json;
    use std::cell::RefCell;

    const NOW: f64 = 1_700_000_000.0;

    fn keys() -> KeySet {
        key_set(vec![hmac().public_jwk()])
    }

    fn policy() -> ClaimPolicy {
        ClaimPolicy {
            valid_algorithms: vec![Algorithm::HS256],
            ..ClaimPolicy::default()
        }
    }

    fn hs(claims: serde_json::Value) -> String {
        token(json!({"alg": "HS256", "typ": "JWT"}), claims, &hmac())
    }

    #[test]
    fn a_token_of_the_same_length_and_tail_is_not_a_hit() {
        // Same length and last 48 bytes: the same slot, compared in full.
        let cache = RefCell::new(TokenCache::with_budget(1 << 20));
        let keys = keys();
        let t = hs(json!({"sub": "a", "exp": NOW + 600.0}));
        let verified = Arc::new(verify_token(&t, &keys, &policy(), NOW).unwrap());
        cache.borrow_mut().insert(1, &keys, verified, NOW);
        assert!(cache
            .borrow_mut()
            .get(1, &t, &keys, &policy(), NOW)
            .is_some());
        let mut forged = t.clone().into_bytes();
        forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(cache
            .borrow_mut()
            .get(1, &forged, &keys, &policy(), NOW)
            .is_none());
    }

    #[test]
    fn second_check_is_a_hit_and_rechecks_exp() {
        let keys = keys();
        let cache = RefCell::new(TokenCache::with_budget(1 << 20));
        let t = hs(json!({"exp": NOW + 100.0, "sub": "a"}));
        let first = verify_cached(Some(&cache), 1, &t, &keys, &policy(), NOW, None).unwrap();
        let second = verify_cached(Some(&cache), 1, &t, &keys, &policy(), NOW + 1.0, None).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(cache.borrow().stats.hits, 1);
        // Within leeway after exp: the entry is gone (never outlives exp), full check passes.
        let lenient = ClaimPolicy {
            leeway_for_expires_at: std::time::Duration::from_secs(30),
            ..policy()
        };
        assert!(verify_cached(Some(&cache), 1, &t, &keys, &lenient, NOW + 110.0, None).is_ok());
        assert_eq!(cache.borrow().len(), 0, "not kept past exp");
        assert_eq!(
            verify_cached(Some(&cache), 1, &t, &keys, &policy(), NOW + 101.0, None).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn hit_rechecks_nbf_and_policy_claims() {
        let keys = keys();
        let mut cache = TokenCache::with_budget(1 << 20);
        let t = hs(json!({"exp": NOW + 100.0, "nbf": NOW - 1.0}));
        let v = Arc::new(verify_token(&t, &keys, &policy(), NOW).unwrap());
        cache.insert(1, &keys, v, NOW);
        assert!(cache.get(1, &t, &keys, &policy(), NOW).unwrap().is_ok());
        // Earlier than nbf (a clock step back): refused on a hit too.
        assert_eq!(
            cache
                .get(1, &t, &keys, &policy(), NOW - 10.0)
                .unwrap()
                .unwrap_err(),
            TokenError::NotYetValid
        );
    }

    #[test]
    fn scope_and_key_set_separate_entries() {
        let keys = keys();
        let other = keys.clone_with_new_id();
        let cache = RefCell::new(TokenCache::with_budget(1 << 20));
        let t = hs(json!({"exp": NOW + 100.0}));
        verify_cached(Some(&cache), 1, &t, &keys, &policy(), NOW, None).unwrap();
        verify_cached(Some(&cache), 2, &t, &keys, &policy(), NOW, None).unwrap();
        verify_cached(Some(&cache), 1, &t, &other, &policy(), NOW, None).unwrap();
        assert_eq!(cache.borrow().stats.hits, 0);
        verify_cached(Some(&cache), 1, &t, &other, &policy(), NOW, None).unwrap();
        assert_eq!(cache.borrow().stats.hits, 1);
    }

    #[test]
    fn failures_are_not_cached() {
        let keys = keys();
        let cache = RefCell::new(TokenCache::with_budget(1 << 20));
        let t = hs(json!({"exp": NOW - 1.0}));
        assert!(verify_cached(Some(&cache), 1, &t, &keys, &policy(), NOW, None).is_err());
        assert!(cache.borrow().is_empty());
    }

    #[test]
    fn bounded_in_entries_and_bytes() {
        let keys = keys();
        let mut cache = TokenCache::new(1 << 20, 10);
        for i in 0..50 {
            let t = hs(json!({"exp": NOW + 100.0, "i": i}));
            cache.insert(
                1,
                &keys,
                Arc::new(verify_token(&t, &keys, &policy(), NOW).unwrap()),
                NOW,
            );
            assert!(cache.len() <= 10);
        }
        let mut cache = TokenCache::new(8 * 1024, 1000);
        for i in 0..50 {
            let t = hs(json!({"exp": NOW + 100.0, "i": i}));
            cache.insert(
                1,
                &keys,
                Arc::new(verify_token(&t, &keys, &policy(), NOW).unwrap()),
                NOW,
            );
            assert!(cache.bytes() <= 8 * 1024);
        }
        assert!(cache.len() > 1);
        // The newest stays, the oldest went.
        let last = hs(json!({"exp": NOW + 100.0, "i": 49}));
        assert!(cache.get(1, &last, &keys, &policy(), NOW).is_some());
        let first = hs(json!({"exp": NOW + 100.0, "i": 0}));
        assert!(cache.get(1, &first, &keys, &policy(), NOW).is_none());
    }

    #[test]
    fn a_full_cache_scans_for_expired_entries_at_most_once_a_second() {
        let keys = keys();
        let verified = |claims| Arc::new(verify_token(&hs(claims), &keys, &policy(), NOW).unwrap());
        let mut cache = TokenCache::new(1 << 20, 4);
        // Two short-lived entries, two long-lived: full.
        cache.insert(1, &keys, verified(json!({"exp": NOW + 2.0, "i": 0})), NOW);
        cache.insert(1, &keys, verified(json!({"exp": NOW + 2.0, "i": 1})), NOW);
        cache.insert(1, &keys, verified(json!({"exp": NOW + 100.0, "i": 2})), NOW);
        cache.insert(1, &keys, verified(json!({"exp": NOW + 100.0, "i": 3})), NOW);
        // Full at NOW: this insertion scans (nothing expired) and evicts the oldest.
        cache.insert(1, &keys, verified(json!({"exp": NOW + 100.0, "i": 4})), NOW);
        assert_eq!(cache.stats.evictions, 1);
        // At NOW + 3 both short-lived entries are expired (one is left: i=1);
        // the scan is due again, so it frees it and nothing live is evicted.
        cache.insert(
            1,
            &keys,
            verified(json!({"exp": NOW + 100.0, "i": 5})),
            NOW + 3.0,
        );
        assert_eq!(cache.stats.evictions, 1);
        assert_eq!(cache.len(), 4);
        let live = hs(json!({"exp": NOW + 100.0, "i": 2}));
        assert!(cache.get(1, &live, &keys, &policy(), NOW + 3.0).is_some());
        // Within the interval, a full cache makes room by evicting the oldest.
        cache.insert(
            1,
            &keys,
            verified(json!({"exp": NOW + 100.0, "i": 6})),
            NOW + 3.5,
        );
        assert_eq!(cache.stats.evictions, 2);
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn tokens_sharing_their_tail_share_a_slot_but_never_a_hit() {
        use base64::Engine;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let none = |who: &str| {
            format!(
                "{}.{}.",
                b64(json!({"alg": "none"})),
                b64(json!({"a": who, "pad": "p".repeat(80), "exp": NOW + 100.0}))
            )
        };
        let (t1, t2) = (none("x"), none("y"));
        assert_eq!(t1.len(), t2.len());
        assert_eq!(t1[t1.len() - HASHED_TAIL..], t2[t2.len() - HASHED_TAIL..]);
        assert_ne!(t1, t2);
        let policy = ClaimPolicy {
            valid_algorithms: vec![Algorithm::None],
            ..ClaimPolicy::default()
        };
        let keys = KeySet::default();
        let cache = RefCell::new(TokenCache::with_budget(1 << 20));
        let first = verify_cached(Some(&cache), 1, &t1, &keys, &policy, NOW, None).unwrap();
        assert_eq!(first.claims["a"], "x");
        let second = verify_cached(Some(&cache), 1, &t2, &keys, &policy, NOW, None).unwrap();
        assert_eq!(second.claims["a"], "y", "no false hit");
        let again = verify_cached(Some(&cache), 1, &t2, &keys, &policy, NOW, None).unwrap();
        assert_eq!(again.claims["a"], "y");
        assert_eq!(cache.borrow().stats.hits, 1);
        assert_eq!(cache.borrow().len(), 1, "one slot");
    }

    #[test]
    fn a_remembered_refusal_answers_the_next_look_up_of_that_token_once() {
        let keys = keys();
        let cache = RefCell::new(TokenCache::with_budget(0)); // works with the cache off
        let t = hs(json!({"sub": "a"}));
        let p = policy();
        remember_failure(Some(&cache), 1, &t, &keys, TokenError::BadSignature, NOW);
        // Another token, scope or key set: not this one's (and the slot is gone).
        assert!(lookup_cached(Some(&cache), 2, &t, &keys, &p, NOW).is_none());
        remember_failure(Some(&cache), 1, &t, &keys, TokenError::BadSignature, NOW);
        let found = lookup_cached(Some(&cache), 1, &t, &keys, &p, NOW + 0.001);
        assert_eq!(found.map(|r| r.err()), Some(Some(TokenError::BadSignature)));
        let used = lookup_cached(Some(&cache), 1, &t, &keys, &p, NOW);
        assert!(used.is_none(), "used once");
        // Too late, or an unknown key (a refresh may bring it): not used.
        remember_failure(Some(&cache), 1, &t, &keys, TokenError::Expired, NOW);
        assert!(lookup_cached(Some(&cache), 1, &t, &keys, &p, NOW + 2.0).is_none());
        remember_failure(
            Some(&cache),
            1,
            &t,
            &keys,
            TokenError::UnknownKey(None),
            NOW,
        );
        assert!(lookup_cached(Some(&cache), 1, &t, &keys, &p, NOW).is_none());
    }

    #[test]
    fn replacing_the_same_token_keeps_the_order_queue_bounded() {
        let keys = keys();
        let t = hs(json!({"exp": NOW + 100.0}));
        let mut cache = TokenCache::with_budget(1 << 20);
        for _ in 0..10_000 {
            cache.insert(
                1,
                &keys,
                Arc::new(verify_token(&t, &keys, &policy(), NOW).unwrap()),
                NOW,
            );
        }
        assert_eq!(cache.len(), 1);
        assert!(cache.order.len() <= 2 + 64 + 1, "{}", cache.order.len());
        assert!(cache.get(1, &t, &keys, &policy(), NOW).is_some());
    }

    #[test]
    fn zero_budget_turns_it_off_and_no_exp_is_capped() {
        let keys = keys();
        let mut off = TokenCache::with_budget(0);
        let t = hs(json!({}));
        off.insert(
            1,
            &keys,
            Arc::new(verify_token(&t, &keys, &policy(), NOW).unwrap()),
            NOW,
        );
        assert!(off.is_empty());
        let mut cache = TokenCache::with_budget(1 << 20);
        cache.insert(
            1,
            &keys,
            Arc::new(verify_token(&t, &keys, &policy(), NOW).unwrap()),
            NOW,
        );
        assert!(cache
            .get(1, &t, &keys, &policy(), NOW + MAX_TTL - 1.0)
            .is_some());
        assert!(cache.get(1, &t, &keys, &policy(), NOW + MAX_TTL).is_none());
    }
}
