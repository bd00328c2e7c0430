//! Developer commands for the linkcache workspace: `cargo xtask <command>`.
//!
//! - `demo`: the native demo (a cache in the default directory, cold then warm), then
//!   the web demo page served on localhost.
//! - `test`: every check CI runs: formatting, clippy, native tests, the core on wasm32,
//!   browser tests in headless Chromium, the page's end-to-end tests.
//! - `web-pkg`: builds the npm package of `linkcache-web` into `host-web/pkg`.
//! - `bench`: the benchmark suite.
//!
//! Every command installs what it needs when it is missing (the wasm32 target,
//! wasm-bindgen-cli at the version in Cargo.lock, Chromium and ChromeDriver from
//! Debian's packages, npm packages) and skips what is already there.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    about = "Developer commands for linkcache",
    after_help = "Run `cargo xtask test` before pushing; CI runs exactly that."
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run the demo: native cold/warm load in the default cache directory, then serve the web demo.
    Demo {
        /// Stop after the native demo instead of serving the page.
        #[arg(long)]
        no_serve: bool,
        /// Forget the demo's modules first, so that the first process starts cold.
        #[arg(long)]
        reset: bool,
    },
    /// Run every check: fmt, clippy, native tests, wasm32 build, browser and page tests.
    Test {
        /// Skip the browser steps (browser tests, npm package, page tests).
        #[arg(long)]
        skip_browser: bool,
    },
    /// Build the npm package of linkcache-web into host-web/pkg.
    WebPkg {
        /// Build in release mode (smaller, faster wasm).
        #[arg(long)]
        release: bool,
    },
    /// Run the benchmarks and write a Markdown report.
    Bench {
        /// Small sizes only: a smoke test that the benchmarks build and run.
        #[arg(long)]
        quick: bool,
    },
}

/// A failed step: what ran and why it failed.
struct Failure(String);

type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root).expect("the workspace root exists");
    let started = Instant::now();
    let outcome = match cli.command {
        Task::Demo { no_serve, reset } => demo(no_serve, reset),
        Task::Test { skip_browser } => test(skip_browser),
        Task::WebPkg { release } => web_pkg(release),
        Task::Bench { quick } => bench(quick),
    };
    match outcome {
        Ok(()) => {
            eprintln!("==> done in {:.1}s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(Failure(message)) => {
            eprintln!("==> FAILED: {message}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs one step: prints a header and its duration, fails with the command line.
fn step(name: &str, command: &mut Command) -> Outcome {
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
    parts.join(" ")
}

fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args);
    command
}

/// The output of a command, if it ran and succeeded.
fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn ensure_wasm_target() -> Outcome {
    let installed = output_of("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        return Ok(());
    }
    step(
        "install the wasm32 target",
        Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]),
    )
}

/// The exact version of the `wasm-bindgen` crate in Cargo.lock.
fn locked_wasm_bindgen_version() -> Result<String, Failure> {
    let lock = std::fs::read_to_string("Cargo.lock")
        .map_err(|e| Failure(format!("reading Cargo.lock: {e}")))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\""
            && let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
        {
            return Ok(version.trim_end_matches('"').to_string());
        }
    }
    Err(Failure("Cargo.lock has no wasm-bindgen package".into()))
}

fn ensure_wasm_bindgen_cli() -> Outcome {
    let version = locked_wasm_bindgen_version()?;
    let installed = output_of("wasm-bindgen", &["--version"]).unwrap_or_default();
    if installed.split_whitespace().nth(1) == Some(version.as_str()) {
        return Ok(());
    }
    // Not `--locked`: its lock file names a crate version the registry no longer serves.
    step(
        &format!("install wasm-bindgen-cli {version} (several minutes, once)"),
        &mut cargo(&["install", "wasm-bindgen-cli", "--version", &version]),
    )
}

