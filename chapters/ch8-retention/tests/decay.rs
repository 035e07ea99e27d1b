//! The other fix for freed-but-resident pages: with `dirty_decay_ms` set
//! to 0, the arena returns pages to the operating system as they empty.
//!
//! The setting changes the arena for the whole process, and the numbers
//! are process-wide, so this file holds a single test.

use ch8_retention::retention::{Diagnosis, diagnose};
use ch8_retention::{BURST_OBJECT_SIZE, BURST_OBJECTS, bad, burst_of_small_objects, good};
use leakscope::heap::HeapStats;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const MIB: u64 = 1 << 20;

/// The objects' own bytes: 1 000 000 × 64 B, about 61 MiB.
const BURST_BYTES: u64 = (BURST_OBJECTS * BURST_OBJECT_SIZE) as u64;

/// What the test harness and jemalloc's metadata can move the process-wide
/// numbers by: a few MiB, against a 61 MiB burst.
const NOISE: u64 = 4 * MIB;

/// jemalloc's documented default for `dirty_decay_ms`.
const DEFAULT_DIRTY_DECAY_MS: isize = 10_000;

// ANCHOR: decay_claim
#[test]
fn with_zero_dirty_decay_freed_pages_leave_at_once_without_a_purge() {
    let previous = good::return_freed_pages_at_once().expect("decay setting");
    assert_eq!(previous, DEFAULT_DIRTY_DECAY_MS);
    good::purge_unused_pages().expect("purge"); // start with no freed pages
    let before = HeapStats::read().expect("jemalloc stats");

    let burst = burst_of_small_objects(BURST_OBJECTS);
    assert!(HeapStats::read().expect("jemalloc stats").resident >= before.resident + BURST_BYTES);
    bad::free_burst(burst); // the same plain free as the bad version: no purge

    let freed = HeapStats::read().expect("jemalloc stats");
    assert!(freed.resident <= before.resident + NOISE);
    assert_eq!(diagnose(&before, &freed, NOISE), Diagnosis::Steady);
}
// ANCHOR_END: decay_claim
