//! Loading a plan: compile the planned modules concurrently, instantiate them in plan
//! order, sharing both with every other target of this tab.
//!
//! - The load waits once for every compile it needs (`settle_all`), then makes the
//!   instances one after the other without waiting again (`new WebAssembly.Instance`).
//!   Waiting for each compile and each `WebAssembly.instantiate` made every module a task
//!   of its own and a poll of the target's future: a 10-module closure's instances came
//!   over 5–9 ms in a fresh tab, while the compiles had finished on the browser's threads
//!   within about 1 ms of their start. Now they come within 1–2 ms, with 9 fewer calls
//!   into JavaScript; the target's time moved less than this machine's spread (session
//!   26; BENCHMARKS.md).
//! - The bytes of every planned module this tab has not compiled are read in one batch,
//!   in the plan's own transaction ([`Snapshot::module_bytes`]), and handed to
//!   `WebAssembly.compile` at once, so the browser compiles them all in parallel. They
//!   go from IndexedDB to the compiler as they are, never through this package's memory,
//!   unless BLAKE3 needs them there.
//! - No module is instantiated before its bytes are checked against its id. Bytes of
//!   [`WEBCRYPTO_FROM`] or more whose commit recorded their SHA-256 are hashed by the
//!   browser's WebCrypto while they compile (Chromium 156 hashes within the `digest`
//!   call, on the main thread, but its native SHA-256 is two to five times faster than
//!   this package's BLAKE3: 0.5–2 ms against 1.2–6.6 ms for sql.js's 688 KB, session
//!   23); the compile's promise resolves only when the digest matches. Other bytes are
//!   hashed here with BLAKE3 (the ModuleId) once their compile has started. Only a
//!   manifest recorded by another analyzer version is checked against its bytes as well,
//!   before its compile starts (through [`crate::analyzer`], which the package may have
//!   to load first).
//! - A compile is kept as its promise from the moment it starts: a concurrent target that
//!   needs the same module awaits the same promise instead of compiling again.
//! - An instance is kept with the import bindings it was made with: a plan that binds the
//!   module's imports the same way (a concurrent target, or this target planning again
//!   after another one overtook it) reuses it instead of instantiating again.

use std::collections::HashMap;

use js_sys::{Array, Object, Promise, Uint8Array};
use linkcache_core::{LoadPlan, ModuleId};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::cache::{LinkCache, SharedInstance};
use crate::errors::WebError;
use crate::js::{
    compile_checked, describe, discard, has_webcrypto, instantiate_now, prop, settle_all,
};
use crate::snapshot::Snapshot;

/// Bytes at least this long are checked with WebCrypto's SHA-256, while they compile, when
/// their commit recorded one. Below it BLAKE3 here takes microseconds and no promise.
pub(crate) const WEBCRYPTO_FROM: u32 = 64 * 1024;

/// A compile's outcome: the `WebAssembly.Module`, or why it failed.
type Settled = Result<JsValue, JsValue>;

/// One outcome of `settle_all`: `{ok: true, value}` or `{ok: false, error}`.
fn settled_outcome(outcome: &JsValue) -> Settled {
    if prop(outcome, "ok").is_truthy() {
        Ok(prop(outcome, "value"))
    } else {
        Err(prop(outcome, "error"))
    }
}

/// Why a plan could not be instantiated.
pub(crate) enum LoadError {
    /// This module cannot be loaded: mark it broken and plan again.
    Broken(ModuleId, String),
    /// A record read after the plan's transaction was split is gone (another tab removed
    /// it in between): plan again, blaming no module.
    Vanished,
    /// IndexedDB failed, or the analyzer could not be loaded: give up this target.
    Storage(WebError),
}

/// What one load did.
#[derive(Default)]
pub(crate) struct LoadReport {
    /// Modules this load instantiated.
    pub loaded: Vec<ModuleId>,
    /// Modules this load compiled from IndexedDB bytes.
    pub compiled: Vec<ModuleId>,
}

