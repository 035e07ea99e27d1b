//! Chapter 6: automated leak detection that can be trusted.
//!
//! Two detectors watch the same series of observations (heap bytes, live
//! allocations, alive tasks) and are scored on a labelled corpus, together
//! with the Prometheus rules in `alerts.yml` run by promtool:
//!
//! | | [`bad`] | [`good`] |
//! |---|---|---|
//! | tasks | absolute count compared with 100: 10 leaked tasks never alert | a trend of the task floor, like the heap's |
//! | heap | one sample against the first reading, every 10 s | floors (minima) at ten resolutions, each judged on its last 8 |
//! | trend | "each of the last 5 samples rose" | Mann–Kendall + Theil–Sen, on windows long enough to have seen a sweep |
//! | start | the first reading is the baseline forever | no alert from windows reaching into the warm-up; no fixed baseline |
//! | alerts | repeated every 10 s while the condition holds | once when raised, once when cleared (hysteresis) |
//! | memory | keeps every sample forever | at most 90 floors |
//!
//! [`traces`] generates the corpus (a seeded generator, split into a tuning
//! and a held-out part), [`scenario`] records the seed's own test scenario
//! for real, [`eval`] scores a detector on a trace and per family, and
//! [`prom`] runs `alerts.yml` on traces with promtool.

pub mod bad;
pub mod eval;
pub mod good;
pub mod prom;
pub mod scenario;
pub mod traces;

use std::time::Duration;

/// The seed's `MemoryGrowthMB: 5`.
pub const SEED_MEMORY_GROWTH_MB: i64 = 5;
/// The seed's `ObjectGrowth: 10000`.
pub const SEED_OBJECT_GROWTH: i64 = 10_000;
/// The seed's `GoroutineGrowth: 100`, compared with the absolute count.
pub const SEED_GOROUTINE_LIMIT: u64 = 100;
/// The seed's `MonitorDuration: time.Second * 10`: analysis period.
pub const SEED_MONITOR_DURATION: Duration = Duration::from_secs(10);
/// The seed's `SampleInterval: time.Second`.
pub const SEED_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// `analyzeTrend(samples[len(samples)-5:])`: samples in the trend test.
pub const SEED_TREND_SAMPLES: usize = 5;

/// `testMemoryLeakDetector`: `for i := 0; i < 50; i++`.
pub const SCENARIO_ROUNDS: usize = 50;
/// `make([]byte, 1024*200)`: bytes leaked per round.
pub const SCENARIO_LEAK_BYTES: usize = 1024 * 200;
/// `if i%5 == 0`: a task is leaked every 5th round (10 in all).
pub const SCENARIO_TASK_EVERY: usize = 5;
/// `time.Sleep(time.Millisecond * 500)` between rounds.
pub const SCENARIO_ROUND_PAUSE: Duration = Duration::from_millis(500);
/// `time.Sleep(time.Second * 15)`: "wait for the detector to analyse".
pub const SCENARIO_FINAL_WAIT: Duration = Duration::from_secs(15);
