//! Kept plans: a warm target in a fresh tab loads without planning.
//!
//! A plan made for a tab whose linkage had loaded nothing, found nothing broken and
//! asked the embedder about no global yet (and that holds no module `getOrCompile` kept
//! in memory) depends on nothing but what it read from IndexedDB and the embedder's
//! decisions on the globals the planner asked about: the planner is deterministic. Such
//! a plan is stored with the target's plan hint (see [`crate::store`]) as a
//! [`KeptRecord`]: core's compact [`KeptPlan`], the index stamp it was read under, those
//! decisions, and what the tab knew of each planned module's bytes (whether this
//! analyzer version checked its manifest against them, the SHA-256 its commit
//! recorded). It is a `linkcache_core::record` of kind `FreshPlan` (`LCKP`: versioned,
//! BLAKE3-checksummed), the native host's kept plans' framing, around core's compact
//! form of the plan ([`KeptPlan::to_compact`]: no serde code for it in the package).
//!
//! A later tab in the same state, targeting the same function:
//! 1. reads the target's candidates, its `plans` record and the index stamp (the first
//!    step of any plan, one round trip);
//! 2. decodes the record's head (the stamp and the planned modules) and, when its stamp
//!    is the index's (no commit, gc or clear since, see [`crate::store`]), issues the
//!    read of the planned modules' bytes at once; while IndexedDB reads them, it decodes
//!    the plan and turns it back
//!    ([`KeptPlan::into_plan`], which checks every manifest and position, so a forged
//!    or damaged record is refused, never a wrong link);
//! 3. asks the embedder about every global the plan depended on, as the planner would;
//!    the same decisions (the same value, or stale again) mean the planner would plan
//!    exactly this (and every value the plan binds must be one of them);
//! 4. loads the plan: the bytes are checked against their ids as always
//!    ([`crate::load`]), and a module found broken is marked and the target planned
//!    again.
//!
//! So a warm target costs two round trips, no planner search and no manifest decoded
//! but the planned ones the record carries (checked by `into_plan`). Whatever cannot be used (another stamp, a record that does not
//! decode or hold together, a global decided differently, a module found broken while
//! loading) falls back to the planner, which reuses the first step's answers and the
//! embedder's decisions, and is counted in `stats().plansNotReplayed` by reason; the
//! plan the planner makes then is kept in its place.
//!
//! The record is as trustworthy as the manifest records beside it in the same
//! database: what it says of a manifest's check and of SHA-256 digests stands where the
//! manifest value's `analyzer` and `sha256` would.

use std::sync::Arc;

use js_sys::Uint8Array;
use linkcache_core::record::{self, RecordKind};
use linkcache_core::{
    ANALYZER_VERSION, GlobalCheck, GlobalDef, GlobalOutcome, KeptGlobal, KeptPlan, LoadPlan,
    ModuleId,
};
use wasm_bindgen::{JsCast, JsValue};

use crate::apart::apart;
use crate::cache::{Decoded, LinkCache};
use crate::errors::WebError;
use crate::js::prop;
use crate::snapshot::Snapshot;
use crate::store::stamp_key;

/// Why a kept plan was not used (the keys of `stats().plansNotReplayed`).
pub(crate) mod refused {
    /// The index changed since the plan was kept (its stamp is not the index's).
    pub const STALE: &str = "staleIndex";
    /// The record does not decode, is another target's, or its plan does not hold
    /// together.
    pub const DAMAGED: &str = "damaged";
    /// The embedder decided a global the plan depended on differently.
    pub const GLOBAL: &str = "globalChanged";
    /// A module of the plan turned out broken while loading.
    pub const BROKEN: &str = "moduleBroken";
}

/// A kept plan as stored in the `kept` field of a plan hint: see the module docs.
///
/// ```text
/// record  an LCKP record (linkcache_core::record::frame) of:
///   f64 stamp (LE), u32 analyzer (LE), u32 module count (LE),
///   per module: 32-byte id, u8 flags (1: checked, 2: a SHA-256 follows), [32-byte SHA-256],
///   then the plan and its global decisions (KeptPlan::to_compact)
/// ```
pub(crate) struct KeptRecord {
    /// The index stamp the plan read.
    stamp: f64,
    /// The analyzer version of this package when the plan was kept.
    analyzer: u32,
    /// What the tab knew of each planned module's bytes, in plan order.
    modules: Vec<KeptModule>,
    /// Every global check the planner asked about, with the embedder's decision.
    globals: Vec<(KeptGlobal, GlobalOutcome)>,
    plan: KeptPlan,
}

struct KeptModule {
    id: ModuleId,
    /// Its manifest was checked against its bytes by `analyzer`.
    checked: bool,
    /// The SHA-256 of its bytes its commit recorded.
    sha256: Option<[u8; 32]>,
}

