//! Helpers every browser test file of linkcache-web uses: promises, properties, opening
//! caches, adding modules, targeting and reading statistics.

#![allow(dead_code)] // each test file uses a part

use js_sys::{Function, Promise, Reflect, Uint8Array};
use linkcache_core::ModuleId;
use linkcache_web::LinkCache;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// `object[key]`.
pub fn prop(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(key)).unwrap()
}

/// The promise's outcome.
pub async fn wait(promise: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

/// A database name no other test uses.
pub fn unique(name: &str) -> String {
    format!("{name}-{}", js_sys::Math::random().to_bits())
}

/// `LinkCache.open(name, options)`.
pub async fn open(name: &str, options: &JsValue) -> LinkCache {
    use wasm_bindgen::convert::TryFromJsValue;
    let cache = wait(LinkCache::open(name.to_string(), options.clone()))
        .await
        .expect("open");
    LinkCache::try_from_js_value(cache).expect("LinkCache.open resolves to a LinkCache")
}

/// The module of a WebAssembly text.
pub fn bytes(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap()
}

/// Adds `bytes`; their id.
pub async fn add(cache: &LinkCache, bytes: &[u8]) -> ModuleId {
    wait(cache.add_module(Uint8Array::from(bytes).into()))
        .await
        .unwrap()
        .as_string()
        .unwrap()
        .parse()
        .unwrap()
}

/// Adds the module of a WebAssembly text; its id.
pub async fn add_text(cache: &LinkCache, text: &str) -> ModuleId {
    add(cache, &bytes(text)).await
}

/// The function `func`, targeted (a hit).
pub async fn target(cache: &LinkCache, func: &str) -> Function {
    wait(cache.target(func.into()))
        .await
        .expect("hit")
        .unchecked_into()
}

/// A number from `cache.stats()`.
pub fn stat(cache: &LinkCache, key: &str) -> f64 {
    prop(&cache.stats(), key).as_f64().unwrap()
}

/// A promise that resolves after `ms` milliseconds (to let messages arrive; no
/// assertion depends on the time).
pub async fn sleep(ms: u32) {
    let sleep = Function::new_with_args("ms", "return new Promise((r) => setTimeout(r, ms))");
    wait(
        sleep
            .call1(&JsValue::NULL, &ms.into())
            .unwrap()
            .unchecked_into(),
    )
    .await
    .unwrap();
}

/// Targets `func` and calls it with no arguments: its i32 result.
pub async fn call_i32(cache: &LinkCache, func: &str) -> i32 {
    let f = target(cache, func).await;
    f.call0(&JsValue::NULL).unwrap().as_f64().unwrap() as i32
}

/// `chain.fK` returns K + `chain.f(K-1)`, each in its own module; `chain.f0` returns 0.
pub fn chain_module(k: u32) -> String {
    if k == 0 {
        return r#"(module (func (export "chain.f0") (result i32) (i32.const 0)))"#.into();
    }
    format!(
        r#"(module (import "linkcache:fn" "chain.f{prev}" (func $prev (result i32)))
             (func (export "chain.f{k}") (result i32) (i32.add (i32.const {k}) (call $prev))))"#,
        prev = k - 1
    )
}

/// A later duplicate of `chain.f1` (see [`chain_module`]) that adds 100 instead of 1.
pub fn chain_f1_plus_100() -> String {
    r#"(module (import "linkcache:fn" "chain.f0" (func $prev (result i32)))
             (func (export "chain.f1") (result i32) (i32.add (i32.const 100) (call $prev))))"#
        .into()
}

/// Overwrites the stored bytes of `id` in database `db` with bytes that do not hash to
/// it, without a commit (the index stamp does not move).
pub async fn damage_module_bytes(db: &str, id: &ModuleId) {
    let store = linkcache_web::store::IdbStore::open(db, Box::new(|| {}))
        .await
        .unwrap();
    store
        .overwrite_module_bytes(id, b"\0asm garbage")
        .await
        .unwrap();
    store.close();
}

/// `object[key]` replaced for a test by what the JS function body `make` returns, given
/// the original as `original`; put back on drop. The replacement may count what it sees
/// in a property of `globalThis` ([`global_number`]).
pub struct Patched {
    object: JsValue,
    key: JsValue,
    original: JsValue,
}

impl Patched {
    pub fn install(object: &JsValue, key: &str, make: &str) -> Patched {
        let key = JsValue::from_str(key);
        let original = Reflect::get(object, &key).unwrap();
        let replacement = Function::new_with_args("original", make)
            .call1(&JsValue::NULL, &original)
            .unwrap();
        Reflect::set(object, &key, &replacement).unwrap();
        Patched {
            object: object.clone(),
            key,
            original,
        }
    }
}

impl Drop for Patched {
    fn drop(&mut self) {
        Reflect::set(&self.object, &self.key, &self.original).unwrap();
    }
}

/// `globalThis[name]` as a number.
pub fn global_number(name: &str) -> f64 {
    prop(&js_sys::global(), name).as_f64().unwrap()
}
