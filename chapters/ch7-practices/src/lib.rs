//! Chapter 7: best practices that prove themselves.
//!
//! The seeds end with "best practices" for leak-free Go. Each one is ported
//! here twice: as Rust code usually gets it wrong (or as the seed itself gets
//! it wrong), and fixed, with a test measuring both.
//!
//! | practice | [`bad`] | [`good`] |
//! |---|---|---|
//! | workers under a deadline | the 5 s deadline bounds the *wait* (`timeout` on the join); the 10 workers never hear of it | a `CancellationToken` fired by the deadline; every worker `select!`s on it and is joined |
//! | a closed pipeline | the consumer keeps a sender to its own input for retries, so the channel never closes | senders dropped when done, every stage cancellable |
//! | a resource manager | the seed's `resources[removed:]` (an offset into a `Vec` that keeps the dropped elements), no bound, no `Drop` | `VecDeque::drain` frees what is removed; bounded; async `close` that joins; cleaner aborted on drop |
//! | reuse instead of churn | a new 1 KiB buffer per request | one buffer reused by its owner, or a bounded pool |
//! | timers in loops | a new `sleep` each time round a `select!` loop | one `Interval` for the whole loop |

pub mod bad;
pub mod good;

use std::time::Duration;

// Practice 1: `bestPracticeContext` (seed 002).

/// Workers started under the deadline (`for i := 0; i < 10; i++`).
pub const WORKERS: usize = 10;

/// How often each worker does a unit of work (`time.NewTicker(time.Millisecond * 100)`).
pub const TICK: Duration = Duration::from_millis(100);

/// The deadline the workers run under (`context.WithTimeout(..., time.Second*5)`).
pub const DEADLINE: Duration = Duration::from_secs(5);

// Practice 2: `bestPracticeChannel` (seed 002).

/// Jobs the producer sends (`for i := 0; i < 20; i++`).
pub const JOBS: u64 = 20;

/// Capacity of both channels (`make(chan int, 10)`).
pub const CHANNEL_CAPACITY: usize = 10;

/// Pause between two jobs (`time.Sleep(time.Millisecond * 100)`).
pub const PRODUCE_INTERVAL: Duration = Duration::from_millis(100);

/// The pipeline's deadline (`context.WithTimeout(..., time.Second*3)`).
pub const PIPELINE_DEADLINE: Duration = Duration::from_secs(3);

/// What a pipeline run delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineRun {
    /// Results the collector received, in arrival order.
    pub collected: Vec<u64>,
    /// Whether the deadline passed before the pipeline finished.
    pub deadline_passed: bool,
}

/// What the consumer does to a job (`job * 2`).
pub fn process(job: u64) -> u64 {
    job * 2
}

// Practice 3: `ResourceManager` (seed 002).

/// Resources the seed adds (`for i := 0; i < 30; i++`).
pub const RESOURCES_ADDED: usize = 30;

/// Bytes per resource (`rm.AddResource(i, 1024*10)`): 10 KiB, itself a
/// jemalloc size class, so live-byte counts are exact multiples of it.
pub const RESOURCE_SIZE: usize = 10 * 1024;

/// Pause between two additions (`time.Sleep(time.Millisecond * 200)`).
pub const ADD_INTERVAL: Duration = Duration::from_millis(200);

/// How often the cleaner runs (`time.NewTicker(time.Second * 2)`).
pub const CLEAN_INTERVAL: Duration = Duration::from_secs(2);

/// The cleaner trims only above this many resources (`len(rm.resources) > 10`),
/// then removes half of them.
pub const TRIM_ABOVE: usize = 10;

/// How long the seed waits after the last addition (`time.Sleep(time.Second * 5)`).
pub const FINAL_WAIT: Duration = Duration::from_secs(5);

/// One resource: an id and its data (the seed's `Resource`).
#[derive(Debug)]
pub struct Resource {
    /// The caller's id for it.
    pub id: usize,
    /// Its payload.
    pub data: Vec<u8>,
}

/// What the seed's scenario needs from a resource manager, so the bad and
/// the good one run the very same scenario.
pub trait ManagesResources {
    /// Adds a resource of `size` bytes (`AddResource`).
    fn add_resource(&self, id: usize, size: usize);
    /// Resources the manager counts as held (`GetResourceCount`).
    fn resource_count(&self) -> usize;
}

