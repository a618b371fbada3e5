//! Claim conditions (`claims[]` of an Authorization rule) and `scopes`: a path
//! into the identity's claims (a JSON object, RFC 7519 §4 / OIDC Core §5.1)
//! and one test. A claim of another JSON type than the test asks for does not
//! hold; nothing here is ever an error at request time.

use super::spec::{ClaimConditionSpec, ClaimPathSpec};
use crate::compile::Compiler;
use regex_lite::{Regex, RegexBuilder};
use serde_json::{Map, Value};

/// Longest `matches` expression accepted, in bytes.
pub const MAX_REGEX_LEN: usize = 4096;
/// The most memory one compiled `matches` expression may take (regex-lite's
/// `size_limit`), in bytes.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// The most names in a claim `path`.
pub const MAX_PATH_DEPTH: usize = 32;

/// The test a claim condition applies.
#[derive(Debug)]
enum ClaimTest {
    Equals(Value),
    AnyOf(Vec<String>),
    AllOf(Vec<String>),
    /// Anchored at both ends at compile time (`^(?:...)$`).
    Matches(Regex),
    Exists(bool),
}

/// A compiled claim condition.
#[derive(Debug)]
pub struct ClaimCondition {
    path: Vec<String>,
    test: ClaimTest,
}

impl ClaimCondition {
    /// Compiles `spec` at `path` (`filters[0].Authorization.rules[1].claims[0]`).
    pub fn compile(
        c: &mut Compiler<'_>,
        path: &str,
        spec: &ClaimConditionSpec,
    ) -> Option<ClaimCondition> {
        let names = match &spec.path {
            ClaimPathSpec::Name(name) => vec![name.clone()],
            ClaimPathSpec::Nested(names) => names.clone(),
        };
        if names.is_empty() || names.iter().any(String::is_empty) {
            c.error(
                format!("{path}.path"),
                "a claim name, or a list of claim names, none empty",
            );
            return None;
        }
        if names.len() > MAX_PATH_DEPTH {
            c.error(
                format!("{path}.path"),
                format!("at most {MAX_PATH_DEPTH} names"),
            );
            return None;
        }
        let given: Vec<&str> = [
            ("equals", spec.equals.is_some()),
            ("anyOf", spec.any_of.is_some()),
            ("allOf", spec.all_of.is_some()),
            ("matches", spec.matches.is_some()),
            ("exists", spec.exists.is_some()),
        ]
        .iter()
        .filter(|(_, p)| *p)
        .map(|(n, _)| *n)
        .collect();
        if given.len() != 1 {
            c.error(
                path,
                format!(
                    "a claim condition has exactly one of equals, anyOf, allOf, matches, exists (found {})",
                    if given.is_empty() { "none".to_string() } else { given.join(", ") }
                ),
            );
            return None;
        }
        let test = if let Some(v) = &spec.equals {
            ClaimTest::Equals(v.clone())
        } else if let Some(list) = &spec.any_of {
            ClaimTest::AnyOf(list.clone())
        } else if let Some(list) = &spec.all_of {
            ClaimTest::AllOf(list.clone())
        } else if let Some(re) = &spec.matches {
            ClaimTest::Matches(compile_regex(c, &format!("{path}.matches"), re)?)
        } else {
            ClaimTest::Exists(spec.exists.unwrap_or(true))
        };
        Some(ClaimCondition { path: names, test })
    }

    /// Whether the condition holds on `claims` (`None`: no identity with
    /// claims, which no condition holds on, `exists: false` included).
    pub fn holds(&self, claims: Option<&Map<String, Value>>) -> bool {
        let Some(claims) = claims else {
            return false;
        };
        let value = lookup(claims, &self.path);
        match (&self.test, value) {
            (ClaimTest::Exists(want), v) => v.is_some() == *want,
            (_, None) => false,
            (ClaimTest::Equals(want), Some(v)) => json_equal(v, want),
            (ClaimTest::AnyOf(wanted), Some(v)) => {
                wanted.iter().any(|w| string_values(v).any(|s| s == w))
            }
            (ClaimTest::AllOf(wanted), Some(v)) => {
                is_string_like(v) && wanted.iter().all(|w| string_values(v).any(|s| s == w))
            }
            (ClaimTest::Matches(re), Some(v)) => string_values(v).any(|s| re.is_match(s)),
        }
    }
}

/// Compiles a `matches` expression, anchored to match a whole value, bounded
/// in length and compiled size.
fn compile_regex(c: &mut Compiler<'_>, path: &str, source: &str) -> Option<Regex> {
    if source.len() > MAX_REGEX_LEN {
        c.error(
            path,
            format!("a regular expression of at most {MAX_REGEX_LEN} bytes"),
        );
        return None;
    }
    match RegexBuilder::new(&format!("^(?:{source})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
    {
        Ok(re) => Some(re),
        Err(e) => {
            c.error(path, format!("invalid regular expression {source:?}: {e}"));
            None
        }
    }
}

/// The value at `path` (names into nested objects), if every step is an
/// object holding the next name.
fn lookup<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for name in rest {
        value = value.as_object()?.get(name)?;
    }
    Some(value)
}

/// A string, or an array (whose string elements are the values).
fn is_string_like(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Array(_))
}

