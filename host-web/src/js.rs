//! Small bridges between Rust and JavaScript values: the inline JS helpers, conversions
//! of wasm values, property access on plain objects.

use js_sys::{Object, Promise, Reflect};
use linkcache_core::{ValType, Value};
use serde::Serialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function new_global(type, mutable, value) {
  return new WebAssembly.Global({ value: type, mutable }, value);
}
export function set_global(global, value) { global.value = value; }
export function now() { return performance.now(); }
export function next_task() { return new Promise((resolve) => setTimeout(resolve, 0)); }
export function settle_all(promises) {
  return Promise.all(promises.map((p) => p.then((value) => ({ ok: true, value }), (error) => ({ ok: false, error }))));
}
export function instantiate_now(module, imports) {
  try {
    return new WebAssembly.Instance(module, imports);
  } catch (e) {
    // Browsers that refuse large modules on the main thread (older Chromium) say so
    // with a RangeError before instantiating anything: the asynchronous way then.
    if (e instanceof RangeError && /main thread/i.test(e.message)) return WebAssembly.instantiate(module, imports);
    throw e;
  }
}
export function to_text(x) { try { return String(x); } catch { return typeof x; } }
export function report_error(e) { (globalThis.reportError ?? console.error)(e); }
export function sha256(bytes) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return undefined;
  return subtle.digest("SHA-256", bytes).then((d) => new Uint8Array(d), () => undefined);
}
export function has_webcrypto() { return !!globalThis.crypto?.subtle; }
export function compile_checked(bytes, sha256) {
  const compiled = WebAssembly.compile(bytes);
  if (!sha256) return compiled;
  const digest = crypto.subtle.digest("SHA-256", bytes);
  return Promise.all([compiled, digest]).then(([module, d]) => {
    const got = new Uint8Array(d);
    if (got.length !== sha256.length || got.some((b, i) => b !== sha256[i])) {
      const e = new Error(`its wasm bytes are corrupt (${bytes.length} bytes that do not match the SHA-256 their commit recorded)`);
      e.name = "LinkCacheCorruptBytes";
      throw e;
    }
    return module;
  });
}
export function discard(promise) { promise.catch(() => {}); }
export function bind_funcs(funcs, names, lengths, exports, which) {
  for (let i = 0, at = 0; i < lengths.length; i++) {
    const name = names.slice(at, (at += lengths[i]));
    funcs.set(name, exports[which[i]][name]);
  }
}
export function mark(label) { globalThis.__lcMarks?.push([label, performance.now()]); }
"#)]
extern "C" {
    /// `new WebAssembly.Global({value: ty, mutable}, value)`.
    #[wasm_bindgen(catch, js_name = new_global)]
    fn new_global_named(ty: &str, mutable: bool, value: &JsValue) -> Result<JsValue, JsValue>;
    /// `global.value = value`.
    #[wasm_bindgen(catch)]
    pub fn set_global(global: &JsValue, value: &JsValue) -> Result<(), JsValue>;
    /// A promise of `[{ok: true, value} | {ok: false, error}]`, one per promise of
    /// `promises` in order, once all have settled.
    pub fn settle_all(promises: &js_sys::Array) -> Promise;
    /// `new WebAssembly.Instance(module, imports)`: the instance, at once; or, where the
    /// browser refuses that on the main thread, a Promise of it (`WebAssembly.instantiate`).
    #[wasm_bindgen(catch)]
    pub fn instantiate_now(module: &JsValue, imports: &Object) -> Result<JsValue, JsValue>;
    /// `performance.now()`.
    pub fn now() -> f64;
    /// A promise resolved in a task of its own (`setTimeout(resolve, 0)`).
    pub fn next_task() -> Promise;
    /// Pushes `[label, performance.now()]` onto `globalThis.__lcMarks`, when set.
    #[cfg(feature = "marks")]
    pub fn mark(label: &str);
    /// `String(x)`, or its type when that throws.
    pub fn to_text(value: &JsValue) -> String;
    /// Reports an error the way an uncaught one is (`reportError`), without throwing.
    pub fn report_error(error: &JsValue);
    /// WebCrypto's SHA-256 of `bytes` (a Promise of a `Uint8Array`, of `undefined` when
    /// it fails), or `undefined` without WebCrypto (an insecure context).
    #[wasm_bindgen(js_name = sha256)]
    fn sha256_promise(bytes: &js_sys::Uint8Array) -> JsValue;
    /// Whether WebCrypto is there (a secure context).
    pub fn has_webcrypto() -> bool;
    /// `WebAssembly.compile(bytes)`; with `sha256`, the module only once WebCrypto,
    /// hashing in parallel, found that digest (else an error named
    /// `LinkCacheCorruptBytes`).
    pub fn compile_checked(bytes: &js_sys::Uint8Array, sha256: &JsValue) -> Promise;
    /// For each `i`: `funcs.set(name, exports[which[i]][name])`, where `name` is the
    /// next `lengths[i]` UTF-16 code units of `names` (the names one after the other).
    pub fn bind_funcs(
        funcs: &js_sys::Map,
        names: &str,
        lengths: &[u32],
        exports: &js_sys::Array,
        which: &[u32],
    );
    /// Ignores the outcome of a promise nobody will await (no unhandled rejection).
    pub fn discard(promise: &Promise);
}

