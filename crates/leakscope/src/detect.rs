//! Automated leak detection: watches a series of observations (heap bytes,
//! live allocations, alive tasks) and raises an alert when one of them keeps
//! growing — and one more when the growth stops.
//!
//! A leak is growth that does not come back down. The detector looks for
//! exactly that, the same way for all three signals, at many time scales at
//! once:
//!
//! * **Floors at every resolution.** Samples are grouped into blocks of
//!   [`DetectorConfig::block_len`] and each block is reduced to its
//!   *floor* (its minimum); pairs of floors make the floors of the next
//!   level, so level *k* holds minima over `block_len × 2^k` samples
//!   (4 samples, 8, 16, … 2048 by default). A cache that fills and is
//!   swept every *P* seconds has a flat floor at every level whose block
//!   is longer than *P*, and a dip after every sweep at the finer ones; a
//!   leak raises the floor at every level. No period has to be configured.
//! * **A trend test on each level's last floors.** The last
//!   [`DetectorConfig::window_blocks`] floors of a level are tested with
//!   Mann–Kendall (a rank test: do later floors sit above earlier ones more
//!   often than chance would give?) and measured with the Theil–Sen slope
//!   (the median of all pairwise slopes). They count as *rising* when the
//!   rank test is significant, the rise across the window is large enough
//!   relative to the signal itself ([`Growth`]: scales from a 10 MiB heap
//!   to an 8 GiB one), stands well above the floors' own scatter, both
//!   halves of the window rise (a one-off step rises in one half only), the
//!   newest floor is the highest (still rising), and no floor drops by more
//!   than a fraction of the rise (a sweep inside the window means a
//!   sawtooth, not a leak).
//! * **Windows long enough to have seen a sweep.** A window shorter than
//!   [`DetectorConfig::min_span`] cannot tell a leak from the filling half
//!   of a slow sawtooth, so only longer windows are judged. The finest
//!   level that qualifies decides how soon a fast leak is seen (about 5 min
//!   by default); the coarser ones find slow leaks that a short window
//!   cannot tell from noise.
//! * **New ground.** A level remembers the highest floor that has left its
//!   window; a rise counts only if it climbs past it. A load cycle's second
//!   and later rises go where the signal has been before; a leak does not.
//! * **Warm-up.** A service fills its caches and pools after it starts; a
//!   window that reaches back into [`DetectorConfig::warm_up`] is not
//!   judged, so the first alert can come `warm_up + min_span` after the
//!   first observation (about 9.5 min by default). After it, a
//!   bounded cache that filled and stopped is a flat floor: each window
//!   compares the signal with its own recent past, so there is no frozen
//!   baseline to outgrow.
//! * **Confirmation and hysteresis.** A level must find the signal rising
//!   on [`DetectorConfig::confirm_blocks`] floors in a row before the alert
//!   is raised ([`AlertState::Raised`]); it is cleared
//!   ([`AlertState::Cleared`]) when, at the level that raised it, the rank
//!   test falls under [`DetectorConfig::z_clear`] or the highest floor is
//!   half a window old. Between the two, nothing is sent.
//! * **Bounded memory.** Each level keeps one window of floors and one
//!   partial floor: `levels × (window_blocks + 1)` floors, however long it
//!   runs.
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
//! for second in 0..1800u64 {
//!     // 40 MiB steady, then a leak of 64 KiB per second from t = 10 min.
//!     let heap_bytes = (40 << 20) + second.saturating_sub(600) * (64 << 10);
//!     let observation = Observation { t_ms: second * 1000, heap_bytes, objects: 1000, tasks: 10 };
//!     alerts.extend(detector.observe(observation).expect("in time order"));
//! }
//! let first = &alerts[0];
//! assert_eq!((first.kind, first.state), (AlertKind::HeapGrowth, AlertState::Raised));
//! assert!(first.t_ms < 1200 * 1000); // within ten minutes of the start of the leak
//! assert!((first.per_second - 65536.0).abs() < 1.0);
//! ```

use std::collections::VecDeque;
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

/// What grew: one kind per signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    /// The heap's floor keeps rising.
    HeapGrowth,
    /// The live-allocation floor keeps rising.
    ObjectGrowth,
    /// The alive-task floor keeps rising.
    TaskGrowth,
}

impl AlertKind {
    /// Every kind, in the order the detector checks them.
    pub const ALL: [AlertKind; 3] = [
        AlertKind::HeapGrowth,
        AlertKind::ObjectGrowth,
        AlertKind::TaskGrowth,
    ];

    /// A stable upper-case name (`HEAP_GROWTH`, …), as in the Go seed.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::HeapGrowth => "HEAP_GROWTH",
            AlertKind::ObjectGrowth => "OBJECT_GROWTH",
            AlertKind::TaskGrowth => "TASK_GROWTH",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn show(self, value: f64) -> String {
        match self {
            AlertKind::HeapGrowth => format_bytes(value.round() as i64),
            _ => format!("{value:.0}"),
        }
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
    /// The condition ended: the floor stopped rising.
    Cleared,
}

/// One alert: sent once when a condition starts and once when it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// What grew.
    pub kind: AlertKind,
    /// Started or ended.
    pub state: AlertState,
    /// Time of the observation that completed the deciding floor.
    pub t_ms: u64,
    /// Index (from 0) of that observation in the series.
    pub sample: usize,
    /// The newest floor of the signal (bytes, allocations or tasks).
    pub current: u64,
    /// The oldest floor of the window it was compared with.
    pub baseline: u64,
    /// Growth per second of the floor (Theil–Sen), over the window.
    pub per_second: f64,
    /// Time the deciding window covers, in milliseconds.
    pub window_ms: u64,
    /// A sentence for people: what, how fast, how sure.
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

/// A growth threshold relative to a level: the larger of an absolute
/// amount and a fraction of the level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    /// Growth that always counts, however small the level.
    pub min: u64,
    /// Growth as a fraction of the level (0.05 = 5 %).
    pub ratio: f64,
}

