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
//!
//! # Where the code is
//! - `mod.rs`: the search's data (candidates, calls, modules, func_names), what
//!   `build.rs` reads of it, and [`Search::run`], which runs the passes until a choice
//!   holds
//! - `explore.rs`: pass 1, the candidate closure, and the ranking of its signatures
//! - `viability.rs`: pass 2, and the miss that explains a removed candidate
//! - `choice.rs`: pass 3, and the order of preference among duplicates
//! - `globals.rs`: the decision on each global definition, looked up once per search

mod choice;
mod explore;
mod globals;
mod viability;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;

use crate::{FuncSig, Function, Linkage, Manifest, ModuleId, Name, Value};

use self::choice::Choice;
use super::{GlobalCheck, Miss, Need, Planner};

/// Why a candidate is not usable.
#[derive(Clone, Debug)]
enum Rejection {
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
        ///
        /// [`GlobalKey`]: super::GlobalKey
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
