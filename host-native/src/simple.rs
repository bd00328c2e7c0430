//! The simple path: one store owned by the [`Cache`], for programs that do not manage
//! wasmtime stores themselves ([`Cache::target`], [`Cache::call`],
//! [`Cache::get_or_compile`]).
//!
//! It is a thin layer over the per-store API: the store's data is [`Host`], whose
//! [`StoreLinkage`] is the same as an embedder's, behind one mutex. Calls through it run
//! one at a time; a multi-threaded embedder uses its own stores instead
//! ([`Cache::get_typed_func`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use linkcache_core::{FuncSig, Miss, ModuleId, Value};
use wasmtime::{AsContextMut, Linker, Store, StoreLimits, TypedFunc, Val, WasmParams, WasmResults};

use crate::cache::{Cache, Shared};
use crate::error::Error;
use crate::load::{from_val, to_val};
use crate::registry::lock;
use crate::store_linkage::{self, Bound, LinkageView, StoreLinkage};

/// The data of the simple path's wasmtime `Store`: its [`StoreLinkage`], and its limits.
///
/// Embedders meet it as the `T` of the [`Linker`] they fill for the simple path
/// ([`CacheBuilder::linker`](crate::CacheBuilder::linker)) and in
/// [`Cache::with_store`].
pub struct Host {
    linkage: StoreLinkage<Host>,
    limits: StoreLimits,
}

impl LinkageView for Host {
    fn linkage(&mut self) -> &mut StoreLinkage<Host> {
        &mut self.linkage
    }
}

/// The simple path's store and what can be read of it without its lock.
pub(crate) struct SimplePath {
    store: Mutex<Store<Host>>,
    /// Bindings and loaded modules, updated at every commit, so that
    /// [`Cache::binding`] and [`Cache::loaded_modules`] never wait for the store (a host
    /// function may ask them in the middle of a call).
    pub(crate) view: Arc<Mutex<SimpleView>>,
}

/// What the simple path's store has bound and loaded.
#[derive(Default)]
pub(crate) struct SimpleView {
    pub(crate) bindings: BTreeMap<String, ModuleId>,
    pub(crate) loaded: Vec<ModuleId>,
}

impl SimplePath {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        linker: Linker<Host>,
        limits: Option<StoreLimits>,
    ) -> Self {
        let view = Arc::new(Mutex::new(SimpleView::default()));
        let mut linkage = StoreLinkage::new(Arc::clone(shared), Arc::new(linker));
        linkage.observer = Some(Arc::clone(&view));
        let limited = limits.is_some();
        let host = Host {
            linkage,
            limits: limits.unwrap_or_default(),
        };
        let mut store = Store::new(&shared.engine, host);
        if limited {
            store.limiter(|host| &mut host.limits);
        }
        SimplePath {
            store: Mutex::new(store),
            view,
        }
    }
}

thread_local! {
    /// What this thread is inside, per cache (by its unique id): the reentrancy check.
    static INSIDE: RefCell<Vec<(u64, Activity)>> = const { RefCell::new(Vec::new()) };
}

/// Something a thread can be inside of, for one cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Activity {
    /// Holding the simple path's store: a call into wasm or a load.
    Locked,
    /// Running the compile callback for a func_name.
    Compiling(String),
}

impl std::fmt::Display for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Activity::Locked => f.write_str("a call into this cache"),
            Activity::Compiling(func) => write!(f, "the compile callback for `{func}`"),
        }
    }
}

/// Marks this thread as inside an activity of one cache until dropped (also when a
/// panic unwinds through it).
pub(crate) struct Inside(u64);

