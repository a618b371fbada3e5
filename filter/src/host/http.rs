//! HttpContext: one request. Reads what the pipeline needs from Envoy, runs the
//! journey, and carries out its steps (see `shared::advance`).

use super::metrics::Metric;
use super::shared::{
    add_response_headers, advance, callout_answered, now, read_grpc_answer, read_http_answer,
    read_lean_request, read_request, BodyCapture, Pending, Shared, Site, Wait,
};
use portcullis_core::mtls::peer_certificate_sans;
use portcullis_core::pipeline::{Journey, ResponseStep, Step};
use portcullis_core::request::TlsInfo;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
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
    /// The most body bytes any External filter of this request's rule may need,
    /// plus one (so "larger than max_bytes" can be seen); 0 when none does.
    body_cap: usize,
}

impl Http {
    /// A journey waiting for its body (`Wait::Body`) gets what was captured
    /// and runs on; answers the callback's action.
    fn run_with_body(&self, shared: &Shared, mut pending: Pending) -> Action {
        if let Some(bytes) = pending.body.bytes.take() {
            pending.journey.provide_body(bytes, pending.body.complete);
        }
        // The check has its part: a pause from here on holds the rest under
        // flow control (this very body callback may carry past the buffer
        // limit).
        super::abi::hold_under_flow_control();
        let step = pending
            .journey
            .run(&shared.config, &mut pending.request, shared, now());
        advance(shared, self.site(false), pending, step)
    }

    pub fn new(context_id: u32, shared: Option<Rc<Shared>>) -> Http {
        Http {
            context_id,
            shared,
            body_cap: 0,
        }
    }

    fn site(&self, resume: bool) -> Site {
        Site {
            context_id: self.context_id,
            running: self.context_id,
            resume,
        }
    }
}

fn bypassed() -> bool {
    matches!(hostcalls::get_property(BYPASS_PROPERTY.to_vec()), Ok(Some(bytes)) if bytes.first() == Some(&1))
}

/// Removes every header a filter injects, where no filter runs: a client never
/// supplies one.
fn strip_injected(shared: &Shared) {
    for name in &shared.config.injected_names {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
    }
}

fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

