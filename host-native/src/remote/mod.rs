//! The remote tier: a store shared by many machines (Redis in `redis.rs`, S3 in
//! `s3.rs`) behind the local cache directory, so that a fleet compiles each module once.
//!
//! # What it promises
//!
//! - **Local first.** A function with local index entries never goes to the remote. On
//!   a local miss the remote is asked for the function's closure, level by level: one
//!   round trip for the index entries of a level, one for the objects of the modules
//!   chosen (two per level of depth, whatever the number of modules; `fetch.rs`).
//! - **Verified, then committed.** Everything fetched is untrusted input: bytes are
//!   checked against their BLAKE3 id, manifests against their checksum, their module
//!   and their bytes, entries against the name they are filed under, artifacts against
//!   their envelope (checksum, engine, module and, with a shared key, signature). What
//!   passes is committed into the local directory like any add (staged, synced,
//!   renamed) and used from there; nothing is run from memory received over the
//!   network. What fails is counted (`corrupt`, `oversized`) and skipped.
//! - **The same winner everywhere.** The remote ranks each function's entries in the
//!   order they were published (0 first, assigned atomically by the engine), and a
//!   machine that learns a rank files its local entry with `committed_at` = that rank.
//!   Ranks sort before every local clock reading, so once machines have seen the same
//!   entries they resolve every duplicate to the same module.
//! - **Writes never wait on the network.** A local commit queues the module for a
//!   background publisher (`publish.rs`); a full queue drops the job (counted). A crash
//!   loses the queued jobs only: the local commits are intact, and `linkcache push`
//!   (or the next add of the same bytes) publishes them.
//! - **Failures are misses.** Every operation has a deadline ([`RemoteConfig::timeout`]);
//!   a refused connection, a timeout, an unreadable reply is counted and the cache goes
//!   on locally. After three failures in a row the remote is skipped for a cool-down,
//!   then one probe tries it again (`breaker.rs`).
//! - **Native code only when trusted.** Precompiled artifacts are fetched and published
//!   only with [`RemoteTrust::Native`] (and a trusted local directory); otherwise only
//!   wasm bytes and records travel, and every module is compiled on this machine.
//!
//! It does not promise eviction (the engine's own policy decides; an evicted object is
//! a miss), access control (the engine's), or that what another machine published is
//! right: a writer to the remote can publish a module under any name. Read-only mode
//! keeps an untrusted job from writing; it does not make an untrusted remote's modules
//! correct.

mod api;
mod backend;
pub(crate) mod breaker;
mod config;
mod envelope;
mod fetch;
mod publish;
mod redis;
#[cfg(feature = "remote-s3")]
mod s3;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use api::PullReport;
pub use config::{
    DEFAULT_PUBLISH_TIMEOUT, DEFAULT_REMOTE_COOLDOWN, DEFAULT_REMOTE_TIMEOUT, RemoteConfig,
    RemoteMode, RemoteTrust,
};
pub use publish::PushReport;
pub(crate) use publish::{Job, Publisher};

use backend::{Backend, Failure, Io};
use breaker::{Admission, Breaker, BreakerState};
use config::Engine;
use fetch::Local;
use linkcache_core::ModuleId;

use crate::dir::DirStore;
use crate::error::Error;
use crate::registry::lock;

/// How long a function the remote did not have is not asked for again.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
const NEGATIVE_KEPT: usize = 10_000;

/// The remote tier of one cache: the engine, its breaker and counters. Shared by the
/// planner (fetches) and the publisher thread.
pub(crate) struct Tier {
    pub(crate) config: RemoteConfig,
    backend: Box<dyn Backend>,
    breaker: Breaker,
    io: Io,
    counters: Counters,
    /// Functions the remote did not have, and when it said so.
    negative: Mutex<HashMap<String, Instant>>,
}

