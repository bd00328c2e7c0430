//! Pass 2 of the search, **viability**: the greatest fixpoint that removes every
//! candidate that cannot be completed, each with the miss that explains it.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use super::{Rejection, Search, global_index};
use crate::FuncSig;
use crate::plan::Miss;

impl<'a> Search<'a> {
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

    /// The miss of `func` when no candidate with `signature` (any, if `None`) is viable,
    /// as the candidates' own rejections explain it: the first one that is a miss,
    /// else every broken module.
    pub(super) fn miss_of(&mut self, func: usize, signature: Option<&FuncSig>) -> Miss {
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
    pub(super) fn viability(&mut self) {
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
}
