use super::proto::{self, *};
use super::spec::ExternalSpec;
use super::*;
use prost::Message;
use serde_json::{json, Value};

fn compile_with_clusters(
    spec: Value,
    clusters: &[(&str, &str)],
) -> (Result<ExternalFilter, Vec<ConfigError>>, Vec<String>) {
    let spec: ExternalSpec = serde_json::from_value(spec).unwrap();
    let clusters = clusters
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let mut errors = Vec::new();
    let mut notices = Vec::new();
    let filter = compile_parts(
        &clusters,
        "filters[0].External",
        &spec,
        &mut errors,
        &mut notices,
    );
    match filter {
        Some(f) if errors.is_empty() => (Ok(f), notices),
        _ => (Err(errors), notices),
    }
}

fn filter(spec: Value) -> ExternalFilter {
    compile_with_clusters(spec, &[]).0.unwrap()
}

fn errors(spec: Value) -> Vec<String> {
    match compile_with_clusters(spec, &[]).0 {
        Ok(_) => panic!("expected a config error"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

fn request(pairs: &[(&str, &str)]) -> Request {
    let mut all = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), "/api/items?id=7&x=y".to_string()),
        (":authority".to_string(), "app.example.com".to_string()),
        (":scheme".to_string(), "https".to_string()),
    ];
    for (n, v) in pairs {
        if let Some(slot) = all
            .iter_mut()
            .find(|(name, _)| name == n && n.starts_with(':'))
        {
            slot.1 = v.to_string();
        } else {
            all.push((n.to_string(), v.to_string()));
        }
    }
    Request::from_header_pairs(all)
}

fn no_ext() -> BTreeMap<String, String> {
    BTreeMap::new()
}

const NOW: f64 = 1_700_000_000.5;

fn http_check(
    f: &ExternalFilter,
    r: &Request,
    body: Option<RequestBody<'_>>,
) -> (Vec<(String, String)>, Vec<u8>) {
    match f.build_check(r, body, &no_ext(), NOW).unwrap().kind {
        CalloutKind::Http { headers, body } => (text_headers(&headers), body),
        other => panic!("not HTTP: {other:?}"),
    }
}

fn text_headers(headers: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.clone(), String::from_utf8(v.clone()).unwrap()))
        .collect()
}

fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn http_answer(status: u16, headers: &[(&str, &str)], body: &str) -> CalloutAnswer {
    CalloutAnswer::Http {
        status,
        headers: headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.as_bytes().to_vec()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

fn allow(outcome: ExternalOutcome) -> Vec<HeaderChange> {
    match outcome {
        ExternalOutcome::Allow(c) => c,
        other => panic!("expected Allow, got {other:?}"),
    }
}

fn deny(outcome: ExternalOutcome) -> Response {
    match outcome {
        ExternalOutcome::Deny(r) => r,
        other => panic!("expected Deny, got {other:?}"),
    }
}

fn body_text(r: &Response) -> &str {
    std::str::from_utf8(&r.body).unwrap()
}

// ---- HTTP check request ----

#[test]
fn http_check_uses_the_client_method() {
    let f = filter(json!({"auth_service": "auth:3000"}));
    let (headers, _) = http_check(&f, &request(&[(":method", "DELETE")]), None);
    assert_eq!(values(&headers, ":method"), ["DELETE"]);
}

#[test]
fn http_check_path_is_prefix_plus_path_and_query() {
    let f = filter(json!({"auth_service": "auth:3000", "path_prefix": "/extauth"}));
    let (headers, _) = http_check(&f, &request(&[]), None);
    assert_eq!(values(&headers, ":path"), ["/extauth/api/items?id=7&x=y"]);
    let f = filter(json!({"auth_service": "auth:3000"}));
    let (headers, _) = http_check(&f, &request(&[]), None);
    assert_eq!(values(&headers, ":path"), ["/api/items?id=7&x=y"]);
}

#[test]
fn http_check_scheme_cluster_and_timeout_come_from_auth_service_authority_from_the_client() {
    let (f, _) = compile_with_clusters(
        json!({"auth_service": "https://auth.example:8443", "timeout_ms": 750}),
        &[("auth.example:8443", "authsvc")],
    );
    let f = f.unwrap();
    let callout = f.build_check(&request(&[]), None, &no_ext(), NOW).unwrap();
    assert_eq!(callout.cluster, "authsvc");
    assert_eq!(callout.timeout, Duration::from_millis(750));
    let CalloutKind::Http { headers, .. } = callout.kind else {
        panic!()
    };
    let headers = text_headers(&headers);
    assert_eq!(values(&headers, ":authority"), ["app.example.com"]);
    assert_eq!(values(&headers, ":scheme"), ["https"]);

    let f = filter(json!({"auth_service": "auth:3000"}));
    let callout = f.build_check(&request(&[]), None, &no_ext(), NOW).unwrap();
    assert_eq!(callout.cluster, "auth");
    assert_eq!(callout.timeout, Duration::from_millis(5000));
}

#[test]
fn http_check_sends_always_sent_headers_with_every_value() {
    let f = filter(json!({"auth_service": "auth:3000"}));
    let r = request(&[
        ("authorization", "Bearer t"),
        ("cookie", "a=1"),
        ("cookie", "b=2"),
        ("from", "me@example.com"),
        ("proxy-authorization", "Basic x"),
        ("user-agent", "curl"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-host", "app.example.com"),
        ("x-forwarded-proto", "https"),
    ]);
    let (headers, _) = http_check(&f, &r, None);
    assert_eq!(values(&headers, "authorization"), ["Bearer t"]);
    assert_eq!(values(&headers, "cookie"), ["a=1", "b=2"]);
    for name in ALWAYS_SENT_REQUEST_HEADERS {
        assert_eq!(
            values(&headers, name).len(),
            if *name == "cookie" { 2 } else { 1 },
            "{name}"
        );
    }
}

#[test]
fn http_check_allowlist_is_case_insensitive() {
    let f = filter(
        json!({"auth_service": "auth:3000", "allowed_request_headers": ["X-Tenant", "x-TRACE"]}),
    );
    let r = request(&[("X-TENANT", "t1"), ("x-trace", "a"), ("X-Trace", "b")]);
    let (headers, _) = http_check(&f, &r, None);
    assert_eq!(values(&headers, "x-tenant"), ["t1"]);
    assert_eq!(values(&headers, "x-trace"), ["a", "b"]);
}

#[test]
fn http_check_leaks_no_other_client_header() {
    let f = filter(
        json!({"auth_service": "auth:3000", "include_body": {"max_bytes": 10, "allow_partial": true}}),
    );
    let r = request(&[
        ("content-type", "application/json"),
        ("x-secret", "s"),
        ("accept", "*/*"),
        ("content-length", "2"),
        ("x-envoy-auth-partial-body", "true"),
    ]);
    let body = RequestBody {
        bytes: b"{}",
        complete: true,
    };
    let (headers, _) = http_check(&f, &r, Some(body));
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            ":method",
            ":path",
            ":authority",
            ":scheme",
            "content-length",
            "x-envoy-auth-partial-body"
        ]
    );
    assert_eq!(values(&headers, "content-length"), ["2"]);
    assert_eq!(values(&headers, "x-envoy-auth-partial-body"), ["false"]);
}

#[test]
fn http_check_add_auth_headers_replace_client_values() {
    let f = filter(json!({
        "auth_service": "auth:3000",
        "allowed_request_headers": ["x-added"],
        "add_auth_headers": {"X-Added": "from-config", "x-other": "o"}
    }));
    let r = request(&[("x-added", "from-client"), ("User-Agent", "curl")]);
    let (headers, _) = http_check(&f, &r, None);
    assert_eq!(values(&headers, "x-added"), ["from-config"]);
    assert_eq!(values(&headers, "x-other"), ["o"]);
    assert_eq!(values(&headers, "user-agent"), ["curl"]);
}

#[test]
fn http_check_linkerd_header_names_auth_host_and_port() {
    let f = filter(json!({"auth_service": "auth.ns", "add_linkerd_headers": true}));
    let (headers, _) = http_check(&f, &request(&[("l5d-dst-override", "evil:1")]), None);
    assert_eq!(values(&headers, "l5d-dst-override"), ["auth.ns:80"]);
    let f = filter(json!({"auth_service": "https://auth.ns", "add_linkerd_headers": true}));
    let (headers, _) = http_check(&f, &request(&[]), None);
    assert_eq!(values(&headers, "l5d-dst-override"), ["auth.ns:443"]);
    let f = filter(json!({"auth_service": "auth.ns:3000", "add_linkerd_headers": true}));
    let (headers, _) = http_check(&f, &request(&[]), None);
    assert_eq!(values(&headers, "l5d-dst-override"), ["auth.ns:3000"]);
    let f = filter(json!({"auth_service": "auth.ns:3000"}));
    let (headers, _) = http_check(&f, &request(&[]), None);
    assert!(values(&headers, "l5d-dst-override").is_empty());
}

#[test]
fn http_check_without_include_body_sends_no_body() {
    let f = filter(json!({"auth_service": "auth:3000"}));
    assert_eq!(f.body_policy(), None);
    let body = RequestBody {
        bytes: b"payload",
        complete: true,
    };
    let (headers, sent) = http_check(&f, &request(&[(":method", "POST")]), Some(body));
    assert!(sent.is_empty());
    assert_eq!(values(&headers, "content-length"), ["0"]);
    assert!(values(&headers, "x-envoy-auth-partial-body").is_empty());
}

#[test]
fn include_body_sends_a_full_body() {
    let f = filter(
        json!({"auth_service": "auth:3000", "include_body": {"max_bytes": 16, "allow_partial": false}}),
    );
    assert_eq!(
        f.body_policy(),
        Some(BodyPolicy {
            max_bytes: 16,
            allow_partial: false
        })
    );
    let body = RequestBody {
        bytes: b"hello",
        complete: true,
    };
    let (headers, sent) = http_check(&f, &request(&[(":method", "POST")]), Some(body));
    assert_eq!(sent, b"hello");
    assert_eq!(values(&headers, "content-length"), ["5"]);
    assert_eq!(values(&headers, "x-envoy-auth-partial-body"), ["false"]);
}

#[test]
fn include_body_truncates_with_allow_partial() {
    let f = filter(
        json!({"auth_service": "auth:3000", "include_body": {"max_bytes": 4, "allow_partial": true}}),
    );
    let body = RequestBody {
        bytes: b"hello world",
        complete: true,
    };
    let (headers, sent) = http_check(&f, &request(&[]), Some(body));
    assert_eq!(sent, b"hell");
    assert_eq!(values(&headers, "content-length"), ["4"]);
    assert_eq!(values(&headers, "x-envoy-auth-partial-body"), ["true"]);
    // The host stopped reading at max_bytes: partial too.
    let body = RequestBody {
        bytes: b"hell",
        complete: false,
    };
    let (headers, _) = http_check(&f, &request(&[]), Some(body));
    assert_eq!(values(&headers, "x-envoy-auth-partial-body"), ["true"]);
}

#[test]
fn include_body_too_large_without_allow_partial_is_413() {
    let f = filter(
        json!({"auth_service": "auth:3000", "include_body": {"max_bytes": 4, "allow_partial": false}}),
    );
    for body in [
        RequestBody {
            bytes: b"hello",
            complete: true,
        },
        RequestBody {
            bytes: b"hell",
            complete: false,
        },
    ] {
        let err = f
            .build_check(&request(&[]), Some(body), &no_ext(), NOW)
            .unwrap_err();
        assert_eq!(err.status, 413);
    }
    // Exactly max_bytes and complete is fine.
    let body = RequestBody {
        bytes: b"hell",
        complete: true,
    };
    assert!(f
        .build_check(&request(&[]), Some(body), &no_ext(), NOW)
        .is_ok());
}

// ---- HTTP answers ----

#[test]
fn answer_200_sets_fixed_and_allowed_headers_upstream() {
    let f =
        filter(json!({"auth_service": "auth:3000", "allowed_authorization_headers": ["X-User"]}));
    let changes = allow(f.read_answer(http_answer(
        200,
        &[
            ("Authorization", "Bearer inner"),
            ("x-user", "alice"),
            ("set-cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("x-not-allowed", "no"),
            ("content-type", "text/plain"),
        ],
        "ignored",
    )));
    assert_eq!(
        changes,
        vec![
            HeaderChange::set("authorization", "Bearer inner"),
            HeaderChange::set("x-user", "alice"),
            HeaderChange::set("set-cookie", "a=1"),
            HeaderChange::append("set-cookie", "b=2"),
        ]
    );
}

#[test]
fn answer_200_honours_envoy_headers_to_remove() {
    let f = filter(json!({"auth_service": "auth:3000"}));
    let changes = allow(f.read_answer(http_answer(
        200,
        &[(
            "x-envoy-auth-headers-to-remove",
            "X-Api-Key, host, :path, cookie",
        )],
        "",
    )));
    assert_eq!(
        changes,
        vec![
            HeaderChange::remove("x-api-key"),
            HeaderChange::remove("cookie")
        ]
    );
}

#[test]
fn answer_201_denies_with_its_status_body_and_allowed_headers() {
    let f =
        filter(json!({"auth_service": "auth:3000", "allowed_authorization_headers": ["x-reason"]}));
    let r = deny(f.read_answer(http_answer(
        201,
        &[
            ("WWW-Authenticate", "Basic"),
            ("x-reason", "nope"),
            ("x-other", "hidden"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ],
        "go away",
    )));
    assert_eq!(r.status, 201);
    assert_eq!(body_text(&r), "go away");
    assert_eq!(
        r.headers,
        vec![
            ("www-authenticate".to_string(), b"Basic".to_vec()),
            ("x-reason".to_string(), b"nope".to_vec()),
            ("set-cookie".to_string(), b"a=1".to_vec()),
            ("set-cookie".to_string(), b"b=2".to_vec()),
            ("content-type".to_string(), b"text/plain".to_vec()),
        ]
    );
}

#[test]
fn denied_answer_keeps_an_allowed_content_type() {
    let f = filter(
        json!({"auth_service": "auth:3000", "allowed_authorization_headers": ["content-type"]}),
    );
    let r = deny(f.read_answer(http_answer(
        401,
        &[("Content-Type", "application/json")],
        "{}",
    )));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.headers.len(), 1);
}

#[test]
fn answer_302_sends_location_back_to_the_client() {
    let f = filter(json!({"auth_service": "auth:3000"}));
    let r = deny(f.read_answer(http_answer(302, &[("Location", "https://idp/login")], "")));
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("https://idp/login"));
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-type"), None);
}

#[test]
fn answer_5xx_answers_status_on_error() {
    let f = filter(json!({"auth_service": "auth:3000", "status_on_error": {"code": 503}}));
    let r = deny(f.read_answer(http_answer(500, &[("set-cookie", "x=1")], "boom")));
    assert_eq!(r.status, 503);
    assert_eq!(r.header("set-cookie"), None);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["status_code"], 503);
    assert!(v["message"].is_string());
    // The default is 403.
    let f = filter(json!({"auth_service": "auth:3000"}));
    assert_eq!(deny(f.read_answer(http_answer(502, &[], ""))).status, 403);
}

