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

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use alloc::{format, vec};
use core::ops::Range;

use crate::{FuncSig, Function, GlobalDef, Linkage, Manifest, ModuleId, Name, Value};

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
    /// Its module's index in [`Search::slots`].
    slot: usize,
    committed_at: u64,
    manifest: Option<&'a Arc<Manifest>>,
    entry: Option<&'a Function>,
    /// Its entry's calls, in [`Search::edges`].
    edges: Range<usize>,
    /// The rank of its entry's signature in [`Search::sigs`].
    sig: usize,
    alive: bool,
    rejection: Option<Rejection>,
}

/// One call of a candidate's entry, resolved once per search.
struct Edge<'a> {
    /// The callee's index in [`Search::funcs`].
    callee: usize,
    /// The callee's func_name as the entry spells it.
    name: &'a Name,
    /// The signature the caller's module imports it with, and its rank in
    /// [`Search::sigs`]; `None` if the module does not import it.
    wanted: Option<(&'a FuncSig, usize)>,
}

/// One module some candidate lives in.
struct Slot<'a> {
    manifest: Result<&'a Arc<Manifest>, &'a str>,
    loaded: bool,
    /// Its `linkcache:fn` imports by func_name (the last of a repeated name wins),
    /// sorted; built when a candidate of this module first needs it.
    imports: Option<Vec<(&'a str, &'a FuncSig)>>,
    /// Where its globals start in [`Search::known`].
    known_at: usize,
}

/// A global definition's decision as far as this search knows it, looked up once.
#[derive(Clone)]
enum Known {
    /// Not looked up yet.
    Unasked,
    /// Nobody decided on it yet: it must be validated before a plan uses it.
    Undecided,
    Value(Value),
    Stale(String),
}

/// One func_name of the closure.
struct Func<'a> {
    name: &'a str,
    /// Bound in the process already: to this module, with this signature.
    bound: Option<(ModuleId, Option<&'a FuncSig>)>,
    /// Whether the store listed no candidate at all.
    unknown: bool,
    /// Its candidates in [`Search::nodes`] (explore adds them in one go).
    nodes: Range<usize>,
}

/// The outcome of a search that needs nothing more.
pub(super) enum Found {
    /// The target is bound in the process already, to this module.
    Bound(ModuleId),
    /// New bindings, and the target's module.
    Chosen {
        /// The chosen candidates, one per func_name, in the order of the func indices.
        chosen: Vec<usize>,
        target: ModuleId,
        /// Global definitions the chosen functions use and nobody validated yet, in the
        /// order of their [`GlobalKey`]s, each once.
        pending: Vec<GlobalCheck>,
    },
}

pub(super) struct Search<'a> {
    pub(super) linkage: &'a Linkage,
    pub(super) planner: &'a Planner,
    pub(super) steps: u64,
    funcs: Vec<Func<'a>>,
    /// By (hash of the func_name, func_name): the hash decides most comparisons
    /// without comparing strings.
    func_ids: BTreeMap<(u64, &'a str), usize>,
    nodes: Vec<Node<'a>>,
    edges: Vec<Edge<'a>>,
    slots: Vec<Slot<'a>>,
    slot_ids: BTreeMap<ModuleId, usize>,
    /// Every signature of an entry or a `linkcache:fn` import in the closure, sorted and
    /// deduplicated: pass 2 keys its counters by rank, in the order of the signatures.
    sigs: Vec<&'a FuncSig>,
    /// Per slot, per global definition of its manifest: the decision (see
    /// [`Slot::known_at`]).
    known: Vec<Known>,
    /// Whether the process or this planner decided on any global yet: if not, every
    /// definition is undecided and none needs hashing.
    any_global_decided: bool,
    /// Candidates excluded by an earlier round of the choice: (func_name, module).
    excluded: BTreeMap<(usize, ModuleId), Miss>,
}

