//! The step loop: `advance` carries out a journey's steps for a request from
//! whichever context is running, until it forwards, answers or must wait;
//! `wake` and `deliver` run a parked request on.
//!
//! A request that must wait (for a JWK Set, its body, or a callout) is parked
//! in `VmState::pending` under its context id. Callouts are owned by the
//! context that dispatches them: the HTTP context itself when the step comes
//! from one of its callbacks, the root context when a parked request is woken
//! from the root (the SDK delivers an answer to the context that was active at
//! dispatch).

use super::cross_vm::{claim_shared, set_fast_tick, settle_shared, shared_waiters, SharedTurn};
use super::io::{
    add_response_headers, apply_changes, dispatch_http_call_bytes, read_request, send,
};
use super::metrics::Metric;
use super::vm_state::{
    max_pending, now, HeadersPause, Pending, VmState, Wait, HEADERS_PAUSE_PROBE, KEY_WAIT,
};
use portcullis_core::callout::{Callout, CalloutAnswer, CalloutKind};
use portcullis_core::pipeline::{Journey, Step};
use portcullis_core::response::{HeaderChange, Response};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Action;

/// The most steps `advance` carries out for one request in one go.
const MAX_STEPS: usize = 32;

/// Where `advance` runs.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    /// The request's context.
    pub context_id: u32,
    /// The context whose callback is running (owns callouts dispatched now).
    pub running: u32,
    /// Envoy is paused on this request outside the running callback, so going on
    /// needs `resume_http_request` (false inside the request's own header/body
    /// callback, whose return value continues it).
    pub resume: bool,
}

/// What the loop does after one step: carry out the journey's next step for
/// the request, or return this action to Envoy (the request forwarded,
/// answered or parked).
enum Turn {
    Next(Box<Pending>, Step),
    Done(Action),
}

/// Carries out `step` for a request and keeps going until it forwards, answers
/// or must wait. The effective context must be the request's.
pub fn advance(vm: &VmState, site: Site, pending: Pending, mut step: Step) -> Action {
    let mut pending = Box::new(pending);
    let mut steps = 0usize;
    loop {
        steps = steps.saturating_add(1);
        if steps > MAX_STEPS {
            // Answers that keep asking for more (an IdP answering each refresh
            // with a token that is due already): never spin the VM.
            log::error!(
                "a request took more than {MAX_STEPS} steps without an answer; answering 503"
            );
            step = Step::Respond(Response::json_error(
                503,
                "the request could not be completed",
            ));
        }
        let turn = match step {
            Step::Continue(changes) => Turn::Done(forward(vm, site, &mut pending, &changes)),
            Step::Respond(response) => Turn::Done(answer(vm, &mut pending, &response)),
            Step::WaitForKeys { .. } | Step::WaitForIdp { .. } => {
                wait_for_documents(vm, site, pending, step)
            }
            Step::NeedFullRequest => {
                // A lean request the journey could not just pass: again, whole.
                let tls = pending.request.tls.take();
                let source = std::mem::take(&mut pending.request.source_address);
                pending.request = read_request();
                pending.request.tls = tls;
                pending.request.source_address = source;
                pending.journey = Journey::new(&vm.config, &pending.request);
                let next = pending
                    .journey
                    .run(&vm.config, &mut pending.request, vm, now());
                Turn::Next(pending, next)
            }
            Step::NeedBody { max_bytes } => match pending.body.bytes.take() {
                Some(bytes) => {
                    pending.journey.provide_body(bytes, pending.body.complete);
                    let next = pending
                        .journey
                        .run(&vm.config, &mut pending.request, vm, now());
                    Turn::Next(pending, next)
                }
                None => Turn::Done(wait_for_body(vm, site, pending, max_bytes)),
            },
            Step::Callout(callout) => call_out(vm, site, pending, callout),
        };
        match turn {
            Turn::Next(next_pending, next) => {
                pending = next_pending;
                step = next;
            }
            Turn::Done(action) => return action,
        }
    }
}

