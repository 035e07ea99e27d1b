//! dhat, the second profiler, on the same workload: it counts every
//! allocation exactly (no sampling), so it gives all four of pprof's heap
//! views at once. One dhat profiler per process: this file has one test.

use ch5_pprof::{
    CACHE_CAPACITY, CACHE_ENTRY_BYTES, REQUESTS_PER_PHASE, SeedService, WORKER_DATA_BYTES,
    WORKER_POOL, bad, good, run_seed_loop,
};
use leakscope::tasks::TaskLeakCheck;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// The fixed service may keep, besides its 1024 entries and 4 workers' data,
/// its hash table, eviction queue and the workers' task allocations.
const GOOD_HEAP_SLACK: u64 = 256 * 1024;

/// What the service allocated (`total`) and still holds (`curr`) during `turns`
/// turns of the seed's loop, once stopped workers have ended, as dhat counts it.
async fn run_under_dhat(
    service: &dyn SeedService,
    turns: u64,
) -> (dhat::HeapStats, dhat::HeapStats) {
    let before = dhat::HeapStats::get();
    let tasks = TaskLeakCheck::start();
    run_seed_loop(service, turns);
    tasks.settle().await; // lets the workers the fixed pool stopped end
    (before, dhat::HeapStats::get())
}

// ANCHOR: dhat_views
#[test]
fn dhat_tells_in_use_from_allocated_for_both_services() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let leaky = bad::LeakyService::new();
        let (before, after) = run_under_dhat(&leaky, REQUESTS_PER_PHASE).await;
        let leaky_in_use = after.curr_bytes - before.curr_bytes; // inuse_space
        let leaky_allocated = after.total_bytes - before.total_bytes; // alloc_space
        // Everything the leaky service allocated for entries and workers is still in use.
        assert!(
            leaky_in_use as u64 >= 2000 * CACHE_ENTRY_BYTES as u64 + 100 * WORKER_DATA_BYTES as u64
        );
        assert!(after.curr_blocks - before.curr_blocks >= 2000 + 100); // inuse_objects

        let fixed = good::FixedService::new();
        let (before, after) = run_under_dhat(&fixed, REQUESTS_PER_PHASE).await;
        let fixed_in_use = (after.curr_bytes - before.curr_bytes) as u64;
        let fixed_allocated = after.total_bytes - before.total_bytes;
        // The fixed service allocated as much as the leaky one...
        assert!(fixed_allocated >= 2000 * CACHE_ENTRY_BYTES as u64);
        assert!(fixed_allocated * 10 >= leaky_allocated * 9);
        // ...but holds only its bounded cache and pool.
        let bound = (CACHE_CAPACITY * CACHE_ENTRY_BYTES + WORKER_POOL * WORKER_DATA_BYTES) as u64
            + GOOD_HEAP_SLACK;
        assert!(
            fixed_in_use <= bound,
            "fixed service holds {fixed_in_use} bytes, bound {bound}"
        );
    });
}
// ANCHOR_END: dhat_views
