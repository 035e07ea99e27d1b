//! The fixed service: the same API as the seed's `LeakyService`, but its
//! cache is bounded and expiring, closed subscriber channels are swept out,
//! and its workers are stopped — the oldest when the pool is full, all of
//! them on shutdown.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{
    CACHE_CAPACITY, CACHE_TTL, SUBSCRIBER_CAPACITY, SeedService, Stats, WORKER_DATA_BYTES,
    WORKER_POOL, WORKER_TICK,
};

/// The fixed service.
#[derive(Debug)]
pub struct FixedService {
    state: Mutex<State>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Debug, Default)]
struct State {
    cache: BoundedCache,
    subscribers: Vec<mpsc::Sender<String>>,
    workers: VecDeque<Worker>,
}

#[derive(Debug)]
struct Worker {
    data: Vec<u8>,
    stop: CancellationToken,
}

// ANCHOR: bounded_cache
/// A cache that holds at most [`CACHE_CAPACITY`] entries, none older than
/// [`CACHE_TTL`]: the oldest entry goes first.
#[derive(Debug, Default)]
struct BoundedCache {
    entries: HashMap<String, (Vec<u8>, Instant)>,
    oldest_first: VecDeque<String>,
    bytes: usize,
}

impl BoundedCache {
    fn insert(&mut self, key: String, value: Vec<u8>, now: Instant) {
        self.bytes += value.len();
        if let Some((old, _)) = self.entries.insert(key.clone(), (value, now)) {
            self.bytes -= old.len();
            self.oldest_first.retain(|queued| *queued != key);
        }
        self.oldest_first.push_back(key);
        self.evict(now);
    }

    fn evict(&mut self, now: Instant) {
        while let Some(oldest) = self.oldest_first.front() {
            let inserted = self.entries[oldest].1;
            let full = self.entries.len() > CACHE_CAPACITY;
            if !full && now.duration_since(inserted) < CACHE_TTL {
                break;
            }
            let (value, _) = self.entries.remove(oldest).expect("queued keys are cached");
            self.bytes -= value.len();
            self.oldest_first.pop_front();
        }
    }
}
// ANCHOR_END: bounded_cache

impl Default for FixedService {
    fn default() -> Self {
        Self::new()
    }
}

impl FixedService {
    /// An empty service.
    pub fn new() -> Self {
        Self {
            state: Mutex::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("no code panics while holding the lock")
    }
}

impl SeedService for FixedService {
    fn name(&self) -> &'static str {
        "fixed"
    }

    fn cache_data(&self, key: String, size: usize) {
        self.state()
            .cache
            .insert(key, vec![0u8; size], Instant::now());
    }

    // ANCHOR: fixed_subscribers
    fn add_subscriber(&self) -> mpsc::Receiver<String> {
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_CAPACITY);
        let mut state = self.state();
        // A sender whose receiver was dropped can never deliver: forget it.
        state
            .subscribers
            .retain(|subscriber| !subscriber.is_closed());
        state.subscribers.push(sender);
        receiver
    }
    // ANCHOR_END: fixed_subscribers

    // ANCHOR: fixed_workers
    fn start_worker(&self, _id: u64) {
        let stop = self.shutdown.child_token();
        let mut state = self.state();
        if state.workers.len() == WORKER_POOL {
            let oldest = state.workers.pop_front().expect("the pool is full");
            oldest.stop.cancel(); // the signal the seed never sends
        }
        state.workers.push_back(Worker {
            data: vec![0u8; WORKER_DATA_BYTES],
            stop: stop.clone(),
        });
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(WORKER_TICK) => {} // "work"
                }
            }
        });
    }

    fn shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {
            self.shutdown.cancel();
            self.tasks.close();
            self.tasks.wait().await;
            self.state().workers.clear();
        })
    }
    // ANCHOR_END: fixed_workers

    fn stats(&self) -> Stats {
        let mut state = self.state();
        state.cache.evict(Instant::now());
        state
            .subscribers
            .retain(|subscriber| !subscriber.is_closed());
        Stats {
            cache_entries: state.cache.entries.len(),
            subscribers: state.subscribers.len(),
            workers: state.workers.len(),
            retained_bytes: state.cache.bytes
                + state
                    .workers
                    .iter()
                    .map(|worker| worker.data.len())
                    .sum::<usize>(),
        }
    }
}
