//! The planner in the cache states that racing writers produce: duplicates, missing
//! dependencies, stale globals, corrupt entries, cycles, deep closures.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Func, Harness, f, module, module_with_globals};
use linkcache_core::{
    Candidate, GlobalBinding, ImportBinding, Linkage, MemoryStore, Miss, ModuleId, Need, Planner,
    Progress, Store, literal_global, plan,
};

#[test]
fn earliest_committed_of_several_duplicates_wins() {
    let mut h = Harness::new();
    let first = h.add(&module(&[f("a.f", &[])]));
    // Same function, different bytes (an extra function), committed later.
    let second = h.add(&module(&[f("a.f", &[]), f("a.g", &[])]));
    let third = h.add(&module(&[f("a.f", &[]), f("a.h", &[])]));
    assert_ne!(first, second);
    let plan = h.target("a.f").unwrap();
    assert_eq!(plan.module, first);
    assert_eq!(h.last_load(), [first]);
    // In a fresh process, the same choice.
    h.restart();
    assert_eq!(h.target("a.f").unwrap().module, first);
    let _ = third;
}

#[test]
fn duplicates_with_different_dependencies_load_only_the_chosen_ones() {
    let mut h = Harness::new();
    let x = h.add(&module(&[f("dep.x", &[])]));
    let y = h.add(&module(&[f("dep.y", &[])]));
    let via_x = h.add(&module(&[f("top.f", &["dep.x"])]));
    let via_y = h.add(&module(&[f("top.f", &["dep.y"])]));
    let plan = h.target("top.f").unwrap();
    assert_eq!(plan.module, via_x);
    assert_eq!(h.last_load(), [x, via_x]);
    assert!(!h.last_load().contains(&y) && !h.last_load().contains(&via_y));
}

#[test]
fn duplicate_with_missing_dependency_falls_back_to_the_other() {
    let mut h = Harness::new();
    // Committed first, but its dependency was never added.
    let broken = h.add(&module(&[f("top.f", &["dep.gone"])]));
    let dep = h.add(&module(&[f("dep.here", &[])]));
    let good = h.add(&module(&[f("top.f", &["dep.here"])]));
    let plan = h.target("top.f").unwrap();
    assert_eq!(plan.module, good);
    assert_eq!(h.last_load(), [dep, good]);
    assert!(!h.last_load().contains(&broken));
}

#[test]
fn every_duplicate_missing_its_dependency_is_a_miss_naming_it() {
    let mut h = Harness::new();
    h.add(&module(&[f("top.f", &["dep.gone"])]));
    h.add(&module(&[f("top.f", &["dep.gone"]), f("top.g", &[])]));
    assert_eq!(
        h.target("top.f").unwrap_err(),
        Miss::MissingDependency {
            function: "top.f".into(),
            dependency: "dep.gone".into()
        }
    );
    // The compiler adds the dependency; the next attempt hits.
    h.add(&module(&[f("dep.gone", &[])]));
    assert!(h.target("top.f").is_ok());
}

#[test]
fn unknown_function_is_a_miss() {
    let mut h = Harness::new();
    h.add(&module(&[f("a.f", &[])]));
    assert_eq!(
        h.target("a.nope").unwrap_err(),
        Miss::Unknown {
            function: "a.nope".into()
        }
    );
}

#[test]
fn stale_global_of_one_function_leaves_the_other_function_of_its_module_loadable() {
    let mut h = Harness::new();
    let defs = BTreeMap::from([("cfg.scale", "3")]);
    let m = h.add(&module_with_globals(
        &[
            Func {
                name: "m.uses",
                calls: &[],
                globals: &["cfg.scale"],
            },
            f("m.plain", &[]),
        ],
        &defs,
    ));
    h.env.insert("cfg.scale".into(), "4".into());
    match h.target("m.uses").unwrap_err() {
        Miss::StaleGlobal {
            function, global, ..
        } => {
            assert_eq!(
                (function.as_str(), global.as_str()),
                ("m.uses", "cfg.scale")
            );
        }
        other => panic!("expected a stale global, got {other:?}"),
    }
    let plan = h.target("m.plain").unwrap();
    assert_eq!(h.last_load(), [m]);
    // The mutable global is linked to the process's shared global, but not set: the
    // function that would read it is not bound.
    assert_eq!(
        plan.modules[0].imports,
        [ImportBinding::Global {
            name: "cfg.scale".into(),
            binding: GlobalBinding::Shared(linkcache_core::ValType::I64)
        }]
    );
    assert!(plan.set_globals.is_empty());
    assert_eq!(h.linkage.binding("m.uses"), None);
    // And once more in the same process, still stale, never half-bound.
    assert!(matches!(h.target("m.uses"), Err(Miss::StaleGlobal { .. })));
}

