//! Automated leak detection: watches a series of observations (heap bytes,
//! live allocations, alive tasks) and raises an alert when one of them grows
//! past its baseline or keeps trending up — and one more when it recovers.
//!
//! The detector is built to be trusted on real, noisy signals:
//!
//! * **Baselines, not absolute limits.** The baseline is the *floor* (the
//!   minimum) of the first block of samples; every threshold is growth over
//!   that baseline, `max(min_growth, ratio × baseline)`, so the same
//!   configuration fits a service with 10 tasks and one with 10 000.
//! * **Floors, not samples.** Samples are grouped into blocks of
//!   [`DetectorConfig::block_len`]; each check looks at the block's minimum.
//!   A cache that fills and is swept every few seconds (a sawtooth) has a
//!   flat floor; a leak raises the floor. Noise spikes never reach it.
//! * **A trend test that knows about noise.** The heap trend is the
//!   Mann–Kendall test over the last [`DetectorConfig::trend_window_blocks`]
//!   floors (a rank test: how many later floors are above earlier ones,
//!   against what chance would give), with the Theil–Sen slope (the median
//!   of all pairwise slopes) as the rate, and guards: the rise must add up
//!   to a meaningful amount and stand well above the heap's own noise, both
//!   halves of the window must rise (a one-off step does not), and the
//!   newest floor must be the highest.
//! * **Confirmation and hysteresis.** A condition must hold on
//!   [`DetectorConfig::confirm_blocks`] floors in a row before it alerts
//!   ([`AlertState::Raised`]), and alerts once more when it ends
//!   ([`AlertState::Cleared`]); a level clears only when growth falls below
//!   [`DetectorConfig::clear_fraction`] of its threshold, so a value
//!   hovering at the threshold does not cause an alert storm.
//! * **Bounded memory.** The detector keeps one block of samples and a
//!   window of floors, however long it runs.
//!
//! It runs on recorded traces ([`Detector::observe`] per row, or
//! [`parse_trace`] for the CSV format `t_ms,heap_bytes,objects,tasks`) and on
//! live measurements ([`Observation::now`], [`Detector::watch`] with a
//! channel of observations and a channel of alerts).
//!
//! ```
//! use leakscope::detect::{AlertKind, AlertState, Detector, DetectorConfig, Observation};
//!
//! let mut detector = Detector::new(DetectorConfig::default());
//! let mut alerts = Vec::new();
//! for second in 0..60u64 {
//!     // 40 MiB steady, then a leak of 1 MiB per second from t = 20 s.
//!     let heap_bytes = (40 << 20) + second.saturating_sub(20) * (1 << 20);
//!     let observation = Observation { t_ms: second * 1000, heap_bytes, objects: 1000, tasks: 10 };
//!     alerts.extend(detector.observe(observation));
//! }
//! let first = &alerts[0];
//! assert_eq!((first.kind, first.state), (AlertKind::HeapGrowth, AlertState::Raised));
//! assert!(first.current >= first.baseline + (10 << 20)); // 25 % of 40 MiB
//! ```

use std::fmt;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::report::format_bytes;

/// One sample of the three signals a leak shows in, at a point in time:
/// a row of the trace format `t_ms,heap_bytes,objects,tasks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    /// Milliseconds since the start of the recording.
    pub t_ms: u64,
    /// Bytes in live heap allocations (jemalloc's `stats.allocated`, or
    /// Go's `HeapAlloc` in a trace recorded from Go).
    pub heap_bytes: u64,
    /// Live heap allocations (see [`live_allocations`]; Go's `HeapObjects`).
    pub objects: u64,
    /// Alive tasks (goroutines in a Go trace).
    pub tasks: u64,
}

impl Observation {
    /// The observation a [`monitor::Sample`](crate::monitor::Sample) makes,
    /// with the live-allocation count read alongside it (pass
    /// [`live_allocations`], or 0 if not tracked).
    pub fn from_sample(sample: &crate::monitor::Sample, objects: u64) -> Self {
        Self {
            t_ms: sample.elapsed.as_millis() as u64,
            heap_bytes: sample.live_bytes().max(0) as u64,
            objects,
            tasks: sample.alive_tasks as u64,
        }
    }

    /// Measures the current process now: a
    /// [`monitor::Sample`](crate::monitor::Sample) (live bytes, the current
    /// runtime's alive tasks) plus [`live_allocations`].
    pub fn now(elapsed: Duration) -> Result<Self, crate::heap::HeapError> {
        let sample = crate::monitor::Sample::take(elapsed);
        let objects = match sample.live {
            Some(counters) => counters.live_allocations.max(0) as u64,
            // Taking the sample advanced jemalloc's statistics epoch; the
            // allocation counters are read at that same epoch.
            None => jemalloc_live_allocations(false)?,
        };
        Ok(Self::from_sample(&sample, objects))
    }
}

