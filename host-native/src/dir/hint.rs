//! Plan hints: what the last complete plan of a target read from the index and the
//! manifests, kept on disk so that the next process plans that target without asking
//! the directory again.
//!
//! # The index stamp
//! `<root>/index-stamp` grows by one byte (an `O_APPEND` write, atomic between
//! processes) every time the index changes: after a commit appended its records to its
//! segment, after a compaction (gc, `remove`, or a commit's) renamed a new table into
//! place. Its inode and length, read with one `stat`, are the [`IndexStamp`]. A process
//! that reads the stamp before it reads the index, and finds the same stamp later, knows
//! that every entry it read is still there and that no entry was added since: the bump
//! follows the change, so a plan that read the index while a commit was appending its
//! records read an older stamp. The index view of each process (`index/`) is refreshed
//! by the same rule.
//! The file grows by one byte per commit (a million commits make a megabyte).
//!
//! # Hints
//! `plans/<ab>/<name-hash>.lcph` holds, for one target, the stamp read before its plan,
//! the candidates of every func_name the plan asked for and the manifests it read (a
//! [`RecordKind::PlanHint`] record, checksummed like every record). When the stamp is
//! still the directory's, those answers are exactly what the directory would give now
//! (manifests are named by the BLAKE3 of their module, so they never change), and the
//! planner gets them from the hint: one `stat` and one read instead of one directory
//! listing per func_name and one read per manifest. With another stamp the hint is not
//! used at all. The planner still decides, with this process's bindings, broken modules
//! and global checks; the module bytes and artifacts a plan loads are read and checked
//! as always, so a hint can make a plan miss a module that changed, never load one
//! unchecked.
//!
//! # Fresh plans
//! A plan made for a store that had loaded nothing, found nothing broken and asked about
//! no global yet depends on nothing but the store's answers and the embedder's decisions
//! on the globals the planner asked about (the planner is deterministic).
//! `plans/<ab>/<name-hash>.lcfp` keeps that plan with those decisions ([`FreshPlan`],
//! a [`RecordKind::FreshPlan`] record). Such a store of another process, under
//! the same stamp, asks its resolver about the same globals and, when every decision is
//! the same (the same value, or stale again), uses the plan without planning: no
//! search, no manifests decoded but those of the planned modules. Otherwise it plans
//! from the hint's answers, and its plan is kept instead.
//!
//! Answers are written only by a plan that read the directory and found no broken
//! manifest, a fresh plan only when no kept plan could serve; both only when the stamp
//! was the same before and after the plan, by rename and without a sync (a hint is only
//! ever a shortcut: a lost or damaged hint is a plan that reads the directory). gc
//! removes every hint, since it changes the stamp anyway. A writer that does not bump the
//! stamp (a linkcache from before the stamp existed, a hand edit of the index) can make
//! a hint hide entries added since: such a target keeps its older duplicates or misses a
//! module until the next commit or gc of any process.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use linkcache_core::record::{self, RecordKind};
use linkcache_core::{
    Candidate, FuncSig, GlobalCheck, GlobalDef, GlobalOutcome, KeptGlobal, KeptPlan, LoadPlan,
    Manifest, ModuleId,
};
use serde::{Deserialize, Serialize};

use super::{DirStore, read_if_present};
use crate::error::{Error, IoContext};

/// Hints larger than this are not read (a damaged or forged file); a plan of thousands
/// of modules stays far below.
const MAX_HINT_BYTES: u64 = 64 << 20;

/// The index's version as seen by one `stat`: see the [module docs](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexStamp {
    inode: u64,
    len: u64,
}

/// The store's answers to a plan, as stored in `<name-hash>.lcph`.
#[derive(Serialize, Deserialize)]
struct StoredAnswers {
    target: String,
    stamp: IndexStamp,
    /// (func_name, [(module, committed_at)]) for every func_name the plan asked about.
    candidates: Vec<(String, Vec<(ModuleId, u64)>)>,
    /// Every manifest the plan read.
    manifests: Vec<Manifest>,
}

/// The plan a linkage that had loaded nothing yet got, and what it depended on besides
/// the index and the manifests: the signature asked for and the embedder's decision on
/// every global the planner asked about (`<name-hash>.lcfp`). A process that has loaded
/// nothing yet, finds the same stamp and gets the same decisions from its resolver would
/// plan exactly this (the planner is deterministic), so it uses the plan without
/// planning. The plan is kept in core's compact form ([`KeptPlan`]: each name and
/// module id once), which reading back costs about 40 % less than a whole `LoadPlan`.
#[derive(Serialize, Deserialize)]
pub(crate) struct FreshPlan {
    target: String,
    stamp: IndexStamp,
    expected: Option<FuncSig>,
    globals: Vec<(KeptGlobal, GlobalOutcome)>,
    plan: KeptPlan,
}

