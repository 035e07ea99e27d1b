//! Measure memory and task leaks in tokio services.
//!
//! leakscope answers the questions a growing memory graph raises, with
//! numbers that tests can assert on:
//!
//! * [`heap`] — how big the heap is (jemalloc's statistics), and exactly how
//!   many bytes a piece of code left live on this thread.
//! * [`tasks`] — how many tokio tasks are alive, and a goleak-style check that
//!   a scope left none behind.
//! * [`monitor`] — a background sampler of heap, tasks and RSS with a bounded
//!   history, leak warnings and a Prometheus `/metrics` view.
//! * `profile` (feature `pprof`) — heap profiles in pprof's format that
//!   `go tool pprof` reads and that name the allocating function first, and
//!   reading them back in tests.
//! * [`check`] — one call at the end of a test body that fails if a task
//!   leaked or the heap did not return to its baseline (goleak's idea).
//! * [`detect`] — a leak detector that trusts baselines, floors and a
//!   robust trend test rather than absolute limits, with one alert when a
//!   leak starts and one when it ends; runs live or on recorded traces.
//! * [`report`] and [`chart`] — tables, sparklines and SVG charts for
//!   showing those numbers to people.
//!
//! ```
//! use leakscope::{heap::LiveBytes, tasks::TaskLeakCheck};
//!
//! #[global_allocator]
//! static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let tasks = TaskLeakCheck::start();
//! let heap = LiveBytes::start();
//!
//! let worker = tokio::spawn(async { vec![0u8; 64 * 1024].len() });
//! assert_eq!(worker.await.unwrap(), 64 * 1024);
//!
//! tasks.assert_no_leaks().await;
//! assert_eq!(heap.live_bytes(), 0);
//! # });
//! ```
//!
//! The library reads jemalloc but never installs it: a binary or test crate
//! that wants heap numbers sets `#[global_allocator]` to
//! `tikv_jemallocator::Jemalloc` itself.

#![warn(missing_docs)]

pub mod chart;
pub mod check;
pub mod detect;
pub mod heap;
#[cfg(feature = "http")]
pub mod http;
pub mod monitor;
#[cfg(feature = "pprof")]
pub mod profile;
pub mod report;
pub mod tasks;
