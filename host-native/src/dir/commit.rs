//! Committing modules: what is there is checked and what is missing or damaged is
//! written, for a batch of modules with one sync: one pack file per module and one
//! index record per module appended to this store's segment (see the module docs of
//! `dir` for what a crash leaves).
//!
//! # Commit order
//!
//! Duplicates of a function are resolved by their index entries' `committed_at`
//! (earliest first). So that the order, once observed, never changes:
//!
//! - a module's entries all carry one time: a re-add that enters functions missing from
//!   the index (a damaged record) reuses the time its existing entries carry;
//! - a new entry is stamped later than every entry already filed under its function
//!   (and later than anything this process stamped before), so a wall clock stepped
//!   back cannot put a newer duplicate before an established one;
//! - a batch (an imported bundle) is stamped in its own order, so the relative order of
//!   the modules of a bundle survives an export and an import;
//! - an entry the remote tier ranked carries its rank instead of a time
//!   (`commit_ranked`): ranks are small numbers, so they sort before every clock
//!   reading, and every machine that learnt the same ranks resolves duplicates alike.
//!   (An entry keeps the earliest time it was ever entered with, so a rank replaces a
//!   clock reading or a later rank, never an earlier rank.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use linkcache_core::{Manifest, ModuleId};

use super::DirStore;
use super::index::{IndexView, segment};
use super::pack::{self, OpenPack};
use crate::error::{Error, IoContext};

/// What a commit found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Modules whose pack was written (missing ones, and damaged ones replaced). A
    /// batch writes them all as one file, linked under each module's name.
    pub files_written: usize,
    /// Modules whose pack was there but damaged, and was replaced.
    pub files_written_over_damage: usize,
    /// Index records appended: at most one per module, whatever its number of
    /// functions.
    pub index_records: usize,
    /// Durability syncs issued (at most one per batch, whatever its size).
    pub syncs: usize,
}

/// A module to commit with the remote's ranks for some of its functions.
#[cfg(feature = "remote")]
pub(crate) struct RankedCommit<'a> {
    pub(crate) wasm: &'a [u8],
    pub(crate) manifest: &'a Manifest,
    /// (function, rank): only these functions are indexed, each with its rank.
    pub(crate) ranks: &'a [(String, u64)],
}

/// One module of a batch: without ranks, every function is indexed per the commit
/// order rules; with ranks, only the ranked functions, with their ranks.
struct ToCommit<'a> {
    wasm: &'a [u8],
    manifest: &'a Manifest,
    ranks: Option<&'a [(String, u64)]>,
}

/// The latest `committed_at` this process stamped: stamps only grow.
static LAST_STAMP: AtomicU64 = AtomicU64::new(0);

impl DirStore {
    /// Commits a module: see [`DirStore::commit_many`].
    pub fn commit(&self, wasm: &[u8], manifest: &Manifest) -> Result<CommitReport, Error> {
        self.commit_many(&[(wasm, manifest)])
    }

    /// Commits modules in order: for each, its pack (manifest and bytes) and one index
    /// record naming its functions. What is already there is checked (the pack's bytes
    /// against their id and its manifest against its checksum; the index as this
    /// process reads it) and kept when sound; what is missing or damaged is written (a
    /// pack by rename, never in place; missing index entries appended). So committing a
    /// module again completes an interrupted commit and repairs damaged files. The
    /// whole batch costs one sync (see the [module docs](super) for what a crash
    /// leaves), none when nothing was missing.
    pub fn commit_many(&self, modules: &[(&[u8], &Manifest)]) -> Result<CommitReport, Error> {
        let batch: Vec<ToCommit<'_>> = modules
            .iter()
            .map(|(wasm, manifest)| ToCommit {
                wasm,
                manifest,
                ranks: None,
            })
            .collect();
        self.commit_batch(&batch)
    }