impl FreshPlan {
    /// The plan `plan` made for a pristine linkage under `stamp`, having asked about
    /// `globals`; `None` when the plan cannot be kept (it refers to a module it does not
    /// load, which a plan for a pristine linkage never does).
    pub(crate) fn new(
        stamp: IndexStamp,
        expected: Option<FuncSig>,
        globals: Vec<(ModuleId, GlobalDef, GlobalOutcome)>,
        plan: &LoadPlan,
    ) -> Option<FreshPlan> {
        let plan = KeptPlan::keep(plan)?;
        let globals = plan.keep_globals(globals);
        Some(FreshPlan {
            target: plan.target().to_owned(),
            stamp,
            expected,
            globals,
            plan,
        })
    }

    /// Every global check the plan depended on, with the decision it got then; `None`
    /// when the record does not hold together.
    pub(crate) fn global_decisions(&self) -> Option<Vec<(GlobalCheck, &GlobalOutcome)>> {
        self.globals
            .iter()
            .map(|(global, outcome)| Some((self.plan.global_check(global)?, outcome)))
            .collect()
    }

    /// The plan itself, for a linkage that has loaded nothing; `None` when the record
    /// does not hold together (a forged or damaged kept plan is not loaded).
    pub(crate) fn into_plan(self) -> Option<LoadPlan> {
        match self.plan.into_plan() {
            Ok(plan) => Some(plan),
            Err(reason) => {
                tracing::debug!(%reason, "linkcache: kept plan not used");
                None
            }
        }
    }
}

/// The store's answers a hint recorded, ready for the planner.
#[derive(Debug, Default)]
pub(crate) struct PlanHint {
    candidates: HashMap<String, Vec<Candidate>>,
    manifests: HashMap<ModuleId, Arc<Manifest>>,
}

impl PlanHint {
    /// The candidates the hint recorded for `func_name`.
    pub(crate) fn candidates(&self, func_name: &str) -> Option<&[Candidate]> {
        self.candidates.get(func_name).map(Vec::as_slice)
    }

    /// The manifest the hint recorded for `module`.
    pub(crate) fn manifest(&self, module: &ModuleId) -> Option<&Arc<Manifest>> {
        self.manifests.get(module)
    }
}

/// What one plan was told, to be written as the target's hint.
#[derive(Debug, Default)]
pub(crate) struct PlanAnswers {
    candidates: BTreeMap<String, Vec<Candidate>>,
    manifests: BTreeMap<ModuleId, Arc<Manifest>>,
    /// Whether some manifest was missing or broken: such a plan leaves no hint.
    incomplete: bool,
}

impl PlanAnswers {
    /// Whether every manifest the plan read was sound. A plan that met a missing or
    /// broken one is neither kept nor its answers (a repair of that file would not move
    /// the stamp on).
    pub(crate) fn complete(&self) -> bool {
        !self.incomplete
    }

    /// Records the candidates given for `func_name`.
    pub(crate) fn candidates(&mut self, func_name: &str, candidates: &[Candidate]) {
        self.candidates
            .insert(func_name.to_owned(), candidates.to_vec());
    }

    /// Records the manifest answer given for `module`.
    pub(crate) fn manifest(&mut self, module: ModuleId, answer: &Result<Arc<Manifest>, String>) {
        match answer {
            Ok(manifest) => {
                self.manifests.insert(module, Arc::clone(manifest));
            }
            Err(_) => self.incomplete = true,
        }
    }
}

impl DirStore {
    /// The index's current stamp (a directory without one has the default stamp).
    pub(crate) fn index_stamp(&self) -> IndexStamp {
        fs::metadata(self.stamp_path()).map_or(IndexStamp::default(), |meta| IndexStamp {
            inode: meta.ino(),
            len: meta.len(),
        })
    }

    /// Moves the stamp on after index entries were placed or removed. A failure leaves
    /// hints that may hide the change: it is returned, and the caller's operation fails.
    /// A symbolic link planted at the stamp's name is not followed (the open fails), so
    /// nothing outside the root is written.
    pub(super) fn bump_index_stamp(&self) -> Result<(), Error> {
        let path = self.stamp_path();
        super::open_to_append(&path)
            .and_then(|mut file| file.write_all(b"."))
            .at(&path)
    }

