//! Trust checked on the directories and the file that runs: group-writable directories,
//! symbolic links, the checked artifact handle, a root not trusted, directories private
//! under a loose umask, and read-only directories that serve calls.

use std::fs;
use std::path::{Path, PathBuf};

use linkcache_native::{Access, ArtifactLookup, Cache, Error};

use crate::support::{artifacts, files_under, linkcache, stderr, stdout, util};
use crate::{dup_value, duplicate, sq};

#[test]
fn a_group_writable_directory_above_an_artifact_disables_that_precompiled_code() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cache = Cache::open(root).unwrap();
    cache.add_module(&util()).unwrap();
    assert_eq!(sq(&cache, 2).unwrap(), 4);
    drop(cache);
    let artifact = artifacts(root)[0].clone();
    let engine_dir = artifact.ancestors().nth(3).unwrap().to_path_buf();
    fs::set_permissions(&engine_dir, fs::Permissions::from_mode(0o775)).unwrap();

    let cache = Cache::open(root).unwrap();
    assert_eq!(sq(&cache, 3).unwrap(), 9);
    let stats = cache.stats();
    assert_eq!(
        (
            stats.artifacts_deserialized,
            stats.artifacts_rejected,
            stats.modules_compiled
        ),
        (0, 1, 1)
    );
    // Nor is a new artifact written below that directory.
    assert_eq!(stats.artifacts_written, 0);
    assert_eq!(artifacts(root), [artifact]);
}

#[test]
fn symbolic_links_to_artifacts_are_not_followed_and_nothing_outside_the_root_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let cache = Cache::open(&root).unwrap();
    cache.add_module(&util()).unwrap();
    assert_eq!(sq(&cache, 2).unwrap(), 4);
    drop(cache);
    let artifact = artifacts(&root)[0].clone();

    // The artifact file itself a link to a copy outside the root.
    let copy = outside.join("copy.cwasm");
    fs::rename(&artifact, &copy).unwrap();
    std::os::unix::fs::symlink(&copy, &artifact).unwrap();
    let cache = Cache::open(&root).unwrap();
    assert_eq!(sq(&cache, 3).unwrap(), 9);
    assert_eq!(cache.stats().artifacts_deserialized, 0);
    assert_eq!(cache.stats().artifacts_rejected, 1);
    drop(cache);

    // The module's artifact directory a link to a directory outside the root: nothing
    // is loaded from it, and the artifact written after compiling does not land there.
    let module_dir = artifact.parent().unwrap().to_path_buf();
    fs::remove_dir_all(&module_dir).unwrap();
    let planted = outside.join("planted");
    fs::create_dir(&planted).unwrap();
    fs::copy(&copy, planted.join(artifact.file_name().unwrap())).unwrap();
    std::os::unix::fs::symlink(&planted, &module_dir).unwrap();
    let before = files_under(&outside);
    let cache = Cache::open(&root).unwrap();
    assert_eq!(sq(&cache, 4).unwrap(), 16);
    let stats = cache.stats();
    assert_eq!(
        (stats.artifacts_deserialized, stats.modules_compiled),
        (0, 1)
    );
    assert_eq!(stats.artifacts_written, 0);
    assert_eq!(stats.artifact_write_errors, 1);
    assert_eq!(
        files_under(&outside),
        before,
        "nothing written outside the root"
    );
}

#[test]
fn the_checked_artifact_handle_is_what_runs_even_if_the_path_is_replaced_after_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let id = cache.add_module(&util()).unwrap();
    assert_eq!(sq(&cache, 2).unwrap(), 4);
    let key = artifacts(dir.path())[0]
        .ancestors()
        .nth(3)
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let ArtifactLookup::Found { file, path, .. } = cache.dir().artifact(&key, &id).unwrap() else {
        panic!("the artifact is found");
    };
    // Someone swaps the file after the check: a rename of other bytes over its name.
    let swap = dir.path().join("tmp").join("swap");
    fs::write(&swap, vec![0xcc; 4096]).unwrap();
    fs::rename(&swap, &path).unwrap();
    // SAFETY: the handle was checked by `artifact`, which is what this test is about.
    let module = unsafe { wasmtime::Module::deserialize_open_file(cache.engine(), file) }.unwrap();
    let mut store = wasmtime::Store::new(cache.engine(), ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let f = instance
        .get_typed_func::<i64, i64>(&mut store, "util.sq")
        .unwrap();
    assert_eq!(f.call(&mut store, 12).unwrap(), 144);
    // The swapped path fails its checksum on the next lookup.
    assert!(matches!(
        cache.dir().artifact(&key, &id).unwrap(),
        ArtifactLookup::Rejected(_)
    ));
}

#[test]
fn a_cache_root_not_trusted_is_never_written() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    Cache::open(&root).unwrap().add_module(&util()).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    let before = files_under(&root);
    let cache = Cache::open(&root).unwrap();
    assert!(matches!(cache.dir().access(), Access::ReadOnly(r) if r.contains("not trusted")));
    assert_eq!(sq(&cache, 3).unwrap(), 9);
    assert!(matches!(
        cache.add_module(&duplicate(1)),
        Err(Error::ReadOnly { .. })
    ));
    assert_eq!(
        files_under(&root),
        before,
        "not even a use marker or an artifact"
    );
}

