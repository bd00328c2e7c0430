//! The cache directory as a careful user meets it: damaged files repaired by a re-add,
//! gc removing what crashed writers and older engines leave, commit order that does not
//! move, batch commits with a constant number of syncs, trust checked on the directories
//! and the file that runs, and read-only directories that serve calls.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use linkcache_native::core::{ModuleId, analyze};
use linkcache_native::{Access, ArtifactLookup, Cache, Error};
use support::{
    artifacts, files_under, flip_byte, flip_manifest_byte, flip_wasm_byte, index_segments,
    linkcache, pack_file, replace_index, stderr, stdout, util, wasm,
};

/// `dup.v() = value`, bytes distinguished by `value`.
fn duplicate(value: i64) -> Vec<u8> {
    wasm(&format!(
        r#"(module (func (export "dup.v") (result i64) (i64.const {value})))"#
    ))
}

fn sq(cache: &Cache, x: i64) -> Result<i64, Error> {
    cache.target::<(i64,), i64>("util.sq")?.call(cache, (x,))
}

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
        assert!(fresh.dir().verify(|_| {}).unwrap().is_empty(), "{kind:?}");
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

fn dup_value(cache: &Cache) -> i64 {
    cache
        .target::<(), i64>("dup.v")
        .unwrap()
        .call(cache, ())
        .unwrap()
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