/// The claim's values as strings: a string itself, or an array's string
/// elements (others skipped); nothing for other types.
fn string_values(value: &Value) -> impl Iterator<Item = &str> {
    let (one, many) = match value {
        Value::String(s) => (Some(s.as_str()), None),
        Value::Array(items) => (None, Some(items)),
        _ => (None, None),
    };
    one.into_iter()
        .chain(many.into_iter().flatten().filter_map(Value::as_str))
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Whether every one of `required` is among the values of the `scope` and
/// `scp` claims (RFC 8693 §4.2 `scope`: a space-separated string; `scp`:
/// Entra ID and Okta, a string or an array).
pub fn has_scopes(claims: Option<&Map<String, Value>>, required: &[String]) -> bool {
    let Some(claims) = claims else {
        return false;
    };
    let granted = |wanted: &str| {
        ["scope", "scp"].iter().any(|name| match claims.get(*name) {
            Some(Value::String(s)) => s.split_ascii_whitespace().any(|s| s == wanted),
            Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(wanted)),
            _ => false,
        })
    };
    required.iter().all(|s| granted(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn condition(spec: Value) -> Result<ClaimCondition, Vec<String>> {
        let env = |_: &str| None;
        let mut c = Compiler::new(Default::default(), &env);
        let spec: ClaimConditionSpec =
            serde_json::from_value(spec).map_err(|e| vec![e.to_string()])?;
        ClaimCondition::compile(&mut c, "c", &spec)
            .ok_or_else(|| c.errors.iter().map(|e| e.to_string()).collect())
    }

    fn holds(spec: Value, claims: Value) -> bool {
        let cond = condition(spec).unwrap();
        cond.holds(claims.as_object())
    }

    #[test]
    fn equals_compares_json_values_and_numbers_by_value() {
        assert!(holds(
            json!({"path": "email_verified", "equals": true}),
            json!({"email_verified": true})
        ));
        assert!(!holds(
            json!({"path": "email_verified", "equals": true}),
            json!({"email_verified": "true"})
        ));
        assert!(holds(json!({"path": "n", "equals": 1}), json!({"n": 1.0})));
        assert!(holds(
            json!({"path": "o", "equals": {"a": [1, "x"]}}),
            json!({"o": {"a": [1.0, "x"]}})
        ));
        assert!(holds(
            json!({"path": "x", "equals": null}),
            json!({"x": null})
        ));
        assert!(!holds(json!({"path": "x", "equals": null}), json!({})));
    }

    #[test]
    fn any_of_and_all_of_read_a_string_or_an_array() {
        let keycloak = json!({"realm_access": {"roles": ["admin", "user"]}});
        assert!(holds(
            json!({"path": ["realm_access", "roles"], "anyOf": ["ops", "admin"]}),
            keycloak.clone()
        ));
        assert!(!holds(
            json!({"path": ["realm_access", "roles"], "anyOf": ["ops"]}),
            keycloak.clone()
        ));
        assert!(holds(
            json!({"path": ["realm_access", "roles"], "allOf": ["admin", "user"]}),
            keycloak.clone()
        ));
        assert!(!holds(
            json!({"path": ["realm_access", "roles"], "allOf": ["admin", "ops"]}),
            keycloak
        ));
        assert!(holds(
            json!({"path": "hd", "anyOf": ["example.com"]}),
            json!({"hd": "example.com"})
        ));
        // A string is one value, never split.
        assert!(!holds(
            json!({"path": "g", "anyOf": ["a"]}),
            json!({"g": "a b"})
        ));
        // allOf of nothing holds on any string or array, never on another type.
        assert!(holds(json!({"path": "g", "allOf": []}), json!({"g": []})));
        assert!(!holds(json!({"path": "g", "allOf": []}), json!({"g": 3})));
    }

    #[test]
    fn a_string_path_is_one_name_taken_whole() {
        let auth0 = json!({"https://example.com/roles": ["editor"], "https:": {"//example": 1}});
        assert!(holds(
            json!({"path": "https://example.com/roles", "anyOf": ["editor"]}),
            auth0
        ));
        assert!(!holds(
            json!({"path": "a.b", "exists": true}),
            json!({"a": {"b": 1}})
        ));
        assert!(holds(
            json!({"path": "a.b", "exists": true}),
            json!({"a.b": 1})
        ));
        assert!(holds(
            json!({"path": ["a", "b"], "exists": true}),
            json!({"a": {"b": 1}})
        ));
    }

    #[test]
    fn a_path_through_a_non_object_finds_nothing() {
        assert!(!holds(
            json!({"path": ["a", "b"], "exists": true}),
            json!({"a": ["b"]})
        ));
        assert!(holds(
            json!({"path": ["a", "b"], "exists": false}),
            json!({"a": "b"})
        ));
    }

    #[test]
    fn matches_must_match_a_whole_value() {
        let spec = json!({"path": "email", "matches": "[^@]+@example\\.com"});
        assert!(holds(spec.clone(), json!({"email": "a@example.com"})));
        assert!(!holds(spec.clone(), json!({"email": "a@example.com.evil"})));
        assert!(!holds(spec.clone(), json!({"email": "a@x.example.com"})));
        assert!(holds(
            json!({"path": "groups", "matches": "team-.*"}),
            json!({"groups": ["x", "team-a"]})
        ));
        // Alternation stays inside the anchors.
        assert!(!holds(
            json!({"path": "e", "matches": "a|b"}),
            json!({"e": "ab"})
        ));
    }

    #[test]
    fn a_claim_of_another_type_does_not_hold() {
        for claims in [
            json!({"c": 1}),
            json!({"c": true}),
            json!({"c": {"x": "a"}}),
            json!({"c": null}),
        ] {
            assert!(!holds(json!({"path": "c", "anyOf": ["a"]}), claims.clone()));
            assert!(!holds(json!({"path": "c", "allOf": ["a"]}), claims.clone()));
            assert!(!holds(
                json!({"path": "c", "matches": ".*"}),
                claims.clone()
            ));
            assert!(!holds(json!({"path": "c", "equals": "a"}), claims.clone()));
            assert!(holds(json!({"path": "c", "exists": true}), claims));
        }
        // Array elements of other types are skipped.
        assert!(holds(
            json!({"path": "c", "anyOf": ["a"]}),
            json!({"c": [1, {"a": 1}, "a"]})
        ));
    }

    #[test]
    fn without_claims_nothing_holds_not_even_exists_false() {
        let cond = condition(json!({"path": "x", "exists": false})).unwrap();
        assert!(!cond.holds(None));
        assert!(cond.holds(json!({}).as_object()));
    }

    #[test]
    fn a_condition_needs_exactly_one_test() {
        let none = condition(json!({"path": "x"})).unwrap_err();
        assert!(
            none[0].contains("exactly one of equals, anyOf, allOf, matches, exists (found none)"),
            "{none:?}"
        );
        let two = condition(json!({"path": "x", "equals": 1, "exists": true})).unwrap_err();
        assert!(two[0].contains("found equals, exists"), "{two:?}");
        let empty = condition(json!({"path": [], "exists": true})).unwrap_err();
        assert!(empty[0].starts_with("c.path:"), "{empty:?}");
    }

    #[test]
    fn a_bad_or_oversized_regex_is_a_config_error() {
        let bad = condition(json!({"path": "x", "matches": "(a"})).unwrap_err();
        assert!(
            bad[0].starts_with("c.matches: invalid regular expression"),
            "{bad:?}"
        );
        let long = "a".repeat(MAX_REGEX_LEN + 1);
        let too_long = condition(json!({"path": "x", "matches": long})).unwrap_err();
        assert!(too_long[0].contains("at most 4096 bytes"), "{too_long:?}");
        assert!(condition(json!({"path": "x", "matches": "a".repeat(MAX_REGEX_LEN)})).is_ok());
        // Within the length bound but past the compiled size bound.
        let big =
            condition(json!({"path": "x", "matches": "(?:(?:a{100}){100}){100}"})).unwrap_err();
        assert!(
            big[0].starts_with("c.matches: invalid regular expression"),
            "{big:?}"
        );
    }

    #[test]
    fn a_path_deeper_than_the_bound_is_refused() {
        let deep: Vec<String> = (0..=MAX_PATH_DEPTH).map(|i| format!("n{i}")).collect();
        assert!(condition(json!({"path": deep, "exists": true})).is_err());
        let ok: Vec<String> = (0..MAX_PATH_DEPTH).map(|i| format!("n{i}")).collect();
        assert!(condition(json!({"path": ok, "exists": true})).is_ok());
    }

    #[test]
    fn scopes_are_read_from_scope_and_scp_strings_and_arrays() {
        let want = vec!["read".to_string(), "write".to_string()];
        assert!(has_scopes(
            json!({"scope": "read write"}).as_object(),
            &want
        ));
        assert!(has_scopes(
            json!({"scp": ["write", "read"]}).as_object(),
            &want
        ));
        assert!(has_scopes(
            json!({"scope": "read", "scp": "write"}).as_object(),
            &want
        ));
        assert!(!has_scopes(json!({"scope": "read"}).as_object(), &want));
        assert!(!has_scopes(json!({"scope": 1}).as_object(), &want));
        assert!(!has_scopes(None, &[]));
        assert!(has_scopes(json!({}).as_object(), &[]));
    }
}
