//! The seed's `MemoryLeakDetector`, ported faithfully: its thresholds, its
//! trend rule and its flaws.
//!
//! * The task check compares the *absolute* count with `GoroutineGrowth`
//!   (100), although the field's name and the comment next to it ("the
//!   baseline goroutine count should be recorded at creation") say growth.
//! * Memory growth is the current sample minus the first reading, in whole
//!   MiB (integer division), and must be *greater* than 5: 5.9 MiB is not.
//! * The trend is "each of the last 5 samples is higher than the one
//!   before": one noisy sample hides a leak, one sawtooth ramp is a leak.
//! * There is no hysteresis: every 10-second analysis repeats every alert
//!   whose condition still holds.
//! * `samples` grows by one observation per tick, forever.
//!
//! It reads [`Observation`]s instead of `runtime.MemStats` so that it can be
//! replayed on the same traces as the fixed detector: `heap_bytes` is
//! `HeapAlloc`, `objects` is `HeapObjects`, `tasks` is
//! `runtime.NumGoroutine()`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use leakscope::detect::Observation;

use crate::{
    SEED_GOROUTINE_LIMIT, SEED_MEMORY_GROWTH_MB, SEED_MONITOR_DURATION, SEED_OBJECT_GROWTH,
    SEED_SAMPLE_INTERVAL, SEED_TREND_SAMPLES,
};

/// The seed's `LeakThresholds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakThresholds {
    /// `MemoryGrowthMB`: alert when growth in whole MiB is greater.
    pub memory_growth_mb: i64,
    /// `ObjectGrowth`: alert when live objects grew by more.
    pub object_growth: i64,
    /// `GoroutineGrowth`: compared with the absolute task count.
    pub goroutine_growth: u64,
    /// `MonitorDuration`: time between analyses.
    pub monitor_duration: Duration,
    /// `SampleInterval`: time between samples.
    pub sample_interval: Duration,
}

impl Default for LeakThresholds {
    /// The values of `testMemoryLeakDetector`.
    fn default() -> Self {
        Self {
            memory_growth_mb: SEED_MEMORY_GROWTH_MB,
            object_growth: SEED_OBJECT_GROWTH,
            goroutine_growth: SEED_GOROUTINE_LIMIT,
            monitor_duration: SEED_MONITOR_DURATION,
            sample_interval: SEED_SAMPLE_INTERVAL,
        }
    }
}

/// The seed's `LeakAlert`, plus the sample index for scoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakAlert {
    /// `MEMORY_GROWTH`, `OBJECT_GROWTH`, `GOROUTINE_GROWTH` or `MEMORY_TREND`.
    pub kind: &'static str,
    /// The seed's message, in English.
    pub message: String,
    /// `CurrentMem`: heap bytes at the analysis.
    pub current_mem: u64,
    /// `BaselineMem`: heap bytes at the first reading.
    pub baseline_mem: u64,
    /// `Timestamp`, as milliseconds on the trace's clock.
    pub t_ms: u64,
    /// Index of the observation analysed: the number of ticks so far, which
    /// is its row in a trace whose row 0 is the baseline.
    pub sample: usize,
}

/// `analyzeTrend`'s verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trend {
    /// Fewer than 2 samples.
    Unknown,
    /// Every sample higher than the one before.
    Increasing,
    /// No sample higher than the one before.
    Decreasing,
    /// Anything else.
    Stable,
}

type AlertCallback = Box<dyn Fn(LeakAlert) + Send + Sync>;

/// The seed's `MemoryLeakDetector`.
pub struct MemoryLeakDetector {
    baseline: Observation,
    // ANCHOR: unbounded_samples
    samples: Mutex<Vec<Observation>>, // appended on every tick, never trimmed
    // ANCHOR_END: unbounded_samples
    thresholds: LeakThresholds,
    alert_callback: AlertCallback,
    running: Mutex<bool>,
}

impl std::fmt::Debug for MemoryLeakDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLeakDetector")
            .field("baseline", &self.baseline)
            .field("samples", &self.samples_retained())
            .field("thresholds", &self.thresholds)
            .finish_non_exhaustive()
    }
}

