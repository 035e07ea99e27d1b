//! Every per-thread claim the chapter 13 page makes, measured on a
//! `current_thread` runtime, where the servers, the clients and the handlers
//! all run on the test's thread and `LiveBytes` sees every byte they keep.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ch13_clients::loopback::{
    BufferGauge, ConnectionPool, HttpServer, MAX_RESPONSE_BYTES, RowServer, connection_pool,
};
use ch13_clients::{
    AUDIENCE_BYTES, BUCKET_IDLE_LIMIT, BUFFER_TARGET, CHURNED_THREADS, GREETING, HANDLED_REQUESTS,
    LARGE_RESPONSE_BYTES, POOL_SIZE, QUIET_CLIENTS, REQUESTS, RateLimitStorage, SCRATCH_BYTES,
    SMALL_QUERIES, SMALL_RESPONSE_BYTES, SPIKE_CLIENTS, ScratchSpace, audience_for, bad,
    churning_runtime, good, render_on_retiring_threads, tenant_id, traffic_spike,
};
use leakscope::heap::{LiveBytes, thread_allocated_bytes};
use leakscope::tasks::TaskLeakCheck;
use tower::ServiceExt;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// ---- a client per request -------------------------------------------------

/// What the runtime may keep, or give back, from having run 20 connections'
/// tasks: its task list and I/O driver keep the capacity they grew to.
const RUNTIME_BOOKKEEPING: i64 = 1024;

// ANCHOR: client_connections
#[tokio::test(flavor = "current_thread")]
async fn a_client_per_request_opens_a_connection_per_request() {
    let server = HttpServer::start().await.unwrap();

    for _ in 0..REQUESTS {
        assert_eq!(
            bad::fetch_with_new_client(&server.url()).await.unwrap(),
            GREETING
        );
    }

    assert_eq!(server.accepted(), 20);
}

#[tokio::test(flavor = "current_thread")]
async fn a_shared_client_sends_every_request_on_one_connection() {
    let server = HttpServer::start().await.unwrap();
    let client = good::shared_client();

    for _ in 0..REQUESTS {
        assert_eq!(good::fetch(&client, &server.url()).await.unwrap(), GREETING);
    }

    assert_eq!(server.accepted(), 1);
}
// ANCHOR_END: client_connections

