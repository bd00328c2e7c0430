//! linkcache as a wasmtime embedder uses it: the embedder's own `Store<T>`, many
//! threads, a store per request, async stores on tokio, host functions that read the
//! embedder's state or call back into the cache, panics, fuel and resource limits.
//! Real wasmtime, real threads, a real cache directory.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use linkcache_native::core::ModuleId;
use linkcache_native::{Cache, Error, LinkageView, StoreLinkage};
use wasmtime::{Caller, Config, Engine, Linker, Store, StoreLimits, StoreLimitsBuilder};

fn wasm(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("test WAT parses")
}

/// The embedder's store data: its own state beside the linkage.
struct Request {
    linkage: StoreLinkage<Request>,
    seen: Vec<i64>,
    limits: StoreLimits,
}

impl LinkageView for Request {
    fn linkage(&mut self) -> &mut StoreLinkage<Request> {
        &mut self.linkage
    }
}

fn request_store(cache: &Cache, linker: &Arc<Linker<Request>>) -> Store<Request> {
    Store::new(
        cache.engine(),
        Request {
            linkage: cache.store_linkage(Arc::clone(linker)),
            seen: Vec::new(),
            limits: StoreLimits::default(),
        },
    )
}

/// `util.sq(x) = x*x`, `math.quad(x) = sq(sq(x))` in another module.
fn add_quad(cache: &Cache) -> (ModuleId, ModuleId) {
    let util = cache
        .add_module(&wasm(
            r#"(module (func (export "util.sq") (param i64) (result i64)
                (i64.mul (local.get 0) (local.get 0))))"#,
        ))
        .unwrap();
    let math = cache
        .add_module(&wasm(
            r#"(module
                (import "linkcache:fn" "util.sq" (func $sq (param i64) (result i64)))
                (func (export "math.quad") (param i64) (result i64)
                    (call $sq (call $sq (local.get 0)))))"#,
        ))
        .unwrap();
    (util, math)
}

/// Adds a module whose `func` forwards its argument to the embedder's `env.<import>`.
fn add_forwarder(cache: &Cache, func: &str, import: &str) {
    cache
        .add_module(&wasm(&format!(
            r#"(module
                (import "env" "{import}" (func $host (param i64) (result i64)))
                (func (export "{func}") (param i64) (result i64) (call $host (local.get 0))))"#
        )))
        .unwrap();
}

/// Two modules that both define `dup.f` (racing writers): `1000 + x` and `2000 + x`.
fn add_duplicates(cache: &Cache) {
    for base in [1000, 2000] {
        cache
            .add_module(&wasm(&format!(
                r#"(module (func (export "dup.f") (param i64) (result i64)
                    (i64.add (local.get 0) (i64.const {base}))))"#
            )))
            .unwrap();
    }
}

