//! The partial-load planner: a need-driven state machine that turns a func_name into a
//! [`LoadPlan`] or a [`Miss`].
//!
//! The planner owns no store. It asks for what it needs ([`Need`]): the candidates of a
//! func_name, a manifest, the validation of some global definitions. The host answers
//! from its store (synchronously on native, with `.await` in the browser) and calls
//! [`Planner::next`] again. Answers only ever add knowledge, and every call of `next`
//! re-runs a pure search over what is known, so a host may answer in any order and the
//! result depends only on the answers, never on timing.
//!
//! # The search
//! `resolve(f)` picks a candidate module for `f`, in this order (DESIGN.md's duplicate
//! resolution): the binding already made in this process; a candidate in a module
//! already loaded; one in a module already chosen for this plan; the earliest committed,
//! ties broken by [`ModuleId`]. A candidate is usable when its manifest is intact and
//! defines `f` with the expected signature, none of the globals `f` uses is stale, and
//! every func_name `f` calls resolves in turn. An unusable candidate is rolled back with
//! everything chosen on its behalf, and the next one is tried. A call back into a
//! function already being resolved (modules that import each other) counts as resolved:
//! the cycle is linked with trampolines.
//!
//! # The plan
//! The chosen modules that are not loaded yet are ordered by petgraph's Tarjan SCC over
//! "imports from" edges, which lists every module after the modules it imports from;
//! modules of one strongly connected group import each other and get trampolines.
//! Every import of every planned module gets an [`ImportBinding`].

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use alloc::{format, vec};

use petgraph::graphmap::DiGraphMap;

use crate::manifest::{FN_NAMESPACE, GLOBAL_NAMESPACE};
use crate::{
    FuncSig, GlobalDef, GlobalOutcome, ImportKind, Linkage, Manifest, ModuleId, ValType, Value,
};

/// One module that defines a func_name, as the store's index lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The module defining the func_name.
    pub module: ModuleId,
    /// When the module's index entry was committed (a host clock reading or counter);
    /// among duplicates the earliest wins.
    pub committed_at: u64,
}

/// Identifies one definition of one global: its name and the BLAKE3 of its definition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GlobalKey {
    /// The global's name.
    pub name: String,
    /// BLAKE3 of its definition bytes.
    pub definition: [u8; 32],
}

impl GlobalKey {
    /// The key of a definition.
    pub fn of(def: &GlobalDef) -> GlobalKey {
        GlobalKey {
            name: def.name.clone(),
            definition: *blake3::hash(&def.definition).as_bytes(),
        }
    }
}

/// A global definition the embedder must decode and validate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalCheck {
    /// The module whose manifest carries this definition.
    pub module: ModuleId,
    /// The definition to decode and validate.
    pub global: GlobalDef,
}

/// What the planner needs from its host before it can go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Answer with [`Planner::answer_candidates`].
    Candidates(String),
    /// Answer with [`Planner::answer_manifest`].
    Manifest(ModuleId),
    /// Answer each with [`Planner::answer_global`].
    Globals(Vec<GlobalCheck>),
}

/// The result of one [`Planner::next`] call.
#[derive(Clone, Debug)]
pub enum Progress {
    /// The planner needs an answer from the host; answer it and call `next` again.
    Need(Need),
    /// The plan is complete: instantiate it, then [`Linkage::commit`] it.
    Ready(LoadPlan),
    /// The target cannot be loaded; the miss says why.
    Miss(Miss),
}

/// Why a func_name cannot be targeted. The caller's remedy is to compile and add a
/// module, which the cause tells it how to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Miss {
    /// No cached module defines the function: compile it.
    #[error("no cached module defines `{function}`")]
    Unknown {
        /// The targeted func_name.
        function: String,
    },
    /// The function (or one it reaches) calls a func_name that no cached module defines:
    /// compile the dependency.
    #[error("`{function}` calls `{dependency}`, which no cached module defines")]
    MissingDependency {
        /// The function whose dependency is missing.
        function: String,
        /// The missing func_name.
        dependency: String,
    },
    /// The function (or one it reaches) uses a global whose definition the embedder
    /// declared stale: recompile against the current definition.
    #[error("`{function}` uses global `{global}`, which is stale: {reason}")]
    StaleGlobal {
        /// The function that uses the global.
        function: String,
        /// The global's name.
        global: String,
        /// The embedder's reason.
        reason: String,
    },
    /// Every module defining the function is unusable (corrupt, truncated, failed to
    /// load): compile it again.
    #[error("every module defining `{function}` is broken: {}", describe_broken(.modules))]
    Broken {
        /// The func_name whose every candidate module is broken.
        function: String,
        /// Each broken candidate with the reason.
        modules: Vec<(ModuleId, String)>,
    },
    /// The function exists with another signature than the caller expects: fix the
    /// caller's expectation, or compile a function with the expected signature (usually
    /// under a func_name that includes the signature, e.g. `math.fib(i64)->i64`).
    #[error("`{function}` has signature {found}, but {expected} was expected")]
    SignatureMismatch {
        /// The func_name whose signature does not match: the target itself, or a
        /// function it calls that a module imports with another type than it is cached
        /// with.
        function: String,
        /// The signature the caller expected.
        expected: FuncSig,
        /// The cached function's signature.
        found: FuncSig,
    },
}

