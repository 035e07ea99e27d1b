//! Every claim the chapter 3 page makes, measured. Heap claims read the
//! per-thread jemalloc counter on a `current_thread` runtime (exact); time
//! is tokio's paused clock, except for moka, which keeps its own clock.

use std::sync::Arc;
use std::time::Duration;

use ch3_cache::{
    CAPACITY, FLOOD_KEYS, FLOOD_TTL, FLOOD_VALUE_BYTES, GLOBAL_ENTRIES, LONGEST_TTL, SEED_WAIT,
    SWEEP_INTERVAL, TTL_ENTRIES, VALUE_BYTES, bad, flood_key, flood_value, good, moka_cache,
    seed_key, seed_ttl, seed_value,
};
use leakscope::heap::LiveBytes;
#[cfg(tokio_unstable)]
use leakscope::tasks::task_traces;
use leakscope::tasks::{TaskLeakCheck, warm_up_runtime};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const AN_HOUR: Duration = Duration::from_secs(3600);

/// The heap every entry's value holds: 1 KiB, already a jemalloc size class.
const SEED_VALUES_BYTES: i64 = (GLOBAL_ENTRIES * VALUE_BYTES) as i64;

// ANCHOR: bad_global
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_global_cache_keeps_10_000_kib_when_the_data_is_no_longer_used() {
    let heap = LiveBytes::start();

    bad::fill_global_cache(GLOBAL_ENTRIES, VALUE_BYTES);
    tokio::time::sleep(AN_HOUR).await; // nobody uses the data any more

    assert_eq!(bad::global_cache_len(), 10_000);
    let kept = heap.live_bytes();
    assert!(kept >= SEED_VALUES_BYTES, "kept {kept} bytes");
    // The map is what holds it: emptying the map gives it all back.
    bad::reset_global_cache();
    assert_eq!(heap.live_bytes(), 0);
}
// ANCHOR_END: bad_global

/// Inserts the seed's entries (`key_0` …, 1 KiB each, TTL 100 ms to 999 ms).
fn fill_with_seed_ttls(cache: &good::TtlCache<String, bytes::Bytes>, count: usize) {
    for index in 0..count {
        cache.insert(seed_key(index), seed_value(), seed_ttl(index));
    }
}

// ANCHOR: good_frees
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_ttl_cache_frees_10_000_kib_after_the_longest_ttl_plus_one_sweep() {
    let cache = good::TtlCache::new(CAPACITY, SWEEP_INTERVAL);
    tokio::task::yield_now().await; // the sweeper starts: its timer is part of the empty cache
    let heap = LiveBytes::start();

    fill_with_seed_ttls(&cache, GLOBAL_ENTRIES);
    assert_eq!(cache.len(), 10_000);
    assert!(heap.live_bytes() >= SEED_VALUES_BYTES);

    tokio::time::sleep(LONGEST_TTL + SWEEP_INTERVAL).await;

    assert_eq!(cache.len(), 0);
    assert_eq!(heap.live_bytes(), 0);
}
// ANCHOR_END: good_frees

// ANCHOR: expired_invisible
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_expired_entry_is_invisible_before_any_sweep() {
    let cache = good::TtlCache::new(CAPACITY, SWEEP_INTERVAL);
    cache.insert(seed_key(0), seed_value(), seed_ttl(0)); // 100 ms

    tokio::time::sleep(seed_ttl(0) - Duration::from_millis(1)).await;
    assert!(cache.get("key_0").is_some());
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(cache.get("key_0").is_none()); // expired: invisible at once…
    assert_eq!(cache.len(), 1); // …but still stored until the sweep

    tokio::time::sleep(SWEEP_INTERVAL).await;
    assert_eq!(cache.len(), 0);
}
// ANCHOR_END: expired_invisible

