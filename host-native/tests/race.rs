//! Racing processes on one cache directory: 8 writers compile the same library into
//! modules of their own and add them while 8 readers target and call its functions.
//!
//! The child processes are this test binary again, running the ignored `race_child`
//! test with a role in the environment.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use linkcache_native::Cache;
use linkcache_native::core::Value;

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

fn wait_for_start(dir: &Path) {
    let go = dir.join("go");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !go.exists() {
        assert!(Instant::now() < deadline, "never told to start");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs as a child process: a writer or a reader.
#[test]
#[ignore = "a child process of racing_writers_and_readers_leave_a_sound_cache"]
fn race_child() {
    let dir = std::path::PathBuf::from(std::env::var("RACE_DIR").expect("RACE_DIR"));
    let role = std::env::var("RACE_ROLE").expect("RACE_ROLE");
    let cache = Cache::open(&dir).unwrap();
    wait_for_start(&dir);
    if let Some(writer) = role.strip_prefix("writer") {
        // Dependencies last, so that readers see every state a race can produce.
        for module in library(writer.parse().unwrap()).iter().rev() {
            cache.add_module(module).unwrap();
        }
        return;
    }
    // A reader: target and call until every function has been called right 20 times.
    let mut bindings: BTreeMap<&str, String> = BTreeMap::new();
    let mut successes = 0;
    let mut misses = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
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
                    let module = cache.binding(func).unwrap().to_string();
                    let first = bindings.entry(func).or_insert_with(|| module.clone());
                    assert_eq!(*first, module, "{func} was bound twice in one process");
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
    println!("RESULT {successes} {misses} {}", bindings.len());
}

#[test]
fn racing_writers_and_readers_leave_a_sound_cache() {
    let dir = tempfile::tempdir().unwrap();
    Cache::open(dir.path()).unwrap();
    let spawn = |role: String| {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "race_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RACE_DIR", dir.path())
            .env("RACE_ROLE", role)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut children: Vec<_> = (0..WRITERS).map(|w| spawn(format!("writer{w}"))).collect();
    children.extend((0..READERS).map(|r| spawn(format!("reader{r}"))));
    std::thread::sleep(Duration::from_millis(300)); // every child opened the cache
    std::fs::write(dir.path().join("go"), b"").unwrap();

    let mut reader_successes = 0;
    let mut reader_misses = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "a child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // libtest prints the child's output after its own "test race_child ... ".
        if let Some(line) = stdout
            .lines()
            .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        {
            let numbers: Vec<usize> = line
                .split_whitespace()
                .map(|n| n.parse().unwrap())
                .collect();
            let [successes, misses, bound] = numbers[..] else {
                panic!("bad RESULT line {line}")
            };
            assert!(
                successes >= 20 * CALLS.len(),
                "a reader timed out with {successes} good calls"
            );
            assert_eq!(
                bound,
                CALLS.len(),
                "a reader bound every function it called, once"
            );
            reader_successes += 1;
            reader_misses += misses;
        }
    }
    assert_eq!(reader_successes, READERS);
    // Misses while writers were still committing show that the processes overlapped.
    eprintln!("readers saw {reader_misses} misses during the race");

    // Afterwards: a fresh process resolves everything right, and the cache is sound.
    let fresh = Cache::open(dir.path()).unwrap();
    for (func, args, expected) in CALLS {
        let args: Vec<Value> = args.iter().map(|a| Value::I64(*a)).collect();
        assert_eq!(fresh.call(func, &args).unwrap(), [Value::I64(expected)]);
    }
    assert!(fresh.dir().verify(|_| {}).unwrap().is_empty());
    let index = fresh.dir().index().unwrap();
    for func in ["r.add", "r.mul", "r.sq", "r.cube", "r.f"] {
        assert_eq!(
            index[func].len(),
            WRITERS,
            "every writer's duplicate of {func} is indexed"
        );
    }
    assert_eq!(fresh.dir().modules().unwrap().len(), 3 * WRITERS);
}
