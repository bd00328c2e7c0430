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

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use alloc::{format, vec};

use wasmparser::{
    CompositeInnerType, ConstExpr, DataKind, ElementItems, ElementKind, ExternalKind, FrameKind,
    FrameStack, FuncValidator, FuncValidatorAllocations, FunctionBody, Operator, Parser, Payload,
    RefType, TypeRef, ValidPayload, Validator, ValidatorResources, WasmFeatures,
};

use crate::manifest::{FN_NAMESPACE, GLOBAL_NAMESPACE, GLOBALS_SECTION};
use crate::reach::{self, Bits, CallGraph, ReachBudget, Union};
use crate::{FuncSig, Function, GlobalDef, Import, ImportKind, Manifest, ModuleId, Name, ValType};

/// Why bytes could not be turned into a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    /// The bytes are not a WebAssembly module at all (wrong magic, a component, empty).
    #[error("not a WebAssembly module: {reason}")]
    NotWasm {
        /// What the parser found instead.
        reason: String,
    },
    /// The bytes are a WebAssembly module that fails validation or is truncated.
    #[error("invalid WebAssembly module at byte offset {offset}: {message}")]
    Invalid {
        /// Where in the bytes the problem is.
        offset: usize,
        /// The validator's message.
        message: String,
    },
    /// An import in a `linkcache:*` namespace that the convention does not allow (a
    /// `linkcache:fn` import that is not a function, an unknown `linkcache:` namespace).
    #[error("import `{namespace}` `{name}`: {reason}")]
    UnsupportedImport {
        /// The import's module name.
        namespace: String,
        /// The import's field name.
        name: String,
        /// Why it is not accepted.
        reason: String,
    },
    /// An exported function uses a value type linkcache cannot describe (a typed
    /// reference, a GC type).
    #[error("function `{function}` uses a type linkcache does not support: {reason}")]
    UnsupportedType {
        /// The exported function.
        function: String,
        /// The unsupported type, as the parser describes it.
        reason: String,
    },
    /// An export re-exports an imported function; func_names must be defined where they
    /// are exported.
    #[error(
        "export `{name}` re-exports an imported function; a module may export only functions it defines"
    )]
    ReexportedImport {
        /// The export's name.
        name: String,
    },
    /// A `linkcache:global` import has no definition to validate it against.
    #[error(
        "global `{global}` is imported from `linkcache:global` but has no definition (none in the `linkcache.globals` section, none passed by the caller)"
    )]
    MissingGlobalDefinition {
        /// The global's name.
        global: String,
    },
    /// The `linkcache.globals` custom section cannot be parsed.
    #[error("the `linkcache.globals` custom section is malformed: {reason}")]
    BadGlobalsSection {
        /// What is wrong with it.
        reason: String,
    },
    /// A declaration names a function the module does not export.
    #[error("declared dependencies name `{function}`, which the module does not export")]
    DeclaredUnknownFunction {
        /// The declared function.
        function: String,
    },
    /// A declaration names a dependency the module does not import.
    #[error(
        "function `{function}` declares dependency `{dependency}`, which the module does not import"
    )]
    DeclaredNotImported {
        /// The declared function.
        function: String,
        /// The func_name or global it declares.
        dependency: String,
    },
    /// The module exceeds one of the analysis's limits (see [`analyze_with`]).
    #[error("the module is too large to analyze: more {what} than the limit of {limit}")]
    TooLarge {
        /// What exceeds its limit.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// The binary reaches a dependency that the declaration leaves out: the declaration
    /// would make the cache load too little.
    #[error("function `{function}` reaches `{dependency}`, which its declaration leaves out")]
    UndeclaredDependency {
        /// The declared function.
        function: String,
        /// The func_name or global its code reaches.
        dependency: String,
    },
}

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
    if wasm.len() < 8 || &wasm[0..4] != b"\0asm" {
        return Err(not_wasm(
            "the bytes do not start with the wasm magic `\\0asm`",
        ));
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

/// What one pass over the module collected, in wasm index spaces. Cache imports are
/// numbered as dependency bits in import order (see `reach.rs`).
#[derive(Default)]
struct Scan<'a> {
    imports: Vec<Import>,
    /// (position in `imports`, function index) of every function import, whose
    /// signature is known once validation ends.
    func_import_positions: Vec<(usize, u32)>,
    func_imports: u32,
    /// The name of each dependency bit, and whether it is a global.
    bit_names: Vec<(String, bool)>,
    /// The dependency bit of each imported function (`linkcache:fn` ones only).
    func_import_bits: Vec<Option<u32>>,
    /// For every global index: the `linkcache:global` bits behind it (itself when it is
    /// one, its initializer's reads when it is defined).
    global_behind: Vec<Bits>,
    /// Every `linkcache:global` bit of a global import, by global index.
    global_import_bits: Vec<Option<u32>>,
    defined_functions: u32,
    /// Per defined function: the cache globals its body uses.
    own: Vec<Bits>,
    calls: Vec<(u32, u32)>,
    indirect_callers: Vec<u32>,
    indirect_targets: Vec<u32>,
    /// Exported functions: (name, function index); names borrow the module's bytes.
    exports: Vec<(&'a str, u32)>,
    start: Option<u32>,
    instantiation_globals: Vec<u32>,
    /// Scratch for what one body uses.
    body: BodyUses,
    /// Whether the imported globals have their sets (the import section is over).
    sealed: bool,
}

impl<'a> Scan<'a> {
    fn width(&self) -> usize {
        self.bit_names.len().div_ceil(64)
    }

    fn import(&mut self, namespace: &str, name: &str, ty: TypeRef) -> Result<(), AnalysisError> {
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
    fn seal_imported_globals(&mut self) {
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
    fn define_global(&mut self, reads: &[u32]) {
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

    /// Validates one function body and collects what it uses, in one pass.
    fn body(
        &mut self,
        validator: &mut FuncValidator<ValidatorResources>,
        body: &FunctionBody<'_>,
        features: WasmFeatures,
    ) -> wasmparser::Result<()> {
        self.seal_imported_globals();
        let index = self.func_imports + self.defined_functions;
        self.defined_functions += 1;
        let mut reader = body.get_binary_reader();
        validator.read_locals(&mut reader)?;
        reader.set_features(features);
        self.body.clear();
        while !reader.eof() {
            let mut tap = Tap {
                validator: validator.visitor(reader.original_position()),
                uses: &mut self.body,
            };
            reader.visit_operator(&mut tap)??;
        }
        reader.finish_expression(&validator.visitor(reader.original_position()))?;
        let width = self.width();
        let uses = &mut self.body;
        self.indirect_targets.append(&mut uses.ref_funcs);
        uses.calls.sort_unstable();
        uses.calls.dedup();
        for &callee in &uses.calls {
            self.calls.push((index, callee));
        }
        if uses.indirect {
            self.indirect_callers.push(index);
        }
        uses.globals.sort_unstable();
        uses.globals.dedup();
        let mut union = Union::new(width);
        for &global in &uses.globals {
            if let Some(behind) = self.global_behind.get(global as usize) {
                union.set(behind);
            }
        }
        let mut budget = ReachBudget { words: usize::MAX };
        self.own.push(union.finish(&mut budget).unwrap_or(None));
        Ok(())
    }

    /// Records `ref.func` targets of a constant expression and returns the globals it
    /// reads.
    fn const_expr(&mut self, expr: &ConstExpr<'_>) -> wasmparser::Result<Vec<u32>> {
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

    fn finish(
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

/// What one function body uses, as the analysis needs it.
#[derive(Default)]
struct BodyUses {
    /// Direct callees (`call`, `return_call`).
    calls: Vec<u32>,
    /// Globals read or written.
    globals: Vec<u32>,
    /// Functions named by `ref.func`.
    ref_funcs: Vec<u32>,
    /// Whether it calls through a table or a reference.
    indirect: bool,
}

/// One operator the analysis cares about.
enum Use {
    Call(u32),
    Indirect,
    RefFunc(u32),
    Global(u32),
}

/// The [`Use`] of an operator, from its name and arguments as wasmparser's
/// `for_each_visit_operator!` spells them; `None` for every other operator.
macro_rules! use_of {
    (Call { $function:ident }) => {
        Some(Use::Call($function))
    };
    (ReturnCall { $function:ident }) => {
        Some(Use::Call($function))
    };
    (CallIndirect { $($arg:ident),* }) => {
        Some(Use::Indirect)
    };
    (ReturnCallIndirect { $($arg:ident),* }) => {
        Some(Use::Indirect)
    };
    (CallRef { $($arg:ident),* }) => {
        Some(Use::Indirect)
    };
    (ReturnCallRef { $($arg:ident),* }) => {
        Some(Use::Indirect)
    };
    (RefFunc { $function:ident }) => {
        Some(Use::RefFunc($function))
    };
    (GlobalGet { $global:ident }) => {
        Some(Use::Global($global))
    };
    (GlobalSet { $global:ident }) => {
        Some(Use::Global($global))
    };
    ($($other:tt)*) => {
        None
    };
}

/// Every `visit_*` method: note the operator's use, then let the validator check it.
macro_rules! tap_visit {
    ($(@$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*))*) => {
        $(
            #[inline]
            fn $visit(&mut self $($(,$arg: $argty)*)?) -> Self::Output {
                if let Some(used) = use_of!($op $({ $($arg),* })?) {
                    self.uses.note(used);
                }
                self.validator.$visit($($($arg),*)?)
            }
        )*
    };
}

impl BodyUses {
    fn clear(&mut self) {
        self.calls.clear();
        self.globals.clear();
        self.ref_funcs.clear();
        self.indirect = false;
    }

    fn note(&mut self, used: Use) {
        match used {
            Use::Call(function) => self.calls.push(function),
            Use::Indirect => self.indirect = true,
            Use::RefFunc(function) => self.ref_funcs.push(function),
            Use::Global(global) => self.globals.push(global),
        }
    }
}

/// wasmparser's operator validator with the analysis listening in: the body's
/// operators are decoded once, straight into the validator's visitor (as
/// `FuncValidator::validate` does), instead of into [`Operator`] values that are then
/// matched twice. SIMD operators go to the validator untouched (none calls or names
/// a function or a global).
struct Tap<'u, V> {
    validator: V,
    uses: &'u mut BodyUses,
}

impl<'a, V> wasmparser::VisitOperator<'a> for Tap<'_, V>
where
    V: wasmparser::VisitOperator<'a, Output = wasmparser::Result<()>>,
{
    type Output = wasmparser::Result<()>;

    fn simd_visitor(
        &mut self,
    ) -> Option<&mut dyn wasmparser::VisitSimdOperator<'a, Output = Self::Output>> {
        self.validator.simd_visitor()
    }

    wasmparser::for_each_visit_operator!(tap_visit);
}

impl<V: FrameStack> FrameStack for Tap<'_, V> {
    fn current_frame(&self) -> Option<FrameKind> {
        self.validator.current_frame()
    }
}

/// Checks a compiler's declaration against what the analysis found (`calls`,
/// `globals`) and the module's cache imports (`imported`: func_names, globals).
fn check_declaration(
    function: &str,
    declaration: &Declared,
    imported: (&BTreeSet<&str>, &BTreeSet<&str>),
    calls: &BTreeSet<&str>,
    globals: &BTreeSet<&str>,
) -> Result<(Vec<Name>, Vec<Name>), AnalysisError> {
    let declared_calls: BTreeSet<&str> = declaration.calls.iter().map(String::as_str).collect();
    let declared_globals: BTreeSet<&str> = declaration.globals.iter().map(String::as_str).collect();
    let not_imported = |dependency: &str| AnalysisError::DeclaredNotImported {
        function: function.into(),
        dependency: dependency.into(),
    };
    if let Some(dep) = declared_calls.iter().find(|d| !imported.0.contains(*d)) {
        return Err(not_imported(dep));
    }
    if let Some(dep) = declared_globals.iter().find(|d| !imported.1.contains(*d)) {
        return Err(not_imported(dep));
    }
    let undeclared = calls
        .difference(&declared_calls)
        .chain(globals.difference(&declared_globals))
        .next();
    if let Some(dependency) = undeclared {
        return Err(AnalysisError::UndeclaredDependency {
            function: function.into(),
            dependency: (*dependency).into(),
        });
    }
    Ok((
        declared_calls.into_iter().map(Name::from).collect(),
        declared_globals.into_iter().map(Name::from).collect(),
    ))
}

fn func_sig(types: &wasmparser::types::TypesRef<'_>, index: u32) -> Result<FuncSig, String> {
    let id = types.core_function_at(index);
    let CompositeInnerType::Func(func) = &types[id].composite_type.inner else {
        return Err("not a function type".into());
    };
    let convert = |tys: &[wasmparser::ValType]| -> Result<Vec<ValType>, String> {
        tys.iter().map(|&t| val_type(t)).collect()
    };
    Ok(FuncSig {
        params: convert(func.params())?,
        results: convert(func.results())?,
    })
}

fn val_type(ty: wasmparser::ValType) -> Result<ValType, String> {
    Ok(match ty {
        wasmparser::ValType::I32 => ValType::I32,
        wasmparser::ValType::I64 => ValType::I64,
        wasmparser::ValType::F32 => ValType::F32,
        wasmparser::ValType::F64 => ValType::F64,
        wasmparser::ValType::V128 => ValType::V128,
        wasmparser::ValType::Ref(r) if r == RefType::FUNCREF => ValType::FuncRef,
        wasmparser::ValType::Ref(r) if r == RefType::EXTERNREF => ValType::ExternRef,
        wasmparser::ValType::Ref(r) => return Err(format!("reference type {r:?}")),
    })
}

/// Encodes global definitions as the payload of a `linkcache.globals` custom section:
/// a LEB128 u32 count, then for each entry the name and the definition, each as a
/// LEB128 length followed by the bytes (the name in UTF-8).
///
/// A compiler that writes this section into its modules need not pass definitions to
/// [`analyze_with`].
pub fn encode_globals_section<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Vec<u8> {
    let entries: Vec<_> = entries.into_iter().collect();
    let mut out = Vec::new();
    leb128(&mut out, entries.len() as u64);
    for (name, definition) in entries {
        leb128(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        leb128(&mut out, definition.len() as u64);
        out.extend_from_slice(definition);
    }
    out
}

/// Appends a `linkcache.globals` custom section with these definitions to a module's
/// bytes (a custom section may come last): what a compiler emits so that the cache
/// finds the definitions its globals were compiled against.
pub fn append_globals_section<'a>(
    wasm: &mut Vec<u8>,
    entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) {
    let payload = encode_globals_section(entries);
    let name = GLOBALS_SECTION.as_bytes();
    let mut body = Vec::with_capacity(name.len() + payload.len() + 5);
    leb128(&mut body, name.len() as u64);
    body.extend_from_slice(name);
    body.extend_from_slice(&payload);
    wasm.push(0); // custom section id
    leb128(wasm, body.len() as u64);
    wasm.extend_from_slice(&body);
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Parses the payload of a `linkcache.globals` custom section.
pub fn parse_globals_section(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, AnalysisError> {
    let bad = |reason: &str| AnalysisError::BadGlobalsSection {
        reason: reason.into(),
    };
    let mut reader = wasmparser::BinaryReader::new(data, 0);
    let count = reader
        .read_var_u32()
        .map_err(|_| bad("truncated entry count"))?;
    let mut entries = vec![];
    for i in 0..count {
        let name = reader
            .read_string()
            .map_err(|_| bad(&format!("entry {i}: bad or truncated name")))?;
        let len = reader
            .read_var_u32()
            .map_err(|_| bad(&format!("entry {i}: truncated definition length")))?;
        let definition = reader
            .read_bytes(len as usize)
            .map_err(|_| bad(&format!("entry {i} (`{name}`): truncated definition")))?;
        entries.push((name.to_string(), definition.to_vec()));
    }
    if !reader.eof() {
        return Err(bad("trailing bytes after the last entry"));
    }
    Ok(entries)
}

impl Manifest {
    /// Checks that this manifest describes `wasm`: analyzing the bytes, with this
    /// manifest's global definitions and its functions' dependencies as declarations,
    /// must give this manifest back. Catches a manifest that lies about its binary (a
    /// dependency left out, a function the module does not export, another module's
    /// manifest). Hosts run it before compiling bytes from their store.
    pub fn check_against(&self, wasm: &[u8]) -> Result<(), String> {
        let mut options = AnalyzeOptions::default();
        for global in &self.globals {
            options
                .globals
                .insert(String::from(&global.name), global.definition.clone());
        }
        for function in &self.functions {
            options.declared.insert(
                String::from(&function.name),
                Declared {
                    calls: function.calls.iter().map(String::from).collect(),
                    globals: function.globals.iter().map(String::from).collect(),
                },
            );
        }
        let analyzed = analyze_with(wasm, &options)
            .map_err(|e| alloc::format!("its manifest does not describe its bytes: {e}"))?;
        if normalized(&analyzed) != normalized(self) {
            return Err(
                "its manifest does not describe its bytes (functions, imports or globals differ)"
                    .into(),
            );
        }
        Ok(())
    }
}

fn normalized(manifest: &Manifest) -> Manifest {
    let mut m = manifest.clone();
    m.functions.sort_by(|a, b| a.name.cmp(&b.name));
    for f in &mut m.functions {
        f.calls.sort();
        f.globals.sort();
    }
    m.globals.sort_by(|a, b| a.name.cmp(&b.name));
    m
}
