//! [`Snapshot`]: the reads of one plan, in one read-only IndexedDB transaction.
//!
//! A plan asks for the candidates of a level of func_names (the `by_function` index
//! answers with whole manifest values, so no manifest is fetched twice), then for the
//! bytes of the planned modules. Every request of a step is issued before the first is
//! awaited, and nothing but these requests is awaited while the transaction is open, so
//! it stays active from the first level to the bytes: the plan reads one consistent
//! snapshot, in which no other tab's `clear()` or commit can land half-way.
//!
//! A step's requests are issued and collected by one small JavaScript function
//! (`read_batch`): one call into JavaScript and one promise per step, instead of two
//! Rust callbacks and a channel per request (issuing a level of eight func_names that
//! way took over a millisecond in a fresh tab), and one success handler per step, the
//! last request's (IndexedDB answers a transaction's requests in order). A step may also
//! read plan hints (the `plans` store, see [`crate::store`]) and keep bytes read ahead of
//! the plan for [`Snapshot::module_bytes`]. A step may be issued and awaited later
//! ([`Snapshot::issue`]), so that IndexedDB reads while the plan computes.
//!
//! The round trips of a plan, each one step:
//! - a kept plan replayed (`crate::kept`): the target's candidates, its `plans` record
//!   and the index stamp; then the planned modules' bytes (two in all);
//! - a closure its hint predicted under the same stamp: the same first step, then the
//!   manifests the hint lists with the bytes of the modules it chose (two in all);
//! - otherwise: one step per level of the call graph, the first with the hint and the
//!   stamp, then the bytes (with a hint under another stamp, the hint's func_names are
//!   asked for in the second step and the levels it predicted cost nothing more).
//!
//! A first step read for a kept plan that turns out unusable is kept
//! ([`Snapshot::keep_first`]) and answers the planner's first step.
//!
//! When the embedder made the plan wait on something else (a `resolveGlobal` that
//! returned a Promise), the browser has committed the transaction by the time the next
//! request is made; the snapshot then opens another one and counts it
//! ([`Snapshot::transactions`]). Records read after such a split may have vanished in
//! between (another tab cleared the cache): [`Snapshot::split`] tells the caller so,
//! so that it plans again instead of calling a module broken.

use std::collections::{BTreeMap, HashMap};
use std::future::IntoFuture;

use idb::Transaction;
use js_sys::{Array, Promise, Uint8Array};
use linkcache_core::{GlobalDef, GlobalOutcome, KeptPlan, ModuleId};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::IdbTransaction;

use crate::errors::{WebError, from_dom_exception, storage_error};
use crate::js::{describe, prop};
use crate::store::{BY_FUNCTION, IdbStore, MANIFESTS, MODULES, PLANS, key};

const DOING: &str = "reading the closure of a function";

#[wasm_bindgen(inline_js = r#"
export function read_batch(tx, names, funcs, ids, manifestIds, plans) {
  const [manifests, byFunction, modules, hints] = names;
  const requests = [];
  if (funcs.length) {
    const index = tx.objectStore(manifests).index(byFunction);
    for (const f of funcs) requests.push(index.getAll(IDBKeyRange.only(f)));
  }
  if (ids.length) {
    const store = tx.objectStore(modules);
    for (const id of ids) requests.push(store.get(id));
  }
  if (manifestIds.length) {
    const store = tx.objectStore(manifests);
    for (const id of manifestIds) requests.push(store.get(id));
  }
  if (plans.length) {
    const store = tx.objectStore(hints);
    for (const k of plans) requests.push(store.get(k));
  }
  // A transaction runs its requests in the order they were made and fires their events in
  // that order, so the last one's success means that every one before it succeeded: one
  // success handler for the step (an error handler on each, which runs only on failure).
  return new Promise((resolve, reject) => {
    const fail = (event) => reject(event.target.error);
    for (const request of requests) request.onerror = fail;
    requests[requests.length - 1].onsuccess = () => resolve(requests.map((request) => request.result));
  });
}
"#)]
extern "C" {
    /// Issues, in `tx`, a `by_function` lookup per func_name of `funcs`, a read of the
    /// bytes of each module of `ids`, of the manifest value of each of `manifest_ids`
    /// and of the `plans` record of each key of `plans`, all before any answer; resolves
    /// to their results in that order. Throws at once when `tx` is no longer active.
    #[wasm_bindgen(catch)]
    fn read_batch(
        tx: &IdbTransaction,
        names: &Array,
        funcs: &Array,
        ids: &Array,
        manifest_ids: &Array,
        plans: &Array,
    ) -> Result<Promise, JsValue>;
}

