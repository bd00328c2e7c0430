//! (6) linkcache in a wasmtime embedder: calls per second from 1 and 2 threads, each
//! with its own store, against the one-store-behind-a-mutex design (the simple path,
//! which was the only path before); and a store per request against a bare
//! `Linker::instantiate` of the same module, both with the module already in the
//! process.

use std::sync::Arc;
use std::time::Instant;

use linkcache_native::{Cache, LinkageView, StoreLinkage};
use wasmtime::{Linker, Module, Result, Store};

use crate::report::{Table, median, ms, ratio};

/// `bench.work(n)`: a loop of `n` multiply-adds, so that one call does a little work
/// like a real cached function, not just an empty call.
const WORK_MODULE: &str = r#"(module
    (func (export "bench.work") (param $n i64) (result i64)
        (local $acc i64)
        (block $done (loop $next
            (br_if $done (i64.eqz (local.get $n)))
            (local.set $acc (i64.add (i64.mul (local.get $acc) (i64.const 31)) (local.get $n)))
            (local.set $n (i64.sub (local.get $n) (i64.const 1)))
            (br $next)))
        (local.get $acc)))"#;

/// Iterations of the loop per call.
const WORK: i64 = 200;

struct Worker {
    linkage: StoreLinkage<Worker>,
}

impl LinkageView for Worker {
    fn linkage(&mut self) -> &mut StoreLinkage<Worker> {
        &mut self.linkage
    }
}

/// Calls per second of `threads` threads, each calling `calls` times.
fn calls_per_second(threads: usize, calls: usize, run: impl Fn(usize) + Sync) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| run(calls));
        }
    });
    (threads * calls) as f64 / started.elapsed().as_secs_f64()
}

pub fn section(dir: &std::path::Path, quick: bool, runs: usize) -> Result<Vec<Table>> {
    let _ = std::fs::remove_dir_all(dir);
    let cache = Cache::open(dir)?;
    let wasm = wat::parse_str(WORK_MODULE)?;
    cache.add_module(&wasm)?;
    let expected = {
        let mut acc = 0i64;
        for n in (1..=WORK).rev() {
            acc = acc.wrapping_mul(31).wrapping_add(n);
        }
        acc
    };
    let calls = if quick { 2_000 } else { 200_000 };
    let linker = Arc::new(Linker::new(cache.engine()));

    // The one-lock design: every thread calls through the cache's own store.
    let simple = cache.target::<(i64,), i64>("bench.work")?;
    let one_lock = |calls: usize| {
        for _ in 0..calls {
            assert_eq!(simple.call(&cache, (WORK,)).unwrap(), expected);
        }
    };
    // Per-store: each thread its own store, targeted once.
    let per_store = |calls: usize| {
        let mut store = Store::new(
            cache.engine(),
            Worker {
                linkage: cache.store_linkage(Arc::clone(&linker)),
            },
        );
        let work = cache
            .get_typed_func::<i64, i64, _>(&mut store, "bench.work")
            .unwrap();
        for _ in 0..calls {
            assert_eq!(work.call(&mut store, WORK).unwrap(), expected);
        }
    };

    let mut rates: [[Vec<f64>; 2]; 2] = Default::default();
    for _ in 0..runs {
        for (threads, slot) in [(1, 0), (2, 1)] {
            rates[0][slot].push(calls_per_second(threads, calls, one_lock));
            rates[1][slot].push(calls_per_second(threads, calls, per_store));
        }
    }
    let rate = |design: usize, slot: usize| median(&rates[design][slot]);
    let mut threads = Table::new(
        "(6a) Calls per second from 1 and 2 threads (this machine has 2 cores)",
        &[
            "design",
            "1 thread",
            "2 threads",
            "2 threads / 1 thread",
            "vs one lock, 2 threads",
        ],
    );
    for (design, name) in [
        (0, "one store behind a mutex (simple path)"),
        (1, "a store per thread"),
    ] {
        threads.row(vec![
            name.into(),
            format!("{:.0}", rate(design, 0)),
            format!("{:.0}", rate(design, 1)),
            ratio(rate(design, 1), rate(design, 0)),
            ratio(rate(design, 1), rate(0, 1)),
        ]);
    }
    threads.note(format!(
        "Each call runs a {WORK}-iteration loop; {calls} calls per thread, medians of {runs} runs, \
         designs interleaved. Target: a store per thread with 2 threads >= 1.8x the one-lock design."
    ));

    // A store per request, module already in the process.
    let requests = if quick { 200 } else { 20_000 };
    let module = Module::new(cache.engine(), &wasm)?;
    let bare_linker: Linker<()> = Linker::new(cache.engine());
    let mut per_request = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        for _ in 0..requests {
            let mut store = Store::new(
                cache.engine(),
                Worker {
                    linkage: cache.store_linkage(Arc::clone(&linker)),
                },
            );
            let work = cache.get_typed_func::<i64, i64, _>(&mut store, "bench.work")?;
            std::hint::black_box(&work);
        }
        per_request.push(started.elapsed().as_secs_f64() * 1e3 / requests as f64);

        let started = Instant::now();
        for _ in 0..requests {
            let mut store = Store::new(cache.engine(), ());
            let instance = bare_linker.instantiate(&mut store, &module)?;
            let work = instance.get_typed_func::<i64, i64>(&mut store, "bench.work")?;
            std::hint::black_box(&work);
        }
        bare.push(started.elapsed().as_secs_f64() * 1e3 / requests as f64);
    }
    let (per_request, bare) = (median(&per_request), median(&bare));
    let mut request = Table::new(
        "(6b) A store per request: new Store to a callable 1-module closure, module already in the process",
        &["path", "per request", "vs bare"],
    );
    request.row(vec![
        "bare `Linker::instantiate` + `get_typed_func`".into(),
        ms(bare),
        ratio(bare, bare),
    ]);
    request.row(vec![
        "linkcache `store_linkage` + `get_typed_func`".into(),
        ms(per_request),
        ratio(per_request, bare),
    ]);
    request.note(format!(
        "{requests} requests per run, medians of {runs} runs, sides interleaved. Target: within 2x of bare."
    ));
    let stats = cache.stats();
    request.note(format!(
        "Compiled or deserialized in the whole section: {} module(s) (one per process).",
        stats.modules_compiled + stats.artifacts_deserialized
    ));
    Ok(vec![threads, request])
}
