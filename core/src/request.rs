//! What the core knows of one request: pseudo-headers, headers, connection facts.
//! The host shell fills it once per request; filters read it and the pipeline
//! applies header changes to it as they accumulate along a rule's chain.

use crate::template::HeaderLookup;

/// Request headers with lower-case names, in arrival order, duplicates kept.
///
/// Values are bytes, as HTTP has them (RFC 9110 §5.5 allows obs-text, bytes
/// 0x80–0xFF). A UTF-8 value, nearly every one, is kept once as text (no copy);
/// any other keeps its exact bytes beside an escaped text form (see
/// [`escape_opaque`]) that matching and templates read. What passes through
/// (the auth service's check, a rewritten `Cookie`, a template output) is
/// written from the bytes, so the upstream gets what the client sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<Entry>,
    /// Some value is not UTF-8 (escaped text forms exist).
    opaque: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    /// The value as text: itself when UTF-8, else escaped.
    text: String,
    /// The exact bytes, only when they are not UTF-8.
    raw: Option<Vec<u8>>,
}

impl Entry {
    fn new(mut name: String, text: String) -> Entry {
        name.make_ascii_lowercase();
        Entry {
            name,
            text,
            raw: None,
        }
    }

    fn from_bytes(mut name: String, value: Vec<u8>) -> Entry {
        name.make_ascii_lowercase();
        match String::from_utf8(value) {
            Ok(text) => Entry {
                name,
                text,
                raw: None,
            },
            Err(e) => {
                let raw = e.into_bytes();
                Entry {
                    name,
                    text: escape_opaque(&raw),
                    raw: Some(raw),
                }
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        self.raw.as_deref().unwrap_or(self.text.as_bytes())
    }
}

/// First of the private-use characters U+F780–U+F7FF that stand for the bytes
/// 0x80–0xFF of a value that is not UTF-8 (as Python's `surrogateescape`).
const ESCAPE_BASE: u32 = 0xF700;

/// The text form of a header value that is not UTF-8: valid UTF-8 runs as they
/// are, each byte of an invalid sequence as U+F700 + byte. [`unescape_opaque`]
/// gives the bytes back.
pub fn escape_opaque(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push(char::from_u32(ESCAPE_BASE + u32::from(*b)).unwrap_or('\u{FFFD}'));
        }
    }
    out
}

