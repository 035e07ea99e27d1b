//! Every claim the chapter 11 page makes, measured on a `current_thread`
//! runtime (exact task counts and live bytes) with tokio's paused clock.

use ch11_channels::{
    CALL_BYTES, CALLS, Connection, EVENT_BYTES, EVENTS, MPSC_BLOCK_SLOTS, QUEUE_CAPACITY, REQUESTS,
    RESPONSE_BYTES, SMALL_BROADCAST_CAPACITY, SUBSCRIBERS, UPDATE_BYTES, UPDATES, bad,
    broadcast_updates, good, serve_requests,
};
use leakscope::heap::LiveBytes;
use leakscope::tasks::{TaskLeakCheck, warm_up_runtime};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// ANCHOR: false_all_clear
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unjoined_set_looks_clean_to_a_task_count_and_a_task_dump() {
    warm_up_runtime(100).await;
    let tasks = TaskLeakCheck::start();
    let heap = LiveBytes::start();

    let mut server = bad::Server::default();
    serve_requests(|id| server.handle(id), REQUESTS).await;

    // Counting tasks: all clear. Every handler has finished.
    assert_eq!(tasks.leaked_tasks().await, 0);
    // A task dump lists live tasks only: none of the 10 000 is in it.
    #[cfg(all(tokio_unstable, target_os = "linux"))]
    assert_eq!(
        tokio::runtime::Handle::current()
            .dump()
            .await
            .tasks()
            .iter()
            .count(),
        0
    );
    // Yet the set holds every one, and every result.
    assert_eq!(server.handlers_held(), REQUESTS);
    assert!(heap.live_bytes() >= (REQUESTS * RESPONSE_BYTES) as i64);
}
// ANCHOR_END: false_all_clear

// ANCHOR: reaped
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_reaping_server_holds_only_what_finished_since_the_last_request() {
    warm_up_runtime(100).await;
    let heap = LiveBytes::start();

    let mut server = good::Server::default();
    serve_requests(|id| server.handle(id), REQUESTS).await;

    // The handlers of the last requests, finished after the last reap.
    assert!(server.handlers_held() <= 2, "{}", server.handlers_held());
    assert!(
        heap.live_bytes() < (3 * RESPONSE_BYTES) as i64,
        "{}",
        heap.live_bytes()
    );
    assert_eq!(server.shutdown().await, REQUESTS * RESPONSE_BYTES);
}
// ANCHOR_END: reaped

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unpolled_futures_set_holds_every_call_until_the_client_hangs_up() {
    warm_up_runtime(100).await;
    let heap = LiveBytes::start();

    let mut connection = Connection::open(bad::serve_connection);
    connection.send_calls(CALLS).await;

    assert_eq!(connection.pending_calls(), CALLS);
    assert!(heap.live_bytes() >= (CALLS * CALL_BYTES) as i64);
    assert_eq!(connection.hang_up().await, CALLS * CALL_BYTES);
    assert_eq!(heap.live_bytes(), 0);
}

/// What a connection keeps while it is open and idle: the set's ready queue,
/// the request channel's blocks, the server task (no call's request).
const FUTURES_SET_OVERHEAD: i64 = 4096;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_polled_futures_set_runs_each_call_as_it_arrives() {
    warm_up_runtime(100).await;
    let heap = LiveBytes::start();

    let mut connection = Connection::open(good::serve_connection);
    connection.send_calls(CALLS).await;

    assert_eq!(connection.pending_calls(), 0);
    assert!(
        heap.live_bytes() < FUTURES_SET_OVERHEAD,
        "{}",
        heap.live_bytes()
    );
    assert_eq!(connection.hang_up().await, CALLS * CALL_BYTES);
}

