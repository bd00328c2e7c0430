//! The remote tier against real servers on loopback, a Redis server and an
//! S3-compatible one (most tests run against both): machines (processes with
//! directories of their own) sharing what they compile, racing publishers converging
//! on one winner per function, and a remote that dies, hangs, lies or must not be
//! written.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use linkcache_native::core::{IndexEntry, Miss, ModuleId};
use linkcache_native::{Cache, Error, Stats};
use linkcache_tests::workloads::{tree, tree_names, tree_root_of};
use support::remote::{BlackHole, Server, connection, start_redis};
use support::{child, linkcache, stderr, stdout, wait_for};

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

#[test]
fn a_second_machine_calls_what_the_first_compiled_without_compiling() {
    for server in Server::all("two-machines") {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let url = server.url(PATIENT);
        let first = run_machine("compile", a.path(), &url);
        assert_eq!(count(&first, &["compiles"]), 1);
        assert_eq!(count(&first, &["remote", "modules_published"]), 10);
        assert_eq!(count(&first, &["remote", "entries_published"]), 10);

        let second = run_machine("call", b.path(), &url);
        assert_eq!(count(&second, &["compiles"]), 0, "{second}");
        assert_eq!(count(&second, &["modules_added"]), 0);
        assert_eq!(count(&second, &["remote", "hits"]), 10);
        assert_eq!(count(&second, &["remote", "lookups"]), 1);
        assert_eq!(count(&second, &["remote", "corrupt"]), 0);
        // Three levels. Redis: an index and an object round trip each, plus the
        // connection. S3 (requests, concurrent within a level): a listing and a slot
        // per name, a size and a read of the manifest and of the bytes per module:
        // (1+3+6) × 6.
        let expected = match server {
            Server::Redis(_) => 7,
            Server::S3(_) => 60,
        };
        assert_eq!(
            count(&second, &["remote", "round_trips"]),
            expected,
            "{}: {second}",
            server.name()
        );
        // Wasm only by default: the modules came as bytes and were compiled here.
        assert_eq!(count(&second, &["modules_compiled"]), 10);
        assert_eq!(count(&second, &["remote", "artifacts_fetched"]), 0);
        // What came from the remote is in B's directory, whole: a third process on B
        // loads it without the remote.
        let verify = linkcache(b.path(), &["verify"]);
        assert!(verify.status.success(), "{}", stdout(&verify));
        let off = run_machine("call", b.path(), "off");
        assert_eq!(count(&off, &["compiles"]), 0);
        assert!(off["remote"].is_null());
    }
}

#[test]
fn with_trusted_native_code_and_a_key_the_second_machine_compiles_nothing() {
    for server in Server::all("trusted") {
        trusted_native_code(&server);
    }
}

fn trusted_native_code(server: &Server) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), "a shared secret").unwrap();
    let url = server.url(&format!(
        "{PATIENT}&trust=native&key_file={}",
        key.path().display()
    ));
    let first = run_machine("compile", a.path(), &url);
    assert_eq!(count(&first, &["remote", "artifacts_published"]), 10);
    let second = run_machine("call", b.path(), &url);
    assert_eq!(count(&second, &["compiles"]), 0);
    assert_eq!(count(&second, &["modules_compiled"]), 0, "{second}");
    assert_eq!(count(&second, &["artifacts_deserialized"]), 10);
    assert_eq!(count(&second, &["remote", "artifacts_fetched"]), 10);

    // A machine with another key refuses every artifact (and compiles the wasm).
    let c = tempfile::tempdir().unwrap();
    let other_key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other_key.path(), "another secret").unwrap();
    let other = server.url(&format!(
        "{PATIENT}&trust=native&key_file={}",
        other_key.path().display()
    ));
    let third = run_machine("call", c.path(), &other);
    assert_eq!(count(&third, &["compiles"]), 0);
    assert_eq!(count(&third, &["remote", "artifacts_rejected"]), 10);
    assert_eq!(count(&third, &["modules_compiled"]), 10);
}

