//! The scenario suite against the core alone: `MemoryStore`, `Linkage` and
//! `load_target`, with a load step that checks the stored bytes hash to their module id
//! (so corruption is detected the way a host detects it). Calls are planned and their
//! arity checked, but not executed: no engine here.

use std::collections::BTreeMap;

use linkcache_core::{Linkage, LoadFailure, MemoryStore, ModuleId, Value, load_target};
use linkcache_tests::{Number, ScenarioHost, Step, TargetOutcome, all, env_outcome, run};

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
        let env = self.env.clone();
        let store = self.store.clone();
        let mut loaded = Vec::new();
        let outcome = load_target(
            &mut self.store,
            &mut self.linkage,
            func,
            None,
            &mut |check: &_| env_outcome(&env, check),
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

    fn call(&mut self, func: &str, args: &[Number]) -> Result<Option<Vec<Value>>, String> {
        match self.target(func)? {
            TargetOutcome::Hit { .. } => {}
            miss => return Err(format!("calling `{func}`: {miss:?}")),
        }
        let module = self.linkage.binding(func).expect("a hit binds");
        let signature = self
            .linkage
            .loaded_manifest(&module)
            .unwrap()
            .function(func)
            .unwrap()
            .signature
            .clone();
        if signature.params.len() != args.len() {
            return Err(format!(
                "`{func}` takes {} arguments, the scenario passes {}",
                signature.params.len(),
                args.len()
            ));
        }
        for (arg, ty) in args.iter().zip(&signature.params) {
            arg.to_value(*ty)
                .ok_or_else(|| format!("argument {arg} is not a {ty}"))?;
        }
        Ok(None)
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
    let failures: Vec<String> = all()
        .iter()
        .filter_map(|scenario| run(scenario, &mut CoreHost::default()).err())
        .collect();
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

#[test]
fn the_runner_reports_a_wrong_expectation() {
    // The same scenarios with one expectation changed must fail, naming the step.
    let mut changed = 0;
    for mut scenario in all() {
        let Some(step) = scenario.steps.iter_mut().find_map(|s| match s {
            Step::Target(t) if t.hit && t.loads.as_ref().is_some_and(|l| !l.is_empty()) => Some(t),
            _ => None,
        }) else {
            continue;
        };
        step.loads.as_mut().unwrap().pop();
        let err = run(&scenario, &mut CoreHost::default()).expect_err("a wrong `loads` must fail");
        assert!(
            err.contains(&scenario.name) && err.contains("loaded"),
            "{err}"
        );
        changed += 1;
    }
    assert!(
        changed >= 10,
        "only {changed} scenarios have a target step with loads"
    );

    let mut scenario = all()
        .into_iter()
        .find(|s| s.name.starts_with("03_"))
        .unwrap();
    for step in &mut scenario.steps {
        if let Step::Target(t) = step
            && !t.hit
        {
            t.miss_detail = Some("util.cube".into());
        }
    }
    let err = run(&scenario, &mut CoreHost::default()).unwrap_err();
    assert!(err.contains("detail"), "{err}");
}

#[test]
fn a_bad_scenario_file_is_a_clear_error() {
    let err = linkcache_tests::parse(
        "bad.toml",
        "description = \"x\"\n[[steps]]\nadd = \"nope\"\n",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("no module labelled `nope`"),
        "{err}"
    );
    let err = linkcache_tests::parse(
        "bad.toml",
        "description = \"x\"\n[[steps]]\ntarget = \"f\"\nexpect = \"maybe\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("expect must be"), "{err}");
}
