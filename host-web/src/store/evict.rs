//! Removing modules from the database: the store's side of gc, [`IdbStore::gc`] (the
//! least recently used modules, each whole, in one transaction; "the module docs" its
//! doc points to are "Use times and gc" in [`crate::store`]), and [`IdbStore::clear`].
//! The JavaScript API, `gc({ maxBytes })` and the `evicted` message to other tabs, is
//! [`crate::gc`]'s.

use std::future::IntoFuture;

use futures_util::future::join_all;
use idb::TransactionMode;
use js_sys::{Array, Uint8Array};
use linkcache_core::ModuleId;
use wasm_bindgen::{JsCast, JsValue};

use super::{
    GcReport, IdbStore, MANIFESTS, MODULES, PLANS, USED, decode_manifest, fresh_stamp, get, key,
    stamp_key,
};
use crate::errors::{WebError, storage_error};

impl IdbStore {
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
}
