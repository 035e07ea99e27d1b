//! Is it a leak? Samples a process's memory signals over a window and
//! gives a verdict with its evidence and the next step.
//!
//! "Memory grows" has at least seven causes, and only two of them are leaks:
//!
//! | verdict | what the signals show |
//! |---|---|
//! | [`Verdict::Leak`] | live heap bytes keep rising with the work done, late in the window as early |
//! | [`Verdict::TaskLeak`] | alive tasks keep rising (and hold memory) |
//! | [`Verdict::Threads`] | the thread count rose: stacks and per-thread caches |
//! | [`Verdict::FragmentationOrArenas`] | resident grew by more than the program ever held at once |
//! | [`Verdict::Ratchet`] | resident grows only when the peak of live bytes grows |
//! | [`Verdict::Retention`] | live bytes came back down, resident did not (yet) |
//! | [`Verdict::NotALeak`] | nothing grew, or it grew to a plateau and stayed there under load |
//! | [`Verdict::CantTell`] | a signal the verdict needs is missing; the report says which |
//!
//! The signals ([`Sample`]): live bytes, allocations and peak from the
//! counting allocator when it is installed; jemalloc's allocated / active /
//! resident / retained ([`HeapStats`]); glibc's `mallinfo2` where glibc is
//! the allocator; RSS split into anonymous and file-backed; threads; alive
//! tokio tasks; and, when the caller counts it, the work done.
//!
//! Three ways to use it:
//!
//! * a library call: [`Recorder`] (sample when you choose, then
//!   [`Recorder::diagnose`]) or [`examine_self`] (sample every interval
//!   over a window);
//! * an HTTP endpoint for a running service (feature `http`):
//!   `doctor_router`, `GET /debug/leakscope/doctor?seconds=N`;
//! * another process by PID, from what `/proc/PID` shows plus its
//!   `/metrics` page when it exports leakscope's metrics: [`watch_process`].
//!
//! [`replay_peak`] is for tests: run the same burst N times and assert
//! that no cycle after the first leaves memory behind.
//!
//! ```
//! use leakscope::doctor::{Recorder, Verdict};
//!
//! #[global_allocator]
//! static ALLOC: leakscope::alloc::CountingAlloc = leakscope::alloc::CountingAlloc::system();
//!
//! let mut recorder = Recorder::new();
//! let mut kept = Vec::new();
//! for request in 0..8u64 {
//!     kept.push(vec![1u8; 1 << 20]); // every request keeps a MiB
//!     recorder.sample_self(Some(request));
//! }
//! assert_eq!(recorder.diagnose(None).verdict, Verdict::Leak);
//! ```
//!
//! Thresholds are relative and named: growth smaller than
//! [`Thresholds::relative_noise`] of the process's resident memory (and
//! never less than [`Thresholds::min_bytes`]) is noise; "still rising" means
//! the last quarter of the window added at least [`Thresholds::late_share`]
//! of the growth.

use std::fmt::{self, Write as _};
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use crate::heap::HeapStats;
use crate::report::{format_bytes, format_bytes_delta};

/// Fewest samples a verdict is given on: a trend needs two halves of two.
pub const MIN_SAMPLES: usize = 4;

/// Longest window the endpoint and the command accept.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// Interval between samples unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);

/// What went wrong before a verdict could be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoctorError {
    /// The window is zero, or longer than [`MAX_WINDOW`].
    BadWindow(String),
    /// No process has this PID (or `/proc` is not there).
    NoSuchProcess {
        /// The PID asked for.
        pid: u32,
        /// Why `/proc/PID/status` could not be read.
        reason: String,
    },
    /// The URL is not one this client reads (`http://host:port/path`).
    BadUrl(String),
    /// The URL could not be fetched.
    Fetch {
        /// The URL asked for.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The URL answered, but not with a Prometheus page leakscope reads.
    NotAMetricsPage {
        /// The URL asked for.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl fmt::Display for DoctorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DoctorError::BadWindow(reason) => write!(f, "bad window: {reason}"),
            DoctorError::NoSuchProcess { pid, reason } => {
                write!(f, "no process with PID {pid}: {reason}")
            }
            DoctorError::BadUrl(reason) => write!(f, "bad metrics URL: {reason}"),
            DoctorError::Fetch { url, reason } => write!(f, "could not fetch {url}: {reason}"),
            DoctorError::NotAMetricsPage { url, reason } => {
                write!(f, "{url} is not a metrics page leakscope reads: {reason}")
            }
        }
    }
}

impl std::error::Error for DoctorError {}

/// Checks a window and an interval: at least one second, at most
/// [`MAX_WINDOW`], and room for [`MIN_SAMPLES`] samples.
pub fn check_window(window: Duration, interval: Duration) -> Result<(), DoctorError> {
    if window.is_zero() {
        return Err(DoctorError::BadWindow(
            "a window of zero seconds shows no trend; give at least 1 second".into(),
        ));
    }
    if window > MAX_WINDOW {
        return Err(DoctorError::BadWindow(format!(
            "{} s is longer than the {} s limit",
            window.as_secs(),
            MAX_WINDOW.as_secs()
        )));
    }
    if interval.is_zero() || interval * (MIN_SAMPLES as u32 - 1) > window {
        return Err(DoctorError::BadWindow(format!(
            "an interval of {} ms leaves fewer than {MIN_SAMPLES} samples in {} ms",
            interval.as_millis(),
            window.as_millis()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Signals

/// Exact process-wide counters from a counting allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counting {
    /// Bytes in live allocations.
    pub live_bytes: u64,
    /// Live allocations.
    pub live_allocations: u64,
    /// Bytes allocated since the process started, frees not subtracted.
    pub total_allocated_bytes: u64,
    /// The highest `live_bytes` has ever been.
    pub peak_live_bytes: u64,
}

/// The counting allocator's counters, when one is installed.
fn counting_signals() -> Option<Counting> {
    let counters = crate::alloc::process_counters().ok()?;
    let bytes = |value: i64| value.max(0) as u64;
    Some(Counting {
        live_bytes: bytes(counters.live_bytes),
        live_allocations: bytes(counters.live_allocations),
        total_allocated_bytes: counters.total_allocated_bytes,
        peak_live_bytes: bytes(counters.peak_live_bytes),
    })
}

/// Resident memory split by what backs it, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rss {
    /// Anonymous pages: heap, stacks, anonymous mappings. Leaks live here.
    pub anon: u64,
    /// File-backed pages: the binary, libraries, mapped files.
    pub file: u64,
    /// Shared memory pages.
    pub shmem: u64,
}

impl Rss {
    /// All resident pages: what `top` shows as RES.
    pub fn total(&self) -> u64 {
        self.anon + self.file + self.shmem
    }
}

/// glibc malloc's own view (`mallinfo2`, `malloc_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GlibcHeap {
    /// Bytes in chunks in use, mmapped ones included (`uordblks + hblkhd`).
    pub in_use: u64,
    /// Free bytes malloc holds in its arenas (`fordblks`).
    pub free: u64,
    /// Arenas (the main one included), when `malloc_info` could count them.
    pub arenas: Option<u64>,
}

/// One reading of every signal the doctor uses. A field is `None` when
/// the signal is not available, never zero for "could not see".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// When it was taken, from the start of the window.
    pub elapsed: Duration,
    /// Units of work done so far (requests, jobs), when the caller counts.
    pub work_done: Option<u64>,
    /// The counting allocator's counters.
    pub counting: Option<Counting>,
    /// jemalloc's statistics, when jemalloc is the allocator.
    pub jemalloc: Option<HeapStats>,
    /// glibc malloc's statistics, when glibc is the allocator.
    pub glibc: Option<GlibcHeap>,
    /// Resident memory.
    pub rss: Option<Rss>,
    /// Threads of the process.
    pub threads: Option<u64>,
    /// Alive tokio tasks (of the sampling runtime, or as exported).
    pub alive_tasks: Option<u64>,
}

/// Where a sample's live bytes come from, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveSource {
    /// The counting allocator: exact.
    Counting,
    /// jemalloc's `stats.allocated`.
    Jemalloc,
    /// glibc's `mallinfo2` (`uordblks + hblkhd`).
    Glibc,
}

impl Sample {
    /// Bytes the program holds, from the best source present.
    pub fn live_bytes(&self) -> Option<(u64, LiveSource)> {
        if let Some(counting) = self.counting {
            return Some((counting.live_bytes, LiveSource::Counting));
        }
        if let Some(jemalloc) = self.jemalloc {
            return Some((jemalloc.allocated, LiveSource::Jemalloc));
        }
        self.glibc.map(|glibc| (glibc.in_use, LiveSource::Glibc))
    }

    /// Resident memory that can hold heap: RSS's anonymous part, or
    /// jemalloc's resident bytes when RSS is not known.
    pub fn resident_bytes(&self) -> Option<u64> {
        self.rss
            .map(|rss| rss.anon)
            .or(self.jemalloc.map(|jemalloc| jemalloc.resident))
    }

