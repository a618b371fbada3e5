//! Envoy configurations for tests: one listener `main` on port 0, every request
//! routed to cluster `upstream`, optionally the Portcullis Wasm filter in front of the
//! router, plus named static clusters for callouts (JWKS, auth service, IdP).
//!
//! Also, for per-route and side-by-side tests: further Portcullis instances in the
//! same chain ([`EnvoyConfig::plugin_instance`]), extra routes that bypass the plugin
//! through route metadata ([`EnvoyConfig::bypass_route`]) or disable filters with
//! `typed_per_filter_config` ([`EnvoyConfig::disabled_route`]), and extra listeners
//! with their own HTTP filters (e.g. Envoy's native `jwt_authn`) over the same routes
//! ([`EnvoyConfig::listener`]).

use serde_json::{json, Value};

/// The `http_filters[].name` of the instance added by [`EnvoyConfig::plugin`]
/// (the key for `typed_per_filter_config`).
pub const WASM_FILTER_NAME: &str = "envoy.filters.http.wasm";

/// A further Portcullis instance in the `main` chain, after the one of
/// [`EnvoyConfig::plugin`] (if any), in the order added.
#[derive(Debug, Clone)]
struct PluginInstance {
    /// `http_filters[].name` and the Wasm plugin `name`.
    name: String,
    vm_id: String,
    root_id: Option<String>,
    config: Value,
}

/// A route before the catch-all `/` route.
#[derive(Debug, Clone)]
struct ExtraRoute {
    prefix: String,
    /// `metadata.filter_metadata.portcullis.bypass_auth: true`.
    bypass_auth: bool,
    /// HTTP filter names switched off with `envoy.config.route.v3.FilterConfig`.
    disabled: Vec<String>,
}

/// Builds an Envoy bootstrap YAML. `{{WASM}}` is left in for [`crate::envoy::Envoy`].
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    upstream_port: u16,
    plugin: Option<Value>,
    clusters: Vec<(String, u16)>,
    h2_clusters: Vec<(String, u16)>,
    vm_env: Vec<(String, String)>,
    root_id: Option<String>,
    fail_open: bool,
    failure_policy: Option<String>,
    /// The plugin's `allow_on_headers_stop_iteration` (Envoy 1.35+).
    headers_stop_iteration: bool,
    instances: Vec<PluginInstance>,
    routes: Vec<ExtraRoute>,
    listeners: Vec<(String, Vec<Value>)>,
    /// The port of listener `main` (0: any free port).
    main_port: u16,
}

/// A YAML double-quoted scalar (a JSON string literal is one).
pub fn yaml_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

impl EnvoyConfig {
    /// Listener `main` → cluster `upstream` at `127.0.0.1:upstream_port`.
    pub fn new(upstream_port: u16) -> EnvoyConfig {
        EnvoyConfig {
            upstream_port,
            plugin: None,
            clusters: Vec::new(),
            h2_clusters: Vec::new(),
            vm_env: Vec::new(),
            root_id: None,
            fail_open: false,
            failure_policy: None,
            headers_stop_iteration: false,
            instances: Vec::new(),
            routes: Vec::new(),
            listeners: Vec::new(),
            main_port: 0,
        }
    }

    /// Binds listener `main` to this fixed port instead of 0: for tests whose plugin
    /// configuration names the listener's own origin (OAuth2 `protectedOrigins`,
    /// redirect URIs registered at an IdP). See [`crate::idp::free_port`].
    pub fn main_port(mut self, port: u16) -> Self {
        self.main_port = port;
        self
    }

    /// Adds a further Portcullis instance to the `main` chain: `http_filters[].name`
    /// and plugin `name` are `name`, with its own `vm_id`, optional `root_id` and
    /// plugin configuration. Instances run in the order added, after [`plugin`]'s.
    ///
    /// [`plugin`]: EnvoyConfig::plugin
    pub fn plugin_instance(
        mut self,
        name: &str,
        vm_id: &str,
        root_id: Option<&str>,
        config: Value,
    ) -> Self {
        self.instances.push(PluginInstance {
            name: name.to_string(),
            vm_id: vm_id.to_string(),
            root_id: root_id.map(str::to_string),
            config,
        });
        self
    }

