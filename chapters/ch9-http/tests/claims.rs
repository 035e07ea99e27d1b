//! Every claim the chapter 9 page makes, measured on real loopback sockets.
//!
//! Servers, clients and the test share one `current_thread` runtime, so task
//! counts and heap readings are exact. Waiting out timeouts uses tokio's
//! paused clock: when every task is waiting, the clock jumps to the next
//! timer, so ten seconds (or an hour) pass in milliseconds. Exchanges whose
//! outcome would depend on a request arriving before a timer fires run on
//! the real clock instead (`tokio::time::resume`), where the timers are
//! seconds away.

use std::net::SocketAddr;
use std::time::Duration;

use ch9_http::good::{FetchError, Limits};
use ch9_http::{
    CLIENT_TIMEOUT, GREETING, HEADER_READ_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS, SHUTDOWN_GRACE,
    SLOW_CLIENTS, STUCK_REQUESTS, bad, good, wait_until, wire,
};
use leakscope::heap::LiveBytes;
use leakscope::tasks::{TaskLeakCheck, warm_up_runtime};
use tokio::net::TcpListener;
use tokio::time::Instant;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const AN_HOUR: Duration = Duration::from_secs(3600);

/// Longest real wait for closes the server already sent to reach the
/// clients (usually none is needed; under load the kernel may lag a little).
const CLOSE_DELIVERY: Duration = Duration::from_millis(100);

fn bind_loopback() -> (TcpListener, SocketAddr) {
    let listener = ch9_http::bind_loopback().expect("bind loopback");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    (listener, address)
}

/// hyper's first read buffer for a connection (`INIT_BUFFER_SIZE` in
/// hyper's `proto/h1/io.rs`): each connection it reads from holds at least
/// this much.
const HYPER_READ_BUFFER: i64 = 8 * 1024;

// ANCHOR: bad_slow_clients
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_server_holds_every_slow_client_with_a_task_and_buffers_for_an_hour() {
    warm_up_runtime(4 * SLOW_CLIENTS).await;
    let (listener, address) = bind_loopback();
    let _server = bad::spawn_server(listener);
    let tasks = TaskLeakCheck::start();
    let heap = LiveBytes::start();

    let first_half = wire::open_slow_clients(address, SLOW_CLIENTS / 2).unwrap();
    wait_until("100 connections served", || {
        tasks.alive_now() == tasks.baseline() + 100
    })
    .await;
    let heap_at_100 = heap.live_bytes();
    let second_half = wire::open_slow_clients(address, SLOW_CLIENTS / 2).unwrap();
    wait_until("200 connections served", || {
        tasks.alive_now() == tasks.baseline() + 200
    })
    .await;
    let heap_at_200 = heap.live_bytes();

    tokio::time::sleep(AN_HOUR).await; // paused clock: no time really passes

    assert_eq!(tasks.leaked_tasks().await, 200);
    assert_eq!(
        wire::count_open(&first_half) + wire::count_open(&second_half),
        200
    );
    assert!(
        heap_at_100 >= 100 * HYPER_READ_BUFFER,
        "100 clients hold {heap_at_100} B"
    );
    assert!(
        heap_at_200 >= heap_at_100 + 100 * HYPER_READ_BUFFER,
        "{heap_at_100} → {heap_at_200}"
    );
    assert!(
        heap.live_bytes() >= heap_at_200,
        "an hour later: {}",
        heap.live_bytes()
    );
}
// ANCHOR_END: bad_slow_clients

/// What the good server may keep after its connections closed: tokio's I/O
/// driver hands a deregistered socket's slot back on a later turn, and the
/// connection tracker keeps a few words. Far below one connection's buffers.
const HEAP_TOLERANCE: i64 = 4 * 1024;

