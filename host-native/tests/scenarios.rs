//! The scenario suite of `tests/scenarios` against the native host: a real cache
//! directory, real wasmtime, calls executed. `new_process` opens a new `Cache` on the
//! same directory (fresh instances and bindings; compiled code comes back from the
//! artifacts, as in a new process); `corrupt` flips a byte of the module's file and
//! damages its artifacts.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use linkcache_native::core::{GlobalCheck, ModuleId, Value};
use linkcache_native::{Cache, Error};
use linkcache_tests::{Number, ScenarioHost, TargetOutcome, env_outcome, run_all};

struct NativeHost {
    dir: tempfile::TempDir,
    env: Arc<Mutex<BTreeMap<String, String>>>,
    cache: Cache,
}

impl NativeHost {
    fn new() -> NativeHost {
        let dir = tempfile::tempdir().unwrap();
        let env = Arc::new(Mutex::new(BTreeMap::new()));
        let cache = open(dir.path(), &env);
        NativeHost { dir, env, cache }
    }
}

fn open(dir: &Path, env: &Arc<Mutex<BTreeMap<String, String>>>) -> Cache {
    let env = Arc::clone(env);
    Cache::builder(dir)
        .global_resolver(move |check: &GlobalCheck| env_outcome(&env.lock().unwrap(), check))
        .open()
        .unwrap()
}

fn files_named(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.to_string_lossy().contains(needle) && path.is_file() {
                found.push(path);
            } else if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

impl ScenarioHost for NativeHost {
    fn add(&mut self, wasm: &[u8]) -> Result<ModuleId, String> {
        self.cache.add_module(wasm).map_err(|e| e.to_string())
    }

    fn target(&mut self, func: &str) -> Result<TargetOutcome, String> {
        let before = self.cache.loaded_modules();
        match self.cache.target_dynamic(func) {
            Ok(_) => {
                let after = self.cache.loaded_modules();
                Ok(TargetOutcome::Hit {
                    loaded: after.into_iter().filter(|m| !before.contains(m)).collect(),
                })
            }
            Err(Error::Miss(miss)) => Ok(TargetOutcome::Miss {
                cause: miss.cause().into(),
                function: miss.function().into(),
                detail: miss.detail().map(str::to_string),
            }),
            Err(e) => Err(e.to_string()),
        }
    }

    fn binding(&self, func: &str) -> Option<ModuleId> {
        self.cache.binding(func)
    }

    fn call(&mut self, func: &str, args: &[Number]) -> Result<Option<Vec<Value>>, String> {
        let target = self.cache.target_dynamic(func).map_err(|e| e.to_string())?;
        let args: Vec<Value> = args
            .iter()
            .zip(&target.signature.params)
            .map(|(arg, ty)| {
                arg.to_value(*ty)
                    .ok_or_else(|| format!("argument {arg} is not a {ty}"))
            })
            .collect::<Result<_, _>>()?;
        self.cache
            .call(func, &args)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    fn set_env(&mut self, env: BTreeMap<String, String>) {
        *self.env.lock().unwrap() = env;
    }

    fn new_process(&mut self) {
        self.cache = open(self.dir.path(), &self.env);
    }

    fn corrupt(&mut self, module: &ModuleId) {
        let hex = module.to_string();
        // The module's pack ends with its wasm bytes: damage them.
        let path = self
            .dir
            .path()
            .join("packs")
            .join(&hex[..2])
            .join(format!("{hex}.lcpk"));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        // Compiled code is damaged too (the cache must catch it by its checksum).
        for artifact in files_named(&self.dir.path().join("artifacts"), &hex) {
            let mut bytes = fs::read(&artifact).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            fs::write(&artifact, bytes).unwrap();
        }
    }
}

#[test]
fn every_scenario_passes_against_the_native_host() {
    let failures = run_all(NativeHost::new);
    assert!(
        failures.is_empty(),
        "{} scenarios failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