    /// The store's answers kept for `target`, when they are sound and valid for `stamp`.
    pub(crate) fn plan_hint(&self, target: &str, stamp: IndexStamp) -> Option<PlanHint> {
        let stored: StoredAnswers =
            read_hint(&self.hint_path(target, "lcph"), RecordKind::PlanHint)?;
        if stored.stamp != stamp || stored.target != target {
            return None;
        }
        let mut hint = PlanHint::default();
        for manifest in stored.manifests {
            manifest.check().ok()?;
            hint.manifests.insert(manifest.module, Arc::new(manifest));
        }
        for (func_name, candidates) in stored.candidates {
            let candidates = candidates
                .into_iter()
                .map(|(module, committed_at)| Candidate {
                    module,
                    committed_at,
                })
                .collect();
            hint.candidates.insert(func_name, candidates);
        }
        Some(hint)
    }

    /// The plan kept for `target` for a fresh linkage that expects `expected`, when it is
    /// sound and valid for `stamp`.
    pub(crate) fn fresh_plan(
        &self,
        target: &str,
        stamp: IndexStamp,
        expected: Option<&FuncSig>,
    ) -> Option<FreshPlan> {
        let fresh: FreshPlan = read_hint(&self.hint_path(target, "lcfp"), RecordKind::FreshPlan)?;
        if fresh.stamp != stamp
            || fresh.target != target
            || fresh.plan.target() != target
            || fresh.expected.as_ref() != expected
        {
            return None;
        }
        Some(fresh)
    }

    /// Keeps what a plan of `target` read under `stamp` (`answers`, when it read the
    /// directory) and the plan a fresh linkage got (`fresh`), when the index still has
    /// that stamp. Advisory: failures are ignored (the next plan reads the directory).
    pub(crate) fn store_plan_hint(
        &self,
        target: &str,
        stamp: IndexStamp,
        answers: Option<PlanAnswers>,
        fresh: Option<&FreshPlan>,
    ) {
        if !self.is_writable() || self.index_stamp() != stamp {
            return;
        }
        let mut staged = Vec::new();
        if let Some(answers) = answers {
            let stored = StoredAnswers {
                target: target.to_owned(),
                stamp,
                candidates: answers
                    .candidates
                    .into_iter()
                    .map(|(name, list)| {
                        let list = list.iter().map(|c| (c.module, c.committed_at)).collect();
                        (name, list)
                    })
                    .collect(),
                manifests: answers
                    .manifests
                    .values()
                    .map(|m| Manifest::clone(m))
                    .collect(),
            };
            let bytes = record::encode(RecordKind::PlanHint, &stored);
            staged.push(self.stage(self.hint_path(target, "lcph"), &bytes));
        }
        if let Some(fresh) = fresh {
            let bytes = record::encode(RecordKind::FreshPlan, fresh);
            staged.push(self.stage(self.hint_path(target, "lcfp"), &bytes));
        }
        let written = staged
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .and_then(|staged| self.place(staged));
        if let Err(error) = written {
            tracing::debug!(%error, "linkcache: plan hint not written");
        }
    }

    /// Removes every plan hint (gc, which moves the stamp on anyway). Returns how many.
    pub(super) fn remove_plan_hints(&self) -> Result<u64, Error> {
        let mut removed = 0;
        for path in super::files_under(&self.root().join("plans"))? {
            super::remove_if_present(&path)?;
            removed += 1;
        }
        Ok(removed)
    }

    fn stamp_path(&self) -> PathBuf {
        self.root().join("index-stamp")
    }

    fn hint_path(&self, target: &str, extension: &str) -> PathBuf {
        let hash = blake3::hash(target.as_bytes()).to_hex();
        self.root()
            .join("plans")
            .join(&hash[..2])
            .join(format!("{hash}.{extension}"))
    }
}

/// A hint record of `kind` at `path`; `None` when absent, too large or unsound.
fn read_hint<T: serde::de::DeserializeOwned>(path: &Path, kind: RecordKind) -> Option<T> {
    if fs::metadata(path).ok()?.len() > MAX_HINT_BYTES {
        return None;
    }
    let bytes = read_if_present(path).ok()??;
    record::decode(kind, &bytes).ok()
}
