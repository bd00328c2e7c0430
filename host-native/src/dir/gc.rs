//! Garbage collection: what crashed writers and older engines left, then least
//! recently used modules, whole, while no commit runs (gc holds the directory's lock
//! exclusively; commits and artifact writes hold it shared). Every gc also compacts the
//! index (`index/compact.rs`): the entries of evicted modules and entries naming no pack
//! are left out of the new table before any pack is removed.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use linkcache_core::ModuleId;

use super::{DirStore, file_len, files_under, remove_if_present, stem_id};

/// Directories of the layout before packs (`modules/<ab>/<id>.wasm`,
/// `manifests/<ab>/<id>.lcmf`), removed by gc.
const OLD_LAYOUT: [&str; 2] = ["modules", "manifests"];
use crate::error::Error;

/// What `gc` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Modules removed, least recently used first.
    pub evicted: Vec<ModuleId>,
    /// Leftovers removed: temporary files, index entries naming no committed module,
    /// artifacts and use markers of modules that are not committed, and the files of
    /// the layout before packs.
    pub leftovers_removed: u64,
    /// Artifact files of other engine configurations removed (see [`GcOptions`]).
    pub other_engine_artifacts_removed: u64,
    /// Plan hints removed: gc changes the index, so every hint is stale (they are
    /// written again by the next plan of each target).
    pub plan_hints_removed: u64,
    /// Bytes freed.
    pub freed: u64,
    /// Bytes the cache holds afterwards.
    pub remaining: u64,
}

/// What `gc` keeps.
#[derive(Clone, Debug)]
pub struct GcOptions<'a> {
    /// At most this many bytes remain (packs, the index, artifacts).
    pub max_size: u64,
    /// The engine configuration whose artifacts are kept (`Cache::gc` passes its own).
    /// With `Some`, the artifacts of every other configuration (another wasmtime
    /// version, other settings) are removed first: they are compiled code a process of
    /// that configuration compiles again when it needs it. With `None` they count
    /// toward the size and go with their modules.
    pub keep_engine: Option<&'a str>,
}

impl DirStore {
    /// Evicts least recently used modules until the cache holds at most `max_size` bytes,
    /// after removing what crashed writers left. See [`DirStore::gc_with`].
    pub fn gc(&self, max_size: u64, progress: impl FnMut(&ModuleId)) -> Result<GcReport, Error> {
        self.gc_with(
            &GcOptions {
                max_size,
                keep_engine: None,
            },
            progress,
        )
    }

    /// Garbage collection, holding the directory's lock exclusively (commits wait):
    /// leftovers first (see [`GcReport::leftovers_removed`]), then the artifacts of other
    /// engines when asked, then modules whole, least recently used first, until at most
    /// `max_size` bytes remain. `progress` is called after each evicted module. Files
    /// that vanish meanwhile (another process's gc) are not errors.
    pub fn gc_with(
        &self,
        options: &GcOptions<'_>,
        mut progress: impl FnMut(&ModuleId),
    ) -> Result<GcReport, Error> {
        self.require_writable()?;
        let _lock = self.lock_exclusive()?;
        let collected = self.gc_locked(options, &mut progress);
        let hints = self.index_changed();
        let mut report = collected?;
        report.plan_hints_removed = hints?;
        Ok(report)
    }

    /// [`DirStore::gc_with`]'s work, with the lock held.
    fn gc_locked(
        &self,
        options: &GcOptions<'_>,
        progress: &mut impl FnMut(&ModuleId),
    ) -> Result<GcReport, Error> {
        let before = self.size()?;
        let mut report = GcReport {
            leftovers_removed: self.remove_leftovers()?,
            ..GcReport::default()
        };
        if let Some(keep) = options.keep_engine {
            report.other_engine_artifacts_removed = self.remove_other_engines(keep)?;
        }
        let mut size = self.size()?;
        let mut evicted = BTreeSet::new();
        if size > options.max_size {
            let mut by_use: Vec<(SystemTime, ModuleId)> = self
                .modules()?
                .into_iter()
                .map(|id| {
                    let used = fs::metadata(self.used_path(&id))
                        .and_then(|m| m.modified())
                        .unwrap_or(UNIX_EPOCH);
                    (used, id)
                })
                .collect();
            by_use.sort();
            for (_, id) in by_use {
                if size <= options.max_size {
                    break;
                }
                size = size.saturating_sub(self.module_size(&id));
                evicted.insert(id);
                report.evicted.push(id);
            }
        }
        // The index first: no entry names an evicted module once its pack goes.
        let compacted = self.compact_index(&evicted)?;
        report.leftovers_removed += compacted.dangling as u64;
        for id in &report.evicted {
            self.remove_module_files(id)?;
            progress(id);
        }
        let size = self.size()?;
        report.remaining = size;
        report.freed = before.saturating_sub(size);
        Ok(report)
    }

    /// Removes a module whole (index entries, manifest, bytes, artifacts, use marker),
    /// in the reverse of the commit order, while no commit runs. To remove many, use
    /// [`DirStore::remove_all`]: each call rewrites the index's main table.
    pub fn remove(&self, id: &ModuleId) -> Result<(), Error> {
        self.remove_all(std::slice::from_ref(id))
    }