impl Growth {
    /// The growth over `level` that reaches the threshold.
    pub fn limit(&self, level: u64) -> u64 {
        // `as` saturates: a huge ratio on a huge level gives u64::MAX.
        self.min.max((level as f64 * self.ratio).ceil() as u64)
    }
}

/// The detector's parameters. [`Default`] is explained field by field and
/// does not depend on the sample interval, the sawtooth's period or the
/// heap's size; [`DetectorConfig::validate`] says what is accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Samples per floor at the finest level (default 4).
    pub block_len: usize,
    /// Levels of floors, each block twice the one below (default 10: at one
    /// sample a second, floors over 4 s up to 34 min, windows up to 4.5 h).
    pub levels: usize,
    /// Floors in each level's trend window (default 8).
    pub window_blocks: usize,
    /// A window covering less time than this is not judged: it may be the
    /// filling half of a sawtooth this long (default 4 min, so cycles up to
    /// 4 min are never a trend).
    pub min_span: Duration,
    /// Windows reaching back into this much time after the first
    /// observation are not judged: caches and pools fill after a start
    /// (default 5 min).
    pub warm_up: Duration,
    /// Heap rise across a window that counts (default 1 MiB or 2 % of the
    /// window's first floor, whichever is more).
    pub heap_rise: Growth,
    /// Live-allocation rise that counts (default 5 000 or 2 %).
    pub object_rise: Growth,
    /// Alive-task rise that counts (default 3 tasks or 5 %).
    pub task_rise: Growth,
    /// Mann–Kendall z that counts as rising (default 2.326: one-sided
    /// p < 0.01 that the floors rise by chance).
    pub z_raise: f64,
    /// A raised alert clears when z falls below this (default 1.0), or when
    /// the highest floor is half a window old (growth stopped).
    pub z_clear: f64,
    /// The rise must be this many times the floors' scatter around their
    /// trend line (robust standard deviation of the residuals; default 3).
    pub rise_over_noise: f64,
    /// No floor in the window may drop below the one before it by more
    /// than this fraction of the rise (default 0.25): a drop is a sweep.
    pub max_drop_fraction: f64,
    /// A level must find the signal rising on this many floors in a row
    /// before the alert is raised (default 2).
    pub confirm_blocks: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            block_len: 4,
            levels: 10,
            window_blocks: 8,
            min_span: Duration::from_secs(4 * 60),
            warm_up: Duration::from_secs(5 * 60),
            heap_rise: Growth {
                min: 1 << 20,
                ratio: 0.02,
            },
            object_rise: Growth {
                min: 5_000,
                ratio: 0.02,
            },
            task_rise: Growth {
                min: 3,
                ratio: 0.05,
            },
            z_raise: 2.326,
            z_clear: 1.0,
            rise_over_noise: 3.0,
            max_drop_fraction: 0.25,
            confirm_blocks: 2,
        }
    }
}

/// A configuration the detector cannot work with, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid DetectorConfig: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The largest Mann–Kendall z that `n` values without ties can reach.
fn highest_z(n: usize) -> f64 {
    let n = n as f64;
    let pairs = n * (n - 1.0) / 2.0;
    (pairs - 1.0) / (n * (n - 1.0) * (2.0 * n + 5.0) / 18.0).sqrt()
}

impl DetectorConfig {
    /// Checks every field: counts at least 1 (and a window long enough for
    /// the rank test to ever reach `z_raise`), ratios finite and not
    /// negative, `max_drop_fraction` within 0..=1, `z_clear` under
    /// `z_raise`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError(message));
        if self.block_len == 0 {
            return fail("block_len must be at least 1".into());
        }
        if self.confirm_blocks == 0 {
            return fail("confirm_blocks must be at least 1".into());
        }
        if !(1..=40).contains(&self.levels) {
            return fail(format!("levels must be 1 to 40, not {}", self.levels));
        }
        if self.block_len.checked_shl(self.levels as u32 - 1).is_none()
            || (self.block_len << (self.levels - 1)) >> (self.levels - 1) != self.block_len
        {
            return fail("block_len × 2^(levels − 1) overflows".into());
        }
        if !(self.z_raise.is_finite() && self.z_raise > 0.0) {
            return fail(format!(
                "z_raise must be finite and positive, not {}",
                self.z_raise
            ));
        }
        if !(self.z_clear.is_finite() && self.z_clear < self.z_raise) {
            return fail(format!(
                "z_clear must be finite and below z_raise ({}), not {}",
                self.z_raise, self.z_clear
            ));
        }
        if self.window_blocks < 4 || highest_z(self.window_blocks) < self.z_raise {
            return fail(format!(
                "window_blocks = {} can never reach z_raise = {} (each half needs two floors; \
                 8 floors reach z = {:.2})",
                self.window_blocks,
                self.z_raise,
                highest_z(8)
            ));
        }
        let ratios = [
            ("heap_rise.ratio", self.heap_rise.ratio),
            ("object_rise.ratio", self.object_rise.ratio),
            ("task_rise.ratio", self.task_rise.ratio),
            ("rise_over_noise", self.rise_over_noise),
        ];
        for (name, value) in ratios {
            if !(value.is_finite() && value >= 0.0) {
                return fail(format!(
                    "{name} must be finite and not negative, not {value}"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.max_drop_fraction) {
            return fail(format!(
                "max_drop_fraction must be within 0..=1, not {}",
                self.max_drop_fraction
            ));
        }
        Ok(())
    }

    fn rise(&self, kind: AlertKind) -> Growth {
        match kind {
            AlertKind::HeapGrowth => self.heap_rise,
            AlertKind::ObjectGrowth => self.object_rise,
            AlertKind::TaskGrowth => self.task_rise,
        }
    }
}

/// An observation older than the one before it: the detector needs its
/// input in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfOrder {
    /// Time of the observation refused.
    pub t_ms: u64,
    /// Time of the latest observation accepted.
    pub previous_ms: u64,
}

impl fmt::Display for OutOfOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "observation at t_ms = {} is before the previous one at {}: observations must come in time order",
            self.t_ms, self.previous_ms
        )
    }
}