#[test]
fn no_answer_answers_status_on_error() {
    let f = filter(json!({"auth_service": "auth:3000"}));
    let r = deny(f.read_answer(CalloutAnswer::Failed {
        reason: "timeout".into(),
    }));
    assert_eq!(r.status, 403);
}

#[test]
fn failure_mode_allow_lets_errors_through_marked() {
    let f = filter(json!({"auth_service": "auth:3000", "failure_mode_allow": true}));
    let marked = vec![HeaderChange::set(
        "x-envoy-auth-failure-mode-allowed",
        "true",
    )];
    assert_eq!(allow(f.read_answer(http_answer(503, &[], ""))), marked);
    assert_eq!(
        allow(f.read_answer(CalloutAnswer::Failed {
            reason: "reset".into()
        })),
        marked
    );
    // A denial is still a denial.
    assert_eq!(deny(f.read_answer(http_answer(403, &[], ""))).status, 403);
}

#[test]
fn answer_with_invalid_status_is_an_error() {
    let f = filter(json!({"auth_service": "auth:3000", "status_on_error": {"code": 401}}));
    for status in [0, 99, 600, 999] {
        assert_eq!(
            deny(f.read_answer(http_answer(status, &[], ""))).status,
            401,
            "{status}"
        );
    }
}

#[test]
fn oversized_answers_are_errors() {
    let f = filter(json!({"auth_service": "auth:3000", "status_on_error": {"code": 401}}));
    let big = "x".repeat(MAX_ANSWER_BYTES + 1);
    assert_eq!(deny(f.read_answer(http_answer(403, &[], &big))).status, 401);
    let many: Vec<(String, Vec<u8>)> = (0..=MAX_ANSWER_HEADERS)
        .map(|i| (format!("x-h{i}"), b"v".to_vec()))
        .collect();
    let answer = CalloutAnswer::Http {
        status: 200,
        headers: many,
        body: Vec::new(),
    };
    assert_eq!(deny(f.read_answer(answer)).status, 401);
}

