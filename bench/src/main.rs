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
//!
//! This file parses the options and runs the sections; each section lives in a file of
//! its own: `fresh_process.rs` (1, 2), `large_section.rs` (3), `store_sections.rs` (4),
//! `browser.rs` (5), `embedders.rs` (6), `analysis.rs` (7), `remote.rs` (8).

mod analysis;
mod browser;
mod charts;
mod commit_path;
mod embedders;
mod fresh_process;
mod large;
mod large_section;
mod remote;
mod report;
mod roles;
mod store_sections;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde_json::Value as Json;
use wasmtime::error::Context as _;
use wasmtime::{Result, bail};

use crate::charts::Chart;
use crate::report::{Table, median};
use crate::workload::Prepared;

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
pub(crate) const CLOSURES: [usize; 2] = [1, 10];
/// The budget every synthetic call runs with: 2^10 calls, through the whole closure.
pub(crate) const CALL_ARG: i32 = 10;

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