/// Live heap allocations in the whole process: exact from leakscope's
/// [counting allocator](crate::alloc) when it is installed; otherwise, with
/// the `jemalloc` feature and jemalloc as the allocator, over all arenas,
/// small allocations handed out minus small ones returned, plus the same for
/// large ones. [`HeapError::Blind`](crate::heap::HeapError::Blind) when
/// neither can be read.
///
/// jemalloc keeps no single "live objects" counter (Go's `HeapObjects`); its
/// figure is the closest honest equivalent: small regions cached in a
/// thread's tcache count as live until the cache flushes them back, so it
/// runs slightly high and moves in steps of a tcache fill. It costs one
/// statistics epoch advance (jemalloc merges every arena's counters then,
/// which dominates); the counting allocator's costs a sum over its slots.
pub fn live_allocations() -> Result<u64, crate::heap::HeapError> {
    if let Ok(counters) = crate::alloc::process_counters() {
        return Ok(counters.live_allocations.max(0) as u64);
    }
    jemalloc_live_allocations(true)
}

#[cfg(not(feature = "jemalloc"))]
fn jemalloc_live_allocations(_advance_epoch: bool) -> Result<u64, crate::heap::HeapError> {
    Err(crate::heap::HeapError::Blind)
}

#[cfg(feature = "jemalloc")]
fn jemalloc_live_allocations(advance_epoch: bool) -> Result<u64, crate::heap::HeapError> {
    /// MIBs of jemalloc's merged-arena counters (`MALLCTL_ARENAS_ALL` is
    /// arena 4096): small and large allocations handed out, and returned.
    type CounterMibs = [[usize; 5]; 4];
    // Name lookups cost more than the reads themselves, so they are done once.
    static MIBS: std::sync::OnceLock<Result<CounterMibs, crate::heap::Error>> =
        std::sync::OnceLock::new();
    fn lookup() -> Result<CounterMibs, crate::heap::Error> {
        const NAMES: [&str; 4] = [
            "stats.arenas.4096.small.nmalloc\0",
            "stats.arenas.4096.small.ndalloc\0",
            "stats.arenas.4096.large.nmalloc\0",
            "stats.arenas.4096.large.ndalloc\0",
        ];
        let mut mibs = [[0usize; 5]; 4];
        for (mib, name) in mibs.iter_mut().zip(NAMES) {
            tikv_jemalloc_ctl::raw::name_to_mib(name.as_bytes(), mib)?;
        }
        Ok(mibs)
    }
    if !crate::heap::jemalloc_is_global_allocator() {
        return Err(crate::heap::HeapError::Blind);
    }
    let read = || -> Result<u64, crate::heap::Error> {
        if advance_epoch {
            tikv_jemalloc_ctl::epoch::advance()?;
        }
        let mibs = MIBS.get_or_init(lookup).as_ref().map_err(|error| *error)?;
        // SAFETY: all four counters are `uint64_t` in jemalloc's mallctl table.
        let [small_in, small_out, large_in, large_out] =
            mibs.map(|mib| unsafe { tikv_jemalloc_ctl::raw::read_mib::<u64>(&mib) });
        Ok(small_in?.saturating_sub(small_out?) + large_in?.saturating_sub(large_out?))
    };
    // jemalloc is the allocator and was built with statistics: a failure here
    // would be a broken build, not a missing setup.
    Ok(read().expect("jemalloc statistics"))
}

/// What grew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    /// The heap floor rose past its threshold above the baseline.
    HeapGrowth,
    /// The live-allocation floor rose past its threshold.
    ObjectGrowth,
    /// The alive-task floor rose past its threshold.
    TaskGrowth,
    /// The heap floor keeps rising (Mann–Kendall trend test).
    HeapTrend,
}

impl AlertKind {
    /// Every kind, in the order the detector checks them.
    pub const ALL: [AlertKind; 4] = [
        AlertKind::HeapGrowth,
        AlertKind::ObjectGrowth,
        AlertKind::TaskGrowth,
        AlertKind::HeapTrend,
    ];

