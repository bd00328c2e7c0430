//! Driving the planner from a synchronous store, and [`MemoryStore`], the store with no
//! persistence.
//!
//! An asynchronous host (the browser's IndexedDB) drives [`Planner`] itself with the
//! same loop as [`plan`], awaiting each answer.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::{
    AnalysisError, AnalyzeOptions, Candidate, FuncSig, GlobalCheck, GlobalOutcome, Linkage,
    LoadPlan, Manifest, Miss, ModuleId, Need, Planner, Progress, analyze_with,
};

/// A store the planner can ask synchronously.
pub trait Store {
    /// A failure of the store itself (I/O), as opposed to a broken entry.
    type Error;

    /// Every module the index lists for `func_name`.
    fn candidates(&mut self, func_name: &str) -> Result<Vec<Candidate>, Self::Error>;

    /// The manifest of `module`: `Ok(Err(reason))` when the entry is broken (corrupt,
    /// truncated, missing), `Err` when the store itself failed.
    fn manifest(&mut self, module: &ModuleId)
    -> Result<Result<Arc<Manifest>, String>, Self::Error>;
}

/// Decodes a global definition into a value, or says why it is stale.
pub trait GlobalResolver {
    /// The value of `check`'s definition, or why it is stale.
    fn resolve(&mut self, check: &GlobalCheck) -> GlobalOutcome;
}

impl<F: FnMut(&GlobalCheck) -> GlobalOutcome> GlobalResolver for F {
    fn resolve(&mut self, check: &GlobalCheck) -> GlobalOutcome {
        self(check)
    }
}

/// The default resolver: a definition is the UTF-8 text of a literal of the global's
/// type (see [`crate::Value::parse_literal`]), and always current.
pub fn literal_global(check: &GlobalCheck) -> GlobalOutcome {
    let global = &check.global;
    core::str::from_utf8(&global.definition)
        .ok()
        .and_then(|text| crate::Value::parse_literal(global.ty, text))
        .ok_or_else(|| {
            alloc::format!(
                "definition {:?} is not a {} literal",
                String::from_utf8_lossy(&global.definition),
                global.ty
            )
        })
}

/// Plans `target` against `store`, answering every need synchronously, and records what
/// was learned (broken manifests, global decisions) in `linkage`.
pub fn plan<S: Store + ?Sized>(
    store: &mut S,
    linkage: &mut Linkage,
    target: &str,
    expected: Option<&FuncSig>,
    resolver: &mut dyn GlobalResolver,
) -> Result<Result<LoadPlan, Miss>, S::Error> {
    let mut planner = Planner::new(target);
    if let Some(signature) = expected {
        planner = planner.expecting(signature.clone());
    }
    let outcome = loop {
        match planner.next(linkage) {
            Progress::Ready(plan) => break Ok(plan),
            Progress::Miss(miss) => break Err(miss),
            Progress::Need(Need::Candidates(func)) => {
                answer_closure(store, &mut planner, linkage, func)?;
            }
            Progress::Need(Need::Manifest(module)) => {
                let manifest = store.manifest(&module)?;
                planner.answer_manifest(module, manifest);
            }
            Progress::Need(Need::Globals(checks)) => {
                for check in &checks {
                    let outcome = resolver.resolve(check);
                    planner.answer_global(check, outcome);
                }
            }
        }
    };
    linkage.learn(&planner);
    Ok(outcome)
}

/// Answers the candidates of `func_name` together with what the search will ask next:
/// each candidate's manifest, the candidates of the functions it calls, their manifests,
/// transitively. [`Planner::next`] restarts its search after every answer, so answering
/// one question per round costs rounds × closure; answers are facts, so answering ahead
/// changes no decision. Only the calls of the function a candidate is listed for are
/// followed, so the work stays within the closure (plus the manifests of duplicates).
fn answer_closure<S: Store + ?Sized>(
    store: &mut S,
    planner: &mut Planner,
    linkage: &Linkage,
    func_name: String,
) -> Result<(), S::Error> {
    let mut work = alloc::vec![func_name];
    while let Some(func) = work.pop() {
        if planner.has_candidates(&func) {
            continue;
        }
        let candidates = store.candidates(&func)?;
        for candidate in &candidates {
            let manifest = if let Some(loaded) = linkage.loaded_manifest(&candidate.module) {
                Arc::clone(loaded)
            } else if linkage.broken_reason(&candidate.module).is_some() {
                continue;
            } else {
                if planner.answered_manifest(&candidate.module).is_none() {
                    let answer = store.manifest(&candidate.module)?;
                    planner.answer_manifest(candidate.module, answer);
                }
                match planner.answered_manifest(&candidate.module) {
                    Some(Ok(manifest)) => Arc::clone(manifest),
                    _ => continue,
                }
            };
            if let Some(function) = manifest.function(&func) {
                for callee in &function.calls {
                    if linkage.binding(callee).is_none() && !planner.has_candidates(callee) {
                        work.push(String::from(callee));
                    }
                }
            }
        }
        planner.answer_candidates(&func, candidates);
    }
    Ok(())
}

