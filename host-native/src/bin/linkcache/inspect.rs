//! `linkcache ls` and `linkcache show`: the index, and one module or function in detail.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use linkcache_native::DirStore;
use linkcache_native::core::{ImportKind, Manifest, ModuleId};

use super::{Failure, store};

fn format_time(nanos: u64) -> String {
    // An entry ranked by the remote tier carries its rank (0, 1, …), not a clock time.
    if nanos < REMOTE_RANKS_BELOW {
        return format!("remote rank {nanos}");
    }
    let secs = Duration::from_nanos(nanos).as_secs();
    let time = UNIX_EPOCH + Duration::from_secs(secs);
    let age = time.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    match age {
        0..60 => format!("{age}s ago"),
        60..3600 => format!("{}m ago", age / 60),
        3600..86400 => format!("{}h ago", age / 3600),
        _ => format!("{}d ago", age / 86400),
    }
}

/// `committed_at` values below this (about eleven days after the Unix epoch, in
/// nanoseconds) are remote ranks: no clock reading of a commit is that small.
const REMOTE_RANKS_BELOW: u64 = 1_000_000_000_000_000;

pub(super) fn ls(dir: &Path, duplicates: bool) -> Result<ExitCode, Failure> {
    let index = store(dir)?.index()?;
    for (func, entries) in &index {
        if duplicates && entries.len() < 2 {
            continue;
        }
        for (i, entry) in entries.iter().enumerate() {
            let name = if i == 0 { func.as_str() } else { "" };
            println!(
                "{name:40} {} {}",
                entry.module.short(),
                format_time(entry.committed_at)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The module named by a full id or a unique prefix.
fn find_module(store: &DirStore, what: &str) -> Result<Option<ModuleId>, Failure> {
    if what.len() < 4 || !what.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let matches: Vec<ModuleId> = store
        .modules()?
        .into_iter()
        .filter(|id| id.to_string().starts_with(&what.to_ascii_lowercase()))
        .collect();
    match matches.len() {
        0 => Ok(None),
        1 => Ok(Some(matches[0])),
        n => Err(Failure::Error(format!(
            "`{what}` is a prefix of {n} modules; give more digits"
        ))),
    }
}

pub(super) fn show(dir: &Path, what: &str) -> Result<ExitCode, Failure> {
    let store = store(dir)?;
    if let Some(id) = find_module(&store, what)? {
        let manifest = store
            .manifest(&id)?
            .map_err(|reason| Failure::Error(format!("module {}: {reason}", id.short())))?;
        print_manifest(&manifest);
        let artifacts = module_artifacts(dir, &id);
        if artifacts.is_empty() {
            println!("  artifacts: none (the next load compiles it)");
        } else {
            println!("  artifacts:");
            for (engine, path, len) in artifacts {
                println!("    engine {engine}: {len} bytes {}", path.display());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut candidates = store.candidates(what)?;
    if candidates.is_empty() {
        return Err(Failure::Error(format!(
            "no module id or func_name `{what}` in the cache"
        )));
    }
    candidates.sort_by_key(|c| (c.committed_at, c.module));
    println!(
        "{what}: defined by {} module(s), in resolution order:",
        candidates.len()
    );
    for candidate in candidates {
        let state = match store.manifest(&candidate.module)? {
            Ok(m) => m
                .function(what)
                .map_or("manifest does not define it".into(), |f| {
                    f.signature.to_string()
                }),
            Err(reason) => format!("broken: {reason}"),
        };
        println!(
            "  {}  {}  {state}",
            candidate.module,
            format_time(candidate.committed_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The precompiled artifacts of module `id`, for every engine configuration:
/// `artifacts/<engine>/<ab>/<id>/<xxh3>.cwasm` (see the layout in `linkcache_native::dir`).
/// Listed, not checked: `verify` checks them.
fn module_artifacts(dir: &Path, id: &ModuleId) -> Vec<(String, PathBuf, u64)> {
    let hex = id.to_string();
    let mut found = Vec::new();
    for engine in std::fs::read_dir(dir.join("artifacts"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let module_dir = engine.path().join(&hex[..2]).join(&hex);
        for file in std::fs::read_dir(&module_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "cwasm") {
                let len = file.metadata().map_or(0, |m| m.len());
                found.push((engine.file_name().to_string_lossy().into_owned(), path, len));
            }
        }
    }
    found.sort();
    found
}

fn print_manifest(manifest: &Manifest) {
    println!("module {}", manifest.module);
    println!("  size {} bytes", manifest.byte_len);
    println!("  functions:");
    for f in &manifest.functions {
        println!("    {} {}", f.name, f.signature);
        for call in &f.calls {
            println!("      calls {call}");
        }
        for global in &f.globals {
            println!("      uses global {global}");
        }
    }
    if !manifest.imports.is_empty() {
        println!("  imports:");
        for import in &manifest.imports {
            let kind = match &import.kind {
                ImportKind::Func(signature) => format!("func {signature}"),
                ImportKind::Global { ty, mutable: true } => format!("global mut {ty}"),
                ImportKind::Global { ty, mutable: false } => format!("global {ty}"),
                ImportKind::Memory => "memory".into(),
                ImportKind::Table => "table".into(),
                ImportKind::Tag => "tag".into(),
            };
            println!("    {} {}: {kind}", import.namespace, import.name);
        }
    }
    for global in &manifest.globals {
        println!(
            "  global {} {}{} = {:?}",
            global.name,
            if global.mutable { "mut " } else { "" },
            global.ty,
            String::from_utf8_lossy(&global.definition)
        );
    }
}
