//! Both monitors see the seed scenario's leak. They read jemalloc's
//! process-wide statistics, so this is the only test in its binary, and
//! runs both monitors one after the other on one thread: no other test's
//! thread allocates, or flushes its thread cache on exit, while they measure.

use ch4_monitor::{
    LEAK_BYTES, LEAK_STEPS, SEED_STEP, TOTAL_STEPS, WORSE_BYTES, WORSE_STEPS, bad, good,
};
use leakscope::heap::LiveBytes;
use leakscope::monitor::{MonitorConfig, Warning};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// What the heap does not explain by the leaked buffers. jemalloc counts a
/// small object as allocated when it refills a thread cache with a batch of
/// them, not when it hands one out, so the monitors' sample lists, the list
/// holding the buffers, and the runtime's timers move `stats.allocated` in
/// steps of up to a few tens of KiB (a 4 KiB `Vec` moves it by 24 KiB).
const TOLERANCE: i64 = 128 * 1024;

/// Bytes a buffer of `len` bytes takes in jemalloc: its size class.
fn size_class(len: usize) -> i64 {
    let heap = LiveBytes::start();
    let buffer = std::hint::black_box(vec![0u8; len]);
    let bytes = heap.live_bytes();
    drop(buffer);
    bytes
}

/// 10 × 200 KiB + 5 × 500 KiB, as jemalloc counts them.
fn leaked_bytes_as_jemalloc_counts() -> i64 {
    LEAK_STEPS as i64 * size_class(LEAK_BYTES) + WORSE_STEPS as i64 * size_class(WORSE_BYTES)
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
}

fn assert_close_to_the_leak(growth_bytes: i64) {
    let expected = leaked_bytes_as_jemalloc_counts();
    eprintln!("heap grew by {growth_bytes}, the scenario leaked {expected}");
    assert!(
        (growth_bytes - expected).abs() <= TOLERANCE,
        "heap grew by {growth_bytes}, the scenario leaked {expected}"
    );
}

// ANCHOR: both_detect
#[test]
fn both_monitors_see_the_seed_scenarios_leak() {
    let analysis = paused_runtime().block_on(async {
        let monitor = bad::SeedMonitor::new();
        let leaked = bad::simulate_memory_leak(&monitor, SEED_STEP, |_, _| {}).await;
        // Its last sample may predate the last step; one more comes after stop.
        tokio::time::sleep(SEED_STEP).await;
        let analysis = monitor.analyze().expect("enough samples");
        drop(leaked);
        analysis
    });
    let summary = paused_runtime().block_on(async {
        let (log, leaked) =
            good::simulate_memory_leak(MonitorConfig::default(), SEED_STEP, |_, _, _| {}).await;
        drop(leaked);
        log.summary()
    });

    // bad: one sample a second (the 20th is due with stop, so it may come
    // just before or just after it).
    assert!(
        analysis.samples >= TOTAL_STEPS,
        "{} samples",
        analysis.samples
    );
    assert_close_to_the_leak(analysis.growth_bytes);
    assert!(matches!(analysis.warnings[0], Warning::Growth { .. }));
    // good: a sample at 0 s, one a second, and a final one at stop.
    assert!(summary.samples_taken > TOTAL_STEPS as u64);
    assert_close_to_the_leak(summary.growth_bytes);
    assert!(matches!(summary.warnings[0], Warning::Growth { .. }));
    assert_eq!(summary.peak.heap.allocated, summary.last.heap.allocated);
}
// ANCHOR_END: both_detect
