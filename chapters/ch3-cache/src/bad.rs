//! The leaking versions: faithful ports of the seed's global cache and of
//! its TTL cache.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, interval_at};

use crate::SWEEP_INTERVAL;

// ANCHOR: global_cache
/// The seed's `globalCache`: a process-wide map behind a lock.
static GLOBAL_CACHE: LazyLock<RwLock<HashMap<String, Vec<u8>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// Caches `value` under `key` for as long as the process lives: nothing
/// ever removes an entry.
pub fn cache_globally(key: String, value: Vec<u8>) {
    GLOBAL_CACHE.write().unwrap().insert(key, value);
}

/// The seed's `badCacheUsage`: caches `count` values of `value_bytes` each.
/// Once the caller stops using the data, the map still holds every byte.
pub fn fill_global_cache(count: usize, value_bytes: usize) {
    for index in 0..count {
        cache_globally(crate::seed_key(index), vec![0u8; value_bytes]);
    }
}
// ANCHOR_END: global_cache

/// Entries in the global cache.
pub fn global_cache_len() -> usize {
    GLOBAL_CACHE.read().unwrap().len()
}

/// Replaces the global cache with an empty map, as the seed's `main` does
/// between its two demonstrations (`globalCache = make(map[string][]byte)`).
pub fn reset_global_cache() {
    *GLOBAL_CACHE.write().unwrap() = HashMap::new();
}

/// One entry of the seed's TTL cache (`CacheItem`).
#[derive(Debug)]
struct CacheItem {
    data: Bytes,
    timestamp: Instant,
    ttl: Duration,
}

impl CacheItem {
    fn is_expired(&self) -> bool {
        self.timestamp.elapsed() > self.ttl
    }
}

// ANCHOR: ttl_cache
/// The seed's `TTLCache`, ported line by line.
#[derive(Debug, Default)]
pub struct TtlCache {
    items: RwLock<HashMap<String, CacheItem>>,
}

impl TtlCache {
    /// The seed's `NewTTLCache`: builds the cache and starts its cleaner
    /// (`go cache.cleanup()`). The cleaner gets its own reference to the
    /// cache, and nothing can ever stop it.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the cleaner is a tokio task).
    pub fn new() -> Arc<Self> {
        let cache = Arc::new(Self::default());
        tokio::spawn(cache.clone().cleanup());
        cache
    }

    /// The seed's `cleanup`: every 5 s, removes the expired entries. Loops
    /// forever (`for range ticker.C`), holding the cache.
    async fn cleanup(self: Arc<Self>) {
        let mut ticker = interval_at(Instant::now() + SWEEP_INTERVAL, SWEEP_INTERVAL);
        loop {
            ticker.tick().await;
            self.items
                .write()
                .unwrap()
                .retain(|_, item| !item.is_expired());
        }
    }
}
// ANCHOR_END: ttl_cache

impl TtlCache {
    /// The seed's `Set`: stores `data` for `ttl` from now.
    pub fn set(&self, key: String, data: Bytes, ttl: Duration) {
        let item = CacheItem {
            data,
            timestamp: Instant::now(),
            ttl,
        };
        self.items.write().unwrap().insert(key, item);
    }

    /// The seed's `Get`: the value, unless it is missing or expired.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let items = self.items.read().unwrap();
        match items.get(key) {
            Some(item) if !item.is_expired() => Some(item.data.clone()),
            _ => None,
        }
    }

    /// The seed's `Size`: entries stored, expired or not.
    pub fn size(&self) -> usize {
        self.items.read().unwrap().len()
    }
}
