//! A small blocking HTTP/1.1 client over `TcpStream` (one request per connection).
//!
//! It sends exactly the headers given, adding only `Host: localhost` when no `host`
//! header is given and `Content-Length` when there is a body (and none given).

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::http::{read_body, read_head};

pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names lowercased; order and duplicates kept.
    pub headers: Vec<(String, String)>,
    /// The bytes of each value in `headers` (same order), exactly as received
    /// (`headers` has them converted lossily when they are not UTF-8); may be
    /// empty for a response built by hand.
    pub raw_values: Vec<Vec<u8>>,
    pub body: Vec<u8>,
}

impl Response {
    /// The exact bytes of the first value of `name` (any case).
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        crate::http::first_header_bytes(&self.headers, &self.raw_values, name)
    }

    /// The exact bytes of every value of `name` (any case), in order.
    pub fn headers_all_bytes(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .zip(&self.raw_values)
            .filter(|((n, _), _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::first_header(&self.headers, name)
    }

    /// All values of a header, in order.
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        crate::http::all_headers(&self.headers, name)
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.body_str()
            )
        })
    }
}

/// Sends one request to `127.0.0.1:port` and reads the response. Panics on a
/// connection or protocol error (use [`try_request`] to observe those).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("HTTP {method} 127.0.0.1:{port}{path} failed: {e}"))
}

pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    request(port, "GET", path, headers, b"")
}

pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    try_request_timeout(port, method, path, headers, body, TIMEOUT)
}

/// [`try_request`] with its own connect/read/write timeout (e.g. a WebDriver command
/// that loads a page).
pub fn try_request_timeout(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, String> {
    let mut msg = format!("{method} {path} HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        msg.push_str("Host: localhost\r\n");
    }
    for (n, v) in headers {
        msg.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        msg.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    msg.push_str("\r\n");
    let mut bytes = msg.into_bytes();
    bytes.extend_from_slice(body);
    try_raw(port, &bytes, method.eq_ignore_ascii_case("HEAD"), timeout)
}

/// Writes `bytes` verbatim (for malformed-request tests) and reads one response.
pub fn raw(port: u16, bytes: &[u8]) -> Response {
    try_raw(port, bytes, false, TIMEOUT)
        .unwrap_or_else(|e| panic!("raw HTTP to 127.0.0.1:{port} failed: {e}"))
}

fn try_raw(
    port: u16,
    bytes: &[u8],
    head_request: bool,
    timeout: Duration,
) -> Result<Response, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream.write_all(bytes).map_err(|e| e.to_string())?;
    read_response(stream, head_request)
}

/// Sends a request's head, calls `between`, then sends its body, and reads the
/// response: for a body that must arrive after something happened (an
/// upstream's early answer). `Content-Length` is added, and `Host: localhost`
/// unless `headers` has a Host. The body is written
/// even when a response already came (the write may then fail: ignored).
pub fn request_split(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    between: impl FnOnce(),
) -> Response {
    let mut msg = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        msg.push_str("Host: localhost\r\n");
    }
    for (n, v) in headers {
        msg.push_str(&format!("{n}: {v}\r\n"));
    }
    msg.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    stream
        .write_all(msg.as_bytes())
        .unwrap_or_else(|e| panic!("writing the head: {e}"));
    between();
    let _ = stream.write_all(body);
    read_response(stream, false)
        .unwrap_or_else(|e| panic!("HTTP {method} 127.0.0.1:{port}{path} failed: {e}"))
}

fn read_response(stream: TcpStream, head_request: bool) -> Result<Response, String> {
    let mut reader = BufReader::new(stream);
    loop {
        let head = read_head(&mut reader)
            .map_err(|e| format!("reading response head: {e}"))?
            .ok_or("connection closed before a response")?;
        let mut parts = head.start.splitn(3, ' ');
        let _version = parts.next();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {:?}", head.start))?;
        if (100..200).contains(&status) && status != 101 {
            continue; // 100 Continue and friends
        }
        let body = if head_request || status == 204 || status == 304 {
            Vec::new()
        } else {
            read_body(&mut reader, &head, true).map_err(|e| format!("reading body: {e}"))?
        };
        return Ok(Response {
            status,
            headers: head.headers,
            raw_values: head.raw_values,
            body,
        });
    }
}
