//! Forged bundles: lying lengths, huge counts, records that claim gigabytes, garbage
//! with a valid checksum (anyone can compute a BLAKE3). Each is a clear error or an
//! import of what it really holds, in bounded memory, and the cache still works.
//!
//! Memory is measured by this test binary's own allocator, which counts the bytes live
//! at the peak of each import; the file holds a single test so that nothing else
//! allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use linkcache_native::core::Bundle;
use linkcache_native::{Cache, Error};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let grown = new_size - layout.size();
            let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
            PEAK.fetch_max(live, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated at the peak of `f`, above what was live before it.
fn peak_of<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let result = f();
    (result, PEAK.load(Ordering::Relaxed) - before)
}

/// A bundle record around `payload`, with a correct header and checksum.
fn record(payload: &[u8]) -> Vec<u8> {
    let valid = Bundle::default().encode();
    let mut out = valid[..8].to_vec(); // magic and format version
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(payload).as_bytes());
    out.extend_from_slice(payload);
    out
}

/// bincode's variable-length integer for a u64 that needs eight bytes.
fn huge(n: u64) -> Vec<u8> {
    let mut out = vec![253];
    out.extend_from_slice(&n.to_le_bytes());
    out
}

/// xorshift64*, seeded: garbage that a failing run can repeat.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

const BOUND: usize = 16 << 20;

#[test]
fn forged_bundles_are_clear_errors_in_bounded_memory_and_the_cache_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let util = wat::parse_str(
        r#"(module (func (export "util.sq") (param i64) (result i64) (i64.mul (local.get 0) (local.get 0))))"#,
    )
    .unwrap();
    cache.add_module(&util).unwrap();

    let mut lying_length = cache.export_bundle(None).unwrap().encode();
    lying_length[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let mut a_module_of_4_gib = vec![1];
    a_module_of_4_gib.extend(huge(1 << 32));
    a_module_of_4_gib.extend_from_slice(b"\0asm");
    let mut a_name_of_a_terabyte = vec![1, 0];
    a_name_of_a_terabyte.extend([7u8; 32]); // module id
    a_name_of_a_terabyte.push(0); // byte_len
    a_name_of_a_terabyte.push(1); // one function
    a_name_of_a_terabyte.extend(huge(1 << 40)); // its name's length
    let forged: Vec<(&str, Vec<u8>)> = vec![
        ("a header that claims a terabyte", lying_length),
        ("2^60 modules", record(&huge(1 << 60))),
        ("a module that claims 4 GiB", record(&a_module_of_4_gib)),
        (
            "a function name of a terabyte",
            record(&a_name_of_a_terabyte),
        ),
        ("a truncated header", record(&[1, 2, 3])[..20].to_vec()),
    ];
    for (what, bytes) in &forged {
        let (result, peak) = peak_of(|| cache.import_bundle(bytes));
        let err = result.expect_err(what);
        assert!(matches!(err, Error::InvalidBundle(_)), "{what}: {err}");
        assert!(peak < BOUND, "{what}: {peak} bytes at the peak");
    }

    // Garbage with a valid checksum: whatever it decodes to is checked like any bundle.
    let mut state = 0x9e37_79b9_7f4a_7c15;
    let mut worst = 0;
    for _ in 0..300 {
        let len = (next(&mut state) % 96) as usize + 1;
        let mut payload: Vec<u8> = (0..len).map(|_| next(&mut state) as u8).collect();
        // Often a huge count up front, where a naive decoder would preallocate.
        if next(&mut state).is_multiple_of(2) {
            payload.splice(0..0, huge(next(&mut state) >> 4));
        }
        let (result, peak) = peak_of(|| cache.import_bundle(&record(&payload)));
        worst = worst.max(peak);
        if let Ok(ids) = result {
            assert!(ids.is_empty(), "random bytes made a module: {ids:?}");
        }
    }
    assert!(worst < BOUND, "{worst} bytes at the worst peak");
    eprintln!("worst peak over 300 forged payloads: {worst} bytes");

    // Nothing of it landed, and the cache works.
    assert_eq!(cache.dir().modules().unwrap().len(), 1);
    assert!(cache.dir().verify(|_| {}).unwrap().is_empty());
    let square = cache.target::<(i64,), i64>("util.sq").unwrap();
    assert_eq!(square.call(&cache, (12,)).unwrap(), 144);
}
