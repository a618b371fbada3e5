//! The decision log (`core::decision_log` writes the line): each denial at
//! `info`, each allowed request at `debug`, through Envoy's `wasm` log
//! component. The request id is Envoy's `x-request-id`, read from the host
//! when the journey did not fetch it (a lean request). The same decision goes
//! to Envoy's filter state for its access log (CONFIG.md, "Decisions visible
//! to Envoy") through `decision.rs`.

use portcullis_core::config::Config;
use portcullis_core::decision_log::{
    denial_reason, flow_answer_reason, without_credentials, DecisionLine,
};
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
    // An OAuth2 filter's own answer (a login started or completed, a logout)
    // says which.
    let flow = outcomes.iter().rev().find_map(|(_, o)| match o {
        Outcome::OAuth2(event) => flow_answer_reason(*event),
        _ => None,
    });
    let reason = response.map(|r| match flow {
        Some(words) => words.to_string(),
        None => without_credentials(
            denial_reason(line.filter_type, r),
            request.headers_as_sent(),
        ),
    });
    log::log!(level, "{}", line.format(reason.as_deref()));
}
