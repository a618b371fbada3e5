//! The remote JWK Sets of a configuration, kept by the generic background
//! `DocumentCache` (fetch schedule, last good set, forced refresh on unknown `kid`).

use super::keys::KeySet;
use crate::fetch::{Document, DocumentCache};

pub use crate::fetch::{
    FetchResult, FETCH_TIMEOUT, FORCED_REFRESH_INTERVAL as UNKNOWN_KEY_REFRESH_INTERVAL,
};

/// Largest JWK Set document accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

impl Document for KeySet {
    const MAX_BYTES: usize = MAX_JWKS_BYTES;

    fn parse(bytes: &[u8]) -> Result<(Self, Vec<String>), String> {
        KeySet::from_json(bytes).map_err(|e| format!("not a JWK Set: {e}"))
    }

    fn summary(&self) -> String {
        format!("{} keys", self.len())
    }
}

/// The remote JWK Sets, by source index.
pub type JwksCache = DocumentCache<KeySet>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
            FetchResult::Loaded { .. }
        ));
        assert!(c.has(0));
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
        assert!(c.has(0));
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
