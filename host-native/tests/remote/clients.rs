//! The CLI against a remote (push, pull and stats, reachable or not), and a cache with
//! an S3 remote used and dropped inside an async task.

use linkcache_native::Error;
use linkcache_tests::workloads::{tree, tree_root_of};

use crate::support::remote::{BlackHole, Server};
use crate::support::{self, linkcache, stderr, stdout};
use crate::{open, remote};

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
