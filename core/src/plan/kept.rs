//! A [`LoadPlan`] in the form a host keeps it between processes: [`KeptPlan`].
//!
//! A plan repeats its manifests' contents: each import binding names the func_name or
//! global the manifest's import already names, each binding names a function the
//! bound module's manifest lists, and module ids recur in every export binding. A kept
//! plan holds each planned module's manifest once and everything else as positions in
//! those manifests, so that reading one back decodes each name and id once: for the
//! benchmark's 10-module closure, 0.67M instructions of decoding instead of the 1.08M a
//! serialized `LoadPlan` took (BENCHMARKS.md, session 20).
//!
//! Converting back ([`KeptPlan::into_plan`]) checks every manifest
//! ([`Manifest::check`]), every position, the kind of every import against its binding
//! and the type of every global binding, so a damaged or forged kept plan is an error,
//! never a wrong link or a panic in the linkage that commits it.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::search::global_index;
use super::{GlobalBinding, GlobalCheck, ImportBinding, LoadPlan, PlannedModule};
use crate::manifest::{FN_NAMESPACE, GLOBAL_NAMESPACE};
use crate::{FuncSig, GlobalDef, ImportKind, Manifest, ModuleId, Name, ValType, Value};

/// A plan for a linkage that has loaded nothing, in the compact form a host stores
/// ([`KeptPlan::keep`]) and turns back into the same [`LoadPlan`]
/// ([`KeptPlan::into_plan`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeptPlan {
    pub(super) target: String,
    /// The position (in `modules`) of the module the target is bound to.
    pub(super) target_module: u32,
    pub(super) modules: Vec<KeptModule>,
    /// Each strongly connected group as positions in `modules`.
    pub(super) cycles: Vec<Vec<u32>>,
    /// Each binding as (module position, function position in that module's manifest).
    pub(super) bindings: Vec<(u32, u32)>,
    pub(super) set_globals: Vec<(Name, ValType, Value)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct KeptModule {
    pub(super) manifest: Manifest,
    /// One per import of the manifest, in order.
    pub(super) imports: Vec<KeptImport>,
}

/// An [`ImportBinding`] without the names its import already has.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum KeptImport {
    /// [`ImportBinding::Export`] of the module at this position.
    Export(u32),
    Trampoline,
    Lazy,
    Global(GlobalBinding),
    Embedder,
}

/// A global definition a plan depended on: a position in a kept plan's manifests when
/// a planned module carries it, else the definition itself (a duplicate the planner
/// considered and did not choose).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum KeptGlobal {
    /// The global at position `global` of the manifest at position `module`.
    Planned {
        /// The module's position in the kept plan.
        module: u32,
        /// The global's position in that module's manifest.
        global: u32,
    },
    /// A definition carried by a module the plan does not load.
    Other(ModuleId, GlobalDef),
}

