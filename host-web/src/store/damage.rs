//! Fault injection for tests: hooks that damage a stored module on purpose (its bytes,
//! its manifest record, the analyzer version recorded with it), as a failing disk, a
//! buggy writer or an older linkcache-web leaves it. Only the crate's browser tests
//! (`host-web/tests`) call them: compiled with the `test-hooks` feature alone, which
//! those tests turn on (a dev-dependency of the crate on itself), never in the package.

use idb::TransactionMode;
use js_sys::{Object, Reflect, Uint8Array};
use linkcache_core::ModuleId;
use wasm_bindgen::{JsCast, JsValue};

use super::{IdbStore, MANIFESTS, MODULES, key, set};
use crate::errors::{WebError, storage_error};

impl IdbStore {
    /// Overwrites the stored bytes of a module, leaving its manifest: fault injection for
    /// tests of corrupt records (what a failing disk or a buggy writer leaves).
    pub async fn overwrite_module_bytes(
        &self,
        id: &ModuleId,
        bytes: &[u8],
    ) -> Result<(), WebError> {
        const DOING: &str = "overwriting a module";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let tx = self.transaction(&[MODULES], TransactionMode::ReadWrite, DOING)?;
        tx.store(MODULES)?
            .put(&Uint8Array::from(bytes), Some(&key(id)))
            .map_err(fail)?
            .await
            .map_err(fail)?;
        tx.done().await
    }

    /// Overwrites the stored manifest record of a module: fault injection for tests.
    pub async fn overwrite_manifest_record(
        &self,
        id: &ModuleId,
        record: &[u8],
    ) -> Result<(), WebError> {
        const DOING: &str = "overwriting a manifest";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let tx = self.transaction(&[MANIFESTS], TransactionMode::ReadWrite, DOING)?;
        let store = tx.store(MANIFESTS)?;
        let value = store
            .get(key(id))
            .map_err(fail)?
            .await
            .map_err(fail)?
            .unwrap_or_else(|| Object::new().into());
        set(value.unchecked_ref(), "record", &Uint8Array::from(record));
        store
            .put(&value, Some(&key(id)))
            .map_err(fail)?
            .await
            .map_err(fail)?;
        tx.done().await
    }

    /// Removes the analyzer version recorded with a manifest, as a manifest written by
    /// an older linkcache-web (or checked by another analysis) has it: fault injection
    /// for tests of the load-time check.
    pub async fn forget_analyzer_version(&self, id: &ModuleId) -> Result<(), WebError> {
        const DOING: &str = "overwriting a manifest";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let tx = self.transaction(&[MANIFESTS], TransactionMode::ReadWrite, DOING)?;
        let store = tx.store(MANIFESTS)?;
        let Some(value) = store.get(key(id)).map_err(fail)?.await.map_err(fail)? else {
            return tx.done().await;
        };
        let _ = Reflect::delete_property(
            value.unchecked_ref::<Object>(),
            &JsValue::from_str("analyzer"),
        );
        store
            .put(&value, Some(&key(id)))
            .map_err(fail)?
            .await
            .map_err(fail)?;
        tx.done().await
    }
}