    /// A stable upper-case name (`HEAP_GROWTH`, …), as in the Go seed.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::HeapGrowth => "HEAP_GROWTH",
            AlertKind::ObjectGrowth => "OBJECT_GROWTH",
            AlertKind::TaskGrowth => "TASK_GROWTH",
            AlertKind::HeapTrend => "HEAP_TREND",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a condition started or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertState {
    /// The condition started: something is leaking.
    Raised,
    /// The condition ended: the signal went back under its clear level.
    Cleared,
}

/// One alert: sent once when a condition starts and once when it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// What grew.
    pub kind: AlertKind,
    /// Started or ended.
    pub state: AlertState,
    /// Time of the observation that completed the deciding block.
    pub t_ms: u64,
    /// Index (from 0) of that observation in the series.
    pub sample: usize,
    /// The floor of the signal now (bytes, allocations or tasks).
    pub current: u64,
    /// The baseline floor it is compared with.
    pub baseline: u64,
    /// A sentence for people: what, how much, against which threshold.
    pub message: String,
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            AlertState::Raised => "RAISED",
            AlertState::Cleared => "cleared",
        };
        write!(
            f,
            "[{:>8.1} s] {} {}: {}",
            self.t_ms as f64 / 1000.0,
            self.kind,
            state,
            self.message
        )
    }
}

/// A growth threshold relative to a baseline: the larger of an absolute
/// amount and a fraction of the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    /// Growth that always counts, however small the baseline.
    pub min: u64,
    /// Growth as a fraction of the baseline (0.25 = 25 %).
    pub ratio: f64,
}

impl Growth {
    /// The growth over `baseline` that reaches the threshold.
    pub fn limit(&self, baseline: u64) -> u64 {
        self.min.max((baseline as f64 * self.ratio).ceil() as u64)
    }
}

/// The detector's parameters. [`Default`] is tuned for one sample per
/// second and explained field by field.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Samples per block; each check uses the block's minimum. Must cover
    /// one period of the slowest sawtooth the service makes (default 5: the
    /// seed's TTL cache sweeps every 5 s, sampled every second).
    pub block_len: usize,
    /// Heap growth that raises [`AlertKind::HeapGrowth`] (default: 5 MiB,
    /// the seed's `MemoryGrowthMB`, or 25 % of the baseline if larger).
    pub heap_growth: Growth,
    /// Live-allocation growth for [`AlertKind::ObjectGrowth`] (default:
    /// 10 000, the seed's `ObjectGrowth`, or 25 % of the baseline).
    pub object_growth: Growth,
    /// Alive-task growth for [`AlertKind::TaskGrowth`] (default: 5 tasks or
    /// 25 % of the baseline; the seed compared the absolute count with 100).
    pub task_growth: Growth,
    /// A condition must hold on this many consecutive floors before it is
    /// raised (default 2): one unlucky block is not a leak.
    pub confirm_blocks: usize,
    /// A raised level clears when growth falls below this fraction of its
    /// threshold (default 0.5): the hysteresis band.
    pub clear_fraction: f64,
    /// Floors in the trend window, the baseline's first (default 8 blocks:
    /// 40 s at 1 Hz).
    pub trend_window_blocks: usize,
    /// Floors needed before the trend is tested at all (default 6: the
    /// fewest with which Mann–Kendall can reach `trend_z_raise`).
    pub trend_min_blocks: usize,
    /// Mann–Kendall z that raises the trend (default 2.326: one-sided
    /// p < 0.01 that the floors rise by chance).
    pub trend_z_raise: f64,
    /// The trend clears when z falls below this (default 1.0), or when the
    /// highest floor in the window was first reached `trend_window_blocks /
    /// 2` or more blocks ago (growth has stopped).
    pub trend_z_clear: f64,
    /// The Theil–Sen rise across the window must reach this much (default
    /// 1 MiB or 2 % of the baseline): a significant but tiny drift is not a
    /// leak worth waking someone for.
    pub trend_min_rise: Growth,
    /// The rise must also be this many times the heap's own noise: the
    /// median, over the window, of each block's standard deviation
    /// (default 3). A service whose heap swings by megabytes from second to
    /// second needs a bigger rise before a trend means something.
    pub trend_rise_over_noise: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            block_len: 5,
            heap_growth: Growth {
                min: 5 << 20,
                ratio: 0.25,
            },
            object_growth: Growth {
                min: 10_000,
                ratio: 0.25,
            },
            task_growth: Growth {
                min: 5,
                ratio: 0.25,
            },
            confirm_blocks: 2,
            clear_fraction: 0.5,
            trend_window_blocks: 8,
            trend_min_blocks: 6,
            trend_z_raise: 2.326,
            trend_z_clear: 1.0,
            trend_min_rise: Growth {
                min: 1 << 20,
                ratio: 0.02,
            },
            trend_rise_over_noise: 3.0,
        }
    }
}

/// Minimum of each signal over one block, and when the block ended.
#[derive(Debug, Clone, Copy)]
struct Floor {
    t_ms: u64,
    heap_bytes: u64,
    objects: u64,
    tasks: u64,
    /// Standard deviation of the heap within the block: how noisy it is.
    heap_spread: f64,
}

