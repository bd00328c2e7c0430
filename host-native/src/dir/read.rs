//! Reading the directory: candidates by function name (through the index view),
//! manifests and module bytes from packs (each checked), and listings for the CLI and
//! gc. Nothing here writes.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;

use linkcache_core::{Candidate, Manifest, ModuleId};

use super::pack::{OpenPack, PACK_MISSING};
use super::{DirStore, files_under, stem_id};
use crate::error::{Error, IoContext};

/// Whether a reason for skipping a module is a file that is not there (gc removed it,
/// a re-add may bring it back) rather than damage.
pub(crate) fn is_vanished(reason: &str) -> bool {
    reason == PACK_MISSING
}

impl DirStore {
    /// The candidates for `func_name`: one per module that defines it, with the time it
    /// was committed (see `index/`).
    pub fn candidates(&self, func_name: &str) -> Result<Vec<Candidate>, Error> {
        self.index_view()?.candidates(func_name)
    }

    /// The manifest of `id`: `Ok(Err(reason))` when it is missing or corrupt.
    pub fn manifest(&self, id: &ModuleId) -> Result<Result<Manifest, String>, Error> {
        let path = self.pack_path(id);
        Ok(match OpenPack::open(&path, id)? {
            None => Err(PACK_MISSING.into()),
            Some(Err(reason)) => Err(reason),
            Some(Ok(pack)) => pack.manifest(id).at(&path)?,
        })
    }

    /// The bytes of `id`, checked against the id: `Ok(Err(reason))` when missing or
    /// corrupt.
    pub fn module_bytes(&self, id: &ModuleId) -> Result<Result<Vec<u8>, String>, Error> {
        let path = self.pack_path(id);
        Ok(match OpenPack::open(&path, id)? {
            None => Err(PACK_MISSING.into()),
            Some(Err(reason)) => Err(reason),
            Some(Ok(pack)) => pack.wasm(id).at(&path)?,
        })
    }

    /// Every committed module (one whose pack exists), sorted.
    pub fn modules(&self) -> Result<Vec<ModuleId>, Error> {
        let mut ids: Vec<ModuleId> = files_under(&self.root().join("packs"))?
            .iter()
            .filter_map(|path| stem_id(path, "lcpk"))
            .collect();
        ids.sort();
        Ok(ids)
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

    /// Total bytes of packs, the index and artifacts (of every engine configuration).
    /// A pack file linked under several names (a batch's) counts once.
    pub fn size(&self) -> Result<u64, Error> {
        let mut total = 0;
        let mut seen = HashSet::new();
        // (`modules` and `manifests`: the layout before packs, until gc removes it.)
        for dir in ["packs", "index", "artifacts", "modules", "manifests"] {
            for file in files_under(&self.root().join(dir))? {
                if let Ok(meta) = fs::symlink_metadata(&file)
                    && (meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino())))
                {
                    total += meta.len();
                }
            }
        }
        Ok(total)
    }
}
