//! What modules import and how it is supplied: globals (stale, mutable, defined out of
//! band), functions of modules that import each other (through trampolines), and the
//! embedder's imports from its own linker.

use linkcache_native::Cache;
use linkcache_native::core::{GlobalCheck, ModuleId};

use crate::support::wasm;

/// Appends a `linkcache.globals` section with these definitions.
fn with_globals(wasm: &mut Vec<u8>, definitions: &[(&str, &str)]) {
    linkcache_native::core::append_globals_section(
        wasm,
        definitions
            .iter()
            .map(|(name, text)| (*name, text.as_bytes())),
    );
}

/// A library where `lib.a` and `lib.b` share a module, `lib.a` reading global `cfg.k`.
fn globals_module() -> Vec<u8> {
    let mut bytes = wasm(
        r#"(module
        (import "linkcache:global" "cfg.k" (global $k i64))
        (func (export "lib.a") (param i64) (result i64) (i64.mul (local.get 0) (global.get $k)))
        (func (export "lib.b") (param i64) (result i64) (i64.add (local.get 0) (i64.const 1))))"#,
    );
    with_globals(&mut bytes, &[("cfg.k", "10")]);
    bytes
}

#[test]
fn a_stale_global_misses_exactly_the_functions_that_use_it() {
    let dir = tempfile::tempdir().unwrap();
    Cache::open(dir.path())
        .unwrap()
        .add_module(&globals_module())
        .unwrap();

    let stale = Cache::builder(dir.path())
        .global_resolver(|check: &GlobalCheck| Err(format!("{} was redefined", check.global.name)))
        .open()
        .unwrap();
    let err = stale.target::<(i64,), i64>("lib.a").unwrap_err();
    let miss = err.miss().unwrap();
    assert_eq!(
        (miss.cause(), miss.detail()),
        ("stale_global", Some("cfg.k"))
    );
    let b = stale.target::<(i64,), i64>("lib.b").unwrap();
    assert_eq!(b.call(&stale, (1,)).unwrap(), 2);
    assert_eq!(stale.stats().globals_stale, 1);

    let current = Cache::open(dir.path()).unwrap();
    let a = current.target::<(i64,), i64>("lib.a").unwrap();
    assert_eq!(a.call(&current, (4,)).unwrap(), 40);
    assert_eq!(current.stats().globals_validated, 1);
}

#[test]
fn a_mutable_global_is_set_when_a_function_using_it_is_targeted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let mut bytes = wasm(
        r#"(module
        (import "linkcache:global" "rt.scale" (global $s (mut i32)))
        (func (export "rt.scale") (param i32) (result i32) (i32.mul (local.get 0) (global.get $s)))
        (func (export "rt.bump") (result i32)
            (global.set $s (i32.add (global.get $s) (i32.const 1))) (global.get $s)))"#,
    );
    with_globals(&mut bytes, &[("rt.scale", "3")]);
    cache.add_module(&bytes).unwrap();
    let scale = cache.target::<(i32,), i32>("rt.scale").unwrap();
    assert_eq!(scale.call(&cache, (5,)).unwrap(), 15);
    let bump = cache.target::<(), i32>("rt.bump").unwrap();
    assert_eq!(
        bump.call(&cache, ()).unwrap(),
        4,
        "the same global, not a copy"
    );
    assert_eq!(scale.call(&cache, (5,)).unwrap(), 20);
}

#[test]
fn modules_that_import_each_other_link_through_trampolines() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    cache
        .add_module(&wasm(
            r#"(module
            (import "linkcache:fn" "odd" (func $odd (param i32) (result i32)))
            (func (export "even") (param i32) (result i32)
                (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 1))
                    (else (call $odd (i32.sub (local.get 0) (i32.const 1)))))))"#,
        ))
        .unwrap();
    cache
        .add_module(&wasm(
            r#"(module
            (import "linkcache:fn" "even" (func $even (param i32) (result i32)))
            (func (export "odd") (param i32) (result i32)
                (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
                    (else (call $even (i32.sub (local.get 0) (i32.const 1)))))))"#,
        ))
        .unwrap();
    let even = cache.target::<(i32,), i32>("even").unwrap();
    assert_eq!(even.call(&cache, (10,)).unwrap(), 1);
    assert_eq!(even.call(&cache, (7,)).unwrap(), 0);
    let odd = cache.target::<(i32,), i32>("odd").unwrap();
    assert_eq!(odd.call(&cache, (7,)).unwrap(), 1);
    assert_eq!(cache.stats().modules_loaded, 2);
}

#[test]
fn an_embedder_import_is_supplied_by_the_embedders_linker() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .linker(|linker| {
            linker.func_wrap("env", "host_add", |a: i32, b: i32| a + b)?;
            Ok(())
        })
        .open()
        .unwrap();
    cache
        .add_module(&wasm(r#"(module (import "env" "host_add" (func $add (param i32 i32) (result i32)))
            (func (export "e.f") (param i32) (result i32) (call $add (local.get 0) (i32.const 100))))"#))
        .unwrap();
    assert_eq!(
        cache
            .target::<(i32,), i32>("e.f")
            .unwrap()
            .call(&cache, (1,))
            .unwrap(),
        101
    );

    let without = Cache::open(dir.path()).unwrap();
    let err = without.target::<(i32,), i32>("e.f").unwrap_err();
    assert!(
        err.to_string()
            .contains("embedder's linker does not define"),
        "{err}"
    );
}

#[test]
fn definitions_passed_out_of_band_are_part_of_the_modules_identity() {
    let dir = tempfile::tempdir().unwrap();
    let stale_one = |check: &GlobalCheck| {
        if check.global.definition == b"1" {
            Err("cfg.k was redefined".to_string())
        } else {
            linkcache_native::core::literal_global(check)
        }
    };
    let code = wasm(
        r#"(module (import "linkcache:global" "cfg.k" (global $k i64))
            (func (export "cfg.read") (result i64) (global.get $k)))"#,
    );
    let cache = Cache::builder(dir.path())
        .global_resolver(stale_one)
        .open()
        .unwrap();
    let first = cache
        .add_module_with(
            &code,
            &linkcache_native::core::AnalyzeOptions::default().global("cfg.k", "1"),
        )
        .unwrap();
    let stale = cache.target::<(), i64>("cfg.read").unwrap_err();
    assert_eq!(
        stale.miss().map(|m| m.cause()),
        Some("stale_global"),
        "definition 1 is stale"
    );
    // The same code with the new definition is another module, not a silent no-op.
    let second = cache
        .add_module_with(
            &code,
            &linkcache_native::core::AnalyzeOptions::default().global("cfg.k", "2"),
        )
        .unwrap();
    assert_ne!(first, second);
    assert_ne!(second, ModuleId::of(&code));
    let read = cache.target::<(), i64>("cfg.read").unwrap();
    assert_eq!(read.call(&cache, ()).unwrap(), 2);
    assert_eq!(read.module(), second);
}
