//! The External filter over gRPC side by side with Envoy's native
//! `envoy.filters.http.ext_authz` (`grpc_service`, as Emissary configures a
//! gRPC `AuthService`), in one Envoy: listener `main` runs Portcullis, listener
//! `native` the native filter. One gRPC auth service answers both; for each
//! header action of a `CheckResponse` (`append_action`, the deprecated
//! `append`, `headers_to_remove`, `response_headers_to_add`, the headers of a
//! denial) the upstream's and the client's headers must agree, header by
//! header, except where docs/external.md lists a difference.

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use common::show;
use portcullis_testbed::authz::proto::append_action;
use portcullis_testbed::authz::{
    denied_response, header_action, header_option, native_ext_authz_grpc,
    ok_response_with_response_headers, GrpcAuthServer, GrpcReply,
};
use portcullis_testbed::client::{self, Response};
use portcullis_testbed::servers::{echo_json, Reply, ScriptedServer};
use portcullis_testbed::{Echoed, Envoy, EnvoyConfig};
use serde_json::json;

struct Fixture {
    envoy: Envoy,
    auth: GrpcAuthServer,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let auth = GrpcAuthServer::start();
        let plugin = json!({
            "clusters": { "grpc-auth.test:9000": "grpcauth" },
            "filters": [ { "name": "ext", "External": {
                "auth_service": "grpc-auth.test:9000", "proto": "grpc",
                "protocol_version": "v3", "timeout_ms": 5000
            } } ],
            "rules": [ { "host": "*", "path": "*", "filters": [ { "name": "ext" } ] } ]
        });
        let cfg = EnvoyConfig::new(echo_port())
            .plugin(plugin)
            .listener(
                "native",
                vec![native_ext_authz_grpc("grpcauth", 5000, None)],
            )
            .grpc_cluster("grpcauth", auth.port())
            .build();
        Fixture {
            envoy: Envoy::start(&cfg),
            auth,
        }
    })
}

/// The echo upstream both listeners route to.
fn echo_port() -> u16 {
    static ECHO: OnceLock<ScriptedServer> = OnceLock::new();
    ECHO.get_or_init(|| {
        let upstream = ScriptedServer::start();
        upstream.set_default_fn(|r| Reply::json(200, &echo_json(r)));
        upstream
    })
    .port()
}

/// Headers that differ per request whatever the filter.
const VOLATILE: &[&str] = &[
    "date",
    "x-request-id",
    "x-envoy-upstream-service-time",
    "x-envoy-expected-rq-timeout-ms",
    "content-length",
    "connection",
];

/// The headers the client sends with every case: one of each name the
/// answers act on as "present".
const CLIENT_HEADERS: &[(&str, &str)] = &[
    ("x-add-if-absent-present", "client"),
    ("x-overwrite-if-exists-present", "client"),
    ("x-overwrite-or-add-present", "client"),
    ("x-append-or-add-present", "client"),
    ("x-append-true-present", "client"),
    ("x-append-false-present", "client"),
    ("x-remove-me", "client"),
    ("x-keep-me", "client"),
];

struct Seen {
    upstream: Option<Echoed>,
    client: Response,
}

fn run(listener: &str, case: &str, reply: &GrpcReply) -> Seen {
    let f = fx();
    let path = format!("/{case}/{listener}");
    f.auth.set(&path, reply.clone());
    let client = client::request(f.envoy.port(listener), "GET", &path, CLIENT_HEADERS, b"");
    let upstream = (client.status == 200).then(|| Echoed::parse(&client.body));
    Seen { upstream, client }
}

/// Each header of `a` not in `b`, as `name: value` lines (repeated names
/// listed per value, in order, so an append that joins with `,` and one that
/// adds a line differ).
fn multiset(headers: &[(String, String)]) -> BTreeSet<(String, usize, String)> {
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut out = BTreeSet::new();
    for (n, v) in headers {
        let n = n.to_ascii_lowercase();
        if VOLATILE.contains(&n.as_str()) {
            continue;
        }
        let i = seen.iter().filter(|(m, _)| *m == n).count();
        seen.push((n.clone(), v.clone()));
        out.insert((n, i, v.clone()));
    }
    out
}

