//! One callout per key across the Wasm VMs of one Envoy.
//!
//! Envoy runs one Wasm VM per worker thread, and the VMs share nothing but the
//! host's shared data (a key → bytes map with compare-and-swap, proxy-wasm
//! `get_shared_data`/`set_shared_data`). Some callouts must happen once per
//! Envoy whatever worker a request lands on and whenever it comes: an OAuth2
//! refresh (RFC 6749 §6), because the IdPs users have rotate refresh tokens and
//! revoke the whole grant when a spent one comes back (OAuth 2.0 Security BCP
//! §4.14.2). A callout that may be shared carries a [`ShareKey`]; this module
//! decides, from the bytes of the key's slot, what a VM does with it:
//!
//! - no live entry: **claim** it (the host writes [`Consult::Claim`]'s bytes
//!   with compare-and-swap, then sends the callout; a CAS mismatch means another
//!   VM wrote first: read again and consult again);
//! - an entry in flight (claimed less than [`CLAIM_STALE`] ago): **wait** for its
//!   answer (the host polls the slot on its tick and wakes the request);
//! - an answer: **use** it. An answer stays [`ANSWER_GRACE`] (a failure only
//!   [`FAILURE_HOLD`]), so a late request that still carries the key (a cookie
//!   from before a refresh) gets the same answer instead of a second callout.
//!
//! The ledger is a fixed number of slots (shared-data keys, which Envoy never
//! deletes), each at most [`SLOT_BYTES`]: count and bytes are bounded by the
//! budget given to [`SharedCallouts::with_budget`] (a share of `cacheBudget`).
//! A slot over its bytes drops its oldest entries first. Stored answers keep the
//! status and body of an HTTP answer (headers are not kept), or the reason of a
//! failure. A slot that does not decode (another version) counts as empty.

pub use crate::callout::ShareKey;
use crate::callout::{CalloutAnswer, MAX_ANSWER_BYTES};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// How long an answer is kept for late requests with the same key (seconds).
pub const ANSWER_GRACE: f64 = 60.0;
/// How long a failed callout (no answer, 5xx) is kept: the requests waiting for
/// it share the failure, and a request after that tries again (seconds).
pub const FAILURE_HOLD: f64 = 2.0;
/// A claim older than this (seconds) is taken over: its VM went away without
/// answering (callouts time out well before, at most 5 s).
pub const CLAIM_STALE: f64 = 15.0;
/// The most bytes one slot holds: two of the largest answers, base64-encoded,
/// and their entries.
pub const SLOT_BYTES: usize = MAX_ANSWER_BYTES.div_ceil(3) * 4 * 2 + 1024;
/// The most slots, whatever the budget.
pub const MAX_SLOTS: usize = 4096;
/// The shared-data key of slot `n` is this prefix and `n`.
pub const SLOT_PREFIX: &str = "portcullis.shared_callout.v1.";

/// What a VM does with a shared callout, from its slot's current bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consult {
    /// Another request's answer: use it, send nothing. An HTTP answer has
    /// only an `Age` header (whole seconds since it came).
    Answered(CalloutAnswer),
    /// Another request's callout is in flight: wait for its answer.
    InFlight,
    /// Nobody has it: write these bytes to the slot (compare-and-swap), then
    /// send the callout and [`SharedCallouts::settle`] its answer.
    Claim(Vec<u8>),
}

/// The slots of one Envoy's shared callouts (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedCallouts {
    slots: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Slot {
    #[serde(rename = "e", default)]
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// The share key, hex.
    #[serde(rename = "k")]
    key: String,
    /// When it was claimed, or answered (Unix seconds).
    #[serde(rename = "t")]
    at: f64,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    answer: Option<Stored>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    /// The HTTP status; 0 for no answer (then `body` is the reason).
    #[serde(rename = "s")]
    status: u16,
    /// The body, base64 (the reason as text when `status` is 0).
    #[serde(rename = "b")]
    body: String,
}

impl Stored {
    fn of(answer: &CalloutAnswer) -> Stored {
        match answer {
            CalloutAnswer::Http { status, body, .. } => Stored {
                status: *status,
                body: STANDARD.encode(body),
            },
            CalloutAnswer::Grpc { status_code, .. } => Stored {
                status: 0,
                body: format!("gRPC status {status_code}"),
            },
            CalloutAnswer::Failed { reason } => Stored {
                status: 0,
                body: reason.clone(),
            },
        }
    }

    /// The answer as kept, `age` seconds after it came: an HTTP answer
    /// carries its age in an `Age` header (RFC 9111 §5.1), so that what it
    /// says relative to its arrival (`expires_in`) is read as of then.
    fn answer(&self, age: f64) -> CalloutAnswer {
        if self.status == 0 {
            return CalloutAnswer::Failed {
                reason: self.body.clone(),
            };
        }
        match STANDARD.decode(&self.body) {
            Ok(body) => CalloutAnswer::Http {
                status: self.status,
                headers: vec![(
                    "age".to_string(),
                    format!("{}", age.max(0.0) as u64).into_bytes(),
                )],
                body,
            },
            Err(_) => CalloutAnswer::Failed {
                reason: "a shared answer did not decode".to_string(),
            },
        }
    }

