//! linkcache-web in a real headless Chromium: the scenario suite of `tests/scenarios`,
//! persistence across a reload, and the error cases, all through the JS API on real
//! IndexedDB and `WebAssembly`.

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use linkcache_core::{GlobalCheck, GlobalDef, ModuleId, ValType, Value};
use linkcache_tests::{
    Labels, ModuleSpec, Number, Step, TargetOutcome, all, check_results, check_target, env_outcome,
};
use linkcache_web::LinkCache;
use linkcache_web::store::{IdbStore, SCHEMA_VERSION};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::{add, add_text, open, prop, stat, target, unique, wait};

fn ty(name: &str) -> ValType {
    match name {
        "i32" => ValType::I32,
        "i64" => ValType::I64,
        "f32" => ValType::F32,
        "f64" => ValType::F64,
        other => panic!("unexpected type {other}"),
    }
}

fn value_to_js(value: Value) -> JsValue {
    match value {
        Value::I32(x) => x.into(),
        Value::I64(x) => js_sys::BigInt::from(x).into(),
        Value::F32(bits) => f32::from_bits(bits).into(),
        Value::F64(bits) => f64::from_bits(bits).into(),
        Value::V128(_) => JsValue::UNDEFINED,
    }
}

fn js_to_value(ty: ValType, value: &JsValue) -> Value {
    match ty {
        ValType::I32 => Value::I32(value.as_f64().unwrap() as i32),
        ValType::I64 => {
            Value::I64(i64::try_from(value.clone().dyn_into::<js_sys::BigInt>().unwrap()).unwrap())
        }
        ValType::F32 => Value::from_f32(value.as_f64().unwrap() as f32),
        ValType::F64 => Value::from_f64(value.as_f64().unwrap()),
        _ => panic!("unsupported result type"),
    }
}

/// `options` for LinkCache.open whose resolveGlobal follows the scenario `env` rule
/// (`linkcache_tests::env_outcome`), answering a stale definition with `{stale: reason}`.
fn options_with_env(env: &Rc<RefCell<BTreeMap<String, String>>>) -> JsValue {
    let env = Rc::clone(env);
    let resolve = Closure::<dyn FnMut(String, String, String, Uint8Array) -> JsValue>::new(
        move |name: String, _text: String, type_name: String, bytes: Uint8Array| {
            let check = GlobalCheck {
                module: ModuleId::of(&[]),
                global: GlobalDef {
                    name: name.into(),
                    ty: ty(&type_name),
                    mutable: false,
                    definition: bytes.to_vec(),
                },
            };
            match env_outcome(&env.borrow(), &check) {
                Ok(value) => value_to_js(value),
                Err(reason) => {
                    let stale = Object::new();
                    Reflect::set(&stale, &"stale".into(), &reason.into()).unwrap();
                    stale.into()
                }
            }
        },
    );
    let options = Object::new();
    Reflect::set(&options, &"resolveGlobal".into(), resolve.as_ref()).unwrap();
    resolve.forget();
    options.into()
}

