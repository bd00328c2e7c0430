//! Machines (processes with directories of their own) sharing what they compile through
//! the remote, as wasm or as trusted native code, and racing publishers converging on one
//! winner per function.

use std::collections::{BTreeMap, BTreeSet};

use linkcache_native::core::{IndexEntry, ModuleId};
use linkcache_tests::workloads::{tree, tree_names};

use crate::support::remote::{Server, connection};
use crate::support::{linkcache, stdout};
use crate::{PATIENT, count, machine, run_machine, stats_of};

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