fn describe_broken(modules: &[(ModuleId, String)]) -> String {
    let parts: Vec<String> = modules
        .iter()
        .map(|(id, reason)| format!("{} ({reason})", id.short()))
        .collect();
    parts.join("; ")
}

impl Miss {
    /// The short name of the cause: `unknown`, `missing_dependency`, `stale_global`,
    /// `broken` or `signature_mismatch` (used in statistics and by the scenario suite).
    pub fn cause(&self) -> &'static str {
        match self {
            Miss::Unknown { .. } => "unknown",
            Miss::MissingDependency { .. } => "missing_dependency",
            Miss::StaleGlobal { .. } => "stale_global",
            Miss::Broken { .. } => "broken",
            Miss::SignatureMismatch { .. } => "signature_mismatch",
        }
    }

    /// The function the miss is about.
    pub fn function(&self) -> &str {
        match self {
            Miss::Unknown { function }
            | Miss::MissingDependency { function, .. }
            | Miss::StaleGlobal { function, .. }
            | Miss::Broken { function, .. }
            | Miss::SignatureMismatch { function, .. } => function,
        }
    }

    /// The missing dependency or the stale global, when there is one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Miss::MissingDependency { dependency, .. } => Some(dependency),
            Miss::StaleGlobal { global, .. } => Some(global),
            _ => None,
        }
    }
}

/// What to load, in which order, linked how.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// The targeted func_name.
    pub target: String,
    /// The module the target is bound to (maybe one already loaded).
    pub module: ModuleId,
    /// The target's signature.
    pub signature: FuncSig,
    /// Modules to instantiate, in order: every module after those it imports from,
    /// except within a strongly connected group (see [`LoadPlan::cycles`]).
    pub modules: Vec<PlannedModule>,
    /// The strongly connected groups of planned modules (modules that import each other,
    /// or a module importing its own export); their mutual imports are
    /// [`ImportBinding::Trampoline`]s.
    pub cycles: Vec<Vec<ModuleId>>,
    /// The bindings this plan adds to the process: func_name -> module, sorted.
    pub bindings: Vec<(String, ModuleId)>,
    /// Mutable globals to set now, because a function this plan binds is the first in the
    /// process to use them (a global already set keeps the value the code gave it).
    pub set_globals: Vec<(String, ValType, Value)>,
    pub(crate) generation: u64,
}

impl LoadPlan {
    /// Whether this plan binds nothing new: the target is already bound in the process.
    pub fn is_bound_already(&self) -> bool {
        self.bindings.is_empty()
    }
}

/// One module of a plan and the binding of each of its imports.
#[derive(Clone, Debug)]
pub struct PlannedModule {
    /// The module to instantiate.
    pub module: ModuleId,
    /// Its manifest, as the store answered it.
    pub manifest: Arc<Manifest>,
    /// One binding per import, in the manifest's (and the module's) import order.
    pub imports: Vec<ImportBinding>,
}

/// How one import of a planned module is satisfied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportBinding {
    /// The export `func` of `module`, which is loaded already or instantiated earlier in
    /// this plan.
    Export {
        /// The module exporting it.
        module: ModuleId,
        /// The func_name.
        func: String,
    },
    /// `func` is defined by a module of the same strongly connected group: forward to the
    /// process's binding of `func`, which exists once the whole group is instantiated.
    Trampoline {
        /// The func_name.
        func: String,
    },
    /// `func` is outside this plan's closure: a stub that targets `func` on first call
    /// (and traps with the miss if it cannot be targeted).
    Lazy {
        /// The func_name.
        func: String,
        /// Its signature, for the stub's type.
        signature: FuncSig,
    },
    /// A `linkcache:global` import.
    Global {
        /// The global's name.
        name: String,
        /// How it is bound.
        binding: GlobalBinding,
    },
    /// An import the embedder supplies.
    Embedder,
}

