//! What the bench does inside a fresh child process (`linkcache-bench --role NAME ...`):
//! each role does one load, times it from the inside and prints its timings as one line
//! of JSON on stdout. The parent runs a role many times and takes medians.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use linkcache_core::{ModuleId, Value};
use linkcache_native::{ArtifactLookup, Cache, DirStore};
use serde_json::{Value as Json, json};
use wasmtime::error::Context as _;
use wasmtime::{
    Config, Engine, Extern, Global, GlobalType, Instance, Linker, Module, Mutability, Store,
};
use wasmtime::{Result, bail};

use crate::large::ImportStubs;
use crate::workload::Params;

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// Runs the role named by `args[0]` and prints its JSON.
pub fn run(args: &[String]) -> Result<()> {
    let (role, args) = args.split_first().context("--role needs a name")?;
    let arg = |i: usize| -> Result<&str> {
        args.get(i)
            .map(String::as_str)
            .with_context(|| format!("role {role} needs argument {i}"))
    };
    let out = match role.as_str() {
        "warm-target" => warm_target(
            Path::new(arg(0)?),
            arg(1)?,
            arg(2)?.parse()?,
            arg(3)?.parse()?,
        )?,
        "load-all" => load_all(
            Path::new(arg(0)?),
            arg(1)?,
            arg(2)?.parse()?,
            arg(3)?.parse()?,
        )?,
        "open" => open(Path::new(arg(0)?))?,
        "phases" => phases(Path::new(arg(0)?), arg(1)?)?,
        "large-linkcache" => large_linkcache(Path::new(arg(0)?), Path::new(arg(1)?), arg(2)?)?,
        "large-compile" => large_compile(Path::new(arg(0)?))?,
        "large-wasmtime-cache" => large_wasmtime_cache(Path::new(arg(0)?), Path::new(arg(1)?))?,
        "large-mmap" => large_mmap(Path::new(arg(0)?), Path::new(arg(1)?))?,
        "add" => add(
            Path::new(arg(0)?),
            arg(1)?.parse()?,
            arg(2)?.parse()?,
            arg(3)?.parse()?,
        )?,
        other => bail!("unknown role `{other}`"),
    };
    println!("{out}");
    Ok(())
}

