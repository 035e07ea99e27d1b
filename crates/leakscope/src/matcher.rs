//! Names the leak shapes of this book in a heap profile or a task dump.
//!
//! A heap profile says *where* memory was allocated; a reader still has to
//! know that `tokio::sync::mpsc::block::Block<T>::new` under an
//! `UnboundedSender::send` means "a consumer is behind an unbounded channel".
//! This module knows: [`SHAPES`] is a table of stack patterns, one row per
//! shape, each with the chapter section that shows it and its fix.
//! [`match_profile`] puts every sample of a profile under the first row whose
//! frames all occur on its stack and reports the rows that hold at least
//! [`MIN_BYTES`], with the evidence: the bytes, the library frame that
//! matched and the program's own function that called it.
//!
//! ```
//! use leakscope::matcher::{match_profile, render};
//! use leakscope::profile::proto::Profile;
//!
//! // Stacks leaf first, as in a heap profile whose allocator frames were trimmed.
//! let profile = Profile::from_stacks(
//!     ("inuse_space", "bytes"),
//!     &[
//!         (&["tokio::sync::mpsc::block::Block<T>::new",
//!            "tokio::sync::mpsc::list::Tx<T>::push",
//!            "tokio::sync::mpsc::unbounded::UnboundedSender<T>::send",
//!            "app::EventQueue::publish", "main"][..], 3 << 20),
//!         (&["app::load_config", "main"][..], 1 << 20),
//!     ],
//! );
//! let matches = match_profile(&profile).unwrap();
//! assert_eq!(matches.len(), 1);
//! assert_eq!(matches[0].shape.id, "mpsc-unbounded-backlog");
//! assert_eq!(matches[0].value, 3 << 20);
//! assert_eq!(matches[0].sites[0].caller, "app::EventQueue::publish");
//! assert!(render(&matches).contains("ch11-channels.md"));
//! ```
//!
//! A task dump ([`crate::profile::task_sites`]) names shapes of its own:
//! [`match_task_sites`] reports many tasks waiting at one place. It cannot
//! see a task that finished and was never joined: such a task is neither
//! alive nor in the dump, and only the heap profile (and `JoinSet::len`)
//! shows it.
//!
//! The table is data: a shape is added as one more [`Shape`] row, placed
//! before any row its stacks would also match.

use std::fmt::{self, Write as _};
use std::path::Path;

use crate::profile::proto::Profile;
use crate::profile::{self, ProfileError, TaskSite};
use crate::report::format_bytes;

/// One frame a shape looks for. A frame matches if its function's name
/// contains `path`, or, for a frame inlined into its caller (whose name is
/// only the short one the debug information gives, `push<…>`), if its source
/// file contains every one of `file` and its short name is `short` (any
/// short name when `short` is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    /// Part of the qualified function name: `tokio::task::join_set::JoinSet`.
    pub path: &'static str,
    /// Parts of the source file's path: `["tokio", "/src/task/join_set.rs"]`.
    pub file: &'static [&'static str],
    /// The function's short name in that file (`spawn`), or empty for any.
    pub short: &'static str,
}

impl Pattern {
    fn matches(&self, frame: &FrameName) -> bool {
        if frame.name.contains(self.path) {
            return true;
        }
        !self.file.is_empty()
            && self.file.iter().all(|part| frame.file.contains(part))
            && (self.short.is_empty() || short_name(&frame.name) == self.short)
    }
}

/// A function's name without its path and generic arguments:
/// `tokio::sync::mpsc::list::Tx<T>::push` and `push<u8>` are both `push`.
fn short_name(name: &str) -> String {
    // Drop every `<…>` group (generic arguments, `<Type as Trait>`), then
    // keep the last path segment.
    let mut depth = 0usize;
    let plain: String = name
        .chars()
        .filter(|c| match c {
            '<' => {
                depth += 1;
                false
            }
            '>' => {
                depth = depth.saturating_sub(1);
                false
            }
            _ => depth == 0,
        })
        .collect();
    plain.rsplit("::").next().unwrap_or("").to_string()
}

/// One known leak shape: the frames that identify it on a stack, and where
/// the book shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// A short stable name (`joinset-unreaped`).
    pub id: &'static str,
    /// What holds the memory, in a line.
    pub name: &'static str,
    /// Every one of these must match some frame of a stack for the stack to
    /// be this shape's.
    pub frames: &'static [Pattern],
    /// The fix, in a line.
    pub fix: &'static str,
    /// The book's page and section that show the shape and its fix.
    pub section: &'static str,
    /// Bytes a healthy service holds in this shape anyway (a bounded buffer
    /// between two drains); a heap profile is named by it only above this.
    pub working_set: i64,
}

