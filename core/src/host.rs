//! What the host lends a journey (see [`Host`]): the keys and caches it holds,
//! its signature verifier, its randomness, and per OAuth2 filter a view of the
//! IdP's documents and caches ([`IdpView`]). The journey makes every decision
//! itself (`pipeline.rs` runs each filter, OAuth2's included); the host only
//! answers what it holds.

use crate::jwt::cache::TokenCache;
use crate::jwt::host_crypto::SignatureVerifier;
use crate::jwt::KeySet;
use crate::oauth2::discovery::Discovery;
use crate::oauth2::session::SessionCache;
use crate::oauth2::UserinfoCache;
use std::cell::RefCell;
use std::sync::Arc;

/// The host of a journey, as the journey asks it for what it holds.
pub trait Host {
    /// The current keys of remote JWK Set `source` (an index into
    /// `Config::jwks_sources`, then the sets discovery documents named), if
    /// it ever loaded.
    fn keys(&self, source: usize) -> Option<Arc<KeySet>>;

    /// A token named a key set `source` lacks. Returns true when a refresh is
    /// now under way (worth waiting for); false when rate-limited.
    fn refresh_for_unknown_key(&self, source: usize) -> bool;

    /// The host's signature verifier (Envoy's `verify_signature`), if it has one.
    fn signature_verifier(&self) -> Option<&dyn SignatureVerifier> {
        None
    }

    /// The VM's verified-token cache, if it keeps one.
    fn token_cache(&self) -> Option<&RefCell<TokenCache>> {
        None
    }

    /// Fills `buf` with cryptographically secure random bytes. Returns false
    /// when the host has no such source: an OAuth2 step that needed it is
    /// then refused (503), never answered with predictable state.
    fn fill_random(&self, _buf: &mut [u8]) -> bool {
        false
    }

    /// What the host holds of OAuth2 filter `filter`'s IdP (`filter` indexes
    /// `Config::filters`). `None`: a host without OAuth2 support (the filter
    /// then waits for its IdP once and answers 503).
    fn idp(&self, _filter: usize) -> Option<IdpView<'_>> {
        None
    }
}

/// The documents and caches a host holds for one OAuth2 filter's IdP.
#[derive(Default)]
pub struct IdpView<'a> {
    /// The IdP's discovery document (OIDC Discovery 1.0), once loaded.
    pub discovery: Option<Arc<Discovery>>,
    /// The JWK Set at the document's `jwks_uri`, once loaded.
    pub keys: Option<Arc<KeySet>>,
    /// The source of that set (as for [`Host::keys`]), once known: a token
    /// naming a `kid` it lacks asks for a refresh with
    /// [`Host::refresh_for_unknown_key`].
    pub keys_source: Option<usize>,
    /// The filter's remembered userinfo answers; the journey records each
    /// userinfo answer in it.
    pub userinfo: Option<&'a RefCell<UserinfoCache>>,
    /// The VM's opened sessions, if it keeps them.
    pub session_cache: Option<&'a RefCell<SessionCache>>,
}
