//! The large real-world modules: the `regex` crate compiled to wasm by the bench itself
//! (bench/payload), and sql.js's `sql-wasm.wasm` and esbuild-wasm's `esbuild.wasm`
//! fetched from the npm registry. Nothing built or fetched here is committed; all land
//! under the target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmparser::{Parser, Payload, TypeRef};
use wasmtime::error::Context as _;
use wasmtime::{FuncType, Linker, Val, ValType};
use wasmtime::{Result, bail};

/// One large module and the function the benchmarks target in it.
#[derive(Clone, Debug)]
pub struct LargeModule {
    /// A short name for tables.
    pub name: String,
    /// Where its bytes are.
    pub wasm: PathBuf,
    /// An exported function to target.
    pub func: String,
}

/// Builds bench/payload for wasm32 with cargo (a minute the first time, then a no-op).
pub fn regex_payload(target_dir: &Path) -> Result<LargeModule> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/payload/Cargo.toml");
    let out_dir = target_dir.join("payload");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-unknown-unknown",
            "--manifest-path",
            manifest,
            "--target-dir",
        ])
        .arg(&out_dir)
        // A cargo run of the bench sets variables meant for the outer build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .context("running cargo to build bench/payload")?;
    if !status.success() {
        bail!(
            "building bench/payload for wasm32 failed ({status}); is the target installed \
             (`rustup target add wasm32-unknown-unknown`)?"
        );
    }
    Ok(LargeModule {
        name: "regex (bench/payload)".into(),
        wasm: out_dir.join("wasm32-unknown-unknown/release/linkcache_bench_payload.wasm"),
        func: "count_matches".into(),
    })
}

/// Fetches sql.js 1.x with npm into `<target>/bench-npm` (once) and returns its
/// `sql-wasm.wasm`.
pub fn sqljs(target_dir: &Path) -> Result<LargeModule> {
    let wasm = npm_file(target_dir, "sql.js@1", "sql.js", "dist/sql-wasm.wasm")?;
    let bytes = std::fs::read(&wasm)?;
    let func = exported_functions(&bytes)?
        .into_iter()
        .next()
        .context("sql-wasm.wasm exports no function")?;
    let name = match npm_version(target_dir, "sql.js") {
        Some(version) => format!("sql.js {version} sql-wasm.wasm"),
        None => "sql.js sql-wasm.wasm".into(),
    };
    Ok(LargeModule { name, wasm, func })
}

/// Fetches esbuild-wasm 0.28 with npm into `<target>/bench-npm` (once) and returns its
/// `esbuild.wasm` (about 14 MB, compiled by Go for `GOOS=js`; its exports are the Go
/// runtime's `run`, `resume` and `getsp`). The benchmarks only analyze and validate it.
pub fn esbuild(target_dir: &Path) -> Result<LargeModule> {
    let wasm = npm_file(
        target_dir,
        "esbuild-wasm@0.28",
        "esbuild-wasm",
        "esbuild.wasm",
    )?;
    let bytes = std::fs::read(&wasm)?;
    let func = exported_functions(&bytes)?
        .into_iter()
        .next()
        .context("esbuild.wasm exports no function")?;
    let name = match npm_version(target_dir, "esbuild-wasm") {
        Some(version) => format!("esbuild-wasm {version} esbuild.wasm (Go)"),
        None => "esbuild-wasm esbuild.wasm (Go)".into(),
    };
    Ok(LargeModule { name, wasm, func })
}

/// `file` of the npm package `package`, installed as `spec` with npm into
/// `<target>/bench-npm` when it is not there yet (from the npm registry only).
fn npm_file(target_dir: &Path, spec: &str, package: &str, file: &str) -> Result<PathBuf> {
    let prefix = target_dir.join("bench-npm");
    let path = prefix.join("node_modules").join(package).join(file);
    if !path.exists() {
        std::fs::create_dir_all(&prefix)?;
        let status = Command::new("npm")
            .args(["install", spec, "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .status()
            .with_context(|| format!("running npm to fetch {spec}"))?;
        if !status.success() || !path.exists() {
            bail!("`npm install {spec}` failed ({status}) or has no {file}");
        }
    }
    Ok(path)
}

/// The version of an npm package fetched into `<target>/bench-npm`, for the report.
fn npm_version(target_dir: &Path, package: &str) -> Option<String> {
    let text = std::fs::read_to_string(
        target_dir
            .join("bench-npm/node_modules")
            .join(package)
            .join("package.json"),
    )
    .ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["version"].as_str().map(str::to_string)
}

/// The names of the functions a module exports, in order.
pub fn exported_functions(wasm: &[u8]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::ExportSection(reader) = payload? {
            for export in reader {
                let export = export?;
                if export.kind == wasmparser::ExternalKind::Func {
                    names.push(export.name.to_string());
                }
            }
        }
    }
    Ok(names)
}

/// The function imports of a module, as stubs an embedder would supply: each returns
/// zeros (the benchmarks measure loading, not running).
#[derive(Clone, Debug, Default)]
pub struct ImportStubs {
    funcs: Vec<(String, String, Vec<ValType>, Vec<ValType>)>,
}

impl ImportStubs {
    /// Reads the function imports of `wasm`; other kinds of import are an error.
    pub fn of(wasm: &[u8]) -> Result<ImportStubs> {
        let mut types = Vec::new();
        let mut stubs = ImportStubs::default();
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::TypeSection(reader) => {
                    for ty in reader.into_iter_err_on_gc_types() {
                        let ty = ty?;
                        let convert = |tys: &[wasmparser::ValType]| -> Result<Vec<ValType>> {
                            tys.iter().map(|t| val_type(*t)).collect()
                        };
                        types.push((convert(ty.params())?, convert(ty.results())?));
                    }
                }
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        let import = import?;
                        let TypeRef::Func(index) = import.ty else {
                            bail!(
                                "import `{}` `{}` is not a function; the stubs supply functions only",
                                import.module,
                                import.name
                            );
                        };
                        let (params, results) = types[index as usize].clone();
                        stubs.funcs.push((
                            import.module.to_string(),
                            import.name.to_string(),
                            params,
                            results,
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(stubs)
    }

    /// Defines every stub in `linker`.
    pub fn define<T: 'static>(&self, linker: &mut Linker<T>) -> wasmtime::Result<()> {
        for (module, name, params, results) in &self.funcs {
            let ty = FuncType::new(linker.engine(), params.clone(), results.clone());
            let zeros: Vec<Val> = results.iter().map(zero).collect();
            linker.func_new(module, name, ty, move |_, _, results| {
                results.clone_from_slice(&zeros);
                Ok(())
            })?;
        }
        Ok(())
    }
}

fn zero(ty: &ValType) -> Val {
    match ty {
        ValType::I64 => Val::I64(0),
        ValType::F32 => Val::F32(0),
        ValType::F64 => Val::F64(0),
        ValType::V128 => Val::V128(0u128.into()),
        _ => Val::I32(0),
    }
}

fn val_type(ty: wasmparser::ValType) -> Result<ValType> {
    Ok(match ty {
        wasmparser::ValType::I32 => ValType::I32,
        wasmparser::ValType::I64 => ValType::I64,
        wasmparser::ValType::F32 => ValType::F32,
        wasmparser::ValType::F64 => ValType::F64,
        wasmparser::ValType::V128 => ValType::V128,
        other => bail!("stubs do not support the type {other:?}"),
    })
}