/// Plays one scenario against this host; the error names the step.
async fn run_scenario(scenario: &linkcache_tests::Scenario) -> Result<(), String> {
    let (labels, bytes) = Labels::of(scenario)?;
    let db = unique(&scenario.name);
    let env = Rc::new(RefCell::new(BTreeMap::new()));
    let options = options_with_env(&env);
    let mut cache = open(&db, &options).await;
    for (index, step) in scenario.steps.iter().enumerate() {
        let at = |e: String| format!("{} step {}: {e}", scenario.name, index + 1);
        match step {
            Step::Add {
                label,
                expect_error,
            } => {
                let result =
                    wait(cache.add_module(Uint8Array::from(bytes[label].as_slice()).into())).await;
                match (result, expect_error) {
                    (Ok(id), None) if id.as_string() == Some(labels.id(label).to_string()) => {}
                    (Ok(id), None) => return Err(at(format!("adding `{label}` gave {id:?}"))),
                    (Err(e), None) => return Err(at(format!("adding `{label}` failed: {e:?}"))),
                    (Ok(_), Some(_)) => {
                        return Err(at(format!("adding `{label}` should have been rejected")));
                    }
                    (Err(e), Some(_)) => {
                        let name = prop(&e, "name").as_string();
                        if name.as_deref() != Some("LinkCacheInvalidModule") {
                            return Err(at(format!(
                                "rejected with {name:?}, expected LinkCacheInvalidModule"
                            )));
                        }
                    }
                }
            }
            Step::Target(expected) => {
                let report = wait(cache.try_target(expected.func.clone()))
                    .await
                    .map_err(|e| at(format!("{e:?}")))?;
                let outcome = outcome_of(&report);
                let bindings = cache.bindings();
                let binding = |f: &str| {
                    prop(&bindings, f)
                        .as_string()
                        .and_then(|s| s.parse::<ModuleId>().ok())
                };
                check_target(expected, &outcome, &labels, &binding).map_err(at)?;
            }
            Step::Call {
                func,
                args,
                results,
            } => {
                let report = wait(cache.try_target(func.clone()))
                    .await
                    .map_err(|e| at(format!("{e:?}")))?;
                if prop(&report, "hit") != JsValue::TRUE {
                    return Err(at(format!(
                        "calling `{func}`: {:?}",
                        prop(&report, "message")
                    )));
                }
                let params: Vec<ValType> = Array::from(&prop(&report, "params"))
                    .iter()
                    .map(|t| ty(&t.as_string().unwrap()))
                    .collect();
                let result_types: Vec<ValType> = Array::from(&prop(&report, "results"))
                    .iter()
                    .map(|t| ty(&t.as_string().unwrap()))
                    .collect();
                let js_args: Array = args
                    .iter()
                    .zip(&params)
                    .map(|(arg, t): (&Number, &ValType)| {
                        value_to_js(arg.to_value(*t).expect("argument fits"))
                    })
                    .collect();
                let function: Function = prop(&report, "fn").unchecked_into();
                let returned = function
                    .apply(&JsValue::NULL, &js_args)
                    .map_err(|e| at(format!("trapped: {e:?}")))?;
                let actual: Vec<Value> = match result_types.len() {
                    0 => vec![],
                    1 => vec![js_to_value(result_types[0], &returned)],
                    _ => Array::from(&returned)
                        .iter()
                        .zip(&result_types)
                        .map(|(v, t)| js_to_value(*t, &v))
                        .collect(),
                };
                check_results(func, results, &actual).map_err(at)?;
            }
            Step::Env(new_env) => *env.borrow_mut() = new_env.clone(),
            Step::NewProcess => {
                cache.close();
                cache = open(&db, &options).await;
            }
            Step::Corrupt(label) => {
                let store = IdbStore::open(&db, Box::new(|| {}))
                    .await
                    .map_err(|e| at(e.message))?;
                let mut damaged = bytes[label].clone();
                let middle = damaged.len() / 2;
                damaged[middle] ^= 0xff;
                store
                    .overwrite_module_bytes(&labels.id(label), &damaged)
                    .await
                    .map_err(|e| at(e.message))?;
                store.close();
            }
        }
    }
    cache.close();
    Ok(())
}

/// `missingDependency` as the core's `missing_dependency`.
fn snake_case(camel: &str) -> String {
    camel
        .chars()
        .flat_map(|c| {
            if c.is_ascii_uppercase() {
                vec!['_', c.to_ascii_lowercase()]
            } else {
                vec![c]
            }
        })
        .collect()
}

fn outcome_of(report: &JsValue) -> TargetOutcome {
    let ids = |key: &str| -> Vec<ModuleId> {
        Array::from(&prop(report, key))
            .iter()
            .filter_map(|v| v.as_string()?.parse().ok())
            .collect()
    };
    if prop(report, "hit") == JsValue::TRUE {
        TargetOutcome::Hit {
            loaded: ids("loaded"),
        }
    } else {
        TargetOutcome::Miss {
            cause: snake_case(&prop(report, "missCause").as_string().unwrap_or_default()),
            function: prop(report, "function").as_string().unwrap_or_default(),
            detail: prop(report, "detail").as_string(),
        }
    }
}