#[test]
fn answer_headers_with_bad_values_are_dropped() {
    let f = filter(json!({"auth_service": "auth:3000"}));
    let changes = allow(f.read_answer(http_answer(200, &[("authorization", "a\r\nx: y")], "")));
    assert!(changes.is_empty());
}

// ---- configuration ----

#[test]
fn config_rejects_unknown_proto() {
    let e = errors(json!({"auth_service": "auth:3000", "proto": "grpcs"}));
    assert_eq!(
        e,
        ["filters[0].External.proto: must be \"http\" or \"grpc\", not \"grpcs\""]
    );
}

#[test]
fn config_rejects_protocol_version_v2_for_grpc() {
    let e = errors(json!({"auth_service": "auth:3000", "proto": "grpc", "protocol_version": "v2"}));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("filters[0].External.protocol_version: v2 is not supported"),
        "{e:?}"
    );
    let e = errors(json!({"auth_service": "auth:3000", "proto": "grpc", "protocol_version": "v4"}));
    assert!(e[0].contains("must be \"v3\""), "{e:?}");
}

#[test]
fn protocol_version_v2_is_ignored_for_http_and_refused_for_grpc() {
    // As Emissary: an HTTP check has no protocol version.
    let (f, notices) = compile_with_clusters(
        json!({"auth_service": "auth:3000", "proto": "http", "protocol_version": "v2"}),
        &[],
    );
    assert!(f.is_ok());
    assert!(
        notices
            .iter()
            .any(|n| n.contains("protocol_version: ignored")),
        "{notices:?}"
    );
    let e = errors(json!({"auth_service": "auth:3000", "proto": "grpc", "protocol_version": "v2"}));
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("v2 is not supported"), "{e:?}");
    let e = errors(json!({"auth_service": "auth:3000", "allow_request_body": true}));
    assert!(e[0].contains("include_body"), "{e:?}");
    let (f, _) = compile_with_clusters(
        json!({"auth_service": "auth:3000", "protocol_version": "v3"}),
        &[],
    );
    assert!(f.is_ok());
}

