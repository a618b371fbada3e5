//! Helpers shared by the shipping tests (package, compose, examples): temp dirs,
//! commands bounded in time, required tools, YAML.
//!
//! Each test file compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A fresh directory under the system temp dir, removed on Drop (kept when the
/// test panics, so its files can be looked at).
pub struct TempDir(PathBuf);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "portcullis-{tag}-{}-{n}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("(kept {} for inspection)", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// What a finished command did.
#[derive(Debug)]
pub struct Ran {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Ran {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Kills a child's whole process group and reaps it.
pub fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` to completion within `timeout` (its own process group, killed on
/// timeout: the test then panics). Output goes through files, so a chatty command
/// never blocks on a full pipe.
pub fn run(mut cmd: Command, timeout: Duration) -> Ran {
    use std::os::unix::process::CommandExt;
    let out_dir = TempDir::new("cmd");
    let out = out_dir.join("stdout");
    let err = out_dir.join("stderr");
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("create stdout file"))
        .stderr(fs::File::create(&err).expect("create stderr file"))
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            kill_group(&mut child);
            panic!(
                "{shown} did not finish within {timeout:?}; stderr so far:\n{}",
                fs::read_to_string(&err).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Ran {
        success: status.success(),
        code: status.code(),
        stdout: fs::read(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// Like [`run`], and panics with its output unless it succeeded.
pub fn run_ok(cmd: Command, timeout: Duration) -> Ran {
    let shown = format!("{cmd:?}");
    let ran = run(cmd, timeout);
    assert!(
        ran.success,
        "{shown} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        ran.code,
        ran.stdout_str(),
        ran.stderr
    );
    ran
}

/// The full path of a program on PATH; panics (the test fails, never skips) with
/// how to install it when it is missing.
pub fn require_tool(name: &str, debian_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` not found on PATH: install the Debian package `{debian_package}` \
         (scripts/setup does, when run as root)"
    )
}

/// Every document of a YAML file, as JSON values.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// A single-document YAML file as a JSON value.
pub fn yaml_file(path: &Path) -> Value {
    let mut docs = yaml_documents(path);
    assert_eq!(
        docs.len(),
        1,
        "{} should hold one YAML document",
        path.display()
    );
    docs.remove(0)
}
