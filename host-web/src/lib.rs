//! linkcache in the browser: compiled WebAssembly cached in IndexedDB, shared by every
//! tab and worker of an origin, behind a JavaScript API (`LinkCache`).
//!
//! Built with wasm-bindgen into the npm package `linkcache-web` (`cargo xtask
//! web-pkg`). The decisions (analysis, partial-load planning, duplicate resolution) are
//! `linkcache_core`'s; this crate answers the planner from IndexedDB ([`store`]),
//! compiles and instantiates with the browser's `WebAssembly` API ([`cache`]), and maps
//! failures to JS errors a program can test ([`errors`]).
//!
//! On targets other than wasm32 the crate is empty.

#![cfg_attr(target_arch = "wasm32", warn(missing_docs))]

#[cfg(target_arch = "wasm32")]
pub mod cache;
#[cfg(target_arch = "wasm32")]
pub mod errors;
#[cfg(target_arch = "wasm32")]
pub mod store;

#[cfg(target_arch = "wasm32")]
pub use cache::{LinkCache, Stats};