impl Inside {
    /// Enters `activity`, unless the thread is inside something that conflicts: a lock
    /// conflicts with a lock (it would deadlock), a compilation with anything.
    pub(crate) fn enter(
        cache: &Cache,
        activity: Activity,
        requested: &str,
    ) -> Result<Inside, Error> {
        let key = cache.shared.id;
        INSIDE.with(|inside| {
            let mut inside = inside.borrow_mut();
            let conflict = inside.iter().find(|(k, current)| {
                *k == key && (activity != Activity::Locked || *current == Activity::Locked)
            });
            if let Some((_, current)) = conflict {
                return Err(Error::Reentrant {
                    inside: current.to_string(),
                    requested: requested.to_string(),
                });
            }
            inside.push((key, activity));
            Ok(Inside(key))
        })
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.with(|inside| {
            let mut inside = inside.borrow_mut();
            if let Some(pos) = inside.iter().rposition(|(k, _)| *k == self.0) {
                inside.remove(pos);
            }
        });
    }
}

impl Cache {
    /// Locks the simple path's store; an attempt from inside a call into it on the same
    /// thread (an embedder's host function calling back) is an error, not a deadlock. A
    /// panic that unwound through an earlier holder leaves the store usable: every
    /// change to its linkage is a whole commit.
    fn lock_simple(&self, requested: &str) -> Result<(MutexGuard<'_, Store<Host>>, Inside), Error> {
        let inside = Inside::enter(self, Activity::Locked, requested)?;
        Ok((lock(&self.simple.store), inside))
    }

    /// Runs `f` with the simple path's store: to set fuel or an epoch deadline, or to
    /// read what the embedder's host functions keep. From inside a call through the
    /// simple path it is [`Error::Reentrant`].
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store<Host>) -> R) -> Result<R, Error> {
        let (mut store, _inside) = self.lock_simple("with_store")?;
        Ok(f(&mut store))
    }

    /// Targets `func_name` with the parameter and result types `P -> R` (for example
    /// `(i64,)` and `i64`) in the simple path's store: loads what it needs and returns a
    /// typed callable, or [`Error::Miss`] naming why it cannot.
    pub fn target<P: WasmParams, R: WasmResults>(
        &self,
        func_name: &str,
    ) -> Result<Target<P, R>, Error> {
        let (mut store, _inside) = self.lock_simple(func_name)?;
        let mut cx = store.as_context_mut();
        let bound = store_linkage::target_sync(&mut cx, func_name, None, true)?;
        let func = typed(&bound, &*store, func_name)?;
        Ok(Target {
            func,
            func_name: func_name.to_string(),
            module: bound.module,
            signature: bound.signature,
            cache: self.shared.id,
            _types: PhantomData,
        })
    }

    /// Targets `func_name` without static types; call it with [`Cache::call`].
    pub fn target_dynamic(&self, func_name: &str) -> Result<DynamicTarget, Error> {
        let (mut store, _inside) = self.lock_simple(func_name)?;
        let bound = store_linkage::target_sync(&mut store.as_context_mut(), func_name, None, true)?;
        Ok(DynamicTarget {
            func_name: func_name.to_string(),
            module: bound.module,
            signature: bound.signature,
        })
    }

    /// Targets and calls `func_name` with dynamically typed arguments.
    pub fn call(&self, func_name: &str, args: &[Value]) -> Result<Vec<Value>, Error> {
        let (mut store, _inside) = self.lock_simple(func_name)?;
        let targeted_before = lock(&self.simple.view).bindings.contains_key(func_name);
        let bound = store_linkage::target_sync(
            &mut store.as_context_mut(),
            func_name,
            None,
            !targeted_before,
        )?;
        store_linkage::call_dynamic(&mut *store, &bound, func_name, args)
    }

    /// Targets `func_name` in the simple path's store; on a miss, asks `compile` for
    /// modules (it gets the miss, which names what is missing), adds them and tries
    /// again. A callback that calls `get_or_compile` on this cache gets
    /// [`Error::Reentrant`].
    pub fn get_or_compile<P, R, E>(
        &self,
        func_name: &str,
        compile: impl FnMut(&Miss) -> Result<Vec<Vec<u8>>, E>,
    ) -> Result<Target<P, R>, Error>
    where
        P: WasmParams,
        R: WasmResults,
        E: std::fmt::Display,
    {
        self.compile_until(func_name, || self.target::<P, R>(func_name), compile)
    }

    /// The module `func_name` is bound to in the simple path's store, if it was
    /// targeted there.
    pub fn binding(&self, func_name: &str) -> Option<ModuleId> {
        lock(&self.simple.view).bindings.get(func_name).copied()
    }

    /// The modules loaded in the simple path's store, in the order they were
    /// instantiated.
    pub fn loaded_modules(&self) -> Vec<ModuleId> {
        lock(&self.simple.view).loaded.clone()
    }
}