#[test]
fn config_rejects_bad_auth_service() {
    for bad in [
        "",
        "ftp://auth",
        "http://auth:port",
        "http://auth:3000/check",
        "http://u@auth",
    ] {
        let e = errors(json!({"auth_service": bad}));
        assert!(
            e[0].starts_with("filters[0].External.auth_service: "),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn config_rejects_path_prefix_without_slash() {
    let e = errors(json!({"auth_service": "auth:3000", "path_prefix": "extauth"}));
    assert!(
        e[0].starts_with("filters[0].External.path_prefix: "),
        "{e:?}"
    );
    let e = errors(json!({"auth_service": "auth:3000", "path_prefix": "/a b"}));
    assert!(
        e[0].starts_with("filters[0].External.path_prefix: "),
        "{e:?}"
    );
    assert!(
        compile_with_clusters(json!({"auth_service": "auth:3000", "path_prefix": ""}), &[])
            .0
            .is_ok()
    );
}

#[test]
fn config_rejects_bad_status_timeout_and_header_names() {
    let e = errors(json!({"auth_service": "auth:3000", "status_on_error": {"code": 42}}));
    assert!(
        e[0].starts_with("filters[0].External.status_on_error.code: "),
        "{e:?}"
    );
    let e = errors(json!({"auth_service": "auth:3000", "timeout_ms": 0}));
    assert!(
        e[0].starts_with("filters[0].External.timeout_ms: "),
        "{e:?}"
    );
    let e =
        errors(json!({"auth_service": "auth:3000", "allowed_request_headers": ["ok", "bad name"]}));
    assert_eq!(
        e,
        ["filters[0].External.allowed_request_headers[1]: invalid header name \"bad name\""]
    );
    let e = errors(json!({"auth_service": "auth:3000", "add_auth_headers": {"x-a": "v\nw"}}));
    assert!(
        e[0].starts_with("filters[0].External.add_auth_headers.x-a: "),
        "{e:?}"
    );
}

// ---- gRPC ----

fn grpc_filter(extra: Value) -> ExternalFilter {
    let mut spec = json!({"auth_service": "authz:9001", "proto": "grpc"});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    filter(spec)
}

fn sent_check(
    f: &ExternalFilter,
    r: &Request,
    body: Option<RequestBody<'_>>,
    ext: &BTreeMap<String, String>,
) -> CheckRequest {
    let callout = f.build_check(r, body, ext, NOW).unwrap();
    assert_eq!(callout.cluster, "authz");
    match callout.kind {
        CalloutKind::Grpc {
            service,
            method,
            message,
            initial_metadata,
        } => {
            assert_eq!(service, "envoy.service.auth.v3.Authorization");
            assert_eq!(method, "Check");
            assert!(initial_metadata.is_empty());
            CheckRequest::decode(message.as_slice()).unwrap()
        }
        other => panic!("not gRPC: {other:?}"),
    }
}

fn grpc_answer(response: &CheckResponse) -> CalloutAnswer {
    CalloutAnswer::Grpc {
        status_code: 0,
        message: response.encode_to_vec(),
    }
}

fn option(key: &str, value: &str, append: Option<bool>, action: i32) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(proto::HeaderValue {
            key: key.into(),
            value: value.into(),
            raw_value: Vec::new(),
        }),
        append: append.map(|value| BoolValue { value }),
        append_action: action,
        keep_empty_value: false,
    }
}

#[test]
fn grpc_check_request_carries_the_request_attributes() {
    let f = grpc_filter(json!({}));
    let mut r = request(&[
        ("x-request-id", "rid-1"),
        ("authorization", "Bearer t"),
        ("Accept", "a"),
        ("accept", "b"),
        ("content-length", "12"),
        ("x-envoy-auth-partial-body", "spoofed"),
    ]);
    r.source_address = "10.1.2.3:51000".into();
    r.destination_address = "[::1]:8080".into();
    r.protocol = "HTTP/1.1".into();
    let mut ext = BTreeMap::new();
    ext.insert("route".to_string(), "api".to_string());
    let check = sent_check(&f, &r, None, &ext);
    let attrs = check.attributes.unwrap();
    let src = attrs
        .source
        .unwrap()
        .address
        .unwrap()
        .socket_address
        .unwrap();
    assert_eq!(
        (src.address.as_str(), src.port_value),
        ("10.1.2.3", Some(51000))
    );
    let dst = attrs
        .destination
        .unwrap()
        .address
        .unwrap()
        .socket_address
        .unwrap();
    assert_eq!((dst.address.as_str(), dst.port_value), ("::1", Some(8080)));
    assert_eq!(attrs.context_extensions, ext);
    let req = attrs.request.unwrap();
    assert_eq!(
        req.time,
        Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 500_000_000
        })
    );
    let http = req.http.unwrap();
    assert_eq!(http.id, "rid-1");
    assert_eq!(http.method, "GET");
    assert_eq!(http.path, "/api/items?id=7&x=y");
    assert_eq!(http.host, "app.example.com");
    assert_eq!(http.scheme, "https");
    assert_eq!(http.query, "");
    assert_eq!(http.fragment, "");
    assert_eq!(http.size, 12);
    assert_eq!(http.protocol, "HTTP/1.1");
    assert_eq!(http.headers["accept"], "a,b");
    assert_eq!(http.headers["authorization"], "Bearer t");
    assert_eq!(http.headers[":path"], "/api/items?id=7&x=y");
    assert_eq!(http.headers[":authority"], "app.example.com");
    assert!(!http.headers.contains_key("x-envoy-auth-partial-body"));
    assert!(http.body.is_empty() && http.raw_body.is_empty());
}