/// The bytes of a text made from escaped header values (a template's output):
/// U+F780–U+F7FF become the bytes they stand for, the rest is UTF-8.
pub fn unescape_opaque(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut buf = [0u8; 4];
    for c in text.chars() {
        match u32::from(c).checked_sub(ESCAPE_BASE) {
            Some(b @ 0x80..=0xFF) => out.push(b as u8),
            _ => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    out
}

impl Headers {
    /// Builds from host pairs; names are lower-cased (Envoy already sends them so).
    pub fn new(pairs: Vec<(String, String)>) -> Headers {
        let entries = pairs.into_iter().map(|(n, v)| Entry::new(n, v)).collect();
        Headers {
            entries,
            opaque: false,
        }
    }

    /// Builds from the host's pairs of name and value bytes (names lower-cased);
    /// UTF-8 values are not copied.
    pub fn from_bytes(pairs: Vec<(String, Vec<u8>)>) -> Headers {
        let entries: Vec<Entry> = pairs
            .into_iter()
            .map(|(n, v)| Entry::from_bytes(n, v))
            .collect();
        let opaque = entries.iter().any(|e| e.raw.is_some());
        Headers { entries, opaque }
    }

    /// The first value of `name` (any case), as text (escaped when not UTF-8).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(name))
            .map(|e| e.text.as_str())
    }

    /// Every value of `name` (any case), as text.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.name.eq_ignore_ascii_case(name))
            .map(|e| e.text.as_str())
    }

    /// Every value of `name` (any case), as the client sent its bytes.
    pub fn get_all_bytes<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.name.eq_ignore_ascii_case(name))
            .map(Entry::bytes)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|e| !e.name.eq_ignore_ascii_case(name));
    }

    /// Replaces every value of `name` with one.
    pub fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.append(name, value);
    }

    /// Adds a value beside any existing ones.
    pub fn append(&mut self, name: &str, value: &str) {
        self.entries
            .push(Entry::new(name.to_string(), value.to_string()));
    }

    /// Replaces every value of `name` with these bytes.
    pub fn set_bytes(&mut self, name: &str, value: &[u8]) {
        self.remove(name);
        self.append_bytes(name, value);
    }

    /// Adds a value of bytes beside any existing ones.
    pub fn append_bytes(&mut self, name: &str, value: &[u8]) {
        let entry = Entry::from_bytes(name.to_string(), value.to_vec());
        self.opaque |= entry.raw.is_some();
        self.entries.push(entry);
    }

    /// Names and values as text (escaped when not UTF-8).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|e| (e.name.as_str(), e.text.as_str()))
    }

    /// Names and values as the client sent their bytes.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|e| (e.name.as_str(), e.bytes()))
    }

    /// Whether some value is not UTF-8 (its text form is escaped).
    pub fn has_opaque(&self) -> bool {
        self.opaque
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

    fn has_opaque(&self) -> bool {
        self.opaque
    }

    fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.iter().collect()
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

/// Bytes as text, without a copy when they are UTF-8.
fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
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
        Request::from_header_bytes(
            pairs
                .into_iter()
                .map(|(n, v)| (n, v.into_bytes()))
                .collect(),
        )
    }

    /// Builds a request from the host's header list of bytes (pseudo-headers
    /// included); values are kept as bytes (see [`Headers`]), pseudo-headers
    /// as text (converted lossily: Envoy validates them).
    pub fn from_header_bytes(pairs: Vec<(String, Vec<u8>)>) -> Request {
        let mut request = Request::default();
        let mut headers = Vec::with_capacity(pairs.len());
        for (name, value) in pairs {
            match name.as_str() {
                ":method" => request.method = lossy(value),
                ":scheme" => request.scheme = lossy(value),
                ":authority" => request.authority = lossy(value),
                ":path" => request.path = lossy(value),
                _ if name.starts_with(':') => {}
                _ => headers.push((name, value)),
            }
        }
        request.headers = Headers::from_bytes(headers);
        if let Some(id) = request.headers.get("x-request-id") {
            request.request_id = id.to_string();
        }
        if request.authority.is_empty() {
            if let Some(host) = request.headers.get("host") {
                request.authority = host.to_string();
            }
        }
        request
    }

    /// A request from the few headers `Config::lean_headers` names (lower case,
    /// without pseudo-headers); see `lean`.
    pub fn lean(pairs: Vec<(String, String)>) -> Request {
        Request::lean_bytes(
            pairs
                .into_iter()
                .map(|(n, v)| (n, v.into_bytes()))
                .collect(),
        )
    }

    /// [`Request::lean`] from value bytes. Pseudo-headers among them
    /// (`:method`, `:path`) fill their fields, as in `from_header_bytes`.
    pub fn lean_bytes(pairs: Vec<(String, Vec<u8>)>) -> Request {
        if pairs.iter().any(|(n, _)| n.starts_with(':')) {
            let mut request = Request::from_header_bytes(pairs);
            request.lean = true;
            return request;
        }
        Request {
            headers: Headers::from_bytes(pairs),
            lean: true,
            ..Request::default()
        }
    }

    /// The headers as the client sent them (see `as_sent`).
    pub fn headers_as_sent(&self) -> &Headers {
        self.as_sent.as_ref().unwrap_or(&self.headers)
    }

    /// A CORS preflight (Fetch standard): `OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`, both non-empty (as Envoy's CORS filter
    /// and jwt_authn tell one). A browser never sends credentials on one.
    pub fn is_cors_preflight(&self) -> bool {
        self.method == "OPTIONS"
            && self.headers.get("origin").is_some_and(|v| !v.is_empty())
            && self
                .headers
                .get("access-control-request-method")
                .is_some_and(|v| !v.is_empty())
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }

    /// The path rules match ([`match_path`] of [`Request::path_only`]).
    pub fn match_path(&self) -> std::borrow::Cow<'_, str> {
        match_path(self.path_only())
    }
}

