//! The scenario suite against the core alone: `MemoryStore`, `Linkage` and
//! `load_target`, with a load step that checks the stored bytes hash to their module id
//! (so corruption is detected the way a host detects it). Calls are planned and their
//! arity checked, but not executed: no engine here.

use std::collections::BTreeMap;

use linkcache_core::{FuncSig, Linkage, LoadFailure, MemoryStore, ModuleId, Value, load_target};
use linkcache_tests::{Number, ScenarioHost, Step, TargetOutcome, all, env_resolver, run, run_all};

#[derive(Default)]
struct CoreHost {
    store: MemoryStore,
    linkage: Linkage,
    env: BTreeMap<String, String>,
}

impl ScenarioHost for CoreHost {
    fn add(&mut self, wasm: &[u8]) -> Result<ModuleId, String> {
        self.store.add(wasm).map_err(|e| e.to_string())
    }

    fn target(&mut self, func: &str) -> Result<TargetOutcome, String> {
        // The load callback reads the bytes while `load_target` holds the store mutably.
        let store = self.store.clone();
        let mut loaded = Vec::new();
        let outcome = load_target(
            &mut self.store,
            &mut self.linkage,
            func,
            None,
            &mut env_resolver(&self.env),
            &mut |plan, _| {
                for planned in &plan.modules {
                    let intact = store
                        .wasm(&planned.module)
                        .is_some_and(|w| planned.module.matches(w));
                    if !intact {
                        return Err(LoadFailure {
                            module: planned.module,
                            reason: "bytes do not hash to the module id".into(),
                        });
                    }
                }
                loaded = plan.modules.iter().map(|m| m.module).collect();
                Ok(())
            },
        )
        .unwrap_or_else(|never| match never {});
        Ok(match outcome {
            Ok(_) => TargetOutcome::Hit { loaded },
            Err(miss) => TargetOutcome::Miss {
                cause: miss.cause().into(),
                function: miss.function().into(),
                detail: miss.detail().map(str::to_string),
            },
        })
    }

    fn binding(&self, func: &str) -> Option<ModuleId> {
        self.linkage.binding(func)
    }

    /// Targets `func`, which must hit; no engine here, so nothing runs (`Ok(None)`) and
    /// the runner checks the step against [`ScenarioHost::signature`] instead.
    fn call(&mut self, func: &str, _args: &[Number]) -> Result<Option<Vec<Value>>, String> {
        match self.target(func)? {
            TargetOutcome::Hit { .. } => Ok(None),
            miss => Err(format!("calling `{func}`: {miss:?}")),
        }
    }

    fn signature(&self, func: &str) -> Option<FuncSig> {
        let module = self.linkage.binding(func)?;
        let manifest = self.linkage.loaded_manifest(&module)?;
        Some(manifest.function(func)?.signature.clone())
    }

    fn set_env(&mut self, env: BTreeMap<String, String>) {
        self.env = env;
    }

    fn new_process(&mut self) {
        self.linkage = Linkage::new();
    }

    fn corrupt(&mut self, module: &ModuleId) {
        let mut bytes = self
            .store
            .wasm(module)
            .expect("corrupting an added module")
            .to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        self.store.tamper(module, bytes);
    }
}

#[test]
fn every_scenario_passes_against_the_core() {
    let failures = run_all(CoreHost::default);
    assert!(
        failures.is_empty(),
        "{} scenarios failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_suite_has_at_least_fifteen_well_formed_scenarios() {
    let scenarios = all();
    assert!(scenarios.len() >= 15, "{} scenarios", scenarios.len());
    for scenario in &scenarios {
        assert!(
            !scenario.description.trim().is_empty(),
            "{} has no description",
            scenario.name
        );
        assert!(!scenario.steps.is_empty(), "{} has no steps", scenario.name);
        for (label, module) in &scenario.modules {
            module
                .wasm()
                .unwrap_or_else(|e| panic!("{} module {label}: {e}", scenario.name));
        }
    }
}

/// Applies `mutate` to the first step it accepts (returns `true` for) in every scenario
/// that passes unchanged, and checks the runner then fails at exactly that step with a
/// message containing `needle`. Returns how many scenarios were mutated.
fn mutations_fail(needle: &str, mutate: impl Fn(&mut Step) -> bool) -> usize {
    let mut mutated = 0;
    for mut scenario in all() {
        if run(&scenario, &mut CoreHost::default()).is_err() {
            continue; // reported by every_scenario_passes_against_the_core
        }
        let Some(index) = scenario.steps.iter_mut().position(&mutate) else {
            continue;
        };
        let err = run(&scenario, &mut CoreHost::default())
            .expect_err("the runner accepted a wrong expectation");
        let at = format!("{} step {}: ", scenario.name, index + 1);
        assert!(
            err.starts_with(&at) && err.contains(needle),
            "expected `{at}...{needle}...`, got: {err}"
        );
        mutated += 1;
    }
    mutated
}

#[test]
fn every_file_under_scenarios_is_in_the_suite() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let listed: Vec<String> = linkcache_tests::ALL
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    assert_eq!(
        listed, on_disk,
        "scenario::ALL must list every file, sorted"
    );
}

