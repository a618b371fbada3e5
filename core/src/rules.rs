//! FilterPolicy rules: which rule a request falls under (first match by host and
//! path globs), and each filter reference's condition, arguments and
//! `onDeny`/`onAllow` behaviour.

use crate::condition::{HeaderCondition, HeaderConditionSpec};
use crate::glob::Glob;
use crate::request::Request;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub host: Option<String>,
    pub path: Option<String>,
    /// AES: rules with a higher `precedence` are tried first; equal ones keep
    /// their order (default 0).
    pub precedence: Option<i64>,
    pub filters: Option<Vec<FilterRefSpec>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FilterRefSpec {
    pub name: String,
    /// AES filter references carry a Kubernetes namespace; names are global here.
    pub namespace: Option<String>,
    pub if_request_header: Option<HeaderConditionSpec>,
    pub on_deny: Option<String>,
    pub on_allow: Option<String>,
    pub arguments: Option<Value>,
}

#[derive(Debug)]
pub struct Rule {
    pub host: Glob,
    pub path: Glob,
    pub filters: Vec<FilterRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDeny {
    Break,
    Continue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAllow {
    Continue,
    Break,
}

/// A rule's use of a filter.
#[derive(Debug)]
pub struct FilterRef {
    /// Index into `Config::filters`.
    pub filter: usize,
    pub condition: Option<HeaderCondition>,
    pub on_deny: OnDeny,
    pub on_allow: OnAllow,
    pub args: FilterArgs,
}

/// A filter's per-rule `arguments`.
#[derive(Debug, Default)]
pub enum FilterArgs {
    #[default]
    None,
    Jwt {
        scopes: Vec<String>,
    },
    /// External: the arguments, a map of strings, are the gRPC check's
    /// `context_extensions`.
    External {
        context_extensions: std::collections::BTreeMap<String, String>,
    },
    OAuth2(Box<crate::oauth2::OAuth2Args>),
}

impl Rule {
    /// Whether this rule covers the request: `host` against `:authority` (a pattern
    /// without a port also matches the authority with its port removed) and
    /// `path` against the path without query, decoded and with dot segments
    /// removed ([`crate::request::match_path`]).
    pub fn matches(&self, request: &Request) -> bool {
        self.matches_host(&request.authority) && self.path.is_match(&request.match_path())
    }

    pub fn matches_host(&self, authority: &str) -> bool {
        if self.host.matches_all() {
            return true;
        }
        let mut authority = authority.to_ascii_lowercase();
        // A fully qualified name's trailing dot (`app.example.com.`, which DNS
        // and Envoy's catch-all virtual host take as the same site) is not part
        // of the name the rule gives.
        if let Some(at) = dotted_host_end(&authority) {
            authority.remove(at);
        }
        if self.host.is_match(&authority) {
            return true;
        }
        if self.host.as_str().contains(':') {
            return false;
        }
        match strip_port(&authority) {
            Some(host) => self.host.is_match(host),
            None => false,
        }
    }
}

/// Where the trailing dot of the authority's host is, if it has one.
fn dotted_host_end(authority: &str) -> Option<usize> {
    let host = strip_port(authority).unwrap_or(authority);
    let at = host.len().checked_sub(1)?;
    (host.ends_with('.') && at > 0).then_some(at)
}

fn strip_port(authority: &str) -> Option<&str> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        return authority.get(..=end).filter(|h| h.len() < authority.len());
    }
    let (host, port) = authority.rsplit_once(':')?;
    port.chars().all(|c| c.is_ascii_digit()).then_some(host)
}

/// The first rule that covers the request.
pub fn select_rule<'r>(rules: &'r [Rule], request: &Request) -> Option<&'r Rule> {
    rules.iter().find(|r| r.matches(request))
}

/// Which rule a request falls under ([`select_rule_index`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The index of the rule, or none (the request passes untouched).
    Rule(Option<usize>),
    /// The path read as sent and read decoded fall under two different rules
    /// that both check the request: which one the upstream serves is unknown.
    Ambiguous,
}

/// The rule a request falls under, with its path read two ways: as Envoy
/// routes it (the path as given, `/api/..%3B/public/x` is under `/api/`) and
/// as an upstream that decodes it would ([`crate::request::match_path`]: that
/// one is `/public/x`). A path both readings agree on (every plain path: it
/// is read once) gets that rule. When they disagree and one reading lets the
/// request pass (no rule, or a rule without filters), the other's rule, which
/// checks it, applies: neither spelling escapes a check. Two different rules
/// that both check it are [`Selection::Ambiguous`] (the pipeline answers 400).
pub fn select_rule_index(rules: &[Rule], request: &Request) -> Selection {
    let decoded = request.match_path();
    let first = |path: &str| {
        rules
            .iter()
            .position(|r| r.matches_host(&request.authority) && r.path.is_match(path))
    };
    let by_decoded = first(&decoded);
    let as_sent = request.path_only();
    if decoded == as_sent {
        return Selection::Rule(by_decoded);
    }
    let by_sent = first(as_sent);
    if by_decoded == by_sent {
        return Selection::Rule(by_decoded);
    }
    let checks = |i: Option<usize>| {
        i.and_then(|i| rules.get(i))
            .is_some_and(|r| !r.filters.is_empty())
    };
    match (checks(by_decoded), checks(by_sent)) {
        (true, true) => Selection::Ambiguous,
        (true, false) => Selection::Rule(by_decoded),
        (false, true) => Selection::Rule(by_sent),
        (false, false) => Selection::Rule(by_decoded),
    }
}
