//! Targeting in the embedder's own wasmtime `Store<T>`: [`StoreLinkage`], the link state
//! a store carries in its data, [`LinkageView`], how linkcache reaches it, and the code
//! that turns a core [`LoadPlan`](linkcache_core::LoadPlan) into instances of that store.
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
//!
//! The work is in the files beside this one: `target` drives a target (plan, load,
//! commit, fall back), `plan` plans against the directory, `instantiate` makes the
//! plan's instances, `stubs` makes the lazy stubs and trampolines.

mod instantiate;
mod plan;
mod stubs;
mod target;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use linkcache_core::{Linkage, Miss, ModuleId, Name, Value};
use wasmtime::{AsContextMut, Func, Global, Instance, Linker, TypedFunc, WasmParams, WasmResults};

use crate::cache::{Cache, Shared};
use crate::error::Error;

use self::stubs::AsyncStubFn;
#[cfg(feature = "async")]
use self::stubs::make_async_stub;
#[cfg(feature = "async")]
use self::target::target;
pub(crate) use self::target::{Bound, call_dynamic, target_sync};

use crate::simple::{SimpleView, typed};

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
