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

#[cfg(test)]
mod tests {
    use super::*;

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