#[wasm_bindgen_test]
async fn every_scenario_passes_in_the_browser() {
    let mut failures = Vec::new();
    for scenario in all() {
        if let Err(e) = run_scenario(&scenario).await {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} scenarios failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

const UTIL: &str = r#"(module (func (export "util.sq") (param i64) (result i64) (i64.mul (local.get 0) (local.get 0))))"#;
const MATH: &str = r#"(module
  (import "linkcache:fn" "util.sq" (func $sq (param i64) (result i64)))
  (func (export "math.quad") (param i64) (result i64) (call $sq (call $sq (local.get 0)))))"#;

/// Asserts that `err` is a miss of a broken module whose message contains `needle`.
fn assert_broken_miss(err: &JsValue, needle: &str) {
    assert_eq!(
        prop(err, "missCause").as_string().as_deref(),
        Some("broken"),
        "{err:?}"
    );
    let message = prop(err, "message").as_string().unwrap();
    assert!(message.contains(needle), "{message}");
}

fn wasm(text: &str) -> Uint8Array {
    Uint8Array::from(wat::parse_str(text).unwrap().as_slice())
}

async fn call_i64(cache: &LinkCache, func: &str, arg: i64) -> i64 {
    let f: Function = wait(cache.target(func.into()))
        .await
        .expect("hit")
        .unchecked_into();
    let result = f
        .call1(&JsValue::NULL, &js_sys::BigInt::from(arg).into())
        .unwrap();
    i64::try_from(result.dyn_into::<js_sys::BigInt>().unwrap()).unwrap()
}

#[wasm_bindgen_test]
async fn modules_added_before_a_reload_load_after_it_without_a_compile_callback() {
    let db = unique("persist");
    let cache = open(&db, &JsValue::UNDEFINED).await;
    wait(cache.add_module(wasm(UTIL).into())).await.unwrap();
    wait(cache.add_module(wasm(MATH).into())).await.unwrap();
    assert_eq!(call_i64(&cache, "math.quad", 3).await, 81);
    cache.close();

    // A reload: a new LinkCache on the same database, with a compile callback that
    // must never run.
    let reloaded = open(&db, &JsValue::UNDEFINED).await;
    let compiled = Rc::new(RefCell::new(0));
    let counter = Rc::clone(&compiled);
    let compile = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |_miss| {
        *counter.borrow_mut() += 1;
        Uint8Array::new_with_length(0).into()
    });
    let quad: Function = wait(reloaded.get_or_compile(
        "math.quad".into(),
        compile.as_ref().clone().unchecked_into(),
    ))
    .await
    .unwrap()
    .unchecked_into();
    let result = quad
        .call1(&JsValue::NULL, &js_sys::BigInt::from(2).into())
        .unwrap();
    assert_eq!(
        i64::try_from(result.dyn_into::<js_sys::BigInt>().unwrap()).unwrap(),
        16
    );
    assert_eq!(*compiled.borrow(), 0, "nothing compiled by the embedder");
    assert_eq!(stat(&reloaded, "compiles"), 0.0);
    assert_eq!(stat(&reloaded, "modulesAdded"), 0.0);
    assert_eq!(
        stat(&reloaded, "modulesCompiled"),
        2.0,
        "from IndexedDB bytes"
    );
    assert_eq!(stat(&reloaded, "modulesLoaded"), 2.0);
    assert_eq!(stat(&reloaded, "hits"), 1.0);
    let util_len = wat::parse_str(UTIL).unwrap().len() + wat::parse_str(MATH).unwrap().len();
    assert_eq!(stat(&reloaded, "bytesRead"), util_len as f64);
}

#[wasm_bindgen_test]
async fn non_wasm_bytes_are_a_named_error_and_the_cache_stays_usable() {
    let cache = open(&unique("invalid"), &JsValue::UNDEFINED).await;
    let err = wait(cache.add_module(Uint8Array::from(&b"definitely not wasm"[..]).into()))
        .await
        .unwrap_err();
    assert_eq!(
        prop(&err, "name").as_string().as_deref(),
        Some("LinkCacheInvalidModule")
    );
    assert!(
        prop(&err, "message")
            .as_string()
            .unwrap()
            .contains("not a WebAssembly module")
    );
    wait(cache.add_module(wasm(UTIL).into())).await.unwrap();
    assert_eq!(call_i64(&cache, "util.sq", 9).await, 81);
}

#[wasm_bindgen_test]
async fn a_miss_is_an_error_with_its_cause() {
    let cache = open(&unique("miss"), &JsValue::UNDEFINED).await;
    wait(cache.add_module(wasm(MATH).into())).await.unwrap();
    let err = wait(cache.target("math.quad".into())).await.unwrap_err();
    assert_eq!(
        prop(&err, "name").as_string().as_deref(),
        Some("LinkCacheMiss")
    );
    assert_eq!(
        prop(&err, "missCause").as_string().as_deref(),
        Some("missingDependency")
    );
    assert_eq!(prop(&err, "detail").as_string().as_deref(), Some("util.sq"));
    let misses = prop(&cache.stats(), "misses");
    assert_eq!(prop(&misses, "missingDependency").as_f64(), Some(1.0));
}

#[wasm_bindgen_test]
async fn a_corrupt_manifest_record_is_a_broken_miss_and_a_duplicate_replaces_it() {
    let db = unique("corrupt");
    let cache = open(&db, &JsValue::UNDEFINED).await;
    let id: ModuleId = wait(cache.add_module(wasm(UTIL).into()))
        .await
        .unwrap()
        .as_string()
        .unwrap()
        .parse()
        .unwrap();
    let store = IdbStore::open(&db, Box::new(|| {})).await.unwrap();
    store
        .overwrite_manifest_record(&id, b"LCMF garbage")
        .await
        .unwrap();
    let err = wait(cache.target("util.sq".into())).await.unwrap_err();
    assert_broken_miss(&err, "corrupt");

    // A duplicate with intact records is chosen in a new tab.
    let dup = wat::parse_str(UTIL)
        .unwrap()
        .into_iter()
        .chain([0, 4, 3, b'd', b'u', b'p'])
        .collect::<Vec<u8>>();
    wait(cache.add_module(Uint8Array::from(dup.as_slice()).into()))
        .await
        .unwrap();
    let fresh = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i64(&fresh, "util.sq", 5).await, 25);
    store.close();
}

