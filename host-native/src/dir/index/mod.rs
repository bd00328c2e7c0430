//! The function index: which modules define a function name, and when each was
//! committed. Log-structured, so that indexing a module costs one append whatever its
//! number of functions:
//!
//! - `index/log/<pid>-<random>.lcil`: segments (`segment.rs`). Each `DirStore` that
//!   commits appends one record per module to a segment of its own, created
//!   exclusively at its first commit.
//! - `index/table.lcit` and `index/recent.lcit`: tables (`table.rs`), sorted by name
//!   hash, searched by bisection. Compaction (`compact.rs`), holding the directory's
//!   lock exclusively, merges the segments into the recent table while it stays small
//!   beside the main table, and everything into the main table otherwise (and always
//!   in gc), so a commit's compaction rewrites little, and each entry is rewritten a
//!   bounded number of times as the main table grows.
//!
//! A reader keeps an [`IndexView`]: the open tables and what it read of each segment,
//! refreshed when the index stamp moved (`hint.rs`; every commit and compaction moves
//! it), reading only what segments gained since. Segments are compacted once they hold
//! a few tens of kilobytes, so a new process's first lookup parses little. The same
//! (function, module) may be entered more than once (a re-add after a crash, a remote
//! rank, a compaction interrupted before it removed what it merged): the earliest time
//! counts.

mod compact;
pub(crate) mod segment;
pub(crate) mod table;

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use linkcache_core::{Candidate, Name};

use table::Table;

use super::hint::IndexStamp;
use super::{DirStore, trust};
use crate::error::{Error, IoContext};

/// The main table's path below the root.
pub(super) const TABLE: &str = "index/table.lcit";
/// The recent table's path below the root.
pub(super) const RECENT: &str = "index/recent.lcit";
/// The segments' directory below the root.
pub(super) const LOG: &str = "index/log";
const SEGMENT_EXT: &str = "lcil";

/// Compaction runs after a commit when the segments hold more than this many bytes
/// (about 250 modules of 8 functions, or two and a half batches of 100: what a new
/// process parses at its first lookup, about half a millisecond at most; each
/// compaction costs a sync)...
const COMPACT_AFTER_BYTES: u64 = 64 << 10;
/// ...or there are more than this many (each process that commits writes one).
const COMPACT_AFTER_SEGMENTS: usize = 32;

/// Function name -> candidates, as read from segments.
type Logged = HashMap<Name, Logged1, foldhash::fast::RandomState>;

/// The candidates of one name in the segments: almost always one.
#[derive(Debug)]
enum Logged1 {
    One(Candidate),
    More(Vec<Candidate>),
}

/// What this process has read of the index.
#[derive(Debug, Default)]
pub(crate) struct IndexView {
    /// The stamp read before the last complete refresh.
    stamp: Option<IndexStamp>,
    /// The main and the recent table, as read.
    tables: [ViewedTable; 2],
    segments: HashMap<OsString, SegmentRead>,
    /// The entries read from segments.
    logged: Logged,
    /// Whether damage was seen (a damaged table, slot or record): the next commit
    /// compacts the index, which leaves the damage out.
    damage_seen: Cell<bool>,
}

/// One table file as the view read it.
#[derive(Debug, Default)]
struct ViewedTable {
    /// `None` when absent or damaged (read as empty).
    table: Option<Table>,
    /// Which file the view read (even a damaged one).
    identity: Option<(u64, u64)>,
}

#[derive(Debug)]
struct SegmentRead {
    identity: (u64, u64),
    /// Bytes parsed so far (up to the end of the last complete record).
    end: u64,
}

/// The segment this `DirStore` appends to.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    file: File,
    path: PathBuf,
}

impl IndexView {
    /// Brings the view up to date with the directory, unless `stamp` is the stamp it
    /// was last brought up to date under.
    pub(crate) fn refresh(&mut self, root: &Path, stamp: IndexStamp) -> Result<(), Error> {
        if self.stamp == Some(stamp) {
            return Ok(());
        }
        // A compaction between reading the tables and listing the segments makes a
        // reading incomplete: it is detected and read again. Compactions are rare;
        // after a few attempts the view is used as read, without the stamp, so that
        // the next call reads again.
        for _ in 0..8 {
            if self.try_refresh(root)? {
                self.stamp = Some(stamp);
                return Ok(());
            }
        }
        self.stamp = None;
        Ok(())
    }

