//! Chapter 5: heap profiling a leaky HTTP service, pprof-style.
//!
//! The seed's `LeakyService` (a cache, subscriber channels and workers) runs
//! behind a real axum server with the endpoints a Go developer reaches for:
//! `/leak`, `/status`, `/debug/pprof/heap` (which `go tool pprof` reads) and a
//! task dump, the counterpart of `/debug/pprof/goroutine`.
//!
//! | part of the service | [`bad`] | [`good`] |
//! |---|---|---|
//! | cache | a map that only grows | bounded (oldest out first) and expiring |
//! | subscribers | senders kept after their receivers are gone | closed channels are swept out |
//! | workers | a stop signal that is never sent | a bounded pool: the oldest is stopped; all stop on shutdown |
//!
//! Both implement [`SeedService`], the seed's API, and [`seed_iteration`] is
//! one turn of the seed's load loop, shared by `/leak` and the built-in load.

pub mod bad;
pub mod good;
pub mod server;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Bytes cached per iteration (seed 002 tools §2: `service.CacheData(key, 1024*5)`).
pub const CACHE_ENTRY_BYTES: usize = 5 * 1024;

/// A subscriber is added every 10th iteration (seed: `if i%10 == 0`).
pub const SUBSCRIBER_EVERY: u64 = 10;

/// A worker is started every 20th iteration (seed: `if i%20 == 0`).
pub const WORKER_EVERY: u64 = 20;

/// Buffer of each subscriber channel (seed: `make(chan string, 100)`).
pub const SUBSCRIBER_CAPACITY: usize = 100;

/// Data each worker holds (seed: `data: make([]byte, 1024*10)`, "10KB per worker").
pub const WORKER_DATA_BYTES: usize = 10 * 1024;

/// How often a worker wakes up to "work" (seed: `time.Sleep(time.Millisecond * 100)`).
pub const WORKER_TICK: Duration = Duration::from_millis(100);

/// Pause between iterations of the load loop (seed: `time.Sleep(time.Millisecond * 50)`).
pub const LOAD_INTERVAL: Duration = Duration::from_millis(50);

/// How often the server prints its status line (seed: `time.Sleep(time.Second * 5)`).
pub const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Where the server listens unless told otherwise: the seed's pprof port, on
/// loopback only (seed: `http.ListenAndServe("localhost:6060", nil)`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:6060";

/// Past this many retained bytes the leak endpoints refuse with 503, so a
/// demo cannot exhaust the machine.
pub const DEFAULT_LEAK_CAP_BYTES: usize = 256 << 20;

/// Largest `size` a `/leak` request may ask for.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// Longest `id` a `/leak` request may use.
pub const MAX_ID_LEN: usize = 128;

/// Entries the fixed cache keeps (5 MiB of the seed's 5 KB entries).
pub const CACHE_CAPACITY: usize = 1024;

/// How long the fixed cache keeps an entry.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// Workers the fixed service keeps running at once.
pub const WORKER_POOL: usize = 4;

/// Requests the report and the demo send per phase: 100 seconds of the
/// seed's load loop (2000 turns × 50 ms).
pub const REQUESTS_PER_PHASE: u64 = 2000;

/// What a service holds, as `/status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Entries in the cache.
    pub cache_entries: usize,
    /// Subscriber channels the service keeps.
    pub subscribers: usize,
    /// Workers the service keeps (running, or stopped but not forgotten).
    pub workers: usize,
    /// Bytes of cached data and worker data the service holds.
    pub retained_bytes: usize,
}

/// The seed's `LeakyService` API, implemented by [`bad::LeakyService`] and
/// [`good::FixedService`].
pub trait SeedService: Send + Sync + 'static {
    /// `"leaky"` or `"fixed"`.
    fn name(&self) -> &'static str;
    /// Stores `size` bytes under `key` (seed: `CacheData`).
    fn cache_data(&self, key: String, size: usize);
    /// Registers a subscriber and returns its receiving end (seed: `AddSubscriber`).
    fn add_subscriber(&self) -> mpsc::Receiver<String>;
    /// Starts a background worker (seed: `StartWorker`). Needs a tokio runtime.
    fn start_worker(&self, id: u64);
    /// What the service holds (seed: `GetStats`).
    fn stats(&self) -> Stats;
    /// Stops what the service started, as far as it knows how.
    fn shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Why [`seed_iteration`] did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapReached {
    /// Bytes the service held.
    pub retained_bytes: usize,
    /// The cap.
    pub cap_bytes: usize,
}

/// Bytes one iteration adds to what a service retains, at most.
pub fn iteration_bytes(iteration: u64, entry_bytes: usize) -> usize {
    let worker = if iteration.is_multiple_of(WORKER_EVERY) {
        WORKER_DATA_BYTES
    } else {
        0
    };
    entry_bytes + worker
}

// ANCHOR: seed_iteration
/// One turn of the seed's load loop: cache an entry; every 10th turn add a
/// subscriber (whose receiver the caller drops at once, as the seed does);
/// every 20th turn start a worker. Refuses once the service would hold more
/// than `cap_bytes`.
pub fn seed_iteration(
    service: &dyn SeedService,
    iteration: u64,
    key: String,
    entry_bytes: usize,
    cap_bytes: usize,
) -> Result<(), CapReached> {
    let retained_bytes = service.stats().retained_bytes;
    if retained_bytes + iteration_bytes(iteration, entry_bytes) > cap_bytes {
        return Err(CapReached {
            retained_bytes,
            cap_bytes,
        });
    }
    service.cache_data(key, entry_bytes);
    if iteration.is_multiple_of(SUBSCRIBER_EVERY) {
        drop(service.add_subscriber());
    }
    if iteration.is_multiple_of(WORKER_EVERY) {
        service.start_worker(iteration);
    }
    Ok(())
}
// ANCHOR_END: seed_iteration

/// Runs `turns` turns of the seed's loop on `service`, with the seed's keys
/// (`cache_key_0`, `cache_key_1`, …) and no cap: the workload of the tests
/// that call the service directly, without HTTP.
pub fn run_seed_loop(service: &dyn SeedService, turns: u64) {
    for iteration in 0..turns {
        let key = format!("cache_key_{iteration}");
        seed_iteration(service, iteration, key, CACHE_ENTRY_BYTES, usize::MAX)
            .expect("no service holds usize::MAX bytes");
    }
}
