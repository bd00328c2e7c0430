//! Committing modules: what is there is checked and what is missing or damaged is
//! written, for a batch of modules with a constant number of syncs.
//!
//! # Commit order
//!
//! Duplicates of a function are resolved by their index entries' `committed_at`
//! (earliest first). So that the order, once observed, never changes:
//!
//! - a module's entries all carry one time: a re-add that completes an interrupted
//!   commit reuses the time its existing entries carry;
//! - a new entry is stamped later than every entry already filed under its function
//!   (and later than anything this process stamped before), so a wall clock stepped
//!   back cannot put a newer duplicate before an established one;
//! - a batch (an imported bundle) is stamped in its own order, so the relative order of
//!   the modules of a bundle survives an export and an import;
//! - an entry the remote tier ranked carries its rank instead of a time
//!   (`commit_ranked`): ranks are small numbers, so they sort before every clock
//!   reading, and every machine that learnt the same ranks resolves duplicates alike.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use linkcache_core::{IndexEntry, Manifest, ModuleId};

use super::write::Staged;
use super::{DirStore, read_if_present};
use crate::error::Error;

/// What a commit found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Files written (missing ones, and damaged ones replaced).
    pub files_written: usize,
    /// Files that were there but damaged, and were replaced.
    pub files_written_over_damage: usize,
    /// Durability syncs issued (at most two per batch, whatever its size).
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

    /// Commits modules in order: for each, its bytes, its manifest and one index entry
    /// per function. What is already there is checked (bytes against their id, records
    /// against their checksum) and kept when sound; what is missing or damaged is
    /// written (by rename, never in place). So committing a module again completes an
    /// interrupted commit and repairs damaged files. The whole batch costs two syncs
    /// (see the [module docs](super) for what a crash leaves), none when nothing was
    /// missing.
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
    /// carrying its rank as `committed_at` (an existing entry with another time is
    /// replaced by rename).
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
        let _lock = self.lock_shared()?;
        let mut report = CommitReport::default();
        let mut records: Vec<Staged> = Vec::new();
        let mut entries: Vec<Staged> = Vec::new();
        for &ToCommit {
            wasm,
            manifest,
            ranks,
        } in modules
        {
            let id = manifest.module;
            debug_assert!(id.matches(wasm));
            let bytes_state = match read_if_present(&self.module_path(&id))? {
                None => FileState::Missing,
                Some(bytes) if id.matches(&bytes) => FileState::Sound,
                Some(_) => FileState::Damaged,
            };
            if bytes_state != FileState::Sound {
                report.count(bytes_state);
                records.push(self.stage(self.module_path(&id), wasm)?);
            }
            let manifest_state = match read_if_present(&self.manifest_path(&id))? {
                None => FileState::Missing,
                Some(bytes) => match Manifest::decode(&bytes) {
                    Ok(stored) if stored.module == id => FileState::Sound,
                    _ => FileState::Damaged,
                },
            };
            if manifest_state != FileState::Sound {
                report.count(manifest_state);
                records.push(self.stage(self.manifest_path(&id), &manifest.encode())?);
            }
            match ranks {
                None => self.stage_entries(&id, manifest, &mut entries, &mut report)?,
                Some(ranks) => {
                    self.stage_ranked(&id, manifest, ranks, &mut entries, &mut report)?
                }
            }
        }
        // Two syncs per batch: the bytes and manifests (data and renames) are durable
        // before any index entry that names them is renamed into place; the entries are
        // durable before the commit returns.
        // The index stamp moves on once the entries are in place (and before their
        // sync, which makes it durable with them): see `hint.rs`.
        for (staged, are_entries) in [(records, false), (entries, true)] {
            if staged.is_empty() {
                continue;
            }
            let placed: Vec<PathBuf> = staged
                .iter()
                .map(|s| s.destination().to_path_buf())
                .collect();
            self.place(staged)?;
            if are_entries {
                self.bump_index_stamp()?;
            }
            self.sync(&as_paths(&placed))?;
            report.syncs += 1;
        }
        for module in modules {
            self.touch(&module.manifest.module);
        }
        Ok(report)
    }

    /// Stages the index entries of `id` that are missing or damaged, stamped per the
    /// commit order rules (module docs).
    fn stage_entries(
        &self,
        id: &ModuleId,
        manifest: &Manifest,
        staged: &mut Vec<Staged>,
        report: &mut CommitReport,
    ) -> Result<(), Error> {
        let mut own_times = Vec::new();
        let mut missing = Vec::new();
        for function in &manifest.functions {
            let path = self.entry_path(&function.name, id);
            let existing = read_if_present(&path)?.map(|bytes| IndexEntry::decode(&bytes));
            match existing {
                Some(Ok(entry)) if entry.func_name == function.name && entry.module == *id => {
                    own_times.push(entry.committed_at);
                }
                Some(_) => {
                    report.count(FileState::Damaged);
                    missing.push(&function.name);
                }
                None => {
                    report.count(FileState::Missing);
                    missing.push(&function.name);
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let committed_at = match own_times.iter().min() {
            // Completing or repairing: the module keeps the time it was first given.
            Some(&time) => time,
            None => {
                let mut floor = 0;
                for name in &missing {
                    for candidate in self.candidates(name)? {
                        if candidate.module != *id && candidate.committed_at != u64::MAX {
                            floor = floor.max(candidate.committed_at);
                        }
                    }
                }
                next_stamp(floor)
            }
        };
        for name in missing {
            let entry = IndexEntry {
                func_name: String::from(name),
                module: *id,
                committed_at,
            };
            staged.push(self.stage(self.entry_path(name, id), &entry.encode())?);
        }
        Ok(())
    }
}

impl DirStore {
    /// Stages the entries of the ranked functions of `id` whose stored entry is
    /// missing, damaged or carries another time.
    fn stage_ranked(
        &self,
        id: &ModuleId,
        manifest: &Manifest,
        ranks: &[(String, u64)],
        staged: &mut Vec<Staged>,
        report: &mut CommitReport,
    ) -> Result<(), Error> {
        for (name, rank) in ranks {
            if manifest.function(name).is_none() {
                continue;
            }
            let path = self.entry_path(name, id);
            let state = match read_if_present(&path)?.map(|bytes| IndexEntry::decode(&bytes)) {
                Some(Ok(entry)) if entry.func_name == *name && entry.module == *id => {
                    if entry.committed_at == *rank {
                        continue;
                    }
                    FileState::Missing
                }
                Some(_) => FileState::Damaged,
                None => FileState::Missing,
            };
            report.count(state);
            let entry = IndexEntry {
                func_name: name.clone(),
                module: *id,
                committed_at: *rank,
            };
            staged.push(self.stage(path, &entry.encode())?);
        }
        Ok(())
    }
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
