//! A browser without a browser: an HTTP agent over [`crate::client`] that keeps a
//! cookie jar (RFC 6265 as browsers do it for `http://127.0.0.1`: cookies are
//! host-scoped, not port-scoped; `Path` matching; `Max-Age`/`Expires` deletion) and
//! follows redirects, recording every hop. Also a minimal HTML form reader, so tests
//! can submit the IdP's login and consent pages (see [`crate::idp::Idp::login_headless`]).
//!
//! URLs are absolute `http://127.0.0.1:PORT/path?query` (or `localhost`); only
//! loopback is ever contacted. A redirect to any other host is recorded and not
//! followed (an open-redirect test sees it as the last hop).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::client::{self, Response};

/// Redirects followed at most by [`Agent::follow`] before it panics (a loop).
pub const MAX_REDIRECTS: usize = 20;

/// A parsed absolute `http` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Path with query (`/` at least).
    pub path: String,
}

impl Url {
    /// Parses `http://host[:port][/path][?query]`; `None` for anything else.
    pub fn parse(url: &str) -> Option<Url> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), 80),
        };
        if host.is_empty() || host.contains('@') {
            return None;
        }
        Some(Url {
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    pub fn origin(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// The path without the query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("/")
    }

    /// The decoded value of query parameter `name` (first occurrence).
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(&self.path, name)
    }

    /// Resolves a `Location` (absolute, scheme-relative, absolute-path or relative)
    /// against this URL. A scheme-relative or other-host target keeps its host: the
    /// caller decides whether to follow it.
    pub fn join(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if let Some(rest) = location.strip_prefix("//") {
            format!("http://{rest}")
        } else if location.starts_with('/') {
            format!("{}{location}", self.origin())
        } else if location.starts_with('?') {
            format!("{}{}{location}", self.origin(), self.path_only())
        } else {
            let dir = match self.path_only().rfind('/') {
                Some(i) => &self.path_only()[..=i],
                None => "/",
            };
            format!("{}{dir}{location}", self.origin())
        }
    }

    pub fn is_loopback(&self) -> bool {
        self.host == "127.0.0.1" || self.host == "localhost"
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.origin(), self.path)
    }
}

/// The decoded value of query parameter `name` in `path_or_url` (first occurrence).
pub fn query_param(path_or_url: &str, name: &str) -> Option<String> {
    let query = path_or_url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or("");
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// `application/x-www-form-urlencoded` / query decoding (`+` is a space).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Form/query encoding of one component (unreserved characters kept).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `a=1&b=2` from pairs.
pub fn form_encode(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One stored cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    /// The host that set it (host-only cookies; `Domain` is not used on loopback).
    pub host: String,
    pub path: String,
    pub http_only: bool,
    pub secure: bool,
    pub same_site: Option<String>,
    /// Seconds since the epoch; `None` for a session cookie.
    pub expires: Option<u64>,
    /// The `Set-Cookie` line it came from.
    pub raw: String,
}

/// A parsed `Set-Cookie` header value (attributes lowercased by name).
#[derive(Debug, Clone)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    /// `(lowercased name, value)`; flags have an empty value.
    pub attributes: Vec<(String, String)>,
    pub raw: String,
}

