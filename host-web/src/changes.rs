//! What other tabs and workers tell this one, and `onChange`.
//!
//! Tabs of an origin talk over a `BroadcastChannel` named `linkcache:<database>`:
//! `{type: "added", modules}` after a commit, `{type: "cleared", modules: []}` after a
//! `clear()`, `{type: "evicted", modules}` after a `gc` removed modules. A tab that hears
//! `cleared` forgets its bindings (as [`LinkCache::forget`]), so it neither keeps serving
//! modules that are gone nor calls them broken; the next target loads from what the
//! cache holds then. On `evicted` it does the same when it has one of those modules
//! loaded. When another tab's upgrade or deletion
//! closes this tab's connection, the tab's own callbacks get `{type: "closed"}` at once.
//!
//! A callback that throws is reported (`reportError`, as an uncaught exception would
//! be) and the other callbacks still run.

use std::rc::Rc;

use js_sys::{Array, Function, Object};
use linkcache_core::ModuleId;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent};

use crate::cache::LinkCache;
use crate::js::{prop, report_error, set};

/// The channel and the `onChange` callbacks of one cache.
#[derive(Default)]
pub struct Changes {
    channel: Option<BroadcastChannel>,
    listener: Option<Closure<dyn FnMut(MessageEvent)>>,
    callbacks: Vec<(u64, Function)>,
    next_id: u64,
}

impl Changes {
    /// Closes the channel (idempotent).
    pub fn close(&mut self) {
        if let Some(channel) = self.channel.take() {
            channel.set_onmessage(None);
            channel.close();
        }
        self.listener = None;
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.close();
    }
}

fn message(kind: &str, ids: &[ModuleId]) -> Object {
    let message = Object::new();
    set(&message, "type", &JsValue::from_str(kind));
    let ids: Array = ids
        .iter()
        .map(|id| JsValue::from_str(&id.to_string()))
        .collect();
    set(&message, "modules", &ids);
    message
}

#[wasm_bindgen]
impl LinkCache {
    /// Calls `callback(message)` when another tab or worker of this origin adds modules
    /// (`{type: "added", modules: [ids]}`), clears the cache (`{type: "cleared"}`;
    /// this tab has forgotten its bindings by then) or evicts modules with `gc`
    /// (`{type: "evicted", modules: [ids]}`; this tab has forgotten its bindings when it
    /// had one of them loaded), and when another tab's upgrade or
    /// deletion closed this cache's connection (`{type: "closed"}`). Returns a function
    /// that unsubscribes the callback. A callback that throws is reported with
    /// `reportError` and does not stop the others.
    #[wasm_bindgen(js_name = onChange, unchecked_return_type = "() => void")]
    pub fn on_change(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(message: ChangeMessage) => void")]
        callback: Function,
    ) -> JsValue {
        let id = {
            let mut inner = self.inner.borrow_mut();
            let changes = &mut inner.changes;
            changes.next_id += 1;
            changes.callbacks.push((changes.next_id, callback));
            changes.next_id
        };
        let weak = Rc::downgrade(&self.inner);
        Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner
                    .borrow_mut()
                    .changes
                    .callbacks
                    .retain(|(other, _)| *other != id);
            }
        })
        .into_js_value()
    }

    pub(crate) fn listen(&self) {
        let name = format!("linkcache:{}", self.inner.borrow().name);
        let Ok(channel) = BroadcastChannel::new(&name) else {
            return;
        };
        let weak = Rc::downgrade(&self.inner);
        let listener = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(inner) = weak.upgrade() else { return };
            let cache = LinkCache { inner };
            let data = event.data();
            match prop(&data, "type").as_string().as_deref() {
                Some("cleared") => cache.forget(),
                Some("evicted") => {
                    let modules: Vec<ModuleId> = Array::from(&prop(&data, "modules"))
                        .iter()
                        .filter_map(|id| id.as_string()?.parse().ok())
                        .collect();
                    cache.forget_if_loaded(&modules);
                }
                _ => {}
            }
            cache.notify(&data);
        });
        channel.set_onmessage(Some(listener.as_ref().unchecked_ref()));
        let mut inner = self.inner.borrow_mut();
        inner.changes.channel = Some(channel);
        inner.changes.listener = Some(listener);
    }

    /// Calls this tab's callbacks with `message`.
    fn notify(&self, message: &JsValue) {
        let callbacks: Vec<Function> = self
            .inner
            .borrow()
            .changes
            .callbacks
            .iter()
            .map(|(_, f)| f.clone())
            .collect();
        for callback in callbacks {
            if let Err(error) = callback.call1(&JsValue::NULL, message) {
                report_error(&error);
            }
        }
    }

    fn broadcast(&self, message: &Object) {
        if let Some(channel) = &self.inner.borrow().changes.channel {
            let _ = channel.post_message(message);
        }
    }

    pub(crate) fn broadcast_added(&self, ids: &[ModuleId]) {
        self.broadcast(&message("added", ids));
    }

    pub(crate) fn broadcast_cleared(&self) {
        self.broadcast(&message("cleared", &[]));
    }

    pub(crate) fn broadcast_evicted(&self, ids: &[ModuleId]) {
        self.broadcast(&message("evicted", ids));
    }

    /// Another tab's upgrade or deletion closed the connection: tell this tab.
    pub(crate) fn announce_closed(&self) {
        {
            let mut inner = self.inner.borrow_mut();
            // The connection is gone: the uses queued for it cannot be written (as on
            // `close()`).
            inner.uses_due.clear();
            inner.changes.close();
        }
        self.notify(&message("closed", &[]).into());
    }
}
