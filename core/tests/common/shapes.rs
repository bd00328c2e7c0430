//! Builders of the module shapes that once made the analysis slow or overflow its stack:
//! deep global initializers, all-indirect modules, long direct call chains.

use wasm_encoder::{
    CodeSection, ConstExpr, ElementSection, Elements, EntityType, ExportKind, ExportSection,
    Function, FunctionSection, GlobalSection, GlobalType, ImportSection, Instruction, Module,
    RefType, TableSection, TableType, TypeSection, ValType,
};

fn i64_global(mutable: bool) -> GlobalType {
    GlobalType {
        val_type: ValType::I64,
        mutable,
        shared: false,
    }
}

/// Imports the immutable i64 globals `cfg.a` (index 0) and `cfg.b` (index 1), then
/// defines `defined` globals where each one adds the two before it (extended-const), a
/// DAG whose naive walk is exponential. Exports `reads.last` (reads the last global)
/// and `reads.none`.
pub fn global_dag(defined: u32) -> Vec<u8> {
    global_module(defined, |index| {
        ConstExpr::extended([
            Instruction::GlobalGet(index - 2),
            Instruction::GlobalGet(index - 1),
            Instruction::I64Add,
        ])
    })
}

/// Like [`global_dag`], with a chain: each defined global reads the one before it.
pub fn global_chain(defined: u32) -> Vec<u8> {
    global_module(defined, |index| ConstExpr::global_get(index - 1))
}

fn global_module(defined: u32, init: impl Fn(u32) -> ConstExpr) -> Vec<u8> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I64]);
    module.section(&types);
    let mut imports = ImportSection::new();
    imports.import(
        "linkcache:global",
        "cfg.a",
        EntityType::Global(i64_global(false)),
    );
    imports.import(
        "linkcache:global",
        "cfg.b",
        EntityType::Global(i64_global(false)),
    );
    module.section(&imports);
    let mut functions = FunctionSection::new();
    functions.function(0).function(0);
    module.section(&functions);
    let mut globals = GlobalSection::new();
    for index in 2..2 + defined {
        globals.global(i64_global(false), &init(index));
    }
    module.section(&globals);
    let mut exports = ExportSection::new();
    exports.export("reads.last", ExportKind::Func, 0);
    exports.export("reads.none", ExportKind::Func, 1);
    module.section(&exports);
    let mut code = CodeSection::new();
    let mut last = Function::new([]);
    last.instruction(&Instruction::GlobalGet(defined + 1))
        .instruction(&Instruction::End);
    code.function(&last);
    let mut none = Function::new([]);
    none.instruction(&Instruction::I64Const(0))
        .instruction(&Instruction::End);
    code.function(&none);
    module.section(&code);
    let mut wasm = module.finish();
    linkcache_core::append_globals_section(&mut wasm, [("cfg.a", &b"1"[..]), ("cfg.b", b"2")]);
    wasm
}

/// `functions` exported functions `ind.<i>`, each of which `call_indirect`s through one
/// table listing all of them; function 0 also calls the import `dep.f`
/// (`linkcache:fn`), so every export reaches it.
pub fn all_indirect(functions: u32) -> Vec<u8> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    module.section(&types);
    let mut imports = ImportSection::new();
    imports.import("linkcache:fn", "dep.f", EntityType::Function(0));
    module.section(&imports);
    let mut section = FunctionSection::new();
    for _ in 0..functions {
        section.function(0);
    }
    module.section(&section);
    let mut tables = TableSection::new();
    tables.table(TableType {
        element_type: RefType::FUNCREF,
        table64: false,
        minimum: u64::from(functions),
        maximum: Some(u64::from(functions)),
        shared: false,
    });
    module.section(&tables);
    let mut exports = ExportSection::new();
    for i in 0..functions {
        exports.export(&format!("ind.{i}"), ExportKind::Func, 1 + i);
    }
    module.section(&exports);
    let targets: Vec<u32> = (1..=functions).collect();
    let mut elements = ElementSection::new();
    elements.active(
        None,
        &ConstExpr::i32_const(0),
        Elements::Functions(targets.into()),
    );
    module.section(&elements);
    let mut code = CodeSection::new();
    for i in 0..functions {
        let mut body = Function::new([]);
        body.instruction(&Instruction::LocalGet(0))
            .instruction(&Instruction::LocalGet(0))
            .instruction(&Instruction::CallIndirect {
                type_index: 0,
                table_index: 0,
            });
        if i == 0 {
            body.instruction(&Instruction::Call(0));
        }
        body.instruction(&Instruction::End);
        code.function(&body);
    }
    module.section(&code);
    module.finish()
}

/// `functions` defined functions where function i calls function i + 1 and the last
/// calls the import `dep.f`; only the first is exported, as `chain.head`.
pub fn call_chain(functions: u32) -> Vec<u8> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    module.section(&types);
    let mut imports = ImportSection::new();
    imports.import("linkcache:fn", "dep.f", EntityType::Function(0));
    module.section(&imports);
    let mut section = FunctionSection::new();
    for _ in 0..functions {
        section.function(0);
    }
    module.section(&section);
    let mut exports = ExportSection::new();
    exports.export("chain.head", ExportKind::Func, 1);
    module.section(&exports);
    let mut code = CodeSection::new();
    for i in 0..functions {
        let mut body = Function::new([]);
        let callee = if i + 1 == functions { 0 } else { i + 2 };
        body.instruction(&Instruction::Call(callee))
            .instruction(&Instruction::End);
        code.function(&body);
    }
    module.section(&code);
    module.finish()
}
