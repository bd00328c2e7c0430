//! The kept form of a plan ([`KeptPlan`]): it comes back as the very plan it was made
//! from, through a record, for every kind of binding; and a damaged or forged one is an
//! error, never a plan that links something else.

mod common;

use common::{Func, Harness, f, module, module_with_globals};
use linkcache_core::record::{self, RecordKind};
use linkcache_core::{GlobalDef, GlobalOutcome, KeptGlobal, KeptPlan, LoadPlan, ValType, Value};
use std::collections::BTreeMap;

/// `plan`'s kept form after a round trip through a record.
fn through_record(plan: &LoadPlan) -> KeptPlan {
    let kept = KeptPlan::keep(plan).expect("a plan for a fresh linkage is kept");
    let bytes = record::encode(RecordKind::FreshPlan, &kept);
    record::decode(RecordKind::FreshPlan, &bytes).expect("a kept plan decodes")
}

fn same(a: &LoadPlan, b: &LoadPlan) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// A plan with every kind of binding: an export of an earlier module, trampolines (a
/// cycle), a lazy edge (a call outside the closure), an immutable global with its value,
/// a mutable shared global, and an embedder import.
fn rich_plan() -> LoadPlan {
    let mut h = Harness::new();
    h.add(&module(&[f("k.leaf", &[])]));
    h.add(&module(&[f("k.even", &["k.odd", "k.leaf"])]));
    h.add(&module(&[f("k.odd", &["k.even"])]));
    let definitions = BTreeMap::from([("k.g", "5")]);
    h.add(&module_with_globals(
        &[
            Func {
                name: "k.top",
                calls: &["k.even"],
                globals: &["k.g"],
            },
            f("k.other", &["k.elsewhere"]),
        ],
        &definitions,
    ));
    let immutable = wat::parse_str(
        r#"(module
          (import "env" "log" (func $log (param i32)))
          (import "linkcache:global" "k.c" (global $c i32))
          (import "linkcache:fn" "k.top" (func $top (param i64) (result i64)))
          (func (export "k.main") (param i64) (result i64)
            (call $log (global.get $c))
            (call $top (local.get 0)))
          (@custom "linkcache.globals" "\01\03k.c\017"))"#,
    )
    .unwrap();
    h.add(&immutable);
    h.target("k.main").unwrap()
}

#[test]
fn a_kept_plan_comes_back_as_the_plan_it_was_made_from() {
    let plan = rich_plan();
    let text = format!("{plan:?}");
    for kind in [
        "Export",
        "Trampoline",
        "Lazy",
        "Value(I32(7))",
        "Shared(I64)",
        "Embedder",
    ] {
        assert!(
            text.contains(kind),
            "the plan has no {kind} binding: {text}"
        );
    }
    let back = through_record(&plan).into_plan().unwrap();
    assert!(same(&plan, &back), "{plan:#?}\n{back:#?}");
}

#[test]
fn globals_of_planned_modules_are_kept_as_positions_and_others_whole() {
    let plan = rich_plan();
    let kept = KeptPlan::keep(&plan).unwrap();
    let carrier = plan
        .modules
        .iter()
        .find(|m| m.manifest.global("k.c").is_some())
        .unwrap();
    let def = carrier.manifest.global("k.c").unwrap().clone();
    let planned = kept
        .keep_globals([(carrier.module, def.clone(), ())])
        .remove(0)
        .0;
    assert!(matches!(planned, KeptGlobal::Planned { .. }), "{planned:?}");
    let check = kept.global_check(&planned).unwrap();
    assert_eq!((check.module, &check.global), (carrier.module, &def));

    // Another definition of the same name is not the planned module's: kept whole.
    let other = GlobalDef {
        definition: b"8".to_vec(),
        ..def.clone()
    };
    let whole = kept
        .keep_globals([(carrier.module, other.clone(), ())])
        .remove(0)
        .0;
    assert!(matches!(whole, KeptGlobal::Other(..)), "{whole:?}");
    assert_eq!(kept.global_check(&whole).unwrap().global, other);
    // A forged position is no check at all.
    let forged = KeptGlobal::Planned {
        module: 99,
        global: 0,
    };
    assert!(kept.global_check(&forged).is_none());
}

/// The kept plan's payload, changed by `edit` on its bincode bytes, decoded again.
fn forged(plan: &LoadPlan, edit: impl Fn(&mut Vec<u8>)) -> Option<Result<LoadPlan, String>> {
    let kept = KeptPlan::keep(plan).unwrap();
    let mut payload = record::encode_payload(&kept);
    edit(&mut payload);
    let kept: KeptPlan = record::decode_payload(RecordKind::FreshPlan, &payload).ok()?;
    Some(kept.into_plan())
}

