//! The JS face's error classes and `gc`, in a real headless Chromium: every rejection is
//! an instance of its `LinkCacheError` subclass, with the miss in its own fields and the
//! underlying error in `Error.cause`; `gc({ maxBytes })` evicts the least recently used
//! modules whole, tells the other tabs, and counts a use made just before it; a tab
//! closed right after a target, or whose connection another tab's deletion closed,
//! drops the use it queued instead of writing it to the closed connection; a read that fails after it was issued (its transaction aborted) is
//! a `LinkCacheStorage` error that blames no module. Two
//! `LinkCache`s on one database in one page
//! stand for two tabs, as in tabs_and_plans.rs.

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Reflect};
use linkcache_web::LinkCache;
use linkcache_web::errors::{
    LinkCacheClosed, LinkCacheCompileFailed, LinkCacheError, LinkCacheInvalidModule, LinkCacheMiss,
    LinkCacheStorage,
};
use linkcache_web::store::IdbStore;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::{Patched, add_text, global_number, open, prop, sleep, target, unique, wait};

fn call_i32(f: &Function) -> i32 {
    f.call0(&JsValue::NULL).unwrap().as_f64().unwrap() as i32
}

fn has_own(object: &JsValue, key: &str) -> bool {
    let object: &Object = object.unchecked_ref();
    Object::has_own(object, &JsValue::from_str(key))
}

#[wasm_bindgen_test]
async fn every_rejection_is_an_instance_of_its_error_class_with_the_underlying_error_as_cause() {
    let cache = open(&unique("classes"), &JsValue::UNDEFINED).await;

    // A miss: its cause in `missCause`, never in ES2022's `cause`.
    let miss = wait(cache.target("nowhere.f".into())).await.unwrap_err();
    assert!(miss.is_instance_of::<LinkCacheMiss>(), "{miss:?}");
    assert!(miss.is_instance_of::<LinkCacheError>());
    assert!(miss.is_instance_of::<js_sys::Error>());
    assert!(!miss.is_instance_of::<LinkCacheStorage>());
    assert_eq!(
        prop(&miss, "name").as_string().as_deref(),
        Some("LinkCacheMiss")
    );
    assert_eq!(
        prop(&miss, "missCause").as_string().as_deref(),
        Some("unknown")
    );
    assert_eq!(
        prop(&miss, "function").as_string().as_deref(),
        Some("nowhere.f")
    );
    assert!(prop(&miss, "detail").is_null());
    assert!(!has_own(&miss, "cause"), "a miss has no underlying error");
    let text = String::from(miss.unchecked_ref::<js_sys::Error>().to_string());
    assert!(text.starts_with("LinkCacheMiss: "), "{text}");

    let invalid = wait(cache.add_module("not bytes".into()))
        .await
        .unwrap_err();
    assert!(invalid.is_instance_of::<LinkCacheInvalidModule>());
    assert!(invalid.is_instance_of::<LinkCacheError>());

    // A compile callback that throws: its error is the cause. The callback itself gets
    // the miss as a LinkCacheMiss.
    let thrown: JsValue = js_sys::RangeError::new("the compiler broke").into();
    let given = Rc::new(RefCell::new(JsValue::UNDEFINED));
    let compile = {
        let (thrown, given) = (thrown.clone(), Rc::clone(&given));
        Closure::<dyn FnMut(JsValue) -> Result<JsValue, JsValue>>::new(move |miss: JsValue| {
            *given.borrow_mut() = miss;
            Err(thrown.clone())
        })
    };
    let failed = wait(cache.get_or_compile(
        "nowhere.g".into(),
        compile.as_ref().unchecked_ref::<Function>().clone(),
    ))
    .await
    .unwrap_err();
    assert!(
        failed.is_instance_of::<LinkCacheCompileFailed>(),
        "{failed:?}"
    );
    assert!(
        Object::is(&prop(&failed, "cause"), &thrown),
        "cause: what the callback threw"
    );
    assert!(given.borrow().is_instance_of::<LinkCacheMiss>());
    assert_eq!(
        prop(&given.borrow(), "function").as_string().as_deref(),
        Some("nowhere.g")
    );

    // A closed connection: a storage error, caused by IndexedDB's DOMException.
    cache.close();
    let closed = wait(cache.target("nowhere.f".into())).await.unwrap_err();
    assert!(closed.is_instance_of::<LinkCacheClosed>(), "{closed:?}");
    assert!(closed.is_instance_of::<LinkCacheStorage>());
    assert!(closed.is_instance_of::<LinkCacheError>());
    let cause = prop(&closed, "cause");
    assert!(cause.is_instance_of::<web_sys::DomException>(), "{cause:?}");
    assert_eq!(
        prop(&cause, "name").as_string().as_deref(),
        Some("InvalidStateError")
    );
    // tryTarget resolves, with the same error.
    let report = wait(cache.try_target("nowhere.f".into())).await.unwrap();
    assert!(prop(&report, "error").is_instance_of::<LinkCacheClosed>());
}

