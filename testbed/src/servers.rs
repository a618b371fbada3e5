//! Loopback HTTP/1.1 servers on std threads: the echo upstream and a scripted server
//! (JWKS endpoint, external auth service, IdP). Each binds `127.0.0.1:0`, serves
//! keep-alive connections (Envoy reuses upstream connections), and stops on Drop.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::{read_body, read_head, reason};

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path with query, as on the request line.
    pub path: String,
    /// Names lowercased; order and duplicates kept.
    pub headers: Vec<(String, String)>,
    /// The bytes of each value in `headers` (same order), exactly as received
    /// (`headers` has them converted lossily when they are not UTF-8).
    pub raw_values: Vec<Vec<u8>>,
    pub body: Vec<u8>,
}

impl Request {
    /// The exact bytes of the first value of `name`.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        crate::http::first_header_bytes(&self.headers, &self.raw_values, name)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::first_header(&self.headers, name)
    }

    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        crate::http::all_headers(&self.headers, name)
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Headers written after `headers` with their values as these bytes
    /// (obs-text an auth service sends).
    pub byte_headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (timeouts).
    pub delay: Duration,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            byte_headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn json(status: u16, body: &Value) -> Reply {
        Reply::new(status)
            .header("content-type", "application/json")
            .body(body.to_string())
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply::new(status)
            .header("content-type", "text/plain")
            .body(body)
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A header whose value is written as these bytes.
    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Reply {
        self.byte_headers.push((name.to_string(), value.to_vec()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// An answer a server gives as soon as it has a request's head, before its body.
#[derive(Debug, Clone)]
pub enum Early {
    /// This reply, whole; the body is then read and dropped (an early 404, a
    /// redirect, a fast service).
    Whole(Reply),
    /// The status line and headers (`x-upstream: streaming`, chunked) at once;
    /// then the body is read and sent back as the answer's body (a service
    /// that starts its answer before it has read the request).
    HeadThenEcho(u16),
}

/// Called with each request head (empty body) as soon as it is read, before the
/// body: sees requests whose body never arrives (a stream reset mid-request).
/// What it returns is answered before the body is read ([`Early`]).
type HeadFn = dyn Fn(&Request) -> Option<Early> + Send + Sync;
type HeadHook = Arc<HeadFn>;

/// Longest a keep-alive connection may sit idle before the server closes it. Longer
/// than any test, so Envoy never races a close on a pooled connection.
const IDLE: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(100);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    fn start(handler: Handler, down: Arc<AtomicBool>) -> Server {
        Self::start_on(0, handler, down).unwrap_or_else(|e| panic!("testbed server: bind: {e}"))
    }

    fn start_on(port: u16, handler: Handler, down: Arc<AtomicBool>) -> std::io::Result<Server> {
        Self::start_hooked(port, handler, None, down)
    }

    fn start_hooked(
        port: u16,
        handler: Handler,
        head_hook: Option<HeadHook>,
        down: Arc<AtomicBool>,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let accept = thread::Builder::new()
            .name(format!("testbed-accept-{port}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    if down.load(Ordering::SeqCst) {
                        drop(conn); // "down": accept and close at once
                        continue;
                    }
                    let (h, s, d) = (handler.clone(), stop2.clone(), down.clone());
                    let hook = head_hook.clone();
                    let _ = thread::Builder::new()
                        .name(format!("testbed-conn-{port}"))
                        .spawn(move || serve_connection(conn, &*h, hook.as_deref(), &s, &d));
                }
            })?;
        Ok(Server {
            port,
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        );
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Waits until the client sends something; false on stop, idle timeout or EOF.
fn wait_readable(conn: &TcpStream, stop: &AtomicBool, down: &AtomicBool) -> bool {
    let deadline = Instant::now() + IDLE;
    let _ = conn.set_read_timeout(Some(POLL));
    let mut b = [0u8; 1];
    loop {
        if stop.load(Ordering::SeqCst) || down.load(Ordering::SeqCst) || Instant::now() > deadline {
            return false;
        }
        match conn.peek(&mut b) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return false,
        }
    }
}

fn serve_connection(
    conn: TcpStream,
    handler: &dyn Fn(&Request) -> Reply,
    head_hook: Option<&HeadFn>,
    stop: &AtomicBool,
    down: &AtomicBool,
) {
    let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = conn;
    loop {
        if reader.buffer().is_empty() && !wait_readable(&writer, stop, down) {
            return;
        }
        let _ = reader.get_ref().set_read_timeout(Some(IO_TIMEOUT));
        let head = match read_head(&mut reader) {
            Ok(Some(h)) => h,
            _ => return,
        };
        if head
            .get("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            let _ = writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let mut parts = head.start.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let early = head_hook.and_then(|hook| {
            hook(&Request {
                method: method.clone(),
                path: path.clone(),
                headers: head.headers.clone(),
                raw_values: head.raw_values.clone(),
                body: Vec::new(),
            })
        });
        let close = head
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match early {
            Some(Early::Whole(reply)) => {
                // Answer before reading the body, then read and drop the body,
                // as servers that answer early do.
                if !write_reply(&mut writer, &reply, &method, close) || close {
                    return;
                }
                if read_body(&mut reader, &head, false).is_err() {
                    return;
                }
                continue;
            }
            Some(Early::HeadThenEcho(status)) => {
                let head_out = format!(
                    "HTTP/1.1 {status} {}\r\nx-upstream: streaming\r\ntransfer-encoding: chunked\r\n\r\n",
                    reason(status)
                );
                if writer.write_all(head_out.as_bytes()).is_err() || writer.flush().is_err() {
                    return;
                }
                let Ok(body) = read_body(&mut reader, &head, false) else {
                    return;
                };
                let mut out = Vec::new();
                if !body.is_empty() {
                    out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                    out.extend_from_slice(&body);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                if writer.write_all(&out).is_err() || writer.flush().is_err() || close {
                    return;
                }
                continue;
            }
            None => {}
        }
        let Ok(body) = read_body(&mut reader, &head, false) else {
            return;
        };
        let req = Request {
            method,
            path,
            headers: head.headers,
            raw_values: head.raw_values,
            body,
        };
        let reply = handler(&req);
        if !reply.delay.is_zero() {
            let until = Instant::now() + reply.delay;
            while Instant::now() < until {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
            }
        }
        if down.load(Ordering::SeqCst) {
            return;
        }
        if !write_reply(&mut writer, &reply, &req.method, close) || close {
            return;
        }
    }
}

/// Writes `reply` (no body for a HEAD request); false when the connection failed.
fn write_reply(writer: &mut TcpStream, reply: &Reply, method: &str, close: bool) -> bool {
    let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    let has_len = reply
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !has_len {
        out.push_str(&format!("content-length: {}\r\n", reply.body.len()));
    }
    if close {
        out.push_str("connection: close\r\n");
    }
    let mut bytes = out.into_bytes();
    for (n, v) in &reply.byte_headers {
        bytes.extend_from_slice(n.as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(v);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    if method != "HEAD" {
        bytes.extend_from_slice(&reply.body);
    }
    writer.write_all(&bytes).is_ok() && writer.flush().is_ok()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The JSON the echo upstream answers for a request (`raw_values`: the hex of
/// each header value's bytes, as `headers` orders them).
pub fn echo_json(req: &Request) -> Value {
    json!({
        "method": req.method,
        "path": req.path,
        "headers": req.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
        "raw_values": req.raw_values.iter().map(|v| hex(v)).collect::<Vec<_>>(),
        "body": req.body_str(),
    })
}

/// An upstream answering every request with 200 and JSON
/// `{"method", "path", "headers": [[name, value], ...], "body"}` (names lowercased,
/// order and duplicates kept), so tests see exactly what reached the upstream.
pub struct EchoUpstream {
    server: Server,
}

impl EchoUpstream {
    pub fn start() -> EchoUpstream {
        let handler: Handler = Arc::new(|req| Reply::json(200, &echo_json(req)));
        EchoUpstream {
            server: Server::start(handler, Arc::new(AtomicBool::new(false))),
        }
    }

    /// Binds a fixed port (the `testbed echo` command).
    pub fn start_on(port: u16) -> std::io::Result<EchoUpstream> {
        Ok(EchoUpstream {
            server: FnServer::start_on(port, |req| Reply::json(200, &echo_json(req)))?.server,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }
}

/// A server on a fixed port answering every request with one function (the
/// `testbed echo` and `testbed authz` commands).
pub struct FnServer {
    server: Server,
}

impl FnServer {
    pub fn start_on(
        port: u16,
        answer: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<FnServer> {
        let handler: Handler = Arc::new(answer);
        Ok(FnServer {
            server: Server::start_on(port, handler, Arc::new(AtomicBool::new(false)))?,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }
}

/// What an echo response says reached the upstream.
#[derive(Debug, Clone)]
pub struct Echoed {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The bytes of each value in `headers`, exactly as the upstream got them.
    pub raw_values: Vec<Vec<u8>>,
    pub body: String,
}

impl Echoed {
    /// Parses an echo upstream's response body (panics when it is not one).
    pub fn parse(body: &[u8]) -> Echoed {
        let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "not an echo response ({e}): {:?}",
                String::from_utf8_lossy(body)
            )
        });
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let headers = v["headers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap_or_default().to_string(),
                            p[1].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let raw_values = v["raw_values"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|h| {
                        let h = h.as_str().unwrap_or_default();
                        (0..h.len() / 2)
                            .filter_map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Echoed {
            method: s("method"),
            path: s("path"),
            headers,
            raw_values,
            body: s("body"),
        }
    }

    /// The exact bytes of the first value of `name` the upstream got.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        crate::http::first_header_bytes(&self.headers, &self.raw_values, name)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::first_header(&self.headers, name)
    }

    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        crate::http::all_headers(&self.headers, name)
    }
}

#[derive(Default)]
struct Script {
    fixed: HashMap<String, Reply>,
    dynamic: HashMap<String, Handler>,
    /// Paths answered as soon as the head is read, before the body.
    early: HashMap<String, Early>,
    default: Option<Reply>,
    default_fn: Option<Handler>,
    log: Vec<Request>,
    heads: Vec<Request>,
}

/// A server answering what the test scripts, per path, and recording every request.
///
/// A path key matches the request path with its query first, then without it; an
/// unscripted path gets the default reply (404 JSON unless [`set_default`]).
///
/// [`set_default`]: ScriptedServer::set_default
pub struct ScriptedServer {
    server: Server,
    script: Arc<Mutex<Script>>,
    down: Arc<AtomicBool>,
}

impl ScriptedServer {
    pub fn start() -> ScriptedServer {
        let script = Arc::new(Mutex::new(Script::default()));
        let down = Arc::new(AtomicBool::new(false));
        let s2 = script.clone();
        let handler: Handler = Arc::new(move |req: &Request| {
            let dynamic = {
                let mut s = s2.lock().unwrap_or_else(|e| e.into_inner());
                s.log.push(req.clone());
                let keys = [req.path.as_str(), req.path_only()];
                if let Some(r) = keys.iter().find_map(|k| s.fixed.get(*k)) {
                    return r.clone();
                }
                match keys
                    .iter()
                    .find_map(|k| s.dynamic.get(*k))
                    .or(s.default_fn.as_ref())
                {
                    Some(h) => h.clone(),
                    None => {
                        return s.default.clone().unwrap_or_else(|| {
                            Reply::json(404, &json!({"message": "not scripted", "path": req.path}))
                        })
                    }
                }
            };
            dynamic(req)
        });
        let s3 = script.clone();
        let hook: HeadHook = Arc::new(move |req: &Request| {
            let mut s = s3.lock().unwrap_or_else(|e| e.into_inner());
            s.heads.push(req.clone());
            [req.path.as_str(), req.path_only()]
                .iter()
                .find_map(|k| s.early.get(*k))
                .cloned()
        });
        let server = Server::start_hooked(0, handler, Some(hook), down.clone())
            .unwrap_or_else(|e| panic!("testbed server: bind: {e}"));
        ScriptedServer {
            server,
            script,
            down,
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    fn with<R>(&self, f: impl FnOnce(&mut Script) -> R) -> R {
        f(&mut self.script.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Answers `path` with `reply` from now on.
    pub fn set(&self, path: &str, reply: Reply) {
        self.with(|s| {
            s.dynamic.remove(path);
            s.fixed.insert(path.to_string(), reply);
        });
    }

    /// Answers `path` with `reply` as soon as the request head is read, before
    /// its body (an early 404 or redirect, a fast service), then reads and drops
    /// the body. Such a request is in [`heads`](ScriptedServer::heads) only.
    pub fn set_early(&self, path: &str, reply: Reply) {
        self.with(|s| {
            s.early.insert(path.to_string(), Early::Whole(reply));
        });
    }

    /// Answers `path` with `status` and its headers as soon as the request head
    /// is read, then reads the body and sends it back as the answer's body
    /// ([`Early::HeadThenEcho`]).
    pub fn set_head_then_echo(&self, path: &str, status: u16) {
        self.with(|s| {
            s.early
                .insert(path.to_string(), Early::HeadThenEcho(status));
        });
    }

    /// Answers `path` by calling `f` (for replies that depend on the request).
    pub fn set_fn(&self, path: &str, f: impl Fn(&Request) -> Reply + Send + Sync + 'static) {
        self.with(|s| {
            s.fixed.remove(path);
            s.dynamic.insert(path.to_string(), Arc::new(f));
        });
    }

    /// The reply for unscripted paths.
    pub fn set_default(&self, reply: Reply) {
        self.with(|s| {
            s.default_fn = None;
            s.default = Some(reply)
        });
    }

    /// Answers unscripted paths by calling `f` (e.g. [`echo_json`] for an
    /// upstream that records what reached it).
    pub fn set_default_fn(&self, f: impl Fn(&Request) -> Reply + Send + Sync + 'static) {
        self.with(|s| {
            s.default = None;
            s.default_fn = Some(Arc::new(f));
        });
    }

    /// The head (body left empty) of every request received so far, in order,
    /// recorded before its body is read: includes requests whose body never
    /// arrived because the client (Envoy) reset the stream.
    pub fn heads(&self) -> Vec<Request> {
        self.with(|s| s.heads.clone())
    }

    /// Heads of requests whose path (without query) is `path`.
    pub fn heads_to(&self, path: &str) -> Vec<Request> {
        self.with(|s| {
            s.heads
                .iter()
                .filter(|r| r.path_only() == path || r.path == path)
                .cloned()
                .collect()
        })
    }

    /// `true`: accept connections and close them at once (also closes open
    /// keep-alive connections at their next request). `false`: serve again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.with(|s| s.log.clone())
    }

    /// Requests whose path (without query) is `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        self.with(|s| {
            s.log
                .iter()
                .filter(|r| r.path_only() == path || r.path == path)
                .cloned()
                .collect()
        })
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests_to(path).len()
    }

    pub fn clear_requests(&self) {
        self.with(|s| {
            s.log.clear();
            s.heads.clear();
        });
    }

    /// Waits until at least `n` requests to `path` were received; false on timeout.
    pub fn wait_for_requests(&self, path: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count(path) >= n {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Serves one fixed body at `path` on `port` until the process ends (`testbed serve`).
pub fn serve_file_forever(port: u16, path: &str, body: Vec<u8>, content_type: &str) -> ! {
    let (path, ct) = (path.to_string(), content_type.to_string());
    let handler: Handler = Arc::new(move |req: &Request| {
        if req.path_only() == path {
            Reply::new(200)
                .header("content-type", &ct)
                .body(body.clone())
        } else {
            Reply::json(404, &json!({"message": "not found"}))
        }
    });
    let server = Server::start_on(port, handler, Arc::new(AtomicBool::new(false)))
        .unwrap_or_else(|e| panic!("testbed serve: cannot bind 127.0.0.1:{port}: {e}"));
    eprintln!(
        "testbed: serving {} on 127.0.0.1:{}",
        content_type, server.port
    );
    loop {
        thread::park();
    }
}