/// `Step::Continue`: the request goes upstream with the journey's changes
/// (or the held response goes on first).
fn forward(vm: &VmState, site: Site, pending: &mut Pending, changes: &[HeaderChange]) -> Action {
    super::decision::publish(&pending.journey.decision(&vm.config, None));
    let outcomes = pending.journey.take_outcomes();
    super::decision_log::log_decision(
        &vm.config,
        &pending.request,
        pending.journey.rule_index(),
        &outcomes,
        None,
    );
    vm.metrics.outcomes(&vm.config, &outcomes);
    apply_changes(changes);
    if pending.journey.response_held() {
        return release_held_response(site, &mut pending.journey);
    }
    keep_response_headers(vm, site.context_id, &mut pending.journey);
    if site.resume {
        resume_request();
    }
    Action::Continue
}

/// `Step::Respond`: the client gets `response`.
fn answer(vm: &VmState, pending: &mut Pending, response: &Response) -> Action {
    super::decision::publish(&pending.journey.decision(&vm.config, Some(response.status)));
    let outcomes = pending.journey.take_outcomes();
    super::decision_log::log_decision(
        &vm.config,
        &pending.request,
        pending.journey.rule_index(),
        &outcomes,
        Some(response),
    );
    vm.metrics.outcomes(&vm.config, &outcomes);
    send(response);
    Action::Pause
}

/// `Step::WaitForKeys` / `Step::WaitForIdp`: park the request until the
/// documents load or its wait ends. Only a fetch in flight (or due) is waited
/// for: after a failed one, the journey answers at once, as when the wait
/// times out; too many waiting already: the same.
fn wait_for_documents(vm: &VmState, site: Site, mut pending: Box<Pending>, step: Step) -> Turn {
    let awaited = match step {
        Step::WaitForKeys { source } => vm.keys_awaited(source),
        Step::WaitForIdp { filter } => vm.idp_awaited(filter),
        _ => false,
    };
    let parked = vm.pending.borrow().len();
    let deadline = now() + KEY_WAIT.as_secs_f64();
    match document_wait(&step, awaited, parked, max_pending(), deadline) {
        Some(wait) => {
            pending.wait = wait;
            Turn::Done(park(vm, site, *pending))
        }
        None => {
            let next = pending
                .journey
                .keys_timed_out(&vm.config, &mut pending.request, vm, now());
            Turn::Next(pending, unparked(next))
        }
    }
}

/// What a request waiting for documents (`Step::WaitForKeys`/`WaitForIdp`)
/// waits for until `deadline`, or `None` when it does not park: no fetch is in
/// flight or due (`awaited` false), or `bound` requests are parked already.
fn document_wait(
    step: &Step,
    awaited: bool,
    parked: usize,
    bound: usize,
    deadline: f64,
) -> Option<Wait> {
    if !awaited || parked >= bound {
        return None;
    }
    match *step {
        Step::WaitForIdp { filter } => Some(Wait::Idp { filter, deadline }),
        Step::WaitForKeys { source } => Some(Wait::Keys { source, deadline }),
        _ => None,
    }
}

/// The journey's step for a request that could not park: its own answer, or
/// 503 when it would wait again.
fn unparked(next: Step) -> Step {
    match next {
        Step::WaitForKeys { .. } | Step::WaitForIdp { .. } => {
            Step::Respond(Response::json_error(503, "too many requests waiting"))
        }
        other => other,
    }
}

/// `Step::NeedBody` before the body came. Where Envoy lets the headers wait
/// while the body comes (`allow_on_headers_stop_iteration`), they wait for
/// the check, as with native ext_authz: the upstream sees nothing before it
/// decides; while that is not known, this request finds out. Otherwise a Wasm
/// filter cannot read the body while it holds the headers (Envoy turns a pause
/// into StopAllIteration, which withholds the body callbacks too): the headers
/// go on now, with the changes made so far, and the body is held until the
/// check has decided.
fn wait_for_body(vm: &VmState, site: Site, mut pending: Box<Pending>, max_bytes: usize) -> Action {
    let mode = vm.headers_pause.get();
    if mode != HeadersPause::NotHonoured {
        pending.wait = Wait::Body {
            max_bytes,
            headers_held: true,
            probe_until: (mode == HeadersPause::Unknown)
                .then(|| now() + HEADERS_PAUSE_PROBE.as_secs_f64()),
        };
        return park(vm, site, *pending);
    }
    let changes = pending
        .journey
        .release_headers(&vm.config, &mut pending.request);
    apply_changes(&changes);
    pending.wait = Wait::Body {
        max_bytes,
        headers_held: false,
        probe_until: None,
    };
    park(vm, site, *pending);
    if site.resume {
        resume_request();
    }
    Action::Continue
}

