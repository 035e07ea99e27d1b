//! Scenario 4: the same burst under glibc's malloc. This test file sets no
//! `#[global_allocator]` and does not link the chapter's library (which
//! links jemalloc, whose unprefixed `malloc` would replace glibc's): it
//! includes the allocator-neutral `burst` module by path. RSS is read from
//! `/proc/self/smaps_rollup`.
//!
//! glibc gives memory back on its own only from the top of a heap. A burst
//! freed below an object that is still live stays in RSS until
//! `malloc_trim` returns the free pages in the middle. (With nothing live
//! above it, a burst of small chunks stays too: `glibc_fastbins.rs`.)
#![cfg(all(target_os = "linux", target_env = "gnu"))]

#[path = "../src/burst.rs"]
mod burst;

use burst::{
    BURST_OBJECT_SIZE, BURST_OBJECTS, burst_of_small_objects, glibc_fastbin_bytes, rss_bytes,
    trim_glibc_heap,
};

const MIB: u64 = 1 << 20;

/// The objects' own bytes: 1 000 000 × 64 B, about 61 MiB (glibc adds a
/// 16-byte header to each).
const BURST_BYTES: u64 = (BURST_OBJECTS * BURST_OBJECT_SIZE) as u64;

/// RSS also counts the test binary's code and stacks; the test harness can
/// move it by a few MiB while the test runs.
const NOISE: u64 = 4 * MIB;

// ANCHOR: glibc_claim
#[test]
fn glibc_keeps_a_freed_burst_in_rss_until_malloc_trim() {
    let before = rss_bytes().expect("RSS");

    let burst = burst_of_small_objects(BURST_OBJECTS);
    let still_live = Box::new([1u8; BURST_OBJECT_SIZE]); // allocated after: above the burst
    drop(burst);

    let freed = rss_bytes().expect("RSS");
    assert!(freed >= before + BURST_BYTES, "RSS {before} -> {freed}");

    assert!(trim_glibc_heap());
    assert_eq!(
        glibc_fastbin_bytes(),
        0,
        "malloc_trim consolidates the fastbins"
    );
    let trimmed = rss_bytes().expect("RSS");
    assert!(trimmed <= before + NOISE, "RSS {before} -> {trimmed}");
    drop(still_live);
}
// ANCHOR_END: glibc_claim
