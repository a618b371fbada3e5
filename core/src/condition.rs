//! `ifRequestHeader`, as FilterPolicy rules and OAuth2 (`useSessionCookies`,
//! `insteadOfRedirect`) use it: the spec users write and its compiled matcher.
//! Below the filter modules and `rules.rs`, which both use it.

use crate::compile::Compiler;
use crate::request::Headers;
use regex_lite::Regex;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderConditionSpec {
    pub name: String,
    pub value: Option<String>,
    pub value_regex: Option<String>,
    #[serde(default)]
    pub negate: bool,
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
