//! [`Stats`]: what one tab or worker did since it opened the cache.

use std::collections::BTreeMap;

use serde::Serialize;

/// Statistics of one `LinkCache` (one tab or worker) since it was opened.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Targets that returned a function.
    pub hits: u64,
    /// Misses by cause (camelCase, as `LinkCacheMiss.missCause`).
    pub misses: BTreeMap<String, u64>,
    /// Modules instantiated.
    pub modules_loaded: u64,
    /// Modules compiled with `WebAssembly.compile` from IndexedDB bytes.
    pub modules_compiled: u64,
    /// Global definitions validated.
    pub globals_validated: u64,
    /// Global definitions found stale.
    pub globals_stale: u64,
    /// Broken modules skipped.
    pub broken_skipped: u64,
    /// Bytes read from IndexedDB.
    pub bytes_read: u64,
    /// Modules added by this tab.
    pub modules_added: u64,
    /// Modules `getOrCompile` ran from memory because the storage quota was full.
    pub not_persisted: u64,
    /// Calls of `getOrCompile`'s compile callback.
    pub compiles: u64,
    /// Plans made or replayed (each reads IndexedDB in one transaction unless it awaited
    /// the embedder).
    pub plans: u64,
    /// IndexedDB transactions those plans took.
    pub plan_transactions: u64,
    /// IndexedDB round trips those plans took: one per level of the call graph and one
    /// for the bytes, or two in all for a closure its plan hint predicted.
    pub plan_reads: u64,
    /// Plans this tab kept for the next tab (made for a tab that had loaded nothing;
    /// stored with the target's plan hint).
    pub plans_kept: u64,
    /// Targets loaded from a kept plan, without planning (counted in `plans` too).
    pub plans_replayed: u64,
    /// Kept plans found and not used, by reason: `staleIndex` (a commit, gc or clear
    /// since), `damaged` (the record does not decode or hold together),
    /// `globalChanged` (the embedder decided a global differently), `moduleBroken` (a
    /// module failed its load). Each was planned anew.
    pub plans_not_replayed: BTreeMap<String, u64>,
    /// Manifests checked against their bytes at load (recorded by another analyzer version).
    pub manifests_checked: u64,
    /// Bytes the origin uses, as the browser estimates (`navigator.storage.estimate()`).
    pub usage: Option<f64>,
    /// Bytes the origin may use, as the browser estimates.
    pub quota: Option<f64>,
    /// Milliseconds spent targeting.
    pub time_ms: f64,
}