// ANCHOR: good_slow_clients
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_server_drops_slow_clients_at_the_header_timeout_and_still_serves() {
    warm_up_runtime(4 * SLOW_CLIENTS).await;
    let (listener, address) = bind_loopback();
    let server = good::spawn_server(listener, Limits::default());
    let tasks = TaskLeakCheck::start();
    let heap = LiveBytes::start();

    let slow_clients = wire::open_slow_clients(address, SLOW_CLIENTS).unwrap();
    wait_until("the cap is reached", || {
        server.stats().open() == MAX_CONNECTIONS
    })
    .await;
    assert_eq!(tasks.alive_now(), tasks.baseline() + MAX_CONNECTIONS); // the rest wait in the backlog
    let heap_at_cap = heap.live_bytes();

    // Two rounds of 100: each round is cut off after the header-read timeout.
    tokio::time::sleep(3 * HEADER_READ_TIMEOUT).await;

    assert_eq!(
        wire::count_open_after_closes_land(&slow_clients, CLOSE_DELIVERY),
        0
    );
    assert_eq!(server.stats().timed_out(), 200);
    assert_eq!(server.stats().peak_open(), 100);
    assert_eq!(tasks.leaked_tasks().await, 0);
    let heap_after = heap.live_bytes();
    assert!(
        heap_at_cap >= 100 * HYPER_READ_BUFFER,
        "at the cap: {heap_at_cap} B"
    );
    assert!(heap_after <= HEAP_TOLERANCE, "kept {heap_after} B");

    tokio::time::resume(); // a real exchange, nowhere near the timeout
    let reply = wire::get(address, "/").await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, GREETING));
}
// ANCHOR_END: good_slow_clients

