//! Every claim the chapter 5 page makes about the two services, measured.
//! The HTTP claims run the real server in-process on an ephemeral loopback
//! port, on a `current_thread` runtime, so jemalloc's per-thread counter sees
//! every byte the server keeps. Task claims use tokio's paused clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ch5_pprof::server::{self, App, Status};
use ch5_pprof::{
    CACHE_CAPACITY, CACHE_ENTRY_BYTES, DEFAULT_LEAK_CAP_BYTES, REQUESTS_PER_PHASE, SeedService,
    WORKER_DATA_BYTES, WORKER_POOL, bad, good, run_seed_loop,
};
use leakscope::heap::LiveBytes;
use leakscope::tasks::TaskLeakCheck;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Simulated time the workers get to stop on their own. Each leaked worker
/// wakes every 100 ms, so a minute is 600 wake-ups per worker.
const A_MINUTE: Duration = Duration::from_secs(60);

/// A server on a loopback port and a client that keeps one connection to it.
struct Harness {
    addr: SocketAddr,
    client: reqwest::Client,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Harness {
    async fn start(service: Arc<dyn SeedService>, cap_bytes: usize) -> Self {
        let stop = CancellationToken::new();
        let (addr, server) = server::spawn_on_loopback(App::new(service, cap_bytes), stop.clone())
            .await
            .expect("a loopback port");
        Self {
            addr,
            client: reqwest::Client::new(),
            stop,
            server,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .expect("the server answers");
        let code = response.status().as_u16();
        (code, response.text().await.expect("a text body"))
    }

    async fn leak(&self, id: &str) -> u16 {
        self.get(&format!("/leak?id={id}")).await.0
    }

    async fn status(&self) -> Status {
        let (code, body) = self.get("/status").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("/status is JSON")
    }

    async fn stop(self) {
        drop(self.client);
        self.stop.cancel();
        self.server.await.unwrap().unwrap();
    }
}

const N: u64 = REQUESTS_PER_PHASE;

// ANCHOR: bad_counts
#[tokio::test(flavor = "current_thread")]
async fn bad_status_counts_match_2000_requests_and_the_heap_keeps_them() {
    let server = Harness::start(Arc::new(bad::LeakyService::new()), DEFAULT_LEAK_CAP_BYTES).await;
    assert_eq!(server.leak("warm-up").await, 200); // opens the connection
    let before = server.status().await;
    let heap = LiveBytes::start();

    for i in 1..N {
        assert_eq!(server.leak(&format!("key-{i}")).await, 200);
    }

    let after = server.status().await;
    assert_eq!(after.stats.cache_entries, 2000); // one per request, never evicted
    assert_eq!(after.stats.subscribers, 200); // every 10th request, never removed
    assert_eq!(after.stats.workers, 100); // every 20th request, never stopped
    assert_eq!(after.alive_tasks - before.alive_tasks, 99); // the warm-up's worker is in `before`
    let kept = heap.live_bytes();
    let at_least = (N as i64 - 1) * CACHE_ENTRY_BYTES as i64 + 99 * WORKER_DATA_BYTES as i64;
    assert!(
        kept >= at_least,
        "kept {kept} bytes, expected at least {at_least}"
    );
    server.stop().await;
}
// ANCHOR_END: bad_counts

/// What the fixed server may keep besides its 1024 cache entries and 4
/// workers' data: the cache's hash table and queue (sized for 1024 entries),
/// the pruned subscriber list's capacity, and the connection's buffers.
const GOOD_HEAP_SLACK: i64 = 512 * 1024;

// ANCHOR: good_counts
#[tokio::test(flavor = "current_thread")]
async fn good_status_stays_bounded_after_2000_requests() {
    let server = Harness::start(Arc::new(good::FixedService::new()), DEFAULT_LEAK_CAP_BYTES).await;
    assert_eq!(server.leak("warm-up").await, 200);
    let before = server.status().await;
    let heap = LiveBytes::start();

    for i in 1..N {
        assert_eq!(server.leak(&format!("key-{i}")).await, 200);
    }

    let after = server.status().await;
    assert_eq!(after.stats.cache_entries, CACHE_CAPACITY); // 1024: the oldest went first
    assert_eq!(after.stats.subscribers, 0); // every receiver was dropped, so swept
    assert_eq!(after.stats.workers, WORKER_POOL); // 4: the oldest were stopped
    assert_eq!(after.alive_tasks, before.alive_tasks + WORKER_POOL - 1);
    let kept = heap.live_bytes();
    let at_most = (CACHE_CAPACITY * CACHE_ENTRY_BYTES + WORKER_POOL * WORKER_DATA_BYTES) as i64
        + GOOD_HEAP_SLACK;
    assert!(
        kept <= at_most,
        "kept {kept} bytes, expected at most {at_most}"
    );
    server.stop().await;
}
// ANCHOR_END: good_counts

// ANCHOR: bad_input
#[tokio::test(flavor = "current_thread")]
async fn malformed_or_out_of_range_parameters_get_400_and_leak_nothing() {
    let server = Harness::start(Arc::new(bad::LeakyService::new()), DEFAULT_LEAK_CAP_BYTES).await;
    let long_id = "x".repeat(129);
    let bad_requests = [
        ("/leak", "missing query parameter 'id'"),
        ("/leak?id=", "'id' must be 1 to 128 characters"),
        ("/leak?id=a%20b", "'id' must be 1 to 128 characters"),
        (
            &format!("/leak?id={long_id}")[..],
            "'id' must be 1 to 128 characters",
        ),
        (
            "/leak?id=x&size=abc",
            "'size' must be a whole number of bytes",
        ),
        (
            "/leak?id=x&size=-1",
            "'size' must be a whole number of bytes",
        ),
        (
            "/leak?id=x&size=0",
            "'size' must be between 1 and 1048576 bytes",
        ),
        (
            "/leak?id=x&size=1048577",
            "'size' must be between 1 and 1048576 bytes",
        ),
        ("/leak?id=x&colour=red", "unknown query parameter 'colour'"),
        ("/status?verbose=1", "unknown query parameter 'verbose'"),
        ("/debug/pprof/heap?raw=2", "'raw' must be 0 or 1"),
        (
            "/debug/pprof/heap?debug=2",
            "'debug' must be 0 or 1, not '2'",
        ),
        (
            "/debug/pprof/heap?seconds=0",
            "'seconds' must be a whole number from 1 to 600",
        ),
        ("/debug/pprof/heap?gc=1", "unknown query parameter 'gc'"),
        ("/metrics?name=x", "unknown query parameter 'name'"),
    ];
    for (path, message) in bad_requests {
        let (code, body) = server.get(path).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body.contains(message), "{path}: {body}");
    }
    let (code, body) = server.get("/leaks").await;
    assert_eq!(code, 404);
    assert!(body.starts_with("no such endpoint"), "{body}");
    let status = server.status().await;
    assert_eq!((status.iterations, status.stats.cache_entries), (0, 0));
    // In range, the same parameters work.
    assert_eq!(server.get("/leak?id=x.y-z_1&size=1048576").await.0, 200);
    server.stop().await;
}
// ANCHOR_END: bad_input

/// A cap small enough to reach in a few requests: 64 KiB.
const SMALL_CAP: usize = 64 * 1024;

/// Bytes a refused request may leave behind: none by design; 4 KiB allows
/// for the connection's buffers settling to a different size class.
const REFUSED_HEAP_SLACK: i64 = 4096;

// ANCHOR: cap
#[tokio::test(flavor = "current_thread")]
async fn past_the_cap_leak_answers_503_and_the_heap_stops_growing() {
    let server = Harness::start(Arc::new(bad::LeakyService::new()), SMALL_CAP).await;
    let mut accepted = 0;
    while server.leak(&format!("key-{accepted}")).await == 200 {
        accepted += 1;
        assert!(accepted < 100, "the cap never stopped the leak");
    }
    let at_cap = server.status().await;
    assert!(at_cap.stats.retained_bytes <= SMALL_CAP);
    assert_eq!(at_cap.stats.cache_entries, accepted);

    let heap = LiveBytes::start();
    for i in 0..200 {
        let (code, body) = server.get(&format!("/leak?id=more-{i}")).await;
        assert_eq!(code, 503);
        assert!(body.starts_with("leak cap reached"), "{body}");
    }
    let kept = heap.live_bytes();
    assert!(
        kept <= REFUSED_HEAP_SLACK,
        "200 refused requests kept {kept} bytes"
    );
    assert_eq!(server.status().await.stats, at_cap.stats);
    server.stop().await;
}
// ANCHOR_END: cap

// ANCHOR: task_leak
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_workers_outlive_a_minute_and_shutdown() {
    let check = TaskLeakCheck::start();
    let service = bad::LeakyService::new();

    run_seed_loop(&service, N);
    tokio::time::sleep(A_MINUTE).await; // paused clock: runs in milliseconds
    service.shutdown().await;

    assert_eq!(check.leaked_tasks().await, 100);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_workers_are_a_pool_of_4_and_all_stop_on_shutdown() {
    let check = TaskLeakCheck::start();
    let service = good::FixedService::new();

    run_seed_loop(&service, N);
    tokio::time::sleep(A_MINUTE).await;
    assert_eq!(check.leaked_tasks().await, WORKER_POOL);

    service.shutdown().await;
    assert_eq!(check.leaked_tasks().await, 0);
}
// ANCHOR_END: task_leak

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_cache_entries_expire_after_60_seconds() {
    let service = good::FixedService::new();
    run_seed_loop(&service, 10);
    assert_eq!(service.stats().cache_entries, 10);
    tokio::time::sleep(ch5_pprof::CACHE_TTL).await;
    assert_eq!(service.stats().cache_entries, 0);
    assert_eq!(service.stats().retained_bytes, WORKER_DATA_BYTES); // the one worker
    service.shutdown().await;
}

// ANCHOR: task_dump
#[cfg(all(
    tokio_unstable,
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
))]
#[tokio::test(flavor = "current_thread")]
async fn the_task_dump_names_where_the_100_leaked_workers_wait() {
    let service = bad::LeakyService::new();
    run_seed_loop(&service, N);

    let sites = leakscope::profile::task_sites(Duration::from_secs(5))
        .await
        .expect("the dump finishes");

    let workers = &sites[0];
    assert_eq!(workers.tasks, 100, "{sites:#?}");
    assert_eq!(
        workers.location,
        format!("src/bad.rs:{}", line_of_worker_select())
    );
}

