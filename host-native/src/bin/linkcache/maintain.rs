//! `linkcache verify`, `gc`, `export` and `import`: checking, evicting and moving modules.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use linkcache_native::Error;
use linkcache_native::core::{Bundle, BundleError};

use super::{Failure, open_cache, progress, store};

pub(super) fn verify(dir: &Path) -> Result<ExitCode, Failure> {
    let store = store(dir)?;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} verifying {pos} records").expect("valid template"),
    );
    let mut checked = 0u64;
    let problems = store.verify(|_| {
        checked += 1;
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    if problems.is_empty() {
        println!("ok: {checked} records checked");
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        println!("{}: {}", problem.path.display(), problem.reason);
    }
    eprintln!("{} problem(s) in {checked} records", problems.len());
    Ok(ExitCode::from(1))
}

pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (like 500K, 10M, 1G)"))?;
    let factor = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use K, M or G)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large (at most {} bytes)", u64::MAX))
}

pub(super) fn gc(dir: &Path, max_size: u64) -> Result<ExitCode, Failure> {
    let cache = open_cache(dir)?;
    let modules = cache.dir().modules()?.len() as u64;
    let bar = progress(modules, "evicting");
    let report = cache.gc(max_size, |_| bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "evicted {} module(s), removed {} leftover file(s) and {} artifact(s) of other \
         engine configurations, freed {} bytes, {} bytes remain (limit {max_size})",
        report.evicted.len(),
        report.leftovers_removed,
        report.other_engine_artifacts_removed,
        report.freed,
        report.remaining
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn export(dir: &Path, file: &Path, funcs: &[String]) -> Result<ExitCode, Failure> {
    let cache = open_cache(dir)?;
    let modules = if funcs.is_empty() {
        None
    } else {
        let mut ids = BTreeSet::new();
        for func in funcs {
            let candidates = cache.dir().candidates(func)?;
            if candidates.is_empty() {
                return Err(Failure::Error(format!("no cached module defines `{func}`")));
            }
            ids.extend(candidates.into_iter().map(|c| c.module));
        }
        Some(ids.into_iter().collect::<Vec<_>>())
    };
    let bundle = cache.export_bundle(modules.as_deref())?;
    std::fs::write(file, bundle.encode())
        .map_err(|e| Failure::Error(format!("{}: {e}", file.display())))?;
    println!(
        "exported {} module(s) to {}",
        bundle.modules.len(),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn import(dir: &Path, file: &Path) -> Result<ExitCode, Failure> {
    let cache = open_cache(dir)?;
    let in_file = |e: Error| Failure::Error(format!("{}: {e}", file.display()));
    let bytes =
        std::fs::read(file).map_err(|e| Failure::Error(format!("{}: {e}", file.display())))?;
    let bundle = Bundle::decode(&bytes).map_err(|e| in_file(e.into()))?;
    // Check every module before committing any, as `Cache::import_bundle` does, then
    // import them one at a time through it so that the bar can move.
    let bar = progress(bundle.modules.len() as u64, "checking");
    for (index, module) in bundle.modules.iter().enumerate() {
        module
            .manifest
            .check_against(&module.wasm)
            .map_err(|reason| in_file(BundleError::Mismatch { index, reason }.into()))?;
        bar.inc(1);
    }
    bar.reset();
    bar.set_message("importing");
    let mut imported = 0;
    for module in bundle.modules {
        let one = Bundle {
            modules: vec![module],
        };
        imported += cache.import_bundle(&one.encode()).map_err(in_file)?.len();
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("imported {imported} module(s) from {}", file.display());
    Ok(ExitCode::SUCCESS)
}