    /// Commits modules fetched from (or published to) the remote tier: like
    /// [`DirStore::commit_many`], but only the ranked functions are indexed, each entry
    /// carrying its rank as `committed_at` (unless the entry carries an earlier time).
    #[cfg(feature = "remote")]
    pub(crate) fn commit_ranked(
        &self,
        modules: &[RankedCommit<'_>],
    ) -> Result<CommitReport, Error> {
        let batch: Vec<ToCommit<'_>> = modules
            .iter()
            .map(|m| ToCommit {
                wasm: m.wasm,
                manifest: m.manifest,
                ranks: Some(m.ranks),
            })
            .collect();
        self.commit_batch(&batch)
    }

    fn commit_batch(&self, modules: &[ToCommit<'_>]) -> Result<CommitReport, Error> {
        self.require_writable()?;
        let report = {
            let _lock = self.lock_shared()?;
            self.commit_locked(modules)?
        };
        for module in modules {
            self.touch(&module.manifest.module);
        }
        if report.index_records > 0 {
            self.compact_if_due();
        }
        Ok(report)
    }

    /// [`DirStore::commit_batch`]'s work, holding the lock shared.
    fn commit_locked(&self, modules: &[ToCommit<'_>]) -> Result<CommitReport, Error> {
        let mut report = CommitReport::default();
        // The modules whose pack is missing or damaged: written as one pack file.
        let mut to_pack: Vec<(&Manifest, &[u8])> = Vec::new();
        let mut records: Vec<u8> = Vec::new();
        {
            let view = self.index_view()?;
            for &ToCommit {
                wasm,
                manifest,
                ranks,
            } in modules
            {
                let id = manifest.module;
                debug_assert!(id.matches(wasm));
                let state = self.pack_state(&id)?;
                if state != FileState::Sound && !to_pack.iter().any(|(m, _)| m.module == id) {
                    report.count(state);
                    to_pack.push((manifest, wasm));
                }
                let entries = match ranks {
                    None => unindexed(&view, &id, manifest)?,
                    Some(ranks) => unranked(&view, &id, manifest, ranks)?,
                };
                if !entries.is_empty() {
                    records.extend(segment::encode(&id, &entries));
                    report.index_records += 1;
                }
            }
        }
        if to_pack.is_empty() && records.is_empty() {
            return Ok(report);
        }
        // The pack is linked into place under each module's name before the records
        // that name them are appended (what a crash leaves: module docs of `dir`); one
        // sync makes everything durable before the commit returns. The index stamp moves
        // on once the records are appended (and before the sync, which makes it durable
        // with them): see `hint.rs`.
        let mut written: Vec<PathBuf> = Vec::new();
        if !to_pack.is_empty() {
            let names: Vec<PathBuf> = to_pack
                .iter()
                .map(|(manifest, _)| self.pack_path(&manifest.module))
                .collect();
            let staged = self.stage(names[0].clone(), &pack::encode(&to_pack))?;
            self.place_under(&staged, &names)?;
            written = names;
        }
        if !records.is_empty() {
            written.push(self.append_index(&records)?);
            self.bump_index_stamp()?;
        }
        self.sync(&as_paths(&written))?;
        report.syncs += 1;
        Ok(report)
    }

    /// Whether the pack of `id` is there and sound (its manifest and its bytes check).
    fn pack_state(&self, id: &ModuleId) -> Result<FileState, Error> {
        let path = self.pack_path(id);
        Ok(match OpenPack::open(&path, id)? {
            None => FileState::Missing,
            Some(Err(_)) => FileState::Damaged,
            Some(Ok(pack)) => {
                if pack.manifest(id).at(&path)?.is_ok() && pack.wasm(id).at(&path)?.is_ok() {
                    FileState::Sound
                } else {
                    FileState::Damaged
                }
            }
        })
    }
}

/// The functions of `id` the index does not list under it, with the time to enter them
/// with, per the commit order rules (module docs).
fn unindexed<'m>(
    view: &IndexView,
    id: &ModuleId,
    manifest: &'m Manifest,
) -> Result<Vec<(&'m str, u64)>, Error> {
    let mut own_times = Vec::new();
    let mut missing = Vec::new();
    let mut floor = 0;
    for function in &manifest.functions {
        let candidates = view.candidates(&function.name)?;
        match candidates.iter().find(|c| c.module == *id) {
            Some(own) => own_times.push(own.committed_at),
            None => {
                missing.push(function.name.as_str());
                for candidate in &candidates {
                    floor = floor.max(candidate.committed_at);
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let committed_at = match own_times.iter().min() {
        // Completing or repairing: the module keeps the time it was first given.
        Some(&time) => time,
        None => next_stamp(floor),
    };
    Ok(missing
        .into_iter()
        .map(|name| (name, committed_at))
        .collect())
}

/// The ranked functions of `id` whose entry is missing or carries a later time (the
/// earliest time of an entry counts, so an earlier rank is kept).
fn unranked<'r>(
    view: &IndexView,
    id: &ModuleId,
    manifest: &Manifest,
    ranks: &'r [(String, u64)],
) -> Result<Vec<(&'r str, u64)>, Error> {
    let mut entries = Vec::new();
    for (name, rank) in ranks {
        if manifest.function(name).is_none() {
            continue;
        }
        let stored = view.candidates(name)?;
        if stored
            .iter()
            .any(|c| c.module == *id && c.committed_at <= *rank)
        {
            continue;
        }
        entries.push((name.as_str(), *rank));
    }
    Ok(entries)
}

/// What a commit finds where a file of the module belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileState {
    Sound,
    Missing,
    Damaged,
}

impl CommitReport {
    /// Counts a file that is (re)written.
    fn count(&mut self, state: FileState) {
        self.files_written += 1;
        if state == FileState::Damaged {
            self.files_written_over_damage += 1;
        }
    }
}

fn as_paths(paths: &[PathBuf]) -> Vec<&Path> {
    paths.iter().map(PathBuf::as_path).collect()
}

/// A time later than `floor`, than the wall clock and than every stamp this process
/// gave before.
fn next_stamp(floor: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let wanted = now.max(floor.saturating_add(1));
    let mut last = LAST_STAMP.load(Ordering::Relaxed);
    loop {
        let stamp = wanted.max(last.saturating_add(1));
        match LAST_STAMP.compare_exchange_weak(last, stamp, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return stamp,
            Err(actual) => last = actual,
        }
    }
}
