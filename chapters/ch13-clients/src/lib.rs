//! Chapter 13: clients, pools and threads.
//!
//! Five shapes of memory growth that real Rust services have reported, each
//! with the version that grows and the version that does not:
//!
//! | shape | [`bad`] | [`good`] |
//! |---|---|---|
//! | client per request | a new `reqwest::Client` for every request: a new pool, connection and handshake each time | one client, shared: one kept-alive connection |
//! | `Box::leak` in a handler | a handler leaks a string per request to meet a `'static` bound | the type borrows for the request's lifetime instead |
//! | per-thread caches × thread churn | scratch buffers kept per thread id, so every retired blocking thread leaves one behind | a pool of scratch buffers not tied to threads, bounded by how many are in use at once |
//! | pooled connection buffers | each pooled connection keeps the read buffer its largest response needed | the buffer goes back to its usual size once the response is read |
//! | a map after a spike | expired entries are removed, the table's capacity stays | the map is shrunk after the sweep |

pub mod bad;
pub mod good;
pub mod loopback;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

use tokio::time::Instant;

// ---- a client per request -------------------------------------------------

/// Requests each side of the client scenario sends.
pub const REQUESTS: usize = 20;

/// What the loopback HTTP server answers.
pub const GREETING: &str = "hello";

// ---- Box::leak in a handler -----------------------------------------------

/// Requests the handler scenario serves.
pub const HANDLED_REQUESTS: usize = 1000;

/// Length of the audience string each request builds: `tenant-0042` plus
/// `.api.audience.example`. 32 is a jemalloc size class, so a leaked string
/// costs exactly this much.
pub const AUDIENCE_BYTES: usize = 32;

/// The tenant id of request `n`: always 11 bytes long.
pub fn tenant_id(n: usize) -> String {
    format!("tenant-{:04}", n % 10_000)
}

/// The audience a tenant's tokens must carry.
pub fn audience_for(tenant: &str) -> String {
    format!("{tenant}.api.audience.example")
}

// ---- per-thread caches × thread churn -------------------------------------

/// Scratch space one blocking job uses (a size class: 16 × 4 KiB).
pub const SCRATCH_BYTES: usize = 64 * 1024;

/// Blocking jobs in the thread-churn scenario, each on a thread of its own.
pub const CHURNED_THREADS: usize = 50;

/// How long an idle blocking thread waits for work before it exits. tokio's
/// default is 10 s; shortened so the scenario's threads retire at once.
pub const THREAD_KEEP_ALIVE: Duration = Duration::from_millis(1);

/// Scratch buffers a blocking job borrows for its work, however they are kept.
pub trait ScratchSpace: Send + Sync + 'static {
    /// Runs `work` with a scratch buffer.
    fn with_scratch(&self, work: &mut dyn FnMut(&mut Vec<u8>));

    /// Bytes of scratch space kept between jobs.
    fn retained_bytes(&self) -> usize;
}

/// The blocking work: renders `job` into scratch space and returns a checksum.
pub fn render_report(scratch: &dyn ScratchSpace, job: usize) -> u64 {
    let mut checksum = 0;
    scratch.with_scratch(&mut |buffer| {
        buffer.clear();
        buffer.resize(SCRATCH_BYTES, job as u8);
        checksum = buffer.iter().map(|&byte| u64::from(byte)).sum();
    });
    checksum
}

/// A runtime whose blocking threads retire as soon as they are idle.
pub fn churning_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(THREAD_KEEP_ALIVE)
        .build()
        .expect("a tokio runtime")
}

thread_local! {
    // Dropped when the thread exits: tells the caller the thread retired.
    static RETIREMENT: std::cell::RefCell<Option<RetirementSignal>> =
        const { std::cell::RefCell::new(None) };
}

struct RetirementSignal(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for RetirementSignal {
    fn drop(&mut self) {
        if let Some(retired) = self.0.take() {
            let _ = retired.send(());
        }
    }
}

/// Runs `jobs` jobs through `spawn_blocking`, waiting after each one until
/// its thread has retired, as a blocking pool does between bursts of work.
/// Returns the ids of the threads that ran them: one new thread per job.
pub async fn render_on_retiring_threads(
    scratch: Arc<dyn ScratchSpace>,
    jobs: usize,
) -> Vec<ThreadId> {
    let mut threads = Vec::with_capacity(jobs);
    for job in 0..jobs {
        let (retired_tx, retired_rx) = tokio::sync::oneshot::channel();
        let scratch = Arc::clone(&scratch);
        let thread = tokio::task::spawn_blocking(move || {
            RETIREMENT
                .with(|signal| *signal.borrow_mut() = Some(RetirementSignal(Some(retired_tx))));
            render_report(&*scratch, job);
            std::thread::current().id()
        })
        .await
        .expect("the blocking job does not panic");
        tokio::time::timeout(Duration::from_secs(5), retired_rx)
            .await
            .expect("an idle blocking thread retires within its keep-alive")
            .expect("the thread signals when it exits");
        threads.push(thread);
    }
    threads
}

// ---- pooled connection buffers --------------------------------------------

/// Connections in the pool.
pub const POOL_SIZE: usize = 4;

/// The spike: one response this large on every pooled connection (1 MiB).
pub const LARGE_RESPONSE_BYTES: usize = 1024 * 1024;

/// After the spike: many small responses.
pub const SMALL_RESPONSE_BYTES: usize = 1024;

/// Small queries sent after the spike.
pub const SMALL_QUERIES: usize = 100;

/// The read buffer a connection starts with and goes back to: 8 KiB, where
/// sqlx's connection buffers start and where its `shrink_buffers` returns them.
pub const BUFFER_TARGET: usize = 8 * 1024;

// ---- a map after a spike --------------------------------------------------

/// Distinct client addresses in the traffic spike.
pub const SPIKE_CLIENTS: usize = 100_000;

/// Distinct client addresses once traffic is quiet again.
pub const QUIET_CLIENTS: usize = 10;

/// How long a client's bucket is kept after its last request.
pub const BUCKET_IDLE_LIMIT: Duration = Duration::from_secs(3600);

/// One client's rate-limit state.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    /// When the client last made a request.
    pub last_seen: Instant,
    /// Requests it may still make.
    pub tokens: f32,
}

/// A rate limiter's per-address state, as services keep it: one bucket per
/// client address, swept periodically of addresses that went quiet.
#[derive(Debug, Default)]
pub struct RateLimitStorage {
    /// One bucket per client address seen within the idle limit.
    pub buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimitStorage {
    /// Records a request from `client` and reports whether it is allowed.
    pub fn check(&mut self, client: IpAddr, now: Instant) -> bool {
        let bucket = self.buckets.entry(client).or_insert(Bucket {
            last_seen: now,
            tokens: 10.0,
        });
        bucket.last_seen = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The address of client `n`: distinct for every `n` below 2²⁴.
pub fn client_address(n: usize) -> IpAddr {
    let [_, a, b, c] = (n as u32).to_be_bytes();
    IpAddr::from([10, a, b, c])
}

/// A spike of `clients` distinct addresses, one request each, at `now`.
pub fn traffic_spike(storage: &mut RateLimitStorage, clients: usize, now: Instant) {
    for n in 0..clients {
        storage.check(client_address(n), now);
    }
}