#[test]
fn grpc_check_skips_unparsable_peers_and_unknown_size() {
    let f = grpc_filter(json!({}));
    let mut r = request(&[]);
    r.source_address = "not an address".into();
    let attrs = sent_check(&f, &r, None, &no_ext()).attributes.unwrap();
    assert!(attrs.source.is_none());
    assert!(attrs.destination.is_none());
    assert_eq!(attrs.request.unwrap().http.unwrap().size, -1);
}

#[test]
fn grpc_check_includes_the_body() {
    let f = grpc_filter(json!({"include_body": {"max_bytes": 3, "allow_partial": true}}));
    let body = RequestBody {
        bytes: b"ab\xffcd",
        complete: true,
    };
    let http = sent_check(&f, &request(&[]), Some(body), &no_ext())
        .attributes
        .unwrap()
        .request
        .unwrap()
        .http
        .unwrap();
    assert_eq!(http.raw_body, b"ab\xff");
    assert_eq!(http.body, "ab\u{fffd}");
    assert_eq!(http.headers["x-envoy-auth-partial-body"], "true");
}

/// As Envoy 1.40's ext_authz (testbed/tests/external_grpc_vs_native.rs):
/// sets first, then `append: true` joined to a present header's first value
/// with `,` (dropped on an absent one), then removals.
#[test]
fn grpc_ok_response_sets_appends_and_removes_headers() {
    let f = grpc_filter(json!({}));
    let response = CheckResponse {
        status: Some(Status {
            code: 0,
            message: String::new(),
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: vec![
                option("X-User", "alice", None, 0),
                option("x-group", "b", Some(true), 0),
                option("x-group", "a", Some(false), 0),
                option("x-client", "auth", Some(true), 0),
                option("x-nobody", "auth", Some(true), 0),
                option(
                    "x-set",
                    "s",
                    None,
                    append_action::OVERWRITE_IF_EXISTS_OR_ADD,
                ),
                option("bad name", "v", None, 0),
            ],
            headers_to_remove: vec!["authorization".into(), ":path".into(), "host".into()],
            response_headers_to_add: vec![],
        })),
    };
    let r = request(&[("x-client", "one"), ("x-client", "two")]);
    assert_eq!(
        allow(f.read_answer_for(&r, grpc_answer(&response))),
        vec![
            HeaderChange::set("x-user", "alice"),
            HeaderChange::set("x-group", "a,b"),
            HeaderChange::set("x-set", "s"),
            HeaderChange::set("x-client", "one,auth"),
            HeaderChange::append("x-client", "two"),
            HeaderChange::remove("authorization"),
        ]
    );
}

/// Envoy 1.40 does not read `append_action`: every one sets.
#[test]
fn grpc_append_actions_set_as_envoy_does() {
    let f = grpc_filter(json!({}));
    let response = CheckResponse {
        status: None,
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: vec![
                option("x-present", "new", None, append_action::ADD_IF_ABSENT),
                option("x-absent", "over", None, append_action::OVERWRITE_IF_EXISTS),
            ],
            ..Default::default()
        })),
    };
    let r = request(&[("x-present", "old")]);
    assert_eq!(
        allow(f.read_answer_for(&r, grpc_answer(&response))),
        vec![
            HeaderChange::set("x-present", "new"),
            HeaderChange::set("x-absent", "over")
        ]
    );
}

/// `response_headers_to_add` of an OK answer: `append: true` added to the
/// client's response, the others set over the upstream's.
#[test]
fn grpc_ok_response_headers_reach_the_client_response() {
    let f = grpc_filter(json!({}));
    let response = CheckResponse {
        status: None,
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: vec![],
            headers_to_remove: vec![],
            response_headers_to_add: vec![
                option("x-set", "s", None, 0),
                option("set-cookie", "a=1", Some(true), 0),
                option("set-cookie", "b=2", Some(true), 0),
            ],
        })),
    };
    match f.read_answer(grpc_answer(&response)) {
        ExternalOutcome::AllowWithResponseHeaders { request, response } => {
            assert!(request.is_empty());
            assert_eq!(
                response,
                vec![
                    HeaderChange::append("set-cookie", "a=1"),
                    HeaderChange::append("set-cookie", "b=2"),
                    HeaderChange::set("x-set", "s"),
                ]
            );
        }
        other => panic!("expected response headers, got {other:?}"),
    }
}