impl KeptPlan {
    /// `plan` in kept form, when it loads every module it refers to (a plan made for a
    /// linkage that had loaded nothing always does); `None` otherwise.
    pub fn keep(plan: &LoadPlan) -> Option<KeptPlan> {
        if u32::try_from(plan.modules.len()).is_err() {
            return None;
        }
        let (positions, _) = positions(plan.modules.iter().map(|planned| planned.module));
        let position = |id: &ModuleId| positions.get(id).copied();
        let mut modules = Vec::with_capacity(plan.modules.len());
        for planned in &plan.modules {
            let manifest = &planned.manifest;
            if manifest.module != planned.module || manifest.imports.len() != planned.imports.len()
            {
                return None;
            }
            let mut imports = Vec::with_capacity(planned.imports.len());
            for (import, binding) in manifest.imports.iter().zip(&planned.imports) {
                let kept = match binding {
                    ImportBinding::Export { module, func } if *func == import.name => {
                        KeptImport::Export(position(module)?)
                    }
                    ImportBinding::Trampoline { func } if *func == import.name => {
                        KeptImport::Trampoline
                    }
                    ImportBinding::Lazy { func, signature }
                        if *func == import.name
                            && matches!(&import.kind, ImportKind::Func(s) if s == signature) =>
                    {
                        KeptImport::Lazy
                    }
                    ImportBinding::Global { name, binding } if *name == import.name => {
                        KeptImport::Global(binding.clone())
                    }
                    ImportBinding::Embedder => KeptImport::Embedder,
                    _ => return None,
                };
                imports.push(kept);
            }
            modules.push(KeptModule {
                manifest: Manifest::clone(manifest),
                imports,
            });
        }
        let mut bindings = Vec::with_capacity(plan.bindings.len());
        for (func, module) in &plan.bindings {
            let at = position(module)?;
            let function = modules[at as usize]
                .manifest
                .functions
                .binary_search_by(|f| f.name.as_str().cmp(func))
                .ok()?;
            bindings.push((at, u32::try_from(function).ok()?));
        }
        let cycles = plan
            .cycles
            .iter()
            .map(|group| group.iter().map(position).collect::<Option<Vec<_>>>())
            .collect::<Option<Vec<_>>>()?;
        let kept = KeptPlan {
            target: plan.target.clone(),
            target_module: position(&plan.module)?,
            modules,
            cycles,
            bindings,
            set_globals: plan.set_globals.clone(),
        };
        // What does not come back as it was is not kept.
        (kept.target_signature().ok() == Some(&plan.signature)).then_some(kept)
    }

    /// The targeted func_name.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Each `(module, definition, decision)` with the definition as a position in this
    /// plan's manifests when a planned module carries that very definition, else whole.
    pub fn keep_globals<T>(
        &self,
        globals: impl IntoIterator<Item = (ModuleId, GlobalDef, T)>,
    ) -> Vec<(KeptGlobal, T)> {
        let (positions, _) = positions(self.modules.iter().map(|kept| kept.manifest.module));
        let planned = |module: &ModuleId, def: &GlobalDef| -> Option<KeptGlobal> {
            let at = *positions.get(module)?;
            let manifest = &self.modules[at as usize].manifest;
            let global = global_index(manifest, &def.name)?;
            (manifest.globals[global] == *def).then_some(KeptGlobal::Planned {
                module: at,
                global: u32::try_from(global).ok()?,
            })
        };
        globals
            .into_iter()
            .map(|(module, def, decision)| {
                let kept = planned(&module, &def).unwrap_or(KeptGlobal::Other(module, def));
                (kept, decision)
            })
            .collect()
    }

    /// The check `global` stands for; `None` when its positions are out of range.
    pub fn global_check(&self, global: &KeptGlobal) -> Option<GlobalCheck> {
        match global {
            KeptGlobal::Planned { module, global } => {
                let manifest = &self.modules.get(*module as usize)?.manifest;
                Some(GlobalCheck {
                    module: manifest.module,
                    global: manifest.globals.get(*global as usize)?.clone(),
                })
            }
            KeptGlobal::Other(module, def) => Some(GlobalCheck {
                module: *module,
                global: def.clone(),
            }),
        }
    }