    /// A failure is kept only briefly; an answer (even a refusal) for the grace.
    fn hold(&self) -> f64 {
        if self.status == 0 || self.status >= 500 {
            FAILURE_HOLD
        } else {
            ANSWER_GRACE
        }
    }
}

impl Entry {
    fn live(&self, now: f64) -> bool {
        let age = now - self.at;
        match &self.answer {
            Some(stored) => age < stored.hold(),
            None => age < CLAIM_STALE,
        }
    }
}

impl Slot {
    fn decode(bytes: Option<&[u8]>) -> Slot {
        bytes
            .filter(|b| !b.is_empty())
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default()
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Drops dead entries and the one for `key`, then adds `entry` and drops the
    /// oldest others until the slot fits in [`SLOT_BYTES`].
    fn put(mut self, entry: Entry, now: f64) -> Vec<u8> {
        self.entries.retain(|e| e.key != entry.key && e.live(now));
        self.entries.push(entry);
        loop {
            let bytes = self.encode();
            if bytes.len() <= SLOT_BYTES || self.entries.len() <= 1 {
                return bytes;
            }
            // The new entry is last; the oldest of the others goes.
            let others = self.entries.len() - 1;
            let oldest = self
                .entries
                .iter()
                .take(others)
                .enumerate()
                .min_by(|a, b| a.1.at.total_cmp(&b.1.at))
                .map(|(i, _)| i)
                .unwrap_or(0);
            self.entries.remove(oldest);
        }
    }
}

impl SharedCallouts {
    /// A ledger of at most `budget` bytes (at least one slot).
    pub fn with_budget(budget: usize) -> SharedCallouts {
        SharedCallouts {
            slots: (budget / SLOT_BYTES).clamp(1, MAX_SLOTS),
        }
    }

    /// How many slots (shared-data keys) the ledger uses.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The most bytes the ledger holds in the host's shared data.
    pub fn max_bytes(&self) -> usize {
        self.slots.saturating_mul(SLOT_BYTES)
    }

    /// The shared-data key of `key`'s slot.
    pub fn slot_name(&self, key: &ShareKey) -> String {
        let n = key.slot_bits() as usize % self.slots.max(1);
        self.slot_name_of(n)
    }

    /// The shared-data key of slot `n` (`0..slots()`).
    pub fn slot_name_of(&self, n: usize) -> String {
        format!("{SLOT_PREFIX}{n}")
    }

    /// What to do with a callout of `key`, given its slot's bytes (`None`: the
    /// slot was never written).
    pub fn consult(&self, slot: Option<&[u8]>, key: &ShareKey, now: f64) -> Consult {
        let slot = Slot::decode(slot);
        let hex = key.hex();
        match slot.entries.iter().find(|e| e.key == hex && e.live(now)) {
            Some(Entry {
                answer: Some(stored),
                at,
                ..
            }) => Consult::Answered(stored.answer(now - at)),
            Some(_) => Consult::InFlight,
            None => Consult::Claim(slot.put(
                Entry {
                    key: hex,
                    at: now,
                    answer: None,
                },
                now,
            )),
        }
    }