/// The shapes this book shows, most specific first: a sample goes to the
/// first row that matches it.
pub const SHAPES: &[Shape] = &[
    Shape {
        id: "joinset-unreaped",
        name: "a JoinSet that is never joined: each finished task stays in the set with its result",
        frames: &[Pattern {
            path: "tokio::task::join_set::JoinSet",
            file: &["tokio", "/src/task/join_set.rs"],
            short: "",
        }],
        fix: "reap finished tasks (try_join_next before each spawn, or a join_next branch in the \
              select loop); use a TaskTracker when the results are not wanted",
        section: "ch11-channels.md#a-joinset-nobody-joins",
        working_set: 0,
    },
    Shape {
        id: "futures-unordered-unpolled",
        name: "a FuturesUnordered that is pushed to but not polled: every future waits, holding what it owns",
        frames: &[Pattern {
            path: "futures_util::stream::futures_unordered::FuturesUnordered",
            file: &["futures-util", "/src/stream/futures_unordered/"],
            short: "",
        }],
        fix: "poll the set in the same loop that pushes to it (a select! branch on next())",
        section: "ch11-channels.md#a-futuresunordered-nobody-polls",
        working_set: 0,
    },
    Shape {
        id: "mpsc-unbounded-backlog",
        name: "an unbounded mpsc channel's blocks: a consumer behind its producers, or the few blocks \
               each of many drained channels keeps",
        frames: &[
            Pattern {
                path: "tokio::sync::mpsc::block::Block",
                file: &["tokio", "/src/sync/mpsc/block.rs"],
                short: "",
            },
            Pattern {
                path: "tokio::sync::mpsc::unbounded::UnboundedSender",
                file: &["tokio", "/src/sync/mpsc/unbounded.rs"],
                short: "send",
            },
        ],
        fix: "a bounded channel (send().await waits when the consumer is behind), or shed load; \
              with many long-lived channels, box large messages",
        section: "ch11-channels.md#an-unbounded-channel-in-front-of-a-slow-consumer",
        working_set: 0,
    },
    Shape {
        id: "mpsc-bounded-blocks",
        name: "a bounded mpsc channel's blocks: as many events as its capacity allows are queued",
        frames: &[
            Pattern {
                path: "tokio::sync::mpsc::block::Block",
                file: &["tokio", "/src/sync/mpsc/block.rs"],
                short: "",
            },
            Pattern {
                path: "tokio::sync::mpsc::bounded::",
                file: &["tokio", "/src/sync/mpsc/bounded.rs"],
                short: "",
            },
        ],
        fix: "a capacity sized to the lag the consumer may have; box large events",
        section: "ch11-channels.md#a-drained-channel-keeps-its-blocks",
        working_set: 0,
    },
    Shape {
        id: "broadcast-ring",
        name: "a broadcast channel's ring (capacity × slot, allocated at creation); a value lives until \
               every receiver has seen it or it is overwritten",
        frames: &[Pattern {
            path: "tokio::sync::broadcast::",
            file: &["tokio", "/src/sync/broadcast.rs"],
            short: "",
        }],
        fix: "a capacity sized to the lag subscribers may have, and no receiver that is kept but never read",
        section: "ch11-channels.md#a-broadcast-channel-holds-what-an-idle-receiver-has-not-seen",
        working_set: 0,
    },
    Shape {
        id: "tracing-span-data",
        name: "tracing-subscriber's registry: data of spans that are still open, or that no layer \
               lets it release",
        frames: &[Pattern {
            // The per-span slots; the registry's fixed shard table is not span data.
            path: "tracing_subscriber::registry::sharded::DataInner",
            file: &[],
            short: "",
        }],
        fix: "a registry with layers (never a bare Registry), wrappers that forward downcast_raw, \
              and no span kept for the life of a connection",
        section: "ch12-observability.md#a-registry-without-layers",
        working_set: 0,
    },
    Shape {
        id: "tracing-events-on-span",
        name: "events a layer keeps on a span that lives as long as a connection or the process",
        frames: &[Pattern {
            path: "tracing_core::event::Event::dispatch",
            file: &["tracing-core", "/src/event.rs"],
            short: "dispatch",
        }],
        fix: "log per-request events in a per-request span",
        section: "ch12-observability.md#a-long-lived-span-that-collects-every-event",
        working_set: 0,
    },
    Shape {
        id: "metrics-histogram-buffer",
        name: "histogram samples a Prometheus recorder buffers until an upkeep task drains them",
        frames: &[Pattern {
            path: "metrics_util::storage::bucket::AtomicBucket",
            file: &["metrics-util", "/src/storage/bucket.rs"],
            short: "",
        }],
        fix: "run the recorder's upkeep task (PrometheusBuilder::install, or spawn run_upkeep)",
        section: "ch12-observability.md#histograms-nobody-drains",
        // Samples recorded between two upkeep runs (every 5 s by default).
        working_set: 1 << 20,
    },
    Shape {
        id: "metrics-label-series",
        name: "one metric series per distinct label value: labels from raw paths, ids or user input",
        frames: &[Pattern {
            path: "metrics_util::registry::Registry",
            file: &["metrics-util", "/src/registry/"],
            short: "",
        }],
        fix: "labels from a small fixed set (route templates, status classes)",
        section: "ch12-observability.md#raw-paths-as-labels",
        working_set: 0,
    },
    Shape {
        id: "leaked-in-handler",
        name: "memory a request handler leaks on purpose (Box::leak, String::leak) on every request",
        frames: &[Pattern {
            path: "ch13_clients::bad::check_token",
            file: &["ch13-clients/src/bad.rs"],
            short: "check_token",
        }],
        fix: "borrow or own per-request data instead of leaking it to meet a 'static bound",
        section: "ch13-clients.md#borrow-instead-of-leaking",
        working_set: 0,
    },
    Shape {
        id: "scratch-per-thread",
        name: "scratch buffers kept per thread id while blocking-pool threads come and go",
        frames: &[Pattern {
            path: "ScratchByThread as ch13_clients::ScratchSpace>::with_scratch",
            file: &["ch13-clients/src/bad.rs"],
            short: "with_scratch",
        }],
        fix: "keep scratch space in a pool that is not tied to threads",
        section: "ch13-clients.md#pool-scratch-space-not-threads",
        working_set: 0,
    },
    Shape {
        id: "pooled-read-buffer",
        name: "a BytesMut grown by its largest message and kept: typically a pooled \
               connection's read buffer",
        // The growth path alone: the connection code above it is async and
        // inlined, so its frames carry no names a row could rely on.
        frames: &[Pattern {
            path: "bytes::bytes_mut::BytesMut::reserve_inner",
            file: &["bytes", "/src/bytes_mut.rs"],
            short: "reserve_inner",
        }],
        fix: "give the buffer back after a large response (sqlx's shrink_buffers)",
        section: "ch13-clients.md#give-the-buffer-back-after-a-large-response",
        working_set: 0,
    },
    Shape {
        id: "map-after-spike",
        name: "a map swept after a spike that keeps the spike's capacity",
        frames: &[Pattern {
            path: "ch13_clients::RateLimitStorage::check",
            file: &["ch13-clients/src/lib.rs"],
            short: "check",
        }],
        fix: "shrink the map after the sweep",
        section: "ch13-clients.md#shrink-the-map-after-the-sweep",
        working_set: 0,
    },
    Shape {
        id: "seed-leaky-cache",
        name: "the seed's LeakyService cache: every entry kept, none evicted",
        frames: &[Pattern {
            path: "LeakyService as ch5_pprof::SeedService>::cache_data",
            file: &["ch5-pprof/src/bad.rs"],
            short: "cache_data",
        }],
        fix: "a cache with a size bound and a TTL (moka)",
        section: "ch5-pprof.md#the-heap-profile",
        working_set: 0,
    },
    Shape {
        id: "seed-leaky-workers",
        name: "the seed's LeakyService workers: each keeps its data and its task, and is never stopped",
        frames: &[Pattern {
            path: "LeakyService as ch5_pprof::SeedService>::start_worker",
            file: &["ch5-pprof/src/bad.rs"],
            short: "start_worker",
        }],
        fix: "a cancellation token for every worker, and joining them on shutdown",
        section: "ch5-pprof.md#fix",
        working_set: 0,
    },
    Shape {
        id: "cache-only-grows",
        name: "a global or TTL cache that only grows (no size bound, or a sweeper that never runs)",
        frames: &[Pattern {
            path: "ch3_cache::bad::",
            file: &["ch3-cache/src/bad.rs"],
            short: "",
        }],
        fix: "a size bound as well as a TTL, and a sweeper owned by the cache",
        section: "ch3-cache.md#a-bound-not-only-a-ttl",
        working_set: 0,
    },
    Shape {
        id: "tasks-alive",
        name: "spawned tasks that are still alive: each holds its future and all it owns",
        frames: &[Pattern {
            path: "tokio::task::spawn::spawn",
            file: &["tokio", "/src/task/spawn.rs"],
            short: "",
        }],
        fix: "give every task a way to stop (a CancellationToken) and wait for it (TaskTracker)",
        section: "ch1-tasks.md#give-every-worker-a-way-to-stop-and-wait-for-it",
        working_set: 0,
    },
];

