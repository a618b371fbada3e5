//! Publishes a request's decision as Envoy filter state through the
//! Proxy-Wasm property API: `portcullis.decision`, `portcullis.filter`,
//! `portcullis.rule`, `portcullis.subject`, which Envoy names
//! `wasm.portcullis.*` (`%FILTER_STATE(wasm.portcullis.subject:PLAIN)%` in an
//! access log, `filter_state['wasm.portcullis.subject']` in RBAC's CEL).
//! One host call per value set; an unset value is not written.

use portcullis_core::decision::DecisionRecord;
use proxy_wasm::hostcalls;

/// Sets the filter state of `record` on the current request.
pub fn publish(record: &DecisionRecord<'_>) {
    set("portcullis.decision", Some(record.verdict.as_str()));
    set("portcullis.filter", record.filter);
    set("portcullis.rule", record.rule);
    set("portcullis.subject", record.subject);
}

fn set(name: &str, value: Option<&str>) {
    let Some(value) = value else {
        return;
    };
    if let Err(status) = hostcalls::set_property(vec![name], Some(value.as_bytes())) {
        log::debug!("could not set filter state {name}: {status:?}");
    }
}