fn property_string(path: &[&str]) -> Option<String> {
    property(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .filter(|s| !s.is_empty())
}

/// The client certificate Envoy verified. `connection.mtls` says a certificate
/// was presented; with a `validation_context` Envoy refuses the handshake for one
/// that does not verify, so presented means verified here (see docs/mtls.md).
/// Envoy's `*_san_peer_certificate` give only the first SAN of each kind, so all
/// of them are read from the certificate itself.
fn client_certificate() -> Option<TlsInfo> {
    if property(&["connection", "mtls"])?.first() != Some(&1) {
        return None;
    }
    let subject = property_string(&["connection", "subject_peer_certificate"]).unwrap_or_default();
    let sha256 =
        property_string(&["connection", "sha256_peer_certificate_digest"]).unwrap_or_default();
    let (dns_sans, uri_sans) = property_string(&["connection", "peer_certificate"])
        .and_then(|pem| peer_certificate_sans(&pem))
        .unwrap_or_else(|| {
            (
                property_string(&["connection", "dns_san_peer_certificate"])
                    .into_iter()
                    .collect(),
                property_string(&["connection", "uri_san_peer_certificate"])
                    .into_iter()
                    .collect(),
            )
        });
    Some(TlsInfo {
        verified: true,
        subject,
        dns_sans,
        uri_sans,
        sha256,
    })
}

/// A connection property as text (`source.address`, ...), empty when unknown.
fn property_text(path: &[&str]) -> String {
    match hostcalls::get_property(path.to_vec()) {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(shared) = self.shared.clone() {
            callout_answered(&shared, self.context_id, token_id, || {
                read_http_answer(body_size)
            });
        }
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if let Some(shared) = self.shared.clone() {
            callout_answered(&shared, self.context_id, token_id, || {
                read_grpc_answer(status_code, response_size)
            });
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "test-crash")]
        crate::test_crash::on_request_headers();
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        if shared.config.rules.is_empty() {
            return Action::Continue;
        }
        // The few headers a lean configuration needs, or all of them.
        let mut request = match &shared.config.lean_headers {
            Some(names) => read_lean_request(names),
            None => read_request(),
        };
        let mut journey = Journey::new(&shared.config, &request);
        if journey.passes_untouched() {
            shared.metrics.count(&shared.config, Metric::NoRule);
            strip_injected(&shared);
            return Action::Continue;
        }
        // Route metadata is read only where a rule applies.
        if bypassed() {
            shared.metrics.count(&shared.config, Metric::Bypassed);
            strip_injected(&shared);
            return Action::Continue;
        }
        if shared.config.reads_tls {
            request.tls = client_certificate();
        }
        if journey.needs_connection_facts(&shared.config) {
            request.source_address = property_text(&["source", "address"]);
            request.destination_address = property_text(&["destination", "address"]);
            request.protocol = property_text(&["request", "protocol"]);
        }
        self.body_cap = journey.body_cap(&shared.config, &request);
        let body = if end_of_stream {
            BodyCapture {
                bytes: Some(Vec::new()),
                complete: true,
            }
        } else {
            BodyCapture::default()
        };
        let step = journey.run(&shared.config, &mut request, shared.as_ref(), now());
        if let Step::Continue(changes) = &step {
            // The common case: decided at once, nothing kept.
            let outcomes = journey.take_outcomes();
            super::decision_log::log_decision(
                &shared.config,
                &request,
                journey.rule_index(),
                &outcomes,
                None,
            );
            shared.metrics.outcomes(&shared.config, &outcomes);
            super::shared::keep_response_headers(&shared, self.context_id, &mut journey);
            super::shared::apply_changes(changes);
            return Action::Continue;
        }
        let pending = Pending {
            journey,
            request,
            wait: Wait::Callout { since: 0.0 },
            body,
        };
        advance(&shared, self.site(false), pending, step)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        let Some(mut pending) = shared.pending.borrow_mut().remove(&self.context_id) else {
            return Action::Continue; // decided already
        };
        super::shared::headers_pause_honoured(&shared, &mut pending);
        if self.body_cap > 0
            && pending.body.bytes.is_none()
            && (end_of_stream || body_size >= self.body_cap)
        {
            let take = body_size.min(self.body_cap);
            let bytes = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, take)
                .ok()
                .flatten()
                .unwrap_or_default();
            pending.body = BodyCapture {
                complete: end_of_stream && body_size < self.body_cap,
                bytes: Some(bytes),
            };
        }
        if matches!(pending.wait, Wait::Body { .. }) && pending.body.bytes.is_some() {
            return self.run_with_body(&shared, pending);
        }
        // Still waiting (keys, a callout, more body): Envoy keeps the body.
        // Once the check has the part it reads, the rest is only held for the
        // upstream: under flow control, so a large upload waits for the
        // decision instead of meeting Envoy's 413 at its buffer limit.
        if pending.journey.has_body() {
            super::abi::hold_under_flow_control();
        }
        shared.pending.borrow_mut().insert(self.context_id, pending);
        Action::Pause
    }

    /// The stream ends with trailers (HTTP/2, HTTP/3): the body buffered so
    /// far is the whole of it, though no body callback said so. A request
    /// waiting for its body goes on as at the end of the stream; without this
    /// the trailers would release the held body to the upstream unchecked.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        let Some(mut pending) = shared.pending.borrow_mut().remove(&self.context_id) else {
            return Action::Continue; // decided already
        };
        super::shared::headers_pause_honoured(&shared, &mut pending);
        if self.body_cap > 0 && pending.body.bytes.is_none() {
            let bytes = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, self.body_cap)
                .ok()
                .flatten()
                .unwrap_or_default();
            pending.body = BodyCapture {
                complete: bytes.len() < self.body_cap,
                bytes: Some(bytes),
            };
        }
        if matches!(pending.wait, Wait::Body { .. }) && pending.body.bytes.is_some() {
            return self.run_with_body(&shared, pending);
        }
        // Still waiting (keys, a callout): the trailers wait too.
        shared.pending.borrow_mut().insert(self.context_id, pending);
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        // The upstream answered a request whose check has not decided (its
        // headers went before the body): the core says whether the answer waits
        // for the check, or the check can no longer be made. Pausing here holds
        // the headers and, under Envoy's flow control, the body (Proxy-Wasm's
        // pause is StopAllIterationAndWatermark); `advance` releases it on allow.
        // A denial replaces it: Envoy sends a local reply straight to the client
        // when the response has started but not left.
        let held = shared
            .pending
            .borrow_mut()
            .get_mut(&self.context_id)
            .map(|p| p.journey.on_response_headers(&shared.config));
        match held {
            Some(ResponseStep::Hold) => {
                shared.metrics.count(&shared.config, Metric::ResponseHeld);
                if let Some(p) = shared.pending.borrow().get(&self.context_id) {
                    log::debug!(
                        "{} {}{}: the upstream answered before the check decided; its answer is held",
                        p.request.method,
                        p.request.authority,
                        p.request.path_only()
                    );
                }
                return Action::Pause;
            }
            Some(ResponseStep::Respond(response)) => {
                let pending = shared.pending.borrow_mut().remove(&self.context_id);
                if let Some(pending) = pending {
                    log::info!(
                        "{} {}{}: the upstream answered before the request body the check needs arrived; answering {}",
                        pending.request.method,
                        pending.request.authority,
                        pending.request.path_only(),
                        response.status
                    );
                    return advance(&shared, self.site(false), pending, Step::Respond(response));
                }
            }
            Some(ResponseStep::Pass) | None => {}
        }
        let headers = shared
            .response_headers
            .borrow_mut()
            .remove(&self.context_id);
        add_response_headers(headers.unwrap_or_default());
        Action::Continue
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            if let Ok(mut pending) = shared.pending.try_borrow_mut() {
                pending.remove(&self.context_id);
            }
            if let Ok(mut headers) = shared.response_headers.try_borrow_mut() {
                headers.remove(&self.context_id);
            }
        }
    }
}
