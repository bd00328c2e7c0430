//! Kept plans (`src/kept.rs`): a fresh tab replays the plan the last fresh tab made for
//! a target, in two round trips and without the planner, while the index and the
//! embedder's decisions are unchanged; anything else (a commit since, a damaged or
//! forged record, a global decided differently, a module broken since) is planned anew,
//! linked right and counted. Each `LinkCache` opened on a database stands for a fresh
//! tab.

#![cfg(target_arch = "wasm32")]

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use linkcache_core::record::{self, RecordKind};
use linkcache_core::{
    GlobalBinding, GlobalOutcome, KeptGlobal, KeptPlan, Manifest, ModuleId, Name, ValType, Value,
};
use linkcache_web::LinkCache;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::{
    add, add_text, bytes, call_i32, chain_f1_plus_100, chain_module, damage_module_bytes, open,
    prop, stat, unique, wait,
};

/// A database holding `chain.f0` .. `chain.f{n-1}`.
async fn chain(name: &str, n: u32) -> String {
    let db = unique(name);
    let writer = open(&db, &JsValue::UNDEFINED).await;
    for k in 0..n {
        add_text(&writer, &chain_module(k)).await;
    }
    writer.close();
    db
}

/// `stats().plansNotReplayed[reason]`, 0 when absent.
fn not_replayed(cache: &LinkCache, reason: &str) -> f64 {
    prop(&prop(&cache.stats(), "plansNotReplayed"), reason)
        .as_f64()
        .unwrap_or(0.0)
}

/// The kept plan record stored with `func`'s hint.
async fn kept_record(db: &str, func: &str) -> Vec<u8> {
    let run = Function::new_with_args(
        "name, func",
        "return new Promise((resolve, reject) => {
           const open = indexedDB.open(name);
           open.onerror = () => reject(open.error);
           open.onsuccess = () => {
             const db = open.result;
             const get = db.transaction('plans').objectStore('plans').get(func);
             get.onsuccess = () => { db.close(); resolve(get.result); };
             get.onerror = () => { db.close(); reject(get.error); };
           };
         })",
    );
    let promise: Promise = run
        .call2(&JsValue::NULL, &db.into(), &func.into())
        .unwrap()
        .unchecked_into();
    let value = wait(promise).await.unwrap();
    prop(&value, "kept")
        .dyn_into::<Uint8Array>()
        .expect("a kept plan")
        .to_vec()
}

/// Replaces the kept plan record stored with `func`'s hint.
async fn plant_record(db: &str, func: &str, record: &[u8]) {
    let run = Function::new_with_args(
        "name, func, record",
        "return new Promise((resolve, reject) => {
           const open = indexedDB.open(name);
           open.onerror = () => reject(open.error);
           open.onsuccess = () => {
             const db = open.result;
             const tx = db.transaction('plans', 'readwrite');
             const store = tx.objectStore('plans');
             const get = store.get(func);
             get.onsuccess = () => { const v = get.result; v.kept = record; store.put(v, func); };
             tx.oncomplete = () => { db.close(); resolve(); };
             tx.onerror = () => { db.close(); reject(tx.error); };
           };
         })",
    );
    let promise: Promise = run
        .call3(
            &JsValue::NULL,
            &db.into(),
            &func.into(),
            &Uint8Array::from(record),
        )
        .unwrap()
        .unchecked_into();
    wait(promise).await.unwrap();
}

/// A kept plan record taken apart (the layout in `src/kept.rs`): the stamp and
/// analyzer, each module's entry, the plan and its global decisions.
struct Opened {
    head: Vec<u8>,
    modules: Vec<Vec<u8>>,
    plan: KeptPlan,
    globals: Vec<(KeptGlobal, GlobalOutcome)>,
}

