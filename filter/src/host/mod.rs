//! The only modules that import `proxy_wasm`: the root context (configuration,
//! background fetches, parked requests) and the HTTP context (one request);
//! `abi` declares the host calls the SDK offers only with text header values.

mod abi;
mod decision_log;
pub mod http;
mod metrics;
pub mod root;
mod shared;
