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

async fn call(method: &str) -> Option<JsValue> {
    let storage = storage_manager()?;
    let function: js_sys::Function = prop(&storage, method).dyn_into().ok()?;
    let promise: Promise = function.call0(&storage).ok()?.dyn_into().ok()?;
    JsFuture::from(promise).await.ok()
}

/// Asks the browser to make this origin's storage persistent; whether it did.
pub async fn request_persistence() -> bool {
    call("persist").await.is_some_and(|v| v.is_truthy())
}

/// `(usage, quota)` in bytes, as the browser estimates them.
pub async fn estimate() -> Option<(f64, f64)> {
    let estimate = call("estimate").await?;
    Some((
        prop(&estimate, "usage").as_f64()?,
        prop(&estimate, "quota").as_f64()?,
    ))
}