/// `Step::Callout`: a shared callout is another request's answer, or its
/// callout in flight (in this VM or another), or this request's to send;
/// the request parks until the answer comes (`deliver`). A callout Envoy
/// refuses is answered as failed at once.
fn call_out(vm: &VmState, site: Site, mut pending: Box<Pending>, callout: Callout) -> Turn {
    if let Some(key) = callout.share {
        match claim_shared(vm, &key) {
            SharedTurn::Answered(answer) => {
                vm.metrics.count(&vm.config, Metric::SharedCalloutReused);
                pending.journey.answer_is_shared();
                return with_answer(vm, pending, answer);
            }
            SharedTurn::Wait => {
                pending.wait = Wait::Shared { key, since: now() };
                set_fast_tick(vm, true);
                return Turn::Done(park(vm, site, *pending));
            }
            SharedTurn::Mine => {}
        }
    }
    match dispatch(site, &callout) {
        Ok(token) => {
            vm.callouts
                .borrow_mut()
                .insert(token, (site.context_id, callout.share));
            pending.wait = Wait::Callout { since: now() };
            Turn::Done(park(vm, site, *pending))
        }
        Err(status) => {
            log::error!(
                "Envoy refused the callout to cluster {:?} ({status:?}): {}",
                callout.cluster,
                refusal_hint(status)
            );
            vm.metrics.count(&vm.config, Metric::CalloutFailed);
            let answer = CalloutAnswer::Failed {
                reason: format!("Envoy refused the callout to cluster {:?}", callout.cluster),
            };
            if let Some(key) = callout.share {
                settle_shared(vm, &key, &answer);
            }
            with_answer(vm, pending, answer)
        }
    }
}

/// The journey goes on with its callout's `answer`.
fn with_answer(vm: &VmState, mut pending: Box<Pending>, answer: CalloutAnswer) -> Turn {
    let next =
        pending
            .journey
            .on_callout_answer(&vm.config, &mut pending.request, answer, vm, now());
    Turn::Next(pending, next)
}

/// Sends `callout` on behalf of the running context (which owns it).
fn dispatch(site: Site, callout: &Callout) -> Result<u32, proxy_wasm::types::Status> {
    let _ = hostcalls::set_effective_context(site.running);
    let dispatched = match &callout.kind {
        CalloutKind::Http { headers, body } => {
            dispatch_http_call_bytes(&callout.cluster, headers, body, callout.timeout)
        }
        CalloutKind::Grpc {
            service,
            method,
            message,
            initial_metadata,
        } => {
            let metadata: Vec<(&str, &[u8])> = initial_metadata
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            hostcalls::dispatch_grpc_call(
                &callout.cluster,
                service,
                method,
                metadata,
                Some(message),
                callout.timeout,
            )
        }
    };
    let _ = hostcalls::set_effective_context(site.context_id);
    dispatched
}

/// Envoy goes on with a request paused outside the running callback.
fn resume_request() {
    if let Err(status) = hostcalls::resume_http_request() {
        log::warn!("could not resume request: {status:?}");
    }
}

/// The check allowed a request whose upstream answered before it decided
/// (`Journey::on_response_headers`): the held response goes on, with the headers
/// a filter adds to it, then the request body.
///
/// The response first, so it goes whatever becomes of the request: once the
/// upstream's answer is complete, Envoy counts the stream as answered and
/// continuing the request does nothing; an upstream still answering (it waits
/// for the body) gets the body. Both resumptions run when the callback returns,
/// in this order. (A response is held only once the body was read, so the
/// decision comes from a later callback; were it the request's own, Envoy
/// could not continue the request from within it: the body would stay held and
/// the upstream's answer go on.)
fn release_held_response(site: Site, journey: &mut Journey) -> Action {
    add_response_headers(journey.take_response_headers());
    if let Err(status) = hostcalls::resume_http_response() {
        log::warn!("could not resume the response: {status:?}");
    }
    if !site.resume {
        return Action::Pause;
    }
    if let Err(status) = hostcalls::resume_http_request() {
        log::warn!("could not resume request: {status:?}");
    }
    Action::Continue
}

