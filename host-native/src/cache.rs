//! [`Cache`], the state a process shares between all its stores and threads, and its
//! builder.
//!
//! # Threading model
//!
//! A [`Cache`] is `Clone + Send + Sync`: the directory, the wasmtime [`Engine`], and the
//! compiled `Module`s of this process, each checked and deserialized (or compiled) once
//! and then used by every store on every thread. What is instantiated and bound belongs
//! to one wasmtime `Store`, so it lives in the store's data: a
//! [`StoreLinkage`](crate::StoreLinkage) that the embedder keeps in its own `T` and
//! exposes through [`LinkageView`](crate::LinkageView). There are two ways to use it:
//!
//! - **The simple path**: [`Cache::target`], [`Cache::call`] and
//!   [`Cache::get_or_compile`] use one store that the cache owns, behind a mutex (calls
//!   through it run one at a time). Enough for a single-threaded program, a CLI, a
//!   script.
//! - **The embedder's stores**: [`Cache::get_typed_func`] / [`Cache::get_func`] target a
//!   function in the embedder's own `Store<T>` and return wasmtime's own
//!   [`TypedFunc`](wasmtime::TypedFunc) / [`Func`](wasmtime::Func), called with the
//!   embedder's store. One store per thread, a store per request, fuel, epochs,
//!   `ResourceLimiter`s and async stores ([`Cache::get_typed_func_async`]) all work;
//!   nothing is locked while wasm runs. See the crate docs for an example of each.
//!
//! Within a store, each func_name is bound once; duplicate resolution gives every store
//! of every process the same module when they see the same index.
//!
//! A compile callback that compiles through the same cache, or a host function that
//! targets through the simple path while the simple path is calling it, gets
//! [`Error::Reentrant`] instead of a deadlock. A panic in a host function, a global
//! resolver or a compile callback leaves the cache usable.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use linkcache_core::{
    AnalyzeOptions, Bundle, BundledModule, GlobalCheck, GlobalOutcome, Linkage, Miss, ModuleId,
    analyze_with, append_globals_section,
};
use wasmtime::{Config, Engine, Linker, StoreLimits};

use crate::dir::{DirStore, Trust};
use crate::error::Error;
use crate::registry::{Registry, lock};
use crate::simple::{Activity, Inside, SimplePath};
use crate::stats::Stats;

/// A persistent cache of compiled WebAssembly over a directory. See the crate docs and
/// the [module docs](self) for the threading model.
#[derive(Clone)]
pub struct Cache {
    pub(crate) shared: Arc<Shared>,
    pub(crate) simple: Arc<SimplePath>,
}

/// Decides whether a global definition is current: its value, or why it is stale.
pub type GlobalResolverFn = dyn Fn(&GlobalCheck) -> GlobalOutcome + Send + Sync;

/// The state every store and thread of a process shares.
pub(crate) struct Shared {
    /// Unique in the process, never reused: tells targets and linkages which cache
    /// they belong to.
    pub(crate) id: u64,
    pub(crate) dir: DirStore,
    pub(crate) engine: Engine,
    pub(crate) engine_key: String,
    pub(crate) precompiled: bool,
    pub(crate) resolver: Option<Arc<GlobalResolverFn>>,
    pub(crate) registry: Registry,
    /// Modules found broken in this process by any store (their data is damaged), with
    /// the reasons: every store skips them.
    pub(crate) broken: Mutex<BTreeMap<ModuleId, String>>,
    /// Modules committed again after they were found broken, in order: each store
    /// forgets its broken mark for them before it plans next.
    pub(crate) repairs: Mutex<Vec<ModuleId>>,
    /// When this process last refreshed each loaded module's use marker.
    touched: Mutex<HashMap<ModuleId, Instant>>,
    pub(crate) stats: Mutex<Stats>,
    /// The remote tier, if one is configured.
    #[cfg(feature = "remote")]
    pub(crate) remote: Option<crate::remote::Remote>,
}

/// How often a long-running process refreshes the use marker of a module it keeps
/// using, so that another process's gc does not take it for cold.
const TOUCH_INTERVAL: Duration = Duration::from_secs(600);