/// The typed view of a bound function, or the error that says its types differ.
pub(crate) fn typed<P: WasmParams, R: WasmResults>(
    bound: &Bound,
    store: impl wasmtime::AsContext,
    func_name: &str,
) -> Result<TypedFunc<P, R>, Error> {
    bound
        .func
        .typed::<P, R>(store)
        .map_err(|_| Error::SignatureMismatch {
            function: func_name.to_string(),
            expected: format!(
                "{} -> {}",
                std::any::type_name::<P>(),
                std::any::type_name::<R>()
            ),
            found: bound.signature.clone(),
        })
}

/// A typed function of the simple path, returned by [`Cache::target`]; call it with
/// [`Target::call`].
pub struct Target<P, R> {
    func: TypedFunc<P, R>,
    func_name: String,
    module: ModuleId,
    signature: FuncSig,
    cache: u64,
    _types: PhantomData<fn(P) -> R>,
}

impl<P: WasmParams, R: WasmResults> Target<P, R> {
    /// Calls the function through `cache` (the cache it was targeted on).
    pub fn call(&self, cache: &Cache, params: P) -> Result<R, Error> {
        if cache.shared.id != self.cache {
            return Err(Error::WrongCache);
        }
        let (mut store, _inside) = cache.lock_simple(&self.func_name)?;
        self.func
            .call(&mut *store, params)
            .map_err(|source| Error::Trap {
                function: self.func_name.clone(),
                source,
            })
    }

    /// The func_name.
    pub fn func_name(&self) -> &str {
        &self.func_name
    }

    /// The module the function is bound to.
    pub fn module(&self) -> ModuleId {
        self.module
    }

    /// The function's signature.
    pub fn signature(&self) -> &FuncSig {
        &self.signature
    }
}

impl<P, R> std::fmt::Debug for Target<P, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("func_name", &self.func_name)
            .field("module", &self.module)
            .field("signature", &self.signature)
            .finish()
    }
}

/// A target without static types, from [`Cache::target_dynamic`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicTarget {
    /// The func_name.
    pub func_name: String,
    /// The module it is bound to.
    pub module: ModuleId,
    /// Its signature.
    pub signature: FuncSig,
}

/// Checks dynamically typed arguments against a signature and converts them.
pub(crate) fn params_for(
    func_name: &str,
    signature: &FuncSig,
    args: &[Value],
) -> Result<Vec<Val>, Error> {
    if args.len() != signature.params.len()
        || args
            .iter()
            .zip(&signature.params)
            .any(|(a, t)| a.ty() != *t)
    {
        return Err(Error::BadArguments {
            function: func_name.to_string(),
            reason: format!(
                "expected {}, got ({})",
                signature,
                args.iter()
                    .map(|a| a.ty().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(args.iter().map(|a| to_val(*a)).collect())
}

/// Converts results back, refusing references.
pub(crate) fn values_of(func_name: &str, results: &[Val]) -> Result<Vec<Value>, Error> {
    results
        .iter()
        .map(|v| {
            from_val(v).ok_or_else(|| Error::BadArguments {
                function: func_name.to_string(),
                reason: "it returns a reference, which `call` cannot return".into(),
            })
        })
        .collect()
}
