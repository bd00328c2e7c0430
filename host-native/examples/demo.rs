//! The linkcache demo: a tiny "JIT" compiles a library of functions on demand into a
//! cache in the default directory, then a second process loads them without compiling.
//!
//! ```text
//! cargo run --release -p linkcache-native --example demo            # cold, then warm
//! cargo run --release -p linkcache-native --example demo -- --reset  # forget the demo's modules first
//! ```
//!
//! The library: `util.add`/`util.mul` in one module; `math.fib` (recursive, calls
//! `util.add` in another module), `math.gcd`, `math.pow` (calls `util.mul`, reduces
//! modulo the global `cfg.modulus`), `stack.run` (a tiny stack interpreter calling
//! `math.pow` and `math.gcd`), each compiled into a module of its own, plus 300 unrelated
//! generated modules that partial load never touches.

use std::process::Command;
use std::time::{Duration, Instant};

use linkcache_native::core::Miss;
use linkcache_native::{Cache, Error, Stats, default_dir};

const FILLERS: usize = 300;

/// The "compiler": WAT source for the module that defines `func_name`.
fn source(func_name: &str) -> Option<String> {
    Some(match func_name {
        "util.add" | "util.mul" => r#"(module
            (func (export "util.add") (param i64 i64) (result i64) (i64.add (local.get 0) (local.get 1)))
            (func (export "util.mul") (param i64 i64) (result i64) (i64.mul (local.get 0) (local.get 1))))"#
            .into(),
        "math.fib" => r#"(module
            (import "linkcache:fn" "util.add" (func $add (param i64 i64) (result i64)))
            (func $fib (export "math.fib") (param $n i64) (result i64)
                (if (result i64) (i64.lt_s (local.get $n) (i64.const 2))
                    (then (local.get $n))
                    (else (call $add
                        (call $fib (i64.sub (local.get $n) (i64.const 1)))
                        (call $fib (i64.sub (local.get $n) (i64.const 2))))))))"#
            .into(),
        "math.gcd" => r#"(module
            (func $gcd (export "math.gcd") (param $a i64) (param $b i64) (result i64)
                (if (result i64) (i64.eqz (local.get $b)) (then (local.get $a))
                    (else (call $gcd (local.get $b) (i64.rem_u (local.get $a) (local.get $b)))))))"#
            .into(),
        "math.pow" => r#"(module
            (import "linkcache:fn" "util.mul" (func $mul (param i64 i64) (result i64)))
            (import "linkcache:global" "cfg.modulus" (global $m i64))
            (func (export "math.pow") (param $b i64) (param $e i64) (result i64) (local $r i64)
                (local.set $r (i64.const 1))
                (block $done (loop $next
                    (br_if $done (i64.eqz (local.get $e)))
                    (local.set $r (i64.rem_u (call $mul (local.get $r) (local.get $b)) (global.get $m)))
                    (local.set $e (i64.sub (local.get $e) (i64.const 1)))
                    (br $next)))
                (local.get $r))
            (@custom "linkcache.globals" "\01\0bcfg.modulus\0a1000000007"))"#
            .into(),
        // A stack machine: program 0 computes gcd(pow(3, 20), 6561); program 1 pow(2, 30).
        "stack.run" => r#"(module
            (import "linkcache:fn" "math.pow" (func $pow (param i64 i64) (result i64)))
            (import "linkcache:fn" "math.gcd" (func $gcd (param i64 i64) (result i64)))
            (func (export "stack.run") (param $program i32) (result i64)
                (if (result i64) (i32.eqz (local.get $program))
                    (then (call $gcd (call $pow (i64.const 3) (i64.const 20)) (i64.const 6561)))
                    (else (call $pow (i64.const 2) (i64.const 30))))))"#
            .into(),
        other => {
            let i: usize = other.strip_prefix("gen.f")?.parse().ok()?;
            format!(r#"(module (func (export "gen.f{i}") (result i64) (i64.const {i})))"#)
        }
    })
}

/// Compiles what a miss says is missing: the function itself or its dependency.
fn compile(miss: &Miss) -> Result<Vec<Vec<u8>>, String> {
    let wanted = miss
        .detail()
        .filter(|_| miss.cause() == "missing_dependency")
        .unwrap_or(miss.function());
    let text = source(wanted).ok_or_else(|| format!("the demo compiler knows no `{wanted}`"))?;
    Ok(vec![wat::parse_str(&text).map_err(|e| e.to_string())?])
}

struct Row {
    call: &'static str,
    result: i64,
    time: Duration,
}

