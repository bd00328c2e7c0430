//! The IndexedDB store (through rexie): module bytes, manifests, and the func_name index.
//!
//! ```text
//! database <name>, schema version SCHEMA_VERSION
//!   modules    key: ModuleId hex   value: Uint8Array (the wasm bytes)
//!   manifests  key: ModuleId hex   value: { id, record: Uint8Array (Manifest record),
//!                                           functions: [func_name...], committedAt }
//!              index by_function on `functions`, multiEntry: func_name -> manifests
//!   meta       key: "clock"        value: the last committedAt handed out
//! ```
//!
//! A module commits in one read-write transaction over the three stores, with no await
//! inside it but the transaction's own requests (the bytes and manifest are encoded
//! before it opens), so a reader sees a whole module or none of it. The commit counter
//! lives in the same transaction, so every tab of the origin agrees on the order of
//! commits, which duplicate resolution uses. The records are the native host's
//! (`linkcache_core::record`): a bundle from `linkcache export` imports here.

use std::sync::Arc;

use js_sys::{Array, Object, Reflect, Uint8Array};
use linkcache_core::{Candidate, Manifest, ModuleId};
use rexie::{Index, ObjectStore, Rexie, TransactionMode};
use wasm_bindgen::{JsCast, JsValue};

use crate::errors::{WebError, storage_error};

/// The schema version; bump it (with an upgrade path) when the layout changes.
pub const SCHEMA_VERSION: u32 = 2;

const MODULES: &str = "modules";
const MANIFESTS: &str = "manifests";
const META: &str = "meta";
const BY_FUNCTION: &str = "by_function";

/// One manifest as the store lists it.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    /// The module.
    pub id: ModuleId,
    /// Its manifest, or why it cannot be read.
    pub manifest: Result<Manifest, String>,
    /// Its commit number.
    pub committed_at: u64,
}

/// A linkcache database in IndexedDB.
pub struct IdbStore {
    db: Rexie,
}

fn set(object: &Object, key: &str, value: &JsValue) {
    Reflect::set(object, &JsValue::from_str(key), value)
        .expect("setting a property of a plain object");
}

fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

impl IdbStore {
    /// Opens (creating or upgrading) the database `name`.
    pub async fn open(name: &str) -> Result<IdbStore, WebError> {
        let db = Rexie::builder(name)
            .version(SCHEMA_VERSION)
            .add_object_store(ObjectStore::new(MODULES))
            .add_object_store(
                ObjectStore::new(MANIFESTS)
                    .add_index(Index::new(BY_FUNCTION, "functions").multi_entry(true)),
            )
            .add_object_store(ObjectStore::new(META))
            .build()
            .await
            .map_err(|e| storage_error("opening the database", &e))?;
        Ok(IdbStore { db })
    }

    /// Closes the connection (so that another tab can upgrade or delete the database).
    pub fn close(self) {
        self.db.close();
    }

    /// Commits a module: bytes, manifest and the next commit number, in one transaction.
    /// Returns `false` when the module was there already.
    pub async fn commit(&self, wasm: &[u8], manifest: &Manifest) -> Result<bool, WebError> {
        let id = JsValue::from_str(&manifest.module.to_string());
        let bytes = Uint8Array::from(wasm);
        let record = Uint8Array::from(manifest.encode().as_slice());
        let functions: Array = manifest
            .functions
            .iter()
            .map(|f| JsValue::from_str(&f.name))
            .collect();
        let fail = |e: rexie::Error| storage_error("adding a module", &e);

        let tx = self
            .db
            .transaction(&[MODULES, MANIFESTS, META], TransactionMode::ReadWrite)
            .map_err(fail)?;
        let manifests = tx.store(MANIFESTS).map_err(fail)?;
        if manifests.key_exists(id.clone()).await.map_err(fail)? {
            tx.done().await.map_err(fail)?;
            return Ok(false);
        }
        let meta = tx.store(META).map_err(fail)?;
        let clock = meta
            .get(JsValue::from_str("clock"))
            .await
            .map_err(fail)?
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
            + 1.0;
        meta.put(&JsValue::from_f64(clock), Some(&JsValue::from_str("clock")))
            .await
            .map_err(fail)?;
        tx.store(MODULES)
            .map_err(fail)?
            .put(&bytes, Some(&id))
            .await
            .map_err(fail)?;
        let value = Object::new();
        set(&value, "id", &id);
        set(&value, "record", &record);
        set(&value, "functions", &functions);
        set(&value, "committedAt", &JsValue::from_f64(clock));
        manifests.put(&value, Some(&id)).await.map_err(fail)?;
        tx.done().await.map_err(fail)?;
        Ok(true)
    }

    /// The modules the index lists for `func_name` (an index lookup, no scan).
    pub async fn candidates(&self, func_name: &str) -> Result<Vec<Candidate>, WebError> {
        let fail = |e: rexie::Error| storage_error("looking up a function", &e);
        let tx = self
            .db
            .transaction(&[MANIFESTS], TransactionMode::ReadOnly)
            .map_err(fail)?;
        let index = tx
            .store(MANIFESTS)
            .map_err(fail)?
            .index(BY_FUNCTION)
            .map_err(fail)?;
        let key =
            rexie::KeyRange::only(&JsValue::from_str(func_name)).map_err(|e| fail(e.into()))?;
        let values = index.get_all(Some(key), None).await.map_err(fail)?;
        let mut candidates = Vec::new();
        for value in values {
            let Some(id) = get(&value, "id").as_string().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let committed_at = get(&value, "committedAt").as_f64().unwrap_or(f64::MAX) as u64;
            candidates.push(Candidate {
                module: id,
                committed_at,
            });
        }
        Ok(candidates)
    }

