//! One request's journey through its rule's filter chain, as a state machine.
//!
//! The host feeds it the request and the time and carries out the `Step` it
//! answers: forward with header changes, answer with a response, or pause until a
//! remote JWK Set has loaded (then call `run` again, or `keys_timed_out`).

use crate::config::{Config, FilterKind};
use crate::jwt::filter::JwtOutcome;
use crate::jwt::KeySet;
use crate::request::Request;
use crate::response::{HeaderChange, Response};
use crate::rules::{select_rule, FilterArgs, OnAllow, OnDeny, Rule};
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
}

/// The host's key store, as the pipeline needs it.
pub trait KeyProvider {
    /// The current keys of a remote source, if it ever loaded.
    fn keys(&self, source: usize) -> Option<Arc<KeySet>>;
    /// A token named a key the set lacks. Returns true when a refresh is now under
    /// way (worth waiting for); false when rate-limited.
    fn refresh_for_unknown_key(&self, source: usize) -> bool;
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
    stripped_through: usize,
}

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
            stripped_through: 0,
        }
    }

    /// Index of the selected rule, if any.
    pub fn rule(&self) -> Option<usize> {
        self.rule
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
        let Some(rule) = self.rule.and_then(|i| config.rules.get(i)) else {
            return Step::Continue(std::mem::take(&mut self.changes));
        };
        while let Some(fref) = rule.filters.get(self.position) {
            let Some(filter) = config.filters.get(fref.filter) else {
                self.position += 1;
                continue;
            };
            self.strip_injected(rule, config, request);
            if let Some(cond) = &fref.condition {
                if !cond.matches(&request.headers) {
                    self.position += 1;
                    continue;
                }
            }
            let outcome = match &filter.kind {
                FilterKind::Jwt(jwt) => {
                    let scopes: &[String] = match &fref.args {
                        FilterArgs::Jwt { scopes } => scopes,
                        FilterArgs::None => &[],
                    };
                    let remote = match &jwt.keys {
                        crate::jwt::filter::KeySource::Remote(source) => keys.keys(*source),
                        crate::jwt::filter::KeySource::Inline(_) => None,
                    };
                    match jwt.check(request, scopes, remote.as_deref(), now_unix) {
                        JwtOutcome::Allow(changes) => Ok(changes),
                        JwtOutcome::Deny(response) => Err(response),
                        JwtOutcome::KeysUnavailable(source) => {
                            if self.waited.contains(&source) {
                                Err(jwt.keys_unavailable_response(request))
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
                            Err(response)
                        }
                    }
                }
                FilterKind::ApiKey(apikey) => apikey.check(request).map(|()| Vec::new()),
            };
            self.fallback = None;
            match outcome {
                Ok(changes) => {
                    for change in changes {
                        apply(request, &change);
                        self.changes.push(change);
                    }
                    self.position += 1;
                    if fref.on_allow == OnAllow::Break {
                        break;
                    }
                }
                Err(response) => {
                    self.position += 1;
                    if fref.on_deny == OnDeny::Break {
                        return Step::Respond(response);
                    }
                }
            }
        }
        Step::Continue(std::mem::take(&mut self.changes))
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
            self.position += 1;
            if fref.is_none_or(|f| f.on_deny == OnDeny::Break) {
                return Step::Respond(response);
            }
        }
        // A set that never loaded: running again answers 503 (it was waited for).
        self.run(config, request, keys, now_unix)
    }

    /// Removes, once per filter reached, the headers a JWT filter injects, so a
    /// client can never supply them.
    fn strip_injected(&mut self, rule: &Rule, config: &Config, request: &mut Request) {
        while self.stripped_through <= self.position {
            let Some(fref) = rule.filters.get(self.stripped_through) else {
                break;
            };
            if let Some(FilterKind::Jwt(jwt)) = config.filters.get(fref.filter).map(|f| &f.kind) {
                for name in jwt.injected_names() {
                    if request.headers.contains(name) {
                        let change = HeaderChange::remove(name);
                        apply(request, &change);
                        self.changes.push(change);
                    }
                }
            }
            self.stripped_through += 1;
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
