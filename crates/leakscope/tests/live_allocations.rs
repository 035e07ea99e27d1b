#![cfg(feature = "jemalloc")]
//! `live_allocations` reads process-wide counters, so it is tested in a
//! process of its own, where no other test allocates or frees meanwhile.

use leakscope::detect::live_allocations;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[test]
fn live_allocations_see_ten_thousand_boxes_come_and_go() {
    let before = live_allocations().unwrap();
    let boxes: Vec<Box<u64>> = (0..10_000).map(Box::new).collect();
    let during = live_allocations().unwrap();
    // The boxes, plus the Vec holding them; the test harness's own thread
    // may add a few.
    assert!(
        (10_001..10_100).contains(&(during - before)),
        "{before} → {during}"
    );
    drop(boxes);
    // Freed blocks that jemalloc's per-thread cache still holds count as
    // live until the cache is flushed: a few hundred, not ten thousand.
    let after = live_allocations().unwrap();
    assert!(after < before + 1_000, "{before} → {after}");
}