    /// The slot's new bytes with the answer to `key`'s callout kept (the claim
    /// replaced).
    pub fn settle(
        &self,
        slot: Option<&[u8]>,
        key: &ShareKey,
        answer: &CalloutAnswer,
        now: f64,
    ) -> Vec<u8> {
        Slot::decode(slot).put(
            Entry {
                key: key.hex(),
                at: now,
                answer: Some(Stored::of(answer)),
            },
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ShareKey {
        ShareKey::of(&[b"refresh", s.as_bytes()])
    }

    fn ok(body: &str) -> CalloutAnswer {
        CalloutAnswer::Http {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    fn claim(ledger: &SharedCallouts, slot: Option<&[u8]>, k: &ShareKey, now: f64) -> Vec<u8> {
        match ledger.consult(slot, k, now) {
            Consult::Claim(bytes) => bytes,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    #[test]
    fn the_first_claims_the_others_wait_then_share_the_answer() {
        let l = SharedCallouts::with_budget(1 << 20);
        let k = key("rt-1");
        let slot = claim(&l, None, &k, 100.0);
        assert_eq!(l.consult(Some(&slot), &k, 100.5), Consult::InFlight);
        let slot = l.settle(Some(&slot), &k, &ok("{\"access_token\":\"a\"}"), 101.0);
        let shared = |age: &str| CalloutAnswer::Http {
            status: 200,
            headers: vec![("age".to_string(), age.into())],
            body: b"{\"access_token\":\"a\"}".to_vec(),
        };
        assert_eq!(
            l.consult(Some(&slot), &k, 101.0),
            Consult::Answered(shared("0"))
        );
        // A late request within the grace gets the same answer, with its age...
        assert_eq!(
            l.consult(Some(&slot), &k, 101.0 + ANSWER_GRACE - 0.1),
            Consult::Answered(shared("59"))
        );
        // ...and just past it claims again.
        claim(&l, Some(&slot), &k, 101.0 + ANSWER_GRACE + 0.1);
    }

    #[test]
    fn keys_never_mix() {
        let l = SharedCallouts::with_budget(SLOT_BYTES); // one slot: both keys in it
        let (a, b) = (key("a"), key("b"));
        assert_eq!(l.slot_name(&a), l.slot_name(&b));
        let slot = claim(&l, None, &a, 1.0);
        let slot = claim(&l, Some(&slot), &b, 1.0);
        let slot = l.settle(Some(&slot), &a, &ok("A"), 2.0);
        assert!(
            matches!(l.consult(Some(&slot), &a, 2.0), Consult::Answered(CalloutAnswer::Http { body, .. }) if body == b"A")
        );
        assert_eq!(l.consult(Some(&slot), &b, 2.0), Consult::InFlight);
        assert_ne!(key("a"), ShareKey::of(&[b"refres", b"ha"]));
    }

    #[test]
    fn a_stale_claim_is_taken_over() {
        let l = SharedCallouts::with_budget(1 << 20);
        let k = key("rt");
        let slot = claim(&l, None, &k, 10.0);
        assert_eq!(
            l.consult(Some(&slot), &k, 10.0 + CLAIM_STALE - 0.1),
            Consult::InFlight
        );
        claim(&l, Some(&slot), &k, 10.0 + CLAIM_STALE + 0.1);
    }

    #[test]
    fn failures_are_shared_briefly_refusals_for_the_grace() {
        let l = SharedCallouts::with_budget(1 << 20);
        let k = key("rt");
        let failed = CalloutAnswer::Failed {
            reason: "timeout".into(),
        };
        let slot = l.settle(None, &k, &failed, 0.0);
        assert_eq!(l.consult(Some(&slot), &k, 1.0), Consult::Answered(failed));
        claim(&l, Some(&slot), &k, FAILURE_HOLD + 0.1);
        let down = CalloutAnswer::Http {
            status: 503,
            headers: vec![],
            body: vec![],
        };
        let slot = l.settle(None, &k, &down, 0.0);
        claim(&l, Some(&slot), &k, FAILURE_HOLD + 0.1);
        let refused = CalloutAnswer::Http {
            status: 400,
            headers: vec![],
            body: b"{\"error\":\"invalid_grant\"}".to_vec(),
        };
        let slot = l.settle(None, &k, &refused, 0.0);
        let aged = CalloutAnswer::Http {
            status: 400,
            headers: vec![("age".into(), "30".into())],
            body: b"{\"error\":\"invalid_grant\"}".to_vec(),
        };
        assert_eq!(l.consult(Some(&slot), &k, 30.0), Consult::Answered(aged));
    }

    #[test]
    fn a_slot_stays_within_its_bytes_dropping_the_oldest() {
        let l = SharedCallouts::with_budget(SLOT_BYTES);
        let big = "x".repeat(MAX_ANSWER_BYTES);
        let mut slot: Option<Vec<u8>> = None;
        for i in 0..5 {
            let bytes = l.settle(slot.as_deref(), &key(&i.to_string()), &ok(&big), i as f64);
            assert!(bytes.len() <= SLOT_BYTES, "slot of {} bytes", bytes.len());
            slot = Some(bytes);
        }
        // The two newest are kept, the oldest went.
        assert!(matches!(
            l.consult(slot.as_deref(), &key("4"), 5.0),
            Consult::Answered(_)
        ));
        assert!(matches!(
            l.consult(slot.as_deref(), &key("3"), 5.0),
            Consult::Answered(_)
        ));
        assert!(matches!(
            l.consult(slot.as_deref(), &key("0"), 5.0),
            Consult::Claim(_)
        ));
    }

    #[test]
    fn garbage_in_a_slot_counts_as_empty() {
        let l = SharedCallouts::with_budget(1 << 20);
        for junk in [&b""[..], b"not json", b"{\"e\":7}", b"\xff\xfe"] {
            claim(&l, Some(junk), &key("k"), 1.0);
        }
    }

    #[test]
    fn the_budget_bounds_the_slots() {
        assert_eq!(SharedCallouts::with_budget(0).slots(), 1);
        assert_eq!(SharedCallouts::with_budget(SLOT_BYTES * 3 + 1).slots(), 3);
        assert_eq!(SharedCallouts::with_budget(usize::MAX).slots(), MAX_SLOTS);
        let l = SharedCallouts::with_budget(4 << 20);
        assert!(l.max_bytes() <= 4 << 20);
    }
}