const A: &str = r#"(module (func (export "gc.a") (result i32) (i32.const 1)))"#;
const B: &str = r#"(module (func (export "gc.b") (result i32) (i32.const 2)))"#;
const C: &str = r#"(module (func (export "gc.c") (result i32) (i32.const 3)))"#;

/// The messages `cache`'s `onChange` callback receives: `(type, modules)`.
type Seen = Rc<RefCell<Vec<(String, Vec<String>)>>>;

fn record_changes(cache: &LinkCache) -> Seen {
    let seen: Seen = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&seen);
    let callback = Closure::<dyn FnMut(JsValue)>::new(move |message: JsValue| {
        let modules = Array::from(&prop(&message, "modules"))
            .iter()
            .filter_map(|m| m.as_string())
            .collect();
        sink.borrow_mut().push((
            prop(&message, "type").as_string().unwrap_or_default(),
            modules,
        ));
    });
    let _ = cache.on_change(callback.into_js_value().unchecked_into());
    seen
}

async fn gc(cache: &LinkCache, max_bytes: f64) -> (Vec<String>, f64, f64) {
    let options = Object::new();
    Reflect::set(&options, &"maxBytes".into(), &max_bytes.into()).unwrap();
    let report = wait(cache.gc(options.into())).await.expect("gc");
    let evicted = Array::from(&prop(&report, "evicted"))
        .iter()
        .map(|id| id.as_string().unwrap())
        .collect();
    (
        evicted,
        prop(&report, "freedBytes").as_f64().unwrap(),
        prop(&report, "remainingBytes").as_f64().unwrap(),
    )
}

async fn evicted_messages(seen: &Seen, count: usize) -> Vec<Vec<String>> {
    let evicted = || -> Vec<Vec<String>> {
        seen.borrow()
            .iter()
            .filter(|(kind, _)| kind == "evicted")
            .map(|(_, modules)| modules.clone())
            .collect()
    };
    for _ in 0..100 {
        if evicted().len() >= count {
            break;
        }
        sleep(10).await;
    }
    evicted()
}