    /// Reads this process's signals now. `elapsed` stamps it; `work_done`
    /// is the caller's count of work units, if any.
    pub fn read_self(elapsed: Duration, work_done: Option<u64>) -> Self {
        let jemalloc = read_jemalloc();
        let glibc = if jemalloc.is_none() {
            read_glibc_heap()
        } else {
            None
        };
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let (rss, threads) = status.as_deref().map(parse_status).unwrap_or((None, None));
        Self {
            elapsed,
            work_done,
            counting: counting_signals(),
            jemalloc,
            glibc,
            rss,
            threads,
            alive_tasks: tokio::runtime::Handle::try_current()
                .ok()
                .map(|runtime| runtime.metrics().num_alive_tasks() as u64),
        }
    }

    /// Reads what `/proc/PID/status` shows of another process: RSS
    /// (anonymous, file, shared) and threads.
    pub fn read_process(pid: u32, elapsed: Duration) -> Result<Self, DoctorError> {
        let path = format!("/proc/{pid}/status");
        let status =
            std::fs::read_to_string(&path).map_err(|error| DoctorError::NoSuchProcess {
                pid,
                reason: format!("{path}: {error}"),
            })?;
        let (rss, threads) = parse_status(&status);
        Ok(Self {
            elapsed,
            rss,
            threads,
            ..Self::default()
        })
    }

    /// Fills in the signals a Prometheus text page carries (leakscope's
    /// monitor and counting-allocator metrics, glibc's, tokio's, RSS).
    /// Returns how many known metrics it found.
    pub fn merge_prometheus(&mut self, text: &str) -> usize {
        let mut found = 0;
        let mut counting = self.counting.unwrap_or_default();
        let mut jemalloc = self.jemalloc.unwrap_or_default();
        let mut glibc = self.glibc.unwrap_or_default();
        let (mut has_counting, mut has_jemalloc, mut has_glibc) = (false, false, false);
        for (name, value) in prometheus_values(text) {
            found += 1;
            match name {
                "leakscope_live_bytes" => (counting.live_bytes, has_counting) = (value, true),
                "leakscope_live_allocations" => counting.live_allocations = value,
                "leakscope_allocated_bytes_total" => counting.total_allocated_bytes = value,
                "leakscope_peak_live_bytes" => counting.peak_live_bytes = value,
                "jemalloc_allocated_bytes" => (jemalloc.allocated, has_jemalloc) = (value, true),
                "jemalloc_active_bytes" => jemalloc.active = value,
                "jemalloc_resident_bytes" => jemalloc.resident = value,
                "jemalloc_mapped_bytes" => jemalloc.mapped = value,
                "jemalloc_retained_bytes" => jemalloc.retained = value,
                "jemalloc_metadata_bytes" => jemalloc.metadata = value,
                "glibc_malloc_in_use_bytes" => (glibc.in_use, has_glibc) = (value, true),
                "glibc_malloc_free_bytes" => glibc.free = value,
                "glibc_malloc_arenas" => glibc.arenas = Some(value),
                "tokio_alive_tasks" => self.alive_tasks = Some(value),
                "work_done_total" => self.work_done = Some(value),
                // RSS from the exporter only when /proc gave none.
                "process_resident_memory_bytes" if self.rss.is_none() => {
                    self.rss = Some(Rss {
                        anon: value,
                        ..Rss::default()
                    })
                }
                "process_threads" if self.threads.is_none() => self.threads = Some(value),
                _ => found -= 1,
            }
        }
        if has_counting {
            self.counting = Some(counting);
        }
        if has_jemalloc {
            self.jemalloc = Some(jemalloc);
        }
        if has_glibc {
            self.glibc = Some(glibc);
        }
        found
    }
}

/// `name value` pairs of a Prometheus text page (labels dropped, the
/// first series of a name wins), values that are not finite non-negative
/// numbers skipped.
fn prometheus_values(text: &str) -> Vec<(&str, u64)> {
    let mut values: Vec<(&str, u64)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((series, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|value| value.parse::<f64>().ok())
        else {
            continue;
        };
        if value.is_finite() && value >= 0.0 && !values.iter().any(|(seen, _)| *seen == name) {
            values.push((name, value as u64));
        }
    }
    values
}

/// Whether jemalloc serves this process's allocations (feature `jemalloc`).
fn jemalloc_is_allocator() -> bool {
    #[cfg(feature = "jemalloc")]
    {
        static JEMALLOC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *JEMALLOC.get_or_init(crate::heap::jemalloc_is_global_allocator)
    }
    #[cfg(not(feature = "jemalloc"))]
    false
}

#[cfg(feature = "jemalloc")]
fn read_jemalloc() -> Option<HeapStats> {
    jemalloc_is_allocator()
        .then(|| HeapStats::read().ok())
        .flatten()
}

#[cfg(not(feature = "jemalloc"))]
fn read_jemalloc() -> Option<HeapStats> {
    None
}

/// Parses `/proc/PID/status`: RSS (kB lines) and the thread count.
fn parse_status(status: &str) -> (Option<Rss>, Option<u64>) {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(':')?;
            value.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let rss = match (field("RssAnon"), field("RssFile"), field("RssShmem")) {
        (Some(anon), Some(file), shmem) => Some(Rss {
            anon: anon * 1024,
            file: file * 1024,
            shmem: shmem.unwrap_or(0) * 1024,
        }),
        // Kernels before 4.5 have only VmRSS.
        _ => field("VmRSS").map(|rss| Rss {
            anon: rss * 1024,
            ..Rss::default()
        }),
    };
    (rss, field("Threads"))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn read_glibc_heap() -> Option<GlibcHeap> {
    // SAFETY: mallinfo2 only reads glibc's counters under its own locks.
    let info = unsafe { libc::mallinfo2() };
    let in_use = (info.uordblks + info.hblkhd) as u64;
    // Zero means glibc's malloc is not the one in use (another allocator
    // replaced `malloc`), so its numbers say nothing.
    (in_use > 0).then(|| GlibcHeap {
        in_use,
        free: info.fordblks as u64,
        arenas: count_glibc_arenas(),
    })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn read_glibc_heap() -> Option<GlibcHeap> {
    None
}

/// Counts the `<heap nr=` elements of `malloc_info`'s XML: one per arena.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn count_glibc_arenas() -> Option<u64> {
    let mut buffer: *mut libc::c_char = std::ptr::null_mut();
    let mut length: libc::size_t = 0;
    // SAFETY: open_memstream writes the buffer pointer and length it is
    // given; the stream is closed before they are read, and the buffer is
    // freed with `free` as open_memstream requires.
    unsafe {
        let stream = libc::open_memstream(&mut buffer, &mut length);
        if stream.is_null() {
            return None;
        }
        let status = libc::malloc_info(0, stream);
        libc::fclose(stream);
        if buffer.is_null() {
            return None;
        }
        let xml = std::slice::from_raw_parts(buffer as *const u8, length);
        let arenas = String::from_utf8_lossy(xml).matches("<heap nr=").count() as u64;
        libc::free(buffer.cast());
        (status == 0).then_some(arenas)
    }
}

// ---------------------------------------------------------------------------
// The purge probe

/// What a purge gave back: the allocator's free pages returned to the
/// operating system once, and resident memory read before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeProbe {
    /// `"jemalloc arena.<all>.purge"` or `"glibc malloc_trim(0)"`.
    pub method: &'static str,
    /// Anonymous RSS before the purge.
    pub resident_before: u64,
    /// Anonymous RSS after it.
    pub resident_after: u64,
}

impl PurgeProbe {
    /// Bytes the purge returned to the operating system.
    pub fn returned(&self) -> u64 {
        self.resident_before.saturating_sub(self.resident_after)
    }
}

/// Purges this process's allocator once and measures what RSS gives back:
/// jemalloc's `arena.<MALLCTL_ARENAS_ALL>.purge`, or glibc's
/// `malloc_trim(0)`. `None` when neither allocator is in use or RSS cannot
/// be read.
pub fn purge_probe() -> Option<PurgeProbe> {
    let resident = || {
        Sample::read_self(Duration::ZERO, None)
            .rss
            .map(|rss| rss.anon)
    };
    let resident_before = resident()?;
    let method = if jemalloc_is_allocator() {
        purge_jemalloc().then_some("jemalloc arena.<all>.purge")?
    } else {
        trim_glibc().then_some("glibc malloc_trim(0)")?
    };
    Some(PurgeProbe {
        method,
        resident_before,
        resident_after: resident()?,
    })
}

#[cfg(feature = "jemalloc")]
fn purge_jemalloc() -> bool {
    // `arena.4096.purge` (4096 is MALLCTL_ARENAS_ALL) neither reads nor
    // writes a value, so it is called without pointers.
    // SAFETY: the name is NUL-terminated and no pointers are passed.
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    status == 0
}