/// A module of a plan could not be loaded; the cause is remembered and the planner
/// falls back to a duplicate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadFailure {
    /// The module that could not be loaded.
    pub module: ModuleId,
    /// Why (reported in [`Miss::Broken`] if no duplicate works).
    pub reason: String,
}

/// Plans `target`, hands the plan to `load` (which instantiates every planned module and
/// returns the first that failed), and commits it. A module that fails to load is
/// marked broken and the target is planned again, so the loop ends: every round either
/// commits or marks one more module broken.
///
/// Returns the committed plan (empty when the target was bound already) or the miss.
pub fn load_target<S: Store + ?Sized>(
    store: &mut S,
    linkage: &mut Linkage,
    target: &str,
    expected: Option<&FuncSig>,
    resolver: &mut dyn GlobalResolver,
    load: &mut dyn FnMut(&LoadPlan, &Linkage) -> Result<(), LoadFailure>,
) -> Result<Result<LoadPlan, Miss>, S::Error> {
    loop {
        let plan = match plan(store, linkage, target, expected, resolver)? {
            Ok(plan) => plan,
            Err(miss) => return Ok(Err(miss)),
        };
        match load(&plan, linkage) {
            Ok(()) => {
                linkage
                    .commit(&plan)
                    .expect("nothing else commits while a synchronous load runs");
                return Ok(Ok(plan));
            }
            Err(failure) => linkage.mark_broken(failure.module, failure.reason),
        }
    }
}

/// A store in memory: for tests, and for embedders that want no persistence.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    modules: BTreeMap<ModuleId, (Arc<[u8]>, Arc<Manifest>)>,
    index: BTreeMap<String, Vec<Candidate>>,
    clock: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Analyzes and adds a module; adding the same bytes again changes nothing.
    pub fn add(&mut self, wasm: &[u8]) -> Result<ModuleId, AnalysisError> {
        self.add_with(wasm, &AnalyzeOptions::default())
    }

    /// Like [`MemoryStore::add`], with global definitions or declared dependencies.
    pub fn add_with(
        &mut self,
        wasm: &[u8],
        options: &AnalyzeOptions,
    ) -> Result<ModuleId, AnalysisError> {
        let id = ModuleId::of(wasm);
        if !self.modules.contains_key(&id) {
            let manifest = analyze_with(wasm, options)?;
            self.insert(wasm.into(), manifest);
        }
        Ok(id)
    }

    /// Adds a module whose manifest is already known (from a bundle, say). The caller
    /// vouches that the manifest belongs to the bytes.
    pub fn insert(&mut self, wasm: Arc<[u8]>, manifest: Manifest) -> ModuleId {
        let id = manifest.module;
        if self.modules.contains_key(&id) {
            return id;
        }
        self.clock += 1;
        for function in &manifest.functions {
            self.index
                .entry(String::from(&function.name))
                .or_default()
                .push(Candidate {
                    module: id,
                    committed_at: self.clock,
                });
        }
        self.modules.insert(id, (wasm, Arc::new(manifest)));
        id
    }

    /// The bytes of a module.
    pub fn wasm(&self, module: &ModuleId) -> Option<&Arc<[u8]>> {
        self.modules.get(module).map(|(wasm, _)| wasm)
    }

    /// Replaces the stored bytes of a module without touching its manifest or index
    /// entries: fault injection for tests of corrupt entries.
    pub fn tamper(&mut self, module: &ModuleId, wasm: impl Into<Arc<[u8]>>) {
        if let Some(entry) = self.modules.get_mut(module) {
            entry.0 = wasm.into();
        }
    }

    /// Every module id, sorted.
    pub fn modules(&self) -> impl Iterator<Item = &ModuleId> {
        self.modules.keys()
    }

    /// The number of modules.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// Whether the store holds no module.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }
}

impl Store for MemoryStore {
    type Error = core::convert::Infallible;

    fn candidates(&mut self, func_name: &str) -> Result<Vec<Candidate>, Self::Error> {
        Ok(self.index.get(func_name).cloned().unwrap_or_default())
    }

    fn manifest(
        &mut self,
        module: &ModuleId,
    ) -> Result<Result<Arc<Manifest>, String>, Self::Error> {
        Ok(self
            .modules
            .get(module)
            .map(|(_, manifest)| Arc::clone(manifest))
            .ok_or_else(|| "no such module in the store".into()))
    }
}
