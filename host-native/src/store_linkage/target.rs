//! Targeting a func_name in a store: the one code path of synchronous and asynchronous
//! stores (already bound, a plan kept by a fresh store, the planner), its fallback when
//! a module fails to load, and the commit of an instantiated plan.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use linkcache_core::{FuncSig, LoadFailure, LoadPlan, Miss, ModuleId, Value};
use tracing::Instrument;
use wasmtime::{AsContextMut, Func, StoreContextMut, Val};

use super::instantiate::{FailureScope, load, shared_global};
use super::plan::{hinted_fresh_plan, is_pristine, plan};
use super::{LinkageView, StoreLinkage};
use crate::cache::Shared;
use crate::dir::is_vanished;
use crate::error::Error;
use crate::load::to_val;
use crate::registry::lock;
use crate::simple::{params_for, values_of};

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
