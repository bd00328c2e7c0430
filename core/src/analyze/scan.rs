//! The scan: what one pass over the module collects, section by section, in wasm index
//! spaces: imports (each `linkcache:` import a dependency bit), the globals behind every
//! global index, and the functions and globals constant expressions name. Function
//! bodies are scanned in `body.rs`; `finish.rs` turns what was collected into a manifest.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use wasmparser::{ConstExpr, Operator, TypeRef};

use super::body::BodyUses;
use super::types::val_type;
use super::{AnalysisError, MAX_CACHE_IMPORTS, too_large};
use crate::manifest::{FN_NAMESPACE, GLOBAL_NAMESPACE};
use crate::reach::{Bits, ReachBudget, Union};
use crate::{FuncSig, Import, ImportKind};

/// What one pass over the module collected, in wasm index spaces. Cache imports are
/// numbered as dependency bits in import order (see `reach.rs`).
#[derive(Default)]
pub(super) struct Scan<'a> {
    pub(super) imports: Vec<Import>,
    /// (position in `imports`, function index) of every function import, whose
    /// signature is known once validation ends.
    pub(super) func_import_positions: Vec<(usize, u32)>,
    pub(super) func_imports: u32,
    /// The name of each dependency bit, and whether it is a global.
    pub(super) bit_names: Vec<(String, bool)>,
    /// The dependency bit of each imported function (`linkcache:fn` ones only).
    pub(super) func_import_bits: Vec<Option<u32>>,
    /// For every global index: the `linkcache:global` bits behind it (itself when it is
    /// one, its initializer's reads when it is defined).
    pub(super) global_behind: Vec<Bits>,
    /// Every `linkcache:global` bit of a global import, by global index.
    global_import_bits: Vec<Option<u32>>,
    pub(super) defined_functions: u32,
    /// Per defined function: the cache globals its body uses.
    pub(super) own: Vec<Bits>,
    pub(super) calls: Vec<(u32, u32)>,
    pub(super) indirect_callers: Vec<u32>,
    pub(super) indirect_targets: Vec<u32>,
    /// Exported functions: (name, function index); names borrow the module's bytes.
    pub(super) exports: Vec<(&'a str, u32)>,
    pub(super) start: Option<u32>,
    pub(super) instantiation_globals: Vec<u32>,
    /// Scratch for what one body uses.
    pub(super) body: BodyUses,
    /// Whether the imported globals have their sets (the import section is over).
    sealed: bool,
}

impl<'a> Scan<'a> {
    pub(super) fn width(&self) -> usize {
        self.bit_names.len().div_ceil(64)
    }

    pub(super) fn import(
        &mut self,
        namespace: &str,
        name: &str,
        ty: TypeRef,
    ) -> Result<(), AnalysisError> {
        let unsupported = |reason: String| AnalysisError::UnsupportedImport {
            namespace: namespace.into(),
            name: name.into(),
            reason,
        };
        let cache_namespace = namespace == FN_NAMESPACE || namespace == GLOBAL_NAMESPACE;
        if cache_namespace && self.bit_names.len() >= MAX_CACHE_IMPORTS {
            return Err(too_large("`linkcache:` imports", MAX_CACHE_IMPORTS));
        }
        let kind = match ty {
            TypeRef::Func(_) | TypeRef::FuncExact(_) => {
                let index = self.func_imports;
                self.func_imports += 1;
                self.func_import_positions.push((self.imports.len(), index));
                let bit = (namespace == FN_NAMESPACE).then(|| {
                    self.bit_names.push((name.into(), false));
                    self.bit_names.len() as u32 - 1
                });
                self.func_import_bits.push(bit);
                ImportKind::Func(FuncSig::default())
            }
            TypeRef::Global(global) => {
                let ty = val_type(global.content_type).map_err(unsupported)?;
                let bit = if namespace == GLOBAL_NAMESPACE {
                    if ty.zero().is_none() {
                        return Err(unsupported(format!(
                            "a linkcache global must have a numeric type, not {ty}"
                        )));
                    }
                    self.bit_names.push((name.into(), true));
                    Some(self.bit_names.len() as u32 - 1)
                } else {
                    None
                };
                self.global_import_bits.push(bit);
                // Filled in `define_global` / `finish` once the width is known.
                self.global_behind.push(None);
                ImportKind::Global {
                    ty,
                    mutable: global.mutable,
                }
            }
            TypeRef::Memory(_) => ImportKind::Memory,
            TypeRef::Table(_) => ImportKind::Table,
            TypeRef::Tag(_) => ImportKind::Tag,
        };
        let expected = if namespace == FN_NAMESPACE {
            "function"
        } else {
            "global"
        };
        let matches = match (&kind, namespace) {
            (ImportKind::Func(_), FN_NAMESPACE) | (ImportKind::Global { .. }, GLOBAL_NAMESPACE) => {
                true
            }
            _ => !cache_namespace,
        };
        if !matches {
            return Err(unsupported(format!(
                "`{namespace}` may only import a {expected}"
            )));
        }
        self.imports.push(Import {
            namespace: namespace.into(),
            name: name.into(),
            kind,
        });
        Ok(())
    }

    /// Gives every imported global its set once the import section is complete.
    pub(super) fn seal_imported_globals(&mut self) {
        if self.sealed {
            return;
        }
        self.sealed = true;
        let width = self.width();
        for (index, bit) in self.global_import_bits.iter().enumerate() {
            if let Some(bit) = bit {
                let mut union = Union::new(width);
                union.bit(*bit);
                // One word per cache global import: bounded by MAX_CACHE_IMPORTS.
                let mut budget = ReachBudget { words: usize::MAX };
                self.global_behind[index] = union.finish(&mut budget).unwrap_or(None);
            }
        }
    }

    /// A defined global whose initializer reads `reads` (always earlier globals).
    pub(super) fn define_global(&mut self, reads: &[u32]) {
        self.seal_imported_globals();
        let mut union = Union::new(self.width());
        for &read in reads {
            if let Some(behind) = self.global_behind.get(read as usize) {
                union.set(behind);
            }
        }
        let mut budget = ReachBudget { words: usize::MAX };
        let bits = union.finish(&mut budget).unwrap_or(None);
        self.global_behind.push(bits);
    }

    /// Records `ref.func` targets of a constant expression and returns the globals it
    /// reads.
    pub(super) fn const_expr(&mut self, expr: &ConstExpr<'_>) -> wasmparser::Result<Vec<u32>> {
        let mut reads = Vec::new();
        let mut ops = expr.get_operators_reader();
        while !ops.eof() {
            match ops.read()? {
                Operator::RefFunc { function_index } => {
                    self.indirect_targets.push(function_index);
                }
                Operator::GlobalGet { global_index } => reads.push(global_index),
                _ => {}
            }
        }
        Ok(reads)
    }
}