/// Keeps the headers a filter wants on the upstream's response (a refreshed
/// session cookie) until the response comes.
pub fn keep_response_headers(vm: &VmState, context_id: u32, journey: &mut Journey) {
    let headers = journey.take_response_headers();
    if !headers.is_empty() {
        vm.response_headers.borrow_mut().insert(context_id, headers);
    }
}

fn park(vm: &VmState, site: Site, pending: Pending) -> Action {
    vm.pending.borrow_mut().insert(site.context_id, pending);
    Action::Pause
}

/// A body callback came while the request's headers were paused for its
/// body: Envoy honours the pause (learnt once per VM, logged).
pub fn headers_pause_honoured(vm: &VmState, pending: &mut Pending) {
    if let Wait::Body {
        headers_held: true,
        probe_until,
        ..
    } = &mut pending.wait
    {
        *probe_until = None;
        if vm.headers_pause.get() != HeadersPause::Honoured {
            vm.headers_pause.set(HeadersPause::Honoured);
            log::info!(
                "Envoy holds the request headers while the body comes (allow_on_headers_stop_iteration): a body check decides before anything goes upstream"
            );
        }
    }
}

/// From the root context's tick: requests whose headers were paused to learn
/// whether Envoy honours that ([`HeadersPause`]) and got no body callback
/// within [`HEADERS_PAUSE_PROBE`]. Unless another request proved it meanwhile,
/// it does not: their headers go on now, as they always do then.
pub fn end_headers_pause_probes(vm: &VmState) {
    let now = now();
    let due: Vec<u32> = vm
        .pending
        .borrow()
        .iter()
        .filter(|(_, p)| matches!(p.wait, Wait::Body { probe_until: Some(t), .. } if t <= now))
        .map(|(id, _)| *id)
        .collect();
    for id in due {
        let Some(mut pending) = vm.pending.borrow_mut().remove(&id) else {
            continue;
        };
        if vm.headers_pause.get() == HeadersPause::Honoured {
            // Proved by another request: this body is only slow.
            if let Wait::Body { probe_until, .. } = &mut pending.wait {
                *probe_until = None;
            }
            vm.pending.borrow_mut().insert(id, pending);
            continue;
        }
        if hostcalls::set_effective_context(id).is_err() {
            continue; // the request is gone
        }
        if vm.headers_pause.get() == HeadersPause::Unknown {
            vm.headers_pause.set(HeadersPause::NotHonoured);
            log::info!(
                "Envoy withholds the request body while the headers are paused (no allow_on_headers_stop_iteration): with include_body the headers go upstream before the check decides (docs/external.md)"
            );
        }
        let changes = pending
            .journey
            .release_headers(&vm.config, &mut pending.request);
        apply_changes(&changes);
        if let Wait::Body { max_bytes, .. } = pending.wait {
            pending.wait = Wait::Body {
                max_bytes,
                headers_held: false,
                probe_until: None,
            };
        }
        vm.pending.borrow_mut().insert(id, pending);
        if let Err(status) = hostcalls::resume_http_request() {
            log::warn!("could not resume request: {status:?}");
        }
    }
}

/// Runs a request parked for keys again, from the root context (keys arrived, or
/// its wait ended).
pub fn wake(vm: &VmState, context_id: u32, timed_out: bool) {
    let Some(mut pending) = vm.pending.borrow_mut().remove(&context_id) else {
        return;
    };
    if hostcalls::set_effective_context(context_id).is_err() {
        return; // the request is gone
    }
    let now = now();
    let step = if timed_out {
        pending
            .journey
            .keys_timed_out(&vm.config, &mut pending.request, vm, now)
    } else {
        pending
            .journey
            .run(&vm.config, &mut pending.request, vm, now)
    };
    let site = Site {
        context_id,
        running: vm.root_context_id,
        resume: true,
    };
    advance(vm, site, pending, step);
    let _ = hostcalls::set_effective_context(vm.root_context_id);
}

