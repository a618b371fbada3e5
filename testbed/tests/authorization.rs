//! The Authorization filter end to end in a real Envoy, on JWT identities
//! shaped as real IdPs shape them (Keycloak realm and client roles, Auth0
//! namespaced claims, Entra ID groups and roles, Okta groups, Google `hd` and
//! `email_verified`); rule order, methods, client networks, headers, scopes,
//! the default action and the 403; JWT `extractFrom` in its order; and the
//! decision as Envoy filter state, read by a real access log line and by an
//! Envoy `rbac` filter after Portcullis (CEL `filter_state[...]`). One Envoy
//! for the file.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{assert_default_body, jwks, passed, show, token, AUDIENCE, ISSUER};
use portcullis_testbed::client::{self, Response};
use portcullis_testbed::servers::EchoUpstream;
use portcullis_testbed::{Envoy, EnvoyConfig};
use serde_json::{json, Value};

struct Fixture {
    envoy: Envoy,
    _echo: EchoUpstream,
}

/// The access log line: the case id the test sends, the status, and the
/// four filter state values.
const LOG_FORMAT: &str = "authz-log case=%REQ(X-Case)% status=%RESPONSE_CODE% decision=%FILTER_STATE(wasm.portcullis.decision:PLAIN)% filter=%FILTER_STATE(wasm.portcullis.filter:PLAIN)% rule=%FILTER_STATE(wasm.portcullis.rule:PLAIN)% subject=%FILTER_STATE(wasm.portcullis.subject:PLAIN)%";

fn allow(name: &str, conditions: Value) -> Value {
    tokens_merge(json!({"name": name, "action": "Allow"}), conditions)
}

fn tokens_merge(a: Value, b: Value) -> Value {
    portcullis_testbed::tokens::merge(a, b)
}

/// Envoy's RBAC filter denying the subject `mallory` through CEL:
/// `filter_state['wasm.portcullis.subject'] == b'mallory'` (a Wasm filter
/// state object serializes as its bytes).
fn rbac_denying_mallory() -> Value {
    let subject = json!({"call_expr": {"function": "_[_]", "args": [
        {"ident_expr": {"name": "filter_state"}},
        {"const_expr": {"string_value": "wasm.portcullis.subject"}}
    ]}});
    json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "DENY", "policies": {"no-mallory": {
                "permissions": [{"any": true}],
                "principals": [{"any": true}],
                "condition": {"call_expr": {"function": "_==_", "args": [
                    subject,
                    {"const_expr": {"bytes_value": "bWFsbG9yeQ=="}}
                ]}}
            }}}
        }
    })
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let echo = EchoUpstream::start();
        let jwt = json!({"jwks": jwks(), "issuer": ISSUER, "audience": AUDIENCE});
        let plugin = json!({
            "filters": [
                { "name": "jwt", "JWT": jwt },
                { "name": "places", "JWT": tokens_merge(jwt.clone(), json!({"extractFrom": {
                    "headers": [{"name": "X-Token", "valuePrefix": "Tok "}],
                    "cookies": ["jwt"],
                    "params": ["access_token"]
                }})) },
                { "name": "keys", "APIKey": {"keys": [{"value": "k-batch", "name": "billing-batch"}]} },
                { "name": "idp-roles", "Authorization": { "rules": [
                    allow("keycloak-realm", json!({"claims": [{"path": ["realm_access", "roles"], "anyOf": ["ops"]}]})),
                    allow("keycloak-client", json!({"claims": [{"path": ["resource_access", "shop", "roles"], "allOf": ["buyer", "vip"]}]})),
                    allow("auth0", json!({"claims": [{"path": "https://example.com/roles", "anyOf": ["editor"]}]})),
                    allow("entra", json!({"claims": [
                        {"path": "groups", "anyOf": ["5e1f3c0a-8f1b-4c5e-9d63-2f1a7b9c0d11"]},
                        {"path": "roles", "anyOf": ["Reports.Read"]}]})),
                    allow("okta", json!({"claims": [{"path": "groups", "anyOf": ["Everyone-Admins"]}]})),
                    allow("google", json!({"claims": [
                        {"path": "hd", "equals": "example.com"},
                        {"path": "email_verified", "equals": true},
                        {"path": "email", "matches": "[^@]+@example\\.com"}]}))
                ] } },
                { "name": "request-facts", "Authorization": {
                    "defaultAction": "Allow",
                    "rules": [
                        {"name": "partners", "action": "Deny", "clientCIDRs": ["198.51.100.0/24"]},
                        allow("local-writers", json!({"methods": ["POST", "DELETE"], "clientCIDRs": ["127.0.0.0/8"], "scopes": ["write"]})),
                        {"name": "no-anonymous-writes", "action": "Deny", "methods": ["POST", "DELETE"]},
                        {"name": "no-debug", "action": "Deny", "headers": [{"name": "X-Debug"}]}
                    ],
                    "errorResponse": {
                        "headers": [{"name": "X-Denied-By", "value": "{{ .rule }}"}],
                        "bodyTemplate": "{{ .token.Claims.sub }}: {{ .message }} by {{ .rule }}"
                    }
                } },
                { "name": "anyone", "Authorization": { "defaultAction": "Allow" } }
            ],
            "rules": [
                { "host": "*", "path": "/idp/*", "filters": [{"name": "jwt"}, {"name": "idp-roles"}] },
                { "host": "*", "path": "/facts/*", "filters": [{"name": "jwt"}, {"name": "request-facts"}] },
                { "host": "*", "path": "/places/*", "filters": [{"name": "places"}, {"name": "anyone"}] },
                { "host": "*", "path": "/keys/*", "filters": [{"name": "keys"}] },
                { "host": "*", "path": "/jwt/*", "filters": [{"name": "jwt"}] }
            ]
        });
        let cfg = EnvoyConfig::new(echo.port())
            .plugin(plugin)
            .after_plugin(rbac_denying_mallory())
            .access_log(LOG_FORMAT)
            .build();
        Fixture {
            envoy: Envoy::start(&cfg),
            _echo: echo,
        }
    })
}

