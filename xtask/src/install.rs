//! Installers: each one checks first and returns at once when there is nothing to do
//! (the wasm32 target, wasm-bindgen-cli, wasm-pack, Chromium, redis-server, the S3
//! stand-in moto and its server, Debian and npm packages).

use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime};

use crate::runner::{cargo, output_of, step};
use crate::{Failure, Outcome, WASM_PACK_VERSION};

/// `rustup target add wasm32-unknown-unknown` unless it is installed.
pub(crate) fn ensure_wasm_target() -> Outcome {
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
pub(crate) fn locked_wasm_bindgen_version() -> Result<String, Failure> {
    let lock = std::fs::read_to_string("Cargo.lock")
        .map_err(|e| Failure(format!("reading Cargo.lock: {e}")))?;
    // Each `[[package]]` block starts with `name = "..."` followed by `version = "..."`.
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                l.trim()
                    .strip_prefix(key)
                    .and_then(|rest| rest.trim().strip_prefix('='))
                    .map(|value| value.trim().trim_matches('"').to_string())
            })
        };
        if field("name").as_deref() == Some("wasm-bindgen")
            && let Some(version) = field("version")
        {
            return Ok(version);
        }
    }
    Err(Failure("Cargo.lock has no wasm-bindgen package".into()))
}

/// wasm-bindgen-cli at exactly the Cargo.lock version of the `wasm-bindgen` crate.
pub(crate) fn ensure_wasm_bindgen_cli() -> Outcome {
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

/// wasm-pack at [`WASM_PACK_VERSION`], unless `wasm-pack --version` prints it already.
pub(crate) fn ensure_wasm_pack() -> Outcome {
    let installed = output_of("wasm-pack", &["--version"]).unwrap_or_default();
    if installed.split_whitespace().nth(1) == Some(WASM_PACK_VERSION) {
        return Ok(());
    }
    step(
        &format!("install wasm-pack {WASM_PACK_VERSION} (several minutes, once)"),
        &mut cargo(&[
            "install",
            "wasm-pack",
            "--version",
            WASM_PACK_VERSION,
            "--locked",
        ]),
    )
}

/// Chromium and ChromeDriver from Debian's packages, unless both are there.
pub(crate) fn ensure_chromium() -> Outcome {
    if Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists() {
        return Ok(());
    }
    apt_install(
        "chromium and chromium-driver",
        &["chromium", "chromium-driver"],
    )
}

/// Debian's redis-server, which the remote tier's tests start on loopback (one
/// server per test, persistence off).
pub(crate) fn ensure_redis() -> Outcome {
    if Path::new(REDIS_SERVER).exists() {
        return Ok(());
    }
    apt_install("redis-server", &["redis-server"])
}

pub(crate) const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A Python environment holding moto, an S3-compatible server for the remote tier's
/// tests (PyPI is reachable; nothing else is downloaded).
const MOTO_VENV: &str = "target/remote-test/venv";
const MOTO_VERSION: &str = "moto[server]==5.2.5";

pub(crate) fn ensure_moto() -> Outcome {
    let server = Path::new(MOTO_VENV).join("bin/moto_server");
    if server.exists() {
        return Ok(());
    }
    step(
        "python venv for moto",
        Command::new("python3").args(["-m", "venv", MOTO_VENV]),
    )?;
    step(
        &format!("pip install {MOTO_VERSION}"),
        Command::new(Path::new(MOTO_VENV).join("bin/pip")).args([
            "install",
            "--quiet",
            MOTO_VERSION,
        ]),
    )
}

/// moto_server on a free loopback port, stopped when dropped.
pub(crate) struct MotoServer {
    child: std::process::Child,
    port: u16,
}

impl MotoServer {
    pub(crate) fn start() -> Result<MotoServer, Failure> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Failure(format!("a free port: {e}")))?
            .port();
        let child = Command::new(Path::new(MOTO_VENV).join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Failure(format!("starting moto_server: {e}")))?;
        let server = MotoServer { child, port };
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(Failure("moto_server did not start within 60 s".into()));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        eprintln!("==> moto_server (S3) on 127.0.0.1:{port}");
        Ok(server)
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `apt-get update` (once per run) and `apt-get install -y packages`, through sudo
/// when not root.
fn apt_install(what: &str, packages: &[&str]) -> Outcome {
    static UPDATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let root = output_of("id", &["-u"]).is_some_and(|uid| uid.trim() == "0");
    let use_sudo = !root && output_of("sudo", &["--version"]).is_some();
    let apt = |args: &[&str]| {
        let mut command = if use_sudo {
            let mut sudo = Command::new("sudo");
            sudo.args(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
            sudo
        } else {
            Command::new("apt-get")
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    if !UPDATED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        step("apt-get update", &mut apt(&["update"]))?;
    }
    let mut install = vec!["install", "-y"];
    install.extend_from_slice(packages);
    step(&format!("install {what}"), &mut apt(&install))
}

/// `npm ci` (or `npm install` without a lock file) in `dir`, unless node_modules is
/// newer than package.json and package-lock.json.
pub(crate) fn ensure_npm_deps(dir: &str) -> Outcome {
    let dir = Path::new(dir);
    let modified = |p: &Path| -> Option<SystemTime> { std::fs::metadata(p).ok()?.modified().ok() };
    let lock = dir.join("package-lock.json");
    let node_modules = dir.join("node_modules");
    // npm rewrites node_modules/.package-lock.json on every install; the directory's own
    // time only changes when an entry is added or removed.
    let installed = [
        modified(&node_modules),
        modified(&node_modules.join(".package-lock.json")),
    ]
    .into_iter()
    .flatten()
    .max();
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
            .args([verb, "--no-audit", "--no-fund"])
            .current_dir(dir),
    )
}
