//! (4c) What a commit costs: linkcache's commit (one pack file and one index record per
//! module, one sync per batch) against the commit
//! path it replaced (every file through its own temporary file, fsync and rename),
//! measured side by side in one run, rounds interleaved.
//!
//! The previous path is reproduced here as it was (host-native/src/dir.rs before the
//! change): the same layout, the same files, one `File::create` + write + `sync_all` +
//! `rename` per file, no directory sync. Both sides commit modules that were analyzed
//! beforehand, so only the commit is timed.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use linkcache_core::{IndexEntry, Manifest, analyze};
use linkcache_native::DirStore;
use wasmtime::Result;

use crate::report::{Table, median, ratio};

/// Functions per module, as the issue's example.
const FUNCTIONS: usize = 8;
/// Modules of a batch.
const BATCH: usize = 100;

/// `count` distinct modules of [`FUNCTIONS`] exported functions each, analyzed.
fn modules(tag: &str, count: usize) -> Result<Vec<(Vec<u8>, Manifest)>> {
    (0..count)
        .map(|m| {
            let functions: String = (0..FUNCTIONS)
                .map(|f| {
                    format!(r#"(func (export "{tag}.m{m}.f{f}") (result i64) (i64.const {f}))"#)
                })
                .collect();
            let wasm = wat::parse_str(format!("(module {functions})"))?;
            let manifest = analyze(&wasm)?;
            Ok((wasm, manifest))
        })
        .collect()
}

/// The previous commit path: each file written to `tmp/`, fsynced, renamed.
fn previous_commit(root: &Path, wasm: &[u8], manifest: &Manifest) -> Result<()> {
    let hex = manifest.module.to_string();
    let write = |path: PathBuf, bytes: &[u8], n: usize| -> Result<()> {
        let tmp = root.join("tmp").join(format!("{}-{n}", std::process::id()));
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::create_dir_all(path.parent().expect("a parent"))?;
        fs::rename(&tmp, &path)?;
        Ok(())
    };
    write(
        root.join("modules")
            .join(&hex[..2])
            .join(format!("{hex}.wasm")),
        wasm,
        0,
    )?;
    write(
        root.join("manifests")
            .join(&hex[..2])
            .join(format!("{hex}.lcmf")),
        &manifest.encode(),
        1,
    )?;
    let committed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    for (n, function) in manifest.functions.iter().enumerate() {
        let name_hash = blake3::hash(function.name.as_bytes()).to_hex();
        let entry = IndexEntry {
            func_name: String::from(&function.name),
            module: manifest.module,
            committed_at,
        };
        write(
            root.join("index")
                .join(&name_hash[..2])
                .join(name_hash.as_str())
                .join(format!("{hex}.lcix")),
            &entry.encode(),
            n + 2,
        )?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Side {
    Previous,
    Single,
    Batch,
}

/// Modules per second of each side over `rounds` interleaved rounds of `per_round`
/// single-module commits (and one batch of [`BATCH`] per round).
pub fn table(scratch: &Path, rounds: usize, per_round: usize) -> Result<Table> {
    let previous_root = scratch.join(format!("commit-previous-{}", std::process::id()));
    let current_root = scratch.join(format!("commit-current-{}", std::process::id()));
    for root in [&previous_root, &current_root] {
        let _ = fs::remove_dir_all(root);
    }
    fs::create_dir_all(previous_root.join("tmp"))?;
    let store = DirStore::open(&current_root)?;
    let (mut previous, mut single, mut batch) = (Vec::new(), Vec::new(), Vec::new());
    let mut syncs_per_batch = 0;
    for round in 0..rounds {
        let for_previous = modules(&format!("p{round}"), per_round)?;
        let for_single = modules(&format!("s{round}"), per_round)?;
        let for_batch = modules(&format!("b{round}"), BATCH)?;

        // The three sides in turn, in the opposite order every other round, so that no
        // side always follows the same one (a sync pays for what the side before left).
        let mut order = [Side::Previous, Side::Single, Side::Batch];
        if round % 2 == 1 {
            order.reverse();
        }
        for side in order {
            let t = Instant::now();
            match side {
                Side::Previous => {
                    for (wasm, manifest) in &for_previous {
                        previous_commit(&previous_root, wasm, manifest)?;
                    }
                    previous.push(per_round as f64 / t.elapsed().as_secs_f64());
                }
                Side::Single => {
                    for (wasm, manifest) in &for_single {
                        store.commit(wasm, manifest)?;
                    }
                    single.push(per_round as f64 / t.elapsed().as_secs_f64());
                }
                Side::Batch => {
                    let pairs: Vec<(&[u8], &Manifest)> =
                        for_batch.iter().map(|(w, m)| (w.as_slice(), m)).collect();
                    let t = Instant::now();
                    let report = store.commit_many(&pairs)?;
                    batch.push(BATCH as f64 / t.elapsed().as_secs_f64());
                    syncs_per_batch = report.syncs;
                }
            }
        }
    }
    let problems = store.verify(|_| {})?;
    if !problems.is_empty() {
        wasmtime::bail!("the committed cache has problems: {problems:?}");
    }
    for root in [&previous_root, &current_root] {
        fs::remove_dir_all(root)?;
    }

    let mut table = Table::new(
        "(4c) Commit cost: one module at a time and a batch, against the previous commit path",
        &[
            "commit path",
            "modules/s (median)",
            "min–max",
            "vs previous path",
        ],
    );
    let base = median(&previous);
    for (name, rates) in [
        ("previous: fsync per file (10 per module)", &previous),
        ("now: `commit`, one module per call", &single),
        (
            "now: `commit_many`, a batch of 100 (`Cache::add_modules`)",
            &batch,
        ),
    ] {
        let (low, high) = rates
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        table.row(vec![
            name.to_string(),
            format!("{:.0}", median(rates)),
            format!("{low:.0}–{high:.0}"),
            ratio(median(rates), base),
        ]);
    }
    table.note(format!(
        "Modules of {FUNCTIONS} exported functions, analyzed beforehand; {rounds} rounds, each \
         committing {per_round} modules through the previous path (reproduced in \
         bench/src/commit_path.rs), {per_round} through `DirStore::commit` and {BATCH} \
         through one `DirStore::commit_many` ({syncs_per_batch} sync(s) for the whole batch), \
         in that order in odd rounds and the reverse in even ones, on the same disk. Each \
         rate is modules committed per second of that side's own time."
    ));
    Ok(table)
}
