//! Envoy stats through proxy-wasm `define_metric`. Envoy shows them with its
//! `wasmcustom.` prefix in `/stats`. Every counter is defined when the
//! configuration loads, so each is there at zero before its first event
//! (dashboards and alerts can name it ahead); a metric is found again by a
//! small key (no formatting per request).
//!
//! | metric | kind |
//! |---|---|
//! | `portcullis.filter.<name>.allowed` | counter |
//! | `portcullis.filter.<name>.denied.<status>` | counter (defined at zero for the statuses the filter's type answers; others on first use) |
//! | `portcullis.authorization.<name>.rule.<rule>.allow` / `.deny` | counter per Authorization rule (`default`: `defaultAction`), under its action; a dot in the rule's name is written `_` |
//! | `portcullis.oauth2.<name>.<event>` | counter per OAuth2 event ([`OAuth2Event::metric_suffix`]: `login.started`, `login.completed`, `login.refused`, `refresh.done`, `refresh.failed`, `logout`, `idp_error.<kind>`) |
//! | `portcullis.requests.bypassed` | counter: route metadata `bypass_auth` |
//! | `portcullis.requests.no_rule` | counter: no rule matched |
//! | `portcullis.requests.response_held` | counter: the upstream answered before a body check decided (`include_body`, the logout form); its answer was held until the check decided |
//! | `portcullis.callout.failed` | counter: no answer, or 5xx / gRPC error |
//! | `portcullis.callout.latency_us` | histogram: a callout's round trip in microseconds (a loopback auth service answers in under a millisecond) |
//! | `portcullis.callout.shared` | counter: a request used another request's shared answer (an OAuth2 refresh made by another request, in this worker or another) instead of calling out |
//! | `portcullis.callout.shared_wait_ms` | histogram: how long a request waited for another request's shared callout |
//! | `portcullis.jwks.fetched` / `portcullis.jwks.fetch_failed` | counters |
//!
//! Envoy's tag extraction (`stats_config.stats_tags`, shown in
//! docs/observability.md) turns the filter name, the status and the IdP
//! error's kind, and the Authorization rule, into Prometheus labels:
//! `portcullis_filter_denied{portcullis_filter="jwt",portcullis_status="401"}`,
//! `portcullis_oauth2_login_started{portcullis_filter="app"}`.

use portcullis_core::authorization::Action;
use portcullis_core::config::{Config, FilterKind};
use portcullis_core::oauth2::OAuth2Event;
use portcullis_core::pipeline::Outcome;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// A metric's identity, cheap to build per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    Allowed(usize),
    Denied(usize, u16),
    OAuth2(usize, OAuth2Event),
    /// An Authorization filter's deciding rule (`None`: `defaultAction`).
    AuthorizationRule(usize, Option<usize>),
    Bypassed,
    NoRule,
    ResponseHeld,
    CalloutFailed,
    CalloutLatency,
    SharedCalloutReused,
    SharedCalloutWait,
    JwksFetched,
    JwksFetchFailed,
}

/// Counts are kept in the VM and handed to Envoy on the root context's tick
/// (every 100 ms): no host call per request for them.
#[derive(Default)]
pub struct Metrics {
    ids: RefCell<BTreeMap<Metric, u32>>,
    pending: RefCell<BTreeMap<Metric, i64>>,
}

impl Metrics {
    fn id(&self, config: &Config, metric: Metric) -> Option<u32> {
        if let Some(id) = self.ids.borrow().get(&metric) {
            return Some(*id);
        }
        let filter_name = |i: usize| {
            config
                .filters
                .get(i)
                .map(|f| f.name.as_str())
                .unwrap_or("?")
        };
        let (kind, name) = match metric {
            Metric::Allowed(f) => (
                MetricType::Counter,
                format!("portcullis.filter.{}.allowed", filter_name(f)),
            ),
            Metric::Denied(f, status) => (
                MetricType::Counter,
                format!("portcullis.filter.{}.denied.{status}", filter_name(f)),
            ),
            Metric::AuthorizationRule(f, rule) => (
                MetricType::Counter,
                authorization_rule_name(config, f, rule)?,
            ),
            Metric::OAuth2(f, event) => (
                MetricType::Counter,
                format!(
                    "portcullis.oauth2.{}.{}",
                    filter_name(f),
                    event.metric_suffix()
                ),
            ),
            Metric::Bypassed => (
                MetricType::Counter,
                "portcullis.requests.bypassed".to_string(),
            ),
            Metric::NoRule => (
                MetricType::Counter,
                "portcullis.requests.no_rule".to_string(),
            ),
            Metric::ResponseHeld => (
                MetricType::Counter,
                "portcullis.requests.response_held".to_string(),
            ),
            Metric::CalloutFailed => (MetricType::Counter, "portcullis.callout.failed".to_string()),
            Metric::CalloutLatency => (
                MetricType::Histogram,
                "portcullis.callout.latency_us".to_string(),
            ),
            Metric::SharedCalloutReused => {
                (MetricType::Counter, "portcullis.callout.shared".to_string())
            }
            Metric::SharedCalloutWait => (
                MetricType::Histogram,
                "portcullis.callout.shared_wait_ms".to_string(),
            ),
            Metric::JwksFetched => (MetricType::Counter, "portcullis.jwks.fetched".to_string()),
            Metric::JwksFetchFailed => (
                MetricType::Counter,
                "portcullis.jwks.fetch_failed".to_string(),
            ),
        };
        let id = hostcalls::define_metric(kind, &name).ok()?;
        self.ids.borrow_mut().insert(metric, id);
        Some(id)
    }

