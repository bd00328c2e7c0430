//! linkcache-web's own overhead and its behaviour across tabs, in a real headless
//! Chromium: one transaction per plan, no re-analysis at load, instances made where a
//! browser refuses them on the main thread, work in flight shared by
//! concurrent targets, another tab's `clear()` and upgrade, and the JS face (unsubscribe,
//! throwing callbacks, buffers, async `resolveGlobal`, a `tryTarget` that never rejects).
//! Two `LinkCache`s on one database in one page stand for two tabs: they share IndexedDB
//! and their `BroadcastChannel`s reach each other.

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use linkcache_core::ModuleId;
use linkcache_web::LinkCache;
use linkcache_web::store::IdbStore;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::{
    Patched, add_text, bytes, call_i32, chain_f1_plus_100, chain_module, damage_module_bytes,
    global_number, open, prop, sleep, stat, unique, wait,
};

#[wasm_bindgen_test]
async fn a_fresh_tab_reads_a_closure_its_hint_predicted_in_two_round_trips() {
    let db = unique("hint");
    let writer = open(&db, &JsValue::UNDEFINED).await;
    for k in 0..10 {
        add_text(&writer, &chain_module(k)).await;
    }
    writer.close();

    let first = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&first, "chain.f9").await, 45);
    assert_eq!(
        stat(&first, "planReads"),
        11.0,
        "no hint yet: one level of the chain per round trip, then the bytes"
    );
    first.close();

    let second = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&second, "chain.f9").await, 45);
    assert_eq!(
        stat(&second, "planReads"),
        2.0,
        "the target with its hint (and the plan the first tab kept), then the bytes"
    );
    assert_eq!(stat(&second, "plansReplayed"), 1.0);
    assert_eq!(stat(&second, "planTransactions"), 1.0);
    assert_eq!(stat(&second, "modulesCompiled"), 10.0);
    second.close();

    // Another target has no hint of its own yet; a tab with part of the closure bound
    // reads only the rest.
    let third = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&third, "chain.f4").await, 10);
    assert_eq!(stat(&third, "planReads"), 6.0);
    assert_eq!(
        stat(&third, "plansReplayed"),
        0.0,
        "chain.f4 has no kept plan yet"
    );
    assert_eq!(call_i32(&third, "chain.f9").await, 45);
    assert_eq!(stat(&third, "modulesCompiled"), 10.0);
}

#[wasm_bindgen_test]
async fn a_hint_never_hides_a_broken_module_or_a_candidate_added_after_it() {
    let db = unique("hint-stale");
    let writer = open(&db, &JsValue::UNDEFINED).await;
    for k in 0..3 {
        add_text(&writer, &chain_module(k)).await;
    }
    let first = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&first, "chain.f2").await, 3);
    first.close();

    // Damaged after the hint was written (no commit: the index and its stamp are
    // unchanged, so the next tab trusts the hint's candidates, and reads the bytes).
    let middle = ModuleId::of(&bytes(&chain_module(1)));
    damage_module_bytes(&db, &middle).await;
    let second = open(&db, &JsValue::UNDEFINED).await;
    let err = wait(second.target("chain.f2".into())).await.unwrap_err();
    assert_eq!(
        prop(&err, "missCause").as_string().as_deref(),
        Some("broken"),
        "{err:?}"
    );
    assert_eq!(
        prop(&prop(&second.stats(), "plansNotReplayed"), "moduleBroken").as_f64(),
        Some(1.0),
        "the first tab's kept plan was replayed, and its load found the damage"
    );
    second.close();

    // A duplicate of the damaged module, which the hint does not list: its commit
    // changes the index stamp, so the next tab asks the index and finds it.
    add_text(&writer, &chain_f1_plus_100()).await;
    let third = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&third, "chain.f2").await, 102);
    assert_eq!(stat(&third, "brokenSkipped"), 1.0);
}

#[wasm_bindgen_test]
async fn a_ten_module_closure_is_planned_in_one_transaction_and_compiled_from_one_read() {
    let db = unique("one-tx");
    let writer = open(&db, &JsValue::UNDEFINED).await;
    for k in 0..10 {
        add_text(&writer, &chain_module(k)).await;
    }
    // An unrelated module the plan must not read.
    add_text(
        &writer,
        r#"(module (func (export "other.g") (result i32) (i32.const 1)))"#,
    )
    .await;
    writer.close();

    let tab = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&tab, "chain.f9").await, 45);
    assert_eq!(stat(&tab, "plans"), 1.0);
    assert_eq!(
        stat(&tab, "planTransactions"),
        1.0,
        "one read-only transaction"
    );
    assert_eq!(stat(&tab, "modulesCompiled"), 10.0);
    assert_eq!(stat(&tab, "modulesLoaded"), 10.0);
    assert_eq!(
        stat(&tab, "manifestsChecked"),
        0.0,
        "checked when committed, not at load"
    );
}