/// Compiled modules a process keeps by default (see [`CacheBuilder::modules_in_memory`]).
pub const DEFAULT_MODULES_IN_MEMORY: usize = 4096;

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// The embedder's definition of its imports for the simple path's store, run once when
/// the cache opens.
type DefineImports = dyn FnOnce(&mut Linker<crate::Host>) -> wasmtime::Result<()>;

/// Options for opening a [`Cache`].
pub struct CacheBuilder {
    dir: PathBuf,
    engine: Option<Engine>,
    precompiled: bool,
    linker: Option<Box<DefineImports>>,
    resolver: Option<Arc<GlobalResolverFn>>,
    limits: Option<StoreLimits>,
    modules_in_memory: usize,
    #[cfg(feature = "remote")]
    remote: RemoteChoice,
}

/// Where the remote tier's configuration comes from.
#[cfg(feature = "remote")]
enum RemoteChoice {
    /// `$LINKCACHE_REMOTE` (the default).
    FromEnv,
    Url(String),
    Config(Option<crate::remote::RemoteConfig>),
}

/// How many times `get_or_compile` asks its compiler before giving up.
const COMPILE_ROUNDS: usize = 4;

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

    /// Defines the embedder's imports (memories, WASI, host functions) for the simple
    /// path's store ([`Cache::target`]): every import outside the `linkcache:*`
    /// namespaces is looked up in this linker. The embedder's own stores bring their own
    /// linker ([`Cache::store_linkage`]).
    pub fn linker(
        mut self,
        define: impl FnOnce(&mut Linker<crate::Host>) -> wasmtime::Result<()> + 'static,
    ) -> Self {
        self.linker = Some(Box::new(define));
        self
    }

    /// Decides whether a global definition is current and what its value is (default:
    /// [`linkcache_core::literal_global`], the definition is a literal of the global's
    /// type). An `Err(reason)` makes the global stale: the functions that use it miss.
    /// Shared by every store and thread, so it is `Fn + Send + Sync`; it may panic
    /// without harming the cache (the target that asked fails).
    pub fn global_resolver(
        mut self,
        resolver: impl Fn(&GlobalCheck) -> GlobalOutcome + Send + Sync + 'static,
    ) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// Resource limits of the simple path's store (instances, memories, tables). Without
    /// them wasmtime's defaults apply, among them at most 10,000 instances per store.
    pub fn limits(mut self, limits: StoreLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// How many compiled modules the process keeps in memory for reuse by later stores
    /// (default [`DEFAULT_MODULES_IN_MEMORY`]); beyond it the least recently used are
    /// dropped (instances made from them keep working) and loaded again when needed.
    pub fn modules_in_memory(mut self, count: usize) -> Self {
        self.modules_in_memory = count;
        self
    }

    /// A remote tier shared by many machines: `redis://host:port[/db][?prefix=…]`, or
    /// `off` (see [`RemoteConfig`](crate::remote::RemoteConfig) for the options). The
    /// default is `$LINKCACHE_REMOTE`, else none. The URL is parsed when the cache opens
    /// (a bad one is an [`Error::Config`]); the server is contacted only on a local miss
    /// or a publication, and a server that cannot be reached is a miss, never an error.
    #[cfg(feature = "remote")]
    pub fn remote(mut self, url: &str) -> Self {
        self.remote = RemoteChoice::Url(url.to_string());
        self
    }

    /// A parsed remote configuration (`None`: no remote tier, whatever the environment
    /// says).
    #[cfg(feature = "remote")]
    pub fn remote_config(mut self, config: Option<crate::remote::RemoteConfig>) -> Self {
        self.remote = RemoteChoice::Config(config);
        self
    }

    /// Opens the cache.
    pub fn open(self) -> Result<Cache, Error> {
        #[cfg(feature = "remote")]
        let remote_tier = match self.remote {
            RemoteChoice::FromEnv => crate::remote::RemoteConfig::from_env()?,
            RemoteChoice::Url(url) => crate::remote::RemoteConfig::parse(&url)?,
            RemoteChoice::Config(config) => config,
        }
        .map(crate::remote::Tier::new)
        .transpose()?;
        let dir = DirStore::open(&self.dir)?;
        let engine = match self.engine {
            Some(engine) => engine,
            None => Engine::new(&Config::new())
                .map_err(|e| Error::Link(format!("creating the engine: {e}")))?,
        };
        let trust = dir.trust();
        let precompiled = self.precompiled && trust == Trust::Trusted;
        let untrusted_reason = match (&trust, self.precompiled) {
            (Trust::Untrusted(reason), true) => {
                tracing::warn!(
                    dir = %dir.root().display(),
                    %reason,
                    "linkcache: precompiled code disabled, every module is compiled from its wasm bytes"
                );
                Some(reason.clone())
            }
            (_, false) => Some("disabled by the embedder".into()),
            _ => None,
        };
        let read_only = match dir.access() {
            crate::dir::Access::ReadOnly(reason) => Some(reason.clone()),
            crate::dir::Access::ReadWrite => None,
        };
        let stats = Stats {
            precompiled,
            untrusted_reason,
            read_only,
            ..Stats::default()
        };
        let capacity = NonZeroUsize::new(self.modules_in_memory).unwrap_or(NonZeroUsize::MIN);
        let engine_key = engine_key(&engine);
        let shared = Arc::new_cyclic(|_weak: &std::sync::Weak<Shared>| Shared {
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            #[cfg(feature = "remote")]
            remote: remote_tier.map(|tier| {
                let weak = _weak.clone();
                crate::remote::Remote::start(
                    tier,
                    &dir,
                    &engine_key,
                    precompiled,
                    Box::new(move || {
                        if let Some(shared) = weak.upgrade() {
                            shared.registry.forget_fresh_plans();
                        }
                    }),
                )
            }),
            engine_key,
            dir,
            engine,
            precompiled,
            resolver: self.resolver,
            registry: Registry::new(capacity),
            broken: Mutex::new(BTreeMap::new()),
            repairs: Mutex::new(Vec::new()),
            touched: Mutex::new(HashMap::new()),
            stats: Mutex::new(stats),
        });
        let mut linker = Linker::new(&shared.engine);
        if let Some(define) = self.linker {
            define(&mut linker).map_err(|e| Error::Link(format!("{e:#}")))?;
        }
        let simple = Arc::new(SimplePath::new(&shared, linker, self.limits));
        Ok(Cache { shared, simple })
    }
}

