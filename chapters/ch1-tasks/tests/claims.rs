//! Every claim the chapter 1 page makes, measured. Task counts run on a
//! `current_thread` runtime (exact) with tokio's paused clock (an hour of
//! leaking takes milliseconds).

use std::time::Duration;

use ch1_tasks::{ANSWER, GOOD_RUN_TIME, WORKERS, bad, good};
use leakscope::check::LeakCheck;
use leakscope::heap::LiveBytes;
use leakscope::tasks::{TaskLeakCheck, warm_up_runtime};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const AN_HOUR: Duration = Duration::from_secs(3600);

// ANCHOR: bad_workers_leak
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_workers_leave_exactly_100_tasks_alive_for_an_hour() {
    let check = TaskLeakCheck::start();

    bad::spawn_workers_without_exit(WORKERS).await;
    assert_eq!(check.leaked_tasks().await, 100);

    tokio::time::sleep(AN_HOUR).await; // paused clock: runs in milliseconds
    assert_eq!(check.leaked_tasks().await, 100);
}
// ANCHOR_END: bad_workers_leak

// ANCHOR: good_workers_stop
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_workers_all_exit_and_leave_no_task() {
    let check = TaskLeakCheck::start();

    let exited = good::run_cancellable_workers(WORKERS, GOOD_RUN_TIME).await;

    assert_eq!(exited, 100);
    assert_eq!(check.leaked_tasks().await, 0);
}
// ANCHOR_END: good_workers_stop

/// Heap kept by one leaked worker: at least its future, which tokio stores
/// inside the task's allocation.
fn worker_future_size() -> i64 {
    std::mem::size_of_val(&bad::worker_without_exit(0)) as i64
}

// ANCHOR: leaked_heap
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn leaked_workers_keep_their_futures_live() {
    let heap = LiveBytes::start();

    bad::spawn_workers_without_exit(WORKERS).await;
    tokio::time::sleep(AN_HOUR).await;

    let leaked_bytes = heap.live_bytes();
    assert!(
        leaked_bytes >= 100 * worker_future_size(),
        "100 leaked tasks should keep at least 100 × {} bytes, kept {leaked_bytes}",
        worker_future_size()
    );
}
// ANCHOR_END: leaked_heap

/// The runtime keeps some bookkeeping it grew to run 100 tasks (its task
/// list and run queue keep their capacity). A first run pays for that; the
/// baseline is taken after it, so the scenario itself must return every byte
/// bar this much.
const HEAP_TOLERANCE: i64 = 1024;

// ANCHOR: good_heap
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_workers_return_the_heap_to_baseline() {
    good::run_cancellable_workers(WORKERS, GOOD_RUN_TIME).await; // warm-up
    let heap = LiveBytes::start();
    let leaks = LeakCheck::start();

    good::run_cancellable_workers(WORKERS, GOOD_RUN_TIME).await;

    let kept = heap.live_bytes();
    assert!(kept.abs() <= HEAP_TOLERANCE, "kept {kept} bytes");
    // While they ran, the same workers held well over that:
    assert!(100 * worker_future_size() > HEAP_TOLERANCE);
    leaks.assert_no_leaks().await; // tasks and heap together, in one call
}
// ANCHOR_END: good_heap

// ANCHOR: blocked_send
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_send_to_a_forgotten_receiver_blocks_one_task_forever() {
    let check = TaskLeakCheck::start();

    let mut forgotten = bad::send_to_forgotten_receiver().await;
    tokio::time::sleep(AN_HOUR).await;

    assert_eq!(check.leaked_tasks().await, 1);
    // The first value sits in the buffer, the second is still waiting.
    assert_eq!(forgotten.len(), 1);
    assert_eq!(forgotten.capacity(), 0);
    assert_eq!(forgotten.try_recv(), Ok(ANSWER - 1)); // the buffered one
}
// ANCHOR_END: blocked_send

// ANCHOR: forgotten_receiver_dropped
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dropping_the_forgotten_receiver_ends_the_blocked_task() {
    let check = TaskLeakCheck::start();
    let forgotten = bad::send_to_forgotten_receiver().await;
    assert_eq!(check.leaked_tasks().await, 1);

    drop(forgotten);

    assert_eq!(check.leaked_tasks().await, 0);
}
// ANCHOR_END: forgotten_receiver_dropped

// ANCHOR: good_send
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_receiver_gets_the_value_and_no_task_is_left() {
    let leaks = LeakCheck::start();
    let check = TaskLeakCheck::start();

    assert_eq!(good::send_and_receive().await, Some(ANSWER));

    assert_eq!(check.leaked_tasks().await, 0);
    leaks.assert_no_leaks().await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn send_to_a_dropped_receiver_fails_at_once() {
    let leaks = LeakCheck::start();
    let check = TaskLeakCheck::start();

    let sent = good::send_after_receiver_dropped().await;

    let returned = sent.expect_err("no receiver, so the send must fail");
    assert_eq!(returned.0, ANSWER); // the value comes back to the sender
    assert_eq!(check.leaked_tasks().await, 0);
    leaks.assert_no_leaks().await;
}
// ANCHOR_END: good_send

// ANCHOR: detached
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_dropped_join_handle_leaves_the_task_running() {
    let check = TaskLeakCheck::start();

    bad::start_poller_and_drop_handle();
    tokio::time::sleep(AN_HOUR).await;

    assert_eq!(check.leaked_tasks().await, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_abort_on_drop_handle_stops_the_task() {
    let leaks = LeakCheck::start();
    let check = TaskLeakCheck::start();

    let poller = good::start_poller_owned();
    tokio::time::sleep(AN_HOUR).await;
    assert_eq!(check.leaked_tasks().await, 1); // running while owned
    drop(poller);

    assert_eq!(check.leaked_tasks().await, 0);
    leaks.assert_no_leaks().await;
}
// ANCHOR_END: detached

// ANCHOR: abort_heap
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn abort_on_drop_returns_every_byte_on_a_warm_runtime() {
    // A fresh runtime sets up a little bookkeeping on its first abort, and keeps it.
    warm_up_runtime(1).await;

    for _ in 0..3 {
        let heap = LiveBytes::start();
        let check = TaskLeakCheck::start();
        drop(good::start_poller_owned());
        check.assert_no_leaks().await;
        // Nothing added; it may even free bytes an earlier round left queued.
        assert!(heap.live_bytes() <= 0, "kept {} bytes", heap.live_bytes());
    }
}
// ANCHOR_END: abort_heap
