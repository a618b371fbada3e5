//! One request's journey through its rule's filter chain, as a state machine.
//!
//! The host feeds it the request, the time, and later the body and callout
//! answers, and carries out the `Step` it answers: forward with header changes,
//! answer with a response, buffer the body, send a callout, or pause until a
//! remote JWK Set has loaded.

use crate::callout::{Callout, CalloutAnswer};
use crate::config::{Config, FilterKind};
use crate::decision::{DecisionRecord, Verdict};
use crate::external::{ExternalOutcome, RequestBody};
use crate::identity::Identity;
use crate::jwt::filter::{JwtOutcome, KeySource, VerifyWith};
use crate::oauth2::{
    IdpErrorKind, IdpState, OAuth2Args, OAuth2Event, OAuth2Events, OAuth2Filter, OAuth2Pending,
    OAuth2Step,
};
use crate::request::Request;
use crate::response::{HeaderChange, Response};
use crate::rules::{select_rule_index, FilterArgs, FilterRef, OnAllow, OnDeny, Selection};
use std::collections::BTreeMap;

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
    /// Pause until OAuth2 filter `filter`'s IdP (discovery document, and its JWK
    /// Set where needed) has loaded, then call `run` again; if it does not arrive
    /// in time, call `keys_timed_out`.
    WaitForIdp { filter: usize },
    /// Buffer the request body until its end or until more than `max_bytes`
    /// bytes have arrived, then call `provide_body` and `run`.
    NeedBody { max_bytes: usize },
    /// Send this callout and give its answer to `on_callout_answer`.
    Callout(Callout),
    /// The request was built from a few headers (`Request::lean`) and the
    /// journey could not simply pass it: build it again with every header and
    /// run a new journey (nothing of this one was done).
    NeedFullRequest,
}

/// What the host does with the upstream's response headers (see
/// [`Journey::on_response_headers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseStep {
    /// Let the response go on to the client.
    Pass,
    /// Hold the response, headers and body, until the journey decides: on
    /// `Step::Continue` release it (before the request body), on
    /// `Step::Respond` answer with that response instead (the upstream's is
    /// dropped).
    Hold,
    /// Answer with this response instead of the upstream's: the journey ends
    /// here (the check could not be made).
    Respond(Response),
}

pub use crate::host::{Host, IdpView};

/// What a filter did with a request, for metrics: one of `Allowed`,
/// `Denied` or `Answered` per filter that decided, and beside it the OAuth2
/// events of its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// Denied with this status (whether or not `onDeny` let the request on).
    Denied(u16),
    /// Answered for the filter's own protocol, neither allowed upstream nor
    /// denied: an OAuth2 login redirect, the way back from a completed login,
    /// a logout (each counted as its [`OAuth2Event`]).
    Answered,
    /// Something an OAuth2 filter did on the way (a login started, a refresh
    /// done, an IdP error).
    OAuth2(OAuth2Event),
    /// The Authorization rule that decided (`None`: `defaultAction`),
    /// beside the filter's `Allowed` or `Denied`.
    AuthorizationRule(Option<usize>),
}

/// What one filter decided.
enum Decision {
    Allow(Vec<HeaderChange>),
    Deny(Response),
    /// The filter's own answer (an OAuth2 redirect to or from the IdP, a
    /// logout): it ends the journey as a denial would, and counts as
    /// [`Outcome::Answered`].
    Answer(Response),
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
    /// The upstream answered while this journey was undecided, and the host
    /// holds its response until the journey decides.
    response_held: bool,
    /// Headers to add to the upstream's response (a refreshed session cookie).
    response_headers: Vec<HeaderChange>,
    /// What an OAuth2 filter of the chain left in the journey.
    oauth2: OAuth2Journey,
    /// The request is for an OAuth2 filter's own endpoint (callback, logout):
    /// only that filter runs.
    only_one: bool,
    /// The request is a POST to an OAuth2 callback path (a posted answer,
    /// `response_mode=form_post`).
    posted_callback: bool,
    /// The path as sent and decoded fall under two rules that both check it
    /// (`Selection::Ambiguous`): answered 400.
    ambiguous_path: bool,
    /// The identity the last identity filter to allow established (what an
    /// Authorization filter reads and `portcullis.subject` reports).
    identity: Option<Identity>,
    /// The last filter that ran (for the decision record).
    last_filter: Option<usize>,
    /// The last Authorization filter that decided and its rule (`None`:
    /// `defaultAction`).
    authz_rule: Option<(usize, Option<usize>)>,
}

