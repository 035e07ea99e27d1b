//! The leaking service: a faithful port of the seed's `LeakyService`
//! (002 tools §2). Its cache never evicts, it keeps every subscriber's
//! sender after the receiver is gone, and it never sends its workers' stop
//! signal.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

use crate::{SUBSCRIBER_CAPACITY, SeedService, Stats, WORKER_DATA_BYTES, WORKER_TICK};

// ANCHOR: leaky_service
/// The seed's `LeakyService`: everything it is given, it keeps.
#[derive(Debug, Default)]
pub struct LeakyService {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    cache: HashMap<String, Vec<u8>>,
    subscribers: Vec<mpsc::Sender<String>>,
    workers: Vec<Worker>,
    retained_bytes: usize,
}

#[derive(Debug)]
struct Worker {
    #[expect(dead_code, reason = "the seed keeps the id but never reads it")]
    id: u64,
    #[expect(dead_code, reason = "held only to take memory, as in the seed")]
    data: Vec<u8>,
    // The compiler notices what the seed's authors did not: the stop signal
    // is kept but never used.
    #[expect(dead_code, reason = "the leak: nothing ever sends the stop signal")]
    stop: oneshot::Sender<()>,
}
// ANCHOR_END: leaky_service

impl LeakyService {
    /// An empty service.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("no code panics while holding the lock")
    }
}

impl SeedService for LeakyService {
    fn name(&self) -> &'static str {
        "leaky"
    }

    // ANCHOR: leaky_methods
    // Keeps adding to the cache and never cleans it (seed: scenario 1).
    fn cache_data(&self, key: String, size: usize) {
        let mut state = self.state();
        let replaced = state.cache.insert(key, vec![0u8; size]);
        state.retained_bytes += size;
        state.retained_bytes -= replaced.map_or(0, |old| old.len());
    }

    // The sender stays in the list after its receiver is gone (scenario 2).
    fn add_subscriber(&self) -> mpsc::Receiver<String> {
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_CAPACITY);
        self.state().subscribers.push(sender);
        receiver
    }

    // The worker waits for a stop signal that never comes (scenario 3).
    fn start_worker(&self, id: u64) {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let data = vec![0u8; WORKER_DATA_BYTES];
        let mut state = self.state();
        state.retained_bytes += data.len();
        state.workers.push(Worker { id, data, stop });
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(WORKER_TICK) => {} // "work"
                }
            }
        });
    }
    // ANCHOR_END: leaky_methods

    fn stats(&self) -> Stats {
        let state = self.state();
        Stats {
            cache_entries: state.cache.len(),
            subscribers: state.subscribers.len(),
            workers: state.workers.len(),
            retained_bytes: state.retained_bytes,
        }
    }

    // The seed has no way to stop its workers, and neither has this port.
    fn shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}
