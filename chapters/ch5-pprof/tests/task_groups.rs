//! Per-group live task counts: tokio-metrics' `TaskMonitor` beside
//! leakscope's census. A monitor counts the tasks it instrumented and only
//! those; the census counts every task of the runtime and, with task dumps,
//! says where each waits, without touching the code that spawned them.

use std::time::Duration;

use leakscope::tasks::alive_tasks;
use tokio::sync::oneshot;
use tokio_metrics::TaskMonitor;

/// Tasks a monitor instrumented that have not ended yet.
fn alive(monitor: &TaskMonitor) -> u64 {
    let metrics = monitor.cumulative();
    metrics.instrumented_count - metrics.dropped_count
}

// ANCHOR: task_groups
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_task_monitor_counts_its_group_and_the_census_counts_every_task() {
    let alive_before = alive_tasks();
    let handlers = TaskMonitor::new();
    let workers = TaskMonitor::new();
    let mut stop_signals = Vec::new();
    for request in 0..200_u64 {
        // A handler ends with its request.
        let handled = tokio::spawn(handlers.instrument(async move { request * 2 }));
        assert_eq!(handled.await.unwrap(), request * 2);
        // The seed's worker, every 20th request: its stop signal is kept
        // and never sent.
        if request % 20 == 0 {
            let (stop, stopped) = oneshot::channel::<()>();
            stop_signals.push(stop);
            tokio::spawn(workers.instrument(async move {
                let _ = stopped.await;
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!((alive(&handlers), alive(&workers)), (0, 10));
    assert_eq!(alive_tasks() - alive_before, 10);
    #[cfg(all(
        tokio_unstable,
        target_os = "linux",
        any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        let sites = leakscope::profile::task_sites(Duration::from_secs(5))
            .await
            .expect("the dump finishes");
        assert_eq!(sites[0].tasks, 10);
        assert!(
            sites[0].location.contains("tests/task_groups.rs"),
            "{sites:?}"
        );
    }

    // Dropping the stop signals closes the channels: the workers end.
    drop(stop_signals);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(alive(&workers), 0);
    assert_eq!(alive_tasks(), alive_before);
}
// ANCHOR_END: task_groups
