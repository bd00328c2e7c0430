//! The remote tier on S3 and S3-compatible stores, through Apache OpenDAL.
//!
//! ```text
//! {root}/v1/m/{id}.wasm                 module bytes                 PUT If-None-Match: *
//! {root}/v1/mf/{id}.lcmf                manifest record              PUT If-None-Match: *
//! {root}/v1/ix/{name hash}/{rank}.lcix  index entry (a record whose committed_at is the
//!                                       rank), rank = 0000000000, 0000000001, …
//!                                                                    PUT If-None-Match: *
//! {root}/v1/a/{engine}/{id}.lca         artifact envelope            PUT If-None-Match: *
//! ```
//!
//! An entry is a *slot*: a publisher lists the name's slots, and creates the next one
//! only if absent (`If-None-Match: *`); when another machine took that slot first, it
//! tries the next. So entries never overwrite each other, and the slot number is the
//! rank every machine agrees on. The publisher reads its slot back after creating it,
//! since some S3-compatible servers check the condition and write in two steps.
//!
//! OpenDAL is asynchronous: the backend owns a small tokio runtime (one worker thread,
//! `linkcache-s3`), and each operation is spawned on it with the operation's deadline
//! and waited for with a channel, so the caller may itself run inside a runtime (an
//! embedder's async stores). Reads ask for at most the cap's bytes (a range), so a
//! forged object is never transferred whole.

use std::future::Future;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use linkcache_core::{IndexEntry, ModuleId};
use opendal::{ErrorKind, Operator};
use tokio::task::JoinSet;

use super::backend::{
    Backend, Caps, Failure, Fetched, Io, MAX_ENTRIES_PER_NAME, Object, Outcome, Publication,
    Ranked, Wanted, name_hash,
};
use crate::error::Error;

/// Requests a batch keeps in flight.
const IN_FLIGHT: usize = 16;
/// Slots a publisher tries before it gives up on an entry (another machine keeps
/// taking the next one).
const SLOT_ATTEMPTS: usize = 8;
/// The largest index entry record read.
const MAX_ENTRY_BYTES: u64 = 4096;

pub(crate) struct S3Backend {
    op: Operator,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for S3Backend {
    /// Shuts the runtime down without waiting: a cache may be dropped inside an
    /// embedder's async task, where dropping a runtime the ordinary way panics.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl S3Backend {
    pub(crate) fn new(
        bucket: &str,
        root: &str,
        endpoint: Option<&str>,
        region: &str,
    ) -> Result<S3Backend, Error> {
        // reqwest's rustls needs a process-wide crypto provider; keep one an embedder
        // installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = opendal::services::S3::default()
            .bucket(bucket)
            .root(&format!("/{root}"))
            .region(region)
            // Never ask the EC2 metadata endpoint for credentials: they come from the
            // environment (AWS_ACCESS_KEY_ID, …) or the AWS config files.
            .disable_ec2_metadata();
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint(endpoint);
        }
        let transport = opendal::HttpTransporter::new(
            opendal_http_transport_reqwest::ReqwestTransport::default(),
        );
        let op = Operator::new(builder)
            .map_err(|e| Error::Config(format!("remote S3 store: {e}")))?
            .with_context(opendal::OperationContext::new().with_http_transport(transport));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("linkcache-s3")
            .enable_time()
            .enable_io()
            .build()
            .map_err(|e| Error::Config(format!("remote S3 store: a runtime: {e}")))?;
        Ok(S3Backend {
            op,
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on the backend's runtime, bounded by `deadline`.
    fn block<T: Send + 'static>(
        &self,
        deadline: Instant,
        work: impl Future<Output = Outcome<T>> + Send + 'static,
    ) -> Outcome<T> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Timeout("the deadline passed".into()));
        }
        let (sender, receiver) = mpsc::channel();
        let Some(runtime) = &self.runtime else {
            return Err(Failure::Unavailable(
                "the remote tier is shutting down".into(),
            ));
        };
        runtime.spawn(async move {
            let outcome = match tokio::time::timeout(left, work).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure::Timeout("the deadline passed".into())),
            };
            let _ = sender.send(outcome);
        });
        receiver
            .recv_timeout(left + Duration::from_millis(100))
            .unwrap_or_else(|_| Err(Failure::Timeout("the deadline passed".into())))
    }
}

fn unavailable(error: opendal::Error) -> Failure {
    Failure::Unavailable(error.to_string())
}

