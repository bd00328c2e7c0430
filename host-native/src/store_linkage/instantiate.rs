//! Instantiating a plan in the embedder's store: every planned module in order, with
//! the embedder's imports from its linker, `linkcache:fn` imports bound to the plan's
//! instances (or to lazy stubs and trampolines) and `linkcache:global` imports to values
//! or to the store's shared mutable globals.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use linkcache_core::{
    GlobalBinding, ImportBinding, ImportKind, LoadFailure, LoadPlan, ModuleId, Value,
};
use tracing::Instrument;
use wasmtime::{Extern, Global, GlobalType, Instance, Mutability, StoreContextMut};

use super::LinkageView;
use super::stubs::forwarding_stub;
use crate::cache::Shared;
use crate::load::{self, to_val, val_type};

/// [`instantiate`] in a tracing span.
pub(super) async fn load<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    shared: &Shared,
    plan: &LoadPlan,
) -> Result<(), (LoadFailure, FailureScope)> {
    let span = tracing::debug_span!("linkcache.load", modules = plan.modules.len());
    instantiate(cx, shared, plan).instrument(span).await
}

/// Whom a load failure concerns.
pub(super) enum FailureScope {
    /// The module's data: every store of the process skips it.
    Module,
    /// This store (its linker lacks an import, its limits are reached): other stores
    /// may still load the module.
    Store,
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
pub(super) fn shared_global<T: LinkageView>(
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