// ANCHOR: idle_keep_alive
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_server_keeps_an_idle_keep_alive_connection_for_an_hour() {
    let (listener, address) = bind_loopback();
    let _server = bad::spawn_server(listener);

    tokio::time::resume();
    let (reply, mut connection) = wire::get_and_keep_alive(address).await.unwrap();
    assert_eq!(reply.status, 200);
    tokio::time::pause();

    let closed = tokio::time::timeout(AN_HOUR, wire::wait_for_close(&mut connection)).await;
    assert!(
        closed.is_err(),
        "the idle connection is still open an hour later"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_server_closes_an_idle_keep_alive_connection_at_the_header_timeout() {
    let (listener, address) = bind_loopback();
    let server = good::spawn_server(listener, Limits::default());

    tokio::time::resume();
    let (reply, mut connection) = wire::get_and_keep_alive(address).await.unwrap();
    assert_eq!(reply.status, 200);
    tokio::time::pause();

    let idle_since = Instant::now();
    let sent_before_closing = wire::wait_for_close(&mut connection).await;
    let idle_for = idle_since.elapsed();

    assert_eq!(sent_before_closing, 0);
    // hyper started the timer as the response went out, a moment of real
    // time before the clock was paused; tokio rounds deadlines up to 1 ms.
    let earliest = HEADER_READ_TIMEOUT - Duration::from_secs(1);
    let latest = HEADER_READ_TIMEOUT + Duration::from_millis(1);
    assert!(
        earliest <= idle_for && idle_for <= latest,
        "closed after {idle_for:?}"
    );
    assert_eq!(server.stats().open(), 0);
}
// ANCHOR_END: idle_keep_alive

// ANCHOR: shutdown
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_server_aborted_leaves_its_connection_tasks_running() {
    let (listener, address) = bind_loopback();
    let tasks = TaskLeakCheck::start();
    let server = bad::spawn_server(listener);
    let slow_clients = wire::open_slow_clients(address, SLOW_CLIENTS).unwrap();
    wait_until("200 connections served", || {
        tasks.alive_now() == tasks.baseline() + 1 + 200
    })
    .await;

    server.abort(); // stops accepting; each connection is its own task

    tokio::time::sleep(AN_HOUR).await;
    assert_eq!(tasks.leaked_tasks().await, 200);
    assert_eq!(wire::count_open(&slow_clients), 200);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_server_shutdown_closes_every_connection_within_the_grace_period() {
    let (listener, address) = bind_loopback();
    let tasks = TaskLeakCheck::start();
    let server = good::spawn_server(listener, Limits::default());
    let slow_clients = wire::open_slow_clients(address, SLOW_CLIENTS).unwrap();
    wait_until("the cap is reached", || {
        server.stats().open() == MAX_CONNECTIONS
    })
    .await;

    let started = Instant::now();
    let open_at_shutdown = server.shutdown().await;

    let took = started.elapsed();
    assert_eq!(open_at_shutdown, 100);
    // Half-received request heads are not closed by graceful shutdown; the
    // grace period ends them (tokio rounds the deadline up to 1 ms).
    assert!(
        took >= SHUTDOWN_GRACE && took <= SHUTDOWN_GRACE + Duration::from_millis(1),
        "took {took:?}"
    );
    assert_eq!(tasks.leaked_tasks().await, 0);
    // Served ones were closed; the listener is gone, so the kernel reset
    // those still waiting in its backlog.
    assert_eq!(
        wire::count_open_after_closes_land(&slow_clients, CLOSE_DELIVERY),
        0
    );
}
// ANCHOR_END: shutdown

// ANCHOR: stuck_handler
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_server_holds_a_stuck_handler_for_as_long_as_the_client_waits() {
    let (listener, address) = bind_loopback();
    let _server = bad::spawn_server(listener);
    let tasks = TaskLeakCheck::start();

    let mut request = Box::pin(wire::get(address, "/stuck"));
    tokio::select! {
        biased;
        reply = &mut request => panic!("answered: {reply:?}"),
        _ = wait_until("the server took the connection", || tasks.alive_now() == tasks.baseline() + 1) => {}
    }
    tokio::select! {
        biased;
        reply = &mut request => panic!("answered: {reply:?}"),
        _ = tokio::time::sleep(AN_HOUR) => {}
    }
    assert_eq!(tasks.leaked_tasks().await, 1); // the connection's task, an hour on

    // Only the client hanging up frees it: hyper sees the connection close
    // and drops the handler with it.
    drop(request);
    wait_until("the connection task ends", || {
        tasks.alive_now() == tasks.baseline()
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn good_server_answers_504_when_a_handler_runs_out_of_time() {
    let (listener, address) = bind_loopback();
    let limits = Limits {
        request_timeout: Duration::from_millis(20), // real clock, kept short
        ..Limits::default()
    };
    let server = good::spawn_server(listener, limits);

    let reply = wire::get(address, "/stuck").await.unwrap();

    assert_eq!(reply.status, 504);
    wait_until("the connection is closed", || server.stats().open() == 0).await;
}
// ANCHOR_END: stuck_handler

fn url_of(address: SocketAddr) -> String {
    format!("http://{address}/")
}

// ANCHOR: bad_stuck_upstream
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_client_requests_to_a_stuck_upstream_stay_pending_for_an_hour() {
    // A listener nobody accepts from: the kernel completes each connection
    // and takes the request, and nothing ever answers.
    let (_stuck_upstream, address) = bind_loopback();
    let client = bad::client();
    let tasks = TaskLeakCheck::start();

    let requests: Vec<_> = (0..STUCK_REQUESTS)
        .map(|_| {
            let (client, url) = (client.clone(), url_of(address));
            tokio::spawn(async move { bad::fetch(&client, &url).await })
        })
        .collect();
    tokio::time::sleep(AN_HOUR).await;

    assert!(requests.iter().all(|request| !request.is_finished()));
    // Each pending request holds its own task and its connection's task.
    assert_eq!(tasks.leaked_tasks().await, 2 * STUCK_REQUESTS);
}
// ANCHOR_END: bad_stuck_upstream

// ANCHOR: good_stuck_upstream
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_client_ends_every_request_to_a_stuck_upstream_at_its_deadline() {
    let (_stuck_upstream, address) = bind_loopback();
    let client = good::client();
    let tasks = TaskLeakCheck::start();

    let requests: Vec<_> = (0..STUCK_REQUESTS)
        .map(|_| {
            let (client, url) = (client.clone(), url_of(address));
            tokio::spawn(async move {
                let started = Instant::now();
                let result = good::fetch(&client, &url, CLIENT_TIMEOUT).await;
                (result, started.elapsed())
            })
        })
        .collect();

    for request in requests {
        let (result, took) = request.await.unwrap();
        assert!(
            matches!(result, Err(FetchError::TimedOut { .. })),
            "{result:?}"
        );
        assert!(took >= CLIENT_TIMEOUT && took < CLIENT_TIMEOUT + Duration::from_secs(1));
    }
    assert_eq!(tasks.leaked_tasks().await, 0);
}
// ANCHOR_END: good_stuck_upstream

// ANCHOR: deadlines
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_client_level_timeout_applies_to_plain_requests() {
    let (_stuck_upstream, address) = bind_loopback();
    let client = good::client();

    let started = Instant::now();
    let error = client.get(url_of(address)).send().await.unwrap_err();

    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() >= CLIENT_TIMEOUT);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_per_request_deadline_overrides_the_client_timeout() {
    let (_stuck_upstream, address) = bind_loopback();
    let client = good::client();
    let deadline = Duration::from_millis(250);

    let started = Instant::now();
    let error = good::fetch(&client, &url_of(address), deadline)
        .await
        .unwrap_err();
    let took = started.elapsed();

    assert!(took >= deadline && took < CLIENT_TIMEOUT, "took {took:?}");
    assert_eq!(
        error.to_string(),
        format!("GET http://{address}/: no complete response within 250ms")
    );
}
// ANCHOR_END: deadlines

/// Requests in the client-reuse scenario.
const SEQUENTIAL_REQUESTS: usize = 20;

// ANCHOR: client_reuse
#[tokio::test(flavor = "current_thread")]
async fn bad_client_per_request_opens_a_connection_per_request() {
    let (listener, address) = bind_loopback();
    let server = good::spawn_server(listener, Limits::default());

    for _ in 0..SEQUENTIAL_REQUESTS {
        let body = bad::fetch_with_new_client(&url_of(address)).await.unwrap();
        assert_eq!(body, GREETING);
    }

    assert_eq!(server.stats().accepted(), SEQUENTIAL_REQUESTS);
}

#[tokio::test(flavor = "current_thread")]
async fn good_shared_client_reuses_one_connection() {
    let (listener, address) = bind_loopback();
    let server = good::spawn_server(listener, Limits::default());
    let client = good::client();

    for _ in 0..SEQUENTIAL_REQUESTS {
        let body = good::fetch(&client, &url_of(address), CLIENT_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(body, GREETING);
    }

    assert_eq!(server.stats().accepted(), 1);
}
// ANCHOR_END: client_reuse

// ANCHOR: body_under_limit
#[tokio::test(flavor = "current_thread")]
async fn good_server_still_reads_bodies_under_the_limit() {
    let (listener, address) = bind_loopback();
    let _server = good::spawn_server(listener, Limits::default());

    let reply = wire::upload(address, MAX_BODY_BYTES, wire::Framing::ContentLength)
        .await
        .unwrap();
    let oversized = wire::upload(address, MAX_BODY_BYTES + 1, wire::Framing::ContentLength)
        .await
        .unwrap();

    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, format!("received {MAX_BODY_BYTES} bytes\n"));
    assert_eq!(oversized.status, 413);
}
// ANCHOR_END: body_under_limit

#[test]
fn unknown_arguments_print_usage_and_exit_2() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ch9-http"))
        .arg("--bogus")
        .output()
        .expect("run the chapter binary");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage: ch9-http"));
}
