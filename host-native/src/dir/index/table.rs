//! The index table: the compacted function index, sorted by the hash of the function
//! name, that a reader searches by bisection without reading it whole.
//!
//! ```text
//! header (40 bytes): b"LCIT" | version u32 | slots u64 | names length u64 |
//!                    first 8 bytes of BLAKE3(fences) |
//!                    first 8 bytes of BLAKE3(the 32 bytes before)
//! slots (72 bytes each), sorted by (name hash, committed_at, module):
//!                    name hash [16] (first 16 bytes of BLAKE3(name)) | module id [32] |
//!                    committed_at u64 | name offset u32 | name length u32 |
//!                    first 8 bytes of BLAKE3(the 64 bytes before)
//! names: the function names, UTF-8, where the slots point
//! fences: the name hash of every 64th slot (slot 0, 64, 128, ...), 16 bytes each
//! ```
//!
//! All integers little-endian. A reader reads the fences once (a 64th of the slots'
//! hashes); a lookup then reads one block of 64 slots (rarely two). Each slot it returns
//! is checked on its own, so a damaged slot is one missing entry (reported by `verify`,
//! written again by the next add of its module); damaged fences are not used (lookups
//! bisect the slots instead), and a damaged header is an empty table.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use linkcache_core::{Candidate, ModuleId, Name};

use crate::error::{Error, IoContext};

const MAGIC: [u8; 4] = *b"LCIT";
const VERSION: u32 = 2;
const HEADER_LEN: u64 = 40;
const SLOT_LEN: u64 = 72;
/// Slots per fence.
const BLOCK: u64 = 64;

/// The first 16 bytes of the BLAKE3 of a function name: what the table is sorted by.
pub(crate) type NameHash = [u8; 16];

pub(crate) fn name_hash(name: &str) -> NameHash {
    blake3::hash(name.as_bytes()).as_bytes()[..16]
        .try_into()
        .expect("16 bytes")
}

/// One entry of the index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub(crate) name: Name,
    pub(crate) module: ModuleId,
    pub(crate) committed_at: u64,
}

/// The bytes of a table holding `entries` (any order; one per name and module).
pub(crate) fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut sorted: Vec<(NameHash, &Entry)> =
        entries.iter().map(|e| (name_hash(&e.name), e)).collect();
    sorted.sort_by(|a, b| {
        (a.0, a.1.committed_at, a.1.module).cmp(&(b.0, b.1.committed_at, b.1.module))
    });
    let names_len: usize = entries.iter().map(|e| e.name.len()).sum();
    let fences: Vec<u8> = sorted
        .iter()
        .step_by(BLOCK as usize)
        .flat_map(|(hash, _)| *hash)
        .collect();
    let mut out = Vec::with_capacity(
        HEADER_LEN as usize + SLOT_LEN as usize * entries.len() + names_len + fences.len(),
    );
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    out.extend_from_slice(&(names_len as u64).to_le_bytes());
    out.extend_from_slice(&blake3::hash(&fences).as_bytes()[..8]);
    let check = blake3::hash(&out[..32]);
    out.extend_from_slice(&check.as_bytes()[..8]);
    let mut name_offset = 0u32;
    for (hash, entry) in &sorted {
        let start = out.len();
        out.extend_from_slice(hash);
        out.extend_from_slice(entry.module.as_bytes());
        out.extend_from_slice(&entry.committed_at.to_le_bytes());
        out.extend_from_slice(&name_offset.to_le_bytes());
        out.extend_from_slice(&(entry.name.len() as u32).to_le_bytes());
        let check = blake3::hash(&out[start..]);
        out.extend_from_slice(&check.as_bytes()[..8]);
        name_offset += entry.name.len() as u32;
    }
    for (_, entry) in &sorted {
        out.extend_from_slice(entry.name.as_bytes());
    }
    out.extend_from_slice(&fences);
    out
}

/// An open table whose header was checked.
#[derive(Debug)]
pub(crate) struct Table {
    file: File,
    slots: u64,
    names_len: u64,
    /// The hash of every [`BLOCK`]th slot; `None` when they failed their checksum.
    fences: Option<Vec<NameHash>>,
}

/// A damaged slot: its index and what is wrong.
pub(crate) type SlotDamage = (u64, String);

/// One slot as read.
struct Slot {
    hash: NameHash,
    module: ModuleId,
    committed_at: u64,
    name_offset: u64,
    name_len: u64,
}

