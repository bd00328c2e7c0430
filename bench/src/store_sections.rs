//! Section (4): the cache directory itself: `Cache::open` against cache size, and
//! `add_module` throughput from one process and from eight at once, beside the disk's
//! own cost of a durable write.

use std::path::Path;
use std::time::Instant;

use linkcache_native::{Cache, DirStore};
use serde_json::Value as Json;
use wasmtime::{Result, bail};

use crate::charts::{Chart, Group, Plot};
use crate::commit_path;
use crate::report::{Table, count, median, ms, ratio};
use crate::roles;
use crate::workload::Params;
use crate::{Bench, medians};

impl Bench {
    pub(crate) fn section_open(&mut self) -> Result<Vec<Table>> {
        let runs = self.options.runs(11);
        let mut table = Table::new(
            "(4a) `Cache::open` against cache size",
            &[
                "cache (modules)",
                "`Cache::open`, fresh process",
                "`Engine::new`, fresh process",
                "`Cache::open`, warm process",
                "vs 10-module cache (fresh)",
            ],
        );
        let mut first = None;
        for size in self.options.sizes() {
            let prepared = self.prepare(size)?;
            let args = vec![prepared.dir.display().to_string()];
            let results: Vec<Json> = (0..runs)
                .map(|_| roles::spawn("open", &args))
                .collect::<Result<_>>()?;
            let engine = wasmtime::Engine::default();
            let mut warm = Vec::new();
            for _ in 0..50 {
                let t = Instant::now();
                let cache = Cache::builder(&prepared.dir)
                    .engine(engine.clone())
                    .open()?;
                warm.push(t.elapsed().as_secs_f64() * 1000.0);
                drop(cache);
            }
            let open = medians(&results, "open_ms");
            let base = *first.get_or_insert(open);
            table.row(vec![
                format!("{} ({})", count(size), count(prepared.total_modules)),
                ms(open),
                ms(medians(&results, "engine_ms")),
                ms(median(&warm)),
                ratio(open, base),
            ]);
        }
        table.note(format!(
            "`Cache::open` with an engine passed in (`CacheBuilder::engine`); `Engine::new` is \
             the default engine's creation, which `Cache::open(dir)` adds. Fresh process: \
             medians of {runs}; warm process: median of 50 opens."
        ));
        Ok(vec![table])
    }

    pub(crate) fn section_add(&mut self) -> Result<Vec<Table>> {
        let (per_process, shared) = if self.options.quick { (4, 2) } else { (40, 10) };
        let writers = 8;
        let total = writers * per_process + shared;
        let mut table = Table::new(
            "(4b) `add_module` throughput",
            &[
                "writers",
                "modules added (distinct)",
                "wall time",
                "modules/s",
                "ms per module per writer",
                "vs 1 writer",
            ],
        );
        let mut single = None;
        let mut groups = Vec::new();
        for n in [1, writers] {
            let dir = self.caches.join(format!("add-{n}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let per = if n == 1 { total - shared } else { per_process };
            let (results, wall) = roles::race_adders(&dir, n, per, shared)?;
            let added: u64 = results.iter().filter_map(|r| r["added"].as_u64()).sum();
            let store = DirStore::open(&dir)?;
            let distinct = store.modules()?.len();
            if distinct != total {
                bail!("{n} writers left {distinct} modules, expected {total}");
            }
            let problems = store.verify(|_| {})?;
            if !problems.is_empty() {
                bail!("{n} writers left a cache with problems: {problems:?}");
            }
            let rate = added as f64 / (wall / 1000.0);
            let base = *single.get_or_insert(rate);
            groups.push(Group {
                name: if n == 1 {
                    "1 writer process".to_string()
                } else {
                    format!("{n} writer processes")
                },
                values: vec![rate],
            });
            table.row(vec![
                n.to_string(),
                format!("{} ({})", count(added as usize), count(distinct)),
                ms(wall),
                format!("{rate:.0}"),
                ms(medians(&results, "add_ms") / (added as f64 / n as f64)),
                ratio(rate, base),
            ]);
            std::fs::remove_dir_all(&dir)?;
        }
        table.note(format!(
            "Each writer is a process adding new modules ({} functions each); with {writers} \
             writers, each adds {per_process} of its own plus the same {shared} shared ones \
             (racing on the same files). Modules are generated before the start signal; \
             `verify` finds no problem afterwards. Every commit writes the module's pack \
             (manifest and bytes) through a temporary file, appends one index record to \
             the writer's segment and makes both durable with one `syncfs` (see (4c)).",
            Params::sized(1).funcs
        ));
        let t = Instant::now();
        let fsync = measure_fsync(&self.caches)?;
        table.note(format!(
            "One 300-byte write + fsync + rename on this disk: {} (median of 20, {}).",
            ms(fsync),
            ms(t.elapsed().as_secs_f64() * 1000.0)
        ));
        let commit_table = if self.options.quick {
            commit_path::table(&self.caches, 2, 5)?
        } else {
            commit_path::table(&self.caches, 9, 30)?
        };
        self.charts.push(Chart {
            file: "add-throughput.svg".into(),
            title: "add_module throughput against concurrent writers".into(),
            plot: Plot::Bars {
                value_label: "modules committed per second, all writers together".into(),
                series: vec!["modules/s".into()],
                groups,
                log: false,
                format: |rate| format!("{rate:.0}/s"),
            },
        });
        Ok(vec![table, commit_table])
    }
}

/// The cost of one small durable write on the disk of the target directory.
fn measure_fsync(dir: &Path) -> Result<f64> {
    use std::io::Write;
    let mut times = Vec::new();
    for i in 0..20 {
        let path = dir.join(format!("fsync-probe-{i}"));
        let t = Instant::now();
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&[0u8; 300])?;
        file.sync_all()?;
        std::fs::rename(&path, dir.join("fsync-probe"))?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(dir.join("fsync-probe"));
    Ok(median(&times))
}