    /// The plan again, for a linkage that has loaded nothing (its generation is 0), or
    /// what is wrong with this kept plan.
    pub fn into_plan(self) -> Result<LoadPlan, String> {
        let count = self.modules.len();
        let in_range = |at: u32| -> Result<usize, String> {
            let at = at as usize;
            if at < count {
                Ok(at)
            } else {
                Err(format!("module position {at} of {count}"))
            }
        };
        let mut ids: Vec<ModuleId> = Vec::with_capacity(count);
        for kept in &self.modules {
            kept.manifest.check()?;
            ids.push(kept.manifest.module);
        }
        if !positions(ids.iter().copied()).1 {
            return Err("a module is planned twice".into());
        }
        let signature = self.target_signature()?.clone();
        let target_module = ids[in_range(self.target_module)?];

        let mut bindings = Vec::with_capacity(self.bindings.len());
        for &(module, function) in &self.bindings {
            let at = in_range(module)?;
            let function = self.modules[at]
                .manifest
                .functions
                .get(function as usize)
                .ok_or_else(|| format!("function position {function} in module {at}"))?;
            bindings.push((function.name.clone(), ids[at]));
        }
        if !bindings.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err("bindings are not sorted and unique".into());
        }
        if !bindings
            .iter()
            .any(|(func, module)| *func == self.target && *module == target_module)
        {
            return Err(format!("`{}` is not bound by its plan", self.target));
        }
        let cycles = self
            .cycles
            .iter()
            .map(|group| {
                group
                    .iter()
                    .map(|&at| in_range(at).map(|at| ids[at]))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut modules = Vec::with_capacity(count);
        for (at, kept) in self.modules.into_iter().enumerate() {
            if kept.imports.len() != kept.manifest.imports.len() {
                return Err(format!("module {at} has a binding per import missing"));
            }
            let mut imports = Vec::with_capacity(kept.imports.len());
            for (import, binding) in kept.manifest.imports.iter().zip(kept.imports) {
                let func = || match (&import.kind, import.namespace.as_str()) {
                    (ImportKind::Func(signature), FN_NAMESPACE) => Ok(signature),
                    _ => Err(format!("`{}` is not a function import", import.name)),
                };
                let binding = match binding {
                    KeptImport::Export(module) => {
                        func()?;
                        let dep = in_range(module)?;
                        if dep >= at {
                            return Err(format!("module {at} imports from module {dep}, later"));
                        }
                        ImportBinding::Export {
                            module: ids[dep],
                            func: import.name.clone(),
                        }
                    }
                    KeptImport::Trampoline => {
                        func()?;
                        ImportBinding::Trampoline {
                            func: import.name.clone(),
                        }
                    }
                    KeptImport::Lazy => ImportBinding::Lazy {
                        signature: func()?.clone(),
                        func: import.name.clone(),
                    },
                    KeptImport::Global(binding) => {
                        let fits = import.namespace == GLOBAL_NAMESPACE
                            && match (&import.kind, &binding) {
                                (ImportKind::Global { ty, mutable }, GlobalBinding::Value(v)) => {
                                    !mutable && v.ty() == *ty
                                }
                                (
                                    ImportKind::Global { ty, mutable },
                                    GlobalBinding::Placeholder(t),
                                ) => !mutable && t == ty,
                                (ImportKind::Global { ty, mutable }, GlobalBinding::Shared(t)) => {
                                    *mutable && t == ty
                                }
                                _ => false,
                            };
                        if !fits {
                            return Err(format!("`{}` is bound as another global", import.name));
                        }
                        ImportBinding::Global {
                            name: import.name.clone(),
                            binding,
                        }
                    }
                    KeptImport::Embedder if import.is_embedder() => ImportBinding::Embedder,
                    KeptImport::Embedder => {
                        return Err(format!("`{}` is not the embedder's", import.name));
                    }
                };
                imports.push(binding);
            }
            modules.push(PlannedModule {
                module: ids[at],
                manifest: Arc::new(kept.manifest),
                imports,
            });
        }
        Ok(LoadPlan {
            target: self.target,
            module: target_module,
            signature,
            modules,
            cycles,
            bindings,
            set_globals: self.set_globals,
            generation: 0,
        })
    }

    fn target_signature(&self) -> Result<&FuncSig, String> {
        let kept = self
            .modules
            .get(self.target_module as usize)
            .ok_or_else(|| format!("target module position {}", self.target_module))?;
        kept.manifest
            .function(&self.target)
            .map(|f| &f.signature)
            .ok_or_else(|| format!("the target's module does not define `{}`", self.target))
    }
}

/// The position of each module of `ids` (the last, for one that comes twice), and
/// whether each comes once. (Built by insertion, not `collect`: a map collected from an
/// iterator sorts it first, and the browser package pays for every sort's code.)
fn positions(ids: impl Iterator<Item = ModuleId>) -> (BTreeMap<ModuleId, u32>, bool) {
    let mut positions = BTreeMap::new();
    let mut once = true;
    for (at, id) in ids.enumerate() {
        once &= positions.insert(id, at as u32).is_none();
    }
    (positions, once)
}