impl KeptRecord {
    fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&self.stamp.to_le_bytes());
        payload.extend_from_slice(&self.analyzer.to_le_bytes());
        payload.extend_from_slice(&(self.modules.len() as u32).to_le_bytes());
        for module in &self.modules {
            payload.extend_from_slice(module.id.as_bytes());
            payload.push(u8::from(module.checked) | if module.sha256.is_some() { 2 } else { 0 });
            if let Some(digest) = &module.sha256 {
                payload.extend_from_slice(digest);
            }
        }
        payload.extend_from_slice(&self.plan.to_compact(&self.globals));
        record::frame(RecordKind::FreshPlan, &payload)
    }
}

/// A kept record's head: what the replay needs before the plan, to issue the read of
/// the planned modules' bytes (see [`KeptRecord`] for the layout).
struct KeptHead {
    stamp: f64,
    analyzer: u32,
    modules: Vec<KeptModule>,
}

impl KeptHead {
    /// The head of an LCKP record and the compact plan after it, or `None` when the
    /// record or its head does not decode.
    fn decode(bytes: &[u8]) -> Option<(KeptHead, &[u8])> {
        let mut rest = record::unframe(RecordKind::FreshPlan, bytes).ok()?;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (taken, after) = rest.split_at_checked(n)?;
            rest = after;
            Some(taken)
        };
        let stamp = f64::from_le_bytes(take(8)?.try_into().ok()?);
        let analyzer = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let count = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let mut modules = Vec::new();
        for _ in 0..count {
            let id = ModuleId::from_bytes(take(32)?.try_into().ok()?);
            let flags = take(1)?[0];
            let sha256 = if flags & 2 != 0 {
                Some(take(32)?.try_into().ok()?)
            } else {
                None
            };
            modules.push(KeptModule {
                id,
                checked: flags & 1 != 0,
                sha256,
            });
        }
        let head = KeptHead {
            stamp,
            analyzer,
            modules,
        };
        Some((head, rest))
    }

    /// The whole record, with the compact plan `rest` decoded; `None` when it does not
    /// decode.
    fn with_plan(self, rest: &[u8]) -> Option<KeptRecord> {
        let (plan, globals) = KeptPlan::from_compact(rest).ok()?;
        Some(KeptRecord {
            stamp: self.stamp,
            analyzer: self.analyzer,
            modules: self.modules,
            globals,
            plan,
        })
    }
}

impl LinkCache {
    /// Whether this tab's planner would depend on nothing but the store and the
    /// embedder: nothing loaded, found broken or decided, no module held in memory.
    pub(crate) fn pristine(&self) -> bool {
        let inner = self.inner.borrow();
        inner.linkage.generation() == 0
            && inner.linkage.broken_modules().next().is_none()
            && !inner.linkage.has_global_outcomes()
            && inner.memory.is_empty()
    }

