//! The remote tier against real servers on loopback, a Redis server and an
//! S3-compatible one (most tests run against both): machines (processes with
//! directories of their own) sharing what they compile, racing publishers converging
//! on one winner per function, and a remote that dies, hangs, lies or must not be
//! written.

#[path = "../support/mod.rs"]
mod support;

mod clients;
mod integrity;
mod outages;
mod sharing;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use linkcache_native::core::Miss;
use linkcache_native::{Cache, Stats};
use linkcache_tests::workloads::{tree, tree_names, tree_root_of};
use support::{child, stderr, stdout, wait_for};

fn open(dir: &Path, url: &str) -> Cache {
    Cache::builder(dir).remote(url).open().unwrap()
}

fn remote(stats: &Stats) -> &linkcache_native::RemoteStats {
    stats.remote.as_ref().expect("a remote tier is configured")
}

/// Targets `t.root` through `get_or_compile`, compiling variant `variant` on a miss;
/// checks the result.
/// Read deadlines for the tests that count what was fetched: the default second can pass
/// while a loaded test machine (or moto, a Python server) works through a 3-level
/// closure, and a fetch cut short is compiled instead (a correct outcome, other counts).
const PATIENT: &str = "timeout_ms=20000";

fn call_root(cache: &Cache, variant: usize) {
    let target = cache
        .get_or_compile::<i64, i64, String>("t.root", |_: &Miss| Ok(tree(variant)))
        .unwrap();
    assert_eq!(target.call(cache, 7).unwrap(), tree_root_of(7));
}

/// Runs as a child process ("a machine"): `ROLE` says what it does, `DIR` is its
/// directory, `REMOTE` the shared remote. It prints its stats as one JSON line.
/// It stays at the crate root: the children run `--ignored --exact remote_child`.
#[test]
#[ignore = "a child process of the remote tests"]
fn remote_child() {
    let dir = PathBuf::from(std::env::var("DIR").unwrap());
    let url = std::env::var("REMOTE").unwrap();
    let role = std::env::var("ROLE").unwrap();
    let cache = open(&dir, &url);
    match role.as_str() {
        "compile" => call_root(&cache, 0),
        "call" => {
            let target = cache
                .get_or_compile::<i64, i64, String>("t.root", |_: &Miss| {
                    Err("this machine must not compile".into())
                })
                .unwrap();
            assert_eq!(target.call(&cache, 7).unwrap(), tree_root_of(7));
        }
        "race" => {
            // Wait for every racer, then add this variant's library and publish it.
            let variant: usize = std::env::var("VARIANT").unwrap().parse().unwrap();
            let barrier = PathBuf::from(std::env::var("BARRIER").unwrap());
            wait_for(&barrier, Duration::from_secs(60));
            for module in tree(variant) {
                cache.add_module(&module).unwrap();
            }
        }
        "bindings" => {
            for name in tree_names() {
                let target = cache.target_dynamic(&name).unwrap();
                println!("BINDING {name} {}", target.module);
            }
        }
        other => panic!("unknown role {other}"),
    }
    assert!(cache.flush_remote(Duration::from_secs(20)));
    println!("STATS {}", serde_json::to_string(&cache.stats()).unwrap());
}

fn machine(role: &str, dir: &Path, url: &str) -> std::process::Command {
    let mut command = child("remote_child");
    command
        .env("ROLE", role)
        .env("DIR", dir)
        .env("REMOTE", url)
        .env_remove("LINKCACHE_REMOTE");
    command
}

fn run_machine(role: &str, dir: &Path, url: &str) -> serde_json::Value {
    let output = machine(role, dir, url).output().unwrap();
    stats_of(&output)
}

fn stats_of(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "child failed:\n{}\n{}",
        stdout(output),
        stderr(output)
    );
    let line = stdout(output)
        .lines()
        // libtest prints "test remote_child ... " before the child's first line.
        .find_map(|l| l.split_once("STATS ").map(|(_, json)| json.to_string()))
        .unwrap_or_else(|| {
            panic!(
                "the child printed no stats:\n{}\n{}",
                stdout(output),
                stderr(output)
            )
        });
    serde_json::from_str(&line).unwrap()
}

fn count(stats: &serde_json::Value, path: &[&str]) -> u64 {
    let mut value = stats;
    for key in path {
        value = &value[*key];
    }
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{path:?} in {stats}"))
}