    /// A route for `prefix` (to `upstream`) carrying route metadata
    /// `filter_metadata: {portcullis: {bypass_auth: true}}`.
    pub fn bypass_route(mut self, prefix: &str) -> Self {
        self.routes.push(ExtraRoute {
            prefix: prefix.to_string(),
            bypass_auth: true,
            disabled: Vec::new(),
        });
        self
    }

    /// A route for `prefix` (to `upstream`) whose `typed_per_filter_config` switches
    /// off each named HTTP filter (`envoy.config.route.v3.FilterConfig {disabled: true}`);
    /// [`WASM_FILTER_NAME`] names the instance of [`EnvoyConfig::plugin`].
    pub fn disabled_route(mut self, prefix: &str, filters: &[&str]) -> Self {
        self.routes.push(ExtraRoute {
            prefix: prefix.to_string(),
            bypass_auth: false,
            disabled: filters.iter().map(|f| f.to_string()).collect(),
        });
        self
    }

    /// A further listener `name` (port 0) over the same routes, whose HTTP filter
    /// chain is `http_filters` (each a full `{name, typed_config}` entry, as JSON)
    /// then the router. No Portcullis instance runs there.
    pub fn listener(mut self, name: &str, http_filters: Vec<Value>) -> Self {
        self.listeners.push((name.to_string(), http_filters));
        self
    }

    /// Adds the Portcullis filter with this plugin configuration (the JSON of
    /// CONFIG.md), passed as the `StringValue` `configuration`.
    pub fn plugin(mut self, config: Value) -> Self {
        self.plugin = Some(config);
        self
    }

    /// A static cluster `name` → `127.0.0.1:port` (plain HTTP/1.1).
    pub fn cluster(mut self, name: &str, port: u16) -> Self {
        self.clusters.push((name.to_string(), port));
        self
    }

    /// A static cluster `name` → `127.0.0.1:port` speaking HTTP/2 without TLS
    /// (h2c), as a gRPC service needs (`typed_extension_protocol_options`
    /// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions` with
    /// `explicit_http_config.http2_protocol_options`).
    pub fn grpc_cluster(mut self, name: &str, port: u16) -> Self {
        self.h2_clusters.push((name.to_string(), port));
        self
    }

