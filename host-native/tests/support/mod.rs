//! Helpers shared by the tests that run real processes: the `linkcache` binary, and this
//! test binary re-executed as a child that runs one ignored test.

#![allow(dead_code)] // each test file uses a part

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
