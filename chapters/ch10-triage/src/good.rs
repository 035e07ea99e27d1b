//! The good side of each workload: the fix, or (for retention, arenas and
//! ratchets) the knob that bounds what the allocator keeps.

use std::collections::{HashMap, VecDeque};

use tokio::sync::oneshot;

use crate::bad::Listeners;
use crate::{
    BURST_OBJECT_SIZE, CACHE_VALUE_BYTES, LISTENER_BYTES, REQUEST_BUFFER_BYTES, TASK_BUFFER_BYTES,
};

// ANCHOR: subscription
/// A listener that removes itself when the request ends.
#[derive(Debug)]
pub struct Subscription {
    listeners: Listeners,
    request: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.listeners.borrow_mut().remove(&self.request);
    }
}

/// The request holds its subscription and drops it on the way out.
pub fn handle_request(listeners: &Listeners, request: u64) {
    listeners
        .borrow_mut()
        .insert(request, vec![request as u8; LISTENER_BYTES]);
    let _subscription = Subscription {
        listeners: listeners.clone(),
        request,
    };
    // ... the request's work ...
}
// ANCHOR_END: subscription

// ANCHOR: waiters
/// The request owns the reply's sender and drops it when it is done: the
/// waiting task wakes with an error and ends.
pub fn request_with_reply() {
    let (reply, replied) = oneshot::channel::<()>();
    let buffer = vec![0u8; TASK_BUFFER_BYTES];
    tokio::spawn(async move {
        let _ = replied.await;
        drop(buffer);
    });
    drop(reply);
}
// ANCHOR_END: waiters

// ANCHOR: burst_then_purge
/// The same burst; when it is freed, the allocator is told to return the
/// freed pages now (jemalloc `arena.<all>.purge`, glibc `malloc_trim(0)`).
pub fn burst_then_purge(objects: usize) {
    let burst: Vec<Box<[u8; BURST_OBJECT_SIZE]>> = (0..objects)
        .map(|index| Box::new([index as u8; BURST_OBJECT_SIZE]))
        .collect();
    std::hint::black_box(&burst);
    drop(burst);
    leakscope::doctor::purge_probe().expect("jemalloc or glibc to purge");
}
// ANCHOR_END: burst_then_purge

// ANCHOR: bounded_cache
/// The cache with a bound: past `capacity` pages, the oldest goes.
#[derive(Debug)]
pub struct BoundedCache {
    pages: HashMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl BoundedCache {
    /// An empty cache holding at most `capacity` pages.
    pub fn new(capacity: usize) -> Self {
        Self {
            pages: HashMap::with_capacity(capacity + 1),
            order: VecDeque::with_capacity(capacity + 1),
            capacity,
        }
    }

    /// The page for `key`, rendered on a miss (evicting the oldest).
    pub fn get(&mut self, key: u64) -> &[u8] {
        if !self.pages.contains_key(&key) {
            if self.order.len() == self.capacity
                && let Some(oldest) = self.order.pop_front()
            {
                self.pages.remove(&oldest);
            }
            self.order.push_back(key);
        }
        self.pages
            .entry(key)
            .or_insert_with(|| vec![key as u8; CACHE_VALUE_BYTES])
    }
}
// ANCHOR_END: bounded_cache

// ANCHOR: wave
/// Serves a wave at most `limit` requests at a time (what a semaphore or
/// a connection limit does): the peak stays at `limit` buffers however big
/// the wave.
pub fn serve_wave(requests: usize, limit: usize) {
    let mut remaining = requests;
    while remaining > 0 {
        let batch = remaining.min(limit);
        let buffers: Vec<Vec<u8>> = (0..batch)
            .map(|request| vec![request as u8; REQUEST_BUFFER_BYTES])
            .collect();
        std::hint::black_box(&buffers);
        remaining -= batch;
    }
}
// ANCHOR_END: wave

// ANCHOR: blocking_pool
/// A runtime whose blocking pool has at most `threads` threads: a burst
/// of blocking jobs queues instead of starting a thread per job.
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(threads)
        .build()
        .expect("a tokio runtime")
}
// ANCHOR_END: blocking_pool
