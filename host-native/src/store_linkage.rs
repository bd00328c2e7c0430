//! Targeting in the embedder's own wasmtime `Store<T>`: [`StoreLinkage`], the link state
//! a store carries in its data, [`LinkageView`], how linkcache reaches it, and the code
//! that turns a core [`LoadPlan`] into instances of that store.
//!
//! The embedder keeps a `StoreLinkage<T>` in its own store data (as it keeps a
//! `WasiCtx` for WASI) and implements [`LinkageView`] to hand it out. Host functions then
//! see the embedder's own `T` in their `Caller<T>`, and lazy edges and cycle
//! trampolines, which are host functions of linkcache's, reach the linkage through the
//! same trait from inside a call:
//!
//! ```
//! use linkcache_native::{Cache, LinkageView, StoreLinkage};
//! use wasmtime::{Caller, Linker, Store};
//!
//! struct Request {
//!     linkage: StoreLinkage<Request>,
//!     log: Vec<i64>, // the embedder's own state
//! }
//! impl LinkageView for Request {
//!     fn linkage(&mut self) -> &mut StoreLinkage<Request> {
//!         &mut self.linkage
//!     }
//! }
//!
//! let dir = tempfile::tempdir()?;
//! let cache = Cache::open(dir.path())?;
//! cache.add_module(&wat::parse_str(r#"(module
//!     (import "env" "log" (func $log (param i64)))
//!     (func (export "app.run") (param i64) (result i64)
//!         (call $log (local.get 0))
//!         (i64.add (local.get 0) (i64.const 1))))"#)?)?;
//!
//! // Once per process: the embedder's imports, shared by every store.
//! let mut linker = Linker::<Request>::new(cache.engine());
//! linker.func_wrap("env", "log", |mut caller: Caller<'_, Request>, x: i64| {
//!     caller.data_mut().log.push(x);
//! })?;
//! let linker = std::sync::Arc::new(linker);
//!
//! // Per request: a fresh store; compiled code is reused from the process.
//! let mut store = Store::new(
//!     cache.engine(),
//!     Request { linkage: cache.store_linkage(linker.clone()), log: Vec::new() },
//! );
//! let run = cache.get_typed_func::<i64, i64, _>(&mut store, "app.run")?;
//! assert_eq!(run.call(&mut store, 41)?, 42);
//! assert_eq!(store.data().log, [41]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A store's linkage is either synchronous ([`Cache::store_linkage`], targeted with
//! [`Cache::get_func`]) or asynchronous ([`Cache::async_store_linkage`], targeted with
//! [`Cache::get_func_async`] and called with wasmtime's `call_async`), because its lazy
//! stubs and trampolines must call the way the store is called.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use linkcache_core::{
    Candidate, FuncSig, GlobalBinding, GlobalCheck, GlobalDef, GlobalOutcome, ImportBinding,
    ImportKind, Linkage, LoadFailure, LoadPlan, Manifest, Miss, ModuleId, Name, Value,
};
use tracing::Instrument;
use wasmtime::{
    AsContextMut, Extern, Func, Global, GlobalType, Instance, Linker, Mutability, StoreContextMut,
    TypedFunc, Val, WasmParams, WasmResults,
};

use crate::cache::{Cache, Shared};
use crate::dir::{FreshPlan, PlanAnswers, PlanHint, is_vanished};
use crate::error::Error;
use crate::load::{self, func_type, to_val, val_type};
use crate::registry::lock;
use crate::simple::{SimpleView, params_for, typed, values_of};

/// How linkcache reaches the [`StoreLinkage`] inside an embedder's store data `T`.
///
/// Implement it by returning the field that holds the linkage.
pub trait LinkageView: Sized + 'static {
    /// The store's linkage.
    fn linkage(&mut self) -> &mut StoreLinkage<Self>;
}

/// What one wasmtime store has instantiated and bound: one binding per func_name, the
/// store's instances, its lazy stubs and trampolines, the embedder's linker for its own
/// imports. Made by [`Cache::store_linkage`]; kept in the store's data.
pub struct StoreLinkage<T: 'static> {
    shared: Arc<Shared>,
    linker: Arc<Linker<T>>,
    asynchronous: bool,
    linkage: Linkage,
    instances: HashMap<ModuleId, Instance>,
    funcs: HashMap<Name, Func>,
    shared_globals: HashMap<String, Global>,
    /// Set while a plan is instantiated; a lazy stub that fires then (from a start
    /// function) must not start another load. Reset by a guard, so a panic or a
    /// cancelled future cannot leave it set.
    loading: Arc<AtomicBool>,
    /// The simple path's snapshot of bindings, updated at each commit.
    pub(crate) observer: Option<Arc<Mutex<SimpleView>>>,
    /// How many of the process's repairs this store has applied to its broken marks.
    repairs_seen: usize,
    /// Set for an asynchronous linkage: how its stubs are made.
    async_stub: Option<AsyncStubFn<T>>,
    /// Modules skipped by the running target because their files vanished (gc): marked
    /// broken in `linkage` only until the target ends.
    vanished: Vec<ModuleId>,
}

