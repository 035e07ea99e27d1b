//! The system allocator, counted: the reader's 50 MiB leak and leaked task
//! are both reported.
#![cfg(not(feature = "jemalloc"))]

use std::time::Duration;

use leakscope::alloc::CountingAlloc;
use leakscope::check::LeakCheck;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::system();

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fifty_mib_and_a_task_are_reported() {
    let check = LeakCheck::start();
    let leaked: &'static mut [u8] = Box::leak(vec![0u8; 50 << 20].into_boxed_slice());
    leaked[0] = 1;
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let report = check.report().await;
    assert_eq!(report.leaked_tasks(), 1, "{report}");
    assert!(report.live_bytes >= 50 << 20, "{report}");
}
