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

use petgraph::graphmap::DiGraphMap;
use petgraph::visit::Dfs;
use wasmparser::{
    CompositeInnerType, ConstExpr, DataKind, ElementItems, ElementKind, ExternalKind, Operator,
    Parser, Payload, RefType, TypeRef, Validator, WasmFeatures,
};

use crate::manifest::{FN_NAMESPACE, GLOBAL_NAMESPACE, GLOBALS_SECTION};
use crate::{FuncSig, Function, GlobalDef, Import, ImportKind, Manifest, ModuleId, ValType};

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

/// Validates `wasm` and derives its manifest.
pub fn analyze_with(wasm: &[u8], options: &AnalyzeOptions) -> Result<Manifest, AnalysisError> {
    check_header(wasm)?;
    let types = Validator::new_with_features(WasmFeatures::default())
        .validate_all(wasm)
        .map_err(|e| AnalysisError::Invalid {
            offset: e.offset(),
            message: e.message().to_string(),
        })?;
    let types = types.as_ref();
    let invalid = |e: wasmparser::BinaryReaderError| AnalysisError::Invalid {
        offset: e.offset(),
        message: e.message().to_string(),
    };

    let mut scan = Scan::default();
    let mut section_globals: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut defined_index = 0u32;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    scan.import(import.module, import.name, import.ty, &types)?;
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader {
                    let global = global.map_err(invalid)?;
                    let index = scan.global_imports + scan.defined_globals.len() as u32;
                    let reads = scan.const_expr(&global.init_expr).map_err(invalid)?;
                    scan.defined_globals.insert(index, reads);
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
                        scan.exports.push((export.name.into(), export.index));
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
                                scan.indirect_targets.insert(index.map_err(invalid)?);
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
            Payload::CodeSectionEntry(body) => {
                let index = scan.func_imports + defined_index;
                defined_index += 1;
                let mut uses = FunctionUses::default();
                let mut ops = body.get_operators_reader().map_err(invalid)?;
                while !ops.eof() {
                    match ops.read().map_err(invalid)? {
                        Operator::Call { function_index }
                        | Operator::ReturnCall { function_index } => {
                            uses.calls.insert(function_index);
                        }
                        Operator::CallIndirect { .. }
                        | Operator::ReturnCallIndirect { .. }
                        | Operator::CallRef { .. }
                        | Operator::ReturnCallRef { .. } => uses.indirect = true,
                        Operator::RefFunc { function_index } => {
                            scan.indirect_targets.insert(function_index);
                        }
                        Operator::GlobalGet { global_index }
                        | Operator::GlobalSet { global_index } => {
                            uses.globals.insert(global_index);
                        }
                        _ => {}
                    }
                }
                scan.bodies.insert(index, uses);
            }
            Payload::CustomSection(section) if section.name() == GLOBALS_SECTION => {
                for (name, definition) in parse_globals_section(section.data())? {
                    section_globals.insert(name, definition);
                }
            }
            _ => {}
        }
    }

    let mut definitions = section_globals;
    definitions.extend(options.globals.iter().map(|(k, v)| (k.clone(), v.clone())));
    scan.finish(wasm, &types, &definitions, &options.declared)
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

/// What one defined function's body uses.
#[derive(Default)]
struct FunctionUses {
    calls: BTreeSet<u32>,
    globals: BTreeSet<u32>,
    indirect: bool,
}

/// What one pass over the module collected, in wasm index spaces.
#[derive(Default)]
struct Scan {
    imports: Vec<Import>,
    func_imports: u32,
    global_imports: u32,
    /// Function index -> func_name, for `linkcache:fn` imports.
    fn_import_names: BTreeMap<u32, String>,
    /// Global index -> name, for `linkcache:global` imports.
    global_import_names: BTreeMap<u32, String>,
    /// Defined global index -> the global indices its initializer reads.
    defined_globals: BTreeMap<u32, BTreeSet<u32>>,
    exports: Vec<(String, u32)>,
    start: Option<u32>,
    indirect_targets: BTreeSet<u32>,
    instantiation_globals: BTreeSet<u32>,
    bodies: BTreeMap<u32, FunctionUses>,
}

