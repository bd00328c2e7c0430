//! Planning a target in the browser: the core [`Planner`] answered from one
//! [`Snapshot`] (one read-only transaction) and this tab's decoded manifests.
//!
//! The planner asks for one func_name's candidates at a time and restarts its search
//! after every answer; answering it request by request would cost a transaction (or at
//! least a round trip) per question. Instead, the first question is answered with the
//! whole closure, level by level: the candidates of every func_name of a level in one
//! batch of index requests, whose values are the manifests (decoded once per tab, as
//! they are content-addressed), then the callees of those manifests as the next level.
//! A level costs a round trip to IndexedDB, so a chain of ten modules cost ten; with
//! the target's plan hint (what its last complete plan read, see [`crate::store`]) the
//! whole closure and its bytes come in the second round trip.
//!
//! A tab that has loaded nothing yet does not even plan when the hint carries a kept
//! plan that is still valid ([`crate::kept`]): the same first round trip (the target's
//! candidates, its hint and the index stamp), then one for the planned modules' bytes,
//! and no search. When the kept plan cannot be used, the planner starts from what that
//! first round trip read (no round trip is repeated) and the embedder's decisions the
//! kept plan's check asked for (no global is asked twice).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use js_sys::{Array, Function, Uint8Array};
use linkcache_core::{
    ANALYZER_VERSION, Candidate, GlobalCheck, GlobalOutcome, KeptPlan, LoadPlan, Manifest, Miss,
    ModuleId, Need, Planner, Progress, ValType,
};
use wasm_bindgen::{JsCast, JsValue};

use crate::apart::apart;
use crate::cache::{Decoded, LinkCache};
use crate::errors::WebError;
use crate::js::{describe, from_js, prop, settle, to_text, val_type_name};
use crate::snapshot::{Hint, Listed, Snapshot, analyzer_of, hint_of, listed};
use crate::store::{decode_manifest, stamp_key};

impl LinkCache {
    /// Runs the planner to a plan or a miss, answering its needs from `snapshot`.
    pub(crate) async fn plan(
        &self,
        func_name: &str,
        snapshot: &mut Snapshot<'_>,
    ) -> Result<LoadPlan, WebError> {
        let mut planner = Planner::new(func_name);
        let mut asked = Vec::new();
        let outcome = loop {
            let progress = planner.next(&self.inner.borrow().linkage);
            match progress {
                Progress::Ready(plan) => break Ok(plan),
                Progress::Miss(miss) => break Err(miss),
                Progress::Need(Need::Candidates(func)) => {
                    apart(self.answer_closure(snapshot, &mut planner, func)).await?;
                }
                Progress::Need(Need::Manifest(module)) => {
                    let decoded = match self.decoded(&module) {
                        Some(decoded) => decoded,
                        None => match apart(snapshot.manifest(&module)).await? {
                            Some(value) => self.decode(&module, &value),
                            None => Decoded {
                                manifest: Err("its manifest is missing".into()),
                                checked: false,
                                sha256: None,
                            },
                        },
                    };
                    planner.answer_manifest(module, decoded.manifest);
                }
                Progress::Need(Need::Globals(checks)) => {
                    for check in &checks {
                        let decided =
                            crate::kept::decision(&snapshot.closure.decided, &check.global)
                                .cloned();
                        let outcome = match decided {
                            Some(outcome) => outcome,
                            None => apart(self.resolve_global(check)).await,
                        };
                        asked.push((check.module, check.global.clone(), outcome.clone()));
                        planner.answer_global(check, outcome);
                    }
                }
            }
        };
        // A plan for a tab that had loaded, found broken and asked about nothing (and
        // still has not: those only grow) depends on nothing but what it read and the
        // embedder's decisions: it is kept with the next hint (see `crate::kept`).
        if let Ok(plan) = &outcome
            && self.pristine()
            && planner.broken().next().is_none()
            && snapshot.closure.stamp.is_some()
        {
            snapshot.closure.keep = KeptPlan::keep(plan).map(|kept| (kept, asked));
        }
        let mut inner = self.inner.borrow_mut();
        let broken_before = inner.linkage.broken_modules().count();
        inner.linkage.learn(&planner);
        inner.stats.broken_skipped +=
            (inner.linkage.broken_modules().count() - broken_before) as u64;
        outcome.map_err(|miss: Miss| WebError::miss(&miss))
    }

    /// The manifest of `id` as this tab decoded it already.
    pub(crate) fn decoded(&self, id: &ModuleId) -> Option<Decoded> {
        self.inner.borrow().manifests.get(id).cloned()
    }

    /// Decodes a stored manifest value (once per tab).
    fn decode(&self, id: &ModuleId, value: &JsValue) -> Decoded {
        if let Some(decoded) = self.decoded(id) {
            return decoded;
        }
        let decoded = Decoded {
            manifest: decode_manifest(value, id).map(Arc::new),
            checked: analyzer_of(value) == ANALYZER_VERSION,
            sha256: prop(value, "sha256")
                .dyn_into::<Uint8Array>()
                .ok()
                .filter(|digest| digest.length() == 32),
        };
        // Only a manifest that decoded is content-addressed; a broken record may be
        // repaired by a re-add.
        if decoded.manifest.is_ok() {
            self.inner
                .borrow_mut()
                .manifests
                .insert(*id, decoded.clone());
        }
        decoded
    }