#[cfg(not(feature = "jemalloc"))]
fn purge_jemalloc() -> bool {
    false
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_glibc() -> bool {
    // Returns 0 when nothing could be released, which is still a probe.
    // SAFETY: malloc_trim takes no pointers.
    unsafe { libc::malloc_trim(0) };
    read_glibc_heap().is_some()
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_glibc() -> bool {
    false
}

// ---------------------------------------------------------------------------
// The verdict

/// What the doctor concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Live heap bytes keep rising with the work done.
    Leak,
    /// Alive tasks keep rising.
    TaskLeak,
    /// Live bytes came back down; the allocator keeps the freed pages.
    Retention,
    /// The allocator holds more than the program ever held at once:
    /// fragmentation, or glibc's per-thread arenas.
    FragmentationOrArenas,
    /// The thread count rose: stacks and per-thread caches.
    Threads,
    /// Resident memory grows only when the peak load grows.
    Ratchet,
    /// Nothing grew, or it grew to a plateau that held under load.
    NotALeak,
    /// A signal the verdict needs is missing.
    CantTell,
}

impl Verdict {
    /// The verdict as the report prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Leak => "LEAK",
            Verdict::TaskLeak => "TASK LEAK",
            Verdict::Retention => "RETENTION",
            Verdict::FragmentationOrArenas => "FRAGMENTATION/ARENAS",
            Verdict::Threads => "THREADS",
            Verdict::Ratchet => "RATCHET",
            Verdict::NotALeak => "NOT A LEAK",
            Verdict::CantTell => "CAN'T TELL",
        }
    }

    /// Where to go next: the chapter and the tool.
    pub fn next_step(self) -> &'static str {
        match self {
            Verdict::Leak => {
                "take two heap profiles minutes apart and diff them (chapter 5, /debug/pprof/heap; \
                 leakscope::matcher names the shapes chapters 11-13 show); look for maps and \
                 caches that only grow (chapter 3) and Rc/Arc cycles (chapter 2)"
            }
            Verdict::TaskLeak => {
                "dump the tasks and see where they wait (chapter 5's task dump); give every task an \
                 exit: cancellation, TaskTracker, JoinSet (chapter 1), timeouts (chapter 9)"
            }
            Verdict::Retention => {
                "not a leak: the allocator keeps freed pages for reuse; purge or shorten decay \
                 (jemalloc arena.<i>.purge, dirty_decay_ms; glibc malloc_trim) — chapter 8"
            }
            Verdict::FragmentationOrArenas => {
                "glibc: cap arenas with MALLOC_ARENA_MAX=2 or switch to jemalloc; jemalloc: fewer \
                 arenas (narenas) or shorter decay — chapter 10"
            }
            Verdict::Threads => {
                "bound the thread pools (tokio max_blocking_threads, a semaphore before \
                 spawn_blocking) and keep per-thread caches small — chapter 10; scratch space \
                 not tied to threads — chapter 13"
            }
            Verdict::Ratchet => {
                "memory follows the largest load seen: bound the peak (concurrency limits, body \
                 limits, backpressure — chapter 9) and replay the peak in a test \
                 (leakscope::doctor::replay_peak)"
            }
            Verdict::NotALeak => {
                "nothing to fix in this window; a leak slower than the noise floor needs a longer one"
            }
            Verdict::CantTell => "add the missing signals listed above and run again",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The doctor's thresholds. All growth thresholds scale with the process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Growth below this share of the first sample's resident memory is
    /// noise: page cache, stacks and runtime bookkeeping move RSS by a few
    /// percent in a healthy process.
    pub relative_noise: f64,
    /// The noise floor never goes below this many bytes: under a MiB,
    /// allocator size classes and one-time setup dominate.
    pub min_bytes: u64,
    /// Share of the growth (from the first quarter of the window to the
    /// last, by work done or by time) that the last quarter must add for a
    /// signal to count as still rising. A steady leak adds a third of it
    /// there; a warm-up or a cache filling up to its bound, close to
    /// nothing. A tenth leaves room for leaks that slow down.
    pub late_share: f64,
    /// Tasks and threads: growth must reach this share of the first count.
    pub relative_count: f64,
    /// ...and at least this many tasks.
    pub min_tasks: u64,
    /// ...and at least this many threads: a pool warming up by a few
    /// threads costs little.
    pub min_threads: u64,
    /// Resident growth beyond this multiple of the peak's growth means the
    /// allocator does not reuse freed memory: fragmentation or arenas. One
    /// peak's worth (times slack for size classes and metadata) is what
    /// any allocator may keep.
    pub reuse_factor: f64,
    /// Share of resident growth that must coincide with a cause (new
    /// threads, new peaks) to blame it.
    pub attributed_share: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            relative_noise: 0.05,
            min_bytes: 1 << 20,
            late_share: 0.1,
            relative_count: 0.25,
            min_tasks: 4,
            min_threads: 8,
            reuse_factor: 1.5,
            attributed_share: 0.8,
        }
    }
}

/// A verdict with the evidence behind it and what to do next.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    /// The verdict.
    pub verdict: Verdict,
    /// The measurements it rests on, one sentence each.
    pub evidence: Vec<String>,
    /// Signals that were not available (and what they would have told).
    pub missing: Vec<String>,
    /// The purge probe's result, when one ran.
    pub probe: Option<PurgeProbe>,
    /// Samples the verdict used.
    pub samples: usize,
    /// Time from the first sample to the last.
    pub window: Duration,
}

impl Diagnosis {
    /// Where to go next.
    pub fn next_step(&self) -> &'static str {
        self.verdict.next_step()
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "verdict: {}", self.verdict)?;
        if self.window < Duration::from_secs(10) {
            writeln!(
                f,
                "window: {} ms, {} samples",
                self.window.as_millis(),
                self.samples
            )?;
        } else {
            writeln!(
                f,
                "window: {:.0} s, {} samples",
                self.window.as_secs_f64(),
                self.samples
            )?;
        }
        writeln!(f, "evidence:")?;
        for line in &self.evidence {
            writeln!(f, "  - {line}")?;
        }
        if let Some(probe) = self.probe {
            writeln!(
                f,
                "  - purge probe ({}): RSS {} -> {}, gave back {}",
                probe.method,
                format_bytes(probe.resident_before as i64),
                format_bytes(probe.resident_after as i64),
                format_bytes(probe.returned() as i64)
            )?;
        }
        if !self.missing.is_empty() {
            writeln!(f, "missing:")?;
            for line in &self.missing {
                writeln!(f, "  - {line}")?;
            }
        }
        writeln!(f, "next step: {}", self.next_step())
    }
}

/// A series of one signal over the window, with the x axis it trends on.
struct Series {
    values: Vec<u64>,
}

impl Series {
    fn of(samples: &[Sample], read: impl Fn(&Sample) -> Option<u64>) -> Option<Self> {
        let values: Option<Vec<u64>> = samples.iter().map(read).collect();
        values.map(|values| Self { values })
    }

    /// The lowest value in each quarter of the window. A leak raises the
    /// floor; a burst caught mid-flight raises only one sample.
    fn troughs(&self, quarters: &[std::ops::Range<usize>]) -> [u64; 4] {
        let mut troughs = [0; 4];
        for (trough, range) in troughs.iter_mut().zip(quarters) {
            *trough = self.values[range.clone()]
                .iter()
                .copied()
                .min()
                .unwrap_or(0);
        }
        troughs
    }

    /// Growth of the floor from the first quarter to the last, and the part
    /// of it the last quarter added over the third.
    fn trend(&self, quarters: &[std::ops::Range<usize>]) -> (i64, i64) {
        let [q1, _, q3, q4] = self.troughs(quarters);
        let growth = q4 as i64 - q1 as i64;
        let late = q4 as i64 - q3 as i64;
        (growth, late)
    }

    fn first(&self) -> u64 {
        self.values[0]
    }

    fn last(&self) -> u64 {
        *self.values.last().expect("a series has samples")
    }
}

/// Splits the samples into four quarters of the x axis: the work done when
/// every sample counts it, time otherwise. Every quarter gets a sample.
fn quarters(samples: &[Sample]) -> [std::ops::Range<usize>; 4] {
    let xs: Vec<f64> = match samples
        .iter()
        .map(|sample| sample.work_done)
        .collect::<Option<Vec<_>>>()
    {
        Some(work) if work.last() > work.first() => work.iter().map(|&w| w as f64).collect(),
        _ => samples
            .iter()
            .map(|sample| sample.elapsed.as_secs_f64())
            .collect(),
    };
    let n = samples.len();
    let (start, end) = (xs[0], xs[n - 1]);
    let mut bounds = [0usize, 0, 0, 0, n];
    for (quarter, bound) in bounds.iter_mut().enumerate().take(4).skip(1) {
        let x = start + (end - start) * quarter as f64 / 4.0;
        *bound = xs.iter().position(|&value| value >= x).unwrap_or(n);
    }
    // Each quarter holds at least one sample.
    for quarter in 1..4 {
        bounds[quarter] = bounds[quarter]
            .max(bounds[quarter - 1] + 1)
            .min(n - (4 - quarter));
    }
    [
        bounds[0]..bounds[1],
        bounds[1]..bounds[2],
        bounds[2]..bounds[3],
        bounds[3]..bounds[4],
    ]
}