/// `path` as an upstream that decodes it sees it, for rule matching:
/// percent-escapes decoded once (`%61dmin` is `admin`, `%2F` is `/`), `\`
/// taken as `/` (as Windows servers do), path parameters cut from each
/// segment (`/admin;jsessionid=1/x` is `/admin/x`, as Servlet containers
/// do), runs of `/` merged, and dot segments removed (RFC 3986 §5.2.4:
/// `/a/../b` is `/b`).
/// A path that needs none of it (nearly every one) is returned as is, without
/// a copy. Decoded bytes that are not UTF-8 become U+FFFD (matching only; the
/// request goes on as sent).
pub fn match_path(path: &str) -> std::borrow::Cow<'_, str> {
    let bytes = path.as_bytes();
    let plain = !bytes.iter().any(|b| matches!(b, b'%' | b';' | b'\\'))
        && !bytes.windows(2).any(|w| w == b"//" || w == b"/.");
    if plain {
        return std::borrow::Cow::Borrowed(path);
    }
    // Percent-decoding (an invalid escape stays as it is).
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                decoded.push((hi * 16 + lo) as u8);
                i += 3;
            }
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    // Segments without their parameters, without empty ones (merged
    // slashes) and dot segments.
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    // A trailing slash (or a last dot segment) keeps the path a directory.
    let last = decoded
        .rsplit('/')
        .next()
        .and_then(|l| l.split(';').next())
        .unwrap_or("");
    if out.is_empty() || decoded.ends_with('/') || last == "." || last == ".." {
        out.push('/');
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_path_decodes_merges_and_removes_dot_segments() {
        for (path, expected) in [
            ("/api/items", "/api/items"),
            ("/", "/"),
            ("/%61dmin/x", "/admin/x"),
            ("/%41DMIN/x", "/ADMIN/x"),
            ("/public/..%2Fadmin/x", "/admin/x"),
            ("/public/%2e%2e/admin", "/admin"),
            ("//admin//x", "/admin/x"),
            ("/a/./b/../c/", "/a/c/"),
            ("/a/b/..", "/a/"),
            ("/../../etc", "/etc"),
            ("/x%zz%4", "/x%zz%4"),
            ("/a%2561", "/a%61"),
            ("/caf%C3%A9", "/café"),
            ("/bad%FF", "/bad\u{fffd}"),
            ("/admin;jsessionid=1/x", "/admin/x"),
            ("/public;/../admin/x", "/admin/x"),
            ("/admin%3Bx=1/y", "/admin/y"),
            ("/a/..;/admin", "/admin"),
            ("/admin\\x", "/admin/x"),
            ("/public\\..\\admin", "/admin"),
            ("/a/b;p", "/a/b"),
        ] {
            assert_eq!(match_path(path), expected, "{path}");
        }
        assert!(matches!(
            match_path("/api/v1.2/x"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

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
        assert_eq!(r.match_path(), "/a");
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

    #[test]
    fn values_that_are_not_utf8_keep_their_bytes() {
        let raw = b"Mozilla/5.0 \xa1\xb1; caf\xc3\xa9 \xff".to_vec();
        let h = Headers::from_bytes(vec![
            ("User-Agent".to_string(), raw.clone()),
            ("accept".to_string(), b"*/*".to_vec()),
        ]);
        assert!(h.has_opaque());
        let text = h.get("user-agent").unwrap();
        assert_eq!(text, "Mozilla/5.0 \u{f7a1}\u{f7b1}; café \u{f7ff}");
        assert_eq!(unescape_opaque(text), raw);
        assert_eq!(h.iter_bytes().next().unwrap().1, raw.as_slice());
        assert_eq!(h.get_all_bytes("accept").next(), Some(&b"*/*"[..]));
        let plain = Headers::from_bytes(vec![("a".to_string(), "é".as_bytes().to_vec())]);
        assert!(!plain.has_opaque());
    }
}