/// The module ids of variant `variant`'s tree, by function name.
fn ids_by_name(variant: usize) -> BTreeMap<String, ModuleId> {
    tree_names()
        .into_iter()
        .zip(tree(variant).iter().map(|m| ModuleId::of(m)))
        .collect()
}

#[test]
fn racing_publishers_on_two_directories_converge_on_one_module_per_function() {
    for server in Server::all("racing") {
        racing_publishers(&server);
    }
}

/// Every entry the remote holds for `name`: (rank, module).
fn remote_entries(server: &Server, name: &str) -> BTreeMap<u64, ModuleId> {
    let hash = blake3::hash(name.as_bytes()).to_hex();
    match server {
        Server::Redis(redis) => {
            let entries: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(format!("lc:v1:ix:{hash}"))
                .query(&mut connection(redis))
                .unwrap();
            entries
                .iter()
                .filter(|(field, _)| *field != "#next")
                .map(|(field, value)| {
                    let (rank, entry_name) = value.split_once(' ').unwrap();
                    assert_eq!(entry_name, name);
                    (rank.parse().unwrap(), field.parse().unwrap())
                })
                .collect()
        }
        Server::S3(s3) => s3
            .keys()
            .iter()
            .filter(|key| key.starts_with(&format!("lc/v1/ix/{hash}/")))
            .map(|key| {
                let entry = IndexEntry::decode(&s3.get(key)).unwrap();
                assert_eq!(entry.func_name, name);
                (entry.committed_at, entry.module)
            })
            .collect(),
    }
}