    /// Forgets everything read (a compaction replaced what it was read from).
    fn forget(&mut self) {
        self.tables = Default::default();
        self.segments.clear();
        self.logged.clear();
        self.damage_seen.set(false);
    }

    /// One attempt: `Ok(false)` when a compaction ran meanwhile.
    fn try_refresh(&mut self, root: &Path) -> Result<bool, Error> {
        let paths = [root.join(TABLE), root.join(RECENT)];
        let identities = [identity_of(&paths[0])?, identity_of(&paths[1])?];
        let listed = list_segments(root)?;
        if identities != [self.tables[0].identity, self.tables[1].identity]
            || self
                .segments
                .keys()
                .any(|name| !listed.iter().any(|(n, _)| n == name))
        {
            self.forget();
            for (viewed, (path, identity)) in
                self.tables.iter_mut().zip(paths.iter().zip(identities))
            {
                // A damaged table is read as empty (verify reports it; a re-add of each
                // module indexes it again, and the next compaction writes a sound table).
                viewed.table = match Table::open(path)? {
                    Some(Ok(table)) => Some(table),
                    Some(Err(_)) => {
                        self.damage_seen.set(true);
                        None
                    }
                    None => None,
                };
                viewed.identity = identity;
            }
        }
        for (name, path) in listed {
            let file = match File::open(&path) {
                Ok(file) => file,
                // Merged and removed by a compaction since the listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(Error::io(&path, e)),
            };
            let meta = file.metadata().at(&path)?;
            let read = self.segments.entry(name).or_insert(SegmentRead {
                identity: (meta.dev(), meta.ino()),
                end: 0,
            });
            if read.identity != (meta.dev(), meta.ino()) {
                self.forget();
                return Ok(false);
            }
            if meta.len() <= read.end {
                continue;
            }
            let mut bytes = vec![0u8; (meta.len() - read.end) as usize];
            file.read_exact_at(&mut bytes, read.end).at(&path)?;
            let parsed = segment::parse(&bytes);
            read.end += parsed.end as u64;
            if !parsed.damaged.is_empty() {
                self.damage_seen.set(true);
            }
            self.logged.reserve(parsed.records.len() * 4);
            for record in parsed.records {
                for (name, committed_at) in record.entries {
                    let candidate = Candidate {
                        module: record.module,
                        committed_at,
                    };
                    match self.logged.entry(name) {
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert(Logged1::One(candidate));
                        }
                        std::collections::hash_map::Entry::Occupied(mut slot) => {
                            let slot = slot.get_mut();
                            match slot {
                                Logged1::One(first) => {
                                    *slot = Logged1::More(vec![*first, candidate])
                                }
                                Logged1::More(all) => all.push(candidate),
                            }
                        }
                    }
                }
            }
        }
        // A table is renamed into place before what it merged is removed: the same
        // tables now mean that every segment they did not merge was listed.
        if [identity_of(&paths[0])?, identity_of(&paths[1])?] != identities {
            self.forget();
            return Ok(false);
        }
        Ok(true)
    }

    /// The candidates for `func_name`: one per module, with its earliest time.
    pub(crate) fn candidates(&self, func_name: &str) -> Result<Vec<Candidate>, Error> {
        let mut found = Vec::new();
        for (viewed, path) in self.tables.iter().zip([TABLE, RECENT]) {
            if let Some(table) = &viewed.table {
                let damaged = table
                    .candidates(func_name, &mut found)
                    .map_err(|e| Error::io(Path::new(path), e))?;
                if damaged {
                    self.damage_seen.set(true);
                }
            }
        }
        match self.logged.get(func_name) {
            Some(Logged1::One(candidate)) => found.push(*candidate),
            Some(Logged1::More(all)) => found.extend_from_slice(all),
            None => {}
        }
        Ok(earliest_per_module(found))
    }

    /// Whether the view met damage since the tables it reads were written.
    pub(crate) fn damage_seen(&self) -> bool {
        self.damage_seen.get()
    }

    /// How many segments the view read, and their bytes.
    pub(crate) fn segments(&self) -> (usize, u64) {
        (
            self.segments.len(),
            self.segments.values().map(|s| s.end).sum(),
        )
    }
}

