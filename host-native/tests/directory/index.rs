//! The index: segments compacted into the main table and into the recent one, and an
//! index log planted as a link elsewhere.

use std::fs;

use linkcache_native::core::analyze;
use linkcache_native::{Cache, Error};

use crate::sq;
use crate::support::{index_segments, util, wasm};

#[test]
fn index_segments_are_compacted_once_there_are_too_many_and_nothing_is_lost() {
    // Every store that commits writes its own segment (a process's first add); past 32
    // segments a commit compacts them into the table.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut most = 0;
    for m in 0..40 {
        let store = linkcache_native::DirStore::open(root).unwrap();
        let module = wasm(&format!(
            r#"(module (func (export "seg.f{m}") (result i64) (i64.const {m})))"#
        ));
        store.commit(&module, &analyze(&module).unwrap()).unwrap();
        most = most.max(index_segments(root).len());
    }
    // The 33rd commit made 33 segments and compacted them.
    assert_eq!(
        most, 32,
        "compaction runs when a commit leaves more than 32"
    );
    assert_eq!(index_segments(root).len(), 40 - 33);
    assert!(root.join("index").join("table.lcit").exists());
    let cache = Cache::open(root).unwrap();
    for m in 0..40 {
        let f = cache.target::<(), i64>(&format!("seg.f{m}")).unwrap();
        assert_eq!(f.call(&cache, ()).unwrap(), m);
    }
    assert_eq!(cache.dir().index().unwrap().len(), 40);
    assert!(cache.dir().verify(|_| {}).unwrap().is_empty());
}

#[test]
fn an_index_log_planted_as_a_link_elsewhere_is_refused_and_nothing_is_written_there() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let cache = Cache::open(&root).unwrap();
    let log = root.join("index").join("log");
    fs::remove_dir(&log).unwrap();
    std::os::unix::fs::symlink(&outside, &log).unwrap();
    let err = cache.add_module(&util()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    // Once the link is gone, the same add goes through.
    fs::remove_file(&log).unwrap();
    cache.add_module(&util()).unwrap();
    assert_eq!(sq(&cache, 4).unwrap(), 16);
}

#[test]
fn a_commits_compaction_merges_segments_into_the_recent_table_while_it_is_small_beside_the_main_one()
 {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let index = root.join("index");
    let one = |name: String, value: usize| {
        wasm(&format!(
            r#"(module (func (export "{name}") (result i64) (i64.const {value})))"#
        ))
    };
    // A main table of 200 entries (gc always compacts everything into it).
    let cache = Cache::open(root).unwrap();
    let batch: Vec<Vec<u8>> = (0..200).map(|m| one(format!("main.f{m}"), m)).collect();
    cache.add_modules(&batch).unwrap();
    cache.gc(u64::MAX, |_| {}).unwrap();
    let main = fs::metadata(index.join("table.lcit")).unwrap().ino();
    assert!(!index.join("recent.lcit").exists());

    // 33 stores commit one module each: the 33rd compacts 33 entries, a sixth of the
    // main table's, into the recent table and leaves the main table alone.
    for m in 0..33 {
        let store = linkcache_native::DirStore::open(root).unwrap();
        let module = one(format!("young.f{m}"), 1000 + m);
        store.commit(&module, &analyze(&module).unwrap()).unwrap();
    }
    assert!(index_segments(root).is_empty());
    assert!(index.join("recent.lcit").exists());
    assert_eq!(fs::metadata(index.join("table.lcit")).unwrap().ino(), main);
    let fresh = Cache::open(root).unwrap();
    for (name, value) in [
        ("main.f7", 7),
        ("main.f199", 199),
        ("young.f0", 1000),
        ("young.f32", 1032),
    ] {
        let f = fresh.target::<(), i64>(name).unwrap();
        assert_eq!(f.call(&fresh, ()).unwrap(), value, "{name}");
    }
    assert_eq!(fresh.dir().index().unwrap().len(), 233);

    // gc merges everything into a new main table.
    fresh.gc(u64::MAX, |_| {}).unwrap();
    assert!(!index.join("recent.lcit").exists());
    assert_ne!(fs::metadata(index.join("table.lcit")).unwrap().ino(), main);
    assert_eq!(fresh.dir().index().unwrap().len(), 233);
    let f = fresh.target::<(), i64>("young.f5").unwrap();
    assert_eq!(f.call(&fresh, ()).unwrap(), 1005);
    assert!(fresh.dir().verify(|_| {}).unwrap().is_empty());
}