#[test]
fn eight_threads_with_their_own_stores_call_cached_functions_and_agree_on_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    add_quad(&cache);
    add_duplicates(&cache);
    let linker = Arc::new(Linker::new(cache.engine()));

    let bindings: Vec<ModuleId> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8i64)
            .map(|thread| {
                let cache = cache.clone();
                let linker = Arc::clone(&linker);
                scope.spawn(move || {
                    let mut store = request_store(&cache, &linker);
                    let quad = cache
                        .get_typed_func::<i64, i64, _>(&mut store, "math.quad")
                        .unwrap();
                    let dup = cache
                        .get_typed_func::<i64, i64, _>(&mut store, "dup.f")
                        .unwrap();
                    for i in 0..1000i64 {
                        let x = thread * 1000 + i;
                        assert_eq!(quad.call(&mut store, x % 50).unwrap(), (x % 50).pow(4));
                        let y = dup.call(&mut store, x).unwrap();
                        assert!(y == x + 1000 || y == x + 2000, "dup.f({x}) = {y}");
                    }
                    store.data().linkage.binding("dup.f").unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(bindings.len(), 8);
    assert!(
        bindings.iter().all(|b| *b == bindings[0]),
        "every store binds dup.f to the same duplicate: {bindings:?}"
    );
    // The simple path of the same process agrees too.
    assert_eq!(cache.target_dynamic("dup.f").unwrap().module, bindings[0]);
    let stats = cache.stats();
    assert_eq!(stats.hits, 8 * 2 + 1);
    // Three modules, each compiled (or deserialized) once for all eight stores.
    assert_eq!(stats.modules_compiled + stats.artifacts_deserialized, 3);
    // 8 stores x 3 modules instantiated, and one more for the simple path's dup.f.
    assert_eq!(stats.modules_loaded, 8 * 3 + 1);
}

#[test]
fn a_thousand_short_lived_stores_reuse_the_modules_compiled_once_in_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let first = Cache::open(dir.path()).unwrap();
    let (util, math) = add_quad(&first);
    // The first process compiles both modules and stores their artifacts.
    assert_eq!(
        first
            .target::<(i64,), i64>("math.quad")
            .unwrap()
            .call(&first, (2,))
            .unwrap(),
        16
    );
    drop(first);

    // A new process: the artifacts are deserialized once, then every store reuses them.
    let cache = Cache::open(dir.path()).unwrap();
    let linker = Arc::new(Linker::new(cache.engine()));
    for request in 0..1000i64 {
        let mut store = request_store(&cache, &linker);
        let quad = cache
            .get_typed_func::<i64, i64, _>(&mut store, "math.quad")
            .unwrap();
        assert_eq!(
            quad.call(&mut store, request % 7).unwrap(),
            (request % 7).pow(4)
        );
        assert_eq!(store.data().linkage.loaded_modules(), [util, math]);
    }
    let stats = cache.stats();
    assert_eq!(
        stats.artifacts_deserialized, 2,
        "one deserialization per module"
    );
    assert_eq!(stats.modules_compiled, 0);
    assert_eq!(stats.modules_loaded, 2000);
    assert_eq!(stats.hits, 1000);
    assert_eq!(stats.modules_in_memory, 2);
}

#[test]
fn the_process_keeps_at_most_modules_in_memory_compiled_modules() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .modules_in_memory(2)
        .open()
        .unwrap();
    for n in 0..5 {
        cache
            .add_module(&wasm(&format!(
                r#"(module (func (export "bound.f{n}") (result i64) (i64.const {n})))"#
            )))
            .unwrap();
    }
    let linker = Arc::new(Linker::new(cache.engine()));
    for round in 0..2 {
        for n in 0..5i64 {
            let mut store = request_store(&cache, &linker);
            let f = cache
                .get_typed_func::<(), i64, _>(&mut store, &format!("bound.f{n}"))
                .unwrap();
            assert_eq!(f.call(&mut store, ()).unwrap(), n, "round {round}");
            assert!(cache.stats().modules_in_memory <= 2);
        }
    }
    let stats = cache.stats();
    assert_eq!(stats.modules_in_memory, 2);
    // Five modules, each dropped before its turn comes again: loaded ten times.
    assert_eq!(stats.modules_compiled + stats.artifacts_deserialized, 10);
}

#[test]
fn host_functions_read_the_embedders_own_state_through_caller() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    cache
        .add_module(&wasm(
            r#"(module
                (import "env" "record" (func $record (param i64)))
                (func (export "app.twice") (param i64) (result i64)
                    (call $record (local.get 0))
                    (call $record (i64.mul (local.get 0) (i64.const 2)))
                    (i64.mul (local.get 0) (i64.const 2))))"#,
        ))
        .unwrap();
    let mut linker = Linker::<Request>::new(cache.engine());
    linker
        .func_wrap(
            "env",
            "record",
            |mut caller: Caller<'_, Request>, x: i64| {
                caller.data_mut().seen.push(x);
            },
        )
        .unwrap();
    let linker = Arc::new(linker);
    let mut store = request_store(&cache, &linker);
    let twice = cache
        .get_typed_func::<i64, i64, _>(&mut store, "app.twice")
        .unwrap();
    assert_eq!(twice.call(&mut store, 21).unwrap(), 42);
    assert_eq!(store.data().seen, [21, 42]);
}

#[test]
fn a_host_function_can_target_another_function_of_its_store_during_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    add_quad(&cache);
    add_forwarder(&cache, "app.ask", "ask");
    let mut linker = Linker::<Request>::new(cache.engine());
    let inner = cache.clone();
    linker
        .func_wrap(
            "env",
            "ask",
            move |mut caller: Caller<'_, Request>, x: i64| -> wasmtime::Result<i64> {
                // Statistics and the store's own linkage are readable mid-call...
                let hits_before = inner.stats().hits;
                assert!(hits_before >= 1);
                // ...and another function can be targeted in the same store.
                let quad = inner
                    .get_typed_func::<i64, i64, _>(&mut caller, "math.quad")
                    .map_err(wasmtime::Error::new)?;
                assert!(caller.data_mut().linkage().binding("math.quad").is_some());
                quad.call(&mut caller, x)
            },
        )
        .unwrap();
    let linker = Arc::new(linker);
    let mut store = request_store(&cache, &linker);
    let ask = cache
        .get_typed_func::<i64, i64, _>(&mut store, "app.ask")
        .unwrap();
    assert_eq!(ask.call(&mut store, 3).unwrap(), 81);
    assert_eq!(store.data().linkage.loaded_modules().len(), 3);
}

