//! FilterPolicy rules: which rule a request falls under (first match by host and
//! path globs), and each filter reference's condition, arguments and
//! `onDeny`/`onAllow` behaviour.

use crate::config::schema::{HeaderConditionSpec, JwtArgumentsSpec};
use crate::config::{Compiler, FilterKind};
use crate::glob::Glob;
use crate::request::{Headers, Request};
use regex_lite::Regex;
use serde_json::Value;

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

impl FilterArgs {
    pub fn compile(
        c: &mut Compiler<'_>,
        path: &str,
        kind: &FilterKind,
        arguments: Option<&Value>,
    ) -> Option<FilterArgs> {
        let arguments = match arguments {
            None | Some(Value::Null) => return Some(Self::default_for(kind)),
            Some(v) => v.clone(),
        };
        match kind {
            FilterKind::Jwt(_) => c
                .deserialize_at::<JwtArgumentsSpec>(path, arguments)
                .map(|spec| FilterArgs::Jwt { scopes: spec.scope }),
            // The arguments, a map of strings, are the gRPC check's context_extensions.
            FilterKind::External(_) => c
                .deserialize_at::<std::collections::BTreeMap<String, String>>(path, arguments)
                .map(|context_extensions| FilterArgs::External { context_extensions }),
            FilterKind::OAuth2(_) => crate::oauth2::OAuth2Args::compile(c, path, Some(&arguments))
                .map(|a| FilterArgs::OAuth2(Box::new(a))),
            FilterKind::ApiKey(_) | FilterKind::Mtls(_) => {
                if arguments.as_object().is_some_and(|m| m.is_empty()) {
                    Some(FilterArgs::None)
                } else {
                    c.error(
                        path,
                        format!("{} filters take no arguments", kind.type_name()),
                    );
                    None
                }
            }
        }
    }

    fn default_for(kind: &FilterKind) -> FilterArgs {
        match kind {
            FilterKind::Jwt(_) => FilterArgs::Jwt { scopes: Vec::new() },
            FilterKind::ApiKey(_) | FilterKind::Mtls(_) => FilterArgs::None,
            FilterKind::OAuth2(_) => FilterArgs::OAuth2(Box::default()),
            FilterKind::External(_) => FilterArgs::External {
                context_extensions: std::collections::BTreeMap::new(),
            },
        }
    }
}

#[derive(Debug)]
enum ValueMatch {
    Present,
    Exact(String),
    Regex(Regex),
}

/// `ifRequestHeader`: the filter applies only when the header is present (or has
/// the value, or fully matches the regex); `negate` inverts.
#[derive(Debug)]
pub struct HeaderCondition {
    name: String,
    matcher: ValueMatch,
    negate: bool,
}

impl HeaderCondition {
    pub fn compile(
        c: &mut Compiler<'_>,
        path: &str,
        spec: &HeaderConditionSpec,
    ) -> Option<HeaderCondition> {
        if spec.name.is_empty() {
            c.error(format!("{path}.name"), "must not be empty");
            return None;
        }
        let matcher = match (&spec.value, &spec.value_regex) {
            (Some(_), Some(_)) => {
                c.error(path, "give `value` or `valueRegex`, not both");
                return None;
            }
            (Some(v), None) => ValueMatch::Exact(v.clone()),
            (None, Some(re)) => match Regex::new(&format!("^(?:{re})$")) {
                Ok(r) => ValueMatch::Regex(r),
                Err(e) => {
                    c.error(
                        format!("{path}.valueRegex"),
                        format!("invalid regex {re:?}: {e}"),
                    );
                    return None;
                }
            },
            (None, None) => ValueMatch::Present,
        };
        Some(HeaderCondition {
            name: spec.name.to_ascii_lowercase(),
            matcher,
            negate: spec.negate,
        })
    }

    pub fn matches(&self, headers: &Headers) -> bool {
        let mut values = headers.get_all(&self.name).peekable();
        let hit = match &self.matcher {
            ValueMatch::Present => values.peek().is_some(),
            ValueMatch::Exact(v) => values.any(|x| x == v),
            ValueMatch::Regex(r) => values.any(|x| r.is_match(x)),
        };
        hit != self.negate
    }
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
