//! The versioned, checksummed record format shared by every store and both hosts.
//!
//! ```text
//! offset  size  field
//! 0       4     magic: b"LCMF" manifest, b"LCIX" index entry, b"LCBN" bundle
//! 4       4     format version, u32 little-endian
//! 8       8     payload length, u64 little-endian
//! 16      32    BLAKE3 of the payload
//! 48      ...   payload: bincode 2 (standard config) of the serde value
//! ```
//!
//! Decoding never panics: garbage, a truncated record, a flipped bit or a record from a
//! newer format each give a [`RecordError`]. The same bytes are written by the native
//! host's files and the web host's IndexedDB records, so a bundle exported by one host
//! imports into the other.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Manifest, ModuleId};

/// The record format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const HEADER_LEN: usize = 48;
/// Upper bound bincode may allocate while decoding one record.
const DECODE_LIMIT: usize = 1 << 30;

/// The kinds of record, each with its magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A [`Manifest`] (`LCMF`).
    Manifest,
    /// An [`IndexEntry`] (`LCIX`).
    IndexEntry,
    /// A [`Bundle`] (`LCBN`).
    Bundle,
    /// A host's plan hint (`LCPH`): what a complete plan of a target read, so that the
    /// next process can plan it without asking the store again. Its content is the
    /// host's business; the record only frames and checks it.
    PlanHint,
    /// A host's kept plan (`LCKP`): the plan a linkage that had loaded nothing got (a
    /// [`crate::KeptPlan`]), with what it depended on. Its content is the host's
    /// business. (`LCFP`, a whole [`crate::LoadPlan`], was its earlier form: such files
    /// fail the magic and are planned anew.)
    FreshPlan,
}

impl RecordKind {
    fn magic(self) -> [u8; 4] {
        match self {
            RecordKind::Manifest => *b"LCMF",
            RecordKind::IndexEntry => *b"LCIX",
            RecordKind::Bundle => *b"LCBN",
            RecordKind::PlanHint => *b"LCPH",
            RecordKind::FreshPlan => *b"LCKP",
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::Manifest => "manifest",
            RecordKind::IndexEntry => "index entry",
            RecordKind::Bundle => "bundle",
            RecordKind::PlanHint => "plan hint",
            RecordKind::FreshPlan => "kept plan",
        })
    }
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record is shorter than its header says (a torn or cut-off write).
    #[error("{kind} record is truncated: {found} bytes, expected {expected}")]
    Truncated {
        /// The kind of record expected.
        kind: RecordKind,
        /// Bytes the record needs.
        expected: u64,
        /// Bytes there are.
        found: u64,
    },
    /// The bytes are not a record of this kind (garbage, or another kind of record).
    #[error("not a {kind} record: magic bytes {found:02x?}")]
    BadMagic {
        /// The kind of record expected.
        kind: RecordKind,
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// The record was written by a newer (or unknown) format version.
    #[error("{kind} record has format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The kind of record.
        kind: RecordKind,
        /// The version in the record.
        found: u32,
        /// The version this build reads ([`FORMAT_VERSION`]).
        supported: u32,
    },
    /// The record is longer than its header says.
    #[error("{kind} record has {extra} trailing bytes")]
    TrailingBytes {
        /// The kind of record.
        kind: RecordKind,
        /// Bytes after the payload.
        extra: u64,
    },
    /// The payload does not match its BLAKE3 checksum: the record is corrupt.
    #[error("{kind} record checksum mismatch: the record is corrupt")]
    ChecksumMismatch {
        /// The kind of record.
        kind: RecordKind,
    },
    /// The payload passed its checksum but does not decode, or decodes into an
    /// inconsistent value.
    #[error("{kind} record is malformed: {reason}")]
    Malformed {
        /// The kind of record.
        kind: RecordKind,
        /// What is wrong.
        reason: String,
    },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Encodes `value` as a record of `kind`.
pub fn encode<T: Serialize>(kind: RecordKind, value: &T) -> Vec<u8> {
    frame(kind, &encode_payload(value))
}

/// A record of `kind` around a payload its host encoded itself (the framing and checks
/// of every record, without serde): read it back with [`unframe`].
pub fn frame(kind: RecordKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&kind.magic());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(payload).as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes a record of `kind`, checking magic, version, length and checksum first.
pub fn decode<T: DeserializeOwned>(kind: RecordKind, bytes: &[u8]) -> Result<T, RecordError> {
    decode_payload(kind, unframe(kind, bytes)?)
}

