//! `linkcache`: inspect and maintain a linkcache directory.
//!
//! This file parses the command line, opens the cache and turns errors into exit codes;
//! the commands are in the files beside it: `add`, `call`, `inspect` (`ls`, `show`),
//! `stats`, `graph`, `remote` (`push`, `pull`) and `maintain` (`verify`, `gc`, `export`,
//! `import`).

mod add;
mod call;
mod graph;
mod inspect;
mod maintain;
mod remote;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use linkcache_native::{Cache, DirStore, Error, default_dir};

use add::add;
use call::call;
use graph::graph;
use inspect::{ls, show};
use maintain::{export, gc, import, parse_size, verify};
use remote::{pull, push};
use stats::stats;

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
    // The comment above is clap's help text, whose brackets are not rustdoc links.
    #[allow(rustdoc::broken_intra_doc_links)]
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
