//! The test-crash module: Portcullis built with the filter crate's `test-crash`
//! feature, where a request carrying `x-portcullis-test-crash: now` aborts the
//! Wasm VM, and with `ec-fallback` (the pure-Rust ES384/ES512 checks the
//! shipped module leaves out), so the suite's one extra module build serves
//! both. Built on first use into its own target directory
//! (`target/test-crash`), so the shipped `dist/portcullis.wasm` and the usual
//! build output are never touched; `PORTCULLIS_CRASH_WASM` names a prebuilt one.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::envoy::repo_root;

/// The header (and value) that crashes the test-crash module.
pub const CRASH_HEADER: (&str, &str) = ("x-portcullis-test-crash", "now");

/// The path of the test-crash module, building it once per process (cargo
/// keeps it up to date and serialises concurrent builds). Panics with cargo's
/// output when the build fails.
pub fn crash_wasm_path() -> PathBuf {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("PORTCULLIS_CRASH_WASM").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        let root = repo_root();
        let target_dir = root.join("target/test-crash");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let out = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip1"])
            .args([
                "-p",
                "portcullis-filter",
                "--features",
                "test-crash,ec-fallback",
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "building the test-crash module failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let p = target_dir.join("wasm32-wasip1/release/portcullis.wasm");
        if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{} was not produced", p.display()))
        }
    });
    match r {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}