    /// The kept plan of `func_name`, checked and ready to load, when this tab may use
    /// it (see the module docs); `None` to plan. The first step's answers stay in
    /// `snapshot` for the planner either way.
    pub(crate) async fn replay(
        &self,
        func_name: &str,
        snapshot: &mut Snapshot<'_>,
    ) -> Result<Option<LoadPlan>, WebError> {
        let first = snapshot
            .read(
                &[func_name.to_owned()],
                &[],
                &[],
                &[JsValue::from_str(func_name), stamp_key()],
            )
            .await?;
        crate::js::mark("replay: first step read");
        let stamp = first.plans.get(1).and_then(JsValue::as_f64);
        let stored = first
            .plans
            .first()
            .map(|hint| prop(hint, "kept"))
            .and_then(|kept| kept.dyn_into::<Uint8Array>().ok())
            .map(|kept| kept.to_vec());
        snapshot.keep_first(func_name, first);
        let Some(stored) = stored else {
            return Ok(None);
        };
        // The head first: the planned modules' bytes are read while the plan decodes
        // (about 1 ms of a fresh tab's 10-module target, session 28).
        let Some((head, rest)) = KeptHead::decode(&stored) else {
            snapshot.closure.kept_record = Some(stored);
            return Ok(self.refuse(refused::DAMAGED));
        };
        if stamp != Some(head.stamp) {
            snapshot.closure.kept_record = Some(stored);
            return Ok(self.refuse(refused::STALE));
        }
        let ids: Vec<ModuleId> = {
            let inner = self.inner.borrow();
            head.modules
                .iter()
                .map(|m| m.id)
                .filter(|id| !inner.compiled.contains_key(id))
                .collect()
        };
        let bytes = snapshot.issue(&[], &ids, &[], &[])?;
        crate::js::mark("replay: bytes issued");
        let kept = head
            .with_plan(rest)
            .filter(|kept| kept.plan.target() == func_name);
        snapshot.closure.kept_record = Some(stored);
        crate::js::mark("replay: record decoded");
        let turned = kept.map(|kept| {
            let decisions: Option<Vec<(GlobalCheck, GlobalOutcome)>> = kept
                .globals
                .iter()
                .map(|(global, outcome)| Some((kept.plan.global_check(global)?, outcome.clone())))
                .collect();
            (
                kept.analyzer,
                kept.modules,
                decisions,
                kept.plan.into_plan(),
            )
        });
        crate::js::mark("replay: into_plan");
        snapshot.keep_ahead(&ids, bytes.batch().await?.bytes);
        crate::js::mark("replay: bytes read");
        let Some((analyzer, modules, Some(decisions), Ok(plan))) = turned else {
            return Ok(self.refuse(refused::DAMAGED));
        };
        let checked = analyzer == ANALYZER_VERSION;
        if modules.len() != plan.modules.len()
            || modules
                .iter()
                .zip(&plan.modules)
                .any(|(m, planned)| m.id != planned.module)
        {
            return Ok(self.refuse(refused::DAMAGED));
        }
        let mut unchanged = true;
        for (check, then) in &decisions {
            let now = apart(self.resolve_global(check)).await;
            unchanged &= match (then, &now) {
                (Ok(then), Ok(now)) => then == now,
                (Err(_), Err(_)) => true,
                _ => false,
            };
            // Should the plan not be used, the planner does not ask again.
            snapshot.closure.decided.push((check.global.clone(), now));
        }
        crate::js::mark("replay: globals asked");
        if !unchanged {
            return Ok(self.refuse(refused::GLOBAL));
        }
        // `into_plan` checks the values' types only: a record that binds another value
        // than the one just decided is refused, never linked.
        let decided: Vec<_> = snapshot
            .closure
            .decided
            .iter()
            .map(|(d, o)| (d, o))
            .collect();
        if !plan.binds_as_decided(&decided) {
            return Ok(self.refuse(refused::DAMAGED));
        }
        // The load checks the bytes as it would after a plan (see `crate::load`).
        let mut inner = self.inner.borrow_mut();
        for (module, planned) in modules.iter().zip(&plan.modules) {
            inner.manifests.entry(module.id).or_insert_with(|| Decoded {
                manifest: Ok(Arc::clone(&planned.manifest)),
                checked: checked && module.checked,
                sha256: module.sha256.map(|d| Uint8Array::from(&d[..])),
            });
        }
        Ok(Some(plan))
    }

    /// Counts a kept plan not used, for `reason`; `None`.
    pub(crate) fn refuse(&self, reason: &str) -> Option<LoadPlan> {
        let mut inner = self.inner.borrow_mut();
        *inner
            .stats
            .plans_not_replayed
            .entry(reason.to_owned())
            .or_default() += 1;
        None
    }

    /// The record of the plan `snapshot`'s plan keeps (see the module docs), when it
    /// keeps one and it is not the one stored already.
    pub(crate) fn kept_record(
        &self,
        snapshot: &mut Snapshot<'_>,
        planned: &LoadPlan,
    ) -> Option<Vec<u8>> {
        let (plan, asked) = snapshot.closure.keep.take()?;
        let stamp = snapshot.closure.stamp?;
        let ids: Vec<ModuleId> = planned.modules.iter().map(|m| m.module).collect();
        let modules = {
            let inner = self.inner.borrow();
            ids.iter()
                .map(|id| {
                    let decoded = inner.manifests.get(id);
                    KeptModule {
                        id: *id,
                        checked: decoded.is_some_and(|d| d.checked),
                        sha256: decoded
                            .and_then(|d| d.sha256.as_ref())
                            .and_then(|d| d.to_vec().try_into().ok()),
                    }
                })
                .collect()
        };
        let globals = plan.keep_globals(asked);
        let kept = KeptRecord {
            stamp,
            analyzer: ANALYZER_VERSION,
            modules,
            globals,
            plan,
        };
        let encoded = kept.encode();
        (snapshot.closure.kept_record.as_deref() != Some(&encoded[..])).then_some(encoded)
    }
}

/// The decision in `decided` on the definition `def` (its name and bytes, as the
/// planner's `GlobalKey` tells definitions apart).
pub(crate) fn decision<'a>(
    decided: &'a [(GlobalDef, GlobalOutcome)],
    def: &GlobalDef,
) -> Option<&'a GlobalOutcome> {
    decided
        .iter()
        .find(|(d, _)| d.name == def.name && d.definition == def.definition)
        .map(|(_, outcome)| outcome)
}