#[test]
fn a_forged_kept_plan_is_an_error_or_the_same_plan_never_another() {
    let plan = rich_plan();
    let payload = record::encode_payload(&KeptPlan::keep(&plan).unwrap());
    let (mut decoded, mut errors) = (0, 0);
    // Every byte changed to a few values: whatever decodes either is the plan itself
    // (a byte that does not matter, such as the value of an unused placeholder) or is
    // rejected with a reason; nothing panics.
    for at in 0..payload.len() {
        for value in [0u8, 1, 2, 0x7f, 0xff] {
            if payload[at] == value {
                continue;
            }
            let Some(outcome) = forged(&plan, |p| p[at] = value) else {
                continue;
            };
            decoded += 1;
            match outcome {
                Err(_) => errors += 1,
                Ok(back) => {
                    // Names may change (they are data); the structure may not.
                    assert_eq!(back.modules.len(), plan.modules.len());
                    for (a, b) in back.modules.iter().zip(&plan.modules) {
                        assert_eq!(a.imports.len(), b.imports.len());
                        assert_eq!(a.manifest.imports.len(), a.imports.len());
                    }
                    assert!(
                        back.bindings
                            .iter()
                            .any(|(f, m)| *f == back.target && *m == back.module)
                    );
                }
            }
        }
    }
    assert!(decoded > 100, "only {decoded} forged payloads decoded");
    assert!(
        errors > 10,
        "only {errors} of {decoded} forged payloads were rejected"
    );
}

#[test]
fn positions_and_kinds_are_checked() {
    let plan = rich_plan();
    // A binding to a module the plan does not load cannot be kept.
    let mut foreign = plan.clone();
    foreign.bindings[0].1 = linkcache_core::ModuleId::of(b"elsewhere");
    assert!(KeptPlan::keep(&foreign).is_none());
    // A binding naming another function than its import cannot be kept either.
    let mut renamed = plan.clone();
    let module = renamed
        .modules
        .iter_mut()
        .find(|m| {
            m.imports
                .iter()
                .any(|i| matches!(i, linkcache_core::ImportBinding::Trampoline { .. }))
        })
        .unwrap();
    for import in &mut module.imports {
        if let linkcache_core::ImportBinding::Trampoline { func } = import {
            *func = format!("{func}.other").as_str().into();
        }
    }
    assert!(KeptPlan::keep(&renamed).is_none());
    // A plan that does not bind its target, or plans a module twice, does not come back.
    let mut unbound = plan.clone();
    unbound.bindings.retain(|(func, _)| *func != unbound.target);
    let error = KeptPlan::keep(&unbound).unwrap().into_plan().unwrap_err();
    assert!(error.contains("is not bound by its plan"), "{error}");
    let mut twice = plan.clone();
    twice.modules.push(twice.modules[0].clone());
    let error = KeptPlan::keep(&twice).unwrap().into_plan().unwrap_err();
    assert!(error.contains("planned twice"), "{error}");
    // A global bound with another type than its import's is rejected on the way back.
    let mut retyped = plan.clone();
    for module in &mut retyped.modules {
        for import in &mut module.imports {
            if let linkcache_core::ImportBinding::Global { binding, .. } = import {
                *binding = match binding {
                    linkcache_core::GlobalBinding::Shared(_) => {
                        linkcache_core::GlobalBinding::Shared(ValType::F32)
                    }
                    _ => linkcache_core::GlobalBinding::Placeholder(ValType::F64),
                };
            }
        }
    }
    let kept = KeptPlan::keep(&retyped).unwrap();
    let error = kept.into_plan().unwrap_err();
    assert!(error.contains("bound as another global"), "{error}");
}

