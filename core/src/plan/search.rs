//! The planner's search, in three passes over what the host has answered, none of which
//! recurses along the call graph:
//!
//! 1. **Explore** the candidate closure of the target: its candidates, their manifests,
//!    the candidates of every func_name they call, transitively (a work list). The first
//!    thing not answered yet is the [`Need`].
//! 2. **Viability**, a greatest fixpoint: a candidate (func_name, module) is viable when
//!    its entry is usable on its own (manifest intact, function defined, no global
//!    stale) and every func_name it calls has a viable candidate with the signature it
//!    imports (or is bound in the process with it). Unusable candidates are removed with
//!    a counter per (func_name, signature), each candidate and edge once: linear in
//!    the closure. Every removed candidate keeps the [`Miss`] that explains it, so the
//!    target's miss comes out without a second search.
//! 3. **Choice**: from the target, bind every reached func_name to its first viable
//!    candidate in DESIGN.md's order (loaded, in this plan, earliest committed), in
//!    depth-first order with an explicit stack. A viable choice never needs to be
//!    undone, because its callees have viable candidates too. Two constraints span
//!    several choices: one binding per func_name (so callers must agree on its
//!    signature) and one value per mutable global. A choice that breaks one excludes the
//!    caller's candidate, and the passes run again: each round excludes one more
//!    candidate, so there are at most as many rounds as candidates (polynomial, where a
//!    search with backtracking is exponential).
//!
//! Every pass counts its steps, so tests bound the planner's work without a clock.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use alloc::{format, vec};

use crate::{FuncSig, Function, GlobalDef, Linkage, Manifest, ModuleId, Value};

use super::{GlobalCheck, GlobalKey, Miss, Need, Planner};

/// Why a candidate is not usable.
#[derive(Clone, Debug)]
pub(super) enum Rejection {
    /// The entry itself is broken (unreadable manifest, function not defined).
    Broken(String),
    /// A miss the caller can act on.
    Miss(Miss),
}

/// One candidate: a module that defines (or is listed for) a func_name.
struct Node<'a> {
    func: usize,
    module: ModuleId,
    committed_at: u64,
    manifest: Option<&'a Arc<Manifest>>,
    entry: Option<&'a Function>,
    alive: bool,
    rejection: Option<Rejection>,
}

/// One func_name of the closure.
struct Func<'a> {
    name: &'a str,
    /// Bound in the process already: to this module, with this signature.
    bound: Option<(ModuleId, Option<&'a FuncSig>)>,
    /// Whether the store listed no candidate at all.
    unknown: bool,
    nodes: Vec<usize>,
}

/// The outcome of a search that needs nothing more.
pub(super) enum Found {
    /// The target is bound in the process already, to this module.
    Bound(ModuleId),
    /// New bindings: func_name -> module, and the target's module.
    Chosen {
        chosen: BTreeMap<String, ModuleId>,
        target: ModuleId,
        /// Global definitions the chosen functions use and nobody validated yet.
        pending: BTreeMap<GlobalKey, GlobalCheck>,
    },
}

pub(super) struct Search<'a> {
    pub(super) linkage: &'a Linkage,
    pub(super) planner: &'a Planner,
    pub(super) steps: u64,
    funcs: Vec<Func<'a>>,
    func_ids: BTreeMap<&'a str, usize>,
    nodes: Vec<Node<'a>>,
    /// Per module: its `linkcache:fn` imports by func_name.
    import_sigs: BTreeMap<ModuleId, BTreeMap<&'a str, &'a FuncSig>>,
    /// Candidates excluded by an earlier round of the choice: (func_name, module).
    excluded: BTreeMap<(usize, ModuleId), Miss>,
}

