//! Playing a scenario against a host: the checks every host shares.
//!
//! A synchronous host (the core's in-memory runner, the native host) implements
//! [`ScenarioHost`] and calls [`run`], which reports the first step that differs as
//! `"<file> step <n>: <what differed>"`.
//!
//! An asynchronous host (the browser, whose every operation is a promise) cannot
//! implement a synchronous trait. It walks [`Scenario::steps`] itself, awaiting its own
//! operations, and judges each outcome with the same plain functions [`run`] uses:
//!
//! - [`Labels::of`] once, for every module's bytes and id;
//! - after a `target` step, [`check_target`] with the [`TargetOutcome`] it built and a
//!   lookup of its bindings;
//! - after a `call` step, [`check_results`] with the values it got back (or
//!   [`check_call_types`] with the signature, if it cannot execute);
//! - for `add` steps, compare the id it got with [`Labels::id`].
//!
//! So both kinds of host judge the same files by the same rules; only the driving loop
//! is written twice.

use std::collections::BTreeMap;

use linkcache_core::{FuncSig, ModuleId, Value};

use crate::scenario::{Number, Scenario, Step, TargetExpectation};

/// What targeting a function gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetOutcome {
    /// A callable; `loaded` are the modules this target newly loaded.
    Hit {
        /// Modules newly loaded, in any order.
        loaded: Vec<ModuleId>,
    },
    /// A miss, as `Miss::cause`, `Miss::function` and `Miss::detail` describe it.
    Miss {
        /// The cause.
        cause: String,
        /// The function named.
        function: String,
        /// The missing dependency or stale global.
        detail: Option<String>,
    },
}

/// A host the scenario suite can drive synchronously.
pub trait ScenarioHost {
    /// Adds a module; `Err` with the reason when it is rejected.
    fn add(&mut self, wasm: &[u8]) -> Result<ModuleId, String>;
    /// Targets a function. `Err` only for a failure of the host itself.
    fn target(&mut self, func: &str) -> Result<TargetOutcome, String>;
    /// The module `func` is bound to in the current process.
    fn binding(&self, func: &str) -> Option<ModuleId>;
    /// Targets and calls `func`, converting `args` to its parameter types; `Ok(None)`
    /// when the host cannot execute code (the core runner), which then must give
    /// [`ScenarioHost::signature`].
    fn call(&mut self, func: &str, args: &[Number]) -> Result<Option<Vec<Value>>, String>;
    /// The signature of `func` as bound in the current process. Only a host whose
    /// [`ScenarioHost::call`] cannot execute needs it: [`run`] then checks the call
    /// step's arguments and results against it with [`check_call_types`].
    fn signature(&self, func: &str) -> Option<FuncSig> {
        let _ = func;
        None
    }
    /// The embedder's current global definitions (see [`crate::scenario::env_outcome`]).
    fn set_env(&mut self, env: BTreeMap<String, String>);
    /// Starts a new process on the same cache.
    fn new_process(&mut self);
    /// Damages the stored bytes (and any compiled code) of `module`.
    fn corrupt(&mut self, module: &ModuleId);
}

/// Module labels and their ids, as the scenario's modules are added.
#[derive(Clone, Debug, Default)]
pub struct Labels {
    ids: BTreeMap<String, ModuleId>,
}

impl Labels {
    /// The ids of every module of `scenario` (computed from its bytes).
    pub fn of(scenario: &Scenario) -> Result<(Labels, BTreeMap<String, Vec<u8>>), String> {
        let mut labels = Labels::default();
        let mut bytes = BTreeMap::new();
        for (label, spec) in &scenario.modules {
            let wasm = spec.wasm().map_err(|e| format!("module `{label}`: {e}"))?;
            labels.ids.insert(label.clone(), ModuleId::of(&wasm));
            bytes.insert(label.clone(), wasm);
        }
        Ok((labels, bytes))
    }

    /// The id of a label.
    pub fn id(&self, label: &str) -> ModuleId {
        self.ids[label]
    }

    /// The label of an id, or its short hex.
    pub fn name(&self, id: &ModuleId) -> String {
        self.ids
            .iter()
            .find(|(_, v)| *v == id)
            .map_or_else(|| id.short(), |(k, _)| k.clone())
    }
}

