//! The scenario format: WAT modules and the steps to play against a host.
//!
//! A scenario is a TOML file under `tests/scenarios/`:
//!
//! ```toml
//! description = "what behaviour this pins down"
//! [modules.util]                     # a label
//! wat = '''(module ...)'''
//! globals = { "cfg.k" = "10" }       # optional: definitions, put in `linkcache.globals`
//! [[steps]]
//! add = "util"                       # add the module (expect_error = "analysis": rejected)
//! [[steps]]
//! target = "math.quad"               # expect = "hit" | "miss"
//! expect = "hit"
//! loads = ["util", "math"]           # hit: exactly the modules newly loaded
//! bound = { "util.sq" = "util" }     # bindings in this process afterwards
//! miss = "missing_dependency"        # miss: Miss::cause(), and optionally
//! miss_function = "math.quad"        #   Miss::function()
//! miss_detail = "util.sq"            #   Miss::detail()
//! not_validated = ["cfg.unused"]     # globals the resolver must not have been asked about
//! [[steps]]
//! call = "math.quad"                 # target if needed, call, compare results
//! args = [3]
//! results = [81]
//! [[steps]]
//! env = { "cfg.k" = "11" }           # the embedder's current global definitions
//! [[steps]]
//! new_process = true                 # forget per-process state, keep the cache
//! [[steps]]
//! corrupt = "util"                   # damage the stored bytes (and compiled code)
//! ```
//!
//! Under the `env` rule a global's definition is current when the environment has no
//! entry for its name or an entry equal to the definition's text; otherwise it is stale
//! ([`env_outcome`], [`env_resolver`]).
//!
//! [`parse`] is strict so that a typo cannot turn a check off: unknown keys, a field that
//! belongs to another kind of step (`results` on a `target`), a miss cause outside
//! [`MISS_CAUSES`] and a label no `[modules.*]` defines are errors naming the step.
//! The files are embedded with `include_str!`, so the suite also runs in a browser.

use std::collections::BTreeMap;
use std::fmt;

use linkcache_core::{GlobalCheck, GlobalOutcome, ValType, Value};
use serde::Deserialize;

macro_rules! scenario {
    ($file:literal) => {
        ($file, include_str!(concat!("../scenarios/", $file)))
    };
}

/// Every scenario file: (file name, contents).
pub static ALL: &[(&str, &str)] = &[
    scenario!("01_single_module_hit.toml"),
    scenario!("02_unknown_function_miss.toml"),
    scenario!("03_missing_dependency.toml"),
    scenario!("04_cross_module_chain.toml"),
    scenario!("05_diamond.toml"),
    scenario!("06_mutual_recursion_cycle.toml"),
    scenario!("07_closure_of_20_modules.toml"),
    scenario!("08_duplicates_earliest_wins.toml"),
    scenario!("09_duplicate_with_missing_dependency.toml"),
    scenario!("10_corrupt_duplicate_falls_back.toml"),
    scenario!("11_every_duplicate_corrupt.toml"),
    scenario!("12_partial_load.toml"),
    scenario!("13_stale_global_one_of_two_functions.toml"),
    scenario!("14_immutable_global_value.toml"),
    scenario!("15_mutable_global_shared.toml"),
    scenario!("16_prefer_loaded_duplicate.toml"),
    scenario!("17_invalid_module_rejected.toml"),
    scenario!("18_lazy_edge_outside_closure.toml"),
    scenario!("19_corruption_after_load_next_process.toml"),
    scenario!("20_internal_calls_and_many_exports.toml"),
    scenario!("21_mutable_global_linked_lazily.toml"),
    scenario!("22_stale_global_prefers_current_duplicate.toml"),
    scenario!("23_dependency_signature_mismatch.toml"),
    scenario!("24_duplicate_in_plan_preferred.toml"),
    scenario!("25_corrupt_dependency_repaired.toml"),
    scenario!("26_self_recursion_through_the_cache.toml"),
    scenario!("27_three_module_cycle_with_outside_dependency.toml"),
    scenario!("28_conflicting_mutable_global_across_targets.toml"),
    scenario!("29_conflicting_mutable_global_in_one_plan.toml"),
    scenario!("30_indirect_calls_through_a_table.toml"),
    scenario!("31_lazy_edge_dependency_added_later.toml"),
    scenario!("32_global_reached_indirectly.toml"),
    scenario!("33_start_function_calls_an_import.toml"),
    scenario!("34_one_function_two_names.toml"),
    scenario!("35_cycle_with_a_missing_dependency.toml"),
    scenario!("36_corrupt_cycle_member_replaced.toml"),
    scenario!("37_unused_stale_global_not_validated.toml"),
];

/// One parsed scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The file name.
    pub name: String,
    /// What behaviour it pins down.
    pub description: String,
    /// Modules by label.
    pub modules: BTreeMap<String, ModuleSpec>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// A module of a scenario.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSpec {
    /// Its WebAssembly text.
    pub wat: String,
    /// Global definitions by name (literal text), emitted in `linkcache.globals`.
    #[serde(default)]
    pub globals: BTreeMap<String, String>,
}

