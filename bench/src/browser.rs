//! (5) The browser: warm `target()` from IndexedDB against compiling the same bytes from
//! memory, in Debian's headless Chromium driven by bench/browser/bench.mjs
//! (playwright-core, installed from its lock file; no browser download).
//!
//! The npm package is the one that ships, built by `cargo xtask web-pkg --release` (the
//! size-tuned profile, wasm-opt) into `<target>/bench-browser/pkg`, another output
//! directory, so the benchmark never changes `host-web/pkg` under the other tests.
//!
//! Every value is reported as its median with the minimum and maximum over the runs (at
//! least [`MIN_RUNS`] outside `--quick`): each run is a fresh browser process per side
//! and row, the sides interleaved. Beside linkcache-web and memory, each row's floor: raw
//! IndexedDB reads of the closure whose ids are known in advance, then the memory side's
//! compiles, so that a row's gap splits into IndexedDB's and the package's own. Beside
//! the rows: the package's own load time in a fresh tab, with the HTTP cache cleared and
//! with the package in it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value as Json, json};
use wasmtime::error::Context as _;
use wasmtime::{Result, bail};

use crate::charts::{Chart, Group, Plot};
use crate::large::{self, LargeModule};
use crate::report::{Table, count, median, ms, ratio};
use crate::workload::{self, Params};

const BENCH_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/browser");

/// The fewest runs a full browser benchmark reports (issue 11 asks for 7).
pub const MIN_RUNS: usize = 7;

/// Builds the release npm package, as it ships (`cargo xtask web-pkg --release`: the
/// size-tuned profile, wasm-bindgen, wasm-opt), into `<target>/bench-browser/pkg`.
fn build_package(target: &Path) -> Result<PathBuf> {
    let out = target.join("bench-browser/pkg");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "run",
            "--quiet",
            "-p",
            "xtask",
            "--",
            "web-pkg",
            "--release",
            "--out-dir",
        ])
        .arg(&out)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .context("running `cargo xtask web-pkg --release`")?;
    if !status.success() {
        bail!(
            "`cargo xtask web-pkg --release --out-dir {}` failed ({status})",
            out.display()
        );
    }
    Ok(out)
}

/// `median (min–max)` of some milliseconds.
fn spread(values: &[f64]) -> String {
    if values.is_empty() {
        return ms(f64::NAN);
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let bare = |v: f64| ms(v).trim_end_matches(" ms").to_string();
    format!("{} ({}–{})", ms(median(values)), bare(min), bare(max))
}

/// Installs playwright-core from bench/browser's lock file when it is missing.
fn ensure_playwright() -> Result<()> {
    if Path::new(BENCH_DIR)
        .join("node_modules/playwright-core")
        .exists()
    {
        return Ok(());
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(BENCH_DIR)
        .status()
        .context("running npm ci in bench/browser")?;
    if !status.success() {
        bail!("`npm ci` in bench/browser failed ({status})");
    }
    Ok(())
}

/// One row of the browser table, as the harness wants it.
struct Row<'a> {
    name: &'a str,
    target: String,
    /// The argument of the first call (none: no call).
    arg: Option<i32>,
    expected: Option<String>,
    /// Modules to add to IndexedDB for this row.
    files: &'a [PathBuf],
    /// The modules compiled from memory, in instantiation order.
    closure: Vec<PathBuf>,
    /// `linkcache:global` values for the hand-linked side.
    globals: BTreeMap<String, String>,
    /// Embedder import namespaces to fill with stubs.
    stubs: &'a [&'a str],
}

impl Row<'_> {
    fn json(&self) -> Json {
        json!({
            "name": self.name,
            "target": self.target,
            "arg": self.arg,
            "expected": self.expected,
            "files": self.files,
            "closure": self.closure,
            "globals": self.globals,
            "stubs": self.stubs,
        })
    }
}

