//! Reads from the remote: a function's closure fetched level by level, every object
//! verified, then committed into the local directory with the remote's ranks.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use linkcache_core::{Manifest, ModuleId};

use super::backend::{Caps, Fetched, Object, Ranked, Wanted};
use super::{Tier, add, envelope};
use crate::dir::{DirStore, RankedCommit};

/// The local side of a fetch: where verified modules are committed.
pub(crate) struct Local<'a> {
    pub(crate) dir: &'a DirStore,
    pub(crate) engine_key: &'a str,
    /// Whether precompiled artifacts are fetched too (native code is trusted from the
    /// remote, and this directory keeps artifacts).
    pub(crate) artifacts: bool,
}

/// How many times one name's next candidate is tried when the best one fails its
/// checks, within one fetch.
const ATTEMPTS_PER_NAME: usize = 3;

/// A module that passed every check, with the ranks it is filed under.
struct Verified {
    wasm: Vec<u8>,
    manifest: Manifest,
    ranks: Vec<(String, u64)>,
    artifact: Option<Vec<u8>>,
}

impl Tier {
    /// On a local miss of `func_name`: fetches its closure from the remote and commits
    /// it locally. Returns the number of modules committed (0: a miss, a failure, or
    /// the remote cooling down; each counted).
    pub(crate) fn fetch_closure(&self, local: &Local<'_>, func_name: &str) -> usize {
        if !local.dir.is_writable() || self.recently_missed(func_name) {
            // Remote data is only ever used through the local directory.
            return 0;
        }
        add(&self.counters.lookups, 1);
        let committed = Cell::new(0);
        self.run("fetch", |deadline| {
            self.fetch_levels(local, func_name, deadline, &committed)
        });
        let committed = committed.get();
        add(&self.counters.hits, committed as u64);
        committed
    }

    /// The levels of a closure fetch, counting the modules committed in `committed`
    /// (a failure in a later level keeps what earlier levels committed).
    fn fetch_levels(
        &self,
        local: &Local<'_>,
        root: &str,
        deadline: Instant,
        committed: &Cell<usize>,
    ) -> Result<(), super::Failure> {
        let mut level = vec![root.to_string()];
        let mut seen: BTreeSet<String> = level.iter().cloned().collect();
        while !level.is_empty() {
            let names: Vec<&str> = level.iter().map(String::as_str).collect();
            let index = self.backend.index(&names, deadline, &self.io)?;
            let mut choices: BTreeMap<String, Vec<Ranked>> = BTreeMap::new();
            for (name, entries) in level.iter().zip(index) {
                if entries.is_empty() {
                    if name == root {
                        add(&self.counters.misses, 1);
                    }
                    // The planner is about to ask for it again: not another round trip.
                    self.remember_miss(name);
                    continue;
                }
                choices.insert(name.clone(), entries);
            }
            let modules = self.fetch_chosen(local, &mut choices, deadline)?;
            let mut next = Vec::new();
            for manifest in &modules {
                for (callee, _) in manifest.fn_imports() {
                    if seen.insert(callee.to_string())
                        && local
                            .dir
                            .candidates(callee)
                            .is_ok_and(|found| found.is_empty())
                    {
                        next.push(callee.to_string());
                    }
                }
            }
            committed.set(committed.get() + modules.len());
            level = next;
        }
        Ok(())
    }

    /// Fetches, verifies and commits the best module of each name (the next one when the
    /// best fails its checks); returns the manifests committed.
    pub(super) fn fetch_chosen(
        &self,
        local: &Local<'_>,
        choices: &mut BTreeMap<String, Vec<Ranked>>,
        deadline: Instant,
    ) -> Result<Vec<Manifest>, super::Failure> {
        let mut committed = Vec::new();
        for _ in 0..ATTEMPTS_PER_NAME {
            // Each name's best remaining entry; names choosing one module share a fetch.
            let mut by_module: BTreeMap<ModuleId, Vec<(String, u64)>> = BTreeMap::new();
            for (name, entries) in choices.iter() {
                if let Some(best) = entries.first() {
                    by_module
                        .entry(best.module)
                        .or_default()
                        .push((name.clone(), best.rank));
                }
            }
            if by_module.is_empty() {
                break;
            }
            let mut verified = Vec::new();
            let mut remote = Vec::new();
            for (module, ranks) in by_module {
                match local_module(local.dir, &module) {
                    Some((wasm, manifest)) => verified.push(Verified {
                        wasm,
                        manifest,
                        ranks,
                        artifact: None,
                    }),
                    None => remote.push((module, ranks)),
                }
            }
            let mut failed: Vec<ModuleId> = Vec::new();
            if !remote.is_empty() {
                let wanted: Vec<Wanted<'_>> = remote
                    .iter()
                    .map(|(module, _)| Wanted {
                        module: *module,
                        artifact_for: local.artifacts.then_some(local.engine_key),
                    })
                    .collect();
                let fetched = self
                    .backend
                    .objects(&wanted, self.caps(), deadline, &self.io)?;
                for ((module, ranks), fetched) in remote.into_iter().zip(fetched) {
                    match verify(&module, fetched) {
                        Ok(checked) => verified.push(Verified {
                            wasm: checked.wasm,
                            manifest: checked.manifest,
                            ranks,
                            artifact: checked.artifact,
                        }),
                        Err(Rejection::Absent) => failed.push(module),
                        Err(Rejection::Corrupt(reason)) => {
                            tracing::warn!(%module, %reason, remote = self.config.redacted_url(),
                                "linkcache: remote module failed its checks, not used");
                            add(&self.io.corrupt, 1);
                            failed.push(module);
                        }
                    }
                }
            }
            for name in self.commit_verified(local, &verified) {
                choices.remove(&name);
            }
            committed.extend(verified.into_iter().map(|v| v.manifest));
            // Names whose best module failed try their next entry.
            for entries in choices.values_mut() {
                if entries
                    .first()
                    .is_some_and(|best| failed.contains(&best.module))
                {
                    entries.remove(0);
                } else {
                    entries.clear();
                }
            }
            choices.retain(|name, entries| {
                if entries.is_empty() {
                    self.remember_miss(name);
                }
                !entries.is_empty()
            });
        }
        for name in choices.keys() {
            self.remember_miss(name);
        }
        Ok(committed)
    }

