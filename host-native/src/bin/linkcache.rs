//! `linkcache`: inspect and maintain a linkcache directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use linkcache_native::core::{Bundle, BundleError, FuncSig, ImportKind, Manifest, ModuleId, Value};
use linkcache_native::{Access, Cache, DirStore, Error, Trust, default_dir};

const EXIT_CODES: &str = "Exit codes:
  0  success
  1  an error (bad usage, a bad file, an I/O error), or `verify` found problems
  2  `call`: the function is a miss (the message names the cause)";

#[derive(Parser)]
#[command(
    name = "linkcache",
    version,
    about = "Inspect and maintain a linkcache directory: a persistent cache of compiled WebAssembly",
    after_help = EXIT_CODES
)]
struct Cli {
    /// The cache directory [default: $LINKCACHE_DIR, else ~/.cache/linkcache]
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// A remote tier shared by many machines: redis://host:port[/db][?prefix=..&mode=read-only&trust=native],
    /// or `off` [default: $LINKCACHE_REMOTE]
    #[arg(long, global = true, value_name = "URL")]
    remote: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add modules (.wasm, or .wat text); print each ModuleId and the functions it defines.
    Add {
        /// The files to add.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Target a function and call it; arguments are parsed from its signature.
    #[command(after_help = EXIT_CODES)]
    Call {
        /// The func_name, e.g. `math.fib`.
        func: String,
        /// Arguments: integers, or floats for f32/f64 parameters.
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
        /// Print the load statistics as JSON on stderr.
        #[arg(long)]
        stats: bool,
    },
    /// List the functions in the cache and the modules defining them.
    Ls {
        /// Only functions defined by two modules or more.
        #[arg(long)]
        duplicates: bool,
    },
    /// Show a module (by id or unique id prefix) or a function (by func_name).
    Show {
        /// A ModuleId (or a unique prefix) or a func_name.
        what: String,
    },
    /// Cache-wide statistics: modules, functions, duplicates, size, artifacts, trust.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the function dependency graph, of the whole cache or of one function's closure.
    Graph {
        /// Only the closure of this function.
        func: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: GraphFormat,
    },
    /// Check every record; list the bad ones and exit 1 if there are any.
    #[command(after_help = EXIT_CODES)]
    Verify,
    /// Evict least recently used modules (whole) until the cache is at most SIZE.
    Gc {
        /// The size to shrink to: bytes, or with a K, M or G suffix (10M, 1G).
        #[arg(long, value_parser = parse_size)]
        max_size: u64,
    },
    /// Write a bundle of modules (every module, or those defining FUNCs) that either host imports.
    Export {
        /// The bundle file to write.
        file: PathBuf,
        /// Only modules defining these functions.
        funcs: Vec<String>,
    },
    /// Import a bundle written by `export` (or by the web host).
    Import {
        /// The bundle file.
        file: PathBuf,
    },
    /// Publish local modules to the remote tier (every module, or those given by id).
    Push {
        /// ModuleIds (or unique prefixes) to publish.
        modules: Vec<String>,
    },
    /// Fill the local cache from the remote tier: the closures of FUNCs, or of everything.
    Pull {
        /// The functions to fetch (with everything they call).
        funcs: Vec<String>,
        /// Every function the remote indexes.
        #[arg(long, conflicts_with = "funcs")]
        all: bool,
    },
}

/// The `--remote` option, read by every command that opens the cache.
static REMOTE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Opens the cache with the remote tier of `--remote` (else `$LINKCACHE_REMOTE`).
fn open_cache(dir: &Path) -> Result<Cache, Error> {
    let builder = Cache::builder(dir);
    match REMOTE.get().and_then(Option::as_deref) {
        Some(url) => builder.remote(url),
        None => builder,
    }
    .open()
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Text,
    Dot,
}

/// What ends the program: an error message (exit 1) or a miss (exit 2).
enum Failure {
    Error(String),
    Miss(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        match e {
            Error::Miss(miss) => Failure::Miss(format!("miss ({}): {miss}", miss.cause())),
            other => Failure::Error(other.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", usage_error_line(&e.render().to_string()));
            return ExitCode::from(1);
        }
    };
    let dir = cli.dir.clone().unwrap_or_else(default_dir);
    REMOTE.get_or_init(|| cli.remote.clone());
    match run(cli.command, &dir) {
        Ok(code) => code,
        Err(Failure::Error(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Miss(message)) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

/// clap's usage error as one line: its message without the usage and the hint that
/// follow, continuation lines joined. Exit code 2 belongs to misses, so a usage error
/// exits 1 like any other error.
fn usage_error_line(rendered: &str) -> String {
    let message = rendered.split("\n\n").next().unwrap_or(rendered);
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let line = if line.starts_with("error:") {
        line
    } else {
        format!("error: {line}")
    };
    format!("{line} (see --help)")
}

fn run(command: Command, dir: &Path) -> Result<ExitCode, Failure> {
    match command {
        Command::Add { files } => add(dir, &files),
        Command::Call { func, args, stats } => call(dir, &func, &args, stats),
        Command::Ls { duplicates } => ls(dir, duplicates),
        Command::Show { what } => show(dir, &what),
        Command::Stats { json } => stats(dir, json),
        Command::Graph { func, format } => graph(dir, func.as_deref(), format),
        Command::Verify => verify(dir),
        Command::Gc { max_size } => gc(dir, max_size),
        Command::Export { file, funcs } => export(dir, &file, &funcs),
        Command::Import { file } => import(dir, &file),
        Command::Push { modules } => push(dir, &modules),
        Command::Pull { funcs, all } => pull(dir, &funcs, all),
    }
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

fn store(dir: &Path) -> Result<DirStore, Failure> {
    Ok(DirStore::open(dir)?)
}

/// Modules `linkcache add` commits together.
const ADD_BATCH: usize = 256;

fn add(dir: &Path, files: &[PathBuf]) -> Result<ExitCode, Failure> {
    let cache = open_cache(dir)?;
    if let Access::ReadOnly(reason) = cache.dir().access() {
        return Err(Error::ReadOnly {
            dir: dir.to_path_buf(),
            reason: reason.clone(),
        }
        .into());
    }
    let bar = progress(files.len() as u64, "adding");
    if files.len() < 20 {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut failed = 0;
    // Files that read and analyze cleanly are committed in batches: one batch costs the
    // syncs of one commit (`Cache::add_modules`), whatever its number of modules.
    let mut batch: Vec<(&PathBuf, Vec<u8>)> = Vec::new();
    let commit = |batch: &mut Vec<(&PathBuf, Vec<u8>)>, failed: &mut usize| {
        let modules: Vec<&[u8]> = batch.iter().map(|(_, bytes)| bytes.as_slice()).collect();
        match cache.add_modules(&modules) {
            Ok(ids) => {
                for ((file, _), id) in batch.iter().zip(ids) {
                    bar.suspend(|| {
                        println!("{id} {}", file.display());
                        if let Ok(Ok(manifest)) = cache.dir().manifest(&id) {
                            for function in &manifest.functions {
                                println!("  {} {}", function.name, function.signature);
                            }
                        }
                    });
                }
            }
            Err(e) => {
                *failed += batch.len();
                for (file, _) in batch.iter() {
                    bar.suspend(|| eprintln!("error: {}: {e}", file.display()));
                }
            }
        }
        bar.inc(batch.len() as u64);
        batch.clear();
    };
    for file in files {
        let checked = std::fs::read(file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| module_bytes(file, bytes))
            .and_then(|bytes| match linkcache_native::core::analyze(&bytes) {
                Ok(_) => Ok(bytes),
                Err(e) => Err(Error::InvalidModule(e).to_string()),
            });
        match checked {
            Ok(bytes) => {
                batch.push((file, bytes));
                if batch.len() == ADD_BATCH {
                    commit(&mut batch, &mut failed);
                }
            }
            Err(e) => {
                failed += 1;
                bar.inc(1);
                bar.suspend(|| eprintln!("error: {}: {e}", file.display()));
            }
        }
    }
    if !batch.is_empty() {
        commit(&mut batch, &mut failed);
    }
    bar.finish_and_clear();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The wasm bytes of a file: binary wasm (the `\0asm` magic) goes to the cache as it
/// is; `.wat` files, files of other extensions, and `.wasm` files that hold text are
/// assembled; anything else goes to the cache, which rejects what is not wasm. Errors
/// are one line.
fn module_bytes(file: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let looks_like_text = || {
        std::str::from_utf8(&bytes)
            .is_ok_and(|text| text.trim_start().starts_with('(') || text.starts_with(";;"))
    };
    let is_text = !bytes.starts_with(b"\0asm")
        && (file.extension().is_none_or(|e| e != "wasm") || looks_like_text());
    if !is_text {
        return Ok(bytes);
    }
    wat::parse_bytes(&bytes)
        .map(|b| b.into_owned())
        .map_err(|e| format!("not valid WebAssembly text: {}", one_line_wat_error(&e)))
}

/// A `wat` error (a message, then ` --> file:line:col` and a snippet) as one line.
fn one_line_wat_error(error: &wat::Error) -> String {
    let text = error.to_string();
    let message = text.lines().next().unwrap_or("").trim();
    let at = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> "))
        .and_then(|place| {
            let (rest, column) = place.rsplit_once(':')?;
            let (_, line) = rest.rsplit_once(':')?;
            Some(format!(" (line {line}, column {column})"))
        });
    format!("{message}{}", at.unwrap_or_default())
}

fn call(dir: &Path, func: &str, args: &[String], print_stats: bool) -> Result<ExitCode, Failure> {
    let cache = open_cache(dir)?;
    let result = (|| {
        let target = cache.target_dynamic(func)?;
        let values = parse_args(func, &target.signature, args)?;
        cache.call(func, &values)
    })();
    if print_stats {
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&cache.stats()).expect("stats serialize")
        );
    }
    let results = result?;
    let text: Vec<String> = results.iter().map(Value::to_string).collect();
    println!("{}", text.join(" "));
    Ok(ExitCode::SUCCESS)
}

fn parse_args(func: &str, signature: &FuncSig, args: &[String]) -> Result<Vec<Value>, Error> {
    if args.len() != signature.params.len() {
        return Err(Error::BadArguments {
            function: func.into(),
            reason: format!(
                "it takes {} arguments ({signature}), got {}",
                signature.params.len(),
                args.len()
            ),
        });
    }
    args.iter()
        .zip(&signature.params)
        .map(|(arg, ty)| {
            Value::parse_literal(*ty, arg).ok_or_else(|| Error::BadArguments {
                function: func.into(),
                reason: format!("`{arg}` is not a {ty}"),
            })
        })
        .collect()
}

fn format_time(nanos: u64) -> String {
    // An entry ranked by the remote tier carries its rank (0, 1, …), not a clock time.
    if nanos < REMOTE_RANKS_BELOW {
        return format!("remote rank {nanos}");
    }
    let secs = Duration::from_nanos(nanos).as_secs();
    let time = UNIX_EPOCH + Duration::from_secs(secs);
    let age = time.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    match age {
        0..60 => format!("{age}s ago"),
        60..3600 => format!("{}m ago", age / 60),
        3600..86400 => format!("{}h ago", age / 3600),
        _ => format!("{}d ago", age / 86400),
    }
}

/// `committed_at` values below this (about eleven days after the Unix epoch, in
/// nanoseconds) are remote ranks: no clock reading of a commit is that small.
const REMOTE_RANKS_BELOW: u64 = 1_000_000_000_000_000;

fn ls(dir: &Path, duplicates: bool) -> Result<ExitCode, Failure> {
    let index = store(dir)?.index()?;
    for (func, entries) in &index {
        if duplicates && entries.len() < 2 {
            continue;
        }
        for (i, entry) in entries.iter().enumerate() {
            let name = if i == 0 { func.as_str() } else { "" };
            println!(
                "{name:40} {} {}",
                entry.module.short(),
                format_time(entry.committed_at)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The module named by a full id or a unique prefix.
fn find_module(store: &DirStore, what: &str) -> Result<Option<ModuleId>, Failure> {
    if what.len() < 4 || !what.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let matches: Vec<ModuleId> = store
        .modules()?
        .into_iter()
        .filter(|id| id.to_string().starts_with(&what.to_ascii_lowercase()))
        .collect();
    match matches.len() {
        0 => Ok(None),
        1 => Ok(Some(matches[0])),
        n => Err(Failure::Error(format!(
            "`{what}` is a prefix of {n} modules; give more digits"
        ))),
    }
}

fn show(dir: &Path, what: &str) -> Result<ExitCode, Failure> {
    let store = store(dir)?;
    if let Some(id) = find_module(&store, what)? {
        let manifest = store
            .manifest(&id)?
            .map_err(|reason| Failure::Error(format!("module {}: {reason}", id.short())))?;
        print_manifest(&manifest);
        let artifacts = module_artifacts(dir, &id);
        if artifacts.is_empty() {
            println!("  artifacts: none (the next load compiles it)");
        } else {
            println!("  artifacts:");
            for (engine, path, len) in artifacts {
                println!("    engine {engine}: {len} bytes {}", path.display());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut candidates = store.candidates(what)?;
    if candidates.is_empty() {
        return Err(Failure::Error(format!(
            "no module id or func_name `{what}` in the cache"
        )));
    }
    candidates.sort_by_key(|c| (c.committed_at, c.module));
    println!(
        "{what}: defined by {} module(s), in resolution order:",
        candidates.len()
    );
    for candidate in candidates {
        let state = match store.manifest(&candidate.module)? {
            Ok(m) => m
                .function(what)
                .map_or("manifest does not define it".into(), |f| {
                    f.signature.to_string()
                }),
            Err(reason) => format!("broken: {reason}"),
        };
        println!(
            "  {}  {}  {state}",
            candidate.module,
            format_time(candidate.committed_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The precompiled artifacts of module `id`, for every engine configuration:
/// `artifacts/<engine>/<ab>/<id>/<xxh3>.cwasm` (see the layout in `linkcache_native::dir`).
/// Listed, not checked: `verify` checks them.
fn module_artifacts(dir: &Path, id: &ModuleId) -> Vec<(String, PathBuf, u64)> {
    let hex = id.to_string();
    let mut found = Vec::new();
    for engine in std::fs::read_dir(dir.join("artifacts"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let module_dir = engine.path().join(&hex[..2]).join(&hex);
        for file in std::fs::read_dir(&module_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "cwasm") {
                let len = file.metadata().map_or(0, |m| m.len());
                found.push((engine.file_name().to_string_lossy().into_owned(), path, len));
            }
        }
    }
    found.sort();
    found
}

fn print_manifest(manifest: &Manifest) {
    println!("module {}", manifest.module);
    println!("  size {} bytes", manifest.byte_len);
    println!("  functions:");
    for f in &manifest.functions {
        println!("    {} {}", f.name, f.signature);
        for call in &f.calls {
            println!("      calls {call}");
        }
        for global in &f.globals {
            println!("      uses global {global}");
        }
    }
    if !manifest.imports.is_empty() {
        println!("  imports:");
        for import in &manifest.imports {
            let kind = match &import.kind {
                ImportKind::Func(signature) => format!("func {signature}"),
                ImportKind::Global { ty, mutable: true } => format!("global mut {ty}"),
                ImportKind::Global { ty, mutable: false } => format!("global {ty}"),
                ImportKind::Memory => "memory".into(),
                ImportKind::Table => "table".into(),
                ImportKind::Tag => "tag".into(),
            };
            println!("    {} {}: {kind}", import.namespace, import.name);
        }
    }
    for global in &manifest.globals {
        println!(
            "  global {} {}{} = {:?}",
            global.name,
            if global.mutable { "mut " } else { "" },
            global.ty,
            String::from_utf8_lossy(&global.definition)
        );
    }
}

#[derive(serde::Serialize)]
struct CacheStats {
    dir: String,
    modules: usize,
    functions: usize,
    duplicated_functions: usize,
    total_bytes: u64,
    artifacts_by_engine: BTreeMap<String, usize>,
    precompiled_trusted: bool,
    untrusted_reason: Option<String>,
    read_only: Option<String>,
    /// Whether the remote tier answered a probe just now.
    remote_reachable: Option<bool>,
    /// The remote tier's configuration, and what this process did with it.
    remote: Option<linkcache_native::RemoteStats>,
}

fn stats(dir: &Path, json: bool) -> Result<ExitCode, Failure> {
    let store = store(dir)?;
    let cache = open_cache(dir)?;
    let remote_reachable = cache.probe_remote();
    let index = store.index()?;
    let mut artifacts_by_engine = BTreeMap::new();
    if let Ok(engines) = std::fs::read_dir(dir.join("artifacts")) {
        for engine in engines.flatten() {
            let count = count_files(&engine.path());
            artifacts_by_engine.insert(engine.file_name().to_string_lossy().into_owned(), count);
        }
    }
    let trust = store.trust();
    let stats = CacheStats {
        dir: dir.display().to_string(),
        modules: store.modules()?.len(),
        functions: index.len(),
        duplicated_functions: index.values().filter(|e| e.len() > 1).count(),
        total_bytes: store.size()?,
        artifacts_by_engine,
        precompiled_trusted: trust == Trust::Trusted,
        untrusted_reason: match trust {
            Trust::Untrusted(reason) => Some(reason),
            Trust::Trusted => None,
        },
        read_only: match store.access() {
            Access::ReadOnly(reason) => Some(reason.clone()),
            Access::ReadWrite => None,
        },
        remote_reachable,
        remote: cache.stats().remote,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&stats).expect("stats serialize")
        );
    } else {
        println!("cache      {}", stats.dir);
        println!("modules    {}", stats.modules);
        println!(
            "functions  {} ({} with duplicates)",
            stats.functions, stats.duplicated_functions
        );
        println!("size       {} bytes", stats.total_bytes);
        for (engine, count) in &stats.artifacts_by_engine {
            println!("artifacts  {count} for {engine}");
        }
        match &stats.untrusted_reason {
            None => println!("precompiled code trusted"),
            Some(reason) => println!("precompiled code NOT trusted: {reason}"),
        }
        if let Some(reason) = &stats.read_only {
            println!("read-only  {reason}");
        }
        match (&stats.remote, stats.remote_reachable) {
            (Some(remote), Some(reachable)) => {
                println!(
                    "remote     {} ({}, trust {}{}), {}",
                    remote.url,
                    remote.mode,
                    remote.trust,
                    if remote.signed { ", signed" } else { "" },
                    if reachable {
                        "reachable"
                    } else {
                        "NOT reachable"
                    }
                );
                println!(
                    "remote     {} lookups, {} hits, {} misses, {} errors, {} timeouts, \
                     {} corrupt, {} round trips",
                    remote.lookups,
                    remote.hits,
                    remote.misses,
                    remote.errors,
                    remote.timeouts,
                    remote.corrupt,
                    remote.round_trips
                );
            }
            _ => println!("remote     none (--remote, $LINKCACHE_REMOTE)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn push(dir: &Path, modules: &[String]) -> Result<ExitCode, Failure> {
    let cache = open_cache(dir)?;
    let ids = if modules.is_empty() {
        cache.dir().modules_in_commit_order()?
    } else {
        let all = cache.dir().modules()?;
        modules
            .iter()
            .map(|prefix| unique_module(&all, prefix))
            .collect::<Result<Vec<_>, _>>()?
    };
    let bar = progress(ids.len() as u64, "pushing");
    let report = cache.push_remote(Some(&ids), |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    println!(
        "pushed {} module(s), {} failed, {} duplicate winner(s) learnt from the remote",
        report.published, report.failed, report.adopted
    );
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: the remote did not take every module; run `linkcache push` again");
        ExitCode::from(1)
    })
}

/// The module a unique id prefix names.
fn unique_module(all: &[ModuleId], prefix: &str) -> Result<ModuleId, Failure> {
    let matching: Vec<&ModuleId> = all
        .iter()
        .filter(|id| id.to_string().starts_with(prefix))
        .collect();
    match matching.as_slice() {
        [one] => Ok(**one),
        [] => Err(Failure::Error(format!(
            "no cached module has the id `{prefix}`"
        ))),
        _ => Err(Failure::Error(format!(
            "`{prefix}` is the prefix of {} modules' ids",
            matching.len()
        ))),
    }
}

fn pull(dir: &Path, funcs: &[String], all: bool) -> Result<ExitCode, Failure> {
    if funcs.is_empty() && !all {
        return Err(Failure::Error(
            "name the functions to pull, or pass --all".into(),
        ));
    }
    let cache = open_cache(dir)?;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} {pos} function(s) {elapsed}").expect("valid template"),
    );
    bar.set_message("pulling");
    let names = (!all).then_some(funcs);
    let report = cache.pull_remote(names, |_| bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "pulled {} module(s) for {} function(s): {} already local, {} not on the remote",
        report.modules_fetched, report.functions, report.already_local, report.missing
    );
    Ok(ExitCode::SUCCESS)
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn graph(dir: &Path, func: Option<&str>, format: GraphFormat) -> Result<ExitCode, Failure> {
    let store = store(dir)?;
    // Each function's first intact definition (resolution order) and its calls.
    let mut defs: BTreeMap<String, (ModuleId, Vec<String>)> = BTreeMap::new();
    let resolve = |name: &str| -> Result<Option<(ModuleId, Vec<String>)>, Failure> {
        let mut candidates = store.candidates(name)?;
        candidates.sort_by_key(|c| (c.committed_at, c.module));
        for candidate in candidates {
            if let Ok(manifest) = store.manifest(&candidate.module)?
                && let Some(f) = manifest.function(name)
            {
                return Ok(Some((
                    candidate.module,
                    f.calls.iter().map(String::from).collect(),
                )));
            }
        }
        Ok(None)
    };
    let mut queue: Vec<String> = match func {
        Some(f) => vec![f.to_string()],
        None => store.index()?.into_keys().collect(),
    };
    let mut seen = BTreeSet::new();
    while let Some(name) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some((module, calls)) = resolve(&name)? {
            queue.extend(calls.iter().cloned());
            defs.insert(name, (module, calls));
        }
    }
    if let Some(f) = func
        && !defs.contains_key(f)
    {
        return Err(Failure::Error(format!("no cached module defines `{f}`")));
    }
    match format {
        GraphFormat::Text => {
            for (name, (module, calls)) in &defs {
                println!("{name} [{}]", module.short());
                for call in calls {
                    let mark = if defs.contains_key(call) {
                        ""
                    } else {
                        " (missing)"
                    };
                    println!("  -> {call}{mark}");
                }
            }
        }
        GraphFormat::Dot => {
            println!("digraph linkcache {{");
            println!("  rankdir=LR; node [shape=box];");
            let mut by_module: BTreeMap<ModuleId, Vec<&String>> = BTreeMap::new();
            for (name, (module, _)) in &defs {
                by_module.entry(*module).or_default().push(name);
            }
            for (module, names) in &by_module {
                println!(
                    "  subgraph \"cluster_{}\" {{ label=\"{}\";",
                    module,
                    module.short()
                );
                for name in names {
                    println!("    \"{name}\";");
                }
                println!("  }}");
            }
            for (name, (_, calls)) in &defs {
                for call in calls {
                    println!("  \"{name}\" -> \"{call}\";");
                }
            }
            println!("}}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &Path) -> Result<ExitCode, Failure> {
    let store = store(dir)?;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} verifying {pos} records").expect("valid template"),
    );
    let mut checked = 0u64;
    let problems = store.verify(|_| {
        checked += 1;
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    if problems.is_empty() {
        println!("ok: {checked} records checked");
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        println!("{}: {}", problem.path.display(), problem.reason);
    }
    eprintln!("{} problem(s) in {checked} records", problems.len());
    Ok(ExitCode::from(1))
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (like 500K, 10M, 1G)"))?;
    let factor = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use K, M or G)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large (at most {} bytes)", u64::MAX))
}

fn gc(dir: &Path, max_size: u64) -> Result<ExitCode, Failure> {
    let cache = open_cache(dir)?;
    let modules = cache.dir().modules()?.len() as u64;
    let bar = progress(modules, "evicting");
    let report = cache.gc(max_size, |_| bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "evicted {} module(s), removed {} leftover file(s) and {} artifact(s) of other \
         engine configurations, freed {} bytes, {} bytes remain (limit {max_size})",
        report.evicted.len(),
        report.leftovers_removed,
        report.other_engine_artifacts_removed,
        report.freed,
        report.remaining
    );
    Ok(ExitCode::SUCCESS)
}

fn export(dir: &Path, file: &Path, funcs: &[String]) -> Result<ExitCode, Failure> {
    let cache = open_cache(dir)?;
    let modules = if funcs.is_empty() {
        None
    } else {
        let mut ids = BTreeSet::new();
        for func in funcs {
            let candidates = cache.dir().candidates(func)?;
            if candidates.is_empty() {
                return Err(Failure::Error(format!("no cached module defines `{func}`")));
            }
            ids.extend(candidates.into_iter().map(|c| c.module));
        }
        Some(ids.into_iter().collect::<Vec<_>>())
    };
    let bundle = cache.export_bundle(modules.as_deref())?;
    std::fs::write(file, bundle.encode())
        .map_err(|e| Failure::Error(format!("{}: {e}", file.display())))?;
    println!(
        "exported {} module(s) to {}",
        bundle.modules.len(),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn import(dir: &Path, file: &Path) -> Result<ExitCode, Failure> {
    let cache = open_cache(dir)?;
    let in_file = |e: Error| Failure::Error(format!("{}: {e}", file.display()));
    let bytes =
        std::fs::read(file).map_err(|e| Failure::Error(format!("{}: {e}", file.display())))?;
    let bundle = Bundle::decode(&bytes).map_err(|e| in_file(e.into()))?;
    // Check every module before committing any, as `Cache::import_bundle` does, then
    // import them one at a time through it so that the bar can move.
    let bar = progress(bundle.modules.len() as u64, "checking");
    for (index, module) in bundle.modules.iter().enumerate() {
        module
            .manifest
            .check_against(&module.wasm)
            .map_err(|reason| in_file(BundleError::Mismatch { index, reason }.into()))?;
        bar.inc(1);
    }
    bar.reset();
    bar.set_message("importing");
    let mut imported = 0;
    for module in bundle.modules {
        let one = Bundle {
            modules: vec![module],
        };
        imported += cache.import_bundle(&one.encode()).map_err(in_file)?.len();
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("imported {imported} module(s) from {}", file.display());
    Ok(ExitCode::SUCCESS)
}