impl<T: 'static> StoreLinkage<T> {
    pub(crate) fn new(shared: Arc<Shared>, linker: Arc<Linker<T>>) -> Self {
        StoreLinkage {
            shared,
            linker,
            asynchronous: false,
            async_stub: None,
            repairs_seen: 0,
            linkage: Linkage::new(),
            instances: HashMap::new(),
            funcs: HashMap::new(),
            shared_globals: HashMap::new(),
            loading: Arc::new(AtomicBool::new(false)),
            observer: None,
            vanished: Vec::new(),
        }
    }

    /// The module `func_name` is bound to in this store, if it was targeted.
    pub fn binding(&self, func_name: &str) -> Option<ModuleId> {
        self.linkage.binding(func_name)
    }

    /// The modules instantiated in this store, in order.
    pub fn loaded_modules(&self) -> &[ModuleId] {
        self.linkage.loaded_modules()
    }

    /// The id of the [`Cache`] this linkage belongs to ([`Cache::id`]).
    pub fn cache_id(&self) -> u64 {
        self.shared.id
    }

    /// Whether this linkage is targeted asynchronously.
    pub fn is_async(&self) -> bool {
        self.asynchronous
    }
}

impl<T: 'static> std::fmt::Debug for StoreLinkage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLinkage")
            .field("cache", &self.shared.id)
            .field("asynchronous", &self.asynchronous)
            .field("loaded", &self.linkage.loaded_modules().len())
            .field("bound", &self.funcs.len())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A linkage for a new store of the embedder's, targeted synchronously. `linker`
    /// supplies the imports outside the `linkcache:*` namespaces (memories, WASI, host
    /// functions); share one `Arc<Linker<T>>` between stores, since it holds no
    /// instances.
    pub fn store_linkage<T>(&self, linker: impl Into<Arc<Linker<T>>>) -> StoreLinkage<T> {
        StoreLinkage::new(Arc::clone(&self.shared), linker.into())
    }

    /// A linkage for a new store that is targeted with [`Cache::get_func_async`] and
    /// called with wasmtime's `call_async`; lazy edges then load asynchronously.
    #[cfg(feature = "async")]
    pub fn async_store_linkage<T: LinkageView + Send>(
        &self,
        linker: impl Into<Arc<Linker<T>>>,
    ) -> StoreLinkage<T> {
        let mut linkage = StoreLinkage::new(Arc::clone(&self.shared), linker.into());
        linkage.asynchronous = true;
        linkage.async_stub = Some(make_async_stub::<T>);
        linkage
    }

    /// Targets `func_name` in the embedder's store: loads what it needs into the store
    /// and returns wasmtime's own [`Func`], or [`Error::Miss`] naming why it cannot.
    pub fn get_func<T: LinkageView>(
        &self,
        mut store: impl AsContextMut<Data = T>,
        func_name: &str,
    ) -> Result<Func, Error> {
        let mut cx = store.as_context_mut();
        self.check_linkage(cx.data_mut().linkage(), false)?;
        Ok(target_sync(&mut cx, func_name, None, true)?.func)
    }

    /// Like [`Cache::get_func`], typed `P -> R` (for example `i64` and `i64`, or
    /// `(i32, i32)` and `()`).
    pub fn get_typed_func<P: WasmParams, R: WasmResults, T: LinkageView>(
        &self,
        mut store: impl AsContextMut<Data = T>,
        func_name: &str,
    ) -> Result<TypedFunc<P, R>, Error> {
        let mut cx = store.as_context_mut();
        self.check_linkage(cx.data_mut().linkage(), false)?;
        let bound = target_sync(&mut cx, func_name, None, true)?;
        typed(&bound, &cx, func_name)
    }

    /// Targets `func_name` in an asynchronous store (one whose linkage comes from
    /// [`Cache::async_store_linkage`]): instantiation runs with `instantiate_async`, and
    /// lazy edges reached later load asynchronously inside `call_async`. Reading the
    /// cache's small index and manifest files, and compiling a module that has no
    /// precompiled artifact, happen on the calling task.
    #[cfg(feature = "async")]
    pub async fn get_func_async<T: LinkageView + Send>(
        &self,
        mut store: impl AsContextMut<Data = T>,
        func_name: &str,
    ) -> Result<Func, Error> {
        let mut cx = store.as_context_mut();
        self.check_linkage(cx.data_mut().linkage(), true)?;
        Ok(target(&mut cx, func_name, None, true).await?.func)
    }

    /// Like [`Cache::get_func_async`], typed `P -> R`.
    #[cfg(feature = "async")]
    pub async fn get_typed_func_async<P: WasmParams, R: WasmResults, T: LinkageView + Send>(
        &self,
        mut store: impl AsContextMut<Data = T>,
        func_name: &str,
    ) -> Result<TypedFunc<P, R>, Error> {
        let mut cx = store.as_context_mut();
        self.check_linkage(cx.data_mut().linkage(), true)?;
        let bound = target(&mut cx, func_name, None, true).await?;
        typed(&bound, &cx, func_name)
    }

    /// Targets `func_name` in the embedder's store; on a miss asks `compile` for
    /// modules, as [`Cache::get_or_compile`] does for the simple path.
    pub fn get_typed_func_or_compile<P, R, T, E>(
        &self,
        mut store: impl AsContextMut<Data = T>,
        func_name: &str,
        compile: impl FnMut(&Miss) -> Result<Vec<Vec<u8>>, E>,
    ) -> Result<TypedFunc<P, R>, Error>
    where
        P: WasmParams,
        R: WasmResults,
        T: LinkageView,
        E: std::fmt::Display,
    {
        let mut cx = store.as_context_mut();
        self.compile_until(
            func_name,
            || self.get_typed_func::<P, R, T>(&mut cx, func_name),
            compile,
        )
    }

    /// Targets and calls `func_name` in the embedder's (synchronous) store with
    /// dynamically typed arguments.
    pub fn call_in<T: LinkageView>(
        &self,
        mut store: impl AsContextMut<Data = T>,
        func_name: &str,
        args: &[Value],
    ) -> Result<Vec<Value>, Error> {
        let mut cx = store.as_context_mut();
        self.check_linkage(cx.data_mut().linkage(), false)?;
        let bound = target_sync(&mut cx, func_name, None, true)?;
        call_dynamic(&mut cx, &bound, func_name, args)
    }

    fn check_linkage<T: 'static>(
        &self,
        linkage: &StoreLinkage<T>,
        asynchronous: bool,
    ) -> Result<(), Error> {
        if linkage.shared.id != self.shared.id {
            return Err(Error::WrongCache);
        }
        if linkage.asynchronous != asynchronous {
            return Err(Error::Link(if asynchronous {
                "this store's linkage is synchronous (Cache::store_linkage): target with get_func, \
                 or make the linkage with Cache::async_store_linkage"
                    .into()
            } else {
                "this store's linkage is asynchronous (Cache::async_store_linkage): target with \
                 get_func_async and call with call_async"
                    .into()
            }));
        }
        Ok(())
    }
}