    /// The manifest of `id`: `Ok(Err(reason))` when it is missing or corrupt.
    pub async fn manifest(&self, id: &ModuleId) -> Result<Result<Arc<Manifest>, String>, WebError> {
        let fail = |e: rexie::Error| storage_error("reading a manifest", &e);
        let tx = self
            .db
            .transaction(&[MANIFESTS], TransactionMode::ReadOnly)
            .map_err(fail)?;
        let value = tx
            .store(MANIFESTS)
            .map_err(fail)?
            .get(JsValue::from_str(&id.to_string()))
            .await
            .map_err(fail)?;
        Ok(match value {
            None => Err("its manifest is missing".into()),
            Some(value) => decode_manifest(&value, id).map(Arc::new),
        })
    }

    /// The bytes of `id`, checked against the id: `Ok(Err(reason))` when missing or corrupt.
    pub async fn module_bytes(&self, id: &ModuleId) -> Result<Result<Vec<u8>, String>, WebError> {
        let fail = |e: rexie::Error| storage_error("reading module bytes", &e);
        let tx = self
            .db
            .transaction(&[MODULES], TransactionMode::ReadOnly)
            .map_err(fail)?;
        let value = tx
            .store(MODULES)
            .map_err(fail)?
            .get(JsValue::from_str(&id.to_string()))
            .await
            .map_err(fail)?;
        Ok(match value.and_then(|v| v.dyn_into::<Uint8Array>().ok()) {
            None => Err("its wasm bytes are missing".into()),
            Some(array) => {
                let bytes = array.to_vec();
                if id.matches(&bytes) {
                    Ok(bytes)
                } else {
                    Err(format!(
                        "its wasm bytes are corrupt ({} bytes that do not hash to the module id)",
                        bytes.len()
                    ))
                }
            }
        })
    }

    /// Every manifest in the store.
    pub async fn all(&self) -> Result<Vec<StoredManifest>, WebError> {
        let fail = |e: rexie::Error| storage_error("listing modules", &e);
        let tx = self
            .db
            .transaction(&[MANIFESTS], TransactionMode::ReadOnly)
            .map_err(fail)?;
        let values = tx
            .store(MANIFESTS)
            .map_err(fail)?
            .get_all(None, None)
            .await
            .map_err(fail)?;
        let mut all = Vec::new();
        for value in values {
            let Some(id) = get(&value, "id")
                .as_string()
                .and_then(|s| s.parse::<ModuleId>().ok())
            else {
                continue;
            };
            all.push(StoredManifest {
                id,
                manifest: decode_manifest(&value, &id),
                committed_at: get(&value, "committedAt").as_f64().unwrap_or(0.0) as u64,
            });
        }
        all.sort_by_key(|m| (m.committed_at, m.id));
        Ok(all)
    }

    /// Removes every module.
    pub async fn clear(&self) -> Result<(), WebError> {
        let fail = |e: rexie::Error| storage_error("clearing the cache", &e);
        let tx = self
            .db
            .transaction(&[MODULES, MANIFESTS], TransactionMode::ReadWrite)
            .map_err(fail)?;
        tx.store(MODULES)
            .map_err(fail)?
            .clear()
            .await
            .map_err(fail)?;
        tx.store(MANIFESTS)
            .map_err(fail)?
            .clear()
            .await
            .map_err(fail)?;
        tx.done().await.map_err(fail)?;
        Ok(())
    }

    /// Overwrites the stored bytes of a module, leaving its manifest: fault injection for
    /// tests of corrupt records (what a failing disk or a buggy writer leaves).
    pub async fn overwrite_module_bytes(
        &self,
        id: &ModuleId,
        bytes: &[u8],
    ) -> Result<(), WebError> {
        let fail = |e: rexie::Error| storage_error("overwriting a module", &e);
        let tx = self
            .db
            .transaction(&[MODULES], TransactionMode::ReadWrite)
            .map_err(fail)?;
        tx.store(MODULES)
            .map_err(fail)?
            .put(
                &Uint8Array::from(bytes),
                Some(&JsValue::from_str(&id.to_string())),
            )
            .await
            .map_err(fail)?;
        tx.done().await.map_err(fail)?;
        Ok(())
    }

    /// Overwrites the stored manifest record of a module: fault injection for tests.
    pub async fn overwrite_manifest_record(
        &self,
        id: &ModuleId,
        record: &[u8],
    ) -> Result<(), WebError> {
        let fail = |e: rexie::Error| storage_error("overwriting a manifest", &e);
        let key = JsValue::from_str(&id.to_string());
        let tx = self
            .db
            .transaction(&[MANIFESTS], TransactionMode::ReadWrite)
            .map_err(fail)?;
        let store = tx.store(MANIFESTS).map_err(fail)?;
        let value = store
            .get(key.clone())
            .await
            .map_err(fail)?
            .unwrap_or_else(|| Object::new().into());
        Reflect::set(
            &value,
            &JsValue::from_str("record"),
            &Uint8Array::from(record),
        )
        .ok();
        store.put(&value, Some(&key)).await.map_err(fail)?;
        tx.done().await.map_err(fail)?;
        Ok(())
    }
}

fn decode_manifest(value: &JsValue, id: &ModuleId) -> Result<Manifest, String> {
    let record = get(value, "record")
        .dyn_into::<Uint8Array>()
        .map_err(|_| "its manifest record is missing".to_string())?
        .to_vec();
    match Manifest::decode(&record) {
        Ok(manifest) if manifest.module == *id => Ok(manifest),
        Ok(manifest) => Err(format!(
            "its manifest describes another module ({})",
            manifest.module.short()
        )),
        Err(e) => Err(format!("its manifest is corrupt: {e}")),
    }
}
