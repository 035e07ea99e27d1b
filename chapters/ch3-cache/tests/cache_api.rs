//! What both TTL caches promise a caller, edge by edge: a value is visible
//! until its TTL has passed and not after, the seed's cleaner removes only
//! what expired, and the fixed cache's `sweep`, `remove` and bound count
//! exactly. These pin the caches' behaviour so that a changed comparison or
//! a wrong count fails a test (cargo-mutants, `scripts/mutants.sh`).
//!
//! The mutants no test notices, and why none should:
//! - `now + SWEEP_INTERVAL` → `now - SWEEP_INTERVAL` for the first tick of
//!   either sweeper (`bad.rs` `cleanup`, `good.rs` `sweep_forever`): the
//!   interval then ticks at once, twice, while nothing has expired yet, and
//!   every 5 s after that exactly as before.
//! - in `State::sweep`, `len * 4 <= capacity` → `len + 4` or `len / 4`, and
//!   `shrink_to(len * 2)` → `len / 2`: when a table shrinks and how much
//!   headroom it keeps are not claims; that an emptied cache frees
//!   everything is, and holds under each of them.
//! - `Debug for TtlCache` returning nothing: its output is not a claim.

use std::time::Duration;

use bytes::Bytes;
use ch3_cache::{SWEEP_INTERVAL, bad, good};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SHORT_TTL: Duration = Duration::from_millis(100);
const LONG_TTL: Duration = Duration::from_secs(60);
const ONE_MS: Duration = Duration::from_millis(1);

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn seed_cache_returns_a_value_until_its_ttl_has_passed_and_not_after() {
    let cache = bad::TtlCache::new();
    cache.set("short".into(), Bytes::from_static(b"a"), SHORT_TTL);
    cache.set("long".into(), Bytes::from_static(b"b"), LONG_TTL);

    assert_eq!(cache.get("short"), Some(Bytes::from_static(b"a")));
    assert_eq!(cache.get("missing"), None);
    tokio::time::sleep(SHORT_TTL).await; // the seed expires strictly after the TTL
    assert_eq!(cache.get("short"), Some(Bytes::from_static(b"a")));
    tokio::time::sleep(ONE_MS).await;
    assert_eq!(cache.get("short"), None);
    assert_eq!(cache.get("long"), Some(Bytes::from_static(b"b")));
    assert_eq!(cache.size(), 2); // expired, not yet removed
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn seed_cleaner_removes_only_the_expired_entries_every_5_s() {
    let cache = bad::TtlCache::new();
    tokio::task::yield_now().await; // the cleaner starts
    cache.set("short".into(), Bytes::from_static(b"a"), SHORT_TTL);
    cache.set("long".into(), Bytes::from_static(b"b"), LONG_TTL);

    tokio::time::sleep(SWEEP_INTERVAL - ONE_MS).await;
    assert_eq!(cache.size(), 2); // no sweep yet
    tokio::time::sleep(ONE_MS).await;
    tokio::task::yield_now().await;
    assert_eq!(cache.size(), 1);
    assert_eq!(cache.get("long"), Some(Bytes::from_static(b"b")));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fixed_cache_sweep_returns_how_many_entries_it_removed() {
    let cache = good::TtlCache::new(10, LONG_TTL * 10);
    cache.insert("a", 1, SHORT_TTL);
    cache.insert("b", 2, SHORT_TTL);
    cache.insert("c", 3, SHORT_TTL * 2);
    cache.insert("d", 4, LONG_TTL);

    assert_eq!(cache.sweep(), 0);
    tokio::time::sleep(SHORT_TTL).await; // expiry is at the TTL, inclusive
    assert_eq!(cache.get(&"a"), None);
    assert_eq!(cache.get(&"c"), Some(3));
    assert_eq!(cache.sweep(), 2);
    assert_eq!(cache.len(), 2);
    tokio::time::sleep(SHORT_TTL).await;
    assert_eq!(cache.sweep(), 1);
    assert_eq!(cache.len(), 1);
    assert!(!cache.is_empty());
    assert_eq!(cache.sweep(), 0);
    assert_eq!(cache.get(&"d"), Some(4));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fixed_cache_remove_returns_a_live_value_only() {
    let cache = good::TtlCache::new(10, LONG_TTL * 10);
    cache.insert("live", 1, LONG_TTL);
    cache.insert("expired", 2, SHORT_TTL);
    tokio::time::sleep(SHORT_TTL).await;

    assert_eq!(cache.remove(&"live"), Some(1));
    assert_eq!(cache.remove(&"live"), None);
    assert_eq!(cache.remove(&"expired"), None); // gone from the cache all the same
    assert!(cache.is_empty());
    assert_eq!(cache.sweep(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fixed_cache_evicts_the_soonest_expiring_entry_when_full() {
    let cache = good::TtlCache::new(3, LONG_TTL * 10);
    assert_eq!(cache.max_entries(), 3);
    cache.insert("late", 1, LONG_TTL * 3);
    cache.insert("soon", 2, LONG_TTL);
    cache.insert("middle", 3, LONG_TTL * 2);
    cache.insert("middle", 4, LONG_TTL * 2); // a replacement evicts nothing
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.get(&"soon"), Some(2));

    cache.insert("new", 5, LONG_TTL * 4);

    assert_eq!(cache.len(), 3);
    assert_eq!(cache.get(&"soon"), None);
    assert_eq!(cache.get(&"late"), Some(1));
    assert_eq!(cache.get(&"middle"), Some(4));
    assert_eq!(cache.get(&"new"), Some(5));
}
