//! linkcache on wasmtime: a persistent cache of compiled WebAssembly in a directory that
//! many processes share at once.
//!
//! For programs that generate wasm at run time (a JIT, a query engine, a plugin host):
//! the compiler adds modules; a caller asks for a function by name and gets something
//! it can call. Only the modules that function reaches are loaded, precompiled machine
//! code is reused across processes, and duplicates left by racing writers resolve to one
//! binding per function. The decisions are made by [`linkcache_core`]; this crate does
//! the I/O ([`DirStore`]) and the instantiation (wasmtime).
//!
//! # Example
//!
//! ```
//! use linkcache_native::{Cache, Error};
//!
//! let dir = tempfile::tempdir()?;
//! let cache = Cache::open(dir.path())?;
//!
//! // A compiler's output: `math.quad` calls `util.sq`, defined in another module.
//! let util = wat::parse_str(r#"(module
//!     (func (export "util.sq") (param i64) (result i64)
//!         (i64.mul (local.get 0) (local.get 0))))"#)?;
//! let math = wat::parse_str(r#"(module
//!     (import "linkcache:fn" "util.sq" (func $sq (param i64) (result i64)))
//!     (func (export "math.quad") (param i64) (result i64)
//!         (call $sq (call $sq (local.get 0)))))"#)?;
//!
//! // Not cached yet: a miss that names the cause.
//! let miss = cache.target::<(i64,), i64>("math.quad").unwrap_err();
//! assert_eq!(miss.miss().map(|m| m.cause()), Some("unknown"));
//!
//! cache.add_module(&util)?;
//! cache.add_module(&math)?;
//! let quad = cache.target::<(i64,), i64>("math.quad")?;
//! assert_eq!(quad.call(&cache, (3,))?, 81);
//!
//! // Or let the cache ask the compiler only when something is missing.
//! let same = cache.get_or_compile::<(i64,), i64, Error>("math.quad", |_miss| unreachable!())?;
//! assert_eq!(same.call(&cache, (2,))?, 16);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A second process opening the same directory loads the precompiled code of both
//! modules instead of compiling them ([`Stats::artifacts_deserialized`]).
//!
//! # Threading model: one example per pattern
//!
//! A [`Cache`] is `Clone + Send + Sync` and holds what a process shares: the directory,
//! the engine, and the compiled modules (each loaded once per process). Instances and
//! bindings belong to a wasmtime `Store`. The example above is the **simple path**: the
//! cache's own store, behind a mutex, for single-threaded programs.
//!
//! **A thread pool**: each thread keeps its own store; the embedder's store data holds a
//! [`StoreLinkage`] and implements [`LinkageView`]. Calls run in parallel, nothing is
//! locked while wasm runs.
//!
//! ```
//! use std::sync::Arc;
//! use linkcache_native::{Cache, LinkageView, StoreLinkage};
//! use wasmtime::{Linker, Store};
//!
//! struct Worker { linkage: StoreLinkage<Worker> }
//! impl LinkageView for Worker {
//!     fn linkage(&mut self) -> &mut StoreLinkage<Worker> { &mut self.linkage }
//! }
//!
//! let dir = tempfile::tempdir()?;
//! let cache = Cache::open(dir.path())?;
//! cache.add_module(&wat::parse_str(r#"(module (func (export "math.inc")
//!     (param i64) (result i64) (i64.add (local.get 0) (i64.const 1))))"#)?)?;
//! let linker = Arc::new(Linker::new(cache.engine()));
//!
//! let threads: Vec<_> = (0..4).map(|t| {
//!     let (cache, linker) = (cache.clone(), linker.clone());
//!     std::thread::spawn(move || {
//!         let mut store = Store::new(cache.engine(), Worker { linkage: cache.store_linkage(linker) });
//!         let inc = cache.get_typed_func::<i64, i64, _>(&mut store, "math.inc").unwrap();
//!         inc.call(&mut store, t).unwrap()
//!     })
//! }).collect();
//! let results: Vec<i64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
//! assert_eq!(results, [1, 2, 3, 4]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **A store per request** (serverless, plugin hosts): a fresh `Store` for each request,
//! thrown away after it, with the embedder's own state, fuel, epoch deadline or
//! `StoreLimits`; targeting in a fresh store reuses the process's compiled modules and
//! the plan of the previous request. See [`store_linkage`] for the full example with a
//! host function reading the embedder's state through `Caller<T>`.
//!
//! **Async** (tokio and other executors; feature `async`): a linkage from
//! [`Cache::async_store_linkage`], targets with [`Cache::get_typed_func_async`], calls
//! with wasmtime's `call_async`; lazy edges load asynchronously inside the call.
//!
//! ```
//! # #[cfg(feature = "async")] {
//! # use std::sync::Arc;
//! # use linkcache_native::{Cache, LinkageView, StoreLinkage};
//! # use wasmtime::{Linker, Store};
//! # struct Task { linkage: StoreLinkage<Task> }
//! # impl LinkageView for Task {
//! #     fn linkage(&mut self) -> &mut StoreLinkage<Task> { &mut self.linkage }
//! # }
//! # let dir = tempfile::tempdir().unwrap();
//! # let cache = Cache::open(dir.path()).unwrap();
//! # cache.add_module(&wat::parse_str(r#"(module (func (export "math.inc")
//! #     (param i64) (result i64) (i64.add (local.get 0) (i64.const 1))))"#).unwrap()).unwrap();
//! let runtime = tokio::runtime::Runtime::new().unwrap();
//! runtime.block_on(async {
//!     let linker = Arc::new(Linker::new(cache.engine()));
//!     let mut store = Store::new(cache.engine(), Task { linkage: cache.async_store_linkage(linker) });
//!     let inc = cache.get_typed_func_async::<i64, i64, _>(&mut store, "math.inc").await.unwrap();
//!     assert_eq!(inc.call_async(&mut store, 41).await.unwrap(), 42);
//! });
//! # }
//! ```
//!
//! # Cargo features
//!
//! Only `remote` is on by default; with `default-features = false` an embedder compiles
//! only the library and the wasmtime features it needs (`cranelift`, `runtime`, `std`).
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `remote` (default) | the [remote tier](remote) on Redis (the `redis` crate's synchronous client, no TLS, no async runtime) |
//! | `remote-s3` (default) | the remote tier on S3 too (OpenDAL's S3 service, reqwest, rustls with ring, a small tokio runtime) |
//! | `async` | asynchronous stores (`wasmtime/async`) |
//! | `cli` | the `linkcache` command-line tool (clap, indicatif, serde_json, wat; `remote` too) |
//! | `parallel-compilation` | `wasmtime/parallel-compilation` |
//! | `pooling-allocator` | `wasmtime/pooling-allocator` |
//!
//! # Logs
//!
//! linkcache reports through [`tracing`](https://docs.rs/tracing): spans
//! `linkcache.target`, `linkcache.plan`, `linkcache.load` and `linkcache.load_module`
//! (debug), and warnings when a broken cache entry is skipped, a precompiled artifact is
//! rejected or cannot be stored, or precompiled code is disabled because the directory
//! is not trusted. Nothing is printed unless the embedder installs a subscriber.
//!
//! See [`cache`] for the threading model and [`dir`] for the directory layout and the
//! guarantees it gives under crashes and concurrent writers.

#![warn(missing_docs)]

pub mod cache;
pub mod dir;
mod error;
mod load;
mod registry;
#[cfg(feature = "remote")]
pub mod remote;
mod simple;
mod stats;
pub mod store_linkage;

pub use cache::{
    Cache, CacheBuilder, DEFAULT_MODULES_IN_MEMORY, GlobalResolverFn, default_dir, engine_key,
};
pub use dir::{
    Access, ArtifactLookup, CommitReport, DirStore, GcOptions, GcReport, Problem, Trust,
};
pub use error::Error;
pub use linkcache_core as core;
pub use load::{from_val, to_val};
#[cfg(feature = "remote")]
pub use remote::{PullReport, PushReport, RemoteConfig, RemoteMode, RemoteStats, RemoteTrust};
pub use simple::{DynamicTarget, Host, Target};
pub use stats::Stats;
pub use store_linkage::{LinkageView, StoreLinkage};
