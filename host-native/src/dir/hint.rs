//! Plan hints: what the last complete plan of a target read from the index and the
//! manifests, kept on disk so that the next process plans that target without asking
//! the directory again.
//!
//! # The index stamp
//! `<root>/index-stamp` grows by one byte (an `O_APPEND` write, atomic between
//! processes) every time index entries are placed or removed: after a commit renamed its
//! entries into place, after gc or `remove` deleted some. Its inode and length, read
//! with one `stat`, are the [`IndexStamp`]. A process that reads the stamp before it
//! reads the index, and finds the same stamp later, knows that every entry it read is
//! still there and that no entry was added since: the bump follows the change, so a
//! plan that read the index while a commit was placing its entries read an older stamp.
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
//! on the globals the planner asked about (the planner is deterministic). The hint keeps
//! that plan with those decisions ([`FreshPlan`]). Such a store of another process, under
//! the same stamp, asks its resolver about the same globals and, when every decision is
//! the same (the same value, or stale again), uses the plan without planning: no
//! search, no manifests decoded but those of the planned modules. Otherwise it plans
//! from the hint's answers, and its plan is kept instead.
//!
//! A hint is written only by a plan that read the directory (or made a fresh plan the
//! hint did not have), found no broken manifest and saw the same stamp before and after
//! it, by rename and without a sync (it is only
//! ever a shortcut: a lost or damaged hint is a plan that reads the directory). gc
//! removes every hint, since it changes the stamp anyway. A writer that does not bump the
//! stamp (a linkcache from before the stamp existed, a hand edit of the index) can make
//! a hint hide entries added since: such a target keeps its older duplicates or misses a
//! module until the next commit or gc of any process.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use linkcache_core::record::{self, RecordKind};
use linkcache_core::{Candidate, FuncSig, GlobalDef, GlobalOutcome, LoadPlan, Manifest, ModuleId};
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

/// A hint as stored. Its two parts are bare payloads (the record's checksum covers
/// them), decoded only when used: a process that has loaded nothing yet needs only the
/// fresh plan, any other only the answers.
#[derive(Serialize, Deserialize)]
struct StoredHint {
    target: String,
    stamp: IndexStamp,
    /// [`StoredAnswers`].
    answers: Vec<u8>,
    /// [`FreshPlan`], or empty.
    fresh_plan: Vec<u8>,
}

/// What the store answered a plan.
#[derive(Serialize, Deserialize)]
struct StoredAnswers {
    /// (func_name, [(module, committed_at)]) for every func_name the plan asked about.
    candidates: Vec<(String, Vec<(ModuleId, u64)>)>,
    /// Every manifest the plan read.
    manifests: Vec<Manifest>,
}

/// The plan a linkage that had loaded nothing yet got, and what it depended on besides
/// the index and the manifests: the signature asked for and the embedder's decision on
/// every global the planner asked about. A process that has loaded nothing yet, finds
/// the same stamp and gets the same decisions from its resolver would plan exactly this
/// (the planner is deterministic), so it uses the plan without planning.
#[derive(Serialize, Deserialize)]
pub(crate) struct FreshPlan {
    pub(crate) expected: Option<FuncSig>,
    pub(crate) globals: Vec<(ModuleId, GlobalDef, GlobalOutcome)>,
    pub(crate) plan: LoadPlan,
}

/// A hint file read back, valid for the stamp it was read under; its parts are decoded
/// on demand.
pub(crate) struct HintFile {
    stored: StoredHint,
}

impl HintFile {
    /// The store's answers of the hint's plan.
    pub(crate) fn answers(&self) -> Option<PlanHint> {
        let stored: StoredAnswers =
            record::decode_payload(RecordKind::PlanHint, &self.stored.answers).ok()?;
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

    /// The plan a fresh linkage got, if the hint has one for `expected`.
    pub(crate) fn fresh_plan(&self, expected: Option<&FuncSig>) -> Option<FreshPlan> {
        if self.stored.fresh_plan.is_empty() {
            return None;
        }
        let fresh: FreshPlan =
            record::decode_payload(RecordKind::PlanHint, &self.stored.fresh_plan).ok()?;
        if fresh.expected.as_ref() != expected || fresh.plan.target != self.stored.target {
            return None;
        }
        for planned in &fresh.plan.modules {
            planned.manifest.check().ok()?;
            if planned.manifest.module != planned.module {
                return None;
            }
        }
        Some(fresh)
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
    pub(super) fn bump_index_stamp(&self) -> Result<(), Error> {
        let path = self.stamp_path();
        fs::File::options()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut file| file.write_all(b"."))
            .at(&path)
    }

    /// The hint file of `target`, when there is a sound one for `stamp`.
    pub(crate) fn plan_hint(&self, target: &str, stamp: IndexStamp) -> Option<HintFile> {
        let path = self.hint_path(target);
        if fs::metadata(&path).ok()?.len() > MAX_HINT_BYTES {
            return None;
        }
        let bytes = read_if_present(&path).ok()??;
        let stored: StoredHint = record::decode(RecordKind::PlanHint, &bytes).ok()?;
        (stored.stamp == stamp && stored.target == target).then_some(HintFile { stored })
    }

    /// Writes `answers` (and the plan a fresh linkage got, if this was one) as the hint
    /// of `target`, read under `stamp`, when the index still has that stamp. Advisory:
    /// failures are ignored (the next plan reads the directory).
    pub(crate) fn store_plan_hint(
        &self,
        target: &str,
        stamp: IndexStamp,
        answers: PlanAnswers,
        fresh_plan: Option<&FreshPlan>,
    ) {
        if !self.is_writable() || answers.incomplete || self.index_stamp() != stamp {
            return;
        }
        let stored_answers = StoredAnswers {
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
        let stored = StoredHint {
            target: target.to_owned(),
            stamp,
            answers: record::encode_payload(&stored_answers),
            fresh_plan: fresh_plan.map(record::encode_payload).unwrap_or_default(),
        };
        let bytes = record::encode(RecordKind::PlanHint, &stored);
        let written = self
            .stage(self.hint_path(target), &bytes)
            .and_then(|staged| self.place(vec![staged]));
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

    fn hint_path(&self, target: &str) -> PathBuf {
        let hash = blake3::hash(target.as_bytes()).to_hex();
        self.root()
            .join("plans")
            .join(&hash[..2])
            .join(format!("{hash}.lcph"))
    }
}