fn send(method: &str, path: &str, claims: Value, case: &str, extra: &[(&str, &str)]) -> Response {
    let auth = format!("Bearer {}", token("RS256", claims));
    let mut headers = vec![("Authorization", auth.as_str()), ("X-Case", case)];
    headers.extend_from_slice(extra);
    client::request(fx().envoy.port("main"), method, path, &headers, b"")
}

/// The access log line of `case` (waited for: Envoy writes it after the
/// response).
fn log_line(case: &str) -> String {
    let needle = format!("authz-log case={case} ");
    assert!(
        fx().envoy.wait_for_log(&needle, Duration::from_secs(10)),
        "no access log line for {case}:\n{}",
        fx().envoy.log_tail(20)
    );
    fx().envoy
        .log()
        .lines()
        .find(|l| l.contains(&needle))
        .map(|l| {
            l.get(l.find("authz-log").unwrap_or(0)..)
                .unwrap_or(l)
                .to_string()
        })
        .unwrap_or_default()
}

#[test]
fn each_idp_claim_shape_is_allowed_by_its_rule() {
    let cases = [
        (
            "keycloak-realm",
            json!({"realm_access": {"roles": ["offline_access", "ops"]}}),
        ),
        (
            "keycloak-client",
            json!({"resource_access": {"shop": {"roles": ["buyer", "vip"]}, "account": {"roles": ["manage-account"]}}}),
        ),
        ("auth0", json!({"https://example.com/roles": ["editor"]})),
        (
            "entra",
            json!({"groups": ["5e1f3c0a-8f1b-4c5e-9d63-2f1a7b9c0d11"], "roles": ["Reports.Read"]}),
        ),
        ("okta", json!({"groups": ["Everyone", "Everyone-Admins"]})),
        (
            "google",
            json!({"hd": "example.com", "email_verified": true, "email": "ann@example.com"}),
        ),
    ];
    for (rule, claims) in cases {
        let case = format!("idp-{rule}");
        let r = send("GET", "/idp/x", claims, &case, &[]);
        passed(&fx().envoy, &r, rule);
        let line = log_line(&case);
        assert!(
            line.contains(&format!(
                "decision=allow filter=idp-roles rule={rule} subject=user-1"
            )),
            "{line}"
        );
    }
}

#[test]
fn near_misses_of_each_idp_shape_take_the_default_deny() {
    let cases = [
        json!({"realm_access": {"roles": ["user"]}}),
        json!({"resource_access": {"account": {"roles": ["buyer", "vip"]}}}),
        json!({"resource_access": {"shop": {"roles": ["buyer"]}}}),
        json!({"https://example.com": {"roles": ["editor"]}}),
        json!({"groups": ["5e1f3c0a-8f1b-4c5e-9d63-2f1a7b9c0d11"], "roles": "Reports.Read.All"}),
        json!({"groups": "Everyone-Admins-2"}),
        json!({"hd": "example.com", "email_verified": "true", "email": "ann@example.com"}),
        json!({"hd": "example.com", "email_verified": true, "email": "ann@example.com.evil"}),
    ];
    for (i, claims) in cases.into_iter().enumerate() {
        let case = format!("miss-{i}");
        let r = send("GET", "/idp/x", claims.clone(), &case, &[]);
        assert_eq!(r.status, 403, "{claims}: {}", show(&r));
        assert_default_body(&r, "access denied", 403, &case);
        let line = log_line(&case);
        assert!(
            line.contains("status=403 decision=deny filter=idp-roles rule=default subject=user-1"),
            "{line}"
        );
    }
}