// ANCHOR: bad_sweeper
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_ttl_cache_sweeper_outlives_the_cache_and_keeps_its_table() {
    let tasks = TaskLeakCheck::start();
    let heap = LiveBytes::start();

    let cache = bad::TtlCache::new();
    for index in 0..TTL_ENTRIES {
        cache.set(seed_key(index), seed_value(), seed_ttl(index));
    }
    tokio::time::sleep(SEED_WAIT).await;
    assert_eq!(cache.size(), 0); // the seed's check passes: every entry swept
    let still_there = Arc::downgrade(&cache);
    drop(cache); // the last user lets go
    tokio::time::sleep(AN_HOUR).await;

    assert_eq!(tasks.leaked_tasks().await, 1); // the sweeper, still looping
    assert!(still_there.upgrade().is_some()); // and the cache it holds
    // Each of the hash table's buckets held a key and a value, and the
    // table keeps its buckets after the entries are gone.
    let bucket_bytes = std::mem::size_of::<(String, bytes::Bytes)>();
    let kept = heap.live_bytes();
    assert!(kept >= (TTL_ENTRIES * bucket_bytes) as i64, "kept {kept}");
}
// ANCHOR_END: bad_sweeper

// ANCHOR: good_sweeper
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_ttl_cache_stops_its_sweeper_and_frees_everything_when_dropped() {
    warm_up_runtime(1).await;
    let tasks = TaskLeakCheck::start();
    let heap = LiveBytes::start();

    let cache = good::TtlCache::new(CAPACITY, SWEEP_INTERVAL);
    fill_with_seed_ttls(&cache, TTL_ENTRIES);
    let user = cache.clone(); // a second owner, say a request handler
    tokio::time::sleep(SEED_WAIT).await;
    assert_eq!(cache.len(), 0);
    drop(cache);
    assert_eq!(tasks.leaked_tasks().await, 1); // `user` still needs it

    drop(user);

    assert_eq!(tasks.leaked_tasks().await, 0);
    assert_eq!(heap.live_bytes(), 0);
}
// ANCHOR_END: good_sweeper

/// Heap a bounded cache may hold per entry in the flood: the 64-byte value
/// and the 16-byte key, plus the cache's own structures. For [`good::TtlCache`]
/// those are the key's copy in the expiry index, a hash-table bucket (the
/// table doubles once tombstones of evicted keys fill half of it) and a
/// share of a B-tree node. Both caches measure just under half of this.
const FLOOD_BYTES_PER_ENTRY_BOUND: i64 = 1024;

/// The stated bound on a bounded cache's heap under the flood: 10 000 entries
/// at 1 KiB each, 10 000 KiB.
const FLOOD_HEAP_BOUND: i64 = CAPACITY as i64 * FLOOD_BYTES_PER_ENTRY_BOUND;

// ANCHOR: bad_flood
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_ttl_only_cache_keeps_all_1_000_000_keys_of_a_flood() {
    let heap = LiveBytes::start();
    let cache = bad::TtlCache::new();

    for index in 0..FLOOD_KEYS {
        cache.set(flood_key(index), flood_value(), FLOOD_TTL);
    }

    assert_eq!(cache.size(), 1_000_000);
    let kept = heap.live_bytes();
    assert!(kept >= (FLOOD_KEYS * FLOOD_VALUE_BYTES) as i64);
    assert!(kept > 10 * FLOOD_HEAP_BOUND, "kept {kept} bytes");
}
// ANCHOR_END: bad_flood

// ANCHOR: good_flood
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_bounded_cache_stays_at_capacity_under_1_000_000_keys() {
    let heap = LiveBytes::start();
    let cache = good::TtlCache::new(CAPACITY, SWEEP_INTERVAL);

    let mut peak = 0;
    for index in 0..FLOOD_KEYS {
        cache.insert(flood_key(index), flood_value(), FLOOD_TTL);
        if index % 1000 == 0 {
            peak = peak.max(heap.live_bytes()); // under the bound all along, not just at the end
        }
    }

    assert_eq!(cache.len(), 10_000);
    let kept = heap.live_bytes();
    assert!(kept <= FLOOD_HEAP_BOUND, "kept {kept} bytes");
    assert!(peak <= FLOOD_HEAP_BOUND, "peaked at {peak} bytes");
    // Same TTL for all, so the oldest go first: the newest are kept.
    assert!(cache.get(&flood_key(FLOOD_KEYS - 1)).is_some());
    assert!(cache.get(&flood_key(FLOOD_KEYS - CAPACITY - 1)).is_none());
}
// ANCHOR_END: good_flood

