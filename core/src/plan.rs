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
//! A candidate for a func_name is usable when its manifest is intact and defines it with
//! the expected signature, none of the globals it uses is stale, and every func_name it
//! calls has a usable candidate in turn (a call back into the cycle counts: modules that
//! import each other are linked with trampolines). Among usable duplicates the order is
//! DESIGN.md's: the binding already made in this process; a candidate in a module already
//! loaded; one in a module already chosen for this plan; the earliest committed, ties
//! broken by [`ModuleId`]. `search/` computes this in polynomial time without
//! recursion; `build.rs` turns the choice into a plan.
//!
//! Only the globals the chosen functions use go to the embedder for validation
//! ([`Need::Globals`]), never the other globals of the modules they live in.

mod build;
mod compact;
mod kept;
mod search;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use self::build::build;
pub use self::kept::{KeptGlobal, KeptPlan};
use self::search::{Found, Search};
use crate::{FuncSig, GlobalDef, GlobalOutcome, Linkage, Manifest, ModuleId, Name, ValType, Value};

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
    pub name: Name,
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
///
/// A host keeps a plan for a process that has loaded nothing yet as a [`KeptPlan`],
/// which checks what it reads back; a plan itself does not deserialize, so that no
/// unchecked plan reaches [`Linkage::commit`].
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
    pub bindings: Vec<(Name, ModuleId)>,
    /// Mutable globals to set now, because a function this plan binds is the first in the
    /// process to use them (a global already set keeps the value the code gave it).
    pub set_globals: Vec<(Name, ValType, Value)>,
    pub(crate) generation: u64,
}

impl LoadPlan {
    /// Whether this plan binds nothing new: the target is already bound in the process.
    pub fn is_bound_already(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Whether every global this plan binds or sets is bound as `decided` (the
    /// embedder's decisions now, each on a definition by name and bytes) says: a value
    /// where the decision is that value, a placeholder only where no value was decided.
    ///
    /// A host replaying a kept plan asks the globals again and checks this too, so that
    /// a record that decodes and holds together but binds a value the embedder did not
    /// give (damaged, or forged with a valid checksum) is planned anew instead of linked.
    pub fn binds_as_decided(&self, decided: &[(&GlobalDef, &GlobalOutcome)]) -> bool {
        let decision = |def: &GlobalDef| {
            decided
                .iter()
                .find(|(d, _)| d.name == def.name && d.definition == def.definition)
                .map(|(_, outcome)| *outcome)
        };
        let imports_as_decided = self.modules.iter().all(|planned| {
            planned.imports.iter().all(|binding| {
                let ImportBinding::Global { name, binding } = binding else {
                    return true;
                };
                let def = planned
                    .manifest
                    .globals
                    .iter()
                    .find(|def| def.name == *name);
                let decided = def.and_then(decision);
                match binding {
                    GlobalBinding::Value(value) => decided.is_some_and(|o| o.as_ref() == Ok(value)),
                    GlobalBinding::Placeholder(_) => !decided.is_some_and(|o| o.is_ok()),
                    GlobalBinding::Shared(_) => true,
                }
            })
        });
        imports_as_decided
            && self.set_globals.iter().all(|(name, _, value)| {
                decided
                    .iter()
                    .any(|(def, outcome)| def.name == *name && outcome.as_ref() == Ok(value))
            })
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportBinding {
    /// The export `func` of `module`, which is loaded already or instantiated earlier in
    /// this plan.
    Export {
        /// The module exporting it.
        module: ModuleId,
        /// The func_name.
        func: Name,
    },
    /// `func` is defined by a module of the same strongly connected group: forward to the
    /// process's binding of `func`, which exists once the whole group is instantiated.
    Trampoline {
        /// The func_name.
        func: Name,
    },
    /// `func` is outside this plan's closure: a stub that targets `func` on first call
    /// (and traps with the miss if it cannot be targeted).
    Lazy {
        /// The func_name.
        func: Name,
        /// Its signature, for the stub's type.
        signature: FuncSig,
    },
    /// A `linkcache:global` import.
    Global {
        /// The global's name.
        name: Name,
        /// How it is bound.
        binding: GlobalBinding,
    },
    /// An import the embedder supplies.
    Embedder,
}

/// How a `linkcache:global` import is satisfied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
        self.next_counting_steps(linkage).0
    }

    /// [`Planner::next`], with the number of elementary steps the search took (for
    /// tests that bound the planner's work without a clock: it grows polynomially, in
    /// practice linearly, with the number of candidates and calls in the closure).
    pub fn next_counting_steps(&self, linkage: &Linkage) -> (Progress, u64) {
        let mut search = Search::new(self, linkage);
        let progress = match search.run() {
            Err(need) => Progress::Need(need),
            Ok(Err(miss)) => Progress::Miss(miss),
            Ok(Ok(Found::Bound(module))) => {
                Progress::Ready(build(&mut search, &self.target, module, &[]))
            }
            Ok(Ok(Found::Chosen {
                chosen,
                target,
                pending,
            })) => {
                if pending.is_empty() {
                    Progress::Ready(build(&mut search, &self.target, target, &chosen))
                } else {
                    Progress::Need(Need::Globals(pending))
                }
            }
        };
        (progress, search.steps)
    }
}