fn bytes(value: i64) -> String {
    format_bytes(value)
}

fn delta(value: i64) -> String {
    format_bytes_delta(value)
}

/// Gives a verdict on samples taken over a window, oldest first, with the
/// default [`Thresholds`].
pub fn diagnose(samples: &[Sample], probe: Option<PurgeProbe>) -> Diagnosis {
    diagnose_with(samples, probe, &Thresholds::default())
}

/// [`diagnose`] with explicit thresholds.
pub fn diagnose_with(
    samples: &[Sample],
    probe: Option<PurgeProbe>,
    thresholds: &Thresholds,
) -> Diagnosis {
    let mut diagnosis = Diagnosis {
        verdict: Verdict::CantTell,
        evidence: Vec::new(),
        missing: Vec::new(),
        probe,
        samples: samples.len(),
        window: match (samples.first(), samples.last()) {
            (Some(first), Some(last)) => last.elapsed.saturating_sub(first.elapsed),
            _ => Duration::ZERO,
        },
    };
    if samples.len() < MIN_SAMPLES {
        diagnosis.missing.push(format!(
            "{MIN_SAMPLES} samples at least (got {}): a trend needs both halves of the window",
            samples.len()
        ));
        return diagnosis;
    }
    diagnosis.verdict = decide(samples, probe, thresholds, &mut diagnosis);
    diagnosis
}

// ANCHOR: decide
fn decide(
    samples: &[Sample],
    probe: Option<PurgeProbe>,
    t: &Thresholds,
    diagnosis: &mut Diagnosis,
) -> Verdict {
    let quarters = quarters(samples);
    let live = Series::of(samples, |s| s.live_bytes().map(|(bytes, _)| bytes));
    let resident = Series::of(samples, Sample::resident_bytes);
    let evidence = &mut diagnosis.evidence;
    let missing = &mut diagnosis.missing;

    if let Some((_, source)) = samples[0].live_bytes() {
        evidence.push(format!("live bytes from {source:?}"));
    }
    if live.is_none() {
        missing.push(
            "live heap bytes: install leakscope::alloc::CountingAlloc, run on jemalloc, \
             or export leakscope's metrics"
                .into(),
        );
    }
    if resident.is_none() {
        missing.push("resident memory (/proc/PID/status)".into());
    }
    // Noise floor: a share of the process's size, never below min_bytes.
    let size = resident.as_ref().or(live.as_ref()).map_or(0, Series::first);
    let floor = (t.min_bytes as f64).max(t.relative_noise * size as f64) as i64;
    evidence.push(format!(
        "noise floor {} ({}% of the first resident reading, at least {})",
        bytes(floor),
        (t.relative_noise * 100.0).round(),
        bytes(t.min_bytes as i64)
    ));

    // 1. Tasks that keep piling up.
    if let Some(tasks) = Series::of(samples, |s| s.alive_tasks) {
        let (growth, late) = tasks.trend(&quarters);
        let task_floor = (t.min_tasks as f64).max(t.relative_count * tasks.first() as f64);
        evidence.push(format!(
            "alive tasks {} -> {} (floor of the last quarter {growth:+} over the first)",
            tasks.first(),
            tasks.last()
        ));
        if growth as f64 >= task_floor && late as f64 >= t.late_share * growth as f64 {
            evidence.push(format!(
                "tasks still rising in the last quarter ({late:+}): they do not finish"
            ));
            if let Some(live) = &live {
                let (heap_growth, _) = live.trend(&quarters);
                if heap_growth > 0 {
                    evidence.push(format!(
                        "live bytes {} with them, {} per extra task",
                        delta(heap_growth),
                        bytes(heap_growth / growth)
                    ));
                }
            }
            return Verdict::TaskLeak;
        }
    }

    // 2. Threads: stacks and per-thread caches.
    if let Some(threads) = Series::of(samples, |s| s.threads) {
        let growth = threads.last() as i64 - threads.first() as i64;
        let thread_floor = (t.min_threads as f64).max(t.relative_count * threads.first() as f64);
        evidence.push(format!("threads {} -> {}", threads.first(), threads.last()));
        if growth as f64 >= thread_floor {
            if let Some(memory) = resident.as_ref().or(live.as_ref()) {
                let share = share_of_growth(&memory.values, |i| {
                    threads.values[i] > threads.values[i - 1]
                });
                let grown = memory.last() as i64 - memory.first() as i64;
                let (trend, late) = memory.trend(&quarters);
                evidence.push(format!(
                    "memory {} while threads rose by {growth}: {} per new thread, {:.0}% of it \
                     in the intervals where threads were started",
                    delta(grown),
                    bytes(grown.max(0) / growth),
                    share * 100.0
                ));
                // New threads cost memory when they first run (stacks,
                // thread-local caches); memory that keeps rising after the
                // thread count stopped is something else.
                let levelled_off = (late as f64) < t.late_share * trend as f64;
                // Threads still being started in the second half: memory
                // rising with them (a thread's caches fill when it first
                // runs a job, a little after it starts) is theirs.
                let [_, threads_q2, _, threads_q4] = threads.troughs(&quarters);
                let threads_still_rising = threads_q4 > threads_q2;
                if threads_still_rising {
                    evidence.push(format!(
                        "threads still being started in the second half ({threads_q2} -> \
                         {threads_q4})"
                    ));
                }
                if grown <= floor
                    || levelled_off
                    || threads_still_rising
                    || share >= t.attributed_share
                {
                    if levelled_off && grown > floor {
                        evidence.push(format!(
                            "memory levelled off with the threads: {} in the last quarter",
                            delta(late)
                        ));
                    }
                    return Verdict::Threads;
                }
                evidence.push(format!(
                    "memory still rising in the last quarter ({}) without new threads",
                    delta(late)
                ));
            } else {
                return Verdict::Threads;
            }
        }
    }

    // 3. Live bytes that keep rising: a leak.
    let Some(live) = live else {
        let Some(resident) = resident else {
            return Verdict::CantTell;
        };
        let (growth, late) = resident.trend(&quarters);
        evidence.push(format!(
            "resident {} -> {} ({})",
            bytes(resident.first() as i64),
            bytes(resident.last() as i64),
            delta(growth)
        ));
        if growth <= floor {
            evidence.push("resident did not grow beyond the noise floor".into());
            return Verdict::NotALeak;
        }
        if late as f64 >= t.late_share * growth as f64 {
            evidence.push(
                "resident keeps rising; without live bytes a leak cannot be told from the \
                 allocator keeping freed memory"
                    .into(),
            );
        } else {
            evidence.push(
                "resident rose and levelled off; without live bytes, whether the program or \
                 the allocator holds it is unknown"
                    .into(),
            );
        }
        return Verdict::CantTell;
    };
    let (live_growth, live_late) = live.trend(&quarters);
    evidence.push(format!(
        "live bytes {} -> {} (floor of the last quarter {} over the first)",
        bytes(live.first() as i64),
        bytes(live.last() as i64),
        delta(live_growth)
    ));
    if live_growth > floor && live_late as f64 >= t.late_share * live_growth as f64 {
        evidence.push(format!(
            "still rising in the last quarter: {} of the {}",
            delta(live_late),
            delta(live_growth)
        ));
        if let Some(per_unit) = growth_per_unit(samples, live_growth) {
            evidence.push(per_unit);
        }
        return Verdict::Leak;
    }
    // The counting allocator sees only Rust's global allocator; C code
    // calling malloc shows up in jemalloc's or glibc's own counts.
    let allocator_heaps: [(&str, Option<Series>); 2] = [
        (
            "jemalloc's allocated",
            Series::of(samples, |s| s.jemalloc.map(|j| j.allocated)),
        ),
        (
            "glibc's bytes in use",
            Series::of(samples, |s| s.glibc.map(|g| g.in_use)),
        ),
    ];
    for (name, heap) in allocator_heaps {
        let Some(heap) = heap else { continue };
        let (growth, late) = heap.trend(&quarters);
        if growth > floor && late as f64 >= t.late_share * growth as f64 {
            evidence.push(format!(
                "{name} keeps rising ({}, {} in the last quarter) while the live bytes above do \
                 not: allocations outside Rust's global allocator (C code calling malloc)",
                delta(growth),
                delta(late)
            ));
            return Verdict::Leak;
        }
    }

    // 4. Resident grew, live bytes did not keep up: who holds it?
    let Some(resident) = resident else {
        evidence.push("live bytes did not keep rising; resident memory unknown".into());
        return Verdict::NotALeak;
    };
    let resident_growth = resident.last() as i64 - resident.first() as i64;
    evidence.push(format!(
        "resident (anonymous RSS) {} -> {} ({})",
        bytes(resident.first() as i64),
        bytes(resident.last() as i64),
        delta(resident_growth)
    ));
    if let Some(probe) = probe
        && probe.returned() as i64 > floor
    {
        evidence.push(format!(
            "the purge gave back {}: the allocator was holding freed memory",
            bytes(probe.returned() as i64)
        ));
    }
    if resident_growth <= floor {
        if let Some(probe) = probe
            && probe.returned() as i64 > floor
        {
            return Verdict::Retention;
        }
        evidence.push("resident did not grow beyond the noise floor".into());
        return Verdict::NotALeak;
    }
    if live_growth as f64 >= 0.5 * resident_growth as f64 {
        evidence.push(format!(
            "the program holds what resident gained ({} of {}), and stopped adding: a plateau",
            delta(live_growth),
            delta(resident_growth)
        ));
        return Verdict::NotALeak;
    }

    // Resident gained memory the program no longer holds.
    let peaks = peak_series(samples, &live);
    let peak_growth = *peaks.last().expect("samples") as i64 - live.first() as i64;
    let kept = resident_growth - live_growth.max(0);
    evidence.push(format!(
        "the allocator keeps {} the program no longer holds; the peak of live bytes rose by {}",
        bytes(kept),
        delta(peak_growth)
    ));
    if let Some(glibc) = samples.last().and_then(|s| s.glibc) {
        evidence.push(format!(
            "glibc malloc: {} in use, {} free in its arenas{}",
            bytes(glibc.in_use as i64),
            bytes(glibc.free as i64),
            glibc
                .arenas
                .map_or(String::new(), |arenas| format!(", arenas: {arenas}"))
        ));
    }
    if let Some(jemalloc) = samples.last().and_then(|s| s.jemalloc) {
        evidence.push(format!(
            "jemalloc: active - allocated (fragmentation) {}, resident - active (freed pages) {}",
            bytes(jemalloc.active.saturating_sub(jemalloc.allocated) as i64),
            bytes(jemalloc.resident.saturating_sub(jemalloc.active) as i64)
        ));
    }

    // 4a. More than the program ever held at once: memory is not reused.
    // Only a counting allocator knows the peak; sampled peaks miss bursts.
    // A metrics page may carry live bytes without the peak (0 then).
    let peak_is_exact = samples
        .iter()
        .all(|s| s.counting.is_some_and(|c| c.peak_live_bytes > 0));
    if !peak_is_exact {
        missing.push(
            "the exact peak of live bytes (leakscope::alloc::CountingAlloc): without it, \
             peaks between samples are missed and arenas or ratchets may read as retention"
                .into(),
        );
    }
    if let (Some(first), Some(last)) = (samples[0].jemalloc, samples[samples.len() - 1].jemalloc) {
        // jemalloc tells fragmentation (active pages not full) from freed
        // pages kept (resident beyond active) by itself.
        let fragmentation = |s: HeapStats| s.active.saturating_sub(s.allocated) as i64;
        let freed_pages = |s: HeapStats| s.resident.saturating_sub(s.active + s.metadata) as i64;
        let fragmentation_growth = fragmentation(last) - fragmentation(first);
        if fragmentation_growth > floor
            && fragmentation_growth > freed_pages(last) - freed_pages(first)
        {
            evidence.push(format!(
                "jemalloc's partly used pages grew by {}, more than its freed pages: fragmentation",
                delta(fragmentation_growth)
            ));
            return Verdict::FragmentationOrArenas;
        }
    }
    if peak_is_exact && kept as f64 > t.reuse_factor * peak_growth.max(floor) as f64 {
        evidence.push(format!(
            "that is {:.1}x what the program ever held at once: freed memory is not reused",
            kept as f64 / peak_growth.max(floor) as f64
        ));
        return Verdict::FragmentationOrArenas;
    }

    // 4b. Growth only at new peaks, none while the same load repeated.
    // A repeat of the load allocates at least a quarter of what the peak
    // added; background chatter allocates less.
    let repeat_bytes = (peak_growth.max(floor) / 4) as u64;
    let intervals = PeakIntervals::measure(samples, &resident.values, &peaks, floor, repeat_bytes);

    // 4c. Without the exact peak (4a needs it): resident still rising, with
    // no new peaks behind it and nothing the program holds rising. Memory
    // is not being reused, or it is held outside the heaps the doctor reads.
    let (resident_trend, resident_late) = resident.trend(&quarters);
    if !peak_is_exact
        && resident_trend > floor
        && resident_late as f64 >= t.late_share * resident_trend as f64
        && (intervals.growth_at_peaks as f64) < t.attributed_share * intervals.growth_total as f64
    {
        evidence.push(format!(
            "resident still rising in the last quarter ({}) without new peaks of live bytes",
            delta(resident_late)
        ));
        let held_free = |s: &Sample| {
            s.glibc.map(|g| g.free).or(s
                .jemalloc
                .map(|j| j.resident.saturating_sub(j.active + j.metadata)))
        };
        if let (Some(before), Some(after)) = (
            held_free(&samples[0]),
            held_free(&samples[samples.len() - 1]),
        ) && (after as i64 - before as i64) as f64 >= 0.5 * resident_growth as f64
        {
            evidence.push(format!(
                "the allocator's free memory grew by {}: it keeps freed memory it does not reuse",
                delta(after as i64 - before as i64)
            ));
            return Verdict::FragmentationOrArenas;
        }
        missing.push(
            "who holds the growth: neither the program's live bytes nor the allocator's free \
             memory rose with it — read /proc/PID/smaps for mappings outside the heap (mmap, \
             stacks), or install the allocator statistics (feature jemalloc, glibc mallinfo2)"
                .into(),
        );
        return Verdict::CantTell;
    }
    if intervals.peak_steps >= 2
        && intervals.repeats >= 1
        && intervals.growth_at_peaks as f64 >= t.attributed_share * intervals.growth_total as f64
    {
        evidence.push(format!(
            "resident grew at {} new peaks ({}), and not during {} repeats of a lower load",
            intervals.peak_steps,
            delta(intervals.growth_at_peaks as i64),
            intervals.repeats
        ));
        return Verdict::Ratchet;
    }
    if intervals.peak_steps <= 1 && intervals.repeats_after_growth >= 1 {
        evidence.push(format!(
            "resident rose with the first peak and held flat through {} repeats of the same \
             load: the allocator reuses it (a plateau)",
            intervals.repeats_after_growth
        ));
        return Verdict::NotALeak;
    }
    if let Some(probe) = probe
        && (probe.returned() as f64) < 0.25 * kept as f64
    {
        evidence.push(format!(
            "the purge gave back only {} of {}: what is held is not free pages",
            bytes(probe.returned() as i64),
            bytes(kept)
        ));
        return Verdict::FragmentationOrArenas;
    }
    if intervals.peak_steps >= 2 && intervals.repeats == 0 {
        evidence.push(format!(
            "resident grew with {} new peaks and no lower load came to show whether the pages \
             are reused: retention, or a ratchet (replay the same peak to tell: replay_peak)",
            intervals.peak_steps
        ));
    } else {
        evidence.push(
            "live bytes are back down and no load reused the pages since: they wait for decay \
             or a purge"
                .into(),
        );
    }
    Verdict::Retention
}
// ANCHOR_END: decide

