//! [`Stats`]: what a cache did in this process, for users, the CLI and the tests.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Counters of one [`Cache`](crate::Cache) since it was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Targets that returned a callable.
    pub hits: u64,
    /// Targets that missed, by cause (`unknown`, `missing_dependency`, `stale_global`,
    /// `broken`, `signature_mismatch`).
    pub misses: BTreeMap<String, u64>,
    /// Modules instantiated.
    pub modules_loaded: u64,
    /// Modules whose precompiled artifact was deserialized (no compilation).
    pub artifacts_deserialized: u64,
    /// Modules compiled from their wasm bytes.
    pub modules_compiled: u64,
    /// Artifacts written for the next process.
    pub artifacts_written: u64,
    /// Artifacts that failed their checksum or deserialization (and were recompiled).
    pub artifacts_rejected: u64,
    /// Artifacts that could not be written (a full disk); the next process compiles.
    pub artifact_write_errors: u64,
    /// Global definitions the embedder validated.
    pub globals_validated: u64,
    /// Global definitions the embedder declared stale.
    pub globals_stale: u64,
    /// Modules found broken (corrupt, lying manifest, failed to compile or instantiate)
    /// and skipped in favour of a duplicate or a miss.
    pub broken_skipped: u64,
    /// Bytes read from the cache directory (module bytes and artifacts).
    pub bytes_read: u64,
    /// Plans that started from their target's plan hint (what the last plan of that
    /// target, in any process, read), valid because the index had not changed since.
    pub plan_hints_used: u64,
    /// Targets that did not plan at all: a fresh store used the plan a fresh store of
    /// some process made, kept in the target's plan hint (the index unchanged since, and
    /// every global it depends on decided alike by this process's resolver).
    pub plans_from_hints: u64,
    /// Index listings and manifests that planning read from the directory (answers
    /// from a plan hint or from this process's memory are not counted).
    pub plan_directory_reads: u64,
    /// Modules added.
    pub modules_added: u64,
    /// Times `get_or_compile` called its compiler.
    pub compiles: u64,
    /// Compiled modules the process holds for reuse by its stores (at most
    /// [`CacheBuilder::modules_in_memory`](crate::CacheBuilder::modules_in_memory)).
    pub modules_in_memory: u64,
    /// Time spent targeting (planning, reading, compiling, instantiating).
    #[serde(serialize_with = "as_millis")]
    pub load_time: Duration,
    /// Whether precompiled code is used; when not, [`Stats::untrusted_reason`] says why.
    pub precompiled: bool,
    /// Why precompiled code is not trusted from this cache directory.
    pub untrusted_reason: Option<String>,
    /// Why the cache directory is read-only for this process (`None`: it is written).
    /// A read-only cache serves what it holds; modules without a usable artifact are
    /// compiled in memory ([`Stats::modules_compiled`]).
    pub read_only: Option<String>,
    /// The remote tier's configuration and counters (`None`: no remote tier).
    #[cfg(feature = "remote")]
    pub remote: Option<crate::remote::RemoteStats>,
}

impl Stats {
    /// Total misses of every cause.
    pub fn total_misses(&self) -> u64 {
        self.misses.values().sum()
    }
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}