impl<'a> Search<'a> {
    pub(super) fn new(planner: &'a Planner, linkage: &'a Linkage) -> Search<'a> {
        // Usually the closure is about what the planner was answered.
        let answered = planner.candidates.len() + 1;
        Search {
            linkage,
            planner,
            steps: 0,
            funcs: Vec::with_capacity(answered),
            func_ids: BTreeMap::new(),
            nodes: Vec::with_capacity(answered + planner.manifests.len()),
            edges: Vec::with_capacity(2 * answered),
            slots: Vec::new(),
            slot_ids: BTreeMap::new(),
            sigs: Vec::new(),
            known: Vec::new(),
            any_global_decided: linkage.has_global_outcomes() || !planner.globals.is_empty(),
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

    /// The slot of `module`, made on first sight; `None` while its manifest is not
    /// answered.
    fn slot(&mut self, module: ModuleId) -> Option<usize> {
        if let Some(&slot) = self.slot_ids.get(&module) {
            return Some(slot);
        }
        let manifest = self.manifest(&module)?;
        let slot = self.slots.len();
        let known_at = self.known.len();
        if let Ok(manifest) = manifest {
            self.known
                .extend(manifest.globals.iter().map(|_| Known::Unasked));
        }
        self.slots.push(Slot {
            manifest,
            loaded: self.linkage.is_loaded(&module),
            imports: None,
            known_at,
        });
        self.slot_ids.insert(module, slot);
        Some(slot)
    }

    /// The decision on the global definition `index` of `slot`'s manifest, if known
    /// (without asking for it), computed once per search: its value, or why it is stale
    /// in this process ([`Search::stale_reason`]).
    pub(super) fn known_global(&mut self, slot: usize, index: usize) -> Option<Result<Value, ()>> {
        let at = self.slots[slot].known_at + index;
        if let Known::Unasked = self.known[at] {
            let Ok(manifest) = self.slots[slot].manifest else {
                unreachable!("globals are asked of intact manifests")
            };
            self.known[at] = self.decide(&manifest.globals[index]);
        }
        match &self.known[at] {
            Known::Unasked | Known::Undecided => None,
            Known::Value(value) => Some(Ok(*value)),
            Known::Stale(_) => Some(Err(())),
        }
    }

    /// Why the global definition `index` of `slot`'s manifest is stale, once
    /// [`Search::known_global`] said it is.
    fn stale_reason(&self, slot: usize, index: usize) -> &str {
        match &self.known[self.slots[slot].known_at + index] {
            Known::Stale(reason) => reason,
            _ => unreachable!("asked only of stale globals"),
        }
    }

    fn decide(&self, def: &GlobalDef) -> Known {
        if !self.any_global_decided {
            return Known::Undecided;
        }
        let key = GlobalKey::of(def);
        let Some(outcome) = self
            .linkage
            .global_outcome(&key)
            .or_else(|| self.planner.globals.get(&key))
        else {
            return Known::Undecided;
        };
        match outcome {
            Err(reason) => Known::Stale(reason.clone()),
            Ok(value) => {
                if def.mutable
                    && let Some(shared) = self.linkage.shared_global(&def.name)
                    && shared != *value
                {
                    Known::Stale(format!(
                        "it defines {value}, but this process already set the global to {shared}"
                    ))
                } else {
                    Known::Value(*value)
                }
            }
        }
    }

    /// The signature `slot`'s module imports `callee` with, if it does.
    fn import_sig(&mut self, slot: usize, callee: &str) -> Option<&'a FuncSig> {
        let Ok(manifest) = self.slots[slot].manifest else {
            return None;
        };
        let imports = self.slots[slot].imports.get_or_insert_with(|| {
            let mut by_name: Vec<(&'a str, &'a FuncSig)> = manifest.fn_imports().collect();
            // Stable, then the last of a repeated name wins (as collecting a map would).
            by_name.sort_by_key(|&(name, _)| name);
            let mut last_wins: Vec<(&'a str, &'a FuncSig)> = Vec::with_capacity(by_name.len());
            for (name, sig) in by_name {
                match last_wins.last_mut() {
                    Some(last) if last.0 == name => last.1 = sig,
                    _ => last_wins.push((name, sig)),
                }
            }
            last_wins
        });
        imports
            .binary_search_by(|(name, _)| (*name).cmp(callee))
            .ok()
            .map(|i| imports[i].1)
    }

