//! Chapter 3: caches that only grow.
//!
//! A cache is memory a program keeps on purpose, which makes it the easiest
//! leak to miss: every entry was wanted once. Ported from the Go seed's
//! global cache and TTL cache, with the two leaks the seed's "good" cache
//! still has, and their fixes:
//!
//! | scenario | [`bad`] | [`good`] |
//! |---|---|---|
//! | global cache | a `static` map behind a lock that only grows | [`good::TtlCache`]: entries expire and a sweeper frees them |
//! | the sweeper | the seed's TTL cache: its cleaner loops forever and keeps the whole cache alive after the last user drops it | the cache owns its sweeper and aborts it when dropped |
//! | a flood of keys | TTL alone: a million distinct keys inside one TTL are all kept | a capacity bound: when full, the entry that expires soonest goes |
//! | production | — | [`moka_cache`]: moka with `time_to_live` and `max_capacity` |
//!
//! The scenario's sizes, counts and durations are the seed's, named below.

pub mod bad;
pub mod good;

use std::time::Duration;

use bytes::Bytes;

/// Entries the seed's `badCacheUsage` puts in the global cache
/// (`for i := 0; i < 10000; i++`).
pub const GLOBAL_ENTRIES: usize = 10_000;

/// Size of every cached value in the seed (`make([]byte, 1024) // 1KB数据`).
pub const VALUE_BYTES: usize = 1024;

/// Entries the seed's `goodCacheUsage` puts in its TTL cache
/// (`for i := 0; i < 1000; i++`).
pub const TTL_ENTRIES: usize = 1_000;

/// How often the seed's cleaner sweeps (`time.NewTicker(time.Second * 5)`).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How long the seed waits for its TTL cache to empty (`time.Sleep(time.Second * 6)`).
pub const SEED_WAIT: Duration = Duration::from_secs(6);

/// The TTL of the seed's entry number `index`: 100 ms to 999 ms
/// (`time.Millisecond * time.Duration(100+i%900)`).
pub const fn seed_ttl(index: usize) -> Duration {
    Duration::from_millis(100 + (index % 900) as u64)
}

/// The longest TTL [`seed_ttl`] gives (999 ms).
pub const LONGEST_TTL: Duration = seed_ttl(899);

/// The seed's key for entry number `index` (`fmt.Sprintf("key_%d", i)`).
pub fn seed_key(index: usize) -> String {
    format!("key_{index}")
}

/// A fresh 1 KiB value, zeroed like Go's `make([]byte, 1024)`.
pub fn seed_value() -> Bytes {
    Bytes::from(vec![0u8; VALUE_BYTES])
}

/// Distinct keys in the flood scenario: far more than any sane cache holds.
pub const FLOOD_KEYS: usize = 1_000_000;

/// Size of each flooded value. Small on purpose: a million seed-sized
/// (1 KiB) values would need a gibibyte on the unbounded side.
pub const FLOOD_VALUE_BYTES: usize = 64;

/// The TTL of every flooded entry: the seed's longest, rounded up. The whole
/// flood arrives well inside it.
pub const FLOOD_TTL: Duration = Duration::from_secs(1);

/// The bounded caches' capacity, in entries: the most the seed ever stores
/// ([`GLOBAL_ENTRIES`]).
pub const CAPACITY: usize = GLOBAL_ENTRIES;

/// The flood's key number `index`.
pub fn flood_key(index: usize) -> String {
    format!("flood_{index}")
}

/// A fresh [`FLOOD_VALUE_BYTES`]-byte value.
pub fn flood_value() -> Bytes {
    Bytes::from(vec![0u8; FLOOD_VALUE_BYTES])
}

// ANCHOR: moka_cache
/// The production answer: moka, bounded to `max_entries` and expiring every
/// entry `ttl` after it was written. moka evicts and expires on its own,
/// during its reads and writes: there is no sweeper task to own or to leak.
pub fn moka_cache(max_entries: u64, ttl: Duration) -> moka::sync::Cache<String, Bytes> {
    moka::sync::Cache::builder()
        .max_capacity(max_entries)
        .time_to_live(ttl)
        .build()
}
// ANCHOR_END: moka_cache

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ttls_run_from_100_ms_to_999_ms() {
        assert_eq!(seed_ttl(0), Duration::from_millis(100));
        assert_eq!(seed_ttl(899), Duration::from_millis(999));
        assert_eq!(seed_ttl(900), Duration::from_millis(100));
        let longest = (0..TTL_ENTRIES).map(seed_ttl).max();
        assert_eq!(longest, Some(LONGEST_TTL));
    }
}