#[test]
fn a_host_function_of_the_simple_path_calling_back_gets_answers_or_reentrant_never_a_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let cache_slot: Arc<Mutex<Option<Cache>>> = Arc::default();
    let (slot, log) = (Arc::clone(&cache_slot), Arc::clone(&seen));
    let cache = Cache::builder(dir.path())
        .linker(move |linker| {
            linker.func_wrap("env", "probe", move |x: i64| -> i64 {
                let cache = slot.lock().unwrap().clone().unwrap();
                let mut log = log.lock().unwrap();
                log.push(format!("hits={}", cache.stats().hits));
                log.push(format!("bound={}", cache.binding("app.probe").is_some()));
                log.push(format!("loaded={}", cache.loaded_modules().len()));
                match cache.target::<(i64,), i64>("util.sq") {
                    Err(Error::Reentrant { .. }) => log.push("reentrant".into()),
                    other => log.push(format!("unexpected: {other:?}")),
                }
                x + 1
            })?;
            Ok(())
        })
        .open()
        .unwrap();
    *cache_slot.lock().unwrap() = Some(cache.clone());
    add_quad(&cache);
    add_forwarder(&cache, "app.probe", "probe");
    let probe = cache.target::<(i64,), i64>("app.probe").unwrap();
    assert_eq!(probe.call(&cache, (1,)).unwrap(), 2);
    assert_eq!(
        *seen.lock().unwrap(),
        ["hits=1", "bound=true", "loaded=1", "reentrant"]
    );
    // And the cache goes on: the function the callback could not target works now.
    assert_eq!(
        cache
            .target::<(i64,), i64>("util.sq")
            .unwrap()
            .call(&cache, (5,))
            .unwrap(),
        25
    );
    *cache_slot.lock().unwrap() = None;
}

#[test]
fn a_panicking_host_function_leaves_both_paths_usable() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .linker(|linker| {
            linker.func_wrap("env", "boom", |x: i64| -> i64 {
                if x == 13 {
                    panic!("host function panicked on purpose");
                }
                x
            })?;
            Ok(())
        })
        .open()
        .unwrap();
    add_quad(&cache);
    add_forwarder(&cache, "app.boom", "boom");

    // The simple path: the panic unwinds out of the call, holding the store's lock.
    let boom = cache.target::<(i64,), i64>("app.boom").unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| boom.call(&cache, (13,))));
    assert!(panicked.is_err(), "the panic reaches the caller");
    assert_eq!(boom.call(&cache, (7,)).unwrap(), 7);
    assert_eq!(
        cache
            .target::<(i64,), i64>("math.quad")
            .unwrap()
            .call(&cache, (2,))
            .unwrap(),
        16
    );

    // The embedder's store: same, and lazy targeting works after it.
    let mut linker = Linker::<Request>::new(cache.engine());
    linker
        .func_wrap("env", "boom", |_: i64| -> i64 { panic!("again") })
        .unwrap();
    let linker = Arc::new(linker);
    let mut store = request_store(&cache, &linker);
    let boom = cache
        .get_typed_func::<i64, i64, _>(&mut store, "app.boom")
        .unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| boom.call(&mut store, 1))).is_err());
    let quad = cache
        .get_typed_func::<i64, i64, _>(&mut store, "math.quad")
        .unwrap();
    assert_eq!(quad.call(&mut store, 3).unwrap(), 81);
}

#[test]
fn a_panicking_global_resolver_or_compile_callback_leaves_the_cache_usable() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .global_resolver(|check| {
            if check.global.name == "cfg.bad" {
                panic!("resolver panicked on purpose");
            }
            linkcache_native::core::literal_global(check)
        })
        .open()
        .unwrap();
    let bad = linkcache_native::core::AnalyzeOptions::default().global("cfg.bad", "1");
    cache
        .add_module_with(
            &wasm(
                r#"(module (import "linkcache:global" "cfg.bad" (global $g i64))
                    (func (export "app.bad") (result i64) (global.get $g)))"#,
            ),
            &bad,
        )
        .unwrap();
    add_quad(&cache);
    assert!(catch_unwind(AssertUnwindSafe(|| cache.target::<(), i64>("app.bad"))).is_err());
    assert_eq!(
        cache
            .target::<(i64,), i64>("math.quad")
            .unwrap()
            .call(&cache, (2,))
            .unwrap(),
        16
    );

    let compiled = catch_unwind(AssertUnwindSafe(|| {
        cache.get_or_compile::<(i64,), i64, Error>("app.never", |_| panic!("compiler panicked"))
    }));
    assert!(compiled.is_err());
    // Not stuck "inside a compile callback": compiling works again.
    let f = cache
        .get_or_compile::<(i64,), i64, Error>("app.later", |_| {
            Ok(vec![wasm(
                r#"(module (func (export "app.later") (param i64) (result i64) (local.get 0)))"#,
            )])
        })
        .unwrap();
    assert_eq!(f.call(&cache, (9,)).unwrap(), 9);
}

