//! Getting a compiled module for a plan, and the conversions between core and wasmtime
//! types.
//!
//! A planned module comes from the process's registry, else from its precompiled
//! artifact when that is valid for this engine, else from its wasm bytes (compiled, and
//! the artifact stored for the next process). Instantiating and linking is
//! [`store_linkage`](crate::store_linkage)'s job.

use linkcache_core::{FuncSig, Manifest, ModuleId, ValType, Value};
use wasmtime::{Engine, ExternType, FuncType, Module, V128, Val};

use crate::cache::Shared;
use crate::dir::ArtifactLookup;

/// The compiled module `id`: held by this process already, or deserialized from a
/// checked artifact, or compiled from its checked bytes (storing the artifact for the
/// next process). Either way it is checked against its manifest once, then shared by
/// every store of the process.
pub(crate) fn module(
    shared: &Shared,
    id: &ModuleId,
    manifest: &Manifest,
) -> Result<Module, String> {
    let (module, _) = shared
        .registry
        .module(id, || load_module(shared, id, manifest))?;
    Ok(module)
}

fn load_module(shared: &Shared, id: &ModuleId, manifest: &Manifest) -> Result<Module, String> {
    let _span = tracing::debug_span!("linkcache.load_module", module = %id).entered();
    if shared.precompiled {
        match shared
            .dir
            .artifact(&shared.engine_key, id)
            .map_err(|e| e.to_string())?
        {
            ArtifactLookup::Found { file, path, len } => {
                // SAFETY: `file` is the artifact opened once without following symbolic
                // links, below directories owned by this user (or root) and writable by
                // nobody else, itself owned by this user (or root) and writable by nobody
                // else, and its XXH3-128 checksum was computed through this very handle
                // just now; it was written by `Module::serialize` of an engine with the
                // same compatibility hash (its directory), and files are only ever
                // replaced by rename, never modified in place.
                match unsafe { Module::deserialize_open_file(&shared.engine, file) } {
                    Ok(module) => {
                        check_shape(&module, manifest)?;
                        shared.count(|stats| {
                            stats.artifacts_deserialized += 1;
                            stats.bytes_read += len;
                        });
                        return Ok(module);
                    }
                    Err(error) => {
                        tracing::warn!(module = %id, path = %path.display(), %error,
                            "linkcache: precompiled artifact rejected, compiling instead");
                        shared.dir.remove_artifact(&path);
                        shared.count(|stats| stats.artifacts_rejected += 1);
                    }
                }
            }
            ArtifactLookup::Rejected(reason) => {
                tracing::warn!(module = %id, %reason,
                    "linkcache: precompiled artifact rejected, compiling instead");
                shared.count(|stats| stats.artifacts_rejected += 1);
            }
            ArtifactLookup::Absent => {}
        }
    }
    let bytes = shared.dir.module_bytes(id).map_err(|e| e.to_string())??;
    shared.count(|stats| stats.bytes_read += bytes.len() as u64);
    manifest.check_against(&bytes)?;
    let module =
        Module::new(&shared.engine, &bytes).map_err(|e| format!("compilation failed: {e:#}"))?;
    check_shape(&module, manifest)?;
    shared.count(|stats| stats.modules_compiled += 1);
    if shared.precompiled && shared.dir.is_writable() {
        let written = module
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|artifact| {
                shared
                    .dir
                    .store_artifact(&shared.engine_key, id, &artifact)
                    .map_err(|e| e.to_string())
            });
        match written {
            Ok(Some(_)) => {
                shared.count(|stats| stats.artifacts_written += 1);
                #[cfg(feature = "remote")]
                if let Some(remote) = shared.remote.as_ref().filter(|r| r.artifacts) {
                    remote.enqueue(crate::remote::Job::Artifact(*id));
                }
            }
            // gc removed the module meanwhile: nothing to keep an artifact for.
            Ok(None) => {}
            // A full disk costs the next process a compilation, nothing more.
            Err(error) => {
                tracing::warn!(module = %id, %error, "linkcache: could not store the precompiled artifact");
                shared.count(|stats| stats.artifact_write_errors += 1);
            }
        }
    }
    Ok(module)
}