/// The payload of a record of `kind` ([`frame`]), once magic, version, length and
/// checksum are checked.
pub fn unframe(kind: RecordKind, bytes: &[u8]) -> Result<&[u8], RecordError> {
    let truncated = |expected: u64| RecordError::Truncated {
        kind,
        expected,
        found: bytes.len() as u64,
    };
    if bytes.len() < 4 {
        return Err(truncated(HEADER_LEN as u64));
    }
    let magic: [u8; 4] = bytes[0..4].try_into().unwrap();
    if magic != kind.magic() {
        return Err(RecordError::BadMagic { kind, found: magic });
    }
    if bytes.len() < HEADER_LEN {
        return Err(truncated(HEADER_LEN as u64));
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(RecordError::UnsupportedVersion {
            kind,
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let payload_len = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    let available = (bytes.len() - HEADER_LEN) as u64;
    if available < payload_len {
        return Err(truncated(HEADER_LEN as u64 + payload_len));
    }
    if available > payload_len {
        return Err(RecordError::TrailingBytes {
            kind,
            extra: available - payload_len,
        });
    }
    let payload = &bytes[HEADER_LEN..];
    if blake3::hash(payload).as_bytes() != &bytes[16..48] {
        return Err(RecordError::ChecksumMismatch { kind });
    }
    Ok(payload)
}

/// Encodes `value` as a bare payload: no header, no checksum. For a part of a record
/// (whose checksum covers it) that its reader may decode later, or not at all.
pub fn encode_payload<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, config()).expect("serde values of linkcache encode")
}

/// Decodes a bare payload ([`encode_payload`]) with the bounds of a record's; `kind` is
/// the record it is part of, for the error.
pub fn decode_payload<T: DeserializeOwned>(
    kind: RecordKind,
    payload: &[u8],
) -> Result<T, RecordError> {
    let malformed = |reason: String| RecordError::Malformed { kind, reason };
    let (value, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| malformed(alloc::format!("{e}")))?;
    if used != payload.len() {
        return Err(malformed(alloc::format!(
            "{} unused payload bytes",
            payload.len() - used
        )));
    }
    Ok(value)
}

impl Manifest {
    /// This manifest as a record.
    pub fn encode(&self) -> Vec<u8> {
        encode(RecordKind::Manifest, self)
    }

    /// Decodes a manifest record and checks it is internally consistent
    /// ([`Manifest::check`]).
    pub fn decode(bytes: &[u8]) -> Result<Manifest, RecordError> {
        let manifest: Manifest = decode(RecordKind::Manifest, bytes)?;
        manifest.check().map_err(|reason| RecordError::Malformed {
            kind: RecordKind::Manifest,
            reason,
        })?;
        Ok(manifest)
    }
}

/// One entry of the function index: `func_name` is defined by `module`, committed at
/// `committed_at` (a host clock reading; earlier wins among duplicates).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The func_name the module defines and exports.
    pub func_name: String,
    /// The module defining it.
    pub module: ModuleId,
    /// When the entry was committed (nanoseconds since the Unix epoch on the native
    /// host, a commit counter on the web host).
    pub committed_at: u64,
}

impl IndexEntry {
    /// This entry as a record.
    pub fn encode(&self) -> Vec<u8> {
        encode(RecordKind::IndexEntry, self)
    }

    /// Decodes an index entry record.
    pub fn decode(bytes: &[u8]) -> Result<IndexEntry, RecordError> {
        decode(RecordKind::IndexEntry, bytes)
    }
}

/// A portable set of modules: what `linkcache export` writes and both hosts import.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// The modules, in any order.
    pub modules: Vec<BundledModule>,
}

/// One module of a [`Bundle`]: its bytes and its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundledModule {
    /// The module's bytes.
    pub wasm: Vec<u8>,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Why a bundle could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error(transparent)]
    /// The bundle record itself is corrupt, truncated or of another version.
    Record(#[from] RecordError),
    #[error("bundled module #{index} does not match its manifest: {reason}")]
    /// A module's bytes do not match its manifest.
    Mismatch {
        /// The module's position in the bundle.
        index: usize,
        /// What does not match.
        reason: String,
    },
}

impl Bundle {
    /// This bundle as a record.
    pub fn encode(&self) -> Vec<u8> {
        encode(RecordKind::Bundle, self)
    }

    /// Decodes a bundle and checks every module's bytes against its manifest's id and
    /// length, and every manifest's consistency.
    pub fn decode(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let bundle: Bundle = decode(RecordKind::Bundle, bytes)?;
        for (index, module) in bundle.modules.iter().enumerate() {
            let mismatch = |reason: String| BundleError::Mismatch { index, reason };
            if !module.manifest.module.matches(&module.wasm)
                || module.manifest.byte_len != module.wasm.len() as u64
            {
                return Err(mismatch(
                    "bytes do not hash to the manifest's module id".into(),
                ));
            }
            module.manifest.check().map_err(mismatch)?;
        }
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> IndexEntry {
        IndexEntry {
            func_name: "math.fib".into(),
            module: ModuleId::of(b"x"),
            committed_at: 7,
        }
    }

    #[test]
    fn round_trips() {
        let bytes = sample().encode();
        assert_eq!(IndexEntry::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(IndexEntry::decode(&bytes[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                assert!(
                    IndexEntry::decode(&flipped).is_err(),
                    "flip of bit {bit} in byte {i} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn newer_format_is_reported_as_such() {
        let mut bytes = sample().encode();
        bytes[4..8].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        assert!(matches!(
            IndexEntry::decode(&bytes),
            Err(RecordError::UnsupportedVersion { found, .. }) if found == FORMAT_VERSION + 1
        ));
    }

    #[test]
    fn garbage_and_wrong_kind_are_rejected() {
        assert!(matches!(
            IndexEntry::decode(b"\0asm\x01\0\0\0 not a record at all, just bytes......"),
            Err(RecordError::BadMagic { .. })
        ));
        let bytes = sample().encode();
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(RecordError::BadMagic { .. })
        ));
    }

    #[test]
    fn checksummed_garbage_payload_is_malformed() {
        // A record whose checksum is right but whose payload is not a manifest.
        let bytes = encode(RecordKind::Manifest, &vec![0xffu8; 3]);
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(RecordError::Malformed { .. })
        ));
    }

    #[test]
    fn bundle_rejects_bytes_that_do_not_match_the_manifest() {
        let manifest = Manifest {
            module: ModuleId::of(b"real"),
            byte_len: 4,
            functions: vec![],
            imports: vec![],
            globals: vec![],
        };
        let bundle = Bundle {
            modules: vec![BundledModule {
                wasm: b"fake".to_vec(),
                manifest,
            }],
        };
        assert!(matches!(
            Bundle::decode(&bundle.encode()),
            Err(BundleError::Mismatch { index: 0, .. })
        ));
    }
}