impl std::error::Error for OutOfOrder {}

/// The minimum of each signal over a stretch of time.
#[derive(Debug, Clone, Copy)]
struct Floor {
    t_start: u64,
    t_end: u64,
    /// Heap, objects, tasks, indexed by [`AlertKind::index`].
    min: [u64; 3],
}

impl Floor {
    fn of(observation: &Observation) -> Self {
        Self {
            t_start: observation.t_ms,
            t_end: observation.t_ms,
            min: [
                observation.heap_bytes,
                observation.objects,
                observation.tasks,
            ],
        }
    }

    fn merge(&mut self, later: &Floor) {
        self.t_end = later.t_end;
        for (mine, theirs) in self.min.iter_mut().zip(later.min) {
            *mine = (*mine).min(theirs);
        }
    }
}

/// One resolution: the floor being built and the window of finished ones.
#[derive(Debug, Clone)]
struct Level {
    /// Children (samples at level 0, floors below otherwise) per floor.
    fan_in: usize,
    partial: Option<Floor>,
    children: usize,
    window: VecDeque<Floor>,
    /// The highest floor of each signal that has left the window: where
    /// the signal has been before (a load cycle's earlier peaks).
    ceiling: Option<[u64; 3]>,
    /// Consecutive windows on which each signal was rising.
    streaks: [usize; 3],
}

/// What a window of floors says about one signal.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    rising: bool,
    stalled: bool,
    trend: Trend,
    rise: f64,
    first: u64,
    newest: u64,
    start_ms: u64,
    span_ms: u64,
    per_second: f64,
}

type Callback = Box<dyn FnMut(&Alert) + Send>;

/// The leak detector: feed it observations in time order, get alerts.
pub struct Detector {
    config: DetectorConfig,
    levels: Vec<Level>,
    /// The level that raised each signal's alert, while it is raised.
    raised: [Option<usize>; 3],
    first_ms: Option<u64>,
    last_ms: Option<u64>,
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
    /// If `config` is invalid, with [`DetectorConfig::validate`]'s message;
    /// [`Detector::try_new`] returns the error instead.
    pub fn new(config: DetectorConfig) -> Self {
        Self::try_new(config).unwrap_or_else(|error| panic!("{error}"))
    }

    /// A detector with these parameters, or why they cannot work.
    pub fn try_new(config: DetectorConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let levels = (0..config.levels)
            .map(|level| Level {
                fan_in: if level == 0 { config.block_len } else { 2 },
                partial: None,
                children: 0,
                window: VecDeque::with_capacity(config.window_blocks),
                ceiling: None,
                streaks: [0; 3],
            })
            .collect();
        Ok(Self {
            levels,
            config,
            raised: [None; 3],
            first_ms: None,
            last_ms: None,
            samples_seen: 0,
            callback: None,
        })
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
        self.raised[kind.index()].is_some()
    }

    /// Observations consumed so far.
    pub fn samples_seen(&self) -> usize {
        self.samples_seen
    }

    /// Floors held right now (finished and partial): never more than
    /// `levels × (window_blocks + 1)`, however long the detector runs.
    pub fn retained(&self) -> usize {
        self.levels
            .iter()
            .map(|level| level.window.len() + level.partial.is_some() as usize)
            .sum()
    }

    /// Feeds one observation and returns the alerts it caused: none until
    /// a floor completes, then at most one per kind.
    ///
    /// An observation earlier than the one before is refused (and not
    /// counted); equal times are accepted.
    pub fn observe(&mut self, observation: Observation) -> Result<Vec<Alert>, OutOfOrder> {
        if let Some(previous_ms) = self.last_ms
            && observation.t_ms < previous_ms
        {
            return Err(OutOfOrder {
                t_ms: observation.t_ms,
                previous_ms,
            });
        }
        self.last_ms = Some(observation.t_ms);
        let first_ms = *self.first_ms.get_or_insert(observation.t_ms);
        let warm_up_ms = self.config.warm_up.as_millis().min(u64::MAX as u128) as u64;
        // Windows that reach back into the warm-up are not judged.
        let warm_until = first_ms.saturating_add(warm_up_ms);
        self.samples_seen += 1;
        let sample = self.samples_seen - 1;

        let mut alerts = Vec::new();
        let mut finished = Some(Floor::of(&observation));
        for index in 0..self.levels.len() {
            let Some(child) = finished.take() else { break };
            let level = &mut self.levels[index];
            match &mut level.partial {
                Some(partial) => partial.merge(&child),
                None => level.partial = Some(child),
            }
            level.children += 1;
            if level.children < level.fan_in {
                break;
            }
            let floor = level.partial.take().expect("set above");
            level.children = 0;
            if level.window.len() == self.config.window_blocks
                && let Some(old) = level.window.pop_front()
            {
                let ceiling = level.ceiling.get_or_insert(old.min);
                for (high, value) in ceiling.iter_mut().zip(old.min) {
                    *high = (*high).max(value);
                }
            }
            level.window.push_back(floor);
            finished = Some(floor);
            for kind in AlertKind::ALL {
                if let Some(alert) = self.decide(index, kind, warm_until, sample, observation.t_ms)
                {
                    alerts.push(alert);
                }
            }
        }
        if let Some(callback) = &mut self.callback {
            alerts.iter().for_each(callback);
        }
        Ok(alerts)
    }