/// A function bound in a store: the function, its signature and its module.
pub(crate) struct Bound {
    pub func: Func,
    pub signature: FuncSig,
    pub module: ModuleId,
}

/// Calls a bound function with dynamically typed arguments.
pub(crate) fn call_dynamic<T>(
    mut store: impl AsContextMut<Data = T>,
    bound: &Bound,
    func_name: &str,
    args: &[Value],
) -> Result<Vec<Value>, Error> {
    let params = params_for(func_name, &bound.signature, args)?;
    let mut results = vec![Val::I32(0); bound.signature.results.len()];
    bound
        .func
        .call(&mut store, &params, &mut results)
        .map_err(|source| Error::Trap {
            function: func_name.to_string(),
            source,
        })?;
    values_of(func_name, &results)
}

/// [`target`] for a synchronous store, whose load never waits: it runs to the end in
/// one poll.
pub(crate) fn target_sync<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    func_name: &str,
    expected: Option<&FuncSig>,
    count_hit: bool,
) -> Result<Bound, Error> {
    let future = pin!(target(cx, func_name, expected, count_hit));
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(outcome) => outcome,
        Poll::Pending => unreachable!("a synchronous store instantiates without waiting"),
    }
}

/// Targets `func_name` in the store behind `cx`, loading what it needs: the one code
/// path of synchronous and asynchronous stores (a synchronous store never waits in it).
///
/// `count_hit` is false for the internal target of a call to a function the caller
/// targeted already, so that statistics count what the user asked for.
pub(crate) async fn target<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    func_name: &str,
    expected: Option<&FuncSig>,
    count_hit: bool,
) -> Result<Bound, Error> {
    let started = Instant::now();
    let shared = Arc::clone(&cx.data_mut().linkage().shared);
    let span = tracing::debug_span!("linkcache.target", func = func_name);
    let result = target_inner(cx, &shared, func_name, expected)
        .instrument(span)
        .await;
    shared.count(|stats| {
        stats.load_time += started.elapsed();
        match &result {
            Ok(_) if count_hit => stats.hits += 1,
            Ok(_) => {}
            Err(Error::Miss(miss)) => {
                *stats.misses.entry(miss.cause().to_string()).or_default() += 1
            }
            Err(_) => {}
        }
    });
    if let Err(Error::Miss(miss)) = &result {
        tracing::debug!(func = func_name, %miss, "linkcache: miss");
    }
    result
}

