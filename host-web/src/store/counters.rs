//! The counters in `meta` (`clock`: the last commit number handed out; `uses`: the
//! last use number), each read and bumped inside the transaction of the write that
//! takes a number, so that every tab agrees on the order of commits and of uses.

use wasm_bindgen::JsValue;

/// The next value of the counter `name` in the meta store (1 the first time), stored.
pub(super) async fn next_counter(meta: &idb::ObjectStore, name: &str) -> Result<f64, idb::Error> {
    let previous = meta.get(JsValue::from_str(name))?.await?;
    put_next_counter(meta, name, previous).await
}

/// Stores and returns the value after `previous`, which was read from the counter `name`
/// in this transaction.
pub(super) async fn put_next_counter(
    meta: &idb::ObjectStore,
    name: &str,
    previous: Option<JsValue>,
) -> Result<f64, idb::Error> {
    let next = previous.and_then(|v| v.as_f64()).unwrap_or(0.0) + 1.0;
    meta.put(&JsValue::from_f64(next), Some(&JsValue::from_str(name)))?
        .await?;
    Ok(next)
}
