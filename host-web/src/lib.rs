//! linkcache in the browser: compiled WebAssembly cached in IndexedDB, shared by every
//! tab and worker of an origin, behind a JavaScript API (`LinkCache`).
//!
//! Built with wasm-bindgen into the npm package `linkcache-web` (`cargo xtask
//! web-pkg`; its README, `host-web/npm/README.md`, documents the JS API). The decisions
//! (analysis, partial-load planning, duplicate resolution) are `linkcache_core`'s; this
//! crate answers the planner from IndexedDB ([`store`], on the `idb` crate), compiles
//! and instantiates with the browser's `WebAssembly` API ([`cache`]), and maps failures
//! to JS error classes a program can test with `instanceof` ([`errors`]).
//!
//! On targets other than wasm32 the crate is empty.
//!
//! # Tests
//! ```text
//! wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver host-web   # tests/*.rs
//! CHROMEDRIVER=/usr/bin/chromedriver \
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//!   cargo test -p linkcache-web --target wasm32-unknown-unknown   # the same, without wasm-pack
//! cargo xtask web-pkg --release && (cd host-web/e2e && npm install && npm test)  # two tabs, a worker, quota
//! ```

#![cfg_attr(target_arch = "wasm32", warn(missing_docs))]

#[cfg(target_arch = "wasm32")]
mod analyzer;
#[cfg(target_arch = "wasm32")]
mod apart;
#[cfg(target_arch = "wasm32")]
pub mod cache;
#[cfg(target_arch = "wasm32")]
mod changes;
#[cfg(target_arch = "wasm32")]
mod compile;
#[cfg(target_arch = "wasm32")]
pub mod errors;
#[cfg(target_arch = "wasm32")]
mod gc;
#[cfg(target_arch = "wasm32")]
mod imports;
#[cfg(target_arch = "wasm32")]
mod info;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
mod kept;
#[cfg(target_arch = "wasm32")]
mod load;
#[cfg(target_arch = "wasm32")]
mod plan;
#[cfg(target_arch = "wasm32")]
mod quota;
#[cfg(target_arch = "wasm32")]
pub mod snapshot;
#[cfg(target_arch = "wasm32")]
pub mod stats;
#[cfg(target_arch = "wasm32")]
pub mod store;
#[cfg(target_arch = "wasm32")]
mod target;
#[cfg(target_arch = "wasm32")]
mod typescript;

#[cfg(target_arch = "wasm32")]
pub use cache::LinkCache;
#[cfg(target_arch = "wasm32")]
pub use stats::Stats;
