//! The IndexedDB store: module bytes, manifests, and the func_name index.
//!
//! ```text
//! database <name>, schema version SCHEMA_VERSION
//!   modules    key: ModuleId hex   value: Uint8Array (the wasm bytes)
//!   manifests  key: ModuleId hex   value: { id, record: Uint8Array (Manifest record),
//!                                           functions: [func_name...], committedAt,
//!                                           analyzer: ANALYZER_VERSION that checked it }
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
//! `broken` (or a fallback to a duplicate), never a wrong link. A manifest is checked
//! against its bytes (analyzed) once, before it is committed (`addModule` analyzes,
//! `importBundle` checks), and the value records the analyzer version that did it; a load
//! re-checks only a manifest recorded by another version. Plans read through
//! [`crate::snapshot`], in one read-only transaction.
//!
//! # Upgrades
//! The schema is declarative: opening at [`SCHEMA_VERSION`] creates missing stores and
//! indexes and drops any other store (idb's `DatabaseBuilder`), so a database of any
//! older version converges to this layout; records an older layout left that do not
//! decode count as broken entries. A database of a newer version is refused with
//! `LinkCacheSchemaTooNew`. An upgrade that another connection blocks fails with
//! `LinkCacheUpgradeBlocked` as soon as the browser fires `blocked` (no timer). A
//! connection closes itself when another tab or worker needs a version change, so it
//! never blocks an upgrade, and calls the `on_closed` callback given to
//! [`IdbStore::open`]; its later operations fail with `LinkCacheClosed`.
//!
//! The records are the native host's (`linkcache_core::record`): a bundle from
//! `linkcache export` imports here.

use std::future::IntoFuture;

use futures_util::future::{Either, select};
use idb::{
    Database, DatabaseEvent, Event, Factory, IndexParams, KeyPath, ObjectStoreParams, Request,
    Transaction, TransactionMode,
};
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use linkcache_core::{ANALYZER_VERSION, Manifest, ModuleId};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::IdbTransaction;

use crate::errors::{WebError, storage_error, transaction_aborted};

/// The schema version; bump it (with an upgrade path) when the layout changes.
pub const SCHEMA_VERSION: u32 = 2;

pub(crate) const MODULES: &str = "modules";
pub(crate) const MANIFESTS: &str = "manifests";
const META: &str = "meta";
pub(crate) const BY_FUNCTION: &str = "by_function";
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

pub(crate) fn key(id: &ModuleId) -> JsValue {
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
    /// Opens (creating or upgrading) the database `name`. When another connection blocks
    /// the upgrade, fails with `LinkCacheUpgradeBlocked` at the browser's `blocked` event
    /// (the connection, should it open later, is closed at once). `on_closed` is called
    /// when another tab or worker's upgrade or deletion closes this connection.
    pub async fn open(name: &str, on_closed: Box<dyn FnOnce()>) -> Result<IdbStore, WebError> {
        const DOING: &str = "opening the database";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let factory = Factory::new().map_err(fail)?;
        let mut request = factory.open(name, Some(SCHEMA_VERSION)).map_err(fail)?;
        request.on_upgrade_needed(|event| {
            // An error here aborts the upgrade, and the open fails with it.
            let _ = upgrade(&event);
        });
        let mut signal: Option<Function> = None;
        let blocked = Promise::new(&mut |resolve, _| signal = Some(resolve));
        request.on_blocked(move |_| {
            if let Some(signal) = signal {
                let _ = signal.call0(&JsValue::NULL);
            }
        });
        let opening = Box::pin(request.into_future());
        let mut db = match select(opening, JsFuture::from(blocked)).await {
            Either::Left((db, _)) => db.map_err(fail)?,
            Either::Right((_, opening)) => {
                // Nobody would hold the connection if it opened later, and it would
                // block the next upgrade.
                wasm_bindgen_futures::spawn_local(async move {
                    if let Ok(db) = opening.await {
                        db.close();
                    }
                });
                return Err(WebError::new(
                    "LinkCacheUpgradeBlocked",
                    format!(
                        "opening `{name}` needs a newer database version, and another tab or worker \
                         holds an older linkcache-web's connection open; close or reload it"
                    ),
                ));
            }
        };
        db.on_version_change(move |event| {
            if let Ok(db) = event.database() {
                db.close();
            }
            on_closed();
        });
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

    /// A read-only transaction over `stores`.
    pub(crate) fn read_transaction(
        &self,
        stores: &[&str],
        doing: &'static str,
    ) -> Result<Transaction, WebError> {
        self.db
            .transaction(stores, TransactionMode::ReadOnly)
            .map_err(|e| storage_error(doing, &e))
    }

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
        set(&value, "analyzer", &JsValue::from(ANALYZER_VERSION));
        manifests
            .put(&value, Some(&id))
            .map_err(fail)?
            .await
            .map_err(fail)?;
        tx.done().await?;
        Ok(existing.is_none())
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

/// Decodes a stored manifest value of module `id`; `Err` says why it is broken.
pub fn decode_manifest(value: &JsValue, id: &ModuleId) -> Result<Manifest, String> {
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

/// Brings a database of any older layout to this one (in the upgrade transaction):
/// creates missing stores and the index, drops any other store.
fn upgrade(event: &idb::event::VersionChangeEvent) -> Result<(), idb::Error> {
    let db = event.database()?;
    let existing = db.store_names();
    for name in &existing {
        if ![MODULES, MANIFESTS, META].contains(&name.as_str()) {
            db.delete_object_store(name)?;
        }
    }
    let has = |name: &str| existing.iter().any(|n| n == name);
    for name in [MODULES, META] {
        if !has(name) {
            db.create_object_store(name, ObjectStoreParams::new())?;
        }
    }
    let manifests = if has(MANIFESTS) {
        let upgrading = event
            .target()?
            .transaction()
            .ok_or(idb::Error::EventTargetNotFound)?;
        upgrading.object_store(MANIFESTS)?
    } else {
        db.create_object_store(MANIFESTS, ObjectStoreParams::new())?
    };
    if !manifests.index_names().iter().any(|n| n == BY_FUNCTION) {
        let mut params = IndexParams::new();
        params.multi_entry(true);
        manifests.create_index(BY_FUNCTION, KeyPath::new_single("functions"), Some(params))?;
    }
    Ok(())
}
