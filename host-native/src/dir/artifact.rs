//! Precompiled artifacts: found, checked and handed over as the one open file that
//! wasmtime then maps, so that what was checked is what runs.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;

use linkcache_core::ModuleId;

use super::{DirStore, trust};
use crate::error::{Error, IoContext};

/// The result of looking for an artifact.
#[derive(Debug)]
pub enum ArtifactLookup {
    /// An artifact whose directories, owner, mode and checksum were checked, open:
    /// deserialize this `file` (`Module::deserialize_open_file`), not the path.
    Found {
        /// The checked file, open for reading.
        file: File,
        /// Where it is (for messages).
        path: PathBuf,
        /// Its size in bytes.
        len: u64,
    },
    /// There is none.
    Absent,
    /// There was one, and it was corrupt (removed) or not trustworthy (left alone).
    Rejected(String),
}

impl DirStore {
    /// A checked artifact of `id` for the engine `engine_key`, or why there is none
    /// usable. Only a trusted directory offers artifacts. Each candidate file is opened
    /// once, without following symbolic links, below directories that are all checked
    /// (owned by this user or root, writable by nobody else, no symbolic link), its
    /// handle's owner and mode are checked, and its XXH3-128 is computed through that
    /// handle. Artifacts that fail the checksum are removed (deleting a mapped file is
    /// safe).
    pub fn artifact(&self, engine_key: &str, id: &ModuleId) -> Result<ArtifactLookup, Error> {
        if let trust::Trust::Untrusted(reason) = self.trust() {
            return Ok(ArtifactLookup::Rejected(reason));
        }
        let dir = self.artifact_dir(engine_key, id);
        match trust::check_dirs_below(self.root(), &dir, trust::DirCheck::Trusted) {
            Ok(true) => {}
            Ok(false) => return Ok(ArtifactLookup::Absent),
            Err(reason) => return Ok(ArtifactLookup::Rejected(reason)),
        }
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ArtifactLookup::Absent),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut rejected = None;
        for entry in entries {
            let path = entry.at(&dir)?.path();
            let Some(expected) = path
                .file_name()
                .and_then(OsStr::to_str)
                .and_then(|name| name.strip_suffix(".cwasm"))
                .and_then(|hex| u128::from_str_radix(hex, 16).ok())
            else {
                continue;
            };
            let (file, len) = match trust::open_checked(&path) {
                Ok(Ok(opened)) => opened,
                Ok(Err(reason)) => {
                    rejected = Some(reason);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if trust::is_symlink_refused(&e) => {
                    rejected = Some(format!("{} is a symbolic link", path.display()));
                    continue;
                }
                Err(e) => return Err(Error::io(&path, e)),
            };
            let sum = xxh3_128_of(&file, len).at(&path)?;
            if sum == expected {
                return Ok(ArtifactLookup::Found { file, path, len });
            }
            if self.is_writable() {
                let _ = fs::remove_file(&path);
            }
            rejected = Some(format!(
                "artifact {} failed its checksum and was removed",
                path.display()
            ));
        }
        Ok(rejected.map_or(ArtifactLookup::Absent, ArtifactLookup::Rejected))
    }

    /// Stores an artifact of `id` under a name derived from its checksum, durably.
    /// Nothing is written (and `Ok(None)` returned) when the directory is read-only or
    /// not trusted, or when the module is no longer committed (gc removed it meanwhile:
    /// an artifact nobody would collect); a directory on the way that is a symbolic link
    /// or writable by others is an error, and nothing is written.
    pub fn store_artifact(
        &self,
        engine_key: &str,
        id: &ModuleId,
        bytes: &[u8],
    ) -> Result<Option<PathBuf>, Error> {
        if !self.is_writable() || self.trust() != trust::Trust::Trusted {
            return Ok(None);
        }
        let _lock = self.lock_shared()?;
        if !self.contains(id) {
            return Ok(None);
        }
        let dir = self.artifact_dir(engine_key, id);
        if let Err(reason) = trust::check_dirs_below(self.root(), &dir, trust::DirCheck::Trusted) {
            return Err(Error::io(
                &dir,
                io::Error::new(io::ErrorKind::PermissionDenied, reason),
            ));
        }
        let sum = xxhash_rust::xxh3::xxh3_128(bytes);
        let path = dir.join(format!("{sum:032x}.cwasm"));
        // A regular file of that name holds these very bytes (its name is their
        // checksum); anything else there (a planted link) is replaced.
        if !fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_file()) {
            self.write_durably(path.clone(), bytes)?;
        }
        Ok(Some(path))
    }

    /// Removes an artifact that could not be deserialized.
    pub fn remove_artifact(&self, path: &std::path::Path) {
        if self.is_writable() {
            let _ = fs::remove_file(path);
        }
    }
}

/// The XXH3-128 of an open file of `len` bytes from its start, read through a buffer of
/// at most 64 KiB. Reading a large artifact whole into a fresh allocation cost 5-10x more
/// than the hash itself in a fresh process (2.6-6 ms instead of 0.5 ms for a 2.6 MB
/// artifact): page faults on the new buffer, not the checksum. A small artifact gets a
/// buffer of its own size, so a fresh process does not fault in 64 KiB to hash a few.
fn xxh3_128_of(mut file: &File, len: u64) -> io::Result<u128> {
    const MAX_BUFFER: u64 = 64 * 1024;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    // One byte more than the file, so that the read that finds its end is a short one.
    let mut buffer = vec![0u8; len.saturating_add(1).min(MAX_BUFFER) as usize];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok(hasher.digest128()),
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