impl MemoryLeakDetector {
    /// `NewMemoryLeakDetector`: the baseline is the reading taken now.
    pub fn new(
        thresholds: LeakThresholds,
        baseline: Observation,
        alert_callback: impl Fn(LeakAlert) + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            baseline,
            samples: Mutex::new(Vec::new()),
            thresholds,
            alert_callback: Box::new(alert_callback),
            running: Mutex::new(false),
        })
    }

    /// `Start`: spawns the monitor loop, reading an observation with `read`
    /// on every tick. Must be called inside a tokio runtime.
    pub fn start(
        self: &Arc<Self>,
        read: impl FnMut() -> Observation + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let mut running = self.running.lock().expect("running flag");
        if *running {
            return None;
        }
        *running = true;
        drop(running);
        Some(tokio::spawn(self.clone().monitor(read)))
    }

    /// `Stop`: clears the flag. As in the seed, the loop only notices at
    /// its next tick.
    pub fn stop(&self) {
        *self.running.lock().expect("running flag") = false;
    }

    async fn monitor(self: Arc<Self>, mut read: impl FnMut() -> Observation) {
        let mut ticker = tokio::time::interval(self.thresholds.sample_interval);
        ticker.tick().await; // Go's ticker does not fire at once; tokio's does
        let mut period_start = read().t_ms; // the seed's `startTime := time.Now()`
        while *self.running.lock().expect("running flag") {
            ticker.tick().await;
            self.tick(read(), &mut period_start);
        }
    }

    // ANCHOR: tick
    /// One tick of the monitor loop: keep the sample, and analyse when a
    /// whole `MonitorDuration` has passed since the period started.
    pub fn tick(&self, current: Observation, period_start_ms: &mut u64) {
        self.samples.lock().expect("samples").push(current);
        let monitor_ms = self.thresholds.monitor_duration.as_millis() as u64;
        if current.t_ms - *period_start_ms >= monitor_ms {
            self.analyze(current);
            *period_start_ms = current.t_ms; // reset the monitoring period
        }
    }
    // ANCHOR_END: tick

    fn analyze(&self, current: Observation) {
        let sample = self.samples_retained();
        let alert = |kind, message| LeakAlert {
            kind,
            message,
            current_mem: current.heap_bytes,
            baseline_mem: self.baseline.heap_bytes,
            t_ms: current.t_ms,
            sample,
        };
        // ANCHOR: analyze
        // int64(current.HeapAlloc-baseline.HeapAlloc) / (1024 * 1024): the
        // unsigned difference wraps, the conversion makes it negative again.
        let mem_growth_mb =
            current.heap_bytes.wrapping_sub(self.baseline.heap_bytes) as i64 / (1024 * 1024);
        if mem_growth_mb > self.thresholds.memory_growth_mb {
            let message = format!("memory growth above threshold: {mem_growth_mb} MB");
            (self.alert_callback)(alert("MEMORY_GROWTH", message));
        }
        let object_growth = current.objects.wrapping_sub(self.baseline.objects) as i64;
        if object_growth > self.thresholds.object_growth {
            let message = format!("object count growth above threshold: {object_growth}");
            (self.alert_callback)(alert("OBJECT_GROWTH", message));
        }
        // The baseline goroutine count "should be recorded at creation"; it never is.
        let current_goroutines = current.tasks;
        if current_goroutines > self.thresholds.goroutine_growth {
            let message = format!("too many goroutines: {current_goroutines}");
            (self.alert_callback)(alert("GOROUTINE_GROWTH", message));
        }
        let samples = self.samples.lock().expect("samples");
        let trend = (samples.len() >= SEED_TREND_SAMPLES)
            .then(|| analyze_trend(&samples[samples.len() - SEED_TREND_SAMPLES..]));
        drop(samples);
        if trend == Some(Trend::Increasing) {
            let message = "sustained memory growth detected".to_string();
            (self.alert_callback)(alert("MEMORY_TREND", message));
        }
        // ANCHOR_END: analyze
    }

    /// Observations held: one per tick since the start.
    pub fn samples_retained(&self) -> usize {
        self.samples.lock().expect("samples").len()
    }
}

// ANCHOR: analyze_trend
/// `analyzeTrend`: "increasing" when every sample is above the one before.
pub fn analyze_trend(samples: &[Observation]) -> Trend {
    if samples.len() < 2 {
        return Trend::Unknown;
    }
    let increasing = samples
        .windows(2)
        .filter(|pair| pair[1].heap_bytes > pair[0].heap_bytes)
        .count();
    if increasing >= samples.len() - 1 {
        Trend::Increasing
    } else if increasing == 0 {
        Trend::Decreasing
    } else {
        Trend::Stable
    }
}
// ANCHOR_END: analyze_trend

/// Replays a trace through the seed's detector: the first row is the
/// baseline read by `NewMemoryLeakDetector`, every later row one tick.
/// Returns the alerts and how many samples the detector held at the end.
pub fn replay(thresholds: LeakThresholds, trace: &[Observation]) -> (Vec<LeakAlert>, usize) {
    let Some((baseline, ticks)) = trace.split_first() else {
        return (Vec::new(), 0);
    };
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let sink = alerts.clone();
    let detector = MemoryLeakDetector::new(thresholds, *baseline, move |alert| {
        sink.lock().expect("alerts").push(alert);
    });
    let mut period_start = baseline.t_ms;
    for observation in ticks {
        detector.tick(*observation, &mut period_start);
    }
    let retained = detector.samples_retained();
    let alerts = alerts.lock().expect("alerts").clone();
    (alerts, retained)
}
