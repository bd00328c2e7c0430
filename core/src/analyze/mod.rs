//! Analysis: derives a [`Manifest`] from wasm bytes.
//!
//! The module is validated, its imports and exports are read, and for every exported
//! function the `linkcache:fn` and `linkcache:global` imports it can reach are
//! computed over the module's call graph (a petgraph graph of function indices):
//!
//! - a direct `call` / `return_call` is an edge;
//! - a function that can `call_indirect` (or `call_ref`) reaches every function a table
//!   element or a `ref.func` names anywhere in the module;
//! - the start function, and globals read by data or element offsets, run at
//!   instantiation, so they count for every function;
//! - a defined global initialized from an imported global carries that import to every
//!   function that reads it.
//!
//! Global definitions come from the `linkcache.globals` custom section (see
//! [`encode_globals_section`]) or from the caller, which wins. A compiler may declare
//! each function's dependencies instead of trusting the analysis; a declaration must
//! cover every dependency the analysis finds and name only real imports, otherwise it is
//! rejected with the function and the dependency named.
//!
//! # Where the code is
//! - `mod.rs`: the public API (options, limits) and [`analyze_with`], which checks the
//!   header, validates the module and feeds each section to the scan
//! - `error.rs`: [`AnalysisError`], every reason bytes give no manifest
//! - `scan.rs`: what the scan collects section by section (imports, globals, constant
//!   expressions)
//! - `body.rs`: function bodies, validated and listened in on in one pass
//! - `finish.rs`: the call graph, the dependency sets and the manifest, once the scan is over
//! - `declared.rs`: a compiler's declared dependencies, checked against the analysis
//! - `types.rs`: wasmparser's types as linkcache's
//! - `globals_section.rs`: the `linkcache.globals` custom section
//! - `check.rs`: [`Manifest::check_against`], whether a manifest describes its bytes

mod body;
mod check;
mod declared;
mod error;
mod finish;
mod globals_section;
mod scan;
mod types;

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use wasmparser::{
    DataKind, ElementItems, ElementKind, ExternalKind, FuncValidatorAllocations, Parser, Payload,
    ValidPayload, Validator, WasmFeatures,
};

pub use self::error::AnalysisError;
pub use self::globals_section::{
    append_globals_section, encode_globals_section, parse_globals_section,
};
use self::scan::Scan;
use crate::Manifest;
use crate::manifest::GLOBALS_SECTION;

/// Dependencies a compiler declares for one function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Declared {
    /// func_names imported from `linkcache:fn` that the function may call.
    pub calls: Vec<String>,
    /// Globals imported from `linkcache:global` that the function may use.
    pub globals: Vec<String>,
}

/// Options of [`analyze`]: definitions and declarations a compiler passes in.
#[derive(Clone, Debug, Default)]
pub struct AnalyzeOptions {
    /// Global definitions by name; these win over the module's custom section.
    pub globals: BTreeMap<String, Vec<u8>>,
    /// Declared dependencies by func_name, used instead of the analysis's once checked.
    pub declared: BTreeMap<String, Declared>,
}

impl AnalyzeOptions {
    /// Adds a global definition.
    pub fn global(mut self, name: impl Into<String>, definition: impl Into<Vec<u8>>) -> Self {
        self.globals.insert(name.into(), definition.into());
        self
    }

    /// Declares the dependencies of one function.
    pub fn declare(mut self, function: impl Into<String>, declared: Declared) -> Self {
        self.declared.insert(function.into(), declared);
        self
    }
}

/// Analyzes a module with no options: definitions come from its custom section.
pub fn analyze(wasm: &[u8]) -> Result<Manifest, AnalysisError> {
    analyze_with(wasm, &AnalyzeOptions::default())
}

/// The largest module [`analyze`] accepts, in bytes.
pub const MAX_MODULE_BYTES: usize = 256 << 20;
/// The most `linkcache:fn` plus `linkcache:global` imports one module may have.
pub const MAX_CACHE_IMPORTS: usize = 16_384;
/// The most dependencies a manifest may list, summed over its functions (the manifest's
/// size grows with it).
pub const MAX_MANIFEST_DEPENDENCIES: usize = 1 << 24;
/// How many 64-bit words of dependency sets the analysis of one module may allocate
/// (128 MiB).
const REACH_BUDGET_WORDS: usize = 1 << 24;