/// WebCrypto's SHA-256 of `bytes`, as a Promise of a `Uint8Array` (or of `undefined`
/// when hashing failed); `None` without WebCrypto.
pub fn sha256(bytes: &js_sys::Uint8Array) -> Option<Promise> {
    sha256_promise(bytes).dyn_into::<Promise>().ok()
}

/// `new WebAssembly.Global({value: ty, mutable}, value)`.
pub fn new_global(ty: ValType, mutable: bool, value: &JsValue) -> Result<JsValue, JsValue> {
    new_global_named(val_type_name(ty), mutable, value)
}

/// The WebAssembly JS API's name of a value type.
pub fn val_type_name(ty: ValType) -> &'static str {
    match ty {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::FuncRef => "anyfunc",
        ValType::ExternRef => "externref",
    }
}

/// A core value as a JS value: numbers, and BigInt for i64.
pub fn to_js(value: Value) -> JsValue {
    match value {
        Value::I32(x) => JsValue::from(x),
        Value::I64(x) => JsValue::from(js_sys::BigInt::from(x)),
        Value::F32(bits) => JsValue::from(f32::from_bits(bits)),
        Value::F64(bits) => JsValue::from(f64::from_bits(bits)),
        Value::V128(_) => JsValue::UNDEFINED,
    }
}

/// A JS value as a core value of type `ty`.
pub fn from_js(ty: ValType, value: &JsValue) -> Option<Value> {
    /// An integral number in `[min, max]`.
    fn integer(value: &JsValue, min: f64, max: f64) -> Option<f64> {
        value
            .as_f64()
            .filter(|x| x.fract() == 0.0 && (min..=max).contains(x))
    }
    Some(match ty {
        // -2^31 ..= 2^32 - 1: unsigned values wrap, as WebAssembly.Global's do.
        ValType::I32 => {
            Value::I32(integer(value, -2_147_483_648.0, 4_294_967_295.0)? as i64 as i32)
        }
        ValType::I64 => match value.dyn_ref::<js_sys::BigInt>() {
            Some(big) => Value::I64(i64::try_from(big.clone()).ok()?),
            // A safe integer given as a number.
            None => Value::I64(
                integer(value, -9_007_199_254_740_991.0, 9_007_199_254_740_991.0)? as i64,
            ),
        },
        ValType::F32 => Value::from_f32(value.as_f64()? as f32),
        ValType::F64 => Value::from_f64(value.as_f64()?),
        _ => return None,
    })
}

/// `object[key]`, or `undefined`.
pub fn prop(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `object[key] = value` on a plain object.
pub fn set(object: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(object, &JsValue::from_str(key), value);
}

/// The message of a thrown value.
pub fn describe(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|| to_text(error))
}

/// A value as a plain JS object (maps as objects, `None` as `null`).
pub fn to_plain<T: Serialize + ?Sized>(value: &T) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::NULL)
}

/// `value` itself, or what it resolves to when it is a Promise.
pub async fn settle(value: JsValue) -> Result<JsValue, JsValue> {
    match value.dyn_ref::<Promise>() {
        Some(promise) => wasm_bindgen_futures::JsFuture::from(promise.clone()).await,
        None => Ok(value),
    }
}

/// The bytes of an `ArrayBuffer` or of any view of one (`Uint8Array`, `DataView`, ...).
pub fn bytes_of(value: &JsValue) -> Option<Vec<u8>> {
    if let Some(buffer) = value.dyn_ref::<js_sys::ArrayBuffer>() {
        return Some(js_sys::Uint8Array::new(buffer).to_vec());
    }
    if !js_sys::ArrayBuffer::is_view(value) {
        return None;
    }
    let buffer = prop(value, "buffer");
    let offset = prop(value, "byteOffset").as_f64()? as u32;
    let length = prop(value, "byteLength").as_f64()? as u32;
    Some(js_sys::Uint8Array::new_with_byte_offset_and_length(&buffer, offset, length).to_vec())
}

/// A profiling mark (feature `marks`; nothing without it): see `mark` above.
#[cfg(not(feature = "marks"))]
#[inline(always)]
pub fn mark(_label: &str) {}