/// Keys in moka's flood: ten times its capacity, which is enough to make it
/// evict, and keeps the test well under its time budget.
const MOKA_FLOOD_KEYS: usize = 10 * CAPACITY;

// ANCHOR: moka_bound
#[test]
fn moka_stays_within_max_capacity_under_a_flood() {
    let heap = LiveBytes::start();
    let cache = moka_cache(CAPACITY as u64, FLOOD_TTL);

    for index in 0..MOKA_FLOOD_KEYS {
        cache.insert(flood_key(index), flood_value());
    }
    cache.run_pending_tasks(); // moka evicts in batches: let it finish

    assert!(cache.entry_count() <= 10_000, "{}", cache.entry_count());
    let kept = heap.live_bytes();
    assert!(kept <= FLOOD_HEAP_BOUND, "kept {kept} bytes");
}
// ANCHOR_END: moka_bound

/// moka reads the real clock, so its expiry is tested with a short real TTL
/// (the sleep stays within the suite's ~100 ms budget).
const MOKA_SHORT_TTL: Duration = Duration::from_millis(50);

// ANCHOR: moka_expiry
#[test]
fn moka_hides_and_then_removes_an_expired_entry_on_its_own_clock() {
    let cache = moka_cache(CAPACITY as u64, MOKA_SHORT_TTL);
    cache.insert(seed_key(0), seed_value());
    assert!(cache.get("key_0").is_some());

    std::thread::sleep(MOKA_SHORT_TTL + Duration::from_millis(10));

    assert!(cache.get("key_0").is_none());
    cache.run_pending_tasks();
    assert_eq!(cache.entry_count(), 0);
}
// ANCHOR_END: moka_expiry

// ANCHOR: task_dump
// Task dumps need `--cfg tokio_unstable` (.cargo/config.toml sets it).
#[cfg(tokio_unstable)]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_task_dump_shows_the_leaked_sweeper_waiting_on_its_ticker() {
    drop(bad::TtlCache::new());
    drop(good::TtlCache::<String, bytes::Bytes>::new(
        CAPACITY,
        SWEEP_INTERVAL,
    ));
    tokio::time::sleep(AN_HOUR).await;

    let traces = task_traces().await.expect("task dumps");

    assert_eq!(traces.len(), 1, "{traces:#?}"); // only the seed's sweeper
    assert!(traces[0].contains("tokio::time::interval::Interval"));
}
// ANCHOR_END: task_dump

/// At most one B-tree leaf: the std `BTreeMap` keeps up to 11 entries in a
/// node, here of 16-byte keys and 8-byte values, plus its links: a few
/// hundred bytes, rounded up to a jemalloc size class.
const ONE_LEAF_BOUND: i64 = 1024;

// ANCHOR: btree_shrinks
#[test]
fn std_btreemap_frees_its_nodes_as_it_empties() {
    let heap = LiveBytes::start();
    let mut by_expiry = std::collections::BTreeMap::new();
    for index in 0..GLOBAL_ENTRIES as u64 {
        by_expiry.insert((index, index), index);
    }
    let full = heap.live_bytes();
    assert!(full >= (GLOBAL_ENTRIES * 24) as i64, "full: {full} bytes");

    while by_expiry.pop_first().is_some() {}

    let emptied = heap.live_bytes();
    assert!(emptied <= ONE_LEAF_BOUND, "emptied: {emptied} bytes");
    drop(by_expiry);
    assert_eq!(heap.live_bytes(), 0);
}
// ANCHOR_END: btree_shrinks
