//! The bounded cache's *peak* heap under a flood, measured by a second,
//! independent tool: dhat in testing mode (one profiler per process, so
//! this file holds one test).

use ch3_cache::{CAPACITY, FLOOD_TTL, SWEEP_INTERVAL, bad, flood_key, flood_value, good};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Keys in this flood: five times the capacity. Every allocation dhat
/// tracks costs it a stack trace, so a million would be too slow here.
const DHAT_FLOOD_KEYS: usize = 5 * CAPACITY;

/// The same bound as the claims: 1 KiB per entry the cache may hold.
const PEAK_BOUND: usize = CAPACITY * 1024;

// ANCHOR: dhat_peak
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dhat_sees_the_bounded_cache_peak_under_the_bound_and_the_seed_cache_pass_it() {
    let _profiler = dhat::Profiler::builder().testing().build();

    let bounded = good::TtlCache::new(CAPACITY, SWEEP_INTERVAL);
    for index in 0..DHAT_FLOOD_KEYS {
        bounded.insert(flood_key(index), flood_value(), FLOOD_TTL);
    }
    let bounded_peak = dhat::HeapStats::get().max_bytes;
    drop(bounded);

    let unbounded = bad::TtlCache::new();
    for index in 0..DHAT_FLOOD_KEYS {
        unbounded.set(flood_key(index), flood_value(), FLOOD_TTL);
    }
    let unbounded_live = dhat::HeapStats::get().curr_bytes;

    dhat::assert!(
        bounded_peak <= PEAK_BOUND,
        "bounded cache peaked at {bounded_peak} B"
    );
    dhat::assert!(
        unbounded_live > PEAK_BOUND,
        "seed cache holds only {unbounded_live} B"
    );
}
// ANCHOR_END: dhat_peak
