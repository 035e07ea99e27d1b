//! Every claim the chapter 7 page makes, measured on both sides. Tasks and
//! heap are counted on a `current_thread` runtime (exact), time runs on
//! tokio's paused clock (the seed's 5 s deadline and an hour after it take
//! milliseconds).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ch7_practices::{
    BUFFER_SIZE, DEADLINE, JOBS, LoopTimer, MAX_POOLED, MAX_RESOURCES, ManagesResources,
    PIPELINE_DEADLINE, PRODUCE_INTERVAL, RESOURCE_SIZE, TICK, WORKERS, add_resources_like_the_seed,
    bad, good, process, run_periodic_worker, send_messages, thread_allocated_bytes,
};
use leakscope::heap::LiveBytes;
use leakscope::tasks::TaskLeakCheck;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const AN_HOUR: Duration = Duration::from_secs(3600);

/// Bytes a manager needs besides its resources' buffers: the list of
/// resource headers (32 bytes each), its `Arc<Mutex<…>>`, the cleaner task
/// and the cancellation token. Measured at under 2 KiB; a fifth of one
/// resource is a safe bound that still tells 9 resources from 10.
const MANAGER_BOOKKEEPING: i64 = 2 * 1024;

fn resources_bytes(count: usize) -> i64 {
    (count * RESOURCE_SIZE) as i64
}

// ---------------------------------------------------------------------------
// Practice 1: workers under a deadline.

// ANCHOR: deadline_on_the_wait
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_deadline_on_the_wait_leaves_10_workers_ticking_for_an_hour() {
    // No waiting for stragglers: the clock must stay where the test puts it.
    let check = TaskLeakCheck::start().settle_budget(Duration::ZERO);
    let work_done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    bad::run_workers_with_deadline_on_the_wait(work_done.clone()).await;

    assert_eq!(started.elapsed(), DEADLINE); // the wait did time out at 5 s
    assert_eq!(check.leaked_tasks().await, 10); // but no worker stopped
    assert_eq!(work_done.load(Ordering::Relaxed), 10 * 50);
    tokio::time::sleep(AN_HOUR).await;
    assert_eq!(check.leaked_tasks().await, 10);
    // Still working an hour later: 10 workers × 10 ticks a second.
    assert_eq!(work_done.load(Ordering::Relaxed), 10 * 50 + 10 * 36_000);
}
// ANCHOR_END: deadline_on_the_wait

