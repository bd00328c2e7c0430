//! Loading a target into wasmtime: the [`Host`] state every wasmtime `Store` of a
//! [`Cache`](crate::Cache) carries, and the code that turns a core
//! [`LoadPlan`] into instances.
//!
//! The core planner decides what to load; this module gets each planned module
//! (the precompiled artifact when it is valid, else the wasm bytes compiled and the
//! artifact stored for the next process), checks that the module is the one its
//! manifest describes, builds its imports from the plan's bindings (exports of earlier
//! instances, forwarding trampolines for modules that import each other, lazy stubs for
//! edges outside the closure, `linkcache:global` globals, the embedder's linker) and
//! instantiates it. Lazy stubs run this same code from inside a call, through the
//! `Caller`, so they need no lock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use linkcache_core::{
    FuncSig, GlobalBinding, GlobalCheck, GlobalOutcome, ImportBinding, ImportKind, Linkage,
    LoadFailure, LoadPlan, Manifest, ModuleId, ValType, Value, load_target,
};
use wasmtime::{
    AsContextMut, Engine, Extern, ExternType, Func, FuncType, Global, GlobalType, Instance, Linker,
    Module, Mutability, StoreContextMut, V128, Val,
};

use crate::dir::{ArtifactLookup, DirStore};
use crate::error::Error;
use crate::stats::Stats;

/// Decides whether a global definition is current: its value, or why it is stale.
pub type GlobalResolverFn = dyn FnMut(&GlobalCheck) -> GlobalOutcome + Send;

/// The data of a cache's wasmtime `Store`: this process's link state.
///
/// Embedders see it only as the `T` of the [`Linker`] they fill with their own imports
/// (see [`CacheBuilder::linker`](crate::CacheBuilder::linker)); it has no public fields.
pub struct Host {
    pub(crate) dir: DirStore,
    pub(crate) engine_key: String,
    pub(crate) precompiled: bool,
    pub(crate) linkage: Linkage,
    /// Set while a plan is being instantiated; a lazy stub that fires then (from a start
    /// function) must not start another load.
    pub(crate) loading: bool,
    pub(crate) modules: HashMap<ModuleId, Module>,
    pub(crate) instances: HashMap<ModuleId, Instance>,
    /// The function every bound func_name resolves to in this process.
    pub(crate) funcs: HashMap<String, Func>,
    pub(crate) shared_globals: HashMap<String, Global>,
    pub(crate) resolver: Option<Box<GlobalResolverFn>>,
    pub(crate) linker: Arc<Linker<Host>>,
    pub(crate) stats: Stats,
}

/// What targeting a func_name gives: the function, its signature and its module.
pub(crate) struct Bound {
    pub func: Func,
    pub signature: FuncSig,
    pub module: ModuleId,
}

/// Targets `func_name` in the store behind `cx`, loading what it needs.
///
/// `count_hit` is false for the internal target of a call to a function the caller
/// targeted already, so that statistics count what the user asked for.
pub(crate) fn target(
    mut cx: StoreContextMut<'_, Host>,
    func_name: &str,
    expected: Option<&FuncSig>,
    count_hit: bool,
) -> Result<Bound, Error> {
    let started = Instant::now();
    let result = target_inner(&mut cx, func_name, expected);
    let stats = &mut cx.data_mut().stats;
    stats.load_time += started.elapsed();
    match &result {
        Ok(_) if count_hit => stats.hits += 1,
        Ok(_) => {}
        Err(Error::Miss(miss)) => *stats.misses.entry(miss.cause().to_string()).or_default() += 1,
        Err(_) => {}
    }
    result
}