/// Bytes allocated (frees not subtracted) on this thread by `requests` calls.
async fn allocated_per_request<F, Fut>(requests: usize, mut fetch: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = String>,
{
    let before = thread_allocated_bytes();
    for _ in 0..requests {
        assert_eq!(fetch().await, GREETING);
    }
    (thread_allocated_bytes() - before) / requests as u64
}

// ANCHOR: client_churn
#[tokio::test(flavor = "current_thread")]
async fn a_client_per_request_allocates_several_times_more_per_request() {
    let server = HttpServer::start().await.unwrap();
    let url = server.url();
    let client = good::shared_client();
    good::fetch(&client, &url).await.unwrap(); // connects once
    bad::fetch_with_new_client(&url).await.unwrap(); // first-use setup

    let shared = allocated_per_request(REQUESTS, || async {
        good::fetch(&client, &url).await.unwrap()
    })
    .await;
    let per_request = allocated_per_request(REQUESTS, || async {
        bad::fetch_with_new_client(&url).await.unwrap()
    })
    .await;

    // Both include the server's side of each request, and the new client's
    // side returns every byte when it is dropped: this is churn, not a leak.
    assert!(
        per_request > 3 * shared,
        "{per_request} B per request with a new client, {shared} B shared"
    );
}
// ANCHOR_END: client_churn

// ANCHOR: client_returns_memory
#[tokio::test(flavor = "current_thread")]
async fn clients_dropped_after_their_request_keep_no_heap() {
    let server = HttpServer::start().await.unwrap();
    let url = server.url();
    bad::fetch_with_new_client(&url).await.unwrap(); // first-use setup
    let tasks = TaskLeakCheck::start();
    let heap = LiveBytes::start();

    for _ in 0..REQUESTS {
        bad::fetch_with_new_client(&url).await.unwrap();
    }
    // Each dropped client closed its connection; the server's connection
    // tasks see the close and end.
    assert_eq!(tasks.leaked_tasks().await, 0);

    assert!(
        heap.live_bytes().abs() <= RUNTIME_BOOKKEEPING,
        "kept {} bytes",
        heap.live_bytes()
    );
}
// ANCHOR_END: client_returns_memory

// ---- Box::leak in a handler -----------------------------------------------

async fn serve_token_checks(router: &axum::Router, requests: usize) {
    for n in 0..requests {
        let tenant = tenant_id(n);
        let uri = format!("/tenants/{tenant}/tokens/{}", audience_for(&tenant));
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

// ANCHOR: leaking_handler
#[tokio::test(flavor = "current_thread")]
async fn the_leaking_handler_keeps_32_bytes_per_request_forever() {
    assert_eq!(audience_for(&tenant_id(42)).len(), AUDIENCE_BYTES);
    let router = bad::router();
    serve_token_checks(&router, 1).await; // the router's own first-use setup
    let heap = LiveBytes::start();

    serve_token_checks(&router, HANDLED_REQUESTS).await;

    // Everything else each request allocated was freed: only the strings stay.
    assert_eq!(heap.live_bytes(), 1000 * 32);
}
// ANCHOR_END: leaking_handler

// ANCHOR: borrowing_handler
#[tokio::test(flavor = "current_thread")]
async fn the_borrowing_handler_keeps_nothing() {
    let router = good::router();
    serve_token_checks(&router, 1).await;
    let heap = LiveBytes::start();

    serve_token_checks(&router, HANDLED_REQUESTS).await;

    assert_eq!(heap.live_bytes(), 0);
}
// ANCHOR_END: borrowing_handler

// ---- per-thread caches × thread churn -------------------------------------

// ANCHOR: scratch_by_thread
#[test]
fn scratch_kept_per_thread_grows_with_every_retired_thread() {
    let scratch = Arc::new(bad::ScratchByThread::default());

    let threads =
        churning_runtime().block_on(render_on_retiring_threads(scratch.clone(), CHURNED_THREADS));

    let mut distinct = threads.clone();
    distinct.sort_by_key(|id| format!("{id:?}"));
    distinct.dedup();
    assert_eq!(distinct.len(), 50); // every job ran on a new thread
    assert_eq!(scratch.threads_kept(), 50); // and each left its buffer behind
    assert_eq!(scratch.retained_bytes(), 50 * 64 * 1024);
}
// ANCHOR_END: scratch_by_thread

// ANCHOR: scratch_pool
#[test]
fn a_scratch_pool_keeps_one_buffer_however_many_threads_come_and_go() {
    let scratch = Arc::new(good::ScratchPool::new(4));

    let threads =
        churning_runtime().block_on(render_on_retiring_threads(scratch.clone(), CHURNED_THREADS));

    assert_eq!(threads.len(), 50);
    // One job at a time, so one buffer, passed from thread to thread.
    assert_eq!(scratch.retained_bytes(), SCRATCH_BYTES);
}
// ANCHOR_END: scratch_pool

// ---- pooled connection buffers --------------------------------------------

/// The spike, then quiet: one large response on every pooled connection at
/// once, then [`SMALL_QUERIES`] small ones in turn. Returns the gauge.
async fn spike_then_small_queries<F, Fut>(
    query: F,
) -> (BufferGauge, LiveBytes, (RowServer, ConnectionPool))
where
    F: Fn(ConnectionPool, usize) -> Fut,
    Fut: Future<Output = std::io::Result<usize>>,
{
    let server = RowServer::start().await.unwrap();
    let gauge = BufferGauge::default();
    let pool = connection_pool(server.addr, gauge.clone());
    let heap = LiveBytes::start();

    let spike = (0..POOL_SIZE).map(|_| query(pool.clone(), LARGE_RESPONSE_BYTES));
    for read in futures::future::join_all(spike).await {
        assert_eq!(read.unwrap(), LARGE_RESPONSE_BYTES);
    }
    assert_eq!(pool.status().size, 4);
    for _ in 0..SMALL_QUERIES {
        assert_eq!(
            query(pool.clone(), SMALL_RESPONSE_BYTES).await.unwrap(),
            SMALL_RESPONSE_BYTES
        );
    }
    (gauge, heap, (server, pool))
}

// ANCHOR: pooled_buffers_kept
#[tokio::test(flavor = "current_thread")]
async fn pooled_connections_keep_the_buffer_of_their_largest_response() {
    let (gauge, heap, _pool) =
        spike_then_small_queries(|pool, bytes| async move { bad::query(&pool, bytes).await }).await;

    // A hundred small queries later, each connection still holds 1 MiB.
    assert_eq!(gauge.bytes(), 4 * 1024 * 1024);
    assert!(
        heap.live_bytes() >= 4 * 1024 * 1024,
        "live {}",
        heap.live_bytes()
    );
}
// ANCHOR_END: pooled_buffers_kept

#[tokio::test(flavor = "current_thread")]
async fn a_query_over_the_response_limit_gets_a_clear_error() {
    let server = RowServer::start().await.unwrap();
    let pool = connection_pool(server.addr, BufferGauge::default());

    let error = good::query(&pool, MAX_RESPONSE_BYTES + 1)
        .await
        .unwrap_err();

    // The server refuses and closes the connection; nothing was allocated for it.
    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
}

/// What the pool itself holds besides read buffers: four sockets, tokio's
/// registrations for them and the server's connection tasks.
const POOL_BOOKKEEPING: i64 = 64 * 1024;

// ANCHOR: pooled_buffers_shrunk
#[tokio::test(flavor = "current_thread")]
async fn shrunk_connections_go_back_to_8_kib_each() {
    let (gauge, heap, _pool) =
        spike_then_small_queries(|pool, bytes| async move { good::query(&pool, bytes).await })
            .await;

    assert_eq!(gauge.bytes(), 4 * 8 * 1024);
    assert!(
        heap.live_bytes() <= (4 * BUFFER_TARGET) as i64 + POOL_BOOKKEEPING,
        "live {}",
        heap.live_bytes()
    );
}
// ANCHOR_END: pooled_buffers_shrunk

// ---- a map after a spike --------------------------------------------------

/// A spike of [`SPIKE_CLIENTS`] addresses, an hour and a bit of quiet with
/// [`QUIET_CLIENTS`] addresses, then the sweep. Returns the storage and the
/// bytes it still holds.
async fn spike_then_sweep(
    sweep: fn(&mut RateLimitStorage, tokio::time::Instant),
) -> (RateLimitStorage, i64) {
    let heap = LiveBytes::start();
    let mut storage = RateLimitStorage::default();
    traffic_spike(&mut storage, SPIKE_CLIENTS, tokio::time::Instant::now());
    tokio::time::sleep(BUCKET_IDLE_LIMIT + Duration::from_secs(60)).await;

    let now = tokio::time::Instant::now();
    traffic_spike(&mut storage, QUIET_CLIENTS, now);
    sweep(&mut storage, now);

    assert_eq!(storage.buckets.len(), 10);
    let live = heap.live_bytes();
    (storage, live)
}

// ANCHOR: map_kept
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_swept_map_keeps_the_table_the_spike_needed() {
    let (storage, live_bytes) = spike_then_sweep(bad::remove_idle).await;

    // `capacity()` understates the table: removed entries leave tombstones,
    // which it does not count as room. The bytes tell the truth.
    assert!(storage.buckets.capacity() < 100_000);
    assert_eq!(
        std::mem::size_of::<(std::net::IpAddr, ch13_clients::Bucket)>(),
        48
    );
    // The table the spike grew: 131,072 slots (100,000 entries at hashbrown's
    // 7/8 load) of 48 bytes each, plus a control byte per slot.
    assert!(
        live_bytes >= 131_072 * 49,
        "{live_bytes} bytes for 10 buckets"
    );
}
// ANCHOR_END: map_kept

/// A table for ten buckets, with hashbrown's spare slots and control bytes.
const SMALL_TABLE: i64 = 1024;

// ANCHOR: map_shrunk
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_shrunk_map_keeps_a_table_for_ten() {
    let (storage, live_bytes) = spike_then_sweep(good::remove_idle).await;

    assert!(storage.buckets.capacity() < 16);
    assert!(
        live_bytes <= SMALL_TABLE,
        "{live_bytes} bytes for 10 buckets"
    );
}
// ANCHOR_END: map_shrunk
