//! What the VM lends a journey (`portcullis_core::host::Host`): its JWK Sets,
//! token cache, Envoy's signature verifier, randomness, and per OAuth2 filter
//! a view of the IdP's documents and caches. The journey decides; this only
//! answers what the VM holds.

use super::vm_state::{fill_random, host_crypto_allowed, now, HostVerifier, VmState};
use portcullis_core::host::{Host, IdpView};
use portcullis_core::jwt::cache::TokenCache;
use portcullis_core::jwt::host_crypto::{probe, SignatureVerifier};
use portcullis_core::jwt::KeySet;
use std::cell::RefCell;
use std::sync::Arc;

impl Host for VmState {
    fn keys(&self, source: usize) -> Option<Arc<KeySet>> {
        self.jwks.borrow().get(source)
    }

    fn refresh_for_unknown_key(&self, source: usize) -> bool {
        self.jwks.borrow_mut().request_refresh(source, now())
    }

    fn token_cache(&self) -> Option<&RefCell<TokenCache>> {
        Some(&self.token_cache)
    }

    fn signature_verifier(&self) -> Option<&dyn SignatureVerifier> {
        let usable = match self.host_crypto.get() {
            Some(known) => known,
            None => {
                let usable = host_crypto_allowed() && probe(&HostVerifier);
                if usable {
                    log::info!("signatures (RS*, ES*) are checked by Envoy's verify_signature");
                } else {
                    log::info!("signatures are checked in Wasm (host verify_signature unavailable or switched off)");
                }
                self.host_crypto.set(Some(usable));
                usable
            }
        };
        usable.then_some(&HostVerifier as &dyn SignatureVerifier)
    }

    fn fill_random(&self, buf: &mut [u8]) -> bool {
        fill_random(buf);
        true
    }

    fn idp(&self, filter: usize) -> Option<IdpView<'_>> {
        let slot = self.idp_slot(filter);
        let (discovery, keys) = self.idp_documents(slot.as_ref());
        Some(IdpView {
            discovery,
            keys,
            keys_source: slot.and_then(|s| s.jwks),
            userinfo: self.userinfo.get(&filter),
            session_cache: Some(&self.session_cache),
        })
    }
}
