//! Measure memory and task leaks in tokio services, with numbers tests can
//! assert on — whatever allocator the service uses.
//!
//! * [`alloc`] — a counting allocator that wraps any `GlobalAlloc` (the
//!   system allocator, jemalloc, mimalloc): exact live bytes, live
//!   allocations, totals and peak, process-wide and per thread.
//! * [`heap`] — exactly how many bytes a piece of code left live on this
//!   thread, and (feature `jemalloc`) jemalloc's own statistics for the
//!   "is it the allocator?" questions.
//! * [`tasks`] — how many tokio tasks are alive, and a goleak-style check that
//!   a scope left none behind: it waits for stragglers with backoff, and with
//!   task dumps (feature `taskdump`) it compares task identities and says
//!   where each leaked task waits.
//! * [`check`] — one call at the end of a test body that fails if a task
//!   leaked or the heap did not return to its baseline (goleak's idea).
//! * [`monitor`] — a background sampler of heap, tasks and RSS with a bounded
//!   history, leak warnings and a Prometheus `/metrics` view (feature `http`).
//! * [`detect`] — a leak detector that trusts baselines, floors and a
//!   robust trend test rather than absolute limits.
//! * `profile` (feature `pprof`) — heap profiles in pprof's format that
//!   `go tool pprof` reads.
//! * [`doctor`] — is it a leak at all? Samples live bytes, allocator
//!   statistics, RSS, threads and tasks over a window and gives a verdict
//!   (leak, task leak, retention, arenas, threads, ratchet, not a leak)
//!   with its evidence and the next step.
//! * `matcher` (feature `pprof`) — names the leak shapes of this book in a
//!   heap profile or a task dump: the shape, the evidence, the section to read.
//! * [`report`] and `chart` (feature `chart`) — tables, sparklines and SVG
//!   charts for showing those numbers to people.
//!
//! ```
//! use leakscope::check::LeakCheck;
//!
//! // One line in main.rs or the test file: count over the system allocator
//! // (or `CountingAlloc::new(tikv_jemallocator::Jemalloc)`, or mimalloc).
//! #[global_allocator]
//! static ALLOC: leakscope::alloc::CountingAlloc = leakscope::alloc::CountingAlloc::system();
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let check = LeakCheck::start();
//!
//! let worker = tokio::spawn(async { vec![0u8; 64 * 1024].len() });
//! assert_eq!(worker.await.unwrap(), 64 * 1024);
//!
//! check.assert_no_leaks().await;
//! # });
//! ```
//!
//! Without a counting allocator (or jemalloc, with the `jemalloc` feature) as
//! the global allocator, leakscope cannot see the heap; it then fails with the
//! line to add rather than report 0 B.
//!
//! The library never sets `#[global_allocator]` itself: a binary or a test
//! file does.
//!
//! # Features
//!
//! | feature | adds | costs |
//! |---|---|---|
//! | (none) | `alloc`, `heap::LiveBytes`, `tasks`, `check`, `monitor`, `detect`, `report` | tokio, tokio-util, libc |
//! | `jemalloc` | `heap::HeapStats`, jemalloc's per-thread counters | builds jemalloc from C |
//! | `pprof` | `profile`: heap profiles | `jemalloc` + jemalloc_pprof, its symbolizer, inferno |
//! | `http` | `monitor::metrics_router`, `doctor::doctor_router` | axum |
//! | `chart` | `chart`: SVG charts | plotters |
//! | `taskdump` | task identities and stacks | tokio's `taskdump`; needs `--cfg tokio_unstable`, Linux on x86/x86-64/AArch64 |
//!
//! # Platform
//!
//! The counting allocator, the checks and the detector are portable. RSS is
//! read from `/proc` (Linux; `None` elsewhere); task dumps need Linux on
//! x86, x86-64 or AArch64.

#![warn(missing_docs)]

pub mod alloc;
#[cfg(feature = "chart")]
pub mod chart;
pub mod check;
pub mod detect;
pub mod doctor;
pub mod heap;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "pprof")]
pub mod matcher;
pub mod monitor;
#[cfg(feature = "pprof")]
pub mod profile;
pub mod report;
pub mod tasks;

// The library's own unit tests need a global allocator leakscope can read.
#[cfg(all(test, feature = "jemalloc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(test, not(feature = "jemalloc")))]
#[global_allocator]
static ALLOC: alloc::CountingAlloc = alloc::CountingAlloc::system();