/// A read-only view of `source`: a read-only bind mount (as root), else the same
/// directory with write permission removed (for a user that is not root).
struct ReadOnlyView {
    path: PathBuf,
    mounted: bool,
}

impl ReadOnlyView {
    fn of(source: &Path, at: &Path) -> Option<ReadOnlyView> {
        use std::process::Command;
        fs::create_dir_all(at).unwrap();
        let ok = |c: &mut Command| {
            c.stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if ok(Command::new("mount").arg("--bind").arg(source).arg(at)) {
            if ok(Command::new("mount")
                .args(["-o", "remount,bind,ro"])
                .arg(at))
            {
                return Some(ReadOnlyView {
                    path: at.to_path_buf(),
                    mounted: true,
                });
            }
            ok(Command::new("umount").arg(at));
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return None; // root writes through permissions: only a mount is read-only
        }
        ok(Command::new("chmod").args(["-R", "a-w"]).arg(source));
        Some(ReadOnlyView {
            path: source.to_path_buf(),
            mounted: false,
        })
    }
}

impl Drop for ReadOnlyView {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg(&self.path)
                .status();
        } else {
            let _ = std::process::Command::new("chmod")
                .args(["-R", "u+w"])
                .arg(&self.path)
                .status();
        }
    }
}

#[test]
fn a_read_only_cache_directory_serves_calls_with_and_without_artifacts_and_refuses_adds() {
    let dir = tempfile::tempdir().unwrap();
    let filled = dir.path().join("filled");
    {
        let cache = Cache::open(&filled).unwrap();
        cache.add_module(&util()).unwrap();
        assert_eq!(sq(&cache, 1).unwrap(), 1);
        cache.add_module(&duplicate(5)).unwrap();
        // `dup.v` gets no artifact; a pre-filled image may ship none at all.
    }
    let Some(view) = ReadOnlyView::of(&filled, &dir.path().join("ro")) else {
        eprintln!("SKIPPED: running as root without permission to mount");
        return;
    };
    let before = files_under(&filled);

    let cache = Cache::open(&view.path).unwrap();
    assert!(cache.stats().read_only.is_some());
    // With a compatible artifact: loaded, not compiled.
    assert_eq!(sq(&cache, 8).unwrap(), 64);
    // Without one: compiled in memory, counted, no error.
    assert_eq!(dup_value(&cache), 5);
    let stats = cache.stats();
    assert_eq!(
        (
            stats.artifacts_deserialized,
            stats.modules_compiled,
            stats.artifact_write_errors
        ),
        (1, 1, 0)
    );
    let err = cache.add_module(&duplicate(6)).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
    assert!(err.to_string().contains("read-only"), "{err}");
    assert!(matches!(cache.gc(0, |_| {}), Err(Error::ReadOnly { .. })));
    let listed = cache.dir().modules().unwrap();
    assert!(matches!(
        cache.dir().remove_all(&listed),
        Err(Error::ReadOnly { .. })
    ));
    drop(cache);

    // The CLI: a call works with no artifact directory for its engine, an add says why not.
    let call = linkcache(&view.path, &["call", "dup.v"]);
    assert!(call.status.success(), "{}", stderr(&call));
    assert_eq!(stdout(&call).trim(), "5");
    let file = dir.path().join("m.wasm");
    fs::write(&file, duplicate(7)).unwrap();
    let add = linkcache(&view.path, &["add", file.to_str().unwrap()]);
    assert_eq!(add.status.code(), Some(1));
    assert!(stderr(&add).contains("read-only"), "{}", stderr(&add));
    drop(view);
    assert_eq!(files_under(&filled), before, "nothing was written");
}

#[test]
fn directories_are_private_under_a_loose_umask_and_loose_ones_still_take_adds() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let file = dir.path().join("util.wasm");
    fs::write(&file, util()).unwrap();
    // The CLI under umask 002 (user-private groups): every directory it makes is 0700.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"umask 002 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_linkcache"))
        .arg("--dir")
        .arg(&root)
        .args(["add", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut dirs = vec![root.clone()];
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                dirs.push(entry.path());
                stack.push(entry.path());
            }
        }
    }
    assert!(dirs.len() > 6, "{dirs:?}");
    for d in &dirs {
        let mode = fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }

    // A cache an older version made under umask 002: group-writable directories below
    // a private root. Adds and calls work; only its precompiled code is refused.
    for d in &dirs[1..] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o775)).unwrap();
    }
    let cache = Cache::open(&root).unwrap();
    cache.add_module(&duplicate(4)).unwrap();
    assert_eq!(dup_value(&cache), 4);
    assert_eq!(sq(&cache, 5).unwrap(), 25);
    let stats = cache.stats();
    assert_eq!(
        (stats.artifacts_deserialized, stats.modules_compiled),
        (0, 2)
    );
    assert!(cache.dir().verify(|_| {}).unwrap().is_empty());
}