impl<'a> Search<'a> {
    pub(super) fn new(planner: &'a Planner, linkage: &'a Linkage) -> Search<'a> {
        Search {
            linkage,
            planner,
            steps: 0,
            funcs: Vec::new(),
            func_ids: BTreeMap::new(),
            nodes: Vec::new(),
            import_sigs: BTreeMap::new(),
            excluded: BTreeMap::new(),
        }
    }

    /// The manifest of `module`: loaded, known broken, answered, or not known yet.
    pub(super) fn manifest(&self, module: &ModuleId) -> Option<Result<&'a Arc<Manifest>, &'a str>> {
        if let Some(m) = self.linkage.loaded_manifest(module) {
            return Some(Ok(m));
        }
        if let Some(reason) = self.linkage.broken_reason(module) {
            return Some(Err(reason));
        }
        self.planner
            .manifests
            .get(module)
            .map(|m| m.as_ref().map_err(|e| e.as_str()))
    }

    /// The decision on a global definition, if known (without asking for it): its
    /// value, or why it is stale in this process.
    pub(super) fn known_global(&self, def: &GlobalDef) -> Option<Result<Value, String>> {
        let key = GlobalKey::of(def);
        let outcome = self
            .linkage
            .global_outcome(&key)
            .or_else(|| self.planner.globals.get(&key))?;
        Some(match outcome {
            Err(reason) => Err(reason.clone()),
            Ok(value) => {
                if def.mutable
                    && let Some(shared) = self.linkage.shared_global(&def.name)
                    && shared != *value
                {
                    Err(format!(
                        "it defines {value}, but this process already set the global to {shared}"
                    ))
                } else {
                    Ok(*value)
                }
            }
        })
    }

    fn func_id(&mut self, name: &'a str, work: &mut Vec<usize>) -> usize {
        if let Some(&id) = self.func_ids.get(name) {
            return id;
        }
        let id = self.funcs.len();
        let bound = self.linkage.binding(name).map(|module| {
            let signature = self
                .manifest(&module)
                .and_then(Result::ok)
                .and_then(|m| m.function(name))
                .map(|f| &f.signature);
            (module, signature)
        });
        self.funcs.push(Func {
            name,
            bound,
            unknown: false,
            nodes: Vec::new(),
        });
        self.func_ids.insert(name, id);
        work.push(id);
        id
    }

    fn import_sig(&mut self, manifest: &'a Manifest, callee: &str) -> Option<&'a FuncSig> {
        let sigs = self
            .import_sigs
            .entry(manifest.module)
            .or_insert_with(|| manifest.fn_imports().collect());
        sigs.get(callee).copied()
    }

    /// Pass 1: every candidate of every func_name the target may reach, with manifests.
    fn explore(&mut self) -> Result<(), Need> {
        let mut work = Vec::new();
        let target: &'a str = &self.planner.target;
        self.func_id(target, &mut work);
        while let Some(func) = work.pop() {
            self.steps += 1;
            if self.funcs[func].bound.is_some() {
                continue;
            }
            let name = self.funcs[func].name;
            let Some(listed) = self.planner.candidates.get(name) else {
                return Err(Need::Candidates(name.into()));
            };
            let mut modules: BTreeMap<ModuleId, u64> = BTreeMap::new();
            for candidate in listed {
                self.steps += 1;
                let at = modules
                    .entry(candidate.module)
                    .or_insert(candidate.committed_at);
                *at = (*at).min(candidate.committed_at);
            }
            self.funcs[func].unknown = modules.is_empty();
            for (module, committed_at) in modules {
                let manifest = match self.manifest(&module) {
                    None => return Err(Need::Manifest(module)),
                    Some(manifest) => manifest,
                };
                let (manifest, entry, rejection) = match manifest {
                    Err(reason) => (None, None, Some(Rejection::Broken(reason.into()))),
                    Ok(manifest) => match manifest.function(name) {
                        None => (
                            Some(manifest),
                            None,
                            Some(Rejection::Broken(format!(
                                "the index lists it for `{name}`, but its manifest does not define it"
                            ))),
                        ),
                        Some(entry) => (Some(manifest), Some(entry), None),
                    },
                };
                if let Some(entry) = entry {
                    for callee in &entry.calls {
                        self.steps += 1;
                        self.func_id(callee, &mut work);
                    }
                }
                let node = self.nodes.len();
                self.nodes.push(Node {
                    func,
                    module,
                    committed_at,
                    manifest,
                    entry,
                    alive: rejection.is_none(),
                    rejection,
                });
                self.funcs[func].nodes.push(node);
            }
        }
        Ok(())
    }

    /// Why `node`'s entry is unusable on its own, if it is (globals, exclusion, a
    /// callee bound in the process with another signature).
    fn local_rejection(&mut self, node: usize) -> Option<Miss> {
        let (func, module) = (self.nodes[node].func, self.nodes[node].module);
        if let Some(miss) = self.excluded.get(&(func, module)) {
            return Some(miss.clone());
        }
        let manifest = self.nodes[node].manifest?;
        let entry = self.nodes[node].entry?;
        let name = self.funcs[func].name;
        let loaded = self.linkage.is_loaded(&module);
        for global in &entry.globals {
            self.steps += 1;
            let def = manifest.global(global)?;
            let stale = |reason: String| Miss::StaleGlobal {
                function: name.into(),
                global: global.clone(),
                reason,
            };
            if loaded && !def.mutable && self.linkage.has_placeholder(&module, global) {
                return Some(stale(format!(
                    "module {} was instantiated in this process before the global was validated, with a placeholder value (a new process can use it)",
                    module.short()
                )));
            }
            if let Some(Err(reason)) = self.known_global(def) {
                return Some(stale(reason));
            }
        }
        for callee in &entry.calls {
            self.steps += 1;
            let callee_id = self.func_ids[callee.as_str()];
            if let Some((_, found)) = self.funcs[callee_id].bound {
                let wanted = self.import_sig(manifest, callee)?;
                if let Some(found) = found
                    && found != wanted
                {
                    return Some(Miss::SignatureMismatch {
                        function: callee.clone(),
                        expected: wanted.clone(),
                        found: found.clone(),
                    });
                }
            }
        }
        None
    }

    /// The order in which duplicates are preferred, before any choice is made.
    fn preference(&self, node: usize) -> (u8, u64, ModuleId) {
        let n = &self.nodes[node];
        let rank = if self.linkage.is_loaded(&n.module) {
            0
        } else {
            2
        };
        (rank, n.committed_at, n.module)
    }

    /// The miss of `func` when no candidate with `signature` (any, if `None`) is viable,
    /// as the candidates' own rejections explain it: the first one that is a miss,
    /// else every broken module.
    fn miss_of(&mut self, func: usize, signature: Option<&FuncSig>) -> Miss {
        let name = self.funcs[func].name;
        if self.funcs[func].unknown {
            return Miss::Unknown {
                function: name.into(),
            };
        }
        let mut order = self.funcs[func].nodes.clone();
        order.sort_by_key(|&n| self.preference(n));
        let mut broken = vec![];
        for node in order {
            self.steps += 1;
            let n = &self.nodes[node];
            if let (Some(wanted), Some(entry)) = (signature, n.entry)
                && entry.signature != *wanted
            {
                return Miss::SignatureMismatch {
                    function: name.into(),
                    expected: wanted.clone(),
                    found: entry.signature.clone(),
                };
            }
            match &n.rejection {
                Some(Rejection::Miss(miss)) => return miss.clone(),
                Some(Rejection::Broken(reason)) => broken.push((n.module, reason.clone())),
                None => {}
            }
        }
        Miss::Broken {
            function: name.into(),
            modules: broken,
        }
    }

    /// Pass 2: removes every candidate that cannot be completed.
    fn viability(&mut self) {
        // (func, signature) -> alive candidates with that signature.
        let mut support: BTreeMap<(usize, &'a FuncSig), usize> = BTreeMap::new();
        // (func, signature) -> candidates calling func with that signature.
        let mut dependents: BTreeMap<(usize, &'a FuncSig), Vec<usize>> = BTreeMap::new();
        for node in 0..self.nodes.len() {
            self.steps += 1;
            if self.nodes[node].alive
                && let Some(miss) = self.local_rejection(node)
            {
                self.nodes[node].alive = false;
                self.nodes[node].rejection = Some(Rejection::Miss(miss));
            }
            let Some(entry) = self.nodes[node].entry else {
                continue;
            };
            if self.nodes[node].alive {
                *support
                    .entry((self.nodes[node].func, &entry.signature))
                    .or_default() += 1;
            }
            let manifest = self.nodes[node]
                .manifest
                .expect("entries come from manifests");
            for callee in &entry.calls {
                self.steps += 1;
                let callee_id = self.func_ids[callee.as_str()];
                if self.funcs[callee_id].bound.is_some() {
                    continue;
                }
                if let Some(signature) = self.import_sig(manifest, callee) {
                    dependents
                        .entry((callee_id, signature))
                        .or_default()
                        .push(node);
                }
            }
        }
        let mut empty: Vec<(usize, &'a FuncSig)> = dependents
            .keys()
            .filter(|key| !support.contains_key(key))
            .copied()
            .collect();
        while let Some((func, signature)) = empty.pop() {
            self.steps += 1;
            let Some(callers) = dependents.remove(&(func, signature)) else {
                continue;
            };
            let miss = self.miss_of(func, Some(signature));
            let callee = self.funcs[func].name;
            for caller in callers {
                self.steps += 1;
                if !self.nodes[caller].alive {
                    continue;
                }
                let caller_name = self.funcs[self.nodes[caller].func].name;
                let miss = match &miss {
                    Miss::Unknown { .. } => Miss::MissingDependency {
                        function: caller_name.into(),
                        dependency: callee.into(),
                    },
                    other => other.clone(),
                };
                let n = &mut self.nodes[caller];
                n.alive = false;
                n.rejection = Some(Rejection::Miss(miss));
                let key = (
                    n.func,
                    &n.entry.expect("alive nodes have entries").signature,
                );
                let left = support.get_mut(&key).expect("alive nodes are counted");
                *left -= 1;
                if *left == 0 {
                    support.remove(&key);
                    if dependents.contains_key(&key) {
                        empty.push(key);
                    }
                }
            }
        }
    }

    /// Runs the passes until a choice holds. `Err(need)` when something must be asked
    /// first; `Ok(Err(miss))` when the target cannot be loaded.
    pub(super) fn run(&mut self) -> Result<Result<Found, Miss>, Need> {
        self.explore()?;
        let target = self.func_ids[self.planner.target.as_str()];
        let expected = self.planner.expected.as_ref();
        if let Some((module, found)) = self.funcs[target].bound {
            if let (Some(expected), Some(found)) = (expected, found)
                && expected != found
            {
                return Ok(Err(Miss::SignatureMismatch {
                    function: self.planner.target.clone(),
                    expected: expected.clone(),
                    found: found.clone(),
                }));
            }
            return Ok(Ok(Found::Bound(module)));
        }
        loop {
            for node in 0..self.nodes.len() {
                let n = &mut self.nodes[node];
                if n.entry.is_some() {
                    n.alive = true;
                    n.rejection = None;
                }
            }
            self.viability();
            match self.choose(target, expected) {
                Choice::Done(found) => return Ok(Ok(found)),
                Choice::Miss(miss) => return Ok(Err(miss)),
                Choice::Exclude(node, miss) => {
                    let key = (self.nodes[node].func, self.nodes[node].module);
                    self.excluded.insert(key, miss);
                }
            }
        }
    }

    /// The viable candidates of `func` with `signature`, in the order of preference
    /// given what is chosen so far.
    fn ranked(
        &mut self,
        func: usize,
        signature: Option<&FuncSig>,
        planned: &BTreeSet<ModuleId>,
    ) -> Vec<usize> {
        let mut ranked: Vec<((u8, u64, ModuleId), usize)> = Vec::new();
        for &node in &self.funcs[func].nodes {
            self.steps += 1;
            let n = &self.nodes[node];
            let Some(entry) = n.entry.filter(|_| n.alive) else {
                continue;
            };
            if signature.is_some_and(|s| *s != entry.signature) {
                continue;
            }
            let (mut rank, at, module) = self.preference(node);
            if rank == 2 && planned.contains(&module) {
                rank = 1;
            }
            ranked.push(((rank, at, module), node));
        }
        ranked.sort();
        ranked.into_iter().map(|(_, node)| node).collect()
    }

    /// The first of `candidates` whose mutable globals agree with the values already
    /// chosen in this plan, or the miss of the first that disagrees.
    fn first_agreeing(
        &mut self,
        candidates: &[usize],
        values: &BTreeMap<&'a str, (Value, &'a str)>,
    ) -> Result<usize, Miss> {
        let mut first_miss = None;
        'candidates: for &node in candidates {
            let n = &self.nodes[node];
            let (manifest, entry) = (n.manifest.expect("viable"), n.entry.expect("viable"));
            for global in &entry.globals {
                self.steps += 1;
                let Some(def) = manifest.global(global).filter(|d| d.mutable) else {
                    continue;
                };
                if let Some(Ok(value)) = self.known_global(def)
                    && let Some((other, user)) = values.get(global.as_str())
                    && *other != value
                {
                    first_miss.get_or_insert(Miss::StaleGlobal {
                        function: entry.name.clone(),
                        global: global.clone(),
                        reason: format!(
                            "it defines {value}, but `{user}`, also in this plan, was compiled against {other}"
                        ),
                    });
                    continue 'candidates;
                }
            }
            return Ok(node);
        }
        Err(first_miss.expect("called with at least one viable candidate"))
    }

    /// Binds `node`'s func_name to it and schedules its calls.
    fn take(
        &mut self,
        node: usize,
        chosen: &mut BTreeMap<usize, usize>,
        planned: &mut BTreeSet<ModuleId>,
        values: &mut BTreeMap<&'a str, (Value, &'a str)>,
        stack: &mut Vec<(usize, usize)>,
    ) {
        let n = &self.nodes[node];
        chosen.insert(n.func, node);
        if !self.linkage.is_loaded(&n.module) {
            planned.insert(n.module);
        }
        let (manifest, entry) = (n.manifest.expect("viable"), n.entry.expect("viable"));
        for global in &entry.globals {
            self.steps += 1;
            if let Some(def) = manifest.global(global).filter(|d| d.mutable)
                && let Some(Ok(value)) = self.known_global(def)
            {
                values
                    .entry(global.as_str())
                    .or_insert((value, entry.name.as_str()));
            }
        }
        stack.push((node, 0));
    }

    /// Pass 3: binds the closure, depth first from the target.
    fn choose(&mut self, target: usize, expected: Option<&FuncSig>) -> Choice {
        let mut chosen: BTreeMap<usize, usize> = BTreeMap::new();
        let mut planned: BTreeSet<ModuleId> = BTreeSet::new();
        let mut values: BTreeMap<&'a str, (Value, &'a str)> = BTreeMap::new();
        let candidates = self.ranked(target, expected, &planned);
        if candidates.is_empty() {
            return Choice::Miss(self.miss_of(target, expected));
        }
        let first = match self.first_agreeing(&candidates, &values) {
            Ok(node) => node,
            Err(miss) => return Choice::Miss(miss),
        };
        // (candidate, index of its next call)
        let mut stack: Vec<(usize, usize)> = Vec::new();
        self.take(first, &mut chosen, &mut planned, &mut values, &mut stack);
        while let Some(top) = stack.last_mut() {
            self.steps += 1;
            let (caller, index) = *top;
            top.1 += 1;
            let entry = self.nodes[caller].entry.expect("viable");
            let Some(callee) = entry.calls.get(index) else {
                stack.pop();
                continue;
            };
            let callee_id = self.func_ids[callee.as_str()];
            if self.funcs[callee_id].bound.is_some() {
                continue;
            }
            let manifest = self.nodes[caller].manifest.expect("viable");
            let wanted = self
                .import_sig(manifest, callee)
                .expect("checked manifests");
            if let Some(&node) = chosen.get(&callee_id) {
                let found = &self.nodes[node].entry.expect("viable").signature;
                if found != wanted {
                    return Choice::Exclude(
                        caller,
                        Miss::SignatureMismatch {
                            function: callee.clone(),
                            expected: wanted.clone(),
                            found: found.clone(),
                        },
                    );
                }
                continue;
            }
            let candidates = self.ranked(callee_id, Some(wanted), &planned);
            match self.first_agreeing(&candidates, &values) {
                Ok(node) => self.take(node, &mut chosen, &mut planned, &mut values, &mut stack),
                Err(miss) => return Choice::Exclude(caller, miss),
            }
        }

        let mut pending = BTreeMap::new();
        for &node in chosen.values() {
            let n = &self.nodes[node];
            let (manifest, entry) = (n.manifest.expect("viable"), n.entry.expect("viable"));
            for global in &entry.globals {
                self.steps += 1;
                let def = manifest.global(global).expect("checked manifests");
                if self.known_global(def).is_none() {
                    pending
                        .entry(GlobalKey::of(def))
                        .or_insert_with(|| GlobalCheck {
                            module: n.module,
                            global: def.clone(),
                        });
                }
            }
        }
        Choice::Done(Found::Chosen {
            target: self.nodes[first].module,
            chosen: chosen
                .values()
                .map(|&node| {
                    let n = &self.nodes[node];
                    (self.funcs[n.func].name.into(), n.module)
                })
                .collect(),
            pending,
        })
    }
}

enum Choice {
    Done(Found),
    Miss(Miss),
    /// Exclude this candidate (a caller whose callee cannot be bound consistently) and
    /// search again.
    Exclude(usize, Miss),
}
