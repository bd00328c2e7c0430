//! The planner's work on large and adversarial closures, counted in steps
//! ([`Planner::next_counting_steps`]), never timed.
//!
//! Modules here are manifests without bytes (the planner reads only manifests), so a
//! 100,000-module chain costs no wasm parsing.

// proptest and wasm-smith are native-only dev-dependencies (they need an OS).
#![cfg(not(target_arch = "wasm32"))]

#[path = "common/chains.rs"]
mod chains;

use std::collections::BTreeSet;

use chains::{MISSING_LEAF, Manifests, duplicated_chain, level, manifest};
use linkcache_core::record::{self, RecordKind};
use linkcache_core::{KeptPlan, Miss};

#[test]
fn a_24_level_chain_of_duplicates_with_a_missing_leaf_misses_in_linear_steps() {
    let store = duplicated_chain(24, 2, Some(MISSING_LEAF));
    let (outcome, rounds, steps) = store.plan(&level(0));
    assert_eq!(
        outcome,
        Err(Miss::MissingDependency {
            function: level(23),
            dependency: MISSING_LEAF.into()
        })
    );
    assert_eq!(rounds, 2, "one round to ask, one to decide");
    // 48 candidates, 48 calls: a backtracking search takes 2^24 tries here.
    assert!(steps < 2_000, "{steps} steps");
}

#[test]
fn planner_steps_grow_linearly_with_a_duplicated_chain_with_a_missing_leaf() {
    let steps = |levels| {
        duplicated_chain(levels, 3, Some(MISSING_LEAF))
            .plan(&level(0))
            .2
    };
    let (small, large) = (steps(50), steps(800));
    // 16 times the candidates: at most 16 times the steps (plus a little slack).
    assert!(
        large <= small * 18,
        "{small} steps for 50 levels, {large} for 800"
    );
}

#[test]
fn a_chain_of_100_000_modules_plans_without_overflowing_the_stack() {
    let levels = 100_000;
    let store = duplicated_chain(levels, 1, None);
    // A small stack, as on wasm32 or a thread of a host: the planner must not recurse
    // per chain step.
    let (outcome, rounds, steps) = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || store.plan(&level(0)))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(outcome, Ok(levels));
    assert_eq!(rounds, 2);
    assert!(steps < 20 * levels as u64, "{steps} steps");
}

#[test]
fn the_plan_of_a_100_000_module_chain_is_kept_and_read_back_whole() {
    // Keeping a plan and reading it back are linear (a quadratic lookup of positions
    // would take some 10^10 steps here and never finish).
    let levels = 100_000;
    let (outcome, _, _) = duplicated_chain(levels, 1, None).load_plan(&level(0));
    let plan = outcome.unwrap();
    let kept = KeptPlan::keep(&plan).expect("a plan for a fresh linkage is kept");
    let bytes = record::encode(RecordKind::FreshPlan, &kept);
    let kept: KeptPlan = record::decode(RecordKind::FreshPlan, &bytes).unwrap();
    let back = kept.into_plan().unwrap();
    assert_eq!(back.modules.len(), levels);
    assert_eq!(back.bindings, plan.bindings);
    let ids = |p: &linkcache_core::LoadPlan| p.modules.iter().map(|m| m.module).collect::<Vec<_>>();
    assert_eq!(ids(&back), ids(&plan));
}

#[test]
fn a_chain_of_100_000_modules_with_a_missing_leaf_misses_without_overflowing_the_stack() {
    let levels = 100_000;
    let store = duplicated_chain(levels, 1, Some(MISSING_LEAF));
    let (outcome, _, _) = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || store.plan(&level(0)))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(
        outcome,
        Err(Miss::MissingDependency {
            function: level(levels - 1),
            dependency: MISSING_LEAF.into()
        })
    );
}

mod random_graphs {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

        /// Random graphs of up to 400 func_names with duplicates, cycles and calls to
        /// names nobody defines: the steps stay within a constant times the size of the
        /// candidate closure (candidates + calls), whatever the answer.
        #[test]
        fn planner_steps_stay_linear_in_the_closure_on_random_graphs(
            names in 50usize..400,
            seed in any::<u64>(),
        ) {
            let mut state = seed | 1;
            let mut random = move |bound: usize| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % bound as u64) as usize
            };
            let mut store = Manifests::default();
            let mut size = 0;
            for name in 0..names {
                for salt in 0..1 + random(3) {
                    // Callees among the names and a few (name + names) nobody defines.
                    let calls: BTreeSet<String> = (0..random(4))
                        .map(|_| format!("r.{}", random(names + names / 20 + 1)))
                        .collect();
                    let calls: Vec<String> = calls.into_iter().collect();
                    size += 1 + calls.len();
                    store.add(manifest(&format!("r.{name}"), &calls, salt as u32));
                }
            }
            for missing in names..names + names / 20 + 1 {
                store.index.insert(format!("r.{missing}"), vec![]);
            }
            let (_, rounds, steps) = store.plan("r.0");
            prop_assert!(rounds <= 2);
            prop_assert!(steps <= 40 * size as u64, "{} steps for a closure of size {}", steps, size);
        }
    }
}