/// Reads `path` unless it is larger than `cap`: its size first (a HEAD), then exactly
/// that many bytes, so an object replaced meanwhile by a larger one is still read only
/// up to the size checked.
async fn read_capped(op: &Operator, path: String, cap: u64, io: &Io) -> Outcome<Object> {
    Io::add(&io.round_trips, 1);
    let len = match op.stat(&path).await {
        Ok(meta) => meta.content_length(),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Object::Absent),
        Err(e) => return Err(unavailable(e)),
    };
    read_sized(op, path, len, cap, io).await
}

/// Reads the first `len` bytes of `path`, whose listed size is `len`, unless that is
/// more than `cap`.
async fn read_sized(op: &Operator, path: String, len: u64, cap: u64, io: &Io) -> Outcome<Object> {
    if len > cap {
        Io::add(&io.oversized, 1);
        return Ok(Object::Oversized);
    }
    if len == 0 {
        return Ok(Object::Bytes(Vec::new()));
    }
    Io::add(&io.round_trips, 1);
    match op.read_with(&path).range(0..len).await {
        Ok(buffer) => {
            Io::add(&io.bytes_read, buffer.len() as u64);
            Ok(Object::Bytes(buffer.to_vec()))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Object::Absent),
        // Replaced by a shorter object since: damaged, as far as this read goes.
        Err(e) if e.kind() == ErrorKind::Unexpected => Ok(Object::Bytes(Vec::new())),
        Err(e) => Err(unavailable(e)),
    }
}

