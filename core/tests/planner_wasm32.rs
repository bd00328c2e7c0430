//! The planner on wasm32, where the stack is small (1 MiB by default, and fixed): a
//! 100,000-long chain must plan, and miss, without overflowing it, so the search may
//! not recurse once per chain step. Run in Node by `wasm-bindgen-test-runner`
//! (`cargo xtask test` does); natively, `planner_scale.rs` runs the same chains on a
//! 256 KiB thread.

#![cfg(target_arch = "wasm32")]

#[path = "common/chains.rs"]
mod chains;

use chains::{MISSING_LEAF, duplicated_chain, level};
use linkcache_core::Miss;
use wasm_bindgen_test::wasm_bindgen_test;

const LEVELS: usize = 100_000;

#[wasm_bindgen_test]
fn a_chain_of_100_000_modules_plans_on_wasm32() {
    let (outcome, rounds, steps) = duplicated_chain(LEVELS, 1, None).plan(&level(0));
    assert_eq!(outcome, Ok(LEVELS));
    assert_eq!(rounds, 2, "one round to ask, one to decide");
    assert!(steps < 20 * LEVELS as u64, "{steps} steps");
}

#[wasm_bindgen_test]
fn a_chain_of_100_000_modules_with_a_missing_leaf_misses_on_wasm32() {
    let (outcome, _, _) = duplicated_chain(LEVELS, 1, Some(MISSING_LEAF)).plan(&level(0));
    assert_eq!(
        outcome,
        Err(Miss::MissingDependency {
            function: level(LEVELS - 1),
            dependency: MISSING_LEAF.into()
        })
    );
}
