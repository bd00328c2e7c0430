//! Test helpers: module builders following the module convention, and a harness that
//! drives the planner over a `MemoryStore` the way a host does (verify bytes, "load",
//! commit), without a wasm engine.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use linkcache_core::{
    GlobalCheck, GlobalOutcome, ImportBinding, Linkage, LoadFailure, LoadPlan, MemoryStore, Miss,
    ModuleId, literal_global, load_target,
};

/// One function of a generated module: its name, the func_names it calls, and the
/// (mutable) globals it reads.
pub struct Func<'a> {
    pub name: &'a str,
    pub calls: &'a [&'a str],
    pub globals: &'a [&'a str],
}

pub const fn f<'a>(name: &'a str, calls: &'a [&'a str]) -> Func<'a> {
    Func {
        name,
        calls,
        globals: &[],
    }
}

/// A module defining `funcs`, each `(param i64) (result i64)`, adding up its argument,
/// the results of its calls and its globals. Globals are mutable i64s, definitions
/// passed through the custom section as the text `definition`.
pub fn module(funcs: &[Func<'_>]) -> Vec<u8> {
    module_with_globals(funcs, &BTreeMap::new())
}

pub fn module_with_globals(funcs: &[Func<'_>], definitions: &BTreeMap<&str, &str>) -> Vec<u8> {
    let mut imports = BTreeSet::new();
    let mut globals = BTreeSet::new();
    for func in funcs {
        imports.extend(func.calls.iter().copied());
        globals.extend(func.globals.iter().copied());
    }
    let mut wat = String::from("(module\n");
    for import in &imports {
        writeln!(
            wat,
            "  (import \"linkcache:fn\" \"{import}\" (func ${import} (param i64) (result i64)))"
        )
        .unwrap();
    }
    for global in &globals {
        writeln!(
            wat,
            "  (import \"linkcache:global\" \"{global}\" (global ${global} (mut i64)))"
        )
        .unwrap();
    }
    for func in funcs {
        let mut body = String::from("(local.get 0)");
        for call in func.calls {
            body = format!("(i64.add {body} (call ${call} (local.get 0)))");
        }
        for global in func.globals {
            body = format!("(i64.add {body} (global.get ${global}))");
        }
        writeln!(
            wat,
            "  (func (export \"{}\") (param i64) (result i64) {body})",
            func.name
        )
        .unwrap();
    }
    let entries: Vec<(&str, &[u8])> = globals
        .iter()
        .map(|g| (*g, definitions.get(g).copied().unwrap_or("0").as_bytes()))
        .collect();
    let section = linkcache_core::encode_globals_section(entries);
    let escaped: String = section.iter().map(|b| format!("\\{b:02x}")).collect();
    writeln!(wat, "  (@custom \"linkcache.globals\" \"{escaped}\")\n)").unwrap();
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
}

/// A host without an engine: a memory store, one process's linkage, an embedder whose
/// globals are `env`, and a log of what each target loaded.
#[derive(Default)]
pub struct Harness {
    pub store: MemoryStore,
    pub linkage: Linkage,
    /// The embedder's current truth: a definition validates when it is absent here or
    /// equal to the entry.
    pub env: BTreeMap<String, String>,
    pub validated: Vec<String>,
    pub loads: Vec<Vec<ModuleId>>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::default()
    }

    pub fn add(&mut self, wasm: &[u8]) -> ModuleId {
        self.store.add(wasm).expect("test modules analyze")
    }

    /// A new process on the same store.
    pub fn restart(&mut self) {
        self.linkage = Linkage::new();
    }

    pub fn target(&mut self, func: &str) -> Result<LoadPlan, Miss> {
        let env = self.env.clone();
        let validated = &mut self.validated;
        let mut resolver = |check: &GlobalCheck| -> GlobalOutcome {
            validated.push(String::from(&check.global.name));
            let text = String::from_utf8_lossy(&check.global.definition).into_owned();
            match env.get(check.global.name.as_str()) {
                Some(current) if *current != text => {
                    Err(format!("compiled for {text}, now {current}"))
                }
                _ => literal_global(check),
            }
        };
        let store = &self.store;
        let mut loaded = vec![];
        let mut load = |plan: &LoadPlan, linkage: &Linkage| -> Result<(), LoadFailure> {
            loaded.clear();
            for (position, planned) in plan.modules.iter().enumerate() {
                let wasm = store
                    .wasm(&planned.module)
                    .expect("planned modules are stored");
                if !planned.module.matches(wasm) {
                    return Err(LoadFailure {
                        module: planned.module,
                        reason: "bytes do not match the module id".into(),
                    });
                }
                check_bindings(plan, position, linkage);
                loaded.push(planned.module);
            }
            Ok(())
        };
        let mut store = self.store.clone();
        let outcome = load_target(
            &mut store,
            &mut self.linkage,
            func,
            None,
            &mut resolver,
            &mut load,
        )
        .expect("memory store is infallible");
        if outcome.is_ok() {
            self.loads.push(loaded);
        }
        outcome
    }

    pub fn last_load(&self) -> &[ModuleId] {
        self.loads.last().map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Every import of the planned module at `position` is bound to something that exists
/// when it is instantiated.
pub fn check_bindings(plan: &LoadPlan, position: usize, linkage: &Linkage) {
    let planned = &plan.modules[position];
    let earlier: BTreeSet<ModuleId> = plan.modules[..position].iter().map(|m| m.module).collect();
    let group = plan.cycles.iter().find(|g| g.contains(&planned.module));
    for binding in &planned.imports {
        match binding {
            ImportBinding::Export { module, func } => {
                assert!(
                    linkage.is_loaded(module) || earlier.contains(module),
                    "{func} bound to {module:?}, which is neither loaded nor instantiated earlier"
                );
            }
            ImportBinding::Trampoline { func } => {
                let target = plan
                    .bindings
                    .iter()
                    .find(|(f, _)| f == func)
                    .map(|(_, m)| *m)
                    .expect("trampolines forward to functions this plan binds");
                assert!(
                    group.is_some_and(|g| g.contains(&target)),
                    "trampoline for {func} leaves its strongly connected group"
                );
            }
            ImportBinding::Lazy { func, .. } => {
                assert!(
                    !plan.bindings.iter().any(|(f, _)| f == func)
                        && linkage.binding(func).is_none(),
                    "{func} is bound, so it must not be lazy"
                );
            }
            _ => {}
        }
    }
}