#[wasm_bindgen_test]
async fn a_tampered_bundle_is_rejected_and_a_good_one_imports() {
    let source = open(&unique("bundle-src"), &JsValue::UNDEFINED).await;
    wait(source.add_module(wasm(UTIL).into())).await.unwrap();
    wait(source.add_module(wasm(MATH).into())).await.unwrap();
    let bundle: Uint8Array = wait(source.export_bundle()).await.unwrap().unchecked_into();

    let target = open(&unique("bundle-dst"), &JsValue::UNDEFINED).await;
    let mut bytes = bundle.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let err = wait(target.import_bundle(Uint8Array::from(bytes.as_slice()).into()))
        .await
        .unwrap_err();
    assert_eq!(
        prop(&err, "name").as_string().as_deref(),
        Some("LinkCacheCorrupt")
    );
    let ids = wait(target.import_bundle(bundle.into())).await.unwrap();
    assert_eq!(Array::from(&ids).length(), 2);
    assert_eq!(call_i64(&target, "math.quad", 2).await, 16);
}

#[wasm_bindgen_test]
async fn a_compile_callback_calling_get_or_compile_gets_reentrant() {
    let cache = open(&unique("reentrant"), &JsValue::UNDEFINED).await;
    let inner_result: Rc<RefCell<Option<JsValue>>> = Rc::new(RefCell::new(None));
    let slot = Rc::clone(&inner_result);
    let cache = Rc::new(cache);
    let inner_cache = Rc::clone(&cache);
    let compile = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |_miss| {
        let noop = Function::new_no_args("return new Uint8Array(0)");
        let promise = inner_cache.get_or_compile("util.sq".into(), noop);
        *slot.borrow_mut() = Some(promise.clone().into());
        wasm(UTIL).into()
    });
    let sq: Function =
        wait(cache.get_or_compile("util.sq".into(), compile.as_ref().clone().unchecked_into()))
            .await
            .unwrap()
            .unchecked_into();
    let nested: Promise = inner_result.borrow().clone().unwrap().unchecked_into();
    let err = wait(nested).await.unwrap_err();
    assert_eq!(
        prop(&err, "name").as_string().as_deref(),
        Some("LinkCacheReentrant")
    );
    let result = sq
        .call1(&JsValue::NULL, &js_sys::BigInt::from(7).into())
        .unwrap();
    assert_eq!(
        i64::try_from(result.dyn_into::<js_sys::BigInt>().unwrap()).unwrap(),
        49
    );
}

#[wasm_bindgen_test]
async fn an_upgrade_blocked_by_another_connection_is_a_named_error() {
    let db = unique("blocked");
    // Another "tab" holds version 1 open and ignores versionchange.
    let opener = Function::new_with_args(
        "name",
        "return new Promise((resolve, reject) => { const r = indexedDB.open(name, 1); \
         r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });",
    );
    let old = wait(
        opener
            .call1(&JsValue::NULL, &JsValue::from_str(&db))
            .unwrap()
            .unchecked_into(),
    )
    .await
    .unwrap();
    let options = Object::new();
    Reflect::set(&options, &"upgradeTimeoutMs".into(), &300.into()).unwrap();
    let err = wait(LinkCache::open(db.clone(), options.into()))
        .await
        .unwrap_err();
    assert_eq!(
        prop(&err, "name").as_string().as_deref(),
        Some("LinkCacheUpgradeBlocked")
    );
    // Once the other connection closes, the cache opens and works.
    let close: Function = prop(&old, "close").unchecked_into();
    close.call0(&old).unwrap();
    let cache = open(&db, &JsValue::UNDEFINED).await;
    wait(cache.add_module(wasm(UTIL).into())).await.unwrap();
    assert_eq!(call_i64(&cache, "util.sq", 3).await, 9);
}

#[wasm_bindgen_test]
fn a_transaction_aborted_for_quota_is_a_named_error() {
    // A page cannot lower its own quota; host-web/e2e/errors.test.mjs fills a real one
    // (lowered through the DevTools protocol). Here: the mapping of the abort reason, a
    // real DOMException of that name, as IDBTransaction.error gives it.
    use linkcache_web::errors::{LinkCacheError, LinkCacheQuotaExceeded, LinkCacheStorage};
    let exception =
        web_sys::DomException::new_with_message_and_name("full", "QuotaExceededError").unwrap();
    let error =
        linkcache_web::errors::transaction_aborted("adding a module", Some(exception.clone()));
    assert_eq!(error.name, "LinkCacheQuotaExceeded");
    let js = error.to_js();
    assert_eq!(name_of(&js).as_deref(), Some("LinkCacheQuotaExceeded"));
    assert!(js.is_instance_of::<LinkCacheQuotaExceeded>());
    assert!(js.is_instance_of::<LinkCacheStorage>());
    assert!(js.is_instance_of::<LinkCacheError>());
    assert!(prop(&js, "message").as_string().unwrap().contains("quota"));
    assert!(
        Object::is(&prop(&js, "cause"), &exception),
        "Error.cause is the browser's DOMException"
    );
    let unknown = linkcache_web::errors::transaction_aborted("adding a module", None);
    assert_eq!(unknown.name, "LinkCacheStorage");
}

const OTHER: &str = r#"(module (func (export "other.k") (result i32) (i32.const 7)))"#;

fn name_of(error: &JsValue) -> Option<String> {
    prop(error, "name").as_string()
}