#[test]
fn rules_on_methods_networks_scopes_and_headers_decide_in_order() {
    // Loopback is not a partner network; a POST from loopback with the
    // `write` scope is allowed by the second rule.
    let r = send(
        "POST",
        "/facts/x",
        json!({"scope": "read write"}),
        "facts-writer",
        &[],
    );
    passed(&fx().envoy, &r, "writer");
    assert!(log_line("facts-writer").contains("rule=local-writers"));
    // Without the scope the third rule denies, with its errorResponse.
    let r = send(
        "DELETE",
        "/facts/x",
        json!({"scope": "read", "sub": "dan"}),
        "facts-reader-delete",
        &[],
    );
    assert_eq!(r.status, 403, "{}", show(&r));
    assert_eq!(r.header("x-denied-by"), Some("no-anonymous-writes"));
    assert_eq!(r.body_str(), "dan: access denied by no-anonymous-writes");
    // A GET with X-Debug meets the fourth rule; without it, the default allows.
    let r = send(
        "GET",
        "/facts/x",
        json!({}),
        "facts-debug",
        &[("X-Debug", "1")],
    );
    assert_eq!(
        (r.status, r.header("x-denied-by")),
        (403, Some("no-debug")),
        "{}",
        show(&r)
    );
    let r = send("GET", "/facts/x", json!({}), "facts-plain", &[]);
    passed(&fx().envoy, &r, "plain GET");
    assert!(log_line("facts-plain").contains("decision=allow filter=request-facts rule=default"));
}

#[test]
fn extract_from_reads_header_then_cookie_then_parameter() {
    let port = fx().envoy.port("main");
    let good = token("RS256", json!({"sub": "from-place"}));
    let bad = "not.a.token";
    // The header with its prefix comes first: a bad token there decides.
    let tok = format!("Tok {bad}");
    let cookie = format!("jwt={good}");
    let r = client::get(
        port,
        &format!("/places/a?access_token={good}"),
        &[("X-Token", &tok), ("Cookie", &cookie)],
    );
    assert_eq!(r.status, 401, "{}", show(&r));
    // A header without the prefix holds none: the cookie decides.
    let r = client::get(
        port,
        &format!("/places/a?access_token={bad}"),
        &[("X-Token", &good), ("Cookie", &cookie)],
    );
    passed(&fx().envoy, &r, "cookie");
    // No header, no cookie: the parameter.
    let r = client::get(
        port,
        &format!("/places/a?x=1&access_token={good}"),
        &[("X-Case", "param")],
    );
    passed(&fx().envoy, &r, "param");
    assert!(log_line("param").contains("subject=from-place"));
    // With extractFrom, Authorization: Bearer is not among the places.
    let bearer = format!("Bearer {good}");
    let r = client::get(port, "/places/a", &[("Authorization", &bearer)]);
    assert_eq!(r.status, 401, "{}", show(&r));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"places\"")
    );
}

#[test]
fn a_token_from_a_query_parameter_is_never_in_the_plugin_log() {
    let secret_sub = "param-subject-7f3a";
    let good = token("RS256", json!({"sub": secret_sub}));
    let r = client::get(
        fx().envoy.port("main"),
        &format!("/places/b?access_token={good}"),
        &[("X-Case", "param-log")],
    );
    passed(&fx().envoy, &r, "param");
    log_line("param-log");
    let payload = good.split('.').nth(1).unwrap_or("");
    let plugin_log: String = fx()
        .envoy
        .log()
        .lines()
        .filter(|l| !l.contains("authz-log"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !plugin_log.contains(payload),
        "the token's payload is in Envoy's log"
    );
}

#[test]
fn the_access_log_prints_the_decision_for_jwt_api_keys_and_denials() {
    let r = send("GET", "/jwt/a", json!({"sub": "alice"}), "log-jwt", &[]);
    passed(&fx().envoy, &r, "jwt");
    let line = log_line("log-jwt");
    assert!(
        line.contains("status=200 decision=allow filter=jwt rule=- subject=alice"),
        "{line}"
    );
    let r = client::get(
        fx().envoy.port("main"),
        "/keys/a",
        &[("X-API-Key", "k-batch"), ("X-Case", "log-key")],
    );
    passed(&fx().envoy, &r, "key");
    assert!(log_line("log-key").contains("decision=allow filter=keys rule=- subject=billing-batch"));
    let r = client::get(fx().envoy.port("main"), "/jwt/a", &[("X-Case", "log-none")]);
    assert_eq!(r.status, 401);
    let line = log_line("log-none");
    assert!(
        line.contains("status=401 decision=deny filter=jwt rule=- subject=-"),
        "{line}"
    );
}

#[test]
fn envoy_rbac_after_portcullis_reads_the_subject_from_filter_state() {
    let r = send(
        "GET",
        "/jwt/a",
        json!({"sub": "mallory"}),
        "rbac-mallory",
        &[],
    );
    assert_eq!(r.status, 403, "{}", show(&r));
    assert_eq!(r.body_str(), "RBAC: access denied");
    assert!(log_line("rbac-mallory").contains("decision=allow filter=jwt rule=- subject=mallory"));
    let r = send(
        "GET",
        "/jwt/a",
        json!({"sub": "mallory2"}),
        "rbac-other",
        &[],
    );
    passed(&fx().envoy, &r, "another subject");
}
