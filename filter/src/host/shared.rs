//! State the root context and the HTTP contexts of one VM share (one thread, so
//! `Rc<RefCell<…>>`), and the code both use to carry out a pipeline step.

use portcullis_core::config::Config;
use portcullis_core::jwt::jwks_cache::JwksCache;
use portcullis_core::jwt::KeySet;
use portcullis_core::pipeline::{Journey, KeyProvider, Step};
use portcullis_core::request::Request;
use portcullis_core::response::HeaderChange;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, MapType};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// How long a request waits for a JWK Set that has not loaded yet.
pub const KEY_WAIT: Duration = Duration::from_secs(3);
/// At most this many requests wait at once per VM; more get the timeout answer.
pub const MAX_WAITING: usize = 4096;

/// A request paused until a JWK Set loads.
pub struct Parked {
    pub journey: Journey,
    pub request: Request,
    pub source: usize,
    pub deadline: f64,
}

/// What the VM's contexts share.
pub struct Shared {
    pub config: Rc<Config>,
    pub jwks: RefCell<JwksCache>,
    pub parked: RefCell<BTreeMap<u32, Parked>>,
}

impl KeyProvider for Shared {
    fn keys(&self, source: usize) -> Option<Arc<KeySet>> {
        self.jwks.borrow().keys(source)
    }

    fn refresh_for_unknown_key(&self, source: usize) -> bool {
        self.jwks.borrow_mut().request_refresh(source, now())
    }
}

/// The host's clock as Unix seconds.
pub fn now() -> f64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Applies header changes to the current request.
pub fn apply_changes(changes: &[HeaderChange]) {
    for change in changes {
        if let Err(status) = hostcalls::set_map_value(
            MapType::HttpRequestHeaders,
            &change.name,
            change.value.as_deref(),
        ) {
            log::warn!(
                "could not change request header {}: {status:?}",
                change.name
            );
        }
    }
}

/// Carries out a step for the current (effective) HTTP context. `resumed` is true
/// when the request was paused before, so it must be resumed explicitly.
pub fn carry_out(
    shared: &Shared,
    context_id: u32,
    step: Step,
    journey: Journey,
    request: Request,
    resumed: bool,
) -> Action {
    match step {
        Step::Continue(changes) => {
            apply_changes(&changes);
            if resumed {
                if let Err(status) = hostcalls::resume_http_request() {
                    log::warn!("could not resume request: {status:?}");
                }
            }
            Action::Continue
        }
        Step::Respond(response) => {
            let headers: Vec<(&str, &str)> = response
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            if let Err(status) =
                hostcalls::send_http_response(response.status as u32, headers, Some(&response.body))
            {
                log::warn!("could not send response: {status:?}");
            }
            Action::Pause
        }
        Step::WaitForKeys { source } => {
            let mut parked = shared.parked.borrow_mut();
            if parked.len() >= MAX_WAITING {
                drop(parked);
                let mut journey = journey;
                let mut request = request;
                let now = now();
                // Too many waiting already: answer as if the wait timed out.
                let step = journey.keys_timed_out(&shared.config, &mut request, shared, now);
                let step = match step {
                    Step::WaitForKeys { .. } => {
                        Step::Respond(portcullis_core::response::Response::json_error(
                            503,
                            "JWT keys are not available yet",
                        ))
                    }
                    other => other,
                };
                return carry_out(shared, context_id, step, journey, request, resumed);
            }
            parked.insert(
                context_id,
                Parked {
                    journey,
                    request,
                    source,
                    deadline: now() + KEY_WAIT.as_secs_f64(),
                },
            );
            Action::Pause
        }
    }
}

/// Runs a parked request again (keys arrived, or its wait ended) in its own context.
pub fn wake(shared: &Rc<Shared>, context_id: u32, timed_out: bool) {
    let Some(mut parked) = shared.parked.borrow_mut().remove(&context_id) else {
        return;
    };
    if hostcalls::set_effective_context(context_id).is_err() {
        // The request is gone.
        return;
    }
    let now = now();
    let step = if timed_out {
        parked
            .journey
            .keys_timed_out(&shared.config, &mut parked.request, shared.as_ref(), now)
    } else {
        parked
            .journey
            .run(&shared.config, &mut parked.request, shared.as_ref(), now)
    };
    carry_out(
        shared,
        context_id,
        step,
        parked.journey,
        parked.request,
        true,
    );
}
