//! gc and the use markers it reads: what crashed writers and other engines leave, a size
//! too large to represent, use markers refreshed and not followed as links, `remove_all`,
//! and the shared pack of a batch.

use std::fs;
use std::path::PathBuf;

use linkcache_native::Cache;
use linkcache_native::core::ModuleId;

use crate::support::{
    artifacts, files_under, index_segments, linkcache, pack_file, replace_index, stderr, util, wasm,
};
use crate::{duplicate, sq};

#[test]
fn gc_removes_what_crashed_writers_and_other_engines_leave() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cache = Cache::open(root).unwrap();
    let kept = cache.add_module(&util()).unwrap();
    assert_eq!(sq(&cache, 3).unwrap(), 9);

    // A module whose entries are gone (its pack left: an orphan, which gc keeps), one
    // whose pack is gone (its entry dangling), and an artifact of a module that is not
    // committed.
    let orphan = cache.add_module(&duplicate(1)).unwrap();
    let dangling = cache.add_module(&duplicate(2)).unwrap();
    let index = cache.dir().index().unwrap();
    let time_of = |name: &str, id: &ModuleId| {
        index[name]
            .iter()
            .find(|e| e.module == *id)
            .unwrap()
            .committed_at
    };
    replace_index(
        root,
        &[
            (kept, vec![("util.sq", time_of("util.sq", &kept))]),
            (dangling, vec![("dup.v", time_of("dup.v", &dangling))]),
        ],
    );
    fs::remove_file(pack_file(root, &dangling)).unwrap();
    let gone = ModuleId::of(b"not a module of this cache");
    let engine_dir = artifacts(root)[0].ancestors().nth(3).unwrap().to_path_buf();
    let stray = engine_dir
        .join(&gone.to_string()[..2])
        .join(gone.to_string())
        .join("0.cwasm");
    fs::create_dir_all(stray.parent().unwrap()).unwrap();
    fs::write(&stray, b"stray").unwrap();
    fs::write(root.join("tmp").join("123-left-by-a-crash"), b"x").unwrap();

    // Artifacts of another engine configuration.
    let mut config = wasmtime::Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::None);
    let other = Cache::builder(root)
        .engine(wasmtime::Engine::new(&config).unwrap())
        .open()
        .unwrap();
    assert_eq!(sq(&other, 4).unwrap(), 16);
    assert_eq!(other.stats().artifacts_written, 1);
    drop(other);
    assert_eq!(artifacts(root).len(), 3);

    let report = cache.gc(u64::MAX, |_| {}).unwrap();
    assert!(report.evicted.is_empty());
    // tmp file, the dangling entry, the stray artifact, and the use marker of the
    // module whose pack is gone.
    assert_eq!(report.leftovers_removed, 1 + 1 + 1 + 1, "{report:?}");
    assert_eq!(report.other_engine_artifacts_removed, 1);
    assert_eq!(cache.dir().modules().unwrap(), {
        let mut both = vec![kept, orphan];
        both.sort();
        both
    });
    assert!(index_segments(root).is_empty(), "gc compacted the index");
    assert_eq!(artifacts(root).len(), 1);
    assert!(files_under(&root.join("tmp")).is_empty());
    assert!(cache.dir().verify(|_| {}).unwrap().is_empty());
    assert_eq!(cache.dir().index().unwrap().len(), 1);
    assert_eq!(sq(&Cache::open(root).unwrap(), 5).unwrap(), 25);
}

#[test]
fn gc_with_a_size_too_large_to_represent_is_an_error_not_an_overflow() {
    let dir = tempfile::tempdir().unwrap();
    Cache::open(dir.path())
        .unwrap()
        .add_module(&util())
        .unwrap();
    let gc = linkcache(dir.path(), &["gc", "--max-size", "99999999999999999G"]);
    assert_eq!(gc.status.code(), Some(1));
    assert!(stderr(&gc).contains("too large"), "{}", stderr(&gc));
    assert_eq!(
        Cache::open(dir.path())
            .unwrap()
            .dir()
            .modules()
            .unwrap()
            .len(),
        1
    );
}

/// A cache holding `util()`, the path of that module's use marker, and a time long ago
/// (2000-01-01).
fn util_with_its_use_marker() -> (tempfile::TempDir, PathBuf, std::time::SystemTime) {
    let dir = tempfile::tempdir().unwrap();
    let id = Cache::open(dir.path())
        .unwrap()
        .add_module(&util())
        .unwrap();
    let hex = id.to_string();
    let marker = dir.path().join("used").join(&hex[..2]).join(&hex);
    let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(946_684_800);
    (dir, marker, long_ago)
}

