//! A runtime memory monitor: samples the heap, the task count and the
//! process's resident memory at a fixed interval, keeps a bounded history,
//! and says whether memory keeps growing.
//!
//! * [`Sample`] — one reading: live bytes and allocations from leakscope's
//!   [counting allocator](crate::alloc) when it is installed, jemalloc's
//!   statistics ([`HeapStats`], feature `jemalloc`) when jemalloc is the
//!   allocator, alive tokio tasks, and RSS from `/proc/self/statm`.
//!   [`Sample::take`] reads one without a monitor. A monitor that could see
//!   neither allocator would report a flat 0 B: [`Monitor::try_start`]
//!   refuses to start instead, with the line to add.
//! * [`Monitor`] — a task on the current tokio runtime that records a sample
//!   every [`MonitorConfig::interval`] into a ring buffer of
//!   [`MonitorConfig::capacity`] samples. It stops when cancelled, when
//!   [`Monitor::stop`] is awaited, or when it is dropped, and leaves no task
//!   behind.
//! * [`MonitorLog`] — a cheap, cloneable view of what a monitor recorded:
//!   the recent samples, a [`Summary`] with the seed's two leak warnings, and
//!   the latest sample in Prometheus text format (served at `/metrics` by
//!   `metrics_router` with the `http` feature).
//!
//! The monitor's own memory is O(capacity): the ring buffer is allocated
//! once, and the first and peak samples are kept beside it, so a monitor that
//! runs for a year costs what one that runs for a minute does.
//!
//! ```
//! use std::time::Duration;
//! use leakscope::monitor::{Monitor, MonitorConfig};
//!
//! #[global_allocator]
//! static ALLOC: leakscope::alloc::CountingAlloc = leakscope::alloc::CountingAlloc::system();
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let monitor = Monitor::start(MonitorConfig::default().interval(Duration::from_secs(1)));
//! let kept = vec![1u8; 4 << 20]; // 4 MiB that stay
//! tokio::time::sleep(Duration::from_secs(10)).await;
//!
//! let log = monitor.stop().await;
//! let summary = log.summary();
//! assert!(summary.growth_bytes >= 4 << 20);
//! assert!(!summary.warnings.is_empty());
//! assert!(log.to_prometheus().contains("leakscope_live_bytes "));
//! # drop(kept);
//! # });
//! ```

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::alloc::{self, Counters};
use crate::heap::{self, HeapError, HeapStats};
use crate::report::{format_bytes, format_bytes_delta};

/// Samples a monitor keeps unless told otherwise: ten minutes at 1 Hz.
pub const DEFAULT_CAPACITY: usize = 600;

/// The seed's sampling interval (`monitor.Start(time.Second)`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Growth from the first to the last sample above which the summary warns:
/// the seed's `memoryGrowth > 1024*1024`.
pub const DEFAULT_GROWTH_WARNING_BYTES: u64 = 1024 * 1024;

/// Consecutive increases of the allocated heap after which the summary warns:
/// the seed's "4 increases among the last 5 samples" (`recentGrowth >= 4`).
pub const DEFAULT_RISING_SAMPLES: usize = 4;

/// One reading of the process's memory and tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// Time since the monitor started (or whatever origin the caller of
    /// [`Sample::take`] chose).
    pub elapsed: Duration,
    /// jemalloc's process-wide statistics; all zero if they cannot be read
    /// (feature `jemalloc` off, or jemalloc is not the allocator).
    pub heap: HeapStats,
    /// The counting allocator's process-wide counters, when it is installed.
    pub live: Option<Counters>,
    /// Tasks alive in the current tokio runtime; 0 outside a runtime.
    pub alive_tasks: usize,
    /// Resident set size of the whole process, from `/proc/self/statm`;
    /// `None` where that file does not exist (not Linux).
    pub rss_bytes: Option<u64>,
}