/// Share of the positive steps of `memory` taken in intervals `i` (from
/// sample `i - 1` to `i`) where `cause(i)` holds.
fn share_of_growth(memory: &[u64], cause: impl Fn(usize) -> bool) -> f64 {
    let (mut caused, mut total) = (0u64, 0u64);
    for i in 1..memory.len() {
        let step = memory[i].saturating_sub(memory[i - 1]);
        total += step;
        if cause(i) {
            caused += step;
        }
    }
    if total == 0 {
        0.0
    } else {
        caused as f64 / total as f64
    }
}

/// The high-water mark of live bytes at each sample: the counting
/// allocator's exact peak, or the running maximum of what was sampled.
fn peak_series(samples: &[Sample], live: &Series) -> Vec<u64> {
    let mut running = 0;
    samples
        .iter()
        .zip(&live.values)
        .map(|(sample, &value)| {
            running = running.max(value);
            if let Some(counting) = sample.counting {
                running = running.max(counting.peak_live_bytes);
            }
            running
        })
        .collect()
}

/// How resident growth lines up with new peaks of live bytes.
struct PeakIntervals {
    /// Intervals in which the peak rose by more than half the noise floor.
    peak_steps: usize,
    /// Intervals with work (or allocations) but no new peak.
    repeats: usize,
    /// Such intervals after the last resident growth.
    repeats_after_growth: usize,
    growth_at_peaks: u64,
    growth_total: u64,
}

impl PeakIntervals {
    fn measure(
        samples: &[Sample],
        resident: &[u64],
        peaks: &[u64],
        floor: i64,
        repeat_bytes: u64,
    ) -> Self {
        let step_threshold = (floor / 2).max(1) as u64;
        let mut intervals = Self {
            peak_steps: 0,
            repeats: 0,
            repeats_after_growth: 0,
            growth_at_peaks: 0,
            growth_total: 0,
        };
        for i in 1..samples.len() {
            let grew = resident[i].saturating_sub(resident[i - 1]);
            let new_peak = peaks[i] > peaks[i - 1] + step_threshold;
            intervals.growth_total += grew;
            if new_peak {
                intervals.peak_steps += 1;
                intervals.growth_at_peaks += grew;
            } else if did_work(&samples[i - 1], &samples[i], repeat_bytes) {
                intervals.repeats += 1;
                intervals.repeats_after_growth += 1;
            }
            if grew > step_threshold {
                intervals.repeats_after_growth = 0;
            }
        }
        intervals
    }
}