/// The line of `bad.rs` where a leaked worker waits: its `select!`.
#[cfg(tokio_unstable)]
fn line_of_worker_select() -> usize {
    let source = include_str!("../src/bad.rs");
    let start_worker = source
        .find("fn start_worker")
        .expect("bad.rs has start_worker");
    let select = start_worker + source[start_worker..].find("tokio::select!").unwrap();
    source[..select].lines().count()
}
// ANCHOR_END: task_dump

#[cfg(all(
    tokio_unstable,
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
))]
#[tokio::test(flavor = "current_thread")]
async fn after_shutdown_the_fixed_service_has_no_task_in_the_dump() {
    let check = TaskLeakCheck::start();
    let service = good::FixedService::new();
    run_seed_loop(&service, N);
    // The 96 workers stopped to make room end once they are next polled.
    assert_eq!(check.leaked_tasks().await, WORKER_POOL);
    let running = leakscope::profile::task_sites(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        running.iter().map(|site| site.tasks).sum::<usize>(),
        WORKER_POOL
    );

    service.shutdown().await;
    let stopped = leakscope::profile::task_sites(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(stopped.is_empty(), "{stopped:#?}");
}

// ANCHOR: task_endpoints
#[cfg(all(
    tokio_unstable,
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
))]
#[tokio::test(flavor = "current_thread")]
async fn the_task_endpoints_show_the_leaked_workers_first() {
    let server = Harness::start(Arc::new(bad::LeakyService::new()), DEFAULT_LEAK_CAP_BYTES).await;
    for i in 0..N {
        assert_eq!(server.leak(&format!("key-{i}")).await, 200);
    }

    let (code, text) = server.get("/debug/pprof/tasks").await;
    assert_eq!(code, 200);
    let worker_site = format!("{{async_block#0}} (src/bad.rs:{})", line_of_worker_select());
    assert_eq!(
        text.lines().nth(1),
        Some(&format!("100 tasks waiting at {worker_site}")[..]),
        "{text}"
    );

    let goroutine = server
        .client
        .get(format!("http://{}/debug/pprof/goroutine", server.addr))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let tasks = leakscope::profile::decode(&goroutine).expect("a pprof profile");
    let top = leakscope::profile::top(&tasks, 0);
    assert_eq!(
        (top[0].function.as_str(), top[0].flat),
        (&worker_site[..], 100)
    );
    server.stop().await;
}
// ANCHOR_END: task_endpoints
