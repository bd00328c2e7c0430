//! `target` and `tryTarget`: plan, load, commit, and replan when another target of this
//! tab overtook the plan or a module turned out broken.

use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise};
use linkcache_core::{LoadPlan, ModuleId, ValType};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::apart::apart;
use crate::cache::{LinkCache, js_err};
use crate::errors::WebError;
use crate::js::{bind_funcs, describe, now, set, set_global, to_js, val_type_name};
use crate::kept::refused;
use crate::load::{LoadError, LoadReport};
use crate::snapshot::{Hint, Snapshot};

#[wasm_bindgen]
impl LinkCache {
    /// Resolves to the function `funcName` (a WebAssembly export, called directly), or
    /// rejects with a `LinkCacheMiss` whose `missCause`, `function` and `detail` say why.
    #[wasm_bindgen(unchecked_return_type = "Promise<Function>")]
    pub fn target(&self, #[wasm_bindgen(js_name = funcName)] func_name: String) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            let (func, _) = this.target_inner(&func_name).await.map_err(js_err)?;
            Ok(func.into())
        })
    }

    /// Like `target`, but resolves to a report instead of rejecting; it never rejects:
    /// `{hit: true, fn, module, signature, params, results, loaded: [ids], compiled: [ids],
    /// timeMs}`, or on a miss
    /// `{hit: false, missCause, function, detail, message, timeMs}`, or on any other
    /// failure `{hit: false, error, message, timeMs}` (`error`: the `LinkCache...`
    /// error).
    #[wasm_bindgen(js_name = tryTarget, unchecked_return_type = "Promise<TargetReport>")]
    pub fn try_target(&self, #[wasm_bindgen(js_name = funcName)] func_name: String) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            let started = now();
            let report = Object::new();
            match this.target_inner(&func_name).await {
                Ok((func, load)) => this.hit_report(&report, &func_name, &func, &load),
                Err(e) => {
                    set(&report, "hit", &JsValue::FALSE);
                    set(&report, "message", &JsValue::from_str(&e.message));
                    match &e.miss {
                        Some((cause, function, detail)) => {
                            set(&report, "missCause", &JsValue::from_str(cause));
                            set(&report, "function", &JsValue::from_str(function));
                            set(
                                &report,
                                "detail",
                                &detail.as_deref().map_or(JsValue::NULL, JsValue::from_str),
                            );
                        }
                        None => set(&report, "error", &e.to_js()),
                    }
                }
            }
            set(&report, "timeMs", &JsValue::from_f64(now() - started));
            Ok(report.into())
        })
    }
}

impl LinkCache {
    fn hit_report(&self, report: &Object, func_name: &str, func: &Function, load: &LoadReport) {
        set(report, "hit", &JsValue::TRUE);
        set(report, "fn", func);
        let module = self.inner.borrow().linkage.binding(func_name);
        set(
            report,
            "module",
            &JsValue::from_str(&module.map(|m| m.to_string()).unwrap_or_default()),
        );
        let signature = module.and_then(|m| {
            let inner = self.inner.borrow();
            Some(
                inner
                    .linkage
                    .loaded_manifest(&m)?
                    .function(func_name)?
                    .signature
                    .clone(),
            )
        });
        if let Some(signature) = signature {
            let names = |types: &[ValType]| -> Array {
                types
                    .iter()
                    .map(|t| JsValue::from_str(val_type_name(*t)))
                    .collect()
            };
            set(report, "params", &names(&signature.params));
            set(report, "results", &names(&signature.results));
            set(
                report,
                "signature",
                &JsValue::from_str(&signature.to_string()),
            );
        }
        let ids = |v: &[ModuleId]| -> Array {
            v.iter()
                .map(|id| JsValue::from_str(&id.to_string()))
                .collect()
        };
        set(report, "loaded", &ids(&load.loaded));
        set(report, "compiled", &ids(&load.compiled));
    }

    /// Stores the plan hint of `func_name` for the next tab (see [`crate::store`]) when
    /// this plan read the whole closure and it differs from the hint it started from,
    /// with the plan itself when it is kept (see [`crate::kept`]) and differs from the
    /// one stored: only a target whose closure or kept plan is new or changed waits for
    /// this write. A failure is ignored: a hint that is lost costs the next tab round
    /// trips, nothing more.
    async fn record_hint(&self, func_name: &str, snapshot: &mut Snapshot<'_>, plan: &LoadPlan) {
        let kept = self.kept_record(snapshot, plan);
        let closure = &snapshot.closure;
        if closure.partial || closure.funcs.is_empty() || plan.modules.is_empty() {
            return;
        }
        let (funcs, lists) = closure
            .funcs
            .iter()
            .filter(|(f, _)| f.as_str() != func_name)
            .map(|(f, list)| (f.clone(), list.clone()))
            .unzip();
        let hint = Hint {
            funcs,
            lists,
            modules: plan.modules.iter().map(|m| m.module).collect(),
            stamp: closure.stamp,
        };
        if closure.hint.as_ref() == Some(&hint) && kept.is_none() {
            return;
        }
        let store = Rc::clone(&self.inner.borrow().store);
        if let Ok(write) = store.record_plan(func_name, &hint, kept.as_deref()) {
            // Awaited whatever `kept` is: the put is issued already, and dropping its
            // future would leave IndexedDB calling a dropped callback.
            let written = write.await.is_ok();
            self.inner.borrow_mut().stats.plans_kept += u64::from(kept.is_some() && written);
        }
    }