    /// Defines every metric of this configuration, at zero: each filter's
    /// `allowed` and its `denied.<status>` for the statuses its type answers,
    /// each OAuth2 filter's events, and the request, callout and JWK Set
    /// counters and histograms.
    pub fn define_all(&self, config: &Config) {
        for (i, filter) in config.filters.iter().enumerate() {
            self.id(config, Metric::Allowed(i));
            let statuses: &[u16] = match &filter.kind {
                FilterKind::Jwt(_) => &[400, 401, 403, 503],
                FilterKind::ApiKey(_) | FilterKind::Mtls(_) => &[403],
                FilterKind::External(_) => &[403, 413],
                FilterKind::OAuth2(_) => &[400, 401, 403, 502, 503],
                #[allow(unreachable_patterns)]
                _ => &[403],
            };
            for status in statuses {
                self.id(config, Metric::Denied(i, *status));
            }
            match &filter.kind {
                FilterKind::OAuth2(_) => {
                    for event in OAuth2Event::ALL {
                        self.id(config, Metric::OAuth2(i, event));
                    }
                }
                FilterKind::Authorization(authz) => {
                    for (rule, _) in authz.deciders() {
                        self.id(config, Metric::AuthorizationRule(i, rule));
                    }
                }
                _ => {}
            }
        }
        for metric in [
            Metric::Bypassed,
            Metric::NoRule,
            Metric::ResponseHeld,
            Metric::CalloutFailed,
            Metric::CalloutLatency,
            Metric::SharedCalloutReused,
            Metric::SharedCalloutWait,
            Metric::JwksFetched,
            Metric::JwksFetchFailed,
        ] {
            self.id(config, metric);
        }
    }

    /// Counts one event; Envoy sees it at the next `flush`.
    pub fn count(&self, _config: &Config, metric: Metric) {
        if let Ok(mut pending) = self.pending.try_borrow_mut() {
            let n = pending.entry(metric).or_insert(0);
            *n = n.saturating_add(1);
        }
    }

    /// Hands the counts kept since the last flush to Envoy.
    pub fn flush(&self, config: &Config) {
        let pending = match self.pending.try_borrow_mut() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return,
        };
        for (metric, n) in pending {
            if let Some(id) = self.id(config, metric) {
                let _ = hostcalls::increment_metric(id, n);
            }
        }
    }

    pub fn record(&self, config: &Config, metric: Metric, value: u64) {
        if let Some(id) = self.id(config, metric) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    /// Counts each filter's outcome of a finished request and its OAuth2
    /// events (an answer of the OAuth2 flow itself, a login redirect or a
    /// logout, is counted as its event only).
    pub fn outcomes(&self, config: &Config, outcomes: &[(usize, Outcome)]) {
        for (filter, outcome) in outcomes {
            let metric = match outcome {
                Outcome::Allowed => Metric::Allowed(*filter),
                Outcome::Denied(status) => Metric::Denied(*filter, *status),
                Outcome::OAuth2(event) => Metric::OAuth2(*filter, *event),
                Outcome::AuthorizationRule(rule) => Metric::AuthorizationRule(*filter, *rule),
                Outcome::Answered => continue,
            };
            self.count(config, metric);
        }
    }
}

/// `portcullis.authorization.<filter>.rule.<rule>.<allow|deny>` for
/// Authorization filter `filter`'s rule `rule` (`None`: `defaultAction`,
/// named `default`), under the rule's action. A dot in the rule's name is
/// written `_`: the `portcullis_rule` tag takes one name part.
fn authorization_rule_name(config: &Config, filter: usize, rule: Option<usize>) -> Option<String> {
    let f = config.filters.get(filter)?;
    let FilterKind::Authorization(authz) = &f.kind else {
        return None;
    };
    let action = match authz.rule_action(rule) {
        Action::Allow => "allow",
        Action::Deny => "deny",
    };
    Some(format!(
        "portcullis.authorization.{}.rule.{}.{action}",
        f.name,
        authz.rule_name(rule).replace('.', "_")
    ))
}