#[wasm_bindgen_test]
async fn gc_evicts_least_recently_used_modules_whole_and_tells_other_tabs() {
    let db = unique("gc");
    let a = open(&db, &JsValue::UNDEFINED).await;
    let b = open(&db, &JsValue::UNDEFINED).await;
    let seen = record_changes(&b);
    // Committed (and so used) in the order a, b, c ...
    let (ma, mb, mc) = (
        add_text(&a, A).await,
        add_text(&a, B).await,
        add_text(&a, C).await,
    );
    // ... then tab b uses a and c: b is the least recently used.
    let fa = target(&b, "gc.a").await;
    let fc = target(&b, "gc.c").await;

    let modules = Array::from(&wait(a.modules()).await.unwrap());
    assert_eq!(modules.length(), 3);
    for module in modules.iter() {
        assert!(
            prop(&module, "usedAt").as_f64().is_some(),
            "a use time is recorded"
        );
    }
    let (evicted, freed, total) = gc(&a, f64::MAX).await;
    assert!(evicted.is_empty() && freed == 0.0 && total > 0.0);

    // One byte too many: the least recently used module goes, whole.
    let (evicted, freed, remaining) = gc(&a, total - 1.0).await;
    assert_eq!(evicted, [mb.to_string()]);
    assert!(
        freed > 0.0 && remaining == total - freed,
        "{freed} {remaining} {total}"
    );
    assert_eq!(evicted_messages(&seen, 1).await, [vec![mb.to_string()]]);
    let listed: Vec<String> = Array::from(&wait(a.modules()).await.unwrap())
        .iter()
        .map(|m| prop(&m, "id").as_string().unwrap())
        .collect();
    assert_eq!(listed, [ma.to_string(), mc.to_string()]);
    let store = IdbStore::open(&db, Box::new(|| {})).await.unwrap();
    assert!(
        store.module_bytes(&mb).await.unwrap().is_err(),
        "its bytes are gone"
    );
    // Its index entries went with it: a miss, not a broken module.
    let report = wait(b.try_target("gc.b".into())).await.unwrap();
    assert_eq!(
        prop(&report, "missCause").as_string().as_deref(),
        Some("unknown")
    );
    assert_eq!(prop(&b.stats(), "brokenSkipped").as_f64(), Some(0.0));
    // Tab b had not loaded it: its bindings stay.
    assert_eq!(
        prop(&b.bindings(), "gc.a").as_string(),
        Some(ma.to_string())
    );

    // Nothing may stay: a, then c, least recently used first. Tab b had them loaded,
    // so it forgets its bindings; the functions it holds keep working.
    let (evicted, _, remaining) = gc(&a, 0.0).await;
    assert_eq!(evicted, [ma.to_string(), mc.to_string()]);
    assert_eq!(remaining, 0.0);
    assert_eq!(
        evicted_messages(&seen, 2).await[1],
        [ma.to_string(), mc.to_string()]
    );
    assert_eq!(
        Object::keys(b.bindings().unchecked_ref::<Object>()).length(),
        0,
        "tab b forgot its bindings"
    );
    assert_eq!((call_i32(&fa), call_i32(&fc)), (1, 3));

    // Refilled, the cache works again in both tabs.
    add_text(&a, A).await;
    assert_eq!(call_i32(&target(&b, "gc.a").await), 1);

    let bad = wait(a.gc(Object::new().into())).await.unwrap_err();
    assert!(bad.is_instance_of::<js_sys::TypeError>(), "{bad:?}");
}

#[wasm_bindgen_test]
async fn a_gc_right_after_a_target_counts_the_targets_use() {
    let db = unique("gc-after-target");
    let writer = open(&db, &JsValue::UNDEFINED).await;
    let (ma, mb) = (add_text(&writer, A).await, add_text(&writer, B).await);
    let (_, _, total) = gc(&writer, f64::MAX).await;
    writer.close();
    // A fresh tab keeps its plan of gc.a; then another uses b, so a is the least recently
    // used. (Listing the modules writes a tab's queued uses before it reads.)
    for func in ["gc.a", "gc.b"] {
        let tab = open(&db, &JsValue::UNDEFINED).await;
        target(&tab, func).await;
        wait(tab.modules()).await.unwrap();
        tab.close();
    }

    // A fresh tab replays gc.a's kept plan (it writes nothing, so it returns before its
    // use is written, a task later) and starts a gc before any task could run: the gc
    // writes the queued use first, and evicts b.
    let tab = open(&db, &JsValue::UNDEFINED).await;
    let fa = target(&tab, "gc.a").await;
    let (evicted, _, _) = gc(&tab, total - 1.0).await;
    assert_eq!(prop(&tab.stats(), "plansReplayed").as_f64(), Some(1.0));
    assert_eq!(
        evicted,
        [mb.to_string()],
        "b is now the least recently used"
    );
    let listed: Vec<String> = Array::from(&wait(tab.modules()).await.unwrap())
        .iter()
        .map(|m| prop(&m, "id").as_string().unwrap())
        .collect();
    assert_eq!(listed, [ma.to_string()]);
    assert_eq!(fa.call0(&JsValue::NULL).unwrap().as_f64(), Some(1.0));
}