/// Whether the program did work between two samples: the caller's work
/// counter moved, or (without one) the counting allocator allocated at
/// least `repeat_bytes`.
fn did_work(before: &Sample, after: &Sample, repeat_bytes: u64) -> bool {
    match (before.work_done, after.work_done) {
        (Some(before), Some(after)) => after > before,
        _ => match (before.counting, after.counting) {
            (Some(before), Some(after)) => {
                after.total_allocated_bytes >= before.total_allocated_bytes + repeat_bytes.max(1)
            }
            _ => false,
        },
    }
}

fn growth_per_unit(samples: &[Sample], growth: i64) -> Option<String> {
    let first = samples.first()?;
    let last = samples.last()?;
    match (first.work_done, last.work_done) {
        (Some(before), Some(after)) if after > before => Some(format!(
            "{} per unit of work ({} units)",
            bytes(growth / (after - before) as i64),
            after - before
        )),
        _ => {
            let seconds = last.elapsed.saturating_sub(first.elapsed).as_secs_f64();
            (seconds > 0.0)
                .then(|| format!("{} per second", bytes((growth as f64 / seconds) as i64)))
        }
    }
}

// ---------------------------------------------------------------------------
// Ways to run it

/// Samples taken when the caller chooses (after each request, each burst),
/// then one verdict.
#[derive(Debug, Clone)]
pub struct Recorder {
    started: Instant,
    samples: Vec<Sample>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder; time counts from now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            samples: Vec::new(),
        }
    }

    /// Reads this process's signals now, with the work done so far.
    pub fn sample_self(&mut self, work_done: Option<u64>) -> &Sample {
        self.record(Sample::read_self(self.started.elapsed(), work_done))
    }

    /// Records a sample taken elsewhere (another process, a metrics page).
    pub fn record(&mut self, sample: Sample) -> &Sample {
        self.samples.push(sample);
        self.samples.last().expect("just pushed")
    }

    /// The samples so far.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The verdict on the samples so far, with a purge probe's result.
    pub fn diagnose(&self, probe: Option<PurgeProbe>) -> Diagnosis {
        diagnose(&self.samples, probe)
    }
}

/// Samples this process every `interval` for `window` on the current
/// tokio runtime (alive tasks are that runtime's), then optionally probes
/// with a purge, and gives the verdict.
pub async fn examine_self(
    window: Duration,
    interval: Duration,
    purge: bool,
) -> Result<Diagnosis, DoctorError> {
    check_window(window, interval)?;
    let mut recorder = Recorder::new();
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        recorder.sample_self(None);
        if started.elapsed() >= window {
            break;
        }
    }
    let probe = if purge { purge_probe() } else { None };
    Ok(recorder.diagnose(probe))
}

/// Watches another process for `window`: `/proc/PID/status` every
/// `interval`, plus its Prometheus page when `metrics_url` is given
/// (`http://host:port/path`). Blocks the calling thread.
pub fn watch_process(
    pid: u32,
    window: Duration,
    interval: Duration,
    metrics_url: Option<&str>,
) -> Result<Diagnosis, DoctorError> {
    check_window(window, interval)?;
    let url = metrics_url.map(MetricsUrl::parse).transpose()?;
    let started = Instant::now();
    let mut recorder = Recorder::new();
    loop {
        let mut sample = Sample::read_process(pid, started.elapsed())?;
        if let Some(url) = &url {
            let page = url.fetch()?;
            if sample.merge_prometheus(&page) == 0 {
                return Err(DoctorError::NotAMetricsPage {
                    url: url.original.clone(),
                    reason: "no metric leakscope knows (leakscope_live_bytes, \
                             jemalloc_allocated_bytes, tokio_alive_tasks, ...)"
                        .into(),
                });
            }
        }
        recorder.record(sample);
        let elapsed = started.elapsed();
        if elapsed >= window {
            break;
        }
        std::thread::sleep(interval.min(window - elapsed));
    }
    let mut diagnosis = recorder.diagnose(None);
    diagnosis.missing.push(format!(
        "purge probe: it runs inside the process (PID {pid} is another one)"
    ));
    Ok(diagnosis)
}

/// An `http://host:port/path` URL: what the metrics pages leakscope serves
/// look like. No TLS, no redirects.
#[derive(Debug, Clone)]
struct MetricsUrl {
    original: String,
    host_port: String,
    path: String,
}

impl MetricsUrl {
    fn parse(url: &str) -> Result<Self, DoctorError> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            DoctorError::BadUrl(format!("{url:?}: only http://host:port/path is supported"))
        })?;
        let (host_port, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/metrics"),
        };
        if host_port.is_empty() {
            return Err(DoctorError::BadUrl(format!("{url:?} has no host")));
        }
        let host_port = if host_port.contains(':') {
            host_port.to_string()
        } else {
            format!("{host_port}:80")
        };
        Ok(Self {
            original: url.to_string(),
            host_port,
            path: path.to_string(),
        })
    }

    /// GET over HTTP/1.0 (so the body is never chunked), 200 only.
    fn fetch(&self) -> Result<String, DoctorError> {
        use std::net::{TcpStream, ToSocketAddrs};
        const TIMEOUT: Duration = Duration::from_secs(5);
        const MAX_BODY: u64 = 8 << 20;
        let fail = |reason: String| DoctorError::Fetch {
            url: self.original.clone(),
            reason,
        };
        let address = self
            .host_port
            .to_socket_addrs()
            .map_err(|error| fail(error.to_string()))?
            .next()
            .ok_or_else(|| fail("the host has no address".into()))?;
        let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)
            .map_err(|error| fail(error.to_string()))?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .map_err(|error| fail(error.to_string()))?;
        // One write: a server may answer (and close) after the first packet.
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: text/plain\r\n\r\n",
            self.path, self.host_port
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|error| fail(error.to_string()))?;
        let mut response = Vec::new();
        stream
            .take(MAX_BODY)
            .read_to_end(&mut response)
            .map_err(|error| fail(error.to_string()))?;
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| fail("not an HTTP response".into()))?;
        let status = head.lines().next().unwrap_or("");
        if status.split_whitespace().nth(1) != Some("200") {
            return Err(fail(format!("the server answered {status:?}")));
        }
        let looks_like_html = body.trim_start().starts_with('<');
        if looks_like_html {
            return Err(DoctorError::NotAMetricsPage {
                url: self.original.clone(),
                reason: "the page is HTML, not Prometheus text".into(),
            });
        }
        Ok(body.to_string())
    }
}

// ---------------------------------------------------------------------------
// Peak replay, for tests

/// What each cycle of [`replay_peak`] left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeakReplay {
    /// Live bytes after each cycle, relative to before the first.
    pub live_after_cycle: Vec<i64>,
    /// Anonymous RSS after each cycle, relative to before the first
    /// (process-wide: exact only in a process of its own).
    pub resident_after_cycle: Vec<i64>,
}

impl PeakReplay {
    /// Growth of live bytes in each cycle after the first (the first may
    /// warm caches and pools).
    pub fn live_growth_per_cycle(&self) -> Vec<i64> {
        self.live_after_cycle
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .collect()
    }

    /// Growth of resident memory in each cycle after the first.
    pub fn resident_growth_per_cycle(&self) -> Vec<i64> {
        self.resident_after_cycle
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .collect()
    }

    /// The same replay without its first `cycles` cycles: for bursts whose
    /// allocator takes more than one cycle to settle (jemalloc may map a
    /// little more on the second pass before it reuses its extents).
    pub fn skip(&self, cycles: usize) -> PeakReplay {
        PeakReplay {
            live_after_cycle: self.live_after_cycle.iter().skip(cycles).copied().collect(),
            resident_after_cycle: self
                .resident_after_cycle
                .iter()
                .skip(cycles)
                .copied()
                .collect(),
        }
    }

    /// Panics if any cycle after the first left more than `tolerance`
    /// live bytes behind.
    pub fn assert_no_live_growth(&self, tolerance: i64) {
        for (cycle, growth) in self.live_growth_per_cycle().into_iter().enumerate() {
            assert!(
                growth <= tolerance,
                "cycle {} of the same burst left {} more live bytes (tolerance {}); all cycles: {:?}",
                cycle + 2,
                growth,
                tolerance,
                self.live_after_cycle
            );
        }
    }

    /// Panics if any cycle after the first raised resident memory by more
    /// than `tolerance`.
    pub fn assert_no_resident_growth(&self, tolerance: i64) {
        for (cycle, growth) in self.resident_growth_per_cycle().into_iter().enumerate() {
            assert!(
                growth <= tolerance,
                "cycle {} of the same burst raised resident memory by {} (tolerance {}); all \
                 cycles: {:?}",
                cycle + 2,
                growth,
                tolerance,
                self.resident_after_cycle
            );
        }
    }
}