fn racing_publishers(server: &Server) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let barrier = tempfile::tempdir().unwrap();
    let go = barrier.path().join("go");
    // A long deadline: this test is about convergence, and four publishers at once
    // keep a Python S3 server busy.
    let url = server.url("timeout_ms=20000");
    let racers: Vec<_> = (0..4)
        .map(|variant| {
            machine("race", dirs[variant % 2].path(), &url)
                .env("VARIANT", variant.to_string())
                .env("BARRIER", &go)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(&go, b"").unwrap();
    let mut adopted = 0;
    for racer in racers {
        let stats = stats_of(&racer.wait_with_output().unwrap());
        assert_eq!(count(&stats, &["remote", "modules_published"]), 10);
        adopted += count(&stats, &["remote", "adopted"]);
    }
    // For each of the ten names, the three racers that did not publish first learnt the
    // winner from their publication's reply and filed it.
    assert_eq!(adopted, 30, "{}", server.name());
    // No entry lost: each function has the four variants' entries, ranks 0 to 3.
    let mut winners = BTreeMap::new();
    for name in tree_names() {
        let entries = remote_entries(server, &name);
        assert_eq!(
            entries.keys().copied().collect::<BTreeSet<u64>>(),
            (0..4).collect(),
            "{}: {name}: {entries:?}",
            server.name()
        );
        let expected: BTreeSet<ModuleId> = (0..4).map(|v| ids_by_name(v)[&name]).collect();
        let published: BTreeSet<ModuleId> = entries.values().copied().collect();
        assert_eq!(published, expected);
        winners.insert(name.clone(), entries[&0]);
    }
    // Every process on either directory binds the remote's rank 0, even without the
    // remote (from what the publishers filed locally).
    for dir in &dirs {
        for url in [url.as_str(), "off"] {
            let output = machine("bindings", dir.path(), url).output().unwrap();
            stats_of(&output);
            let bound: BTreeMap<String, ModuleId> = stdout(&output)
                .lines()
                .filter_map(|l| l.split_once("BINDING ").map(|(_, rest)| rest))
                .map(|l| {
                    let (name, id) = l.split_once(' ').unwrap();
                    (name.to_string(), id.parse().unwrap())
                })
                .collect();
            assert_eq!(bound, winners, "{}", dir.path().display());
        }
    }
}

#[test]
fn a_killed_server_makes_misses_and_is_used_again_once_back() {
    let Some(mut server) = start_redis() else {
        return;
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = server.url("timeout_ms=500&cooldown_ms=200");
    let publisher = open(a.path(), &url);
    let reader = open(b.path(), &url);
    let leaf = |n: usize| {
        wat::parse_str(format!(
            r#"(module (func (export "k.f{n}") (result i64) (i64.const {n})))"#
        ))
        .unwrap()
    };
    publisher.add_module(&leaf(0)).unwrap();
    assert!(publisher.flush_remote(Duration::from_secs(10)));
    let call = |n: usize| {
        let target = reader
            .get_or_compile::<(), i64, String>(&format!("k.f{n}"), |_: &Miss| Ok(vec![leaf(n)]))
            .unwrap();
        assert_eq!(target.call(&reader, ()).unwrap(), n as i64);
    };
    call(0);
    assert_eq!(remote(&reader.stats()).hits, 1);
    assert_eq!(reader.stats().compiles, 0);

    server.kill();
    for n in 1..=6 {
        call(n);
    }
    let stats = reader.stats();
    let down = remote(&stats);
    assert_eq!(stats.compiles, 6, "every call compiled locally");
    assert!(down.errors + down.timeouts >= 3, "{down:?}");
    assert!(down.breaker_trips >= 1, "{down:?}");
    assert!(down.skipped >= 1, "{down:?}");

    // Back, empty: the publisher pushes again, and after the cool-down the reader's
    // next miss goes to the remote and hits.
    server.restart().unwrap();
    publisher.add_module(&leaf(7)).unwrap();
    let report = publisher.push_remote(None, |_| {}).unwrap();
    assert_eq!(report.failed, 0);
    // Wait out the cool-down (it doubled if a probe failed while the server was down);
    // the next operation is the probe.
    for _ in 0..500 {
        if remote(&reader.stats()).cooling_down_ms.is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(remote(&reader.stats()).cooling_down_ms, None);
    call(7);
    let stats = reader.stats();
    assert_eq!(remote(&stats).hits, 2, "{:?}", stats.remote);
    assert_eq!(stats.compiles, 6);
}

#[test]
fn an_address_that_never_answers_costs_one_deadline_then_is_skipped() {
    let hole = BlackHole::bind();
    let options = "timeout_ms=200&cooldown_ms=60000";
    for url in [
        format!("redis://127.0.0.1:{}?{options}", hole.port),
        format!(
            "s3://never/lc?endpoint=http://127.0.0.1:{}&region=us-east-1&{options}",
            hole.port
        ),
    ] {
        never_answers(&url);
    }
}

fn never_answers(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), url);
    for n in 0..6 {
        let error = cache.target_dynamic(&format!("h.f{n}")).unwrap_err();
        assert!(matches!(error, Error::Miss(_)), "{error}");
    }
    let stats = cache.stats();
    let hole_stats = remote(&stats);
    assert_eq!(hole_stats.timeouts, 3, "{url}: {hole_stats:?}");
    assert_eq!(hole_stats.errors, 0);
    assert_eq!(hole_stats.breaker_trips, 1);
    assert_eq!(hole_stats.skipped, 3);
    assert!(hole_stats.cooling_down_ms.is_some());
    // Adding never waits on the network: the module is committed and its publication
    // queued; the publisher skips it (cooling down), counted as failed.
    let id = cache.add_module(&support::util()).unwrap();
    assert!(cache.dir().contains(&id));
    assert!(cache.flush_remote(Duration::from_secs(5)));
    let stats = cache.stats();
    assert_eq!(remote(&stats).publish_queued, 1);
    assert_eq!(remote(&stats).publish_failed, 1);
}

#[test]
fn a_full_publication_queue_drops_jobs_and_counts_them() {
    let hole = BlackHole::bind();
    let dir = tempfile::tempdir().unwrap();
    // The publisher hangs on its first batch; the queue behind it fills up.
    let url = format!(
        "redis://127.0.0.1:{}?timeout_ms=200&publish_timeout_ms=60000",
        hole.port
    );
    let cache = open(dir.path(), &url);
    let modules: Vec<Vec<u8>> = (0..1100)
        .map(|i| {
            wat::parse_str(format!(
                r#"(module (func (export "q.f{i}") (result i64) (i64.const {i})))"#
            ))
            .unwrap()
        })
        .collect();
    let ids = cache.add_modules(&modules).unwrap();
    assert!(ids.iter().all(|id| cache.dir().contains(id)));
    let stats = cache.stats();
    let queue = remote(&stats);
    assert_eq!(
        queue.publish_queued + queue.publish_dropped,
        1100,
        "{queue:?}"
    );
    // At most the queue's 1024 jobs and the batch of 32 the publisher took are kept.
    assert!(queue.publish_dropped >= 1100 - 1024 - 32, "{queue:?}");
}

#[test]
fn adding_returns_before_a_hanging_remote_answers() {
    let hole = BlackHole::bind();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "redis://127.0.0.1:{}?timeout_ms=3000&publish_timeout_ms=3000",
        hole.port
    );
    let cache = open(dir.path(), &url);
    let id = cache.add_module(&support::util()).unwrap();
    // The publisher is stuck on the black hole for up to 3 s: the add came back first.
    assert!(!cache.flush_remote(Duration::ZERO));
    assert!(cache.dir().contains(&id));
    assert!(cache.flush_remote(Duration::from_secs(10)));
    assert_eq!(remote(&cache.stats()).timeouts, 1);
}