impl Floor {
    fn of(block: &[Observation]) -> Self {
        let last = block.last().expect("a block is never empty");
        let count = block.len() as f64;
        let mean = block.iter().map(|o| o.heap_bytes as f64).sum::<f64>() / count;
        let variance = block
            .iter()
            .map(|o| (o.heap_bytes as f64 - mean).powi(2))
            .sum::<f64>()
            / count;
        Self {
            t_ms: last.t_ms,
            heap_bytes: block.iter().map(|o| o.heap_bytes).min().unwrap_or(0),
            objects: block.iter().map(|o| o.objects).min().unwrap_or(0),
            tasks: block.iter().map(|o| o.tasks).min().unwrap_or(0),
            heap_spread: variance.sqrt(),
        }
    }
}

type Callback = Box<dyn FnMut(&Alert) + Send>;

/// The leak detector: feed it observations in time order, get alerts.
pub struct Detector {
    config: DetectorConfig,
    block: Vec<Observation>,
    /// The newest floors, at most `trend_window_blocks` of them.
    floors: std::collections::VecDeque<Floor>,
    baseline: Option<Floor>,
    raised: [bool; 4],
    /// Consecutive floors on which each raise condition has held.
    streaks: [usize; 4],
    samples_seen: usize,
    callback: Option<Callback>,
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detector")
            .field("config", &self.config)
            .field("samples_seen", &self.samples_seen)
            .field("raised", &self.raised)
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// A detector with these parameters.
    ///
    /// # Panics
    ///
    /// If `block_len` is 0, `trend_min_blocks` is under 4 (each half of the
    /// window needs two floors), or the window is shorter than
    /// `trend_min_blocks`.
    pub fn new(config: DetectorConfig) -> Self {
        assert!(config.block_len > 0, "block_len must be at least 1");
        assert!(
            config.trend_min_blocks >= 4 && config.trend_window_blocks >= config.trend_min_blocks,
            "the trend needs at least 4 floors (two per half) and a window of trend_min_blocks"
        );
        Self {
            block: Vec::with_capacity(config.block_len),
            floors: std::collections::VecDeque::with_capacity(config.trend_window_blocks),
            config,
            baseline: None,
            raised: [false; 4],
            streaks: [0; 4],
            samples_seen: 0,
            callback: None,
        }
    }

    /// Also calls `callback` with every alert, as it is raised or cleared
    /// (the Go seed's `alertCallback`).
    pub fn on_alert(mut self, callback: impl FnMut(&Alert) + Send + 'static) -> Self {
        self.callback = Some(Box::new(callback));
        self
    }

    /// The parameters.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Whether the condition `kind` is currently raised.
    pub fn is_raised(&self, kind: AlertKind) -> bool {
        self.raised[kind.index()]
    }

    /// Observations consumed so far.
    pub fn samples_seen(&self) -> usize {
        self.samples_seen
    }

    /// Observations and floors held right now: never more than
    /// `block_len + trend_window_blocks`, however long the detector runs.
    pub fn retained(&self) -> usize {
        self.block.len() + self.floors.len()
    }

    /// Feeds one observation (in time order) and returns the alerts it
    /// caused: none until a block completes, then at most one per kind.
    pub fn observe(&mut self, observation: Observation) -> Vec<Alert> {
        self.samples_seen += 1;
        self.block.push(observation);
        if self.block.len() < self.config.block_len {
            return Vec::new();
        }
        let floor = Floor::of(&self.block);
        self.block.clear();
        let Some(baseline) = self.baseline else {
            // The first block's floor is the baseline everything is compared
            // with, and the first floor of the trend window.
            self.baseline = Some(floor);
            self.floors.push_back(floor);
            return Vec::new();
        };
        if self.floors.len() == self.config.trend_window_blocks {
            self.floors.pop_front();
        }
        self.floors.push_back(floor);

        let mut alerts = Vec::new();
        let sample = self.samples_seen - 1;
        let levels = [
            (
                AlertKind::HeapGrowth,
                floor.heap_bytes,
                baseline.heap_bytes,
                self.config.heap_growth,
            ),
            (
                AlertKind::ObjectGrowth,
                floor.objects,
                baseline.objects,
                self.config.object_growth,
            ),
            (
                AlertKind::TaskGrowth,
                floor.tasks,
                baseline.tasks,
                self.config.task_growth,
            ),
        ];
        for (kind, current, base, growth) in levels {
            // ANCHOR: level_rule
            let limit = growth.limit(base); // max(min, ratio × baseline)
            let grown = current.saturating_sub(base); // floor − baseline floor
            let raised = self.raised[kind.index()];
            let clear_below = (limit as f64 * self.config.clear_fraction) as u64;
            let confirmed = self.confirm(kind, grown >= limit); // for `confirm_blocks` floors
            let state = if !raised && confirmed {
                AlertState::Raised
            } else if raised && grown < clear_below {
                AlertState::Cleared
            } else {
                continue; // no change: no alert
            };
            // ANCHOR_END: level_rule
            self.raised[kind.index()] = state == AlertState::Raised;
            let show = |value: u64| match kind {
                AlertKind::HeapGrowth => format_bytes(value as i64),
                _ => value.to_string(),
            };
            let message = match state {
                AlertState::Raised => format!(
                    "floor {} is {} above the baseline {} (threshold {})",
                    show(current),
                    show(grown),
                    show(base),
                    show(limit)
                ),
                AlertState::Cleared => format!(
                    "floor {} is back within {} of the baseline {}",
                    show(current),
                    show(clear_below),
                    show(base)
                ),
            };
            alerts.push(Alert {
                kind,
                state,
                t_ms: floor.t_ms,
                sample,
                current,
                baseline: base,
                message,
            });
        }
        if let Some(alert) = self.check_trend(baseline, floor, sample) {
            alerts.push(alert);
        }
        if let Some(callback) = &mut self.callback {
            alerts.iter().for_each(callback);
        }
        alerts
    }

