//! The native host against real files and real wasmtime: loading, reuse of precompiled
//! code across caches (processes), partial load, globals, cycles, lazy edges, and every
//! kind of bad input the cache must survive.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod bad_input;
mod imports;
mod loading;

use linkcache_native::Cache;
use support::wasm;

fn math() -> Vec<u8> {
    wasm(
        r#"(module
        (import "linkcache:fn" "util.sq" (func $sq (param i64) (result i64)))
        (func (export "math.quad") (param i64) (result i64) (call $sq (call $sq (local.get 0)))))"#,
    )
}

/// Targets `func` as `(i64) -> i64` and calls it with `x`.
fn call_i64(cache: &Cache, func: &str, x: i64) -> i64 {
    cache
        .target::<(i64,), i64>(func)
        .unwrap()
        .call(cache, (x,))
        .unwrap()
}