/// Opens `name` at `version` with raw IndexedDB (another tab, an older or newer
/// linkcache), creating `stores` in the upgrade and putting `record` (`[store, key,
/// value]`, if given); resolves to the open connection.
fn raw_open(name: &str, version: u32, stores: &[&str], record: Option<Array>) -> Promise {
    let open = Function::new_with_args(
        "name, version, stores, record",
        "return new Promise((resolve, reject) => {
           const r = indexedDB.open(name, version);
           r.onupgradeneeded = () => {
             for (const s of stores) if (!r.result.objectStoreNames.contains(s)) r.result.createObjectStore(s);
           };
           r.onblocked = () => reject(new Error('blocked'));
           r.onerror = () => reject(r.error);
           r.onsuccess = () => {
             if (!record) return resolve(r.result);
             const tx = r.result.transaction([record[0]], 'readwrite');
             tx.objectStore(record[0]).put(record[2], record[1]);
             tx.oncomplete = () => resolve(r.result);
             tx.onabort = () => reject(tx.error);
           };
         });",
    );
    let stores: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
    let args = Array::of4(
        &name.into(),
        &version.into(),
        &stores,
        &record.map_or(JsValue::UNDEFINED, Into::into),
    );
    open.apply(&JsValue::NULL, &args).unwrap().unchecked_into()
}

fn close_raw(db: &JsValue) {
    let close: Function = prop(db, "close").unchecked_into();
    close.call0(db).unwrap();
}

/// UTIL's function in other bytes: a duplicate.
fn util_duplicate() -> Vec<u8> {
    wat::parse_str(UTIL)
        .unwrap()
        .into_iter()
        .chain([0, 4, 3, b'd', b'u', b'p'])
        .collect()
}

#[wasm_bindgen_test]
async fn concurrent_get_or_compile_calls_in_one_tab_both_succeed() {
    let cache = open(&unique("concurrent"), &JsValue::UNDEFINED).await;
    // A compiler that takes a while, so both calls are inside their callbacks at once.
    let slow = Function::new_with_args(
        "bytes",
        "return async (miss) => { await new Promise((r) => setTimeout(r, 30)); return bytes; }",
    );
    let compiler = |text: &str| -> Function {
        slow.call1(&JsValue::NULL, &wasm(text))
            .unwrap()
            .unchecked_into()
    };
    let a = cache.get_or_compile("util.sq".into(), compiler(UTIL));
    // The first call is inside its compile callback now.
    let sleep = Function::new_with_args("ms", "return new Promise((r) => setTimeout(r, ms))");
    wait(
        sleep
            .call1(&JsValue::NULL, &10.into())
            .unwrap()
            .unchecked_into(),
    )
    .await
    .unwrap();
    assert_eq!(
        stat(&cache, "compiles"),
        1.0,
        "the first callback is running"
    );
    let b = cache.get_or_compile("other.k".into(), compiler(OTHER));
    let both = wait(Promise::all(&Array::of2(&a, &b)))
        .await
        .expect("independent calls are not reentrant");
    let k: Function = Array::from(&both).get(1).unchecked_into();
    assert_eq!(k.call0(&JsValue::NULL).unwrap().as_f64(), Some(7.0));
    assert_eq!(call_i64(&cache, "util.sq", 6).await, 36);
    assert_eq!(stat(&cache, "compiles"), 2.0);
}

