//! The envelope a precompiled artifact travels in through the remote: which engine and
//! module it is for, its checksum, and (with a shared key) a signature.
//!
//! ```text
//! "LCA1" | flags u8 (bit 0: signed) | 3 zero bytes | engine key length u16 | engine key
//! | module id (32) | payload length u64 | XXH3-128 of the payload (16) | MAC (32, zeros
//! when unsigned) | payload
//! ```
//! All integers little-endian. The MAC is BLAKE3 keyed with the shared key over
//! everything before it but the flags, so a signature cannot be moved to another
//! engine, module or payload. A fetched envelope is opened (every field checked) before
//! its payload is written to the local directory as any local artifact.

use linkcache_core::ModuleId;

const MAGIC: &[u8; 4] = b"LCA1";
const SIGNED: u8 = 1;

/// Wraps `payload`, the artifact of `id` for the engine `engine_key`.
pub(crate) fn seal(
    engine_key: &str,
    id: &ModuleId,
    payload: &[u8],
    key: Option<&[u8; 32]>,
) -> Vec<u8> {
    let sum = xxhash_rust::xxh3::xxh3_128(payload);
    let mut out = Vec::with_capacity(payload.len() + 100 + engine_key.len());
    out.extend_from_slice(MAGIC);
    out.push(if key.is_some() { SIGNED } else { 0 });
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&(engine_key.len() as u16).to_le_bytes());
    out.extend_from_slice(engine_key.as_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&sum.to_le_bytes());
    let mac = key.map_or([0; 32], |key| {
        mac(key, engine_key, id, payload.len() as u64, sum)
    });
    out.extend_from_slice(&mac);
    out.extend_from_slice(payload);
    out
}

/// The payload of `envelope` if it is an artifact of `id` for `engine_key`, whole, and
/// signed with `key` when one is given; else why not.
pub(crate) fn open<'a>(
    envelope: &'a [u8],
    engine_key: &str,
    id: &ModuleId,
    key: Option<&[u8; 32]>,
) -> Result<&'a [u8], String> {
    let mut rest = envelope;
    let mut take = |n: usize| -> Result<&'a [u8], String> {
        if rest.len() < n {
            return Err("the artifact envelope is truncated".into());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    if take(4)? != MAGIC {
        return Err("not an artifact envelope".into());
    }
    let header = take(4)?;
    let flags = header[0];
    if flags & !SIGNED != 0 || header[1..] != [0, 0, 0] {
        return Err("the artifact envelope has unknown flags".into());
    }
    let key_len = u16::from_le_bytes(take(2)?.try_into().expect("2 bytes")) as usize;
    if take(key_len)? != engine_key.as_bytes() {
        return Err("the artifact is for another engine configuration".into());
    }
    if take(32)? != id.as_bytes() {
        return Err("the artifact is for another module".into());
    }
    let len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
    let sum = u128::from_le_bytes(take(16)?.try_into().expect("16 bytes"));
    let stored_mac: [u8; 32] = take(32)?.try_into().expect("32 bytes");
    let payload = rest;
    if payload.len() as u64 != len {
        return Err("the artifact's length is not the envelope's".into());
    }
    if xxhash_rust::xxh3::xxh3_128(payload) != sum {
        return Err("the artifact failed its checksum".into());
    }
    if let Some(key) = key {
        if flags & SIGNED == 0 {
            return Err("the artifact is not signed".into());
        }
        let expected = blake3::Hash::from(mac(key, engine_key, id, len, sum));
        // blake3::Hash compares in constant time.
        if expected != blake3::Hash::from(stored_mac) {
            return Err("the artifact's signature does not verify".into());
        }
    }
    Ok(payload)
}

fn mac(key: &[u8; 32], engine_key: &str, id: &ModuleId, len: u64, sum: u128) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(MAGIC);
    hasher.update(&(engine_key.len() as u16).to_le_bytes());
    hasher.update(engine_key.as_bytes());
    hasher.update(id.as_bytes());
    hasher.update(&len.to_le_bytes());
    hasher.update(&sum.to_le_bytes());
    *hasher.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ModuleId {
        ModuleId::of(b"module")
    }

    #[test]
    fn sealed_artifacts_open_and_tampering_is_caught() {
        let key = [7u8; 32];
        let payload = b"precompiled code".to_vec();
        for key in [None, Some(&key)] {
            let envelope = seal("wasmtime-48-x", &id(), &payload, key);
            assert_eq!(
                open(&envelope, "wasmtime-48-x", &id(), key).unwrap(),
                payload
            );
            assert!(open(&envelope, "wasmtime-48-y", &id(), key).is_err());
            assert!(open(&envelope, "wasmtime-48-x", &ModuleId::of(b"other"), key).is_err());
            for at in [0, 5, 20, envelope.len() - 1] {
                let mut flipped = envelope.clone();
                flipped[at] ^= 1;
                assert!(
                    open(&flipped, "wasmtime-48-x", &id(), key).is_err(),
                    "flip at {at}"
                );
            }
            for len in 0..envelope.len() {
                assert!(open(&envelope[..len], "wasmtime-48-x", &id(), key).is_err());
            }
        }
    }

    #[test]
    fn a_key_rejects_unsigned_and_wrongly_signed_artifacts() {
        let key = [1u8; 32];
        let unsigned = seal("e", &id(), b"code", None);
        assert_eq!(
            open(&unsigned, "e", &id(), Some(&key)).unwrap_err(),
            "the artifact is not signed"
        );
        let other = seal("e", &id(), b"code", Some(&[2u8; 32]));
        assert_eq!(
            open(&other, "e", &id(), Some(&key)).unwrap_err(),
            "the artifact's signature does not verify"
        );
        // A forger who recomputes the checksum of a new payload cannot sign it.
        let mut forged = seal("e", &id(), b"evil", None);
        forged[4] = SIGNED;
        assert!(open(&forged, "e", &id(), Some(&key)).is_err());
    }
}
