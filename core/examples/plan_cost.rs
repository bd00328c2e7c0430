//! The planner's own CPU per plan, on the benchmark's workload, without any host.
//!
//! Builds a [`MemoryStore`] of the benchmark's own modules at its default size
//! (`linkcache_tests::synthetic::Params::sized`: modules of 8 exported functions; each
//! function of module k calls 2 functions of module k + 1 through `linkcache:fn`
//! imports, in chains of 10 modules whose last module calls 2 functions of its own; one
//! `linkcache:global` per function; 10 % of the modules written twice with other
//! bytes), then plans the 10-module and the 1-module closures of a chain in the middle
//! with [`plan`] and [`literal_global`], many times, each with a fresh
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
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use linkcache_core::{
    Candidate, Linkage, LoadPlan, Manifest, MemoryStore, ModuleId, Store, literal_global, plan,
};
use linkcache_tests::synthetic::Params;

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
    let params = Params::sized(modules);
    let closures: Vec<usize> = args.next().map_or(vec![params.depth, 1], |a| {
        a.split(',').map(|c| c.parse().expect("CLOSURES")).collect()
    });
    assert!(modules >= 3 * params.depth, "at least three chains");

    let started = Instant::now();
    let mut store = MemoryStore::new();
    for (k, variant) in params.all_modules() {
        store
            .add(&params.module_bytes(k, variant))
            .expect("generated modules analyze");
    }
    println!(
        "store: {} modules ({modules} distinct) in {:.0} ms",
        store.len(),
        started.elapsed().as_secs_f64() * 1e3
    );

    // A full chain in the middle of the store, as the benchmark picks it.
    for closure in closures {
        let (target, _) = params
            .target_with_closure(closure)
            .unwrap_or_else(|| panic!("closures of 1 to {} modules", params.depth));
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
