//! Plan hints: a cache that plans a target the directory already planned reads one hint
//! instead of the index and the manifests, and any change to the index (a commit, gc, a
//! removal) makes every hint stale, so that a hint never hides what changed.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use linkcache_native::core::{GlobalCheck, GlobalOutcome, Value};
use linkcache_native::{Cache, Error, Stats};
use linkcache_tests::workloads::{tree, tree_names, tree_root_of};
use support::{flip_byte, wasm};

/// The tree's closure: 10 func_names listed, 10 manifests read.
const TREE_DIRECTORY_READS: u64 = 20;

fn root_of(cache: &Cache, x: i64) -> i64 {
    cache
        .target::<(i64,), i64>("t.root")
        .unwrap()
        .call(cache, (x,))
        .unwrap()
}

/// A new cache (its own process memory: no manifests, no plans) targets `t.root`.
fn fresh_target(root: &Path) -> Stats {
    let cache = Cache::open(root).unwrap();
    assert_eq!(root_of(&cache, 5), tree_root_of(5));
    cache.stats()
}

fn hint_file(root: &Path, target: &str) -> PathBuf {
    let hash = blake3::hash(target.as_bytes()).to_hex();
    root.join("plans")
        .join(&hash[..2])
        .join(format!("{hash}.lcph"))
}

fn filled(root: &Path) {
    let cache = Cache::open(root).unwrap();
    for module in tree(0) {
        cache.add_module(&module).unwrap();
    }
    assert_eq!(tree_names().len(), 10);
}

#[test]
fn a_second_cache_plans_a_10_module_closure_from_the_hint_without_reading_the_index() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let first = fresh_target(dir.path());
    assert_eq!((first.plan_hints_used, first.plans_from_hints), (0, 0));
    assert_eq!(first.plan_directory_reads, TREE_DIRECTORY_READS);
    assert!(hint_file(dir.path(), "t.root").exists());

    // A fresh cache does not even plan: it uses the plan the first one made.
    let second = fresh_target(dir.path());
    assert_eq!((second.plan_hints_used, second.plans_from_hints), (1, 1));
    assert_eq!(second.plan_directory_reads, 0);
    assert_eq!(second.modules_loaded, 10);
    assert_eq!(second.artifacts_deserialized, 10);
}

#[test]
fn a_commit_gc_or_removal_makes_the_hints_stale_until_the_next_plan_writes_them_again() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    fresh_target(dir.path());
    assert_eq!(fresh_target(dir.path()).plan_hints_used, 1);

    // A commit of a module the closure does not even use.
    let cache = Cache::open(dir.path()).unwrap();
    cache
        .add_module(&wasm(
            r#"(module (func (export "other.f") (result i64) (i64.const 1)))"#,
        ))
        .unwrap();
    let after_commit = fresh_target(dir.path());
    assert_eq!(after_commit.plan_hints_used, 0);
    assert_eq!(after_commit.plan_directory_reads, TREE_DIRECTORY_READS);
    assert_eq!(fresh_target(dir.path()).plan_hints_used, 1);

    // A re-add of what is there already changes nothing: the hint stays good.
    for module in tree(0) {
        cache.add_module(&module).unwrap();
    }
    assert_eq!(fresh_target(dir.path()).plan_hints_used, 1);

    // gc removes the hints (it changes the index, so they are stale anyway).
    let report = cache.dir().gc(u64::MAX, |_| {}).unwrap();
    assert_eq!(
        report.plan_hints_removed, 2,
        "the answers and the kept plan"
    );
    assert!(!hint_file(dir.path(), "t.root").exists());
    let after_gc = fresh_target(dir.path());
    assert_eq!(after_gc.plan_hints_used, 0);
    assert_eq!(after_gc.plan_directory_reads, TREE_DIRECTORY_READS);
}

/// `hinted.f() = 100 + hinted.g()`, with `hinted.g` in another module.
fn caller() -> Vec<u8> {
    wasm(
        r#"(module (import "linkcache:fn" "hinted.g" (func $g (result i64)))
        (func (export "hinted.f") (result i64) (i64.add (i64.const 100) (call $g))))"#,
    )
}

/// A module whose one function `func() = value`.
fn constant(func: &str, value: i64) -> Vec<u8> {
    wasm(&format!(
        r#"(module (func (export "{func}") (result i64) (i64.const {value})))"#
    ))
}

/// A new cache calls `func()`: its result and the cache's stats.
fn call_fresh(root: &Path, func: &str) -> (i64, Stats) {
    let cache = Cache::open(root).unwrap();
    let value = cache
        .target::<(), i64>(func)
        .unwrap()
        .call(&cache, ())
        .unwrap();
    (value, cache.stats())
}

