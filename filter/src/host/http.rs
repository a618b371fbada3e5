//! HttpContext: one request. Reads what the pipeline needs from Envoy, runs the
//! journey, and carries out its step.

use super::shared::{carry_out, now, Shared};
use portcullis_core::pipeline::Journey;
use portcullis_core::request::Request;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::rc::Rc;

/// Route metadata that switches Portcullis off for a route (Emissary `bypass_auth`).
const BYPASS_PROPERTY: [&str; 5] = [
    "xds",
    "route_metadata",
    "filter_metadata",
    "portcullis",
    "bypass_auth",
];

pub struct Http {
    context_id: u32,
    shared: Option<Rc<Shared>>,
}

impl Http {
    pub fn new(context_id: u32, shared: Option<Rc<Shared>>) -> Http {
        Http { context_id, shared }
    }
}

fn bypassed() -> bool {
    matches!(hostcalls::get_property(BYPASS_PROPERTY.to_vec()), Ok(Some(bytes)) if bytes.first() == Some(&1))
}

/// The request headers, pseudo-headers included. Values that are not UTF-8 are
/// converted lossily (the SDK's string accessor would panic on them).
fn request_header_pairs() -> Vec<(String, String)> {
    match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
        Ok(pairs) => pairs
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        if shared.config.rules.is_empty() || bypassed() {
            return Action::Continue;
        }
        let mut request = Request::from_header_pairs(request_header_pairs());
        let mut journey = Journey::new(&shared.config, &request);
        if journey.rule().is_none() {
            return Action::Continue;
        }
        let step = journey.run(&shared.config, &mut request, shared.as_ref(), now());
        carry_out(&shared, self.context_id, step, journey, request, false)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            if let Ok(mut parked) = shared.parked.try_borrow_mut() {
                parked.remove(&self.context_id);
            }
        }
    }
}
