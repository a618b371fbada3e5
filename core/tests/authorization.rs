//! The Authorization filter through the journey: rule order, each condition
//! kind, the default action, the denial and its `errorResponse`, the
//! identity it reads (JWT, APIKey), the decision record, and its
//! configuration errors with their JSON paths. End to end in
//! `testbed/tests/authorization.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis_core::config::Config;
use portcullis_core::decision::Verdict;
use portcullis_core::jwt::KeySet;
use portcullis_core::pipeline::{Host, Journey, Step};
use portcullis_core::request::Request;
use serde_json::{json, Value};
use std::sync::Arc;

struct NoRemoteKeys;

impl Host for NoRemoteKeys {
    fn keys(&self, _source: usize) -> Option<Arc<KeySet>> {
        None
    }
    fn refresh_for_unknown_key(&self, _source: usize) -> bool {
        false
    }
}

/// An unsigned token (alg none) with these claims.
fn token(claims: Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A configuration of a JWT filter (alg none), an Authorization filter with
/// `authz`, and one rule running both (more filters in `extra`).
fn config_with(authz: Value, extra: Value) -> Result<Config, Vec<String>> {
    let mut filters = vec![
        json!({"name": "jwt", "JWT": {"validAlgorithms": ["none"]}}),
        json!({"name": "authz", "Authorization": authz}),
        json!({"name": "keys", "APIKey": {"keys": [{"value": "k1", "name": "billing-batch"}, {"value": "k2"}]}}),
    ];
    filters.extend(extra.as_array().cloned().unwrap_or_default());
    let text = json!({
        "filters": filters,
        "rules": [
            {"host": "*", "path": "/keys/*", "filters": [{"name": "keys"}, {"name": "authz"}]},
            {"host": "*", "path": "/none/*", "filters": [{"name": "authz"}]},
            {"host": "*", "path": "*", "filters": [{"name": "jwt"}, {"name": "authz"}]}
        ]
    });
    Config::from_json_with_env(text.to_string().as_bytes(), &|_| None)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect())
}

fn config(authz: Value) -> Config {
    config_with(authz, json!([])).unwrap_or_else(|e| panic!("{e:?}"))
}

struct Sent {
    method: &'static str,
    path: &'static str,
    client: &'static str,
    headers: Vec<(String, String)>,
}

fn get(claims: Value) -> Sent {
    Sent {
        method: "GET",
        path: "/api",
        client: "127.0.0.1:40000",
        headers: vec![("authorization".into(), format!("Bearer {}", token(claims)))],
    }
}

impl Sent {
    fn method(mut self, m: &'static str) -> Sent {
        self.method = m;
        self
    }
    fn from(mut self, client: &'static str) -> Sent {
        self.client = client;
        self
    }
    fn header(mut self, n: &str, v: &str) -> Sent {
        self.headers.push((n.into(), v.into()));
        self
    }
    fn path(mut self, p: &'static str) -> Sent {
        self.path = p;
        self
    }
}

/// What the client sees and the decision record's fields.
#[derive(Debug)]
struct Seen {
    status: u16,
    body: String,
    content_type: Option<String>,
    verdict: Verdict,
    filter: Option<String>,
    rule: Option<String>,
    subject: Option<String>,
}

fn send(config: &Config, sent: Sent) -> Seen {
    let mut pairs = vec![
        (":method".to_string(), sent.method.to_string()),
        (":authority".to_string(), "api.example.com".to_string()),
        (":path".to_string(), sent.path.to_string()),
        (":scheme".to_string(), "https".to_string()),
    ];
    pairs.extend(sent.headers);
    let mut req = Request::from_header_pairs(pairs);
    req.source_address = sent.client.to_string();
    let mut journey = Journey::new(config, &req);
    let step = journey.run(config, &mut req, &NoRemoteKeys, 1_700_000_000.0);
    let (status, body, content_type, answered) = match &step {
        Step::Continue(_) => (200, String::new(), None, None),
        Step::Respond(r) => (
            r.status,
            String::from_utf8_lossy(&r.body).into_owned(),
            r.header("content-type").map(str::to_string),
            Some(r.status),
        ),
        other => panic!("unexpected step {other:?}"),
    };
    let record = journey.decision(config, answered);
    Seen {
        status,
        body,
        content_type,
        verdict: record.verdict,
        filter: record.filter.map(str::to_string),
        rule: record.rule.map(str::to_string),
        subject: record.subject.map(str::to_string),
    }
}