#[test]
fn a_module_removed_and_replaced_by_another_is_what_the_next_plan_links() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    cache.add_module(&caller()).unwrap();
    let old = cache.add_module(&constant("hinted.g", 1)).unwrap();
    assert_eq!(call_fresh(dir.path(), "hinted.f").0, 101);
    assert_eq!(call_fresh(dir.path(), "hinted.f").1.plan_hints_used, 1);

    // The hint lists only the old callee; the index now lists only the new one.
    cache.dir().remove(&old).unwrap();
    cache.add_module(&constant("hinted.g", 2)).unwrap();
    let (value, stats) = call_fresh(dir.path(), "hinted.f");
    assert_eq!(value, 102);
    assert_eq!(stats.plan_hints_used, 0);
    assert_eq!(stats.broken_skipped, 0);
}

#[test]
fn a_damaged_or_truncated_hint_is_a_plan_that_reads_the_directory_and_writes_it_again() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    fresh_target(dir.path());
    let hints = [
        hint_file(dir.path(), "t.root"),
        hint_file(dir.path(), "t.root").with_extension("lcfp"),
    ];
    let wholes: Vec<Vec<u8>> = hints.iter().map(|h| fs::read(h).unwrap()).collect();
    for damage in ["flipped byte", "truncated", "empty"] {
        for (hint, whole) in hints.iter().zip(&wholes) {
            match damage {
                "flipped byte" => flip_byte(hint, whole.len() / 2),
                "truncated" => fs::write(hint, &whole[..whole.len() - 7]).unwrap(),
                _ => fs::write(hint, b"").unwrap(),
            }
        }
        let stats = fresh_target(dir.path());
        assert_eq!(
            (stats.plan_hints_used, stats.plans_from_hints),
            (0, 0),
            "{damage}"
        );
        assert_eq!(stats.plan_directory_reads, TREE_DIRECTORY_READS, "{damage}");
        assert_eq!(stats.broken_skipped, 0, "{damage}");
        for (hint, whole) in hints.iter().zip(&wholes) {
            assert_eq!(&fs::read(hint).unwrap(), whole, "{damage}: written again");
        }
        assert_eq!(fresh_target(dir.path()).plans_from_hints, 1, "{damage}");
    }
}

#[test]
fn a_damaged_manifest_file_behind_a_valid_hint_serves_from_the_hints_copy_and_is_repaired_by_a_re_add()
 {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    fresh_target(dir.path());
    let cache = Cache::open(dir.path()).unwrap();
    let leaf = cache.add_module(tree(0).last().unwrap()).unwrap();
    let manifest = support::pack_file(dir.path(), &leaf);
    support::flip_manifest_byte(dir.path(), &leaf, 70);

    // The hint's copy of the manifest is checked by the hint's own checksum and names
    // the same module (manifests are named by the BLAKE3 of their module's bytes).
    let stats = fresh_target(dir.path());
    assert_eq!((stats.plan_hints_used, stats.broken_skipped), (1, 0));
    let problems = cache.dir().verify(|_| {}).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, manifest);

    // A re-add replaces the damaged file (and moves the index stamp on only if it
    // wrote index entries, which it did not).
    for module in tree(0) {
        cache.add_module(&module).unwrap();
    }
    assert_eq!(cache.dir().verify(|_| {}).unwrap(), vec![]);
    assert_eq!(fresh_target(dir.path()).plan_hints_used, 1);
}

/// `cfg.read() = cfg.k`, an immutable global whose value the resolver decides.
fn global_reader() -> Vec<u8> {
    let mut bytes = wasm(
        r#"(module (import "linkcache:global" "cfg.k" (global $k i64))
        (func (export "cfg.read") (result i64) (global.get $k)))"#,
    );
    linkcache_native::core::append_globals_section(&mut bytes, [("cfg.k", b"1".as_slice())]);
    bytes
}

/// A cache whose resolver gives `cfg.k` the value in `k` (0: stale).
fn resolving(root: &Path, k: &Arc<AtomicI64>) -> Cache {
    let k = Arc::clone(k);
    Cache::builder(root)
        .global_resolver(move |_: &GlobalCheck| -> GlobalOutcome {
            match k.load(Ordering::SeqCst) {
                0 => Err("redefined".into()),
                value => Ok(Value::I64(value)),
            }
        })
        .open()
        .unwrap()
}

fn read(cache: &Cache) -> Result<i64, Error> {
    cache.target::<(), i64>("cfg.read")?.call(cache, ())
}

