//! A bounded soak: one Envoy with the plugin, `wrk` driving a rotating mix of
//! valid and invalid JWT, API-key and OAuth2 session traffic through it, Envoy's
//! admin `/memory` (and the process's RSS) sampled every few seconds. The run
//! passes when memory stays flat after warm-up, every answer has the status its
//! kind expects, no socket error happened and Envoy logged no error.
//!
//! Every route answers with Envoy's `direct_response` (a distinct status per
//! kind of traffic), so the upstream is not what is measured and each status
//! identifies the kind it answers: JWT valid 200, JWT refused 401, session 202,
//! tampered session 303 (login redirect), API key 204, wrong API key 403.
//! The session cookie is minted with the core's session API (the IdP, a
//! scripted server, only serves discovery and its JWK Set).
//!
//! Used by `scripts/soak` (`testbed soak`, one million requests) and by
//! `tests/soak_short.rs` (fifty thousand).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use portcullis_core::oauth2::{Session, SessionKeys};
use serde_json::{json, Value};

use crate::servers::{Reply, ScriptedServer};
use crate::{client, tokens, Envoy};

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// At least this many requests in all (warm-up included).
    pub requests: u64,
    /// wrk connections (one wrk thread; Envoy runs one worker).
    pub connections: u32,
    /// The warm-up: requests in it are counted, memory samples are not.
    pub warmup: Duration,
    /// Hard bound on the whole load (the run fails if it is reached first).
    pub max_load: Duration,
    /// The load after warm-up lasts at least this long (memory is judged on it),
    /// even when the warm-up alone reached `requests`.
    pub min_load: Duration,
    pub sample_every: Duration,
    /// Memory may move this much (fraction) from the first sample after warm-up.
    pub tolerance: f64,
}

impl SoakOptions {
    pub fn new(requests: u64) -> SoakOptions {
        SoakOptions {
            requests,
            connections: 32,
            warmup: Duration::from_secs(5),
            max_load: Duration::from_secs(330),
            min_load: Duration::from_secs(30),
            sample_every: Duration::from_secs(3),
            tolerance: 0.10,
        }
    }
}

/// One memory sample: seconds since the load started, Envoy's
/// `/memory` `allocated` and `heap_size`, the RSS of the Envoy process (bytes).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: f64,
    pub allocated: u64,
    pub heap: u64,
    pub rss: u64,
}

/// The kinds of traffic: (name, expected status, weight in the rotation).
pub const KINDS: &[(&str, u16, u32)] = &[
    ("jwt-valid", 200, 4),
    ("jwt-invalid", 401, 3),
    ("session", 202, 4),
    ("session-tampered", 303, 1),
    ("apikey", 204, 1),
    ("apikey-wrong", 403, 1),
];