fn allow(name: &str, conditions: Value) -> Value {
    let mut rule = json!({"name": name, "action": "Allow"});
    rule.as_object_mut()
        .unwrap()
        .extend(conditions.as_object().cloned().unwrap_or_default());
    rule
}

#[test]
fn the_first_rule_that_holds_decides_in_order() {
    let c = config(json!({"rules": [
        {"name": "deny-bob", "action": "Deny", "claims": [{"path": "sub", "equals": "bob"}]},
        allow("everyone", json!({})),
        {"name": "never-reached", "action": "Deny"}
    ]}));
    let alice = send(&c, get(json!({"sub": "alice"})));
    assert_eq!(
        (alice.status, alice.rule.as_deref()),
        (200, Some("everyone"))
    );
    let bob = send(&c, get(json!({"sub": "bob"})));
    assert_eq!((bob.status, bob.rule.as_deref()), (403, Some("deny-bob")));
}

#[test]
fn no_rule_holding_takes_the_default_action_deny_when_absent() {
    let rules = json!([allow(
        "admins",
        json!({"claims": [{"path": "role", "equals": "admin"}]})
    )]);
    let deny = config(json!({"rules": rules}));
    let seen = send(&deny, get(json!({"sub": "a", "role": "user"})));
    assert_eq!(seen.status, 403);
    assert_eq!(seen.rule.as_deref(), Some("default"));
    assert_eq!(
        seen.body,
        r#"{"message":"access denied","status_code":403}"#
    );
    assert_eq!(seen.content_type.as_deref(), Some("application/json"));
    let open = config(json!({"defaultAction": "Allow", "rules": rules}));
    let seen = send(&open, get(json!({"sub": "a", "role": "user"})));
    assert_eq!((seen.status, seen.rule.as_deref()), (200, Some("default")));
    // No rules at all: the default decides every request.
    let empty = config(json!({}));
    assert_eq!(send(&empty, get(json!({"sub": "a"}))).status, 403);
}

#[test]
fn methods_hold_for_any_listed_method() {
    let c = config(json!({"rules": [allow("write", json!({"methods": ["POST", "PUT"]}))]}));
    assert_eq!(send(&c, get(json!({})).method("PUT")).status, 200);
    assert_eq!(send(&c, get(json!({})).method("GET")).status, 403);
}

#[test]
fn client_cidrs_hold_for_the_envoy_source_address_v4_and_v6() {
    let c = config(json!({"defaultAction": "Allow", "rules": [
        {"name": "no-partners", "action": "Deny", "clientCIDRs": ["198.51.100.0/24", "2001:db8::/32"]}
    ]}));
    assert_eq!(
        send(&c, get(json!({})).from("198.51.100.9:5000")).status,
        403
    );
    assert_eq!(
        send(&c, get(json!({})).from("[2001:db8::1]:5000")).status,
        403
    );
    assert_eq!(
        send(&c, get(json!({})).from("198.51.101.9:5000")).status,
        200
    );
    // An address Envoy gives in no IP form (a pipe) is in no network.
    assert_eq!(send(&c, get(json!({})).from("")).status, 200);
}

#[test]
fn headers_hold_as_if_request_header_conditions() {
    let c = config(json!({"rules": [allow("canary", json!({"headers": [
        {"name": "X-Canary", "value": "1"},
        {"name": "X-Debug", "negate": true},
        {"name": "X-Tenant", "valueRegex": "t-[0-9]+"}
    ]}))]}));
    let ok = get(json!({}))
        .header("x-canary", "1")
        .header("x-tenant", "t-42");
    assert_eq!(send(&c, ok).status, 200);
    let debug = get(json!({}))
        .header("x-canary", "1")
        .header("x-tenant", "t-42")
        .header("x-debug", "");
    assert_eq!(send(&c, debug).status, 403);
    let bad_tenant = get(json!({}))
        .header("x-canary", "1")
        .header("x-tenant", "t-42x");
    assert_eq!(send(&c, bad_tenant).status, 403);
}