impl Sample {
    // ANCHOR: sample_take
    /// Reads the heap, the task count and RSS now, stamped with `elapsed`.
    ///
    /// Costs a sum over the counting allocator's thread slots (when it is
    /// installed), one jemalloc epoch advance plus six cached-MIB reads (when
    /// jemalloc is), one metrics read from tokio and one `pread` of
    /// `/proc/self/statm`.
    pub fn take(elapsed: Duration) -> Self {
        let live = alloc::process_counters().ok();
        Self {
            elapsed,
            heap: read_jemalloc_stats(live.is_none()),
            live,
            alive_tasks: tokio::runtime::Handle::try_current()
                .map(|runtime| runtime.metrics().num_alive_tasks())
                .unwrap_or(0),
            rss_bytes: rss_bytes(),
        }
    }
    // ANCHOR_END: sample_take

    /// Bytes the program holds: the counting allocator's live bytes when it
    /// is installed (requested sizes), jemalloc's `allocated` otherwise.
    pub fn live_bytes(&self) -> i64 {
        match self.live {
            Some(counters) => counters.live_bytes,
            None => self.heap.allocated as i64,
        }
    }

    /// The sample's gauges in the Prometheus text exposition format
    /// (version 0.0.4): jemalloc statistics, alive tasks, and RSS as
    /// `leakscope_rss_bytes` (`process_resident_memory_bytes` belongs to the
    /// standard process collector, which a service may register beside it).
    pub fn to_prometheus(&self) -> String {
        let mut text = String::with_capacity(1536);
        self.write_prometheus(&mut text);
        text
    }

    fn write_prometheus(&self, text: &mut String) {
        if let Some(live) = self.live {
            let counters: [(&str, &str, &str, i64); 4] = [
                (
                    "leakscope_live_bytes",
                    "gauge",
                    "Bytes in live allocations (requested sizes): watch this one for leaks.",
                    live.live_bytes,
                ),
                (
                    "leakscope_live_allocations",
                    "gauge",
                    "Allocations not yet freed.",
                    live.live_allocations,
                ),
                (
                    "leakscope_allocated_bytes_total",
                    "counter",
                    "Bytes allocated since the process started, frees not subtracted.",
                    live.total_allocated_bytes as i64,
                ),
                (
                    "leakscope_allocations_total",
                    "counter",
                    "Allocations made since the process started.",
                    live.total_allocations as i64,
                ),
            ];
            for (name, kind, help, value) in counters {
                write_metric(text, name, kind, help, value.max(0) as u64);
            }
        }
        // With the counting allocator and no jemalloc statistics, zeros
        // would only mislead.
        if self.live.is_some() && self.heap == HeapStats::default() {
            self.write_tasks_and_rss(text);
            return;
        }
        let heap = &self.heap;
        let gauges: [(&str, &str, u64); 6] = [
            (
                "jemalloc_allocated_bytes",
                "Bytes in live allocations (jemalloc stats.allocated): watch this one for leaks.",
                heap.allocated,
            ),
            (
                "jemalloc_active_bytes",
                "Bytes in active pages, allocated plus fragmentation (stats.active).",
                heap.active,
            ),
            (
                "jemalloc_resident_bytes",
                "Bytes in physically resident pages the allocator maps (stats.resident).",
                heap.resident,
            ),
            (
                "jemalloc_mapped_bytes",
                "Bytes in active extents mapped by the allocator (stats.mapped).",
                heap.mapped,
            ),
            (
                "jemalloc_retained_bytes",
                "Bytes of virtual memory kept rather than unmapped (stats.retained).",
                heap.retained,
            ),
            (
                "jemalloc_metadata_bytes",
                "Bytes the allocator uses for its own bookkeeping (stats.metadata).",
                heap.metadata,
            ),
        ];
        for (name, help, value) in gauges {
            write_metric(text, name, "gauge", help, value);
        }
        self.write_tasks_and_rss(text);
    }

    fn write_tasks_and_rss(&self, text: &mut String) {
        write_metric(
            text,
            "tokio_alive_tasks",
            "gauge",
            "Tasks alive in the monitored tokio runtime.",
            self.alive_tasks as u64,
        );
        if let Some(rss) = self.rss_bytes {
            write_metric(
                text,
                "leakscope_rss_bytes",
                "gauge",
                "Resident memory of the process (/proc/self/statm).",
                rss,
            );
        }
    }
}

fn write_metric(text: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    // Writing into a String cannot fail.
    let _ = write!(
        text,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    );
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>7.1}s] live {}, resident {}, tasks {}",
            self.elapsed.as_secs_f64(),
            format_bytes(self.live_bytes()),
            format_bytes(self.heap.resident as i64),
            self.alive_tasks
        )?;
        if let Some(rss) = self.rss_bytes {
            write!(f, ", rss {}", format_bytes(rss as i64))?;
        }
        Ok(())
    }
}