#[test]
fn the_runner_reports_a_wrong_expectation() {
    // One module too few in `loads`.
    let n = mutations_fail("loaded", |step| match step {
        Step::Target(t) if t.hit && t.loads.as_ref().is_some_and(|l| !l.is_empty()) => {
            t.loads.as_mut().unwrap().pop();
            true
        }
        _ => false,
    });
    assert!(n >= 10, "only {n} scenarios have a target step with loads");

    // One module too many in `loads` (a label the scenario has that the step did not load).
    let n = mutations_fail("loaded", |step| match step {
        Step::Target(t) if t.hit && t.loads.as_ref().is_some_and(|l| l.is_empty()) => {
            t.loads = Some(vec![t.bound.values().next().cloned().unwrap_or_default()]);
            !t.bound.is_empty()
        }
        _ => false,
    });
    assert!(
        n >= 3,
        "only {n} scenarios expect an empty load with bindings"
    );

    // A binding to another module.
    let n = mutations_fail("is bound to", |step| match step {
        Step::Target(t) if t.bound.len() >= 2 => {
            let labels: Vec<String> = t.bound.values().cloned().collect();
            let Some(other) = labels.iter().find(|l| **l != labels[0]).cloned() else {
                return false;
            };
            *t.bound.values_mut().next().unwrap() = other;
            true
        }
        _ => false,
    });
    assert!(
        n >= 5,
        "only {n} scenarios bind two functions to different modules"
    );

    // Another miss cause, and another miss detail.
    let n = mutations_fail("cause", |step| match step {
        Step::Target(t) if !t.hit => {
            t.miss = Some(
                if t.miss.as_deref() == Some("unknown") {
                    "broken"
                } else {
                    "unknown"
                }
                .into(),
            );
            true
        }
        _ => false,
    });
    assert!(n >= 6, "only {n} scenarios expect a miss");
    let n = mutations_fail("detail", |step| match step {
        Step::Target(t) if t.miss_detail.is_some() => {
            t.miss_detail = Some("no.such".into());
            true
        }
        _ => false,
    });
    assert!(n >= 3, "only {n} scenarios expect a miss detail");

    // A hit expected where the core misses, and the other way round.
    let n = mutations_fail("expected a", |step| match step {
        Step::Target(t) => {
            t.hit = !t.hit;
            true
        }
        _ => false,
    });
    assert!(n >= 15, "only {n} scenarios have a target step");

    // A call with one result too many: the core cannot execute, but checks the signature.
    let n = mutations_fail("results", |step| match step {
        Step::Call { results, .. } => {
            results.push(Number::Int(0));
            true
        }
        _ => false,
    });
    assert!(n >= 15, "only {n} scenarios call a function");
}

#[test]
fn a_bad_scenario_file_is_a_clear_error() {
    let cases = [
        ("add = \"nope\"", "step 1: no module labelled `nope`"),
        ("target = \"f\"\nexpect = \"maybe\"", "expect must be"),
        ("target = \"f\"\nexpect = \"miss\"", "must name its cause"),
        (
            "target = \"f\"\nexpect = \"miss\"\nmiss = \"gone\"",
            "miss must be one of",
        ),
        (
            "target = \"f\"\nexpect = \"hit\"\nmiss = \"unknown\"",
            "a hit has no miss",
        ),
        (
            "target = \"f\"\nexpect = \"miss\"\nmiss = \"unknown\"\nloads = []",
            "a miss has no loads",
        ),
        (
            "target = \"f\"\nexpect = \"hit\"\nresults = [1]",
            "`results` does not belong to a `target` step",
        ),
        ("call = \"f\"\nargs = [1]", "a call needs results"),
        ("call = \"f\"\nresults = [1]\nadd = \"m\"", "exactly one of"),
        (
            "add = \"m\"\nexpect_error = \"oops\"",
            "expect_error must be",
        ),
        ("new_process = false", "new_process must be true"),
        ("colour = \"red\"", "unknown field `colour`"),
    ];
    for (step, reason) in cases {
        let text =
            format!("description = \"x\"\n[modules.m]\nwat = \"(module)\"\n[[steps]]\n{step}\n");
        let err = linkcache_tests::parse("bad.toml", &text)
            .expect_err(step)
            .to_string();
        assert!(
            err.starts_with("scenario bad.toml: ") && err.contains(reason),
            "{step}: expected {reason:?}, got {err}"
        );
    }
}

#[test]
fn the_env_rule() {
    use linkcache_core::{GlobalCheck, GlobalDef, ValType};
    let check = GlobalCheck {
        module: ModuleId::of(b""),
        global: GlobalDef {
            name: "cfg.k".into(),
            ty: ValType::I64,
            mutable: false,
            definition: b"10".to_vec(),
        },
    };
    let outcome = |env: &[(&str, &str)]| {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env_resolver(&env)(&check)
    };
    assert_eq!(outcome(&[]), Ok(Value::I64(10)));
    assert_eq!(
        outcome(&[("cfg.k", "10"), ("other", "1")]),
        Ok(Value::I64(10))
    );
    let stale = outcome(&[("cfg.k", "11")]).unwrap_err();
    assert!(stale.starts_with("definition changed"), "{stale}");
}

#[test]
fn numbers_convert_and_compare_by_type() {
    use linkcache_core::ValType;
    use linkcache_tests::check_results;
    assert_eq!(Number::Int(-3).to_value(ValType::I32), Some(Value::I32(-3)));
    assert_eq!(Number::Int(1 << 40).to_value(ValType::I32), None);
    assert_eq!(
        Number::Int(2).to_value(ValType::F64),
        Some(Value::from_f64(2.0))
    );
    assert_eq!(Number::Float(2.5).to_value(ValType::I64), None);
    assert!(check_results("f", &[Number::Int(7)], &[Value::I64(7)]).is_ok());
    assert!(check_results("f", &[Number::Float(2.5)], &[Value::from_f64(2.5)]).is_ok());
    assert!(check_results("f", &[Number::Int(7)], &[Value::I64(8)]).is_err());
    assert!(check_results("f", &[Number::Int(7)], &[]).is_err());
}