/// (device, inode) of the file at `path`, `None` when there is none.
fn identity_of(path: &Path) -> Result<Option<(u64, u64)>, Error> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some((meta.dev(), meta.ino()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// One candidate per module, with the earliest time it was entered with.
pub(crate) fn earliest_per_module(mut found: Vec<Candidate>) -> Vec<Candidate> {
    found.sort_by_key(|c| (c.module, c.committed_at));
    found.dedup_by_key(|c| c.module);
    found
}

/// The segments in the log directory: (file name, path).
fn list_segments(root: &Path) -> Result<Vec<(OsString, PathBuf)>, Error> {
    let dir = root.join(LOG);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == SEGMENT_EXT) {
            segments.push((entry.file_name(), path));
        }
    }
    segments.sort();
    Ok(segments)
}

impl SegmentWriter {
    /// A new segment, created exclusively (mode 0600, a name nobody can predict).
    fn create(root: &Path) -> Result<SegmentWriter, Error> {
        let dir = root.join(LOG);
        // No symbolic link on the way (`index` or `index/log` planted as a link to a
        // directory elsewhere), before and after creating what is missing: nothing is
        // written outside the root.
        let inside_root = || {
            trust::check_dirs_below(root, &dir, trust::DirCheck::InsideRoot).map_err(|reason| {
                Error::io(
                    &dir,
                    io::Error::new(io::ErrorKind::PermissionDenied, reason),
                )
            })
        };
        inside_root()?;
        trust::create_private_dir(&dir).at(&dir)?;
        inside_root()?;
        let (file, path) = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .suffix(&format!(".{SEGMENT_EXT}"))
            .tempfile_in(&dir)
            .at(&dir)?
            .keep()
            .map_err(|e| Error::io(&dir, e.error))?;
        Ok(SegmentWriter { file, path })
    }

    /// Whether the segment is still in the directory (a compaction removes it).
    fn is_in_place(&self) -> bool {
        self.file.metadata().is_ok_and(|meta| meta.nlink() > 0)
    }
}

impl DirStore {
    /// The index view, brought up to date.
    pub(crate) fn index_view(&self) -> Result<std::sync::MutexGuard<'_, IndexView>, Error> {
        let stamp = self.index_stamp();
        let mut view = self
            .inner
            .index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        view.refresh(self.root(), stamp)?;
        Ok(view)
    }

    /// Appends index records to this store's segment (a new one when it has none, or
    /// when a compaction merged and removed it). Called holding the directory's lock
    /// shared, so no compaction runs meanwhile. Returns the segment's path (to sync).
    pub(super) fn append_index(&self, records: &[u8]) -> Result<PathBuf, Error> {
        let mut writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !writer.as_ref().is_some_and(SegmentWriter::is_in_place) {
            *writer = Some(SegmentWriter::create(self.root())?);
        }
        let segment = writer.as_mut().expect("just set");
        let path = segment.path.clone();
        if let Err(e) = segment.file.write_all(records) {
            // A partial write leaves a torn record: later records go to a new segment.
            *writer = None;
            return Err(Error::io(&path, e));
        }
        Ok(path)
    }

    /// After a commit: compacts the index when its segments grew past the thresholds,
    /// or when this process met damage in it (a compaction leaves the damage out, and
    /// the commit has just entered again what it cost), and no other process holds the
    /// directory's lock. A failure is logged: the commit it follows succeeded, and the
    /// next one tries again.
    ///
    /// For damage the lock is tried a few more times, over at most 15 ms: a child
    /// process this one is starting holds a copy of every descriptor, the lock's
    /// included, from its fork to its exec. That is enough to skip the compaction that
    /// completes a repair (the repair test failed 5 times in 100 runs beside tests that
    /// start processes; session 27). Another process's commit may hold the lock longer,
    /// and the growth thresholds are met again by the next commit anyway.
    pub(super) fn compact_if_due(&self) {
        let (due, damaged) = match self.index_view() {
            Ok(view) => {
                let (count, bytes) = view.segments();
                let grown = count > COMPACT_AFTER_SEGMENTS || bytes > COMPACT_AFTER_BYTES;
                (grown || view.damage_seen(), view.damage_seen())
            }
            Err(_) => (false, false),
        };
        if !due {
            return;
        }
        let waits: &[u64] = if damaged { &[1, 2, 4, 8] } else { &[] };
        let mut lock = self.try_lock_exclusive();
        for wait in waits {
            if !matches!(lock, Ok(None)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(*wait));
            lock = self.try_lock_exclusive();
        }
        let Ok(Some(_lock)) = lock else {
            return;
        };
        if let Err(error) = self.compact_segments() {
            tracing::warn!(dir = %self.root().display(), %error, "linkcache: index compaction failed");
        }
    }
}