    fn func_id(&mut self, name: &'a str, work: &mut Vec<usize>) -> usize {
        let key = (name_hash(name), name);
        if let Some(&id) = self.func_ids.get(&key) {
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
            nodes: 0..0,
        });
        self.func_ids.insert(key, id);
        work.push(id);
        id
    }

    /// The index of a func_name of the closure.
    pub(super) fn func_index(&self, name: &str) -> Option<usize> {
        self.func_ids.get(&(name_hash(name), name)).copied()
    }

    /// The module, slot, entry's signature and func_name of a chosen candidate.
    pub(super) fn node_module(&self, node: usize) -> (ModuleId, usize, &'a FuncSig, &'a str) {
        let n = &self.nodes[node];
        (
            n.module,
            n.slot,
            &n.entry.expect("chosen candidates have entries").signature,
            self.funcs[n.func].name,
        )
    }

    /// How many modules the candidates live in (slots are `0..slot_count`).
    pub(super) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The func index of a candidate.
    pub(super) fn func_of(&self, node: usize) -> usize {
        self.nodes[node].func
    }

    /// The manifest, entry and slot of a chosen candidate.
    pub(super) fn node_entry(&self, node: usize) -> (&'a Manifest, &'a Function, usize) {
        let n = &self.nodes[node];
        (
            n.manifest.expect("chosen candidates have manifests"),
            n.entry.expect("chosen candidates have entries"),
            n.slot,
        )
    }

    /// Pass 1: every candidate of every func_name the target may reach, with manifests.
    fn explore(&mut self) -> Result<(), Need> {
        let mut work = Vec::new();
        let target: &'a str = &self.planner.target;
        self.func_id(target, &mut work);
        let mut modules: Vec<(ModuleId, u64)> = Vec::new();
        while let Some(func) = work.pop() {
            self.steps += 1;
            if self.funcs[func].bound.is_some() {
                continue;
            }
            let name = self.funcs[func].name;
            let Some(listed) = self.planner.candidates.get(name) else {
                return Err(Need::Candidates(name.into()));
            };
            // Each module once, with its earliest commit, in module order.
            modules.clear();
            for candidate in listed {
                self.steps += 1;
                modules.push((candidate.module, candidate.committed_at));
            }
            modules.sort_unstable();
            modules.dedup_by(|later, earlier| later.0 == earlier.0);
            self.funcs[func].unknown = modules.is_empty();
            let first_node = self.nodes.len();
            for &(module, committed_at) in &modules {
                let Some(slot) = self.slot(module) else {
                    return Err(Need::Manifest(module));
                };
                let (manifest, entry, rejection) = match self.slots[slot].manifest {
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
                let first_edge = self.edges.len();
                if let Some(entry) = entry {
                    for callee in &entry.calls {
                        self.steps += 1;
                        let callee_id = self.func_id(callee, &mut work);
                        let wanted = self.import_sig(slot, callee).map(|sig| (sig, 0));
                        self.edges.push(Edge {
                            callee: callee_id,
                            name: callee,
                            wanted,
                        });
                    }
                }
                self.nodes.push(Node {
                    func,
                    module,
                    slot,
                    committed_at,
                    manifest,
                    entry,
                    edges: first_edge..self.edges.len(),
                    sig: 0,
                    alive: rejection.is_none(),
                    rejection,
                });
            }
            self.funcs[func].nodes = first_node..self.nodes.len();
        }
        self.rank_signatures();
        Ok(())
    }

    /// Ranks every signature of the closure, so that pass 2 counts by integers in the
    /// order of the signatures themselves.
    fn rank_signatures(&mut self) {
        // Closures mostly share one or two signatures: a signature equal to the one
        // before it is neither collected nor searched again.
        let mut sigs: Vec<&'a FuncSig> = Vec::new();
        let all = self
            .nodes
            .iter()
            .filter_map(|n| n.entry.map(|e| &e.signature))
            .chain(
                self.edges
                    .iter()
                    .filter_map(|e| e.wanted.map(|(sig, _)| sig)),
            );
        for sig in all {
            if sigs.last() != Some(&sig) {
                sigs.push(sig);
            }
        }
        sigs.sort_unstable();
        sigs.dedup();
        let mut last: Option<(&'a FuncSig, usize)> = None;
        let mut rank = |sig: &'a FuncSig| match last {
            Some((before, rank)) if before == sig => rank,
            _ => {
                let rank = sigs
                    .binary_search(&sig)
                    .expect("every signature was collected");
                last = Some((sig, rank));
                rank
            }
        };
        for node in &mut self.nodes {
            if let Some(entry) = node.entry {
                node.sig = rank(&entry.signature);
            }
        }
        for edge in &mut self.edges {
            if let Some((sig, r)) = &mut edge.wanted {
                *r = rank(sig);
            }
        }
        self.sigs = sigs;
    }

    /// Why `node`'s entry is unusable on its own, if it is (globals, exclusion, a
    /// callee bound in the process with another signature).
    fn local_rejection(&mut self, node: usize) -> Option<Miss> {
        let (func, module) = (self.nodes[node].func, self.nodes[node].module);
        if !self.excluded.is_empty()
            && let Some(miss) = self.excluded.get(&(func, module))
        {
            return Some(miss.clone());
        }
        let manifest = self.nodes[node].manifest?;
        let entry = self.nodes[node].entry?;
        let slot = self.nodes[node].slot;
        let name = self.funcs[func].name;
        let loaded = self.slots[slot].loaded;
        for global in &entry.globals {
            self.steps += 1;
            let index = global_index(manifest, global)?;
            let def = &manifest.globals[index];
            let stale = |reason: String| Miss::StaleGlobal {
                function: name.into(),
                global: String::from(global),
                reason,
            };
            if loaded && !def.mutable && self.linkage.has_placeholder(&module, global) {
                return Some(stale(format!(
                    "module {} was instantiated in this process before the global was validated, with a placeholder value (a new process can use it)",
                    module.short()
                )));
            }
            if let Some(Err(())) = self.known_global(slot, index) {
                return Some(stale(self.stale_reason(slot, index).into()));
            }
        }
        for edge in &self.edges[self.nodes[node].edges.clone()] {
            self.steps += 1;
            if let Some((_, found)) = self.funcs[edge.callee].bound {
                let (wanted, _) = edge.wanted?;
                if let Some(found) = found
                    && found != wanted
                {
                    return Some(Miss::SignatureMismatch {
                        function: String::from(edge.name),
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
        let rank = if self.slots[n.slot].loaded { 0 } else { 2 };
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
        let mut order: Vec<usize> = self.funcs[func].nodes.clone().collect();
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
    ///
    /// Counters and dependents are keyed by (func, signature rank), which orders like
    /// (func, signature): the order in which empty keys are processed, and so which miss
    /// explains a removal, is that of the signatures.
    fn viability(&mut self) {
        // (func, signature) -> alive candidates with that signature, sorted by key.
        let mut support: Vec<((usize, usize), usize)> = Vec::with_capacity(self.nodes.len());
        // (func, signature, caller): the candidates calling func with that signature.
        let mut calls: Vec<((usize, usize), usize)> = Vec::with_capacity(self.edges.len());
        for node in 0..self.nodes.len() {
            self.steps += 1;
            if self.nodes[node].alive
                && let Some(miss) = self.local_rejection(node)
            {
                self.nodes[node].alive = false;
                self.nodes[node].rejection = Some(Rejection::Miss(miss));
            }
            let n = &self.nodes[node];
            if n.entry.is_none() {
                continue;
            }
            if n.alive {
                support.push(((n.func, n.sig), 1));
            }
            for edge in &self.edges[n.edges.clone()] {
                self.steps += 1;
                if self.funcs[edge.callee].bound.is_some() {
                    continue;
                }
                if let Some((_, sig)) = edge.wanted {
                    calls.push(((edge.callee, sig), node));
                }
            }
        }
        support.sort_unstable();
        support.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                earlier.1 += later.1;
            }
            same
        });
        // By key, then caller: each key's callers stay in node order.
        calls.sort_unstable();
        // Per key: its callers in `calls`, and whether they were processed.
        let mut dependents: Vec<((usize, usize), Range<usize>, bool)> = Vec::new();
        for (i, &(key, _)) in calls.iter().enumerate() {
            match dependents.last_mut() {
                Some((last, range, _)) if *last == key => range.end = i + 1,
                _ => dependents.push((key, i..i + 1, false)),
            }
        }
        let supported = |support: &[((usize, usize), usize)], key| {
            support.binary_search_by_key(&key, |&(k, _)| k)
        };
        let mut empty: Vec<(usize, usize)> = dependents
            .iter()
            .map(|&(key, _, _)| key)
            .filter(|&key| supported(&support, key).is_err())
            .collect();
        while let Some(key) = empty.pop() {
            self.steps += 1;
            let group = dependents
                .binary_search_by_key(&key, |&(k, _, _)| k)
                .expect("empty keys have dependents");
            if dependents[group].2 {
                continue;
            }
            dependents[group].2 = true;
            let (func, sig) = key;
            let miss = self.miss_of(func, Some(self.sigs[sig]));
            let callee = self.funcs[func].name;
            for &(_, caller) in &calls[dependents[group].1.clone()] {
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
                let key = (n.func, n.sig);
                let at = supported(&support, key).expect("alive nodes are counted");
                // Left at zero (removing would shift the vector: quadratic).
                support[at].1 -= 1;
                if support[at].1 == 0
                    && let Ok(group) = dependents.binary_search_by_key(&key, |&(k, _, _)| k)
                    && !dependents[group].2
                {
                    empty.push(key);
                }
            }
        }
    }

    /// Runs the passes until a choice holds. `Err(need)` when something must be asked
    /// first; `Ok(Err(miss))` when the target cannot be loaded.
    pub(super) fn run(&mut self) -> Result<Result<Found, Miss>, Need> {
        self.explore()?;
        let target = self
            .func_index(&self.planner.target)
            .expect("explored from the target");
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
    /// given what is chosen so far (`planned`: per slot, whether this plan loads it).
    fn ranked(
        &mut self,
        func: usize,
        signature: Option<&FuncSig>,
        planned: &[bool],
        ranked: &mut Vec<((u8, u64, ModuleId), usize)>,
    ) {
        ranked.clear();
        for node in self.funcs[func].nodes.clone() {
            self.steps += 1;
            let n = &self.nodes[node];
            let Some(entry) = n.entry.filter(|_| n.alive) else {
                continue;
            };
            if signature.is_some_and(|s| *s != entry.signature) {
                continue;
            }
            let (mut rank, at, module) = self.preference(node);
            if rank == 2 && planned[n.slot] {
                rank = 1;
            }
            ranked.push(((rank, at, module), node));
        }
        ranked.sort_unstable();
    }

    /// The first of `candidates` whose mutable globals agree with the values already
    /// chosen in this plan, or the miss of the first that disagrees.
    fn first_agreeing(
        &mut self,
        candidates: &[((u8, u64, ModuleId), usize)],
        values: &BTreeMap<&'a str, (Value, &'a str)>,
    ) -> Result<usize, Miss> {
        let mut first_miss = None;
        'candidates: for &(_, node) in candidates {
            let n = &self.nodes[node];
            let (manifest, entry, slot) = (
                n.manifest.expect("viable"),
                n.entry.expect("viable"),
                n.slot,
            );
            for global in &entry.globals {
                self.steps += 1;
                if values.is_empty() {
                    continue;
                }
                let Some(index) =
                    global_index(manifest, global).filter(|&i| manifest.globals[i].mutable)
                else {
                    continue;
                };
                if let Some(Ok(value)) = self.known_global(slot, index)
                    && let Some((other, user)) = values.get(global.as_str())
                    && *other != value
                {
                    first_miss.get_or_insert(Miss::StaleGlobal {
                        function: String::from(&entry.name),
                        global: String::from(global),
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
        chosen: &mut [Option<usize>],
        planned: &mut [bool],
        values: &mut BTreeMap<&'a str, (Value, &'a str)>,
        stack: &mut Vec<(usize, usize)>,
    ) {
        let n = &self.nodes[node];
        chosen[n.func] = Some(node);
        let slot = n.slot;
        if !self.slots[slot].loaded {
            planned[slot] = true;
        }
        let (manifest, entry) = (n.manifest.expect("viable"), n.entry.expect("viable"));
        for global in &entry.globals {
            self.steps += 1;
            if let Some(index) =
                global_index(manifest, global).filter(|&i| manifest.globals[i].mutable)
                && let Some(Ok(value)) = self.known_global(slot, index)
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
        let mut chosen: Vec<Option<usize>> = vec![None; self.funcs.len()];
        let mut planned: Vec<bool> = vec![false; self.slots.len()];
        let mut values: BTreeMap<&'a str, (Value, &'a str)> = BTreeMap::new();
        let mut candidates = Vec::new();
        self.ranked(target, expected, &planned, &mut candidates);
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
            let calls = self.nodes[caller].edges.clone();
            if index >= calls.len() {
                stack.pop();
                continue;
            }
            let edge = &self.edges[calls.start + index];
            let (callee_id, callee) = (edge.callee, edge.name);
            if self.funcs[callee_id].bound.is_some() {
                continue;
            }
            let (wanted, _) = edge.wanted.expect("checked manifests");
            if let Some(node) = chosen[callee_id] {
                let found = &self.nodes[node].entry.expect("viable").signature;
                if found != wanted {
                    return Choice::Exclude(
                        caller,
                        Miss::SignatureMismatch {
                            function: String::from(callee),
                            expected: wanted.clone(),
                            found: found.clone(),
                        },
                    );
                }
                continue;
            }
            self.ranked(callee_id, Some(wanted), &planned, &mut candidates);
            match self.first_agreeing(&candidates, &values) {
                Ok(node) => self.take(node, &mut chosen, &mut planned, &mut values, &mut stack),
                Err(miss) => return Choice::Exclude(caller, miss),
            }
        }

        // One per func_name, in the order of the func indices.
        let chosen: Vec<usize> = chosen.into_iter().flatten().collect();
        // Undecided definitions by (name, hash of the definition) as a [`GlobalKey`]
        // orders them, then by first use: the first module (in func order) to define a
        // key is the one asked.
        let mut undecided: Vec<(&'a str, [u8; 32], usize, &'a GlobalDef, ModuleId)> = Vec::new();
        for &node in &chosen {
            let n = &self.nodes[node];
            let (manifest, entry, slot, module) = (
                n.manifest.expect("viable"),
                n.entry.expect("viable"),
                n.slot,
                n.module,
            );
            for global in &entry.globals {
                self.steps += 1;
                let index = global_index(manifest, global).expect("checked manifests");
                if self.known_global(slot, index).is_none() {
                    let def = &manifest.globals[index];
                    let hash = *blake3::hash(&def.definition).as_bytes();
                    undecided.push((&def.name, hash, undecided.len(), def, module));
                }
            }
        }
        undecided.sort_unstable_by_key(|&(name, hash, first_use, _, _)| (name, hash, first_use));
        undecided.dedup_by(|later, earlier| (later.0, later.1) == (earlier.0, earlier.1));
        let pending = undecided
            .into_iter()
            .map(|(_, _, _, def, module)| GlobalCheck {
                module,
                global: def.clone(),
            })
            .collect();
        Choice::Done(Found::Chosen {
            target: self.nodes[first].module,
            chosen,
            pending,
        })
    }
}

/// FNV-1a of a func_name: a cheap first comparison for [`Search::func_ids`].
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The index of the global `name` in `manifest.globals` (see [`Manifest::global`]).
pub(super) fn global_index(manifest: &Manifest, name: &str) -> Option<usize> {
    manifest
        .globals
        .binary_search_by(|g| g.name.as_str().cmp(name))
        .ok()
}

enum Choice {
    Done(Found),
    Miss(Miss),
    /// Exclude this candidate (a caller whose callee cannot be bound consistently) and
    /// search again.
    Exclude(usize, Miss),
}
