//! `gc({ maxBytes })`: evict the least recently used modules whole, as the native
//! `linkcache gc` does; and the use records it orders them by.
//!
//! A tab records a use of each module it binds (see [`crate::store`]), at most once in
//! [`TOUCH_INTERVAL_MS`] per module, so a long-lived tab that keeps targeting its
//! functions keeps them warm without a write per call. After a gc every other tab gets
//! `{type: "evicted", modules}`; a tab (this one included) that has one of those modules
//! loaded forgets its bindings, as on `cleared`, so that tabs agree again once the
//! cache is refilled. Functions already returned keep working.

use js_sys::{Array, Object, Promise};
use linkcache_core::ModuleId;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::cache::{LinkCache, js_err};
use crate::js::{prop, set};

/// How often a tab records another use of a module it keeps targeting (the native
/// host's interval).
pub const TOUCH_INTERVAL_MS: f64 = 600_000.0;

#[wasm_bindgen]
impl LinkCache {
    /// Evicts least recently used modules, each whole (bytes, manifest, index entries,
    /// use record, in one transaction), until the cache's records take at most
    /// `options.maxBytes` bytes. Resolves to `{evicted: [ids], freedBytes,
    /// remainingBytes}`, least recently used first. Other tabs and workers get
    /// `{type: "evicted", modules}` from `onChange`; a tab that had one of them loaded
    /// forgets its bindings (functions already returned keep working).
    #[wasm_bindgen(unchecked_return_type = "Promise<GcReport>")]
    pub fn gc(
        &self,
        #[wasm_bindgen(unchecked_param_type = "{ maxBytes: number }")] options: JsValue,
    ) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            let max_bytes = prop(&options, "maxBytes")
                .as_f64()
                .filter(|m| *m >= 0.0)
                .ok_or_else(|| {
                    js_sys::TypeError::new("gc takes { maxBytes }, a number of bytes (0 or more)")
                })?;
            // This tab's queued uses count: their write goes before the gc's.
            this.flush_uses();
            let store = std::rc::Rc::clone(&this.inner.borrow().store);
            let report = store.gc(max_bytes).await.map_err(js_err)?;
            if !report.evicted.is_empty() {
                this.broadcast_evicted(&report.evicted);
                this.forget_if_loaded(&report.evicted);
                this.refresh_estimate().await;
            }
            let result = Object::new();
            let ids: Array = report
                .evicted
                .iter()
                .map(|id| JsValue::from_str(&id.to_string()))
                .collect();
            set(&result, "evicted", &ids);
            set(
                &result,
                "freedBytes",
                &JsValue::from_f64(report.freed as f64),
            );
            set(
                &result,
                "remainingBytes",
                &JsValue::from_f64(report.remaining as f64),
            );
            Ok(result.into())
        })
    }
}

impl LinkCache {
    /// Forgets this tab's link state when it has one of `evicted` loaded.
    pub(crate) fn forget_if_loaded(&self, evicted: &[ModuleId]) {
        let loaded = {
            let inner = self.inner.borrow();
            evicted.iter().any(|id| inner.linkage.is_loaded(id))
        };
        if loaded {
            self.forget();
        }
    }

    /// Records a use of the stored modules among `ids` that this tab has not recorded
    /// lately. The write waits for the next task, so that it runs after the target that
    /// made the use has returned to its caller, not on its path (it cost the target about
    /// a millisecond of the main thread, session 26); a gc or a listing in this tab
    /// writes the uses still queued first ([`LinkCache::flush_uses`]).
    pub(crate) fn touch(&self, ids: impl IntoIterator<Item = ModuleId>) {
        let now = js_sys::Date::now();
        let due: Vec<ModuleId> = {
            let mut inner = self.inner.borrow_mut();
            let inner = &mut *inner;
            ids.into_iter()
                .filter(|id| !inner.memory.contains_key(id))
                .filter(|id| {
                    let fresh = inner
                        .touched
                        .get(id)
                        .is_some_and(|at| now - at < TOUCH_INTERVAL_MS);
                    if !fresh {
                        inner.touched.insert(*id, now);
                    }
                    !fresh
                })
                .collect()
        };
        if due.is_empty() {
            return;
        }
        let schedule = {
            let mut inner = self.inner.borrow_mut();
            let idle = inner.uses_due.is_empty();
            inner.uses_due.extend(due);
            idle
        };
        if schedule {
            let this = self.handle();
            wasm_bindgen_futures::spawn_local(async move {
                let _ = wasm_bindgen_futures::JsFuture::from(crate::js::next_task()).await;
                // Written already by a gc or a listing, or dropped by `close()`: nothing
                // to do (and `flush_uses` is not even compiled for a tab that closed).
                if !this.inner.borrow().uses_due.is_empty() {
                    this.flush_uses();
                }
            });
        }
    }

    /// Writes the uses `touch` queued, now: the write's transaction is created before
    /// this returns, so a gc or a read of the use records started later by this tab sees
    /// them. The write itself is not waited for.
    pub(crate) fn flush_uses(&self) {
        let due = std::mem::take(&mut self.inner.borrow_mut().uses_due);
        if due.is_empty() {
            return;
        }
        let store = std::rc::Rc::clone(&self.inner.borrow().store);
        if let Ok(write) = store.record_use(&due) {
            wasm_bindgen_futures::spawn_local(async move {
                // Advisory: a full quota or a closed connection loses one record.
                let _ = write.await;
            });
        }
    }
}