#[test]
fn a_use_in_a_new_process_refreshes_the_use_marker_gc_reads() {
    let (dir, marker, long_ago) = util_with_its_use_marker();
    let root = dir.path();
    fs::File::options()
        .append(true)
        .open(&marker)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();

    let cache = Cache::open(root).unwrap();
    assert_eq!(sq(&cache, 4).unwrap(), 16);
    let modified = fs::symlink_metadata(&marker).unwrap().modified().unwrap();
    assert!(modified > long_ago + std::time::Duration::from_secs(86_400 * 365 * 20));
    assert!(fs::symlink_metadata(&marker).unwrap().is_file());

    // A marker removed by hand is created again by the next process's use.
    fs::remove_file(&marker).unwrap();
    let cache = Cache::open(root).unwrap();
    assert_eq!(sq(&cache, 4).unwrap(), 16);
    assert!(fs::symlink_metadata(&marker).unwrap().is_file());
}

#[test]
fn a_symbolic_link_planted_at_a_use_marker_is_not_followed() {
    let (dir, marker, long_ago) = util_with_its_use_marker();
    let root = dir.path();
    assert!(marker.exists(), "the add left a use marker");
    let outside = tempfile::NamedTempFile::new().unwrap();
    outside.as_file().set_modified(long_ago).unwrap();
    fs::remove_file(&marker).unwrap();
    std::os::unix::fs::symlink(outside.path(), &marker).unwrap();

    // A new cache uses the module, which refreshes its marker: not through the link.
    let cache = Cache::open(root).unwrap();
    assert_eq!(sq(&cache, 4).unwrap(), 16);
    let modified = fs::metadata(outside.path()).unwrap().modified().unwrap();
    assert_eq!(modified, long_ago);
    assert_eq!(fs::read(outside.path()).unwrap(), b"");
}

/// `count` one-function modules: `{prefix}.f{m}` returns `m`.
fn constants(prefix: &str, count: i64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|m| {
            wasm(&format!(
                r#"(module (func (export "{prefix}.f{m}") (result i64) (i64.const {m})))"#
            ))
        })
        .collect()
}

#[test]
fn remove_all_removes_the_modules_named_whole_and_keeps_the_others() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cache = Cache::open(root).unwrap();
    let ids = cache.add_modules(&constants("r", 5)).unwrap();
    let single = cache
        .add_module(&wasm(
            r#"(module (func (export "r.single") (result i64) (i64.const 9)))"#,
        ))
        .unwrap();
    // Three of the batch and the single module, with one that is not here and a repeat.
    let absent = ModuleId::of(b"not a module here");
    cache
        .dir()
        .remove_all(&[ids[0], ids[2], single, absent, ids[4], ids[0]])
        .unwrap();
    let mut left = cache.dir().modules().unwrap();
    left.sort();
    let mut expected = vec![ids[1], ids[3]];
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(fs::metadata(pack_file(root, &ids[1])).unwrap().nlink(), 2);
    assert!(!pack_file(root, &single).exists());
    let fresh = Cache::open(root).unwrap();
    for m in [1, 3] {
        let f = fresh.target::<(), i64>(&format!("r.f{m}")).unwrap();
        assert_eq!(f.call(&fresh, ()).unwrap(), m);
    }
    for gone in ["r.f0", "r.f2", "r.f4", "r.single"] {
        let err = fresh.target::<(), i64>(gone).unwrap_err();
        assert_eq!(err.miss().unwrap().cause(), "unknown", "{gone}: {err}");
    }
    assert!(fresh.dir().verify(|_| {}).unwrap().is_empty());
    // Nothing to remove is no error either.
    fresh.dir().remove_all(&[]).unwrap();
    assert_eq!(fresh.dir().modules().unwrap().len(), 2);
}

#[test]
fn gc_evicts_modules_of_a_batch_one_by_one_and_frees_their_shared_pack_with_the_last() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cache = Cache::open(root).unwrap();
    let ids = cache.add_modules(&constants("b", 4)).unwrap();
    assert_eq!(fs::metadata(pack_file(root, &ids[0])).unwrap().nlink(), 4);
    // Two of them evicted: the other two still load, from the same file.
    for id in &ids[..2] {
        cache.dir().remove(id).unwrap();
    }
    assert_eq!(fs::metadata(pack_file(root, &ids[2])).unwrap().nlink(), 2);
    let fresh = Cache::open(root).unwrap();
    for m in 2..4 {
        let f = fresh.target::<(), i64>(&format!("b.f{m}")).unwrap();
        assert_eq!(f.call(&fresh, ()).unwrap(), m);
    }
    let err = fresh.target::<(), i64>("b.f0").unwrap_err();
    assert_eq!(err.miss().unwrap().cause(), "unknown", "{err}");
    // A gc down to nothing removes the last names, and with them the file.
    let report = fresh.gc(0, |_| {}).unwrap();
    assert_eq!(report.evicted.len(), 2);
    assert!(files_under(&root.join("packs")).is_empty());
    assert_eq!(fresh.dir().size().unwrap(), report.remaining);
    assert!(fresh.dir().verify(|_| {}).unwrap().is_empty());
}