#[test]
fn a_kept_plan_is_used_only_while_the_resolver_decides_its_globals_alike() {
    let dir = tempfile::tempdir().unwrap();
    Cache::open(dir.path())
        .unwrap()
        .add_module(&global_reader())
        .unwrap();
    let k = Arc::new(AtomicI64::new(7));
    let first = resolving(dir.path(), &k);
    assert_eq!(read(&first).unwrap(), 7);
    assert_eq!(first.stats().plans_from_hints, 0);

    let same = resolving(dir.path(), &k);
    assert_eq!(read(&same).unwrap(), 7);
    let stats = same.stats();
    assert_eq!((stats.plans_from_hints, stats.globals_validated), (1, 1));

    // Another value: the kept plan (which carries 7) is not used, the planner runs.
    k.store(8, Ordering::SeqCst);
    let changed = resolving(dir.path(), &k);
    assert_eq!(read(&changed).unwrap(), 8);
    let stats = changed.stats();
    assert_eq!((stats.plans_from_hints, stats.plan_directory_reads), (0, 0));
    assert_eq!(
        stats.plan_hints_used, 1,
        "the hint's answers still serve the planner"
    );

    // Stale now: a miss, as without a hint.
    k.store(0, Ordering::SeqCst);
    let stale = resolving(dir.path(), &k);
    let miss = read(&stale).unwrap_err();
    assert_eq!(
        miss.miss().map(|m| m.cause()),
        Some("stale_global"),
        "{miss}"
    );
    assert_eq!(stale.stats().plans_from_hints, 0);

    // The plan kept last (with 8) serves the next process that decides 8.
    k.store(8, Ordering::SeqCst);
    let again = resolving(dir.path(), &k);
    assert_eq!(read(&again).unwrap(), 8);
    assert_eq!(again.stats().plans_from_hints, 1);
}

#[test]
fn a_kept_plan_serves_typed_and_dynamic_targets_but_not_a_store_that_loaded_something() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    fresh_target(dir.path());

    // The typed and the dynamic API ask the planner alike (the signature is checked
    // on the bound function): the same kept plan.
    let dynamic = Cache::open(dir.path()).unwrap();
    dynamic.target_dynamic("t.root").unwrap();
    assert_eq!(dynamic.stats().plans_from_hints, 1);

    // A store that loaded something already plans (with what it has loaded), from the
    // hint's answers.
    let busy = Cache::open(dir.path()).unwrap();
    busy.target::<(i64,), i64>("t.l0").unwrap();
    assert_eq!(root_of(&busy, 5), tree_root_of(5));
    let stats = busy.stats();
    assert_eq!(stats.plans_from_hints, 0);
    assert_eq!(stats.plan_hints_used, 1);
    assert_eq!(stats.modules_loaded, 10);
}

#[test]
fn a_plan_that_met_a_broken_manifest_is_not_kept_so_a_repair_is_seen_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let first = cache.add_module(&constant("dup.v", 1)).unwrap();
    cache.add_module(&constant("dup.v", 2)).unwrap();
    assert_eq!(call_fresh(dir.path(), "dup.v").0, 1);

    // Without hints, the earliest duplicate's manifest is damaged: the plan falls back
    // to the other one and keeps nothing (a repair does not move the stamp on).
    fs::remove_dir_all(dir.path().join("plans")).unwrap();
    support::flip_manifest_byte(dir.path(), &first, 70);
    let (value, stats) = call_fresh(dir.path(), "dup.v");
    assert_eq!((value, stats.broken_skipped), (2, 1));
    assert!(!hint_file(dir.path(), "dup.v").exists());
    assert!(
        !hint_file(dir.path(), "dup.v")
            .with_extension("lcfp")
            .exists()
    );

    // The re-add repairs the manifest: the next process binds the earliest again.
    cache.add_module(&constant("dup.v", 1)).unwrap();
    let (value, stats) = call_fresh(dir.path(), "dup.v");
    assert_eq!(
        (value, stats.plans_from_hints, stats.broken_skipped),
        (1, 0, 0)
    );
    assert_eq!(call_fresh(dir.path(), "dup.v").1.plans_from_hints, 1);
}

#[test]
fn a_symbolic_link_planted_at_the_index_stamp_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(outside.path(), b"outside").unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let stamp = dir.path().join("index-stamp");
    let _ = fs::remove_file(&stamp);
    std::os::unix::fs::symlink(outside.path(), &stamp).unwrap();
    assert!(cache.add_module(&caller()).is_err());
    assert_eq!(fs::read(outside.path()).unwrap(), b"outside");
}
