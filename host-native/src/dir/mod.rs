//! The on-disk cache directory: its layout and the promises it keeps to readers, writers
//! and `gc` running in many processes at once.
//!
//! ```text
//! <root>/                         0700, owned by the user
//!   lock                          advisory lock: commits hold it shared, gc exclusive
//!   packs/<ab>/<id>.lcpk          the pack holding module <id> (its BLAKE3): manifest
//!                                 record and wasm bytes (`pack.rs`); the modules of a
//!                                 batch share one pack file, linked under each name
//!   index/log/<pid>-<random>.lcil index segments: one append-only log per writing
//!                                 DirStore, one record per committed module
//!   index/table.lcit              the compacted index, sorted by function name hash,
//!   index/recent.lcit             in a main and a recent table (`index/`)
//!   artifacts/<engine>/<ab>/<id>/<xxh3>.cwasm
//!                                 wasmtime precompiled code; <engine> is a hash of
//!                                 Engine::precompile_compatibility_hash, <xxh3> the
//!                                 XXH3-128 of the file, checked before deserializing
//!   used/<ab>/<id>                empty marker whose mtime is the module's last use (gc)
//!   index-stamp                   grows by one byte whenever the index changes
//!   plans/<ab>/<name-hash>.lcph   plan hint: what the last plan of a target read, valid
//!                                 while the index stamp is the one it records (`hint.rs`)
//!   plans/<ab>/<name-hash>.lcfp   the plan a store that had loaded nothing got, and the
//!                                 global decisions it depended on (`hint.rs`)
//!   tmp/<pid>-<random><name>      files being written, created exclusively
//! ```
//!
//! A commit creates one file (the pack of its modules) and appends one record per module
//! to its segment, whatever the number of modules and functions: see "What a crash
//! leaves".
//! (The layout before packs, `modules/`, `manifests/` and one file per index entry
//! under `index/<nh>/`, is not read; gc removes it.)
//!
//! # What a reader may see
//!
//! Packs and tables are written to `tmp/` under an unpredictable name and linked or
//! renamed into place, so such a file is either absent or complete; segments only grow,
//! and a reader parses their complete records (`index/segment.rs`). A commit links its
//! pack into place before it appends their index records, and `gc` leaves a module's entries
//! out of the index before it removes its pack, while no commit runs (it holds `lock`
//! exclusively, commits hold it shared). Readers take no lock, so a reader may see:
//!
//! - a module that gc removes while the reader plans or loads it: its pack vanishes,
//!   and that target skips the module (a duplicate or a miss) without remembering it as
//!   broken, so a later re-add by any process makes it usable again;
//! - damaged files (a disk error, a hand edit): every read is checked (a pack's
//!   manifest against its checksum, its bytes against their BLAKE3 id, index records
//!   and table slots against their checksums, artifacts against the XXH3-128 in their
//!   name). A damaged pack is a broken candidate and a re-add replaces it; a damaged
//!   index record or slot is a missing entry, and a re-add enters it again.
//!
//! # What a crash leaves
//!
//! A commit stages one pack for the modules it writes in `tmp/`, links it into place
//! under each module's name, appends the index records of the batch to its segment
//! with one `write`, moves the index stamp and makes all of it durable with one sync
//! before it returns (`commit.rs`, `write.rs`): one sync per batch, whatever its number
//! of modules and functions. (A pack that replaces a damaged one gets a new link beside
//! it, renamed over it.)
//!
//! - After a `SIGKILL` (the page cache survives, renames are seen in order): a commit
//!   that did not return left at most temporary files (removed by gc), packs that no
//!   index record reaches (orphans, completed by a re-add), and an incomplete record at
//!   the end of its segment (never read as an entry).
//! - After a power loss, in addition: what a commit that returned `Ok` wrote is on
//!   disk. Of a commit that did not return, any part may be missing, and the file
//!   system may have made the segment's new length durable before the pack's data: an
//!   index record may then name a pack that is missing or empty. That reads as a miss
//!   (like a module gc removed; the next compaction leaves the record out) or a broken
//!   candidate, never as a wrong module, and the next add of the same bytes writes the
//!   pack again. (Versions before packs synced twice, so that no index entry could
//!   outlive its module's files; one sync per commit halves what a commit waits for,
//!   and what a caller can observe is the same: `Ok` is durable, nothing wrong is
//!   loaded, a re-add repairs.) This relies on `syncfs` (Linux) or `fsync` flushing
//!   data and directory entries, which journaling file systems (ext4, xfs, btrfs) do.
//!
//! Files other than segments are never rewritten in place: another process may have
//! memory-mapped an artifact, and changing a mapped file would change the code it runs,
//! and a batch's pack is the pack of all its modules. A replacement gets a new name
//! (artifacts are named by checksum) or a rename over the old name. Segments are only
//! appended to, by the one `DirStore` that created them. gc removes a module's name of
//! its pack; the file goes with the last name.
//!
//! # Trust and read-only directories
//!
//! Precompiled code runs natively, so it is loaded only from a [trusted](Trust) root
//! and only through a file handle whose owner and mode were checked, opened without
//! following symbolic links, below directories that were all checked the same way
//! (`trust.rs`). A root that is not trusted is opened read-only: this process never
//! writes to it. A directory that cannot be written (a read-only mount, a directory
//! of another user) also opens read-only ([`Access`]): modules load from their
//! artifacts when compatible ones exist, compile in memory otherwise, and adding is an
//! [`Error::ReadOnly`].

