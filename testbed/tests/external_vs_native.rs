//! The External filter (HTTP) side by side with Envoy's native
//! `envoy.filters.http.ext_authz`, configured as Emissary configures it for the
//! same `AuthService` spec, in one Envoy: listener `main` runs Portcullis,
//! listeners `native` and `native-open` run the native filter (the latter with
//! `failure_mode_allow`). One auth service, one upstream, a corpus of answers;
//! for each, the client's status, headers and body and the upstream's headers
//! must agree, except for the differences listed in [`KNOWN_DIFFERENCES`]
//! (documented in docs/external.md).

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use common::show;
use portcullis_testbed::authz::{native_ext_authz_http, NativeHttpAuth};
use portcullis_testbed::client::{self, Response};
use portcullis_testbed::servers::{echo_json, Reply, Request, ScriptedServer};
use portcullis_testbed::{Echoed, Envoy, EnvoyConfig};
use serde_json::json;

struct Fixture {
    envoy: Envoy,
    upstream: ScriptedServer,
    auth: ScriptedServer,
}

const TIMEOUT_MS: u64 = 500;

fn native(failure_mode_allow: bool, prefix: &str) -> NativeHttpAuth {
    NativeHttpAuth {
        cluster: "authsvc".to_string(),
        uri: "http://auth.test:3000".to_string(),
        timeout_ms: TIMEOUT_MS,
        path_prefix: prefix.to_string(),
        allowed_request_headers: vec!["X-Allowed-In".to_string()],
        allowed_authorization_headers: vec!["X-Auth-User".to_string()],
        add_auth_headers: vec![("X-Added".to_string(), "added".to_string())],
        failure_mode_allow,
        status_on_error: 503,
        include_body: None,
    }
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let upstream = ScriptedServer::start();
        upstream.set_default_fn(|r| Reply::json(200, &echo_json(r)));
        let auth = ScriptedServer::start();
        auth.set_default(Reply::new(200));
        let spec = |prefix: &str, open: bool| {
            json!({
                "auth_service": "http://auth.test:3000", "path_prefix": prefix,
                "timeout_ms": TIMEOUT_MS,
                "allowed_request_headers": ["X-Allowed-In"],
                "allowed_authorization_headers": ["X-Auth-User"],
                "add_auth_headers": { "X-Added": "added" },
                "failure_mode_allow": open,
                "status_on_error": { "code": 503 }
            })
        };
        let mut body_spec = spec("/check", false);
        body_spec["include_body"] = json!({ "max_bytes": 16, "allow_partial": true });
        let plugin = json!({
            "clusters": { "auth.test:3000": "authsvc" },
            "filters": [
                { "name": "ext", "External": spec("/check", false) },
                { "name": "ext-open", "External": spec("/check", true) },
                { "name": "ext-body", "External": body_spec }
            ],
            "rules": [
                { "host": "*", "path": "/body/*", "filters": [ { "name": "ext-body" } ] },
                { "host": "*", "path": "/open/*", "filters": [ { "name": "ext-open" } ] },
                { "host": "*", "path": "*", "filters": [ { "name": "ext" } ] }
            ]
        });
        let cfg = EnvoyConfig::new(upstream.port())
            .plugin(plugin)
            .listener(
                "native",
                vec![native_ext_authz_http(&native(false, "/check"))],
            )
            .listener(
                "native-open",
                vec![native_ext_authz_http(&native(true, "/check"))],
            )
            .listener(
                "native-body",
                vec![native_ext_authz_http(&NativeHttpAuth {
                    include_body: Some((16, true)),
                    ..native(false, "/check")
                })],
            )
            .cluster("authsvc", auth.port())
            .build();
        Fixture {
            envoy: Envoy::start(&cfg),
            upstream,
            auth,
        }
    })
}

/// Headers that differ per request whatever the filter (dates, ids, timings).
const VOLATILE: &[&str] = &[
    "date",
    "x-request-id",
    "x-envoy-upstream-service-time",
    "x-envoy-expected-rq-timeout-ms",
    "content-length",
    "connection",
];