fn open_record(bytes: &[u8]) -> Opened {
    let payload = record::unframe(RecordKind::FreshPlan, bytes).unwrap();
    let (head, mut rest) = payload.split_at(16);
    let count = u32::from_le_bytes(head[12..16].try_into().unwrap());
    let mut modules = Vec::new();
    for _ in 0..count {
        let len = if rest[32] & 2 != 0 { 65 } else { 33 };
        modules.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    let (plan, globals) = KeptPlan::from_compact(rest).unwrap();
    Opened {
        head: head[..12].to_vec(),
        modules,
        plan,
        globals,
    }
}

fn close_record(opened: &Opened) -> Vec<u8> {
    let mut payload = opened.head.clone();
    payload.extend_from_slice(&(opened.modules.len() as u32).to_le_bytes());
    for module in &opened.modules {
        payload.extend_from_slice(module);
    }
    payload.extend_from_slice(&opened.plan.to_compact(&opened.globals));
    record::frame(RecordKind::FreshPlan, &payload)
}

/// `plan` edited through a mirror of core's `KeptPlan` layout (its serde form: bincode
/// encodes a struct as its fields in order), to forge plans that pass every form check.
fn forge(plan: &KeptPlan, edit: impl FnOnce(&mut ForgedPlan)) -> KeptPlan {
    let mut forged: ForgedPlan =
        record::decode_payload(RecordKind::FreshPlan, &record::encode_payload(plan)).unwrap();
    edit(&mut forged);
    record::decode_payload(RecordKind::FreshPlan, &record::encode_payload(&forged)).unwrap()
}

#[derive(Serialize, Deserialize)]
struct ForgedPlan {
    target: String,
    target_module: u32,
    modules: Vec<ForgedModule>,
    cycles: Vec<Vec<u32>>,
    bindings: Vec<(u32, u32)>,
    set_globals: Vec<(Name, ValType, Value)>,
}

#[derive(Serialize, Deserialize)]
struct ForgedModule {
    manifest: Manifest,
    imports: Vec<ForgedImport>,
}

#[derive(Serialize, Deserialize)]
enum ForgedImport {
    Export(u32),
    Trampoline,
    Lazy,
    Global(GlobalBinding),
    Embedder,
}

#[wasm_bindgen_test]
async fn a_fresh_tab_replays_the_plan_the_last_fresh_tab_kept_in_two_round_trips() {
    let db = chain("kept", 10).await;
    let first = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&first, "chain.f9").await, 45);
    assert_eq!(stat(&first, "plansKept"), 1.0);
    assert_eq!(stat(&first, "plansReplayed"), 0.0);
    assert_eq!(stat(&first, "planReads"), 11.0, "one level per round trip");
    first.close();

    let second = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&second, "chain.f9").await, 45);
    assert_eq!(stat(&second, "plansReplayed"), 1.0);
    assert_eq!(stat(&second, "plans"), 1.0);
    assert_eq!(
        stat(&second, "planReads"),
        2.0,
        "the hint with the kept plan and the stamp, then the bytes"
    );
    assert_eq!(stat(&second, "planTransactions"), 1.0);
    assert_eq!(stat(&second, "modulesCompiled"), 10.0);
    assert_eq!(stat(&second, "plansKept"), 0.0, "nothing new to keep");
    assert_eq!(
        Object::keys(prop(&second.stats(), "plansNotReplayed").unchecked_ref::<Object>()).length(),
        0
    );
    // The rest of the tab plans as usual, against what the replay bound.
    assert_eq!(call_i32(&second, "chain.f4").await, 10);
    assert_eq!(stat(&second, "plansReplayed"), 1.0);
    second.close();
}

#[wasm_bindgen_test]
async fn a_commit_since_the_plan_was_kept_makes_the_next_tab_plan_anew() {
    let db = chain("kept-stale", 3).await;
    let first = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&first, "chain.f2").await, 3);
    first.close();

    // A duplicate of chain.f1 committed later: the earliest still wins, but the index
    // changed, so the kept plan is not trusted.
    let writer = open(&db, &JsValue::UNDEFINED).await;
    add_text(&writer, &chain_f1_plus_100()).await;
    writer.close();

    let second = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&second, "chain.f2").await, 3);
    assert_eq!(stat(&second, "plansReplayed"), 0.0);
    assert_eq!(not_replayed(&second, "staleIndex"), 1.0);
    assert_eq!(
        stat(&second, "plansKept"),
        1.0,
        "kept again under the new stamp"
    );
    second.close();

    let third = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&third, "chain.f2").await, 3);
    assert_eq!(stat(&third, "plansReplayed"), 1.0);
}

#[wasm_bindgen_test]
async fn a_damaged_or_forged_kept_plan_is_planned_anew_and_counted() {
    let db = chain("kept-forged", 3).await;
    for func in ["chain.f1", "chain.f2"] {
        let tab = open(&db, &JsValue::UNDEFINED).await;
        call_i32(&tab, func).await;
        tab.close();
    }
    let good = kept_record(&db, "chain.f2").await;

    // A flipped bit fails the checksum.
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    // Another target's record, whole and checksummed.
    let other = kept_record(&db, "chain.f1").await;
    // A record of this target whose modules are listed in another order than planned.
    let mut opened = open_record(&good);
    opened.modules.reverse();
    let reordered = close_record(&opened);
    // A plan whose last module imports from itself, in a checksummed record.
    let mut opened = open_record(&good);
    opened.plan = forge(&opened.plan, |plan| {
        let last = plan.modules.len() as u32 - 1;
        for import in &mut plan.modules.last_mut().unwrap().imports {
            if let ForgedImport::Export(from) = import {
                *from = last;
            }
        }
    });
    let cyclic = close_record(&opened);

    for (what, planted) in [
        ("flipped", flipped),
        ("another target's", other),
        ("reordered", reordered),
        ("self-importing", cyclic),
    ] {
        plant_record(&db, "chain.f2", &planted).await;
        let tab = open(&db, &JsValue::UNDEFINED).await;
        assert_eq!(call_i32(&tab, "chain.f2").await, 3, "{what}");
        assert_eq!(stat(&tab, "plansReplayed"), 0.0, "{what}");
        assert_eq!(not_replayed(&tab, "damaged"), 1.0, "{what}");
        assert_eq!(
            stat(&tab, "plansKept"),
            1.0,
            "{what}: the plan made is kept"
        );
        assert_eq!(stat(&tab, "brokenSkipped"), 0.0, "{what}: no module blamed");
        tab.close();
        assert_eq!(kept_record(&db, "chain.f2").await, good, "{what}: repaired");
    }
    let tab = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&tab, "chain.f2").await, 3);
    assert_eq!(stat(&tab, "plansReplayed"), 1.0);
}