async fn target_inner<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    shared: &Arc<Shared>,
    func_name: &str,
    expected: Option<&FuncSig>,
) -> Result<Bound, Error> {
    let result = target_planned(cx, shared, func_name, expected).await;
    let view = cx.data_mut().linkage();
    for module in std::mem::take(&mut view.vanished) {
        view.linkage.forget_broken(&module);
    }
    result
}

async fn target_planned<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    shared: &Arc<Shared>,
    func_name: &str,
    expected: Option<&FuncSig>,
) -> Result<Bound, Error> {
    if let Some(bound) = already_bound(cx.data_mut().linkage(), func_name) {
        if let Some(expected) = expected.filter(|e| **e != bound.signature) {
            return Err(Miss::SignatureMismatch {
                function: func_name.to_string(),
                expected: expected.clone(),
                found: bound.signature,
            }
            .into());
        }
        return Ok(bound);
    }
    if cx.data_mut().linkage().loading.load(Ordering::Acquire) {
        return Err(Error::Link(format!(
            "`{func_name}` was called lazily while modules were being instantiated (from a start function); \
             target it before the module that calls it"
        )));
    }

    // A store that has loaded nothing yet reuses the plan of the last such store.
    if cx.data_mut().linkage().linkage.generation() == 0
        && let Some(plan) = shared.registry.fresh_plan(func_name, expected)
    {
        match load(cx, shared, &plan).await {
            Ok(()) => return commit(cx, &plan, func_name),
            Err((failure, scope)) => note_failure(cx, shared, failure, scope),
        }
    }

    // A store of a process that has nothing loaded or broken may use the plan a fresh
    // store of another process made, kept in the target's plan hint.
    let pristine = {
        let view = cx.data_mut().linkage();
        shared.sync_broken(&mut view.linkage, &mut view.repairs_seen);
        is_pristine(&view.linkage)
    };
    if pristine && let Some(plan) = hinted_fresh_plan(shared, func_name, expected) {
        let plan = Arc::new(plan);
        match load(cx, shared, &plan).await {
            Ok(()) => {
                let bound = commit(cx, &plan, func_name)?;
                shared
                    .registry
                    .remember_fresh_plan(func_name, expected, plan);
                return Ok(bound);
            }
            Err((failure, scope)) => note_failure(cx, shared, failure, scope),
        }
    }

    loop {
        let fresh = cx.data_mut().linkage().linkage.generation() == 0;
        let plan = {
            let view = cx.data_mut().linkage();
            shared.sync_broken(&mut view.linkage, &mut view.repairs_seen);
            plan(shared, &mut view.linkage, func_name, expected)?
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(miss) => return Err(miss.into()),
        };
        match load(cx, shared, &plan).await {
            Ok(()) => {
                let bound = commit(cx, &plan, func_name)?;
                if fresh {
                    shared
                        .registry
                        .remember_fresh_plan(func_name, expected, Arc::new(plan));
                }
                return Ok(bound);
            }
            Err((failure, scope)) => note_failure(cx, shared, failure, scope),
        }
    }
}

/// Plans `func_name` against the directory (manifests from the process's memory when it
/// has them), asking the embedder's resolver about globals, and shares with every store
/// the modules found broken.
fn plan(
    shared: &Shared,
    linkage: &mut Linkage,
    func_name: &str,
    expected: Option<&FuncSig>,
) -> Result<Result<LoadPlan, Miss>, Error> {
    let _span = tracing::debug_span!("linkcache.plan", func = func_name).entered();
    let broken_before: HashSet<ModuleId> = linkage.broken_modules().map(|(m, _)| *m).collect();
    let pristine = is_pristine(linkage);
    let (mut validated, mut stale) = (0u64, 0u64);
    let mut asked: Vec<(ModuleId, GlobalDef, GlobalOutcome)> = Vec::new();
    let mut resolve = |check: &GlobalCheck| {
        let outcome = resolve_global(shared, check);
        match outcome {
            Ok(_) => validated += 1,
            Err(_) => stale += 1,
        }
        if pristine {
            asked.push((check.module, check.global.clone(), outcome.clone()));
        }
        outcome
    };
    let stamp = shared.dir.index_stamp();
    let mut store = PlanningStore {
        shared,
        hint: shared.dir.plan_hint(func_name, stamp),
        answers: PlanAnswers::default(),
        directory_reads: 0,
    };
    let used_hint = store.hint.is_some();
    let outcome = linkcache_core::plan(&mut store, linkage, func_name, expected, &mut resolve);
    let directory_reads = store.directory_reads;
    if let Ok(Ok(plan)) = &outcome
        && (directory_reads > 0 || pristine)
        && store.answers.complete()
    {
        // A pristine linkage gets here only when no kept plan could serve it.
        let fresh = pristine
            .then(|| FreshPlan::new(stamp, expected.cloned(), asked, plan))
            .flatten();
        let answers = (directory_reads > 0).then_some(store.answers);
        shared
            .dir
            .store_plan_hint(func_name, stamp, answers, fresh.as_ref());
    }
    let newly_broken: Vec<(ModuleId, String)> = linkage
        .broken_modules()
        .filter(|(m, _)| !broken_before.contains(m))
        .map(|(m, r)| (*m, r.to_string()))
        .collect();
    for (module, reason) in &newly_broken {
        if is_vanished(reason) {
            // Removed by gc (or never whole): skipped by this plan, tried again by the
            // next, since any process may add it again.
            linkage.forget_broken(module);
        } else {
            shared.mark_broken(*module, reason);
        }
    }
    shared.count(|stats| {
        stats.globals_validated += validated;
        stats.globals_stale += stale;
        stats.broken_skipped += newly_broken.len() as u64;
        stats.plan_hints_used += u64::from(used_hint);
        stats.plan_directory_reads += directory_reads;
    });
    outcome
}

