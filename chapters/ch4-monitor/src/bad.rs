//! The seed's `MemoryMonitor`, ported as closely as Rust allows: it keeps
//! every sample forever, and its stop flag is read only after the next tick.
//!
#![doc = include_str!("racy_monitor.md")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use leakscope::monitor::{DEFAULT_GROWTH_WARNING_BYTES, DEFAULT_RISING_SAMPLES, Sample, Warning};
use tokio::time::{Instant, MissedTickBehavior};

use crate::{Phase, run_phases};

// ANCHOR: seed_monitor
/// The seed's `MemoryMonitor`. Go shares `samples` and `running` between
/// the caller and the sampling goroutine unsynchronised; here they are behind
/// a `Mutex` and an `AtomicBool`, which is what the seed meant.
#[derive(Debug, Clone, Default)]
pub struct SeedMonitor {
    samples: Arc<Mutex<Vec<Sample>>>, // Go: samples []runtime.MemStats
    running: Arc<AtomicBool>,         // Go: running bool
}

impl SeedMonitor {
    /// An idle monitor with no samples (`NewMemoryMonitor`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts sampling every `interval` (`Start`). The first sample comes
    /// one interval later, like Go's ticker.
    pub fn start(&self, interval: Duration) {
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let samples = Arc::clone(&self.samples);
        let running = Arc::clone(&self.running);
        tokio::spawn(async move {
            let started = Instant::now();
            let mut ticker = tokio::time::interval_at(started + interval, interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
            while running.load(Ordering::SeqCst) {
                ticker.tick().await; // Go: case <-ticker.C
                let sample = Sample::take(started.elapsed());
                lock(&samples).push(sample); // kept forever
            }
        });
    }

    /// Clears the flag (`Stop`). The loop only sees it after its next tick:
    /// until then the task lives on, and it takes one more sample.
    pub fn stop(&self) {
        self.running.store(false, Ordering::SeqCst);
    }
}
// ANCHOR_END: seed_monitor

fn lock(samples: &Mutex<Vec<Sample>>) -> MutexGuard<'_, Vec<Sample>> {
    samples
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the seed's `Analyze` prints, as data.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedAnalysis {
    /// Samples taken (`len(mm.samples)`).
    pub samples: usize,
    /// Allocated heap at the first sample (`first.HeapAlloc`).
    pub first_allocated: u64,
    /// Allocated heap at the last sample (`last.HeapAlloc`).
    pub last_allocated: u64,
    /// `last − first`.
    pub growth_bytes: i64,
    /// The seed's warnings that fired.
    pub warnings: Vec<Warning>,
}

impl SeedMonitor {
    /// Every sample taken so far, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.samples).clone()
    }

    /// How many samples the monitor holds (all it ever took).
    pub fn sample_count(&self) -> usize {
        lock(&self.samples).len()
    }

    // ANCHOR: analyze
    /// The seed's `Analyze`: first vs last sample, a warning above 1 MB of
    /// growth, and one if the heap rose at 4 of the last 5 samples. `None`
    /// with fewer than 2 samples (样本数量不足).
    ///
    /// The seed's third warning, more than 10 000 new objects, has no
    /// counterpart: jemalloc does not count live objects cheaply.
    pub fn analyze(&self) -> Option<SeedAnalysis> {
        let samples = lock(&self.samples);
        let (first, last) = (samples.first()?, samples.last()?);
        if samples.len() < 2 {
            return None;
        }
        let growth_bytes = last.heap.allocated as i64 - first.heap.allocated as i64;
        let mut warnings = Vec::new();
        if growth_bytes > DEFAULT_GROWTH_WARNING_BYTES as i64 {
            warnings.push(Warning::Growth {
                growth_bytes,
                threshold_bytes: DEFAULT_GROWTH_WARNING_BYTES,
            });
        }
        if samples.len() >= 5 {
            let recent = &samples[samples.len() - 5..];
            let increases = recent
                .windows(2)
                .filter(|pair| pair[1].heap.allocated > pair[0].heap.allocated)
                .count();
            if increases >= DEFAULT_RISING_SAMPLES {
                warnings.push(Warning::SteadyGrowth { increases });
            }
        }
        Some(SeedAnalysis {
            samples: samples.len(),
            first_allocated: first.heap.allocated,
            last_allocated: last.heap.allocated,
            growth_bytes,
            warnings,
        })
    }
    // ANCHOR_END: analyze
}

// ANCHOR: simulate
/// The seed's `simulateMemoryLeak`: start the monitor, run the three phases
/// with the monitor sampling once per step, stop it. Returns the leaked
/// buffers; `after_step` runs after each step.
pub async fn simulate_memory_leak(
    monitor: &SeedMonitor,
    step: Duration,
    after_step: impl FnMut(usize, Phase),
) -> Vec<Vec<u8>> {
    monitor.start(step);
    let leaked_data = run_phases(step, after_step).await;
    monitor.stop();
    leaked_data
}
// ANCHOR_END: simulate
