//! gc racing writers and readers, in real processes on one directory: 8 writers add
//! the **same** bytes over and over while a collector evicts everything in a loop and
//! readers call. Every add returns Ok, every call returns the right value or a miss,
//! and when the writers stop, no index entry points at nothing; one re-add then makes
//! every function callable.
//!
//! The child processes are this test binary again, running the ignored `gc_race_child`
//! test with a role in the environment.

mod support;

use std::path::Path;
use std::time::Duration;

use linkcache_native::Cache;
use support::{spawn_role, wait_for};

const WRITERS: usize = 8;
const READERS: usize = 2;
const ROUNDS: usize = 25;
const CHAIN: usize = 6;

/// A chain of modules: `c.f0(x) = x`, `c.f<i>(x) = c.f<i-1>(x) + 1` in module i.
fn library() -> Vec<Vec<u8>> {
    (0..CHAIN)
        .map(|i| {
            let text = if i == 0 {
                r#"(module (func (export "c.f0") (param i64) (result i64) (local.get 0)))"#
                    .to_string()
            } else {
                format!(
                    r#"(module (import "linkcache:fn" "c.f{prev}" (func $prev (param i64) (result i64)))
                    (func (export "c.f{i}") (param i64) (result i64)
                      (i64.add (call $prev (local.get 0)) (i64.const 1))))"#,
                    prev = i - 1
                )
            };
            wat::parse_str(text).expect("library WAT")
        })
        .collect()
}

#[test]
#[ignore = "a child process of gc_racing_writers_and_readers_loses_nothing"]
fn gc_race_child() {
    let dir = std::env::var("RACE_DIR").expect("RACE_DIR");
    let dir = Path::new(&dir);
    let role = std::env::var("RACE_ROLE").expect("RACE_ROLE");
    let cache = Cache::open(dir).unwrap();
    let writers_done = || (0..WRITERS).all(|w| dir.join(format!("done-{w}")).exists());
    match role.split_once('-') {
        Some(("writer", n)) => {
            let library = library();
            for round in 0..ROUNDS {
                // Alternate the order, so that callers are sometimes committed first.
                let order: Vec<&Vec<u8>> = if round % 2 == 0 {
                    library.iter().collect()
                } else {
                    library.iter().rev().collect()
                };
                for module in order {
                    cache
                        .add_module(module)
                        .expect("an add racing gc returns Ok");
                }
            }
            std::fs::write(dir.join(format!("done-{n}")), b"").unwrap();
        }
        Some(("gc", _)) => {
            let (mut runs, mut evicted) = (0u64, 0usize);
            while !writers_done() {
                evicted += cache
                    .gc(0, |_| {})
                    .expect("gc racing writers")
                    .evicted
                    .len();
                runs += 1;
            }
            println!("GC runs={runs} evicted={evicted}");
        }
        Some(("reader", _)) => {
            let (mut hits, mut misses) = (0u64, 0u64);
            while !writers_done() {
                for i in 0..CHAIN {
                    let reader = Cache::open(dir).unwrap(); // a fresh store each time
                    match reader.target::<(i64,), i64>(&format!("c.f{i}")) {
                        Ok(f) => {
                            assert_eq!(f.call(&reader, (100,)).unwrap(), 100 + i as i64);
                            hits += 1;
                        }
                        Err(e) => {
                            assert!(e.miss().is_some(), "a reader racing gc: {e}");
                            misses += 1;
                        }
                    }
                }
            }
            println!("READER hits={hits} misses={misses}");
        }
        _ => panic!("unknown role {role}"),
    }
}

fn counter(output: &str, prefix: &str, key: &str) -> u64 {
    // libtest prints `test gc_race_child ... ` before the child's own output.
    let line = output
        .lines()
        .find_map(|l| l.find(prefix).map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no {prefix} line in {output}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn gc_racing_writers_and_readers_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    Cache::open(dir.path()).unwrap();
    let spawn = |role: String| spawn_role("gc_race_child", dir.path(), &role);
    let collector = spawn("gc-0".into());
    let readers: Vec<_> = (0..READERS).map(|r| spawn(format!("reader-{r}"))).collect();
    let writers: Vec<_> = (0..WRITERS).map(|w| spawn(format!("writer-{w}"))).collect();
    for writer in writers {
        let output = writer.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "writer: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let gc = collector.wait_with_output().unwrap();
    let gc_out = String::from_utf8_lossy(&gc.stdout).into_owned();
    assert!(
        gc.status.success(),
        "gc: {}",
        String::from_utf8_lossy(&gc.stderr)
    );
    let mut reader_hits = 0;
    for reader in readers {
        let output = reader.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "reader: {out} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let hits = counter(&out, "READER", "hits");
        let calls = hits + counter(&out, "READER", "misses");
        // Each reader went through the whole chain at least once while the race ran.
        assert!(calls >= CHAIN as u64, "a reader made {calls} calls: {out}");
        reader_hits += hits;
    }
    wait_for(
        &dir.path().join(format!("done-{}", WRITERS - 1)),
        Duration::from_secs(1),
    );
    // The race happened: gc ran during the writes and evicted modules they had added.
    let evicted = counter(&gc_out, "GC", "evicted");
    eprintln!("{gc_out} readers hit {reader_hits} times");
    assert!(evicted > 0, "gc evicted nothing: {gc_out}");

    // No index entry points at nothing, nothing is torn.
    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(cache.dir().verify(|_| {}).unwrap(), []);
    // One re-add, and every function is callable with the right value.
    for module in library() {
        cache.add_module(&module).unwrap();
    }
    for i in 0..CHAIN {
        let f = cache.target::<(i64,), i64>(&format!("c.f{i}")).unwrap();
        assert_eq!(f.call(&cache, (7,)).unwrap(), 7 + i as i64);
    }
    assert_eq!(cache.dir().verify(|_| {}).unwrap(), []);
    assert_eq!(cache.dir().modules().unwrap().len(), CHAIN);
}
