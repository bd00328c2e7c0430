//! Index segments: append-only logs of index records, one per writing `DirStore`.
//!
//! A commit appends one record per module (its function names and their commit
//! times) to its writer's segment with one `write`, so indexing a module of any number
//! of functions dirties one file that already exists.
//!
//! ```text
//! record:  b"LCSG" | payload length u32 | first 16 bytes of BLAKE3(payload) | payload
//! payload: module id [32] | entries u32 | entries × (committed_at u64 | name length u32 | name)
//! ```
//!
//! All integers little-endian. A reader parses complete records from where it stopped
//! last time. An incomplete record at the end (a write in progress, a writer killed
//! mid-write) is left for the next read; a damaged record is skipped (reported by
//! `verify`), so one flipped bit costs the entries of one module, which the next add of
//! that module writes again.

use linkcache_core::{ModuleId, Name};

const MAGIC: [u8; 4] = *b"LCSG";
const FRAME_LEN: usize = 4 + 4 + 16;
/// A record's payload is at most this long (a module of a million functions with long
/// names stays far below): a length above it is damage.
const MAX_PAYLOAD: usize = 256 << 20;

/// One module's entries, as a record holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentRecord {
    pub(crate) module: ModuleId,
    pub(crate) entries: Vec<(Name, u64)>,
}

/// The bytes of one record.
pub(crate) fn encode(module: &ModuleId, entries: &[(&str, u64)]) -> Vec<u8> {
    let names: usize = entries.iter().map(|(name, _)| name.len() + 12).sum();
    let mut payload = Vec::with_capacity(32 + 4 + names);
    payload.extend_from_slice(module.as_bytes());
    payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (name, committed_at) in entries {
        payload.extend_from_slice(&committed_at.to_le_bytes());
        payload.extend_from_slice(&(name.len() as u32).to_le_bytes());
        payload.extend_from_slice(name.as_bytes());
    }
    let mut record = Vec::with_capacity(FRAME_LEN + payload.len());
    record.extend_from_slice(&MAGIC);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&blake3::hash(&payload).as_bytes()[..16]);
    record.extend_from_slice(&payload);
    record
}

/// What parsing a segment's bytes found.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) records: Vec<SegmentRecord>,
    /// Where the next read starts: after the last complete record (or skipped damage).
    pub(crate) end: usize,
    /// Damaged records skipped: (offset, reason).
    pub(crate) damaged: Vec<(usize, String)>,
}

/// How the bytes at one offset look.
enum AtOffset {
    Record(SegmentRecord, usize),
    /// Not all there yet (or a torn end).
    Incomplete,
    Damaged(String, End),
}

/// Where a damaged record ends.
enum End {
    /// Its checksum held: its length is right.
    Sound(usize),
    /// Its checksum failed: its length may be damaged too.
    Claimed(usize),
    /// Its frame is not a record's.
    Unknown,
}

/// Parses the records in `bytes` (a segment's content from some record boundary on).
pub(crate) fn parse(bytes: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut offset = 0;
    while offset < bytes.len() {
        match at(bytes, offset) {
            AtOffset::Record(record, next) => {
                parsed.records.push(record);
                offset = next;
            }
            AtOffset::Incomplete => {
                // A record still being written, or a damaged length: damage only when a
                // sound record follows.
                let Some(resume) = next_sound(bytes, offset) else {
                    break;
                };
                parsed
                    .damaged
                    .push((offset, "a record's length runs past the next record".into()));
                offset = resume;
            }
            AtOffset::Damaged(reason, end) => {
                // A record whose checksum held but whose payload is malformed has a
                // sound length: skip it. Otherwise resume at the next sound record, or
                // after the damaged one when it is all there (a record being written
                // is never all there before its last byte is: the file's length grows
                // behind the data written).
                let resume = match end {
                    End::Sound(end) => Some(end),
                    End::Claimed(end) => next_sound(bytes, offset).or(Some(end)),
                    End::Unknown => next_sound(bytes, offset),
                };
                let Some(resume) = resume else {
                    break;
                };
                parsed.damaged.push((offset, reason));
                offset = resume;
            }
        }
    }
    parsed.end = offset;
    parsed
}

/// The offset of the first sound record after `offset`.
fn next_sound(bytes: &[u8], offset: usize) -> Option<usize> {
    (offset + 1..bytes.len())
        .find(|&p| bytes[p..].starts_with(&MAGIC) && matches!(at(bytes, p), AtOffset::Record(..)))
}