#[derive(Debug, Default)]
struct Counters {
    lookups: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    skipped: AtomicU64,
    modules_published: AtomicU64,
    entries_published: AtomicU64,
    artifacts_fetched: AtomicU64,
    artifacts_published: AtomicU64,
    artifacts_rejected: AtomicU64,
    publish_queued: AtomicU64,
    publish_dropped: AtomicU64,
    publish_failed: AtomicU64,
    adopted: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// What the remote tier did in this process, and how it is configured (part of
/// [`Stats`](crate::Stats)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RemoteStats {
    /// The remote's URL, password removed.
    pub url: String,
    /// `read-write` or `read-only`.
    pub mode: String,
    /// `wasm-only` or `native`.
    pub trust: String,
    /// Whether artifacts are signed with a shared key.
    pub signed: bool,
    /// Milliseconds until the remote is tried again after repeated failures (`None`:
    /// it is in use).
    pub cooling_down_ms: Option<u64>,
    /// Local misses that asked the remote.
    pub lookups: u64,
    /// Modules fetched, verified and committed locally.
    pub hits: u64,
    /// Lookups the remote had nothing for.
    pub misses: u64,
    /// Operations that failed (refused, reset, protocol errors), timeouts excluded.
    pub errors: u64,
    /// Operations that passed their deadline.
    pub timeouts: u64,
    /// Operations not tried because the remote is cooling down.
    pub skipped: u64,
    /// Times the remote was put to cool down after repeated failures.
    pub breaker_trips: u64,
    /// Objects or entries that failed their checks (never used).
    pub corrupt: u64,
    /// Objects larger than the configured caps (never transferred).
    pub oversized: u64,
    /// Round trips to the engine (connections included).
    pub round_trips: u64,
    /// Bytes fetched.
    pub bytes_read: u64,
    /// Bytes published.
    pub bytes_written: u64,
    /// Modules published (bytes, manifest and entries sent).
    pub modules_published: u64,
    /// Index entries published.
    pub entries_published: u64,
    /// Precompiled artifacts fetched and stored locally.
    pub artifacts_fetched: u64,
    /// Precompiled artifacts published.
    pub artifacts_published: u64,
    /// Fetched artifacts refused (checksum, engine, module or signature).
    pub artifacts_rejected: u64,
    /// Publish jobs queued.
    pub publish_queued: u64,
    /// Publish jobs dropped because the queue was full.
    pub publish_dropped: u64,
    /// Publish jobs that failed (the remote was down): `push` publishes them later.
    pub publish_failed: u64,
    /// Winners of duplicates learnt from the remote and filed locally with their rank.
    pub adopted: u64,
}

impl Tier {
    pub(crate) fn new(config: RemoteConfig) -> Result<Tier, Error> {
        let backend: Box<dyn Backend> = match &config.engine {
            Engine::Redis { url, prefix } => Box::new(redis::RedisBackend::new(url, prefix)?),
            #[cfg(feature = "remote-s3")]
            Engine::S3 {
                bucket,
                root,
                endpoint,
                region,
            } => Box::new(s3::S3Backend::new(
                bucket,
                root,
                endpoint.as_deref(),
                region,
            )?),
            #[cfg(not(feature = "remote-s3"))]
            Engine::S3 { .. } => {
                return Err(Error::Config(
                    "s3:// remotes need linkcache-native's `remote-s3` feature".into(),
                ));
            }
        };
        Ok(Tier {
            breaker: Breaker::new(config.cooldown),
            config,
            backend,
            io: Io::default(),
            counters: Counters::default(),
            negative: Mutex::new(HashMap::new()),
        })
    }

    /// Runs one remote operation under the breaker with its deadline: `None` when the
    /// remote is skipped or the operation failed (both counted).
    fn run<T>(&self, what: &str, op: impl FnOnce(Instant) -> Result<T, Failure>) -> Option<T> {
        self.run_for(what, self.config.timeout, op)
    }

    fn run_for<T>(
        &self,
        what: &str,
        budget: Duration,
        op: impl FnOnce(Instant) -> Result<T, Failure>,
    ) -> Option<T> {
        let start = Instant::now();
        if self.breaker.admit(start) == Admission::Skip {
            add(&self.counters.skipped, 1);
            return None;
        }
        let result = op(start + budget);
        let now = Instant::now();
        self.breaker.record(now, result.is_ok());
        match result {
            Ok(value) => Some(value),
            Err(failure) => {
                let counter = match failure {
                    Failure::Timeout(_) => &self.counters.timeouts,
                    Failure::Unavailable(_) => &self.counters.errors,
                };
                add(counter, 1);
                if let BreakerState::Open { remaining } = self.breaker.state(now) {
                    tracing::warn!(remote = self.config.redacted_url(), %failure, operation = what,
                        cooldown_ms = remaining.as_millis() as u64,
                        "linkcache: remote tier failing, skipped during a cool-down");
                } else {
                    tracing::debug!(remote = self.config.redacted_url(), %failure,
                        operation = what, "linkcache: remote operation failed");
                }
                None
            }
        }
    }

    /// Whether the remote recently said it has nothing for `func_name`.
    fn recently_missed(&self, func_name: &str) -> bool {
        let now = Instant::now();
        let mut negative = lock(&self.negative);
        match negative.get(func_name) {
            Some(when) if now.duration_since(*when) < NEGATIVE_TTL => true,
            Some(_) => {
                negative.remove(func_name);
                false
            }
            None => false,
        }
    }

    fn remember_miss(&self, func_name: &str) {
        let mut negative = lock(&self.negative);
        if negative.len() >= NEGATIVE_KEPT {
            negative.clear();
        }
        negative.insert(func_name.to_string(), Instant::now());
    }

    /// Forgets every remembered miss (after `pull`, or when asked to look again).
    pub(crate) fn forget_misses(&self) {
        lock(&self.negative).clear();
    }

