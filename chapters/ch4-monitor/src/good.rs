//! The same scenario watched by `leakscope::monitor`: bounded history,
//! stops when told, leaves no task behind.

use std::time::Duration;

use leakscope::monitor::{Monitor, MonitorConfig, MonitorLog};

use crate::{Phase, run_phases};

// ANCHOR: simulate
/// The seed's `simulateMemoryLeak` on [`Monitor`]: sample every `step`,
/// run the three phases, then stop, which waits for the sampling task to end
/// and records a final sample. Returns the log and the leaked buffers;
/// `after_step` runs after each step with the log so far.
pub async fn simulate_memory_leak(
    config: MonitorConfig,
    step: Duration,
    mut after_step: impl FnMut(usize, Phase, &MonitorLog),
) -> (MonitorLog, Vec<Vec<u8>>) {
    let monitor = Monitor::start(config.interval(step));
    let log = monitor.log();
    let leaked_data = run_phases(step, |step_index, phase| {
        after_step(step_index, phase, &log)
    })
    .await;
    let log = monitor.stop().await;
    (log, leaked_data)
}
// ANCHOR_END: simulate
