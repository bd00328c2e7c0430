//! How files get into the cache directory: staged as exclusive temporary files with
//! unpredictable names, made durable together, renamed into place; and the advisory
//! lock that keeps commits and gc apart.
//!
//! Durability costs a constant number of syncs per batch of files, not one per file:
//! on Linux one `syncfs` of the cache's file system flushes every staged file, every
//! rename and every append at once (elsewhere each file and each directory touched is
//! fsynced). A batch of modules therefore costs one sync whatever its number of modules
//! and functions (`commit.rs`). `syncfs` also flushes what other programs wrote to the
//! same file system, so on a disk busy with other writers one sync can take longer; it
//! is still one.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::TempPath;

use super::{DirStore, trust};
use crate::error::{Error, IoContext};

/// A file written to `tmp/` and closed (a batch of thousands of files holds no
/// descriptors), not yet in place; removed when dropped unplaced.
pub(super) struct Staged {
    file: TempPath,
    destination: PathBuf,
}

/// Holds the directory's advisory lock (shared or exclusive) until dropped.
pub(super) struct LockGuard {
    _file: File,
}

impl DirStore {
    /// Writes `bytes` to a new temporary file for `destination`: created exclusively
    /// (an existing file or a planted symbolic link makes it fail, not follow), with a
    /// name nobody can predict, mode 0600. Not synced yet: see [`DirStore::sync`].
    pub(super) fn stage(&self, destination: PathBuf, bytes: &[u8]) -> Result<Staged, Error> {
        let tmp = self.root().join("tmp");
        let suffix = destination
            .file_name()
            .map(|name| format!("-{}", name.to_string_lossy()))
            .unwrap_or_default();
        let mut file = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .suffix(&suffix)
            .tempfile_in(&tmp)
            .at(&tmp)?;
        file.write_all(bytes).at(file.path())?;
        Ok(Staged {
            file: file.into_temp_path(),
            destination,
        })
    }

    /// Renames staged files into place (creating their directories, mode 0700, after
    /// checking that no directory on the way is a symbolic link). A file
    /// already at a destination is replaced (a repair), never modified in place.
    pub(super) fn place(&self, staged: Vec<Staged>) -> Result<(), Error> {
        let mut checked: BTreeSet<PathBuf> = BTreeSet::new();
        for Staged { file, destination } in staged {
            self.prepare_parent(&destination, &mut checked)?;
            file.persist(&destination)
                .map_err(|e| Error::io(&destination, e.error))?;
        }
        Ok(())
    }

    /// Links a staged file into place under each of `destinations` (creating their
    /// directories, checked as [`DirStore::place`] does): one file, many names, so a
    /// batch of modules creates one inode. A file already at a destination (a damaged
    /// pack being repaired) is replaced by a rename from a new link with an
    /// unpredictable name beside it, never modified in place. The staged name itself is
    /// removed when `staged` is dropped.
    pub(super) fn place_under(
        &self,
        staged: &Staged,
        destinations: &[PathBuf],
    ) -> Result<(), Error> {
        let source = staged.file_path();
        let mut checked: BTreeSet<PathBuf> = BTreeSet::new();
        for destination in destinations {
            let parent = self.prepare_parent(destination, &mut checked)?;
            match std::fs::hard_link(source, destination) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let link = tempfile::Builder::new()
                        .prefix(".")
                        .suffix(".new")
                        .make_in(&parent, |path| std::fs::hard_link(source, path))
                        .at(&parent)?;
                    link.into_temp_path()
                        .persist(destination)
                        .map_err(|e| Error::io(destination, e.error))?;
                }
                Err(e) => return Err(Error::io(destination, e)),
            }
        }
        Ok(())
    }

    /// Prepares the directory `destination` goes in ([`DirStore::prepare_dir`]) unless
    /// `checked` says it was already, and returns it. No symbolic link on the way, so
    /// nothing lands outside the root; modes matter for precompiled code only, which
    /// `store_artifact` checks itself.
    fn prepare_parent(
        &self,
        destination: &Path,
        checked: &mut BTreeSet<PathBuf>,
    ) -> Result<PathBuf, Error> {
        let parent = destination
            .parent()
            .expect("every destination is below the root")
            .to_path_buf();
        if !checked.contains(&parent) {
            self.prepare_dir(&parent)?;
            checked.insert(parent.clone());
        }
        Ok(parent)
    }

    /// Creates `dir` (mode 0700) when missing, after checking that no directory on the
    /// way is a symbolic link, and checks again.
    fn prepare_dir(&self, dir: &Path) -> Result<(), Error> {
        let inside_root =
            || match trust::check_dirs_below(self.root(), dir, trust::DirCheck::InsideRoot) {
                Ok(_) => Ok(()),
                Err(reason) => Err(Error::io(
                    dir,
                    io::Error::new(io::ErrorKind::PermissionDenied, reason),
                )),
            };
        inside_root()?;
        trust::create_private_dir(dir).at(dir)?;
        inside_root()
    }

    /// Makes durable every file staged and every rename done so far under `paths` (the
    /// files and directories concerned; on Linux one `syncfs` covers them all).
    pub(super) fn sync(&self, paths: &[&Path]) -> Result<(), Error> {
        sync_all(self.root(), paths)
    }

    /// Writes one file durably: staged, synced, renamed, synced.
    pub(super) fn write_durably(&self, destination: PathBuf, bytes: &[u8]) -> Result<(), Error> {
        let staged = self.stage(destination.clone(), bytes)?;
        self.sync(&[&staged.file])?;
        self.place(vec![staged])?;
        self.sync(&[destination.parent().unwrap_or(self.root())])
    }

    /// Takes the lock shared (commits, artifact writes): many at once, none while gc
    /// runs.
    pub(super) fn lock_shared(&self) -> Result<LockGuard, Error> {
        let file = self.lock_file()?;
        file.lock_shared().at(&self.root().join("lock"))?;
        Ok(LockGuard { _file: file })
    }

    /// Takes the lock exclusively when no one holds it (an index compaction after a
    /// commit): `Ok(None)` when someone does.
    pub(super) fn try_lock_exclusive(&self) -> Result<Option<LockGuard>, Error> {
        let file = self.lock_file()?;
        match file.try_lock() {
            Ok(()) => Ok(Some(LockGuard { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&self.root().join("lock"), e)),
        }
    }

    /// Takes the lock exclusively (gc): waits for running commits, holds off new ones.
    pub(super) fn lock_exclusive(&self) -> Result<LockGuard, Error> {
        let file = self.lock_file()?;
        file.lock().at(&self.root().join("lock"))?;
        Ok(LockGuard { _file: file })
    }

    /// A new open file description of `lock` for every holder: a lock taken through one
    /// description would be released for every thread by the first unlock.
    fn lock_file(&self) -> Result<File, Error> {
        let path = self.root().join("lock");
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at(&path)
    }
}

impl Staged {
    /// Where the file is now (in `tmp/`).
    pub(super) fn file_path(&self) -> &Path {
        &self.file
    }
}

#[cfg(target_os = "linux")]
fn sync_all(root: &Path, _paths: &[&Path]) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    let dir = File::open(root).at(root)?;
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(Error::io(root, io::Error::last_os_error()))
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_all(_root: &Path, paths: &[&Path]) -> Result<(), Error> {
    for path in paths {
        File::open(path).and_then(|file| file.sync_all()).at(path)?;
        if let Some(parent) = path.parent() {
            let _ = File::open(parent).and_then(|dir| dir.sync_all());
        }
    }
    Ok(())
}