    /// Records whether `kind`'s raise condition holds on this floor, and
    /// says whether it has held on `confirm_blocks` floors in a row.
    fn confirm(&mut self, kind: AlertKind, holds: bool) -> bool {
        let streak = &mut self.streaks[kind.index()];
        *streak = if holds { *streak + 1 } else { 0 };
        *streak >= self.config.confirm_blocks
    }

    fn check_trend(&mut self, baseline: Floor, newest: Floor, sample: usize) -> Option<Alert> {
        if self.floors.len() < self.config.trend_min_blocks {
            return None;
        }
        let heap: Vec<f64> = self.floors.iter().map(|f| f.heap_bytes as f64).collect();
        let trend = Trend::of(&heap);
        let block_secs = match (self.floors.front(), self.floors.len()) {
            (Some(first), blocks) if blocks > 1 => {
                (newest.t_ms - first.t_ms) as f64 / 1000.0 / (blocks - 1) as f64
            }
            _ => 0.0,
        };
        let rise = trend.slope * (heap.len() - 1) as f64;
        let highest = heap.iter().copied().fold(f64::MIN, f64::max);
        let newest_is_highest = heap.last() == Some(&highest);
        // Blocks since the highest floor was first reached: a plateau counts
        // as stalled, so the trend clears once growth stops.
        let first_high = heap.iter().position(|v| *v == highest).unwrap_or(0);
        let blocks_since_high = heap.len() - 1 - first_high;
        let stalled = blocks_since_high >= self.config.trend_window_blocks / 2;
        let raised = self.raised[AlertKind::HeapTrend.index()];
        let min_rise = self.config.trend_min_rise.limit(baseline.heap_bytes) as f64;
        // A leak rises through the whole window; a one-off step rises in one
        // half only.
        let (older, newer) = heap.split_at(heap.len() / 2);
        let both_halves_rise = [older, newer]
            .iter()
            .all(|half| Trend::of(half).slope >= trend.slope / 2.0);
        // The heap's noise: the median of the blocks' standard deviations.
        let mut spreads: Vec<f64> = self.floors.iter().map(|f| f.heap_spread).collect();
        spreads.sort_by(f64::total_cmp);
        let noise = spreads[spreads.len() / 2];
        // ANCHOR: trend_rule
        let holds = trend.z >= self.config.trend_z_raise // floors rise: not chance
            && rise >= min_rise // by enough to matter
            && rise >= self.config.trend_rise_over_noise * noise // and above the noise
            && both_halves_rise // steadily: not one step
            && newest_is_highest; // and still rising
        let confirmed = self.confirm(AlertKind::HeapTrend, holds);
        let state = if !raised && confirmed {
            AlertState::Raised
        } else if raised && (trend.z < self.config.trend_z_clear || stalled) {
            AlertState::Cleared
        } else {
            return None;
        };
        // ANCHOR_END: trend_rule
        self.raised[AlertKind::HeapTrend.index()] = state == AlertState::Raised;
        let per_second = if block_secs > 0.0 {
            trend.slope / block_secs
        } else {
            0.0
        };
        let message = match state {
            AlertState::Raised => format!(
                "heap floor rising {}/s over the last {} floors (Mann–Kendall z = {:.2}, rise {})",
                format_bytes(per_second as i64),
                heap.len(),
                trend.z,
                format_bytes(rise as i64)
            ),
            AlertState::Cleared => format!(
                "heap floor no longer rising (z = {:.2}, last new high {} floors ago)",
                trend.z, blocks_since_high
            ),
        };
        Some(Alert {
            kind: AlertKind::HeapTrend,
            state,
            t_ms: newest.t_ms,
            sample,
            current: newest.heap_bytes,
            baseline: baseline.heap_bytes,
            message,
        })
    }