impl Scan {
    fn import(
        &mut self,
        namespace: &str,
        name: &str,
        ty: TypeRef,
        types: &wasmparser::types::TypesRef<'_>,
    ) -> Result<(), AnalysisError> {
        let unsupported = |reason: String| AnalysisError::UnsupportedImport {
            namespace: namespace.into(),
            name: name.into(),
            reason,
        };
        let kind = match ty {
            TypeRef::Func(_) | TypeRef::FuncExact(_) => {
                let index = self.func_imports;
                self.func_imports += 1;
                let sig = func_sig(types, index).map_err(unsupported)?;
                if namespace == FN_NAMESPACE {
                    self.fn_import_names.insert(index, name.into());
                }
                ImportKind::Func(sig)
            }
            TypeRef::Global(global) => {
                let index = self.global_imports;
                self.global_imports += 1;
                let ty = val_type(global.content_type).map_err(unsupported)?;
                if namespace == GLOBAL_NAMESPACE {
                    if ty.zero().is_none() {
                        return Err(unsupported(format!(
                            "a linkcache global must have a numeric type, not {ty}"
                        )));
                    }
                    self.global_import_names.insert(index, name.into());
                }
                ImportKind::Global {
                    ty,
                    mutable: global.mutable,
                }
            }
            TypeRef::Memory(_) => ImportKind::Memory,
            TypeRef::Table(_) => ImportKind::Table,
            TypeRef::Tag(_) => ImportKind::Tag,
        };
        let cache_namespace = namespace == FN_NAMESPACE || namespace == GLOBAL_NAMESPACE;
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

    /// Records `ref.func` targets of a constant expression and returns the globals it
    /// reads.
    fn const_expr(&mut self, expr: &ConstExpr<'_>) -> wasmparser::Result<BTreeSet<u32>> {
        let mut reads = BTreeSet::new();
        let mut ops = expr.get_operators_reader();
        while !ops.eof() {
            match ops.read()? {
                Operator::RefFunc { function_index } => {
                    self.indirect_targets.insert(function_index);
                }
                Operator::GlobalGet { global_index } => {
                    reads.insert(global_index);
                }
                _ => {}
            }
        }
        Ok(reads)
    }

    /// The `linkcache:global` import names behind a global index, following defined
    /// globals' initializers.
    fn imported_globals_behind(&self, global: u32, out: &mut BTreeSet<String>) {
        if let Some(name) = self.global_import_names.get(&global) {
            out.insert(name.clone());
        } else if let Some(reads) = self.defined_globals.get(&global) {
            for &read in reads {
                self.imported_globals_behind(read, out);
            }
        }
    }

    fn finish(
        self,
        wasm: &[u8],
        types: &wasmparser::types::TypesRef<'_>,
        definitions: &BTreeMap<String, Vec<u8>>,
        declared: &BTreeMap<String, Declared>,
    ) -> Result<Manifest, AnalysisError> {
        // The call graph over function indices. Node u32::MAX stands for "instantiation":
        // the start function; it is reached from every export.
        const INSTANTIATION: u32 = u32::MAX;
        let mut graph: DiGraphMap<u32, ()> = DiGraphMap::new();
        for (&index, uses) in &self.bodies {
            graph.add_node(index);
            for &callee in &uses.calls {
                graph.add_edge(index, callee, ());
            }
            if uses.indirect {
                for &target in &self.indirect_targets {
                    graph.add_edge(index, target, ());
                }
            }
        }
        graph.add_node(INSTANTIATION);
        if let Some(start) = self.start {
            graph.add_edge(INSTANTIATION, start, ());
        }

        let mut instantiation_globals = BTreeSet::new();
        for &global in &self.instantiation_globals {
            self.imported_globals_behind(global, &mut instantiation_globals);
        }

        let mut functions = Vec::with_capacity(self.exports.len());
        for (name, index) in &self.exports {
            let mut calls = BTreeSet::new();
            let mut globals = instantiation_globals.clone();
            for root in [*index, INSTANTIATION] {
                let mut dfs = Dfs::new(&graph, root);
                while let Some(reached) = dfs.next(&graph) {
                    if let Some(import) = self.fn_import_names.get(&reached) {
                        calls.insert(import.clone());
                    }
                    if let Some(uses) = self.bodies.get(&reached) {
                        for &global in &uses.globals {
                            self.imported_globals_behind(global, &mut globals);
                        }
                    }
                }
            }
            let (calls, globals) = match declared.get(name) {
                None => (calls.into_iter().collect(), globals.into_iter().collect()),
                Some(declaration) => self.check_declaration(name, declaration, &calls, &globals)?,
            };
            // Exports of one function under two names are two func_names.
            let signature =
                func_sig(types, *index).map_err(|reason| AnalysisError::UnsupportedType {
                    function: name.clone(),
                    reason,
                })?;
            functions.push(Function {
                name: name.clone(),
                signature,
                calls,
                globals,
            });
        }
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        for function in declared.keys() {
            if functions
                .binary_search_by(|f| f.name.cmp(function))
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
            let definition = definitions.get(&import.name).ok_or_else(|| {
                AnalysisError::MissingGlobalDefinition {
                    global: import.name.clone(),
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
                    name: import.name.clone(),
                    reason: "imported twice with different types".into(),
                });
            }
            globals.insert(&import.name, def);
        }

        let manifest = Manifest {
            module: ModuleId::of(wasm),
            byte_len: wasm.len() as u64,
            functions,
            imports: self.imports.clone(),
            globals: globals.into_values().collect(),
        };
        debug_assert_eq!(manifest.check(), Ok(()));
        Ok(manifest)
    }

    fn check_declaration(
        &self,
        function: &str,
        declaration: &Declared,
        calls: &BTreeSet<String>,
        globals: &BTreeSet<String>,
    ) -> Result<(Vec<String>, Vec<String>), AnalysisError> {
        let declared_calls: BTreeSet<String> = declaration.calls.iter().cloned().collect();
        let declared_globals: BTreeSet<String> = declaration.globals.iter().cloned().collect();
        let not_imported = |dependency: &String| AnalysisError::DeclaredNotImported {
            function: function.into(),
            dependency: dependency.clone(),
        };
        if let Some(dep) = declared_calls
            .iter()
            .find(|d| !self.fn_import_names.values().any(|n| n == *d))
        {
            return Err(not_imported(dep));
        }
        if let Some(dep) = declared_globals
            .iter()
            .find(|d| !self.global_import_names.values().any(|n| n == *d))
        {
            return Err(not_imported(dep));
        }
        let undeclared = calls
            .difference(&declared_calls)
            .chain(globals.difference(&declared_globals))
            .next();
        if let Some(dependency) = undeclared {
            return Err(AnalysisError::UndeclaredDependency {
                function: function.into(),
                dependency: dependency.clone(),
            });
        }
        Ok((
            declared_calls.into_iter().collect(),
            declared_globals.into_iter().collect(),
        ))
    }
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
                .insert(global.name.clone(), global.definition.clone());
        }
        for function in &self.functions {
            options.declared.insert(
                function.name.clone(),
                Declared {
                    calls: function.calls.clone(),
                    globals: function.globals.clone(),
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
