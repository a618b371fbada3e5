//! A real headless Chromium for the OAuth2 login tests, driven over WebDriver: a
//! `chromedriver` per [`Browser`] on a loopback port, spoken to with plain JSON over
//! [`crate::client`] (no async runtime). Every wait is bounded; Drop ends the
//! session, chromedriver and the browser, and removes the fresh profile.
//!
//! Binaries: `PORTCULLIS_CHROMEDRIVER` (else `chromedriver` on `PATH`) and
//! `PORTCULLIS_CHROMIUM` (else `/usr/bin/chromium`): Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/setup` when it runs as root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::client;
use crate::envoy::repo_root;

/// Page loads, script runs and waits are bounded by this unless told otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(20);
/// How long chromedriver and the browser may take to start (2 busy cores).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Chromium flags for a headless run as root in a container, with no network
/// beyond loopback.
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--password-store=basic",
    "--window-size=1024,768",
];

pub fn chromium_bin() -> String {
    std::env::var("PORTCULLIS_CHROMIUM")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "/usr/bin/chromium".into())
}

pub fn chromedriver_bin() -> String {
    std::env::var("PORTCULLIS_CHROMEDRIVER")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "chromedriver".into())
}

/// Where screenshots go: `<repo>/target/portcullis-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    repo_root().join("target/portcullis-screenshots")
}