/// Whether a store's linkage has loaded nothing, found nothing broken and asked the
/// embedder about no global yet: the planner's answer then depends on the store's
/// answers, the globals' outcomes and the signature asked for only.
fn is_pristine(linkage: &Linkage) -> bool {
    linkage.generation() == 0
        && linkage.broken_modules().next().is_none()
        && !linkage.has_global_outcomes()
}

/// The embedder's decision on a global definition.
fn resolve_global(shared: &Shared, check: &GlobalCheck) -> GlobalOutcome {
    match &shared.resolver {
        Some(resolver) => resolver(check),
        None => linkcache_core::literal_global(check),
    }
}

/// The plan a fresh store of some process made for `func_name`, from the target's plan
/// hint, when the index has not changed since and the embedder decides every global
/// that plan depended on as it did then: the planner would plan exactly this again
/// (`dir/hint.rs`). The globals are asked again either way, and counted.
fn hinted_fresh_plan(
    shared: &Shared,
    func_name: &str,
    expected: Option<&FuncSig>,
) -> Option<LoadPlan> {
    let stamp = shared.dir.index_stamp();
    let fresh = shared.dir.fresh_plan(func_name, stamp, expected)?;
    let (mut validated, mut stale) = (0u64, 0u64);
    let mut decided = Vec::new();
    let unchanged = fresh
        .global_decisions()?
        .into_iter()
        .all(|(check, recorded)| {
            let outcome = resolve_global(shared, &check);
            match &outcome {
                Ok(_) => validated += 1,
                Err(_) => stale += 1,
            }
            let alike = match (recorded, &outcome) {
                (Ok(then), Ok(now)) => then == now,
                (Err(_), Err(_)) => true,
                _ => false,
            };
            decided.push((check.global, outcome));
            alike
        });
    // The plan must also bind what was decided: a record that holds together but binds
    // another value (damaged, or forged with a valid checksum) is planned anew.
    let decided: Vec<_> = decided
        .iter()
        .map(|(def, outcome)| (def, outcome))
        .collect();
    let plan = if unchanged { fresh.into_plan() } else { None }.filter(|plan| {
        let as_decided = plan.binds_as_decided(&decided);
        if !as_decided {
            tracing::debug!(
                func_name,
                "linkcache: kept plan binds globals otherwise than decided; planned anew"
            );
        }
        as_decided
    });
    shared.count(|stats| {
        stats.globals_validated += validated;
        stats.globals_stale += stale;
        if plan.is_some() {
            stats.plan_hints_used += 1;
            stats.plans_from_hints += 1;
        }
    });
    plan
}

/// The directory as the planner's store: the process's decoded manifests first, then
/// the target's plan hint when it is valid for the index as it is (`dir/hint.rs`), then
/// the directory itself. Every answer is recorded, to be written as the next hint.
struct PlanningStore<'a> {
    shared: &'a Shared,
    hint: Option<PlanHint>,
    answers: PlanAnswers,
    /// Index listings and manifests read from the directory.
    directory_reads: u64,
}

