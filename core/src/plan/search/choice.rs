//! Pass 3 of the search, **choice**: binds every func_name the target reaches to its
//! first viable candidate in the order of preference, depth first, or says which
//! candidate to exclude before the passes run again.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use alloc::{format, vec};

use super::{Found, Search, global_index};
use crate::plan::{GlobalCheck, Miss};
use crate::{FuncSig, GlobalDef, ModuleId, Value};

impl<'a> Search<'a> {
    /// The order in which duplicates are preferred, before any choice is made.
    pub(super) fn preference(&self, node: usize) -> (u8, u64, ModuleId) {
        let n = &self.nodes[node];
        let rank = if self.slots[n.slot].loaded { 0 } else { 2 };
        (rank, n.committed_at, n.module)
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
    pub(super) fn choose(&mut self, target: usize, expected: Option<&FuncSig>) -> Choice {
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

pub(super) enum Choice {
    Done(Found),
    Miss(Miss),
    /// Exclude this candidate (a caller whose callee cannot be bound consistently) and
    /// search again.
    Exclude(usize, Miss),
}
