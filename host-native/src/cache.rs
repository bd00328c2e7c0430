//! [`Cache`], the API a native embedder uses, and its builder.
//!
//! # Threading model
//!
//! A [`Cache`] is `Send + Sync` and cheap to clone; clones share one wasmtime `Store`
//! (one set of instances, one binding per func_name) behind a mutex, so calls through
//! one cache run one at a time. For parallel calls open one cache per thread on the
//! same directory, sharing one [`Engine`] ([`CacheBuilder::engine`]): the directory is
//! safe for any number of caches, threads and processes at once, and compiled code is
//! shared through the precompiled artifacts.
//!
//! Compilation never holds the lock: [`Cache::get_or_compile`] releases it while the
//! compile callback runs, and a callback that asks the same cache for another
//! compilation gets [`Error::Reentrant`] instead of a deadlock. The same holds for a
//! host function of the embedder that calls back into the cache while wasm code runs.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use linkcache_core::{
    AnalyzeOptions, Bundle, BundledModule, FuncSig, GlobalCheck, GlobalOutcome, Linkage, Miss,
    ModuleId, Value, analyze_with,
};
use wasmtime::{
    AsContextMut, Config, Engine, Linker, Store, TypedFunc, Val, WasmParams, WasmResults,
};

use crate::dir::{DirStore, Trust};
use crate::error::Error;
use crate::load::{self, Host, from_val, to_val};
use crate::stats::Stats;

/// A persistent cache of compiled WebAssembly over a directory. See the crate docs.
#[derive(Clone)]
pub struct Cache {
    shared: Arc<Shared>,
}

struct Shared {
    dir: DirStore,
    engine: Engine,
    store: Mutex<Store<Host>>,
    modules_added: AtomicU64,
    compiles: AtomicU64,
}

/// The embedder's definition of its imports, run once when the cache opens.
type DefineImports = dyn FnOnce(&mut Linker<Host>) -> wasmtime::Result<()>;

/// Options for opening a [`Cache`].
pub struct CacheBuilder {
    dir: PathBuf,
    engine: Option<Engine>,
    precompiled: bool,
    linker: Option<Box<DefineImports>>,
    resolver: Option<Box<load::GlobalResolverFn>>,
}

/// How many times `get_or_compile` asks its compiler before giving up.
const COMPILE_ROUNDS: usize = 4;

thread_local! {
    /// What this thread is inside, per cache (by address): the reentrancy check.
    static INSIDE: RefCell<Vec<(usize, Activity)>> = const { RefCell::new(Vec::new()) };
}

/// Something a thread can be inside of, for one cache.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Activity {
    /// Holding the store's lock: a call into wasm or a load.
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

/// Marks this thread as inside an activity of one cache until dropped.
struct Inside(usize);

