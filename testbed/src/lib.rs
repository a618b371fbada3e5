//! The real parts Portcullis is tested against, all in-process and bounded in time:
//!
//! - [`envoy`]: launches a real Envoy per test (own temp dir, ports bound to 0 and
//!   discovered through the admin API), killed on Drop.
//! - [`config`]: builds the usual Envoy configuration around the plugin.
//! - [`crash`]: the test-crash module (feature `test-crash`), for `FAIL_RELOAD`.
//! - [`authz`]: test auth services (Istio ext-authz sample, a gRPC ext_authz server) and
//!   Envoy's native ext_authz configured as Emissary does.
//! - [`client`]: a blocking HTTP/1.1 client sending exactly the headers given.
//! - [`servers`]: the echo upstream and a scripted server (JWKS, auth service, IdP).
//! - [`tls`]: test PKI (CA, server and client certificates), TLS listeners, HTTPS client.
//! - [`tokens`]: test keys (`testdata/keys`) and JWT minting for every algorithm.
//! - [`idp`]: a real OpenID Provider (`oidc-provider` on Node.js) and a headless login.
//! - [`quirky_idp`]: scripted IdPs with the quirks of Azure AD, Okta/Keycloak and Google.
//! - [`conformance_op`]: a scripted OpenID Provider for the OpenID Foundation's RP test
//!   plans (one issuer per test ID, correct or misbehaving as its test describes).
//! - [`browserless`]: an HTTP agent with a cookie jar that follows redirects and posts forms.
//! - [`soak`]: the bounded soak (`scripts/soak`, `tests/soak_short.rs`).
//! - [`browser`]: a real headless Chromium over WebDriver (chromedriver).

pub mod authz;
pub mod browser;
pub mod browserless;
pub mod client;
pub mod config;
pub mod conformance_op;
pub mod crash;
pub mod envoy;
mod http;
pub mod idp;
pub mod quirky_idp;
pub mod servers;
pub mod soak;
pub mod tls;
pub mod tokens;

pub use client::{request, Response};
pub use config::EnvoyConfig;
pub use envoy::Envoy;
pub use servers::{EchoUpstream, Echoed, Reply, ScriptedServer};

/// The fixture a test file's tests share, started once by `start`.
///
/// A `start` that panics is caught, so every test of the file fails at once with
/// its message (`<what> did not start: ...`) instead of each starting another
/// set of servers.
pub fn shared_fixture<T>(
    cell: &'static std::sync::OnceLock<Result<T, String>>,
    start: fn() -> T,
    what: &str,
) -> &'static T {
    let r = cell.get_or_init(|| {
        std::panic::catch_unwind(start).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "it panicked".into())
        })
    });
    match r {
        Ok(f) => f,
        Err(e) => panic!("{what} did not start: {e}"),
    }
}
