//! The end of the analysis: the call graph of what the scan collected, every export's
//! dependency set over it, and the manifest built from them (signatures, declarations
//! checked, global definitions).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::declared::check_declaration;
use super::scan::Scan;
use super::types::func_sig;
use super::{AnalysisError, Declared, MAX_MANIFEST_DEPENDENCIES, REACH_BUDGET_WORDS, too_large};
use crate::manifest::GLOBAL_NAMESPACE;
use crate::reach::{self, Bits, CallGraph, ReachBudget, Union};
use crate::{FuncSig, Function, GlobalDef, ImportKind, Manifest, ModuleId, Name};

impl<'a> Scan<'a> {
    pub(super) fn finish(
        mut self,
        wasm: &[u8],
        types: &wasmparser::types::TypesRef<'_>,
        definitions: &BTreeMap<String, Vec<u8>>,
        declared: &BTreeMap<String, Declared>,
    ) -> Result<Manifest, AnalysisError> {
        self.seal_imported_globals();
        for &(position, index) in &self.func_import_positions {
            let sig = func_sig(types, index).map_err(|reason| {
                let import = &self.imports[position];
                AnalysisError::UnsupportedImport {
                    namespace: String::from(&import.namespace),
                    name: String::from(&import.name),
                    reason,
                }
            })?;
            self.imports[position].kind = ImportKind::Func(sig);
        }

        // Nodes: every function index, then "any indirect target", then "instantiation".
        let width = self.width();
        let functions = self.func_imports + self.defined_functions;
        let any_indirect = functions;
        let instantiation = functions + 1;
        let over_budget = |_| too_large("dependency sets (bytes / 8)", REACH_BUDGET_WORDS);
        let mut budget = ReachBudget {
            words: REACH_BUDGET_WORDS,
        };
        let mut graph = CallGraph::new(
            functions as usize + 2,
            self.calls.len() + self.indirect_callers.len() + self.indirect_targets.len() + 1,
        );
        for (index, bit) in self.func_import_bits.iter().enumerate() {
            if let Some(bit) = bit {
                let mut union = Union::new(width);
                union.bit(*bit);
                graph.set_own(
                    index as u32,
                    union.finish(&mut budget).map_err(over_budget)?,
                );
            }
        }
        for (offset, own) in core::mem::take(&mut self.own).into_iter().enumerate() {
            graph.set_own(self.func_imports + offset as u32, own);
        }
        for &(caller, callee) in &self.calls {
            graph.edge(caller, callee);
        }
        for &caller in &self.indirect_callers {
            graph.edge(caller, any_indirect);
        }
        self.indirect_targets.sort_unstable();
        self.indirect_targets.dedup();
        for &target in &self.indirect_targets {
            graph.edge(any_indirect, target);
        }
        if let Some(start) = self.start {
            graph.edge(instantiation, start);
        }
        let reach = graph.reach(width, &mut budget).map_err(over_budget)?;

        // What instantiation runs or reads counts for every function.
        let mut at_instantiation = Union::new(width);
        at_instantiation.set(&reach[instantiation as usize]);
        for &global in &self.instantiation_globals {
            if let Some(behind) = self.global_behind.get(global as usize) {
                at_instantiation.set(behind);
            }
        }
        let at_instantiation = at_instantiation.finish(&mut budget).map_err(over_budget)?;

        // Dependency names in manifest order: each bit's rank among the distinct
        // (kind, name) pairs, func_names first (a name imported twice has two bits and
        // one rank).
        let mut by_name: Vec<u32> = (0..self.bit_names.len() as u32).collect();
        by_name.sort_unstable_by(|&a, &b| {
            let (a, b) = (&self.bit_names[a as usize], &self.bit_names[b as usize]);
            (a.1, &a.0).cmp(&(b.1, &b.0))
        });
        let mut rank_of = vec![0u32; self.bit_names.len()];
        let mut ranked: Vec<(&str, bool)> = Vec::new();
        for bit in by_name {
            let (name, is_global) = &self.bit_names[bit as usize];
            if ranked.last() != Some(&(name.as_str(), *is_global)) {
                ranked.push((name.as_str(), *is_global));
            }
            rank_of[bit as usize] = ranked.len() as u32 - 1;
        }
        let fn_names: BTreeSet<&str> = ranked
            .iter()
            .filter(|(_, global)| !global)
            .map(|(name, _)| *name)
            .collect();
        let global_names: BTreeSet<&str> = ranked
            .iter()
            .filter(|(_, global)| *global)
            .map(|(name, _)| *name)
            .collect();

        let mut total_dependencies = 0usize;
        // Manifest order: by name (export names are distinct; the validator checked).
        let mut exports = core::mem::take(&mut self.exports);
        exports.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut functions = Vec::with_capacity(exports.len());
        let mut signatures: BTreeMap<wasmparser::types::CoreTypeId, FuncSig> = BTreeMap::new();
        // The ranks reached by the previous export, and its set: functions of one
        // strongly connected component share their set, so they share the work.
        let mut ranks: Vec<u32> = Vec::new();
        let mut ranks_of: Option<&Bits> = None;
        for (name, index) in exports {
            let reached = &reach[index as usize];
            let same = ranks_of.is_some_and(|previous| match (previous, reached) {
                (Some(a), Some(b)) => alloc::rc::Rc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            });
            if !same {
                ranks.clear();
                ranks.extend(
                    reach::ones(reached)
                        .chain(reach::ones(&at_instantiation))
                        .map(|bit| rank_of[bit as usize]),
                );
                ranks.sort_unstable();
                ranks.dedup();
                ranks_of = Some(reached);
            }
            total_dependencies += ranks.len();
            if total_dependencies > MAX_MANIFEST_DEPENDENCIES {
                return Err(too_large(
                    "dependencies listed in the manifest",
                    MAX_MANIFEST_DEPENDENCIES,
                ));
            }
            // Ranks put func_names before globals, each sorted.
            let split = ranks.partition_point(|&rank| !ranked[rank as usize].1);
            let names = |ranks: &[u32]| -> Vec<Name> {
                ranks
                    .iter()
                    .map(|&rank| Name::from(ranked[rank as usize].0))
                    .collect()
            };
            let (calls, globals) = match declared.get(name) {
                None => (names(&ranks[..split]), names(&ranks[split..])),
                Some(declaration) => {
                    let found = |ranks: &[u32]| -> BTreeSet<&str> {
                        ranks.iter().map(|&rank| ranked[rank as usize].0).collect()
                    };
                    check_declaration(
                        name,
                        declaration,
                        (&fn_names, &global_names),
                        &found(&ranks[..split]),
                        &found(&ranks[split..]),
                    )?
                }
            };
            // Exports of one function under two names are two func_names.
            let ty = types.core_function_at(index);
            let signature = match signatures.get(&ty) {
                Some(signature) => signature.clone(),
                None => {
                    let signature = func_sig(types, index).map_err(|reason| {
                        AnalysisError::UnsupportedType {
                            function: name.into(),
                            reason,
                        }
                    })?;
                    signatures.insert(ty, signature.clone());
                    signature
                }
            };
            functions.push(Function {
                name: name.into(),
                signature,
                calls,
                globals,
            });
        }
        for function in declared.keys() {
            if functions
                .binary_search_by(|f| f.name.as_str().cmp(function))
                .is_err()
            {
                return Err(AnalysisError::DeclaredUnknownFunction {
                    function: function.clone(),
                });
            }
        }

        let mut globals: BTreeMap<&str, GlobalDef> = BTreeMap::new();
        for import in &self.imports {
            let ImportKind::Global { ty, mutable } = import.kind else {
                continue;
            };
            if import.namespace != GLOBAL_NAMESPACE {
                continue;
            }
            let definition = definitions.get(import.name.as_str()).ok_or_else(|| {
                AnalysisError::MissingGlobalDefinition {
                    global: String::from(&import.name),
                }
            })?;
            let def = GlobalDef {
                name: import.name.clone(),
                ty,
                mutable,
                definition: definition.clone(),
            };
            if let Some(previous) = globals.get(import.name.as_str())
                && (previous.ty != ty || previous.mutable != mutable)
            {
                return Err(AnalysisError::UnsupportedImport {
                    namespace: GLOBAL_NAMESPACE.into(),
                    name: String::from(&import.name),
                    reason: "imported twice with different types".into(),
                });
            }
            globals.insert(&import.name, def);
        }

        let manifest = Manifest {
            module: ModuleId::of(wasm),
            byte_len: wasm.len() as u64,
            functions,
            globals: globals.into_values().collect(),
            imports: self.imports,
        };
        debug_assert_eq!(manifest.check(), Ok(()));
        Ok(manifest)
    }
}