/// `WebAssembly.Instance` replaced, while it lives, by a constructor that refuses as older
/// Chromium refuses large modules on the main thread, counting its calls in
/// `globalThis.__refusedInstances`.
fn refusing_instances() -> Patched {
    Reflect::set(&js_sys::global(), &"__refusedInstances".into(), &0.into()).unwrap();
    let wasm = prop(&js_sys::global(), "WebAssembly");
    Patched::install(
        &wasm,
        "Instance",
        "return function () { \
           globalThis.__refusedInstances += 1; \
           throw new RangeError('WebAssembly.Instance is disallowed on the main thread, \
           if the buffer size is larger than 4KB. Use WebAssembly.instantiate.'); \
         };",
    )
}

#[wasm_bindgen_test]
async fn a_browser_that_refuses_instances_on_the_main_thread_gets_them_asynchronously() {
    let db = unique("no-sync-instance");
    let writer = open(&db, &JsValue::UNDEFINED).await;
    for k in 0..3 {
        add_text(&writer, &chain_module(k)).await;
    }
    writer.close();

    let refusing = refusing_instances();
    let tab = open(&db, &JsValue::UNDEFINED).await;
    let result = call_i32(&tab, "chain.f2").await;
    let refused = global_number("__refusedInstances");
    drop(refusing);
    assert_eq!(result, 3);
    assert_eq!(refused, 3.0, "each module was tried at once first");
    assert_eq!(stat(&tab, "modulesLoaded"), 3.0);
    assert_eq!(
        stat(&tab, "brokenSkipped"),
        0.0,
        "a refusal is not a broken module"
    );
}

#[wasm_bindgen_test]
async fn a_module_whose_instance_traps_is_broken_and_its_later_duplicate_loads() {
    let db = unique("trapping-start");
    let writer = open(&db, &JsValue::UNDEFINED).await;
    add_text(
        &writer,
        r#"(module (func $start unreachable) (start $start)
             (func (export "trap.f") (result i32) (i32.const 1)))"#,
    )
    .await;
    writer.close();

    let tab = open(&db, &JsValue::UNDEFINED).await;
    let report = wait(tab.try_target("trap.f".into())).await.unwrap();
    assert_eq!(
        prop(&report, "missCause").as_string().as_deref(),
        Some("broken")
    );
    let message = prop(&report, "message").as_string().unwrap();
    assert!(
        message.contains("compiling or instantiating it failed"),
        "{message}"
    );
    assert_eq!(stat(&tab, "brokenSkipped"), 1.0);

    // A later duplicate that instantiates is the one the tab binds.
    add_text(
        &tab,
        r#"(module (func (export "trap.f") (result i32) (i32.const 2)))"#,
    )
    .await;
    assert_eq!(call_i32(&tab, "trap.f").await, 2);
}

#[wasm_bindgen_test]
async fn a_manifest_without_this_analyzers_version_is_checked_once_at_load() {
    let db = unique("analyzer");
    let writer = open(&db, &JsValue::UNDEFINED).await;
    let id = add_text(&writer, &chain_module(0)).await;
    writer.close();
    let store = IdbStore::open(&db, Box::new(|| {})).await.unwrap();
    store.forget_analyzer_version(&id).await.unwrap();
    store.close();

    let tab = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&tab, "chain.f0").await, 0);
    assert_eq!(stat(&tab, "manifestsChecked"), 1.0);
    tab.forget();
    assert_eq!(call_i32(&tab, "chain.f0").await, 0);
    assert_eq!(
        stat(&tab, "manifestsChecked"),
        1.0,
        "once per tab: the decoded manifest remembers it passed"
    );
    assert_eq!(stat(&tab, "modulesCompiled"), 2.0);
}

const UTIL: &str = r#"(module (func (export "util.seven") (result i32) (i32.const 7)))"#;
const USER_A: &str = r#"(module (import "linkcache:fn" "util.seven" (func $s (result i32)))
  (func (export "use.a") (result i32) (i32.add (call $s) (i32.const 1))))"#;
const USER_B: &str = r#"(module (import "linkcache:fn" "util.seven" (func $s (result i32)))
  (func (export "use.b") (result i32) (i32.add (call $s) (i32.const 2))))"#;