/// A number in a scenario: arguments and results.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Number {
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
}

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Add a module; `expect_error` when it must be rejected.
    Add {
        /// The module's label.
        label: String,
        /// `Some("analysis")` when adding must fail.
        expect_error: Option<String>,
    },
    /// Target a function and check the outcome.
    Target(TargetExpectation),
    /// Call a function (targeting it first) and compare its results.
    Call {
        /// The func_name.
        func: String,
        /// Arguments, converted to the parameter types.
        args: Vec<Number>,
        /// Expected results.
        results: Vec<Number>,
    },
    /// Replace the embedder's view of global definitions.
    Env(BTreeMap<String, String>),
    /// Forget the per-process state.
    NewProcess,
    /// Damage a module's stored bytes.
    Corrupt(String),
}

/// What a `target` step expects.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TargetExpectation {
    /// The func_name.
    pub func: String,
    /// Hit (`true`) or miss.
    pub hit: bool,
    /// For hits: exactly the labels of the modules newly loaded, if given.
    pub loads: Option<Vec<String>>,
    /// Bindings afterwards: func_name -> label.
    pub bound: BTreeMap<String, String>,
    /// For misses: the cause.
    pub miss: Option<String>,
    /// For misses: the function named.
    pub miss_function: Option<String>,
    /// For misses: the detail (missing dependency, stale global).
    pub miss_detail: Option<String>,
    /// Globals [`env_outcome`] must not have been asked about since the previous
    /// target was checked (partial validation: only the globals the closure's functions
    /// use are validated).
    pub not_validated: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    description: String,
    #[serde(default)]
    modules: BTreeMap<String, ModuleSpec>,
    steps: Vec<RawStep>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStep {
    add: Option<String>,
    expect_error: Option<String>,
    target: Option<String>,
    expect: Option<String>,
    loads: Option<Vec<String>>,
    #[serde(default)]
    bound: BTreeMap<String, String>,
    miss: Option<String>,
    miss_function: Option<String>,
    miss_detail: Option<String>,
    #[serde(default)]
    not_validated: Vec<String>,
    call: Option<String>,
    args: Option<Vec<Number>>,
    results: Option<Vec<Number>>,
    env: Option<BTreeMap<String, String>>,
    new_process: Option<bool>,
    corrupt: Option<String>,
}

/// A scenario file that does not parse or refers to unknown labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scenario {}: {}", self.name, self.reason)
    }
}

impl std::error::Error for ScenarioError {}

/// Parses one scenario file.
pub fn parse(name: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let error = |reason: String| ScenarioError {
        name: name.into(),
        reason,
    };
    let raw: RawScenario = toml::from_str(text).map_err(|e| error(e.to_string()))?;
    let mut steps = Vec::with_capacity(raw.steps.len());
    for (index, step) in raw.steps.into_iter().enumerate() {
        let step =
            convert(step).map_err(|reason| error(format!("step {}: {reason}", index + 1)))?;
        let labels: Vec<&String> = match &step {
            Step::Add { label, .. } | Step::Corrupt(label) => vec![label],
            Step::Target(t) => t.loads.iter().flatten().chain(t.bound.values()).collect(),
            _ => vec![],
        };
        if let Some(unknown) = labels.into_iter().find(|l| !raw.modules.contains_key(*l)) {
            return Err(error(format!(
                "step {}: no module labelled `{unknown}`",
                index + 1
            )));
        }
        steps.push(step);
    }
    Ok(Scenario {
        name: name.into(),
        description: raw.description,
        modules: raw.modules,
        steps,
    })
}

/// The causes `Miss::cause` can name.
pub const MISS_CAUSES: &[&str] = &[
    "unknown",
    "missing_dependency",
    "stale_global",
    "broken",
    "signature_mismatch",
];