impl Inside {
    /// Enters `activity`, unless the thread is inside something that conflicts: a lock
    /// conflicts with a lock (it would deadlock), a compilation with anything.
    fn enter(cache: &Cache, activity: Activity, requested: &str) -> Result<Inside, Error> {
        let key = cache.key();
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

impl CacheBuilder {
    /// Uses `engine` (share one engine between caches of one process; artifacts are
    /// kept per engine configuration).
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Whether to use precompiled artifacts (default: yes, when the directory is
    /// trusted). With `false` every process compiles from the wasm bytes.
    pub fn precompiled(mut self, enabled: bool) -> Self {
        self.precompiled = enabled;
        self
    }

    /// Defines the embedder's imports (memories, WASI, host functions): every import
    /// outside the `linkcache:*` namespaces is looked up in this linker.
    pub fn linker(
        mut self,
        define: impl FnOnce(&mut Linker<Host>) -> wasmtime::Result<()> + 'static,
    ) -> Self {
        self.linker = Some(Box::new(define));
        self
    }

    /// Decides whether a global definition is current and what its value is (default:
    /// [`linkcache_core::literal_global`], the definition is a literal of the global's
    /// type). An `Err(reason)` makes the global stale: the functions that use it miss.
    pub fn global_resolver(
        mut self,
        resolver: impl FnMut(&GlobalCheck) -> GlobalOutcome + Send + 'static,
    ) -> Self {
        self.resolver = Some(Box::new(resolver));
        self
    }

    /// Opens the cache.
    pub fn open(self) -> Result<Cache, Error> {
        let dir = DirStore::open(&self.dir)?;
        let engine = match self.engine {
            Some(engine) => engine,
            None => Engine::new(&Config::new())
                .map_err(|e| Error::Link(format!("creating the engine: {e}")))?,
        };
        let mut linker = Linker::new(&engine);
        if let Some(define) = self.linker {
            define(&mut linker).map_err(|e| Error::Link(format!("{e:#}")))?;
        }
        let trust = dir.trust();
        let precompiled = self.precompiled && trust == Trust::Trusted;
        let stats = Stats {
            precompiled,
            untrusted_reason: match (&trust, self.precompiled) {
                (Trust::Untrusted(reason), true) => Some(reason.clone()),
                (_, false) => Some("disabled by the embedder".into()),
                _ => None,
            },
            ..Stats::default()
        };
        let host = Host {
            dir: dir.clone(),
            engine_key: engine_key(&engine),
            precompiled,
            linkage: Linkage::new(),
            loading: false,
            modules: Default::default(),
            instances: Default::default(),
            funcs: Default::default(),
            shared_globals: Default::default(),
            resolver: self.resolver,
            linker: Arc::new(linker),
            stats,
        };
        let store = Store::new(&engine, host);
        Ok(Cache {
            shared: Arc::new(Shared {
                dir,
                engine,
                store: Mutex::new(store),
                modules_added: AtomicU64::new(0),
                compiles: AtomicU64::new(0),
            }),
        })
    }
}

/// The directory artifacts of `engine` live in: the wasmtime version and a hash of
/// everything that makes precompiled code compatible.
fn engine_key(engine: &Engine) -> String {
    use std::hash::{Hash, Hasher};
    struct Blake3Hasher(blake3::Hasher);
    impl Hasher for Blake3Hasher {
        fn finish(&self) -> u64 {
            let hash = self.0.finalize();
            u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("wasmtime-{}-{:016x}", wasmtime_version(), hasher.finish())
}

fn wasmtime_version() -> &'static str {
    // The engine's own version string is part of its compatibility hash; this prefix
    // only makes directories readable.
    "48"
}

impl Cache {
    /// Opens the cache at `dir`, creating it (mode 0700) when absent.
    pub fn open(dir: impl AsRef<Path>) -> Result<Cache, Error> {
        Cache::builder(dir).open()
    }

    /// Opens the cache at `$LINKCACHE_DIR`, else in the user's cache directory
    /// (`~/.cache/linkcache` on Linux).
    pub fn open_default() -> Result<Cache, Error> {
        Cache::open(default_dir())
    }

    /// Options for opening the cache at `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> CacheBuilder {
        CacheBuilder {
            dir: dir.as_ref().to_path_buf(),
            engine: None,
            precompiled: true,
            linker: None,
            resolver: None,
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &DirStore {
        &self.shared.dir
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    fn key(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    /// Locks the store; an attempt from inside a call into this cache on the same thread
    /// (an embedder's host function calling back) is an error, not a deadlock.
    fn lock(&self, requested: &str) -> Result<(MutexGuard<'_, Store<Host>>, Inside), Error> {
        let inside = Inside::enter(self, Activity::Locked, requested)?;
        let guard = self
            .shared
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok((guard, inside))
    }

    /// Analyzes `wasm` and commits it to the cache; returns its id. Adding bytes that are
    /// cached already changes nothing (and completes an interrupted commit).
    pub fn add_module(&self, wasm: &[u8]) -> Result<ModuleId, Error> {
        self.add_module_with(wasm, &AnalyzeOptions::default())
    }

    /// Like [`Cache::add_module`], with global definitions or declared dependencies.
    pub fn add_module_with(
        &self,
        wasm: &[u8],
        options: &AnalyzeOptions,
    ) -> Result<ModuleId, Error> {
        let manifest = analyze_with(wasm, options)?;
        self.shared.dir.commit(wasm, &manifest)?;
        self.shared.modules_added.fetch_add(1, Ordering::Relaxed);
        Ok(manifest.module)
    }

    /// Targets `func_name` with the parameter and result types `P -> R` (for example
    /// `(i64,)` and `i64`): loads what it needs and returns a typed callable, or
    /// [`Error::Miss`] naming why it cannot.
    pub fn target<P: WasmParams, R: WasmResults>(
        &self,
        func_name: &str,
    ) -> Result<Target<P, R>, Error> {
        let (mut store, _inside) = self.lock(func_name)?;
        let bound = load::target(store.as_context_mut(), func_name, None, true)?;
        let func = bound
            .func
            .typed::<P, R>(&*store)
            .map_err(|_| Error::SignatureMismatch {
                function: func_name.to_string(),
                expected: format!(
                    "{} -> {}",
                    std::any::type_name::<P>(),
                    std::any::type_name::<R>()
                ),
                found: bound.signature.clone(),
            })?;
        Ok(Target {
            func,
            func_name: func_name.to_string(),
            module: bound.module,
            signature: bound.signature,
            cache: self.key(),
            _types: PhantomData,
        })
    }

    /// Targets `func_name` without static types; call it with [`Cache::call`].
    pub fn target_dynamic(&self, func_name: &str) -> Result<DynamicTarget, Error> {
        let (mut store, _inside) = self.lock(func_name)?;
        let bound = load::target(store.as_context_mut(), func_name, None, true)?;
        Ok(DynamicTarget {
            func_name: func_name.to_string(),
            module: bound.module,
            signature: bound.signature,
        })
    }

    /// Targets and calls `func_name` with dynamically typed arguments.
    pub fn call(&self, func_name: &str, args: &[Value]) -> Result<Vec<Value>, Error> {
        let (mut store, _inside) = self.lock(func_name)?;
        let targeted_before = store.data().linkage.binding(func_name).is_some();
        let bound = load::target(store.as_context_mut(), func_name, None, !targeted_before)?;
        if args.len() != bound.signature.params.len()
            || args
                .iter()
                .zip(&bound.signature.params)
                .any(|(a, t)| a.ty() != *t)
        {
            return Err(Error::BadArguments {
                function: func_name.to_string(),
                reason: format!(
                    "expected {}, got ({})",
                    bound.signature,
                    args.iter()
                        .map(|a| a.ty().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let params: Vec<Val> = args.iter().map(|a| to_val(*a)).collect();
        let mut results = vec![Val::I32(0); bound.signature.results.len()];
        bound
            .func
            .call(&mut *store, &params, &mut results)
            .map_err(|source| Error::Trap {
                function: func_name.to_string(),
                source,
            })?;
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

    /// Targets `func_name`; on a miss, asks `compile` for modules (it gets the miss,
    /// which names what is missing), adds them and tries again. A callback that calls
    /// `get_or_compile` on this cache gets [`Error::Reentrant`].
    pub fn get_or_compile<P, R, E>(
        &self,
        func_name: &str,
        mut compile: impl FnMut(&Miss) -> Result<Vec<Vec<u8>>, E>,
    ) -> Result<Target<P, R>, Error>
    where
        P: WasmParams,
        R: WasmResults,
        E: std::fmt::Display,
    {
        // Fail fast when called from a compile callback of this cache.
        drop(Inside::enter(
            self,
            Activity::Compiling(func_name.into()),
            func_name,
        )?);
        let mut last_miss: Option<Miss> = None;
        for _ in 0..=COMPILE_ROUNDS {
            let miss = match self.target::<P, R>(func_name) {
                Ok(target) => return Ok(target),
                Err(Error::Miss(miss)) => miss,
                Err(e) => return Err(e),
            };
            if last_miss.as_ref() == Some(&miss) {
                return Err(Error::CompileDidNotHelp {
                    function: func_name.to_string(),
                    miss: Box::new(miss),
                });
            }
            let modules = {
                let _inside =
                    Inside::enter(self, Activity::Compiling(func_name.into()), func_name)?;
                compile(&miss).map_err(|e| Error::CompileFailed {
                    function: func_name.to_string(),
                    reason: e.to_string(),
                })?
            };
            self.shared.compiles.fetch_add(1, Ordering::Relaxed);
            for module in &modules {
                self.add_module(module)?;
            }
            last_miss = Some(miss);
        }
        let miss = last_miss.expect("at least one round ran");
        Err(Error::CompileDidNotHelp {
            function: func_name.to_string(),
            miss: Box::new(miss),
        })
    }

    /// What this cache did since it was opened.
    pub fn stats(&self) -> Stats {
        let store = self.shared.store.lock().unwrap_or_else(|p| p.into_inner());
        let mut stats = store.data().stats.clone();
        stats.modules_added = self.shared.modules_added.load(Ordering::Relaxed);
        stats.compiles = self.shared.compiles.load(Ordering::Relaxed);
        stats
    }

    /// The module `func_name` is bound to in this cache, if it was targeted.
    pub fn binding(&self, func_name: &str) -> Option<ModuleId> {
        let store = self.shared.store.lock().unwrap_or_else(|p| p.into_inner());
        store.data().linkage.binding(func_name)
    }

    /// The modules loaded in this cache, in the order they were instantiated.
    pub fn loaded_modules(&self) -> Vec<ModuleId> {
        let store = self.shared.store.lock().unwrap_or_else(|p| p.into_inner());
        store.data().linkage.loaded_modules().to_vec()
    }

    /// Writes the given modules (every committed module when `None`) as a bundle that
    /// either host can import.
    pub fn export_bundle(&self, modules: Option<&[ModuleId]>) -> Result<Bundle, Error> {
        let ids = match modules {
            Some(ids) => ids.to_vec(),
            None => self.shared.dir.modules()?,
        };
        let mut bundle = Bundle::default();
        for id in ids {
            let (Ok(manifest), Ok(wasm)) = (
                self.shared.dir.manifest(&id)?,
                self.shared.dir.module_bytes(&id)?,
            ) else {
                continue;
            };
            bundle.modules.push(BundledModule { wasm, manifest });
        }
        Ok(bundle)
    }

    /// Imports a bundle: every module is checked against its manifest, then committed.
    /// Returns the ids imported.
    pub fn import_bundle(&self, bytes: &[u8]) -> Result<Vec<ModuleId>, Error> {
        let bundle = Bundle::decode(bytes)?;
        let mut ids = Vec::with_capacity(bundle.modules.len());
        for (index, module) in bundle.modules.iter().enumerate() {
            module
                .manifest
                .check_against(&module.wasm)
                .map_err(|reason| linkcache_core::BundleError::Mismatch { index, reason })?;
        }
        for module in &bundle.modules {
            self.shared.dir.commit(&module.wasm, &module.manifest)?;
            ids.push(module.manifest.module);
        }
        Ok(ids)
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("dir", &self.shared.dir.root())
            .finish_non_exhaustive()
    }
}

/// The default cache directory: `$LINKCACHE_DIR`, else `<user cache dir>/linkcache`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("LINKCACHE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("linkcache"),
    }
}

/// A typed function returned by [`Cache::target`]; call it with [`Target::call`].
pub struct Target<P, R> {
    func: TypedFunc<P, R>,
    func_name: String,
    module: ModuleId,
    signature: FuncSig,
    cache: usize,
    _types: PhantomData<fn(P) -> R>,
}

impl<P: WasmParams, R: WasmResults> Target<P, R> {
    /// Calls the function through `cache` (the cache it was targeted on).
    pub fn call(&self, cache: &Cache, params: P) -> Result<R, Error> {
        if cache.key() != self.cache {
            return Err(Error::WrongCache);
        }
        let (mut store, _inside) = cache.lock(&self.func_name)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_and_targets_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Cache>();
        send_sync::<Target<(i64,), i64>>();
        send_sync::<DirStore>();
    }
}