/// How a `linkcache:global` import is satisfied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlobalBinding {
    /// An immutable global with its validated value.
    Value(Value),
    /// An immutable global that is stale in this process: no usable function reads it,
    /// so any value of its type (zero) is safe.
    Placeholder(ValType),
    /// A mutable global: the process's one shared global of that name (created zeroed if
    /// it does not exist yet; set when a function using it is bound).
    Shared(ValType),
}

/// The planner for one target. See the module docs.
#[derive(Clone, Debug)]
pub struct Planner {
    target: String,
    expected: Option<FuncSig>,
    pub(crate) candidates: BTreeMap<String, Vec<Candidate>>,
    pub(crate) manifests: BTreeMap<ModuleId, Result<Arc<Manifest>, String>>,
    pub(crate) globals: BTreeMap<GlobalKey, GlobalOutcome>,
}

impl Planner {
    /// A planner for `target`.
    pub fn new(target: impl Into<String>) -> Planner {
        Planner {
            target: target.into(),
            expected: None,
            candidates: BTreeMap::new(),
            manifests: BTreeMap::new(),
            globals: BTreeMap::new(),
        }
    }

    /// Only accept a definition of the target with this signature.
    pub fn expecting(mut self, signature: FuncSig) -> Planner {
        self.expected = Some(signature);
        self
    }

    /// The func_name being planned.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The candidates of `func_name`, in any order; duplicates of one module are fine.
    pub fn answer_candidates(&mut self, func_name: &str, candidates: Vec<Candidate>) {
        self.candidates.insert(func_name.into(), candidates);
    }

    /// Whether the candidates of `func_name` were answered already.
    pub fn has_candidates(&self, func_name: &str) -> bool {
        self.candidates.contains_key(func_name)
    }

    /// The manifest of `module` as answered, if it was.
    pub fn answered_manifest(&self, module: &ModuleId) -> Option<&Result<Arc<Manifest>, String>> {
        self.manifests.get(module)
    }

    /// The manifest of `module`, or why it is broken (unreadable, corrupt, lying about
    /// its bytes).
    pub fn answer_manifest(&mut self, module: ModuleId, manifest: Result<Arc<Manifest>, String>) {
        let manifest = manifest.and_then(|m| {
            if m.module == module {
                Ok(m)
            } else {
                Err(format!("manifest is for module {}", m.module.short()))
            }
        });
        self.manifests.insert(module, manifest);
    }

    /// The embedder's decision on one global definition: its value, or why it is stale.
    pub fn answer_global(&mut self, check: &GlobalCheck, outcome: GlobalOutcome) {
        let outcome = outcome.and_then(|value| {
            if value.ty() == check.global.ty {
                Ok(value)
            } else {
                Err(format!(
                    "the resolver returned a {} for a global of type {}",
                    value.ty(),
                    check.global.ty
                ))
            }
        });
        self.globals.insert(GlobalKey::of(&check.global), outcome);
    }

    /// Modules this planner found broken (their manifests), to report and remember.
    pub fn broken(&self) -> impl Iterator<Item = (&ModuleId, &str)> {
        self.manifests
            .iter()
            .filter_map(|(id, m)| m.as_ref().err().map(|reason| (id, reason.as_str())))
    }

    /// Runs the search over what is known so far.
    pub fn next(&self, linkage: &Linkage) -> Progress {
        let mut search = Search {
            linkage,
            planner: self,
            chosen: BTreeMap::new(),
            failed: BTreeMap::new(),
            journal: Vec::new(),
            plan_modules: BTreeMap::new(),
            pending: BTreeMap::new(),
        };
        let expected = self.expected.clone();
        let module = match search.resolve(&self.target, expected.as_ref()) {
            Err(need) => return Progress::Need(need),
            Ok(Err(miss)) => return Progress::Miss(miss),
            Ok(Ok(module)) => module,
        };
        match search.build(&self.target, module) {
            Ok(plan) => Progress::Ready(plan),
            Err(need) => Progress::Need(need),
        }
    }
}

enum Journal {
    Chose(String),
    Failed(String),
}

enum Rejection {
    /// The candidate's entry is unusable for a reason that concerns the entry itself.
    Broken(String),
    Miss(Miss),
}

