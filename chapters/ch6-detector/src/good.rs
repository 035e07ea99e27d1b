//! The fixed detector: leakscope's [`Detector`], with its parameters
//! spelled out, and the wiring that runs it inside a service.

use std::time::Duration;

use leakscope::detect::{Alert, Detector, DetectorConfig, Growth, sample_every};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

// ANCHOR: config
/// The parameters used throughout the chapter: leakscope's defaults,
/// written out so the page can explain each one.
pub fn config() -> DetectorConfig {
    const MIB: u64 = 1 << 20;
    let growth = |min, ratio| Growth { min, ratio };
    DetectorConfig {
        // Floors over 4 samples, then 8, 16, … 2048: ten resolutions, each
        // judged on its last 8 floors.
        block_len: 4,
        levels: 10,
        window_blocks: 8,
        // A window shorter than 4 min may be the filling half of a slow
        // sawtooth: it is not judged.
        min_span: Duration::from_secs(4 * 60),
        // Caches fill after a start: no alert in the first 5 minutes.
        warm_up: Duration::from_secs(5 * 60),
        // The rise across a window that counts: 2 % of the heap (at least
        // 1 MiB), 2 % of the allocations (at least 5 000), 5 % of the
        // tasks (at least 3).
        heap_rise: growth(MIB, 0.02),
        object_rise: growth(5_000, 0.02),
        task_rise: growth(3, 0.05),
        // Mann–Kendall: rising at z ≥ 2.326 (one-sided p < 0.01), cleared
        // below z = 1; the rise at least 3 times the floors' scatter, and no
        // floor dropping by more than a quarter of the rise.
        z_raise: 2.326,
        z_clear: 1.0,
        rise_over_noise: 3.0,
        max_drop_fraction: 0.25,
        // Rising on 2 floors in a row before an alert is raised.
        confirm_blocks: 2,
    }
}
// ANCHOR_END: config

/// A detector with [`config`].
pub fn detector() -> Detector {
    Detector::new(config())
}

// ANCHOR: watch_process
/// Watches this process: samples it every `interval`, runs the detector,
/// and hands every alert to `notify` (write a log line, page someone, fail
/// a health check). Dropping the returned [`JoinSet`] stops all three tasks.
pub fn watch_process(
    interval: Duration,
    mut notify: impl FnMut(Alert) + Send + 'static,
) -> JoinSet<()> {
    let (observations_tx, observations_rx) = mpsc::channel(16);
    let (alerts_tx, mut alerts_rx) = mpsc::channel(16);
    let mut tasks = JoinSet::new();
    tasks.spawn(sample_every(interval, observations_tx));
    tasks.spawn(async move {
        detector().watch(observations_rx, alerts_tx).await;
    });
    tasks.spawn(async move {
        while let Some(alert) = alerts_rx.recv().await {
            notify(alert);
        }
    });
    tasks
}
// ANCHOR_END: watch_process