impl SetCookie {
    pub fn parse(raw: &str) -> Option<SetCookie> {
        let mut parts = raw.split(';');
        let (name, value) = parts.next()?.split_once('=')?;
        let name = name.trim().to_string();
        if name.is_empty() {
            return None;
        }
        let attributes = parts
            .map(|a| {
                let (k, v) = a.split_once('=').unwrap_or((a, ""));
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .filter(|(k, _)| !k.is_empty())
            .collect();
        Some(SetCookie {
            name,
            value: value.trim().trim_matches('"').to_string(),
            attributes,
            raw: raw.to_string(),
        })
    }

    /// An attribute's value (`Some("")` for a flag such as `HttpOnly`).
    pub fn attr(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.attributes
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, flag: &str) -> bool {
        self.attr(flag).is_some()
    }

    /// True when this header deletes the cookie (`Max-Age<=0` or `Expires` past).
    pub fn deletes(&self) -> bool {
        if let Some(ma) = self.attr("max-age") {
            return ma.parse::<i64>().map(|v| v <= 0).unwrap_or(false);
        }
        match self.attr("expires").and_then(parse_http_date) {
            Some(t) => t <= now(),
            None => false,
        }
    }

    /// The absolute expiry, when any.
    pub fn expires_at(&self) -> Option<u64> {
        if let Some(ma) = self.attr("max-age").and_then(|v| v.parse::<i64>().ok()) {
            return Some((now() as i64 + ma).max(0) as u64);
        }
        self.attr("expires").and_then(parse_http_date)
    }
}

/// Every `Set-Cookie` of a response, parsed.
pub fn set_cookies(r: &Response) -> Vec<SetCookie> {
    r.headers_all("set-cookie")
        .into_iter()
        .filter_map(SetCookie::parse)
        .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parses an IMF-fixdate (`Thu, 01 Jan 1970 00:00:00 GMT`, also with dashes as the
/// old cookie format writes it) into seconds since the epoch.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let cleaned = s.replace('-', " ");
    let mut day = None;
    let mut month = None;
    let mut year = None;
    let mut hms = None;
    for tok in cleaned.split_whitespace() {
        let tok = tok.trim_end_matches(',');
        if tok.contains(':') {
            let v: Vec<u64> = tok.split(':').filter_map(|x| x.parse().ok()).collect();
            if v.len() == 3 {
                hms = Some(v[0] * 3600 + v[1] * 60 + v[2]);
            }
        } else if let Ok(n) = tok.parse::<i64>() {
            if n > 31 {
                year = Some(if n < 100 { n + 2000 } else { n });
            } else {
                day = Some(n);
            }
        } else {
            const MONTHS: [&str; 12] = [
                "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
            ];
            let lower = tok.to_ascii_lowercase();
            if let Some(i) = MONTHS.iter().position(|m| lower.starts_with(m)) {
                month = Some(i as i64 + 1);
            }
        }
    }
    let (y, m, d) = (year?, month?, day?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + hms.unwrap_or(0) as i64;
    Some(secs.max(0) as u64)
}

/// One request and its response, as [`Agent::follow`] saw them.
#[derive(Debug, Clone)]
pub struct Hop {
    pub method: String,
    pub url: String,
    pub response: Response,
}

/// An HTTP client with a cookie jar.
#[derive(Debug, Clone, Default)]
pub struct Agent {
    pub cookies: Vec<Cookie>,
    /// Every request sent, in order.
    pub history: Vec<Hop>,
}

impl Agent {
    pub fn new() -> Agent {
        Agent::default()
    }

    /// The `Cookie` header the jar sends to `url` (None when empty).
    pub fn cookie_header(&self, url: &Url) -> Option<String> {
        let now = now();
        let path = url.path_only();
        let mut matching: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| c.host == url.host && path_matches(&c.path, path))
            .filter(|c| c.expires.is_none_or(|e| e > now))
            .collect();
        // Longer paths first, as browsers send them.
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        if matching.is_empty() {
            return None;
        }
        Some(
            matching
                .iter()
                .map(|c| format!("{}={}", c.name, c.value))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    /// The jar's cookie `name` for `host` (any path).
    pub fn cookie(&self, host: &str, name: &str) -> Option<&Cookie> {
        self.cookies
            .iter()
            .find(|c| c.host == host && c.name == name)
    }

    /// Cookies for `host` whose name starts with `prefix`.
    pub fn cookies_with_prefix(&self, host: &str, prefix: &str) -> Vec<&Cookie> {
        self.cookies
            .iter()
            .filter(|c| c.host == host && c.name.starts_with(prefix))
            .collect()
    }

    /// Sets (or replaces) a cookie by hand, e.g. a tampered session cookie.
    pub fn set_cookie(&mut self, host: &str, name: &str, value: &str) {
        let existing = self
            .cookies
            .iter_mut()
            .find(|c| c.host == host && c.name == name);
        match existing {
            Some(c) => c.value = value.to_string(),
            None => self.cookies.push(Cookie {
                name: name.to_string(),
                value: value.to_string(),
                host: host.to_string(),
                path: "/".into(),
                http_only: false,
                secure: false,
                same_site: None,
                expires: None,
                raw: format!("{name}={value}"),
            }),
        }
    }

    pub fn remove_cookie(&mut self, host: &str, name: &str) {
        self.cookies.retain(|c| !(c.host == host && c.name == name));
    }

    /// Stores the `Set-Cookie`s of a response received from `url`.
    pub fn store(&mut self, url: &Url, r: &Response) {
        for sc in set_cookies(r) {
            let path = match sc.attr("path") {
                Some(p) if p.starts_with('/') => p.to_string(),
                _ => {
                    // Default path: the request path up to its last '/'.
                    let p = url.path_only();
                    match p.rfind('/') {
                        Some(0) | None => "/".to_string(),
                        Some(i) => p[..i].to_string(),
                    }
                }
            };
            self.cookies
                .retain(|c| !(c.host == url.host && c.name == sc.name && c.path == path));
            if sc.deletes() {
                continue;
            }
            self.cookies.push(Cookie {
                name: sc.name.clone(),
                value: sc.value.clone(),
                host: url.host.clone(),
                path,
                http_only: sc.has("httponly"),
                secure: sc.has("secure"),
                same_site: sc.attr("samesite").map(str::to_string),
                expires: sc.expires_at(),
                raw: sc.raw.clone(),
            });
        }
    }

    /// One request (no redirect following): the jar's cookies are added (unless a
    /// `Cookie` header is given), the answer's cookies stored. Panics on connection
    /// errors; see [`Agent::try_send`].
    pub fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_send(method, url, headers, body)
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    pub fn try_send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let u = Url::parse(url).ok_or_else(|| format!("not an http URL: {url:?}"))?;
        if !u.is_loopback() {
            return Err(format!("refusing to contact a non-loopback host: {url}"));
        }
        let host = format!("{}:{}", u.host, u.port);
        let cookie = self.cookie_header(&u);
        let mut h: Vec<(&str, &str)> = vec![("Host", host.as_str())];
        let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        if let Some(c) = cookie.as_deref() {
            if !has("cookie") {
                h.push(("Cookie", c));
            }
        }
        if !has("user-agent") {
            h.push(("User-Agent", "portcullis-testbed"));
        }
        h.extend(
            headers
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("host")),
        );
        let r = client::try_request(u.port, method, &u.path, &h, body)?;
        self.store(&u, &r);
        self.history.push(Hop {
            method: method.to_string(),
            url: url.to_string(),
            response: r.clone(),
        });
        Ok(r)
    }

    pub fn get(&mut self, url: &str) -> Response {
        self.send("GET", url, &[], b"")
    }

    /// POSTs `fields` as `application/x-www-form-urlencoded`.
    pub fn post_form(
        &mut self,
        url: &str,
        fields: &[(String, String)],
        headers: &[(&str, &str)],
    ) -> Response {
        let body = form_encode(fields);
        let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
        h.extend_from_slice(headers);
        self.send("POST", url, &h, body.as_bytes())
    }

    /// Follows redirects from `(url, response)` (GET, as browsers do after 301/302/303;
    /// 307/308 keep the method only for GET here) until a non-redirect, a redirect to a
    /// non-loopback host, or `stop(url)` is true for the next URL (not requested).
    /// Returns the hops taken (the given one first) and the next URL when stopped.
    pub fn follow_until(
        &mut self,
        url: &str,
        response: Response,
        stop: &dyn Fn(&Url) -> bool,
    ) -> (Vec<Hop>, Option<String>) {
        let mut hops = vec![Hop {
            method: "GET".into(),
            url: url.to_string(),
            response,
        }];
        for _ in 0..MAX_REDIRECTS {
            let last = hops.last().expect("at least one hop");
            if !matches!(last.response.status, 301 | 302 | 303 | 307 | 308) {
                return (hops, None);
            }
            let Some(loc) = last.response.header("location") else {
                return (hops, None);
            };
            let base = Url::parse(&last.url).expect("hop URLs are http URLs");
            let next = base.join(loc);
            let Some(nu) = Url::parse(&next) else {
                return (hops, Some(next));
            };
            if !nu.is_loopback() || stop(&nu) {
                return (hops, Some(next));
            }
            let r = self.get(&next);
            hops.push(Hop {
                method: "GET".into(),
                url: next,
                response: r,
            });
        }
        panic!(
            "more than {MAX_REDIRECTS} redirects (a loop?): {:?}",
            hops.iter()
                .map(|h| format!("{} {}", h.response.status, h.url))
                .collect::<Vec<_>>()
        );
    }

    /// GET `url` and follow every redirect; the hops (the last one is the answer).
    pub fn get_following(&mut self, url: &str) -> Vec<Hop> {
        let r = self.get(url);
        self.follow_until(url, r, &|_| false).0
    }
}

/// RFC 6265 §5.1.4 path-match.
pub fn path_matches(cookie_path: &str, request_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

/// An HTML form: `action` (as written), `method` (lowercased) and its `<input>`s
/// `(type, name, value)` with entities decoded.
#[derive(Debug, Clone)]
pub struct Form {
    pub action: String,
    pub method: String,
    pub id: Option<String>,
    pub inputs: Vec<(String, String, String)>,
}

impl Form {
    /// The hidden inputs as fields.
    pub fn hidden(&self) -> Vec<(String, String)> {
        self.inputs
            .iter()
            .filter(|(t, _, _)| t == "hidden")
            .map(|(_, n, v)| (n.clone(), v.clone()))
            .collect()
    }

    pub fn has_input(&self, name: &str) -> bool {
        self.inputs.iter().any(|(_, n, _)| n == name)
    }
}

/// Every `<form>` of a page, with the `<input>`s inside each.
pub fn forms(html: &str) -> Vec<Form> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(start) = lower[at..].find("<form").map(|i| i + at) {
        let tag_end = lower[start..]
            .find('>')
            .map(|i| i + start)
            .unwrap_or(lower.len());
        let tag = &html[start..tag_end];
        let end = lower[tag_end..]
            .find("</form")
            .map(|i| i + tag_end)
            .unwrap_or(lower.len());
        let mut inputs = Vec::new();
        let mut i = tag_end;
        while let Some(s) = lower[i..end].find("<input").map(|k| k + i) {
            let e = lower[s..end].find('>').map(|k| k + s).unwrap_or(end);
            let t = &html[s..e];
            inputs.push((
                attr(t, "type")
                    .unwrap_or_else(|| "text".into())
                    .to_ascii_lowercase(),
                attr(t, "name").unwrap_or_default(),
                attr(t, "value").unwrap_or_default(),
            ));
            i = e;
        }
        out.push(Form {
            action: attr(tag, "action").unwrap_or_default(),
            method: attr(tag, "method")
                .unwrap_or_else(|| "get".into())
                .to_ascii_lowercase(),
            id: attr(tag, "id"),
            inputs,
        });
        at = end.max(start + 5);
    }
    out
}

/// An attribute of one HTML tag (quoted with `"` or `'`, or bare), entities decoded.
fn attr(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name).map(|i| i + from) {
        let before_ok = i > 0 && lower.as_bytes()[i - 1].is_ascii_whitespace();
        let rest = &tag[i + name.len()..];
        let trimmed = rest.trim_start();
        if before_ok && trimmed.starts_with('=') {
            let v = trimmed[1..].trim_start();
            let value = if let Some(q @ ('"' | '\'')) = v.chars().next() {
                v[1..].split(q).next().unwrap_or("")
            } else {
                v.split(|c: char| c.is_whitespace() || c == '>' || c == '/')
                    .next()
                    .unwrap_or("")
            };
            return Some(html_unescape(value));
        }
        from = i + name.len();
    }
    None
}

/// Decodes the HTML entities tests meet (`&amp; &lt; &gt; &quot; &#39; &#NN; &#xNN;`).
pub fn html_unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(semi) = after.find(';').filter(|&k| k <= 10) else {
            out.push('&');
            rest = &after[1..];
            continue;
        };
        let ent = &after[1..semi];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                u32::from_str_radix(&ent[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ if ent.starts_with('#') => ent[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_queries() {
        let u = Url::parse("http://127.0.0.1:8080/a/b?x=1&y=a%20b+c").unwrap();
        assert_eq!(u.port, 8080);
        assert_eq!(u.path_only(), "/a/b");
        assert_eq!(u.query_param("y").as_deref(), Some("a b c"));
        assert_eq!(u.join("/c"), "http://127.0.0.1:8080/c");
        assert_eq!(u.join("d"), "http://127.0.0.1:8080/a/d");
        assert_eq!(u.join("//evil.example/x"), "http://evil.example/x");
        assert_eq!(Url::parse("http://127.0.0.1:1").unwrap().path, "/");
        assert!(Url::parse("https://x/").is_none());
    }

    #[test]
    fn cookie_dates_and_paths() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert!(path_matches("/", "/x"));
        assert!(path_matches("/auth/abc", "/auth/abc/def"));
        assert!(!path_matches("/auth/abc", "/auth/abcd"));
    }

    #[test]
    fn jar_stores_deletes_and_sends() {
        let u = Url::parse("http://127.0.0.1:1/app/x").unwrap();
        let mut a = Agent::new();
        let r = Response {
            status: 200,
            headers: vec![
                ("set-cookie".into(), "a=1; Path=/; HttpOnly".into()),
                ("set-cookie".into(), "b=2; Path=/other".into()),
            ],
            raw_values: vec![],
            body: vec![],
        };
        a.store(&u, &r);
        assert_eq!(a.cookie_header(&u).as_deref(), Some("a=1"));
        assert!(a.cookie("127.0.0.1", "a").unwrap().http_only);
        let del = Response {
            status: 200,
            headers: vec![("set-cookie".into(), "a=; Path=/; Max-Age=0".into())],
            raw_values: vec![],
            body: vec![],
        };
        a.store(&u, &del);
        assert_eq!(a.cookie_header(&u), None);
    }

    #[test]
    fn reads_forms() {
        let html = r#"<form autocomplete="off" action="/interaction/u1/login" method="post">
          <input type="hidden" name="prompt" value="login"/>
          <input required type="text" name="login" placeholder="x">
          <input type='hidden' name=xsrf value="a&amp;b"></form>"#;
        let f = &forms(html)[0];
        assert_eq!(f.action, "/interaction/u1/login");
        assert_eq!(f.method, "post");
        assert_eq!(
            f.hidden(),
            vec![
                ("prompt".to_string(), "login".to_string()),
                ("xsrf".to_string(), "a&b".to_string())
            ]
        );
        assert!(f.has_input("login"));
    }
}