    /// Runs the detector on a channel of observations, sending every alert
    /// on `alerts`, until the observations channel closes or the alert
    /// receiver is dropped. Returns the detector, for inspection.
    pub async fn watch(
        mut self,
        mut observations: mpsc::Receiver<Observation>,
        alerts: mpsc::Sender<Alert>,
    ) -> Self {
        while let Some(observation) = observations.recv().await {
            for alert in self.observe(observation) {
                if alerts.send(alert).await.is_err() {
                    return self;
                }
            }
        }
        self
    }
}

/// Samples the current process with [`Observation::now`] every `interval`
/// (on tokio's clock) and sends the observations until the receiver is
/// dropped: the live input of [`Detector::watch`].
pub async fn sample_every(interval: Duration, observations: mpsc::Sender<Observation>) {
    let start = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let Ok(observation) = Observation::now(start.elapsed()) else {
            return; // jemalloc statistics unavailable: nothing to watch
        };
        if observations.send(observation).await.is_err() {
            return;
        }
    }
}

/// The Mann–Kendall trend statistic and the Theil–Sen slope of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Mann–Kendall S: pairs (i < j) with `x[j] > x[i]` minus pairs with
    /// `x[j] < x[i]`.
    pub s: i64,
    /// S normalised by its standard deviation under "no trend" (with the
    /// correction for ties and for continuity): roughly standard normal
    /// when the series has no trend, so z ≥ 2.326 happens by chance with
    /// probability under 1 %.
    pub z: f64,
    /// Theil–Sen slope: the median of `(x[j] − x[i]) / (j − i)` over all
    /// pairs, in units per step. Robust: up to 29 % of the points can be
    /// outliers without moving it far.
    pub slope: f64,
}

impl Trend {
    /// Computes both over `values` (equally spaced). Fewer than 2 values
    /// give a zero trend.
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        let mut s = 0i64;
        let mut slopes = Vec::with_capacity(n * n.saturating_sub(1) / 2);
        for i in 0..n {
            for j in i + 1..n {
                let difference = values[j] - values[i];
                s += (difference > 0.0) as i64 - (difference < 0.0) as i64;
                slopes.push(difference / (j - i) as f64);
            }
        }
        if slopes.is_empty() {
            return Self {
                s: 0,
                z: 0.0,
                slope: 0.0,
            };
        }
        slopes.sort_by(f64::total_cmp);
        let middle = slopes.len() / 2;
        let slope = if slopes.len() % 2 == 1 {
            slopes[middle]
        } else {
            (slopes[middle - 1] + slopes[middle]) / 2.0
        };
        // Variance of S with no trend, minus what tied groups take away.
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut ties = 0.0;
        let mut run = 1usize;
        for k in 1..=n {
            if k < n && sorted[k] == sorted[k - 1] {
                run += 1;
            } else {
                let t = run as f64;
                ties += t * (t - 1.0) * (2.0 * t + 5.0);
                run = 1;
            }
        }
        let nf = n as f64;
        let variance = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
        let z = if variance <= 0.0 || s == 0 {
            0.0
        } else {
            (s - s.signum()) as f64 / variance.sqrt()
        };
        Self { s, z, slope }
    }
}

/// An error in a trace file, naming the line (from 1) and column (from 1,
/// counted in fields) where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    /// Line of the file, from 1.
    pub line: usize,
    /// Column (field) of the line, from 1.
    pub column: usize,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for TraceError {}

/// The trace format's header line.
pub const TRACE_HEADER: &str = "t_ms,heap_bytes,objects,tasks";