/// Publishes variant 0's tree from a fresh directory.
fn publish_tree(server: &Server) {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), &server.url(""));
    call_root(&cache, 0);
    assert!(cache.flush_remote(Duration::from_secs(10)));
}

/// Where the remote keeps an object of `id` ("m": bytes, "mf": manifest).
fn object_key(server: &Server, kind: &str, id: &ModuleId) -> String {
    match server {
        Server::Redis(_) => format!("lc:v1:{kind}:{id}"),
        Server::S3(_) => {
            let ext = if kind == "m" { "wasm" } else { "lcmf" };
            format!("lc/v1/{kind}/{id}.{ext}")
        }
    }
}

fn get_object(server: &Server, key: &str) -> Vec<u8> {
    match server {
        Server::Redis(redis) => redis::cmd("GET")
            .arg(key)
            .query(&mut connection(redis))
            .unwrap(),
        Server::S3(s3) => s3.get(key),
    }
}

fn put_object(server: &Server, key: &str, bytes: &[u8]) {
    match server {
        Server::Redis(redis) => redis::cmd("SET")
            .arg(key)
            .arg(bytes)
            .query::<()>(&mut connection(redis))
            .unwrap(),
        Server::S3(s3) => s3.put(key, bytes),
    }
}

/// The remote's entry of `module` for `name`, as stored (Redis: the hash's value; S3:
/// the record in slot 0).
fn read_entry(server: &Server, name: &str, module: &ModuleId) -> Vec<u8> {
    let hash = blake3::hash(name.as_bytes()).to_hex();
    match server {
        Server::Redis(redis) => redis::cmd("HGET")
            .arg(format!("lc:v1:ix:{hash}"))
            .arg(module.to_string())
            .query(&mut connection(redis))
            .unwrap(),
        Server::S3(s3) => s3.get(&format!("lc/v1/ix/{hash}/0000000000.lcix")),
    }
}

fn write_entry(server: &Server, name: &str, module: &ModuleId, stored: &[u8]) {
    let hash = blake3::hash(name.as_bytes()).to_hex();
    match server {
        Server::Redis(redis) => redis::cmd("HSET")
            .arg(format!("lc:v1:ix:{hash}"))
            .arg(module.to_string())
            .arg(stored)
            .query::<()>(&mut connection(redis))
            .unwrap(),
        Server::S3(s3) => s3.put(&format!("lc/v1/ix/{hash}/0000000000.lcix"), stored),
    }
}