/// An OAuth2 filter's part of a journey.
#[derive(Debug, Default)]
struct OAuth2Journey {
    /// The filter's state while its callout is out.
    pending: Option<OAuth2Pending>,
    /// OAuth2 filters whose IdP this journey already waited for.
    waited_idp: Vec<usize>,
    /// The callout answer being read is another request's (a shared
    /// refresh): the refresh and IdP events it brings were counted by the
    /// request that sent it.
    shared_answer: bool,
    /// The filter's state while fresh IdP keys are fetched
    /// (`OAuth2Step::UnknownKey`).
    after_keys: Option<OAuth2Pending>,
}

/// Where an OAuth2 filter's run starts: a check, a resume after fresh IdP
/// keys, or the answer to its callout.
enum OAuth2Call {
    Check,
    Resume(OAuth2Pending),
    Answer(OAuth2Pending, CalloutAnswer),
}

static NO_CONTEXT: BTreeMap<String, String> = BTreeMap::new();

/// The (rule, position) of the OAuth2 filter that answers a callback or
/// logout: of the filters on the request's host, the one whose cookies came
/// with it, else the first.
fn endpoint_owner(config: &Config, request: &Request) -> Option<(usize, usize)> {
    let candidates: Vec<(usize, usize, bool)> = config
        .rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.matches_host(&request.authority))
        .flat_map(|(i, rule)| {
            rule.filters.iter().enumerate().filter_map(move |(p, f)| {
                match config.filters.get(f.filter).map(|f| &f.kind) {
                    Some(FilterKind::OAuth2(o)) => Some((i, p, o.claims_endpoint_request(request))),
                    _ => None,
                }
            })
        })
        .collect();
    candidates
        .iter()
        .find(|(_, _, claimed)| *claimed)
        .or(candidates.first())
        .map(|(rule, position, _)| (*rule, *position))
}

impl Journey {
    /// Selects the request's rule (first match by host and path). The OAuth2
    /// callback and logout paths go to the first rule for the host that uses an
    /// OAuth2 filter, and only that filter runs.
    pub fn new(config: &Config, request: &Request) -> Journey {
        if config.oauth2_endpoint(&request.path) {
            if let Some((rule, position)) = endpoint_owner(config, request) {
                let mut journey = Journey::empty(Some(rule));
                journey.position = position;
                journey.only_one = true;
                journey.posted_callback = request.method.eq_ignore_ascii_case("POST")
                    && !crate::oauth2::is_logout_path(request.path_only());
                return journey;
            }
        }
        match select_rule_index(&config.rules, request) {
            Selection::Rule(rule) => Journey::empty(rule),
            Selection::Ambiguous => {
                let mut journey = Journey::empty(None);
                journey.ambiguous_path = true;
                journey
            }
        }
    }

    /// An OAuth2 endpoint request whose body (a posted callback's `state`)
    /// has just been read: the filter whose login it is answers it, as it
    /// would have from the start had the state been in the query.
    fn endpoint_owner_with_body(&mut self, config: &Config, request: &mut Request) {
        if !self.only_one || request.body.is_some() {
            return;
        }
        let Some((bytes, _)) = &self.body else {
            return;
        };
        request.body = Some(bytes.clone());
        if let Some((rule, position)) = endpoint_owner(config, request) {
            self.rule = Some(rule);
            self.position = position;
        }
    }

