//! The IndexedDB store: module bytes, manifests, and the func_name index.
//!
//! ```text
//! database <name>, schema version SCHEMA_VERSION
//!   modules    key: ModuleId hex   value: Uint8Array (the wasm bytes)
//!   manifests  key: ModuleId hex   value: { id, record: Uint8Array (Manifest record),
//!                                           functions: [func_name...], committedAt,
//!                                           analyzer: ANALYZER_VERSION that checked it,
//!                                           sha256: Uint8Array (SHA-256 of the bytes,
//!                                           when the browser has WebCrypto) }
//!              index by_function on `functions`, multiEntry: func_name -> manifests
//!   plans      key: func_name       value: { funcs: [func_name...], lists: [[ModuleId hex...]...],
//!                                           modules: [ModuleId hex...], stamp,
//!                                           kept?: Uint8Array }
//!                                           what the last complete plan of a target read
//!                                           (each func_name of its closure and the
//!                                           candidates the index listed) and the modules
//!                                           it chose, under index stamp `stamp`; `kept`:
//!                                           that plan itself when a tab that had loaded
//!                                           nothing made it (an `LCKP` record, see
//!                                           [`crate::kept`])
//!              key: 0 (a number)    value: the index stamp, a fresh random number written
//!                                           by every commit and every gc that evicts
//!   used       key: ModuleId hex   value: { id, use: the origin-wide use number of its
//!                                           last use, at: its time (ms since the epoch) }
//!   meta       key: "clock"        value: the last committedAt handed out
//!              key: "uses"         value: the last use number handed out
//! ```
//!
//! # What a reader may see
//! A module commits in one read-write transaction over the three stores. Everything it
//! writes (the bytes as a `Uint8Array`, the encoded manifest record, the function list)
//! is computed before the transaction opens; inside it there is no await but on the
//! transaction's own requests, so it cannot auto-commit half-way. IndexedDB makes the
//! transaction atomic: every tab and worker of the origin sees a whole module (bytes,
//! manifest and index entries) or none of it, a crash or a full disk leaves none of it,
//! and the commit counter in `meta` changes in the same transaction, so every tab
//! agrees on the order of commits, which duplicate resolution uses. Adding bytes that
//! are there already rewrites them and their manifest (repairing a damaged copy) and
//! keeps their commit number.
//!
//! A transaction the browser aborts (the origin's quota is full, the disk failed) is a
//! failed commit with the browser's reason (`LinkCacheQuotaExceeded`, ...), never a
//! silent success. That is why this module uses `idb`, the crate `rexie` is built on:
//! `rexie` 0.6's `Transaction::done` resolves an aborted transaction to
//! `Ok(TransactionResult::Aborted)` and drops its `DOMException`, so a quota abort
//! could not be told from any other.
//!
//! Reads check what they read: a manifest record that does not decode (checksum,
//! truncation, an unknown format version) or that describes another module is a broken
//! entry, and so are bytes whose BLAKE3 is not their key. (A large module is checked
//! against the SHA-256 its commit recorded beside the manifest, after BLAKE3 bound the
//! bytes to their key: the browser's native SHA-256 is faster than this package's
//! BLAKE3, and `WebAssembly.compile` decodes the bytes meanwhile; see `crate::load`.)
//! Both become misses with cause `broken` (or a fallback to a duplicate), never a wrong
//! link. A manifest is checked
//! against its bytes (analyzed) once, before it is committed (`addModule` analyzes,
//! `importBundle` checks), and the value records the analyzer version that did it; a load
//! re-checks only a manifest recorded by another version. Plans read through
//! [`crate::snapshot`], in one read-only transaction.
//!
//! # Plan hints
//! A record in `plans` tells the next tab which func_names and modules the last complete
//! plan of that target read, so that it can ask for them all at once instead of one
//! level of the call graph per round trip. Every transaction that changes the
//! `by_function` index (a commit, a gc that evicts) writes a new index stamp in the same
//! transaction, and `clear()` empties the store. So a plan that reads the stamp with the
//! target's candidates and finds the hint's stamp knows that the index still lists
//! exactly the hint's candidates for the hint's func_names: it reads only their
//! manifests and bytes, by key. With another stamp the hint is only a prefetch: the
//! plan asks the index for the hint's func_names, all in one batch. Either way the
//! planner decides from manifests and bytes read in the plan's own transaction; a hint
//! never names a module that the plan then uses without reading it. A hint is written in
//! a transaction of its own, only when it or its kept plan changed. A kept plan is
//! used only under its own stamp, for a tab that has loaded nothing, after the
//! embedder's decisions on its globals are asked again (`crate::kept`); its modules'
//! bytes are read and checked like any plan's.
//!
//! # Upgrades
//! The schema is declarative: opening at [`SCHEMA_VERSION`] creates missing stores and
//! indexes and drops any other store (idb's `DatabaseBuilder`), so a database of any
//! older version converges to this layout; records an older layout left that do not
//! decode count as broken entries. A database of a newer version is refused with
//! `LinkCacheSchemaTooNew`. An upgrade that another connection blocks fails with
//! `LinkCacheUpgradeBlocked` as soon as the browser fires `blocked` (no timer). A
//! connection closes itself when another tab or worker needs a version change, so it
//! never blocks an upgrade, and calls the `on_closed` callback given to
//! [`IdbStore::open`]; its later operations fail with `LinkCacheClosed`.
//!
//! # Use times and gc
//! A commit records a use of its module, and so does a tab that binds a module (at most
//! once in ten minutes per module and tab, in a small read-write transaction of its own
//! that the target does not wait for, a task after the target, or before this tab's next
//! gc or listing if that comes first; a failure to record is ignored, the record is
//! advisory). Uses are numbered by a counter in `meta`, so every tab agrees on their
//! order even within a millisecond. [`IdbStore::gc`] evicts the least recently used
//! modules whole, in one read-write transaction (bytes, manifest, its `by_function`
//! entries with it, use record): a reader sees a module or none of it, and a commit
//! racing the gc lands before or after it, never in between. Modules without a use
//! record (written by schema version 2) count as used before every other; a use record
//! without its module (a use recorded racing an eviction) goes at the next gc.
//!
//! The records are the native host's (`linkcache_core::record`): a bundle from
//! `linkcache export` imports here.
//!
//! # Where the code is
//! `connection.rs` opens and closes the connection and runs its transactions,
//! `upgrade.rs` is the schema upgrade, `commit.rs` commits a module, `counters.rs` the
//! counters in `meta`, `advisory.rs` the use records and plan hints, `read.rs` the
//! checked reads, `evict.rs` gc's evictions and `clear()`, and `damage.rs` the test hooks
//! that damage records on purpose.

