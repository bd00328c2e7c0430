//! Writes to the remote: a bounded queue drained by one background thread, so that a
//! local commit never waits on the network, and the adoption of the remote's ranks
//! that every publication brings back.
//!
//! The queue holds module ids (at most [`QUEUE_CAPACITY`]); the thread reads bytes and
//! manifests from the local directory when it sends them, in batches of up to
//! [`BATCH`] modules (one round trip on Redis). A full queue drops the job and counts
//! it (`publish_dropped`); a batch the remote refuses is counted (`publish_failed`).
//! Neither is retried: `linkcache push` publishes whatever is missing, and publishing
//! is idempotent (objects are created only if absent, an entry only once per module).

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use linkcache_core::ModuleId;

use super::backend::{Publication, Ranked};
use super::fetch::{Local, local_module};
use super::{RemoteMode, RemoteTrust, Tier, add};
use crate::dir::{ArtifactLookup, DirStore, RankedCommit};
use crate::registry::lock;

/// Jobs the queue holds before it drops new ones.
pub(crate) const QUEUE_CAPACITY: usize = 1024;
/// Modules published per round trip.
pub(crate) const BATCH: usize = 32;

/// Something to publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Job {
    /// A module committed locally: bytes, manifest, one entry per function.
    Module(ModuleId),
    /// The precompiled artifact just stored for a module (trusted remotes only).
    Artifact(ModuleId),
}

/// What the publisher needs of the cache.
pub(crate) struct Context {
    pub(crate) dir: DirStore,
    pub(crate) engine_key: String,
    pub(crate) artifacts: bool,
    /// Called after winners learnt from the remote were filed locally: fresh plans of
    /// this process may bind another module now.
    pub(crate) on_adopted: Box<dyn Fn() + Send + Sync>,
}

impl Context {
    fn local(&self) -> Local<'_> {
        Local {
            dir: &self.dir,
            engine_key: &self.engine_key,
            artifacts: self.artifacts,
        }
    }
}

/// The queue and its thread; dropping it lets the thread finish the queue within a
/// bound.
pub(crate) struct Publisher {
    sender: Mutex<Option<SyncSender<Job>>>,
    pending: Arc<Pending>,
    thread: Mutex<Option<JoinHandle<()>>>,
    tier: Arc<Tier>,
}

/// Jobs queued or being published, for `flush`.
#[derive(Default)]
struct Pending {
    count: Mutex<u64>,
    changed: Condvar,
}

/// The result of publishing modules synchronously (`push`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Modules sent (the remote keeps what it had already).
    pub published: usize,
    /// Modules that could not be sent (the remote failed or is cooling down).
    pub failed: usize,
    /// Duplicates whose remote winner was filed locally.
    pub adopted: usize,
}

impl Publisher {
    /// Starts the publisher thread, unless the remote is read-only (`None`).
    pub(crate) fn start(tier: Arc<Tier>, context: Context) -> Option<Publisher> {
        if tier.config.mode != RemoteMode::ReadWrite {
            return None;
        }
        let (sender, receiver) = sync_channel(QUEUE_CAPACITY);
        let pending = Arc::new(Pending::default());
        let thread = {
            let tier = Arc::clone(&tier);
            let pending = Arc::clone(&pending);
            std::thread::Builder::new()
                .name("linkcache-publish".into())
                .spawn(move || drain(&tier, &context, &receiver, &pending))
                .ok()?
        };
        Some(Publisher {
            sender: Mutex::new(Some(sender)),
            pending,
            thread: Mutex::new(Some(thread)),
            tier,
        })
    }

    /// Queues a job without waiting; a full queue drops it (counted).
    pub(crate) fn enqueue(&self, job: Job) {
        let sender = lock(&self.sender);
        let Some(sender) = sender.as_ref() else {
            return;
        };
        *lock(&self.pending.count) += 1;
        match sender.try_send(job) {
            Ok(()) => add(&self.tier.counters.publish_queued, 1),
            Err(_) => {
                add(&self.tier.counters.publish_dropped, 1);
                self.pending.done(1);
            }
        }
    }

    /// Waits until every queued job was published (or failed), at most `timeout`;
    /// whether the queue is empty.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        self.pending.wait_empty(Instant::now() + timeout)
    }
}

impl Pending {
    fn done(&self, jobs: u64) {
        let mut count = lock(&self.count);
        *count = count.saturating_sub(jobs);
        self.changed.notify_all();
    }

