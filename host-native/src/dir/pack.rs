//! Packs: modules' manifests and bytes in one file, so that committing a module creates
//! one file whatever its number of functions, and committing a batch creates one file
//! whatever its number of modules (hard-linked under each module's name).
//!
//! ```text
//! header (24 bytes): b"LCPK" | version u32 | modules N u32 | 0 u32 |
//!                    first 8 bytes of BLAKE3(the directory)
//! directory (N × 64 bytes): module id [32] | manifest offset u64 | manifest length u64 |
//!                    wasm offset u64 | wasm length u64
//! contents: each module's manifest record (`linkcache_core::record`, checksummed) and
//!           wasm bytes (checked against their BLAKE3, the module id)
//! ```
//!
//! All integers little-endian. `packs/<ab>/<id>.lcpk` is a name of the pack holding
//! module `id`: a module committed alone has a pack of its own, the modules of a batch
//! share one file under as many names. A planner reads the pack's first block (header,
//! directory and, for small modules, the manifest: one read); a load reads the bytes.
//! Each part is checked on its own, so a damaged pack is a broken module, never a wrong
//! one.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use linkcache_core::{Manifest, ModuleId};

use crate::error::{Error, IoContext};

const MAGIC: [u8; 4] = *b"LCPK";
const VERSION: u32 = 2;
const HEADER_LEN: u64 = 24;
const ENTRY_LEN: u64 = 64;
/// What the first read of a pack takes: the header, a small directory and a small
/// manifest.
const FIRST_READ: u64 = 8 << 10;

/// Why a module is skipped when its pack is not there (never committed, or removed by
/// gc meanwhile): not damage, so not remembered as broken.
pub(crate) const PACK_MISSING: &str = "its pack (manifest and wasm bytes) is missing";

/// A pack holding `modules` (manifest and bytes each).
pub(super) fn encode(modules: &[(&Manifest, &[u8])]) -> Vec<u8> {
    let records: Vec<Vec<u8>> = modules.iter().map(|(m, _)| m.encode()).collect();
    let mut offset = HEADER_LEN + ENTRY_LEN * modules.len() as u64;
    let mut directory = Vec::with_capacity((ENTRY_LEN as usize) * modules.len());
    for ((manifest, wasm), record) in modules.iter().zip(&records) {
        directory.extend_from_slice(manifest.module.as_bytes());
        for len in [record.len() as u64, wasm.len() as u64] {
            directory.extend_from_slice(&offset.to_le_bytes());
            directory.extend_from_slice(&len.to_le_bytes());
            offset += len;
        }
    }
    let mut out = Vec::with_capacity(offset as usize);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(modules.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&blake3::hash(&directory).as_bytes()[..8]);
    out.extend_from_slice(&directory);
    for ((_, wasm), record) in modules.iter().zip(&records) {
        out.extend_from_slice(record);
        out.extend_from_slice(wasm);
    }
    out
}

/// A pack opened for one module, its directory checked.
#[derive(Debug)]
pub(super) struct OpenPack {
    file: File,
    /// The pack's first bytes (header, directory, often the manifest).
    head: Vec<u8>,
    manifest: Range<u64>,
    wasm: Range<u64>,
}

impl OpenPack {
    /// Opens the pack at `path` for module `id`: `Ok(None)` when there is none,
    /// `Ok(Some(Err(reason)))` when it is damaged or does not hold `id`.
    pub(super) fn open(
        path: &Path,
        id: &ModuleId,
    ) -> Result<Option<Result<OpenPack, String>>, Error> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let len = file.metadata().at(path)?.len();
        let mut head = vec![0u8; len.min(FIRST_READ) as usize];
        file.read_exact_at(&mut head, 0).at(path)?;
        Ok(Some(match locate(&file, len, &mut head, id).at(path)? {
            Ok((manifest, wasm)) => Ok(OpenPack {
                file,
                head,
                manifest,
                wasm,
            }),
            Err(reason) => Err(reason),
        }))
    }

    /// The manifest, checked against its checksum and against `id`.
    pub(super) fn manifest(&self, id: &ModuleId) -> io::Result<Result<Manifest, String>> {
        let record = self.read(&self.manifest)?;
        Ok(match Manifest::decode(&record) {
            Ok(manifest) if manifest.module == *id => Ok(manifest),
            Ok(manifest) => Err(format!(
                "its manifest describes another module ({})",
                manifest.module.short()
            )),
            Err(e) => Err(format!("its manifest is corrupt: {e}")),
        })
    }

    /// The wasm bytes, checked against `id`.
    pub(super) fn wasm(&self, id: &ModuleId) -> io::Result<Result<Vec<u8>, String>> {
        let bytes = self.read(&self.wasm)?;
        Ok(if id.matches(&bytes) {
            Ok(bytes)
        } else {
            Err(format!(
                "its wasm bytes are corrupt ({} bytes that do not hash to the module id)",
                bytes.len()
            ))
        })
    }

    fn read(&self, range: &Range<u64>) -> io::Result<Vec<u8>> {
        if range.end <= self.head.len() as u64 {
            return Ok(self.head[range.start as usize..range.end as usize].to_vec());
        }
        let mut bytes = vec![0u8; (range.end - range.start) as usize];
        self.file.read_exact_at(&mut bytes, range.start)?;
        Ok(bytes)
    }
}

