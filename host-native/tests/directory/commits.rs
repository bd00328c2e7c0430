//! Commits and the order of duplicates: a batch commit with a constant number of syncs,
//! an invalid module that rejects its whole batch, and commit order that does not move
//! (a clock stepped back, a missing index entry completed, an export and an import).

use std::fs;

use linkcache_native::core::{ModuleId, analyze};
use linkcache_native::{Cache, Error};

use crate::support::{index_segments, pack_file, replace_index, util, wasm};
use crate::{dup_value, duplicate};

#[test]
fn a_batch_commit_costs_one_sync_one_file_and_one_index_record_per_module_and_a_complete_one_none()
{
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let modules: Vec<Vec<u8>> = (0..100)
        .map(|m| {
            let functions: String = (0..8)
                .map(|f| {
                    format!(
                        r#"(func (export "b{m}.f{f}") (result i64) (i64.const {}))"#,
                        m * 8 + f
                    )
                })
                .collect();
            wasm(&format!("(module {functions})"))
        })
        .collect();
    let manifests: Vec<_> = modules.iter().map(|m| analyze(m).unwrap()).collect();
    let batch: Vec<_> = modules.iter().map(Vec::as_slice).zip(&manifests).collect();
    let report = cache.dir().commit_many(&batch).unwrap();
    assert_eq!(report.syncs, 1);
    assert_eq!(report.files_written, 100);
    assert_eq!(report.index_records, 100);
    assert_eq!(report.files_written_over_damage, 0);
    assert_eq!(index_segments(dir.path()).len(), 1);
    // The batch's modules share one pack file, linked under each module's name, and
    // counted once in the cache's size.
    {
        use std::os::unix::fs::MetadataExt;
        let packs: Vec<fs::Metadata> = manifests
            .iter()
            .map(|m| fs::metadata(pack_file(dir.path(), &m.module)).unwrap())
            .collect();
        assert!(
            packs
                .iter()
                .all(|p| p.ino() == packs[0].ino() && p.nlink() == 100)
        );
        let size = cache.dir().size().unwrap();
        assert!(
            size >= packs[0].len() && size < 2 * packs[0].len(),
            "{size}"
        );
    }
    // One module: one sync, one file, one record.
    let single = wasm(
        r#"(module (func (export "one.f") (result i64) (i64.const 1))
        (func (export "one.g") (result i64) (i64.const 2)))"#,
    );
    let report = cache
        .dir()
        .commit(&single, &analyze(&single).unwrap())
        .unwrap();
    assert_eq!(
        (report.syncs, report.files_written, report.index_records),
        (1, 1, 1)
    );
    // Everything there already: nothing written, nothing synced.
    let report = cache.dir().commit_many(&batch).unwrap();
    assert_eq!(
        (report.syncs, report.files_written, report.index_records),
        (0, 0, 0)
    );

    // Through the cache: add_modules commits a batch and every function is callable.
    let more: Vec<Vec<u8>> = (0..10)
        .map(|m| {
            wasm(&format!(
                r#"(module (func (export "more.f{m}") (result i64) (i64.const {m})))"#
            ))
        })
        .collect();
    let ids = cache.add_modules(&more).unwrap();
    assert_eq!(ids.len(), 10);
    for m in 0..10 {
        let f = cache.target::<(), i64>(&format!("more.f{m}")).unwrap();
        assert_eq!(f.call(&cache, ()).unwrap(), m);
    }
    let f = cache.target::<(), i64>("b99.f7").unwrap();
    assert_eq!(f.call(&cache, ()).unwrap(), 99 * 8 + 7);
    assert!(cache.dir().verify(|_| {}).unwrap().is_empty());
}

#[test]
fn an_invalid_module_rejects_its_whole_batch_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let err = cache
        .add_modules(&[util(), b"\0asm\x01\0\0\0garbage".to_vec()])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidModule(_)), "{err}");
    assert!(cache.dir().modules().unwrap().is_empty());
}

#[test]
fn a_clock_stepped_back_does_not_put_a_newer_duplicate_first() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let first = cache.add_module(&duplicate(1)).unwrap();
    // As if the clock had run an hour ahead when `first` was committed (and was set
    // back since): its entry carries a time later than now.
    let time = cache.dir().index().unwrap()["dup.v"][0].committed_at;
    replace_index(
        dir.path(),
        &[(first, vec![("dup.v", time + 3_600_000_000_000)])],
    );

    let second = cache.add_module(&duplicate(2)).unwrap();
    let index = cache.dir().index().unwrap();
    let order: Vec<ModuleId> = index["dup.v"].iter().map(|e| e.module).collect();
    assert_eq!(
        order,
        [first, second],
        "the established duplicate stays first"
    );
    assert_eq!(dup_value(&Cache::open(dir.path()).unwrap()), 1);
}

#[test]
fn completing_a_module_missing_from_the_index_keeps_the_modules_one_time() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let three = wasm(
        r#"(module (func (export "t.a") (result i32) (i32.const 1))
        (func (export "t.b") (result i32) (i32.const 2)) (func (export "t.c") (result i32) (i32.const 3)))"#,
    );
    let id = cache.add_module(&three).unwrap();
    let time = cache.dir().index().unwrap()["t.a"][0].committed_at;
    // As if one entry had been lost (a remote tier indexes only some functions).
    replace_index(dir.path(), &[(id, vec![("t.a", time), ("t.c", time)])]);
    std::thread::sleep(std::time::Duration::from_millis(5));
    cache.add_module(&three).unwrap();
    let index = cache.dir().index().unwrap();
    for name in ["t.a", "t.b", "t.c"] {
        assert_eq!(index[name].len(), 1);
        assert_eq!(index[name][0].committed_at, time, "{name}");
    }
}

#[test]
fn an_exported_and_imported_cache_keeps_the_order_of_its_duplicates() {
    // Two duplicates whose commit order disagrees with their ids' order, so that an
    // import that restamped by id would change which one wins.
    let (older, newer) = (1..100)
        .map(|v| (duplicate(v), duplicate(v + 1000)))
        .find(|(a, b)| ModuleId::of(a) > ModuleId::of(b))
        .unwrap();
    let source = tempfile::tempdir().unwrap();
    let cache = Cache::open(source.path()).unwrap();
    cache.add_module(&older).unwrap();
    cache.add_module(&newer).unwrap();
    let expected = dup_value(&cache);
    let bundle = cache.export_bundle(None).unwrap().encode();

    let target = tempfile::tempdir().unwrap();
    let imported = Cache::open(target.path()).unwrap();
    let ids = imported.import_bundle(&bundle).unwrap();
    assert_eq!(ids, [ModuleId::of(&older), ModuleId::of(&newer)]);
    assert_eq!(dup_value(&imported), expected);
    assert_eq!(dup_value(&Cache::open(target.path()).unwrap()), expected);
}
