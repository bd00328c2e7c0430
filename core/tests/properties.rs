//! Property tests of the planner on random module graphs with random duplicates.
//!
//! Each case is a cache of modules over a small set of func_names; a module defines a
//! few of them, each calling a few others (possibly undefined ones, possibly forming
//! cycles). Checked for a random target, and then a second target in the same process:
//! - the planner hits exactly when an oracle (the greatest fixpoint of "has a candidate
//!   whose calls all resolve") says the target is resolvable;
//! - every import of every planned module is bound, and the order respects imports;
//! - no module outside the closure is planned, and the closure is complete;
//! - a second plan reuses the first plan's bindings;
//! - the plan is the same whatever order the store lists candidates in.

// proptest and wasm-smith are native-only dev-dependencies (they need an OS).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::{Func, check_bindings, module};
use linkcache_core::record::{self, RecordKind};
use linkcache_core::{
    Candidate, KeptPlan, Linkage, LoadPlan, Manifest, MemoryStore, Miss, ModuleId, Store,
    literal_global, plan,
};
use proptest::prelude::*;

const NAMES: usize = 8;

fn name(i: usize) -> String {
    format!("p.f{i}")
}

/// A module: for each function it defines, the indices of the names it calls.
type ModuleSpec = BTreeMap<usize, BTreeSet<usize>>;

fn module_spec() -> impl Strategy<Value = ModuleSpec> {
    prop::collection::btree_map(0..NAMES, prop::collection::btree_set(0..NAMES, 0..3), 1..3)
}

fn build(spec: &ModuleSpec, salt: usize) -> Vec<u8> {
    let names: Vec<(String, Vec<String>)> = spec
        .iter()
        .map(|(f, calls)| (name(*f), calls.iter().map(|c| name(*c)).collect()))
        .collect();
    let calls: Vec<Vec<&str>> = names
        .iter()
        .map(|(_, c)| c.iter().map(String::as_str).collect())
        .collect();
    let mut funcs: Vec<Func<'_>> = names
        .iter()
        .zip(&calls)
        .map(|((n, _), c)| Func {
            name: n,
            calls: c,
            globals: &[],
        })
        .collect();
    // A unique extra export keeps modules with equal specs distinct (real duplicates).
    let salt_name = format!("salt.{salt}");
    funcs.push(Func {
        name: &salt_name,
        calls: &[],
        globals: &[],
    });
    module(&funcs)
}

/// The greatest fixpoint: a name resolves when some module defines it with every call
/// resolving.
fn resolvable(specs: &[ModuleSpec]) -> BTreeSet<usize> {
    let mut set: BTreeSet<usize> = specs.iter().flat_map(|s| s.keys().copied()).collect();
    loop {
        let next: BTreeSet<usize> = set
            .iter()
            .copied()
            .filter(|f| {
                specs.iter().any(|s| {
                    s.get(f)
                        .is_some_and(|calls| calls.iter().all(|c| set.contains(c)))
                })
            })
            .collect();
        if next == set {
            return set;
        }
        set = next;
    }
}

/// The memory store with its candidate lists permuted.
struct Shuffled<'a> {
    inner: &'a mut MemoryStore,
    seed: u64,
}

impl Store for Shuffled<'_> {
    type Error = std::convert::Infallible;
    fn candidates(&mut self, func: &str) -> Result<Vec<Candidate>, Self::Error> {
        let mut list = self.inner.candidates(func)?;
        let len = list.len();
        for i in (1..len).rev() {
            let j = (self
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(i as u32) as usize)
                % (i + 1);
            list.swap(i, j);
        }
        Ok(list)
    }
    fn manifest(
        &mut self,
        module: &ModuleId,
    ) -> Result<Result<Arc<Manifest>, String>, Self::Error> {
        self.inner.manifest(module)
    }
}

/// What a plan decided: the modules it loads, in order, and its bindings.
type PlanSummary = (Vec<ModuleId>, Vec<(linkcache_core::Name, ModuleId)>);

