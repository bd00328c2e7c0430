//! Section (3): a second process's load of a large module, linkcache against
//! `Module::new` and wasmtime's own cache (the modules themselves come from
//! [`crate::large`]).

use std::collections::BTreeMap;
use std::time::Instant;

use linkcache_native::Cache;
use serde_json::Value as Json;
use wasmtime::error::Context as _;
use wasmtime::{Result, bail};

use crate::charts::{Chart, Group, Plot};
use crate::large::{self, ImportStubs, LargeModule};
use crate::report::{Table, count, ms, ratio};
use crate::roles;
use crate::workload::{self, Params};
use crate::{Bench, medians};

impl Bench {
    pub(crate) fn large_modules(&self) -> Result<Vec<(LargeModule, Vec<u8>)>> {
        let modules = if self.options.quick {
            let path = self.caches.join("synthetic-large.wasm");
            let tmp = self
                .caches
                .join(format!("synthetic-large.wasm.{}", std::process::id()));
            std::fs::write(&tmp, workload::synthetic_large(200))?;
            std::fs::rename(&tmp, &path)?;
            vec![LargeModule {
                name: "synthetic, 200 functions (--quick stand-in)".into(),
                wasm: path,
                func: Params::func_name(0, 0),
            }]
        } else {
            eprintln!("  building bench/payload for wasm32 (regex)");
            let regex = large::regex_payload(&self.target)?;
            eprintln!("  fetching sql.js with npm");
            let sqljs = large::sqljs(&self.target)?;
            vec![regex, sqljs]
        };
        modules
            .into_iter()
            .map(|m| {
                let bytes = std::fs::read(&m.wasm)
                    .with_context(|| format!("reading {}", m.wasm.display()))?;
                Ok((m, bytes))
            })
            .collect()
    }

