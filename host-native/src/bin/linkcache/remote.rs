//! `linkcache push` and `linkcache pull`: modules to and from the remote tier.

use std::path::Path;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use linkcache_native::core::ModuleId;

use super::{Failure, open_cache, progress};

pub(super) fn push(dir: &Path, modules: &[String]) -> Result<ExitCode, Failure> {
    let cache = open_cache(dir)?;
    let ids = if modules.is_empty() {
        cache.dir().modules_in_commit_order()?
    } else {
        let all = cache.dir().modules()?;
        modules
            .iter()
            .map(|prefix| unique_module(&all, prefix))
            .collect::<Result<Vec<_>, _>>()?
    };
    let bar = progress(ids.len() as u64, "pushing");
    let report = cache.push_remote(Some(&ids), |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    println!(
        "pushed {} module(s), {} failed, {} duplicate winner(s) learnt from the remote",
        report.published, report.failed, report.adopted
    );
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: the remote did not take every module; run `linkcache push` again");
        ExitCode::from(1)
    })
}

/// The module a unique id prefix names.
fn unique_module(all: &[ModuleId], prefix: &str) -> Result<ModuleId, Failure> {
    let matching: Vec<&ModuleId> = all
        .iter()
        .filter(|id| id.to_string().starts_with(prefix))
        .collect();
    match matching.as_slice() {
        [one] => Ok(**one),
        [] => Err(Failure::Error(format!(
            "no cached module has the id `{prefix}`"
        ))),
        _ => Err(Failure::Error(format!(
            "`{prefix}` is the prefix of {} modules' ids",
            matching.len()
        ))),
    }
}

pub(super) fn pull(dir: &Path, funcs: &[String], all: bool) -> Result<ExitCode, Failure> {
    if funcs.is_empty() && !all {
        return Err(Failure::Error(
            "name the functions to pull, or pass --all".into(),
        ));
    }
    let cache = open_cache(dir)?;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} {pos} function(s) {elapsed}").expect("valid template"),
    );
    bar.set_message("pulling");
    let names = (!all).then_some(funcs);
    let report = cache.pull_remote(names, |_| bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "pulled {} module(s) for {} function(s): {} already local, {} not on the remote",
        report.modules_fetched, report.functions, report.already_local, report.missing
    );
    Ok(ExitCode::SUCCESS)
}