fn summary(outcome: &Result<LoadPlan, Miss>) -> Result<PlanSummary, Miss> {
    outcome
        .as_ref()
        .map(|p| {
            (
                p.modules.iter().map(|m| m.module).collect(),
                p.bindings.clone(),
            )
        })
        .map_err(Clone::clone)
}

fn check_plan(store: &mut MemoryStore, linkage: &Linkage, plan: &LoadPlan) {
    for position in 0..plan.modules.len() {
        check_bindings(plan, position, linkage);
    }
    // Planned modules are exactly the not-yet-loaded modules of the new bindings.
    let planned: BTreeSet<ModuleId> = plan.modules.iter().map(|m| m.module).collect();
    let bound: BTreeSet<ModuleId> = plan
        .bindings
        .iter()
        .map(|(_, m)| *m)
        .filter(|m| !linkage.is_loaded(m))
        .collect();
    assert_eq!(
        planned, bound,
        "a planned module outside the closure, or a bound one missing"
    );
    // The closure is complete: every call of every bound function is bound.
    let bound_names: BTreeMap<&str, ModuleId> = plan
        .bindings
        .iter()
        .map(|(f, m)| (f.as_str(), *m))
        .collect();
    for (func, module) in &plan.bindings {
        let manifest = store.manifest(module).unwrap().unwrap();
        let entry = manifest
            .function(func)
            .expect("bound to a module defining it");
        for call in &entry.calls {
            assert!(
                bound_names.contains_key(call.as_str()) || linkage.binding(call).is_some(),
                "{func} calls {call}, which is left unbound"
            );
        }
    }
    // The target is reachable and bound.
    assert!(
        bound_names.get(plan.target.as_str()) == Some(&plan.module)
            || linkage.binding(&plan.target) == Some(plan.module)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn plans_are_complete_ordered_minimal_stable_and_order_independent(
        specs in prop::collection::vec(module_spec(), 1..10),
        first in 0..NAMES,
        second in 0..NAMES,
        seed in any::<u64>(),
    ) {
        let mut store = MemoryStore::new();
        for (salt, spec) in specs.iter().enumerate() {
            store.add(&build(spec, salt)).unwrap();
        }
        let oracle = resolvable(&specs);

        let mut linkage = Linkage::new();
        let outcome = plan(&mut store, &mut linkage, &name(first), None, &mut literal_global).unwrap();
        let mut shuffled_linkage = Linkage::new();
        let shuffled = plan(
            &mut Shuffled { inner: &mut store, seed },
            &mut shuffled_linkage,
            &name(first),
            None,
            &mut literal_global,
        )
        .unwrap();
        prop_assert_eq!(summary(&outcome), summary(&shuffled));
        prop_assert_eq!(outcome.is_ok(), oracle.contains(&first), "{:?}", outcome.as_ref().err());

        match outcome {
            Err(Miss::Unknown { function }) => {
                prop_assert!(store.candidates(&function).unwrap().is_empty());
            }
            Err(Miss::MissingDependency { dependency, .. }) => {
                prop_assert!(store.candidates(&dependency).unwrap().is_empty());
            }
            Err(other) => prop_assert!(false, "unexpected miss {other}"),
            Ok(first_plan) => {
                check_plan(&mut store, &linkage, &first_plan);
                // Kept for the next process (a record round trip), it is the same plan.
                let kept = KeptPlan::keep(&first_plan).expect("a fresh linkage's plan is kept");
                let bytes = record::encode(RecordKind::FreshPlan, &kept);
                let kept: KeptPlan = record::decode(RecordKind::FreshPlan, &bytes).unwrap();
                prop_assert_eq!(format!("{:?}", kept.into_plan().unwrap()), format!("{:?}", first_plan));
                linkage.commit(&first_plan).unwrap();
                let again = plan(&mut store, &mut linkage, &name(second), None, &mut literal_global).unwrap();
                prop_assert_eq!(again.is_ok(), oracle.contains(&second));
                if let Ok(second_plan) = again {
                    check_plan(&mut store, &linkage, &second_plan);
                    for (func, _) in &second_plan.bindings {
                        prop_assert!(
                            !first_plan.bindings.iter().any(|(f, _)| f == func),
                            "{} was bound by the first plan and bound again", func
                        );
                    }
                }
            }
        }
    }
}

/// A module for the brute-force comparison: for each function it defines, the names it
/// calls and whether it uses the global `p.s` compiled against a stale definition.
type StaleSpec = BTreeMap<usize, (BTreeSet<usize>, bool)>;

fn stale_spec() -> impl Strategy<Value = StaleSpec> {
    prop::collection::btree_map(
        0..6usize,
        (
            prop::collection::btree_set(0..6usize, 0..3),
            prop::bool::weighted(0.2),
        ),
        1..3,
    )
}

/// Brute force: the target is loadable when some assignment of func_names to modules
/// (each defining it, without a stale global) binds the target and every call of every
/// bound function. Tries every assignment: (candidates + 1) ^ names.
fn brute_force(specs: &[StaleSpec], target: usize) -> bool {
    let options: Vec<Vec<Option<usize>>> = (0..6)
        .map(|name| {
            let mut choices = vec![None];
            choices.extend(
                specs
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.get(&name).is_some_and(|(_, stale)| !stale))
                    .map(|(m, _)| Some(m)),
            );
            choices
        })
        .collect();
    let mut choice = [0usize; 6];
    loop {
        let assigned = |name: usize| options[name][choice[name]];
        let consistent = assigned(target).is_some()
            && (0..6).all(|name| match assigned(name) {
                None => true,
                Some(m) => specs[m][&name].0.iter().all(|c| assigned(*c).is_some()),
            });
        if consistent {
            return true;
        }
        // Next assignment, like an odometer.
        let mut digit = 0;
        loop {
            if digit == 6 {
                return false;
            }
            choice[digit] += 1;
            if choice[digit] < options[digit].len() {
                break;
            }
            choice[digit] = 0;
            digit += 1;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn the_planner_agrees_with_a_brute_force_search_over_every_assignment(
        specs in prop::collection::vec(stale_spec(), 1..7),
        target in 0..6usize,
    ) {
        let mut h = common::Harness::new();
        h.env.insert("p.s".into(), "1".into());
        for (salt, spec) in specs.iter().enumerate() {
            let names: Vec<(String, Vec<String>, bool)> = spec
                .iter()
                .map(|(f, (calls, stale))| (name(*f), calls.iter().map(|c| name(*c)).collect(), *stale))
                .collect();
            let calls: Vec<Vec<&str>> = names.iter().map(|(_, c, _)| c.iter().map(String::as_str).collect()).collect();
            let salt_name = format!("salt.{salt}");
            let mut funcs: Vec<Func<'_>> = names
                .iter()
                .zip(&calls)
                .map(|((n, _, stale), c)| Func { name: n, calls: c, globals: if *stale { &["p.s"] } else { &[] } })
                .collect();
            funcs.push(Func { name: &salt_name, calls: &[], globals: &[] });
            let definition = BTreeMap::from([("p.s", "2")]);
            h.add(&common::module_with_globals(&funcs, &definition));
        }
        let outcome = h.target(&name(target));
        prop_assert_eq!(outcome.is_ok(), brute_force(&specs, target), "{:?}", outcome.as_ref().err());
        if let Ok(plan) = &outcome {
            // Every bound function is usable: none uses the stale global.
            for (func, module) in &plan.bindings {
                let manifest = h.store.manifest(module).unwrap().unwrap();
                prop_assert!(manifest.function(func).unwrap().globals.is_empty(), "{} bound with a stale global", func);
            }
        }
    }
}