// ANCHOR: workers_stop_at_the_deadline
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_workers_all_stop_at_the_deadline_and_leave_no_task() {
    let check = TaskLeakCheck::start();

    let run = good::run_workers_under_deadline(CancellationToken::new()).await;

    // Every worker has returned at the deadline itself, well within one tick.
    assert_eq!(run.all_stopped_after, DEADLINE);
    assert!(run.all_stopped_after < DEADLINE + TICK);
    // Ticks at 0.1 s … 4.9 s; the one due at 5 s loses to the deadline.
    assert_eq!(run.ticks_per_worker, vec![49; WORKERS]);
    assert_eq!(check.leaked_tasks().await, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_workers_stop_early_when_the_parent_cancels() {
    let check = TaskLeakCheck::start();
    let shutdown = CancellationToken::new();
    let parent = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1050)).await;
        parent.cancel(); // Go: the parent context's cancel()
    });

    let run = good::run_workers_under_deadline(shutdown).await;

    assert_eq!(run.all_stopped_after, Duration::from_millis(1050));
    assert_eq!(run.ticks_per_worker, vec![10; WORKERS]);
    assert_eq!(check.leaked_tasks().await, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_workers_are_aborted_when_the_caller_gives_up() {
    let check = TaskLeakCheck::start();
    let run = good::run_workers_under_deadline(CancellationToken::new());

    // The bad side's mistake, made by the caller this time: a timeout
    // around the whole run drops it after 1 s, JoinSet and all.
    let gave_up = tokio::time::timeout(Duration::from_secs(1), run).await;

    assert!(gave_up.is_err());
    assert_eq!(check.leaked_tasks().await, 0);
}
// ANCHOR_END: workers_stop_at_the_deadline

// ---------------------------------------------------------------------------
// Practice 2: a closed pipeline.

/// Every job's result, each exactly once, in order: 0, 2, 4, … 38.
fn all_results() -> Vec<u64> {
    (0..JOBS).map(process).collect()
}

// ANCHOR: unclosed_pipeline
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_pipeline_with_a_retry_sender_never_closes() {
    let check = TaskLeakCheck::start();
    let started = Instant::now();

    let run = bad::run_pipeline_with_retry_sender().await;

    assert_eq!(run.collected, all_results()); // all work done by 2 s …
    assert!(run.deadline_passed); // … yet the caller waited out its 3 s
    assert_eq!(started.elapsed(), PIPELINE_DEADLINE);
    tokio::time::sleep(AN_HOUR).await;
    // Consumer and collector, both waiting on channels that never close.
    assert_eq!(check.leaked_tasks().await, 2);
}
// ANCHOR_END: unclosed_pipeline

/// Where `needle` is in `src/bad.rs`, as a task dump prints it:
/// `src/bad.rs:LINE:`.
#[cfg(tokio_unstable)]
fn bad_rs_line_of(needle: &str) -> String {
    let line = include_str!("../src/bad.rs")
        .lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is not in src/bad.rs"));
    format!("src/bad.rs:{}:", line + 1)
}

// ANCHOR: task_dump
// Task dumps need `--cfg tokio_unstable` (.cargo/config.toml sets it).
#[cfg(tokio_unstable)]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_task_dump_points_at_the_lines_where_leaked_tasks_wait() {
    bad::run_workers_with_deadline_on_the_wait(Arc::new(AtomicUsize::new(0))).await;
    bad::run_pipeline_with_retry_sender().await;

    let traces = leakscope::tasks::task_traces().await.expect("task dumps");

    let waiting_at = |needle: &str| {
        let line = bad_rs_line_of(needle);
        traces.iter().filter(|trace| trace.contains(&line)).count()
    };
    assert_eq!(traces.len(), 12);
    assert_eq!(waiting_at("ticker.tick().await;"), 10); // the workers
    assert_eq!(waiting_at("while let Some(job) = jobs.recv().await"), 1); // the consumer
    assert_eq!(
        waiting_at("while let Some(result) = results_rx.recv().await"),
        1
    ); // the collector
}
// ANCHOR_END: task_dump