impl Table {
    /// Opens the table at `path`: `Ok(None)` without one, `Ok(Some(Err(reason)))` when
    /// its header is damaged.
    pub(crate) fn open(path: &Path) -> Result<Option<Result<Table, String>>, Error> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let len = file.metadata().at(path)?.len();
        if len < HEADER_LEN {
            return Ok(Some(Err(format!(
                "the index table is truncated ({len} bytes)"
            ))));
        }
        let mut header = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0).at(path)?;
        if header[..4] != MAGIC
            || u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) != VERSION
            || blake3::hash(&header[..32]).as_bytes()[..8] != header[32..40]
        {
            return Ok(Some(Err("the index table's header is damaged".into())));
        }
        let slots = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let names_len = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
        let fences_len = slots.div_ceil(BLOCK) * 16;
        let expected = slots
            .checked_mul(SLOT_LEN)
            .and_then(|s| s.checked_add(HEADER_LEN))
            .and_then(|s| s.checked_add(names_len))
            .and_then(|s| s.checked_add(fences_len));
        if expected != Some(len) {
            return Ok(Some(Err(format!(
                "the index table is {len} bytes, its header says {slots} slots and {names_len} bytes of names"
            ))));
        }
        let mut fence_bytes = vec![0u8; fences_len as usize];
        file.read_exact_at(&mut fence_bytes, len - fences_len)
            .at(path)?;
        let fences = (blake3::hash(&fence_bytes).as_bytes()[..8] == header[24..32]).then(|| {
            fence_bytes
                .chunks_exact(16)
                .map(|hash| hash.try_into().expect("16 bytes"))
                .collect()
        });
        Ok(Some(Ok(Table {
            file,
            slots,
            names_len,
            fences,
        })))
    }

    /// Whether the fences failed their checksum (lookups bisect instead).
    pub(crate) fn fences_damaged(&self) -> bool {
        self.fences.is_none()
    }

    /// Appends the table's entries for the function `name` to `found`, each slot
    /// checked; returns whether a damaged slot was met (and skipped).
    pub(crate) fn candidates(&self, name: &str, found: &mut Vec<Candidate>) -> io::Result<bool> {
        let wanted = name_hash(name);
        let first = match &self.fences {
            // The block whose first slot is the last one below `wanted`: the name's slots
            // start in it or at the start of the next one.
            Some(fences) => {
                let below = fences.partition_point(|fence| *fence < wanted);
                below.saturating_sub(1) as u64 * BLOCK
            }
            None => self.bisect(&wanted)?,
        };
        let mut damaged = false;
        let mut block = Vec::new();
        let mut index = first;
        'blocks: while index < self.slots {
            let count = (self.slots - index).min(BLOCK);
            block.resize((count * SLOT_LEN) as usize, 0);
            self.file
                .read_exact_at(&mut block, HEADER_LEN + index * SLOT_LEN)?;
            for bytes in block.chunks_exact(SLOT_LEN as usize) {
                match slot_from(bytes) {
                    Ok(slot) if slot.hash < wanted => {}
                    Ok(slot) if slot.hash == wanted => found.push(Candidate {
                        module: slot.module,
                        committed_at: slot.committed_at,
                    }),
                    Ok(_) => break 'blocks,
                    // A damaged slot: skip it, look at the next.
                    Err(_) => damaged = true,
                }
            }
            index += count;
        }
        Ok(damaged || self.fences.is_none())
    }

    /// The first slot whose hash is not below `wanted`, by bisection (one read per step).
    fn bisect(&self, wanted: &NameHash) -> io::Result<u64> {
        let (mut low, mut high) = (0, self.slots);
        while low < high {
            let middle = low + (high - low) / 2;
            let mut hash = [0u8; 16];
            self.file
                .read_exact_at(&mut hash, HEADER_LEN + middle * SLOT_LEN)?;
            if hash < *wanted {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(low)
    }

    /// Every entry, in table order, and the damage found.
    pub(crate) fn entries(&self) -> io::Result<(Vec<Entry>, Vec<SlotDamage>)> {
        let mut entries = Vec::with_capacity(self.slots as usize);
        let mut damaged = Vec::new();
        let mut names = vec![0u8; self.names_len as usize];
        self.file
            .read_exact_at(&mut names, HEADER_LEN + self.slots * SLOT_LEN)?;
        let mut previous: Option<NameHash> = None;
        for index in 0..self.slots {
            let slot = match self.slot(index)? {
                Ok(slot) => slot,
                Err(reason) => {
                    damaged.push((index, reason));
                    continue;
                }
            };
            let name = slot
                .name_offset
                .checked_add(slot.name_len)
                .filter(|&end| end <= self.names_len)
                .and_then(|end| {
                    std::str::from_utf8(&names[slot.name_offset as usize..end as usize]).ok()
                })
                .filter(|name| name_hash(name) == slot.hash);
            let Some(name) = name else {
                damaged.push((index, "its name does not match its hash".into()));
                continue;
            };
            if previous.is_some_and(|p| p > slot.hash) {
                damaged.push((index, "the slots are out of order".into()));
            }
            previous = Some(slot.hash);
            entries.push(Entry {
                name: Name::from(name),
                module: slot.module,
                committed_at: slot.committed_at,
            });
        }
        Ok((entries, damaged))
    }

    /// Slot `index`, checked against its checksum.
    fn slot(&self, index: u64) -> io::Result<Result<Slot, String>> {
        let mut bytes = [0u8; SLOT_LEN as usize];
        self.file
            .read_exact_at(&mut bytes, HEADER_LEN + index * SLOT_LEN)?;
        Ok(slot_from(&bytes))
    }

    /// How many slots the table holds.
    pub(crate) fn len(&self) -> u64 {
        self.slots
    }
}

/// A slot's bytes, checked against its checksum.
fn slot_from(bytes: &[u8]) -> Result<Slot, String> {
    if blake3::hash(&bytes[..64]).as_bytes()[..8] != bytes[64..72] {
        return Err("a slot fails its checksum".into());
    }
    Ok(Slot {
        hash: bytes[..16].try_into().expect("16 bytes"),
        module: ModuleId::from_bytes(bytes[16..48].try_into().expect("32 bytes")),
        committed_at: u64::from_le_bytes(bytes[48..56].try_into().expect("8 bytes")),
        name_offset: u32::from_le_bytes(bytes[56..60].try_into().expect("4 bytes")) as u64,
        name_len: u32::from_le_bytes(bytes[60..64].try_into().expect("4 bytes")) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(count: u8) -> Vec<Entry> {
        (0..count)
            .flat_map(|m| {
                (0..3).map(move |f| Entry {
                    name: Name::from(format!("f{}", (m + f) % 7)),
                    module: ModuleId::from_bytes([m; 32]),
                    committed_at: 100 - m as u64,
                })
            })
            .collect()
    }

    fn written(entries: &[Entry]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table.lcit");
        std::fs::write(&path, encode(entries)).unwrap();
        (dir, path)
    }

    #[test]
    fn lookups_find_every_entry_of_a_name() {
        // 300 slots in 5 blocks: each name's slots span blocks.
        let all = entries(100);
        let (_dir, path) = written(&all);
        let table = Table::open(&path).unwrap().unwrap().unwrap();
        assert_eq!(table.len(), all.len() as u64);
        for f in 0..8 {
            let name = format!("f{f}");
            let mut found = Vec::new();
            assert!(!table.candidates(&name, &mut found).unwrap());
            found.sort_by_key(|c| c.module);
            let mut expected: Vec<Candidate> = all
                .iter()
                .filter(|e| *e.name == *name)
                .map(|e| Candidate {
                    module: e.module,
                    committed_at: e.committed_at,
                })
                .collect();
            expected.sort_by_key(|c| c.module);
            assert_eq!(found, expected, "{name}");
        }
        let (mut listed, damaged) = table.entries().unwrap();
        assert!(damaged.is_empty());
        listed.sort();
        let mut all = all;
        all.sort();
        assert_eq!(listed, all);
    }

    #[test]
    fn a_damaged_slot_is_one_missing_entry() {
        let all = entries(10);
        let (_dir, path) = written(&all);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(HEADER_LEN + 4 * SLOT_LEN + 20) as usize] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let table = Table::open(&path).unwrap().unwrap().unwrap();
        let (listed, damaged) = table.entries().unwrap();
        assert_eq!(listed.len(), all.len() - 1);
        assert_eq!(damaged.len(), 1);
        assert_eq!(damaged[0].0, 4);
    }

    #[test]
    fn lookups_bisect_when_the_fences_are_damaged_and_say_so() {
        let all = entries(100); // 300 slots, 5 fences
        let (_dir, path) = written(&all);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let table = Table::open(&path).unwrap().unwrap().unwrap();
        assert!(table.fences_damaged());
        for f in 0..7 {
            let name = format!("f{f}");
            let mut found = Vec::new();
            assert!(
                table.candidates(&name, &mut found).unwrap(),
                "damage is reported"
            );
            let expected = all.iter().filter(|e| *e.name == *name).count();
            assert_eq!(found.len(), expected, "{name}");
        }
    }

    #[test]
    fn a_lying_header_is_an_error_not_an_allocation() {
        let (_dir, path) = written(&entries(3));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert!(Table::open(&path).unwrap().unwrap().is_err());
        bytes.truncate(10);
        std::fs::write(&path, &bytes).unwrap();
        assert!(Table::open(&path).unwrap().unwrap().is_err());
    }
}
