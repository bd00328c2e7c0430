//! What one process keeps in memory for every store and thread of a [`Cache`](crate::Cache):
//! compiled wasmtime `Module`s by ModuleId, decoded manifests, and the plans of targets
//! made in a fresh store.
//!
//! - **Modules.** A `Module` is `Send + Sync` and usable in any store of its engine, so
//!   each is checked and deserialized (or compiled) at most once per process while it
//!   stays in the registry. Two threads that need the same module at once wait for one
//!   load instead of doing it twice. The registry holds at most `capacity` modules and
//!   forgets the least recently used beyond that; instances already made from a
//!   forgotten module keep working (a `Module` is reference-counted).
//! - **Manifests** are content-addressed (a ModuleId is the hash of the bytes they
//!   describe), so a decoded manifest never goes stale.
//! - **Fresh plans.** The plan of a target made in a store that has loaded nothing yet
//!   is the same for the next such store, as long as nothing was added or found broken
//!   since: a store per request reuses it without reading the directory.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use linkcache_core::{FuncSig, LoadPlan, Manifest, ModuleId};
use lru::LruCache;
use wasmtime::Module;

/// Compiled modules, manifests and fresh plans of one process. See the module docs.
pub(crate) struct Registry {
    /// At most `capacity` entries in each LRU; the maps grow with use instead of
    /// allocating room for `capacity` up front (a fresh process that loads one module
    /// should not pay page faults for 4,096).
    capacity: usize,
    modules: Mutex<LruCache<ModuleId, Arc<Mutex<Option<Module>>>>>,
    manifests: Mutex<LruCache<ModuleId, Arc<Manifest>>>,
    fresh_plans: Mutex<HashMap<PlanKey, Arc<LoadPlan>>>,
}

/// A target as a fresh store asks for it: the func_name and the signature expected.
type PlanKey = (String, Option<FuncSig>);

/// Fresh plans kept at most; beyond it the memo starts over.
const FRESH_PLANS_KEPT: usize = 4096;

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section here only inserts or removes whole entries).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    pub(crate) fn new(capacity: NonZeroUsize) -> Registry {
        Registry {
            capacity: capacity.get(),
            modules: Mutex::new(LruCache::unbounded()),
            manifests: Mutex::new(LruCache::unbounded()),
            fresh_plans: Mutex::new(HashMap::new()),
        }
    }

    /// The compiled module `id`, loading it with `load` when this process has none.
    /// Concurrent callers for the same id wait for one load; a failed load is not
    /// remembered, so the next caller tries again (the bytes may have been repaired).
    /// Returns the module and whether this call loaded it.
    pub(crate) fn module(
        &self,
        id: &ModuleId,
        load: impl FnOnce() -> Result<Module, String>,
    ) -> Result<(Module, bool), String> {
        let slot = {
            let mut modules = lock(&self.modules);
            let slot = Arc::clone(modules.get_or_insert(*id, || Arc::new(Mutex::new(None))));
            while modules.len() > self.capacity {
                modules.pop_lru();
            }
            slot
        };
        let mut slot = lock(&slot);
        if let Some(module) = slot.as_ref() {
            return Ok((module.clone(), false));
        }
        let module = load()?;
        *slot = Some(module.clone());
        Ok((module, true))
    }

    /// Forgets the compiled module `id` (it was found broken or was repaired).
    pub(crate) fn forget_module(&self, id: &ModuleId) {
        lock(&self.modules).pop(id);
        lock(&self.manifests).pop(id);
    }

    /// How many compiled modules the process holds.
    pub(crate) fn modules_held(&self) -> usize {
        lock(&self.modules).len()
    }

    pub(crate) fn manifest(&self, id: &ModuleId) -> Option<Arc<Manifest>> {
        lock(&self.manifests).get(id).cloned()
    }

    pub(crate) fn remember_manifest(&self, manifest: Arc<Manifest>) {
        let mut manifests = lock(&self.manifests);
        manifests.put(manifest.module, manifest);
        while manifests.len() > self.capacity {
            manifests.pop_lru();
        }
    }

    pub(crate) fn fresh_plan(
        &self,
        func_name: &str,
        expected: Option<&FuncSig>,
    ) -> Option<Arc<LoadPlan>> {
        lock(&self.fresh_plans)
            .get(&(func_name.to_string(), expected.cloned()))
            .cloned()
    }

    pub(crate) fn remember_fresh_plan(
        &self,
        func_name: &str,
        expected: Option<&FuncSig>,
        plan: Arc<LoadPlan>,
    ) {
        let mut plans = lock(&self.fresh_plans);
        if plans.len() >= FRESH_PLANS_KEPT {
            plans.clear();
        }
        plans.insert((func_name.to_string(), expected.cloned()), plan);
    }

    /// Forgets every fresh plan: a module was added or found broken, which may change
    /// what a fresh store would bind.
    pub(crate) fn forget_fresh_plans(&self) {
        lock(&self.fresh_plans).clear();
    }
}