/// The shape [`match_task_sites`] reports, and [`match_profile`] for a
/// stack of a task profile that no row names: many tasks waiting at one place.
pub static TASKS_WAITING: Shape = Shape {
    id: "tasks-never-end",
    name: "many tasks waiting at the same place: tasks with no way to end",
    frames: &[],
    fix: "give every task a way to stop (a CancellationToken it selects on) and wait for it",
    section: "ch1-tasks.md#give-every-worker-a-way-to-stop-and-wait-for-it",
    working_set: 0,
};

/// The least a shape must hold in a heap profile to be reported: below it,
/// channel blocks, a few tasks and a small ring are a service's working set.
/// At jemalloc's default sampling (one sample per 512 KiB) any sampled
/// allocation is above it.
pub const MIN_BYTES: i64 = 64 << 10;

/// The fewest tasks waiting at one site that [`match_task_sites`] reports.
pub const MIN_TASKS: usize = 10;

/// What the values of a profile count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (a heap profile's `inuse_space`).
    Bytes,
    /// Tasks (a task dump, or a `goroutine` profile made from one).
    Tasks,
}

impl Unit {
    fn format(self, value: i64) -> String {
        match self {
            Unit::Bytes => format_bytes(value),
            Unit::Tasks if value == 1 => "1 task".to_string(),
            Unit::Tasks => format!("{value} tasks"),
        }
    }
}