mod artifact;
mod commit;
mod gc;
mod hint;
mod index;
mod pack;
mod read;
mod trust;
mod verify;
mod write;

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use linkcache_core::{Candidate, Manifest, ModuleId, Store};

pub use artifact::ArtifactLookup;
pub use commit::CommitReport;
#[cfg(feature = "remote")]
pub(crate) use commit::RankedCommit;
pub use gc::{GcOptions, GcReport};
pub(crate) use hint::{FreshPlan, PlanAnswers, PlanHint};
pub(crate) use read::is_vanished;
pub use trust::Trust;
pub use verify::Problem;

use crate::error::{Error, IoContext};

/// A cache directory. Cheap to clone; safe to share between threads and processes.
#[derive(Clone, Debug)]
pub struct DirStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    trust: Trust,
    access: Access,
    /// What this process read of the function index.
    index: Mutex<index::IndexView>,
    /// The index segment this store appends to, once it has committed.
    writer: Mutex<Option<index::SegmentWriter>>,
}

/// Whether this process may write to a cache directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Modules can be added and artifacts stored.
    ReadWrite,
    /// Nothing is written; the reason says why (a read-only file system, no
    /// permission, a root that is not trusted).
    ReadOnly(String),
}

const DIRS: [&str; 5] = ["packs", index::LOG, "artifacts", "used", "tmp"];