fn ensure_chromium() -> Outcome {
    if Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists() {
        return Ok(());
    }
    let root = output_of("id", &["-u"]).is_some_and(|uid| uid.trim() == "0");
    let apt = |args: &[&str]| {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    step("apt-get update", &mut apt(&["update"]))?;
    step(
        "install chromium and chromium-driver",
        &mut apt(&["install", "-y", "chromium", "chromium-driver"]),
    )
}

/// `npm ci` (or `npm install` without a lock file) unless node_modules is up to date.
fn ensure_npm_deps(dir: &str) -> Outcome {
    let dir = Path::new(dir);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let lock = dir.join("package-lock.json");
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    let newest_input = [modified(&dir.join("package.json")), modified(&lock)]
        .into_iter()
        .flatten()
        .max();
    if installed.is_some() && installed >= newest_input {
        return Ok(());
    }
    let verb = if lock.exists() { "ci" } else { "install" };
    step(
        &format!("npm {verb} in {}", dir.display()),
        Command::new("npm")
            .arg(verb)
            .arg("--no-audit")
            .arg("--no-fund")
            .current_dir(dir),
    )
}

fn test(skip_browser: bool) -> Outcome {
    step("rustfmt", &mut cargo(&["fmt", "--all", "--", "--check"]))?;
    step(
        "clippy",
        &mut cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    ensure_wasm_target()?;
    step(
        "clippy (linkcache-web on wasm32)",
        &mut cargo(&[
            "clippy",
            "-p",
            "linkcache-web",
            "--target",
            "wasm32-unknown-unknown",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step("native tests", &mut cargo(&["test", "--workspace"]))?;
    step(
        "linkcache-core on wasm32",
        &mut cargo(&[
            "build",
            "-p",
            "linkcache-core",
            "--target",
            "wasm32-unknown-unknown",
        ]),
    )?;
    if Path::new("bench/Cargo.toml").exists() {
        step(
            "benchmarks, quick smoke run",
            &mut cargo(&["run", "-p", "linkcache-bench", "--", "--quick"]),
        )?;
    }
    if skip_browser {
        eprintln!("==> browser steps skipped (--skip-browser)");
        return Ok(());
    }
    browser_tests()?;
    if Path::new("host-web/e2e/package.json").exists() {
        web_pkg(false)?;
        ensure_npm_deps("host-web/e2e")?;
        step(
            "tabs and workers (host-web/e2e)",
            Command::new("npm").arg("test").current_dir("host-web/e2e"),
        )?;
    }
    if Path::new("www/package.json").exists() {
        web_pkg(false)?;
        ensure_npm_deps("www")?;
        step(
            "page end-to-end tests (www)",
            Command::new("npm").arg("test").current_dir("www"),
        )?;
    }
    Ok(())
}

fn has_browser_tests() -> bool {
    std::fs::read_dir("host-web/tests")
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "rs"))
        })
        .unwrap_or(false)
}

fn browser_tests() -> Outcome {
    if !has_browser_tests() {
        eprintln!("==> browser tests: skipped, host-web/tests has none yet");
        return Ok(());
    }
    ensure_wasm_bindgen_cli()?;
    ensure_chromium()?;
    step(
        "browser tests (headless Chromium)",
        cargo(&[
            "test",
            "-p",
            "linkcache-web",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .env("CHROMEDRIVER", "/usr/bin/chromedriver")
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            "wasm-bindgen-test-runner",
        )
        .env("WASM_BINDGEN_TEST_TIMEOUT", "300"),
    )
}

fn web_pkg(release: bool) -> Outcome {
    let manifest = std::fs::read_to_string("host-web/Cargo.toml").unwrap_or_default();
    if !manifest.contains("cdylib") {
        eprintln!("==> web-pkg: skipped, host-web is not a cdylib yet");
        return Ok(());
    }
    ensure_wasm_target()?;
    ensure_wasm_bindgen_cli()?;
    let mut build = cargo(&[
        "build",
        "-p",
        "linkcache-web",
        "--target",
        "wasm32-unknown-unknown",
        "--lib",
    ]);
    if release {
        build.arg("--release");
    }
    step("build linkcache-web for wasm32", &mut build)?;
    let profile = if release { "release" } else { "debug" };
    let target_dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let wasm = format!("{target_dir}/wasm32-unknown-unknown/{profile}/linkcache_web.wasm");
    step(
        "wasm-bindgen (host-web/pkg)",
        Command::new("wasm-bindgen").args([
            "--target",
            "web",
            "--out-dir",
            "host-web/pkg",
            "--out-name",
            "linkcache_web",
            &wasm,
        ]),
    )?;
    for file in ["package.json", "README.md"] {
        let from = Path::new("host-web/npm").join(file);
        if from.exists() {
            std::fs::copy(&from, Path::new("host-web/pkg").join(file))
                .map_err(|e| Failure(format!("copying {}: {e}", from.display())))?;
        }
    }
    Ok(())
}

fn demo(no_serve: bool, reset: bool) -> Outcome {
    let mut run = cargo(&[
        "run",
        "--release",
        "-p",
        "linkcache-native",
        "--example",
        "demo",
        "--",
    ]);
    if reset {
        run.arg("--reset");
    }
    step("native demo", &mut run)?;
    if no_serve || !Path::new("www/package.json").exists() {
        return Ok(());
    }
    web_pkg(true)?;
    ensure_npm_deps("www")?;
    step(
        "web demo (Ctrl-C to stop)",
        Command::new("node").arg("www/serve.mjs"),
    )
}

fn bench(quick: bool) -> Outcome {
    if !Path::new("bench/Cargo.toml").exists() {
        return Err(Failure("the bench crate does not exist yet".into()));
    }
    let mut run = cargo(&["run", "--release", "-p", "linkcache-bench", "--"]);
    if quick {
        run.arg("--quick");
    }
    step("benchmarks", &mut run)
}