    /// Removes every module of `ids` whole, as [`DirStore::remove`] does one, under one
    /// hold of the exclusive lock and with one rewrite of the index's main table for all
    /// of them (the index first, so that no entry names a module whose files are gone).
    /// A module that is not here is no error.
    pub fn remove_all(&self, ids: &[ModuleId]) -> Result<(), Error> {
        self.require_writable()?;
        let _lock = self.lock_exclusive()?;
        let removing: BTreeSet<ModuleId> = ids.iter().copied().collect();
        let removed = self.compact_index(&removing).and_then(|_| {
            removing
                .iter()
                .try_for_each(|id| self.remove_module_files(id))
        });
        self.index_changed()?;
        removed
    }

    /// After gc or `remove` changed the index (even when it failed half-way): the index
    /// stamp moves on and the plan hints, stale now, are removed (`hint.rs`). Returns how
    /// many hints were removed.
    fn index_changed(&self) -> Result<u64, Error> {
        self.bump_index_stamp()?;
        self.remove_plan_hints()
    }

    /// Removes a module's pack, artifacts and use marker (its index entries are gone).
    fn remove_module_files(&self, id: &ModuleId) -> Result<(), Error> {
        remove_if_present(&self.pack_path(id))?;
        for engine in self.engine_keys()? {
            remove_dir_if_present(&self.artifact_dir(&engine, id))?;
        }
        remove_if_present(&self.used_path(id))
    }

    /// Bytes used by a module: its share of its pack file (a batch's pack is shared by
    /// its modules, and freed when the last of them goes) and its artifacts.
    fn module_size(&self, id: &ModuleId) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let mut size = fs::symlink_metadata(self.pack_path(id))
            .map_or(0, |meta| meta.len() / meta.nlink().max(1));
        for engine in self.engine_keys().unwrap_or_default() {
            if let Ok(files) = files_under(&self.artifact_dir(&engine, id)) {
                size += files.iter().map(|f| file_len(f)).sum::<u64>();
            }
        }
        size
    }

    /// The engine configurations that have artifacts here.
    fn engine_keys(&self) -> Result<Vec<String>, Error> {
        let dir = self.root().join("artifacts");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }

    /// Removes what no commit in progress can be writing (gc holds the lock
    /// exclusively): every temporary file; the files of the layout before packs;
    /// artifacts and use markers of modules that are not committed. (Index entries
    /// naming no pack are left out by the compaction that follows.) Returns how many
    /// files it removed.
    fn remove_leftovers(&self) -> Result<u64, Error> {
        let mut removed = 0;
        let mut remove = |path: &Path| -> Result<(), Error> {
            remove_if_present(path)?;
            removed += 1;
            Ok(())
        };
        for path in files_under(&self.root().join("tmp"))? {
            remove(&path)?;
        }
        // A link to a pack being placed over a damaged one (`.<random>.new`).
        for path in files_under(&self.root().join("packs"))? {
            if stem_id(&path, "lcpk").is_none() {
                remove(&path)?;
            }
        }
        for old in OLD_LAYOUT {
            for path in files_under(&self.root().join(old))? {
                remove(&path)?;
            }
            remove_dir_if_present(&self.root().join(old))?;
        }
        for prefix in read_dir_names(&self.root().join("index"))? {
            // `index/<nh>/<name-hash>/<id>.lcix`: one file per entry, before segments.
            if prefix.len() == 2 {
                let dir = self.root().join("index").join(&prefix);
                for path in files_under(&dir)? {
                    remove(&path)?;
                }
                remove_dir_if_present(&dir)?;
            }
        }
        let committed: BTreeSet<ModuleId> = self.modules()?.into_iter().collect();
        for path in files_under(&self.root().join("used"))? {
            if !path
                .file_name()
                .and_then(|name| name.to_str()?.parse::<ModuleId>().ok())
                .is_some_and(|id| committed.contains(&id))
            {
                remove(&path)?;
            }
        }
        for engine in self.engine_keys()? {
            let engine_dir = self.root().join("artifacts").join(&engine);
            for prefix in read_dir_names(&engine_dir)? {
                for module in read_dir_names(&engine_dir.join(&prefix))? {
                    if !module
                        .parse::<ModuleId>()
                        .is_ok_and(|id| committed.contains(&id))
                    {
                        let dir = engine_dir.join(&prefix).join(&module);
                        removed += files_under(&dir)?.len() as u64;
                        remove_dir_if_present(&dir)?;
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Removes the artifacts of every engine configuration but `keep`; returns how many
    /// files went.
    fn remove_other_engines(&self, keep: &str) -> Result<u64, Error> {
        let mut removed = 0;
        for engine in self.engine_keys()? {
            if engine != keep {
                let dir = self.root().join("artifacts").join(&engine);
                removed += files_under(&dir)?.len() as u64;
                remove_dir_if_present(&dir)?;
            }
        }
        Ok(removed)
    }
}

fn remove_dir_if_present(dir: &Path) -> Result<(), Error> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(dir, e)),
        _ => Ok(()),
    }
}

/// The names in a directory; none when it is absent.
fn read_dir_names(dir: &Path) -> Result<Vec<String>, Error> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(dir, e)),
    }
}
