//! The host-independent scenario suite of linkcache: data files under `scenarios/`,
//! their parser ([`scenario`]) and the checks every host runs them with ([`runner`]);
//! and what the tests and benchmarks of both hosts share: module sets ([`workloads`]), the
//! benchmark's synthetic caches ([`synthetic`]) and servers on loopback ([`servers`]).
//!
//! The core runs the suite against its in-memory store (`tests/core_scenarios.rs`), the
//! native host against a cache directory and wasmtime, the web host in a browser.

#![warn(missing_docs)]

pub mod runner;
pub mod scenario;
pub mod servers;
pub mod synthetic;
pub mod workloads;

pub use runner::{
    Labels, ScenarioHost, TargetOutcome, check_call_types, check_results, check_target, run,
    run_all,
};
pub use scenario::{
    ALL, MISS_CAUSES, ModuleSpec, Number, Scenario, ScenarioError, Step, TargetExpectation, all,
    env_outcome, env_resolver, parse, take_validated,
};