    /// An environment variable of the Wasm VM (`vm_config.environment_variables`).
    pub fn vm_env(mut self, key: &str, value: &str) -> Self {
        self.vm_env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn root_id(mut self, id: &str) -> Self {
        self.root_id = Some(id.to_string());
        self
    }

    pub fn fail_open(mut self, yes: bool) -> Self {
        self.fail_open = yes;
        self
    }

    /// Sets the plugin's `allow_on_headers_stop_iteration: true` (Envoy 1.35+):
    /// a pause of the request headers holds only them, and the body callbacks
    /// still come (docs/external.md, `include_body`).
    pub fn headers_stop_iteration(mut self, yes: bool) -> Self {
        self.headers_stop_iteration = yes;
        self
    }

    /// The plugin's `failure_policy` (`FAIL_CLOSED`, `FAIL_OPEN`, `FAIL_RELOAD`)
    /// instead of `fail_open`: what Envoy does after the VM crashed.
    pub fn failure_policy(mut self, policy: &str) -> Self {
        self.failure_policy = Some(policy.to_string());
        self
    }

    /// The http_filters entry for a Wasm filter (indented for `build`).
    fn wasm_filter(
        &self,
        filter_name: &str,
        vm_id: &str,
        root_id: Option<&str>,
        plugin: &Value,
    ) -> String {
        let mut s = String::new();
        s.push_str(&format!("          - name: {}\n", yaml_str(filter_name)));
        s.push_str("            typed_config:\n");
        s.push_str("              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n");
        s.push_str("              config:\n");
        let plugin_name = if filter_name == WASM_FILTER_NAME {
            "portcullis"
        } else {
            filter_name
        };
        s.push_str(&format!(
            "                name: {}\n",
            yaml_str(plugin_name)
        ));
        if let Some(id) = root_id {
            s.push_str(&format!("                root_id: {}\n", yaml_str(id)));
        }
        match &self.failure_policy {
            Some(policy) => s.push_str(&format!("                failure_policy: {policy}\n")),
            None => s.push_str(&format!("                fail_open: {}\n", self.fail_open)),
        }
        if self.headers_stop_iteration {
            s.push_str("                allow_on_headers_stop_iteration: true\n");
        }
        s.push_str("                configuration:\n");
        s.push_str(
            "                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n",
        );
        s.push_str(&format!(
            "                  value: {}\n",
            yaml_str(&plugin.to_string())
        ));
        s.push_str("                vm_config:\n");
        s.push_str(&format!("                  vm_id: {}\n", yaml_str(vm_id)));
        s.push_str("                  runtime: envoy.wasm.runtime.v8\n");
        s.push_str("                  code: { local: { filename: \"{{WASM}}\" } }\n");
        if !self.vm_env.is_empty() {
            s.push_str("                  environment_variables:\n");
            s.push_str("                    key_values:\n");
            for (k, v) in &self.vm_env {
                s.push_str(&format!(
                    "                      {}: {}\n",
                    yaml_str(k),
                    yaml_str(v)
                ));
            }
        }
        s
    }

    /// The `routes:` entries (indented for `build`): the extra routes, then `/`.
    fn routes_yaml(&self) -> String {
        let mut s = String::new();
        for r in &self.routes {
            s.push_str(&format!(
                "              - match: {{ prefix: {} }}\n",
                yaml_str(&r.prefix)
            ));
            s.push_str("                route: { cluster: upstream, timeout: 30s }\n");
            if r.bypass_auth {
                s.push_str("                metadata: { filter_metadata: { portcullis: { bypass_auth: true } } }\n");
            }
            if !r.disabled.is_empty() {
                s.push_str("                typed_per_filter_config:\n");
                for f in &r.disabled {
                    s.push_str(&format!(
                        "                  {}: {{ \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true }}\n",
                        yaml_str(f)
                    ));
                }
            }
        }
        s.push_str("              - match: { prefix: \"/\" }\n");
        s.push_str("                route: { cluster: upstream, timeout: 30s }\n");
        s
    }

    /// A listener with the usual routes; `filters` is the http_filters text before
    /// the router.
    fn listener_yaml(&self, name: &str, port: u16, filters: &str) -> String {
        let mut s = format!(
            "  - name: {name}
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            name: {name}
            virtual_hosts:
            - name: all
              domains: [\"*\"]
              routes:
",
            name = yaml_str(name)
        );
        s.push_str(&self.routes_yaml());
        s.push_str("          http_filters:\n");
        s.push_str(filters);
        s.push_str(
            "          - name: envoy.filters.http.router
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
",
        );
        s
    }

    pub fn build(&self) -> String {
        let mut filters = String::new();
        if let Some(p) = &self.plugin {
            filters.push_str(&self.wasm_filter(
                WASM_FILTER_NAME,
                "portcullis",
                self.root_id.as_deref(),
                p,
            ));
        }
        for i in &self.instances {
            filters.push_str(&self.wasm_filter(&i.name, &i.vm_id, i.root_id.as_deref(), &i.config));
        }
        let mut s = String::from("static_resources:\n  listeners:\n");
        s.push_str(&self.listener_yaml("main", self.main_port, &filters));
        for (name, http_filters) in &self.listeners {
            let mut text = String::new();
            for f in http_filters {
                // A YAML flow mapping: JSON is valid YAML.
                text.push_str(&format!("          - {f}\n"));
            }
            s.push_str(&self.listener_yaml(name, 0, &text));
        }
        s.push_str("  clusters:\n");
        let mut clusters = vec![("upstream".to_string(), self.upstream_port)];
        clusters.extend(self.clusters.iter().cloned());
        for (name, port) in clusters {
            s.push_str(&static_cluster(&name, port));
        }
        for (name, port) in &self.h2_clusters {
            s.push_str(&static_cluster(name, *port));
            s.push_str(H2_OPTIONS);
        }
        s
    }
}

/// An `http_filters` entry for Envoy's native JWT filter
/// (`envoy.filters.http.jwt_authn`) with this `JwtAuthentication` config (without
/// its `@type`), for [`EnvoyConfig::listener`].
pub fn jwt_authn_filter(config: Value) -> Value {
    let mut typed = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
    });
    if let (Some(t), Value::Object(c)) = (typed.as_object_mut(), config) {
        t.extend(c);
    }
    json!({ "name": "envoy.filters.http.jwt_authn", "typed_config": typed })
}

/// Appended to a [`static_cluster`] entry: the cluster speaks HTTP/2 (h2c).
const H2_OPTIONS: &str = "    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
";

/// A `clusters:` list entry (indented for `static_resources.clusters`).
pub fn static_cluster(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}
",
        name = yaml_str(name)
    )
}