// jemalloc's statistics when they can be read and are wanted.
#[cfg(feature = "jemalloc")]
fn read_jemalloc_stats(counting_missing: bool) -> HeapStats {
    // With the counting allocator installed jemalloc's numbers are extra
    // detail; read them only when jemalloc is really the allocator.
    if counting_missing || heap::jemalloc_is_global_allocator() {
        HeapStats::read().unwrap_or_default()
    } else {
        HeapStats::default()
    }
}

#[cfg(not(feature = "jemalloc"))]
fn read_jemalloc_stats(_counting_missing: bool) -> HeapStats {
    HeapStats::default()
}

// ANCHOR: rss
// Opened once and re-read with pread: opening the file costs more than
// reading it.
#[cfg(unix)]
static STATM: OnceLock<Option<(std::fs::File, u64)>> = OnceLock::new();

#[cfg(unix)]
fn open_statm() -> Option<(std::fs::File, u64)> {
    let file = std::fs::File::open("/proc/self/statm").ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some((file, u64::try_from(page_size).ok()?))
}

/// Resident set size of this process in bytes, from the second field of
/// `/proc/self/statm` (resident pages) times the page size; `None` where the
/// file cannot be read (not Linux).
///
/// The file is opened on first use and kept open (a process that forks keeps
/// reading its parent's file).
#[cfg(unix)]
pub fn rss_bytes() -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let (statm, page_size) = STATM.get_or_init(open_statm).as_ref()?;
    let mut buffer = [0u8; 128];
    let length = statm.read_at(&mut buffer, 0).ok()?;
    let text = std::str::from_utf8(&buffer[..length]).ok()?;
    let resident_pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(resident_pages * page_size)
}
// ANCHOR_END: rss

/// Resident set size of this process: `None`, as there is no
/// `/proc/self/statm` on this platform.
#[cfg(not(unix))]
pub fn rss_bytes() -> Option<u64> {
    None
}

/// How a [`Monitor`] samples and when its [`Summary`] warns. Build it from
/// `Default` with the setters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorConfig {
    /// Time between samples ([`DEFAULT_INTERVAL`]).
    pub interval: Duration,
    /// Samples kept in the ring buffer ([`DEFAULT_CAPACITY`], at least 1).
    pub capacity: usize,
    /// Growth of the allocated heap, first to last sample, that raises
    /// [`Warning::Growth`] ([`DEFAULT_GROWTH_WARNING_BYTES`]).
    pub growth_warning_bytes: u64,
    /// Consecutive increases of the allocated heap that raise
    /// [`Warning::SteadyGrowth`] ([`DEFAULT_RISING_SAMPLES`]).
    pub rising_samples: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            capacity: DEFAULT_CAPACITY,
            growth_warning_bytes: DEFAULT_GROWTH_WARNING_BYTES,
            rising_samples: DEFAULT_RISING_SAMPLES,
        }
    }
}

impl MonitorConfig {
    /// Sets the time between samples.
    ///
    /// # Panics
    ///
    /// If `interval` is zero.
    pub fn interval(mut self, interval: Duration) -> Self {
        assert!(!interval.is_zero(), "a monitor's interval must be > 0");
        self.interval = interval;
        self
    }

    /// Sets how many recent samples are kept (at least 1).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Sets the growth that raises [`Warning::Growth`].
    pub fn growth_warning_bytes(mut self, bytes: u64) -> Self {
        self.growth_warning_bytes = bytes;
        self
    }

    /// Sets the number of consecutive increases that raises
    /// [`Warning::SteadyGrowth`].
    pub fn rising_samples(mut self, samples: usize) -> Self {
        self.rising_samples = samples;
        self
    }
}

