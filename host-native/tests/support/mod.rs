//! Helpers shared by the tests that run real processes: the `linkcache` binary, and this
//! test binary re-executed as a child that runs one ignored test.

#![allow(dead_code)] // each test file uses a part

pub mod remote;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `linkcache --dir <dir> <args>` to completion.
pub fn linkcache(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_linkcache"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("the linkcache binary runs")
}

/// A process's standard output, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A process's standard error, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// This test binary again, running only the ignored test `test` (a child's role is
/// passed in its environment). Its output is libtest's around the test's own.
pub fn child(test: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command.args([
        "--ignored",
        "--exact",
        test,
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

/// Waits until `path` exists; panics after `timeout`.
pub fn wait_for(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear within {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The module of a WebAssembly text.
pub fn wasm(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("test WAT parses")
}

/// `util.sq(x) = x*x`.
pub fn util() -> Vec<u8> {
    wasm(
        r#"(module (func (export "util.sq") (param i64) (result i64)
        (i64.mul (local.get 0) (local.get 0))))"#,
    )
}

/// Where the cache at `root` keeps the bytes of `id`.
pub fn module_file(root: &Path, id: &linkcache_native::core::ModuleId) -> std::path::PathBuf {
    let hex = id.to_string();
    root.join("modules")
        .join(&hex[..2])
        .join(format!("{hex}.wasm"))
}

/// Where the cache at `root` keeps the manifest of `id`.
pub fn manifest_file(root: &Path, id: &linkcache_native::core::ModuleId) -> std::path::PathBuf {
    let hex = id.to_string();
    root.join("manifests")
        .join(&hex[..2])
        .join(format!("{hex}.lcmf"))
}

/// Every file under `root`, recursively, sorted (none when it is absent).
pub fn files_under(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// The precompiled artifacts of the cache at `root`.
pub fn artifacts(root: &Path) -> Vec<std::path::PathBuf> {
    files_under(&root.join("artifacts"))
}

/// Flips one byte of a file (at `at`, or its last byte).
pub fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// This test binary again as a child running `test` with `RACE_DIR` and `RACE_ROLE`
/// set, its output captured.
pub fn spawn_role(test: &str, dir: &Path, role: &str) -> std::process::Child {
    child(test)
        .env("RACE_DIR", dir)
        .env("RACE_ROLE", role)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}
