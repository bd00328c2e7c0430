//! `linkcache stats`: what the directory holds, as text or JSON.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use linkcache_native::{Access, Trust};

use super::{Failure, open_cache, store};

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

pub(super) fn stats(dir: &Path, json: bool) -> Result<ExitCode, Failure> {
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
