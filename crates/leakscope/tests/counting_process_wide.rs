//! Process-wide counters make an exact check possible on a multi-thread
//! runtime — in a test file of its own, with one test, so that nothing else
//! in the process allocates meanwhile.

use std::time::Duration;

use leakscope::alloc::CountingAlloc;
use leakscope::check::{HeapScope, LeakCheck};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::system();

#[test]
fn a_multi_thread_runtime_is_checked_process_wide_both_ways() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Warm the workers up: their first tasks allocate what they keep.
        let warm: Vec<_> = (0..64)
            .map(|_| tokio::spawn(async { vec![0u8; 64].len() }))
            .collect();
        for handle in warm {
            handle.await.unwrap();
        }

        // Clean: work spread over the workers, all of it freed.
        let check = LeakCheck::process_wide().heap_tolerance(64 * 1024);
        let workers: Vec<_> = (0..64)
            .map(|i| {
                tokio::spawn(async move {
                    vec![i as u8; 16 * 1024]
                        .iter()
                        .map(|&b| b as u64)
                        .sum::<u64>()
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
        let report = check.report().await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.heap_scope, HeapScope::Process);

        // Leaky: each worker's buffer is kept by a task that never ends.
        let check = LeakCheck::process_wide()
            .heap_tolerance(64 * 1024)
            .settle_budget(Duration::from_millis(50));
        for _ in 0..8 {
            tokio::spawn(async {
                let kept = vec![1u8; 1 << 20];
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    std::hint::black_box(&kept);
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let report = check.report().await;
        assert!(report.live_bytes >= 8 << 20, "{report}");
        assert_eq!(report.leaked_tasks(), 8, "{report}");
    });
}