#[wasm_bindgen_test]
async fn concurrent_targets_compile_and_instantiate_a_shared_module_once() {
    let db = unique("shared");
    let writer = open(&db, &JsValue::UNDEFINED).await;
    for text in [UTIL, USER_A, USER_B] {
        add_text(&writer, text).await;
    }
    writer.close();

    let tab = open(&db, &JsValue::UNDEFINED).await;
    let both = wait(Promise::all(&Array::of2(
        &tab.target("use.a".into()),
        &tab.target("use.b".into()),
    )))
    .await
    .unwrap();
    let results: Vec<f64> = Array::from(&both)
        .iter()
        .map(|f| {
            f.unchecked_into::<Function>()
                .call0(&JsValue::NULL)
                .unwrap()
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(results, [8.0, 9.0]);
    assert_eq!(stat(&tab, "modulesCompiled"), 3.0, "util compiled once");
    assert_eq!(stat(&tab, "modulesLoaded"), 3.0, "util instantiated once");
    assert_eq!(stat(&tab, "hits"), 2.0);
}

#[wasm_bindgen_test]
async fn concurrent_get_or_compile_of_one_name_runs_the_compiler_once() {
    let tab = open(&unique("one-compile"), &JsValue::UNDEFINED).await;
    let calls = Rc::new(RefCell::new(0));
    let counter = Rc::clone(&calls);
    let module = Uint8Array::from(bytes(UTIL).as_slice());
    let compile = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |_miss| {
        *counter.borrow_mut() += 1;
        let module = module.clone();
        // A compiler that takes a while, so the second call arrives while it runs.
        let later = Function::new_with_args(
            "bytes",
            "return new Promise((r) => setTimeout(() => r(bytes), 20))",
        );
        later.call1(&JsValue::NULL, &module).unwrap()
    });
    let compile: Function = compile.into_js_value().unchecked_into();
    let first = tab.get_or_compile("util.seven".into(), compile.clone());
    let second = tab.get_or_compile("util.seven".into(), compile);
    let both = wait(Promise::all(&Array::of2(&first, &second)))
        .await
        .unwrap();
    let both = Array::from(&both);
    assert_eq!(*calls.borrow(), 1, "the compiler ran once");
    assert_eq!(stat(&tab, "compiles"), 1.0);
    assert_eq!(stat(&tab, "modulesAdded"), 1.0);
    assert!(Object::is(&both.get(0), &both.get(1)), "one function");
}

/// The messages `cache`'s `onChange` callback receives, and the unsubscribe function.
fn record_changes(cache: &LinkCache) -> (Rc<RefCell<Vec<String>>>, Function) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&seen);
    let callback = Closure::<dyn FnMut(JsValue)>::new(move |message: JsValue| {
        sink.borrow_mut()
            .push(prop(&message, "type").as_string().unwrap_or_default());
    });
    let unsubscribe = cache.on_change(callback.into_js_value().unchecked_into());
    (seen, unsubscribe.unchecked_into())
}

#[wasm_bindgen_test]
async fn another_tab_clearing_the_cache_makes_a_miss_here_not_a_broken_module() {
    let db = unique("cleared");
    let a = open(&db, &JsValue::UNDEFINED).await;
    let b = open(&db, &JsValue::UNDEFINED).await;
    let (seen, _) = record_changes(&b);
    add_text(&a, UTIL).await;
    add_text(&a, USER_A).await;
    assert_eq!(call_i32(&b, "util.seven").await, 7);

    wait(a.clear()).await.unwrap();
    for _ in 0..50 {
        if seen.borrow().iter().any(|t| t == "cleared") {
            break;
        }
        sleep(10).await;
    }
    assert!(seen.borrow().iter().any(|t| t == "cleared"), "{seen:?}");
    assert_eq!(
        Object::keys(b.bindings().unchecked_ref::<Object>()).length(),
        0,
        "tab b forgot its bindings"
    );
    let report = wait(b.try_target("use.a".into())).await.unwrap();
    assert_eq!(prop(&report, "hit"), JsValue::FALSE);
    assert_eq!(
        prop(&report, "missCause").as_string().as_deref(),
        Some("unknown")
    );
    assert_eq!(stat(&b, "brokenSkipped"), 0.0, "nothing was called broken");

    // Refilled by tab a: both tabs bind the same module again.
    let util = add_text(&a, UTIL).await;
    add_text(&a, USER_A).await;
    assert_eq!(call_i32(&b, "use.a").await, 8);
    assert_eq!(call_i32(&a, "use.a").await, 8);
    for tab in [&a, &b] {
        assert_eq!(
            prop(&tab.bindings(), "util.seven").as_string().as_deref(),
            Some(util.to_string().as_str())
        );
    }
}