#[wasm_bindgen_test]
async fn close_releases_the_connection_and_later_calls_reject_with_closed() {
    let db = unique("close");
    let cache = open(&db, &JsValue::UNDEFINED).await;
    wait(cache.add_module(wasm(UTIL).into())).await.unwrap();
    let sq: Function = wait(cache.target("util.sq".into()))
        .await
        .unwrap()
        .unchecked_into();
    cache.close();

    // Another tab upgrades the database without being blocked.
    let newer = wait(raw_open(&db, SCHEMA_VERSION + 1, &[], None))
        .await
        .expect("a closed cache does not block an upgrade");
    close_raw(&newer);

    let err = wait(cache.add_module(wasm(MATH).into())).await.unwrap_err();
    assert_eq!(name_of(&err).as_deref(), Some("LinkCacheClosed"), "{err:?}");
    // The function returned before keeps working.
    let result = sq
        .call1(&JsValue::NULL, &js_sys::BigInt::from(5).into())
        .unwrap();
    assert_eq!(result, JsValue::from(js_sys::BigInt::from(25)));

    // The database is now newer than this linkcache-web.
    let err = wait(LinkCache::open(db.clone(), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(
        name_of(&err).as_deref(),
        Some("LinkCacheSchemaTooNew"),
        "{err:?}"
    );
}

#[wasm_bindgen_test]
async fn another_tab_upgrading_closes_this_connection_instead_of_waiting_for_it() {
    let db = unique("versionchange");
    let cache = open(&db, &JsValue::UNDEFINED).await;
    wait(cache.add_module(wasm(UTIL).into())).await.unwrap();
    assert_eq!(call_i64(&cache, "util.sq", 3).await, 9);
    let newer = wait(raw_open(&db, SCHEMA_VERSION + 1, &[], None))
        .await
        .expect("the open cache let the upgrade through");
    close_raw(&newer);
    let err = wait(cache.target("math.quad".into())).await.unwrap_err();
    assert_eq!(name_of(&err).as_deref(), Some("LinkCacheClosed"), "{err:?}");
    assert_eq!(
        call_i64(&cache, "util.sq", 4).await,
        16,
        "bound functions stay"
    );
}

#[wasm_bindgen_test]
async fn a_database_of_an_older_layout_is_upgraded_and_its_old_records_are_broken_entries() {
    let db = unique("old-layout");
    let util = wat::parse_str(UTIL).unwrap();
    let id = ModuleId::of(&util);
    // Version 1: a manifests store without the index, a record without `record`, and
    // a store this version does not know.
    let old = Object::new();
    Reflect::set(&old, &"id".into(), &id.to_string().into()).unwrap();
    Reflect::set(&old, &"functions".into(), &Array::of1(&"util.sq".into())).unwrap();
    Reflect::set(&old, &"committedAt".into(), &1.into()).unwrap();
    let v1 = wait(raw_open(
        &db,
        1,
        &["modules", "manifests", "legacy"],
        Some(Array::of3(
            &"manifests".into(),
            &id.to_string().into(),
            &old,
        )),
    ))
    .await
    .unwrap();
    close_raw(&v1);

    let cache = open(&db, &JsValue::UNDEFINED).await;
    let err = wait(cache.target("util.sq".into())).await.unwrap_err();
    assert_eq!(
        prop(&err, "missCause").as_string().as_deref(),
        Some("broken")
    );
    let modules = Array::from(&wait(cache.modules()).await.unwrap());
    assert_eq!(modules.length(), 1);
    assert!(prop(&modules.get(0), "broken").is_string());

    // Adding the module rewrites its records; a new tab loads it.
    assert_eq!(add(&cache, &util).await, id);
    let reloaded = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i64(&reloaded, "util.sq", 7).await, 49);
}

#[wasm_bindgen_test]
async fn re_adding_the_same_bytes_repairs_damaged_stored_bytes_and_keeps_their_order() {
    let db = unique("repair");
    let cache = open(&db, &JsValue::UNDEFINED).await;
    let util = wat::parse_str(UTIL).unwrap();
    let id = add(&cache, &util).await;
    add(&cache, &util_duplicate()).await;
    let committed = |modules: &JsValue| prop(&Array::from(modules).get(0), "committedAt");
    let before = committed(&wait(cache.modules()).await.unwrap());

    let store = IdbStore::open(&db, Box::new(|| {})).await.unwrap();
    store
        .overwrite_module_bytes(&id, b"\0asm garbage")
        .await
        .unwrap();
    store.close();
    let damaged = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i64(&damaged, "util.sq", 2).await, 4);
    let bindings = damaged.bindings();
    assert_ne!(
        prop(&bindings, "util.sq").as_string(),
        Some(id.to_string()),
        "the damaged module is skipped for its duplicate"
    );
    assert_eq!(stat(&damaged, "brokenSkipped"), 1.0);

    assert_eq!(add(&damaged, &util).await, id);
    let repaired = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i64(&repaired, "util.sq", 3).await, 9);
    assert_eq!(
        prop(&repaired.bindings(), "util.sq").as_string(),
        Some(id.to_string()),
        "the repaired module is the earliest again"
    );
    assert_eq!(committed(&wait(repaired.modules()).await.unwrap()), before);
}

#[wasm_bindgen_test]
async fn large_stored_bytes_that_differ_from_their_commit_are_a_broken_miss() {
    // Large enough to be checked with WebCrypto's SHA-256 while it compiles.
    let big = |fill: &str| {
        wat::parse_str(format!(
            r#"(module (memory 2) (data (i32.const 0) "{}")
                 (func (export "big.f") (result i32) (i32.load8_u (i32.const 5))))"#,
            fill.repeat(70_000)
        ))
        .unwrap()
    };
    let db = unique("big");
    let cache = open(&db, &JsValue::UNDEFINED).await;
    let id = add(&cache, &big("a")).await;
    cache.close();

    // Other valid bytes of the same size under its key: they compile, so only the
    // digest can tell.
    let store = IdbStore::open(&db, Box::new(|| {})).await.unwrap();
    store.overwrite_module_bytes(&id, &big("b")).await.unwrap();
    store.close();
    let tab = open(&db, &JsValue::UNDEFINED).await;
    let err = wait(tab.target("big.f".into())).await.unwrap_err();
    assert_broken_miss(&err, "SHA-256");

    // Re-adding the right bytes repairs the module.
    let repaired = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(add(&repaired, &big("a")).await, id);
    let f: Function = wait(repaired.target("big.f".into()))
        .await
        .unwrap()
        .unchecked_into();
    assert_eq!(f.call0(&JsValue::NULL).unwrap().as_f64(), Some(97.0));
}

