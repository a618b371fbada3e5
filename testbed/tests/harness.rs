//! The harness against real Envoy, without the plugin: proves the launcher, port
//! discovery, client, servers and failure reporting before any plugin test relies
//! on them.

use std::time::Duration;

use portcullis_testbed::client;
use portcullis_testbed::config::{static_cluster, EnvoyConfig};
use portcullis_testbed::envoy::{render, Envoy};
use portcullis_testbed::servers::{EchoUpstream, Echoed, Reply, ScriptedServer};
use serde_json::json;

#[test]
fn request_through_envoy_reaches_echo_upstream() {
    let echo = EchoUpstream::start();
    let envoy = Envoy::start(&EnvoyConfig::new(echo.port()).build());
    let port = envoy.port("main");
    assert_ne!(port, 0);

    let r = client::request(
        port,
        "POST",
        "/some/path?q=1",
        &[
            ("X-Test", "one"),
            ("x-test", "two"),
            ("Authorization", "Bearer abc"),
        ],
        b"hello body",
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let seen = Echoed::parse(&r.body);
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/some/path?q=1");
    assert_eq!(seen.headers_all("x-test"), vec!["one", "two"]);
    assert_eq!(seen.header("authorization"), Some("Bearer abc"));
    assert_eq!(seen.header("host"), Some("localhost"));
    assert_eq!(seen.body, "hello body");

    // Keep-alive upstream connections: several requests in a row all succeed.
    for i in 0..5 {
        let r = client::get(port, &format!("/n/{i}"), &[]);
        assert_eq!(r.status, 200);
        assert_eq!(Echoed::parse(&r.body).path, format!("/n/{i}"));
    }

    assert!(envoy.admin_get("/server_info").contains("1.40"));
    assert!(envoy.wait_for_log("starting main dispatch loop", Duration::from_secs(5)));
    assert!(
        envoy
            .stat("cluster.upstream.upstream_rq_total")
            .unwrap_or(0)
            >= 6
    );
}

#[test]
fn scripted_server_through_envoy_and_down_mode() {
    let echo = EchoUpstream::start();
    let scripted = ScriptedServer::start();
    // Route /jwks* to the scripted server with a hand-written config (render + vars).
    let yaml = r#"static_resources:
  listeners:
  - name: edge
    address:
      socket_address: { address: 127.0.0.1, port_value: 0 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/jwks" }
                route: { cluster: idp }
              - match: { prefix: "/" }
                route: { cluster: upstream }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{{CLUSTERS}}"#;
    let clusters = format!(
        "{}{}",
        static_cluster("upstream", echo.port()),
        static_cluster("idp", scripted.port())
    );
    let envoy = Envoy::start_with(yaml, &[("CLUSTERS", &clusters)]);
    let port = envoy.port("edge");

    scripted.set("/jwks.json", Reply::json(200, &json!({"keys": []})));
    let r = client::get(port, "/jwks.json", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"keys": []}));
    let r = client::get(port, "/jwks-unscripted", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(scripted.count("/jwks.json"), 1);
    assert_eq!(scripted.requests().len(), 2);

    scripted.set_fn("/jwks.json", |req| {
        Reply::text(
            201,
            &format!("saw {}", req.header("x-who").unwrap_or("nobody")),
        )
        .header("x-extra", "1")
    });
    let r = client::get(port, "/jwks.json?x=1", &[("x-who", "me")]);
    assert_eq!((r.status, r.body_str().as_str()), (201, "saw me"));
    assert_eq!(r.header("x-extra"), Some("1"));

    scripted.set_down(true);
    let r = client::get(port, "/jwks.json", &[]);
    assert_eq!(r.status, 503, "{}", r.body_str());
    scripted.set_down(false);
    let r = client::get(port, "/jwks.json", &[]);
    assert_eq!(r.status, 201);

    // Upstream still fine.
    assert_eq!(client::get(port, "/other", &[]).status, 200);
}

#[test]
fn scripted_server_direct_delay_chunked_and_wait() {
    let s = ScriptedServer::start();
    s.set(
        "/slow",
        Reply::text(200, "late").delay(Duration::from_millis(300)),
    );
    let t = std::time::Instant::now();
    let r = client::get(s.port(), "/slow", &[]);
    assert_eq!(r.body_str(), "late");
    assert!(t.elapsed() >= Duration::from_millis(300));

    // A chunked request body is de-chunked and recorded.
    let r = client::raw(
        s.port(),
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 404);
    assert!(s.wait_for_requests("/c", 1, Duration::from_secs(2)));
    assert_eq!(s.requests_to("/c")[0].body_str(), "hello world");
    assert!(!s.wait_for_requests("/never", 1, Duration::from_millis(100)));
}

#[test]
fn echo_upstream_direct_keeps_header_order_and_duplicates() {
    let echo = EchoUpstream::start();
    let r = client::request(
        echo.port(),
        "PUT",
        "/x",
        &[("Host", "h.example"), ("B", "2"), ("A", "1"), ("b", "3")],
        b"",
    );
    let seen = Echoed::parse(&r.body);
    let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["host", "b", "a", "b"]);
    assert_eq!(seen.headers_all("b"), vec!["2", "3"]);
    assert_eq!(seen.method, "PUT");
}

#[test]
fn try_start_reports_a_refused_config() {
    let bad = "static_resources:\n  listeners:\n  - name: broken\n    no_such_field: true\n";
    let err = match Envoy::try_start(bad) {
        Ok(_) => panic!("Envoy accepted an invalid config"),
        Err(e) => e,
    };
    assert!(err.contains("exited before ready"), "{err}");
    assert!(err.contains("no_such_field"), "{err}");
}

#[test]
fn two_envoys_in_parallel_get_their_own_ports() {
    let echo = EchoUpstream::start();
    let cfg = EnvoyConfig::new(echo.port()).build();
    let a = Envoy::start(&cfg);
    let b = Envoy::start(&cfg);
    assert_ne!(a.port("main"), b.port("main"));
    assert_ne!(a.admin_port(), b.admin_port());
    assert_ne!(a.dir(), b.dir());
    assert_eq!(client::get(a.port("main"), "/a", &[]).status, 200);
    assert_eq!(client::get(b.port("main"), "/b", &[]).status, 200);
}

#[test]
fn render_only_touches_named_placeholders() {
    let out = render(
        "a {{X}} b {{ .token.Claims.sub }} {{Y}}",
        &[("X", "1"), ("Y", "2")],
    );
    assert_eq!(out, "a 1 b {{ .token.Claims.sub }} 2");
}

#[test]
fn plugin_config_yaml_carries_the_json_verbatim() {
    let plugin = json!({"filters": [], "rules": [{"host": "*", "path": "/\"q\"/*", "filters": []}],
                        "t": "{{ .token.Claims.sub }}"});
    let yaml = EnvoyConfig::new(1)
        .plugin(plugin.clone())
        .cluster("idp", 2)
        .vm_env("SECRET", "s3cr3t")
        .build();
    assert!(yaml.contains("{{WASM}}"));
    let line = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("value: "))
        .expect("configuration value line");
    let quoted = line.trim_start().trim_start_matches("value: ");
    let text: String = serde_json::from_str(quoted).expect("a JSON string literal");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).expect("json"),
        plugin
    );
}
