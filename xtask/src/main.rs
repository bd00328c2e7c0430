//! Developer commands for the linkcache workspace: `cargo xtask <command>`.
//!
//! - `demo`: the native demo (a cache in the default directory, cold then warm), then
//!   the web demo page served on localhost until Ctrl-C (`--no-serve` stops before).
//! - `test`: every check CI runs: formatting, clippy, native tests (the benchmarks'
//!   quick smoke run among them), the core's wasm32 tests in Node, browser tests in
//!   headless Chromium (`wasm-pack test --headless --chrome host-web`, as the package's
//!   users run them), the release npm package (through wasm-opt, within its size
//!   budget) and the end-to-end page tests on it (`--skip-browser` skips the browser
//!   steps).
//! - `web-pkg`: builds the npm package of `linkcache-web` into `host-web/pkg` (or
//!   `--out-dir`); `--release` is the package that ships: size-tuned, through wasm-opt;
//!   `--marks` a profiling build that records its steps (bench/browser/probe.mjs).
//! - `bench`: the benchmark suite (`--quick` for small sizes).
//!
//! Every command installs what it needs when it is missing (the wasm32 target,
//! wasm-bindgen-cli at the version in Cargo.lock, wasm-pack at [`WASM_PACK_VERSION`],
//! Chromium and ChromeDriver from Debian's packages, npm packages) and skips what is
//! already there.
//!
//! Each step prints a header (`==> clippy`) and its duration; the first failing step
//! stops the command with an error naming the step and its command line.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use clap::{Parser, Subcommand};

mod install;
mod runner;

use crate::install::{
    MotoServer, REDIS_SERVER, ensure_chromium, ensure_moto, ensure_npm_deps, ensure_redis,
    ensure_wasm_bindgen_cli, ensure_wasm_pack, ensure_wasm_target,
};
use crate::runner::{cargo, put_cargo_bin_on_path, step, workspace_root};

