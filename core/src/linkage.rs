//! [`Linkage`]: what one process (or browser tab) has loaded and bound.
//!
//! The planner reads it; a host changes it only through [`Linkage::commit`] after it has
//! instantiated every module of a plan, and through [`Linkage::learn`] /
//! [`Linkage::mark_broken`] when it finds entries unusable. A function becomes bound
//! only in a commit, after every global it uses validated, so a failed validation
//! leaves it unbound and never half-validated.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::plan::GlobalKey;
use crate::{
    GlobalBinding, GlobalOutcome, ImportBinding, LoadPlan, Manifest, ModuleId, Name, Planner, Value,
};

/// Per-process link state. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct Linkage {
    generation: u64,
    bindings: BTreeMap<Name, ModuleId>,
    loaded: BTreeMap<ModuleId, Arc<Manifest>>,
    load_order: Vec<ModuleId>,
    globals: BTreeMap<GlobalKey, GlobalOutcome>,
    shared_globals: BTreeMap<Name, Value>,
    broken: BTreeMap<ModuleId, String>,
    /// Immutable globals a loaded module was instantiated with a placeholder for:
    /// (module, global name).
    placeholders: BTreeSet<(ModuleId, Name)>,
}

/// A plan was made against an older state of the linkage (another target committed in
/// between); plan again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the load plan is outdated: another target was committed since it was made")]
pub struct OutdatedPlan;

impl Linkage {
    /// A process that has loaded nothing yet.
    pub fn new() -> Linkage {
        Linkage::default()
    }

    /// Counts commits; a plan is valid only against the generation it was made in.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The module `func_name` is bound to in this process.
    pub fn binding(&self, func_name: &str) -> Option<ModuleId> {
        self.bindings.get(func_name).copied()
    }

    /// Every binding, sorted by func_name.
    pub fn bindings(&self) -> impl Iterator<Item = (&str, ModuleId)> {
        self.bindings.iter().map(|(f, m)| (f.as_str(), *m))
    }

    /// Whether `module` is instantiated in this process.
    pub fn is_loaded(&self, module: &ModuleId) -> bool {
        self.loaded.contains_key(module)
    }

    /// The manifest of a loaded module.
    pub fn loaded_manifest(&self, module: &ModuleId) -> Option<&Arc<Manifest>> {
        self.loaded.get(module)
    }

    /// Loaded modules in the order they were instantiated.
    pub fn loaded_modules(&self) -> &[ModuleId] {
        &self.load_order
    }

    /// Why `module` is unusable in this process, if it is.
    pub fn broken_reason(&self, module: &ModuleId) -> Option<&str> {
        self.broken.get(module).map(String::as_str)
    }

    /// Modules found broken in this process, with the reasons.
    pub fn broken_modules(&self) -> impl Iterator<Item = (&ModuleId, &str)> {
        self.broken.iter().map(|(m, r)| (m, r.as_str()))
    }

    /// The embedder's decision on a global definition, if it was asked already.
    pub fn global_outcome(&self, key: &GlobalKey) -> Option<&GlobalOutcome> {
        self.globals.get(key)
    }

    /// Whether the embedder decided on any global definition in this process yet.
    pub fn has_global_outcomes(&self) -> bool {
        !self.globals.is_empty()
    }

    /// The value the process's shared (mutable) global `name` was set to.
    pub fn shared_global(&self, name: &str) -> Option<Value> {
        self.shared_globals.get(name).copied()
    }

    /// Whether the loaded `module` was instantiated with a placeholder for its immutable
    /// global `global` (stale, or not validated because no function of that plan used
    /// it). A function of that module that uses the global cannot be bound to this
    /// instance; the planner falls back to a duplicate, or the target is a
    /// [`crate::Miss::StaleGlobal`] in this process.
    pub fn has_placeholder(&self, module: &ModuleId, global: &str) -> bool {
        self.placeholders.contains(&(*module, Name::from(global)))
    }

    /// Remembers that `module` cannot be loaded (its bytes are corrupt, its compilation
    /// failed, ...): later plans skip it and fall back to a duplicate.
    pub fn mark_broken(&mut self, module: ModuleId, reason: impl Into<String>) {
        self.broken.entry(module).or_insert_with(|| reason.into());
    }

    /// Forgets that `module` was broken: its entry was repaired (committed again with
    /// good bytes), so later plans may try it again.
    pub fn forget_broken(&mut self, module: &ModuleId) {
        self.broken.remove(module);
    }

    /// Remembers what a planner learned: broken manifests and global decisions.
    pub fn learn(&mut self, planner: &Planner) {
        for (module, reason) in planner.broken() {
            self.mark_broken(*module, reason);
        }
        for (key, outcome) in &planner.globals {
            self.globals
                .entry(key.clone())
                .or_insert_with(|| outcome.clone());
        }
    }

    /// Records a plan whose modules are all instantiated: they are loaded, its functions
    /// are bound, its mutable globals set.
    pub fn commit(&mut self, plan: &LoadPlan) -> Result<(), OutdatedPlan> {
        if plan.generation != self.generation {
            return Err(OutdatedPlan);
        }
        for planned in &plan.modules {
            if self
                .loaded
                .insert(planned.module, Arc::clone(&planned.manifest))
                .is_none()
            {
                self.load_order.push(planned.module);
            }
            for import in &planned.imports {
                if let ImportBinding::Global {
                    name,
                    binding: GlobalBinding::Placeholder(_),
                } = import
                {
                    self.placeholders.insert((planned.module, name.clone()));
                }
            }
        }
        for (func, module) in &plan.bindings {
            self.bindings.insert(func.clone(), *module);
        }
        for (name, _, value) in &plan.set_globals {
            self.shared_globals.insert(name.clone(), *value);
        }
        self.generation += 1;
        Ok(())
    }
}