    /// Answers the candidates of `func_name` together with the rest of its closure
    /// (candidates and manifests, transitively), one level of func_names per batch of
    /// requests. The first batch also reads the target's plan hint and the index stamp
    /// (see [`crate::store`]); with a hint, a second batch reads the rest of the closure
    /// the hint names at once ([`LinkCache::read_ahead`]), so that a closure read as the
    /// hint predicted costs two round trips, not one per level. Levels the hint missed
    /// are read the usual way. The hint only decides what is read early: the planner
    /// decides from what was read.
    async fn answer_closure(
        &self,
        snapshot: &mut Snapshot<'_>,
        planner: &mut Planner,
        func_name: String,
    ) -> Result<(), WebError> {
        let mut read: HashMap<String, Vec<Listed>> = HashMap::new();
        let mut first = snapshot.closure.funcs.is_empty();
        let mut level = vec![func_name];
        while !level.is_empty() {
            let ask: Vec<String> = level
                .iter()
                .filter(|f| !read.contains_key(*f))
                .cloned()
                .collect();
            let plans = if first {
                vec![JsValue::from_str(&level[0]), stamp_key()]
            } else {
                Vec::new()
            };
            let kept = if first {
                snapshot.take_first(&level[0])
            } else {
                None
            };
            let batch = match kept {
                Some(batch) => batch,
                None => snapshot.read(&ask, &[], &[], &plans).await?,
            };
            read.extend(ask.into_iter().zip(batch.candidates));
            if first {
                first = false;
                snapshot.closure.stamp = batch.plans.get(1).and_then(JsValue::as_f64);
                if let Some(hint) = batch.plans.first().and_then(hint_of) {
                    self.read_ahead(snapshot, planner, &hint, &level, &mut read)
                        .await?;
                    snapshot.closure.hint = Some(hint);
                }
            }
            let mut next = BTreeSet::new();
            for func in &level {
                let mut entries = read.remove(func).unwrap_or_default();
                snapshot
                    .closure
                    .funcs
                    .insert(func.clone(), entries.iter().map(|e| e.id).collect());
                entries.extend(self.in_memory(func));
                let mut candidates = Vec::with_capacity(entries.len());
                for entry in entries {
                    candidates.push(Candidate {
                        module: entry.id,
                        committed_at: entry.committed_at,
                    });
                    let manifest = self.candidate_manifest(planner, &entry.id, &entry.value);
                    let Some(function) = manifest.as_ref().and_then(|m| m.function(func)) else {
                        continue;
                    };
                    let inner = self.inner.borrow();
                    for callee in &function.calls {
                        if inner.linkage.binding(callee).is_some() {
                            snapshot.closure.partial = true;
                        } else if !planner.has_candidates(callee)
                            && !level.iter().any(|l| l == callee)
                        {
                            next.insert(String::from(callee));
                        }
                    }
                }
                planner.answer_candidates(func, candidates);
            }
            level = next.into_iter().collect();
        }
        Ok(())
    }

    /// The second batch of a plan with a hint, for the hint's func_names that are not
    /// bound, answered or read yet, and the hint's modules this tab has not compiled:
    /// their bytes, and
    /// - when the hint's stamp is the index's: the manifests of the candidates the hint
    ///   lists (the index lists the same, as no commit or gc changed it since), by key;
    /// - else: the candidates the index lists now.
    ///
    /// What was read waits in `read` for the levels, and in the snapshot for the load.
    async fn read_ahead(
        &self,
        snapshot: &mut Snapshot<'_>,
        planner: &Planner,
        hint: &Hint,
        level: &[String],
        read: &mut HashMap<String, Vec<Listed>>,
    ) -> Result<(), WebError> {
        let exact = hint.stamp.is_some() && hint.stamp == snapshot.closure.stamp;
        let (funcs, lists, ids): (Vec<String>, Vec<Vec<ModuleId>>, Vec<ModuleId>) = {
            let inner = self.inner.borrow();
            let (funcs, lists) = hint
                .funcs
                .iter()
                .zip(&hint.lists)
                .filter(|(f, _)| {
                    inner.linkage.binding(f).is_none()
                        && !planner.has_candidates(f)
                        && !read.contains_key(*f)
                        && !level.contains(f)
                })
                .map(|(f, list)| (f.clone(), list.clone()))
                .unzip();
            let ids = hint
                .modules
                .iter()
                .filter(|id| {
                    !inner.compiled.contains_key(id)
                        && !inner.memory.contains_key(id)
                        && !snapshot.has_ahead(id)
                })
                .copied()
                .collect();
            (funcs, lists, ids)
        };
        if !exact {
            let batch = snapshot.read(&funcs, &ids, &[], &[]).await?;
            read.extend(funcs.into_iter().zip(batch.candidates));
            snapshot.keep_ahead(&ids, batch.bytes);
            return Ok(());
        }
        let manifests: Vec<ModuleId> = lists
            .iter()
            .flatten()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let batch = snapshot.read(&[], &ids, &manifests, &[]).await?;
        snapshot.keep_ahead(&ids, batch.bytes);
        let values: HashMap<ModuleId, Listed> = manifests
            .into_iter()
            .zip(batch.manifests)
            .filter_map(|(id, value)| Some((id, listed(value?)?)))
            .filter(|(id, listed)| listed.id == *id)
            .collect();
        for (func, list) in funcs.into_iter().zip(lists) {
            // A listed module without a manifest cannot be: the stamp says the index is
            // unchanged. Leave that func_name to the levels, which ask the index.
            let entries: Option<Vec<Listed>> = list
                .iter()
                .map(|id| {
                    values.get(id).map(|v| Listed {
                        id: v.id,
                        committed_at: v.committed_at,
                        value: v.value.clone(),
                    })
                })
                .collect();
            if let Some(entries) = entries {
                read.insert(func, entries);
            }
        }
        Ok(())
    }

