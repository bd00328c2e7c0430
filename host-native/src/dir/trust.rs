//! Whether the files of a cache directory can be trusted to hold native code, checked
//! on the directories and on the open file handle that runs, not on a path that can
//! change between the check and the use.
//!
//! A directory is trusted when it is owned by this user (or by root) and writable by
//! nobody else. When the root and every directory below it down to a file are trusted,
//! nobody else can rename, replace or plant anything along that path, so a file opened
//! there without following symbolic links, whose handle is owned by this user (or
//! root) and writable by nobody else, holds what this user wrote.

use std::fs::{self, File, Metadata};
use std::io;
use std::path::{Component, Path};

/// Whether precompiled code may be loaded from a cache directory, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The root is owned by this user (or root) and writable by nobody else.
    Trusted,
    /// Precompiled code is not loaded from this root, and nothing is written to it.
    Untrusted(String),
}

/// Trust of the root itself (a symbolic link to the root is followed: the user named
/// it).
pub(super) fn root_trust(root: &Path) -> Trust {
    match fs::metadata(root) {
        Ok(meta) => match owned_and_private(&meta, "directory") {
            Ok(()) => Trust::Trusted,
            Err(reason) => Trust::Untrusted(format!("the cache root {}: {reason}", root.display())),
        },
        Err(e) => Trust::Untrusted(format!(
            "cannot stat the cache root {}: {e}",
            root.display()
        )),
    }
}

/// How much [`check_dirs_below`] demands of each directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DirCheck {
    /// A real directory (not a symbolic link), owned by this user or root, writable by
    /// nobody else: what precompiled code needs.
    Trusted,
    /// A real directory, not a symbolic link: enough for module bytes and records,
    /// which every read checks, as long as nothing is written outside the root.
    InsideRoot,
}

/// Checks every directory from below `root` down to `dir` (inclusive) as `check` says.
/// `Ok(false)` when one of them does not exist yet.
pub(super) fn check_dirs_below(root: &Path, dir: &Path, check: DirCheck) -> Result<bool, String> {
    let relative = dir
        .strip_prefix(root)
        .map_err(|_| format!("{} is not inside the cache root", dir.display()))?;
    let mut path = root.to_path_buf();
    for component in relative.components() {
        let Component::Normal(name) = component else {
            return Err(format!(
                "{} is not a plain path below the root",
                dir.display()
            ));
        };
        path.push(name);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
        };
        if meta.file_type().is_symlink() {
            return Err(format!("{} is a symbolic link", path.display()));
        }
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", path.display()));
        }
        if check == DirCheck::Trusted {
            owned_and_private(&meta, "directory").map_err(|reason| {
                format!(
                    "{}: {reason} (`chmod -R go-w` on the cache root makes its precompiled \
                     code usable again)",
                    path.display()
                )
            })?;
        }
    }
    Ok(true)
}

/// Opens a file for reading without following a symbolic link at its last component,
/// and checks the handle: a regular file, owned by this user or root, writable by
/// nobody else.
pub(super) fn open_checked(path: &Path) -> io::Result<Result<(File, u64), String>> {
    let file = open_no_follow(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(Err(format!("{} is not a regular file", path.display())));
    }
    Ok(owned_and_private(&meta, "file")
        .map(|()| (file, meta.len()))
        .map_err(|reason| format!("{}: {reason}", path.display())))
}

#[cfg(unix)]
fn open_no_follow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Whether an open failed because the last component is a symbolic link
/// (`O_NOFOLLOW`).
#[cfg(unix)]
pub(super) fn is_symlink_refused(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::ELOOP)
}

#[cfg(not(unix))]
pub(super) fn is_symlink_refused(_error: &io::Error) -> bool {
    false
}

#[cfg(unix)]
fn owned_and_private(meta: &Metadata, what: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(format!(
            "the {what} is owned by uid {}, not by this user (uid {uid}) or root",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "the {what} is writable by group or others (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn owned_and_private(_meta: &Metadata, _what: &str) -> Result<(), String> {
    Err("ownership checks are implemented for Unix only".into())
}

/// Whether this process may create files in `dir` (a read-only mount answers no even
/// to root).
#[cfg(unix)]
pub(super) fn check_writable(dir: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
pub(super) fn check_writable(dir: &Path) -> io::Result<()> {
    if fs::metadata(dir)?.permissions().readonly() {
        Err(io::Error::new(io::ErrorKind::PermissionDenied, "read-only"))
    } else {
        Ok(())
    }
}

#[cfg(unix)]
pub(super) fn create_private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(not(unix))]
pub(super) fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)
}