impl PlanningStore<'_> {
    fn listed(&mut self, func_name: &str) -> Result<Vec<Candidate>, Error> {
        if let Some(candidates) = self.hint.as_ref().and_then(|h| h.candidates(func_name)) {
            return Ok(candidates.to_vec());
        }
        self.directory_reads += 1;
        let local = self.shared.dir.candidates(func_name)?;
        #[cfg(feature = "remote")]
        if local.is_empty()
            && let Some(remote) = &self.shared.remote
            && remote.fetch_closure(func_name) > 0
        {
            // The closure is committed locally now: the planner reads it from there.
            // The index changed, so the hint read before is stale.
            self.shared.registry.forget_fresh_plans();
            self.hint = None;
            return self.shared.dir.candidates(func_name);
        }
        Ok(local)
    }

    fn read_manifest(&mut self, module: &ModuleId) -> Result<Result<Arc<Manifest>, String>, Error> {
        if let Some(manifest) = self.shared.registry.manifest(module) {
            return Ok(Ok(manifest));
        }
        if let Some(manifest) = self.hint.as_ref().and_then(|h| h.manifest(module)) {
            let manifest = Arc::clone(manifest);
            self.shared
                .registry
                .remember_manifest(Arc::clone(&manifest));
            return Ok(Ok(manifest));
        }
        self.directory_reads += 1;
        Ok(self.shared.dir.manifest(module)?.map(|manifest| {
            let manifest = Arc::new(manifest);
            self.shared
                .registry
                .remember_manifest(Arc::clone(&manifest));
            manifest
        }))
    }
}

impl linkcache_core::Store for PlanningStore<'_> {
    type Error = Error;

    fn candidates(&mut self, func_name: &str) -> Result<Vec<Candidate>, Error> {
        let candidates = self.listed(func_name)?;
        self.answers.candidates(func_name, &candidates);
        Ok(candidates)
    }

    fn manifest(&mut self, module: &ModuleId) -> Result<Result<Arc<Manifest>, String>, Error> {
        let answer = self.read_manifest(module)?;
        self.answers.manifest(*module, &answer);
        Ok(answer)
    }
}

/// [`instantiate`] in a tracing span.
async fn load<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    shared: &Shared,
    plan: &LoadPlan,
) -> Result<(), (LoadFailure, FailureScope)> {
    let span = tracing::debug_span!("linkcache.load", modules = plan.modules.len());
    instantiate(cx, shared, plan).instrument(span).await
}

/// Whom a load failure concerns.
enum FailureScope {
    /// The module's data: every store of the process skips it.
    Module,
    /// This store (its linker lacks an import, its limits are reached): other stores
    /// may still load the module.
    Store,
}

fn note_failure<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    shared: &Shared,
    failure: LoadFailure,
    scope: FailureScope,
) {
    if is_vanished(&failure.reason) {
        // Its bytes were removed after it was planned (gc): skipped by this target
        // (`forget_vanished` clears the mark when it ends), not remembered as damage.
        cx.data_mut().linkage().vanished.push(failure.module);
    } else if let FailureScope::Module = scope {
        shared.mark_broken(failure.module, &failure.reason);
    } else {
        tracing::warn!(module = %failure.module, reason = %failure.reason,
            "linkcache: module could not be instantiated in this store");
    }
    shared.count(|stats| stats.broken_skipped += 1);
    cx.data_mut()
        .linkage()
        .linkage
        .mark_broken(failure.module, failure.reason);
}

/// Records an instantiated plan in the store: bindings, functions, mutable globals.
fn commit<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    plan: &LoadPlan,
    func_name: &str,
) -> Result<Bound, Error> {
    let view = cx.data_mut().linkage();
    view.linkage
        .commit(plan)
        .map_err(|e| Error::Link(format!("targeting `{func_name}`: {e}")))?;
    if let Some(observer) = &view.observer {
        let mut observer = lock(observer);
        observer
            .bindings
            .extend(plan.bindings.iter().map(|(f, m)| (String::from(f), *m)));
        observer.loaded = view.linkage.loaded_modules().to_vec();
    }
    for (name, ty, value) in &plan.set_globals {
        let global = shared_global(cx, name, *ty).map_err(Error::Link)?;
        global
            .set(&mut *cx, to_val(*value))
            .map_err(|e| Error::Link(format!("setting global `{name}`: {e}")))?;
    }
    Ok(already_bound(cx.data_mut().linkage(), func_name)
        .expect("a committed plan binds its target"))
}

fn already_bound<T: 'static>(view: &StoreLinkage<T>, func_name: &str) -> Option<Bound> {
    let module = view.linkage.binding(func_name)?;
    let func = *view.funcs.get(func_name)?;
    let signature = view
        .linkage
        .loaded_manifest(&module)?
        .function(func_name)?
        .signature
        .clone();
    Some(Bound {
        func,
        signature,
        module,
    })
}

/// Sets a store's `loading` flag until dropped, also when a panic unwinds or the
/// future is dropped.
struct Loading(Arc<AtomicBool>);