#[wasm_bindgen_test]
async fn another_tabs_upgrade_is_announced_as_closed_and_try_target_resolves() {
    let db = unique("announce");
    let cache = open(&db, &JsValue::UNDEFINED).await;
    let (seen, _) = record_changes(&cache);
    add_text(&cache, UTIL).await;
    // Another tab asks for a newer version: this connection closes and says so.
    let upgrade = Function::new_with_args(
        "name",
        "return new Promise((resolve, reject) => { const r = indexedDB.open(name, 99);
           r.onblocked = () => reject(new Error('blocked'));
           r.onsuccess = () => { r.result.close(); resolve(true); }; r.onerror = () => reject(r.error); })",
    );
    wait(
        upgrade
            .call1(&JsValue::NULL, &db.clone().into())
            .unwrap()
            .unchecked_into(),
    )
    .await
    .expect("not blocked");
    assert_eq!(*seen.borrow(), ["closed"], "announced at once");
    let report = wait(cache.try_target("util.seven".into()))
        .await
        .expect("tryTarget never rejects");
    assert_eq!(prop(&report, "hit"), JsValue::FALSE);
    assert_eq!(
        prop(&prop(&report, "error"), "name").as_string().as_deref(),
        Some("LinkCacheClosed")
    );
}

#[wasm_bindgen_test]
async fn on_change_unsubscribes_and_a_throwing_callback_does_not_stop_the_others() {
    let db = unique("callbacks");
    let a = open(&db, &JsValue::UNDEFINED).await;
    let b = open(&db, &JsValue::UNDEFINED).await;
    let thrower = Function::new_no_args("throw new Error('a faulty listener')");
    let _ = b.on_change(thrower);
    let (kept, _) = record_changes(&b);
    let (dropped, unsubscribe) = record_changes(&b);
    unsubscribe.call0(&JsValue::NULL).unwrap();
    // reportError of the thrower must not fail the test page.
    let handler = Function::new_with_args("e", "e.preventDefault()");
    let window = js_sys::global();
    let add_listener: Function = prop(&window, "addEventListener").unchecked_into();
    add_listener
        .call2(&window, &"error".into(), &handler)
        .unwrap();

    add_text(&a, UTIL).await;
    for _ in 0..50 {
        if !kept.borrow().is_empty() {
            break;
        }
        sleep(10).await;
    }
    assert_eq!(*kept.borrow(), ["added"]);
    assert!(dropped.borrow().is_empty(), "unsubscribed");
    let remove: Function = prop(&window, "removeEventListener").unchecked_into();
    remove.call2(&window, &"error".into(), &handler).unwrap();
}

#[wasm_bindgen_test]
async fn add_module_takes_an_array_buffer_or_any_view() {
    let tab = open(&unique("buffers"), &JsValue::UNDEFINED).await;
    let util = Uint8Array::from(bytes(UTIL).as_slice());
    let id = wait(tab.add_module(util.buffer().into())).await.unwrap();
    // A DataView on the middle of a larger buffer.
    let user = bytes(USER_A);
    let padded = Uint8Array::new_with_length(user.len() as u32 + 8);
    padded.set(&Uint8Array::from(user.as_slice()), 4);
    let view = js_sys::DataView::new(&padded.buffer(), 4, user.len());
    wait(tab.add_module(view.into())).await.unwrap();
    assert_eq!(
        id.as_string().unwrap(),
        ModuleId::of(&bytes(UTIL)).to_string()
    );
    assert_eq!(call_i32(&tab, "use.a").await, 8);
    let err = wait(tab.add_module("not bytes".into())).await.unwrap_err();
    assert_eq!(
        prop(&err, "name").as_string().as_deref(),
        Some("LinkCacheInvalidModule")
    );
}

#[wasm_bindgen_test]
async fn resolve_global_may_answer_with_a_promise() {
    let mut module = bytes(
        r#"(module (import "linkcache:global" "cfg.n" (global $n i32))
             (func (export "cfg.get") (result i32) (global.get $n)))"#,
    );
    linkcache_core::append_globals_section(&mut module, [("cfg.n", &b"42"[..])]);
    let resolve = Function::new_with_args(
        "name, definition",
        "return new Promise((r) => setTimeout(() => r(Number(definition) + 1), 5))",
    );
    let options = Object::new();
    Reflect::set(&options, &"resolveGlobal".into(), &resolve).unwrap();
    let tab = open(&unique("async-global"), &options).await;
    wait(tab.add_module(Uint8Array::from(module.as_slice()).into()))
        .await
        .unwrap();
    assert_eq!(call_i32(&tab, "cfg.get").await, 43);
    assert_eq!(stat(&tab, "globalsValidated"), 1.0);
    // The await on the embedder ended the plan's transaction; its bytes came from a
    // second one.
    assert_eq!(stat(&tab, "planTransactions"), 2.0);
}
