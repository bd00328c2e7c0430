//! The cache directory as a careful user meets it: damaged files repaired by a re-add,
//! gc removing what crashed writers and older engines leave, commit order that does not
//! move, batch commits with a constant number of syncs, trust checked on the directories
//! and the file that runs, and read-only directories that serve calls.

#[path = "../support/mod.rs"]
mod support;

mod commits;
mod gc;
mod index;
mod repair;
mod trust;

use linkcache_native::{Cache, Error};
use support::wasm;

/// `dup.v() = value`, bytes distinguished by `value`.
fn duplicate(value: i64) -> Vec<u8> {
    wasm(&format!(
        r#"(module (func (export "dup.v") (result i64) (i64.const {value})))"#
    ))
}

fn sq(cache: &Cache, x: i64) -> Result<i64, Error> {
    cache.target::<(i64,), i64>("util.sq")?.call(cache, (x,))
}

fn dup_value(cache: &Cache) -> i64 {
    cache
        .target::<(), i64>("dup.v")
        .unwrap()
        .call(cache, ())
        .unwrap()
}
