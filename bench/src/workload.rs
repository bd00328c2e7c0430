//! The benchmark's caches: [`prepare`] fills a directory with a synthetic workload
//! ([`Params`], from `linkcache_tests::synthetic`, shared with the core's `plan_cost`
//! example) through [`Cache::add_module`] and precompiles every module, once per set of
//! parameters: the directory is keyed by them and reused.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use linkcache_native::{ArtifactLookup, Cache, DirStore};
pub use linkcache_tests::synthetic::{Params, synthetic_large, tiny_module};
use wasmtime::Result;
use wasmtime::error::Context as _;

/// A cache of some [`Params`], filled and precompiled.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The cache directory.
    pub dir: PathBuf,
    /// Its parameters.
    pub params: Params,
    /// Modules in the cache, duplicates included.
    pub total_modules: usize,
}

/// The cache directory layout the filled caches have (see `prepare`).
const LAYOUT: &str = "packs";

/// Parallel writers when filling: commits are fsync-bound, and ext4 batches the fsyncs
/// of concurrent writers.
const FILL_THREADS: usize = 16;

/// Fills (or reuses) the cache of `params` under `root`, every module precompiled.
pub fn prepare(root: &Path, params: Params) -> Result<Prepared> {
    // The directory layout is part of the key: a cache filled by a build with another
    // layout (before packs: `modules/`, `manifests/`, one file per index entry) is not
    // reused.
    let base = root.join(format!("{}-{LAYOUT}", params.key()));
    let dir = base.join("cache");
    let ready = base.join("ready");
    let all = params.all_modules();
    let prepared = Prepared {
        dir: dir.clone(),
        params,
        total_modules: all.len(),
    };
    if ready.exists() {
        return Ok(prepared);
    }
    // Fill a private directory and rename it into place, so that two bench runs at once
    // (a CI smoke test beside a developer's run) never see each other's half-filled cache.
    let building = root.join(format!("{}.building-{}", params.key(), std::process::id()));
    if building.exists() {
        fs::remove_dir_all(&building)?;
    }
    fs::create_dir_all(&building)?;
    let cache = Cache::open(building.join("cache"))?;

    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let step = (all.len() / 10).max(1);
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..FILL_THREADS)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(k, variant)) = all.get(i) else {
                            return Ok(());
                        };
                        cache.add_module(&params.module_bytes(k, variant))?;
                        let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if finished.is_multiple_of(step) {
                            eprintln!(
                                "    {}: added {finished}/{} modules ({:.1} s)",
                                params.key(),
                                all.len(),
                                started.elapsed().as_secs_f64()
                            );
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a filling thread panicked")?;
        }
        Ok(())
    })?;
    eprintln!(
        "    {}: {} modules added in {:.1} s; precompiling",
        params.key(),
        all.len(),
        started.elapsed().as_secs_f64()
    );
    precompile_all(&cache)?;
    eprintln!(
        "    {}: ready after {:.1} s",
        params.key(),
        started.elapsed().as_secs_f64()
    );
    drop(cache);
    fs::write(building.join("ready"), format!("{params:?}\n"))?;
    // Renaming onto a non-empty directory fails: then either another run finished first
    // (use its cache) or an interrupted run left one without `ready` (replace it).
    if fs::rename(&building, &base).is_err() {
        if ready.exists() {
            fs::remove_dir_all(&building)?;
            return Ok(prepared);
        }
        fs::remove_dir_all(&base).with_context(|| format!("removing {}", base.display()))?;
        fs::rename(&building, &base)
            .with_context(|| format!("renaming {} into place", building.display()))?;
    }
    Ok(prepared)
}

/// Writes an artifact for every module of the cache that has none, the way linkcache
/// would after compiling it (`DirStore::store_artifact`), so that both linkcache and
/// the load-everything baseline find precompiled code for every module.
pub fn precompile_all(cache: &Cache) -> Result<()> {
    let dir: &DirStore = cache.dir();
    // One real load makes linkcache create its engine directory.
    let any = dir
        .index()?
        .into_keys()
        .next()
        .context("the cache is empty")?;
    cache
        .target_dynamic(&any)
        .with_context(|| format!("targeting {any}"))?;
    let key = linkcache_native::engine_key(cache.engine());
    let ids = dir.modules()?;
    let engine = cache.engine().clone();
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(id) = ids.get(i) else { return Ok(()) };
                        if matches!(dir.artifact(&key, id)?, ArtifactLookup::Found { .. }) {
                            continue;
                        }
                        let bytes = dir
                            .module_bytes(id)?
                            .map_err(|reason| wasmtime::format_err!("module {id}: {reason}"))?;
                        let artifact = engine.precompile_module(&bytes)?;
                        dir.store_artifact(&key, id, &artifact)?;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a precompiling thread panicked")?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_modules_follow_the_convention_and_compute_what_they_should() {
        let params = Params {
            modules: 25,
            ..Params::sized(25)
        };
        for (k, variant) in params.all_modules() {
            let manifest = linkcache_core::analyze(&params.module_bytes(k, variant)).unwrap();
            assert_eq!(manifest.functions.len(), params.funcs);
        }
        let dir = std::env::temp_dir().join(format!("linkcache-bench-test-{}", std::process::id()));
        let cache = Cache::open(&dir).unwrap();
        for (k, variant) in params.all_modules() {
            cache.add_module(&params.module_bytes(k, variant)).unwrap();
        }
        for closure in [1, 10] {
            let (func, k) = params.target_with_closure(closure).unwrap();
            let target = cache.target::<(i32,), i64>(&func).unwrap();
            assert_eq!(
                target.call(&cache, (10,)).unwrap(),
                params.expected(k, 0, 10)
            );
        }
        assert_eq!(cache.stats().modules_loaded, 10);
        drop(cache);
        fs::remove_dir_all(&dir).unwrap();
    }
}
