//! The decision log (`core::decision_log` writes the line): each denial at
//! `info`, each allowed request at `debug`, through Envoy's `wasm` log
//! component. The request id is Envoy's `x-request-id`, read from the host
//! when the journey did not fetch it (a lean request). The same decision goes
//! to Envoy's filter state for its access log (CONFIG.md, "Decisions visible
//! to Envoy"): `portcullis.decision` and `portcullis.filter` here;
//! `portcullis.rule` and `portcullis.subject` belong to the Authorization
//! filter's decision record.

use portcullis_core::config::Config;
use portcullis_core::decision_log::{denial_reason, without_credentials, DecisionLine};
use portcullis_core::pipeline::Outcome;
use portcullis_core::request::Request;
use portcullis_core::response::Response;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

/// Logs one decision: `response` is the denial sent, `None` for a request
/// forwarded. `rule` is the matched rule's index. The effective context must
/// be the request's.
pub fn log_decision(
    config: &Config,
    request: &Request,
    rule: Option<usize>,
    outcomes: &[(usize, Outcome)],
    response: Option<&Response>,
) {
    record_filter_state(config, outcomes, response.is_some());
    let level = if response.is_some() {
        log::Level::Info
    } else {
        log::Level::Debug
    };
    if !log::log_enabled!(level) {
        return;
    }
    let filter = outcomes.last().and_then(|(f, _)| config.filters.get(*f));
    let fetched = request
        .headers
        .get_all_bytes("x-request-id")
        .next()
        .map(<[u8]>::to_vec);
    let request_id = fetched.or_else(|| {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-request-id")
            .ok()
            .flatten()
    });
    let line = DecisionLine {
        denied: response.is_some(),
        filter: filter.map(|f| f.name.as_str()),
        filter_type: filter.map(|f| f.kind.type_name()),
        rule,
        status: response.map(|r| r.status),
        method: &request.method,
        authority: &request.authority,
        path: request.path_only(),
        request_id: request_id.as_deref(),
    };
    let reason = response.map(|r| {
        without_credentials(
            denial_reason(line.filter_type, r),
            request.headers_as_sent(),
        )
    });
    log::log!(level, "{}", line.format(reason.as_deref()));
}

/// Sets `portcullis.decision` (`allow` | `deny`) and `portcullis.filter` (the
/// filter that answered a denial, or the last that ran) as Envoy filter state,
/// which an access log prints as `%FILTER_STATE(wasm.portcullis.decision:PLAIN)%`.
/// Nothing is set for a request no filter decided.
fn record_filter_state(config: &Config, outcomes: &[(usize, Outcome)], denied: bool) {
    let Some(filter) = outcomes.last().and_then(|(f, _)| config.filters.get(*f)) else {
        return;
    };
    let decision: &[u8] = if denied { b"deny" } else { b"allow" };
    for (name, value) in [
        ("portcullis.decision", decision),
        ("portcullis.filter", filter.name.as_bytes()),
    ] {
        if let Err(status) = hostcalls::set_property(vec![name], Some(value)) {
            log::debug!("could not set filter state {name}: {status:?}");
        }
    }
}