/// Validates `wasm` and derives its manifest.
///
/// # Cost and limits
/// One pass over the bytes validates and collects calls, table targets and global
/// uses together (each operator is decoded once, straight into wasmparser's
/// validator, which the analysis listens in on), so analysis costs little more than
/// `Validator::validate_all` of the same bytes (the benchmark's `analysis` section
/// measures the two side by side). Dependencies are then computed once per strongly
/// connected component of the call graph (see `reach.rs`), so the work is linear in
/// the module's size (times the number of cache imports / 64 for the dependency
/// sets), with no recursion whose depth depends on the input. Beyond wasmparser's own
/// implementation limits (1,000,000 functions, imports, exports or globals; bodies of
/// up to 7,654,321 bytes), a module is rejected with [`AnalysisError::TooLarge`] when
/// it exceeds [`MAX_MODULE_BYTES`], [`MAX_CACHE_IMPORTS`], [`MAX_MANIFEST_DEPENDENCIES`]
/// or needs more than 128 MiB of dependency sets.
pub fn analyze_with(wasm: &[u8], options: &AnalyzeOptions) -> Result<Manifest, AnalysisError> {
    check_header(wasm)?;
    if wasm.len() > MAX_MODULE_BYTES {
        return Err(AnalysisError::TooLarge {
            what: "module bytes".into(),
            limit: MAX_MODULE_BYTES as u64,
        });
    }
    let invalid = |e: wasmparser::BinaryReaderError| AnalysisError::Invalid {
        offset: e.offset(),
        message: e.message().to_string(),
    };
    let features = WasmFeatures::default();
    let mut validator = Validator::new_with_features(features);
    let mut allocations = FuncValidatorAllocations::default();
    let mut types = None;
    let mut scan = Scan::default();
    let mut section_globals: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut parser = Parser::new(0);
    parser.set_features(features);
    for payload in parser.parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        match validator.payload(&payload).map_err(invalid)? {
            ValidPayload::Func(func, body) => {
                let mut function = func.into_validator(core::mem::take(&mut allocations));
                scan.body(&mut function, &body, features).map_err(invalid)?;
                allocations = function.into_allocations();
                continue;
            }
            ValidPayload::End(end) => types = Some(end),
            ValidPayload::Parser(_) => {
                return Err(AnalysisError::NotWasm {
                    reason: "a nested module or component; linkcache caches core modules".into(),
                });
            }
            ValidPayload::Ok => {}
        }
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    scan.import(import.module, import.name, import.ty)?;
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader {
                    let global = global.map_err(invalid)?;
                    let reads = scan.const_expr(&global.init_expr).map_err(invalid)?;
                    scan.define_global(&reads);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    if export.kind == ExternalKind::Func {
                        if export.index < scan.func_imports {
                            return Err(AnalysisError::ReexportedImport {
                                name: export.name.into(),
                            });
                        }
                        scan.exports.push((export.name, export.index));
                    }
                }
            }
            Payload::StartSection { func, .. } => scan.start = Some(func),
            Payload::ElementSection(reader) => {
                for element in reader {
                    let element = element.map_err(invalid)?;
                    if let ElementKind::Active { offset_expr, .. } = &element.kind {
                        let reads = scan.const_expr(offset_expr).map_err(invalid)?;
                        scan.instantiation_globals.extend(reads);
                    }
                    match element.items {
                        ElementItems::Functions(items) => {
                            for index in items {
                                scan.indirect_targets.push(index.map_err(invalid)?);
                            }
                        }
                        ElementItems::Expressions(_, exprs) => {
                            for expr in exprs {
                                scan.const_expr(&expr.map_err(invalid)?).map_err(invalid)?;
                            }
                        }
                    }
                }
            }
            Payload::DataSection(reader) => {
                for data in reader {
                    if let DataKind::Active { offset_expr, .. } = data.map_err(invalid)?.kind {
                        let reads = scan.const_expr(&offset_expr).map_err(invalid)?;
                        scan.instantiation_globals.extend(reads);
                    }
                }
            }
            Payload::CustomSection(section) if section.name() == GLOBALS_SECTION => {
                for (name, definition) in parse_globals_section(section.data())? {
                    section_globals.insert(name, definition);
                }
            }
            _ => {}
        }
    }
    let types = types.ok_or_else(|| AnalysisError::Invalid {
        offset: wasm.len(),
        message: "the module ends early".into(),
    })?;

    let mut definitions = section_globals;
    definitions.extend(options.globals.iter().map(|(k, v)| (k.clone(), v.clone())));
    scan.finish(wasm, &types.as_ref(), &definitions, &options.declared)
}

fn check_header(wasm: &[u8]) -> Result<(), AnalysisError> {
    let not_wasm = |reason: &str| AnalysisError::NotWasm {
        reason: reason.into(),
    };
    if !wasm.starts_with(b"\0asm") {
        return Err(not_wasm(
            "the bytes do not start with the wasm magic `\\0asm`",
        ));
    }
    if wasm.len() < 8 {
        return Err(not_wasm(&format!(
            "{} bytes: too short for a wasm header (the magic `\\0asm` and a 4-byte version)",
            wasm.len()
        )));
    }
    if wasm[4..8] != [1, 0, 0, 0] {
        return Err(not_wasm(
            "unsupported binary version (a component, or a newer encoding); linkcache caches core modules",
        ));
    }
    Ok(())
}

fn too_large(what: &str, limit: usize) -> AnalysisError {
    AnalysisError::TooLarge {
        what: what.into(),
        limit: limit as u64,
    }
}
