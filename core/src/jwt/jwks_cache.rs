//! The remote JWK Sets of a configuration: when to fetch each, what to keep.
//!
//! Sans-IO: the host asks `due` which sources to fetch now, performs the
//! callouts, and reports each answer with `on_response` / `on_failure`. The last
//! good set is kept when a fetch fails. A token naming an unknown key may pull a
//! refresh forward, at most once per `UNKNOWN_KEY_REFRESH_INTERVAL`.

use super::keys::KeySet;
use std::sync::Arc;
use std::time::Duration;

/// How long a fetch may take before it counts as failed.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Minimum time between two refreshes triggered by unknown `kid`s.
pub const UNKNOWN_KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Largest JWK Set document accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Retry delays after failures: first load retries fast, then backs off.
const RETRY_MIN: f64 = 1.0;
const RETRY_MAX: f64 = 30.0;

#[derive(Debug)]
struct SourceState {
    keys: Option<Arc<KeySet>>,
    refresh_interval: f64,
    next_fetch_at: f64,
    in_flight_since: Option<f64>,
    last_unknown_key_refresh: Option<f64>,
    failures: u32,
}

/// What a fetch result changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResult {
    /// A new set is in use.
    Loaded { keys: usize, warnings: Vec<String> },
    /// The fetch failed; the previous set (if any) stays.
    Failed { reason: String, kept_previous: bool },
}

/// All remote key sets of one configuration.
#[derive(Debug, Default)]
pub struct JwksCache {
    sources: Vec<SourceState>,
}

impl JwksCache {
    /// One entry per source, each with its refresh interval; all due at once.
    pub fn new(refresh_intervals: &[Duration]) -> JwksCache {
        JwksCache {
            sources: refresh_intervals
                .iter()
                .map(|d| SourceState {
                    keys: None,
                    refresh_interval: d.as_secs_f64().max(1.0),
                    next_fetch_at: 0.0,
                    in_flight_since: None,
                    last_unknown_key_refresh: None,
                    failures: 0,
                })
                .collect(),
        }
    }

    pub fn keys(&self, source: usize) -> Option<Arc<KeySet>> {
        self.sources.get(source).and_then(|s| s.keys.clone())
    }

    pub fn has_keys(&self, source: usize) -> bool {
        self.sources.get(source).is_some_and(|s| s.keys.is_some())
    }

