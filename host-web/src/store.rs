//! The IndexedDB store: module bytes, manifests, and the func_name index.
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
//! # What a reader may see
//! A module commits in one read-write transaction over the three stores. Everything it
//! writes (the bytes as a `Uint8Array`, the encoded manifest record, the function list)
//! is computed before the transaction opens; inside it there is no await but on the
//! transaction's own requests, so it cannot auto-commit half-way. IndexedDB makes the
//! transaction atomic: every tab and worker of the origin sees a whole module (bytes,
//! manifest and index entries) or none of it, a crash or a full disk leaves none of it,
//! and the commit counter in `meta` changes in the same transaction, so every tab
//! agrees on the order of commits, which duplicate resolution uses. Adding bytes that
//! are there already rewrites them and their manifest (repairing a damaged copy) and
//! keeps their commit number.
//!
//! A transaction the browser aborts (the origin's quota is full, the disk failed) is a
//! failed commit with the browser's reason (`LinkCacheQuotaExceeded`, ...), never a
//! silent success. That is why this module uses `idb`, the crate `rexie` is built on:
//! `rexie` 0.6's `Transaction::done` resolves an aborted transaction to
//! `Ok(TransactionResult::Aborted)` and drops its `DOMException`, so a quota abort
//! could not be told from any other.
//!
//! Reads check what they read: a manifest record that does not decode (checksum,
//! truncation, an unknown format version) or that describes another module is a broken
//! entry, and so are bytes whose BLAKE3 is not their key. Both become misses with cause
//! `broken` (or a fallback to a duplicate), never a wrong link.
//!
//! # Upgrades
//! The schema is declarative: opening at [`SCHEMA_VERSION`] creates missing stores and
//! indexes and drops any other store (idb's `DatabaseBuilder`), so a database of any
//! older version converges to this layout; records an older layout left that do not
//! decode count as broken entries. A database of a newer version is refused with
//! `LinkCacheSchemaTooNew`. A connection closes itself when another tab or worker needs
//! a version change, so it never blocks an upgrade; its later operations fail with
//! `LinkCacheClosed`.
//!
//! The records are the native host's (`linkcache_core::record`): a bundle from
//! `linkcache export` imports here.

use std::sync::Arc;

use idb::builder::{IndexBuilder, ObjectStoreBuilder};
use idb::{Database, KeyPath, KeyRange, Query, Transaction, TransactionMode};
use js_sys::{Array, Object, Reflect, Uint8Array};
use linkcache_core::{Candidate, Manifest, ModuleId};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::IdbTransaction;

use crate::errors::{WebError, storage_error, transaction_aborted};

/// The schema version; bump it (with an upgrade path) when the layout changes.
pub const SCHEMA_VERSION: u32 = 2;

const MODULES: &str = "modules";
const MANIFESTS: &str = "manifests";
const META: &str = "meta";
const BY_FUNCTION: &str = "by_function";
const CLOCK: &str = "clock";

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

/// A linkcache database in IndexedDB: one connection.
pub struct IdbStore {
    db: Database,
}

fn set(object: &Object, key: &str, value: &JsValue) {
    Reflect::set(object, &JsValue::from_str(key), value)
        .expect("setting a property of a plain object");
}

fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn key(id: &ModuleId) -> JsValue {
    JsValue::from_str(&id.to_string())
}

/// A transaction, and the raw handle that still answers `error` after it ends.
struct Tx {
    tx: Transaction,
    raw: IdbTransaction,
    doing: &'static str,
}

impl Tx {
    fn store(&self, name: &str) -> Result<idb::ObjectStore, WebError> {
        self.tx
            .object_store(name)
            .map_err(|e| storage_error(self.doing, &e))
    }

    /// Waits for the transaction to commit; an abort is an error with its reason.
    async fn done(self) -> Result<(), WebError> {
        let Tx { tx, raw, doing } = self;
        match tx.await {
            Ok(result) if result.is_committed() => Ok(()),
            Ok(_) => Err(transaction_aborted(doing, raw.error())),
            Err(e) => Err(storage_error(doing, &e)),
        }
    }
}