    fn wait_empty(&self, deadline: Instant) -> bool {
        let mut count = lock(&self.count);
        while *count > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            count = self
                .changed
                .wait_timeout(count, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl Drop for Publisher {
    /// Closes the queue and gives the thread twice the remote's timeout to finish it;
    /// a thread still running then is left to finish on its own.
    fn drop(&mut self) {
        lock(&self.sender).take();
        let finished = self.flush(self.tier.config.timeout * 2);
        if let Some(thread) = lock(&self.thread).take()
            && finished
        {
            let _ = thread.join();
        }
    }
}

/// The publisher thread: batches of jobs until the queue is closed.
fn drain(tier: &Tier, context: &Context, receiver: &Receiver<Job>, pending: &Pending) {
    while let Ok(first) = receiver.recv() {
        let mut jobs = vec![first];
        while jobs.len() < BATCH {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let (mut modules, mut artifacts) = (Vec::new(), Vec::new());
        for job in &jobs {
            match *job {
                Job::Module(id) => modules.push(id),
                Job::Artifact(id) => artifacts.push(id),
            }
        }
        if !modules.is_empty() {
            tier.publish_modules(context, &modules);
        }
        if !artifacts.is_empty() {
            tier.publish_artifacts(context, &artifacts);
        }
        pending.done(jobs.len() as u64);
    }
}

impl Tier {
    /// Publishes committed modules now (one round trip per [`BATCH`]), then files
    /// locally the ranks the remote gave them and the winners of their functions.
    pub(crate) fn publish_modules(&self, context: &Context, ids: &[ModuleId]) -> PushReport {
        let mut report = PushReport::default();
        for chunk in ids.chunks(BATCH) {
            let items: Vec<(Vec<u8>, linkcache_core::Manifest, Vec<u8>)> = chunk
                .iter()
                .filter_map(|id| local_module(&context.dir, id))
                .map(|(wasm, manifest)| {
                    let encoded = manifest.encode();
                    (wasm, manifest, encoded)
                })
                .collect();
            let publications: Vec<Publication<'_>> = items
                .iter()
                .map(|(wasm, manifest, encoded)| Publication {
                    module: manifest.module,
                    wasm,
                    manifest: encoded,
                    functions: manifest.functions.iter().map(|f| f.name.as_str()).collect(),
                })
                .collect();
            let budget = self.config.publish_timeout;
            let Some(replies) = self.run_for("publish", budget, |deadline| {
                self.backend.publish(&publications, deadline, &self.io)
            }) else {
                add(&self.counters.publish_failed, chunk.len() as u64);
                report.failed += chunk.len();
                continue;
            };
            report.published += items.len();
            add(&self.counters.modules_published, items.len() as u64);
            add(
                &self.counters.entries_published,
                publications.iter().map(|p| p.functions.len() as u64).sum(),
            );
            report.adopted += self.adopt(context, &items, &replies);
        }
        report
    }

    /// Files the ranks a publication brought back: this machine's modules get theirs,
    /// and each function's winner (rank 0 for it, usually) is fetched when it is
    /// another module. Returns the winners filed.
    fn adopt(
        &self,
        context: &Context,
        items: &[(Vec<u8>, linkcache_core::Manifest, Vec<u8>)],
        replies: &[Vec<Vec<Ranked>>],
    ) -> usize {
        let mut own = Vec::new();
        let mut winners: BTreeMap<String, Vec<Ranked>> = BTreeMap::new();
        for ((wasm, manifest, _), per_function) in items.iter().zip(replies) {
            let mut ranks = Vec::new();
            for (function, entries) in manifest.functions.iter().zip(per_function) {
                if let Some(mine) = entries.iter().find(|e| e.module == manifest.module) {
                    ranks.push((String::from(&function.name), mine.rank));
                }
                if let Some(best) = entries.iter().min()
                    && best.module != manifest.module
                {
                    winners.insert(String::from(&function.name), vec![*best]);
                }
            }
            own.push((wasm, manifest, ranks));
        }
        let batch: Vec<RankedCommit<'_>> = own
            .iter()
            .map(|(wasm, manifest, ranks)| RankedCommit {
                wasm,
                manifest,
                ranks,
            })
            .collect();
        if let Err(error) = context.dir.commit_ranked(&batch) {
            tracing::warn!(%error, "linkcache: could not file the remote's ranks locally");
        }
        let wanted = winners.len();
        let mut adopted = 0;
        if wanted > 0 {
            let local = context.local();
            self.run_for("adopt", self.config.publish_timeout, |deadline| {
                let filed = self.fetch_chosen(&local, &mut winners, deadline)?;
                adopted = filed.len();
                Ok(())
            });
            add(&self.counters.adopted, adopted as u64);
        }
        (context.on_adopted)();
        adopted
    }

    /// Publishes the artifacts of `ids` stored locally for this engine, sealed (and
    /// signed with the shared key, if any).
    pub(crate) fn publish_artifacts(&self, context: &Context, ids: &[ModuleId]) {
        if self.config.trust != RemoteTrust::Native || !context.artifacts {
            return;
        }
        let mut sealed = Vec::new();
        for id in ids {
            let Ok(ArtifactLookup::Found { mut file, len, .. }) =
                context.dir.artifact(&context.engine_key, id)
            else {
                continue;
            };
            // The lookup hashed the file through this handle: read it from the start.
            let mut payload = Vec::with_capacity(len as usize);
            if file.rewind().is_err() || file.read_to_end(&mut payload).is_err() {
                continue;
            }
            sealed.push((
                *id,
                super::envelope::seal(&context.engine_key, id, &payload, self.config.key.as_ref()),
            ));
        }
        if sealed.is_empty() {
            return;
        }
        let sent = self.run_for(
            "publish artifacts",
            self.config.publish_timeout,
            |deadline| {
                self.backend
                    .publish_artifacts(&context.engine_key, &sealed, deadline, &self.io)
            },
        );
        if sent.is_some() {
            add(&self.counters.artifacts_published, sealed.len() as u64);
        }
    }
}