#[test]
fn scopes_must_all_be_granted_by_scope_or_scp() {
    let c = config(json!({"rules": [allow("rw", json!({"scopes": ["read", "write"]}))]}));
    assert_eq!(send(&c, get(json!({"scope": "write read"}))).status, 200);
    assert_eq!(send(&c, get(json!({"scp": ["read", "write"]}))).status, 200);
    assert_eq!(send(&c, get(json!({"scope": "read"}))).status, 403);
}

#[test]
fn claim_conditions_on_the_real_idp_shapes() {
    let c = config(json!({"rules": [
        allow("keycloak-realm", json!({"claims": [{"path": ["realm_access", "roles"], "anyOf": ["ops"]}]})),
        allow("keycloak-client", json!({"claims": [{"path": ["resource_access", "shop", "roles"], "allOf": ["buyer", "vip"]}]})),
        allow("auth0", json!({"claims": [{"path": "https://example.com/roles", "anyOf": ["editor"]}]})),
        allow("entra", json!({"claims": [{"path": "groups", "anyOf": ["5e1f3c0a-8f1b-4c5e-9d63-2f1a7b9c0d11"]}, {"path": "roles", "anyOf": ["Reports.Read"]}]})),
        allow("okta", json!({"claims": [{"path": "groups", "anyOf": ["Everyone-Admins"]}]})),
        allow("google", json!({"claims": [{"path": "hd", "equals": "example.com"}, {"path": "email_verified", "equals": true}]}))
    ]}));
    let cases = [
        (
            json!({"realm_access": {"roles": ["offline_access", "ops"]}}),
            "keycloak-realm",
        ),
        (
            json!({"resource_access": {"shop": {"roles": ["buyer", "vip"]}, "account": {"roles": ["ops"]}}}),
            "keycloak-client",
        ),
        (json!({"https://example.com/roles": ["editor"]}), "auth0"),
        (
            json!({"groups": ["5e1f3c0a-8f1b-4c5e-9d63-2f1a7b9c0d11"], "roles": ["Reports.Read"]}),
            "entra",
        ),
        (json!({"groups": ["Everyone", "Everyone-Admins"]}), "okta"),
        (
            json!({"hd": "example.com", "email_verified": true, "email": "a@example.com"}),
            "google",
        ),
    ];
    for (claims, rule) in cases {
        let seen = send(&c, get(claims.clone()));
        assert_eq!(
            (seen.status, seen.rule.as_deref()),
            (200, Some(rule)),
            "{claims}"
        );
    }
    // Near misses: the client's roles under another client, an unverified
    // Google address, a string where Entra sends an array of ids.
    for claims in [
        json!({"resource_access": {"other": {"roles": ["buyer", "vip"]}}}),
        json!({"resource_access": {"shop": {"roles": ["buyer"]}}}),
        json!({"hd": "example.com", "email_verified": "true"}),
        json!({"https://example.com": {"roles": ["editor"]}}),
    ] {
        assert_eq!(send(&c, get(claims.clone())).status, 403, "{claims}");
    }
}

#[test]
fn without_an_identity_claims_and_scopes_never_hold() {
    let c = config(json!({"defaultAction": "Deny", "rules": [
        allow("absent", json!({"claims": [{"path": "x", "exists": false}]})),
        allow("scoped", json!({"scopes": []})),
        allow("network", json!({"clientCIDRs": ["127.0.0.0/8"], "methods": ["DELETE"]}))
    ]}));
    let none = Sent {
        headers: vec![],
        ..get(json!({}))
    }
    .path("/none/x");
    let seen = send(&c, none);
    assert_eq!((seen.status, seen.rule.as_deref()), (403, Some("default")));
    let delete = Sent {
        headers: vec![],
        ..get(json!({}))
    }
    .path("/none/x")
    .method("DELETE");
    assert_eq!(send(&c, delete).rule.as_deref(), Some("network"));
    // With a token, `exists: false` holds on a claim it lacks.
    assert_eq!(send(&c, get(json!({}))).rule.as_deref(), Some("absent"));
}