#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    pub requests: u64,
    pub seconds: f64,
    /// Status → count, over every wrk run.
    pub statuses: BTreeMap<u16, u64>,
    pub socket_errors: u64,
    pub samples: Vec<Sample>,
    /// Index of the first sample after warm-up.
    pub first_after_warmup: usize,
    pub error_lines: Vec<String>,
    pub warning_lines: usize,
    /// The first warning line, if any (for the summary).
    pub first_warning: Option<String>,
    pub latency: String,
    pub problems: Vec<String>,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl SoakReport {
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// (baseline, min, max, last) after warm-up of one measure.
    pub fn range(&self, f: impl Fn(&Sample) -> u64) -> Option<(u64, u64, u64, u64)> {
        let after = self.samples.get(self.first_after_warmup..)?;
        let base = f(after.first()?);
        let min = after.iter().map(&f).min()?;
        let max = after.iter().map(&f).max()?;
        let last = f(after.last()?);
        Some((base, min, max, last))
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "soak: {} requests in {:.1}s ({:.0} req/s), {} socket errors",
            self.requests,
            self.seconds,
            self.rps(),
            self.socket_errors
        );
        for (name, status, _) in KINDS {
            let _ = writeln!(
                s,
                "soak:   {name:<17} {status}: {}",
                self.statuses.get(status).copied().unwrap_or(0)
            );
        }
        let unexpected: u64 = self
            .statuses
            .iter()
            .filter(|(st, _)| !KINDS.iter().any(|(_, k, _)| k == *st))
            .map(|(_, n)| n)
            .sum();
        let _ = writeln!(s, "soak:   unexpected statuses: {unexpected}");
        let _ = writeln!(s, "soak: latency {}", self.latency);
        for (label, f) in [
            (
                "allocated",
                (|x: &Sample| x.allocated) as fn(&Sample) -> u64,
            ),
            ("heap_size", |x: &Sample| x.heap),
            ("rss", |x: &Sample| x.rss),
        ] {
            if let Some((base, min, max, last)) = self.range(f) {
                let _ = writeln!(
                    s,
                    "soak: memory {label:<9} after warm-up {:.1} MiB, min {:.1}, max {:.1}, last {:.1} ({:+.1}%)",
                    mb(base),
                    mb(min),
                    mb(max),
                    mb(last),
                    pct(base, last)
                );
            }
        }
        let _ = writeln!(
            s,
            "soak: {} memory samples ({} after warm-up); Envoy log: {} error lines, {} warnings",
            self.samples.len(),
            self.samples.len().saturating_sub(self.first_after_warmup),
            self.error_lines.len(),
            self.warning_lines
        );
        if let Some(w) = &self.first_warning {
            let _ = writeln!(s, "soak: first warning: {w}");
        }
        if self.problems.is_empty() {
            let _ = writeln!(s, "soak: PASS");
        } else {
            for p in &self.problems {
                let _ = writeln!(s, "soak: FAIL: {p}");
            }
        }
        s
    }

    /// The figures as a Markdown block for docs/reliability.md.
    pub fn markdown(&self, date: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Last run ({date}, `scripts/soak`): **{} requests in {:.0} s ({:.0} req/s)**, {} connections, one Envoy worker, {} socket errors, {}.\n",
            self.requests,
            self.seconds,
            self.rps(),
            SoakOptions::new(0).connections,
            self.socket_errors,
            if self.problems.is_empty() { "PASS" } else { "FAIL" }
        );
        let _ = writeln!(s, "| kind | expected status | answers |\n|---|---|---|");
        for (name, status, _) in KINDS {
            let _ = writeln!(
                s,
                "| {name} | {status} | {} |",
                self.statuses.get(status).copied().unwrap_or(0)
            );
        }
        let unexpected: u64 = self
            .statuses
            .iter()
            .filter(|(st, _)| !KINDS.iter().any(|(_, k, _)| k == *st))
            .map(|(_, n)| n)
            .sum();
        let _ = writeln!(s, "| anything else | — | {unexpected} |\n");
        let _ = writeln!(
            s,
            "| memory (after warm-up) | first | min | max | last | change |\n|---|---|---|---|---|---|"
        );
        for (label, f) in [
            (
                "`/memory` allocated",
                (|x: &Sample| x.allocated) as fn(&Sample) -> u64,
            ),
            ("`/memory` heap_size", |x: &Sample| x.heap),
            ("Envoy RSS (Wasm VM included)", |x: &Sample| x.rss),
        ] {
            if let Some((base, min, max, last)) = self.range(f) {
                let _ = writeln!(
                    s,
                    "| {label} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:+.1}% |",
                    mb(base),
                    mb(min),
                    mb(max),
                    mb(last),
                    pct(base, last)
                );
            }
        }
        let _ = writeln!(
            s,
            "\n{} samples every few seconds ({} after warm-up); Envoy log: {} error lines. Latency: {}.",
            self.samples.len(),
            self.samples.len().saturating_sub(self.first_after_warmup),
            self.error_lines.len(),
            self.latency
        );
        s
    }
}

fn pct(base: u64, v: u64) -> f64 {
    if base == 0 {
        0.0
    } else {
        (v as f64 - base as f64) * 100.0 / base as f64
    }
}

const ISSUER_AUD: &str = "api";
const JWT_ISSUER: &str = "https://issuer.example";
const API_KEY: &str = "soak-key-0123456789";
const HOST: &str = "app.test";

fn lua_str(s: &str) -> String {
    // A Lua long-bracket string cannot hold "]==]"; none of our values do.
    format!("[==[{s}]==]")
}

/// The wrk script: requests rotate over the kinds by weight; statuses are
/// counted per thread and summed in `done`.
/// One request of the rotation: path, headers, weight.
type Planned = (String, Vec<(String, String)>, u32);

