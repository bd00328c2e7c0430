//! Where the package's async code is cut into functions that V8 compiles one by one.
//!
//! An `async fn` that awaits others is compiled into one function that polls them all:
//! LTO inlines their states' code into it. `target`'s was one function of 97 KB of wasm,
//! a fifth of the package, and its `plan` step another of 47 KB. V8 compiles a package
//! function on its first call, on the tab's main thread, in time that grows faster than
//! its size: 10.5 ms of a fresh tab's first target went to compiling that one function
//! (`--trace-wasm-compilation-times`, session 24; BENCHMARKS.md has the numbers). Behind
//! [`apart`] a step is a function of its own, compiled when it first runs, so a target
//! that replays a kept plan never compiles the planner's steps.

use std::future::Future;
use std::pin::Pin;

/// `future` as a state machine of its own, polled through a pointer (which LTO cannot
/// inline into the caller's).
pub(crate) fn apart<'a, T>(
    future: impl Future<Output = T> + 'a,
) -> Pin<Box<dyn Future<Output = T> + 'a>> {
    Box::pin(future)
}
