//! The bad side of each workload: what makes memory grow.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use tokio::sync::oneshot;

use crate::{
    BURST_OBJECT_SIZE, CACHE_VALUE_BYTES, LISTENER_BYTES, REQUEST_BUFFER_BYTES, TASK_BUFFER_BYTES,
};

// ANCHOR: listeners
/// Listeners for updates, by request.
pub type Listeners = Rc<RefCell<HashMap<u64, Vec<u8>>>>;

/// A request registers a listener (with its buffer) and returns without
/// removing it: the registry grows with every request served.
pub fn handle_request(listeners: &Listeners, request: u64) {
    listeners
        .borrow_mut()
        .insert(request, vec![request as u8; LISTENER_BYTES]);
    // ... the request's work ...
}
// ANCHOR_END: listeners

// ANCHOR: waiters
/// A request spawns a task that waits for a reply, and parks the reply's
/// sender in `pending`, which nobody answers or cleans: the task waits
/// forever, holding its buffer.
pub fn request_with_reply(pending: &mut Vec<oneshot::Sender<()>>) {
    let (reply, replied) = oneshot::channel::<()>();
    let buffer = vec![0u8; TASK_BUFFER_BYTES];
    tokio::spawn(async move {
        let _ = replied.await;
        drop(buffer);
    });
    pending.push(reply);
}
// ANCHOR_END: waiters

// ANCHOR: burst
/// A burst of small objects (a batch import, a spike of requests), freed
/// when it is done. jemalloc keeps the freed pages resident until its
/// decay timer returns them.
pub fn burst(objects: usize) {
    let burst: Vec<Box<[u8; BURST_OBJECT_SIZE]>> = (0..objects)
        .map(|index| Box::new([index as u8; BURST_OBJECT_SIZE]))
        .collect();
    std::hint::black_box(&burst);
}
// ANCHOR_END: burst

// ANCHOR: unbounded_cache
/// A cache of rendered pages keyed by URL, with no bound: every distinct
/// key stays.
#[derive(Debug, Default)]
pub struct UnboundedCache {
    pages: HashMap<u64, Vec<u8>>,
}

impl UnboundedCache {
    /// The page for `key`, rendered on a miss.
    pub fn get(&mut self, key: u64) -> &[u8] {
        self.pages
            .entry(key)
            .or_insert_with(|| vec![key as u8; CACHE_VALUE_BYTES])
    }
}
// ANCHOR_END: unbounded_cache

// ANCHOR: wave
/// Serves a wave of requests all at once: every request's buffer is live
/// at the same time, so the peak is the wave's size.
pub fn serve_wave(requests: usize) {
    let buffers: Vec<Vec<u8>> = (0..requests)
        .map(|request| vec![request as u8; REQUEST_BUFFER_BYTES])
        .collect();
    std::hint::black_box(&buffers);
}
// ANCHOR_END: wave

// ANCHOR: blocking_pool
/// A runtime with tokio's default blocking pool: up to 512 threads, each
/// kept 10 s after its last job.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
// ANCHOR_END: blocking_pool