/// Checks a target's outcome and the bindings afterwards against the expectation.
pub fn check_target(
    expected: &TargetExpectation,
    outcome: &TargetOutcome,
    labels: &Labels,
    binding: &dyn Fn(&str) -> Option<ModuleId>,
) -> Result<(), String> {
    match (expected.hit, outcome) {
        (true, TargetOutcome::Hit { loaded }) => {
            if let Some(loads) = &expected.loads {
                let mut want: Vec<String> = loads.clone();
                let mut got: Vec<String> = loaded.iter().map(|id| labels.name(id)).collect();
                want.sort();
                got.sort();
                if want != got {
                    return Err(format!(
                        "`{}` loaded {got:?}, expected {want:?}",
                        expected.func
                    ));
                }
            }
        }
        (
            false,
            TargetOutcome::Miss {
                cause,
                function,
                detail,
            },
        ) => {
            let mismatch = |what: &str, want: &str, got: &str| {
                Err(format!(
                    "`{}` missed with {what} {got:?}, expected {want:?}",
                    expected.func
                ))
            };
            if let Some(want) = &expected.miss
                && want != cause
            {
                return mismatch("cause", want, cause);
            }
            if let Some(want) = &expected.miss_function
                && want != function
            {
                return mismatch("function", want, function);
            }
            if let Some(want) = &expected.miss_detail
                && Some(want) != detail.as_ref()
            {
                return mismatch("detail", want, detail.as_deref().unwrap_or("none"));
            }
        }
        (
            true,
            TargetOutcome::Miss {
                cause,
                function,
                detail,
            },
        ) => {
            return Err(format!(
                "`{}` expected a hit, got a miss ({cause}, function {function}, detail {detail:?})",
                expected.func
            ));
        }
        (false, TargetOutcome::Hit { .. }) => {
            return Err(format!("`{}` expected a miss, got a hit", expected.func));
        }
    }
    let validated = crate::scenario::take_validated();
    if let Some(global) = expected
        .not_validated
        .iter()
        .find(|g| validated.contains(g))
    {
        return Err(format!(
            "targeting `{}` sent global `{global}` to the resolver, though no function of its closure uses it",
            expected.func
        ));
    }
    for (func, label) in &expected.bound {
        let got = binding(func);
        if got != Some(labels.id(label)) {
            return Err(format!(
                "`{func}` is bound to {}, expected {label}",
                got.map_or("nothing".into(), |id| labels.name(&id))
            ));
        }
    }
    Ok(())
}

/// Checks a call's results.
pub fn check_results(func: &str, expected: &[Number], actual: &[Value]) -> Result<(), String> {
    let equal = expected.len() == actual.len()
        && expected
            .iter()
            .zip(actual)
            .all(|(want, got)| match (want, got) {
                (Number::Int(x), Value::I32(y)) => *x == i64::from(*y),
                (Number::Int(x), Value::I64(y)) => x == y,
                (want, got) => {
                    let want = match want {
                        Number::Int(x) => *x as f64,
                        Number::Float(x) => *x,
                    };
                    got.as_f64() == Some(want)
                }
            });
    if equal {
        Ok(())
    } else {
        Err(format!(
            "`{func}` returned {actual:?}, expected {expected:?}"
        ))
    }
}

/// Checks that a call step's arguments and expected results fit `signature` in number
/// and type: what a host that cannot execute verifies instead of the results.
pub fn check_call_types(
    func: &str,
    args: &[Number],
    results: &[Number],
    signature: &FuncSig,
) -> Result<(), String> {
    for (what, numbers, types) in [
        ("arguments", args, &signature.params),
        ("results", results, &signature.results),
    ] {
        if numbers.len() != types.len() {
            return Err(format!(
                "`{func}` has {} {what} ({signature}), the scenario gives {}",
                types.len(),
                numbers.len()
            ));
        }
        if let Some((number, ty)) = numbers
            .iter()
            .zip(types.iter())
            .find(|(number, ty)| number.to_value(**ty).is_none())
        {
            return Err(format!(
                "`{func}`: {number} is not a {ty} ({what} of {signature})"
            ));
        }
    }
    Ok(())
}

/// Plays `scenario` against `host`; the error names the step and what differed.
pub fn run(scenario: &Scenario, host: &mut dyn ScenarioHost) -> Result<(), String> {
    let (labels, bytes) = Labels::of(scenario)?;
    for (index, step) in scenario.steps.iter().enumerate() {
        let at = |e: String| format!("{} step {}: {e}", scenario.name, index + 1);
        match step {
            Step::Add {
                label,
                expect_error,
            } => match (host.add(&bytes[label]), expect_error) {
                (Ok(id), None) if id == labels.id(label) => {}
                (Ok(id), None) => {
                    return Err(at(format!("adding `{label}` gave id {}", id.short())));
                }
                (Err(e), None) => return Err(at(format!("adding `{label}` failed: {e}"))),
                (Ok(_), Some(_)) => {
                    return Err(at(format!("adding `{label}` should have been rejected")));
                }
                (Err(_), Some(_)) => {}
            },
            Step::Target(expected) => {
                crate::scenario::take_validated();
                let outcome = host.target(&expected.func).map_err(at)?;
                check_target(expected, &outcome, &labels, &|f| host.binding(f)).map_err(at)?;
            }
            Step::Call {
                func,
                args,
                results,
            } => match host.call(func, args).map_err(at)? {
                Some(actual) => check_results(func, results, &actual).map_err(at)?,
                None => {
                    let signature = host.signature(func).ok_or_else(|| {
                        at(format!(
                            "the host neither ran `{func}` nor gave its signature"
                        ))
                    })?;
                    check_call_types(func, args, results, &signature).map_err(at)?;
                }
            },
            Step::Env(env) => host.set_env(env.clone()),
            Step::NewProcess => host.new_process(),
            Step::Corrupt(label) => host.corrupt(&labels.id(label)),
        }
    }
    Ok(())
}

/// Plays every scenario of the suite, each against a fresh host from `new_host`, and
/// returns one message per failing scenario (empty when all pass).
pub fn run_all<H: ScenarioHost>(mut new_host: impl FnMut() -> H) -> Vec<String> {
    crate::scenario::all()
        .iter()
        .filter_map(|scenario| run(scenario, &mut new_host()).err())
        .collect()
}