fn target_inner(
    cx: &mut StoreContextMut<'_, Host>,
    func_name: &str,
    expected: Option<&FuncSig>,
) -> Result<Bound, Error> {
    if let Some(bound) = already_bound(cx.data(), func_name) {
        if let Some(expected) = expected.filter(|e| **e != bound.signature) {
            return Err(linkcache_core::Miss::SignatureMismatch {
                function: func_name.to_string(),
                expected: expected.clone(),
                found: bound.signature,
            }
            .into());
        }
        return Ok(bound);
    }
    if cx.data().loading {
        return Err(Error::Link(format!(
            "`{func_name}` was called lazily while modules were being instantiated (from a start function); \
             target it before the module that calls it"
        )));
    }

    let host = cx.data_mut();
    let mut linkage = std::mem::take(&mut host.linkage);
    let mut resolver = host.resolver.take();
    let mut dir = host.dir.clone();
    host.loading = true;
    let broken_before = linkage.broken_modules().count();

    let mut validated = 0u64;
    let mut stale = 0u64;
    let mut resolve = |check: &GlobalCheck| {
        let outcome = match resolver.as_mut() {
            Some(resolver) => resolver(check),
            None => linkcache_core::literal_global(check),
        };
        match outcome {
            Ok(_) => validated += 1,
            Err(_) => stale += 1,
        }
        outcome
    };
    let outcome = load_target(
        &mut dir,
        &mut linkage,
        func_name,
        expected,
        &mut resolve,
        &mut |plan, linkage| instantiate(cx, plan, linkage),
    );

    let broken_after = linkage.broken_modules().count();
    let host = cx.data_mut();
    host.linkage = linkage;
    host.resolver = resolver;
    host.loading = false;
    host.stats.globals_validated += validated;
    host.stats.globals_stale += stale;
    host.stats.broken_skipped += (broken_after - broken_before) as u64;

    let plan = outcome??;
    for (name, ty, value) in &plan.set_globals {
        let global = shared_global(cx, name, *ty).map_err(|e| Error::Link(e.to_string()))?;
        global
            .set(&mut *cx, to_val(*value))
            .map_err(|e| Error::Link(format!("setting global `{name}`: {e}")))?;
    }
    Ok(already_bound(cx.data(), func_name).expect("a committed plan binds its target"))
}

fn already_bound(host: &Host, func_name: &str) -> Option<Bound> {
    let module = host.linkage.binding(func_name)?;
    let func = *host.funcs.get(func_name)?;
    let signature = host
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

/// Instantiates every module of `plan` in order; the first module that fails is
/// reported so that the planner falls back to a duplicate.
fn instantiate(
    cx: &mut StoreContextMut<'_, Host>,
    plan: &LoadPlan,
    linkage: &Linkage,
) -> Result<(), LoadFailure> {
    let mut fresh: HashMap<ModuleId, Instance> = HashMap::new();
    for planned in &plan.modules {
        let id = planned.module;
        let fail = |reason: String| LoadFailure { module: id, reason };
        let module = get_module(cx, &id, &planned.manifest).map_err(fail)?;
        check_shape(&module, &planned.manifest).map_err(fail)?;

        let mut imports = Vec::with_capacity(planned.imports.len());
        for (import, binding) in planned.manifest.imports.iter().zip(&planned.imports) {
            let item =
                match binding {
                    ImportBinding::Export { module, func } => {
                        let instance = fresh
                            .get(module)
                            .or_else(|| cx.data().instances.get(module))
                            .copied()
                            .ok_or_else(|| {
                                fail(format!("module {} is not instantiated", module.short()))
                            })?;
                        let func = instance.get_func(&mut *cx, func).ok_or_else(|| {
                            fail(format!(
                                "module {} does not export `{func}`",
                                module.short()
                            ))
                        })?;
                        Extern::Func(func)
                    }
                    ImportBinding::Trampoline { func } => {
                        let ImportKind::Func(signature) = &import.kind else {
                            return Err(fail(format!(
                                "`{func}` is imported as a function but is not one"
                            )));
                        };
                        Extern::Func(forwarding_stub(cx, func, signature, false))
                    }
                    ImportBinding::Lazy { func, signature } => {
                        Extern::Func(forwarding_stub(cx, func, signature, true))
                    }
                    ImportBinding::Global { name, binding } => {
                        Extern::Global(global_import(cx, name, binding, linkage).map_err(fail)?)
                    }
                    ImportBinding::Embedder => {
                        let linker = Arc::clone(&cx.data().linker);
                        linker.get(&mut *cx, &import.namespace, &import.name).map_err(|_| {
                        fail(format!(
                            "it imports `{}` `{}`, which the embedder's linker does not define",
                            import.namespace, import.name
                        ))
                    })?
                    }
                };
            imports.push(item);
        }
        let instance = Instance::new(&mut *cx, &module, &imports)
            .map_err(|e| fail(format!("instantiation failed: {e:#}")))?;
        fresh.insert(id, instance);
        cx.data_mut().stats.modules_loaded += 1;
    }

    cx.data_mut()
        .instances
        .extend(fresh.iter().map(|(id, instance)| (*id, *instance)));
    // The use marker is per module: touch each bound module once, not once per function.
    let mut touched: HashSet<ModuleId> = HashSet::new();
    for (func_name, module) in &plan.bindings {
        let instance = cx
            .data()
            .instances
            .get(module)
            .copied()
            .ok_or_else(|| LoadFailure {
                module: *module,
                reason: "bound to a module that is not instantiated".into(),
            })?;
        let func = instance
            .get_func(&mut *cx, func_name)
            .ok_or_else(|| LoadFailure {
                module: *module,
                reason: format!("does not export `{func_name}`"),
            })?;
        let host = cx.data_mut();
        host.funcs.insert(func_name.clone(), func);
        if touched.insert(*module) {
            host.dir.touch(module);
        }
    }
    Ok(())
}

/// A host function standing for `func_name`: it calls the process's binding, targeting
/// it first when `lazy` (an edge outside the plan's closure). A trampoline (`lazy` false)
/// forwards within a group of modules that import each other, all bound by then.
fn forwarding_stub(
    cx: &mut StoreContextMut<'_, Host>,
    func_name: &str,
    signature: &FuncSig,
    lazy: bool,
) -> Func {
    let ty = func_type(cx.engine(), signature);
    let func_name = func_name.to_string();
    let signature = signature.clone();
    Func::new(&mut *cx, ty, move |mut caller, params, results| {
        let bound = caller.data().funcs.get(&func_name).copied();
        let func = match bound {
            Some(func) => func,
            None if lazy => {
                let cx = caller.as_context_mut();
                target(cx, &func_name, Some(&signature), true)
                    .map_err(|e| wasmtime::Error::msg(format!("lazy call of `{func_name}`: {e}")))?
                    .func
            }
            None => {
                return Err(wasmtime::Error::msg(format!(
                    "trampoline to `{func_name}` called before its module group was bound"
                )));
            }
        };
        func.call(&mut caller, params, results)
    })
}

fn global_import(
    cx: &mut StoreContextMut<'_, Host>,
    name: &str,
    binding: &GlobalBinding,
    _linkage: &Linkage,
) -> Result<Global, String> {
    let constant = |cx: &mut StoreContextMut<'_, Host>, value: Value| {
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
        GlobalBinding::Shared(ty) => shared_global(cx, name, *ty).map_err(|e| e.to_string()),
    }
}

