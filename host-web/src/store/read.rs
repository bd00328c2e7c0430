//! Reading modules back, each checked: a module's bytes against its id
//! ([`IdbStore::module_bytes`]), every manifest in commit order ([`IdbStore::all`]), and
//! [`decode_manifest`], which plans and gc use too. (Plans read through
//! [`crate::snapshot`].) Nothing here writes.

use std::future::IntoFuture;

use idb::TransactionMode;
use js_sys::Uint8Array;
use linkcache_core::{Manifest, ModuleId};
use wasm_bindgen::{JsCast, JsValue};

use super::{IdbStore, MANIFESTS, MODULES, StoredManifest, USED, get, key};
use crate::errors::{WebError, storage_error};

impl IdbStore {
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