/// A callout answered: the request it belongs to goes on. `running` is the
/// context whose callback this is. Returns false when the token is not an
/// External check's.
pub fn callout_answered(
    vm: &VmState,
    running: u32,
    token: u32,
    answer: impl FnOnce() -> CalloutAnswer,
) -> bool {
    let Some((context_id, key)) = vm.callouts.borrow_mut().remove(&token) else {
        return false;
    };
    let answer = answer();
    if callout_failed(&answer) {
        vm.metrics.count(&vm.config, Metric::CalloutFailed);
    }
    // A shared callout: kept in its slot for every request waiting on it, in
    // this VM or another, and for late requests. This VM's waiters read it on
    // the next tick (`poll_shared`), like the other VMs': they go on from the
    // root context, so a callout one of them sends next (UserInfo after a
    // refresh) belongs to a context that outlives this request. (The SDK
    // routes an answer to the context whose callback sent the call.) Only
    // when the slot could not be written are they given the answer here.
    let waiters = match key {
        Some(key) if !settle_shared(vm, &key, &answer) => shared_waiters(vm, |k| k == key),
        _ => Vec::new(),
    };
    for waiter in waiters {
        vm.metrics.count(&vm.config, Metric::SharedCalloutReused);
        deliver(vm, running, waiter, answer.clone());
    }
    deliver(vm, running, context_id, answer);
    true
}

/// Gives a callout's answer to the request of `context_id`, which goes on.
pub fn deliver(vm: &VmState, running: u32, context_id: u32, answer: CalloutAnswer) {
    let Some(mut pending) = vm.pending.borrow_mut().remove(&context_id) else {
        return; // the request is gone
    };
    if let Some((metric, since)) = wait_metric(pending.wait) {
        vm.metrics
            .record(&vm.config, metric, elapsed_in(metric, now() - since));
    }
    if matches!(pending.wait, Wait::Shared { .. }) {
        pending.journey.answer_is_shared();
    }
    if running != context_id && hostcalls::set_effective_context(context_id).is_err() {
        return;
    }
    let step =
        pending
            .journey
            .on_callout_answer(&vm.config, &mut pending.request, answer, vm, now());
    let site = Site {
        context_id,
        running,
        resume: true,
    };
    advance(vm, site, pending, step);
    if running != context_id {
        let _ = hostcalls::set_effective_context(running);
    }
}

/// Whether a callout's answer counts as failed (`portcullis.callout.failed`):
/// no answer, an HTTP 5xx, or a gRPC status other than OK.
fn callout_failed(answer: &CalloutAnswer) -> bool {
    match answer {
        CalloutAnswer::Failed { .. } => true,
        CalloutAnswer::Http { status, .. } => *status >= 500,
        CalloutAnswer::Grpc { status_code, .. } => *status_code != 0,
    }
}

/// `seconds` in the unit of histogram `metric`: microseconds for a callout's
/// latency (`latency_us`: a loopback auth service answers in well under a
/// millisecond, which milliseconds would record as 0), milliseconds for a
/// wait on a shared callout (`shared_wait_ms`: read on a 10 ms tick).
fn elapsed_in(metric: Metric, seconds: f64) -> u64 {
    let per_second = match metric {
        Metric::CalloutLatency => 1e6,
        _ => 1e3,
    };
    (seconds * per_second).max(0.0) as u64
}

/// The histogram a delivered answer records the wait in, and since when
/// (Unix seconds): a callout's latency, or the wait on a shared callout.
fn wait_metric(wait: Wait) -> Option<(Metric, f64)> {
    match wait {
        Wait::Callout { since } => Some((Metric::CalloutLatency, since)),
        Wait::Shared { since, .. } => Some((Metric::SharedCalloutWait, since)),
        _ => None,
    }
}

/// Why Envoy refused to send a callout, for the log: `BadArgument` is its
/// answer for a cluster it does not know; a known cluster that cannot take the
/// request now (its DNS name not resolved yet, no healthy endpoint) fails the
/// call inline, which Envoy reports as `InternalFailure`.
pub fn refusal_hint(status: proxy_wasm::types::Status) -> &'static str {
    match status {
        proxy_wasm::types::Status::BadArgument => "is the cluster defined?",
        proxy_wasm::types::Status::InternalFailure => {
            "the cluster has no endpoint to send it to now (its name not resolved yet, or no healthy host)"
        }
        _ => "Envoy could not send it",
    }
}

#[cfg(test)]
#[path = "step_loop_tests.rs"]
mod tests;