/// The process's one mutable global `name`, created zeroed on first use.
fn shared_global(
    cx: &mut StoreContextMut<'_, Host>,
    name: &str,
    ty: ValType,
) -> Result<Global, String> {
    if let Some(global) = cx.data().shared_globals.get(name) {
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
        .shared_globals
        .insert(name.to_string(), global);
    Ok(global)
}

/// The compiled module `id`: already in this process, deserialized from a checked
/// artifact, or compiled from its checked bytes (storing the artifact).
fn get_module(
    cx: &mut StoreContextMut<'_, Host>,
    id: &ModuleId,
    manifest: &Manifest,
) -> Result<Module, String> {
    if let Some(module) = cx.data().modules.get(id) {
        return Ok(module.clone());
    }
    let engine = cx.engine().clone();
    let host = cx.data_mut();
    if host.precompiled {
        match host
            .dir
            .artifact(&host.engine_key, id)
            .map_err(|e| e.to_string())?
        {
            ArtifactLookup::Found { path, len } => {
                // SAFETY: the artifact lies in a root owned by this user and writable by
                // no one else, was written by `Module::serialize` of an engine with the
                // same compatibility hash (its directory), and its XXH3-128 checksum was
                // verified just now; files are only ever replaced by rename, never
                // modified in place.
                match unsafe { Module::deserialize_file(&engine, &path) } {
                    Ok(module) => {
                        host.stats.artifacts_deserialized += 1;
                        host.stats.bytes_read += len;
                        host.modules.insert(*id, module.clone());
                        return Ok(module);
                    }
                    Err(_) => {
                        host.dir.remove_artifact(&path);
                        host.stats.artifacts_rejected += 1;
                    }
                }
            }
            ArtifactLookup::Corrupt(_) => host.stats.artifacts_rejected += 1,
            ArtifactLookup::Absent => {}
        }
    }
    let bytes = host.dir.module_bytes(id).map_err(|e| e.to_string())??;
    host.stats.bytes_read += bytes.len() as u64;
    manifest.check_against(&bytes)?;
    let module = Module::new(&engine, &bytes).map_err(|e| format!("compilation failed: {e:#}"))?;
    host.stats.modules_compiled += 1;
    if host.precompiled {
        match module.serialize() {
            Ok(artifact) => match host.dir.store_artifact(&host.engine_key, id, &artifact) {
                Ok(_) => host.stats.artifacts_written += 1,
                // A full disk costs the next process a compilation, nothing more.
                Err(_) => host.stats.artifact_write_errors += 1,
            },
            Err(_) => host.stats.artifact_write_errors += 1,
        }
    }
    host.modules.insert(*id, module.clone());
    Ok(module)
}

/// Checks the compiled module's imports and exports against its manifest (cheap; runs
/// for artifacts too, whose bytes are not re-analyzed).
fn check_shape(module: &Module, manifest: &Manifest) -> Result<(), String> {
    let imports: Vec<_> = module.imports().collect();
    if imports.len() != manifest.imports.len() {
        return Err(format!(
            "it has {} imports but its manifest lists {}",
            imports.len(),
            manifest.imports.len()
        ));
    }
    for (actual, listed) in imports.iter().zip(&manifest.imports) {
        if actual.module() != listed.namespace || actual.name() != listed.name {
            return Err(format!(
                "its import `{}` `{}` is not the manifest's `{}` `{}`",
                actual.module(),
                actual.name(),
                listed.namespace,
                listed.name
            ));
        }
    }
    for function in &manifest.functions {
        match module.get_export(&function.name) {
            Some(ExternType::Func(ty))
                if signature_of(&ty).as_ref() == Some(&function.signature) => {}
            _ => {
                return Err(format!(
                    "it does not export `{}` with signature {}",
                    function.name, function.signature
                ));
            }
        }
    }
    Ok(())
}

/// A wasmtime function type for a core signature.
pub(crate) fn func_type(engine: &Engine, signature: &FuncSig) -> FuncType {
    FuncType::new(
        engine,
        signature.params.iter().map(|t| val_type(*t)),
        signature.results.iter().map(|t| val_type(*t)),
    )
}

/// The core signature of a wasmtime function type, if linkcache supports its types.
pub(crate) fn signature_of(ty: &FuncType) -> Option<FuncSig> {
    let convert = |t: wasmtime::ValType| -> Option<ValType> {
        Some(match t {
            wasmtime::ValType::I32 => ValType::I32,
            wasmtime::ValType::I64 => ValType::I64,
            wasmtime::ValType::F32 => ValType::F32,
            wasmtime::ValType::F64 => ValType::F64,
            wasmtime::ValType::V128 => ValType::V128,
            wasmtime::ValType::Ref(r) if r.matches(&wasmtime::RefType::FUNCREF) => ValType::FuncRef,
            wasmtime::ValType::Ref(r) if r.matches(&wasmtime::RefType::EXTERNREF) => {
                ValType::ExternRef
            }
            wasmtime::ValType::Ref(_) => return None,
        })
    };
    Some(FuncSig {
        params: ty.params().map(convert).collect::<Option<_>>()?,
        results: ty.results().map(convert).collect::<Option<_>>()?,
    })
}

pub(crate) fn val_type(ty: ValType) -> wasmtime::ValType {
    match ty {
        ValType::I32 => wasmtime::ValType::I32,
        ValType::I64 => wasmtime::ValType::I64,
        ValType::F32 => wasmtime::ValType::F32,
        ValType::F64 => wasmtime::ValType::F64,
        ValType::V128 => wasmtime::ValType::V128,
        ValType::FuncRef => wasmtime::ValType::FUNCREF,
        ValType::ExternRef => wasmtime::ValType::EXTERNREF,
    }
}

/// A core value as a wasmtime value.
pub fn to_val(value: Value) -> Val {
    match value {
        Value::I32(x) => Val::I32(x),
        Value::I64(x) => Val::I64(x),
        Value::F32(bits) => Val::F32(bits),
        Value::F64(bits) => Val::F64(bits),
        Value::V128(x) => Val::V128(V128::from(x)),
    }
}

/// A wasmtime value as a core value (numeric values only).
pub fn from_val(val: &Val) -> Option<Value> {
    Some(match val {
        Val::I32(x) => Value::I32(*x),
        Val::I64(x) => Value::I64(*x),
        Val::F32(bits) => Value::F32(*bits),
        Val::F64(bits) => Value::F64(*bits),
        Val::V128(x) => Value::V128(x.as_u128()),
        _ => return None,
    })
}
