//! Chapter 3's fixed TTL cache under leakscope's test-time leak check
//! (`leakscope::check::LeakCheck`, chapter 6): one call at the end of each
//! test body fails if a task outlived the cache or the heap did not return
//! to its baseline.

use ch3_cache::{
    CAPACITY, FLOOD_TTL, SEED_WAIT, SWEEP_INTERVAL, TTL_ENTRIES, flood_key, flood_value, good,
    seed_key, seed_ttl, seed_value,
};
use leakscope::check::LeakCheck;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Keys inserted in the flood test: ten times the capacity, enough to make
/// the cache evict on almost every insert.
const FLOOD_KEYS: usize = 10 * CAPACITY;

/// A fresh runtime keeps a little bookkeeping after it first aborts a task
/// (the cache's sweeper is aborted on drop). One cache created and dropped
/// before the baseline keeps that out of the check.
async fn warm_up() {
    drop(good::TtlCache::<String, bytes::Bytes>::new(
        CAPACITY,
        SWEEP_INTERVAL,
    ));
    tokio::task::yield_now().await;
}

// ANCHOR: seed_ttls
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_cache_with_the_seeds_ttls_leaves_no_task_and_no_heap_once_dropped() {
    warm_up().await;
    let leaks = LeakCheck::start();

    let cache = good::TtlCache::new(CAPACITY, SWEEP_INTERVAL);
    for index in 0..TTL_ENTRIES {
        cache.insert(seed_key(index), seed_value(), seed_ttl(index));
    }
    tokio::time::sleep(SEED_WAIT).await;
    assert_eq!(cache.len(), 0);
    drop(cache);

    leaks.assert_no_leaks().await;
}
// ANCHOR_END: seed_ttls

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_cache_after_a_flood_leaves_no_task_and_no_heap_once_dropped() {
    warm_up().await;
    let leaks = LeakCheck::start();

    let cache = good::TtlCache::new(CAPACITY, SWEEP_INTERVAL);
    for index in 0..FLOOD_KEYS {
        cache.insert(flood_key(index), flood_value(), FLOOD_TTL);
    }
    assert_eq!(cache.len(), CAPACITY);
    drop(cache);

    leaks.assert_no_leaks().await;
}