struct Search<'a> {
    linkage: &'a Linkage,
    planner: &'a Planner,
    chosen: BTreeMap<String, ModuleId>,
    failed: BTreeMap<String, Miss>,
    journal: Vec<Journal>,
    /// Modules chosen in this search and not loaded yet, with how many functions chose
    /// them.
    plan_modules: BTreeMap<ModuleId, usize>,
    /// Global definitions met but not validated yet; asked for once the search is done.
    pending: BTreeMap<GlobalKey, GlobalCheck>,
}

impl Search<'_> {
    fn manifest(&self, module: &ModuleId) -> Option<Result<&Arc<Manifest>, &str>> {
        if let Some(m) = self.linkage.loaded_manifest(module) {
            return Some(Ok(m));
        }
        if let Some(reason) = self.linkage.broken_reason(module) {
            return Some(Err(reason));
        }
        self.planner
            .manifests
            .get(module)
            .map(|m| m.as_ref().map_err(|e| e.as_str()))
    }

    fn global_outcome(&self, def: &GlobalDef) -> Option<&GlobalOutcome> {
        let key = GlobalKey::of(def);
        self.linkage
            .global_outcome(&key)
            .or_else(|| self.planner.globals.get(&key))
    }

    /// Whether a global definition is known to be valid, known stale (with the reason),
    /// or not known yet (then it is queued for validation).
    fn check_global(&mut self, module: ModuleId, def: &GlobalDef) -> Option<Result<Value, String>> {
        match self.global_outcome(def).cloned() {
            None => {
                self.pending
                    .entry(GlobalKey::of(def))
                    .or_insert_with(|| GlobalCheck {
                        module,
                        global: def.clone(),
                    });
                None
            }
            Some(Err(reason)) => Some(Err(reason)),
            Some(Ok(value)) => {
                if def.mutable
                    && let Some(shared) = self.linkage.shared_global(&def.name)
                    && shared != value
                {
                    return Some(Err(format!(
                        "it defines {value}, but this process already set the global to {shared}"
                    )));
                }
                Some(Ok(value))
            }
        }
    }

    /// The value of the mutable global `name` that a function already chosen in this
    /// plan was compiled against, and that function: one process has one instance of a
    /// mutable global, so a plan must not bind functions compiled against two values.
    fn chosen_mutable_value(&self, name: &str) -> Option<(Value, String)> {
        self.chosen.iter().find_map(|(func, module)| {
            let manifest = self.manifest(module)?.ok()?;
            if !manifest.function(func)?.globals.iter().any(|g| g == name) {
                return None;
            }
            let def = manifest.global(name).filter(|d| d.mutable)?;
            match self.global_outcome(def)? {
                Ok(value) => Some((*value, func.clone())),
                Err(_) => None,
            }
        })
    }

    fn choose(&mut self, func: &str, module: ModuleId) {
        self.chosen.insert(func.into(), module);
        self.journal.push(Journal::Chose(func.into()));
        if !self.linkage.is_loaded(&module) {
            *self.plan_modules.entry(module).or_default() += 1;
        }
    }

    fn fail(&mut self, func: &str, miss: Miss) -> Miss {
        self.failed.insert(func.into(), miss.clone());
        self.journal.push(Journal::Failed(func.into()));
        miss
    }

    fn rollback(&mut self, mark: usize) {
        while self.journal.len() > mark {
            match self.journal.pop().expect("journal longer than mark") {
                Journal::Chose(func) => {
                    let module = self.chosen.remove(&func).expect("journaled choice");
                    if let Some(count) = self.plan_modules.get_mut(&module) {
                        *count -= 1;
                        if *count == 0 {
                            self.plan_modules.remove(&module);
                        }
                    }
                }
                Journal::Failed(func) => {
                    self.failed.remove(&func);
                }
            }
        }
    }

    fn signature_of(&self, func: &str, module: &ModuleId) -> Option<FuncSig> {
        let manifest = self.manifest(module)?.ok()?;
        Some(manifest.function(func)?.signature.clone())
    }

    fn check_signature(
        &self,
        func: &str,
        module: &ModuleId,
        expected: Option<&FuncSig>,
    ) -> Result<(), Miss> {
        match (expected, self.signature_of(func, module)) {
            (Some(expected), Some(found)) if *expected != found => Err(Miss::SignatureMismatch {
                function: func.into(),
                expected: expected.clone(),
                found,
            }),
            _ => Ok(()),
        }
    }

    /// `Err(need)` when more knowledge is needed; `Ok(Err(miss))` when `func` cannot be
    /// resolved; `Ok(Ok(module))` with the module it is (now) bound to.
    fn resolve(
        &mut self,
        func: &str,
        expected: Option<&FuncSig>,
    ) -> Result<Result<ModuleId, Miss>, Need> {
        if let Some(module) = self
            .linkage
            .binding(func)
            .or_else(|| self.chosen.get(func).copied())
        {
            return Ok(self
                .check_signature(func, &module, expected)
                .map(|()| module));
        }
        if let Some(miss) = self.failed.get(func) {
            return Ok(Err(miss.clone()));
        }
        let Some(listed) = self.planner.candidates.get(func) else {
            return Err(Need::Candidates(func.into()));
        };
        if listed.is_empty() {
            return Ok(Err(self.fail(
                func,
                Miss::Unknown {
                    function: func.into(),
                },
            )));
        }
        let mut candidates: BTreeMap<ModuleId, u64> = BTreeMap::new();
        for candidate in listed {
            let at = candidates
                .entry(candidate.module)
                .or_insert(candidate.committed_at);
            *at = (*at).min(candidate.committed_at);
        }
        let mut order: Vec<(u8, u64, ModuleId)> = candidates
            .into_iter()
            .map(|(module, at)| {
                let rank = if self.linkage.is_loaded(&module) {
                    0
                } else if self.plan_modules.contains_key(&module) {
                    1
                } else {
                    2
                };
                (rank, at, module)
            })
            .collect();
        order.sort();

        let mut broken = vec![];
        let mut first_miss = None;
        for (_, _, module) in order {
            let manifest = match self.manifest(&module) {
                None => return Err(Need::Manifest(module)),
                Some(Err(reason)) => {
                    broken.push((module, reason.into()));
                    continue;
                }
                Some(Ok(manifest)) => Arc::clone(manifest),
            };
            match self.try_candidate(func, module, &manifest, expected)? {
                Ok(()) => return Ok(Ok(module)),
                Err(Rejection::Broken(reason)) => broken.push((module, reason)),
                Err(Rejection::Miss(miss)) => {
                    first_miss.get_or_insert(miss);
                }
            }
        }
        let miss = first_miss.unwrap_or(Miss::Broken {
            function: func.into(),
            modules: broken,
        });
        Ok(Err(self.fail(func, miss)))
    }

    fn try_candidate(
        &mut self,
        func: &str,
        module: ModuleId,
        manifest: &Manifest,
        expected: Option<&FuncSig>,
    ) -> Result<Result<(), Rejection>, Need> {
        let Some(entry) = manifest.function(func) else {
            return Ok(Err(Rejection::Broken(format!(
                "the index lists it for `{func}`, but its manifest does not define it"
            ))));
        };
        if let Some(expected) = expected
            && *expected != entry.signature
        {
            return Ok(Err(Rejection::Miss(Miss::SignatureMismatch {
                function: func.into(),
                expected: expected.clone(),
                found: entry.signature.clone(),
            })));
        }
        for global in &entry.globals {
            let def = manifest
                .global(global)
                .expect("checked manifests define their globals");
            let outcome = match self.check_global(module, def) {
                Some(Ok(value)) if def.mutable => match self.chosen_mutable_value(&def.name) {
                    Some((other, user)) if other != value => Some(Err(format!(
                        "it defines {value}, but `{user}`, also in this plan, was compiled against {other}"
                    ))),
                    _ => Some(Ok(value)),
                },
                outcome => outcome,
            };
            if let Some(Err(reason)) = outcome {
                return Ok(Err(Rejection::Miss(Miss::StaleGlobal {
                    function: func.into(),
                    global: global.clone(),
                    reason,
                })));
            }
        }
        let mark = self.journal.len();
        self.choose(func, module);
        for callee in &entry.calls {
            let signature = manifest
                .fn_imports()
                .find(|(name, _)| name == callee)
                .map(|(_, sig)| sig.clone())
                .expect("checked manifests import what they call");
            if let Err(miss) = self.resolve(callee, Some(&signature))? {
                self.rollback(mark);
                let miss = match miss {
                    Miss::Unknown { function } => Miss::MissingDependency {
                        function: func.into(),
                        dependency: function,
                    },
                    other => other,
                };
                return Ok(Err(Rejection::Miss(miss)));
            }
        }
        Ok(Ok(()))
    }

    fn build(mut self, target: &str, target_module: ModuleId) -> Result<LoadPlan, Need> {
        let planned: BTreeSet<ModuleId> = self.plan_modules.keys().copied().collect();
        let manifests: BTreeMap<ModuleId, Arc<Manifest>> = planned
            .iter()
            .map(|id| {
                let manifest = self
                    .manifest(id)
                    .and_then(Result::ok)
                    .expect("chosen modules have manifests");
                (*id, Arc::clone(manifest))
            })
            .collect();
        let bound_to = |search: &Search<'_>, func: &str| -> Option<ModuleId> {
            search
                .chosen
                .get(func)
                .copied()
                .or_else(|| search.linkage.binding(func))
        };

        // Order: Tarjan's SCCs come out with every group after the groups it has edges to,
        // and an edge here means "imports from", so dependencies come first.
        let mut graph: DiGraphMap<ModuleId, ()> = DiGraphMap::new();
        for (id, manifest) in &manifests {
            graph.add_node(*id);
            for (func, _) in manifest.fn_imports() {
                if let Some(dep) = bound_to(&self, func)
                    && planned.contains(&dep)
                {
                    graph.add_edge(*id, dep, ());
                }
            }
        }
        let mut groups = petgraph::algo::tarjan_scc(&graph);
        let mut group_of = BTreeMap::new();
        let mut cycles = vec![];
        for (index, group) in groups.iter_mut().enumerate() {
            group.sort();
            for id in group.iter() {
                group_of.insert(*id, index);
            }
            if group.len() > 1 || graph.contains_edge(group[0], group[0]) {
                cycles.push(group.clone());
            }
        }

        let mut modules = Vec::with_capacity(planned.len());
        for id in groups.into_iter().flatten() {
            let manifest = &manifests[&id];
            let mut imports = Vec::with_capacity(manifest.imports.len());
            for import in &manifest.imports {
                let binding = match (&import.kind, import.namespace.as_str()) {
                    (ImportKind::Func(signature), FN_NAMESPACE) => {
                        let func = import.name.clone();
                        match bound_to(&self, &func) {
                            Some(dep)
                                if self.signature_of(&func, &dep).as_ref() == Some(signature) =>
                            {
                                if planned.contains(&dep) && group_of[&dep] == group_of[&id] {
                                    ImportBinding::Trampoline { func }
                                } else {
                                    ImportBinding::Export { module: dep, func }
                                }
                            }
                            _ => ImportBinding::Lazy {
                                func,
                                signature: signature.clone(),
                            },
                        }
                    }
                    (ImportKind::Global { ty, mutable }, GLOBAL_NAMESPACE) => {
                        let def = manifest.global(&import.name).expect("checked manifest");
                        let binding = if *mutable {
                            GlobalBinding::Shared(*ty)
                        } else {
                            match self.check_global(id, def) {
                                Some(Ok(value)) => GlobalBinding::Value(value),
                                Some(Err(_)) | None => GlobalBinding::Placeholder(*ty),
                            }
                        };
                        ImportBinding::Global {
                            name: import.name.clone(),
                            binding,
                        }
                    }
                    _ => ImportBinding::Embedder,
                };
                imports.push(binding);
            }
            modules.push(PlannedModule {
                module: id,
                manifest: Arc::clone(manifest),
                imports,
            });
        }

        let mut set_globals = BTreeMap::new();
        let chosen: Vec<(String, ModuleId)> =
            self.chosen.iter().map(|(f, m)| (f.clone(), *m)).collect();
        for (func, module) in &chosen {
            let manifest = Arc::clone(self.manifest(module).and_then(Result::ok).expect("chosen"));
            let entry = manifest.function(func).expect("chosen entries exist");
            for global in &entry.globals {
                let def = manifest.global(global).expect("checked manifest");
                // A mutable global is set once per process, when the first function using
                // it is bound; later bindings must not reset what the code has changed.
                let already_set = self.linkage.shared_global(global).is_some();
                if let (true, false, Some(Ok(value))) =
                    (def.mutable, already_set, self.check_global(*module, def))
                {
                    set_globals.insert(global.clone(), (def.ty, value));
                }
            }
        }
        if !self.pending.is_empty() {
            return Err(Need::Globals(self.pending.into_values().collect()));
        }

        let signature = self
            .signature_of(target, &target_module)
            .expect("the target's module defines it");
        Ok(LoadPlan {
            target: target.into(),
            module: target_module,
            signature,
            modules,
            cycles,
            bindings: chosen,
            set_globals: set_globals
                .into_iter()
                .map(|(name, (ty, value))| (name, ty, value))
                .collect(),
            generation: self.linkage.generation(),
        })
    }
}