/// An entry (rank 0) of `module` that claims the name `claimed`, as `server` stores it.
fn forged_entry(server: &Server, module: &ModuleId, claimed: &str) -> Vec<u8> {
    match server {
        Server::Redis(_) => format!("0 {claimed}").into_bytes(),
        Server::S3(_) => IndexEntry {
            func_name: claimed.to_string(),
            module: *module,
            committed_at: 0,
        }
        .encode(),
    }
}

#[test]
fn corrupt_remote_objects_are_counted_skipped_and_never_committed() {
    for server in Server::all("corrupt") {
        publish_tree(&server);
        let leaf = ModuleId::of(&tree(0)[4]); // t.l0
        for what in ["bytes", "manifest", "entry"] {
            let key = object_key(&server, if what == "bytes" { "m" } else { "mf" }, &leaf);
            let saved = if what == "entry" {
                // The entry claims another name than the one it is filed under.
                let saved = read_entry(&server, "t.l0", &leaf);
                write_entry(
                    &server,
                    "t.l0",
                    &leaf,
                    &forged_entry(&server, &leaf, "t.l1"),
                );
                saved
            } else {
                let saved = get_object(&server, &key);
                let mut damaged = saved.clone();
                let middle = damaged.len() / 2;
                damaged[middle] ^= 0x5a;
                put_object(&server, &key, &damaged);
                saved
            };
            let dir = tempfile::tempdir().unwrap();
            // Read-only, so that only the fetch reads the damage (a publisher would
            // read the damaged entry back too).
            let cache = open(dir.path(), &server.url("mode=read-only"));
            // The call still works: the compiler supplies what the remote could not.
            call_root(&cache, 0);
            let stats = cache.stats();
            let name = server.name();
            assert_eq!(
                remote(&stats).corrupt,
                1,
                "{name} {what}: {:?}",
                stats.remote
            );
            assert_eq!(remote(&stats).hits, 9, "{name} {what}");
            assert_eq!(stats.compiles, 1, "{name} {what}");
            let verify = linkcache(dir.path(), &["verify"]);
            assert!(verify.status.success(), "{what}: {}", stdout(&verify));
            if what == "entry" {
                write_entry(&server, "t.l0", &leaf, &saved);
            } else {
                put_object(&server, &key, &saved);
            }
        }
    }
}

#[test]
fn objects_over_the_cap_are_not_transferred() {
    for server in Server::all("oversized") {
        publish_tree(&server);
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path(), &server.url("max_module_bytes=16"));
        call_root(&cache, 0);
        let stats = cache.stats();
        let capped = remote(&stats);
        assert_eq!(capped.hits, 0);
        assert!(capped.oversized >= 2, "{capped:?}");
        // Objects over the cap are not transferred at all.
        assert_eq!(capped.bytes_read, 0, "{capped:?}");
        assert_eq!(stats.compiles, 1);
    }
}

/// The keys of the remote's artifact envelopes.
fn artifact_keys(server: &Server) -> Vec<String> {
    match server {
        Server::Redis(redis) => redis::cmd("KEYS")
            .arg("lc:v1:a:*")
            .query(&mut connection(redis))
            .unwrap(),
        Server::S3(s3) => s3
            .keys()
            .into_iter()
            .filter(|key| key.starts_with("lc/v1/a/"))
            .collect(),
    }
}

