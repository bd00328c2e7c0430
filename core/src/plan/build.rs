//! Turns the search's choice into a [`LoadPlan`]: instantiation order, cycles, one
//! binding per import, mutable globals to set.
//!
//! The chosen modules that are not loaded yet are ordered by petgraph's Kosaraju SCC
//! (iterative, so a 100,000-module chain does not overflow the stack) over "imports
//! from" edges, which lists every module after the modules it imports from; modules of
//! one strongly connected group import each other and get trampolines.
//!
//! Only the globals that the chosen functions use are ever sent for validation (the
//! search asks for them); an immutable global of a planned module that no chosen
//! function uses is bound to its value when it is known already, else to a
//! placeholder, and the process remembers the placeholder (see
//! [`Linkage::has_placeholder`]).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use petgraph::graphmap::DiGraphMap;

use super::search::{Search, global_index};
use super::{GlobalBinding, ImportBinding, LoadPlan, PlannedModule};
use crate::manifest::{FN_NAMESPACE, GLOBAL_NAMESPACE};
use crate::{FuncSig, ImportKind, Manifest, ModuleId, Name};

#[cfg(doc)]
use crate::Linkage;

/// Builds the plan for `target`, bound to `target_module`, from the chosen candidates
/// (one per func_name, in any order; none when the target is bound already).
pub(super) fn build<'a>(
    search: &mut Search<'a>,
    target: &str,
    target_module: ModuleId,
    chosen: &[usize],
) -> LoadPlan {
    let linkage = search.linkage;
    let mut chosen = chosen.to_vec();
    chosen.sort_unstable_by_key(|&node| search.node_module(node).3);
    // By func index: the chosen module, its slot and its entry's signature.
    let mut chosen_by_func: BTreeMap<usize, (ModuleId, usize, &'a FuncSig)> = BTreeMap::new();
    // The planned modules and their slots in the search.
    let mut planned: BTreeMap<ModuleId, usize> = BTreeMap::new();
    let mut bindings = Vec::with_capacity(chosen.len());
    for &node in &chosen {
        let (module, slot, signature, name) = search.node_module(node);
        chosen_by_func.insert(search.func_of(node), (module, slot, signature));
        if !linkage.is_loaded(&module) {
            planned.insert(module, slot);
        }
        bindings.push((Name::from(name), module));
    }
    // The planned modules in module order; the graph's nodes are positions in it, so
    // that sorting positions sorts modules.
    let manifests: Vec<(ModuleId, Arc<Manifest>, usize)> = planned
        .iter()
        .map(|(id, &slot)| {
            let manifest = search
                .manifest(id)
                .and_then(Result::ok)
                .expect("chosen modules have manifests");
            (*id, Arc::clone(manifest), slot)
        })
        .collect();
    // By slot: the position of a planned module.
    let mut position_of_slot = vec![None; search.slot_count()];
    for (position, &(_, _, slot)) in manifests.iter().enumerate() {
        position_of_slot[slot] = Some(position);
    }
    // The module `func` is bound to (by this plan, or in the process), its position if
    // this plan loads it (a module bound in the process is loaded), and its signature
    // there.
    let bound_to = |search: &Search<'a>,
                    func: &str|
     -> Option<(ModuleId, Option<usize>, Option<&'a FuncSig>)> {
        if let Some(&(module, slot, signature)) = search
            .func_index(func)
            .and_then(|id| chosen_by_func.get(&id))
        {
            return Some((module, position_of_slot[slot], Some(signature)));
        }
        let module = linkage.binding(func)?;
        Some((module, None, signature_of(search, func, &module)))
    };
    // Order: Kosaraju's SCCs come out with every group after the groups it has edges
    // to, and an edge here means "imports from", so dependencies come first.
    let mut graph: DiGraphMap<usize, ()> = DiGraphMap::new();
    for (position, (_, manifest, _)) in manifests.iter().enumerate() {
        graph.add_node(position);
        for (func, _) in manifest.fn_imports() {
            search.steps += 1;
            if let Some((_, Some(dep), _)) = bound_to(search, func) {
                graph.add_edge(position, dep, ());
            }
        }
    }
    let mut groups = petgraph::algo::kosaraju_scc(&graph);
    let mut group_of = vec![0; manifests.len()];
    let mut cycles = Vec::new();
    for (index, group) in groups.iter_mut().enumerate() {
        group.sort_unstable();
        for &position in group.iter() {
            group_of[position] = index;
        }
        if group.len() > 1 || graph.contains_edge(group[0], group[0]) {
            cycles.push(group.iter().map(|&p| manifests[p].0).collect());
        }
    }

    let mut modules = Vec::with_capacity(planned.len());
    for position in groups.into_iter().flatten() {
        let (id, manifest, slot) = &manifests[position];
        let id = *id;
        let mut imports = Vec::with_capacity(manifest.imports.len());
        for import in &manifest.imports {
            search.steps += 1;
            let binding = match (&import.kind, import.namespace.as_str()) {
                (ImportKind::Func(signature), FN_NAMESPACE) => {
                    let func = import.name.clone();
                    match bound_to(search, &func) {
                        Some((dep, dep_position, found)) if found == Some(signature) => {
                            if dep_position.is_some_and(|d| group_of[d] == group_of[position]) {
                                ImportBinding::Trampoline { func }
                            } else {
                                ImportBinding::Export { module: dep, func }
                            }
                        }
                        _ => ImportBinding::Lazy {
                            func,
                            signature: signature.clone(),
                        },
                    }
                }
                (ImportKind::Global { ty, mutable }, GLOBAL_NAMESPACE) => {
                    let binding = if *mutable {
                        GlobalBinding::Shared(*ty)
                    } else {
                        let index = global_index(manifest, &import.name).expect("checked manifest");
                        match search.known_global(*slot, index) {
                            Some(Ok(value)) => GlobalBinding::Value(value),
                            Some(Err(_)) | None => GlobalBinding::Placeholder(*ty),
                        }
                    };
                    ImportBinding::Global {
                        name: import.name.clone(),
                        binding,
                    }
                }
                _ => ImportBinding::Embedder,
            };
            imports.push(binding);
        }
        modules.push(PlannedModule {
            module: id,
            manifest: Arc::clone(manifest),
            imports,
        });
    }

    let mut set_globals = BTreeMap::new();
    for &node in &chosen {
        let (manifest, entry, slot) = search.node_entry(node);
        for global in &entry.globals {
            search.steps += 1;
            let index = global_index(manifest, global).expect("checked manifest");
            let def = &manifest.globals[index];
            // A mutable global is set once per process, when the first function using
            // it is bound; later bindings must not reset what the code has changed.
            if def.mutable
                && linkage.shared_global(global).is_none()
                && let Some(Ok(value)) = search.known_global(slot, index)
            {
                set_globals.insert(global.clone(), (def.ty, value));
            }
        }
    }

    let signature = signature_of(search, target, &target_module)
        .expect("the target's module defines it")
        .clone();
    LoadPlan {
        target: target.into(),
        module: target_module,
        signature,
        modules,
        cycles,
        bindings,
        set_globals: set_globals
            .into_iter()
            .map(|(name, (ty, value))| (name, ty, value))
            .collect(),
        generation: linkage.generation(),
    }
}

/// The signature of `func` in `module`'s manifest, if it defines it.
fn signature_of<'a>(search: &Search<'a>, func: &str, module: &ModuleId) -> Option<&'a FuncSig> {
    let manifest = search.manifest(module)?.ok()?;
    Some(&manifest.function(func)?.signature)
}