/// A cookie as the browser holds it (WebDriver's view: HttpOnly cookies included).
#[derive(Debug, Clone)]
pub struct BrowserCookie {
    pub name: String,
    pub value: String,
    pub path: String,
    pub http_only: bool,
    pub secure: bool,
    pub same_site: Option<String>,
}

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: PathBuf,
    log: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a Chromium session; panics with the driver's log when
    /// either does not come up.
    pub fn start() -> Browser {
        let mut last_err = String::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(b) => return b,
                Err(e) => last_err = e,
            }
        }
        panic!("cannot start a headless Chromium: {last_err}");
    }

    fn try_start() -> Result<Browser, String> {
        let port = crate::idp::free_port();
        let n = crate::idp::b64url(&crate::idp::random_bytes(6));
        let base =
            std::env::temp_dir().join(format!("portcullis-browser-{}-{n}", std::process::id()));
        let profile = base.join("profile");
        fs::create_dir_all(&profile).map_err(|e| format!("{}: {e}", profile.display()))?;
        let log = base.join("chromedriver.log");
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(chromedriver_bin())
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .map_err(|e| {
                    format!(
                        "cannot run {}: {e} (install Debian's chromium-driver: scripts/setup as root)",
                        chromedriver_bin()
                    )
                })?
        };
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
            profile: base,
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(st)) = b.driver.try_wait() {
                return Err(format!("chromedriver exited ({st}): {}", b.driver_log()));
            }
            let ready = client::try_request(port, "GET", "/status", &[], b"")
                .ok()
                .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("chromedriver not ready: {}", b.driver_log()));
            }
            thread::sleep(Duration::from_millis(100));
        }
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "pageLoadStrategy": "normal",
            "timeouts": { "pageLoad": TIMEOUT.as_millis() as u64, "script": TIMEOUT.as_millis() as u64, "implicit": 0 },
            "goog:chromeOptions": { "binary": chromium_bin(), "args": args }
        } } });
        let v = b
            .call("POST", "/session", Some(caps), START_TIMEOUT)
            .map_err(|e| format!("new session: {e}; {}", b.driver_log()))?;
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {v}"))?
            .to_string();
        Ok(b)
    }

    fn driver_log(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// One WebDriver command; the `value` of the answer, or the WebDriver error.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers: &[(&str, &str)] = if method == "POST" {
            &[("Content-Type", "application/json; charset=utf-8")]
        } else {
            &[]
        };
        // A POST needs a body, even `{}`.
        let body = if method == "POST" && body.is_empty() {
            "{}".to_string()
        } else {
            body
        };
        let r = client::try_request_timeout(
            self.port,
            method,
            path,
            headers,
            body.as_bytes(),
            timeout + Duration::from_secs(5),
        )?;
        let v: Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("WebDriver answered non-JSON ({e}): {}", r.body_str()))?;
        if r.status != 200 {
            return Err(format!(
                "WebDriver {method} {path}: {} {}: {}",
                r.status,
                v["value"]["error"].as_str().unwrap_or(""),
                v["value"]["message"].as_str().unwrap_or("")
            ));
        }
        Ok(v["value"].clone())
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let p = format!("/session/{}{path}", self.session);
        self.call(method, &p, body, TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Loads `url` and waits for the load (bounded by the page-load timeout).
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn title(&self) -> String {
        self.cmd("GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's HTML.
    pub fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's visible text (`document.body.innerText`; a JSON page shows as text).
    pub fn text(&self) -> String {
        self.exec(
            "return document.body ? document.body.innerText : ''",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Runs a synchronous script (`return ...` gives the result).
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// `document.cookie` as the page's scripts see it.
    pub fn document_cookie(&self) -> String {
        self.exec("return document.cookie", json!([]))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Every cookie the browser holds for the current page's URL, HttpOnly included.
    pub fn cookies(&self) -> Vec<BrowserCookie> {
        self.cmd("GET", "/cookie", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| BrowserCookie {
                name: c["name"].as_str().unwrap_or_default().into(),
                value: c["value"].as_str().unwrap_or_default().into(),
                path: c["path"].as_str().unwrap_or_default().into(),
                http_only: c["httpOnly"].as_bool().unwrap_or(false),
                secure: c["secure"].as_bool().unwrap_or(false),
                same_site: c["sameSite"].as_str().map(str::to_string),
            })
            .collect()
    }

    pub fn cookie(&self, name: &str) -> Option<BrowserCookie> {
        self.cookies().into_iter().find(|c| c.name == name)
    }

    /// The first element matching a CSS selector, now.
    pub fn find(&self, css: &str) -> Option<String> {
        let p = format!("/session/{}/element", self.session);
        self.call(
            "POST",
            &p,
            Some(json!({ "using": "css selector", "value": css })),
            TIMEOUT,
        )
        .ok()
        .and_then(|v| v[ELEMENT_KEY].as_str().map(str::to_string))
    }

    /// Waits (bounded) for an element; panics with the page when it never appears.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            if Instant::now() > deadline {
                panic!(
                    "no element {css:?} after {timeout:?} at {}; page:\n{}",
                    self.url(),
                    self.text()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types into the element matching `css` (waits for it).
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.wait_for(css, TIMEOUT);
        self.cmd("POST", &format!("/element/{e}/clear"), None);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks the element matching `css` (waits for it).
    pub fn click(&self, css: &str) {
        let e = self.wait_for(css, TIMEOUT);
        self.cmd("POST", &format!("/element/{e}/click"), None);
    }

    /// Waits (bounded) until the current URL satisfies `pred`; the URL.
    pub fn wait_url(&self, what: &str, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let u = self.url();
            if pred(&u) {
                return u;
            }
            if Instant::now() > deadline {
                panic!(
                    "URL never became {what} after {timeout:?}: at {u}; page:\n{}",
                    self.text()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (bounded) until the page text contains `needle`; the text.
    pub fn wait_text(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.text();
            if t.contains(needle) {
                return t;
            }
            if Instant::now() > deadline {
                panic!(
                    "page text never contained {needle:?} after {timeout:?}: at {}; text:\n{t}",
                    self.url()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the viewport to `path` (directories created).
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("screenshot is not base64: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        fs::write(path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Saves a screenshot as `<repo>/target/portcullis-screenshots/<name>.png`; the path.
    pub fn screenshot_named(&self, name: &str) -> PathBuf {
        let p = screenshot_dir().join(format!("{name}.png"));
        self.screenshot(&p);
        p
    }

    /// On the IdP's login page (oidc-provider's development interaction): signs in
    /// as `user`, then confirms the consent page when one is shown. Returns when the
    /// browser has left the IdP's interaction pages (bounded).
    pub fn login_at_idp(&self, user: &str, shot_prefix: Option<&str>) {
        self.wait_for("input[name=login]", TIMEOUT);
        if let Some(p) = shot_prefix {
            self.screenshot_named(&format!("{p}-idp-login"));
        }
        self.type_into("input[name=login]", user);
        self.type_into("input[name=password]", "any-password");
        self.click("button[type=submit]");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let url = self.url();
            if !url.contains("/interaction/") {
                return;
            }
            // Consent: the form posting prompt=consent.
            if self.find("input[name=prompt][value=consent]").is_some() {
                if let Some(p) = shot_prefix {
                    self.screenshot_named(&format!("{p}-idp-consent"));
                }
                self.click("button[type=submit]");
                self.wait_url("off the consent page", |u| u != url, TIMEOUT);
                continue;
            }
            if Instant::now() > deadline {
                panic!(
                    "still on the IdP at {url} after {TIMEOUT:?}:\n{}",
                    self.text()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Submits a POST form built in the page (a logout button, say): `action` and
    /// hidden `fields`. Does not wait.
    pub fn post_form(&self, action: &str, fields: &[(&str, &str)]) {
        let fields: Vec<Value> = fields.iter().map(|(k, v)| json!([k, v])).collect();
        self.exec(
            "const [action, fields] = arguments;
             const f = document.createElement('form');
             f.method = 'POST'; f.action = action;
             for (const [k, v] of fields) {
               const i = document.createElement('input');
               i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
             }
             document.body.appendChild(f);
             setTimeout(() => f.submit(), 0);
             return true;",
            json!([action, fields]),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let p = format!("/session/{}", self.session);
            let _ = self.call("DELETE", &p, None, Duration::from_secs(10));
        }
        let pid = self.driver.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        if thread::panicking() {
            eprintln!(
                "--- chromedriver log (last 30 lines) ---\n{}\n---",
                self.driver_log()
            );
        }
        let _ = fs::remove_dir_all(&self.profile);
    }
}
