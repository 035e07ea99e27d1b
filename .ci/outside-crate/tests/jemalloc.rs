//! jemalloc as the global allocator, no counting wrapper: leakscope reads
//! jemalloc's per-thread counters.
#![cfg(feature = "jemalloc")]

use std::time::Duration;

use leakscope::check::LeakCheck;
use leakscope::heap::HeapSource;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn fifty_mib_and_a_task_are_reported() {
    assert_eq!(leakscope::heap::source(), Ok(HeapSource::Jemalloc));
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
    let stats = leakscope::heap::HeapStats::read().expect("jemalloc statistics");
    assert!(stats.allocated >= 50 << 20, "{stats}");
}
