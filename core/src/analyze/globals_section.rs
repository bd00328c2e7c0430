//! The `linkcache.globals` custom section, where a compiler writes the global
//! definitions its module was compiled against: encoding, appending to a module, parsing.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use alloc::{format, vec};

use super::AnalysisError;
use crate::manifest::GLOBALS_SECTION;

/// Encodes global definitions as the payload of a `linkcache.globals` custom section:
/// a LEB128 u32 count, then for each entry the name and the definition, each as a
/// LEB128 length followed by the bytes (the name in UTF-8).
///
/// A compiler that writes this section into its modules need not pass definitions to
/// [`analyze_with`].
///
/// [`analyze_with`]: super::analyze_with
pub fn encode_globals_section<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Vec<u8> {
    let entries: Vec<_> = entries.into_iter().collect();
    let mut out = Vec::new();
    leb128(&mut out, entries.len() as u64);
    for (name, definition) in entries {
        leb128(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        leb128(&mut out, definition.len() as u64);
        out.extend_from_slice(definition);
    }
    out
}

/// Appends a `linkcache.globals` custom section with these definitions to a module's
/// bytes (a custom section may come last): what a compiler emits so that the cache
/// finds the definitions its globals were compiled against.
pub fn append_globals_section<'a>(
    wasm: &mut Vec<u8>,
    entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) {
    let payload = encode_globals_section(entries);
    let name = GLOBALS_SECTION.as_bytes();
    let mut body = Vec::with_capacity(name.len() + payload.len() + 5);
    leb128(&mut body, name.len() as u64);
    body.extend_from_slice(name);
    body.extend_from_slice(&payload);
    wasm.push(0); // custom section id
    leb128(wasm, body.len() as u64);
    wasm.extend_from_slice(&body);
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Parses the payload of a `linkcache.globals` custom section.
pub fn parse_globals_section(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, AnalysisError> {
    let bad = |reason: &str| AnalysisError::BadGlobalsSection {
        reason: reason.into(),
    };
    let mut reader = wasmparser::BinaryReader::new(data, 0);
    let count = reader
        .read_var_u32()
        .map_err(|_| bad("truncated entry count"))?;
    let mut entries = vec![];
    for i in 0..count {
        let name = reader
            .read_string()
            .map_err(|_| bad(&format!("entry {i}: bad or truncated name")))?;
        let len = reader
            .read_var_u32()
            .map_err(|_| bad(&format!("entry {i}: truncated definition length")))?;
        let definition = reader
            .read_bytes(len as usize)
            .map_err(|_| bad(&format!("entry {i} (`{name}`): truncated definition")))?;
        entries.push((name.to_string(), definition.to_vec()));
    }
    if !reader.eof() {
        return Err(bad("trailing bytes after the last entry"));
    }
    Ok(entries)
}
