//! Sections (1) and (2): a warm `target()` and its first call in a fresh process, and
//! partial load against loading every module, over synthetic caches of growing size
//! (each cache prepared once per run, see [`Bench::prepare`]).

use std::collections::BTreeMap;

use serde_json::Value as Json;
use wasmtime::Result;
use wasmtime::error::Context as _;

use crate::charts::{Chart, Plot, Series};
use crate::report::{Table, count, ms, ratio};
use crate::roles;
use crate::workload::{self, Params, Prepared};
use crate::{Bench, CALL_ARG, CLOSURES, Fresh, field, medians};

impl Bench {
    pub(crate) fn prepare(&mut self, size: usize) -> Result<Prepared> {
        if let Some(prepared) = self.prepared.get(&size) {
            return Ok(prepared.clone());
        }
        let params = Params::sized(size);
        eprintln!("  cache of {} modules ({})", count(size), params.key());
        let prepared = workload::prepare(&self.caches, params)?;
        self.prepared.insert(size, prepared.clone());
        Ok(prepared)
    }

    /// The arguments of a `warm-target` or `load-all` child for a closure.
    fn target_args(prepared: &Prepared, closure: usize) -> Result<Vec<String>> {
        let (func, k) = prepared
            .params
            .target_with_closure(closure)
            .with_context(|| format!("no closure of {closure} modules"))?;
        Ok(vec![
            prepared.dir.display().to_string(),
            func,
            CALL_ARG.to_string(),
            prepared.params.expected(k, 0, CALL_ARG).to_string(),
        ])
    }

    /// Runs every warm-target child once per round, interleaved, and keeps medians.
    fn fresh(&mut self) -> Result<BTreeMap<(usize, usize), Fresh>> {
        if let Some(fresh) = &self.fresh {
            return Ok(fresh.clone());
        }
        let mut jobs = Vec::new();
        for size in self.options.sizes() {
            let prepared = self.prepare(size)?;
            for closure in CLOSURES {
                let args = Bench::target_args(&prepared, closure)?;
                // Warm the page cache (and check the result) before measuring.
                roles::spawn("warm-target", &args)?;
                jobs.push(((size, closure), args));
            }
        }
        let runs = self.options.runs(11);
        let mut results: BTreeMap<(usize, usize), Vec<Json>> = BTreeMap::new();
        for round in 0..runs {
            eprintln!("  fresh-process targets, round {}/{runs}", round + 1);
            for (key, args) in &jobs {
                let mut json = roles::spawn("warm-target", args)?;
                json["target_call_ms"] =
                    (field(&json, "target_ms") + field(&json, "call_ms")).into();
                results.entry(*key).or_default().push(json);
            }
        }
        let fresh: BTreeMap<_, _> = results
            .into_iter()
            .map(|(key, runs)| {
                let fresh = Fresh {
                    target: medians(&runs, "target_ms"),
                    call: medians(&runs, "call_ms"),
                    target_call: medians(&runs, "target_call_ms"),
                    wall: medians(&runs, "wall_ms"),
                    loaded: runs[0]["modules_loaded"].as_u64().unwrap_or(0),
                };
                (key, fresh)
            })
            .collect();
        self.fresh = Some(fresh.clone());
        Ok(fresh)
    }