    pub(crate) fn bound(&self, func_name: &str) -> Option<Function> {
        let inner = self.inner.borrow();
        inner.linkage.binding(func_name)?;
        inner
            .funcs
            .get(&JsValue::from_str(func_name))
            .dyn_into::<Function>()
            .ok()
    }

    /// Targets `func_name`, counting the outcome in the stats.
    pub(crate) async fn target_inner(
        &self,
        func_name: &str,
    ) -> Result<(Function, LoadReport), WebError> {
        let started = now();
        let result = self.target_loop(func_name).await;
        let mut inner = self.inner.borrow_mut();
        inner.stats.time_ms += now() - started;
        match &result {
            Ok(_) => inner.stats.hits += 1,
            Err(e) => {
                if let Some((cause, _, _)) = &e.miss {
                    *inner.stats.misses.entry(cause.clone()).or_default() += 1;
                }
            }
        }
        result
    }

    async fn target_loop(&self, func_name: &str) -> Result<(Function, LoadReport), WebError> {
        // Only the first plan of a target may be a kept one: after a failure the tab
        // knows a broken module, or the kept plan was not usable.
        let mut may_replay = true;
        loop {
            if let Some(func) = self.bound(func_name) {
                let module = self.inner.borrow().linkage.binding(func_name);
                self.touch(module);
                return Ok((func, LoadReport::default()));
            }
            let epoch = self.inner.borrow().epoch;
            let store = Rc::clone(&self.inner.borrow().store);
            let mut snapshot = Snapshot::new(&store);
            let replay = std::mem::take(&mut may_replay) && self.pristine();
            let kept = if replay {
                apart(self.replay(func_name, &mut snapshot)).await
            } else {
                Ok(None)
            };
            let replayed = matches!(kept, Ok(Some(_)));
            crate::js::mark("planned");
            let planned = match kept {
                Ok(Some(plan)) => Ok(plan),
                Ok(None) => apart(self.plan(func_name, &mut snapshot)).await,
                Err(e) => Err(e),
            };
            let mut report = LoadReport::default();
            let loaded = match planned {
                Ok(plan) => apart(self.load(&plan, &mut snapshot, &mut report))
                    .await
                    .map(|instances| (plan, instances)),
                Err(e) => Err(LoadError::Storage(e)),
            };
            {
                let mut inner = self.inner.borrow_mut();
                inner.stats.plans += 1;
                inner.stats.plan_transactions += u64::from(snapshot.transactions());
                inner.stats.plan_reads += u64::from(snapshot.reads());
            }
            let (plan, instances) = match loaded {
                Ok(loaded) => loaded,
                Err(LoadError::Broken(module, reason)) => {
                    if replayed {
                        self.refuse(refused::BROKEN);
                    }
                    let mut inner = self.inner.borrow_mut();
                    inner.linkage.mark_broken(module, reason);
                    inner.stats.broken_skipped += 1;
                    continue;
                }
                Err(LoadError::Vanished) => continue,
                Err(LoadError::Storage(e)) => return Err(e),
            };
            {
                let mut inner = self.inner.borrow_mut();
                // Another target of this tab committed first, or the tab forgot its state:
                // plan again against what is bound now (reusing the instances made).
                if inner.epoch != epoch || inner.linkage.commit(&plan).is_err() {
                    continue;
                }
                inner.stats.plans_replayed += u64::from(replayed);
                for id in instances.keys() {
                    inner.pending.remove(id);
                }
                inner.instances.extend(instances);
                bind(&inner.funcs, &plan, &inner.instances);
                for (name, ty, value) in &plan.set_globals {
                    if let Some(global) = inner.shared_globals.get(name.as_str()) {
                        set_global(global, &to_js(*value)).map_err(|e| {
                            WebError::new(
                                "LinkCacheStorage",
                                format!("setting global `{name}` ({ty}): {}", describe(&e)),
                            )
                        })?;
                    }
                }
            }
            crate::js::mark("committed");
            self.touch(plan.modules.iter().map(|m| m.module));
            apart(self.record_hint(func_name, &mut snapshot, &plan)).await;
            crate::js::mark("hint recorded");
            return match self.bound(func_name) {
                Some(func) => Ok((func, report)),
                None => Err(WebError::new(
                    "LinkCacheStorage",
                    format!("`{func_name}` was bound but its module does not export it"),
                )),
            };
        }
    }
}

/// Puts the export of each of `plan`'s bindings into `funcs` (what the forwarders of
/// this tab call), in one call into JavaScript. From here it took four calls per
/// binding (the name made twice, the export read, the set): 320 for the 80 bindings of
/// the benchmark's 10-module closure.
fn bind(funcs: &js_sys::Map, plan: &LoadPlan, instances: &HashMap<ModuleId, Object>) {
    let mut names = String::new();
    let mut lengths = Vec::with_capacity(plan.bindings.len());
    let mut which = Vec::with_capacity(plan.bindings.len());
    let mut modules: Vec<ModuleId> = Vec::new();
    let exports = Array::new();
    for (func, module) in &plan.bindings {
        names.push_str(func);
        lengths.push(func.encode_utf16().count() as u32);
        let at = match modules.iter().position(|m| m == module) {
            Some(at) => at,
            None => {
                modules.push(*module);
                exports.push(&instances.get(module).cloned().unwrap_or_default());
                modules.len() - 1
            }
        };
        which.push(at as u32);
    }
    bind_funcs(funcs, &names, &lengths, &exports, &which);
}