#[test]
fn grpc_denied_response_returns_status_headers_and_body() {
    let f = grpc_filter(json!({}));
    let response = CheckResponse {
        status: Some(Status {
            code: 7,
            message: "denied".into(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: 401 }),
            headers: vec![
                option("WWW-Authenticate", "Bearer", None, 0),
                option("set-cookie", "a=1", Some(false), 0),
                option("set-cookie", "b=2", None, 0),
                // Dropped, as Envoy 1.40 drops it.
                option("set-cookie", "c=3", Some(true), 0),
            ],
            body: "log in".into(),
        })),
    };
    let r = deny(f.read_answer(grpc_answer(&response)));
    assert_eq!(r.status, 401);
    assert_eq!(body_text(&r), "log in");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        r.headers.iter().filter(|(n, _)| n == "set-cookie").count(),
        2
    );
    assert_eq!(r.header("content-type"), Some("text/plain"));
}

#[test]
fn grpc_denied_without_details_is_403() {
    let f = grpc_filter(json!({}));
    let response = CheckResponse {
        status: Some(Status {
            code: 16,
            message: String::new(),
        }),
        http_response: None,
    };
    let r = deny(f.read_answer(grpc_answer(&response)));
    assert_eq!((r.status, r.body.len()), (403, 0));
    let response = CheckResponse {
        status: Some(Status {
            code: 7,
            message: String::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse::default())),
    };
    assert_eq!(deny(f.read_answer(grpc_answer(&response))).status, 403);
}

#[test]
fn grpc_garbage_is_an_error() {
    let f = grpc_filter(json!({"status_on_error": {"code": 503}}));
    let answer = CalloutAnswer::Grpc {
        status_code: 0,
        message: vec![0x0a, 0xff, 0xff, 0x01],
    };
    assert_eq!(deny(f.read_answer(answer)).status, 503);
}

#[test]
fn grpc_transport_error_is_an_error() {
    let f = grpc_filter(json!({"failure_mode_allow": true}));
    let answer = CalloutAnswer::Grpc {
        status_code: 14,
        message: Vec::new(),
    };
    assert_eq!(
        allow(f.read_answer(answer)),
        vec![HeaderChange::set(
            "x-envoy-auth-failure-mode-allowed",
            "true"
        )]
    );
}

#[test]
fn grpc_oversized_or_invalid_answers_are_errors() {
    let f = grpc_filter(json!({"status_on_error": {"code": 500}}));
    let answer = CalloutAnswer::Grpc {
        status_code: 0,
        message: vec![0; MAX_ANSWER_BYTES + 1],
    };
    assert_eq!(deny(f.read_answer(answer)).status, 500);
    let response = CheckResponse {
        status: Some(Status {
            code: 7,
            message: String::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: 1000 }),
            ..Default::default()
        })),
    };
    assert_eq!(deny(f.read_answer(grpc_answer(&response))).status, 500);
    let response = CheckResponse {
        status: Some(Status {
            code: 13,
            message: String::new(),
        }),
        http_response: Some(HttpResponse::ErrorResponse(DeniedHttpResponse::default())),
    };
    assert_eq!(deny(f.read_answer(grpc_answer(&response))).status, 500);
}

/// Bytes written out by hand from the field numbers in external_auth.proto,
/// base.proto, http_status.proto and google/rpc/status.proto.
#[test]
fn hand_encoded_check_responses_decode_with_the_right_field_numbers() {
    let f = grpc_filter(json!({}));
    // CheckResponse { status(1) { code(1): 7 },
    //   denied_response(2) { status(1) { code(1): 401 },
    //     headers(2) { header(1) { key(1): "a", value(2): "b" } }, body(3): "no" } }
    let denied: &[u8] = &[
        0x0a, 0x02, 0x08, 0x07, //
        0x12, 0x13, //
        0x0a, 0x03, 0x08, 0x91, 0x03, //
        0x12, 0x08, 0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', //
        0x1a, 0x02, b'n', b'o',
    ];
    let r = deny(f.read_answer(CalloutAnswer::Grpc {
        status_code: 0,
        message: denied.to_vec(),
    }));
    assert_eq!((r.status, body_text(&r)), (401, "no"));
    assert_eq!(r.header("a"), Some("b"));

    // CheckResponse { ok_response(3) { headers(2) { header(1) { key "x", value "1" },
    //   append(2) { value(1): true } }, headers_to_remove(5): "y" } }
    let ok: &[u8] = &[
        0x1a, 0x11, //
        0x12, 0x0c, 0x0a, 0x06, 0x0a, 0x01, b'x', 0x12, 0x01, b'1', 0x12, 0x02, 0x08, 0x01, //
        0x2a, 0x01, b'y',
    ];
    // (`append: true` on a header the request lacks is dropped, as by Envoy.)
    assert_eq!(
        allow(f.read_answer_for(
            &request(&[("x", "0")]),
            CalloutAnswer::Grpc {
                status_code: 0,
                message: ok.to_vec()
            }
        )),
        vec![HeaderChange::set("x", "0,1"), HeaderChange::remove("y")]
    );
}