/// Checks the header and directory of a pack of `len` bytes whose first bytes are in
/// `head` (read further when the directory is longer), and finds `id`'s manifest and
/// wasm ranges in it.
#[allow(clippy::type_complexity)]
fn locate(
    file: &File,
    len: u64,
    head: &mut Vec<u8>,
    id: &ModuleId,
) -> io::Result<Result<(Range<u64>, Range<u64>), String>> {
    if len < HEADER_LEN {
        return Ok(Err(format!(
            "its pack is truncated ({len} bytes, shorter than its header)"
        )));
    }
    if head[0..4] != MAGIC {
        return Ok(Err(format!(
            "its pack is damaged: magic bytes {:02x?}",
            &head[0..4]
        )));
    }
    let version = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    if version != VERSION {
        return Ok(Err(format!(
            "its pack has format version {version}, this build reads {VERSION}"
        )));
    }
    if head[12..16] != [0; 4] {
        return Ok(Err("its pack's header is damaged".into()));
    }
    let count = u64::from(u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")));
    let directory_end = HEADER_LEN + count * ENTRY_LEN;
    if directory_end > len {
        return Ok(Err(format!(
            "its pack is damaged: a directory of {count} modules in {len} bytes"
        )));
    }
    if directory_end > head.len() as u64 {
        let start = head.len();
        head.resize(directory_end as usize, 0);
        file.read_exact_at(&mut head[start..], start as u64)?;
    }
    let directory = &head[HEADER_LEN as usize..directory_end as usize];
    if blake3::hash(directory).as_bytes()[..8] != head[16..24] {
        return Ok(Err("its pack's directory fails its checksum".into()));
    }
    let u64_at = |entry: &[u8], at: usize| {
        u64::from_le_bytes(entry[at..at + 8].try_into().expect("8 bytes"))
    };
    let Some(entry) = directory
        .chunks_exact(ENTRY_LEN as usize)
        .find(|entry| entry[..32] == id.as_bytes()[..])
    else {
        return Ok(Err("its pack does not hold it".into()));
    };
    let range = |offset: u64, length: u64| {
        offset
            .checked_add(length)
            .filter(|&end| offset >= directory_end && end <= len)
            .map(|end| offset..end)
    };
    match (
        range(u64_at(entry, 32), u64_at(entry, 40)),
        range(u64_at(entry, 48), u64_at(entry, 56)),
    ) {
        (Some(manifest), Some(wasm)) => Ok(Ok((manifest, wasm))),
        _ => Ok(Err(
            "its pack is damaged: its directory points past its end".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkcache_core::analyze;

    fn module(value: i64) -> (Vec<u8>, Manifest) {
        let wasm = wat::parse_str(format!(
            r#"(module (func (export "p.f{value}") (result i64) (i64.const {value})))"#
        ))
        .unwrap();
        let manifest = analyze(&wasm).unwrap();
        (wasm, manifest)
    }

    fn written(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lcpk");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    fn open(path: &Path, id: &ModuleId) -> Result<OpenPack, String> {
        OpenPack::open(path, id).unwrap().unwrap()
    }

    #[test]
    fn every_module_of_a_pack_reads_back_checked() {
        let modules: Vec<(Vec<u8>, Manifest)> = (0..3).map(module).collect();
        let parts: Vec<(&Manifest, &[u8])> =
            modules.iter().map(|(w, m)| (m, w.as_slice())).collect();
        let (_dir, path) = written(&encode(&parts));
        for (wasm, manifest) in &modules {
            let pack = open(&path, &manifest.module).unwrap();
            assert_eq!(pack.manifest(&manifest.module).unwrap().unwrap(), *manifest);
            assert_eq!(pack.wasm(&manifest.module).unwrap().unwrap(), *wasm);
        }
        let other = module(9).1.module;
        assert!(open(&path, &other).unwrap_err().contains("does not hold"));
    }

    #[test]
    fn damage_anywhere_is_an_error_for_the_modules_it_touches_only() {
        let modules: Vec<(Vec<u8>, Manifest)> = (0..2).map(module).collect();
        let parts: Vec<(&Manifest, &[u8])> =
            modules.iter().map(|(w, m)| (m, w.as_slice())).collect();
        let bytes = encode(&parts);
        let directory_end = (HEADER_LEN + 2 * ENTRY_LEN) as usize;
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            let (_dir, path) = written(&damaged);
            for (index, (_, manifest)) in modules.iter().enumerate() {
                let id = &manifest.module;
                let whole = match open(&path, id) {
                    Err(_) => false,
                    Ok(pack) => {
                        pack.manifest(id).unwrap().is_ok() && pack.wasm(id).unwrap().is_ok()
                    }
                };
                // The header and directory concern both modules; the contents one each.
                let first_contents =
                    u64::from_le_bytes(bytes[24 + 64 + 32..24 + 64 + 40].try_into().unwrap())
                        as usize;
                let touches = at < directory_end
                    || (index == 0 && at < first_contents)
                    || (index == 1 && at >= first_contents);
                assert_eq!(whole, !touches, "byte {at}, module {index}");
            }
        }
    }

    #[test]
    fn a_lying_count_or_offset_is_an_error_not_an_allocation() {
        let (wasm, manifest) = module(1);
        let bytes = encode(&[(&manifest, &wasm)]);
        let mut lying = bytes.clone();
        lying[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let (_dir, path) = written(&lying);
        assert!(
            open(&path, &manifest.module)
                .unwrap_err()
                .contains("directory of")
        );

        // A directory that points past the end, with a checksum to match.
        let mut lying = bytes.clone();
        let entry = HEADER_LEN as usize;
        lying[entry + 56..entry + 64].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
        let check = blake3::hash(&lying[entry..entry + ENTRY_LEN as usize]);
        lying[16..24].copy_from_slice(&check.as_bytes()[..8]);
        let (_dir, path) = written(&lying);
        assert!(
            open(&path, &manifest.module)
                .unwrap_err()
                .contains("past its end")
        );

        let (_dir, path) = written(&bytes[..10]);
        assert!(
            open(&path, &manifest.module)
                .unwrap_err()
                .contains("truncated")
        );
    }
}
