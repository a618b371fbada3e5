//! What the core knows of one request: pseudo-headers, headers, connection facts.
//! The host shell fills it once per request; filters read it and the pipeline
//! applies header changes to it as they accumulate along a rule's chain.

use crate::template::HeaderLookup;

/// Request headers with lower-case names, in arrival order, duplicates kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    /// Builds from host pairs; names are lower-cased (Envoy already sends them so).
    pub fn new(pairs: Vec<(String, String)>) -> Headers {
        let entries = pairs
            .into_iter()
            .map(|(mut n, v)| {
                n.make_ascii_lowercase();
                (n, v)
            })
            .collect();
        Headers { entries }
    }

    /// The first value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (any case).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Replaces every value of `name` with one.
    pub fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.entries
            .push((name.to_ascii_lowercase(), value.to_string()));
    }

    /// Adds a value beside any existing ones.
    pub fn append(&mut self, name: &str, value: &str) {
        self.entries
            .push((name.to_ascii_lowercase(), value.to_string()));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl HeaderLookup for Headers {
    fn get_header(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

/// The verified client certificate, as Envoy reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    pub verified: bool,
    pub subject: String,
    pub dns_sans: Vec<String>,
    pub uri_sans: Vec<String>,
    /// Hex SHA-256 of the DER certificate.
    pub sha256: String,
}

/// One request as the core sees it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub scheme: String,
    pub authority: String,
    /// Path with query, as received.
    pub path: String,
    pub headers: Headers,
    pub request_id: String,
    pub tls: Option<TlsInfo>,
    /// Downstream peer `ip:port` (Envoy property `source.address`), when known.
    pub source_address: String,
    /// Local `ip:port` the request arrived on (`destination.address`), when known.
    pub destination_address: String,
    /// `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3` (`request.protocol`), when known.
    pub protocol: String,
    /// The headers as the client sent them, kept when Portcullis strips headers it
    /// injects: templates (`.httpRequestHeader`) read these, as in AES.
    pub as_sent: Option<Headers>,
    /// Built from only the headers `Config::lean_headers` names: the journey may
    /// pass it, but asks for the whole request (`Step::NeedFullRequest`) for
    /// anything else.
    pub lean: bool,
    /// The body, when a filter asked the host to read it (an OAuth2 logout
    /// form, at most `MAX_LOGOUT_FORM_BYTES` + 1 bytes); `None` otherwise.
    pub body: Option<Vec<u8>>,
}

impl Request {
    /// Builds a request from the host's header list (pseudo-headers included).
    pub fn from_header_pairs(pairs: Vec<(String, String)>) -> Request {
        let mut request = Request::default();
        let mut headers = Vec::with_capacity(pairs.len());
        for (name, value) in pairs {
            match name.as_str() {
                ":method" => request.method = value,
                ":scheme" => request.scheme = value,
                ":authority" => request.authority = value,
                ":path" => request.path = value,
                _ if name.starts_with(':') => {}
                _ => {
                    if name.eq_ignore_ascii_case("x-request-id") {
                        request.request_id = value.clone();
                    }
                    headers.push((name, value));
                }
            }
        }
        if request.authority.is_empty() {
            if let Some((_, host)) = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("host")) {
                request.authority = host.clone();
            }
        }
        request.headers = Headers::new(headers);
        request
    }

    /// A request from the few headers `Config::lean_headers` names (lower case,
    /// without pseudo-headers); see `lean`.
    pub fn lean(pairs: Vec<(String, String)>) -> Request {
        Request {
            headers: Headers::new(pairs),
            lean: true,
            ..Request::default()
        }
    }

    /// The headers as the client sent them (see `as_sent`).
    pub fn headers_as_sent(&self) -> &Headers {
        self.as_sent.as_ref().unwrap_or(&self.headers)
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn pseudo_headers_fill_request_fields() {
        let r = Request::from_header_pairs(pairs(&[
            (":method", "GET"),
            (":path", "/a?b=c"),
            (":authority", "example.com"),
            (":scheme", "https"),
            ("X-Request-Id", "rid"),
            ("Accept", "*/*"),
        ]));
        assert_eq!(r.method, "GET");
        assert_eq!(r.path_only(), "/a");
        assert_eq!(r.authority, "example.com");
        assert_eq!(r.request_id, "rid");
        assert_eq!(r.headers.get("accept"), Some("*/*"));
        assert_eq!(r.headers.len(), 2);
    }

    #[test]
    fn set_replaces_every_case_variant() {
        let mut h = Headers::new(pairs(&[("X-A", "1"), ("x-a", "2"), ("x-b", "3")]));
        h.set("X-A", "new");
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), vec!["new"]);
        h.remove("X-B");
        assert!(!h.contains("x-b"));
    }
}
