//! Advisory writes: use records ([`IdbStore::record_use`]) and plan hints
//! ([`IdbStore::record_plan`]), each in a small read-write transaction of its own that
//! `close()` aborts. Neither is needed for a correct answer: a lost use record only
//! moves a module in gc's order, a lost hint costs the next plan its prefetch. Also the
//! shape of a `used` record, which a commit writes too. "The module docs" below are
//! [`crate::store`]'s.

use std::future::IntoFuture;

use idb::TransactionMode;
use js_sys::{Array, Object, Uint8Array};
use linkcache_core::ModuleId;
use wasm_bindgen::JsValue;

use super::counters::put_next_counter;
use super::{IdbStore, META, PLANS, USED, USES, key, set};
use crate::errors::{WebError, storage_error};

impl IdbStore {
    /// Records a use of `ids` now (for [`IdbStore::gc`]). The transaction is created and
    /// its first request issued before this returns, so a gc started later by this tab
    /// sees the use; the returned future writes the record (spawn it; dropped, it
    /// records nothing).
    pub fn record_use(
        &self,
        ids: &[ModuleId],
    ) -> Result<impl Future<Output = Result<(), WebError>> + use<>, WebError> {
        const DOING: &str = "recording a use";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let at = js_sys::Date::now();
        let tx = self.transaction(&[USED, META], TransactionMode::ReadWrite, DOING)?;
        let meta = tx.store(META)?;
        let clock = meta
            .get(JsValue::from_str(USES))
            .map_err(fail)?
            .into_future();
        let keys: Vec<JsValue> = ids.iter().map(key).collect();
        let raw = tx.raw.clone();
        Ok(self.advisory(raw, async move {
            let fail = |e: idb::Error| storage_error(DOING, &e);
            let previous = clock.await.map_err(fail)?;
            let uses = put_next_counter(&meta, USES, previous)
                .await
                .map_err(fail)?;
            let used = tx.store(USED)?;
            for id in &keys {
                used.put(&use_record(id, uses, at), Some(id))
                    .map_err(fail)?
                    .await
                    .map_err(fail)?;
            }
            tx.done().await
        }))
    }

    /// Stores the plan hint of `func_name` (see the module docs). The transaction is
    /// created before this returns; the returned future waits for it (the hint is
    /// advisory: a failure loses nothing but a prefetch, and `close()` aborts it).
    pub fn record_plan(
        &self,
        func_name: &str,
        hint: &crate::snapshot::Hint,
        kept: Option<&[u8]>,
    ) -> Result<impl Future<Output = Result<(), WebError>> + use<>, WebError> {
        const DOING: &str = "recording a plan hint";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let value = Object::new();
        let ids = |v: &[ModuleId]| -> Array { v.iter().map(key).collect() };
        let names: Array = hint.funcs.iter().map(|f| JsValue::from_str(f)).collect();
        let lists: Array = hint.lists.iter().map(|list| ids(list)).collect();
        set(&value, "funcs", &names);
        set(&value, "lists", &lists);
        set(&value, "modules", &ids(&hint.modules));
        if let Some(stamp) = hint.stamp {
            set(&value, "stamp", &JsValue::from_f64(stamp));
        }
        if let Some(kept) = kept {
            set(&value, "kept", &Uint8Array::from(kept));
        }
        let tx = self.transaction(&[PLANS], TransactionMode::ReadWrite, DOING)?;
        let put = tx
            .store(PLANS)?
            .put(&value, Some(&JsValue::from_str(func_name)))
            .map_err(fail)?
            .into_future();
        let raw = tx.raw.clone();
        Ok(self.advisory(raw, async move {
            put.await.map_err(|e| storage_error(DOING, &e))?;
            tx.done().await
        }))
    }
}

/// The `used` record of a module: `{id, use, at}`.
pub(super) fn use_record(id: &JsValue, uses: f64, at: f64) -> Object {
    let value = Object::new();
    set(&value, "id", id);
    set(&value, "use", &JsValue::from_f64(uses));
    set(&value, "at", &JsValue::from_f64(at));
    value
}
