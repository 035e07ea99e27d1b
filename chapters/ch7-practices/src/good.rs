//! The fixed versions: every task has an owner that stops it and waits for
//! it, every channel closes, every buffer is either freed or bounded.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use crate::{
    BUFFER_SIZE, Batches, CHANNEL_CAPACITY, CLEAN_INTERVAL, DEADLINE, JOBS, MAX_POOLED,
    MAX_POOLED_CAPACITY, MAX_RESOURCES, ManagesResources, PERIOD, PRODUCE_INTERVAL, PipelineRun,
    Resource, TICK, TRIM_ABOVE, WORKERS, checksum, process, render_response,
};

/// How a run of workers under a deadline ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineRun {
    /// Units of work each worker did.
    pub ticks_per_worker: Vec<usize>,
    /// From the start until the last worker had returned.
    pub all_stopped_after: Duration,
}

// ANCHOR: worker_under_deadline
/// One worker of `bestPracticeContext`: a unit of work every tick until
/// `stop` is cancelled. Returns how many units it did.
pub async fn worker_until_cancelled(stop: CancellationToken) -> usize {
    let mut ticker = tokio::time::interval_at(Instant::now() + TICK, TICK);
    let mut ticks = 0;
    loop {
        tokio::select! {
            biased; // once stopped, start no further unit of work
            _ = stop.cancelled() => return ticks,
            _ = ticker.tick() => ticks += 1,
        }
    }
}

/// Runs the 10 workers until the 5 s deadline or until `shutdown` is
/// cancelled, whichever comes first (Go's `context.WithTimeout(parent, 5s)`),
/// then waits for every one of them (`wg.Wait()`).
pub async fn run_workers_under_deadline(shutdown: CancellationToken) -> DeadlineRun {
    let started = Instant::now();
    let stop = shutdown.child_token();
    // A JoinSet aborts its tasks if it is dropped, so even a caller that
    // gives up on this function cannot leave the workers behind.
    let mut workers = JoinSet::new();
    for _ in 0..WORKERS {
        workers.spawn(worker_until_cancelled(stop.clone()));
    }

    tokio::select! {
        _ = tokio::time::sleep(DEADLINE) => stop.cancel(),
        _ = stop.cancelled() => {}
    }

    let mut ticks_per_worker = Vec::with_capacity(WORKERS);
    while let Some(joined) = workers.join_next().await {
        ticks_per_worker.push(joined.expect("a worker does not panic"));
    }
    DeadlineRun {
        ticks_per_worker,
        all_stopped_after: started.elapsed(),
    }
}
// ANCHOR_END: worker_under_deadline

