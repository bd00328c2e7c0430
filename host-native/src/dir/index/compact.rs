//! Compaction, holding the directory's lock exclusively (no commit appends meanwhile):
//!
//! - *minor* (after a commit, while the result stays small beside the main table): the
//!   recent table and every segment merged into a new recent table;
//! - *major* (gc, `remove`, or when the recent table would grow past a quarter of the
//!   main one): everything merged into a new main table, the recent table removed.
//!
//! So a commit's compaction rewrites a few hundred kilobytes at most, and an entry is
//! rewritten into the main table about once per quadrupling of the main table, however
//! large the cache grows.
//!
//! Order, so that a crash at any point loses no entry of a module that stays:
//! the new table is written and made durable (one sync), renamed into place, and only
//! then is what it merged removed. A crash before the rename leaves everything as it
//! was; after it, files whose entries the new table also holds (the same entries twice,
//! the earliest time counts). The removals are not synced apart from the rename: the
//! journal of ext4, xfs or btrfs commits a rename and a later removal in that order, so
//! a power loss cannot keep the removal and lose the rename (the next commit's sync
//! makes both durable). Entries of the modules being
//! removed, and entries whose module has no pack (gc removed it, or a power loss lost a
//! commit's pack but not its record) are left out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use linkcache_core::{IndexEntry, ModuleId, Name};

use super::table::{self, Entry, Table};
use super::{RECENT, TABLE, list_segments, segment};
use crate::dir::{DirStore, Problem, remove_if_present};
use crate::error::{Error, IoContext};

/// What a compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Compacted {
    /// Entries in the new table.
    pub(crate) entries: usize,
    /// Entries left out because their module has no pack.
    pub(crate) dangling: usize,
    /// Entries left out because their module is being removed.
    pub(crate) removed: usize,
    /// Segments merged and removed.
    pub(crate) segments: usize,
}

/// What the index holds, read whole (all of it, or all but the main table).
pub(crate) struct WholeIndex {
    /// One entry per (function, module), with its earliest time.
    pub(crate) entries: BTreeMap<(Name, ModuleId), u64>,
    /// The segments read.
    pub(crate) segments: Vec<PathBuf>,
    /// Slots in the main table (read or not).
    pub(crate) main_slots: u64,
    /// Damage found on the way (the damaged parts are left out).
    pub(crate) damage: Vec<Problem>,
}

impl DirStore {
    /// Reads the tables and every segment whole (gc, `verify`, listings).
    pub(crate) fn whole_index(&self) -> Result<WholeIndex, Error> {
        self.read_index(true)
    }

    /// Reads the recent table and every segment, and the main table too when `main`.
    fn read_index(&self, main: bool) -> Result<WholeIndex, Error> {
        let mut whole = WholeIndex {
            entries: BTreeMap::new(),
            segments: Vec::new(),
            main_slots: 0,
            damage: Vec::new(),
        };
        let mut enter = |name: Name, module: ModuleId, committed_at: u64| {
            let time = whole.entries.entry((name, module)).or_insert(committed_at);
            *time = (*time).min(committed_at);
        };
        for (path, is_main) in [(TABLE, true), (RECENT, false)] {
            let table_path = self.root().join(path);
            match Table::open(&table_path)? {
                None => {}
                Some(Err(reason)) => whole.damage.push(Problem {
                    path: table_path.clone(),
                    reason,
                }),
                Some(Ok(table)) if is_main && !main => whole.main_slots = table.len(),
                Some(Ok(table)) => {
                    if is_main {
                        whole.main_slots = table.len();
                    }
                    if table.fences_damaged() {
                        whole.damage.push(Problem {
                            path: table_path.clone(),
                            reason: "its fences fail their checksum".into(),
                        });
                    }
                    let (entries, damaged) = table.entries().at(&table_path)?;
                    for entry in entries {
                        enter(entry.name, entry.module, entry.committed_at);
                    }
                    for (slot, reason) in damaged {
                        whole.damage.push(Problem {
                            path: table_path.clone(),
                            reason: format!("slot {slot}: {reason}"),
                        });
                    }
                }
            }
        }
        for (_, path) in list_segments(self.root())? {
            let Some(bytes) = super::super::read_if_present(&path)? else {
                continue;
            };
            let parsed = segment::parse(&bytes);
            for record in parsed.records {
                for (name, committed_at) in record.entries {
                    enter(name, record.module, committed_at);
                }
            }
            for (offset, reason) in parsed.damaged {
                whole.damage.push(Problem {
                    path: path.clone(),
                    reason: format!("record at byte {offset}: {reason}"),
                });
            }
            whole.segments.push(path);
        }
        Ok(whole)
    }

    /// Every index entry: func_name -> entries in commit order, sorted by name.
    pub fn index(&self) -> Result<BTreeMap<String, Vec<IndexEntry>>, Error> {
        let mut index: BTreeMap<String, Vec<IndexEntry>> = BTreeMap::new();
        for ((name, module), committed_at) in self.whole_index()?.entries {
            index
                .entry(String::from(name.as_str()))
                .or_default()
                .push(IndexEntry {
                    func_name: String::from(name.as_str()),
                    module,
                    committed_at,
                });
        }
        for entries in index.values_mut() {
            entries.sort_by_key(|e| (e.committed_at, e.module));
        }
        Ok(index)
    }

    /// Major compaction: merges the tables and the segments into a new main table,
    /// leaving out the entries of `removing` and of modules without a pack. The caller
    /// holds the directory's lock exclusively.
    pub(crate) fn compact_index(&self, removing: &BTreeSet<ModuleId>) -> Result<Compacted, Error> {
        let whole = self.whole_index()?;
        self.write_table(whole, removing, TABLE, true)
    }

    /// After a commit, holding the lock exclusively: a minor compaction, or a major one
    /// when the recent table would grow past a quarter of the main one.
    pub(crate) fn compact_segments(&self) -> Result<Compacted, Error> {
        let young = self.read_index(false)?;
        if (young.entries.len() as u64) * 4 >= young.main_slots {
            return self.compact_index(&BTreeSet::new());
        }
        self.write_table(young, &BTreeSet::new(), RECENT, false)
    }

    /// Writes `read`'s entries (but those of `removing` and of modules without a pack)
    /// as the table at `destination`, then removes what was merged: the segments, and
    /// the recent table when `major`.
    fn write_table(
        &self,
        read: WholeIndex,
        removing: &BTreeSet<ModuleId>,
        destination: &str,
        major: bool,
    ) -> Result<Compacted, Error> {
        let mut report = Compacted {
            segments: read.segments.len(),
            ..Compacted::default()
        };
        let mut has_pack: HashMap<ModuleId, bool> = HashMap::new();
        let mut kept = Vec::with_capacity(read.entries.len());
        for ((name, module), committed_at) in read.entries {
            if removing.contains(&module) {
                report.removed += 1;
                continue;
            }
            let present = *has_pack
                .entry(module)
                .or_insert_with(|| self.pack_path(&module).exists());
            if !present {
                report.dangling += 1;
                continue;
            }
            kept.push(Entry {
                name,
                module,
                committed_at,
            });
        }
        report.entries = kept.len();
        let table_path = self.root().join(destination);
        let staged = self.stage(table_path.clone(), &table::encode(&kept))?;
        self.sync(&[staged.file_path()])?;
        self.place(vec![staged])?;
        // No sync between the rename and the removals: a journaling file system commits
        // them in order (module docs).
        if major {
            remove_if_present(&self.root().join(RECENT))?;
        }
        for segment in &read.segments {
            remove_if_present(segment)?;
        }
        self.bump_index_stamp()?;
        Ok(report)
    }
}
