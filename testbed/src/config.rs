//! Envoy configurations for tests: one listener `main` on port 0, every request
//! routed to cluster `upstream`, optionally the Portcullis Wasm filter in front of the
//! router, plus named static clusters for callouts (JWKS, auth service, IdP).

use serde_json::Value;

/// Builds an Envoy bootstrap YAML. `{{WASM}}` is left in for [`crate::envoy::Envoy`].
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    upstream_port: u16,
    plugin: Option<Value>,
    clusters: Vec<(String, u16)>,
    vm_env: Vec<(String, String)>,
    root_id: Option<String>,
    fail_open: bool,
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
            vm_env: Vec::new(),
            root_id: None,
            fail_open: false,
        }
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

    /// The http_filters entry for the Wasm filter (indented for `build`).
    fn wasm_filter(&self, plugin: &Value) -> String {
        let mut s = String::new();
        s.push_str("          - name: envoy.filters.http.wasm\n");
        s.push_str("            typed_config:\n");
        s.push_str("              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n");
        s.push_str("              config:\n");
        s.push_str("                name: portcullis\n");
        if let Some(id) = &self.root_id {
            s.push_str(&format!("                root_id: {}\n", yaml_str(id)));
        }
        s.push_str(&format!("                fail_open: {}\n", self.fail_open));
        s.push_str("                configuration:\n");
        s.push_str(
            "                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n",
        );
        s.push_str(&format!(
            "                  value: {}\n",
            yaml_str(&plugin.to_string())
        ));
        s.push_str("                vm_config:\n");
        s.push_str("                  vm_id: portcullis\n");
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

    pub fn build(&self) -> String {
        let mut s = String::from(
            "static_resources:
  listeners:
  - name: main
    address:
      socket_address: { address: 127.0.0.1, port_value: 0 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: main
          route_config:
            name: main
            virtual_hosts:
            - name: all
              domains: [\"*\"]
              routes:
              - match: { prefix: \"/\" }
                route: { cluster: upstream, timeout: 30s }
          http_filters:
",
        );
        if let Some(p) = &self.plugin {
            s.push_str(&self.wasm_filter(p));
        }
        s.push_str(
            "          - name: envoy.filters.http.router
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
",
        );
        let mut clusters = vec![("upstream".to_string(), self.upstream_port)];
        clusters.extend(self.clusters.iter().cloned());
        for (name, port) in clusters {
            s.push_str(&static_cluster(&name, port));
        }
        s
    }
}

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