fn run_calls(cache: &Cache) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    let mut timed =
        |call: &'static str, f: &mut dyn FnMut() -> Result<i64, Error>| -> Result<(), Error> {
            let start = Instant::now();
            let result = f()?;
            rows.push(Row {
                call,
                result,
                time: start.elapsed(),
            });
            Ok(())
        };
    timed("math.fib(25)", &mut || {
        cache
            .get_or_compile::<(i64,), i64, String>("math.fib", compile)?
            .call(cache, (25,))
    })?;
    timed("math.gcd(1071, 462)", &mut || {
        cache
            .get_or_compile::<(i64, i64), i64, String>("math.gcd", compile)?
            .call(cache, (1071, 462))
    })?;
    timed("math.pow(7, 1000) mod p", &mut || {
        cache
            .get_or_compile::<(i64, i64), i64, String>("math.pow", compile)?
            .call(cache, (7, 1000))
    })?;
    timed("stack.run(0)", &mut || {
        cache
            .get_or_compile::<(i32,), i64, String>("stack.run", compile)?
            .call(cache, (0,))
    })?;
    Ok(rows)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = default_dir();
    if args.iter().any(|a| a == "--warm-child") {
        return warm_child(&dir);
    }
    println!("linkcache demo: cache directory {}", dir.display());
    let cache = Cache::open(&dir)?;
    if args.iter().any(|a| a == "--reset") {
        reset(&cache)?;
    }

    // The unrelated part of the cache: modules the calls below never need.
    let before = cache.dir().modules()?.len();
    for i in 0..FILLERS {
        let name = format!("gen.f{i}");
        if cache.dir().candidates(&name)?.is_empty() {
            cache.add_module(&wat::parse_str(source(&name).unwrap()).expect("filler WAT"))?;
        }
    }
    let added = cache.dir().modules()?.len() - before;
    println!(
        "cache holds {} modules ({added} added now)\n",
        cache.dir().modules()?.len()
    );

    println!("process 1 (compiles whatever the cache lacks):");
    let cold = run_calls(&cache)?;
    let cold_stats = cache.stats();
    print_stats(&cold_stats);

    println!("\nprocess 2 (a fresh process on the same directory):");
    let output = Command::new(std::env::current_exe().expect("own path"))
        .arg("--warm-child")
        .env("LINKCACHE_DIR", &dir)
        .output()
        .map_err(|e| Error::Link(format!("starting the second process: {e}")))?;
    if !output.status.success() {
        return Err(Error::Link(format!(
            "the second process failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let child = String::from_utf8_lossy(&output.stdout);
    let (warm_times, warm_stats) = child.split_once("\n--stats--\n").expect("child output");
    let (warm_times, warm_counts) = warm_times
        .split_once("\n--compiled reused--\n")
        .expect("child output");
    let (warm_compiled, warm_reused) = warm_counts.split_once(' ').expect("child counts");
    let warm: Vec<f64> = warm_times
        .lines()
        .map(|l| l.parse().expect("child time"))
        .collect();
    println!("{warm_stats}");

    println!("\n| call | result | process 1 | process 2 | speed-up |");
    println!("|---|---:|---:|---:|---:|");
    for (row, warm_ms) in cold.iter().zip(&warm) {
        let cold_ms = row.time.as_secs_f64() * 1000.0;
        println!(
            "| {} | {} | {cold_ms:.2} ms | {warm_ms:.2} ms | {:.0}x |",
            row.call,
            row.result,
            cold_ms / warm_ms.max(1e-6)
        );
    }
    if cold_stats.modules_compiled == 0 {
        println!("\n(process 1 found everything cached by an earlier run; `--reset` starts cold)");
    }
    println!(
        "\nOnly the closure of each call was loaded: {} of {} modules. Process 1 compiled {} and \
         reused {} precompiled; process 2 compiled {warm_compiled} and reused {warm_reused}.",
        cold_stats.modules_loaded,
        cache.dir().modules()?.len(),
        cold_stats.modules_compiled,
        cold_stats.artifacts_deserialized,
    );
    println!("\nThe cache these processes filled: {}", dir.display());
    println!(
        "Look inside it with the `linkcache` CLI (`cargo run -p linkcache-native --features cli --bin linkcache -- ...`):"
    );
    let dir_arg = format!("--dir '{}'", dir.display());
    println!("  linkcache {dir_arg} stats");
    println!(
        "  linkcache {dir_arg} graph --format dot    # add a func_name (stack.run) for one closure"
    );
    Ok(())
}

fn warm_child(dir: &std::path::Path) -> Result<(), Error> {
    let cache = Cache::open(dir)?;
    let rows = run_calls(&cache)?;
    for row in &rows {
        println!("{}", row.time.as_secs_f64() * 1000.0);
    }
    let stats = cache.stats();
    println!("--compiled reused--");
    println!(
        "{} {}",
        stats.modules_compiled, stats.artifacts_deserialized
    );
    println!("--stats--");
    print_stats(&stats);
    Ok(())
}

fn print_stats(stats: &Stats) {
    println!(
        "  {} hits, {} misses {:?}, {} compiler runs; {} modules loaded: {} compiled from wasm, {} precompiled artifacts reused; \
         {} globals validated; {:.2} ms loading",
        stats.hits,
        stats.total_misses(),
        stats.misses,
        stats.compiles,
        stats.modules_loaded,
        stats.modules_compiled,
        stats.artifacts_deserialized,
        stats.globals_validated,
        stats.load_time.as_secs_f64() * 1000.0
    );
    if let Some(reason) = &stats.untrusted_reason {
        println!("  precompiled code disabled: {reason}");
    }
}

/// Removes the demo's library (not the fillers, not other programs' modules).
fn reset(cache: &Cache) -> Result<(), Error> {
    let mut removed = 0;
    for name in ["util.add", "math.fib", "math.gcd", "math.pow", "stack.run"] {
        for candidate in cache.dir().candidates(name)? {
            cache.dir().remove(&candidate.module)?;
            removed += 1;
        }
    }
    println!("reset: removed {removed} demo modules");
    Ok(())
}
