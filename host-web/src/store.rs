//! The IndexedDB store: module bytes, manifests, and the func_name index.
//!
//! ```text
//! database <name>, schema version SCHEMA_VERSION
//!   modules    key: ModuleId hex   value: Uint8Array (the wasm bytes)
//!   manifests  key: ModuleId hex   value: { id, record: Uint8Array (Manifest record),
//!                                           functions: [func_name...], committedAt,
//!                                           analyzer: ANALYZER_VERSION that checked it,
//!                                           sha256: Uint8Array (SHA-256 of the bytes,
//!                                           when the browser has WebCrypto) }
//!              index by_function on `functions`, multiEntry: func_name -> manifests
//!   plans      key: func_name       value: { funcs: [func_name...], lists: [[ModuleId hex...]...],
//!                                           modules: [ModuleId hex...], stamp,
//!                                           kept?: Uint8Array }
//!                                           what the last complete plan of a target read
//!                                           (each func_name of its closure and the
//!                                           candidates the index listed) and the modules
//!                                           it chose, under index stamp `stamp`; `kept`:
//!                                           that plan itself when a tab that had loaded
//!                                           nothing made it (an `LCKP` record, see
//!                                           [`crate::kept`])
//!              key: 0 (a number)    value: the index stamp, a fresh random number written
//!                                           by every commit and every gc that evicts
//!   used       key: ModuleId hex   value: { id, use: the origin-wide use number of its
//!                                           last use, at: its time (ms since the epoch) }
//!   meta       key: "clock"        value: the last committedAt handed out
//!              key: "uses"         value: the last use number handed out
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
//! entry, and so are bytes whose BLAKE3 is not their key. (A large module is checked
//! against the SHA-256 its commit recorded beside the manifest, after BLAKE3 bound the
//! bytes to their key: the browser's native SHA-256 is faster than this package's
//! BLAKE3, and `WebAssembly.compile` decodes the bytes meanwhile; see [`crate::load`].)
//! Both become misses with cause `broken` (or a fallback to a duplicate), never a wrong
//! link. A manifest is checked
//! against its bytes (analyzed) once, before it is committed (`addModule` analyzes,
//! `importBundle` checks), and the value records the analyzer version that did it; a load
//! re-checks only a manifest recorded by another version. Plans read through
//! [`crate::snapshot`], in one read-only transaction.
//!
//! # Plan hints
//! A record in `plans` tells the next tab which func_names and modules the last complete
//! plan of that target read, so that it can ask for them all at once instead of one
//! level of the call graph per round trip. Every transaction that changes the
//! `by_function` index (a commit, a gc that evicts) writes a new index stamp in the same
//! transaction, and `clear()` empties the store. So a plan that reads the stamp with the
//! target's candidates and finds the hint's stamp knows that the index still lists
//! exactly the hint's candidates for the hint's func_names: it reads only their
//! manifests and bytes, by key. With another stamp the hint is only a prefetch: the
//! plan asks the index for the hint's func_names, all in one batch. Either way the
//! planner decides from manifests and bytes read in the plan's own transaction; a hint
//! never names a module that the plan then uses without reading it. A hint is written in
//! a transaction of its own, only when it or its kept plan changed. A kept plan is
//! used only under its own stamp, for a tab that has loaded nothing, after the
//! embedder's decisions on its globals are asked again ([`crate::kept`]); its modules'
//! bytes are read and checked like any plan's.
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
//! # Use times and gc
//! A commit records a use of its module, and so does a tab that binds a module (at most
//! once in ten minutes per module and tab, in a small read-write transaction of its own
//! that the target does not wait for; a failure to record is ignored, the record is
//! advisory). Uses are numbered by a counter in `meta`, so every tab agrees on their
//! order even within a millisecond. [`IdbStore::gc`] evicts the least recently used
//! modules whole, in one read-write transaction (bytes, manifest, its `by_function`
//! entries with it, use record): a reader sees a module or none of it, and a commit
//! racing the gc lands before or after it, never in between. Modules without a use
//! record (written by schema version 2) count as used before every other; a use record
//! without its module (a use recorded racing an eviction) goes at the next gc.
//!
//! The records are the native host's (`linkcache_core::record`): a bundle from
//! `linkcache export` imports here.

use std::cell::RefCell;
use std::future::IntoFuture;
use std::rc::Rc;

use futures_util::future::{Either, join_all, select};
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
pub const SCHEMA_VERSION: u32 = 4;

pub(crate) const MODULES: &str = "modules";
pub(crate) const MANIFESTS: &str = "manifests";
const META: &str = "meta";
pub(crate) const USED: &str = "used";
pub(crate) const PLANS: &str = "plans";

/// The key of the index stamp in `plans` (a number: no func_name, which is a string).
pub(crate) fn stamp_key() -> JsValue {
    JsValue::from_f64(0.0)
}

