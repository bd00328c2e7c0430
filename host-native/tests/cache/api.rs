//! The embedder's calls: misses that name their cause, typed and dynamic calls and their
//! checks, compile callbacks, a target tied to its cache, bundles between caches, and gc
//! of the least recently used modules.

use linkcache_native::core::Value;
use linkcache_native::{Cache, Error};

use crate::support::{util, wasm};
use crate::{call_i64, math};

#[test]
fn unknown_and_missing_dependency_are_misses_that_name_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let err = cache.target::<(i64,), i64>("math.quad").unwrap_err();
    assert_eq!(err.miss().unwrap().cause(), "unknown");
    cache.add_module(&math()).unwrap();
    let err = cache.target::<(i64,), i64>("math.quad").unwrap_err();
    let miss = err.miss().unwrap();
    assert_eq!(
        (miss.cause(), miss.detail()),
        ("missing_dependency", Some("util.sq"))
    );
    cache.add_module(&util()).unwrap();
    let quad = cache.target::<(i64,), i64>("math.quad").unwrap();
    assert_eq!(quad.call(&cache, (3,)).unwrap(), 81);
    let stats = cache.stats();
    assert_eq!(stats.misses.get("unknown"), Some(&1));
    assert_eq!(stats.misses.get("missing_dependency"), Some(&1));
}

#[test]
fn a_typed_target_with_the_wrong_types_is_an_error_and_the_right_types_work() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    cache.add_module(&util()).unwrap();
    let err = cache.target::<(i32,), i32>("util.sq").unwrap_err();
    assert!(matches!(err, Error::SignatureMismatch { .. }), "{err}");
    assert_eq!(call_i64(&cache, "util.sq", 5), 25);
}

#[test]
fn a_compile_callback_asking_for_another_compilation_gets_reentrant_and_the_cache_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let inner = cache.clone();
    let err = cache
        .get_or_compile::<(i64,), i64, Error>("math.quad", |_miss| {
            let err = inner
                .get_or_compile::<(i64,), i64, Error>("util.sq", |_| Ok(vec![util()]))
                .unwrap_err();
            Err(err)
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("requested from inside the compile callback for `math.quad`"),
        "{err}"
    );
    assert!(matches!(err, Error::CompileFailed { .. }));

    // The miss names what is missing; the compiler supplies it, round by round.
    let mut asked = Vec::new();
    let quad = cache
        .get_or_compile::<(i64,), i64, Error>("math.quad", |miss| {
            asked.push((miss.cause(), miss.detail().map(str::to_string)));
            Ok(match miss.detail() {
                Some("util.sq") => vec![util()],
                _ => vec![math()],
            })
        })
        .unwrap();
    assert_eq!(quad.call(&cache, (3,)).unwrap(), 81);
    assert_eq!(
        asked,
        [
            ("unknown", None),
            ("missing_dependency", Some("util.sq".to_string()))
        ]
    );
    assert_eq!(cache.stats().compiles, 2);
}

#[test]
fn a_compiler_that_does_not_produce_the_function_is_reported_not_retried_forever() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let err = cache
        .get_or_compile::<(i64,), i64, Error>("math.quad", |_| Ok(vec![util()]))
        .unwrap_err();
    assert!(matches!(err, Error::CompileDidNotHelp { .. }), "{err}");
}

#[test]
fn a_target_from_one_cache_cannot_be_called_through_another() {
    let dir = tempfile::tempdir().unwrap();
    let a = Cache::open(dir.path()).unwrap();
    a.add_module(&util()).unwrap();
    let sq = a.target::<(i64,), i64>("util.sq").unwrap();
    let b = Cache::open(dir.path()).unwrap();
    assert!(matches!(sq.call(&b, (2,)), Err(Error::WrongCache)));
}

#[test]
fn dynamic_calls_check_their_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    cache.add_module(&util()).unwrap();
    assert_eq!(
        cache.call("util.sq", &[Value::I64(12)]).unwrap(),
        [Value::I64(144)]
    );
    let err = cache.call("util.sq", &[Value::I32(12)]).unwrap_err();
    assert!(matches!(err, Error::BadArguments { .. }), "{err}");
}

#[test]
fn a_bundle_moves_modules_between_caches_and_a_tampered_bundle_is_rejected() {
    let from = tempfile::tempdir().unwrap();
    let cache = Cache::open(from.path()).unwrap();
    cache.add_module(&util()).unwrap();
    cache.add_module(&math()).unwrap();
    let bytes = cache.export_bundle(None).unwrap().encode();

    let to = tempfile::tempdir().unwrap();
    let other = Cache::open(to.path()).unwrap();
    let ids = other.import_bundle(&bytes).unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(call_i64(&other, "math.quad", 2), 16);

    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let empty = tempfile::tempdir().unwrap();
    let err = Cache::open(empty.path())
        .unwrap()
        .import_bundle(&tampered)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidBundle(_)), "{err}");
}

#[test]
fn gc_evicts_least_recently_used_modules_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let old = cache
        .add_module(&wasm(
            r#"(module (func (export "old.f") (result i32) (i32.const 1)))"#,
        ))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    cache.add_module(&util()).unwrap();
    cache.target::<(i64,), i64>("util.sq").unwrap();
    let size = cache.dir().size().unwrap();
    let report = cache.dir().gc(size - 1, |_| {}).unwrap();
    assert_eq!(report.evicted, [old]);
    assert!(report.remaining < size);
    assert!(cache.dir().verify(|_| {}).unwrap().is_empty());
    let fresh = Cache::open(dir.path()).unwrap();
    assert_eq!(
        fresh
            .target::<(), i32>("old.f")
            .unwrap_err()
            .miss()
            .unwrap()
            .cause(),
        "unknown"
    );
    assert_eq!(call_i64(&fresh, "util.sq", 2), 4);
}
