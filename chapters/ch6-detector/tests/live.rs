//! The fixed detector watching a live process: tasks and heap leak for
//! real on a paused clock, the alerts arrive through the wiring in
//! `good::watch_process`, and clear once the leak is undone. One test in
//! its own file (its own process): the heap reading is process-wide.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ch6_detector::good;
use leakscope::check::LeakCheck;
use leakscope::detect::{AlertKind, AlertState};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

// ANCHOR: live
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn live_leak_raises_task_and_heap_alerts_once_and_clears_them() {
    let check = LeakCheck::start();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let inbox = alerts.clone();
    let watchdog = good::watch_process(SECOND, move |alert| inbox.lock().unwrap().push(alert));
    tokio::time::sleep(6 * MINUTE).await; // quiet: past the warm-up

    // For 10 minutes, a task every 10 s that holds 1 MiB and never finishes.
    let mut leaked = Vec::new();
    for _ in 0..60 {
        let buffer = vec![1u8; 1 << 20];
        leaked.push(tokio::spawn(async move {
            std::future::pending::<()>().await;
            drop(buffer);
        }));
        tokio::time::sleep(10 * SECOND).await;
    }
    leaked.iter().for_each(|task| task.abort()); // undo the leak
    tokio::time::sleep(10 * MINUTE).await;
    drop(watchdog);

    let received = std::mem::take(&mut *alerts.lock().unwrap());
    for kind in [AlertKind::TaskGrowth, AlertKind::HeapGrowth] {
        let states: Vec<AlertState> = received
            .iter()
            .filter(|a| a.kind == kind)
            .map(|a| a.state)
            .collect();
        assert_eq!(
            states,
            [AlertState::Raised, AlertState::Cleared],
            "{kind}: {received:#?}"
        );
    }
    drop((received, alerts, leaked));
    check.assert_no_leaks().await; // the watchdog's three tasks are gone too
}
// ANCHOR_END: live