#[wasm_bindgen_test]
async fn graph_shows_duplicates_calls_and_what_this_tab_bound() {
    let cache = open(&unique("graph"), &JsValue::UNDEFINED).await;
    let util = add(&cache, &wat::parse_str(UTIL).unwrap()).await;
    let dup = add(&cache, &util_duplicate()).await;
    let math = add(&cache, &wat::parse_str(MATH).unwrap()).await;
    assert_eq!(call_i64(&cache, "math.quad", 2).await, 16);

    let graph = wait(cache.graph()).await.unwrap();
    let functions = Array::from(&prop(&graph, "functions"));
    let sq = functions
        .iter()
        .find(|f| prop(f, "name").as_string().as_deref() == Some("util.sq"))
        .unwrap();
    let defined: Vec<String> = Array::from(&prop(&sq, "definedIn"))
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    assert_eq!(defined, [util.to_string(), dup.to_string()]);
    assert_eq!(prop(&sq, "boundTo").as_string(), Some(util.to_string()));

    let edges = Array::from(&prop(&graph, "edges"));
    assert_eq!(edges.length(), 1);
    let edge = edges.get(0);
    assert_eq!(prop(&edge, "module").as_string(), Some(math.to_string()));
    assert_eq!(
        prop(&edge, "function").as_string().as_deref(),
        Some("math.quad")
    );
    assert_eq!(prop(&edge, "calls").as_string().as_deref(), Some("util.sq"));

    let loaded: Vec<bool> = Array::from(&prop(&graph, "modules"))
        .iter()
        .map(|m| prop(&m, "loaded") == JsValue::TRUE)
        .collect();
    assert_eq!(
        loaded,
        [true, false, true],
        "util and math loaded, the duplicate not"
    );
}

#[wasm_bindgen_test]
async fn resolve_global_answers_values_or_stale_and_a_wrong_answer_is_stale() {
    let db = unique("globals");
    let spec = ModuleSpec {
        wat: r#"(module (import "linkcache:global" "g.k" (global $k i64))
                 (func (export "g.add") (param i64) (result i64) (i64.add (local.get 0) (global.get $k))))"#
            .into(),
        globals: [("g.k".to_string(), "5".to_string())].into(),
    };
    let bytes = spec.wasm().unwrap();
    let with = |body: &str| {
        let options = Object::new();
        let resolve = Function::new_with_args("name, definition, type, bytes", body);
        Reflect::set(&options, &"resolveGlobal".into(), &resolve).unwrap();
        JsValue::from(options)
    };
    // The definition's text and type arrive; an i64 answer is a BigInt.
    let cache = open(
        &db,
        &with("if (name !== 'g.k' || definition !== '5' || type !== 'i64' || bytes.length !== 1) throw new Error('bad arguments'); return BigInt(definition) * 10n;"),
    )
    .await;
    wait(cache.add_module(Uint8Array::from(bytes.as_slice()).into()))
        .await
        .unwrap();
    assert_eq!(call_i64(&cache, "g.add", 1).await, 51);
    assert_eq!(stat(&cache, "globalsValidated"), 1.0);

    // A safe integer as a number is fine for i64 too.
    let number = open(&db, &with("return 7;")).await;
    assert_eq!(call_i64(&number, "g.add", 1).await, 8);

    // `{stale: reason}` and a thrown error both make the function a stale_global miss.
    for body in [
        "return { stale: 'g.k is 6 now' };",
        "throw new Error('g.k is 6 now');",
    ] {
        let stale = open(&db, &with(body)).await;
        let err = wait(stale.target("g.add".into())).await.unwrap_err();
        assert_eq!(
            prop(&err, "missCause").as_string().as_deref(),
            Some("staleGlobal")
        );
        assert_eq!(prop(&err, "detail").as_string().as_deref(), Some("g.k"));
        assert!(
            prop(&err, "message")
                .as_string()
                .unwrap()
                .contains("g.k is 6 now"),
            "{err:?}"
        );
    }

    // An answer of the wrong type is stale, with a message that says so.
    let wrong = open(&db, &with("return 'five';")).await;
    let err = wait(wrong.target("g.add".into())).await.unwrap_err();
    assert_eq!(
        prop(&err, "missCause").as_string().as_deref(),
        Some("staleGlobal")
    );
    assert!(
        prop(&err, "message")
            .as_string()
            .unwrap()
            .contains("not a i64 value"),
        "{err:?}"
    );
}

