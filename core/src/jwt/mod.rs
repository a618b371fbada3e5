//! JSON Web Tokens: keys (JWK Sets), signature and claim checks, and the JWT
//! filter's request handling (token extraction, RFC 6750 answers).
//!
//! `keys` and `verify` are pure token logic; `filter` applies a configured JWT
//! filter to one request.

pub mod binding;
pub mod cache;
pub mod extract;
pub mod filter;
pub mod host_crypto;
pub mod jwks_cache;
pub mod keys;
pub mod spec;
pub mod verify;

pub use keys::{Algorithm, KeySet};
pub use verify::{verify_token, ClaimPolicy, TokenError, VerifiedToken};