    fn empty(rule: Option<usize>) -> Journey {
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
            response_held: false,
            response_headers: Vec::new(),
            oauth2: OAuth2Journey::default(),
            only_one: false,
            posted_callback: false,
            ambiguous_path: false,
            identity: None,
            last_filter: None,
            authz_rule: None,
        }
    }

    /// Index of the selected rule, if any.
    pub fn rule(&self) -> Option<usize> {
        self.rule
    }

    /// Whether the request passes untouched without running the journey: no
    /// rule covers it (and its path is not one `run` answers 400).
    pub fn passes_untouched(&self) -> bool {
        self.rule.is_none() && !self.ambiguous_path
    }

    /// Whether any filter of the selected rule sends a gRPC check, which
    /// carries the connection facts (peer and local addresses, protocol): the
    /// host reads those properties only then (three host calls per request).
    pub fn needs_connection_facts(&self, config: &Config) -> bool {
        self.rule
            .and_then(|i| config.rules.get(i))
            .is_some_and(|rule| {
                rule.filters.iter().any(|f| {
                    matches!(
                        config.filters.get(f.filter).map(|f| &f.kind),
                        Some(FilterKind::External(e))
                            if e.protocol() == crate::external::Protocol::Grpc
                    )
                })
            })
    }

    /// Whether an Authorization filter of the selected rule tests
    /// `clientCIDRs`: the host reads Envoy's `source.address` only then.
    pub fn needs_client_address(&self, config: &Config) -> bool {
        self.rule
            .and_then(|i| config.rules.get(i))
            .is_some_and(|rule| {
                rule.filters.iter().any(|f| {
                    matches!(
                        config.filters.get(f.filter).map(|f| &f.kind),
                        Some(FilterKind::Authorization(a)) if a.reads_client_address()
                    )
                })
            })
    }

    /// The decision record once the journey has decided: `answered` is the
    /// status of the response Portcullis sends (`Step::Respond`), `None` when
    /// the request goes upstream (`Step::Continue`).
    pub fn decision<'a>(&'a self, config: &'a Config, answered: Option<u16>) -> DecisionRecord<'a> {
        let filter = self.last_filter.and_then(|i| config.filters.get(i));
        let rule =
            self.authz_rule
                .and_then(|(f, rule)| match config.filters.get(f).map(|f| &f.kind) {
                    Some(FilterKind::Authorization(a)) => Some(a.rule_name(rule)),
                    _ => None,
                });
        DecisionRecord {
            verdict: if answered.is_some() {
                Verdict::Deny
            } else {
                Verdict::Allow
            },
            filter: filter.map(|f| f.name.as_str()),
            filter_type: filter.map(|f| f.kind.type_name()),
            rule,
            subject: self.identity.as_ref().and_then(Identity::subject),
            status: answered,
        }
    }

    /// The most body bytes the host should capture for this journey, plus one
    /// (so "larger than `max_bytes`" can be seen); 0 when nothing reads the
    /// body: an External filter of the rule with `include_body`, or an OAuth2
    /// logout (its form's `_xsrf`).
    pub fn body_cap(&self, config: &Config, request: &Request) -> usize {
        let Some(rule) = self.rule.and_then(|i| config.rules.get(i)) else {
            return 0;
        };
        if self.only_one {
            return match rule
                .filters
                .get(self.position)
                .and_then(|f| config.filters.get(f.filter))
                .map(|f| &f.kind)
            {
                Some(FilterKind::OAuth2(o)) => o
                    .endpoint_body_limit(request)
                    .map_or(0, |n| n.saturating_add(1)),
                _ => 0,
            };
        }
        rule.filters
            .iter()
            .filter_map(|f| match config.filters.get(f.filter).map(|f| &f.kind) {
                Some(FilterKind::External(ext)) => {
                    ext.body_policy().map(|p| p.max_bytes.saturating_add(1))
                }
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Takes the headers to add to the upstream's response.
    /// (`append`: added beside the upstream's; otherwise set, replacing it).
    pub fn take_response_headers(&mut self) -> Vec<HeaderChange> {
        std::mem::take(&mut self.response_headers)
    }

    /// The index of the rule this request matched, once selected (for the
    /// decision log).
    pub fn rule_index(&self) -> Option<usize> {
        self.rule
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

    /// The upstream's response headers arrived while this journey is still
    /// undecided. Its request headers went upstream before the body was read
    /// (`release_headers`), so an upstream that answers before reading the
    /// body (an early 404, a redirect) answers before the check has decided:
    /// that answer must reach the client only if the check allows the request.
    ///
    /// - The body the check needs has arrived (the check is under way): `Hold`,
    ///   and `response_held` is true from now on.
    /// - It has not: Envoy drops every request body that comes after a
    ///   complete answer (it counts the stream as answered once the upstream's
    ///   end reaches the filter chain, held or not), so the check can never be
    ///   made: `Respond` with the waiting filter's refusal (External:
    ///   `status_on_error`; the OAuth2 logout form: 403).
    /// - The headers never went (a response Envoy made itself): `Pass`.
    pub fn on_response_headers(&mut self, config: &Config) -> ResponseStep {
        if !self.headers_released {
            return ResponseStep::Pass;
        }
        if self.body.is_some() {
            self.response_held = true;
            return ResponseStep::Hold;
        }
        let waiting = self
            .rule
            .and_then(|i| config.rules.get(i))
            .and_then(|r| r.filters.get(self.position))
            .and_then(|f| config.filters.get(f.filter).map(|c| (f.filter, c)));
        let (filter, response) = match waiting {
            Some((index, c)) => match &c.kind {
                FilterKind::External(ext) => (Some(index), ext.body_lost()),
                FilterKind::OAuth2(o) if self.posted_callback => {
                    (Some(index), o.callback_form_lost())
                }
                FilterKind::OAuth2(o) => (Some(index), o.logout_form_lost()),
                _ => (Some(index), Response::json_error(403, "Forbidden")),
            },
            None => (None, Response::json_error(403, "Forbidden")),
        };
        if let Some(index) = filter {
            if self.posted_callback {
                // The posted sign-in answer never arrived: the login ends here.
                self.outcomes
                    .push((index, Outcome::OAuth2(OAuth2Event::LoginRefused)));
            }
            self.outcomes
                .push((index, Outcome::Denied(response.status)));
        }
        ResponseStep::Respond(response)
    }

    /// Whether the host holds the upstream's response for this journey
    /// ([`Journey::on_response_headers`]).
    pub fn response_held(&self) -> bool {
        self.response_held
    }

    /// Whether the host has given the body this journey reads
    /// ([`Journey::provide_body`]): any more of it is only held for the
    /// upstream.
    pub fn has_body(&self) -> bool {
        self.body.is_some()
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
        host: &dyn Host,
        now_unix: f64,
    ) -> Step {
        self.strip_injected(config, request);
        self.endpoint_owner_with_body(config, request);
        if self.ambiguous_path {
            return Step::Respond(Response::json_error(
                400,
                "the request path falls under two rules: as sent and decoded it reads as two different paths",
            ));
        }
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
            // A CORS preflight carries no credential: the filters that check
            // one do not run on it (`bypassCorsPreflight`); External (the auth
            // service decides) and MTLS (the connection's certificate) do.
            if config.bypass_cors_preflight
                && matches!(
                    filter.kind,
                    FilterKind::Jwt(_)
                        | FilterKind::OAuth2(_)
                        | FilterKind::ApiKey(_)
                        | FilterKind::Authorization(_)
                )
                && request.is_cors_preflight()
            {
                self.position += 1;
                continue;
            }
            let decision = match &filter.kind {
                FilterKind::Jwt(jwt) => match self.jwt_decision(jwt, fref, request, host, now_unix)
                {
                    Ok(decision) => decision,
                    Err(step) => return step,
                },
                FilterKind::OAuth2(oauth2) => {
                    let default_args;
                    let args = match &fref.args {
                        FilterArgs::OAuth2(args) => args.as_ref(),
                        _ => {
                            default_args = OAuth2Args::default();
                            &default_args
                        }
                    };
                    if request.body.is_none() {
                        if let Some((bytes, _)) = &self.body {
                            request.body = Some(bytes.clone());
                        }
                    }
                    let call = match self.oauth2.after_keys.take() {
                        Some(pending) => OAuth2Call::Resume(pending),
                        None => OAuth2Call::Check,
                    };
                    let (step, events) =
                        run_oauth2(host, oauth2, fref.filter, request, args, call, now_unix);
                    self.count_oauth2_events(fref.filter, &events);
                    match self.oauth2_decision(oauth2, fref.filter, step, &events, host) {
                        Ok(decision) => decision,
                        Err(step) => return step,
                    }
                }
                FilterKind::Mtls(mtls) => match mtls.check(request) {
                    Ok(changes) => {
                        if let Some(tls) = &request.tls {
                            self.identity = Some(Identity::Certificate {
                                subject: tls.subject.clone(),
                            });
                        }
                        Decision::Allow(changes)
                    }
                    Err(response) => Decision::Deny(response),
                },
                FilterKind::ApiKey(apikey) => match apikey.check(request) {
                    Ok(name) => {
                        self.identity = Some(Identity::ApiKey { name });
                        Decision::Allow(Vec::new())
                    }
                    Err(response) => Decision::Deny(response),
                },
                FilterKind::Authorization(authz) => {
                    let outcome = authz.check(request, self.identity.as_ref());
                    self.authz_rule = Some((fref.filter, outcome.rule));
                    self.outcomes
                        .push((fref.filter, Outcome::AuthorizationRule(outcome.rule)));
                    match outcome.result {
                        Ok(()) => Decision::Allow(Vec::new()),
                        Err(response) => Decision::Deny(response),
                    }
                }
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
            if request.lean && !matches!(decision, Decision::Allow(_)) {
                // A denial answers with the request as it came: redo it whole.
                return Step::NeedFullRequest;
            }
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
        host: &dyn Host,
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
                ExternalOutcome::AllowWithResponseHeaders { request, response } => {
                    self.response_headers.extend(response);
                    Decision::Allow(request)
                }
                ExternalOutcome::Deny(response) => Decision::Deny(response),
            },
            Some(FilterKind::OAuth2(oauth2)) => {
                let Some(pending) = self.oauth2.pending.take() else {
                    return self.run(config, request, host, now_unix);
                };
                let default_args;
                let args = match &fref.args {
                    FilterArgs::OAuth2(args) => args.as_ref(),
                    _ => {
                        default_args = OAuth2Args::default();
                        &default_args
                    }
                };
                let call = OAuth2Call::Answer(pending, answer);
                let (step, events) =
                    run_oauth2(host, oauth2, fref.filter, request, args, call, now_unix);
                self.count_oauth2_events(fref.filter, &events);
                match self.oauth2_decision(oauth2, fref.filter, step, &events, host) {
                    Ok(decision) => decision,
                    Err(step) => return step,
                }
            }
            // No callout was asked for here: ignore the answer.
            _ => return self.run(config, request, host, now_unix),
        };
        match self.settle(fref, decision, request) {
            Some(step) => step,
            None => self.run(config, request, host, now_unix),
        }
    }

    /// The awaited keys did not arrive in time: the filter that waited denies (503
    /// for a set that never loaded, the unknown-key 401 otherwise) and the chain
    /// goes on as its `onDeny` says.
    pub fn keys_timed_out(
        &mut self,
        config: &Config,
        request: &mut Request,
        host: &dyn Host,
        now_unix: f64,
    ) -> Step {
        let login = self.oauth2.after_keys.take().is_some_and(|p| p.is_login());
        if let Some(response) = self.fallback.take() {
            let fref = self
                .rule
                .and_then(|i| config.rules.get(i))
                .and_then(|r| r.filters.get(self.position));
            if let Some(fref) = fref {
                if login {
                    // The login's ID token named a key the IdP never published.
                    self.outcomes
                        .push((fref.filter, Outcome::OAuth2(OAuth2Event::LoginRefused)));
                }
                if let Some(step) = self.settle(fref, Decision::Deny(response), request) {
                    return step;
                }
            }
        }
        // A set that never loaded: running again answers 503 (it was waited for).
        self.run(config, request, host, now_unix)
    }

    /// Runs JWT filter `jwt` (`fref`): a decision (`Ok`) or a step for the
    /// host (`Err`: wait for its keys, or redo a lean request whole).
    #[allow(clippy::result_large_err)] // a step is returned once per journey stage
    fn jwt_decision(
        &mut self,
        jwt: &crate::jwt::filter::JwtFilter,
        fref: &FilterRef,
        request: &Request,
        host: &dyn Host,
        now_unix: f64,
    ) -> Result<Decision, Step> {
        let scopes: &[String] = match &fref.args {
            FilterArgs::Jwt { scopes } => scopes,
            _ => &[],
        };
        let remote = match &jwt.keys {
            KeySource::Remote(source) => host.keys(*source),
            KeySource::Inline(_) => None,
        };
        let verify = VerifyWith {
            remote_keys: remote.as_deref(),
            now_unix,
            cache: host.token_cache(),
            host: host.signature_verifier(),
            scope: fref.filter as u64,
        };
        let decision = match jwt.check_with_cache(request, scopes, &verify) {
            JwtOutcome::Allow(changes, token) => {
                self.identity = Some(Identity::Token(token));
                Decision::Allow(changes)
            }
            // Before any wait or refresh: a lean request is redone.
            JwtOutcome::NeedFullRequest => return Err(Step::NeedFullRequest),
            _ if request.lean => return Err(Step::NeedFullRequest),
            JwtOutcome::Deny(response) => Decision::Deny(response),
            JwtOutcome::KeysUnavailable(source) => {
                if self.waited.contains(&source) {
                    Decision::Deny(jwt.keys_unavailable_response(request))
                } else {
                    self.waited.push(source);
                    return Err(Step::WaitForKeys { source });
                }
            }
            JwtOutcome::UnknownKey { source, response } => {
                if !self.waited.contains(&source) && host.refresh_for_unknown_key(source) {
                    self.waited.push(source);
                    self.fallback = Some(response);
                    return Err(Step::WaitForKeys { source });
                }
                Decision::Deny(response)
            }
        };
        Ok(decision)
    }

    /// Records the OAuth2 events of filter `index`'s step for metrics; of an
    /// answer another request shared, only those of this request (a login
    /// it starts), not the answer's own (the refresh, an IdP error).
    fn count_oauth2_events(&mut self, index: usize, events: &OAuth2Events) {
        let shared = std::mem::take(&mut self.oauth2.shared_answer);
        for event in events.iter() {
            if !(shared && event.of_the_answer()) {
                self.outcomes.push((index, Outcome::OAuth2(event)));
            }
        }
    }

    /// The next callout answer given to [`Journey::on_callout_answer`] is
    /// another request's (a shared callout, in this VM or another): what it
    /// says of the IdP was counted by the request that sent it.
    pub fn answer_is_shared(&mut self) {
        self.oauth2.shared_answer = true;
    }

    /// Maps an OAuth2 step to a decision (`Ok`) or a step for the host
    /// (`Err`). A response that goes with a login started or completed or a
    /// logout is the flow's own answer, not a denial.
    #[allow(clippy::result_large_err)] // a step is returned once per journey stage
    fn oauth2_decision(
        &mut self,
        oauth2: &OAuth2Filter,
        index: usize,
        step: OAuth2Step,
        events: &OAuth2Events,
        host: &dyn Host,
    ) -> Result<Decision, Step> {
        match step {
            OAuth2Step::Allow {
                request,
                response,
                identity,
            } => {
                self.response_headers.extend(
                    response
                        .into_iter()
                        .map(|(name, value)| HeaderChange::append(&name, value)),
                );
                if identity.is_some() {
                    self.identity = identity;
                }
                Ok(Decision::Allow(request))
            }
            OAuth2Step::Respond(response) if events.iter().any(OAuth2Event::answers) => {
                Ok(Decision::Answer(response))
            }
            OAuth2Step::Respond(response) => Ok(Decision::Deny(response)),
            OAuth2Step::NeedBody { max_bytes } => Err(Step::NeedBody { max_bytes }),
            OAuth2Step::Callout { callout, pending } => {
                self.oauth2.pending = Some(pending);
                Err(Step::Callout(callout))
            }
            OAuth2Step::UnknownKey { pending, response } => {
                // The JWT filter's mechanism: one rate-limited refresh of the
                // set, waited for once per journey (bounded by the host).
                match host.idp(index).and_then(|idp| idp.keys_source) {
                    Some(source)
                        if !self.waited.contains(&source)
                            && host.refresh_for_unknown_key(source) =>
                    {
                        self.waited.push(source);
                        self.fallback = Some(response);
                        self.oauth2.after_keys = pending;
                        Err(Step::WaitForKeys { source })
                    }
                    _ => {
                        if pending.as_ref().is_some_and(OAuth2Pending::is_login) {
                            self.outcomes
                                .push((index, Outcome::OAuth2(OAuth2Event::LoginRefused)));
                        }
                        Ok(Decision::Deny(response))
                    }
                }
            }
            OAuth2Step::NeedIdp => {
                if self.oauth2.waited_idp.contains(&index) {
                    let event = OAuth2Event::IdpError(IdpErrorKind::NotLoaded);
                    self.outcomes.push((index, Outcome::OAuth2(event)));
                    Ok(Decision::Deny(oauth2.idp_unavailable()))
                } else {
                    self.oauth2.waited_idp.push(index);
                    Err(Step::WaitForIdp { filter: index })
                }
            }
        }
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
        self.last_filter = Some(fref.filter);
        if self.only_one {
            // An OAuth2 endpoint: nothing else of the rule runs.
            self.position = usize::MAX;
        }
        let outcome = match &decision {
            Decision::Allow(_) => Outcome::Allowed,
            Decision::Deny(response) => Outcome::Denied(response.status),
            Decision::Answer(_) => Outcome::Answered,
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
            Decision::Deny(response) | Decision::Answer(response) => {
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

/// Runs OAuth2 filter `index` from `call` with what the host holds of its IdP
/// (a host without OAuth2 support: `NeedIdp`). A userinfo answer is recorded
/// in the filter's userinfo cache first. A step that needed randomness the
/// host could not give is refused (503). With the step, the events the flow
/// noted on the way.
fn run_oauth2(
    host: &dyn Host,
    filter: &OAuth2Filter,
    index: usize,
    request: &Request,
    args: &OAuth2Args,
    call: OAuth2Call,
    now_unix: f64,
) -> (OAuth2Step, OAuth2Events) {
    let events = OAuth2Events::new();
    let Some(view) = host.idp(index) else {
        return (OAuth2Step::NeedIdp, events);
    };
    if let (OAuth2Call::Answer(pending, answer), Some(userinfo)) = (&call, view.userinfo) {
        userinfo.borrow_mut().remember(pending, answer, now_unix);
    }
    let userinfo = view.userinfo.map(|u| u.borrow());
    let idp = IdpState {
        discovery: view.discovery.as_deref(),
        keys: view.keys.as_deref(),
        userinfo: userinfo.as_deref(),
        token_cache: host.token_cache(),
        session_cache: view.session_cache,
        events: Some(&events),
    };
    let mut random_failed = false;
    let mut random = |buf: &mut [u8]| {
        if !host.fill_random(buf) {
            random_failed = true;
        }
    };
    let step = match call {
        OAuth2Call::Check => filter.check(request, args, &idp, now_unix, &mut random),
        OAuth2Call::Resume(pending) => {
            filter.resume(request, args, pending, &idp, now_unix, &mut random)
        }
        OAuth2Call::Answer(pending, answer) => {
            let answered = pending.answered(answer);
            filter.on_answer(request, args, answered, &idp, now_unix, &mut random)
        }
    };
    if random_failed {
        log::error!("OAuth2 filter {index}: the host gave no random bytes");
        return (
            OAuth2Step::Respond(filter.idp_unavailable()),
            OAuth2Events::new(),
        );
    }
    (step, events)
}

fn apply(request: &mut Request, change: &HeaderChange) {
    match &change.value {
        Some(v) if change.append => request.headers.append_bytes(&change.name, v),
        Some(v) => request.headers.set_bytes(&change.name, v),
        None => request.headers.remove(&change.name),
    }
}