/// A reason to suspect a leak, raised by [`Summary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// The allocated heap grew by more than the threshold from the first
    /// sample to the last.
    Growth {
        /// Growth from the first to the last sample.
        growth_bytes: i64,
        /// The configured threshold.
        threshold_bytes: u64,
    },
    /// The allocated heap rose at every one of the last `increases` samples.
    SteadyGrowth {
        /// Consecutive increases up to the last sample.
        increases: usize,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Growth {
                growth_bytes,
                threshold_bytes,
            } => write!(
                f,
                "heap grew by {} (threshold {})",
                format_bytes_delta(*growth_bytes),
                format_bytes(*threshold_bytes as i64)
            ),
            Warning::SteadyGrowth { increases } => {
                write!(f, "heap rose at each of the last {increases} samples")
            }
        }
    }
}

/// What a monitor saw from its first sample to its latest: the seed's
/// `Analyze`, plus growth rate and peak.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Samples taken since the start (may exceed those kept).
    pub samples_taken: u64,
    /// Samples still in the ring buffer.
    pub samples_kept: usize,
    /// The very first sample (kept even after the ring buffer dropped it).
    pub first: Sample,
    /// The latest sample.
    pub last: Sample,
    /// The sample with the most live bytes ([`Sample::live_bytes`]).
    pub peak: Sample,
    /// `last.live_bytes() − first.live_bytes()`.
    pub growth_bytes: i64,
    /// Growth per minute of elapsed time between first and last sample
    /// (0 when they were taken at the same instant).
    pub growth_per_minute: f64,
    /// Consecutive increases of live bytes up to the last sample.
    pub rising_samples: usize,
    /// The warnings the configured thresholds raise, in the seed's order.
    pub warnings: Vec<Warning>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} samples taken ({} kept) over {:.1}s",
            self.samples_taken,
            self.samples_kept,
            (self.last.elapsed.saturating_sub(self.first.elapsed)).as_secs_f64()
        )?;
        writeln!(
            f,
            "live {} -> {} ({}, {}/min), peak {}",
            format_bytes(self.first.live_bytes()),
            format_bytes(self.last.live_bytes()),
            format_bytes_delta(self.growth_bytes),
            format_bytes_delta(self.growth_per_minute as i64),
            format_bytes(self.peak.live_bytes())
        )?;
        writeln!(
            f,
            "tasks {} -> {}",
            self.first.alive_tasks, self.last.alive_tasks
        )?;
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct LogState {
    config: MonitorConfig,
    recent: VecDeque<Sample>,
    first: Sample,
    peak: Sample,
    samples_taken: u64,
    rising_samples: usize,
}

impl LogState {
    // ANCHOR: ring_buffer
    fn record(&mut self, sample: Sample) {
        let previous = self.recent.back().copied().unwrap_or(self.first);
        if self.samples_taken > 0 && sample.live_bytes() > previous.live_bytes() {
            self.rising_samples += 1;
        } else {
            self.rising_samples = 0;
        }
        if self.samples_taken == 0 {
            self.first = sample;
        }
        if self.samples_taken == 0 || sample.live_bytes() > self.peak.live_bytes() {
            self.peak = sample;
        }
        // Full: drop the oldest. The deque never grows past its first allocation.
        if self.recent.len() == self.config.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back(sample);
        self.samples_taken += 1;
    }
    // ANCHOR_END: ring_buffer
}

/// A shared, cloneable view of the samples a [`Monitor`] records. Clones see
/// the same data; keeping one does not keep the monitor running.
#[derive(Debug, Clone)]
pub struct MonitorLog {
    state: Arc<Mutex<LogState>>,
}