fn convert(raw: RawStep) -> Result<Step, String> {
    let kinds = [
        ("add", raw.add.is_some()),
        ("target", raw.target.is_some()),
        ("call", raw.call.is_some()),
        ("env", raw.env.is_some()),
        ("new_process", raw.new_process.is_some()),
        ("corrupt", raw.corrupt.is_some()),
    ];
    let mut present = kinds.iter().filter(|(_, set)| *set).map(|(k, _)| *k);
    let (Some(kind), None) = (present.next(), present.next()) else {
        return Err(
            "a step has exactly one of add, target, call, env, new_process, corrupt".into(),
        );
    };
    // A field of another kind of step is a mistake in the file, not something to ignore.
    let fields = [
        ("expect_error", raw.expect_error.is_some(), "add"),
        ("expect", raw.expect.is_some(), "target"),
        ("loads", raw.loads.is_some(), "target"),
        ("bound", !raw.bound.is_empty(), "target"),
        ("miss", raw.miss.is_some(), "target"),
        ("miss_function", raw.miss_function.is_some(), "target"),
        ("miss_detail", raw.miss_detail.is_some(), "target"),
        ("not_validated", !raw.not_validated.is_empty(), "target"),
        ("args", raw.args.is_some(), "call"),
        ("results", raw.results.is_some(), "call"),
    ];
    if let Some((field, ..)) = fields.iter().find(|(_, set, owner)| *set && *owner != kind) {
        return Err(format!("`{field}` does not belong to a `{kind}` step"));
    }
    if let Some(label) = raw.add {
        if let Some(error) = raw.expect_error.as_deref().filter(|e| *e != "analysis") {
            return Err(format!("expect_error must be \"analysis\", not {error:?}"));
        }
        return Ok(Step::Add {
            label,
            expect_error: raw.expect_error,
        });
    }
    if let Some(func) = raw.target {
        let hit = match raw.expect.as_deref() {
            Some("hit") => true,
            Some("miss") => false,
            other => return Err(format!("expect must be \"hit\" or \"miss\", not {other:?}")),
        };
        let miss_fields = raw.miss.is_some() || raw.miss_function.is_some();
        if hit && (miss_fields || raw.miss_detail.is_some()) {
            return Err("a hit has no miss, miss_function or miss_detail".into());
        }
        if !hit && (raw.loads.is_some() || !raw.bound.is_empty()) {
            return Err("a miss has no loads or bound".into());
        }
        match raw.miss.as_deref() {
            None if !hit => return Err("a miss must name its cause (miss = ...)".into()),
            Some(cause) if !MISS_CAUSES.contains(&cause) => {
                return Err(format!(
                    "miss must be one of {MISS_CAUSES:?}, not {cause:?}"
                ));
            }
            _ => {}
        }
        return Ok(Step::Target(TargetExpectation {
            func,
            hit,
            loads: raw.loads,
            bound: raw.bound,
            miss: raw.miss,
            miss_function: raw.miss_function,
            not_validated: raw.not_validated,
            miss_detail: raw.miss_detail,
        }));
    }
    if let Some(func) = raw.call {
        return Ok(Step::Call {
            func,
            args: raw.args.unwrap_or_default(),
            results: raw.results.ok_or("a call needs results = [...]")?,
        });
    }
    if let Some(env) = raw.env {
        return Ok(Step::Env(env));
    }
    if let Some(label) = raw.corrupt {
        return Ok(Step::Corrupt(label));
    }
    match raw.new_process {
        Some(true) => Ok(Step::NewProcess),
        _ => Err("new_process must be true".into()),
    }
}

/// Every scenario, parsed; panics with the file and the reason on a bad file.
pub fn all() -> Vec<Scenario> {
    ALL.iter()
        .map(|(name, text)| parse(name, text).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

impl ModuleSpec {
    /// The module's bytes: its WAT assembled, plus a `linkcache.globals` custom section
    /// when it has global definitions.
    pub fn wasm(&self) -> Result<Vec<u8>, String> {
        let mut bytes = wat::parse_str(&self.wat).map_err(|e| e.to_string())?;
        if !self.globals.is_empty() {
            linkcache_core::append_globals_section(
                &mut bytes,
                self.globals
                    .iter()
                    .map(|(name, text)| (name.as_str(), text.as_bytes())),
            );
        }
        Ok(bytes)
    }
}

impl Number {
    /// This number as a value of type `ty`, if it fits.
    pub fn to_value(self, ty: ValType) -> Option<Value> {
        Some(match (self, ty) {
            (Number::Int(x), ValType::I32) => Value::I32(i32::try_from(x).ok()?),
            (Number::Int(x), ValType::I64) => Value::I64(x),
            (Number::Int(x), ValType::F32) => Value::from_f32(x as f32),
            (Number::Int(x), ValType::F64) => Value::from_f64(x as f64),
            (Number::Float(x), ValType::F32) => Value::from_f32(x as f32),
            (Number::Float(x), ValType::F64) => Value::from_f64(x),
            _ => return None,
        })
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(x) => write!(f, "{x}"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

/// The scenario rule for globals: a definition is current when `env` has no entry for
/// the global or an entry equal to its text; its value is then the literal.
///
/// Every global it is asked about is logged for this thread; [`take_validated`] drains
/// the log (the runner checks a target step's `not_validated` with it).
pub fn env_outcome(env: &BTreeMap<String, String>, check: &GlobalCheck) -> GlobalOutcome {
    VALIDATED.with(|log| log.borrow_mut().push(String::from(&check.global.name)));
    let text = String::from_utf8_lossy(&check.global.definition);
    match env.get(check.global.name.as_str()) {
        Some(current) if *current != text => Err(format!(
            "definition changed: compiled against {text:?}, now {current:?}"
        )),
        _ => Value::parse_literal(check.global.ty, &text)
            .ok_or_else(|| format!("definition {text:?} is not a {} literal", check.global.ty)),
    }
}

thread_local! {
    static VALIDATED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The globals [`env_outcome`] was asked about on this thread since the last call.
pub fn take_validated() -> Vec<String> {
    VALIDATED.with(|log| std::mem::take(&mut *log.borrow_mut()))
}

/// [`env_outcome`] as a global resolver over `env`, to hand to
/// `linkcache_core::load_target` or a host's resolver option.
pub fn env_resolver(
    env: &BTreeMap<String, String>,
) -> impl FnMut(&GlobalCheck) -> GlobalOutcome + '_ {
    move |check| env_outcome(env, check)
}
