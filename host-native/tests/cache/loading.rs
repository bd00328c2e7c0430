//! Loading: precompiled code reused by a second cache (process), on a private root and
//! for the same engine configuration only, and partial load of a target's closure, an
//! edge outside it loaded only when its function is targeted.

use std::fs;

use linkcache_native::Cache;

use crate::support::{artifacts, util, wasm};
use crate::{call_i64, math};

#[test]
fn a_second_cache_on_the_directory_loads_precompiled_code_instead_of_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let first = Cache::open(dir.path()).unwrap();
    first.add_module(&util()).unwrap();
    first.add_module(&math()).unwrap();
    let quad = first.target::<(i64,), i64>("math.quad").unwrap();
    assert_eq!(quad.call(&first, (3,)).unwrap(), 81);
    let stats = first.stats();
    assert_eq!(
        (
            stats.modules_compiled,
            stats.artifacts_written,
            stats.artifacts_deserialized
        ),
        (2, 2, 0)
    );
    assert!(
        stats.precompiled,
        "a fresh private temp dir is trusted: {stats:?}"
    );

    let second = Cache::open(dir.path()).unwrap();
    let quad = second.target::<(i64,), i64>("math.quad").unwrap();
    assert_eq!(quad.call(&second, (2,)).unwrap(), 16);
    let stats = second.stats();
    assert_eq!(
        (
            stats.modules_compiled,
            stats.artifacts_deserialized,
            stats.modules_loaded
        ),
        (0, 2, 2)
    );
    assert_eq!(stats.hits, 1);
}

#[test]
fn a_new_cache_root_is_private_and_a_shared_root_gets_no_precompiled_code() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("cache");
    let cache = Cache::open(&root).unwrap();
    assert_eq!(
        fs::metadata(&root).unwrap().permissions().mode() & 0o777,
        0o700
    );
    cache.add_module(&util()).unwrap();
    drop(cache);

    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    let cache = Cache::open(&root).unwrap();
    let sq = cache.target::<(i64,), i64>("util.sq").unwrap();
    assert_eq!(sq.call(&cache, (7,)).unwrap(), 49);
    let stats = cache.stats();
    assert!(!stats.precompiled);
    assert!(
        stats
            .untrusted_reason
            .as_deref()
            .unwrap()
            .contains("writable by group or others")
    );
    assert_eq!((stats.modules_compiled, stats.artifacts_written), (1, 0));
}

#[test]
fn an_edge_outside_the_closure_is_loaded_only_when_its_function_is_targeted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    cache.add_module(&util()).unwrap();
    cache
        .add_module(&wasm(
            r#"(module
            (import "linkcache:fn" "util.sq" (func $sq (param i64) (result i64)))
            (func (export "m.plain") (param i64) (result i64) (i64.add (local.get 0) (i64.const 1)))
            (func (export "m.sq") (param i64) (result i64) (call $sq (local.get 0))))"#,
        ))
        .unwrap();
    let plain = cache.target::<(i64,), i64>("m.plain").unwrap();
    assert_eq!(plain.call(&cache, (1,)).unwrap(), 2);
    assert_eq!(
        cache.stats().modules_loaded,
        1,
        "util is outside m.plain's closure"
    );
    let sq = cache.target::<(i64,), i64>("m.sq").unwrap();
    assert_eq!(sq.call(&cache, (9,)).unwrap(), 81);
    assert_eq!(cache.stats().modules_loaded, 2);
}

#[test]
fn partial_load_in_a_cache_of_a_thousand_modules_loads_only_the_closure() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    for i in 0..997 {
        cache
            .add_module(&wasm(&format!(
                r#"(module (func (export "filler.f{i}") (result i32) (i32.const {i})))"#
            )))
            .unwrap();
    }
    cache.add_module(&util()).unwrap();
    cache.add_module(&math()).unwrap();
    cache
        .add_module(&wasm(r#"(module
            (import "linkcache:fn" "math.quad" (func $quad (param i64) (result i64)))
            (func (export "top.f") (param i64) (result i64) (i64.add (call $quad (local.get 0)) (i64.const 1))))"#))
        .unwrap();
    assert_eq!(cache.dir().modules().unwrap().len(), 1000);

    let fresh = Cache::open(dir.path()).unwrap();
    let top = fresh.target::<(i64,), i64>("top.f").unwrap();
    assert_eq!(top.call(&fresh, (2,)).unwrap(), 17);
    let stats = fresh.stats();
    assert_eq!(stats.modules_loaded, 3, "{stats:?}");
    assert_eq!(fresh.loaded_modules().len(), 3);
}

#[test]
fn artifacts_of_another_engine_configuration_are_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = wasmtime::Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::None);
    let other = wasmtime::Engine::new(&config).unwrap();
    let cache = Cache::builder(dir.path()).engine(other).open().unwrap();
    cache.add_module(&util()).unwrap();
    cache.target::<(i64,), i64>("util.sq").unwrap();
    assert_eq!(artifacts(dir.path()).len(), 1);

    let default = Cache::open(dir.path()).unwrap();
    assert_eq!(call_i64(&default, "util.sq", 5), 25);
    let stats = default.stats();
    assert_eq!(
        (stats.artifacts_deserialized, stats.modules_compiled),
        (0, 1)
    );
    let engines = fs::read_dir(dir.path().join("artifacts")).unwrap().count();
    assert_eq!(
        engines, 2,
        "one artifact directory per engine configuration"
    );
}
