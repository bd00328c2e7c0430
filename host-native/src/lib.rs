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
//! See [`cache`] for the threading model and [`dir`] for the directory layout and the
//! guarantees it gives under crashes and concurrent writers.

#![warn(missing_docs)]

pub mod cache;
pub mod dir;
mod error;
mod load;
mod stats;

pub use cache::{Cache, CacheBuilder, DynamicTarget, Target, default_dir};
pub use dir::{ArtifactLookup, DirStore, GcReport, Problem, Trust};
pub use error::Error;
pub use linkcache_core as core;
pub use load::{Host, from_val, to_val};
pub use stats::Stats;