impl DirStore {
    /// Opens (creating when absent, mode 0700) the cache directory at `root`. A directory
    /// this process cannot or must not write opens read-only (see [`DirStore::access`]).
    pub fn open(root: impl Into<PathBuf>) -> Result<DirStore, Error> {
        let root: PathBuf = root.into();
        match fs::metadata(&root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::io(
                    &root,
                    io::Error::new(
                        io::ErrorKind::NotADirectory,
                        "the cache root is not a directory",
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                trust::create_private_dir(&root).at(&root)?;
            }
            Err(e) => return Err(Error::io(&root, e)),
        }
        let trust = trust::root_trust(&root);
        let access = match &trust {
            Trust::Untrusted(reason) => {
                Access::ReadOnly(format!("the cache root is not trusted: {reason}"))
            }
            Trust::Trusted => writable_access(&root)?,
        };
        if let Access::ReadOnly(reason) = &access {
            tracing::info!(dir = %root.display(), %reason, "linkcache: cache directory opened read-only");
        }
        Ok(DirStore {
            inner: Arc::new(Inner {
                root,
                trust,
                access,
                index: Mutex::default(),
                writer: Mutex::default(),
            }),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Whether precompiled code read from this root can be trusted: the root must be a
    /// directory owned by the current user (or root) and not writable by group or
    /// others. Each artifact and the directories above it are checked again when it is
    /// loaded.
    pub fn trust(&self) -> Trust {
        self.inner.trust.clone()
    }

    /// Whether this process writes to the directory.
    pub fn access(&self) -> &Access {
        &self.inner.access
    }

    /// Whether this process writes to the directory.
    pub fn is_writable(&self) -> bool {
        self.inner.access == Access::ReadWrite
    }

    /// `Err(Error::ReadOnly)` unless modules can be added (checked before analyzing a
    /// module, so that a read-only cache refuses an add at once).
    pub(crate) fn require_writable_for_add(&self) -> Result<(), Error> {
        self.require_writable()
    }

    /// `Err(Error::ReadOnly)` unless the directory may be written.
    fn require_writable(&self) -> Result<(), Error> {
        match &self.inner.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly(reason) => Err(Error::ReadOnly {
                dir: self.root().to_path_buf(),
                reason: reason.clone(),
            }),
        }
    }

    fn pack_path(&self, id: &ModuleId) -> PathBuf {
        sharded(self.root().join("packs"), id, ".lcpk")
    }

    fn used_path(&self, id: &ModuleId) -> PathBuf {
        sharded(self.root().join("used"), id, "")
    }

    /// The directory holding the artifacts of `id` for the engine `engine_key`.
    fn artifact_dir(&self, engine_key: &str, id: &ModuleId) -> PathBuf {
        sharded(self.root().join("artifacts").join(engine_key), id, "")
    }

    /// Whether the module's pack (bytes and manifest) is committed.
    pub fn contains(&self, id: &ModuleId) -> bool {
        self.pack_path(id).exists()
    }

    /// Records that `id` was used now (for `gc`); failures are ignored, the marker is
    /// advisory. A read-only directory keeps no markers.
    pub fn touch(&self, id: &ModuleId) {
        if !self.is_writable() {
            return;
        }
        let path = self.used_path(id);
        // A marker that exists costs one system call.
        if set_times_to_now(&path).is_ok() {
            return;
        }
        // Otherwise create it (a new file's times are now).
        let _ = open_to_append(&path).or_else(|_| {
            trust::create_private_dir(path.parent().expect("used/<ab>/<id> has a parent"))?;
            open_to_append(&path)
        });
    }
}

/// `ReadWrite` when every directory of the layout exists (or can be created) and can
/// be written by this process, else `ReadOnly` with the reason.
fn writable_access(root: &Path) -> Result<Access, Error> {
    for dir in DIRS {
        let path = root.join(dir);
        match trust::create_private_dir(&path) {
            Ok(()) => {}
            Err(e) if cannot_write(&e) => {
                return Ok(Access::ReadOnly(format!(
                    "cannot create {}: {e}",
                    path.display()
                )));
            }
            Err(e) => return Err(Error::io(&path, e)),
        }
        if let Err(e) = trust::check_writable(&path) {
            return Ok(Access::ReadOnly(format!(
                "cannot write {}: {e}",
                path.display()
            )));
        }
    }
    Ok(Access::ReadWrite)
}

/// Whether an error means "this process may not write here" rather than a failure.
fn cannot_write(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied
    ) || error.raw_os_error() == Some(libc::EPERM)
}

impl Store for DirStore {
    type Error = Error;

    fn candidates(&mut self, func_name: &str) -> Result<Vec<Candidate>, Error> {
        DirStore::candidates(self, func_name)
    }

    fn manifest(&mut self, module: &ModuleId) -> Result<Result<Arc<Manifest>, String>, Error> {
        Ok(DirStore::manifest(self, module)?.map(Arc::new))
    }
}

/// `<dir>/<first two hex digits of id>/<id><suffix>`: the layout's sharding by module.
fn sharded(dir: PathBuf, id: &ModuleId, suffix: &str) -> PathBuf {
    let hex = id.to_string();
    dir.join(&hex[..2]).join(format!("{hex}{suffix}"))
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// Opens a small file of the layout to append to (a use marker, the index stamp),
/// creating it with mode 0600. A symbolic link planted at its name is not followed (the
/// open fails), so nothing outside the root is written.
fn open_to_append(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Sets a file's access and modification times to now, by name, without following a
/// symbolic link planted at `path` (the link's own times change, nothing it points to).
fn set_times_to_now(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `path` is NUL-terminated and outlives the call; a null `times` means now.
    let result = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            std::ptr::null(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes a file; one already gone (another process's gc) is not an error.
fn remove_if_present(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// The module id in a file name `<id>.<ext>`.
fn stem_id(path: &Path, ext: &str) -> Option<ModuleId> {
    if path.extension() != Some(OsStr::new(ext)) {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

/// Every file under `dir`, recursively, sorted; an absent directory has none, and a
/// directory that vanishes during the scan (another process's gc) is skipped.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&entry.path(), e)),
            };
            if file_type.is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a file, `Ok(None)` when it does not exist (or vanished).
fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}