#[test]
fn error_response_templates_see_the_token_and_the_rule() {
    let c = config(json!({
        "rules": [{"name": "no-guests", "action": "Deny", "claims": [{"path": "guest", "equals": true}]}],
        "errorResponse": {
            "headers": [{"name": "X-Denied-By", "value": "{{ .rule }}"}, {"name": "Content-Type", "value": "text/plain"}],
            "bodyTemplate": "{{ .token.Claims.sub }} may not: {{ .message }} ({{ .status_code }}, {{ .rule }})"
        }
    }));
    let mut pairs = vec![
        (":method".to_string(), "GET".to_string()),
        (":authority".to_string(), "h".to_string()),
        (":path".to_string(), "/api".to_string()),
        (
            "authorization".to_string(),
            format!("Bearer {}", token(json!({"sub": "eve", "guest": true}))),
        ),
    ];
    pairs.push(("x-request-id".into(), "r1".into()));
    let mut req = Request::from_header_pairs(pairs);
    let mut journey = Journey::new(&c, &req);
    let Step::Respond(r) = journey.run(&c, &mut req, &NoRemoteKeys, 1_700_000_000.0) else {
        panic!("not denied")
    };
    assert_eq!(r.status, 403);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "eve may not: access denied (403, no-guests)"
    );
    assert_eq!(r.header("x-denied-by"), Some("no-guests"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(
        send(&c, get(json!({"sub": "x"}))).body,
        "x may not: access denied (403, default)"
    );
}

#[test]
fn the_decision_record_names_the_filter_rule_and_subject() {
    let c = config(json!({"rules": [allow("all", json!({}))]}));
    let allowed = send(&c, get(json!({"sub": "alice"})));
    assert_eq!(allowed.verdict, Verdict::Allow);
    assert_eq!(allowed.filter.as_deref(), Some("authz"));
    assert_eq!(allowed.rule.as_deref(), Some("all"));
    assert_eq!(allowed.subject.as_deref(), Some("alice"));
    // The JWT filter answers: the rule is unset, the filter is the JWT's.
    let missing = send(
        &c,
        Sent {
            headers: vec![],
            ..get(json!({}))
        },
    );
    assert_eq!((missing.status, missing.verdict), (401, Verdict::Deny));
    assert_eq!(missing.filter.as_deref(), Some("jwt"));
    assert_eq!(missing.rule, None);
    assert_eq!(missing.subject, None);
}

#[test]
fn an_api_key_name_is_the_subject_and_has_no_claims() {
    let c = config(
        json!({"rules": [allow("named", json!({"claims": [{"path": "sub", "exists": false}]})), allow("any", json!({}))]}),
    );
    let named = Sent {
        headers: vec![("x-api-key".into(), "k1".into())],
        ..get(json!({}))
    }
    .path("/keys/a");
    let seen = send(&c, named);
    assert_eq!(
        (seen.status, seen.rule.as_deref(), seen.subject.as_deref()),
        (200, Some("any"), Some("billing-batch"))
    );
    let unnamed = Sent {
        headers: vec![("x-api-key".into(), "k2".into())],
        ..get(json!({}))
    }
    .path("/keys/a");
    assert_eq!(send(&c, unnamed).subject, None);
}

#[test]
fn configuration_faults_name_their_json_path() {
    let cases = [
        (json!({"rules": [{"name": "a", "action": "Permit"}]}), "filters[1].Authorization.rules[0].action: must be \"Allow\" or \"Deny\""),
        (json!({"defaultAction": "allow"}), "filters[1].Authorization.defaultAction: must be"),
        (json!({"rules": [{"name": "a", "action": "Allow"}, {"name": "a", "action": "Deny"}]}), "filters[1].Authorization.rules[1].name: duplicate rule name \"a\""),
        (json!({"rules": [{"name": "a", "action": "Allow", "clientCIDRs": ["10.0.0.0/8", "10.0.0.0/40"]}]}), "filters[1].Authorization.rules[0].clientCIDRs[1]:"),
        (json!({"rules": [{"name": "a", "action": "Allow", "claims": [{"path": "e", "matches": "(x"}]}]}), "filters[1].Authorization.rules[0].claims[0].matches: invalid regular expression"),
        (json!({"rules": [{"name": "a", "action": "Allow", "claims": [{"path": "e"}]}]}), "filters[1].Authorization.rules[0].claims[0]: a claim condition has exactly one of equals, anyOf, allOf, matches, exists (found none)"),
        (json!({"rules": [{"name": "a", "action": "Allow", "claims": [{"path": "e", "anyOf": ["x"], "matches": "x"}]}]}), "(found anyOf, matches)"),
        (json!({"rules": [{"name": "a", "action": "Allow", "roles": ["x"]}]}), "filters[1].Authorization.rules[0]"),
        (json!({"rules": [{"name": "default", "action": "Allow"}]}), "filters[1].Authorization.rules[0].name"),
        (json!({"errorResponse": {"realm": "x"}}), "filters[1].Authorization.errorResponse.realm"),
        (json!({"rules": [{"name": "a", "action": "Allow", "headers": [{"name": "x", "valueRegex": "("}]}]}), "filters[1].Authorization.rules[0].headers[0].valueRegex"),
    ];
    for (authz, expected) in cases {
        let errors = config_with(authz.clone(), json!([]))
            .err()
            .unwrap_or_else(|| panic!("accepted {authz}"));
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{authz}: {errors:?}"
        );
    }
}

