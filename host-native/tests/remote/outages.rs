//! A remote that dies or hangs: a killed server used again once back, an address that
//! never answers, a full publication queue, and adds that do not wait on the network.

use std::time::Duration;

use linkcache_native::Error;
use linkcache_native::core::Miss;

use crate::support;
use crate::support::remote::{BlackHole, s3_credentials, start_redis};
use crate::{open, remote};

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
    never_answers(&format!("redis://127.0.0.1:{}?{options}", hole.port));
    // Unsigned, the S3 client fails before it connects: an error, not a deadline.
    if s3_credentials() {
        never_answers(&format!(
            "s3://never/lc?endpoint=http://127.0.0.1:{}&region=us-east-1&{options}",
            hole.port
        ));
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
