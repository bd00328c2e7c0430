//! Racing processes on one cache directory: 8 writers compile the same library into
//! modules of their own and add them while 8 readers target and call its functions.
//!
//! The child processes are this test binary again, running the ignored `race_child`
//! test with a role in the environment. They start together: each opens the cache,
//! says it is ready, and waits for the parent's go.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use linkcache_native::Cache;
use linkcache_native::core::Value;
use support::{linkcache, spawn_role, stderr, stdout, wait_for};

const WRITERS: usize = 8;
const READERS: usize = 8;

/// The library, as writer `writer` compiles it: the same code, bytes of its own (a
/// custom section names the writer).
fn library(writer: usize) -> Vec<Vec<u8>> {
    let tag = format!(r#"(@custom "writer" "{writer}")"#);
    [
        format!(
            r#"(module
            (func (export "r.add") (param i64 i64) (result i64) (i64.add (local.get 0) (local.get 1)))
            (func (export "r.mul") (param i64 i64) (result i64) (i64.mul (local.get 0) (local.get 1))) {tag})"#
        ),
        format!(
            r#"(module
            (import "linkcache:fn" "r.mul" (func $mul (param i64 i64) (result i64)))
            (func $sq (export "r.sq") (param i64) (result i64) (call $mul (local.get 0) (local.get 0)))
            (func (export "r.cube") (param i64) (result i64) (call $mul (call $sq (local.get 0)) (local.get 0))) {tag})"#
        ),
        format!(
            r#"(module
            (import "linkcache:fn" "r.cube" (func $cube (param i64) (result i64)))
            (import "linkcache:fn" "r.add" (func $add (param i64 i64) (result i64)))
            (import "linkcache:global" "cfg.k" (global $k i64))
            (func (export "r.f") (param i64) (result i64) (call $add (call $cube (local.get 0)) (global.get $k)))
            (@custom "linkcache.globals" "\01\05cfg.k\015") {tag})"#
        ),
    ]
    .iter()
    .map(|text| wat::parse_str(text).expect("library WAT"))
    .collect()
}

/// The functions readers call, with an argument and the right result.
const CALLS: [(&str, &[i64], i64); 4] = [
    ("r.f", &[3], 32),
    ("r.cube", &[4], 64),
    ("r.sq", &[5], 25),
    ("r.add", &[2, 3], 5),
];

/// Every func_name of the library, the dependencies included.
const FUNCS: [&str; 5] = ["r.add", "r.mul", "r.sq", "r.cube", "r.f"];