// ANCHOR: closed_pipeline
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_pipeline_processes_every_job_exactly_once_and_ends() {
    let check = TaskLeakCheck::start();
    let started = Instant::now();

    let run = good::run_pipeline(PIPELINE_DEADLINE).await;

    assert_eq!(run.collected, all_results());
    assert!(!run.deadline_passed);
    // 20 jobs, 100 ms apart: the last stage ends at 2 s, not at the deadline.
    assert_eq!(started.elapsed(), JOBS as u32 * PRODUCE_INTERVAL);
    assert_eq!(check.leaked_tasks().await, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_pipeline_cancelled_at_the_deadline_ends_every_stage_at_once() {
    let check = TaskLeakCheck::start();
    let started = Instant::now();
    let deadline = Duration::from_secs(1); // before the 20 jobs are through

    let run = good::run_pipeline(deadline).await;

    assert!(run.deadline_passed);
    // Every stage has ended at the deadline itself, within one 100 ms step.
    assert_eq!(started.elapsed(), deadline);
    // Jobs 0 … 10 were sent by then (the 11th at exactly 1 s); each one
    // made it through once, none was lost in between and none doubled.
    assert_eq!(run.collected, all_results()[..11]);
    assert_eq!(check.leaked_tasks().await, 0);
}
// ANCHOR_END: closed_pipeline

// ---------------------------------------------------------------------------
// Practice 3: a resource manager.

/// The counts the seed prints after additions 0, 5, 10, 15, 20, 25 and at
/// the end, on the paused clock: both managers run the seed's schedule.
const SEED_COUNTS: [usize; 7] = [1, 6, 6, 11, 8, 13, 9];

// ANCHOR: reslice_keeps
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_seed_trimming_keeps_the_removed_resources_live() {
    let heap = LiveBytes::start();
    let manager = bad::ResourceManager::new();

    let counts = add_resources_like_the_seed(&manager).await;

    assert_eq!(counts, SEED_COUNTS); // 9 resources counted …
    assert_eq!(manager.resources_held(), 17); // … 17 still held
    let live = heap.live_bytes();
    assert!(live >= resources_bytes(17), "live {live}");
    assert!(
        live < resources_bytes(17) + MANAGER_BOOKKEEPING,
        "live {live}"
    );
    manager.close();
}
// ANCHOR_END: reslice_keeps

// ANCHOR: drain_frees
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_trimming_frees_what_it_removes() {
    let heap = LiveBytes::start();
    let manager = good::ResourceManager::new();

    let counts = add_resources_like_the_seed(&manager).await;

    assert_eq!(counts, SEED_COUNTS); // same schedule, same counts
    let live = heap.live_bytes();
    assert!(live >= resources_bytes(9), "live {live}");
    assert!(
        live < resources_bytes(9) + MANAGER_BOOKKEEPING,
        "live {live}"
    );
    manager.close().await;
}
// ANCHOR_END: drain_frees

// ANCHOR: dropped_without_close
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_manager_dropped_without_close_keeps_its_cleaner_and_resources() {
    let check = TaskLeakCheck::start();
    let heap = LiveBytes::start();
    let manager = bad::ResourceManager::new();
    add_resources_like_the_seed(&manager).await;

    drop(manager); // an early return, a `?`, a panic: no close()
    tokio::time::sleep(AN_HOUR).await;

    assert_eq!(check.leaked_tasks().await, 1);
    assert!(heap.live_bytes() >= resources_bytes(17));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_manager_dropped_without_close_frees_everything() {
    // The runtime keeps 64 bytes of its own after the first task it aborts
    // (measured); a warm-up pays for them before the baseline.
    let warm_up = TaskLeakCheck::start();
    tokio::spawn(std::future::pending::<()>()).abort();
    warm_up.assert_no_leaks().await;
    let check = TaskLeakCheck::start();
    let heap = LiveBytes::start();
    let manager = good::ResourceManager::new();
    add_resources_like_the_seed(&manager).await;

    drop(manager);

    assert_eq!(check.leaked_tasks().await, 0);
    assert_eq!(heap.live_bytes(), 0);
}
// ANCHOR_END: dropped_without_close

// ANCHOR: close_waits
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_close_returns_while_its_cleaner_is_still_alive() {
    let check = TaskLeakCheck::start();
    let manager = bad::ResourceManager::new();
    add_resources_like_the_seed(&manager).await;

    manager.close();

    // Counted at once, without letting the runtime settle: Go's Close,
    // too, returns before the cleanup goroutine has exited.
    assert_eq!(check.alive_now(), check.baseline() + 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_close_returns_with_nothing_left() {
    let check = TaskLeakCheck::start();
    let heap = LiveBytes::start();
    let manager = good::ResourceManager::new();
    add_resources_like_the_seed(&manager).await;

    manager.close().await;

    assert_eq!(check.alive_now(), check.baseline()); // no settling needed
    assert_eq!(heap.live_bytes(), 0);
}
// ANCHOR_END: close_waits

/// Resources added at once, faster than any cleaner runs.
const BURST: usize = 100;

// ANCHOR: bounded
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_manager_holds_a_whole_burst_until_the_next_cleaning() {
    let heap = LiveBytes::start();
    let manager = bad::ResourceManager::new();

    for id in 0..BURST {
        manager.add_resource(id, RESOURCE_SIZE);
    }

    assert_eq!(manager.resource_count(), 100);
    assert!(heap.live_bytes() >= resources_bytes(100)); // 1000 KiB
    manager.close();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_manager_never_holds_more_than_20() {
    let heap = LiveBytes::start();
    let manager = good::ResourceManager::new();

    for id in 0..BURST {
        manager.add_resource(id, RESOURCE_SIZE);
    }

    assert_eq!(manager.resource_count(), MAX_RESOURCES);
    let live = heap.live_bytes();
    assert!(live >= resources_bytes(20), "live {live}");
    assert!(
        live < resources_bytes(20) + MANAGER_BOOKKEEPING,
        "live {live}"
    );
    manager.close().await;
}
// ANCHOR_END: bounded

// ---------------------------------------------------------------------------
// Practice 4: reuse instead of churn.

const REQUESTS: u64 = 1000;

// ANCHOR: churn
#[test]
fn bad_new_buffer_per_request_allocates_1_kib_every_time() {
    let heap = LiveBytes::start();
    let allocated_before = thread_allocated_bytes();

    for request_id in 0..REQUESTS {
        std::hint::black_box(bad::handle_request_with_new_buffer(request_id, BUFFER_SIZE));
    }

    let allocated = thread_allocated_bytes() - allocated_before;
    assert_eq!(allocated, REQUESTS * BUFFER_SIZE as u64); // churn …
    assert_eq!(heap.live_bytes(), 0); // … not a leak: every buffer was freed
}

#[test]
fn good_pool_allocates_nothing_after_the_first_request() {
    let pool = good::BufferPool::new();
    good::handle_request_with_pooled_buffer(&pool, 0, BUFFER_SIZE); // creates the buffer
    let allocated_before = thread_allocated_bytes();

    for request_id in 0..REQUESTS {
        std::hint::black_box(good::handle_request_with_pooled_buffer(
            &pool,
            request_id,
            BUFFER_SIZE,
        ));
    }

    assert_eq!(thread_allocated_bytes() - allocated_before, 0);
    assert_eq!(pool.pooled(), 1); // one buffer, reused a thousand times
}

#[test]
fn good_reused_buffer_allocates_nothing_after_the_first_request() {
    let mut response = Vec::new();
    good::handle_request_reusing_buffer(&mut response, 0, BUFFER_SIZE);
    let allocated_before = thread_allocated_bytes();

    for request_id in 0..REQUESTS {
        std::hint::black_box(good::handle_request_reusing_buffer(
            &mut response,
            request_id,
            BUFFER_SIZE,
        ));
    }

    assert_eq!(thread_allocated_bytes() - allocated_before, 0);
}
// ANCHOR_END: churn

// ANCHOR: pool_bounds
#[test]
fn good_pool_keeps_at_most_64_buffers_after_a_burst() {
    let pool = good::BufferPool::new();
    let mut held = Vec::with_capacity(1000);
    let heap = LiveBytes::start();

    for _ in 0..1000 {
        let mut buffer = pool.get();
        buffer.extend_from_slice(&[1; BUFFER_SIZE]);
        held.push(buffer);
    }
    held.clear(); // the burst is over: every buffer goes back

    assert_eq!(pool.pooled(), MAX_POOLED);
    assert_eq!(heap.live_bytes(), (MAX_POOLED * BUFFER_SIZE) as i64);
}

#[test]
fn good_pool_frees_a_buffer_that_grew_too_large() {
    let pool = good::BufferPool::new();
    let heap = LiveBytes::start();

    let mut buffer = pool.get();
    buffer.resize(1 << 20, 0); // one request needed a megabyte
    drop(buffer);

    assert_eq!(pool.pooled(), 0);
    assert_eq!(heap.live_bytes(), 0);
}
// ANCHOR_END: pool_bounds

// ---------------------------------------------------------------------------
// Practice 5: timers in loops.

/// Runs the seed's periodic worker for `turns` turns (one a second on the
/// paused clock) and returns the bytes this thread allocated meanwhile.
async fn allocated_by_periodic_worker(timer: LoopTimer, turns: u32) -> u64 {
    let allocated_before = thread_allocated_bytes();
    let work_done = run_periodic_worker(timer, turns).await;
    assert_eq!(work_done, turns as usize);
    thread_allocated_bytes() - allocated_before
}

// ANCHOR: timer_allocations
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn tokio_sleep_in_a_loop_allocates_nothing_per_iteration() {
    for timer in [LoopTimer::NewSleepEachTurn, LoopTimer::OneInterval] {
        let short = allocated_by_periodic_worker(timer, 100).await;
        let long = allocated_by_periodic_worker(timer, 1100).await;
        // 1000 more iterations, not one byte more: a Sleep lives inside the
        // future that awaits it, and dropping it unlinks it from the timer
        // wheel. Go's time.After allocates a timer and a channel each time.
        assert_eq!(long, short, "{timer:?}");
    }
}
// ANCHOR_END: timer_allocations

/// Messages sent in a minute, one every 500 ms.
const MESSAGES: u64 = 120;

// ANCHOR: starved_flush
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bad_new_sleep_each_iteration_never_flushes_while_messages_come() {
    let (messages_tx, messages_rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(send_messages(messages_tx, MESSAGES));

    let batches = bad::batcher_new_sleep(messages_rx).await;

    // A minute of traffic, one flush due every second, none done: every
    // message is still held, and the backlog grows as long as traffic lasts.
    assert_eq!(batches.flushes, 0);
    assert_eq!(batches.pending.len(), 120);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn good_interval_flushes_once_a_second_however_busy() {
    let (messages_tx, messages_rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(send_messages(messages_tx, MESSAGES));

    let batches = good::batcher_interval(messages_rx).await;

    assert_eq!(batches.flushes, 60);
    assert_eq!(batches.flushed, 120);
    assert!(batches.pending.is_empty());
}
// ANCHOR_END: starved_flush
