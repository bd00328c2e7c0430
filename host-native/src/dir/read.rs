//! Reading the directory: index entries by function name, manifests and module bytes
//! (each checked), and listings for the CLI and gc. Nothing here writes.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io;

use linkcache_core::{Candidate, IndexEntry, Manifest, ModuleId};

use super::{DirStore, files_under, read_if_present, stem_id};
use crate::error::{Error, IoContext};

/// Why a module is skipped when its manifest is not there (never committed, or removed
/// by gc meanwhile): not damage, so not remembered as broken.
pub(crate) const MANIFEST_MISSING: &str = "its manifest is missing";
/// Why a module is skipped when its bytes are not there.
pub(crate) const BYTES_MISSING: &str = "its wasm bytes are missing";

/// Whether a reason for skipping a module is a file that is not there (gc removed it,
/// a re-add may bring it back) rather than damage.
pub(crate) fn is_vanished(reason: &str) -> bool {
    reason == MANIFEST_MISSING || reason == BYTES_MISSING
}

impl DirStore {
    /// The index entries for `func_name`, read from its own directory (no scan of the
    /// cache). An entry whose record is corrupt still names its module in its file name:
    /// it is offered last (the planner checks the module's manifest anyway), and
    /// `verify` reports it.
    pub fn candidates(&self, func_name: &str) -> Result<Vec<Candidate>, Error> {
        let dir = self.index_dir(func_name);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut candidates = Vec::new();
        for entry in entries {
            let path = entry.at(&dir)?.path();
            if path.extension() != Some(OsStr::new("lcix")) {
                continue;
            }
            let Some(named) = stem_id(&path, "lcix") else {
                continue;
            };
            // An entry removed since the listing (gc) is no candidate.
            let Some(bytes) = read_if_present(&path)? else {
                continue;
            };
            match IndexEntry::decode(&bytes) {
                Ok(entry) if entry.func_name == func_name && entry.module == named => candidates
                    .push(Candidate {
                        module: entry.module,
                        committed_at: entry.committed_at,
                    }),
                _ => candidates.push(Candidate {
                    module: named,
                    committed_at: u64::MAX,
                }),
            }
        }
        Ok(candidates)
    }

    /// The manifest of `id`: `Ok(Err(reason))` when it is missing or corrupt.
    pub fn manifest(&self, id: &ModuleId) -> Result<Result<Manifest, String>, Error> {
        let Some(bytes) = read_if_present(&self.manifest_path(id))? else {
            return Ok(Err(MANIFEST_MISSING.into()));
        };
        Ok(match Manifest::decode(&bytes) {
            Ok(manifest) if manifest.module == *id => Ok(manifest),
            Ok(manifest) => Err(format!(
                "its manifest describes another module ({})",
                manifest.module.short()
            )),
            Err(e) => Err(format!("its manifest is corrupt: {e}")),
        })
    }

    /// The bytes of `id`, checked against the id: `Ok(Err(reason))` when missing or
    /// corrupt.
    pub fn module_bytes(&self, id: &ModuleId) -> Result<Result<Vec<u8>, String>, Error> {
        let Some(bytes) = read_if_present(&self.module_path(id))? else {
            return Ok(Err(BYTES_MISSING.into()));
        };
        Ok(if id.matches(&bytes) {
            Ok(bytes)
        } else {
            Err(format!(
                "its wasm bytes are corrupt ({} bytes that do not hash to the module id)",
                bytes.len()
            ))
        })
    }

    /// Every committed module (one whose manifest exists), sorted.
    pub fn modules(&self) -> Result<Vec<ModuleId>, Error> {
        let mut ids: Vec<ModuleId> = files_under(&self.root().join("manifests"))?
            .iter()
            .filter_map(|path| stem_id(path, "lcmf"))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every index entry: func_name -> entries, each list in commit order (the order
    /// duplicate resolution prefers), sorted by name.
    pub fn index(&self) -> Result<BTreeMap<String, Vec<IndexEntry>>, Error> {
        let mut index: BTreeMap<String, Vec<IndexEntry>> = BTreeMap::new();
        for path in files_under(&self.root().join("index"))? {
            let Some(bytes) = read_if_present(&path)? else {
                continue;
            };
            if let Ok(entry) = IndexEntry::decode(&bytes) {
                index
                    .entry(entry.func_name.clone())
                    .or_default()
                    .push(entry);
            }
        }
        for entries in index.values_mut() {
            entries.sort_by_key(|e| (e.committed_at, e.module));
        }
        Ok(index)
    }

    /// Committed modules in commit order: by the earliest `committed_at` of their index
    /// entries (modules without entries last, by id). A bundle exported in this order
    /// and imported keeps the order of its duplicates.
    pub fn modules_in_commit_order(&self) -> Result<Vec<ModuleId>, Error> {
        let mut first: BTreeMap<ModuleId, u64> = BTreeMap::new();
        for entries in self.index()?.values() {
            for entry in entries {
                let time = first.entry(entry.module).or_insert(u64::MAX);
                *time = (*time).min(entry.committed_at);
            }
        }
        let mut ids = self.modules()?;
        ids.sort_by_key(|id| (first.get(id).copied().unwrap_or(u64::MAX), *id));
        Ok(ids)
    }

    /// Total bytes of modules, manifests, index entries and artifacts (of every engine
    /// configuration).
    pub fn size(&self) -> Result<u64, Error> {
        let mut total = 0;
        for dir in ["modules", "manifests", "index", "artifacts"] {
            total += files_under(&self.root().join(dir))?
                .iter()
                .map(|f| super::file_len(f))
                .sum::<u64>();
        }
        Ok(total)
    }
}