fn wrk_script(requests: &[Planned]) -> String {
    let mut s = String::from("local reqs = {}\nlocal threads = {}\n");
    s.push_str("function setup(thread) table.insert(threads, thread) end\n");
    s.push_str("function init(args)\n  counts = {}\n  n = 0\n");
    for (path, headers, weight) in requests {
        let mut h = String::from("{");
        for (name, value) in headers {
            let _ = write!(h, "[ {} ] = {}, ", lua_str(name), lua_str(value));
        }
        h.push('}');
        for _ in 0..*weight {
            let _ = writeln!(
                s,
                "  table.insert(reqs, wrk.format(\"GET\", {}, {h}))",
                lua_str(path)
            );
        }
    }
    s.push_str("end\n");
    s.push_str("function request()\n  n = n + 1\n  return reqs[(n % #reqs) + 1]\nend\n");
    s.push_str("function response(status, headers, body)\n  counts[status] = (counts[status] or 0) + 1\nend\n");
    s.push_str(
        "function done(summary, latency, requests)\n  local total = {}\n  for _, t in ipairs(threads) do\n    local c = t:get(\"counts\")\n    for k, v in pairs(c) do total[k] = (total[k] or 0) + v end\n  end\n  for k, v in pairs(total) do io.write(string.format(\"status %d %d\\n\", k, v)) end\n  io.write(string.format(\"latency p50 %.2fms p99 %.2fms max %.2fms\\n\", latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))\nend\n",
    );
    s
}

fn envoy_yaml(plugin: &Value, idp_port: u16) -> String {
    let direct = |prefix: &str, status: u16| {
        format!(
            "              - match: {{ prefix: \"{prefix}\" }}\n                direct_response: {{ status: {status} }}\n"
        )
    };
    let mut routes = String::new();
    routes.push_str(&direct("/jwt/", 200));
    routes.push_str(&direct("/app/", 202));
    routes.push_str(&direct("/key/", 204));
    routes.push_str(&direct("/", 404));
    format!(
        "static_resources:
  listeners:
  - name: main
    address:
      socket_address: {{ address: 127.0.0.1, port_value: 0 }}
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
{routes}          http_filters:
          - name: portcullis
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: portcullis
                root_id: portcullis
                failure_policy: FAIL_RELOAD
                configuration:
                  \"@type\": type.googleapis.com/google.protobuf.StringValue
                  value: {value}
                vm_config:
                  vm_id: portcullis
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: \"{{{{WASM}}}}\" }} }}
          - name: envoy.filters.http.router
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{cluster}",
        value = crate::config::yaml_str(&plugin.to_string()),
        cluster = crate::config::static_cluster("idp", idp_port),
    )
}

/// `/memory`'s `allocated` and `heap_size`, from the admin interface on `admin`.
fn admin_memory(admin: u16) -> Option<(u64, u64)> {
    let r = client::try_request(admin, "GET", "/memory", &[], b"").ok()?;
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    let num = |k: &str| -> Option<u64> {
        match &v[k] {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    };
    Some((num("allocated")?, num("heap_size")?))
}

/// The largest RSS (bytes) among the processes of group `pgid` (Envoy itself,
/// when a wrapper script started it).
fn group_rss(pgid: u32) -> u64 {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut best = 0;
    for entry in dir.flatten() {
        let path = entry.path();
        let Ok(stat) = fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Fields after the ")" of the command: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|p| p.parse::<u32>().ok()) != Some(pgid) {
            continue;
        }
        if let Ok(status) = fs::read_to_string(path.join("status")) {
            for line in status.lines() {
                if let Some(kb) = line.strip_prefix("VmRSS:") {
                    let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    best = best.max(kb * 1024);
                }
            }
        }
    }
    best
}

fn absorb(report: &mut SoakReport, run: WrkRun) {
    report.requests += run.requests;
    report.seconds += run.seconds;
    report.socket_errors += run.socket_errors;
    for (st, n) in run.statuses {
        *report.statuses.entry(st).or_default() += n;
    }
    report.latency = run.latency;
}

struct WrkRun {
    requests: u64,
    seconds: f64,
    statuses: BTreeMap<u16, u64>,
    socket_errors: u64,
    latency: String,
}