/// A module whose manifest, as stored, lists other imports than the module has: a forged
/// record that claims this analyzer's check.
#[wasm_bindgen_test]
async fn a_manifest_whose_imports_are_not_its_modules_is_a_broken_miss() {
    const OTHER: &str = r#"(module
        (func (export "imp.one") (result i32) (i32.const 1))
        (func (export "imp.two") (result i32) (i32.const 2)))"#;
    const USER: &str = r#"(module
        (import "linkcache:fn" "imp.one" (func $f (result i32)))
        (func (export "imp.top") (result i32) (call $f)))"#;
    let db = unique("forged-imports");
    let writer = open(&db, &JsValue::UNDEFINED).await;
    wait(writer.add_module(wasm(OTHER).into())).await.unwrap();
    let user: ModuleId = wait(writer.add_module(wasm(USER).into()))
        .await
        .unwrap()
        .as_string()
        .unwrap()
        .parse()
        .unwrap();
    writer.close();
    // The manifest of a module that imports imp.two instead (same length, same exports),
    // stored as the user's.
    let mut forged =
        linkcache_core::analyze(&wat::parse_str(USER.replace("imp.one", "imp.two")).unwrap())
            .unwrap();
    forged.module = user;
    let store = IdbStore::open(&db, Box::new(|| {})).await.unwrap();
    store
        .overwrite_manifest_record(&user, &forged.encode())
        .await
        .unwrap();
    store.close();

    let tab = open(&db, &JsValue::UNDEFINED).await;
    let err = wait(tab.target("imp.top".into())).await.unwrap_err();
    // Linked by the module's own names, it would return 1.
    assert_broken_miss(&err, "does not have the imports its manifest lists");
}

/// Import and export names may hold any character, NUL and characters outside the BMP
/// included: the manifest's names reach JavaScript one after the other with their
/// lengths in UTF-16 code units, never joined by a separator that a name could hold
/// (where two lists of names could read alike).
#[wasm_bindgen_test]
async fn names_with_nul_and_astral_characters_link_as_they_are() {
    const CALLEE: &str = r#"(module
        (func (export "nul\00oné😀") (result i32) (i32.const 20))
        (func (export "nul") (result i32) (i32.const 1)))"#;
    const USER: &str = r#"(module
        (import "linkcache:fn" "nul\00oné😀" (func $a (result i32)))
        (import "env" "\00tick\00" (func $b (result i32)))
        (func (export "nul.top") (result i32) (i32.add (call $a) (call $b))))"#;
    let db = unique("nul-names");
    let options = Function::new_no_args(r#"return { imports: { env: { "\0tick\0": () => 3 } } }"#)
        .call0(&JsValue::NULL)
        .unwrap();
    let writer = open(&db, &options).await;
    add_text(&writer, CALLEE).await;
    add_text(&writer, USER).await;
    writer.close();

    let tab = open(&db, &options).await;
    let top = target(&tab, "nul.top").await;
    assert_eq!(top.call0(&JsValue::NULL).unwrap().as_f64(), Some(23.0));
}

#[wasm_bindgen_test]
async fn an_embedder_import_not_given_is_a_broken_miss_that_names_it() {
    const USER: &str = r#"(module
        (import "env" "tick" (func $tick (result i32)))
        (func (export "env.user") (result i32) (call $tick)))"#;
    let db = unique("embedder-import");
    let without = open(&db, &JsValue::UNDEFINED).await;
    wait(without.add_module(wasm(USER).into())).await.unwrap();
    let err = wait(without.target("env.user".into())).await.unwrap_err();
    assert_broken_miss(
        &err,
        "it imports `env` `tick`, which the embedder's imports do not define",
    );

    let options = Function::new_no_args("return { imports: { env: { tick: () => 7 } } }")
        .call0(&JsValue::NULL)
        .unwrap();
    let with = open(&db, &options).await;
    let f: Function = wait(with.target("env.user".into()))
        .await
        .expect("hit")
        .unchecked_into();
    assert_eq!(f.call0(&JsValue::NULL).unwrap().as_f64(), Some(7.0));
}

#[wasm_bindgen_test]
async fn embedder_imports_that_throw_are_a_broken_miss_and_the_cache_keeps_working() {
    const USER: &str = r#"(module
        (import "env" "tick" (func $tick (result i32)))
        (func (export "throwing.user") (result i32) (call $tick)))"#;
    const PLAIN: &str = r#"(module (func (export "throwing.plain") (result i32) (i32.const 5)))"#;
    let db = unique("throwing-imports");
    let writer = open(&db, &JsValue::UNDEFINED).await;
    wait(writer.add_module(wasm(USER).into())).await.unwrap();
    wait(writer.add_module(wasm(PLAIN).into())).await.unwrap();
    writer.close();

    let options = Function::new_no_args(
        "return { imports: { env: new Proxy({}, { get() { throw new Error('no env here'); } }) } }",
    )
    .call0(&JsValue::NULL)
    .unwrap();
    let tab = open(&db, &options).await;
    let err = wait(tab.target("throwing.user".into())).await.unwrap_err();
    assert_broken_miss(&err, "reading the embedder's imports threw: no env here");
    // The same tab still targets, lists and reports.
    let f: Function = wait(tab.target("throwing.plain".into()))
        .await
        .expect("hit")
        .unchecked_into();
    assert_eq!(f.call0(&JsValue::NULL).unwrap().as_f64(), Some(5.0));
    assert_eq!(Array::from(&wait(tab.modules()).await.unwrap()).length(), 2);
}