    pub(crate) fn section_large(&mut self) -> Result<Vec<Table>> {
        let runs = self.options.runs(7);
        let mut cold = Table::new(
            "(3) A second process loads a large module",
            &[
                "module",
                "size",
                "`Module::new` (Cranelift)",
                "wasmtime cache",
                "linkcache `target()`",
                "`deserialize_file`, unchecked",
                "Module::new ÷ linkcache",
                "wasmtime cache ÷ linkcache",
            ],
        );
        let mut warm = Table::new(
            "(3b) The same load again in the same process (a warm process)",
            &[
                "module",
                "wasmtime cache",
                "linkcache, second `Cache` on the directory",
                "wasmtime cache ÷ linkcache",
            ],
        );
        let mut notes = Vec::new();
        let mut groups = Vec::new();
        for (module, bytes) in self.large_modules()? {
            let id = linkcache_core::ModuleId::of(&bytes);
            let base = self.caches.join(format!("large-{}", &id.to_string()[..16]));
            let dir = base.join("cache");
            let wt_cache = base.join("wasmtime-cache");
            eprintln!("  {}: {} bytes", module.name, count(bytes.len()));
            match linkcache_core::analyze(&bytes) {
                Ok(manifest) => notes.push(format!(
                    "- {}: `analyze` accepts it as it is: func_names: {} (its exported \
                     functions; non-function exports are ignored); embedder imports: {} (stub \
                     host functions returning zeros).",
                    module.name,
                    manifest.functions.len(),
                    manifest.embedder_imports().count()
                )),
                Err(e) => bail!("analyze rejects {}: {e}", module.name),
            }
            let stubs = ImportStubs::of(&bytes)?;
            {
                let stubs = stubs.clone();
                let cache = Cache::builder(&dir)
                    .linker(move |linker| stubs.define(linker))
                    .open()?;
                cache.add_module(&bytes)?;
                let t = Instant::now();
                cache.target_dynamic(&module.func)?;
                eprintln!(
                    "  {}: first load (compiles, stores the artifact) {}",
                    module.name,
                    ms(t.elapsed().as_secs_f64() * 1000.0)
                );
            }
            let artifact = roles::artifact_of(&dir, &bytes)?;
            let wasm = module.wasm.display().to_string();
            let lc_args = vec![dir.display().to_string(), wasm.clone(), module.func.clone()];
            let wt_args = vec![wasm.clone(), wt_cache.display().to_string()];
            let mmap_args = vec![wasm.clone(), artifact.display().to_string()];
            // Warm-ups: fill wasmtime's cache, the page cache.
            roles::spawn("large-wasmtime-cache", &wt_args)?;
            roles::spawn("large-wasmtime-cache", &wt_args)?;
            roles::spawn("large-linkcache", &lc_args)?;
            let mut results: BTreeMap<&str, Vec<Json>> = BTreeMap::new();
            for round in 0..runs {
                eprintln!("  {}: round {}/{runs}", module.name, round + 1);
                for (role, args) in [
                    ("large-compile", vec![wasm.clone()]),
                    ("large-wasmtime-cache", wt_args.clone()),
                    ("large-linkcache", lc_args.clone()),
                    ("large-mmap", mmap_args.clone()),
                ] {
                    results
                        .entry(role)
                        .or_default()
                        .push(roles::spawn(role, &args)?);
                }
            }
            let load = |role: &str| medians(&results[role], "load_ms");
            let (compile, wasmtime, linkcache, mmap) = (
                load("large-compile"),
                load("large-wasmtime-cache"),
                load("large-linkcache"),
                load("large-mmap"),
            );
            groups.push(Group {
                name: format!("{} ({} KB)", module.name, bytes.len() / 1000),
                values: vec![compile, wasmtime, linkcache, mmap],
            });
            cold.row(vec![
                module.name.clone(),
                format!("{} KB", bytes.len() / 1000),
                ms(compile),
                ms(wasmtime),
                ms(linkcache),
                ms(mmap),
                ratio(compile, linkcache),
                ratio(wasmtime, linkcache),
            ]);
            let (wt_warm, lc_warm) = (
                medians(&results["large-wasmtime-cache"], "warm_ms"),
                medians(&results["large-linkcache"], "warm_ms"),
            );
            warm.row(vec![
                module.name.clone(),
                ms(wt_warm),
                ms(lc_warm),
                ratio(wt_warm, lc_warm),
            ]);
            notes.push(format!(
                "- {}: artifact {} KB; linkcache reads {} KB per load; Module::new alone {}, \
                 instantiation {}; Engine::new with wasmtime's cache {}, without {}.",
                module.name,
                std::fs::metadata(&artifact)?.len() / 1000,
                results["large-linkcache"][0]["bytes_read"]
                    .as_u64()
                    .unwrap_or(0)
                    / 1000,
                ms(medians(&results["large-compile"], "compile_ms")),
                ms(medians(&results["large-compile"], "instantiate_ms")),
                ms(medians(&results["large-wasmtime-cache"], "engine_ms")),
                ms(medians(&results["large-linkcache"], "engine_ms")),
            ));
        }
        cold.note(format!(
            "Medians of {runs} fresh processes, each timing one load from the inside: get a \
             compiled module and instantiate it (the embedder's imports are stub host \
             functions). linkcache: `Cache::target_dynamic` of one export, which plans, checks \
             the artifact (directories, owner, mode, XXH3-128 through one handle), memory-maps \
             that handle (`Module::deserialize_open_file`) and instantiates. wasmtime cache: `Config::cache` on a directory filled by an \
             earlier process, then `Module::new` on the same bytes. `deserialize_file`, \
             unchecked: the artifact mapped with no checksum and no planning, for reference. \
             Engine creation is outside every timing."
        ));
        for note in notes {
            cold.note(note);
        }
        warm.note(
            "wasmtime's cache has no in-memory layer: a second `Module::new` in the same \
             process reads and decompresses the file again. linkcache's second `Cache` shares \
             the engine but not the first cache's modules, so it checks and maps the artifact again.",
        );
        self.charts.push(Chart {
            file: "large-module.svg".into(),
            title: "A large module's load in a second process".into(),
            plot: Plot::Bars {
                value_label: format!("time, median of {runs} processes (log scale)"),
                series: vec![
                    "Module::new (Cranelift)".into(),
                    "wasmtime's cache".into(),
                    "linkcache target()".into(),
                    "deserialize_file, unchecked (floor)".into(),
                ],
                groups,
                log: true,
                format: ms,
            },
        });
        Ok(vec![cold, warm])
    }
}
