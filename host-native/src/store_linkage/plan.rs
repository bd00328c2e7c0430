//! Planning against the cache directory: the planner fed from the process's decoded
//! manifests, the target's plan hint and the directory, and a fresh store's kept plan
//! reused when nothing it depended on changed.

use std::collections::HashSet;
use std::sync::Arc;

use linkcache_core::{
    Candidate, FuncSig, GlobalCheck, GlobalDef, GlobalOutcome, Linkage, LoadPlan, Manifest, Miss,
    ModuleId,
};

use crate::cache::Shared;
use crate::dir::{FreshPlan, PlanAnswers, PlanHint, is_vanished};
use crate::error::Error;

/// Plans `func_name` against the directory (manifests from the process's memory when it
/// has them), asking the embedder's resolver about globals, and shares with every store
/// the modules found broken.
pub(super) fn plan(
    shared: &Shared,
    linkage: &mut Linkage,
    func_name: &str,
    expected: Option<&FuncSig>,
) -> Result<Result<LoadPlan, Miss>, Error> {
    let _span = tracing::debug_span!("linkcache.plan", func = func_name).entered();
    let broken_before: HashSet<ModuleId> = linkage.broken_modules().map(|(m, _)| *m).collect();
    let pristine = is_pristine(linkage);
    let (mut validated, mut stale) = (0u64, 0u64);
    let mut asked: Vec<(ModuleId, GlobalDef, GlobalOutcome)> = Vec::new();
    let mut resolve = |check: &GlobalCheck| {
        let outcome = resolve_global(shared, check);
        match outcome {
            Ok(_) => validated += 1,
            Err(_) => stale += 1,
        }
        if pristine {
            asked.push((check.module, check.global.clone(), outcome.clone()));
        }
        outcome
    };
    let stamp = shared.dir.index_stamp();
    let mut store = PlanningStore {
        shared,
        hint: shared.dir.plan_hint(func_name, stamp),
        answers: PlanAnswers::default(),
        directory_reads: 0,
    };
    let used_hint = store.hint.is_some();
    let outcome = linkcache_core::plan(&mut store, linkage, func_name, expected, &mut resolve);
    let directory_reads = store.directory_reads;
    if let Ok(Ok(plan)) = &outcome
        && (directory_reads > 0 || pristine)
        && store.answers.complete()
    {
        // A pristine linkage gets here only when no kept plan could serve it.
        let fresh = pristine
            .then(|| FreshPlan::new(stamp, expected.cloned(), asked, plan))
            .flatten();
        let answers = (directory_reads > 0).then_some(store.answers);
        shared
            .dir
            .store_plan_hint(func_name, stamp, answers, fresh.as_ref());
    }
    let newly_broken: Vec<(ModuleId, String)> = linkage
        .broken_modules()
        .filter(|(m, _)| !broken_before.contains(m))
        .map(|(m, r)| (*m, r.to_string()))
        .collect();
    for (module, reason) in &newly_broken {
        if is_vanished(reason) {
            // Removed by gc (or never whole): skipped by this plan, tried again by the
            // next, since any process may add it again.
            linkage.forget_broken(module);
        } else {
            shared.mark_broken(*module, reason);
        }
    }
    shared.count(|stats| {
        stats.globals_validated += validated;
        stats.globals_stale += stale;
        stats.broken_skipped += newly_broken.len() as u64;
        stats.plan_hints_used += u64::from(used_hint);
        stats.plan_directory_reads += directory_reads;
    });
    outcome
}

/// Whether a store's linkage has loaded nothing, found nothing broken and asked the
/// embedder about no global yet: the planner's answer then depends on the store's
/// answers, the globals' outcomes and the signature asked for only.
pub(super) fn is_pristine(linkage: &Linkage) -> bool {
    linkage.generation() == 0
        && linkage.broken_modules().next().is_none()
        && !linkage.has_global_outcomes()
}

/// The embedder's decision on a global definition.
fn resolve_global(shared: &Shared, check: &GlobalCheck) -> GlobalOutcome {
    match &shared.resolver {
        Some(resolver) => resolver(check),
        None => linkcache_core::literal_global(check),
    }
}

