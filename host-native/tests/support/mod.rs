//! Helpers shared by the tests that run real processes: the `linkcache` binary, and this
//! test binary re-executed as a child that runs one ignored test.

#![allow(dead_code)] // each test file uses a part

pub mod remote;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `linkcache --dir <dir> <args>` to completion.
pub fn linkcache(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_linkcache"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("the linkcache binary runs")
}

/// A process's standard output, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A process's standard error, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// This test binary again, running only the ignored test `test` (a child's role is
/// passed in its environment). Its output is libtest's around the test's own.
pub fn child(test: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command.args([
        "--ignored",
        "--exact",
        test,
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

/// Waits until `path` exists; panics after `timeout`.
pub fn wait_for(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear within {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The module of a WebAssembly text.
pub fn wasm(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("test WAT parses")
}

/// `util.sq(x) = x*x`.
pub fn util() -> Vec<u8> {
    wasm(
        r#"(module (func (export "util.sq") (param i64) (result i64)
        (i64.mul (local.get 0) (local.get 0))))"#,
    )
}

/// Where the cache at `root` keeps the pack (manifest record and wasm bytes) of `id`.
pub fn pack_file(root: &Path, id: &linkcache_native::core::ModuleId) -> std::path::PathBuf {
    let hex = id.to_string();
    root.join("packs")
        .join(&hex[..2])
        .join(format!("{hex}.lcpk"))
}

/// The parts of `id` in its pack: (the pack's header and directory, its manifest record,
/// its wasm bytes), read in the pack format (`dir/pack.rs`) independently of the
/// library.
pub fn pack_parts(
    root: &Path,
    id: &linkcache_native::core::ModuleId,
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let bytes = std::fs::read(pack_file(root, id)).unwrap();
    let count = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let directory_end = 24 + 64 * count;
    let entry = bytes[24..directory_end]
        .chunks_exact(64)
        .find(|entry| entry[..32] == id.as_bytes()[..])
        .expect("the pack holds the module");
    let at = |i: usize| u64::from_le_bytes(entry[i..i + 8].try_into().unwrap()) as usize;
    (
        bytes[..directory_end].to_vec(),
        bytes[at(32)..at(32) + at(40)].to_vec(),
        bytes[at(48)..at(48) + at(56)].to_vec(),
    )
}

/// Rewrites the pack of `id` (in place, as damage would) as a pack of that module alone
/// with another manifest record or other wasm bytes.
pub fn rewrite_pack(
    root: &Path,
    id: &linkcache_native::core::ModuleId,
    manifest: Option<&[u8]>,
    wasm: Option<&[u8]>,
) {
    let (_, old_manifest, old_wasm) = pack_parts(root, id);
    let manifest = manifest.unwrap_or(&old_manifest);
    let wasm = wasm.unwrap_or(&old_wasm);
    let mut directory = id.as_bytes().to_vec();
    let mut offset = 24 + 64u64;
    for len in [manifest.len() as u64, wasm.len() as u64] {
        directory.extend_from_slice(&offset.to_le_bytes());
        directory.extend_from_slice(&len.to_le_bytes());
        offset += len;
    }
    let mut bytes = b"LCPK".to_vec();
    bytes.extend_from_slice(&2u32.to_le_bytes());
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&blake3::hash(&directory).as_bytes()[..8]);
    bytes.extend_from_slice(&directory);
    bytes.extend_from_slice(manifest);
    bytes.extend_from_slice(wasm);
    std::fs::write(pack_file(root, id), bytes).unwrap();
}

/// Flips byte `at` of the wasm bytes in the pack of `id`.
pub fn flip_wasm_byte(root: &Path, id: &linkcache_native::core::ModuleId, at: usize) {
    let (_, _, mut wasm) = pack_parts(root, id);
    let at = at.min(wasm.len() - 1);
    wasm[at] ^= 0x5a;
    rewrite_pack(root, id, None, Some(&wasm));
}

/// Flips byte `at` of the manifest record in the pack of `id`.
pub fn flip_manifest_byte(root: &Path, id: &linkcache_native::core::ModuleId, at: usize) {
    let (_, mut manifest, _) = pack_parts(root, id);
    let at = at.min(manifest.len() - 1);
    manifest[at] ^= 0x5a;
    rewrite_pack(root, id, Some(&manifest), None);
}

/// The index segments of the cache at `root` (one per store that committed).
pub fn index_segments(root: &Path) -> Vec<std::path::PathBuf> {
    files_under(&root.join("index").join("log"))
}

/// Every file under `root`, recursively, sorted (none when it is absent).
pub fn files_under(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// The precompiled artifacts of the cache at `root`.
pub fn artifacts(root: &Path) -> Vec<std::path::PathBuf> {
    files_under(&root.join("artifacts"))
}

/// Flips one byte of a file (at `at`, or its last byte).
pub fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// This test binary again as a child running `test` with `RACE_DIR` and `RACE_ROLE`
/// set, its output captured.
pub fn spawn_role(test: &str, dir: &Path, role: &str) -> std::process::Child {
    child(test)
        .env("RACE_DIR", dir)
        .env("RACE_ROLE", role)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Replaces every index segment and the table of the cache at `root` by one segment
/// holding `records` (module, [(function, committed_at)]), written in the segment
/// format (`dir/index/segment.rs`) independently of the library: for tests that need an
/// index the library would not write (a clock that ran ahead, an interrupted commit).
pub fn replace_index(
    root: &Path,
    records: &[(linkcache_native::core::ModuleId, Vec<(&str, u64)>)],
) {
    let log = root.join("index").join("log");
    for segment in index_segments(root) {
        std::fs::remove_file(segment).unwrap();
    }
    let _ = std::fs::remove_file(root.join("index").join("table.lcit"));
    let mut bytes = Vec::new();
    for (module, entries) in records {
        let mut payload = module.as_bytes().to_vec();
        payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (name, time) in entries {
            payload.extend_from_slice(&time.to_le_bytes());
            payload.extend_from_slice(&(name.len() as u32).to_le_bytes());
            payload.extend_from_slice(name.as_bytes());
        }
        bytes.extend_from_slice(b"LCSG");
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&blake3::hash(&payload).as_bytes()[..16]);
        bytes.extend_from_slice(&payload);
    }
    std::fs::write(log.join("0-by-hand.lcil"), bytes).unwrap();
    move_index_stamp(root);
}

/// After a test changed the index by hand: moves the index stamp on, as every writer
/// does, so that readers read the index again.
pub fn move_index_stamp(root: &Path) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(root.join("index-stamp"))
        .unwrap()
        .write_all(b".")
        .unwrap();
}