#[test]
fn stale_global_prefers_a_duplicate_compiled_against_the_current_value() {
    let mut h = Harness::new();
    let uses = |scale| {
        module_with_globals(
            &[Func {
                name: "m.f",
                calls: &[],
                globals: &["cfg.scale"],
            }],
            &BTreeMap::from([("cfg.scale", scale)]),
        )
    };
    h.add(&uses("3"));
    let fresh = h.add(&uses("4"));
    h.env.insert("cfg.scale".into(), "4".into());
    let plan = h.target("m.f").unwrap();
    assert_eq!(plan.module, fresh);
    assert_eq!(
        plan.set_globals,
        [(
            "cfg.scale".into(),
            linkcache_core::ValType::I64,
            linkcache_core::Value::I64(4)
        )]
    );
}

#[test]
fn mutable_globals_are_validated_only_when_a_function_using_them_is_targeted() {
    let mut h = Harness::new();
    h.add(&module_with_globals(
        &[
            Func {
                name: "m.a",
                calls: &[],
                globals: &["g.a"],
            },
            Func {
                name: "m.b",
                calls: &[],
                globals: &["g.b"],
            },
        ],
        &BTreeMap::from([("g.a", "1"), ("g.b", "2")]),
    ));
    h.target("m.a").unwrap();
    assert_eq!(h.validated, ["g.a"]);
    h.target("m.b").unwrap();
    assert_eq!(h.validated, ["g.a", "g.b"]);
}