#[test]
fn a_tampered_artifact_is_refused_and_the_module_compiled_here() {
    for server in Server::all("tampered") {
        let url = server.url(&format!("{PATIENT}&trust=native"));
        let a = tempfile::tempdir().unwrap();
        let cache = open(a.path(), &url);
        call_root(&cache, 0);
        assert!(cache.flush_remote(Duration::from_secs(10)));
        let keys = artifact_keys(&server);
        assert_eq!(keys.len(), 10);
        for key in &keys {
            let mut envelope = get_object(&server, key);
            let last = envelope.len() - 1;
            envelope[last] ^= 1;
            put_object(&server, key, &envelope);
        }
        let b = tempfile::tempdir().unwrap();
        let reader = open(b.path(), &url);
        call_root(&reader, 0);
        let stats = reader.stats();
        assert_eq!(remote(&stats).artifacts_rejected, 10, "{}", server.name());
        assert_eq!(remote(&stats).hits, 10);
        assert_eq!(stats.compiles, 0);
        assert_eq!(stats.modules_compiled, 10);
    }
}

#[test]
fn read_only_mode_reads_and_writes_nothing() {
    for server in Server::all("read-only") {
        publish_tree(&server);
        let before = match &server {
            Server::Redis(redis) => {
                let mut connection = connection(redis);
                redis::cmd("CONFIG")
                    .arg("RESETSTAT")
                    .query::<()>(&mut connection)
                    .unwrap();
                let keys: u64 = redis::cmd("DBSIZE").query(&mut connection).unwrap();
                vec![keys.to_string()]
            }
            Server::S3(s3) => s3.keys(),
        };
        let dir = tempfile::tempdir().unwrap();
        let cache = open(
            dir.path(),
            &server.url(&format!("{PATIENT}&mode=read-only")),
        );
        call_root(&cache, 0);
        // Modules of its own are committed locally and never published.
        for module in tree(5) {
            cache.add_module(&module).unwrap();
        }
        assert!(cache.flush_remote(Duration::from_secs(5)));
        let error = cache.push_remote(None, |_| {}).unwrap_err();
        assert!(error.to_string().contains("read-only"), "{error}");
        let stats = cache.stats();
        assert_eq!(remote(&stats).hits, 10);
        assert_eq!(remote(&stats).publish_queued, 0);
        match &server {
            Server::Redis(redis) => {
                let mut connection = connection(redis);
                let keys: u64 = redis::cmd("DBSIZE").query(&mut connection).unwrap();
                assert_eq!(vec![keys.to_string()], before);
                let info: String = redis::cmd("INFO")
                    .arg("commandstats")
                    .query(&mut connection)
                    .unwrap();
                for write in [
                    "cmdstat_set:",
                    "cmdstat_hset:",
                    "cmdstat_hincrby:",
                    "cmdstat_del:",
                ] {
                    assert!(!info.contains(write), "{write} in {info}");
                }
                assert!(info.contains("cmdstat_eval:"), "the reads ran: {info}");
            }
            Server::S3(s3) => assert_eq!(s3.keys(), before),
        }
    }
}

#[test]
fn the_cli_pushes_pulls_and_reports_the_remote() {
    for server in Server::all("cli") {
        cli_push_pull(&server);
    }
}