/// Where a matched shape's memory was allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The outermost frame that matched the shape (the library's function
    /// the program called: `tokio::task::join_set::JoinSet<T>::spawn`).
    pub frame: String,
    /// The program's own function that called it: the first frame past the
    /// matched one that is not tokio's, futures', the standard library's or
    /// the allocator's (empty if there is none).
    pub caller: String,
    /// Value held through this site.
    pub value: i64,
}

/// A shape found in a profile, with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// The row of [`SHAPES`] (or [`TASKS_WAITING`]).
    pub shape: &'static Shape,
    /// Total value of the samples matched (bytes or tasks, see `unit`).
    pub value: i64,
    /// What `value` counts.
    pub unit: Unit,
    /// Samples (distinct stacks, or task sites) matched.
    pub samples: usize,
    /// `value` as a share of the whole profile, 0 to 1.
    pub share: f64,
    /// Where the value was allocated, largest first.
    pub sites: Vec<Site>,
}

/// Why a profile could not be matched.
#[derive(Debug)]
pub enum MatchError {
    /// The file could not be read.
    Read(std::io::Error),
    /// The bytes are not a pprof profile.
    Profile(ProfileError),
    /// The profile has no value in bytes or tasks to match (its sample
    /// types are listed).
    NoValue(Vec<String>),
}

impl fmt::Display for MatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(error) => write!(f, "cannot read the profile: {error}"),
            Self::Profile(error) => write!(
                f,
                "{error} (expected a heap profile as /debug/pprof/heap serves it, gzipped or not)"
            ),
            Self::NoValue(types) if types.is_empty() => write!(
                f,
                "not a heap profile: it has no sample types (expected inuse_space in bytes, \
                 as /debug/pprof/heap serves it)"
            ),
            Self::NoValue(types) => write!(
                f,
                "no value in bytes or tasks to match: the profile's sample types are {}",
                types.join(", ")
            ),
        }
    }
}

impl std::error::Error for MatchError {}

impl From<ProfileError> for MatchError {
    fn from(error: ProfileError) -> Self {
        Self::Profile(error)
    }
}

/// Matches a heap profile (or a task profile) against [`SHAPES`], reporting
/// the shapes that hold at least [`MIN_BYTES`] (or [`MIN_TASKS`] tasks),
/// largest first.
pub fn match_profile(profile: &Profile) -> Result<Vec<Match>, MatchError> {
    let (_, unit) = value_index(profile)?;
    let least = match unit {
        Unit::Bytes => MIN_BYTES,
        Unit::Tasks => MIN_TASKS as i64,
    };
    match_profile_with(profile, SHAPES, least)
}