#[test]
fn fuel_running_out_traps_cleanly_and_the_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new();
    config.consume_fuel(true);
    let engine = Engine::new(&config).unwrap();
    let cache = Cache::builder(dir.path()).engine(engine).open().unwrap();
    add_quad(&cache);
    cache
        .add_module(&wasm(
            r#"(module (func (export "app.spin") (loop $l (br $l))))"#,
        ))
        .unwrap();
    let linker = Arc::new(Linker::new(cache.engine()));
    let mut store = request_store(&cache, &linker);
    store.set_fuel(10_000).unwrap();
    let spin = cache
        .get_typed_func::<(), (), _>(&mut store, "app.spin")
        .unwrap();
    let trap = spin.call(&mut store, ()).unwrap_err();
    assert_eq!(
        trap.downcast_ref::<wasmtime::Trap>(),
        Some(&wasmtime::Trap::OutOfFuel)
    );
    store.set_fuel(10_000).unwrap();
    let quad = cache
        .get_typed_func::<i64, i64, _>(&mut store, "math.quad")
        .unwrap();
    assert_eq!(quad.call(&mut store, 2).unwrap(), 16);
}

#[test]
fn a_store_limited_to_fewer_instances_than_a_closure_needs_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    add_quad(&cache);
    let linker = Arc::new(Linker::new(cache.engine()));
    let mut store = request_store(&cache, &linker);
    store.data_mut().limits = StoreLimitsBuilder::new().instances(1).build();
    store.limiter(|request| &mut request.limits);
    let Err(error) = cache.get_typed_func::<i64, i64, _>(&mut store, "math.quad") else {
        panic!("a store limited to one instance cannot load a two-module closure");
    };
    let text = error.to_string();
    assert!(text.contains("instance"), "{text}");
    assert!(text.contains("limit"), "{text}");
    // Another store of the same process, without the limit, is not affected.
    let mut free = request_store(&cache, &linker);
    let quad = cache
        .get_typed_func::<i64, i64, _>(&mut free, "math.quad")
        .unwrap();
    assert_eq!(quad.call(&mut free, 2).unwrap(), 16);
}

#[test]
fn targets_and_linkages_belong_to_their_cache_even_after_another_takes_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let first = Cache::open(dir.path()).unwrap();
    add_quad(&first);
    let quad = first.target::<(i64,), i64>("math.quad").unwrap();
    let first_id = first.id();
    drop(first);
    // A new cache may well be allocated where the first one was.
    let second = Cache::open(dir.path()).unwrap();
    assert_ne!(second.id(), first_id);
    assert!(matches!(quad.call(&second, (2,)), Err(Error::WrongCache)));

    let other = Cache::open(dir.path()).unwrap();
    let linker = Arc::new(Linker::new(other.engine()));
    let mut store = request_store(&other, &linker);
    assert!(matches!(
        second.get_typed_func::<i64, i64, _>(&mut store, "math.quad"),
        Err(Error::WrongCache)
    ));
}

#[test]
fn more_than_ten_thousand_modules_load_into_one_store_when_its_limits_allow() {
    // tmpfs when there is one: this test is about instance limits, not the disk.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    const MODULES: i64 = 10_001;
    let cache = Cache::builder(dir.path())
        .limits(StoreLimitsBuilder::new().instances(20_000).build())
        .open()
        .unwrap();
    for i in 0..MODULES {
        cache
            .add_module(&wasm(&format!(
                r#"(module (func (export "many.f{i}") (result i64) (i64.const {i})))"#
            )))
            .unwrap();
    }
    for i in 0..MODULES {
        let f = cache.target::<(), i64>(&format!("many.f{i}")).unwrap();
        assert_eq!(f.call(&cache, ()).unwrap(), i);
    }
    assert_eq!(cache.loaded_modules().len(), MODULES as usize);
    assert_eq!(cache.stats().modules_loaded, MODULES as u64);
}