/// Parses a trace: the header [`TRACE_HEADER`] (columns in any order, all
/// four required), then one row of non-negative integers per sample with
/// `t_ms` strictly increasing. Blank lines are skipped.
pub fn parse_trace(text: &str) -> Result<Vec<Observation>, TraceError> {
    const COLUMNS: [&str; 4] = ["t_ms", "heap_bytes", "objects", "tasks"];
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty());
    let Some((header_line, header)) = lines.next() else {
        return Err(TraceError {
            line: 1,
            column: 1,
            message: format!("empty trace: expected the header `{TRACE_HEADER}`"),
        });
    };
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let mut positions = [0usize; 4];
    for (slot, wanted) in positions.iter_mut().zip(COLUMNS) {
        *slot = names
            .iter()
            .position(|name| *name == wanted)
            .ok_or_else(|| TraceError {
                line: header_line,
                column: names.len() + 1,
                message: format!("missing column `{wanted}` (header must name {TRACE_HEADER})"),
            })?;
    }
    let mut trace: Vec<Observation> = Vec::new();
    for (line, row) in lines {
        let fields: Vec<&str> = row.split(',').map(str::trim).collect();
        if fields.len() != names.len() {
            return Err(TraceError {
                line,
                column: fields.len().min(names.len()) + 1,
                message: format!(
                    "expected {} fields like the header, found {}",
                    names.len(),
                    fields.len()
                ),
            });
        }
        let mut values = [0u64; 4];
        for (value, (position, name)) in values.iter_mut().zip(positions.iter().zip(COLUMNS)) {
            *value = fields[*position].parse().map_err(|_| TraceError {
                line,
                column: position + 1,
                message: format!(
                    "`{}` is not a non-negative integer ({name})",
                    fields[*position]
                ),
            })?;
        }
        let [t_ms, heap_bytes, objects, tasks] = values;
        if let Some(previous) = trace.last()
            && t_ms <= previous.t_ms
        {
            return Err(TraceError {
                line,
                column: positions[0] + 1,
                message: format!(
                    "t_ms {t_ms} is not after the previous row's {}: rows must be in time order",
                    previous.t_ms
                ),
            });
        }
        trace.push(Observation {
            t_ms,
            heap_bytes,
            objects,
            tasks,
        });
    }
    Ok(trace)
}