/// The plan a fresh store of some process made for `func_name`, from the target's plan
/// hint, when the index has not changed since and the embedder decides every global
/// that plan depended on as it did then: the planner would plan exactly this again
/// (`dir/hint.rs`). The globals are asked again either way, and counted.
pub(super) fn hinted_fresh_plan(
    shared: &Shared,
    func_name: &str,
    expected: Option<&FuncSig>,
) -> Option<LoadPlan> {
    let stamp = shared.dir.index_stamp();
    let fresh = shared.dir.fresh_plan(func_name, stamp, expected)?;
    let (mut validated, mut stale) = (0u64, 0u64);
    let mut decided = Vec::new();
    let unchanged = fresh
        .global_decisions()?
        .into_iter()
        .all(|(check, recorded)| {
            let outcome = resolve_global(shared, &check);
            match &outcome {
                Ok(_) => validated += 1,
                Err(_) => stale += 1,
            }
            let alike = match (recorded, &outcome) {
                (Ok(then), Ok(now)) => then == now,
                (Err(_), Err(_)) => true,
                _ => false,
            };
            decided.push((check.global, outcome));
            alike
        });
    // The plan must also bind what was decided: a record that holds together but binds
    // another value (damaged, or forged with a valid checksum) is planned anew.
    let decided: Vec<_> = decided
        .iter()
        .map(|(def, outcome)| (def, outcome))
        .collect();
    let plan = if unchanged { fresh.into_plan() } else { None }.filter(|plan| {
        let as_decided = plan.binds_as_decided(&decided);
        if !as_decided {
            tracing::debug!(
                func_name,
                "linkcache: kept plan binds globals otherwise than decided; planned anew"
            );
        }
        as_decided
    });
    shared.count(|stats| {
        stats.globals_validated += validated;
        stats.globals_stale += stale;
        if plan.is_some() {
            stats.plan_hints_used += 1;
            stats.plans_from_hints += 1;
        }
    });
    plan
}

/// The directory as the planner's store: the process's decoded manifests first, then
/// the target's plan hint when it is valid for the index as it is (`dir/hint.rs`), then
/// the directory itself. Every answer is recorded, to be written as the next hint.
struct PlanningStore<'a> {
    shared: &'a Shared,
    hint: Option<PlanHint>,
    answers: PlanAnswers,
    /// Index listings and manifests read from the directory.
    directory_reads: u64,
}

impl PlanningStore<'_> {
    fn listed(&mut self, func_name: &str) -> Result<Vec<Candidate>, Error> {
        if let Some(candidates) = self.hint.as_ref().and_then(|h| h.candidates(func_name)) {
            return Ok(candidates.to_vec());
        }
        self.directory_reads += 1;
        let local = self.shared.dir.candidates(func_name)?;
        #[cfg(feature = "remote")]
        if local.is_empty()
            && let Some(remote) = &self.shared.remote
            && remote.fetch_closure(func_name) > 0
        {
            // The closure is committed locally now: the planner reads it from there.
            // The index changed, so the hint read before is stale.
            self.shared.registry.forget_fresh_plans();
            self.hint = None;
            return self.shared.dir.candidates(func_name);
        }
        Ok(local)
    }

    fn read_manifest(&mut self, module: &ModuleId) -> Result<Result<Arc<Manifest>, String>, Error> {
        if let Some(manifest) = self.shared.registry.manifest(module) {
            return Ok(Ok(manifest));
        }
        if let Some(manifest) = self.hint.as_ref().and_then(|h| h.manifest(module)) {
            let manifest = Arc::clone(manifest);
            self.shared
                .registry
                .remember_manifest(Arc::clone(&manifest));
            return Ok(Ok(manifest));
        }
        self.directory_reads += 1;
        Ok(self.shared.dir.manifest(module)?.map(|manifest| {
            let manifest = Arc::new(manifest);
            self.shared
                .registry
                .remember_manifest(Arc::clone(&manifest));
            manifest
        }))
    }
}

impl linkcache_core::Store for PlanningStore<'_> {
    type Error = Error;

    fn candidates(&mut self, func_name: &str) -> Result<Vec<Candidate>, Error> {
        let candidates = self.listed(func_name)?;
        self.answers.candidates(func_name, &candidates);
        Ok(candidates)
    }

    fn manifest(&mut self, module: &ModuleId) -> Result<Result<Arc<Manifest>, String>, Error> {
        let answer = self.read_manifest(module)?;
        self.answers.manifest(*module, &answer);
        Ok(answer)
    }
}