#[derive(Parser)]
#[command(
    about = "Developer commands for linkcache",
    after_help = "Run `cargo xtask test` before pushing; CI (.ci/run) runs exactly that."
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
    /// Run every check: fmt, clippy, native tests, core tests on wasm32, browser and page tests.
    Test {
        /// Skip the browser steps (browser tests, npm package, page tests) for a fast local run.
        #[arg(long)]
        skip_browser: bool,
    },
    /// Build the npm package of linkcache-web into host-web/pkg.
    WebPkg {
        /// Build the package that ships: size-tuned profile, wasm-opt -Oz.
        #[arg(long)]
        release: bool,
        /// Where to write the package (default host-web/pkg).
        #[arg(long, default_value = PKG_DIR)]
        out_dir: PathBuf,
        /// Profiling build: the package records its steps for bench/browser/probe.mjs
        /// (linkcache-web's feature `marks`). Never the package that ships.
        #[arg(long)]
        marks: bool,
    },
    /// Run the benchmarks and write a Markdown report.
    Bench {
        /// Small sizes only: a smoke test that the benchmarks build and run.
        #[arg(long)]
        quick: bool,
        /// Further arguments for linkcache-bench (for example `--only target`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The wasm-pack release `cargo xtask test` installs (`cargo install --locked`) when
/// `wasm-pack --version` prints another one.
const WASM_PACK_VERSION: &str = "0.15.1";

/// Where `cargo xtask web-pkg` writes the npm package by default (the demo page and the
/// end-to-end tests load it from there).
const PKG_DIR: &str = "host-web/pkg";

/// The crates of the npm package and how `cargo xtask web-pkg` builds them (see
/// `web_pkg`): linkcache-web without its bundled analyzer, the text parser and the
/// analyzer, each a wasm file of its own.
const PACKAGE_CRATES: &[&str] = &[
    "-p",
    "linkcache-web",
    "-p",
    "linkcache-web-wat",
    "-p",
    "linkcache-web-analyzer",
    "--no-default-features",
    "--target",
    "wasm32-unknown-unknown",
    "--lib",
];

/// The size budget of the package's wasm (issue 11: at most 1 MB; a fresh tab downloads
/// and compiles all of it).
const PKG_WASM_BUDGET: u64 = 1_000_000;

/// A failed step: what ran and why it failed.
struct Failure(String);

type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    std::env::set_current_dir(workspace_root()).expect("the workspace root exists");
    put_cargo_bin_on_path();
    let started = Instant::now();
    let outcome = match cli.command {
        Task::Demo { no_serve, reset } => demo(no_serve, reset),
        Task::Test { skip_browser } => test(skip_browser),
        Task::WebPkg {
            release,
            out_dir,
            marks,
        } => web_pkg(release, marks, &out_dir),
        Task::Bench { quick, args } => bench(quick, &args),
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

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// `cargo xtask test`: every check, in the order CI runs them.
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
    // An embedder's build without the default features (no remote tier).
    step(
        "clippy (linkcache-native without default features)",
        &mut cargo(&[
            "clippy",
            "-p",
            "linkcache-native",
            "--no-default-features",
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
    // The package as it ships: the analyzer a wasm file of its own (see web_pkg).
    step(
        "clippy (linkcache-web, its text parser and its analyzer on wasm32, as the npm package builds them)",
        cargo(&["clippy"])
            .args(PACKAGE_CRATES)
            .args(["--", "-D", "warnings"]),
    )?;
    // The API docs: every intra-doc link resolves (the native host's with every feature,
    // as docs.rs builds them; the browser host's for wasm32).
    step(
        "docs",
        cargo(&[
            "doc",
            "--no-deps",
            "-p",
            "linkcache-core",
            "-p",
            "linkcache-native",
            "--all-features",
        ])
        .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    step(
        "docs (linkcache-web on wasm32)",
        cargo(&[
            "doc",
            "--no-deps",
            "-p",
            "linkcache-web",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    // The remote tier's tests start their own redis-server, and share one S3 server
    // (moto, stopped when the step ends, failed or not); here they must not skip.
    ensure_redis()?;
    ensure_moto()?;
    let s3 = MotoServer::start()?;
    step(
        "native tests",
        cargo(&["test", "--workspace"])
            .env("LINKCACHE_REDIS_SERVER", REDIS_SERVER)
            .env("LINKCACHE_TEST_S3", s3.endpoint())
            .env("AWS_ACCESS_KEY_ID", "linkcache-test")
            .env("AWS_SECRET_ACCESS_KEY", "linkcache-test")
            .env("AWS_REGION", "us-east-1")
            .env("LINKCACHE_REQUIRE_REMOTE_SERVERS", "1"),
    )?;
    drop(s3);
    // The core builds for wasm32, and its planner keeps to wasm32's small fixed stack
    // (a 100,000-long chain): tests/planner_wasm32.rs in Node, not a browser.
    ensure_wasm_bindgen_cli()?;
    step(
        "linkcache-core on wasm32 (tests in Node)",
        cargo(&[
            "test",
            "-p",
            "linkcache-core",
            "--target",
            "wasm32-unknown-unknown",
            "--test",
            "planner_wasm32",
        ])
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            "wasm-bindgen-test-runner",
        ),
    )?;
    // The benchmarks' quick smoke run is bench/tests/smoke.rs, part of the native tests
    // (so that it shares their build instead of rebuilding wasmtime with other features).
    if skip_browser {
        eprintln!("==> browser steps: skipped (--skip-browser)");
        return Ok(());
    }
    browser_tests()?;
    // The end-to-end tests run the package that ships: the release build, through
    // wasm-opt, as the demo serves it.
    web_pkg(true, false, Path::new(PKG_DIR))?;
    package_size(Path::new(PKG_DIR))?;
    npm_tests("host-web/e2e", "tabs and workers (host-web/e2e)")?;
    npm_tests("www", "page end-to-end tests (www)")
}

/// Checks the release package's wasm against its size budget.
fn package_size(dir: &Path) -> Outcome {
    eprintln!("==> package size");
    let wasm = dir.join("linkcache_web_bg.wasm");
    let size = std::fs::metadata(&wasm)
        .map_err(|e| Failure(format!("package size: {}: {e}", wasm.display())))?
        .len();
    eprintln!(
        "    {}: {size} bytes (budget {PKG_WASM_BUDGET})",
        wasm.display()
    );
    if size > PKG_WASM_BUDGET {
        return Err(Failure(format!(
            "package size: {} is {size} bytes, over the budget of {PKG_WASM_BUDGET}",
            wasm.display()
        )));
    }
    Ok(())
}

/// `cargo xtask web-pkg`: the npm package of linkcache-web, in `out_dir`.
fn web_pkg(release: bool, marks: bool, out_dir: &Path) -> Outcome {
    let manifest = std::fs::read_to_string("host-web/Cargo.toml").unwrap_or_default();
    if !declares_cdylib(&manifest) {
        eprintln!(
            "==> web-pkg: skipped, host-web/Cargo.toml has no \
             `crate-type = [\"cdylib\", \"rlib\"]` under [lib] yet"
        );
        return Ok(());
    }
    ensure_wasm_target()?;
    ensure_wasm_bindgen_cli()?;
    // Three wasm files: the package; `watToWasm` (the text parser) on its own, so that
    // a page that never parses text never loads it; and the analyzer (wasmparser's
    // validator and the analysis), which the package loads itself on first use, so
    // that a page that only targets never loads it (linkcache-web without its default
    // feature `bundled-analyzer`; see host-web/src/analyzer.rs).
    let mut build = cargo(&["build"]);
    build.args(PACKAGE_CRATES);
    if marks {
        build.args(["--features", "linkcache-web/marks"]);
    }
    // The release package is size-tuned (opt-level z, LTO, one codegen unit).
    if release {
        build.args(["--profile", "wasm-release"]);
    }
    step("build linkcache-web for wasm32", &mut build)?;
    let profile = if release { "wasm-release" } else { "debug" };
    let target_dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    for (crate_name, out_dir) in [
        ("linkcache_web", out_dir.to_path_buf()),
        ("linkcache_web_wat", out_dir.join("wat")),
        ("linkcache_web_analyzer", out_dir.join("analyzer")),
    ] {
        let wasm = format!("{target_dir}/wasm32-unknown-unknown/{profile}/{crate_name}.wasm");
        let mut bindgen = Command::new("wasm-bindgen");
        bindgen
            .args(["--target", "web", "--out-dir"])
            .arg(&out_dir)
            .args(["--out-name", crate_name]);
        // A profiling build keeps function names for the browser's profiler.
        if release && !marks {
            bindgen.args(["--remove-name-section", "--remove-producers-section"]);
        }
        step(
            &format!("wasm-bindgen ({})", out_dir.display()),
            bindgen.arg(&wasm),
        )?;
        if release {
            // binaryen from npm: a current wasm-opt (Debian's 108 predates the features
            // Rust's wasm32 target enables).
            ensure_npm_deps("host-web/tools")?;
            let file = out_dir.join(format!("{crate_name}_bg.wasm"));
            step(
                &format!("wasm-opt -Oz ({})", file.display()),
                Command::new("host-web/tools/node_modules/.bin/wasm-opt")
                    .arg("-Oz")
                    .args(marks.then_some("--debuginfo"))
                    .arg(&file)
                    .arg("-o")
                    .arg(&file),
            )?;
        }
    }
    for file in ["package.json", "README.md"] {
        let from = Path::new("host-web/npm").join(file);
        if from.exists() {
            std::fs::copy(&from, out_dir.join(file))
                .map_err(|e| Failure(format!("web-pkg: copying {}: {e}", from.display())))?;
        }
    }
    eprintln!("    npm package in {}", out_dir.display());
    Ok(())
}

/// `cargo xtask demo`: the native demo, then the web demo page until Ctrl-C.
fn demo(no_serve: bool, reset: bool) -> Outcome {
    if Path::new("host-native/examples/demo.rs").exists() {
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
    } else {
        eprintln!(
            "==> native demo: host-native/examples/demo.rs does not exist yet; \
             running the scenario suite instead"
        );
        step(
            "scenario suite (interim demo)",
            &mut cargo(&[
                "test",
                "-p",
                "linkcache-tests",
                "--test",
                "core_scenarios",
                "--",
                "--nocapture",
            ]),
        )?;
    }
    if no_serve {
        return Ok(());
    }
    if !Path::new("www/package.json").exists() {
        eprintln!("==> web demo: skipped, www/package.json does not exist yet");
        return Ok(());
    }
    web_pkg(true, false, Path::new(PKG_DIR))?;
    ensure_npm_deps("www")?;
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    eprintln!("    serving the demo page at http://127.0.0.1:{port}/ (Ctrl-C to stop)");
    step(
        "web demo (Ctrl-C to stop)",
        Command::new("node").arg("www/serve.mjs"),
    )
}

/// `cargo xtask bench`: the benchmark suite in release mode.
fn bench(quick: bool, args: &[String]) -> Outcome {
    if !Path::new("bench/Cargo.toml").exists() {
        eprintln!("==> bench: the bench/ crate does not exist yet; nothing to run");
        return Ok(());
    }
    // The full run includes the browser section, which needs wasm-bindgen and Chromium.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1));
    if !quick && only.is_none_or(|section| section == "browser") {
        ensure_wasm_target()?;
        ensure_wasm_bindgen_cli()?;
        ensure_chromium()?;
        if Path::new("bench/browser/package.json").exists() {
            ensure_npm_deps("bench/browser")?;
        }
    }
    let mut run = cargo(&["run", "--release", "-p", "linkcache-bench", "--"]);
    if quick {
        run.arg("--quick");
    }
    run.args(args);
    // Section (8) starts its own redis-server on loopback, and uses an S3 server
    // (moto) started here for the run.
    let mut s3 = None;
    if only.is_none_or(|section| section == "remote") {
        ensure_redis()?;
        if !quick {
            ensure_moto()?;
            let server = MotoServer::start()?;
            run.env("LINKCACHE_BENCH_S3", server.endpoint())
                .env("AWS_ACCESS_KEY_ID", "linkcache-bench")
                .env("AWS_SECRET_ACCESS_KEY", "linkcache-bench")
                .env("AWS_REGION", "us-east-1");
            s3 = Some(server);
        }
    }
    let outcome = step("benchmarks", &mut run);
    drop(s3);
    outcome
}

// ---------------------------------------------------------------------------------------
// Steps of `test`
// ---------------------------------------------------------------------------------------

/// host-web's wasm-bindgen tests in headless Chromium, run the way the package's users
/// run them: `wasm-pack test --headless --chrome host-web` (offline: it finds the
/// wasm-bindgen-cli of the locked version on PATH and Debian's ChromeDriver; the
/// browser's flags are host-web/webdriver.json).
fn browser_tests() -> Outcome {
    if !has_rs_file("host-web/tests") {
        eprintln!("==> browser tests: skipped: no browser tests yet");
        return Ok(());
    }
    ensure_wasm_bindgen_cli()?;
    ensure_wasm_pack()?;
    ensure_chromium()?;
    step(
        "browser tests (wasm-pack test --headless --chrome host-web)",
        Command::new("wasm-pack")
            .args([
                "test",
                "--headless",
                "--chrome",
                "--chromedriver",
                "/usr/bin/chromedriver",
                "host-web",
            ])
            .env("WASM_BINDGEN_TEST_TIMEOUT", "300"),
    )
}

/// `npm test` in `dir` after installing its packages, when `dir` has a package.json.
fn npm_tests(dir: &str, name: &str) -> Outcome {
    if !Path::new(dir).join("package.json").exists() {
        eprintln!("==> {name}: skipped, {dir}/package.json does not exist yet");
        return Ok(());
    }
    ensure_npm_deps(dir)?;
    step(name, Command::new("npm").arg("test").current_dir(dir))
}

fn has_rs_file(dir: &str) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "rs"))
        })
        .unwrap_or(false)
}

/// Whether a Cargo.toml declares a `cdylib` crate type (wasm-bindgen needs one).
fn declares_cdylib(manifest: &str) -> bool {
    manifest.lines().any(|line| {
        let line = line.trim();
        line.starts_with("crate-type") && line.contains("\"cdylib\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::locked_wasm_bindgen_version;

    #[test]
    fn bench_passes_further_arguments_through() {
        let cli = Cli::try_parse_from(["xtask", "bench", "--quick", "--only", "target"])
            .unwrap_or_else(|e| panic!("{e}"));
        let Task::Bench { quick, args } = cli.command else {
            panic!("not bench")
        };
        assert!(quick);
        assert_eq!(args, ["--only", "target"]);
        let cli = Cli::try_parse_from(["xtask", "bench", "--only", "open", "--runs", "3"])
            .unwrap_or_else(|e| panic!("{e}"));
        let Task::Bench { quick, args } = cli.command else {
            panic!("not bench")
        };
        assert!(!quick);
        assert_eq!(args, ["--only", "open", "--runs", "3"]);
    }

    #[test]
    fn web_pkg_writes_to_host_web_pkg_unless_told_otherwise() {
        let cli = Cli::try_parse_from(["xtask", "web-pkg", "--release"])
            .unwrap_or_else(|e| panic!("{e}"));
        let Task::WebPkg {
            release,
            out_dir,
            marks,
        } = cli.command
        else {
            panic!("not web-pkg")
        };
        assert!(release);
        assert!(!marks, "the shipped package records no marks");
        assert_eq!(out_dir, Path::new("host-web/pkg"));
        let cli = Cli::try_parse_from(["xtask", "web-pkg", "--out-dir", "/tmp/pkg", "--marks"])
            .unwrap_or_else(|e| panic!("{e}"));
        let Task::WebPkg {
            release,
            out_dir,
            marks,
        } = cli.command
        else {
            panic!("not web-pkg")
        };
        assert!(!release);
        assert!(marks);
        assert_eq!(out_dir, Path::new("/tmp/pkg"));
    }

    #[test]
    fn web_pkg_needs_a_cdylib() {
        assert!(declares_cdylib(
            "[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n"
        ));
        assert!(!declares_cdylib("[lib]\npath = \"src/lib.rs\"\n"));
        assert!(!declares_cdylib("# crate-type = [\"cdylib\"]\n"));
    }

    #[test]
    fn reads_the_locked_wasm_bindgen_version() {
        std::env::set_current_dir(workspace_root()).unwrap();
        let version = locked_wasm_bindgen_version().unwrap_or_else(|Failure(e)| panic!("{e}"));
        assert!(version.starts_with("0.2."), "{version}");
    }
}
