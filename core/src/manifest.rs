//! The manifest: what the cache knows about a module without decoding its code.
//!
//! A manifest is derived from the wasm bytes by [`crate::analyze`] and stored beside
//! them. The planner reads only manifests; global definitions stay opaque byte strings
//! inside it until a function that uses them is targeted.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::{FuncSig, ModuleId, Name, ValType};

/// The import namespace of functions defined in other cached modules.
pub const FN_NAMESPACE: &str = "linkcache:fn";
/// The import namespace of globals whose definitions the cache validates.
pub const GLOBAL_NAMESPACE: &str = "linkcache:global";
/// The custom section that carries global definitions inside a module.
pub const GLOBALS_SECTION: &str = "linkcache.globals";

/// The version of the analysis that derives a [`Manifest`] from wasm bytes
/// ([`crate::analyze`]); bump it whenever the analysis may give another manifest for the
/// same bytes.
///
/// A store records it beside a manifest that was checked against its bytes (by analyzing
/// them, at commit or at import), so that a load can trust a manifest checked by this very
/// analysis and skip [`Manifest::check_against`]; a manifest recorded with another version
/// (or none) is checked again before its bytes are used.
pub const ANALYZER_VERSION: u32 = 1;

/// Everything the cache needs to plan loads of one module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// BLAKE3 of the wasm bytes.
    pub module: ModuleId,
    /// Length of the wasm bytes.
    pub byte_len: u64,
    /// Every function the module defines and exports, sorted by name.
    pub functions: Vec<Function>,
    /// Every import of the module, in the module's import order.
    pub imports: Vec<Import>,
    /// The definitions the module was compiled against, one per `linkcache:global`
    /// import name, sorted by name.
    pub globals: Vec<GlobalDef>,
}

/// One exported function and what it needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// The func_name, e.g. `math.fib`.
    pub name: Name,
    /// Parameter and result types.
    pub signature: FuncSig,
    /// The `linkcache:fn` imports this function can reach, sorted and deduplicated.
    pub calls: Vec<Name>,
    /// The `linkcache:global` imports this function can read or write, sorted and
    /// deduplicated.
    pub globals: Vec<Name>,
}

/// One import of a module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Import {
    /// The import's module name: [`FN_NAMESPACE`], [`GLOBAL_NAMESPACE`] or the
    /// embedder's (`env`, `wasi_snapshot_preview1`, ...).
    pub namespace: Name,
    /// The import's field name: a func_name, a global's name, or the embedder's.
    pub name: Name,
    /// What is imported.
    pub kind: ImportKind,
}

/// The kind of an import, with what a host needs to satisfy it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportKind {
    /// A function with this signature.
    Func(FuncSig),
    /// A global of this type.
    Global {
        /// Its value type.
        ty: ValType,
        /// Whether it is mutable.
        mutable: bool,
    },
    /// A memory (always the embedder's).
    Memory,
    /// A table (always the embedder's).
    Table,
    /// An exception tag (always the embedder's).
    Tag,
}

impl Import {
    /// Whether the embedder, not the cache, supplies this import.
    pub fn is_embedder(&self) -> bool {
        self.namespace != FN_NAMESPACE && self.namespace != GLOBAL_NAMESPACE
    }
}

/// A global's definition as this module was compiled against it.
///
/// `definition` is opaque to the cache: the embedder's resolver decodes it into a value
/// or declares it stale. The default resolver reads it as the UTF-8 text of a literal
/// (see [`crate::Value::parse_literal`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalDef {
    /// The global's name, as imported from `linkcache:global`.
    pub name: Name,
    /// Its value type.
    pub ty: ValType,
    /// Whether it is mutable (one shared instance per process, set lazily).
    pub mutable: bool,
    /// The serialized definition the module was compiled against.
    pub definition: Vec<u8>,
}

impl Manifest {
    /// The entry of `func_name`, if this module defines it.
    pub fn function(&self, func_name: &str) -> Option<&Function> {
        self.functions
            .binary_search_by(|f| f.name.as_str().cmp(func_name))
            .ok()
            .map(|i| &self.functions[i])
    }

    /// The definition of the global `name` this module imports.
    pub fn global(&self, name: &str) -> Option<&GlobalDef> {
        self.globals
            .binary_search_by(|g| g.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.globals[i])
    }

    /// The func_names this module imports from other cached modules.
    pub fn fn_imports(&self) -> impl Iterator<Item = (&str, &FuncSig)> {
        self.imports.iter().filter_map(|i| match &i.kind {
            ImportKind::Func(sig) if i.namespace == FN_NAMESPACE => Some((i.name.as_str(), sig)),
            _ => None,
        })
    }

    /// The imports the embedder must supply.
    pub fn embedder_imports(&self) -> impl Iterator<Item = &Import> {
        self.imports.iter().filter(|i| i.is_embedder())
    }

    /// Checks the internal consistency a decoder cannot: sorted unique names, calls and
    /// globals that are real imports, a definition for every global import. Costs
    /// O(n log n) in the manifest's size.
    ///
    /// Stores call this on every manifest they read so that a manifest that lies is a
    /// broken entry, not a wrong link.
    pub fn check(&self) -> Result<(), String> {
        use alloc::format;
        if !self.functions.windows(2).all(|w| w[0].name < w[1].name) {
            return Err("functions are not sorted and unique".into());
        }
        if !self.globals.windows(2).all(|w| w[0].name < w[1].name) {
            return Err("globals are not sorted and unique".into());
        }
        for import in &self.imports {
            if import.namespace == GLOBAL_NAMESPACE {
                let ImportKind::Global { ty, mutable } = import.kind else {
                    return Err(format!(
                        "`{}` in {GLOBAL_NAMESPACE} is not a global",
                        import.name
                    ));
                };
                match self.global(&import.name) {
                    Some(def) if def.ty == ty && def.mutable == mutable => {}
                    _ => {
                        return Err(format!(
                            "global `{}` has no matching definition",
                            import.name
                        ));
                    }
                }
            }
        }
        // One sorted list of imported func_names, so the check is linear in the
        // manifest's size (times a logarithm), not functions x calls x imports.
        let mut imported: Vec<&str> = self.fn_imports().map(|(name, _)| name).collect();
        imported.sort_unstable();
        for function in &self.functions {
            for call in &function.calls {
                if imported.binary_search(&call.as_str()).is_err() {
                    return Err(format!(
                        "`{}` calls `{call}`, which is not imported",
                        function.name
                    ));
                }
            }
            for global in &function.globals {
                if self.global(global).is_none() {
                    return Err(format!(
                        "`{}` uses global `{global}`, which is not imported",
                        function.name
                    ));
                }
            }
        }
        Ok(())
    }
}
