//! The seed's best practices as they go wrong: ported faithfully where the
//! seed itself is flawed, and as Rust code commonly mistranslates them where
//! the seed is right.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::{Instant, error::Elapsed};
use tokio_util::sync::CancellationToken;

use crate::{
    Batches, CHANNEL_CAPACITY, CLEAN_INTERVAL, DEADLINE, JOBS, ManagesResources, PERIOD,
    PIPELINE_DEADLINE, PRODUCE_INTERVAL, PipelineRun, Resource, TICK, TRIM_ABOVE, WORKERS, process,
};

// ANCHOR: deadline_on_the_wait
/// One worker of `bestPracticeContext`, minus the `ctx.Done()` branch: it
/// does a unit of work every tick and knows of no deadline.
pub async fn ticking_worker(work_done: Arc<AtomicUsize>) {
    let mut ticker = tokio::time::interval_at(Instant::now() + TICK, TICK);
    loop {
        ticker.tick().await;
        work_done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Starts the 10 workers and puts the seed's 5 s deadline on *waiting* for
/// them. `timeout` stops the wait, not the work: when it fires, the
/// `JoinHandle`s are dropped, which detaches the workers, and they tick on.
pub async fn run_workers_with_deadline_on_the_wait(work_done: Arc<AtomicUsize>) -> Elapsed {
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| tokio::spawn(ticking_worker(work_done.clone())))
        .collect();
    let join_all = async {
        for worker in workers {
            worker.await.ok();
        }
    };
    tokio::time::timeout(DEADLINE, join_all)
        .await
        .expect_err("the workers never finish, so the wait always times out")
}
// ANCHOR_END: deadline_on_the_wait

// ANCHOR: consumer_keeps_a_sender
/// The seed's consumer, made not to wait on a slow collector: when the
/// results channel is full, the job goes back on the jobs queue to be
/// retried later. For that it holds a sender to its own input, so the jobs
/// channel can never close, `recv()` never returns `None`, and the loop
/// never ends.
async fn consumer_with_requeue(
    mut jobs: mpsc::Receiver<u64>,
    requeue: mpsc::Sender<u64>,
    results: mpsc::Sender<u64>,
) {
    while let Some(job) = jobs.recv().await {
        match results.try_send(process(job)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => requeue.send(job).await.unwrap_or(()), // retry later
            Err(TrySendError::Closed(_)) => return,
        }
    }
}
// ANCHOR_END: consumer_keeps_a_sender

// ANCHOR: unclosed_pipeline
/// `bestPracticeChannel` with that consumer: the producer sends its 20 jobs
/// and drops its sender, but the consumer's retry sender keeps `jobs` open.
/// The caller's 3 s deadline bounds only its own wait, as in practice 1.
pub async fn run_pipeline_with_retry_sender() -> PipelineRun {
    let (jobs_tx, jobs_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (results_tx, mut results_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let collected = Arc::new(Mutex::new(Vec::new()));

    tokio::spawn(consumer_with_requeue(jobs_rx, jobs_tx.clone(), results_tx));
    tokio::spawn(async move {
        for job in 0..JOBS {
            if jobs_tx.send(job).await.is_err() {
                return;
            }
            tokio::time::sleep(PRODUCE_INTERVAL).await;
        }
    }); // jobs_tx dropped here: Go's `defer close(jobs)`, or so it seems
    let collector = tokio::spawn({
        let collected = collected.clone();
        async move {
            while let Some(result) = results_rx.recv().await {
                collected.lock().unwrap().push(result);
            }
        }
    });

    let waited = tokio::time::timeout(PIPELINE_DEADLINE, collector).await;
    let collected = collected.lock().unwrap().clone();
    PipelineRun {
        collected,
        deadline_passed: waited.is_err(),
    }
}
// ANCHOR_END: unclosed_pipeline

// ANCHOR: go_slice
/// The seed's `rm.resources`, a Go slice: a view `[first_live..]` into a
/// backing array. Re-slicing (`rm.resources[removed:]`) only moves the start
/// of the view; the elements before it stay in the array, and so do their
/// buffers. Go lets go of them only when `append` outgrows the array and
/// copies the view into a new one; that moment is modelled in [`Self::push`].
#[derive(Debug, Default)]
struct GoSlice {
    backing: Vec<Resource>,
    first_live: usize,
}

impl GoSlice {
    fn len(&self) -> usize {
        self.backing.len() - self.first_live
    }

    /// `rm.resources = rm.resources[removed:]`
    fn reslice_from(&mut self, removed: usize) {
        self.first_live += removed;
    }

    /// `rm.resources = append(rm.resources, resource)`
    fn push(&mut self, resource: Resource) {
        if self.backing.len() == self.backing.capacity() {
            // append reallocates: only the view is copied, the rest is garbage.
            self.backing.drain(..self.first_live);
            self.first_live = 0;
        }
        self.backing.push(resource);
    }
}
// ANCHOR_END: go_slice

// ANCHOR: seed_resource_manager
/// The seed's `ResourceManager`: a cleaner task trims the list every 2 s,
/// `close` stops it.
#[derive(Debug)]
pub struct ResourceManager {
    resources: Arc<Mutex<GoSlice>>,
    shutdown: CancellationToken,
}

impl ResourceManager {
    /// `NewResourceManager`: starts the cleaner (`go rm.cleanup()`), which
    /// shares the resources and runs until `close` cancels it.
    pub fn new() -> Self {
        let resources = Arc::new(Mutex::new(GoSlice::default()));
        let shutdown = CancellationToken::new();
        tokio::spawn(clean_periodically(resources.clone(), shutdown.clone()));
        Self {
            resources,
            shutdown,
        }
    }

    /// Resources still held, removed ones included (the backing array's length).
    pub fn resources_held(&self) -> usize {
        self.resources.lock().unwrap().backing.len()
    }

    /// `Close`: cancels the cleaner and drops the resources, but returns
    /// without waiting for the cleaner to end.
    pub fn close(&self) {
        self.shutdown.cancel();
        *self.resources.lock().unwrap() = GoSlice::default();
    }
}

impl ManagesResources for ResourceManager {
    /// `AddResource`: no bound, only the cleaner keeps the count down.
    fn add_resource(&self, id: usize, size: usize) {
        let resource = Resource {
            id,
            data: vec![0; size],
        };
        self.resources.lock().unwrap().push(resource);
    }

    /// `GetResourceCount`: the length of the view.
    fn resource_count(&self) -> usize {
        self.resources.lock().unwrap().len()
    }
}

/// `cleanup`: every 2 s, above 10 resources, removes the older half.
async fn clean_periodically(resources: Arc<Mutex<GoSlice>>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval_at(Instant::now() + CLEAN_INTERVAL, CLEAN_INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let mut resources = resources.lock().unwrap();
                if resources.len() > TRIM_ABOVE {
                    let removed = resources.len() / 2;
                    resources.reslice_from(removed);
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}
// ANCHOR_END: seed_resource_manager

impl Default for ResourceManager {
    fn default() -> Self {
        Self::new()
    }
}

// ANCHOR: allocate_per_request
/// Handles one request by rendering its response into a fresh buffer: one
/// allocation and one free per request (Go: garbage for the GC).
pub fn handle_request_with_new_buffer(request_id: u64, response_size: usize) -> u64 {
    let mut response = Vec::with_capacity(response_size);
    crate::render_response(request_id, response_size, &mut response);
    crate::checksum(&response)
}
// ANCHOR_END: allocate_per_request

// ANCHOR: new_sleep_each_iteration
/// The seed's `worker`: `case <-time.After(time.Second)` becomes a new
/// `sleep` every time round the loop.
pub async fn periodic_worker_new_sleep(shutdown: CancellationToken, work_done: &AtomicUsize) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PERIOD) => {
                work_done.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The same loop with a message branch, as most real loops have: count
/// messages, flush once per period. A message restarts the one-second sleep,
/// so while messages come more often than that, the flush never runs.
pub async fn batcher_new_sleep(mut messages: mpsc::Receiver<u64>) -> Batches {
    let mut batches = Batches::default();
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Some(message) => batches.pending.push_back(message),
                None => return batches,
            },
            _ = tokio::time::sleep(PERIOD) => batches.flush(),
        }
    }
}
// ANCHOR_END: new_sleep_each_iteration
