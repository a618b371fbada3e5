//! Documents fetched in the background (JWK Sets, OIDC discovery documents):
//! when to fetch each, what to keep.
//!
//! Sans-IO: the host asks `due` which sources to fetch now, performs the
//! callouts, and reports each answer with `on_response` / `on_failure`. The last
//! good document is kept when a fetch fails. A request that needs a fresher one
//! (a JWT naming an unknown key) may pull a refresh forward, at most once per
//! `FORCED_REFRESH_INTERVAL`.

use std::sync::Arc;
use std::time::Duration;

/// How long a fetch may take before it counts as failed.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Minimum time between two refreshes pulled forward by requests.
pub const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Retry delays after failures: first load retries fast, then backs off.
const RETRY_MIN: f64 = 1.0;
const RETRY_MAX: f64 = 30.0;

/// A document kind the cache can hold.
pub trait Document: Sized {
    /// Largest document accepted.
    const MAX_BYTES: usize;
    /// Parses a fetched body; the strings are warnings to log.
    fn parse(bytes: &[u8]) -> Result<(Self, Vec<String>), String>;
    /// A short description for the log (`3 keys`).
    fn summary(&self) -> String;
}

#[derive(Debug)]
struct SourceState<T> {
    value: Option<Arc<T>>,
    refresh_interval: f64,
    next_fetch_at: f64,
    in_flight_since: Option<f64>,
    last_forced_refresh: Option<f64>,
    failures: u32,
}

/// What a fetch result changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResult {
    /// A new document is in use.
    Loaded {
        summary: String,
        warnings: Vec<String>,
    },
    /// The fetch failed; the previous document (if any) stays.
    Failed { reason: String, kept_previous: bool },
}

/// All sources of one kind of document.
#[derive(Debug)]
pub struct DocumentCache<T> {
    sources: Vec<SourceState<T>>,
}

impl<T> Default for DocumentCache<T> {
    fn default() -> Self {
        DocumentCache {
            sources: Vec::new(),
        }
    }
}

impl<T: Document> DocumentCache<T> {
    /// One entry per source, each with its refresh interval; all due at once.
    pub fn new(refresh_intervals: &[Duration]) -> Self {
        let mut cache = DocumentCache::default();
        for interval in refresh_intervals {
            cache.add_source(*interval);
        }
        cache
    }

    /// Adds a source (due at once) and returns its index.
    pub fn add_source(&mut self, refresh_interval: Duration) -> usize {
        self.sources.push(SourceState {
            value: None,
            refresh_interval: refresh_interval.as_secs_f64().max(1.0),
            next_fetch_at: 0.0,
            in_flight_since: None,
            last_forced_refresh: None,
            failures: 0,
        });
        self.sources.len() - 1
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    pub fn get(&self, source: usize) -> Option<Arc<T>> {
        self.sources.get(source).and_then(|s| s.value.clone())
    }

    pub fn has(&self, source: usize) -> bool {
        self.sources.get(source).is_some_and(|s| s.value.is_some())
    }

    /// Whether a request needing `source` should wait for it: a fetch is in
    /// flight, or due now (none tried yet, or a refresh pulled forward). False
    /// after a failed fetch until its retry starts: a request is answered at
    /// once instead of being parked for a fetch nobody is making.
    pub fn awaiting(&self, source: usize, now: f64) -> bool {
        self.sources
            .get(source)
            .is_some_and(|s| s.in_flight_since.is_some() || now >= s.next_fetch_at)
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
        if body.len() > T::MAX_BYTES {
            return self.on_failure(
                source,
                format!("document larger than {} bytes", T::MAX_BYTES),
                now,
            );
        }
        self.on_document(source, T::parse(body), now)
    }

    /// A fetched document, parsed by the caller (who may check more than
    /// `Document::parse` does).
    pub fn on_document(
        &mut self,
        source: usize,
        parsed: Result<(T, Vec<String>), String>,
        now: f64,
    ) -> FetchResult {
        match parsed {
            Ok((value, warnings)) => {
                let Some(s) = self.sources.get_mut(source) else {
                    return FetchResult::Failed {
                        reason: "unknown source".to_string(),
                        kept_previous: false,
                    };
                };
                let summary = value.summary();
                s.value = Some(Arc::new(value));
                s.in_flight_since = None;
                s.failures = 0;
                s.next_fetch_at = now + s.refresh_interval;
                FetchResult::Loaded { summary, warnings }
            }
            Err(e) => self.on_failure(source, e, now),
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
            kept_previous: s.value.is_some(),
        }
    }

    /// A request needs a fresher document. Returns true when a fetch is in
    /// flight or has just been scheduled; false when rate-limited.
    pub fn request_refresh(&mut self, source: usize, now: f64) -> bool {
        let Some(s) = self.sources.get_mut(source) else {
            return false;
        };
        if s.in_flight_since.is_some() {
            return true;
        }
        if let Some(last) = s.last_forced_refresh {
            if now - last < FORCED_REFRESH_INTERVAL.as_secs_f64() {
                return false;
            }
        }
        s.last_forced_refresh = Some(now);
        s.next_fetch_at = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Doc;
    impl Document for Doc {
        const MAX_BYTES: usize = 16;
        fn parse(_: &[u8]) -> Result<(Self, Vec<String>), String> {
            Ok((Doc, Vec::new()))
        }
        fn summary(&self) -> String {
            String::new()
        }
    }

    #[test]
    fn requests_wait_only_while_a_fetch_is_due_or_in_flight() {
        let mut c: DocumentCache<Doc> = DocumentCache::new(&[Duration::from_secs(300)]);
        assert!(c.awaiting(0, 10.0), "never tried: the first fetch is due");
        assert_eq!(c.due(10.0), vec![0]);
        assert!(c.awaiting(0, 10.5), "in flight");
        c.on_failure(0, "refused".to_string(), 11.0);
        assert!(
            !c.awaiting(0, 11.0),
            "failed, retry not started: answer at once"
        );
        assert!(!c.awaiting(0, 11.9));
        assert!(c.awaiting(0, 12.0), "the retry is due");
        assert_eq!(c.due(12.0), vec![0]);
        assert!(c.awaiting(0, 12.1));
        c.on_response(0, 200, b"{}", 12.2);
        assert!(!c.awaiting(0, 13.0));
        assert!(c.request_refresh(0, 13.0));
        assert!(c.awaiting(0, 13.0), "a refresh pulled forward");
        assert!(!c.awaiting(1, 13.0), "no such source");
    }
}