/// Runs a role in a fresh process and returns its JSON, with `wall_ms` (spawn to exit,
/// as the parent saw it) added.
pub fn spawn(role: &str, args: &[String]) -> Result<Json> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let output = Command::new(exe)
        .arg("--role")
        .arg(role)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting role {role}"))?;
    let wall = ms_since(started);
    if !output.status.success() {
        bail!(
            "role {role} {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().context("the role printed nothing")?;
    let mut json: Json =
        serde_json::from_str(line).with_context(|| format!("role {role} printed {line:?}"))?;
    json["wall_ms"] = json!(wall);
    Ok(json)
}

/// (1) Opens a warm cache, targets `func` (typed `(i32) -> i64`) and calls it once.
fn warm_target(dir: &Path, func: &str, arg: i32, expected: i64) -> Result<Json> {
    let started = Instant::now();
    let engine = Engine::new(&Config::new())?;
    let engine_ms = ms_since(started);
    let t = Instant::now();
    let cache = Cache::builder(dir).engine(engine).open()?;
    let open_ms = ms_since(t);
    let t = Instant::now();
    let target = cache.target::<(i32,), i64>(func)?;
    let target_ms = ms_since(t);
    let t = Instant::now();
    let result = target.call(&cache, (arg,))?;
    let call_ms = ms_since(t);
    if result != expected {
        bail!("{func}({arg}) returned {result}, expected {expected}");
    }
    let stats = cache.stats();
    if stats.modules_compiled > 0 {
        bail!(
            "the cache was not warm: {} modules compiled",
            stats.modules_compiled
        );
    }
    Ok(json!({
        "engine_ms": engine_ms,
        "open_ms": open_ms,
        "target_ms": target_ms,
        "call_ms": call_ms,
        "modules_loaded": stats.modules_loaded,
        "artifacts": stats.artifacts_deserialized,
        "bytes_read": stats.bytes_read,
    }))
}

/// (2) The baseline: what a cache without a dependency graph does. It reads every
/// module's manifest (for its globals) and checked artifact, instantiates every module
/// in import order, then calls `func`.
fn load_all(root: &Path, func: &str, arg: i32, expected: i64) -> Result<Json> {
    let started = Instant::now();
    let engine = Engine::new(&Config::new())?;
    let engine_ms = ms_since(started);

    let t = Instant::now();
    let dir = DirStore::open(root)?;
    let key = linkcache_native::engine_key(&engine);
    let ids = dir.modules()?;
    let list_ms = ms_since(t);

    let t = Instant::now();
    let mut loaded = Vec::with_capacity(ids.len());
    for id in &ids {
        let manifest = dir
            .manifest(id)?
            .map_err(|reason| wasmtime::format_err!("module {id}: {reason}"))?;
        let module = match dir.artifact(&key, id)? {
            // SAFETY: the same checks linkcache makes: a private root, an artifact of this
            // engine's configuration whose checksum was verified just now.
            ArtifactLookup::Found { file, .. } => unsafe {
                Module::deserialize_open_file(&engine, file)?
            },
            _ => bail!("module {id} has no artifact; the cache was not precompiled"),
        };
        loaded.push((*id, manifest, module));
    }
    let load_ms = ms_since(t);

    let t = Instant::now();
    // Which module provides each func_name: the first in id order (no policy).
    let mut provider: HashMap<&str, usize> = HashMap::new();
    for (i, (_, manifest, _)) in loaded.iter().enumerate() {
        for function in &manifest.functions {
            provider.entry(function.name.as_str()).or_insert(i);
        }
    }
    // wasmtime allows 10,000 instances per store by default; the baseline needs more.
    let limits = wasmtime::StoreLimitsBuilder::new()
        .instances(loaded.len() + 16)
        .build();
    let mut store = Store::new(&engine, limits);
    store.limiter(|limits| limits);
    let mut globals: HashMap<String, Global> = HashMap::new();
    let mut instances: Vec<Option<Instance>> = vec![None; loaded.len()];
    // Instantiate in import order (iterative depth-first; the workloads have no cycles).
    for root_index in 0..loaded.len() {
        let mut stack = vec![(root_index, false)];
        while let Some((i, ready)) = stack.pop() {
            if instances[i].is_some() {
                continue;
            }
            let (id, manifest, module) = &loaded[i];
            if !ready {
                stack.push((i, true));
                for (name, _) in manifest.fn_imports() {
                    let p = *provider
                        .get(name)
                        .with_context(|| format!("nothing provides {name}"))?;
                    if instances[p].is_none() {
                        stack.push((p, false));
                    }
                }
                continue;
            }
            let mut imports = Vec::new();
            for import in module.imports() {
                let item = match import.module() {
                    linkcache_core::FN_NAMESPACE => {
                        let p = provider[import.name()];
                        let instance = instances[p].context("a dependency cycle")?;
                        Extern::Func(
                            instance
                                .get_func(&mut store, import.name())
                                .context("missing export")?,
                        )
                    }
                    linkcache_core::GLOBAL_NAMESPACE => {
                        let name = import.name();
                        if let Some(global) = globals.get(name) {
                            Extern::Global(*global)
                        } else {
                            let def = manifest
                                .global(name)
                                .context("a global without definition")?;
                            let text = std::str::from_utf8(&def.definition)?;
                            let value = Value::parse_literal(def.ty, text)
                                .with_context(|| format!("global {name}: bad literal"))?;
                            let global = Global::new(
                                &mut store,
                                GlobalType::new(wasmtime::ValType::I64, Mutability::Const),
                                linkcache_native::to_val(value),
                            )?;
                            globals.insert(name.to_string(), global);
                            Extern::Global(global)
                        }
                    }
                    other => bail!("module {} imports from {other}", id.short()),
                };
                imports.push(item);
            }
            instances[i] = Some(Instance::new(&mut store, module, &imports)?);
        }
    }
    let instantiate_ms = ms_since(t);

    let t = Instant::now();
    let p = provider[func];
    let f = instances[p]
        .context("not instantiated")?
        .get_typed_func::<i32, i64>(&mut store, func)?;
    let result = f.call(&mut store, arg)?;
    let call_ms = ms_since(t);
    if result != expected {
        bail!("{func}({arg}) returned {result}, expected {expected}");
    }
    Ok(json!({
        "engine_ms": engine_ms,
        "list_ms": list_ms,
        "load_ms": load_ms,
        "instantiate_ms": instantiate_ms,
        "call_ms": call_ms,
        "modules_loaded": loaded.len(),
    }))
}

/// A store that answers from memory what a first run read from a [`DirStore`], and
/// counts the questions: to time the planner alone and to count its rounds.
#[derive(Default)]
struct Recorded {
    candidates: HashMap<String, Vec<linkcache_core::Candidate>>,
    manifests: HashMap<ModuleId, Result<std::sync::Arc<linkcache_core::Manifest>, String>>,
    dir: Option<DirStore>,
    questions: usize,
}

impl linkcache_core::Store for Recorded {
    type Error = linkcache_native::Error;

    fn candidates(
        &mut self,
        func_name: &str,
    ) -> Result<Vec<linkcache_core::Candidate>, Self::Error> {
        self.questions += 1;
        if let Some(dir) = &self.dir {
            let found = dir.candidates(func_name)?;
            self.candidates.insert(func_name.into(), found.clone());
            return Ok(found);
        }
        Ok(self.candidates.get(func_name).cloned().unwrap_or_default())
    }

    fn manifest(
        &mut self,
        module: &ModuleId,
    ) -> Result<Result<std::sync::Arc<linkcache_core::Manifest>, String>, Self::Error> {
        self.questions += 1;
        if let Some(dir) = &self.dir {
            let found = dir.manifest(module)?.map(std::sync::Arc::new);
            self.manifests.insert(*module, found.clone());
            return Ok(found);
        }
        Ok(self
            .manifests
            .get(module)
            .cloned()
            .unwrap_or_else(|| Err("not recorded".into())))
    }
}

/// (1b) Where the time of a warm `target()` goes, in a fresh process: the planner with
/// its reads of the index and manifests, the planner alone (answers from memory), the
/// artifacts' checksums, `deserialize_file`, the use markers; then the real `target()`.
fn phases(root: &Path, func: &str) -> Result<Json> {
    let engine = Engine::new(&Config::new())?;
    let dir = DirStore::open(root)?;
    let mut recorded = Recorded {
        dir: Some(dir.clone()),
        ..Recorded::default()
    };
    let t = Instant::now();
    let plan = linkcache_core::plan(
        &mut recorded,
        &mut linkcache_core::Linkage::new(),
        func,
        None,
        &mut linkcache_core::literal_global,
    )?
    .map_err(|miss| wasmtime::format_err!("{miss}"))?;
    let plan_io_ms = ms_since(t);
    let questions = recorded.questions;
    recorded.dir = None;
    let t = Instant::now();
    linkcache_core::plan(
        &mut recorded,
        &mut linkcache_core::Linkage::new(),
        func,
        None,
        &mut linkcache_core::literal_global,
    )?
    .map_err(|miss| wasmtime::format_err!("{miss}"))?;
    let plan_cpu_ms = ms_since(t);

    let key = linkcache_native::engine_key(&engine);
    let t = Instant::now();
    let mut files = Vec::new();
    for planned in &plan.modules {
        match dir.artifact(&key, &planned.module)? {
            ArtifactLookup::Found { file, .. } => files.push(file),
            other => bail!("no artifact: {other:?}"),
        }
    }
    let artifacts_ms = ms_since(t);
    let t = Instant::now();
    let mut modules = Vec::with_capacity(files.len());
    for file in files {
        // SAFETY: checked just now, through this handle, as linkcache does.
        modules.push(unsafe { Module::deserialize_open_file(&engine, file)? });
    }
    let deserialize_ms = ms_since(t);
    let t = Instant::now();
    instantiate_planned(&engine, &plan, &modules)?;
    let instantiate_ms = ms_since(t);
    let t = Instant::now();
    for planned in &plan.modules {
        dir.touch(&planned.module);
    }
    let touch_once_ms = ms_since(t);
    let t = Instant::now();
    for (_, module) in &plan.bindings {
        dir.touch(module);
    }
    let touch_per_binding_ms = ms_since(t);

    let cache = Cache::builder(root).engine(engine).open()?;
    let t = Instant::now();
    cache.target_dynamic(func)?;
    let target_ms = ms_since(t);
    Ok(json!({
        "modules": plan.modules.len(),
        "bindings": plan.bindings.len(),
        "questions": questions,
        "plan_io_ms": plan_io_ms,
        "plan_cpu_ms": plan_cpu_ms,
        "artifacts_ms": artifacts_ms,
        "deserialize_ms": deserialize_ms,
        "instantiate_ms": instantiate_ms,
        "touch_once_ms": touch_once_ms,
        "touch_per_binding_ms": touch_per_binding_ms,
        "target_ms": target_ms,
    }))
}

/// The floor's last part in (1b): the planned modules instantiated in the plan's order
/// in a new store, each import bound as the plan says (exports of modules instantiated
/// before, immutable globals with their values or zero for a placeholder, a trapping
/// stub for a lazy edge), with
/// none of linkcache's bookkeeping.
fn instantiate_planned(
    engine: &Engine,
    plan: &linkcache_core::LoadPlan,
    modules: &[Module],
) -> Result<()> {
    use linkcache_core::{GlobalBinding, ImportBinding};
    let mut store = Store::new(engine, ());
    let mut instances: HashMap<ModuleId, Instance> = HashMap::new();
    for (planned, module) in plan.modules.iter().zip(modules) {
        let mut imports = Vec::with_capacity(planned.imports.len());
        for (binding, import) in planned.imports.iter().zip(module.imports()) {
            imports.push(match (binding, import.ty()) {
                (ImportBinding::Export { module, func }, _) => Extern::Func(
                    instances
                        .get(module)
                        .context("an export of a module not instantiated yet")?
                        .get_func(&mut store, func)
                        .context("a missing export")?,
                ),
                (
                    ImportBinding::Global {
                        binding: GlobalBinding::Value(value),
                        ..
                    },
                    wasmtime::ExternType::Global(ty),
                ) => Extern::Global(Global::new(
                    &mut store,
                    ty,
                    linkcache_native::to_val(*value),
                )?),
                (
                    ImportBinding::Global {
                        binding: GlobalBinding::Placeholder(_),
                        ..
                    },
                    wasmtime::ExternType::Global(ty),
                ) => {
                    let zero = wasmtime::Val::default_for_ty(ty.content())
                        .context("a global type without a default")?;
                    Extern::Global(Global::new(&mut store, ty, zero)?)
                }
                (ImportBinding::Lazy { .. }, wasmtime::ExternType::Func(ty)) => {
                    Extern::Func(wasmtime::Func::new(&mut store, ty, |_, _, _| {
                        wasmtime::bail!("a lazy edge, not called by the bench")
                    }))
                }
                (other, _) => bail!("(1b) does not bind {other:?}"),
            });
        }
        let instance = Instance::new(&mut store, module, &imports)?;
        instances.insert(planned.module, instance);
    }
    Ok(())
}

/// (4) Opens a cache in a fresh process.
fn open(dir: &Path) -> Result<Json> {
    let started = Instant::now();
    let engine = Engine::new(&Config::new())?;
    let engine_ms = ms_since(started);
    let t = Instant::now();
    let cache = Cache::builder(dir).engine(engine).open()?;
    let open_ms = ms_since(t);
    drop(cache);
    Ok(json!({ "engine_ms": engine_ms, "open_ms": open_ms }))
}

/// (3) linkcache: targets `func` of a large module whose artifact is cached (its
/// checksum is verified, then it is memory-mapped); then does it again in a second
/// cache of the same process (a warm process).
fn large_linkcache(dir: &Path, wasm: &Path, func: &str) -> Result<Json> {
    let stubs = ImportStubs::of(&std::fs::read(wasm)?)?;
    let started = Instant::now();
    let engine = Engine::new(&Config::new())?;
    let engine_ms = ms_since(started);
    let open = |engine: Engine| {
        let stubs = stubs.clone();
        Cache::builder(dir)
            .engine(engine)
            .linker(move |linker| stubs.define(linker))
            .open()
    };
    let t = Instant::now();
    let cache = open(engine.clone())?;
    let open_ms = ms_since(t);
    let t = Instant::now();
    cache.target_dynamic(func)?;
    let load_ms = ms_since(t);
    let stats = cache.stats();
    if stats.artifacts_deserialized != 1 || stats.modules_compiled != 0 {
        bail!("expected one artifact and no compilation, got {stats:?}");
    }
    let second = open(engine)?;
    let t = Instant::now();
    second.target_dynamic(func)?;
    let warm_ms = ms_since(t);
    Ok(json!({
        "engine_ms": engine_ms,
        "open_ms": open_ms,
        "load_ms": load_ms,
        "warm_ms": warm_ms,
        "bytes_read": stats.bytes_read,
    }))
}

fn instantiate_with_stubs(engine: &Engine, module: &Module, stubs: &ImportStubs) -> Result<f64> {
    let t = Instant::now();
    let mut linker: Linker<()> = Linker::new(engine);
    stubs.define(&mut linker)?;
    let mut store = Store::new(engine, ());
    linker.instantiate(&mut store, module)?;
    Ok(ms_since(t))
}

/// (3) Compiles a large module with Cranelift (`Module::new`) and instantiates it.
fn large_compile(wasm: &Path) -> Result<Json> {
    let bytes = std::fs::read(wasm)?;
    let stubs = ImportStubs::of(&bytes)?;
    let engine = Engine::new(&Config::new())?;
    let t = Instant::now();
    let module = Module::new(&engine, &bytes)?;
    let compile_ms = ms_since(t);
    let instantiate_ms = instantiate_with_stubs(&engine, &module, &stubs)?;
    Ok(json!({
        "compile_ms": compile_ms,
        "instantiate_ms": instantiate_ms,
        "load_ms": compile_ms + instantiate_ms,
    }))
}

/// (3) wasmtime's own compilation cache, enabled through its `Config`: `Module::new`
/// finds the compiled module in `cache_dir` (after a first run stored it); then a second
/// time in the same process.
fn large_wasmtime_cache(wasm: &Path, cache_dir: &Path) -> Result<Json> {
    let bytes = std::fs::read(wasm)?;
    let stubs = ImportStubs::of(&bytes)?;
    let started = Instant::now();
    let mut cache_config = wasmtime::CacheConfig::new();
    cache_config.with_directory(cache_dir);
    let mut config = Config::new();
    config.cache(Some(wasmtime::Cache::new(cache_config)?));
    let engine = Engine::new(&config)?;
    let engine_ms = ms_since(started);
    let t = Instant::now();
    let module = Module::new(&engine, &bytes)?;
    let module_ms = ms_since(t);
    let instantiate_ms = instantiate_with_stubs(&engine, &module, &stubs)?;
    let t = Instant::now();
    let again = Module::new(&engine, &bytes)?;
    let again_ms = ms_since(t) + instantiate_with_stubs(&engine, &again, &stubs)?;
    Ok(json!({
        "engine_ms": engine_ms,
        "module_ms": module_ms,
        "instantiate_ms": instantiate_ms,
        "load_ms": module_ms + instantiate_ms,
        "warm_ms": again_ms,
    }))
}

/// (3) For reference: `Module::deserialize_file` of the artifact with no check at all.
fn large_mmap(wasm: &Path, artifact: &Path) -> Result<Json> {
    let stubs = ImportStubs::of(&std::fs::read(wasm)?)?;
    let engine = Engine::new(&Config::new())?;
    let t = Instant::now();
    // SAFETY: the artifact was written by linkcache for this engine configuration; this
    // reference measurement skips the checksum on purpose.
    let module = unsafe { Module::deserialize_file(&engine, artifact)? };
    let deserialize_ms = ms_since(t);
    let instantiate_ms = instantiate_with_stubs(&engine, &module, &stubs)?;
    Ok(json!({
        "deserialize_ms": deserialize_ms,
        "load_ms": deserialize_ms + instantiate_ms,
    }))
}

/// (4) One of several processes adding modules at once: generates modules `start ..
/// start + count` of a large workload plus the `shared` first ones (which every process
/// adds, racing on the same files), says `ready`, waits for a line on stdin, then adds.
fn add(dir: &Path, start: usize, count: usize, shared: usize) -> Result<Json> {
    let params = Params::sized(start + count);
    let mut modules: Vec<Vec<u8>> = (0..shared)
        .chain(start..start + count)
        .map(|k| params.module_bytes(k, 0))
        .collect();
    modules.dedup();
    let cache = Cache::open(dir)?;
    println!("ready");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let t = Instant::now();
    let mut ids: Vec<ModuleId> = Vec::with_capacity(modules.len());
    for wasm in &modules {
        ids.push(cache.add_module(wasm)?);
    }
    Ok(json!({ "add_ms": ms_since(t), "added": ids.len() }))
}

/// Spawns `n` adders and starts them at once; returns their JSON and the wall time
/// from the start signal to the last exit.
pub fn race_adders(dir: &Path, n: usize, count: usize, shared: usize) -> Result<(Vec<Json>, f64)> {
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for i in 0..n {
        let child = Command::new(&exe)
            .args(["--role", "add"])
            .arg(dir)
            .args([
                (shared + i * count).to_string(),
                count.to_string(),
                shared.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        children.push(child);
    }
    let mut readers = Vec::new();
    for child in &mut children {
        let mut reader = std::io::BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("an adder said {line:?} instead of ready");
        }
        readers.push(reader);
    }
    let started = Instant::now();
    for child in &mut children {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(b"go\n")?;
    }
    let mut results = Vec::new();
    for (mut child, mut reader) in children.into_iter().zip(readers) {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest)?;
        let status = child.wait()?;
        if !status.success() {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                std::io::Read::read_to_string(&mut stderr, &mut err)?;
            }
            bail!("an adder failed ({status}): {}", err.trim());
        }
        let line = rest.lines().last().context("an adder printed nothing")?;
        results.push(serde_json::from_str(line)?);
    }
    Ok((results, ms_since(started)))
}

/// Where a large module's cached artifact is, for the reference measurement.
pub fn artifact_of(dir: &Path, wasm: &[u8]) -> Result<PathBuf> {
    let store = DirStore::open(dir)?;
    // Artifacts of the bench's engine: the default configuration.
    let key = linkcache_native::engine_key(&Engine::new(&Config::new())?);
    match store.artifact(&key, &ModuleId::of(wasm))? {
        ArtifactLookup::Found { path, .. } => Ok(path),
        other => bail!("no artifact for the large module: {other:?}"),
    }
}
