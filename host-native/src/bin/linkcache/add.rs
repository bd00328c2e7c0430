//! `linkcache add`: analyze and commit wasm (or WebAssembly text) files, in batches.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::ProgressDrawTarget;
use linkcache_native::{Access, Error};

use super::{Failure, open_cache, progress};

/// Modules `linkcache add` commits together.
const ADD_BATCH: usize = 256;

pub(super) fn add(dir: &Path, files: &[PathBuf]) -> Result<ExitCode, Failure> {
    let cache = open_cache(dir)?;
    if let Access::ReadOnly(reason) = cache.dir().access() {
        return Err(Error::ReadOnly {
            dir: dir.to_path_buf(),
            reason: reason.clone(),
        }
        .into());
    }
    let bar = progress(files.len() as u64, "adding");
    if files.len() < 20 {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut failed = 0;
    // Files that read and analyze cleanly are committed in batches: one batch costs the
    // syncs of one commit (`Cache::add_modules`), whatever its number of modules.
    let mut batch: Vec<(&PathBuf, Vec<u8>)> = Vec::new();
    let commit = |batch: &mut Vec<(&PathBuf, Vec<u8>)>, failed: &mut usize| {
        let modules: Vec<&[u8]> = batch.iter().map(|(_, bytes)| bytes.as_slice()).collect();
        match cache.add_modules(&modules) {
            Ok(ids) => {
                for ((file, _), id) in batch.iter().zip(ids) {
                    bar.suspend(|| {
                        println!("{id} {}", file.display());
                        if let Ok(Ok(manifest)) = cache.dir().manifest(&id) {
                            for function in &manifest.functions {
                                println!("  {} {}", function.name, function.signature);
                            }
                        }
                    });
                }
            }
            Err(e) => {
                *failed += batch.len();
                for (file, _) in batch.iter() {
                    bar.suspend(|| eprintln!("error: {}: {e}", file.display()));
                }
            }
        }
        bar.inc(batch.len() as u64);
        batch.clear();
    };
    for file in files {
        let checked = std::fs::read(file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| module_bytes(file, bytes))
            .and_then(|bytes| match linkcache_native::core::analyze(&bytes) {
                Ok(_) => Ok(bytes),
                Err(e) => Err(Error::InvalidModule(e).to_string()),
            });
        match checked {
            Ok(bytes) => {
                batch.push((file, bytes));
                if batch.len() == ADD_BATCH {
                    commit(&mut batch, &mut failed);
                }
            }
            Err(e) => {
                failed += 1;
                bar.inc(1);
                bar.suspend(|| eprintln!("error: {}: {e}", file.display()));
            }
        }
    }
    if !batch.is_empty() {
        commit(&mut batch, &mut failed);
    }
    bar.finish_and_clear();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The wasm bytes of a file: binary wasm (the `\0asm` magic) goes to the cache as it
/// is; `.wat` files, files of other extensions, and `.wasm` files that hold text are
/// assembled; anything else goes to the cache, which rejects what is not wasm. Errors
/// are one line.
fn module_bytes(file: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let looks_like_text = || {
        std::str::from_utf8(&bytes)
            .is_ok_and(|text| text.trim_start().starts_with('(') || text.starts_with(";;"))
    };
    let is_text = !bytes.starts_with(b"\0asm")
        && (file.extension().is_none_or(|e| e != "wasm") || looks_like_text());
    if !is_text {
        return Ok(bytes);
    }
    wat::parse_bytes(&bytes)
        .map(|b| b.into_owned())
        .map_err(|e| format!("not valid WebAssembly text: {}", one_line_wat_error(&e)))
}

/// A `wat` error (a message, then ` --> file:line:col` and a snippet) as one line.
fn one_line_wat_error(error: &wat::Error) -> String {
    let text = error.to_string();
    let message = text.lines().next().unwrap_or("").trim();
    let at = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> "))
        .and_then(|place| {
            let (rest, column) = place.rsplit_once(':')?;
            let (_, line) = rest.rsplit_once(':')?;
            Some(format!(" (line {line}, column {column})"))
        });
    format!("{message}{}", at.unwrap_or_default())
}
