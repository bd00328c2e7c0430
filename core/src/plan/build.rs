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

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use petgraph::graphmap::DiGraphMap;

use super::search::Search;
use super::{GlobalBinding, ImportBinding, LoadPlan, PlannedModule};
use crate::manifest::{FN_NAMESPACE, GLOBAL_NAMESPACE};
use crate::{ImportKind, Manifest, ModuleId};

#[cfg(doc)]
use crate::Linkage;

pub(super) fn build(
    search: &mut Search<'_>,
    target: &str,
    target_module: ModuleId,
    chosen: BTreeMap<String, ModuleId>,
) -> LoadPlan {
    let linkage = search.linkage;
    let planned: BTreeSet<ModuleId> = chosen
        .values()
        .filter(|m| !linkage.is_loaded(m))
        .copied()
        .collect();
    let manifests: BTreeMap<ModuleId, Arc<Manifest>> = planned
        .iter()
        .map(|id| {
            let manifest = search
                .manifest(id)
                .and_then(Result::ok)
                .expect("chosen modules have manifests");
            (*id, Arc::clone(manifest))
        })
        .collect();
    let bound_to = |func: &str| -> Option<ModuleId> {
        chosen.get(func).copied().or_else(|| linkage.binding(func))
    };
    let signature_of = |search: &Search<'_>, func: &str, module: &ModuleId| {
        let manifest = search.manifest(module)?.ok()?;
        Some(manifest.function(func)?.signature.clone())
    };

    // Order: Kosaraju's SCCs come out with every group after the groups it has edges
    // to, and an edge here means "imports from", so dependencies come first.
    let mut graph: DiGraphMap<ModuleId, ()> = DiGraphMap::new();
    for (id, manifest) in &manifests {
        graph.add_node(*id);
        for (func, _) in manifest.fn_imports() {
            search.steps += 1;
            if let Some(dep) = bound_to(func)
                && planned.contains(&dep)
            {
                graph.add_edge(*id, dep, ());
            }
        }
    }
    let mut groups = petgraph::algo::kosaraju_scc(&graph);
    let mut group_of = BTreeMap::new();
    let mut cycles = Vec::new();
    for (index, group) in groups.iter_mut().enumerate() {
        group.sort();
        for id in group.iter() {
            group_of.insert(*id, index);
        }
        if group.len() > 1 || graph.contains_edge(group[0], group[0]) {
            cycles.push(group.clone());
        }
    }

    let mut modules = Vec::with_capacity(planned.len());
    for id in groups.into_iter().flatten() {
        let manifest = &manifests[&id];
        let mut imports = Vec::with_capacity(manifest.imports.len());
        for import in &manifest.imports {
            search.steps += 1;
            let binding = match (&import.kind, import.namespace.as_str()) {
                (ImportKind::Func(signature), FN_NAMESPACE) => {
                    let func = import.name.clone();
                    match bound_to(&func) {
                        Some(dep)
                            if signature_of(search, &func, &dep).as_ref() == Some(signature) =>
                        {
                            if planned.contains(&dep) && group_of[&dep] == group_of[&id] {
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
                    let def = manifest.global(&import.name).expect("checked manifest");
                    let binding = if *mutable {
                        GlobalBinding::Shared(*ty)
                    } else {
                        match search.known_global(def) {
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
    for (func, module) in &chosen {
        let manifest = search
            .manifest(module)
            .and_then(Result::ok)
            .expect("chosen");
        let entry = manifest.function(func).expect("chosen entries exist");
        for global in &entry.globals {
            search.steps += 1;
            let def = manifest.global(global).expect("checked manifest");
            // A mutable global is set once per process, when the first function using
            // it is bound; later bindings must not reset what the code has changed.
            let already_set = linkage.shared_global(global).is_some();
            if let (true, false, Some(Ok(value))) =
                (def.mutable, already_set, search.known_global(def))
            {
                set_globals.insert(global.clone(), (def.ty, value));
            }
        }
    }

    let signature =
        signature_of(search, target, &target_module).expect("the target's module defines it");
    LoadPlan {
        target: target.into(),
        module: target_module,
        signature,
        modules,
        cycles,
        bindings: chosen.into_iter().collect(),
        set_globals: set_globals
            .into_iter()
            .map(|(name, (ty, value))| (name, ty, value))
            .collect(),
        generation: linkage.generation(),
    }
}