impl LinkCache {
    /// Compiles (or reuses) and instantiates (or reuses) every module of `plan`, in order.
    /// Returns the plan's instances' exports, or the first module that failed and why.
    pub(crate) async fn load(
        &self,
        plan: &LoadPlan,
        snapshot: &mut Snapshot<'_>,
        report: &mut LoadReport,
    ) -> Result<HashMap<ModuleId, Object>, LoadError> {
        self.start_compiles(plan, snapshot, report).await?;
        crate::js::mark("load: compiles started");
        let mut modules = self.settle_compiles(plan).await;
        crate::js::mark("load: compiles settled");
        let mut fresh: HashMap<ModuleId, Object> = HashMap::new();
        for planned in &plan.modules {
            let id = planned.module;
            // Another target of this tab committed this module while this plan waited:
            // its instance is the tab's one instance of the module.
            let committed = self.inner.borrow().instances.get(&id).cloned();
            if let Some(exports) = committed {
                fresh.insert(id, exports);
                continue;
            }
            let shared = {
                let inner = self.inner.borrow();
                inner
                    .pending
                    .get(&id)
                    .filter(|instance| instance.imports == planned.imports)
                    .map(|instance| instance.instance.clone())
            };
            let instance = match shared {
                Some(instance) => JsFuture::from(instance)
                    .await
                    .map_err(|e| self.broken(id, &e))?,
                None => {
                    // No compile when the compiles settled: another target of this tab
                    // found it broken and forgot it, or the tab forgot its state. Plan
                    // again.
                    let Some(module) = modules.remove(&id) else {
                        return Err(LoadError::Vanished);
                    };
                    report.loaded.push(id);
                    match self
                        .instantiate(planned, &fresh, module)?
                        .dyn_into::<Promise>()
                    {
                        // Instantiated the asynchronous way (see `instantiate`).
                        Ok(promise) => JsFuture::from(promise)
                            .await
                            .map_err(|e| self.broken(id, &e))?,
                        Err(instance) => instance,
                    }
                }
            };
            fresh.insert(id, prop(&instance, "exports").unchecked_into());
            crate::js::mark("load: instantiated");
        }
        Ok(fresh)
    }

    /// Waits for the compile of every planned module this tab holds, all at once: one
    /// wake-up for the whole plan (a wake-up per module cost a task and a poll of this
    /// future each, and the instances came one per task; session 26's trace). The
    /// compiles of modules whose instance the load will reuse are settled already, or
    /// about to be for the target that makes it. Each module's outcome, by module.
    async fn settle_compiles(&self, plan: &LoadPlan) -> HashMap<ModuleId, Settled> {
        let (ids, promises): (Vec<ModuleId>, Array) = {
            let inner = self.inner.borrow();
            plan.modules
                .iter()
                .filter_map(|planned| {
                    let compile = inner.compiled.get(&planned.module)?;
                    Some((planned.module, JsValue::from(compile)))
                })
                .unzip()
        };
        if ids.is_empty() {
            return HashMap::new();
        }
        // settle_all never rejects.
        let settled: Array = JsFuture::from(settle_all(&promises))
            .await
            .map(JsCast::unchecked_into)
            .unwrap_or_default();
        ids.into_iter()
            .zip(settled.iter())
            .map(|(id, outcome)| (id, settled_outcome(&outcome)))
            .collect()
    }

    /// `id` cannot be loaded because of `error` (its compile's or its instance's):
    /// forgets its compile, so that a later plan does not reuse it.
    fn broken(&self, id: ModuleId, error: &JsValue) -> LoadError {
        let mut inner = self.inner.borrow_mut();
        inner.pending.remove(&id);
        inner.compiled.remove(&id);
        let reason = if prop(error, "name").as_string().as_deref() == Some("LinkCacheCorruptBytes")
        {
            describe(error)
        } else {
            format!("compiling or instantiating it failed: {}", describe(error))
        };
        LoadError::Broken(id, reason)
    }

    /// Starts `WebAssembly.compile` for every planned module that has no compile (done
    /// or in flight) in this tab, with bytes read in one batch.
    async fn start_compiles(
        &self,
        plan: &LoadPlan,
        snapshot: &mut Snapshot<'_>,
        report: &mut LoadReport,
    ) -> Result<(), LoadError> {
        let needed: Vec<ModuleId> = {
            let inner = self.inner.borrow();
            plan.modules
                .iter()
                .map(|planned| planned.module)
                .filter(|id| !inner.compiled.contains_key(id))
                .collect()
        };
        let (in_memory, needed): (Vec<ModuleId>, Vec<ModuleId>) = {
            let inner = self.inner.borrow();
            needed
                .into_iter()
                .partition(|id| inner.memory.contains_key(id))
        };
        let mut stored = snapshot
            .module_bytes(&needed)
            .await
            .map_err(LoadError::Storage)?;
        let mut needed = needed;
        for id in in_memory {
            let bytes = self.inner.borrow().memory.get(&id).map(|(_, b)| b.clone());
            needed.push(id);
            stored.push(bytes);
        }
        for (id, bytes) in needed.into_iter().zip(stored) {
            // Another target of this tab started it while we read.
            if self.inner.borrow().compiled.contains_key(&id) {
                continue;
            }
            let Some(bytes) = bytes else {
                return Err(if snapshot.split() {
                    LoadError::Vanished
                } else {
                    LoadError::Broken(id, "its wasm bytes are missing".into())
                });
            };
            if !self.decoded(&id).is_some_and(|d| d.checked) {
                self.check_manifest(plan, &id, &bytes).await?;
            }
            let compile = self.compile_checked(&id, &bytes)?;
            let mut inner = self.inner.borrow_mut();
            inner.compiled.insert(id, compile);
            inner.stats.modules_compiled += 1;
            inner.stats.bytes_read += u64::from(bytes.length());
            report.compiled.push(id);
        }
        Ok(())
    }