    /// Tests the window of level `index` for `kind`, and raises or clears.
    fn decide(
        &mut self,
        index: usize,
        kind: AlertKind,
        warm_until: u64,
        sample: usize,
        t_ms: u64,
    ) -> Option<Alert> {
        let verdict = self.verdict(index, kind)?;
        let warmed_up = verdict.start_ms >= warm_until;
        let signal = kind.index();
        let streak = &mut self.levels[index].streaks[signal];
        *streak = if verdict.rising { *streak + 1 } else { 0 };
        let confirmed = *streak >= self.config.confirm_blocks;
        // ANCHOR: raise_rule
        let state = match self.raised[signal] {
            None if confirmed && warmed_up => AlertState::Raised,
            // Only the level that raised an alert clears it.
            Some(level)
                if level == index && (verdict.trend.z < self.config.z_clear || verdict.stalled) =>
            {
                AlertState::Cleared
            }
            _ => return None,
        };
        // ANCHOR_END: raise_rule
        self.raised[signal] = (state == AlertState::Raised).then_some(index);
        let message = match state {
            AlertState::Raised => format!(
                "floor rising {}/s over {} (Mann–Kendall z = {:.2}, +{}): {} → {}",
                kind.show(verdict.per_second),
                format_span(verdict.span_ms),
                verdict.trend.z,
                kind.show(verdict.rise),
                kind.show(verdict.first as f64),
                kind.show(verdict.newest as f64),
            ),
            AlertState::Cleared => format!(
                "floor no longer rising over {} (z = {:.2}), now {}",
                format_span(verdict.span_ms),
                verdict.trend.z,
                kind.show(verdict.newest as f64),
            ),
        };
        Some(Alert {
            kind,
            state,
            t_ms,
            sample,
            current: verdict.newest,
            baseline: verdict.first,
            per_second: verdict.per_second,
            window_ms: verdict.span_ms,
            message,
        })
    }

    /// The trend of `kind` over level `index`'s window, once it is full and
    /// spans at least `min_span` (shorter windows are not judged at all,
    /// which also spares the finest levels, the most frequent, any work).
    fn verdict(&self, index: usize, kind: AlertKind) -> Option<Verdict> {
        let level = &self.levels[index];
        let window = &level.window;
        if window.len() < self.config.window_blocks {
            return None;
        }
        let (oldest, newest) = (window.front()?, window.back()?);
        let span_ms = newest.t_end.saturating_sub(oldest.t_start);
        // Shorter, it may be the filling half of a sawtooth this long.
        if Duration::from_millis(span_ms) < self.config.min_span {
            return None;
        }
        let values: Vec<f64> = window.iter().map(|f| f.min[kind.index()] as f64).collect();
        let first = oldest.min[kind.index()];
        let trend = Trend::of(&values);
        let steps = (values.len() - 1) as f64;
        let rise = trend.slope * steps;
        let highest = values.iter().copied().fold(f64::MIN, f64::max);
        let newest_value = newest.min[kind.index()];
        let newest_is_highest = newest_value as f64 >= highest;
        let first_high = values.iter().position(|v| *v == highest).unwrap_or(0);
        let stalled = values.len() - 1 - first_high >= values.len() / 2;
        // A leak rises through the whole window; a one-off step in one half.
        let (older, newer) = values.split_at(values.len() / 2);
        let both_halves_rise = [older, newer]
            .iter()
            .all(|half| Trend::of(half).slope >= trend.slope / 2.0);
        // A sweep: one floor well below the one before it.
        let largest_drop = values
            .windows(2)
            .map(|pair| pair[0] - pair[1])
            .fold(0.0, f64::max);
        let noise = residual_spread(&values, trend.slope);
        let needed = self.config.rise(kind).limit(first) as f64;
        // Past the highest floor this level had before the window, by half
        // the rise that counts: a load cycle's second rise is not new.
        let new_ground = level.ceiling.is_none_or(|ceiling| {
            newest_value as f64 >= ceiling[kind.index()] as f64 + needed / 2.0
        });
        // ANCHOR: trend_rule
        let rising = trend.z >= self.config.z_raise // floors rise: not chance
            && rise > 0.0
            && rise >= needed // by enough for this signal's size
            && rise >= self.config.rise_over_noise * noise // well above the scatter
            && both_halves_rise // steadily: not one step
            && newest_is_highest // still rising
            && new_ground // to where the signal has never been
            && largest_drop <= self.config.max_drop_fraction * rise; // no sweep
        // ANCHOR_END: trend_rule
        // Time from one floor's start to the next one's.
        let floor_ms = newest.t_start.saturating_sub(oldest.t_start) as f64 / steps;
        let per_second = if floor_ms > 0.0 {
            trend.slope / floor_ms * 1000.0
        } else {
            0.0
        };
        Some(Verdict {
            rising,
            stalled,
            trend,
            rise,
            first,
            newest: newest_value,
            start_ms: oldest.t_start,
            span_ms,
            per_second,
        })
    }

    /// Runs the detector on a channel of observations, sending every alert
    /// on `alerts`, until the observations channel closes or the alert
    /// receiver is dropped. Observations out of time order are skipped.
    /// Returns the detector, for inspection.
    pub async fn watch(
        mut self,
        mut observations: mpsc::Receiver<Observation>,
        alerts: mpsc::Sender<Alert>,
    ) -> Self {
        while let Some(observation) = observations.recv().await {
            for alert in self.observe(observation).unwrap_or_default() {
                if alerts.send(alert).await.is_err() {
                    return self;
                }
            }
        }
        self
    }
}

