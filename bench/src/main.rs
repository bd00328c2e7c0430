//! linkcache's benchmark suite: what the cache saves and how it scales, each comparison
//! measured in one run, ratios printed beside the times (this machine is noisy).
//!
//! ```text
//! cargo run --release -p linkcache-bench -- [--quick] [--only SECTION] [--runs N] [--out DIR]
//! ```
//!
//! Sections: `target` (warm target() + first call in a fresh process), `partial`
//! (partial load against loading every module), `large` (a second process's load of a
//! large module: linkcache against Module::new and wasmtime's own cache), `open`
//! (Cache::open against cache size), `add` (add_module throughput, 8 processes at once),
//! `embedders` (calls/s per store, a store per request), `analysis` (`analyze` against
//! wasmparser's `validate_all` of the same bytes), `browser` (headless Chromium:
//! IndexedDB against compiling from memory). The report
//! goes to stdout and to `<target>/bench-report.md` (`--out DIR`: `DIR/bench-report.md`),
//! its charts beside it in `bench-charts/` as SVG; a full run (no `--quick`, no `--only`,
//! no `--out`) also copies the charts into `bench/charts/`, which BENCHMARKS.md embeds.
//! `--quick` uses small sizes and a synthetic large module; CI runs it as a smoke test,
//! never asserting times.
//!
//! Fresh-process measurements re-execute this binary with `--role NAME ...` (see
//! [`roles`]); the child times itself and prints JSON.

mod analysis;
mod browser;
mod charts;
mod commit_path;
mod embedders;
mod large;
mod remote;
mod report;
mod roles;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use linkcache_native::{Cache, DirStore};
use serde_json::Value as Json;
use wasmtime::error::Context as _;
use wasmtime::{Result, bail};

use crate::charts::{Chart, Group, Plot, Series};
use crate::large::{ImportStubs, LargeModule};
use crate::report::{Table, count, median, ms, ratio};
use crate::workload::{Params, Prepared};

/// One section of the report: its tables.
type Section = fn(&mut Bench) -> Result<Vec<Table>>;

const SECTIONS: [&str; 9] = [
    "target",
    "partial",
    "large",
    "open",
    "add",
    "embedders",
    "analysis",
    "remote",
    "browser",
];

struct Options {
    quick: bool,
    only: Option<String>,
    runs: Option<usize>,
    /// Where the report and its charts go (default: the target directory).
    out: Option<PathBuf>,
}

impl Options {
    fn wants(&self, section: &str) -> bool {
        match &self.only {
            Some(only) => only == section,
            None => section != "browser" || !self.quick,
        }
    }

    fn runs(&self, full: usize) -> usize {
        self.runs.unwrap_or(if self.quick { 3 } else { full })
    }

