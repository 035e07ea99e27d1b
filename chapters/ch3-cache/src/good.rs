//! The fixed version: a TTL cache with a capacity bound, whose sweeper
//! lives exactly as long as the cache.
//!
//! ```
//! use std::time::Duration;
//! use ch3_cache::good::TtlCache;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let cache = TtlCache::new(2, Duration::from_secs(5));
//! cache.insert("a", 1, Duration::from_secs(60));
//! cache.insert("b", 2, Duration::from_secs(1));
//! cache.insert("c", 3, Duration::from_secs(60)); // full: "b" expires soonest, so it goes
//! assert_eq!((cache.get("a"), cache.get("b"), cache.get("c")), (Some(1), None, Some(3)));
//! assert_eq!(cache.len(), 2);
//! # });
//! ```

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_util::task::AbortOnDropHandle;

// ANCHOR: owned_sweeper
/// A cache whose entries expire after their own TTL, which never holds more
/// than `max_entries`, and whose sweeper stops when the cache is dropped.
///
/// Clones share the same entries; the sweeper stops when the last clone is
/// dropped.
pub struct TtlCache<K, V> {
    shared: Arc<Shared<K, V>>,
}

struct Shared<K, V> {
    state: Arc<Mutex<State<K, V>>>,
    // Dropped with the last clone of the cache, and aborts the sweeper then.
    // The sweeper holds only `state`, never `Shared`: if it held this
    // handle it would keep itself alive.
    _sweeper: AbortOnDropHandle<()>,
}

impl<K, V> TtlCache<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// An empty cache holding at most `max_entries`, swept every
    /// `sweep_every`.
    ///
    /// # Panics
    ///
    /// If `max_entries` or `sweep_every` is 0, or outside a tokio runtime
    /// (the sweeper is a tokio task).
    pub fn new(max_entries: usize, sweep_every: Duration) -> Self {
        assert!(max_entries > 0, "a cache needs room for at least one entry");
        assert!(
            !sweep_every.is_zero(),
            "the sweep interval must not be zero"
        );
        let state = Arc::new(Mutex::new(State::new(max_entries)));
        let sweeper = tokio::spawn(sweep_forever(state.clone(), sweep_every));
        Self {
            shared: Arc::new(Shared {
                state,
                _sweeper: AbortOnDropHandle::new(sweeper),
            }),
        }
    }
}

/// Removes expired entries every `period`, until the cache aborts it.
async fn sweep_forever<K: Hash + Eq, V>(state: Arc<Mutex<State<K, V>>>, period: Duration) {
    let mut ticker = interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        state.lock().unwrap().sweep(Instant::now());
    }
}
// ANCHOR_END: owned_sweeper

impl<K, V> TtlCache<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// Stores `value` under `key` for `ttl` from now, replacing any older
    /// value. When the cache is full and `key` is new, the entry that
    /// expires soonest (an expired one, if there is any) is evicted first.
    ///
    /// # Panics
    ///
    /// If now + `ttl` overflows an `Instant` (a TTL of centuries).
    pub fn insert(&self, key: K, value: V, ttl: Duration) {
        self.lock().insert(key, value, Instant::now() + ttl);
    }

    /// The value under `key`, unless it is missing or its TTL has passed.
    /// An expired entry is invisible at once, even before a sweep frees it.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().get(key, Instant::now()).cloned()
    }

    /// Removes `key` and returns its value, if it was stored and not expired.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(key, Instant::now())
    }

    /// Removes every expired entry now, without waiting for the sweeper,
    /// and returns how many there were.
    pub fn sweep(&self) -> usize {
        self.lock().sweep(Instant::now())
    }
}

impl<K, V> TtlCache<K, V> {
    /// Entries stored, including expired ones the sweeper has not removed yet.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries the cache ever holds.
    pub fn max_entries(&self) -> usize {
        self.lock().max_entries
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K, V>> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way later calls would trip on, so a poisoned lock is still used.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<K, V> Clone for TtlCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K, V> fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("TtlCache")
            .field("len", &state.entries.len())
            .field("max_entries", &state.max_entries)
            .finish_non_exhaustive()
    }
}

struct Entry<V> {
    value: V,
    expires_at: Instant,
    /// Tells apart entries that expire at the same instant.
    seq: u64,
}

/// The entries, and an index of them ordered by expiry: the sweeper and
/// the eviction both take from its front, so neither scans the whole map.
struct State<K, V> {
    entries: HashMap<K, Entry<V>>,
    by_expiry: BTreeMap<(Instant, u64), K>,
    next_seq: u64,
    max_entries: usize,
}