/// One manifest value as the store lists it, not decoded yet.
pub struct Listed {
    /// The module.
    pub id: ModuleId,
    /// Its commit number.
    pub committed_at: u64,
    /// The stored value: `{id, record, functions, committedAt, analyzer, sha256}`.
    pub value: JsValue,
}

/// A plan hint as stored: the func_names the last complete plan of a target read (the
/// target itself left out), the candidates the index listed for each, the modules it
/// chose, and the index stamp it was read under (see [`crate::store`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hint {
    /// Sorted func_names.
    pub funcs: Vec<String>,
    /// The index's candidates of each of `funcs`, in the same order.
    pub lists: Vec<Vec<ModuleId>>,
    /// Modules, in plan order.
    pub modules: Vec<ModuleId>,
    /// The index stamp the lists were read under.
    pub stamp: Option<f64>,
}

/// What one step read.
#[derive(Default)]
pub struct Batch {
    /// The candidates of each func_name asked for, in order.
    pub candidates: Vec<Vec<Listed>>,
    /// The bytes of each module asked for (not checked yet), `None` when missing.
    pub bytes: Vec<Option<Uint8Array>>,
    /// The manifest value of each module asked for, `None` when missing.
    pub manifests: Vec<Option<JsValue>>,
    /// The `plans` record of each key asked for (`undefined` when missing).
    pub plans: Vec<JsValue>,
}

/// The embedder's decision on one global definition a plan asked about.
pub type Decision = (ModuleId, GlobalDef, GlobalOutcome);

/// What the closure walk of a plan read: every func_name whose candidates it asked for
/// and the candidates the index listed, whether it stopped at func_names bound in this
/// tab already (then the closure it saw is not the whole closure), the index stamp, and
/// the hint it started from.
#[derive(Default)]
pub struct ClosureRead {
    /// func_names asked for, with the modules the index listed for each.
    pub funcs: BTreeMap<String, Vec<ModuleId>>,
    /// The index stamp read with the target's candidates.
    pub stamp: Option<f64>,
    /// Some callee was bound in this tab already, so it was not read.
    pub partial: bool,
    /// The hint read for the target, if there was one.
    pub hint: Option<Hint>,
    /// The kept plan record stored with that hint, as read (see `crate::kept`).
    pub kept_record: Option<Vec<u8>>,
    /// The plan to keep with the next hint, when this one was made for a tab that had
    /// loaded nothing (see `crate::kept`), with the embedder's decision on every
    /// global it asked about.
    pub keep: Option<(KeptPlan, Vec<Decision>)>,
    /// Decisions on globals a kept plan's check asked the embedder already, for the
    /// planner should that plan not be used.
    pub decided: Vec<(GlobalDef, GlobalOutcome)>,
}

/// The requests of one step, issued and not awaited yet ([`Snapshot::issue`]).
pub struct Issued {
    promise: Option<Promise>,
    /// How many func_names, bytes, manifests and plans records were asked for.
    shape: [usize; 4],
}

impl Issued {
    /// Waits for every request of the step: what it read.
    pub async fn batch(self) -> Result<Batch, WebError> {
        let Some(promise) = self.promise else {
            return Ok(Batch::default());
        };
        let [funcs, ids, manifest_ids, plans] = self.shape;
        let results: Array = JsFuture::from(promise)
            .await
            .map_err(|e| read_error(&e))?
            .unchecked_into();
        let mut results = results.iter();
        let mut batch = Batch::default();
        for _ in 0..funcs {
            let values = results.next().unwrap_or(JsValue::UNDEFINED);
            let values = values
                .dyn_into::<Array>()
                .map(|a| a.to_vec())
                .unwrap_or_default();
            batch
                .candidates
                .push(values.into_iter().filter_map(listed).collect());
        }
        for _ in 0..ids {
            let value = results.next().unwrap_or(JsValue::UNDEFINED);
            batch.bytes.push(value.dyn_into::<Uint8Array>().ok());
        }
        for _ in 0..manifest_ids {
            let value = results.next().unwrap_or(JsValue::UNDEFINED);
            batch
                .manifests
                .push(Some(value).filter(|v| !v.is_undefined()));
        }
        for _ in 0..plans {
            batch
                .plans
                .push(results.next().unwrap_or(JsValue::UNDEFINED));
        }
        Ok(batch)
    }
}

