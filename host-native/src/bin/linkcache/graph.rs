//! `linkcache graph`: the func_name dependency graph, as text or Graphviz dot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;

use linkcache_native::core::ModuleId;

use super::{Failure, GraphFormat, store};

pub(super) fn graph(
    dir: &Path,
    func: Option<&str>,
    format: GraphFormat,
) -> Result<ExitCode, Failure> {
    let store = store(dir)?;
    // Each function's first intact definition (resolution order) and its calls.
    let mut defs: BTreeMap<String, (ModuleId, Vec<String>)> = BTreeMap::new();
    let resolve = |name: &str| -> Result<Option<(ModuleId, Vec<String>)>, Failure> {
        let mut candidates = store.candidates(name)?;
        candidates.sort_by_key(|c| (c.committed_at, c.module));
        for candidate in candidates {
            if let Ok(manifest) = store.manifest(&candidate.module)?
                && let Some(f) = manifest.function(name)
            {
                return Ok(Some((
                    candidate.module,
                    f.calls.iter().map(String::from).collect(),
                )));
            }
        }
        Ok(None)
    };
    let mut queue: Vec<String> = match func {
        Some(f) => vec![f.to_string()],
        None => store.index()?.into_keys().collect(),
    };
    let mut seen = BTreeSet::new();
    while let Some(name) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some((module, calls)) = resolve(&name)? {
            queue.extend(calls.iter().cloned());
            defs.insert(name, (module, calls));
        }
    }
    if let Some(f) = func
        && !defs.contains_key(f)
    {
        return Err(Failure::Error(format!("no cached module defines `{f}`")));
    }
    match format {
        GraphFormat::Text => {
            for (name, (module, calls)) in &defs {
                println!("{name} [{}]", module.short());
                for call in calls {
                    let mark = if defs.contains_key(call) {
                        ""
                    } else {
                        " (missing)"
                    };
                    println!("  -> {call}{mark}");
                }
            }
        }
        GraphFormat::Dot => {
            println!("digraph linkcache {{");
            println!("  rankdir=LR; node [shape=box];");
            let mut by_module: BTreeMap<ModuleId, Vec<&String>> = BTreeMap::new();
            for (name, (module, _)) in &defs {
                by_module.entry(*module).or_default().push(name);
            }
            for (module, names) in &by_module {
                println!(
                    "  subgraph \"cluster_{}\" {{ label=\"{}\";",
                    module,
                    module.short()
                );
                for name in names {
                    println!("    \"{name}\";");
                }
                println!("  }}");
            }
            for (name, (_, calls)) in &defs {
                for call in calls {
                    println!("  \"{name}\" -> \"{call}\";");
                }
            }
            println!("}}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