// ANCHOR: closed_pipeline
/// `bestPracticeChannel`: producer → consumer → collector over bounded
/// channels. Each sender has exactly one owner, so each channel closes when
/// its stage returns; producer and consumer also stop when the deadline
/// cancels them, and the collector then drains what is left and ends.
pub async fn run_pipeline(deadline: Duration) -> PipelineRun {
    let shutdown = CancellationToken::new();
    let stages = TaskTracker::new();
    let (jobs_tx, mut jobs_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (results_tx, mut results_rx) = mpsc::channel(CHANNEL_CAPACITY);

    stages.spawn(shutdown.clone().run_until_cancelled_owned(async move {
        for job in 0..JOBS {
            if jobs_tx.send(job).await.is_err() {
                return;
            }
            tokio::time::sleep(PRODUCE_INTERVAL).await;
        }
    })); // returning drops jobs_tx: the consumer's recv() then yields None
    stages.spawn(shutdown.clone().run_until_cancelled_owned(async move {
        while let Some(job) = jobs_rx.recv().await {
            if results_tx.send(process(job)).await.is_err() {
                return;
            }
        }
    })); // returning drops results_tx: the collector's loop then ends
    let collector = stages.spawn(async move {
        let mut collected = Vec::new();
        while let Some(result) = results_rx.recv().await {
            collected.push(result);
        }
        collected
    });
    stages.close();

    let deadline_passed = tokio::select! {
        _ = tokio::time::sleep(deadline) => true,
        _ = stages.wait() => false,
    };
    shutdown.cancel();
    stages.wait().await;
    PipelineRun {
        collected: collector.await.expect("the collector does not panic"),
        deadline_passed,
    }
}
// ANCHOR_END: closed_pipeline

// ANCHOR: resource_manager
/// The seed's `ResourceManager`, fixed: trimming frees what it removes, the
/// count is bounded, `close` waits for the cleaner, and dropping the manager
/// without `close` still stops the cleaner and frees everything.
#[derive(Debug)]
pub struct ResourceManager {
    resources: Arc<Mutex<VecDeque<Resource>>>,
    shutdown: CancellationToken,
    cleaner: AbortOnDropHandle<()>,
}

impl ResourceManager {
    /// Starts the cleaner; the manager owns it.
    pub fn new() -> Self {
        let resources = Arc::new(Mutex::new(VecDeque::with_capacity(MAX_RESOURCES)));
        let shutdown = CancellationToken::new();
        let cleaner = tokio::spawn(clean_periodically(resources.clone(), shutdown.clone()));
        Self {
            resources,
            shutdown,
            cleaner: AbortOnDropHandle::new(cleaner),
        }
    }

    /// Stops the cleaner, waits until it has returned, then frees every
    /// resource. When this returns, nothing of the manager is left.
    pub async fn close(self) {
        self.shutdown.cancel();
        self.cleaner.await.expect("the cleaner does not panic");
        self.resources.lock().unwrap().clear();
    }
}

impl ManagesResources for ResourceManager {
    /// Adds a resource; at the bound, the oldest one is dropped to make room.
    fn add_resource(&self, id: usize, size: usize) {
        let mut resources = self.resources.lock().unwrap();
        if resources.len() == MAX_RESOURCES {
            resources.pop_front();
        }
        resources.push_back(Resource {
            id,
            data: vec![0; size],
        });
    }

    fn resource_count(&self) -> usize {
        self.resources.lock().unwrap().len()
    }
}

/// Every 2 s, above 10 resources, removes the older half, and frees it.
async fn clean_periodically(
    resources: Arc<Mutex<VecDeque<Resource>>>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval_at(Instant::now() + CLEAN_INTERVAL, CLEAN_INTERVAL);
    while shutdown.run_until_cancelled(ticker.tick()).await.is_some() {
        let mut resources = resources.lock().unwrap();
        if resources.len() > TRIM_ABOVE {
            let removed = resources.len() / 2;
            resources.drain(..removed); // dropped here, buffers and all
        }
    }
}
// ANCHOR_END: resource_manager

impl Default for ResourceManager {
    fn default() -> Self {
        Self::new()
    }
}

// ANCHOR: buffer_pool
/// A pool of request buffers: `sync.Pool`'s idea, with the bounds Go gets
/// from its garbage collector made explicit. It keeps at most
/// [`MAX_POOLED`] buffers, none larger than [`MAX_POOLED_CAPACITY`].
#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// An empty pool; buffers are created on first use.
    pub fn new() -> Self {
        Self {
            free: Mutex::new(Vec::with_capacity(MAX_POOLED)),
        }
    }

    /// A buffer from the pool, or a new one if the pool is empty. It goes
    /// back when the guard is dropped.
    pub fn get(&self) -> PooledBuffer<'_> {
        let pooled = self.free.lock().unwrap().pop();
        PooledBuffer {
            buffer: pooled.unwrap_or_else(|| Vec::with_capacity(BUFFER_SIZE)),
            pool: self,
        }
    }

    /// Buffers waiting in the pool.
    pub fn pooled(&self) -> usize {
        self.free.lock().unwrap().len()
    }

    fn put_back(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() > MAX_POOLED_CAPACITY {
            return; // freed: one huge request must not pin a huge buffer
        }
        buffer.clear();
        let mut free = self.free.lock().unwrap();
        if free.len() < MAX_POOLED {
            free.push(buffer);
        } // else freed: the pool never keeps more than its bound
    }
}

/// A buffer borrowed from a [`BufferPool`]; dropping it returns the buffer.
#[derive(Debug)]
pub struct PooledBuffer<'pool> {
    buffer: Vec<u8>,
    pool: &'pool BufferPool,
}

impl Drop for PooledBuffer<'_> {
    fn drop(&mut self) {
        self.pool.put_back(std::mem::take(&mut self.buffer));
    }
}

/// Handles one request with a pooled buffer: after the first request, no
/// allocation at all.
pub fn handle_request_with_pooled_buffer(
    pool: &BufferPool,
    request_id: u64,
    response_size: usize,
) -> u64 {
    let mut response = pool.get();
    render_response(request_id, response_size, &mut response);
    checksum(&response)
}
// ANCHOR_END: buffer_pool

// ANCHOR: reused_buffer
/// Handles one request in a buffer its caller owns and passes to every
/// request (one per connection or per worker): no allocation after the
/// first request, and no lock either.
pub fn handle_request_reusing_buffer(
    response: &mut Vec<u8>,
    request_id: u64,
    response_size: usize,
) -> u64 {
    render_response(request_id, response_size, response);
    checksum(response)
}
// ANCHOR_END: reused_buffer

impl Default for BufferPool {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for PooledBuffer<'_> {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.buffer
    }
}

impl DerefMut for PooledBuffer<'_> {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }
}

// ANCHOR: one_interval
/// The seed's `worker` with one `Interval` for the whole loop.
pub async fn periodic_worker_interval(shutdown: CancellationToken, work_done: &AtomicUsize) {
    let mut ticker = tokio::time::interval_at(Instant::now() + PERIOD, PERIOD);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                work_done.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The message loop with one `Interval`: messages do not restart it, so the
/// flush runs once per period however busy the loop is.
pub async fn batcher_interval(mut messages: mpsc::Receiver<u64>) -> Batches {
    let mut flush_ticker = tokio::time::interval_at(Instant::now() + PERIOD, PERIOD);
    flush_ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut batches = Batches::default();
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Some(message) => batches.pending.push_back(message),
                None => return batches,
            },
            _ = flush_ticker.tick() => batches.flush(),
        }
    }
}
// ANCHOR_END: one_interval
