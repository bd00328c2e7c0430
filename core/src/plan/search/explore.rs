//! Pass 1 of the search, **explore**: the candidate closure of the target, found with a
//! work list, each module's slot and `linkcache:fn` imports made on first sight, then
//! every signature of the closure ranked for pass 2.

use alloc::format;
use alloc::vec::Vec;

use super::{Edge, Func, Known, Node, Rejection, Search, Slot, name_hash};
use crate::plan::Need;
use crate::{FuncSig, ModuleId};

impl<'a> Search<'a> {
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

    /// Pass 1: every candidate of every func_name the target may reach, with manifests.
    pub(super) fn explore(&mut self) -> Result<(), Need> {
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
}