/// Writes observations in the trace format, header first.
pub fn write_trace(observations: &[Observation]) -> String {
    let mut text = format!("{TRACE_HEADER}\n");
    for o in observations {
        text.push_str(&format!(
            "{},{},{},{}\n",
            o.t_ms, o.heap_bytes, o.objects, o.tasks
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(second: u64, heap_bytes: u64) -> Observation {
        Observation {
            t_ms: second * 1000,
            heap_bytes,
            objects: 50_000,
            tasks: 20,
        }
    }

    fn run(detector: &mut Detector, series: impl IntoIterator<Item = Observation>) -> Vec<Alert> {
        series
            .into_iter()
            .flat_map(|o| detector.observe(o))
            .collect()
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn mann_kendall_and_theil_sen_on_known_series() {
        let rising = Trend::of(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(rising.s, 15);
        // var = 6·5·17/18 = 28.33; z = (15 − 1)/√28.33
        assert!((rising.z - 14.0 / (510.0f64 / 18.0).sqrt()).abs() < 1e-9);
        assert_eq!(rising.slope, 1.0);

        // One wild outlier moves the Theil–Sen slope hardly at all.
        let outlier = Trend::of(&[0.0, 1.0, 2.0, 300.0, 4.0, 5.0, 6.0]);
        assert_eq!(outlier.slope, 1.0);

        // Five floors cannot reach z = 2.326 however they rise; six can.
        assert!(Trend::of(&[1.0, 2.0, 3.0, 4.0, 5.0]).z < 2.326);
        assert!((Trend::of(&[1.0, 2.0, 3.0, 4.0, 5.0]).z - 2.204).abs() < 1e-3);
        assert!(rising.z >= 2.326);

        let flat = Trend::of(&[7.0; 6]);
        assert_eq!((flat.s, flat.z, flat.slope), (0, 0.0, 0.0));
    }

    #[test]
    fn steady_heap_raises_nothing_and_memory_stays_bounded() {
        let mut detector = Detector::new(DetectorConfig::default());
        let alerts = run(
            &mut detector,
            (0..10_000).map(|s| observation(s, 40 * MIB + (s % 7) * 1000)),
        );
        assert!(alerts.is_empty(), "{alerts:?}");
        assert_eq!(detector.samples_seen(), 10_000);
        assert!(detector.retained() <= 5 + 8);
    }

    #[test]
    fn a_level_alerts_once_when_it_starts_and_once_when_it_clears() {
        let mut detector = Detector::new(DetectorConfig::default());
        // 40 MiB baseline: threshold 10 MiB (25 %), clears under 5 MiB.
        // Hovering around the threshold must not cause an alert storm.
        let series = (0..200).map(|s| {
            let grown = match s {
                0..50 => 0,
                50..70 => 10 * MIB + MIB / 2,
                // Then blocks alternate just above and just below the threshold.
                70..150 if (s / 5) % 2 == 0 => 10 * MIB + MIB / 2,
                70..150 => 10 * MIB - MIB / 2,
                _ => MIB,
            };
            observation(s, 40 * MIB + grown)
        });
        let heap: Vec<_> = run(&mut detector, series)
            .into_iter()
            .filter(|a| a.kind == AlertKind::HeapGrowth)
            .map(|a| (a.state, a.sample))
            .collect();
        assert_eq!(
            heap,
            // Raised once the second block over the threshold completes.
            [(AlertState::Raised, 59), (AlertState::Cleared, 154)],
            "exactly one raise and one clear"
        );
    }

    #[test]
    fn sawtooth_floor_is_flat_so_no_alert() {
        let mut detector = Detector::new(DetectorConfig::default());
        // +3 MiB per second, swept every 5 s: peaks 12 MiB above the floor.
        let alerts = run(
            &mut detector,
            (0..600).map(|s| observation(s, 40 * MIB + (s % 5) * 3 * MIB)),
        );
        assert!(alerts.is_empty(), "{alerts:?}");
    }

    #[test]
    fn slow_leak_raises_the_trend_before_the_level() {
        let mut detector = Detector::new(DetectorConfig::default());
        let alerts = run(
            &mut detector,
            (0..600).map(|s| observation(s, 40 * MIB + s * 64 * 1024 + (s * 7919 % 13) * 20_000)),
        );
        let first = alerts.first().expect("a slow leak must alert");
        assert_eq!(first.kind, AlertKind::HeapTrend);
        assert_eq!(first.state, AlertState::Raised);
        assert!(first.message.contains("/s"), "{}", first.message);
    }

    #[test]
    fn callback_and_channel_both_receive_alerts() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let detector = Detector::new(DetectorConfig::default())
            .on_alert(move |alert| record.lock().unwrap().push(alert.kind));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let received = runtime.block_on(async {
            let (observations_tx, observations_rx) = mpsc::channel(8);
            let (alerts_tx, mut alerts_rx) = mpsc::channel(8);
            let watcher = tokio::spawn(detector.watch(observations_rx, alerts_tx));
            for s in 0..30 {
                let tasks = 20 + s; // one task leaked per second
                let o = Observation {
                    tasks,
                    ..observation(s, 40 * MIB)
                };
                observations_tx.send(o).await.unwrap();
            }
            drop(observations_tx);
            let detector = watcher.await.unwrap();
            assert_eq!(detector.samples_seen(), 30);
            let mut received = Vec::new();
            while let Some(alert) = alerts_rx.recv().await {
                received.push(alert);
            }
            received
        });
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].kind, AlertKind::TaskGrowth);
        // Floors 25 then 30: over the threshold (5) on two blocks in a row.
        assert_eq!((received[0].current, received[0].baseline), (30, 20));
        assert_eq!(*seen.lock().unwrap(), [AlertKind::TaskGrowth]);
    }

    #[test]
    fn trace_round_trips_and_errors_name_line_and_column() {
        let trace = vec![observation(0, 10), observation(1, 20)];
        assert_eq!(parse_trace(&write_trace(&trace)).unwrap(), trace);

        let missing = parse_trace("t_ms,heap_bytes,tasks\n0,1,2\n").unwrap_err();
        assert_eq!((missing.line, missing.column), (1, 4));
        assert!(missing.message.contains("missing column `objects`"));

        let text = "t_ms,heap_bytes,objects,tasks\n0,1,2,3\n\n1000,12x,2,3\n";
        let bad_number = parse_trace(text).unwrap_err();
        assert_eq!(
            bad_number.to_string(),
            "line 4, column 2: `12x` is not a non-negative integer (heap_bytes)"
        );

        let unsorted = parse_trace("t_ms,heap_bytes,objects,tasks\n5,1,1,1\n5,1,1,1\n");
        let unsorted = unsorted.unwrap_err();
        assert_eq!((unsorted.line, unsorted.column), (3, 1));

        let short = parse_trace("t_ms,heap_bytes,objects,tasks\n5,1,1\n").unwrap_err();
        assert_eq!((short.line, short.column), (2, 4));
    }

    #[test]
    #[should_panic(expected = "at least 4 floors")]
    fn a_trend_window_too_short_to_split_is_refused() {
        Detector::new(DetectorConfig {
            trend_min_blocks: 3,
            ..DetectorConfig::default()
        });
    }

    #[test]
    fn observations_come_from_monitor_samples() {
        let sample = crate::monitor::Sample {
            elapsed: Duration::from_millis(1500),
            heap: crate::heap::HeapStats {
                allocated: 4096,
                ..Default::default()
            },
            live: None,
            alive_tasks: 3,
            rss_bytes: None,
        };
        let expected = Observation {
            t_ms: 1500,
            heap_bytes: 4096,
            objects: 7,
            tasks: 3,
        };
        assert_eq!(Observation::from_sample(&sample, 7), expected);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let now = runtime.block_on(async {
            let _parked = tokio::spawn(std::future::pending::<()>());
            Observation::now(Duration::from_secs(2)).unwrap()
        });
        assert_eq!((now.t_ms, now.tasks), (2000, 1));
        assert!(now.heap_bytes > 0 && now.objects > 0);
    }
}