    pub(crate) fn stats(&self) -> RemoteStats {
        let c = &self.counters;
        let io = &self.io;
        RemoteStats {
            url: self.config.redacted_url().to_string(),
            mode: match self.config.mode {
                RemoteMode::ReadWrite => "read-write",
                RemoteMode::ReadOnly => "read-only",
            }
            .into(),
            trust: match self.config.trust {
                RemoteTrust::WasmOnly => "wasm-only",
                RemoteTrust::Native => "native",
            }
            .into(),
            signed: self.config.signed(),
            cooling_down_ms: match self.breaker.state(Instant::now()) {
                BreakerState::Open { remaining } => Some(remaining.as_millis() as u64),
                BreakerState::Closed => None,
            },
            lookups: get(&c.lookups),
            hits: get(&c.hits),
            misses: get(&c.misses),
            errors: get(&c.errors),
            timeouts: get(&c.timeouts),
            skipped: get(&c.skipped),
            breaker_trips: self.breaker.trips(),
            corrupt: get(&io.corrupt),
            oversized: get(&io.oversized),
            round_trips: get(&io.round_trips),
            bytes_read: get(&io.bytes_read),
            bytes_written: get(&io.bytes_written),
            modules_published: get(&c.modules_published),
            entries_published: get(&c.entries_published),
            artifacts_fetched: get(&c.artifacts_fetched),
            artifacts_published: get(&c.artifacts_published),
            artifacts_rejected: get(&c.artifacts_rejected),
            publish_queued: get(&c.publish_queued),
            publish_dropped: get(&c.publish_dropped),
            publish_failed: get(&c.publish_failed),
            adopted: get(&c.adopted),
        }
    }
}

/// The remote tier as a cache holds it: the tier, and its publisher unless read-only.
pub(crate) struct Remote {
    pub(crate) tier: Arc<Tier>,
    pub(crate) publisher: Option<Publisher>,
    /// Whether precompiled artifacts travel (trusted for native code, and the local
    /// directory keeps artifacts).
    pub(crate) artifacts: bool,
    dir: DirStore,
    engine_key: String,
}

impl Remote {
    /// Starts the publisher (unless read-only); connects nothing yet, the first fetch
    /// or publication does.
    pub(crate) fn start(
        tier: Tier,
        dir: &DirStore,
        engine_key: &str,
        precompiled: bool,
        on_adopted: Box<dyn Fn() + Send + Sync>,
    ) -> Remote {
        let artifacts = precompiled && tier.config.trust == RemoteTrust::Native;
        let tier = Arc::new(tier);
        let publisher = Publisher::start(
            Arc::clone(&tier),
            publish::Context {
                dir: dir.clone(),
                engine_key: engine_key.to_string(),
                artifacts,
                on_adopted,
            },
        );
        Remote {
            tier,
            publisher,
            artifacts,
            dir: dir.clone(),
            engine_key: engine_key.to_string(),
        }
    }

    fn local(&self) -> Local<'_> {
        Local {
            dir: &self.dir,
            engine_key: &self.engine_key,
            artifacts: self.artifacts,
        }
    }

    /// On a local miss: the closure of `func_name` from the remote, committed locally;
    /// the number of modules committed.
    pub(crate) fn fetch_closure(&self, func_name: &str) -> usize {
        self.tier.fetch_closure(&self.local(), func_name)
    }

    /// Queues a publication (nothing happens when read-only).
    pub(crate) fn enqueue(&self, job: Job) {
        if let Some(publisher) = &self.publisher {
            publisher.enqueue(job);
        }
    }

    /// Waits for queued publications, at most `timeout`; whether all went out.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        self.publisher
            .as_ref()
            .is_none_or(|publisher| publisher.flush(timeout))
    }

    /// Publishes `ids` now, in batches, calling `progress` after each module.
    pub(crate) fn push(
        &self,
        ids: &[ModuleId],
        on_adopted: &(dyn Fn() + Send + Sync),
        mut progress: impl FnMut(usize),
    ) -> Result<PushReport, Error> {
        if self.tier.config.mode != RemoteMode::ReadWrite {
            return Err(Error::Config(format!(
                "the remote {} is read-only here; nothing is pushed",
                self.tier.config.redacted_url()
            )));
        }
        let context = publish::Context {
            dir: self.dir.clone(),
            engine_key: self.engine_key.clone(),
            artifacts: self.artifacts,
            on_adopted: Box::new(|| {}),
        };
        let mut total = PushReport::default();
        for chunk in ids.chunks(publish::BATCH) {
            let report = self.tier.publish_modules(&context, chunk);
            self.tier.publish_artifacts(&context, chunk);
            total.published += report.published;
            total.failed += report.failed;
            total.adopted += report.adopted;
            progress(chunk.len());
        }
        on_adopted();
        Ok(total)
    }

    /// Every function name the remote indexes (`pull --all`), with a longer deadline
    /// than one operation.
    pub(crate) fn names(&self) -> Option<Vec<String>> {
        self.tier
            .run_for("list names", self.tier.config.timeout * 30, |deadline| {
                self.tier.backend.names(deadline, &self.tier.io)
            })
    }
}