impl IdbStore {
    /// Opens (creating or upgrading) the database `name`.
    pub async fn open(name: &str) -> Result<IdbStore, WebError> {
        let by_function = IndexBuilder::new(BY_FUNCTION.into(), KeyPath::new_single("functions"))
            .multi_entry(true);
        let db = Database::builder(name)
            .version(SCHEMA_VERSION)
            .add_object_store(ObjectStoreBuilder::new(MODULES))
            .add_object_store(ObjectStoreBuilder::new(MANIFESTS).add_index(by_function))
            .add_object_store(ObjectStoreBuilder::new(META))
            .build()
            .await
            .map_err(|e| storage_error("opening the database", &e))?;
        Ok(IdbStore { db })
    }

    /// Closes the connection (once its running transactions finish), so that another
    /// tab can upgrade or delete the database. Later operations fail with
    /// `LinkCacheClosed`.
    pub fn close(&self) {
        self.db.close();
    }

    fn transaction(
        &self,
        stores: &[&str],
        mode: TransactionMode,
        doing: &'static str,
    ) -> Result<Tx, WebError> {
        let tx = self
            .db
            .transaction(stores, mode)
            .map_err(|e| storage_error(doing, &e))?;
        let raw: IdbTransaction = tx.into();
        Ok(Tx {
            tx: Transaction::from(raw.clone()),
            raw,
            doing,
        })
    }

    /// Commits a module: bytes, manifest and its commit number, in one transaction.
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

        let tx = self.transaction(
            &[MODULES, MANIFESTS, META],
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
            None => {
                let clock = meta
                    .get(JsValue::from_str(CLOCK))
                    .map_err(fail)?
                    .await
                    .map_err(fail)?
                    .and_then(|v| v.as_f64())
                    .unwrap_or(0.0)
                    + 1.0;
                meta.put(&JsValue::from_f64(clock), Some(&JsValue::from_str(CLOCK)))
                    .map_err(fail)?
                    .await
                    .map_err(fail)?;
                clock
            }
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
        manifests
            .put(&value, Some(&id))
            .map_err(fail)?
            .await
            .map_err(fail)?;
        tx.done().await?;
        Ok(existing.is_none())
    }

    /// The modules the index lists for `func_name` (an index lookup, no scan).
    pub async fn candidates(&self, func_name: &str) -> Result<Vec<Candidate>, WebError> {
        const DOING: &str = "looking up a function";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let tx = self.transaction(&[MANIFESTS], TransactionMode::ReadOnly, DOING)?;
        let index = tx.store(MANIFESTS)?.index(BY_FUNCTION).map_err(fail)?;
        let only = KeyRange::only(&JsValue::from_str(func_name)).map_err(fail)?;
        let values = index
            .get_all(Some(Query::KeyRange(only)), None)
            .map_err(fail)?
            .await
            .map_err(fail)?;
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
        const DOING: &str = "reading a manifest";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let tx = self.transaction(&[MANIFESTS], TransactionMode::ReadOnly, DOING)?;
        let value = tx
            .store(MANIFESTS)?
            .get(key(id))
            .map_err(fail)?
            .await
            .map_err(fail)?;
        Ok(match value {
            None => Err("its manifest is missing".into()),
            Some(value) => decode_manifest(&value, id).map(Arc::new),
        })
    }

    /// The bytes of `id`, checked against the id: `Ok(Err(reason))` when missing or corrupt.
    pub async fn module_bytes(&self, id: &ModuleId) -> Result<Result<Vec<u8>, String>, WebError> {
        const DOING: &str = "reading module bytes";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let tx = self.transaction(&[MODULES], TransactionMode::ReadOnly, DOING)?;
        let value = tx
            .store(MODULES)?
            .get(key(id))
            .map_err(fail)?
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

    /// Every manifest in the store, in commit order.
    pub async fn all(&self) -> Result<Vec<StoredManifest>, WebError> {
        const DOING: &str = "listing modules";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let tx = self.transaction(&[MANIFESTS], TransactionMode::ReadOnly, DOING)?;
        let values = tx
            .store(MANIFESTS)?
            .get_all(None, None)
            .map_err(fail)?
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

    /// Removes every module (bytes and manifests, in one transaction).
    pub async fn clear(&self) -> Result<(), WebError> {
        const DOING: &str = "clearing the cache";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let tx = self.transaction(&[MODULES, MANIFESTS], TransactionMode::ReadWrite, DOING)?;
        for name in [MODULES, MANIFESTS] {
            tx.store(name)?.clear().map_err(fail)?.await.map_err(fail)?;
        }
        tx.done().await
    }

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