/// The directory under `artifacts/` that holds the precompiled code of `engine`: the
/// wasmtime version and a hash of everything that makes precompiled code compatible
/// (engines with the same key load each other's artifacts). This is the key
/// [`DirStore::artifact`] and [`DirStore::store_artifact`] take.
pub fn engine_key(engine: &Engine) -> String {
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

impl Shared {
    /// Adds to the statistics.
    pub(crate) fn count(&self, update: impl FnOnce(&mut Stats)) {
        update(&mut lock(&self.stats));
    }

    /// Remembers for every store of the process that `module` is broken, and forgets
    /// what was planned or compiled from it.
    pub(crate) fn mark_broken(&self, module: ModuleId, reason: &str) {
        let newly = lock(&self.broken)
            .insert(module, reason.to_string())
            .is_none();
        if newly {
            tracing::warn!(module = %module, %reason, "linkcache: broken cache entry skipped");
            self.registry.forget_module(&module);
            self.registry.forget_fresh_plans();
        }
    }

    /// A module was committed again: if it was broken, the bad files are replaced now,
    /// so the process forgets the mark (and the compiled module, if any).
    pub(crate) fn repaired(&self, module: &ModuleId) {
        if lock(&self.broken).remove(module).is_some() {
            tracing::info!(module = %module, "linkcache: broken module repaired by a re-add");
            self.registry.forget_module(module);
            lock(&self.repairs).push(*module);
        }
    }

    /// Brings a store's broken marks up to date before it plans: the process's new
    /// marks are added, and repaired modules (from `repairs_seen` on) forgotten.
    pub(crate) fn sync_broken(&self, linkage: &mut Linkage, repairs_seen: &mut usize) {
        {
            let repairs = lock(&self.repairs);
            for module in &repairs[(*repairs_seen).min(repairs.len())..] {
                linkage.forget_broken(module);
            }
            *repairs_seen = repairs.len();
        }
        let broken = lock(&self.broken);
        for (module, reason) in broken.iter() {
            if linkage.broken_reason(module).is_none() {
                linkage.mark_broken(*module, reason.clone());
            }
        }
    }

    /// Refreshes the use marker of `module` when this process has not done so lately.
    pub(crate) fn touch(&self, module: &ModuleId) {
        let now = Instant::now();
        let due = {
            let mut touched = lock(&self.touched);
            match touched.get(module) {
                Some(last) if now.duration_since(*last) < TOUCH_INTERVAL => false,
                _ => {
                    touched.insert(*module, now);
                    true
                }
            }
        };
        if due {
            self.dir.touch(module);
        }
    }
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
            limits: None,
            modules_in_memory: DEFAULT_MODULES_IN_MEMORY,
            #[cfg(feature = "remote")]
            remote: RemoteChoice::FromEnv,
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &DirStore {
        &self.shared.dir
    }

    /// The wasmtime engine: create the embedder's stores and linkers with it.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Identifies this cache within the process (unique, never reused).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Analyzes `wasm` and commits it to the cache; returns its id. Adding bytes that are
    /// cached already changes nothing (and completes an interrupted commit).
    pub fn add_module(&self, wasm: &[u8]) -> Result<ModuleId, Error> {
        self.add_module_with(wasm, &AnalyzeOptions::default())
    }

    /// Like [`Cache::add_module`], with global definitions or declared dependencies.
    ///
    /// Global definitions are part of a module's identity: definitions passed here are
    /// appended to the bytes as a `linkcache.globals` custom section (overriding any
    /// definition of the same name already in the module), and the returned id is that
    /// of the bytes with the section. Adding the same code with other definitions (a
    /// global that changed) therefore adds a new module that defines the same
    /// functions: a duplicate, which the planner picks whenever the older module's
    /// definition is stale.
    pub fn add_module_with(
        &self,
        wasm: &[u8],
        options: &AnalyzeOptions,
    ) -> Result<ModuleId, Error> {
        if options.globals.is_empty() {
            return self.commit_analyzed(wasm, options);
        }
        let mut with_definitions = wasm.to_vec();
        append_globals_section(
            &mut with_definitions,
            options
                .globals
                .iter()
                .map(|(name, definition)| (name.as_str(), definition.as_slice())),
        );
        let declared_only = AnalyzeOptions {
            declared: options.declared.clone(),
            ..AnalyzeOptions::default()
        };
        self.commit_analyzed(&with_definitions, &declared_only)
    }

    fn commit_analyzed(&self, wasm: &[u8], options: &AnalyzeOptions) -> Result<ModuleId, Error> {
        self.shared.dir.require_writable_for_add()?;
        let manifest = analyze_with(wasm, options)?;
        self.shared.dir.commit(wasm, &manifest)?;
        self.committed(&manifest.module);
        Ok(manifest.module)
    }

    /// Adds many modules at once: each is analyzed (any invalid one rejects the whole
    /// batch before anything is written), then all are committed together with the
    /// syncs of one commit (see [`DirStore::commit_many`]), which makes a JIT's burst of
    /// modules far cheaper than one [`Cache::add_module`] each. Returns their ids, in
    /// order; duplicates resolve in this order too.
    pub fn add_modules<B: AsRef<[u8]>>(&self, modules: &[B]) -> Result<Vec<ModuleId>, Error> {
        self.shared.dir.require_writable_for_add()?;
        let manifests = modules
            .iter()
            .map(|wasm| analyze_with(wasm.as_ref(), &AnalyzeOptions::default()))
            .collect::<Result<Vec<_>, _>>()?;
        let batch: Vec<(&[u8], &linkcache_core::Manifest)> = modules
            .iter()
            .map(|wasm| wasm.as_ref())
            .zip(&manifests)
            .collect();
        self.shared.dir.commit_many(&batch)?;
        Ok(manifests
            .iter()
            .map(|manifest| {
                self.committed(&manifest.module);
                manifest.module
            })
            .collect())
    }

    /// Garbage collection over this cache's directory (see [`DirStore::gc_with`]): at
    /// most `max_size` bytes remain, and the precompiled artifacts of other engine
    /// configurations are removed (this cache's are kept).
    pub fn gc(
        &self,
        max_size: u64,
        progress: impl FnMut(&ModuleId),
    ) -> Result<crate::GcReport, Error> {
        let report = self.shared.dir.gc_with(
            &crate::GcOptions {
                max_size,
                keep_engine: Some(&self.shared.engine_key),
            },
            progress,
        )?;
        for id in &report.evicted {
            self.shared.registry.forget_module(id);
        }
        self.shared.registry.forget_fresh_plans();
        Ok(report)
    }

    /// After a successful commit of `module`: a new module can change what a fresh store
    /// would bind, and a module found broken in this process may be whole again (a
    /// re-add repairs damaged files), so every store may try it again.
    fn committed(&self, module: &ModuleId) {
        self.shared.registry.forget_fresh_plans();
        self.shared.repaired(module);
        self.shared.count(|stats| stats.modules_added += 1);
        #[cfg(feature = "remote")]
        if let Some(remote) = &self.shared.remote {
            remote.enqueue(crate::remote::Job::Module(*module));
        }
    }

    /// Targets `func_name`; on a miss, asks `compile` for modules (it gets the miss,
    /// which names what is missing), adds them and tries again, with `attempt` doing the
    /// targeting. A callback that compiles through this cache gets [`Error::Reentrant`].
    pub(crate) fn compile_until<F, E: std::fmt::Display>(
        &self,
        func_name: &str,
        mut attempt: impl FnMut() -> Result<F, Error>,
        mut compile: impl FnMut(&Miss) -> Result<Vec<Vec<u8>>, E>,
    ) -> Result<F, Error> {
        // Fail fast when called from a compile callback of this cache.
        drop(Inside::enter(
            self,
            Activity::Compiling(func_name.into()),
            func_name,
        )?);
        let mut last_miss: Option<Miss> = None;
        for _ in 0..=COMPILE_ROUNDS {
            let miss = match attempt() {
                Ok(found) => return Ok(found),
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
            self.shared.count(|stats| stats.compiles += 1);
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

    /// What this cache did since it was opened, in every store and thread. Safe to call
    /// from anywhere, a host function in the middle of a call included.
    pub fn stats(&self) -> Stats {
        let mut stats = lock(&self.shared.stats).clone();
        stats.modules_in_memory = self.shared.registry.modules_held() as u64;
        #[cfg(feature = "remote")]
        {
            stats.remote = self.shared.remote.as_ref().map(|r| r.tier.stats());
        }
        stats
    }

    /// Writes the given modules (every committed module when `None`) as a bundle that
    /// either host can import.
    pub fn export_bundle(&self, modules: Option<&[ModuleId]>) -> Result<Bundle, Error> {
        let ids = match modules {
            Some(ids) => ids.to_vec(),
            None => self.shared.dir.modules_in_commit_order()?,
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

    /// Imports a bundle: every module is checked against its manifest, then all are
    /// committed together, stamped in the bundle's order (an exported cache's duplicates
    /// keep their order). Returns the ids imported.
    pub fn import_bundle(&self, bytes: &[u8]) -> Result<Vec<ModuleId>, Error> {
        self.shared.dir.require_writable_for_add()?;
        let bundle = Bundle::decode(bytes)?;
        for (index, module) in bundle.modules.iter().enumerate() {
            module
                .manifest
                .check_against(&module.wasm)
                .map_err(|reason| linkcache_core::BundleError::Mismatch { index, reason })?;
        }
        let batch: Vec<(&[u8], &linkcache_core::Manifest)> = bundle
            .modules
            .iter()
            .map(|module| (module.wasm.as_slice(), &module.manifest))
            .collect();
        self.shared.dir.commit_many(&batch)?;
        Ok(bundle
            .modules
            .iter()
            .map(|module| {
                self.committed(&module.manifest.module);
                module.manifest.module
            })
            .collect())
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("id", &self.shared.id)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_and_targets_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Cache>();
        send_sync::<crate::Target<(i64,), i64>>();
        send_sync::<DirStore>();
    }
}