    /// Commits verified modules with their ranks, and stores their artifacts; returns
    /// the names now filed locally.
    fn commit_verified(&self, local: &Local<'_>, verified: &[Verified]) -> Vec<String> {
        if verified.is_empty() {
            return Vec::new();
        }
        let batch: Vec<RankedCommit<'_>> = verified
            .iter()
            .map(|v| RankedCommit {
                wasm: &v.wasm,
                manifest: &v.manifest,
                ranks: &v.ranks,
            })
            .collect();
        if let Err(error) = local.dir.commit_ranked(&batch) {
            tracing::warn!(%error, "linkcache: could not commit modules fetched from the remote");
            return Vec::new();
        }
        for v in verified {
            let Some(envelope) = &v.artifact else {
                continue;
            };
            let module = v.manifest.module;
            match envelope::open(
                envelope,
                local.engine_key,
                &module,
                self.config.key.as_ref(),
            ) {
                Ok(payload) => {
                    if let Ok(Some(_)) =
                        local.dir.store_artifact(local.engine_key, &module, payload)
                    {
                        add(&self.counters.artifacts_fetched, 1);
                    }
                }
                Err(reason) => {
                    tracing::warn!(%module, %reason, "linkcache: remote artifact refused");
                    add(&self.counters.artifacts_rejected, 1);
                    add(&self.io.corrupt, 1);
                }
            }
        }
        verified
            .iter()
            .flat_map(|v| v.ranks.iter().map(|(name, _)| name.clone()))
            .collect()
    }

    pub(super) fn caps(&self) -> Caps {
        Caps {
            module: self.config.max_module_bytes,
            artifact: self.config.max_artifact_bytes,
        }
    }
}

/// The bytes and manifest of a module already committed locally (a name of the
/// closure is filed under a module fetched earlier for another name).
pub(super) fn local_module(dir: &DirStore, id: &ModuleId) -> Option<(Vec<u8>, Manifest)> {
    let manifest = dir.manifest(id).ok()?.ok()?;
    let wasm = dir.module_bytes(id).ok()?.ok()?;
    Some((wasm, manifest))
}

pub(super) enum Rejection {
    /// An object is not there (evicted, or published halfway).
    Absent,
    Corrupt(String),
}

/// Checks what came back for `id`: the manifest decodes (checksum), is `id`'s and
/// describes the bytes; the bytes are `id`'s. Returns them and the artifact envelope
/// (opened later, against the engine and the key).
pub(super) fn verify(id: &ModuleId, fetched: Fetched) -> Result<Checked, Rejection> {
    let (Object::Bytes(manifest), Object::Bytes(wasm)) = (fetched.manifest, fetched.wasm) else {
        return Err(Rejection::Absent);
    };
    let manifest = Manifest::decode(&manifest)
        .map_err(|e| Rejection::Corrupt(format!("its manifest: {e}")))?;
    if manifest.module != *id {
        return Err(Rejection::Corrupt(
            "its manifest is another module's".into(),
        ));
    }
    if !id.matches(&wasm) || wasm.len() as u64 != manifest.byte_len {
        return Err(Rejection::Corrupt("its bytes are not the module".into()));
    }
    manifest.check_against(&wasm).map_err(Rejection::Corrupt)?;
    let artifact = match fetched.artifact {
        Object::Bytes(envelope) => Some(envelope),
        _ => None,
    };
    Ok(Checked {
        wasm,
        manifest,
        artifact,
    })
}

/// A fetched module that passed [`verify`].
pub(super) struct Checked {
    wasm: Vec<u8>,
    manifest: Manifest,
    /// Its artifact envelope, not opened yet.
    artifact: Option<Vec<u8>>,
}