/// A new index stamp: unique in practice (time and a random fraction).
fn fresh_stamp() -> JsValue {
    JsValue::from_f64(js_sys::Date::now() + js_sys::Math::random())
}
pub(crate) const BY_FUNCTION: &str = "by_function";
const CLOCK: &str = "clock";
const USES: &str = "uses";

/// One manifest as the store lists it.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    /// The module.
    pub id: ModuleId,
    /// Its manifest, or why it cannot be read.
    pub manifest: Result<Manifest, String>,
    /// Its commit number.
    pub committed_at: u64,
    /// When it was last used (ms since the epoch), if that was recorded.
    pub used_at: Option<f64>,
}

/// What [`IdbStore::gc`] did.
#[derive(Clone, Debug, Default)]
pub struct GcReport {
    /// Modules removed, least recently used first.
    pub evicted: Vec<ModuleId>,
    /// Bytes of records freed.
    pub freed: u64,
    /// Bytes of records the cache holds afterwards.
    pub remaining: u64,
}

/// A linkcache database in IndexedDB: one connection.
pub struct IdbStore {
    db: Database,
    /// Advisory writes still running (use records, plan hints): `close()` aborts them,
    /// so that a closed cache never holds up another tab's upgrade.
    advisory: Rc<RefCell<Vec<IdbTransaction>>>,
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
        Ok(IdbStore {
            db,
            advisory: Rc::default(),
        })
    }

    /// Closes the connection (once its running transactions finish; advisory writes,
    /// use records and plan hints, are aborted instead), so that another tab can upgrade
    /// or delete the database. Later operations fail with `LinkCacheClosed`.
    pub fn close(&self) {
        for tx in self.advisory.borrow_mut().drain(..) {
            // Finished already: nothing to abort.
            let _ = tx.abort();
        }
        self.db.close();
    }

    /// Keeps an advisory write's transaction for `close()` until `write` finishes.
    fn advisory<T, W: Future<Output = Result<T, WebError>>>(
        &self,
        raw: IdbTransaction,
        write: W,
    ) -> impl Future<Output = Result<T, WebError>> + use<T, W> {
        self.advisory.borrow_mut().push(raw.clone());
        let advisory = Rc::clone(&self.advisory);
        async move {
            let result = write.await;
            advisory
                .borrow_mut()
                .retain(|tx| !js_sys::Object::is(tx, &raw));
            result
        }
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

    /// Evicts least recently used modules until the records of the cache take at most
    /// `max_bytes` (wasm bytes, manifest records and function names, as this store
    /// counts them; the browser's own accounting is `navigator.storage.estimate()`).
    /// Each module goes whole, all in one transaction. See the module docs.
    pub async fn gc(&self, max_bytes: f64) -> Result<GcReport, WebError> {
        const DOING: &str = "collecting garbage";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let tx = self.transaction(
            &[MODULES, MANIFESTS, USED, PLANS],
            TransactionMode::ReadWrite,
            DOING,
        )?;
        let manifests = tx.store(MANIFESTS)?;
        let used = tx.store(USED)?;
        let (values, uses) = futures_util::future::join(
            manifests.get_all(None, None).map_err(fail)?.into_future(),
            used.get_all(None, None).map_err(fail)?.into_future(),
        )
        .await;
        let (values, uses) = (values.map_err(fail)?, uses.map_err(fail)?);
        let last_use: std::collections::HashMap<String, f64> = uses
            .iter()
            .filter_map(|u| Some((get(u, "id").as_string()?, get(u, "use").as_f64()?)))
            .collect();
        // (last use, commit number, id, size) of every module.
        let mut modules = Vec::with_capacity(values.len());
        let mut unsized_modules = Vec::new();
        for value in &values {
            let Some(hex) = get(value, "id").as_string() else {
                continue;
            };
            let Ok(id) = hex.parse::<ModuleId>() else {
                continue;
            };
            let record = get(value, "record")
                .dyn_into::<Uint8Array>()
                .map(|r| u64::from(r.length()))
                .unwrap_or(0);
            let names: u64 = get(value, "functions")
                .dyn_into::<Array>()
                .map(|a| {
                    a.iter()
                        .filter_map(|n| n.as_string())
                        .map(|n| n.len() as u64)
                        .sum()
                })
                .unwrap_or(0);
            let wasm = decode_manifest(value, &id).ok().map(|m| m.byte_len);
            if wasm.is_none() {
                unsized_modules.push(modules.len());
            }
            modules.push((
                last_use.get(&hex).copied().unwrap_or(0.0),
                get(value, "committedAt").as_f64().unwrap_or(0.0),
                id,
                record + names + wasm.unwrap_or(0),
            ));
        }
        // A module whose manifest is broken: its stored bytes tell its size.
        let store = tx.store(MODULES)?;
        let requests = unsized_modules
            .iter()
            .map(|&i| Ok(store.get(key(&modules[i].2))?.into_future()))
            .collect::<Result<Vec<_>, idb::Error>>()
            .map_err(fail)?;
        for (&i, bytes) in unsized_modules.iter().zip(join_all(requests).await) {
            if let Some(bytes) = bytes
                .map_err(fail)?
                .and_then(|b| b.dyn_into::<Uint8Array>().ok())
            {
                modules[i].3 += u64::from(bytes.length());
            }
        }
        modules.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(a.1.total_cmp(&b.1))
                .then(a.2.cmp(&b.2))
        });
        let mut report = GcReport {
            remaining: modules.iter().map(|m| m.3).sum(),
            ..GcReport::default()
        };
        let mut deletes = Vec::new();
        // Use records of modules that are gone (a tab recorded a use racing an eviction).
        let stored: std::collections::HashSet<String> =
            modules.iter().map(|m| m.2.to_string()).collect();
        for hex in last_use.keys().filter(|hex| !stored.contains(*hex)) {
            deletes.push(
                used.delete(JsValue::from_str(hex))
                    .map_err(fail)?
                    .into_future(),
            );
        }
        for (_, _, id, size) in &modules {
            if report.remaining as f64 <= max_bytes {
                break;
            }
            let k = key(id);
            for name in [MODULES, MANIFESTS, USED] {
                deletes.push(
                    tx.store(name)?
                        .delete(k.clone())
                        .map_err(fail)?
                        .into_future(),
                );
            }
            report.evicted.push(*id);
            report.freed += size;
            report.remaining -= size;
        }
        let stamp = if report.evicted.is_empty() {
            None
        } else {
            // The index changes: plan hints read under the old stamp are stale.
            Some(
                tx.store(PLANS)?
                    .put(&fresh_stamp(), Some(&stamp_key()))
                    .map_err(fail)?
                    .into_future(),
            )
        };
        for deleted in join_all(deletes).await {
            deleted.map_err(fail)?;
        }
        if let Some(stamp) = stamp {
            stamp.await.map_err(fail)?;
        }
        tx.done().await?;
        Ok(report)
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
        let tx = self.transaction(&[MANIFESTS, USED], TransactionMode::ReadOnly, DOING)?;
        let (values, uses) = futures_util::future::join(
            tx.store(MANIFESTS)?
                .get_all(None, None)
                .map_err(fail)?
                .into_future(),
            tx.store(USED)?
                .get_all(None, None)
                .map_err(fail)?
                .into_future(),
        )
        .await;
        let (values, uses) = (values.map_err(fail)?, uses.map_err(fail)?);
        let used_at: std::collections::HashMap<String, f64> = uses
            .iter()
            .filter_map(|u| Some((get(u, "id").as_string()?, get(u, "at").as_f64()?)))
            .collect();
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
                used_at: used_at.get(&id.to_string()).copied(),
            });
        }
        all.sort_by_key(|m| (m.committed_at, m.id));
        Ok(all)
    }

    /// Removes every module (bytes, manifests, use records and plan hints, in one
    /// transaction).
    pub async fn clear(&self) -> Result<(), WebError> {
        const DOING: &str = "clearing the cache";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let tx = self.transaction(
            &[MODULES, MANIFESTS, USED, PLANS],
            TransactionMode::ReadWrite,
            DOING,
        )?;
        for name in [MODULES, MANIFESTS, USED, PLANS] {
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

/// The next value of the counter `name` in the meta store (1 the first time), stored.
async fn next_counter(meta: &idb::ObjectStore, name: &str) -> Result<f64, idb::Error> {
    let previous = meta.get(JsValue::from_str(name))?.await?;
    put_next_counter(meta, name, previous).await
}

/// Stores and returns the value after `previous`, which was read from the counter `name`
/// in this transaction.
async fn put_next_counter(
    meta: &idb::ObjectStore,
    name: &str,
    previous: Option<JsValue>,
) -> Result<f64, idb::Error> {
    let next = previous.and_then(|v| v.as_f64()).unwrap_or(0.0) + 1.0;
    meta.put(&JsValue::from_f64(next), Some(&JsValue::from_str(name)))?
        .await?;
    Ok(next)
}

/// The `used` record of a module: `{id, use, at}`.
fn use_record(id: &JsValue, uses: f64, at: f64) -> Object {
    let value = Object::new();
    set(&value, "id", id);
    set(&value, "use", &JsValue::from_f64(uses));
    set(&value, "at", &JsValue::from_f64(at));
    value
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
        if ![MODULES, MANIFESTS, META, USED, PLANS].contains(&name.as_str()) {
            db.delete_object_store(name)?;
        }
    }
    let has = |name: &str| existing.iter().any(|n| n == name);
    for name in [MODULES, META, USED, PLANS] {
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