fn at(bytes: &[u8], offset: usize) -> AtOffset {
    let rest = &bytes[offset..];
    if rest.len() < FRAME_LEN {
        return if MAGIC.starts_with(&rest[..rest.len().min(4)]) {
            AtOffset::Incomplete
        } else {
            AtOffset::Damaged("not a record: bad magic bytes".into(), End::Unknown)
        };
    }
    if rest[0..4] != MAGIC {
        return AtOffset::Damaged("not a record: bad magic bytes".into(), End::Unknown);
    }
    let len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return AtOffset::Damaged(format!("a record claims {len} bytes"), End::Unknown);
    }
    if rest.len() < FRAME_LEN + len {
        return AtOffset::Incomplete;
    }
    let payload = &rest[FRAME_LEN..FRAME_LEN + len];
    let next = offset + FRAME_LEN + len;
    if blake3::hash(payload).as_bytes()[..16] != rest[8..24] {
        return AtOffset::Damaged("a record fails its checksum".into(), End::Claimed(next));
    }
    match decode_payload(payload) {
        Ok(record) => AtOffset::Record(record, next),
        Err(reason) => AtOffset::Damaged(reason, End::Sound(next)),
    }
}

/// Decodes a payload whose checksum held; never allocates more than its length.
fn decode_payload(payload: &[u8]) -> Result<SegmentRecord, String> {
    let mut reader = Reader(payload);
    let module = ModuleId::from_bytes(reader.take(32)?.try_into().expect("32 bytes"));
    let count = reader.u32()? as usize;
    // Each entry takes at least 12 bytes: a count beyond that is a lie.
    if count > reader.0.len() / 12 {
        return Err(format!("a record claims {count} entries"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let committed_at = reader.u64()?;
        let len = reader.u32()? as usize;
        let name = std::str::from_utf8(reader.take(len)?)
            .map_err(|_| "a function name is not UTF-8".to_string())?;
        entries.push((Name::from(name), committed_at));
    }
    if !reader.0.is_empty() {
        return Err(format!("{} bytes after a record's entries", reader.0.len()));
    }
    Ok(SegmentRecord { module, entries })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if self.0.len() < len {
            return Err("a record's entries run past its end".into());
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ModuleId {
        ModuleId::from_bytes([n; 32])
    }

    fn two_records() -> (Vec<u8>, usize) {
        let mut bytes = encode(&id(1), &[("a", 5), ("b", 5)]);
        let first = bytes.len();
        bytes.extend(encode(&id(2), &[("c", 7)]));
        (bytes, first)
    }

    #[test]
    fn records_round_trip() {
        let (bytes, _) = two_records();
        let parsed = parse(&bytes);
        assert_eq!(parsed.end, bytes.len());
        assert!(parsed.damaged.is_empty());
        assert_eq!(
            parsed.records,
            vec![
                SegmentRecord {
                    module: id(1),
                    entries: vec![("a".into(), 5), ("b".into(), 5)],
                },
                SegmentRecord {
                    module: id(2),
                    entries: vec![("c".into(), 7)],
                },
            ]
        );
    }

    #[test]
    fn an_incomplete_end_is_left_for_later() {
        let (bytes, first) = two_records();
        for cut in first..bytes.len() {
            let parsed = parse(&bytes[..cut]);
            assert_eq!(parsed.records.len(), 1, "cut at {cut}");
            assert_eq!(parsed.end, first, "cut at {cut}");
            assert!(parsed.damaged.is_empty());
        }
    }

    #[test]
    fn a_flipped_byte_costs_one_record() {
        let (bytes, first) = two_records();
        for at in 0..first {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            let parsed = parse(&damaged);
            assert_eq!(parsed.end, bytes.len(), "flip at {at}");
            assert_eq!(parsed.records.len(), 1, "flip at {at}");
            assert_eq!(parsed.records[0].module, id(2));
            assert_eq!(parsed.damaged.len(), 1);
        }
    }

    #[test]
    fn a_damaged_last_record_is_skipped_when_it_is_all_there() {
        let (bytes, first) = two_records();
        let mut damaged = bytes.clone();
        let last = damaged.len() - 2;
        damaged[last] ^= 1;
        let parsed = parse(&damaged);
        assert_eq!(parsed.records.len(), 1);
        assert_eq!(parsed.damaged.len(), 1);
        assert_eq!(parsed.damaged[0].0, first);
        assert_eq!(parsed.end, bytes.len());
    }

    #[test]
    fn a_lying_count_allocates_nothing() {
        let mut payload = id(3).as_bytes().to_vec();
        payload.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut record = MAGIC.to_vec();
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&blake3::hash(&payload).as_bytes()[..16]);
        record.extend_from_slice(&payload);
        let parsed = parse(&record);
        assert!(parsed.records.is_empty());
        assert_eq!(parsed.damaged.len(), 1);
        assert!(
            parsed.damaged[0].1.contains("claims"),
            "{:?}",
            parsed.damaged
        );
        assert_eq!(parsed.end, record.len());
    }
}
