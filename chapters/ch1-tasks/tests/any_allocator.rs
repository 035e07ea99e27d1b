//! The same leak check on the system allocator, counted by leakscope's
//! counting allocator: what a service that does not use jemalloc adds.

use ch1_tasks::{GOOD_RUN_TIME, WORKERS, bad, good};
use leakscope::check::LeakCheck;
use leakscope::tasks::{TASK_DUMPS, warm_up_runtime};

// ANCHOR: counting_allocator
// One line in main.rs or a test file: count over the allocator in use.
#[global_allocator]
static ALLOC: leakscope::alloc::CountingAlloc = leakscope::alloc::CountingAlloc::system();
// ANCHOR_END: counting_allocator

// ANCHOR: identified_leak
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn on_the_system_allocator_the_check_names_each_leaked_worker() {
    warm_up_runtime(WORKERS).await;
    let check = LeakCheck::start().identify_tasks().await;

    bad::spawn_workers_without_exit(WORKERS).await;

    let report = check.report().await;
    assert_eq!(report.leaked_tasks(), 100);
    assert!(report.heap_leaked(), "{report}");
    if TASK_DUMPS {
        // Every leaked worker is named with the line where it waits.
        let text = report.to_string();
        assert_eq!(text.matches("--- leaked task").count(), 100);
        assert_eq!(text.matches("src/bad.rs:").count(), 100, "{text}");
    }
}
// ANCHOR_END: identified_leak

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn on_the_system_allocator_the_fixed_workers_pass_the_check() {
    warm_up_runtime(WORKERS).await;
    let check = LeakCheck::start().identify_tasks().await;

    let exited = good::run_cancellable_workers(WORKERS, GOOD_RUN_TIME).await;

    assert_eq!(exited, 100);
    check.assert_no_leaks().await;
}
