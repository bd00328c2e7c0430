//! [`Snapshot`]: the reads of one plan, in one read-only IndexedDB transaction.
//!
//! A plan asks for the candidates of a level of func_names (the `by_function` index
//! answers with whole manifest values, so no manifest is fetched twice), then for the
//! bytes of the planned modules. Every request of a step is issued before the first is
//! awaited, and nothing but these requests is awaited while the transaction is open, so
//! it stays active from the first level to the bytes: the plan reads one consistent
//! snapshot, in which no other tab's `clear()` or commit can land half-way.
//!
//! When the embedder made the plan wait on something else (a `resolveGlobal` that
//! returned a Promise), the browser has committed the transaction by the time the next
//! request is made; the snapshot then opens another one and counts it
//! ([`Snapshot::transactions`]). Records read after such a split may have vanished in
//! between (another tab cleared the cache): [`Snapshot::split`] tells the caller so,
//! so that it plans again instead of calling a module broken.

use std::future::IntoFuture;

use futures_util::future::join_all;
use idb::{KeyRange, Query, Transaction};
use js_sys::Uint8Array;
use linkcache_core::ModuleId;
use wasm_bindgen::{JsCast, JsValue};

use crate::errors::{WebError, storage_error};
use crate::js::prop;
use crate::store::{BY_FUNCTION, IdbStore, MANIFESTS, MODULES, key};

const DOING: &str = "reading the closure of a function";

/// One manifest value as the store lists it, not decoded yet.
pub struct Listed {
    /// The module.
    pub id: ModuleId,
    /// Its commit number.
    pub committed_at: u64,
    /// The stored value: `{id, record, functions, committedAt, analyzer}`.
    pub value: JsValue,
}

/// The reads of one plan. See the module docs.
pub struct Snapshot<'s> {
    store: &'s IdbStore,
    tx: Option<Transaction>,
    transactions: u32,
}

impl<'s> Snapshot<'s> {
    /// A snapshot that opens its transaction at the first read.
    pub fn new(store: &'s IdbStore) -> Snapshot<'s> {
        Snapshot {
            store,
            tx: None,
            transactions: 0,
        }
    }

    /// How many transactions the reads took (1 unless the plan awaited something else).
    pub fn transactions(&self) -> u32 {
        self.transactions
    }

    /// Whether the reads were split over more than one transaction, so that a record
    /// read later may be missing because another tab removed it in between.
    pub fn split(&self) -> bool {
        self.transactions > 1
    }

    /// Issues requests with `issue` in the open transaction; when it has ended (the plan
    /// awaited something else), in a new one.
    fn issue<T>(
        &mut self,
        issue: impl Fn(&Transaction) -> Result<T, idb::Error>,
    ) -> Result<T, WebError> {
        if let Some(tx) = &self.tx
            && let Ok(requests) = issue(tx)
        {
            return Ok(requests);
        }
        let tx = self.store.read_transaction(&[MODULES, MANIFESTS], DOING)?;
        self.transactions += 1;
        let requests = issue(&tx).map_err(|e| storage_error(DOING, &e))?;
        self.tx = Some(tx);
        Ok(requests)
    }

    /// The candidates of each of `funcs`, with their manifest values: every request is
    /// issued before any is awaited.
    pub async fn candidates(&mut self, funcs: &[String]) -> Result<Vec<Vec<Listed>>, WebError> {
        let requests = self.issue(|tx| {
            let index = tx.object_store(MANIFESTS)?.index(BY_FUNCTION)?;
            funcs
                .iter()
                .map(|func| {
                    let only = KeyRange::only(&JsValue::from_str(func))?;
                    Ok(index
                        .get_all(Some(Query::KeyRange(only)), None)?
                        .into_future())
                })
                .collect::<Result<Vec<_>, idb::Error>>()
        })?;
        let mut levels = Vec::with_capacity(funcs.len());
        for values in join_all(requests).await {
            let values = values.map_err(|e| storage_error(DOING, &e))?;
            levels.push(values.into_iter().filter_map(listed).collect());
        }
        Ok(levels)
    }

    /// The manifest value of `id`, if it is stored.
    pub async fn manifest(&mut self, id: &ModuleId) -> Result<Option<JsValue>, WebError> {
        let request =
            self.issue(|tx| Ok(tx.object_store(MANIFESTS)?.get(key(id))?.into_future()))?;
        request.await.map_err(|e| storage_error(DOING, &e))
    }

    /// The stored bytes of each of `ids` (not checked yet), `None` for missing ones.
    pub async fn module_bytes(
        &mut self,
        ids: &[ModuleId],
    ) -> Result<Vec<Option<Uint8Array>>, WebError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let requests = self.issue(|tx| {
            let modules = tx.object_store(MODULES)?;
            ids.iter()
                .map(|id| Ok(modules.get(key(id))?.into_future()))
                .collect::<Result<Vec<_>, idb::Error>>()
        })?;
        let mut bytes = Vec::with_capacity(ids.len());
        for value in join_all(requests).await {
            let value = value.map_err(|e| storage_error(DOING, &e))?;
            bytes.push(value.and_then(|v| v.dyn_into::<Uint8Array>().ok()));
        }
        Ok(bytes)
    }
}

/// A stored manifest value as a [`Listed`]; `None` when it has no readable id.
pub fn listed(value: JsValue) -> Option<Listed> {
    let id = prop(&value, "id").as_string()?.parse().ok()?;
    let committed_at = prop(&value, "committedAt").as_f64().unwrap_or(f64::MAX) as u64;
    Some(Listed {
        id,
        committed_at,
        value,
    })
}

/// The analyzer version a manifest value was checked with (0: none recorded).
pub fn analyzer_of(value: &JsValue) -> u32 {
    prop(value, "analyzer").as_f64().unwrap_or(0.0) as u32
}
