//! `verify`: every record of the directory checked, problems listed, nothing changed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use linkcache_core::IndexEntry;

use super::{DirStore, files_under, read_if_present, stem_id};
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
    /// Checks every record: module bytes against their id, manifests against their
    /// checksum and their module, index entries against their checksum and a committed
    /// module, artifacts against their checksum. Returns the problems found; an empty
    /// list means the cache is sound. Temporary files and unindexed bytes are not
    /// problems (a writer may be busy with them), and files that vanish during the scan
    /// (another process's gc) are skipped.
    pub fn verify(&self, mut progress: impl FnMut(&Path)) -> Result<Vec<Problem>, Error> {
        let mut problems = Vec::new();
        let mut problem = |path: &Path, reason: String| {
            problems.push(Problem {
                path: path.to_path_buf(),
                reason,
            })
        };
        for path in files_under(&self.root().join("manifests"))? {
            progress(&path);
            let Some(id) = stem_id(&path, "lcmf") else {
                problem(&path, "unexpected file name".into());
                continue;
            };
            if !path.exists() {
                continue;
            }
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
                    Err(reason) => problem(&self.module_path(&id), reason),
                },
                Err(reason) => problem(&path, reason),
            }
        }
        for path in files_under(&self.root().join("index"))? {
            progress(&path);
            let Some(bytes) = read_if_present(&path)? else {
                continue;
            };
            match IndexEntry::decode(&bytes) {
                Ok(entry) => {
                    if Some(entry.module) != stem_id(&path, "lcix")
                        || path.parent() != Some(&self.index_dir(&entry.func_name))
                    {
                        problem(&path, "index entry is filed under the wrong name".into());
                    } else if !self.contains(&entry.module) && path.exists() {
                        problem(
                            &path,
                            format!(
                                "indexes module {} which is not committed",
                                entry.module.short()
                            ),
                        );
                    }
                }
                Err(e) => problem(&path, format!("corrupt index entry: {e}")),
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