impl MonitorLog {
    /// An empty log with room for `config.capacity` samples, allocated now.
    pub fn new(config: MonitorConfig) -> Self {
        let capacity = config.capacity.max(1);
        Self {
            state: Arc::new(Mutex::new(LogState {
                config: MonitorConfig { capacity, ..config },
                recent: VecDeque::with_capacity(capacity),
                first: Sample::default(),
                peak: Sample::default(),
                samples_taken: 0,
                rising_samples: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A panic while recording leaves consistent data: keep using it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a sample, dropping the oldest one if the buffer is full.
    pub fn record(&self, sample: Sample) {
        self.lock().record(sample);
    }

    /// The samples still kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.lock().recent.iter().copied().collect()
    }

    /// The most recent sample, if any was recorded.
    pub fn latest(&self) -> Option<Sample> {
        self.lock().recent.back().copied()
    }

    /// Samples recorded since the start, including those no longer kept.
    pub fn samples_taken(&self) -> u64 {
        self.lock().samples_taken
    }

    /// The configuration the log was made with.
    pub fn config(&self) -> MonitorConfig {
        self.lock().config
    }

    /// First vs last sample, growth per minute, peak and warnings. With no
    /// sample recorded, every sample in it is all zero.
    pub fn summary(&self) -> Summary {
        let state = self.lock();
        let last = state.recent.back().copied().unwrap_or_default();
        let first = state.first;
        let growth_bytes = last.live_bytes() - first.live_bytes();
        let minutes = last.elapsed.saturating_sub(first.elapsed).as_secs_f64() / 60.0;
        let growth_per_minute = if minutes > 0.0 {
            growth_bytes as f64 / minutes
        } else {
            0.0
        };
        let config = state.config;
        let mut warnings = Vec::new();
        if growth_bytes > 0 && growth_bytes as u64 > config.growth_warning_bytes {
            warnings.push(Warning::Growth {
                growth_bytes,
                threshold_bytes: config.growth_warning_bytes,
            });
        }
        if config.rising_samples > 0 && state.rising_samples >= config.rising_samples {
            warnings.push(Warning::SteadyGrowth {
                increases: state.rising_samples,
            });
        }
        Summary {
            samples_taken: state.samples_taken,
            samples_kept: state.recent.len(),
            first,
            last,
            peak: state.peak,
            growth_bytes,
            growth_per_minute,
            rising_samples: state.rising_samples,
            warnings,
        }
    }

    /// The latest sample in Prometheus text format, plus the counter
    /// `leakscope_monitor_samples_total`. Empty log: only the counter.
    pub fn to_prometheus(&self) -> String {
        let (latest, samples_taken) = {
            let state = self.lock();
            (state.recent.back().copied(), state.samples_taken)
        };
        let mut text = String::with_capacity(1536);
        if let Some(sample) = latest {
            sample.write_prometheus(&mut text);
        }
        write_metric(
            &mut text,
            "leakscope_monitor_samples_total",
            "counter",
            "Samples the memory monitor has taken.",
            samples_taken,
        );
        text
    }
}

/// A running monitor: a task on the tokio runtime it was started on that
/// records a [`Sample`] every interval into a [`MonitorLog`].
///
/// Dropping it stops the task (at its next poll, without waiting); awaiting
/// [`Monitor::stop`] stops it, waits for it and records a final sample.
#[derive(Debug)]
pub struct Monitor {
    log: MonitorLog,
    started: Instant,
    shutdown: CancellationToken,
    sampler: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Records a first sample now and starts sampling every
    /// `config.interval` on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with time enabled, and when leakscope cannot
    /// see the heap ([`Monitor::try_start`] says why instead).
    pub fn start(config: MonitorConfig) -> Self {
        Self::start_with_cancellation(config, &CancellationToken::new())
    }

    /// Like [`Monitor::start`], but returns [`HeapError::Blind`] (whose
    /// message is the line of code to add) when neither leakscope's counting
    /// allocator nor jemalloc is the global allocator.
    pub fn try_start(config: MonitorConfig) -> Result<Self, HeapError> {
        heap::source()?;
        Ok(Self::start(config))
    }

    /// Like [`Monitor::start`], and also stops when `cancel` is cancelled
    /// (for example the service's shutdown token).
    pub fn start_with_cancellation(config: MonitorConfig, cancel: &CancellationToken) -> Self {
        if let Err(error) = heap::source() {
            panic!("{error}");
        }
        let log = MonitorLog::new(config);
        let started = Instant::now();
        log.record(Sample::take(Duration::ZERO));
        // A child token: dropping this monitor must not cancel the caller's token.
        let shutdown = cancel.child_token();
        let sampler = tokio::spawn(sample_until_cancelled(
            log.clone(),
            started,
            config.interval,
            shutdown.clone(),
        ));
        Self {
            log,
            started,
            shutdown,
            sampler: Some(sampler),
        }
    }

    /// A view of the recorded samples that outlives the monitor.
    pub fn log(&self) -> MonitorLog {
        self.log.clone()
    }

    /// The samples still kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.log.samples()
    }

    /// First vs last sample, growth, peak and warnings so far.
    pub fn summary(&self) -> Summary {
        self.log.summary()
    }

    /// Whether the sampling task is still running.
    pub fn is_running(&self) -> bool {
        self.sampler
            .as_ref()
            .is_some_and(|sampler| !sampler.is_finished())
    }

    // ANCHOR: stop
    /// Stops sampling, waits for the task to end, records one last sample
    /// and returns the log.
    pub async fn stop(mut self) -> MonitorLog {
        self.shutdown.cancel();
        if let Some(sampler) = self.sampler.take() {
            // The task only ends by cancellation; a panic inside it is re-raised.
            if let Err(error) = sampler.await
                && error.is_panic()
            {
                std::panic::resume_unwind(error.into_panic());
            }
        }
        self.log.record(Sample::take(self.started.elapsed()));
        self.log.clone()
    }
    // ANCHOR_END: stop
}

// ANCHOR: drop
impl Drop for Monitor {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
// ANCHOR_END: drop

// ANCHOR: sample_loop
async fn sample_until_cancelled(
    log: MonitorLog,
    started: Instant,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval_at(started + interval, interval);
    // A stalled runtime skips samples instead of taking a burst of them.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => log.record(Sample::take(started.elapsed())),
        }
    }
}
// ANCHOR_END: sample_loop

/// An axum router serving the log's latest sample at `GET /metrics`, in
/// the Prometheus text format. Merge it into a service's router or serve it
/// on its own port.
#[cfg(feature = "http")]
pub fn metrics_router(log: MonitorLog) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(serve_metrics))
        .with_state(log)
}