    fn sizes(&self) -> Vec<usize> {
        if self.quick {
            vec![10, 100]
        } else {
            vec![10, 100, 1_000, 10_000]
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--role") {
        return match roles::run(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match parse_options(&args).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linkcache-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut options = Options {
        quick: false,
        only: None,
        runs: None,
        out: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--only" => {
                let section = args.next().context("--only needs a section name")?;
                if !SECTIONS.contains(&section.as_str()) {
                    bail!("unknown section `{section}`; one of {SECTIONS:?}");
                }
                options.only = Some(section.clone());
            }
            "--runs" => {
                options.runs = Some(args.next().context("--runs needs a number")?.parse()?);
            }
            "--out" => {
                options.out = Some(args.next().context("--out needs a directory")?.into());
            }
            "-h" | "--help" => {
                println!(
                    "usage: linkcache-bench [--quick] [--only {}] [--runs N] [--out DIR]",
                    SECTIONS.join("|")
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    Ok(options)
}

/// The workspace's target directory.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

fn run(options: Options) -> Result<()> {
    let started = Instant::now();
    let target = target_dir();
    let target = target.canonicalize().unwrap_or(target);
    let caches = target.join("bench-caches");
    std::fs::create_dir_all(&caches)?;
    if cfg!(debug_assertions) && !options.quick {
        eprintln!("warning: a debug build; timings are meaningless (use --release)");
    }

    let mut out = String::from("# linkcache benchmarks\n\n");
    out.push_str(&report::machine());
    out.push_str(&format!(
        "- command: `cargo run --release -p linkcache-bench --{}{}`\n\n",
        if options.quick { " --quick" } else { "" },
        options
            .only
            .as_ref()
            .map(|s| format!(" --only {s}"))
            .unwrap_or_default()
    ));
    if cfg!(debug_assertions) {
        out.push_str("**Debug build: the times below mean nothing.**\n\n");
    }
    print!("{out}");

    let out_dir = options.out.clone().unwrap_or_else(|| target.clone());
    std::fs::create_dir_all(&out_dir)?;
    let chart_dir = out_dir.join("bench-charts");
    let caption = report::caption();
    let full_run = !options.quick && options.only.is_none() && options.out.is_none();
    let mut bench = Bench {
        options,
        target,
        caches,
        prepared: BTreeMap::new(),
        fresh: None,
        charts: Vec::new(),
    };
    let sections: [(&str, Section); 9] = [
        ("target", Bench::section_target),
        ("partial", Bench::section_partial),
        ("large", Bench::section_large),
        ("open", Bench::section_open),
        ("add", Bench::section_add),
        ("embedders", Bench::section_embedders),
        ("analysis", Bench::section_analysis),
        ("remote", Bench::section_remote),
        ("browser", Bench::section_browser),
    ];
    let mut failed = Vec::new();
    for (name, section) in sections {
        if !bench.options.wants(name) {
            continue;
        }
        eprintln!("==> {name}");
        let text = match section(&mut bench) {
            Ok(tables) => {
                let mut text = tables.iter().map(Table::render).collect::<String>();
                for chart in bench.charts.drain(..) {
                    text.push_str(&chart.write(&chart_dir, &caption)?);
                }
                text
            }
            Err(e) => {
                failed.push(name);
                bench.charts.clear();
                format!("### {name}\n\n**Failed:** {e:#}\n\n")
            }
        };
        print!("{text}");
        out.push_str(&text);
    }
    out.push_str(&format!(
        "_Whole run: {:.0} s._\n",
        started.elapsed().as_secs_f64()
    ));
    let path = out_dir.join("bench-report.md");
    std::fs::write(&path, &out)?;
    eprintln!("report written to {}", path.display());
    if full_run && failed.is_empty() {
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts");
        std::fs::create_dir_all(&committed)?;
        for entry in std::fs::read_dir(&chart_dir)? {
            let entry = entry?;
            std::fs::copy(entry.path(), committed.join(entry.file_name()))?;
        }
        eprintln!(
            "charts copied to {} (BENCHMARKS.md embeds them)",
            committed.display()
        );
    }
    if !failed.is_empty() {
        bail!("sections failed: {failed:?}");
    }
    Ok(())
}

/// Medians of one fresh-process measurement per (cache size, closure).
#[derive(Clone, Debug, Default)]
struct Fresh {
    target: f64,
    call: f64,
    target_call: f64,
    wall: f64,
    loaded: u64,
}

struct Bench {
    options: Options,
    target: PathBuf,
    caches: PathBuf,
    prepared: BTreeMap<usize, Prepared>,
    fresh: Option<BTreeMap<(usize, usize), Fresh>>,
    /// Charts of the section running now, written after its tables.
    charts: Vec<Chart>,
}

/// The closures measured: one module, and a chain of ten.
const CLOSURES: [usize; 2] = [1, 10];
/// The budget every synthetic call runs with: 2^10 calls, through the whole closure.
const CALL_ARG: i32 = 10;

fn field(json: &Json, key: &str) -> f64 {
    json[key].as_f64().unwrap_or(f64::NAN)
}

fn medians(runs: &[Json], key: &str) -> f64 {
    median(&runs.iter().map(|r| field(r, key)).collect::<Vec<_>>())
}

impl Bench {
    fn section_remote(&mut self) -> Result<Vec<Table>> {
        let runs = self.options.runs(7);
        remote::section(&self.caches.join("remote"), self.large_modules()?, runs)
    }

    fn section_embedders(&mut self) -> Result<Vec<Table>> {
        let runs = self.options.runs(7);
        embedders::section(&self.caches.join("embedders"), self.options.quick, runs)
    }

    fn prepare(&mut self, size: usize) -> Result<Prepared> {
        if let Some(prepared) = self.prepared.get(&size) {
            return Ok(prepared.clone());
        }
        let params = Params::sized(size);
        eprintln!("  cache of {} modules ({})", count(size), params.key());
        let prepared = workload::prepare(&self.caches, params)?;
        self.prepared.insert(size, prepared.clone());
        Ok(prepared)
    }

    /// The arguments of a `warm-target` or `load-all` child for a closure.
    fn target_args(prepared: &Prepared, closure: usize) -> Result<Vec<String>> {
        let (func, k) = prepared
            .params
            .target_with_closure(closure)
            .with_context(|| format!("no closure of {closure} modules"))?;
        Ok(vec![
            prepared.dir.display().to_string(),
            func,
            CALL_ARG.to_string(),
            prepared.params.expected(k, 0, CALL_ARG).to_string(),
        ])
    }

    /// Runs every warm-target child once per round, interleaved, and keeps medians.
    fn fresh(&mut self) -> Result<BTreeMap<(usize, usize), Fresh>> {
        if let Some(fresh) = &self.fresh {
            return Ok(fresh.clone());
        }
        let mut jobs = Vec::new();
        for size in self.options.sizes() {
            let prepared = self.prepare(size)?;
            for closure in CLOSURES {
                let args = Bench::target_args(&prepared, closure)?;
                // Warm the page cache (and check the result) before measuring.
                roles::spawn("warm-target", &args)?;
                jobs.push(((size, closure), args));
            }
        }
        let runs = self.options.runs(11);
        let mut results: BTreeMap<(usize, usize), Vec<Json>> = BTreeMap::new();
        for round in 0..runs {
            eprintln!("  fresh-process targets, round {}/{runs}", round + 1);
            for (key, args) in &jobs {
                let mut json = roles::spawn("warm-target", args)?;
                json["target_call_ms"] =
                    (field(&json, "target_ms") + field(&json, "call_ms")).into();
                results.entry(*key).or_default().push(json);
            }
        }
        let fresh: BTreeMap<_, _> = results
            .into_iter()
            .map(|(key, runs)| {
                let fresh = Fresh {
                    target: medians(&runs, "target_ms"),
                    call: medians(&runs, "call_ms"),
                    target_call: medians(&runs, "target_call_ms"),
                    wall: medians(&runs, "wall_ms"),
                    loaded: runs[0]["modules_loaded"].as_u64().unwrap_or(0),
                };
                (key, fresh)
            })
            .collect();
        self.fresh = Some(fresh.clone());
        Ok(fresh)
    }

    fn section_target(&mut self) -> Result<Vec<Table>> {
        let fresh = self.fresh()?;
        let runs = self.options.runs(11);
        let mut table = Table::new(
            "(1) Warm `target()` + first call, in a fresh process",
            &[
                "cache (modules)",
                "closure",
                "target()",
                "first call",
                "target + call",
                "vs 10-module cache",
                "modules loaded",
                "process, spawn to exit",
            ],
        );
        let smallest = self.options.sizes()[0];
        for ((size, closure), f) in &fresh {
            let total = self.prepared[size].total_modules;
            let base = &fresh[&(smallest, *closure)];
            table.row(vec![
                format!("{} ({})", count(*size), count(total)),
                closure.to_string(),
                ms(f.target),
                ms(f.call),
                ms(f.target_call),
                ratio(f.target_call, base.target_call),
                f.loaded.to_string(),
                ms(f.wall),
            ]);
        }
        table.note(format!(
            "Medians of {runs} processes. Each child opens the cache (`Engine::new` and \
             `Cache::open`, not included above: see (4)), then times `target::<(i32,), i64>` \
             and one call with a budget of {CALL_ARG} ({} calls through the whole closure). \
             Cache size: distinct modules (with the duplicates in parentheses); {} functions \
             per module, fan-out {}, chains of {} modules, one global per function. The \
             warm cache holds every module's precompiled artifact.",
            1u64 << CALL_ARG,
            Params::sized(1).funcs,
            Params::sized(1).fan_out,
            Params::sized(1).depth
        ));

        let size = *self.options.sizes().last().expect("sizes");
        let prepared = self.prepare(size)?;
        let mut phases = Table::new(
            format!(
                "(1b) Where a warm `target()` spends its time ({} modules, fresh process)",
                count(size)
            ),
            &[
                "closure",
                "store questions",
                "plan, with index and manifest reads",
                "plan, answers from memory",
                "artifact checksums",
                "`deserialize_open_file`",
                "instantiation",
                "use markers, per module / per binding",
                "whole `target()`",
                "whole ÷ floor",
            ],
        );
        for closure in CLOSURES {
            let (func, _) = prepared
                .params
                .target_with_closure(closure)
                .context("closure")?;
            let args = vec![prepared.dir.display().to_string(), func];
            let results: Vec<Json> = (0..runs)
                .map(|_| roles::spawn("phases", &args))
                .collect::<Result<_>>()?;
            phases.row(vec![
                closure.to_string(),
                format!(
                    "{} ({} bound)",
                    results[0]["questions"],
                    plural(results[0]["bindings"].as_u64().unwrap_or(0), "function")
                ),
                ms(medians(&results, "plan_io_ms")),
                ms(medians(&results, "plan_cpu_ms")),
                ms(medians(&results, "artifacts_ms")),
                ms(medians(&results, "deserialize_ms")),
                ms(medians(&results, "instantiate_ms")),
                format!(
                    "{} / {}",
                    ms(medians(&results, "touch_once_ms")),
                    ms(medians(&results, "touch_per_binding_ms"))
                ),
                ms(medians(&results, "target_ms")),
                ratio(
                    medians(&results, "target_ms"),
                    medians(&results, "artifacts_ms")
                        + medians(&results, "deserialize_ms")
                        + medians(&results, "instantiate_ms"),
                ),
            ]);
        }
        phases.note(format!(
            "Each phase timed on its own with the public APIs, medians of {runs} processes: \
             `linkcache_core::plan` over the `DirStore` (store questions: candidate lists and \
             manifests it asked for, one planner round each), the same plan again answered \
             from memory (the planner's own CPU time), `DirStore::artifact` (directory checks, \
             one open without following links, owner and mode of the handle, XXH3-128 \
             through it) and `Module::deserialize_open_file` of that handle for each planned \
             module, their instantiation in a new store as the plan binds them (the floor \
             is these three: issue 15 asks for a whole target within 1.5× of it), \
             `DirStore::touch`; then a real `target_dynamic` on a new `Cache` in the same \
             process."
        ));
        Ok(vec![table, phases])
    }

    fn section_partial(&mut self) -> Result<Vec<Table>> {
        let fresh = self.fresh()?;
        let mut table = Table::new(
            "(2) Partial load against loading every module of the cache",
            &[
                "cache (modules)",
                "linkcache, closure 1",
                "linkcache, closure 10",
                "load everything",
                "modules loaded",
                "everything ÷ closure 10",
                "everything ÷ closure 1",
            ],
        );
        let mut notes = Vec::new();
        let mut lines: [Vec<(f64, f64)>; 3] = Default::default();
        for size in self.options.sizes() {
            let prepared = self.prepare(size)?;
            let args = Bench::target_args(&prepared, 10)?;
            roles::spawn("load-all", &args)?;
            let runs = self.options.runs(if size >= 10_000 { 3 } else { 5 });
            let mut all = Vec::new();
            for _ in 0..runs {
                let mut json = roles::spawn("load-all", &args)?;
                json["total_ms"] = (field(&json, "list_ms")
                    + field(&json, "load_ms")
                    + field(&json, "instantiate_ms")
                    + field(&json, "call_ms"))
                .into();
                all.push(json);
            }
            let everything = medians(&all, "total_ms");
            let one = fresh[&(size, 1)].target_call;
            let ten = fresh[&(size, 10)].target_call;
            for (line, value) in lines.iter_mut().zip([one, ten, everything]) {
                line.push((size as f64, value));
            }
            table.row(vec![
                format!("{} ({})", count(size), count(prepared.total_modules)),
                ms(one),
                ms(ten),
                ms(everything),
                count(all[0]["modules_loaded"].as_u64().unwrap_or(0) as usize),
                ratio(everything, ten),
                ratio(everything, one),
            ]);
            notes.push(format!(
                "{}: list {}, read manifests + checked artifacts + deserialize {}, instantiate {}, call {} ({runs} runs)",
                count(size),
                ms(medians(&all, "list_ms")),
                ms(medians(&all, "load_ms")),
                ms(medians(&all, "instantiate_ms")),
                ms(medians(&all, "call_ms")),
            ));
        }
        table.note(
            "Both in a fresh process, without `Engine::new`. \"Load everything\" is what a cache \
             without a dependency graph does: list the modules, read each one's manifest (for \
             its globals) and its checked artifact from the same directory, \
             `Module::deserialize_open_file`, instantiate all of them in import order, call the \
             function. Its phases, medians:",
        );
        for note in notes {
            table.note(format!("- {note}"));
        }
        let [one, ten, everything] = lines;
        self.charts.push(Chart {
            file: "cache-size.svg".into(),
            title: "Warm target() + first call against cache size, fresh process".into(),
            plot: Plot::Lines {
                x_label: "modules in the cache".into(),
                y_label: "time (log scale)".into(),
                series: vec![
                    Series {
                        name: "linkcache, closure of 1 module".into(),
                        points: one,
                    },
                    Series {
                        name: "linkcache, closure of 10 modules".into(),
                        points: ten,
                    },
                    Series {
                        name: "loading every module".into(),
                        points: everything,
                    },
                ],
            },
        });
        Ok(vec![table])
    }

    fn large_modules(&self) -> Result<Vec<(LargeModule, Vec<u8>)>> {
        let modules = if self.options.quick {
            let path = self.caches.join("synthetic-large.wasm");
            let tmp = self
                .caches
                .join(format!("synthetic-large.wasm.{}", std::process::id()));
            std::fs::write(&tmp, workload::synthetic_large(200))?;
            std::fs::rename(&tmp, &path)?;
            vec![LargeModule {
                name: "synthetic, 200 functions (--quick stand-in)".into(),
                wasm: path,
                func: Params::func_name(0, 0),
            }]
        } else {
            eprintln!("  building bench/payload for wasm32 (regex)");
            let regex = large::regex_payload(&self.target)?;
            eprintln!("  fetching sql.js with npm");
            let sqljs = large::sqljs(&self.target)?;
            vec![regex, sqljs]
        };
        modules
            .into_iter()
            .map(|m| {
                let bytes = std::fs::read(&m.wasm)
                    .with_context(|| format!("reading {}", m.wasm.display()))?;
                Ok((m, bytes))
            })
            .collect()
    }

    fn section_large(&mut self) -> Result<Vec<Table>> {
        let runs = self.options.runs(7);
        let mut cold = Table::new(
            "(3) A second process loads a large module",
            &[
                "module",
                "size",
                "`Module::new` (Cranelift)",
                "wasmtime cache",
                "linkcache `target()`",
                "`deserialize_file`, unchecked",
                "Module::new ÷ linkcache",
                "wasmtime cache ÷ linkcache",
            ],
        );
        let mut warm = Table::new(
            "(3b) The same load again in the same process (a warm process)",
            &[
                "module",
                "wasmtime cache",
                "linkcache, second `Cache` on the directory",
                "wasmtime cache ÷ linkcache",
            ],
        );
        let mut notes = Vec::new();
        let mut groups = Vec::new();
        for (module, bytes) in self.large_modules()? {
            let id = linkcache_core::ModuleId::of(&bytes);
            let base = self.caches.join(format!("large-{}", &id.to_string()[..16]));
            let dir = base.join("cache");
            let wt_cache = base.join("wasmtime-cache");
            eprintln!("  {}: {} bytes", module.name, count(bytes.len()));
            match linkcache_core::analyze(&bytes) {
                Ok(manifest) => notes.push(format!(
                    "- {}: `analyze` accepts it as it is: func_names: {} (its exported \
                     functions; non-function exports are ignored); embedder imports: {} (stub \
                     host functions returning zeros).",
                    module.name,
                    manifest.functions.len(),
                    manifest.embedder_imports().count()
                )),
                Err(e) => bail!("analyze rejects {}: {e}", module.name),
            }
            let stubs = ImportStubs::of(&bytes)?;
            {
                let stubs = stubs.clone();
                let cache = Cache::builder(&dir)
                    .linker(move |linker| stubs.define(linker))
                    .open()?;
                cache.add_module(&bytes)?;
                let t = Instant::now();
                cache.target_dynamic(&module.func)?;
                eprintln!(
                    "  {}: first load (compiles, stores the artifact) {}",
                    module.name,
                    ms(t.elapsed().as_secs_f64() * 1000.0)
                );
            }
            let artifact = roles::artifact_of(&dir, &bytes)?;
            let wasm = module.wasm.display().to_string();
            let lc_args = vec![dir.display().to_string(), wasm.clone(), module.func.clone()];
            let wt_args = vec![wasm.clone(), wt_cache.display().to_string()];
            let mmap_args = vec![wasm.clone(), artifact.display().to_string()];
            // Warm-ups: fill wasmtime's cache, the page cache.
            roles::spawn("large-wasmtime-cache", &wt_args)?;
            roles::spawn("large-wasmtime-cache", &wt_args)?;
            roles::spawn("large-linkcache", &lc_args)?;
            let mut results: BTreeMap<&str, Vec<Json>> = BTreeMap::new();
            for round in 0..runs {
                eprintln!("  {}: round {}/{runs}", module.name, round + 1);
                for (role, args) in [
                    ("large-compile", vec![wasm.clone()]),
                    ("large-wasmtime-cache", wt_args.clone()),
                    ("large-linkcache", lc_args.clone()),
                    ("large-mmap", mmap_args.clone()),
                ] {
                    results
                        .entry(role)
                        .or_default()
                        .push(roles::spawn(role, &args)?);
                }
            }
            let load = |role: &str| medians(&results[role], "load_ms");
            let (compile, wasmtime, linkcache, mmap) = (
                load("large-compile"),
                load("large-wasmtime-cache"),
                load("large-linkcache"),
                load("large-mmap"),
            );
            groups.push(Group {
                name: format!("{} ({} KB)", module.name, bytes.len() / 1000),
                values: vec![compile, wasmtime, linkcache, mmap],
            });
            cold.row(vec![
                module.name.clone(),
                format!("{} KB", bytes.len() / 1000),
                ms(compile),
                ms(wasmtime),
                ms(linkcache),
                ms(mmap),
                ratio(compile, linkcache),
                ratio(wasmtime, linkcache),
            ]);
            let (wt_warm, lc_warm) = (
                medians(&results["large-wasmtime-cache"], "warm_ms"),
                medians(&results["large-linkcache"], "warm_ms"),
            );
            warm.row(vec![
                module.name.clone(),
                ms(wt_warm),
                ms(lc_warm),
                ratio(wt_warm, lc_warm),
            ]);
            notes.push(format!(
                "- {}: artifact {} KB; linkcache reads {} KB per load; Module::new alone {}, \
                 instantiation {}; Engine::new with wasmtime's cache {}, without {}.",
                module.name,
                std::fs::metadata(&artifact)?.len() / 1000,
                results["large-linkcache"][0]["bytes_read"]
                    .as_u64()
                    .unwrap_or(0)
                    / 1000,
                ms(medians(&results["large-compile"], "compile_ms")),
                ms(medians(&results["large-compile"], "instantiate_ms")),
                ms(medians(&results["large-wasmtime-cache"], "engine_ms")),
                ms(medians(&results["large-linkcache"], "engine_ms")),
            ));
        }
        cold.note(format!(
            "Medians of {runs} fresh processes, each timing one load from the inside: get a \
             compiled module and instantiate it (the embedder's imports are stub host \
             functions). linkcache: `Cache::target_dynamic` of one export, which plans, checks \
             the artifact (directories, owner, mode, XXH3-128 through one handle), memory-maps \
             that handle (`Module::deserialize_open_file`) and instantiates. wasmtime cache: `Config::cache` on a directory filled by an \
             earlier process, then `Module::new` on the same bytes. `deserialize_file`, \
             unchecked: the artifact mapped with no checksum and no planning, for reference. \
             Engine creation is outside every timing."
        ));
        for note in notes {
            cold.note(note);
        }
        warm.note(
            "wasmtime's cache has no in-memory layer: a second `Module::new` in the same \
             process reads and decompresses the file again. linkcache's second `Cache` shares \
             the engine but not the first cache's modules, so it checks and maps the artifact again.",
        );
        self.charts.push(Chart {
            file: "large-module.svg".into(),
            title: "A large module's load in a second process".into(),
            plot: Plot::Bars {
                value_label: format!("time, median of {runs} processes (log scale)"),
                series: vec![
                    "Module::new (Cranelift)".into(),
                    "wasmtime's cache".into(),
                    "linkcache target()".into(),
                    "deserialize_file, unchecked (floor)".into(),
                ],
                groups,
                log: true,
                format: ms,
            },
        });
        Ok(vec![cold, warm])
    }

    fn section_open(&mut self) -> Result<Vec<Table>> {
        let runs = self.options.runs(11);
        let mut table = Table::new(
            "(4a) `Cache::open` against cache size",
            &[
                "cache (modules)",
                "`Cache::open`, fresh process",
                "`Engine::new`, fresh process",
                "`Cache::open`, warm process",
                "vs 10-module cache (fresh)",
            ],
        );
        let mut first = None;
        for size in self.options.sizes() {
            let prepared = self.prepare(size)?;
            let args = vec![prepared.dir.display().to_string()];
            let results: Vec<Json> = (0..runs)
                .map(|_| roles::spawn("open", &args))
                .collect::<Result<_>>()?;
            let engine = wasmtime::Engine::default();
            let mut warm = Vec::new();
            for _ in 0..50 {
                let t = Instant::now();
                let cache = Cache::builder(&prepared.dir)
                    .engine(engine.clone())
                    .open()?;
                warm.push(t.elapsed().as_secs_f64() * 1000.0);
                drop(cache);
            }
            let open = medians(&results, "open_ms");
            let base = *first.get_or_insert(open);
            table.row(vec![
                format!("{} ({})", count(size), count(prepared.total_modules)),
                ms(open),
                ms(medians(&results, "engine_ms")),
                ms(median(&warm)),
                ratio(open, base),
            ]);
        }
        table.note(format!(
            "`Cache::open` with an engine passed in (`CacheBuilder::engine`); `Engine::new` is \
             the default engine's creation, which `Cache::open(dir)` adds. Fresh process: \
             medians of {runs}; warm process: median of 50 opens."
        ));
        Ok(vec![table])
    }

    fn section_add(&mut self) -> Result<Vec<Table>> {
        let (per_process, shared) = if self.options.quick { (4, 2) } else { (40, 10) };
        let writers = 8;
        let total = writers * per_process + shared;
        let mut table = Table::new(
            "(4b) `add_module` throughput",
            &[
                "writers",
                "modules added (distinct)",
                "wall time",
                "modules/s",
                "ms per module per writer",
                "vs 1 writer",
            ],
        );
        let mut single = None;
        let mut groups = Vec::new();
        for n in [1, writers] {
            let dir = self.caches.join(format!("add-{n}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let per = if n == 1 { total - shared } else { per_process };
            let (results, wall) = roles::race_adders(&dir, n, per, shared)?;
            let added: u64 = results.iter().filter_map(|r| r["added"].as_u64()).sum();
            let store = DirStore::open(&dir)?;
            let distinct = store.modules()?.len();
            if distinct != total {
                bail!("{n} writers left {distinct} modules, expected {total}");
            }
            let problems = store.verify(|_| {})?;
            if !problems.is_empty() {
                bail!("{n} writers left a cache with problems: {problems:?}");
            }
            let rate = added as f64 / (wall / 1000.0);
            let base = *single.get_or_insert(rate);
            groups.push(Group {
                name: if n == 1 {
                    "1 writer process".to_string()
                } else {
                    format!("{n} writer processes")
                },
                values: vec![rate],
            });
            table.row(vec![
                n.to_string(),
                format!("{} ({})", count(added as usize), count(distinct)),
                ms(wall),
                format!("{rate:.0}"),
                ms(medians(&results, "add_ms") / (added as f64 / n as f64)),
                ratio(rate, base),
            ]);
            std::fs::remove_dir_all(&dir)?;
        }
        table.note(format!(
            "Each writer is a process adding new modules ({} functions each); with {writers} \
             writers, each adds {per_process} of its own plus the same {shared} shared ones \
             (racing on the same files). Modules are generated before the start signal; \
             `verify` finds no problem afterwards. Every commit writes the module's pack \
             (manifest and bytes) through a temporary file, appends one index record to \
             the writer's segment and makes both durable with one `syncfs` (see (4c)).",
            Params::sized(1).funcs
        ));
        let t = Instant::now();
        let fsync = measure_fsync(&self.caches)?;
        table.note(format!(
            "One 300-byte write + fsync + rename on this disk: {} (median of 20, {}).",
            ms(fsync),
            ms(t.elapsed().as_secs_f64() * 1000.0)
        ));
        let commit_table = if self.options.quick {
            commit_path::table(&self.caches, 2, 5)?
        } else {
            commit_path::table(&self.caches, 9, 30)?
        };
        self.charts.push(Chart {
            file: "add-throughput.svg".into(),
            title: "add_module throughput against concurrent writers".into(),
            plot: Plot::Bars {
                value_label: "modules committed per second, all writers together".into(),
                series: vec!["modules/s".into()],
                groups,
                log: false,
                format: |rate| format!("{rate:.0}/s"),
            },
        });
        Ok(vec![table, commit_table])
    }

    fn section_analysis(&mut self) -> Result<Vec<Table>> {
        let runs = self.options.runs(15);
        let mut inputs: Vec<analysis::Input> = self
            .large_modules()?
            .into_iter()
            .map(|(module, bytes)| analysis::Input {
                name: module.name,
                bytes,
            })
            .collect();
        if !self.options.quick {
            eprintln!("  fetching esbuild-wasm with npm");
            let esbuild = large::esbuild(&self.target)?;
            let bytes = std::fs::read(&esbuild.wasm)
                .with_context(|| format!("reading {}", esbuild.wasm.display()))?;
            inputs.push(analysis::Input {
                name: esbuild.name,
                bytes,
            });
        }
        inputs.push(analysis::all_indirect(if self.options.quick {
            1_000
        } else {
            10_000
        }));
        analysis::section(&inputs, runs)
    }

    fn section_browser(&mut self) -> Result<Vec<Table>> {
        let (tables, chart) = browser::run(&self.target, self.options.quick, self.options.runs(7))?;
        self.charts.push(chart);
        Ok(tables)
    }
}

/// `1 function`, `2 functions`.
fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The cost of one small durable write on the disk of the target directory.
fn measure_fsync(dir: &Path) -> Result<f64> {
    use std::io::Write;
    let mut times = Vec::new();
    for i in 0..20 {
        let path = dir.join(format!("fsync-probe-{i}"));
        let t = Instant::now();
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&[0u8; 300])?;
        file.sync_all()?;
        std::fs::rename(&path, dir.join("fsync-probe"))?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(dir.join("fsync-probe"));
    Ok(median(&times))
}
