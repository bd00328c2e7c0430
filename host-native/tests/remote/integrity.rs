//! A remote that lies or must not be written: corrupt objects and entries, objects over
//! the cap, tampered artifacts, and read-only mode.

use std::time::Duration;

use linkcache_native::core::{IndexEntry, ModuleId};
use linkcache_tests::workloads::tree;

use crate::support::remote::{Server, connection};
use crate::support::{linkcache, stdout};
use crate::{PATIENT, call_root, open, remote};

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