// ANCHOR: backlog
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unbounded_queue_grows_by_the_difference_in_speed() {
    warm_up_runtime(100).await;
    let heap = LiveBytes::start();

    let mut queue = bad::EventQueue::start();
    queue.publish_all(EVENTS).await; // 10 s of simulated time

    // 10 000 published at 1 ms, about 1 000 handled at 10 ms each.
    let backlog = queue.backlog();
    assert!((8_990..=9_010).contains(&backlog), "{backlog}");
    assert!(heap.live_bytes() >= (backlog * EVENT_BYTES) as i64);
    assert_eq!(queue.close().await, EVENTS);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_bounded_queue_makes_the_producer_wait() {
    warm_up_runtime(100).await;
    let heap = LiveBytes::start();

    let mut queue = good::EventQueue::start();
    queue.publish_all(EVENTS).await;

    // The capacity, plus the event the consumer is handling.
    assert!(queue.backlog() <= QUEUE_CAPACITY + 1, "{}", queue.backlog());
    assert!(heap.live_bytes() < ((QUEUE_CAPACITY + 1) * EVENT_BYTES) as i64 * 2);
    assert_eq!(queue.close().await, EVENTS);
}
// ANCHOR_END: backlog

// ANCHOR: drained
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_drained_channel_keeps_a_few_blocks_of_full_size_slots() {
    warm_up_runtime(100).await;
    let block = (MPSC_BLOCK_SLOTS * EVENT_BYTES) as i64;

    let heap = LiveBytes::start();
    let mut queue = bad::EventQueue::start();
    queue.publish_all(EVENTS).await;
    queue.wait_until_drained().await;
    let kept_inline = heap.live_bytes();
    queue.close().await;

    let heap = LiveBytes::start();
    let mut queue = good::EventQueue::start();
    queue.publish_all(EVENTS).await;
    queue.wait_until_drained().await;
    let kept_boxed = heap.live_bytes();
    queue.close().await;

    // Empty, yet holding blocks: 3 to 6 of 32 inline events each.
    assert!(
        (3 * block..=6 * block + 4096).contains(&kept_inline),
        "{kept_inline}"
    );
    // The same blocks of pointers: less than one block of inline events.
    assert!(kept_boxed < block, "{kept_boxed}");
}
// ANCHOR_END: drained

// ANCHOR: broadcast
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_idle_receiver_keeps_every_update_alive_until_overwritten() {
    warm_up_runtime(100).await;
    let heap = LiveBytes::start();

    let hub = bad::UpdateHub::new();
    let subscribers =
        broadcast_updates(|| hub.subscribe(), |update| hub.publish(update), UPDATES).await;

    // Every subscriber read every update…
    assert_eq!(hub.updates_held(), UPDATES);
    assert!(heap.live_bytes() >= (UPDATES * UPDATE_BYTES) as i64);
    drop(hub); // …and dropping the hub frees them all.
    for subscriber in subscribers {
        assert_eq!(subscriber.await.unwrap().updates, UPDATES);
    }
    assert_eq!(heap.live_bytes(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn without_an_idle_receiver_an_update_is_freed_once_everyone_has_seen_it() {
    warm_up_runtime(100).await;
    let heap = LiveBytes::start();

    let hub = good::UpdateHub::new();
    let subscribers =
        broadcast_updates(|| hub.subscribe(), |update| hub.publish(update), UPDATES).await;

    assert_eq!(hub.updates_held(), 0);
    assert!(heap.live_bytes() < (SMALL_BROADCAST_CAPACITY * UPDATE_BYTES) as i64);
    drop(hub);
    for subscriber in subscribers {
        let received = subscriber.await.unwrap();
        assert_eq!((received.updates, received.missed), (UPDATES, 0));
    }
    assert_eq!(SUBSCRIBERS, 4);
}
// ANCHOR_END: broadcast

// ANCHOR: task_sites
#[cfg(all(
    tokio_unstable,
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
))]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_task_dump_names_chapter_1_workers_and_misses_the_unjoined_set() {
    use leakscope::matcher::{MIN_TASKS, match_task_sites};
    use leakscope::profile::task_sites;
    let timeout = std::time::Duration::from_secs(10);

    ch1_tasks::bad::spawn_workers_without_exit(ch1_tasks::WORKERS).await;
    let mut server = bad::Server::default();
    serve_requests(|id| server.handle(id), REQUESTS).await;

    let matches = match_task_sites(&task_sites(timeout).await.unwrap(), MIN_TASKS);
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].shape.id, "tasks-never-end");
    assert_eq!(matches[0].value, 100);
    assert!(
        matches[0].sites[0].caller.contains("ch1-tasks/src/bad.rs"),
        "{:?}",
        matches[0].sites
    );
    // The 10 000 finished handlers are not there at all.
    assert_eq!(server.handlers_held(), REQUESTS);
}
// ANCHOR_END: task_sites
