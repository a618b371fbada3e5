//! Portcullis core: every decision the plugin makes, as plain Rust.
//!
//! Nothing here talks to a proxy. Inputs are request headers, bytes and the time;
//! outputs are actions (continue with these header changes, answer with this
//! response, wait for keys). The `portcullis-filter` crate carries the actions out
//! inside Envoy; the tests here run natively.

pub mod apikey;
pub mod bytes;
pub mod callout;
pub mod compile;
pub mod condition;
pub mod config;
pub mod decision_log;
pub mod external;
pub mod fetch;
pub mod glob;
pub mod inject;
pub mod jwt;
pub mod mtls;
pub mod oauth2;
pub mod pipeline;
pub mod request;
pub mod response;
pub mod rules;
pub mod shared_callout;
pub mod template;
