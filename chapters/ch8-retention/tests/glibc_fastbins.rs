//! Scenario 4, the other case: a burst of small objects under glibc's
//! malloc, freed with nothing allocated after it, stays in RSS anyway.
//!
//! glibc returns memory on its own only when a freed chunk merges into the
//! top of the heap. A 64-byte object's chunk is small enough for the
//! fastbins (up to 128 bytes by default on 64-bit Linux): freed, it waits
//! there unmerged, beside the few the thread's tcache holds, so the top
//! cannot shrink past it. `malloc_trim` consolidates the fastbins and then
//! returns the pages.
//!
//! A file of its own: RSS and glibc's statistics are process-wide, and
//! glibc raises its mmap threshold when a large mapped block is freed, so a
//! burst freed earlier in the same process would change this one.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

#[path = "../src/burst.rs"]
mod burst;

use burst::{
    BURST_OBJECT_SIZE, BURST_OBJECTS, burst_of_small_objects, glibc_fastbin_bytes, rss_bytes,
    trim_glibc_heap,
};

const MIB: u64 = 1 << 20;

/// The objects' own bytes: 1 000 000 × 64 B, about 61 MiB (each chunk is
/// 80 bytes with glibc's header and alignment).
const BURST_BYTES: u64 = (BURST_OBJECTS * BURST_OBJECT_SIZE) as u64;

/// RSS also counts the test binary's code and stacks; the test harness can
/// move it by a few MiB while the test runs.
const NOISE: u64 = 4 * MIB;

// ANCHOR: fastbins_claim
#[test]
fn glibc_keeps_a_freed_burst_of_small_chunks_in_its_fastbins_with_nothing_above() {
    let before = rss_bytes().expect("RSS");

    drop(burst_of_small_objects(BURST_OBJECTS));

    let freed = rss_bytes().expect("RSS");
    assert!(freed >= before + BURST_BYTES, "RSS {before} -> {freed}");
    let in_fastbins = glibc_fastbin_bytes() as u64;
    assert!(
        in_fastbins >= BURST_BYTES,
        "{in_fastbins} bytes in fastbins"
    );

    assert!(trim_glibc_heap());
    assert_eq!(glibc_fastbin_bytes(), 0);
    let trimmed = rss_bytes().expect("RSS");
    assert!(trimmed <= before + NOISE, "RSS {before} -> {trimmed}");
}
// ANCHOR_END: fastbins_claim