impl<K: Hash + Eq, V> State<K, V> {
    fn new(max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_expiry: BTreeMap::new(),
            next_seq: 0,
            max_entries,
        }
    }

    fn get<Q>(&self, key: &Q, now: Instant) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries
            .get(key)
            .filter(|entry| now < entry.expires_at)
            .map(|entry| &entry.value)
    }

    fn remove<Q>(&mut self, key: &Q, now: Instant) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entry = self.entries.remove(key)?;
        self.by_expiry.remove(&(entry.expires_at, entry.seq));
        (now < entry.expires_at).then_some(entry.value)
    }
}

// ANCHOR: bounded_insert
impl<K: Hash + Eq + Clone, V> State<K, V> {
    fn insert(&mut self, key: K, value: V, expires_at: Instant) {
        if self.entries.len() >= self.max_entries && !self.entries.contains_key(&key) {
            self.evict_soonest_expiring();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry {
            value,
            expires_at,
            seq,
        };
        if let Some(replaced) = self.entries.insert(key.clone(), entry) {
            self.by_expiry.remove(&(replaced.expires_at, replaced.seq));
        }
        self.by_expiry.insert((expires_at, seq), key);
    }

    fn evict_soonest_expiring(&mut self) {
        if let Some((_, key)) = self.by_expiry.pop_first() {
            self.entries.remove(&key);
        }
    }
}
// ANCHOR_END: bounded_insert

// ANCHOR: sweep
impl<K: Hash + Eq, V> State<K, V> {
    /// Removes the entries expired at `now`; returns how many.
    fn sweep(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some(soonest) = self.by_expiry.first_entry() {
            if soonest.key().0 > now {
                break;
            }
            self.entries.remove(&soonest.remove());
            removed += 1;
        }
        // A hash table keeps its capacity when entries leave. Give most of
        // it back once the cache is mostly empty, so a burst does not pin
        // its peak memory for good.
        if self.entries.len() * 4 <= self.entries.capacity() {
            self.entries.shrink_to(self.entries.len() * 2);
        }
        // The B-tree frees its nodes as it shrinks, all but its last leaf:
        // replacing an empty one frees that too.
        if self.by_expiry.is_empty() {
            self.by_expiry = BTreeMap::new();
        }
        removed
    }
}
// ANCHOR_END: sweep

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn the_index_follows_replacements_and_removals() {
        let start = Instant::now();
        let mut state = State::new(10);
        state.insert("a", 1, at(start, 100));
        state.insert("a", 2, at(start, 300)); // replaces, with a later expiry
        state.insert("b", 3, at(start, 200));
        assert_eq!(state.by_expiry.len(), 2);
        assert_eq!(state.get("a", at(start, 250)), Some(&2));

        assert_eq!(state.sweep(at(start, 250)), 1); // only "b"
        assert_eq!(state.remove("a", at(start, 250)), Some(2));
        assert!(state.entries.is_empty() && state.by_expiry.is_empty());
    }

    #[test]
    fn a_full_cache_evicts_the_entry_that_expires_soonest() {
        let start = Instant::now();
        let mut state = State::new(3);
        for (key, expiry) in [("a", 300), ("b", 100), ("c", 200)] {
            state.insert(key, (), at(start, expiry));
        }
        state.insert("d", (), at(start, 50)); // full: "b" goes, not "d"
        let mut kept: Vec<_> = state.entries.keys().copied().collect();
        kept.sort();
        assert_eq!(kept, ["a", "c", "d"]);
        state.insert("a", (), at(start, 400)); // a replacement evicts nothing
        assert_eq!(state.entries.len(), 3);
        assert_eq!(state.by_expiry.len(), 3);
    }

    #[test]
    fn an_entry_expires_exactly_at_its_ttl() {
        let start = Instant::now();
        let mut state = State::new(1);
        state.insert("a", (), at(start, 100));
        assert!(state.get("a", at(start, 99)).is_some());
        assert!(state.get("a", at(start, 100)).is_none());
        assert_eq!(state.sweep(at(start, 99)), 0);
        assert_eq!(state.sweep(at(start, 100)), 1);
    }

    #[test]
    fn eviction_churn_grows_the_table_at_most_once() {
        // Removed keys leave tombstones that count toward the table's load,
        // so churn may double it once; it must not keep growing.
        let start = Instant::now();
        let mut state = State::new(10_000);
        let filled_table = HashMap::<u32, Entry<()>>::with_capacity(10_000).capacity();
        let mut largest_table = 0;
        for key in 0..1_000_000 {
            state.insert(key, (), at(start, 1000));
            largest_table = largest_table.max(state.entries.capacity());
        }
        assert_eq!(state.entries.len(), 10_000);
        assert!(largest_table <= 2 * filled_table, "{largest_table}");
    }

    #[test]
    fn sweeping_an_emptied_table_gives_its_memory_back() {
        let start = Instant::now();
        let mut state = State::new(1000);
        for key in 0..1000 {
            state.insert(key, (), at(start, 10));
        }
        assert!(state.entries.capacity() >= 1000);
        state.sweep(at(start, 10));
        assert_eq!(state.entries.capacity(), 0);
    }
}