    /// The modules kept in memory (the quota was full) that define `func`, after every
    /// stored candidate.
    fn in_memory(&self, func: &str) -> Vec<Listed> {
        self.inner
            .borrow()
            .memory
            .iter()
            .filter(|(_, (manifest, _))| manifest.function(func).is_some())
            .map(|(id, _)| Listed {
                id: *id,
                committed_at: u64::MAX,
                value: JsValue::UNDEFINED,
            })
            .collect()
    }

    /// The manifest of a candidate (loaded, or decoded and given to the planner), or
    /// `None` when it is broken.
    fn candidate_manifest(
        &self,
        planner: &mut Planner,
        id: &ModuleId,
        value: &JsValue,
    ) -> Option<Arc<Manifest>> {
        {
            let inner = self.inner.borrow();
            if let Some(manifest) = inner.linkage.loaded_manifest(id) {
                return Some(Arc::clone(manifest));
            }
            if inner.linkage.broken_reason(id).is_some() {
                return None;
            }
        }
        if planner.answered_manifest(id).is_none() {
            let decoded = self.decode(id, value);
            planner.answer_manifest(*id, decoded.manifest);
        }
        match planner.answered_manifest(id) {
            Some(Ok(manifest)) => Some(Arc::clone(manifest)),
            _ => None,
        }
    }

    /// The embedder's decision on a global definition (`resolveGlobal`, which may return
    /// a Promise), or the literal reading.
    ///
    /// Asking the embedder is a state machine of its own ([`apart`]). binaryen had inlined
    /// it into this one, which every target with globals compiles however they are
    /// decided: with the literal reading's number parsing, 6.8 KB of wasm, the largest
    /// function a fresh tab's 10-module target compiled (0.34 ms of its main thread).
    /// Without it, 5.3 KB (0.25 ms; session 28's traces, BENCHMARKS.md).
    pub(crate) async fn resolve_global(&self, check: &GlobalCheck) -> GlobalOutcome {
        let resolver = self.inner.borrow().resolve_global.clone();
        let outcome = match resolver {
            None => linkcache_core::literal_global(check),
            Some(resolve) => apart(ask_resolver(resolve, check)).await,
        };
        let mut inner = self.inner.borrow_mut();
        match &outcome {
            Ok(_) => inner.stats.globals_validated += 1,
            Err(_) => inner.stats.globals_stale += 1,
        }
        outcome
    }
}

/// `resolveGlobal(name, definition as text, type name, definition bytes)`, settled.
async fn ask_resolver(resolve: Function, check: &GlobalCheck) -> GlobalOutcome {
    let text = String::from_utf8_lossy(&check.global.definition).into_owned();
    let ty = check.global.ty;
    let args = Array::of4(
        &JsValue::from_str(&check.global.name),
        &JsValue::from_str(&text),
        &JsValue::from_str(val_type_name(ty)),
        &Uint8Array::from(check.global.definition.as_slice()),
    );
    let answer = match resolve.apply(&JsValue::NULL, &args) {
        Ok(value) => settle(value).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(value) => global_value(&check.global.name, ty, &value),
        Err(e) => Err(describe(&e)),
    }
}

/// What `resolveGlobal` answered, as an outcome: a value of the global's type, or
/// `{stale: reason}`.
fn global_value(name: &str, ty: ValType, value: &JsValue) -> GlobalOutcome {
    let stale = prop(value, "stale");
    if value.is_object() && !stale.is_undefined() {
        return Err(stale.as_string().unwrap_or_else(|| to_text(&stale)));
    }
    from_js(ty, value).ok_or_else(|| {
        format!(
            "resolveGlobal(\"{name}\") returned {}, not a {ty} value{}",
            to_text(value),
            if ty == ValType::I64 {
                " (a BigInt)"
            } else {
                ""
            }
        )
    })
}
