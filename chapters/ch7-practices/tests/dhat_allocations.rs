//! Allocation *counts* (not bytes) for practices 4 and 5, from dhat in
//! testing mode. dhat is this file's global allocator and counts every
//! thread, so the file is one plain program (`harness = false`): the test
//! harness's own threads would otherwise add their allocations.

use std::time::Duration;

use ch7_practices::{BUFFER_SIZE, LoopTimer, bad, good, run_periodic_worker};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const REQUESTS: u64 = 1000;

/// Heap blocks allocated while `work` runs.
fn blocks_allocated(work: impl FnOnce()) -> u64 {
    let before = dhat::HeapStats::get().total_blocks;
    work();
    dhat::HeapStats::get().total_blocks - before
}

/// Heap blocks allocated by `iterations` turns of a periodic worker's loop,
/// on a paused-clock runtime built beforehand.
fn blocks_for_periodic_worker(timer: LoopTimer, turns: u32) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    blocks_allocated(|| {
        runtime.block_on(run_periodic_worker(timer, turns));
    })
}

// ANCHOR: dhat_counts
fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();

    // Practice 4: one block per request with a new buffer, none with a pool
    // or a reused buffer.
    let new_buffers = blocks_allocated(|| {
        for request_id in 0..REQUESTS {
            std::hint::black_box(bad::handle_request_with_new_buffer(request_id, BUFFER_SIZE));
        }
    });
    assert_eq!(new_buffers, REQUESTS);
    let pool = good::BufferPool::new();
    good::handle_request_with_pooled_buffer(&pool, 0, BUFFER_SIZE);
    let pooled = blocks_allocated(|| {
        for request_id in 0..REQUESTS {
            std::hint::black_box(good::handle_request_with_pooled_buffer(
                &pool,
                request_id,
                BUFFER_SIZE,
            ));
        }
    });
    assert_eq!(pooled, 0);
    let mut response = Vec::new();
    good::handle_request_reusing_buffer(&mut response, 0, BUFFER_SIZE);
    let reused = blocks_allocated(|| {
        for request_id in 0..REQUESTS {
            std::hint::black_box(good::handle_request_reusing_buffer(
                &mut response,
                request_id,
                BUFFER_SIZE,
            ));
        }
    });
    assert_eq!(reused, 0);

    // Practice 5: 1000 more turns of either timer loop, not one block more.
    let mut extra_blocks_per_1000_turns = Vec::new();
    for timer in [LoopTimer::NewSleepEachTurn, LoopTimer::OneInterval] {
        let short = blocks_for_periodic_worker(timer, 100);
        let long = blocks_for_periodic_worker(timer, 1100);
        assert_eq!(long, short, "{timer:?}");
        extra_blocks_per_1000_turns.push(long - short);
    }
    // Sanity: the count does see a timer that is boxed each time round.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let _inside_runtime = runtime.enter(); // a Sleep needs a timer to belong to
    let boxed_sleeps = blocks_allocated(|| {
        for _ in 0..REQUESTS {
            drop(std::hint::black_box(Box::pin(tokio::time::sleep(
                Duration::ZERO,
            ))));
        }
    });
    assert_eq!(boxed_sleeps, REQUESTS);
    println!(
        "dhat blocks per {REQUESTS} requests: new buffer {new_buffers}, pooled {pooled}, \
         reused {reused}; per 1000 extra timer-loop turns: new sleep {}, one interval {}; \
         {REQUESTS} boxed sleeps: {boxed_sleeps}",
        extra_blocks_per_1000_turns[0], extra_blocks_per_1000_turns[1]
    );
}
// ANCHOR_END: dhat_counts