/// [`match_profile`] with a table of shapes and a threshold of one's own.
pub fn match_profile_with(
    profile: &Profile,
    shapes: &'static [Shape],
    least: i64,
) -> Result<Vec<Match>, MatchError> {
    let (index, unit) = value_index(profile)?;
    let stacks = named_stacks(profile, index);
    let total: i64 = stacks.iter().map(|(_, value)| value).sum();
    let mut found: Vec<Match> = Vec::new();
    for (stack, value) in stacks {
        if value <= 0 {
            continue;
        }
        let named = shapes
            .iter()
            .find_map(|shape| matched_frames(shape, &stack).map(|outermost| (shape, outermost)));
        let Some((shape, outermost)) = named.or(match unit {
            // In a task profile, many tasks waiting at one leaf are a shape of their own.
            Unit::Tasks if !stack.is_empty() => Some((&TASKS_WAITING, 0)),
            _ => None,
        }) else {
            continue;
        };
        let site = Site {
            frame: stack[outermost].name.clone(),
            caller: caller_of(&stack, outermost),
            value,
        };
        let entry = match found.iter_mut().find(|m| m.shape.id == shape.id) {
            Some(entry) => entry,
            None => {
                found.push(Match {
                    shape,
                    value: 0,
                    unit,
                    samples: 0,
                    share: 0.0,
                    sites: Vec::new(),
                });
                found.last_mut().expect("just pushed")
            }
        };
        entry.value += value;
        entry.samples += 1;
        match entry
            .sites
            .iter_mut()
            .find(|known| known.frame == site.frame && known.caller == site.caller)
        {
            Some(known) => known.value += site.value,
            None => entry.sites.push(site),
        }
    }
    found.retain(|m| m.value >= least && (m.unit != Unit::Bytes || m.value > m.shape.working_set));
    for m in &mut found {
        m.share = if total > 0 {
            m.value as f64 / total as f64
        } else {
            0.0
        };
        m.sites.sort_by_key(|site| std::cmp::Reverse(site.value));
    }
    found.sort_by_key(|m| std::cmp::Reverse(m.value));
    Ok(found)
}

/// Reads a saved profile (gzipped or plain pprof protobuf) and matches it.
pub fn match_file(path: &Path) -> Result<Vec<Match>, MatchError> {
    let bytes = std::fs::read(path).map_err(MatchError::Read)?;
    match_profile(&profile::decode(&bytes)?)
}

/// Takes this process's heap profile (as [`crate::profile::heap_profile`]
/// serves it) and matches it: what a `/debug/leakscope/match` endpoint
/// returns, through [`render`].
///
/// ```no_run
/// # async fn handler() -> String {
/// match leakscope::matcher::match_current_heap().await {
///     Ok(matches) => leakscope::matcher::render(&matches),
///     Err(error) => format!("{error}\n"),
/// }
/// # }
/// ```
pub async fn match_current_heap() -> Result<Vec<Match>, MatchError> {
    let served = profile::heap_profile().await?;
    match_profile(&profile::decode(&served)?)
}

/// Matches the sites of a task dump: every place where at least `least`
/// tasks wait is reported as [`TASKS_WAITING`], largest first.
pub fn match_task_sites(sites: &[TaskSite], least: usize) -> Vec<Match> {
    let total: usize = sites.iter().map(|site| site.tasks).sum();
    let mut found: Vec<Match> = sites
        .iter()
        .filter(|site| site.tasks >= least.max(1))
        .map(|site| Match {
            shape: &TASKS_WAITING,
            value: site.tasks as i64,
            unit: Unit::Tasks,
            samples: 1,
            share: site.tasks as f64 / total.max(1) as f64,
            sites: vec![Site {
                frame: site.function.clone(),
                caller: site.label(),
                value: site.tasks as i64,
            }],
        })
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.value));
    found
}

