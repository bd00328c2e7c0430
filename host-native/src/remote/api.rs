//! The remote tier as [`Cache`] offers it: waiting for publications, and publishing or
//! filling a whole cache (the CLI's `push` and `pull`).

use std::time::Duration;

use linkcache_core::ModuleId;

use super::PushReport;
use crate::cache::Cache;
use crate::error::Error;

/// What [`Cache::pull_remote`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Functions asked for.
    pub functions: usize,
    /// Functions that were local already (not asked for).
    pub already_local: usize,
    /// Modules fetched, verified and committed.
    pub modules_fetched: usize,
    /// Functions the remote did not have (or could not give).
    pub missing: usize,
}

impl Cache {
    /// Waits until the modules queued for publication are published (or failed), at
    /// most `timeout`; whether the queue emptied. `true` at once without a remote tier.
    /// Call it before a short-lived process exits when other machines should see its
    /// modules right away (dropping the last clone of the cache waits too, at most
    /// twice the remote's timeout).
    pub fn flush_remote(&self, timeout: Duration) -> bool {
        self.shared
            .remote
            .as_ref()
            .is_none_or(|remote| remote.flush(timeout))
    }

    /// Publishes modules to the remote tier now, in batches (every committed module
    /// when `ids` is `None`); `progress` gets the number of modules of each finished
    /// batch. Publishing is idempotent: what the remote has is kept.
    pub fn push_remote(
        &self,
        ids: Option<&[ModuleId]>,
        progress: impl FnMut(usize),
    ) -> Result<PushReport, Error> {
        let remote = self.remote()?;
        let ids = match ids {
            Some(ids) => ids.to_vec(),
            None => self.shared.dir.modules_in_commit_order()?,
        };
        let forget = || self.shared.registry.forget_fresh_plans();
        remote.push(&ids, &forget, progress)
    }

    /// Fills the local directory from the remote tier: the closure of each function in
    /// `functions`, or of every function the remote indexes when `None`. `progress`
    /// gets each function as it is done.
    pub fn pull_remote(
        &self,
        functions: Option<&[String]>,
        mut progress: impl FnMut(&str),
    ) -> Result<PullReport, Error> {
        let remote = self.remote()?;
        self.shared.dir.require_writable_for_add()?;
        let names = match functions {
            Some(names) => names.to_vec(),
            None => remote.names().ok_or_else(|| {
                Error::Remote(format!(
                    "could not list the functions of {}",
                    remote.tier.config.redacted_url()
                ))
            })?,
        };
        remote.tier.forget_misses();
        let mut report = PullReport {
            functions: names.len(),
            ..PullReport::default()
        };
        for name in &names {
            if !self.shared.dir.candidates(name)?.is_empty() {
                report.already_local += 1;
            } else {
                match remote.fetch_closure(name) {
                    0 => report.missing += 1,
                    n => report.modules_fetched += n,
                }
            }
            progress(name);
        }
        self.shared.registry.forget_fresh_plans();
        Ok(report)
    }

    /// Whether the remote tier answers now (`None`: no remote tier). Counted like any
    /// operation, so a remote that is down also cools down.
    pub fn probe_remote(&self) -> Option<bool> {
        let remote = self.shared.remote.as_ref()?;
        Some(
            remote
                .tier
                .run("ping", |deadline| {
                    remote.tier.backend.ping(deadline, &remote.tier.io)
                })
                .is_some(),
        )
    }

    fn remote(&self) -> Result<&super::Remote, Error> {
        self.shared.remote.as_ref().ok_or_else(|| {
            Error::Config("no remote tier is configured (--remote, $LINKCACHE_REMOTE)".into())
        })
    }
}