/// `cfg.get` returns the immutable global `cfg.n`, defined as `42`.
fn global_module() -> Vec<u8> {
    let mut module = bytes(
        r#"(module (import "linkcache:global" "cfg.n" (global $n i32))
             (func (export "cfg.get") (result i32) (global.get $n)))"#,
    );
    linkcache_core::append_globals_section(&mut module, [("cfg.n", &b"42"[..])]);
    module
}

/// Options whose `resolveGlobal` reads a definition as a number plus `plus`.
fn plus(plus: i32) -> JsValue {
    let resolve = Function::new_with_args(
        "name, definition",
        &format!("return Number(definition) + {plus};"),
    );
    let options = Object::new();
    Reflect::set(&options, &"resolveGlobal".into(), &resolve).unwrap();
    options.into()
}

#[wasm_bindgen_test]
async fn a_global_decided_differently_is_planned_anew_and_links_the_new_value() {
    let db = unique("kept-global");
    let writer = open(&db, &JsValue::UNDEFINED).await;
    add(&writer, &global_module()).await;
    writer.close();

    let first = open(&db, &plus(1)).await;
    assert_eq!(call_i32(&first, "cfg.get").await, 43);
    assert_eq!(stat(&first, "plansKept"), 1.0);
    first.close();

    let same = open(&db, &plus(1)).await;
    assert_eq!(call_i32(&same, "cfg.get").await, 43);
    assert_eq!(stat(&same, "plansReplayed"), 1.0);
    assert_eq!(
        stat(&same, "globalsValidated"),
        1.0,
        "asked as the planner would"
    );
    same.close();

    let other = open(&db, &plus(2)).await;
    assert_eq!(call_i32(&other, "cfg.get").await, 44);
    assert_eq!(stat(&other, "plansReplayed"), 0.0);
    assert_eq!(not_replayed(&other, "globalChanged"), 1.0);
    assert_eq!(
        stat(&other, "globalsValidated"),
        1.0,
        "the planner got the decision the check asked for"
    );
    assert_eq!(stat(&other, "plansKept"), 1.0);
    other.close();

    let again = open(&db, &plus(2)).await;
    assert_eq!(call_i32(&again, "cfg.get").await, 44);
    assert_eq!(stat(&again, "plansReplayed"), 1.0);
}

#[wasm_bindgen_test]
async fn a_kept_plan_that_binds_a_value_the_embedder_did_not_give_is_refused() {
    let db = unique("kept-value");
    let writer = open(&db, &JsValue::UNDEFINED).await;
    add(&writer, &global_module()).await;
    writer.close();
    let first = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&first, "cfg.get").await, 42);
    first.close();

    // The decision recorded is 42, as the embedder decides now; the binding says 7.
    let good = kept_record(&db, "cfg.get").await;
    let mut opened = open_record(&good);
    let mut bound = 0;
    opened.plan = forge(&opened.plan, |plan| {
        for import in &mut plan.modules[0].imports {
            if let ForgedImport::Global(GlobalBinding::Value(value)) = import {
                *value = Value::I32(7);
                bound += 1;
            }
        }
    });
    assert_eq!(bound, 1);
    assert_eq!(opened.globals.len(), 1, "the decision on cfg.n");
    plant_record(&db, "cfg.get", &close_record(&opened)).await;

    let tab = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&tab, "cfg.get").await, 42);
    assert_eq!(not_replayed(&tab, "damaged"), 1.0);
}

#[wasm_bindgen_test]
async fn a_module_broken_after_its_plan_was_kept_falls_back_to_a_duplicate() {
    let db = chain("kept-broken", 3).await;
    let first = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&first, "chain.f2").await, 3);
    first.close();
    // A duplicate of chain.f1 committed later, then a tab that keeps the plan under
    // the new stamp (the earliest, damaged next, still wins).
    let writer = open(&db, &JsValue::UNDEFINED).await;
    add_text(&writer, &chain_f1_plus_100()).await;
    writer.close();
    let keeper = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&keeper, "chain.f2").await, 3);
    assert_eq!(stat(&keeper, "plansKept"), 1.0);
    keeper.close();

    // Damaged without a commit: the stamp is unchanged, so the plan is replayed, and
    // its load finds the bytes do not hash to their id.
    let middle = ModuleId::of(&bytes(&chain_module(1)));
    damage_module_bytes(&db, &middle).await;
    let tab = open(&db, &JsValue::UNDEFINED).await;
    assert_eq!(call_i32(&tab, "chain.f2").await, 102);
    assert_eq!(not_replayed(&tab, "moduleBroken"), 1.0);
    assert_eq!(stat(&tab, "plansReplayed"), 0.0);
    assert_eq!(stat(&tab, "brokenSkipped"), 1.0);
}