/// The differing headers, `(where, name)`, each printed.
fn compare(case: &str, reply: GrpcReply) -> BTreeSet<(&'static str, String)> {
    let p = run("main", case, &reply);
    let n = run("native", case, &reply);
    assert_eq!(
        p.client.status,
        n.client.status,
        "{case}: status\nportcullis: {}\nnative: {}",
        show(&p.client),
        show(&n.client)
    );
    let mut names = BTreeSet::new();
    let mut lines = Vec::new();
    let mut diff = |where_: &'static str, a: &[(String, String)], b: &[(String, String)]| {
        let (a, b) = (multiset(a), multiset(b));
        for x in a.symmetric_difference(&b) {
            let side = if a.contains(x) {
                "portcullis"
            } else {
                "native"
            };
            lines.push(format!("{where_}: only {side}: {}: {}", x.0, x.2));
            names.insert((where_, x.0.clone()));
        }
    };
    match (&p.upstream, &n.upstream) {
        (Some(pu), Some(nu)) => diff("upstream", &pu.headers, &nu.headers),
        (None, None) => {}
        _ => panic!("{case}: only one side reached the upstream"),
    }
    diff("client", &p.client.headers, &n.client.headers);
    if p.client.status != 200 {
        assert_eq!(p.client.body_str(), n.client.body_str(), "{case}: body");
    }
    eprintln!(
        "{case}: {} differences\n  {}",
        lines.len(),
        lines.join("\n  ")
    );
    names
}

/// Every `append_action`, and `append: true/false`, on a header the client
/// sent and on one it did not; `headers_to_remove`; `response_headers_to_add`
/// on OK (to the client's response).
#[test]
fn ok_header_actions_agree_with_native_ext_authz() {
    let h = header_action;
    let reply = ok_response_with_response_headers(
        vec![
            h(
                "x-add-if-absent-present",
                "auth",
                append_action::ADD_IF_ABSENT,
            ),
            h(
                "x-add-if-absent-absent",
                "auth",
                append_action::ADD_IF_ABSENT,
            ),
            h(
                "x-overwrite-if-exists-present",
                "auth",
                append_action::OVERWRITE_IF_EXISTS,
            ),
            h(
                "x-overwrite-if-exists-absent",
                "auth",
                append_action::OVERWRITE_IF_EXISTS,
            ),
            h(
                "x-overwrite-or-add-present",
                "auth",
                append_action::OVERWRITE_IF_EXISTS_OR_ADD,
            ),
            h(
                "x-overwrite-or-add-absent",
                "auth",
                append_action::OVERWRITE_IF_EXISTS_OR_ADD,
            ),
            h(
                "x-append-or-add-present",
                "auth",
                append_action::APPEND_IF_EXISTS_OR_ADD,
            ),
            h(
                "x-append-or-add-absent",
                "auth",
                append_action::APPEND_IF_EXISTS_OR_ADD,
            ),
            header_option("x-append-true-present", "auth", Some(true)),
            header_option("x-append-true-absent", "auth", Some(true)),
            header_option("x-append-false-present", "auth", Some(false)),
            header_option("x-append-false-absent", "auth", Some(false)),
            // Twice the same new name, appended: one line or two.
            header_option("x-append-twice", "one", Some(true)),
            header_option("x-append-twice", "two", Some(true)),
            // Appended after a set of the same answer, and before one.
            header_option("x-joined", "one", None),
            header_option("x-joined", "two", Some(true)),
            header_option("x-joined-late", "two", Some(true)),
            header_option("x-joined-late", "one", None),
            // Set twice: the last value.
            header_option("x-set-twice", "a", None),
            header_option("x-set-twice", "b", Some(false)),
        ],
        &["x-remove-me", "x-never-sent", "host", ":path"],
        vec![
            header_option("x-to-client", "added", None),
            header_option("set-cookie", "a=1", Some(true)),
            header_option("set-cookie", "b=2", Some(true)),
            header_option("x-resp-twice", "a", Some(false)),
            header_option("x-resp-twice", "b", Some(false)),
            header_option("content-type", "text/x-auth", Some(false)),
            header_option("x-resp-action", "c", None),
        ],
    );
    let found = compare("ok-actions", reply);
    assert!(found.is_empty(), "ok-actions: differences {found:?}");
}

/// A denial's headers: `Set-Cookie` twice with `append: true` (both reach the
/// client), a header twice with `append: false` (the last wins), one with an
/// `append_action`.
#[test]
fn denied_header_actions_agree_with_native_ext_authz() {
    let reply = denied_response(
        401,
        vec![
            header_option("set-cookie", "a=1; Path=/", Some(true)),
            header_option("set-cookie", "b=2; Path=/", Some(true)),
            header_option("x-set-twice", "first", Some(false)),
            header_option("x-set-twice", "second", Some(false)),
            header_option("www-authenticate", "Bearer realm=\"a\"", None),
            header_action("x-add-if-absent", "auth", append_action::ADD_IF_ABSENT),
            header_option("x-den-joined", "one", None),
            header_option("x-den-joined", "two", Some(true)),
        ],
        "denied",
    );
    let found = compare("denied-actions", reply);
    assert!(found.is_empty(), "denied-actions: differences {found:?}");
}