fn run_wrk(port: u16, script: &str, connections: u32, seconds: u64) -> Result<WrkRun, String> {
    let began = Instant::now();
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .args(["--timeout", "5s", "-s", script])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .map_err(|e| format!("cannot run wrk (apt-get install wrk): {e}"))?;
    // wrk prints its duration rounded (e.g. "1.33m"): measure it instead.
    let wall = began.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut run = WrkRun {
        requests: 0,
        seconds: 0.0,
        statuses: BTreeMap::new(),
        socket_errors: 0,
        latency: String::new(),
    };
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("status ") {
            let mut it = rest.split_whitespace();
            if let (Some(Ok(st)), Some(Ok(n))) = (
                it.next().map(str::parse::<u16>),
                it.next().map(str::parse::<u64>),
            ) {
                *run.statuses.entry(st).or_default() += n;
            }
        } else if let Some(rest) = line.strip_prefix("latency ") {
            run.latency = rest.to_string();
        } else if line.contains(" requests in ") {
            // "123456 requests in 30.00s, 12.34MB read"
            run.requests = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            run.seconds = wall;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            run.socket_errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    if run.requests == 0 {
        return Err(format!("wrk output not understood:\n{text}"));
    }
    Ok(run)
}

/// A scripted IdP serving only discovery and its JWK Set (the test keys):
/// enough for an OAuth2 filter to open sessions minted by [`sealed_session`].
/// The server and its issuer URL.
pub fn scripted_idp() -> (ScriptedServer, String) {
    let idp = ScriptedServer::start();
    let issuer = format!("http://127.0.0.1:{}", idp.port());
    idp.set(
        "/.well-known/openid-configuration",
        Reply::json(
            200,
            &json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/auth"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"]
            }),
        ),
    );
    idp.set("/jwks", Reply::json(200, &tokens::jwks()));
    (idp, issuer)
}

/// A session cookie value for OAuth2 filter `filter` (cookie
/// `portcullis_session.<filter>`), sealed with `key` through the core's session
/// API: access and ID tokens signed by the test RSA key for `issuer` and
/// `client_id`, valid for two hours from `now`.
pub fn sealed_session(
    key: &[u8; 32],
    filter: &str,
    issuer: &str,
    client_id: &str,
    now: u64,
) -> Result<String, String> {
    let claims = json!({ "sub": "soak-user", "iss": issuer, "aud": client_id, "iat": now, "exp": now + 7200 });
    let access = tokens::mint(
        "RS256",
        Some(tokens::default_key_for("RS256")),
        Value::Null,
        claims.clone(),
    );
    let id_token = tokens::mint(
        "RS256",
        Some(tokens::default_key_for("RS256")),
        Value::Null,
        claims,
    );
    let session = Session {
        access_token: access,
        refresh_token: None,
        id_token: Some(id_token),
        access_expires_at: Some(now + 7200),
        access_obtained: now,
        created: now,
        last_seen: now,
        deadline: now + 7200,
        xsrf: "soak-xsrf".to_string(),
        scope: "openid".to_string(),
        userinfo: None,
        userinfo_refused: false,
    };
    let plain = serde_json::to_vec(&session).map_err(|e| e.to_string())?;
    let mut counter = (now % 251) as u8;
    SessionKeys::new(&[*key])
        .seal(
            &format!("portcullis_session.{filter}"),
            now + 7200,
            &plain,
            &mut |b| {
                for x in b.iter_mut() {
                    counter = counter.wrapping_add(41);
                    *x = counter;
                }
            },
        )
        .ok_or_else(|| "sealing the session failed".to_string())
}

