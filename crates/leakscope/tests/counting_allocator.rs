//! The counting allocator over the system allocator: exact per-thread
//! counters, a 50 MiB leak seen by `LeakCheck`, and the loud failures.

use std::time::Duration;

use leakscope::alloc::{self, CountingAlloc};
use leakscope::check::{HeapScope, LeakCheck};
use leakscope::heap::{HeapSource, LiveBytes};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::system();

const FIFTY_MIB: usize = 50 << 20;

#[test]
fn the_counting_allocator_is_what_leakscope_reads() {
    assert!(alloc::is_installed());
    assert_eq!(leakscope::heap::source(), Ok(HeapSource::CountingAllocator));
}

#[test]
fn thread_counters_are_exact_in_requested_sizes() {
    let before = alloc::thread_counters().unwrap();
    // 1000 bytes counts as 1000 here (jemalloc's size class would say 1024).
    let kept: Vec<Box<[u8; 1000]>> = (0..10).map(|_| Box::new([0u8; 1000])).collect();
    let during = alloc::thread_counters().unwrap();
    assert_eq!(during.live_bytes - before.live_bytes, 10 * 1000 + 10 * 8);
    assert_eq!(during.live_allocations - before.live_allocations, 11);
    drop(kept);
    let after = alloc::thread_counters().unwrap();
    assert_eq!(after.live_bytes, before.live_bytes);
    assert_eq!(after.live_allocations, before.live_allocations);
    assert_eq!(after.total_allocations - before.total_allocations, 11);
    assert!(after.peak_live_bytes >= during.live_bytes);
}

#[test]
fn a_realloc_counts_as_a_free_and_an_allocation() {
    let scope = LiveBytes::start();
    let before = alloc::thread_counters().unwrap();
    let mut grown = Vec::<u8>::with_capacity(100);
    grown.reserve_exact(900); // empty, so the new block holds 900 bytes
    assert_eq!(scope.live_bytes(), 900);
    let after = alloc::thread_counters().unwrap();
    assert_eq!(
        after.total_allocated_bytes - before.total_allocated_bytes,
        1000
    );
    assert_eq!(after.live_allocations - before.live_allocations, 1);
    drop(grown);
    assert_eq!(scope.live_bytes(), 0);
}

#[test]
fn frees_on_another_thread_count_there() {
    let scope = LiveBytes::start();
    let buffer = vec![1u8; 4096];
    assert_eq!(scope.live_bytes(), 4096);
    std::thread::spawn(move || drop(buffer)).join().unwrap();
    // Freed on the other thread: this thread still counts it as its own.
    assert!(scope.live_bytes() >= 4096, "{}", scope.live_bytes());
}

#[test]
fn process_counters_see_every_thread() {
    let kept = std::thread::spawn(|| vec![7u8; 8 << 20]).join().unwrap();
    let counters = alloc::process_counters().unwrap();
    assert!(counters.live_bytes >= kept.len() as i64, "{counters}");
    assert!(counters.peak_live_bytes >= counters.live_bytes - alloc::PEAK_STEP * 64);
    assert!(counters.total_allocated_bytes >= counters.live_bytes as u64);
}

// The reader's case: a service leaks 50 MiB and a task; both are reported.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_50_mib_box_leak_and_a_task_are_both_reported() {
    let check = LeakCheck::start();
    let leaked: &'static mut [u8] = Box::leak(vec![0u8; FIFTY_MIB].into_boxed_slice());
    leaked[0] = 1;
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let report = check.report().await;
    assert_eq!(report.leaked_tasks(), 1, "{report}");
    assert!(report.live_bytes >= FIFTY_MIB as i64, "{report}");
    assert_eq!(report.heap_scope, HeapScope::ThisThread);
    assert!(!report.is_clean());
}

#[test]
#[should_panic(expected = "LeakCheck::process_wide() in a test file of its own")]
fn a_per_thread_check_on_a_multi_thread_runtime_says_so() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        LeakCheck::start();
    });
}
