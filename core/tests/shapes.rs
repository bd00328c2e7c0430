//! Regression tests for module shapes that made the analysis exponential, quadratic or
//! overflow its stack (issue 15): each must analyze, with the right dependencies.

#[path = "common/shapes.rs"]
mod shapes;

use linkcache_core::{Manifest, analyze};

fn deps(manifest: &Manifest, function: &str) -> (Vec<String>, Vec<String>) {
    let entry = manifest.function(function).expect("exported");
    let strings = |names: &[linkcache_core::Name]| names.iter().map(String::from).collect();
    (strings(&entry.calls), strings(&entry.globals))
}

#[test]
fn a_dag_of_61_global_initializers_each_adding_the_two_before_analyzes() {
    let wasm = shapes::global_dag(61);
    let manifest = analyze(&wasm).unwrap();
    assert_eq!(
        deps(&manifest, "reads.last"),
        (vec![], vec!["cfg.a".into(), "cfg.b".into()])
    );
    assert_eq!(deps(&manifest, "reads.none"), (vec![], vec![]));
    manifest.check_against(&wasm).unwrap();
}

#[test]
fn a_chain_of_100_000_global_initializers_does_not_overflow_the_stack() {
    let wasm = shapes::global_chain(100_000);
    let manifest = analyze(&wasm).unwrap();
    assert_eq!(
        deps(&manifest, "reads.last"),
        (vec![], vec!["cfg.b".into()])
    );
}

#[test]
fn all_indirect_modules_of_3_000_and_10_000_functions_reach_the_one_import() {
    for functions in [3_000, 10_000] {
        let wasm = shapes::all_indirect(functions);
        let manifest = analyze(&wasm).unwrap();
        assert_eq!(manifest.functions.len(), functions as usize);
        for function in &manifest.functions {
            assert_eq!(function.calls, ["dep.f"], "{}", function.name);
            assert!(function.globals.is_empty());
        }
        manifest.check_against(&wasm).unwrap();
        let decoded = Manifest::decode(&manifest.encode()).unwrap();
        assert_eq!(decoded, manifest);
    }
}

#[test]
fn a_direct_call_chain_of_100_000_functions_does_not_overflow_the_stack() {
    let wasm = shapes::call_chain(100_000);
    let manifest = analyze(&wasm).unwrap();
    assert_eq!(
        deps(&manifest, "chain.head"),
        (vec!["dep.f".into()], vec![])
    );
}
