//! The I/O-free core of linkcache, a persistent, shareable cache of compiled
//! WebAssembly for programs that generate wasm at run time.
//!
//! A compiler adds modules; a caller asks for a function by name and gets something it
//! can call. This crate decides everything in between and does no I/O: it owns no file,
//! database, clock, thread or wasm engine, and builds for native targets and
//! `wasm32-unknown-unknown` alike. The hosts `linkcache-native` (wasmtime, a cache
//! directory) and `linkcache-web` (the browser, IndexedDB) do the I/O and instantiate.
//!
//! - [`analyze`] derives a [`Manifest`] from wasm bytes: the functions a module
//!   exports, and for each the `linkcache:fn` / `linkcache:global` imports it reaches.
//! - [`record`] is the versioned, checksummed encoding of manifests, index entries and
//!   bundles, the same on both hosts.
//! - [`Planner`] turns a func_name into a [`LoadPlan`] (only the modules that function
//!   needs, in instantiation order, every import bound) or a [`Miss`] naming the cause.
//!   It is a state machine that asks its host for candidates, manifests and global
//!   validations, so a synchronous and an asynchronous store drive the same code.
//! - [`Linkage`] is one process's state: bindings, loaded modules, global decisions.
//! - [`MemoryStore`] keeps modules in memory; [`plan`] and [`load_target`] drive the
//!   planner from any synchronous [`Store`].
//!
//! # Example
//!
//! Two modules, where `math.quad` calls `util.sq` in another module, and an unrelated
//! module that targeting `math.quad` never touches:
//!
//! ```
//! use linkcache_core::{literal_global, plan, ImportBinding, Linkage, MemoryStore, Miss};
//!
//! let util = wat::parse_str(r#"(module
//!     (func (export "util.sq") (param i64) (result i64)
//!         (i64.mul (local.get 0) (local.get 0))))"#)?;
//! let math = wat::parse_str(r#"(module
//!     (import "linkcache:fn" "util.sq" (func $sq (param i64) (result i64)))
//!     (func (export "math.quad") (param i64) (result i64)
//!         (call $sq (call $sq (local.get 0)))))"#)?;
//! let other = wat::parse_str(r#"(module (func (export "other.f")))"#)?;
//!
//! let mut store = MemoryStore::new();
//! let util_id = store.add(&util)?;
//! let math_id = store.add(&math)?;
//! store.add(&other)?;
//!
//! let mut linkage = Linkage::new();
//! let load = plan(&mut store, &mut linkage, "math.quad", None, &mut literal_global)
//!     .unwrap() // the memory store cannot fail
//!     .expect("both functions are cached");
//!
//! // Only the closure is loaded, dependencies first, and math's import is bound to util.
//! let order: Vec<_> = load.modules.iter().map(|m| m.module).collect();
//! assert_eq!(order, [util_id, math_id]);
//! assert_eq!(
//!     load.modules[1].imports[0],
//!     ImportBinding::Export { module: util_id, func: "util.sq".into() }
//! );
//! // The host instantiates, then commits; the process now has its bindings.
//! linkage.commit(&load)?;
//! assert_eq!(linkage.binding("util.sq"), Some(util_id));
//!
//! // A function nobody compiled is a miss that says so.
//! let miss = plan(&mut store, &mut linkage, "math.cube", None, &mut literal_global)
//!     .unwrap()
//!     .unwrap_err();
//! assert_eq!(miss, Miss::Unknown { function: "math.cube".into() });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod analyze;
mod id;
mod linkage;
mod manifest;
mod name;
mod plan;
mod reach;
pub mod record;
mod store;
mod types;

pub use analyze::{
    AnalysisError, AnalyzeOptions, Declared, MAX_CACHE_IMPORTS, MAX_MANIFEST_DEPENDENCIES,
    MAX_MODULE_BYTES, analyze, analyze_with, append_globals_section, encode_globals_section,
    parse_globals_section,
};
pub use id::{ModuleId, ParseModuleIdError};
pub use linkage::{Linkage, OutdatedPlan};
pub use manifest::{
    ANALYZER_VERSION, FN_NAMESPACE, Function, GLOBAL_NAMESPACE, GLOBALS_SECTION, GlobalDef, Import,
    ImportKind, Manifest,
};
pub use name::Name;
pub use plan::{
    Candidate, GlobalBinding, GlobalCheck, GlobalKey, ImportBinding, KeptGlobal, KeptPlan,
    LoadPlan, Miss, Need, PlannedModule, Planner, Progress,
};
pub use record::{Bundle, BundleError, BundledModule, IndexEntry, RecordError};
pub use store::{
    GlobalResolver, LoadFailure, MemoryStore, Store, literal_global, load_target, plan,
};
pub use types::{FuncSig, GlobalOutcome, ValType, Value};
