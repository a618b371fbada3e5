//! What the host sends and receives for a filter that asks another service (an
//! External auth service, an OAuth2 IdP's token or UserInfo endpoint): the
//! [`Callout`], its [`CalloutAnswer`], their bounds, and the [`ShareKey`] that lets
//! callouts of the VMs of one Envoy share one answer. A leaf: the filters and
//! `shared_callout` import it, it imports none of them.

use sha2::{Digest, Sha256};
use std::time::Duration;

/// The largest answer body (HTTP) or message (gRPC) read from an auth service;
/// a larger one is an error. The host should read at most this many bytes.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The most headers an answer may carry; more is an error.
pub const MAX_ANSWER_HEADERS: usize = 128;

/// What the host sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutKind {
    Http {
        /// Includes `:method`, `:path`, `:authority`, `:scheme`. Values are
        /// bytes: a client's header passes to the auth service as it was sent.
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    },
    Grpc {
        /// `envoy.service.auth.v3.Authorization`
        service: String,
        /// `Check`
        method: String,
        /// The encoded `CheckRequest`.
        message: Vec<u8>,
        initial_metadata: Vec<(String, Vec<u8>)>,
    },
}

impl CalloutKind {
    /// An HTTP callout whose header values are all text (the IdP's token and
    /// userinfo requests).
    pub fn http_text(headers: Vec<(String, String)>, body: Vec<u8>) -> CalloutKind {
        CalloutKind::Http {
            headers: headers
                .into_iter()
                .map(|(n, v)| (n, v.into_bytes()))
                .collect(),
            body,
        }
    }
}

/// One call to the auth service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub cluster: String,
    pub kind: CalloutKind,
    pub timeout: Duration,
    /// Callouts with the same key share one answer across the VMs of one Envoy
    /// (an OAuth2 refresh: the requests of one session refresh it once, as an
    /// IdP that rotates refresh tokens requires); see [`crate::shared_callout`].
    pub share: Option<ShareKey>,
}

/// What came back from the auth service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutAnswer {
    Http {
        status: u16,
        /// Names lower-case; values as the service sent their bytes (a value
        /// with obs-text is copied upstream or to the client unchanged).
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    },
    Grpc {
        /// gRPC status, 0 = OK.
        status_code: u32,
        message: Vec<u8>,
    },
    /// No answer: timeout, connection refused/reset, Envoy refused the dispatch
    /// (unknown cluster), ...
    Failed { reason: String },
}

/// What identifies callouts that share one answer: a SHA-256 (truncated to 128
/// bits) of what makes them the same, e.g. the filter and the refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShareKey([u8; 16]);

impl ShareKey {
    /// The key of `parts`, each length-prefixed (so `["ab","c"]` ≠ `["a","bc"]`).
    pub fn of(parts: &[&[u8]]) -> ShareKey {
        let mut h = Sha256::new();
        for part in parts {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let digest = h.finalize();
        let mut key = [0u8; 16];
        for (k, d) in key.iter_mut().zip(digest.iter()) {
            *k = *d;
        }
        ShareKey(key)
    }

    /// The key's first two bytes, big-endian: where its slot is found.
    pub(crate) fn slot_bits(&self) -> u16 {
        u16::from_be_bytes([self.0[0], self.0[1]])
    }

    pub(crate) fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}