/// Counts in `globalThis.__closedTransactions`, while it lives, the
/// `IDBDatabase.transaction` calls on database `db` that throw `InvalidStateError` (the
/// connection is closed).
fn counting_closed_transactions(db: &str) -> Patched {
    Reflect::set(&js_sys::global(), &"__closedTransactions".into(), &0.into()).unwrap();
    let proto = prop(&prop(&js_sys::global(), "IDBDatabase"), "prototype");
    Patched::install(
        &proto,
        "transaction",
        &format!(
            "return function (...args) {{ \
               try {{ return original.apply(this, args); }} \
               catch (e) {{ \
                 if (this.name === {db:?} && e.name === 'InvalidStateError') \
                   globalThis.__closedTransactions += 1; \
                 throw e; \
               }} \
             }};"
        ),
    )
}

/// A new database (its name made from `name`) holding module A and the plan of gc.a a
/// first tab kept, with no connection left open: a fresh tab's target of gc.a replays it.
async fn with_kept_plan_of_gc_a(name: &str) -> String {
    let db = unique(name);
    let writer = open(&db, &JsValue::UNDEFINED).await;
    add_text(&writer, A).await;
    writer.close();
    // The first tab's target keeps its plan (a write the target waits for).
    let first = open(&db, &JsValue::UNDEFINED).await;
    target(&first, "gc.a").await;
    sleep(10).await;
    first.close();
    db
}

#[wasm_bindgen_test]
async fn closing_right_after_a_target_leaves_no_write_for_the_closed_connection() {
    let db = with_kept_plan_of_gc_a("close-after-target").await;

    // A fresh tab replays the kept plan: it writes nothing on the target's path, so the
    // target returns with its use queued for the next task, and the tab closes first.
    let spy = counting_closed_transactions(&db);
    let tab = open(&db, &JsValue::UNDEFINED).await;
    let fa = target(&tab, "gc.a").await;
    tab.close();
    sleep(0).await;
    sleep(10).await;
    let thrown = global_number("__closedTransactions");
    drop(spy);
    assert_eq!(prop(&tab.stats(), "plansReplayed").as_f64(), Some(1.0));
    assert_eq!(
        thrown, 0.0,
        "the queued use was dropped with the connection, not written to it after close()"
    );
    assert_eq!(call_i32(&fa), 1, "the returned function keeps working");
}

/// While it lives: the first read of a module's bytes on database `db` has its
/// transaction aborted right after it is issued, so that the request fails later, in an
/// `AbortError` event of its own (not a throw at the call). Counts the aborts in
/// `globalThis.__abortedReads`.
fn aborting_the_first_bytes_read(db: &str) -> Patched {
    Reflect::set(&js_sys::global(), &"__abortedReads".into(), &0.into()).unwrap();
    let proto = prop(&prop(&js_sys::global(), "IDBObjectStore"), "prototype");
    Patched::install(
        &proto,
        "get",
        &format!(
            "return function (...args) {{ \
               const request = original.apply(this, args); \
               if (this.name === 'modules' && this.transaction.db.name === {db:?} \
                   && globalThis.__abortedReads === 0) {{ \
                 globalThis.__abortedReads += 1; \
                 this.transaction.abort(); \
               }} \
               return request; \
             }};"
        ),
    )
}