/// Runs `burst` `cycles` times and records live bytes and resident memory
/// after each. Live bytes are this thread's, exact
/// ([`LiveBytes`](crate::heap::LiveBytes): the counting allocator or
/// jemalloc): run the burst on this thread, on a `current_thread` runtime
/// if it is async.
///
/// # Panics
///
/// When leakscope cannot see the heap (neither the counting allocator nor
/// jemalloc is the global allocator), with the line to add.
pub fn replay_peak(cycles: usize, mut burst: impl FnMut()) -> PeakReplay {
    let live = crate::heap::LiveBytes::try_start().unwrap_or_else(|error| panic!("{error}"));
    let resident = || {
        Sample::read_self(Duration::ZERO, None)
            .rss
            .map_or(0, |rss| rss.anon as i64)
    };
    let resident_before = resident();
    let mut replay = PeakReplay {
        live_after_cycle: Vec::with_capacity(cycles),
        resident_after_cycle: Vec::with_capacity(cycles),
    };
    for _ in 0..cycles {
        burst();
        replay.live_after_cycle.push(live.live_bytes());
        replay
            .resident_after_cycle
            .push(resident() - resident_before);
    }
    replay
}

// ---------------------------------------------------------------------------
// HTTP

/// The query of `GET /debug/leakscope/doctor`.
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoctorQuery {
    /// Window in seconds (1 to 3600; 10 when absent).
    pub seconds: u64,
    /// Interval between samples in milliseconds (250 when absent).
    pub interval_ms: u64,
    /// Whether to run the purge probe at the end.
    pub purge: bool,
}

#[cfg(feature = "http")]
impl DoctorQuery {
    /// Parses `seconds=N&interval_ms=M&purge=true` (any order, all optional).
    pub fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut parsed = Self {
            seconds: 10,
            interval_ms: DEFAULT_INTERVAL.as_millis() as u64,
            purge: false,
        };
        for pair in query
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key}={value:?} is not a whole number"))
            };
            match key {
                "seconds" => parsed.seconds = number()?,
                "interval_ms" => parsed.interval_ms = number()?,
                "purge" => {
                    parsed.purge = match value {
                        "" | "true" | "1" => true,
                        "false" | "0" => false,
                        other => return Err(format!("purge={other:?}: use true or false")),
                    }
                }
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        Ok(parsed)
    }
}

/// An axum router serving the doctor at `GET /debug/leakscope/doctor`:
/// `?seconds=N` (window), `&interval_ms=M`, `&purge=true`. The answer is
/// the report as text; bad parameters get 400 with the reason. Merge it
/// into a service's router: `app.merge(leakscope::doctor::doctor_router())`.
#[cfg(feature = "http")]
pub fn doctor_router() -> axum::Router {
    axum::Router::new().route("/debug/leakscope/doctor", axum::routing::get(serve_doctor))
}

/// The handler behind [`doctor_router`], for routers that mount it
/// elsewhere.
#[cfg(feature = "http")]
pub async fn serve_doctor(uri: axum::http::Uri) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let query = match DoctorQuery::parse(uri.query()) {
        Ok(query) => query,
        Err(reason) => return (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response(),
    };
    match examine_self(
        Duration::from_secs(query.seconds),
        Duration::from_millis(query.interval_ms),
        query.purge,
    )
    .await
    {
        Ok(diagnosis) => diagnosis.to_string().into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    }
}