/// Checks the compiled module's imports and exports against its manifest (cheap; runs
/// for artifacts too, whose bytes are not re-analyzed).
fn check_shape(module: &Module, manifest: &Manifest) -> Result<(), String> {
    let imports: Vec<_> = module.imports().collect();
    if imports.len() != manifest.imports.len() {
        return Err(format!(
            "it has {} imports but its manifest lists {}",
            imports.len(),
            manifest.imports.len()
        ));
    }
    for (actual, listed) in imports.iter().zip(&manifest.imports) {
        if actual.module() != listed.namespace || actual.name() != listed.name {
            return Err(format!(
                "its import `{}` `{}` is not the manifest's `{}` `{}`",
                actual.module(),
                actual.name(),
                listed.namespace,
                listed.name
            ));
        }
    }
    for function in &manifest.functions {
        match module.get_export(&function.name) {
            Some(ExternType::Func(ty))
                if signature_of(&ty).as_ref() == Some(&function.signature) => {}
            _ => {
                return Err(format!(
                    "it does not export `{}` with signature {}",
                    function.name, function.signature
                ));
            }
        }
    }
    Ok(())
}

/// A wasmtime function type for a core signature.
pub(crate) fn func_type(engine: &Engine, signature: &FuncSig) -> FuncType {
    FuncType::new(
        engine,
        signature.params.iter().map(|t| val_type(*t)),
        signature.results.iter().map(|t| val_type(*t)),
    )
}

/// The core signature of a wasmtime function type, if linkcache supports its types.
pub(crate) fn signature_of(ty: &FuncType) -> Option<FuncSig> {
    let convert = |t: wasmtime::ValType| -> Option<ValType> {
        Some(match t {
            wasmtime::ValType::I32 => ValType::I32,
            wasmtime::ValType::I64 => ValType::I64,
            wasmtime::ValType::F32 => ValType::F32,
            wasmtime::ValType::F64 => ValType::F64,
            wasmtime::ValType::V128 => ValType::V128,
            wasmtime::ValType::Ref(r) if r.matches(&wasmtime::RefType::FUNCREF) => ValType::FuncRef,
            wasmtime::ValType::Ref(r) if r.matches(&wasmtime::RefType::EXTERNREF) => {
                ValType::ExternRef
            }
            wasmtime::ValType::Ref(_) => return None,
        })
    };
    Some(FuncSig {
        params: ty.params().map(convert).collect::<Option<_>>()?,
        results: ty.results().map(convert).collect::<Option<_>>()?,
    })
}

pub(crate) fn val_type(ty: ValType) -> wasmtime::ValType {
    match ty {
        ValType::I32 => wasmtime::ValType::I32,
        ValType::I64 => wasmtime::ValType::I64,
        ValType::F32 => wasmtime::ValType::F32,
        ValType::F64 => wasmtime::ValType::F64,
        ValType::V128 => wasmtime::ValType::V128,
        ValType::FuncRef => wasmtime::ValType::FUNCREF,
        ValType::ExternRef => wasmtime::ValType::EXTERNREF,
    }
}

/// A core value as a wasmtime value.
pub fn to_val(value: Value) -> Val {
    match value {
        Value::I32(x) => Val::I32(x),
        Value::I64(x) => Val::I64(x),
        Value::F32(bits) => Val::F32(bits),
        Value::F64(bits) => Val::F64(bits),
        Value::V128(x) => Val::V128(V128::from(x)),
    }
}

/// A wasmtime value as a core value (numeric values only).
pub fn from_val(val: &Val) -> Option<Value> {
    Some(match val {
        Val::I32(x) => Value::I32(*x),
        Val::I64(x) => Value::I64(*x),
        Val::F32(bits) => Value::F32(*bits),
        Val::F64(bits) => Value::F64(*bits),
        Val::V128(x) => Value::V128(x.as_u128()),
        _ => return None,
    })
}
