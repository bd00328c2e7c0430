//! Section (8), the remote tier over loopback servers (a Redis server, and moto, a local
//! S3 stand-in written in Python, when `cargo xtask bench` started one:
//! `$LINKCACHE_BENCH_S3`): a machine with an empty directory getting large modules and
//! a 10-module closure from the remote, against compiling them and against a local
//! hit; and publish throughput.
//!
//! "A fresh machine" is a new `Cache` (a new engine, nothing in memory) on a new empty
//! directory inside the bench process; every side of a row does the same, and the sides
//! alternate within each round.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use linkcache_native::Cache;
use linkcache_tests::servers::{RedisServer, create_bucket};
use wasmtime::error::Context as _;
use wasmtime::{Result, bail};

use crate::large::{ImportStubs, LargeModule};
use crate::report::{Table, count, median, ms, ratio};

/// Where the bench publishes: a Redis server of its own, or a bucket on the S3 server
/// the xtask started.
enum Engine {
    Redis(RedisServer),
    S3 { endpoint: String, bucket: String },
}

impl Engine {
    fn name(&self) -> &'static str {
        match self {
            Engine::Redis(_) => "Redis",
            Engine::S3 { .. } => "S3 (moto)",
        }
    }

    /// The URL of a namespace of its own (`space`) with `options`.
    fn url(&self, space: &str, options: &str) -> String {
        match self {
            Engine::Redis(redis) => redis.url(&format!("prefix={space}:&{options}")),
            Engine::S3 { endpoint, bucket } => {
                format!("s3://{bucket}/{space}?endpoint={endpoint}&region=us-east-1&{options}")
            }
        }
    }

    fn s3_from_env() -> Result<Option<Engine>> {
        let Ok(endpoint) = std::env::var("LINKCACHE_BENCH_S3") else {
            return Ok(None);
        };
        let bucket = format!("lc-bench-{}", std::process::id());
        let status = create_bucket(&endpoint, &bucket)?;
        if status != 200 {
            bail!("creating the bench's bucket: HTTP {status}");
        }
        Ok(Some(Engine::S3 { endpoint, bucket }))
    }
}