#[test]
fn an_immutable_global_no_chosen_function_uses_is_not_validated_and_becomes_a_placeholder() {
    let wasm = wat::parse_str(
        r#"(module
          (import "linkcache:global" "cfg.k" (global $k i32))
          (func (export "m.reads") (result i32) (global.get $k))
          (func (export "m.plain") (result i32) (i32.const 7))
          (@custom "linkcache.globals" "\01\05cfg.k\015"))"#,
    )
    .unwrap();
    let placeholder = [ImportBinding::Global {
        name: "cfg.k".into(),
        binding: GlobalBinding::Placeholder(linkcache_core::ValType::I32),
    }];
    // Stale, and used by no function of the closure: a hit, and never asked about.
    let mut h = Harness::new();
    h.add(&wasm);
    h.env.insert("cfg.k".into(), "6".into());
    let plan = h.target("m.plain").unwrap();
    assert_eq!(plan.modules[0].imports, placeholder);
    assert!(h.validated.is_empty(), "{:?}", h.validated);
    // The instance holds a placeholder, so the function reading it is a miss here.
    assert!(matches!(h.target("m.reads"), Err(Miss::StaleGlobal { .. })));

    // Current: still not validated for m.plain; m.reads, in the module instantiated
    // with the placeholder, is a miss in this process that names the reason...
    let mut h = Harness::new();
    h.add(&wasm);
    let plan = h.target("m.plain").unwrap();
    assert_eq!(plan.modules[0].imports, placeholder);
    assert!(h.validated.is_empty(), "{:?}", h.validated);
    match h.target("m.reads") {
        Err(Miss::StaleGlobal { reason, .. }) => {
            assert!(reason.contains("placeholder"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // ...and a new process that targets it validates the global and binds its value.
    h.restart();
    let plan = h.target("m.reads").unwrap();
    assert_eq!(
        plan.modules[0].imports,
        [ImportBinding::Global {
            name: "cfg.k".into(),
            binding: GlobalBinding::Value(linkcache_core::Value::I32(5))
        }]
    );
    assert_eq!(h.validated, ["cfg.k"]);
}

#[test]
fn modules_that_import_each_other_load_as_one_group_with_trampolines() {
    let mut h = Harness::new();
    let even = h.add(&module(&[f("p.even", &["p.odd"])]));
    let odd = h.add(&module(&[f("p.odd", &["p.even"])]));
    let plan = h.target("p.even").unwrap();
    let mut group = vec![even, odd];
    group.sort();
    assert_eq!(plan.cycles, [group]);
    assert_eq!(plan.modules.len(), 2);
    for planned in &plan.modules {
        assert!(
            matches!(planned.imports[0], ImportBinding::Trampoline { .. }),
            "{:?}",
            planned.imports
        );
    }
    assert_eq!(h.linkage.binding("p.odd"), Some(odd));
}

#[test]
fn a_module_calling_its_own_export_through_the_cache_is_a_cycle_of_one() {
    let mut h = Harness::new();
    let wasm = wat::parse_str(
        r#"(module
          (import "linkcache:fn" "r.f" (func $f (param i64) (result i64)))
          (func (export "r.f") (param i64) (result i64) (call $f (local.get 0))))"#,
    )
    .unwrap();
    let id = h.add(&wasm);
    let plan = h.target("r.f").unwrap();
    assert_eq!(plan.cycles, [vec![id]]);
    assert!(matches!(
        plan.modules[0].imports[0],
        ImportBinding::Trampoline { .. }
    ));
}

#[test]
fn diamond_loads_the_shared_dependency_once_and_first() {
    let mut h = Harness::new();
    let d = h.add(&module(&[f("d.f", &[])]));
    let b = h.add(&module(&[f("b.f", &["d.f"])]));
    let c = h.add(&module(&[f("c.f", &["d.f"])]));
    let a = h.add(&module(&[f("a.f", &["b.f", "c.f"])]));
    h.target("a.f").unwrap();
    let order = h.last_load();
    assert_eq!(order.len(), 4);
    assert_eq!(order[0], d);
    assert_eq!(order[3], a);
    assert!(order[1..3].contains(&b) && order[1..3].contains(&c));
}

#[test]
fn closure_spanning_twenty_modules_loads_all_twenty_in_dependency_order() {
    let mut h = Harness::new();
    let names: Vec<String> = (0..20).map(|i| format!("chain.f{i}")).collect();
    let mut ids = vec![];
    for i in 0..20 {
        let calls: Vec<&str> = if i + 1 < 20 {
            vec![names[i + 1].as_str()]
        } else {
            vec![]
        };
        ids.push(h.add(&module(&[Func {
            name: &names[i],
            calls: &calls,
            globals: &[],
        }])));
    }
    // Noise: modules outside the closure.
    for i in 0..30 {
        h.add(&module(&[f(&format!("noise.f{i}"), &[])]));
    }
    h.target("chain.f0").unwrap();
    let expected: Vec<ModuleId> = ids.iter().rev().copied().collect();
    assert_eq!(h.last_load(), expected);
}

#[test]
fn imports_outside_the_closure_are_lazy_and_bind_later() {
    let mut h = Harness::new();
    let dep_a = h.add(&module(&[f("dep.a", &[])]));
    let dep_b = h.add(&module(&[f("dep.b", &[])]));
    let two = h.add(&module(&[f("two.a", &["dep.a"]), f("two.b", &["dep.b"])]));
    let plan = h.target("two.a").unwrap();
    assert_eq!(h.last_load(), [dep_a, two]);
    let imports = &plan.modules.last().unwrap().imports;
    assert!(imports.contains(&ImportBinding::Export {
        module: dep_a,
        func: "dep.a".into()
    }));
    assert!(
        imports
            .iter()
            .any(|b| matches!(b, ImportBinding::Lazy { func, .. } if func == "dep.b"))
    );
    // Targeting the other function of the loaded module loads only its dependency.
    let plan = h.target("two.b").unwrap();
    assert_eq!(plan.module, two);
    assert_eq!(h.last_load(), [dep_b]);
}

#[test]
fn a_binding_made_in_this_process_survives_a_new_earlier_looking_duplicate() {
    let mut h = Harness::new();
    let first = h.add(&module(&[f("a.f", &[])]));
    h.target("a.f").unwrap();
    let second = h.add(&module(&[f("a.f", &[]), f("a.g", &["a.f"])]));
    // a.g lives in `second`; its call to a.f goes to the process's binding, `first`.
    let plan = h.target("a.g").unwrap();
    assert_eq!(plan.module, second);
    assert_eq!(
        plan.modules[0].imports,
        [ImportBinding::Export {
            module: first,
            func: "a.f".into()
        }]
    );
    assert_eq!(h.linkage.binding("a.f"), Some(first));
}

#[test]
fn a_candidate_in_a_loaded_module_beats_an_earlier_committed_one() {
    let mut h = Harness::new();
    let early = h.add(&module(&[f("x.f", &[])]));
    let late = h.add(&module(&[f("x.f", &[]), f("x.g", &[])]));
    h.target("x.g").unwrap();
    assert!(h.linkage.is_loaded(&late));
    assert_eq!(h.target("x.f").unwrap().module, late);
    assert!(!h.linkage.is_loaded(&early));
}

#[test]
fn corrupt_bytes_fall_back_to_a_duplicate_and_are_remembered() {
    let mut h = Harness::new();
    let bad = h.add(&module(&[f("a.f", &[])]));
    let good = h.add(&module(&[f("a.f", &[]), f("a.g", &[])]));
    h.store.tamper(&bad, &b"garbage"[..]);
    assert_eq!(h.target("a.f").unwrap().module, good);
    assert!(h.linkage.broken_reason(&bad).is_some());
}

#[test]
fn every_candidate_broken_is_a_miss_listing_them() {
    let mut h = Harness::new();
    let bad = h.add(&module(&[f("a.f", &[])]));
    h.store.tamper(&bad, &b"garbage"[..]);
    match h.target("a.f").unwrap_err() {
        Miss::Broken { function, modules } => {
            assert_eq!(function, "a.f");
            assert_eq!(modules.len(), 1);
            assert_eq!(modules[0].0, bad);
        }
        other => panic!("expected broken, got {other:?}"),
    }
}

/// A store whose index lies, for the manifest/index consistency checks.
struct Lying {
    inner: MemoryStore,
    extra: Vec<(String, Candidate)>,
    broken_manifest: Option<ModuleId>,
}

impl Store for Lying {
    type Error = std::convert::Infallible;
    fn candidates(&mut self, func: &str) -> Result<Vec<Candidate>, Self::Error> {
        let mut list = self.inner.candidates(func)?;
        list.extend(
            self.extra
                .iter()
                .filter(|(f, _)| f == func)
                .map(|(_, c)| *c),
        );
        Ok(list)
    }
    fn manifest(
        &mut self,
        module: &ModuleId,
    ) -> Result<Result<Arc<linkcache_core::Manifest>, String>, Self::Error> {
        if Some(*module) == self.broken_manifest {
            return Ok(Err("checksum mismatch".into()));
        }
        self.inner.manifest(module)
    }
}

#[test]
fn index_entry_whose_manifest_does_not_define_the_function_is_skipped() {
    let mut inner = MemoryStore::new();
    let other = inner.add(&module(&[f("o.f", &[])])).unwrap();
    let real = inner.add(&module(&[f("a.f", &[])])).unwrap();
    let mut store = Lying {
        inner,
        extra: vec![(
            "a.f".into(),
            Candidate {
                module: other,
                committed_at: 0,
            },
        )],
        broken_manifest: None,
    };
    let mut linkage = Linkage::new();
    let plan = plan(&mut store, &mut linkage, "a.f", None, &mut literal_global)
        .unwrap()
        .unwrap();
    assert_eq!(plan.module, real);
}

#[test]
fn corrupt_manifest_is_skipped_and_remembered_as_broken() {
    let mut inner = MemoryStore::new();
    let bad = inner.add(&module(&[f("a.f", &[])])).unwrap();
    let good = inner.add(&module(&[f("a.f", &[]), f("a.g", &[])])).unwrap();
    let mut store = Lying {
        inner,
        extra: vec![],
        broken_manifest: Some(bad),
    };
    let mut linkage = Linkage::new();
    let plan = plan(&mut store, &mut linkage, "a.f", None, &mut literal_global)
        .unwrap()
        .unwrap();
    assert_eq!(plan.module, good);
    assert_eq!(linkage.broken_reason(&bad), Some("checksum mismatch"));
}

#[test]
fn signature_mismatch_between_import_and_definition_is_a_miss() {
    let mut h = Harness::new();
    h.add(
        &wat::parse_str(r#"(module (func (export "s.f") (param i32) (result i32) (local.get 0)))"#)
            .unwrap(),
    );
    h.add(&module(&[f("s.caller", &["s.f"])]));
    assert!(matches!(
        h.target("s.caller").unwrap_err(),
        Miss::SignatureMismatch { function, .. } if function == "s.f"
    ));
}

#[test]
fn a_plan_made_before_another_commit_is_rejected() {
    let mut store = MemoryStore::new();
    store.add(&module(&[f("a.f", &[])])).unwrap();
    store.add(&module(&[f("b.f", &[])])).unwrap();
    let mut linkage = Linkage::new();
    let first = plan(&mut store, &mut linkage, "a.f", None, &mut literal_global)
        .unwrap()
        .unwrap();
    let second = plan(&mut store, &mut linkage, "b.f", None, &mut literal_global)
        .unwrap()
        .unwrap();
    linkage.commit(&second).unwrap();
    assert!(linkage.commit(&first).is_err());
}

#[test]
fn needs_are_asked_one_at_a_time_and_answers_in_any_order_give_the_same_plan() {
    let mut store = MemoryStore::new();
    store.add(&module(&[f("d.f", &[])])).unwrap();
    store.add(&module(&[f("a.f", &["d.f"])])).unwrap();
    let linkage = Linkage::new();

    // Answer everything up front, in reverse, before the planner asks.
    let mut eager = Planner::new("a.f");
    for id in store
        .modules()
        .copied()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        eager.answer_manifest(id, store.manifest(&id).unwrap());
    }
    for func in ["d.f", "a.f"] {
        eager.answer_candidates(func, store.candidates(func).unwrap());
    }
    let Progress::Ready(eager_plan) = eager.next(&linkage) else {
        panic!("everything was answered")
    };

    // Answer only what is asked.
    let mut lazy = Planner::new("a.f");
    let mut asked = vec![];
    let lazy_plan = loop {
        match lazy.next(&linkage) {
            Progress::Ready(plan) => break plan,
            Progress::Miss(miss) => panic!("{miss}"),
            Progress::Need(need) => {
                asked.push(need.clone());
                match need {
                    Need::Candidates(func) => {
                        let c = store.candidates(&func).unwrap();
                        lazy.answer_candidates(&func, c)
                    }
                    Need::Manifest(id) => lazy.answer_manifest(id, store.manifest(&id).unwrap()),
                    Need::Globals(_) => unreachable!("no globals here"),
                }
            }
        }
    };
    assert_eq!(asked.len(), 4, "{asked:?}");
    let ids = |p: &linkcache_core::LoadPlan| p.modules.iter().map(|m| m.module).collect::<Vec<_>>();
    assert_eq!(ids(&eager_plan), ids(&lazy_plan));
    assert_eq!(eager_plan.bindings, lazy_plan.bindings);
}

#[test]
fn a_resolver_returning_the_wrong_type_makes_the_global_stale() {
    let mut store = MemoryStore::new();
    store
        .add(&module_with_globals(
            &[Func {
                name: "m.f",
                calls: &[],
                globals: &["g"],
            }],
            &BTreeMap::from([("g", "1")]),
        ))
        .unwrap();
    let mut linkage = Linkage::new();
    let mut wrong = |_: &linkcache_core::GlobalCheck| Ok(linkcache_core::Value::I32(1));
    let miss = plan(&mut store, &mut linkage, "m.f", None, &mut wrong)
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(miss, Miss::StaleGlobal { ref reason, .. } if reason.contains("i32")),
        "{miss}"
    );
}