/// The matches as text, one block per shape: what holds the memory, the
/// evidence, the fix and the section to read. Says so when nothing matched.
pub fn render(matches: &[Match]) -> String {
    let mut text = String::new();
    if matches.is_empty() {
        text.push_str(
            "no known leak shape: nothing of this book's table holds enough to report. \
             Compare two profiles taken apart in time (pprof -base) to see what grows.\n",
        );
        return text;
    }
    for m in matches {
        let _ = writeln!(
            text,
            "{} — {} in {} stack{} ({:.0}% of the profile)",
            m.shape.id,
            m.unit.format(m.value),
            m.samples,
            if m.samples == 1 { "" } else { "s" },
            m.share * 100.0
        );
        let _ = writeln!(text, "  what: {}", m.shape.name);
        for site in m.sites.iter().take(3) {
            // A seed's own function is both the frame and its caller: say it once.
            let caller = if site.caller.is_empty() || site.caller == site.frame {
                String::new()
            } else {
                format!(", called from {}", site.caller)
            };
            let _ = writeln!(
                text,
                "  where: {} at {}{caller}",
                m.unit.format(site.value),
                site.frame
            );
        }
        let _ = writeln!(text, "  fix: {}", m.shape.fix);
        let _ = writeln!(text, "  read: {}", m.shape.section);
    }
    text
}