fn cli_push_pull(server: &Server) {
    let url = server.url("");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let files = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, module) in tree(0).iter().enumerate() {
        let path = files.path().join(format!("m{i}.wasm"));
        std::fs::write(&path, module).unwrap();
        paths.push(path.display().to_string());
    }
    // Added without a remote, then pushed.
    let mut add = vec!["--remote", "off", "add"];
    add.extend(paths.iter().map(String::as_str));
    assert!(linkcache(a.path(), &add).status.success());
    let push = linkcache(a.path(), &["--remote", &url, "push"]);
    assert!(push.status.success(), "{}", stderr(&push));
    assert!(
        stdout(&push).starts_with("pushed 10 module(s), 0 failed"),
        "{}",
        stdout(&push)
    );
    let pull = linkcache(b.path(), &["--remote", &url, "pull", "--all"]);
    assert!(pull.status.success(), "{}", stderr(&pull));
    assert!(
        stdout(&pull).starts_with("pulled 10 module(s) for 10 function(s)"),
        "{}",
        stdout(&pull)
    );
    assert!(linkcache(b.path(), &["verify"]).status.success());
    // Pulled entries carry the remote's ranks, and `ls` says so.
    let ls = linkcache(b.path(), &["--remote", "off", "ls"]);
    assert!(stdout(&ls).contains("remote rank 0"), "{}", stdout(&ls));
    let call = linkcache(b.path(), &["--remote", "off", "call", "t.root", "7"]);
    assert_eq!(stdout(&call).trim(), tree_root_of(7).to_string());

    let stats = linkcache(b.path(), &["--remote", &url, "stats", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&stats)).unwrap();
    assert_eq!(json["remote_reachable"], true);
    assert_eq!(json["remote"]["mode"], "read-write");
    // Redis: a connection and a PING; S3: one listing.
    let probe = match server {
        Server::Redis(_) => 2,
        Server::S3(_) => 1,
    };
    assert_eq!(json["remote"]["round_trips"], probe, "{json}");
    let text = linkcache(b.path(), &["--remote", &url, "stats"]);
    assert!(stdout(&text).contains("reachable"), "{}", stdout(&text));
    let off = linkcache(b.path(), &["--remote", "off", "stats", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&off)).unwrap();
    assert!(json["remote"].is_null());

    // Pushing to a read-only remote, or to none, is an error that says why.
    let refused = linkcache(
        a.path(),
        &["--remote", &server.url("mode=read-only"), "push"],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("read-only"),
        "{}",
        stderr(&refused)
    );
    let none = linkcache(a.path(), &["--remote", "off", "push"]);
    assert!(
        stderr(&none).contains("no remote tier"),
        "{}",
        stderr(&none)
    );
    let bad = linkcache(a.path(), &["--remote", "redis://h:1?colour=red", "stats"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("unknown option `colour`"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn a_cache_with_an_s3_remote_can_be_used_and_dropped_inside_an_async_task() {
    let Some(s3) = support::remote::S3Bucket::create("async-drop") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = s3.url("");
    let stats = runtime.block_on(async move {
        let cache = open(dir.path(), &url);
        // A lookup that goes through the S3 backend's own runtime from inside this one.
        let error = cache.target_dynamic("nothing.here").unwrap_err();
        assert!(matches!(error, Error::Miss(_)), "{error}");
        let stats = cache.stats();
        drop(cache);
        stats
    });
    let lookup = remote(&stats);
    assert_eq!((lookup.lookups, lookup.misses, lookup.errors), (1, 1, 0));
}

#[test]
fn the_cli_says_when_the_remote_cannot_be_reached() {
    let hole = BlackHole::bind();
    let url = format!(
        "redis://127.0.0.1:{}?timeout_ms=200&publish_timeout_ms=200",
        hole.port
    );
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("util.wasm");
    std::fs::write(&module, support::util()).unwrap();
    let add = linkcache(
        dir.path(),
        &["--remote", "off", "add", module.to_str().unwrap()],
    );
    assert!(add.status.success(), "{}", stderr(&add));
    let push = linkcache(dir.path(), &["--remote", &url, "push"]);
    assert_eq!(push.status.code(), Some(1));
    assert!(
        stdout(&push).starts_with("pushed 0 module(s), 1 failed"),
        "{}",
        stdout(&push)
    );
    assert!(
        stderr(&push).contains("run `linkcache push` again"),
        "{}",
        stderr(&push)
    );
    let pull = linkcache(dir.path(), &["--remote", &url, "pull", "--all"]);
    assert_eq!(pull.status.code(), Some(1));
    assert!(
        stderr(&pull).contains("could not list the functions"),
        "{}",
        stderr(&pull)
    );
    let stats = linkcache(dir.path(), &["--remote", &url, "stats"]);
    assert!(
        stdout(&stats).contains("NOT reachable"),
        "{}",
        stdout(&stats)
    );
}
