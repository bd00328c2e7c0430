//! [`ModuleId`]: the content address of a module, the BLAKE3 hash of its wasm bytes.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// The identity of a cached module: the BLAKE3 hash of its wasm bytes.
///
/// Two modules with the same bytes are the same module, so adding a module twice is
/// idempotent, and a reader can check that stored bytes are the bytes that were added.
/// Displayed and parsed as 64 lowercase hex digits; [`ModuleId::short`] gives the first
/// 12 for humans.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModuleId([u8; 32]);

impl ModuleId {
    /// The id of the given wasm bytes.
    pub fn of(wasm: &[u8]) -> ModuleId {
        ModuleId(*blake3::hash(wasm).as_bytes())
    }

    /// Wraps a raw 32-byte hash.
    pub const fn from_bytes(bytes: [u8; 32]) -> ModuleId {
        ModuleId(bytes)
    }

    /// The raw 32-byte hash.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `wasm` hashes to this id, i.e. the bytes are intact.
    pub fn matches(&self, wasm: &[u8]) -> bool {
        ModuleId::of(wasm) == *self
    }

    /// The first 12 hex digits, enough to tell modules apart in logs and tables.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(12);
        s
    }
}

impl fmt::Display for ModuleId {
    /// Lowercase hex, 64 digits. Hosts build file and key names from it on every load,
    /// so it is written in one piece rather than one formatting call per byte.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 64];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        f.write_str(core::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleId({})", self.short())
    }
}

/// The error of parsing a [`ModuleId`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a module id: expected 64 hex digits, got {input:?}")]
pub struct ParseModuleIdError {
    input: String,
}

impl FromStr for ModuleId {
    type Err = ParseModuleIdError;

    fn from_str(s: &str) -> Result<ModuleId, ParseModuleIdError> {
        let error = || ParseModuleIdError { input: s.into() };
        if s.len() != 64 || !s.is_ascii() {
            return Err(error());
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| error())?;
        }
        Ok(ModuleId(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = ModuleId::of(b"\0asm\x01\0\0\0");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<ModuleId>().unwrap(), id);
        assert_eq!(id.short(), text[..12]);
        assert_eq!(text, blake3::hash(b"\0asm\x01\0\0\0").to_hex().as_str());
    }

    #[test]
    fn parse_rejects_wrong_length_and_non_hex() {
        assert!("abc".parse::<ModuleId>().is_err());
        assert!("zz".repeat(32).parse::<ModuleId>().is_err());
        assert!("é".repeat(32).parse::<ModuleId>().is_err());
    }

    #[test]
    fn matches_detects_changed_bytes() {
        let id = ModuleId::of(b"abc");
        assert!(id.matches(b"abc"));
        assert!(!id.matches(b"abd"));
    }
}