/// A replayed plan is linked only while it binds what the embedder decides now: a kept
/// plan that holds together but carries another value (damaged, or forged with a valid
/// checksum) is refused by [`LoadPlan::binds_as_decided`].
#[test]
fn a_plan_binds_as_decided_only_under_the_decisions_it_was_made_with() {
    let plan = rich_plan();
    let defs: Vec<GlobalDef> = plan
        .modules
        .iter()
        .flat_map(|m| m.manifest.globals.iter().cloned())
        .collect();
    assert_eq!(defs.len(), 2, "k.c and k.g: {defs:?}");
    assert_eq!(
        plan.set_globals
            .iter()
            .map(|(n, ..)| n.as_str())
            .collect::<Vec<_>>(),
        ["k.g"]
    );
    let as_made = |name: &str| -> GlobalOutcome {
        match name {
            "k.c" => Ok(Value::I32(7)),
            _ => Ok(plan.set_globals[0].2),
        }
    };
    let check = |decide: &dyn Fn(&str) -> Option<GlobalOutcome>| {
        let outcomes: Vec<(GlobalDef, GlobalOutcome)> = defs
            .iter()
            .filter_map(|d| Some((d.clone(), decide(d.name.as_str())?)))
            .collect();
        let decided: Vec<(&GlobalDef, &GlobalOutcome)> =
            outcomes.iter().map(|(d, o)| (d, o)).collect();
        plan.binds_as_decided(&decided)
    };
    assert!(check(&|name| Some(as_made(name))));
    // The immutable global decided otherwise, stale, or not decided at all.
    assert!(!check(&|name| Some(if name == "k.c" {
        Ok(Value::I32(8))
    } else {
        as_made(name)
    })));
    assert!(!check(&|name| Some(if name == "k.c" {
        Err("stale".into())
    } else {
        as_made(name)
    })));
    assert!(!check(&|name| (name != "k.c").then(|| as_made(name))));
    // The mutable global's first value decided otherwise.
    assert!(!check(&|name| Some(if name == "k.g" {
        Ok(Value::I64(6))
    } else {
        as_made(name)
    })));
    // The same name with another definition is another decision.
    let mut other = defs.clone();
    for def in &mut other {
        def.definition.push(b'0');
    }
    let outcomes: Vec<(GlobalDef, GlobalOutcome)> = other
        .iter()
        .map(|d| (d.clone(), as_made(d.name.as_str())))
        .collect();
    let decided: Vec<(&GlobalDef, &GlobalOutcome)> = outcomes.iter().map(|(d, o)| (d, o)).collect();
    assert!(!plan.binds_as_decided(&decided));
}

/// `rich_plan`'s kept form and a decision on each kind of kept global (one a planned
/// module carries, one it does not), valid and stale.
fn rich_kept() -> (KeptPlan, Vec<(KeptGlobal, linkcache_core::GlobalOutcome)>) {
    let plan = rich_plan();
    let kept = KeptPlan::keep(&plan).unwrap();
    let carrier = plan
        .modules
        .iter()
        .find(|m| m.manifest.global("k.c").is_some())
        .unwrap();
    let def = carrier.manifest.global("k.c").unwrap().clone();
    let other = GlobalDef {
        definition: b"8".to_vec(),
        ..def.clone()
    };
    let globals = kept.keep_globals([
        (carrier.module, def, Ok(linkcache_core::Value::I32(7))),
        (carrier.module, other, Err("stale: 8 is old".to_string())),
    ]);
    (kept, globals)
}

#[test]
fn a_kept_plan_comes_back_through_its_compact_form() {
    let (kept, globals) = rich_kept();
    assert!(matches!(globals[0].0, KeptGlobal::Planned { .. }));
    assert!(matches!(globals[1].0, KeptGlobal::Other(..)));
    let bytes = kept.to_compact(&globals);
    let (back, back_globals) = KeptPlan::from_compact(&bytes).unwrap();
    assert_eq!(format!("{back:?}"), format!("{kept:?}"));
    assert_eq!(format!("{back_globals:?}"), format!("{globals:?}"));
    let plan = rich_plan();
    assert!(same(&plan, &back.into_plan().unwrap()));
}

#[test]
fn a_damaged_compact_form_is_an_error_or_a_checked_plan_never_a_panic() {
    let (kept, globals) = rich_kept();
    let bytes = kept.to_compact(&globals);
    for len in 0..bytes.len() {
        assert!(
            KeptPlan::from_compact(&bytes[..len]).is_err(),
            "truncated at {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(KeptPlan::from_compact(&longer).is_err(), "a trailing byte");
    let (mut decoded, mut rejected) = (0, 0);
    for at in 0..bytes.len() {
        for value in [0u8, 1, 2, 5, 0x7f, 0x80, 0xff] {
            if bytes[at] == value {
                continue;
            }
            let mut forged = bytes.clone();
            forged[at] = value;
            let Ok((plan, globals)) = KeptPlan::from_compact(&forged) else {
                rejected += 1;
                continue;
            };
            decoded += 1;
            for (global, _) in &globals {
                let _ = plan.global_check(global);
            }
            if let Ok(back) = plan.into_plan() {
                for module in &back.modules {
                    assert_eq!(module.manifest.imports.len(), module.imports.len());
                }
                assert!(
                    back.bindings
                        .iter()
                        .any(|(f, m)| *f == back.target && *m == back.module)
                );
            }
        }
    }
    assert!(
        decoded > 50 && rejected > 50,
        "{decoded} decoded, {rejected} rejected"
    );
}