/// Creates `path` unless it exists; whether this call created it.
async fn create(op: &Operator, path: String, bytes: Vec<u8>, io: &Io) -> Outcome<bool> {
    Io::add(&io.round_trips, 1);
    let len = bytes.len() as u64;
    match op.write_with(&path, bytes).if_not_exists(true).await {
        Ok(_) => {
            Io::add(&io.bytes_written, len);
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::ConditionNotMatch => Ok(false),
        Err(e) => Err(unavailable(e)),
    }
}

fn index_dir(name: &str) -> String {
    format!("v1/ix/{}/", name_hash(name))
}

fn slot_path(name: &str, rank: u64) -> String {
    format!("{}{rank:010}.lcix", index_dir(name))
}

/// Every entry of `name`: its slots listed, then read (at most
/// [`MAX_ENTRIES_PER_NAME`]); a slot that does not check out is counted as corrupt.
async fn entries(op: &Operator, name: &str, io: &Io) -> Outcome<Vec<Ranked>> {
    Io::add(&io.round_trips, 1);
    let listed = match op.list(&index_dir(name)).await {
        Ok(listed) => listed,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(unavailable(e)),
    };
    let mut ranks: Vec<(u64, u64)> = listed
        .iter()
        .filter_map(|entry| {
            let rank = entry.name().strip_suffix(".lcix")?.parse().ok()?;
            Some((rank, entry.metadata().content_length()))
        })
        .collect();
    ranks.sort_unstable();
    ranks.truncate(MAX_ENTRIES_PER_NAME as usize);
    let mut found = Vec::new();
    for chunk in ranks.chunks(IN_FLIGHT) {
        let mut reads = JoinSet::new();
        for &(rank, len) in chunk {
            let (op, path) = (op.clone(), slot_path(name, rank));
            let io_reads = Io::default();
            reads.spawn(async move {
                let object = read_sized(&op, path, len, MAX_ENTRY_BYTES, &io_reads).await;
                (rank, object, io_reads)
            });
        }
        while let Some(joined) = reads.join_next().await {
            let (rank, object, counted) =
                joined.map_err(|e| Failure::Unavailable(e.to_string()))?;
            // `bytes_read` counts objects (modules, manifests, artifacts), as on Redis.
            counted
                .bytes_read
                .store(0, std::sync::atomic::Ordering::Relaxed);
            io.absorb(&counted);
            let Object::Bytes(bytes) = object? else {
                continue;
            };
            match IndexEntry::decode(&bytes) {
                Ok(entry) if entry.func_name == name && entry.committed_at == rank => {
                    found.push(Ranked {
                        rank,
                        module: entry.module,
                    })
                }
                _ => Io::add(&io.corrupt, 1),
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Files `module`'s entry for `name` in the first free slot (unless it has one), and
/// returns the name's entries.
async fn claim(op: &Operator, name: &str, module: ModuleId, io: &Io) -> Outcome<Vec<Ranked>> {
    let mut known = entries(op, name, io).await?;
    for _ in 0..SLOT_ATTEMPTS {
        if known.iter().any(|e| e.module == module) || known.len() as u64 >= MAX_ENTRIES_PER_NAME {
            break;
        }
        let rank = known.iter().map(|e| e.rank + 1).max().unwrap_or(0);
        let entry = IndexEntry {
            func_name: name.to_string(),
            module,
            committed_at: rank,
        };
        create(op, slot_path(name, rank), entry.encode(), io).await?;
        // Created or not, the slot is read back: a server that checks the condition
        // and writes in two steps may have let another writer in.
        known = entries(op, name, io).await?;
    }
    Ok(known)
}

impl Io {
    /// Adds counts gathered by a concurrent task.
    fn absorb(&self, other: &Io) {
        use std::sync::atomic::Ordering::Relaxed;
        for (mine, theirs) in [
            (&self.round_trips, &other.round_trips),
            (&self.bytes_read, &other.bytes_read),
            (&self.bytes_written, &other.bytes_written),
            (&self.corrupt, &other.corrupt),
            (&self.oversized, &other.oversized),
        ] {
            mine.fetch_add(theirs.load(Relaxed), Relaxed);
        }
    }
}

/// Runs `task(item)` for every item, [`IN_FLIGHT`] at a time, and returns the results
/// in the items' order; counts go to `io`.
async fn each<I, T, F, Fut>(items: Vec<I>, io: &Io, task: F) -> Outcome<Vec<T>>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I, std::sync::Arc<Io>) -> Fut,
    Fut: Future<Output = Outcome<T>> + Send + 'static,
{
    let mut results: Vec<Option<T>> = Vec::new();
    let mut items = items.into_iter().enumerate().peekable();
    while items.peek().is_some() {
        let mut batch = JoinSet::new();
        for (index, item) in items.by_ref().take(IN_FLIGHT) {
            let counted = std::sync::Arc::new(Io::default());
            let future = task(item, std::sync::Arc::clone(&counted));
            batch.spawn(async move { (index, future.await, counted) });
        }
        while let Some(joined) = batch.join_next().await {
            let (index, outcome, counted) =
                joined.map_err(|e| Failure::Unavailable(e.to_string()))?;
            io.absorb(&counted);
            if results.len() <= index {
                results.resize_with(index + 1, || None);
            }
            results[index] = Some(outcome?);
        }
    }
    Ok(results.into_iter().flatten().collect())
}

impl S3Backend {
    /// Runs `work` (given the operator and a fresh counter) on the runtime within
    /// `deadline`, then adds what it counted to `io`.
    fn run<T: Send + 'static, Fut>(
        &self,
        deadline: Instant,
        io: &Io,
        work: impl FnOnce(Operator, std::sync::Arc<Io>) -> Fut,
    ) -> Outcome<T>
    where
        Fut: Future<Output = Outcome<T>> + Send + 'static,
    {
        let counted = std::sync::Arc::new(Io::default());
        let outcome = self.block(
            deadline,
            work(self.op.clone(), std::sync::Arc::clone(&counted)),
        );
        io.absorb(&counted);
        outcome
    }
}

/// A [`Publication`] the runtime's tasks can own.
struct OwnedPublication {
    id: ModuleId,
    wasm: Vec<u8>,
    manifest: Vec<u8>,
    functions: Vec<String>,
}

impl Backend for S3Backend {
    fn index(&self, names: &[&str], deadline: Instant, io: &Io) -> Outcome<Vec<Vec<Ranked>>> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.run(deadline, io, |op, counted| async move {
            each(names, &counted, move |name, io| {
                let op = op.clone();
                async move { entries(&op, &name, &io).await }
            })
            .await
        })
    }

    fn objects(
        &self,
        wanted: &[Wanted<'_>],
        caps: Caps,
        deadline: Instant,
        io: &Io,
    ) -> Outcome<Vec<Fetched>> {
        let wanted: Vec<(ModuleId, Option<String>)> = wanted
            .iter()
            .map(|w| (w.module, w.artifact_for.map(str::to_string)))
            .collect();
        self.run(deadline, io, |op, counted| async move {
            each(wanted, &counted, move |(id, engine), io| {
                let op = op.clone();
                async move {
                    let manifest =
                        read_capped(&op, format!("v1/mf/{id}.lcmf"), caps.module, &io).await?;
                    let wasm =
                        read_capped(&op, format!("v1/m/{id}.wasm"), caps.module, &io).await?;
                    let artifact = match engine {
                        Some(engine) => {
                            read_capped(&op, format!("v1/a/{engine}/{id}.lca"), caps.artifact, &io)
                                .await?
                        }
                        None => Object::Absent,
                    };
                    Ok(Fetched {
                        manifest,
                        wasm,
                        artifact,
                    })
                }
            })
            .await
        })
    }

    fn publish(
        &self,
        modules: &[Publication<'_>],
        deadline: Instant,
        io: &Io,
    ) -> Outcome<Vec<Vec<Vec<Ranked>>>> {
        let owned: Vec<OwnedPublication> = modules
            .iter()
            .map(|m| OwnedPublication {
                id: m.module,
                wasm: m.wasm.to_vec(),
                manifest: m.manifest.to_vec(),
                functions: m.functions.iter().map(|f| f.to_string()).collect(),
            })
            .collect();
        self.run(deadline, io, |op, counted| async move {
            each(owned, &counted, move |publication: OwnedPublication, io| {
                let op = op.clone();
                let OwnedPublication {
                    id,
                    wasm,
                    manifest,
                    functions,
                } = publication;
                async move {
                    // Bytes and manifest first: no reader sees an entry without them.
                    create(&op, format!("v1/m/{id}.wasm"), wasm, &io).await?;
                    create(&op, format!("v1/mf/{id}.lcmf"), manifest, &io).await?;
                    // The entries of a module's functions are claimed concurrently.
                    each(functions, &io, move |name, io| {
                        let op = op.clone();
                        async move { claim(&op, &name, id, &io).await }
                    })
                    .await
                }
            })
            .await
        })
    }

    fn publish_artifacts(
        &self,
        engine_key: &str,
        artifacts: &[(ModuleId, Vec<u8>)],
        deadline: Instant,
        io: &Io,
    ) -> Outcome<()> {
        let owned: Vec<(String, Vec<u8>)> = artifacts
            .iter()
            .map(|(id, envelope)| (format!("v1/a/{engine_key}/{id}.lca"), envelope.clone()))
            .collect();
        self.run(deadline, io, |op, counted| async move {
            each(owned, &counted, move |(path, envelope), io| {
                let op = op.clone();
                async move { create(&op, path, envelope, &io).await }
            })
            .await
            .map(drop)
        })
    }

    fn ping(&self, deadline: Instant, io: &Io) -> Outcome<()> {
        self.run(deadline, io, |op, counted| async move {
            Io::add(&counted.round_trips, 1);
            match op.list_with("v1/").limit(1).await {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn names(&self, deadline: Instant, io: &Io) -> Outcome<Vec<String>> {
        self.run(deadline, io, |op, counted| async move {
            Io::add(&counted.round_trips, 1);
            let listed = match op.list_with("v1/ix/").recursive(true).await {
                Ok(listed) => listed,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(unavailable(e)),
            };
            // The first slot of each name tells the name (checked against its hash).
            let mut first: std::collections::BTreeMap<String, String> = Default::default();
            for entry in &listed {
                let Some(rest) = entry.path().split("v1/ix/").nth(1) else {
                    continue;
                };
                let Some((hash, slot)) = rest.split_once('/') else {
                    continue;
                };
                if slot.ends_with(".lcix") {
                    let known = first
                        .entry(hash.to_string())
                        .or_insert_with(|| slot.to_string());
                    if slot < known.as_str() {
                        *known = slot.to_string();
                    }
                }
            }
            let slots: Vec<(String, String)> = first.into_iter().collect();
            let names = each(slots, &counted, move |(hash, slot), io| {
                let op = op.clone();
                async move {
                    let path = format!("v1/ix/{hash}/{slot}");
                    let Object::Bytes(bytes) = read_capped(&op, path, MAX_ENTRY_BYTES, &io).await?
                    else {
                        return Ok(None);
                    };
                    Ok(IndexEntry::decode(&bytes)
                        .ok()
                        .filter(|entry| name_hash(&entry.func_name) == hash)
                        .map(|entry| entry.func_name))
                }
            })
            .await?;
            Ok(names.into_iter().flatten().collect())
        })
    }
}