/// Runs as a child process: a writer or a reader.
#[test]
#[ignore = "a child process of racing_writers_and_readers_leave_a_sound_cache"]
fn race_child() {
    let dir = PathBuf::from(std::env::var("RACE_DIR").expect("RACE_DIR"));
    let role = std::env::var("RACE_ROLE").expect("RACE_ROLE");
    let cache = Cache::open(&dir).unwrap();
    std::fs::write(dir.join(format!("ready-{role}")), b"").unwrap();
    wait_for(&dir.join("go"), Duration::from_secs(60));
    if let Some(writer) = role.strip_prefix("writer") {
        let writer: usize = writer.parse().unwrap();
        let mut modules = library(writer);
        // Half the writers add dependencies last, so that readers see every state a
        // race can produce (a caller committed before its callees).
        if writer % 2 == 1 {
            modules.reverse();
        }
        for module in &modules {
            cache.add_module(module).unwrap();
        }
        return;
    }
    // A reader: target and call until every function has been called right 20 times.
    // Every binding this process makes (the dependencies too) must never change.
    let mut bindings: BTreeMap<&str, String> = BTreeMap::new();
    let (mut successes, mut misses, mut hits_during_writes) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(50);
    while successes < 20 * CALLS.len() && Instant::now() < deadline {
        for (func, args, expected) in CALLS {
            let args: Vec<Value> = args.iter().map(|a| Value::I64(*a)).collect();
            match cache.call(func, &args) {
                Ok(results) => {
                    assert_eq!(
                        results,
                        [Value::I64(expected)],
                        "{func}{args:?} returned the wrong value"
                    );
                    successes += 1;
                    if !dir.join("written").exists() {
                        hits_during_writes += 1;
                    }
                    for name in FUNCS {
                        let Some(module) = cache.binding(name) else {
                            continue;
                        };
                        let module = module.to_string();
                        let first = bindings.entry(name).or_insert_with(|| module.clone());
                        assert_eq!(*first, module, "{name} was bound twice in one process");
                    }
                }
                Err(e) if e.miss().is_some() => {
                    let cause = e.miss().unwrap().cause();
                    assert!(
                        matches!(cause, "unknown" | "missing_dependency"),
                        "{func}: {e}"
                    );
                    misses += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{func}: {e}"),
            }
        }
    }
    for (name, module) in &bindings {
        println!("BOUND {name} {module}");
    }
    println!("RESULT {successes} {misses} {hits_during_writes}");
}

#[test]
fn racing_writers_and_readers_leave_a_sound_cache() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    Cache::open(dir.path()).unwrap();
    let spawn = |role: String| spawn_role("race_child", dir.path(), &role);
    let roles: Vec<String> = (0..WRITERS)
        .map(|w| format!("writer{w}"))
        .chain((0..READERS).map(|r| format!("reader{r}")))
        .collect();
    let mut children: Vec<_> = roles.iter().map(|role| spawn(role.clone())).collect();
    // The start barrier: go once every child has opened the cache.
    for role in &roles {
        wait_for(
            &dir.path().join(format!("ready-{role}")),
            Duration::from_secs(60),
        );
    }
    std::fs::write(dir.path().join("go"), b"").unwrap();

    let readers = children.split_off(WRITERS);
    for (w, writer) in children.into_iter().enumerate() {
        let out = writer.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "writer {w} failed:\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
    }
    std::fs::write(dir.path().join("written"), b"").unwrap();

    let (mut misses, mut hits_during_writes) = (0, 0);
    // Which modules the readers bound each function to (each reader: one per function).
    let mut bound: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (r, reader) in readers.into_iter().enumerate() {
        let out = reader.wait_with_output().unwrap();
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "reader {r} failed:\n{text}\n{}",
            stderr(&out)
        );
        // libtest prints the child's output after its own "test race_child ... ".
        let mut seen = BTreeSet::new();
        for line in text.lines() {
            if let Some((_, rest)) = line.split_once("BOUND ") {
                let (func, module) = rest.split_once(' ').expect("BOUND func module");
                assert!(
                    seen.insert(func.to_string()),
                    "reader {r} reported {func} twice"
                );
                bound.entry(func.into()).or_default().insert(module.into());
            }
        }
        assert_eq!(
            seen,
            FUNCS.iter().map(|f| f.to_string()).collect(),
            "reader {r} bound every function of the library"
        );
        let result = text
            .lines()
            .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("reader {r} printed no RESULT:\n{text}"));
        let numbers: Vec<usize> = result
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        let [successes, reader_misses, reader_hits_during_writes] = numbers[..] else {
            panic!("bad RESULT line {result}")
        };
        assert!(
            successes >= 20 * CALLS.len(),
            "reader {r} timed out with {successes} good calls"
        );
        misses += reader_misses;
        hits_during_writes += reader_hits_during_writes;
    }
    let distinct: BTreeMap<&String, usize> = bound.iter().map(|(f, m)| (f, m.len())).collect();
    eprintln!(
        "{WRITERS} writers, {READERS} readers: readers saw {misses} misses and {hits_during_writes} \
         hits while writers were still adding; distinct modules bound across readers: {distinct:?}"
    );

    // Afterwards, in fresh processes (the CLI): every function resolves and is right,
    // the cache verifies clean, and every writer's duplicate is there.
    for (func, args, expected) in CALLS {
        let mut command = vec!["call".to_string(), func.to_string()];
        command.extend(args.iter().map(|a| a.to_string()));
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        let out = linkcache(dir.path(), &command);
        assert_eq!(
            stdout(&out).trim(),
            expected.to_string(),
            "{func}: {}",
            stderr(&out)
        );
    }
    let out = linkcache(dir.path(), &["verify"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let duplicates = stdout(&linkcache(dir.path(), &["ls", "--duplicates"]));
    for func in FUNCS {
        assert!(
            duplicates.contains(func),
            "{func} has duplicates: {duplicates}"
        );
    }

    let fresh = Cache::open(dir.path()).unwrap();
    let index = fresh.dir().index().unwrap();
    for func in FUNCS {
        assert_eq!(
            index[func].len(),
            WRITERS,
            "every writer's duplicate of {func} is indexed"
        );
    }
    assert_eq!(fresh.dir().modules().unwrap().len(), 3 * WRITERS);
    eprintln!(
        "{} modules, {WRITERS} per func_name, in {:.1?}",
        3 * WRITERS,
        started.elapsed()
    );
}
