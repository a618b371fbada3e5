//! One request's journey through its rule's filter chain, as a state machine.
//!
//! The host feeds it the request, the time, and later the body and callout
//! answers, and carries out the `Step` it answers: forward with header changes,
//! answer with a response, buffer the body, send a callout, or pause until a
//! remote JWK Set has loaded.

use crate::config::{Config, FilterKind};
use crate::external::{Callout, CalloutAnswer, ExternalOutcome, RequestBody};
use crate::jwt::filter::{JwtOutcome, KeySource};
use crate::jwt::KeySet;
use crate::request::Request;
use crate::response::{HeaderChange, Response};
use crate::rules::{select_rule, FilterArgs, FilterRef, OnAllow, OnDeny};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the host must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Forward the request upstream with these header changes, in order.
    Continue(Vec<HeaderChange>),
    /// Answer the client with this response.
    Respond(Response),
    /// Pause until remote JWK Set `source` has keys, then call `run` again; if it
    /// does not arrive in time, call `keys_timed_out`.
    WaitForKeys { source: usize },
    /// Buffer the request body until its end or until more than `max_bytes`
    /// bytes have arrived, then call `provide_body` and `run`.
    NeedBody { max_bytes: usize },
    /// Send this callout and give its answer to `on_callout_answer`.
    Callout(Callout),
}

/// The host's key store, as the pipeline needs it.
pub trait KeyProvider {
    /// The current keys of a remote source, if it ever loaded.
    fn keys(&self, source: usize) -> Option<Arc<KeySet>>;
    /// A token named a key the set lacks. Returns true when a refresh is now under
    /// way (worth waiting for); false when rate-limited.
    fn refresh_for_unknown_key(&self, source: usize) -> bool;
}

/// What a filter did with a request, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// Denied with this status (whether or not `onDeny` let the request on).
    Denied(u16),
}

/// What one filter decided.
enum Decision {
    Allow(Vec<HeaderChange>),
    Deny(Response),
}

/// One request's progress through its rule.
#[derive(Debug)]
pub struct Journey {
    rule: Option<usize>,
    position: usize,
    changes: Vec<HeaderChange>,
    /// Sources this journey already waited for (never twice).
    waited: Vec<usize>,
    /// The denial to send if the awaited refresh does not bring the unknown key.
    fallback: Option<Response>,
    stripped: bool,
    /// The buffered request body and whether it is complete, once provided.
    body: Option<(Vec<u8>, bool)>,
    /// Each filter's outcome so far, by filter index (for metrics).
    outcomes: Vec<(usize, Outcome)>,
    /// The headers went upstream before the body was read: later header
    /// changes cannot reach it.
    headers_released: bool,
}

static NO_CONTEXT: BTreeMap<String, String> = BTreeMap::new();

impl Journey {
    /// Selects the request's rule (first match by host and path).
    pub fn new(config: &Config, request: &Request) -> Journey {
        let rule = select_rule(&config.rules, request)
            .and_then(|r| config.rules.iter().position(|x| std::ptr::eq(x, r)));
        Journey {
            rule,
            position: 0,
            changes: Vec::new(),
            waited: Vec::new(),
            fallback: None,
            stripped: false,
            body: None,
            outcomes: Vec::new(),
            headers_released: false,
        }
    }

    /// Index of the selected rule, if any.
    pub fn rule(&self) -> Option<usize> {
        self.rule
    }

    /// Whether any filter of the selected rule calls out (an External filter):
    /// the host then reads the connection facts a check carries.
    pub fn uses_callouts(&self, config: &Config) -> bool {
        self.rule
            .and_then(|i| config.rules.get(i))
            .is_some_and(|rule| {
                rule.filters.iter().any(|f| {
                    matches!(
                        config.filters.get(f.filter).map(|f| &f.kind),
                        Some(FilterKind::External(_))
                    )
                })
            })
    }

    /// Takes the filters' outcomes recorded so far (for metrics).
    pub fn take_outcomes(&mut self) -> Vec<(usize, Outcome)> {
        std::mem::take(&mut self.outcomes)
    }

