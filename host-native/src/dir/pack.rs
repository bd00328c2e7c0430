//! A module's pack: its manifest and its bytes in one file, so that committing a module
//! creates one file whatever its number of functions.
//!
//! ```text
//! offset  size  field
//! 0       4     magic: b"LCPK"
//! 4       4     pack format version, u32 little-endian
//! 8       8     manifest record length M, u64 little-endian
//! 16      M     the manifest record (`linkcache_core::record`, checksummed)
//! 16+M    ...   the module's wasm bytes (checked against their BLAKE3, the module id)
//! ```
//!
//! A planner reads the header and the manifest (two reads, whatever the module's size);
//! a load reads the bytes after them. Each part is checked on its own, so a damaged
//! pack is a broken module, never a wrong one.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use linkcache_core::{Manifest, ModuleId};

use crate::error::{Error, IoContext};

const MAGIC: [u8; 4] = *b"LCPK";
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 16;

/// Why a module is skipped when its pack is not there (never committed, or removed by
/// gc meanwhile): not damage, so not remembered as broken.
pub(crate) const PACK_MISSING: &str = "its pack (manifest and wasm bytes) is missing";

/// The pack of a module.
pub(super) fn encode(manifest: &Manifest, wasm: &[u8]) -> Vec<u8> {
    let record = manifest.encode();
    let mut out = Vec::with_capacity(HEADER_LEN as usize + record.len() + wasm.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(record.len() as u64).to_le_bytes());
    out.extend_from_slice(&record);
    out.extend_from_slice(wasm);
    out
}

/// An open pack whose header was read and checked against the file's length.
pub(super) struct OpenPack {
    file: File,
    manifest_len: u64,
    file_len: u64,
}

impl OpenPack {
    /// Opens the pack at `path`: `Ok(None)` when there is none, `Ok(Some(Err(reason)))`
    /// when its header is damaged.
    pub(super) fn open(path: &Path) -> Result<Option<Result<OpenPack, String>>, Error> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let file_len = file.metadata().at(path)?.len();
        let mut header = [0u8; HEADER_LEN as usize];
        if file_len < HEADER_LEN {
            return Ok(Some(Err(format!(
                "its pack is truncated ({file_len} bytes, shorter than its header)"
            ))));
        }
        file.read_exact_at(&mut header, 0).at(path)?;
        if header[0..4] != MAGIC {
            return Ok(Some(Err(format!(
                "its pack is damaged: magic bytes {:02x?}",
                &header[0..4]
            ))));
        }
        let version = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if version != VERSION {
            return Ok(Some(Err(format!(
                "its pack has format version {version}, this build reads {VERSION}"
            ))));
        }
        let manifest_len = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if manifest_len > file_len - HEADER_LEN {
            return Ok(Some(Err(format!(
                "its pack is damaged: a manifest of {manifest_len} bytes in a file of {file_len}"
            ))));
        }
        Ok(Some(Ok(OpenPack {
            file,
            manifest_len,
            file_len,
        })))
    }

    /// The manifest, checked against its checksum and against `id`.
    pub(super) fn manifest(&self, id: &ModuleId) -> io::Result<Result<Manifest, String>> {
        let mut record = vec![0u8; self.manifest_len as usize];
        self.file.read_exact_at(&mut record, HEADER_LEN)?;
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
        let start = HEADER_LEN + self.manifest_len;
        let mut bytes = vec![0u8; (self.file_len - start) as usize];
        self.file.read_exact_at(&mut bytes, start)?;
        Ok(if id.matches(&bytes) {
            Ok(bytes)
        } else {
            Err(format!(
                "its wasm bytes are corrupt ({} bytes that do not hash to the module id)",
                bytes.len()
            ))
        })
    }
}