    pub(crate) fn section_target(&mut self) -> Result<Vec<Table>> {
        let fresh = self.fresh()?;
        let runs = self.options.runs(11);
        let mut table = Table::new(
            "(1) Warm `target()` + first call, in a fresh process",
            &[
                "cache (modules)",
                "closure",
                "target()",
                "first call",
                "target + call",
                "vs 10-module cache",
                "modules loaded",
                "process, spawn to exit",
            ],
        );
        let smallest = self.options.sizes()[0];
        for ((size, closure), f) in &fresh {
            let total = self.prepared[size].total_modules;
            let base = &fresh[&(smallest, *closure)];
            table.row(vec![
                format!("{} ({})", count(*size), count(total)),
                closure.to_string(),
                ms(f.target),
                ms(f.call),
                ms(f.target_call),
                ratio(f.target_call, base.target_call),
                f.loaded.to_string(),
                ms(f.wall),
            ]);
        }
        table.note(format!(
            "Medians of {runs} processes. Each child opens the cache (`Engine::new` and \
             `Cache::open`, not included above: see (4)), then times `target::<(i32,), i64>` \
             and one call with a budget of {CALL_ARG} ({} calls through the whole closure). \
             Cache size: distinct modules (with the duplicates in parentheses); {} functions \
             per module, fan-out {}, chains of {} modules, one global per function. The \
             warm cache holds every module's precompiled artifact.",
            1u64 << CALL_ARG,
            Params::sized(1).funcs,
            Params::sized(1).fan_out,
            Params::sized(1).depth
        ));

        let size = *self.options.sizes().last().expect("sizes");
        let prepared = self.prepare(size)?;
        let mut phases = Table::new(
            format!(
                "(1b) Where a warm `target()` spends its time ({} modules, fresh process)",
                count(size)
            ),
            &[
                "closure",
                "store questions",
                "plan, with index and manifest reads",
                "plan, answers from memory",
                "artifact checksums",
                "`deserialize_open_file`",
                "instantiation",
                "use markers, per module / per binding",
                "whole `target()`",
                "whole ÷ floor",
            ],
        );
        for closure in CLOSURES {
            let (func, _) = prepared
                .params
                .target_with_closure(closure)
                .context("closure")?;
            let args = vec![prepared.dir.display().to_string(), func];
            let results: Vec<Json> = (0..runs)
                .map(|_| roles::spawn("phases", &args))
                .collect::<Result<_>>()?;
            phases.row(vec![
                closure.to_string(),
                format!(
                    "{} ({} bound)",
                    results[0]["questions"],
                    plural(results[0]["bindings"].as_u64().unwrap_or(0), "function")
                ),
                ms(medians(&results, "plan_io_ms")),
                ms(medians(&results, "plan_cpu_ms")),
                ms(medians(&results, "artifacts_ms")),
                ms(medians(&results, "deserialize_ms")),
                ms(medians(&results, "instantiate_ms")),
                format!(
                    "{} / {}",
                    ms(medians(&results, "touch_once_ms")),
                    ms(medians(&results, "touch_per_binding_ms"))
                ),
                ms(medians(&results, "target_ms")),
                ratio(
                    medians(&results, "target_ms"),
                    medians(&results, "artifacts_ms")
                        + medians(&results, "deserialize_ms")
                        + medians(&results, "instantiate_ms"),
                ),
            ]);
        }
        phases.note(format!(
            "Each phase timed on its own with the public APIs, medians of {runs} processes: \
             `linkcache_core::plan` over the `DirStore` (store questions: candidate lists and \
             manifests it asked for, one planner round each), the same plan again answered \
             from memory (the planner's own CPU time), `DirStore::artifact` (directory checks, \
             one open without following links, owner and mode of the handle, XXH3-128 \
             through it) and `Module::deserialize_open_file` of that handle for each planned \
             module, their instantiation in a new store as the plan binds them (the floor \
             is these three: issue 15 asks for a whole target within 1.5× of it), \
             `DirStore::touch`; then a real `target_dynamic` on a new `Cache` in the same \
             process."
        ));
        Ok(vec![table, phases])
    }

    pub(crate) fn section_partial(&mut self) -> Result<Vec<Table>> {
        let fresh = self.fresh()?;
        let mut table = Table::new(
            "(2) Partial load against loading every module of the cache",
            &[
                "cache (modules)",
                "linkcache, closure 1",
                "linkcache, closure 10",
                "load everything",
                "modules loaded",
                "everything ÷ closure 10",
                "everything ÷ closure 1",
            ],
        );
        let mut notes = Vec::new();
        let mut lines: [Vec<(f64, f64)>; 3] = Default::default();
        for size in self.options.sizes() {
            let prepared = self.prepare(size)?;
            let args = Bench::target_args(&prepared, 10)?;
            roles::spawn("load-all", &args)?;
            let runs = self.options.runs(if size >= 10_000 { 3 } else { 5 });
            let mut all = Vec::new();
            for _ in 0..runs {
                let mut json = roles::spawn("load-all", &args)?;
                json["total_ms"] = (field(&json, "list_ms")
                    + field(&json, "load_ms")
                    + field(&json, "instantiate_ms")
                    + field(&json, "call_ms"))
                .into();
                all.push(json);
            }
            let everything = medians(&all, "total_ms");
            let one = fresh[&(size, 1)].target_call;
            let ten = fresh[&(size, 10)].target_call;
            for (line, value) in lines.iter_mut().zip([one, ten, everything]) {
                line.push((size as f64, value));
            }
            table.row(vec![
                format!("{} ({})", count(size), count(prepared.total_modules)),
                ms(one),
                ms(ten),
                ms(everything),
                count(all[0]["modules_loaded"].as_u64().unwrap_or(0) as usize),
                ratio(everything, ten),
                ratio(everything, one),
            ]);
            notes.push(format!(
                "{}: list {}, read manifests + checked artifacts + deserialize {}, instantiate {}, call {} ({runs} runs)",
                count(size),
                ms(medians(&all, "list_ms")),
                ms(medians(&all, "load_ms")),
                ms(medians(&all, "instantiate_ms")),
                ms(medians(&all, "call_ms")),
            ));
        }
        table.note(
            "Both in a fresh process, without `Engine::new`. \"Load everything\" is what a cache \
             without a dependency graph does: list the modules, read each one's manifest (for \
             its globals) and its checked artifact from the same directory, \
             `Module::deserialize_open_file`, instantiate all of them in import order, call the \
             function. Its phases, medians:",
        );
        for note in notes {
            table.note(format!("- {note}"));
        }
        let [one, ten, everything] = lines;
        self.charts.push(Chart {
            file: "cache-size.svg".into(),
            title: "Warm target() + first call against cache size, fresh process".into(),
            plot: Plot::Lines {
                x_label: "modules in the cache".into(),
                y_label: "time (log scale)".into(),
                series: vec![
                    Series {
                        name: "linkcache, closure of 1 module".into(),
                        points: one,
                    },
                    Series {
                        name: "linkcache, closure of 10 modules".into(),
                        points: ten,
                    },
                    Series {
                        name: "loading every module".into(),
                        points: everything,
                    },
                ],
            },
        });
        Ok(vec![table])
    }
}

/// `1 function`, `2 functions`.
fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