    /// A Wasm filter cannot read the body while it holds the headers, so the
    /// host lets them go upstream first. Returns the changes to apply now: those
    /// made so far, and the removal of every header (but `Authorization`) that
    /// the waiting External filter would copy from its answer — a client copy must
    /// not pass when the answer can no longer replace it. Later changes are
    /// dropped.
    pub fn release_headers(&mut self, config: &Config, request: &mut Request) -> Vec<HeaderChange> {
        let waiting = self
            .rule
            .and_then(|i| config.rules.get(i))
            .and_then(|r| r.filters.get(self.position))
            .and_then(|f| config.filters.get(f.filter));
        if let Some(FilterKind::External(ext)) = waiting.map(|f| &f.kind) {
            for name in ext.upstream_header_names() {
                if name != "authorization" && request.headers.contains(name) {
                    let change = HeaderChange::remove(name);
                    apply(request, &change);
                    self.changes.push(change);
                }
            }
        }
        self.headers_released = true;
        std::mem::take(&mut self.changes)
    }

    /// The body the host buffered (`complete` when it is the whole body).
    pub fn provide_body(&mut self, bytes: Vec<u8>, complete: bool) {
        self.body = Some((bytes, complete));
    }

    /// Runs the chain from where it stands until it forwards, answers or waits.
    /// `request` is updated with each allowed filter's header changes.
    pub fn run(
        &mut self,
        config: &Config,
        request: &mut Request,
        keys: &dyn KeyProvider,
        now_unix: f64,
    ) -> Step {
        self.strip_injected(config, request);
        let Some(rule) = self.rule.and_then(|i| config.rules.get(i)) else {
            return Step::Continue(std::mem::take(&mut self.changes));
        };
        while let Some(fref) = rule.filters.get(self.position) {
            let Some(filter) = config.filters.get(fref.filter) else {
                self.position += 1;
                continue;
            };
            if let Some(cond) = &fref.condition {
                if !cond.matches(&request.headers) {
                    self.position += 1;
                    continue;
                }
            }
            let decision = match &filter.kind {
                FilterKind::Jwt(jwt) => {
                    let scopes: &[String] = match &fref.args {
                        FilterArgs::Jwt { scopes } => scopes,
                        _ => &[],
                    };
                    let remote = match &jwt.keys {
                        KeySource::Remote(source) => keys.keys(*source),
                        KeySource::Inline(_) => None,
                    };
                    match jwt.check(request, scopes, remote.as_deref(), now_unix) {
                        JwtOutcome::Allow(changes) => Decision::Allow(changes),
                        JwtOutcome::Deny(response) => Decision::Deny(response),
                        JwtOutcome::KeysUnavailable(source) => {
                            if self.waited.contains(&source) {
                                Decision::Deny(jwt.keys_unavailable_response(request))
                            } else {
                                self.waited.push(source);
                                return Step::WaitForKeys { source };
                            }
                        }
                        JwtOutcome::UnknownKey { source, response } => {
                            if !self.waited.contains(&source)
                                && keys.refresh_for_unknown_key(source)
                            {
                                self.waited.push(source);
                                self.fallback = Some(response);
                                return Step::WaitForKeys { source };
                            }
                            Decision::Deny(response)
                        }
                    }
                }
                FilterKind::Mtls(mtls) => match mtls.check(request) {
                    Ok(changes) => Decision::Allow(changes),
                    Err(response) => Decision::Deny(response),
                },
                FilterKind::ApiKey(apikey) => match apikey.check(request) {
                    Ok(()) => Decision::Allow(Vec::new()),
                    Err(response) => Decision::Deny(response),
                },
                FilterKind::External(ext) => {
                    let body = match (ext.body_policy(), &self.body) {
                        (None, _) => None,
                        (Some(_), Some((bytes, complete))) => Some(RequestBody {
                            bytes,
                            complete: *complete,
                        }),
                        (Some(policy), None) => {
                            return Step::NeedBody {
                                max_bytes: policy.max_bytes,
                            }
                        }
                    };
                    let context = match &fref.args {
                        FilterArgs::External { context_extensions } => context_extensions,
                        _ => &NO_CONTEXT,
                    };
                    match ext.build_check(request, body, context, now_unix) {
                        Ok(callout) => return Step::Callout(callout),
                        Err(response) => Decision::Deny(response),
                    }
                }
            };
            self.fallback = None;
            if let Some(step) = self.settle(fref, decision, request) {
                return step;
            }
        }
        Step::Continue(std::mem::take(&mut self.changes))
    }

