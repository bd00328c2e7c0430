//! The origin's storage: `navigator.storage.estimate()` and `persist()`, in a window or
//! a worker.

use js_sys::{Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::js::prop;

/// `navigator.storage`, if this global has one.
fn storage_manager() -> Option<JsValue> {
    let navigator = Reflect::get(&js_sys::global(), &JsValue::from_str("navigator")).ok()?;
    let storage = prop(&navigator, "storage");
    (!storage.is_undefined()).then_some(storage)
}

/// Calls `navigator.storage[method]()`: its promise, if there is such a method.
fn start(method: &str) -> Option<Promise> {
    let storage = storage_manager()?;
    let function: js_sys::Function = prop(&storage, method).dyn_into().ok()?;
    function.call0(&storage).ok()?.dyn_into().ok()
}

async fn call(method: &str) -> Option<JsValue> {
    JsFuture::from(start(method)?).await.ok()
}

/// Asks the browser to make this origin's storage persistent; whether it did.
pub async fn request_persistence() -> bool {
    call("persist").await.is_some_and(|v| v.is_truthy())
}

/// `(usage, quota)` in bytes, as the browser estimates them.
pub async fn estimate() -> Option<(f64, f64)> {
    estimated(start_estimate()).await
}

/// Asks the browser for its estimate now; [`estimated`] waits for it.
pub fn start_estimate() -> Option<Promise> {
    start("estimate")
}

/// The answer to [`start_estimate`].
pub async fn estimated(asked: Option<Promise>) -> Option<(f64, f64)> {
    let estimate = JsFuture::from(asked?).await.ok()?;
    Some((
        prop(&estimate, "usage").as_f64()?,
        prop(&estimate, "quota").as_f64()?,
    ))
}
