//! Callout URLs (`jwksURI`, `auth_service`, `authorizationURL`) and the Envoy
//! cluster that serves them.

use std::collections::BTreeMap;

/// A parsed `http(s)://authority/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalloutUrl {
    pub scheme: String,
    /// `host` or `host:port`, exactly as written.
    pub authority: String,
    /// The host without the port (IPv6 brackets kept).
    pub host: String,
    /// Path and query; `/` when the URL has none.
    pub path: String,
}

impl CalloutUrl {
    /// Parses an absolute URL. With `default_scheme`, a URL without `scheme://`
    /// takes it (Emissary's `auth_service: "auth:3000"`).
    pub fn parse(text: &str, default_scheme: Option<&str>) -> Result<CalloutUrl, String> {
        let (scheme, rest) = match text.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => match default_scheme {
                Some(s) => (s.to_string(), text),
                None => return Err(format!("invalid URL {text:?}: missing http:// or https://")),
            },
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "invalid URL {text:?}: scheme must be http or https"
            ));
        }
        let split_at = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split_at);
        if authority.is_empty() {
            return Err(format!("invalid URL {text:?}: no host"));
        }
        if authority.contains('@') {
            return Err(format!(
                "invalid URL {text:?}: user information is not allowed"
            ));
        }
        if authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
        {
            return Err(format!("invalid URL {text:?}: bad character in host"));
        }
        let host = if authority.starts_with('[') {
            match authority.find(']') {
                Some(end) => authority.get(..=end).unwrap_or(authority),
                None => return Err(format!("invalid URL {text:?}: unclosed '['")),
            }
        } else {
            authority.split(':').next().unwrap_or(authority)
        };
        let port = authority.get(host.len()..).unwrap_or("");
        if let Some(port) = port.strip_prefix(':') {
            if port.parse::<u16>().is_err() {
                return Err(format!("invalid URL {text:?}: bad port"));
            }
        } else if !port.is_empty() {
            return Err(format!("invalid URL {text:?}: bad host"));
        }
        if host.is_empty() {
            return Err(format!("invalid URL {text:?}: no host"));
        }
        let path = if path.is_empty() {
            "/".to_string()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(CalloutUrl {
            scheme,
            authority: authority.to_string(),
            host: host.to_string(),
            path,
        })
    }

    /// The Envoy cluster for this URL: the `clusters` entry for its authority, else
    /// the host without the port.
    pub fn cluster(&self, clusters: &BTreeMap<String, String>) -> String {
        clusters.get(&self.authority).cloned().unwrap_or_else(|| {
            self.host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        })
    }
}

/// Where a callout goes: Envoy cluster, `:authority`, `:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalloutTarget {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub scheme: String,
}

impl CalloutTarget {
    pub fn new(url: &CalloutUrl, clusters: &BTreeMap<String, String>) -> CalloutTarget {
        CalloutTarget {
            cluster: url.cluster(clusters),
            authority: url.authority.clone(),
            path: url.path.clone(),
            scheme: url.scheme.clone(),
        }
    }
}

/// Notices for `clusters` entries that no URL of the configuration uses: the
/// key must be a URL's authority exactly as written (`host` or `host:port`),
/// so `"idp.example.com:443"` does not serve `https://idp.example.com/...`.
/// `root` is the configuration JSON; every `http://` or `https://` string
/// inside `filters`, and each External `auth_service` (scheme optional),
/// counts as used. With an OAuth2 filter the notice says the entry may still
/// serve an endpoint its IdP's discovery document names.
pub fn unused_cluster_notices(
    root: &serde_json::Value,
    clusters: &BTreeMap<String, String>,
) -> Vec<String> {
    use serde_json::Value;
    fn collect(value: &Value, used: &mut Vec<String>) {
        match value {
            Value::String(s) if s.contains("://") => {
                if let Ok(url) = CalloutUrl::parse(s.trim(), None) {
                    used.push(url.authority);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, used)),
            Value::Object(map) => map.values().for_each(|v| collect(v, used)),
            _ => {}
        }
    }
    let mut used = Vec::new();
    let filters = root
        .get("filters")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for filter in filters {
        collect(filter, &mut used);
        if let Some(address) = filter
            .get("External")
            .and_then(|e| e.get("auth_service"))
            .and_then(Value::as_str)
        {
            if let Ok(url) = CalloutUrl::parse(address.trim(), Some("http")) {
                used.push(url.authority);
            }
        }
    }
    let oauth2 = filters.iter().any(|f| f.get("OAuth2").is_some());
    clusters
        .keys()
        .filter(|key| !used.iter().any(|u| u == *key))
        .map(|key| {
            let host = key.split(':').next().unwrap_or(key);
            let near: Vec<&String> = used
                .iter()
                .filter(|u| u.split(':').next() == Some(host))
                .collect();
            let mut notice = format!(
                "clusters.{key:?}: no URL of the configuration has this authority (keys are matched exactly as the URL writes it: host, or host:port)"
            );
            if let Some(u) = near.first() {
                notice.push_str(&format!("; a URL uses {u:?}"));
            }
            if oauth2 {
                notice.push_str(
                    "; it may still serve an endpoint an OAuth2 IdP's discovery document names",
                );
            }
            notice
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clusters_key_no_url_uses_is_noticed() {
        let mut clusters = BTreeMap::new();
        clusters.insert("idp.example.com:443".to_string(), "idp".to_string());
        clusters.insert("auth:3000".to_string(), "authsvc".to_string());
        let root = serde_json::json!({ "filters": [
            { "name": "j", "JWT": { "jwksURI": "https://idp.example.com/jwks" } },
            { "name": "e", "External": { "auth_service": "auth:3000" } }
        ] });
        let notices = unused_cluster_notices(&root, &clusters);
        assert_eq!(
            notices,
            ["clusters.\"idp.example.com:443\": no URL of the configuration has this authority (keys are matched exactly as the URL writes it: host, or host:port); a URL uses \"idp.example.com\""]
        );
    }

    #[test]
    fn cluster_defaults_to_host_without_port() {
        let url = CalloutUrl::parse("http://idp.example.com:8443/jwks", None).unwrap();
        assert_eq!(url.authority, "idp.example.com:8443");
        assert_eq!(url.path, "/jwks");
        assert_eq!(url.cluster(&BTreeMap::new()), "idp.example.com");
    }

    #[test]
    fn cluster_map_matches_authority_as_written() {
        let mut clusters = BTreeMap::new();
        clusters.insert("idp.example.com:8443".to_string(), "idp".to_string());
        let url = CalloutUrl::parse("http://idp.example.com:8443/jwks", None).unwrap();
        assert_eq!(url.cluster(&clusters), "idp");
        let other = CalloutUrl::parse("http://idp.example.com/jwks", None).unwrap();
        assert_eq!(other.cluster(&clusters), "idp.example.com");
    }

    #[test]
    fn default_scheme_for_emissary_style_addresses() {
        let url = CalloutUrl::parse("auth:3000", Some("http")).unwrap();
        assert_eq!(url.scheme, "http");
        assert_eq!(url.authority, "auth:3000");
        assert_eq!(url.path, "/");
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in [
            "",
            "ftp://x",
            "http://",
            "http://a:b",
            "http://u@h/",
            "http://a b/",
            "x",
        ] {
            assert!(CalloutUrl::parse(bad, None).is_err(), "{bad}");
        }
    }
}