/// The differences between Portcullis and native ext_authz this corpus shows,
/// as `(where, header)`: where = `auth` (the check request), `upstream`,
/// `client`. Each is explained in docs/external.md.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    // status_on_error: Portcullis answers its JSON error body
    // (`{"message":"the authorization service could not be reached",...}`,
    // Content-Type application/json), native ext_authz an empty body.
    ("client", "body"),
    ("client", "content-type"),
];

/// One request through one listener; what the auth service, the upstream and
/// the client saw.
struct Seen {
    check: Option<Request>,
    upstream: Option<Echoed>,
    client: Response,
}

fn run(listener: &str, case: &str, reply: &Reply, prefix: &str) -> Seen {
    let f = fx();
    let path = format!("{prefix}/{case}/{listener}");
    f.auth.set(&format!("/check{path}"), reply.clone());
    let client = client::request(
        f.envoy.port(listener),
        "GET",
        &format!("{path}?q=1"),
        &[
            ("Authorization", "Bearer client"),
            ("X-Auth-User", "spoof"),
            ("X-Allowed-In", "in"),
            ("X-Secret", "s"),
            ("User-Agent", "cmp/1"),
        ],
        b"",
    );
    let check = f
        .auth
        .requests_to(&format!("/check{path}"))
        .into_iter()
        .next();
    let upstream =
        (f.upstream.count(&path) > 0 && client.status == 200).then(|| Echoed::parse(&client.body));
    Seen {
        check,
        upstream,
        client,
    }
}

