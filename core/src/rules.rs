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
    /// `path` against the path without query.
    pub fn matches(&self, request: &Request) -> bool {
        self.matches_host(&request.authority) && self.path.is_match(request.path_only())
    }

    pub fn matches_host(&self, authority: &str) -> bool {
        if self.host.matches_all() {
            return true;
        }
        let authority = authority.to_ascii_lowercase();
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