    /// Starts compiling `bytes`, checked as the module docs say: the promise of the
    /// module, or the reason the bytes are broken.
    fn compile_checked(&self, id: &ModuleId, bytes: &Uint8Array) -> Result<Promise, LoadError> {
        let decoded = self.decoded(id);
        let checked = decoded.as_ref().is_some_and(|d| d.checked);
        let digest = decoded
            .and_then(|d| d.sha256)
            .filter(|_| checked && bytes.length() >= WEBCRYPTO_FROM && has_webcrypto());
        crate::js::mark(match (checked, digest.is_some()) {
            (_, true) => "load: webcrypto",
            (true, false) => "load: blake3 (checked, no digest)",
            (false, false) => "load: blake3 (not checked)",
        });
        if let Some(digest) = digest {
            return Ok(compile_checked(bytes, &digest));
        }
        // The browser decodes on its own threads while BLAKE3 runs here.
        let compile = compile_checked(bytes, &JsValue::UNDEFINED);
        if let Err(e) = self.check_bytes(id, bytes) {
            discard(&compile);
            return Err(e);
        }
        Ok(compile)
    }

    /// Checks stored bytes against their id.
    fn check_bytes(&self, id: &ModuleId, bytes: &Uint8Array) -> Result<(), LoadError> {
        let copy = bytes.to_vec();
        if !id.matches(&copy) {
            return Err(LoadError::Broken(
                *id,
                format!(
                    "its wasm bytes are corrupt ({} bytes that do not hash to the module id)",
                    copy.len()
                ),
            ));
        }
        Ok(())
    }

    /// Checks a planned module's manifest against its bytes, when no analyzer of this
    /// version has (it was committed or imported by another version), and records
    /// that this one did. The analyzer may have to be loaded first (`crate::analyzer`).
    async fn check_manifest(
        &self,
        plan: &LoadPlan,
        id: &ModuleId,
        bytes: &Uint8Array,
    ) -> Result<(), LoadError> {
        let Some(planned) = plan.modules.iter().find(|m| m.module == *id) else {
            return Ok(());
        };
        // Corrupt bytes are reported as such, not as bytes the manifest does not describe.
        self.check_bytes(id, bytes)?;
        match crate::analyzer::check_against(&planned.manifest, &bytes.to_vec()).await {
            Ok(()) => {}
            Err(e) if e.name == "LinkCacheInvalidModule" => {
                return Err(LoadError::Broken(*id, e.message));
            }
            Err(e) => return Err(LoadError::Storage(e)),
        }
        let mut inner = self.inner.borrow_mut();
        inner.stats.manifests_checked += 1;
        if let Some(decoded) = inner.manifests.get_mut(id) {
            decoded.checked = true;
        }
        Ok(())
    }

    /// Instantiates `planned` from its compiled module, at once (`new WebAssembly.Instance`:
    /// the module is compiled already; Chromium 156 allows it on the main thread for
    /// modules of any size, 0.30 ms for sql.js's 688 KB), and shares the instance with
    /// every other target of this tab (before anything is awaited) until the plan
    /// commits. Where a browser refuses that on the main thread, the result is a Promise
    /// of the instance (`WebAssembly.instantiate`), shared the same way.
    fn instantiate(
        &self,
        planned: &linkcache_core::PlannedModule,
        fresh: &HashMap<ModuleId, Object>,
        module: Settled,
    ) -> Result<JsValue, LoadError> {
        let id = planned.module;
        // Forgotten meanwhile (the tab's state was reset): plan again.
        if !self.inner.borrow().compiled.contains_key(&id) {
            return Err(LoadError::Vanished);
        }
        let module = module.map_err(|e| self.broken(id, &e))?;
        let imports = self
            .import_object(planned, &module, fresh)
            .map_err(|reason| LoadError::Broken(id, reason))?;
        self.inner.borrow_mut().stats.modules_loaded += 1;
        let made = instantiate_now(&module, &imports).map_err(|e| self.broken(id, &e))?;
        let shared = match made.dyn_ref::<Promise>() {
            Some(promise) => promise.clone(),
            None => Promise::resolve(&made),
        };
        self.inner.borrow_mut().pending.insert(
            id,
            SharedInstance {
                imports: planned.imports.clone(),
                instance: shared,
            },
        );
        Ok(made)
    }
}