mod advisory;
mod commit;
mod connection;
mod counters;
#[cfg(feature = "test-hooks")]
mod damage;
mod evict;
mod read;
mod upgrade;

use std::cell::RefCell;
use std::rc::Rc;

use idb::Database;
use js_sys::{Object, Reflect};
use linkcache_core::{Manifest, ModuleId};
use wasm_bindgen::JsValue;
use web_sys::IdbTransaction;

pub use read::decode_manifest;

/// The schema version; bump it (with an upgrade path) when the layout changes.
pub const SCHEMA_VERSION: u32 = 4;

pub(crate) const MODULES: &str = "modules";
pub(crate) const MANIFESTS: &str = "manifests";
const META: &str = "meta";
pub(crate) const USED: &str = "used";
pub(crate) const PLANS: &str = "plans";

/// The key of the index stamp in `plans` (a number: no func_name, which is a string).
pub(crate) fn stamp_key() -> JsValue {
    JsValue::from_f64(0.0)
}

/// A new index stamp: unique in practice (time and a random fraction).
fn fresh_stamp() -> JsValue {
    JsValue::from_f64(js_sys::Date::now() + js_sys::Math::random())
}
pub(crate) const BY_FUNCTION: &str = "by_function";
const CLOCK: &str = "clock";
const USES: &str = "uses";

/// One manifest as the store lists it.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    /// The module.
    pub id: ModuleId,
    /// Its manifest, or why it cannot be read.
    pub manifest: Result<Manifest, String>,
    /// Its commit number.
    pub committed_at: u64,
    /// When it was last used (ms since the epoch), if that was recorded.
    pub used_at: Option<f64>,
}

/// What [`IdbStore::gc`] did.
#[derive(Clone, Debug, Default)]
pub struct GcReport {
    /// Modules removed, least recently used first.
    pub evicted: Vec<ModuleId>,
    /// Bytes of records freed.
    pub freed: u64,
    /// Bytes of records the cache holds afterwards.
    pub remaining: u64,
}

/// A linkcache database in IndexedDB: one connection.
pub struct IdbStore {
    db: Database,
    /// Advisory writes still running (use records, plan hints): `close()` aborts them,
    /// so that a closed cache never holds up another tab's upgrade.
    advisory: Rc<RefCell<Vec<IdbTransaction>>>,
}

fn set(object: &Object, key: &str, value: &JsValue) {
    Reflect::set(object, &JsValue::from_str(key), value)
        .expect("setting a property of a plain object");
}

fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

pub(crate) fn key(id: &ModuleId) -> JsValue {
    JsValue::from_str(&id.to_string())
}
