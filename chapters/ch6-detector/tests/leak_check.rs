//! The test-time leak check (`leakscope::check::LeakCheck`) failing on
//! chapter 1's leaking code, with the message a reader would see, and
//! passing on its fixed code.

use std::time::Duration;

use ch1_tasks::{GOOD_RUN_TIME, WORKERS, bad, good};
use leakscope::check::LeakCheck;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// ANCHOR: check_fails
#[tokio::test(flavor = "current_thread", start_paused = true)]
#[should_panic(
    expected = "still live on this thread (tolerance 1.0 KiB); 100 task(s) leaked: 100 alive now, \
                0 at the baseline"
)]
async fn leak_check_names_the_leaked_tasks_and_their_heap() {
    let leaks = LeakCheck::start();

    bad::spawn_workers_without_exit(WORKERS).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;

    leaks.assert_no_leaks().await;
}
// ANCHOR_END: check_fails

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn leak_check_reports_what_the_bad_workers_keep() {
    let leaks = LeakCheck::start();
    bad::spawn_workers_without_exit(WORKERS).await;
    let report = leaks.report().await;
    assert_eq!(report.leaked_tasks(), 100);
    assert!(report.heap_leaked(), "{report}");
    assert!(!report.is_clean());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn leak_check_passes_on_the_fixed_workers_once_the_runtime_is_warm() {
    good::run_cancellable_workers(WORKERS, GOOD_RUN_TIME).await; // the runtime grows its queues once
    let leaks = LeakCheck::start();

    good::run_cancellable_workers(WORKERS, GOOD_RUN_TIME).await;

    leaks.assert_no_leaks().await;
}