/// The value to match: `inuse_space` if the profile has it, else the first
/// value in bytes, else the first count (a task profile).
fn value_index(profile: &Profile) -> Result<(usize, Unit), MatchError> {
    let name = |index: i64| {
        usize::try_from(index)
            .ok()
            .and_then(|index| profile.string_table.get(index))
            .map_or("", String::as_str)
    };
    let types: Vec<(&str, &str)> = profile
        .sample_type
        .iter()
        .map(|value_type| (name(value_type.r#type), name(value_type.unit)))
        .collect();
    if let Some(index) = types.iter().position(|(kind, _)| *kind == "inuse_space") {
        return Ok((index, Unit::Bytes));
    }
    if let Some(index) = types.iter().position(|(_, unit)| *unit == "bytes") {
        return Ok((index, Unit::Bytes));
    }
    if let Some(index) = types.iter().position(|(_, unit)| *unit == "count") {
        return Ok((index, Unit::Tasks));
    }
    Err(MatchError::NoValue(
        types
            .iter()
            .map(|(kind, unit)| format!("{kind}/{unit}"))
            .collect(),
    ))
}

/// A frame of a stack: its function's name and source file.
#[derive(Debug, Clone)]
struct FrameName {
    name: String,
    file: String,
}

/// Each sample as its frames (leaf first, inlined frames expanded) and its
/// value at `index`.
fn named_stacks(profile: &Profile, index: usize) -> Vec<(Vec<FrameName>, i64)> {
    crate::profile::stacks_with_files(profile, index)
        .into_iter()
        .map(|(stack, value)| {
            let frames = stack
                .into_iter()
                .map(|(name, file)| FrameName { name, file })
                .collect();
            (frames, value)
        })
        .collect()
}

/// If every pattern of `shape` matches a frame of `stack`, the index of the
/// outermost (rootmost) frame that matched one.
fn matched_frames(shape: &Shape, stack: &[FrameName]) -> Option<usize> {
    if shape.frames.is_empty() {
        return None;
    }
    let mut outermost = 0;
    for pattern in shape.frames {
        let last = stack.iter().rposition(|frame| pattern.matches(frame))?;
        outermost = outermost.max(last);
    }
    Some(outermost)
}

/// Frames of libraries and of the allocator, which are never "the caller".
const LIBRARY_PREFIXES: [&str; 8] = [
    "tokio::",
    "futures_util::",
    "futures_core::",
    "core::",
    "std::",
    "alloc::",
    "hashbrown::",
    "tikv_jemallocator::",
];

/// Source paths of dependencies and of the standard library.
const LIBRARY_SOURCES: [&str; 4] = [
    "/.cargo/registry/",
    "/.cargo/git/",
    "/rustlib/src/",
    "/rustc/",
];

fn is_library(frame: &FrameName) -> bool {
    let path = frame.name.trim_start_matches('<');
    LIBRARY_PREFIXES
        .iter()
        .any(|prefix| path.starts_with(prefix))
        || profile::is_allocator_frame(&frame.name)
        || LIBRARY_SOURCES
            .iter()
            .any(|source| frame.file.contains(source))
}

/// The frame's name, with its source file when the name alone is an inlined
/// short one (`{async_fn#0}`).
fn describe(frame: &FrameName) -> String {
    if frame.name.contains("::") || frame.file.is_empty() {
        return frame.name.clone();
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let file = Path::new(&frame.file)
        .strip_prefix(&cwd)
        .map_or(frame.file.clone(), |relative| {
            relative.display().to_string()
        });
    format!("{} ({file})", frame.name)
}

fn caller_of(stack: &[FrameName], outermost: usize) -> String {
    // A matched frame that is the program's own (a seed function) is its own caller.
    if !is_library(&stack[outermost]) {
        return describe(&stack[outermost]);
    }
    stack[outermost + 1..]
        .iter()
        .find(|frame| !is_library(frame))
        .map(describe)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap(stacks: &[(&[&str], i64)]) -> Profile {
        Profile::from_stacks(("inuse_space", "bytes"), stacks)
    }

    const MIB: i64 = 1 << 20;

    #[test]
    fn each_shape_is_named_by_its_frames() {
        let cases: [(&[&str], &str); 8] = [
            (
                &[
                    "tokio::runtime::task::core::Cell<T,S>::new",
                    "tokio::task::spawn::spawn",
                    "tokio::task::join_set::JoinSet<T>::spawn",
                    "app::Server::handle",
                ],
                "joinset-unreaped",
            ),
            (
                &[
                    "futures_util::stream::futures_unordered::FuturesUnordered<Fut>::push",
                    "app::serve_connection::{{closure}}",
                ],
                "futures-unordered-unpolled",
            ),
            (
                &[
                    "tokio::sync::mpsc::block::Block<T>::new",
                    "tokio::sync::mpsc::unbounded::UnboundedSender<T>::send",
                    "app::publish",
                ],
                "mpsc-unbounded-backlog",
            ),
            (
                &[
                    "tokio::sync::mpsc::block::Block<T>::new",
                    "tokio::sync::mpsc::bounded::Sender<T>::send::{{closure}}",
                    "app::publish",
                ],
                "mpsc-bounded-blocks",
            ),
            (
                &["tokio::sync::broadcast::channel", "app::UpdateHub::new"],
                "broadcast-ring",
            ),
            (
                &[
                    "sharded_slab::page::slot::Slot<tracing_subscriber::registry::sharded::DataInner>::new",
                    "app::handle",
                ],
                "tracing-span-data",
            ),
            (
                &[
                    "<ch5_pprof::bad::LeakyService as ch5_pprof::SeedService>::cache_data",
                    "ch5_pprof::server::leak",
                ],
                "seed-leaky-cache",
            ),
            (
                &[
                    "tokio::runtime::task::core::Cell<T,S>::new",
                    "tokio::task::spawn::spawn",
                    "app::start_worker",
                ],
                "tasks-alive",
            ),
        ];
        for (stack, id) in cases {
            let matches = match_profile(&heap(&[(stack, 2 * MIB)])).unwrap();
            assert_eq!(matches.len(), 1, "{stack:?}");
            assert_eq!(matches[0].shape.id, id, "{stack:?}");
        }
    }

    #[test]
    fn inlined_frames_are_known_by_their_source_file() {
        // Inlined frames carry only a short name; their file tells whose they are.
        let mut profile = heap(&[(
            &["push<app::call::{async_fn_env#0}>", "app::serve"][..],
            MIB,
        )]);
        let push_name = profile.function[0].name;
        profile.string_table.push(
            "/root/.cargo/registry/src/index/futures-util-0.3.31/src/stream/futures_unordered/mod.rs"
                .into(),
        );
        profile.function[0].filename = profile.string_table.len() as i64 - 1;
        assert_eq!(profile.function[0].name, push_name);
        let matches = match_profile(&profile).unwrap();
        assert_eq!(matches[0].shape.id, "futures-unordered-unpolled");
        assert_eq!(matches[0].sites[0].caller, "app::serve");
        assert_eq!(short_name("tokio::sync::mpsc::list::Tx<T>::push"), "push");
        assert_eq!(short_name("<app::Cache as app::Store>::insert"), "insert");
        assert_eq!(short_name("send<u8>"), "send");
    }

    #[test]
    fn a_joinset_spawn_is_not_counted_as_a_plain_spawn() {
        let matches = match_profile(&heap(&[(
            &[
                "tokio::task::spawn::spawn",
                "tokio::task::join_set::JoinSet<T>::spawn",
                "app::Server::handle",
            ],
            MIB,
        )]))
        .unwrap();
        assert_eq!(matches[0].shape.id, "joinset-unreaped");
        assert_eq!(
            matches[0].sites[0],
            Site {
                frame: "tokio::task::join_set::JoinSet<T>::spawn".into(),
                caller: "app::Server::handle".into(),
                value: MIB,
            }
        );
    }

    #[test]
    fn evidence_adds_up_per_site_largest_first() {
        let queue = |caller: &'static str| -> [&'static str; 3] {
            [
                "tokio::sync::mpsc::block::Block<T>::new",
                "tokio::sync::mpsc::unbounded::UnboundedSender<T>::send",
                caller,
            ]
        };
        let (a, b) = (queue("app::audit"), queue("app::events"));
        let matches = match_profile(&heap(&[
            (&a[..], MIB),
            (&b[..], 2 * MIB),
            (&b[..], MIB),
            (&["app::config"][..], 4 * MIB),
        ]))
        .unwrap();
        assert_eq!(matches.len(), 1);
        let found = &matches[0];
        assert_eq!((found.value, found.samples), (4 * MIB, 3));
        assert!((found.share - 0.5).abs() < 1e-9);
        assert_eq!(found.sites[0].caller, "app::events");
        assert_eq!(found.sites[0].value, 3 * MIB);
        assert_eq!(found.sites[1].caller, "app::audit");
    }

    #[test]
    fn small_amounts_are_a_working_set_not_a_shape() {
        let stack: &[&str] = &["tokio::sync::broadcast::channel", "app::UpdateHub::new"];
        assert!(
            match_profile(&heap(&[(stack, MIN_BYTES - 1)]))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            match_profile(&heap(&[(stack, MIN_BYTES)])).unwrap().len(),
            1
        );
    }

    #[test]
    fn a_profile_of_unknown_stacks_matches_nothing_and_says_so() {
        let matches =
            match_profile(&heap(&[(&["app::load_config", "main"][..], 8 * MIB)])).unwrap();
        assert!(matches.is_empty());
        assert!(render(&matches).starts_with("no known leak shape"));
    }

    #[test]
    fn a_task_profile_is_matched_in_tasks() {
        let profile = Profile::from_stacks(
            ("goroutine", "count"),
            &[(
                &["tokio::task::join_set::JoinSet<T>::spawn", "app::handle"][..],
                12,
            )],
        );
        let matches = match_profile(&profile).unwrap();
        assert_eq!((matches[0].unit, matches[0].value), (Unit::Tasks, 12));
        assert!(render(&matches).contains("12 tasks"));
    }

    #[test]
    fn a_goroutine_profile_of_a_task_dump_names_tasks_that_never_end() {
        let sites = [TaskSite {
            tasks: 100,
            function: "app::worker::{{closure}}".into(),
            location: "src/app.rs:10".into(),
            stack: vec!["app::worker::{{closure}}".into(), "app::start".into()],
        }];
        let matches = match_profile(&profile::task_profile(&sites)).unwrap();
        assert_eq!(ids_and_values(&matches), [("tasks-never-end", 100)]);
        assert_eq!(
            matches[0].sites[0].frame,
            "app::worker::{{closure}} (src/app.rs:10)"
        );
    }

    fn ids_and_values(matches: &[Match]) -> Vec<(&'static str, i64)> {
        matches.iter().map(|m| (m.shape.id, m.value)).collect()
    }

    #[test]
    fn what_is_not_a_profile_gets_a_clear_error() {
        let error = profile::decode(b"\x1f\x8bnot gzip").map_err(MatchError::from);
        let text = error.unwrap_err().to_string();
        assert!(text.starts_with("not a pprof profile: gzip"), "{text}");

        let empty = Profile::default();
        let text = match_profile(&empty).unwrap_err().to_string();
        assert!(text.contains("not a heap profile"), "{text}");

        let cpu = Profile::from_stacks(("cpu", "nanoseconds"), &[(&["main"][..], 1)]);
        let text = match_profile(&cpu).unwrap_err().to_string();
        assert!(text.contains("cpu/nanoseconds"), "{text}");

        let missing = match_file(Path::new("/nonexistent/heap.pb.gz")).unwrap_err();
        assert!(matches!(missing, MatchError::Read(_)));
    }

    #[test]
    fn task_sites_with_many_tasks_are_reported() {
        let sites = [
            TaskSite {
                tasks: 100,
                function: "app::worker::{{closure}}".into(),
                location: "src/app.rs:10".into(),
                stack: vec!["app::worker::{{closure}}".into()],
            },
            TaskSite {
                tasks: 2,
                function: "app::serve".into(),
                location: String::new(),
                stack: vec![],
            },
        ];
        let matches = match_task_sites(&sites, MIN_TASKS);
        assert_eq!(matches.len(), 1);
        assert_eq!(matches[0].shape.id, "tasks-never-end");
        assert_eq!(matches[0].value, 100);
        assert_eq!(
            matches[0].sites[0].caller,
            "app::worker::{{closure}} (src/app.rs:10)"
        );
        let text = render(&matches);
        assert!(
            text.contains("100 tasks") && text.contains("ch1-tasks.md"),
            "{text}"
        );
    }
}