/// Runs the soak; Err when it could not run at all. A run that ran but failed
/// its checks is `Ok` with `problems`.
pub fn run(opts: &SoakOptions) -> Result<SoakReport, String> {
    let now = tokens::now();
    // The IdP: discovery and its JWK Set (the test keys).
    let (idp, issuer) = scripted_idp();
    let key = [7u8; 32];
    let key_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key);
    let plugin = json!({
        "clusters": { format!("127.0.0.1:{}", idp.port()): "idp" },
        "filters": [
            { "name": "jwt", "JWT": {
                "jwks": tokens::jwks(), "issuer": JWT_ISSUER, "audience": ISSUER_AUD,
                "injectRequestHeaders": [ { "name": "X-Sub", "value": "{{ .token.Claims.sub }}" } ] } },
            { "name": "login", "OAuth2": {
                "authorizationURL": issuer, "clientID": "soak", "secret": "soak-secret",
                "protectedOrigins": [ { "origin": format!("http://{HOST}") } ],
                "accessTokenValidation": "jwt",
                "sessionKeys": [ key_b64 ],
                "injectRequestHeaders": [ { "name": "X-User", "value": "{{ .idToken.Claims.sub }}" } ] } },
            { "name": "keys", "APIKey": { "keys": [ { "value": API_KEY } ] } }
        ],
        "rules": [
            { "host": "*", "path": "/jwt/*", "filters": [ { "name": "jwt" } ] },
            { "host": "*", "path": "/app/*", "filters": [ { "name": "login" } ] },
            { "host": "*", "path": "/key/*", "filters": [ { "name": "keys" } ] }
        ]
    });

    // Credentials. Tokens live past the longest run.
    let claims = |extra: Value| {
        tokens::merge(
            json!({ "sub": "soak-user", "iss": JWT_ISSUER, "aud": ISSUER_AUD, "iat": now, "exp": now + 7200 }),
            extra,
        )
    };
    let mint =
        |alg: &str, c: Value| tokens::mint(alg, Some(tokens::default_key_for(alg)), Value::Null, c);
    let rs = mint("RS256", claims(Value::Null));
    let es = mint("ES256", claims(Value::Null));
    let forged = tokens::tamper_payload(&rs, claims(json!({ "sub": "mallory" })));
    let expired = mint("RS256", claims(json!({ "exp": now - 600 })));
    let sealed = sealed_session(&key, "login", &issuer, "soak", now)?;
    let mut tampered = sealed.clone().into_bytes();
    if let Some(b) = tampered.get_mut(sealed.len() / 2) {
        *b = if *b == b'A' { b'B' } else { b'A' };
    }
    let tampered = String::from_utf8_lossy(&tampered).into_owned();

    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v = vec![("Host".to_string(), HOST.to_string())];
        v.extend(pairs.iter().map(|(n, x)| (n.to_string(), x.to_string())));
        v
    };
    let bearer = |t: &str| format!("Bearer {t}");
    let session_cookie = format!("portcullis_session.login={sealed}; other=1");
    let tampered_cookie = format!("portcullis_session.login={tampered}");
    // (path, headers, weight); the weights per kind follow KINDS.
    let requests: Vec<Planned> = vec![
        ("/jwt/a".into(), h(&[("Authorization", &bearer(&rs))]), 2),
        ("/jwt/b".into(), h(&[("Authorization", &bearer(&es))]), 2),
        (
            "/jwt/c".into(),
            h(&[("Authorization", &bearer(&forged))]),
            1,
        ),
        (
            "/jwt/d".into(),
            h(&[("Authorization", &bearer(&expired))]),
            1,
        ),
        ("/jwt/e".into(), h(&[("X-Sub", "spoofed")]), 1),
        ("/app/x".into(), h(&[("Cookie", &session_cookie)]), 4),
        ("/app/y".into(), h(&[("Cookie", &tampered_cookie)]), 1),
        ("/key/x".into(), h(&[("X-API-Key", API_KEY)]), 1),
        ("/key/y".into(), h(&[("X-API-Key", "wrong")]), 1),
    ];

    let envoy = Envoy::try_start(&envoy_yaml(&plugin, idp.port()))?;
    let port = envoy.port("main");
    let script_path = envoy.dir().join("soak.lua");
    fs::write(&script_path, wrk_script(&requests)).map_err(|e| e.to_string())?;
    let script = script_path.to_string_lossy().into_owned();

    // Ready: a session request is served once discovery and the IdP's keys loaded.
    let ready_by = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client::try_request(
            port,
            "GET",
            "/app/ready",
            &[("Host", HOST), ("Cookie", session_cookie.as_str())],
            b"",
        );
        if matches!(&r, Ok(r) if r.status == 202) {
            break;
        }
        if Instant::now() > ready_by {
            return Err(format!(
                "the plugin never served a session request: {:?}\n{}",
                r.map(|r| (r.status, r.body_str())),
                envoy.log_tail(30)
            ));
        }
        thread::sleep(Duration::from_millis(200));
    }

    // The sampler.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let sampler = {
        let samples = Arc::clone(&samples);
        let stop = Arc::clone(&stop);
        let admin = envoy.admin_port();
        let pid = envoy.pid();
        let every = opts.sample_every;
        let bound = opts.max_load + opts.warmup + Duration::from_secs(60);
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) && started.elapsed() < bound {
                let mem = admin_memory(admin);
                if let Some((allocated, heap)) = mem {
                    let s = Sample {
                        at: started.elapsed().as_secs_f64(),
                        allocated,
                        heap,
                        rss: group_rss(pid),
                    };
                    if let Ok(mut v) = samples.lock() {
                        v.push(s);
                    }
                }
                // Sleep in small steps so a stop is seen quickly.
                let until = Instant::now() + every;
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };

    let mut report = SoakReport::default();
    // Warm-up.
    let warm = run_wrk(
        port,
        &script,
        opts.connections,
        opts.warmup.as_secs().max(1),
    )?;
    let warm_rps = (warm.requests as f64 / warm.seconds.max(0.1)).max(1.0);
    absorb(&mut report, warm);
    let warm_end = started.elapsed().as_secs_f64();
    // The load, in at most three runs, bounded by max_load.
    let load_started = Instant::now();
    for _ in 0..3 {
        let loaded = load_started.elapsed();
        if report.requests >= opts.requests && loaded >= opts.min_load {
            break;
        }
        let left = opts.max_load.saturating_sub(loaded);
        if left < Duration::from_secs(1) {
            break;
        }
        let needed = opts.requests.saturating_sub(report.requests) as f64 / warm_rps * 1.05 + 1.0;
        let needed = needed.max(opts.min_load.saturating_sub(loaded).as_secs_f64());
        let secs = (needed.ceil() as u64).clamp(1, left.as_secs().max(1));
        let run = run_wrk(port, &script, opts.connections, secs)?;
        absorb(&mut report, run);
    }
    // One more sample after the load, then stop the sampler.
    thread::sleep(opts.sample_every.min(Duration::from_secs(2)));
    stop.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    report.samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    // Samples taken within two seconds of the warm-up's end still count as warm-up.
    report.first_after_warmup = report
        .samples
        .iter()
        .position(|s| s.at >= warm_end + 2.0)
        .unwrap_or(report.samples.len());

    // The log.
    let log = envoy.log();
    report.error_lines = log
        .lines()
        .filter(|l| l.contains("][error][") || l.contains("][critical]["))
        .map(str::to_string)
        .collect();
    report.warning_lines = log.lines().filter(|l| l.contains("][warning][")).count();
    report.first_warning = log
        .lines()
        .find(|l| l.contains("][warning]["))
        .map(|l| l.split("] ").last().unwrap_or(l).to_string());

    // The checks.
    let mut problems = Vec::new();
    if report.requests < opts.requests {
        problems.push(format!(
            "only {} of {} requests within {:?}",
            report.requests, opts.requests, opts.max_load
        ));
    }
    if report.socket_errors > 0 {
        problems.push(format!("{} socket errors", report.socket_errors));
    }
    let answered: u64 = report.statuses.values().sum();
    if answered + u64::from(opts.connections) * 4 < report.requests {
        problems.push(format!(
            "statuses counted for {answered} of {} requests (wrk script failed?)",
            report.requests
        ));
    }
    let total_weight: u32 = KINDS.iter().map(|(_, _, w)| w).sum();
    for (st, n) in &report.statuses {
        if !KINDS.iter().any(|(_, k, _)| k == st) {
            problems.push(format!("{n} answers with unexpected status {st}"));
        }
    }
    for (name, st, w) in KINDS {
        let got = report.statuses.get(st).copied().unwrap_or(0) as f64;
        let want = answered as f64 * f64::from(*w) / f64::from(total_weight);
        // The rotation is exact per connection; a run cut short leaves at most a
        // request per connection in flight.
        if (got - want).abs() > want * 0.01 + f64::from(opts.connections) * 4.0 {
            problems.push(format!(
                "{name}: {got} answers with {st}, expected about {want:.0}"
            ));
        }
    }
    for (label, f) in [
        (
            "allocated",
            (|x: &Sample| x.allocated) as fn(&Sample) -> u64,
        ),
        ("rss", |x: &Sample| x.rss),
    ] {
        match report.range(f) {
            Some((base, min, max, last)) if base > 0 => {
                let lo = base as f64 * (1.0 - opts.tolerance);
                let hi = base as f64 * (1.0 + opts.tolerance);
                if (min as f64) < lo || (max as f64) > hi || (last as f64) > hi {
                    problems.push(format!(
                        "memory {label} not flat within {:.0}% after warm-up: first {base}, min {min}, max {max}, last {last}",
                        opts.tolerance * 100.0
                    ));
                }
            }
            _ => problems.push(format!("too few memory samples after warm-up ({label})")),
        }
    }
    if !report.error_lines.is_empty() {
        problems.push(format!(
            "{} error lines in Envoy's log, first: {}",
            report.error_lines.len(),
            report.error_lines.first().cloned().unwrap_or_default()
        ));
    }
    report.problems = problems;
    drop(idp);
    Ok(report)
}
