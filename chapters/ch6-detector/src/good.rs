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
        // One TTL sweep period (5 s) per block: floors ignore the sawtooth.
        block_len: 5,
        // The seed's 5 MB, 10 000 objects; tasks as growth, not an absolute 100.
        // Each: or 25 % of the baseline, if that is more.
        heap_growth: growth(5 * MIB, 0.25),
        object_growth: growth(10_000, 0.25),
        task_growth: growth(5, 0.25),
        // Raise once a condition held on 2 floors in a row; clear below half
        // the threshold (hysteresis).
        confirm_blocks: 2,
        clear_fraction: 0.5,
        // Mann–Kendall over 8 floors (40 s), tested from 6 on, raised at
        // z ≥ 2.326 (one-sided p < 0.01), cleared below z = 1.
        trend_window_blocks: 8,
        trend_min_blocks: 6,
        trend_z_raise: 2.326,
        trend_z_clear: 1.0,
        // A rise under 1 MiB (or 2 % of the baseline) across the window is ignored.
        trend_min_rise: growth(MIB, 0.02),
        // ... and 3 times the heap's noise within a block.
        trend_rise_over_noise: 3.0,
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