/// The signals of a sample in the Prometheus text format, under the names
/// [`Sample::merge_prometheus`] reads back: what a service exports so that
/// [`watch_process`] can see inside it.
pub fn to_prometheus(sample: &Sample) -> String {
    let mut text = String::new();
    let mut gauge = |name: &str, value: u64| {
        let _ = writeln!(text, "# TYPE {name} gauge\n{name} {value}");
    };
    if let Some(counting) = sample.counting {
        gauge("leakscope_live_bytes", counting.live_bytes);
        gauge("leakscope_live_allocations", counting.live_allocations);
        gauge(
            "leakscope_allocated_bytes_total",
            counting.total_allocated_bytes,
        );
        gauge("leakscope_peak_live_bytes", counting.peak_live_bytes);
    }
    if let Some(jemalloc) = sample.jemalloc {
        gauge("jemalloc_allocated_bytes", jemalloc.allocated);
        gauge("jemalloc_active_bytes", jemalloc.active);
        gauge("jemalloc_resident_bytes", jemalloc.resident);
        gauge("jemalloc_mapped_bytes", jemalloc.mapped);
        gauge("jemalloc_retained_bytes", jemalloc.retained);
        gauge("jemalloc_metadata_bytes", jemalloc.metadata);
    }
    if let Some(glibc) = sample.glibc {
        gauge("glibc_malloc_in_use_bytes", glibc.in_use);
        gauge("glibc_malloc_free_bytes", glibc.free);
        if let Some(arenas) = glibc.arenas {
            gauge("glibc_malloc_arenas", arenas);
        }
    }
    if let Some(tasks) = sample.alive_tasks {
        gauge("tokio_alive_tasks", tasks);
    }
    if let Some(work) = sample.work_done {
        gauge("work_done_total", work);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// A sample at second `i` with these live and resident bytes.
    fn sample(i: u64, live: u64, resident: u64) -> Sample {
        Sample {
            elapsed: Duration::from_secs(i),
            work_done: Some(i * 100),
            counting: Some(Counting {
                live_bytes: live,
                peak_live_bytes: live,
                ..Counting::default()
            }),
            rss: Some(Rss {
                anon: resident,
                file: 4 * MIB,
                shmem: 0,
            }),
            threads: Some(4),
            alive_tasks: Some(3),
            ..Sample::default()
        }
    }

    /// Samples whose live and resident bytes follow these lists; the
    /// counting allocator's peak is the running maximum of `peaks`.
    fn series(live: &[u64], resident: &[u64], peaks: &[u64]) -> Vec<Sample> {
        let mut peak = 0;
        live.iter()
            .zip(resident)
            .zip(peaks)
            .enumerate()
            .map(|(i, ((&live, &resident), &burst))| {
                peak = peak.max(burst).max(live);
                let mut s = sample(i as u64, live, resident);
                if let Some(counting) = s.counting.as_mut() {
                    counting.peak_live_bytes = peak;
                }
                s
            })
            .collect()
    }

    #[test]
    fn steady_growth_of_live_bytes_is_a_leak() {
        let live: Vec<u64> = (0..10).map(|i| 10 * MIB + i * 2 * MIB).collect();
        let resident: Vec<u64> = live.iter().map(|l| l + 5 * MIB).collect();
        let diagnosis = diagnose(&series(&live, &resident, &live), None);
        assert_eq!(diagnosis.verdict, Verdict::Leak, "{diagnosis}");
    }

    #[test]
    fn growth_that_levels_off_early_is_a_plateau() {
        let live: Vec<u64> = (0..12).map(|i| 10 * MIB + i.min(3) * 4 * MIB).collect();
        let resident: Vec<u64> = live.iter().map(|l| l + 5 * MIB).collect();
        let diagnosis = diagnose(&series(&live, &resident, &live), None);
        assert_eq!(diagnosis.verdict, Verdict::NotALeak, "{diagnosis}");
    }

    #[test]
    fn live_back_down_and_resident_up_after_one_burst_is_retention() {
        let live = [10 * MIB; 8];
        let resident = [20, 60, 60, 60, 60, 60, 60, 60].map(|m| m * MIB);
        let peaks = [10, 50, 0, 0, 0, 0, 0, 0].map(|m| m * MIB);
        let mut samples = series(&live, &resident, &peaks);
        // Nothing allocates after the burst: no work.
        for s in &mut samples[2..] {
            s.work_done = Some(100);
        }
        let diagnosis = diagnose(&samples, None);
        assert_eq!(diagnosis.verdict, Verdict::Retention, "{diagnosis}");
    }

    #[test]
    fn background_allocations_after_a_burst_are_not_a_repeat_of_the_load() {
        let live = [10 * MIB; 8];
        let resident = [20, 60, 60, 60, 60, 60, 60, 60].map(|m| m * MIB);
        let peaks = [10, 50, 0, 0, 0, 0, 0, 0].map(|m| m * MIB);
        let mut samples = series(&live, &resident, &peaks);
        // No work counter; after the burst only a few KiB are allocated
        // per interval (timers, logging).
        let mut total = 0;
        for (i, s) in samples.iter_mut().enumerate() {
            s.work_done = None;
            total += if i == 1 { 40 * MIB } else { 4096 };
            s.counting.as_mut().unwrap().total_allocated_bytes = total;
        }
        let diagnosis = diagnose(&samples, None);
        assert_eq!(diagnosis.verdict, Verdict::Retention, "{diagnosis}");
    }

    #[test]
    fn a_live_bytes_page_without_a_peak_is_not_an_exact_peak() {
        let mut sample = Sample::default();
        sample.merge_prometheus("leakscope_live_bytes 1048576\n");
        assert_eq!(sample.counting.unwrap().peak_live_bytes, 0);
        let samples: Vec<Sample> = (0..8)
            .map(|i| Sample {
                elapsed: Duration::from_secs(i),
                rss: Some(Rss {
                    anon: (20 + 10 * i) * MIB,
                    ..Rss::default()
                }),
                ..sample
            })
            .collect();
        let diagnosis = diagnose(&samples, None);
        assert_ne!(
            diagnosis.verdict,
            Verdict::FragmentationOrArenas,
            "{diagnosis}"
        );
        assert!(
            diagnosis.missing.iter().any(|m| m.contains("exact peak")),
            "{diagnosis}"
        );
    }

    #[test]
    fn c_allocations_seen_only_by_the_allocator_are_a_leak() {
        // Rust's counted live bytes flat; jemalloc's allocated (which sees
        // C code's malloc too) rising steadily.
        let live = [10 * MIB; 8];
        let resident: Vec<u64> = (0..8).map(|i| 20 * MIB + i * 4 * MIB).collect();
        let mut samples = series(&live, &resident, &live);
        for (i, s) in samples.iter_mut().enumerate() {
            s.jemalloc = Some(HeapStats {
                allocated: 12 * MIB + i as u64 * 4 * MIB,
                ..HeapStats::default()
            });
        }
        let diagnosis = diagnose(&samples, None);
        assert_eq!(diagnosis.verdict, Verdict::Leak, "{diagnosis}");
    }

    #[test]
    fn resident_rising_with_glibc_free_memory_is_arenas_even_without_a_peak() {
        let samples: Vec<Sample> = (0..8)
            .map(|i| Sample {
                elapsed: Duration::from_secs(i),
                glibc: Some(GlibcHeap {
                    in_use: MIB,
                    free: i * 8 * MIB,
                    arenas: Some(8),
                }),
                rss: Some(Rss {
                    anon: 4 * MIB + i * 8 * MIB,
                    ..Rss::default()
                }),
                threads: Some(9),
                ..Sample::default()
            })
            .collect();
        let diagnosis = diagnose(&samples, None);
        assert_eq!(
            diagnosis.verdict,
            Verdict::FragmentationOrArenas,
            "{diagnosis}"
        );
    }

    #[test]
    fn growth_only_at_new_peaks_is_a_ratchet() {
        let live = [10 * MIB; 8];
        let resident = [20, 60, 60, 60, 60, 100, 100, 100].map(|m| m * MIB);
        let peaks = [10, 50, 50, 50, 50, 90, 90, 90].map(|m| m * MIB);
        let diagnosis = diagnose(&series(&live, &resident, &peaks), None);
        assert_eq!(diagnosis.verdict, Verdict::Ratchet, "{diagnosis}");
    }

    #[test]
    fn holding_far_more_than_the_peak_is_fragmentation_or_arenas() {
        let live = [10 * MIB; 8];
        let resident = [20, 30, 40, 50, 60, 70, 80, 90].map(|m| m * MIB);
        let peaks = [10, 20, 20, 20, 20, 20, 20, 20].map(|m| m * MIB);
        let diagnosis = diagnose(&series(&live, &resident, &peaks), None);
        assert_eq!(
            diagnosis.verdict,
            Verdict::FragmentationOrArenas,
            "{diagnosis}"
        );
    }

    #[test]
    fn rising_tasks_are_a_task_leak() {
        let live: Vec<u64> = (0..8).map(|i| 10 * MIB + i * MIB).collect();
        let mut samples = series(&live, &live, &live);
        for (i, s) in samples.iter_mut().enumerate() {
            s.alive_tasks = Some(3 + 100 * i as u64);
        }
        assert_eq!(diagnose(&samples, None).verdict, Verdict::TaskLeak);
    }

    #[test]
    fn a_jump_in_threads_is_threads() {
        let live = [10 * MIB; 8];
        let resident = [20, 40, 40, 40, 40, 40, 40, 40].map(|m| m * MIB);
        let mut samples = series(&live, &resident, &live);
        for (i, s) in samples.iter_mut().enumerate() {
            s.threads = Some(if i == 0 { 2 } else { 66 });
        }
        assert_eq!(diagnose(&samples, None).verdict, Verdict::Threads);
    }

    #[test]
    fn too_few_samples_or_no_memory_signal_cannot_tell() {
        let live = [MIB; 3];
        let diagnosis = diagnose(&series(&live, &live, &live), None);
        assert_eq!(diagnosis.verdict, Verdict::CantTell);
        assert!(diagnosis.missing[0].contains("4 samples"));

        let blind: Vec<Sample> = (0..6)
            .map(|i| Sample {
                elapsed: Duration::from_secs(i),
                ..Sample::default()
            })
            .collect();
        let diagnosis = diagnose(&blind, None);
        assert_eq!(diagnosis.verdict, Verdict::CantTell);
        assert!(
            diagnosis
                .missing
                .iter()
                .any(|m| m.contains("live heap bytes"))
        );
    }

    #[test]
    fn rising_rss_without_live_bytes_cannot_tell() {
        let samples: Vec<Sample> = (0..8)
            .map(|i| Sample {
                elapsed: Duration::from_secs(i),
                rss: Some(Rss {
                    anon: (10 + 10 * i) * MIB,
                    ..Rss::default()
                }),
                threads: Some(3),
                ..Sample::default()
            })
            .collect();
        let diagnosis = diagnose(&samples, None);
        assert_eq!(diagnosis.verdict, Verdict::CantTell, "{diagnosis}");
    }

    #[test]
    fn reading_this_process_sees_rss_threads_and_the_allocator() {
        let sample = Sample::read_self(Duration::ZERO, None);
        let rss = sample.rss.expect("RSS from /proc/self/status");
        assert!(rss.anon > 0 && rss.file > 0);
        assert!(sample.threads.unwrap() >= 1);
        // The unit tests run on jemalloc with the `jemalloc` feature, on the
        // counting allocator over glibc's malloc without it (see lib.rs).
        if cfg!(feature = "jemalloc") {
            assert_eq!(sample.live_bytes().unwrap().1, LiveSource::Jemalloc);
            assert!(
                sample.glibc.is_none(),
                "glibc's numbers mean nothing under jemalloc"
            );
        } else {
            assert_eq!(sample.live_bytes().unwrap().1, LiveSource::Counting);
            if cfg!(all(target_os = "linux", target_env = "gnu")) {
                assert!(sample.glibc.unwrap().in_use > 0);
            }
        }
    }

    #[test]
    fn an_unknown_pid_is_a_clear_error() {
        // PIDs are below 2^22 on Linux.
        let error = Sample::read_process(u32::MAX, Duration::ZERO).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("no process with PID 4294967295")
        );
    }

    #[test]
    fn a_zero_window_is_a_clear_error() {
        let error = check_window(Duration::ZERO, DEFAULT_INTERVAL).unwrap_err();
        assert!(error.to_string().contains("zero"));
        assert!(watch_process(std::process::id(), Duration::ZERO, DEFAULT_INTERVAL, None).is_err());
    }

    #[test]
    fn urls_other_than_plain_http_are_refused() {
        assert!(matches!(
            MetricsUrl::parse("https://example.com/metrics"),
            Err(DoctorError::BadUrl(_))
        ));
        let url = MetricsUrl::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            (url.host_port.as_str(), url.path.as_str()),
            ("127.0.0.1:9000", "/metrics")
        );
    }

    #[test]
    fn prometheus_pages_are_read_back() {
        let mut sample = Sample::default();
        let page = "# HELP x\njemalloc_allocated_bytes 1024\njemalloc_resident_bytes 4096\n\
                    tokio_alive_tasks{runtime=\"main\"} 7\nsomething_else 3\n";
        assert_eq!(sample.merge_prometheus(page), 3);
        assert_eq!(sample.live_bytes(), Some((1024, LiveSource::Jemalloc)));
        assert_eq!(sample.alive_tasks, Some(7));
        assert_eq!(Sample::default().merge_prometheus("<html>hello</html>"), 0);

        let exported = to_prometheus(&sample);
        let mut round_trip = Sample::default();
        round_trip.merge_prometheus(&exported);
        assert_eq!(round_trip.jemalloc, sample.jemalloc);
    }

    #[test]
    fn replay_of_a_burst_that_keeps_nothing_shows_no_growth() {
        let mut kept = Vec::new();
        let clean = replay_peak(4, || drop(std::hint::black_box(vec![1u8; 4 << 20])));
        clean.assert_no_live_growth(0);
        let leaky = replay_peak(4, || kept.push(vec![1u8; 1 << 20]));
        assert!(leaky.live_growth_per_cycle().iter().all(|&g| g >= 1 << 20));
        let result = std::panic::catch_unwind(|| leaky.assert_no_live_growth(0));
        assert!(result.is_err());
    }
}