/// The axum handler behind [`metrics_router`]: the latest sample as
/// `text/plain; version=0.0.4`.
#[cfg(feature = "http")]
pub async fn serve_metrics(
    axum::extract::State(log): axum::extract::State<MonitorLog>,
) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        log.to_prometheus(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::LiveBytes;
    use crate::tasks::TaskLeakCheck;

    // jemalloc is the global allocator of this test binary (set in `heap`'s tests).

    fn sample_with_allocated(seconds: u64, allocated: u64) -> Sample {
        Sample {
            elapsed: Duration::from_secs(seconds),
            heap: HeapStats {
                allocated,
                ..HeapStats::default()
            },
            ..Sample::default()
        }
    }

    #[test]
    fn ring_buffer_keeps_the_newest_and_remembers_first_and_peak() {
        let log = MonitorLog::new(MonitorConfig::default().capacity(3));
        for (second, allocated) in [(0, 100), (1, 900), (2, 300), (3, 400), (4, 500)] {
            log.record(sample_with_allocated(second, allocated));
        }
        let kept: Vec<u64> = log.samples().iter().map(|s| s.heap.allocated).collect();
        assert_eq!(kept, [300, 400, 500]);
        let summary = log.summary();
        assert_eq!(summary.samples_taken, 5);
        assert_eq!(summary.samples_kept, 3);
        assert_eq!(summary.first.heap.allocated, 100);
        assert_eq!(summary.peak.heap.allocated, 900);
        assert_eq!(summary.growth_bytes, 400);
        assert_eq!(summary.growth_per_minute, 400.0 * 60.0 / 4.0);
        assert_eq!(summary.rising_samples, 2);
        assert!(summary.warnings.is_empty());
    }

    #[test]
    fn the_seeds_two_warnings_fire_at_their_thresholds() {
        let log = MonitorLog::new(MonitorConfig::default());
        let mib = 1024 * 1024;
        for second in 0..5 {
            log.record(sample_with_allocated(second, mib + second * mib / 4));
        }
        // Four increases, growth exactly 1 MiB: only the steady-growth warning.
        assert_eq!(
            log.summary().warnings,
            [Warning::SteadyGrowth { increases: 4 }]
        );
        log.record(sample_with_allocated(5, 2 * mib + 1));
        assert_eq!(
            log.summary().warnings,
            [
                Warning::Growth {
                    growth_bytes: mib as i64 + 1,
                    threshold_bytes: mib
                },
                Warning::SteadyGrowth { increases: 5 }
            ]
        );
        log.record(sample_with_allocated(6, 2 * mib + 1)); // flat: streak broken
        assert_eq!(log.summary().rising_samples, 0);
        assert_eq!(log.summary().warnings.len(), 1);
    }

    #[test]
    fn rss_is_read_from_proc_on_linux() {
        let rss = rss_bytes();
        if cfg!(target_os = "linux") {
            let rss = rss.expect("/proc/self/statm is readable on Linux");
            // The heap's resident pages are part of the process's RSS.
            #[cfg(feature = "jemalloc")]
            {
                let heap = HeapStats::read().unwrap();
                assert!(rss >= heap.resident / 2, "rss {rss}, heap {heap}");
            }
            assert!(rss >= 1 << 20, "rss {rss}");
        } else {
            assert_eq!(rss, None);
        }
    }

    #[test]
    fn prometheus_text_has_help_type_and_value_for_every_metric() {
        let sample = Sample {
            elapsed: Duration::from_secs(3),
            heap: HeapStats {
                allocated: 1,
                active: 2,
                resident: 3,
                mapped: 4,
                retained: 5,
                metadata: 6,
            },
            live: None,
            alive_tasks: 7,
            rss_bytes: Some(8),
        };
        let text = sample.to_prometheus();
        let values: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            values,
            [
                "jemalloc_allocated_bytes 1",
                "jemalloc_active_bytes 2",
                "jemalloc_resident_bytes 3",
                "jemalloc_mapped_bytes 4",
                "jemalloc_retained_bytes 5",
                "jemalloc_metadata_bytes 6",
                "tokio_alive_tasks 7",
                "leakscope_rss_bytes 8",
            ]
        );
        assert_eq!(text.matches("# HELP ").count(), 8);
        assert_eq!(text.matches("# TYPE ").count(), 8);
        let without_rss = Sample {
            rss_bytes: None,
            ..sample
        };
        assert!(!without_rss.to_prometheus().contains("process_resident"));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn samples_every_interval_and_stops_without_leaving_a_task() {
        let check = TaskLeakCheck::start();
        let monitor = Monitor::start(MonitorConfig::default().interval(Duration::from_secs(2)));
        // Off the tick instants, so no timer ties with the sampler's.
        tokio::time::sleep(Duration::from_secs(11)).await;
        let elapsed: Vec<u64> = monitor
            .samples()
            .iter()
            .map(|s| s.elapsed.as_secs())
            .collect();
        assert_eq!(elapsed, [0, 2, 4, 6, 8, 10]);
        assert_eq!(monitor.samples()[1].alive_tasks, 1); // the monitor itself
        let log = monitor.stop().await;
        assert_eq!(log.samples_taken(), 7); // plus the final one
        assert_eq!(log.latest().unwrap().alive_tasks, 0);
        check.assert_no_leaks().await;
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn dropping_the_monitor_or_cancelling_its_token_ends_the_task() {
        let check = TaskLeakCheck::start();
        drop(Monitor::start(MonitorConfig::default()));
        check.assert_no_leaks().await;

        let service_shutdown = CancellationToken::new();
        let monitor = Monitor::start_with_cancellation(MonitorConfig::default(), &service_shutdown);
        let log = monitor.log();
        tokio::time::sleep(Duration::from_millis(5500)).await;
        assert!(monitor.is_running());
        service_shutdown.cancel();
        check.assert_no_leaks().await;
        assert!(!monitor.is_running());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(log.samples_taken(), 6); // 0..=5 s, nothing after the cancel
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_monitor_holds_no_more_memory_after_10_000_samples_than_after_its_buffer_filled() {
        let monitor = Monitor::start(MonitorConfig::default().capacity(60));
        tokio::time::sleep(Duration::from_millis(60_500)).await; // buffer full
        let heap = LiveBytes::start();
        tokio::time::sleep(Duration::from_secs(10_000)).await;
        assert_eq!(monitor.log().samples_taken(), 10_000 + 61);
        assert_eq!(heap.live_bytes(), 0);
    }

    #[cfg(feature = "http")]
    #[tokio::test(flavor = "current_thread")]
    async fn metrics_route_serves_the_latest_sample() {
        use tower::ServiceExt;
        let log = MonitorLog::new(MonitorConfig::default());
        log.record(sample_with_allocated(0, 4096));
        let response = metrics_router(log)
            .oneshot(
                axum::http::Request::get("/metrics")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.contains("\njemalloc_allocated_bytes 4096\n"));
        assert!(text.contains("\nleakscope_monitor_samples_total 1\n"));
    }
}
