//! Closures of manifests without bytes, and a driver that plans over them answering every
//! need at once, the way the hosts' closure answering does. The planner reads only
//! manifests, so a 100,000-module chain costs no wasm parsing. Shared by the native
//! planner tests (`planner_scale.rs`) and the wasm32 one (`planner_wasm32.rs`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use linkcache_core::{
    Candidate, FN_NAMESPACE, FuncSig, Function, Import, ImportKind, Linkage, LoadPlan, Manifest,
    Miss, ModuleId, Need, Planner, Progress, ValType,
};

/// The func_name nobody defines, which [`duplicated_chain`] may call at its end.
pub const MISSING_LEAF: &str = "leaf.missing";

fn sig() -> FuncSig {
    FuncSig::new([ValType::I64], [ValType::I64])
}

/// A manifest defining `func` that calls `calls`; `salt` tells duplicates apart.
pub fn manifest(func: &str, calls: &[String], salt: u32) -> Manifest {
    Manifest {
        module: ModuleId::of(format!("{func}/{salt}").as_bytes()),
        byte_len: 1,
        functions: vec![Function {
            name: func.into(),
            signature: sig(),
            calls: calls.iter().map(Into::into).collect(),
            globals: vec![],
        }],
        imports: calls
            .iter()
            .map(|c| Import {
                namespace: FN_NAMESPACE.into(),
                name: c.into(),
                kind: ImportKind::Func(sig()),
            })
            .collect(),
        globals: vec![],
    }
}

/// Manifests by module and the function index over them: a store in memory.
#[derive(Default)]
pub struct Manifests {
    pub by_id: BTreeMap<ModuleId, Arc<Manifest>>,
    pub index: BTreeMap<String, Vec<Candidate>>,
}

impl Manifests {
    pub fn add(&mut self, manifest: Manifest) {
        let at = self.by_id.len() as u64;
        for f in &manifest.functions {
            self.index
                .entry(String::from(&f.name))
                .or_default()
                .push(Candidate {
                    module: manifest.module,
                    committed_at: at,
                });
        }
        self.by_id.insert(manifest.module, Arc::new(manifest));
    }

    /// Drives a planner to the end, answering every need; returns the outcome (the
    /// number of modules planned, or the miss), the number of `next` rounds and the
    /// steps summed over them.
    pub fn plan(&self, target: &str) -> (Result<usize, Miss>, usize, u64) {
        let (outcome, rounds, steps) = self.load_plan(target);
        (outcome.map(|plan| plan.modules.len()), rounds, steps)
    }

    /// [`Manifests::plan`] with the plan itself.
    pub fn load_plan(&self, target: &str) -> (Result<LoadPlan, Miss>, usize, u64) {
        let linkage = Linkage::new();
        let mut planner = Planner::new(target);
        let mut steps = 0;
        for round in 1.. {
            let (progress, taken) = planner.next_counting_steps(&linkage);
            steps += taken;
            match progress {
                Progress::Ready(plan) => return (Ok(plan), round, steps),
                Progress::Miss(miss) => return (Err(miss), round, steps),
                Progress::Need(Need::Candidates(_) | Need::Manifest(_)) => {
                    // Answer everything at once, as the hosts' closure answering does.
                    for (func, list) in &self.index {
                        planner.answer_candidates(func, list.clone());
                    }
                    planner.answer_candidates(MISSING_LEAF, vec![]);
                    for (id, m) in &self.by_id {
                        planner.answer_manifest(*id, Ok(Arc::clone(m)));
                    }
                }
                Progress::Need(Need::Globals(_)) => unreachable!("no globals here"),
            }
        }
        unreachable!()
    }
}

/// The func_name of level `i` of a chain.
pub fn level(i: usize) -> String {
    format!("chain.{i}")
}

/// `levels` func_names where level i calls level i + 1, `duplicates` modules defining
/// each, and the last level calling `leaf` (none: calling nothing).
pub fn duplicated_chain(levels: usize, duplicates: u32, leaf: Option<&str>) -> Manifests {
    let mut store = Manifests::default();
    for i in 0..levels {
        let calls = if i + 1 < levels {
            vec![level(i + 1)]
        } else {
            leaf.map(String::from).into_iter().collect()
        };
        for salt in 0..duplicates {
            store.add(manifest(&level(i), &calls, salt));
        }
    }
    store
}
