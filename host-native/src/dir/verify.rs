//! `verify`: every record of the directory checked, problems listed, nothing changed.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use linkcache_core::ModuleId;

use super::{DirStore, files_under, is_vanished, read_if_present, stem_id};
use crate::error::Error;

/// One problem `verify` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file concerned.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl DirStore {
    /// Checks every record: each pack (its manifest against its checksum and its
    /// module, its bytes against their id), the index (table slots and segment records
    /// against their checksums, each entry against a committed module), artifacts
    /// against their checksum. Returns the problems found; an empty list means the
    /// cache is sound. Temporary files, unindexed packs and a segment's incomplete last
    /// record are not problems (a writer may be busy with them), and files that vanish
    /// during the scan (another process's gc) are skipped.
    pub fn verify(&self, mut progress: impl FnMut(&Path)) -> Result<Vec<Problem>, Error> {
        let mut problems = Vec::new();
        let mut problem = |path: &Path, reason: String| {
            problems.push(Problem {
                path: path.to_path_buf(),
                reason,
            })
        };
        for path in files_under(&self.root().join("packs"))? {
            progress(&path);
            let Some(id) = stem_id(&path, "lcpk") else {
                problem(&path, "unexpected file name".into());
                continue;
            };
            match self.manifest(&id)? {
                Ok(manifest) => match self.module_bytes(&id)? {
                    Ok(bytes) if bytes.len() as u64 != manifest.byte_len => problem(
                        &path,
                        format!(
                            "manifest says {} bytes, module has {}",
                            manifest.byte_len,
                            bytes.len()
                        ),
                    ),
                    Ok(_) => {}
                    Err(reason) if is_vanished(&reason) => {}
                    Err(reason) => problem(&path, reason),
                },
                Err(reason) if is_vanished(&reason) => {}
                Err(reason) => problem(&path, reason),
            }
        }
        progress(&self.root().join("index"));
        let index = self.whole_index()?;
        for damage in index.damage {
            problem(&damage.path, damage.reason);
        }
        let mut indexed: BTreeMap<ModuleId, usize> = BTreeMap::new();
        for (_, module) in index.entries.keys() {
            *indexed.entry(*module).or_default() += 1;
        }
        for (module, entries) in indexed {
            if !self.contains(&module) {
                problem(
                    &self.root().join("index"),
                    format!(
                        "{entries} index entries name module {}, which is not committed",
                        module.short()
                    ),
                );
            }
        }
        for path in files_under(&self.root().join("artifacts"))? {
            progress(&path);
            let expected = path
                .file_name()
                .and_then(OsStr::to_str)
                .and_then(|name| name.strip_suffix(".cwasm"))
                .and_then(|hex| u128::from_str_radix(hex, 16).ok());
            let Some(bytes) = read_if_present(&path)? else {
                continue;
            };
            if expected != Some(xxhash_rust::xxh3::xxh3_128(&bytes)) {
                problem(&path, "artifact does not match its checksum".into());
            }
        }
        Ok(problems)
    }
}
