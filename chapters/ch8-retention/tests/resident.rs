//! Freed but resident: after a burst of small objects is freed, jemalloc's
//! `allocated` drops back at once while `resident` (and the RSS) stays
//! high, until the arenas are purged.
//!
//! These numbers are process-wide, so this file holds a single test:
//! nothing else allocates in the process while it measures.

use ch8_retention::retention::{Diagnosis, diagnose, unused_resident};
use ch8_retention::{
    BURST_OBJECT_SIZE, BURST_OBJECTS, bad, burst_of_small_objects, good, rss_bytes,
};
use leakscope::heap::HeapStats;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const MIB: u64 = 1 << 20;

/// The objects' own bytes: 1 000 000 × 64 B, about 61 MiB.
const BURST_BYTES: u64 = (BURST_OBJECTS * BURST_OBJECT_SIZE) as u64;

/// jemalloc's decay runs while the arena is busy, and freeing a million
/// objects keeps it busy: it may return part of the burst during the frees
/// themselves (a third of it in the chapter's captured chart, where the
/// frees are spread over a second). At least half stays resident.
const STILL_RESIDENT_AFTER_FREE: u64 = BURST_BYTES / 2;

/// What the test harness, jemalloc's metadata and its per-thread caches can
/// move the process-wide numbers by while the test runs: a few MiB, against
/// a 61 MiB burst.
const NOISE: u64 = 4 * MIB;

// ANCHOR: resident_claims
#[test]
fn freed_burst_stays_resident_until_the_arenas_are_purged() {
    // No background threads (jemalloc's default): decay runs only when the
    // program calls into the allocator.
    assert!(!tikv_jemalloc_ctl::background_thread::read().expect("jemalloc setting"));
    good::purge_unused_pages().expect("purge"); // start with no freed pages
    let before = HeapStats::read().expect("jemalloc stats");

    let burst = burst_of_small_objects(BURST_OBJECTS);
    let during = HeapStats::read().expect("jemalloc stats");
    assert!(during.allocated >= before.allocated + BURST_BYTES);

    // Bad: free and do nothing else. The program holds no more than
    // before, but the pages stay resident.
    bad::free_burst(burst);
    let freed = HeapStats::read().expect("jemalloc stats");
    let rss_freed = rss_bytes().expect("RSS");
    assert!(freed.allocated <= before.allocated + NOISE);
    assert!(unused_resident(&freed) >= STILL_RESIDENT_AFTER_FREE);
    assert!(matches!(
        diagnose(&before, &freed, NOISE),
        Diagnosis::AllocatorRetention { .. }
    ));

    // Good: purge. `allocated` does not move; `resident` and RSS fall.
    good::purge_unused_pages().expect("purge");
    let purged = HeapStats::read().expect("jemalloc stats");
    let rss_purged = rss_bytes().expect("RSS");
    assert!(purged.allocated.abs_diff(freed.allocated) <= NOISE);
    assert!(purged.resident <= before.resident + NOISE);
    assert!(rss_freed - rss_purged >= STILL_RESIDENT_AFTER_FREE);
    assert_eq!(diagnose(&before, &purged, NOISE), Diagnosis::Steady);
}
// ANCHOR_END: resident_claims
