//! The thread-churn scenario seen process-wide: jemalloc's allocated bytes
//! and the process's thread count. Other tests running in the same process
//! would disturb both, so this file holds one test.

use std::sync::Arc;

use ch13_clients::{
    CHURNED_THREADS, SCRATCH_BYTES, bad, churning_runtime, good, render_on_retiring_threads,
};
use leakscope::heap::HeapStats;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn allocated() -> i64 {
    HeapStats::read().expect("jemalloc statistics").allocated as i64
}

/// Threads of this process, from `/proc/self/task`.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("Linux's /proc")
        .count()
}

/// The thread count once threads that have signalled their exit are gone
/// from `/proc` too (a thread runs its thread-local destructors, then exits):
/// waits up to a second for it to reach `expected`.
fn threads_settled_to(expected: usize) -> usize {
    for _ in 0..1000 {
        if threads() == expected {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    threads()
}

/// How far jemalloc's process-wide `allocated` moves while 50 threads start
/// and exit, whatever the scenario keeps: it counts small objects cached per
/// thread as allocated until a thread's cache is flushed, and each thread
/// has a handle, a name and runtime bookkeeping. Seen here: ±60 KiB. The
/// exact count of what each side keeps is in `claims.rs`.
const PROCESS_NOISE: i64 = 128 * 1024;

// ANCHOR: churn_heap
#[test]
fn retired_threads_leave_their_scratch_in_the_heap_only_when_it_is_kept_per_thread() {
    let threads_before = threads();
    let runtime = churning_runtime();
    // A first round sets up the runtime's blocking pool, which it keeps.
    runtime.block_on(render_on_retiring_threads(
        Arc::new(good::ScratchPool::new(4)),
        2,
    ));

    let before = allocated();
    let kept_per_thread = Arc::new(bad::ScratchByThread::default());
    runtime.block_on(render_on_retiring_threads(
        kept_per_thread.clone(),
        CHURNED_THREADS,
    ));
    let growth = allocated() - before;
    // 50 threads came and went; their 50 buffers of 64 KiB are all still here.
    assert_eq!(threads_settled_to(threads_before), threads_before);
    assert!(
        growth >= 50 * 64 * 1024 - PROCESS_NOISE,
        "grew {growth} bytes"
    );
    drop(kept_per_thread);

    let before = allocated();
    let pool = Arc::new(good::ScratchPool::new(4));
    runtime.block_on(render_on_retiring_threads(pool.clone(), CHURNED_THREADS));
    let growth = allocated() - before;
    assert_eq!(threads_settled_to(threads_before), threads_before);
    assert!(
        growth <= SCRATCH_BYTES as i64 + PROCESS_NOISE,
        "grew {growth} bytes"
    );
}
// ANCHOR_END: churn_heap
