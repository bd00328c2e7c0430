//! Committing a module: [`IdbStore::commit`] writes its bytes, its manifest, a use of it
//! and a new index stamp in one read-write transaction (see "What a reader may see" in
//! [`crate::store`]).

use idb::TransactionMode;
use js_sys::{Array, Object, Uint8Array};
use linkcache_core::{ANALYZER_VERSION, Manifest};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use super::advisory::use_record;
use super::counters::next_counter;
use super::{
    CLOCK, IdbStore, MANIFESTS, META, MODULES, PLANS, USED, USES, fresh_stamp, get, key, set,
    stamp_key,
};
use crate::errors::{WebError, storage_error};

impl IdbStore {
    /// Commits a module whose manifest was checked against its bytes (analyzed, or
    /// checked with [`Manifest::check_against`]): bytes, manifest, the analyzer version
    /// and its commit number, in one transaction.
    /// Returns `false` when the module was there already (its records are rewritten
    /// with its old commit number, which repairs a damaged copy).
    pub async fn commit(&self, wasm: &[u8], manifest: &Manifest) -> Result<bool, WebError> {
        const DOING: &str = "adding a module";
        // Everything is computed before the transaction opens.
        let id = key(&manifest.module);
        let bytes = Uint8Array::from(wasm);
        let record = Uint8Array::from(manifest.encode().as_slice());
        let functions: Array = manifest
            .functions
            .iter()
            .map(|f| JsValue::from_str(&f.name))
            .collect();
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let sha256 = match crate::js::sha256(&bytes) {
            Some(digest) => JsFuture::from(digest).await.unwrap_or(JsValue::UNDEFINED),
            None => JsValue::UNDEFINED,
        };

        let at = js_sys::Date::now();
        let tx = self.transaction(
            &[MODULES, MANIFESTS, META, USED, PLANS],
            TransactionMode::ReadWrite,
            DOING,
        )?;
        let manifests = tx.store(MANIFESTS)?;
        let meta = tx.store(META)?;
        let existing = manifests
            .get(id.clone())
            .map_err(fail)?
            .await
            .map_err(fail)?
            .map(|value| get(&value, "committedAt"))
            .and_then(|at| at.as_f64());
        let committed_at = match existing {
            Some(at) => at,
            None => next_counter(&meta, CLOCK).await.map_err(fail)?,
        };
        tx.store(MODULES)?
            .put(&bytes, Some(&id))
            .map_err(fail)?
            .await
            .map_err(fail)?;
        let value = Object::new();
        set(&value, "id", &id);
        set(&value, "record", &record);
        set(&value, "functions", &functions);
        set(&value, "committedAt", &JsValue::from_f64(committed_at));
        set(&value, "analyzer", &JsValue::from(ANALYZER_VERSION));
        if !sha256.is_undefined() {
            set(&value, "sha256", &sha256);
        }
        manifests
            .put(&value, Some(&id))
            .map_err(fail)?
            .await
            .map_err(fail)?;
        let uses = next_counter(&meta, USES).await.map_err(fail)?;
        tx.store(USED)?
            .put(&use_record(&id, uses, at), Some(&id))
            .map_err(fail)?
            .await
            .map_err(fail)?;
        tx.store(PLANS)?
            .put(&fresh_stamp(), Some(&stamp_key()))
            .map_err(fail)?
            .await
            .map_err(fail)?;
        tx.done().await?;
        Ok(existing.is_none())
    }
}