#[test]
fn rule_count_is_bounded() {
    let rules: Vec<Value> = (0..=portcullis_core::authorization::MAX_RULES)
        .map(|i| json!({"name": format!("r{i}"), "action": "Allow"}))
        .collect();
    let errors = config_with(json!({"rules": rules}), json!([]))
        .err()
        .unwrap();
    assert!(
        errors.iter().any(|e| e.contains("at most 256 rules")),
        "{errors:?}"
    );
    let ok: Vec<Value> = rules
        .into_iter()
        .take(portcullis_core::authorization::MAX_RULES)
        .collect();
    assert!(config_with(json!({"rules": ok}), json!([])).is_ok());
}

#[test]
fn authorization_takes_no_arguments() {
    let text = json!({
        "filters": [{"name": "authz", "Authorization": {}}],
        "rules": [{"filters": [{"name": "authz", "arguments": {"x": 1}}]}]
    });
    let errors = Config::from_json_with_env(text.to_string().as_bytes(), &|_| None).unwrap_err();
    assert!(
        errors[0]
            .to_string()
            .contains("rules[0].filters[0].arguments: Authorization filters take no arguments"),
        "{errors:?}"
    );
}

#[test]
fn a_lean_request_fetches_what_extract_from_and_methods_need() {
    let text = json!({
        "filters": [
            {"name": "jwt", "JWT": {"validAlgorithms": ["none"], "extractFrom": {
                "headers": [{"name": "X-Token", "valuePrefix": "Tok "}], "cookies": ["jwt"], "params": ["t"]}}},
            {"name": "authz", "Authorization": {"rules": [{"name": "r", "action": "Allow", "methods": ["GET"]}]}}
        ],
        "rules": [{"host": "*", "path": "*", "filters": [{"name": "jwt"}, {"name": "authz"}]}]
    });
    let c = Config::from_json_with_env(text.to_string().as_bytes(), &|_| None).unwrap();
    assert_eq!(
        c.lean_headers.as_deref(),
        Some(
            &[
                "x-token".to_string(),
                "cookie".to_string(),
                ":path".to_string(),
                ":method".to_string()
            ][..]
        )
    );
    // A lean request from those alone passes on a token in the parameter.
    let t = token(json!({"sub": "p"}));
    let mut req = Request::lean(vec![
        (":path".to_string(), format!("/a?t={t}")),
        (":method".to_string(), "GET".to_string()),
    ]);
    let mut journey = Journey::new(&c, &req);
    let step = journey.run(&c, &mut req, &NoRemoteKeys, 1_700_000_000.0);
    assert!(matches!(step, Step::Continue(_)), "{step:?}");
    assert_eq!(journey.decision(&c, None).subject, Some("p"));
    // A header condition in the Authorization filter: every header is read.
    let text = text
        .to_string()
        .replace(r#""methods":["GET"]"#, r#""headers":[{"name":"x-a"}]"#);
    let c = Config::from_json_with_env(text.as_bytes(), &|_| None).unwrap();
    assert_eq!(c.lean_headers, None);
}