impl Loading {
    fn start(flag: &Arc<AtomicBool>) -> Loading {
        flag.store(true, Ordering::Release);
        Loading(Arc::clone(flag))
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Instantiates every module of `plan` in order in the store, then binds the plan's
/// functions; the first module that fails is reported so that the planner falls back
/// to a duplicate.
async fn instantiate<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    shared: &Shared,
    plan: &LoadPlan,
) -> Result<(), (LoadFailure, FailureScope)> {
    let _loading = Loading::start(&cx.data_mut().linkage().loading);
    let asynchronous = cx.data_mut().linkage().asynchronous;
    let mut fresh: HashMap<ModuleId, Instance> = HashMap::new();
    for planned in &plan.modules {
        let id = planned.module;
        let fail =
            |scope: FailureScope| move |reason: String| (LoadFailure { module: id, reason }, scope);
        let module =
            load::module(shared, &id, &planned.manifest).map_err(fail(FailureScope::Module))?;

        let mut imports = Vec::with_capacity(planned.imports.len());
        for (import, binding) in planned.manifest.imports.iter().zip(&planned.imports) {
            let item = match binding {
                ImportBinding::Export { module, func } => {
                    let instance = fresh
                        .get(module)
                        .or_else(|| cx.data_mut().linkage().instances.get(module))
                        .copied()
                        .ok_or_else(|| {
                            fail(FailureScope::Store)(format!(
                                "module {} is not instantiated",
                                module.short()
                            ))
                        })?;
                    let func = instance.get_func(&mut *cx, func).ok_or_else(|| {
                        fail(FailureScope::Module)(format!(
                            "module {} does not export `{func}`",
                            module.short()
                        ))
                    })?;
                    Extern::Func(func)
                }
                ImportBinding::Trampoline { func } => {
                    let ImportKind::Func(signature) = &import.kind else {
                        return Err(fail(FailureScope::Module)(format!(
                            "`{func}` is imported as a function but is not one"
                        )));
                    };
                    Extern::Func(forwarding_stub(cx, func, signature, false, asynchronous))
                }
                ImportBinding::Lazy { func, signature } => {
                    Extern::Func(forwarding_stub(cx, func, signature, true, asynchronous))
                }
                ImportBinding::Global { name, binding } => Extern::Global(
                    global_import(cx, name, binding).map_err(fail(FailureScope::Module))?,
                ),
                ImportBinding::Embedder => {
                    let linker = Arc::clone(&cx.data_mut().linkage().linker);
                    linker
                        .get(&mut *cx, &import.namespace, &import.name)
                        .map_err(|_| {
                            fail(FailureScope::Store)(format!(
                                "it imports `{}` `{}`, which the embedder's linker does not define",
                                import.namespace, import.name
                            ))
                        })?
                }
            };
            imports.push(item);
        }
        let instance = if asynchronous {
            instantiate_async(cx, &module, &imports).await
        } else {
            Instance::new(&mut *cx, &module, &imports)
        };
        let instance = instance
            .map_err(|e| fail(FailureScope::Store)(format!("instantiation failed: {e:#}")))?;
        fresh.insert(id, instance);
        shared.count(|stats| stats.modules_loaded += 1);
    }

    let view = cx.data_mut().linkage();
    view.instances.extend(fresh);
    let mut funcs = Vec::with_capacity(plan.bindings.len());
    let mut touched: HashSet<ModuleId> = HashSet::new();
    for (func_name, module) in &plan.bindings {
        let instance = cx
            .data_mut()
            .linkage()
            .instances
            .get(module)
            .copied()
            .ok_or_else(|| {
                fail_store(*module, "bound to a module that is not instantiated".into())
            })?;
        let func = instance.get_func(&mut *cx, func_name).ok_or_else(|| {
            (
                LoadFailure {
                    module: *module,
                    reason: format!("does not export `{func_name}`"),
                },
                FailureScope::Module,
            )
        })?;
        funcs.push((func_name.clone(), func));
        if touched.insert(*module) {
            shared.touch(module);
        }
    }
    cx.data_mut().linkage().funcs.extend(funcs);
    Ok(())
}

fn fail_store(module: ModuleId, reason: String) -> (LoadFailure, FailureScope) {
    (LoadFailure { module, reason }, FailureScope::Store)
}

#[cfg(feature = "async")]
async fn instantiate_async<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    module: &wasmtime::Module,
    imports: &[Extern],
) -> wasmtime::Result<Instance> {
    Instance::new_async(&mut *cx, module, imports).await
}

#[cfg(not(feature = "async"))]
async fn instantiate_async<T: LinkageView>(
    _cx: &mut StoreContextMut<'_, T>,
    _module: &wasmtime::Module,
    _imports: &[Extern],
) -> wasmtime::Result<Instance> {
    unreachable!("asynchronous linkages exist only with the `async` feature")
}

