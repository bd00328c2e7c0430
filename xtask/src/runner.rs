//! The step runner: one header and duration per step, a failure naming the step and its
//! command line, and the small helpers every command runs programs with.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{Failure, Outcome};

/// Runs one step: prints a header and its duration; a failure names the step and the
/// command line (and the directory it ran in, when not the workspace root).
pub(crate) fn step(name: &str, command: &mut Command) -> Outcome {
    eprintln!("==> {name}");
    let started = Instant::now();
    let status = command
        .status()
        .map_err(|e| Failure(format!("{name}: cannot start `{}`: {e}", describe(command))))?;
    eprintln!("    {name}: {:.1}s", started.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(Failure(format!(
            "{name}: `{}` exited with {status}",
            describe(command)
        )))
    }
}

fn describe(command: &Command) -> String {
    let mut parts = vec![command.get_program().to_string_lossy().into_owned()];
    parts.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    let line = parts.join(" ");
    match command.get_current_dir() {
        Some(dir) => format!("{line}` in `{}", dir.display()),
        None => line,
    }
}

pub(crate) fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args);
    command
}

/// The standard output of a command, if it ran and succeeded.
pub(crate) fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Puts cargo's bin directory on PATH, so that a tool `cargo install` just installed
/// (wasm-bindgen, wasm-bindgen-test-runner) is found by the steps after it.
pub(crate) fn put_cargo_bin_on_path() {
    let bin = match std::env::var_os("CARGO_HOME") {
        Some(home) => PathBuf::from(home).join("bin"),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".cargo/bin"),
            None => return,
        },
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|p| p == bin) {
        return;
    }
    let joined: Result<OsString, _> =
        std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path)));
    if let Ok(joined) = joined {
        // SAFETY: called once at start-up, before any other thread exists.
        unsafe { std::env::set_var("PATH", joined) };
    }
}