/// A CheckRequest encodes to the bytes attribute_context.proto and
/// address.proto give, written out by hand.
#[test]
fn check_request_encodes_with_the_right_field_numbers() {
    let mut ext = BTreeMap::new();
    ext.insert("k".to_string(), "v".to_string());
    let check = CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    socket_address: Some(SocketAddress {
                        protocol: 0,
                        address: "1.2.3.4".into(),
                        port_value: Some(5),
                    }),
                }),
                ..Default::default()
            }),
            destination: None,
            request: Some(AttributeRequest {
                time: Some(Timestamp {
                    seconds: 1,
                    nanos: 2,
                }),
                http: Some(HttpRequest {
                    method: "GET".into(),
                    size: -1,
                    ..Default::default()
                }),
            }),
            context_extensions: ext,
        }),
    };
    let expected: &[u8] = &[
        0x0a, 0x33, // attributes(1), 51 bytes
        0x0a, 0x0f, // source(1)
        0x0a, 0x0d, // address(1)
        0x0a, 0x0b, // socket_address(1)
        0x12, 0x07, b'1', b'.', b'2', b'.', b'3', b'.', b'4', // address(2)
        0x18, 0x05, // port_value(3)
        0x22, 0x18, // request(4)
        0x0a, 0x04, 0x08, 0x01, 0x10, 0x02, // time(1) { seconds(1), nanos(2) }
        0x12, 0x10, // http(2)
        0x12, 0x03, b'G', b'E', b'T', // method(2)
        0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, // size(9) = -1
        0x52, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', // context_extensions(10)
    ];
    let encoded = check.encode_to_vec();
    assert_eq!(encoded, expected);
}

/// A header value with obs-text (Latin-1 "café", not UTF-8).
const OBS: &[u8] = b"caf\xe9; path=/";

#[test]
fn http_answer_obs_text_values_are_copied_as_bytes_upstream_and_to_the_client() {
    let f = filter(json!({
        "auth_service": "auth:3000",
        "allowed_authorization_headers": ["x-user"],
    }));
    let answer = |status| CalloutAnswer::Http {
        status,
        headers: vec![
            ("x-user".to_string(), OBS.to_vec()),
            ("set-cookie".to_string(), OBS.to_vec()),
        ],
        body: Vec::new(),
    };
    let changes = allow(f.read_answer(answer(200)));
    assert_eq!(changes[0], HeaderChange::set("x-user", OBS));
    assert_eq!(changes[1], HeaderChange::set("set-cookie", OBS));
    let r = deny(f.read_answer(answer(401)));
    assert_eq!(r.header_bytes("x-user"), Some(OBS));
    assert_eq!(r.header_bytes("set-cookie"), Some(OBS));
    // Not text: the text accessor says so rather than guessing.
    assert_eq!(r.header("set-cookie"), None);
}

#[test]
fn grpc_raw_values_with_obs_text_are_copied_as_bytes() {
    let f = grpc_filter(json!({}));
    let raw = |key: &str, append| HeaderValueOption {
        header: Some(proto::HeaderValue {
            key: key.into(),
            value: String::new(),
            raw_value: OBS.to_vec(),
        }),
        append: Some(BoolValue { value: append }),
        append_action: 0,
        keep_empty_value: false,
    };
    let ok = CheckResponse {
        status: Some(Status::default()),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: vec![raw("x-user", false)],
            ..Default::default()
        })),
    };
    assert_eq!(
        allow(f.read_answer(grpc_answer(&ok))),
        vec![HeaderChange::set("x-user", OBS)]
    );
    let denied = CheckResponse {
        status: Some(Status {
            code: 7,
            message: String::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: 401 }),
            headers: vec![raw("www-authenticate", false), raw("set-cookie", false)],
            body: String::new(),
        })),
    };
    let r = deny(f.read_answer(grpc_answer(&denied)));
    assert_eq!(r.header_bytes("www-authenticate"), Some(OBS));
    assert_eq!(r.header_bytes("set-cookie"), Some(OBS));
}

#[test]
fn headers_to_remove_skips_items_that_are_not_names() {
    let f = filter(json!({"auth_service": "auth:3000"}));
    let answer = CalloutAnswer::Http {
        status: 200,
        headers: vec![(
            HEADERS_TO_REMOVE_HEADER.to_string(),
            b"x-a, caf\xe9 , x-b".to_vec(),
        )],
        body: Vec::new(),
    };
    assert_eq!(
        allow(f.read_answer(answer)),
        vec![HeaderChange::remove("x-a"), HeaderChange::remove("x-b")]
    );
}