/// A host function standing for `func_name`: it calls the store's binding, targeting it
/// first when `lazy` (an edge outside the plan's closure). A trampoline (`lazy` false)
/// forwards within a group of modules that import each other, all bound by then. In an
/// asynchronous store both load and call asynchronously.
fn forwarding_stub<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    func_name: &str,
    signature: &FuncSig,
    lazy: bool,
    asynchronous: bool,
) -> Func {
    let ty = func_type(cx.engine(), signature);
    let func_name: Arc<str> = func_name.into();
    let signature = Arc::new(signature.clone());
    if asynchronous {
        return async_forwarding_stub(cx, ty, func_name, signature, lazy);
    }
    Func::new(&mut *cx, ty, move |mut caller, params, results| {
        let bound = caller.data_mut().linkage().funcs.get(&*func_name).copied();
        let func = match bound {
            Some(func) => func,
            None if lazy => {
                let mut cx = caller.as_context_mut();
                target_sync(&mut cx, &func_name, Some(&signature), true)
                    .map_err(|e| lazy_error(&func_name, e))?
                    .func
            }
            None => return Err(unbound_trampoline(&func_name)),
        };
        func.call(&mut caller, params, results)
    })
}

/// Makes a lazy stub or trampoline for an asynchronous store. A plain function pointer
/// kept in the linkage, because async host functions need `T: Send`, which
/// [`Cache::async_store_linkage`] proves once and the generic load path does not know.
type AsyncStubFn<T> =
    fn(&mut StoreContextMut<'_, T>, wasmtime::FuncType, Arc<str>, Arc<FuncSig>, bool) -> Func;

fn async_forwarding_stub<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    ty: wasmtime::FuncType,
    func_name: Arc<str>,
    signature: Arc<FuncSig>,
    lazy: bool,
) -> Func {
    let make = cx
        .data_mut()
        .linkage()
        .async_stub
        .expect("an asynchronous linkage has an async stub maker");
    make(cx, ty, func_name, signature, lazy)
}

#[cfg(feature = "async")]
fn make_async_stub<T: LinkageView + Send>(
    cx: &mut StoreContextMut<'_, T>,
    ty: wasmtime::FuncType,
    func_name: Arc<str>,
    signature: Arc<FuncSig>,
    lazy: bool,
) -> Func {
    Func::new_async(&mut *cx, ty, move |mut caller, params, results| {
        let func_name = Arc::clone(&func_name);
        let signature = Arc::clone(&signature);
        Box::new(async move {
            let bound = caller.data_mut().linkage().funcs.get(&*func_name).copied();
            let func = match bound {
                Some(func) => func,
                None if lazy => {
                    let mut cx = caller.as_context_mut();
                    let target = Box::pin(target(&mut cx, &func_name, Some(&signature), true));
                    target.await.map_err(|e| lazy_error(&func_name, e))?.func
                }
                None => return Err(unbound_trampoline(&func_name)),
            };
            func.call_async(&mut caller, params, results).await
        })
    })
}

fn lazy_error(func_name: &str, error: Error) -> wasmtime::Error {
    wasmtime::Error::msg(format!("lazy call of `{func_name}`: {error}"))
}

fn unbound_trampoline(func_name: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!(
        "trampoline to `{func_name}` called before its module group was bound"
    ))
}

fn global_import<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    name: &str,
    binding: &GlobalBinding,
) -> Result<Global, String> {
    let constant = |cx: &mut StoreContextMut<'_, T>, value: Value| {
        let ty = GlobalType::new(val_type(value.ty()), Mutability::Const);
        Global::new(&mut *cx, ty, to_val(value)).map_err(|e| format!("global `{name}`: {e}"))
    };
    match binding {
        GlobalBinding::Value(value) => constant(cx, *value),
        GlobalBinding::Placeholder(ty) => {
            let zero = ty
                .zero()
                .ok_or_else(|| format!("global `{name}` of type {ty} has no placeholder value"))?;
            constant(cx, zero)
        }
        GlobalBinding::Shared(ty) => shared_global(cx, name, *ty),
    }
}

/// The store's one mutable global `name`, created zeroed on first use.
fn shared_global<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    name: &str,
    ty: linkcache_core::ValType,
) -> Result<Global, String> {
    if let Some(global) = cx.data_mut().linkage().shared_globals.get(name) {
        return Ok(*global);
    }
    let zero = ty
        .zero()
        .ok_or_else(|| format!("global `{name}` of type {ty} cannot be shared"))?;
    let global = Global::new(
        &mut *cx,
        GlobalType::new(val_type(ty), Mutability::Var),
        to_val(zero),
    )
    .map_err(|e| format!("global `{name}`: {e}"))?;
    cx.data_mut()
        .linkage()
        .shared_globals
        .insert(name.to_string(), global);
    Ok(global)
}