mod asynchronous {
    use super::*;

    fn async_store(cache: &Cache, linker: &Arc<Linker<Request>>) -> Store<Request> {
        Store::new(
            cache.engine(),
            Request {
                linkage: cache.async_store_linkage(Arc::clone(linker)),
                seen: Vec::new(),
                limits: StoreLimits::default(),
            },
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_target_and_call_in_their_own_async_stores() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        add_quad(&cache);
        add_duplicates(&cache);
        let linker = Arc::new(Linker::new(cache.engine()));
        let mut tasks = Vec::new();
        for task in 0..6i64 {
            let cache = cache.clone();
            let linker = Arc::clone(&linker);
            tasks.push(tokio::spawn(async move {
                let mut store = async_store(&cache, &linker);
                let quad = cache
                    .get_typed_func_async::<i64, i64, _>(&mut store, "math.quad")
                    .await
                    .unwrap();
                for x in 0..100 {
                    assert_eq!(quad.call_async(&mut store, x).await.unwrap(), x.pow(4));
                }
                let dup = cache
                    .get_typed_func_async::<i64, i64, _>(&mut store, "dup.f")
                    .await
                    .unwrap();
                let y = dup.call_async(&mut store, task).await.unwrap();
                (y - task, store.data().linkage.binding("dup.f").unwrap())
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        assert_eq!(outcomes.len(), 6);
        assert!(outcomes.iter().all(|o| *o == outcomes[0]), "{outcomes:?}");
        assert!(outcomes[0].0 == 1000 || outcomes[0].0 == 2000);
        assert_eq!(cache.stats().hits, 12);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lazy_edge_loads_inside_an_async_call() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        add_quad(&cache);
        // `app.entry` needs nothing from the cache; the embedder's `env.later` calls
        // back into the instance's `app.later`, whose `util.sq` lies outside
        // app.entry's closure: a lazy stub, loaded inside the async call.
        cache
            .add_module(&wasm(
                r#"(module
                    (import "linkcache:fn" "util.sq" (func $sq (param i64) (result i64)))
                    (import "env" "later" (func $later (param i64) (result i64)))
                    (func (export "app.entry") (param i64) (result i64) (call $later (local.get 0)))
                    (func (export "app.later") (param i64) (result i64) (call $sq (local.get 0))))"#,
            ))
            .unwrap();
        let mut linker = Linker::<Request>::new(cache.engine());
        linker
            .func_wrap_async(
                "env",
                "later",
                |mut caller: Caller<'_, Request>, (x,): (i64,)| {
                    Box::new(async move {
                        let later = caller
                            .get_export("app.later")
                            .and_then(|e| e.into_func())
                            .expect("the instance exports app.later");
                        let mut result = [wasmtime::Val::I64(0)];
                        later
                            .call_async(&mut caller, &[wasmtime::Val::I64(x)], &mut result)
                            .await?;
                        Ok(result[0].unwrap_i64())
                    })
                },
            )
            .unwrap();
        let linker = Arc::new(linker);
        let mut store = async_store(&cache, &linker);
        let entry = cache
            .get_typed_func_async::<i64, i64, _>(&mut store, "app.entry")
            .await
            .unwrap();
        assert_eq!(
            store.data().linkage.loaded_modules().len(),
            1,
            "util.sq is lazy"
        );
        assert!(store.data().linkage.binding("util.sq").is_none());
        assert_eq!(entry.call_async(&mut store, 6).await.unwrap(), 36);
        assert_eq!(
            store.data().linkage.loaded_modules().len(),
            2,
            "loaded inside the call"
        );
        assert!(store.data().linkage.binding("util.sq").is_some());
    }

    #[tokio::test]
    async fn sync_and_async_linkages_are_not_mixed_up() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        add_quad(&cache);
        let linker = Arc::new(Linker::new(cache.engine()));
        let mut store = async_store(&cache, &linker);
        let Err(error) = cache.get_typed_func::<i64, i64, _>(&mut store, "math.quad") else {
            panic!("a synchronous target of an async linkage is refused");
        };
        assert!(error.to_string().contains("get_func_async"), "{error}");
        let mut sync = request_store(&cache, &linker);
        let Err(error) = cache
            .get_typed_func_async::<i64, i64, _>(&mut sync, "math.quad")
            .await
        else {
            panic!("an async target of a synchronous linkage is refused");
        };
        assert!(error.to_string().contains("async_store_linkage"), "{error}");
    }
}