    /// Sources to fetch now; each is marked in flight. A fetch in flight for
    /// longer than `FETCH_TIMEOUT` (its answer lost) counts as failed.
    pub fn due(&mut self, now: f64) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, s) in self.sources.iter_mut().enumerate() {
            if let Some(since) = s.in_flight_since {
                if now - since > FETCH_TIMEOUT.as_secs_f64() + 1.0 {
                    s.in_flight_since = None;
                    s.failures = s.failures.saturating_add(1);
                    s.next_fetch_at = now;
                } else {
                    continue;
                }
            }
            if now >= s.next_fetch_at {
                s.in_flight_since = Some(now);
                out.push(i);
            }
        }
        out
    }

    /// An answer arrived for `source`.
    pub fn on_response(
        &mut self,
        source: usize,
        status: u16,
        body: &[u8],
        now: f64,
    ) -> FetchResult {
        if status != 200 {
            return self.on_failure(source, format!("HTTP status {status}"), now);
        }
        if body.len() > MAX_JWKS_BYTES {
            return self.on_failure(
                source,
                format!("JWK Set larger than {MAX_JWKS_BYTES} bytes"),
                now,
            );
        }
        match KeySet::from_json(body) {
            Ok((set, warnings)) => {
                let Some(s) = self.sources.get_mut(source) else {
                    return FetchResult::Failed {
                        reason: "unknown source".to_string(),
                        kept_previous: false,
                    };
                };
                let keys = set.len();
                s.keys = Some(Arc::new(set));
                s.in_flight_since = None;
                s.failures = 0;
                s.next_fetch_at = now + s.refresh_interval;
                FetchResult::Loaded { keys, warnings }
            }
            Err(e) => self.on_failure(source, format!("not a JWK Set: {e}"), now),
        }
    }

    /// The fetch failed (no answer, refused, timed out, bad answer).
    pub fn on_failure(&mut self, source: usize, reason: String, now: f64) -> FetchResult {
        let Some(s) = self.sources.get_mut(source) else {
            return FetchResult::Failed {
                reason,
                kept_previous: false,
            };
        };
        s.in_flight_since = None;
        s.failures = s.failures.saturating_add(1);
        let exponent = s.failures.saturating_sub(1).min(8);
        let delay = (RETRY_MIN * f64::from(1u32 << exponent)).min(RETRY_MAX);
        s.next_fetch_at = now + delay.min(s.refresh_interval);
        FetchResult::Failed {
            reason,
            kept_previous: s.keys.is_some(),
        }
    }

    /// A token named a key the set lacks. Returns true when a fetch is in flight
    /// or has just been scheduled; false when rate-limited.
    pub fn request_refresh(&mut self, source: usize, now: f64) -> bool {
        let Some(s) = self.sources.get_mut(source) else {
            return false;
        };
        if s.in_flight_since.is_some() {
            return true;
        }
        if let Some(last) = s.last_unknown_key_refresh {
            if now - last < UNKNOWN_KEY_REFRESH_INTERVAL.as_secs_f64() {
                return false;
            }
        }
        s.last_unknown_key_refresh = Some(now);
        s.next_fetch_at = now;
        true
    }

    /// Whether a fetch for `source` is in flight or due (something to wait for).
    pub fn fetch_pending(&self, source: usize, now: f64) -> bool {
        self.sources
            .get(source)
            .is_some_and(|s| s.in_flight_since.is_some() || now >= s.next_fetch_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &[u8] = br#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}"#;

    #[test]
    fn every_source_is_due_at_start_and_not_twice() {
        let mut c = JwksCache::new(&[Duration::from_secs(300), Duration::from_secs(60)]);
        assert_eq!(c.due(0.0), vec![0, 1]);
        assert!(c.due(0.5).is_empty());
    }

    #[test]
    fn loaded_set_is_refreshed_after_the_interval() {
        let mut c = JwksCache::new(&[Duration::from_secs(300)]);
        c.due(0.0);
        assert!(matches!(
            c.on_response(0, 200, JWKS, 1.0),
            FetchResult::Loaded { keys: 1, .. }
        ));
        assert!(c.has_keys(0));
        assert!(c.due(100.0).is_empty());
        assert_eq!(c.due(301.0), vec![0]);
    }

    #[test]
    fn failure_keeps_last_good_set_and_retries_with_backoff() {
        let mut c = JwksCache::new(&[Duration::from_secs(300)]);
        c.due(0.0);
        c.on_response(0, 200, JWKS, 0.0);
        c.due(300.0);
        let r = c.on_response(0, 500, b"", 300.0);
        assert_eq!(
            r,
            FetchResult::Failed {
                reason: "HTTP status 500".to_string(),
                kept_previous: true
            }
        );
        assert!(c.has_keys(0));
        assert!(c.due(300.5).is_empty());
        assert_eq!(c.due(301.0), vec![0]);
        c.on_response(0, 200, b"garbage", 301.0);
        assert!(c.due(302.5).is_empty());
        assert_eq!(c.due(303.0), vec![0]);
    }

    #[test]
    fn unknown_key_refresh_is_rate_limited() {
        let mut c = JwksCache::new(&[Duration::from_secs(300)]);
        c.due(0.0);
        c.on_response(0, 200, JWKS, 0.0);
        assert!(c.request_refresh(0, 5.0));
        assert_eq!(c.due(5.0), vec![0]);
        assert!(c.request_refresh(0, 5.1), "in flight: worth waiting");
        c.on_response(0, 200, JWKS, 5.2);
        assert!(!c.request_refresh(0, 6.0), "rate-limited");
        assert!(c.request_refresh(0, 16.0));
    }

    #[test]
    fn lost_answer_counts_as_failure() {
        let mut c = JwksCache::new(&[Duration::from_secs(300)]);
        assert_eq!(c.due(0.0), vec![0]);
        assert!(c.due(3.0).is_empty());
        assert_eq!(c.due(7.0), vec![0]);
    }

    #[test]
    fn oversized_document_is_refused() {
        let mut c = JwksCache::new(&[Duration::from_secs(300)]);
        c.due(0.0);
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert!(matches!(
            c.on_response(0, 200, &big, 0.0),
            FetchResult::Failed { .. }
        ));
    }
}
