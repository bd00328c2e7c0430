//! Damaged files repaired: re-adding the same bytes repairs each kind of damaged file,
//! in this process and the next, and so do the CLI's add and `get_or_compile`.

use std::fs;

use linkcache_native::Cache;
use linkcache_native::core::{ModuleId, analyze};

use crate::sq;
use crate::support::{
    artifacts, flip_byte, flip_manifest_byte, flip_wasm_byte, index_segments, linkcache, stderr,
    stdout, util,
};

/// The kinds of file a module has, and how a damaged one shows.
#[derive(Clone, Copy, Debug)]
enum Damaged {
    /// The wasm bytes in the module's pack.
    Bytes,
    /// The manifest record in the module's pack.
    Manifest,
    /// The module's record in an index segment.
    IndexRecord,
    /// The module's slot in the index table (after a gc compacted the segments).
    IndexSlot,
    Artifact,
}

#[test]
fn re_adding_the_same_bytes_repairs_each_kind_of_damaged_file_in_this_process_and_the_next() {
    for kind in [
        Damaged::Bytes,
        Damaged::Manifest,
        Damaged::IndexRecord,
        Damaged::IndexSlot,
        Damaged::Artifact,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let id = {
            let cache = Cache::open(root).unwrap();
            let id = cache.add_module(&util()).unwrap();
            assert_eq!(sq(&cache, 7).unwrap(), 49);
            if matches!(kind, Damaged::IndexSlot) {
                cache.gc(u64::MAX, |_| {}).unwrap();
                assert!(index_segments(root).is_empty());
            }
            id
        };
        match kind {
            Damaged::Bytes => flip_wasm_byte(root, &id, 20),
            Damaged::Manifest => flip_manifest_byte(root, &id, 60),
            Damaged::IndexRecord => flip_byte(&index_segments(root)[0], 60),
            // The slot's module id (the header is 40 bytes, the name hash 16).
            Damaged::IndexSlot => flip_byte(&root.join("index").join("table.lcit"), 40 + 20),
            Damaged::Artifact => flip_byte(&artifacts(root)[0], 60),
        }
        // The plan hint the first target left would answer with its own checked copy of
        // a damaged manifest (tests/plan_hints.rs): these plans read the directory.
        fs::remove_dir_all(root.join("plans")).unwrap();
        assert_eq!(
            Cache::open(root)
                .unwrap()
                .dir()
                .verify(|_| {})
                .unwrap()
                .len(),
            1,
            "{kind:?}"
        );

        // Without its artifact (so that damaged bytes are read) the damage shows.
        let cache = Cache::builder(root).precompiled(false).open().unwrap();
        match kind {
            Damaged::Bytes | Damaged::Manifest => {
                let miss = sq(&cache, 7).unwrap_err();
                assert_eq!(
                    miss.miss().map(|m| m.cause()),
                    Some("broken"),
                    "{kind:?}: {miss}"
                );
            }
            // A damaged index record or slot is a missing entry: the function is unknown.
            Damaged::IndexRecord | Damaged::IndexSlot => {
                let miss = sq(&cache, 7).unwrap_err();
                assert_eq!(
                    miss.miss().map(|m| m.cause()),
                    Some("unknown"),
                    "{kind:?}: {miss}"
                );
            }
            // An artifact is not used here.
            Damaged::Artifact => assert_eq!(sq(&cache, 7).unwrap(), 49),
        }
        let report = cache
            .dir()
            .commit(&util(), &analyze(&util()).unwrap())
            .unwrap();
        // (packs replaced, index records entered again); artifacts are checked on load,
        // not by a commit.
        let expected_repairs = match kind {
            Damaged::Bytes | Damaged::Manifest => (1, 0),
            Damaged::IndexRecord | Damaged::IndexSlot => (0, 1),
            Damaged::Artifact => (0, 0),
        };
        assert_eq!(
            (report.files_written_over_damage, report.index_records),
            expected_repairs,
            "{kind:?}"
        );
        // The module is whole again for this process too, through the public API.
        cache.add_module(&util()).unwrap();
        assert_eq!(
            sq(&cache, 7).unwrap(),
            49,
            "{kind:?} in the repairing process"
        );
        drop(cache);

        // The next process (a fresh cache) finds it whole, artifact and all.
        let fresh = Cache::open(root).unwrap();
        assert_eq!(sq(&fresh, 6).unwrap(), 36, "{kind:?} in the next process");
        if matches!(kind, Damaged::Artifact) {
            // The damaged artifact was rejected once and replaced by a sound one.
            let stats = fresh.stats();
            assert_eq!((stats.artifacts_rejected, stats.modules_compiled), (1, 1));
        }
        // (A damaged index record or slot was left out by a compaction after the re-add.)
        let problems = fresh.dir().verify(|_| {}).unwrap();
        assert!(problems.is_empty(), "{kind:?}: {problems:?}");
    }
}

#[test]
fn the_cli_repairs_corrupt_bytes_by_adding_the_same_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let file = dir.path().join("util.wasm");
    fs::write(&file, util()).unwrap();
    let add = linkcache(&root, &["add", file.to_str().unwrap()]);
    assert!(add.status.success(), "{}", stderr(&add));
    let id = ModuleId::of(&util());
    flip_wasm_byte(&root, &id, 40);
    // The CLI's cache compiles from the bytes when no artifact exists yet.
    let call = linkcache(&root, &["call", "util.sq", "7"]);
    assert_eq!(call.status.code(), Some(2), "{}", stderr(&call));
    assert!(stderr(&call).contains("broken"), "{}", stderr(&call));

    let add = linkcache(&root, &["add", file.to_str().unwrap()]);
    assert!(add.status.success(), "{}", stderr(&add));
    let call = linkcache(&root, &["call", "util.sq", "7"]);
    assert!(call.status.success(), "{}", stderr(&call));
    assert_eq!(stdout(&call).trim(), "49");
    let verify = linkcache(&root, &["verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}

#[test]
fn get_or_compile_with_a_deterministic_compiler_repairs_a_corrupt_module() {
    let dir = tempfile::tempdir().unwrap();
    let id = Cache::open(dir.path())
        .unwrap()
        .add_module(&util())
        .unwrap();
    flip_wasm_byte(dir.path(), &id, 30);
    let cache = Cache::builder(dir.path())
        .precompiled(false)
        .open()
        .unwrap();
    let mut compiles = 0;
    let square = cache
        .get_or_compile::<(i64,), i64, String>("util.sq", |_| {
            compiles += 1;
            Ok(vec![util()])
        })
        .unwrap();
    assert_eq!(square.call(&cache, (9,)).unwrap(), 81);
    assert_eq!(compiles, 1);
    assert!(cache.dir().verify(|_| {}).unwrap().is_empty());
}