/// `bestPracticeResourceManagement`: adds 30 resources of 10 KiB, one every
/// 200 ms, then waits 5 s while the cleaner runs. Returns the counts the
/// seed prints: after additions 0, 5, 10, 15, 20, 25, and at the end.
pub async fn add_resources_like_the_seed(manager: &impl ManagesResources) -> Vec<usize> {
    let mut counts = Vec::new();
    for id in 0..RESOURCES_ADDED {
        manager.add_resource(id, RESOURCE_SIZE);
        tokio::time::sleep(ADD_INTERVAL).await;
        if id % 5 == 0 {
            counts.push(manager.resource_count());
        }
    }
    tokio::time::sleep(FINAL_WAIT).await;
    counts.push(manager.resource_count());
    counts
}

/// Not in the seed: the fixed manager never holds more resources than this.
/// The seed's own run peaks at 17 (just before a cleaning), so the bound
/// changes nothing in that run and caps every other one.
pub const MAX_RESOURCES: usize = 20;

// Practice 4: `sync.Pool` (seed 000).

/// Size of one request buffer (`make([]byte, 1024)` in the seed's `bufferPool`).
pub const BUFFER_SIZE: usize = 1024;

/// Not in the seed: the most buffers the fixed pool keeps. Go's `sync.Pool`
/// is emptied by the garbage collector; a Rust pool is emptied by nobody, so
/// it needs a bound or it keeps its peak forever.
pub const MAX_POOLED: usize = 64;

/// Not in the seed: a buffer that grew beyond this is freed, not pooled, so
/// one huge request cannot pin a huge buffer in the pool.
pub const MAX_POOLED_CAPACITY: usize = 64 * 1024;

/// Renders the response to request `request_id` into `response`: the id,
/// padded to `response_size` bytes ([`BUFFER_SIZE`] in the seed), reusing
/// whatever capacity `response` has.
pub fn render_response(request_id: u64, response_size: usize, response: &mut Vec<u8>) {
    response.clear();
    response.extend_from_slice(&request_id.to_le_bytes());
    response.resize(response_size, b' ');
}

/// A checksum of a response (a wrapping sum of its 8-byte words), so the
/// work cannot be optimised away.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|word| u64::from_le_bytes(word.try_into().expect("8 bytes")))
        .fold(0, u64::wrapping_add)
}

// Practice 5: `time.After` in a loop (seed 000 `worker`).

/// The period of the seed's loop (`case <-time.After(time.Second)`).
pub const PERIOD: Duration = Duration::from_secs(1);

/// Not in the seed: how often messages arrive in the message-loop variant,
/// faster than [`PERIOD`], as in any busy service.
pub const MESSAGE_INTERVAL: Duration = Duration::from_millis(500);

/// What a batching loop did: messages still waiting and flushes done.
#[derive(Debug, Default)]
pub struct Batches {
    /// Messages received and not yet flushed.
    pub pending: std::collections::VecDeque<u64>,
    /// Flushes done.
    pub flushes: usize,
    /// Messages flushed.
    pub flushed: usize,
}

impl Batches {
    /// Flushes every pending message.
    pub fn flush(&mut self) {
        self.flushed += self.pending.len();
        self.pending.clear();
        self.flushes += 1;
    }
}

/// Which timer a periodic loop uses (practice 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopTimer {
    /// A new `sleep` each time round the loop ([`bad`]).
    NewSleepEachTurn,
    /// One `Interval` for the whole loop ([`good`]).
    OneInterval,
}

/// Runs the seed's periodic worker with `timer` for `turns` periods, plus
/// half a period so the last turn completes, then cancels it. Returns the
/// units of work it did: one per turn.
pub async fn run_periodic_worker(timer: LoopTimer, turns: u32) -> usize {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let work_done = std::sync::atomic::AtomicUsize::new(0);
    let worker = async {
        match timer {
            LoopTimer::NewSleepEachTurn => {
                bad::periodic_worker_new_sleep(shutdown.clone(), &work_done).await
            }
            LoopTimer::OneInterval => {
                good::periodic_worker_interval(shutdown.clone(), &work_done).await
            }
        }
    };
    let stopper = async {
        tokio::time::sleep(PERIOD * turns + PERIOD / 2).await;
        shutdown.cancel();
    };
    tokio::join!(worker, stopper);
    work_done.into_inner()
}

/// Sends `count` messages into a batching loop, one every
/// [`MESSAGE_INTERVAL`], then closes the channel by dropping the sender.
pub async fn send_messages(messages: tokio::sync::mpsc::Sender<u64>, count: u64) {
    for message in 0..count {
        if messages.send(message).await.is_err() {
            return;
        }
        tokio::time::sleep(MESSAGE_INTERVAL).await;
    }
}

pub use leakscope::heap::thread_allocated_bytes;