/// Runs the browser benchmark and returns its table and its chart.
pub fn run(target: &Path, quick: bool, runs: usize) -> Result<(Vec<Table>, Chart)> {
    let runs = if quick { runs } else { runs.max(MIN_RUNS) };
    let work = target.join("bench-browser");
    std::fs::create_dir_all(&work)?;
    eprintln!("  building the linkcache-web package (release)");
    let pkg = build_package(target)?;
    ensure_playwright()?;

    // A chain of 10 synthetic modules: its last module is a closure of 1, its first a
    // closure of 10.
    let params = Params {
        dup_permille: 0,
        ..Params::sized(10)
    };
    let mut files = Vec::new();
    for k in 0..params.modules {
        let path = work.join(format!("m{k}.wasm"));
        std::fs::write(&path, params.module_bytes(k, 0))?;
        files.push(path);
    }
    let globals = |from: usize| -> Result<BTreeMap<String, String>> {
        let mut globals = BTreeMap::new();
        for k in from..params.modules {
            let manifest = linkcache_core::analyze(&params.module_bytes(k, 0))?;
            for global in manifest.globals {
                globals.insert(
                    String::from(global.name),
                    String::from_utf8_lossy(&global.definition).into_owned(),
                );
            }
        }
        Ok(globals)
    };
    let arg = 10;
    let last = params.modules - 1;
    let mut rows = vec![
        Row {
            name: "synthetic, closure 1",
            target: Params::func_name(last, 0),
            arg: Some(arg),
            expected: Some(params.expected(last, 0, arg).to_string()),
            files: &files,
            closure: files[last..].to_vec(),
            globals: globals(last)?,
            stubs: &[],
        }
        .json(),
        Row {
            name: "synthetic, closure 10",
            target: Params::func_name(0, 0),
            arg: Some(arg),
            expected: Some(params.expected(0, 0, arg).to_string()),
            files: &[],
            closure: files.iter().rev().cloned().collect(),
            globals: globals(0)?,
            stubs: &[],
        }
        .json(),
    ];
    let mut sizes = BTreeMap::new();
    sizes.insert(
        "synthetic, closure 1".to_string(),
        std::fs::metadata(&files[last])?.len(),
    );
    sizes.insert(
        "synthetic, closure 10".to_string(),
        files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()))
            .sum::<std::io::Result<u64>>()?,
    );
    if !quick {
        eprintln!("  large modules");
        let regex: LargeModule = large::regex_payload(target)?;
        let sqljs = large::sqljs(target)?;
        for (module, arg, expected, stubs) in [
            (&regex, Some(7), Some("23".to_string()), vec![]),
            (&sqljs, None, None, vec!["a"]),
        ] {
            let name = module.name.clone();
            sizes.insert(name.clone(), std::fs::metadata(&module.wasm)?.len());
            rows.push(
                Row {
                    name: &name,
                    target: module.func.clone(),
                    arg,
                    expected,
                    files: std::slice::from_ref(&module.wasm),
                    closure: vec![module.wasm.clone()],
                    globals: BTreeMap::new(),
                    stubs: &stubs,
                }
                .json(),
            );
        }
    }
    let names: Vec<String> = rows
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let profile = work.join("profile");
    let warmup = work.join("warmup.wasm");
    std::fs::write(&warmup, workload::tiny_module("bench.warmup", 1))?;
    let spec = json!({
        "pkgDir": pkg,
        "warmup": warmup,
        "profileDir": profile,
        "runs": runs,
        "database": "linkcache-bench",
        "rows": rows,
    });
    let spec_path = work.join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)?;
    let output = Command::new("node")
        .arg(Path::new(BENCH_DIR).join("bench.mjs"))
        .arg(&spec_path)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running node bench/browser/bench.mjs")?;
    if !output.status.success() {
        bail!("the browser harness failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Json = serde_json::from_str(
        stdout
            .lines()
            .last()
            .context("the browser harness printed nothing")?,
    )?;

    // The values over the sessions of one side of a value picked from each session.
    let values_of = |side: &str, pick: &dyn Fn(&serde_json::Value) -> Option<f64>| -> Vec<f64> {
        result[side]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(pick)
            .collect()
    };
    let lc =
        |name: &str, key: &str| median(&values_of("linkcache", &|s| s["rows"][name][key].as_f64()));
    let lc_total = |name: &str| {
        values_of("linkcache", &|s| {
            let r = &s["rows"][name];
            let call = r["callMs"].as_f64().unwrap_or(0.0);
            Some(r["openMs"].as_f64()? + r["targetMs"].as_f64()? + call)
        })
    };
    let mem =
        |name: &str, key: &str| median(&values_of("memory", &|s| s["rows"][name][key].as_f64()));
    // The memory side's and the floor's totals: load (compile + instantiate) and call.
    let load_total = |side: &str, name: &str| {
        values_of(side, &|s| {
            let r = &s["rows"][name];
            Some(r["loadMs"].as_f64()? + r["callMs"].as_f64().unwrap_or(0.0))
        })
    };

    let mut table = Table::new(
        "(5) Browser: warm `target()` from IndexedDB against compiling from memory",
        &[
            "module",
            "bytes",
            "`LinkCache.open`",
            "`target()`",
            "first call",
            "linkcache total (min–max)",
            "compile + instantiate from memory (+ call) (min–max)",
            "of which compiling (every `WebAssembly.compile` at once)",
            "floor: raw IndexedDB (min–max)",
            "linkcache ÷ memory",
            "floor ÷ memory",
            "linkcache ÷ floor",
        ],
    );
    let mut groups = Vec::new();
    for name in &names {
        let (total, memory, floor) = (
            lc_total(name),
            load_total("memory", name),
            load_total("floors", name),
        );
        groups.push(Group {
            name: name.clone(),
            values: vec![median(&total), median(&floor), median(&memory)],
        });
        table.row(vec![
            name.clone(),
            count(sizes.get(name).copied().unwrap_or(0) as usize),
            ms(lc(name, "openMs")),
            ms(lc(name, "targetMs")),
            ms(lc(name, "callMs")),
            spread(&total),
            spread(&memory),
            ms(mem(name, "compileMs")),
            spread(&floor),
            ratio(median(&total), median(&memory)),
            ratio(median(&floor), median(&memory)),
            ratio(median(&total), median(&floor)),
        ]);
    }
    // The package's own load, beside the rows: once per fresh browser or tab.
    let pkg_size = std::fs::metadata(pkg.join("linkcache_web_bg.wasm"))
        .map(|m| m.len())
        .unwrap_or(0);
    for (side, label) in [
        (
            "packageCold",
            "linkcache-web package itself (`import` + `init()`), HTTP cache cleared",
        ),
        (
            "packageWarm",
            "linkcache-web package itself (`import` + `init()`), from the HTTP cache",
        ),
    ] {
        let mut row = vec![label.to_string(), count(pkg_size as usize)];
        row.extend(["–"; 3].map(String::from));
        row.push(spread(&values_of(side, &|s| s["loadMs"].as_f64())));
        row.extend(["–"; 6].map(String::from));
        table.row(row);
    }
    // How many loads of each kind fetched the wasm over the network (`transferSize` > 0).
    let fetched = |side: &str| {
        let sizes = values_of(side, &|s| s["transferSize"].as_f64());
        let fetched = sizes.iter().filter(|size| **size > 0.0).count();
        (fetched, sizes.len())
    };
    let (cold_fetched, cold_loads) = fetched("packageCold");
    let (warm_fetched, warm_loads) = fetched("packageWarm");
    let warm_cached = warm_loads - warm_fetched;
    let session_median = |side: &str, key: &str| median(&values_of(side, &|s| s[key].as_f64()));
    table.note(format!(
        "{} (playwright-core), medians (min–max) of {runs} runs; every measurement is a fresh \
         browser process on one persistent profile, one row per process. linkcache-web side: \
         `LinkCache.open`, `target()`, one call (IndexedDB filled by an earlier session; \
         the package compiles the closure from its stored bytes). Memory side: the same \
         bytes, fetched before the clock starts, every `WebAssembly.compile` started at \
         once (as linkcache-web compiles a plan), instantiated in order and linked by hand, \
         one call. Floor: what no IndexedDB-backed cache avoids, after the same warm-up as \
         linkcache-web's: `indexedDB.open`, one read-only transaction with the target's \
         `by_function` lookup and the closure's bytes by key (the ids known in advance), \
         then the memory side's compiles, instances and call. The three sides rotate. \
         Timings are \
         `performance.now()` in a cross-origin-isolated page. The last two rows: loading \
         the release package itself ({} KB of wasm, built as `cargo xtask web-pkg \
         --release` builds it), paid once per fresh tab, in a browser process of its own, \
         with the HTTP cache cleared first (the wasm came over the network in \
         {cold_fetched} of {cold_loads}) and with the package in the HTTP cache (served from \
         it in {warm_cached} of {warm_loads}); they alternate too. Before \
         its clock starts each side of a row warms up on an unrelated one-function module, \
         which takes {} with linkcache-web (the first IndexedDB access of a fresh browser) \
         and {} from memory (the tab's first wasm compilation).",
        result["browserVersion"]
            .as_str()
            .map(|v| format!("Chromium {v}"))
            .unwrap_or_else(|| "Chromium".into()),
        pkg_size / 1000,
        ms(session_median("linkcache", "warmupMs")),
        ms(session_median("memory", "warmupMs")),
    ));
    let chart = Chart {
        file: "browser.svg".into(),
        title: "The browser: linkcache-web from IndexedDB against compiling from memory".into(),
        plot: Plot::Bars {
            value_label: format!("time, median of {runs} fresh browsers (log scale)"),
            series: vec![
                "linkcache-web: open + target() + call".into(),
                "floor: raw IndexedDB read + compile + instantiate + call".into(),
                "compile + instantiate from memory + call".into(),
            ],
            groups,
            log: true,
            format: ms,
        },
    };
    Ok((vec![table], chart))
}