/// `12 s`, `4.3 min`, `2.1 h`.
fn format_span(ms: u64) -> String {
    let seconds = ms as f64 / 1000.0;
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// Robust scatter of `values` around the line of slope `slope` through
/// them: 1.4826 × the median absolute residual (the standard deviation,
/// for normal noise), with the intercept the median of `values[i] − slope·i`.
fn residual_spread(values: &[f64], slope: f64) -> f64 {
    let mut offsets: Vec<f64> = values
        .iter()
        .enumerate()
        .map(|(i, v)| v - slope * i as f64)
        .collect();
    let intercept = median(&mut offsets);
    let mut residuals: Vec<f64> = offsets.iter().map(|o| (o - intercept).abs()).collect();
    1.4826 * median(&mut residuals)
}

/// The median (the mean of the middle two for an even count); 0 for none.
fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
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
        let slope = median(&mut slopes);
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
/// four required; a leading UTF-8 byte-order mark is ignored), then one row
/// of non-negative integers per sample with `t_ms` strictly increasing.
/// Blank lines are skipped.
pub fn parse_trace(text: &str) -> Result<Vec<Observation>, TraceError> {
    const COLUMNS: [&str; 4] = ["t_ms", "heap_bytes", "objects", "tasks"];
    // A BOM, as some editors and Windows tools write: not part of the header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
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

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn observation(second: u64, heap_bytes: u64) -> Observation {
        Observation {
            t_ms: second * 1000,
            heap_bytes,
            objects: 50_000,
            tasks: 20,
        }
    }

    fn run(config: DetectorConfig, series: impl IntoIterator<Item = Observation>) -> Vec<Alert> {
        let mut detector = Detector::new(config);
        series
            .into_iter()
            .flat_map(|o| detector.observe(o).expect("in time order"))
            .collect()
    }

    fn raised(alerts: &[Alert]) -> Vec<(AlertKind, usize)> {
        alerts
            .iter()
            .filter(|a| a.state == AlertState::Raised)
            .map(|a| (a.kind, a.sample))
            .collect()
    }

    /// Deterministic noise in −1..1 (no generator crate needed).
    fn jitter(second: u64) -> f64 {
        let mixed = second.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        (mixed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// One floor per observation, judged at once: for pinning the rule.
    fn bare() -> DetectorConfig {
        DetectorConfig {
            block_len: 1,
            levels: 1,
            window_blocks: 8,
            min_span: Duration::ZERO,
            warm_up: Duration::ZERO,
            confirm_blocks: 1,
            ..DetectorConfig::default()
        }
    }

    // ANCHOR: reference_values
    #[test]
    fn mann_kendall_with_ties_and_theil_sen_match_reference_values() {
        // S and the Theil–Sen slope agree with scipy 1.17
        // (`kendalltau(range(n), x)` scaled back to S, `theilslopes(x)`);
        // the variance with the tie correction is
        // (n(n−1)(2n+5) − Σ t(t−1)(2t+5)) / 18.
        let digits = Trend::of(&[3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0]);
        assert_eq!(digits.s, 16);
        assert!((digits.z - 15.0 / (478.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((digits.z - 1.188_332_399_294_654).abs() < 1e-12);
        assert_eq!(digits.slope, 0.25);

        let tied = Trend::of(&[2.0, 2.0, 2.0, 3.0, 3.0, 5.0, 4.0, 4.0, 7.0, 7.0]);
        assert_eq!(tied.s, 35);
        assert!((tied.z - 3.125_542_206_483_068).abs() < 1e-12); // var = 118.33
        assert_eq!(tied.slope, 0.5);

        let falling = Trend::of(&[5.0, 4.0, 3.0, 2.0, 1.0]);
        assert_eq!(falling.s, -10);
        // var = 5·4·15/18 = 50/3; z = (−10 + 1)/√var = −2.2045
        assert!((falling.z + 9.0 / (50.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(falling.slope, -1.0);

        // One wild outlier moves the Theil–Sen slope hardly at all.
        assert_eq!(Trend::of(&[0.0, 1.0, 2.0, 300.0, 4.0, 5.0, 6.0]).slope, 1.0);

        let flat = Trend::of(&[7.0; 6]);
        assert_eq!((flat.s, flat.z, flat.slope), (0, 0.0, 0.0));
        let single = Trend::of(&[7.0]);
        assert_eq!((single.s, single.z, single.slope), (0, 0.0, 0.0));

        // 8 floors reach z = 27 / √65.33 = 3.34; 5 cannot reach 2.326.
        assert!((highest_z(8) - 27.0 / (8.0f64 * 7.0 * 21.0 / 18.0).sqrt()).abs() < 1e-12);
        assert!(highest_z(5) < 2.326 && highest_z(6) > 2.326);
    }
    // ANCHOR_END: reference_values

    #[test]
    fn residual_spread_is_the_robust_standard_deviation_around_the_line() {
        // Residuals 0, 0, 0, 2, −2 about slope 1: median |r| = 0.
        assert_eq!(residual_spread(&[0.0, 1.0, 2.0, 5.0, 2.0], 1.0), 0.0);
        // Residuals about slope 0 of 1, 2, 3, 4, 5 from the median 3: 2 1 0 1 2.
        assert!((residual_spread(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.0) - 1.4826).abs() < 1e-12);
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 10.0]), 2.5);
    }

    // ANCHOR: config_errors
    #[test]
    fn invalid_configurations_are_refused_with_the_field_named() {
        let cases: [(DetectorConfig, &str); 11] = [
            (
                DetectorConfig {
                    block_len: 0,
                    ..Default::default()
                },
                "block_len must be at least 1",
            ),
            (
                DetectorConfig {
                    confirm_blocks: 0,
                    ..Default::default()
                },
                "confirm_blocks must be at least 1",
            ),
            (
                DetectorConfig {
                    levels: 0,
                    ..Default::default()
                },
                "levels must be 1 to 40",
            ),
            (
                DetectorConfig {
                    levels: 41,
                    ..Default::default()
                },
                "levels must be 1 to 40",
            ),
            (
                DetectorConfig {
                    block_len: usize::MAX / 2,
                    levels: 3,
                    ..Default::default()
                },
                "overflows",
            ),
            (
                DetectorConfig {
                    window_blocks: 5,
                    ..Default::default()
                },
                "can never reach z_raise",
            ),
            (
                DetectorConfig {
                    z_raise: f64::NAN,
                    ..Default::default()
                },
                "z_raise must be finite",
            ),
            (
                DetectorConfig {
                    z_clear: 2.326,
                    ..Default::default()
                },
                "z_clear must be finite and below",
            ),
            (
                DetectorConfig {
                    heap_rise: Growth {
                        min: 0,
                        ratio: -0.1,
                    },
                    ..Default::default()
                },
                "heap_rise.ratio must be finite and not negative",
            ),
            (
                DetectorConfig {
                    rise_over_noise: f64::INFINITY,
                    ..Default::default()
                },
                "rise_over_noise",
            ),
            (
                DetectorConfig {
                    max_drop_fraction: 1.5,
                    ..Default::default()
                },
                "max_drop_fraction must be within 0..=1",
            ),
        ];
        for (config, expected) in cases {
            let error = Detector::try_new(config).expect_err(expected);
            assert!(error.to_string().contains(expected), "{error}");
        }
        assert_eq!(DetectorConfig::default().validate(), Ok(()));
        let edge = DetectorConfig {
            z_raise: highest_z(8),
            max_drop_fraction: 1.0,
            ..Default::default()
        };
        assert_eq!(edge.validate(), Ok(()));
    }
    // ANCHOR_END: config_errors

    #[test]
    #[should_panic(expected = "invalid DetectorConfig: confirm_blocks must be at least 1")]
    fn new_panics_with_the_configuration_error() {
        Detector::new(DetectorConfig {
            confirm_blocks: 0,
            ..DetectorConfig::default()
        });
    }

    #[test]
    fn observations_out_of_time_order_are_an_error_not_an_underflow() {
        let mut detector = Detector::new(bare());
        detector.observe(observation(10, MIB)).unwrap();
        detector.observe(observation(10, MIB)).unwrap(); // same time: accepted
        let error = detector.observe(observation(9, MIB)).unwrap_err();
        assert_eq!(
            error,
            OutOfOrder {
                t_ms: 9000,
                previous_ms: 10_000
            }
        );
        assert!(error.to_string().contains("must come in time order"));
        assert_eq!(detector.samples_seen(), 2);
        detector.observe(observation(11, MIB)).unwrap();
    }

    // ANCHOR: thresholds
    #[test]
    fn a_rise_counts_from_exactly_its_threshold() {
        // Eight floors rising by `step`: Theil–Sen rise 7 × step.
        let rise_of = |step: u64, config: DetectorConfig| {
            raised(&run(
                config,
                (0..8).map(|s| observation(s, 100 * MIB + s * step)),
            ))
        };
        let needs = |min: u64| DetectorConfig {
            heap_rise: Growth { min, ratio: 0.0 },
            ..bare()
        };
        assert_eq!(
            rise_of(1_000_000, needs(7_000_000)),
            [(AlertKind::HeapGrowth, 7)]
        );
        assert_eq!(rise_of(999_999, needs(7_000_000)), []);
        // The ratio: 2 % of the window's first floor (100 MiB) = 2 097 152.
        let ratio = DetectorConfig {
            heap_rise: Growth {
                min: 0,
                ratio: 0.02,
            },
            ..bare()
        };
        assert_eq!(
            Growth {
                min: 0,
                ratio: 0.02
            }
            .limit(100 * MIB),
            2_097_152
        );
        assert_eq!(
            rise_of(299_594, ratio.clone()),
            [(AlertKind::HeapGrowth, 7)]
        ); // 2 097 158
        assert_eq!(rise_of(299_593, ratio), []); // 2 097 151
        // The rank test: a ramp whose first two floors tie (S = 27, one tie
        // pair: var = (8·7·21 − 1·2·9)/18).
        let tied: Vec<Observation> = (0..8)
            .map(|s| observation(s, 100 * MIB + s.max(1) * MIB))
            .collect();
        let values: Vec<f64> = tied.iter().map(|o| o.heap_bytes as f64).collect();
        let tied_z = Trend::of(&values).z;
        assert!((tied_z - 26.0 / ((8.0f64 * 7.0 * 21.0 - 18.0) / 18.0).sqrt()).abs() < 1e-12);
        let z = |z_raise| DetectorConfig { z_raise, ..bare() };
        assert_eq!(raised(&run(z(tied_z), tied.clone())).len(), 1);
        assert_eq!(raised(&run(z(tied_z + 1e-9), tied)), []);
        // The window's span: 7 s from the first floor to the newest.
        let span = |ms| DetectorConfig {
            min_span: Duration::from_millis(ms),
            ..bare()
        };
        assert_eq!(rise_of(MIB, span(7000)).len(), 1);
        assert_eq!(rise_of(MIB, span(7001)), []);
    }

    #[test]
    fn a_drop_inside_the_window_is_a_sweep_up_to_its_fraction() {
        // Rise 7 MiB by Theil–Sen; one floor drops by `drop` on the way.
        let with_drop = |drop: u64, fraction: f64| {
            let heap = [0, 2, 3, 4, 5, 6, 7, 8].map(|mib| 100 * MIB + mib * MIB);
            let mut series: Vec<Observation> = heap
                .iter()
                .enumerate()
                .map(|(s, h)| observation(s as u64, *h))
                .collect();
            series[3].heap_bytes -= drop; // 4 MiB − drop, after 3 MiB
            let config = DetectorConfig {
                max_drop_fraction: fraction,
                rise_over_noise: 0.0,
                ..bare()
            };
            raised(&run(config, series)).len()
        };
        // Theil–Sen slope of the window with floor 3 lowered by 1.5 MiB is
        // still 1 MiB per floor: rise 7 MiB, a drop of 0.5 MiB is 1/14 of it.
        assert_eq!(with_drop(3 * MIB / 2, 1.0 / 14.0), 1);
        assert_eq!(with_drop(3 * MIB / 2, 1.0 / 14.0 - 1e-9), 0);
        assert_eq!(with_drop(0, 0.0), 1);
    }
    // ANCHOR_END: thresholds

    #[test]
    fn the_rise_must_stand_above_the_floors_scatter() {
        // A ramp with alternating ±0.4 MiB: the scatter is what the line leaves.
        let series = (0..8).map(|s| observation(s, 100 * MIB + s * MIB + (s % 2) * MIB * 2 / 5));
        let series: Vec<Observation> = series.collect();
        let trend = Trend::of(
            &series
                .iter()
                .map(|o| o.heap_bytes as f64)
                .collect::<Vec<_>>(),
        );
        let values: Vec<f64> = series.iter().map(|o| o.heap_bytes as f64).collect();
        let noise = residual_spread(&values, trend.slope);
        let ratio = trend.slope * 7.0 / noise;
        let with = |rise_over_noise| {
            let config = DetectorConfig {
                rise_over_noise,
                max_drop_fraction: 1.0,
                ..bare()
            };
            raised(&run(config, series.clone())).len()
        };
        assert_eq!(with(ratio), 1);
        assert_eq!(with(ratio * 1.000_001), 0);
    }

    // ANCHOR: hysteresis
    #[test]
    fn an_alert_is_raised_once_and_cleared_once_when_growth_stops() {
        // Two floors in a row must rise (confirm_blocks = 2); then the floor
        // stays flat and the alert clears once its highest floor is half a
        // window (4 floors) old. No repeats in between or after.
        let config = DetectorConfig {
            confirm_blocks: 2,
            ..bare()
        };
        let heap = |s: u64| 100 * MIB + s.min(12) * MIB;
        let alerts = run(config, (0..40).map(|s| observation(s, heap(s))));
        let states: Vec<(AlertState, usize)> = alerts.iter().map(|a| (a.state, a.sample)).collect();
        assert_eq!(states, [(AlertState::Raised, 8), (AlertState::Cleared, 16)]);
        assert!(
            alerts[0].message.contains("rising 1.0 MiB/s"),
            "{}",
            alerts[0].message
        );

        // Confirmation off: the first rising window raises at once.
        let once = run(bare(), (0..40).map(|s| observation(s, heap(s))));
        assert_eq!(once[0].sample, 7);
    }

    #[test]
    fn hovering_between_the_two_levels_sends_nothing() {
        // Rising, then the floors wobble: z stays between z_clear and
        // z_raise and new highs keep coming, so no clear and no new raise.
        let config = DetectorConfig {
            rise_over_noise: 0.0,
            max_drop_fraction: 1.0,
            ..bare()
        };
        let heap = |s: u64| match s {
            0..12 => 100 * MIB + s * MIB,
            _ => 112 * MIB + (s - 12) * MIB / 8 + (s % 2) * MIB / 2,
        };
        let mut detector = Detector::new(config);
        let alerts: Vec<Alert> = (0..60)
            .flat_map(|s| detector.observe(observation(s, heap(s))).unwrap())
            .collect();
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert!(detector.is_raised(AlertKind::HeapGrowth));
    }
    // ANCHOR_END: hysteresis

    // ANCHOR: shapes
    #[test]
    fn a_sawtooth_of_any_period_up_to_min_span_is_not_a_leak_and_one_over_a_leak_is() {
        for heap in [10 * MIB, 8 * GIB] {
            for period in [5, 17, 60, 150, 235] {
                let sawtooth = |s: u64| heap + heap * 2 / 5 * (s % period) / period;
                let noisy = |s: u64| (sawtooth(s) as f64 + heap as f64 * 0.002 * jitter(s)) as u64;
                let quiet = run(
                    DetectorConfig::default(),
                    (0..7200).map(|s| observation(s, noisy(s))),
                );
                assert_eq!(raised(&quiet), [], "{period} s sawtooth on {heap} B");

                // The same with a leak of 50 % of the heap per hour from 30 min.
                let leak = |s: u64| noisy(s) + heap / 2 * s.saturating_sub(1800) / 3600;
                let leaking = run(
                    DetectorConfig::default(),
                    (0..7200).map(|s| observation(s, leak(s))),
                );
                let first = raised(&leaking).first().copied();
                let (kind, sample) =
                    first.unwrap_or_else(|| panic!("{period} s, {heap} B: missed"));
                assert_eq!(kind, AlertKind::HeapGrowth);
                // Up to a window of 256 s floors (34 min) for 235 s.
                assert!(
                    (1800..1800 + 40 * 60).contains(&sample),
                    "{period} s: {sample}"
                );
            }
        }
    }

    #[test]
    fn the_heaps_size_does_not_change_the_decision() {
        // The same shape, scaled: 64 MiB and 8 GiB, +40 %/h from 20 min.
        let first_alert = |heap: u64| {
            let shape =
                |s: u64| 1.0 + 0.003 * jitter(s) + 0.4 * s.saturating_sub(1200) as f64 / 3600.0;
            let series = (0..5400).map(|s| observation(s, (heap as f64 * shape(s)) as u64));
            raised(&run(DetectorConfig::default(), series))
                .first()
                .copied()
        };
        let small = first_alert(64 * MIB).expect("caught on 64 MiB");
        assert_eq!(first_alert(8 * GIB), Some(small));
        assert_eq!(first_alert(512 * MIB), Some(small));
    }

    #[test]
    fn a_cache_warming_up_and_a_step_are_not_leaks_but_a_staircase_is() {
        let base = 200 * MIB;
        let flat_after = |s: u64| match s {
            0..240 => base + s * 100 * MIB / 240, // fills 100 MiB in 4 min
            1800..=1801 => base + 100 * MIB + s % 2, // then flat ...
            1802.. => base + 160 * MIB,           // ... and a 60 MiB step at 30 min
            _ => base + 100 * MIB,
        };
        let quiet = run(
            DetectorConfig::default(),
            (0..7200).map(|s| observation(s, flat_after(s))),
        );
        assert_eq!(raised(&quiet), []);

        // Steps of 8 MiB every 5 minutes, from 20 min on.
        let stairs = |s: u64| base + 8 * MIB * (s.saturating_sub(1200) / 300);
        let leaking = run(
            DetectorConfig::default(),
            (0..7200).map(|s| observation(s, stairs(s))),
        );
        assert_eq!(
            raised(&leaking).first().map(|(kind, _)| *kind),
            Some(AlertKind::HeapGrowth)
        );
    }

    #[test]
    fn nothing_is_raised_during_warm_up_even_for_a_leak_from_the_start() {
        let series = (0..1800).map(|s| observation(s, 100 * MIB + s * 64 * 1024));
        let alerts = run(DetectorConfig::default(), series);
        let first = alerts
            .first()
            .expect("a leak from the start is found after warm-up");
        // The first window of eight 32 s floors that starts after the 5 min
        // warm-up: floors start every 32 s, so at 320 s; it ends at 575 s.
        assert_eq!(first.t_ms, 575_000, "{first}");
        assert!((first.per_second - 65_536.0).abs() < 1.0, "{first}");
    }

    #[test]
    fn tasks_and_live_allocations_have_trends_of_their_own() {
        // 40–60 request tasks; one task leaked a minute from 20 min.
        let tasks = |s: u64| 24 + 40 + (s * 7919 % 21) + s.saturating_sub(1200) / 60;
        let series = (0..5400).map(|s| Observation {
            tasks: tasks(s),
            ..observation(s, 100 * MIB)
        });
        let alerts = run(DetectorConfig::default(), series);
        assert_eq!(
            raised(&alerts).iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [AlertKind::TaskGrowth]
        );

        // Allocations leak (100 a second); the heap stays put.
        let series = (0..3600u64).map(|s| Observation {
            objects: 1_000_000 + s.saturating_sub(1200) * 100,
            ..observation(s, 100 * MIB)
        });
        let alerts = run(DetectorConfig::default(), series);
        assert_eq!(
            raised(&alerts).iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [AlertKind::ObjectGrowth]
        );
    }
    // ANCHOR_END: shapes

    #[test]
    fn extreme_values_neither_overflow_nor_panic() {
        // What the fuzzer feeds: the largest times and sizes a trace can hold.
        let mut detector = Detector::new(bare());
        for step in 0..40u64 {
            let o = Observation {
                t_ms: u64::MAX - 40 + step,
                heap_bytes: if step % 3 == 0 { u64::MAX } else { step },
                objects: u64::MAX - step,
                tasks: step * (u64::MAX / 64),
            };
            detector.observe(o).expect("in time order");
        }
        let huge = Growth {
            min: u64::MAX,
            ratio: f64::MAX,
        };
        assert_eq!(huge.limit(u64::MAX), u64::MAX);
        let config = DetectorConfig {
            warm_up: Duration::MAX,
            ..DetectorConfig::default()
        };
        let mut detector = Detector::new(config);
        assert_eq!(detector.observe(observation(0, 1)).unwrap(), []);
    }

    #[test]
    fn steady_input_raises_nothing_and_memory_stays_bounded() {
        let config = DetectorConfig::default();
        let bound = config.levels * (config.window_blocks + 1);
        let mut detector = Detector::new(config);
        for s in 0..200_000 {
            let heap = 40 * MIB + (jitter(s) * 100_000.0) as u64 + 100_000;
            assert_eq!(detector.observe(observation(s, heap)).unwrap(), []);
            assert!(detector.retained() <= bound);
        }
        assert_eq!(detector.samples_seen(), 200_000);
        assert_eq!(bound, 90);
    }

    #[test]
    fn callback_and_channel_both_receive_alerts() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let detector =
            Detector::new(bare()).on_alert(move |alert| record.lock().unwrap().push(alert.kind));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let received = runtime.block_on(async {
            let (observations_tx, observations_rx) = mpsc::channel(8);
            let (alerts_tx, mut alerts_rx) = mpsc::channel(8);
            let watcher = tokio::spawn(detector.watch(observations_rx, alerts_tx));
            for s in [0, 1, 2, 3, 2, 4, 5, 6, 7] {
                // One task leaked a second; the 2 comes out of order and is skipped.
                let o = Observation {
                    tasks: 20 + s * 5,
                    ..observation(s, 40 * MIB)
                };
                observations_tx.send(o).await.unwrap();
            }
            drop(observations_tx);
            let detector = watcher.await.unwrap();
            assert_eq!(detector.samples_seen(), 8);
            let mut received = Vec::new();
            while let Some(alert) = alerts_rx.recv().await {
                received.push(alert);
            }
            received
        });
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].kind, AlertKind::TaskGrowth);
        assert_eq!((received[0].current, received[0].baseline), (55, 20));
        assert_eq!(*seen.lock().unwrap(), [AlertKind::TaskGrowth]);
    }

    // ANCHOR: trace_errors
    #[test]
    fn trace_round_trips_and_errors_name_line_and_column() {
        let trace = vec![observation(0, 10), observation(1, 20)];
        assert_eq!(parse_trace(&write_trace(&trace)).unwrap(), trace);
        // A UTF-8 byte-order mark before the header is not part of it.
        let with_bom = format!("\u{feff}{}", write_trace(&trace));
        assert_eq!(parse_trace(&with_bom).unwrap(), trace);

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
        assert_eq!(parse_trace("").unwrap_err().line, 1);
    }
    // ANCHOR_END: trace_errors

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