    /// The answer to the callout the last `Step::Callout` asked for; the chain
    /// then goes on.
    pub fn on_callout_answer(
        &mut self,
        config: &Config,
        request: &mut Request,
        answer: CalloutAnswer,
        keys: &dyn KeyProvider,
        now_unix: f64,
    ) -> Step {
        let Some(fref) = self
            .rule
            .and_then(|i| config.rules.get(i))
            .and_then(|r| r.filters.get(self.position))
        else {
            return Step::Continue(std::mem::take(&mut self.changes));
        };
        let decision = match config.filters.get(fref.filter).map(|f| &f.kind) {
            Some(FilterKind::External(ext)) => match ext.read_answer_for(request, answer) {
                ExternalOutcome::Allow(changes) => Decision::Allow(changes),
                ExternalOutcome::Deny(response) => Decision::Deny(response),
            },
            // No callout was asked for here: ignore the answer.
            _ => return self.run(config, request, keys, now_unix),
        };
        match self.settle(fref, decision, request) {
            Some(step) => step,
            None => self.run(config, request, keys, now_unix),
        }
    }

    /// The awaited keys did not arrive in time: the filter that waited denies (503
    /// for a set that never loaded, the unknown-key 401 otherwise) and the chain
    /// goes on as its `onDeny` says.
    pub fn keys_timed_out(
        &mut self,
        config: &Config,
        request: &mut Request,
        keys: &dyn KeyProvider,
        now_unix: f64,
    ) -> Step {
        if let Some(response) = self.fallback.take() {
            let fref = self
                .rule
                .and_then(|i| config.rules.get(i))
                .and_then(|r| r.filters.get(self.position));
            if let Some(fref) = fref {
                if let Some(step) = self.settle(fref, Decision::Deny(response), request) {
                    return step;
                }
            }
        }
        // A set that never loaded: running again answers 503 (it was waited for).
        self.run(config, request, keys, now_unix)
    }

    /// Applies one filter's decision with its `onAllow`/`onDeny`, moving past it.
    /// `Some` when the journey ends here.
    fn settle(
        &mut self,
        fref: &FilterRef,
        decision: Decision,
        request: &mut Request,
    ) -> Option<Step> {
        self.position += 1;
        let outcome = match &decision {
            Decision::Allow(_) => Outcome::Allowed,
            Decision::Deny(response) => Outcome::Denied(response.status),
        };
        self.outcomes.push((fref.filter, outcome));
        match decision {
            Decision::Allow(changes) => {
                if self.headers_released && !changes.is_empty() {
                    log::debug!(
                        "{} header changes dropped: the headers went upstream before the body was read",
                        changes.len()
                    );
                }
                for change in changes {
                    apply(request, &change);
                    if !self.headers_released {
                        self.changes.push(change);
                    }
                }
                (fref.on_allow == OnAllow::Break)
                    .then(|| Step::Continue(std::mem::take(&mut self.changes)))
            }
            Decision::Deny(response) => {
                (fref.on_deny == OnDeny::Break).then_some(Step::Respond(response))
            }
        }
    }

    /// Removes, once, every header any filter of the configuration injects, so a
    /// client can never supply one (not even to a filter's condition). Templates
    /// still read the request as sent (`Request::as_sent`).
    fn strip_injected(&mut self, config: &Config, request: &mut Request) {
        if self.stripped || config.injected_names.is_empty() {
            self.stripped = true;
            return;
        }
        self.stripped = true;
        request.as_sent = Some(request.headers.clone());
        for name in &config.injected_names {
            if request.headers.contains(name) {
                let change = HeaderChange::remove(name);
                apply(request, &change);
                self.changes.push(change);
            }
        }
    }
}

fn apply(request: &mut Request, change: &HeaderChange) {
    match &change.value {
        Some(v) if change.append => request.headers.append(&change.name, v),
        Some(v) => request.headers.set(&change.name, v),
        None => request.headers.remove(&change.name),
    }
}