#[wasm_bindgen_test]
async fn a_read_that_fails_after_it_was_issued_is_a_storage_error_and_the_cache_stays_usable() {
    let db = unique("read-fails-later");
    let writer = open(&db, &JsValue::UNDEFINED).await;
    add_text(&writer, A).await;
    writer.close();

    let tab = open(&db, &JsValue::UNDEFINED).await;
    let spy = aborting_the_first_bytes_read(&db);
    let failed = wait(tab.target("gc.a".into())).await;
    let aborted = global_number("__abortedReads");
    drop(spy);
    assert_eq!(
        aborted, 1.0,
        "the bytes were read, and that read was aborted"
    );
    let error = failed.expect_err("the target fails with its read");
    assert!(error.is_instance_of::<LinkCacheStorage>());
    let message = prop(&error, "message").as_string().unwrap();
    assert!(
        message.starts_with("reading the closure of a function: AbortError"),
        "the failure of the plan's read step, as IndexedDB reported it: {message}"
    );
    assert_eq!(
        prop(&prop(&error, "cause"), "name").as_string().as_deref(),
        Some("AbortError"),
        "the browser's error is the cause"
    );

    // A failed read blames no module: the same tab targets it once reads succeed.
    let fa = target(&tab, "gc.a").await;
    assert_eq!(call_i32(&fa), 1);
    assert_eq!(prop(&tab.stats(), "brokenSkipped").as_f64(), Some(0.0));
}

/// While it lives: `setTimeout(f, 0)` schedules nothing; `f` waits in
/// `globalThis.__heldTimers` until [`release_held_timers`]. Other timers run as usual.
fn holding_zero_timers() -> Patched {
    Reflect::set(&js_sys::global(), &"__heldTimers".into(), &Array::new()).unwrap();
    Patched::install(
        &js_sys::global(),
        "setTimeout",
        "return function (f, ms, ...args) { \
           if (!ms) { globalThis.__heldTimers.push(() => f(...args)); return 0; } \
           return original.call(globalThis, f, ms, ...args); \
         };",
    )
}

/// Schedules the timers [`holding_zero_timers`] held; how many there were.
fn release_held_timers() -> u32 {
    let held = Array::from(&prop(&js_sys::global(), "__heldTimers"));
    let schedule = Function::new_with_args("f", "setTimeout(f, 0);");
    for f in held.iter() {
        schedule.call1(&JsValue::NULL, &f).unwrap();
    }
    held.length()
}

/// `indexedDB.deleteDatabase(name)`, as another tab would (it waits for this page's
/// connections to close).
async fn delete_database(name: &str) {
    let delete = Function::new_with_args(
        "name",
        "return new Promise((resolve, reject) => { \
           const request = indexedDB.deleteDatabase(name); \
           request.onsuccess = () => resolve(); \
           request.onerror = () => reject(request.error); \
         });",
    );
    wait(
        delete
            .call1(&JsValue::NULL, &name.into())
            .unwrap()
            .unchecked_into(),
    )
    .await
    .expect("deleted");
}

#[wasm_bindgen_test]
async fn a_connection_closed_by_another_tabs_deletion_drops_the_uses_queued_for_it() {
    let db = with_kept_plan_of_gc_a("deleted-after-target").await;

    // A fresh tab replays the kept plan, so its use waits for the next task; the timers
    // are held, so that another tab's deletion closes the connection before that task.
    let spy = counting_closed_transactions(&db);
    let tab = open(&db, &JsValue::UNDEFINED).await;
    let seen = record_changes(&tab);
    let timers = holding_zero_timers();
    let fa = target(&tab, "gc.a").await;
    delete_database(&db).await;
    drop(timers);
    assert!(release_held_timers() >= 1, "the queued use's task was held");
    sleep(20).await;
    let thrown = global_number("__closedTransactions");
    drop(spy);
    assert_eq!(prop(&tab.stats(), "plansReplayed").as_f64(), Some(1.0));
    assert!(
        seen.borrow().iter().any(|(kind, _)| kind == "closed"),
        "the tab was told its connection closed: {:?}",
        seen.borrow()
    );
    assert_eq!(
        thrown, 0.0,
        "the queued use was dropped with the connection, not written to it once closed"
    );
    assert_eq!(call_i32(&fa), 1, "the returned function keeps working");
}
