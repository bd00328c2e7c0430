//! The planner's own CPU per plan, on the benchmark's workload, without any host.
//!
//! Builds a [`MemoryStore`] shaped like `bench/src/workload.rs` at its default size
//! (modules of 8 exported functions; each function of module k calls 2 functions of
//! module k + 1 through `linkcache:fn` imports, in chains of 10 modules whose last module
//! calls 2 functions of its own; one `linkcache:global` per function, names from a pool
//! of 256, definitions in the `linkcache.globals` section; 10 % of the modules written
//! twice with other bytes), then plans the 10-module and the 1-module closures of a chain
//! in the middle with [`plan`] and [`literal_global`], many times, each with a fresh
//! [`Linkage`], and prints the time per plan and a digest of the plan (which must not
//! change when the planner gets faster).
//!
//! ```text
//! cargo run --release -p linkcache-core --example plan_cost [MODULES] [ITERATIONS] [CLOSURES]
//! ```
//!
//! CLOSURES is `10`, `1` or `10,1` (the default).
//!
//! Wall times on a shared machine vary several-fold; count instructions instead, with
//! only the plans collected (the store's construction is not):
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='linkcache_core::store::plan<*' \
//!     target/release/examples/plan_cost 10000 100 10
//! ```
//!
//! and divide the total by the number of plans: ITERATIONS + 1 per closure (the first
//! plan gives the digest).

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use linkcache_core::{
    Candidate, FN_NAMESPACE, GLOBAL_NAMESPACE, GLOBALS_SECTION, Linkage, LoadPlan, Manifest,
    MemoryStore, ModuleId, Store, encode_globals_section, literal_global, plan,
};
use wasm_encoder::{
    BlockType, CodeSection, CustomSection, EntityType, ExportKind, ExportSection, Function,
    FunctionSection, GlobalType, ImportSection, Module, TypeSection, ValType,
};

/// The system allocator, counting allocations (a repeatable number, unlike times).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const FUNCS: usize = 8;
const FAN_OUT: usize = 2;
const DEPTH: usize = 10;
const DUP_PERMILLE: u64 = 100;
const GLOBAL_POOL: usize = 256;

fn func_name(k: usize, j: usize) -> String {
    format!("m{k}.f{j}")
}

fn chain_end(modules: usize, k: usize) -> usize {
    ((k / DEPTH + 1) * DEPTH).min(modules) - 1
}

fn duplicated(k: usize) -> bool {
    (k as u64 + 1) * DUP_PERMILLE / 1000 > k as u64 * DUP_PERMILLE / 1000
}

/// The global function `j` of module `k` reads, and its value.
fn global_of(k: usize, j: usize) -> (String, i64) {
    let index = (k * FUNCS + j) % GLOBAL_POOL;
    (format!("g{index}"), index as i64 * 7 + 1)
}

/// Module `k` as the benchmark writes it; `variant` > 0 is a duplicate with other bytes.
fn module_bytes(modules: usize, k: usize, variant: u32) -> Vec<u8> {
    let cross = k < chain_end(modules, k);
    let callees = |j: usize| -> Vec<usize> {
        (0..FAN_OUT)
            .map(|t| {
                if cross {
                    (j * FAN_OUT + t) % FUNCS
                } else {
                    (j + 1 + t) % FUNCS
                }
            })
            .collect()
    };
    // Import index of each callee of module k + 1, in first-call order.
    let mut fn_imports: BTreeMap<usize, u32> = BTreeMap::new();
    if cross {
        for j in 0..FUNCS {
            for callee in callees(j) {
                let next = fn_imports.len() as u32;
                fn_imports.entry(callee).or_insert(next);
            }
        }
    }
    let mut global_imports: BTreeMap<String, (u32, i64)> = BTreeMap::new();
    for j in 0..FUNCS {
        let (name, value) = global_of(k, j);
        let next = global_imports.len() as u32;
        global_imports.entry(name).or_insert((next, value));
    }

    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I64]);
    let mut imports = ImportSection::new();
    let mut by_index: Vec<(u32, usize)> = fn_imports.iter().map(|(&c, &i)| (i, c)).collect();
    by_index.sort();
    for (_, callee) in &by_index {
        imports.import(
            FN_NAMESPACE,
            &func_name(k + 1, *callee),
            EntityType::Function(0),
        );
    }
    let mut globals_by_index: Vec<(u32, &String)> =
        global_imports.iter().map(|(n, (i, _))| (*i, n)).collect();
    globals_by_index.sort();
    for (_, name) in &globals_by_index {
        imports.import(
            GLOBAL_NAMESPACE,
            name,
            EntityType::Global(GlobalType {
                val_type: ValType::I64,
                mutable: false,
                shared: false,
            }),
        );
    }
    let imported = fn_imports.len() as u32;

    let mut functions = FunctionSection::new();
    let mut exports = ExportSection::new();
    let mut code = CodeSection::new();
    for j in 0..FUNCS {
        functions.function(0);
        exports.export(&func_name(k, j), ExportKind::Func, imported + j as u32);
        let mut body = Function::new([]);
        let mut ins = body.instructions();
        ins.local_get(0)
            .i32_const(0)
            .i32_gt_s()
            .if_(BlockType::Result(ValType::I64));
        for (t, callee) in callees(j).into_iter().enumerate() {
            let index = if cross {
                fn_imports[&callee]
            } else {
                imported + callee as u32
            };
            ins.local_get(0).i32_const(1).i32_sub().call(index);
            if t > 0 {
                ins.i64_add();
            }
        }
        ins.else_().i64_const((k * FUNCS + j) as i64).end();
        let (name, _) = global_of(k, j);
        ins.global_get(global_imports[&name].0).i64_add();
        ins.end();
        code.function(&body);
    }

    let mut module = Module::new();
    module
        .section(&types)
        .section(&imports)
        .section(&functions)
        .section(&exports)
        .section(&code);
    let definitions: Vec<(String, Vec<u8>)> = global_imports
        .iter()
        .map(|(name, (_, value))| (name.clone(), value.to_string().into_bytes()))
        .collect();
    let data = encode_globals_section(definitions.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    module.section(&CustomSection {
        name: Cow::Borrowed(GLOBALS_SECTION),
        data: Cow::Owned(data),
    });
    if variant > 0 {
        module.section(&CustomSection {
            name: Cow::Borrowed("bench.variant"),
            data: Cow::Owned(variant.to_le_bytes().to_vec()),
        });
    }
    module.finish()
}

