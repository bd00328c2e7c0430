//! What the remote tier asks of a storage engine ([`Backend`]), in batches so that a
//! closure costs a few round trips whatever its number of modules, and the counters
//! every engine keeps.
//!
//! A backend only moves bytes: everything it returns is untrusted and checked by the
//! tier (`fetch.rs`) before anything is written locally. Each call gets a deadline and
//! fails with a [`Failure`] when the engine does not answer in time or cannot be
//! reached; objects that are absent or too large are not failures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use linkcache_core::ModuleId;

/// The remote could not be used for this operation (counted by the breaker).
#[derive(Debug)]
pub(crate) enum Failure {
    /// The deadline passed.
    Timeout(String),
    /// Refused, reset, a protocol or server error.
    Unavailable(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout(why) => write!(f, "timed out: {why}"),
            Failure::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

pub(crate) type Outcome<T> = Result<T, Failure>;

/// An object as fetched.
#[derive(Debug)]
pub(crate) enum Object {
    Absent,
    /// Larger than the cap given; its bytes were not transferred.
    Oversized,
    Bytes(Vec<u8>),
}

/// An index entry of the remote: `module` defines the function, published with `rank`
/// (the order of publication of that function's entries: 0 first). Every machine
/// resolves duplicates by rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ranked {
    pub(crate) rank: u64,
    pub(crate) module: ModuleId,
}

/// The objects of one module asked for in one round.
#[derive(Debug)]
pub(crate) struct Wanted<'a> {
    pub(crate) module: ModuleId,
    /// The engine key whose artifact is wanted too, if any.
    pub(crate) artifact_for: Option<&'a str>,
}

/// What came back for a [`Wanted`].
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) manifest: Object,
    pub(crate) wasm: Object,
    pub(crate) artifact: Object,
}

/// A module to publish: its bytes, its encoded manifest and the functions it defines.
pub(crate) struct Publication<'a> {
    pub(crate) module: ModuleId,
    pub(crate) wasm: &'a [u8],
    pub(crate) manifest: &'a [u8],
    pub(crate) functions: Vec<&'a str>,
}

/// Size caps of what a fetch transfers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    pub(crate) module: u64,
    pub(crate) artifact: u64,
}

/// The most index entries kept per function: a name published by more modules than
/// this gets no more entries (the first ones decide duplicates anyway).
pub(crate) const MAX_ENTRIES_PER_NAME: u64 = 64;
/// The most bytes of index entries transferred for one function.
pub(crate) const MAX_INDEX_BYTES: u64 = 64 * 1024;

/// A storage engine. Every method is one round trip (Redis) or one parallel batch
/// (S3) unless it says otherwise.
pub(crate) trait Backend: Send + Sync {
    /// The entries of each name, in any order; a name whose entries are damaged or too
    /// many gets those that parse (the rest counted as corrupt in `io`).
    fn index(&self, names: &[&str], deadline: Instant, io: &Io) -> Outcome<Vec<Vec<Ranked>>>;

    /// The manifest, bytes and (when asked) artifact envelope of each module.
    fn objects(
        &self,
        wanted: &[Wanted<'_>],
        caps: Caps,
        deadline: Instant,
        io: &Io,
    ) -> Outcome<Vec<Fetched>>;

    /// Publishes modules: bytes and manifest created only if absent, then one index
    /// entry per function, never overwriting another machine's entry. Returns, for
    /// each module and each of its functions in order, every entry of that function
    /// after the publication (so the publisher learns the winner).
    fn publish(
        &self,
        modules: &[Publication<'_>],
        deadline: Instant,
        io: &Io,
    ) -> Outcome<Vec<Vec<Vec<Ranked>>>>;

    /// Publishes artifact envelopes for `engine_key`, created only if absent.
    fn publish_artifacts(
        &self,
        engine_key: &str,
        artifacts: &[(ModuleId, Vec<u8>)],
        deadline: Instant,
        io: &Io,
    ) -> Outcome<()>;

    /// Whether the engine answers.
    fn ping(&self, deadline: Instant, io: &Io) -> Outcome<()>;

    /// Every function name the remote indexes (several round trips).
    fn names(&self, deadline: Instant, io: &Io) -> Outcome<Vec<String>>;
}

/// Counters a backend adds to as it works.
#[derive(Debug, Default)]
pub(crate) struct Io {
    pub(crate) round_trips: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) corrupt: AtomicU64,
    pub(crate) oversized: AtomicU64,
}

impl Io {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The hex BLAKE3 of a function name: how the remote keys its entries (as the local
/// index directory does).
pub(crate) fn name_hash(func_name: &str) -> String {
    blake3::hash(func_name.as_bytes()).to_hex().to_string()
}