/// A new directory under `base` for one measurement.
fn fresh_dir(base: &Path, name: &str, round: usize) -> PathBuf {
    let dir = base.join(format!("{name}-{round}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn millis(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// What one workload is: its modules, the function targeted, and its imports' stubs.
struct Workload {
    name: String,
    modules: Vec<Vec<u8>>,
    func: String,
    stubs: Option<ImportStubs>,
}

impl Workload {
    fn open(&self, dir: &Path, remote: &str) -> Result<Cache> {
        let mut builder = Cache::builder(dir).remote(remote);
        if let Some(stubs) = self.stubs.clone() {
            builder = builder.linker(move |linker| stubs.define(linker));
        }
        Ok(builder.open()?)
    }

    fn bytes(&self) -> usize {
        self.modules.iter().map(Vec::len).sum()
    }
}

pub fn section(base: &Path, large: Vec<(LargeModule, Vec<u8>)>, runs: usize) -> Result<Vec<Table>> {
    std::fs::create_dir_all(base)?;
    let binary = RedisServer::binary()
        .context("redis-server is not installed (cargo xtask bench installs it)")?;
    let mut engines = vec![Engine::Redis(RedisServer::start(binary)?)];
    engines.extend(Engine::s3_from_env()?);
    let mut workloads = vec![Workload {
        name: "10-module closure (3 levels)".into(),
        modules: linkcache_tests::workloads::tree(0),
        func: "t.root".into(),
        stubs: None,
    }];
    for (module, bytes) in large {
        workloads.push(Workload {
            name: module.name.clone(),
            stubs: Some(ImportStubs::of(&bytes)?),
            modules: vec![bytes],
            func: module.func.clone(),
        });
    }
    let mut table = Table::new(
        "(8) A machine with an empty directory: from the remote (loopback Redis, and moto standing in for S3) against compiling and a local hit",
        &[
            "remote",
            "workload",
            "bytes",
            "compile (add + `target()`)",
            "remote, wasm only",
            "remote, trusted native code",
            "local hit",
            "compile ÷ remote native",
            "remote native ÷ local hit",
            "round trips",
        ],
    );
    for (index, (engine, workload)) in engines
        .iter()
        .flat_map(|engine| workloads.iter().map(move |workload| (engine, workload)))
        .enumerate()
    {
        eprintln!("  {}: {}", engine.name(), workload.name);
        // Publish once: wasm, manifests, entries and the artifacts. A generous
        // deadline: the S3 stand-in is a Python server.
        let space = format!("w{index}");
        let wasm_url = engine.url(&space, "timeout_ms=30000");
        let native_url = engine.url(&space, "timeout_ms=30000&trust=native");
        {
            let dir = fresh_dir(base, "publisher", index);
            let cache = workload.open(&dir, &native_url)?;
            for module in &workload.modules {
                cache.add_module(module)?;
            }
            cache.target_dynamic(&workload.func)?;
            if !cache.flush_remote(Duration::from_secs(60)) {
                bail!("publishing did not finish");
            }
        }
        let hit_dir = fresh_dir(base, "hit", index);
        {
            let cache = workload.open(&hit_dir, "off")?;
            for module in &workload.modules {
                cache.add_module(module)?;
            }
            cache.target_dynamic(&workload.func)?;
        }
        let (mut compile, mut wasm_only, mut native, mut hit) = (vec![], vec![], vec![], vec![]);
        let mut round_trips = 0;
        for round in 0..runs {
            let dir = fresh_dir(base, "compile", round);
            let start = Instant::now();
            let cache = workload.open(&dir, "off")?;
            for module in &workload.modules {
                cache.add_module(module)?;
            }
            cache.target_dynamic(&workload.func)?;
            compile.push(millis(start));
            drop(cache);

            for (url, times) in [(&wasm_url, &mut wasm_only), (&native_url, &mut native)] {
                let dir = fresh_dir(base, "fetch", round);
                let start = Instant::now();
                let cache = workload.open(&dir, url)?;
                cache.target_dynamic(&workload.func)?;
                times.push(millis(start));
                let stats = cache.stats();
                let remote = stats.remote.as_ref().context("remote stats")?;
                if remote.hits as usize != workload.modules.len() || stats.compiles != 0 {
                    bail!(
                        "{}: the remote did not serve the closure: {remote:?}",
                        workload.name
                    );
                }
                round_trips = remote.round_trips;
            }

            let start = Instant::now();
            let cache = workload.open(&hit_dir, "off")?;
            cache.target_dynamic(&workload.func)?;
            hit.push(millis(start));
        }
        let (c, w, n, h) = (
            median(&compile),
            median(&wasm_only),
            median(&native),
            median(&hit),
        );
        table.row(vec![
            engine.name().to_string(),
            workload.name.clone(),
            count(workload.bytes()),
            ms(c),
            ms(w),
            ms(n),
            ms(h),
            ratio(c, n),
            ratio(n, h),
            round_trips.to_string(),
        ]);
    }
    table.note(format!(
        "Medians of {runs} rounds; each side opens a new `Cache` (a new engine, nothing in memory) on a new \
         directory (the local hit: on one filled directory), and the sides alternate within a round. \
         \"compile\" adds the bytes (analysis, commit) and targets (Cranelift); \"remote, wasm only\" fetches \
         bytes and manifests, checks and commits them, and compiles; \"trusted native code\" fetches the \
         precompiled artifacts too (`?trust=native`) and deserializes them. Round trips: of the last fetch, \
         the connection included (S3: requests, concurrent within a level). moto is a Python stand-in \
         for S3 on loopback, not S3's performance."
    ));

    let mut publish = Table::new(
        "(8b) Publish throughput: `add_module` with a remote tier, until the publisher has sent everything",
        &[
            "remote",
            "modules",
            "add only (no remote)",
            "add + publish (flushed)",
            "modules/s published",
            "÷ add only",
        ],
    );
    let modules: Vec<Vec<u8>> = (0..500)
        .map(|i| {
            wat::parse_str(format!(
                r#"(module (func (export "p.f{i}") (param i64) (result i64)
                  (i64.add (local.get 0) (i64.const {i}))))"#
            ))
            .expect("publish WAT")
        })
        .collect();
    for engine in &engines {
        let (mut alone, mut published) = (vec![], vec![]);
        for round in 0..runs.min(5) {
            let dir = fresh_dir(base, "add", round);
            let cache = Cache::builder(&dir).remote("off").open()?;
            let start = Instant::now();
            cache.add_modules(&modules)?;
            alone.push(millis(start));
            drop(cache);
            let dir = fresh_dir(base, "publish", round);
            let url = engine.url(&format!("p{round}"), "timeout_ms=60000");
            let cache = Cache::builder(&dir).remote(&url).open()?;
            let start = Instant::now();
            cache.add_modules(&modules)?;
            if !cache.flush_remote(Duration::from_secs(600)) {
                bail!("publishing did not finish");
            }
            published.push(millis(start));
            let stats = cache.stats();
            let remote = stats.remote.as_ref().context("remote stats")?;
            if remote.modules_published != modules.len() as u64 {
                bail!(
                    "published {} of {}: {remote:?}",
                    remote.modules_published,
                    modules.len()
                );
            }
        }
        let (a, p) = (median(&alone), median(&published));
        publish.row(vec![
            engine.name().to_string(),
            count(modules.len()),
            ms(a),
            ms(p),
            format!("{:.0}", modules.len() as f64 / (p / 1000.0)),
            ratio(p, a),
        ]);
    }
    publish.note(
        "One `add_modules` batch of 500 one-function modules into a new directory; with the remote, the \
         clock stops when `flush_remote` returns (the publisher sends batches of 32 modules per round \
         trip and files the ranks it gets back). Medians of the rounds.",
    );
    Ok(vec![table, publish])
}