/// The reads of one plan. See the module docs.
pub struct Snapshot<'s> {
    store: &'s IdbStore,
    tx: Option<IdbTransaction>,
    transactions: u32,
    reads: u32,
    /// Bytes read ahead (from a plan hint), by module, in the transaction of the plan.
    ahead: HashMap<ModuleId, Option<Uint8Array>>,
    /// The first step's answers when a kept plan's replay read them (the target's
    /// candidates, its `plans` record and the index stamp), for the planner should the
    /// kept plan not be used: see [`Snapshot::take_first`].
    first: Option<(String, Batch)>,
    /// What the closure walk read (filled by the planner's host).
    pub closure: ClosureRead,
}

impl<'s> Snapshot<'s> {
    /// A snapshot that opens its transaction at the first read.
    pub fn new(store: &'s IdbStore) -> Snapshot<'s> {
        Snapshot {
            store,
            tx: None,
            transactions: 0,
            reads: 0,
            ahead: HashMap::new(),
            first: None,
            closure: ClosureRead::default(),
        }
    }

    /// How many transactions the reads took (1 unless the plan awaited something else).
    pub fn transactions(&self) -> u32 {
        self.transactions
    }

    /// How many steps (round trips to IndexedDB) the reads took.
    pub fn reads(&self) -> u32 {
        self.reads
    }

    /// Whether the reads were split over more than one transaction, so that a record
    /// read later may be missing because another tab removed it in between.
    pub fn split(&self) -> bool {
        self.transactions > 1
    }

    /// A new transaction (the first, or because the last one ended: the plan awaited
    /// something else).
    fn renew(&mut self) -> Result<IdbTransaction, WebError> {
        let tx: IdbTransaction = self
            .store
            .read_transaction(&[MODULES, MANIFESTS, PLANS], DOING)?
            .into();
        self.transactions += 1;
        self.tx = Some(tx.clone());
        Ok(tx)
    }

    /// One step: every request issued at once in the open transaction (in a new one
    /// when it has ended), then awaited together.
    pub async fn read(
        &mut self,
        funcs: &[String],
        ids: &[ModuleId],
        manifest_ids: &[ModuleId],
        plans: &[JsValue],
    ) -> Result<Batch, WebError> {
        self.issue(funcs, ids, manifest_ids, plans)?.batch().await
    }

    /// The first half of [`Snapshot::read`]: issues every request of a step now (so that
    /// IndexedDB works while the caller does), to be awaited with [`Issued::batch`].
    pub fn issue(
        &mut self,
        funcs: &[String],
        ids: &[ModuleId],
        manifest_ids: &[ModuleId],
        plans: &[JsValue],
    ) -> Result<Issued, WebError> {
        let shape = [funcs.len(), ids.len(), manifest_ids.len(), plans.len()];
        if shape == [0; 4] {
            return Ok(Issued {
                promise: None,
                shape,
            });
        }
        let names: Array = [MANIFESTS, BY_FUNCTION, MODULES, PLANS]
            .into_iter()
            .map(JsValue::from_str)
            .collect();
        self.reads += 1;
        let strings = |v: &[String]| -> Array { v.iter().map(|s| JsValue::from_str(s)).collect() };
        let funcs_js = strings(funcs);
        let plans_js: Array = plans.iter().collect();
        let ids_js: Array = ids.iter().map(key).collect();
        let manifests_js: Array = manifest_ids.iter().map(key).collect();
        let issue = |tx: &IdbTransaction| {
            read_batch(tx, &names, &funcs_js, &ids_js, &manifests_js, &plans_js)
        };
        let issued = match &self.tx {
            Some(tx) => issue(tx).ok(),
            None => None,
        };
        let promise = match issued {
            Some(promise) => promise,
            None => {
                let tx = self.renew()?;
                issue(&tx).map_err(|e| read_error(&e))?
            }
        };
        Ok(Issued {
            promise: Some(promise),
            shape,
        })
    }

    /// The candidates of each of `funcs`, with their manifest values: every request is
    /// issued before any is awaited.
    pub async fn candidates(&mut self, funcs: &[String]) -> Result<Vec<Vec<Listed>>, WebError> {
        Ok(self.read(funcs, &[], &[], &[]).await?.candidates)
    }

    /// Keeps what the first step of `func_name`'s plan read (its candidates, then its
    /// `plans` record and the stamp), for the planner.
    pub fn keep_first(&mut self, func_name: &str, batch: Batch) {
        self.first = Some((func_name.to_owned(), batch));
    }

    /// The first step kept for `func_name` by [`Snapshot::keep_first`], once.
    pub fn take_first(&mut self, func_name: &str) -> Option<Batch> {
        match self.first.take() {
            Some((func, batch)) if func == func_name => Some(batch),
            _ => None,
        }
    }

    /// Whether bytes of `id` were read ahead already.
    pub fn has_ahead(&self, id: &ModuleId) -> bool {
        self.ahead.contains_key(id)
    }

    /// Keeps bytes read ahead of the plan for [`Snapshot::module_bytes`].
    pub fn keep_ahead(&mut self, ids: &[ModuleId], bytes: Vec<Option<Uint8Array>>) {
        self.ahead.extend(ids.iter().copied().zip(bytes));
    }

    /// The manifest value of `id`, if it is stored.
    pub async fn manifest(&mut self, id: &ModuleId) -> Result<Option<JsValue>, WebError> {
        let get = |tx: &IdbTransaction| {
            Transaction::from(tx.clone())
                .object_store(MANIFESTS)
                .and_then(|store| store.get(key(id)))
        };
        let request = match self.tx.as_ref().map(get) {
            Some(Ok(request)) => request,
            _ => {
                let tx = self.renew()?;
                get(&tx).map_err(|e| storage_error(DOING, &e))?
            }
        };
        self.reads += 1;
        request
            .into_future()
            .await
            .map_err(|e| storage_error(DOING, &e))
    }

    /// The stored bytes of each of `ids` (not checked yet), `None` for missing ones:
    /// those read ahead, and the others in one step.
    pub async fn module_bytes(
        &mut self,
        ids: &[ModuleId],
    ) -> Result<Vec<Option<Uint8Array>>, WebError> {
        let missing: Vec<ModuleId> = ids
            .iter()
            .filter(|id| !self.ahead.contains_key(id))
            .copied()
            .collect();
        let read = self.read(&[], &missing, &[], &[]).await?.bytes;
        self.ahead.extend(missing.into_iter().zip(read));
        Ok(ids
            .iter()
            .map(|id| self.ahead.remove(id).flatten())
            .collect())
    }
}

/// The error of a failed step: the request's DOMException, or what was thrown.
fn read_error(error: &JsValue) -> WebError {
    let name = prop(error, "name").as_string();
    let message = prop(error, "message").as_string().unwrap_or_default();
    match name {
        Some(name) if error.is_instance_of::<web_sys::DomException>() => {
            from_dom_exception(DOING, &name, &message).with_cause(error.clone())
        }
        _ => WebError::new("LinkCacheStorage", format!("{DOING}: {}", describe(error)))
            .with_cause(error.clone()),
    }
}

/// A stored plan hint; `None` when there is none or it does not read.
pub fn hint_of(value: &JsValue) -> Option<Hint> {
    if !value.is_object() {
        return None;
    }
    fn strings(value: &JsValue) -> Option<Vec<String>> {
        value
            .dyn_ref::<Array>()?
            .iter()
            .map(|v| v.as_string())
            .collect()
    }
    fn ids(value: &JsValue) -> Option<Vec<ModuleId>> {
        strings(value)?.iter().map(|id| id.parse().ok()).collect()
    }
    let funcs = strings(&prop(value, "funcs"))?;
    let lists: Vec<Vec<ModuleId>> = prop(value, "lists")
        .dyn_into::<Array>()
        .ok()?
        .iter()
        .map(|list| ids(&list))
        .collect::<Option<_>>()?;
    if lists.len() != funcs.len() {
        return None;
    }
    Some(Hint {
        funcs,
        lists,
        modules: ids(&prop(value, "modules"))?,
        stamp: prop(value, "stamp").as_f64(),
    })
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