fn header_set(headers: &[(String, String)]) -> BTreeSet<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| !VOLATILE.contains(&n.as_str()))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// Header names whose values differ between the two sides.
fn diff(
    where_: &'static str,
    a: &[(String, String)],
    b: &[(String, String)],
    out: &mut Vec<String>,
    names: &mut BTreeSet<(&'static str, String)>,
) {
    let (a, b) = (header_set(a), header_set(b));
    for (n, v) in a.symmetric_difference(&b) {
        let side = if a.contains(&(n.clone(), v.clone())) {
            "portcullis"
        } else {
            "native"
        };
        out.push(format!("{where_}: only {side}: {n}: {v}"));
        names.insert((where_, n.clone()));
    }
}

/// Compares one case; returns the differing `(where, header)` pairs.
fn compare(case: &str, reply: Reply, open: bool) -> BTreeSet<(&'static str, String)> {
    let prefix = if open { "/open" } else { "/cmp" };
    let (pl, nl) = if open {
        ("main", "native-open")
    } else {
        ("main", "native")
    };
    let p = run(pl, case, &reply, prefix);
    let n = run(nl, case, &reply, prefix);
    assert_eq!(
        p.client.status,
        n.client.status,
        "{case}: status\nportcullis: {}\nnative: {}",
        show(&p.client),
        show(&n.client)
    );
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    if p.client.status != 200 && p.client.body != n.client.body {
        out.push(format!(
            "client: body: portcullis {:?}, native {:?}",
            p.client.body_str(),
            n.client.body_str()
        ));
        names.insert(("client", "body".to_string()));
    }
    match (&p.check, &n.check) {
        (Some(pc), Some(nc)) => {
            // The paths differ only by the listener name in them.
            assert_eq!(pc.method, nc.method);
            assert_eq!(
                pc.path.replace("/main", "/L"),
                nc.path.replace(&format!("/{nl}"), "/L"),
                "{case}: check path"
            );
            diff("auth", &pc.headers, &nc.headers, &mut out, &mut names);
        }
        (None, None) => {}
        other => panic!("{case}: one side made no check: {:?}", other.0.is_some()),
    }
    match (&p.upstream, &n.upstream) {
        (Some(pu), Some(nu)) => diff("upstream", &pu.headers, &nu.headers, &mut out, &mut names),
        (None, None) => {}
        _ => panic!("{case}: only one side reached the upstream"),
    }
    if p.client.status != 200 {
        diff(
            "client",
            &p.client.headers,
            &n.client.headers,
            &mut out,
            &mut names,
        );
    }
    eprintln!("{case}: {} differences\n  {}", out.len(), out.join("\n  "));
    names
}

fn assert_known(case: &str, found: BTreeSet<(&'static str, String)>) {
    let unknown: Vec<_> = found
        .iter()
        .filter(|(w, n)| !KNOWN_DIFFERENCES.contains(&(w, n.as_str())))
        .collect();
    assert!(
        unknown.is_empty(),
        "{case}: unexpected differences {unknown:?}"
    );
}

#[test]
fn allow_with_authorization_headers() {
    let reply = Reply::new(200)
        .header("Authorization", "Bearer from-auth")
        .header("X-Auth-User", "alice")
        .header("Set-Cookie", "s=1")
        .header("X-Other", "no");
    assert_known("allow", compare("allow", reply, false));
}

#[test]
fn deny_403_with_headers_and_body() {
    let reply = Reply::new(403)
        .header("X-Auth-User", "nobody")
        .header("WWW-Authenticate", "Bearer realm=\"x\"")
        .header("X-Other", "no")
        .header("content-type", "text/html")
        .body("<b>no</b>");
    assert_known("deny403", compare("deny403", reply, false));
}

#[test]
fn deny_302_redirect() {
    let reply = Reply::new(302)
        .header("Location", "https://login.example.com/?next=%2F")
        .header("Set-Cookie", "state=xyz");
    assert_known("redirect302", compare("redirect302", reply, false));
}

#[test]
fn error_5xx() {
    let reply = Reply::new(500).body("boom");
    assert_known("err500", compare("err500", reply.clone(), false));
    assert_known("open500", compare("open500", reply, true));
}

#[test]
fn timeout() {
    let reply = Reply::new(200).delay(Duration::from_millis(TIMEOUT_MS * 2));
    assert_known("timeout", compare("timeout", reply.clone(), false));
    assert_known("opentimeout", compare("opentimeout", reply, true));
}

/// include_body: the one difference in what the upstream sees. Native ext_authz
/// holds the whole request (headers and body) until the check decides; a
/// Proxy-Wasm filter cannot read the body while holding the headers, so
/// Portcullis lets the headers go upstream first and holds the body. Denied,
/// the native upstream sees nothing; the Portcullis upstream sees the request
/// head, then a reset (connection closed), never the body.
#[test]
fn include_body_denied_request_with_a_body() {
    let f = fx();
    let mut auth_bodies = Vec::new();
    for listener in ["main", "native-body"] {
        let path = format!("/body/denied/{listener}");
        f.auth.set(
            &format!("/check{path}"),
            Reply::new(403).body("no").delay(Duration::from_millis(300)),
        );
        let r = client::request(
            f.envoy.port(listener),
            "POST",
            &path,
            &[],
            b"0123456789abcdefXYZ",
        );
        assert_eq!(r.status, 403, "{listener}: {}", show(&r));
        assert_eq!(r.body_str(), "no", "{listener}");
        assert_eq!(
            f.upstream.count(&path),
            0,
            "{listener}: a complete request upstream"
        );
        let check = f.auth.requests_to(&format!("/check{path}"));
        assert_eq!(check.len(), 1, "{listener}");
        auth_bodies.push((
            check[0].body_str(),
            check[0]
                .header("x-envoy-auth-partial-body")
                .map(str::to_string),
        ));
    }
    assert_eq!(auth_bodies[0], auth_bodies[1], "what the auth service got");
    assert_eq!(
        auth_bodies[0],
        ("0123456789abcdef".to_string(), Some("true".to_string()))
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        f.upstream.heads_to("/body/denied/native-body").len(),
        0,
        "native: nothing upstream"
    );
    assert_eq!(
        f.upstream.heads_to("/body/denied/main").len(),
        1,
        "Portcullis: the head went upstream before the decision"
    );
}