/// A store that counts the questions it answers.
struct Questions<'a> {
    store: &'a mut MemoryStore,
    questions: usize,
}

impl Store for Questions<'_> {
    type Error = core::convert::Infallible;

    fn candidates(&mut self, func_name: &str) -> Result<Vec<Candidate>, Self::Error> {
        self.questions += 1;
        self.store.candidates(func_name)
    }

    fn manifest(
        &mut self,
        module: &ModuleId,
    ) -> Result<Result<std::sync::Arc<Manifest>, String>, Self::Error> {
        self.questions += 1;
        self.store.manifest(module)
    }
}

fn plan_once(store: &mut MemoryStore, target: &str) -> (LoadPlan, usize) {
    let mut counting = Questions {
        store,
        questions: 0,
    };
    let mut linkage = Linkage::new();
    let load = plan(
        &mut counting,
        &mut linkage,
        target,
        None,
        &mut literal_global,
    )
    .unwrap_or_else(|never| match never {})
    .unwrap_or_else(|miss| panic!("{target}: {miss}"));
    (load, counting.questions)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let modules: usize = args.next().map_or(10_000, |a| a.parse().expect("MODULES"));
    let iterations: usize = args
        .next()
        .map_or(2_000, |a| a.parse().expect("ITERATIONS"));
    let closures: Vec<usize> = args.next().map_or(vec![DEPTH, 1], |a| {
        a.split(',').map(|c| c.parse().expect("CLOSURES")).collect()
    });
    assert!(modules >= 3 * DEPTH, "at least three chains");

    let started = Instant::now();
    let mut store = MemoryStore::new();
    for k in 0..modules {
        store
            .add(&module_bytes(modules, k, 0))
            .expect("generated modules analyze");
        if duplicated(k) {
            store
                .add(&module_bytes(modules, k, 1))
                .expect("generated modules analyze");
        }
    }
    println!(
        "store: {} modules ({modules} distinct) in {:.0} ms",
        store.len(),
        started.elapsed().as_secs_f64() * 1e3
    );

    // A full chain in the middle of the store, as the benchmark picks it.
    let start = (modules / DEPTH / 2) * DEPTH;
    for closure in closures {
        assert!(
            (1..=DEPTH).contains(&closure),
            "closures of 1 to {DEPTH} modules"
        );
        let target = func_name(start + DEPTH - closure, 0);
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        let (load, questions) = plan_once(&mut store, &target);
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
        assert_eq!(load.modules.len(), closure, "{target}");
        let digest = ModuleId::of(format!("{load:?}").as_bytes()).short();
        let started = Instant::now();
        for _ in 0..iterations {
            black_box(plan_once(&mut store, black_box(&target)));
        }
        let per_plan = started.elapsed().as_secs_f64() * 1e3 / iterations as f64;
        println!(
            "closure {closure:>2} ({target}): {} functions bound, {questions} store questions, \
             {allocations} allocations, {per_plan:.4} ms per plan ({iterations} plans), \
             plan digest {digest}",
            load.bindings.len()
        );
    }
}
